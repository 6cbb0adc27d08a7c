#include "util/clock.h"

#include <stdatomic.h>

#ifdef HMAF_HAVE_CYCLES
#include <cpuid.h>
#endif

/* Fine-clock time over which a thread measures the counter's rate. */
#define CALIBRATION_NS 2000000u

HMAF_TLS struct hmaf__thread_clock hmaf__thread_clock;

/* Counter cycles per HMAF_CLOCK_REUSE_NS, once a thread measured them;
 * 0 until then, UINT64_MAX when the counter is no clock. */
static _Atomic uint64_t reuse_cycles;

/* The counter ticks at a constant rate, in every power state, on every
 * CPU alike (CPUID's invariant TSC): else it tells no time. */
static int cycles_are_a_clock(void)
{
#ifdef HMAF_HAVE_CYCLES
    unsigned a, b, c, d;

    return __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8));
#else
    return 0;
#endif
}

/* Cycles a clock read between two counter reads may take: one that took
 * longer was preempted, and measures nothing. */
#define SAMPLE_CYCLES_MAX 100000u

/* The fine clock and the counter just before and just after it. */
static int sample(uint64_t *before, uint64_t *ns, uint64_t *after)
{
    *before = hmaf__cycles();
    *ns = hmaf__now_ns();
    *after = hmaf__cycles();
    return *after - *before < SAMPLE_CYCLES_MAX;
}

/*
 * The reuse span in cycles, measured by this thread between its first
 * read and one CALIBRATION_NS later (reads go uncached meanwhile). The
 * counter is read after the clock at the start and before it at the end,
 * so a thread delayed between them measures too few cycles, never too
 * many: the span comes out short (more reads), not long.
 */
static uint64_t calibrate(struct hmaf__thread_clock *c)
{
    uint64_t before, ns, after;

    if (c->calib_ns == 0) {
        if (!cycles_are_a_clock()) {
            atomic_store_explicit(&reuse_cycles, UINT64_MAX,
                                  memory_order_relaxed);
        } else if (sample(&before, &ns, &after)) {
            c->calib_cycles = after;
            c->calib_ns = ns;
        }
        return 0;
    }
    if (!sample(&before, &ns, &after) || ns - c->calib_ns < CALIBRATION_NS ||
        before <= c->calib_cycles) {
        return 0;
    }
    /* In 128 bits: cycles over 2 ms times 250 µs can't overflow them. */
    before = (uint64_t)((unsigned __int128)(before - c->calib_cycles) *
                        HMAF_CLOCK_REUSE_NS / (ns - c->calib_ns));
    atomic_store_explicit(&reuse_cycles, before, memory_order_relaxed);
    return before;
}

uint64_t hmaf__coarse_now_ns_read(uint64_t cycles)
{
    struct hmaf__thread_clock *c = &hmaf__thread_clock;
    uint64_t reuse = c->reuse;

    if (reuse == 0) {
        reuse = atomic_load_explicit(&reuse_cycles, memory_order_relaxed);
        if (reuse == 0) {
            reuse = calibrate(c);
        }
        /* No clock (UINT64_MAX), or none yet: every read reads. */
        c->reuse = reuse == UINT64_MAX ? 0 : reuse;
    }
    c->ns = hmaf__coarse_now_ns();
    /* The counter read before the clock: ns is no older than cycles says. */
    c->cycles = cycles;
    return c->ns;
}
