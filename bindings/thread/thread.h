/* corio.thread, private: the pieces its files share. copy.c turns Lua values into bytes and
 * back (the only way values cross threads), channel.c is the thread-safe queue, worker.c the
 * threads and their states, pool.c the jobs, the loop side and the module. */
#ifndef CORIO_THREAD_H
#define CORIO_THREAD_H

#include <stdatomic.h>

#include "binding.h"

typedef struct chan chan;
typedef struct worker worker;

/* ---- bytes: the encoded form of values (copy.c) ---------------------------------------------
 * A tbuf owns its bytes and a reference to every channel encoded in it (dropped by
 * tbuf_free, whether or not the bytes were decoded). Plain malloc: a tbuf is filled on one
 * thread and read on another. */
typedef struct tbuf {
  char *p;
  size_t n, cap;
  chan **chans;
  int nchans, capchans;
} tbuf;

void thread__tbuf_free(tbuf *b); /* back to empty; idempotent */
/* Append one string value without a Lua state (messages made on the loop thread). Returns 0 or
 * -1 when out of memory. */
int thread__tbuf_string(tbuf *b, const char *s, size_t len);

/* Where a value goes, for the refusal messages: "... to a thread", "... from a thread". */
enum { TO_THREAD, FROM_THREAD, THROUGH_CHANNEL };

/* Append the values at stack indices first .. first+n-1 to b. Raises (b keeps what was written:
 * its owner frees it) when a value cannot be sent: "<what> <k> <path>: cannot send ...", where
 * k counts from `k0`. */
void thread__encode(lua_State *L, int first, int n, tbuf *b, const char *what, int k0, int dir);
/* Push the values of b (all of them); returns how many. May raise a memory error. */
int thread__decode(lua_State *L, const tbuf *b);

/* ---- channels (channel.c) ------------------------------------------------------------------ */
void thread__chan_open(lua_State *L);     /* the Channel class in this state */
chan *thread__tochan(lua_State *L, int idx); /* the channel of a Channel userdata, or NULL */
void thread__chan_push(lua_State *L, chan *c); /* a new userdata for c (takes a reference) */
void thread__chan_ref(chan *c);
void thread__chan_unref(chan *c);
int l_channel_new(lua_State *L);

/* ---- workers (pool.c), for a channel that blocks a worker ---------------------------------- */
worker *thread__worker(lua_State *L); /* the worker whose state L is, or NULL on the loop */
/* Around a blocking wait on c->cond: lets a cancellation or a pool's close wake the worker. */
void thread__block_begin(worker *w, uv_mutex_t *lock, uv_cond_t *cond1, uv_cond_t *cond2);
void thread__block_end(worker *w);
/* Non-NULL (the message to raise) once the worker's job is cancelled or its pool closed. */
const char *thread__interrupted(worker *w);

/* ---- pools, jobs, workers (pool.c: the loop side; worker.c: the threads) -------------------- */
#define MAX_RESUMING 220 /* above LUAI_MAXCCALLS (200): resumes nest no deeper */

extern const char thread__cancelled_msg[];
extern const char thread__closed_msg[];

typedef struct pool pool;
typedef struct job job;
typedef struct jobbox jobbox;

enum { J_NEW, J_QUEUED, J_RUNNING, J_DONE, J_FINISHED };
enum { K_RUN, K_CALL };

/* The fields a worker touches are under pool.lock: state, next, worker. */
struct job {
  job *next;         /* in the pool's queue or done list */
  pool *pool;        /* NULL once the pool is gone (only at lua_close) */
  worker *worker;    /* while running */
  tbuf in, out;      /* what goes to the worker; what comes back (results or a message) */
  int kind, state;
  int failed;        /* 1: out holds the error message; 2: not even that (out of memory) */
  jobbox *box;       /* the task side (loop thread), NULL once collected */
  corio_task *task;  /* waiting for it (loop thread), NULL once woken or cancelled */
};

/* The task's handle on a job: a userdata on the suspended call's stack; its user value is the
 * Pool, which therefore lives as long as a task waits on it. */
struct jobbox {
  job *j;
};

struct worker {
  pool *p;
  uv_thread_t tid;
  int started;
  lua_State *L;        /* the worker's state (set under the lock before its first job) */
  job *job;            /* the one it runs (under the lock) */
  atomic_int interrupt;
  const char *stop_msg; /* written before `interrupt` is set */
  /* Where the worker blocks on a channel (under the pool's lock): what to broadcast to it. */
  uv_mutex_t *blocked_lock;
  uv_cond_t *blocked_c1, *blocked_c2;
  char *init_err;      /* the init module failed: every job on this worker fails with it */
  /* The coroutines being resumed, innermost last (under the lock): a hook set on the worker's
   * main state does not reach a coroutine that is already running. */
  lua_State *resuming[MAX_RESUMING];
  int nresuming;
  size_t mem, limit;   /* bytes its state uses; 0 = no limit */
};

struct pool {
  uv_mutex_t lock;
  uv_cond_t cond;            /* workers wait here for jobs */
  job *qhead, *qtail;        /* queued */
  job *dhead, *dtail;        /* done, not yet seen by the loop */
  int nidle;                 /* workers waiting on cond */
  int nwoken;                /* of those, signalled and not yet running: no second signal */
  int closing;
  int signalled;             /* the async was sent and its callback has not run yet */
  uv_async_t *async;         /* open while inflight > 0; pointer under the lock */
  /* loop thread only */
  int inflight;              /* submitted and not yet FINISHED */
  int waiting;               /* jobs a task waits for: the async is ref'd while > 0 */
  int joined;
  corio_runtime *rt;
  int size;
  worker *w;
  char *init, *path, *cpath; /* for the workers' states */
  size_t limit;
  int nice;                  /* added to the workers' nice value (Linux) */
};

void thread__worker_main(void *arg);   /* a worker thread's body (uv_thread_create) */
/* With the pool's lock held, for a worker that runs a job: make it raise `msg` at once. */
void thread__interrupt_locked(worker *w, const char *msg);
void thread__job_fail(job *j, const char *msg, size_t len); /* out = the message */

#endif
