/* The binding API: everything a capability in bindings/ may use to suspend a task on a libuv
 * operation and wake it again. Bindings include this header and never host/runtime.h (the
 * build enforces it): the runtime record and the task record stay opaque here.
 * See HACKING.md, "Adding a binding", for the model binding (sleep) and the rules. */
#ifndef CORIO_BINDING_H
#define CORIO_BINDING_H

#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h" /* generated: the luaopen_corio_* of every binding */
#include "corio.h"

/* The record that embeds member m (a libuv handle, a listener, a timer) at address p. */
#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

typedef struct corio_task corio_task; /* opaque: a task or a future */
typedef struct corio_timer corio_timer;
typedef struct corio_listener corio_listener;
typedef struct corio_wait corio_wait;
typedef struct corio_waiter corio_waiter;

/* ---- the runtime --------------------------------------------------------------------------- */

/* The runtime that owns L (any of its threads). */
#ifdef CORIO_MODULE
/* corio.so, loaded by a stock interpreter: the extra space of its threads is not ours (and
 * coroutines created before `require "corio"` hold a stale copy), so the runtime is found
 * through the registry (host/module.c). */
corio_runtime *corio__rt_lookup(lua_State *L);
static inline corio_runtime *corio__rt(lua_State *L) {
  return corio__rt_lookup(L);
}
#else
static inline corio_runtime *corio__rt(lua_State *L) {
  return *(corio_runtime **)lua_getextraspace(L);
}
#endif
uv_loop_t *corio__loop(corio_runtime *rt);
lua_State *corio__L(corio_runtime *rt); /* the main state: for callbacks that touch Lua */

/* ---- anchors: every reference that keeps a Lua value alive for C goes through these -------- */
int corio__anchor(lua_State *L, int idx); /* -> ref; the value stays alive until unanchored */
void corio__unanchor(lua_State *L, int ref); /* LUA_NOREF and LUA_REFNIL are ignored */
void corio__push_anchor(lua_State *L, int ref);

/* ---- timers (host/timers.c): one binary heap of deadlines, driven by one uv_timer_t -------
 * A deadline embedded in its owner (a task for sleep, a userdata for a timeout scope). Set
 * `index = -1` and `fire` before the first start; `fire` runs inside a loop callback and must
 * not run user Lua. */
struct corio_timer {
  uint64_t when; /* uv_hrtime() ns */
  uint64_t seq;  /* tie-break: equal deadlines fire in arming order */
  int index;     /* slot in the heap, or -1 when not armed */
  void (*fire)(corio_runtime *rt, corio_timer *t);
};

/* Arm (or re-arm) t. Returns 0, or UV_ENOMEM when the heap cannot grow (t stays unarmed). */
int corio__timer_start(corio_runtime *rt, corio_timer *t, double seconds);
void corio__timer_stop(corio_runtime *rt, corio_timer *t);                 /* idempotent */

/* ---- suspending a task ----------------------------------------------------------------------
 * The one async pattern (STYLE.md): check, then allocate; anchor, then start; suspend with a
 * continuation; callbacks only record the outcome and wake; the continuation builds results.
 *
 * `name` shows in all_tasks(); `cancel` undoes the pending operation (stop a timer, leave a
 * wait list, close a handle) and must not run Lua. It is called at most once, before the task
 * is woken, with the `data` given to corio__await.
 * `describe` (optional) pushes onto L the wait reason corio.ps() shows ("sleep 0.50 s"). It
 * runs only when someone asks, so a wait costs nothing more to arm: `co` is the suspended
 * task's coroutine, whose current frame is the suspended C function's (its arguments are at
 * 1..n). It must push exactly one string and may not raise except for memory errors. */
struct corio_wait {
  const char *name;
  void (*cancel)(lua_State *L, corio_task *t, void *data);
  void (*describe)(lua_State *L, corio_task *t, lua_State *co, void *data);
};

/* Raise unless the caller can suspend here; returns the task that will wait. Call it before
 * arming anything. Raises corio.Cancelled if a cancel was requested meanwhile. */
corio_task *corio__check_suspend(lua_State *L, const char *op);

/* The one await. Suspends the current task on `wait` (already armed by the caller) and, when
 * woken, calls k(L, LUA_YIELD, ctx) inside the task, after raising corio.Cancelled if the wait
 * was cancelled. At top level it drives the loop instead of yielding. Must be called as
 * `return corio__await(...)`. */
int corio__await(lua_State *L, const corio_wait *wait, void *data, lua_KFunction k,
                 lua_KContext ctx);

/* Suspend until the other ready tasks had their turn (sleep(0)). */
int corio__yield_now(lua_State *L, lua_KFunction k, lua_KContext ctx);

/* Wake a waiting task: its wait is over (the operation completed). Runs no Lua. A task that
 * is not waiting (already woken or cancelled) is left alone. */
void corio__wake(corio_runtime *rt, corio_task *t);

/* ---- waiter slots: one task suspended on one direction of an object ------------------------
 * The common case of corio__await: an object (a connection, a process, a signal set) has a
 * slot per direction; the operation stores its outcome in `status` and wakes the slot. When the
 * waiting task is cancelled the slot is emptied first, then `on_cancel` (optional) undoes the
 * operation. Zero-initialise a slot; it needs no cleanup.
 * `describe` (optional, set once when the object is made) pushes the wait reason corio.ps()
 * shows for a task waiting in the slot on operation `op` (corio__waiter_await's name), naming
 * the object: "read tcp 127.0.0.1:5000", "process 4121 wait". Reach the owning record with
 * container_of. It runs only when someone asks, on the asker's L, while a task waits in the
 * slot; it must push exactly one string and may raise only memory errors. Without it the
 * reason is `op`. */
struct corio_waiter {
  corio_task *task; /* the suspended task, or NULL */
  void (*on_cancel)(lua_State *L, corio_waiter *w);
  void (*describe)(lua_State *L, corio_waiter *w, const char *op);
  int status; /* what the waker stored: 0 or a libuv error code */
};

/* Suspend the current task (returned by corio__check_suspend) on slot w. Raises if another
 * task already waits there ("op: another task is already waiting"). */
int corio__waiter_await(lua_State *L, corio_waiter *w, const char *op, lua_KFunction k,
                        lua_KContext ctx);
/* Store `status` and wake the slot's task, if any. Returns 1 if a task was woken. */
int corio__waiter_wake(corio_runtime *rt, corio_waiter *w, int status);
int corio__waiter_busy(const corio_waiter *w); /* a task waits there */

/* ---- tasks a binding may start or inspect --------------------------------------------------- */

/* Push a new task running the function at `fidx` with `nargs` arguments taken from the top of
 * the stack (they are moved). Leaves the Task on the stack. */
corio_task *corio__spawn(lua_State *L, int fidx, int nargs);
corio_task *corio__totask(lua_State *L, int idx); /* raises unless a Task or Future */
/* The task whose code runs now: the main pseudo-task at top level, NULL in a done callback. */
corio_task *corio__current(lua_State *L);
int corio__is_main(const corio_task *t); /* the pseudo-task standing for top-level code */
int corio__task_done(const corio_task *t);
void corio__push_task(lua_State *L, corio_task *t); /* a live (not done) task */
void *corio__task_wait_data(const corio_task *t);  /* `data` of its pending wait */
/* Every task carries one timer for the binding it is suspended in (sleep uses it). */
corio_timer *corio__task_timer(corio_task *t);
corio_task *corio__timer_task(corio_timer *tm); /* the task whose timer tm is */

/* Cancel a task or future (as task:cancel(msg), msg at msgidx or 0 for none). Returns 1 if a
 * cancellation was requested. Runs no user Lua. */
int corio__cancel(lua_State *L, corio_task *t, int msgidx);

/* Listeners: told once when a task or future finishes. Embed one in the record that cares. */
struct corio_listener {
  corio_listener *next, **pprev;
  void (*fire)(corio_runtime *rt, corio_listener *l, corio_task *done);
};
void corio__listen(corio_task *target, corio_listener *l,
                   void (*fire)(corio_runtime *, corio_listener *, corio_task *));
void corio__unlisten(corio_listener *l); /* idempotent */

/* ---- handle boxes: a libuv handle owned by C, with a Lua userdata as its face ---------------
 * The userdata is created first (an empty box), then the C record that libuv may touch. The
 * record outlives the userdata until libuv's close callback; the box outlives the record if the
 * script keeps it. corio__box_close closes the handle once; its close callback clears the box,
 * calls `on_closed` (free what the record owns) and frees the record. */
typedef struct corio_handle corio_handle;
typedef struct corio_box {
  corio_handle *h; /* NULL once closed */
} corio_box;
struct corio_handle {
  uv_handle_t *uv;   /* the libuv handle inside the record */
  corio_box *box;    /* the userdata, or NULL once it was collected */
  void (*on_closed)(corio_handle *h);
  int closing;
  int keep; /* set by the binding: the record outlives its handle (see corio__box_release) */
};

/* Push a new empty box of class `cls` (a metatable made by corio__class). */
corio_box *corio__box_new(lua_State *L, const char *cls);
/* Attach a record allocated by the binding (whose handle is initialised) to box b, or to no
 * box (b NULL: a handle with no Lua face, closed and freed the same way). */
void corio__box_attach(corio_box *b, corio_handle *h, uv_handle_t *uv,
                       void (*on_closed)(corio_handle *h));
/* The record of the box at idx; raises "op: the <what> is closed" once closed. */
corio_handle *corio__box_check(lua_State *L, int idx, const char *cls, const char *op);
void corio__box_close(corio_handle *h); /* idempotent; frees h after libuv's close callback */
int corio__box_gc(lua_State *L);         /* __gc/__close for boxes: closes the handle */
/* A record with `keep` set (a server whose connections still run after its listener closed)
 * stays attached to its box and is not freed by the close callback: the binding calls
 * corio__box_release once it is done with it, which detaches the box and frees the record. */
void corio__box_release(corio_handle *h);

/* ---- classes -------------------------------------------------------------------------------
 * Create (or fetch) the metatable `name`, with __name, __index = the methods, and the given
 * metamethods (may be NULL). Leaves it on the stack. */
void corio__class(lua_State *L, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *metamethods);

/* ---- errors --------------------------------------------------------------------------------
 * Messages read `op target: text`. Out of memory (HACKING.md): raise a Lua memory error where
 * a Lua caller is on the stack (corio__nomem); fail just the one request or connection where
 * not; never abort() on a path a remote peer can trigger. */
int corio__push_errmsg(lua_State *L, int idx); /* tostring that survives nil/tables */
int corio__fail(lua_State *L, const char *op, const char *target, int uverr); /* nil,msg,code */
int corio__nomem(lua_State *L); /* raises Lua's memory error */
/* "host:port", or "[host]:port" for an IPv6 address, for messages (truncated to fit). */
void corio__host_port(char *buf, size_t size, const char *host, int port);
void *corio__xmalloc(lua_State *L, size_t n); /* malloc, or raise the memory error */

/* ---- embedded scripts ----------------------------------------------------------------------
 * Push the chunk of the embedded Lua module `name` (scripts/, e.g. "corio.json") into any
 * lua_State, also one that is not a runtime's (a worker thread's); CORIO_SCRIPTS is honoured as
 * by package.preload. Returns a lua_load status (the message is pushed on failure) or
 * LUA_ERRFILE when there is no such script. Touches no runtime: safe on any thread. */
int corio__load_script(lua_State *L, const char *name);

#endif
