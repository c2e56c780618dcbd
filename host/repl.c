/* The REPL of the corio command, with Lua 5.4's rules (expressions print their values, an
 * incomplete chunk continues on a ">>" prompt, "=expr"). On a terminal, stdin is a uv_poll_t
 * feeding libedit in callback mode, so the loop (and every background task) keeps running while
 * the prompt waits; an entered chunk then runs as top-level code outside uv_run, where its async
 * calls drive the loop themselves. With piped stdin it reads, prompts and echoes as `lua -i`,
 * and the loop runs while a pipe has no line yet.
 * Globals of a session (scripts/corio/repl.lua): corio, tasks(). */
#define _XOPEN_SOURCE 700 /* wcwidth */
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lualib.h>

#include "host.h"
#include "repl.h"

#define HISTORY_MAX 1000

enum { /* what the REPL is doing: decides what a Ctrl-C means */
  IDLE,     /* between a line and its chunk, or not started */
  PROMPT,   /* waiting for input: Ctrl-C clears the line */
  RUNNING,  /* a chunk runs: Ctrl-C interrupts it */
  EXITING   /* cancelled tasks are finishing: Ctrl-C quits at once */
};

enum { READ_LINE, READ_EOF, READ_INTERRUPT, READ_EXIT };

/* One REPL per process: signal handlers and libedit's callbacks take no user data. */
static struct {
  lua_State *L;
  corio_runtime *rt;
  int tty;                               /* stdin is a terminal: line editing with libedit */
  int polled;                            /* stdin is a pipe the loop can watch */
  volatile sig_atomic_t state;
  volatile sig_atomic_t interrupts;      /* Ctrl-C presses not yet handled */
  uv_poll_t input;                       /* stdin while the prompt waits */
  uv_async_t wake;                       /* the SIGINT handler pokes the loop through it */
  uv_signal_t winch, cont;
  uv_timer_t slow_exit;                  /* says why leaving takes long */
  void (*old_int)(int), (*old_hup)(int), (*old_term)(int);  /* dispositions to put back */
  int flags;                             /* stdin's file status flags at start */
  struct termios tio;                    /* and its terminal settings */
  int have_tio;
  const char *prompt;
  char *line;                            /* a line delivered by libedit */
  int result;                            /* READ_* once the wait for a line is over, or -1 */
  int hidden;                            /* prompt erased while background output prints */
  int at_bol;                            /* that output ended with a newline */
  char *history;                         /* history file, or NULL */
  int helpers;                           /* ref: the corio.repl module */
  int os_exit;                           /* ref: the original os.exit, back at the end */
  corio_error_handler prev_handler;
  void *prev_ud;
  int exit_requested, exit_status, exit_close;  /* os.exit() called */
} R;

static char EXIT_SENTINEL;  /* the error that unwinds a chunk calling os.exit() */

/* ---- the terminal as we found it ------------------------------------------------------------ */

/* Async-signal-safe: fcntl and tcsetattr only. libuv set O_NONBLOCK on stdin, a file description
 * the parent shell shares; libedit may have left raw mode on. */
static void restore_terminal_flags(void) {
  if (R.flags != -1) fcntl(0, F_SETFL, R.flags);
}

static void restore_terminal(void) {
  restore_terminal_flags();
  if (R.have_tio) tcsetattr(0, TCSANOW, &R.tio);
}

static void on_fatal_signal(int sig) {
  restore_terminal();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* ---- Ctrl-C ---------------------------------------------------------------------------------
 * The handler never runs Lua. Busy top-level code gets a debug hook (as in lua.c); code waiting
 * inside the loop is reached through `wake`, whose callback interrupts the wait. If the loop
 * does not answer (a background task spins), a second Ctrl-C hooks the running task, and a third
 * one ends the process, leaving the terminal as it was found. */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  R.interrupts = 0;
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  int n = ++R.interrupts;
  if (R.state == EXITING || n >= 3 || (R.state == PROMPT && !R.tty)) {
    on_fatal_signal(sig);
    return;
  }
  /* busy top-level code (perhaps inside coroutines it resumed), or from the second Ctrl-C on,
   * a task that does not yield */
  corio__hook_running(R.rt, R.L, stop_hook,
                      LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT,
                      R.state == RUNNING, n >= 2);
  uv_async_send(&R.wake);
}

static void wake_cb(uv_async_t *h) {
  (void)h;
  if (R.interrupts == 0) return;
  R.interrupts = 0;
  if (R.state == PROMPT) {
    fputs("^C\n", stdout);
    fflush(stdout);
    R.result = READ_INTERRUPT;
  } else if (R.state == RUNNING) {
    corio__interrupt_main(R.L);
  }
}

static void signal_cb(uv_signal_t *h, int signum) {
  (void)h;
  if (R.state != PROMPT) return;
  if (signum == SIGWINCH) {
    rl_resize_terminal();
  } else {  /* SIGCONT after Ctrl-Z: the shell put the terminal back in its own mode */
    rl_deprep_terminal();
    rl_prep_terminal(0);
    fputc('\n', stdout);
    rl_forced_update_display();
  }
}

/* ---- output from background tasks while the prompt waits ------------------------------------
 * print, io.write, file:write on stdout/stderr and task error reports first erase the prompt and
 * the partial line; they are drawn again once the loop turn is over. */

static size_t display_width(const char *s, size_t len) {
  mbstate_t st;
  size_t w = 0;
  memset(&st, 0, sizeof st);
  while (len > 0) {
    wchar_t wc;
    size_t n = mbrtowc(&wc, s, len, &st);
    if (n == 0) break;
    if (n == (size_t)-1 || n == (size_t)-2) {  /* a stray byte: one column, as terminals do */
      w++;
      s++;
      len--;
      memset(&st, 0, sizeof st);
      continue;
    }
    int cw = wcwidth(wc);
    w += cw > 0 ? (size_t)cw : 0;
    s += n;
    len -= n;
  }
  return w;
}

static void hide_prompt(void) {
  if (R.state != PROMPT || R.hidden || !R.tty) return;
  struct winsize ws;
  size_t cols = ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
  size_t w = display_width(R.prompt, strlen(R.prompt));
  if (rl_line_buffer && rl_point > 0) w += display_width(rl_line_buffer, (size_t)rl_point);
  size_t up = w / cols;
  fputc('\r', stdout);
  if (up > 0) fprintf(stdout, "\x1b[%zuA", up);
  fputs("\x1b[J", stdout);
  fflush(stdout);
  R.hidden = 1;
  R.at_bol = 1;
}

/* libedit 3.1's readline emulation has gaps here: rl_redisplay() pushes the reprint key (^R)
 * into the input, where it starts a history search, and rl_replace_line("") does nothing.
 * rl_forced_update_display() (EL_REFRESH) forgets what is on screen and draws the prompt and
 * the line again from the cursor, which is what a redraw after erasing needs. */
static void show_prompt(void) {
  if (!R.hidden) return;
  R.hidden = 0;
  fflush(stderr);
  if (!R.at_bol) fputc('\n', stdout);
  rl_forced_update_display();
}

/* Whether the values in [first, top] written out end a line. */
static int ends_line(lua_State *L, int first) {
  for (int i = lua_gettop(L); i >= first; i--) {
    size_t len;
    if (lua_type(L, i) == LUA_TSTRING) {
      const char *s = lua_tolstring(L, i, &len);
      if (len > 0) return s[len - 1] == '\n';
    } else if (lua_type(L, i) == LUA_TNUMBER) {
      return 0;
    }
  }
  return R.at_bol;
}

/* The wrappers of print, io.write and file:write: upvalue 1 is the original. */
static int wrapped_output(lua_State *L, int first) {
  int n = lua_gettop(L);
  if (R.state == PROMPT) hide_prompt();
  int bol = first ? ends_line(L, first) : 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  if (R.state == PROMPT) {
    fflush(stdout);
    R.at_bol = bol;
  }
  return lua_gettop(L);
}

/* print(...) */
static int repl_print(lua_State *L) {
  return wrapped_output(L, 0);
}

/* io.write(...) -> file | nil, msg, code */
static int repl_io_write(lua_State *L) {
  return wrapped_output(L, 1);
}

/* file:write(...) -> file | nil, msg, code */
static int repl_file_write(lua_State *L) {
  luaL_Stream *s = luaL_testudata(L, 1, LUA_FILEHANDLE);
  if (s && (s->f == stdout || s->f == stderr)) return wrapped_output(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void on_task_error(void *ud, const char *msg) {
  (void)ud;
  hide_prompt();
  R.prev_handler(R.prev_ud, msg);
  R.at_bol = 1;
}

/* Replace the function `name` of the table on top by `fn` wrapping it. */
static void wrap_field(lua_State *L, const char *name, lua_CFunction fn) {
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, -2, name);
}

/* ---- os.exit ---------------------------------------------------------------------------------
 * Leaving the REPL through os.exit is leaving it as Ctrl-D does: background tasks are cancelled
 * and their cleanup runs, the history is saved, the terminal restored; then the process exits
 * with the code (closing the state first when asked, as os.exit does). */

/* os.exit([code [, close]]) -- does not return */
static int repl_exit(lua_State *L) {
  if (lua_isboolean(L, 1)) R.exit_status = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else R.exit_status = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  R.exit_close = lua_toboolean(L, 2);
  R.exit_requested = 1;
  int running = corio__running(L);
  if (running == CORIO_RUNNING_TASK) {
    /* inside a task: it ends cancelled; the REPL notices the request after this loop turn */
    return corio__cancel_running(L);
  }
  if (running == CORIO_RUNNING_MAIN) {
    lua_pushlightuserdata(L, &EXIT_SENTINEL);
    return lua_error(L);
  }
  return 0;  /* a done callback cannot unwind anything: the REPL leaves after this turn */
}

/* ---- running a chunk ---------------------------------------------------------------------- */

/* The message handler of a chunk (as lua.c's): a traceback, or the os.exit sentinel as is. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (lua_touserdata(L, 1) == &EXIT_SENTINEL) return 1;
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  R.interrupts = 0;
  R.state = RUNNING;
  int status = lua_pcall(L, narg, nres, base);
  R.state = IDLE;
  if (lua_gethook(L) == stop_hook) lua_sethook(L, NULL, 0, 0);  /* a Ctrl-C came too late */
  R.interrupts = 0;
  lua_remove(L, base);
  return status;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK) {
    corio__push_errmsg(L, -1);
    fprintf(stderr, "error calling 'print' (%s)\n", lua_tostring(L, -1));
    fflush(stderr);
  }
}

static void report(lua_State *L, int status) {
  if (status == LUA_OK) return;
  if (lua_touserdata(L, -1) != &EXIT_SENTINEL) {
    corio__push_errmsg(L, -1);
    fflush(stdout);
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* ---- waiting for a line ---------------------------------------------------------------------- */

/* One turn of the loop, as a top-level await takes it. The prompt comes back before the loop may
 * block: tasks run here can print as well as those the loop runs. */
static int prompt_back(corio_runtime *rt) {
  (void)rt;
  if (R.hidden) show_prompt();
  return R.exit_requested;
}

static void loop_turn(void) {
  corio__turn(R.rt, UV_RUN_ONCE, prompt_back);
}

static void on_line(char *line) {
  R.line = line;
  R.result = line ? READ_LINE : READ_EOF;
}

static void input_cb(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)events;
  int avail = 0;
  if (status < 0 || ioctl(0, FIONREAD, &avail) != 0 || avail == 0) {
    R.result = READ_EOF;  /* error or hangup */
    return;
  }
  /* libedit reads one key (sequence) per call: take what is there, up to a complete line */
  while (R.result < 0 && avail > 0) {
    rl_callback_read_char();
    if (ioctl(0, FIONREAD, &avail) != 0) break;
  }
}

static int tty_read(const char *prompt, char **line) {
  R.prompt = prompt;
  R.line = NULL;
  R.result = -1;
  R.hidden = 0;
  R.at_bol = 1;
  R.state = PROMPT;
  rl_callback_handler_install(prompt, on_line);
  uv_poll_start(&R.input, UV_READABLE, input_cb);
  while (R.result < 0) {
    if (R.exit_requested) R.result = READ_EXIT;
    else loop_turn();
    if (R.hidden && R.result < 0) show_prompt();
  }
  uv_poll_stop(&R.input);
  R.state = IDLE;
  rl_callback_handler_remove();
  *line = R.line;
  return R.result;
}

static void readable_cb(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)status;
  (void)events;
  R.result = READ_LINE;  /* data or the end of input: getline tells which */
}

/* Piped input: prompt and echo as lua -i does. The loop runs until input is there (a pipe or
 * a socket; a regular file is always ready, and ready tasks get one turn before each line). */
static int pipe_read(const char *prompt, char **line) {
  char *buf = NULL;
  size_t cap = 0;
  if (!R.polled && corio__has_ready(R.rt)) corio__turn(R.rt, UV_RUN_NOWAIT, NULL);
  if (R.exit_requested) return READ_EXIT;
  fputs(prompt, stdout);
  fflush(stdout);
  R.state = PROMPT;
  if (R.polled) {
    R.result = -1;
    uv_poll_start(&R.input, UV_READABLE, readable_cb);
    while (R.result < 0 && !R.exit_requested) loop_turn();
    uv_poll_stop(&R.input);
    if (R.result < 0) {
      R.state = IDLE;
      return READ_EXIT;
    }
  }
  ssize_t n = getline(&buf, &cap, stdin);
  R.state = IDLE;
  if (n < 0) {
    free(buf);
    return READ_EOF;
  }
  if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  if (!isatty(0)) fprintf(stdout, "%s\n", buf);  /* the echo a terminal would have given */
  fflush(stdout);
  *line = buf;
  return READ_LINE;
}

static const char *get_prompt(lua_State *L, int first) {
  const char *key = first ? "corio.repl.prompt" : "corio.repl.prompt2";
  if (lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    return first ? "> " : ">> ";
  }
  const char *p = luaL_tolstring(L, -1, NULL);
  lua_setfield(L, LUA_REGISTRYINDEX, key);  /* keeps the string alive */
  lua_pop(L, 1);
  return p;
}

/* Push a line read with `prompt`; returns a READ_* status. */
static int push_line(lua_State *L, int first) {
  char *line = NULL;
  const char *prompt = get_prompt(L, first);
  int st = R.tty ? tty_read(prompt, &line) : pipe_read(prompt, &line);
  if (st != READ_LINE) return st;
  if (first && line[0] == '=') lua_pushfstring(L, "return %s", line + 1);
  else lua_pushstring(L, line);
  free(line);
  return READ_LINE;
}

static void save_line(const char *line) {
  if (!R.tty || line[0] == '\0') return;
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last && last->line && strcmp(last->line, line) == 0) return;
  add_history(line);
}

static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= 5 && strcmp(msg + lmsg - 5, "<eof>") == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Read and compile a chunk: first the line as `return line;`, then as statements, with more
 * lines while it is incomplete. Leaves the function or the error message on the stack and
 * returns a Lua status, or -(READ_*) when no chunk was read. */
static int load_chunk(lua_State *L) {
  int st = push_line(L, 1);
  if (st != READ_LINE) return -st;
  const char *line = lua_tostring(L, 1);
  const char *ret = lua_pushfstring(L, "return %s;", line);
  if (luaL_loadbuffer(L, ret, strlen(ret), "=stdin") == LUA_OK) {
    save_line(line);
    lua_remove(L, -2);
    lua_remove(L, 1);
    return LUA_OK;
  }
  lua_pop(L, 2);
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, code, len, "=stdin");
    if (!incomplete(L, status)) {
      save_line(code);
      lua_remove(L, 1);
      return status;
    }
    st = push_line(L, 0);
    if (st == READ_EOF) {
      /* end of input inside a chunk: it is dropped with its error, and the next prompt
       * comes (as in lua); a second end of input leaves */
      if (R.tty) fputc('\n', stdout);
      status = luaL_loadbuffer(L, code, len, "=stdin");
      lua_remove(L, 1);
      return status;
    }
    if (st != READ_LINE) return -st;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* ---- line editing ---------------------------------------------------------------------------- */

/* libedit's completion hook: candidates come from corio.repl.complete(word). */
static char **complete(const char *text, int start, int end) {
  lua_State *L = R.L;
  char **m = NULL;
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1;  /* no file name completion as a fallback */
  lua_checkstack(L, 4);
  int top = lua_gettop(L);
  corio__push_anchor(L, R.helpers);
  lua_getfield(L, -1, "complete");
  lua_pushstring(L, text);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
    size_t n = (size_t)luaL_len(L, -1);
    if (n > 0 && (m = calloc(n + 2, sizeof *m)) != NULL) {
      /* m[0] is the longest common prefix, m[1..n] the candidates, then NULL */
      size_t common = SIZE_MAX, i;
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        const char *s = lua_tostring(L, -1);
        m[i] = strdup(s ? s : "");
        lua_pop(L, 1);
        if (m[i] == NULL) break;
        size_t j = 0;
        while (m[1][j] && m[1][j] == m[i][j]) j++;
        if (j < common) common = j;
      }
      if (i <= n || (m[0] = strndup(m[1], common)) == NULL) {  /* out of memory: no list */
        for (i = 1; i <= n && m[i]; i++) free(m[i]);
        free(m);
        m = NULL;
      }
    }
  }
  lua_settop(L, top);
  return m;
}

static void history_open(void) {
  const char *path = getenv("CORIO_HISTORY");
  if (path == NULL) {
    const char *home = getenv("HOME");
    if (home && *home) {
      size_t len = strlen(home) + sizeof "/.corio_history";
      if ((R.history = malloc(len)) != NULL) snprintf(R.history, len, "%s/.corio_history", home);
    }
  } else if (*path) {
    R.history = strdup(path);
  }
  stifle_history(HISTORY_MAX);
  if (R.history) read_history(R.history);
}

static void history_save(void) {
  if (!R.history) return;
  int fd = open(R.history, O_WRONLY | O_CREAT, 0600);  /* private, if new */
  if (fd >= 0) close(fd);
  write_history(R.history);  /* at most HISTORY_MAX entries: the list is stifled */
  free(R.history);
  R.history = NULL;
}

static int editor_open(void) {
  setlocale(LC_CTYPE, "");  /* UTF-8 editing; numbers stay in the "C" locale */
  rl_readline_name = "corio";
  rl_catch_signals = 0;      /* its handlers re-raise SIGINT to the whole process group */
  rl_attempted_completion_function = complete;
  rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{()}[]+-*/%^~#,";  /* not . or : */
  rl_completion_append_character = '\0';
  if (rl_initialize() != 0) return -1;
  history_open();
  return 0;
}

/* ---- the session ---------------------------------------------------------------------------- */

static void start(lua_State *L) {
  corio_runtime *rt = corio_from_lua(L);
  memset(&R, 0, sizeof R);
  R.L = L;
  R.rt = rt;
  R.tty = isatty(0);
  R.flags = fcntl(0, F_GETFL);
  R.have_tio = tcgetattr(0, &R.tio) == 0;
  R.state = IDLE;
  R.helpers = R.os_exit = LUA_NOREF;
  /* the helpers (corio, tasks) and the wrapped output functions */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio.repl");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "setup");
  lua_call(L, 0, 0);
  R.helpers = corio__anchor(L, -1);
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  wrap_field(L, "print", repl_print);
  lua_getfield(L, -1, "os");
  lua_getfield(L, -1, "exit");
  R.os_exit = corio__anchor(L, -1);
  lua_pop(L, 1);
  lua_pushcfunction(L, repl_exit);
  lua_setfield(L, -2, "exit");
  lua_getfield(L, -2, "io");
  wrap_field(L, "write", repl_io_write);
  lua_pop(L, 3);
  if (luaL_getmetatable(L, LUA_FILEHANDLE) == LUA_TTABLE &&
      lua_getfield(L, -1, "__index") == LUA_TTABLE) {
    wrap_field(L, "write", repl_file_write);
  }
  lua_settop(L, 0);
  R.prev_handler = corio__error_handler(rt, &R.prev_ud);
  corio_set_error_handler(rt, on_task_error, NULL);
  corio__set_eager_report(rt, 1);  /* a failed background task is shown when it fails */
  uv_async_init(corio_loop(rt), &R.wake, wake_cb);
  uv_unref((uv_handle_t *)&R.wake);  /* a waiting chunk still learns it would wait forever */
  R.old_int = signal(SIGINT, on_sigint);
  /* without libedit or a pollable stdin, a terminal is read as a pipe is (without the echo) */
  if (R.tty && (editor_open() != 0 || uv_poll_init(corio_loop(rt), &R.input, 0) != 0)) R.tty = 0;
  if (!R.tty && !isatty(0) && uv_poll_init(corio_loop(rt), &R.input, 0) == 0) {
    /* a pipe: unbuffered, so that a line read ahead never hides in stdio's buffer while the
     * loop waits for the descriptor (and a chunk's io.read() gets the very next line) */
    restore_terminal_flags();
    setvbuf(stdin, NULL, _IONBF, 0);
    R.polled = 1;
  }
  if (R.tty) {
    R.old_hup = signal(SIGHUP, on_fatal_signal);
    R.old_term = signal(SIGTERM, on_fatal_signal);
    /* uv_poll_init made stdin non-blocking: undo it at once. The loop only polls it, libedit
     * reads only when a key is there, and a chunk calling io.read() needs it blocking. */
    restore_terminal_flags();
    uv_signal_init(corio_loop(rt), &R.winch);
    uv_signal_start(&R.winch, signal_cb, SIGWINCH);
    uv_unref((uv_handle_t *)&R.winch);
    uv_signal_init(corio_loop(rt), &R.cont);
    uv_signal_start(&R.cont, signal_cb, SIGCONT);
    uv_unref((uv_handle_t *)&R.cont);
  }
}

static void slow_exit_cb(uv_timer_t *h) {
  int n = corio__live_tasks(R.rt);
  (void)h;
  if (n == 0) return;
  fprintf(stderr, "corio: waiting for %d cancelled task%s to finish (Ctrl-C quits at once)\n", n,
          n == 1 ? "" : "s");
  fflush(stderr);
}

/* Leave: cancel the background tasks and let their cleanup run, then put everything back. A
 * task that ignores its cancellation keeps the REPL waiting: after a second it says so, and
 * Ctrl-C then ends the process. */
static void finish(lua_State *L) {
  corio_runtime *rt = R.rt;
  R.state = EXITING;
  lua_settop(L, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio.core");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    lua_getfield(L, -1, "_cancel_all");
    lua_pcall(L, 0, 0, 0);
  }
  lua_settop(L, 0);
  uv_timer_init(corio_loop(rt), &R.slow_exit);
  uv_timer_start(&R.slow_exit, slow_exit_cb, 1000, 0);
  uv_unref((uv_handle_t *)&R.slow_exit);
  corio__run_until_idle(rt);
  uv_close((uv_handle_t *)&R.slow_exit, NULL);
  if (!R.tty) free(R.history);  /* editing fell back to plain reads: nothing to save */
  if (R.polled) uv_close((uv_handle_t *)&R.input, NULL);
  if (R.tty) {
    history_save();
    uv_close((uv_handle_t *)&R.input, NULL);
    uv_close((uv_handle_t *)&R.winch, NULL);
    uv_close((uv_handle_t *)&R.cont, NULL);
  }
  uv_close((uv_handle_t *)&R.wake, NULL);
  uv_run(corio_loop(rt), UV_RUN_NOWAIT);  /* the close callbacks */
  corio__unanchor(L, R.helpers);
  lua_getglobal(L, "os");
  if (lua_istable(L, -1)) {
    corio__push_anchor(L, R.os_exit);
    lua_setfield(L, -2, "exit");
  }
  lua_pop(L, 1);
  corio__unanchor(L, R.os_exit);
  corio_set_error_handler(rt, R.prev_handler, R.prev_ud);
  fflush(stdout);
  restore_terminal();
  signal(SIGINT, R.old_int == SIG_ERR ? SIG_DFL : R.old_int);
  if (R.tty) {
    signal(SIGHUP, R.old_hup == SIG_ERR ? SIG_DFL : R.old_hup);
    signal(SIGTERM, R.old_term == SIG_ERR ? SIG_DFL : R.old_term);
  }
  R.state = IDLE;
}

/* Ctrl-D on a terminal while tasks (a server among them) still run: say what runs and how to
 * stop it, and return 1; a second Ctrl-D in a row then leaves. Piped input just ends. */
static int say_running(lua_State *L) {
  if (!R.tty || corio__live_tasks(R.rt) == 0) return 0;
  corio__push_anchor(L, R.helpers);
  lua_getfield(L, -1, "running_summary");
  int said = lua_pcall(L, 0, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING;
  if (said) {
    fprintf(stdout, "%s\n", lua_tostring(L, -1));
    fflush(stdout);
  }
  lua_pop(L, 2);
  return said;
}

int corio__repl(lua_State *L) {
  int warned = 0;
  start(L);
  for (;;) {
    lua_settop(L, 0);
    int status = load_chunk(L);
    if (status == -READ_INTERRUPT) continue;
    if (status < 0) {
      fputc('\n', stdout);  /* leave the prompt's line, as lua does at the end of input */
      if (status == -READ_EOF && !warned && (warned = say_running(L))) continue;
      break;
    }
    warned = 0;
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) print_results(L);
    else report(L, status);
    if (R.exit_requested) break;
  }
  lua_settop(L, 0);
  finish(L);
  if (R.exit_requested) {
    if (R.exit_close) corio_close(R.rt);
    exit(R.exit_status);
  }
  return 0;
}
