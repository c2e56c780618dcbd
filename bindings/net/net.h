/* corio.net's private header: what its files (stream.c, stream_addr.c, net.c, udp.c, dns.c)
 * share beyond the stream API of stream.h. */
#ifndef CORIO_NET_NET_H
#define CORIO_NET_NET_H

#include <sys/socket.h>

#include "stream.h"

/* A numeric address (IPv4 or IPv6, optionally "[v6]") and a port into *ss; 0 or UV_EINVAL. */
int corio__net_parse_addr(const char *host, int port, struct sockaddr_storage *ss);
/* Push "ip:port" ("[ip]:port" for IPv6) when with_port, else "ip". */
void corio__net_push_addr(lua_State *L, const struct sockaddr *sa, int with_port);
/* Push ip, port (two values). */
void corio__net_push_ip_port(lua_State *L, const struct sockaddr *sa);
/* Restore fd's flags to `flags` at exit, should the stream never be closed. */
void corio__net_at_exit(int fd, int flags);

/* Name s after its peer, in messages (an accepted connection; stream_addr.c). */
void corio__stream_name_peer(corio_stream *s, const struct sockaddr *peer);

/* Connect s (a fresh TCP or pipe stream, on the top of the stack) to addr or path.
 * `return`s the stream or nil, msg, code  [suspends; cancelling closes the stream] */
int corio__stream_connect(lua_State *L, corio_stream *s, const struct sockaddr *addr,
                          const char *path);

void corio__udp_open(lua_State *L); /* adds udp to the module table on the top */
void corio__dns_open(lua_State *L); /* adds getaddrinfo, getnameinfo */

#endif
