/* The timer heap: every sleep and deadline sits in one binary heap driven by one uv_timer_t,
 * so a sleeping task costs a heap slot, not a libuv handle. Deadlines are kept in nanoseconds
 * of uv_hrtime(): a sleep never returns early, whatever the millisecond rounding of the loop.
 * The binding API (binding.h) exposes start and stop; the host inits and closes it. */
#include <math.h>
#include <stdlib.h>

#include "runtime.h"

static int before(const corio_timer *a, const corio_timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(corio_runtime *rt, corio_timer *t, int i) {
  rt->timers.heap[i] = t;
  t->index = i;
}

static void sift_up(corio_runtime *rt, int i) {
  corio_timer *t = rt->timers.heap[i];
  while (i > 0) {
    int parent = (i - 1) / 2;
    if (!before(t, rt->timers.heap[parent])) break;
    place(rt, rt->timers.heap[parent], i);
    i = parent;
  }
  place(rt, t, i);
}

static void sift_down(corio_runtime *rt, int i) {
  corio_timer *t = rt->timers.heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= rt->timers.len) break;
    if (c + 1 < rt->timers.len && before(rt->timers.heap[c + 1], rt->timers.heap[c])) c++;
    if (!before(rt->timers.heap[c], t)) break;
    place(rt, rt->timers.heap[c], i);
    i = c;
  }
  place(rt, t, i);
}

static void heap_timer_cb(uv_timer_t *h);
static void rearm(corio_runtime *rt);

/* Arm the uv timer for the earliest deadline (rounded up to whole milliseconds). */
static void rearm(corio_runtime *rt) {
  if (rt->timers.len == 0) {
    uv_timer_stop(&rt->timers.uv);
    return;
  }
  uint64_t now = uv_hrtime(), when = rt->timers.heap[0]->when;
  uint64_t ms = when > now ? (when - now + 999999) / 1000000 : 0;
  uv_update_time(rt->loop);
  uv_timer_start(&rt->timers.uv, heap_timer_cb, ms, 0);
}

static void heap_timer_cb(uv_timer_t *h) {
  corio_runtime *rt = h->data;
  uint64_t now = uv_hrtime();
  rt->in_loop++;
  rt->timers.firing = 1;
  if (rt->timers.len > 0 && rt->timers.heap[0]->when <= now) {
    /* loop lag (corio.stats): how late the earliest timer fires, one sample per wake-up */
    uint64_t late = now - rt->timers.heap[0]->when, us = late / 1000;
    int b = 0;
    while (us && b < CORIO_LAG_BUCKETS - 1) { us >>= 1; b++; }
    rt->lag.hist[b]++;
    rt->lag.n++;
    if (late > rt->lag.max) rt->lag.max = late;
  }
  while (rt->timers.len > 0 && rt->timers.heap[0]->when <= now) {
    corio_timer *t = rt->timers.heap[0];
    corio__timer_stop(rt, t);
    t->fire(rt, t);
  }
  rt->timers.firing = 0;
  rt->in_loop--;
  rearm(rt);
}

int corio__timer_start(corio_runtime *rt, corio_timer *t, double seconds) {
  if (t->index >= 0) corio__timer_stop(rt, t);
  if (!(seconds > 0)) seconds = 0;
  if (seconds > 1e9) seconds = 1e9;  /* about 31 years: "forever" for a loop */
  t->when = uv_hrtime() + (uint64_t)ceil(seconds * 1e9);
  t->seq = ++rt->timers.seq;
  if (rt->timers.len == rt->timers.cap) {
    int cap = rt->timers.cap ? rt->timers.cap * 2 : 64;
    corio_timer **h = realloc(rt->timers.heap, sizeof *h * (size_t)cap);
    if (!h) return UV_ENOMEM; /* the caller raises, or fails just its request */
    rt->timers.heap = h;
    rt->timers.cap = cap;
  }
  place(rt, t, rt->timers.len++);
  sift_up(rt, t->index);
  if (t->index == 0) rearm(rt);
  return 0;
}

void corio__timer_stop(corio_runtime *rt, corio_timer *t) {
  int i = t->index;
  if (i < 0) return;
  t->index = -1;
  corio_timer *last = rt->timers.heap[--rt->timers.len];
  if (last != t) {
    place(rt, last, i);
    sift_down(rt, i);
    sift_up(rt, last->index);
  }
  /* A new root (or none): move the uv timer, so that a cancelled long sleep does not keep
   * the loop alive. The heap callback re-arms once after its own batch instead. */
  if (i == 0 && !rt->timers.firing) rearm(rt);
}

void corio__timers_init(corio_runtime *rt) {
  uv_timer_init(rt->loop, &rt->timers.uv);
  rt->timers.uv.data = rt;
  corio__own_handle(rt, (uv_handle_t *)&rt->timers.uv);
}

/* Close the uv timer (its close callback is the caller's) and free the heap. Deadlines still
 * armed are simply forgotten: their owners are being torn down with the runtime. */
int corio__timers_close(corio_runtime *rt, uv_close_cb on_closed) {
  int started = !uv_is_closing((uv_handle_t *)&rt->timers.uv);
  if (started) uv_close((uv_handle_t *)&rt->timers.uv, on_closed);
  free(rt->timers.heap);
  rt->timers.heap = NULL;
  rt->timers.len = rt->timers.cap = 0;
  return started;
}

int corio__timers_armed(corio_runtime *rt) {
  return rt->timers.len;
}
