/* The runtime: one lua_State and the libuv handles that run ready tasks, anchors, the loop
 * drivers (run until idle, drive from top-level code). The public corio_* entry points are
 * in embed.c. */

#include "runtime.h"

static char ANCHORS;  /* registry key: the table of anchored values */

/* ---- anchors ----------------------------------------------------------------------------- */

int corio__anchor(lua_State *L, int idx) {
  corio_runtime *rt = corio__rt(L);
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ANCHORS);
  lua_pushvalue(L, idx);
  int ref = luaL_ref(L, -2);
  lua_pop(L, 1);
  rt->anchors++;
  return ref;
}

void corio__unanchor(lua_State *L, int ref) {
  if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
  corio_runtime *rt = corio__rt(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ANCHORS);
  luaL_unref(L, -1, ref);
  lua_pop(L, 1);
  rt->anchors--;
}

void corio__push_anchor(lua_State *L, int ref) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ANCHORS);
  lua_rawgeti(L, -1, ref);
  lua_remove(L, -2);
}

void corio__push_anchors(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ANCHORS);
}

/* ---- running ready tasks --------------------------------------------------------------- */

static void check_cb(uv_check_t *h) {
  corio_runtime *rt = h->data;
  rt->in_loop++;
  corio__run_ready(rt);
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
  if (rt->ready_head || rt->soon_pending) corio__run_ready(rt);
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
  while (corio__turn(rt, UV_RUN_ONCE, NULL)) {
  }
  return 0;
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
  lua_newtable(L);
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
