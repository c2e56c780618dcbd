/* The scheduler: tasks (coroutines) and futures, the ready queue, the one resume path, the
 * one await, cancellation, joins over many tasks, done callbacks and error reports.
 * Lua module "corio.core": spawn, Future, current_task, all_tasks, is_cancelled, is_timeout,
 * Cancelled, Timeout, _wait, _collect, _cancel_all, _stats, set_debug, and Task methods. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static char TAG;        /* the value a scheduler yield carries through user coroutines */
static char TASK_MT;    /* registry keys */
static char FAILED_MT;  /* the metatable of a failed task: TASK_MT's fields plus __gc */
static char CANCELLED_MT;
static char TIMEOUT_MT;
static char SOON;       /* array of {fn, task} done callbacks to run */


/* ---- listeners --------------------------------------------------------------------------- */

void corio__listen(corio_task *target, corio_listener *l,
                   void (*fire)(corio_runtime *, corio_listener *, corio_task *)) {
  /* Appended, so that listeners fire in the order they started to listen. */
  corio_listener **pp = &target->listeners;
  while (*pp) pp = &(*pp)->next;
  l->fire = fire;
  l->next = NULL;
  l->pprev = pp;
  *pp = l;
}

void corio__unlisten(corio_listener *l) {
  if (!l->pprev) return;
  *l->pprev = l->next;
  if (l->next) l->next->pprev = l->pprev;
  l->next = NULL;
  l->pprev = NULL;
}

/* ---- task records ------------------------------------------------------------------------ */

/* Tasks carry one of two metatables: only a failed task has a __gc (to report an error
 * nobody retrieved), so that the collector does not have to finalize every task. */
static corio_task *testtask(lua_State *L, int idx) {
  corio_task *t = lua_touserdata(L, idx);
  if (t && lua_getmetatable(L, idx)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TASK_MT);
    int ok = lua_rawequal(L, -1, -2);
    if (!ok) {
      lua_rawgetp(L, LUA_REGISTRYINDEX, &FAILED_MT);
      ok = lua_rawequal(L, -1, -3);
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
    if (ok) return t;
  }
  return NULL;
}

corio_task *corio__totask(lua_State *L, int idx) {
  corio_task *t = testtask(L, idx);
  if (!t) luaL_typeerror(L, idx, CORIO_TASK);
  return t;
}

/* Push the extras table of the task at idx, creating it when `create`; returns its type. */
static int push_extras(lua_State *L, int idx, int create) {
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, 3) == LUA_TTABLE || !create) return lua_type(L, -1);
  lua_pop(L, 1);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, 3);
  return LUA_TTABLE;
}

static corio_task *new_record(lua_State *L, corio_runtime *rt) {
  corio_task *t = lua_newuserdatauv(L, sizeof *t, 3);
  memset(t, 0, sizeof *t);
  t->anchor = LUA_NOREF;
  t->timer.index = -1;
  t->id = ++rt->next_task_id;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASK_MT);
  lua_setmetatable(L, -2);
  return t;
}

corio_task *corio__spawn(lua_State *L, int fidx, int nargs) {
  corio_runtime *rt = corio__rt(L);
  lua_Debug ar;
  fidx = lua_absindex(L, fidx);
  lua_State *co = lua_newthread(L);
  lua_insert(L, fidx);                  /* co f args... */
  lua_xmove(L, co, nargs + 1);          /* co */
  corio_task *t = new_record(L, rt);    /* co task */
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, 1);          /* task */
  t->co = co;
  t->state = CORIO_PENDING;
  t->created = (double)uv_now(rt->loop) / 1e3;
  /* The spawn site: the calling function and line now, the string only when asked. */
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "fl", &ar)) {
    t->spawn_line = ar.currentline;
    lua_setiuservalue(L, -2, 2);
  }
  if (rt->debug) {
    push_extras(L, -1, 1);
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "spawn_traceback");
    lua_pop(L, 1);
  }
  t->anchor = corio__anchor(L, -1);
  rt->live_tasks++;
  corio__make_ready(rt, t);
  return t;
}

corio_task *corio__new_future(lua_State *L) {
  corio_task *t = new_record(L, corio__rt(L));
  t->flags = CORIO_F_FUTURE;
  t->state = CORIO_WAITING;
  return t;
}

/* ---- finishing ----------------------------------------------------------------------------
 * Results are kept in user value 1 (replacing the coroutine, which can then be collected):
 * nothing for no result, the value for one, a table for more. An error object likewise. */

static void store_results(lua_State *L, int tidx, lua_State *from, int n) {
  corio_task *t = lua_touserdata(L, tidx);
  luaL_checkstack(L, n + 2, "too many results");
  lua_xmove(from, L, n);  /* a no-op when from == L */
  if (n == 0) {
    lua_pushnil(L);
  } else if (n > 1) {
    lua_createtable(L, n, 0);
    lua_insert(L, -(n + 1));
    for (int i = n; i >= 1; i--) lua_rawseti(L, -(i + 1), i);  /* [tbl v1..vi] */
  }
  lua_setiuservalue(L, tidx, 1);
  t->nresults = n;
}

static void queue_callbacks(lua_State *L, int tidx) {
  int top = lua_gettop(L);
  if (push_extras(L, tidx, 0) == LUA_TTABLE && lua_getfield(L, -1, "callbacks") == LUA_TTABLE) {
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
    corio__kick(rt);
  }
  lua_settop(L, top);
}

/* The task at tidx (a corio.Task on L) is done; its outcome value(s) were stored. */
static void finished(lua_State *L, int tidx, corio_task *t, int outcome) {
  corio_runtime *rt = corio__rt(L);
  t->state = CORIO_DONE;
  t->outcome = (unsigned char)outcome;
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
  if (outcome == CORIO_ERROR) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &FAILED_MT);
    lua_setmetatable(L, tidx);
  }
  if (outcome == CORIO_ERROR && !had_listeners && rt->eager_report) corio__report(rt, L, tidx);
}

/* ---- the Cancelled and Timeout error objects ----------------------------------------------- */

static int is_instance(lua_State *L, int idx, const void *key) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
  int ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ok;
}

static void push_cancelled(lua_State *L, int msgidx) {
  if (msgidx) msgidx = lua_absindex(L, msgidx);
  lua_createtable(L, 0, 1);
  if (msgidx) {
    lua_pushvalue(L, msgidx);
    lua_setfield(L, -2, "message");
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CANCELLED_MT);
  lua_setmetatable(L, -2);
}

/* Push a Cancelled error carrying the cancel message of the task at tidx, if any. */
static void push_cancel_error(lua_State *L, int tidx) {
  if (push_extras(L, tidx, 0) == LUA_TTABLE) lua_getfield(L, -1, "cancel_message");
  else lua_pushnil(L);
  push_cancelled(L, lua_isnil(L, -1) ? 0 : -1);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

int corio__raise_cancelled(lua_State *L, corio_task *t) {
  if (t->anchor != LUA_NOREF) {
    corio__push_anchor(L, t->anchor);
    push_cancel_error(L, -1);
  } else {
    push_cancelled(L, 0);
  }
  return lua_error(L);
}

static int error_tostring(lua_State *L) {
  const char *kind = lua_tostring(L, lua_upvalueindex(1));
  lua_getfield(L, 1, "message");
  if (lua_isnil(L, -1)) lua_pushstring(L, kind);
  else {
    corio__push_errmsg(L, -1);
    lua_pushfstring(L, "%s: %s", kind, lua_tostring(L, -1));
  }
  return 1;
}

static void new_error_class(lua_State *L, const void *key, const char *name, const char *text) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushstring(L, text);
  lua_pushcclosure(L, error_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* ---- the one resume path ----------------------------------------------------------------- */

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
      push_cancel_error(L, tidx);
      store_results(L, tidx, L, 1);
      finished(L, tidx, t, CORIO_CANCELLED);
      t->co = NULL;
      lua_settop(L, tidx - 1);
      return;
    }
  }
  t->state = CORIO_RUNNING;
  corio_task *prev = rt->current;
  rt->current = t;
  st = lua_resume(co, L, nargs, &nres);
  rt->current = prev;
  if (st == LUA_ERRMEM) rt->nomem++;
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
  if (st == LUA_OK) {
    store_results(L, tidx, co, nres);
    t->co = NULL;
    finished(L, tidx, t, CORIO_OK);
  } else {
    int outcome = is_instance(co, -1, &CANCELLED_MT) ? CORIO_CANCELLED : CORIO_ERROR;
    if (outcome == CORIO_ERROR && st != LUA_ERRMEM && lua_status(co) != LUA_OK) {
      /* The stack is intact until the thread is reset: take the traceback now (not after a
       * memory error: building it would fail the same way, outside the task). */
      push_extras(L, tidx, 1);
      luaL_traceback(L, co, NULL, 0);
      lua_setfield(L, -2, "traceback");
      lua_pop(L, 1);
    }
    if (lua_status(co) != LUA_OK) {
      /* run the pending <close> handlers; an error in one replaces the task's error */
      lua_resetthread(co);
    }
    if (lua_gettop(co) == 0) lua_pushnil(co);
    lua_xmove(co, L, 1);
    lua_settop(co, 0);
    if (outcome == CORIO_ERROR && is_instance(L, -1, &CANCELLED_MT)) outcome = CORIO_CANCELLED;
    store_results(L, tidx, L, 1);
    t->co = NULL;
    finished(L, tidx, t, outcome);
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

void corio__run_ready(corio_runtime *rt) {
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
  int nomem = rt->nomem;
  while (rt->ready_head) {
    corio_task *t = rt->ready_head;
    rt->ready_head = t->next_ready;
    if (!rt->ready_head) rt->ready_tail = NULL;
    t->next_ready = NULL;
    if (t->priority) rt->ready_prio--;
    step(rt, t);
    if (rt->soon_pending) run_soon(rt);
    if (t == last || rt->nomem != nomem) break; /* out of memory: the rest wait a turn */
  }
  if (rt->soon_pending) run_soon(rt);
  if (!rt->ready_head && !(rt->main_task.state == CORIO_READY))
    uv_idle_stop(&rt->idle);
}

/* ---- suspending -------------------------------------------------------------------------- */

corio_task *corio__check_suspend(lua_State *L, const char *op) {
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
  if (t->flags & CORIO_F_CANCELLING) {
    t->flags &= ~CORIO_F_CANCELLING;
    corio__raise_cancelled(L, t);
  }
  return t;
cannot:
  luaL_error(L, "%s: cannot suspend here: the task is inside a call that Lua cannot suspend "
                "(a table.sort comparator, a string.gsub callback, __tostring, __gc, a metamethod "
                "called from C, or the body of a module being required)", op);
  return NULL;
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
    return corio__raise_cancelled(L, t);
  }
  if (t->flags & CORIO_F_CANCELLING) {
    /* cancelled after its operation completed but before it ran: deliver it now */
    t->flags &= ~CORIO_F_CANCELLING;
    return corio__raise_cancelled(L, t);
  }
  return k(L, status, ctx);
}

static const corio_wait YIELD_NOW = {"sleep(0)", NULL};

static int skip_poll(corio_runtime *rt) {
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
  t->k = k;
  t->kctx = ctx;
  t->state = CORIO_WAITING;
  if (wait == &YIELD_NOW) {
    corio__wake(rt, t);
    if (t->flags & CORIO_F_MAIN) {  /* top level: let the tasks ready now have their turn */
      corio__turn(rt, UV_RUN_NOWAIT, skip_poll);
      t->state = CORIO_RUNNING;
      return await_resume(L, LUA_YIELD, 0);
    }
  }
  if (t->flags & CORIO_F_MAIN) {
    corio__drive(L, t, name);
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
    push_extras(L, -1, 1);
    lua_pushvalue(L, msgidx);
    lua_setfield(L, -2, "cancel_message");
    lua_pop(L, 2);
  }
  t->cancel_count++;
  t->flags |= CORIO_F_CANCELLING;
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

/* Push what awaiting the done task at idx gives: its results, or raise its error. */
static int push_outcome(lua_State *L, int idx, corio_task *t) {
  t->flags |= CORIO_F_RETRIEVED;
  lua_getiuservalue(L, idx, 1);
  if (t->outcome == CORIO_OK) {
    if (t->nresults <= 1) return t->nresults;
    int n = t->nresults, tbl = lua_gettop(L);
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, tbl, i);
    return n;
  }
  return lua_error(L);
}

static void await_fire(corio_runtime *rt, corio_listener *l, corio_task *done) {
  (void)done;
  corio__wake(rt, container_of(l, corio_task, awaiting));
}

/* Cancelling a task that awaits another cancels the other too, as in asyncio; shield() is
 * the way out. */
static void await_cancel(lua_State *L, corio_task *t, void *data) {
  corio_task *target = data;
  corio__unlisten(&t->awaiting);
  /* A Future is a shared completion point: awaiting it and being cancelled leaves it be. */
  if (target && target->state != CORIO_DONE && !(target->flags & CORIO_F_FUTURE))
    corio__cancel(L, target, 0);
}

static const corio_wait AWAIT_WAIT = {"await", await_cancel};

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
  return push_outcome(L, 1, lua_touserdata(L, 1));
}

/* task:await() -> results...  [suspends]  (raises the task's error) */
static int task_await(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  lua_settop(L, 1);
  if (t->state == CORIO_DONE) return push_outcome(L, 1, t);
  corio_task *me = corio__check_suspend(L, "await");
  if (me == t) return luaL_error(L, "await: a task cannot await itself");
  corio__listen(t, &me->awaiting, await_fire);
  return corio__await(L, &AWAIT_WAIT, t, await_k, 0);
}

/* ---- Task methods ----------------------------------------------------------------------- */

static const char *state_name(corio_task *t) {
  switch (t->state) {
    case CORIO_PENDING: return "pending";
    case CORIO_READY: return "ready";
    case CORIO_RUNNING: return "running";
    case CORIO_WAITING: return "waiting";
    default:
      return t->outcome == CORIO_OK ? "done" : t->outcome == CORIO_ERROR ? "failed" : "cancelled";
  }
}

static void push_name(lua_State *L, int idx, corio_task *t) {
  if (push_extras(L, idx, 0) == LUA_TTABLE && lua_getfield(L, -1, "name") != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 2);
  lua_pushfstring(L, (t->flags & CORIO_F_FUTURE) ? "Future-%I" : "Task-%I", (lua_Integer)t->id);
}

/* Push "source:line" of where the task was spawned, or nil. */
static void push_spawn_site(lua_State *L, int idx, corio_task *t) {
  lua_Debug ar;
  if (lua_getiuservalue(L, idx, 2) != LUA_TFUNCTION) return;
  lua_getinfo(L, ">S", &ar);
  lua_pushfstring(L, "%s:%d", ar.short_src, t->spawn_line);
}

/* Push "op at source:line" for a waiting task: the innermost Lua frame of its coroutine. */
static void push_where(lua_State *L, corio_task *t) {
  lua_Debug ar;
  const char *what = t->wait ? t->wait_name : state_name(t);
  if (t->co && (t->state == CORIO_WAITING || t->state == CORIO_READY)) {
    for (int level = 0; lua_getstack(t->co, level, &ar); level++) {
      lua_getinfo(t->co, "Sl", &ar);
      if (ar.currentline > 0) {
        lua_pushfstring(L, "%s at %s:%d", what, ar.short_src, ar.currentline);
        return;
      }
    }
  }
  lua_pushstring(L, what);
}

static int task_done(lua_State *L) {
  lua_pushboolean(L, corio__totask(L, 1)->state == CORIO_DONE);
  return 1;
}

static int task_cancelled(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  lua_pushboolean(L, t->state == CORIO_DONE && t->outcome == CORIO_CANCELLED);
  return 1;
}

static void cancel_future_at(lua_State *L, int idx, corio_task *f) {
  idx = lua_absindex(L, idx);
  push_cancel_error(L, idx);
  store_results(L, idx, L, 1);
  finished(L, idx, f, CORIO_CANCELLED);
}

/* task:cancel([msg]) -> boolean  (false if it was already done) */
static int task_cancel(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  int msg = lua_isnoneornil(L, 2) ? 0 : 2;
  if (t->state == CORIO_DONE) { lua_pushboolean(L, 0); return 1; }
  if (msg) {
    push_extras(L, 1, 1);
    lua_pushvalue(L, msg);
    lua_setfield(L, -2, "cancel_message");
    lua_pop(L, 1);
  }
  if (t->flags & CORIO_F_FUTURE) {
    t->cancel_count++;
    cancel_future_at(L, 1, t);
  } else {
    corio__cancel(L, t, 0);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* task:uncancel() -> remaining cancel requests (as asyncio's Task.uncancel) */
static int task_uncancel(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  if (t->cancel_count > 0) t->cancel_count--;
  if (t->cancel_count == 0) t->flags &= ~CORIO_F_CANCELLING;
  lua_pushinteger(L, t->cancel_count);
  return 1;
}

static int task_cancelling(lua_State *L) {
  lua_pushinteger(L, corio__totask(L, 1)->cancel_count);
  return 1;
}

/* task:result() -> results...  (raises its error; raises if not done) */
static int task_result(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  lua_settop(L, 1);
  if (t->state != CORIO_DONE) return luaL_error(L, "result: %s is not done yet", CORIO_TASK);
  return push_outcome(L, 1, t);
}

/* task:error() -> the error object, or nil when it succeeded (raises if not done) */
static int task_error(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  if (t->state != CORIO_DONE) return luaL_error(L, "error: %s is not done yet", CORIO_TASK);
  t->flags |= CORIO_F_RETRIEVED;
  if (t->outcome == CORIO_OK) return 0;
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* task:add_done_callback(fn): fn(task) runs soon after the task is done (at once if it is) */
static int task_add_done_callback(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  corio_runtime *rt = corio__rt(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (t->state == CORIO_DONE) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &SOON);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    rt->soon_pending++;
    corio__kick(rt);
    return 0;
  }
  push_extras(L, 1, 1);
  if (lua_getfield(L, -1, "callbacks") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "callbacks");
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  t->flags |= CORIO_F_CALLBACKS;
  return 0;
}

/* future:set_result(...) / future:set_error(err) */
static corio_task *check_future(lua_State *L, const char *op) {
  corio_task *f = corio__totask(L, 1);
  if (!(f->flags & CORIO_F_FUTURE))
    luaL_error(L, "%s: only a Future can be completed from outside (this is a task)", op);
  if (f->state == CORIO_DONE) luaL_error(L, "%s: the future is already done", op);
  return f;
}

static int future_set_result(lua_State *L) {
  corio_task *f = check_future(L, "set_result");
  int n = lua_gettop(L) - 1;
  store_results(L, 1, L, n);
  finished(L, 1, f, CORIO_OK);
  return 0;
}

static int future_set_error(lua_State *L) {
  corio_task *f = check_future(L, "set_error");
  lua_settop(L, 2);
  store_results(L, 1, L, 1);
  finished(L, 1, f, is_instance(L, 2, &CANCELLED_MT) ? CORIO_CANCELLED : CORIO_ERROR);
  return 0;
}

/* A task priority from the value at idx (raises unless a reasonable integer). */
static int check_priority(lua_State *L, int idx) {
  int isnum;
  lua_Integer p = lua_tointegerx(L, idx, &isnum);
  if (!isnum || p < -1000000 || p > 1000000)
    return luaL_error(L, "priority must be an integer between -1000000 and 1000000");
  return (int)p;
}

static int task_index(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  const char *k = lua_tostring(L, 2);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (strcmp(k, "name") == 0) { push_name(L, 1, t); return 1; }
    if (strcmp(k, "id") == 0) { lua_pushinteger(L, (lua_Integer)t->id); return 1; }
    if (strcmp(k, "priority") == 0) { lua_pushinteger(L, t->priority); return 1; }
    if (strcmp(k, "state") == 0) { lua_pushstring(L, state_name(t)); return 1; }
    if (strcmp(k, "where") == 0) { push_where(L, t); return 1; }
    if (strcmp(k, "age") == 0) {
      lua_pushnumber(L, (double)uv_now(corio__rt(L)->loop) / 1e3 - t->created);
      return 1;
    }
    if (strcmp(k, "spawned_at") == 0) {
      if (push_extras(L, 1, 0) == LUA_TTABLE &&
          lua_getfield(L, -1, "spawn_traceback") == LUA_TSTRING) return 1;
      lua_settop(L, 2);
      push_spawn_site(L, 1, t);
      return 1;
    }
    if (strcmp(k, "traceback") == 0) {
      if (push_extras(L, 1, 0) == LUA_TTABLE) lua_getfield(L, -1, "traceback");
      return 1;
    }
  }
  return 0;
}

static int task_newindex(lua_State *L) {
  corio__totask(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "priority") == 0) {
    corio_task *t = lua_touserdata(L, 1);
    corio_runtime *rt = corio__rt(L);
    int p = check_priority(L, 3);
    /* keep the count of prioritised ready tasks right if t is in the ready queue */
    if (t->state == CORIO_READY && !(t->flags & CORIO_F_MAIN))
      rt->ready_prio += (p != 0) - (t->priority != 0);
    t->priority = p;
    return 0;
  }
  if (strcmp(k, "name") != 0) return luaL_error(L, "%s has no settable field '%s'", CORIO_TASK, k);
  if (!lua_isnil(L, 3)) luaL_checkstring(L, 3);
  push_extras(L, 1, 1);
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "name");
  return 0;
}

static int task_set_name(lua_State *L) {
  lua_settop(L, 2);
  lua_pushliteral(L, "name");
  lua_insert(L, 2);
  return task_newindex(L);
}

static int task_get_name(lua_State *L) {
  push_name(L, 1, corio__totask(L, 1));
  return 1;
}

static int task_tostring(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  push_name(L, 1, t);
  push_where(L, t);
  lua_pushfstring(L, "%s %s (%s)", (t->flags & CORIO_F_FUTURE) ? "corio.Future" : CORIO_TASK,
                  lua_tostring(L, -2), lua_tostring(L, -1));
  return 1;
}

/* Push the report of the failed task at idx: the error, its traceback, the spawn site. */
static void push_report(lua_State *L, int idx, corio_task *t) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 12, NULL);
  int base = lua_gettop(L);
  lua_getiuservalue(L, idx, 1);
  corio__push_errmsg(L, -1);
  push_name(L, idx, t);
  lua_pushfstring(L, "corio: error in task '%s' that nobody awaited: %s", lua_tostring(L, -1),
                  lua_tostring(L, -2));
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);  /* [header] */
  int pieces = 1;
  if (push_extras(L, idx, 0) == LUA_TTABLE) {
    int ex = lua_gettop(L);
    if (lua_getfield(L, ex, "traceback") == LUA_TSTRING) {
      lua_pushliteral(L, "\n");
      lua_insert(L, -2);
      pieces += 2;
    } else {
      lua_pop(L, 1);
    }
    if (lua_getfield(L, ex, "spawn_traceback") == LUA_TSTRING) {
      lua_pushliteral(L, "\nthe task was spawned here:");
      lua_insert(L, -2);
      pieces += 2;
    } else {
      lua_pop(L, 1);
    }
    lua_remove(L, ex);
  } else {
    lua_pop(L, 1);
  }
  if (pieces < 4) {  /* no full spawn traceback: name the spawn site */
    push_spawn_site(L, idx, t);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushliteral(L, "\nthe task was spawned at ");
      lua_insert(L, -2);
      pieces += 2;
    } else {
      lua_pop(L, 1);
    }
  }
  lua_concat(L, pieces);
}

void corio__report(corio_runtime *rt, lua_State *L, int idx) {
  corio_task *t = lua_touserdata(L, idx);
  if (t->flags & (CORIO_F_REPORTED | CORIO_F_RETRIEVED)) return;
  t->flags |= CORIO_F_REPORTED;
  rt->unretrieved++;
  push_report(L, idx, t);  /* the error's __tostring runs protected (corio__push_errmsg) */
  rt->on_error(rt->on_error_ud, lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* __gc: a failed task nobody looked at is reported once. */
static int task_gc(lua_State *L) {
  corio_task *t = lua_touserdata(L, 1);
  if (t->state == CORIO_DONE && t->outcome == CORIO_ERROR) corio__report(corio__rt(L), L, 1);
  return 0;
}

/* ---- joins: wait for some of many tasks ------------------------------------------------- */

typedef struct join_node {
  corio_listener l;
  struct join *j;
  int index;
} join_node;

typedef struct join {
  corio_task *owner;
  int needed, stop_on_error, failed, woke, n;
  join_node nodes[1];
} join;

static void join_detach(join *j) {
  for (int i = 0; i < j->n; i++) corio__unlisten(&j->nodes[i].l);
}

static void join_fire(corio_runtime *rt, corio_listener *l, corio_task *done) {
  join_node *node = (join_node *)l;
  join *j = node->j;
  j->needed--;
  if (done->outcome != CORIO_OK && j->stop_on_error && !j->failed) j->failed = node->index;
  if (!j->woke && (j->needed <= 0 || j->failed)) {
    /* Done: leave every other task's listener list now. The continuation may never run
     * (the owner can be cancelled before its turn), and then nothing else would. */
    j->woke = 1;
    join_detach(j);
    corio__wake(rt, j->owner);
  }
}

static void join_cancel(lua_State *L, corio_task *t, void *data) {
  (void)t;
  (void)L;
  join_detach(data);
}

static const corio_wait JOIN_WAIT = {"wait", join_cancel};

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  join *j = (join *)ctx;
  (void)status;
  join_detach(j);
  if (j->failed) lua_pushinteger(L, j->failed);
  else lua_pushnil(L);
  return 1;
}

/* corio._wait(list, needed, stop_on_error) -> index of the first failure | nil  [suspends]
 * Waits until `needed` of the tasks in list are done, or (with stop_on_error) one failed. */
static int l_wait(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  int needed = (int)luaL_optinteger(L, 2, n);
  int stop = lua_toboolean(L, 3);
  int pending = 0, failed = 0;
  lua_settop(L, 3);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    corio_task *t = testtask(L, -1);
    if (!t) return luaL_error(L, "wait: item %d is a %s, not a task", i, luaL_typename(L, -1));
    lua_pop(L, 1);
    if (t->state != CORIO_DONE) pending++;
    else if (t->outcome != CORIO_OK && stop && !failed) failed = i;
  }
  int done = n - pending;
  if (failed || done >= needed || pending == 0) {
    if (failed) lua_pushinteger(L, failed);
    else lua_pushnil(L);
    return 1;
  }
  corio_task *me = corio__check_suspend(L, "wait");
  join *j = lua_newuserdatauv(L, sizeof(join) + sizeof(join_node) * (size_t)n, 0);
  j->owner = me;
  j->needed = needed - done;
  j->stop_on_error = stop;
  j->failed = 0;
  j->woke = 0;
  j->n = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    corio_task *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t->state == CORIO_DONE || t == me) continue;
    join_node *node = &j->nodes[j->n++];
    node->j = j;
    node->index = i;
    node->l.pprev = NULL;
    corio__listen(t, &node->l, join_fire);
  }
  return corio__await(L, &JOIN_WAIT, j, wait_k, (lua_KContext)j);
}

/* corio._collect(list, return_errors) -> results, errors
 * results[i] is the first value of task i (errors in place with return_errors), results.n
 * is #list; errors[i] is task i's error object. Without return_errors the first failed task
 * (in list order) has its error raised. All tasks must be done. */
static int l_collect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  int return_errors = lua_toboolean(L, 2);
  lua_settop(L, 2);
  lua_createtable(L, n, 1);  /* 3: results */
  lua_newtable(L);           /* 4: errors */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    corio_task *t = lua_touserdata(L, -1);
    if (t->state != CORIO_DONE) return luaL_error(L, "collect: task %d is not done", i);
    lua_getiuservalue(L, -1, 1);
    if (t->outcome == CORIO_OK) {
      if (t->nresults > 1) lua_rawgeti(L, -1, 1), lua_remove(L, -2);
      else if (t->nresults == 0) lua_pop(L, 1), lua_pushnil(L);
      lua_rawseti(L, 3, i);
    } else {
      t->flags |= CORIO_F_RETRIEVED;
      if (!return_errors) return lua_error(L);
      lua_pushvalue(L, -1);
      lua_rawseti(L, 4, i);
      lua_rawseti(L, 3, i);
    }
    lua_pop(L, 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, 3, "n");
  return 2;
}

/* ---- module functions -------------------------------------------------------------------- */

static int is_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

/* corio.spawn(fn, ...) -> Task
 * corio.spawn({fn, priority = p, name = s}, ...) -> Task  (see corio__run_ready for the rule) */
static int l_spawn(lua_State *L) {
  if (is_callable(L, 1)) {
    corio__spawn(L, 1, lua_gettop(L) - 1);
    return 1;
  }
  if (lua_type(L, 1) != LUA_TTABLE) return luaL_typeerror(L, 1, "function");
  int priority = 0;
  if (lua_getfield(L, 1, "priority") != LUA_TNIL) priority = check_priority(L, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "name") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "spawn: name must be a string, got %s", luaL_typename(L, -1));
  lua_rawgeti(L, 1, 1);
  if (!is_callable(L, -1))
    return luaL_error(L, "spawn: the options table needs the function at [1], got %s",
                      luaL_typename(L, -1));
  lua_replace(L, 1);  /* fn args... name */
  lua_insert(L, 1);   /* name fn args... */
  corio_task *t = corio__spawn(L, 2, lua_gettop(L) - 2);  /* name Task */
  if (priority) {
    t->priority = priority;
    corio__rt(L)->ready_prio++;  /* a new task is in the ready queue */
  }
  if (!lua_isnil(L, 1)) {
    push_extras(L, -1, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "name");
    lua_pop(L, 1);
  }
  return 1;
}

/* corio.Future() -> Future */
static int l_future(lua_State *L) {
  corio__new_future(L);
  return 1;
}

static int l_current_task(lua_State *L) {
  corio_task *t = corio__rt(L)->current;
  if (!t || (t->flags & CORIO_F_MAIN) || t->anchor == LUA_NOREF) return 0;
  corio__push_anchor(L, t->anchor);
  return 1;
}

/* Push a list of the live tasks (not done), oldest first. */
static int by_id(const void *a, const void *b) {
  uint64_t x = (*(corio_task *const *)a)->id, y = (*(corio_task *const *)b)->id;
  return x < y ? -1 : x > y;
}

static void push_live_tasks(lua_State *L) {
  corio_runtime *rt = corio__rt(L);
  int n = 0, cap = rt->live_tasks;
  corio_task **v = lua_newuserdatauv(L, sizeof *v * (size_t)(cap ? cap : 1), 0);
  corio__push_anchors(L);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    corio_task *t = testtask(L, -1);
    if (t && t->state != CORIO_DONE && n < cap) v[n++] = t;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  qsort(v, (size_t)n, sizeof *v, by_id);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    corio__push_anchor(L, v[i]->anchor);
    lua_rawseti(L, -2, i + 1);
  }
  lua_remove(L, -2);
}

/* corio.all_tasks() -> list of the tasks not done, oldest first */
static int l_all_tasks(lua_State *L) {
  push_live_tasks(L);
  return 1;
}

static int l_is_task(lua_State *L) {
  lua_pushboolean(L, testtask(L, 1) != NULL);
  return 1;
}

static int l_last_task_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)corio__rt(L)->next_task_id);
  return 1;
}

static int l_is_cancelled(lua_State *L) {
  lua_pushboolean(L, is_instance(L, 1, &CANCELLED_MT));
  return 1;
}

static int l_is_timeout(lua_State *L) {
  lua_pushboolean(L, is_instance(L, 1, &TIMEOUT_MT));
  return 1;
}

/* corio.Timeout(seconds) -> a new Timeout error object */
static int l_new_timeout(lua_State *L) {
  lua_createtable(L, 0, 1);
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "message");
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TIMEOUT_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* corio._cancel_all([after_id]) -> n: cancel every live task (with an id above after_id) */
static int l_cancel_all(lua_State *L) {
  lua_Integer after = luaL_optinteger(L, 1, 0);
  int n = 0;
  corio_task *cur = corio__rt(L)->current;
  push_live_tasks(L);
  for (int i = 1, len = (int)luaL_len(L, -1); i <= len; i++) {
    lua_rawgeti(L, -1, i);
    corio_task *t = lua_touserdata(L, -1);
    if ((lua_Integer)t->id > after && t != cur) n += corio__cancel(L, t, 0);
    lua_pop(L, 1);
  }
  lua_pushinteger(L, n);
  return 1;
}

/* corio._stats() -> {tasks=, anchors=, timers=, handles=, unretrieved=} for leak checks.
 * `handles` counts the active libuv handles beyond the runtime's own. */
static int l_stats(lua_State *L) {
  corio_runtime *rt = corio__rt(L);
  int handles = corio__count_user_handles(rt);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, rt->live_tasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, rt->anchors);
  lua_setfield(L, -2, "anchors");
  lua_pushinteger(L, corio__timers_armed(rt));
  lua_setfield(L, -2, "timers");
  lua_pushinteger(L, handles);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, rt->unretrieved);
  lua_setfield(L, -2, "unretrieved");
  return 1;
}

static int l_set_debug(lua_State *L) {
  corio__rt(L)->debug = lua_toboolean(L, 1);
  return 0;
}

static int l_set_eager_report(lua_State *L) {
  corio__rt(L)->eager_report = lua_toboolean(L, 1);
  return 0;
}

static const luaL_Reg task_methods[] = {
  {"await", task_await},
  {"cancel", task_cancel},
  {"uncancel", task_uncancel},
  {"cancelling", task_cancelling},
  {"done", task_done},
  {"cancelled", task_cancelled},
  {"result", task_result},
  {"error", task_error},
  {"add_done_callback", task_add_done_callback},
  {"set_result", future_set_result},
  {"set_error", future_set_error},
  {"get_name", task_get_name},
  {"set_name", task_set_name},
  {NULL, NULL}
};

static const luaL_Reg core_funcs[] = {
  {"spawn", l_spawn},
  {"Future", l_future},
  {"current_task", l_current_task},
  {"all_tasks", l_all_tasks},
  {"is_task", l_is_task},
  {"_last_task_id", l_last_task_id},
  {"is_cancelled", l_is_cancelled},
  {"is_timeout", l_is_timeout},
  {"_new_timeout", l_new_timeout},
  {"_wait", l_wait},
  {"_collect", l_collect},
  {"_cancel_all", l_cancel_all},
  {"_stats", l_stats},
  {"set_debug", l_set_debug},
  {"_set_eager_report", l_set_eager_report},
  {NULL, NULL}
};

int corio__open_core(lua_State *L) {
  corio__rt(L)->tag = &TAG;
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SOON);
  /* Task metatable: methods first, then computed fields (name, id, state, where, ...). */
  lua_createtable(L, 0, 6);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &TASK_MT);
  lua_pushliteral(L, CORIO_TASK);
  lua_setfield(L, -2, "__name");
  luaL_newlib(L, task_methods);
  lua_pushcclosure(L, task_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, task_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, task_tostring);
  lua_setfield(L, -2, "__tostring");
  /* the failed-task metatable: the same fields, plus __gc */
  lua_createtable(L, 0, 6);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushcfunction(L, task_gc);
  lua_setfield(L, -2, "__gc");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &FAILED_MT);
  lua_pop(L, 1);
  luaL_newlib(L, core_funcs);
  new_error_class(L, &CANCELLED_MT, "corio.Cancelled", "cancelled");
  lua_setfield(L, -2, "Cancelled");
  new_error_class(L, &TIMEOUT_MT, "corio.Timeout", "timeout");
  lua_setfield(L, -2, "Timeout");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "corio.core");
  lua_pop(L, 1);
  return 1;
}
