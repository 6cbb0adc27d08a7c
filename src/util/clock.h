/* Monotonic time in nanoseconds; vDSO-backed, no syscall. */
#ifndef HMAF_UTIL_CLOCK_H
#define HMAF_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

#include "util/compiler.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HMAF_HAVE_CYCLES 1
#endif

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

/*
 * The coarse clock as this thread last read it, for the small-transfer
 * path: a read of the coarse clock goes through libc to the vDSO and its
 * data page, three or four pages that a system call's TLB flush (page-table
 * isolation without PCID) makes every transfer walk again. The CPU's
 * invariant cycle counter says, without touching memory, whether the
 * thread's last read is younger than HMAF_CLOCK_REUSE_NS; then it stands
 * in for a new one. It is never ahead of the coarse clock (a later read of
 * the same clock) and behind it by that much at most, against the tick
 * (1-4 ms) the coarse clock itself lags.
 */
#define HMAF_CLOCK_REUSE_NS 250000u

struct hmaf__thread_clock {
    uint64_t cycles;      /* the counter when ns was read */
    uint64_t ns;          /* the coarse clock then */
    uint64_t reuse;       /* cycles ns stands for; 0: read every time */
    uint64_t calib_cycles; /* the counter and the fine clock at this */
    uint64_t calib_ns;     /* thread's first read: calibration */
};

extern HMAF_TLS struct hmaf__thread_clock hmaf__thread_clock;

/* Read the coarse clock into the thread's cache (clock.c). */
uint64_t hmaf__coarse_now_ns_read(uint64_t cycles);

static inline uint64_t hmaf__cycles(void)
{
#ifdef HMAF_HAVE_CYCLES
    return __rdtsc();
#else
    return 0;
#endif
}

/* hmaf__coarse_now_ns(), or a read of it at most HMAF_CLOCK_REUSE_NS old. */
static inline uint64_t hmaf__coarse_now_ns_cached(void)
{
    uint64_t cycles = hmaf__cycles();
    const struct hmaf__thread_clock *c = &hmaf__thread_clock;

    /* Unsigned: a counter that went backwards (another CPU's) reads
     * again too. */
    if (hmaf__likely(cycles - c->cycles < c->reuse)) {
        return c->ns;
    }
    return hmaf__coarse_now_ns_read(cycles);
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
