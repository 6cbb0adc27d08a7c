/* Regression: hmaf_agent_revoke() was no fence when its wait was short.
 * With revoke_wait_ms = 2 it gave up waiting for the sessions'
 * acknowledgements yet returned 0, and dpu threads went on using their
 * cached region: calls that began after the return succeeded, and writes
 * landed in memory the host had taken back. Now a 0 means every session
 * was fenced; a session that could not be in time is cut off and revoke
 * says HMAF_ETIMEDOUT (counted here, not a violation).
 *
 * Four threads of one session hammer a 1 MiB exposure with 64-byte reads
 * and writes while the host revokes it; the host then refills the range
 * with a sentinel and watches it for 50 ms (fence.h). First with a 2 ms
 * wait (15 trials: on a busy 2-core machine 20-60 % of trials showed the
 * bug), then with the default 200 ms (3 trials). HMAF_STRESS_TRIALS sets
 * the trials of each. One summary line per wait.
 *
 * argv[1] "sparse": each thread sleeps SPARSE_IDLE_US before each call,
 * longer than the session's epoch check interval, so that every call
 * carries its epoch look (datapath.c: reads always; writes, too, on an engine
 * that enforces revocation, doca). Run on doca, this checks that writes
 * which carry their look instead of looking first are still fenced. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fence.h"
#include "target.h"

#define THREADS   4
#define WARMUP_MS 10 /* after every thread's first success */
#define WATCH_MS  50
/* > revoke_check_us (1 ms by default): every call finds a look due */
#define SPARSE_IDLE_US 1500

/* What the host child reports; in a page shared across the fork. */
struct report {
    struct fence_start start;  /* when the host call starts */
    _Atomic uint64_t fence_ns; /* CLOCK_MONOTONIC when revoke returned */
    int revoke_ret;
    int wait_expired; /* the agent counted a revoke timeout */
    size_t changed;   /* bytes written after revoke returned */
};

static struct report *rep;
static unsigned idle_us; /* argv[1] "sparse": SPARSE_IDLE_US */

/* 'z': revoke, note when it returned, take the range back and watch it.
 * The time is taken first: anything in between would widen the window. */
static int revoke_and_watch(hmaf_agent_t *agent, int cmd, void *arg)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    int ret;

    (void)cmd, (void)arg;
    fence_start_wait(&rep->start);
    ret = hmaf_agent_revoke(agent, fence_area, FENCE_AREA_LEN);
    atomic_store(&rep->fence_ns, fence_now_ns());
    memset(fence_area, FENCE_SENTINEL, FENCE_AREA_LEN);
    rep->revoke_ret = ret;
    rep->wait_expired =
        hmaf_agent_stats(agent, &st) == 0 && st.revoke_timeouts > 0;
    fence_sleep_ms(WATCH_MS);
    rep->changed = fence_changed(fence_area, FENCE_AREA_LEN);
    return 1;
}

/* Reads and writes alternate, at pseudo-random offsets. */
static int read_or_write(struct fence_thread *ft, unsigned i)
{
    uint8_t buf[FENCE_IO];
    uint64_t at = fence_next_addr(ft);

    return i & 1 ? hmaf_session_write(ft->s, at, ft->mark, FENCE_IO)
                 : hmaf_session_read(ft->s, buf, at, FENCE_IO);
}

/* Figures of one wait over all its trials. */
struct totals {
    unsigned trials, ret_ok, ret_timedout, ret_other, wait_expired;
    unsigned ok_after_trials, changed_trials, violations;
    long calls, ok_after;
    size_t changed;
};

/* Violations count only when revoke claimed success. */
static void record(struct totals *tot, const struct fence_sum *sum)
{
    int ret = rep->revoke_ret;

    tot->trials++;
    tot->ret_ok += ret == 0;
    tot->ret_timedout += ret == HMAF_ETIMEDOUT;
    tot->ret_other += ret != 0 && ret != HMAF_ETIMEDOUT;
    tot->wait_expired += rep->wait_expired;
    tot->calls += sum->ok + sum->failed;
    tot->ok_after += sum->ok_after;
    tot->ok_after_trials += sum->ok_after > 0;
    tot->changed += rep->changed;
    tot->changed_trials += rep->changed > 0;
    tot->violations += ret == 0 && (sum->ok_after > 0 || rep->changed > 0);
}

static void trial(int wait_ms, struct totals *tot)
{
    struct target_options opts = {.setup = fence_setup,
                                  .command = revoke_and_watch,
                                  .revoke_wait_ms = wait_ms};
    static struct fence_load load; /* large */
    struct fence_sum sum;
    struct target t;

    memset(rep, 0, sizeof(*rep));
    load.idle_us = idle_us;
    target_start(&t, &opts);
    fence_trial_run(&load, &t, THREADS, read_or_write, WARMUP_MS, 'z',
                    &rep->fence_ns, &rep->start, &sum);
    CHECK_EQ(target_stop(&t), 0);
    record(tot, &sum);
}

/* Run one wait's trials and print its line; 1 when the fence failed. */
static int run_wait(int wait_ms, unsigned trials)
{
    struct totals tot = {0};

    for (unsigned i = 0; i < trials; i++) {
        trial(wait_ms, &tot);
    }
    printf("revoke_fence%s: wait %d ms: %u trials; revoke returned 0 in %u, "
           "ETIMEDOUT in %u, other in %u; agent wait expired in %u; "
           "%ld calls; %ld begun after the return succeeded (%u trials); "
           "%zu host bytes written after the return (%u trials); "
           "violating trials %u\n",
           idle_us != 0 ? " (sparse)" : "", wait_ms, tot.trials, tot.ret_ok,
           tot.ret_timedout, tot.ret_other, tot.wait_expired, tot.calls,
           tot.ok_after, tot.ok_after_trials, tot.changed, tot.changed_trials,
           tot.violations);
    return tot.violations > 0 || tot.ret_other > 0;
}

int main(int argc, char **argv)
{
    int failed;

    if (argc > 1 && strcmp(argv[1], "sparse") == 0) {
        idle_us = SPARSE_IDLE_US;
    }
    rep = fence_shared(sizeof(*rep));
    failed = run_wait(2, fence_trials(15));
    failed |= run_wait(200, fence_trials(3));
    return failed;
}
