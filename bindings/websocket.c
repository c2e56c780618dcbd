/* WebSocket helpers in C (RFC 6455): the handshake's accept key (SHA-1 from OpenSSL's libcrypto,
 * then base64) and payload masking, which is a byte loop too slow for Lua. Framing and the
 * protocol's rules are in scripts/corio/websocket.lua, on corio.net streams.
 * permessage-deflate (RFC 7692) is zlib's raw deflate.
 * Lua module "corio._websocket": accept(key) -> string, mask(data, key4) -> string,
 * random(n) -> string, deflate(data) -> string, inflater() -> z (z:inflate(data, max)). */
#include <string.h>

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "binding.h"

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* _websocket.accept(key) -> base64(SHA-1(key .. GUID)) */
static int ws_accept(lua_State *L) {
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  if (n > 128) return luaL_argerror(L, 1, "key too long");
  unsigned char in[128 + sizeof GUID], md[SHA_DIGEST_LENGTH];
  memcpy(in, key, n);
  memcpy(in + n, GUID, sizeof GUID - 1);
  SHA1(in, n + sizeof GUID - 1, md);
  char out[32];
  size_t o = 0;
  for (int i = 0; i < SHA_DIGEST_LENGTH; i += 3) {
    unsigned v = (unsigned)md[i] << 16;
    int left = SHA_DIGEST_LENGTH - i;
    if (left > 1) v |= (unsigned)md[i + 1] << 8;
    if (left > 2) v |= md[i + 2];
    out[o++] = B64[(v >> 18) & 63];
    out[o++] = B64[(v >> 12) & 63];
    out[o++] = left > 1 ? B64[(v >> 6) & 63] : '=';
    out[o++] = left > 2 ? B64[v & 63] : '=';
  }
  lua_pushlstring(L, out, o);
  return 1;
}

/* _websocket.mask(data, key) -> data XOR the 4-byte key repeated (masking and unmasking) */
static int ws_mask(lua_State *L) {
  size_t n, kn;
  const char *data = luaL_checklstring(L, 1, &n);
  const char *key = luaL_checklstring(L, 2, &kn);
  if (kn != 4) return luaL_argerror(L, 2, "the key must be 4 bytes");
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n);
  unsigned char k[4];
  memcpy(k, key, 4);
  for (size_t i = 0; i < n; i++) out[i] = (char)((unsigned char)data[i] ^ k[i & 3]);
  luaL_pushresultsize(&b, n);
  return 1;
}

/* _websocket.random(n) -> n random bytes (masking keys, the client's Sec-WebSocket-Key) */
static int ws_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n > 0 && n <= 64, 1, "between 1 and 64 bytes");
  unsigned char buf[64];
  if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "websocket: no random bytes");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

/* ---- permessage-deflate ------------------------------------------------------------------ */

#define ZBOX "corio.websocket.Zlib"
#define ZCHUNK 16384

/* A zlib stream in a userdata, pushed before zlib allocates anything: a Lua error in between
 * (memory) leaves it to __gc, which ends the stream. */
typedef struct zbox {
  z_stream z;
  int inflating, active;
} zbox;

static void zbox_end(zbox *b) {
  if (!b->active) return;
  b->active = 0;
  if (b->inflating) inflateEnd(&b->z);
  else deflateEnd(&b->z);
}

static int zbox_gc(lua_State *L) {
  zbox_end(luaL_checkudata(L, 1, ZBOX));
  return 0;
}

static zbox *zbox_new(lua_State *L, int inflating) {
  zbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->inflating = inflating;
  luaL_setmetatable(L, ZBOX);
  int r = inflating ? inflateInit2(&b->z, -15)
                    : deflateInit2(&b->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                                   Z_DEFAULT_STRATEGY);
  if (r != Z_OK) {
    luaL_error(L, "websocket: zlib: %s", r == Z_MEM_ERROR ? "not enough memory" : "init failed");
    return NULL;
  }
  b->active = 1;
  return b;
}

/* _websocket.deflate(data) -> one message compressed on its own (the server announces
 * server_no_context_takeover), without the 00 00 ff ff tail of the sync flush */
static int ws_deflate(lua_State *L) {
  size_t n;
  const char *data = luaL_checklstring(L, 1, &n);
  zbox *b = zbox_new(L, 0);
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  b->z.next_in = (Bytef *)data;
  b->z.avail_in = (uInt)n;
  do {
    char *out = luaL_prepbuffsize(&buf, ZCHUNK);
    b->z.next_out = (Bytef *)out;
    b->z.avail_out = ZCHUNK;
    if (deflate(&b->z, Z_SYNC_FLUSH) == Z_STREAM_ERROR) {
      zbox_end(b);
      return luaL_error(L, "websocket: deflate failed");
    }
    luaL_addsize(&buf, ZCHUNK - b->z.avail_out);
  } while (b->z.avail_out == 0);
  zbox_end(b);
  luaL_pushresult(&buf);
  size_t len;
  const char *z = lua_tolstring(L, -1, &len);
  if (len >= 4 && memcmp(z + len - 4, "\0\0\xff\xff", 4) == 0) lua_pushlstring(L, z, len - 4);
  return 1;
}

/* _websocket.inflater() -> z: the receiving side's stream, kept across messages (the client
 * may use context takeover) */
static int ws_inflater(lua_State *L) {
  zbox_new(L, 1);
  return 1;
}

/* Feed n bytes; output appended to buf, *total counts it. 0, or the reason for failing. */
static const char *feed(zbox *b, luaL_Buffer *buf, const char *in, size_t n, size_t *total,
                        size_t max) {
  b->z.next_in = (Bytef *)in;
  b->z.avail_in = (uInt)n;
  for (;;) {
    char *out = luaL_prepbuffsize(buf, ZCHUNK);
    b->z.next_out = (Bytef *)out;
    b->z.avail_out = ZCHUNK;
    int r = inflate(&b->z, Z_SYNC_FLUSH);
    size_t got = ZCHUNK - b->z.avail_out;
    luaL_addsize(buf, got);
    *total += got;
    if (*total > max) return "too big";
    if (r == Z_STREAM_END) { /* a final block: the next message starts a new stream */
      inflateReset(&b->z);
      if (b->z.avail_in == 0) return NULL;
      continue;
    }
    if (r == Z_BUF_ERROR) {
      if (got == 0) return NULL;
    } else if (r != Z_OK) {
      return "invalid";
    }
    if (b->z.avail_in == 0 && b->z.avail_out != 0) return NULL;
  }
}

/* z:inflate(data, max) -> message | nil, "too big" (more than max bytes) | nil, "invalid" */
static int ws_inflate(lua_State *L) {
  zbox *b = luaL_checkudata(L, 1, ZBOX);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  lua_Integer max = luaL_checkinteger(L, 3);
  if (!b->active) return luaL_error(L, "inflate: the stream is closed");
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  size_t total = 0;
  const char *why = feed(b, &buf, data, n, &total, (size_t)max);
  if (!why) why = feed(b, &buf, "\0\0\xff\xff", 4, &total, (size_t)max);
  if (why) {
    zbox_end(b); /* the connection fails: the stream is not used again */
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  luaL_pushresult(&buf);
  return 1;
}

static const luaL_Reg zbox_methods[] = {
  {"inflate", ws_inflate},
  {NULL, NULL},
};

static const luaL_Reg funcs[] = {
  {"accept", ws_accept},
  {"mask", ws_mask},
  {"random", ws_random},
  {"deflate", ws_deflate},
  {"inflater", ws_inflater},
  {NULL, NULL},
};

int luaopen_corio_websocket(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", zbox_gc}, {"__close", zbox_gc}, {NULL, NULL}};
  corio__class(L, ZBOX, zbox_methods, meta);
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
