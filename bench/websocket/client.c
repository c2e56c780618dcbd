/* The load generator of bench/websocket/run.sh: WebSocket echo clients in one thread (epoll),
 * the same for every server. Each connection sends a masked text message, waits for the
 * echo, sends the next (one message in flight per connection, as wrk's requests).
 *
 *   client echo PORT CONNS SECS [SIZE=64 [WARMUP=1]]
 *     -> "msgs/s messages client-cpu%" for the SECS after WARMUP seconds
 *   client hold PORT CONNS SECS
 *     -> opens CONNS connections (handshake done), prints "ready", holds them SECS seconds
 *
 * Why C: a message costs it one read and one write of a frame prepared once (the masking key
 * is fixed, so is the masked payload), a few hundred nanoseconds: it runs far below one CPU
 * while the servers saturate theirs, and the client-cpu% it prints shows it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  size_t have;           /* bytes of the current incoming frame read so far */
  unsigned char hdr[14]; /* its header, while incomplete */
  size_t hlen, need;     /* header bytes held; payload bytes still to come (0: header) */
} conn;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Connect and upgrade; returns the descriptor (blocking until the 101 has arrived). */
static int open_ws(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   port);
  if (write(fd, req, (size_t)n) != n) die("write handshake");
  char resp[2048];
  size_t got = 0;
  while (got < sizeof resp - 1) {
    ssize_t r = read(fd, resp + got, 1); /* byte by byte: nothing past the head is eaten */
    if (r <= 0) die("read handshake");
    got++;
    if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0) break;
  }
  resp[got] = 0;
  if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
    fprintf(stderr, "no upgrade: %s\n", resp);
    exit(1);
  }
  return fd;
}

/* Feed n bytes of server frames to c; returns how many whole messages they completed. */
static long feed(conn *c, const unsigned char *p, size_t n) {
  long done = 0;
  while (n > 0) {
    if (c->need == 0) { /* reading a header */
      c->hdr[c->hlen++] = *p++;
      n--;
      size_t want = 2;
      if (c->hlen >= 2) {
        unsigned len7 = c->hdr[1] & 0x7f;
        want = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
      }
      if (c->hlen < want) continue;
      unsigned len7 = c->hdr[1] & 0x7f;
      uint64_t len = len7;
      if (len7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
      if (len7 == 127) {
        len = 0;
        for (int i = 2; i < 10; i++) len = (len << 8) | c->hdr[i];
      }
      c->hlen = 0;
      if (len == 0) {
        done++;
        continue;
      }
      c->need = len;
    } else {
      size_t take = n < c->need ? n : c->need;
      c->need -= take;
      p += take;
      n -= take;
      if (c->need == 0) done++; /* (no server here fragments a 64-byte echo) */
    }
  }
  return done;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s echo|hold PORT CONNS SECS [SIZE [WARMUP]]\n", argv[0]);
    return 2;
  }
  int hold = strcmp(argv[1], "hold") == 0;
  int port = atoi(argv[2]), nconns = atoi(argv[3]);
  double secs = atof(argv[4]);
  size_t size = argc > 5 ? (size_t)atoi(argv[5]) : 64;
  double warmup = argc > 6 ? atof(argv[6]) : 1;
  if (size > 125) {
    fprintf(stderr, "size: at most 125 bytes\n");
    return 2;
  }
  conn *cs = calloc((size_t)nconns, sizeof *cs);
  for (int i = 0; i < nconns; i++) cs[i].fd = open_ws(port);
  if (hold) {
    printf("ready\n");
    fflush(stdout);
    usleep((useconds_t)(secs * 1e6));
    return 0;
  }

  /* the frame: FIN + text, masked, key 01 02 03 04 */
  unsigned char frame[6 + 125];
  static const unsigned char key[4] = {1, 2, 3, 4};
  frame[0] = 0x81;
  frame[1] = (unsigned char)(0x80 | size);
  memcpy(frame + 2, key, 4);
  for (size_t i = 0; i < size; i++) frame[6 + i] = (unsigned char)('a' + i % 26) ^ key[i % 4];
  size_t flen = 6 + size;

  int ep = epoll_create1(0);
  for (int i = 0; i < nconns; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0) die("epoll_ctl");
    if (write(cs[i].fd, frame, flen) != (ssize_t)flen) die("write");
  }
  unsigned char buf[65536];
  struct epoll_event evs[256];
  double start = now(), t0 = start + warmup, end = t0 + secs, cpu0 = 0;
  long count = 0;
  int counting = 0;
  for (;;) {
    double t = now();
    if (!counting && t >= t0) {
      counting = 1;
      count = 0;
      cpu0 = cpu();
      t0 = t;
    }
    if (t >= end) break;
    int n = epoll_wait(ep, evs, 256, 100);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      ssize_t r = read(c->fd, buf, sizeof buf);
      if (r <= 0) {
        fprintf(stderr, "connection closed by the server\n");
        return 1;
      }
      long done = feed(c, buf, (size_t)r);
      count += done;
      for (long k = 0; k < done; k++)
        if (write(c->fd, frame, flen) != (ssize_t)flen) die("write");
    }
  }
  double wall = now() - t0, used = cpu() - cpu0;
  printf("%.0f %ld %.0f\n", (double)count / wall, count, 100 * used / wall);
  return 0;
}
