/* Signals as events: a watch is one uv_signal_t per signal (libuv's handler only writes to a
 * pipe; no Lua ever runs from a signal handler), plus a queue of arrivals a task takes in order.
 * Lua module "corio._signal": watch, watched, kill; corio.signal.Watch: next (also __call),
 * close. Policy (on, iterators) is scripts/corio/signal.lua. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "corio_signal.h"

#define WATCH "corio.signal.Watch"
#define QUEUE 64

static const struct {
  const char *name;
  int num;
} NAMES[] = {
  {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT},   {"ILL", SIGILL},
  {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},   {"BUS", SIGBUS},     {"FPE", SIGFPE},
  {"KILL", SIGKILL}, {"USR1", SIGUSR1},   {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
  {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},   {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
  {"CONT", SIGCONT}, {"STOP", SIGSTOP},   {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
  {"TTOU", SIGTTOU}, {"URG", SIGURG},     {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
  {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
  {"SYS", SIGSYS},   {NULL, 0}};

int corio__signum(const char *name) {
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (int i = 0; NAMES[i].name; i++)
    if (strcmp(NAMES[i].name, name) == 0) return NAMES[i].num;
  return 0;
}

const char *corio__signame(int num) {
  for (int i = 0; NAMES[i].name; i++)
    if (NAMES[i].num == num) return NAMES[i].name;
  return NULL;
}

/* ---- who watches SIGINT and SIGTERM -------------------------------------------------------
 * Process-wide, as signal dispositions are. While a watch holds SIGINT, libuv's handler
 * replaces whatever was installed (the command's Ctrl-C handler); when the last watch closes,
 * libuv resets the signal to SIG_DFL, so the previous handler is put back. */

static int int_watchers, term_watchers, usr1_watchers;
static struct sigaction saved_int, saved_term, saved_usr1;

int corio__signal_watchers(int num) {
  return num == SIGINT    ? int_watchers
         : num == SIGTERM ? term_watchers
         : num == SIGUSR1 ? usr1_watchers
                          : 0;
}

static void count_watch(int num, int delta) {
  int *n = num == SIGINT    ? &int_watchers
           : num == SIGTERM ? &term_watchers
           : num == SIGUSR1 ? &usr1_watchers
                            : NULL;
  struct sigaction *saved = num == SIGINT ? &saved_int : num == SIGTERM ? &saved_term : &saved_usr1;
  if (!n) return;
  if (delta > 0 && (*n)++ == 0) sigaction(num, NULL, saved);
  if (delta < 0 && --*n == 0) {
    struct sigaction cur;
    /* only if libuv let go (another libuv watcher of this signal keeps its handler) */
    if (sigaction(num, NULL, &cur) == 0 && cur.sa_handler == SIG_DFL) sigaction(num, saved, NULL);
  }
}

/* ---- a watch ------------------------------------------------------------------------------ */

typedef struct sigwatch {
  corio_waiter w;
  corio_runtime *rt;
  int n;              /* handles initialised */
  int open;           /* handles not yet closed */
  int head, len;      /* the queue of arrivals (signal numbers) not yet returned */
  int q[QUEUE];
  uv_signal_t h[];
} sigwatch;

typedef struct watchbox {
  sigwatch *s; /* NULL once closed */
} watchbox;

/* corio.ps's reason: "signal watch HUP, USR1" */
static void watch_describe(lua_State *L, corio_waiter *w, const char *op) {
  sigwatch *s = container_of(w, sigwatch, w);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, op);
  for (int i = 0; i < s->n; i++) {
    const char *name = corio__signame(s->h[i].signum);
    luaL_addstring(&b, i ? ", " : " ");
    luaL_addstring(&b, name ? name : "?");
  }
  luaL_pushresult(&b);
}

static void signal_cb(uv_signal_t *h, int num) {
  sigwatch *s = h->data;
  /* a full queue already holds enough to act on: the surplus repeats what is there */
  if (s->len < QUEUE) s->q[(s->head + s->len++) % QUEUE] = num;
  corio__waiter_wake(s->rt, &s->w, 0);
}

static void close_cb(uv_handle_t *h) {
  sigwatch *s = h->data;
  if (--s->open == 0) free(s);
}

static void watch_close_now(sigwatch *s) {
  corio__waiter_wake(s->rt, &s->w, UV_ECANCELED);
  s->open = s->n;
  for (int i = 0; i < s->n; i++) {
    int num = s->h[i].signum; /* uv_close clears it, and resets the disposition first */
    uv_close((uv_handle_t *)&s->h[i], close_cb);
    count_watch(num, -1);
  }
  if (s->n == 0) free(s);
}

/* corio._signal.watch(names) -> Watch | nil, msg, code
 * names: a list of "HUP", "USR1", ... (a leading "SIG" is allowed). */
static int sig_watch(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  luaL_argcheck(L, n > 0 && n <= 32, 1, "a list of 1 to 32 signal names");
  int nums[32];
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    const char *name = lua_tostring(L, -1);
    if (!name) return luaL_error(L, "signal watch: signal names are strings, got %s",
                                 luaL_typename(L, -1));
    nums[i] = corio__signum(name);
    if (!nums[i]) return luaL_error(L, "signal watch: unknown signal '%s'", name);
    if (nums[i] == SIGKILL || nums[i] == SIGSTOP)
      return luaL_error(L, "signal watch: %s cannot be caught", name);
    lua_pop(L, 1);
  }
  corio_runtime *rt = corio__rt(L);
  watchbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, WATCH);
  sigwatch *s = corio__xmalloc(L, sizeof *s + sizeof(uv_signal_t) * (size_t)n);
  memset(s, 0, sizeof *s);
  s->rt = rt;
  s->w.describe = watch_describe;
  b->s = s;
  for (int i = 0; i < n; i++) {
    uv_signal_init(corio__loop(rt), &s->h[i]);
    s->h[i].data = s;
    s->h[i].signum = 0;
    s->n++;
    int r = uv_signal_start(&s->h[i], signal_cb, nums[i]);
    if (r == 0) count_watch(nums[i], +1);
    if (r) {
      b->s = NULL;
      watch_close_now(s);
      return corio__fail(L, "signal watch", corio__signame(nums[i]), r);
    }
  }
  return 1;
}

static int next_result(lua_State *L, sigwatch *s) {
  if (s->len == 0) return 0;
  int num = s->q[s->head];
  s->head = (s->head + 1) % QUEUE;
  s->len--;
  lua_pushstring(L, corio__signame(num));
  return 1;
}

static int next_k(lua_State *L, int status, lua_KContext ctx) {
  watchbox *b = lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  if (b->s && next_result(L, b->s)) return 1;
  lua_pushnil(L); /* closed while waiting: the iteration ends */
  return 1;
}

/* watch:next() -> "HUP" | ... | nil once closed  [suspends until a signal arrives] */
static int watch_next(lua_State *L) {
  watchbox *b = luaL_checkudata(L, 1, WATCH);
  lua_settop(L, 1);
  if (!b->s) {
    lua_pushnil(L);
    return 1;
  }
  if (next_result(L, b->s)) return 1;
  corio__check_suspend(L, "signal watch");
  return corio__waiter_await(L, &b->s->w, "signal watch", next_k, 0);
}

/* watch:close(): stop watching (default actions apply again); a task waiting in next() gets
 * nil. Idempotent. */
static int watch_close(lua_State *L) {
  watchbox *b = luaL_checkudata(L, 1, WATCH);
  if (b->s) {
    sigwatch *s = b->s;
    b->s = NULL;
    watch_close_now(s);
  }
  return 0;
}

static int watch_tostring(lua_State *L) {
  watchbox *b = luaL_checkudata(L, 1, WATCH);
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, "corio.signal.Watch (");
  if (!b->s) luaL_addstring(&buf, "closed");
  for (int i = 0; b->s && i < b->s->n; i++) {
    if (i) luaL_addstring(&buf, ", ");
    luaL_addstring(&buf, corio__signame(b->s->h[i].signum));
  }
  luaL_addchar(&buf, ')');
  luaL_pushresult(&buf);
  return 1;
}

/* corio._signal.watched(name) -> number of open watches of SIGINT, SIGTERM or SIGUSR1 */
static int sig_watched(lua_State *L) {
  int num = corio__signum(luaL_checkstring(L, 1));
  if (!num) return luaL_argerror(L, 1, "unknown signal");
  lua_pushinteger(L, corio__signal_watchers(num));
  return 1;
}

/* corio._signal.kill(pid, name) -> true | nil, msg, code */
static int sig_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  const char *name = luaL_checkstring(L, 2);
  int num = corio__signum(name);
  if (!num) return luaL_error(L, "kill: unknown signal '%s'", name);
  int r = uv_kill((int)pid, num);
  if (r) {
    lua_pushfstring(L, "%d", (int)pid);
    return corio__fail(L, "kill", lua_tostring(L, -1), r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg methods[] = {{"next", watch_next}, {"close", watch_close}, {NULL, NULL}};
static const luaL_Reg meta[] = {{"__call", watch_next},
                                {"__close", watch_close},
                                {"__gc", watch_close},
                                {"__tostring", watch_tostring},
                                {NULL, NULL}};
static const luaL_Reg funcs[] = {
  {"watch", sig_watch}, {"watched", sig_watched}, {"kill", sig_kill}, {NULL, NULL}};

int luaopen_corio_signal(lua_State *L) {
  corio__class(L, WATCH, methods, meta);
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
