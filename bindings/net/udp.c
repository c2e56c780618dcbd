/* UDP sockets: datagrams in and out, optionally connected to one peer.
 * Function of "corio._net": udp{host=, port=}; class corio.net.UDP (send, recv, connect, close,
 * port, sockname, peer). */
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define UDP "corio.net.UDP"
#define MAX_QUEUED 256 /* datagrams kept for recv(); beyond, the kernel buffers or drops */

typedef struct dgram {
  struct dgram *next;
  size_t len;
  struct sockaddr_storage from;
  char data[];
} dgram;

typedef struct udpsock {
  corio_handle base;
  uv_udp_t u;
  corio_runtime *rt;
  corio_waiter rd, wr;
  dgram *head, *tail; /* received, not yet returned */
  int queued;
  int receiving, err, connected;
} udpsock;

typedef struct sreq {
  uv_udp_send_t req;
  udpsock *u;
  char data[];
} sreq;

static _Thread_local char scratch[65536];

static void udp_closed(corio_handle *h) {
  udpsock *u = (udpsock *)h;
  while (u->head) {
    dgram *d = u->head;
    u->head = d->next;
    free(d);
  }
}

/* corio.ps's reason: "recv udp 127.0.0.1:5353" (the socket's own address) */
static void udp_describe(lua_State *L, udpsock *u, const char *op) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_udp_getsockname(&u->u, (struct sockaddr *)&ss, &len) != 0) {
    lua_pushfstring(L, "%s udp", op);
    return;
  }
  corio__net_push_addr(L, (struct sockaddr *)&ss, 1);
  lua_pushfstring(L, "%s udp %s", op, lua_tostring(L, -1));
  lua_remove(L, -2);
}

static void rd_describe(lua_State *L, corio_waiter *w, const char *op) {
  udp_describe(L, container_of(w, udpsock, rd), op);
}

static void wr_describe(lua_State *L, corio_waiter *w, const char *op) {
  udp_describe(L, container_of(w, udpsock, wr), op);
}

static udpsock *check(lua_State *L, const char *op) {
  return (udpsock *)corio__box_check(L, 1, UDP, op);
}

/* ---- receiving ----------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(scratch, sizeof scratch);
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
  udpsock *u = container_of(h, udpsock, u);
  (void)flags;
  if (nread == 0 && !addr) return; /* nothing more to read now */
  if (nread < 0) {
    u->err = (int)nread;
  } else {
    dgram *d = malloc(sizeof *d + (size_t)nread);
    if (!d) {
      u->err = UV_ENOBUFS;
    } else {
      d->next = NULL;
      d->len = (size_t)nread;
      memcpy(d->data, buf->base, (size_t)nread);
      memset(&d->from, 0, sizeof d->from);
      memcpy(&d->from, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                          : sizeof(struct sockaddr_in));
      if (u->tail) u->tail->next = d;
      else u->head = d;
      u->tail = d;
      if (++u->queued >= MAX_QUEUED) {
        uv_udp_recv_stop(h);
        u->receiving = 0;
      }
    }
  }
  if (u->rd.task) corio__waiter_wake(u->rt, &u->rd, 0);
}

static int recv_result(lua_State *L, udpsock *u) {
  if (u->head) {
    dgram *d = u->head;
    u->head = d->next;
    if (!u->head) u->tail = NULL;
    u->queued--;
    lua_pushlstring(L, d->data, d->len);
    corio__net_push_ip_port(L, (struct sockaddr *)&d->from);
    free(d);
    if (!u->receiving && u->queued < MAX_QUEUED && uv_udp_recv_start(&u->u, alloc_cb, recv_cb) == 0)
      u->receiving = 1;
    return 3;
  }
  int err = u->err;
  u->err = 0;
  return corio__fail(L, "recv", "udp", err);
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = luaL_checkudata(L, 1, UDP);
  udpsock *u = (udpsock *)b->h;
  (void)status;
  (void)ctx;
  if (!u || u->base.closing) return corio__fail(L, "recv", "udp", UV_ECANCELED);
  if (!u->head && !u->err) return corio__waiter_await(L, &u->rd, "recv", recv_k, 0);
  return recv_result(L, u);
}

/* sock:recv() -> data, ip, port | nil, msg, code  [suspends until a datagram arrives]
 * Datagrams wait in the socket's queue: a cancelled recv loses none. */
static int udp_recv(lua_State *L) {
  udpsock *u = check(L, "recv");
  if (corio__waiter_busy(&u->rd)) return luaL_error(L, "recv udp: busy: another task is receiving");
  lua_settop(L, 1);
  if (!u->receiving && u->queued < MAX_QUEUED) {
    int r = uv_udp_recv_start(&u->u, alloc_cb, recv_cb);
    if (r < 0) return corio__fail(L, "recv", "udp", r);
    u->receiving = 1;
  }
  if (u->head || u->err) return recv_result(L, u);
  corio__check_suspend(L, "recv");
  return corio__waiter_await(L, &u->rd, "recv", recv_k, 0);
}

/* ---- sending ------------------------------------------------------------------------------- */

static void send_cb(uv_udp_send_t *req, int status) {
  sreq *s = (sreq *)req;
  udpsock *u = s->u;
  free(s);
  if (u->wr.task) corio__waiter_wake(u->rt, &u->wr, status);
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = luaL_checkudata(L, 1, UDP);
  udpsock *u = (udpsock *)b->h;
  (void)status;
  (void)ctx;
  if (!u || u->base.closing) return corio__fail(L, "send", "udp", UV_ECANCELED);
  if (u->wr.status < 0) return corio__fail(L, "send", "udp", u->wr.status);
  lua_pushboolean(L, 1);
  return 1;
}

/* sock:send(data [, ip, port]) -> true | nil, msg, code  [suspends only while the socket's
 * buffer is full]. ip and port are required unless the socket is connected. */
static int udp_send(lua_State *L) {
  udpsock *u = check(L, "send");
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  struct sockaddr_storage ss;
  const struct sockaddr *to = NULL;
  if (!lua_isnoneornil(L, 3)) {
    const char *ip = luaL_checkstring(L, 3);
    lua_Integer port = luaL_checkinteger(L, 4);
    luaL_argcheck(L, port > 0 && port < 65536, 4, "port out of range");
    int r = corio__net_parse_addr(ip, (int)port, &ss);
    if (r < 0) return corio__fail(L, "send", ip, r);
    to = (struct sockaddr *)&ss;
  } else if (!u->connected) {
    return luaL_error(L, "send: the socket is not connected: give an address and a port");
  }
  if (corio__waiter_busy(&u->wr)) return luaL_error(L, "send udp: busy: another task is sending");
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
  int r = uv_udp_try_send(&u->u, &b, 1, to);
  if (r >= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r != UV_EAGAIN) return corio__fail(L, "send", "udp", r);
  corio__check_suspend(L, "send");
  sreq *s = corio__xmalloc(L, sizeof *s + n);
  memcpy(s->data, data, n);
  s->u = u;
  b = uv_buf_init(s->data, (unsigned)n);
  r = uv_udp_send(&s->req, &u->u, &b, 1, to, send_cb);
  if (r < 0) {
    free(s);
    return corio__fail(L, "send", "udp", r);
  }
  lua_settop(L, 1);
  return corio__waiter_await(L, &u->wr, "send", send_k, 0);
}

/* sock:connect(ip, port) -> true | nil, msg, code: send() and recv() then talk to that peer
 * only. */
static int udp_connect(lua_State *L) {
  udpsock *u = check(L, "connect");
  const char *ip = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  luaL_argcheck(L, port > 0 && port < 65536, 3, "port out of range");
  struct sockaddr_storage ss;
  int r = corio__net_parse_addr(ip, (int)port, &ss);
  if (r == 0) r = uv_udp_connect(&u->u, (struct sockaddr *)&ss);
  if (r < 0) return corio__fail(L, "connect", ip, r);
  u->connected = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* sock:close(): idempotent; waiting tasks get nil, msg, "ECANCELED". */
static int udp_close(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, UDP);
  udpsock *u = (udpsock *)b->h;
  if (!u || u->base.closing) return 0;
  if (u->rd.task) corio__waiter_wake(u->rt, &u->rd, UV_ECANCELED);
  if (u->wr.task) corio__waiter_wake(u->rt, &u->wr, UV_ECANCELED);
  corio__box_close(&u->base);
  return 0;
}

static int udp_index(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, UDP);
  udpsock *u = (udpsock *)b->h;
  const char *k = lua_tostring(L, 2);
  if (k && u && !u->base.closing) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (strcmp(k, "port") == 0 || strcmp(k, "sockname") == 0) {
      if (uv_udp_getsockname(&u->u, (struct sockaddr *)&ss, &len) != 0) return 0;
      if (k[0] == 'p') return corio__net_push_ip_port(L, (struct sockaddr *)&ss), 1;
      return corio__net_push_addr(L, (struct sockaddr *)&ss, 1), 1;
    }
    if (strcmp(k, "peer") == 0) {
      if (uv_udp_getpeername(&u->u, (struct sockaddr *)&ss, &len) != 0) return 0;
      return corio__net_push_addr(L, (struct sockaddr *)&ss, 1), 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* corio._net.udp{host="127.0.0.1", port=0, reuseaddr=} -> socket | nil, msg, code */
static int net_udp(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  lua_Integer port = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "reuseaddr");
  int reuse = lua_toboolean(L, -1);
  luaL_argcheck(L, port >= 0 && port < 65536, 1, "port out of range");
  struct sockaddr_storage ss;
  int r = corio__net_parse_addr(host, (int)port, &ss);
  if (r < 0) return corio__fail(L, "bind", host, r);
  corio_box *b = corio__box_new(L, UDP);
  udpsock *u = calloc(1, sizeof *u);
  if (!u) return corio__nomem(L);
  u->rt = corio__rt(L);
  u->rd.describe = rd_describe;
  u->wr.describe = wr_describe;
  r = uv_udp_init_ex(corio__loop(u->rt), &u->u, ss.ss_family);
  if (r < 0) {
    free(u);
    return corio__fail(L, "bind", host, r);
  }
  corio__box_attach(b, &u->base, (uv_handle_t *)&u->u, udp_closed);
  r = uv_udp_bind(&u->u, (struct sockaddr *)&ss, reuse ? UV_UDP_REUSEADDR : 0);
  if (r < 0) {
    corio__box_close(&u->base);
    return corio__fail(L, "bind", host, r);
  }
  return 1;
}

static const luaL_Reg udp_methods[] = {
  {"send", udp_send},
  {"recv", udp_recv},
  {"connect", udp_connect},
  {"close", udp_close},
  {NULL, NULL}
};

void corio__udp_open(lua_State *L) {
  if (luaL_newmetatable(L, UDP)) {
    lua_newtable(L);
    luaL_setfuncs(L, udp_methods, 0);
    lua_pushcclosure(L, udp_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, corio__box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, udp_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, net_udp);
  lua_setfield(L, -2, "udp");
}
