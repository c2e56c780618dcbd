/* corio.so: the runtime loaded into a stock lua5.4 by `require "corio"` (luaopen_corio, the
 * one exported symbol). Compiled with CORIO_MODULE only, where corio__rt finds the runtime
 * through the registry. */
#include <stdlib.h>
#include <string.h>

#include "embed.h"

#ifdef CORIO_MODULE

static char RT_KEY;  /* registry key: the block (a full userdata), which finalizes last */

corio_runtime *corio__rt_lookup(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &RT_KEY);
  corio_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

/* The state is closing. The block was the first corio object with a finalizer, so it is
 * finalized last: every task, token box and deadline is gone. Close the loop. */
static int module_gc(lua_State *L) {
  corio__block *b = lua_touserdata(L, 1);
  corio_runtime *rt = &b->rt;
  if (!rt->loop) return 0;
  corio__embed_shutdown(rt);
  free(b->e.err);
  b->e.err = NULL;
  corio__close_own_loop(rt->loop);  /* the process is usually exiting: nothing more to do if busy */
  rt->loop = NULL;
  return 0;
}

/* Create the runtime of this state: its block is a full userdata kept in the registry. */
static int module_init(lua_State *L) {
  corio__block *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "corio.Runtime");
  lua_setfield(L, -2, "__name");
  lua_pushcfunction(L, module_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if (corio__embed_init(b, NULL) != 0) {
    b->rt.loop = NULL;
    return luaL_error(L, "corio: cannot create the event loop");
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &RT_KEY);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  b->rt.L = lua_tothread(L, -1);
  lua_pop(L, 1);
  corio__open_world(L);
  return 0;
}

/* require "corio" in a stock lua5.4: one runtime per state, on a loop of its own. Top-level
 * async calls drive that loop, as under the corio command. */
__attribute__((visibility("default"))) int luaopen_corio(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &RT_KEY) == LUA_TNIL) module_init(L);
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_getfield(L, -1, "corio");
  lua_pushliteral(L, "corio");
  lua_call(L, 1, 1);
  return 1;
}

#endif
