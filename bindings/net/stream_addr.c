/* corio.net.Stream's addresses: the peer and local names (s.peer, s.sockname), and connecting
 * a fresh stream (net.c's connect and connect_unix). */
#include <stdio.h>

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

/* ---- connecting (used by net.c) ------------------------------------------------------------- */

static void connect_cb(uv_connect_t *req, int status) {
  corio_stream *s = container_of(req, corio_stream, req.connect);
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
    snprintf(target, sizeof target, "%s", s ? s->name : "?");
    corio__stream_close(s, 1);
    return corio__fail(L, "connect", target, err);
  }
  return 1;
}

int corio__stream_connect(lua_State *L, corio_stream *s, const struct sockaddr *addr,
                          const char *path) {
  s->connected = 0;
  if (path) {
    uv_pipe_connect(&s->req.connect, &s->u.pipe, path, connect_cb);
  } else {
    int r = uv_tcp_connect(&s->req.connect, &s->u.tcp, addr, connect_cb);
    if (r < 0) {
      corio__stream_close(s, 1);
      return corio__fail(L, "connect", s->name, r);
    }
  }
  s->wr.on_cancel = connect_cancel;
  return corio__waiter_await(L, &s->wr, "connect", connect_k, 0);
}
