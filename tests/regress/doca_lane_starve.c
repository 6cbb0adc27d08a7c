/* A request a thread posted on the doca engine's lane 0, before the thread
 * was given a lane of its own (it met another thread on lane 0), waited
 * for while that own lane is held by a third thread (parked inside its
 * doca_pe_progress, as a preempted thread would be) or never goes idle:
 * progress() drove the other lanes only while the caller's own lane had
 * nothing in flight, so nobody drove lane 0 and the request completed
 * only when the watch thread's next epoch look happened to (a lease
 * later), or when the third thread let go.
 *
 * Deterministic: one task per lane (DOCA_EMU_MAX_TASKS=1) so that the
 * request waits queued on lane 0 behind P's; P, parked inside lane 0's
 * progress (--wrap), holds lane 0 while the waiter posts again (and so
 * gets lane 1) and while two threads take lanes 2 and 3 and C lane 1;
 * the waiter's forced epoch look, with a host whose lease is long (60 s),
 * puts the watch thread's next one 10 s away (revoke_check_us). The
 * request must complete while the third thread is still parked: 5 s is a
 * bound on a hang, not a time measured (with the fix it takes a few
 * progress calls). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <doca_pe.h>

#include "check.h"
#include "core/session_int.h"
#include "target.h"

static _Thread_local int park_me;
static atomic_int parked, park_release;

uint8_t __real_doca_pe_progress(struct doca_pe *pe);
uint8_t __wrap_doca_pe_progress(struct doca_pe *pe);

uint8_t __wrap_doca_pe_progress(struct doca_pe *pe)
{
    if (park_me) {
        park_me = 0;
        atomic_store(&parked, 1);
        while (!atomic_load(&park_release)) {
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
    }
    return __real_doca_pe_progress(pe);
}

static hmaf_session_t *s;
static uint64_t buf;
static atomic_int step;

static void wait_step(int n)
{
    while (atomic_load(&step) < n) {
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* P: a request that fills lane 0's window, then parks progressing it. */
static void *parker(void *arg)
{
    static uint8_t v[4096];
    hmaf_req_t r;

    (void)arg;
    CHECK_OK(hmaf_session_post_read(s, v, buf, sizeof(v), &r));
    atomic_store(&step, 1);
    wait_step(2);
    park_me = 1;
    CHECK_OK(hmaf_request_wait(s, r)); /* parks, then completes */
    CHECK_PATTERN(v, sizeof(v), 0, 1);
    atomic_store(&step, 4);
    return NULL;
}

/* D: one read while lane 0 is held: a lane of its own. */
static void *taker(void *arg)
{
    uint8_t v[64];
    uint64_t off = 8192 + (uint64_t)(uintptr_t)arg * 64;

    CHECK_OK(hmaf_session_read(s, v, buf + off, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), off, 1);
    return NULL;
}

/* C: the fourth thread given a lane (lane 1, the waiter's), then a read
 * that parks progressing lane 1, its task in flight, as a thread
 * preempted there would, until told to go on. */
static void *stalled(void *arg)
{
    static uint8_t v[256];

    (void)arg;
    CHECK_OK(hmaf_session_read(s, v, buf + 65536, sizeof(v)));
    atomic_store(&step, 3);
    wait_step(5);
    park_me = 1;
    CHECK_OK(hmaf_session_read(s, v, buf + 65536, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 65536, 1);
    return NULL;
}

int main(void)
{
    static uint8_t v0[256], v1[256];
    hmaf_session_params_t p;
    struct target t;
    pthread_t pt, d[2], ct;
    hmaf_req_t r0, r1;
    double start;
    int ret, done_while_parked;

    setenv("DOCA_EMU_MAX_TASKS", "1", 1);
    target_start_standard_wait(&t, 1, 60000);
    target_session_params(&t, &p);
    p.revoke_check_us = 10000000; /* no epoch looks in the way */
    s = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_read(s, v0, buf, sizeof(v0))); /* cached */

    CHECK(pthread_create(&pt, NULL, parker, NULL) == 0);
    wait_step(1);
    /* R0: queued on lane 0 behind P's request */
    CHECK_OK(hmaf_session_post_read(s, v0, buf + 4096, sizeof(v0), &r0));
    atomic_store(&step, 2);
    while (!atomic_load(&parked)) {
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    /* lane 0 held: this thread gets lane 1, then D1, D2 lanes 2, 3, and
     * C lane 1 again */
    CHECK_OK(hmaf_session_post_read(s, v1, buf + 5000, sizeof(v1), &r1));
    for (uintptr_t i = 0; i < 2; i++) {
        CHECK(pthread_create(&d[i], NULL, taker, (void *)i) == 0);
        pthread_join(d[i], NULL);
    }
    CHECK(pthread_create(&ct, NULL, stalled, NULL) == 0);
    wait_step(3);
    /* the watch thread's next look a lease away; R1 done on the way */
    CHECK_OK(hmaf__session_check_epoch(s, 1));
    CHECK_OK(hmaf_request_wait(s, r1));
    CHECK_PATTERN(v1, sizeof(v1), 5000, 1);
    atomic_store(&park_release, 1);
    wait_step(4); /* P done: R0 submitted on lane 0, nobody drives it */
    pthread_join(pt, NULL);
    atomic_store(&parked, 0);
    atomic_store(&park_release, 0);
    atomic_store(&step, 5);
    while (!atomic_load(&parked)) {
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    /* lane 1 held by C, its task in flight; lane 0 free, R0 on it */
    start = now_s();
    while ((ret = hmaf_request_test(s, r0)) == HMAF_EINPROGRESS &&
           now_s() - start < 5.0) {
    }
    done_while_parked = ret != HMAF_EINPROGRESS;
    atomic_store(&park_release, 1);
    pthread_join(ct, NULL);
    if (ret == HMAF_EINPROGRESS) {
        ret = hmaf_request_wait(s, r0);
    }
    CHECK_OK(ret);
    CHECK_PATTERN(v0, sizeof(v0), 4096, 1);
    /* R0's lane is free: this thread drives it, C's parking or not */
    CHECK(done_while_parked);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("doca_lane_starve: ok\n");
    return 0;
}
