/* The runtime: anchors, error messages, state setup, the registry of the runtime's own handles
 * and the counters the command reads (host.h). The scheduler is sched.c; the public corio_*
 * entry points are in embed.c. */

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

/* ---- what the command and the REPL read (host.h) ---------------------------------------- */

void corio__set_eager_report(corio_runtime *rt, int on) {
  rt->eager_report = on;
}

int corio__live_tasks(corio_runtime *rt) {
  return rt->live_tasks;
}

corio_error_handler corio__error_handler(corio_runtime *rt, void **ud) {
  *ud = rt->on_error_ud;
  return rt->on_error;
}
