/* Observability, the C half (corio.core): _ps (one record per live task, built only when
 * asked) and _loop_stats (the scheduler's counters, handles by type, Lua memory). The Lua half,
 * corio.ps/pstree/stats/dump, is scripts/corio/obs.lua. Nothing here changes scheduling. */
#include <string.h>

#include "scheduler.h"

static double since_ms(corio_runtime *rt, uint32_t then) {
  return (double)(uint32_t)((uint32_t)uv_now(rt->loop) - then) / 1e3;
}

/* Set field k of the table on top from the extras table at xidx, if it has it. */
static void copy_extra(lua_State *L, int xidx, const char *k) {
  if (!xidx) return;
  lua_getfield(L, xidx, k);
  lua_setfield(L, -2, k);
}

/* The reason on top of L, in the words of the object at co's index idx when its metatable has
 * __reason(obj, reason) -> string (a queue says `Queue:get (queue "jobs", 0 items)`). Runs
 * that Lua function protected: an error or a non-string leaves the plain reason. */
void corio__obs_object_reason(lua_State *L, lua_State *co, int idx) {
  if (lua_isnoneornil(co, idx) || !luaL_getmetafield(co, idx, "__reason")) return;
  lua_pushvalue(co, idx);
  lua_xmove(co, L, 2); /* [reason, __reason, obj] */
  lua_pushvalue(L, -3);
  if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
    lua_replace(L, -2);
  else
    lua_pop(L, 1);
}

/* Push the record of the task at idx (see corio.ps in doc/observability.md). */
static void push_record(lua_State *L, int idx, corio_task *t) {
  corio_runtime *rt = corio__rt(L);
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 8, NULL);
  int xidx = corio__push_extras(L, idx, 0) == LUA_TTABLE ? lua_gettop(L) : 0;
  if (!xidx) lua_pop(L, 1);
  lua_createtable(L, 0, 14);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "task");
  lua_pushinteger(L, (lua_Integer)t->id);
  lua_setfield(L, -2, "id");
  corio__push_name(L, idx, t);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, corio__state_name(t));
  lua_setfield(L, -2, "state");
  corio__push_wait_reason(L, t);
  lua_setfield(L, -2, "reason");
  if (t->state == CORIO_WAITING) {
    lua_pushnumber(L, since_ms(rt, t->wait_since));
    lua_setfield(L, -2, "waited");
  }
  if (corio__push_awaited(L, t) || corio__join_push_pending(L, t))
    lua_setfield(L, -2, "waiting_for");
  lua_pushinteger(L, (lua_Integer)t->resumes);
  lua_setfield(L, -2, "resumes");
  lua_pushnumber(L, since_ms(rt, t->created));
  lua_setfield(L, -2, "age");
  copy_extra(L, xidx, "run");
  copy_extra(L, xidx, "max");
  if (t->parent_id) {
    lua_pushinteger(L, (lua_Integer)t->parent_id);
    lua_setfield(L, -2, "parent");
  }
  if (!(xidx && lua_getfield(L, xidx, "spawn_traceback") == LUA_TSTRING)) {
    if (xidx) lua_pop(L, 1);
    int top = lua_gettop(L);
    corio__push_spawn_site(L, idx, t);
    if (lua_gettop(L) == top) lua_pushnil(L);
  }
  lua_setfield(L, -2, "spawned_at");
  corio__push_where(L, t);
  lua_setfield(L, -2, "where");
  if (xidx) lua_remove(L, xidx);
}

/* corio.core._ps(tasks) -> records: one record per task of the list (from all_tasks) */
static int l_ps(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    corio_task *t = corio__testtask(L, -1);
    if (t) {
      push_record(L, -1, t);
      lua_rawseti(L, -3, i);
    }
    lua_pop(L, 1);
  }
  return 1;
}

static void count_handle(uv_handle_t *h, void *arg) {
  lua_State *L = arg;
  const char *type = uv_handle_type_name(uv_handle_get_type(h));
  if (!type || !uv_is_active(h)) return;
  lua_getfield(L, -1, type);
  lua_pushinteger(L, lua_tointeger(L, -1) + 1);
  lua_setfield(L, -3, type);
  lua_pop(L, 1);
}

/* corio.core._loop_stats() -> {tasks_created=, tasks_finished=, tasks_alive=, resumes=,
 * ready=, handles = {tcp = n, ...}, lua_kb=} */
static int l_loop_stats(lua_State *L) {
  corio_runtime *rt = corio__rt(L);
  int ready = 0;
  for (corio_task *t = rt->ready_head; t; t = t->next_ready) ready++;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, (lua_Integer)rt->tasks_created);
  lua_setfield(L, -2, "tasks_created");
  lua_pushinteger(L, (lua_Integer)rt->tasks_finished);
  lua_setfield(L, -2, "tasks_finished");
  lua_pushinteger(L, rt->live_tasks);
  lua_setfield(L, -2, "tasks_alive");
  lua_pushinteger(L, (lua_Integer)rt->resumes);
  lua_setfield(L, -2, "resumes");
  lua_pushinteger(L, ready);
  lua_setfield(L, -2, "ready");
  lua_pushnumber(L, lua_gc(L, LUA_GCCOUNT, 0) + lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
  lua_setfield(L, -2, "lua_kb");
  lua_newtable(L);
  uv_walk(rt->loop, count_handle, L);
  lua_setfield(L, -2, "handles");
  return 1;
}

/* The lag below which a fraction q of the samples fall (the top of its bucket), seconds. */
static double lag_quantile(corio_runtime *rt, double q) {
  uint64_t want = (uint64_t)(q * (double)rt->lag.n + 0.5), seen = 0;
  if (want == 0) want = 1;
  for (int b = 0; b < CORIO_LAG_BUCKETS; b++) {
    seen += rt->lag.hist[b];
    if (seen >= want) {
      double top = (double)((uint64_t)1 << b) / 1e6;
      double max = (double)rt->lag.max / 1e9;
      return top < max ? top : max;
    }
  }
  return (double)rt->lag.max / 1e9;
}

/* corio.core._lag([reset]) -> {p50=, p99=, max= (seconds), n=}: how late timers fired */
static int l_lag(lua_State *L) {
  corio_runtime *rt = corio__rt(L);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)rt->lag.n);
  lua_setfield(L, -2, "n");
  lua_pushnumber(L, rt->lag.n ? lag_quantile(rt, 0.5) : 0);
  lua_setfield(L, -2, "p50");
  lua_pushnumber(L, rt->lag.n ? lag_quantile(rt, 0.99) : 0);
  lua_setfield(L, -2, "p99");
  lua_pushnumber(L, (double)rt->lag.max / 1e9);
  lua_setfield(L, -2, "max");
  if (lua_toboolean(L, 1)) memset(&rt->lag, 0, sizeof rt->lag);
  return 1;
}

/* corio.core._times() -> whether run times are measured */
static int l_times(lua_State *L) {
  lua_pushboolean(L, corio__rt(L)->timing);
  return 1;
}

/* corio.core._set_times(on): measure each task's run time (slices) from now on */
static int l_set_times(lua_State *L) {
  corio__rt(L)->timing = lua_toboolean(L, 1);
  return 0;
}

static const luaL_Reg obs_funcs[] = {
  {"_ps", l_ps},
  {"_loop_stats", l_loop_stats},
  {"_set_times", l_set_times},
  {"_times", l_times},
  {"_lag", l_lag},
  {"_set_watchdog", corio__l_set_watchdog},
  {NULL, NULL}
};

void corio__open_obs(lua_State *L) {
  luaL_setfuncs(L, obs_funcs, 0);
}
