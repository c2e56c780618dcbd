/* corio internals shared by host/ and bindings/: the runtime record, tasks, the timer heap,
 * anchors and the one await function. Nothing here is public API (see corio.h for that). */
#ifndef CORIO_CORE_H
#define CORIO_CORE_H

#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <lauxlib.h>
#include <lua.h>

#include "corio.h"

/* The record that embeds member m (a libuv handle, a listener, a timer) at address p. */
#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

typedef struct corio_task corio_task;
typedef struct corio_timer corio_timer;
typedef struct corio_listener corio_listener;
typedef struct corio_wait corio_wait;
typedef struct corio_pool corio_pool;

/* The default allocator (host/alloc.c): pooled small blocks on huge-page arenas. */
corio_pool *corio__pool_new(void);  /* NULL: use the system allocator */
void corio__pool_free(corio_pool *p);
void *corio__pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void *corio__system_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* ---- timers: one binary heap of deadlines, driven by one uv_timer_t ---------------------- */

/* A deadline in the runtime's heap. Embedded in its owner (a task for sleep, a userdata for
 * a timeout scope); the heap stores pointers, and `index` is the slot (or -1 when not armed). */
struct corio_timer {
  uint64_t when;  /* loop time in ms */
  uint64_t seq;   /* tie-break: equal deadlines fire in arming order */
  int index;
  void (*fire)(corio_runtime *rt, corio_timer *t);
};

void corio__timer_start(corio_runtime *rt, corio_timer *t, double seconds);
void corio__timer_stop(corio_runtime *rt, corio_timer *t);

/* ---- listeners: who is told when a task or future finishes ------------------------------- */

struct corio_listener {
  corio_listener *next, **pprev;
  void (*fire)(corio_runtime *rt, corio_listener *l, corio_task *done);
};

void corio__listen(corio_task *target, corio_listener *l, void (*fire)(corio_runtime *,
                   corio_listener *, corio_task *));
void corio__unlisten(corio_listener *l);

/* ---- what a suspended task waits on --------------------------------------------------------
 * `name` shows in all_tasks(); `cancel` undoes the pending operation (stop the timer, leave a
 * wait list) and must not run Lua. It is called at most once, before the task is woken. */
struct corio_wait {
  const char *name;
  void (*cancel)(lua_State *L, corio_task *t);
};

enum { /* task->state */
  CORIO_PENDING,   /* spawned, never run */
  CORIO_READY,     /* in the ready queue */
  CORIO_RUNNING,   /* its coroutine (or a coroutine it resumed) is executing */
  CORIO_WAITING,   /* suspended on an operation */
  CORIO_DONE       /* finished: see outcome */
};

enum { /* task->outcome once done */
  CORIO_OK,
  CORIO_ERROR,
  CORIO_CANCELLED
};

enum { /* task->flags */
  CORIO_F_FUTURE = 1,      /* no coroutine: completed from outside */
  CORIO_F_MAIN = 2,        /* the pseudo-task standing for top-level code */
  CORIO_F_RETRIEVED = 4,   /* its error or cancellation was looked at */
  CORIO_F_CANCELLING = 8,  /* cancel() requested and not yet delivered */
  CORIO_F_WOKE_CANCEL = 16,/* the pending wait was cancelled: the continuation raises */
  CORIO_F_CALLBACKS = 32,  /* has Lua done-callbacks in its extra table */
  CORIO_F_REPORTED = 64,   /* its unretrieved error was reported */
  CORIO_F_INTERRUPTED = 128/* top-level wait interrupted (Ctrl-C in the REPL): await raises */
};

/* A task is a coroutine plus this record (a full userdata of type "corio.Task"). A Future is
 * the same record without a coroutine: its results live in its extra table.
 *   user value 1: the coroutine (tasks) | the results table (futures)
 *   user value 2: the function that called spawn (for the spawn site), or nil
 *   user value 3: extras table (name, done callbacks, cancel message), created lazily */
struct corio_task {
  lua_State *co;
  corio_task *next_ready;
  const corio_wait *wait;   /* non-NULL while WAITING */
  void *wait_data;          /* owned by whoever armed the wait */
  lua_KFunction k;          /* continuation of the pending operation */
  lua_KContext kctx;
  corio_timer timer;        /* used by sleep */
  corio_listener awaiting;  /* used when this task awaits one other task */
  corio_listener *listeners;/* those awaiting this task */
  uint64_t id;
  double created;           /* loop time (s) when spawned */
  int nresults;             /* on co's stack (tasks) once done OK */
  int anchor;               /* ref in the anchors table while not done, else LUA_NOREF */
  int spawn_line;
  int cancel_count;         /* cancel() calls not matched by uncancel() */
  int priority;             /* higher runs first within a scheduler round (default 0) */
  unsigned char state, outcome, flags;
};

#define CORIO_TASK "corio.Task"

/* ---- the runtime ----------------------------------------------------------------------- */

struct corio_runtime {
  lua_State *L;
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  int in_loop;              /* >0 while corio code runs inside uv_run: cannot block here */
  corio_task *ready_head, *ready_tail;
  int ready_prio;           /* tasks in the ready queue whose priority is not 0 */
  corio_task *current;      /* the task whose code is running; &main_task at top level */
  corio_task main_task;
  uv_check_t check;         /* runs ready tasks after each poll */
  uv_idle_t idle;           /* active while tasks are ready, so poll does not block */
  uv_timer_t heap_timer;    /* fires the earliest deadline of the heap */
  corio_timer **heap;
  int heap_len, heap_cap;
  uint64_t timer_seq;
  int in_timer_cb;          /* the heap callback is firing timers: re-arm once at its end */
  uint64_t next_task_id;
  int live_tasks;           /* spawned and not done */
  int anchors;              /* outstanding corio__anchor() refs */
  int unretrieved;          /* task errors reported because nobody retrieved them */
  int soon_pending;         /* done-callbacks queued in the soon table */
  int debug;                /* capture full spawn tracebacks */
  int eager_report;         /* report a failed task with no listener at once (the REPL) */
  void *tag;                /* what a scheduler yield carries (see coro.c) */
  struct corio_nest *nest;  /* coroutine.resume frames currently active (innermost first) */
  corio_error_handler on_error;
  void *on_error_ud;
  char errbuf[512];
  corio_pool *pool;
  int closing;
  int (*close_hooks[8])(corio_runtime *);
  int nclose_hooks;
  struct corio_embed *embed;/* state of the embedding API (embed.c) */
};

/* A frame of our coroutine.resume: `co` is being resumed by `from`. */
struct corio_nest {
  lua_State *co, *from;
  struct corio_nest *prev;
};

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

/* ---- anchors: every reference that keeps a Lua value alive for C goes through these ------- */
int corio__anchor(lua_State *L, int idx);   /* -> ref; the value stays alive until unanchored */
void corio__unanchor(lua_State *L, int ref);
void corio__push_anchor(lua_State *L, int ref);

/* ---- scheduling ------------------------------------------------------------------------ */

/* Push a new task running the function at `fidx` with `nargs` arguments taken from the top
 * of the stack (they are moved). Leaves the Task on the stack. */
corio_task *corio__spawn(lua_State *L, int fidx, int nargs);
corio_task *corio__totask(lua_State *L, int idx);       /* raises unless a Task/Future */
corio_task *corio__new_future(lua_State *L);            /* pushes it */
void corio__make_ready(corio_runtime *rt, corio_task *t);

/* Wake a waiting task: its wait is over (the operation completed). Runs no Lua. */
void corio__wake(corio_runtime *rt, corio_task *t);

/* The one await. Suspends the current task on `wait` (already armed by the caller) and, when
 * woken, calls k(L, LUA_YIELD, ctx) inside the task, after raising corio.Cancelled if the
 * wait was cancelled. At top level it drives the loop instead of yielding. Must be called as
 * `return corio__await(...)`. `op` names the operation for error messages. */
int corio__await(lua_State *L, const corio_wait *wait, void *data, lua_KFunction k,
                 lua_KContext ctx);

/* Raise unless the caller can suspend here; returns the task that will wait. Call it before
 * arming anything ("check, then allocate"). */
corio_task *corio__check_suspend(lua_State *L, const char *op);

/* Finish a future from C. Values: `n` on top of L's stack (moved). */
/* Suspend the current task until the other ready tasks had their turn (sleep(0)). */
int corio__yield_now(lua_State *L, lua_KFunction k, lua_KContext ctx);

/* Make sure the ready queue and the done callbacks run soon (poll will not block). */
void corio__kick(corio_runtime *rt);
void corio__push_anchors(lua_State *L);

/* Cancel a task or future (as task:cancel(msg) with the message on top of the stack or none).
 * Returns 1 if a cancellation was requested. Runs no user Lua. */
int corio__cancel(lua_State *L, corio_task *t, int msgidx);

/* Interrupt top-level code waiting in corio__await (the REPL's Ctrl-C): the pending
 * operation is undone and the await raises "interrupted!", as a Ctrl-C in busy Lua code does.
 * Unlike a cancellation, a task it was awaiting is left running. Returns 1 if top-level code
 * was waiting. Runs no Lua; call it from a loop callback. */
int corio__interrupt_main(lua_State *L);

/* Push the Cancelled error object for the current task and raise it. */
int corio__raise_cancelled(lua_State *L, corio_task *t);

/* Run ready tasks until none is ready (one batch per call to keep I/O flowing). */
void corio__run_ready(corio_runtime *rt);

/* Drive the loop from top-level code until `t` is woken. Raises if the loop cannot make
 * progress (nothing left that could wake it) or if called from inside the loop. */
void corio__drive(lua_State *L, corio_task *t, const char *op);

/* Run the loop until no task is left and no handle keeps it alive (the end of a script). */
int corio__run_until_idle(corio_runtime *rt);

/* Report a task's unretrieved error to the error handler (once). */
void corio__report(corio_runtime *rt, lua_State *L, int taskidx);

/* Error helpers: messages read `op target: text`. */
int corio__push_errmsg(lua_State *L, int idx); /* tostring that survives nil/tables */
int corio__fail(lua_State *L, const char *op, const char *target, int uverr);

uint64_t corio__now_ms(corio_runtime *rt);
void corio__anchors_init(lua_State *L);  /* the anchors table of a new state */
void corio__handles_init(corio_runtime *rt);  /* check, idle and heap timer on rt->loop */

/* Module openers for the capabilities (the files of bindings/) */
int corio__open_core(lua_State *L);
void corio__timer_init(corio_runtime *rt);
void corio__timer_close(corio_runtime *rt);
void corio__timer_register(lua_State *L);   /* adds sleep/now/_deadline to the table on top */
void corio__coroutine_patch(lua_State *L);  /* tag-aware coroutine.resume/wrap */
void corio__preload_scripts(lua_State *L);  /* scripts/ compiled in */
void corio__register_bindings(lua_State *L);/* package.preload entries of bindings/ */

#endif
