/* A minimal TCP client: connect, write, read, shutdown, close. Enough to talk raw bytes to a
 * server (the web specs use it for malformed, slow and half-closed requests).
 * Lua module "corio._tcp": connect; methods of corio.tcp.Conn: write, read, shutdown, close. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define CONN "corio.tcp.Conn"

/* The record behind a corio.tcp.Conn box: one reader and one writer may wait at a time
 * (full duplex), each in its own slot. */
typedef struct tcpc {
  corio_handle base; /* first: the box's record, freed by the shared close callback */
  uv_tcp_t h;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  corio_runtime *rt;
  corio_waiter r; /* a task waiting to read */
  corio_waiter w; /* a task waiting in connect, write or shutdown; w.status: its outcome */
  int rstatus;    /* a read error (libuv code) not yet returned */
  char *buf;      /* bytes read and not yet returned */
  size_t len, cap;
  int eof, reading;
  char target[64];
} tcpc;

typedef struct wreq {
  uv_write_t req;
  tcpc *c;
  corio_task *task; /* the writer: a later writer is not woken by an earlier write */
  char data[];
} wreq;

static tcpc *check(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, CONN);
  if (!b->h || b->h->closing) luaL_error(L, "tcp: the connection is closed");
  return (tcpc *)b->h;
}

/* One reader and one writer may wait at a time (full duplex). */
static tcpc *check_idle(lua_State *L, const char *op, int reading) {
  tcpc *c = check(L);
  if (corio__waiter_busy(reading ? &c->r : &c->w))
    luaL_error(L, "%s: another task is already %s on this connection", op,
               reading ? "reading" : "writing");
  return c;
}

static void conn_closed(corio_handle *h) {
  free(((tcpc *)h)->buf);
}

/* ---- connect --------------------------------------------------------------------------- */

static void connect_cb(uv_connect_t *req, int status) {
  tcpc *c = req->data;
  corio__waiter_wake(c->rt, &c->w, status);
}

/* A cancelled connect closes the connection (the connect callback then runs with ECANCELED). */
static void connect_cancel(lua_State *L, corio_waiter *w) {
  (void)L;
  corio__box_close(&container_of(w, tcpc, w)->base);
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = lua_touserdata(L, (int)ctx);
  tcpc *c = (tcpc *)b->h;
  (void)status;
  if (c->w.status < 0) {
    corio__box_close(&c->base);
    return corio__fail(L, "connect", c->target, c->w.status);
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
  corio__host_port(target, sizeof target, host, port);
  int r = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                            : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (r) return corio__fail(L, "connect", target, r);
  corio__check_suspend(L, "tcp connect");
  corio_runtime *rt = corio__rt(L);
  corio_box *b = corio__box_new(L, CONN);
  int bidx = lua_gettop(L);
  tcpc *c = calloc(1, sizeof *c);
  if (!c) return corio__nomem(L);
  uv_tcp_init(corio__loop(rt), &c->h);
  corio__box_attach(b, &c->base, (uv_handle_t *)&c->h, conn_closed);
  c->rt = rt;
  c->connect.data = c;
  c->shutdown.data = c;
  snprintf(c->target, sizeof c->target, "%s", target);
  r = uv_tcp_connect(&c->connect, &c->h, (struct sockaddr *)&addr, connect_cb);
  if (r) {
    corio__box_close(&c->base);
    return corio__fail(L, "connect", target, r);
  }
  c->w.on_cancel = connect_cancel;
  return corio__waiter_await(L, &c->w, "tcp connect", connect_k, bidx);
}

/* ---- write ----------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  tcpc *c = w->c;
  if (c->w.task && c->w.task == w->task) corio__waiter_wake(c->rt, &c->w, status);
  free(w);
}

static int status_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = lua_touserdata(L, 1);
  tcpc *c = (tcpc *)b->h;
  (void)status;
  (void)ctx;
  if (!c) return corio__fail(L, "tcp", NULL, UV_ECANCELED);
  if (c->w.status < 0) return corio__fail(L, "tcp", c->target, c->w.status);
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
  if (!w) return corio__nomem(L);
  memcpy(w->data, data, n);
  w->c = c;
  w->task = t;
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
  int r = uv_write(&w->req, (uv_stream_t *)&c->h, &buf, 1, write_cb);
  if (r) {
    free(w);
    return corio__fail(L, "write", c->target, r);
  }
  c->w.on_cancel = NULL; /* the write goes on; its callback wakes nobody */
  lua_settop(L, 1);
  return corio__waiter_await(L, &c->w, "tcp write", status_k, 0);
}

/* ---- read ------------------------------------------------------------------------------ */

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  tcpc *c = container_of((uv_tcp_t *)h, tcpc, h);
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
  tcpc *c = container_of((uv_tcp_t *)s, tcpc, h);
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
  corio__waiter_wake(c->rt, &c->r, 0);
}

static void read_cancel(lua_State *L, corio_waiter *w) {
  tcpc *c = container_of(w, tcpc, r);
  (void)L;
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->h);
    c->reading = 0;
  }
}


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
    if (err == UV_ENOBUFS) return corio__nomem(L); /* alloc_cb could not grow the buffer */
    return corio__fail(L, "read", c->target, err);
  }
  lua_pushnil(L);  /* EOF */
  return 1;
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = lua_touserdata(L, 1);
  (void)status;
  if (!b->h) return corio__fail(L, "read", NULL, UV_ECANCELED);
  return read_result(L, (tcpc *)b->h, (size_t)ctx);
}

/* conn:read([max]) -> data | nil (the peer closed its side) | nil, msg, code  [suspends]
 * Returns what has arrived (at most max bytes, default 64 KiB) as soon as anything has. */
static int tcp_read(lua_State *L) {
  tcpc *c = check_idle(L, "tcp read", 1);
  lua_Integer max = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, max > 0, 2, "max must be positive");
  if (c->len > 0 || c->eof || c->rstatus < 0) return read_result(L, c, (size_t)max);
  corio__check_suspend(L, "tcp read");
  int r = uv_read_start((uv_stream_t *)&c->h, alloc_cb, read_cb);
  if (r) return corio__fail(L, "read", c->target, r);
  c->reading = 1;
  c->r.on_cancel = read_cancel;
  lua_settop(L, 1);
  return corio__waiter_await(L, &c->r, "tcp read", read_k, (lua_KContext)max);
}

/* ---- shutdown and close ---------------------------------------------------------------- */

static void shutdown_cb(uv_shutdown_t *req, int status) {
  tcpc *c = req->data;
  corio__waiter_wake(c->rt, &c->w, status);
}

/* conn:shutdown() -> true | nil, msg, code  [suspends]: send FIN after the queued writes;
 * reading stays possible (a half-close). */
static int tcp_shutdown(lua_State *L) {
  tcpc *c = check_idle(L, "tcp shutdown", 0);
  corio__check_suspend(L, "tcp shutdown");
  int r = uv_shutdown(&c->shutdown, (uv_stream_t *)&c->h, shutdown_cb);
  if (r) return corio__fail(L, "shutdown", c->target, r);
  c->w.on_cancel = NULL;
  lua_settop(L, 1);
  return corio__waiter_await(L, &c->w, "tcp shutdown", status_k, 0);
}

/* conn:close(): closes now (idempotent). */
static int tcp_close(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, CONN);
  tcpc *c = (tcpc *)b->h;
  if (c && !c->base.closing) {
    if (corio__waiter_busy(&c->r) || corio__waiter_busy(&c->w))
      return luaL_error(L, "tcp close: a task is waiting on this connection");
    corio__box_close(&c->base);
  }
  return 0;
}

static int tcp_gc(lua_State *L) {
  corio_box *b = lua_touserdata(L, 1);
  tcpc *c = (tcpc *)b->h;
  if (c) c->r.task = c->w.task = NULL; /* the state is closing: those tasks are going too */
  return corio__box_gc(L);
}

static int tcp_tostring(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, CONN);
  tcpc *c = (tcpc *)b->h;
  if (c && !c->base.closing) lua_pushfstring(L, "corio.tcp.Conn (%s)", c->target);
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

static const luaL_Reg meta[] = {
  {"__gc", tcp_gc},
  {"__close", tcp_close},
  {"__tostring", tcp_tostring},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"connect", tcp_connect},
  {NULL, NULL}
};

int luaopen_corio_tcp(lua_State *L) {
  /* A peer that goes away must cost an EPIPE on its own connection, not the process. */
  signal(SIGPIPE, SIG_IGN);
  corio__class(L, CONN, methods, meta);
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
