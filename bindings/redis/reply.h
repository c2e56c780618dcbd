/* corio.redis's reply builder: hiredis's RESP2 reader with reply functions that build Lua values
 * directly on a Lua stack (no redisReply tree, no second pass). Needs only Lua and hiredis, so
 * the fuzz target (fuzz/fuzz_redis_reply.c) links it without the runtime.
 *
 * Values: bulk string -> string; integer -> integer; null bulk or array -> nil at the top level,
 * the null sentinel inside an array (a Lua array cannot hold nil); array -> table (a sequence);
 * status -> the interned status object for its text (a table {status = "OK"} of the status
 * class); error -> an error object (a table {message = "ERR ..."} of the error class). */
#ifndef CORIO_REDIS_REPLY_H
#define CORIO_REDIS_REPLY_H

#include <hiredis/read.h>
#include <lua.h>

/* Where the builder finds its Lua values, as absolute stack indices: the null sentinel; the
 * status cache (text -> status object, with the status class at [1] and the count of cached
 * texts at [2]); the error class; and the partial table, owned by the reader's owner and kept
 * between calls, where a reply that arrived only in part waits for the rest. */
typedef struct corio_redis_ctx {
  lua_State *L;
  int null_idx, status_idx, errmt_idx, partial_idx;
  int base; /* the reply under construction lives above this index */
} corio_redis_ctx;

/* A reader whose replies are built by corio__redis_next; NULL when out of memory. */
redisReader *corio__redis_reader_new(void);

/* Parse the next complete reply out of r's buffer onto ctx->L (one value above the current top,
 * which becomes ctx->base). Returns 1 when a reply was pushed, 0 when more input is needed (the
 * stack is as it was), -1 on a protocol error (r->errstr says which; the reader is unusable).
 * May raise Lua's memory error: call it where that is caught, and treat the reader as broken
 * afterwards. The four indices of ctx must be set; the caller reserves no stack. */
int corio__redis_next(redisReader *r, corio_redis_ctx *ctx);

/* Push the status object for `text` from the cache at ctx->status_idx (created on first use;
 * the cache stops growing past a few hundred texts). */
void corio__redis_push_status(corio_redis_ctx *ctx, const char *text, size_t len);

#endif
