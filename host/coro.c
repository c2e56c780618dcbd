/* Tag-aware coroutine.resume and coroutine.wrap. A scheduler yield made inside a user's own
 * coroutine (a generator built with coroutine.wrap, say) must suspend the whole task and come
 * back to exactly that point; a plain coroutine.yield must still reach the user's resumer.
 * These replace the two functions of the standard coroutine library and otherwise behave as
 * they do (same results, same error messages). */
#include "runtime.h"

static char SUSPENDED;  /* registry key: weak set of coroutines suspended by the scheduler */

static int tag_of(lua_State *co, int nres) {
  /* corio__await yields exactly one light userdata: the address of a private static of
   * sched.c, which user code cannot forge. */
  return nres == 1 && lua_type(co, -1) == LUA_TLIGHTUSERDATA &&
         lua_touserdata(co, -1) == corio__rt(co)->tag;
}

static void mark(lua_State *L, lua_State *co, int on) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SUSPENDED);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (on) lua_pushboolean(L, 1);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int is_marked(lua_State *L, lua_State *co) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SUSPENDED);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  int on = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return on;
}

/* Resume co with narg values from L's top. Returns the number of results moved to L, or -1
 * with the error object on L. A scheduler yield is passed on (this function then yields and
 * does not return); `again` is the continuation that resumes co once the task wakes. */
static int auxresume(lua_State *L, lua_State *co, int narg, lua_KFunction again, int ctx) {
  corio_runtime *rt = corio__rt(L);
  int status, nres;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  if (narg >= 0) {  /* narg < 0: resuming after a scheduler yield, no new arguments */
    if (is_marked(L, co)) {
      lua_pushliteral(L, "cannot resume a coroutine that is waiting for corio");
      return -1;
    }
    lua_xmove(L, co, narg);
  } else {
    narg = 0;
  }
  struct corio_nest frame = {co, L, rt->nest};
  rt->nest = &frame;
  status = lua_resume(co, L, narg, &nres);
  rt->nest = frame.prev;
  if (status == LUA_YIELD && tag_of(co, nres)) {
    lua_pop(co, 1);
    mark(L, co, 1);
    lua_pushlightuserdata(L, rt->tag);
    lua_yieldk(L, 1, ctx, again);  /* does not return */
    return 0;
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);  /* the error object */
  return -1;
}

static int resume_again(lua_State *L, int status, lua_KContext ctx);

static int finish_resume(lua_State *L, int r) {
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

/* coroutine.resume(co, ...) -> true, ... | false, err */
static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  /* lua_resume itself refuses dead and running coroutines, with lcorolib's messages */
  return finish_resume(L, auxresume(L, co, lua_gettop(L) - 1, resume_again, 0));
}

static int resume_again(lua_State *L, int status, lua_KContext ctx) {
  lua_State *co = lua_tothread(L, 1);
  (void)status;
  (void)ctx;
  mark(L, co, 0);
  lua_settop(L, 1);
  return finish_resume(L, auxresume(L, co, -1, resume_again, 0));
}

static int wrap_again(lua_State *L, int status, lua_KContext ctx);

static int finish_wrap(lua_State *L, lua_State *co, int r) {
  if (r >= 0) return r;
  int st = lua_status(co);
  if (st != LUA_OK && st != LUA_YIELD) {  /* it died of an error: close its tbc variables */
    lua_pop(L, 1);
    st = lua_resetthread(co);
    lua_xmove(co, L, 1);
  }
  if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  return finish_wrap(L, co, auxresume(L, co, lua_gettop(L), wrap_again, 0));
}

static int wrap_again(lua_State *L, int status, lua_KContext ctx) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  (void)status;
  (void)ctx;
  mark(L, co, 0);
  lua_settop(L, 0);
  return finish_wrap(L, co, auxresume(L, co, -1, wrap_again, 0));
}

/* coroutine.wrap(f) -> function */
static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 1);
  return 1;
}

void corio__coroutine_patch(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SUSPENDED);
  lua_getglobal(L, "coroutine");
  if (lua_istable(L, -1)) {
    lua_pushcfunction(L, co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, co_wrap);
    lua_setfield(L, -2, "wrap");
  }
  lua_pop(L, 1);
}
