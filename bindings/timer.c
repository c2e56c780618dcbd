/* Timers: every sleep and deadline sits in one binary heap driven by one uv_timer_t, so a
 * sleeping task costs a heap slot, not a libuv handle. Deadlines are kept in nanoseconds of
 * uv_hrtime(): a sleep never returns early, whatever the millisecond rounding of the loop.
 * Lua module "corio._timer": sleep, now, _deadline. */
#include <math.h>
#include <stdlib.h>

#include "core.h"

#define DEADLINE "corio.Deadline"

/* ---- the heap ------------------------------------------------------------------------- */

static int before(const corio_timer *a, const corio_timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(corio_runtime *rt, corio_timer *t, int i) {
  rt->heap[i] = t;
  t->index = i;
}

static void sift_up(corio_runtime *rt, int i) {
  corio_timer *t = rt->heap[i];
  while (i > 0) {
    int parent = (i - 1) / 2;
    if (!before(t, rt->heap[parent])) break;
    place(rt, rt->heap[parent], i);
    i = parent;
  }
  place(rt, t, i);
}

static void sift_down(corio_runtime *rt, int i) {
  corio_timer *t = rt->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= rt->heap_len) break;
    if (c + 1 < rt->heap_len && before(rt->heap[c + 1], rt->heap[c])) c++;
    if (!before(rt->heap[c], t)) break;
    place(rt, rt->heap[c], i);
    i = c;
  }
  place(rt, t, i);
}

static void heap_timer_cb(uv_timer_t *h);
static void rearm(corio_runtime *rt);

/* Arm the uv timer for the earliest deadline (rounded up to whole milliseconds). */
static void rearm(corio_runtime *rt) {
  if (rt->heap_len == 0) {
    uv_timer_stop(&rt->heap_timer);
    return;
  }
  uint64_t now = uv_hrtime(), when = rt->heap[0]->when;
  uint64_t ms = when > now ? (when - now + 999999) / 1000000 : 0;
  uv_update_time(rt->loop);
  uv_timer_start(&rt->heap_timer, heap_timer_cb, ms, 0);
}

static void heap_timer_cb(uv_timer_t *h) {
  corio_runtime *rt = h->data;
  uint64_t now = uv_hrtime();
  rt->in_loop++;
  rt->in_timer_cb = 1;
  while (rt->heap_len > 0 && rt->heap[0]->when <= now) {
    corio_timer *t = rt->heap[0];
    corio__timer_stop(rt, t);
    t->fire(rt, t);
  }
  rt->in_timer_cb = 0;
  rt->in_loop--;
  rearm(rt);
}

void corio__timer_start(corio_runtime *rt, corio_timer *t, double seconds) {
  if (t->index >= 0) corio__timer_stop(rt, t);
  if (!(seconds > 0)) seconds = 0;
  if (seconds > 1e9) seconds = 1e9;  /* about 31 years: "forever" for a loop */
  t->when = uv_hrtime() + (uint64_t)ceil(seconds * 1e9);
  t->seq = ++rt->timer_seq;
  if (rt->heap_len == rt->heap_cap) {
    int cap = rt->heap_cap ? rt->heap_cap * 2 : 64;
    corio_timer **h = realloc(rt->heap, sizeof *h * (size_t)cap);
    if (!h) abort();  /* as Lua's own allocator failing would: nothing sane to do */
    rt->heap = h;
    rt->heap_cap = cap;
  }
  place(rt, t, rt->heap_len++);
  sift_up(rt, t->index);
  if (t->index == 0) rearm(rt);
}

void corio__timer_stop(corio_runtime *rt, corio_timer *t) {
  int i = t->index;
  if (i < 0) return;
  t->index = -1;
  corio_timer *last = rt->heap[--rt->heap_len];
  if (last != t) {
    place(rt, last, i);
    sift_down(rt, i);
    sift_up(rt, last->index);
  }
  /* A new root (or none): move the uv timer, so that a cancelled long sleep does not keep
   * the loop alive. The heap callback re-arms once after its own batch instead. */
  if (i == 0 && !rt->in_timer_cb) rearm(rt);
}

void corio__timer_init(corio_runtime *rt) {
  uv_timer_init(rt->loop, &rt->heap_timer);
  rt->heap_timer.data = rt;
}

void corio__timer_close(corio_runtime *rt) {
  if (!uv_is_closing((uv_handle_t *)&rt->heap_timer))
    uv_close((uv_handle_t *)&rt->heap_timer, NULL);
}

/* ---- sleep ---------------------------------------------------------------------------- */


static void sleep_fire(corio_runtime *rt, corio_timer *t) {
  corio__wake(rt, container_of(t, corio_task, timer));
}

static void sleep_cancel(lua_State *L, corio_task *t) {
  corio__timer_stop(corio__rt(L), &t->timer);
}

static const corio_wait SLEEP_WAIT = {"sleep", sleep_cancel};

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 0;
}

/* corio.sleep(seconds)  [suspends]
 * Suspends the calling task for at least `seconds`; 0 (or less) lets the other ready tasks
 * run first. */
static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (s != s) return luaL_argerror(L, 1, "seconds is NaN");
  corio_task *t = corio__check_suspend(L, "sleep");
  if (s <= 0) return corio__yield_now(L, sleep_k, 0);
  t->timer.fire = sleep_fire;
  corio__timer_start(corio__rt(L), &t->timer, s);
  return corio__await(L, &SLEEP_WAIT, NULL, sleep_k, 0);
}

/* corio.now() -> seconds on the monotonic clock */
static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* ---- deadlines: cancel a task when time is up (the mechanism of corio.timeout) ---------- */

typedef struct deadline {
  corio_timer timer;
  corio_task *task;
  int ref;    /* the task, anchored while armed */
  int fired;
} deadline;

static void deadline_fire(corio_runtime *rt, corio_timer *t) {
  deadline *d = (deadline *)t;
  lua_State *L = rt->L;
  d->fired = 1;
  if (d->task->state != CORIO_DONE) corio__cancel(L, d->task, 0);
  corio__unanchor(L, d->ref);
  d->ref = LUA_NOREF;
}

static deadline *check_deadline(lua_State *L) {
  return luaL_checkudata(L, 1, DEADLINE);
}

/* corio._deadline(seconds[, task]) -> Deadline: cancels the task (default: the current one)
 * when the time is up, unless stopped before. */
static int l_deadline(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  corio_runtime *rt = corio__rt(L);
  corio_task *t;
  if (s != s) return luaL_argerror(L, 1, "seconds is NaN");
  if (lua_isnoneornil(L, 2)) {
    t = rt->current;
    if (!t || (t->flags & CORIO_F_MAIN))
      return luaL_error(L, "timeout: a deadline needs a task (call it inside corio.run or a task)");
    corio__push_anchor(L, t->anchor);
  } else {
    t = corio__totask(L, 2);
    lua_pushvalue(L, 2);
  }
  deadline *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->timer.index = -1;
  d->timer.fire = deadline_fire;
  d->task = t;
  d->fired = 0;
  d->ref = LUA_NOREF;
  luaL_setmetatable(L, DEADLINE);
  lua_insert(L, -2);
  d->ref = corio__anchor(L, -1);
  lua_pop(L, 1);
  corio__timer_start(rt, &d->timer, s);
  return 1;
}

/* deadline:stop() -> fired (true if it went off and cancelled the task) */
static int deadline_stop(lua_State *L) {
  deadline *d = check_deadline(L);
  corio__timer_stop(corio__rt(L), &d->timer);
  corio__unanchor(L, d->ref);
  d->ref = LUA_NOREF;
  lua_pushboolean(L, d->fired);
  return 1;
}

/* deadline:reschedule(seconds): move it (only while not fired) */
static int deadline_reschedule(lua_State *L) {
  deadline *d = check_deadline(L);
  lua_Number s = luaL_checknumber(L, 2);
  if (d->fired || d->ref == LUA_NOREF) return luaL_error(L, "reschedule: the deadline is over");
  corio__timer_start(corio__rt(L), &d->timer, s);
  return 0;
}

static int deadline_gc(lua_State *L) {
  deadline *d = lua_touserdata(L, 1);
  corio__timer_stop(corio__rt(L), &d->timer);
  corio__unanchor(L, d->ref);
  d->ref = LUA_NOREF;
  return 0;
}

static const luaL_Reg deadline_methods[] = {
  {"stop", deadline_stop},
  {"reschedule", deadline_reschedule},
  {NULL, NULL}
};

static const luaL_Reg timer_funcs[] = {
  {"sleep", l_sleep},
  {"now", l_now},
  {"_deadline", l_deadline},
  {NULL, NULL}
};

int luaopen_corio_timer(lua_State *L) {
  luaL_newmetatable(L, DEADLINE);
  luaL_newlib(L, deadline_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, deadline_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, timer_funcs);
  return 1;
}
