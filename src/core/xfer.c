/*
 * The dpu side's data path: split each segment at region boundaries and at
 * the engine's transfer limit, look regions up in the cache (asking the
 * agent on a miss), and hand the pieces to the engine in batches.
 *
 * A cache hit costs a coarse clock read, a binary search and plain stores
 * to this thread's own slot: no lock, no locked instruction, and no
 * syscall besides the transfer itself.
 */
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>
#include <hmaf/types.h>
#include <hmaf/session.h>

#include "core/session_int.h"
#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/mirrors.h"
#include "util/wire.h"

/* Transfer descriptors built per engine post; they live on the stack.
 * Calls of up to XFER_SMALL segments use a small array. */
#define XFER_BATCH_MAX 1024
#define XFER_SMALL 8
/* A step stopped at an address no cached region covers. */
#define XFER_MISS 1
/* A step found the session's view of the revocation epoch out of date. */
#define XFER_RECHECK 2
_Static_assert(HMAF_POST_SYNC != XFER_MISS && HMAF_POST_SYNC != XFER_RECHECK,
               "step results apart");
/* Misses in a row before a call gives up: only a region cache far too
 * small for the threads sharing it evicts what was just registered. */
#define XFER_MISSES_MAX 64
/* Bytes one step moves at most, so that a step is short (milliseconds)
 * against the host's revocation wait. */
#define STEP_BYTES_MAX (16ull << 20)

struct xfer_cursor {
    size_t seg;   /* current segment */
    uint64_t off; /* bytes of it already handed to the engine */
};

static inline int validate_seg(const hmaf_seg_t *seg)
{
    if (seg->local == NULL || seg->len == 0) {
        return HMAF_EINVAL;
    }
    return seg->len > UINT64_MAX - seg->remote_addr ? HMAF_EOVERFLOW : 0;
}

int hmaf__validate_segs(const hmaf_seg_t *segs, size_t nsegs)
{
    int ret = segs == NULL || nsegs == 0 ? HMAF_EINVAL : 0;

    for (size_t i = 0; i < nsegs && ret == 0; i++) {
        ret = validate_seg(&segs[i]);
    }
    return ret;
}

static void cursor_advance(struct xfer_cursor *cur, const hmaf_seg_t *segs,
                           uint64_t n)
{
    cur->off += n;
    if (cur->off == segs[cur->seg].len) {
        cur->seg++;
        cur->off = 0;
    }
}

/* What one call carries through its steps. */
struct xfer_call {
    struct hmaf_session *s;
    struct hmaf__reader *reader; /* this thread's slot */
    enum hmaf_xfer_op op;
    const hmaf_seg_t *segs;
    size_t nsegs;
    uint64_t now; /* coarse clock when the current step began */
    int no_carry; /* a carried look failed: looks go the separate way */
};

/*
 * Fill xfers from the cursor on until the batch is full, the segments are
 * done, or no cached region covers the next byte (XFER_MISS, *miss_out set).
 * Caller is inside a read-side section.
 */
static int build_batch(const struct xfer_call *c, struct xfer_cursor *cur,
                       struct hmaf_xfer *xfers, uint32_t cap, uint32_t *n_out,
                       uint64_t *miss_out)
{
    struct hmaf__region *r = NULL;
    uint64_t bytes = 0;
    uint32_t n = 0;
    int ret = 0;

    while (cur->seg < c->nsegs && n < cap && bytes < STEP_BYTES_MAX) {
        const hmaf_seg_t *seg = &c->segs[cur->seg];
        uint64_t addr = seg->remote_addr + cur->off;
        uint64_t piece;

        /* Neighbouring segments mostly share a region: try it first. */
        if (r == NULL || addr - r->iv.base >= r->iv.len) {
            r = hmaf__regcache_find_hinted(&c->s->cache, c->reader, addr,
                                           c->now);
        }
        if (r == NULL) {
            *miss_out = addr;
            ret = XFER_MISS;
            break;
        }
        if (c->op == HMAF_XFER_WRITE && r->access != HMAF_ACCESS_READ_WRITE) {
            ret = HMAF_EACCES;
            break;
        }
        piece = HMAF_MIN(seg->len - cur->off, r->iv.len - (addr - r->iv.base));
        piece = HMAF_MIN(piece, c->s->limits.max_transfer);
        piece = HMAF_MIN(piece, STEP_BYTES_MAX - bytes);
        bytes += piece;
        xfers[n++] = (struct hmaf_xfer){
            .rmem = r->rmem,
            .local = (char *)seg->local + cur->off,
            .remote_addr = addr,
            .len = (size_t)piece,
        };
        cursor_advance(cur, c->segs, piece);
    }
    hmaf__reader_count(c->reader, HMAF_RC_CACHE_HITS, n);
    *n_out = n;
    return ret;
}

static uint32_t batch_cap(const struct hmaf_session *s)
{
    uint32_t cap = HMAF_MIN((uint32_t)XFER_BATCH_MAX, s->limits.max_segments);

    return HMAF_MAX(1u, HMAF_MIN(cap, s->limits.max_inflight));
}

/* The engine's post straight from the session's hot line; engines that
 * complete later are driven to completion by the generic loop. */
static inline __attribute__((always_inline)) int
run_batch(struct hmaf_session *s, struct hmaf_xfer_batch *batch)
{
    int ret = s->post(s->ep, batch);

    if (ret < 0) {
        return ret;
    }
    /* Acquire, as in hmaf__engine_complete(): another thread's progress
     * may already have completed the whole batch (doca), and its status
     * and the bytes it read are only ours to look at after that. */
    if (__atomic_load_n(&batch->completed, __ATOMIC_ACQUIRE) < batch->count) {
        return hmaf__engine_complete(s->ep, batch);
    }
    return batch->status;
}

/*
 * A step that finds the epoch due for a look carries the look along: one
 * more transfer reads the epoch word from the mailbox, so a call after an
 * idle spell costs one engine round trip, not two (the look, then the
 * data). A read's look rides in the read's own batch; a write's goes as a
 * batch of its own (a batch has one direction), posted just before the
 * write's, and the step waits for both: still one round trip.
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
 * enforces revocation (HMAF_ENGINE_ENFORCED, doca): the host destroyed the
 * revoked range's export and the session's mailbox's, so a cut-off
 * session's write there fails in the engine, with or without a look
 * before it. With cma nothing in the engine stops it, and a write looks
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
struct carried_look {
    struct xfer_cursor start; /* where the step began: redone from here */
    uint8_t word[8];          /* the epoch as the host's mailbox holds it */
    int status;               /* a write's look: its batch's */
    struct hmaf_xfer xfer;    /* ... and the batch itself */
    struct hmaf_xfer_batch batch;
};

static int carries_look(const struct hmaf_session *s, enum hmaf_xfer_op op)
{
    return op == HMAF_XFER_READ || (s->ops->flags & HMAF_ENGINE_ENFORCED);
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
static int carried_look_done(struct xfer_call *c, struct xfer_cursor *cur,
                             struct carried_look *look, int ret, int built)
{
    if (look_found_nothing(c->s, look->word, ret, c->now)) {
        return built;
    }
    c->no_carry = 1;
    ret = hmaf__session_check_epoch(c->s, 1);
    if (ret < 0) {
        return ret;
    }
    *cur = look->start;
    return 0;
}

/* After a write step that carried its look, outside its section. The
 * write's own status decides the step, as for a write that looked first;
 * a look that found anything amiss takes the separate look, and the write
 * stands (it is not redone: see above). */
static int carried_write_look_done(struct xfer_call *c,
                                   struct carried_look *look, int ret,
                                   int built)
{
    if (ret < 0) {
        return hmaf__session_fail(c->s, ret);
    }
    if (look_found_nothing(c->s, look->word, look->status, c->now)) {
        return built;
    }
    c->no_carry = 1;
    ret = hmaf__session_check_epoch(c->s, 1);
    return ret < 0 ? ret : built;
}

/* A write and its look, each a batch of its own: the look posted first,
 * both waited for. Returns the write's status; the look's goes to
 * look->status (a look that could not be posted failed). */
static int run_beside_look(struct hmaf_session *s,
                           struct hmaf_xfer_batch *batch,
                           struct carried_look *look)
{
    int ret;

    carry_look(s, &look->xfer, look->word);
    look->batch = (struct hmaf_xfer_batch){
        .op = HMAF_XFER_READ, .xfers = &look->xfer, .count = 1};
    look->status = s->post(s->ep, &look->batch);
    ret = s->post(s->ep, batch);
    if (ret == 0) {
        ret = hmaf__engine_complete(s->ep, batch);
    }
    if (look->status == 0) {
        look->status = hmaf__engine_complete(s->ep, &look->batch);
    }
    return ret;
}

/* Inside the section, when a look is due: 1 to carry it in this step, 0
 * to look the separate way first (XFER_RECHECK), or an error. The channel
 * is looked at first, as the separate look does: a host that is gone is
 * never addressed (cma: its pid may be reused). cap counts the look too:
 * the step stays within the engine's max_inflight. */
static int want_carry(struct xfer_call *c, uint32_t cap)
{
    if (c->no_carry || cap < 2 || !carries_look(c->s, c->op)) {
        return 0;
    }
    if (hmaf__channel_peer_gone(&c->s->channel)) {
        return HMAF_ECONNRESET;
    }
    return 1;
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

/*
 * Build and run one batch inside a read-side section: no region it uses
 * can be dropped before the engine is done with it. The epoch view is
 * checked for freshness inside the section, so a thread delayed between a
 * check and its transfer cannot act on a view older than the lease the
 * host's revocation wait allows for; a stale view is refreshed in the same
 * round trip (carried_look).
 */
static int step_with(struct xfer_call *c, struct xfer_cursor *cur,
                     uint64_t *miss_out, struct hmaf_xfer *xfers, uint32_t cap)
{
    struct hmaf_xfer_batch batch = {.op = c->op, .xfers = xfers};
    struct carried_look look = {.start = *cur};
    int built, carry = 0, ret = 0;

    if (c->nsegs == 1) {
        batch.local_span = c->segs[0].local;
        batch.local_span_len = c->segs[0].len;
    }
    cap = HMAF_MIN(cap, batch_cap(c->s));

    hmaf__reader_enter(c->reader);
    /* Inside the section: the session's fence waits for this step, or
     * this step sees the session dead and moves nothing. */
    ret = atomic_load_explicit(&c->s->dead, memory_order_relaxed);
    c->now = hmaf__coarse_now_ns();
    if (ret == 0 && hmaf__session_epoch_due(c->s, c->now)) {
        carry = want_carry(c, cap);
        ret = carry == 0 ? XFER_RECHECK : 0;
    }
    if (ret != 0 || carry < 0) {
        hmaf__reader_exit(c->reader);
        return carry < 0 ? hmaf__session_fail(c->s, carry) : ret;
    }
    built = build_batch(c, cur, xfers, cap - (uint32_t)carry, &batch.count,
                        miss_out);
    if (carry && (batch.count == 0 || built < 0)) {
        /* nothing to carry it with (a miss first, or a write refused):
         * look on its own */
        hmaf__reader_exit(c->reader);
        return built < 0 ? built : XFER_RECHECK;
    }
    if (built >= 0 && batch.count > 0) {
        ret = run_step_batch(c, &batch, &look, carry);
    }
    hmaf__reader_exit(c->reader);
    if (carry && c->op == HMAF_XFER_WRITE) {
        return carried_write_look_done(c, &look, ret, built);
    }
    if (carry) {
        return carried_look_done(c, cur, &look, ret, built);
    }
    return ret < 0 ? hmaf__session_fail(c->s, ret) : built;
}

/* Out of line: only vectored calls pay for the large descriptor array. */
static __attribute__((noinline)) int
step_large(struct xfer_call *c, struct xfer_cursor *cur, uint64_t *miss_out)
{
    struct hmaf_xfer xfers[XFER_BATCH_MAX];

    return step_with(c, cur, miss_out, xfers, XFER_BATCH_MAX);
}

static int step(struct xfer_call *c, struct xfer_cursor *cur,
                uint64_t *miss_out)
{
    struct hmaf_xfer xfers[XFER_SMALL];

    if (c->nsegs > XFER_SMALL) {
        return step_large(c, cur, miss_out);
    }
    return step_with(c, cur, miss_out, xfers, XFER_SMALL);
}

static int start_call(struct xfer_call *c)
{
    int ret = hmaf__validate_segs(c->segs, c->nsegs);

    if (ret == 0) {
        ret = atomic_load_explicit(&c->s->dead, memory_order_relaxed);
    }
    if (ret == 0) {
        ret = hmaf__reader_get(&c->s->cache.readers, &c->reader);
    }
    return ret;
}

static void count_call(const struct xfer_call *c)
{
    uint64_t bytes = 0;

    for (size_t i = 0; i < c->nsegs; i++) {
        bytes += c->segs[i].len;
    }
    hmaf__reader_count(c->reader, HMAF_RC_OPS, 1);
    hmaf__reader_count(c->reader,
                       c->op == HMAF_XFER_READ ? HMAF_RC_BYTES_READ
                                               : HMAF_RC_BYTES_WRITTEN,
                       bytes);
}

/* What a step needs before the call can go on (XFER_RECHECK: a look at the
 * revocation epoch; XFER_MISS: the range at miss registered, at most
 * XFER_MISSES_MAX times in a row); 0 when met, or an error. */
static int meet_step_need(const struct xfer_call *c, int need,
                          const struct xfer_cursor *cur, uint64_t miss,
                          int *misses)
{
    if (need == XFER_RECHECK) {
        return hmaf__session_check_epoch(c->s, 0);
    }
    if (++*misses > XFER_MISSES_MAX) {
        return HMAF_ENOSPC;
    }
    return hmaf__session_register(c->s, miss,
                                  c->segs[cur->seg].len - cur->off);
}

static int transfer_direct(struct hmaf_session *s, enum hmaf_xfer_op op,
                           const hmaf_seg_t *segs, size_t nsegs)
{
    struct xfer_call c = {.s = s, .op = op, .segs = segs, .nsegs = nsegs};
    struct xfer_cursor cur = {0, 0};
    int ret;

    if (s == NULL) {
        return HMAF_EINVAL;
    }
    ret = start_call(&c);
    for (int misses = 0; ret >= 0 && cur.seg < nsegs;) {
        uint64_t miss = 0;
        ret = step(&c, &cur, &miss);
        if (ret == XFER_RECHECK || ret == XFER_MISS) {
            ret = meet_step_need(&c, ret, &cur, miss, &misses);
        } else {
            misses = 0;
        }
    }
    if (ret < 0) {
        return ret;
    }
    count_call(&c);
    return 0;
}

/* Bounce buffer: mirror memory moves through this much at a time. */
#define BOUNCE_MAX (1u << 20)

/* One segment whose local buffer is a mirror (util/mirrors.h): through a
 * buffer of our own, copied outside any read-side section, where a fault
 * on the mirror is served like any other. */
static int transfer_bounced_seg(struct hmaf_session *s, enum hmaf_xfer_op op,
                                const hmaf_seg_t *seg, uint8_t *bounce)
{
    int ret = 0;

    for (size_t off = 0; off < seg->len && ret == 0;) {
        size_t n = HMAF_MIN(seg->len - off, (size_t)BOUNCE_MAX);
        hmaf_seg_t piece = {bounce, seg->remote_addr + off, n};
        if (op == HMAF_XFER_WRITE) {
            memcpy(bounce, (const uint8_t *)seg->local + off, n);
        }
        ret = transfer_direct(s, op, &piece, 1);
        if (ret == 0 && op == HMAF_XFER_READ) {
            memcpy((uint8_t *)seg->local + off, bounce, n);
        }
        off += n;
    }
    return ret;
}

static int any_mirror(const hmaf_seg_t *segs, size_t nsegs)
{
    for (size_t i = 0; i < nsegs; i++) {
        if (hmaf__mirrors_overlap(segs[i].local, segs[i].len)) {
            return 1;
        }
    }
    return 0;
}

/* Segment by segment: those of mirror memory bounced, the others direct.
 * Rare: kept out of the callers' way. */
static __attribute__((noinline, cold)) int
transfer_bounced(struct hmaf_session *s, enum hmaf_xfer_op op,
                 const hmaf_seg_t *segs, size_t nsegs)
{
    uint8_t *bounce = malloc(BOUNCE_MAX);
    int ret = bounce == NULL ? HMAF_ENOMEM : 0;

    for (size_t i = 0; i < nsegs && ret == 0; i++) {
        ret = hmaf__mirrors_overlap(segs[i].local, segs[i].len)
                  ? transfer_bounced_seg(s, op, &segs[i], bounce)
                  : transfer_direct(s, op, &segs[i], 1);
    }
    free(bounce);
    return ret;
}

/*
 * A posted request that finds the epoch due for a look carries it too
 * (carried_look, above: reads always, writes where the engine enforces
 * revocation), as a batch of its own posted just before the request's: the
 * thread's queue has one (struct hmaf__posted_look), looked at by its
 * owner when it progresses the queue (test, wait, flush, a post that
 * makes room). The post itself no longer waits for a look. A request does
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

/* When a look is due: 0 with *carry_out set (1: post the queue's look
 * with the request; 0: the look in flight covers it), XFER_RECHECK to
 * look the separate way first, or an error. */
static int plan_posted_look(const struct xfer_call *c,
                            const struct hmaf__posted_look *look,
                            int *carry_out)
{
    uint64_t f = atomic_load_explicit(&look->flight, memory_order_relaxed);

    *carry_out = 0;
    if (!carries_look(c->s, c->op)) {
        return XFER_RECHECK;
    }
    if (f & 1) {
        return c->now - look->posted_ns < c->s->check_interval_ns
                   ? 0
                   : XFER_RECHECK;
    }
    if (hmaf__channel_peer_gone(&c->s->channel)) {
        return HMAF_ECONNRESET;
    }
    *carry_out = 1;
    return 0;
}

/* Post the queue's look, its flight made odd first (the drain waits for
 * it). One the engine refuses is taken the separate way (XFER_RECHECK). */
static int post_look(const struct xfer_call *c, struct hmaf__posted_look *look)
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
        return XFER_RECHECK;
    }
    return 0;
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

/* Post the request's n transfers, its flight made odd first (the drain
 * waits for it). */
static int post_request(const struct xfer_call *c,
                        struct hmaf_xfer_batch *batch, uint32_t n,
                        _Atomic uint64_t *flight)
{
    uint64_t f = atomic_load_explicit(flight, memory_order_relaxed);
    int ret;

    /* The drain reads these from other threads. */
    __atomic_store_n(&batch->count, n, __ATOMIC_RELAXED);
    __atomic_store_n(&batch->completed, 0, __ATOMIC_RELAXED);
    batch->status = 0;
    atomic_store_explicit(flight, f + 1, memory_order_release);
    ret = c->s->post(c->s->ep, batch);
    if (ret < 0) {
        atomic_store_explicit(flight, f + 2, memory_order_release);
    }
    return ret;
}

/* One try of hmaf__session_post_async(), inside a read-side section. */
static int post_async_once(struct xfer_call *c, struct hmaf_xfer_batch *batch,
                           uint32_t cap, _Atomic uint64_t *flight,
                           struct hmaf__posted_look *look,
                           struct xfer_cursor *cur, uint64_t *miss_out)
{
    uint32_t n = 0;
    int carry = 0;
    int ret = atomic_load_explicit(&c->s->dead, memory_order_relaxed);

    c->now = hmaf__coarse_now_ns();
    if (ret == 0 && hmaf__session_epoch_due(c->s, c->now)) {
        ret = plan_posted_look(c, look, &carry);
    }
    if (ret == 0) {
        ret = build_batch(c, cur, batch->xfers, cap, &n, miss_out);
    }
    if (ret == 0 && cur->seg < c->nsegs) {
        ret = HMAF_POST_SYNC; /* more than one batch */
    }
    if (ret == 0 && carry) {
        ret = post_look(c, look);
    }
    return ret != 0 ? ret : post_request(c, batch, n, flight);
}

int hmaf__session_post_async(struct hmaf_session *s, enum hmaf_xfer_op op,
                             const hmaf_seg_t *segs, size_t nsegs,
                             struct hmaf_xfer_batch *batch, uint32_t cap,
                             _Atomic uint64_t *flight,
                             struct hmaf__posted_look *look)
{
    struct xfer_call c = {.s = s, .op = op, .segs = segs, .nsegs = nsegs};
    int ret = start_call(&c);

    if (ret == 0 && any_mirror(segs, nsegs)) {
        return HMAF_POST_SYNC;
    }
    batch->op = op;
    batch->local_span = nsegs == 1 ? segs[0].local : NULL;
    batch->local_span_len = nsegs == 1 ? segs[0].len : 0;
    cap = HMAF_MIN(cap, batch_cap(s));
    for (int misses = 0; ret == 0;) {
        struct xfer_cursor cur = {0, 0};
        uint64_t miss = 0;

        hmaf__reader_enter(c.reader);
        ret = post_async_once(&c, batch, cap, flight, look, &cur, &miss);
        hmaf__reader_exit(c.reader);
        if (ret != XFER_RECHECK && ret != XFER_MISS) {
            return ret < 0 ? hmaf__session_fail(s, ret) : ret;
        }
        ret = meet_step_need(&c, ret, &cur, miss, &misses);
    }
    return ret;
}

int hmaf__session_transfer(struct hmaf_session *s, enum hmaf_xfer_op op,
                           const hmaf_seg_t *segs, size_t nsegs)
{
    int ret = s == NULL ? HMAF_EINVAL : hmaf__validate_segs(segs, nsegs);

    if (ret < 0) {
        return ret;
    }
    return any_mirror(segs, nsegs) ? transfer_bounced(s, op, segs, nsegs)
                                   : transfer_direct(s, op, segs, nsegs);
}

/*
 * The one-segment call that one cached region covers, in one step: the
 * same steps as the general path with its bookkeeping (cursor, batch
 * building, step dispatch) left out, because it is most of the cost of a
 * small transfer. Anything else — a miss, an epoch look that is due, a
 * region boundary, a size over one step — goes the general way. Returns
 * XFER_MISS for "take the general path".
 */
static int transfer_single(struct hmaf_session *s, enum hmaf_xfer_op op,
                           const hmaf_seg_t *seg)
{
    struct hmaf_xfer x = {.local = seg->local,
                          .remote_addr = seg->remote_addr,
                          .len = seg->len};
    struct hmaf_xfer_batch batch = {.op = op, .xfers = &x, .count = 1};
    struct hmaf__reader *reader;
    struct hmaf__region *r;
    uint64_t now;
    int ret;

    if (seg->len > HMAF_MIN(s->limits.max_transfer, STEP_BYTES_MAX) ||
        hmaf__reader_get(&s->cache.readers, &reader) < 0) {
        return XFER_MISS;
    }
    hmaf__reader_enter(reader);
    now = hmaf__coarse_now_ns();
    /* A dead session or a due look: the general path says which. */
    r = atomic_load_explicit(&s->dead, memory_order_relaxed) ||
                hmaf__session_epoch_due(s, now)
            ? NULL
            : hmaf__regcache_find_hinted(&s->cache, reader, x.remote_addr,
                                         now);
    if (r == NULL || seg->len > r->iv.len - (x.remote_addr - r->iv.base) ||
        (op == HMAF_XFER_WRITE && r->access != HMAF_ACCESS_READ_WRITE)) {
        hmaf__reader_exit(reader);
        return XFER_MISS;
    }
    x.rmem = r->rmem;
    ret = run_batch(s, &batch);
    hmaf__reader_exit(reader);
    if (ret < 0) {
        return hmaf__session_fail(s, ret);
    }
    hmaf__reader_count(reader, HMAF_RC_CACHE_HITS, 1);
    hmaf__reader_count(reader, HMAF_RC_OPS, 1);
    hmaf__reader_count(reader,
                       op == HMAF_XFER_READ ? HMAF_RC_BYTES_READ
                                            : HMAF_RC_BYTES_WRITTEN,
                       seg->len);
    return 0;
}

static int transfer_one(struct hmaf_session *s, enum hmaf_xfer_op op,
                        const hmaf_seg_t *seg)
{
    int ret;

    if (s == NULL) {
        return HMAF_EINVAL;
    }
    ret = validate_seg(seg);
    if (hmaf__unlikely(ret == 0 &&
                       hmaf__mirrors_overlap(seg->local, seg->len))) {
        return transfer_bounced(s, op, seg, 1);
    }
    if (ret == 0) {
        ret = transfer_single(s, op, seg);
    }
    return ret == XFER_MISS ? hmaf__session_transfer(s, op, seg, 1) : ret;
}

HMAF_API int hmaf_session_read(hmaf_session_t *session, void *buf,
                               uint64_t remote_addr, size_t len)
{
    hmaf_seg_t seg = {.local = buf, .remote_addr = remote_addr, .len = len};

    return transfer_one(session, HMAF_XFER_READ, &seg);
}

HMAF_API int hmaf_session_write(hmaf_session_t *session, uint64_t remote_addr,
                                const void *buf, size_t len)
{
    hmaf_seg_t seg = {.local = (void *)buf, .remote_addr = remote_addr,
                      .len = len};

    return transfer_one(session, HMAF_XFER_WRITE, &seg);
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
