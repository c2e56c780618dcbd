/* corio.thread's worker threads: each keeps a lua_State (standard libraries, corio.json, its
 * own require), takes jobs from its pool's queue, runs them under a traceback handler and hands
 * them back; and the interrupt that cancels a running job (a debug hook set from the loop
 * thread). The loop side (queueing, waking tasks, the Lua module) is pool.c. */
#include <stdio.h>
#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "thread.h"

static char WORKER_KEY; /* registry key in a worker's state: its worker (light userdata) */

worker *thread__worker(lua_State *L) {
  worker *w = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &WORKER_KEY) == LUA_TLIGHTUSERDATA)
    w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return w;
}

const char *thread__interrupted(worker *w) {
  return atomic_load(&w->interrupt) ? w->stop_msg : NULL;
}

void thread__block_begin(worker *w, uv_mutex_t *lock, uv_cond_t *c1, uv_cond_t *c2) {
  uv_mutex_lock(&w->p->lock);
  w->blocked_lock = lock;
  w->blocked_c1 = c1;
  w->blocked_c2 = c2;
  uv_mutex_unlock(&w->p->lock);
}

void thread__block_end(worker *w) {
  uv_mutex_lock(&w->p->lock);
  w->blocked_lock = NULL;
  uv_mutex_unlock(&w->p->lock);
}

/* A plain allocator (host/alloc.c's pools are not thread-safe) that counts, for the limit. */
static void *worker_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  worker *w = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    free(ptr);
    w->mem -= osize;
    return NULL;
  }
  if (w->limit && nsize > osize && w->mem + (nsize - osize) > w->limit) return NULL;
  void *np = realloc(ptr, nsize);
  if (np) w->mem = w->mem - osize + nsize;
  return np;
}

/* The hook set from the loop thread when the job is cancelled or the pool closed: raise at the
 * next instruction, and again at every instruction after it (a pcall in the job cannot keep
 * it running), until the job's own protected call returns. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  worker *w = thread__worker(L);
  if (w && atomic_load(&w->interrupt)) luaL_error(L, "%s", w->stop_msg);
  lua_sethook(L, NULL, 0, 0); /* a coroutine hooked for a job that is over */
}

#define STOP_MASK (LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET)

/* Called with the pool's lock held, for a worker that runs a job. lua_sethook from another
 * thread is what Lua's own lua.c does from a signal handler and Lanes does for a hard cancel:
 * the hook fields are written while the worker's VM runs; the worker only ever reads them.
 * It is never set on a worker between jobs: both sides hold the lock around w->job. */
void thread__interrupt_locked(worker *w, const char *msg) {
  w->stop_msg = msg;
  atomic_store(&w->interrupt, 1);
  if (w->L) lua_sethook(w->L, stop_hook, STOP_MASK, 1);
  for (int i = 0; i < w->nresuming; i++) lua_sethook(w->resuming[i], stop_hook, STOP_MASK, 1);
  if (w->blocked_lock) { /* blocked on a channel: wake it; it sees `interrupt` and raises */
    uv_mutex_lock(w->blocked_lock);
    uv_cond_broadcast(w->blocked_c1);
    uv_cond_broadcast(w->blocked_c2);
    uv_mutex_unlock(w->blocked_lock);
  }
}

/* Around a resume in a worker: list co while it runs, so that an interrupt reaches it (and
 * set the hook now if the interrupt came first). Returns 0 if it could not be listed (nested
 * too deep: Lua refuses that resume itself). */
static int resume_begin(worker *w, lua_State *co) {
  int listed = 0;
  uv_mutex_lock(&w->p->lock);
  if (w->nresuming < MAX_RESUMING) {
    w->resuming[w->nresuming++] = co;
    listed = 1;
  }
  if (atomic_load(&w->interrupt)) lua_sethook(co, stop_hook, STOP_MASK, 1);
  uv_mutex_unlock(&w->p->lock);
  return listed;
}

static void resume_end(worker *w, int listed) {
  if (!listed) return;
  uv_mutex_lock(&w->p->lock);
  w->nresuming--;
  uv_mutex_unlock(&w->p->lock);
}

/* coroutine.resume in a worker: the standard one (upvalue 1), listed while it runs. */
static int worker_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  worker *w = thread__worker(L);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (!co || !w) {
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
  }
  int listed = resume_begin(w, co);
  int status = lua_pcall(L, n, LUA_MULTRET, 0); /* only a memory error: resume catches */
  resume_end(w, listed);
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

/* The function coroutine.wrap returned in a worker: upvalues (standard wrap's function, co). */
static int worker_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(2));
  worker *w = thread__worker(L);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  int listed = resume_begin(w, co);
  int status = lua_pcall(L, n, LUA_MULTRET, 0);
  resume_end(w, listed);
  if (status != LUA_OK) return lua_error(L); /* the coroutine's error, as wrap raises it */
  return lua_gettop(L);
}

/* coroutine.wrap in a worker: the standard one (upvalue 1), its coroutine listed while it
 * runs. The standard wrap's function keeps its coroutine as its first upvalue. */
static int worker_wrap(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  lua_getupvalue(L, -1, 1);
  if (!lua_isthread(L, -1) || !thread__worker(L)) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pushcclosure(L, worker_wrapped, 2);
  return 1;
}

static int preload_json(lua_State *L) {
  if (corio__load_script(L, "corio.json") != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* The worker's state: the standard libraries, the caller's package.path and cpath, corio.json,
 * the Channel class, then the pool's init module. */
static int worker_setup(lua_State *L) {
  worker *w = lua_touserdata(L, 1);
  pool *p = w->p;
  luaL_openlibs(L);
  lua_pushlightuserdata(L, w);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
  lua_getglobal(L, "package");
  if (p->path) {
    lua_pushstring(L, p->path);
    lua_setfield(L, -2, "path");
  }
  if (p->cpath) {
    lua_pushstring(L, p->cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, preload_json);
  lua_setfield(L, -2, "corio.json");
  lua_pushcfunction(L, luaopen_corio_json); /* its codec, in C (bindings/json): per state */
  lua_setfield(L, -2, "corio._json");
  lua_pop(L, 2);
  lua_getglobal(L, "coroutine");
  lua_getfield(L, -1, "resume");
  lua_pushcclosure(L, worker_resume, 1);
  lua_setfield(L, -2, "resume");
  lua_getfield(L, -1, "wrap");
  lua_pushcclosure(L, worker_wrap, 1);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 1);
  thread__chan_open(L);
  if (p->init) {
    lua_getglobal(L, "require");
    lua_pushstring(L, p->init);
    lua_call(L, 1, 0);
  }
  return 0;
}

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static lua_State *worker_state(worker *w) {
  lua_State *L = lua_newstate(worker_alloc, w);
  if (!L) {
    w->init_err = strdup("thread: cannot create a Lua state for the worker");
    return NULL;
  }
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, worker_setup);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    size_t n = strlen(m ? m : "?") + sizeof "thread pool init: ";
    w->init_err = malloc(n);
    if (w->init_err) snprintf(w->init_err, n, "thread pool init: %s", m ? m : "?");
  }
  lua_settop(L, 0);
  return L;
}

/* Inside the job's protected call: [job] -> results encoded into job->out. */
static int job_body(lua_State *L) {
  job *j = lua_touserdata(L, 1);
  int n = thread__decode(L, &j->in); /* [job, f|module, (name,) args...] */
  if (j->kind == K_CALL) {
    const char *mod = lua_tostring(L, 2), *name = lua_tostring(L, 3);
    lua_getglobal(L, "require");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) != LUA_TTABLE || lua_getfield(L, -1, name) != LUA_TFUNCTION)
      return luaL_error(L, "thread.call: module '%s' has no function '%s'", mod, name);
    lua_replace(L, 2);
    lua_settop(L, n + 1);
    lua_remove(L, 3);
    n--;
  }
  lua_call(L, n - 1, LUA_MULTRET);
  thread__encode(L, 2, lua_gettop(L) - 1, &j->out, "result", 1, FROM_THREAD);
  return 0;
}

void thread__job_fail(job *j, const char *msg, size_t len) {
  thread__tbuf_free(&j->out);
  if (!msg) msg = "thread: no worker state", len = strlen(msg);
  j->failed = thread__tbuf_string(&j->out, msg, len) == 0 ? 1 : 2;
}

static void run_job(worker *w, lua_State *L, job *j) {
  if (w->init_err) {
    thread__job_fail(j, w->init_err, strlen(w->init_err));
    return;
  }
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, job_body);
  lua_pushlightuserdata(L, j);
  int status = lua_pcall(L, 1, 0, 1);
  if (status != LUA_OK) {
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    if (!msg) msg = "not enough memory", len = strlen(msg);
    thread__job_fail(j, msg, len);
  }
  lua_settop(L, 0);
  if (status == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT);
}

void thread__worker_main(void *arg) {
  worker *w = arg;
  pool *p = w->p;
#ifdef __linux__
  /* A nice value per thread (Linux threads have their own): the loop thread, which wakes
   * often and briefly, then wins the CPU back from the workers at once. Best effort. */
  if (p->nice > 0) {
    id_t tid = (id_t)syscall(SYS_gettid);
    (void)setpriority(PRIO_PROCESS, tid, getpriority(PRIO_PROCESS, tid) + p->nice);
  }
#endif
  lua_State *L = worker_state(w);
  uv_mutex_lock(&p->lock);
  w->L = L;
  for (;;) {
    while (!p->qhead && !p->closing) {
      p->nidle++;
      uv_cond_wait(&p->cond, &p->lock);
      p->nidle--;
      if (p->nwoken > 0) p->nwoken--;
    }
    job *j = p->qhead;
    if (!j) break; /* closing, nothing queued */
    p->qhead = j->next;
    if (!p->qhead) p->qtail = NULL;
    j->next = NULL;
    j->state = J_RUNNING;
    j->worker = w;
    w->job = j;
    uv_mutex_unlock(&p->lock);
    if (L) run_job(w, L, j);
    else thread__job_fail(j, w->init_err, w->init_err ? strlen(w->init_err) : 0);
    /* One critical section hands the job back and (next turn of the loop) takes the next. */
    uv_mutex_lock(&p->lock);
    w->job = NULL;
    if (atomic_load(&w->interrupt)) {
      atomic_store(&w->interrupt, 0);
      if (L) lua_sethook(L, NULL, 0, 0);
      /* coroutines that got the hook are dead (the error unwound them) or were left
       * suspended by the job: their hook raises "cancelled" if resumed by a later job. */
    }
    w->nresuming = 0;
    j->worker = NULL;
    j->state = J_DONE;
    if (p->dtail) p->dtail->next = j;
    else p->dhead = j;
    p->dtail = j;
    /* One wake-up for however many jobs finish before the loop gets to them. */
    if (!p->signalled && p->async) {
      p->signalled = 1;
      uv_async_send(p->async);
    }
  }
  w->L = NULL;
  uv_mutex_unlock(&p->lock);
  if (L) lua_close(L);
}
