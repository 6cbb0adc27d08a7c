/* Regression: with cma, hmaf_agent_destroy() was no fence. It closed the
 * sessions and freed their mailboxes, but dpu threads went on writing to
 * the exposed memory until they next looked at their channel (once per
 * tick of the coarse clock), and a mailbox request begun meanwhile wrote
 * its request word into the freed mailbox: into whatever the host's heap
 * had handed that memory to. Now no dpu call reaches the host once
 * destroy has returned; the dpu side sees errors (HMAF_ECONNRESET), and
 * no call hangs.
 *
 * Three threads of one session write 64-byte pieces of a 1 MiB exposure
 * while the host destroys its agent. The host then refills the exposure
 * with a sentinel, allocates blocks the way the freed mailbox would be
 * reused, fills them too, and watches both for 50 ms (fence.h); as soon
 * as the blocks are filled, one thread turns to mailbox requests (pings).
 * HMAF_STRESS_TRIALS sets the trials (default 5). */
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fence.h"
#include "target.h"

#define THREADS   3
#define WARMUP_MS 10 /* after every thread's first success */
#define WATCH_MS  50
/* A call this long hangs. Generous: on a busy 2-core machine a thread can
 * wait most of a second for a CPU; a call stuck until the mailbox timeout
 * (5 s) must still show. */
#define SLOW_NS 2000000000ull
/* A session's mailbox with the default 16 slots: 128 + 640 * 16 bytes,
 * from posix_memalign(4096) (src/host/session.c, create_mailbox). */
#define MBOX_LEN (128 + 640 * 16)
#define BLOCKS   4

/* What the host child reports; in a page shared across the fork. */
struct report {
    struct fence_start start;  /* when the host call starts */
    _Atomic uint64_t fence_ns; /* CLOCK_MONOTONIC when destroy returned */
    size_t changed;            /* exposure bytes written after that */
    size_t heap_changed;       /* bytes written into reused heap blocks */
    _Atomic int heap_reused;   /* the blocks are allocated and filled */
};

static struct report *rep;

struct block {
    void *p;
    size_t len;
};

/* The heap taken back after destroy. The test runs with one malloc arena
 * (see main), so the mailbox that the agent's thread allocated is reused by
 * the destroying thread's next allocations, at once: a thread woken for
 * them could come after the dpu side has noticed, within a tick. */
static struct block blocks[2 * BLOCKS];

/* Blocks of the mailbox's size and alignment (what the next session's
 * mailbox would get) and of its size alone (an exact fit of the freed
 * chunk), sentinel-filled. */
static void take_blocks(void)
{
    for (int i = 0; i < BLOCKS; i++) {
        if (posix_memalign(&blocks[i].p, 4096, MBOX_LEN) != 0) {
            blocks[i].p = NULL;
        }
        blocks[i].len = MBOX_LEN;
        blocks[BLOCKS + i] = (struct block){malloc(MBOX_LEN), MBOX_LEN};
    }
    for (int i = 0; i < 2 * BLOCKS; i++) {
        if (blocks[i].p != NULL) {
            memset(blocks[i].p, FENCE_SENTINEL, blocks[i].len);
        }
    }
}

static size_t heap_changed(void)
{
    size_t n = 0;

    for (int i = 0; i < 2 * BLOCKS; i++) {
        if (blocks[i].p != NULL) {
            n += fence_changed(blocks[i].p, blocks[i].len);
        }
    }
    return n;
}

/* 'd': destroy the agent, note when that returned, take the exposure and
 * the freed heap back, and watch them. The child never touches the agent
 * again: the test kills it rather than let its loop destroy it twice. */
static int destroy_and_watch(hmaf_agent_t *agent, int cmd, void *arg)
{
    (void)cmd, (void)arg;
    fence_start_wait(&rep->start);
    hmaf_agent_destroy(agent);
    atomic_store(&rep->fence_ns, fence_now_ns());
    memset(fence_area, FENCE_SENTINEL, FENCE_AREA_LEN);
    take_blocks();
    atomic_store(&rep->heap_reused, 1);
    fence_sleep_ms(WATCH_MS);
    rep->changed = fence_changed(fence_area, FENCE_AREA_LEN);
    rep->heap_changed = heap_changed();
    return 1;
}

/* Writes at pseudo-random offsets; thread 0 pings instead once the freed
 * heap is reused, where the host watches. Not before: a request under way
 * when the agent stops sees the closed channel at once and ends the
 * session for every thread, and one written before the fill is erased. */
static int write_or_ping(struct fence_thread *ft, unsigned i)
{
    (void)i;
    if (ft == &ft->load->th[0] && atomic_load(&rep->heap_reused)) {
        return hmaf_session_ping(ft->s);
    }
    return hmaf_session_write(ft->s, fence_next_addr(ft), ft->mark, FENCE_IO);
}

struct totals {
    unsigned trials, ok_after_trials, changed_trials, heap_trials;
    unsigned slow_trials, violations;
    long calls, ok_after;
    size_t changed, heap_changed;
    uint64_t max_call_ns;
    int last_error;
};

static void record(struct totals *tot, const struct fence_sum *sum)
{
    int slow = sum->max_call_ns >= SLOW_NS;

    tot->trials++;
    tot->calls += sum->ok + sum->failed;
    tot->ok_after += sum->ok_after;
    tot->ok_after_trials += sum->ok_after > 0;
    tot->changed += rep->changed;
    tot->changed_trials += rep->changed > 0;
    tot->heap_changed += rep->heap_changed;
    tot->heap_trials += rep->heap_changed > 0;
    tot->slow_trials += slow;
    if (sum->max_call_ns > tot->max_call_ns) {
        tot->max_call_ns = sum->max_call_ns;
    }
    tot->last_error = sum->last_error;
    tot->violations +=
        sum->ok_after > 0 || rep->changed > 0 || rep->heap_changed > 0 || slow;
}

static void trial(struct totals *tot)
{
    struct target_options opts = {.setup = fence_setup,
                                  .command = destroy_and_watch};
    static struct fence_load load; /* large */
    struct fence_sum sum;
    struct target t;

    memset(rep, 0, sizeof(*rep));
    target_start(&t, &opts);
    fence_trial_run(&load, &t, THREADS, write_or_ping, WARMUP_MS, 'd',
                    &rep->fence_ns, &rep->start, &sum);
    target_kill(&t); /* its agent is gone: see destroy_and_watch */
    record(tot, &sum);
}

int main(void)
{
    struct totals tot = {0};
    unsigned trials = fence_trials(5);

#ifdef M_ARENA_MAX
    /* One malloc arena (glibc), so that the agent thread's mailbox is what
     * the host's next allocations get; set before the first fork, the host
     * child inherits it. */
    (void)mallopt(M_ARENA_MAX, 1);
#endif
    rep = fence_shared(sizeof(*rep));
    for (unsigned i = 0; i < trials; i++) {
        trial(&tot);
    }
    printf("destroy_fence: %u trials; %ld calls; %ld begun after the return "
           "succeeded (%u trials); %zu exposed bytes written after the "
           "return (%u trials); %zu bytes written into freed agent memory "
           "(%u trials); slowest call %.1f ms (%u trials over 2 s); "
           "last error %s; violating trials %u\n",
           tot.trials, tot.calls, tot.ok_after, tot.ok_after_trials,
           tot.changed, tot.changed_trials, tot.heap_changed, tot.heap_trials,
           (double)tot.max_call_ns / 1e6, tot.slow_trials,
           hmaf_err_name(tot.last_error), tot.violations);
    return tot.violations > 0;
}
