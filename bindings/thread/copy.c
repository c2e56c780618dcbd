/* How values cross threads: copied into bytes on one side, rebuilt on the other. Nil,
 * booleans, integers, floats, strings, tables of those (shared sub-tables and cycles are kept:
 * a table met twice is encoded once and referred to afterwards), functions without upvalues
 * other than _ENV (as bytecode) and channels (by reference). Everything else is refused with
 * the path to the value. */
#include <stdlib.h>
#include <string.h>

#include "thread.h"

/* The tags of the encoding. Numbers are stored in the host's byte order: both ends are in one
 * process. */
enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_SSTR, T_LSTR, T_TABLE, T_JARRAY, T_JOBJECT, T_REF,
  T_END, T_FUNC, T_CHAN
};

#define MAX_DEPTH 200 /* nesting of tables: as deep as Lua's own C recursion allows */

static char DUMP_CACHE; /* registry key: weak table function -> id .. bytecode (sender side) */
static char LOAD_CACHE; /* registry key: id -> loaded function (receiver side) */
/* A function's bytecode travels with an id, unique in the process, so that a receiver finds
 * the function it loaded before with an integer lookup instead of hashing the bytecode. */
static atomic_llong next_function_id = 1;
#define LOAD_CACHE_MAX 512

/* ---- the buffer ----------------------------------------------------------------------------- */

void thread__tbuf_free(tbuf *b) {
  for (int i = 0; i < b->nchans; i++) thread__chan_unref(b->chans[i]);
  free(b->chans);
  free(b->p);
  memset(b, 0, sizeof *b);
}

static int grow(tbuf *b, size_t more) {
  if (b->cap - b->n >= more) return 0;
  size_t cap = b->cap ? b->cap : 256; /* one allocation for most jobs */
  while (cap - b->n < more) {
    if (cap > ((size_t)-1) / 2) return -1;
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static void need(lua_State *L, tbuf *b, size_t more) {
  if (grow(b, more) != 0) corio__nomem(L);
}

static void put1(lua_State *L, tbuf *b, int c) {
  need(L, b, 1);
  b->p[b->n++] = (char)c;
}

static void putn(lua_State *L, tbuf *b, const void *p, size_t n) {
  need(L, b, n);
  memcpy(b->p + b->n, p, n);
  b->n += n;
}

int thread__tbuf_string(tbuf *b, const char *s, size_t len) {
  if (grow(b, 1 + sizeof len + len) != 0) return -1;
  b->p[b->n++] = T_LSTR;
  memcpy(b->p + b->n, &len, sizeof len);
  b->n += sizeof len;
  memcpy(b->p + b->n, s, len);
  b->n += len;
  return 0;
}

/* ---- encoding ------------------------------------------------------------------------------- */

typedef struct enc {
  tbuf *b;
  const char *what; /* "arg", "result", "value" */
  int k;            /* which one, for the message */
  int dir;
  int seen;         /* stack index of the table -> id map, 0 until the first table */
  int placeholder;  /* where that map goes */
  int ntables;
  int keys[MAX_DEPTH]; /* stack index of the key being encoded at each depth, 0 = in a key */
} enc;

static const char *const DIRS[] = {"to a thread", "from a thread", "through a channel"};

static int is_alpha(char c) {
  return c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z');
}

static int is_name(const char *s, size_t len) {
  if (len == 0 || !is_alpha(s[0])) return 0;
  for (size_t i = 1; i < len; i++)
    if (!is_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9')) return 0;
  return 1;
}

/* Raise "<what> <k> <path>: cannot send <thing> <dir>". The path names the keys that lead to
 * the value: .name, [1], ["two words"], [key] while the refused value is itself a key. */
static int refuse_why(lua_State *L, enc *e, int depth, const char *thing, const char *why) {
  int top = lua_gettop(L);
  lua_pushfstring(L, "%s %d", e->what, e->k);
  for (int i = 0; i < depth; i++) {
    int k = e->keys[i];
    if (k == 0) {
      lua_pushstring(L, i == 0 ? " [key]" : "[key]");
    } else if (lua_type(L, k) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, k, &len);
      if (is_name(s, len)) lua_pushfstring(L, "%s.%s", i == 0 ? " " : "", s);
      else lua_pushfstring(L, "%s[\"%s\"]", i == 0 ? " " : "", s);
    } else if (lua_isinteger(L, k)) {
      lua_pushfstring(L, "%s[%I]", i == 0 ? " " : "", (LUAI_UACINT)lua_tointeger(L, k));
    } else {
      lua_pushfstring(L, "%s[%s]", i == 0 ? " " : "", luaL_typename(L, k));
    }
    lua_concat(L, 2); /* one piece at a time: a path can be MAX_DEPTH keys long */
  }
  lua_pushfstring(L, ": cannot send %s %s%s", thing, DIRS[e->dir], why);
  lua_concat(L, lua_gettop(L) - top);
  return lua_error(L);
}

static int refuse(lua_State *L, enc *e, int depth, const char *thing) {
  return refuse_why(L, e, depth, thing, "");
}

static void enc_value(lua_State *L, enc *e, int idx, int depth);

static void enc_table(lua_State *L, enc *e, int idx, int depth) {
  tbuf *b = e->b;
  int tag = T_TABLE;
  if (!e->seen) {
    lua_newtable(L);
    lua_replace(L, e->placeholder);
    e->seen = e->placeholder;
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) == LUA_TNUMBER) { /* met before: shared, or a cycle */
    lua_Integer id = lua_tointeger(L, -1);
    lua_pop(L, 1);
    put1(L, b, T_REF);
    putn(L, b, &id, sizeof id);
    return;
  }
  lua_pop(L, 1);
  if (lua_getmetatable(L, idx)) {
    /* corio.json's array and object marks travel as marks; any other metatable would arrive
     * as something else (its functions have upvalues, its identity is per state): refused. */
    lua_getfield(L, -1, "__name");
    const char *name = lua_tostring(L, -1);
    if (name && strcmp(name, "corio.json.array") == 0) tag = T_JARRAY;
    else if (name && strcmp(name, "corio.json.object") == 0) tag = T_JOBJECT;
    else refuse(L, e, depth, "a table with a metatable");
    lua_pop(L, 2);
  }
  if (depth >= MAX_DEPTH) refuse(L, e, depth, "a table nested this deep");
  luaL_checkstack(L, 6, "cannot send a table nested this deep");
  lua_pushvalue(L, idx);
  lua_pushinteger(L, ++e->ntables);
  lua_rawset(L, e->seen);
  put1(L, b, tag);
  need(L, b, 8);
  size_t at = b->n; /* the counts are patched in once known */
  b->n += 8;
  uint32_t narr = 0, nhash = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    e->keys[depth] = 0;
    enc_value(L, e, top - 1, depth + 1);
    e->keys[depth] = top - 1;
    enc_value(L, e, top, depth + 1);
    if (lua_isinteger(L, top - 1) && lua_tointeger(L, top - 1) >= 1 &&
        lua_tointeger(L, top - 1) <= (lua_Integer)narr + nhash + 1)
      narr++;
    else
      nhash++;
    lua_pop(L, 1);
  }
  put1(L, b, T_END);
  memcpy(b->p + at, &narr, 4);
  memcpy(b->p + at + 4, &nhash, 4);
}

struct dump_state {
  int init;
  luaL_Buffer b;
};

/* As string.dump's writer: the buffer starts at the first write, above the function. */
static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  struct dump_state *d = ud;
  if (!d->init) {
    d->init = 1;
    luaL_buffinit(L, &d->b);
  }
  luaL_addlstring(&d->b, p, sz);
  return 0;
}

/* A Lua function whose only upvalue is _ENV: its bytecode, with debug information (tracebacks
 * keep their lines), cached per function. _ENV is bound to the receiving state's globals,
 * whatever table it was on this side (a sandbox, busted's spec environment): a function sent
 * to a thread uses that thread's globals. */
static void enc_function(lua_State *L, enc *e, int idx, int depth) {
  if (lua_iscfunction(L, idx)) refuse(L, e, depth, "a C function");
  for (int i = 1;; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    if (!name) break;
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0) {
      lua_pushfstring(L, " (it captures '%s')", *name ? name : "?");
      refuse_why(L, e, depth, "a function with upvalues", lua_tostring(L, -1));
    }
  }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DUMP_CACHE) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DUMP_CACHE);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    lua_pop(L, 1);
    struct dump_state d;
    long long id = atomic_fetch_add(&next_function_id, 1);
    d.init = 0;
    lua_pushvalue(L, idx);
    lua_dump(L, dump_writer, &d, 0);
    luaL_pushresult(&d.b); /* a Lua function always writes something */
    lua_remove(L, -2);
    lua_pushlstring(L, (const char *)&id, sizeof id);
    lua_insert(L, -2);
    lua_concat(L, 2);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  size_t len;
  const char *code = lua_tolstring(L, -1, &len);
  put1(L, e->b, T_FUNC);
  putn(L, e->b, &len, sizeof len);
  putn(L, e->b, code, len);
  lua_pop(L, 2);
}

static void enc_value(lua_State *L, enc *e, int idx, int depth) {
  tbuf *b = e->b;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: put1(L, b, T_NIL); break;
    case LUA_TBOOLEAN: put1(L, b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        need(L, b, 1 + sizeof i);
        b->p[b->n++] = T_INT;
        memcpy(b->p + b->n, &i, sizeof i);
        b->n += sizeof i;
      } else {
        lua_Number n = lua_tonumber(L, idx);
        need(L, b, 1 + sizeof n);
        b->p[b->n++] = T_FLT;
        memcpy(b->p + b->n, &n, sizeof n);
        b->n += sizeof n;
      }
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      need(L, b, 2 + sizeof len + len);
      if (len < 256) {
        b->p[b->n++] = T_SSTR;
        b->p[b->n++] = (char)(unsigned char)len;
      } else {
        b->p[b->n++] = T_LSTR;
        memcpy(b->p + b->n, &len, sizeof len);
        b->n += sizeof len;
      }
      memcpy(b->p + b->n, s, len);
      b->n += len;
      break;
    }
    case LUA_TTABLE: enc_table(L, e, lua_absindex(L, idx), depth); break;
    case LUA_TFUNCTION: enc_function(L, e, lua_absindex(L, idx), depth); break;
    case LUA_TUSERDATA: {
      chan *c = thread__tochan(L, idx);
      if (!c) refuse(L, e, depth, "a userdata");
      if (b->nchans == b->capchans) {
        int cap = b->capchans ? 2 * b->capchans : 4;
        chan **p = realloc(b->chans, sizeof *p * (size_t)cap);
        if (!p) corio__nomem(L);
        b->chans = p;
        b->capchans = cap;
      }
      need(L, b, 1 + sizeof c);
      thread__chan_ref(c);
      b->chans[b->nchans++] = c;
      b->p[b->n++] = T_CHAN;
      memcpy(b->p + b->n, &c, sizeof c);
      b->n += sizeof c;
      break;
    }
    case LUA_TTHREAD: refuse(L, e, depth, "a coroutine"); break;
    case LUA_TLIGHTUSERDATA: refuse(L, e, depth, "a light userdata"); break;
    default: refuse(L, e, depth, luaL_typename(L, idx)); break;
  }
}

void thread__encode(lua_State *L, int first, int n, tbuf *b, const char *what, int k0, int dir) {
  enc e;
  first = lua_absindex(L, first);
  e.b = b;
  e.what = what;
  e.dir = dir;
  e.ntables = 0;
  luaL_checkstack(L, 8, "too many values to send");
  lua_pushnil(L); /* placeholder for the table map, made at the first table */
  e.placeholder = lua_gettop(L);
  e.seen = 0;
  for (int i = 0; i < n; i++) {
    e.k = k0 + i;
    enc_value(L, &e, first + i, 0);
  }
  lua_settop(L, e.placeholder - 1);
}

/* ---- decoding ------------------------------------------------------------------------------- */

typedef struct dec {
  const char *p, *end;
  int tables; /* stack index of the id -> table list, 0 until the first table */
  int placeholder;
  lua_Integer ntables;
} dec;

static void dec_value(lua_State *L, dec *d);

/* corio.json's marks, from this state's corio.json */
static void json_mark(lua_State *L, const char *fn) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio.json");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, fn);
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
}

static void dec_function(lua_State *L, const char *code, size_t len) {
  long long id;
  memcpy(&id, code, sizeof id);
  code += sizeof id;
  len -= sizeof id;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LOAD_CACHE) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 8);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOAD_CACHE);
  }
  lua_pushinteger(L, (lua_Integer)id);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) == LUA_TFUNCTION) { /* [cache, id, fn] */
    lua_replace(L, -3);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  if (luaL_loadbufferx(L, code, len, "=thread", "b") != LUA_OK) lua_error(L);
  /* Only _ENV upvalues were accepted: each is this state's global table. */
  for (int i = 2; lua_getupvalue(L, -1, i); i++) {
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_setupvalue(L, -2, i);
  }
  /* A bounded cache: a program that makes new functions forever must not grow it forever. */
  lua_Integer n = 0;
  lua_getfield(L, -3, "n");
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n >= LOAD_CACHE_MAX) {
    lua_createtable(L, 0, 8);
    lua_replace(L, -4);
    lua_pushvalue(L, -3);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOAD_CACHE);
    n = 0;
  }
  lua_pushinteger(L, n + 1);
  lua_setfield(L, -4, "n");
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_rawset(L, -5); /* cache[id] = fn */
  lua_replace(L, -3);
  lua_pop(L, 1);
}

static void dec_table(lua_State *L, dec *d, int tag) {
  uint32_t narr, nhash;
  memcpy(&narr, d->p, 4);
  memcpy(&nhash, d->p + 4, 4);
  d->p += 8;
  luaL_checkstack(L, 6, "table nested too deeply");
  lua_createtable(L, (int)narr, (int)nhash);
  if (!d->tables) {
    lua_newtable(L);
    lua_replace(L, d->placeholder);
    d->tables = d->placeholder;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->tables, ++d->ntables);
  while (*d->p != T_END) {
    dec_value(L, d);
    dec_value(L, d);
    lua_rawset(L, -3);
  }
  d->p++;
  if (tag == T_JARRAY) json_mark(L, "array");
  else if (tag == T_JOBJECT) json_mark(L, "object");
}

static void dec_value(lua_State *L, dec *d) {
  int tag = (unsigned char)*d->p++;
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_INT: {
      lua_Integer i;
      memcpy(&i, d->p, sizeof i);
      d->p += sizeof i;
      lua_pushinteger(L, i);
      break;
    }
    case T_FLT: {
      lua_Number n;
      memcpy(&n, d->p, sizeof n);
      d->p += sizeof n;
      lua_pushnumber(L, n);
      break;
    }
    case T_SSTR: {
      size_t len = (unsigned char)*d->p++;
      lua_pushlstring(L, d->p, len);
      d->p += len;
      break;
    }
    case T_LSTR: case T_FUNC: {
      size_t len;
      memcpy(&len, d->p, sizeof len);
      d->p += sizeof len;
      if (tag == T_LSTR) lua_pushlstring(L, d->p, len);
      else dec_function(L, d->p, len);
      d->p += len;
      break;
    }
    case T_TABLE: case T_JARRAY: case T_JOBJECT: dec_table(L, d, tag); break;
    case T_REF: {
      lua_Integer id;
      memcpy(&id, d->p, sizeof id);
      d->p += sizeof id;
      lua_rawgeti(L, d->tables, id);
      break;
    }
    case T_CHAN: {
      chan *c;
      memcpy(&c, d->p, sizeof c);
      d->p += sizeof c;
      thread__chan_push(L, c);
      break;
    }
    default: luaL_error(L, "thread: corrupt message (tag %d)", tag);
  }
}

int thread__decode(lua_State *L, const tbuf *b) {
  dec d;
  d.p = b->p;
  d.end = b->p + b->n;
  d.tables = 0;
  d.ntables = 0;
  luaL_checkstack(L, 8, "too many values");
  lua_pushnil(L); /* placeholder for the table list, below the values */
  d.placeholder = lua_gettop(L);
  int n = 0;
  while (d.p < d.end) {
    if (n % 16 == 0) luaL_checkstack(L, 20, "too many values");
    dec_value(L, &d);
    n++;
  }
  lua_remove(L, d.placeholder);
  return n;
}
