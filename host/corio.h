/* corio.h -- the one public header: embed corio (asyncio for Lua, on libuv) in a C program.
 *
 * A runtime is one lua_State plus the scheduler that runs Lua coroutines as tasks, on a libuv
 * loop that is either the application's own or one corio owns. Link with
 * `pkg-config --cflags --libs corio` or CMake's `find_package(corio)` (target corio::corio).
 *
 * Rules that hold for every function here:
 *  - Functions that can fail return 0 on success or a negative CORIO_E* status, and
 *    corio_errmsg() then says why. Nothing here exits the process, and no Lua error escapes
 *    as a longjmp: every call into Lua is protected.
 *  - Everything runs on the loop's thread, except the three *_threadsafe completions.
 *  - The Lua API is the shared liblua5.4's, which libcorio.so links (pkg-config and the CMake
 *    package bring it): use <lua.h>/<lauxlib.h> from the lua5.4 headers as usual. One Lua per
 *    process: do not link a static liblua next to libcorio.so.
 *
 * A minimal host:
 *
 *     corio_runtime *rt = corio_open(NULL);            // corio owns a loop
 *     if (corio_dostring(rt, "corio = require 'corio'  corio.sleep(0.1)", "=init") != 0)
 *       fprintf(stderr, "%s\n", corio_errmsg(rt));
 *     corio_run(rt);                                   // until no task is left
 *     corio_close(rt);
 *
 * On a loop of the application's own, corio adds a few handles (a check, an idle and a
 * timer, plus an async handle for cross-thread completions) and never runs the loop behind
 * the host's back: tasks run when the host runs the loop (uv_run, or corio_run/corio_step).
 *
 * Integrating with a foreign main loop (a GUI toolkit, a game loop, epoll of one's own):
 * watch uv_backend_fd(corio_loop(rt)) for readability, wake up after at most
 * uv_backend_timeout(corio_loop(rt)) milliseconds (-1: no timeout; it is 0 while tasks are
 * ready to run), and call corio_step(rt) whenever either happens. corio_step never blocks.
 *
 * The same runtime also loads into a stock lua5.4 as the C module corio.so (built next to
 * libcorio; `luarocks make` installs it): `require "corio"` creates a runtime with a loop of
 * its own for that lua_State, and top-level async calls drive it. There, as under `lua`, the
 * script's end closes the state: wait for what you spawned (corio.run does) or it is dropped
 * without its cleanup. */
#ifndef CORIO_H
#define CORIO_H

#include <stddef.h>

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORIO_VERSION "0.1.0"
#define CORIO_VERSION_NUM 100 /* major * 10000 + minor * 100 + patch */

/* Status codes (0 is success). */
#define CORIO_ERUN (-1)       /* a Lua error: compiling or running code, or in a task */
#define CORIO_ECANCELLED (-2) /* the task was cancelled / the token's task is gone */
#define CORIO_EBUSY (-3)      /* called from inside the loop, where it cannot run the loop */
#define CORIO_EINVAL (-4)     /* bad argument (not a function, NULL name, ...) */
#define CORIO_ENOMEM (-5)     /* out of memory */
#define CORIO_ELOOP (-6)      /* the owned loop could not be closed */

typedef struct corio_runtime corio_runtime;

/* ---- hooks ---------------------------------------------------------------------------- */

/* Called for every task error that nobody retrieved, and for errors in done callbacks.
 * `msg` is the whole report: the error, its traceback and where the task was spawned.
 * Default: print it to stderr. */
typedef void (*corio_error_handler)(void *ud, const char *msg);

/* Receives what Lua's print (and io.write while the default output is io.stdout) write:
 * `len` bytes at `s`, not NUL-terminated, in order; print's newline is included. */
typedef void (*corio_output_fn)(void *ud, const char *s, size_t len);

/* ---- creating and destroying ---------------------------------------------------------- */

/* Options of corio_open_ex. Zero-initialise the struct (`corio_options o = {0};`) and set
 * what you need: fields added later keep their zero default. */
typedef struct corio_options {
  uv_loop_t *loop;              /* the application's loop; NULL: corio owns one */
  lua_Alloc alloc;              /* the Lua state's allocator; NULL: realloc/free */
  void *alloc_ud;
  const char *path;             /* prepended to package.path (";"-separated templates) */
  const char *cpath;            /* prepended to package.cpath */
  corio_error_handler on_error; /* see corio_set_error_handler */
  void *on_error_ud;
  corio_output_fn output;       /* see corio_set_output */
  void *output_ud;
} corio_options;

/* Create a runtime. The standard Lua libraries are open; `require "corio"`, its submodules
 * and `require "cjson"` work. Returns NULL when out of memory or when the loop could not be
 * initialised. corio_open(loop) is corio_open_ex with only `loop` set. */
corio_runtime *corio_open(uv_loop_t *loop);
corio_runtime *corio_open_ex(const corio_options *opts);

/* Destroy the runtime: cancel every task and let its cleanup run (`<close>` variables,
 * pcall handlers; the loop runs while they unwind), close the Lua state (finalizers run),
 * close every handle corio added to the loop and, if corio owns the loop, close it.
 * On the application's loop, corio_close runs it once without blocking to deliver the close
 * callbacks, so that uv_loop_close() succeeds right after if the application closed its own
 * handles. Do not call it from inside a callback of the loop (it returns CORIO_EBUSY when it
 * can tell: from a Lua function or a done callback; from the host's own libuv callbacks it
 * cannot tell, and running the loop there is undefined in libuv). Every pointer into the
 * runtime, its lua_State and its tokens' task side is invalid afterwards.
 * Returns 0; CORIO_ELOOP when the application had left handles of its own on corio's loop
 * (they are closed, with no close callback) or requests still in flight (then the loop's
 * memory is leaked rather than freed under them); CORIO_EBUSY from inside the loop (nothing
 * was done). NULL is accepted. */
int corio_close(corio_runtime *rt);

/* The Lua state (the main thread) for ordinary Lua C API work. Leave its stack as you found
 * it. Code run with lua_pcall on it is top-level code (as corio_dostring runs it). */
lua_State *corio_lua(corio_runtime *rt);
uv_loop_t *corio_loop(corio_runtime *rt);

/* The runtime of a lua_State (any of its threads), for a C function called from Lua. */
corio_runtime *corio_from_lua(lua_State *L);

/* ---- loading and running code --------------------------------------------------------- */

/* Run a file, a string or a buffer (source or a chunk precompiled by luac5.4 / string.dump)
 * as top-level code, as `lua` does: an async call made there drives the loop until it
 * completes (other tasks run meanwhile). They return when the chunk returns, without
 * waiting for the tasks it spawned (corio_run does that). `mode` is "t", "b" or "bt"
 * (NULL: "bt"); `chunkname` as for lua_load (NULL: "=?" for buffers, the code for strings).
 * Return 0 or CORIO_ERUN (syntax or runtime error, message and traceback in corio_errmsg),
 * CORIO_EBUSY (called from inside the loop). */
int corio_dofile(corio_runtime *rt, const char *path);
int corio_dostring(corio_runtime *rt, const char *code, const char *chunkname);
int corio_dobuffer(corio_runtime *rt, const char *buf, size_t len, const char *chunkname,
                   const char *mode);

/* Compile a buffer (source or precompiled) and push the function on corio_lua(rt)'s stack,
 * to be run by corio_spawn or lua_pcall. Pushes nothing on error (CORIO_ERUN). */
int corio_load(corio_runtime *rt, const char *buf, size_t len, const char *chunkname,
               const char *mode);

/* ---- tasks started from C ------------------------------------------------------------- */

/* Called on the loop thread when a task started by corio_spawn is done.
 *   status 0:                the task returned; its `n` results are on top of L's stack;
 *   status CORIO_ERUN:       it raised; n == 1, the error object is on top of L's stack and
 *                            corio_errmsg(rt) holds its message and traceback;
 *   status CORIO_ECANCELLED: it was cancelled (also by corio_close); n == 1, the
 *                            corio.Cancelled object is on top of the stack.
 * The values are valid during the call only (copy what you keep; lua_pop nothing: corio
 * removes them). An error delivered here counts as retrieved: it is not reported to the
 * error handler. The callback may use the Lua API on L and call corio_spawn; it must not call
 * corio_run, corio_step, corio_do* or corio_close. A Lua error it raises is reported to the
 * error handler. */
typedef void (*corio_done_fn)(corio_runtime *rt, void *ud, int status, lua_State *L, int n);

/* Start a task: the function (or callable) below `nargs` arguments on top of corio_lua(rt)'s
 * stack is called with them as a new task; all of them are popped, whatever the outcome.
 * The task runs when the loop runs next (corio_run, corio_step, or the host's uv_run).
 * `done` may be NULL: the task's error, if any and if nobody awaits it, then goes to the
 * error handler. If `task_ref` is not NULL it receives a registry reference
 * (luaL_ref(L, LUA_REGISTRYINDEX)) to the corio.Task, which the caller must luaL_unref;
 * with it the host can call task:cancel() or hand the task to Lua code.
 * Returns 0, CORIO_EINVAL (not callable, or a stack with fewer values) or CORIO_ENOMEM. */
int corio_spawn(corio_runtime *rt, int nargs, corio_done_fn done, void *ud, int *task_ref);

/* ---- registering C functions ---------------------------------------------------------- */

/* Set corio[name] = fn in the `corio` module (what `require "corio"` returns), as a closure
 * whose first upvalue is `ud` (a light userdata: read it with corio_fn_ud(L)).
 * corio_register_module: make `require(name)` call `open` (package.preload[name] = open).
 * Both return 0, CORIO_EINVAL (a NULL name or function) or CORIO_ERUN (message in
 * corio_errmsg). */
int corio_register(corio_runtime *rt, const char *name, lua_CFunction fn, void *ud);
int corio_register_module(corio_runtime *rt, const char *name, lua_CFunction open);

static inline void *corio_fn_ud(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- asynchronous C functions: suspend the calling task, complete it later ------------
 *
 * An ordinary lua_CFunction becomes asynchronous by creating a token and returning through
 * corio_token_await:
 *
 *     static int l_compute(lua_State *L) {
 *       lua_Integer n = luaL_checkinteger(L, 1);              // 1. validate (may raise)
 *       corio_token *tok = corio_token_new(L, "compute", job_cancel, NULL);
 *       job *j = start_job(n, tok);                           // 2. start the work
 *       corio_token_set_ud(tok, j);
 *       return corio_token_await(L, tok);                     // 3. suspend
 *     }
 *     // later, on the loop thread (a libuv callback):
 *     corio_value v = corio_integer(result);
 *     corio_resolve(tok, 1, &v);                              // the task resumes: returns v
 *
 * corio_token_new raises a Lua error (as luaL_error does, so call it before allocating or
 * starting anything) when the caller cannot suspend: not in a task nor at top level, or
 * inside table.sort, string.gsub, __gc, a metamethod called from C or a module's body. It
 * pushes one value (the token's box) which must stay on the stack until corio_token_await.
 * At top level (main thread) the call drives the loop until the token completes.
 *
 * Completing: exactly once per token, the C side calls one of
 *   corio_resolve(tok, n, values)     the suspended call returns these n values;
 *   corio_reject(tok, message)        the suspended call raises `message` as a Lua error;
 * on the loop thread, or their *_threadsafe forms from any thread (they queue the outcome
 * and wake the loop through a uv_async_t; the task resumes on the loop thread). Values are
 * copied (strings too), so the caller's memory may go right after the call. By the house
 * rules an expected failure (a refused connection, a missing file) is a result, not an error:
 * resolve with nil, "op target: message", "ECODE"; reject is for errors the caller should
 * not have to test for.
 * If the operation finishes at once (or fails to start), complete the token before
 * corio_token_await: it then returns the values without suspending.
 *
 * Cancelling: when the waiting task is cancelled (task:cancel(), a timeout, corio_close),
 * the cancel callback runs on the loop thread, once, before the task resumes with
 * corio.Cancelled; it runs no Lua and must not block. It should stop the operation if it
 * can. The C side must still complete the token afterwards (that releases it): a completion
 * after cancellation, or after corio_close, is ignored safely and returns CORIO_ECANCELLED.
 *
 * Lifetime: a token lives until both sides let go of it: the C side by completing it, the
 * task side when the suspended call returned, was cancelled, or the runtime closed. So a
 * token pointer stays valid for the C side until its own completion call, even across
 * corio_close; it must not be used after that call. A token never completed keeps its task
 * waiting and keeps the loop alive, as a pending libuv request does. */

typedef struct corio_token corio_token;

/* Called on the loop thread when the task waiting on `tok` is cancelled. `ud` is the token's
 * user data (corio_token_new's or corio_token_set_ud's). */
typedef void (*corio_cancel_fn)(corio_token *tok, void *ud);

enum { CORIO_TNIL, CORIO_TBOOLEAN, CORIO_TINTEGER, CORIO_TNUMBER, CORIO_TSTRING };

/* A C value for completions: build them with the helpers below. */
typedef struct corio_value {
  int type; /* CORIO_T* */
  union {
    int b;
    lua_Integer i;
    lua_Number n;
    struct {
      const char *p;
      size_t len;
    } s;
  } u;
} corio_value;

corio_token *corio_token_new(lua_State *L, const char *op, corio_cancel_fn cancel, void *ud);
int corio_token_await(lua_State *L, corio_token *tok);
void corio_token_set_ud(corio_token *tok, void *ud);
void *corio_token_ud(corio_token *tok);

/* Return 0 (the task will resume with the outcome), CORIO_ECANCELLED (ignored: the task was
 * cancelled or the runtime closed) or CORIO_EINVAL (a value of unknown type; the token is
 * then rejected with a message saying so). */
int corio_resolve(corio_token *tok, int n, const corio_value *values);
int corio_reject(corio_token *tok, const char *message);
int corio_resolve_threadsafe(corio_token *tok, int n, const corio_value *values);
int corio_reject_threadsafe(corio_token *tok, const char *message);

static inline corio_value corio_nil(void) {
  corio_value v;
  v.type = CORIO_TNIL;
  v.u.i = 0;
  return v;
}
static inline corio_value corio_boolean(int b) {
  corio_value v;
  v.type = CORIO_TBOOLEAN;
  v.u.b = b != 0;
  return v;
}
static inline corio_value corio_integer(lua_Integer i) {
  corio_value v;
  v.type = CORIO_TINTEGER;
  v.u.i = i;
  return v;
}
static inline corio_value corio_number(lua_Number n) {
  corio_value v;
  v.type = CORIO_TNUMBER;
  v.u.n = n;
  return v;
}
static inline corio_value corio_lstring(const char *p, size_t len) {
  corio_value v;
  v.type = CORIO_TSTRING;
  v.u.s.p = p;
  v.u.s.len = len;
  return v;
}
static inline corio_value corio_string(const char *s) {
  size_t len = 0;
  while (s[len]) len++;
  return corio_lstring(s, len);
}

/* ---- driving the loop ----------------------------------------------------------------- */

/* Run the loop until no task is ready and nothing keeps the loop alive (on the
 * application's loop, its own active handles count), or until corio_stop. Returns 0,
 * CORIO_EBUSY when called from inside the loop, CORIO_ENOMEM when the scheduler itself ran
 * out of memory (the loop is then stopped for good: close the runtime). */
int corio_run(corio_runtime *rt);

/* One iteration without blocking: run the ready tasks, poll I/O once (uv_run NOWAIT), run
 * the tasks that made ready. Returns 1 while there is more to do (tasks ready or the loop
 * alive), 0 when idle, CORIO_EBUSY when called from inside the loop, CORIO_ENOMEM as
 * corio_run. */
int corio_step(corio_runtime *rt);

/* Make corio_run return after the current iteration (safe from a task, a C function or a
 * libuv callback on the loop thread). */
void corio_stop(corio_runtime *rt);

/* ---- errors and hooks ----------------------------------------------------------------- */

/* The message of the last failure, valid until the next call into the runtime. */
const char *corio_errmsg(corio_runtime *rt);

/* Replace the handler of unretrieved task errors (NULL: the default, print to stderr). */
void corio_set_error_handler(corio_runtime *rt, corio_error_handler fn, void *ud);

/* Send print (and io.write to the default output while it is io.stdout) to `fn` instead of
 * stdout; NULL restores stdout. Returns 0 or CORIO_ENOMEM. */
int corio_set_output(corio_runtime *rt, corio_output_fn fn, void *ud);

/* How many task errors were reported because nobody retrieved them. */
int corio_unretrieved_errors(corio_runtime *rt);

#ifdef __cplusplus
}
#endif
#endif
