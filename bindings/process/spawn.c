/* How a child starts and how its exit is seen (corio._process; process.c is the handle).
 *
 * Linux: posix_spawn, its exit watched through a pidfd. glibc 2.36 starts the child with
 * clone(CLONE_VM | CLONE_VFORK): no page table is copied, and the parent is held only until the
 * child calls exec. libuv 1.44's uv_spawn forks (copying the page tables, which the exec then
 * throws away, and leaving every page of ours copy-on-write) and then blocks on a pipe until the
 * exec too; the parent's share of a short command's cost was about half. The pidfd (Linux 5.3)
 * becomes readable when the child exits; it is polled on the loop and the child reaped with
 * waitpid(pid): no SIGCHLD handler is involved, and libuv's (when some child of uv_spawn runs)
 * reaps only the pids it started.
 *
 * libuv's uv_spawn remains for what posix_spawn would do differently, so that a child sees the
 * same either way: no pidfd_open (an older kernel, a seccomp filter), a new environment whose
 * PATH differs from ours (execvp searches the new one, posix_spawnp ours), and a file without a
 * #! line (ENOEXEC: execvp runs it with /bin/sh, posix_spawnp refuses). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <spawn.h>
#include <sys/syscall.h>
#endif

#include "process.h"

extern char **environ;

/* ---- libuv's way ----------------------------------------------------------------------------- */

static void exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  corio__process_exited(container_of(h, prec, u.proc), status, term_signal);
}

/* fd[i]: the descriptor the child gets as i, or -1 for /dev/null. */
static int start_uv(prec *r, const spawn_req *q, const int fd[3], int *live) {
  uv_stdio_container_t stdio[MAX_FD + 1];
  for (int i = 0; i < 3; i++) {
    stdio[i].flags = fd[i] < 0 ? UV_IGNORE : UV_INHERIT_FD; /* UV_IGNORE: /dev/null */
    stdio[i].data.fd = fd[i];
  }
  for (int i = 3; i < q->nfd; i++) { /* spawn's fds: an inherited descriptor, or a new pipe */
    stdio[i].flags = UV_IGNORE;
    if (q->extra_pipe[i]) {
      stdio[i].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
      stdio[i].data.stream = (uv_stream_t *)q->extra_pipe[i];
    } else if (q->extra_fd[i] >= 0) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = q->extra_fd[i];
    }
  }
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.exit_cb = exit_cb;
  o.file = q->argv[0];
  o.args = q->argv;
  o.env = q->env;
  o.cwd = q->cwd;
  o.flags = q->group ? UV_PROCESS_DETACHED : 0;
  o.stdio_count = q->nfd;
  o.stdio = stdio;
  r->via = VIA_UV;
  r->pidfd = -1;
  int err = uv_spawn(corio__loop(r->rt), &r->u.proc, &o);
  *live = 1; /* initialised even when it failed */
  if (!err) r->pid = r->u.proc.pid;
  return err;
}

/* ---- posix_spawn and a pidfd ----------------------------------------------------------------- */

#ifdef __linux__

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static uv_once_t probe_once = UV_ONCE_INIT;
static int have_pidfd;
static sigset_t all_default; /* every signal below SIGRTMIN but KILL and STOP (see add_signal) */

/* sigaddset without glibc's refusal of its two internal signals (32 and 33). Its posix_spawn
 * child sets those to SIG_IGN unless they are in the default set, and an ignored signal stays
 * ignored across exec: put in by hand, the program starts with them at SIG_DFL, as after
 * libuv's fork (where glibc's handlers are reset by the exec). */
static void add_signal(sigset_t *set, int sig) {
  unsigned long *w = (unsigned long *)set;
  size_t bits = 8 * sizeof *w;
  w[(size_t)(sig - 1) / bits] |= 1UL << ((size_t)(sig - 1) % bits);
}

static void probe(void) {
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  have_pidfd = fd >= 0;
  if (fd >= 0) close(fd);
  sigemptyset(&all_default);
  for (int sig = 1; sig < SIGRTMIN; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) add_signal(&all_default, sig);
}

static void pidfd_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  prec *r = container_of(h, prec, u.poll);
  int ws = 0;
  pid_t p;
  do p = waitpid(r->pid, &ws, WNOHANG);
  while (p < 0 && errno == EINTR);
  if (p == 0) return; /* not yet */
  uv_poll_stop(h);
  if (p < 0) corio__process_exited(r, -1, 0); /* reaped elsewhere (SIGCHLD ignored): unknown */
  else if (WIFSIGNALED(ws)) corio__process_exited(r, 0, WTERMSIG(ws));
  else corio__process_exited(r, WEXITSTATUS(ws), 0);
}

/* The value of PATH in a NULL-terminated "NAME=value" list, or NULL. */
static const char *env_path(char **env) {
  for (; *env; env++)
    if (strncmp(*env, "PATH=", 5) == 0) return *env + 5;
  return NULL;
}

/* Does the request need uv_spawn: extra descriptors, or an env whose PATH execvp would search
 * where posix_spawnp searches ours? */
static int other_path(const spawn_req *q) {
  if (q->nfd > 3) return 1; /* spawn's fds (run_app's workers): rare, and uv_spawn does them */
  if (!q->env || strchr(q->argv[0], '/')) return 0;
  const char *ours = getenv("PATH"), *theirs = env_path(q->env);
  if (!ours || !theirs) return ours != theirs;
  return strcmp(ours, theirs) != 0;
}

#define USE_UV 1 /* not a libuv error: start_pidfd hands the request over to start_uv */

/* 0 and the child started, USE_UV, or a libuv error. */
static int start_pidfd(prec *r, const spawn_req *q, const int fd[3], int *live) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  if (posix_spawn_file_actions_init(&fa) != 0) return UV_ENOMEM;
  if (posix_spawnattr_init(&at) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return UV_ENOMEM;
  }
  /* Every source descriptor is either i itself (inherited) or 3 and above (see prepare), so
   * no dup2 overwrites the source of another. dup2(i, i) clears FD_CLOEXEC, as libuv does. */
  int rc = 0;
  for (int i = 0; i < 3 && rc == 0; i++) {
    if (fd[i] < 0) rc = posix_spawn_file_actions_addopen(&fa, i, "/dev/null",
                                                         i == 0 ? O_RDONLY : O_RDWR, 0);
    else rc = posix_spawn_file_actions_adddup2(&fa, fd[i], i);
  }
  if (rc == 0 && q->cwd) rc = posix_spawn_file_actions_addchdir_np(&fa, q->cwd);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (q->group) flags |= POSIX_SPAWN_SETSID;
  sigset_t none;
  sigemptyset(&none);
  if (rc == 0) rc = posix_spawnattr_setflags(&at, flags);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&at, &none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&at, &all_default);
  pid_t pid = 0;
  if (rc == 0) rc = posix_spawnp(&pid, q->argv[0], &fa, &at, q->argv, q->env ? q->env : environ);
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  if (rc == ENOEXEC) return USE_UV;
  if (rc != 0) return uv_translate_sys_error(rc);

  /* The child runs: from here on a failure kills and reaps it. pidfd_open works on a zombie, so
   * a child that has already exited is seen the same way. */
  int err = 0;
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pfd < 0) err = uv_translate_sys_error(errno);
  else if ((err = uv_poll_init(corio__loop(r->rt), &r->u.poll, pfd)) == 0) {
    *live = 1;
    err = uv_poll_start(&r->u.poll, UV_READABLE, pidfd_cb);
  }
  r->via = VIA_PIDFD;
  r->pidfd = pfd;
  r->pid = pid;
  if (err) {
    kill(q->group ? -pid : pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    if (!*live && pfd >= 0) close(pfd);
    if (!*live) r->pidfd = -1;
  }
  return err;
}

#endif

/* ---- the child's descriptors ----------------------------------------------------------------- */

/* A descriptor of ours that is not 0, 1 or 2 (which the child's dup2s overwrite): moves fd up
 * if needed. Returns it, or -1 with errno. */
static int above_stdio(int fd) {
  if (fd > 2) return fd;
  int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int e = errno;
  close(fd);
  errno = e;
  return up;
}

/* A channel to the child: our end opened in p, the child's end returned in *child. For the
 * child's stdin a socket pair, as libuv's UV_CREATE_PIPE makes (so close_write can half-close
 * it: shutdown() needs a socket); for its output a pipe, which costs half as much to create and
 * is what a program expects on its stdout. 0 or a libuv error. */
static int make_pipe(uv_pipe_t *p, int for_stdin, int *child) {
  uv_file fds[2];
  int err;
  if (for_stdin) err = uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, 0);
  else err = uv_pipe(fds, 0, 0); /* [0], the read end, is ours (uv_pipe_open makes it O_NONBLOCK) */
  if (err) return err;
  int ours = above_stdio(fds[0]);
  *child = above_stdio(fds[1]);
  if (ours < 0 || *child < 0) {
    err = uv_translate_sys_error(errno);
  } else if ((err = uv_pipe_open(p, ours)) == 0) {
    return 0;
  }
  if (ours >= 0) close(ours);
  if (*child >= 0) close(*child);
  *child = -1;
  return err;
}

/* The descriptors the child gets (fd[i], -1 for /dev/null) and the ones we close after the
 * spawn (own[i]). 0 or a libuv error (then nothing is left open but the streams'). */
static int prepare(const spawn_req *q, int fd[3], int own[3]) {
  int err = 0;
  for (int i = 0; i < 3; i++) own[i] = fd[i] = -1;
  /* Inherited ones first, while nothing of ours can sit on 0..2. A child gets blocking stdio:
   * libuv's child clears O_NONBLOCK on its fds 0..2 (the file description is shared with us,
   * so this is the same thing done from here). */
  for (int i = 0; i < 3; i++) {
    int m = q->mode[i];
    if (m == IO_STDOUT) m = q->mode[1] == IO_INHERIT ? IO_INHERIT : IO_NULL;
    if (m != IO_INHERIT) continue;
    int src = q->mode[i] == IO_STDOUT ? 1 : i;
    int fl = fcntl(src, F_GETFL);
    if (fl < 0) return uv_translate_sys_error(errno);
    if (fl & O_NONBLOCK) fcntl(src, F_SETFL, fl & ~O_NONBLOCK);
    fd[i] = src;
  }
  for (int i = 0; i < 3 && !err; i++) {
    if (q->mode[i] == IO_PIPE && (err = make_pipe(q->pipe[i], i == 0, &own[i])) == 0)
      fd[i] = own[i];
    if (q->mode[i] == IO_STDOUT && q->mode[1] == IO_PIPE) fd[i] = own[1];
  }
  if (err)
    for (int i = 0; i < 3; i++)
      if (own[i] >= 0) close(own[i]);
  return err;
}

int corio__process_start(prec *r, const spawn_req *q, int *live) {
  int fd[3], own[3];
  *live = 0;
  int err = prepare(q, fd, own);
  if (err) return err;
#ifdef __linux__
  uv_once(&probe_once, probe);
  err = USE_UV;
  if (have_pidfd && !other_path(q)) err = start_pidfd(r, q, fd, live);
  if (err == USE_UV) err = start_uv(r, q, fd, live);
#else
  err = start_uv(r, q, fd, live);
#endif
  for (int i = 0; i < 3; i++)
    if (own[i] >= 0) close(own[i]); /* the child has its copies */
  return err;
}
