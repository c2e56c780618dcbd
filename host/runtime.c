/* The runtime: one lua_State and the libuv handles that run ready tasks, anchors, the loop
 * drivers (run until idle, drive from top-level code). The public corio_* entry points are
 * in embed.c. */

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static char ANCHORS;  /* registry key: the anchor set (a userdata; user value 1: the table) */

/* ---- anchors -----------------------------------------------------------------------------
 * An anchor is a slot of one table, its integer key the ref. luaL_ref would never give the
 * memory back: it keeps its free list inside the table, so after a burst of a million tasks
 * the table keeps a million slots (16 MB) forever. Here a bitmap of used slots lives beside
 * the table; a new anchor takes the lowest free slot, so the live ones stay packed at the
 * bottom, and when the highest live slot falls under a quarter of the table's size the table
 * and the bitmap are rebuilt smaller (the live refs keep their numbers). */

typedef struct anchor_set {
  uint64_t *used;  /* bit r-1 set: slot r is live */
  int cap;         /* slots the bitmap covers (a multiple of 64) */
  int top;         /* highest live slot, 0 if none */
  int hint;        /* no free slot below word `hint` */
} anchor_set;

#define MIN_SLOTS 1024

static anchor_set *push_set(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ANCHORS);
  anchor_set *a = lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  return a;  /* the table is on the stack */
}

/* Grow the bitmap to `cap` slots. Returns 0 if out of memory. (The table grows by itself.) */
static int grow_set(anchor_set *a, int cap) {
  uint64_t *used = realloc(a->used, sizeof *used * (size_t)(cap / 64));
  if (!used) return 0;
  memset(used + a->cap / 64, 0, sizeof *used * (size_t)((cap - a->cap) / 64));
  a->used = used;
  a->cap = cap;
  return 1;
}

/* (protected) shrink_set(set, table, cap): a fresh table holding slots 1..top replaces the
 * set's, then the bitmap shrinks to cap slots. Unanchoring happens in libuv callbacks and
 * finalizers, where a memory error must not escape: hence the protected call. */
static int shrink_set(lua_State *L) {
  anchor_set *a = lua_touserdata(L, 1);
  int cap = (int)lua_tointeger(L, 3);
  lua_createtable(L, a->top, 0);
  for (int r = 1; r <= a->top; r++) {
    lua_rawgeti(L, 2, r);
    lua_rawseti(L, -2, r);
  }
  lua_setiuservalue(L, 1, 1);
  uint64_t *used = realloc(a->used, sizeof *used * (size_t)(cap / 64));
  if (used) a->used = used;  /* else the larger block serves */
  a->cap = cap;
  if (a->hint > cap / 64) a->hint = cap / 64;
  return 0;
}

static int anchors_gc(lua_State *L) {
  anchor_set *a = lua_touserdata(L, 1);
  free(a->used);
  a->used = NULL;
  return 0;
}

int corio__anchor(lua_State *L, int idx) {
  corio_runtime *rt = corio__rt(L);
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx)) return LUA_REFNIL;
  anchor_set *a = push_set(L);
  int w = a->hint;
  while (w < a->cap / 64 && a->used[w] == ~(uint64_t)0) w++;
  if (w == a->cap / 64) {
    int cap = a->cap ? a->cap * 2 : MIN_SLOTS;
    if (a->cap > INT_MAX / 2 || !grow_set(a, cap)) luaL_error(L, "corio: out of memory");
  }
  a->hint = w;
  int bit = __builtin_ctzll(~a->used[w]);
  a->used[w] |= (uint64_t)1 << bit;
  int ref = w * 64 + bit + 1;
  if (ref > a->top) a->top = ref;
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  rt->anchors++;
  return ref;
}

void corio__unanchor(lua_State *L, int ref) {
  if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
  corio_runtime *rt = corio__rt(L);
  anchor_set *a = push_set(L);
  int w = (ref - 1) / 64;
  a->used[w] &= ~((uint64_t)1 << ((ref - 1) % 64));
  if (w < a->hint) a->hint = w;
  lua_pushnil(L);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  if (ref == a->top) {
    /* find the new highest live slot, a word at a time */
    w = (a->top - 1) / 64;
    while (w >= 0 && a->used[w] == 0) w--;
    a->top = w < 0 ? 0 : w * 64 + 63 - __builtin_clzll(a->used[w]) + 1;
    if (a->cap > MIN_SLOTS && a->top < a->cap / 4) {
      int cap = a->cap / 2;
      while (cap > MIN_SLOTS && a->top < cap / 4) cap /= 2;
      lua_pushcfunction(L, shrink_set);
      lua_rawgetp(L, LUA_REGISTRYINDEX, &ANCHORS);
      lua_getiuservalue(L, -1, 1);
      lua_pushinteger(L, cap);
      if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);  /* out of memory: keep the old */
    }
  }
  rt->anchors--;
}

void corio__push_anchor(lua_State *L, int ref) {
  push_set(L);
  lua_rawgeti(L, -1, ref);
  lua_remove(L, -2);
}

void corio__push_anchors(lua_State *L) {
  push_set(L);
}

/* ---- running ready tasks --------------------------------------------------------------- */

/* () -> nothing: the ready tasks take their turn (protected) */
static int run_ready_p(lua_State *L) {
  corio__run_ready(corio__rt(L));
  return 0;
}

/* Run the ready tasks inside a protected call. A task's own errors are caught by its resume,
 * but the scheduler's bookkeeping around it (the traceback table, the results, the done
 * callbacks' report) allocates on the main state: out of memory there must not reach Lua's
 * panic handler (corio_run, corio_close) nor unwind through uv_run (the command). It costs
 * the task being stepped, which is reported; the other ready tasks stay queued. */
static void run_ready(corio_runtime *rt) {
  lua_State *L = rt->L;
  corio_task *current = rt->current;
  if (!lua_checkstack(L, 2)) {
    rt->nomem++;
    rt->on_error(rt->on_error_ud, "corio: not enough memory to run the ready tasks");
    return;
  }
  lua_pushcfunction(L, run_ready_p);
  int st = lua_pcall(L, 0, 0, 0);
  if (st != LUA_OK) {
    if (st == LUA_ERRMEM) rt->nomem++;
    rt->current = current;
    const char *msg = lua_tostring(L, -1);
    rt->on_error(rt->on_error_ud, msg ? msg : "corio: error while running the ready tasks");
    lua_pop(L, 1);
  }
}

static void check_cb(uv_check_t *h) {
  corio_runtime *rt = h->data;
  rt->in_loop++;
  run_ready(rt);
  rt->in_loop--;
}

static void idle_cb(uv_idle_t *h) {
  (void)h;  /* only there so that poll does not block while tasks are ready */
}

void corio__kick(corio_runtime *rt) {
  if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, idle_cb);
}

void corio__make_ready(corio_runtime *rt, corio_task *t) {
  t->state = CORIO_READY;
  if (!(t->flags & CORIO_F_MAIN)) {
    t->next_ready = NULL;
    if (rt->ready_tail) rt->ready_tail->next_ready = t;
    else rt->ready_head = t;
    rt->ready_tail = t;
    if (t->priority) rt->ready_prio++;
  }
  if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, idle_cb);
}

int corio__turn(corio_runtime *rt, uv_run_mode mode, int (*skip_poll)(corio_runtime *rt)) {
  int alive = 0;
  rt->in_loop++;
  if (rt->ready_head || rt->soon_pending) run_ready(rt);
  if (!skip_poll || !skip_poll(rt)) alive = uv_run(rt->loop, mode);
  rt->in_loop--;
  return alive || rt->ready_head != NULL;
}

static int main_woken(corio_runtime *rt) {
  return rt->main_task.state != CORIO_WAITING;
}

void corio__drive(lua_State *L, corio_task *t, const char *op) {
  corio_runtime *rt = corio__rt(L);
  while (t->state == CORIO_WAITING) {
    int alive = corio__turn(rt, UV_RUN_ONCE, main_woken);
    if (t->state != CORIO_WAITING) break;
    if (!alive) {
      const corio_wait *w = t->wait;
      if (w && w->cancel) w->cancel(L, t, t->wait_data);
      t->wait = NULL;
      t->state = CORIO_RUNNING;
      luaL_error(L, "%s: would wait forever: no task, timer or I/O is left that could finish it",
                 op);
    }
  }
  t->state = CORIO_RUNNING;
}

int corio__run_until_idle(corio_runtime *rt) {
  if (rt->in_loop) return -1;
  /* Draining at the edge of memory, every task would fail in turn at the cost of a full
   * collection (minutes for 200,000 tasks): the first memory error ends the drain instead. */
  rt->nomem = 0;
  while (!rt->nomem && corio__turn(rt, UV_RUN_ONCE, NULL)) {
  }
  return rt->nomem ? CORIO_ENOMEM : 0;
}

/* ---- errors ---------------------------------------------------------------------------- */

static int call_tostring(lua_State *L) {
  luaL_callmeta(L, 1, "__tostring");
  return 1;
}

/* Push a message for the error object at idx. Its __tostring is user code: it runs in
 * protected mode, since callers format errors where nothing else would catch a new one. */
int corio__push_errmsg(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: lua_pushvalue(L, idx); return 1;
    case LUA_TNUMBER: lua_pushstring(L, lua_tostring(L, idx)); return 1;
    default: break;
  }
  if (luaL_getmetafield(L, idx, "__tostring") == LUA_TNIL) {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
    return 1;
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, call_tostring);
  lua_pushvalue(L, idx);
  int st = lua_pcall(L, 1, 1, 0);
  if (st == LUA_OK && lua_type(L, -1) == LUA_TSTRING) return 1;
  const char *why = st != LUA_OK && lua_type(L, -1) == LUA_TSTRING
                        ? lua_tostring(L, -1) : "it did not return a string";
  lua_pushfstring(L, "(a %s error object whose __tostring failed: %s)", luaL_typename(L, idx),
                  why);
  lua_remove(L, -2);
  return 1;
}

int corio__fail(lua_State *L, const char *op, const char *target, int uverr) {
  lua_pushnil(L);
  if (target) lua_pushfstring(L, "%s %s: %s", op, target, uv_strerror(uverr));
  else lua_pushfstring(L, "%s: %s", op, uv_strerror(uverr));
  lua_pushstring(L, uv_err_name(uverr));
  return 3;
}

/* ---- state setup shared with embed.c --------------------------------------------------- */

void corio__anchors_init(lua_State *L) {
  anchor_set *a = lua_newuserdatauv(L, sizeof *a, 1);
  memset(a, 0, sizeof *a);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, anchors_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ANCHORS);
}

/* The runtime's own handles: the check that runs ready tasks, the idle that keeps poll from
 * blocking while tasks are ready, and the timer heap's timer. */
void corio__handles_init(corio_runtime *rt) {
  uv_check_init(rt->loop, &rt->check);
  rt->check.data = rt;
  uv_check_start(&rt->check, check_cb);
  uv_unref((uv_handle_t *)&rt->check);
  uv_idle_init(rt->loop, &rt->idle);
  rt->idle.data = rt;
  corio__own_handle(rt, (uv_handle_t *)&rt->check);
  corio__own_handle(rt, (uv_handle_t *)&rt->idle);
  corio__timers_init(rt);
}

void corio__own_handle(corio_runtime *rt, uv_handle_t *h) {
  if (rt->nown < (int)(sizeof rt->own / sizeof rt->own[0])) rt->own[rt->nown++] = h;
}

struct handle_count {
  corio_runtime *rt;
  int n;
};

/* A handle that holds an OS resource (a descriptor, a process) counts even while inactive: an
 * open TCP connection nobody reads from is still a leak. An inactive timer, idle, check or
 * async holds nothing and counts only while active. */
static int holds_resource(uv_handle_t *h) {
  switch (uv_handle_get_type(h)) {
    case UV_TCP: case UV_NAMED_PIPE: case UV_TTY: case UV_UDP: case UV_POLL: case UV_PROCESS:
    case UV_FS_EVENT: case UV_FS_POLL: case UV_SIGNAL: return 1;
    default: return 0;
  }
}

static void count_handle(uv_handle_t *h, void *arg) {
  struct handle_count *c = arg;
  if (uv_is_closing(h) || !(uv_is_active(h) || holds_resource(h))) return;
  for (int i = 0; i < c->rt->nown; i++)
    if (c->rt->own[i] == h) return;
  c->n++;
}

/* Every handle on the loop that is not the runtime's own and holds a resource or is active:
 * TCP connections, processes, polls, servers, signals, whatever a binding opened. */
int corio__count_user_handles(corio_runtime *rt) {
  struct handle_count c = {rt, 0};
  uv_walk(rt->loop, count_handle, &c);
  return c.n;
}
