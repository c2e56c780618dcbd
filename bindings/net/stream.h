/* corio streams, the C side: a Lua userdata of class "corio.net.Stream" over any libuv stream
 * (TCP, Unix socket or pipe, TTY) or a regular file descriptor (read on the thread pool). Other
 * bindings (corio.net, corio.process) create streams here and hand them to Lua; the methods
 * (read, read_exactly, read_until, read_line, write, drain, close_write, close, abort, ...) are
 * the same whatever is underneath. Private to bindings/: this header is the stable contract.
 *
 * Typical use, a child process's stdout (the pipe must be initialised before uv_spawn):
 *
 *   int err;
 *   corio_stream *s = corio__stream_new(L, CORIO_STREAM_PIPE, 0, &err);  // pushes the userdata
 *   if (!s) return corio__fail(L, "spawn", cmd, err);
 *   corio__stream_set_name(s, "pid 1234 stdout");
 *   opts.stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;            // the child writes
 *   opts.stdio[1].data.stream = corio__stream_uv(s);
 *   ... uv_spawn(...); on failure corio__stream_close(s, 1): the userdata stays, closed.
 *
 * Ownership: the record lives in C memory owned by the userdata (STYLE.md, handle boxes); it is
 * freed after libuv's close callback. A stream closes when Lua calls close()/abort(), when its
 * userdata is collected (abortive), or when the owner calls corio__stream_close. Nothing here
 * runs user Lua from a callback. */
#ifndef CORIO_NET_STREAM_H
#define CORIO_NET_STREAM_H

#include "binding.h"

#define CORIO_STREAM "corio.net.Stream"

typedef struct corio_stream corio_stream;

typedef enum corio_stream_kind {
  CORIO_STREAM_TCP,  /* arg: address family for uv_tcp_init_ex (AF_UNSPEC: none yet) */
  CORIO_STREAM_PIPE, /* arg: ipc flag for uv_pipe_init (Unix sockets, pipes) */
  CORIO_STREAM_TTY,  /* arg: the descriptor, for uv_tty_init (readable if it is fd 0) */
  CORIO_STREAM_FILE  /* arg: a regular file's descriptor, read/written on the thread pool */
} corio_stream_kind;

/* Register the class (idempotent; corio._net's opener calls it, so does any binding that makes
 * streams before corio.net was required). */
void corio__stream_class(lua_State *L);

/* Push a new stream userdata and return its record with the libuv handle initialised as
 * `kind`. If initialisation fails, the pushed userdata is a closed stream, *err holds the libuv
 * error and NULL is returned. Raises only Lua's memory error (before anything is allocated
 * that could leak). */
corio_stream *corio__stream_new(lua_State *L, corio_stream_kind kind, int arg, int *err);

/* The libuv handle (for uv_spawn's stdio, uv_accept, uv_pipe_open, uv_tcp_open...); NULL for
 * CORIO_STREAM_FILE. */
uv_stream_t *corio__stream_uv(corio_stream *s);

/* The name shown in error messages ("read 127.0.0.1:80: connection reset by peer"); NULL
 * for the default, "stream". */
void corio__stream_set_name(corio_stream *s, const char *name);

/* read_until's and read_line's default limit (bytes); reading pauses at twice that buffered. */
void corio__stream_set_limit(corio_stream *s, size_t limit);

/* The open stream at idx (raises "op: the corio.net.Stream is closed" / not a stream). */
corio_stream *corio__stream_check(lua_State *L, int idx, const char *op);

/* Close: graceful (queued writes are flushed, then the handle closes) or abortive (pending
 * writes are dropped; TCP sends RST). Idempotent; a task waiting on the stream wakes with
 * ECANCELED. Runs no Lua. */
void corio__stream_close(corio_stream *s, int abort);

/* Remember fd's file status flags now and restore them when the stream closes (and at exit):
 * for descriptors shared with other processes, such as stdin, whose O_NONBLOCK libuv sets. */
void corio__stream_restore_flags(corio_stream *s, int fd);

#endif
