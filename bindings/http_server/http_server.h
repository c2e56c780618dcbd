/* The HTTP/1.1 server's private header: the server and connection records and what its files
 * share. parse.c turns bytes into requests (llhttp callbacks and limits; no socket, no timer:
 * fuzz/fuzz_http_request.c feeds it directly), conn.c is a connection's life cycle (accept,
 * read, timeouts, writes, close), body.c hands a request body to its handler as it arrives
 * (read, save to a file), respond.c builds responses, server.c is the Lua surface. */
#ifndef CORIO_HTTP_SERVER_H
#define CORIO_HTTP_SERVER_H

#include <time.h>

#include <llhttp.h>

#include "binding.h"

#define SERVER "corio.web.Server"
#define READ_BUF (64 * 1024)
#define FILE_CHUNK (64 * 1024)
#define SMALL_BODY (16 * 1024)  /* bodies up to this are copied next to the head */
#define PENDING_MAX (64 * 1024) /* pipelined bytes buffered before reading pauses */
#define LINGER_SECONDS 2.0
#define OUT_HWM_DEFAULT (256 * 1024) /* a stream writer waits above this many queued bytes */
#define REFUSALS 256                 /* refused requests kept for the access log, at most */
#define POOL_SWEEP_SECONDS 5.0       /* idle handler tasks unused this long end */
#define BODY_HWM_DEFAULT (256 * 1024) /* unread request body bytes before reading pauses */
#define DRAIN_MAX (1024 * 1024) /* body bytes dropped after an early answer, then close */
#define BODY_GONE 499           /* c->body_err: the client left before the body's end */
#define DRAIN_SECONDS 1.0            /* after close, a connection's time for its next request */

typedef struct server server;
typedef struct conn conn;
typedef struct body_slot body_slot;
typedef struct body_sink body_sink;

enum { ST_HEAD, ST_BODY, ST_HANDLING, ST_LINGER, ST_CLOSED };
enum { T_NONE, T_HEADER, T_BODY, T_IDLE, T_WRITE, T_LINGER };
enum { CB_NONE, CB_FIELD, CB_VALUE, CB_VALUE_DONE };

/* err_status when a buffer could not grow: the connection is closed without an answer. */
#define HS_NOMEM (-1)
/* err_status when a drained body passed DRAIN_MAX: closed without an answer (one was sent). */
#define HS_DRAINED (-2)

/* A request.disconnected watcher: a userdata on the watching task's stack. c is cleared when
 * the outcome is known (gone = 1: the client left; 0: the request ended first). */
typedef struct gone_slot {
  corio_waiter w;
  conn *c;
  int fired, gone;
} gone_slot;

/* A request the server refused itself (400, 408, 413, 414, 431, 503), kept for the access log
 * until the Lua logger takes it (callbacks run no Lua). */
typedef struct refusal {
  int status;
  unsigned minor : 1;
  uint32_t bytes;
  char remote[48];
  char line[160]; /* "METHOD target" as far as it was read, or "" */
} refusal;

typedef struct header {
  uint32_t name, name_len, value, value_len; /* offsets into conn->buf */
} header;

struct conn {
  uv_tcp_t tcp;
  server *srv;
  conn *next, *prev;
  llhttp_t parser;
  corio_timer timer;
  uint64_t deadline; /* uv_hrtime() when the current phase's time is up */
  int timer_kind;
  int state;
  /* the request being read: URL and headers in buf, the unread body in body[body_off..len) */
  char *buf;
  size_t len, cap;
  uint32_t url_len;
  header *hdrs;
  int nhdr, hcap, last_cb;
  size_t head_raw; /* raw bytes seen while the head is incomplete */
  char *body;
  size_t body_len, body_cap, body_off;
  uint64_t body_total;  /* body bytes received for this request (max_body counts these) */
  uint64_t drain_limit; /* while draining: body_total past which the connection closes */
  int body_err;         /* why the body cannot be read to its end: 400, 408, 413, BODY_GONE */
  body_slot *reader;    /* a task's read of the body (body.c), or NULL */
  body_sink *sink;      /* a save of the body to a file in progress (body.c), or NULL */
  int err_status;         /* set by a callback that rejects the request (or HS_NOMEM) */
  const char *exec_start; /* the data of the running llhttp_execute */
  const char *line_from;  /* where the URL starts in that data, while no version was read */
  int tail_lf;            /* the data fed so far ends with LF and then only SP/HT */
  /* pipelined bytes that arrived while a request was being handled */
  char *pending;
  size_t pending_len;
  corio_task *task;         /* the task handling the current request, if any */
  corio_listener task_done; /* on task: the record outlives no task that may still use it */
  int writes;               /* uv_write requests in flight */
  corio_waiter drain;       /* a stream writer waiting for the queue to fall below the mark */
  gone_slot *gone;          /* a request.disconnected watcher, or NULL */
  uint64_t body_sent;       /* body bytes of the current response (the access log's count) */
  int file_fd;              /* a file being sent, or -1 */
  uint64_t file_left;
  unsigned keep_alive : 1, close_after : 1, eof : 1, is_head : 1, got_bytes : 1,
      handle_closed : 1, reading : 1, streaming : 1, upgrade : 1, minor : 1,
      client_gone : 1, answered : 1; /* answered: a response head was built */
  /* what the last corio__hs_parse saw, for the connection to act on (timers, 100-continue) */
  unsigned in_line : 1; /* the URL started, its version not read yet */
  unsigned ev_begin : 1, ev_head : 1, ev_body : 1, body_expected : 1;
  /* the body: still arriving (the handler may run meanwhile); reading stopped at the
   * high-water mark; body() waits for all of it (no mark); the answer went out first and the
   * rest is read and dropped; Expect: 100-continue not answered yet (body.c sends it when the
   * handler starts reading) */
  unsigned body_open : 1, body_paused : 1, body_all : 1, draining : 1, continue_owed : 1;
  char remote[48];
};

typedef struct idle_slot idle_slot;

/* The record behind a corio.web.Server box. It outlives its listener (`keep`) until its last
 * connection is gone, so server:connections() works while a graceful shutdown drains. */
struct server {
  corio_handle base; /* first: the box's record; base.uv is &tcp */
  uv_tcp_t tcp;
  corio_runtime *rt;
  conn *conns;
  int nconns, listening, listener_closed, lua_gone, self_ref, dispatch_ref;
  /* handler tasks waiting in next_request for the next request (a pool: a request costs a
   * resume, not a new coroutine), LIFO */
  idle_slot **idle;
  int nidle, idle_cap;
  int idle_min;        /* fewest idle tasks since the last sweep: the rest were not needed */
  corio_timer sweep;   /* ends idle tasks a burst left behind */
  /* output: bytes copied into queued writes, and bytes of Lua strings queued without a copy */
  size_t out_hwm, copied, pinned;
  uint64_t refused_total;
  int cancel_on_disconnect, log_refusals;
  refusal refusals[REFUSALS];
  int nref_head, nref; /* a ring */
  uint64_t refusals_dropped;
  corio_waiter refusal_w; /* the access logger waiting for the next refusal */  /* limits */
  size_t max_header, max_url, max_body, body_hwm;
  int max_headers, max_conns;
  double header_timeout, body_timeout, idle_timeout, write_timeout;
  time_t date_sec;
  char date[40];
  char *scratch; /* SMALL_BODY + head room: responses are built here */
  size_t scratch_cap;
  uv_tcp_t spare; /* accepts (and drops) a connection whose record could not be allocated */
  int spare_busy;
  char rbuf[READ_BUF];
};

/* ---- parse.c: bytes to requests, no I/O ---------------------------------------------------- */
enum { HS_MORE, HS_REQUEST, HS_REJECT };
void corio__hs_parse_init(conn *c); /* a new connection's parser (c->srv gives the limits) */
void corio__hs_reset(conn *c);      /* ready for the next request */
void corio__hs_parse_free(conn *c); /* free the request buffers */
/* Parse n bytes. HS_MORE: all taken, the request is incomplete. HS_REQUEST: a request is
 * complete (c->state is ST_HANDLING) after *used bytes; the rest belongs to the next request
 * (none after an upgrade: *used is then n). HS_REJECT: answer c->err_status (HS_NOMEM: close).
 * c->ev_* tell what happened meanwhile. */
int corio__hs_parse(conn *c, const char *data, size_t n, size_t *used);
/* Push conn, method, target, headers, http11, remote (6 values). The body is read on demand
 * (body.c): the request is handed over once its head is parsed. */
void corio__hs_push_request(lua_State *L, conn *c);

/* ---- conn.c: a connection's life cycle ----------------------------------------------------- */
void corio__hs_on_connection(uv_stream_t *ls, int status);
void corio__hs_conn_close(conn *c);
void corio__hs_conn_drain(conn *c); /* the server stopped accepting; c waits for a request */
void corio__hs_conn_free_if_done(conn *c);
void corio__hs_conn_write(conn *c, uv_buf_t *bufs, int n);
/* As corio__hs_conn_write, but bufs[ridx] is the Lua string at sidx: what the socket does not
 * take at once of it is queued by reference (the string is anchored until written). */
void corio__hs_conn_write_ref(lua_State *L, conn *c, uv_buf_t *bufs, int n, int ridx,
                              int sidx);
void corio__hs_client_gone(conn *c);
void corio__hs_request_over(conn *c); /* the request's task no longer owns c */
void corio__hs_refuse(conn *c, int status, size_t bytes);
void corio__hs_begin_close(conn *c);
void corio__hs_finish_response(lua_State *L, conn *c);
void corio__hs_file_next(conn *c);
void corio__hs_release_refs(server *s);
/* Reading the socket for a body: stop (the unread body is at the high-water mark) and go on
 * (the handler took it); both keep the body deadline in step. */
void corio__hs_body_pause(conn *c);
void corio__hs_body_resume(conn *c);
void corio__hs_send_continue(conn *c); /* the 100 Continue owed, if any (body deadline on) */

/* ---- body.c: the request body, read while it arrives --------------------------------------- */
/* Something changed for the body of c's request (bytes, its end, an error, the connection's
 * close): wake the task reading it, feed the file being saved, pause reading if need be. */
void corio__hs_body_progress(conn *c);
/* The body cannot be read to its end: status 400, 408, 413 or < 0 (close without an answer).
 * The answer is the server's if the handler has sent nothing yet, else the connection closes;
 * the task reading the body learns why. */
void corio__hs_body_fail(conn *c, int status);
/* The request is over (answered, or its task ended): readers and savers let go of c. */
void corio__hs_body_release(conn *c);
/* The Lua state is closing (its tasks are being finalized): let go of body readers and
 * savers without waking them. */
void corio__hs_body_forget(conn *c);
size_t corio__hs_body_held(conn *c); /* body bytes c holds: unread, or being saved */
/* Room at the end of c->body for the next read of a body its handler reads (parse.c keeps
 * body bytes where they landed): 1, or 0 to use the server's read buffer. */
int corio__hs_body_space(conn *c, uv_buf_t *buf);
extern const luaL_Reg corio__hs_body_funcs[];

/* ---- respond.c: responses ------------------------------------------------------------------ */
void corio__hs_send_error(conn *c, int status);
extern const luaL_Reg corio__hs_respond_funcs[];

/* ---- server.c: the Lua surface ------------------------------------------------------------- */
void corio__hs_dispatch(lua_State *L, conn *c);
void corio__hs_server_maybe_free(server *s);
/* Push "op (server ip:port)" (peer = 0) or "op (client ip:port)" (peer = 1), for corio.ps. */
void corio__hs_push_op_at(lua_State *L, uv_tcp_t *tcp, int peer, const char *op);
void corio__hs_describe_drain(lua_State *L, corio_waiter *w, const char *op); /* respond.c */

/* socket.c: the listening socket run_app's workers share */
int corio__hs_bind(uv_tcp_t *tcp, const struct sockaddr *addr, int reuseport); /* 0 | uv error */
int corio__hs_port(uv_tcp_t *tcp); /* the bound port, -1 if unknown */
void corio__hs_socket_class(lua_State *L);
extern const luaL_Reg corio__hs_socket_funcs[];

#endif
