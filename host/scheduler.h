/* Private to the scheduler's four files: sched.c (the ready queue, step, await, wake, cancel,
 * the loop drivers), task.c (task records, results, error classes, reports), join.c (listeners
 * and joins) and lcore.c (the corio.core library). Everything else uses runtime.h or
 * binding.h. Not sched.h: that is a system header (pthread.h includes it) and host/ is on the
 * include path. */
#ifndef CORIO_SCHEDULER_H
#define CORIO_SCHEDULER_H

#include "runtime.h"

/* ---- task.c: records and results ----------------------------------------------------------- */

corio_task *corio__testtask(lua_State *L, int idx); /* the Task or Future at idx, or NULL */
/* Push the extras table of the task at idx, creating it when `create`; returns its type. */
int corio__push_extras(lua_State *L, int idx, int create);
/* Move n values from `from`'s top into the task at tidx (user value 1) as its outcome. */
void corio__store_results(lua_State *L, int tidx, lua_State *from, int n);
/* Push what awaiting the done task at idx gives: its results, or raise its error. */
int corio__push_outcome(lua_State *L, int idx, corio_task *t);
void corio__mark_failed(lua_State *L, int tidx); /* the metatable with __gc (a report) */
/* With the Task metatable on top (left there): register it and its failed-task twin. */
void corio__set_task_metatables(lua_State *L);

/* The Cancelled and Timeout error objects. */
void corio__push_cancel_error(lua_State *L, int tidx); /* with the task's cancel message */
int corio__is_cancelled(lua_State *L, int idx);
int corio__is_timeout(lua_State *L, int idx);
void corio__push_timeout(lua_State *L, int msgidx); /* msgidx 0: no message */
void corio__open_errors(lua_State *L);             /* sets Cancelled, Timeout in the table on top */

/* What all_tasks() and tostring show. */
const char *corio__state_name(const corio_task *t);
void corio__push_name(lua_State *L, int idx, corio_task *t);
void corio__push_spawn_site(lua_State *L, int idx, corio_task *t); /* "src:line", or nothing */
void corio__push_where(lua_State *L, corio_task *t); /* "op at src:line" */
void corio__push_wait_reason(lua_State *L, corio_task *t); /* "sleep 0.50 s" (sched.c) */
int corio__push_awaited(lua_State *L, corio_task *t);      /* the task it awaits, if any */
/* the stall watchdog (watchdog.c): step brackets each slice while it is on */
void corio__watchdog_enter(corio_watchdog *wd, corio_task *t, uint64_t now); /* uv_hrtime() */
void corio__watchdog_leave(corio_watchdog *wd);
int corio__l_set_watchdog(lua_State *L);
void corio__open_obs(lua_State *L); /* obs.c: sets _ps, _loop_stats in the table on top */
/* obs.c: the reason on top of L, in the words of the object at co's idx (its __reason) */
void corio__obs_object_reason(lua_State *L, lua_State *co, int idx);

/* ---- task.c: creating and reporting ------------------------------------------------------- */

corio_task *corio__new_future(lua_State *L); /* pushes it */
/* Report the unretrieved error of the failed task at idx to the error handler (once). */
void corio__report(corio_runtime *rt, lua_State *L, int idx);
/* Push the Cancelled error object for t (with its cancel message) and raise it. */
int corio__raise_cancelled(lua_State *L, corio_task *t);

/* ---- sched.c: state changes ------------------------------------------------------------------ */

void corio__make_ready(corio_runtime *rt, corio_task *t); /* append to the ready queue */

/* The task at tidx is done with `outcome`, its value(s) stored: tell its listeners, queue its
 * done callbacks, report an error nobody will look at (eager mode). */
void corio__finish(lua_State *L, int tidx, corio_task *t, int outcome);
void corio__set_priority(corio_runtime *rt, corio_task *t, int priority);
/* Run fn (at fnidx) with the task at taskidx soon, outside any task. */
void corio__call_soon(lua_State *L, int fnidx, int taskidx);
/* task:await() on a task not done yet, the task alone on the stack [suspends]. */
int corio__await_task(lua_State *L, corio_task *t);
void corio__sched_open(lua_State *L); /* the done-callback queue of a new state */
/* The function every task's coroutine starts in: runs the body (entry's first argument) under
 * a yieldable protected call, so that <close> handlers and cleanup may await. */
int corio__task_entry(lua_State *co);
int corio__task_msgh(lua_State *co); /* the body's message handler: keeps the traceback */
/* task.c: the entry of a task that owns its first argument (corio.core._spawn_owning) */
int corio__task_entry_owning(lua_State *co);
/* The future at idx is cancelled (finishes with Cancelled). */
void corio__cancel_future_at(lua_State *L, int idx, corio_task *f);
/* Cancel the top-level code's pending await (the main pseudo-task): 1 if requested. */
int corio__cancel_main(lua_State *L);

/* ---- join.c: corio.core._wait and _collect ------------------------------------------------- */
int corio__join_wait(lua_State *L);
int corio__join_collect(lua_State *L);
/* If t waits in _wait (gather), push the list of the tasks it still waits for; returns 1. */
int corio__join_push_pending(lua_State *L, corio_task *t);

#endif
