/* corio._json, private: the decoder and encoder of corio.json in C (bindings/json/). The policy
 * (options, the null sentinel, the array and object marks) stays in scripts/corio/json.lua;
 * both halves get the sentinel and the marks as upvalues of their closure. */
#ifndef CORIO_JSON_H
#define CORIO_JSON_H

#include "binding.h"

#define JSON_MAX_DEPTH 1000

/* Upvalues of both closures. */
#define JSON_NULL lua_upvalueindex(1)
#define JSON_ARRAY_MT lua_upvalueindex(2)
#define JSON_OBJECT_MT lua_upvalueindex(3)

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF, as Lua's
 * utf8.len): the length of the valid sequence at s (before end), or 0 if it is invalid. */
size_t corio__json_utf8_seq(const unsigned char *s, const unsigned char *end);

/* decode(text, replace) -> value; encode(value, replace) -> text */
int corio__json_decode(lua_State *L);
int corio__json_encode(lua_State *L);

#endif
