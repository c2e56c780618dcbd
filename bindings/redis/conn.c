/* corio.redis's mechanism: one Redis connection's command pipeline, without the transport.
 * Module "corio._redis": setup(null, status_class, error_class, fail_class), conn() -> Conn.
 * Conn methods: call(...), call_many(commands), take_output(), feed(data), parse(data),
 * fail(msg, code), pending(), failed().
 *
 * A Conn is what many tasks share: call() formats a command (hiredis's formatter) after the
 * ones already waiting to be written, queues the caller in a FIFO of replies, and suspends.
 * corio.redis's writer task takes the whole buffer with take_output() and writes it to the
 * corio.net stream in one write; its reader task gives what it reads to feed(), which builds
 * each reply as a Lua value (reply.c) and hands it to the task at the head of the FIFO. The
 * commands a round of ready tasks issue thus leave in one write: pipelining without asking.
 *
 * Handing a reply over: the reply is moved onto the waiting task's own stack (lua_xmove to a
 * suspended coroutine, as lua_resume passes arguments) and the task is woken; its continuation
 * finds the reply on top of its stack. If the task is cancelled after the wake but before it
 * runs, the values go with its unwound stack: nothing to clean up. The main pseudo-task (a call
 * at the top level of a script) is not a suspended coroutine: its reply waits in a registry
 * slot. A task cancelled while waiting stays in the FIFO as a tombstone whose replies are read
 * and dropped, so the replies behind it still reach their owners. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "binding.h"
#include "reply.h"

#define CONN "corio.redis.Conn"
#define SMALL_ARGV 16
#define KEEP_OUT (64 * 1024) /* an output buffer larger than this is freed once written */

static char MAINRES, ENV; /* registry keys: the main task's reply slot; setup()'s values */
enum { ENV_NULL = 1, ENV_STATUS, ENV_ERRMT, ENV_FAILMT };

typedef struct entry {
  corio_task *task; /* NULL: cancelled, its replies are dropped */
  lua_State *co;    /* the task's thread, where the reply goes */
  int n, got;       /* replies expected, received */
  unsigned main : 1, batch : 1;
} entry;

typedef struct conn {
  corio_runtime *rt;
  redisReader *reader;
  char *out; /* formatted commands not yet taken by the writer */
  size_t olen, ocap;
  entry *q; /* ring of waiting callers: q[(head + i) & (qcap - 1)] */
  size_t qhead, qlen, qcap;
  corio_waiter wr; /* the writer task, waiting for output */
  int failed;
  char target[112]; /* "127.0.0.1:6379" or a socket path, for corio.ps; may be "" */
} conn;

/* ---- life cycle ---------------------------------------------------------------------------- */

static conn *toconn(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, CONN);
}

static int conn_gc(lua_State *L) {
  conn *c = toconn(L, 1);
  if (c->reader) redisReaderFree(c->reader);
  c->reader = NULL;
  free(c->out);
  free(c->q);
  c->out = NULL;
  c->q = NULL;
  c->olen = c->ocap = c->qlen = c->qcap = 0;
  c->failed = 1;
  return 0;
}

/* corio.ps's reason for the writer task: "redis writer 127.0.0.1:6379" */
static void writer_describe(lua_State *L, corio_waiter *w, const char *op) {
  const char *target = container_of(w, conn, wr)->target;
  lua_pushfstring(L, "%s%s%s", op, *target ? " " : "", target);
}

/* corio._redis.conn([target]) -> Conn; target names the server in corio.ps's wait reasons */
static int redis_conn(lua_State *L) {
  const char *target = luaL_optstring(L, 1, "");
  conn *c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  snprintf(c->target, sizeof c->target, "%s", target);
  c->wr.describe = writer_describe;
  luaL_setmetatable(L, CONN);
  c->rt = corio__rt(L);
  lua_createtable(L, 4, 0); /* uservalue 1: the partial reply (reply.h); [0] counts its values */
  lua_pushinteger(L, 0);
  lua_rawseti(L, -2, 0);
  lua_setiuservalue(L, -2, 1);
  if (!(c->reader = corio__redis_reader_new())) return corio__nomem(L);
  return 1;
}

/* ---- the FIFO and the output buffer ------------------------------------------------------- */

static entry *at(conn *c, size_t i) {
  return &c->q[(c->qhead + i) & (c->qcap - 1)];
}

/* Room for one more entry; raises the memory error. */
static void reserve_entry(lua_State *L, conn *c) {
  if (c->qlen < c->qcap) return;
  size_t cap = c->qcap ? c->qcap * 2 : 64;
  entry *q = malloc(cap * sizeof *q);
  if (!q) corio__nomem(L);
  for (size_t i = 0; i < c->qlen; i++) q[i] = *at(c, i);
  free(c->q);
  c->q = q;
  c->qcap = cap;
  c->qhead = 0;
}

static void push_entry(conn *c, corio_task *t, lua_State *co, int n, int batch) {
  entry *e = at(c, c->qlen++);
  e->task = t;
  e->co = co;
  e->n = n;
  e->got = 0;
  e->main = corio__is_main(t) != 0;
  e->batch = batch != 0;
}

static void pop_entry(conn *c) {
  c->qhead = (c->qhead + 1) & (c->qcap - 1);
  c->qlen--;
}

/* ---- formatting ---------------------------------------------------------------------------- */

/* Format the command whose arguments are at idx .. idx+argc-1 after the output. Raises on a bad
 * argument (before anything is appended); returns 0, or -1 when out of memory (nothing is
 * appended then either). */
static int format_into(lua_State *L, conn *c, int idx, int argc, int argpos) {
  const char *sargv[SMALL_ARGV];
  size_t slen[SMALL_ARGV] = {0};
  const char **argv = sargv;
  size_t *lens = slen;
  if (argc > SMALL_ARGV) {
    /* a userdata, so that a raise below frees it with the rest of the stack */
    argv = lua_newuserdatauv(L, (size_t)argc * (sizeof *argv + sizeof *lens), 0);
    lens = (size_t *)(argv + argc);
  }
  for (int i = 0; i < argc; i++) {
    int t = lua_type(L, idx + i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
      if (argpos) luaL_typeerror(L, argpos + i, "string or number");
      luaL_error(L, "redis command: argument %d is a %s (expected a string or a number)", i + 1,
                 luaL_typename(L, idx + i));
    }
    argv[i] = lua_tolstring(L, idx + i, &lens[i]);
  }
  char *cmd = NULL;
  int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
  if (argc > SMALL_ARGV) lua_pop(L, 1);
  if (n < 0 || !cmd) return -1;
  if (c->ocap - c->olen < (size_t)n) {
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap - c->olen < (size_t)n) cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p) {
      redisFreeCommand(cmd);
      return -1;
    }
    c->out = p;
    c->ocap = cap;
  }
  memcpy(c->out + c->olen, cmd, (size_t)n);
  c->olen += (size_t)n;
  redisFreeCommand(cmd);
  return 0;
}

/* ---- calls --------------------------------------------------------------------------------- */

static int push_fail(lua_State *L, int idx) {
  lua_pushnil(L);
  lua_rawgeti(L, idx, 1);
  lua_rawgeti(L, idx, 2);
  return 3;
}

static int is_class(lua_State *L, int idx, int which) {
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV);
  lua_rawgeti(L, -1, which);
  int r = lua_rawequal(L, -1, -3);
  lua_pop(L, 3);
  return r;
}

/* The main pseudo-task's delivery, if any, onto its stack. */
static void take_main(lua_State *L) {
  if (!corio__is_main(corio__current(L))) return;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &MAINRES) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_rawgeti(L, -1, 1);
  lua_remove(L, -2);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &MAINRES);
}

/* Stack: 1 conn, 2 the command's name [, 3 the reply or a fail marker] */
static int call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  take_main(L);
  if (lua_gettop(L) < 3) {
    lua_pushnil(L);
    lua_pushliteral(L, "redis: the reply went missing");
    lua_pushliteral(L, "EPROTO");
    return 3;
  }
  lua_settop(L, 3);
  lua_remove(L, 2);
  if (lua_type(L, 2) == LUA_TTABLE) {
    if (is_class(L, 2, ENV_ERRMT)) {
      lua_pushnil(L);
      lua_getfield(L, 2, "message");
      lua_pushliteral(L, "EREDIS");
      return 3;
    }
    if (is_class(L, 2, ENV_FAILMT)) return push_fail(L, 2);
  }
  return 1;
}

static void call_cancel(lua_State *L, corio_task *t, void *data) {
  (void)L;
  conn *c = data;
  for (size_t i = 0; i < c->qlen; i++) {
    entry *e = at(c, i);
    if (e->task == t) {
      e->task = NULL;
      e->co = NULL;
      return;
    }
  }
}

/* corio.ps's reason: "redis GET 127.0.0.1:6379" (the name call() keeps at 2 on its frame),
 * "redis 3 commands 127.0.0.1:6379" for call_many */
static void call_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  conn *c = data;
  for (size_t i = 0; i < c->qlen; i++) {
    entry *e = at(c, i);
    if (e->task != t) continue;
    if (e->batch) {
      lua_pushfstring(L, "redis %d command%s%s%s", e->n, e->n == 1 ? "" : "s",
                      *c->target ? " " : "", c->target);
      return;
    }
    break;
  }
  const char *cmd = lua_type(co, 2) == LUA_TSTRING ? lua_tostring(co, 2) : "call";
  lua_pushfstring(L, "redis %s%s%s", cmd, *c->target ? " " : "", c->target);
}

static const corio_wait CALL_WAIT = {"redis call", call_cancel, call_describe};

static int conn_failed_result(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "error");
  if (lua_istable(L, -1)) return push_fail(L, lua_gettop(L));
  lua_pushnil(L);
  lua_pushliteral(L, "redis: the connection is closed");
  lua_pushliteral(L, "ECANCELED");
  return 3;
}

static void wake_writer(conn *c) {
  if (c->wr.task) corio__waiter_wake(c->rt, &c->wr, 0);
}

/* conn:call(command, args...) -> reply | nil, msg, "EREDIS" | nil, msg, code  [suspends]
 * Arguments are strings or numbers. */
static int conn_call(lua_State *L) {
  conn *c = toconn(L, 1);
  int argc = lua_gettop(L) - 1;
  luaL_argcheck(L, argc >= 1, 2, "a command name is required");
  if (c->failed) return conn_failed_result(L);
  corio_task *t = corio__check_suspend(L, "redis call");
  reserve_entry(L, c);
  if (format_into(L, c, 2, argc, 2) < 0) return corio__nomem(L);
  push_entry(c, t, L, 1, 0);
  wake_writer(c);
  lua_settop(L, 2); /* the command's name stays for corio.ps */
  return corio__await(L, &CALL_WAIT, c, call_k, 0);
}

/* Stack: 1 conn, 2 results [, 3 a fail marker] */
static int many_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  take_main(L);
  if (lua_gettop(L) >= 3 && lua_type(L, 3) == LUA_TTABLE && is_class(L, 3, ENV_FAILMT))
    return push_fail(L, 3);
  lua_settop(L, 2);
  return 1;
}

/* conn:call_many({{command, args...}, ...}) -> {reply, ...} | nil, msg, code  [suspends]
 * The commands leave together, in order, with nothing between them (what MULTI/EXEC needs);
 * error replies are error objects in the list. An empty list returns {} at once. */
static int conn_call_many(lua_State *L) {
  conn *c = toconn(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  int n = (int)luaL_len(L, 2);
  /* Check every argument first: once formatting starts only memory can fail, and then what
   * this batch appended is taken back, so nothing half-formed is ever sent. */
  int maxargc = 0;
  for (int i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
      return luaL_error(L, "call_many: command %d is a %s (expected a table)", i,
                        luaL_typename(L, -1));
    int argc = (int)luaL_len(L, -1);
    if (argc < 1) return luaL_error(L, "call_many: command %d is empty", i);
    if (argc > maxargc) maxargc = argc;
    for (int j = 1; j <= argc; j++) {
      int t = lua_rawgeti(L, -1, j);
      if (t != LUA_TSTRING && t != LUA_TNUMBER)
        return luaL_error(L, "call_many: command %d, argument %d is a %s (expected a string or "
                          "a number)", i, j, luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (n == 0) {
    lua_newtable(L);
    return 1;
  }
  if (c->failed) return conn_failed_result(L);
  corio_task *t = corio__check_suspend(L, "redis call");
  luaL_checkstack(L, maxargc + 8, "too many arguments");
  reserve_entry(L, c);
  size_t start = c->olen;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    int argc = (int)luaL_len(L, -1), cmd = lua_gettop(L);
    for (int j = 1; j <= argc; j++) lua_rawgeti(L, cmd, j);
    if (format_into(L, c, cmd + 1, argc, 0) < 0) {
      c->olen = start;
      return corio__nomem(L);
    }
    lua_settop(L, 2);
  }
  push_entry(c, t, L, n, 1);
  wake_writer(c);
  lua_createtable(L, n, 0);
  lua_replace(L, 2);
  return corio__await(L, &CALL_WAIT, c, many_k, 0);
}

/* ---- the writer ---------------------------------------------------------------------------- */

static int push_output(lua_State *L, conn *c) {
  lua_pushlstring(L, c->out, c->olen);
  c->olen = 0;
  if (c->ocap > KEEP_OUT) {
    free(c->out);
    c->out = NULL;
    c->ocap = 0;
  }
  return 1;
}

static int take_k(lua_State *L, int status, lua_KContext ctx);

static int take_wait(lua_State *L, conn *c) {
  if (c->failed) {
    lua_pushnil(L);
    return 1;
  }
  if (c->olen > 0) return push_output(L, c);
  corio__check_suspend(L, "redis writer");
  return corio__waiter_await(L, &c->wr, "redis writer", take_k, 0);
}

static int take_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return take_wait(L, toconn(L, 1));
}

/* conn:take_output() -> the formatted commands waiting (a string) | nil once the connection
 * failed  [suspends until there is some] */
static int conn_take_output(lua_State *L) {
  conn *c = toconn(L, 1);
  lua_settop(L, 1);
  return take_wait(L, c);
}

/* ---- the reader ---------------------------------------------------------------------------- */

/* Stack: 1 conn, 2 data; pushes the builder's context values at 3..6. */
static void push_ctx(lua_State *L, corio_redis_ctx *ctx) {
  lua_settop(L, 2);
  luaL_checkstack(L, 24, "redis reply");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV);
  if (!lua_istable(L, -1)) luaL_error(L, "corio._redis: setup() was not called");
  lua_rawgeti(L, 3, ENV_NULL);
  lua_rawgeti(L, 3, ENV_STATUS);
  lua_rawgeti(L, 3, ENV_ERRMT);
  lua_getiuservalue(L, 1, 1);
  ctx->L = L;
  ctx->null_idx = 4;
  ctx->status_idx = 5;
  ctx->errmt_idx = 6;
  ctx->partial_idx = 7;
}

static int protocol_error(lua_State *L, conn *c, const char *what) {
  lua_pushnil(L);
  lua_pushfstring(L, "redis: protocol error: %s", what);
  lua_pushliteral(L, "EPROTO");
  c->failed = 1; /* no reply after this one can be trusted; the caller fails the connection */
  return 3;
}

/* Hand the reply on top of L to the caller at the head of the FIFO; pops it. */
static void deliver(lua_State *L, conn *c) {
  entry *e = at(c, 0);
  e->got++;
  int done = e->got >= e->n;
  if (e->task) {
    if (e->batch) {
      lua_checkstack(e->co, 2);
      lua_xmove(L, e->co, 1);
      lua_rawseti(e->co, 2, e->got);
    } else if (e->main) {
      lua_createtable(L, 1, 0); /* boxed: a nil reply must be told from no reply */
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &MAINRES);
    } else {
      lua_checkstack(e->co, 2);
      lua_xmove(L, e->co, 1);
    }
    if (done) corio__wake(c->rt, e->task);
  } else {
    lua_pop(L, 1);
  }
  if (done) pop_entry(c);
}

/* conn:feed(data) -> true | nil, msg, "EPROTO"
 * Parses every complete reply in what was read so far and wakes their callers. Raises only
 * the memory error, after which the connection must be failed (the reader is mid-reply). */
static int conn_feed(lua_State *L) {
  conn *c = toconn(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (c->failed) return protocol_error(L, c, "the connection has failed");
  corio_redis_ctx ctx;
  push_ctx(L, &ctx);
  if (redisReaderFeed(c->reader, data, len) != REDIS_OK)
    return protocol_error(L, c, c->reader->errstr);
  for (;;) {
    int r = corio__redis_next(c->reader, &ctx);
    if (r == 0) break;
    if (r < 0) return protocol_error(L, c, c->reader->errstr);
    if (c->qlen == 0) return protocol_error(L, c, "a reply to no command");
    deliver(L, c);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:parse(data) -> {reply, ...} | nil, msg, "EPROTO"
 * For a connection whose replies are not answers to calls (pub/sub messages): the complete
 * replies in what was read so far, in order. */
static int conn_parse(lua_State *L) {
  conn *c = toconn(L, 1);
  luaL_checkstring(L, 2);
  if (c->failed) return protocol_error(L, c, "the connection has failed");
  corio_redis_ctx ctx;
  push_ctx(L, &ctx);
  size_t len;
  const char *data = lua_tolstring(L, 2, &len);
  if (redisReaderFeed(c->reader, data, len) != REDIS_OK)
    return protocol_error(L, c, c->reader->errstr);
  lua_newtable(L);
  int list = lua_gettop(L), n = 0;
  for (;;) {
    int r = corio__redis_next(c->reader, &ctx);
    if (r == 0) break;
    if (r < 0) return protocol_error(L, c, c->reader->errstr);
    lua_rawseti(L, list, ++n);
  }
  return 1;
}

/* conn:fail(msg, code): the connection is lost. Every caller waiting gets nil, msg, code; calls
 * after this return the same at once; the writer's take_output returns nil. Idempotent. */
static int conn_fail(lua_State *L) {
  conn *c = toconn(L, 1);
  luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, 1);
  if (lua_getfield(L, 4, "error") == LUA_TTABLE) return 0; /* failed already */
  lua_pop(L, 1);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV);
  lua_rawgeti(L, -1, ENV_FAILMT);
  lua_setmetatable(L, -3);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, 4, "error");
  int marker = lua_gettop(L);
  c->failed = 1;
  while (c->qlen > 0) {
    entry *e = at(c, 0);
    e->got = e->n - 1; /* the marker is the last thing it gets */
    e->batch = 0;      /* a batch's marker goes on top, above its list (many_k) */
    lua_pushvalue(L, marker);
    deliver(L, c);
  }
  c->olen = 0;
  if (c->wr.task) corio__waiter_wake(c->rt, &c->wr, UV_ECANCELED);
  redisReaderFree(c->reader);
  c->reader = corio__redis_reader_new(); /* NULL is fine: a failed conn never reads again */
  lua_pushinteger(L, 0);
  lua_rawseti(L, 4, 0);
  return 0;
}

/* conn:pending() -> how many calls wait for replies (cancelled ones included) */
static int conn_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)toconn(L, 1)->qlen);
  return 1;
}

/* conn:failed() -> whether fail() was called (or a protocol error seen) */
static int conn_is_failed(lua_State *L) {
  lua_pushboolean(L, toconn(L, 1)->failed);
  return 1;
}

/* ---- the module ---------------------------------------------------------------------------- */

/* corio._redis.setup(null, status_class, error_class, fail_class): the values replies are made
 * of (corio.redis calls it once). */
static int redis_setup(lua_State *L) {
  luaL_checkany(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_createtable(L, 4, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, ENV_NULL);
  lua_createtable(L, 2, 8); /* the status cache: [1] the class, [2] how many */
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, 0);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, ENV_STATUS);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, ENV_ERRMT);
  lua_pushvalue(L, 4);
  lua_rawseti(L, -2, ENV_FAILMT);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ENV);
  return 0;
}

/* corio._redis.status(text) -> the interned status object (so `reply == redis.status("OK")`) */
static int redis_status(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV);
  if (!lua_istable(L, -1)) return luaL_error(L, "corio._redis: setup() was not called");
  lua_rawgeti(L, -1, ENV_STATUS);
  corio_redis_ctx ctx = {.L = L, .status_idx = lua_gettop(L)};
  corio__redis_push_status(&ctx, s, len);
  return 1;
}

/* corio._redis.format(command, args...) -> the command as RESP (for connections written
 * directly: the pub/sub one) */
static int redis_format(lua_State *L) {
  int argc = lua_gettop(L);
  luaL_argcheck(L, argc >= 1, 1, "a command name is required");
  conn tmp;
  memset(&tmp, 0, sizeof tmp);
  int r = format_into(L, &tmp, 1, argc, 1);
  if (r < 0) return corio__nomem(L);
  lua_pushlstring(L, tmp.out, tmp.olen);
  free(tmp.out);
  return 1;
}

static const luaL_Reg conn_methods[] = {
  {"call", conn_call},
  {"call_many", conn_call_many},
  {"take_output", conn_take_output},
  {"feed", conn_feed},
  {"parse", conn_parse},
  {"fail", conn_fail},
  {"pending", conn_pending},
  {"failed", conn_is_failed},
  {NULL, NULL}
};

static const luaL_Reg conn_meta[] = {
  {"__gc", conn_gc},
  {NULL, NULL}
};

static const luaL_Reg redis_funcs[] = {
  {"setup", redis_setup},
  {"conn", redis_conn},
  {"status", redis_status},
  {"format", redis_format},
  {NULL, NULL}
};

int luaopen_corio_redis(lua_State *L) {
  corio__class(L, CONN, conn_methods, conn_meta);
  lua_pop(L, 1);
  luaL_newlib(L, redis_funcs);
  return 1;
}
