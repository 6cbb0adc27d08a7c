/*
 * cma: a large transfer copied by several threads at once (cma_split.h).
 *
 * A split transfer is a job of pieces of equal size, taken by the calling
 * thread from the front and by the helpers it claimed from the back.
 * A helper is claimed only when idle, and only while the callers moving
 * large batches and the helpers they hold leave room within `threads`:
 * a busy pool (other callers' jobs) leaves the caller to do the work
 * itself, so callers never queue behind one another, and threads that
 * already keep the cpus busy with transfers of their own get no helpers
 * to compete with.
 *
 * The caller copies pieces from the start, so a helper that wakes late
 * finds less to do, or nothing: once no piece is left, the caller
 * withdraws every offer not yet picked up and waits only for the helpers
 * that did pick theirs up, each at most one piece away from done.
 *
 * Helpers that get no cpu in time (other processes have them all) keep
 * the caller waiting for a piece they were preempted in. A job whose
 * caller waited for its helpers longer than their pieces would have taken
 * it makes the next transfers go unsplit for a while (SPLIT_QUIET_NS,
 * doubling with each such job in a row); then one is split again to see.
 * So a busy machine costs a split transfer now and then, not each one.
 *
 * Errors: the job reports the status of the first failed piece in byte
 * order, which is what an unsplit copy would have stopped at: every piece
 * before it runs; no piece after it is taken once it failed (some may
 * have run already). What a failed write has written is then any of its
 * pieces, not only a prefix (session.h says so).
 *
 * A helper's state word: generation (bits 4..31), WAITED (someone sleeps
 * on the word: wake it) and phase. The generation ties an offer to the
 * caller that made it: a caller withdraws its own offer, never one a
 * later caller made to the same helper.
 *
 *   IDLE --claim--> CLAIMED --offer--> OFFERED --helper--> BUSY --> IDLE
 *                                         \--caller withdraws--> IDLE
 *
 * A forked child's copy of a session never posts (core/forks.c), and its
 * engine context is freed without ctx_close: these helpers, which stayed
 * with the parent, are never offered a job there nor joined.
 */
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "engine/cma/cma_split.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/thread.h"

/* Each thread of a job gets this much to copy at least. */
#define SPLIT_SHARE_MIN (512u << 10)
/* Pieces per thread of a job: the more, the less a late helper's last
 * piece keeps the caller waiting, and the more calls (each pins its
 * pages anew at the edges). */
#define SPLIT_PIECES_PER_THREAD 4
#define SPLIT_PIECE_MIN         (128u << 10)
#define SPLIT_PIECE_MAX         (1u << 20)
#define SPLIT_PIECE_ALIGN       4096u
/* Descriptors handed to the engine's move at once. */
#define SPLIT_SUB_MAX 64
/* A helper that finished a job spins this long for the next before it
 * sleeps: back-to-back large transfers then find it awake (a futex wake-up
 * takes tens of microseconds on a busy machine). A caller waits for a
 * helper's last piece spinning as long, then asleep. */
#define SPLIT_SPIN_NS 50000u
/* Transfers go unsplit this long after a job whose helpers held the
 * caller up, twice as long after two such jobs in a row, and so on up to
 * 2^SPLIT_QUIET_DOUBLINGS times as long. */
#define SPLIT_QUIET_NS        1000000u
#define SPLIT_QUIET_DOUBLINGS 6

enum {
    PH_IDLE,
    PH_CLAIMED,
    PH_OFFERED,
    PH_BUSY,
    PH_STOP,
};
#define PHASE_MASK 7u
#define WAITED     8u
#define GEN_ONE    16u

struct cma_split_job {
    const struct hmaf_xfer_batch *batch;
    cma_split_move_fn move;
    const void *arg;
    uint64_t total;
    uint64_t piece; /* bytes per piece; the last may be shorter */
    uint32_t npieces;
    /* The pieces not taken yet, [front, back): back << 32 | front. The
     * caller takes from the front, helpers from the back, so that each
     * thread copies much the same bytes from one transfer to the next and
     * finds them in its own cache when they are warm. */
    _Atomic uint64_t left;
    _Atomic uint64_t failed; /* first failed piece << 32 | -status */
};

#define NO_FAILURE UINT64_MAX

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

static uint32_t phase_of(uint32_t st)
{
    return st & PHASE_MASK;
}

static uint32_t gen_of(uint32_t st)
{
    return st & ~(PHASE_MASK | WAITED);
}

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
    /* EINTR, EAGAIN: the caller looks again. */
    (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word)
{
    (void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Set `word` to `val` and wake whoever sleeps on it. */
static void set_state(_Atomic uint32_t *word, uint32_t val)
{
    if (atomic_exchange_explicit(word, val, memory_order_acq_rel) & WAITED) {
        futex_wake(word);
    }
}

/* Wait while keep(state, gen) holds: spinning for SPLIT_SPIN_NS, then
 * asleep on the word. Returns the first state for which it does not. */
static uint32_t wait_state(_Atomic uint32_t *word,
                           int (*keep)(uint32_t st, uint32_t gen), uint32_t gen)
{
    uint64_t spin_until = hmaf__now_ns() + SPLIT_SPIN_NS;
    int spinning = 1;

    for (unsigned i = 1;; i++) {
        uint32_t st = atomic_load_explicit(word, memory_order_acquire);

        if (!keep(st, gen)) {
            return st;
        }
        if (spinning) {
            cpu_relax();
            spinning = i % 128 != 0 || hmaf__now_ns() < spin_until;
            continue;
        }
        if (!(st & WAITED) && !atomic_compare_exchange_weak_explicit(
                                  word, &st, st | WAITED, memory_order_relaxed,
                                  memory_order_relaxed)) {
            continue;
        }
        futex_wait(word, st | WAITED);
    }
}

/* ------------------------------------------------------------------ */
/* Pieces                                                              */
/* ------------------------------------------------------------------ */

int hmaf__cma_split_worth(const struct hmaf_xfer_batch *batch,
                          uint64_t *total_out)
{
    uint64_t total = 0;

    for (uint32_t i = 0; i < batch->count; i++) {
        total += batch->xfers[i].len;
    }
    *total_out = total;
    return total >= CMA_SPLIT_MIN;
}

static void note_failure(struct cma_split_job *job, uint32_t piece, int ret)
{
    uint64_t mine = (uint64_t)piece << 32 | (uint32_t)-ret;
    uint64_t seen = atomic_load_explicit(&job->failed, memory_order_relaxed);

    while (mine < seen && !atomic_compare_exchange_weak_explicit(
                              &job->failed, &seen, mine, memory_order_relaxed,
                              memory_order_relaxed)) {
    }
}

/* Move bytes [off, off + len) of the job's batch: its descriptors from
 * the one holding off on, cut to the range, SPLIT_SUB_MAX at a time. */
static int move_range(const struct cma_split_job *job, uint64_t off,
                      uint64_t len)
{
    const struct hmaf_xfer_batch *batch = job->batch;
    struct hmaf_xfer sub[SPLIT_SUB_MAX];
    uint32_t i = 0;
    int ret = 0;

    while (off >= batch->xfers[i].len) {
        off -= batch->xfers[i++].len;
    }
    while (len > 0 && ret == 0) {
        struct hmaf_xfer_batch piece = {.op = batch->op, .xfers = sub};

        for (; piece.count < SPLIT_SUB_MAX && len > 0; i++, off = 0) {
            const struct hmaf_xfer *x = &batch->xfers[i];
            uint64_t n = HMAF_MIN(x->len - off, len);

            sub[piece.count++] = (struct hmaf_xfer){
                .rmem = x->rmem,
                .local = (char *)x->local + off,
                .remote_addr = x->remote_addr + off,
                .len = (size_t)n,
            };
            len -= n;
            if (n < x->len - off) {
                break; /* the range ends inside this descriptor */
            }
        }
        ret = job->move(job->arg, &piece);
    }
    return ret;
}

/* Take the front piece, or the back one; 0 when none is left, or when
 * a piece before them all failed (then none of them is needed). */
static int take_piece(struct cma_split_job *job, int from_back, uint32_t *p_out)
{
    uint64_t left = atomic_load_explicit(&job->left, memory_order_relaxed);

    for (;;) {
        uint32_t front = (uint32_t)left, back = (uint32_t)(left >> 32);
        uint64_t failed =
            atomic_load_explicit(&job->failed, memory_order_relaxed);
        uint64_t rest = from_back ? (uint64_t)(back - 1) << 32 | front
                                  : (uint64_t)back << 32 | (front + 1);

        if (front >= back || failed >> 32 < front) {
            return 0;
        }
        if (atomic_compare_exchange_weak_explicit(&job->left, &left, rest,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *p_out = from_back ? back - 1 : front;
            return 1;
        }
    }
}

/* Take pieces (from the back: helpers) until none is left; returns how
 * many this thread moved. */
static uint32_t run_pieces(struct cma_split_job *job, int from_back)
{
    uint32_t moved = 0, p;

    for (; take_piece(job, from_back, &p); moved++) {
        uint64_t off = (uint64_t)p * job->piece;
        int ret = move_range(job, off, HMAF_MIN(job->piece, job->total - off));

        if (ret < 0) {
            note_failure(job, p, ret);
        }
    }
    return moved;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static int waiting_for_offer(uint32_t st, uint32_t gen)
{
    (void)gen;
    return phase_of(st) == PH_IDLE || phase_of(st) == PH_CLAIMED;
}

static int busy_with(uint32_t st, uint32_t gen)
{
    return phase_of(st) == PH_BUSY && gen_of(st) == gen;
}

/* Helpers run on any cpu the process may use, whatever the thread that
 * started them was pinned to: a pinned caller's helpers would otherwise
 * share its one cpu and gain nothing. (The kernel keeps them within the
 * process's cpuset.) */
static void unpin_self(void)
{
    cpu_set_t all;

    CPU_ZERO(&all);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        CPU_SET(cpu, &all);
    }
    (void)sched_setaffinity(0, sizeof(all), &all);
}

static void *helper_main(void *arg)
{
    struct cma_helper *h = arg;

    unpin_self();
    for (;;) {
        uint32_t st = wait_state(&h->state, waiting_for_offer, 0);
        uint32_t busy = gen_of(st) | PH_BUSY;

        if (phase_of(st) == PH_STOP) {
            return NULL;
        }
        /* Fails when the caller withdrew the offer meanwhile. */
        if (atomic_compare_exchange_strong_explicit(&h->state, &st, busy,
                                                    memory_order_acquire,
                                                    memory_order_relaxed)) {
            (void)run_pieces(h->job, 1);
            set_state(&h->state, gen_of(st) | PH_IDLE);
        }
    }
}

/* Start the helpers, once; 0 while another thread is starting them. */
static unsigned start_helpers(struct cma_split *sp, unsigned threads)
{
    int started = atomic_load_explicit(&sp->started, memory_order_acquire);
    unsigned n = HMAF_MAX(HMAF_MIN(threads, CMA_SPLIT_THREADS_MAX), 1u) - 1;
    unsigned i;

    if (started == 2) {
        return sp->nhelpers;
    }
    if (started != 0 ||
        !atomic_compare_exchange_strong(&sp->started, &started, 1)) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        atomic_init(&sp->helpers[i].state, PH_IDLE);
        if (hmaf__thread_start(&sp->helpers[i].thread, helper_main,
                               &sp->helpers[i]) < 0) {
            hmaf__log_warn("cma: %u of %u split helper threads started", i, n);
            break;
        }
    }
    sp->nhelpers = i;
    atomic_store_explicit(&sp->started, 2, memory_order_release);
    return i;
}

/* Claim up to `want` idle helpers: their generations to gens[], their
 * indexes to idx[]. Busy ones are passed over; an idle one is claimed even
 * while it marks itself asleep. */
static unsigned claim_helpers(struct cma_split *sp, unsigned nhelpers,
                              unsigned want, unsigned *idx, uint32_t *gens)
{
    unsigned n = 0;

    for (unsigned i = 0; i < nhelpers && n < want; i++) {
        _Atomic uint32_t *word = &sp->helpers[i].state;
        uint32_t st = atomic_load_explicit(word, memory_order_relaxed);

        while (phase_of(st) == PH_IDLE) {
            uint32_t claimed =
                (gen_of(st) + GEN_ONE) | (st & WAITED) | PH_CLAIMED;
            if (atomic_compare_exchange_weak_explicit(word, &st, claimed,
                                                      memory_order_acquire,
                                                      memory_order_relaxed)) {
                idx[n] = i;
                gens[n++] = gen_of(claimed);
                break;
            }
        }
    }
    return n;
}

/* Withdraw the offer, or wait until the helper that took it is done. */
static void release_helper(struct cma_helper *h, uint32_t gen)
{
    uint32_t offered = gen | PH_OFFERED;

    if (!atomic_compare_exchange_strong_explicit(
            &h->state, &offered, gen | PH_IDLE, memory_order_acq_rel,
            memory_order_relaxed)) {
        (void)wait_state(&h->state, busy_with, gen);
    }
}

/* ------------------------------------------------------------------ */
/* Jobs                                                                */
/* ------------------------------------------------------------------ */

/* Threads worth using for total bytes: each gets SPLIT_SHARE_MIN. */
static unsigned threads_for(uint64_t total, unsigned threads)
{
    uint64_t n = total / SPLIT_SHARE_MIN;

    return (unsigned)HMAF_MAX(1u, HMAF_MIN(n, (uint64_t)threads));
}

static void job_init(struct cma_split_job *job, unsigned nthreads)
{
    uint64_t piece = job->total / (nthreads * SPLIT_PIECES_PER_THREAD);

    piece =
        (piece + SPLIT_PIECE_ALIGN - 1) / SPLIT_PIECE_ALIGN * SPLIT_PIECE_ALIGN;
    piece = HMAF_MAX(piece, SPLIT_PIECE_MIN);
    piece = HMAF_MIN(piece, SPLIT_PIECE_MAX);
    job->piece = piece;
    job->npieces = (uint32_t)((job->total + piece - 1) / piece);
    atomic_init(&job->left, (uint64_t)job->npieces << 32);
    atomic_init(&job->failed, NO_FAILURE);
}

/* After a job: did its helpers hold the caller up longer than their
 * pieces would have taken it (pieces are of one size, so its own pieces'
 * time tells)? Then go unsplit for a while; else splitting pays. */
static void judge_job(struct cma_split *sp, const struct cma_split_job *job,
                      uint32_t mine, uint64_t own_ns, uint64_t waited_ns)
{
    uint32_t theirs = job->npieces > mine ? job->npieces - mine : 0;
    uint64_t saved = mine > 0 ? own_ns / mine * theirs : 0;
    unsigned misses;

    /* A slack of 1/16: a helper finishing just after the caller is no
     * reason to stop. */
    if (waited_ns <= saved + own_ns / 16) {
        if (atomic_load_explicit(&sp->misses, memory_order_relaxed) != 0) {
            atomic_store_explicit(&sp->misses, 0, memory_order_relaxed);
        }
        return;
    }
    misses = atomic_load_explicit(&sp->misses, memory_order_relaxed);
    misses = HMAF_MIN(misses + 1, SPLIT_QUIET_DOUBLINGS + 1u);
    atomic_store_explicit(&sp->misses, misses, memory_order_relaxed);
    atomic_store_explicit(&sp->quiet_until,
                          hmaf__now_ns() +
                              ((uint64_t)SPLIT_QUIET_NS << (misses - 1)),
                          memory_order_relaxed);
}

/* Helpers a caller may claim for total bytes, of the nhelpers started:
 * none while transfers go unsplit (judge_job), else as many as are worth
 * it (threads_for) and as the session's threads not in use allow: `busy`
 * counts the callers moving large batches, this one included, and the
 * helpers they hold. */
static unsigned helpers_wanted(const struct cma_split *sp, unsigned nhelpers,
                               unsigned threads, uint64_t total, unsigned busy,
                               uint64_t now)
{
    unsigned worth = threads_for(total, nhelpers + 1) - 1;

    if (now < atomic_load_explicit(&sp->quiet_until, memory_order_relaxed) ||
        busy >= threads) {
        return 0;
    }
    return HMAF_MIN(worth, threads - busy);
}

/* Offer the job to the n helpers claimed, move pieces until none is left,
 * then take back the offers not picked up and wait for the helpers that
 * did. Returns the job's status. */
static int run_job(struct cma_split *sp, struct cma_split_job *job, unsigned n,
                   const unsigned *idx, const uint32_t *gens, uint64_t t0)
{
    uint64_t failed, t1;
    uint32_t mine;

    job_init(job, n + 1);
    for (unsigned i = 0; i < n; i++) {
        sp->helpers[idx[i]].job = job;
        set_state(&sp->helpers[idx[i]].state, gens[i] | PH_OFFERED);
    }
    mine = run_pieces(job, 0);
    t1 = hmaf__now_ns();
    for (unsigned i = 0; i < n; i++) {
        release_helper(&sp->helpers[idx[i]], gens[i]);
    }
    judge_job(sp, job, mine, t1 - t0, hmaf__now_ns() - t1);
    failed = atomic_load_explicit(&job->failed, memory_order_relaxed);
    return failed == NO_FAILURE ? 0 : -(int)(uint32_t)failed;
}

int hmaf__cma_split_move(struct cma_split *sp, unsigned threads,
                         struct hmaf_xfer_batch *batch, uint64_t total,
                         cma_split_move_fn move, const void *arg)
{
    struct cma_split_job job = {
        .batch = batch, .move = move, .arg = arg, .total = total};
    unsigned idx[CMA_SPLIT_THREADS_MAX - 1];
    uint32_t gens[CMA_SPLIT_THREADS_MAX - 1];
    unsigned nhelpers = start_helpers(sp, threads);
    unsigned busy =
        atomic_fetch_add_explicit(&sp->busy, 1, memory_order_relaxed) + 1;
    uint64_t t0 = hmaf__now_ns();
    unsigned want =
        helpers_wanted(sp, nhelpers, HMAF_MIN(threads, CMA_SPLIT_THREADS_MAX),
                       total, busy, t0);
    unsigned n = want > 0 ? claim_helpers(sp, nhelpers, want, idx, gens) : 0;
    int ret;

    if (n == 0) {
        ret = move(arg, batch); /* helpers busy, held up lately, or none */
    } else {
        atomic_fetch_add_explicit(&sp->busy, n, memory_order_relaxed);
        ret = run_job(sp, &job, n, idx, gens, t0);
    }
    atomic_fetch_sub_explicit(&sp->busy, n + 1, memory_order_relaxed);
    return ret;
}

void hmaf__cma_split_fini(struct cma_split *sp)
{
    if (atomic_load(&sp->started) != 2) {
        return;
    }
    for (unsigned i = 0; i < sp->nhelpers; i++) {
        set_state(&sp->helpers[i].state, PH_STOP);
        pthread_join(sp->helpers[i].thread, NULL);
    }
}
