/*
 * Consistent reads at their edges: each record of
 * hmaf_session_read_consistentv() has its own status — one record that
 * is not exposed must not fail the records read beside it (with cma, whose
 * ordered reads put many records in one vectored read, it failed them
 * all) —, records that straddle two exposures or lie past them, a record
 * whose version word stays odd, a revoked record, lengths of 0 and
 * beyond any exposure, many records at once, max_retries at its largest.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "target.h"

#define PAGE 4096u
#define HALF (8 * PAGE) /* each of the two adjacent exposures */
#define REC 64u
#define NREC (2 * HALF / REC)

/* The host: "recs", two adjacent read-only exposures of HALF bytes each;
 * record i is the REC bytes at i * REC, filled with i, its version word
 * the first word of "seqs" (one word guards them all, as seqlock.h
 * allows) — except record ODD_REC, guarded by the second word, which
 * stays odd. "rev" is REC bytes exposed until command 'r'; "hole" is
 * never exposed. */
#define ODD_REC 5u

struct host {
    uint8_t *recs, *rev, *hole;
    uint64_t *seqs;
};

static struct host h;

static int setup(hmaf_agent_t *agent, void *arg)
{
    int ret;

    (void)arg;
    h.recs = aligned_alloc(PAGE, 2 * HALF);
    h.seqs = aligned_alloc(PAGE, PAGE);
    h.rev = aligned_alloc(PAGE, PAGE);
    h.hole = aligned_alloc(PAGE, PAGE);
    if (h.recs == NULL || h.seqs == NULL || h.rev == NULL || h.hole == NULL) {
        return HMAF_ENOMEM;
    }
    for (unsigned i = 0; i < NREC; i++) {
        memset(h.recs + i * REC, (int)(i & 0xff), REC);
    }
    memset(h.seqs, 0, PAGE);
    h.seqs[1] = 7; /* a write that never ends */
    memset(h.rev, 0xee, PAGE);
    ret = hmaf_agent_expose(agent, h.recs, HALF, HMAF_ACCESS_READ);
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h.recs + HALF, HALF, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h.seqs, PAGE, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h.rev, PAGE, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "recs", h.recs, 2 * HALF);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "seqs", h.seqs, PAGE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "rev", h.rev, PAGE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "hole", h.hole, PAGE);
    }
    return ret;
}

static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    (void)arg;
    return cmd == 'r' && hmaf_agent_revoke(agent, h.rev, PAGE) == 0;
}

static uint64_t recs, seqs, rev, hole;
static uint8_t bufs[NREC][REC];


static hmaf_consistent_read_t rec(unsigned i)
{
    return (hmaf_consistent_read_t){
        .seq_addr = seqs + (i == ODD_REC ? 8 : 0),
        .remote_addr = recs + (uint64_t)i * REC,
        .buf = bufs[i],
        .len = REC,
        .status = 1};
}

static void check_filled(unsigned i)
{
    for (unsigned k = 0; k < REC; k++) {
        CHECK_EQ(bufs[i][k], i & 0xff);
    }
}

/* Good records around bad ones: each its own status. */
static void check_each_its_own(hmaf_session_t *s)
{
    enum { N = 8 };
    hmaf_consistent_read_t r[N];
    int want[N] = {0, HMAF_EFAULT, 0, 0, HMAF_EBUSY, 0, HMAF_EFAULT, 0};

    memset(bufs, 0, sizeof(bufs));
    r[0] = rec(0);
    r[1] = rec(1);
    r[1].remote_addr = hole; /* not exposed */
    r[2] = rec(2);
    r[3] = rec(HALF / REC - 1); /* the last record of the first half */
    r[4] = rec(ODD_REC);
    r[5] = rec(HALF / REC); /* the first of the second half */
    r[6] = rec(3);
    r[6].seq_addr = hole; /* its version word not exposed */
    r[7] = rec(NREC - 1);
    CHECK_ERR(hmaf_session_read_consistentv(s, r, N, 3), HMAF_EFAULT);
    for (unsigned i = 0; i < N; i++) {
        CHECK_ERR(r[i].status, want[i]);
    }
    check_filled(0);
    check_filled(2);
    check_filled(HALF / REC - 1);
    check_filled(HALF / REC);
    check_filled(NREC - 1);
    /* the first failure in array order decides the return */
    CHECK_ERR(hmaf_session_read_consistentv(s, &r[4], 2, 3), HMAF_EBUSY);
    CHECK_ERR(r[5].status, 0);
}

/* Every record at once, one of them not exposed, one odd. */
static void check_many(hmaf_session_t *s)
{
    static hmaf_consistent_read_t r[NREC];

    memset(bufs, 0, sizeof(bufs));
    for (unsigned i = 0; i < NREC; i++) {
        r[i] = rec(i);
    }
    r[NREC / 3].remote_addr = hole;
    CHECK_ERR(hmaf_session_read_consistentv(s, r, NREC, 2), HMAF_EBUSY);
    for (unsigned i = 0; i < NREC; i++) {
        if (i == NREC / 3) {
            CHECK_ERR(r[i].status, HMAF_EFAULT);
        } else if (i == ODD_REC) {
            CHECK_ERR(r[i].status, HMAF_EBUSY);
        } else {
            CHECK_ERR(r[i].status, 0);
            check_filled(i);
        }
    }
}

/* A record across the seam of the two exposures reads as a plain read of
 * it does; one running past the end fails as a plain read does. */
static void check_straddle(hmaf_session_t *s)
{
    uint8_t plain[2 * REC], got[2 * REC];
    uint64_t at = recs + HALF - REC;

    CHECK_OK(hmaf_session_read(s, plain, at, sizeof(plain)));
    CHECK_OK(hmaf_session_read_consistent(s, seqs, got, at, sizeof(got), 0));
    CHECK(memcmp(plain, got, sizeof(got)) == 0);
    at = recs + 2 * HALF - REC;
    CHECK_ERR(hmaf_session_read_consistent(s, seqs, got, at, sizeof(got), 0),
              hmaf_session_read(s, plain, at, sizeof(plain)));
}

static void check_lengths(hmaf_session_t *s)
{
    size_t big = 64u << 20; /* far past every exposure */
    uint8_t *buf = malloc(big);
    uint8_t one[8];

    CHECK(buf != NULL);
    CHECK_ERR(hmaf_session_read_consistent(s, seqs, one, recs, 0, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(s, seqs + 4, one, recs, 8, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(s, seqs, NULL, recs, 8, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(NULL, seqs, one, recs, 8, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistentv(s, NULL, 1, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(s, seqs, buf, recs, big, 0),
              HMAF_EFAULT);
    /* the end of the address space: as plain reads say */
    CHECK_ERR(hmaf_session_read_consistent(s, seqs, one, UINT64_MAX - 3, 8, 0),
              hmaf_session_read(s, one, UINT64_MAX - 3, 8));
    CHECK_ERR(hmaf_session_read_consistent(s, UINT64_MAX - 7, one, recs, 8, 0),
              hmaf_session_read(s, one, UINT64_MAX - 7, 8));
    /* the most retries there are: a stable record needs none */
    CHECK_OK(hmaf_session_read_consistent(s, seqs, buf, recs, 2 * HALF,
                                          UINT_MAX));
    CHECK_OK(hmaf_session_read_consistent(s, seqs, one, recs, 8, UINT_MAX));
    free(buf);
}

static void check_revoke(struct target *t, hmaf_session_t *s)
{
    uint8_t got[REC];

    CHECK_OK(hmaf_session_read_consistent(s, seqs, got, rev, REC, 0));
    CHECK_EQ(got[REC - 1], 0xee);
    CHECK_EQ(target_command(t, 'r'), 1);
    CHECK_ERR(hmaf_session_read_consistent(s, seqs, got, rev, REC, 0),
              HMAF_EFAULT);
}

int main(void)
{
    struct target_options o = {.setup = setup, .command = command};
    struct target t;
    hmaf_session_t *s;

    target_start(&t, &o);
    s = target_connect(&t);
    recs = target_root(s, "recs");
    seqs = target_root(s, "seqs");
    rev = target_root(s, "rev");
    hole = target_root(s, "hole");
    check_each_its_own(s);
    check_many(s);
    check_straddle(s);
    check_lengths(s);
    check_revoke(&t, s);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    return 0;
}
