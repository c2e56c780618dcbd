/* corio.json's decoder: recursive descent over the text, building Lua values directly.
 * Integers stay integers when they fit in 64 bits; strings are checked for strict UTF-8 as
 * they are scanned. Error messages and positions are those of the Lua decoder it replaced
 * (spec/json_spec.lua asserts them). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct dec {
  lua_State *L;
  const unsigned char *s; /* the text (NUL-terminated by Lua) */
  size_t len;
  int replace; /* invalid UTF-8 becomes U+FFFD instead of an error */
} dec;

/* Raise "json: <what> at position <pos> near '<10 bytes>'" (pos is 0-based here). */
static int fail(dec *d, size_t pos, const char *what) {
  lua_State *L = d->L;
  if (pos >= d->len) {
    lua_pushfstring(L, "json: %s at the end of the input", what);
    return lua_error(L); /* not luaL_error: the message carries no Lua position */
  }
  size_t n = d->len - pos < 10 ? d->len - pos : 10;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "json: ");
  luaL_addstring(&b, what);
  lua_pushfstring(L, " at position %I near '", (lua_Integer)pos + 1);
  luaL_addvalue(&b);
  luaL_addlstring(&b, (const char *)d->s + pos, n);
  luaL_addchar(&b, '\'');
  luaL_pushresult(&b);
  return lua_error(L);
}

size_t corio__json_utf8_seq(const unsigned char *s, const unsigned char *end) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t left = (size_t)(end - s);
  if (c >= 0xC2 && c <= 0xDF) return left >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0; /* a surrogate */
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0; /* past U+10FFFF */
    return 4;
  }
  return 0;
}

static size_t skip(const dec *d, size_t pos) {
  while (pos < d->len) {
    unsigned char c = d->s[pos];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') break;
    pos++;
  }
  return pos;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The four hex digits at p (all inside the text), or -1. */
static long hex4(const dec *d, size_t p) {
  if (d->len - p < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(d->s[p + i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

static void add_utf8(luaL_Buffer *b, unsigned long cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) u[0] = (char)cp, n = 1;
  else if (cp < 0x800) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  luaL_addlstring(b, u, n);
}

/* Scan raw bytes from pos up to the next quote, backslash or control character, checking
 * UTF-8 on the way. Returns the position of that byte (len if none); *bad gets the position
 * of the first invalid sequence, or (size_t)-1. */
/* 1 for the bytes that stop the plain run of a string: controls, '"', '\\', non-ASCII. */
static const unsigned char stops[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static size_t scan_raw(const dec *d, size_t pos, size_t *bad) {
  const unsigned char *s = d->s, *end = d->s + d->len;
  *bad = (size_t)-1;
  while (pos < d->len) {
    unsigned char c = s[pos];
    if (!stops[c]) {
      pos++;
    } else if (c < 0x80) {
      return pos;
    } else {
      size_t n = corio__json_utf8_seq(s + pos, end);
      if (n) pos += n;
      else {
        if (*bad == (size_t)-1) *bad = pos;
        pos++;
      }
    }
  }
  return pos;
}

/* Add s[from, to) to b, with U+FFFD for each invalid sequence: the invalid byte and the
 * continuation bytes after it (as the Lua decoder did). */
static void add_replaced(luaL_Buffer *b, const dec *d, size_t from, size_t to) {
  const unsigned char *s = d->s, *end = d->s + to;
  size_t run = from;
  while (from < to) {
    if (s[from] < 0x80) {
      from++;
      continue;
    }
    size_t n = corio__json_utf8_seq(s + from, end);
    if (n) {
      from += n;
      continue;
    }
    luaL_addlstring(b, (const char *)s + run, from - run);
    luaL_addstring(b, "\xEF\xBF\xBD");
    from++;
    while (from < to && s[from] >= 0x80 && s[from] <= 0xBF) from++;
    run = from;
  }
  luaL_addlstring(b, (const char *)s + run, to - run);
}

/* A string; pos is just after the opening quote. Pushes it, returns the position after the
 * closing quote. */
static size_t decode_string(dec *d, size_t pos) {
  lua_State *L = d->L;
  size_t start = pos, bad;
  size_t q = scan_raw(d, pos, &bad);
  if (q >= d->len) fail(d, start - 1, "unterminated string");
  if (d->s[q] == '"' && bad == (size_t)-1) { /* the common case: no escape, valid */
    lua_pushlstring(L, (const char *)d->s + pos, q - pos);
    return q + 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    unsigned char c = d->s[q];
    if (c != '"' && c != '\\') fail(d, q, "control character in string");
    if (bad != (size_t)-1) {
      if (!d->replace) fail(d, bad, "invalid UTF-8");
      add_replaced(&b, d, pos, q);
    } else {
      luaL_addlstring(&b, (const char *)d->s + pos, q - pos);
    }
    if (c == '"') break;
    unsigned char e = q + 1 < d->len ? d->s[q + 1] : 0;
    pos = q + 2;
    switch (e) {
      case '"': luaL_addchar(&b, '"'); break;
      case '\\': luaL_addchar(&b, '\\'); break;
      case '/': luaL_addchar(&b, '/'); break;
      case 'b': luaL_addchar(&b, '\b'); break;
      case 'f': luaL_addchar(&b, '\f'); break;
      case 'n': luaL_addchar(&b, '\n'); break;
      case 'r': luaL_addchar(&b, '\r'); break;
      case 't': luaL_addchar(&b, '\t'); break;
      case 'u': {
        long cp = hex4(d, q + 2);
        if (cp < 0) fail(d, q, "invalid \\u escape");
        pos = q + 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          /* a low surrogate must follow: \u[dD][c-fC-F]XX */
          long lo = pos + 1 < d->len && d->s[pos] == '\\' && d->s[pos + 1] == 'u'
                      ? hex4(d, pos + 2) : -1;
          if (lo < 0xDC00 || lo > 0xDFFF) fail(d, q, "unpaired UTF-16 surrogate");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          pos += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fail(d, q, "unpaired UTF-16 surrogate");
        }
        add_utf8(&b, (unsigned long)cp);
        break;
      }
      default: fail(d, q, "invalid escape");
    }
    q = scan_raw(d, pos, &bad);
    if (q >= d->len) fail(d, start - 1, "unterminated string");
  }
  luaL_pushresult(&b);
  return q + 1;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* A number at pos ('-' or a digit). Pushes it, returns the position after it. */
static size_t decode_number(dec *d, size_t pos) {
  const unsigned char *s = d->s;
  size_t len = d->len, j = pos;
  int neg = s[j] == '-';
  if (neg) j++;
  size_t digits = j;
  while (j < len && is_digit(s[j])) j++;
  if (j == digits) fail(d, pos, "unexpected character");
  if (s[digits] == '0' && j > digits + 1) fail(d, pos, "leading zero in number");
  int isfloat = 0;
  if (j < len && s[j] == '.') {
    size_t f = j + 1;
    while (f < len && is_digit(s[f])) f++;
    if (f == j + 1) fail(d, j, "invalid number");
    j = f;
    isfloat = 1;
  }
  if (j < len && (s[j] == 'e' || s[j] == 'E')) {
    size_t e = j + 1;
    if (e < len && (s[e] == '+' || s[e] == '-')) e++;
    size_t ed = e;
    while (e < len && is_digit(s[e])) e++;
    if (e == ed) fail(d, j, "invalid number");
    j = e;
    isfloat = 1;
  }
  if (!isfloat && !(neg && j - digits == 1 && s[digits] == '0')) {
    /* an integer, unless it does not fit in 64 bits ("-0" is the float -0.0, as before) */
    lua_Unsigned a = 0, lim = neg ? (lua_Unsigned)LUA_MAXINTEGER + 1 : LUA_MAXINTEGER;
    int fits = 1;
    for (size_t i = digits; i < j; i++) {
      unsigned dg = s[i] - '0';
      if (a > (lim - dg) / 10) {
        fits = 0;
        break;
      }
      a = a * 10 + dg;
    }
    if (fits) {
      lua_pushinteger(d->L, neg ? (lua_Integer)(0u - a) : (lua_Integer)a);
      return j;
    }
  }
  /* strtod on a copy: the text after the number could extend it ("0x1" after "-0") */
  char small[64], *buf = small;
  size_t n = j - pos;
  if (n + 1 > sizeof small) buf = lua_newuserdatauv(d->L, n + 1, 0);
  memcpy(buf, s + pos, n);
  buf[n] = '\0';
  double v = strtod(buf, NULL);
  if (buf != small) lua_pop(d->L, 1);
  if (v == HUGE_VAL || v == -HUGE_VAL) fail(d, pos, "number out of range");
  lua_pushnumber(d->L, (lua_Number)v);
  return j;
}

static size_t decode_value(dec *d, size_t pos, int depth);

static size_t decode_array(dec *d, size_t pos, int depth) {
  lua_State *L = d->L;
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, JSON_ARRAY_MT);
  lua_setmetatable(L, -2);
  pos = skip(d, pos);
  if (pos < d->len && d->s[pos] == ']') return pos + 1;
  for (lua_Integer n = 1;; n++) {
    pos = decode_value(d, pos, depth);
    lua_rawseti(L, -2, n);
    pos = skip(d, pos);
    unsigned char c = pos < d->len ? d->s[pos] : 0;
    if (c == ']') return pos + 1;
    if (c != ',') fail(d, pos, "expected ',' or ']'");
    pos++;
  }
}

static size_t decode_object(dec *d, size_t pos, int depth) {
  lua_State *L = d->L;
  lua_createtable(L, 0, 0);
  pos = skip(d, pos);
  if (pos < d->len && d->s[pos] == '}') return pos + 1;
  for (;;) {
    if (pos >= d->len || d->s[pos] != '"') fail(d, pos, "expected a string key");
    pos = skip(d, decode_string(d, pos + 1));
    if (pos >= d->len || d->s[pos] != ':') fail(d, pos, "expected ':'");
    pos = decode_value(d, skip(d, pos + 1), depth);
    lua_rawset(L, -3);
    pos = skip(d, pos);
    unsigned char c = pos < d->len ? d->s[pos] : 0;
    if (c == '}') return pos + 1;
    if (c != ',') fail(d, pos, "expected ',' or '}'");
    pos = skip(d, pos + 1);
  }
}

static int word_at(const dec *d, size_t pos, const char *w, size_t n) {
  return d->len - pos >= n && memcmp(d->s + pos, w, n) == 0;
}

/* Push the value at pos (after blanks); returns the position after it. */
static size_t decode_value(dec *d, size_t pos, int depth) {
  lua_State *L = d->L;
  pos = skip(d, pos);
  if (pos >= d->len) fail(d, pos, "unexpected end");
  unsigned char c = d->s[pos];
  switch (c) {
    case '{':
    case '[':
      if (depth >= JSON_MAX_DEPTH) fail(d, pos, "nested too deeply");
      luaL_checkstack(L, 8, "json: nested too deeply"); /* table, key, value, buffer */
      return c == '{' ? decode_object(d, pos + 1, depth + 1) : decode_array(d, pos + 1, depth + 1);
    case '"':
      return decode_string(d, pos + 1);
    case 't':
      if (!word_at(d, pos, "true", 4)) break;
      lua_pushboolean(L, 1);
      return pos + 4;
    case 'f':
      if (!word_at(d, pos, "false", 5)) break;
      lua_pushboolean(L, 0);
      return pos + 5;
    case 'n':
      if (!word_at(d, pos, "null", 4)) break;
      lua_pushvalue(L, JSON_NULL);
      return pos + 4;
    default:
      if (c == '-' || is_digit(c)) return decode_number(d, pos);
  }
  fail(d, pos, "unexpected character");
  return 0;
}

int corio__json_decode(lua_State *L) {
  dec d;
  d.L = L;
  d.s = (const unsigned char *)luaL_checklstring(L, 1, &d.len);
  d.replace = lua_toboolean(L, 2);
  lua_settop(L, 2);
  size_t pos = skip(&d, decode_value(&d, 0, 0));
  if (pos < d.len) fail(&d, pos, "trailing garbage");
  return 1;
}
