/* Assertions for the C tests: a failed check prints where and why and exits non-zero. */
#ifndef CORIO_CHECK_H
#define CORIO_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* A corio call that must succeed; on failure, show corio_errmsg. */
#define CHECK_OK(rt, call)                                                             \
  do {                                                                                 \
    int st_ = (call);                                                                  \
    if (st_ != 0) {                                                                    \
      fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call, st_,   \
              corio_errmsg(rt));                                                       \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

#define CHECK_CONTAINS(s, part) CHECK((s) != NULL && strstr((s), (part)) != NULL)

#endif
