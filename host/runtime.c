/* The runtime: one lua_State and the libuv handles that run ready tasks, anchors, the loop
 * drivers (run until idle, drive from top-level code) and the public corio_* entry points. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "core.h"

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
  }
  if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, idle_cb);
}

void corio__drive(lua_State *L, corio_task *t, const char *op) {
  corio_runtime *rt = corio__rt(L);
  while (t->state == CORIO_WAITING) {
    int alive;
    if (rt->ready_head) {
      rt->in_loop++;
      corio__run_ready(rt);
      rt->in_loop--;
      if (t->state != CORIO_WAITING) break;
    }
    rt->in_loop++;
    alive = uv_run(rt->loop, UV_RUN_ONCE);
    rt->in_loop--;
    if (t->state != CORIO_WAITING) break;
    if (!alive && !rt->ready_head) {
      const corio_wait *w = t->wait;
      if (w && w->cancel) w->cancel(L, t);
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
  for (;;) {
    rt->in_loop++;
    if (rt->ready_head) corio__run_ready(rt);
    int alive = uv_run(rt->loop, UV_RUN_ONCE);
    rt->in_loop--;
    if (!alive && !rt->ready_head) break;
  }
  return 0;
}

/* ---- errors ---------------------------------------------------------------------------- */

int corio__push_errmsg(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushvalue(L, idx);
  } else if (luaL_callmeta(L, idx, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
    /* the metamethod's result is on the stack */
  } else {
    if (lua_gettop(L) > idx && !lua_isstring(L, -1)) lua_pop(L, 1);
    if (lua_type(L, idx) == LUA_TNUMBER) lua_pushstring(L, lua_tostring(L, idx));
    else lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
  }
  return 1;
}

int corio__fail(lua_State *L, const char *op, const char *target, int uverr) {
  lua_pushnil(L);
  if (target) lua_pushfstring(L, "%s %s: %s", op, target, uv_strerror(uverr));
  else lua_pushfstring(L, "%s: %s", op, uv_strerror(uverr));
  lua_pushstring(L, uv_err_name(uverr));
  return 3;
}

static void default_error_handler(void *ud, const char *msg) {
  (void)ud;
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* ---- the public API -------------------------------------------------------------------- */

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg ? msg : "?");
  fflush(stderr);
  return 0;  /* then Lua aborts */
}

/* Lua's warning system as lauxlib sets it up: off until "@on", pieces joined by tocont. */
static void warnf(void *ud, const char *msg, int tocont) {
  corio_runtime *rt = ud;
  if (!rt->warn_cont && !tocont && *msg == '@') {
    if (strcmp(msg, "@off") == 0) rt->warn_on = 0;
    else if (strcmp(msg, "@on") == 0) rt->warn_on = 1;
    return;
  }
  if (rt->warn_on) {
    if (!rt->warn_cont) fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (!tocont) fputs("\n", stderr);
    fflush(stderr);
  }
  rt->warn_cont = tocont;
}

static int open_all(lua_State *L) {
  corio_runtime *rt = lua_touserdata(L, 1);
  *(corio_runtime **)lua_getextraspace(L) = rt;
  luaL_openlibs(L);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ANCHORS);
  corio__coroutine_patch(L);
  corio__preload_scripts(L);
  corio__register_bindings(L);
  corio__open_core(L);
  lua_pop(L, 1);
  return 0;
}

corio_runtime *corio_open(uv_loop_t *loop) {
  corio_runtime *rt = calloc(1, sizeof *rt);
  if (!rt) return NULL;
  if (loop) {
    rt->loop = loop;
  } else {
    if (uv_loop_init(&rt->own_loop) != 0) { free(rt); return NULL; }
    rt->loop = &rt->own_loop;
    rt->owns_loop = 1;
  }
  rt->on_error = default_error_handler;
  rt->main_task.flags = CORIO_F_MAIN;
  rt->main_task.state = CORIO_RUNNING;
  rt->main_task.anchor = LUA_NOREF;
  rt->main_task.timer.index = -1;
  rt->main_cancel_ref = LUA_NOREF;
  rt->current = &rt->main_task;
  uv_check_init(rt->loop, &rt->check);
  rt->check.data = rt;
  uv_check_start(&rt->check, check_cb);
  uv_unref((uv_handle_t *)&rt->check);
  uv_idle_init(rt->loop, &rt->idle);
  rt->idle.data = rt;
  corio__timer_init(rt);
  rt->pool = corio__pool_new();
  rt->L = lua_newstate(rt->pool ? corio__pool_alloc : corio__system_alloc, rt->pool);
  if (!rt->L) { corio_close(rt); return NULL; }
  lua_atpanic(rt->L, panic);
  lua_setwarnf(rt->L, warnf, rt);
  *(corio_runtime **)lua_getextraspace(rt->L) = rt;
  lua_pushcfunction(rt->L, open_all);
  lua_pushlightuserdata(rt->L, rt);
  if (lua_pcall(rt->L, 1, 0, 0) != LUA_OK) {
    lua_close(rt->L);
    rt->L = NULL;
    corio_close(rt);
    return NULL;
  }
  return rt;
}

lua_State *corio_lua(corio_runtime *rt) { return rt->L; }
uv_loop_t *corio_loop(corio_runtime *rt) { return rt->loop; }
const char *corio_errmsg(corio_runtime *rt) { return rt->errbuf; }
int corio_unretrieved_errors(corio_runtime *rt) { return rt->unretrieved; }

void corio_set_error_handler(corio_runtime *rt, corio_error_handler fn, void *ud) {
  rt->on_error = fn ? fn : default_error_handler;
  rt->on_error_ud = fn ? ud : NULL;
}

static void set_errmsg(corio_runtime *rt, lua_State *L) {
  corio__push_errmsg(L, -1);
  snprintf(rt->errbuf, sizeof rt->errbuf, "%s", lua_tostring(L, -1));
  lua_pop(L, 2);
}

int corio_run(corio_runtime *rt) {
  if (corio__run_until_idle(rt) != 0) {
    snprintf(rt->errbuf, sizeof rt->errbuf, "corio_run: the loop is already running");
    return -1;
  }
  return 0;
}

static int traceback(lua_State *L) {
  corio__push_errmsg(L, 1);
  luaL_traceback(L, L, lua_tostring(L, -1), 1);
  return 1;
}

static int docall(corio_runtime *rt, int loaded) {
  lua_State *L = rt->L;
  if (loaded != LUA_OK) { set_errmsg(rt, L); return -1; }
  lua_pushcfunction(L, traceback);
  lua_insert(L, -2);
  int st = lua_pcall(L, 0, 0, -2);
  if (st != LUA_OK) { set_errmsg(rt, L); lua_pop(L, 1); return -1; }
  lua_pop(L, 1);
  return 0;
}

int corio_dofile(corio_runtime *rt, const char *path) {
  return docall(rt, luaL_loadfile(rt->L, path));
}

int corio_dostring(corio_runtime *rt, const char *code, const char *chunkname) {
  return docall(rt, luaL_loadbuffer(rt->L, code, strlen(code), chunkname ? chunkname : code));
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int corio_close(corio_runtime *rt) {
  int status = 0;
  if (!rt) return 0;
  rt->closing = 1;
  if (rt->L) {
    /* Cancel what is still running and let its cleanup run, then close the state: the
     * finalizers close the handles owned by userdata and report unretrieved errors. */
    lua_State *L = rt->L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "corio.core");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
      lua_getfield(L, -1, "_cancel_all");
      if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    lua_pop(L, 1);
    corio__run_until_idle(rt);
    for (int i = rt->nclose_hooks - 1; i >= 0; i--) rt->close_hooks[i](rt);
    lua_close(L);
    rt->L = NULL;
  }
  corio__timer_close(rt);
  if (!uv_is_closing((uv_handle_t *)&rt->check)) uv_close((uv_handle_t *)&rt->check, NULL);
  if (!uv_is_closing((uv_handle_t *)&rt->idle)) uv_close((uv_handle_t *)&rt->idle, NULL);
  if (rt->owns_loop) {
    uv_run(rt->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(rt->loop) != 0) {
      uv_walk(rt->loop, close_walk, NULL);
      uv_run(rt->loop, UV_RUN_DEFAULT);
      status = uv_loop_close(rt->loop) == 0 ? 0 : -1;
    }
  } else {
    /* The host's loop: our handles are closing; its next uv_run() delivers the close
     * callbacks, which touch none of this memory (they are NULL). */
    uv_run(rt->loop, UV_RUN_NOWAIT);
  }
  corio__pool_free(rt->pool);
  free(rt->heap);
  free(rt);
  return status;
}
