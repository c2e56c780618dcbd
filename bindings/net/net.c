/* corio.net's mechanism: TCP and Unix-socket connections and listeners, standard streams.
 * Names, happy eyeballs and serve's task per connection are policy, in scripts/corio/net.lua.
 * Lua module "corio._net": connect, connect_unix, listen, stdio, udp, getaddrinfo, getnameinfo;
 * class corio.net.Listener (accept, close, port, sockname). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net.h"

#define LISTENER "corio.net.Listener"

/* ---- addresses ----------------------------------------------------------------------------- */

int corio__net_parse_addr(const char *host, int port, struct sockaddr_storage *ss) {
  char buf[64];
  size_t n = strlen(host);
  memset(ss, 0, sizeof *ss);
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
    memcpy(buf, host + 1, n - 2);
    buf[n - 2] = '\0';
    host = buf;
  }
  if (strchr(host, ':')) return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

static int addr_ip(const struct sockaddr *sa, char *ip, size_t n, int *port) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    *port = ntohs(a->sin6_port);
    return uv_ip6_name(a, ip, n);
  }
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    *port = ntohs(a->sin_port);
    return uv_ip4_name(a, ip, n);
  }
  return UV_EAFNOSUPPORT;
}

void corio__net_push_addr(lua_State *L, const struct sockaddr *sa, int with_port) {
  char ip[64];
  int port = 0;
  if (addr_ip(sa, ip, sizeof ip, &port) != 0) {
    lua_pushnil(L);
  } else if (!with_port) {
    lua_pushstring(L, ip);
  } else {
    lua_pushfstring(L, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
  }
}

void corio__net_push_ip_port(lua_State *L, const struct sockaddr *sa) {
  char ip[64];
  int port = 0;
  if (addr_ip(sa, ip, sizeof ip, &port) != 0) {
    lua_pushnil(L);
    lua_pushnil(L);
    return;
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
}

/* ---- restoring shared descriptors' flags at exit ------------------------------------------- */

static int exit_flags[3] = {-1, -1, -1};

static void restore_at_exit(void) {
  for (int fd = 0; fd < 3; fd++)
    if (exit_flags[fd] >= 0) fcntl(fd, F_SETFL, exit_flags[fd]);
}

void corio__net_at_exit(int fd, int flags) {
  static int registered;
  if (fd < 0 || fd > 2) return;
  if (exit_flags[fd] < 0) exit_flags[fd] = flags;
  if (!registered) {
    registered = 1;
    atexit(restore_at_exit);
  }
}

/* ---- connect ------------------------------------------------------------------------------- */

static int check_port(lua_State *L, int idx) {
  lua_Integer port = luaL_checkinteger(L, idx);
  luaL_argcheck(L, port >= 0 && port < 65536, idx, "port out of range");
  return (int)port;
}

/* corio._net.connect(ip, port [, local_ip]) -> stream | nil, msg, code  [suspends]
 * A numeric address only: net.lua resolves names and races the addresses. */
static int net_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = check_port(L, 2);
  const char *local = luaL_optstring(L, 3, NULL);
  struct sockaddr_storage ss, ls;
  char target[112];
  snprintf(target, sizeof target, strchr(host, ':') && host[0] != '[' ? "[%s]:%d" : "%s:%d",
           host, port);
  int r = corio__net_parse_addr(host, port, &ss);
  if (r == 0 && local) r = corio__net_parse_addr(local, 0, &ls);
  if (r < 0) return corio__fail(L, "connect", target, r);
  corio__check_suspend(L, "connect");
  lua_settop(L, 0);
  corio_stream *s = corio__stream_new(L, CORIO_STREAM_TCP, ss.ss_family, &r);
  if (!s) return corio__fail(L, "connect", target, r);
  corio__stream_set_name(s, target);
  if (local) {
    r = uv_tcp_bind((uv_tcp_t *)corio__stream_uv(s), (struct sockaddr *)&ls, 0);
    if (r < 0) {
      corio__stream_close(s, 1);
      return corio__fail(L, "connect", target, r);
    }
  }
  return corio__stream_connect(L, s, (struct sockaddr *)&ss, NULL);
}

/* corio._net.connect_unix(path) -> stream | nil, msg, code  [suspends] */
static int net_connect_unix(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int r;
  corio__check_suspend(L, "connect");
  corio_stream *s = corio__stream_new(L, CORIO_STREAM_PIPE, 0, &r);
  if (!s) return corio__fail(L, "connect", path, r);
  corio__stream_set_name(s, path);
  lua_replace(L, 1); /* the path stays valid: uv_pipe_connect copies it */
  lua_settop(L, 1);
  return corio__stream_connect(L, s, NULL, path);
}

/* ---- listeners ----------------------------------------------------------------------------- */

typedef struct listener {
  corio_handle base;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  corio_runtime *rt;
  corio_waiter acc;
  int is_pipe;
  int pending; /* libuv holds one accepted connection for us (it stops accepting meanwhile) */
  int err;     /* an accept error not yet reported */
  size_t limit;
  char name[112];
} listener;

static void connection_cb(uv_stream_t *server, int status) {
  listener *l = container_of(server, listener, u.stream);
  if (status < 0) l->err = status;
  else l->pending = 1;
  if (l->acc.task) corio__waiter_wake(l->rt, &l->acc, 0);
}

/* corio.ps's reason: "accept tcp 127.0.0.1:8080" (the port bound, not the one asked for, which
 * may be 0), "accept unix /run/app.sock" */
static void accept_describe(lua_State *L, corio_waiter *w, const char *op) {
  listener *l = container_of(w, listener, acc);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (l->is_pipe) {
    lua_pushfstring(L, "%s unix %s", op, l->name);
  } else if (uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len) == 0) {
    corio__net_push_addr(L, (struct sockaddr *)&ss, 1);
    lua_pushfstring(L, "%s tcp %s", op, lua_tostring(L, -1));
    lua_remove(L, -2);
  } else {
    lua_pushfstring(L, "%s tcp %s", op, l->name);
  }
}

static listener *check_listener(lua_State *L, const char *op) {
  return (listener *)corio__box_check(L, 1, LISTENER, op);
}

/* Build the accepted stream, or the failure, for the listener at index 1. */
static int accept_result(lua_State *L, listener *l) {
  if (l->err) {
    int err = l->err;
    l->err = 0;
    return corio__fail(L, "accept", l->name, err);
  }
  int r;
  corio_stream *s = corio__stream_new(L, l->is_pipe ? CORIO_STREAM_PIPE : CORIO_STREAM_TCP,
                                      l->is_pipe ? 0 : AF_UNSPEC, &r);
  if (!s) return corio__fail(L, "accept", l->name, r);
  l->pending = 0;
  r = uv_accept(&l->u.stream, corio__stream_uv(s));
  if (r < 0) {
    corio__stream_close(s, 1);
    return corio__fail(L, "accept", l->name, r);
  }
  corio__stream_set_limit(s, l->limit);
  if (l->is_pipe) {
    corio__stream_set_name(s, l->name);
  } else {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername((uv_tcp_t *)corio__stream_uv(s), (struct sockaddr *)&ss, &len) == 0)
      corio__stream_name_peer(s, (struct sockaddr *)&ss);
    else
      corio__stream_set_name(s, "tcp");
  }
  return 1;
}

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  corio_box *b = luaL_checkudata(L, 1, LISTENER);
  listener *l = (listener *)b->h;
  (void)status;
  (void)ctx;
  lua_settop(L, 1);
  if (!l || l->base.closing) return corio__fail(L, "accept", "listener", UV_ECANCELED);
  if (!l->pending && !l->err) return corio__waiter_await(L, &l->acc, "accept", accept_k, 0);
  return accept_result(L, l);
}

/* listener:accept() -> stream | nil, msg, code  [suspends until a connection arrives]
 * A cancelled accept takes nothing: the connection waits in the backlog for the next one. */
static int listener_accept(lua_State *L) {
  listener *l = check_listener(L, "accept");
  if (corio__waiter_busy(&l->acc))
    return luaL_error(L, "accept %s: busy: another task is accepting", l->name);
  lua_settop(L, 1);
  if (l->pending || l->err) return accept_result(L, l);
  corio__check_suspend(L, "accept");
  return corio__waiter_await(L, &l->acc, "accept", accept_k, 0);
}

/* listener:close(): stop accepting (idempotent); a task in accept gets nil, msg, "ECANCELED". */
static int listener_close(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, LISTENER);
  listener *l = (listener *)b->h;
  if (!l || l->base.closing) return 0;
  if (l->acc.task) corio__waiter_wake(l->rt, &l->acc, UV_ECANCELED);
  corio__box_close(&l->base);
  return 0;
}

static int listener_index(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, LISTENER);
  listener *l = (listener *)b->h;
  const char *k = lua_tostring(L, 2);
  if (k && l && !l->base.closing && !l->is_pipe &&
      (strcmp(k, "port") == 0 || strcmp(k, "sockname") == 0)) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
    if (k[0] == 'p') {
      corio__net_push_ip_port(L, (struct sockaddr *)&ss);
      return 1;
    }
    corio__net_push_addr(L, (struct sockaddr *)&ss, 1);
    return 1;
  }
  if (k && strcmp(k, "closed") == 0) return lua_pushboolean(L, !l || l->base.closing), 1;
  if (k && l && !l->base.closing && l->is_pipe && strcmp(k, "sockname") == 0)
    return lua_pushstring(L, l->name), 1;
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int listener_tostring(lua_State *L) {
  corio_box *b = luaL_checkudata(L, 1, LISTENER);
  listener *l = (listener *)b->h;
  if (l && !l->base.closing) lua_pushfstring(L, "corio.net.Listener (%s)", l->name);
  else lua_pushliteral(L, "corio.net.Listener (closed)");
  return 1;
}

static int opt_int(lua_State *L, int t, const char *k, int dflt) {
  lua_getfield(L, t, k);
  int v = lua_isnil(L, -1) ? dflt : (int)luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int tcp_setup(listener *l, const char *host, int port, int reuseport) {
  struct sockaddr_storage ss;
  int r = corio__net_parse_addr(host, port, &ss);
  if (r < 0) return r;
  r = uv_tcp_init_ex(corio__loop(l->rt), &l->u.tcp, ss.ss_family);
  if (r < 0) return r;
  l->base.uv = &l->u.handle; /* initialised: from here the handle must be closed */
  if (reuseport) {
    uv_os_fd_t fd;
    int on = 1;
    if (uv_fileno(&l->u.handle, &fd) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
      return uv_translate_sys_error(errno);
  }
  return uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&ss, 0);
}

/* corio._net.listen{host=, port=, path=, backlog=511, reuseport=, limit=}
 *   -> listener | nil, msg, code */
static int net_listen(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "path");
  const char *path = lua_tostring(L, -1);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  int port = opt_int(L, 1, "port", 0);
  int backlog = opt_int(L, 1, "backlog", 511);
  int limit = opt_int(L, 1, "limit", 65536);
  lua_getfield(L, 1, "reuseport");
  int reuseport = lua_toboolean(L, -1);
  lua_pop(L, 1);
  luaL_argcheck(L, port >= 0 && port < 65536, 1, "port out of range");
  luaL_argcheck(L, limit > 0, 1, "limit must be positive");
  corio_box *b = corio__box_new(L, LISTENER);
  listener *l = calloc(1, sizeof *l);
  if (!l) return corio__nomem(L);
  l->rt = corio__rt(L);
  l->acc.describe = accept_describe;
  l->is_pipe = path != NULL;
  l->limit = (size_t)limit;
  char target[112];
  if (path) snprintf(target, sizeof target, "%s", path);
  else corio__host_port(target, sizeof target, host, port);
  snprintf(l->name, sizeof l->name, "%s", target);
  int r;
  if (path) {
    r = uv_pipe_init(corio__loop(l->rt), &l->u.pipe, 0);
    if (r == 0) {
      l->base.uv = &l->u.handle;
      r = uv_pipe_bind(&l->u.pipe, path);
    }
  } else {
    r = tcp_setup(l, host, port, reuseport);
  }
  if (r == 0) r = uv_listen(&l->u.stream, backlog, connection_cb);
  if (r < 0) {
    if (l->base.uv) {
      corio__box_attach(b, &l->base, &l->u.handle, NULL);
      corio__box_close(&l->base);
    } else {
      free(l);
    }
    return corio__fail(L, "listen", target, r);
  }
  corio__box_attach(b, &l->base, &l->u.handle, NULL);
  return 1;
}

/* ---- standard streams ---------------------------------------------------------------------- */

/* corio._net.stdio(fd) -> stream | nil, msg, code: a descriptor this process was given (0, 1
 * and 2, or one a parent passed down) as a stream. A terminal, a pipe or a socket is polled; a
 * regular file is read on the thread pool (and written synchronously). */
static int net_stdio(lua_State *L) {
  lua_Integer fdi = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fdi >= 0 && fdi <= 65535, 1, "not a descriptor");
  int fd = (int)fdi;
  char fdname[16];
  static const char *const std[] = {"stdin", "stdout", "stderr"};
  snprintf(fdname, sizeof fdname, "fd %d", fd);
  const char *name = fd <= 2 ? std[fd] : fdname;
  int r, flags = fcntl(fd, F_GETFL);
  if (flags < 0) return corio__fail(L, "open", name, uv_translate_sys_error(errno));
  corio_stream *s;
  switch (uv_guess_handle(fd)) {
    case UV_TTY:
      s = corio__stream_new(L, CORIO_STREAM_TTY, fd, &r);
      break;
    case UV_NAMED_PIPE:
      s = corio__stream_new(L, CORIO_STREAM_PIPE, 0, &r);
      if (s) {
        corio__stream_restore_flags(s, fd);
        r = uv_pipe_open((uv_pipe_t *)corio__stream_uv(s), fd);
      }
      break;
    case UV_TCP:
      s = corio__stream_new(L, CORIO_STREAM_TCP, AF_UNSPEC, &r);
      if (s) {
        corio__stream_restore_flags(s, fd);
        r = uv_tcp_open((uv_tcp_t *)corio__stream_uv(s), fd);
      }
      break;
    default:
      s = corio__stream_new(L, CORIO_STREAM_FILE, fd, &r);
      break;
  }
  if (s && r < 0) {
    corio__stream_close(s, 1);
    s = NULL;
  }
  if (!s) return corio__fail(L, "open", name, r);
  corio__stream_set_name(s, name);
  return 1;
}

/* ---- registration -------------------------------------------------------------------------- */

static const luaL_Reg listener_methods[] = {
  {"accept", listener_accept},
  {"close", listener_close},
  {NULL, NULL}
};

/* corio._net._methods(class) -> the method table of a class (net.lua adds its methods). */
static int net_methods(lua_State *L) {
  const char *cls = luaL_checkstring(L, 1);
  if (luaL_getmetatable(L, cls) != LUA_TTABLE) return luaL_argerror(L, 1, "no such class");
  lua_getfield(L, -1, "__index");
  if (!lua_getupvalue(L, -1, 1)) return luaL_argerror(L, 1, "no method table");
  return 1;
}

static const luaL_Reg net_funcs[] = {
  {"_methods", net_methods},
  {"connect", net_connect},
  {"connect_unix", net_connect_unix},
  {"listen", net_listen},
  {"stdio", net_stdio},
  {NULL, NULL}
};

int luaopen_corio_net(lua_State *L) {
  /* A peer that goes away must cost an EPIPE on its own connection, not the process. */
  signal(SIGPIPE, SIG_IGN);
  corio__stream_class(L);
  if (luaL_newmetatable(L, LISTENER)) {
    lua_newtable(L);
    luaL_setfuncs(L, listener_methods, 0);
    lua_pushcclosure(L, listener_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, corio__box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, listener_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, listener_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, net_funcs);
  corio__udp_open(L);
  corio__dns_open(L);
  return 1;
}
