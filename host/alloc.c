/* The default Lua allocator of a runtime, chosen by measurement (bench/alloc.sh, issue 17):
 * malloc, counting the bytes Lua holds, with malloc_trim once they fall under a quarter of
 * their high-water mark, so that memory freed after a burst goes back to the system
 * (CORIO_ALLOC=trim, the default).
 *
 * The alternative kept behind CORIO_ALLOC=pool: small blocks (up to 1 KiB, the coroutines,
 * task records, closures and tables that tasks are made of) from per-size free lists carved
 * out of large arenas backed by transparent huge pages; larger blocks from malloc. It spawns
 * a burst of 100,000 tasks ~20 % faster (fewer page faults), but freed small blocks stay in
 * their size class and are never returned: after a burst the process keeps its peak, and a
 * workload that shifts from one size class to another runs out of memory with most of it
 * free (under 300 MiB: 41,000 tasks after filling with tables, 193,000 fresh; malloc:
 * 238,000 both ways). Lua passes the old size to every free and realloc, so blocks need no
 * header. CORIO_ALLOC=system is plain malloc (a sanitizer build uses it too, so that ASan and
 * valgrind see every block). */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "runtime.h"

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

/* Below this high-water mark, memory is not worth a trim. */
#define TRIM_MIN ((size_t)4 << 20)

struct corio_pool {
  int trim;                  /* malloc, with a trim after the heap shrank (no pooling) */
  size_t in_use, high;       /* (trim) bytes Lua holds, and the most since the last trim */
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

/* malloc, counting the bytes Lua holds. When they fall under a quarter of their high-water
 * mark, malloc_trim gives the free pages inside the heap back to the system (glibc's free
 * only gives back the top of the heap, so after a burst the rest stays resident for good).
 * The mark then restarts from what is in use, so a trim costs at most one walk of the free
 * lists per fourfold shrink. */
static void *trim_alloc(corio_pool *p, void *ptr, size_t osize, size_t nsize) {
  if (nsize == 0) {
    free(ptr);
    p->in_use -= osize;
    if (p->high > TRIM_MIN && p->in_use < p->high / 4) {
      malloc_trim(0);
      p->high = p->in_use;
    }
    return NULL;
  }
  void *n = realloc(ptr, nsize);
  if (!n) return NULL;
  p->in_use += nsize - osize;
  if (p->in_use > p->high) p->high = p->in_use;
  return n;
}

void *corio__pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  corio_pool *p = ud;
  if (ptr == NULL) osize = 0;  /* then osize only tells the kind of object */
  if (p->trim) return trim_alloc(p, ptr, osize, nsize);
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
  corio_pool *p = calloc(1, sizeof(corio_pool));
  if (p && !(mode && strcmp(mode, "pool") == 0)) {
    p->trim = 1;
    /* glibc moves the top of its heap a little at a time: it grows it by 128 KiB past what
     * an allocation needs and gives it back once 128 KiB are free there. Under a steady load
     * whose collector frees and reallocates in cycles, the top went down and up thousands
     * of times (a WebSocket echo server: 500 to 3,500 brk calls and 5,000 to 67,000 page
     * faults in 3 s; with these settings 8 calls and under 2,000 faults, every run). So the
     * heap grows 1 MiB at a time (pages not touched cost nothing) and glibc gives back only
     * 8 MiB free at the top: trim_alloc gives memory back itself once the Lua heap shrank.
     * Setting these freezes glibc's mmap threshold, which would otherwise rise with the
     * blocks a program frees, so it is set too: blocks under 4 MiB come from the heap, not
     * from an mmap each (with a moving threshold, a bulk transfer's ~128 KiB reads landed at
     * the top of the heap, were trimmed and faulted back in page by page: 20,000-140,000
     * faults per GiB received, bench/net/bulk.sh). Process-wide: an embedder that wants
     * glibc's defaults sets CORIO_ALLOC=system. */
    mallopt(M_TOP_PAD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
  }
  return p;
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
