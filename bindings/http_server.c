/* The HTTP/1.1 server's mechanism: libuv TCP listen/accept, one strict llhttp parser per
 * connection, limits counted in the parser callbacks, keep-alive, pipelining (one request at
 * a time per connection, answered in order), timeouts on the runtime's timer heap, and the
 * response serialisation. Policy (routing, middleware, errors) is in scripts/corio/web.lua.
 * Lua module "corio._http_server": listen, respond, stream_start, stream_write, stream_end,
 * sendfile, realpath, stat, abort_request, next_request. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>

#include "binding.h"
#include "http_reason.h"

#define SERVER "corio.web.Server"
#define READ_BUF (64 * 1024)
#define FILE_CHUNK (64 * 1024)
#define SMALL_BODY (16 * 1024)     /* bodies up to this are copied next to the head */
#define PENDING_MAX (64 * 1024)    /* pipelined bytes buffered before reading pauses */
#define LINGER_SECONDS 2.0


typedef struct server server;
typedef struct conn conn;
typedef struct server_box {
  server *s;
} server_box;

enum { ST_HEAD, ST_BODY, ST_HANDLING, ST_LINGER, ST_CLOSED };
enum { T_NONE, T_HEADER, T_BODY, T_IDLE, T_WRITE, T_LINGER };
enum { CB_NONE, CB_FIELD, CB_VALUE, CB_VALUE_DONE };

typedef struct header {
  uint32_t name, name_len, value, value_len;  /* offsets into conn->buf */
} header;

struct conn {
  uv_tcp_t tcp;
  server *srv;
  conn *next, *prev;
  llhttp_t parser;
  corio_timer timer;
  uint64_t deadline;      /* uv_hrtime() when the current phase's time is up */
  int timer_kind;
  int state;
  /* the request being read: URL and headers in buf, body in body */
  char *buf;
  size_t len, cap;
  uint32_t url_len;
  header *hdrs;
  int nhdr, hcap, last_cb;
  size_t head_raw;        /* raw bytes seen while the head is incomplete */
  char *body;
  size_t body_len, body_cap;
  int err_status;         /* set by a callback that rejects the request */
  const char *exec_start; /* the data of the running llhttp_execute */
  int tail_lf;            /* the data fed so far ends with LF and then only SP/HT */
  /* pipelined bytes that arrived while a request was being handled */
  char *pending;
  size_t pending_len;
  corio_task *task;       /* the task handling the current request, if any */
  corio_listener task_done; /* on task: the record outlives no task that may still use it */
  int writes;             /* uv_write requests in flight */
  int file_fd;            /* a file being sent, or -1 */
  uint64_t file_left;
  unsigned keep_alive : 1, close_after : 1, eof : 1, is_head : 1, got_bytes : 1,
      handle_closed : 1, reading : 1, streaming : 1, upgrade : 1, minor : 1;
  char remote[48];
};

struct server {
  uv_tcp_t tcp;
  corio_runtime *rt;
  conn *conns;
  int nconns, listening, listener_closed, lua_gone, self_ref, dispatch_ref;
  struct server_box *box;
  /* handler tasks waiting in next_request for the next request (a pool: a request costs a
   * resume, not a new coroutine) */
  struct idle_slot **idle; /* handler tasks waiting for the next request (LIFO) */
  int nidle, idle_cap;
  /* limits */
  size_t max_header, max_url, max_body;
  int max_headers, max_conns;
  double header_timeout, body_timeout, idle_timeout, write_timeout;
  time_t date_sec;
  char date[40];
  char *scratch;          /* SMALL_BODY + head room: responses are built here */
  size_t scratch_cap;
  char rbuf[READ_BUF];
};


typedef struct wreq {
  uv_write_t req;
  conn *c;
  size_t len;
  char data[];
} wreq;

static void conn_close(conn *c);
static void conn_free_if_done(conn *c);
static void feed(lua_State *L, conn *c, const char *data, size_t n);
static void send_error(conn *c, int status);
static void finish_response(lua_State *L, conn *c);
static void file_next(conn *c);

/* ---- small helpers --------------------------------------------------------------------- */

/* The status line's phrase: the one table of bindings/http_reason.c, "Unknown" off it. */
static const char *reason(int status) {
  const char *r = corio__http_reason(status);
  return r ? r : "Unknown";
}

/* The Date header's value, formatted once per second. */
static const char *http_date(server *s) {
  time_t now = time(NULL);
  if (now != s->date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->date_sec = now;
  }
  return s->date;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) abort();  /* as Lua's allocator failing would: nothing sane to do */
  return q;
}

static int grow(char **p, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 512;
  while (n < need) n *= 2;
  *p = xrealloc(*p, n);
  *cap = n;
  return 0;
}

/* ---- timers ---------------------------------------------------------------------------- */

/* Timers are lazy, as nginx's are: the heap entry stays while a connection moves between
 * phases (idle, head, body, handling), and only `deadline` and `timer_kind` change. The
 * entry is moved only when a deadline comes earlier than the armed one; when it fires, a
 * later deadline re-arms it. Keep-alive traffic then costs no heap operation per request. */
static void conn_timer_fire(corio_runtime *rt, corio_timer *t) {
  conn *c = container_of(t, conn, timer);
  int kind = c->timer_kind;
  if (kind == T_NONE) return;
  uint64_t now = uv_hrtime();
  if (c->deadline > now) {
    corio__timer_start(rt, &c->timer, (double)(c->deadline - now) / 1e9);
    return;
  }
  c->timer_kind = T_NONE;
  switch (kind) {
  case T_HEADER:
    /* A client that started a request but did not finish its head in time: 408 (as nginx);
     * one that sent nothing at all is closed silently. */
    if (c->got_bytes) send_error(c, 408);
    else conn_close(c);
    break;
  case T_BODY: send_error(c, 408); break;
  default: conn_close(c); break;
  }
}

static void arm(conn *c, int kind, double seconds) {
  if (seconds <= 0) {
    c->timer_kind = T_NONE;
    return;
  }
  uint64_t when = uv_hrtime() + (uint64_t)(seconds * 1e9);
  c->timer_kind = kind;
  c->deadline = when;
  if (c->timer.index < 0 || c->timer.when > when)
    corio__timer_start(c->srv->rt, &c->timer, seconds);
}

static void disarm(conn *c) {
  c->timer_kind = T_NONE;
}

/* ---- closing --------------------------------------------------------------------------- */

static void server_maybe_free(server *s);

/* Once the listener is closed and no connection is open, nothing can dispatch any more: the
 * Lua side is released at once (the C memory follows in the close callbacks). */
static void release_refs(server *s) {
  if (s->listening || s->conns || s->lua_gone || s->self_ref == LUA_NOREF) return;
  lua_State *L = corio__L(s->rt);
  int self = s->self_ref, disp = s->dispatch_ref;
  s->self_ref = s->dispatch_ref = LUA_NOREF;
  corio__unanchor(L, disp);
  corio__unanchor(L, self);
}

static void conn_free_if_done(conn *c) {
  if (!c->handle_closed || c->task) return;
  server *s = c->srv;
  if (c->file_fd >= 0) close(c->file_fd);
  free(c->buf);
  free(c->hdrs);
  free(c->body);
  free(c->pending);
  free(c);
  s->nconns--;
  server_maybe_free(s);
}

static void conn_close_cb(uv_handle_t *h) {
  conn *c = container_of((uv_tcp_t *)h, conn, tcp);
  c->handle_closed = 1;
  conn_free_if_done(c);
}

/* Close now. The record stays until its close callback and until a running handler has
 * answered (its response is then dropped). */
static void conn_close(conn *c) {
  if (c->state == ST_CLOSED) return;
  server *s = c->srv;
  c->state = ST_CLOSED;
  corio__timer_stop(s->rt, &c->timer);
  c->timer_kind = T_NONE;
  if (c->next) c->next->prev = c->prev;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  c->next = c->prev = NULL;
  uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
  release_refs(s);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  conn *c = req->data;
  free(req);
  if (status < 0 && c->state == ST_LINGER) conn_close(c);
}

/* Close gracefully once the queued writes are out: send FIN, then read and discard what the
 * client still sends (a reset would destroy the response in its receive buffer) until its
 * EOF or a short linger time. */
static void begin_close(conn *c) {
  if (c->state == ST_CLOSED || c->state == ST_LINGER) return;
  c->state = ST_LINGER;
  if (c->eof) {
    /* It already said it is done: close once the writes have drained. */
    if (c->writes == 0) { conn_close(c); return; }
  }
  uv_shutdown_t *req = xrealloc(NULL, sizeof *req);
  req->data = c;
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    free(req);
    conn_close(c);
    return;
  }
  arm(c, T_LINGER, LINGER_SECONDS + (c->writes ? c->srv->write_timeout : 0));
}

/* ---- writing --------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *c = w->c;
  free(w);
  c->writes--;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->timer_kind == T_WRITE && c->writes == 0) {
    /* written out: an idle keep-alive connection gets its idle time back */
    if (c->state == ST_HEAD && !c->got_bytes) arm(c, T_IDLE, c->srv->idle_timeout);
    else disarm(c);
  }
  if (c->file_fd >= 0 && c->writes == 0) {
    file_next(c);
    return;
  }
  if (c->state == ST_LINGER && c->eof && c->writes == 0) conn_close(c);
}

/* Write bufs: straight to the socket when it takes them, else queued (copied). */
static void conn_write(conn *c, uv_buf_t *bufs, int n) {
  if (c->state == ST_CLOSED) return;
  size_t total = 0;
  for (int i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return;
  int done = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
  if (done == UV_EAGAIN || done == UV_ENOSYS) done = 0;
  if (done < 0) {
    conn_close(c);
    return;
  }
  if ((size_t)done == total) return;
  wreq *w = xrealloc(NULL, sizeof *w + total - (size_t)done);
  w->c = c;
  w->len = 0;
  size_t skip = (size_t)done;
  for (int i = 0; i < n; i++) {
    size_t l = bufs[i].len;
    if (skip >= l) { skip -= l; continue; }
    memcpy(w->data + w->len, bufs[i].base + skip, l - skip);
    w->len += l - skip;
    skip = 0;
  }
  uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
    free(w);
    conn_close(c);
    return;
  }
  c->writes++;
  if (c->timer_kind == T_NONE || c->timer_kind == T_IDLE)
    arm(c, T_WRITE, c->srv->write_timeout);
}

/* An error response generated by the server itself; the connection closes after it. */
static void send_error(conn *c, int status) {
  if (c->state == ST_CLOSED || c->state == ST_LINGER) return;
  char buf[512];
  const char *r = reason(status);
  int n = snprintf(buf, sizeof buf,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nDate: %s\r\nConnection: close\r\n\r\n%s\n",
                   status, r, strlen(r) + 1, http_date(c->srv), r);
  uv_buf_t b = uv_buf_init(buf, (unsigned)n);
  c->close_after = 1;
  conn_write(c, &b, 1);
  begin_close(c);
}

/* ---- parser callbacks ------------------------------------------------------------------ */

static conn *pconn(llhttp_t *p) { return p->data; }

static int reject(conn *c, int status) {
  c->err_status = status;
  return -1;
}

static int append(conn *c, const char *at, size_t n) {
  if (c->len + n > c->srv->max_header) return reject(c, 431);
  grow(&c->buf, &c->cap, c->len + n);
  memcpy(c->buf + c->len, at, n);
  c->len += n;
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn *c = pconn(p);
  c->got_bytes = 1;
  /* The header deadline starts with the request's first byte (the first request's started
   * at accept) and is never pushed back by later bytes. */
  if (c->timer_kind != T_HEADER) arm(c, T_HEADER, c->srv->header_timeout);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  if (c->url_len + n > c->srv->max_url) return reject(c, 414);
  c->url_len += (uint32_t)n;
  return append(c, at, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  if (c->last_cb != CB_FIELD) {
    if (c->nhdr >= c->srv->max_headers) return reject(c, 431);
    if (c->nhdr == c->hcap) {
      c->hcap = c->hcap ? c->hcap * 2 : 16;
      c->hdrs = xrealloc(c->hdrs, sizeof *c->hdrs * (size_t)c->hcap);
    }
    header *h = &c->hdrs[c->nhdr++];
    h->name = (uint32_t)c->len;
    h->name_len = h->value = h->value_len = 0;
    c->last_cb = CB_FIELD;
  }
  c->hdrs[c->nhdr - 1].name_len += (uint32_t)n;
  /* names are stored lowercased: lookups are case-insensitive */
  if (append(c, at, n)) return -1;
  for (char *q = c->buf + c->len - n; q < c->buf + c->len; q++)
    if (*q >= 'A' && *q <= 'Z') *q = (char)(*q + 32);
  return 0;
}

/* Whether the bytes before `at`, skipping SP/HT, end a line: a value that starts on a new
 * line is a fold, whether it follows a value or an empty one ("X:\r\n b"), and however the
 * whitespace was split across reads. */
static int lf_before(conn *c, const char *at) {
  const char *q = at;
  while (q > c->exec_start && (q[-1] == ' ' || q[-1] == '\t')) q--;
  if (q > c->exec_start) return q[-1] == '\n' || q[-1] == '\r';
  return c->tail_lf;
}

static void note_tail(conn *c, const char *data, size_t n) {
  const char *q = data + n;
  while (q > data && (q[-1] == ' ' || q[-1] == '\t')) q--;
  if (q > data) c->tail_lf = q[-1] == '\n';
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  /* llhttp 8.1 reports an obs-fold (a line starting with SP/HT) as more value after the
   * value was complete. Folding is obsolete and hides headers from other parsers (the
   * Content-Length smuggling of CVE-2024-27982): reject it. */
  if (c->last_cb == CB_VALUE_DONE || c->nhdr == 0 || lf_before(c, at)) return reject(c, 400);
  header *h = &c->hdrs[c->nhdr - 1];
  if (c->last_cb != CB_VALUE) {
    h->value = (uint32_t)c->len;
    c->last_cb = CB_VALUE;
  }
  h->value_len += (uint32_t)n;
  return append(c, at, n);
}

static int on_header_value_complete(llhttp_t *p) {
  conn *c = pconn(p);
  if (c->last_cb == CB_FIELD) {  /* an empty value */
    c->hdrs[c->nhdr - 1].value = (uint32_t)c->len;
  }
  c->last_cb = CB_VALUE_DONE;
  return 0;
}

static header *find_header(conn *c, const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < c->nhdr; i++) {
    header *h = &c->hdrs[i];
    if (h->name_len == n && memcmp(c->buf + h->name, name, n) == 0) return h;
  }
  return NULL;
}

static int value_is(conn *c, header *h, const char *v) {
  size_t n = strlen(v);
  return h->value_len == n && strncasecmp(c->buf + h->value, v, n) == 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn *c = pconn(p);
  server *s = c->srv;
  c->is_head = p->method == HTTP_HEAD;
  c->minor = p->http_major == 1 && p->http_minor == 1;
  if (p->http_major != 1) return reject(c, 505);
  if (p->method == HTTP_CONNECT) return reject(c, 405);
  /* HTTP/1.1 needs exactly one Host (RFC 9112 3.2; nginx and Node answer 400 too) */
  int hosts = 0;
  for (int i = 0; i < c->nhdr; i++)
    hosts += c->hdrs[i].name_len == 4 && memcmp(c->buf + c->hdrs[i].name, "host", 4) == 0;
  if (hosts > 1 || (hosts == 0 && p->http_minor >= 1)) return reject(c, 400);
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->max_body) return reject(c, 413);
  header *e = find_header(c, "expect");
  if (e) {
    if (!value_is(c, e, "100-continue")) return reject(c, 417);
    if (p->http_minor >= 1 && (p->flags & (F_CHUNKED | F_CONTENT_LENGTH)) &&
        !(p->flags & F_CONTENT_LENGTH && p->content_length == 0)) {
      static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
      conn_write(c, &b, 1);
    }
  }
  c->state = ST_BODY;
  if ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0))
    arm(c, T_BODY, s->body_timeout);
  else
    disarm(c);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  if (c->body_len + n > c->srv->max_body) return reject(c, 413);
  grow(&c->body, &c->body_cap, c->body_len + n);
  memcpy(c->body + c->body_len, at, n);
  c->body_len += n;
  if (c->timer_kind == T_BODY) arm(c, T_BODY, c->srv->body_timeout);
  return 0;
}

static void dispatch(lua_State *L, conn *c);

static int on_message_complete(llhttp_t *p) {
  conn *c = pconn(p);
  c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  c->upgrade = p->upgrade;
  c->state = ST_HANDLING;
  disarm(c);
  return HPE_PAUSED;
}

static const llhttp_settings_t SETTINGS = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* ---- the request cycle ----------------------------------------------------------------- */

static void reset_request(conn *c) {
  c->len = 0;
  c->url_len = 0;
  c->nhdr = 0;
  c->last_cb = CB_NONE;
  c->head_raw = 0;
  c->body_len = 0;
  c->err_status = 0;
  c->got_bytes = 0;
  c->is_head = 0;
  c->streaming = 0;
  /* do not let one big request pin its buffers on an idle connection */
  if (c->cap > 8192) { free(c->buf); c->buf = NULL; c->cap = 0; }
  if (c->body_cap > 65536) { free(c->body); c->body = NULL; c->body_cap = 0; }
  c->state = ST_HEAD;
}

/* The handler task ended while it still owned c's request (it was cancelled before it
 * could answer, or its code swallowed the request): close and release the connection. */
static void task_done_fire(corio_runtime *rt, corio_listener *l, corio_task *done) {
  conn *c = container_of(l, conn, task_done);
  (void)rt;
  (void)done;
  c->task = NULL;
  conn_close(c);
  conn_free_if_done(c);
}

/* c's request now belongs to t. The connection record lives until t answers or ends, so
 * the light userdata the task holds never dangles. */
static void own(conn *c, corio_task *t) {
  c->task = t;
  corio__listen(t, &c->task_done, task_done_fire);
}

static void disown(conn *c) {
  if (!c->task) return;
  corio__unlisten(&c->task_done);
  c->task = NULL;
}

/* Push the request of c: conn, method, target, headers, body, http11, remote.
 * headers is a flat list {name1, value1, name2, value2, ...} with lowercased names. */
static void push_request(lua_State *L, conn *c) {
  luaL_checkstack(L, 10, NULL);
  lua_pushlightuserdata(L, c);
  lua_pushstring(L, llhttp_method_name((llhttp_method_t)c->parser.method));
  lua_pushlstring(L, c->buf, c->url_len);
  lua_createtable(L, c->nhdr * 2, 0);
  for (int i = 0; i < c->nhdr; i++) {
    header *h = &c->hdrs[i];
    lua_pushlstring(L, c->buf + h->name, h->name_len);
    lua_rawseti(L, -2, 2 * i + 1);
    lua_pushlstring(L, c->buf + h->value, h->value_len);
    lua_rawseti(L, -2, 2 * i + 2);
  }
  if (c->body_len) lua_pushlstring(L, c->body, c->body_len);
  else lua_pushliteral(L, "");
  lua_pushboolean(L, c->minor);
  lua_pushstring(L, c->remote);
}

/* A handler task waiting for its next request: a slot on its own stack (a userdata), listed
 * in the server's idle array until a request or the server's end wakes it. */
typedef struct idle_slot {
  corio_waiter w;
  server *s;
  conn *c;   /* the request handed over, or NULL: no more requests */
} idle_slot;

/* Hand a complete request to Lua: wake an idle handler task with it, or spawn a new one
 * running worker(server, conn, method, target, headers, body, http11, remote). The request
 * stays in c's buffers until it is answered, so a woken task reads it from there. */
static void dispatch(lua_State *L, conn *c) {
  server *s = c->srv;
  if (s->nidle > 0) {
    idle_slot *slot = s->idle[--s->nidle];
    slot->c = c;
    own(c, slot->w.task);
    corio__waiter_wake(s->rt, &slot->w, 0);
    return;
  }
  luaL_checkstack(L, 12, NULL);
  corio__push_anchor(L, s->dispatch_ref);
  int fidx = lua_gettop(L);
  corio__push_anchor(L, s->self_ref);
  push_request(L, c);
  own(c, corio__spawn(L, fidx, 8));
  lua_settop(L, fidx - 1);
}

/* Let every idle handler task end: no request will come any more. */
static void release_idle(server *s) {
  while (s->nidle > 0) {
    idle_slot *slot = s->idle[--s->nidle];
    slot->c = NULL;
    corio__waiter_wake(s->rt, &slot->w, 0);
  }
}

#define MAX_IDLE 1024

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
  if (!slot->c) return 0;
  push_request(L, slot->c);
  return 7;
}

/* _http_server.next_request(server) -> conn, method, target, headers, body, http11, remote
 *   | nothing (the server is done, or enough tasks are idle)  [suspends]
 * Called by a handler task once it has answered, to serve the next request. */
static int l_next_request(lua_State *L) {
  server_box *b = luaL_checkudata(L, 1, SERVER);
  server *s = b->s;
  if (!s || !s->listening || s->nidle >= MAX_IDLE) return 0;
  corio__check_suspend(L, "next request");
  if (s->nidle == s->idle_cap) {
    s->idle_cap = s->idle_cap ? s->idle_cap * 2 : 64;
    s->idle = xrealloc(s->idle, sizeof *s->idle * (size_t)s->idle_cap);
  }
  lua_settop(L, 1);
  idle_slot *slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = (idle_slot){.w = {.on_cancel = next_request_cancel}, .s = s};
  s->idle[s->nidle++] = slot;
  return corio__waiter_await(L, &slot->w, "next request", next_request_k, 2);
}

/* Parse what the client sent, until a request completes (the parser then pauses), an error
 * or the end of the data. Leftover bytes wait in c->pending. */
static void feed(lua_State *L, conn *c, const char *data, size_t n) {
  if (n == 0) return;
  if (c->state == ST_HEAD && !c->got_bytes && c->timer_kind == T_IDLE)
    arm(c, T_HEADER, c->srv->header_timeout);
  c->exec_start = data;
  llhttp_errno_t err = llhttp_execute(&c->parser, data, n);
  note_tail(c, data, n);
  if (err == HPE_OK) {
    if (c->state == ST_HEAD && c->got_bytes) {
      /* The head is still incomplete: every byte of this chunk belonged to it. This also
       * catches bytes no callback reports (whitespace, an endless request line). */
      c->head_raw += n;
      server *s = c->srv;
      if (c->head_raw > s->max_header + 4 * (size_t)s->max_headers + 1024) send_error(c, 431);
    }
    return;
  }
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    size_t rest = (size_t)(data + n - pos);
    if (err == HPE_PAUSED_UPGRADE) {
      rest = 0;  /* no protocol switch is offered: the connection ends after the answer */
      c->keep_alive = 0;
    }
    llhttp_resume(&c->parser);
    c->tail_lf = 0;
    if (rest) {  /* pipelined bytes: c->pending is empty here (see process_pending) */
      c->pending = xrealloc(c->pending, rest);
      memcpy(c->pending, pos, rest);
    }
    c->pending_len = rest;
    dispatch(L, c);
    return;
  }
  int status = c->err_status ? c->err_status : 400;
  send_error(c, status);
}

/* Parse the bytes that arrived while the previous request was being handled. */
static void process_pending(lua_State *L, conn *c) {
  char *p = c->pending;
  size_t n = c->pending_len;
  c->pending = NULL;
  c->pending_len = 0;
  feed(L, c, p, n);
  free(p);
}

static void read_start(conn *c);

/* The response to the current request is complete (queued in order on the socket): go on
 * with the next request on this connection, or close it. */
static void finish_response(lua_State *L, conn *c) {
  disown(c);
  if (c->state == ST_CLOSED) {
    conn_free_if_done(c);
    return;
  }
  if (c->state == ST_LINGER) return;
  if (c->close_after || !c->keep_alive || !c->srv->listening) {
    begin_close(c);
    return;
  }
  reset_request(c);
  if (c->pending_len) {
    process_pending(L, c);
    if (c->state != ST_HEAD || c->got_bytes) {
      if (c->state != ST_CLOSED && c->state != ST_LINGER && !c->reading && !c->eof)
        read_start(c);
      return;
    }
  }
  if (c->eof) {
    begin_close(c);
    return;
  }
  if (!c->reading) read_start(c);
  if (c->writes == 0 || c->timer_kind != T_WRITE) arm(c, T_IDLE, c->srv->idle_timeout);
}

/* ---- reading and accepting -------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  conn *c = container_of((uv_tcp_t *)h, conn, tcp);
  (void)size;
  /* One buffer per server: every read is parsed (or copied out) before the next. */
  *buf = uv_buf_init(c->srv->rbuf, READ_BUF);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn *c = container_of((uv_tcp_t *)st, conn, tcp);
  lua_State *L = corio__L(c->srv->rt);
  if (nread == 0) return;
  if (nread < 0) {
    uv_read_stop(st);
    c->reading = 0;
    if (nread != UV_EOF) {  /* reset: only this connection pays */
      conn_close(c);
      return;
    }
    c->eof = 1;
    switch (c->state) {
    case ST_HANDLING: break;  /* half-closed after its request: it still gets its answer */
    case ST_LINGER:
      if (c->writes == 0) conn_close(c);
      break;
    default: conn_close(c); break;  /* idle, or an incomplete request then EOF */
    }
    return;
  }
  switch (c->state) {
  case ST_LINGER: return;  /* discarded */
  case ST_HANDLING:
    c->pending = xrealloc(c->pending, c->pending_len + (size_t)nread);
    memcpy(c->pending + c->pending_len, buf->base, (size_t)nread);
    c->pending_len += (size_t)nread;
    if (c->pending_len > PENDING_MAX) {  /* back-pressure on a pipelining client */
      uv_read_stop(st);
      c->reading = 0;
    }
    return;
  case ST_CLOSED: return;
  default: feed(L, c, buf->base, (size_t)nread);
  }
}

static void read_start(conn *c) {
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0) c->reading = 1;
  else conn_close(c);
}

static void on_connection(uv_stream_t *ls, int status) {
  server *s = container_of((uv_tcp_t *)ls, server, tcp);
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) abort();
  uv_tcp_init(corio__loop(s->rt), &c->tcp);
  c->srv = s;
  c->file_fd = -1;
  c->timer.index = -1;
  c->timer.fire = conn_timer_fire;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    c->state = ST_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    return;
  }
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  if (s->nconns > s->max_conns) {
    /* Past the limit: a polite 503 and a close, rather than a silent backlog. */
    send_error(c, 503);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof c->remote);
    else
      uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof c->remote);
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &SETTINGS);
  c->parser.data = c;
  reset_request(c);
  arm(c, T_HEADER, s->header_timeout);
  read_start(c);
}

/* ---- the server object ------------------------------------------------------------------ */

/* The server record lives until its listener is closed and its last connection is gone;
 * its userdata stays anchored until then, so a server nobody references keeps serving. */
static void server_maybe_free(server *s) {
  if (!s->listener_closed || s->nconns > 0) return;
  release_refs(s);
  if (s->box) s->box->s = NULL;
  free(s->idle);
  free(s->scratch);
  free(s);
}

static void listener_close_cb(uv_handle_t *h) {
  server *s = container_of((uv_tcp_t *)h, server, tcp);
  s->listener_closed = 1;
  server_maybe_free(s);
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
  server_box *b = luaL_checkudata(L, 1, SERVER);
  if (!b->s || !b->s->listening) luaL_error(L, "server: it is closed");
  return b->s;
}

/* _http_server.listen{host=, port=, dispatch=fn, reuseport=, backlog=, max_header=,
 *   max_url=, max_headers=, max_body=, max_connections=, header_timeout=, body_timeout=,
 *   idle_timeout=, write_timeout=} -> server | nil, msg, code
 * dispatch(server, conn, method, target, headers, body, http11, remote) runs in a new task
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

  struct sockaddr_storage addr;
  char target[300];
  snprintf(target, sizeof target, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
  int r = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                            : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (r) return corio__fail(L, "listen", target, r);

  server_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, SERVER);
  int bidx = lua_gettop(L);
  server *s = calloc(1, sizeof *s);
  if (!s) return luaL_error(L, "listen: out of memory");
  s->rt = rt;
  s->max_header = (size_t)sockopt_int(L, 1, "max_header", 16 * 1024);
  s->max_url = (size_t)sockopt_int(L, 1, "max_url", 8 * 1024);
  s->max_headers = sockopt_int(L, 1, "max_headers", 100);
  lua_getfield(L, 1, "max_body");
  s->max_body = lua_isnil(L, -1) ? 1024 * 1024 : (size_t)luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  s->max_conns = sockopt_int(L, 1, "max_connections", 10000);
  s->header_timeout = opt_num(L, 1, "header_timeout", 30);
  s->body_timeout = opt_num(L, 1, "body_timeout", 30);
  s->idle_timeout = opt_num(L, 1, "idle_timeout", 75);
  s->write_timeout = opt_num(L, 1, "write_timeout", 60);
  s->self_ref = s->dispatch_ref = LUA_NOREF;

  r = uv_tcp_init_ex(corio__loop(rt), &s->tcp, addr.ss_family);
  if (r) { free(s); return corio__fail(L, "listen", target, r); }
  s->tcp.data = s;
  b->s = s;
  s->box = b;
  s->listening = 1;
  if (reuse) {
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      r = uv_translate_sys_error(errno);
  }
  if (!r) r = uv_tcp_bind(&s->tcp, (struct sockaddr *)&addr, 0);
  if (!r) r = uv_listen((uv_stream_t *)&s->tcp, backlog, on_connection);
  if (r) {
    s->listening = 0;
    uv_close((uv_handle_t *)&s->tcp, listener_close_cb);
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
  server *s = check_server(L);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len);
  if (r) return corio__fail(L, "getsockname", NULL, r);
  lua_pushinteger(L, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  return 1;
}

/* server:close(): stop accepting and close idle connections; the others close after their
 * current response (which says Connection: close). Safe to call twice. */
static int server_close(lua_State *L) {
  server_box *b = luaL_checkudata(L, 1, SERVER);
  server *s = b->s;
  if (!s || !s->listening) return 0;
  s->listening = 0;
  release_idle(s);
  uv_close((uv_handle_t *)&s->tcp, listener_close_cb);
  for (conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if ((c->state == ST_HEAD && !c->got_bytes && c->writes == 0) || c->state == ST_LINGER)
      conn_close(c);
  }
  release_refs(s);
  return 0;
}

/* Close every connection now and cancel the handlers still running. */
static void abort_all(lua_State *L, server *s, int cancel) {
  release_idle(s);
  if (s->listening) {
    s->listening = 0;
    uv_close((uv_handle_t *)&s->tcp, listener_close_cb);
  }
  for (conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    /* The record stays until the cancelled handler answers or ends (see own). */
    if (c->task && cancel) corio__cancel(L, c->task, 0);
    conn_close(c);
  }
  release_refs(s);
}

/* server:abort(): close every connection now; running handlers are cancelled. */
static int server_abort(lua_State *L) {
  server_box *b = luaL_checkudata(L, 1, SERVER);
  if (b->s) abort_all(L, b->s, 1);
  return 0;
}

/* server:connections() -> open connections, of which busy (a request in progress) */
static int server_connections(lua_State *L) {
  server_box *b = luaL_checkudata(L, 1, SERVER);
  int n = 0, busy = 0;
  if (b->s) {
    for (conn *c = b->s->conns; c; c = c->next) {
      n++;
      busy += c->task != NULL || c->writes > 0 || (c->state != ST_HEAD) || c->got_bytes;
    }
  }
  lua_pushinteger(L, n);
  lua_pushinteger(L, busy);
  return 2;
}

static int server_gc(lua_State *L) {
  server_box *b = lua_touserdata(L, 1);
  server *s = b->s;
  if (!s) return 0;
  /* Only reached when the Lua state closes (the server is anchored while alive). */
  s->lua_gone = 1;
  s->box = NULL;
  b->s = NULL;
  for (conn *c = s->conns; c; c = c->next) c->task = NULL;  /* tasks are being finalized */
  s->nidle = 0;  /* the tasks may be finalized already: do not touch them */
  abort_all(L, s, 0);
  return 0;
}

/* ---- responses ------------------------------------------------------------------------- */

typedef struct out {
  server *s;
  size_t len;
} out;

static void put(out *o, const char *p, size_t n) {
  grow(&o->s->scratch, &o->s->scratch_cap, o->len + n);
  memcpy(o->s->scratch + o->len, p, n);
  o->len += n;
}

static void puts_(out *o, const char *p) { put(o, p, strlen(p)); }

static int is_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int ieq(const char *a, size_t n, const char *b) {
  return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* Check the flat header list at idx (names are tokens, values hold no CR, LF or NUL: no
 * response splitting). Raises on a bad one. */
static void check_headers(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i += 2) {
    size_t nl, vl;
    lua_rawgeti(L, idx, i);
    lua_rawgeti(L, idx, i + 1);
    const char *name = lua_tolstring(L, -2, &nl);
    const char *v = lua_tolstring(L, -1, &vl);
    if (!name || !v)
      luaL_error(L, "response: header %d needs a string name and value", (int)(i / 2 + 1));
    if (nl == 0) luaL_error(L, "response: empty header name");
    for (size_t k = 0; k < nl; k++)
      if (!is_tchar((unsigned char)name[k]))
        luaL_error(L, "response: invalid header name '%s'", name);
    for (size_t k = 0; k < vl; k++)
      if (v[k] == '\r' || v[k] == '\n' || v[k] == '\0')
        luaL_error(L, "response: header '%s' has a CR, LF or NUL in its value", name);
    lua_pop(L, 2);
  }
}

/* Build the status line and headers into the scratch buffer.
 * length: the Content-Length to announce, or -1 for chunked (-2: none at all). */
static size_t build_head(lua_State *L, conn *c, int status, const char *ctype, int hidx,
                         long long length) {
  server *s = c->srv;
  out o = {s, 0};
  char line[128];
  int user_date = 0;
  int n;
  if (status == 200) {
    puts_(&o, "HTTP/1.1 200 OK\r\n");
  } else {
    n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason(status));
    put(&o, line, (size_t)n);
  }
  if (ctype) {
    puts_(&o, "Content-Type: ");
    puts_(&o, ctype);
    puts_(&o, "\r\n");
  }
  if (!lua_isnoneornil(L, hidx)) {
    lua_Integer hn = luaL_len(L, hidx);
    for (lua_Integer i = 1; i <= hn; i += 2) {
      size_t nl, vl;
      lua_rawgeti(L, hidx, i);
      lua_rawgeti(L, hidx, i + 1);
      const char *name = lua_tolstring(L, -2, &nl);
      const char *v = lua_tolstring(L, -1, &vl);
      if (ieq(name, nl, "content-length") || ieq(name, nl, "transfer-encoding")) {
        /* framing is ours to decide */
      } else if (ieq(name, nl, "connection")) {
        if (ieq(v, vl, "close")) c->close_after = 1;
      } else {
        if (ieq(name, nl, "date")) user_date = 1;
        put(&o, name, nl);
        put(&o, ": ", 2);
        put(&o, v, vl);
        put(&o, "\r\n", 2);
      }
      lua_pop(L, 2);
    }
  }
  if (length >= 0) {
    /* the digits by hand: snprintf showed in the hello-world profile */
    char *e = line + sizeof line, *d = e;
    *--d = '\n';
    *--d = '\r';
    do { *--d = (char)('0' + length % 10); length /= 10; } while (length);
    puts_(&o, "Content-Length: ");
    put(&o, d, (size_t)(e - d));
  } else if (length == -1) {
    puts_(&o, "Transfer-Encoding: chunked\r\n");
  }
  if (!user_date) {
    puts_(&o, "Date: ");
    puts_(&o, http_date(s));
    puts_(&o, "\r\n");
  }
  if (c->close_after || !c->keep_alive || !s->listening || c->eof) {
    c->close_after = 1;
    puts_(&o, "Connection: close\r\n");
  } else if (!c->minor) {
    puts_(&o, "Connection: keep-alive\r\n");
  }
  put(&o, "\r\n", 2);
  return o.len;
}

static conn *check_conn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  return lua_touserdata(L, 1);
}

static int no_body_status(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* _http_server.respond(conn, status, body, content_type, headers)
 * Writes the whole response (head and body in one writev) and moves the connection on to
 * its next request. headers: a flat list {name, value, ...} or nil. */
static int l_respond(lua_State *L) {
  conn *c = check_conn(L);
  int status = (int)luaL_checkinteger(L, 2);
  size_t blen;
  const char *body = luaL_optlstring(L, 3, "", &blen);
  const char *ctype = luaL_optstring(L, 4, NULL);
  if (status < 100 || status > 999) return luaL_error(L, "response: invalid status %d", status);
  check_headers(L, 5);
  if (c->state == ST_CLOSED || c->state == ST_LINGER || !c->task) {
    if (c->task) finish_response(L, c);
    return 0;
  }
  int nobody = no_body_status(status);
  size_t hl = build_head(L, c, status, ctype, 5, nobody ? -2 : (long long)blen);
  if (nobody || c->is_head) blen = 0;
  if (blen <= SMALL_BODY) {
    out o = {c->srv, hl};
    put(&o, body, blen);
    uv_buf_t b = uv_buf_init(c->srv->scratch, (unsigned)o.len);
    conn_write(c, &b, 1);
  } else {
    uv_buf_t b[2] = {uv_buf_init(c->srv->scratch, (unsigned)hl),
                     uv_buf_init((char *)body, (unsigned)blen)};
    conn_write(c, b, 2);
  }
  finish_response(L, c);
  return 0;
}

/* _http_server.abort_request(conn): the handler ended without a response (it was cancelled):
 * close the connection. */
static int l_abort_request(lua_State *L) {
  conn *c = check_conn(L);
  if (!c->task) return 0;
  if (c->state != ST_CLOSED) conn_close(c);
  finish_response(L, c);
  return 0;
}

/* _http_server.stream_start(conn, status, content_type, headers) -> true | nil, msg
 * Sends the head of a chunked response (HTTP/1.0 clients: the body runs until close). */
static int l_stream_start(lua_State *L) {
  conn *c = check_conn(L);
  int status = (int)luaL_checkinteger(L, 2);
  const char *ctype = luaL_optstring(L, 3, NULL);
  check_headers(L, 4);
  if (!c->task || c->state == ST_CLOSED || c->state == ST_LINGER) {
    lua_pushnil(L);
    lua_pushliteral(L, "stream: the client is gone");
    return 2;
  }
  if (!c->minor) c->close_after = 1;
  size_t hl = build_head(L, c, status, ctype, 4, c->minor ? -1 : -2);
  uv_buf_t b = uv_buf_init(c->srv->scratch, (unsigned)hl);
  conn_write(c, &b, 1);
  c->streaming = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* _http_server.stream_write(conn, data) -> queued bytes | nil, msg */
static int l_stream_write(lua_State *L) {
  conn *c = check_conn(L);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (!c->task || !c->streaming || c->state == ST_CLOSED || c->state == ST_LINGER) {
    lua_pushnil(L);
    lua_pushliteral(L, "stream: the client is gone");
    return 2;
  }
  if (n && !c->is_head) {
    char size[24];
    int sl = snprintf(size, sizeof size, "%zx\r\n", n);
    uv_buf_t b[3] = {uv_buf_init(size, (unsigned)sl), uv_buf_init((char *)data, (unsigned)n),
                     uv_buf_init("\r\n", 2)};
    if (c->minor) conn_write(c, b, 3);
    else conn_write(c, b + 1, 1);
  }
  if (c->state == ST_CLOSED) {
    lua_pushnil(L);
    lua_pushliteral(L, "stream: the client is gone");
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)c->tcp.write_queue_size);
  return 1;
}

/* _http_server.stream_end(conn) */
static int l_stream_end(lua_State *L) {
  conn *c = check_conn(L);
  if (!c->task) return 0;
  if (c->streaming && c->minor && !c->is_head && c->state != ST_CLOSED) {
    uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
    conn_write(c, &b, 1);
  }
  finish_response(L, c);
  return 0;
}

/* Queue the next chunk of the file being sent; at its end, finish the response. */
static void file_next(conn *c) {
  if (c->state == ST_CLOSED) return;
  if (c->file_left == 0) {
    close(c->file_fd);
    c->file_fd = -1;
    finish_response(corio__L(c->srv->rt), c);
    return;
  }
  size_t want = c->file_left < FILE_CHUNK ? (size_t)c->file_left : FILE_CHUNK;
  wreq *w = xrealloc(NULL, sizeof *w + want);
  ssize_t got = read(c->file_fd, w->data, want);
  if (got <= 0) {  /* the file shrank or failed under us: the framing is broken, close */
    free(w);
    close(c->file_fd);
    c->file_fd = -1;
    conn_close(c);
    finish_response(corio__L(c->srv->rt), c);
    return;
  }
  c->file_left -= (uint64_t)got;
  w->c = c;
  w->len = (size_t)got;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
    free(w);
    close(c->file_fd);
    c->file_fd = -1;
    conn_close(c);
    finish_response(corio__L(c->srv->rt), c);
    return;
  }
  c->writes++;
  arm(c, T_WRITE, c->srv->write_timeout);
}

/* _http_server.sendfile(conn, status, content_type, headers, path) -> true | nil, msg, code
 * Sends a regular file in chunks, never holding more than one chunk in memory. */
static int l_sendfile(lua_State *L) {
  conn *c = check_conn(L);
  int status = (int)luaL_checkinteger(L, 2);
  const char *ctype = luaL_optstring(L, 3, NULL);
  check_headers(L, 4);
  const char *path = luaL_checkstring(L, 5);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st;
  if (fd < 0) return corio__fail(L, "open", path, uv_translate_sys_error(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return corio__fail(L, "open", path, UV_EISDIR);
  }
  if (!c->task || c->state == ST_CLOSED || c->state == ST_LINGER) {
    close(fd);
    if (c->task) finish_response(L, c);
    lua_pushboolean(L, 1);
    return 1;
  }
  size_t hl = build_head(L, c, status, ctype, 4, (long long)st.st_size);
  uv_buf_t b = uv_buf_init(c->srv->scratch, (unsigned)hl);
  conn_write(c, &b, 1);
  if (c->is_head || st.st_size == 0 || c->state == ST_CLOSED) {
    close(fd);
    finish_response(L, c);
  } else {
    c->file_fd = fd;
    c->file_left = (uint64_t)st.st_size;
    if (c->writes == 0) file_next(c);  /* else write_cb goes on once the head is out */
  }
  lua_pushboolean(L, 1);
  return 1;
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
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"listen", l_listen},
  {"next_request", l_next_request},
  {"respond", l_respond},
  {"abort_request", l_abort_request},
  {"stream_start", l_stream_start},
  {"stream_write", l_stream_write},
  {"stream_end", l_stream_end},
  {"sendfile", l_sendfile},
  {"realpath", l_realpath},
  {"stat", l_stat},
  {NULL, NULL}
};

int luaopen_corio_http_server(lua_State *L) {
  /* A peer that goes away must cost an EPIPE on its own connection, not the process. */
  signal(SIGPIPE, SIG_IGN);
  luaL_newmetatable(L, SERVER);
  luaL_newlib(L, server_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
