/* What the corio command and its REPL (host/main.c, host/repl.c) use beyond the public
 * corio.h: a REPL drives the loop one turn at a time, interrupts top-level code and reads a
 * few counters, which an embedder has no use for. Implemented by the runtime (sched.c,
 * runtime.c); the runtime record stays opaque here. */
#ifndef CORIO_HOST_H
#define CORIO_HOST_H

#include <lua.h>

#include "corio.h"

/* The one loop turn, used by every place that drives the loop (top-level awaits, the end of a
 * script, the REPL, corio_run/corio_step, shutdown): run the ready tasks, then, unless
 * `skip_poll` (may be NULL) says so after they ran, uv_run(mode); all of it marked "inside the
 * loop", so that nothing it runs can try to drive the loop again. Returns nonzero while
 * anything is left: ready tasks, or handles that keep the loop alive. */
int corio__turn(corio_runtime *rt, uv_run_mode mode, int (*skip_poll)(corio_runtime *rt));

/* Tasks or done callbacks are waiting for their turn. */
int corio__has_ready(corio_runtime *rt);
void corio__drop_ready(corio_runtime *rt); /* shutdown after a memory error: run none of them */

/* Run the loop until no task is left and no handle keeps it alive (the end of a script).
 * Returns -1 (doing nothing) inside the loop. */
int corio__run_until_idle(corio_runtime *rt);

/* Interrupt top-level code waiting in an async call (the REPL's Ctrl-C): the pending
 * operation is undone and the call raises "interrupted!", as a Ctrl-C in busy Lua code does.
 * Unlike a cancellation, a task it was awaiting is left running. Returns 1 if top-level code
 * was waiting. Runs no Lua; call it from a loop callback. */
int corio__interrupt_main(lua_State *L);

/* Ctrl-C in busy Lua code, from a signal handler (it only reads the runtime and sets hooks).
 * With `top`, if top-level code runs outside the loop: set `hook` (count 1) on L and on every
 * coroutine it is resuming. Else with `task`, if a task's code runs inside the loop: set it on
 * that task's innermost coroutine. Returns 1 if a hook was set. */
int corio__hook_running(corio_runtime *rt, lua_State *L, lua_Hook hook, int mask, int top,
                        int task);

/* SIGINT or SIGTERM in a script (host/main.c), from its signal handler (it only reads the
 * runtime and sets hooks). Top-level code running outside the loop gets `top` (count 1) as in
 * corio__hook_running; top-level code waiting in an async call gets nothing (the loop's
 * wake-up cancels its wait); a task running inside the loop gets `task` every `count`
 * instructions on its innermost coroutine, in case it never yields. Returns 1 if a hook was
 * set. */
int corio__hook_signal(corio_runtime *rt, lua_State *L, lua_Hook top, lua_Hook task, int count);
int corio__in_loop(corio_runtime *rt); /* code runs inside uv_run (a task, a callback) */
/* Cancel the main task, the pseudo-task of top-level code, as task:cancel() does: a pending
 * top-level await is undone (a task it awaits is cancelled) and raises corio.Cancelled; if none
 * is pending, the next one raises it. Runs no Lua; call it from a loop callback. */
int corio__cancel_main(lua_State *L);
/* If the error object at idx is the one corio.run re-raised from its failed task, push that
 * task's traceback (where the error happened) and return 1; else push nothing, return 0. */
int corio__push_reraised_traceback(lua_State *L, int idx);
/* A handle of the command's own on the runtime's loop, left out of the leak check's count
 * (also in runtime.h). */
void corio__own_handle(corio_runtime *rt, uv_handle_t *h);
/* The error object at idx is corio.Cancelled (also in scheduler.h). */
int corio__is_cancelled(lua_State *L, int idx);

/* What the code calling a C function from L is. */
enum { CORIO_RUNNING_CALLBACK, CORIO_RUNNING_MAIN, CORIO_RUNNING_TASK };
int corio__running(lua_State *L); /* a done callback, top-level code or a task */
/* Cancel the task running now (CORIO_RUNNING_TASK) and raise its Cancelled error. */
int corio__cancel_running(lua_State *L);

/* Report a failed task nobody listens to when it fails, not when it is collected. */
void corio__set_eager_report(corio_runtime *rt, int on);
int corio__live_tasks(corio_runtime *rt); /* spawned and not done */
corio_error_handler corio__error_handler(corio_runtime *rt, void **ud);

/* Also part of the binding API (binding.h declares them the same way): values kept alive for
 * C, counted by the leak check, and an error's message that survives nil and tables. */
int corio__anchor(lua_State *L, int idx);
void corio__unanchor(lua_State *L, int ref);
void corio__push_anchor(lua_State *L, int ref);
int corio__push_errmsg(lua_State *L, int idx);

#endif
