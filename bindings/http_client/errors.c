/* The error vocabulary of the HTTP client: a failed transfer's stable code (documented in
 * scripts/corio/http.lua) and its message, "METHOD url: what happened". */
#include <errno.h>
#include <string.h>

#include "http_client.h"

/* The stable code of a failed transfer (documented in scripts/corio/http.lua). */
static const char *error_code(xfer *x) {
  long oserr = 0, connect_code = 0;
  if (x->upload_errno) return "EIO";
  if (x->too_large) return "ETOOLARGE";
  switch (x->result) {
    case X_IDLE_TIMEOUT: return "ETIMEDOUT";
    case X_CLOSED: return "ECLOSED";
    case X_NOMEM: return "ENOMEM";
    case CURLE_COULDNT_RESOLVE_HOST: return "EDNS";
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PROXY: return "EPROXY";
    case CURLE_COULDNT_CONNECT:
      corio__curl.easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
      if (oserr == ENETUNREACH) return "ENETUNREACH";
      if (oserr == EHOSTUNREACH) return "EHOSTUNREACH";
      return "ECONNREFUSED";
    case CURLE_OPERATION_TIMEDOUT: return "ETIMEDOUT";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED: return "ETLS";
    case CURLE_TOO_MANY_REDIRECTS: return "EREDIRECTS";
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      /* a proxy that refused to open a tunnel answers CONNECT with an error status */
      corio__curl.easy_getinfo(x->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
      if (connect_code >= 300) return "EPROXY";
      return "ECONNRESET";
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: return "ECONNRESET";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL: return "EPROTO";
    case CURLE_FILESIZE_EXCEEDED: return "ETOOLARGE";
    case CURLE_READ_ERROR: return "EIO";
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR: return "ENOMEM";
    default: return "EHTTP";
  }
}

int corio__http_push_failure(lua_State *L, xfer *x, const char *method, const char *url) {
  const char *what;
  char tmp[64];
  if (x->upload_errno) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: reading the body file: %s", method, url, strerror(x->upload_errno));
    lua_pushstring(L, "EIO");
    return 3;
  }
  if (x->too_large) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: the response body is larger than max_size (%I bytes)", method,
                    url, (lua_Integer)x->max_size);
    lua_pushliteral(L, "ETOOLARGE");
    return 3;
  }
  switch (x->result) {
    case X_IDLE_TIMEOUT:
      snprintf(tmp, sizeof tmp, "no data received for %g seconds (idle timeout)", x->idle_s);
      what = tmp;
      break;
    case X_CLOSED: what = "the session was closed"; break;
    case X_NOMEM: what = "out of memory"; break;
    case CURLE_COULDNT_CONNECT: {
      /* The text follows the code. curl keeps the first error of a transfer in errbuf (and
       * may keep an earlier errno): a request on a pooled connection that the server reset
       * while restarting is retried on a fresh connection, and when that one is refused,
       * errbuf still says "Recv failure: Connection reset by peer". */
      const char *code = error_code(x);
      int err = strcmp(code, "ENETUNREACH") == 0    ? ENETUNREACH
                : strcmp(code, "EHOSTUNREACH") == 0 ? EHOSTUNREACH
                                                     : ECONNREFUSED;
      const char *detail = strstr(x->errbuf, "connect") ? x->errbuf
                                                        : corio__curl.easy_strerror(CURLE_COULDNT_CONNECT);
      lua_pushnil(L);
      lua_pushfstring(L, "%s %s: %s (%s)", method, url, strerror(err), detail);
      lua_pushstring(L, code);
      return 3;
    }
    default:
      what = x->errbuf[0] ? x->errbuf : corio__curl.easy_strerror((CURLcode)x->result);
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", method, url, what);
  lua_pushstring(L, error_code(x));
  return 3;
}
