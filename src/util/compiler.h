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

/* The small-transfer path: the linker puts such functions together
 * (.text.hot), so that the path's code lies on as few pages as possible.
 * Where a system call flushes the TLB (page-table isolation without
 * PCID), every page a call touches after its transfer costs a page walk. */
#define HMAF_HOT __attribute__((hot))

/* Thread-local, initial-exec: a plain %fs-relative access, not a
 * __tls_get_addr call. */
#define HMAF_TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* HMAF_ASAN / HMAF_SANITIZED: built with AddressSanitizer / with any
 * sanitizer that intercepts libc's calls (ASan, TSan): code that would
 * go around libc keeps to it there, so the sanitizer sees every access. */
#if defined(__SANITIZE_ADDRESS__)
#define HMAF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HMAF_ASAN 1
#endif
#endif
#if defined(HMAF_ASAN) || defined(__SANITIZE_THREAD__)
#define HMAF_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HMAF_SANITIZED 1
#endif
#endif

#endif
