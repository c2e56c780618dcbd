/* The HTTP/1.1 server's Lua surface: listen, the server object, handing requests to handler
 * tasks (a new task, or an idle one waiting in next_request), realpath and stat. Policy
 * (routing, middleware, errors) is in scripts/corio/web.lua.
 * Lua module "corio._http_server": listen, next_request, realpath, stat, the response
 * functions of respond.c and socket.c's socket; methods of corio.web.Server: port, close,
 * abort, connections. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "http_server.h"

#define MAX_IDLE 1024

/* ---- handing requests to handler tasks --------------------------------------------------- */

/* The handler task ended while it still owned c's request (it was cancelled before it
 * could answer, or its code swallowed the request): close and release the connection. */
static void task_done_fire(corio_runtime *rt, corio_listener *l, corio_task *done) {
  conn *c = container_of(l, conn, task_done);
  (void)rt;
  (void)done;
  c->task = NULL;
  corio__hs_request_over(c);
  corio__hs_conn_close(c);
  corio__hs_conn_free_if_done(c);
}

/* c's request now belongs to t. The connection record lives until t answers or ends, so
 * the light userdata the task holds never dangles. */
static void own(conn *c, corio_task *t) {
  c->task = t;
  corio__listen(t, &c->task_done, task_done_fire);
}

/* A handler task waiting for its next request: a slot on its own stack (a userdata), listed
 * in the server's idle array until a request or the server's end wakes it. */
struct idle_slot {
  corio_waiter w;
  server *s;
  conn *c; /* the request handed over, or NULL: no more requests */
  int last; /* c is NULL because the pool shrank after a burst, and this task ends last */
};

static int dispatch_protected(lua_State *L) {
  conn *c = lua_touserdata(L, 1);
  server *s = c->srv;
  luaL_checkstack(L, 12, NULL);
  corio__push_anchor(L, s->dispatch_ref);
  int fidx = lua_gettop(L);
  corio__push_anchor(L, s->self_ref);
  corio__hs_push_request(L, c);
  own(c, corio__spawn(L, fidx, 7));
  return 0;
}

/* Hand a request whose head is parsed to Lua: wake an idle handler task with it, or spawn a
 * new one running worker(server, conn, method, target, headers, http11, remote). The request
 * stays in c's buffers until it is answered, so a woken task reads it from there; its body
 * may still be arriving (body.c). */
void corio__hs_dispatch(lua_State *L, conn *c) {
  server *s = c->srv;
  if (s->nidle > 0) {
    idle_slot *slot = s->idle[--s->nidle];
    if (s->nidle < s->idle_min) s->idle_min = s->nidle;
    slot->c = c;
    own(c, slot->w.task);
    corio__waiter_wake(s->rt, &slot->w, 0);
    return;
  }
  /* Building the request and its task allocates Lua memory, and this runs in a libuv
   * callback where no protected call is on the stack: a memory error must cost this request
   * (503 and close), not panic the state. */
  int top = lua_gettop(L);
  lua_pushcfunction(L, dispatch_protected);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_settop(L, top);
    if (!c->task) corio__hs_send_error(c, 503);
  }
}

/* Every POOL_SWEEP_SECONDS, the idle tasks that were never needed since the last sweep (the
 * fewest idle seen) end, oldest first: after a burst the pool shrinks back. One timer per
 * server, armed only while tasks are idle: a request costs no timer operation. */
static void sweep_fire(corio_runtime *rt, corio_timer *t) {
  server *s = container_of(t, server, sweep);
  int excess = s->idle_min < s->nidle ? s->idle_min : s->nidle;
  if (excess > 0) s->idle[excess - 1]->last = 1; /* woken last, so it runs after the others */
  for (int i = 0; i < excess; i++) {
    idle_slot *slot = s->idle[i];
    slot->c = NULL;
    corio__waiter_wake(rt, &slot->w, 0);
  }
  if (excess > 0) {
    memmove(s->idle, s->idle + excess, sizeof *s->idle * (size_t)(s->nidle - excess));
    s->nidle -= excess;
  }
  s->idle_min = s->nidle;
  if (s->nidle > 0 && s->listening) corio__timer_start(rt, &s->sweep, POOL_SWEEP_SECONDS);
}

/* Let every idle handler task end: no request will come any more. */
static void release_idle(server *s) {
  corio__timer_stop(s->rt, &s->sweep);
  while (s->nidle > 0) {
    idle_slot *slot = s->idle[--s->nidle];
    slot->c = NULL;
    corio__waiter_wake(s->rt, &slot->w, 0);
  }
}

/* Push "op (server 127.0.0.1:8080)" (peer = 0: the address tcp listens on) or "op (client
 * 127.0.0.1:51234)" (peer = 1): corio.ps's reasons for the tasks that wait on the server. */
void corio__hs_push_op_at(lua_State *L, uv_tcp_t *tcp, int peer, const char *op) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char ip[64] = "?", where[80];
  int port = 0;
  int r = peer ? uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len)
               : uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
  if (r == 0 && ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else if (r == 0) {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  corio__host_port(where, sizeof where, ip, port);
  lua_pushfstring(L, "%s (%s %s)", op, peer ? "client" : "server", where);
}

/* corio.ps's reason for the access logger: "next refusal (server 127.0.0.1:8080)" */
static void next_refusal_describe(lua_State *L, corio_waiter *w, const char *op) {
  corio__hs_push_op_at(L, &container_of(w, server, refusal_w)->tcp, 0, op);
}

/* corio.ps's reason for an idle handler task: "next request (server 127.0.0.1:8080)" */
static void next_request_describe(lua_State *L, corio_waiter *w, const char *op) {
  corio__hs_push_op_at(L, &container_of(w, idle_slot, w)->s->tcp, 0, op);
}

static void next_request_cancel(lua_State *L, corio_waiter *w) {
  idle_slot *slot = container_of(w, idle_slot, w);
  server *s = slot->s;
  (void)L;
  for (int i = 0; i < s->nidle; i++) {
    if (s->idle[i] == slot) {
      s->idle[i] = s->idle[--s->nidle];
      break;
    }
  }
}

static int next_request_k(lua_State *L, int status, lua_KContext ctx) {
  idle_slot *slot = lua_touserdata(L, (int)ctx);
  (void)status;
  if (!slot->c && slot->last) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!slot->c) return 0;
  corio__hs_push_request(L, slot->c);
  return 6;
}

static server *to_server(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, SERVER);
  return (server *)b->h;
}

/* _http_server.next_request(server) -> conn, method, target, headers, http11, remote
 *   | nothing (the server is done, or enough tasks are idle)
 *   | false (the pool shrank after a burst; the last of the tasks it let go gets this)
 *   [suspends]
 * Called by a handler task once it has answered, to serve the next request. */
static int l_next_request(lua_State *L) {
  server *s = to_server(L);
  if (!s || !s->listening || s->nidle >= MAX_IDLE) return 0;
  corio__check_suspend(L, "next request");
  if (s->nidle == s->idle_cap) {
    int cap = s->idle_cap ? s->idle_cap * 2 : 64;
    idle_slot **idle = realloc(s->idle, sizeof *s->idle * (size_t)cap);
    if (!idle) return corio__nomem(L);
    s->idle = idle;
    s->idle_cap = cap;
  }
  lua_settop(L, 1);
  idle_slot *slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = (idle_slot){.w = {.on_cancel = next_request_cancel, .describe = next_request_describe},
                      .s = s};
  s->idle[s->nidle++] = slot;
  if (s->sweep.index < 0) {
    s->idle_min = s->nidle;
    corio__timer_start(s->rt, &s->sweep, POOL_SWEEP_SECONDS); /* no heap room: no sweep */
  }
  return corio__waiter_await(L, &slot->w, "next request", next_request_k, 2);
}

/* ---- the server object ------------------------------------------------------------------ */

/* The server record lives until its listener is closed and its last connection is gone;
 * its userdata stays anchored until then, so a server nobody references keeps serving. */
void corio__hs_server_maybe_free(server *s) {
  if (!s->listener_closed || s->nconns > 0) return;
  corio__timer_stop(s->rt, &s->sweep);
  corio__hs_release_refs(s);
  free(s->idle);
  free(s->scratch);
  corio__box_release(&s->base);
}

static void listener_closed(corio_handle *h) {
  server *s = (server *)h;
  s->listener_closed = 1;
  corio__hs_server_maybe_free(s);
}

static int sockopt_int(lua_State *L, int idx, const char *k, int def) {
  int v;
  lua_getfield(L, idx, k);
  v = lua_isnil(L, -1) ? def : (int)luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

static double opt_num(lua_State *L, int idx, const char *k, double def) {
  double v;
  lua_getfield(L, idx, k);
  v = lua_isnil(L, -1) ? def : (double)luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static server *check_server(lua_State *L) {
  server *s = to_server(L);
  if (!s || !s->listening) luaL_error(L, "server: it is closed");
  return s;
}

/* _http_server.listen{host=, port=, dispatch=fn, reuseport=, backlog=, max_header=,
 *   max_url=, max_headers=, max_body=, max_body_buffer=, max_connections=, header_timeout=,
 *   body_timeout=, idle_timeout=, write_timeout=, fd=} -> server | nil, msg, code
 * fd: serve an inherited listening socket (see socket.c) instead of binding host:port.
 * dispatch(server, conn, method, target, headers, http11, remote) runs in a new task
 * when no handler task is idle; it answers with respond (or stream_*, sendfile) and may then
 * call next_request(server) for more. */
static int l_listen(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  corio_runtime *rt = corio__rt(L);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  int port = sockopt_int(L, 1, "port", 8080);
  if (port < 0 || port > 65535) return luaL_error(L, "listen: port %d is out of range", port);
  lua_getfield(L, 1, "dispatch");
  luaL_checktype(L, -1, LUA_TFUNCTION);
  int dispatch_idx = lua_gettop(L);
  lua_getfield(L, 1, "reuseport");
  int reuse = lua_toboolean(L, -1);
  lua_pop(L, 1);
  int backlog = sockopt_int(L, 1, "backlog", 511);
  int fd = sockopt_int(L, 1, "fd", -1);

  struct sockaddr_storage addr;
  char target[300];
  int r = 0;
  if (fd >= 0) {
    snprintf(target, sizeof target, "fd %d", fd);
  } else {
    corio__host_port(target, sizeof target, host, port);
    r = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                          : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  }
  if (r) return corio__fail(L, "listen", target, r);

  /* The options first: they may raise, and nothing is allocated yet. */
  size_t max_header = (size_t)sockopt_int(L, 1, "max_header", 16 * 1024);
  size_t max_url = (size_t)sockopt_int(L, 1, "max_url", 8 * 1024);
  int max_headers = sockopt_int(L, 1, "max_headers", 100);
  lua_getfield(L, 1, "max_body");
  size_t max_body = lua_isnil(L, -1) ? 1024 * 1024 : (size_t)luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  int max_conns = sockopt_int(L, 1, "max_connections", 10000);
  double header_timeout = opt_num(L, 1, "header_timeout", 30);
  double body_timeout = opt_num(L, 1, "body_timeout", 30);
  double idle_timeout = opt_num(L, 1, "idle_timeout", 75);
  double write_timeout = opt_num(L, 1, "write_timeout", 60);
  lua_getfield(L, 1, "max_body_buffer");
  lua_Integer body_hwm = lua_isnil(L, -1) ? BODY_HWM_DEFAULT : luaL_checkinteger(L, -1);
  if (body_hwm < 1) return luaL_error(L, "listen: max_body_buffer must be positive");
  lua_pop(L, 1);
  lua_getfield(L, 1, "max_output_buffer");
  size_t out_hwm = lua_isnil(L, -1) ? OUT_HWM_DEFAULT : (size_t)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "cancel_on_disconnect");
  int cancel_on_disconnect = lua_toboolean(L, -1);
  lua_getfield(L, 1, "log_refusals");
  int log_refusals = lua_toboolean(L, -1);
  lua_pop(L, 3);

  corio_box *b = corio__box_new(L, SERVER);
  int bidx = lua_gettop(L);
  server *s = calloc(1, sizeof *s);
  if (!s) return corio__nomem(L);
  s->rt = rt;
  s->refusal_w.describe = next_refusal_describe;
  s->max_header = max_header;
  s->max_url = max_url;
  s->max_headers = max_headers;
  s->max_body = max_body;
  s->body_hwm = (size_t)body_hwm;
  s->max_conns = max_conns;
  s->header_timeout = header_timeout;
  s->body_timeout = body_timeout;
  s->idle_timeout = idle_timeout;
  s->write_timeout = write_timeout;
  s->out_hwm = out_hwm;
  s->cancel_on_disconnect = cancel_on_disconnect;
  s->log_refusals = log_refusals;
  s->sweep.index = -1;
  s->sweep.fire = sweep_fire;
  s->self_ref = s->dispatch_ref = LUA_NOREF;

  r = fd >= 0 ? uv_tcp_init(corio__loop(rt), &s->tcp)
              : uv_tcp_init_ex(corio__loop(rt), &s->tcp, addr.ss_family);
  if (r) { free(s); return corio__fail(L, "listen", target, r); }
  corio__box_attach(b, &s->base, (uv_handle_t *)&s->tcp, listener_closed);
  s->base.keep = 1; /* the record outlives the listener while connections remain */
  s->listening = 1;
  if (fd >= 0) r = uv_tcp_open(&s->tcp, fd); /* closing the server closes fd */
  else r = corio__hs_bind(&s->tcp, (struct sockaddr *)&addr, reuse);
  if (!r) r = uv_listen((uv_stream_t *)&s->tcp, backlog, corio__hs_on_connection);
  if (r) {
    s->listening = 0;
    corio__box_close(&s->base);
    s->self_ref = corio__anchor(L, bidx);  /* released by the close callback */
    lua_pushvalue(L, dispatch_idx);
    s->dispatch_ref = corio__anchor(L, -1);
    return corio__fail(L, "listen", target, r);
  }
  s->self_ref = corio__anchor(L, bidx);
  lua_pushvalue(L, dispatch_idx);
  s->dispatch_ref = corio__anchor(L, -1);
  lua_settop(L, bidx);
  return 1;
}

/* server:port() -> the port it listens on */
static int server_port(lua_State *L) {
  lua_pushinteger(L, corio__hs_port(&check_server(L)->tcp));
  return 1;
}

/* server:close([drain]): stop accepting. Every connection closes after its current response
 * (which says Connection: close); one waiting for a request is closed now, or with `drain`
 * gets DRAIN_SECONDS for it to arrive (see corio__hs_conn_drain). Safe to call twice. */
static int server_close(lua_State *L) {
  server *s = to_server(L);
  int drain = lua_toboolean(L, 2);
  if (!s || !s->listening) return 0;
  s->listening = 0;
  release_idle(s);
  corio__waiter_wake(s->rt, &s->refusal_w, 0);
  corio__box_close(&s->base);
  for (conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    int waiting = c->state == ST_HEAD && !c->got_bytes && c->writes == 0;
    if (c->state == ST_LINGER || (waiting && !drain)) corio__hs_conn_close(c);
    else if (waiting) corio__hs_conn_drain(c);
    else if (c->draining) /* answered: the rest of its body is not worth waiting for */
      corio__hs_begin_close(c);
  }
  corio__hs_release_refs(s);
  return 0;
}

/* Close every connection now and cancel the handlers still running. */
static void abort_all(lua_State *L, server *s, int cancel) {
  release_idle(s);
  if (cancel) corio__waiter_wake(s->rt, &s->refusal_w, 0);
  if (s->listening) {
    s->listening = 0;
    corio__box_close(&s->base);
  }
  for (conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    /* The record stays until the cancelled handler answers or ends (see own). */
    if (c->task && cancel) corio__cancel(L, c->task, 0);
    corio__hs_conn_close(c);
  }
  corio__hs_release_refs(s);
}

/* server:abort(): close every connection now; running handlers are cancelled. */
static int server_abort(lua_State *L) {
  server *s = to_server(L);
  if (s) abort_all(L, s, 1);
  return 0;
}

/* server:connections() -> open connections, of which busy (a request in progress), and the
 * connection records still alive (closed ones whose queued writes libuv has not yet released:
 * a write may hold a response string until then) */
static int server_connections(lua_State *L) {
  server *s = to_server(L);
  int n = 0, busy = 0;
  if (s) {
    for (conn *c = s->conns; c; c = c->next) {
      n++;
      busy += c->task != NULL || c->writes > 0 || (c->state != ST_HEAD) || c->got_bytes;
    }
  }
  lua_pushinteger(L, n);
  lua_pushinteger(L, busy);
  lua_pushinteger(L, s ? s->nconns : 0);
  return 3;
}

/* server:stats() -> {connections=, busy=, buffered= (bytes copied into queued writes),
 *   pinned= (bytes of response strings queued without a copy), body_buffered= (request body
 *   bytes received and not yet taken by handlers or written to files), refused=, idle_tasks=,
 *   max_output_buffer=} */
static int server_stats(lua_State *L) {
  server *s = to_server(L);
  lua_createtable(L, 0, 9);
  if (!s) return 1;
  int n = 0, busy = 0;
  size_t body = 0;
  for (conn *c = s->conns; c; c = c->next) {
    n++;
    busy += c->task != NULL || c->writes > 0 || (c->state != ST_HEAD) || c->got_bytes;
    body += corio__hs_body_held(c);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "connections");
  lua_pushinteger(L, busy);
  lua_setfield(L, -2, "busy");
  lua_pushinteger(L, (lua_Integer)s->copied);
  lua_setfield(L, -2, "buffered");
  lua_pushinteger(L, (lua_Integer)s->pinned);
  lua_setfield(L, -2, "pinned");
  lua_pushinteger(L, (lua_Integer)body);
  lua_setfield(L, -2, "body_buffered");
  lua_pushinteger(L, (lua_Integer)s->refused_total);
  lua_setfield(L, -2, "refused");
  lua_pushinteger(L, s->nidle);
  lua_setfield(L, -2, "idle_tasks");
  lua_pushinteger(L, (lua_Integer)s->out_hwm);
  lua_setfield(L, -2, "max_output_buffer");
  return 1;
}

/* ---- refusals, for the access log -------------------------------------------------------- */

static void push_refusal(lua_State *L, server *s) {
  refusal *r = &s->refusals[s->nref_head];
  s->nref_head = (s->nref_head + 1) % REFUSALS;
  s->nref--;
  lua_pushinteger(L, r->status);
  lua_pushstring(L, r->line);
  lua_pushstring(L, r->remote);
  lua_pushinteger(L, (lua_Integer)r->bytes);
  lua_pushboolean(L, r->minor);
}

static int next_refusal_k(lua_State *L, int status, lua_KContext ctx) {
  server *s = to_server(L); /* the record may be gone by now: ask the box */
  (void)status;
  (void)ctx;
  if (!s || s->nref == 0) return 0; /* the server closed */
  push_refusal(L, s);
  return 5;
}

/* _http_server.next_refusal(server) -> status, "METHOD target" | "", remote, bytes, http11
 *   | nothing once the server is closed  [suspends]
 * The requests the server answered itself (400, 408, 413, 414, 431, 503...), for the access
 * logger task (listen{log_refusals = true}). */
static int l_next_refusal(lua_State *L) {
  server *s = to_server(L);
  if (!s) return 0;
  if (s->nref > 0) {
    push_refusal(L, s);
    return 5;
  }
  if (!s->listening) return 0;
  corio__check_suspend(L, "next refusal");
  /* close and abort wake this wait before the record can go */
  lua_settop(L, 1);
  return corio__waiter_await(L, &s->refusal_w, "next refusal", next_refusal_k, 0);
}

/* ---- request.disconnected ---------------------------------------------------------------- */

/* corio.ps's reason: "request.disconnected (client 127.0.0.1:51234)" */
static void gone_describe(lua_State *L, corio_waiter *w, const char *op) {
  gone_slot *g = container_of(w, gone_slot, w);
  if (g->c)
    corio__hs_push_op_at(L, &g->c->tcp, 1, op);
  else
    lua_pushstring(L, op);
}

static void gone_cancel(lua_State *L, corio_waiter *w) {
  gone_slot *g = container_of(w, gone_slot, w);
  (void)L;
  if (g->c) g->c->gone = NULL;
  g->c = NULL;
}

/* _http_server.watch_disconnect(conn) -> slot: registers now, while the request is live, a
 * slot that learns whether the client left before the request ended. */
static int l_watch_disconnect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  conn *c = lua_touserdata(L, 1);
  gone_slot *g = lua_newuserdatauv(L, sizeof *g, 0);
  *g = (gone_slot){.w = {.on_cancel = gone_cancel, .describe = gone_describe}};
  if (!c->task || c->gone) { /* over already, or watched already (one watcher a request) */
    g->fired = 1;
    g->gone = c->task ? 0 : 1;
    return 1;
  }
  if (c->client_gone || c->state == ST_CLOSED) {
    g->fired = 1;
    g->gone = 1;
    return 1;
  }
  g->c = c;
  c->gone = g;
  return 1;
}

static int wait_disconnect_k(lua_State *L, int status, lua_KContext ctx) {
  gone_slot *g = lua_touserdata(L, (int)ctx);
  (void)status;
  lua_pushboolean(L, g->gone);
  return 1;
}

/* _http_server.wait_disconnect(slot) -> true (the client left) | false (the request ended
 * first)  [suspends] */
static int l_wait_disconnect(lua_State *L) {
  gone_slot *g = lua_touserdata(L, 1);
  luaL_argcheck(L, g != NULL, 1, "a disconnect slot");
  if (g->fired) {
    lua_pushboolean(L, g->gone);
    return 1;
  }
  corio__check_suspend(L, "request.disconnected");
  lua_settop(L, 1);
  return corio__waiter_await(L, &g->w, "request.disconnected", wait_disconnect_k, 1);
}

static int server_gc(lua_State *L) {
  corio_box *b = lua_touserdata(L, 1);
  server *s = (server *)b->h;
  if (!s) return 0;
  /* Only reached when the Lua state closes (the server is anchored while alive). */
  s->lua_gone = 1;
  s->base.box = NULL;
  b->h = NULL;
  for (conn *c = s->conns; c; c = c->next) { /* tasks are being finalized */
    c->task = NULL;
    corio__hs_body_forget(c);
  }
  s->nidle = 0;  /* the tasks may be finalized already: do not touch them */
  abort_all(L, s, 0);
  return 0;
}

/* _http_server.realpath(path) -> resolved | nil, msg, code (symlinks resolved) */
static int l_realpath(lua_State *L) {
  const char *p = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (!realpath(p, buf)) return corio__fail(L, "realpath", p, uv_translate_sys_error(errno));
  lua_pushstring(L, buf);
  return 1;
}

/* _http_server.stat(path) -> size, mtime, is_regular | nil, msg, code */
static int l_stat(lua_State *L) {
  const char *p = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(p, &st) != 0) return corio__fail(L, "stat", p, uv_translate_sys_error(errno));
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_pushinteger(L, (lua_Integer)st.st_mtime);
  lua_pushboolean(L, S_ISREG(st.st_mode));
  return 3;
}

static const luaL_Reg server_methods[] = {
  {"port", server_port},
  {"close", server_close},
  {"abort", server_abort},
  {"connections", server_connections},
  {"stats", server_stats},
  {NULL, NULL}
};

static const luaL_Reg server_meta[] = {
  {"__gc", server_gc},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"listen", l_listen},
  {"next_request", l_next_request},
  {"next_refusal", l_next_refusal},
  {"watch_disconnect", l_watch_disconnect},
  {"wait_disconnect", l_wait_disconnect},
  {"realpath", l_realpath},
  {"stat", l_stat},
  {NULL, NULL}
};

int luaopen_corio_http_server(lua_State *L) {
  /* A peer that goes away must cost an EPIPE on its own connection, not the process. */
  signal(SIGPIPE, SIG_IGN);
  corio__class(L, SERVER, server_methods, server_meta);
  lua_pop(L, 1);
  corio__hs_socket_class(L);
  luaL_newlib(L, funcs);
  luaL_setfuncs(L, corio__hs_respond_funcs, 0); /* respond.c's functions */
  luaL_setfuncs(L, corio__hs_body_funcs, 0);    /* body.c's */
  luaL_setfuncs(L, corio__hs_socket_funcs, 0);  /* socket.c's */
  return 1;
}
