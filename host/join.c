/* Joins: listeners (told once when a task or future finishes) and waiting for some of many
 * tasks, the C side of gather, wait and as_completed in scripts/corio (corio.core._wait and
 * _collect, registered by lcore.c). */
#include "scheduler.h"

/* ---- listeners --------------------------------------------------------------------------- */

void corio__listen(corio_task *target, corio_listener *l,
                   void (*fire)(corio_runtime *, corio_listener *, corio_task *)) {
  /* Appended, so that listeners fire in the order they started to listen. */
  corio_listener **pp = &target->listeners;
  while (*pp) pp = &(*pp)->next;
  l->fire = fire;
  l->next = NULL;
  l->pprev = pp;
  *pp = l;
}

void corio__unlisten(corio_listener *l) {
  if (!l->pprev) return;
  *l->pprev = l->next;
  if (l->next) l->next->pprev = l->pprev;
  l->next = NULL;
  l->pprev = NULL;
}

/* ---- joins: wait for some of many tasks ------------------------------------------------- */

typedef struct join_node {
  corio_listener l;
  struct join *j;
  int index;
} join_node;

typedef struct join {
  corio_task *owner;
  int needed, stop_on_error, failed, woke, n;
  join_node nodes[1];
} join;

static void join_detach(join *j) {
  for (int i = 0; i < j->n; i++) corio__unlisten(&j->nodes[i].l);
}

static void join_fire(corio_runtime *rt, corio_listener *l, corio_task *done) {
  join_node *node = (join_node *)l;
  join *j = node->j;
  j->needed--;
  if (done->outcome != CORIO_OK && j->stop_on_error && !j->failed) j->failed = node->index;
  if (!j->woke && (j->needed <= 0 || j->failed)) {
    /* Done: leave every other task's listener list now. The continuation may never run
     * (the owner can be cancelled before its turn), and then nothing else would. */
    j->woke = 1;
    join_detach(j);
    corio__wake(rt, j->owner);
  }
}

static void join_cancel(lua_State *L, corio_task *t, void *data) {
  (void)t;
  (void)L;
  join_detach(data);
}

/* "gather 3/10 done", or with a label (_wait's fourth argument) "Server:wait_closed (0/1
 * done)": the list is still corio__join_wait's first argument on the suspended frame, so the
 * count is taken only when asked */
static void join_describe(lua_State *L, corio_task *t, lua_State *co, void *data) {
  int done = 0, n = lua_type(co, 1) == LUA_TTABLE ? (int)lua_rawlen(co, 1) : 0;
  (void)t;
  (void)data;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(co, 1, i);
    corio_task *x = corio__testtask(co, -1);
    done += x && x->state == CORIO_DONE;
    lua_pop(co, 1);
  }
  if (lua_type(co, 4) == LUA_TSTRING)
    lua_pushfstring(L, "%s (%d/%d done)", lua_tostring(co, 4), done, n);
  else
    lua_pushfstring(L, "gather %d/%d done", done, n);
}

static const corio_wait JOIN_WAIT = {"wait", join_cancel, join_describe};

int corio__join_push_pending(lua_State *L, corio_task *t) {
  lua_State *co = t->co;
  if (t->state != CORIO_WAITING || t->wait != &JOIN_WAIT || !co || lua_type(co, 1) != LUA_TTABLE ||
      !lua_checkstack(co, 2))
    return 0;
  int n = (int)lua_rawlen(co, 1), k = 0;
  lua_newtable(L);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(co, 1, i);
    corio_task *x = corio__testtask(co, -1);
    if (x && x->state != CORIO_DONE && x != t) {
      lua_xmove(co, L, 1);
      lua_rawseti(L, -2, ++k);
    } else {
      lua_pop(co, 1);
    }
  }
  return 1;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  join *j = (join *)ctx;
  (void)status;
  join_detach(j);
  if (j->failed) lua_pushinteger(L, j->failed);
  else lua_pushnil(L);
  return 1;
}

/* corio._wait(list, needed, stop_on_error[, label]) -> index of the first failure | nil
 * [suspends] Waits until `needed` of the tasks in list are done, or (with stop_on_error) one
 * failed. `label` (a string) names the wait in corio.ps instead of "gather". */
int corio__join_wait(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  int needed = (int)luaL_optinteger(L, 2, n);
  int stop = lua_toboolean(L, 3);
  int pending = 0, failed = 0;
  lua_settop(L, 4);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    corio_task *t = corio__testtask(L, -1);
    if (!t) return luaL_error(L, "wait: item %d is a %s, not a task", i, luaL_typename(L, -1));
    lua_pop(L, 1);
    if (t->state != CORIO_DONE) pending++;
    else if (t->outcome != CORIO_OK && stop && !failed) failed = i;
  }
  int done = n - pending;
  if (failed || done >= needed || pending == 0) {
    if (failed) lua_pushinteger(L, failed);
    else lua_pushnil(L);
    return 1;
  }
  corio_task *me = corio__check_suspend(L, "wait");
  join *j = lua_newuserdatauv(L, sizeof(join) + sizeof(join_node) * (size_t)n, 0);
  j->owner = me;
  j->needed = needed - done;
  j->stop_on_error = stop;
  j->failed = 0;
  j->woke = 0;
  j->n = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    corio_task *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t->state == CORIO_DONE || t == me) continue;
    join_node *node = &j->nodes[j->n++];
    node->j = j;
    node->index = i;
    node->l.pprev = NULL;
    corio__listen(t, &node->l, join_fire);
  }
  return corio__await(L, &JOIN_WAIT, j, wait_k, (lua_KContext)j);
}

/* corio._collect(list, return_errors) -> results, errors
 * results[i] is the first value of task i (errors in place with return_errors), results.n
 * is #list; errors[i] is task i's error object. Without return_errors the first failed task
 * (in list order) has its error raised. All tasks must be done. */
int corio__join_collect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  int return_errors = lua_toboolean(L, 2);
  lua_settop(L, 2);
  lua_createtable(L, n, 1);  /* 3: results */
  lua_newtable(L);           /* 4: errors */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    corio_task *t = lua_touserdata(L, -1);
    if (t->state != CORIO_DONE) return luaL_error(L, "collect: task %d is not done", i);
    lua_getiuservalue(L, -1, 1);
    if (t->outcome == CORIO_OK) {
      if (t->nresults > 1) lua_rawgeti(L, -1, 1), lua_remove(L, -2);
      else if (t->nresults == 0) lua_pop(L, 1), lua_pushnil(L);
      lua_rawseti(L, 3, i);
    } else {
      t->flags |= CORIO_F_RETRIEVED;
      if (!return_errors) return lua_error(L);
      lua_pushvalue(L, -1);
      lua_rawseti(L, 4, i);
      lua_rawseti(L, 3, i);
    }
    lua_pop(L, 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, 3, "n");
  return 2;
}
