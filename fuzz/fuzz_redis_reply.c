/* libFuzzer target: corio.redis's reply builder (bindings/redis/reply.c) on hiredis's RESP2
 * reader, fed in process without a server. The first input byte chooses how the rest is cut
 * into reads (all at once, or pieces of pseudo-random sizes seeded from the input), as a
 * socket delivers them; each chunk is copied to its own allocation so ASan sees reads past its
 * ends. The property: the replies built from the pieces (through the partial-reply path) are
 * the same Lua values, in the same order, with the same protocol error or none, as those built
 * from the whole input in one read; after each call the stack is exactly as the contract in
 * reply.h says; every value is one the builder may produce.
 * Build: cmake -DCORIO_FUZZ=ON; run: fuzz/run BUILD_DIR 60 fuzz_redis_reply */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../bindings/redis/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stack slots shared by both readers; each reader has its own partial table. */
enum { NULL_IDX = 1, STATUS_IDX, ERRMT_IDX, PARTIAL_WHOLE, PARTIAL_CUT, CHECK_IDX, FIXED = CHECK_IDX };

/* check(whole, cut, whole_err, cut_err): the property over the two lists of replies. */
static const char CHECK[] =
  "local null, status_mt, err_mt = ...\n"
  "local function valid(v, depth)\n"
  "  local t = type(v)\n"
  "  if t == 'string' or math.type(v) == 'integer' or v == null then return end\n"
  "  assert(t == 'table', 'unexpected ' .. t)\n"
  "  local mt = getmetatable(v)\n"
  "  if mt == status_mt then assert(type(v.status) == 'string') return end\n"
  "  if mt == err_mt then assert(type(v.message) == 'string') return end\n"
  "  assert(mt == nil, 'a table with a foreign metatable')\n"
  "  assert(depth < 9, 'nested deeper than hiredis allows')\n"
  "  local n = 0\n"
  "  for k, x in pairs(v) do\n"
  "    assert(math.type(k) == 'integer' and k >= 1, 'array key ' .. tostring(k))\n"
  "    n = n + 1\n"
  "    valid(x, depth + 1)\n"
  "  end\n"
  "  assert(n == #v, 'an array with holes')\n"
  "end\n"
  "local function same(a, b)\n"
  "  if a == b then return true end\n"
  "  if type(a) ~= 'table' or type(b) ~= 'table' then return false end\n"
  "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
  "  if getmetatable(a) == err_mt then return a.message == b.message end\n"
  "  if #a ~= #b then return false end\n"
  "  for i = 1, #a do if not same(a[i], b[i]) then return false end end\n"
  "  return true\n"
  "end\n"
  "return function(whole, cut, werr, cerr)\n"
  "  assert(werr == cerr, 'protocol error differs: ' .. tostring(werr) .. ' / ' ..\n"
  "         tostring(cerr))\n"
  "  assert(whole.n == cut.n, ('%d replies whole, %d in pieces'):format(whole.n, cut.n))\n"
  "  for i = 1, whole.n do\n"
  "    local v = whole[i]\n"
  "    if v ~= nil then valid(v, 0) end\n"
  "    assert(v ~= null, 'the null sentinel at the top level')\n"
  "    assert(same(v, cut[i]), 'reply ' .. i .. ' differs when cut into pieces')\n"
  "  end\n"
  "end\n";

static lua_State *L;

static uint32_t next_rand(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

static void fail(const char *what) {
  fprintf(stderr, "fuzz_redis_reply: %s\n", what);
  abort();
}

static void setup(void) {
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  lua_newtable(L); /* NULL_IDX: the sentinel */
  lua_newtable(L); /* STATUS_IDX: {[1] = the status class, [2] = how many cached} */
  lua_newtable(L);
  lua_rawseti(L, STATUS_IDX, 1);
  lua_pushinteger(L, 0);
  lua_rawseti(L, STATUS_IDX, 2);
  lua_newtable(L); /* ERRMT_IDX */
  lua_newtable(L); /* PARTIAL_WHOLE */
  lua_newtable(L); /* PARTIAL_CUT */
  if (luaL_loadbuffer(L, CHECK, sizeof CHECK - 1, "=check") != LUA_OK) fail(lua_tostring(L, -1));
  lua_pushvalue(L, NULL_IDX);
  lua_rawgeti(L, STATUS_IDX, 1);
  lua_pushvalue(L, ERRMT_IDX);
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) fail(lua_tostring(L, -1)); /* CHECK_IDX */
  if (lua_gettop(L) != FIXED) fail("setup");
}

/* Feed one chunk and move every complete reply into the list at `list` (its count in .n).
 * Returns 0, or -1 after a protocol error. */
static int feed(redisReader *r, corio_redis_ctx *ctx, int list, const char *buf, size_t len) {
  if (len && redisReaderFeed(r, buf, len) != REDIS_OK) return -1;
  for (;;) {
    int top = lua_gettop(L);
    int rc = corio__redis_next(r, ctx);
    if (rc == 0 || rc < 0) {
      if (lua_gettop(L) != top) fail("the stack moved without a reply");
      return rc;
    }
    if (rc != 1 || lua_gettop(L) != top + 1) fail("a reply is not exactly one value");
    lua_getfield(L, list, "n");
    lua_Integer n = lua_tointeger(L, -1) + 1;
    lua_pop(L, 1);
    lua_pushinteger(L, n);
    lua_setfield(L, list, "n");
    lua_rawseti(L, list, n);
  }
}

static int traceback(lua_State *L_) {
  luaL_traceback(L_, L_, luaL_tolstring(L_, 1, NULL), 1);
  return 1;
}

/* Runs unprotected at the bottom of the stack (the slots are absolute indices): a Lua memory
 * error would end in the panic handler, which is a finding too. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) setup();
  lua_settop(L, FIXED);
  /* Fresh partial tables: a reply cut off at the end of one input must not reach the next. */
  lua_newtable(L);
  lua_replace(L, PARTIAL_WHOLE);
  lua_newtable(L);
  lua_replace(L, PARTIAL_CUT);
  uint8_t mode = size ? data[0] : 0;
  const char *in = size ? (const char *)data + 1 : "";
  size_t len = size ? size - 1 : 0;
  redisReader *rw = corio__redis_reader_new(), *rc = corio__redis_reader_new();
  if (!rw || !rc) abort();
  corio_redis_ctx cw = {.L = L, NULL_IDX, STATUS_IDX, ERRMT_IDX, PARTIAL_WHOLE, 0};
  corio_redis_ctx cc = {.L = L, NULL_IDX, STATUS_IDX, ERRMT_IDX, PARTIAL_CUT, 0};
  lua_createtable(L, 0, 1);
  int whole = lua_gettop(L);
  lua_createtable(L, 0, 1);
  int cut = lua_gettop(L);
  lua_pushinteger(L, 0);
  lua_setfield(L, whole, "n");
  lua_pushinteger(L, 0);
  lua_setfield(L, cut, "n");

  char *copy = malloc(len ? len : 1);
  memcpy(copy, in, len);
  int werr = feed(rw, &cw, whole, copy, len);
  free(copy);

  int cerr = 0;
  uint32_t seed = 0x9e3779b9u ^ (uint32_t)len ^ ((uint32_t)mode << 24);
  size_t off = 0;
  while (off < len && cerr == 0) {
    size_t n = mode & 1 ? 1 + next_rand(&seed) % (mode & 2 ? 4 : 64) : len;
    if (n > len - off) n = len - off;
    char *piece = malloc(n);
    memcpy(piece, in + off, n);
    cerr = feed(rc, &cc, cut, piece, n);
    free(piece);
    off += n;
  }
  redisReaderFree(rw);
  redisReaderFree(rc);

  lua_pushcfunction(L, traceback);
  lua_pushvalue(L, CHECK_IDX);
  lua_pushvalue(L, whole);
  lua_pushvalue(L, cut);
  lua_pushboolean(L, werr != 0);
  lua_pushboolean(L, cerr != 0);
  if (lua_pcall(L, 4, 0, -6) != LUA_OK) {
    fprintf(stderr, "fuzz_redis_reply: property violated: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, FIXED);
  return 0;
}
