/* The public embedding API (corio.h): creating and closing a runtime, loading and running
 * code, tasks started from C, registered C functions, driving the loop, the output hook.
 * Completion tokens (async C functions) are in token.c, corio.so's luaopen_corio in module.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "embed.h"

/* ---- errors ------------------------------------------------------------------------------- */

void corio__set_error(corio_runtime *rt, const char *msg) {
  size_t len = strlen(msg);
  free(rt->embed->err);
  rt->embed->err = NULL;
  if (len < sizeof rt->errbuf) {
    memcpy(rt->errbuf, msg, len + 1);
  } else if ((rt->embed->err = malloc(len + 1)) != NULL) {
    memcpy(rt->embed->err, msg, len + 1);
  } else {
    snprintf(rt->errbuf, sizeof rt->errbuf, "%s", msg);
  }
}

/* The error object on top of L becomes the error message; it is popped. */
static void set_error_from(corio_runtime *rt, lua_State *L) {
  corio__push_errmsg(L, -1);
  corio__set_error(rt, lua_tostring(L, -1));
  lua_pop(L, 2);
}

const char *corio_errmsg(corio_runtime *rt) {
  return rt->embed->err ? rt->embed->err : rt->errbuf;
}

static void default_error_handler(void *ud, const char *msg) {
  (void)ud;
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

void corio_set_error_handler(corio_runtime *rt, corio_error_handler fn, void *ud) {
  rt->on_error = fn ? fn : default_error_handler;
  rt->on_error_ud = fn ? ud : NULL;
}

int corio_unretrieved_errors(corio_runtime *rt) { return rt->unretrieved; }
lua_State *corio_lua(corio_runtime *rt) { return rt->L; }
uv_loop_t *corio_loop(corio_runtime *rt) { return rt->loop; }
corio_runtime *corio_from_lua(lua_State *L) { return corio__rt(L); }

/* ---- tasks started from C ---------------------------------------------------------------- */

/* A done callback: a listener on the task, in a userdata anchored until it fires (its user
 * value keeps the task). */
typedef struct ccall {
  corio_listener l;
  corio_done_fn done;
  void *ud;
  int ref;
} ccall;

/* (lightuserdata ccall) -> nothing: push the task's outcome and call the host (protected) */
static int ccall_deliver(lua_State *L) {
  ccall *c = lua_touserdata(L, 1);
  corio_runtime *rt = corio__rt(L);
  int status = 0, n;
  corio__push_anchor(L, c->ref);
  lua_getiuservalue(L, -1, 1);
  int tidx = lua_gettop(L);
  corio_task *t = lua_touserdata(L, tidx);
  lua_getiuservalue(L, tidx, 1);  /* nothing (nil), one value, or a table of them */
  n = t->outcome == CORIO_OK ? t->nresults : 1;
  if (t->outcome == CORIO_OK && n == 0) {
    lua_pop(L, 1);
  } else if (t->outcome == CORIO_OK && n > 1) {
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, tidx + 1, i);
    lua_remove(L, tidx + 1);
  } else if (t->outcome != CORIO_OK) {
    int eidx = lua_gettop(L);  /* the error object */
    t->flags |= CORIO_F_RETRIEVED;
    status = t->outcome == CORIO_ERROR ? CORIO_ERUN : CORIO_ECANCELLED;
    corio__push_errmsg(L, eidx);
    if (lua_getiuservalue(L, tidx, 3) == LUA_TTABLE &&
        lua_getfield(L, -1, "traceback") == LUA_TSTRING)
      lua_pushfstring(L, "%s\n%s", lua_tostring(L, eidx + 1), lua_tostring(L, -1));
    else
      lua_pushvalue(L, eidx + 1);
    corio__set_error(rt, lua_tostring(L, -1));
    lua_settop(L, eidx);
  }
  c->done(rt, c->ud, status, L, n);
  return 0;
}

static void ccall_fire(corio_runtime *rt, corio_listener *l, corio_task *done) {
  ccall *c = container_of(l, ccall, l);
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  (void)done;
  lua_checkstack(L, 4);
  lua_pushcfunction(L, ccall_deliver);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    corio__push_errmsg(L, -1);
    lua_pushfstring(L, "corio: error in a done callback: %s", lua_tostring(L, -1));
    rt->on_error(rt->on_error_ud, lua_tostring(L, -1));
  }
  corio__unanchor(L, c->ref);
  lua_settop(L, top);
}

struct spawn_args {
  int nargs;
  corio_done_fn done;
  void *ud;
  int *task_ref;
};

/* [f args... spawn_args] -> nothing; the task is spawned */
static int spawn_p(lua_State *L) {
  struct spawn_args *a = lua_touserdata(L, -1);
  lua_pop(L, 1);
  corio_task *t = corio__spawn(L, lua_gettop(L) - a->nargs, a->nargs);
  if (a->done) {
    ccall *c = lua_newuserdatauv(L, sizeof *c, 1);
    memset(c, 0, sizeof *c);
    c->ref = LUA_NOREF;
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, 1);
    c->done = a->done;
    c->ud = a->ud;
    c->ref = corio__anchor(L, -1);
    corio__listen(t, &c->l, ccall_fire);
    lua_pop(L, 1);
  }
  if (a->task_ref) *a->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int corio_spawn(corio_runtime *rt, int nargs, corio_done_fn done, void *ud, int *task_ref) {
  lua_State *L = rt->L;
  struct spawn_args a = {nargs, done, ud, task_ref};
  if (task_ref) *task_ref = LUA_NOREF;
  if (nargs < 0 || lua_gettop(L) < nargs + 1) {
    corio__set_error(rt, "corio_spawn: fewer values on the stack than a function and its "
                         "arguments");
    return CORIO_EINVAL;
  }
  int fidx = lua_gettop(L) - nargs;
  if (lua_type(L, fidx) != LUA_TFUNCTION) {
    int callable = luaL_getmetafield(L, fidx, "__call") != LUA_TNIL;
    if (callable) lua_pop(L, 1);
    else {
      corio__set_error(rt, "corio_spawn: the value to run is not a function");
      lua_pop(L, nargs + 1);
      return CORIO_EINVAL;
    }
  }
  if (!lua_checkstack(L, 3)) {
    lua_pop(L, nargs + 1);
    corio__set_error(rt, "corio_spawn: not enough memory");
    return CORIO_ENOMEM;
  }
  lua_pushcfunction(L, spawn_p);
  lua_insert(L, fidx);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, nargs + 2, 0, 0) != LUA_OK) {
    set_error_from(rt, L);
    return CORIO_ENOMEM;  /* the only way corio__spawn fails */
  }
  return 0;
}

/* ---- registering C functions --------------------------------------------------------------- */

struct reg_args {
  const char *name;
  lua_CFunction fn;
  void *ud;
};

/* (lightuserdata reg_args) -> nothing: corio[name] = closure(fn, ud) (protected) */
static int register_p(lua_State *L) {
  struct reg_args *a = lua_touserdata(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio");
  lua_call(L, 1, 1);
  if (!lua_istable(L, -1)) return luaL_error(L, "corio_register: require \"corio\" gave no table");
  lua_pushlightuserdata(L, a->ud);
  lua_pushcclosure(L, a->fn, 1);
  lua_setfield(L, -2, a->name);
  return 0;
}

/* (lightuserdata reg_args) -> nothing: package.preload[name] = fn (protected) */
static int preload_p(lua_State *L) {
  struct reg_args *a = lua_touserdata(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, a->fn);
  lua_setfield(L, -2, a->name);
  return 0;
}

static int protect(corio_runtime *rt, lua_CFunction f, void *arg) {
  lua_State *L = rt->L;
  if (!lua_checkstack(L, 2)) {
    corio__set_error(rt, "not enough memory");
    return CORIO_ENOMEM;
  }
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, arg);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    set_error_from(rt, L);
    return CORIO_ERUN;
  }
  return 0;
}

int corio_register(corio_runtime *rt, const char *name, lua_CFunction fn, void *ud) {
  struct reg_args a = {name, fn, ud};
  if (!name || !fn) {
    corio__set_error(rt, "corio_register: a name and a function are needed");
    return CORIO_EINVAL;
  }
  return protect(rt, register_p, &a);
}

int corio_register_module(corio_runtime *rt, const char *name, lua_CFunction open) {
  struct reg_args a = {name, open, NULL};
  if (!name || !open) {
    corio__set_error(rt, "corio_register_module: a name and a function are needed");
    return CORIO_EINVAL;
  }
  return protect(rt, preload_p, &a);
}

/* ---- output hook: print and io.write ------------------------------------------------------ */

static void emit(corio_runtime *rt, const char *s, size_t len) {
  struct corio_embed *e = rt->embed;
  if (e->output) {
    e->output(e->output_ud, s, len);
  } else {
    fwrite(s, 1, len, stdout);
    fflush(stdout);
  }
}

/* print(...): as the standard print, written through the output hook */
static int out_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  emit(corio__rt(L), s, len);
  return 0;
}

/* io.write(...) -> file: through the output hook while the default output is io.stdout
 * (upvalues: the standard io.write, io.stdout) */
static int out_write(lua_State *L) {
  int n = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_IO_output");  /* liolib's default output */
  int to_stdout = lua_rawequal(L, -1, lua_upvalueindex(2));
  lua_pop(L, 1);
  if (!to_stdout) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      char num[64];
      if (lua_isinteger(L, i)) snprintf(num, sizeof num, LUA_INTEGER_FMT, lua_tointeger(L, i));
      else snprintf(num, sizeof num, LUA_NUMBER_FMT, lua_tonumber(L, i));
      luaL_addstring(&b, num);
    } else {
      size_t len;
      const char *s = luaL_checklstring(L, i, &len);
      luaL_addlstring(&b, s, len);
    }
  }
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  emit(corio__rt(L), s, len);
  lua_pushvalue(L, lua_upvalueindex(2));
  return 1;
}

/* () -> nothing: replace print and io.write by the hooked ones (protected) */
static int install_output_p(lua_State *L) {
  lua_pushcfunction(L, out_print);
  lua_setglobal(L, "print");
  if (lua_getglobal(L, "io") == LUA_TTABLE) {
    lua_getfield(L, -1, "write");
    lua_getfield(L, -2, "stdout");
    lua_pushcclosure(L, out_write, 2);
    lua_setfield(L, -2, "write");
  }
  return 0;
}

int corio_set_output(corio_runtime *rt, corio_output_fn fn, void *ud) {
  struct corio_embed *e = rt->embed;
  e->output = fn;
  e->output_ud = fn ? ud : NULL;
  if (fn && !e->output_installed) {
    int st = protect(rt, install_output_p, NULL);
    if (st != 0) return CORIO_ENOMEM;
    e->output_installed = 1;
  }
  return 0;
}

/* ---- creating a runtime ------------------------------------------------------------------ */

static void on_closed(uv_handle_t *h) {
  corio_runtime *rt = h->data;
  struct corio_embed *e = rt->embed;
  if (--e->closes == 0 && e->free_on_close) free(container_of(rt, corio__block, rt));
}

static void close_handle(corio_runtime *rt, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  rt->embed->closes++;
  uv_close(h, on_closed);
}

/* The loop, the hub and the runtime's handles. Nothing to undo on failure but the block. */
int corio__embed_init(corio__block *b, uv_loop_t *loop) {
  corio_runtime *rt = &b->rt;
  rt->embed = &b->e;
  if (loop) {
    rt->loop = loop;
  } else {
    if (uv_loop_init(&rt->own_loop) != 0) return CORIO_ELOOP;
    rt->loop = &rt->own_loop;
    rt->owns_loop = 1;
  }
  if (corio__hub_open(rt) != 0) {
    if (rt->owns_loop) uv_loop_close(&rt->own_loop);
    return CORIO_ENOMEM;
  }
  rt->on_error = default_error_handler;
  rt->main_task.flags = CORIO_F_MAIN;
  rt->main_task.state = CORIO_RUNNING;
  rt->main_task.anchor = LUA_NOREF;
  rt->main_task.timer.index = -1;
  rt->current = &rt->main_task;
  corio__handles_init(rt);
  return 0;
}

/* Close every handle of the runtime and cut the hub loose from it (loop thread). Tokens
 * completed from other threads after this are dropped. */
void corio__embed_shutdown(corio_runtime *rt) {
  struct corio_embed *e = rt->embed;
  corio__hub_close(rt);
  close_handle(rt, (uv_handle_t *)&rt->check);
  close_handle(rt, (uv_handle_t *)&rt->idle);
  close_handle(rt, (uv_handle_t *)&e->async);
  rt->embed->closes += corio__timers_close(rt, on_closed);
}

/* Lua warnings as lua.c prints them. "@on" / "@off" switch them (off at first), but only a
 * message in a single piece can be such a control message: the pieces of a message sent in
 * several parts are text, whatever they start with. While off, every piece is still looked at,
 * so a single-piece "@on" turns them back on. */
static void warn_cb(void *ud, const char *msg, int tocont) {
  struct corio_embed *e = ud;
  if (e->warn_cont) { /* the rest of a message already started: plain text */
    fputs(msg, stderr);
    if (!tocont) fputs("\n", stderr), fflush(stderr), e->warn_cont = 0;
    return;
  }
  if (!tocont && *msg == '@') {
    if (strcmp(msg, "@off") == 0) e->warn_on = 0;
    else if (strcmp(msg, "@on") == 0) e->warn_on = 1;
    return;
  }
  if (!e->warn_on) return;
  fputs("Lua warning: ", stderr);
  fputs(msg, stderr);
  if (tocont) e->warn_cont = 1;
  else fputs("\n", stderr), fflush(stderr);
}

static int panic_cb(lua_State *L) {
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
  fprintf(stderr, "corio: PANIC: unprotected error in call to Lua API (%s)\n", msg);
  fflush(stderr);
  return 0;  /* Lua aborts */
}

static void prepend_path(lua_State *L, const char *field, const char *dirs) {
  if (!dirs || !*dirs) return;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  lua_pushfstring(L, "%s;%s", dirs, lua_tostring(L, -1));
  lua_setfield(L, -3, field);
  lua_pop(L, 2);
}

/* The corio world in a state: anchors, coroutine patch, scripts and bindings, corio.core. */
void corio__open_world(lua_State *L) {
  corio__anchors_init(L);
  corio__coroutine_patch(L);
  corio__preload_scripts(L);
  corio__register_bindings(L);
  corio__open_core(L);
  lua_pop(L, 1);
}

/* (lightuserdata corio_options) -> nothing: the libraries and the corio world (protected) */
static int open_all(lua_State *L) {
  const corio_options *o = lua_touserdata(L, 1);
  luaL_openlibs(L);
  corio__open_world(L);
  prepend_path(L, "path", o->path);
  prepend_path(L, "cpath", o->cpath);
  return 0;
}

corio_runtime *corio_open(uv_loop_t *loop) {
  corio_options o;
  memset(&o, 0, sizeof o);
  o.loop = loop;
  return corio_open_ex(&o);
}

corio_runtime *corio_open_ex(const corio_options *opts) {
  corio_options o;
  if (opts) o = *opts;
  else memset(&o, 0, sizeof o);
  corio__block *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  if (corio__embed_init(b, o.loop) != 0) {
    free(b);
    return NULL;
  }
  corio_runtime *rt = &b->rt;
  if (o.alloc) {
    rt->L = lua_newstate(o.alloc, o.alloc_ud);
  } else {
    /* the default: malloc that gives memory back after a burst (host/alloc.c) */
    rt->pool = corio__pool_new();
    rt->L = lua_newstate(rt->pool ? corio__pool_alloc : corio__system_alloc, rt->pool);
  }
  if (rt->L) {
    lua_atpanic(rt->L, panic_cb);
    lua_setwarnf(rt->L, warn_cb, rt->embed);
  }
  if (!rt->L) {
    corio_close(rt);
    return NULL;
  }
  *(corio_runtime **)lua_getextraspace(rt->L) = rt;
  corio_set_error_handler(rt, o.on_error, o.on_error_ud);
  lua_pushcfunction(rt->L, open_all);
  lua_pushlightuserdata(rt->L, &o);
  if (lua_pcall(rt->L, 1, 0, 0) != LUA_OK ||
      (o.output && corio_set_output(rt, o.output, o.output_ud) != 0)) {
    corio_close(rt);
    return NULL;
  }
  return rt;
}

/* ---- running code ------------------------------------------------------------------------- */

/* message handler: (err) -> err's message with a traceback */
static int traceback(lua_State *L) {
  corio__push_errmsg(L, 1);
  luaL_traceback(L, L, lua_tostring(L, -1), 1);
  return 1;
}

static int docall(corio_runtime *rt, int loaded) {
  lua_State *L = rt->L;
  if (loaded != LUA_OK) {
    set_error_from(rt, L);
    return loaded == LUA_ERRMEM ? CORIO_ENOMEM : CORIO_ERUN;
  }
  if (rt->in_loop) {
    lua_pop(L, 1);
    corio__set_error(rt, "corio: cannot run top-level code from inside the loop (spawn a task)");
    return CORIO_EBUSY;
  }
  lua_pushcfunction(L, traceback);
  lua_insert(L, -2);
  int st = lua_pcall(L, 0, 0, -2);
  if (st != LUA_OK) {
    set_error_from(rt, L);
    lua_pop(L, 1);
    return st == LUA_ERRMEM ? CORIO_ENOMEM : CORIO_ERUN;
  }
  lua_pop(L, 1);
  return 0;
}

int corio_dofile(corio_runtime *rt, const char *path) {
  return docall(rt, luaL_loadfile(rt->L, path));
}

int corio_dostring(corio_runtime *rt, const char *code, const char *chunkname) {
  if (!code) {
    corio__set_error(rt, "corio_dostring: no code");
    return CORIO_EINVAL;
  }
  return docall(rt, luaL_loadbuffer(rt->L, code, strlen(code), chunkname ? chunkname : code));
}

int corio_load(corio_runtime *rt, const char *buf, size_t len, const char *chunkname,
               const char *mode) {
  if (!buf) {
    corio__set_error(rt, "corio_load: no buffer");
    return CORIO_EINVAL;
  }
  int st = luaL_loadbufferx(rt->L, buf, len, chunkname ? chunkname : "=?", mode ? mode : "bt");
  if (st != LUA_OK) {
    set_error_from(rt, rt->L);
    return st == LUA_ERRMEM ? CORIO_ENOMEM : CORIO_ERUN;
  }
  return 0;
}

int corio_dobuffer(corio_runtime *rt, const char *buf, size_t len, const char *chunkname,
                   const char *mode) {
  int st = corio_load(rt, buf, len, chunkname, mode);
  if (st != 0) return st;
  return docall(rt, LUA_OK);
}

/* ---- driving the loop ------------------------------------------------------------------- */

/* The loop went idle: a failed task nobody holds any more is collected now, so its error is
 * reported to the handler while the host still listens (not only at corio_close). A task
 * still referenced may yet be awaited: it is reported when it is collected. */
static void report_lost_errors(corio_runtime *rt) {
  lua_gc(rt->L, LUA_GCCOLLECT);
}

int corio_run(corio_runtime *rt) {
  struct corio_embed *e = rt->embed;
  if (rt->in_loop) {
    corio__set_error(rt, "corio_run: the loop is already running");
    return CORIO_EBUSY;
  }
  e->stop = 0;
  while (!e->stop && corio__turn(rt, UV_RUN_ONCE, NULL)) {
  }
  int stopped = e->stop;
  e->stop = 0;
  if (rt->oom) {
    corio__set_error(rt, "corio_run: not enough memory");
    return CORIO_ENOMEM;
  }
  if (!stopped) report_lost_errors(rt);
  return 0;
}

int corio_step(corio_runtime *rt) {
  if (rt->in_loop) {
    corio__set_error(rt, "corio_step: the loop is already running");
    return CORIO_EBUSY;
  }
  int more = corio__turn(rt, UV_RUN_NOWAIT, NULL);
  if (rt->oom) {
    corio__set_error(rt, "corio_step: not enough memory");
    return CORIO_ENOMEM;
  }
  if (!more) report_lost_errors(rt);
  return more ? 1 : 0;
}

void corio_stop(corio_runtime *rt) {
  rt->embed->stop = 1;
  uv_stop(rt->loop);
}

/* ---- closing ------------------------------------------------------------------------------- */

/* () -> nothing: corio.core._cancel_all() (protected) */
static int cancel_all_p(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio.core");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "_cancel_all");
  lua_call(L, 0, 0);
  return 0;
}

/* Cancel every task and run the loop while they unwind. A task whose cleanup waits forever
 * on something the loop could still deliver keeps this waiting, as asyncio.run would; tasks
 * that nothing could ever wake are cancelled again, a few times, and then dropped. */
static int no_live_tasks(corio_runtime *rt) {
  return rt->live_tasks == 0;
}

static void cancel_tasks(corio_runtime *rt) {
  lua_State *L = rt->L;
  int rounds = 0;
  /* After a task or the scheduler ran out of memory, unwinding the others would run at the
   * edge of memory, each allocation costing a full collection (or failing): they are dropped
   * instead, their cleanup unrun (lua_close still collects them). */
  while (rt->live_tasks > 0 && !rt->oom && !rt->nomem && rounds++ < 4) {
    lua_pushcfunction(L, cancel_all_p);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
    while (rt->live_tasks > 0 && !rt->oom && !rt->nomem && corio__turn(rt, UV_RUN_ONCE, no_live_tasks)) {
    }
  }
  if (rt->oom || rt->nomem) corio__drop_ready(rt);
  /* Handles the cleanup closed get their close callbacks now, while the state they may
   * unanchor from is still open (one iteration delivers every pending close). */
  corio__turn(rt, UV_RUN_NOWAIT, NULL);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Close a loop corio owns, without blocking: corio's handles are closing. Handles the host
 * left on it are closed too (CORIO_ELOOP); CORIO_EBUSY when it still cannot be closed. */
int corio__close_own_loop(uv_loop_t *loop) {
  uv_run(loop, UV_RUN_NOWAIT);  /* delivers the close callbacks */
  if (uv_loop_close(loop) == 0) return 0;
  uv_walk(loop, close_walk, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return uv_loop_close(loop) == 0 ? CORIO_ELOOP : CORIO_EBUSY;
}

int corio_close(corio_runtime *rt) {
  int status = 0;
  if (!rt) return 0;
  if (rt->in_loop) {
    corio__set_error(rt, "corio_close: called from inside the loop");
    return CORIO_EBUSY;
  }
  struct corio_embed *e = rt->embed;
  corio__watchdog_stop(rt);
  if (rt->L) {
    cancel_tasks(rt);
    lua_close(rt->L);  /* finalizers close handles owned by userdata, report lost errors */
    rt->L = NULL;
  }
  corio__pool_free(rt->pool);
  rt->pool = NULL;
  corio__embed_shutdown(rt);
  free(e->err);
  e->err = NULL;
  if (rt->owns_loop) {
    status = corio__close_own_loop(rt->loop);
    /* A request still in flight (thread-pool work the host queued on corio's loop) would
     * touch the loop later: then the block is deliberately leaked rather than freed. */
    if (status != CORIO_EBUSY) free(container_of(rt, corio__block, rt));
    else status = CORIO_ELOOP;
  } else {
    /* The host's loop: the last close callback frees the block, in this uv_run or (when
     * this is the host's callback after all) in the host's next iteration. */
    uv_loop_t *loop = rt->loop;
    e->free_on_close = 1;
    uv_run(loop, UV_RUN_NOWAIT);
  }
  return status;
}
