/* corio.thread.Channel: a bounded queue that tasks and worker threads share. A task that must
 * wait suspends (other tasks run); a worker that must wait blocks (that worker only). Values
 * are copied in (thread__encode) and out; the channel itself travels by reference.
 * Lua: Channel([capacity]) -> ch; ch:put(v), ch:get() -> v | nil once closed and drained,
 * ch:close(), #ch, ch:capacity(). */
#include <stdlib.h>
#include <string.h>

#include "thread.h"

#define CHANNEL "corio.thread.Channel"
#define CHANNEL_WAIT "corio.thread.ChannelWait"
#define DEFAULT_CAPACITY 64

/* A waiting task on the loop side: lives in a userdata on that task's stack. */
typedef struct cwait {
  struct cwait *next, **pprev; /* in chan.waiters; pprev NULL when not listed */
  corio_task *task;
  chan *c;
} cwait;

/* Shared by every state that holds the channel; freed with the last reference. `lock`
 * guards the items, `closed`, `nwaiters` and `async`; `waiters` is the loop thread's. */
struct chan {
  uv_mutex_t lock;
  uv_cond_t not_empty, not_full; /* for workers */
  atomic_int refs;
  tbuf *items; /* a ring of `cap` encoded values */
  int cap, head, count;
  int closed;
  /* The loop side: the runtime that made the channel. While tasks wait, an async handle lets
   * workers wake them; it exists only then (so the leak check sees it only then). */
  corio_runtime *rt;
  uv_async_t *async;
  int nwaiters;  /* tasks waiting (under lock: workers read it) */
  int signalled; /* an async wake-up is on its way */
  cwait *waiters;
};

typedef struct chanbox {
  chan *c;
} chanbox;

void thread__chan_ref(chan *c) {
  atomic_fetch_add(&c->refs, 1);
}

void thread__chan_unref(chan *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1) return;
  for (int i = 0; i < c->count; i++) thread__tbuf_free(&c->items[(c->head + i) % c->cap]);
  free(c->items);
  uv_cond_destroy(&c->not_empty);
  uv_cond_destroy(&c->not_full);
  uv_mutex_destroy(&c->lock);
  free(c);
}

chan *thread__tochan(lua_State *L, int idx) {
  chanbox *b = luaL_testudata(L, idx, CHANNEL);
  return b ? b->c : NULL;
}

void thread__chan_push(lua_State *L, chan *c) {
  chanbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->c = NULL;
  luaL_setmetatable(L, CHANNEL);
  thread__chan_ref(c);
  b->c = c;
}

static chan *check_chan(lua_State *L) {
  chanbox *b = luaL_checkudata(L, 1, CHANNEL);
  return b->c;
}

/* ---- waking the tasks that wait (loop thread) ------------------------------------------------ */

static void async_free(uv_handle_t *h) {
  free(h);
}

/* Every waiting task retries: a put may have made room, a get an item, close an end. */
static void wake_all(chan *c) {
  if (!c->waiters) return;
  while (c->waiters) {
    cwait *w = c->waiters;
    c->waiters = w->next;
    if (w->next) w->next->pprev = &c->waiters;
    w->pprev = NULL;
    corio__wake(c->rt, w->task);
    w->task = NULL;
  }
  uv_mutex_lock(&c->lock);
  uv_async_t *a = c->async;
  c->nwaiters = 0;
  c->async = NULL;
  c->signalled = 0;
  uv_mutex_unlock(&c->lock);
  if (a) uv_close((uv_handle_t *)a, async_free);
}

static void chan_async_cb(uv_async_t *a) {
  wake_all(a->data);
}

static void unlist(cwait *w) {
  chan *c = w->c;
  if (!w->pprev) return;
  *w->pprev = w->next;
  if (w->next) w->next->pprev = w->pprev;
  w->pprev = NULL;
  w->task = NULL;
  uv_mutex_lock(&c->lock);
  uv_async_t *a = NULL;
  if (--c->nwaiters == 0) {
    a = c->async;
    c->async = NULL;
    c->signalled = 0;
  }
  uv_mutex_unlock(&c->lock);
  if (a) uv_close((uv_handle_t *)a, async_free);
}

static void chan_wait_cancel(lua_State *L, corio_task *t, void *data) {
  (void)L;
  (void)t;
  unlist(data);
}

static int cwait_gc(lua_State *L) {
  cwait *w = lua_touserdata(L, 1);
  if (w->c) unlist(w);
  return 0;
}

/* corio.ps's reason: "thread.Channel:get (0 items)", "thread.Channel:put (full, 8 items)" */
static void chan_describe(lua_State *L, chan *c, const char *op) {
  uv_mutex_lock(&c->lock);
  int n = c->count;
  uv_mutex_unlock(&c->lock);
  lua_pushfstring(L, "thread.Channel:%s (%d item%s)", op, n, n == 1 ? "" : "s");
}

static void get_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  (void)t;
  (void)co;
  chan_describe(L, ((cwait *)data)->c, "get");
}

static void put_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  (void)t;
  (void)co;
  chan_describe(L, ((cwait *)data)->c, "put");
}

static const corio_wait GET_WAIT = {"thread.Channel:get", chan_wait_cancel, get_describe};
static const corio_wait PUT_WAIT = {"thread.Channel:put", chan_wait_cancel, put_describe};

/* Called with c->lock held, after a change a waiting task may care about. */
static void notify_locked(chan *c, worker *wk) {
  uv_cond_broadcast(&c->not_empty);
  uv_cond_broadcast(&c->not_full);
  /* A worker changed it: tasks are woken through the async (the loop's own changes wake them
   * directly, after the lock is released). */
  if (wk && c->nwaiters && c->async && !c->signalled) {
    c->signalled = 1;
    uv_async_send(c->async);
  }
}

/* The task's side of waiting, with c->lock held: count it (the first waiter opens the async
 * that lets workers wake the loop), then release the lock. Raises after unlocking. */
static void start_waiting(lua_State *L, chan *c, const char *op) {
  if (!c->rt) c->rt = corio__rt(L); /* made in a worker: the first loop to wait adopts it */
  if (c->rt != corio__rt(L)) {
    uv_mutex_unlock(&c->lock);
    luaL_error(L, "%s: the channel belongs to another runtime", op);
  }
  if (c->nwaiters++ == 0 && !c->async) {
    uv_async_t *a = malloc(sizeof *a);
    if (!a || uv_async_init(corio__loop(c->rt), a, chan_async_cb) != 0) {
      c->nwaiters--;
      uv_mutex_unlock(&c->lock);
      free(a);
      corio__nomem(L);
    }
    a->data = c;
    c->async = a;
  }
  uv_mutex_unlock(&c->lock);
}

/* List w (a userdata on the task's stack, anchored by it) and suspend. */
static int suspend(lua_State *L, chan *c, cwait *w, const corio_wait *wait, lua_KFunction k) {
  w->c = c;
  w->task = corio__current(L);
  w->next = c->waiters;
  if (w->next) w->next->pprev = &w->next;
  w->pprev = &c->waiters;
  c->waiters = w;
  return corio__await(L, wait, w, k, 0);
}

/* A waiter record for the current task, pushed (loop side only). */
static cwait *new_waiter(lua_State *L) {
  cwait *w = lua_newuserdatauv(L, sizeof *w, 1);
  memset(w, 0, sizeof *w);
  luaL_setmetatable(L, CHANNEL_WAIT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return w;
}

static int tbuf_gc(lua_State *L) {
  thread__tbuf_free(lua_touserdata(L, 1));
  return 0;
}

/* An empty buffer that is freed with its userdata (pushed). */
static tbuf *new_msg(lua_State *L) {
  tbuf *m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, tbuf_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  return m;
}

/* A worker waits on `cond` until ready(c) or interrupted; returns the stop message or NULL.
 * Enters and leaves with c->lock held. */
static const char *block(worker *wk, chan *c, uv_cond_t *cond, int (*ready)(chan *)) {
  const char *stop = NULL;
  uv_mutex_unlock(&c->lock);
  thread__block_begin(wk, &c->lock, &c->not_full, &c->not_empty);
  uv_mutex_lock(&c->lock);
  while (!ready(c) && !(stop = thread__interrupted(wk))) uv_cond_wait(cond, &c->lock);
  uv_mutex_unlock(&c->lock);
  thread__block_end(wk);
  uv_mutex_lock(&c->lock);
  return stop;
}

static int can_put(chan *c) { return c->count < c->cap || c->closed; }
static int can_get(chan *c) { return c->count > 0 || c->closed; }

/* ---- put ------------------------------------------------------------------------------------ */

static int chan_put_k(lua_State *L, int status, lua_KContext ctx);

/* Stack at entry and at each retry: [ch, value, msg] where msg holds the encoded value. */
static int put_body(lua_State *L) {
  chan *c = check_chan(L);
  tbuf *m = lua_touserdata(L, 3);
  worker *wk = thread__worker(L);
  cwait *w = wk ? NULL : new_waiter(L);
  uv_mutex_lock(&c->lock);
  if (wk && !can_put(c)) {
    const char *stop = block(wk, c, &c->not_full, can_put);
    if (stop) {
      uv_mutex_unlock(&c->lock);
      return luaL_error(L, "%s", stop);
    }
  }
  if (c->closed) {
    uv_mutex_unlock(&c->lock);
    return luaL_error(L, "thread.Channel:put: the channel is closed");
  }
  if (c->count < c->cap) {
    c->items[(c->head + c->count) % c->cap] = *m;
    memset(m, 0, sizeof *m);
    c->count++;
    notify_locked(c, wk);
    uv_mutex_unlock(&c->lock);
    if (!wk) wake_all(c);
    return 0;
  }
  /* Full, on the loop: wait for a get (a worker's wakes us through the async). */
  start_waiting(L, c, "thread.Channel:put");
  return suspend(L, c, w, &PUT_WAIT, chan_put_k);
}

static int chan_put_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  lua_settop(L, 3);
  return put_body(L);
}

/* ch:put(value)  [suspends a task while full; blocks a worker while full]
 * Copies value into the channel. Raises if the channel is closed or the value cannot be sent;
 * nil cannot be put (get returns nil for "closed"). */
static int chan_put(lua_State *L) {
  check_chan(L);
  luaL_checkany(L, 2);
  if (lua_isnil(L, 2)) return luaL_argerror(L, 2, "cannot put nil into a channel");
  lua_settop(L, 2);
  if (!thread__worker(L)) corio__check_suspend(L, "thread.Channel:put");
  tbuf *m = new_msg(L);
  thread__encode(L, 2, 1, m, "value", 1, THROUGH_CHANNEL);
  return put_body(L);
}

/* ---- get ------------------------------------------------------------------------------------ */

static int chan_get_k(lua_State *L, int status, lua_KContext ctx);

/* Stack at entry and at each retry: [ch]. */
static int get_body(lua_State *L) {
  chan *c = check_chan(L);
  worker *wk = thread__worker(L);
  cwait *w = wk ? NULL : new_waiter(L);
  /* The item moves into a collectable buffer before decoding: decoding may raise. */
  tbuf *m = new_msg(L);
  uv_mutex_lock(&c->lock);
  if (wk && !can_get(c)) {
    const char *stop = block(wk, c, &c->not_empty, can_get);
    if (stop) {
      uv_mutex_unlock(&c->lock);
      return luaL_error(L, "%s", stop);
    }
  }
  if (c->count > 0) {
    *m = c->items[c->head];
    memset(&c->items[c->head], 0, sizeof *m);
    c->head = (c->head + 1) % c->cap;
    c->count--;
    notify_locked(c, wk);
    uv_mutex_unlock(&c->lock);
    if (!wk) wake_all(c);
    int n = thread__decode(L, m);
    thread__tbuf_free(m);
    return n;
  }
  if (c->closed) {
    uv_mutex_unlock(&c->lock);
    lua_pushnil(L);
    return 1;
  }
  lua_pop(L, 1); /* the buffer: not needed while waiting */
  start_waiting(L, c, "thread.Channel:get");
  return suspend(L, c, w, &GET_WAIT, chan_get_k);
}

static int chan_get_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  lua_settop(L, 1);
  return get_body(L);
}

/* ch:get() -> value | nil when the channel is closed and empty
 * [suspends a task while empty; blocks a worker while empty] */
static int chan_get(lua_State *L) {
  check_chan(L);
  lua_settop(L, 1);
  if (!thread__worker(L)) corio__check_suspend(L, "thread.Channel:get");
  return get_body(L);
}

/* ch:close(): no more puts; gets drain what is left, then return nil. Idempotent. */
static int chan_close(lua_State *L) {
  chan *c = check_chan(L);
  worker *wk = thread__worker(L);
  uv_mutex_lock(&c->lock);
  c->closed = 1;
  notify_locked(c, wk);
  uv_mutex_unlock(&c->lock);
  if (!wk && c->rt == corio__rt(L)) wake_all(c);
  return 0;
}

/* #ch -> the number of values waiting in it */
static int chan_len(lua_State *L) {
  chan *c = check_chan(L);
  uv_mutex_lock(&c->lock);
  int n = c->count;
  uv_mutex_unlock(&c->lock);
  lua_pushinteger(L, n);
  return 1;
}

/* ch:capacity() -> n */
static int chan_capacity(lua_State *L) {
  lua_pushinteger(L, check_chan(L)->cap);
  return 1;
}

static int chan_tostring(lua_State *L) {
  chan *c = check_chan(L);
  lua_pushfstring(L, CHANNEL " (%p)", (void *)c);
  return 1;
}

static int chan_eq(lua_State *L) {
  chan *a = thread__tochan(L, 1), *b = thread__tochan(L, 2);
  lua_pushboolean(L, a && a == b);
  return 1;
}

static int chan_gc(lua_State *L) {
  chanbox *b = lua_touserdata(L, 1);
  if (b->c) thread__chan_unref(b->c);
  b->c = NULL;
  return 0;
}

/* corio.thread.Channel([capacity = 64]) -> Channel */
int l_channel_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, DEFAULT_CAPACITY);
  luaL_argcheck(L, cap >= 1 && cap <= (1 << 24), 1, "capacity must be 1 .. 2^24");
  chanbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->c = NULL;
  luaL_setmetatable(L, CHANNEL);
  chan *c = calloc(1, sizeof *c);
  if (!c) return corio__nomem(L);
  c->items = calloc((size_t)cap, sizeof *c->items);
  if (!c->items || uv_mutex_init(&c->lock) != 0) {
    free(c->items);
    free(c);
    return corio__nomem(L);
  }
  uv_cond_init(&c->not_empty);
  uv_cond_init(&c->not_full);
  atomic_init(&c->refs, 1);
  c->cap = (int)cap;
  c->rt = thread__worker(L) ? NULL : corio__rt(L);
  b->c = c;
  return 1;
}

static const luaL_Reg chan_methods[] = {
  {"put", chan_put},
  {"get", chan_get},
  {"close", chan_close},
  {"capacity", chan_capacity},
  {NULL, NULL}
};

static const luaL_Reg chan_meta[] = {
  {"__gc", chan_gc},
  {"__len", chan_len},
  {"__eq", chan_eq},
  {"__tostring", chan_tostring},
  {NULL, NULL}
};

static const luaL_Reg cwait_meta[] = {
  {"__gc", cwait_gc},
  {NULL, NULL}
};

void thread__chan_open(lua_State *L) {
  corio__class(L, CHANNEL, chan_methods, chan_meta);
  lua_pop(L, 1);
  corio__class(L, CHANNEL_WAIT, NULL, cwait_meta);
  lua_pop(L, 1);
}
