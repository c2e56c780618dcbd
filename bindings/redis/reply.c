/* Lua values straight from hiredis's RESP2 reader (see reply.h). The reader calls our create
 * functions depth first; the stack holds exactly the path from the root array to the value
 * being built: an array's object (the void * hiredis keeps for it) is its stack position above
 * the base, and a new child first drops its finished siblings above its parent. So a reply with
 * a million elements uses a stack of depth at most 9, and nothing is built twice. When the
 * input ends inside a reply, hiredis keeps its place and we keep that path, in the partial
 * table, until the next call puts it back at the same positions. */
#include "reply.h"

#include <stdint.h>

#include <lauxlib.h>

#define STATUS_CACHE_MAX 256
#define PREALLOC_MAX 1024 /* a server's "*2147483647" must not allocate before data arrives */

static corio_redis_ctx *ctx_of(const redisReadTask *task) {
  return task->privdata;
}

/* Drop finished siblings: leave the parent array (or the base) on top. */
static int place(corio_redis_ctx *c, const redisReadTask *task) {
  int parent = task->parent ? c->base + (int)(intptr_t)task->parent->obj : 0;
  lua_settop(c->L, parent ? parent : c->base);
  return parent;
}

/* The value on top is the task's: store it in its parent (keeping it on the stack if it is an
 * array that will receive children). Returns the object hiredis keeps for it. */
static void *attach(corio_redis_ctx *c, const redisReadTask *task, int parent, int is_array) {
  lua_State *L = c->L;
  if (parent) {
    if (is_array) lua_pushvalue(L, -1);
    lua_rawseti(L, parent, (lua_Integer)task->idx + 1);
    if (!is_array) return (void *)(intptr_t)1; /* any non-NULL value will do */
  }
  return (void *)(intptr_t)(lua_gettop(L) - c->base);
}

void corio__redis_push_status(corio_redis_ctx *c, const char *text, size_t len) {
  lua_State *L = c->L;
  lua_pushlstring(L, text, len);
  if (lua_rawget(L, c->status_idx) != LUA_TNIL) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushlstring(L, text, len);
  lua_setfield(L, -2, "status");
  lua_rawgeti(L, c->status_idx, 1); /* the status class */
  lua_setmetatable(L, -2);
  lua_rawgeti(L, c->status_idx, 2); /* how many are cached */
  lua_Integer n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n < STATUS_CACHE_MAX) {
    lua_pushlstring(L, text, len);
    lua_pushvalue(L, -2);
    lua_rawset(L, c->status_idx);
    lua_pushinteger(L, n + 1);
    lua_rawseti(L, c->status_idx, 2);
  }
}

static void *create_string(const redisReadTask *task, char *str, size_t len) {
  corio_redis_ctx *c = ctx_of(task);
  lua_State *L = c->L;
  int parent = place(c, task);
  switch (task->type) {
    case REDIS_REPLY_STATUS: corio__redis_push_status(c, str, len); break;
    case REDIS_REPLY_ERROR:
      lua_createtable(L, 0, 1);
      lua_pushlstring(L, str, len);
      lua_setfield(L, -2, "message");
      lua_pushvalue(L, c->errmt_idx);
      lua_setmetatable(L, -2);
      break;
    default: lua_pushlstring(L, str, len); break;
  }
  return attach(c, task, parent, 0);
}

static void *create_array(const redisReadTask *task, int elements) {
  corio_redis_ctx *c = ctx_of(task);
  int parent = place(c, task);
  lua_createtable(c->L, elements < 0 ? 0 : elements > PREALLOC_MAX ? PREALLOC_MAX : elements, 0);
  return attach(c, task, parent, 1);
}

static void *create_integer(const redisReadTask *task, long long value) {
  corio_redis_ctx *c = ctx_of(task);
  int parent = place(c, task);
  lua_pushinteger(c->L, (lua_Integer)value);
  return attach(c, task, parent, 0);
}

static void *create_nil(const redisReadTask *task) {
  corio_redis_ctx *c = ctx_of(task);
  int parent = place(c, task);
  if (parent) lua_pushvalue(c->L, c->null_idx);
  else lua_pushnil(c->L);
  return attach(c, task, parent, 0);
}

static void free_object(void *obj) {
  (void)obj; /* the values are Lua's: the collector owns them */
}

static redisReplyObjectFunctions FUNCTIONS = {create_string, create_array, create_integer,
                                              create_nil, free_object};

redisReader *corio__redis_reader_new(void) {
  return redisReaderCreateWithFunctions(&FUNCTIONS);
}

int corio__redis_next(redisReader *r, corio_redis_ctx *ctx) {
  lua_State *L = ctx->L;
  luaL_checkstack(L, 16, "redis reply");
  int base = ctx->base = lua_gettop(L);
  /* Put back the path of a reply that arrived in part (see the top of the file). */
  lua_rawgeti(L, ctx->partial_idx, 0);
  int saved = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (saved > 0) {
    luaL_checkstack(L, saved + 16, "redis reply");
    for (int i = 1; i <= saved; i++) {
      lua_rawgeti(L, ctx->partial_idx, i);
      lua_pushnil(L);
      lua_rawseti(L, ctx->partial_idx, i);
    }
    lua_pushinteger(L, 0);
    lua_rawseti(L, ctx->partial_idx, 0);
  }
  /* hiredis copies privdata into a read task when the task starts, and a task may have started
   * in an earlier call (it starts one even when the input ends right after a reply). */
  r->privdata = ctx;
  for (int i = 0; i <= r->ridx && i < (int)(sizeof r->rstack / sizeof r->rstack[0]); i++)
    r->rstack[i].privdata = ctx;
  void *reply = NULL;
  int rc = redisReaderGetReply(r, &reply);
  if (rc != REDIS_OK) {
    lua_settop(L, base);
    return -1;
  }
  if (!reply) {
    int n = lua_gettop(L) - base;
    if (n > 0 && r->ridx >= 0) {
      for (int i = n; i >= 1; i--) lua_rawseti(L, ctx->partial_idx, i);
      lua_pushinteger(L, n);
      lua_rawseti(L, ctx->partial_idx, 0);
    }
    lua_settop(L, base);
    return 0;
  }
  lua_settop(L, base + 1);
  return 1;
}
