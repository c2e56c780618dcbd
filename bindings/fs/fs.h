/* corio._fs, private: the request every file-system operation suspends on, shared by the path
 * operations (ops.c), open files (file.c) and whole-file jobs run on libuv's threadpool. */
#ifndef CORIO_FS_H
#define CORIO_FS_H

#include "binding.h"

#define FSREQ "corio.fs.Request"
#define FSFILE "corio.fs.File"
#define FSWATCH "corio.fs.Watcher"

typedef struct fsfile fsfile;

/* One pending operation. A full userdata with two user values (1: the operation's name for
 * messages; 2: what libuv or a worker thread reads from: the path, the data to write, the
 * file), anchored from the start of the operation
 * until its callback, so its memory outlives a cancelled task. What the outcome owns (a
 * descriptor just opened, a buffer read by a worker) is released by __gc unless the
 * continuation claimed it. */
typedef struct fsreq {
  union {
    uv_fs_t fs;
    uv_work_t work;
  } u;
  corio_waiter w;
  corio_runtime *rt;
  int ref;          /* the loop's anchor, released by the callback */
  int is_work;      /* u.work (a threadpool job) rather than u.fs */
  int started;      /* libuv saw u: __gc must clean it up */
  ssize_t result;   /* >= 0, or a libuv error code */
  uv_file fd;       /* a descriptor the operation opened and nobody claimed yet, or -1 */
  fsfile *file;     /* the file the operation works on (kept alive by a user value) */
  int is_write;     /* a file write: the callback advances the file's position */
  int64_t off;      /* file read/write: the offset, or -1 for "append" */
  /* threadpool jobs (read_file, write_file) */
  const char *path; /* pinned by user value 2 */
  const char *data; /* pinned by user value 2 */
  size_t len;
  int flags, mode;
  char *mem;        /* malloc'd: what a job read */
  size_t cap;       /* bytes of `buf` */
  char buf[];       /* read buffer of a file read */
} fsreq;

struct fsfile {
  uv_file fd;       /* -1 once closed */
  int64_t pos;      /* where the next read or write happens */
  int append;
  int inflight;     /* operations libuv still runs on fd (a cancelled one may still run) */
  int close_pending;
  char *rbuf;       /* bytes read ahead by lines(), starting at pos - rlen */
  size_t rlen, rcap;
  fsreq *active;    /* the latest operation started on the file, until it ends */
  char path[];
};

/* Push a new request with `extra` bytes of buffer. */
fsreq *fs__req_new(lua_State *L, size_t extra);
/* After the libuv call (rc its return): anchor is already taken; on rc < 0 release it and
 * return the failure triple, else suspend on the request with continuation k (ctx is passed
 * through). `op`/`target` name the failure. */
int fs__req_wait(lua_State *L, fsreq *r, int rc, const char *op, const char *target,
                 lua_KFunction k, lua_KContext ctx);
void fs__cb(uv_fs_t *req);                   /* the callback of every uv_fs_* request */
void fs__after_job(uv_work_t *req, int status); /* ... and of every threadpool job */
void fs__file_done(fsreq *r);                 /* file bookkeeping when an operation ends */

int fs__open_file(lua_State *L);              /* fs.open */
void fs__file_init(lua_State *L);             /* register the File class */
int fs__watch(lua_State *L);                  /* fs.watch */
void fs__watch_init(lua_State *L);

#endif
