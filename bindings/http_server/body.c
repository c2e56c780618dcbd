/* A request body handed to its handler while it arrives: read in chunks, read whole, or saved
 * to a file through libuv's threadpool, with max_body enforced as bytes come and the socket
 * paused while max_body_buffer bytes wait unread (bounded memory per connection).
 * Lua functions of "corio._http_server": body_read, body_all, body_save. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "http_server.h"

/* A task's wait for body bytes: a userdata on its stack. c is cleared when the request ends
 * first; while c is set, the connection record is alive (its handler task owns it). */
struct body_slot {
  corio_waiter w;
  conn *c;
};

/* A save in progress, shared by the saving task and the write libuv runs on its threadpool
 * (malloc'd: a cancelled task leaves it to the write's callback). Each write takes the
 * connection's unread body by swapping buffers, without a copy, and the connection reads into
 * the other buffer meanwhile: two buffers of at most the high-water mark plus one read. */
struct body_sink {
  uv_fs_t req;
  corio_waiter w;
  conn *c; /* NULL once the request is over */
  corio_runtime *rt;
  uv_file fd;
  char *buf; /* the bytes being written: buf[done..len) */
  size_t len, cap, done;
  int64_t off; /* where the next write goes in the file */
  uint64_t written;
  int err; /* a write failed: its libuv code */
  /* a write is in flight; the task was woken (nothing starts after that); the task is gone
   * and the write's callback frees the record */
  unsigned writing : 1, finished : 1, orphan : 1;
  char path[]; /* removed when the save fails */
};

static size_t unread(conn *c) {
  return c->body_len - c->body_off;
}

/* The body is over for a reader that wants more: it ended, failed, or the client left. */
static int body_over(conn *c) {
  return !c->body_open || c->body_err || c->state == ST_CLOSED || c->state == ST_LINGER;
}

/* Push false, status, max_body if the body cannot be read to its end (400, 408, 413, or
 * BODY_GONE: the connection ended first); -1 if it can. */
static int push_failure(lua_State *L, conn *c) {
  int status = c->body_err;
  if (!status && (c->state == ST_CLOSED || c->state == ST_LINGER)) status = BODY_GONE;
  if (!status) return -1;
  lua_pushboolean(L, 0);
  lua_pushinteger(L, status);
  lua_pushinteger(L, (lua_Integer)c->srv->max_body);
  return 3;
}

/* The request ended before the reader got what it waited for. */
static int push_over(lua_State *L) {
  lua_pushboolean(L, 0);
  lua_pushinteger(L, 0);
  return 2;
}

/* Up to max unread bytes (max 0: all of them), nil at the end of the body, the failure, or
 * -1 when the reader must wait. */
static int read_result(lua_State *L, conn *c, size_t max) {
  size_t n = unread(c);
  if (n) {
    if (max && max < n) n = max;
    lua_pushlstring(L, c->body + c->body_off, n);
    c->body_off += n;
    if (c->body_off == c->body_len) c->body_off = c->body_len = 0;
    if (unread(c) <= c->srv->body_hwm / 2) corio__hs_body_resume(c);
    return 1;
  }
  if (!c->body_open) {
    lua_pushnil(L);
    return 1;
  }
  return push_failure(L, c);
}

/* The whole unread body once it has ended, the failure, or -1 when the reader must wait. */
static int all_result(lua_State *L, conn *c) {
  if (c->body_open) return push_failure(L, c);
  lua_pushlstring(L, c->body ? c->body + c->body_off : "", unread(c));
  c->body_off = c->body_len = 0;
  return 1;
}

/* ---- saving to a file -------------------------------------------------------------------- */

static void save_write_cb(uv_fs_t *req);

static void sink_free(body_sink *k, int remove) {
  uv_fs_t req;
  uv_loop_t *loop = corio__loop(k->rt);
  uv_fs_close(loop, &req, k->fd, NULL);
  uv_fs_req_cleanup(&req);
  if (remove) {
    uv_fs_unlink(loop, &req, k->path, NULL);
    uv_fs_req_cleanup(&req);
  }
  free(k->buf);
  free(k);
}

static void sink_finish(body_sink *k) {
  k->finished = 1;
  corio__waiter_wake(k->rt, &k->w, 0);
}

static int write_next(body_sink *k) {
  uv_buf_t b = uv_buf_init(k->buf + k->done, (unsigned)(k->len - k->done));
  int r = uv_fs_write(corio__loop(k->rt), &k->req, k->fd, &b, 1, k->off, save_write_cb);
  if (r < 0) {
    k->err = r;
    return r;
  }
  k->writing = 1;
  return 0;
}

/* Give the file what is unread (the buffers change hands), or end the save when the body has
 * ended, failed, or a write failed. While the body arrives, a write waits for half the
 * high-water mark: each write costs two thread switches (to a threadpool thread and back),
 * which cost more than the copy of a small write on a busy or single CPU. */
static void pump(conn *c) {
  body_sink *k = c->sink;
  if (k->writing || k->finished) return;
  size_t n = unread(c);
  if (n && n < c->srv->body_hwm / 2 && c->body_open && !c->body_err &&
      c->state != ST_CLOSED && c->state != ST_LINGER)
    return;
  if (!k->err && !c->body_err && n) {
    char *b = k->buf;
    size_t cap = k->cap;
    k->buf = c->body;
    k->cap = c->body_cap;
    k->done = c->body_off;
    k->len = c->body_len;
    c->body = b;
    c->body_cap = cap;
    c->body_len = c->body_off = 0;
    if (write_next(k) == 0) {
      corio__hs_body_resume(c);
      return;
    }
  }
  if (k->err || body_over(c)) sink_finish(k);
}

static void save_write_cb(uv_fs_t *req) {
  body_sink *k = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  k->writing = 0;
  if (k->orphan) { /* the saving task is gone: the save failed */
    sink_free(k, 1);
    return;
  }
  if (n < 0) {
    k->err = (int)n;
  } else if (n == 0) {
    k->err = UV_EIO;
  } else {
    k->done += (size_t)n;
    k->off += n;
    k->written += (uint64_t)n;
    if (k->done < k->len && write_next(k) == 0) return;
  }
  if (k->c) pump(k->c);
  else if (!k->finished) sink_finish(k);
}

/* ... and saving it: "request body to /tmp/upload (client 127.0.0.1:51234)" */
static void save_describe(lua_State *L, corio_waiter *w, const char *op) {
  body_sink *k = container_of(w, body_sink, w);
  lua_pushfstring(L, "%s to %s", op, k->path);
  if (k->c) {
    corio__hs_push_op_at(L, &k->c->tcp, 1, lua_tostring(L, -1));
    lua_remove(L, -2);
  }
}

static void save_cancel(lua_State *L, corio_waiter *w) {
  body_sink *k = container_of(w, body_sink, w);
  (void)L;
  if (k->c) k->c->sink = NULL;
  k->c = NULL;
  if (k->writing) k->orphan = 1;
  else sink_free(k, 1);
}

static int save_k(lua_State *L, int status, lua_KContext ctx) {
  body_sink *k = (body_sink *)ctx;
  conn *c = k->c;
  (void)status;
  if (c) c->sink = NULL;
  int err = k->err, n;
  uint64_t written = k->written;
  if (err) {
    n = -1;
  } else if (!c) {
    n = push_over(L);
  } else if (!c->body_open) {
    lua_pushinteger(L, (lua_Integer)written);
    n = 1;
  } else {
    n = push_failure(L, c);
    if (n < 0) n = push_over(L); /* not reached: a save ends with its body */
  }
  int ok = n == 1;
  if (k->writing) k->orphan = 1; /* not reached: nothing is written once finished */
  else sink_free(k, !ok);
  if (err) return corio__fail(L, "save", lua_tostring(L, 2), err);
  return n;
}

/* ---- the Lua functions ------------------------------------------------------------------- */

static conn *check_reader(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  conn *c = lua_touserdata(L, 1);
  if (!c->task) luaL_error(L, "request body: the request is over");
  if (c->reader || c->sink) luaL_error(L, "request body: another task is reading it");
  return c;
}

/* corio.ps's reason for a handler reading its body: "request body (client 127.0.0.1:51234)" */
static void read_describe(lua_State *L, corio_waiter *w, const char *op) {
  body_slot *r = container_of(w, body_slot, w);
  if (r->c)
    corio__hs_push_op_at(L, &r->c->tcp, 1, op);
  else
    lua_pushstring(L, op);
}

static void read_cancel(lua_State *L, corio_waiter *w) {
  body_slot *r = container_of(w, body_slot, w);
  (void)L;
  if (r->c) {
    r->c->reader = NULL;
    r->c->body_all = 0;
  }
  r->c = NULL;
}

/* ctx: the most bytes to read (0: all unread ones), or -1 for the whole body */
static int read_k(lua_State *L, int status, lua_KContext ctx) {
  body_slot *r = lua_touserdata(L, 3);
  conn *c = r->c;
  (void)status;
  if (!c) return push_over(L);
  c->reader = NULL;
  int n = ctx < 0 ? all_result(L, c) : read_result(L, c, (size_t)ctx);
  if (n >= 0) {
    c->body_all = 0;
    return n;
  }
  c->reader = r; /* woken before there was anything: wait on */
  return corio__waiter_await(L, &r->w, "request body", read_k, ctx);
}

static int wait_body(lua_State *L, conn *c, lua_KContext ctx) {
  corio__check_suspend(L, "request body");
  lua_settop(L, 2);
  body_slot *r = lua_newuserdatauv(L, sizeof *r, 0);
  *r = (body_slot){.w = {.on_cancel = read_cancel, .describe = read_describe}, .c = c};
  c->reader = r;
  if (ctx < 0) {
    c->body_all = 1; /* no high-water mark: body() holds it all anyway */
    corio__hs_body_resume(c);
  }
  return corio__waiter_await(L, &r->w, "request body", read_k, ctx);
}

/* _http_server.body_read(conn[, max]) -> data (at most max bytes; default: all that is
 *   buffered) | nil at the end of the body | false, status, max_body  [suspends]
 * status: 400 (bad chunked framing), 408 (body deadline), 413 (past max_body; the server
 * answered), BODY_GONE (the client left), or 0 (the request ended before the read did). */
static int l_body_read(lua_State *L) {
  conn *c = check_reader(L);
  lua_Integer max = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, max >= 0, 2, "must be a positive size");
  corio__hs_send_continue(c);
  int n = read_result(L, c, (size_t)max);
  if (n >= 0) return n;
  return wait_body(L, c, (lua_KContext)max);
}

/* _http_server.body_all(conn) -> the unread body, once it has all arrived
 *   | false, status, max_body  [suspends] */
static int l_body_all(lua_State *L) {
  conn *c = check_reader(L);
  corio__hs_send_continue(c);
  int n = all_result(L, c);
  if (n >= 0) return n;
  return wait_body(L, c, -1);
}

/* _http_server.body_save(conn, path) -> bytes written | nil, msg, code (the file) |
 *   false, status, max_body (the body, as body_read)  [suspends]
 * Creates or truncates path and writes the body to it as it arrives; on any failure (and on
 * cancellation) the file is removed. */
static int l_body_save(lua_State *L) {
  conn *c = check_reader(L);
  const char *path = luaL_checkstring(L, 2);
  corio_runtime *rt = corio__rt(L);
  corio__check_suspend(L, "request body");
  size_t pl = strlen(path);
  body_sink *k = malloc(sizeof *k + pl + 1);
  if (!k) return corio__nomem(L);
  uv_fs_t req;
  int fd = uv_fs_open(corio__loop(rt), &req, path, O_WRONLY | O_CREAT | O_TRUNC, 0666, NULL);
  uv_fs_req_cleanup(&req);
  if (fd < 0) {
    free(k);
    return corio__fail(L, "save", path, fd);
  }
  memset(k, 0, sizeof *k);
  k->req.data = k;
  k->w.on_cancel = save_cancel;
  k->w.describe = save_describe;
  k->c = c;
  k->rt = rt;
  k->fd = fd;
  memcpy(k->path, path, pl + 1);
  c->sink = k;
  lua_settop(L, 2);
  corio__hs_send_continue(c);
  pump(c);
  if (k->finished) return save_k(L, LUA_OK, (lua_KContext)k);
  return corio__waiter_await(L, &k->w, "request body", save_k, (lua_KContext)k);
}

/* ---- what the connection tells the body ------------------------------------------------- */

void corio__hs_body_progress(conn *c) {
  if (c->sink) pump(c);
  body_slot *r = c->reader;
  if (r && corio__waiter_busy(&r->w) && ((!c->body_all && unread(c)) || body_over(c)))
    corio__waiter_wake(c->srv->rt, &r->w, 0);
  if (!c->body_all && c->body_open && unread(c) >= c->srv->body_hwm) corio__hs_body_pause(c);
}

void corio__hs_body_fail(conn *c, int status) {
  if (!c->task) { /* a body drained after its answer: only the connection is left to end */
    corio__hs_conn_close(c);
    return;
  }
  if (!c->body_err) c->body_err = status > 0 ? status : BODY_GONE;
  if (status > 0 && !c->answered) corio__hs_send_error(c, status);
  else corio__hs_conn_close(c);
  corio__hs_body_progress(c);
}

void corio__hs_body_release(conn *c) {
  body_slot *r = c->reader;
  if (r) {
    c->reader = NULL;
    r->c = NULL;
    corio__waiter_wake(c->srv->rt, &r->w, 0);
  }
  body_sink *k = c->sink;
  if (k) {
    c->sink = NULL;
    k->c = NULL;
    if (!k->writing && !k->finished) sink_finish(k);
  }
  c->body_all = 0;
}

/* A body read in place saves the copy out of the server's read buffer and makes reads as
 * big as the room under the mark: the buffer is sized to the mark plus one read, the unread
 * bytes moved to its front. Not for body() (no mark) or while the rest is drained. */
int corio__hs_body_space(conn *c, uv_buf_t *buf) {
  if (c->body_all || c->draining || !c->body_open) return 0;
  size_t want = c->srv->body_hwm + READ_BUF;
  if (c->body_off) {
    memmove(c->body, c->body + c->body_off, unread(c));
    c->body_len -= c->body_off;
    c->body_off = 0;
  }
  if (c->body_cap < want) {
    char *p = realloc(c->body, want);
    if (!p) return 0;
    c->body = p;
    c->body_cap = want;
  }
  size_t room = c->body_cap - c->body_len;
  if (room < READ_BUF / 4) return 0;
  *buf = uv_buf_init(c->body + c->body_len, (unsigned)room);
  return 1;
}

void corio__hs_body_forget(conn *c) {
  if (c->reader) c->reader->c = NULL;
  if (c->sink) c->sink->c = NULL; /* its record goes with the process */
  c->reader = NULL;
  c->sink = NULL;
}

size_t corio__hs_body_held(conn *c) {
  body_sink *k = c->sink;
  return unread(c) + (k && k->writing ? k->len - k->done : 0);
}

const luaL_Reg corio__hs_body_funcs[] = {
  {"body_read", l_body_read},
  {"body_all", l_body_all},
  {"body_save", l_body_save},
  {NULL, NULL}
};
