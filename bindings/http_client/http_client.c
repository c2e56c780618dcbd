/* The HTTP client engine: libcurl's multi-socket interface driven by the corio loop. One
 * CURLM per session, one uv_poll_t per socket curl asks us to watch, one uv_timer_t for
 * curl's timeout; completions wake the waiting task. libcurl is loaded with dlopen on the
 * first require, so a corio that never makes an HTTP request never pays for loading it.
 * Lua module "corio._http_client": new_multi, version; Multi:perform/close/stats, Transfer
 * methods. Policy (URLs, headers, JSON, sessions) is in scripts/corio/http.lua. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"

static void xfer_finish(xfer *x, int result);

/* ---- growable byte buffers ------------------------------------------------------------- */

static int buf_add(buf *b, const char *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

static void buf_free(buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- the multi's callbacks (run no Lua) ------------------------------------------------ */

/* Deliver every finished transfer to its waiting task. */
static void check_done(multi *m) {
  CURLMsg *msg;
  int left;
  while ((msg = corio__curl.multi_info_read(m->cm, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    xfer *x = NULL;
    corio__curl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    if (x) xfer_finish(x, (int)msg->data.result);
  }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  sockctx *s = container_of(h, sockctx, poll);
  multi *m = s->m;
  int flags = 0, running;
  /* On a socket error, let curl try the operations it waits for: it then reports the
   * system's own error (reset by peer...) rather than a bare "poll returned error". */
  if (status < 0) events = s->events;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  corio__curl.multi_socket_action(m->cm, s->fd, flags, &running);
  check_done(m);
}

static void timer_cb(uv_timer_t *h) {
  multi *m = container_of(h, mtimer, t)->m;
  int running;
  corio__curl.multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(m);
}

static void sock_close(sockctx *s) {
  if (s->next) s->next->pprev = s->pprev;
  *s->pprev = s->next;
  corio__box_close(&s->base); /* freed by the shared close callback */
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching a socket. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp) {
  (void)easy;
  multi *m = userp;
  sockctx *s = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      sock_close(s);
      corio__curl.multi_assign(m->cm, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = malloc(sizeof *s);
    if (!s) return -1;
    if (uv_poll_init_socket(corio__loop(m->rt), &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    corio__box_attach(NULL, &s->base, (uv_handle_t *)&s->poll, NULL);
    s->fd = fd;
    s->m = m;
    s->next = m->socks;
    if (m->socks) m->socks->pprev = &s->next;
    s->pprev = &m->socks;
    m->socks = s;
    corio__curl.multi_assign(m->cm, fd, s);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  s->events = events;
  uv_poll_start(&s->poll, events, poll_cb);
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer; 0 means "on the next loop iteration". */
static int timer_fn(CURLM *cm, long ms, void *userp) {
  (void)cm;
  multi *m = userp;
  if (ms < 0) uv_timer_stop(&m->timer->t);
  else uv_timer_start(&m->timer->t, timer_cb, (uint64_t)ms, 0);
  return 0;
}

/* ---- transfers: curl's data callbacks (run no Lua) -------------------------------------- */

/* Restart the idle timeout; UV_ENOMEM when the timer heap cannot take it (the caller then
 * fails this one transfer: from a curl callback by returning 0, elsewhere with X_NOMEM). */
static int idle_restart(xfer *x) {
  if (x->idle_s > 0) return corio__timer_start(x->m->rt, &x->idle, x->idle_s);
  return 0;
}

static void wake(xfer *x) {
  corio__waiter_wake(x->m->rt, &x->w, 0);
}

/* Header lines, one per call. A status line starts a new response (a redirect was followed
 * or a 1xx came first): only the last response's head is kept. */
size_t corio__http_header_cb(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  if (idle_restart(x) != 0) return 0;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) x->head.len = 0;
  if (buf_add(&x->head, p, len) != 0) return 0;
  return len;
}

size_t corio__http_write_cb(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  if (idle_restart(x) != 0) return 0;
  if (x->stream && x->body.len >= x->pause_at) {
    /* Backpressure: the reader is behind. Not idle on the server's side: no timeout. */
    x->paused = 1;
    corio__timer_stop(x->m->rt, &x->idle);
    wake(x);
    return CURL_WRITEFUNC_PAUSE;
  }
  /* curl checks max_size against Content-Length only: count for chunked bodies too */
  x->received += (curl_off_t)len;
  if (x->max_size > 0 && x->received > x->max_size) {
    x->too_large = 1;
    return 0;  /* curl stops with CURLE_WRITE_ERROR */
  }
  if (buf_add(&x->body, p, len) != 0) return 0;
  if (x->want & W_DATA) wake(x);
  return len;
}

size_t corio__http_read_file_cb(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t got = fread(p, 1, size * n, x->upload);
  if (got == 0 && ferror(x->upload)) {
    x->upload_errno = errno ? errno : EIO;
    return CURL_READFUNC_ABORT;
  }
  return got;
}

/* Take a transfer out of its multi (completion, abort or close): it is done with `result`,
 * its connection goes back to the pool (or is closed if the transfer was cut short), its
 * anchor is released and its task woken. */
static void xfer_finish(xfer *x, int result) {
  multi *m = x->m;
  if (x->state != X_ACTIVE) return;
  x->state = X_DONE;
  x->result = result;
  corio__timer_stop(m->rt, &x->idle);
  corio__curl.multi_remove_handle(m->cm, x->easy);
  /* Let go of the session's cookie share now: it can only be freed with no user left. */
  if (m->share) corio__curl.easy_setopt(x->easy, CURLOPT_SHARE, (CURLSH *)NULL);
  if (x->next) x->next->pprev = x->pprev;
  *x->pprev = x->next;
  m->nactive--;
  long connects = 0;
  if (corio__curl.easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
    m->connects += connects;
  m->requests++;
  wake(x);
  corio__unanchor(corio__L(m->rt), x->ref);
  x->ref = LUA_NOREF;
}

static void idle_fire(corio_runtime *rt, corio_timer *t) {
  (void)rt;
  xfer_finish(container_of(t, xfer, idle), X_IDLE_TIMEOUT);
}


/* ---- Multi ----------------------------------------------------------------------------- */

static multi *check_multi(lua_State *L) {
  multi *m = luaL_checkudata(L, 1, MULTI);
  if (m->closed) luaL_error(L, "http: the session is closed");
  return m;
}

/* Abort what is in flight (its tasks wake with ECLOSED), close the pool and the handles. */
static void multi_shutdown(multi *m) {
  if (m->closed) return;
  m->closed = 1;
  while (m->active) xfer_finish(m->active, X_CLOSED);
  corio__curl.multi_cleanup(m->cm);
  m->cm = NULL;
  if (m->share) corio__curl.share_cleanup(m->share);
  m->share = NULL;
  while (m->socks) sock_close(m->socks);
  corio__box_close(&m->timer->base);
  m->timer = NULL;
}

/* http_client.new_multi{max_connections=, max_per_host=, max_idle=, cookies=} -> Multi */
static int l_new_multi(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  long total = (long)luaL_optinteger(L, (lua_getfield(L, 1, "max_connections"), -1), 0);
  long per_host = (long)luaL_optinteger(L, (lua_getfield(L, 1, "max_per_host"), -1), 0);
  long idle = (long)luaL_optinteger(L, (lua_getfield(L, 1, "max_idle"), -1), 0);
  int cookies = (lua_getfield(L, 1, "cookies"), lua_toboolean(L, -1));
  lua_pop(L, 4);
  multi *m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  m->closed = 1;  /* until fully built: __gc then has nothing to do */
  luaL_setmetatable(L, MULTI);
  m->rt = corio__rt(L);
  m->timer = malloc(sizeof *m->timer);
  if (!m->timer) return corio__nomem(L);
  m->cm = corio__curl.multi_init();
  if (!m->cm) {
    free(m->timer);
    return luaL_error(L, "http: curl_multi_init failed");
  }
  if (cookies) {
    m->share = corio__curl.share_init();
    if (m->share) corio__curl.share_setopt(m->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
  }
  uv_timer_init(corio__loop(m->rt), &m->timer->t);
  corio__box_attach(NULL, &m->timer->base, (uv_handle_t *)&m->timer->t, NULL);
  m->timer->m = m;
  corio__curl.multi_setopt(m->cm, CURLMOPT_SOCKETFUNCTION, socket_cb);
  corio__curl.multi_setopt(m->cm, CURLMOPT_SOCKETDATA, m);
  corio__curl.multi_setopt(m->cm, CURLMOPT_TIMERFUNCTION, timer_fn);
  corio__curl.multi_setopt(m->cm, CURLMOPT_TIMERDATA, m);
  if (total > 0) corio__curl.multi_setopt(m->cm, CURLMOPT_MAX_TOTAL_CONNECTIONS, total);
  if (per_host > 0) corio__curl.multi_setopt(m->cm, CURLMOPT_MAX_HOST_CONNECTIONS, per_host);
  if (idle > 0) corio__curl.multi_setopt(m->cm, CURLMOPT_MAXCONNECTS, idle);
  m->closed = 0;
  return 1;
}

/* multi:close(): in-flight requests fail with ECLOSED; pooled connections are closed. */
static int multi_close(lua_State *L) {
  multi *m = luaL_checkudata(L, 1, MULTI);
  multi_shutdown(m);
  return 0;
}

/* multi:stats() -> {active=, connects=, requests=, sockets=} */
static int multi_stats(lua_State *L) {
  multi *m = luaL_checkudata(L, 1, MULTI);
  int socks = 0;
  for (sockctx *s = m->socks; s; s = s->next) socks++;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, m->nactive);
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, m->connects);
  lua_setfield(L, -2, "connects");
  lua_pushinteger(L, m->requests);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, socks);
  lua_setfield(L, -2, "sockets");
  return 1;
}

static int multi_gc(lua_State *L) {
  multi_shutdown(lua_touserdata(L, 1));
  return 0;
}

/* ---- perform --------------------------------------------------------------------------- */

static xfer *check_xfer(lua_State *L, int idx) {
  xfer *x = luaL_checkudata(L, idx, XFER);
  if (!x->easy) luaL_error(L, "http: the transfer was released");
  return x;
}

/* A waiting task was cancelled: the transfer is aborted, its connection closed. */
static void xfer_cancel(lua_State *L, corio_waiter *w) {
  (void)L;
  xfer_finish(container_of(w, xfer, w), CURLE_ABORTED_BY_CALLBACK);
}

/* corio.ps's reason: "http GET http://host/x" while the request runs, "http GET http://host/x
 * (reading the body)" in a streamed response's read: curl's current method and URL (after
 * redirects), asked only now. */
static void xfer_describe(lua_State *L, corio_waiter *w, const char *op) {
  xfer *x = container_of(w, xfer, w);
  char *method = NULL, *url = NULL;
  corio__curl.easy_getinfo(x->easy, CURLINFO_EFFECTIVE_METHOD, &method);
  corio__curl.easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  lua_pushfstring(L, "http %s %s%s", method ? method : "request", url ? url : "",
                  strcmp(op, "http read") == 0 ? " (reading the body)" : "");
}

static int perform_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  xfer *x = lua_touserdata(L, 3);
  if (x->state == X_DONE && x->result != CURLE_OK) {
    lua_getfield(L, 2, "method");
    lua_getfield(L, 2, "url");
    return corio__http_push_failure(L, x, lua_tostring(L, -2), lua_tostring(L, -1));
  }
  lua_settop(L, 3);
  return 1;
}

/* multi:perform(spec) -> Transfer | nil, msg, code  [suspends]
 * spec: method, url, headers (list of "Name: value"), body | body_file, timeout,
 * connect_timeout, idle_timeout, max_redirects, decompress, ca_file, insecure, proxy, http1,
 * max_size, stream. Returns when the transfer is complete, or (stream) when the response head
 * and the first body bytes are in. */
static int multi_perform(lua_State *L) {
  multi *m = check_multi(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  corio_task *t = corio__check_suspend(L, "http request");
  xfer *x = lua_newuserdatauv(L, sizeof *x, 2);
  memset(x, 0, sizeof *x);
  x->ref = LUA_NOREF;
  x->idle.index = -1;
  x->idle.fire = idle_fire;
  x->w.on_cancel = xfer_cancel;
  x->w.describe = xfer_describe;
  x->m = m;
  luaL_setmetatable(L, XFER);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 3, 1);
  x->easy = corio__curl.easy_init();
  if (!x->easy) return luaL_error(L, "http: curl_easy_init failed");
  x->stream = (lua_getfield(L, 2, "stream"), lua_toboolean(L, -1));
  lua_pop(L, 1);
  x->pause_at = 256 * 1024;
  corio__http_configure(L, x, 2, 3);
  /* Nothing raises from here on. */
  x->ref = corio__anchor(L, 3);
  CURLMcode mc = corio__curl.multi_add_handle(m->cm, x->easy);
  if (mc != CURLM_OK) {
    corio__unanchor(L, x->ref);
    x->ref = LUA_NOREF;
    lua_pushnil(L);
    lua_pushfstring(L, "http: cannot start the request: %s", corio__curl.multi_strerror(mc));
    lua_pushliteral(L, "EHTTP");
    return 3;
  }
  x->state = X_ACTIVE;
  x->next = m->active;
  if (m->active) m->active->pprev = &x->next;
  x->pprev = &m->active;
  m->active = x;
  m->nactive++;
  if (idle_restart(x) != 0) {
    xfer_finish(x, X_NOMEM);
    return perform_k(L, LUA_OK, 0);
  }
  x->want = x->stream ? W_DATA : W_DONE;
  (void)t; /* corio__waiter_await suspends the same (current) task */
  return corio__waiter_await(L, &x->w, "http request", perform_k, 0);
}

/* ---- Transfer -------------------------------------------------------------------------- */

static const char *http_version(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0: return "1.0";
    case CURL_HTTP_VERSION_1_1: return "1.1";
    case CURL_HTTP_VERSION_2_0: return "2";
    case CURL_HTTP_VERSION_3: return "3";
    default: return "";
  }
}

/* xfer:head() -> status, http_version, effective_url, raw_head
 * The last response's head: status line and header lines as received. */
static int xfer_head(lua_State *L) {
  xfer *x = check_xfer(L, 1);
  long code = 0, ver = 0;
  char *url = NULL;
  corio__curl.easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  corio__curl.easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &ver);
  corio__curl.easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  lua_pushinteger(L, code);
  lua_pushstring(L, http_version(ver));
  lua_pushstring(L, url ? url : "");
  lua_pushlstring(L, x->head.p ? x->head.p : "", x->head.len);
  return 4;
}

/* xfer:take() -> the body bytes received so far (and not taken yet) */
static int xfer_take(lua_State *L) {
  xfer *x = check_xfer(L, 1);
  lua_pushlstring(L, x->body.p ? x->body.p : "", x->body.len);
  x->body.len = 0;
  return 1;
}

static int read_k(lua_State *L, int status, lua_KContext ctx);

/* Hand over what is buffered; resume a paused transfer. */
static int read_deliver(lua_State *L, xfer *x) {
  lua_pushlstring(L, x->body.p, x->body.len);
  x->body.len = 0;
  if (x->paused && x->state == X_ACTIVE) {
    x->paused = 0;
    if (idle_restart(x) != 0) {
      xfer_finish(x, X_NOMEM); /* the next read reports it */
      return 1;
    }
    corio__curl.easy_pause(x->easy, CURLPAUSE_CONT);
  }
  return 1;
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  xfer *x = lua_touserdata(L, 1);
  if (x->body.len > 0) return read_deliver(L, x);
  if (x->state == X_DONE) {
    if (x->result == CURLE_OK) {
      lua_pushnil(L);
      return 1;
    }
    return corio__http_push_failure(L, x, lua_tostring(L, 2), lua_tostring(L, 3));
  }
  /* woken for a pause with nothing buffered (cannot happen: pause needs a full buffer) */
  x->want = W_DATA;
  return corio__waiter_await(L, &x->w, "http read", read_k, 0);
}

/* xfer:read(method, url) -> chunk | nil at the end | nil, msg, code  [suspends]
 * The next body bytes of a streamed response (method and url name it in errors). */
static int xfer_read(lua_State *L) {
  xfer *x = check_xfer(L, 1);
  luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  if (corio__waiter_busy(&x->w))
    return luaL_error(L, "http read: another task is already reading this response");
  if (x->body.len > 0 || x->state != X_ACTIVE) return read_k(L, LUA_OK, 0);
  corio_task *t = corio__check_suspend(L, "http read");
  x->want = W_DATA;
  (void)t;
  return corio__waiter_await(L, &x->w, "http read", read_k, 0);
}

/* xfer:done() -> true once the transfer is over */
static int xfer_done(lua_State *L) {
  lua_pushboolean(L, check_xfer(L, 1)->state == X_DONE);
  return 1;
}

/* xfer:close(): abort the transfer if it still runs (its connection is closed, not reused) */
static int xfer_close(lua_State *L) {
  xfer *x = luaL_checkudata(L, 1, XFER);
  if (x->state == X_ACTIVE) xfer_finish(x, CURLE_ABORTED_BY_CALLBACK);
  return 0;
}

/* xfer:info() -> {connects=, total_time=, ...} timing and connection facts */
static int xfer_info(lua_State *L) {
  xfer *x = check_xfer(L, 1);
  long connects = 0;
  double total = 0;
  corio__curl.easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
  corio__curl.easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &total);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, connects);
  lua_setfield(L, -2, "connects");
  lua_pushnumber(L, total);
  lua_setfield(L, -2, "total_time");
  return 1;
}

/* xfer:release(): free the transfer's memory now (also its __gc); aborts it if it runs */
static int xfer_gc(lua_State *L) {
  xfer *x = luaL_checkudata(L, 1, XFER);
  /* Active transfers are anchored: one still active here means the state is closing. */
  if (x->state == X_ACTIVE && !x->m->closed) xfer_finish(x, X_CLOSED);
  if (x->easy) corio__curl.easy_cleanup(x->easy);
  x->easy = NULL;
  if (x->headers) corio__curl.slist_free_all(x->headers);
  x->headers = NULL;
  if (x->upload) fclose(x->upload);
  x->upload = NULL;
  buf_free(&x->head);
  buf_free(&x->body);
  return 0;
}

/* ---- module ---------------------------------------------------------------------------- */

/* http_client.check_url(url) -> true | nil, reason: is it an absolute http(s) URL curl
 * accepts? */
static int l_check_url(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  CURLU *u = corio__curl.url();
  if (!u) return corio__nomem(L);
  CURLUcode rc = corio__curl.url_set(u, CURLUPART_URL, s, 0);
  char *scheme = NULL;
  if (rc == CURLUE_OK) rc = corio__curl.url_get(u, CURLUPART_SCHEME, &scheme, 0);
  int ok = rc == CURLUE_OK && scheme &&
           (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
  if (scheme) corio__curl.free(scheme);
  corio__curl.url_cleanup(u);
  if (ok) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, rc != CURLUE_OK ? "malformed URL" : "only http and https URLs are supported");
  return 2;
}

/* http_client.version() -> "libcurl/7.88.1 OpenSSL/3.0.x ...", features table */
static int l_version(lua_State *L) {
  curl_version_info_data *v = corio__curl.version_info(CURLVERSION_NOW);
  lua_pushfstring(L, "libcurl/%s %s", v->version, v->ssl_version ? v->ssl_version : "");
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
  lua_setfield(L, -2, "http2");
  lua_pushboolean(L, (v->features & CURL_VERSION_SSL) != 0);
  lua_setfield(L, -2, "ssl");
  lua_pushboolean(L, (v->features & CURL_VERSION_BROTLI) != 0);
  lua_setfield(L, -2, "brotli");
  return 2;
}

static const luaL_Reg multi_methods[] = {
  {"perform", multi_perform},
  {"close", multi_close},
  {"stats", multi_stats},
  {NULL, NULL}
};

static const luaL_Reg xfer_methods[] = {
  {"head", xfer_head},
  {"take", xfer_take},
  {"read", xfer_read},
  {"done", xfer_done},
  {"close", xfer_close},
  {"info", xfer_info},
  {"release", xfer_gc},
  {NULL, NULL}
};

static const luaL_Reg module_funcs[] = {
  {"new_multi", l_new_multi},
  {"check_url", l_check_url},
  {"version", l_version},
  {NULL, NULL}
};

static const luaL_Reg multi_meta[] = {
  {"__gc", multi_gc},
  {"__close", multi_close},
  {NULL, NULL}
};

static const luaL_Reg xfer_meta[] = {
  {"__gc", xfer_gc},
  {"__close", xfer_close},
  {NULL, NULL}
};

int luaopen_corio_http_client(lua_State *L) {
  const char *err = corio__curl_load();
  if (err) return luaL_error(L, "%s", err);
  corio__class(L, MULTI, multi_methods, multi_meta);
  corio__class(L, XFER, xfer_methods, xfer_meta);
  lua_pop(L, 2);
  luaL_newlib(L, module_funcs);
  return 1;
}
