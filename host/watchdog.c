/* The stall watchdog (corio.set_debug{slow = s}, CORIO_DEBUG=slow=s): a thread that notices a
 * task running longer than `slow` without suspending and, while it still runs, has it print
 * its name and traceback, through a count hook as lua.c handles Ctrl-C (lua_sethook may be
 * called asynchronously). A hook that does not fire within the next interval means the task
 * is inside a C call: the watchdog says so, with the last Lua line it can see.
 *
 * Step (sched.c) publishes each slice while the watchdog is on, without a lock: a resume pays
 * one clock read (shared with run-time measurement), a few stores and one full fence, not two
 * mutex round trips and two clock reads (bench/obs.sh measures it: doc/observability.md,
 * Cost). The slice's fields
 * are a seqlock (one writer, the loop thread): `seq` is odd while they change. The coroutine
 * the thread hooks must not be freed meanwhile: the thread raises `busy` before it reads `co`,
 * and leave clears `co` then waits while `busy` is up (both sequentially consistent: either
 * the thread sees no coroutine, or leave sees it busy). The task holds its coroutine until the
 * slice is left, so the coroutine hooked is always one being resumed, or just resumed. */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "scheduler.h"

struct corio_watchdog {
  uv_thread_t thread;
  uv_mutex_t mu;            /* the thread's and the hook's bookkeeping below, and stop */
  uv_cond_t cond;
  int stop;
  uint64_t slow;            /* ns (0: no reports) */
  uint64_t max_slice;       /* ns (0: no limit): past it the task raises corio.SliceExceeded */
  /* the slice now running, written by the loop thread only */
  _Atomic(lua_State *) co;  /* its coroutine, or NULL between slices */
  _Atomic(corio_task *) task;
  _Atomic uint64_t start;   /* uv_hrtime() when it started */
  _Atomic uint64_t seq;     /* twice the slice's number; odd while the fields above change */
  atomic_int busy;          /* the thread is using co: leave waits */
  uint64_t hooked, hooked_at; /* the slice a hook was set in, and when */
  uint64_t fired;           /* the slice whose hook has fired (written by the hook) */
  uint64_t c_reported;      /* the slice reported as stuck in C */
  uint64_t killed;          /* the slice hooked to raise SliceExceeded */
};

void corio__watchdog_enter(corio_watchdog *wd, corio_task *t, uint64_t now) {
  uint64_t s = atomic_load_explicit(&wd->seq, memory_order_relaxed);
  atomic_store_explicit(&wd->seq, s + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&wd->task, t, memory_order_relaxed);
  atomic_store_explicit(&wd->start, now, memory_order_relaxed);
  atomic_store_explicit(&wd->co, t->co, memory_order_relaxed);
  atomic_store_explicit(&wd->seq, s + 2, memory_order_release);
}

void corio__watchdog_leave(corio_watchdog *wd) {
  atomic_store(&wd->co, NULL);
  while (atomic_load(&wd->busy)) sched_yield(); /* the thread is setting a hook: a moment */
}

/* The slice running now, as the thread sees it: 0 and nothing when none is, or it changed
 * while being read (then it was not a long one). Call with busy up. */
static uint64_t slice(corio_watchdog *wd, lua_State **co, corio_task **task, uint64_t *start) {
  uint64_t s1 = atomic_load_explicit(&wd->seq, memory_order_acquire);
  *task = atomic_load_explicit(&wd->task, memory_order_relaxed);
  *start = atomic_load_explicit(&wd->start, memory_order_relaxed);
  *co = atomic_load(&wd->co);
  atomic_thread_fence(memory_order_acquire);
  uint64_t s2 = atomic_load_explicit(&wd->seq, memory_order_relaxed);
  if ((s1 & 1) || s1 != s2 || !*co) return 0;
  return s1 / 2;
}

/* Runs in the slow task itself: report it with its traceback, unless its slice is over. */
static void slow_hook(lua_State *L, lua_Debug *ar) {
  corio_runtime *rt = corio__rt(L);
  corio_watchdog *wd = rt->watchdog;
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (!wd) return;
  uv_mutex_lock(&wd->mu);
  /* the hook runs on the loop thread, the slice's one writer: its fields are read as they are */
  uint64_t cur = atomic_load_explicit(&wd->seq, memory_order_relaxed) / 2;
  int mine = atomic_load_explicit(&wd->co, memory_order_relaxed) == L;
  int live = mine && wd->hooked == cur && wd->fired != cur;
  int kill = mine && wd->killed == cur;
  uint64_t start = atomic_load_explicit(&wd->start, memory_order_relaxed);
  uint64_t max = wd->max_slice, slow = wd->slow;
  if (live) wd->fired = cur;
  uv_mutex_unlock(&wd->mu);
  corio_task *t = rt->current;
  if (kill) {
    /* corio.SliceExceeded, raised where the task is: a web handler's becomes a 503 */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, "corio") == LUA_TTABLE &&
        lua_getfield(L, -1, "SliceExceeded") == LUA_TTABLE &&
        lua_getfield(L, -1, "new") == LUA_TFUNCTION) {
      lua_pushfstring(L, "the task ran for more than max_slice (%f s) without suspending",
                      (lua_Number)max / 1e9);
      lua_call(L, 1, 1);
      lua_error(L);
    }
    luaL_error(L, "the task ran for more than max_slice without suspending");
  }
  if (!live || !t || t->anchor == LUA_NOREF || !lua_checkstack(L, 4)) return;
  corio__push_anchor(L, t->anchor);
  corio__push_name(L, -1, t);
  luaL_traceback(L, L, NULL, 0);
  fprintf(stderr, "corio: task '%s' has run for %.3f s without suspending (slow = %.3f s):\n%s\n",
          lua_tostring(L, -2), (double)(uv_hrtime() - start) / 1e9, (double)slow / 1e9,
          lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, 3);
}

/* Look at slice `seq` (running for now - start) of task `task`, coroutine co; with mu held and
 * busy up. */
static void look(corio_watchdog *wd, uint64_t seq, lua_State *co, corio_task *task,
                 uint64_t start) {
  uint64_t now = uv_hrtime();
  if (wd->max_slice && now - start >= wd->max_slice && wd->killed != seq) {
    wd->killed = seq;
    lua_sethook(co, slow_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
    return;
  }
  if (!wd->slow || now - start < wd->slow) return;
  if (wd->hooked != seq) {
    wd->hooked = seq;
    wd->hooked_at = now;
    lua_sethook(co, slow_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
  } else if (wd->fired != seq && wd->c_reported != seq && now - wd->hooked_at >= wd->slow) {
    /* No Lua ran for a whole interval: the task is blocked in a C function. Its Lua frames
     * do not move while it is there: when the call returns, the return hook (set above)
     * runs before the frame is popped and waits for this mutex, so the innermost frame
     * with a line is read as is. A C function that pushes its results meanwhile moves only
     * the stack top, which this walk does not read. */
    lua_Debug ar;
    wd->c_reported = seq;
    const char *src = "?";
    int line = -1;
    for (int level = 0; lua_getstack(co, level, &ar); level++) {
      if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
        src = ar.short_src;
        line = ar.currentline;
        break;
      }
    }
    fprintf(stderr, "corio: task #%llu has run for %.3f s without suspending and is stuck in "
                    "a C function (called at %s:%d)\n",
            (unsigned long long)task->id, (double)(now - start) / 1e9, src, line);
    fflush(stderr);
  }
}

/* The thread: every half interval, look at the slice running now. */
static void watch(void *arg) {
  corio_watchdog *wd = arg;
  uv_mutex_lock(&wd->mu);
  while (!wd->stop) {
    uint64_t every = wd->slow && (!wd->max_slice || wd->slow < wd->max_slice) ? wd->slow
                                                                               : wd->max_slice;
    uv_cond_timedwait(&wd->cond, &wd->mu, every / 2 + 1);
    if (wd->stop) continue;
    lua_State *co;
    corio_task *task;
    uint64_t start;
    atomic_store(&wd->busy, 1);
    uint64_t seq = slice(wd, &co, &task, &start);
    if (seq) look(wd, seq, co, task, start);
    atomic_store_explicit(&wd->busy, 0, memory_order_release);
  }
  uv_mutex_unlock(&wd->mu);
}

void corio__watchdog_stop(corio_runtime *rt) {
  corio_watchdog *wd = rt->watchdog;
  if (!wd) return;
  uv_mutex_lock(&wd->mu);
  wd->stop = 1;
  uv_cond_signal(&wd->cond);
  uv_mutex_unlock(&wd->mu);
  uv_thread_join(&wd->thread);
  uv_cond_destroy(&wd->cond);
  uv_mutex_destroy(&wd->mu);
  rt->watchdog = NULL;
  free(wd);
}

static uint64_t to_ns(double s) {
  if (!(s > 0)) return 0;
  return s < 0.001 ? 1000000 : (uint64_t)(s * 1e9);
}

/* corio.core._set_watchdog(slow, max_slice): seconds, 0 for off; both 0 stop the thread */
int corio__l_set_watchdog(lua_State *L) {
  corio_runtime *rt = corio__rt(L);
  uint64_t slow = to_ns(luaL_optnumber(L, 1, 0)), max = to_ns(luaL_optnumber(L, 2, 0));
  if (!slow && !max) {
    corio__watchdog_stop(rt);
    return 0;
  }
  if (rt->watchdog) {
    uv_mutex_lock(&rt->watchdog->mu);
    rt->watchdog->slow = slow;
    rt->watchdog->max_slice = max;
    uv_cond_signal(&rt->watchdog->cond);
    uv_mutex_unlock(&rt->watchdog->mu);
    return 0;
  }
  corio_watchdog *wd = calloc(1, sizeof *wd);
  if (!wd) return corio__nomem(L);
  wd->slow = slow;
  wd->max_slice = max;
  if (uv_mutex_init(&wd->mu) != 0) goto fail_mu;
  if (uv_cond_init(&wd->cond) != 0) goto fail_cond;
  if (uv_thread_create(&wd->thread, watch, wd) != 0) goto fail_thread;
  rt->watchdog = wd;
  return 0;
fail_thread:
  uv_cond_destroy(&wd->cond);
fail_cond:
  uv_mutex_destroy(&wd->mu);
fail_mu:
  free(wd);
  return luaL_error(L, "set_debug: cannot start the watchdog thread");
}
