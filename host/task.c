/* Task records: creating tasks and futures, their results and extras, the Cancelled and
 * Timeout error classes, the names and places all_tasks() shows, and the report of an error
 * nobody retrieved. State changes are the scheduler's (sched.c). */
#include <string.h>

#include "scheduler.h"

static char TASK_MT;      /* registry keys */
static char FAILED_MT;    /* the metatable of a failed task: TASK_MT's fields plus __gc */
static char CANCELLED_MT;
static char TIMEOUT_MT;

/* ---- task records ------------------------------------------------------------------------ */

/* Tasks carry one of two metatables: only a failed task has a __gc (to report an error
 * nobody retrieved), so that the collector does not have to finalize every task. */
corio_task *corio__testtask(lua_State *L, int idx) {
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
  corio_task *t = corio__testtask(L, idx);
  if (!t) luaL_typeerror(L, idx, CORIO_TASK);
  return t;
}

/* Push the extras table of the task at idx, creating it when `create`; returns its type. */
int corio__push_extras(lua_State *L, int idx, int create) {
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
  lua_pushcfunction(co, corio__task_entry);
  lua_xmove(L, co, nargs + 1);          /* co; on co: entry f args... */
  corio_task *t = new_record(L, rt);    /* co task */
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, 1);          /* task */
  t->co = co;
  t->state = CORIO_PENDING;
  corio_task *spawner = rt->current;
  if (spawner && !(spawner->flags & CORIO_F_MAIN)) {
    t->parent_id = spawner->id;
    t->scope = spawner->scope;
  }
  t->created = (uint32_t)uv_now(rt->loop);
  rt->tasks_created++;
  /* The spawn site: the calling function and line now, the string only when asked. */
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "fl", &ar)) {
    t->spawn_line = ar.currentline;
    lua_setiuservalue(L, -2, 2);
  }
  if (rt->debug) {
    corio__push_extras(L, -1, 1);
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "spawn_traceback");
    lua_pop(L, 1);
  }
  t->anchor = corio__anchor(L, -1);
  rt->live_tasks++;
  corio__make_ready(rt, t);
  return t;
}

/* A task that owns its first argument (corio.core._spawn_owning): its entry holds the value
 * to-be-closed in its own frame, below the body's protected call, so the value is closed when
 * the task ends however it ends (returned: here; failed or cancelled: when the thread is
 * reset), and the body runs with no wrapper frame of its own. net.serve's connection: the
 * stream closes with its handler, and an idle connection pays no Lua frame for a <close>. */
static int entry_owning_k(lua_State *co, int status, lua_KContext ctx) {
  (void)ctx;
  if (status == LUA_ERRMEM) corio__rt(co)->nomem++; /* as corio__task_entry's continuation */
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(co);
  return lua_gettop(co) - 2; /* the body's results, above the owned value and the handler */
}

int corio__task_entry_owning(lua_State *co) {
  int nargs = lua_gettop(co) - 1; /* body owned args... */
  lua_pushvalue(co, 2);
  lua_pushcfunction(co, corio__task_msgh);
  lua_rotate(co, 1, 2); /* owned msgh body owned args... */
  lua_toclose(co, 1);
  return entry_owning_k(co, lua_pcallk(co, nargs, LUA_MULTRET, 2, 0, entry_owning_k), 0);
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

void corio__store_results(lua_State *L, int tidx, lua_State *from, int n) {
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
void corio__push_cancel_error(lua_State *L, int tidx) {
  if (corio__push_extras(L, tidx, 0) == LUA_TTABLE) lua_getfield(L, -1, "cancel_message");
  else lua_pushnil(L);
  push_cancelled(L, lua_isnil(L, -1) ? 0 : -1);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

int corio__raise_cancelled(lua_State *L, corio_task *t) {
  if (t->anchor != LUA_NOREF) {
    corio__push_anchor(L, t->anchor);
    corio__push_cancel_error(L, -1);
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

static void new_error_class(lua_State *L, const void *key, const char *name,
                            const char *text) {
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

int corio__is_cancelled(lua_State *L, int idx) {
  return is_instance(L, idx, &CANCELLED_MT);
}

int corio__is_timeout(lua_State *L, int idx) {
  return is_instance(L, idx, &TIMEOUT_MT);
}

void corio__push_timeout(lua_State *L, int msgidx) {
  if (msgidx) msgidx = lua_absindex(L, msgidx);
  lua_createtable(L, 0, 1);
  if (msgidx) {
    lua_pushvalue(L, msgidx);
    lua_setfield(L, -2, "message");
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TIMEOUT_MT);
  lua_setmetatable(L, -2);
}

void corio__open_errors(lua_State *L) {
  new_error_class(L, &CANCELLED_MT, "corio.Cancelled", "cancelled");
  lua_setfield(L, -2, "Cancelled");
  new_error_class(L, &TIMEOUT_MT, "corio.Timeout", "timeout");
  lua_setfield(L, -2, "Timeout");
}

/* Push what awaiting the done task at idx gives: its results, or raise its error. */
int corio__push_outcome(lua_State *L, int idx, corio_task *t) {
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

/* ---- Task methods ----------------------------------------------------------------------- */

const char *corio__state_name(const corio_task *t) {
  switch (t->state) {
    case CORIO_PENDING: return "pending";
    case CORIO_READY: return "ready";
    case CORIO_RUNNING: return "running";
    case CORIO_WAITING: return "waiting";
    default:
      return t->outcome == CORIO_OK ? "done" : t->outcome == CORIO_ERROR ? "failed" : "cancelled";
  }
}

void corio__push_name(lua_State *L, int idx, corio_task *t) {
  if (corio__push_extras(L, idx, 0) != LUA_TTABLE) {
    lua_pop(L, 1); /* no extras: one value pushed, not two */
  } else if (lua_getfield(L, -1, "name") != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  } else {
    lua_pop(L, 2);
  }
  lua_pushfstring(L, (t->flags & CORIO_F_FUTURE) ? "Future-%I" : "Task-%I", (lua_Integer)t->id);
}

/* Push "source:line" of where the task was spawned, or nil. */
void corio__push_spawn_site(lua_State *L, int idx, corio_task *t) {
  lua_Debug ar;
  if (lua_getiuservalue(L, idx, 2) != LUA_TFUNCTION) return;
  lua_getinfo(L, ">S", &ar);
  lua_pushfstring(L, "%s:%d", ar.short_src, t->spawn_line);
}

/* Push "op at source:line" for a waiting task: the innermost Lua frame of its coroutine that
 * is the program's, not corio's own embedded scripts (a Queue:get waits in corio/waiters.lua,
 * called from the line that matters), else the innermost Lua frame. */
void corio__push_where(lua_State *L, corio_task *t) {
  lua_Debug ar;
  const char *what = t->wait ? t->wait_name : corio__state_name(t);
  int first = 0;
  if (t->co && (t->state == CORIO_WAITING || t->state == CORIO_READY)) {
    for (int level = 0; lua_getstack(t->co, level, &ar); level++) {
      lua_getinfo(t->co, "Sl", &ar);
      if (ar.currentline <= 0) continue;
      if (strncmp(ar.source, "@scripts/corio", 14) != 0) {
        lua_pushfstring(L, "%s at %s:%d", what, ar.short_src, ar.currentline);
        if (first) lua_remove(L, -2);
        return;
      }
      if (!first) lua_pushfstring(L, "%s at %s:%d", what, ar.short_src, ar.currentline);
      first = 1;
    }
  }
  if (!first) lua_pushstring(L, what);
}

static void push_report(lua_State *L, int idx, corio_task *t) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 12, NULL);
  int base = lua_gettop(L);
  lua_getiuservalue(L, idx, 1);
  corio__push_errmsg(L, -1);
  corio__push_name(L, idx, t);
  lua_pushfstring(L, "corio: error in task '%s' that nobody awaited: %s", lua_tostring(L, -1),
                  lua_tostring(L, -2));
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);  /* [header] */
  int pieces = 1;
  if (corio__push_extras(L, idx, 0) == LUA_TTABLE) {
    int ex = lua_gettop(L);
    if (lua_getfield(L, ex, "traceback") == LUA_TSTRING) {
      lua_pushliteral(L, "\n");
      lua_insert(L, -2);
      pieces += 2;
    } else {
      lua_pop(L, 1);
    }
    if (lua_getfield(L, ex, "spawn_traceback") == LUA_TSTRING) {
      lua_pushliteral(L, "\nthe task was spawned here:\n");
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
    corio__push_spawn_site(L, idx, t);
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

void corio__mark_failed(lua_State *L, int tidx) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &FAILED_MT);
  lua_setmetatable(L, tidx);
}

void corio__set_task_metatables(lua_State *L) {
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &TASK_MT);
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
}
