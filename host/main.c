/* The corio command: a drop-in for `lua` (same options, `arg` table, messages and exit codes)
 * whose scripts can also use corio. The whole command runs inside one protected call; after
 * the script the loop runs until no task is left. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "runtime.h"
#include "repl.h"

static const char *progname = "corio";
static lua_State *global_L = NULL;

/* ---- Ctrl-C: a debug hook stops the running Lua code (never Lua from a handler) ----------- */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  signal(sig, SIG_DFL);  /* a second Ctrl-C kills the process */
  lua_sethook(global_L, stop_hook, mask, 1);
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
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int corio__docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  global_L = L;
  signal(SIGINT, on_sigint);
  int status = lua_pcall(L, narg, nres, base);
  signal(SIGINT, SIG_DFL);
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

/* ---- main ------------------------------------------------------------------------------- */

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  corio_runtime *rt = corio__rt(L);
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
  /* The script is over: run the loop until no task is left. */
  if (corio__run_until_idle(rt) == CORIO_ENOMEM) {
    lua_pushliteral(L, "not enough memory");
    return lua_error(L);
  }
  lua_pushboolean(L, 1);
  return 1;
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
  corio_runtime *rt = corio_open(NULL);
  if (!rt) {
    message(progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  corio_set_error_handler(rt, on_task_error, NULL);
  lua_State *L = corio_lua(rt);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int result = lua_toboolean(L, -1);
  report(L, status);
  fflush(stdout);
  corio_close(rt);  /* finalizers report the task errors nobody retrieved */
  return (result && status == LUA_OK && unretrieved == 0) ? EXIT_SUCCESS : EXIT_FAILURE;
}
