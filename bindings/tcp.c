/* A minimal TCP client: connect, write, read, shutdown, close. Enough to talk raw bytes to a
 * server (the web specs use it for malformed, slow and half-closed requests).
 * Lua module "corio._tcp": connect; methods of corio.tcp.Conn: write, read, shutdown, close. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define CONN "corio.tcp.Conn"

typedef struct box box;

typedef struct tcpc {
  uv_tcp_t h;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  corio_task *rtask; /* the task waiting to read, if any */
  corio_task *wtask; /* the task waiting in connect, write or shutdown, if any */
  int rstatus;       /* a read error (libuv code) not yet returned */
  int wstatus;       /* outcome of the last connect, write or shutdown */
  char *buf;         /* bytes read and not yet returned */
  size_t len, cap;
  int eof, closed, reading;
  box *owner;        /* the userdata, cleared when it is collected */
  char target[64];
} tcpc;

struct box {
  tcpc *c;
};


typedef struct wreq {
  uv_write_t req;
  tcpc *c;
  corio_task *task;
  char data[];
} wreq;

static tcpc *check(lua_State *L) {
  box *b = luaL_checkudata(L, 1, CONN);
  if (!b->c || b->c->closed) luaL_error(L, "tcp: the connection is closed");
  return b->c;
}

/* One reader and one writer may wait at a time (full duplex). */
static tcpc *check_idle(lua_State *L, const char *op, int reading) {
  tcpc *c = check(L);
  if (reading ? c->rtask != NULL : c->wtask != NULL)
    luaL_error(L, "%s: another task is already %s on this connection", op,
               reading ? "reading" : "writing");
  return c;
}

static void close_cb(uv_handle_t *h) {
  tcpc *c = (tcpc *)h;
  if (c->owner) c->owner->c = NULL;
  free(c->buf);
  free(c);
}

static void conn_close(tcpc *c) {
  if (c->closed) return;
  c->closed = 1;
  uv_close((uv_handle_t *)&c->h, close_cb);
}

/* ---- connect --------------------------------------------------------------------------- */

static void wake_writer(tcpc *c, int status) {
  c->wstatus = status;
  if (c->wtask) {
    corio__wake(c->h.data, c->wtask);
    c->wtask = NULL;
  }
}

static void connect_cb(uv_connect_t *req, int status) {
  wake_writer(req->data, status);
}

static void op_cancel(lua_State *L, corio_task *t, void *data) {
  (void)t;
  tcpc *c = data;
  (void)L;
  c->wtask = NULL;
}

static void connect_cancel(lua_State *L, corio_task *t, void *data) {
  (void)t;
  tcpc *c = data;
  (void)L;
  c->wtask = NULL;
  conn_close(c);  /* the connect callback then runs with ECANCELED */
}

static const corio_wait CONNECT_WAIT = {"tcp connect", connect_cancel};

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  box *b = lua_touserdata(L, (int)ctx);
  tcpc *c = b->c;
  (void)status;
  if (c->wstatus < 0) {
    int err = c->wstatus;
    c->owner = NULL;
    conn_close(c);
    b->c = NULL;
    return corio__fail(L, "connect", c->target, err);
  }
  uv_tcp_nodelay(&c->h, 1);
  lua_pushvalue(L, (int)ctx);
  return 1;
}

/* corio._tcp.connect(host, port) -> conn | nil, msg, code  [suspends] */
static int tcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  struct sockaddr_storage addr;
  char target[64];
  luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
  snprintf(target, sizeof target, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
  int r = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                            : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (r) return corio__fail(L, "connect", target, r);
  corio_task *t = corio__check_suspend(L, "tcp connect");
  corio_runtime *rt = corio__rt(L);
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->c = NULL;
  luaL_setmetatable(L, CONN);
  int bidx = lua_gettop(L);
  tcpc *c = calloc(1, sizeof *c);
  if (!c) return luaL_error(L, "connect: out of memory");
  uv_tcp_init(corio__loop(rt), &c->h);
  c->h.data = rt;
  c->connect.data = c;
  c->shutdown.data = c;
  snprintf(c->target, sizeof c->target, "%s", target);
  b->c = c;
  c->owner = b;
  r = uv_tcp_connect(&c->connect, &c->h, (struct sockaddr *)&addr, connect_cb);
  if (r) {
    c->owner = NULL;
    conn_close(c);
    b->c = NULL;
    return corio__fail(L, "connect", target, r);
  }
  c->wtask = t;
  return corio__await(L, &CONNECT_WAIT, c, connect_k, bidx);
}

/* ---- write ----------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  tcpc *c = w->c;
  if (c->wtask && c->wtask == w->task) wake_writer(c, status);
  free(w);
}

static const corio_wait WRITE_WAIT = {"tcp write", op_cancel};

static int status_k(lua_State *L, int status, lua_KContext ctx) {
  box *b = lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  if (!b->c) return corio__fail(L, "tcp", NULL, UV_ECANCELED);
  if (b->c->wstatus < 0) return corio__fail(L, "tcp", b->c->target, b->c->wstatus);
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:write(data) -> true | nil, msg, code  [suspends until the data is handed to the OS] */
static int tcp_write(lua_State *L) {
  tcpc *c = check_idle(L, "tcp write", 0);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  corio_task *t = corio__check_suspend(L, "tcp write");
  wreq *w = malloc(sizeof *w + n);
  if (!w) return luaL_error(L, "tcp write: out of memory");
  memcpy(w->data, data, n);
  w->c = c;
  w->task = t;
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
  int r = uv_write(&w->req, (uv_stream_t *)&c->h, &buf, 1, write_cb);
  if (r) {
    free(w);
    return corio__fail(L, "write", c->target, r);
  }
  c->wtask = t;
  lua_settop(L, 1);
  return corio__await(L, &WRITE_WAIT, c, status_k, 0);
}

/* ---- read ------------------------------------------------------------------------------ */

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  tcpc *c = (tcpc *)h;
  if (c->cap - c->len < 65536) {
    size_t cap = c->len + 65536;
    char *p = realloc(c->buf, cap);
    if (!p) { *buf = uv_buf_init(NULL, 0); return; }
    c->buf = p;
    c->cap = cap;
  }
  (void)size;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tcpc *c = (tcpc *)s;
  (void)buf;
  if (nread == 0) return;
  if (nread > 0) {
    c->len += (size_t)nread;
  } else if (nread == UV_EOF) {
    c->eof = 1;
  } else {
    c->rstatus = (int)nread;
    c->eof = 1;
  }
  uv_read_stop(s);
  c->reading = 0;
  if (c->rtask) {
    corio__wake(c->h.data, c->rtask);
    c->rtask = NULL;
  }
}

static void read_cancel(lua_State *L, corio_task *t, void *data) {
  (void)t;
  tcpc *c = data;
  (void)L;
  c->rtask = NULL;
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->h);
    c->reading = 0;
  }
}

static const corio_wait READ_WAIT = {"tcp read", read_cancel};

/* Push up to max buffered bytes, or the end-of-stream / error results. */
static int read_result(lua_State *L, tcpc *c, size_t max) {
  if (c->len > 0) {
    size_t n = c->len < max ? c->len : max;
    lua_pushlstring(L, c->buf, n);
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    return 1;
  }
  if (c->rstatus < 0) {
    int err = c->rstatus;
    c->rstatus = 0;
    return corio__fail(L, "read", c->target, err);
  }
  lua_pushnil(L);  /* EOF */
  return 1;
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  box *b = lua_touserdata(L, 1);
  (void)status;
  if (!b->c) return corio__fail(L, "read", NULL, UV_ECANCELED);
  return read_result(L, b->c, (size_t)ctx);
}

/* conn:read([max]) -> data | nil (the peer closed its side) | nil, msg, code  [suspends]
 * Returns what has arrived (at most max bytes, default 64 KiB) as soon as anything has. */
static int tcp_read(lua_State *L) {
  tcpc *c = check_idle(L, "tcp read", 1);
  lua_Integer max = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, max > 0, 2, "max must be positive");
  if (c->len > 0 || c->eof || c->rstatus < 0) return read_result(L, c, (size_t)max);
  corio_task *t = corio__check_suspend(L, "tcp read");
  int r = uv_read_start((uv_stream_t *)&c->h, alloc_cb, read_cb);
  if (r) return corio__fail(L, "read", c->target, r);
  c->reading = 1;
  c->rtask = t;
  lua_settop(L, 1);
  return corio__await(L, &READ_WAIT, c, read_k, (lua_KContext)max);
}

/* ---- shutdown and close ---------------------------------------------------------------- */

static void shutdown_cb(uv_shutdown_t *req, int status) {
  wake_writer(req->data, status);
}

static const corio_wait SHUTDOWN_WAIT = {"tcp shutdown", op_cancel};

/* conn:shutdown() -> true | nil, msg, code  [suspends]: send FIN after the queued writes;
 * reading stays possible (a half-close). */
static int tcp_shutdown(lua_State *L) {
  tcpc *c = check_idle(L, "tcp shutdown", 0);
  corio_task *t = corio__check_suspend(L, "tcp shutdown");
  int r = uv_shutdown(&c->shutdown, (uv_stream_t *)&c->h, shutdown_cb);
  if (r) return corio__fail(L, "shutdown", c->target, r);
  c->wtask = t;
  lua_settop(L, 1);
  return corio__await(L, &SHUTDOWN_WAIT, c, status_k, 0);
}

/* conn:close(): closes now (idempotent). */
static int tcp_close(lua_State *L) {
  box *b = luaL_checkudata(L, 1, CONN);
  if (b->c) {
    if (b->c->rtask || b->c->wtask)
      return luaL_error(L, "tcp close: a task is waiting on this connection");
    b->c->owner = NULL;
    conn_close(b->c);
    b->c = NULL;
  }
  return 0;
}

static int tcp_gc(lua_State *L) {
  box *b = lua_touserdata(L, 1);
  if (b->c) {
    b->c->rtask = b->c->wtask = NULL;
    b->c->owner = NULL;
    conn_close(b->c);
    b->c = NULL;
  }
  return 0;
}

static int tcp_tostring(lua_State *L) {
  box *b = luaL_checkudata(L, 1, CONN);
  if (b->c) lua_pushfstring(L, "corio.tcp.Conn (%s)", b->c->target);
  else lua_pushliteral(L, "corio.tcp.Conn (closed)");
  return 1;
}

static const luaL_Reg methods[] = {
  {"write", tcp_write},
  {"read", tcp_read},
  {"shutdown", tcp_shutdown},
  {"close", tcp_close},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"connect", tcp_connect},
  {NULL, NULL}
};

int luaopen_corio_tcp(lua_State *L) {
  /* A peer that goes away must cost an EPIPE on its own connection, not the process. */
  signal(SIGPIPE, SIG_IGN);
  luaL_newmetatable(L, CONN);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, tcp_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, tcp_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tcp_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
