/* Small language helpers shared by every layer. */
#ifndef HMAF_UTIL_COMPILER_H
#define HMAF_UTIL_COMPILER_H

#include <stddef.h>

#define hmaf__container_of(ptr, type, member)                                 \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define HMAF_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HMAF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HMAF_MAX(a, b) ((a) > (b) ? (a) : (b))
#define HMAF_CACHELINE 64

#define hmaf__likely(x) __builtin_expect(!!(x), 1)
#define hmaf__unlikely(x) __builtin_expect(!!(x), 0)

#endif
