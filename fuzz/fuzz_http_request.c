/* libFuzzer target: the HTTP server's request path (bindings/http_server/parse.c) fed in
 * process, without sockets. The first input byte chooses how the rest is cut into reads (all
 * at once, or pieces of pseudo-random sizes seeded from the input), as a client's bytes
 * arrive; each chunk is copied to its own allocation so ASan sees reads past its ends. Every
 * complete request is pushed to Lua (as the server hands it to a handler) and the parser
 * resumes on the pipelined rest, as conn.c does; a rejection ends the connection. While a
 * body arrives, half of what is unread is taken after each read, as a handler's reads do
 * (body.c), so the buffer's compaction runs too; with an odd first byte, body reads land in
 * the body buffer itself, as conn.c's reads do for a body its handler reads.
 * Build: cmake -DCORIO_FUZZ=ON; run: build/fuzz_http_request fuzz/corpus/fuzz_http_request */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../bindings/http_server/http_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits, so that inputs of a few hundred bytes reach every limit check. */
static void set_limits(server *s) {
  s->max_header = 512;
  s->max_url = 128;
  s->max_headers = 8;
  s->max_body = 1024;
  s->body_hwm = 256;
}

static uint32_t next_rand(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

/* Parse one read. Returns 0 to go on, -1 when the connection ends (a rejection). */
static int feed(lua_State *L, conn *c, const uint8_t *p, size_t n, int in_place) {
  while (n > 0) {
    uv_buf_t room;
    char *chunk = NULL;
    size_t used;
    int r;
    if (in_place && c->state == ST_BODY && corio__hs_body_space(c, &room) && room.len >= n) {
      memcpy(room.base, p, n);
      r = corio__hs_parse(c, room.base, n, &used);
    } else {
      chunk = malloc(n);
      if (!chunk) return -1;
      memcpy(chunk, p, n);
      r = corio__hs_parse(c, chunk, n, &used);
      free(chunk);
    }
    if (c->body_off > c->body_len || c->body_len > c->body_cap) abort();
    if (c->state == ST_BODY && c->body_len > c->body_off) { /* a handler's read */
      c->body_off += (c->body_len - c->body_off + 1) / 2;
      if (c->body_off == c->body_len) c->body_off = c->body_len = 0;
    }
    if (r == HS_MORE) return 0;
    if (r == HS_REJECT) {
      if (c->err_status >= 0 && (c->err_status < 400 || c->err_status > 599)) abort();
      return -1;
    }
    if (c->state != ST_HANDLING || used > n) abort();
    corio__hs_push_request(L, c); /* conn, method, target, headers, http11, remote */
    if (lua_gettop(L) != 6 || !lua_istable(L, 4)) abort();
    lua_settop(L, 0);
    if (!c->keep_alive) return -1; /* the server closes after the answer */
    corio__hs_reset(c);
    p += used; /* the pipelined rest, parsed once the answer is out */
    n -= used;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  static server *s;
  if (!L) {
    L = luaL_newstate();
    s = calloc(1, sizeof *s);
    if (!L || !s) abort();
    set_limits(s);
  }
  if (size == 0) return 0;
  unsigned mode = data[0];
  data++;
  size--;
  conn *c = calloc(1, sizeof *c);
  if (!c) return 0;
  c->srv = s;
  c->file_fd = -1;
  corio__hs_parse_init(c);
  uint32_t seed = 2166136261u; /* FNV-1a of the input: the cuts follow the bytes */
  for (size_t i = 0; i < size; i++) seed = (seed ^ data[i]) * 16777619u;
  seed |= 1;
  size_t max_piece = mode == 0 ? size : (mode % 32) + 1;
  size_t off = 0;
  while (off < size) {
    size_t piece = max_piece ? 1 + next_rand(&seed) % max_piece : size;
    if (piece > size - off) piece = size - off;
    if (feed(L, c, data + off, piece, mode & 1) != 0) break;
    off += piece;
  }
  corio__hs_parse_free(c);
  free(c);
  return 0;
}
