/* A listening socket that accepts nothing itself: web.run_app's supervisor binds it once and
 * every worker process inherits it and serves it (listen{fd = n}). The accept queue belongs
 * to the socket, not to a worker, so a worker that stops accepting (it closes its descriptor)
 * leaves the connections queued there to the others: a reload drops none. (With SO_REUSEPORT,
 * each worker has a queue of its own, and closing it resets what waits in it.)
 * Lua: _http_server.socket{host=, port=, backlog=, reuseport=} -> corio.web.Socket | nil, msg,
 * code; methods fileno, port, close. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http_server.h"

#define SOCKET "corio.web.Socket"

typedef struct lsock {
  corio_handle base; /* first */
  uv_tcp_t tcp;
} lsock;

int corio__hs_bind(uv_tcp_t *tcp, const struct sockaddr *addr, int reuseport) {
  if (reuseport) {
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)tcp, &fd) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      return uv_translate_sys_error(errno);
  }
  return uv_tcp_bind(tcp, addr, 0);
}

int corio__hs_port(uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0) return -1;
  /* sin_port and sin6_port are at the same place */
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* _http_server.socket{host = "127.0.0.1", port = 8080, backlog = 511, reuseport = false}
 *   -> socket | nil, msg, code: bound and listening; libuv never watches it, so no connection
 * is accepted in this process. */
static int l_socket(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  lua_Integer port = luaL_optinteger(L, -1, 8080);
  lua_getfield(L, 1, "backlog");
  int backlog = (int)luaL_optinteger(L, -1, 511);
  lua_getfield(L, 1, "reuseport");
  int reuse = lua_toboolean(L, -1);
  lua_pop(L, 3);
  if (port < 0 || port > 65535) return luaL_error(L, "socket: port %d is out of range", (int)port);
  char target[300];
  corio__host_port(target, sizeof target, host, (int)port);
  struct sockaddr_storage addr;
  int r = strchr(host, ':') ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr)
                            : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr);
  if (r) return corio__fail(L, "listen", target, r);
  corio_box *b = corio__box_new(L, SOCKET);
  lsock *s = calloc(1, sizeof *s);
  if (!s) return corio__nomem(L);
  r = uv_tcp_init_ex(corio__loop(corio__rt(L)), &s->tcp, addr.ss_family);
  if (r) {
    free(s);
    return corio__fail(L, "listen", target, r);
  }
  corio__box_attach(b, &s->base, (uv_handle_t *)&s->tcp, NULL);
  r = corio__hs_bind(&s->tcp, (struct sockaddr *)&addr, reuse);
  uv_os_fd_t fd;
  if (!r) r = uv_fileno((uv_handle_t *)&s->tcp, &fd);
  if (!r && listen(fd, backlog) != 0) r = uv_translate_sys_error(errno);
  if (r) {
    corio__box_close(&s->base);
    return corio__fail(L, "listen", target, r);
  }
  return 1;
}

static lsock *check_socket(lua_State *L) {
  return (lsock *)corio__box_check(L, 1, SOCKET, "socket");
}

/* socket:fileno() -> the descriptor (for process.spawn's fds) */
static int socket_fileno(lua_State *L) {
  lsock *s = check_socket(L);
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t *)&s->tcp, &fd);
  if (r) return corio__fail(L, "fileno", NULL, r);
  lua_pushinteger(L, fd);
  return 1;
}

/* socket:port() -> the port it is bound to (the one the system chose for port 0) */
static int socket_port(lua_State *L) {
  lua_pushinteger(L, corio__hs_port(&check_socket(L)->tcp));
  return 1;
}

/* socket:close(): this process's descriptor; processes that inherited it keep theirs */
static int socket_close(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, SOCKET);
  if (b->h) corio__box_close(b->h);
  return 0;
}

static const luaL_Reg methods[] = {
    {"fileno", socket_fileno}, {"port", socket_port}, {"close", socket_close}, {NULL, NULL}};
static const luaL_Reg meta[] = {{"__gc", corio__box_gc}, {"__close", corio__box_gc}, {NULL, NULL}};
const luaL_Reg corio__hs_socket_funcs[] = {{"socket", l_socket}, {NULL, NULL}};

void corio__hs_socket_class(lua_State *L) {
  corio__class(L, SOCKET, methods, meta);
  lua_pop(L, 1);
}
