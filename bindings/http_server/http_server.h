/* The HTTP/1.1 server's private header: the server and connection records and what its files
 * share. parse.c turns bytes into requests (llhttp callbacks and limits; no socket, no timer:
 * fuzz/fuzz_http_request.c feeds it directly), conn.c is a connection's life cycle (accept,
 * read, timeouts, writes, close), respond.c builds responses, server.c is the Lua surface. */
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

typedef struct server server;
typedef struct conn conn;

enum { ST_HEAD, ST_BODY, ST_HANDLING, ST_LINGER, ST_CLOSED };
enum { T_NONE, T_HEADER, T_BODY, T_IDLE, T_WRITE, T_LINGER };
enum { CB_NONE, CB_FIELD, CB_VALUE, CB_VALUE_DONE };

/* err_status when a buffer could not grow: the connection is closed without an answer. */
#define HS_NOMEM (-1)

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
  /* the request being read: URL and headers in buf, body in body */
  char *buf;
  size_t len, cap;
  uint32_t url_len;
  header *hdrs;
  int nhdr, hcap, last_cb;
  size_t head_raw; /* raw bytes seen while the head is incomplete */
  char *body;
  size_t body_len, body_cap;
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
      client_gone : 1;
  /* what the last corio__hs_parse saw, for the connection to act on (timers, 100-continue) */
  unsigned in_line : 1; /* the URL started, its version not read yet */
  unsigned ev_begin : 1, ev_head : 1, ev_body : 1, ev_continue : 1, body_expected : 1;
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
  size_t max_header, max_url, max_body;
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
/* Push conn, method, target, headers, body, http11, remote (7 values). */
void corio__hs_push_request(lua_State *L, conn *c);

/* ---- conn.c: a connection's life cycle ----------------------------------------------------- */
void corio__hs_on_connection(uv_stream_t *ls, int status);
void corio__hs_conn_close(conn *c);
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

/* ---- respond.c: responses ------------------------------------------------------------------ */
void corio__hs_send_error(conn *c, int status);
extern const luaL_Reg corio__hs_respond_funcs[];

/* ---- server.c: the Lua surface ------------------------------------------------------------- */
void corio__hs_dispatch(lua_State *L, conn *c);
void corio__hs_server_maybe_free(server *s);
/* Push "op (server ip:port)" (peer = 0) or "op (client ip:port)" (peer = 1), for corio.ps. */
void corio__hs_push_op_at(lua_State *L, uv_tcp_t *tcp, int peer, const char *op);
void corio__hs_describe_drain(lua_State *L, corio_waiter *w, const char *op); /* respond.c */

#endif
