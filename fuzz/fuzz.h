/* What every fuzz target shares: a corio runtime opened once, and a property written in Lua
 * that is called with each input as a string. A Lua error from the property is a finding: it
 * is printed and the process aborts, which libFuzzer reports with the input that caused it.
 *
 * A target is fuzz/fuzz_<name>.c defining
 *     static const char PROPERTY[] = "<Lua chunk returning function(input)>";
 * and then `FUZZ_TARGET(PROPERTY)`. The chunk runs at top level in the runtime (an async
 * call drives the loop until it completes). Seeds go in fuzz/corpus/fuzz_<name>/, a
 * dictionary in fuzz/fuzz_<name>.dict; fuzz/run runs every target. */
#ifndef CORIO_FUZZ_H
#define CORIO_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corio.h"
#include <lauxlib.h>

static lua_State *fuzz_L;
static int fuzz_property = LUA_NOREF;

/* Open the runtime and compile the property once (a failure here is a bug in the target). */
static void fuzz_init(const char *property) {
  corio_runtime *rt = corio_open(NULL);
  if (!rt) abort();
  fuzz_L = corio_lua(rt);
  if (luaL_loadbuffer(fuzz_L, property, strlen(property), "=property") != LUA_OK ||
      lua_pcall(fuzz_L, 0, 1, 0) != LUA_OK || !lua_isfunction(fuzz_L, -1)) {
    fprintf(stderr, "fuzz: the property does not load: %s\n", lua_tostring(fuzz_L, -1));
    abort();
  }
  fuzz_property = luaL_ref(fuzz_L, LUA_REGISTRYINDEX);
}

static int fuzz_traceback(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void fuzz_check(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_L;
  lua_pushcfunction(L, fuzz_traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_property);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
    fprintf(stderr, "fuzz: property violated: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pop(L, 1);
}

#define FUZZ_TARGET(property)                                             \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);           \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {          \
    if (!fuzz_L) fuzz_init(property);                                     \
    fuzz_check(data, size);                                               \
    return 0;                                                             \
  }

#endif
