/* corio.thread, private: the pieces its files share. copy.c turns Lua values into bytes and
 * back (the only way values cross threads), channel.c is the thread-safe queue, pool.c the
 * workers, the jobs and the module. */
#ifndef CORIO_THREAD_H
#define CORIO_THREAD_H

#include <stdatomic.h>

#include "binding.h"

typedef struct chan chan;
typedef struct worker worker;

/* ---- bytes: the encoded form of values (copy.c) ---------------------------------------------
 * A tbuf owns its bytes and a reference to every channel encoded in it (dropped by
 * tbuf_free, whether or not the bytes were decoded). Plain malloc: a tbuf is filled on one
 * thread and read on another. */
typedef struct tbuf {
  char *p;
  size_t n, cap;
  chan **chans;
  int nchans, capchans;
} tbuf;

void thread__tbuf_free(tbuf *b); /* back to empty; idempotent */
/* Append one string value without a Lua state (messages made on the loop thread). Returns 0 or
 * -1 when out of memory. */
int thread__tbuf_string(tbuf *b, const char *s, size_t len);

/* Where a value goes, for the refusal messages: "... to a thread", "... from a thread". */
enum { TO_THREAD, FROM_THREAD, THROUGH_CHANNEL };

/* Append the values at stack indices first .. first+n-1 to b. Raises (b keeps what was written:
 * its owner frees it) when a value cannot be sent: "<what> <k> <path>: cannot send ...", where
 * k counts from `k0`. */
void thread__encode(lua_State *L, int first, int n, tbuf *b, const char *what, int k0, int dir);
/* Push the values of b (all of them); returns how many. May raise a memory error. */
int thread__decode(lua_State *L, const tbuf *b);

/* ---- channels (channel.c) ------------------------------------------------------------------ */
void thread__chan_open(lua_State *L);     /* the Channel class in this state */
chan *thread__tochan(lua_State *L, int idx); /* the channel of a Channel userdata, or NULL */
void thread__chan_push(lua_State *L, chan *c); /* a new userdata for c (takes a reference) */
void thread__chan_ref(chan *c);
void thread__chan_unref(chan *c);
int l_channel_new(lua_State *L);

/* ---- workers (pool.c), for a channel that blocks a worker ---------------------------------- */
worker *thread__worker(lua_State *L); /* the worker whose state L is, or NULL on the loop */
/* Around a blocking wait on c->cond: lets a cancellation or a pool's close wake the worker. */
void thread__block_begin(worker *w, uv_mutex_t *lock, uv_cond_t *cond1, uv_cond_t *cond2);
void thread__block_end(worker *w);
/* Non-NULL (the message to raise) once the worker's job is cancelled or its pool closed. */
const char *thread__interrupted(worker *w);

#endif
