/* Streams: buffered reads and backpressured writes over a libuv stream or a regular file; the
 * class corio.net.Stream (methods read, read_exactly, read_until, read_line, write, drain,
 * close_write, close, abort, set_nodelay, set_keepalive; fields peer, sockname, limit).
 * The C API other bindings use is stream.h; addresses and connecting are stream_addr.c.
 *
 * Reading: once a task has asked for data, the stream keeps reading into its own buffer until
 * the buffer holds twice the limit (then it pauses, which is the TCP window's backpressure).
 * Reads take from that buffer, so a cancelled read loses nothing: the bytes stay for the next.
 * Writing: uv_try_write first (most small writes finish there, without a request); what the
 * socket did not take is copied into a uv_write request. write() returns at once while less than
 * the high-water mark is queued, and otherwise waits until the queue drops to half of it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream_record.h"

#define DEFAULT_LIMIT 65536
#define DEFAULT_HIGH 65536
#define SCRATCH 65536

typedef struct wreq {
  uv_write_t req;
  size_t len;
  char data[];
} wreq;

static _Thread_local char scratch[SCRATCH];

/* ---- life cycle ---------------------------------------------------------------------------- */

static void restore_flags(corio_stream *s) {
  if (s->saved_fd >= 0) { /* libuv changes only O_NONBLOCK: put it back as it was */
    int fl = fcntl(s->saved_fd, F_GETFL);
    if (fl >= 0) fcntl(s->saved_fd, F_SETFL, s->nonblocking ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
    s->saved_fd = -1;
  }
}

static const char DEFAULT_NAME[] = "stream";

static void stream_closed(corio_handle *h) {
  corio_stream *s = (corio_stream *)h;
  restore_flags(s);
  if (s->kind == CORIO_STREAM_FILE) free(s->u.file.fs); /* no read runs: see really_close */
  free(s->buf);
  s->buf = NULL;
  if (!s->peer4 && s->n.name != DEFAULT_NAME) free((char *)s->n.name);
  s->peer4 = 0;
  s->n.name = DEFAULT_NAME;
}

uv_stream_t *corio__stream_uv(corio_stream *s) {
  return s->kind == CORIO_STREAM_FILE ? NULL : &s->u.stream;
}

void corio__stream_set_name(corio_stream *s, const char *name) {
  size_t n = name ? strlen(name) + 1 : 0;
  char *copy = name ? malloc(n) : (char *)DEFAULT_NAME;
  if (!copy) return; /* no memory: messages keep the old name */
  if (name) memcpy(copy, name, n);
  if (!s->peer4 && s->n.name != DEFAULT_NAME) free((char *)s->n.name);
  s->peer4 = 0;
  s->n.name = copy;
}

/* The bytes of the record for a stream of this kind (see stream_record.h). The TTY and file
 * kinds, rare, get the whole record. */
static size_t record_size(corio_stream_kind kind) {
  size_t head = offsetof(corio_stream, u);
  switch (kind) {
    case CORIO_STREAM_TCP: return head + sizeof(uv_tcp_t);
    case CORIO_STREAM_PIPE: return head + sizeof(uv_pipe_t);
    default: return sizeof(corio_stream);
  }
}

corio_stream *corio__stream_new(lua_State *L, corio_stream_kind kind, int arg, int *err) {
  corio_runtime *rt = corio__rt(L);
  corio_box *b = corio__box_new(L, CORIO_STREAM);
  corio_stream *s = calloc(1, record_size(kind));
  if (!s) corio__nomem(L);
  uv_loop_t *loop = corio__loop(rt);
  int r = 0;
  switch (kind) {
    case CORIO_STREAM_TCP: r = uv_tcp_init_ex(loop, &s->u.tcp, (unsigned)arg); break;
    case CORIO_STREAM_PIPE: r = uv_pipe_init(loop, &s->u.pipe, arg); break;
    case CORIO_STREAM_TTY: r = uv_tty_init(loop, &s->u.tty, arg, arg == 0); break;
    case CORIO_STREAM_FILE: r = uv_idle_init(loop, &s->u.file.idle); break;
  }
  if (r < 0) {
    free(s);
    *err = r;
    return NULL;
  }
  s->rt = rt;
  s->kind = kind;
  s->limit = DEFAULT_LIMIT;
  if (kind == CORIO_STREAM_FILE) s->u.file.fd = arg;
  s->saved_fd = -1;
  s->connected = 1;
  s->chatty = 1; /* most conversations start small: a block comes with the first large read */
  s->n.name = DEFAULT_NAME;
  s->rd.describe = corio__stream_describe_rd;
  s->wr.describe = corio__stream_describe_wr;
  corio__box_attach(b, &s->base, &s->u.handle, stream_closed);
  *err = 0;
  return s;
}

void corio__stream_restore_flags(corio_stream *s, int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fd >= 1 << 23) return; /* (saved_fd's bits) */
  s->saved_fd = fd;
  s->nonblocking = (fl & O_NONBLOCK) != 0;
  corio__net_at_exit(fd, fl);
}

static void wake_all(corio_stream *s, int status) {
  if (s->rd.task) corio__waiter_wake(s->rt, &s->rd, status);
  if (s->wr.task) corio__waiter_wake(s->rt, &s->wr, status);
}

static void really_close(corio_stream *s) {
  restore_flags(s);
  if (s->fs_busy) return; /* the file read's callback closes it */
  corio__box_close(&s->base);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  corio_stream *s = req->data;
  free(req);
  if (status < 0 && !s->werr && status != UV_ECANCELED) s->werr = (int16_t)status;
  if (s->closing) really_close(s);
}

/* Start a shutdown (FIN after the queued data): 0 or a libuv error. */
static int start_shutdown(corio_stream *s, uv_shutdown_cb cb) {
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req) return UV_ENOMEM;
  req->data = s;
  int r = uv_shutdown(req, &s->u.stream, cb);
  if (r < 0) free(req);
  return r;
}

static void set_linger0(corio_stream *s) {
  uv_os_fd_t fd;
  if (s->kind != CORIO_STREAM_TCP || uv_fileno(&s->u.handle, &fd) != 0) return;
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

void corio__stream_close(corio_stream *s, int abort) {
  if (!s || s->base.closing) return;
  wake_all(s, UV_ECANCELED);
  if (s->closing && !abort) return;
  s->closing = 1;
  if (s->reading && s->kind != CORIO_STREAM_FILE) uv_read_stop(&s->u.stream);
  s->reading = 0;
  if (abort) {
    set_linger0(s);
  } else if (s->queued > 0 && !s->shut && s->kind != CORIO_STREAM_FILE) {
    /* Graceful: the FIN goes after the queued data; the handle closes in shutdown_cb. */
    s->shut = 1;
    if (start_shutdown(s, shutdown_cb) == 0) return; /* else: close now, dropping the queue */
  } else if (s->queued > 0 && s->shut) {
    return; /* a close_write is pending: its callback closes */
  }
  really_close(s);
}

void corio__stream_set_limit(corio_stream *s, size_t limit) {
  s->limit = limit == 0 ? 1 : limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit;
}

corio_stream *corio__stream_check(lua_State *L, int idx, const char *op) {
  corio_stream *s = (corio_stream *)corio__box_check(L, idx, CORIO_STREAM, op);
  if (s->closing) luaL_error(L, "%s: the %s is closed", op, CORIO_STREAM);
  return s;
}

static const char *sname(const corio_stream *s) { /* the name in messages; s may be NULL */
  return s ? corio__stream_name(s) : DEFAULT_NAME;
}

static corio_stream *tostream(lua_State *L, int idx) {
  corio_box *b = luaL_checkudata(L, idx, CORIO_STREAM);
  return (corio_stream *)b->h;
}

/* ---- the input buffer ----------------------------------------------------------------------
 * A stream reads straight into its buffer, grown to SCRATCH free bytes (as libuv suggests),
 * and frees the buffer once a reader has emptied it: an idle connection holds none. After a
 * small read (a chatty connection: a request, a line, a child's short output) the next read
 * goes into the thread's scratch block instead and only its bytes are kept, in a buffer of
 * their size: no 64 KiB malloc and free per message, which made glibc grow and trim its heap
 * (brk) twice per message. A large read switches the stream back to reading in place, which a
 * bulk transfer needs: a block kept and reused was slower there (measured: the reader falls
 * behind, and the socket's backlog is copied out of cache). */

#define SMALL_READ 512

static void drop_buffer(corio_stream *s) {
  free(s->buf);
  s->buf = NULL;
  s->off = s->cap = 0;
}

/* Room for n more bytes after the buffered ones; 0 or UV_ENOBUFS. */
static int reserve(corio_stream *s, size_t n) {
  if (s->cap - s->off - s->len >= n) return 0;
  if (s->off > 0 && s->cap - s->len >= n) {
    memmove(s->buf, s->buf + s->off, s->len);
    s->off = 0;
    return 0;
  }
  size_t cap = s->len == 0 && n < SCRATCH ? n : s->cap ? s->cap : 256; /* exact for kept bytes */
  while (cap < s->len + n) cap *= 2;
  char *p = malloc(cap);
  if (!p) return UV_ENOBUFS;
  if (s->len) memcpy(p, s->buf + s->off, s->len);
  free(s->buf);
  s->buf = p;
  s->cap = cap;
  s->off = 0;
  return 0;
}

static void start_reading(corio_stream *s);

/* Take n buffered bytes (pushed when `push`); frees the buffer once empty (an idle connection
 * then costs no buffer) and resumes a paused reader. */
static void consume(lua_State *L, corio_stream *s, size_t n, size_t push) {
  if (push) lua_pushlstring(L, s->buf + s->off, push);
  s->off += n;
  s->len -= n;
  s->scan = 0;
  if (s->len == 0) drop_buffer(s);
  if (s->len < 2 * (size_t)s->limit && !s->reading && !s->rerr && (s->rd.task || s->len > 0))
    start_reading(s);
}

static int want_more(const corio_stream *s) {
  size_t full = 2 * (size_t)s->limit;
  if (s->need > full) full = s->need;
  return s->len < full;
}

static void on_input(corio_stream *s) {
  if (s->rd.task && (s->rerr || s->len >= s->need)) corio__waiter_wake(s->rt, &s->rd, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  corio_stream *s = container_of(h, corio_stream, u.handle);
  (void)suggested;
  /* Read straight into the stream's buffer (grown to 64 KiB free); after a small read, or if
   * that fails, into the scratch block, whose bytes read_cb copies into a buffer of their size.
   * read_cb frees an empty buffer, so an idle connection holds none. */
  if ((s->len > 0 || !s->chatty) && reserve(s, SCRATCH) == 0)
    *buf = uv_buf_init(s->buf + s->off + s->len, (unsigned)(s->cap - s->off - s->len));
  else
    *buf = uv_buf_init(scratch, SCRATCH);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  corio_stream *s = container_of(st, corio_stream, u.stream);
  if (nread > 0) {
    s->chatty = nread <= SMALL_READ;
    if (buf->base == scratch) {
      if (reserve(s, (size_t)nread) != 0) {
        nread = UV_ENOBUFS;
      } else {
        memcpy(s->buf + s->off + s->len, scratch, (size_t)nread);
        s->len += (size_t)nread;
      }
    } else {
      s->len += (size_t)nread;
    }
  }
  if (s->len == 0 && s->buf) drop_buffer(s); /* nothing came (EAGAIN, the end, an error) */
  if (nread < 0) s->rerr = (int16_t)nread;
  if (nread < 0 || !want_more(s)) {
    uv_read_stop(st);
    s->reading = 0;
  }
  if (nread != 0) on_input(s);
}

static void fs_read_cb(uv_fs_t *req) {
  corio_stream *s = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  s->fs_busy = 0;
  s->reading = 0;
  if (s->closing || s->base.closing || !s->base.box) {
    free(req);
    s->u.file.fs = NULL;
    corio__box_close(&s->base);
    return;
  }
  if (n > 0) s->len += (size_t)n;
  else s->rerr = (int16_t)(n == 0 ? UV_EOF : n);
  on_input(s);
  if (!s->rerr && want_more(s) && (s->rd.task || 0)) start_reading(s);
}

static void start_reading(corio_stream *s) {
  if (s->reading || s->rerr || s->closing) return;
  if (s->kind == CORIO_STREAM_FILE) {
    if (!s->u.file.fs && !(s->u.file.fs = malloc(sizeof *s->u.file.fs))) {
      s->rerr = UV_ENOMEM;
      return;
    }
    int r = reserve(s, SCRATCH);
    if (r) {
      s->rerr = (int16_t)r;
      return;
    }
    uv_buf_t b = uv_buf_init(s->buf + s->off + s->len, (unsigned)(s->cap - s->off - s->len));
    s->u.file.fs->data = s;
    r = uv_fs_read(s->u.handle.loop, s->u.file.fs, s->u.file.fd, &b, 1, -1, fs_read_cb);
    if (r < 0) {
      s->rerr = (int16_t)r;
      return;
    }
    s->fs_busy = 1;
    s->reading = 1;
    return;
  }
  int r = uv_read_start(&s->u.stream, alloc_cb, read_cb);
  if (r < 0) s->rerr = (int16_t)r;
  else s->reading = 1;
}

/* ---- reads ---------------------------------------------------------------------------------
 * Every read is one C function over the buffer (try_*): it returns its results, or -1 when it
 * needs more input, in which case it waits on the read slot and the continuation tries again.
 * Lua stack during a read: 1 stream, 2.. the read's arguments. */

enum { OP_READ, OP_EXACTLY, OP_UNTIL, OP_LINE };
static const char *const OP_NAMES[] = {"read", "read_exactly", "read_until", "read_line"};

static int fail_code(lua_State *L, const char *op, const char *target, const char *code,
                     const char *msg) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", op, target, msg);
  lua_pushstring(L, code);
  return 3;
}

/* The read side ended with nothing buffered that the op can return. */
static int ended(lua_State *L, corio_stream *s, int op) {
  if (s->rerr == UV_EOF) {
    lua_pushnil(L);
    return 1;
  }
  return corio__fail(L, OP_NAMES[op], sname(s), s->rerr);
}

static size_t find(const corio_stream *s, const char *sep, size_t seplen, size_t from) {
  const char *p = s->buf + s->off;
  if (s->len < seplen) return (size_t)-1;
  for (size_t i = from; i + seplen <= s->len;) {
    const char *q = memchr(p + i, sep[0], s->len - seplen + 1 - i);
    if (!q) return (size_t)-1;
    i = (size_t)(q - p);
    if (memcmp(q, sep, seplen) == 0) return i;
    i++;
  }
  return (size_t)-1;
}

static int try_read(lua_State *L, corio_stream *s, int op) {
  s->need = 1;
  switch (op) {
    case OP_READ: {
      size_t max = (size_t)lua_tointeger(L, 2);
      if (s->len > 0) {
        size_t n = s->len < max ? s->len : max;
        consume(L, s, n, n);
        return 1;
      }
      return s->rerr ? ended(L, s, op) : -1;
    }
    case OP_EXACTLY: {
      size_t n = (size_t)lua_tointeger(L, 2);
      if (s->len >= n) {
        consume(L, s, n, n);
        return 1;
      }
      if (s->rerr) {
        if (s->len == 0 && s->rerr == UV_EOF) return ended(L, s, op);
        if (s->rerr != UV_EOF) return ended(L, s, op);
        lua_pushfstring(L, "end of stream after %I of %I bytes (they stay buffered)",
                        (lua_Integer)s->len, (lua_Integer)n);
        return fail_code(L, "read_exactly", sname(s), "EOF", lua_tostring(L, -1));
      }
      s->need = n;
      return -1;
    }
    default: { /* OP_UNTIL, OP_LINE */
      size_t seplen;
      const char *sep = op == OP_LINE ? "\n" : lua_tolstring(L, 2, &seplen);
      if (op == OP_LINE) seplen = 1;
      size_t max = op == OP_LINE ? s->limit : (size_t)lua_tointeger(L, 3);
      size_t from = s->scan > seplen ? s->scan - seplen + 1 : 0;
      size_t at = find(s, sep, seplen, from);
      if (at != (size_t)-1 && at + seplen <= max) {
        size_t n = at + seplen, keep = n;
        if (op == OP_LINE) {
          keep = at;
          if (keep > 0 && s->buf[s->off + keep - 1] == '\r') keep--;
        }
        consume(L, s, n, keep);
        if (op == OP_LINE && keep == 0) lua_pushliteral(L, "");
        return 1;
      }
      if (at != (size_t)-1 || s->len >= max) {
        lua_pushfstring(L, "separator not found within the limit of %I bytes (the data stays "
                        "buffered)", (lua_Integer)max);
        return fail_code(L, OP_NAMES[op], sname(s), "ELIMIT", lua_tostring(L, -1));
      }
      s->scan = s->len > UINT32_MAX ? UINT32_MAX : (uint32_t)s->len;
      if (s->rerr) {
        if (s->len == 0 || s->rerr != UV_EOF) return ended(L, s, op);
        if (op == OP_LINE) { /* the last line has no newline: return it as it is */
          consume(L, s, s->len, s->len);
          return 1;
        }
        lua_pushfstring(L, "end of stream before the separator (%I bytes stay buffered)",
                        (lua_Integer)s->len);
        return fail_code(L, "read_until", sname(s), "EOF", lua_tostring(L, -1));
      }
      return -1;
    }
  }
}

static void read_cancel(lua_State *L, corio_waiter *w) {
  (void)L;
  corio_stream *s = container_of(w, corio_stream, rd);
  s->need = 0;
}

static int read_k(lua_State *L, int status, lua_KContext ctx);

static int read_wait(lua_State *L, corio_stream *s, int op) {
  corio__check_suspend(L, OP_NAMES[op]);
  start_reading(s);
  if (s->rerr && !s->reading) { /* starting failed: report it now */
    int r = try_read(L, s, op);
    if (r >= 0) return r;
  }
  s->rd.on_cancel = read_cancel;
  return corio__waiter_await(L, &s->rd, OP_NAMES[op], read_k, op);
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  int op = (int)ctx;
  corio_stream *s = tostream(L, 1);
  (void)status;
  if (!s || s->closing) return corio__fail(L, OP_NAMES[op], sname(s), UV_ECANCELED);
  lua_settop(L, op == OP_UNTIL ? 3 : 2);
  if (s->rd.status < 0) return corio__fail(L, OP_NAMES[op], sname(s), s->rd.status);
  int r = try_read(L, s, op);
  if (r >= 0) return r;
  return read_wait(L, s, op);
}

static corio_stream *check_reader(lua_State *L, const char *op) {
  corio_stream *s = corio__stream_check(L, 1, op);
  if (corio__waiter_busy(&s->rd))
    luaL_error(L, "%s %s: busy: another task is reading this stream", op, sname(s));
  return s;
}

static int do_read(lua_State *L, corio_stream *s, int op) {
  int r = try_read(L, s, op);
  if (r >= 0) return r;
  return read_wait(L, s, op);
}

/* s:read([max]) -> data (1..max bytes, default 65536) | nil at end of stream | nil, msg, code
 * [suspends until something has arrived] */
static int stream_read(lua_State *L) {
  corio_stream *s = check_reader(L, "read");
  lua_Integer max = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, max > 0, 2, "max must be positive");
  lua_settop(L, 1);
  lua_pushinteger(L, max);
  return do_read(L, s, OP_READ);
}

/* s:read_exactly(n) -> data (n bytes) | nil at end of stream (nothing buffered)
 *                    | nil, msg, "EOF" when it ended part way (the bytes stay buffered)
 *                    | nil, msg, code  [suspends] */
static int stream_read_exactly(lua_State *L) {
  corio_stream *s = check_reader(L, "read_exactly");
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "n must not be negative");
  lua_settop(L, 2);
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  return do_read(L, s, OP_EXACTLY);
}

/* s:read_until(separator [, max]) -> data ending with separator | nil at end of stream
 *   | nil, msg, "ELIMIT" (not found within max bytes, default the stream's limit; the data
 *     stays buffered) | nil, msg, "EOF" (ended before a separator) | nil, msg, code  [suspends] */
static int stream_read_until(lua_State *L) {
  corio_stream *s = check_reader(L, "read_until");
  size_t seplen;
  luaL_checklstring(L, 2, &seplen);
  luaL_argcheck(L, seplen > 0, 2, "empty separator");
  lua_Integer max = luaL_optinteger(L, 3, (lua_Integer)s->limit);
  luaL_argcheck(L, max > 0, 3, "max must be positive");
  lua_settop(L, 2);
  lua_pushinteger(L, max);
  return do_read(L, s, OP_UNTIL);
}

/* s:read_line() -> line without its "\n" or "\r\n" (the last one may have neither)
 *   | nil at end of stream | nil, msg, "ELIMIT" (longer than the limit; stays buffered)
 *   | nil, msg, code  [suspends] */
static int stream_read_line(lua_State *L) {
  corio_stream *s = check_reader(L, "read_line");
  lua_settop(L, 1);
  lua_pushnil(L);
  return do_read(L, s, OP_LINE);
}

/* ---- writes -------------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  corio_stream *s = req->data;
  s->queued -= w->len;
  free(w);
  if (status < 0 && !s->werr) s->werr = (int16_t)status;
  if (s->wr.task && (s->queued <= (s->draining ? 0 : DEFAULT_HIGH / 2) || s->werr))
    corio__waiter_wake(s->rt, &s->wr, s->werr);
}

/* Queue data (after what is queued already); 0 or a libuv error. */
static int queue_write(corio_stream *s, const char *data, size_t n) {
  if (s->kind == CORIO_STREAM_FILE) {
    /* A regular file never blocks for long: write it synchronously. */
    while (n > 0) {
      uv_buf_t b = uv_buf_init((char *)data, (unsigned)(n > (1u << 30) ? 1u << 30 : n));
      uv_fs_t req;
      int r = uv_fs_write(NULL, &req, s->u.file.fd, &b, 1, -1, NULL);
      uv_fs_req_cleanup(&req);
      if (r < 0) return r;
      data += r;
      n -= (size_t)r;
    }
    return 0;
  }
  if (s->queued == 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int r = uv_try_write(&s->u.stream, &b, 1);
    if (r >= 0) {
      data += r;
      n -= (size_t)r;
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      return r;
    }
    if (n == 0) return 0;
  }
  wreq *w = malloc(sizeof *w + n);
  if (!w) return UV_ENOMEM;
  memcpy(w->data, data, n);
  w->len = n;
  w->req.data = s;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int r = uv_write(&w->req, &s->u.stream, &b, 1, write_cb);
  if (r < 0) {
    free(w);
    return r;
  }
  s->queued += n;
  return 0;
}

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  corio_stream *s = tostream(L, 1);
  (void)status;
  if (!s || s->closing) return corio__fail(L, (const char *)ctx, sname(s), UV_ECANCELED);
  if (s->wr.status < 0) return corio__fail(L, (const char *)ctx, sname(s), s->wr.status);
  lua_pushboolean(L, 1);
  return 1;
}

static corio_stream *check_writer(lua_State *L, const char *op) {
  corio_stream *s = corio__stream_check(L, 1, op);
  if (corio__waiter_busy(&s->wr))
    luaL_error(L, "%s %s: busy: another task is writing to this stream", op, sname(s));
  if (s->shut) luaL_error(L, "%s %s: the stream's write side is closed", op, sname(s));
  return s;
}

/* s:write(data) -> true | nil, msg, code
 * Returns at once while less than the high-water mark (64 KiB) is queued; otherwise suspends
 * until the peer has taken enough. A cancelled write may have sent part of its data. */
static int stream_write(lua_State *L) {
  corio_stream *s = check_writer(L, "write");
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (s->werr) return corio__fail(L, "write", sname(s), s->werr);
  /* Check before anything is queued: raising after would leave the data half sent. */
  if (s->queued + n > DEFAULT_HIGH) corio__check_suspend(L, "write");
  int r = n ? queue_write(s, data, n) : 0;
  if (r < 0) {
    s->werr = (int16_t)r;
    return corio__fail(L, "write", sname(s), r);
  }
  if (s->queued <= DEFAULT_HIGH) {
    lua_pushboolean(L, 1);
    return 1;
  }
  s->draining = 0;
  lua_settop(L, 1);
  return corio__waiter_await(L, &s->wr, "write", write_k, (lua_KContext) "write");
}

/* s:drain() -> true | nil, msg, code  [suspends until every queued byte went to the OS] */
static int stream_drain(lua_State *L) {
  corio_stream *s = corio__stream_check(L, 1, "drain");
  if (corio__waiter_busy(&s->wr))
    return luaL_error(L, "drain %s: busy: another task is writing to this stream", sname(s));
  if (s->werr) return corio__fail(L, "drain", sname(s), s->werr);
  if (s->queued == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  corio__check_suspend(L, "drain");
  s->draining = 1;
  lua_settop(L, 1);
  return corio__waiter_await(L, &s->wr, "drain", write_k, (lua_KContext) "drain");
}

static void half_close_cb(uv_shutdown_t *req, int status) {
  shutdown_cb(req, status);
}

/* s:close_write() -> true | nil, msg, code: end the writing side (TCP FIN) after the queued
 * data; reading goes on (a half-close). */
static int stream_close_write(lua_State *L) {
  corio_stream *s = check_writer(L, "close_write");
  s->shut = 1;
  if (s->kind == CORIO_STREAM_FILE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  int r = start_shutdown(s, half_close_cb);
  if (r < 0) return corio__fail(L, "close_write", sname(s), r);
  lua_pushboolean(L, 1);
  return 1;
}

/* s:close(): graceful (queued data is still sent, then the connection closes); idempotent.
 * A task waiting on the stream gets nil, msg, "ECANCELED". */
static int stream_close(lua_State *L) {
  corio_stream *s = tostream(L, 1);
  corio__stream_close(s, 0);
  return 0;
}

/* s:abort(): close now, dropping queued data; a TCP peer sees a reset. */
static int stream_abort(lua_State *L) {
  corio_stream *s = tostream(L, 1);
  corio__stream_close(s, 1);
  return 0;
}

/* __gc: a stream nobody can reach any more is aborted (it cannot be flushed: no task will
 * ever learn of an error). */
static int stream_gc(lua_State *L) {
  corio_box *b = lua_touserdata(L, 1);
  corio_stream *s = (corio_stream *)b->h;
  if (!s) return 0;
  s->base.box = NULL;
  b->h = NULL;
  corio__stream_close(s, 1);
  return 0;
}

/* ---- options and names --------------------------------------------------------------------- */

/* s:_set_limit(n): read_until's default limit (net.lua passes connect's and serve's option). */
static int stream_set_limit(lua_State *L) {
  corio_stream *s = corio__stream_check(L, 1, "set_limit");
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n > 0, 2, "limit must be positive");
  corio__stream_set_limit(s, (size_t)n);
  return 0;
}

/* s.peer, s.sockname ("host:port", "[v6]:port" or a socket path; nil when unknown), s.limit,
 * s.closed; then the methods. */
static int stream_index(lua_State *L) {
  lua_pushvalue(L, 2); /* methods first: s:read and s:write are the hot path, fields not */
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  corio_box *b = luaL_checkudata(L, 1, CORIO_STREAM);
  corio_stream *s = (corio_stream *)b->h;
  const char *k = lua_tostring(L, 2);
  if (k && s && !s->closing) {
    if (strcmp(k, "peer") == 0) return corio__stream_push_name(L, s, 1), 1;
    if (strcmp(k, "sockname") == 0) return corio__stream_push_name(L, s, 0), 1;
    if (strcmp(k, "limit") == 0) return lua_pushinteger(L, (lua_Integer)s->limit), 1;
    if (strcmp(k, "name") == 0) return lua_pushstring(L, sname(s)), 1;
  }
  if (k && strcmp(k, "closed") == 0) return lua_pushboolean(L, !s || s->closing), 1;
  return 1; /* the nil from the method table */
}

static int stream_tostring(lua_State *L) {
  corio_stream *s = tostream(L, 1);
  if (s && !s->closing) lua_pushfstring(L, "corio.net.Stream (%s)", sname(s));
  else lua_pushliteral(L, "corio.net.Stream (closed)");
  return 1;
}

/* ---- registration -------------------------------------------------------------------------- */

static const luaL_Reg stream_methods[] = {
  {"read", stream_read},
  {"read_exactly", stream_read_exactly},
  {"read_until", stream_read_until},
  {"read_line", stream_read_line},
  {"write", stream_write},
  {"drain", stream_drain},
  {"close_write", stream_close_write},
  {"close", stream_close},
  {"abort", stream_abort},
  {"set_nodelay", corio__stream_set_nodelay},
  {"set_keepalive", corio__stream_set_keepalive},
  {"_set_limit", stream_set_limit},
  {NULL, NULL}
};

void corio__stream_class(lua_State *L) {
  if (!luaL_newmetatable(L, CORIO_STREAM)) {
    lua_pop(L, 1);
    return;
  }
  lua_newtable(L);
  luaL_setfuncs(L, stream_methods, 0);
  lua_pushcclosure(L, stream_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, stream_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, stream_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, stream_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
