/* WebSocket helpers in C (RFC 6455): the handshake's accept key (SHA-1 from OpenSSL's libcrypto,
 * then base64) and payload masking, which is a byte loop too slow for Lua. Framing and the
 * protocol's rules are in scripts/corio/websocket.lua, on corio.net streams.
 * Lua module "corio._websocket": accept(key) -> string, mask(data, key4) -> string,
 * random(n) -> string. */
#include <string.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

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

static const luaL_Reg funcs[] = {
  {"accept", ws_accept},
  {"mask", ws_mask},
  {"random", ws_random},
  {NULL, NULL},
};

int luaopen_corio_websocket(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
