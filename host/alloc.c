/* The default Lua allocator of a runtime: small blocks (up to 1 KiB, the coroutines, task
 * records, closures and tables that tasks are made of) come from per-size free lists carved
 * out of large arenas backed by transparent huge pages; larger blocks go to malloc.
 *
 * Why: a burst of 100,000 tasks touches ~140 MB of fresh memory, and with 4 KiB pages the
 * page faults cost more than everything else together (measured: 0.45 s -> 0.15 s for the
 * spawn benchmark). Lua passes the old size to every free and realloc, so blocks need no
 * header. Trade-off: freed small blocks stay in their size class for reuse and are returned
 * to the system only when the runtime closes; a steady server reuses them, a one-off burst
 * keeps its peak. CORIO_ALLOC=system (or a sanitizer build) uses plain malloc instead, so
 * that ASan and valgrind see every block. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core.h"

#define GRAIN 16
#define SMALL_MAX 1024
#define NCLASSES (SMALL_MAX / GRAIN)
#define ARENA_SIZE ((size_t)8 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

typedef struct arena {
  struct arena *next;
  void *map;
  size_t maplen;
} arena;

struct corio_pool {
  void *free[NCLASSES + 1];  /* per class: singly linked free blocks */
  char *bump, *end;          /* the unused tail of the newest arena */
  arena *arenas;
};

static size_t class_of(size_t n) { return (n + GRAIN - 1) / GRAIN; }

static int grow(corio_pool *p) {
  /* Map an arena aligned on a huge page so that the kernel can back it with one. */
  size_t len = ARENA_SIZE + HUGE_PAGE;
  char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) return 0;
  char *start = (char *)(((uintptr_t)map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
#ifdef MADV_HUGEPAGE
  madvise(start, ARENA_SIZE, MADV_HUGEPAGE);
#endif
  /* The head of the arena records the mapping; blocks follow it. */
  arena *a = (arena *)start;
  a->map = map;
  a->maplen = len;
  a->next = p->arenas;
  p->arenas = a;
  /* the old tail (under 1 KiB) is left unused */
  p->bump = start + GRAIN * ((sizeof(arena) + GRAIN - 1) / GRAIN);
  p->end = start + ARENA_SIZE;
  return 1;
}

static void *small_alloc(corio_pool *p, size_t c) {
  void *b = p->free[c];
  if (b) {
    p->free[c] = *(void **)b;
    return b;
  }
  size_t sz = c * GRAIN;
  if ((size_t)(p->end - p->bump) < sz && !grow(p)) return NULL;
  b = p->bump;
  p->bump += sz;
  return b;
}

static void small_free(corio_pool *p, void *b, size_t c) {
  *(void **)b = p->free[c];
  p->free[c] = b;
}

void *corio__pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  corio_pool *p = ud;
  if (ptr == NULL) osize = 0;  /* then osize only tells the kind of object */
  size_t oc = osize <= SMALL_MAX ? class_of(osize) : 0;
  size_t nc = nsize <= SMALL_MAX ? class_of(nsize) : 0;
  if (nsize == 0) {
    if (ptr) {
      if (oc) small_free(p, ptr, oc);
      else free(ptr);
    }
    return NULL;
  }
  if (ptr && oc && oc == nc) return ptr;
  if (ptr && !oc && !nc) return realloc(ptr, nsize);
  void *n = nc ? small_alloc(p, nc) : malloc(nsize);
  if (!n) return NULL;  /* Lua keeps the old block on failure */
  if (ptr) {
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    if (oc) small_free(p, ptr, oc);
    else free(ptr);
  }
  return n;
}

void *corio__system_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

corio_pool *corio__pool_new(void) {
  const char *mode = getenv("CORIO_ALLOC");
#if defined(__SANITIZE_ADDRESS__)  /* gcc */
  if (!mode) mode = "system";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)  /* clang (the fuzz build) */
  if (!mode) mode = "system";
#endif
#endif
  if (mode && strcmp(mode, "system") == 0) return NULL;
  return calloc(1, sizeof(corio_pool));
}

void corio__pool_free(corio_pool *p) {
  if (!p) return;
  arena *a = p->arenas;
  while (a) {
    arena *next = a->next;
    munmap(a->map, a->maplen);
    a = next;
  }
  free(p);
}
