/* Open files: fs.open(path, mode) -> corio.fs.File with read, write, seek, close (lines and
 * read("a"/"l") are scripts/corio/fs.lua, over _fill and _line). Reads and writes are
 * threadpool jobs on pread/pwrite at the file's own position, so a large file streams through
 * in chunks. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

#define CHUNK 65536

static fsfile *check_file(lua_State *L, const char *op) {
  fsfile *f = luaL_checkudata(L, 1, FSFILE);
  if (f->fd < 0 || f->close_pending) luaL_error(L, "%s: the file is closed", op);
  if (f->active && corio__waiter_busy(&f->active->w))
    luaL_error(L, "%s: another task is using the file", op);
  return f;
}

static void file_close_now(fsfile *f) {
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
}

void fs__file_done(fsreq *r) {
  fsfile *f = r->file;
  f->inflight--;
  if (f->active == r) f->active = NULL;
  if (r->is_write && r->result > 0 && r->off >= 0) f->pos = r->off + r->result;
  if (f->close_pending && f->inflight == 0) file_close_now(f);
}

/* ---- open -------------------------------------------------------------------------------- */

static int open_flags(const char *mode) {
  int plus = strchr(mode, '+') != NULL, excl = strchr(mode, 'x') != NULL;
  int fl;
  switch (mode[0]) {
    case 'r': fl = plus ? O_RDWR : O_RDONLY; break;
    case 'w': fl = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC; break;
    case 'a': fl = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND; break;
    default: return -1;
  }
  if (strspn(mode + 1, "+xb") != strlen(mode + 1)) return -1;
  return fl | (excl ? O_EXCL : 0) | O_CLOEXEC;
}

static int open_k(lua_State *L, int status, lua_KContext ctx) {
  fsreq *r = lua_touserdata(L, 3);
  (void)status;
  if (r->result < 0) return corio__fail(L, "open", lua_tostring(L, 1), (int)r->result);
  size_t n;
  const char *path = lua_tolstring(L, 1, &n);
  fsfile *f = lua_newuserdatauv(L, sizeof *f + n + 1, 0);
  memset(f, 0, sizeof *f);
  memcpy(f->path, path, n + 1);
  f->fd = -1;
  luaL_setmetatable(L, FSFILE);
  f->fd = r->fd; /* claimed: the request's __gc no longer closes it */
  r->fd = -1;
  f->append = (int)ctx;
  return 1;
}

/* fs.open(path[, mode = "r"]) -> File | nil, msg, code  [suspends]
 * Modes as io.open ("r", "w", "a", with "+"), plus "x": fail if the file exists. */
int fs__open_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "r");
  int flags = open_flags(mode);
  luaL_argcheck(L, flags != -1, 2, "invalid mode");
  lua_settop(L, 2);
  corio__check_suspend(L, "fs open");
  fsreq *r = fs__req_new(L, 0);
  r->started = 1;
  int rc = uv_fs_open(corio__loop(r->rt), &r->u.fs, path, flags, 0666, fs__cb);
  return fs__req_wait(L, r, rc, "open", path, open_k, (flags & O_APPEND) != 0);
}

/* ---- read and write: threadpool jobs on the file's descriptor ---------------------------- */

static void read_job(uv_work_t *req) {
  fsreq *r = container_of(req, fsreq, u.work);
  ssize_t n;
  do n = pread(r->file->fd, r->buf, r->cap, r->off);
  while (n < 0 && errno == EINTR);
  r->result = n < 0 ? -errno : n;
}

static void write_job(uv_work_t *req) {
  fsreq *r = container_of(req, fsreq, u.work);
  size_t done = 0;
  while (done < r->len) {
    ssize_t n = r->off < 0 ? write(r->file->fd, r->data + done, r->len - done)
                           : pwrite(r->file->fd, r->data + done, r->len - done,
                                    r->off + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r->result = -errno;
      return;
    }
    done += (size_t)n;
  }
  r->result = (ssize_t)done;
}

/* Start job `fn` on file f for the request on top of the stack (the file is at index 1). */
static int file_job(lua_State *L, fsfile *f, fsreq *r, uv_work_cb fn, const char *op,
                    lua_KFunction k, lua_KContext ctx) {
  int idx = lua_gettop(L);
  (void)ctx;
  r->is_work = 1;
  r->file = f;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the file outlives its pending operations */
  f->inflight++;
  f->active = r;
  int rc = uv_queue_work(corio__loop(r->rt), &r->u.work, fn, fs__after_job);
  return fs__req_wait(L, r, rc, op, f->path, k, idx);
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  fsfile *f = lua_touserdata(L, 1);
  fsreq *r = lua_touserdata(L, (int)ctx);
  (void)status;
  if (r->result < 0) return corio__fail(L, "read", f->path, (int)r->result);
  if (r->result == 0) {
    lua_pushnil(L);
    return 1;
  }
  f->pos = r->off + r->result;
  lua_pushlstring(L, r->buf, (size_t)r->result);
  return 1;
}

/* Take up to n bytes from the read-ahead buffer. */
static void take(lua_State *L, fsfile *f, size_t n) {
  if (n > f->rlen) n = f->rlen;
  lua_pushlstring(L, f->rbuf, n);
  memmove(f->rbuf, f->rbuf + n, f->rlen - n);
  f->rlen -= n;
  f->pos += (int64_t)n;
}

/* file:read([n = 65536]) -> up to n bytes | nil at the end | nil, msg, code  [suspends] */
static int file_read(lua_State *L) {
  fsfile *f = check_file(L, "read");
  lua_Integer n = luaL_optinteger(L, 2, CHUNK);
  luaL_argcheck(L, n > 0, 2, "count must be positive");
  if (f->rlen > 0) {
    take(L, f, (size_t)n);
    return 1;
  }
  lua_settop(L, 1);
  corio__check_suspend(L, "fs read");
  fsreq *r = fs__req_new(L, (size_t)n);
  r->off = f->pos;
  return file_job(L, f, r, read_job, "read", read_k, 0);
}

static int fill_k(lua_State *L, int status, lua_KContext ctx) {
  fsfile *f = lua_touserdata(L, 1);
  fsreq *r = lua_touserdata(L, (int)ctx);
  (void)status;
  if (r->result < 0) return corio__fail(L, "read", f->path, (int)r->result);
  /* a seek or write meanwhile makes this read stale: drop it, the caller reads again */
  if (r->result > 0 && r->off == f->pos + (int64_t)f->rlen) {
    size_t n = (size_t)r->result;
    if (f->rcap - f->rlen < n) {
      char *p = realloc(f->rbuf, f->rlen + n);
      if (!p) return corio__nomem(L);
      f->rbuf = p;
      f->rcap = f->rlen + n;
    }
    memcpy(f->rbuf + f->rlen, r->buf, n);
    f->rlen += n;
  }
  lua_pushboolean(L, r->result > 0);
  return 1;
}

/* file:_fill() -> true (more bytes buffered) | false (end of file) | nil, msg, code */
static int file_fill(lua_State *L) {
  fsfile *f = check_file(L, "read");
  lua_settop(L, 1);
  corio__check_suspend(L, "fs read");
  fsreq *r = fs__req_new(L, CHUNK);
  r->off = f->pos + (int64_t)f->rlen;
  return file_job(L, f, r, read_job, "read", fill_k, 0);
}

/* file:_line(keep_newline, at_eof) -> the next buffered line | nil (fill first)
 * At the end of the file, the rest of the buffer is the last line. */
static int file_line(lua_State *L) {
  fsfile *f = check_file(L, "read");
  int keep = lua_toboolean(L, 2), eof = lua_toboolean(L, 3);
  char *nl = f->rlen ? memchr(f->rbuf, '\n', f->rlen) : NULL;
  if (nl) {
    size_t n = (size_t)(nl - f->rbuf);
    take(L, f, n + 1);
    if (!keep) {
      lua_pushlstring(L, lua_tostring(L, -1), n);
      lua_remove(L, -2);
    }
    return 1;
  }
  if (eof && f->rlen > 0) {
    take(L, f, f->rlen);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  fsfile *f = lua_touserdata(L, 1);
  fsreq *r = lua_touserdata(L, (int)ctx);
  (void)status;
  if (r->result < 0) return corio__fail(L, "write", f->path, (int)r->result);
  lua_pushboolean(L, 1);
  return 1;
}

/* file:write(data) -> true | nil, msg, code  [suspends until all of it is written] */
static int file_write(lua_State *L) {
  fsfile *f = check_file(L, "write");
  size_t n;
  luaL_checklstring(L, 2, &n);
  lua_settop(L, 2);
  corio__check_suspend(L, "fs write");
  f->rlen = 0; /* what was read ahead is overwritten or skipped */
  fsreq *r = fs__req_new(L, 0);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  r->data = lua_tolstring(L, 2, &r->len);
  r->off = f->append ? -1 : f->pos;
  r->is_write = 1;
  return file_job(L, f, r, write_job, "write", write_k, 0);
}

/* file:seek([whence = "cur"[, offset = 0]]) -> position from the start | nil, msg, code
 * As io's seek. Does not suspend: it only moves the file's own position ("end" asks fstat). */
static int file_seek(lua_State *L) {
  static const char *const names[] = {"set", "cur", "end", NULL};
  fsfile *f = check_file(L, "seek");
  int whence = luaL_checkoption(L, 2, "cur", names);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  int64_t base = f->pos;
  if (whence == 0) base = 0;
  if (whence == 2) {
    struct stat st;
    if (fstat(f->fd, &st) < 0) return corio__fail(L, "seek", f->path, -errno);
    base = st.st_size;
  }
  if (base + off < 0) return corio__fail(L, "seek", f->path, UV_EINVAL);
  if (whence != 1 || off != 0) f->rlen = 0;
  f->pos = base + off;
  lua_pushinteger(L, f->pos);
  return 1;
}

/* file:close() -> true. Idempotent. A read or write still running (its task was cancelled)
 * keeps the descriptor until it ends. */
static int file_close(lua_State *L) {
  fsfile *f = luaL_checkudata(L, 1, FSFILE);
  if (f->inflight > 0) f->close_pending = 1; /* the last operation's callback closes it */
  else file_close_now(f);
  free(f->rbuf);
  f->rbuf = NULL;
  f->rlen = f->rcap = 0;
  lua_pushboolean(L, 1);
  return 1;
}

static int file_gc(lua_State *L) {
  fsfile *f = lua_touserdata(L, 1);
  file_close_now(f); /* no operation is pending: each one keeps its file alive */
  free(f->rbuf);
  f->rbuf = NULL;
  return 0;
}

static int file_tostring(lua_State *L) {
  fsfile *f = luaL_checkudata(L, 1, FSFILE);
  int closed = f->fd < 0 || f->close_pending;
  lua_pushfstring(L, "corio.fs.File (%s%s)", f->path, closed ? ", closed" : "");
  return 1;
}

static const luaL_Reg file_methods[] = {
  {"read", file_read},
  {"_fill", file_fill},
  {"_line", file_line},
  {"write", file_write},
  {"seek", file_seek},
  {"close", file_close},
  {NULL, NULL}
};

static const luaL_Reg file_meta[] = {
  {"__gc", file_gc},
  {"__close", file_close},
  {"__tostring", file_tostring},
  {NULL, NULL}
};

void fs__file_init(lua_State *L) {
  corio__class(L, FSFILE, file_methods, file_meta);
  lua_pop(L, 1);
}
