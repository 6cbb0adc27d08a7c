/*
 * Large transfers split over helper threads (engine/cma/cma_split.c),
 * with a move that copies within our own memory: every byte moved once
 * whatever the pieces, descriptors and offsets; the first failure in byte
 * order is the one reported, whichever thread saw which first; helpers do
 * take pieces; a busy pool, or callers that fill the threads allowed,
 * leave the caller to move everything itself, and so for a while does a
 * helper that held the caller up; several callers at once; an idle pool
 * and a pool never started end.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "engine/cma/cma_split.c"

#define HOST_LEN    ((size_t)12 << 20)
#define XFERS_MAX   300
#define CALLERS     6
#define CALLER_RUNS 6
/* How often a piece that found its poison waits, at most, for a later
 * piece to fail first (yields, not time: nothing is judged on it). */
#define ORDER_YIELDS 20000

static uint8_t *host; /* the "host" memory: remote addresses point here */

/* Poisoned host bytes: a move that reaches one fails with its error, as
 * process_vm_readv stops at an unmapped page. */
struct poison {
    uint64_t off; /* into host */
    int err;
    _Atomic int hit;
};

struct fake {
    struct poison *poisons;
    unsigned npoisons;
    _Atomic uint64_t bytes;     /* moved, by every thread */
    _Atomic unsigned moves;     /* calls of the move */
    _Atomic unsigned by_helper; /* ... made by other threads */
    pthread_t caller;
    /* The caller's first move waits until a helper has moved a piece. */
    int hold_first;
    _Atomic int held;
    /* Every move waits until release is set. */
    int hold_all;
    _Atomic int release;
    /* A helper's move waits until the caller has made caller_moves_all
     * moves, then as long again as the caller took since run_start, and a
     * millisecond more: a helper that did not get a cpu in time. */
    unsigned caller_moves_all;
    _Atomic unsigned caller_moves;
    _Atomic uint64_t run_start, caller_end;
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void be_late(struct fake *f)
{
    uint64_t end, start = atomic_load(&f->run_start);

    while (atomic_load(&f->caller_moves) < f->caller_moves_all) {
        sched_yield();
    }
    end = atomic_load(&f->caller_end);
    while (now_ns() < end + 2 * (end - start) + 1000000) {
        sched_yield();
    }
}

/* The piece holding poison p waits (a while) for the poisons after it to
 * be hit first, so a later failure is seen before an earlier one. */
static void let_later_fail_first(struct fake *f, unsigned p)
{
    for (unsigned y = 0; y < ORDER_YIELDS; y++) {
        unsigned later_hit = 0;
        for (unsigned q = p + 1; q < f->npoisons; q++) {
            later_hit += (unsigned)atomic_load(&f->poisons[q].hit);
        }
        if (later_hit == f->npoisons - p - 1) {
            return;
        }
        sched_yield();
    }
}

static int move_one(struct fake *f, const struct hmaf_xfer *x, int is_write)
{
    uint64_t off = x->remote_addr - (uint64_t)(uintptr_t)host;

    for (unsigned p = 0; p < f->npoisons; p++) {
        if (f->poisons[p].off >= off && f->poisons[p].off - off < x->len) {
            atomic_store(&f->poisons[p].hit, 1);
            let_later_fail_first(f, p);
            return f->poisons[p].err;
        }
    }
    if (is_write) {
        memcpy(host + off, x->local, x->len);
    } else {
        memcpy(x->local, host + off, x->len);
    }
    atomic_fetch_add(&f->bytes, x->len);
    return 0;
}

static int fake_move(const void *arg, struct hmaf_xfer_batch *piece)
{
    struct fake *f = (struct fake *)arg;
    int ret = 0;

    if (!pthread_equal(pthread_self(), f->caller)) {
        atomic_fetch_add(&f->by_helper, 1);
        if (f->caller_moves_all > 0) {
            be_late(f);
        }
    } else if (f->hold_first && !atomic_exchange(&f->held, 1)) {
        while (atomic_load(&f->by_helper) == 0) {
            sched_yield();
        }
    }
    while (f->hold_all && !atomic_load(&f->release)) {
        sched_yield();
    }
    atomic_fetch_add(&f->moves, 1);
    CHECK(piece->count >= 1 && piece->count <= XFERS_MAX);
    for (uint32_t i = 0; i < piece->count && ret == 0; i++) {
        ret = move_one(f, &piece->xfers[i], piece->op == HMAF_XFER_WRITE);
    }
    if (pthread_equal(pthread_self(), f->caller)) {
        atomic_store(&f->caller_end, now_ns());
        atomic_fetch_add(&f->caller_moves, 1);
    }
    return ret;
}

static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* A batch of n descriptors covering `total` bytes from host offset `at`
 * on, at odd lengths, with local buffers apart from one another. */
struct job_spec {
    struct hmaf_xfer xfers[XFERS_MAX];
    struct hmaf_xfer_batch batch;
    uint8_t *local;
    uint64_t total;
};

static void make_batch(struct job_spec *j, enum hmaf_xfer_op op, uint64_t at,
                       uint64_t total, uint32_t n, uint64_t *rng)
{
    uint64_t left = total, local_off = 0;

    CHECK(n >= 1 && n <= XFERS_MAX && total >= n);
    j->local = malloc(total + (uint64_t)n * 7);
    CHECK(j->local != NULL);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t len =
            i == n - 1 ? left : 1 + next_rand(rng) % (2 * left / (n - i));
        len = HMAF_MIN(len, left - (n - 1 - i));
        j->xfers[i] = (struct hmaf_xfer){
            .local = j->local + local_off,
            .remote_addr = (uint64_t)(uintptr_t)host + at + (total - left),
            .len = (size_t)len,
        };
        local_off += len + next_rand(rng) % 7; /* gaps between buffers */
        left -= len;
    }
    j->batch =
        (struct hmaf_xfer_batch){.op = op, .xfers = j->xfers, .count = n};
    j->total = total;
}

static void fill_host(unsigned salt)
{
    for (size_t i = 0; i < HOST_LEN; i++) {
        host[i] = (uint8_t)((i * 2654435761u) >> 13 ^ (i >> 7) ^ salt);
    }
}

/* Each descriptor's local bytes hold the host's from its address on. */
static void check_read(const struct job_spec *j)
{
    for (uint32_t i = 0; i < j->batch.count; i++) {
        const struct hmaf_xfer *x = &j->xfers[i];
        CHECK(memcmp(x->local, (void *)(uintptr_t)x->remote_addr, x->len) == 0);
    }
}

static void free_batch(struct job_spec *j)
{
    free(j->local);
}

static int run(struct cma_split *sp, unsigned threads, struct job_spec *j,
               struct fake *f)
{
    f->caller = pthread_self();
    atomic_store(&f->run_start, now_ns());
    /* Each job may split: an earlier one whose helpers held it up (a held
     * piece, a busy machine) does not keep this one from it. */
    atomic_store(&sp->quiet_until, 0);
    return hmaf__cma_split_move(sp, threads, &j->batch, j->total, fake_move, f);
}

/* Single descriptors and many, odd totals and offsets, pools of 2, 5 and
 * 8 threads: every byte read once and right, writes land right. */
static void coverage_reads(struct cma_split *sp, unsigned threads,
                           uint64_t *rng)
{
    const uint64_t totals[] = {CMA_SPLIT_MIN, CMA_SPLIT_MIN + 1,
                               (3u << 20) + 4097};
    const uint32_t counts[] = {1, 7, 65, 300};

    for (size_t t = 0; t < HMAF_ARRAY_SIZE(totals); t++) {
        for (size_t c = 0; c < HMAF_ARRAY_SIZE(counts); c++) {
            struct job_spec *j = calloc(1, sizeof(*j));
            struct fake f = {0};
            uint64_t at = next_rand(rng) % (HOST_LEN - totals[t]);

            CHECK(j != NULL);
            make_batch(j, HMAF_XFER_READ, at, totals[t], counts[c], rng);
            CHECK_OK(run(sp, threads, j, &f));
            CHECK_EQ(atomic_load(&f.bytes), totals[t]);
            check_read(j);
            free_batch(j);
            free(j);
        }
    }
}

/* A write: the host's bytes become the local ones, nothing else moves. */
static void coverage_write(struct cma_split *sp, unsigned threads,
                           uint64_t *rng)
{
    struct job_spec *j = calloc(1, sizeof(*j));
    struct fake f = {0};
    uint8_t *want = malloc(HOST_LEN);

    CHECK(j != NULL && want != NULL);
    make_batch(j, HMAF_XFER_WRITE, 4099, (5u << 20) + 5, 33, rng);
    for (uint32_t i = 0; i < j->batch.count; i++) {
        memset(j->xfers[i].local, (int)(i + 1), j->xfers[i].len);
    }
    memcpy(want, host, HOST_LEN);
    for (uint32_t i = 0; i < j->batch.count; i++) {
        uint64_t off = j->xfers[i].remote_addr - (uintptr_t)host;
        memset(want + off, (int)(i + 1), j->xfers[i].len);
    }
    CHECK_OK(run(sp, threads, j, &f));
    CHECK(memcmp(want, host, HOST_LEN) == 0);
    free(want);
    free_batch(j);
    free(j);
}

static void test_coverage(void)
{
    const unsigned threads[] = {2, 5, 8};
    uint64_t rng = 0x9e3779b97f4a7c15ull;

    for (size_t i = 0; i < HMAF_ARRAY_SIZE(threads); i++) {
        struct cma_split *sp = calloc(1, sizeof(*sp));

        CHECK(sp != NULL);
        fill_host((unsigned)i);
        coverage_reads(sp, threads[i], &rng);
        coverage_write(sp, threads[i], &rng);
        hmaf__cma_split_fini(sp);
        free(sp);
    }
}

/* Poisons in several pieces, with different errors: the call reports the
 * first in byte order, also when a later piece failed before it. */
static void test_first_failure_wins(void)
{
    static struct cma_split sp;
    uint64_t rng = 42;
    const uint64_t total = 6u << 20;

    for (unsigned round = 0; round < 12; round++) {
        struct job_spec *j = calloc(1, sizeof(*j));
        struct poison ps[3] = {
            {.off = 4096 + (2u << 20) + round * 777, .err = HMAF_EFAULT},
            {.off = 4096 + (5u << 20) + 3, .err = HMAF_EPERM},
            {.off = 4096 + total - 1, .err = HMAF_ENOMEM},
        };
        struct fake f = {.poisons = ps, .npoisons = 3};
        /* Without the first poison, the second is the first. */
        unsigned first = round % 2;

        CHECK(j != NULL);
        f.poisons += first;
        f.npoisons -= first;
        make_batch(j, round % 3 ? HMAF_XFER_READ : HMAF_XFER_WRITE, 4096, total,
                   1 + round * 13 % 200, &rng);
        CHECK_ERR(run(&sp, 4, j, &f), ps[first].err);
        free_batch(j);
        free(j);
    }
    hmaf__cma_split_fini(&sp);
}

static void test_note_failure(void)
{
    struct cma_split_job job = {.npieces = 10};

    atomic_init(&job.failed, NO_FAILURE);
    note_failure(&job, 5, HMAF_EPERM);
    note_failure(&job, 7, HMAF_ENOMEM);
    CHECK_EQ(atomic_load(&job.failed) >> 32, 5);
    note_failure(&job, 2, HMAF_EFAULT);
    note_failure(&job, 3, HMAF_ECONNRESET);
    CHECK_EQ(atomic_load(&job.failed) >> 32, 2);
    CHECK_EQ(-(int)(uint32_t)atomic_load(&job.failed), HMAF_EFAULT);
}

/* The caller's first piece waits until a helper has moved one: helpers
 * take pieces of the job. */
static void test_helpers_take_pieces(void)
{
    static struct cma_split sp;
    uint64_t rng = 7;
    struct job_spec *j = calloc(1, sizeof(*j));
    struct fake f = {.hold_first = 1};

    CHECK(j != NULL);
    fill_host(2);
    make_batch(j, HMAF_XFER_READ, 0, 4u << 20, 1, &rng);
    CHECK_OK(run(&sp, 3, j, &f));
    CHECK(atomic_load(&f.by_helper) > 0);
    CHECK_EQ(atomic_load(&f.bytes), 4u << 20);
    check_read(j);
    free_batch(j);
    free(j);
    hmaf__cma_split_fini(&sp);
}

/* Caller A's job holds the only helper (every move of it waits); caller
 * B finds the pool busy and moves its whole batch itself, in one move. */
struct caller_b {
    struct cma_split *sp;
    unsigned threads; /* 2 when 0 */
    struct fake *a;
    int ret;
    unsigned moves, by_helper;
};

static void *run_b(void *arg)
{
    struct caller_b *b = arg;
    uint64_t rng = 99;
    struct job_spec *j = calloc(1, sizeof(*j));
    struct fake f = {0};

    CHECK(j != NULL);
    /* The helper is busy with A's job once it is in one of its moves. */
    while (atomic_load(&b->a->by_helper) == 0) {
        sched_yield();
    }
    make_batch(j, HMAF_XFER_READ, 1u << 20, 3u << 20, 5, &rng);
    b->ret = run(b->sp, b->threads ? b->threads : 2, j, &f);
    check_read(j);
    b->moves = atomic_load(&f.moves);
    b->by_helper = atomic_load(&f.by_helper);
    free_batch(j);
    free(j);
    atomic_store(&b->a->release, 1);
    return NULL;
}

static void test_busy_pool(void)
{
    static struct cma_split sp;
    uint64_t rng = 5;
    struct job_spec *j = calloc(1, sizeof(*j));
    struct fake f = {.hold_all = 1};
    struct caller_b b = {.sp = &sp, .a = &f};
    pthread_t tb;

    CHECK(j != NULL);
    fill_host(3);
    make_batch(j, HMAF_XFER_READ, 0, 4u << 20, 3, &rng);
    CHECK_EQ(pthread_create(&tb, NULL, run_b, &b), 0);
    CHECK_OK(run(&sp, 2, j, &f));
    pthread_join(tb, NULL);
    CHECK_OK(b.ret);
    CHECK_EQ(b.moves, 1);
    CHECK_EQ(b.by_helper, 0);
    check_read(j);
    free_batch(j);
    free(j);
    hmaf__cma_split_fini(&sp);
}

/* Three threads: caller A holds one helper (a 1 MiB job wants one), and
 * caller B, arriving meanwhile, takes none although the other is idle:
 * A, its helper and B fill the three. */
static void test_callers_fill_threads(void)
{
    static struct cma_split sp;
    uint64_t rng = 13;
    struct job_spec *j = calloc(1, sizeof(*j));
    struct fake f = {.hold_all = 1};
    struct caller_b b = {.sp = &sp, .a = &f};
    pthread_t tb;

    CHECK(j != NULL);
    fill_host(6);
    make_batch(j, HMAF_XFER_READ, 0, CMA_SPLIT_MIN, 2, &rng);
    b.threads = 3;
    CHECK_EQ(pthread_create(&tb, NULL, run_b, &b), 0);
    CHECK_OK(run(&sp, 3, j, &f));
    pthread_join(tb, NULL);
    CHECK_OK(b.ret);
    CHECK_EQ(sp.nhelpers, 2);
    CHECK_EQ(b.moves, 1);
    CHECK_EQ(b.by_helper, 0);
    CHECK_EQ(atomic_load(&sp.busy), 0);
    check_read(j);
    free_batch(j);
    free(j);
    hmaf__cma_split_fini(&sp);
}

/* A helper that holds the caller up longer than its piece would have
 * taken the caller: later transfers go unsplit for a while. */
static void test_held_up_goes_unsplit(void)
{
    static struct cma_split sp;
    uint64_t rng = 11;
    struct job_spec *j = calloc(1, sizeof(*j));
    /* 2 threads, 4 MiB: 8 pieces; the late helper takes one. */
    struct fake late = {.hold_first = 1, .caller_moves_all = 7};
    struct fake f = {0};

    CHECK(j != NULL);
    fill_host(5);
    make_batch(j, HMAF_XFER_READ, 0, 4u << 20, 1, &rng);
    CHECK_OK(run(&sp, 2, j, &late));
    check_read(j);
    CHECK_EQ(atomic_load(&late.by_helper), 1);
    CHECK_EQ(atomic_load(&sp.misses), 1);
    CHECK(atomic_load(&sp.quiet_until) > atomic_load(&late.run_start));
    /* Meanwhile, the caller moves everything itself. */
    atomic_store(&sp.quiet_until, UINT64_MAX);
    f.caller = pthread_self();
    CHECK_OK(hmaf__cma_split_move(&sp, 2, &j->batch, j->total, fake_move, &f));
    CHECK_EQ(atomic_load(&f.moves), 1);
    CHECK_EQ(atomic_load(&f.by_helper), 0);
    free_batch(j);
    free(j);
    hmaf__cma_split_fini(&sp);
}

/* Several callers on one pool of fewer helpers, at once. */
struct caller {
    struct cma_split *sp;
    unsigned index;
};

static void *run_caller(void *arg)
{
    struct caller *c = arg;
    uint64_t rng = 1000 + c->index;

    for (unsigned r = 0; r < CALLER_RUNS; r++) {
        struct job_spec *j = calloc(1, sizeof(*j));
        struct fake f = {0};
        uint64_t total = CMA_SPLIT_MIN + next_rand(&rng) % (1u << 20);

        CHECK(j != NULL);
        make_batch(j, HMAF_XFER_READ, next_rand(&rng) % (HOST_LEN - total),
                   total, 1 + (uint32_t)(next_rand(&rng) % 100), &rng);
        CHECK_OK(run(c->sp, 3, j, &f));
        CHECK_EQ(atomic_load(&f.bytes), total);
        check_read(j);
        free_batch(j);
        free(j);
    }
    return NULL;
}

static void test_many_callers(void)
{
    static struct cma_split sp;
    struct caller c[CALLERS];
    pthread_t t[CALLERS];

    fill_host(4);
    for (unsigned i = 0; i < CALLERS; i++) {
        c[i] = (struct caller){.sp = &sp, .index = i};
        CHECK_EQ(pthread_create(&t[i], NULL, run_caller, &c[i]), 0);
    }
    for (unsigned i = 0; i < CALLERS; i++) {
        pthread_join(t[i], NULL);
    }
    hmaf__cma_split_fini(&sp);
}

/* One thread allowed (or 0): no helper is started, the move gets the
 * batch whole; small batches are not worth a split; a pool never started
 * ends. */
static void test_no_split(void)
{
    uint64_t rng = 3, total = 0;

    for (unsigned threads = 0; threads < 2; threads++) {
        static struct cma_split sp;
        struct job_spec *j = calloc(1, sizeof(*j));
        struct fake f = {0};

        CHECK(j != NULL);
        make_batch(j, HMAF_XFER_READ, 0, 2u << 20, 4, &rng);
        CHECK_OK(run(&sp, threads, j, &f));
        CHECK_EQ(atomic_load(&f.moves), 1);
        CHECK_EQ(atomic_load(&sp.started), 2);
        CHECK_EQ(sp.nhelpers, 0);
        CHECK(hmaf__cma_split_worth(&j->batch, &total));
        CHECK_EQ(total, 2u << 20);
        j->xfers[0].len = 1;
        j->batch.count = 1;
        CHECK(!hmaf__cma_split_worth(&j->batch, &total));
        free_batch(j);
        free(j);
        hmaf__cma_split_fini(&sp);
        memset(&sp, 0, sizeof(sp));
        hmaf__cma_split_fini(&sp);
    }
}

int main(void)
{
    host = malloc(HOST_LEN);
    CHECK(host != NULL);
    test_note_failure();
    test_coverage();
    test_first_failure_wins();
    test_helpers_take_pieces();
    test_busy_pool();
    test_callers_fill_threads();
    test_held_up_goes_unsplit();
    test_many_callers();
    test_no_split();
    free(host);
    return 0;
}
