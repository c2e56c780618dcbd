/* Time: sleep, the monotonic clock, and deadlines that cancel a task (the mechanism of
 * corio.timeout). The timer heap itself is the host's (host/timers.c).
 * Lua module "corio._timer": sleep, now, _deadline. */
#include <stdio.h>

#include "binding.h"

#define DEADLINE "corio.Deadline"

/* ---- sleep ---------------------------------------------------------------------------- */


static void sleep_fire(corio_runtime *rt, corio_timer *tm) {
  corio__wake(rt, corio__timer_task(tm));
}

static void sleep_cancel(lua_State *L, corio_task *t, void *data) {
  (void)data;
  corio__timer_stop(corio__rt(L), corio__task_timer(t));
}

/* "sleep 0.50 s": the seconds are still l_sleep's first argument on the suspended frame */
static void sleep_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  (void)t;
  (void)data;
  char buf[32];
  snprintf(buf, sizeof buf, "sleep %.2f s", (double)lua_tonumber(co, 1));
  lua_pushstring(L, buf);
}

static const corio_wait SLEEP_WAIT = {"sleep", sleep_cancel, sleep_describe};

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
  corio_timer *tm = corio__task_timer(t);
  tm->fire = sleep_fire;
  if (corio__timer_start(corio__rt(L), tm, s) != 0) return corio__nomem(L);
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
  lua_State *L = corio__L(rt);
  d->fired = 1;
  if (!corio__task_done(d->task)) corio__cancel(L, d->task, 0);
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
    t = corio__current(L);
    if (!t || corio__is_main(t))
      return luaL_error(L, "timeout: a deadline needs a task (call it inside corio.run or a task)");
    corio__push_task(L, t);
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
  if (corio__timer_start(rt, &d->timer, s) != 0) return corio__nomem(L);
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
  if (corio__timer_start(corio__rt(L), &d->timer, s) != 0) return corio__nomem(L);
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

static const luaL_Reg deadline_meta[] = {
  {"__gc", deadline_gc},
  {NULL, NULL}
};

int luaopen_corio_timer(lua_State *L) {
  corio__class(L, DEADLINE, deadline_methods, deadline_meta);
  lua_pop(L, 1);
  luaL_newlib(L, timer_funcs);
  return 1;
}
