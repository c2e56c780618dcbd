/* Requests from bytes: one strict llhttp parser per connection, the limits counted in its
 * callbacks, obs-fold rejected. No socket, no timer and no Lua here (but the request's push):
 * the connection (conn.c) acts on what corio__hs_parse returns and on the c->ev_* flags, and
 * fuzz/fuzz_http_request.c feeds it bytes in process. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_server.h"

/* Grow *p to hold need bytes; -1 (and *p unchanged) when memory runs out. */
static int grow(char **p, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 512;
  while (n < need) n *= 2;
  char *q = realloc(*p, n);
  if (!q) return -1;
  *p = q;
  *cap = n;
  return 0;
}

/* ---- parser callbacks ------------------------------------------------------------------ */

static conn *pconn(llhttp_t *p) { return p->data; }

static int reject(conn *c, int status) {
  c->err_status = status;
  return -1;
}

static int append(conn *c, const char *at, size_t n) {
  if (n == 0) return 0; /* an empty span ("CONNECT \r\n"): c->buf may still be NULL */
  if (c->len + n > c->srv->max_header) return reject(c, 431);
  if (grow(&c->buf, &c->cap, c->len + n)) return reject(c, HS_NOMEM);
  memcpy(c->buf + c->len, at, n);
  c->len += n;
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn *c = pconn(p);
  c->got_bytes = 1;
  /* The header deadline starts with the request's first byte (the connection arms it). */
  c->ev_begin = 1;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  if (!c->in_line) {
    c->in_line = 1;
    c->line_from = at;
  }
  if (c->url_len + n > c->srv->max_url) return reject(c, 414);
  c->url_len += (uint32_t)n;
  return append(c, at, n);
}

/* A request line without a version is HTTP/0.9 ("GET /\r\n"): llhttp (strict) waits for
 * more bytes after its line end, and the client would hold the connection until the header
 * deadline. Nobody speaks 0.9 any more: a line end before the version is answered 400 at
 * once (corio__hs_parse looks for it; this callback catches what llhttp reports itself). */
static int on_url_complete(llhttp_t *p) {
  conn *c = pconn(p);
  if (p->http_major == 0 && p->http_minor == 9) return reject(c, 400);
  return 0;
}

static int on_version_complete(llhttp_t *p) {
  pconn(p)->in_line = 0;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  if (c->last_cb != CB_FIELD) {
    if (c->nhdr >= c->srv->max_headers) return reject(c, 431);
    if (c->nhdr == c->hcap) {
      int hcap = c->hcap ? c->hcap * 2 : 16;
      header *h = realloc(c->hdrs, sizeof *c->hdrs * (size_t)hcap);
      if (!h) return reject(c, HS_NOMEM);
      c->hdrs = h;
      c->hcap = hcap;
    }
    header *h = &c->hdrs[c->nhdr++];
    h->name = (uint32_t)c->len;
    h->name_len = h->value = h->value_len = 0;
    c->last_cb = CB_FIELD;
  }
  c->hdrs[c->nhdr - 1].name_len += (uint32_t)n;
  /* names are stored lowercased: lookups are case-insensitive */
  if (append(c, at, n)) return -1;
  for (char *q = c->buf + c->len - n; q < c->buf + c->len; q++)
    if (*q >= 'A' && *q <= 'Z') *q = (char)(*q + 32);
  return 0;
}

/* Whether the bytes before `at`, skipping SP/HT, end a line: a value that starts on a new
 * line is a fold, whether it follows a value or an empty one ("X:\r\n b"), and however the
 * whitespace was split across reads. */
static int lf_before(conn *c, const char *at) {
  const char *q = at;
  while (q > c->exec_start && (q[-1] == ' ' || q[-1] == '\t')) q--;
  if (q > c->exec_start) return q[-1] == '\n' || q[-1] == '\r';
  return c->tail_lf;
}

static void note_tail(conn *c, const char *data, size_t n) {
  const char *q = data + n;
  while (q > data && (q[-1] == ' ' || q[-1] == '\t')) q--;
  if (q > data) c->tail_lf = q[-1] == '\n';
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  /* llhttp 8.1 reports an obs-fold (a line starting with SP/HT) as more value after the
   * value was complete. Folding is obsolete and hides headers from other parsers (the
   * Content-Length smuggling of CVE-2024-27982): reject it. */
  if (c->last_cb == CB_VALUE_DONE || c->nhdr == 0 || lf_before(c, at)) return reject(c, 400);
  header *h = &c->hdrs[c->nhdr - 1];
  if (c->last_cb != CB_VALUE) {
    h->value = (uint32_t)c->len;
    c->last_cb = CB_VALUE;
  }
  h->value_len += (uint32_t)n;
  return append(c, at, n);
}

static int on_header_value_complete(llhttp_t *p) {
  conn *c = pconn(p);
  if (c->last_cb == CB_FIELD) { /* an empty value */
    c->hdrs[c->nhdr - 1].value = (uint32_t)c->len;
  }
  c->last_cb = CB_VALUE_DONE;
  return 0;
}

static header *find_header(conn *c, const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < c->nhdr; i++) {
    header *h = &c->hdrs[i];
    if (h->name_len == n && memcmp(c->buf + h->name, name, n) == 0) return h;
  }
  return NULL;
}

static int value_is(conn *c, header *h, const char *v) {
  size_t n = strlen(v);
  return h->value_len == n && strncasecmp(c->buf + h->value, v, n) == 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn *c = pconn(p);
  server *s = c->srv;
  c->is_head = p->method == HTTP_HEAD;
  c->minor = p->http_major == 1 && p->http_minor == 1;
  if (p->http_major != 1) return reject(c, 505);
  if (p->method == HTTP_CONNECT) return reject(c, 405);
  /* HTTP/1.1 needs exactly one Host (RFC 9112 3.2; nginx and Node answer 400 too) */
  int hosts = 0;
  for (int i = 0; i < c->nhdr; i++)
    hosts += c->hdrs[i].name_len == 4 && memcmp(c->buf + c->hdrs[i].name, "host", 4) == 0;
  if (hosts > 1 || (hosts == 0 && p->http_minor >= 1)) return reject(c, 400);
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->max_body) return reject(c, 413);
  c->state = ST_BODY;
  c->ev_head = 1;
  c->body_expected =
      (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  header *e = find_header(c, "expect");
  if (e) {
    if (!value_is(c, e, "100-continue")) return reject(c, 417);
    /* owed until the handler starts reading the body (body.c), or until body bytes come */
    c->continue_owed = p->http_minor >= 1 && c->body_expected;
  }
  if (c->body_expected) {
    /* The handler may answer before the body's end (its head then says whether the
     * connection stays open), so the connection's fate is known from here on. */
    c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
    c->body_open = 1;
  }
  return 0;
}

/* Body bytes are kept for the handler, which may be running already (body.c reads them from
 * c->body[body_off..body_len)); the connection pauses reading at the high-water mark. */
static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn *c = pconn(p);
  if (c->body_total + n > c->srv->max_body) return reject(c, 413);
  c->body_total += n;
  c->ev_body = 1;
  c->continue_owed = 0; /* the client did not wait for it (RFC 9110 10.1.1 lets us omit it) */
  if (c->draining) return c->body_total > c->drain_limit ? reject(c, HS_DRAINED) : 0;
  if (c->body) {
    uintptr_t a = (uintptr_t)at, end = (uintptr_t)(c->body + c->body_len);
    if (a >= end && a < (uintptr_t)(c->body + c->body_cap)) {
      /* read in place (corio__hs_body_space): the bytes are in the buffer already, behind
       * the ones parsed so far; chunk framing between them is squeezed out */
      if (a != end) memmove(c->body + c->body_len, at, n);
      c->body_len += n;
      return 0;
    }
  }
  if (c->body_off && c->body_len + n > c->body_cap) { /* move the unread part to the front */
    memmove(c->body, c->body + c->body_off, c->body_len - c->body_off);
    c->body_len -= c->body_off;
    c->body_off = 0;
  }
  if (grow(&c->body, &c->body_cap, c->body_len + n)) return reject(c, HS_NOMEM);
  memcpy(c->body + c->body_len, at, n);
  c->body_len += n;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn *c = pconn(p);
  c->body_open = 0;
  c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  c->upgrade = p->upgrade;
  c->state = ST_HANDLING;
  return HPE_PAUSED;
}

static const llhttp_settings_t SETTINGS = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_url_complete = on_url_complete,
  .on_version_complete = on_version_complete,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* ---- the parser's entry points ---------------------------------------------------------- */

void corio__hs_parse_init(conn *c) {
  llhttp_init(&c->parser, HTTP_REQUEST, &SETTINGS);
  c->parser.data = c;
  corio__hs_reset(c);
}

void corio__hs_reset(conn *c) {
  c->len = 0;
  c->url_len = 0;
  c->nhdr = 0;
  c->last_cb = CB_NONE;
  c->head_raw = 0;
  c->body_len = c->body_off = 0;
  c->body_total = 0;
  c->body_err = 0;
  c->body_open = c->body_all = c->body_paused = c->draining = c->continue_owed = 0;
  c->err_status = 0;
  c->got_bytes = 0;
  c->in_line = 0;
  c->is_head = 0;
  c->streaming = 0;
  c->answered = 0;
  /* do not let one big request pin its buffers on an idle connection */
  if (c->cap > 8192) { free(c->buf); c->buf = NULL; c->cap = 0; }
  if (c->body_cap > 65536) { free(c->body); c->body = NULL; c->body_cap = 0; }
  c->state = ST_HEAD;
}

void corio__hs_parse_free(conn *c) {
  free(c->buf);
  free(c->hdrs);
  free(c->body);
  c->buf = c->body = NULL;
  c->hdrs = NULL;
  c->cap = c->body_cap = 0;
  c->hcap = c->nhdr = 0;
}

int corio__hs_parse(conn *c, const char *data, size_t n, size_t *used) {
  c->ev_begin = c->ev_head = c->ev_body = 0;
  *used = n;
  c->exec_start = data;
  llhttp_errno_t err = llhttp_execute(&c->parser, data, n);
  note_tail(c, data, n);
  if (err == HPE_OK) {
    if (c->in_line) { /* HTTP/0.9: a line end in the request line, before any version */
      const char *q = c->line_from >= data && c->line_from < data + n ? c->line_from : data;
      if (memchr(q, '\n', (size_t)(data + n - q)) || memchr(q, '\r', (size_t)(data + n - q))) {
        c->err_status = 400;
        return HS_REJECT;
      }
      c->line_from = NULL; /* the next read scans from its start (the buffer is reused) */
    }
    if (c->state == ST_HEAD && c->got_bytes) {
      /* The head is still incomplete: every byte of this chunk belonged to it. This also
       * catches bytes no callback reports (whitespace, an endless request line). */
      c->head_raw += n;
      server *s = c->srv;
      if (c->head_raw > s->max_header + 4 * (size_t)s->max_headers + 1024) {
        c->err_status = 431;
        return HS_REJECT;
      }
    }
    return HS_MORE;
  }
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    *used = (size_t)(pos - data);
    if (err == HPE_PAUSED_UPGRADE) {
      /* The bytes after the head belong to the new protocol: they wait in c->pending for
       * detach (WebSocket); if the handler answers over HTTP, the connection ends after it. */
      c->keep_alive = 0;
    }
    llhttp_resume(&c->parser);
    c->tail_lf = 0;
    return HS_REQUEST;
  }
  if (!c->err_status) c->err_status = 400;
  return HS_REJECT;
}

/* The origin-form part of an absolute-form target ("http://host:80/p?q" -> "/p?q"; "/" when
 * the authority has no path). RFC 9112 3.2.2: a server must accept the absolute form; the
 * Host header is still required and checked as for any HTTP/1.1 request. */
static size_t origin_form(const char *t, size_t n, size_t *skip) {
  *skip = 0;
  size_t k = 0;
  if (n >= 7 && strncasecmp(t, "http://", 7) == 0) k = 7;
  else if (n >= 8 && strncasecmp(t, "https://", 8) == 0) k = 8;
  else return n;
  while (k < n && t[k] != '/' && t[k] != '?') k++;
  *skip = k;
  return n - k;
}

/* Push the request of c: conn, method, target, headers, http11, remote.
 * headers is a flat list {name1, value1, name2, value2, ...} with lowercased names. */
void corio__hs_push_request(lua_State *L, conn *c) {
  luaL_checkstack(L, 10, NULL);
  lua_pushlightuserdata(L, c);
  lua_pushstring(L, llhttp_method_name((llhttp_method_t)c->parser.method));
  size_t skip, tl = origin_form(c->buf, c->url_len, &skip);
  if (tl == 0) lua_pushliteral(L, "/");
  else if (c->buf[skip] == '?') { /* "http://h?q": the path is "/" */
    lua_pushliteral(L, "/");
    lua_pushlstring(L, c->buf + skip, tl);
    lua_concat(L, 2);
  } else lua_pushlstring(L, c->buf + skip, tl);
  lua_createtable(L, c->nhdr * 2, 0);
  for (int i = 0; i < c->nhdr; i++) {
    header *h = &c->hdrs[i];
    lua_pushlstring(L, c->buf + h->name, h->name_len);
    lua_rawseti(L, -2, 2 * i + 1);
    lua_pushlstring(L, c->buf + h->value, h->value_len);
    lua_rawseti(L, -2, 2 * i + 2);
  }
  lua_pushboolean(L, c->minor);
  lua_pushstring(L, c->remote);
}
