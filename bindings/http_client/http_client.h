/* The HTTP client's private header: the libcurl functions (loaded at run time by
 * curl_load.c), the records of a session (Multi) and a request (Transfer), and what the
 * files share: errors.c names failures, options.c turns a request spec into curl options. */
#ifndef CORIO_HTTP_CLIENT_H
#define CORIO_HTTP_CLIENT_H

#include <stdio.h>

#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include "binding.h"

#define MULTI "corio.http.Multi"
#define XFER "corio.http.Transfer"

/* ---- libcurl, loaded at run time (curl_load.c) -------------------------------------------- */

struct corio_curl_api {
  void *lib;
  CURLcode (*global_init)(long);
  const char *(*easy_strerror)(CURLcode);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  CURLcode (*easy_pause)(CURL *, int);
  void (*easy_cleanup)(CURL *);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM *, CURL *);
  CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
  CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
  CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
  CURLMsg *(*multi_info_read)(CURLM *, int *);
  CURLMcode (*multi_cleanup)(CURLM *);
  const char *(*multi_strerror)(CURLMcode);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
  CURLSH *(*share_init)(void);
  CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
  CURLSHcode (*share_cleanup)(CURLSH *);
  CURLU *(*url)(void);
  CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
  CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
  void (*url_cleanup)(CURLU *);
  void (*free)(void *);
  curl_version_info_data *(*version_info)(CURLversion);
};
extern struct corio_curl_api corio__curl;
/* Load libcurl.so.4 and resolve every function we call; NULL on success, else a message. */
const char *corio__curl_load(void);

/* ---- growable byte buffers ------------------------------------------------------------- */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

/* ---- the records ----------------------------------------------------------------------- */

typedef struct multi multi;
typedef struct xfer xfer;

/* One socket curl watches: a handle record with no Lua face, freed by the shared close
 * callback (corio__box_close). */
typedef struct sockctx {
  corio_handle base;       /* first: the record corio__box_close frees */
  uv_poll_t poll;
  curl_socket_t fd;
  int events;              /* the UV_ events being watched */
  multi *m;
  struct sockctx *next, **pprev;
} sockctx;

/* curl's timer: a handle record of its own, so that __gc can close it and libuv can finish
 * with it afterwards. */
typedef struct mtimer {
  corio_handle base;
  uv_timer_t t;
  multi *m;
} mtimer;

/* A session's engine (userdata "corio.http.Multi"). */
struct multi {
  CURLM *cm;
  CURLSH *share;           /* cookies shared by the session's transfers, or NULL */
  mtimer *timer;
  corio_runtime *rt;
  sockctx *socks;          /* sockets being polled */
  xfer *active;            /* transfers added to cm */
  int nactive;
  long connects;           /* connections opened, summed over finished transfers */
  long requests;
  int closed;
};

enum { /* xfer->state */
  X_NEW, X_ACTIVE, X_DONE
};

enum { /* xfer->want: what wakes the waiting task */
  W_DONE = 1,   /* only completion */
  W_DATA = 2    /* body bytes too (stream mode) */
};

/* Our own failures, beside CURLcode values. */
#define X_IDLE_TIMEOUT (-1)
#define X_CLOSED (-2)
#define X_NOMEM (-3)

/* One request (userdata "corio.http.Transfer"); user value 1: the multi, 2: the body string
 * curl reads from (POSTFIELDS does not copy it). Anchored while added to the multi. */
struct xfer {
  CURL *easy;
  multi *m;
  corio_waiter w;          /* the task waiting for want */
  xfer *next, **pprev;     /* in m->active */
  struct curl_slist *headers;
  FILE *upload;            /* body read from a file */
  buf head, body;
  corio_timer idle;        /* idle-read timeout */
  double idle_s;
  int ref;                 /* anchor while active */
  int state, want, stream, paused;
  int upload_errno;        /* reading the body file failed with this errno */
  int too_large;           /* the body went past max_size */
  curl_off_t max_size, received;
  int result;              /* CURLcode or X_* once done */
  size_t pause_at;         /* stream mode: pause the transfer above this many buffered bytes */
  char errbuf[CURL_ERROR_SIZE];
};


/* ---- shared between the files ------------------------------------------------------------ */
/* Push nil, "METHOD url: what happened", code for a failed transfer (errors.c). */
int corio__http_push_failure(lua_State *L, xfer *x, const char *method, const char *url);
/* Fill x's easy handle from the spec table at `spec` (options.c). Raises on misuse. */
void corio__http_configure(lua_State *L, xfer *x, int spec, int xidx);
/* curl's data callbacks (http_client.c), set by corio__http_configure */
size_t corio__http_header_cb(char *p, size_t size, size_t n, void *ud);
size_t corio__http_write_cb(char *p, size_t size, size_t n, void *ud);
size_t corio__http_read_file_cb(char *p, size_t size, size_t n, void *ud);

#endif
