/* corio.thread's pools: threads of our own (not libuv's shared pool, which fs and DNS need),
 * each with a persistent lua_State (worker.c), running jobs for tasks that suspend meanwhile.
 * Lua module "corio._thread": pool, default, run, call, Channel, cores, check, _copy;
 * corio.thread.Pool:run/call/close/size/stats.
 *
 * A job is a malloc'd record that crosses threads: the loop thread encodes its function and
 * arguments, queues it and suspends the task; a worker decodes, runs, encodes the results and
 * puts the job on the pool's done list; the pool's async handle (open only while jobs are in
 * flight, so the leak check sees it only then) wakes the loop, which wakes every task whose
 * job is done in one callback: wake-ups are batched per loop turn. */
#include <stdlib.h>
#include <string.h>

#include "thread.h"

#define POOL "corio.thread.Pool"
#define JOBBOX "corio.thread.Job"
#define MAX_POOL_SIZE 256

const char thread__cancelled_msg[] = "thread: the job was cancelled";
const char thread__closed_msg[] = "thread: the pool was closed";

typedef struct poolbox {
  pool *p;
} poolbox;

static char DEFAULT_POOL; /* registry key in the runtime: the default Pool */

/* ---- the loop side -------------------------------------------------------------------------- */

static void job_free(job *j) {
  thread__tbuf_free(&j->in);
  thread__tbuf_free(&j->out);
  free(j);
}

static void async_free(uv_handle_t *h) {
  free(h);
}

static void pool_async_cb(uv_async_t *a);

static int async_open(pool *p) {
  uv_async_t *a = malloc(sizeof *a);
  if (!a) return UV_ENOMEM;
  int rc = uv_async_init(corio__loop(p->rt), a, pool_async_cb);
  if (rc != 0) {
    free(a);
    return rc;
  }
  a->data = p;
  uv_unref((uv_handle_t *)a); /* ref'd only while a task waits (see `waiting`) */
  uv_mutex_lock(&p->lock);
  p->async = a;
  uv_mutex_unlock(&p->lock);
  return 0;
}

static void async_close(pool *p) {
  uv_mutex_lock(&p->lock);
  uv_async_t *a = p->async;
  p->async = NULL;
  p->signalled = 0;
  uv_mutex_unlock(&p->lock);
  if (a) uv_close((uv_handle_t *)a, async_free);
}

static void waiting_inc(pool *p) {
  if (p->waiting++ == 0 && p->async) uv_ref((uv_handle_t *)p->async);
}

static void waiting_dec(pool *p) {
  if (--p->waiting == 0 && p->async) uv_unref((uv_handle_t *)p->async);
}

/* Jobs back from the workers (or failed before starting): wake their tasks, free the orphans.
 * `wake` is 0 while the state closes: nothing may run then. */
static void collect(pool *p, job *list, int wake) {
  while (list) {
    job *j = list;
    list = j->next;
    j->next = NULL;
    j->state = J_FINISHED;
    p->inflight--;
    if (!j->box) {
      job_free(j);
    } else if (j->task) {
      corio_task *t = j->task;
      j->task = NULL;
      waiting_dec(p);
      if (wake) corio__wake(p->rt, t);
    }
  }
  if (p->inflight == 0) async_close(p);
}

static void pool_async_cb(uv_async_t *a) {
  pool *p = a->data;
  uv_mutex_lock(&p->lock);
  job *list = p->dhead;
  p->dhead = p->dtail = NULL;
  p->signalled = 0;
  uv_mutex_unlock(&p->lock);
  collect(p, list, 1);
}

/* The task waiting on j was cancelled: a queued job never runs; a running one is interrupted
 * at its next instruction (or finishes its C call) and its results are dropped. */
static void job_cancel(lua_State *L, corio_task *t, void *data) {
  job *j = data;
  pool *p = j->pool;
  (void)L;
  (void)t;
  j->task = NULL;
  waiting_dec(p);
  uv_mutex_lock(&p->lock);
  if (j->state == J_QUEUED) {
    job **pp = &p->qhead, *prev = NULL;
    while (*pp != j) prev = *pp, pp = &(*pp)->next;
    *pp = j->next;
    if (p->qtail == j) p->qtail = prev;
    j->next = NULL;
    uv_mutex_unlock(&p->lock);
    collect(p, j, 0);
    return;
  }
  if (j->state == J_RUNNING) thread__interrupt_locked(j->worker, thread__cancelled_msg);
  uv_mutex_unlock(&p->lock);
}

/* corio.ps's reason: "thread.run app.lua:12 (running)", "thread.call mymod.parse (queued)":
 * what runs, from the suspended call's frame ([Pool, f | module, name, args..., box]), and the
 * job's state, read under the pool's lock. */
static void job_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  job *j = data;
  int state = J_QUEUED;
  (void)t;
  if (j->pool) {
    uv_mutex_lock(&j->pool->lock);
    state = j->state;
    uv_mutex_unlock(&j->pool->lock);
  }
  const char *st = state == J_QUEUED ? "queued" : state == J_RUNNING ? "running" : "finishing";
  if (j->kind == K_RUN && lua_type(co, 2) == LUA_TFUNCTION) {
    lua_Debug ar;
    lua_pushvalue(co, 2);
    lua_getinfo(co, ">S", &ar);
    lua_pushfstring(L, "thread.run %s:%d (%s)", ar.short_src, ar.linedefined, st);
  } else if (j->kind == K_CALL && lua_type(co, 2) == LUA_TSTRING &&
             lua_type(co, 3) == LUA_TSTRING) {
    lua_pushfstring(L, "thread.call %s.%s (%s)", lua_tostring(co, 2), lua_tostring(co, 3), st);
  } else {
    lua_pushfstring(L, "%s (%s)", j->kind == K_RUN ? "thread.run" : "thread.call", st);
  }
}

static const corio_wait JOB_WAIT = {"thread.run", job_cancel, job_describe};

static int jobbox_gc(lua_State *L) {
  jobbox *bx = lua_touserdata(L, 1);
  job *j = bx->j;
  if (!j) return 0;
  bx->j = NULL;
  j->box = NULL;
  if (j->task) { /* the state closes while a task waits */
    j->task = NULL;
    if (j->pool) waiting_dec(j->pool);
  }
  /* NEW: refused before it was queued. Else the pool frees it when it comes back. */
  if (j->state == J_NEW || j->state == J_FINISHED) job_free(j);
  return 0;
}

/* Continuation: the job is FINISHED. [pool args..., box] */
static int job_k(lua_State *L, int status, lua_KContext ctx) {
  jobbox *bx = (jobbox *)ctx;
  job *j = bx->j;
  (void)status;
  if (j->failed) {
    if (j->failed == 2) lua_pushliteral(L, "thread: not enough memory for the error message");
    else thread__decode(L, &j->out);
    bx->j = NULL;
    job_free(j);
    return lua_error(L);
  }
  int n = thread__decode(L, &j->out);
  bx->j = NULL;
  job_free(j);
  return n;
}

static pool *check_pool(lua_State *L, int idx) {
  poolbox *pb = luaL_checkudata(L, idx, POOL);
  return pb->p;
}

/* [Pool, f | module, name, args...] -> suspends until the results are back */
static int submit(lua_State *L, int kind, const char *op) {
  pool *p = check_pool(L, 1);
  if (kind == K_RUN) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
  } else {
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
  }
  corio_task *t = corio__check_suspend(L, op);
  if (!p || p->closing) return luaL_error(L, "%s: the pool is closed", op);
  int n = lua_gettop(L) - 1;
  jobbox *bx = lua_newuserdatauv(L, sizeof *bx, 1);
  bx->j = NULL;
  luaL_setmetatable(L, JOBBOX);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  job *j = calloc(1, sizeof *j);
  if (!j) return corio__nomem(L);
  bx->j = j;
  j->box = bx;
  j->pool = p;
  j->kind = kind;
  thread__encode(L, 2, n, &j->in, "arg", 1, TO_THREAD); /* raises before anything started */
  if (p->inflight == 0 && async_open(p) != 0) return corio__nomem(L);
  p->inflight++;
  j->task = t;
  waiting_inc(p);
  uv_mutex_lock(&p->lock);
  j->state = J_QUEUED;
  if (p->qtail) p->qtail->next = j;
  else p->qhead = j;
  p->qtail = j;
  /* Wake an idle worker unless enough are already on their way: a loop turn that resumes
   * many tasks queues many jobs, and one futex wake per job would be most of the cost. */
  if (p->nidle > p->nwoken) {
    p->nwoken++;
    uv_cond_signal(&p->cond);
  }
  uv_mutex_unlock(&p->lock);
  return corio__await(L, &JOB_WAIT, j, job_k, (lua_KContext)bx);
}

/* pool:run(f, ...) -> f(...) computed on a worker  [suspends]
 * f: a Lua function whose only upvalue is _ENV; arguments and results are copied. */
static int pool_run(lua_State *L) {
  return submit(L, K_RUN, "thread.run");
}

/* pool:call(module, name, ...) -> require(module)[name](...) on a worker  [suspends] */
static int pool_call(lua_State *L) {
  return submit(L, K_CALL, "thread.call");
}

/* ---- pools: creation, close, collection ------------------------------------------------------ */

static void pool_join(pool *p) {
  if (p->joined) return;
  p->joined = 1;
  for (int i = 0; i < p->size; i++)
    if (p->w[i].started) uv_thread_join(&p->w[i].tid);
}

/* Stop taking work: queued jobs fail with thread__closed_msg, running ones are interrupted (a job in a C
 * call finishes it; its results are delivered). Workers exit once idle. */
static void pool_stop(pool *p, int wake) {
  uv_mutex_lock(&p->lock);
  if (p->closing) {
    uv_mutex_unlock(&p->lock);
    return;
  }
  p->closing = 1;
  job *list = p->qhead;
  p->qhead = p->qtail = NULL;
  for (int i = 0; i < p->size; i++)
    if (p->w[i].job) thread__interrupt_locked(&p->w[i], thread__closed_msg);
  p->nwoken = p->nidle;
  uv_cond_broadcast(&p->cond);
  uv_mutex_unlock(&p->lock);
  for (job *j = list; j; j = j->next) thread__job_fail(j, thread__closed_msg, sizeof thread__closed_msg - 1);
  if (list) collect(p, list, wake);
}

static void pool_free(pool *p) {
  for (int i = 0; i < p->size; i++) free(p->w[i].init_err);
  free(p->w);
  free(p->init);
  free(p->path);
  free(p->cpath);
  uv_cond_destroy(&p->cond);
  uv_mutex_destroy(&p->lock);
  free(p);
}

/* pool:close(): see pool_stop; idempotent. The threads are joined now when none is busy,
 * else when the Pool is collected (at the latest when the runtime closes). */
static int pool_close(lua_State *L) {
  pool *p = check_pool(L, 1);
  if (!p) return 0;
  pool_stop(p, 1);
  uv_mutex_lock(&p->lock);
  int busy = 0;
  for (int i = 0; i < p->size; i++) busy |= p->w[i].job != NULL;
  uv_mutex_unlock(&p->lock);
  if (!busy) pool_join(p);
  return 0;
}

/* __gc: close, join every thread (waits for a job stuck in a C call), free. Runs in lua_close
 * for the default pool (it lives in the registry): shutting the runtime down joins them. */
static int pool_gc(lua_State *L) {
  poolbox *pb = lua_touserdata(L, 1);
  pool *p = pb->p;
  if (!p) return 0;
  pb->p = NULL;
  pool_stop(p, 0);
  pool_join(p);
  uv_mutex_lock(&p->lock);
  job *list = p->dhead;
  p->dhead = p->dtail = NULL;
  uv_mutex_unlock(&p->lock);
  /* Jobs still held by a task's box (the state is closing) are left to the box's __gc. */
  for (job *j = list; j; j = j->next) {
    if (j->box) j->pool = NULL;
    if (j->task) j->task = NULL, p->waiting--;
  }
  collect(p, list, 0);
  async_close(p);
  pool_free(p);
  return 0;
}

static char *dupfield(lua_State *L, int idx, const char *k) {
  char *s = NULL;
  if (lua_getfield(L, idx, k) == LUA_TSTRING) {
    s = strdup(lua_tostring(L, -1));
    if (!s) corio__nomem(L);
  }
  lua_pop(L, 1);
  return s;
}

static int default_size(void) {
  unsigned n = uv_available_parallelism();
  return n < 1 ? 1 : n > MAX_POOL_SIZE ? MAX_POOL_SIZE : (int)n;
}

/* Push a new Pool of `size` workers. */
static pool *pool_new(lua_State *L, int size, const char *init, lua_Integer limit, int nice) {
  poolbox *pb = lua_newuserdatauv(L, sizeof *pb, 0);
  pb->p = NULL;
  luaL_setmetatable(L, POOL);
  pool *p = calloc(1, sizeof *p);
  if (!p) corio__nomem(L);
  if (uv_mutex_init(&p->lock) != 0) {
    free(p);
    corio__nomem(L);
  }
  uv_cond_init(&p->cond);
  p->w = calloc((size_t)size, sizeof *p->w);
  p->size = size;
  p->rt = corio__rt(L);
  p->limit = (size_t)limit;
  p->nice = nice;
  pb->p = p; /* from here on __gc cleans up */
  if (!p->w) {
    p->size = 0;
    corio__nomem(L);
  }
  if (init && !(p->init = strdup(init))) corio__nomem(L);
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    p->path = dupfield(L, -1, "path");
    p->cpath = dupfield(L, -1, "cpath");
  }
  lua_pop(L, 1);
  for (int i = 0; i < size; i++) {
    worker *w = &p->w[i];
    w->p = p;
    w->limit = p->limit;
    atomic_init(&w->interrupt, 0);
    int rc = uv_thread_create(&w->tid, thread__worker_main, w);
    if (rc != 0) luaL_error(L, "thread.pool: cannot start a thread (%s)", uv_strerror(rc));
    w->started = 1;
  }
  return p;
}

/* corio._thread.pool([size[, init[, memory_limit[, nice]]]]) -> Pool */
static int l_pool(lua_State *L) {
  lua_Integer size = luaL_optinteger(L, 1, default_size());
  const char *init = luaL_optstring(L, 2, NULL);
  lua_Integer limit = luaL_optinteger(L, 3, 0);
  lua_Integer nice = luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, size >= 1 && size <= MAX_POOL_SIZE, 1, "size must be 1 .. 256");
  luaL_argcheck(L, limit >= 0, 3, "memory limit must be >= 0");
  luaL_argcheck(L, nice >= 0 && nice <= 19, 4, "nice must be 0 .. 19");
  pool_new(L, (int)size, init, limit, (int)nice);
  return 1;
}

/* The default pool, made at first use and kept in the registry (lua_close collects it). */
static void push_default(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DEFAULT_POOL) == LUA_TUSERDATA) return;
  lua_pop(L, 1);
  pool_new(L, default_size(), NULL, 0, 0);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DEFAULT_POOL);
}

/* corio._thread.default() -> the default Pool */
static int l_default(lua_State *L) {
  push_default(L);
  return 1;
}

/* corio.thread.run(f, ...) on the default pool  [suspends] */
static int l_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION); /* here, so the message counts as the caller does */
  push_default(L);
  lua_insert(L, 1);
  return submit(L, K_RUN, "thread.run");
}

/* corio.thread.call(module, name, ...) on the default pool  [suspends] */
static int l_call(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  push_default(L);
  lua_insert(L, 1);
  return submit(L, K_CALL, "thread.call");
}

static int tbuf_gc(lua_State *L) {
  thread__tbuf_free(lua_touserdata(L, 1));
  return 0;
}

/* Encode the values 1..top of L into a buffer owned by a userdata left on the stack (so a raise
 * while encoding frees what was built), as run would send them; raises as run would. */
static tbuf *encode_args(lua_State *L) {
  int n = lua_gettop(L);
  tbuf *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, tbuf_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  thread__encode(L, 1, n, b, "arg", 1, TO_THREAD);
  return b;
}

/* corio._thread.check(...): raises as run would if a value cannot be sent; sends nothing. */
static int l_check(lua_State *L) {
  thread__tbuf_free(encode_args(L));
  return 0;
}

/* corio._thread._copy(...) -> copies of the values, as a worker would receive them (for the
 * copy-cost benchmark and the specs: one state, no thread). */
static int l_copy(lua_State *L) {
  tbuf *b = encode_args(L);
  int m = thread__decode(L, b);
  thread__tbuf_free(b);
  return m;
}

/* corio._thread.cores() -> uv_available_parallelism() */
static int l_cores(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  return 1;
}

/* pool:size() -> number of worker threads */
static int pool_size(lua_State *L) {
  pool *p = check_pool(L, 1);
  lua_pushinteger(L, p ? p->size : 0);
  return 1;
}

/* pool:stats() -> {size, queued, running, inflight, waiting, closed} */
static int pool_stats(lua_State *L) {
  pool *p = check_pool(L, 1);
  int queued = 0, running = 0;
  lua_createtable(L, 0, 6);
  if (!p) return 1;
  uv_mutex_lock(&p->lock);
  for (job *j = p->qhead; j; j = j->next) queued++;
  for (int i = 0; i < p->size; i++) running += p->w[i].job != NULL;
  uv_mutex_unlock(&p->lock);
  lua_pushinteger(L, p->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, running);
  lua_setfield(L, -2, "running");
  lua_pushinteger(L, p->inflight);
  lua_setfield(L, -2, "inflight");
  lua_pushinteger(L, p->waiting);
  lua_setfield(L, -2, "waiting");
  lua_pushboolean(L, p->closing);
  lua_setfield(L, -2, "closed");
  return 1;
}

static int pool_tostring(lua_State *L) {
  pool *p = check_pool(L, 1);
  lua_pushfstring(L, POOL " (%d threads%s)", p ? p->size : 0,
                  !p || p->closing ? ", closed" : "");
  return 1;
}

static const luaL_Reg pool_methods[] = {
  {"run", pool_run},
  {"call", pool_call},
  {"close", pool_close},
  {"size", pool_size},
  {"stats", pool_stats},
  {NULL, NULL}
};

static const luaL_Reg pool_meta[] = {
  {"__gc", pool_gc},
  {"__close", pool_close},
  {"__tostring", pool_tostring},
  {NULL, NULL}
};

static const luaL_Reg jobbox_meta[] = {
  {"__gc", jobbox_gc},
  {NULL, NULL}
};

static const luaL_Reg thread_funcs[] = {
  {"pool", l_pool},
  {"default", l_default},
  {"run", l_run},
  {"call", l_call},
  {"cores", l_cores},
  {"check", l_check},
  {"_copy", l_copy},
  {"Channel", l_channel_new},
  {NULL, NULL}
};

int luaopen_corio_thread(lua_State *L) {
  corio__class(L, POOL, pool_methods, pool_meta);
  lua_pop(L, 1);
  corio__class(L, JOBBOX, NULL, jobbox_meta);
  lua_pop(L, 1);
  thread__chan_open(L);
  luaL_newlib(L, thread_funcs);
  return 1;
}
