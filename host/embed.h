/* Internals shared by the embedding API's files (embed.c, token.c, module.c): what the API
 * adds to a runtime. Not public (corio.h is). */
#ifndef CORIO_EMBED_H
#define CORIO_EMBED_H

#include "runtime.h"


/* What the embedding API adds to a runtime. It shares one allocation with the runtime record
 * (corio__block) so that the handles embedded in either stay valid until their close
 * callbacks have run, even when corio_close returns before that (on the host's loop). */
struct corio_embed {
  uv_async_t async;     /* wakes the loop for completions queued from other threads */
  struct corio_hub *hub;
  int waiting;          /* tokens a task waits on: the async handle is ref'd while > 0 */
  int stop;             /* corio_stop was called */
  int closes;           /* handles closed whose close callback has not run yet */
  int free_on_close;    /* the last close callback frees the block */
  int warn_on, warn_cont;
  corio_output_fn output;
  void *output_ud;
  int output_installed;
  char *err;            /* corio_errmsg when longer than rt->errbuf */
};

typedef struct corio__block {
  corio_runtime rt;
  struct corio_embed e;
} corio__block;

/* embed.c */
int corio__embed_init(corio__block *b, uv_loop_t *loop); /* loop (NULL: own), hub, handles */
void corio__embed_shutdown(corio_runtime *rt);           /* close them (loop thread) */
void corio__open_world(lua_State *L);      /* anchors, coroutine patch, preloads, corio.core */
int corio__close_own_loop(uv_loop_t *loop); /* 0, CORIO_ELOOP (host handles), CORIO_EBUSY */
void corio__set_error(corio_runtime *rt, const char *msg);  /* what corio_errmsg returns */

/* token.c: the cross-thread side of a runtime (its uv_async_t and queue of completions) */
int corio__hub_open(corio_runtime *rt);
void corio__hub_close(corio_runtime *rt);  /* later completions are dropped safely */

/* module.c: corio.so's one exported symbol, what require "corio" calls in a stock lua5.4 */
int luaopen_corio(lua_State *L);

#endif
