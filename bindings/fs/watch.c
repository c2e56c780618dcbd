/* fs.watch(path): change events of a file or a directory (inotify through uv_fs_event_t).
 * corio.fs.Watcher: next() (also __call, so `for name, what in fs.watch(p)` works), close(). */
#include <stdlib.h>
#include <string.h>

#include "fs.h"

#define QUEUE 64

typedef struct watcher {
  corio_handle base; /* first: the box code frees the record through it */
  uv_fs_event_t h;
  corio_waiter w;
  corio_runtime *rt;
  int err;           /* an error to report once, or 0 */
  int head, n;       /* the queue of events not yet returned */
  int dropped;       /* events lost because the queue was full */
  struct {
    int events;
    char name[256];
  } q[QUEUE];
  char path[];
} watcher;

static void event_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
  watcher *wt = container_of(h, watcher, h);
  if (status < 0) {
    wt->err = status;
  } else if (wt->n == QUEUE) {
    wt->dropped++;
  } else {
    int i = (wt->head + wt->n++) % QUEUE;
    wt->q[i].events = events;
    snprintf(wt->q[i].name, sizeof wt->q[i].name, "%s", filename ? filename : "");
  }
  corio__waiter_wake(wt->rt, &wt->w, 0);
}

/* Push the next event (name, "rename" | "change"), an error triple, or nothing (-1). */
static int next_result(lua_State *L, watcher *wt) {
  if (wt->n > 0) {
    int i = wt->head;
    wt->head = (wt->head + 1) % QUEUE;
    wt->n--;
    lua_pushstring(L, wt->q[i].name);
    lua_pushstring(L, (wt->q[i].events & UV_RENAME) ? "rename" : "change");
    return 2;
  }
  if (wt->err) {
    int err = wt->err;
    wt->err = 0;
    return corio__fail(L, "watch", wt->path, err);
  }
  return -1;
}

static int next_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  if (!b->h || b->h->closing) {
    lua_pushnil(L); /* closed while waiting: the iteration ends */
    return 1;
  }
  int n = next_result(L, (watcher *)b->h);
  if (n >= 0) return n;
  lua_pushnil(L);
  return 1;
}

/* watcher:next() -> name, "rename" | "change" | nil, msg, code | nil once closed  [suspends]
 * `name` is the entry of a watched directory that changed (the file's own name for a file). */
static int watch_next(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, FSWATCH);
  if (!b->h || b->h->closing) {
    lua_pushnil(L);
    return 1;
  }
  watcher *wt = (watcher *)b->h;
  lua_settop(L, 1);
  int n = next_result(L, wt);
  if (n >= 0) return n;
  corio__check_suspend(L, "fs watch");
  return corio__waiter_await(L, &wt->w, "fs watch", next_k, 0);
}

/* watcher:close(): stop watching; a task waiting in next() gets nil. Idempotent. */
static int watch_close(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, FSWATCH);
  if (b->h && !b->h->closing) {
    watcher *wt = (watcher *)b->h;
    corio__waiter_wake(corio__rt(L), &wt->w, UV_ECANCELED);
    corio__box_close(b->h);
  }
  return 0;
}

/* corio.ps's reason: "fs watch /etc/app.conf" */
static void watch_describe(lua_State *L, corio_waiter *w, const char *op) {
  lua_pushfstring(L, "%s %s", op, container_of(w, watcher, w)->path);
}

/* fs._watch(path) -> Watcher | nil, msg, code */
int fs__watch(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  corio_runtime *rt = corio__rt(L);
  corio_box *b = corio__box_new(L, FSWATCH);
  watcher *wt = corio__xmalloc(L, sizeof *wt + len + 1);
  memset(wt, 0, sizeof *wt);
  memcpy(wt->path, path, len + 1);
  wt->rt = rt;
  wt->w.describe = watch_describe;
  uv_fs_event_init(corio__loop(rt), &wt->h);
  corio__box_attach(b, &wt->base, (uv_handle_t *)&wt->h, NULL);
  int rc = uv_fs_event_start(&wt->h, event_cb, path, 0);
  if (rc < 0) {
    corio__box_close(&wt->base);
    return corio__fail(L, "watch", path, rc);
  }
  return 1;
}

static const luaL_Reg methods[] = {{"next", watch_next}, {"close", watch_close}, {NULL, NULL}};
static const luaL_Reg meta[] = {
  {"__call", watch_next}, {"__close", watch_close}, {"__gc", corio__box_gc}, {NULL, NULL}};

void fs__watch_init(lua_State *L) {
  corio__class(L, FSWATCH, methods, meta);
  lua_pop(L, 1);
}
