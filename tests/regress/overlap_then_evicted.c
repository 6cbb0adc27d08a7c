/*
 * Regression: "hmaf_session_read fails with HMAF_EPROTO, 'agent answers
 * cannot be cached', on a session whose region cache is small for its
 * threads". Two threads miss on one exposure at once; the second answer
 * overlaps the region the first cached, which means the address is
 * covered — unless a third thread's insert evicted that region before the
 * second looked. The miss then asked again at most four times and blamed
 * the agent. Now an answer whose overlap left the cache meanwhile is
 * inserted again.
 *
 * Threads read from a few exposures through a region cache of one: every
 * insert evicts. A read may fail with HMAF_ENOSPC (documented: a cache
 * far too small for the threads), never with HMAF_EPROTO.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "target.h"

#define EXPOSURES 3
#define PIECE     4096u
#define THREADS   4
#define READS     1000 /* per thread */

static uint8_t *mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    return target_expose_pieces(agent, "mem", EXPOSURES, PIECE, &mem);
}

static hmaf_session_t *session;
static uint64_t base;
static _Atomic unsigned ok, too_small, failures;

static void *reader(void *arg)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);

    for (int i = 0; i < READS; i++) {
        int ret = target_read_random(session, base, EXPOSURES * PIECE, 1, &x);
        if (ret == HMAF_ENOSPC) {
            atomic_fetch_add(&too_small, 1);
        } else if (ret != 0) {
            if (ret < 0) {
                fprintf(stderr, "read: %s\n", hmaf_strerror(ret));
            }
            atomic_fetch_add(&failures, 1);
        } else {
            atomic_fetch_add(&ok, 1);
        }
    }
    return NULL;
}

int main(void)
{
    struct target_options opts = {.setup = setup};
    struct target target;
    hmaf_session_params_t p;
    pthread_t thr[THREADS];
    size_t len;

    target_start(&target, &opts);
    target_session_params(&target, &p);
    p.cache_max_regions = 1;
    session = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(session, "mem", &base, &len));
    for (uintptr_t i = 0; i < THREADS; i++) {
        CHECK_EQ(pthread_create(&thr[i], NULL, reader, (void *)i), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK_EQ(pthread_join(thr[i], NULL), 0);
    }
    printf("reads: %u ok, %u HMAF_ENOSPC\n", atomic_load(&ok),
           atomic_load(&too_small));
    CHECK_EQ(atomic_load(&failures), 0);
    hmaf_session_destroy(session);
    CHECK_EQ(target_stop(&target), 0);
    return 0;
}
