/* corio.h -- the one public header: embed corio (asyncio for Lua on libuv) in a C program.
 *
 * A runtime is one lua_State plus the scheduler that maps Lua coroutines onto tasks, on a
 * libuv loop that is either the application's own or one corio owns. All functions return
 * 0 on success or a negative status; corio_errmsg() then says why. Nothing here exits the
 * process or lets a Lua error escape as a longjmp. */
#ifndef CORIO_H
#define CORIO_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORIO_VERSION "0.1.0"

typedef struct corio_runtime corio_runtime;

/* Called for every task error that nobody retrieved (and for errors in done callbacks).
 * `msg` is the full report: the error, its traceback and where the task was spawned. */
typedef void (*corio_error_handler)(void *ud, const char *msg);

/* Create a runtime on `loop`, or on a loop of its own when `loop` is NULL. The standard Lua
 * libraries are open, `require "corio"` and `require "cjson"` work. Returns NULL when out of
 * memory. */
corio_runtime *corio_open(uv_loop_t *loop);

/* Cancel every task (their cleanup runs), close every handle corio added to the loop, close
 * the Lua state and, if corio owns the loop, close it. Returns 0, or a negative status when
 * the loop could not be closed cleanly. */
int corio_close(corio_runtime *rt);

lua_State *corio_lua(corio_runtime *rt);
uv_loop_t *corio_loop(corio_runtime *rt);

/* Run the loop until no task is left and nothing keeps the loop alive. Must not be called
 * from inside a callback of the same loop. */
int corio_run(corio_runtime *rt);

/* Load and run a file or a string as top-level code (as `lua` does): async calls made there
 * drive the loop until they complete. They do not wait for tasks the code spawned. */
int corio_dofile(corio_runtime *rt, const char *path);
int corio_dostring(corio_runtime *rt, const char *code, const char *chunkname);

/* The message of the last failure, valid until the next call into the runtime. */
const char *corio_errmsg(corio_runtime *rt);

/* Replace the handler of unretrieved task errors (default: print to stderr). */
void corio_set_error_handler(corio_runtime *rt, corio_error_handler fn, void *ud);

/* How many task errors were reported because nobody retrieved them. */
int corio_unretrieved_errors(corio_runtime *rt);

#ifdef __cplusplus
}
#endif
#endif
