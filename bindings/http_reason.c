/* The HTTP reason phrases: one table, complete for the status codes registered with IANA
 * (RFC 9110 and the RFCs that added codes since), plus 418 (RFC 2324, kept by RFC 9110 as
 * reserved). The server's status lines use corio__http_reason; Lua (corio.web, corio.http)
 * uses this module, so the two halves never disagree.
 * Lua module "corio._http_reason": reasons ({[code] = phrase}), reason(code) -> phrase | nil. */
#include "binding.h"
#include "http_reason.h"

#define MAX_STATUS 600

static const char *const PHRASES[MAX_STATUS] = {
  [100] = "Continue",
  [101] = "Switching Protocols",
  [102] = "Processing",
  [103] = "Early Hints",
  [200] = "OK",
  [201] = "Created",
  [202] = "Accepted",
  [203] = "Non-Authoritative Information",
  [204] = "No Content",
  [205] = "Reset Content",
  [206] = "Partial Content",
  [207] = "Multi-Status",
  [208] = "Already Reported",
  [226] = "IM Used",
  [300] = "Multiple Choices",
  [301] = "Moved Permanently",
  [302] = "Found",
  [303] = "See Other",
  [304] = "Not Modified",
  [305] = "Use Proxy",
  [307] = "Temporary Redirect",
  [308] = "Permanent Redirect",
  [400] = "Bad Request",
  [401] = "Unauthorized",
  [402] = "Payment Required",
  [403] = "Forbidden",
  [404] = "Not Found",
  [405] = "Method Not Allowed",
  [406] = "Not Acceptable",
  [407] = "Proxy Authentication Required",
  [408] = "Request Timeout",
  [409] = "Conflict",
  [410] = "Gone",
  [411] = "Length Required",
  [412] = "Precondition Failed",
  [413] = "Content Too Large",
  [414] = "URI Too Long",
  [415] = "Unsupported Media Type",
  [416] = "Range Not Satisfiable",
  [417] = "Expectation Failed",
  [418] = "I'm a teapot",
  [421] = "Misdirected Request",
  [422] = "Unprocessable Content",
  [423] = "Locked",
  [424] = "Failed Dependency",
  [425] = "Too Early",
  [426] = "Upgrade Required",
  [428] = "Precondition Required",
  [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large",
  [451] = "Unavailable For Legal Reasons",
  [500] = "Internal Server Error",
  [501] = "Not Implemented",
  [502] = "Bad Gateway",
  [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
  [506] = "Variant Also Negotiates",
  [507] = "Insufficient Storage",
  [508] = "Loop Detected",
  [510] = "Not Extended",
  [511] = "Network Authentication Required",
};

const char *corio__http_reason(int status) {
  return status >= 0 && status < MAX_STATUS ? PHRASES[status] : NULL;
}

/* corio._http_reason.reason(code) -> phrase | nil */
static int l_reason(lua_State *L) {
  lua_Integer code = luaL_checkinteger(L, 1);
  const char *r = code >= 0 && code < MAX_STATUS ? PHRASES[code] : NULL;
  if (r) lua_pushstring(L, r);
  else lua_pushnil(L);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"reason", l_reason},
  {NULL, NULL}
};

int luaopen_corio_http_reason(lua_State *L) {
  luaL_newlib(L, funcs);
  lua_createtable(L, 0, 64);
  for (int code = 0; code < MAX_STATUS; code++) {
    if (!PHRASES[code]) continue;
    lua_pushstring(L, PHRASES[code]);
    lua_rawseti(L, -2, code);
  }
  lua_setfield(L, -2, "reasons");
  return 1;
}
