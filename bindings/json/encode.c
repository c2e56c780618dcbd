/* corio.json's encoder: writes into one growing C buffer owned by a userdata (freed by its
 * __gc when an error leaves early). Integers in full, floats in the shortest of %.15g, %.16g,
 * %.17g that reads back as the same float. Tables are walked as Lua's `#`, `t[i]` and `pairs`
 * see them, as the Lua encoder it replaced did. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct outbuf {
  char *p;
  size_t n, cap;
} outbuf;

typedef struct enc {
  lua_State *L;
  outbuf *out;
  int replace;
  const void *path[JSON_MAX_DEPTH + 1]; /* the tables being written, outermost first */
} enc;

static int outbuf_gc(lua_State *L) {
  outbuf *o = lua_touserdata(L, 1);
  free(o->p);
  o->p = NULL;
  return 0;
}

static void grow(enc *e, size_t need) {
  outbuf *o = e->out;
  size_t cap = o->cap ? o->cap : 256;
  while (cap - o->n < need) cap *= 2;
  char *p = realloc(o->p, cap);
  if (!p) corio__nomem(e->L);
  o->p = p;
  o->cap = cap;
}

static inline void put(enc *e, const char *s, size_t n) {
  if (e->out->cap - e->out->n < n) grow(e, n);
  memcpy(e->out->p + e->out->n, s, n);
  e->out->n += n;
}

static inline void putc1(enc *e, char c) {
  if (e->out->cap == e->out->n) grow(e, 1);
  e->out->p[e->out->n++] = c;
}

static int fail(enc *e, const char *msg) {
  lua_pushstring(e->L, msg);
  return lua_error(e->L);
}

/* 1 for the bytes written as \X or \u00XX: the C0 controls, '"', '\\' and DEL. */
static const unsigned char needs_escape[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
};

static void put_escaped(enc *e, const unsigned char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (!needs_escape[c]) continue;
    put(e, (const char *)s + run, i - run);
    run = i + 1;
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t len = 2;
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      default:
        esc[1] = 'u', esc[2] = '0', esc[3] = '0';
        esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
        len = 6;
    }
    put(e, esc, len);
  }
  put(e, (const char *)s + run, n - run);
}

/* A string at idx, checked for UTF-8 (or with U+FFFD for each invalid sequence: the invalid
 * byte and the continuation bytes after it). */
static void encode_string(enc *e, int idx) {
  size_t n;
  const unsigned char *s = (const unsigned char *)lua_tolstring(e->L, idx, &n);
  const unsigned char *end = s + n;
  putc1(e, '"');
  size_t i = 0, run = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = corio__json_utf8_seq(s + i, end);
    if (k) {
      i += k;
      continue;
    }
    if (!e->replace) {
      lua_pushfstring(e->L, "json.encode: invalid UTF-8 at position %I of a string",
                      (lua_Integer)i + 1);
      lua_error(e->L);
    }
    put_escaped(e, s + run, i - run);
    put(e, "\xEF\xBF\xBD", 3);
    i++;
    while (i < n && s[i] >= 0x80 && s[i] <= 0xBF) i++;
    run = i;
  }
  put_escaped(e, s + run, n - run);
  putc1(e, '"');
}

static size_t fmt_integer(char *buf, lua_Integer v) {
  char tmp[24];
  size_t n = 0, len = 0;
  lua_Unsigned u = v < 0 ? 0u - (lua_Unsigned)v : (lua_Unsigned)v;
  do tmp[n++] = (char)('0' + u % 10); while ((u /= 10) != 0);
  if (v < 0) buf[len++] = '-';
  while (n) buf[len++] = tmp[--n];
  return len;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v, kept a float (".0" added). */
static size_t fmt_float(enc *e, char *buf, lua_Number v) {
  if (v != v || v == (lua_Number)HUGE_VAL || v == -(lua_Number)HUGE_VAL) {
    lua_pushliteral(e->L, "json.encode: cannot encode ");
    luaL_tolstring(e->L, -2, NULL);
    lua_concat(e->L, 2);
    lua_error(e->L);
  }
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, 40, "%.*g", prec, (double)v);
    if (strtod(buf, NULL) == (double)v) break;
  }
  if (!strpbrk(buf, ".eEn")) buf[n++] = '.', buf[n++] = '0', buf[n] = '\0';
  return (size_t)n;
}

/* The number at the top of the stack. */
static void encode_number(enc *e) {
  char buf[48];
  size_t n;
  if (lua_isinteger(e->L, -1)) n = fmt_integer(buf, lua_tointeger(e->L, -1));
  else n = fmt_float(e, buf, lua_tonumber(e->L, -1));
  put(e, buf, n);
}

/* ---- walking tables as pairs() does ------------------------------------------------------ *
 * Without __pairs, lua_next; with it, the iterator it returns, called as a generic for would.
 * Stack while iterating: [t ... iter-state] key value  (iter-state: nothing, or f s). */

static int iter_begin(lua_State *L, int t) {
  if (luaL_getmetafield(L, t, "__pairs") == LUA_TNIL) {
    lua_pushnil(L);
    return 0;
  }
  lua_pushvalue(L, t);
  lua_call(L, 1, 3); /* f s ctl */
  return 1;
}

/* Replace the key at the top with the next key and value; 0 (and nothing left) at the end. */
static int iter_next(lua_State *L, int t, int custom) {
  if (!custom) return lua_next(L, t);
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  lua_rotate(L, -3, 2); /* f s f s ctl */
  lua_call(L, 2, 2);    /* f s k v */
  if (lua_isnil(L, -2)) {
    lua_pop(L, 4);
    return 0;
  }
  return 1;
}

/* Abandon an iteration after `key value` (pops them and the iterator state). */
static void iter_end(lua_State *L, int custom) { lua_pop(L, custom ? 4 : 2); }

static void encode_value(enc *e, int depth);

static void encode_table(enc *e, int depth) {
  lua_State *L = e->L;
  int t = lua_gettop(L);
  const void *self = lua_topointer(L, t);
  for (int i = 0; i < depth; i++)
    if (e->path[i] == self) fail(e, "json.encode: a table contains itself");
  if (depth >= JSON_MAX_DEPTH) fail(e, "json.encode: nested too deeply");
  e->path[depth] = self;
  luaL_checkstack(L, 8, "json.encode: nested too deeply");
  lua_Integer len = luaL_len(L, t);
  int is_array = 0, marked = 0;
  if (lua_getmetatable(L, t)) {
    if (lua_rawequal(L, -1, JSON_ARRAY_MT)) is_array = marked = 1;
    else if (lua_rawequal(L, -1, JSON_OBJECT_MT)) marked = 1;
    lua_pop(L, 1);
  }
  if (!marked && len > 0) {
    is_array = 1;
    int custom = iter_begin(L, t);
    while (iter_next(L, t, custom)) {
      lua_Integer k;
      if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1 || k > len) {
        is_array = 0;
        iter_end(L, custom);
        break;
      }
      lua_pop(L, 1);
    }
  }
  if (is_array) {
    putc1(e, '[');
    for (lua_Integer i = 1; i <= len; i++) {
      if (i > 1) putc1(e, ',');
      lua_geti(L, t, i);
      encode_value(e, depth + 1);
    }
    putc1(e, ']');
  } else {
    putc1(e, '{');
    int first = 1;
    int custom = iter_begin(L, t);
    while (iter_next(L, t, custom)) {
      int tk = lua_type(L, -2);
      if (!first) putc1(e, ',');
      first = 0;
      if (tk == LUA_TSTRING) {
        encode_string(e, -2);
      } else if (tk == LUA_TNUMBER) {
        char buf[48];
        size_t n;
        lua_pushvalue(L, -2);
        if (lua_isinteger(L, -1)) n = fmt_integer(buf, lua_tointeger(L, -1));
        else n = fmt_float(e, buf, lua_tonumber(L, -1));
        lua_pop(L, 1);
        putc1(e, '"');
        put(e, buf, n);
        putc1(e, '"');
      } else {
        lua_pushfstring(L, "json.encode: cannot use a %s as a key", lua_typename(L, tk));
        lua_error(L);
      }
      putc1(e, ':');
      encode_value(e, depth + 1); /* pops the value */
    }
    putc1(e, '}');
  }
  lua_settop(L, t - 1);
}

/* Write the value at the top of the stack and pop it. */
static void encode_value(enc *e, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, -1)) {
    case LUA_TSTRING: encode_string(e, -1); break;
    case LUA_TNUMBER: encode_number(e); break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, -1)) put(e, "true", 4);
      else put(e, "false", 5);
      break;
    case LUA_TNIL: put(e, "null", 4); break;
    case LUA_TTABLE:
      if (lua_rawequal(L, -1, JSON_NULL)) put(e, "null", 4);
      else {
        encode_table(e, depth);
        return; /* popped */
      }
      break;
    default:
      lua_pushfstring(L, "json.encode: cannot encode a %s", luaL_typename(L, -1));
      lua_error(L);
  }
  lua_pop(L, 1);
}

int corio__json_encode(lua_State *L) {
  int replace = lua_toboolean(L, 2);
  lua_settop(L, 1);
  enc *e = lua_newuserdatauv(L, sizeof *e, 0); /* big (the path): not on the C stack */
  outbuf *o = lua_newuserdatauv(L, sizeof *o, 0);
  memset(o, 0, sizeof *o);
  lua_newtable(L); /* its metatable: frees the buffer if an error leaves early */
  lua_pushcfunction(L, outbuf_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  e->L = L;
  e->out = o;
  e->replace = replace;
  lua_pushvalue(L, 1);
  encode_value(e, 0);
  lua_pushlstring(L, o->p ? o->p : "", o->n);
  free(o->p);
  o->p = NULL;
  return 1;
}
