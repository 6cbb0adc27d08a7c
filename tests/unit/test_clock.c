/* The thread's cached coarse clock: never ahead of the coarse clock, never
 * going backwards, and, once the counter's rate is measured, reused
 * between reads on a counter that is a clock (else read every time). */
#include <pthread.h>

#include "check.h"
#include "util/clock.h"

#define READS 2000000

static void *reads(void *arg)
{
    uint64_t last = 0;

    (void)arg;
    for (long i = 0; i < READS; i++) {
        uint64_t cached = hmaf__coarse_now_ns_cached();
        CHECK(cached <= hmaf__coarse_now_ns());
        CHECK(cached >= last);
        last = cached;
    }
    return NULL;
}

int main(void)
{
    pthread_t t;

    /* Two threads: each keeps its own cache. */
    CHECK(pthread_create(&t, NULL, reads, NULL) == 0);
    reads(NULL);
    CHECK(pthread_join(t, NULL) == 0);
#ifdef HMAF_HAVE_CYCLES
    /* 2 ms at least went by: the rate was measured unless every sample was
     * preempted, or the CPU says the counter is no clock. */
    printf("reuse span: %llu cycles\n",
           (unsigned long long)hmaf__thread_clock.reuse);
#endif
    return 0;
}
