/* The embedding API without async C functions: own and borrowed loops, loading (source,
 * precompiled, files), tasks with C done callbacks, errors to the host's handler, hooks
 * (output, allocator, search path), registered functions, stepping and stopping the loop. */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <lauxlib.h>

#include "check.h"
#include "corio.h"

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct outcome {
  int calls, status, n;
  char first[256];   /* tostring of the first value */
  char errmsg[1024];
  lua_Integer sum;   /* sum of the integer results */
} outcome;

static void on_done(corio_runtime *rt, void *ud, int status, lua_State *L, int n) {
  outcome *o = ud;
  o->calls++;
  o->status = status;
  o->n = n;
  o->sum = 0;
  for (int i = n; i >= 1; i--)
    if (lua_isinteger(L, -i)) o->sum += lua_tointeger(L, -i);
  if (n > 0) snprintf(o->first, sizeof o->first, "%s", luaL_tolstring(L, -n, NULL)), lua_pop(L, 1);
  if (status != 0) snprintf(o->errmsg, sizeof o->errmsg, "%s", corio_errmsg(rt));
}

typedef struct errors {
  int count;
  char last[2048];
} errors;

static void on_error(void *ud, const char *msg) {
  errors *e = ud;
  e->count++;
  snprintf(e->last, sizeof e->last, "%s", msg);
}

/* Push the global function `name` and spawn it with integer arguments. */
static void spawn_global(corio_runtime *rt, const char *name, int nargs, const lua_Integer *args,
                         outcome *o) {
  lua_State *L = corio_lua(rt);
  int top = lua_gettop(L);
  lua_getglobal(L, name);
  for (int i = 0; i < nargs; i++) lua_pushinteger(L, args[i]);
  CHECK_OK(rt, corio_spawn(rt, nargs, on_done, o, NULL));
  CHECK(lua_gettop(L) == top);
}

/* ---- own loop: running code and tasks ------------------------------------------------- */

static void test_own_loop(void) {
  corio_runtime *rt = corio_open(NULL);
  CHECK(rt != NULL);
  lua_State *L = corio_lua(rt);
  CHECK(corio_from_lua(L) == rt);
  CHECK(corio_loop(rt) != NULL);

  /* top-level code: async calls drive the loop */
  CHECK_OK(rt, corio_dostring(rt,
                              "corio = require 'corio'\n"
                              "local t0 = corio.now(); corio.sleep(0.02)\n"
                              "slept = corio.now() - t0", "=setup"));
  lua_getglobal(L, "slept");
  CHECK(lua_tonumber(L, -1) >= 0.02);
  lua_pop(L, 1);

  /* errors come back as statuses with a message (and a traceback for runtime errors) */
  CHECK(corio_dostring(rt, "this is not lua", "=bad") == CORIO_ERUN);
  CHECK_CONTAINS(corio_errmsg(rt), "bad:1:");
  CHECK(corio_dostring(rt, "local function f() error('deep') end f()", "=boom") == CORIO_ERUN);
  CHECK_CONTAINS(corio_errmsg(rt), "boom:1: deep");
  CHECK_CONTAINS(corio_errmsg(rt), "stack traceback");
  CHECK(corio_dostring(rt, "error(setmetatable({}, {__tostring = function() return 'tbl' end}))",
                       "=tbl") == CORIO_ERUN);
  CHECK_CONTAINS(corio_errmsg(rt), "tbl");
  CHECK(corio_dostring(rt, "error()", "=nil") == CORIO_ERUN);
  CHECK_CONTAINS(corio_errmsg(rt), "nil");
  CHECK(corio_dofile(rt, "/nonexistent/x.lua") == CORIO_ERUN);
  CHECK_CONTAINS(corio_errmsg(rt), "/nonexistent/x.lua");
  CHECK(corio_dostring(rt, NULL, NULL) == CORIO_EINVAL);
  CHECK(lua_gettop(L) == 0);

  /* tasks started from C, results delivered to C */
  CHECK_OK(rt, corio_dostring(rt,
                              "function add(a, b) corio.sleep(0.01) return a + b, a * b end\n"
                              "function fail(msg) corio.sleep(0.01) error(msg .. '!', 0) end\n"
                              "function slow() corio.sleep(10) end\n"
                              "function none() end", "=defs"));
  outcome add = {0}, none = {0}, failed = {0};
  lua_Integer ab[2] = {20, 22};
  spawn_global(rt, "add", 2, ab, &add);
  spawn_global(rt, "none", 0, NULL, &none);
  lua_getglobal(L, "fail");
  lua_pushliteral(L, "broken");
  CHECK_OK(rt, corio_spawn(rt, 1, on_done, &failed, NULL));
  CHECK(add.calls == 0);  /* tasks run when the loop runs */
  CHECK_OK(rt, corio_run(rt));
  CHECK(add.calls == 1 && add.status == 0 && add.n == 2 && add.sum == 42 + 440);
  CHECK(strcmp(add.first, "42") == 0);
  CHECK(none.calls == 1 && none.status == 0 && none.n == 0);
  CHECK(failed.calls == 1 && failed.status == CORIO_ERUN && failed.n == 1);
  CHECK(strcmp(failed.first, "broken!") == 0);
  CHECK_CONTAINS(failed.errmsg, "broken!");
  CHECK_CONTAINS(failed.errmsg, "stack traceback");
  CHECK(corio_unretrieved_errors(rt) == 0);  /* delivered to C: retrieved */

  /* cancelling a task started from C, through its reference */
  outcome slow = {0};
  int ref;
  lua_getglobal(L, "slow");
  CHECK_OK(rt, corio_spawn(rt, 0, on_done, &slow, &ref));
  CHECK(ref != LUA_NOREF);
  CHECK(corio_step(rt) == 1);  /* it starts and sleeps */
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getfield(L, -1, "cancel");
  lua_insert(L, -2);
  lua_pushliteral(L, "enough");
  lua_call(L, 2, 0);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  CHECK_OK(rt, corio_run(rt));
  CHECK(slow.calls == 1 && slow.status == CORIO_ECANCELLED && slow.n == 1);
  CHECK_CONTAINS(slow.errmsg, "enough");

  /* bad spawns pop what they were given */
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 2);
  CHECK(corio_spawn(rt, 1, NULL, NULL, NULL) == CORIO_EINVAL);
  CHECK(lua_gettop(L) == 0);
  CHECK(corio_spawn(rt, 3, NULL, NULL, NULL) == CORIO_EINVAL);
  CHECK(lua_gettop(L) == 0);

  CHECK(corio_close(rt) == 0);
  CHECK(corio_close(NULL) == 0);
}

/* ---- precompiled chunks ----------------------------------------------------------------- */

typedef struct bytes {
  char *p;
  size_t len;
} bytes;

static int writer(lua_State *L, const void *p, size_t sz, void *ud) {
  bytes *b = ud;
  (void)L;
  b->p = realloc(b->p, b->len + sz);
  CHECK(b->p != NULL);
  memcpy(b->p + b->len, p, sz);
  b->len += sz;
  return 0;
}

static void test_precompiled(void) {
  corio_runtime *rt = corio_open(NULL);
  lua_State *L = corio_lua(rt);
  /* compile in a helper state, as luac would, and keep the bytes */
  lua_State *C = luaL_newstate();
  CHECK(luaL_loadstring(C, "local corio = require 'corio' corio.sleep(0.01) answer = 6 * 7") == 0);
  bytes b = {NULL, 0};
  CHECK(lua_dump(C, writer, &b, 1) == 0);
  lua_close(C);
  const char *bin = b.p;
  size_t len = b.len;
  CHECK(len > 4 && bin[0] == 0x1b);

  CHECK(corio_dobuffer(rt, bin, len, "=bin", "t") == CORIO_ERUN);  /* text only: refused */
  CHECK_CONTAINS(corio_errmsg(rt), "binary");
  CHECK_OK(rt, corio_dobuffer(rt, bin, len, "=bin", "b"));
  lua_getglobal(L, "answer");
  CHECK(lua_tointeger(L, -1) == 42);
  lua_pop(L, 1);

  /* corio_load + corio_spawn: the chunk as a task */
  outcome o = {0};
  const char *src = "local a = ... ; require('corio').sleep(0.01) return a + 1";
  CHECK_OK(rt, corio_load(rt, src, strlen(src), "=chunk", NULL));
  lua_pushinteger(L, 9);
  CHECK_OK(rt, corio_spawn(rt, 1, on_done, &o, NULL));
  CHECK_OK(rt, corio_run(rt));
  CHECK(o.calls == 1 && o.status == 0 && o.sum == 10);
  CHECK(corio_load(rt, bin, len, "=bin", "t") == CORIO_ERUN);
  CHECK(lua_gettop(L) == 0);
  free(b.p);
  CHECK(corio_close(rt) == 0);
}

/* ---- errors nobody retrieved go to the host's handler ------------------------------------ */

static void raising_done(corio_runtime *rt, void *ud, int status, lua_State *L, int n) {
  (void)rt, (void)ud, (void)status, (void)n;
  luaL_error(L, "done went wrong");
}

static void test_error_handler(void) {
  errors e = {0};
  corio_options o = {0};
  o.on_error = on_error;
  o.on_error_ud = &e;
  corio_runtime *rt = corio_open_ex(&o);
  CHECK_OK(rt, corio_dostring(rt,
                              "local corio = require 'corio'\n"
                              "corio.spawn(function()\n"
                              "  corio.sleep(0.01) error('lost in a task')\n"
                              "end)",
                              "=spawner"));
  /* a task started from C without a done callback: its error is nobody's either */
  lua_State *L = corio_lua(rt);
  luaL_loadstring(L, "error({code = 7})");
  CHECK_OK(rt, corio_spawn(rt, 0, NULL, NULL, NULL));
  CHECK_OK(rt, corio_run(rt));
  /* both are reported once the loop is idle: nothing holds the failed tasks any more */
  CHECK(e.count == 2);
  lua_gc(L, LUA_GCCOLLECT, 0);  /* collecting them again reports nothing new */
  CHECK(e.count == 2);
  CHECK(corio_unretrieved_errors(rt) == 2);
  CHECK_CONTAINS(e.last, "nobody awaited");
  /* switching the handler back to the default (stderr) is allowed */
  corio_set_error_handler(rt, NULL, NULL);
  corio_set_error_handler(rt, on_error, &e);
  /* an error raised by a done callback is reported too */
  luaL_loadstring(L, "return 1");
  CHECK_OK(rt, corio_spawn(rt, 0, raising_done, NULL, NULL));
  CHECK_OK(rt, corio_run(rt));
  CHECK(e.count == 3);
  CHECK_CONTAINS(e.last, "error in a done callback: done went wrong");
  CHECK(corio_close(rt) == 0);
}

/* ---- hooks: output, allocator, search path; registered functions ----------------------- */

typedef struct capture {
  char buf[512];
  size_t len;
} capture;

static void on_output(void *ud, const char *s, size_t len) {
  capture *c = ud;
  CHECK(c->len + len < sizeof c->buf);
  memcpy(c->buf + c->len, s, len);
  c->len += len;
  c->buf[c->len] = '\0';
}

typedef struct counting {
  size_t live, peak, calls;
} counting;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counting *c = ud;
  c->calls++;
  if (ptr) c->live -= osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p) c->live += nsize;
  else if (ptr) c->live += osize;
  if (c->live > c->peak) c->peak = c->live;
  return p;
}

/* corio.twice(n) -> 2n, the multiplier being the C function's user data */
static int l_twice(lua_State *L) {
  lua_Integer k = *(lua_Integer *)corio_fn_ud(L);
  lua_pushinteger(L, luaL_checkinteger(L, 1) * k);
  return 1;
}

static int open_extra(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, "from C");
  lua_setfield(L, -2, "origin");
  return 1;
}

static void test_hooks(void) {
  capture out = {{0}, 0};
  counting mem = {0, 0, 0};
  char dir[] = "/tmp/corio-embed-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256], file[300];
  snprintf(path, sizeof path, "%s/?.lua", dir);
  snprintf(file, sizeof file, "%s/hostmod.lua", dir);
  FILE *f = fopen(file, "w");
  CHECK(f != NULL);
  fputs("return {name = 'hostmod'}\n", f);
  fclose(f);

  corio_options o = {0};
  o.alloc = count_alloc;
  o.alloc_ud = &mem;
  o.path = path;
  o.output = on_output;
  o.output_ud = &out;
  corio_runtime *rt = corio_open_ex(&o);
  CHECK(rt != NULL);
  CHECK(mem.calls > 0 && mem.live > 0);

  lua_Integer k = 2;
  CHECK_OK(rt, corio_register(rt, "twice", l_twice, &k));
  CHECK_OK(rt, corio_register_module(rt, "extra", open_extra));
  CHECK(corio_register(rt, NULL, l_twice, NULL) == CORIO_EINVAL);
  CHECK_OK(rt, corio_dostring(rt,
                              "local corio = require 'corio'\n"
                              "print('twice', corio.twice(21), nil)\n"
                              "io.write('w', 1, ' ', 2.5, '\\n')\n"
                              "print(require('hostmod').name, require('extra').origin)\n"
                              "corio.run(function() corio.sleep(0.01) print('in a task') end)",
                              "=hooks"));
  CHECK(strcmp(out.buf, "twice\t42\tnil\nw1 2.5\nhostmod\tfrom C\nin a task\n") == 0);
  /* io.write to another file is left alone */
  CHECK_OK(rt, corio_dostring(rt, "local f = io.tmpfile(); io.output(f); io.write('x');"
                                  "io.output(io.stdout); f:seek('set'); captured = f:read('a')",
                              "=file"));
  lua_getglobal(corio_lua(rt), "captured");
  CHECK(strcmp(lua_tostring(corio_lua(rt), -1), "x") == 0);
  lua_pop(corio_lua(rt), 1);
  CHECK(out.len == strlen("twice\t42\tnil\nw1 2.5\nhostmod\tfrom C\nin a task\n"));
  /* back to stdout: nothing more reaches the hook */
  size_t before = out.len;
  CHECK_OK(rt, corio_set_output(rt, NULL, NULL));
  CHECK_OK(rt, corio_dostring(rt, "print('to stdout')", "=stdout"));
  CHECK(out.len == before);
  /* a file, run as top-level code */
  f = fopen(file, "w");
  CHECK(f != NULL);
  fputs("local corio = require 'corio' corio.sleep(0.01) from_file = 'yes'\n", f);
  fclose(f);
  CHECK_OK(rt, corio_dofile(rt, file));
  lua_getglobal(corio_lua(rt), "from_file");
  CHECK(strcmp(lua_tostring(corio_lua(rt), -1), "yes") == 0);
  lua_pop(corio_lua(rt), 1);
  /* warnings go through the custom-allocator state's own handler; "@on" enables them */
  CHECK_OK(rt, corio_dostring(rt, "warn('@off') warn('not shown')", "=warn"));
  CHECK(corio_close(rt) == 0);
  CHECK(mem.live == 0);  /* every byte the state took was given back */
  unlink(file);
  rmdir(dir);
}

/* ---- the application's own loop -------------------------------------------------------- */

typedef struct host {
  uv_timer_t tick;
  int ticks;
  corio_runtime *rt;
} host;

static void tick_cb(uv_timer_t *t) {
  host *h = t->data;
  h->ticks++;
}

static void test_borrowed_loop(void) {
  uv_loop_t loop;
  host h = {.ticks = 0};
  CHECK(uv_loop_init(&loop) == 0);
  CHECK(uv_timer_init(&loop, &h.tick) == 0);
  h.tick.data = &h;
  CHECK(uv_timer_start(&h.tick, tick_cb, 5, 5) == 0);
  corio_runtime *rt = corio_open(&loop);
  CHECK(rt != NULL && corio_loop(rt) == &loop);
  lua_State *L = corio_lua(rt);
  CHECK_OK(rt, corio_dostring(rt,
                              "corio = require 'corio'\n"
                              "function worker(n)\n"
                              "  for i = 1, n do corio.sleep(0.01) end return n\n"
                              "end",
                              "=setup"));
  outcome o = {0};
  lua_getglobal(L, "worker");
  lua_pushinteger(L, 4);
  CHECK_OK(rt, corio_spawn(rt, 1, on_done, &o, NULL));
  /* the host runs its loop; corio's tasks run inside it */
  while (o.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK(o.status == 0 && o.sum == 4);
  CHECK(h.ticks >= 3);  /* the host's timer kept ticking meanwhile */

  /* foreign-loop integration: backend fd and timeout, and corio_step */
  CHECK(uv_backend_fd(&loop) >= 0);
  lua_getglobal(L, "worker");
  lua_pushinteger(L, 1);
  outcome o2 = {0};
  CHECK_OK(rt, corio_spawn(rt, 1, on_done, &o2, NULL));
  CHECK(uv_backend_timeout(&loop) == 0);  /* a task is ready: do not block */
  int polls = 0;
  while (o2.calls == 0) {  /* a foreign main loop: poll(2) on libuv's backend fd */
    struct pollfd p = {uv_backend_fd(&loop), POLLIN, 0};
    CHECK(poll(&p, 1, uv_backend_timeout(&loop)) >= 0);
    CHECK(corio_step(rt) == 1);  /* the host's timer keeps the loop alive */
    CHECK(++polls < 1000);       /* it sleeps in poll, it does not spin */
  }
  CHECK(o2.status == 0 && o2.sum == 1);

  CHECK(corio_close(rt) == 0);
  uv_close((uv_handle_t *)&h.tick, NULL);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

static int l_stop(lua_State *L) {
  corio_stop(corio_from_lua(L));
  return 0;
}

static void test_stop(void) {
  uv_loop_t loop;
  uv_timer_t forever;
  CHECK(uv_loop_init(&loop) == 0);
  uv_timer_init(&loop, &forever);
  uv_timer_start(&forever, (uv_timer_cb)tick_cb, 1000000, 1000000);
  host h = {.ticks = 0};
  forever.data = &h;
  corio_runtime *rt = corio_open(&loop);
  lua_pushcfunction(corio_lua(rt), l_stop);
  lua_setglobal(corio_lua(rt), "stop");
  CHECK_OK(rt, corio_dostring(rt,
                              "local corio = require 'corio'\n"
                              "corio.spawn(function() corio.sleep(0.02) done = true stop() end)",
                              "=stop"));
  CHECK_OK(rt, corio_run(rt));  /* returns although `forever` keeps the loop alive */
  lua_getglobal(corio_lua(rt), "done");
  CHECK(lua_toboolean(corio_lua(rt), -1));
  lua_pop(corio_lua(rt), 1);
  CHECK(corio_close(rt) == 0);
  uv_close((uv_handle_t *)&forever, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

/* corio_run/step/close refuse to run inside the loop */
static int l_reenter(lua_State *L) {
  corio_runtime *rt = corio_from_lua(L);
  lua_pushinteger(L, corio_run(rt));
  lua_pushinteger(L, corio_step(rt));
  lua_pushinteger(L, corio_close(rt));
  return 3;
}

static void test_reentry(void) {
  corio_runtime *rt = corio_open(NULL);
  CHECK_OK(rt, corio_register(rt, "reenter", l_reenter, NULL));
  CHECK_OK(rt, corio_dostring(rt,
                              "local corio = require 'corio'\n"
                              "r = corio.run(function() return {corio.reenter()} end)",
                              "=reenter"));
  lua_State *L = corio_lua(rt);
  lua_getglobal(L, "r");
  for (int i = 1; i <= 3; i++) {
    lua_rawgeti(L, -1, i);
    CHECK(lua_tointeger(L, -1) == CORIO_EBUSY);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  CHECK(corio_close(rt) == 0);
}

static void never_cb(uv_timer_t *t) {
  (void)t;
  CHECK(!"the forgotten timer fired");
}

/* a handle the host forgot on corio's own loop: closed, reported, no hang */
static void test_forgotten_handle(void) {
  corio_runtime *rt = corio_open_ex(NULL);
  CHECK(rt != NULL);
  uv_timer_t *t = malloc(sizeof *t);  /* the host's memory: freed once corio closed it */
  CHECK(uv_timer_init(corio_loop(rt), t) == 0);
  CHECK(uv_timer_start(t, never_cb, 100000, 100000) == 0);
  CHECK(corio_close(rt) == CORIO_ELOOP);
  free(t);
}

int main(void) {
  test_own_loop();
  test_precompiled();
  test_error_handler();
  test_hooks();
  test_borrowed_loop();
  test_stop();
  test_reentry();
  test_forgotten_handle();
  printf("test_embed_api: ok\n");
  return 0;
}
