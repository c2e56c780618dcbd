/* Name resolution on libuv's thread pool: getaddrinfo and getnameinfo.
 * Functions of "corio._net": getaddrinfo(host [, port [, {family=, socktype=}]]),
 * getnameinfo(ip [, port]). */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define DNSREQ "corio.net.DnsRequest"

/* One request: a full userdata the loop anchors until libuv's callback (which runs once, also
 * after uv_cancel); the waiting task's stack holds it too. */
typedef struct dnsreq {
  union {
    uv_getaddrinfo_t gai;
    uv_getnameinfo_t gni;
  } u;
  corio_runtime *rt;
  corio_waiter w;
  struct addrinfo *res; /* getaddrinfo's result until the continuation converts it */
  int ref;              /* the loop's anchor */
  int status;
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
} dnsreq;

static void release(dnsreq *d, int status) {
  d->status = status;
  corio__unanchor(corio__L(d->rt), d->ref);
  d->ref = LUA_NOREF;
  corio__waiter_wake(d->rt, &d->w, status);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  dnsreq *d = container_of(req, dnsreq, u.gai);
  d->res = res;
  release(d, status);
}

static void gni_cb(uv_getnameinfo_t *req, int status, const char *host, const char *service) {
  dnsreq *d = container_of(req, dnsreq, u.gni);
  if (status == 0) {
    snprintf(d->host, sizeof d->host, "%s", host ? host : "");
    snprintf(d->service, sizeof d->service, "%s", service ? service : "");
  }
  release(d, status);
}

static void dns_cancel(lua_State *L, corio_waiter *w) {
  dnsreq *d = container_of(w, dnsreq, w);
  (void)L;
  uv_cancel((uv_req_t *)&d->u); /* may fail if it already runs: its callback still comes */
}

/* corio.ps's reason: "getaddrinfo example.com", "getnameinfo 127.0.0.1" (the name asked
 * about, copied into host when the request starts; gni_cb replaces it once woken) */
static void dns_describe(lua_State *L, corio_waiter *w, const char *op) {
  lua_pushfstring(L, "%s %s", op, container_of(w, dnsreq, w)->host);
}

static int dns_gc(lua_State *L) {
  dnsreq *d = lua_touserdata(L, 1);
  if (d->res) uv_freeaddrinfo(d->res);
  d->res = NULL;
  return 0;
}

static dnsreq *new_req(lua_State *L) {
  dnsreq *d = lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  d->rt = corio__rt(L);
  d->ref = LUA_NOREF;
  d->w.describe = dns_describe;
  luaL_setmetatable(L, DNSREQ);
  d->ref = corio__anchor(L, -1);
  return d;
}

static const char *family_name(int f) {
  return f == AF_INET ? "inet" : f == AF_INET6 ? "inet6" : f == AF_UNIX ? "unix" : "?";
}

/* Lua stack: 1 host, 2 port, 3 opts, 4 the request. */
static int gai_k(lua_State *L, int status, lua_KContext ctx) {
  dnsreq *d = luaL_checkudata(L, 4, DNSREQ);
  (void)status;
  (void)ctx;
  if (d->status < 0) return corio__fail(L, "getaddrinfo", lua_tostring(L, 1), d->status);
  lua_newtable(L);
  int i = 0;
  for (struct addrinfo *a = d->res; a; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    lua_createtable(L, 0, 5);
    corio__net_push_ip_port(L, a->ai_addr);
    lua_setfield(L, -3, "port");
    lua_setfield(L, -2, "addr");
    lua_pushstring(L, family_name(a->ai_family));
    lua_setfield(L, -2, "family");
    lua_pushstring(L, a->ai_socktype == SOCK_DGRAM ? "dgram" : "stream");
    lua_setfield(L, -2, "socktype");
    lua_pushinteger(L, a->ai_protocol);
    lua_setfield(L, -2, "protocol");
    lua_rawseti(L, -2, ++i);
  }
  uv_freeaddrinfo(d->res);
  d->res = NULL;
  return 1;
}

/* net.getaddrinfo(host [, port [, {family = "inet"|"inet6", socktype = "stream"|"dgram"}]])
 *   -> {{addr=, port=, family=, socktype=, protocol=}, ...} | nil, msg, code  [suspends]
 * Runs on libuv's thread pool. Without socktype, stream addresses only (one per address). */
static int dns_getaddrinfo(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  const char *service = NULL;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) == LUA_TNUMBER) luaL_checkinteger(L, 2);
    service = luaL_checkstring(L, 2);
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const fams[] = {"inet", "inet6", "any", NULL};
    static const char *const types[] = {"stream", "dgram", NULL};
    lua_getfield(L, 3, "family");
    int f = luaL_checkoption(L, -1, "any", fams);
    hints.ai_family = f == 0 ? AF_INET : f == 1 ? AF_INET6 : AF_UNSPEC;
    lua_getfield(L, 3, "socktype");
    hints.ai_socktype = luaL_checkoption(L, -1, "stream", types) ? SOCK_DGRAM : SOCK_STREAM;
    lua_pop(L, 2);
  }
  corio__check_suspend(L, "getaddrinfo");
  lua_settop(L, 3);
  dnsreq *d = new_req(L);
  snprintf(d->host, sizeof d->host, "%s", host);
  int r = uv_getaddrinfo(corio__loop(d->rt), &d->u.gai, gai_cb, host, service, &hints);
  if (r < 0) {
    corio__unanchor(L, d->ref);
    d->ref = LUA_NOREF;
    return corio__fail(L, "getaddrinfo", host, r);
  }
  d->w.on_cancel = dns_cancel;
  return corio__waiter_await(L, &d->w, "getaddrinfo", gai_k, 0);
}

/* Lua stack: 1 ip, 2 port, 3 the request. */
static int gni_k(lua_State *L, int status, lua_KContext ctx) {
  dnsreq *d = luaL_checkudata(L, 3, DNSREQ);
  (void)status;
  (void)ctx;
  if (d->status < 0) return corio__fail(L, "getnameinfo", lua_tostring(L, 1), d->status);
  lua_pushstring(L, d->host);
  lua_pushstring(L, d->service);
  return 2;
}

/* net.getnameinfo(ip [, port]) -> host, service | nil, msg, code  [suspends] */
static int dns_getnameinfo(lua_State *L) {
  const char *ip = luaL_checkstring(L, 1);
  lua_Integer port = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, port >= 0 && port < 65536, 2, "port out of range");
  struct sockaddr_storage ss;
  int r = corio__net_parse_addr(ip, (int)port, &ss);
  if (r < 0) return corio__fail(L, "getnameinfo", ip, r);
  corio__check_suspend(L, "getnameinfo");
  lua_settop(L, 2);
  dnsreq *d = new_req(L);
  snprintf(d->host, sizeof d->host, "%s", ip);
  r = uv_getnameinfo(corio__loop(d->rt), &d->u.gni, gni_cb, (struct sockaddr *)&ss, 0);
  if (r < 0) {
    corio__unanchor(L, d->ref);
    d->ref = LUA_NOREF;
    return corio__fail(L, "getnameinfo", ip, r);
  }
  d->w.on_cancel = dns_cancel;
  return corio__waiter_await(L, &d->w, "getnameinfo", gni_k, 0);
}

static const luaL_Reg dns_funcs[] = {
  {"getaddrinfo", dns_getaddrinfo},
  {"getnameinfo", dns_getnameinfo},
  {NULL, NULL}
};

void corio__dns_open(lua_State *L) {
  if (luaL_newmetatable(L, DNSREQ)) {
    lua_pushcfunction(L, dns_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, dns_funcs, 0);
}
