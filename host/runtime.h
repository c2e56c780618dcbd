/* Host-only internals: the runtime record, the task record and the scheduler's entry points
 * for host/ (the command, the REPL, embedding). Bindings never include this (binding.h is
 * theirs); nothing here is public API (corio.h is). */
#ifndef CORIO_RUNTIME_H
#define CORIO_RUNTIME_H

#ifdef CORIO_BINDING
#error "bindings/ use host/binding.h only: the runtime record is the host's business"
#endif
#include "binding.h"
#include "host.h"

/* ---- out of memory: one policy for all of host/ (and what bindings/ follow) ----------------
 * 1. Where a Lua caller is on the stack (a lua_CFunction, a continuation, a protected call),
 *    raise Lua's memory error: corio__nomem, or corio__xmalloc for a malloc that must succeed.
 *    The script can catch it like any memory error Lua itself raises. Never a made-up message.
 * 2. Where no Lua caller is (a libuv callback, another thread, the embedding API), fail just
 *    the one request, connection or call that needed the memory: store UV_ENOMEM as its
 *    outcome so that its continuation reports it, drop the connection, or return CORIO_ENOMEM
 *    from the corio_* function. The rest of the runtime runs on.
 * 3. Never abort() on a path a remote peer can trigger, and never let a memory error unwind
 *    through uv_run or reach Lua's panic handler: the scheduler runs the ready tasks under one
 *    protected call per loop turn (sched.c), and a memory error there costs the task being
 *    stepped, reported through the error handler.
 * 4. Allocation failures at start-up (corio_open, the command) fail the start: corio_open
 *    returns NULL, the command exits with a message.
 * The timer heap follows 2 (corio__timer_start returns UV_ENOMEM), the completion tokens 1 and
 * 2 (token.c), the allocator returns NULL and lets Lua raise (alloc.c). */

typedef struct corio_pool corio_pool;
typedef struct corio_watchdog corio_watchdog;

#define CORIO_LAG_BUCKETS 32

/* The default allocator (host/alloc.c): pooled small blocks on huge-page arenas. */
corio_pool *corio__pool_new(void);  /* NULL: use the system allocator */
void corio__pool_free(corio_pool *p);
void *corio__pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void *corio__system_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

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
  CORIO_F_INTERRUPTED = 128,/* top-level wait interrupted (Ctrl-C in the REPL): await raises */
  CORIO_F_PROPAGATING = 256,/* a cancel is being passed down its await chain (cycle guard) */
  CORIO_F_CANCEL_FUTURE = 512 /* cancelled while awaiting a Future: its continuation cancels it */
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
  const char *wait_name;    /* what it waits on, for all_tasks() */
  void *wait_data;          /* owned by whoever armed the wait */
  lua_KFunction k;          /* continuation of the pending operation */
  lua_KContext kctx;
  corio_timer timer;        /* used by sleep */
  corio_listener awaiting;  /* used when this task awaits one other task */
  corio_listener *listeners;/* those awaiting this task */
  uint64_t id;
  uint64_t parent_id;       /* the task that spawned it (0: top level or a callback) */
  uint64_t scope;           /* the corio.run it belongs to (inherited from its spawner), or 0 */
  uint32_t created;         /* loop time (ms, modulo 2^32) when spawned */
  uint32_t resumes;         /* times step resumed it (corio.ps) */
  union {                   /* one or the other: the record stays as small as before */
    uint32_t wait_since;    /* while WAITING: loop time (ms, modulo 2^32) it suspended at */
    int nresults;           /* once DONE: results on co's stack (tasks) */
  };
  int anchor;               /* ref in the anchors table while not done, else LUA_NOREF */
  int spawn_line;
  int cancel_count;         /* cancel() calls not matched by uncancel() */
  int priority;             /* higher runs first within a scheduler round (default 0) */
  unsigned char state, outcome;
  unsigned short flags;
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
  struct corio_timers {     /* the timer heap (host/timers.c) */
    uv_timer_t uv;          /* fires the earliest deadline */
    corio_timer **heap;
    int len, cap;
    uint64_t seq;
    int firing;             /* the callback is firing timers: re-arm once at its end */
  } timers;
  uv_handle_t *own[8];      /* the runtime's own handles: not counted by the leak check */
  int nown;
  uint64_t next_task_id;
  int live_tasks;           /* spawned and not done */
  int anchors;              /* outstanding corio__anchor() refs */
  int unretrieved;          /* task errors reported because nobody retrieved them */
  int soon_pending;         /* done-callbacks queued in the soon table */
  int debug;                /* capture full spawn tracebacks */
  int eager_report;         /* report a failed task with no listener at once (the REPL) */
  int oom;                  /* the scheduler's own bookkeeping ran out of memory: loop stopped */
  int nomem;                /* tasks that died of a memory error (shutdown then drops the rest) */
  int timing;               /* measure each task's run time (corio.set_debug{times = true}) */
  uint64_t tasks_created, tasks_finished, resumes; /* corio.stats() */
  corio_watchdog *watchdog; /* the stall watchdog (watchdog.c), or NULL */
  struct {                  /* how late timers fire (timers.c): bucket b counts lags below */
    uint64_t hist[CORIO_LAG_BUCKETS]; /* 2^b µs (bucket 0: under 1 µs) */
    uint64_t n, max;        /* samples, the largest lag (ns) */
  } lag;
  void *tag;                /* what a scheduler yield carries (see coro.c) */
  struct corio_nest *nest;  /* coroutine.resume frames currently active (innermost first) */
  corio_error_handler on_error;
  void *on_error_ud;
  char errbuf[512];
  corio_pool *pool;
  struct corio_embed *embed;/* state of the embedding API (embed.c) */
};

/* A frame of our coroutine.resume: `co` is being resumed by `from`. */
struct corio_nest {
  lua_State *co, *from;
  struct corio_nest *prev;
};

/* ---- scheduling (host/sched.c; scheduler.h has what only its four files share) ------------------ */

/* corio__await with the name all_tasks() shows given apart from the wait record (waiter slots
 * share one record). */
int corio__await_named(lua_State *L, const corio_wait *wait, const char *name, void *data,
                       lua_KFunction k, lua_KContext ctx);
void corio__push_anchors(lua_State *L); /* the table of anchored values (all_tasks) */
void corio__watchdog_stop(corio_runtime *rt); /* stop and free the stall watchdog, if any */

/* ---- the runtime's own handles -------------------------------------------------------------
 * The leak check (corio.core._stats().handles) counts every handle on the loop except the
 * runtime's own, which it recognises by address: register each one here. */
void corio__own_handle(corio_runtime *rt, uv_handle_t *h);
int corio__count_user_handles(corio_runtime *rt);

/* ---- the timer heap (host/timers.c) --------------------------------------------------------- */
void corio__timers_init(corio_runtime *rt);
/* Close its uv timer with on_closed (returns 1 if that close was started now) and free the
 * heap. */
int corio__timers_close(corio_runtime *rt, uv_close_cb on_closed);
int corio__timers_armed(corio_runtime *rt);

/* ---- state setup ---------------------------------------------------------------------------- */
void corio__anchors_init(lua_State *L);      /* the anchors table of a new state */
void corio__handles_init(corio_runtime *rt); /* check, idle and heap timer on rt->loop (sched.c) */
int corio__open_core(lua_State *L);          /* the corio.core library (lcore.c) */
void corio__coroutine_patch(lua_State *L);   /* tag-aware coroutine.resume/wrap */
void corio__preload_scripts(lua_State *L);   /* scripts/ compiled in */
void corio__register_bindings(lua_State *L); /* package.preload entries of bindings/ */

#endif
