/* corio.net's stream record, private to the files that implement corio.net.Stream: stream.c
 * (life cycle, reading, writing, the class) and stream_addr.c (addresses, connecting). Other
 * bindings use stream.h. */
#ifndef CORIO_NET_STREAM_RECORD_H
#define CORIO_NET_STREAM_RECORD_H

#include "net.h"

struct corio_stream {
  corio_handle base; /* first: the box machinery frees the record through it */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
    uv_idle_t idle; /* CORIO_STREAM_FILE: a handle for the box machinery only */
  } u;
  union { /* a connect comes before any shutdown */
    uv_connect_t connect;
    uv_shutdown_t shutdown;
  } req;
  corio_runtime *rt;
  corio_stream_kind kind;
  corio_waiter rd, wr;
  char *buf; /* buffered input: buf[off .. off+len) */
  size_t off, len, cap;
  size_t scan;  /* read_until: bytes after off already searched for the separator */
  size_t limit; /* read_until's limit; reading pauses at 2*limit buffered */
  size_t need;  /* a waiting reader wants this many buffered bytes (0: any) */
  size_t queued, high; /* bytes in unfinished write requests; the high-water mark */
  size_t wake_at;      /* a waiting writer wakes when queued <= wake_at */
  int rerr;            /* UV_EOF or a read error: the reading side has ended */
  int werr;            /* the first write error: later writes fail with it */
  unsigned reading : 1, shut : 1, closing : 1, fs_busy : 1, connected : 1;
  int fd;          /* CORIO_STREAM_FILE: the descriptor */
  int saved_fd;    /* corio__stream_restore_flags: the descriptor, or -1 */
  int saved_flags;
  uv_fs_t *fs;     /* CORIO_STREAM_FILE: the read request, while one runs */
  char name[112];
};

/* Push s's peer (peer = 1) or local address: "host:port", "[v6]:port" or a socket path (""
 * for an unnamed socket); nil when there is none (a file, a TTY, a socket not connected). */
void corio__stream_push_name(lua_State *L, corio_stream *s, int peer);

#endif
