/* A connection's life cycle: accept, read, feed the parser, timeouts on the runtime's timer
 * heap, keep-alive and pipelining (one request at a time, answered in order), writes, and a
 * graceful close. Out of memory costs the one connection that needed it, never the process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_server.h"

/* A queued write: the bytes the socket did not take at once, copied into data[], then
 * optionally the rest of a Lua string written by reference (anchored until written). */
typedef struct wreq {
  uv_write_t req;
  conn *c;
  size_t len;     /* bytes copied into data */
  int ref;        /* the anchored string, or LUA_NOREF */
  size_t ref_len; /* its bytes in this write */
  char data[];
} wreq;

static void read_start(conn *c);

/* ---- timers ---------------------------------------------------------------------------- */

/* Timers are lazy, as nginx's are: the heap entry stays while a connection moves between
 * phases (idle, head, body, handling), and only `deadline` and `timer_kind` change. The
 * entry is moved only when a deadline comes earlier than the armed one; when it fires, a
 * later deadline re-arms it. Keep-alive traffic then costs no heap operation per request.
 * A connection whose deadline cannot be armed (the heap cannot grow) is closed. */
static void conn_timer_fire(corio_runtime *rt, corio_timer *t) {
  conn *c = container_of(t, conn, timer);
  int kind = c->timer_kind;
  if (kind == T_NONE) return;
  uint64_t now = uv_hrtime();
  if (c->deadline > now) {
    if (corio__timer_start(rt, &c->timer, (double)(c->deadline - now) / 1e9) != 0)
      corio__hs_conn_close(c);
    return;
  }
  c->timer_kind = T_NONE;
  switch (kind) {
  case T_HEADER:
    /* A client that started a request but did not finish its head in time: 408 (as nginx);
     * one that sent nothing at all is closed silently. */
    if (c->got_bytes) corio__hs_send_error(c, 408);
    else corio__hs_conn_close(c);
    break;
  case T_BODY:
    /* a body its handler reads (or that is drained after the answer) ends there too */
    if (c->task || c->draining) corio__hs_body_fail(c, 408);
    else corio__hs_send_error(c, 408);
    break;
  default: corio__hs_conn_close(c); break;
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
  if ((c->timer.index < 0 || c->timer.when > when) &&
      corio__timer_start(c->srv->rt, &c->timer, seconds) != 0)
    corio__hs_conn_close(c);
}

static void disarm(conn *c) {
  c->timer_kind = T_NONE;
}

/* How long a connection may wait for its next request: the idle timeout, and at most
 * DRAIN_SECONDS once the server stopped accepting. */
static double idle_time(server *s) {
  return s->listening || s->idle_timeout < DRAIN_SECONDS ? s->idle_timeout : DRAIN_SECONDS;
}

/* The server stopped accepting and c waits for a request (its first, or the next on a kept
 * connection). Closing it now would cut off a request already on its way (the client would see
 * a reset and no answer): it gets DRAIN_SECONDS to arrive, and is answered with Connection:
 * close. */
void corio__hs_conn_drain(conn *c) {
  uint64_t when = uv_hrtime() + (uint64_t)(DRAIN_SECONDS * 1e9);
  if (c->timer_kind == T_NONE || c->deadline > when) arm(c, T_IDLE, DRAIN_SECONDS);
}

/* ---- closing --------------------------------------------------------------------------- */

/* Once the listener is closed and no connection is open, nothing can dispatch any more: the
 * Lua side is released at once (the C memory follows in the close callbacks). */
void corio__hs_release_refs(server *s) {
  if (s->listening || s->conns || s->lua_gone || s->self_ref == LUA_NOREF) return;
  lua_State *L = corio__L(s->rt);
  int self = s->self_ref, disp = s->dispatch_ref;
  s->self_ref = s->dispatch_ref = LUA_NOREF;
  corio__unanchor(L, disp);
  corio__unanchor(L, self);
}

/* Tell the request.disconnected watcher, if any, how the request ended. */
static void fire_gone(conn *c, int gone) {
  gone_slot *g = c->gone;
  if (!g) return;
  c->gone = NULL;
  g->c = NULL;
  g->fired = 1;
  g->gone = gone;
  corio__waiter_wake(c->srv->rt, &g->w, 0);
}

/* The client of a request in progress went away (EOF, reset, a failed write): the watcher
 * learns it, and with cancel_on_disconnect the handler's task is cancelled (it runs no Lua
 * here: the cancellation is delivered at the task's next suspension). */
void corio__hs_client_gone(conn *c) {
  if (c->client_gone || !c->task) return;
  c->client_gone = 1;
  fire_gone(c, 1);
  if (c->srv->cancel_on_disconnect && !c->srv->lua_gone)
    corio__cancel(corio__L(c->srv->rt), c->task, 0);
}

void corio__hs_request_over(conn *c) {
  fire_gone(c, 0);
  c->client_gone = 0;
  corio__hs_body_release(c);
}

/* Keep a refusal for the access log (the oldest is dropped when the logger lags). */
void corio__hs_refuse(conn *c, int status, size_t bytes) {
  server *s = c->srv;
  s->refused_total++;
  if (!s->log_refusals) return;
  if (s->nref == REFUSALS) {
    s->nref_head = (s->nref_head + 1) % REFUSALS;
    s->nref--;
    s->refusals_dropped++;
  }
  refusal *r = &s->refusals[(s->nref_head + s->nref++) % REFUSALS];
  r->status = status;
  r->minor = c->minor;
  r->bytes = (uint32_t)bytes;
  memcpy(r->remote, c->remote, sizeof r->remote);
  r->line[0] = 0;
  if (c->url_len && c->buf) {
    const char *m = llhttp_method_name((llhttp_method_t)c->parser.method);
    size_t ul = c->url_len < 100 ? c->url_len : 100;
    snprintf(r->line, sizeof r->line, "%s %.*s", m, (int)ul, c->buf);
  }
  corio__waiter_wake(s->rt, &s->refusal_w, 0);
}

void corio__hs_conn_free_if_done(conn *c) {
  if (!c->handle_closed || c->task) return;
  server *s = c->srv;
  if (c->file_fd >= 0) close(c->file_fd);
  corio__hs_parse_free(c);
  free(c->pending);
  free(c);
  s->nconns--;
  corio__hs_server_maybe_free(s);
}

static void conn_close_cb(uv_handle_t *h) {
  conn *c = container_of((uv_tcp_t *)h, conn, tcp);
  c->handle_closed = 1;
  corio__hs_conn_free_if_done(c);
}

/* Close now. The record stays until its close callback and until a running handler has
 * answered (its response is then dropped). */
void corio__hs_conn_close(conn *c) {
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
  /* a stream writer waiting for room learns the client is gone, and so does a body reader */
  corio__waiter_wake(s->rt, &c->drain, UV_ECONNRESET);
  if (c->task && c->body_open && !c->body_err) c->body_err = BODY_GONE;
  if (c->reader || c->sink) corio__hs_body_progress(c);
  corio__hs_release_refs(s);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  conn *c = req->data;
  free(req);
  if (status < 0 && c->state == ST_LINGER) corio__hs_conn_close(c);
}

/* Close gracefully once the queued writes are out: send FIN, then read and discard what the
 * client still sends (a reset would destroy the response in its receive buffer) until its
 * EOF or a short linger time. */
void corio__hs_begin_close(conn *c) {
  if (c->state == ST_CLOSED || c->state == ST_LINGER) return;
  c->state = ST_LINGER;
  if (c->eof) {
    /* It already said it is done: close once the writes have drained. */
    if (c->writes == 0) { corio__hs_conn_close(c); return; }
  }
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req) { corio__hs_conn_close(c); return; }
  req->data = c;
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    free(req);
    corio__hs_conn_close(c);
    return;
  }
  arm(c, T_LINGER, LINGER_SECONDS + (c->writes ? c->srv->write_timeout : 0));
}

/* ---- writing --------------------------------------------------------------------------- */

static void wreq_free(server *s, wreq *w) {
  s->copied -= w->len;
  if (w->ref != LUA_NOREF) {
    s->pinned -= w->ref_len;
    /* after lua_close (a server collected with the state), the anchors are gone already */
    if (!s->lua_gone) corio__unanchor(corio__L(s->rt), w->ref);
  }
  free(w);
}

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *c = w->c;
  server *s = c->srv;
  wreq_free(s, w);
  c->writes--;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    corio__hs_client_gone(c);
    corio__hs_conn_close(c);
    return;
  }
  /* a stream writer above the high-water mark goes on once half of it is out */
  if (corio__waiter_busy(&c->drain) && c->tcp.write_queue_size <= s->out_hwm / 2)
    corio__waiter_wake(s->rt, &c->drain, 0);
  if (c->timer_kind == T_WRITE && c->writes == 0) {
    /* written out: an idle keep-alive connection gets its idle time back */
    if (c->state == ST_HEAD && !c->got_bytes) arm(c, T_IDLE, idle_time(s));
    else disarm(c);
  }
  if (c->file_fd >= 0 && c->writes == 0) {
    corio__hs_file_next(c);
    return;
  }
  if (c->state == ST_LINGER && c->eof && c->writes == 0) corio__hs_conn_close(c);
}

/* Queue bufs: as much as the socket takes at once, the rest copied, except bufs[ridx] (if
 * ridx >= 0), the Lua string at sidx, which is anchored and written from where it is. Big
 * bodies thus cost no copy, and what a connection holds in copies stays small: heads, small
 * bodies, chunk framing and one file chunk. */
static void queue_write(lua_State *L, conn *c, uv_buf_t *bufs, int n, int ridx, int sidx) {
  if (c->state == ST_CLOSED) return;
  server *s = c->srv;
  size_t total = 0;
  for (int i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return;
  int done = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
  if (done == UV_EAGAIN || done == UV_ENOSYS) done = 0;
  if (done < 0) {
    corio__hs_client_gone(c);
    corio__hs_conn_close(c);
    return;
  }
  if ((size_t)done == total) return;
  /* what is left of each buffer after the `done` bytes the socket took */
  size_t skip = (size_t)done, ncopy = 0, ref_len = 0;
  char *ref_base = NULL;
  for (int i = 0; i < n; i++) {
    size_t l = bufs[i].len, k = skip < l ? skip : l;
    skip -= k;
    if (i == ridx) { ref_base = bufs[i].base + k; ref_len = l - k; }
    else ncopy += l - k;
  }
  int ref = ref_len ? corio__anchor(L, sidx) : LUA_NOREF;
  wreq *w = malloc(sizeof *w + ncopy);
  if (!w) { /* the response cannot be queued: this connection ends */
    if (L) corio__unanchor(L, ref);
    corio__hs_conn_close(c);
    return;
  }
  w->c = c;
  w->len = 0;
  w->ref = ref;
  w->ref_len = ref_len;
  size_t pre = 0; /* bytes copied before the referenced buffer */
  skip = (size_t)done;
  for (int i = 0; i < n; i++) {
    size_t l = bufs[i].len, k = skip < l ? skip : l;
    skip -= k;
    if (i == ridx) { pre = w->len; continue; }
    memcpy(w->data + w->len, bufs[i].base + k, l - k);
    w->len += l - k;
  }
  if (ridx < 0 || !ref_len) pre = w->len;
  uv_buf_t b[3];
  int nb = 0;
  if (pre) b[nb++] = uv_buf_init(w->data, (unsigned)pre);
  if (ref_len) b[nb++] = uv_buf_init(ref_base, (unsigned)ref_len);
  if (w->len > pre) b[nb++] = uv_buf_init(w->data + pre, (unsigned)(w->len - pre));
  s->copied += w->len;
  s->pinned += ref_len;
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, b, (unsigned)nb, write_cb) != 0) {
    wreq_free(s, w);
    corio__hs_conn_close(c);
    return;
  }
  c->writes++;
  if (c->timer_kind == T_NONE || c->timer_kind == T_IDLE) arm(c, T_WRITE, s->write_timeout);
}

void corio__hs_conn_write(conn *c, uv_buf_t *bufs, int n) {
  queue_write(NULL, c, bufs, n, -1, 0);
}

void corio__hs_conn_write_ref(lua_State *L, conn *c, uv_buf_t *bufs, int n, int ridx,
                              int sidx) {
  queue_write(L, c, bufs, n, ridx, sidx);
}

/* The file being sent failed or could not be queued: the framing is broken, close. */
static void file_fail(conn *c) {
  close(c->file_fd);
  c->file_fd = -1;
  corio__hs_conn_close(c);
  corio__hs_finish_response(corio__L(c->srv->rt), c);
}

/* Queue the next chunk of the file being sent; at its end, finish the response. */
void corio__hs_file_next(conn *c) {
  if (c->state == ST_CLOSED) return;
  if (c->file_left == 0) {
    close(c->file_fd);
    c->file_fd = -1;
    corio__hs_finish_response(corio__L(c->srv->rt), c);
    return;
  }
  size_t want = c->file_left < FILE_CHUNK ? (size_t)c->file_left : FILE_CHUNK;
  wreq *w = malloc(sizeof *w + want);
  if (!w) {
    file_fail(c);
    return;
  }
  ssize_t got = read(c->file_fd, w->data, want);
  if (got <= 0) { /* the file shrank or failed under us */
    free(w);
    file_fail(c);
    return;
  }
  c->file_left -= (uint64_t)got;
  w->c = c;
  w->len = (size_t)got;
  w->ref = LUA_NOREF;
  w->ref_len = 0;
  c->srv->copied += w->len;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
    wreq_free(c->srv, w);
    file_fail(c);
    return;
  }
  c->writes++;
  arm(c, T_WRITE, c->srv->write_timeout);
}

/* ---- the request cycle ----------------------------------------------------------------- */

static void next_request(lua_State *L, conn *c);

/* Parse what the client sent, until a request completes (the parser then pauses), an error
 * or the end of the data. Leftover bytes wait in c->pending.
 * A request is handed to a handler task as soon as its head is parsed: at once when it has
 * no body or all of it came with the head, else here while the body goes on arriving (the
 * handler reads it from c->body, body.c). */
static void feed(lua_State *L, conn *c, const char *data, size_t n) {
  if (n == 0) return;
  if (c->state == ST_HEAD && !c->got_bytes && c->timer_kind == T_IDLE)
    arm(c, T_HEADER, c->srv->header_timeout);
  size_t used;
  int r = corio__hs_parse(c, data, n, &used);
  /* The deadlines of what the parser saw: the header's starts with the request's first
   * byte and is never pushed back by later bytes; the body's moves with each body byte. A
   * client waiting for 100 Continue is not late: its body deadline starts with the 100. */
  if (c->ev_begin && c->timer_kind != T_HEADER) arm(c, T_HEADER, c->srv->header_timeout);
  if (c->ev_head) {
    if (c->body_expected && !c->continue_owed) arm(c, T_BODY, c->srv->body_timeout);
    else disarm(c);
  } else if (c->ev_body && c->timer_kind == T_BODY) {
    arm(c, T_BODY, c->srv->body_timeout);
  }
  if (c->state == ST_CLOSED) return;
  if (r == HS_MORE) {
    if (c->task) {
      corio__hs_body_progress(c); /* more of the body its handler reads */
    } else if (c->ev_head && c->body_open && !c->draining) {
      corio__hs_dispatch(L, c);
      if (c->task) corio__hs_body_progress(c); /* the high-water mark may be passed */
    }
    return;
  }
  if (r == HS_REJECT) {
    if (c->task || c->draining) corio__hs_body_fail(c, c->err_status);
    else if (c->err_status < 0) corio__hs_conn_close(c);
    else corio__hs_send_error(c, c->err_status);
    return;
  }
  disarm(c);
  size_t rest = n - used;
  if (rest) { /* pipelined bytes: c->pending is empty here (see process_pending) */
    char *p = realloc(c->pending, rest);
    if (!p) {
      corio__hs_conn_close(c);
      return;
    }
    c->pending = p;
    memcpy(c->pending, data + used, rest);
  }
  c->pending_len = rest;
  if (c->draining) { /* the rest of a body answered early is gone: on to the next request */
    c->draining = 0;
    if (c->srv->listening) next_request(L, c);
    else corio__hs_begin_close(c);
  } else if (c->task) {
    corio__hs_body_progress(c); /* the end of the body its handler reads */
  } else {
    corio__hs_dispatch(L, c);
  }
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

/* The handler answered before the body's end, and the head kept the connection open: read
 * and drop the rest (up to DRAIN_MAX bytes, under the body deadline), then go on with the next
 * request. A body that goes past that closes the connection (parse.c, HS_DRAINED). */
static void start_drain(conn *c) {
  c->draining = 1;
  c->body_len = c->body_off = 0;
  c->drain_limit = c->body_total + DRAIN_MAX;
  c->body_paused = 0;
  arm(c, T_BODY, c->srv->body_timeout);
  if (!c->reading && !c->eof && c->state == ST_BODY) read_start(c);
}

/* The response to the current request is complete (queued in order on the socket): go on
 * with the next request on this connection, or close it. */
void corio__hs_finish_response(lua_State *L, conn *c) {
  if (c->task) {
    corio__unlisten(&c->task_done);
    c->task = NULL;
    corio__hs_request_over(c);
  }
  if (c->state == ST_CLOSED) {
    corio__hs_conn_free_if_done(c);
    return;
  }
  if (c->state == ST_LINGER) return;
  if (c->close_after || !c->keep_alive || !c->srv->listening) {
    corio__hs_begin_close(c);
    return;
  }
  if (c->state == ST_BODY) {
    start_drain(c);
    return;
  }
  next_request(L, c);
}

/* The request is done with, body and all: parse the next one on this connection. */
static void next_request(lua_State *L, conn *c) {
  corio__hs_reset(c);
  if (c->pending_len) {
    process_pending(L, c);
    if (c->state != ST_HEAD || c->got_bytes) {
      if (c->state != ST_CLOSED && c->state != ST_LINGER && !c->reading && !c->eof &&
          !c->body_paused)
        read_start(c);
      return;
    }
  }
  if (c->eof) {
    corio__hs_begin_close(c);
    return;
  }
  if (!c->reading) read_start(c);
  if (c->writes == 0 || c->timer_kind != T_WRITE) arm(c, T_IDLE, idle_time(c->srv));
}

/* The unread body reached the high-water mark: stop reading; its handler is slow, not the
 * client, so the body deadline stops too. */
void corio__hs_body_pause(conn *c) {
  if (!c->reading || c->state != ST_BODY) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  c->body_paused = 1;
  if (c->timer_kind == T_BODY) disarm(c);
}

void corio__hs_body_resume(conn *c) {
  if (!c->body_paused) return;
  c->body_paused = 0;
  if (c->state != ST_BODY || c->eof) return;
  arm(c, T_BODY, c->srv->body_timeout);
  if (c->state == ST_BODY) read_start(c); /* arm closes the connection if the heap is full */
}

/* Expect: 100-continue, answered once the handler starts reading the body; the client sends
 * it from now on, so its deadline starts now. */
void corio__hs_send_continue(conn *c) {
  static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  if (!c->continue_owed) return;
  c->continue_owed = 0;
  if (c->answered || c->state != ST_BODY) return; /* no interim answer after the final one */
  uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
  corio__hs_conn_write(c, &b, 1);
  if (c->state == ST_BODY && !c->body_paused) arm(c, T_BODY, c->srv->body_timeout);
}

/* ---- reading and accepting -------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  conn *c = container_of((uv_tcp_t *)h, conn, tcp);
  (void)size;
  /* A body its handler reads is read in place (body.c); otherwise one buffer per server:
   * every read is parsed (or copied out) before the next. */
  if (c->state == ST_BODY && c->task && corio__hs_body_space(c, buf)) return;
  *buf = uv_buf_init(c->srv->rbuf, READ_BUF);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn *c = container_of((uv_tcp_t *)st, conn, tcp);
  lua_State *L = corio__L(c->srv->rt);
  if (nread == 0) return;
  if (nread < 0) {
    uv_read_stop(st);
    c->reading = 0;
    if (nread != UV_EOF) { /* reset: only this connection pays */
      corio__hs_client_gone(c);
      corio__hs_conn_close(c);
      return;
    }
    c->eof = 1;
    switch (c->state) {
    case ST_HANDLING:
      /* Half-closed after its request: it still gets its answer, but the handler can learn
       * that the client has stopped sending (most clients that do this have left). */
      corio__hs_client_gone(c);
      break;
    case ST_LINGER:
      if (c->writes == 0) corio__hs_conn_close(c);
      break;
    case ST_BODY: /* the body is cut short: its handler, if one runs, learns the client left */
      corio__hs_client_gone(c);
      corio__hs_conn_close(c);
      break;
    default: corio__hs_conn_close(c); break; /* idle, or an incomplete request then EOF */
    }
    return;
  }
  switch (c->state) {
  case ST_LINGER: return; /* discarded */
  case ST_HANDLING: {
    char *p = realloc(c->pending, c->pending_len + (size_t)nread);
    if (!p) {
      corio__hs_conn_close(c);
      return;
    }
    c->pending = p;
    memcpy(c->pending + c->pending_len, buf->base, (size_t)nread);
    c->pending_len += (size_t)nread;
    if (c->pending_len > PENDING_MAX) { /* back-pressure on a pipelining client */
      uv_read_stop(st);
      c->reading = 0;
    }
    return;
  }
  case ST_CLOSED: return;
  default: feed(L, c, buf->base, (size_t)nread);
  }
}

static void read_start(conn *c) {
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0) c->reading = 1;
  else corio__hs_conn_close(c);
}

static void on_connection_retry(server *s);

static void spare_closed(uv_handle_t *h) {
  server *s = container_of((uv_tcp_t *)h, server, spare);
  s->spare_busy = 0;
  s->nconns--;
  on_connection_retry(s);
  corio__hs_server_maybe_free(s);
}

/* No memory for a connection's record: accept it into the server's spare handle and close
 * it at once (the client sees a reset), so that the listener goes on accepting. While the
 * spare is closing, the connection waits in libuv; the spare's close callback comes back. */
static void drop_connection(server *s) {
  if (s->spare_busy) return;
  uv_tcp_init(corio__loop(s->rt), &s->spare);
  s->spare_busy = 1;
  s->nconns++;
  uv_accept((uv_stream_t *)&s->tcp, (uv_stream_t *)&s->spare);
  uv_close((uv_handle_t *)&s->spare, spare_closed);
}

void corio__hs_on_connection(uv_stream_t *ls, int status) {
  server *s = container_of((uv_tcp_t *)ls, server, tcp);
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) {
    drop_connection(s);
    return;
  }
  uv_tcp_init(corio__loop(s->rt), &c->tcp);
  c->srv = s;
  c->file_fd = -1;
  c->timer.index = -1;
  c->timer.fire = conn_timer_fire;
  c->drain.describe = corio__hs_describe_drain;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    c->state = ST_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    return;
  }
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof c->remote);
    else
      uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof c->remote);
  }
  if (s->nconns > s->max_conns) {
    /* Past the limit: a 503 if the socket takes it at once, and a close now. No linger and
     * no timer: the descriptor is released in this callback, so open descriptors stay at
     * max_connections plus the ones closing in this loop turn, whatever the clients do. */
    static char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
                         "charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
                         "Service Unavailable\n";
    uv_buf_t b = uv_buf_init(busy, sizeof busy - 1);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    corio__hs_refuse(c, 503, n > 0 ? 20 : 0);
    corio__hs_conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  corio__hs_parse_init(c);
  arm(c, T_HEADER, s->header_timeout);
  if (c->state != ST_CLOSED) read_start(c);
}

/* A connection left waiting in libuv while the spare was busy: accept it now. */
static void on_connection_retry(server *s) {
  if (s->listening) corio__hs_on_connection((uv_stream_t *)&s->tcp, 0);
}
