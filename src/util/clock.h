/* Monotonic time in nanoseconds; vDSO-backed, no syscall. */
#ifndef HMAF_UTIL_CLOCK_H
#define HMAF_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t hmaf__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The kernel's tick-granular clock (1-4 ms steps): a few ns to read, for
 * decisions that need no finer time. */
static inline uint64_t hmaf__coarse_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t hmaf__deadline_ns(int timeout_ms)
{
    return hmaf__now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) *
                                1000000u;
}

/* Milliseconds left until deadline_ns, rounded up; 0 once it has passed. */
static inline int hmaf__ms_left(uint64_t deadline_ns)
{
    uint64_t now = hmaf__now_ns();

    return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

#endif
