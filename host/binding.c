/* The binding API's shared pieces (binding.h): accessors over the opaque runtime and task
 * records, waiter slots, handle boxes, classes and the out-of-memory helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* ---- accessors ----------------------------------------------------------------------------- */

uv_loop_t *corio__loop(corio_runtime *rt) {
  return rt->loop;
}

lua_State *corio__L(corio_runtime *rt) {
  return rt->L;
}

corio_task *corio__current(lua_State *L) {
  return corio__rt(L)->current;
}

int corio__is_main(const corio_task *t) {
  return (t->flags & CORIO_F_MAIN) != 0;
}

int corio__task_done(const corio_task *t) {
  return t->state == CORIO_DONE;
}

void corio__push_task(lua_State *L, corio_task *t) {
  corio__push_anchor(L, t->anchor);
}

void *corio__task_wait_data(const corio_task *t) {
  return t->wait_data;
}

corio_timer *corio__task_timer(corio_task *t) {
  return &t->timer;
}

corio_task *corio__timer_task(corio_timer *tm) {
  return container_of(tm, corio_task, timer);
}

/* ---- waiter slots -------------------------------------------------------------------------- */

static void waiter_cancel(lua_State *L, corio_task *t, void *data) {
  corio_waiter *w = data;
  (void)t;
  w->task = NULL;
  if (w->on_cancel) w->on_cancel(L, w);
}

/* corio.ps's reason: the slot's own words for op, or op alone */
static void waiter_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  corio_waiter *w = data;
  (void)co;
  if (w->describe && w->task == t)
    w->describe(L, w, t->wait_name);
  else
    lua_pushstring(L, t->wait_name);
}

int corio__waiter_await(lua_State *L, corio_waiter *w, const char *op, lua_KFunction k,
                        lua_KContext ctx) {
  corio_runtime *rt = corio__rt(L);
  if (w->task) return luaL_error(L, "%s: another task is already waiting", op);
  /* The name shown by all_tasks() is the operation's: the wait record is per call site. */
  static const corio_wait WAITER = {"wait", waiter_cancel, waiter_describe};
  w->task = rt->current;
  w->status = 0;
  return corio__await_named(L, &WAITER, op, w, k, ctx);
}

int corio__waiter_wake(corio_runtime *rt, corio_waiter *w, int status) {
  w->status = status;
  corio_task *t = w->task;
  if (!t) return 0;
  w->task = NULL;
  corio__wake(rt, t);
  return 1;
}

int corio__waiter_busy(const corio_waiter *w) {
  return w->task != NULL;
}

/* ---- handle boxes -------------------------------------------------------------------------- */

corio_box *corio__box_new(lua_State *L, const char *cls) {
  corio_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->h = NULL;
  luaL_setmetatable(L, cls);
  return b;
}

void corio__box_attach(corio_box *b, corio_handle *h, uv_handle_t *uv,
                       void (*on_closed)(corio_handle *h)) {
  h->uv = uv;
  h->box = b;
  h->on_closed = on_closed;
  h->closing = 0;
  h->keep = 0;
  uv->data = h;
  if (b) b->h = h;
}

corio_handle *corio__box_check(lua_State *L, int idx, const char *cls, const char *op) {
  corio_box *b = luaL_checkudata(L, idx, cls);
  if (!b->h || b->h->closing) luaL_error(L, "%s: the %s is closed", op, cls);
  return b->h;
}

static void box_closed(uv_handle_t *uv) {
  corio_handle *h = uv->data;
  int keep = h->keep; /* read first: on_closed may release a kept record */
  if (h->box && !keep) h->box->h = NULL;
  if (h->on_closed) h->on_closed(h);
  if (!keep) free(h);
}

void corio__box_release(corio_handle *h) {
  if (h->box) h->box->h = NULL;
  free(h);
}

void corio__box_close(corio_handle *h) {
  if (!h || h->closing) return;
  h->closing = 1;
  uv_close(h->uv, box_closed);
}

int corio__box_gc(lua_State *L) {
  corio_box *b = lua_touserdata(L, 1);
  if (b && b->h) {
    corio_handle *h = b->h;
    h->box = NULL; /* the userdata is going: the record must not point back at it */
    b->h = NULL;
    corio__box_close(h);
  }
  return 0;
}

/* ---- classes ------------------------------------------------------------------------------- */

void corio__class(lua_State *L, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *metamethods) {
  if (!luaL_newmetatable(L, name)) return; /* made already: luaL_newmetatable set __name */
  if (methods) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  if (metamethods) luaL_setfuncs(L, metamethods, 0);
}

/* ---- out of memory ------------------------------------------------------------------------- */

void corio__host_port(char *buf, size_t size, const char *host, int port) {
  snprintf(buf, size, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

int corio__nomem(lua_State *L) {
  lua_pushliteral(L, "not enough memory");
  return lua_error(L); /* LUA_ERRRUN with Lua's own message: pcall sees what Lua's would */
}

void *corio__xmalloc(lua_State *L, size_t n) {
  void *p = malloc(n);
  if (!p && n) corio__nomem(L);
  return p;
}

/* ---- embedded scripts ---------------------------------------------------------------------- */

/* The table generated from scripts/ (cmake/embed.cmake); preload.c registers the same. */
struct corio_script {
  const char *name, *path;
  const unsigned char *code;
  size_t len;
};
extern const struct corio_script corio__scripts[];

int corio__load_script(lua_State *L, const char *name) {
  for (const struct corio_script *s = corio__scripts; s->name; s++) {
    if (strcmp(s->name, name) != 0) continue;
    const char *dir = getenv("CORIO_SCRIPTS");
    if (dir && *dir) {
      const char *file = lua_pushfstring(L, "%s/%s", dir, s->path + sizeof "scripts/" - 1);
      int status = luaL_loadfile(L, file);
      lua_remove(L, -2);
      return status;
    }
    lua_pushfstring(L, "@%s", s->path);
    int status = luaL_loadbuffer(L, (const char *)s->code, s->len, lua_tostring(L, -1));
    lua_remove(L, -2);
    return status;
  }
  lua_pushfstring(L, "no embedded script '%s'", name);
  return LUA_ERRFILE;
}
