/* corio.net's stream record, private to the files that implement corio.net.Stream: stream.c
 * (life cycle, reading, writing, the class) and stream_addr.c (names, addresses, TCP options,
 * connecting, the wait reasons corio.ps shows). Other bindings use stream.h. */
#ifndef CORIO_NET_STREAM_RECORD_H
#define CORIO_NET_STREAM_RECORD_H

#include "net.h"

/* The record is allocated up to the end of the member of `u` its kind uses (a TCP stream does
 * not pay for a TTY's handle): `u` comes last, and no code touches another kind's member.
 * Requests that only some streams make (connect, shutdown) are allocated when made, and the
 * fields are packed (libuv's error codes fit 16 bits): every idle connection has one record,
 * and 16 bytes less moves it into a smaller malloc size. */
struct corio_stream {
  corio_handle base; /* first: the box machinery frees the record through it */
  corio_runtime *rt;
  corio_waiter rd, wr;
  char *buf; /* buffered input: buf[off .. off+len) */
  size_t off, len, cap;
  size_t need;       /* a waiting reader wants this many buffered bytes (0: any) */
  size_t queued;     /* bytes in unfinished write requests (high-water mark: 64 KiB) */
  uint32_t scan;     /* read_until: bytes after off already searched (less is only slower) */
  uint32_t limit;    /* read_until's limit; reading pauses at 2*limit buffered */
  int16_t rerr;      /* UV_EOF or a read error: the reading side has ended */
  int16_t werr;      /* the first write error: later writes fail with it */
  unsigned kind : 2; /* corio_stream_kind */
  unsigned reading : 1, shut : 1, closing : 1, fs_busy : 1, connected : 1;
  unsigned draining : 1;    /* the waiting writer wakes when nothing is queued, not half */
  unsigned nonblocking : 1; /* corio__stream_restore_flags: O_NONBLOCK was set */
  unsigned peer4 : 1;       /* the name is `ip4`: an accepted IPv4 connection's peer */
  unsigned chatty : 1;      /* the last read was small: read the next into the scratch block */
  signed saved_fd : 21;     /* corio__stream_restore_flags: the descriptor, or -1 */
  union {                   /* for messages: see corio__stream_name */
    const char *name;       /* "stream", or a copy owned by the record */
    struct {                /* peer4: its address and port, formatted only when a message needs */
      uint8_t addr[4];      /* them (the string would cost a malloc per connection) */
      uint16_t port;
    } ip4;
  } n;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
    struct {          /* CORIO_STREAM_FILE: read and written on the thread pool */
      uv_idle_t idle; /* a handle for the box machinery only */
      int fd;
      uv_fs_t *fs; /* the read request, while one runs */
    } file;
  } u;
};

/* The stream's name in messages ("127.0.0.1:5000", "sh (pid 4121) stdout", "stream"); valid
 * until the next call on this thread. */
const char *corio__stream_name(const corio_stream *s);
/* s:set_nodelay([on=true]), s:set_keepalive([on=true [, delay_seconds=60]]) */
int corio__stream_set_nodelay(lua_State *L);
int corio__stream_set_keepalive(lua_State *L);

/* Push s's peer (peer = 1) or local address: "host:port", "[v6]:port" or a socket path (""
 * for an unnamed socket); nil when there is none (a file, a TTY, a socket not connected). */
void corio__stream_push_name(lua_State *L, corio_stream *s, int peer);

/* The waiter slots' describe hooks (binding.h): "read tcp 127.0.0.1:5000". */
void corio__stream_describe_rd(lua_State *L, corio_waiter *w, const char *op);
void corio__stream_describe_wr(lua_State *L, corio_waiter *w, const char *op);

#endif
