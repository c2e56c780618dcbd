/* The scheduler (as Lua's ldo.c is to lcorolib.c): the ready queue, the one resume path
 * (step), the one await, wake, cancel, done callbacks, and the loop drivers. Every change of a
 * task's state happens in this file. Task records are in task.c, joins in join.c, the
 * corio.core library in lcore.c. */
#include <stdio.h>
#include <string.h>

#include "scheduler.h"

static char TAG;  /* the value a scheduler yield carries through user coroutines */
static char SOON; /* registry key: array of {fn, task} done callbacks to run */

static void drive(lua_State *L, corio_task *t, const char *op);
static const corio_wait AWAIT_WAIT;

/* ---- the ready queue --------------------------------------------------------------------- */

static void idle_cb(uv_idle_t *h) {
  (void)h; /* only there so that poll does not block while tasks are ready */
}

static void kick(corio_runtime *rt) {
  if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, idle_cb);
}

void corio__make_ready(corio_runtime *rt, corio_task *t) {
  t->state = CORIO_READY;
  if (!(t->flags & CORIO_F_MAIN)) {
    t->next_ready = NULL;
    if (rt->ready_tail) rt->ready_tail->next_ready = t;
    else rt->ready_head = t;
    rt->ready_tail = t;
    if (t->priority) rt->ready_prio++;
  }
  if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, idle_cb);
}

void corio__set_priority(corio_runtime *rt, corio_task *t, int priority) {
  /* keep the count of prioritised ready tasks right if t is in the ready queue */
  if (t->state == CORIO_READY && !(t->flags & CORIO_F_MAIN))
    rt->ready_prio += (priority != 0) - (t->priority != 0);
  t->priority = priority;
}

/* Shutdown after a memory error: the ready tasks are not run any more (lua_close collects
 * them, their cleanup unrun): at the memory edge each would fail, and registering thousands
 * of failed tasks for finalization costs a walk of the heap each. */
void corio__drop_ready(corio_runtime *rt) {
  for (corio_task *t = rt->ready_head, *next; t; t = next) {
    next = t->next_ready;
    t->next_ready = NULL;
  }
  rt->ready_head = rt->ready_tail = NULL;
  rt->ready_prio = 0;
}

int corio__has_ready(corio_runtime *rt) {
  return rt->ready_head || rt->soon_pending;
}

/* ---- done callbacks ---------------------------------------------------------------------- */

void corio__sched_open(lua_State *L) {
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SOON);
}

void corio__call_soon(lua_State *L, int fnidx, int taskidx) {
  corio_runtime *rt = corio__rt(L);
  fnidx = lua_absindex(L, fnidx);
  taskidx = lua_absindex(L, taskidx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SOON);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, fnidx);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, taskidx);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  rt->soon_pending++;
  kick(rt);
}

static void queue_callbacks(lua_State *L, int tidx) {
  int top = lua_gettop(L);
  if (corio__push_extras(L, tidx, 0) == LUA_TTABLE && lua_getfield(L, -1, "callbacks") == LUA_TTABLE) {
    corio_runtime *rt = corio__rt(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &SOON);
    int base = (int)luaL_len(L, -1);
    int n = (int)luaL_len(L, -2);
    for (int i = 1; i <= n; i++) {
      lua_createtable(L, 2, 0);
      lua_rawgeti(L, -3, i);
      lua_rawseti(L, -2, 1);
      lua_pushvalue(L, tidx);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, base + i);
    }
    rt->soon_pending += n;
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, -3, "callbacks");
    kick(rt);
  }
  lua_settop(L, top);
}

/* The task at tidx (a corio.Task on L) is done; its outcome value(s) were stored. */
void corio__finish(lua_State *L, int tidx, corio_task *t, int outcome) {
  corio_runtime *rt = corio__rt(L);
  t->state = CORIO_DONE;
  t->outcome = (unsigned char)outcome;
  if (!(t->flags & CORIO_F_FUTURE)) rt->tasks_finished++;
  t->flags &= ~CORIO_F_CANCELLING;
  t->wait = NULL;
  if (t->anchor != LUA_NOREF) {
    corio__unanchor(L, t->anchor);
    t->anchor = LUA_NOREF;
    rt->live_tasks--;
  }
  int had_listeners = t->listeners != NULL;
  while (t->listeners) {
    corio_listener *l = t->listeners;
    corio__unlisten(l);
    l->fire(rt, l, t);
  }
  if (t->flags & CORIO_F_CALLBACKS) {
    had_listeners = 1;
    queue_callbacks(L, tidx);
  }
  /* A failed task gets the metatable with __gc (its error is reported if nobody looks), but
   * not once tasks die of memory errors: setting a finalizer walks the heap, and a storm of
   * such failures at the memory edge would take quadratic time. */
  if (outcome == CORIO_ERROR && !rt->nomem) {
    corio__mark_failed(L, tidx);
  }
  if (outcome == CORIO_ERROR && !had_listeners && rt->eager_report) corio__report(rt, L, tidx);
}

/* ---- a task's body ----------------------------------------------------------------------
 * Every task's coroutine starts in corio__task_entry, which calls the body under a yieldable
 * protected call (lua_pcallk with a continuation). When the body fails or is cancelled, Lua
 * then runs its pending <close> handlers inside the coroutine, where they may suspend: cleanup
 * can await (sleep, a queue put, a graceful close), as `finally: await ...` does in asyncio.
 * An error that reached lua_resume instead would have its handlers run by lua_resetthread,
 * where nothing can suspend. The continuation re-raises the error once the handlers have run,
 * so step sees a failed task as before. */

/* The body's message handler: runs where the error was raised, before anything unwinds, and
 * keeps the traceback there (a cancellation is no failure: none is taken). */
int corio__task_msgh(lua_State *co) {
  corio_task *t = corio__rt(co)->current;
  if (t && !(t->flags & CORIO_F_MAIN) && t->anchor != LUA_NOREF && !corio__is_cancelled(co, 1) &&
      lua_checkstack(co, 4)) {
    corio__push_anchor(co, t->anchor);
    corio__push_extras(co, -1, 1);
    luaL_traceback(co, co, NULL, 1);
    /* the last frame is corio__task_entry itself: not the user's */
    size_t len;
    const char *tb = lua_tolstring(co, -1, &len);
    static const char entry[] = "\n\t[C]: in ?";
    if (len >= sizeof entry - 1 && strcmp(tb + len - (sizeof entry - 1), entry) == 0) {
      lua_pushlstring(co, tb, len - (sizeof entry - 1));
      lua_remove(co, -2);
    }
    lua_setfield(co, -2, "traceback");
  }
  lua_settop(co, 1);
  return 1;
}

static int task_entry_k(lua_State *co, int status, lua_KContext ctx) {
  (void)ctx;
  if (status == LUA_ERRMEM) corio__rt(co)->nomem++; /* re-raised below as a plain error */
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(co); /* its <close>s have run */
  return lua_gettop(co) - 1; /* the body's results, above the message handler */
}

int corio__task_entry(lua_State *co) {
  int nargs = lua_gettop(co) - 1; /* body args... */
  lua_pushcfunction(co, corio__task_msgh);
  lua_insert(co, 1);
  return task_entry_k(co, lua_pcallk(co, nargs, LUA_MULTRET, 1, 0, task_entry_k), 0);
}

/* ---- the one resume path ----------------------------------------------------------------- */

/* With corio.set_debug{times = true}: add one slice of `ns` to the task's totals, kept in its
 * extras table (run, max: seconds) so that the record itself stays as small as before. */
static void add_run_time(lua_State *L, int tidx, uint64_t ns) {
  double s = (double)ns / 1e9;
  corio__push_extras(L, tidx, 1);
  lua_getfield(L, -1, "run");
  lua_pushnumber(L, lua_tonumber(L, -1) + s);
  lua_setfield(L, -3, "run");
  lua_getfield(L, -2, "max");
  if (lua_tonumber(L, -1) < s) {
    lua_pushnumber(L, s);
    lua_setfield(L, -4, "max");
  }
  lua_pop(L, 3);
}

static void step(corio_runtime *rt, corio_task *t) {
  lua_State *L = rt->L, *co = t->co;
  int nres, st, nargs = 0;
  lua_checkstack(L, 8);
  corio__push_anchor(L, t->anchor);  /* the task stays reachable while it runs */
  int tidx = lua_gettop(L);
  if (lua_status(co) == LUA_OK) {
    nargs = lua_gettop(co) - 1;  /* first run: the function and its arguments */
    if (t->flags & CORIO_F_CANCELLING) {
      /* cancelled before it ever ran: it never runs */
      lua_settop(co, 0);
      corio__push_cancel_error(L, tidx);
      corio__store_results(L, tidx, L, 1);
      corio__finish(L, tidx, t, CORIO_CANCELLED);
      t->co = NULL;
      lua_settop(L, tidx - 1);
      return;
    }
  }
  t->state = CORIO_RUNNING;
  t->resumes++;
  rt->resumes++;
  corio_task *prev = rt->current;
  rt->current = t;
  if (rt->timing || rt->watchdog) {
    corio_watchdog *wd = rt->watchdog;
    uint64_t t0 = uv_hrtime();
    if (wd) corio__watchdog_enter(wd, t, t0);
    st = lua_resume(co, L, nargs, &nres);
    if (wd && rt->watchdog == wd) corio__watchdog_leave(wd); /* the task may have stopped it */
    if (rt->timing) add_run_time(L, tidx, uv_hrtime() - t0);
  } else {
    st = lua_resume(co, L, nargs, &nres);
  }
  rt->current = prev;
  if (st == LUA_YIELD) {
    if (nres == 1 && lua_touserdata(co, -1) == &TAG) {
      lua_pop(co, 1);  /* suspended by corio__await: the wait is armed */
      lua_settop(L, tidx - 1);
      return;
    }
    /* A plain coroutine.yield with no resumer of the user's own: the task fails. */
    lua_pop(co, nres);
    st = lua_resetthread(co);
    lua_settop(co, 0);
    lua_pushliteral(co, "attempt to yield from outside a coroutine: coroutine.yield was called "
                        "in a task with no coroutine of its own to receive it (to let other tasks "
                        "run, call corio.sleep(0))");
    st = LUA_ERRRUN;
    nres = 0;
  }
  if (st == LUA_OK && (t->flags & CORIO_F_CANCELLING)) {
    /* It returned with a cancel requested and never delivered (it cancelled itself, or was
     * cancelled while ready): the request is not dropped, the task ends cancelled. */
    lua_settop(co, 0);
    corio__push_cancel_error(L, tidx);
    corio__store_results(L, tidx, L, 1);
    t->co = NULL;
    corio__finish(L, tidx, t, CORIO_CANCELLED);
  } else if (st == LUA_OK) {
    corio__store_results(L, tidx, co, nres);
    t->co = NULL;
    corio__finish(L, tidx, t, CORIO_OK);
  } else {
    int outcome = corio__is_cancelled(co, -1) ? CORIO_CANCELLED : CORIO_ERROR;
    if (st == LUA_ERRMEM) rt->nomem++;
    if (outcome == CORIO_ERROR && st != LUA_ERRMEM && lua_status(co) != LUA_OK &&
        !(corio__push_extras(L, tidx, 0) == LUA_TTABLE &&
          lua_getfield(L, -1, "traceback") == LUA_TSTRING)) {
      /* failed outside the body (the message handler took none): the stack is intact until
       * the thread is reset, take the traceback now (not for a memory error: it would need
       * the memory that just ran out) */
      corio__push_extras(L, tidx, 1);
      luaL_traceback(L, co, NULL, 0);
      lua_setfield(L, -2, "traceback");
    }
    lua_settop(L, tidx);
    if (lua_status(co) != LUA_OK) {
      /* run the pending <close> handlers; an error in one replaces the task's error */
      lua_resetthread(co);
    }
    if (lua_gettop(co) == 0) lua_pushnil(co);
    lua_xmove(co, L, 1);
    lua_settop(co, 0);
    if (outcome == CORIO_ERROR && corio__is_cancelled(L, -1)) outcome = CORIO_CANCELLED;
    corio__store_results(L, tidx, L, 1);
    t->co = NULL;
    corio__finish(L, tidx, t, outcome);
  }
  lua_settop(L, tidx - 1);
}

static void run_soon(corio_runtime *rt) {
  lua_State *L = rt->L;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SOON);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SOON);
  int n = (int)luaL_len(L, -1);
  rt->soon_pending = 0;
  corio_task *prev = rt->current;
  rt->current = NULL;  /* callbacks cannot suspend */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      corio__push_errmsg(L, -1);
      lua_pushfstring(L, "corio: error in a done callback: %s", lua_tostring(L, -1));
      rt->on_error(rt->on_error_ud, lua_tostring(L, -1));
      lua_pop(L, 3);
    }
    lua_pop(L, 1);
  }
  rt->current = prev;
  lua_pop(L, 1);
}

/* Stable merge sort of the ready list by decreasing priority (equal priorities keep the
 * order in which they became ready). Only called when some ready task has a priority. */
static corio_task *merge_by_priority(corio_task *a, corio_task *b) {
  corio_task head, *tail = &head;
  while (a && b) {
    if (b->priority > a->priority) { tail->next_ready = b; b = b->next_ready; }
    else { tail->next_ready = a; a = a->next_ready; }
    tail = tail->next_ready;
  }
  tail->next_ready = a ? a : b;
  return head.next_ready;
}

static corio_task *sort_by_priority(corio_task *list) {
  if (!list || !list->next_ready) return list;
  corio_task *slow = list, *fast = list->next_ready;
  while (fast && fast->next_ready) {
    slow = slow->next_ready;
    fast = fast->next_ready->next_ready;
  }
  corio_task *second = slow->next_ready;
  slow->next_ready = NULL;
  return merge_by_priority(sort_by_priority(list), sort_by_priority(second));
}

static void run_ready(corio_runtime *rt) {
  /* One batch (a "round"): the tasks ready now. Those readied meanwhile run in the next
   * batch, after the loop has polled for I/O once, so a busy set of tasks cannot starve I/O.
   * Priorities order a round: higher first, equal ones in the order they became ready. A
   * task readied during a round waits for the next one whatever its priority, so every
   * ready task runs within one round: a low priority delays a task, never starves it. The
   * sort only happens when a ready task has a priority, so the default path stays FIFO. */
  if (rt->ready_prio && rt->ready_head) {
    rt->ready_head = sort_by_priority(rt->ready_head);
    corio_task *t = rt->ready_head;
    while (t->next_ready) t = t->next_ready;
    rt->ready_tail = t;
  }
  corio_task *last = rt->ready_tail;
  while (rt->ready_head) {
    corio_task *t = rt->ready_head;
    rt->ready_head = t->next_ready;
    if (!rt->ready_head) rt->ready_tail = NULL;
    t->next_ready = NULL;
    if (t->priority) rt->ready_prio--;
    step(rt, t);
    if (rt->soon_pending) run_soon(rt);
    if (t == last) break;
  }
  if (rt->soon_pending) run_soon(rt);
  if (!rt->ready_head && !(rt->main_task.state == CORIO_READY))
    uv_idle_stop(&rt->idle);
}

/* ---- suspending -------------------------------------------------------------------------- */

/* The checks of corio__check_suspend, leaving a pending cancel to the caller. */
static corio_task *can_suspend(lua_State *L, const char *op) {
  corio_runtime *rt = corio__rt(L);
  corio_task *t = rt->current;
  lua_State *cur = L;
  if (!t) return luaL_error(L, "%s: cannot suspend here: a done callback is not a task (spawn "
                               "a task from it instead)", op), NULL;
  for (struct corio_nest *n = rt->nest; n && n->co == cur; n = n->prev) {
    if (!lua_isyieldable(cur)) goto cannot;
    cur = n->from;
  }
  if (t->flags & CORIO_F_MAIN) {
    if (rt->in_loop)
      return luaL_error(L, "%s: cannot wait here: this code runs inside the event loop's "
                           "callback, not in a task (spawn a task for it)", op), NULL;
  } else if (cur != t->co || !lua_isyieldable(cur)) {
    goto cannot;
  }
  return t;
cannot:
  luaL_error(L, "%s: cannot suspend here: the task is inside a call that Lua cannot suspend "
                "(a table.sort comparator, a string.gsub callback, __tostring, __gc, a metamethod "
                "called from C, or the body of a module being required)", op);
  return NULL;
}

corio_task *corio__check_suspend(lua_State *L, const char *op) {
  corio_task *t = can_suspend(L, op);
  if (t->flags & CORIO_F_CANCELLING) {
    t->flags &= ~CORIO_F_CANCELLING;
    corio__raise_cancelled(L, t);
  }
  return t;
}

static int await_resume(lua_State *L, int status, lua_KContext ctx) {
  corio_runtime *rt = corio__rt(L);
  corio_task *t = rt->current;
  lua_KFunction k = t->k;
  (void)ctx;
  ctx = t->kctx;
  t->k = NULL;
  t->wait = NULL;
  if (t->flags & CORIO_F_INTERRUPTED) {
    t->flags &= ~CORIO_F_INTERRUPTED;
    return luaL_error(L, "interrupted!");
  }
  if (t->flags & CORIO_F_WOKE_CANCEL) {
    t->flags &= ~(CORIO_F_WOKE_CANCEL | CORIO_F_CANCELLING);
    if (t->flags & CORIO_F_CANCEL_FUTURE) {
      /* it was awaiting a Future (index 1 of this call): cancelling the awaiter cancels the
       * Future, as in asyncio, so nobody completes it for a waiter that is gone */
      t->flags &= ~CORIO_F_CANCEL_FUTURE;
      corio_task *f = corio__testtask(L, 1);
      if (f && f->state != CORIO_DONE) {
        f->cancel_count++;
        corio__cancel_future_at(L, 1, f);
      }
    }
    return corio__raise_cancelled(L, t);
  }
  if (t->flags & CORIO_F_CANCELLING) {
    /* cancelled after its operation completed but before it ran: deliver it now */
    t->flags &= ~CORIO_F_CANCELLING;
    return corio__raise_cancelled(L, t);
  }
  return k(L, status, ctx);
}

static const corio_wait YIELD_NOW = {"sleep(0)", NULL, NULL};

static int never_poll(corio_runtime *rt) {
  (void)rt;
  return 1;
}

int corio__await(lua_State *L, const corio_wait *wait, void *data, lua_KFunction k,
                 lua_KContext ctx) {
  return corio__await_named(L, wait, wait->name, data, k, ctx);
}

int corio__await_named(lua_State *L, const corio_wait *wait, const char *name, void *data,
                       lua_KFunction k, lua_KContext ctx) {
  corio_runtime *rt = corio__rt(L);
  corio_task *t = rt->current;
  t->wait = wait;
  t->wait_name = name;
  t->wait_data = data;
  t->wait_since = (uint32_t)uv_now(rt->loop);
  t->k = k;
  t->kctx = ctx;
  t->state = CORIO_WAITING;
  if (wait == &YIELD_NOW) {
    corio__wake(rt, t);
    if (t->flags & CORIO_F_MAIN) {  /* top level: let the tasks ready now have their turn */
      corio__turn(rt, UV_RUN_NOWAIT, never_poll);
      t->state = CORIO_RUNNING;
      return await_resume(L, LUA_YIELD, 0);
    }
  }
  if (t->flags & CORIO_F_MAIN) {
    drive(L, t, name);
    return await_resume(L, LUA_YIELD, 0);
  }
  lua_pushlightuserdata(L, &TAG);
  return lua_yieldk(L, 1, 0, await_resume);
}

void corio__wake(corio_runtime *rt, corio_task *t) {
  if (t->state != CORIO_WAITING) return;
  t->wait = NULL;
  corio__make_ready(rt, t);
}

int corio__cancel(lua_State *L, corio_task *t, int msgidx) {
  corio_runtime *rt = corio__rt(L);
  if (t->state == CORIO_DONE) return 0;
  if (msgidx && t->anchor != LUA_NOREF) {
    corio__push_anchor(L, t->anchor);
    corio__push_extras(L, -1, 1);
    lua_pushvalue(L, msgidx);
    lua_setfield(L, -2, "cancel_message");
    lua_pop(L, 2);
  }
  t->cancel_count++;
  t->flags |= CORIO_F_CANCELLING;
  if (t->state == CORIO_WAITING && t->wait == &AWAIT_WAIT && !(t->flags & CORIO_F_PROPAGATING)) {
    corio_task *target = t->wait_data;
    if (!(target->flags & CORIO_F_FUTURE)) {
      /* Awaiting a task: the cancel goes down to it and this task keeps waiting until it has
       * finished (its cleanup included), then ends with its outcome (Cancelled, an error its
       * cleanup raised, or a value if it swallowed the cancel), as asyncio passes a task's
       * cancel to the future it waits on. The flag breaks await cycles: a task met again on
       * the way down is woken with Cancelled instead. */
      t->flags &= ~CORIO_F_CANCELLING;
      t->flags |= CORIO_F_PROPAGATING;
      corio__cancel(L, target, 0);
      t->flags &= ~CORIO_F_PROPAGATING;
      return 1;
    }
    t->flags |= CORIO_F_CANCEL_FUTURE; /* its continuation cancels the Future */
  }
  if (t->state == CORIO_WAITING) {
    const corio_wait *w = t->wait;
    if (w && w->cancel) w->cancel(L, t, t->wait_data);
    t->flags |= CORIO_F_WOKE_CANCEL;
    t->wait = NULL;
    corio__make_ready(rt, t);
  }
  return 1;
}

/* ---- corio.sleep(0) support and the generic await on a task ----------------------------- */

int corio__yield_now(lua_State *L, lua_KFunction k, lua_KContext ctx) {
  return corio__await(L, &YIELD_NOW, NULL, k, ctx);
}

static void await_fire(corio_runtime *rt, corio_listener *l, corio_task *done) {
  (void)done;
  corio__wake(rt, container_of(l, corio_task, awaiting));
}

/* Undo an await: stop listening. (Cancelling an awaiter passes the cancel down to what it
 * awaits in corio__cancel; this runs when the wait is given up: a cycle, or top-level code
 * that would wait forever.) */
static void await_cancel(lua_State *L, corio_task *t, void *data) {
  (void)L;
  (void)data;
  corio__unlisten(&t->awaiting);
}

/* `await task "fetch#12"`; a Future awaited with a reason (corio.waiters: f:await("Queue:get",
 * q)) shows it, in the object's words if it has some (obs.c). On the suspended frame the awaited
 * value is task_await's first argument, the reason its second, the object its third. */
static void await_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  corio_task *target = data;
  (void)t;
  if ((target->flags & CORIO_F_FUTURE) && lua_type(co, 2) == LUA_TSTRING) {
    lua_pushstring(L, lua_tostring(co, 2));
    corio__obs_object_reason(L, co, 3);
    return;
  }
  if (corio__testtask(co, 1) == target) {
    lua_pushvalue(co, 1);
    lua_xmove(co, L, 1);
    corio__push_name(L, -1, target);
    lua_pushfstring(L, "await %s \"%s\"", (target->flags & CORIO_F_FUTURE) ? "Future" : "task",
                    lua_tostring(L, -1));
    lua_replace(L, -3);
    lua_pop(L, 1);
    return;
  }
  lua_pushliteral(L, "await");
}

static const corio_wait AWAIT_WAIT = {"await", await_cancel, await_describe};

/* What the waiting task t waits for, in words (corio.ps): its wait's describe, else its name. */
void corio__push_wait_reason(lua_State *L, corio_task *t) {
  if (t->state != CORIO_WAITING || !t->wait) {
    lua_pushstring(L, t->state == CORIO_READY ? "ready" : corio__state_name(t));
    return;
  }
  if (t->wait->describe && t->co && !(t->flags & CORIO_F_MAIN) && lua_checkstack(t->co, 2)) {
    t->wait->describe(L, t, t->co, t->wait_data);
    return;
  }
  lua_pushstring(L, t->wait_name ? t->wait_name : t->wait->name);
}

/* The task t awaits (pushed, as a Task or Future), or nothing: returns 1 if pushed. */
int corio__push_awaited(lua_State *L, corio_task *t) {
  if (t->state != CORIO_WAITING || t->wait != &AWAIT_WAIT || !t->co) return 0;
  if (corio__testtask(t->co, 1) != t->wait_data || !lua_checkstack(t->co, 1)) return 0;
  lua_pushvalue(t->co, 1);
  lua_xmove(t->co, L, 1);
  return 1;
}

int corio__interrupt_main(lua_State *L) {
  corio_runtime *rt = corio__rt(L);
  corio_task *t = &rt->main_task;
  if (t->state != CORIO_WAITING) return 0;
  if (t->wait == &AWAIT_WAIT) corio__unlisten(&t->awaiting);  /* the awaited task runs on */
  else if (t->wait && t->wait->cancel) t->wait->cancel(L, t, t->wait_data);
  t->flags |= CORIO_F_INTERRUPTED;
  t->wait = NULL;
  corio__make_ready(rt, t);
  return 1;
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return corio__push_outcome(L, 1, lua_touserdata(L, 1));
}

/* task:await() on a task not done yet, the task alone on the stack: suspend until it is
 * done, then give its results or raise its error. */
int corio__await_task(lua_State *L, corio_task *t) {
  corio_task *me = can_suspend(L, "await");
  if (me == t) return luaL_error(L, "await: a task cannot await itself");
  if (me->flags & CORIO_F_CANCELLING) {
    /* A cancel requested before this await (the task cancelled itself, or was cancelled while
     * ready) is passed down to what it awaits, as asyncio does, rather than leaving it
     * orphaned: a Future is cancelled at once, a task is cancelled and awaited. */
    me->flags &= ~CORIO_F_CANCELLING;
    if (t->flags & CORIO_F_FUTURE) {
      t->cancel_count++;
      corio__cancel_future_at(L, 1, t);
      return corio__push_outcome(L, 1, t);
    }
    corio__cancel(L, t, 0);
  }
  corio__listen(t, &me->awaiting, await_fire);
  return corio__await(L, &AWAIT_WAIT, t, await_k, 0);
}

/* The future at idx is cancelled: it finishes with Cancelled (its cancel message, if any). */
void corio__cancel_future_at(lua_State *L, int idx, corio_task *f) {
  idx = lua_absindex(L, idx);
  corio__push_cancel_error(L, idx);
  corio__store_results(L, idx, L, 1);
  corio__finish(L, idx, f, CORIO_CANCELLED);
}

int corio__cancel_main(lua_State *L) {
  return corio__cancel(L, &corio__rt(L)->main_task, 0);
}

/* ---- driving the loop ------------------------------------------------------------------- */

/* (lightuserdata rt) -> nothing: run_ready under lua_pcall */
static int run_ready_p(lua_State *L) {
  run_ready(lua_touserdata(L, 1));
  return 0;
}

/* Run the ready tasks where a memory error in their bookkeeping (on the main state, outside
 * every task) can neither unwind through uv_run nor reach Lua's panic handler, which aborts.
 * A task's own memory errors are caught inside its coroutine and fail that task; one here
 * means the heap is exhausted for the scheduler itself, so the loop stops (rt->oom) and
 * whatever drives it reports Lua's memory error: corio__drive and the end of a script raise
 * it, corio_run and corio_step return CORIO_ENOMEM. Going on would only lose task after task.
 * One protected call per loop turn, not per task: the step stays as cheap. */
static void run_ready_protected(corio_runtime *rt) {
  lua_State *L = rt->L;
  corio_task *current = rt->current;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 2)) return; /* run them next turn */
  lua_pushcfunction(L, run_ready_p);
  lua_pushlightuserdata(L, rt);
  int st = lua_pcall(L, 1, 0, 0);
  if (st != LUA_OK && st != LUA_ERRMEM) lua_error(L); /* a Ctrl-C hook on L: as before */
  if (st == LUA_ERRMEM) {
    rt->current = current;
    lua_settop(L, top);
    rt->oom = 1;
    uv_stop(rt->loop);
  }
}

static void check_cb(uv_check_t *h) {
  corio_runtime *rt = h->data;
  rt->in_loop++;
  run_ready_protected(rt);
  rt->in_loop--;
}

int corio__turn(corio_runtime *rt, uv_run_mode mode, int (*skip_poll)(corio_runtime *rt)) {
  int alive = 0;
  if (rt->oom) return 0;
  rt->in_loop++;
  if (rt->ready_head || rt->soon_pending) run_ready_protected(rt);
  if (!rt->oom && (!skip_poll || !skip_poll(rt))) alive = uv_run(rt->loop, mode);
  rt->in_loop--;
  return !rt->oom && (alive || rt->ready_head != NULL);
}

static int main_woken(corio_runtime *rt) {
  return rt->main_task.state != CORIO_WAITING;
}

/* Drive the loop from top-level code until `t` is woken. Raises if the loop cannot make
 * progress (nothing left that could wake it) or if called from inside the loop. */
static void drive(lua_State *L, corio_task *t, const char *op) {
  corio_runtime *rt = corio__rt(L);
  while (t->state == CORIO_WAITING) {
    int alive = corio__turn(rt, UV_RUN_ONCE, main_woken);
    if (rt->oom) corio__nomem(L);
    if (t->state != CORIO_WAITING) break;
    if (!alive) {
      const corio_wait *w = t->wait;
      if (w && w->cancel) w->cancel(L, t, t->wait_data);
      t->wait = NULL;
      t->state = CORIO_RUNNING;
      luaL_error(L, "%s: would wait forever: no task, timer or I/O is left that could finish it",
                 op);
    }
  }
  t->state = CORIO_RUNNING;
}

int corio__run_until_idle(corio_runtime *rt) {
  if (rt->in_loop) return -1;
  while (corio__turn(rt, UV_RUN_ONCE, NULL)) {
  }
  return rt->oom ? CORIO_ENOMEM : 0;
}

/* The scheduler's own handles: the check that runs ready tasks, the idle that keeps poll from
 * blocking while tasks are ready; and the timer heap's timer. */
void corio__handles_init(corio_runtime *rt) {
  rt->tag = &TAG;
  uv_check_init(rt->loop, &rt->check);
  rt->check.data = rt;
  uv_check_start(&rt->check, check_cb);
  uv_unref((uv_handle_t *)&rt->check);
  uv_idle_init(rt->loop, &rt->idle);
  rt->idle.data = rt;
  corio__own_handle(rt, (uv_handle_t *)&rt->check);
  corio__own_handle(rt, (uv_handle_t *)&rt->idle);
  corio__timers_init(rt);
}

/* ---- what the REPL asks of the scheduler (host.h) ------------------------------------------ */

int corio__hook_running(corio_runtime *rt, lua_State *L, lua_Hook hook, int mask, int top,
                        int task) {
  if (top && rt->in_loop == 0) {
    /* busy top-level code, perhaps inside coroutines it resumed */
    lua_sethook(L, hook, mask, 1);
    for (struct corio_nest *c = rt->nest; c; c = c->prev) lua_sethook(c->co, hook, mask, 1);
    return 1;
  }
  if (task && rt->in_loop > 0 && rt->current && rt->current->co) {
    /* a task that does not yield: its innermost coroutine */
    lua_sethook(rt->nest ? rt->nest->co : rt->current->co, hook, mask, 1);
    return 1;
  }
  return 0;
}

int corio__running(lua_State *L) {
  corio_task *t = corio__rt(L)->current;
  if (t && t->co && !(t->flags & CORIO_F_MAIN)) return CORIO_RUNNING_TASK;
  return t ? CORIO_RUNNING_MAIN : CORIO_RUNNING_CALLBACK;
}

int corio__cancel_running(lua_State *L) {
  corio_task *t = corio__rt(L)->current;
  corio__cancel(L, t, 0);
  return corio__raise_cancelled(L, t);
}

/* ---- what the command asks of the scheduler on SIGINT and SIGTERM (host.h) ----------------- */

int corio__in_loop(corio_runtime *rt) {
  return rt->in_loop > 0;
}

int corio__hook_signal(corio_runtime *rt, lua_State *L, lua_Hook top, lua_Hook task, int count) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  corio_task *m = &rt->main_task, *t = rt->current;
  if (rt->in_loop == 0) {
    /* between two turns of a top-level await: the loop's wake-up cancels the wait instead */
    if (m->state == CORIO_WAITING || m->state == CORIO_READY) return 0;
    return corio__hook_running(rt, L, top, mask, 1, 0);
  }
  if (t && t->co && !(t->flags & CORIO_F_MAIN)) {
    /* A task runs. Its innermost coroutine is the newest nest frame if one was resumed from
     * the task's own coroutine (frames below it may belong to top-level code). */
    lua_State *co = t->co;
    for (struct corio_nest *n = rt->nest; n; n = n->prev)
      if (n->from == t->co) {
        co = rt->nest->co;
        break;
      }
    lua_sethook(co, task, LUA_MASKCOUNT, count);
    return 1;
  }
  return 0;
}
