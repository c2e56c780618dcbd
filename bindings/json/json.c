/* corio._json: the C half of corio.json (scripts/corio/json.lua holds the policy).
 * Lua module "corio._json": new. */
#include "json.h"

/* _json.new(null, array_mt, object_mt) -> decode, encode
 *   decode(text, replace) -> value   raises "json: ... at position N near '...'"
 *   encode(value, replace) -> text   raises "json.encode: ..."
 * `replace`: U+FFFD for invalid UTF-8 instead of an error. Both closures keep the three
 * values as upvalues (json.h). */
static int json_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, corio__json_decode, 3);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, corio__json_encode, 3);
  return 2;
}

static const luaL_Reg json_funcs[] = {
  {"new", json_new},
  {NULL, NULL}
};

int luaopen_corio_json(lua_State *L) {
  luaL_newlib(L, json_funcs);
  return 1;
}
