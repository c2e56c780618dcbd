/* WebSocket helpers in C (RFC 6455): the handshake's accept key (SHA-1 from OpenSSL's libcrypto,
 * then base64) and payload masking, which is a byte loop too slow for Lua. Framing and the
 * protocol's rules are in scripts/corio/websocket.lua, on corio.net streams.
 * permessage-deflate (RFC 7692) is zlib's raw deflate.
 * Lua module "corio._websocket": accept(key) -> string, mask(data, key4) -> string,
 * random(n) -> string, deflate(data) -> string, inflater() -> z (z:inflate(data, max)). */
#include <stdint.h>
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

/* ---- frames ------------------------------------------------------------------------------ */

/* dst = src XOR the key repeated, key aligned on src's first byte (dst may be src) */
static void xor_key(unsigned char *dst, const unsigned char *src, size_t n,
                    const unsigned char key[4]) {
  size_t i = 0;
  uint64_t k8;
  unsigned char kb[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
  memcpy(&k8, kb, 8);
  for (; i + 8 <= n; i += 8) { /* eight bytes at a time: the key repeats every four */
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= k8;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

/* _websocket.parse(buf, pos) -> op, fin, rsv, masked, len, payload | nil, next
 *   | nil (the header is not all in buf yet)
 * The frame starting at buf[pos]: its opcode, FIN (boolean), RSV bits (0-7), MASK (boolean),
 * payload length (-1 if a 64-bit length too big for a position to count) and the payload,
 * unmasked, if all of it is in buf (else nil: the caller reads the rest, next - pos - what
 * buf holds from pos, and parses again). next is the position after the frame. Checks
 * nothing else: the protocol's rules are websocket.lua's. */
static int ws_parse(lua_State *L) {
  size_t n;
  const unsigned char *buf = (const unsigned char *)luaL_checklstring(L, 1, &n);
  lua_Integer pos = luaL_checkinteger(L, 2);
  luaL_argcheck(L, pos >= 1, 2, "position out of range");
  if ((size_t)pos > n) return 0;
  const unsigned char *p = buf + pos - 1;
  size_t have = n - (size_t)(pos - 1);
  if (have < 2) return 0;
  int masked = p[1] & 0x80;
  size_t len7 = p[1] & 0x7f, hdr = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
  if (have < hdr) return 0;
  uint64_t len = len7;
  if (len7 == 126) len = ((uint64_t)p[2] << 8) | p[3];
  if (len7 == 127) {
    len = 0;
    for (int i = 2; i < 10; i++) len = (len << 8) | p[i];
  }
  lua_pushinteger(L, p[0] & 0x0f);
  lua_pushboolean(L, p[0] & 0x80);
  lua_pushinteger(L, (p[0] >> 4) & 7);
  lua_pushboolean(L, masked);
  if (len > (uint64_t)INT64_MAX - (uint64_t)pos - hdr) { /* (pos + hdr + len must fit) */
    lua_pushinteger(L, -1);
    lua_pushnil(L);
    lua_pushnil(L);
    return 7;
  }
  lua_pushinteger(L, (lua_Integer)len);
  if (have - hdr < len) {
    lua_pushnil(L);
  } else if (!masked) {
    lua_pushlstring(L, (const char *)p + hdr, (size_t)len);
  } else {
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)len);
    xor_key(out, p + hdr, (size_t)len, p + hdr - 4);
    luaL_pushresultsize(&b, (size_t)len);
  }
  lua_pushinteger(L, pos + (lua_Integer)hdr + (lua_Integer)len);
  return 7;
}

/* _websocket.frame(b1, data, masked) -> a whole frame: the first byte b1 (FIN, RSV, opcode),
 * the length, with `masked` a fresh random key and the data masked with it */
static int ws_frame(lua_State *L) {
  lua_Integer b1 = luaL_checkinteger(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  int masked = lua_toboolean(L, 3);
  unsigned char head[14];
  size_t h = 0;
  head[h++] = (unsigned char)b1;
  unsigned char m = masked ? 0x80 : 0;
  if (n < 126) {
    head[h++] = m | (unsigned char)n;
  } else if (n < 65536) {
    head[h++] = m | 126;
    head[h++] = (unsigned char)(n >> 8);
    head[h++] = (unsigned char)n;
  } else {
    head[h++] = m | 127;
    for (int i = 7; i >= 0; i--) head[h++] = (unsigned char)((uint64_t)n >> (8 * i));
  }
  if (masked && RAND_bytes(head + h, 4) != 1) return luaL_error(L, "websocket: no random bytes");
  const unsigned char *key = head + h;
  if (masked) h += 4;
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, h + n);
  memcpy(out, head, h);
  if (masked) xor_key(out + h, (const unsigned char *)data, n, key);
  else memcpy(out + h, data, n);
  luaL_pushresultsize(&b, h + n);
  return 1;
}

/* s is valid UTF-8 by utf8.len's strict rules: no overlong forms, no surrogates, nothing above
 * U+10FFFF. ASCII runs are checked 8 bytes at a time. */
static int valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t v;
      memcpy(&v, s + i, 8);
      if (!(v & 0x8080808080808080ull)) {
        i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t k;
    unsigned lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
      k = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      k = 2;
      if (c == 0xe0) lo = 0xa0;      /* overlong */
      else if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
      k = 3;
      if (c == 0xf0) lo = 0x90;      /* overlong */
      else if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
      return 0;
    }
    if (i + k >= n || s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t j = 2; j <= k; j++)
      if ((s[i + j] & 0xc0) != 0x80) return 0;
    i += k + 1;
  }
  return 1;
}

/* _websocket.utf8(s) -> whether s is valid UTF-8 (what utf8.len accepts) */
static int ws_utf8(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, valid_utf8((const unsigned char *)s, n));
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
  {"parse", ws_parse},
  {"frame", ws_frame},
  {"utf8", ws_utf8},
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
