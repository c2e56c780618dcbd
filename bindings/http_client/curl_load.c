/* libcurl, loaded with dlopen on the first require of corio._http_client: a corio that never
 * makes an HTTP request never pays for loading it, and one without libcurl still runs. */
#include <dlfcn.h>
#include <string.h>

#include "http_client.h"

struct corio_curl_api corio__curl;

#define SYMBOL(field, name) {(void **)&corio__curl.field, name}

const char *corio__curl_load(void) {
  static const struct { void **slot; const char *name; } syms[] = {
    SYMBOL(global_init, "curl_global_init"),
    SYMBOL(easy_strerror, "curl_easy_strerror"),
    SYMBOL(easy_init, "curl_easy_init"),
    SYMBOL(easy_setopt, "curl_easy_setopt"),
    SYMBOL(easy_getinfo, "curl_easy_getinfo"),
    SYMBOL(easy_pause, "curl_easy_pause"),
    SYMBOL(easy_cleanup, "curl_easy_cleanup"),
    SYMBOL(multi_init, "curl_multi_init"),
    SYMBOL(multi_setopt, "curl_multi_setopt"),
    SYMBOL(multi_add_handle, "curl_multi_add_handle"),
    SYMBOL(multi_remove_handle, "curl_multi_remove_handle"),
    SYMBOL(multi_socket_action, "curl_multi_socket_action"),
    SYMBOL(multi_assign, "curl_multi_assign"),
    SYMBOL(multi_info_read, "curl_multi_info_read"),
    SYMBOL(multi_cleanup, "curl_multi_cleanup"),
    SYMBOL(multi_strerror, "curl_multi_strerror"),
    SYMBOL(slist_append, "curl_slist_append"),
    SYMBOL(slist_free_all, "curl_slist_free_all"),
    SYMBOL(share_init, "curl_share_init"),
    SYMBOL(share_setopt, "curl_share_setopt"),
    SYMBOL(share_cleanup, "curl_share_cleanup"),
    SYMBOL(url, "curl_url"),
    SYMBOL(url_set, "curl_url_set"),
    SYMBOL(url_get, "curl_url_get"),
    SYMBOL(url_cleanup, "curl_url_cleanup"),
    SYMBOL(free, "curl_free"),
    SYMBOL(version_info, "curl_version_info"),
  };
  static char msg[256];
  if (corio__curl.lib) return NULL;
  void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(msg, sizeof msg, "corio.http needs libcurl (libcurl.so.4, Debian package "
             "libcurl4): %s", dlerror());
    return msg;
  }
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *f = dlsym(lib, syms[i].name);
    if (!f) {
      snprintf(msg, sizeof msg, "corio.http: libcurl.so.4 lacks %s (libcurl 7.80 or later "
               "is needed)", syms[i].name);
      dlclose(lib);
      return msg;
    }
    /* POSIX guarantees that a data pointer from dlsym converts to a function pointer. */
    memcpy(syms[i].slot, &f, sizeof f);
  }
  if (corio__curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    dlclose(lib);
    return "corio.http: curl_global_init failed";
  }
  corio__curl.lib = lib;
  return NULL;
}
