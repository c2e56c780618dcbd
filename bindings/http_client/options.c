/* A request spec (a table built by scripts/corio/http.lua) turned into curl options on the
 * transfer's easy handle: checked again here where a mistake would reach curl. */
#include <errno.h>
#include <string.h>

#include "http_client.h"

static const char *opt_string(lua_State *L, int spec, const char *key) {
  lua_getfield(L, spec, key);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);  /* the spec table keeps the string alive */
  return s;
}

static double opt_number(lua_State *L, int spec, const char *key) {
  lua_getfield(L, spec, key);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int spec, const char *key) {
  lua_getfield(L, spec, key);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static void setopt_fail(lua_State *L, CURLcode rc, const char *what) {
  luaL_error(L, "http: %s: %s", what, corio__curl.easy_strerror(rc));
}

#define SETOPT(opt, val)                                                   \
  do {                                                                     \
    CURLcode rc_ = corio__curl.easy_setopt(e, opt, val);                             \
    if (rc_ != CURLE_OK) setopt_fail(L, rc_, #opt);                        \
  } while (0)

/* Fill the easy handle from the spec table (validated by http.lua, checked again here where
 * a mistake would reach curl). Raises on misuse. */
void corio__http_configure(lua_State *L, xfer *x, int spec, int xidx) {
  CURL *e = x->easy;
  const char *method = opt_string(L, spec, "method");
  const char *url = opt_string(L, spec, "url");
  if (!method || !url) luaL_error(L, "http: method and url are required");
  SETOPT(CURLOPT_URL, url);
  SETOPT(CURLOPT_PRIVATE, (void *)x);
  SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
  SETOPT(CURLOPT_HEADERFUNCTION, corio__http_header_cb);
  SETOPT(CURLOPT_HEADERDATA, (void *)x);
  SETOPT(CURLOPT_WRITEFUNCTION, corio__http_write_cb);
  SETOPT(CURLOPT_WRITEDATA, (void *)x);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (x->m->share) {
    SETOPT(CURLOPT_SHARE, x->m->share);
    SETOPT(CURLOPT_COOKIEFILE, "");
  }

  long redirects = (long)opt_number(L, spec, "max_redirects");
  SETOPT(CURLOPT_FOLLOWLOCATION, redirects > 0 ? 1L : 0L);
  if (redirects > 0) {
    SETOPT(CURLOPT_MAXREDIRS, redirects);
    /* 301/302/303 turn a POST into a GET, as browsers, requests and aiohttp do. */
    SETOPT(CURLOPT_POSTREDIR, 0L);
  }
  if (opt_bool(L, spec, "decompress")) SETOPT(CURLOPT_ACCEPT_ENCODING, "");
  double t;
  if ((t = opt_number(L, spec, "timeout")) > 0) SETOPT(CURLOPT_TIMEOUT_MS, (long)(t * 1000 + 0.5));
  if ((t = opt_number(L, spec, "connect_timeout")) > 0)
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)(t * 1000 + 0.5));
  x->idle_s = opt_number(L, spec, "idle_timeout");
  const char *s;
  if ((s = opt_string(L, spec, "ca_file"))) SETOPT(CURLOPT_CAINFO, s);
  if (opt_bool(L, spec, "insecure")) {
    SETOPT(CURLOPT_SSL_VERIFYPEER, 0L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if ((s = opt_string(L, spec, "proxy"))) SETOPT(CURLOPT_PROXY, s);
  /* HTTP/2 is offered over TLS (ALPN) unless http2 = false; cleartext stays HTTP/1.1. */
  SETOPT(CURLOPT_HTTP_VERSION, opt_bool(L, spec, "http1") ? (long)CURL_HTTP_VERSION_1_1
                                                          : (long)CURL_HTTP_VERSION_2TLS);
  if ((t = opt_number(L, spec, "max_size")) > 0) {
    x->max_size = (curl_off_t)t;
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, x->max_size);
  }

  /* Headers: a list of "Name: value" lines, each checked for CR, LF and NUL. */
  lua_getfield(L, spec, "headers");
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      size_t len;
      const char *line = lua_tolstring(L, -1, &len);
      if (!line || strlen(line) != len || strpbrk(line, "\r\n"))
        luaL_error(L, "http: header %d contains CR, LF or NUL (header injection)", (int)i);
      struct curl_slist *h = corio__curl.slist_append(x->headers, line);
      if (!h) corio__nomem(L);
      x->headers = h;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (x->headers) SETOPT(CURLOPT_HTTPHEADER, x->headers);

  /* The method and the body: a string (kept alive as the transfer's user value 2, curl reads
   * it in place) or a file streamed by the read callback. */
  int has_body = 0;
  lua_getfield(L, spec, "body");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *p = lua_tolstring(L, -1, &len);
    lua_setiuservalue(L, xidx, 2);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    SETOPT(CURLOPT_POSTFIELDS, p);
    has_body = 1;
  } else {
    lua_pop(L, 1);
  }
  if ((s = opt_string(L, spec, "body_file"))) {
    x->upload = fopen(s, "rb");
    if (!x->upload) luaL_error(L, "http: body file %s: %s", s, strerror(errno));
    if (fseeko(x->upload, 0, SEEK_END) != 0) luaL_error(L, "http: body file %s: not seekable", s);
    off_t size = ftello(x->upload);
    rewind(x->upload);
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
    SETOPT(CURLOPT_READFUNCTION, corio__http_read_file_cb);
    SETOPT(CURLOPT_READDATA, (void *)x);
    has_body = 1;
  }
  if (strcmp(method, "HEAD") == 0) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "POST") == 0) {
    if (!has_body) SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    if (!has_body) SETOPT(CURLOPT_POSTFIELDS, "");
  } else if (strcmp(method, "GET") == 0 && !has_body) {
    SETOPT(CURLOPT_HTTPGET, 1L);
  } else {
    SETOPT(CURLOPT_CUSTOMREQUEST, method);
  }
}

#undef SETOPT
