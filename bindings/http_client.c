/* The HTTP client engine: libcurl's multi-socket interface driven by the corio loop. One
 * CURLM per session, one uv_poll_t per socket curl asks us to watch, one uv_timer_t for
 * curl's timeout; completions wake the waiting task. libcurl is loaded with dlopen on the
 * first require, so a corio that never makes an HTTP request never pays for loading it.
 * Lua module "corio._http_client": new_multi, version; Multi:perform/close/stats, Transfer
 * methods. Policy (URLs, headers, JSON, sessions) is in scripts/corio/http.lua. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include "binding.h"

#define MULTI "corio.http.Multi"
#define XFER "corio.http.Transfer"


/* ---- libcurl, loaded at run time ------------------------------------------------------- */

static struct {
  void *lib;
  CURLcode (*global_init)(long);
  const char *(*easy_strerror)(CURLcode);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  CURLcode (*easy_pause)(CURL *, int);
  void (*easy_cleanup)(CURL *);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM *, CURL *);
  CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
  CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
  CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
  CURLMsg *(*multi_info_read)(CURLM *, int *);
  CURLMcode (*multi_cleanup)(CURLM *);
  const char *(*multi_strerror)(CURLMcode);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
  CURLSH *(*share_init)(void);
  CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
  CURLSHcode (*share_cleanup)(CURLSH *);
  CURLU *(*url)(void);
  CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
  CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
  void (*url_cleanup)(CURLU *);
  void (*free)(void *);
  curl_version_info_data *(*version_info)(CURLversion);
} C;

#define SYMBOL(field, name) {(void **)&C.field, name}

/* Load libcurl.so.4 and resolve every function we call; NULL on success, else a message. */
static const char *load_curl(void) {
  static const struct { void **slot; const char *name; } syms[] = {
    SYMBOL(global_init, "curl_global_init"),
    SYMBOL(easy_strerror, "curl_easy_strerror"),
    SYMBOL(easy_init, "curl_easy_init"),
    SYMBOL(easy_setopt, "curl_easy_setopt"),
    SYMBOL(easy_getinfo, "curl_easy_getinfo"),
    SYMBOL(easy_pause, "curl_easy_pause"),
    SYMBOL(easy_cleanup, "curl_easy_cleanup"),
    SYMBOL(multi_init, "curl_multi_init"),
    SYMBOL(multi_setopt, "curl_multi_setopt"),
    SYMBOL(multi_add_handle, "curl_multi_add_handle"),
    SYMBOL(multi_remove_handle, "curl_multi_remove_handle"),
    SYMBOL(multi_socket_action, "curl_multi_socket_action"),
    SYMBOL(multi_assign, "curl_multi_assign"),
    SYMBOL(multi_info_read, "curl_multi_info_read"),
    SYMBOL(multi_cleanup, "curl_multi_cleanup"),
    SYMBOL(multi_strerror, "curl_multi_strerror"),
    SYMBOL(slist_append, "curl_slist_append"),
    SYMBOL(slist_free_all, "curl_slist_free_all"),
    SYMBOL(share_init, "curl_share_init"),
    SYMBOL(share_setopt, "curl_share_setopt"),
    SYMBOL(share_cleanup, "curl_share_cleanup"),
    SYMBOL(url, "curl_url"),
    SYMBOL(url_set, "curl_url_set"),
    SYMBOL(url_get, "curl_url_get"),
    SYMBOL(url_cleanup, "curl_url_cleanup"),
    SYMBOL(free, "curl_free"),
    SYMBOL(version_info, "curl_version_info"),
  };
  static char msg[256];
  if (C.lib) return NULL;
  void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(msg, sizeof msg, "corio.http needs libcurl (libcurl.so.4, Debian package "
             "libcurl4): %s", dlerror());
    return msg;
  }
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *f = dlsym(lib, syms[i].name);
    if (!f) {
      snprintf(msg, sizeof msg, "corio.http: libcurl.so.4 lacks %s (libcurl 7.80 or later "
               "is needed)", syms[i].name);
      dlclose(lib);
      return msg;
    }
    /* POSIX guarantees that a data pointer from dlsym converts to a function pointer. */
    memcpy(syms[i].slot, &f, sizeof f);
  }
  if (C.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    dlclose(lib);
    return "corio.http: curl_global_init failed";
  }
  C.lib = lib;
  return NULL;
}

/* ---- growable byte buffers ------------------------------------------------------------- */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

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

/* ---- the records ----------------------------------------------------------------------- */

typedef struct multi multi;
typedef struct xfer xfer;

/* One socket curl watches. malloc'd: freed in the poll handle's close callback. */
typedef struct sockctx {
  uv_poll_t poll;
  curl_socket_t fd;
  int events;              /* the UV_ events being watched */
  multi *m;
  struct sockctx *next, **pprev;
} sockctx;

/* A session's engine (userdata "corio.http.Multi"). The timer handle is malloc'd so that
 * __gc can close it and libuv can finish with it afterwards. */
struct multi {
  CURLM *cm;
  CURLSH *share;           /* cookies shared by the session's transfers, or NULL */
  uv_timer_t *timer;
  corio_runtime *rt;
  sockctx *socks;          /* sockets being polled */
  xfer *active;            /* transfers added to cm */
  int nactive;
  long connects;           /* connections opened, summed over finished transfers */
  long requests;
  int closed;
};

enum { /* xfer->state */
  X_NEW, X_ACTIVE, X_DONE
};

enum { /* xfer->want: what wakes the waiting task */
  W_DONE = 1,   /* only completion */
  W_DATA = 2    /* body bytes too (stream mode) */
};

/* Our own failures, beside CURLcode values. */
#define X_IDLE_TIMEOUT (-1)
#define X_CLOSED (-2)
#define X_NOMEM (-3)

/* One request (userdata "corio.http.Transfer"); user value 1: the multi, 2: the body string
 * curl reads from (POSTFIELDS does not copy it). Anchored while added to the multi. */
struct xfer {
  CURL *easy;
  multi *m;
  corio_task *task;        /* waiting for want, or NULL */
  xfer *next, **pprev;     /* in m->active */
  struct curl_slist *headers;
  FILE *upload;            /* body read from a file */
  buf head, body;
  corio_timer idle;        /* idle-read timeout */
  double idle_s;
  int ref;                 /* anchor while active */
  int state, want, stream, paused;
  int upload_errno;        /* reading the body file failed with this errno */
  int too_large;           /* the body went past max_size */
  curl_off_t max_size, received;
  int result;              /* CURLcode or X_* once done */
  size_t pause_at;         /* stream mode: pause the transfer above this many buffered bytes */
  char errbuf[CURL_ERROR_SIZE];
};

static void xfer_finish(xfer *x, int result);

/* ---- the multi's callbacks (run no Lua) ------------------------------------------------ */

/* Deliver every finished transfer to its waiting task. */
static void check_done(multi *m) {
  CURLMsg *msg;
  int left;
  while ((msg = C.multi_info_read(m->cm, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    xfer *x = NULL;
    C.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
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
  C.multi_socket_action(m->cm, s->fd, flags, &running);
  check_done(m);
}

static void timer_cb(uv_timer_t *h) {
  multi *m = h->data;
  int running;
  C.multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(m);
}

static void sock_close_cb(uv_handle_t *h) {
  free(container_of((uv_poll_t *)h, sockctx, poll));
}

static void sock_close(sockctx *s) {
  if (s->next) s->next->pprev = s->pprev;
  *s->pprev = s->next;
  uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching a socket. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp) {
  (void)easy;
  multi *m = userp;
  sockctx *s = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      sock_close(s);
      C.multi_assign(m->cm, fd, NULL);
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
    s->fd = fd;
    s->m = m;
    s->next = m->socks;
    if (m->socks) m->socks->pprev = &s->next;
    s->pprev = &m->socks;
    m->socks = s;
    C.multi_assign(m->cm, fd, s);
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
  if (ms < 0) uv_timer_stop(m->timer);
  else uv_timer_start(m->timer, timer_cb, (uint64_t)ms, 0);
  return 0;
}

/* ---- transfers: curl's data callbacks (run no Lua) -------------------------------------- */

static void idle_restart(xfer *x) {
  if (x->idle_s > 0) corio__timer_start(x->m->rt, &x->idle, x->idle_s);
}

static void wake(xfer *x) {
  if (x->task) {
    corio_task *t = x->task;
    x->task = NULL;
    corio__wake(x->m->rt, t);
  }
}

/* Header lines, one per call. A status line starts a new response (a redirect was followed
 * or a 1xx came first): only the last response's head is kept. */
static size_t header_cb(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  idle_restart(x);
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) x->head.len = 0;
  if (buf_add(&x->head, p, len) != 0) return 0;
  return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  idle_restart(x);
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

static size_t read_file_cb(char *p, size_t size, size_t n, void *ud) {
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
  C.multi_remove_handle(m->cm, x->easy);
  /* Let go of the session's cookie share now: it can only be freed with no user left. */
  if (m->share) C.easy_setopt(x->easy, CURLOPT_SHARE, (CURLSH *)NULL);
  if (x->next) x->next->pprev = x->pprev;
  *x->pprev = x->next;
  m->nactive--;
  long connects = 0;
  if (C.easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
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

/* ---- errors ---------------------------------------------------------------------------- */

/* The stable code of a failed transfer (documented in scripts/corio/http.lua). */
static const char *error_code(xfer *x) {
  long oserr = 0, connect_code = 0;
  if (x->upload_errno) return "EIO";
  if (x->too_large) return "ETOOLARGE";
  switch (x->result) {
    case X_IDLE_TIMEOUT: return "ETIMEDOUT";
    case X_CLOSED: return "ECLOSED";
    case X_NOMEM: return "ENOMEM";
    case CURLE_COULDNT_RESOLVE_HOST: return "EDNS";
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PROXY: return "EPROXY";
    case CURLE_COULDNT_CONNECT:
      C.easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
      if (oserr == ENETUNREACH) return "ENETUNREACH";
      if (oserr == EHOSTUNREACH) return "EHOSTUNREACH";
      return "ECONNREFUSED";
    case CURLE_OPERATION_TIMEDOUT: return "ETIMEDOUT";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED: return "ETLS";
    case CURLE_TOO_MANY_REDIRECTS: return "EREDIRECTS";
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      /* a proxy that refused to open a tunnel answers CONNECT with an error status */
      C.easy_getinfo(x->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
      if (connect_code >= 300) return "EPROXY";
      return "ECONNRESET";
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: return "ECONNRESET";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL: return "EPROTO";
    case CURLE_FILESIZE_EXCEEDED: return "ETOOLARGE";
    case CURLE_READ_ERROR: return "EIO";
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR: return "ENOMEM";
    default: return "EHTTP";
  }
}

/* Push nil, "METHOD url: what happened", code. */
static int push_failure(lua_State *L, xfer *x, const char *method, const char *url) {
  const char *what;
  char tmp[64];
  if (x->upload_errno) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: reading the body file: %s", method, url, strerror(x->upload_errno));
    lua_pushstring(L, "EIO");
    return 3;
  }
  if (x->too_large) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: the response body is larger than max_size (%I bytes)", method,
                    url, (lua_Integer)x->max_size);
    lua_pushliteral(L, "ETOOLARGE");
    return 3;
  }
  switch (x->result) {
    case X_IDLE_TIMEOUT:
      snprintf(tmp, sizeof tmp, "no data received for %g seconds (idle timeout)", x->idle_s);
      what = tmp;
      break;
    case X_CLOSED: what = "the session was closed"; break;
    case X_NOMEM: what = "out of memory"; break;
    case CURLE_COULDNT_CONNECT: {
      /* The text follows the code. curl keeps the first error of a transfer in errbuf (and
       * may keep an earlier errno): a request on a pooled connection that the server reset
       * while restarting is retried on a fresh connection, and when that one is refused,
       * errbuf still says "Recv failure: Connection reset by peer". */
      const char *code = error_code(x);
      int err = strcmp(code, "ENETUNREACH") == 0    ? ENETUNREACH
                : strcmp(code, "EHOSTUNREACH") == 0 ? EHOSTUNREACH
                                                     : ECONNREFUSED;
      const char *detail = strstr(x->errbuf, "connect") ? x->errbuf
                                                        : C.easy_strerror(CURLE_COULDNT_CONNECT);
      lua_pushnil(L);
      lua_pushfstring(L, "%s %s: %s (%s)", method, url, strerror(err), detail);
      lua_pushstring(L, code);
      return 3;
    }
    default:
      what = x->errbuf[0] ? x->errbuf : C.easy_strerror((CURLcode)x->result);
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", method, url, what);
  lua_pushstring(L, error_code(x));
  return 3;
}

/* ---- Multi ----------------------------------------------------------------------------- */

static multi *check_multi(lua_State *L) {
  multi *m = luaL_checkudata(L, 1, MULTI);
  if (m->closed) luaL_error(L, "http: the session is closed");
  return m;
}

static void timer_close_cb(uv_handle_t *h) { free(h); }

/* Abort what is in flight (its tasks wake with ECLOSED), close the pool and the handles. */
static void multi_shutdown(multi *m) {
  if (m->closed) return;
  m->closed = 1;
  while (m->active) xfer_finish(m->active, X_CLOSED);
  C.multi_cleanup(m->cm);
  m->cm = NULL;
  if (m->share) C.share_cleanup(m->share);
  m->share = NULL;
  while (m->socks) sock_close(m->socks);
  uv_close((uv_handle_t *)m->timer, timer_close_cb);
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
  if (!m->timer) return luaL_error(L, "http: out of memory");
  m->cm = C.multi_init();
  if (!m->cm) {
    free(m->timer);
    return luaL_error(L, "http: curl_multi_init failed");
  }
  if (cookies) {
    m->share = C.share_init();
    if (m->share) C.share_setopt(m->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
  }
  uv_timer_init(corio__loop(m->rt), m->timer);
  m->timer->data = m;
  C.multi_setopt(m->cm, CURLMOPT_SOCKETFUNCTION, socket_cb);
  C.multi_setopt(m->cm, CURLMOPT_SOCKETDATA, m);
  C.multi_setopt(m->cm, CURLMOPT_TIMERFUNCTION, timer_fn);
  C.multi_setopt(m->cm, CURLMOPT_TIMERDATA, m);
  if (total > 0) C.multi_setopt(m->cm, CURLMOPT_MAX_TOTAL_CONNECTIONS, total);
  if (per_host > 0) C.multi_setopt(m->cm, CURLMOPT_MAX_HOST_CONNECTIONS, per_host);
  if (idle > 0) C.multi_setopt(m->cm, CURLMOPT_MAXCONNECTS, idle);
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

/* Detach a waiting task (the cancel hooks): the transfer is aborted, its connection closed. */
static void xfer_abort(lua_State *L, corio_task *t, void *data) {
  (void)t;
  xfer *x = data;
  (void)L;
  x->task = NULL;
  xfer_finish(x, CURLE_ABORTED_BY_CALLBACK);
}

static const corio_wait PERFORM_WAIT = {"http request", xfer_abort};
static const corio_wait READ_WAIT = {"http read", xfer_abort};

static const char *opt_string(lua_State *L, int spec, const char *key) {
  lua_getfield(L, spec, key);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);  /* the spec table keeps the string alive */
  return s;
}

static double opt_number(lua_State *L, int spec, const char *key) {
  lua_getfield(L, spec, key);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int spec, const char *key) {
  lua_getfield(L, spec, key);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static void setopt_fail(lua_State *L, CURLcode rc, const char *what) {
  luaL_error(L, "http: %s: %s", what, C.easy_strerror(rc));
}

#define SETOPT(opt, val)                                                   \
  do {                                                                     \
    CURLcode rc_ = C.easy_setopt(e, opt, val);                             \
    if (rc_ != CURLE_OK) setopt_fail(L, rc_, #opt);                        \
  } while (0)

/* Fill the easy handle from the spec table (validated by http.lua, checked again here where
 * a mistake would reach curl). Raises on misuse. */
static void configure(lua_State *L, xfer *x, int spec, int xidx) {
  CURL *e = x->easy;
  const char *method = opt_string(L, spec, "method");
  const char *url = opt_string(L, spec, "url");
  if (!method || !url) luaL_error(L, "http: method and url are required");
  SETOPT(CURLOPT_URL, url);
  SETOPT(CURLOPT_PRIVATE, (void *)x);
  SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
  SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
  SETOPT(CURLOPT_HEADERDATA, (void *)x);
  SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
  SETOPT(CURLOPT_WRITEDATA, (void *)x);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (x->m->share) {
    SETOPT(CURLOPT_SHARE, x->m->share);
    SETOPT(CURLOPT_COOKIEFILE, "");
  }

  long redirects = (long)opt_number(L, spec, "max_redirects");
  SETOPT(CURLOPT_FOLLOWLOCATION, redirects > 0 ? 1L : 0L);
  if (redirects > 0) {
    SETOPT(CURLOPT_MAXREDIRS, redirects);
    /* 301/302/303 turn a POST into a GET, as browsers, requests and aiohttp do. */
    SETOPT(CURLOPT_POSTREDIR, 0L);
  }
  if (opt_bool(L, spec, "decompress")) SETOPT(CURLOPT_ACCEPT_ENCODING, "");
  double t;
  if ((t = opt_number(L, spec, "timeout")) > 0) SETOPT(CURLOPT_TIMEOUT_MS, (long)(t * 1000 + 0.5));
  if ((t = opt_number(L, spec, "connect_timeout")) > 0)
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)(t * 1000 + 0.5));
  x->idle_s = opt_number(L, spec, "idle_timeout");
  const char *s;
  if ((s = opt_string(L, spec, "ca_file"))) SETOPT(CURLOPT_CAINFO, s);
  if (opt_bool(L, spec, "insecure")) {
    SETOPT(CURLOPT_SSL_VERIFYPEER, 0L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if ((s = opt_string(L, spec, "proxy"))) SETOPT(CURLOPT_PROXY, s);
  /* HTTP/2 is offered over TLS (ALPN) unless http2 = false; cleartext stays HTTP/1.1. */
  SETOPT(CURLOPT_HTTP_VERSION, opt_bool(L, spec, "http1") ? (long)CURL_HTTP_VERSION_1_1
                                                          : (long)CURL_HTTP_VERSION_2TLS);
  if ((t = opt_number(L, spec, "max_size")) > 0) {
    x->max_size = (curl_off_t)t;
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, x->max_size);
  }

  /* Headers: a list of "Name: value" lines, each checked for CR, LF and NUL. */
  lua_getfield(L, spec, "headers");
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      size_t len;
      const char *line = lua_tolstring(L, -1, &len);
      if (!line || strlen(line) != len || strpbrk(line, "\r\n"))
        luaL_error(L, "http: header %d contains CR, LF or NUL (header injection)", (int)i);
      struct curl_slist *h = C.slist_append(x->headers, line);
      if (!h) luaL_error(L, "http: out of memory");
      x->headers = h;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (x->headers) SETOPT(CURLOPT_HTTPHEADER, x->headers);

  /* The method and the body: a string (kept alive as the transfer's user value 2, curl reads
   * it in place) or a file streamed by the read callback. */
  int has_body = 0;
  lua_getfield(L, spec, "body");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *p = lua_tolstring(L, -1, &len);
    lua_setiuservalue(L, xidx, 2);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    SETOPT(CURLOPT_POSTFIELDS, p);
    has_body = 1;
  } else {
    lua_pop(L, 1);
  }
  if ((s = opt_string(L, spec, "body_file"))) {
    x->upload = fopen(s, "rb");
    if (!x->upload) luaL_error(L, "http: body file %s: %s", s, strerror(errno));
    if (fseeko(x->upload, 0, SEEK_END) != 0) luaL_error(L, "http: body file %s: not seekable", s);
    off_t size = ftello(x->upload);
    rewind(x->upload);
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
    SETOPT(CURLOPT_READFUNCTION, read_file_cb);
    SETOPT(CURLOPT_READDATA, (void *)x);
    has_body = 1;
  }
  if (strcmp(method, "HEAD") == 0) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "POST") == 0) {
    if (!has_body) SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    if (!has_body) SETOPT(CURLOPT_POSTFIELDS, "");
  } else if (strcmp(method, "GET") == 0 && !has_body) {
    SETOPT(CURLOPT_HTTPGET, 1L);
  } else {
    SETOPT(CURLOPT_CUSTOMREQUEST, method);
  }
}

#undef SETOPT

static int perform_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  xfer *x = lua_touserdata(L, 3);
  if (x->state == X_DONE && x->result != CURLE_OK) {
    lua_getfield(L, 2, "method");
    lua_getfield(L, 2, "url");
    return push_failure(L, x, lua_tostring(L, -2), lua_tostring(L, -1));
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
  x->m = m;
  luaL_setmetatable(L, XFER);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 3, 1);
  x->easy = C.easy_init();
  if (!x->easy) return luaL_error(L, "http: curl_easy_init failed");
  x->stream = opt_bool(L, 2, "stream");
  x->pause_at = 256 * 1024;
  configure(L, x, 2, 3);
  /* Nothing raises from here on. */
  x->ref = corio__anchor(L, 3);
  CURLMcode mc = C.multi_add_handle(m->cm, x->easy);
  if (mc != CURLM_OK) {
    corio__unanchor(L, x->ref);
    x->ref = LUA_NOREF;
    lua_pushnil(L);
    lua_pushfstring(L, "http: cannot start the request: %s", C.multi_strerror(mc));
    lua_pushliteral(L, "EHTTP");
    return 3;
  }
  x->state = X_ACTIVE;
  x->next = m->active;
  if (m->active) m->active->pprev = &x->next;
  x->pprev = &m->active;
  m->active = x;
  m->nactive++;
  idle_restart(x);
  x->want = x->stream ? W_DATA : W_DONE;
  x->task = t;
  return corio__await(L, &PERFORM_WAIT, x, perform_k, 0);
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
  C.easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  C.easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &ver);
  C.easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
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
    idle_restart(x);
    C.easy_pause(x->easy, CURLPAUSE_CONT);
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
    return push_failure(L, x, lua_tostring(L, 2), lua_tostring(L, 3));
  }
  /* woken for a pause with nothing buffered (cannot happen: pause needs a full buffer) */
  x->want = W_DATA;
  x->task = corio__current(L);
  return corio__await(L, &READ_WAIT, x, read_k, 0);
}

/* xfer:read(method, url) -> chunk | nil at the end | nil, msg, code  [suspends]
 * The next body bytes of a streamed response (method and url name it in errors). */
static int xfer_read(lua_State *L) {
  xfer *x = check_xfer(L, 1);
  luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  if (x->task) return luaL_error(L, "http read: another task is already reading this response");
  if (x->body.len > 0 || x->state != X_ACTIVE) return read_k(L, LUA_OK, 0);
  corio_task *t = corio__check_suspend(L, "http read");
  x->want = W_DATA;
  x->task = t;
  return corio__await(L, &READ_WAIT, x, read_k, 0);
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
  C.easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
  C.easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &total);
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
  if (x->easy) C.easy_cleanup(x->easy);
  x->easy = NULL;
  if (x->headers) C.slist_free_all(x->headers);
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
  CURLU *u = C.url();
  if (!u) return luaL_error(L, "http: out of memory");
  CURLUcode rc = C.url_set(u, CURLUPART_URL, s, 0);
  char *scheme = NULL;
  if (rc == CURLUE_OK) rc = C.url_get(u, CURLUPART_SCHEME, &scheme, 0);
  int ok = rc == CURLUE_OK && scheme &&
           (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
  if (scheme) C.free(scheme);
  C.url_cleanup(u);
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
  curl_version_info_data *v = C.version_info(CURLVERSION_NOW);
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

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction close) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}

int luaopen_corio_http_client(lua_State *L) {
  const char *err = load_curl();
  if (err) return luaL_error(L, "%s", err);
  new_class(L, MULTI, multi_methods, multi_gc, multi_close);
  new_class(L, XFER, xfer_methods, xfer_gc, xfer_close);
  luaL_newlib(L, module_funcs);
  return 1;
}
