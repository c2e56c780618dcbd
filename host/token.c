/* Completion tokens: the C side of an asynchronous C function (corio.h). A C function
 * suspends its task on a token; the host completes it from the loop thread or from any other
 * thread (queued, then a uv_async_t wakes the loop), or the task's cancellation reaches the
 * host's cancel callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed.h"

typedef struct corio_hub hub;

/* ---- the lock and the token records ---------------------------------------------------------
 * A token is malloc'd and counted: one reference for the C side (dropped by its completion)
 * and one for the task side (dropped when the box on the suspended call's stack is
 * collected). Other threads touch tokens only through the *_threadsafe functions, which
 * take `lock`; the fields they share with the loop thread (state, refs, the hub's queue)
 * change only under it. One process-wide lock: completions are rare next to everything else
 * and a lock per runtime would have to outlive the runtime anyway. */

static uv_once_t lock_once = UV_ONCE_INIT;
static uv_mutex_t lock;
static int lock_ok; /* the lock could be created (checked when a runtime opens its hub) */

static void lock_init(void) {
  lock_ok = uv_mutex_init(&lock) == 0;
}

/* Only called once a hub exists, so the lock does (corio__hub_open checked it). */
static void lock_tokens(void) {
  uv_mutex_lock(&lock);
}

static void unlock_tokens(void) { uv_mutex_unlock(&lock); }

/* The cross-thread side of a runtime: it outlives the runtime while tokens point to it. */
struct corio_hub {
  uv_async_t *async;         /* NULL once the runtime closed */
  corio_token *head, *tail;  /* completed from other threads, not yet seen by the loop */
  int refs;                  /* the runtime's and one per token */
};

enum { TOK_NEW, TOK_WAITING, TOK_DETACHED };

struct corio_token {
  hub *hub;
  corio_runtime *rt;       /* set while a task waits on it */
  corio_task *task;
  corio_cancel_fn cancel;
  void *ud;
  corio_token *next;       /* in the hub's queue */
  corio_value *values;     /* the outcome; values[0] is the message when failed */
  int nvalues;
  int failed;              /* 1: rejected, 2: out of memory while storing the outcome */
  int completed;           /* seen by the loop thread */
  int state;               /* TOK_* */
  int refs;
  corio_wait wait;
  char op[40];
};

static char TOKEN_MT;  /* registry key: metatable of the box that holds the task's reference */

static void release_locked(corio_token *tok) {
  if (--tok->refs > 0) return;
  hub *h = tok->hub;
  free(tok->values);
  free(tok);
  if (--h->refs == 0) free(h);
}

/* The task stops waiting on tok (loop thread). */
static void leave_wait(corio_token *tok) {
  struct corio_embed *e = tok->rt->embed;
  lock_tokens();
  tok->state = TOK_DETACHED;
  unlock_tokens();
  if (--e->waiting == 0 && !uv_is_closing((uv_handle_t *)&e->async))
    uv_unref((uv_handle_t *)&e->async);
}

/* Copy the outcome into the token (any thread: the token is the caller's until completed). */
static int store(corio_token *tok, int failed, int n, const corio_value *v) {
  size_t size, strings = 0;
  int bad = 0;
  if (n < 0) n = 0;
  for (int i = 0; i < n; i++) {
    if (v[i].type == CORIO_TSTRING) strings += v[i].u.s.len + 1;
    else if (v[i].type < CORIO_TNIL || v[i].type > CORIO_TSTRING) bad = 1;
  }
  if (bad) {
    static const char msg[] = "async C function: completed with a value of unknown type";
    corio_value m = corio_lstring(msg, sizeof msg - 1);
    store(tok, 1, 1, &m);
    return CORIO_EINVAL;
  }
  size = sizeof(corio_value) * (size_t)n;
  char *mem = malloc(size + strings + 1);
  if (!mem) {
    tok->failed = 2;
    return CORIO_ENOMEM;
  }
  corio_value *out = (corio_value *)mem;
  char *s = mem + size;
  for (int i = 0; i < n; i++) {
    out[i] = v[i];
    if (v[i].type == CORIO_TSTRING) {
      if (v[i].u.s.len) memcpy(s, v[i].u.s.p, v[i].u.s.len);
      s[v[i].u.s.len] = '\0';
      out[i].u.s.p = s;
      s += v[i].u.s.len + 1;
    }
  }
  tok->values = out;
  tok->nvalues = n;
  tok->failed = failed;
  return 0;
}

/* Loop thread: the outcome is stored; wake the task if it waits. Consumes the C reference. */
static int complete_here(corio_token *tok, int status) {
  lock_tokens();
  int state = tok->state;
  tok->completed = 1;
  unlock_tokens();
  if (state == TOK_WAITING) {
    corio_task *t = tok->task;
    tok->task = NULL;
    leave_wait(tok);
    corio__wake(tok->rt, t);
  } else if (state == TOK_DETACHED) {
    status = CORIO_ECANCELLED;
  }
  lock_tokens();
  release_locked(tok);
  unlock_tokens();
  return status;
}

int corio_resolve(corio_token *tok, int n, const corio_value *values) {
  return complete_here(tok, store(tok, 0, n, values));
}

int corio_reject(corio_token *tok, const char *message) {
  corio_value m = corio_string(message ? message : "async C function failed");
  return complete_here(tok, store(tok, 1, 1, &m));
}

/* Any thread: queue the token for the loop thread and wake it. */
static int complete_queued(corio_token *tok, int status) {
  lock_tokens();
  hub *h = tok->hub;
  if (tok->state == TOK_DETACHED || !h->async) {
    release_locked(tok);
    unlock_tokens();
    return CORIO_ECANCELLED;
  }
  tok->next = NULL;  /* the C reference now belongs to the queue */
  if (h->tail) h->tail->next = tok;
  else h->head = tok;
  h->tail = tok;
  uv_async_send(h->async);  /* under the lock: the handle is not closed meanwhile */
  unlock_tokens();
  return status;
}

int corio_resolve_threadsafe(corio_token *tok, int n, const corio_value *values) {
  return complete_queued(tok, store(tok, 0, n, values));
}

int corio_reject_threadsafe(corio_token *tok, const char *message) {
  corio_value m = corio_string(message ? message : "async C function failed");
  return complete_queued(tok, store(tok, 1, 1, &m));
}

static void async_cb(uv_async_t *a) {
  corio_runtime *rt = a->data;
  lock_tokens();
  corio_token *tok = rt->embed->hub->head;
  rt->embed->hub->head = rt->embed->hub->tail = NULL;
  unlock_tokens();
  while (tok) {
    corio_token *next = tok->next;
    complete_here(tok, 0);
    tok = next;
  }
}

void corio_token_set_ud(corio_token *tok, void *ud) { tok->ud = ud; }
void *corio_token_ud(corio_token *tok) { return tok->ud; }

/* __gc of the box on the suspended call's stack: the task side lets go of the token */
static int token_box_gc(lua_State *L) {
  corio_token **box = lua_touserdata(L, 1);
  corio_token *tok = *box;
  *box = NULL;
  if (!tok) return 0;
  if (tok->state == TOK_WAITING) {  /* a waiting task collected: only when the state closes */
    tok->task = NULL;
    leave_wait(tok);
  }
  lock_tokens();
  release_locked(tok);
  unlock_tokens();
  return 0;
}

corio_token *corio_token_new(lua_State *L, const char *op, corio_cancel_fn cancel, void *ud) {
  corio_runtime *rt = corio__rt(L);
  if (!op) op = "async call";
  corio__check_suspend(L, op);
  corio_token **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &TOKEN_MT) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "corio.Token");
    lua_setfield(L, -2, "__name");
    lua_pushcfunction(L, token_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TOKEN_MT);
  }
  lua_setmetatable(L, -2);
  corio_token *tok = calloc(1, sizeof *tok);
  if (!tok) corio__nomem(L);
  snprintf(tok->op, sizeof tok->op, "%s", op);
  tok->wait.name = tok->op;
  tok->cancel = cancel;
  tok->ud = ud;
  tok->state = TOK_NEW;
  tok->refs = 2;
  tok->hub = rt->embed->hub;
  lock_tokens();
  tok->hub->refs++;
  unlock_tokens();
  *box = tok;
  return tok;
}

static int deliver(lua_State *L, corio_token *tok) {
  if (tok->failed == 2) return corio__nomem(L); /* storing its results failed */
  if (tok->failed) {
    lua_pushlstring(L, tok->values[0].u.s.p, tok->values[0].u.s.len);
    return lua_error(L);
  }
  luaL_checkstack(L, tok->nvalues, "too many results");
  for (int i = 0; i < tok->nvalues; i++) {
    const corio_value *v = &tok->values[i];
    switch (v->type) {
      case CORIO_TBOOLEAN: lua_pushboolean(L, v->u.b); break;
      case CORIO_TINTEGER: lua_pushinteger(L, v->u.i); break;
      case CORIO_TNUMBER: lua_pushnumber(L, v->u.n); break;
      case CORIO_TSTRING: lua_pushlstring(L, v->u.s.p, v->u.s.len); break;
      default: lua_pushnil(L); break;
    }
  }
  return tok->nvalues;
}

static void token_cancel(lua_State *L, corio_task *t, void *data) {
  (void)t;
  corio_token *tok = data;
  (void)L;
  tok->task = NULL;
  leave_wait(tok);
  if (tok->cancel) tok->cancel(tok, tok->ud);
}

static int token_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return deliver(L, (corio_token *)ctx);
}

int corio_token_await(lua_State *L, corio_token *tok) {
  corio_runtime *rt = corio__rt(L);
  struct corio_embed *e = rt->embed;
  if (tok->completed) return deliver(L, tok);  /* completed on the loop thread already */
  lock_tokens();
  tok->state = TOK_WAITING;
  unlock_tokens();
  tok->rt = rt;
  tok->task = rt->current;
  tok->wait.cancel = token_cancel;
  if (e->waiting++ == 0) uv_ref((uv_handle_t *)&e->async);
  return corio__await(L, &tok->wait, tok, token_k, (lua_KContext)tok);
}

int corio__hub_open(corio_runtime *rt) {
  struct corio_embed *e = rt->embed;
  uv_once(&lock_once, lock_init);
  if (!lock_ok) return CORIO_ENOMEM; /* the system is out of resources: no runtime */
  e->hub = calloc(1, sizeof *e->hub);
  if (!e->hub) return CORIO_ENOMEM;
  e->hub->refs = 1;
  e->hub->async = &e->async;
  uv_async_init(rt->loop, &e->async, async_cb);
  e->async.data = rt;
  corio__own_handle(rt, (uv_handle_t *)&e->async);
  uv_unref((uv_handle_t *)&e->async);
  return 0;
}

void corio__hub_close(corio_runtime *rt) {
  struct corio_embed *e = rt->embed;
  hub *h = e->hub;
  lock_tokens();
  corio_token *tok = h->head;
  h->head = h->tail = NULL;
  h->async = NULL;
  while (tok) {
    corio_token *next = tok->next;
    release_locked(tok);
    tok = next;
  }
  if (--h->refs == 0) free(h);
  unlock_tokens();
  e->hub = NULL;
}
