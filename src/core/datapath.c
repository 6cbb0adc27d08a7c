/*
 * The dpu side's data path, from the public calls down to the engine:
 *
 *   the calls    hmaf_session_read/write move one segment,
 *                hmaf_session_readv/writev many.
 *   one segment  of at most HMAF_MOVE_ONE_MAX bytes that one cached
 *                region covers moves in one step of its own, through the
 *                engine's move_one (transfer_one); anything else, errors
 *                included, takes
 *   the call     (transfer_call): steps until every segment has moved,
 *                meeting what a step could not do itself — a miss (the
 *                range is registered), a look at the revocation epoch it
 *                could not carry (the look is taken).
 *   a step       builds one batch and runs it inside a read-side section,
 *                carrying a look at the epoch along when one is due.
 *   a batch      is the segments from the call's cursor on, split at
 *                region boundaries and at the engine's transfer limit,
 *   the engine   posts it and is driven until it completes.
 *
 * Posted requests on an asynchronous engine (request.c) take steps of
 * their own, at the end of this file.
 *
 * A cache hit costs a coarse clock read (mostly the thread's last one,
 * util/clock.h), a region lookup (none when the
 * thread's last region covers it) and plain stores to this thread's own
 * slot: no lock, no locked instruction, and no system call besides the
 * transfer itself.
 */
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>
#include <hmaf/session.h>
#include <hmaf/types.h>

#include "core/datapath.h"
#include "core/session_int.h"
#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/mirrors.h"
#include "util/wire.h"

/* Transfer descriptors built per engine post; they live on the stack.
 * Calls of up to XFER_SMALL segments use a small array. */
#define XFER_BATCH_MAX 1024
#define XFER_SMALL     8
/* Misses in a row before a call gives up: only a region cache far too
 * small for the threads sharing it evicts what was just registered. */
#define XFER_MISSES_MAX 64
/* Bytes one step moves at most, so that a step is short (milliseconds)
 * against the host's revocation wait. */
#define STEP_BYTES_MAX (16ull << 20)
/* Bounce buffer: mirror memory moves through this much at a time. */
#define BOUNCE_MAX (1u << 20)

/* What a step left its call to do. Errors travel apart from it (in the
 * call's err), so a step result can never pass for an error code, nor an
 * error for a step result. */
enum step {
    STEP_MOVED,  /* its transfers moved: the call goes on from its cursor */
    STEP_FAILED, /* the call ends with c->err */
    STEP_MISS,   /* no cached region covers c->miss: register it first */
    STEP_LOOK,   /* a look at the epoch is due, and goes first */
    STEP_SYNC,   /* posted: more than one batch (HMAF_POST_SYNC) */
};

struct xfer_cursor {
    size_t seg;   /* current segment */
    uint64_t off; /* bytes of it already handed to the engine */
};

/* What one call carries through its steps. */
struct xfer_call {
    struct hmaf_session *s;
    struct hmaf__reader *reader; /* this thread's slot */
    enum hmaf_xfer_op op;
    const hmaf_seg_t *segs;
    size_t nsegs;
    struct xfer_cursor cur;
    uint64_t now;   /* coarse clock when the current step began */
    uint64_t bytes; /* moved so far */
    uint64_t miss;  /* STEP_MISS: the address no cached region covers */
    int err;        /* STEP_FAILED: why */
    int no_carry;   /* a carried look failed: looks go the separate way */
};

/* A look at the epoch carried by a step (see "Carried looks" below). */
struct carried_look {
    struct xfer_cursor start; /* where the step began: redone from here */
    uint64_t start_bytes;     /* the call's bytes then */
    uint8_t word[8];          /* the epoch as the host's mailbox holds it */
    int status;               /* a write's look: its batch's */
    struct hmaf_xfer xfer;    /* ... and the batch itself */
    struct hmaf_xfer_batch batch;
};

/* Callers come first, callees after them. */
static int transfer_one(struct hmaf_session *s, enum hmaf_xfer_op op,
                        void *local, uint64_t remote_addr, size_t len);
static int one_step_fits(const struct hmaf_session *s,
                         const struct hmaf_xfer *x);
static int one_step(struct hmaf_session *s, enum hmaf_xfer_op op,
                    struct hmaf_xfer *x, int *err_out);
static int one_step_region(struct hmaf_session *s, struct hmaf__reader *reader,
                           enum hmaf_xfer_op op, const struct hmaf_xfer *x,
                           struct hmaf__rc_hit *hit_out);
static int transfer_one_general(struct hmaf_session *s, enum hmaf_xfer_op op,
                                const struct hmaf_xfer *x);
static int transfer_call(struct hmaf_session *s, enum hmaf_xfer_op op,
                         const hmaf_seg_t *segs, size_t nsegs);
static int meet_step_need(struct xfer_call *c, enum step need, int *misses);
static int transfer_bounced(struct hmaf_session *s, enum hmaf_xfer_op op,
                            const hmaf_seg_t *segs, size_t nsegs);
static enum step step(struct xfer_call *c);
static enum step step_with(struct xfer_call *c, struct hmaf_xfer *xfers,
                           uint32_t cap);
static enum step build_batch(struct xfer_call *c, struct hmaf_xfer *xfers,
                             uint32_t cap, uint32_t *n_out);
static int run_batch(struct hmaf_session *s, struct hmaf_xfer_batch *batch);
static int look_due(const struct hmaf_session *s, uint64_t now);
static void count_ops(struct hmaf__reader *reader, enum hmaf_xfer_op op,
                      uint64_t bytes);

/* ---- The public calls ------------------------------------------------ */

HMAF_API HMAF_HOT int hmaf_session_read(hmaf_session_t *session, void *buf,
                                        uint64_t remote_addr, size_t len)
{
    return transfer_one(session, HMAF_XFER_READ, buf, remote_addr, len);
}

HMAF_API HMAF_HOT int hmaf_session_write(hmaf_session_t *session,
                                         uint64_t remote_addr, const void *buf,
                                         size_t len)
{
    return transfer_one(session, HMAF_XFER_WRITE, (void *)buf, remote_addr,
                        len);
}

HMAF_API int hmaf_session_readv(hmaf_session_t *session, const hmaf_seg_t *segs,
                                size_t nsegs)
{
    return hmaf__session_transfer(session, HMAF_XFER_READ, segs, nsegs);
}

HMAF_API int hmaf_session_writev(hmaf_session_t *session,
                                 const hmaf_seg_t *segs, size_t nsegs)
{
    return hmaf__session_transfer(session, HMAF_XFER_WRITE, segs, nsegs);
}

int hmaf__session_transfer(struct hmaf_session *s, enum hmaf_xfer_op op,
                           const hmaf_seg_t *segs, size_t nsegs)
{
    int mirrored = 0;
    int err =
        s == NULL ? HMAF_EINVAL : hmaf__check_segs(segs, nsegs, &mirrored);

    if (err < 0) {
        return err;
    }
    return hmaf__session_transfer_valid(s, op, segs, nsegs, mirrored);
}

int hmaf__check_segs(const hmaf_seg_t *segs, size_t nsegs, int *mirrored_out)
{
    /* Nothing outside [lo, hi) is a mirror: loaded once for the list. */
    uintptr_t lo =
        atomic_load_explicit(&hmaf__mirrors_lo, memory_order_relaxed);
    uintptr_t hi =
        atomic_load_explicit(&hmaf__mirrors_hi, memory_order_relaxed);
    int mirrored = 0;

    if (segs == NULL || nsegs == 0) {
        return HMAF_EINVAL;
    }
    /* By index: a count too large for the memory behind it must not wrap
     * a pointer round before a bad segment stops the loop. */
    for (size_t i = 0; i < nsegs; i++) {
        uintptr_t at = (uintptr_t)segs[i].local;
        int err = hmaf__validate_seg(&segs[i]);
        if (err < 0) {
            return err;
        }
        if (hmaf__unlikely(at < hi && at + segs[i].len > lo)) {
            mirrored |= hmaf__mirrors_overlap_slow(segs[i].local, segs[i].len);
        }
    }
    *mirrored_out = mirrored;
    return 0;
}

int hmaf__session_transfer_valid(struct hmaf_session *s, enum hmaf_xfer_op op,
                                 const hmaf_seg_t *segs, size_t nsegs,
                                 int mirrored)
{
    if (hmaf__unlikely(mirrored)) {
        return transfer_bounced(s, op, segs, nsegs);
    }
    return transfer_call(s, op, segs, nsegs);
}

/* ---- One segment ----------------------------------------------------- */

/*
 * A small segment (at most HMAF_MOVE_ONE_MAX bytes) that one cached region
 * covers, when nothing else is needed — no look at the epoch due, no
 * mirror memory — moves in one step of its own, through the engine's
 * move_one: the general call's bookkeeping (cursor, batch building, step
 * results) and the batch would be most of the cost of a small transfer.
 * Anything else goes the general way, which also finds out what is wrong
 * with a bad argument; larger transfers go there too, as batches, which
 * an engine may split or pipeline.
 */
static inline __attribute__((always_inline)) int
transfer_one(struct hmaf_session *s, enum hmaf_xfer_op op, void *local,
             uint64_t remote_addr, size_t len)
{
    struct hmaf_xfer x; /* rmem: once a region is found */
    int err;

    x.local = local;
    x.remote_addr = remote_addr;
    x.len = len;
    if (hmaf__likely(one_step_fits(s, &x)) && one_step(s, op, &x, &err)) {
        return err;
    }
    return transfer_one_general(s, op, &x);
}

/* A zero length wraps round and does not fit. Whether remote_addr + len
 * wraps need not be asked: the region that covers the transfer would have
 * to wrap too, and the agent's answers never do (session.c). */
static inline __attribute__((always_inline)) int
one_step_fits(const struct hmaf_session *s, const struct hmaf_xfer *x)
{
    return s != NULL && x->local != NULL && x->len - 1 < s->move_one_max &&
           !hmaf__maybe_mirrored(x->local, x->len);
}

/* 1 when the step took the transfer (*err_out: 0, or its error), 0 when
 * it must take the general way. The step runs inside a read-side
 * section, like every step (see step_with). */
static inline __attribute__((always_inline)) int
one_step(struct hmaf_session *s, enum hmaf_xfer_op op, struct hmaf_xfer *x,
         int *err_out)
{
    struct hmaf__reader *reader = hmaf__reader_last_of(s->readers_id);
    struct hmaf__rc_hit hit;
    int err;

    if (hmaf__unlikely(reader == NULL)) {
        reader = hmaf__reader_mine(&s->cache.readers);
        if (reader == NULL) { /* the general way says why */
            return 0;
        }
    }
    hmaf__reader_enter(reader);
    if (!one_step_region(s, reader, op, x, &hit)) {
        hmaf__reader_exit(reader);
        return 0;
    }
    x->rmem = hit.rmem;
    err = s->move_one(s->ep, op, x);
    hmaf__reader_exit(reader);
    if (hmaf__unlikely(err < 0)) {
        *err_out = hmaf__session_fail(s, err);
        return 1;
    }
    hmaf__reader_count(reader, HMAF_RC_CACHE_HITS, 1);
    count_ops(reader, op, x->len);
    *err_out = 0;
    return 1;
}

/* Inside the section: 1 with the cached region that covers the whole
 * transfer and allows it in *hit_out, or 0 when the session is dead, a
 * look is due (the general way says which), or no region does. */
static inline __attribute__((always_inline)) int
one_step_region(struct hmaf_session *s, struct hmaf__reader *reader,
                enum hmaf_xfer_op op, const struct hmaf_xfer *x,
                struct hmaf__rc_hit *hit_out)
{
    uint64_t now = hmaf__coarse_now_ns_cached();

    if (atomic_load_explicit(&s->dead, memory_order_relaxed) ||
        look_due(s, now)) {
        return 0;
    }
    return hmaf__regcache_find_hinted(&s->cache, reader, x->remote_addr, now,
                                      hit_out) != NULL &&
           x->len <= hit_out->len - (x->remote_addr - hit_out->base) &&
           (op != HMAF_XFER_WRITE ||
            hit_out->access == HMAF_ACCESS_READ_WRITE);
}

static __attribute__((noinline)) int
transfer_one_general(struct hmaf_session *s, enum hmaf_xfer_op op,
                     const struct hmaf_xfer *x)
{
    hmaf_seg_t seg = {
        .local = x->local, .remote_addr = x->remote_addr, .len = x->len};

    return hmaf__session_transfer(s, op, &seg, 1);
}

/* ---- The call -------------------------------------------------------- */

static int start_call(struct xfer_call *c)
{
    int err = atomic_load_explicit(&c->s->dead, memory_order_relaxed);

    return err != 0 ? err : hmaf__reader_get(&c->s->cache.readers, &c->reader);
}

static int transfer_call(struct hmaf_session *s, enum hmaf_xfer_op op,
                         const hmaf_seg_t *segs, size_t nsegs)
{
    struct xfer_call c = {.s = s, .op = op, .segs = segs, .nsegs = nsegs};
    int misses = 0;
    int err = start_call(&c);

    while (err == 0 && c.cur.seg < nsegs) {
        err = meet_step_need(&c, step(&c), &misses);
    }
    if (err < 0) {
        return err;
    }
    count_ops(c.reader, op, c.bytes);
    return 0;
}

/* What a step left to do before the call can go on: nothing, a look at
 * the epoch, or the range at c->miss registered (at most XFER_MISSES_MAX
 * times in a row). 0 when met, or the call's error. */
static int meet_step_need(struct xfer_call *c, enum step need, int *misses)
{
    switch (need) {
    case STEP_MOVED:
        *misses = 0;
        return 0;
    case STEP_LOOK:
        return hmaf__session_check_epoch(c->s, 0);
    case STEP_MISS:
        if (++*misses > XFER_MISSES_MAX) {
            return HMAF_ENOSPC;
        }
        return hmaf__session_register(c->s, c->miss,
                                      c->segs[c->cur.seg].len - c->cur.off);
    case STEP_FAILED:
    case STEP_SYNC: /* posted steps only */
        break;
    }
    return c->err;
}

/* One segment whose local buffer is a mirror (util/mirrors.h): through a
 * buffer of our own, copied outside any read-side section, where a fault
 * on the mirror is served like any other. */
static int transfer_bounced_seg(struct hmaf_session *s, enum hmaf_xfer_op op,
                                const hmaf_seg_t *seg, uint8_t *bounce)
{
    int err = 0;

    for (size_t off = 0; off < seg->len && err == 0;) {
        size_t n = HMAF_MIN(seg->len - off, (size_t)BOUNCE_MAX);
        hmaf_seg_t piece = {bounce, seg->remote_addr + off, n};
        if (op == HMAF_XFER_WRITE) {
            memcpy(bounce, (const uint8_t *)seg->local + off, n);
        }
        err = transfer_call(s, op, &piece, 1);
        if (err == 0 && op == HMAF_XFER_READ) {
            memcpy((uint8_t *)seg->local + off, bounce, n);
        }
        off += n;
    }
    return err;
}

/* Segment by segment: those of mirror memory bounced, the others direct.
 * Rare: kept out of the callers' way. */
static __attribute__((noinline, cold)) int
transfer_bounced(struct hmaf_session *s, enum hmaf_xfer_op op,
                 const hmaf_seg_t *segs, size_t nsegs)
{
    uint8_t *bounce = malloc(BOUNCE_MAX);
    int err = bounce == NULL ? HMAF_ENOMEM : 0;

    for (size_t i = 0; i < nsegs && err == 0; i++) {
        err = hmaf__mirrors_overlap(segs[i].local, segs[i].len)
                  ? transfer_bounced_seg(s, op, &segs[i], bounce)
                  : transfer_call(s, op, &segs[i], 1);
    }
    free(bounce);
    return err;
}

/* ---- A step ---------------------------------------------------------- */

/* Out of line: only vectored calls pay for the large descriptor array. */
static __attribute__((noinline)) enum step step_large(struct xfer_call *c)
{
    struct hmaf_xfer xfers[XFER_BATCH_MAX];

    return step_with(c, xfers, XFER_BATCH_MAX);
}

static enum step step(struct xfer_call *c)
{
    struct hmaf_xfer xfers[XFER_SMALL];

    if (c->nsegs > XFER_SMALL) {
        return step_large(c);
    }
    return step_with(c, xfers, XFER_SMALL);
}

static uint32_t batch_cap(const struct hmaf_session *s)
{
    uint32_t cap = HMAF_MIN((uint32_t)XFER_BATCH_MAX, s->limits.max_segments);

    return HMAF_MAX(1u, HMAF_MIN(cap, s->limits.max_inflight));
}

static enum step plan_look(struct xfer_call *c, uint32_t cap, int *carry_out);
static int run_step_batch(struct xfer_call *c, struct hmaf_xfer_batch *batch,
                          struct carried_look *look, int carry);
static enum step carried_look_done(struct xfer_call *c,
                                   struct carried_look *look, int err,
                                   enum step built);
static enum step carried_write_look_done(struct xfer_call *c,
                                         struct carried_look *look, int err,
                                         enum step built);

static enum step step_failed(struct xfer_call *c, int err)
{
    c->err = err;
    return STEP_FAILED;
}

/* Inside the section, before the batch is built: the session dead
 * (STEP_FAILED), a look due (plan_look), or STEP_MOVED. */
static enum step step_begin(struct xfer_call *c, uint32_t cap, int *carry_out)
{
    /* Inside the section: the session's fence waits for this step, or
     * this step sees the session dead and moves nothing. */
    int err = atomic_load_explicit(&c->s->dead, memory_order_relaxed);

    if (err != 0) {
        return step_failed(c, err);
    }
    c->now = hmaf__coarse_now_ns_cached();
    return look_due(c->s, c->now) ? plan_look(c, cap, carry_out) : STEP_MOVED;
}

/*
 * Build and run one batch inside a read-side section: no region it uses
 * can be dropped before the engine is done with it. The epoch view is
 * checked for freshness inside the section, so a thread delayed between a
 * check and its transfer cannot act on a view older than the lease the
 * host's revocation wait allows for; a stale view is refreshed in the same
 * round trip (carried looks, below).
 */
static enum step step_with(struct xfer_call *c, struct hmaf_xfer *xfers,
                           uint32_t cap)
{
    struct hmaf_xfer_batch batch = {.op = c->op, .xfers = xfers};
    struct carried_look look = {.start = c->cur, .start_bytes = c->bytes};
    enum step built;
    int carry = 0, err = 0;

    if (c->nsegs == 1) {
        batch.local_span = c->segs[0].local;
        batch.local_span_len = c->segs[0].len;
    }
    cap = HMAF_MIN(cap, batch_cap(c->s));

    hmaf__reader_enter(c->reader);
    built = step_begin(c, cap, &carry);
    if (built == STEP_MOVED) {
        built = build_batch(c, xfers, cap - (uint32_t)carry, &batch.count);
    }
    if (carry && (batch.count == 0 || built == STEP_FAILED)) {
        /* nothing to carry the look with (a miss first, or a write
         * refused): it goes on its own */
        built = built == STEP_FAILED ? STEP_FAILED : STEP_LOOK;
        carry = 0;
    }
    if (built != STEP_FAILED && batch.count > 0) {
        err = run_step_batch(c, &batch, &look, carry);
    }
    hmaf__reader_exit(c->reader);
    if (carry && c->op == HMAF_XFER_WRITE) {
        return carried_write_look_done(c, &look, err, built);
    }
    if (carry) {
        return carried_look_done(c, &look, err, built);
    }
    return err < 0 ? step_failed(c, hmaf__session_fail(c->s, err)) : built;
}

/*
 * Carried looks. A step that finds the epoch due for a look carries the
 * look along: one more transfer reads the epoch word from the mailbox, so
 * a call after an idle spell costs one engine round trip, not two (the
 * look, then the data). A read's look rides in the read's own batch; a
 * write's goes as a batch of its own (a batch has one direction), posted
 * just before the write's, and the step waits for both: still one round
 * trip.
 *
 * The fence does not rest on the order of look and data. The step runs
 * inside a read-side section, and the session acknowledges a revocation
 * only after a grace period (which also drains what posted requests left
 * in flight), so whatever the step read or wrote, it did before the host's
 * revocation could complete: a transfer racing a revocation is ordered
 * before it, whether or not its look saw the new epoch. The look is for
 * promptness: it is how a busy thread learns of a revocation (and
 * acknowledges it) at least every check interval, and how it learns the
 * host closed the session.
 *
 * A session the host cut off (its acknowledgement did not come in time,
 * or the host closed it) is another matter: it is not waited for, so
 * nothing but the engine or its own look stops its next transfer. Reads
 * always carry their look: a cut-off session learns nothing it could not
 * have read a moment before. Writes carry theirs only where the engine
 * enforces revocation (HMAF_ENGINE_ENFORCED: doca, ucx): the host
 * destroyed the revoked range's export and the session's mailbox's, so a
 * cut-off session's write there fails in the engine, with or without a
 * look before it. With cma nothing in the engine stops it, and a write looks
 * first, in a round trip of its own: a cut-off session (its mailbox made
 * inaccessible, its channel closed) finds out before it writes.
 *
 * Bytes read alongside a look that found anything amiss are not trusted:
 * the read is redone after the separate look. A write is not redone: its
 * bytes landed inside the section, before any acknowledgement, as if it
 * had run just before the revocation; writing them again could undo what
 * the host wrote there meanwhile (a flag it had consumed). The separate
 * look then applies the revocation or reports the session's end, and the
 * call goes on from there (a next step to a revoked range: HMAF_EFAULT).
 */
static int carries_look(const struct hmaf_session *s, enum hmaf_xfer_op op)
{
    return op == HMAF_XFER_READ || (s->ops->flags & HMAF_ENGINE_ENFORCED);
}

/* Inside the section, when a look is due: STEP_MOVED with *carry_out set
 * (1: carry it in this step), STEP_LOOK to look the separate way first,
 * or STEP_FAILED. The channel is looked at first, as the separate look
 * does: a host that is gone is never addressed (cma: its pid may be
 * reused). cap counts the look too: the step stays within the engine's
 * max_inflight. */
static enum step plan_look(struct xfer_call *c, uint32_t cap, int *carry_out)
{
    if (c->no_carry || cap < 2 || !carries_look(c->s, c->op)) {
        return STEP_LOOK;
    }
    if (hmaf__channel_peer_gone(&c->s->channel)) {
        return step_failed(c, hmaf__session_fail(c->s, HMAF_ECONNRESET));
    }
    *carry_out = 1;
    return STEP_MOVED;
}

static void carry_look(const struct hmaf_session *s, struct hmaf_xfer *x,
                       uint8_t word[8])
{
    *x = (struct hmaf_xfer){
        .rmem = s->mbox.rmem,
        .local = word,
        .remote_addr = s->mbox.base + HMAF_MBOX_HEADER_EPOCH,
        .len = 8,
    };
}

/* A write and its look, each a batch of its own: the look posted first,
 * both waited for. Returns the write's status; the look's goes to
 * look->status (a look that could not be posted failed). */
static int run_beside_look(struct hmaf_session *s,
                           struct hmaf_xfer_batch *batch,
                           struct carried_look *look)
{
    int err;

    carry_look(s, &look->xfer, look->word);
    look->batch = (struct hmaf_xfer_batch){
        .op = HMAF_XFER_READ, .xfers = &look->xfer, .count = 1};
    look->status = s->post(s->ep, &look->batch);
    err = s->post(s->ep, batch);
    if (err == 0) {
        err = hmaf__engine_complete(s->ep, batch);
    }
    if (look->status == 0) {
        look->status = hmaf__engine_complete(s->ep, &look->batch);
    }
    return err;
}

/* Run the step's batch with the look it carries, if any. */
static int run_step_batch(struct xfer_call *c, struct hmaf_xfer_batch *batch,
                          struct carried_look *look, int carry)
{
    if (carry && c->op == HMAF_XFER_WRITE) {
        return run_beside_look(c->s, batch, look);
    }
    if (carry) {
        carry_look(c->s, &batch->xfers[batch->count++], look->word);
    }
    return run_batch(c->s, batch);
}

/* Did a carried look, begun at looked_ns, find the epoch this session
 * last applied? Then it counts as a look done as of looked_ns. */
static int look_found_nothing(struct hmaf_session *s, uint8_t word[8],
                              int status, uint64_t looked_ns)
{
    struct hmaf_wire w = hmaf__wire(word, 8);
    uint64_t epoch = hmaf__wire_get_u64(&w);
    uint64_t next = looked_ns + s->check_interval_ns;

    if (status < 0 ||
        epoch != __atomic_load_n(&s->epoch_seen, __ATOMIC_RELAXED)) {
        return 0;
    }
    /* A look that took long must not move the next one earlier. */
    if (next > atomic_load_explicit(&s->next_check_ns, memory_order_relaxed)) {
        atomic_store_explicit(&s->next_check_ns, next, memory_order_relaxed);
    }
    return 1;
}

/* After a read step that carried a look, outside its section. An unchanged
 * epoch makes the look count as done as of the step's start. A moved
 * epoch, or a failed batch (it does not say which transfer failed), takes
 * the separate look, which applies the revocation or finds what is wrong
 * (a closed session's mailbox is gone: HMAF_ECONNRESET); then the step is
 * redone, once per call at most. */
static enum step carried_look_done(struct xfer_call *c,
                                   struct carried_look *look, int err,
                                   enum step built)
{
    if (look_found_nothing(c->s, look->word, err, c->now)) {
        return built;
    }
    c->no_carry = 1;
    err = hmaf__session_check_epoch(c->s, 1);
    if (err < 0) {
        return step_failed(c, err);
    }
    c->cur = look->start;
    c->bytes = look->start_bytes;
    return STEP_MOVED;
}

/* After a write step that carried its look, outside its section. The
 * write's own status decides the step, as for a write that looked first;
 * a look that found anything amiss takes the separate look, and the write
 * stands (it is not redone: see above). */
static enum step carried_write_look_done(struct xfer_call *c,
                                         struct carried_look *look, int err,
                                         enum step built)
{
    if (err < 0) {
        return step_failed(c, hmaf__session_fail(c->s, err));
    }
    if (look_found_nothing(c->s, look->word, look->status, c->now)) {
        return built;
    }
    c->no_carry = 1;
    err = hmaf__session_check_epoch(c->s, 1);
    return err < 0 ? step_failed(c, err) : built;
}

/* ---- A batch --------------------------------------------------------- */

/* The cached region containing addr, inside the call's section: 1 with
 * it in *hit_out, or 0. */
static int find_region(const struct xfer_call *c, uint64_t addr,
                       struct hmaf__rc_hit *hit_out)
{
    return hmaf__regcache_find_hinted(&c->s->cache, c->reader, addr, c->now,
                                      hit_out) != NULL;
}

/*
 * Fill xfers from the cursor on until the batch is full, the step's bytes
 * are reached, the segments are done (STEP_MOVED), no cached region covers
 * the next byte (STEP_MISS), or a write meets a read-only region
 * (STEP_FAILED). Caller is inside a read-side section.
 *
 * The cursor and the current region live in locals for the loop: the
 * stores to xfers could alias them in memory, and they would be loaded
 * again for every piece.
 */
static enum step build_batch(struct xfer_call *c, struct hmaf_xfer *xfers,
                             uint32_t cap, uint32_t *n_out)
{
    const hmaf_seg_t *seg = c->segs + c->cur.seg,
                     *segs_end = c->segs + c->nsegs;
    struct hmaf_xfer *x = xfers, *xfers_end = xfers + cap;
    uint64_t off = c->cur.off;
    uint64_t max_transfer = c->s->limits.max_transfer;
    uint64_t room = STEP_BYTES_MAX; /* bytes the step may still move */
    struct hmaf_engine_rmem *rmem = NULL;
    uint64_t base = 0, len = 0; /* the region in use: none yet */
    enum step built = STEP_MOVED;

    while (seg < segs_end && x < xfers_end && room > 0) {
        uint64_t addr = seg->remote_addr + off;
        uint64_t piece = seg->len - off;
        uint64_t in_region;

        /* Neighbouring segments mostly share a region: try it first. */
        if (addr - base >= len) {
            struct hmaf__rc_hit hit;
            if (!find_region(c, addr, &hit)) {
                c->miss = addr;
                built = STEP_MISS;
                break;
            }
            if (c->op == HMAF_XFER_WRITE &&
                hit.access != HMAF_ACCESS_READ_WRITE) {
                built = step_failed(c, HMAF_EACCES);
                break;
            }
            rmem = hit.rmem;
            base = hit.base;
            len = hit.len;
        }
        in_region = len - (addr - base);
        x->rmem = rmem;
        x->local = (char *)seg->local + off;
        x->remote_addr = addr;
        if (piece <= in_region && piece <= max_transfer && piece <= room) {
            seg++; /* the rest of the segment: the common case */
            off = 0;
        } else {
            piece = HMAF_MIN(piece, HMAF_MIN(in_region, max_transfer));
            piece = HMAF_MIN(piece, room);
            off += piece;
        }
        x->len = (size_t)piece;
        x++;
        room -= piece;
    }
    c->cur = (struct xfer_cursor){(size_t)(seg - c->segs), off};
    c->bytes += STEP_BYTES_MAX - room;
    hmaf__reader_count(c->reader, HMAF_RC_CACHE_HITS, (uint64_t)(x - xfers));
    *n_out = (uint32_t)(x - xfers);
    return built;
}

/* ---- The engine ------------------------------------------------------ */

/* The engine's post straight from the session's hot line; engines that
 * complete later are driven to completion by the generic loop. */
static inline __attribute__((always_inline)) int
run_batch(struct hmaf_session *s, struct hmaf_xfer_batch *batch)
{
    int err = s->post(s->ep, batch);

    if (err < 0) {
        return err;
    }
    /* Acquire, as in hmaf__engine_complete(): another thread's progress
     * may already have completed the whole batch (doca), and its status
     * and the bytes it read are only ours to look at after that. */
    if (__atomic_load_n(&batch->completed, __ATOMIC_ACQUIRE) < batch->count) {
        return hmaf__engine_complete(s->ep, batch);
    }
    return batch->status;
}

/* ---- Shared by the steps --------------------------------------------- */

/* Due for a look at the revocation epoch? Cheap: the coarse clock. */
static inline int look_due(const struct hmaf_session *s, uint64_t now)
{
    return now >= atomic_load_explicit(&s->next_check_ns, memory_order_relaxed);
}

static inline void count_ops(struct hmaf__reader *reader, enum hmaf_xfer_op op,
                             uint64_t bytes)
{
    hmaf__reader_count(reader, HMAF_RC_OPS, 1);
    hmaf__reader_count(reader,
                       op == HMAF_XFER_READ ? HMAF_RC_BYTES_READ
                                            : HMAF_RC_BYTES_WRITTEN,
                       bytes);
}

/* ---- Posted requests on an asynchronous engine ----------------------- */

/*
 * A posted request that finds the epoch due for a look carries it too
 * (carried looks, above: reads always, writes where the engine enforces
 * revocation), as a batch of its own posted just before the request's: the
 * thread's queue has one (struct hmaf__posted_look), looked at by its
 * owner when it progresses the queue (test, wait, flush, a post that
 * makes room). The post itself does not wait for a look. A request does
 * not wait for the look either, nor is it redone: its transfers are in
 * flight outside any section, but the grace period before an
 * acknowledgement drains them, so they happened before the revocation
 * completed, whatever the look found; a look that found the epoch moved
 * (or failed) takes the separate look, which applies the revocation.
 *
 * While the queue's look is in flight, the thread's further posts go
 * without one for a check interval from its start, as if it had been
 * done: they are no staler than the view it will confirm. A look not
 * looked at within that interval (a thread that posts and never
 * progresses) leaves them to look the separate way.
 */

static enum step post_async_once(struct xfer_call *c,
                                 struct hmaf_xfer_batch *batch, uint32_t cap,
                                 _Atomic uint64_t *flight,
                                 struct hmaf__posted_look *look);

enum hmaf__post_result hmaf__session_post_async(
    struct hmaf_session *s, enum hmaf_xfer_op op, const hmaf_seg_t *segs,
    size_t nsegs, struct hmaf_xfer_batch *batch, uint32_t cap,
    _Atomic uint64_t *flight, struct hmaf__posted_look *look, int *err_out)
{
    struct xfer_call c = {.s = s, .op = op, .segs = segs, .nsegs = nsegs};
    int misses = 0;
    int err = start_call(&c);

    batch->op = op;
    batch->local_span = nsegs == 1 ? segs[0].local : NULL;
    batch->local_span_len = nsegs == 1 ? segs[0].len : 0;
    cap = HMAF_MIN(cap, batch_cap(s));
    while (err == 0) {
        enum step st;

        c.cur = (struct xfer_cursor){0, 0};
        hmaf__reader_enter(c.reader);
        st = post_async_once(&c, batch, cap, flight, look);
        hmaf__reader_exit(c.reader);
        if (st == STEP_MOVED) {
            return HMAF_POSTED;
        }
        if (st == STEP_SYNC) {
            return HMAF_POST_SYNC;
        }
        err = st == STEP_FAILED ? hmaf__session_fail(s, c.err)
                                : meet_step_need(&c, st, &misses);
    }
    *err_out = err;
    return HMAF_POST_FAILED;
}

/* When a look is due: STEP_MOVED with *carry_out set (1: post the queue's
 * look with the request; 0: the look in flight covers it), STEP_LOOK to
 * look the separate way first, or STEP_FAILED. */
static enum step plan_posted_look(struct xfer_call *c,
                                  const struct hmaf__posted_look *look,
                                  int *carry_out)
{
    uint64_t f = atomic_load_explicit(&look->flight, memory_order_relaxed);

    *carry_out = 0;
    if (!carries_look(c->s, c->op)) {
        return STEP_LOOK;
    }
    if (f & 1) {
        return c->now - look->posted_ns < c->s->check_interval_ns ? STEP_MOVED
                                                                  : STEP_LOOK;
    }
    if (hmaf__channel_peer_gone(&c->s->channel)) {
        return step_failed(c, HMAF_ECONNRESET);
    }
    *carry_out = 1;
    return STEP_MOVED;
}

/* Post the queue's look, its flight made odd first (the drain waits for
 * it). One the engine refuses is taken the separate way (STEP_LOOK). */
static enum step post_look(struct xfer_call *c, struct hmaf__posted_look *look)
{
    uint64_t f = atomic_load_explicit(&look->flight, memory_order_relaxed);

    carry_look(c->s, &look->xfer, look->word);
    look->batch.op = HMAF_XFER_READ;
    look->batch.xfers = &look->xfer;
    look->batch.status = 0;
    /* The drain reads these from other threads. */
    __atomic_store_n(&look->batch.count, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&look->batch.completed, 0, __ATOMIC_RELAXED);
    look->posted_ns = c->now;
    atomic_store_explicit(&look->flight, f + 1, memory_order_release);
    if (c->s->post(c->s->ep, &look->batch) < 0) {
        atomic_store_explicit(&look->flight, f + 2, memory_order_release);
        return STEP_LOOK;
    }
    return STEP_MOVED;
}

/* Post the request's n transfers, its flight made odd first (the drain
 * waits for it). */
static enum step post_request(struct xfer_call *c,
                              struct hmaf_xfer_batch *batch, uint32_t n,
                              _Atomic uint64_t *flight)
{
    uint64_t f = atomic_load_explicit(flight, memory_order_relaxed);
    int err;

    /* The drain reads these from other threads. */
    __atomic_store_n(&batch->count, n, __ATOMIC_RELAXED);
    __atomic_store_n(&batch->completed, 0, __ATOMIC_RELAXED);
    batch->status = 0;
    atomic_store_explicit(flight, f + 1, memory_order_release);
    err = c->s->post(c->s->ep, batch);
    if (err < 0) {
        atomic_store_explicit(flight, f + 2, memory_order_release);
        return step_failed(c, err);
    }
    return STEP_MOVED;
}

/* One try of hmaf__session_post_async(), inside a read-side section. */
static enum step post_async_once(struct xfer_call *c,
                                 struct hmaf_xfer_batch *batch, uint32_t cap,
                                 _Atomic uint64_t *flight,
                                 struct hmaf__posted_look *look)
{
    enum step st = STEP_MOVED;
    uint32_t n = 0;
    int carry = 0;
    int err = atomic_load_explicit(&c->s->dead, memory_order_relaxed);

    if (err != 0) {
        return step_failed(c, err);
    }
    c->now = hmaf__coarse_now_ns();
    if (look_due(c->s, c->now)) {
        st = plan_posted_look(c, look, &carry);
    }
    if (st == STEP_MOVED) {
        st = build_batch(c, batch->xfers, cap, &n);
    }
    if (st == STEP_MOVED && c->cur.seg < c->nsegs) {
        st = STEP_SYNC; /* more than one batch */
    }
    if (st == STEP_MOVED && carry) {
        st = post_look(c, look);
    }
    return st == STEP_MOVED ? post_request(c, batch, n, flight) : st;
}

void hmaf__session_posted_look_done(struct hmaf_session *s,
                                    struct hmaf__posted_look *look)
{
    uint64_t f = atomic_load_explicit(&look->flight, memory_order_relaxed);
    int found_nothing;

    if (!(f & 1) || __atomic_load_n(&look->batch.completed, __ATOMIC_ACQUIRE) <
                        look->batch.count) {
        return;
    }
    found_nothing =
        look_found_nothing(s, look->word, look->batch.status, look->posted_ns);
    atomic_store_explicit(&look->flight, f + 1, memory_order_release);
    if (!found_nothing) {
        /* Its error is the session's (recorded when it is one) or passes:
         * the next look is due all the same. */
        (void)hmaf__session_check_epoch(s, 1);
    }
}
