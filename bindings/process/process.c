/* Subprocesses with corio.net streams as pipes, each child the leader of its own process group
 * so that terminating it takes its descendants along. Lua module "corio._process": spawn,
 * getpid; corio.process.Handle: wait, kill, terminate, close. How a child starts and how its
 * exit is seen is spawn.c; policy (options, communicate, run, errors) is
 * scripts/corio/process.lua.
 *
 * Reaping: the loop reaps a child only while its handle (a pidfd's poll, or libuv's
 * uv_process_t) is open, so the handle stays open until the exit. Whatever happens to the Lua
 * side (close, garbage collection) the child is either reaped by the loop or killed and reaped
 * here: no zombie is left behind. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../corio_signal.h"
#include "../net/stream.h"
#include "process.h"

#define HANDLE "corio.process.Handle"

/* The userdata: the exit status outlives the record. */
struct pbox {
  prec *rec; /* NULL once the record is closed */
  corio_waiter w;
  int pid, group, exited, term_signal;
  int64_t status;
};

/* corio.ps's reason for a task in h:wait(): "process 4121 wait" */
static void wait_describe(lua_State *L, corio_waiter *w, const char *op) {
  (void)op;
  lua_pushfstring(L, "process %d wait", container_of(w, pbox, w)->pid);
}

/* ---- the record ---------------------------------------------------------------------------- */

static void rec_closed(uv_handle_t *h) {
  prec *r = container_of(h, prec, u.handle);
  if (r->owner) r->owner->rec = NULL;
  free(r);
}

static void rec_close(prec *r) {
  if (r->closing) return;
  r->closing = 1;
  corio__timer_stop(r->rt, &r->kill_timer);
  uv_close(&r->u.handle, rec_closed);
  /* uv_close took the pidfd out of the loop's epoll set: it can go now, not a turn later */
  if (r->pidfd >= 0) close(r->pidfd);
  r->pidfd = -1;
}

/* Signal the child, or its whole group. 0 or a libuv error. */
static int rec_kill(prec *r, int sig, int group) {
  if (group && r->group) return kill(-r->pid, sig) == 0 ? 0 : UV_ESRCH;
  if (r->exited) return UV_ESRCH;
  return uv_kill(r->pid, sig); /* not reaped yet: the pid is still the child's */
}

static int group_alive(prec *r) {
  return r->group && kill(-r->pid, 0) == 0;
}

/* After the leader exits, its descendants get no SIGCHLD of ours: poll the group this often
 * until it is empty or kill_at comes. */
#define GROUP_POLL 0.02

static void kill_timer_fire(corio_runtime *rt, corio_timer *t) {
  prec *r = container_of(t, prec, kill_timer);
  uint64_t now = uv_hrtime();
  if (r->exited && !group_alive(r)) {
    r->terminating = 0;
  } else if (now >= r->kill_at) {
    rec_kill(r, SIGKILL, 1);
    rec_kill(r, SIGKILL, 0);
    r->terminating = 0;
  } else if (r->exited) {
    double left = (double)(r->kill_at - now) / 1e9;
    if (corio__timer_start(rt, t, left < GROUP_POLL ? left : GROUP_POLL) == 0) return;
    rec_kill(r, SIGKILL, 1); /* no memory for a timer: do not leave the group behind */
    r->terminating = 0;
  }
  if (r->exited && !r->terminating) rec_close(r);
}

void corio__process_exited(prec *r, int64_t status, int term_signal) {
  r->exited = 1;
  if (r->owner) {
    pbox *b = r->owner;
    b->exited = 1;
    b->status = status;
    b->term_signal = term_signal;
    corio__waiter_wake(r->rt, &b->w, 0);
  }
  /* A termination in progress waits for the descendants that outlived the leader (they got
   * SIGTERM too) until kill_at, then kills them. */
  if (r->terminating && group_alive(r)) {
    kill_timer_fire(r->rt, &r->kill_timer);
    return;
  }
  rec_close(r);
}

/* The owner is going away while the child may still run. close() (force): kill the group
 * and reap the child now, synchronously: SIGKILL cannot be caught, so the wait is short, and
 * the handle is closed first so that libuv no longer looks for this child. Collection: the
 * same, unless a termination is under way; that one goes on (SIGKILL after kill_after) and
 * the loop reaps the child. */
static void rec_destroy(prec *r, int force) {
  if (r->owner) r->owner->rec = NULL;
  r->owner = NULL;
  if (r->closing || (r->terminating && !force)) return;
  if (!r->exited) {
    int pid = r->pid;
    rec_kill(r, SIGKILL, 1);
    rec_kill(r, SIGKILL, 0);
    rec_close(r);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
  } else {
    if (r->terminating) rec_kill(r, SIGKILL, 1);
    rec_close(r);
  }
}

/* ---- spawn --------------------------------------------------------------------------------- */

/* A list of strings at idx as a NULL-terminated array, in a userdata pushed on the stack (the
 * strings stay referenced by the list during the call). */
static char **string_array(lua_State *L, int idx) {
  int n = (int)luaL_len(L, idx);
  char **a = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    a[i] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
    if (!a[i]) luaL_error(L, "spawn: argument %d is not a string", i + 1);
  }
  a[n] = NULL;
  return a;
}

static int io_mode(lua_State *L, int idx, int fd) {
  static const char *const modes[] = {"inherit", "null", "pipe", "stdout", NULL};
  int m = luaL_checkoption(L, idx, "inherit", modes);
  if (m == IO_STDOUT && fd != 2) luaL_argerror(L, idx, "only stderr may be \"stdout\"");
  return m;
}

/* spawn's fds (a table at idx, or nil): child descriptor (3..MAX_FD) -> one of ours to
 * inherit, or "pipe". Raises on misuse; returns how many stdio entries the child needs. */
static int check_fds(lua_State *L, int idx) {
  int n = 3;
  if (lua_isnoneornil(L, idx)) return n;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int isnum;
    lua_Integer fd = lua_tointegerx(L, -2, &isnum);
    if (!isnum || fd < 3 || fd > MAX_FD) luaL_error(L, "spawn: fds keys must be 3 to %d", MAX_FD);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        luaL_error(L, "spawn: fds[%d] is not a descriptor", (int)fd);
    } else if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "pipe") != 0) {
      luaL_error(L, "spawn: fds[%d] must be a descriptor or \"pipe\"", (int)fd);
    }
    lua_pop(L, 1);
    if (fd + 1 > n) n = (int)fd + 1;
  }
  return n;
}

/* Fill q's extra descriptors [3..q->nfd) from the checked fds table at idx; each "pipe"
 * becomes a two-way stream stored in the table at out under its descriptor number (s[fd]).
 * 0 or a libuv error (the streams made so far are closed then). */
static int open_fds(lua_State *L, int idx, int out, spawn_req *q, corio_stream **s) {
  int err = 0;
  for (int fd = 3; fd < q->nfd; fd++) {
    q->extra_fd[fd] = -1;
    lua_rawgeti(L, idx, fd);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      q->extra_fd[fd] = (int)lua_tointeger(L, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      s[fd] = corio__stream_new(L, CORIO_STREAM_PIPE, 0, &err);
      if (!s[fd]) {
        for (int i = 3; i < fd; i++)
          if (s[i]) corio__stream_close(s[i], 1), s[i] = NULL;
        lua_pop(L, 2);
        return err;
      }
      q->extra_pipe[fd] = (uv_pipe_t *)corio__stream_uv(s[fd]);
      lua_rawseti(L, out, fd);
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* corio._process.spawn(argv, env|nil, cwd|nil, stdin, stdout, stderr, group, kill_after, fds)
 *   -> handle, pid, stdin|false, stdout|false, stderr|false, pipes | nil, msg, code
 * argv: the command and its arguments (argv[1] is searched in PATH); env: "NAME=value" strings
 * replacing the environment; stdin/stdout/stderr: "inherit" | "null" | "pipe" (a stream), and
 * for stderr "stdout" (into the stdout pipe); group: the child leads a new process group (a new
 * session, with no controlling terminal); kill_after: seconds between SIGTERM and SIGKILL when
 * terminated; fds: the child's descriptors 3 and up (see check_fds), the pipes among them come
 * back as a table descriptor -> stream. */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  spawn_req q;
  memset(&q, 0, sizeof q);
  q.nfd = check_fds(L, 9);
  for (int i = 0; i < 3; i++) q.mode[i] = io_mode(L, 4 + i, i);
  q.group = lua_toboolean(L, 7);
  double kill_after = luaL_optnumber(L, 8, 5);
  q.cwd = luaL_optstring(L, 3, NULL);
  q.argv = string_array(L, 1);
  if (!q.argv[0]) return luaL_argerror(L, 1, "no command");
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    q.env = string_array(L, 2);
  }
  corio_runtime *rt = corio__rt(L);
  corio__stream_class(L);

  /* the handle first, then the extra pipes, then the streams (stack: ..., handle, pipes, s0,
   * s1, s2) */
  pbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->w.describe = wait_describe;
  luaL_setmetatable(L, HANDLE);
  int hidx = lua_gettop(L);
  lua_newtable(L);
  corio_stream *s[MAX_FD + 1] = {NULL};
  int err = open_fds(L, 9, hidx + 1, &q, s);
  for (int i = 0; i < 3; i++) {
    if (q.mode[i] == IO_PIPE && !err) {
      s[i] = corio__stream_new(L, CORIO_STREAM_PIPE, 0, &err);
      if (s[i]) q.pipe[i] = (uv_pipe_t *)corio__stream_uv(s[i]);
    } else {
      lua_pushboolean(L, 0);
    }
  }
  prec *r = err ? NULL : calloc(1, sizeof *r);
  if (!err && !r) err = UV_ENOMEM;
  if (!err) {
    int live;
    r->rt = rt;
    r->group = q.group;
    r->kill_after = kill_after;
    r->kill_timer.index = -1;
    r->kill_timer.fire = kill_timer_fire;
    r->pidfd = -1;
    err = corio__process_start(r, &q, &live);
    if (err) {
      r->exited = 1; /* never ran, or killed and reaped: nothing to wait for */
      if (live) rec_close(r);
      else free(r);
    }
  }
  if (err) {
    for (int i = 0; i < q.nfd; i++)
      if (s[i]) corio__stream_close(s[i], 1);
    return corio__fail(L, "spawn", q.argv[0], err);
  }
  r->owner = b;
  b->rec = r;
  b->pid = r->pid;
  b->group = q.group;
  static const char *const names[] = {"stdin", "stdout", "stderr"};
  for (int i = 0; i < q.nfd; i++) {
    if (!s[i]) continue;
    char name[112];
    if (i < 3) snprintf(name, sizeof name, "%.60s (pid %d) %s", q.argv[0], b->pid, names[i]);
    else snprintf(name, sizeof name, "%.60s (pid %d) fd %d", q.argv[0], b->pid, i);
    corio__stream_set_name(s[i], name);
  }
  lua_rotate(L, hidx + 1, -1); /* handle, s0, s1, s2, pipes */
  lua_pushinteger(L, b->pid);
  lua_insert(L, hidx + 1);
  return 6;
}

/* ---- the handle ------------------------------------------------------------------------------ */

static pbox *check_handle(lua_State *L) {
  return luaL_checkudata(L, 1, HANDLE);
}

static int push_exit(lua_State *L, pbox *b) {
  if (b->term_signal) {
    lua_pushnil(L);
    const char *name = corio__signame(b->term_signal);
    if (name) lua_pushstring(L, name);
    else lua_pushinteger(L, b->term_signal);
  } else {
    lua_pushinteger(L, (lua_Integer)b->status);
    lua_pushnil(L);
  }
  return 2;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return push_exit(L, lua_touserdata(L, 1));
}

/* h:wait() -> exit code, nil | nil, signal name  [suspends until the child exits]
 * Descendants holding the pipes open do not delay it. */
static int h_wait(lua_State *L) {
  pbox *b = check_handle(L);
  lua_settop(L, 1);
  if (b->exited) return push_exit(L, b);
  if (!b->rec) return luaL_error(L, "process wait: the process was closed before it exited");
  corio__check_suspend(L, "process wait");
  return corio__waiter_await(L, &b->w, "process wait", wait_k, 0);
}

/* h:kill([signal = "TERM"[, group]]) -> true | nil, msg, code
 * Sends a signal to the child (or with `group`, to its whole process group). */
static int h_kill(lua_State *L) {
  pbox *b = check_handle(L);
  const char *name = luaL_optstring(L, 2, "TERM");
  int sig = corio__signum(name);
  if (!sig) return luaL_error(L, "process kill: unknown signal '%s'", name);
  char target[32];
  snprintf(target, sizeof target, "pid %d", b->pid);
  int rc;
  if (b->rec) rc = rec_kill(b->rec, sig, lua_toboolean(L, 3));
  else if (lua_toboolean(L, 3) && b->group) rc = kill(-b->pid, sig) == 0 ? 0 : UV_ESRCH;
  else rc = UV_ESRCH; /* reaped: its pid may belong to another process by now */
  if (rc) return corio__fail(L, "kill", target, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* h:terminate(): SIGTERM to the process group now, SIGKILL after kill_after seconds to
 * whatever is left of it (descendants included); the child is still reaped by the loop.
 * Does not wait. Idempotent. */
static int h_terminate(lua_State *L) {
  pbox *b = check_handle(L);
  prec *r = b->rec;
  if (!r || r->terminating || r->closing) return 0;
  if (r->exited && !group_alive(r)) return 0;
  r->terminating = 1;
  rec_kill(r, SIGTERM, 1);
  rec_kill(r, SIGCONT, 1); /* a stopped process acts on SIGTERM only once continued */
  r->kill_at = uv_hrtime() + (uint64_t)(r->kill_after * 1e9);
  if (r->exited) kill_timer_fire(r->rt, &r->kill_timer); /* polls the group */
  else if (r->kill_after <= 0 || corio__timer_start(r->rt, &r->kill_timer, r->kill_after) != 0)
    kill_timer_fire(r->rt, &r->kill_timer);
  return 0;
}

/* h:close(): if the child still runs, kill its group and reap it now. Idempotent. */
static int h_close(lua_State *L) {
  pbox *b = check_handle(L);
  if (b->rec) rec_destroy(b->rec, 1);
  return 0;
}

static int h_gc(lua_State *L) {
  pbox *b = lua_touserdata(L, 1);
  if (b->rec) rec_destroy(b->rec, 0);
  return 0;
}

/* corio._process.getpid() -> this process's id */
static int l_getpid(lua_State *L) {
  lua_pushinteger(L, uv_os_getpid());
  return 1;
}

static const luaL_Reg methods[] = {
  {"wait", h_wait}, {"kill", h_kill}, {"terminate", h_terminate}, {"close", h_close},
  {NULL, NULL}};
static const luaL_Reg meta[] = {{"__gc", h_gc}, {"__close", h_close}, {NULL, NULL}};
extern char **environ;

/* corio._process.environ() -> {NAME = value, ...}: this process's environment, now */
static int l_environ(lua_State *L) {
  lua_newtable(L);
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || eq == *e) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* corio._process.exepath() -> the path of the running executable | nil, msg, code */
static int l_exepath(lua_State *L) {
  char buf[4096];
  size_t n = sizeof buf;
  int r = uv_exepath(buf, &n);
  if (r) return corio__fail(L, "exepath", NULL, r);
  lua_pushlstring(L, buf, n);
  return 1;
}

static const luaL_Reg funcs[] = {{"spawn", l_spawn},     {"getpid", l_getpid},
                                 {"environ", l_environ}, {"exepath", l_exepath},
                                 {NULL, NULL}};

int luaopen_corio_process(lua_State *L) {
  /* a child that closes its end of a pipe costs an EPIPE on that stream, not this process */
  signal(SIGPIPE, SIG_IGN);
  corio__class(L, HANDLE, methods, meta);
  lua_pop(L, 1);
  corio__stream_class(L);
  luaL_newlib(L, funcs);
  return 1;
}
