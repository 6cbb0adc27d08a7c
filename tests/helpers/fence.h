/*
 * Fence checks: does anything reach host memory after a host call that
 * promises it cannot (hmaf_agent_revoke, hmaf_agent_destroy) has returned?
 *
 * Ground truth comes from two places. The host child takes CLOCK_MONOTONIC
 * right after its call returns and publishes it in a page shared across
 * the fork; dpu threads time every call against it (the clock is the same
 * machine-wide). The host also refills the memory with FENCE_SENTINEL,
 * which dpu threads never write, and looks for changed bytes later.
 */
#ifndef HMAF_TEST_FENCE_H
#define HMAF_TEST_FENCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <hmaf/hmaf.h>

#include "target.h"

#define FENCE_SENTINEL 0xEE
/* Successes remembered per thread while the fence time is not yet known. */
#define FENCE_PENDING     4096
#define FENCE_IO          64 /* bytes per dpu call */
#define FENCE_THREADS_MAX 8

/* The host's exposure under test: FENCE_AREA_LEN bytes, read-write,
 * published as "area"; fence_setup is a target_setup_fn making it. */
#define FENCE_AREA_LEN (1u << 20)
extern uint8_t *fence_area;
int fence_setup(hmaf_agent_t *agent, void *arg);

/* Zeroed memory that a child forked later writes and the parent reads. */
void *fence_shared(size_t len);
uint64_t fence_now_ns(void);
void fence_sleep_ms(unsigned ms);
/*
 * When the host call starts. Dpu sessions look at the host's epoch and
 * channel only once the kernel's coarse clock has ticked since their last
 * look (1-4 ms steps), on their first call after a tick. A host call that
 * starts right after such a look is the one they notice latest: the worst
 * case a fence must survive. On a busy machine a fixed delay after the
 * tick does not find that moment (the dpu threads' first call after it
 * may come late), so the dpu side says when it has passed: the host arms,
 * the first dpu thread waits for a tick, makes one call (which looks, or
 * waits for the look under way) and says go. Lives in shared memory.
 */
struct fence_start {
    _Atomic int armed; /* the host waits for go */
    _Atomic int go;
};

/* Host: arm and wait for go; at most a second (then start anyway). */
void fence_start_wait(struct fence_start *fs);
/* $HMAF_STRESS_TRIALS when set, else dflt. */
unsigned fence_trials(unsigned dflt);
/* Bytes of [p, p + len) that no longer hold FENCE_SENTINEL. */
size_t fence_changed(const void *p, size_t len);

/* One dpu thread's calls, judged against the host's fence time. */
struct fence_tally {
    const _Atomic uint64_t *fence_ns; /* 0 until the host publishes it */
    long ok;                          /* calls that succeeded */
    long failed;                      /* calls that failed */
    long ok_after;  /* began after the fence returned, yet succeeded */
    int last_error; /* the latest failure's code */
    uint64_t max_call_ns;
    uint64_t pending[FENCE_PENDING]; /* starts of successes that ended
                                        before the fence time was known */
    unsigned npending;
};

void fence_tally_init(struct fence_tally *t, const _Atomic uint64_t *fence_ns);
/* Record one call that began at start_ns (fence_now_ns) and returned ret. */
void fence_tally_call(struct fence_tally *t, uint64_t start_ns, int ret);
/* Judge the pending successes; once the fence time is published. */
void fence_tally_finish(struct fence_tally *t);

/* A dpu thread that calls in a loop into one exposure. */
struct fence_thread {
    struct fence_load *load;
    hmaf_session_t *s;
    uint64_t base; /* the exposure: [base, base + len) on the host */
    size_t len;
    uint8_t mark[FENCE_IO]; /* what it writes: never the sentinel */
    uint32_t rng;
    _Atomic int warm; /* a call has succeeded */
    struct fence_tally tally;
};

/* One call, the i-th of the thread; returns what the library returned. */
typedef int (*fence_call_fn)(struct fence_thread *ft, unsigned i);
/* A pseudo-random host address with FENCE_IO bytes inside the exposure. */
uint64_t fence_next_addr(struct fence_thread *ft);

struct fence_load {
    int nthreads;
    fence_call_fn call;
    struct fence_start *start; /* thread 0 answers it; NULL: none */
    /* Sparse calls: each thread sleeps this long before each call, so
     * that every call finds the session's epoch look due (set by the
     * caller; fence_load_start leaves it). 0: calls back to back. */
    unsigned idle_us;
    _Atomic int stop;
    pthread_t tid[FENCE_THREADS_MAX];
    struct fence_thread th[FENCE_THREADS_MAX];
};

/* What the threads of one load did, summed. */
struct fence_sum {
    long ok, failed, ok_after;
    uint64_t max_call_ns;
    int last_error;
};

/* Start nthreads threads calling `call` on s; thread 0 also answers
 * `start` (may be NULL). l is large: keep it static. */
void fence_load_start(struct fence_load *l, int nthreads, fence_call_fn call,
                      hmaf_session_t *s, uint64_t base, size_t len,
                      const _Atomic uint64_t *fence_ns,
                      struct fence_start *start);
/* Wait until every thread has succeeded once, then ms more. */
void fence_load_warm(struct fence_load *l, unsigned ms);
/* Stop the threads, each after one more call (surely after the fence);
 * judge and sum their calls. */
void fence_load_stop(struct fence_load *l, struct fence_sum *sum_out);

/* One trial against a started target (fence_setup): a session to its
 * "area", the load calling `call` through it until warm, then the target
 * runs cmd (which must answer 1); the load stops and the session ends.
 * The target is the caller's to stop or kill. */
void fence_trial_run(struct fence_load *l, struct target *t, int nthreads,
                     fence_call_fn call, unsigned warm_ms, int cmd,
                     const _Atomic uint64_t *fence_ns,
                     struct fence_start *start, struct fence_sum *sum_out);

#endif
