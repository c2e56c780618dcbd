/* The corio command: a drop-in for `lua` (same options, `arg` table, messages and exit codes)
 * whose scripts can also use corio. The whole command runs inside one protected call; after
 * the script the loop runs until no task is left. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio_signal.h"
#include "host.h"
#include "repl.h"

static const char *progname = "corio";
static lua_State *global_L = NULL;

/* ---- SIGINT and SIGTERM: two sets of rules -------------------------------------------------
 * A script that never touched corio (loaded no corio module) keeps lua.c's: the first Ctrl-C
 * sets a hook that raises "interrupted!" in the running Lua code, a second one kills.
 * Once corio is loaded, asyncio.run's: the first SIGINT (or SIGTERM) cancels the main task.
 * Busy top-level code still gets lua's hook; top-level code waiting in an async call is woken
 * through `wake` and its wait raises corio.Cancelled, so <close> and pcall cleanup runs (and
 * may await); after the chunk, the tasks left are cancelled and their cleanup runs. The
 * process then exits with 128 + the signal's number. A second signal kills at once.
 * Handlers never run Lua: they set hooks (lua_sethook is async-signal-safe) and poke the loop
 * (uv_async_send is too). A corio.signal watch or run_app's watcher of a signal takes it over:
 * libuv's handler replaces ours while they watch, and we never install over theirs. */

#define HOOK_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT)
#define TASK_HOOK_COUNT 100000 /* instructions a task may run after a signal before it is hooked */

static volatile sig_atomic_t touched;      /* a corio module was loaded: asyncio's rules */
static volatile sig_atomic_t first_signal; /* the signal acted on under asyncio's rules, or 0 */
static volatile sig_atomic_t pending;      /* that signal, until the loop or a hook acted on it */
static volatile sig_atomic_t in_docall;    /* a chunk of the command runs (not the REPL's) */
static int after_chunk;                    /* the script is over: the loop runs the tasks left */
static int cancel_left;                    /* a signal came after the chunk: cancel the tasks */
static corio_runtime *global_rt = NULL;
static uv_async_t wake;                    /* the handler pokes the loop through it */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* Busy top-level code under asyncio's rules: as lua's hook, unless the loop got there first
 * (the hook also lands on threads that run no more Lua before the loop acts). */
static void top_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (!pending || corio__in_loop(global_rt)) return;
  pending = 0;
  luaL_error(L, "interrupted!");
}

/* A task that kept running for TASK_HOOK_COUNT instructions since the signal (the loop could
 * not act on it) fails with "interrupted!"; the loop then cancels what the signal cancels. */
static void task_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (pending && corio__in_loop(global_rt)) luaL_error(L, "interrupted!");
}

static void on_signal(int sig) {
  if (!touched || first_signal) {
    signal(sig, SIG_DFL); /* a second signal kills the process */
    if (first_signal || sig != SIGINT) raise(sig); /* delivered once this handler returns */
    else lua_sethook(global_L, stop_hook, HOOK_MASK, 1);
    return;
  }
  first_signal = pending = sig;
  corio__hook_signal(global_rt, global_L, top_hook, task_hook, TASK_HOOK_COUNT);
  uv_async_send(&wake);
}

static void wake_cb(uv_async_t *h) {
  (void)h;
  if (!pending) return;
  pending = 0;
  if (after_chunk) cancel_left = 1; /* done by the loop's driver, outside libuv's callback */
  else corio__cancel_main(global_L);
}

/* Install on_signal for sig unless a corio.signal watch, another libuv watcher (run_app) or an
 * ignored SIGTERM (nohup) has it. An ignored SIGINT is taken over, as lua does (a background
 * job of a non-interactive shell starts with SIGINT ignored). */
static void catch_signal(int sig, struct sigaction *saved) {
  struct sigaction cur, sa;
  if (corio__signal_watchers(sig) > 0 || sigaction(sig, NULL, &cur) != 0) return;
  if (cur.sa_handler == on_signal) return;
  if (cur.sa_handler != SIG_DFL && !(sig == SIGINT && cur.sa_handler == SIG_IGN)) return;
  if (saved) *saved = cur;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* Put back what catch_signal replaced, if on_signal still has the signal. */
static void release_signal(int sig, const struct sigaction *saved) {
  struct sigaction cur;
  if (sigaction(sig, NULL, &cur) == 0 && cur.sa_handler == on_signal) sigaction(sig, saved, NULL);
}

static struct sigaction dfl_action; /* SIG_DFL, set up in main */

/* A package.preload entry of a corio module, wrapped: loading it switches to asyncio's rules
 * (upvalue 1 is the original loader). */
static int touch_loader(lua_State *L) {
  touched = 1;
  if (in_docall) catch_signal(SIGTERM, NULL);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void wrap_corio_loaders(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strncmp(name, "corio", 5) == 0 && (name[5] == '\0' || name[5] == '.')) {
      lua_pushcclosure(L, touch_loader, 1);
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4); /* replacing the value of an existing key: lua_next goes on */
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* ---- messages ---------------------------------------------------------------------------- */

static void message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    message(progname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (first_signal && corio__is_cancelled(L, 1)) /* the signal's cancellation */
    msg = first_signal == SIGTERM ? "terminated!" : "interrupted!";
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  if (corio__push_reraised_traceback(L, 1)) {
    /* corio.run re-raised a task's error: where it happened, then who awaited it */
    luaL_traceback(L, L, NULL, 1);
    const char *awaited = lua_tostring(L, -1) + sizeof "stack traceback:" - 1;
    lua_pushfstring(L, "%s\n%s\n\t(re-raised by corio.run)%s", msg, lua_tostring(L, -2), awaited);
    return 1;
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int corio__docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  global_L = L;
  struct sigaction old_int = dfl_action, old_term = dfl_action;
  if (!first_signal) {
    catch_signal(SIGINT, &old_int);
    if (touched) catch_signal(SIGTERM, &old_term);
  }
  in_docall = 1;
  int status = lua_pcall(L, narg, nres, base);
  in_docall = 0;
  release_signal(SIGINT, &old_int);
  release_signal(SIGTERM, &old_term);
  lua_remove(L, base);
  return status;
}

static void print_version(void) {
  printf("corio %s (libuv %s) -- %s\n", CORIO_VERSION, uv_version_string(), LUA_COPYRIGHT);
  fflush(stdout);
}

static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
  fflush(stderr);
}

/* ---- the arg table and running chunks ----------------------------------------------------- */

static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;  /* no script: arg[0] is the program */
  int narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = corio__docall(L, 0, 0);
  return report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

static int dolibrary(lua_State *L, char *spec) {
  char *eq = strchr(spec, '=');
  const char *mod = spec, *glob = spec;
  if (eq) {
    *eq = '\0';
    mod = eq + 1;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  int status = corio__docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, glob);
  return report(L, status);
}

static int push_script_args(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  int i;
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;  /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = push_script_args(L);
    status = corio__docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* ---- options ----------------------------------------------------------------------------- */

#define HAS_ERROR 1
#define HAS_I 2
#define HAS_V 4
#define HAS_E 8
#define HAS_EXEC 16

static int collect_args(char **argv, int *first) {
  int flags = 0, i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return flags;
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] != '\0') return HAS_ERROR;
        *first = i + 1;
        return flags;
      case '\0':
        return flags;
      case 'E':
        if (argv[i][2] != '\0') return HAS_ERROR;
        flags |= HAS_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return HAS_ERROR;
        break;
      case 'i':
        flags |= HAS_I;
        /* -i implies -v */
        /* fall through */
      case 'v':
        if (argv[i][2] != '\0') return HAS_ERROR;
        flags |= HAS_V;
        break;
      case 'e':
        flags |= HAS_EXEC; /* fall through */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return HAS_ERROR;
        }
        break;
      default:
        return HAS_ERROR;
    }
  }
  *first = i;
  return flags;
}

static int run_args(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    int opt = argv[i][1];
    switch (opt) {
      case 'e':
      case 'l': {
        char *extra = argv[i] + 2;
        if (*extra == '\0') extra = argv[++i];
        int status = opt == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W':
        lua_warning(L, "@on", 0);
        break;
    }
  }
  return 1;
}

static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, name);
}

/* ---- the end of the script ----------------------------------------------------------------- */

static int cancel_tasks_p(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "corio.core");
  lua_getfield(L, -1, "_cancel_all");
  lua_call(L, 0, 0);
  return 0;
}

/* The script is over: run the loop until no task is left. Under asyncio's rules, a signal
 * meanwhile cancels the tasks left and, once their cleanup has run, ends the wait even if some
 * handle (a listener nobody closed) would keep the loop alive. */
static int run_tasks_left(lua_State *L) {
  corio_runtime *rt = corio_from_lua(L);
  if (corio__live_tasks(rt) > 0) touched = 1; /* corio.core used directly */
  if (!touched || first_signal) return corio__run_until_idle(rt);
  struct sigaction old_int = dfl_action, old_term = dfl_action;
  int stopping = 0;
  after_chunk = 1;
  catch_signal(SIGINT, &old_int);
  catch_signal(SIGTERM, &old_term);
  while (corio__turn(rt, UV_RUN_ONCE, NULL)) {
    if (cancel_left) {
      cancel_left = 0;
      stopping = 1;
      lua_pushcfunction(L, cancel_tasks_p);
      if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    if (stopping && corio__live_tasks(rt) == 0) break;
  }
  release_signal(SIGINT, &old_int);
  release_signal(SIGTERM, &old_term);
  return stopping ? 0 : corio__run_until_idle(rt);
}

/* ---- main ------------------------------------------------------------------------------- */

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int script, flags = collect_args(argv, &script);
  if (flags == HAS_ERROR) {
    print_usage(argv[script]);
    return 0;
  }
  if (flags & HAS_V) print_version();
  if (flags & HAS_E) {
    /* -E: LUA_PATH and LUA_CPATH are ignored; the state was opened before we knew, so reset
     * the paths to the defaults as package.searchers would compute them. */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    lua_getglobal(L, "package");
    lua_pushliteral(L, LUA_PATH_DEFAULT);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, LUA_CPATH_DEFAULT);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
  }
  create_arg_table(L, argv, argc, script);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(flags & HAS_E) && handle_luainit(L) != LUA_OK) return 0;
  if (!run_args(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (flags & HAS_I) {
    if (corio__repl(L) != 0) return 0;
  } else if (script == argc && !(flags & (HAS_EXEC | HAS_V))) {
    if (isatty(0)) {
      print_version();
      if (corio__repl(L) != 0) return 0;
    } else if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) {
      return 0;
    }
  }
  if (run_tasks_left(L) == CORIO_ENOMEM) {
    lua_pushliteral(L, "not enough memory");
    return lua_error(L);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- SIGUSR1: a dump of the tasks, Go-style, without stopping ----------------------------
 * The command (not an embedding runtime) answers SIGUSR1 by writing corio.dump()'s task tree
 * to stderr. libuv delivers the signal to the loop, so the dump runs between two tasks, never
 * inside one; it runs the runtime's own Lua (scripts/corio/obs.lua) under a protected call. */
static uv_signal_t usr1;

static void usr1_cb(uv_signal_t *h, int sig) {
  lua_State *L = h->data;
  (void)sig;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) return;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio.obs");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_getfield(L, -1, "dump") == LUA_TFUNCTION &&
      lua_pcall(L, 0, 0, 0) == LUA_OK) {
    lua_settop(L, top);
    return;
  }
  if (lua_type(L, -1) == LUA_TSTRING) message(progname, lua_tostring(L, -1));
  lua_settop(L, top);
}

static int unretrieved = 0;

/* Unretrieved task errors: printed as they are reported, and they fail the command. */
static void on_task_error(void *ud, const char *msg) {
  (void)ud;
  unretrieved++;
  fflush(stdout);
  message(NULL, msg);
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) progname = argv[0];
  /* glibc moves its mmap and trim thresholds as a program runs. Then a stream of ~128 KiB
   * blocks (a bulk transfer's reads, and the strings they become) lands at the top of the heap,
   * which free() trims and the next malloc faults back in page by page: 20,000-140,000 page
   * faults per GiB received, a third of the reader's CPU (bench/net/bulk.sh). Fixed thresholds
   * keep those blocks; host/alloc.c still gives memory back with malloc_trim after a burst.
   * The command only: a program that embeds corio has its own malloc policy. */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  corio_runtime *rt = corio_open(NULL);
  if (!rt) {
    message(progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  corio_set_error_handler(rt, on_task_error, NULL);
  lua_State *L = corio_lua(rt);
  global_rt = rt;
  global_L = L;
  dfl_action.sa_handler = SIG_DFL;
  sigemptyset(&dfl_action.sa_mask);
  uv_async_init(corio_loop(rt), &wake, wake_cb);
  uv_unref((uv_handle_t *)&wake); /* it never keeps the loop alive */
  corio__own_handle(rt, (uv_handle_t *)&wake);
  uv_signal_init(corio_loop(rt), &usr1);
  usr1.data = L;
  uv_signal_start(&usr1, usr1_cb, SIGUSR1);
  uv_unref((uv_handle_t *)&usr1); /* nor does the dump's signal */
  corio__own_handle(rt, (uv_handle_t *)&usr1);
  wrap_corio_loaders(L);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int result = lua_toboolean(L, -1);
  report(L, status);
  fflush(stdout);
  uv_close((uv_handle_t *)&wake, NULL);
  uv_close((uv_handle_t *)&usr1, NULL);
  corio_close(rt);  /* finalizers report the task errors nobody retrieved */
  int failed = !result || status != LUA_OK || unretrieved > 0;
  /* a signal under asyncio's rules: the error it raised reached the top, or it ended the wait
   * for the tasks left */
  if (first_signal && (failed || after_chunk)) return 128 + first_signal;
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
