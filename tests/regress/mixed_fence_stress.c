/*
 * Everything at once on one session: threads reading and writing small
 * ranges across many exposures through a tiny region cache (every few
 * calls a miss, evictions in batches), threads moving 4 MiB at a time
 * split over helper threads (split_threads 4, on however few cpus), and
 * the host revoking exposures of both kinds and exposing them again.
 *
 * Checked: every read that succeeds holds the host's pattern (the host
 * fills a revoked range with FENCE_SENTINEL, so a read that reached it
 * after hmaf_agent_revoke returned shows it); no write lands in a revoked
 * range (the host watches it); nothing hangs; the dpu side's only errors
 * are those a revoked range gives. Dpu writes carry the pattern itself,
 * so the host memory is the same before and after them. Last, the host
 * destroys its agent and exits while all of it runs: every thread's
 * calls end, with HMAF_ECONNRESET.
 *
 * HMAF_STRESS_TRIALS sets the revocations (default 40).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"
#include "fence.h"
#include "target.h"

#define SMALL_N     256
#define SMALL_LEN   (16u << 10)
#define BIG_N       4
#define BIG_LEN     (2u << 20)
#define BIG_IO      (4u << 20)
#define SMALL_IO    4096u
#define SMALL_THR   4
#define BIG_THR     2
#define CACHE_MAX   16
#define WATCH_MS    20
#define SALT        1

/* Host memory: SMALL_N exposures of SMALL_LEN, then BIG_N of BIG_LEN. */
static uint8_t *small_mem, *big_mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    int ret = 0;

    (void)arg;
    small_mem = mmap(NULL, SMALL_N * SMALL_LEN, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    big_mem = mmap(NULL, BIG_N * BIG_LEN, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (small_mem == MAP_FAILED || big_mem == MAP_FAILED) {
        return HMAF_ENOMEM;
    }
    target_fill(small_mem, SMALL_N * SMALL_LEN, 0, SALT);
    target_fill(big_mem, BIG_N * BIG_LEN, 0, SALT);
    for (unsigned i = 0; i < SMALL_N && ret == 0; i++) {
        ret = hmaf_agent_expose(agent, small_mem + i * SMALL_LEN, SMALL_LEN,
                                HMAF_ACCESS_READ_WRITE);
    }
    for (unsigned i = 0; i < BIG_N && ret == 0; i++) {
        ret = hmaf_agent_expose(agent, big_mem + i * BIG_LEN, BIG_LEN,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "small", small_mem,
                                 SMALL_N * SMALL_LEN);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "big", big_mem, BIG_N * BIG_LEN);
    }
    return ret;
}

/* Revoke [p, p + len), watch it filled with the sentinel for a while,
 * put the pattern back (first byte at offset first) and expose it again.
 * 1: fenced; 0: something reached it; 2, 3: revoke, expose failed;
 * 4: revoke timed out (a session was cut off: no fence promised). */
static int revoke_watch(hmaf_agent_t *agent, uint8_t *p, size_t len,
                        uint64_t first)
{
    int ret = hmaf_agent_revoke(agent, p, len);
    int verdict = 1;

    if (ret == HMAF_ETIMEDOUT) {
        verdict = 4;
    } else if (ret != 0) {
        return 2;
    } else {
        memset(p, FENCE_SENTINEL, len);
        fence_sleep_ms(WATCH_MS);
        verdict = fence_changed(p, len) == 0;
    }
    target_fill(p, len, first, SALT);
    if (hmaf_agent_expose(agent, p, len, HMAF_ACCESS_READ_WRITE) != 0) {
        return 3;
    }
    return verdict;
}

static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    static unsigned turn;
    unsigned i = turn++;

    (void)arg;
    switch (cmd) {
    case 's':
        i = i * 37 % SMALL_N;
        return revoke_watch(agent, small_mem + i * SMALL_LEN, SMALL_LEN,
                            (uint64_t)i * SMALL_LEN);
    case 'b':
        i %= BIG_N;
        return revoke_watch(agent, big_mem + i * BIG_LEN, BIG_LEN,
                            (uint64_t)i * BIG_LEN);
    default:
        return 255;
    }
}

static struct target target;
static hmaf_session_t *session;
static uint64_t small_base, big_base;
static _Atomic int stop;
static _Atomic unsigned bad_data, bad_errors, reads_ok, writes_ok, refused;

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The errors a range being revoked may give: not exposed (EFAULT), or
 * the session cut off for not confirming in time (ECONNRESET: the host
 * says so with a timed-out revoke). Anything else is a finding. */
static int expected_error(int ret)
{
    if (ret == HMAF_EFAULT || ret == HMAF_ECONNRESET) {
        atomic_fetch_add(&refused, 1);
        return 1;
    }
    fprintf(stderr, "unexpected error %d (%s)\n", ret, hmaf_strerror(ret));
    atomic_fetch_add(&bad_errors, 1);
    return 0;
}

static void one_io(uint8_t *buf, uint64_t base, uint64_t off, size_t len,
                   int write)
{
    int ret;

    if (write) {
        target_fill(buf, len, off, SALT);
        ret = hmaf_session_write(session, base + off, buf, len);
    } else {
        memset(buf, 0, len);
        ret = hmaf_session_read(session, buf, base + off, len);
    }
    if (ret != 0) {
        (void)expected_error(ret);
        return;
    }
    if (write) {
        atomic_fetch_add(&writes_ok, 1);
        return;
    }
    atomic_fetch_add(&reads_ok, 1);
    if (target_mismatch(buf, len, off, SALT) != len) {
        fprintf(stderr, "read of %zu at +%llu: byte %zu is 0x%02x\n", len,
                (unsigned long long)off, target_mismatch(buf, len, off, SALT),
                buf[target_mismatch(buf, len, off, SALT)]);
        atomic_fetch_add(&bad_data, 1);
    }
}

static void *small_thread(void *arg)
{
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
    uint8_t buf[SMALL_IO];

    while (!atomic_load(&stop)) {
        uint64_t r = rnd(&x);
        uint64_t exp = r % SMALL_N;
        size_t len = 1 + (r >> 8) % SMALL_IO;
        uint64_t off = exp * SMALL_LEN + (r >> 20) % (SMALL_LEN - len + 1);
        one_io(buf, small_base, off, len, (r >> 40) % 4 == 0);
    }
    return NULL;
}

static void *big_thread(void *arg)
{
    uint64_t x = 0xc2b2ae3d27d4eb4full ^ (uintptr_t)arg;
    uint8_t *buf = malloc(BIG_IO);

    CHECK(buf != NULL);
    while (!atomic_load(&stop)) {
        uint64_t r = rnd(&x);
        uint64_t off = r % (BIG_N * BIG_LEN - BIG_IO + 1);
        one_io(buf, big_base, off, BIG_IO, (r >> 40) % 2 == 0);
    }
    free(buf);
    return NULL;
}

int main(void)
{
    struct target_options opts = {
        .setup = setup, .command = command, .revoke_wait_ms = 5000};
    hmaf_session_params_t p;
    pthread_t thr[SMALL_THR + BIG_THR];
    unsigned trials = fence_trials(40), fenced = 0, timeouts = 0;
    size_t len;

    target_start(&target, &opts);
    target_session_params(&target, &p);
    p.cache_max_regions = CACHE_MAX;
    p.split_threads = 4;
    session = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(session, "small", &small_base, &len));
    CHECK_OK(hmaf_session_lookup(session, "big", &big_base, &len));
    for (uintptr_t i = 0; i < SMALL_THR; i++) {
        CHECK_EQ(pthread_create(&thr[i], NULL, small_thread, (void *)i), 0);
    }
    for (uintptr_t i = 0; i < BIG_THR; i++) {
        CHECK_EQ(pthread_create(&thr[SMALL_THR + i], NULL, big_thread,
                                (void *)i),
                 0);
    }
    for (unsigned i = 0; i < trials; i++) {
        int verdict = target_command(&target, i % 2 ? 's' : 'b');
        CHECK(verdict == 1 || verdict == 4);
        fenced += verdict == 1;
        timeouts += verdict == 4;
    }
    /* The host goes (its agent destroyed) while everything still runs:
     * the calls under way end, and every one after fails cleanly. */
    CHECK_EQ(target_stop(&target), 0);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < SMALL_THR + BIG_THR; i++) {
        CHECK_EQ(pthread_join(thr[i], NULL), 0);
    }
    {
        uint8_t tmp[64];
        CHECK_ERR(hmaf_session_read(session, tmp, small_base, sizeof(tmp)),
                  HMAF_ECONNRESET);
    }
    printf("revocations fenced %u, timed out %u; reads %u, writes %u, "
           "refused %u\n",
           fenced, timeouts, atomic_load(&reads_ok), atomic_load(&writes_ok),
           atomic_load(&refused));
    CHECK_EQ(atomic_load(&bad_data), 0);
    CHECK_EQ(atomic_load(&bad_errors), 0);
    hmaf_session_destroy(session);
    return 0;
}
