/*
 * How long a waiter spins before it yields the CPU, learnt from its
 * recent waits.
 *
 * The two ends of the mailbox talk through memory: the dpu side waits for
 * an answer, the agent for the next request. Spinning is the fastest way
 * to see the other end's write when it runs on another CPU, and the worst
 * when both share one: the other end cannot write anything until the
 * spinner lets it run. So a waiter spins for a budget, then yields between
 * looks, and learns the budget from how its waits end:
 *
 *  - ended while spinning: the peer runs elsewhere; the budget keeps
 *    twice that wait as a margin (it only grows, up to the maximum);
 *  - ended after spinning, twice in a row or more: most likely the peer
 *    shares our CPU and ran when we yielded (then every wait ends so);
 *    the budget halves each time, down to nothing, so the waiter yields
 *    after its first empty look. A single late wait is a hiccup;
 *  - ended much later than the budget (HMAF_SPIN_LATE_MAX_NS): the peer
 *    was preempted or asleep, which says nothing about our CPU; no lesson.
 *
 * A run of late waits on separate CPUs (a machine under load) can still
 * shrink the budget below what a wait takes, and then every wait is late.
 * So that the budget finds its way back, every HMAF_SPIN_PROBE_EVERY-th
 * wait spins the full maximum: on separate CPUs it ends while spinning
 * and restores the budget; on a shared CPU it costs one slow wait in so
 * many.
 *
 * Threads may share one budget: relaxed atomics, the last lesson wins.
 */
#ifndef HMAF_UTIL_SPIN_H
#define HMAF_UTIL_SPIN_H

#include <stdatomic.h>
#include <stdint.h>

/* Ten mailbox round trips on separate CPUs with cma: longer waits are
 * not worth a CPU that someone else may want. */
#define HMAF_SPIN_BUDGET_MAX_NS 50000u
/* A budget shorter than this is none: yield after the first look. */
#define HMAF_SPIN_BUDGET_MIN_NS 500u
#define HMAF_SPIN_PROBE_EVERY 128u
/* A wait that ended this much later than its budget saw its peer
 * preempted or asleep: on a shared CPU, a wait ends when the peer has had
 * its turn, which lasts one spin budget at most, and a few microseconds
 * once the peer has learnt to yield too. */
#define HMAF_SPIN_LATE_MAX_NS (4 * HMAF_SPIN_BUDGET_MAX_NS)

struct hmaf__spin_budget {
    _Atomic uint32_t ns;
    _Atomic uint32_t waits; /* counts waits, for the probes */
    _Atomic uint32_t late;  /* waits in a row that ended after spinning
                               (wrapping round costs one lesson) */
};

/* Start by spinning, as on separate CPUs: a shared CPU is learnt within
 * a few waits. */
static inline void hmaf__spin_budget_init(struct hmaf__spin_budget *b)
{
    atomic_init(&b->ns, HMAF_SPIN_BUDGET_MAX_NS);
    atomic_init(&b->waits, 0);
    atomic_init(&b->late, 0);
}

/* How long the wait that begins now spins before yielding. */
static inline uint64_t hmaf__spin_budget_take(struct hmaf__spin_budget *b)
{
    uint32_t n = atomic_fetch_add_explicit(&b->waits, 1,
                                           memory_order_relaxed);

    if (n % HMAF_SPIN_PROBE_EVERY == HMAF_SPIN_PROBE_EVERY - 1) {
        return HMAF_SPIN_BUDGET_MAX_NS;
    }
    return atomic_load_explicit(&b->ns, memory_order_relaxed);
}

/* A wait that was given budget_ns to spin ended after waited_ns. */
static inline void hmaf__spin_budget_learn(struct hmaf__spin_budget *b,
                                           uint64_t budget_ns,
                                           uint64_t waited_ns)
{
    uint32_t ns = atomic_load_explicit(&b->ns, memory_order_relaxed);
    uint64_t want;

    if (waited_ns <= budget_ns) {
        atomic_store_explicit(&b->late, 0, memory_order_relaxed);
        want = 2 * waited_ns;
        if (want > HMAF_SPIN_BUDGET_MAX_NS) {
            want = HMAF_SPIN_BUDGET_MAX_NS;
        }
        if (want > ns) {
            atomic_store_explicit(&b->ns, (uint32_t)want,
                                  memory_order_relaxed);
        }
        return;
    }
    if (waited_ns - budget_ns > HMAF_SPIN_LATE_MAX_NS ||
        atomic_fetch_add_explicit(&b->late, 1, memory_order_relaxed) == 0) {
        return;
    }
    want = ns / 2 < HMAF_SPIN_BUDGET_MIN_NS ? 0 : ns / 2;
    atomic_store_explicit(&b->ns, (uint32_t)want, memory_order_relaxed);
}

#endif
