/* A small service embedding corio on its own libuv loop: a timer ticks (the service's own
 * work), and Lua scripts get two asynchronous C functions:
 *   corio.primes(n) -> count   counts the primes below n on libuv's thread pool
 *                              (uv_queue_work; completed from the after-work callback)
 *   corio.checksum(s) -> hex   hashes a string on a thread of its own (completed from that
 *                              thread through the thread-safe path)
 * The script (script.lua, or the file given as argument) defines main(), which runs as a task;
 * the program prints what it returns and exits when it is done.
 *
 * Build against an installed corio:  cc main.c $(pkg-config --cflags --libs corio)
 */
#define _DEFAULT_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <corio.h>
#include <lauxlib.h>

/* ---- corio.primes(n): the thread pool ----------------------------------------------------- */

typedef struct primes_job {
  uv_work_t req;
  corio_token *tok;
  long n, count;
  atomic_int cancelled;  /* set on the loop thread, read by the worker */
} primes_job;

static void primes_work(uv_work_t *req) {  /* on a thread of the pool: no Lua, no corio */
  primes_job *j = req->data;
  long count = 0;
  for (long i = 2; i < j->n; i++) {
    if ((i & 0xffff) == 0 && atomic_load(&j->cancelled)) break;
    int prime = 1;
    for (long d = 2; d * d <= i; d++)
      if (i % d == 0) {
        prime = 0;
        break;
      }
    count += prime;
  }
  j->count = count;
}

static void primes_done(uv_work_t *req, int status) {  /* back on the loop thread */
  primes_job *j = req->data;
  if (status == 0) {
    corio_value v = corio_integer(j->count);
    corio_resolve(j->tok, 1, &v);
  } else {
    /* UV_ECANCELED: primes_cancel took it off the queue; the completion is ignored but
     * still releases the token */
    corio_reject(j->tok, uv_strerror(status));
  }
  free(j);
}

static void primes_cancel(corio_token *tok, void *ud) {
  primes_job *j = ud;
  (void)tok;
  atomic_store(&j->cancelled, 1);  /* a running computation stops at its next check */
  uv_cancel((uv_req_t *)&j->req);  /* one still waiting for a thread never starts */
}

/* corio.primes(n) -> number of primes below n  [suspends] */
static int l_primes(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 100000000, 1, "out of range");
  corio_token *tok = corio_token_new(L, "primes", primes_cancel, NULL);
  primes_job *j = malloc(sizeof *j);
  if (!j) {
    corio_reject(tok, "primes: not enough memory");
    return corio_token_await(L, tok);
  }
  j->req.data = j;
  j->tok = tok;
  j->n = (long)n;
  atomic_init(&j->cancelled, 0);
  corio_token_set_ud(tok, j);
  int err = uv_queue_work(corio_loop(corio_from_lua(L)), &j->req, primes_work, primes_done);
  if (err) {
    corio_value fail[3] = {corio_nil(), corio_string(uv_strerror(err)),
                           corio_string(uv_err_name(err))};
    corio_resolve(tok, 3, fail);  /* nil, msg, code: returned without suspending */
    free(j);
  }
  return corio_token_await(L, tok);
}

/* ---- corio.checksum(s): a thread of its own, the thread-safe completion -------------------- */

typedef struct sum_job {
  uv_thread_t thread;
  corio_token *tok;
  size_t len;
  char data[];
} sum_job;

static struct {
  sum_job *jobs[64];
  int n;
} threads;

static void checksum_main(void *arg) {
  sum_job *j = arg;
  uint64_t h = 1469598103934665603u;  /* FNV-1a */
  for (int round = 0; round < 2000; round++)
    for (size_t i = 0; i < j->len; i++) h = (h ^ (unsigned char)j->data[i]) * 1099511628211u;
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  corio_value v = corio_string(hex);
  corio_resolve_threadsafe(j->tok, 1, &v);  /* copied: `hex` may go */
}

/* corio.checksum(s) -> hex digest  [suspends] */
static int l_checksum(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (threads.n == (int)(sizeof threads.jobs / sizeof threads.jobs[0]))
    return luaL_error(L, "checksum: too many threads");
  corio_token *tok = corio_token_new(L, "checksum", NULL, NULL);
  sum_job *j = malloc(sizeof *j + len);
  if (!j) {
    corio_reject(tok, "checksum: not enough memory");
    return corio_token_await(L, tok);
  }
  j->tok = tok;
  j->len = len;
  memcpy(j->data, s, len);  /* the Lua string is not ours once we suspend */
  if (uv_thread_create(&j->thread, checksum_main, j) != 0) {
    corio_reject(tok, "checksum: cannot start a thread");
    free(j);
  } else {
    threads.jobs[threads.n++] = j;
  }
  return corio_token_await(L, tok);
}

/* ---- the service --------------------------------------------------------------------------- */

typedef struct service {
  uv_loop_t loop;
  uv_timer_t tick;
  int ticks, finished, status;
} service;

static void tick_cb(uv_timer_t *t) {
  service *s = t->data;
  s->ticks++;
}

static void main_done(corio_runtime *rt, void *ud, int status, lua_State *L, int n) {
  service *s = ud;
  s->finished = 1;
  s->status = status;
  if (status != 0) {
    fprintf(stderr, "embed: main() failed: %s\n", corio_errmsg(rt));
  } else {
    int base = lua_gettop(L) - n + 1;
    for (int i = 0; i < n; i++) {
      printf("main() returned: %s\n", luaL_tolstring(L, base + i, NULL));
      lua_pop(L, 1);
    }
  }
  uv_timer_stop(&s->tick);  /* the service winds down: nothing else keeps the loop alive */
}

static void output(void *ud, const char *text, size_t len) {
  (void)ud;
  printf("[lua] %.*s", (int)len, text);
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "script.lua";
  service s = {.ticks = 0};
  uv_loop_init(&s.loop);
  uv_timer_init(&s.loop, &s.tick);
  s.tick.data = &s;
  uv_timer_start(&s.tick, tick_cb, 10, 10);

  corio_options opts = {0};
  opts.loop = &s.loop;
  opts.output = output;
  corio_runtime *rt = corio_open_ex(&opts);
  if (!rt) {
    fprintf(stderr, "embed: cannot create the corio runtime\n");
    return 1;
  }
  corio_register(rt, "primes", l_primes, NULL);
  corio_register(rt, "checksum", l_checksum, NULL);
  if (corio_dofile(rt, script) != 0) {
    fprintf(stderr, "embed: %s\n", corio_errmsg(rt));
    corio_close(rt);
    return 1;
  }
  lua_State *L = corio_lua(rt);
  lua_getglobal(L, "main");
  if (corio_spawn(rt, 0, main_done, &s, NULL) != 0) {
    fprintf(stderr, "embed: %s\n", corio_errmsg(rt));
    corio_close(rt);
    return 1;
  }
  uv_run(&s.loop, UV_RUN_DEFAULT);  /* the application's loop; corio's tasks run inside it */

  printf("ticks while Lua worked: %s\n", s.ticks > 0 ? "yes" : "no");
  corio_close(rt);
  for (int i = 0; i < threads.n; i++) {
    uv_thread_join(&threads.jobs[i]->thread);
    free(threads.jobs[i]);
  }
  uv_close((uv_handle_t *)&s.tick, NULL);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  int closed = uv_loop_close(&s.loop);
  printf("loop closed cleanly: %s\n", closed == 0 ? "yes" : "no");
  return s.finished && s.status == 0 && closed == 0 ? 0 : 1;
}
