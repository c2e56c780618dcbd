/* The public embedding API (corio.h): creating and closing a runtime, loading and running
 * code, driving the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "core.h"

static void default_error_handler(void *ud, const char *msg) {
  (void)ud;
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* ---- the public API -------------------------------------------------------------------- */

static int open_all(lua_State *L) {
  corio_runtime *rt = lua_touserdata(L, 1);
  *(corio_runtime **)lua_getextraspace(L) = rt;
  luaL_openlibs(L);
  corio__anchors_init(L);
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
  corio__handles_init(rt);
  rt->L = luaL_newstate();
  if (!rt->L) { corio_close(rt); return NULL; }
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
  free(rt->heap);
  free(rt);
  return status;
}
