/* package.preload entries: the Lua scripts compiled into the binary (scripts/), the C
 * bindings (each file of bindings/ as "corio._<name>") and lua-cjson as "cjson". Setting CORIO_SCRIPTS
 * to a source tree's scripts/ directory loads the Lua files from disk instead (development). */
#include <stdlib.h>

#include "runtime.h"
#include "lua-cjson.h"

int luaopen_cjson_safe(lua_State *L); /* in the same archive, not in its header */

struct corio_script {
  const char *name, *path;
  const unsigned char *code;
  size_t len;
};
struct corio_binding {
  const char *name;
  lua_CFunction open;
};
extern const struct corio_script corio__scripts[];
extern const struct corio_binding corio__bindings[];

static int load_script(lua_State *L) {
  const struct corio_script *s = lua_touserdata(L, lua_upvalueindex(1));
  const char *dir = getenv("CORIO_SCRIPTS");
  int status;
  if (dir && *dir) {
    const char *file = lua_pushfstring(L, "%s/%s", dir, s->path + sizeof "scripts/" - 1);
    status = luaL_loadfile(L, file);
  } else {
    lua_pushfstring(L, "@%s", s->path);
    status = luaL_loadbuffer(L, (const char *)s->code, s->len, lua_tostring(L, -1));
  }
  if (status != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

void corio__preload_scripts(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const struct corio_script *s = corio__scripts; s->name; s++) {
    lua_pushlightuserdata(L, (void *)s);
    lua_pushcclosure(L, load_script, 1);
    lua_setfield(L, -2, s->name);
  }
  lua_pushcfunction(L, luaopen_cjson);
  lua_setfield(L, -2, "cjson");
  lua_pushcfunction(L, luaopen_cjson_safe);
  lua_setfield(L, -2, "cjson.safe");
  lua_pop(L, 1);
}

void corio__register_bindings(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const struct corio_binding *b = corio__bindings; b->name; b++) {
    lua_pushcfunction(L, b->open);
    lua_setfield(L, -2, b->name);
  }
  lua_pop(L, 1);
}
