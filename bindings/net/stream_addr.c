/* corio.net.Stream's addresses: the peer and local names (s.peer, s.sockname, the name in
 * messages), TCP options (set_nodelay, set_keepalive), connecting a fresh stream (net.c's
 * connect and connect_unix), and the wait reasons corio.ps() shows for a task suspended on a
 * stream. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_record.h"

/* ---- names --------------------------------------------------------------------------------- */

void corio__stream_push_name(lua_State *L, corio_stream *s, int peer) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (s->kind == CORIO_STREAM_TCP) {
    int r = peer ? uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len)
                 : uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len);
    if (r == 0) {
      corio__net_push_addr(L, (struct sockaddr *)&ss, 1);
      return;
    }
  } else if (s->kind == CORIO_STREAM_PIPE) {
    char path[256];
    size_t n = sizeof path;
    int r = peer ? uv_pipe_getpeername(&s->u.pipe, path, &n)
                 : uv_pipe_getsockname(&s->u.pipe, path, &n);
    if (r == 0) {
      lua_pushlstring(L, path, n);
      return;
    }
  }
  lua_pushnil(L);
}

/* "read tcp 127.0.0.1:5000": the peer, or while connecting the address being connected to;
 * "read unix /run/app.sock": the peer's path, or the local one (an accepted connection's peer
 * has none); otherwise the stream's name: "read stdin", "read sh (pid 4121) stdout". */
static void describe(lua_State *L, corio_stream *s, const char *op) {
  if (s->kind == CORIO_STREAM_TCP) {
    corio__stream_push_name(L, s, 1);
    const char *peer = lua_tostring(L, -1);
    lua_pushfstring(L, "%s tcp %s", op, peer ? peer : corio__stream_name(s));
    lua_remove(L, -2);
    return;
  }
  if (s->kind == CORIO_STREAM_PIPE) {
    for (int peer = 1; peer >= 0; peer--) {
      corio__stream_push_name(L, s, peer);
      const char *path = lua_tostring(L, -1);
      if (path && *path) {
        lua_pushfstring(L, "%s unix %s", op, path);
        lua_remove(L, -2);
        return;
      }
      lua_pop(L, 1);
    }
  }
  lua_pushfstring(L, "%s %s", op, corio__stream_name(s));
}

void corio__stream_describe_rd(lua_State *L, corio_waiter *w, const char *op) {
  describe(L, container_of(w, corio_stream, rd), op);
}

void corio__stream_describe_wr(lua_State *L, corio_waiter *w, const char *op) {
  describe(L, container_of(w, corio_stream, wr), op);
}

const char *corio__stream_name(const corio_stream *s) {
  static _Thread_local char buf[24]; /* "255.255.255.255:65535" */
  if (!s->peer4) return s->n.name;
  const uint8_t *a = s->n.ip4.addr;
  snprintf(buf, sizeof buf, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], s->n.ip4.port);
  return buf;
}

void corio__stream_name_peer(corio_stream *s, const struct sockaddr *peer) {
  char ip[64], name[80];
  int port = 0;
  if (peer->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
    corio__stream_set_name(s, NULL); /* frees a copy */
    memcpy(s->n.ip4.addr, &in->sin_addr, 4);
    s->n.ip4.port = ntohs(in->sin_port);
    s->peer4 = 1;
    return;
  }
  if (peer->sa_family == AF_INET6 &&
      uv_ip6_name((const struct sockaddr_in6 *)peer, ip, sizeof ip) == 0) {
    port = ntohs(((const struct sockaddr_in6 *)peer)->sin6_port);
    corio__host_port(name, sizeof name, ip, port);
    corio__stream_set_name(s, name);
  }
}

/* ---- TCP options ---------------------------------------------------------------------------- */

/* s:set_nodelay([on=true]) -> true | nil, msg, code (TCP only; others: true, no effect) */
int corio__stream_set_nodelay(lua_State *L) {
  corio_stream *s = corio__stream_check(L, 1, "set_nodelay");
  int on = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  if (s->kind == CORIO_STREAM_TCP) {
    int r = uv_tcp_nodelay(&s->u.tcp, on);
    if (r < 0) return corio__fail(L, "set_nodelay", corio__stream_name(s), r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* s:set_keepalive([on=true [, delay_seconds=60]]) -> true | nil, msg, code */
int corio__stream_set_keepalive(lua_State *L) {
  corio_stream *s = corio__stream_check(L, 1, "set_keepalive");
  int on = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  lua_Integer delay = luaL_optinteger(L, 3, 60);
  luaL_argcheck(L, delay > 0, 3, "delay must be positive");
  if (s->kind == CORIO_STREAM_TCP) {
    int r = uv_tcp_keepalive(&s->u.tcp, on, (unsigned)delay);
    if (r < 0) return corio__fail(L, "set_keepalive", corio__stream_name(s), r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- connecting (used by net.c) ------------------------------------------------------------- */

static void connect_cb(uv_connect_t *req, int status) {
  corio_stream *s = req->data;
  free(req);
  if (status == 0) s->connected = 1;
  if (s->wr.task) corio__waiter_wake(s->rt, &s->wr, status);
}

static void connect_cancel(lua_State *L, corio_waiter *w) {
  (void)L;
  corio__stream_close(container_of(w, corio_stream, wr), 1); /* connect_cb: ECANCELED */
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  corio_stream *s = (corio_stream *)((corio_box *)luaL_checkudata(L, -1, CORIO_STREAM))->h;
  (void)status;
  (void)ctx;
  int err = !s ? UV_ECANCELED : s->wr.status;
  if (s && s->closing && err == 0) err = UV_ECANCELED;
  if (err < 0) {
    char target[112];
    snprintf(target, sizeof target, "%s", s ? corio__stream_name(s) : "?");
    corio__stream_close(s, 1);
    return corio__fail(L, "connect", target, err);
  }
  return 1;
}

int corio__stream_connect(lua_State *L, corio_stream *s, const struct sockaddr *addr,
                          const char *path) {
  uv_connect_t *req = malloc(sizeof *req); /* freed by connect_cb */
  if (!req) {
    corio__stream_close(s, 1);
    return corio__nomem(L);
  }
  req->data = s;
  s->connected = 0;
  if (path) {
    uv_pipe_connect(req, &s->u.pipe, path, connect_cb);
  } else {
    int r = uv_tcp_connect(req, &s->u.tcp, addr, connect_cb);
    if (r < 0) {
      free(req);
      corio__stream_close(s, 1);
      return corio__fail(L, "connect", corio__stream_name(s), r);
    }
  }
  s->wr.on_cancel = connect_cancel;
  return corio__waiter_await(L, &s->wr, "connect", connect_k, 0);
}
