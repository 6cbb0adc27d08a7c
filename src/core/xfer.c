/*
 * The dpu side's data path: split each segment at region boundaries and at
 * the engine's transfer limit, look regions up in the cache (asking the
 * agent on a miss), and hand the pieces to the engine in batches.
 *
 * A cache hit costs a clock read, a read lock, a binary search and a few
 * relaxed counters: no syscall besides the transfer itself.
 */
#include <stdlib.h>

#include <hmaf/error.h>
#include <hmaf/types.h>
#include <hmaf/session.h>

#include "core/session_int.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"

/* Transfer descriptors built per engine post; lives on the stack. */
#define XFER_BATCH_MAX 256
/* build_batch() stopped at an address no cached region covers. */
#define XFER_MISS 1

struct xfer_cursor {
    size_t seg;   /* current segment */
    uint64_t off; /* bytes of it already handed to the engine */
};

static int validate_segs(const hmaf_seg_t *segs, size_t nsegs)
{
    if (segs == NULL || nsegs == 0) {
        return HMAF_EINVAL;
    }
    for (size_t i = 0; i < nsegs; i++) {
        if (segs[i].local == NULL || segs[i].len == 0) {
            return HMAF_EINVAL;
        }
        if (segs[i].len > UINT64_MAX - segs[i].remote_addr) {
            return HMAF_EOVERFLOW;
        }
    }
    return 0;
}

int hmaf__session_check_epoch(struct hmaf_session *s)
{
    uint64_t now = hmaf__now_ns();
    uint64_t epoch;
    int ret;

    if (now < atomic_load_explicit(&s->next_check_ns, memory_order_relaxed)) {
        return 0;
    }
    /* One thread looks; the others go on, as they would between checks. */
    if (pthread_mutex_trylock(&s->epoch_lock) != 0) {
        return 0;
    }
    ret = hmaf__mbox_read_epoch(&s->mbox, &epoch);
    if (ret == 0 && epoch != s->epoch_seen) {
        /* clear() waits for transfers that still use the old regions, so
         * once the ack lands nothing can reach a revoked range. */
        hmaf__regcache_clear(&s->cache, epoch);
        s->epoch_seen = epoch;
        ret = hmaf__mbox_ack_epoch(&s->mbox, epoch);
        hmaf__count(s, revocations, 1);
    }
    if (ret == 0) {
        atomic_store_explicit(&s->next_check_ns,
                              now + s->params.revoke_check_us * 1000ull,
                              memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->epoch_lock);
    return hmaf__session_fail(s, ret);
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

/*
 * Fill xfers from the cursor on until the batch is full, the segments are
 * done, or no cached region covers the next byte (XFER_MISS, *miss_out set).
 * Caller holds the cache's read lock.
 */
static int build_batch(struct hmaf_session *s, enum hmaf_xfer_op op,
                       const hmaf_seg_t *segs, size_t nsegs,
                       struct xfer_cursor *cur, struct hmaf_xfer *xfers,
                       uint32_t cap, uint32_t *n_out, uint64_t *miss_out)
{
    uint32_t n = 0;

    *n_out = 0;
    while (cur->seg < nsegs && n < cap) {
        const hmaf_seg_t *seg = &segs[cur->seg];
        uint64_t addr = seg->remote_addr + cur->off;
        struct hmaf__region *r = hmaf__regcache_find(&s->cache, addr);
        uint64_t piece;

        if (r == NULL) {
            *miss_out = addr;
            *n_out = n;
            return XFER_MISS;
        }
        if (op == HMAF_XFER_WRITE && r->access != HMAF_ACCESS_READ_WRITE) {
            return HMAF_EACCES;
        }
        hmaf__count(s, cache_hits, 1);
        piece = HMAF_MIN(seg->len - cur->off, r->iv.len - (addr - r->iv.base));
        piece = HMAF_MIN(piece, s->limits.max_transfer);
        xfers[n++] = (struct hmaf_xfer){
            .rmem = r->rmem,
            .local = (char *)seg->local + cur->off,
            .remote_addr = addr,
            .len = (size_t)piece,
        };
        cursor_advance(cur, segs, piece);
    }
    *n_out = n;
    return 0;
}

static uint32_t batch_cap(const struct hmaf_session *s)
{
    uint32_t cap = HMAF_MIN((uint32_t)XFER_BATCH_MAX, s->limits.max_segments);

    return HMAF_MAX(1u, HMAF_MIN(cap, s->limits.max_inflight));
}

/* Build and run one batch under the read lock. */
static int step(struct hmaf_session *s, enum hmaf_xfer_op op,
                const hmaf_seg_t *segs, size_t nsegs, struct xfer_cursor *cur,
                uint64_t *miss_out)
{
    struct hmaf_xfer xfers[XFER_BATCH_MAX];
    struct hmaf_xfer_batch batch = {.op = op, .xfers = xfers};
    int built, ret = 0;

    hmaf__regcache_read_lock(&s->cache);
    built = build_batch(s, op, segs, nsegs, cur, xfers, batch_cap(s),
                        &batch.count, miss_out);
    if (built >= 0 && batch.count > 0) {
        ret = hmaf__engine_run(s->ep, &batch);
    }
    hmaf__regcache_read_unlock(&s->cache);
    return ret < 0 ? hmaf__session_fail(s, ret) : built;
}

static int transfer(struct hmaf_session *s, enum hmaf_xfer_op op,
                    const hmaf_seg_t *segs, size_t nsegs)
{
    struct xfer_cursor cur = {0, 0};
    uint64_t bytes = 0;
    int ret;

    if (s == NULL) {
        return HMAF_EINVAL;
    }
    ret = validate_segs(segs, nsegs);
    if (ret == 0) {
        ret = atomic_load_explicit(&s->dead, memory_order_relaxed);
    }
    if (ret == 0) {
        ret = hmaf__session_check_epoch(s);
    }
    while (ret >= 0 && cur.seg < nsegs) {
        uint64_t miss = 0;
        ret = step(s, op, segs, nsegs, &cur, &miss);
        if (ret == XFER_MISS) {
            ret = hmaf__session_register(s, miss,
                                         segs[cur.seg].len - cur.off);
        }
    }
    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < nsegs; i++) {
        bytes += segs[i].len;
    }
    hmaf__count(s, ops, 1);
    if (op == HMAF_XFER_READ) {
        hmaf__count(s, bytes_read, bytes);
    } else {
        hmaf__count(s, bytes_written, bytes);
    }
    return 0;
}

HMAF_API int hmaf_session_read(hmaf_session_t *session, void *buf,
                               uint64_t remote_addr, size_t len)
{
    hmaf_seg_t seg = {.local = buf, .remote_addr = remote_addr, .len = len};

    return transfer(session, HMAF_XFER_READ, &seg, 1);
}

HMAF_API int hmaf_session_write(hmaf_session_t *session, uint64_t remote_addr,
                                const void *buf, size_t len)
{
    hmaf_seg_t seg = {.local = (void *)buf, .remote_addr = remote_addr,
                      .len = len};

    return transfer(session, HMAF_XFER_WRITE, &seg, 1);
}

HMAF_API int hmaf_session_readv(hmaf_session_t *session, const hmaf_seg_t *segs,
                                size_t nsegs)
{
    return transfer(session, HMAF_XFER_READ, segs, nsegs);
}

HMAF_API int hmaf_session_writev(hmaf_session_t *session,
                                 const hmaf_seg_t *segs, size_t nsegs)
{
    return transfer(session, HMAF_XFER_WRITE, segs, nsegs);
}
