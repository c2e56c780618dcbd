/* Asynchronous C functions: tokens completed from a libuv callback and from other threads,
 * many at once, errors, the fast path, cancellation reaching the C side, completions that
 * arrive after cancellation or after corio_close, and closing a runtime with tasks still
 * running (their cleanup runs). */
#include <stdio.h>
#include <unistd.h>

#include <lauxlib.h>

#include "check.h"
#include "corio.h"

static int cancels;          /* cancel callbacks run */
static int late_ignored;     /* completions that returned CORIO_ECANCELLED */
static int cleanups;         /* <close> handlers of Lua tasks that ran */

/* ---- corio.later(ms, value [, fail]) -> value: completed by a libuv timer --------------- */

typedef struct later {
  uv_timer_t timer;
  corio_token *tok;
  lua_Integer value;
  int fail;
} later;

static void later_closed(uv_handle_t *h) { free(h->data); }

static void later_cb(uv_timer_t *t) {
  later *l = t->data;
  corio_value v = corio_integer(l->value);
  int st = l->fail ? corio_reject(l->tok, "later: failed on purpose")
                    : corio_resolve(l->tok, 1, &v);
  CHECK(st == 0);
  uv_close((uv_handle_t *)t, later_closed);
}

static void later_cancel(corio_token *tok, void *ud) {
  later *l = ud;
  cancels++;
  uv_timer_stop(&l->timer);
  /* the C side still completes the token, which releases it: ignored after cancellation */
  if (corio_resolve(tok, 0, NULL) == CORIO_ECANCELLED) late_ignored++;
  uv_close((uv_handle_t *)&l->timer, later_closed);
}

static int l_later(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  lua_Integer value = luaL_checkinteger(L, 2);
  int fail = lua_toboolean(L, 3);
  corio_token *tok = corio_token_new(L, "later", later_cancel, NULL);
  later *l = malloc(sizeof *l);
  CHECK(l != NULL);
  l->tok = tok;
  l->value = value;
  l->fail = fail;
  l->timer.data = l;
  CHECK(uv_timer_init(corio_loop(corio_from_lua(L)), &l->timer) == 0);
  CHECK(uv_timer_start(&l->timer, later_cb, (uint64_t)ms, 0) == 0);
  corio_token_set_ud(tok, l);
  CHECK(corio_token_ud(tok) == l);
  return corio_token_await(L, tok);
}

/* ---- corio.in_thread(n, ms [, fail]) -> n*n, "thread": completed from another thread ---- */

typedef struct job {
  uv_thread_t thread;
  corio_token *tok;
  lua_Integer n;
  int ms, fail, result;
} job;

static job jobs[512];
static int njobs;

static void job_main(void *arg) {
  job *j = arg;
  usleep((useconds_t)j->ms * 1000);
  if (j->fail) {
    j->result = corio_reject_threadsafe(j->tok, "in_thread: failed on purpose");
  } else {
    char text[32];
    snprintf(text, sizeof text, "thread %lld", (long long)j->n);
    corio_value v[2] = {corio_integer(j->n * j->n), corio_string(text)};
    j->result = corio_resolve_threadsafe(j->tok, 2, v);  /* `text` may go right after */
  }
}

static void job_cancel(corio_token *tok, void *ud) {
  (void)tok, (void)ud;
  cancels++;  /* a running thread cannot be stopped: it completes later, ignored */
}

static int l_in_thread(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  int ms = (int)luaL_optinteger(L, 2, 1);
  int fail = lua_toboolean(L, 3);  /* read before corio_token_new pushes its box */
  CHECK(njobs < (int)(sizeof jobs / sizeof jobs[0]));
  job *j = &jobs[njobs];
  corio_token *tok = corio_token_new(L, "in_thread", job_cancel, j);
  njobs++;
  j->tok = tok;
  j->n = n;
  j->ms = ms;
  j->fail = fail;
  j->result = 1;  /* not completed yet */
  CHECK(uv_thread_create(&j->thread, job_main, j) == 0);
  return corio_token_await(L, tok);
}

static void join_jobs(void) {
  for (int i = 0; i < njobs; i++) uv_thread_join(&jobs[i].thread);
}

/* ---- corio.at_once(x) -> x, true: completed before it could suspend ------------------- */

static int l_at_once(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  corio_token *tok = corio_token_new(L, "at_once", NULL, NULL);
  corio_value v[2] = {corio_string(s), corio_boolean(1)};
  CHECK(corio_resolve(tok, 2, v) == 0);
  return corio_token_await(L, tok);
}

/* corio.bad_value() raises: a value of unknown type is refused */
static int l_bad_value(lua_State *L) {
  corio_token *tok = corio_token_new(L, "bad_value", NULL, NULL);
  corio_value v = corio_nil();
  v.type = 99;
  CHECK(corio_resolve(tok, 1, &v) == CORIO_EINVAL);
  return corio_token_await(L, tok);
}

/* corio.all_types() -> nil, false, -7, 0.5, "a\0b" */
static int l_all_types(lua_State *L) {
  corio_token *tok = corio_token_new(L, "all_types", NULL, NULL);
  corio_value v[5] = {corio_nil(), corio_boolean(0), corio_integer(-7), corio_number(0.5),
                      corio_lstring("a\0b", 3)};
  CHECK(corio_resolve_threadsafe(tok, 5, v) == 0);  /* the thread-safe path from the loop thread */
  return corio_token_await(L, tok);
}

static int l_cleaned(lua_State *L) {
  (void)L;
  cleanups++;
  return 0;
}

static corio_runtime *open_runtime(uv_loop_t *loop) {
  corio_runtime *rt = corio_open(loop);
  CHECK(rt != NULL);
  CHECK_OK(rt, corio_register(rt, "later", l_later, NULL));
  CHECK_OK(rt, corio_register(rt, "in_thread", l_in_thread, NULL));
  CHECK_OK(rt, corio_register(rt, "at_once", l_at_once, NULL));
  CHECK_OK(rt, corio_register(rt, "bad_value", l_bad_value, NULL));
  CHECK_OK(rt, corio_register(rt, "all_types", l_all_types, NULL));
  CHECK_OK(rt, corio_register(rt, "cleaned", l_cleaned, NULL));
  CHECK_OK(rt, corio_dostring(rt, "corio = require 'corio'", "=init"));
  return rt;
}

static lua_Integer global_int(corio_runtime *rt, const char *name) {
  lua_State *L = corio_lua(rt);
  lua_getglobal(L, name);
  CHECK(lua_isinteger(L, -1));
  lua_Integer v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ---- the tests --------------------------------------------------------------------------- */

static void test_completions(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  corio_runtime *rt = open_runtime(&loop);
  njobs = 0;
  cancels = late_ignored = 0;
  /* top level: the call drives the loop until the other thread completes it */
  CHECK_OK(rt, corio_dostring(rt, "top, text = corio.in_thread(7, 5)", "=top"));
  CHECK(global_int(rt, "top") == 49);
  /* many tasks at once, half on timers and half on threads; they overlap in time */
  CHECK_OK(rt, corio_dostring(rt,
    "local fns = {}\n"
    "for i = 1, 40 do\n"
    "  fns[#fns + 1] = function() return corio.later(200, i) end\n"
    "  fns[#fns + 1] = function() local sq, s = corio.in_thread(i, 200)\n"
    "    assert(s == 'thread ' .. i, s) return sq end\n"
    "end\n"
    "local t0 = corio.now()\n"
    "local r = corio.gather(fns)\n"
    "elapsed_ms = math.floor((corio.now() - t0) * 1000)\n"
    "sum = 0 for i = 1, r.n do sum = sum + r[i] end\n", "=many"));
  lua_Integer expect = 0;
  for (int i = 1; i <= 40; i++) expect += i + i * i;
  CHECK(global_int(rt, "sum") == expect);
  CHECK(global_int(rt, "elapsed_ms") < 5000);  /* 80 waits of 200 ms (16 s in a row) overlapped */
  /* errors: rejected tokens raise in the task */
  CHECK_OK(rt, corio_dostring(rt,
    "local ok, e = pcall(corio.later, 5, 0, true)\n"
    "assert(not ok and e == 'later: failed on purpose', e)\n"
    "ok, e = pcall(corio.in_thread, 1, 1, true)\n"
    "assert(not ok and e == 'in_thread: failed on purpose', e)\n"
    "ok, e = pcall(corio.bad_value)\n"
    "assert(not ok and e:find('unknown type'), e)\n"
    "local a, b = corio.at_once('now')\n"
    "assert(a == 'now' and b == true)\n"
    "local n, f, i, x, s = corio.all_types()\n"
    "assert(n == nil and f == false and math.type(i) == 'integer' and i == -7 and x == 0.5\n"
    "       and s == 'a\\0b')\n"
    "corio.run(function()\n"
    "  ok, e = pcall(table.sort, {1, 2, 3}, function(a, b) return corio.later(1, 1) end)\n"
    "  assert(not ok and e:find('later: cannot suspend here'), e)\n"
    "end)\n", "=errors"));
  CHECK(cancels == 0 && late_ignored == 0);
  join_jobs();
  for (int i = 0; i < njobs; i++) CHECK(jobs[i].result == 0);
  CHECK(corio_close(rt) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

static void test_cancellation(void) {
  corio_runtime *rt = open_runtime(NULL);
  njobs = 0;
  cancels = late_ignored = 0;
  CHECK_OK(rt, corio_dostring(rt,
    "local t1 = corio.spawn(corio.later, 60000, 1)\n"
    "local t2 = corio.spawn(corio.in_thread, 2, 50)\n"
    "corio.sleep(0.01)\n"
    "assert(t1.state == 'waiting' and t1.where:find('^later'), t1.where)\n"
    "t1:cancel() t2:cancel()\n"
    "assert(not pcall(t1.await, t1) and t1:cancelled() and t2:cancelled())\n"
    "local ok, e = pcall(corio.wait_for, function() return corio.later(60000, 3) end, 0.02)\n"
    "assert(not ok and corio.is_timeout(e))\n", "=cancel"));
  CHECK(cancels == 3);       /* t1, t2 and the timeout reached their cancel callbacks */
  CHECK(late_ignored == 2);  /* the two timers' completions after cancel were ignored */
  join_jobs();               /* the thread finishes its work late ... */
  CHECK(jobs[0].result == CORIO_ECANCELLED);  /* ... and its completion is ignored safely */
  CHECK_OK(rt, corio_run(rt));  /* nothing left: no timer of 60 s keeps the loop */
  CHECK(corio_close(rt) == 0);
}

static void test_close_with_tasks_running(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  corio_runtime *rt = open_runtime(&loop);
  njobs = 0;
  cancels = late_ignored = cleanups = 0;
  CHECK_OK(rt, corio_dostring(rt,
    "local function guarded(fn, ...)\n"
    "  local ok, e = pcall(fn, ...)\n"
    "  assert(not ok and corio.is_cancelled(e))\n"
    "  corio.sleep(0.01)  -- cleanup may itself wait\n"
    "  corio.cleaned()\n"
    "  error(e, 0)\n"
    "end\n"
    "local function closing(fn, ...)\n"
    "  local guard <close> = setmetatable({}, {__close = corio.cleaned})\n"
    "  return fn(...)\n"
    "end\n"
    "for i = 1, 5 do corio.spawn(guarded, corio.later, 60000, i) end\n"
    "for i = 1, 3 do corio.spawn(guarded, corio.in_thread, i, 200) end\n"
    "for i = 1, 2 do corio.spawn(guarded, corio.sleep, 60) end\n"
    "for i = 1, 2 do corio.spawn(closing, corio.sleep, 60) end\n"
    "corio.spawn(function() corio.Future():await() end)\n"
    "corio.sleep(0.02)\n", "=busy"));
  CHECK(cancels == 0);
  CHECK(corio_close(rt) == 0);
  CHECK(cancels == 8);    /* every pending C operation heard of it */
  CHECK(cleanups == 12);  /* every task's cleanup ran, waits included */
  CHECK(uv_loop_close(&loop) == 0);
  join_jobs();            /* the threads complete after the runtime is gone: ignored */
  for (int i = 0; i < njobs; i++) CHECK(jobs[i].result == CORIO_ECANCELLED);
}

int main(void) {
  test_completions();
  test_cancellation();
  test_close_with_tasks_running();
  printf("test_embed_async: ok\n");
  return 0;
}
