/* Files without blocking the loop: path operations on libuv's fs requests, and whole-file
 * reads and writes done as one threadpool job each (open, read or write, close: one round trip
 * instead of four). Lua module "corio._fs": stat, lstat, mkdir, rmdir, unlink, rename,
 * realpath, scandir, read_file, write_file, open, watch. Policy (mkdir -p, remove, iterators)
 * is scripts/corio/fs.lua. */
#define _GNU_SOURCE /* mkostemp: the temporary file is close-on-exec from the start */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

/* ---- the request ----------------------------------------------------------------------- */

static void req_cancel(lua_State *L, corio_waiter *w) {
  fsreq *r = container_of(w, fsreq, w);
  (void)L;
  uv_cancel(r->is_work ? (uv_req_t *)&r->u.work : (uv_req_t *)&r->u.fs);
}

/* corio.ps's reason: the operation and its path ("read_file /var/log/app.log", "read
 * /tmp/f.txt" for an open file's read). A uv_fs request keeps its own copy of the path; a
 * job's is pinned by a user value, an open file's is in its record. */
static void req_describe(lua_State *L, corio_waiter *w, const char *op) {
  fsreq *r = container_of(w, fsreq, w);
  const char *path = r->file ? r->file->path : r->is_work ? r->path : uv_fs_get_path(&r->u.fs);
  if (path)
    lua_pushfstring(L, "%s %s", op, path);
  else
    lua_pushstring(L, op);
}

fsreq *fs__req_new(lua_State *L, size_t extra) {
  fsreq *r = lua_newuserdatauv(L, sizeof *r + extra, 2);
  memset(r, 0, sizeof *r);
  r->rt = corio__rt(L);
  r->ref = LUA_NOREF;
  r->fd = -1;
  r->cap = extra;
  r->w.on_cancel = req_cancel;
  r->w.describe = req_describe;
  luaL_setmetatable(L, FSREQ);
  /* the loop's anchor: libuv (or a worker thread) may use the memory from now on */
  r->ref = corio__anchor(L, -1);
  return r;
}

int fs__req_wait(lua_State *L, fsreq *r, int rc, const char *op, const char *target,
                 lua_KFunction k, lua_KContext ctx) {
  if (rc < 0) {
    if (r->file) fs__file_done(r);
    corio__unanchor(L, r->ref);
    r->ref = LUA_NOREF;
    return corio__fail(L, op, target, rc);
  }
  return corio__waiter_await(L, &r->w, op, k, ctx);
}

/* The operation is over: record it, wake the task (if it still waits) and drop the loop's
 * anchor. A cancelled open's descriptor stays in r->fd for __gc to close. */
static void req_finish(fsreq *r, ssize_t result) {
  r->result = result;
  if (r->file) fs__file_done(r);
  corio__waiter_wake(r->rt, &r->w, 0);
  corio__unanchor(corio__L(r->rt), r->ref);
  r->ref = LUA_NOREF;
}

void fs__cb(uv_fs_t *req) {
  fsreq *r = container_of(req, fsreq, u.fs);
  if (req->fs_type == UV_FS_OPEN && req->result >= 0) r->fd = (uv_file)req->result;
  req_finish(r, req->result);
}

static int req_gc(lua_State *L) {
  fsreq *r = lua_touserdata(L, 1);
  if (r->started && !r->is_work) uv_fs_req_cleanup(&r->u.fs);
  r->started = 0;
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  free(r->mem);
  r->mem = NULL;
  return 0;
}

/* Start a uv_fs request: the common prologue of the path operations. */
static fsreq *start(lua_State *L, const char *op) {
  corio__check_suspend(L, op);
  fsreq *r = fs__req_new(L, 0);
  r->started = 1;
  return r;
}

static int ok_k(lua_State *L, int status, lua_KContext ctx) {
  fsreq *r = lua_touserdata(L, (int)ctx);
  (void)status;
  if (r->result < 0) {
    lua_getiuservalue(L, (int)ctx, 1); /* op name */
    return corio__fail(L, lua_tostring(L, -1), lua_tostring(L, 1), (int)r->result);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* The request's operation name, for the continuations' messages (user value 1). */
static void set_op(lua_State *L, const char *op) {
  lua_pushstring(L, op);
  lua_setiuservalue(L, -2, 1);
}

/* The shape of the libuv requests that take one path. */
typedef int (*path_fn)(uv_loop_t *, uv_fs_t *, const char *, uv_fs_cb);

/* fs.X(path): start fn on the path and suspend until k builds the answer. `what` names the
 * suspension ("fs stat"), `op` the failure ("stat /x: no such file or directory"). */
static int path_op(lua_State *L, const char *what, const char *op, path_fn fn, lua_KFunction k) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  fsreq *r = start(L, what);
  set_op(L, op);
  int rc = fn(corio__loop(r->rt), &r->u.fs, path, fs__cb);
  return fs__req_wait(L, r, rc, op, path, k, 2);
}

/* ---- stat -------------------------------------------------------------------------------- */

static const char *kind(uint64_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "link";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    default: return "unknown";
  }
}

static void set_num(lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 12);
  lua_pushstring(L, kind(s->st_mode));
  lua_setfield(L, -2, "type");
  set_int(L, "size", (lua_Integer)s->st_size);
  set_int(L, "mode", (lua_Integer)(s->st_mode & 07777));
  set_int(L, "ino", (lua_Integer)s->st_ino);
  set_int(L, "dev", (lua_Integer)s->st_dev);
  set_int(L, "nlink", (lua_Integer)s->st_nlink);
  set_int(L, "uid", (lua_Integer)s->st_uid);
  set_int(L, "gid", (lua_Integer)s->st_gid);
  set_num(L, "mtime", (lua_Number)s->st_mtim.tv_sec + s->st_mtim.tv_nsec / 1e9);
  set_num(L, "atime", (lua_Number)s->st_atim.tv_sec + s->st_atim.tv_nsec / 1e9);
  set_num(L, "ctime", (lua_Number)s->st_ctim.tv_sec + s->st_ctim.tv_nsec / 1e9);
}

static int stat_k(lua_State *L, int status, lua_KContext ctx) {
  fsreq *r = lua_touserdata(L, (int)ctx);
  (void)status;
  if (r->result < 0) {
    const char *op = r->u.fs.fs_type == UV_FS_LSTAT ? "lstat" : "stat";
    return corio__fail(L, op, lua_tostring(L, 1), (int)r->result);
  }
  push_stat(L, &r->u.fs.statbuf);
  return 1;
}

/* fs.stat(path) -> {type=, size=, mode=, mtime=, ...} | nil, msg, code  [suspends] */
static int fs_stat(lua_State *L) {
  return path_op(L, "fs stat", "stat", uv_fs_stat, stat_k);
}

/* fs.lstat(path) -> as stat, without following a final symbolic link  [suspends] */
static int fs_lstat(lua_State *L) {
  return path_op(L, "fs lstat", "lstat", uv_fs_lstat, stat_k);
}

/* ---- operations that answer true --------------------------------------------------------- */

/* fs._mkdir(path[, mode = 0777]) -> true | nil, msg, code  [suspends] */
static int fs_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int mode = (int)luaL_optinteger(L, 2, 0777);
  lua_settop(L, 1);
  fsreq *r = start(L, "fs mkdir");
  set_op(L, "mkdir");
  int rc = uv_fs_mkdir(corio__loop(r->rt), &r->u.fs, path, mode, fs__cb);
  return fs__req_wait(L, r, rc, "mkdir", path, ok_k, 2);
}

/* fs._rmdir(path) -> true | nil, msg, code  [suspends] */
static int fs_rmdir(lua_State *L) {
  return path_op(L, "fs remove", "remove", uv_fs_rmdir, ok_k);
}

/* fs._unlink(path) -> true | nil, msg, code  [suspends] */
static int fs_unlink(lua_State *L) {
  return path_op(L, "fs remove", "remove", uv_fs_unlink, ok_k);
}

/* fs.rename(from, to) -> true | nil, msg, code  [suspends] */
static int fs_rename(lua_State *L) {
  const char *from = luaL_checkstring(L, 1);
  const char *to = luaL_checkstring(L, 2);
  lua_settop(L, 2);
  lua_pushfstring(L, "%s -> %s", from, to);
  lua_replace(L, 1); /* the target ok_k names */
  fsreq *r = start(L, "fs rename");
  set_op(L, "rename");
  int rc = uv_fs_rename(corio__loop(r->rt), &r->u.fs, from, to, fs__cb);
  return fs__req_wait(L, r, rc, "rename", lua_tostring(L, 1), ok_k, 3);
}

/* ---- realpath and scandir ---------------------------------------------------------------- */

/* realpath's and mkdtemp's answer: the path libuv made */
static int path_k(lua_State *L, int status, lua_KContext ctx) {
  fsreq *r = lua_touserdata(L, (int)ctx);
  (void)status;
  if (r->result < 0) {
    lua_getiuservalue(L, (int)ctx, 1); /* op name */
    return corio__fail(L, lua_tostring(L, -1), lua_tostring(L, 1), (int)r->result);
  }
  lua_pushstring(L, r->u.fs.fs_type == UV_FS_MKDTEMP ? r->u.fs.path : r->u.fs.ptr);
  return 1;
}

/* fs.realpath(path) -> absolute path without links, . or .. | nil, msg, code  [suspends] */
static int fs_realpath(lua_State *L) {
  return path_op(L, "fs realpath", "realpath", uv_fs_realpath, path_k);
}

/* fs._mkdtemp(template ending in XXXXXX) -> the new directory (mode 0700) | nil, msg, code */
static int fs_mkdtemp(lua_State *L) {
  return path_op(L, "fs mkdtemp", "mkdtemp", uv_fs_mkdtemp, path_k);
}

static const char *dirent_kind(uv_dirent_type_t t) {
  switch (t) {
    case UV_DIRENT_FILE: return "file";
    case UV_DIRENT_DIR: return "directory";
    case UV_DIRENT_LINK: return "link";
    case UV_DIRENT_FIFO: return "fifo";
    case UV_DIRENT_SOCKET: return "socket";
    case UV_DIRENT_CHAR: return "char";
    case UV_DIRENT_BLOCK: return "block";
    default: return "unknown";
  }
}

static int scandir_k(lua_State *L, int status, lua_KContext ctx) {
  fsreq *r = lua_touserdata(L, (int)ctx);
  uv_dirent_t ent;
  (void)status;
  if (r->result < 0) return corio__fail(L, "scandir", lua_tostring(L, 1), (int)r->result);
  lua_createtable(L, (int)r->result, 0);
  lua_createtable(L, (int)r->result, 0);
  for (int i = 1; uv_fs_scandir_next(&r->u.fs, &ent) != UV_EOF; i++) {
    lua_pushstring(L, ent.name);
    lua_rawseti(L, -3, i);
    lua_pushstring(L, dirent_kind(ent.type));
    lua_rawseti(L, -2, i);
  }
  return 2;
}

/* fs._scandir(path) -> names, types (two lists, in the directory's order) | nil, msg, code */
static int fs_scandir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  fsreq *r = start(L, "fs scandir");
  int rc = uv_fs_scandir(corio__loop(r->rt), &r->u.fs, path, 0, fs__cb);
  return fs__req_wait(L, r, rc, "scandir", path, scandir_k, 2);
}

/* ---- whole files: one threadpool job each ------------------------------------------------ */

void fs__after_job(uv_work_t *req, int status) {
  fsreq *r = container_of(req, fsreq, u.work);
  req_finish(r, status < 0 ? status : r->result);
}

/* Runs on a worker thread: touches nothing but r's own fields. */
static void read_job(uv_work_t *req) {
  fsreq *r = container_of(req, fsreq, u.work);
  struct stat st;
  int fd = open(r->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r->result = -errno;
    return;
  }
  size_t cap = 4096, len = 0;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) cap = (size_t)st.st_size + 1;
  char *buf = malloc(cap);
  r->result = 0;
  for (;;) {
    if (!buf) {
      r->result = UV_ENOMEM;
      break;
    }
    if (len == cap) { /* the file grew, or has no size (a pipe, /proc) */
      char *p = realloc(buf, cap * 2);
      if (!p) {
        free(buf);
        buf = NULL;
        continue;
      }
      buf = p;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r->result = -errno;
      break;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  if (r->result < 0) {
    free(buf);
    return;
  }
  r->mem = buf;
  r->len = len;
}

static int read_file_k(lua_State *L, int status, lua_KContext ctx) {
  fsreq *r = lua_touserdata(L, (int)ctx);
  (void)status;
  if (r->result < 0) return corio__fail(L, "read_file", lua_tostring(L, 1), (int)r->result);
  lua_pushlstring(L, r->mem, r->len);
  free(r->mem);
  r->mem = NULL;
  return 1;
}

/* fs.read_file(path) -> contents | nil, msg, code  [suspends] */
static int fs_read_file(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  corio__check_suspend(L, "fs read_file");
  fsreq *r = fs__req_new(L, 0);
  r->is_work = 1;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 2, 2); /* the worker reads the path even after a cancellation */
  r->path = lua_tostring(L, 1);
  int rc = uv_queue_work(corio__loop(r->rt), &r->u.work, read_job, fs__after_job);
  return fs__req_wait(L, r, rc, "read_file", r->path, read_file_k, 2);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Runs on a worker thread. Atomic: write "<path>.XXXXXX" beside the target, flush it to disk,
 * then rename it over the target, so a reader (or a crash) sees the old or the new contents,
 * never half of them. */
static void write_job(uv_work_t *req) {
  fsreq *r = container_of(req, fsreq, u.work);
  if (!(r->flags & O_EXCL)) { /* O_EXCL marks "atomic" here: see fs_write_file */
    int fd = open(r->path, r->flags | O_WRONLY | O_CREAT | O_CLOEXEC, r->mode);
    if (fd < 0) {
      r->result = -errno;
      return;
    }
    r->result = write_all(fd, r->data, r->len);
    if (close(fd) < 0 && r->result == 0) r->result = -errno;
    return;
  }
  size_t n = strlen(r->path);
  char *tmp = malloc(n + 8);
  if (!tmp) {
    r->result = UV_ENOMEM;
    return;
  }
  memcpy(tmp, r->path, n);
  memcpy(tmp + n, ".XXXXXX", 8);
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    r->result = -errno;
    free(tmp);
    return;
  }
  mode_t um = umask(0);
  umask(um);
  r->result = write_all(fd, r->data, r->len);
  if (r->result == 0 && fchmod(fd, (mode_t)r->mode & ~um) < 0) r->result = -errno;
  if (r->result == 0 && fsync(fd) < 0) r->result = -errno;
  if (close(fd) < 0 && r->result == 0) r->result = -errno;
  if (r->result == 0 && rename(tmp, r->path) < 0) r->result = -errno;
  if (r->result < 0) unlink(tmp);
  free(tmp);
}

/* fs._write_file(path, data, append, mode, atomic) -> true | nil, msg, code  [suspends] */
static int fs_write_file(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  int append = lua_toboolean(L, 3);
  int mode = (int)luaL_optinteger(L, 4, 0666);
  int atomic = lua_toboolean(L, 5);
  if (append && atomic) return luaL_error(L, "write_file: append and atomic exclude each other");
  lua_settop(L, 2);
  corio__check_suspend(L, "fs write_file");
  fsreq *r = fs__req_new(L, 0);
  r->is_work = 1;
  set_op(L, "write_file");
  /* the worker reads the path and the data even after a cancelled task let go of them */
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 2);
  lua_setiuservalue(L, 3, 2);
  r->path = lua_tostring(L, 1);
  r->data = lua_tolstring(L, 2, &r->len);
  r->mode = mode;
  r->flags = atomic ? O_EXCL : append ? O_APPEND : O_TRUNC;
  int rc = uv_queue_work(corio__loop(r->rt), &r->u.work, write_job, fs__after_job);
  return fs__req_wait(L, r, rc, "write_file", r->path, ok_k, 3);
}

/* ---- the module -------------------------------------------------------------------------- */

static const luaL_Reg funcs[] = {
  {"stat", fs_stat},
  {"lstat", fs_lstat},
  {"_mkdir", fs_mkdir},
  {"_rmdir", fs_rmdir},
  {"_unlink", fs_unlink},
  {"rename", fs_rename},
  {"realpath", fs_realpath},
  {"_mkdtemp", fs_mkdtemp},
  {"_scandir", fs_scandir},
  {"read_file", fs_read_file},
  {"_write_file", fs_write_file},
  {"open", fs__open_file},
  {"_watch", fs__watch},
  {NULL, NULL}
};

static const luaL_Reg req_meta[] = {{"__gc", req_gc}, {NULL, NULL}};

int luaopen_corio_fs(lua_State *L) {
  corio__class(L, FSREQ, NULL, req_meta);
  lua_pop(L, 1);
  fs__file_init(L);
  fs__watch_init(L);
  luaL_newlib(L, funcs);
  luaL_getmetatable(L, FSFILE);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "_File"); /* fs.lua adds lines() and io-style read formats */
  lua_pop(L, 1);
  return 1;
}
