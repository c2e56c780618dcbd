/* What web.run_app needs to supervise a server: signal watchers (uv_signal_t, so a signal
 * never runs Lua from a handler) and worker processes (uv_spawn of this same executable).
 * Lua module "corio._web_workers": signals, spawn, exepath; corio.web.Signals:wait/close,
 * corio.web.Worker:wait/kill/pid. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define SIGNALS "corio.web.Signals"
#define WORKER "corio.web.Worker"
#define MAX_SIGNALS 4

/* ---- signals --------------------------------------------------------------------------- */

/* Up to MAX_SIGNALS watchers in one record, freed after the last close callback: a corio_box
 * holds one handle, so Signals keeps its own box (the waiter slot is the shared one). */
typedef struct sigs {
  uv_signal_t h[MAX_SIGNALS];
  int n, closing, pending_closes;
  int got; /* a signal that arrived and was not yet returned, or 0 */
  corio_waiter w;
  corio_runtime *rt;
} sigs;

typedef struct sigbox {
  sigs *s;
} sigbox;

static const struct {
  const char *name;
  int num;
} SIGNAMES[] = {{"SIGINT", SIGINT}, {"SIGTERM", SIGTERM}, {"SIGHUP", SIGHUP},
                {"SIGQUIT", SIGQUIT}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
                {"SIGKILL", SIGKILL}, {NULL, 0}};

static int signum(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  for (int i = 0; SIGNAMES[i].name; i++)
    if (strcmp(SIGNAMES[i].name, name) == 0) return SIGNAMES[i].num;
  return luaL_error(L, "unknown signal '%s'", name);
}

static const char *signame(int num) {
  for (int i = 0; SIGNAMES[i].name; i++)
    if (SIGNAMES[i].num == num) return SIGNAMES[i].name;
  return "?";
}

/* corio.ps's reason: "signal SIGINT, SIGTERM" */
static void sigs_describe(lua_State *L, corio_waiter *w, const char *op) {
  sigs *s = container_of(w, sigs, w);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, op);
  for (int i = 0; i < s->n; i++) {
    luaL_addstring(&b, i ? ", " : " ");
    luaL_addstring(&b, signame(s->h[i].signum));
  }
  luaL_pushresult(&b);
}

static void signal_cb(uv_signal_t *h, int num) {
  sigs *s = h->data;
  s->got = num;
  corio__waiter_wake(s->rt, &s->w, 0);
}

static void sigs_close_cb(uv_handle_t *h) {
  sigs *s = h->data;
  if (--s->pending_closes == 0) free(s);
}

static void sigs_close(sigs *s) {
  if (s->closing) return;
  s->closing = 1;
  s->pending_closes = s->n;
  for (int i = 0; i < s->n; i++) uv_close((uv_handle_t *)&s->h[i], sigs_close_cb);
  if (s->n == 0) free(s);
}

/* corio._web_workers.signals({"SIGINT", "SIGTERM"}) -> Signals: watches them from now on
 * (their default action, ending the process, no longer applies) until closed. */
static int l_signals(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  int nums[MAX_SIGNALS];
  luaL_argcheck(L, n > 0 && n <= MAX_SIGNALS, 1, "1 to 4 signal names");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    nums[i] = signum(L, -1);
    lua_pop(L, 1);
  }
  corio_runtime *rt = corio__rt(L);
  sigbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, SIGNALS);
  sigs *s = calloc(1, sizeof *s);
  if (!s) return corio__nomem(L);
  b->s = s;
  s->rt = rt;
  s->w.describe = sigs_describe;
  for (int i = 0; i < n; i++) {
    uv_signal_init(corio__loop(rt), &s->h[i]);
    s->h[i].data = s;
    s->n++;
    int r = uv_signal_start(&s->h[i], signal_cb, nums[i]);
    if (r) {
      sigs_close(s);
      b->s = NULL;
      return corio__fail(L, "signal", signame(nums[i]), r);
    }
  }
  return 1;
}

static int sigs_wait_k(lua_State *L, int status, lua_KContext ctx) {
  sigbox *b = lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  if (!b->s) return luaL_error(L, "signals: closed while waiting");
  lua_pushstring(L, signame(b->s->got));
  b->s->got = 0;
  return 1;
}

/* signals:wait() -> "SIGINT" | "SIGTERM" | ...  [suspends until one arrives] */
static int sigs_wait(lua_State *L) {
  sigbox *b = luaL_checkudata(L, 1, SIGNALS);
  if (!b->s) return luaL_error(L, "signals: closed");
  if (corio__waiter_busy(&b->s->w)) return luaL_error(L, "signals: another task is waiting");
  if (b->s->got) return sigs_wait_k(L, LUA_OK, 0);
  corio__check_suspend(L, "signal wait");
  lua_settop(L, 1);
  return corio__waiter_await(L, &b->s->w, "signal", sigs_wait_k, 0);
}

/* signals:close(): stop watching (the default actions apply again) */
static int sigs_close_l(lua_State *L) {
  sigbox *b = luaL_checkudata(L, 1, SIGNALS);
  if (b->s) {
    if (corio__waiter_busy(&b->s->w)) return luaL_error(L, "signals: a task is waiting");
    sigs_close(b->s);
    b->s = NULL;
  }
  return 0;
}

static int sigs_gc(lua_State *L) {
  sigbox *b = lua_touserdata(L, 1);
  if (b->s) {
    b->s->w.task = NULL;
    sigs_close(b->s);
    b->s = NULL;
  }
  return 0;
}

/* ---- worker processes ------------------------------------------------------------------ */

/* The record behind a corio.web.Worker box, freed by the shared close callback once reaped. */
typedef struct proc {
  corio_handle base; /* first */
  uv_process_t h;
  corio_runtime *rt;
  corio_waiter w; /* a task waiting for the exit */
  int exited;
  int64_t status;
  int term_signal;
} proc;

/* corio.ps's reason for a task in worker:wait(): "worker 4121 wait" */
static void proc_describe(lua_State *L, corio_waiter *w, const char *op) {
  (void)op;
  lua_pushfstring(L, "worker %d wait", container_of(w, proc, w)->h.pid);
}

static void exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  proc *p = container_of(h, proc, h);
  p->exited = 1;
  p->status = status;
  p->term_signal = term_signal;
  corio__waiter_wake(p->rt, &p->w, 0);
}

extern char **environ;

/* corio._web_workers.spawn(file, args, env) -> Worker | nil, msg, code
 * Starts `file` with argv `args` (a list, args[1] is argv[0]) and this process's environment
 * plus `env` (a list of "NAME=value" that replace variables of the same name), sharing
 * stdout and stderr with this process. */
static int l_spawn(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  int na = (int)luaL_len(L, 2), ne = (int)luaL_len(L, 3), nenv = 0;
  corio_runtime *rt = corio__rt(L);
  while (environ[nenv]) nenv++;
  char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(na + 1), 0);
  char **envp = lua_newuserdatauv(L, sizeof(char *) * (size_t)(ne + nenv + 1), 0);
  for (int i = 0; i < na; i++) {
    lua_rawgeti(L, 2, i + 1);
    argv[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1);  /* still referenced by the table */
  }
  argv[na] = NULL;
  int n = 0;
  for (int i = 0; i < ne; i++) {
    lua_rawgeti(L, 3, i + 1);
    envp[n++] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  for (int i = 0; i < nenv; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t klen = eq ? (size_t)(eq - environ[i]) + 1 : strlen(environ[i]);
    int replaced = 0;
    for (int j = 0; j < ne && !replaced; j++) replaced = strncmp(envp[j], environ[i], klen) == 0;
    if (!replaced) envp[n++] = environ[i];
  }
  envp[n] = NULL;
  corio_box *b = corio__box_new(L, WORKER);
  proc *p = calloc(1, sizeof *p);
  if (!p) return corio__nomem(L);
  uv_stdio_container_t stdio[3] = {
    {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 1},
    {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t o = {.exit_cb = exit_cb, .file = file, .args = argv, .env = envp,
                            .stdio_count = 3, .stdio = stdio};
  p->rt = rt;
  p->w.describe = proc_describe;
  int r = uv_spawn(corio__loop(rt), &p->h, &o);
  corio__box_attach(b, &p->base, (uv_handle_t *)&p->h, NULL);
  if (r) {
    corio__box_close(&p->base); /* libuv wants the handle closed even so */
    return corio__fail(L, "spawn", file, r);
  }
  return 1;
}

static proc *check_proc(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, WORKER);
  if (!b->h || b->h->closing) luaL_error(L, "worker: already reaped");
  return (proc *)b->h;
}

static int proc_wait_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = lua_touserdata(L, 1);
  proc *p = (proc *)b->h;
  (void)status;
  (void)ctx;
  lua_pushinteger(L, (lua_Integer)p->status);
  if (p->term_signal) lua_pushstring(L, signame(p->term_signal));
  else lua_pushnil(L);
  corio__box_close(&p->base); /* reaped */
  return 2;
}

/* worker:wait() -> exit status, signal name or nil  [suspends until it exits] */
static int proc_wait(lua_State *L) {
  proc *p = check_proc(L);
  if (corio__waiter_busy(&p->w)) return luaL_error(L, "worker: another task is waiting");
  if (p->exited) return proc_wait_k(L, LUA_OK, 0);
  corio__check_suspend(L, "worker wait");
  lua_settop(L, 1);
  return corio__waiter_await(L, &p->w, "worker wait", proc_wait_k, 0);
}

/* worker:kill([signal = "SIGTERM"]) -> true | nil, msg, code */
static int proc_kill(lua_State *L) {
  proc *p = check_proc(L);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : signum(L, 2);
  if (p->exited) return corio__fail(L, "kill", NULL, UV_ESRCH);
  int r = uv_process_kill(&p->h, sig);
  if (r) return corio__fail(L, "kill", NULL, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* worker:pid() -> process id */
static int proc_pid(lua_State *L) {
  proc *p = check_proc(L);
  lua_pushinteger(L, p->h.pid);
  return 1;
}

static int proc_gc(lua_State *L) {
  corio_box *b = lua_touserdata(L, 1);
  proc *p = (proc *)b->h;
  if (p && !p->base.closing) {
    /* a worker nobody supervises any more: it is not left running */
    if (!p->exited) uv_process_kill(&p->h, SIGTERM);
    p->w.task = NULL;
  }
  return corio__box_gc(L);
}

/* corio._web_workers.exepath() -> path of the running executable */
static int l_exepath(lua_State *L) {
  char buf[4096];
  size_t n = sizeof buf;
  int r = uv_exepath(buf, &n);
  if (r) return corio__fail(L, "exepath", NULL, r);
  lua_pushlstring(L, buf, n);
  return 1;
}

static const luaL_Reg sig_methods[] = {{"wait", sigs_wait}, {"close", sigs_close_l}, {NULL, NULL}};
static const luaL_Reg sig_meta[] = {{"__gc", sigs_gc}, {NULL, NULL}};
static const luaL_Reg proc_meta[] = {{"__gc", proc_gc}, {NULL, NULL}};
static const luaL_Reg proc_methods[] = {
  {"wait", proc_wait}, {"kill", proc_kill}, {"pid", proc_pid}, {NULL, NULL}};
static const luaL_Reg funcs[] = {
  {"signals", l_signals}, {"spawn", l_spawn}, {"exepath", l_exepath}, {NULL, NULL}};

int luaopen_corio_web_workers(lua_State *L) {
  corio__class(L, SIGNALS, sig_methods, sig_meta);
  corio__class(L, WORKER, proc_methods, proc_meta);
  lua_pop(L, 2);
  luaL_newlib(L, funcs);
  return 1;
}
