/* The corio.core Lua library (as Lua's lcorolib.c is to ldo.c): spawn, Future, current_task,
 * all_tasks, is_task, is_cancelled, is_timeout, Cancelled, Timeout, _wait, _collect,
 * _cancel_all, _stats, _set_debug (corio.set_debug is corio.lua's), and the Task methods. The scheduler is sched.c. */
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

/* task:await([reason]) -> results...  [suspends]  (raises the task's error) */
static int task_await(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  lua_settop(L, 3); /* a Future's wait reason and its object (corio.waiters), for corio.ps */
  if (t->state == CORIO_DONE) return corio__push_outcome(L, 1, t);
  return corio__await_task(L, t);
}

/* ---- Task methods ----------------------------------------------------------------------- */

static int task_done(lua_State *L) {
  lua_pushboolean(L, corio__totask(L, 1)->state == CORIO_DONE);
  return 1;
}

static int task_cancelled(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  lua_pushboolean(L, t->state == CORIO_DONE && t->outcome == CORIO_CANCELLED);
  return 1;
}


/* task:cancel([msg]) -> boolean  (false if it was already done) */
static int task_cancel(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  int msg = lua_isnoneornil(L, 2) ? 0 : 2;
  if (t->state == CORIO_DONE) { lua_pushboolean(L, 0); return 1; }
  if (msg) {
    corio__push_extras(L, 1, 1);
    lua_pushvalue(L, msg);
    lua_setfield(L, -2, "cancel_message");
    lua_pop(L, 1);
  }
  if (t->flags & CORIO_F_FUTURE) {
    t->cancel_count++;
    corio__cancel_future_at(L, 1, t);
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
  return corio__push_outcome(L, 1, t);
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
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (t->state == CORIO_DONE) {
    corio__call_soon(L, 2, 1);
    return 0;
  }
  corio__push_extras(L, 1, 1);
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
  corio__store_results(L, 1, L, n);
  corio__finish(L, 1, f, CORIO_OK);
  return 0;
}

static int future_set_error(lua_State *L) {
  corio_task *f = check_future(L, "set_error");
  lua_settop(L, 2);
  corio__store_results(L, 1, L, 1);
  corio__finish(L, 1, f, corio__is_cancelled(L, 2) ? CORIO_CANCELLED : CORIO_ERROR);
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
    if (strcmp(k, "name") == 0) { corio__push_name(L, 1, t); return 1; }
    if (strcmp(k, "id") == 0) { lua_pushinteger(L, (lua_Integer)t->id); return 1; }
    if (strcmp(k, "priority") == 0) { lua_pushinteger(L, t->priority); return 1; }
    if (strcmp(k, "state") == 0) { lua_pushstring(L, corio__state_name(t)); return 1; }
    if (strcmp(k, "where") == 0) { corio__push_where(L, t); return 1; }
    if (strcmp(k, "age") == 0) {
      lua_pushnumber(L, (uint32_t)((uint32_t)uv_now(corio__rt(L)->loop) - t->created) / 1e3);
      return 1;
    }
    if (strcmp(k, "spawned_at") == 0) {
      if (corio__push_extras(L, 1, 0) == LUA_TTABLE &&
          lua_getfield(L, -1, "spawn_traceback") == LUA_TSTRING) return 1;
      lua_settop(L, 2);
      corio__push_spawn_site(L, 1, t);
      return 1;
    }
    if (strcmp(k, "traceback") == 0) {
      if (corio__push_extras(L, 1, 0) == LUA_TTABLE) lua_getfield(L, -1, "traceback");
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
    corio__set_priority(corio__rt(L), t, check_priority(L, 3));
    return 0;
  }
  if (strcmp(k, "name") != 0) return luaL_error(L, "%s has no settable field '%s'", CORIO_TASK, k);
  if (!lua_isnil(L, 3)) luaL_checkstring(L, 3);
  corio__push_extras(L, 1, 1);
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
  corio__push_name(L, 1, corio__totask(L, 1));
  return 1;
}

static int task_tostring(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  corio__push_name(L, 1, t);
  corio__push_where(L, t);
  lua_pushfstring(L, "%s %s (%s)", (t->flags & CORIO_F_FUTURE) ? "corio.Future" : CORIO_TASK,
                  lua_tostring(L, -2), lua_tostring(L, -1));
  return 1;
}


/* ---- module functions -------------------------------------------------------------------- */

static int is_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

/* corio.core._spawn_owning(fn, x, ...) -> Task: fn(x, ...), x closed (its __close) when the
 * task ends, however it ends */
static int l_spawn_owning(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (luaL_getmetafield(L, 2, "__close") == LUA_TNIL) luaL_argerror(L, 2, "no __close");
  lua_pop(L, 1);
  corio_task *t = corio__spawn(L, 1, lua_gettop(L) - 1);
  lua_pushcfunction(t->co, corio__task_entry_owning); /* its coroutine has not started */
  lua_replace(t->co, 1);
  return 1;
}

/* corio.spawn(fn, ...) -> Task
 * corio.spawn({fn, a1, a2, ..., priority = p, name = s}, ...) -> Task: fn(a1, a2, ..., ...)
 * (see run_ready in sched.c for the priority rule) */
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
  lua_insert(L, 2);   /* opts name args... */
  lua_rawgeti(L, 1, 1);
  if (!is_callable(L, -1))
    return luaL_error(L, "spawn: the options table needs the function at [1], got %s",
                      luaL_typename(L, -1));
  lua_insert(L, 3);   /* opts name fn args... */
  /* the table's own positional arguments come before the call's */
  int n = (int)lua_rawlen(L, 1);
  luaL_checkstack(L, n, "spawn: too many arguments");
  for (int i = n; i >= 2; i--) {
    lua_rawgeti(L, 1, i);
    lua_insert(L, 4);
  }
  lua_remove(L, 1);   /* name fn targs... args... */
  corio_task *t = corio__spawn(L, 2, lua_gettop(L) - 2);  /* name Task */
  if (priority) corio__set_priority(corio__rt(L), t, priority);
  if (!lua_isnil(L, 1)) {
    corio__push_extras(L, -1, 1);
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
    /* A task can be anchored more than once (a deadline anchors the task it will cancel):
     * it is listed under its own anchor only. */
    corio_task *t = corio__testtask(L, -1);
    if (t && t->state != CORIO_DONE && n < cap && lua_isinteger(L, -2) &&
        lua_tointeger(L, -2) == t->anchor)
      v[n++] = t;
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
  lua_pushboolean(L, corio__testtask(L, 1) != NULL);
  return 1;
}

static int l_last_task_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)corio__rt(L)->next_task_id);
  return 1;
}

static int l_is_cancelled(lua_State *L) {
  lua_pushboolean(L, corio__is_cancelled(L, 1));
  return 1;
}

static int l_is_timeout(lua_State *L) {
  lua_pushboolean(L, corio__is_timeout(L, 1));
  return 1;
}

/* corio.Timeout(seconds) -> a new Timeout error object */
static int l_new_timeout(lua_State *L) {
  corio__push_timeout(L, lua_isnoneornil(L, 1) ? 0 : 1);
  return 1;
}

/* core._cancel_all([scope]) -> n, tasks: cancel every live task, or those of one corio.run
 * (the tasks its task started, and theirs: see _set_scope); the current task is spared. */
static int l_cancel_all(lua_State *L) {
  int scoped = !lua_isnoneornil(L, 1);
  lua_Integer scope = scoped ? luaL_checkinteger(L, 1) : 0;
  int n = 0;
  corio_task *cur = corio__rt(L)->current;
  push_live_tasks(L);
  lua_newtable(L);
  for (int i = 1, len = (int)luaL_len(L, -2); i <= len; i++) {
    lua_rawgeti(L, -2, i);
    corio_task *t = lua_touserdata(L, -1);
    if ((!scoped || (lua_Integer)t->scope == scope) && t != cur && corio__cancel(L, t, 0)) {
      lua_rawseti(L, -2, ++n);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pushinteger(L, n);
  lua_insert(L, -2);
  return 2;
}

/* core._set_scope(task): the task (not started yet) opens a scope of its own: the tasks it
 * spawns, and theirs, belong to it. corio.run uses it to cancel only its own leftovers. */
static int l_set_scope(lua_State *L) {
  corio_task *t = corio__totask(L, 1);
  t->scope = t->id;
  return 0;
}

/* core._main_cancel() -> boolean: cancel what top-level code is waiting on (its next
 * suspension raises Cancelled if it is not waiting). A top-level TaskGroup uses it. */
static int l_main_cancel(lua_State *L) {
  lua_pushboolean(L, corio__cancel_main(L));
  return 1;
}

/* core._main_uncancel() -> remaining cancel requests of top-level code */
static int l_main_uncancel(lua_State *L) {
  corio_task *t = &corio__rt(L)->main_task;
  if (t->cancel_count > 0) t->cancel_count--;
  if (t->cancel_count == 0) t->flags &= ~CORIO_F_CANCELLING;
  lua_pushinteger(L, t->cancel_count);
  return 1;
}

static char RERAISED; /* registry key: {err, traceback} of the last error _reraise raised */

/* corio.core._reraise(err, task): raise err (level 0) for corio.run. If err is the error the
 * done task failed with, remember it with the task's traceback: the command's message handler
 * prints that one, where the error happened, rather than corio.run's own frames. */
static int l_reraise(lua_State *L) {
  corio_task *t = corio__testtask(L, 2);
  lua_settop(L, 2);
  if (t && t->state == CORIO_DONE && t->outcome == CORIO_ERROR) {
    lua_getiuservalue(L, 2, 1);
    if (lua_rawequal(L, 1, -1) && corio__push_extras(L, 2, 0) == LUA_TTABLE &&
        lua_getfield(L, -1, "traceback") == LUA_TSTRING) {
      lua_createtable(L, 2, 0);
      lua_pushvalue(L, 1);
      lua_rawseti(L, -2, 1);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 2);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &RERAISED);
    }
  }
  lua_settop(L, 1);
  return lua_error(L);
}

int corio__push_reraised_traceback(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &RERAISED) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_rawgeti(L, -1, 1);
  int same = lua_rawequal(L, idx, -1);
  lua_pop(L, 1);
  if (same) lua_rawgeti(L, -1, 2);
  lua_remove(L, -1 - same);
  return same;
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
  {"set_exception", future_set_error}, /* asyncio's name */
  {"get_name", task_get_name},
  {"set_name", task_set_name},
  {NULL, NULL}
};

static const luaL_Reg core_funcs[] = {
  {"spawn", l_spawn},
  {"_spawn_owning", l_spawn_owning},
  {"Future", l_future},
  {"current_task", l_current_task},
  {"all_tasks", l_all_tasks},
  {"is_task", l_is_task},
  {"_last_task_id", l_last_task_id},
  {"is_cancelled", l_is_cancelled},
  {"is_timeout", l_is_timeout},
  {"_new_timeout", l_new_timeout},
  {"_wait", corio__join_wait},
  {"_collect", corio__join_collect},
  {"_cancel_all", l_cancel_all},
  {"_set_scope", l_set_scope},
  {"_main_cancel", l_main_cancel},
  {"_main_uncancel", l_main_uncancel},
  {"_reraise", l_reraise},
  {"_stats", l_stats},
  {"_set_debug", l_set_debug},
  {"_set_eager_report", l_set_eager_report},
  {NULL, NULL}
};

int corio__open_core(lua_State *L) {
  corio__sched_open(L);
  /* Task metatable: methods first, then computed fields (name, id, state, where, ...). */
  lua_createtable(L, 0, 6);
  lua_pushliteral(L, CORIO_TASK);
  lua_setfield(L, -2, "__name");
  luaL_newlib(L, task_methods);
  lua_pushcclosure(L, task_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, task_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, task_tostring);
  lua_setfield(L, -2, "__tostring");
  corio__set_task_metatables(L);
  lua_pop(L, 1);
  luaL_newlib(L, core_funcs);
  corio__open_obs(L);
  corio__open_errors(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "corio.core");
  lua_pop(L, 1);
  return 1;
}

