/*
 * Consistent reads (seqlock.h): version word, record, version word again,
 * until both words are equal and even.
 *
 * With an engine whose reads of one post are ordered
 * (HMAF_ENGINE_ORDERED_READS: cma on x86), the three go in one vectored
 * read, and many records' triples in one: one system call per round.
 * Such a read stays far below the size at which a transfer may be split
 * over threads (cma: 1 MiB), which would read its pieces in parallel:
 * records longer than ORDERED_RECORD_MAX take the three-read way. Without
 * the flag, each read completes before the next is posted; a version word
 * found odd costs no read of the record.
 */
#include <sched.h>
#include <time.h>

#include <hmaf/error.h>
#include <hmaf/seqlock.h>

#include "core/session_int.h"
#include "util/compiler.h"

#define ORDERED_RECORD_MAX (64u << 10)
#define ORDERED_ROUND_BYTES (256u << 10)
#define ORDERED_ROUND_RECORDS 32u
/* Backoff after the n-th torn read: spins growing, then yields, then
 * sleeps growing up to BACKOFF_SLEEP_MAX_NS. */
#define BACKOFF_SPINS 6u
#define BACKOFF_YIELDS 24u
#define BACKOFF_SLEEP_MAX_NS 100000u

static void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void back_off(unsigned attempt)
{
    if (attempt < BACKOFF_SPINS) {
        for (unsigned i = 0; i < 32u << attempt; i++) {
            cpu_pause();
        }
    } else if (attempt < BACKOFF_YIELDS) {
        sched_yield();
    } else {
        unsigned shift = HMAF_MIN(attempt - BACKOFF_YIELDS, 7u);
        long ns = (long)HMAF_MIN(1000u << shift, BACKOFF_SLEEP_MAX_NS);
        nanosleep(&(struct timespec){0, ns}, NULL);
    }
}

static int settled(uint64_t before, uint64_t after)
{
    return before == after && (before & 1) == 0;
}

static int check_recs(const hmaf_consistent_read_t *recs, size_t n)
{
    if (recs == NULL || n == 0) {
        return HMAF_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i].buf == NULL || recs[i].len == 0 ||
            (recs[i].seq_addr & 7) != 0) {
            return HMAF_EINVAL;
        }
    }
    return 0;
}

static int ordered(const hmaf_session_t *s, const hmaf_consistent_read_t *r)
{
    return (s->ops->flags & HMAF_ENGINE_ORDERED_READS) &&
           r->len <= ORDERED_RECORD_MAX;
}

/* The three reads, one after the other. */
static void read_apart(hmaf_session_t *s, hmaf_consistent_read_t *r)
{
    uint64_t before, after;
    int ret = hmaf_session_read(s, &before, r->seq_addr, sizeof(before));

    if (ret == 0 && (before & 1) != 0) {
        return; /* a write is on: the record would be torn */
    }
    if (ret == 0) {
        ret = hmaf_session_read(s, r->buf, r->remote_addr, r->len);
    }
    if (ret == 0) {
        ret = hmaf_session_read(s, &after, r->seq_addr, sizeof(after));
    }
    r->status = ret < 0 ? ret : settled(before, after) ? 0 : HMAF_EBUSY;
}

/* Records whose triples go in one vectored read. */
struct triples {
    size_t k;
    hmaf_consistent_read_t *in[ORDERED_ROUND_RECORDS];
    hmaf_seg_t segs[3 * ORDERED_ROUND_RECORDS];
    uint64_t words[2 * ORDERED_ROUND_RECORDS];
};

static void add_triple(struct triples *t, hmaf_consistent_read_t *r)
{
    size_t i = t->k++;

    t->in[i] = r;
    t->segs[3 * i] = (hmaf_seg_t){&t->words[2 * i], r->seq_addr, 8};
    t->segs[3 * i + 1] = (hmaf_seg_t){r->buf, r->remote_addr, r->len};
    t->segs[3 * i + 2] = (hmaf_seg_t){&t->words[2 * i + 1], r->seq_addr, 8};
}

/* The vectored read; each record's status, and the read's. */
static int read_triples(hmaf_session_t *s, struct triples *t)
{
    int ret = hmaf_session_readv(s, t->segs, 3 * t->k);

    for (size_t i = 0; i < t->k; i++) {
        t->in[i]->status = ret < 0 ? ret
                           : settled(t->words[2 * i], t->words[2 * i + 1])
                               ? 0
                               : HMAF_EBUSY;
    }
    return ret;
}

/* The unsettled ordered records from *next on, as many as a round takes,
 * in one vectored read; *next moves past them. A read that fails says
 * nothing of which record it failed on (one not exposed, say): then each
 * record is read again alone, and has its own status. */
static void read_together(hmaf_session_t *s, hmaf_consistent_read_t *recs,
                          size_t n, size_t *next)
{
    struct triples t, one;
    size_t bytes = 0;

    t.k = 0;
    for (; *next < n && t.k < ORDERED_ROUND_RECORDS; (*next)++) {
        hmaf_consistent_read_t *r = &recs[*next];
        if (r->status != HMAF_EBUSY || !ordered(s, r)) {
            continue;
        }
        if (t.k > 0 && bytes + r->len > ORDERED_ROUND_BYTES) {
            break;
        }
        bytes += r->len;
        add_triple(&t, r);
    }
    if (t.k == 0 || read_triples(s, &t) == 0 || t.k == 1) {
        return;
    }
    for (size_t i = 0; i < t.k; i++) {
        one.k = 0;
        add_triple(&one, t.in[i]);
        read_triples(s, &one);
    }
}

/* One round over every unsettled record; how many are still unsettled. */
static size_t read_round(hmaf_session_t *s, hmaf_consistent_read_t *recs,
                         size_t n)
{
    size_t left = 0;

    for (size_t next = 0; next < n;) {
        read_together(s, recs, n, &next);
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i].status == HMAF_EBUSY && !ordered(s, &recs[i])) {
            read_apart(s, &recs[i]);
        }
        left += recs[i].status == HMAF_EBUSY;
    }
    return left;
}

static int first_error(const hmaf_consistent_read_t *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (recs[i].status < 0) {
            return recs[i].status;
        }
    }
    return 0;
}

HMAF_API int hmaf_session_read_consistentv(hmaf_session_t *session,
                                           hmaf_consistent_read_t *recs,
                                           size_t n, unsigned max_retries)
{
    size_t left;
    int ret = session == NULL ? HMAF_EINVAL : check_recs(recs, n);

    if (ret < 0) {
        return ret;
    }
    if (max_retries == 0) {
        max_retries = HMAF_SEQLOCK_RETRIES_DEFAULT;
    }
    for (size_t i = 0; i < n; i++) {
        recs[i].status = HMAF_EBUSY; /* not read yet */
    }
    left = read_round(session, recs, n);
    /* Counted so that it ends at max_retries even at UINT_MAX. */
    for (unsigned retry = 0; left > 0 && retry < max_retries; retry++) {
        hmaf__count(session, consistent_retries, 1);
        back_off(retry);
        left = read_round(session, recs, n);
    }
    if (left > 0) {
        hmaf__count(session, consistent_busy, 1);
    }
    return first_error(recs, n);
}

HMAF_API int hmaf_session_read_consistent(hmaf_session_t *session,
                                          uint64_t seq_addr, void *buf,
                                          uint64_t remote_addr, size_t len,
                                          unsigned max_retries)
{
    hmaf_consistent_read_t r = {.seq_addr = seq_addr,
                                .remote_addr = remote_addr,
                                .buf = buf,
                                .len = len};

    return hmaf_session_read_consistentv(session, &r, 1, max_retries);
}
