/* corio._process, private: the child record shared by the handle (process.c) and the two ways
 * of starting a child and seeing it exit (spawn.c). */
#ifndef CORIO_PROCESS_H
#define CORIO_PROCESS_H

#include "binding.h"

typedef struct pbox pbox;

/* How a child is started and watched: posix_spawn with a pidfd polled on the loop (Linux), or
 * libuv's uv_spawn (fork and exec, SIGCHLD) where that is not available or cannot express the
 * request. */
enum { VIA_PIDFD, VIA_UV };

/* The C record: lives until libuv closed its handle, which is after the exit (or after a kill
 * and a reap done in process.c). */
typedef struct prec {
  union {
    uv_handle_t handle;
    uv_process_t proc; /* VIA_UV */
    uv_poll_t poll;    /* VIA_PIDFD: readable once the child has exited */
  } u;
  corio_timer kill_timer; /* SIGKILL to the group when a termination takes too long */
  corio_runtime *rt;
  pbox *owner;            /* the userdata, NULL once collected */
  int via;                /* VIA_PIDFD or VIA_UV */
  int pid;
  int pidfd;              /* VIA_PIDFD: closed with the handle; else -1 */
  int group;              /* the child leads its own process group (pgid == pid) */
  int exited, closing, terminating;
  double kill_after;
  uint64_t kill_at;       /* uv_hrtime() when a termination turns to SIGKILL */
} prec;

/* The child's descriptors past stderr that spawn's `fds` may name: 3 .. MAX_FD. */
#define MAX_FD 15

/* What the child's fd 0, 1 and 2 are. */
enum { IO_INHERIT, IO_NULL, IO_PIPE, IO_STDOUT };

typedef struct spawn_req {
  char **argv;     /* argv[0] is searched in PATH unless it has a slash */
  char **env;      /* NULL: ours */
  const char *cwd; /* NULL: ours */
  int mode[3];     /* IO_*; IO_STDOUT only for fd 2 */
  uv_pipe_t *pipe[3]; /* IO_PIPE: initialised, not open; the parent's end goes there */
  int group;          /* a new session (and process group) led by the child */
  int nfd;            /* descriptors the child gets: 3, or up to MAX_FD + 1 with spawn's fds */
  int extra_fd[MAX_FD + 1];          /* [3..nfd): one of ours the child inherits, or -1 */
  uv_pipe_t *extra_pipe[MAX_FD + 1]; /* [3..nfd): a two-way pipe libuv creates, or NULL */
} spawn_req;

/* Start the child described by q for record r (whose rt and timer are set). 0, with r->pid, r->via
 * and a live handle in r->u; or a libuv error with *live telling whether r->u was initialised
 * (then it must be closed before r is freed). Both ways end in corio__process_exited. */
int corio__process_start(prec *r, const spawn_req *q, int *live);

/* The child of r has exited (status: its exit code; term_signal: the signal that killed it). */
void corio__process_exited(prec *r, int64_t status, int term_signal);

#endif
