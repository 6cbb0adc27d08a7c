/* The data path's interface to the rest of the core (core/datapath.c). */
#ifndef HMAF_CORE_DATAPATH_H
#define HMAF_CORE_DATAPATH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <hmaf/error.h>
#include <hmaf/session.h>

#include "core/session_int.h"
#include "engine/engine.h"
#include "util/mirrors.h"

/* HMAF_EINVAL (NULL buffer, empty), HMAF_EOVERFLOW (remote_addr + len
 * wraps), or 0. */
static inline int hmaf__validate_seg(const hmaf_seg_t *seg)
{
    if (seg->local == NULL || seg->len == 0) {
        return HMAF_EINVAL;
    }
    return seg->len > UINT64_MAX - seg->remote_addr ? HMAF_EOVERFLOW : 0;
}

/* Might [local, local + len) be mirror memory? Two loads and no call: a
 * fast path that gets 1 leaves the buffer to the general way, which asks
 * hmaf__mirrors_overlap() exactly. */
static inline int hmaf__maybe_mirrored(const void *local, size_t len)
{
    uintptr_t at = (uintptr_t)local;

    return at < atomic_load_explicit(&hmaf__mirrors_hi, memory_order_relaxed) &&
           at + len >
               atomic_load_explicit(&hmaf__mirrors_lo, memory_order_relaxed);
}

/* The checks a segment list passes once, before it moves (or is queued
 * to move): HMAF_EINVAL (NULL, nothing, an empty segment or a NULL
 * buffer), HMAF_EOVERFLOW, or 0 with *mirrored_out set when any buffer is
 * mirror memory (util/mirrors.h), which moves through a bounce buffer. */
int hmaf__check_segs(const hmaf_seg_t *segs, size_t nsegs, int *mirrored_out);

/* The synchronous data path for segments that passed hmaf__check_segs
 * (mirrored: as it said): request.c checks a request's segments once,
 * when it is posted, and runs them through here. */
int hmaf__session_transfer_valid(struct hmaf_session *s, enum hmaf_xfer_op op,
                                 const hmaf_seg_t *segs, size_t nsegs,
                                 int mirrored);

/* A look at the revocation epoch that a posted request carried (engine
 * ASYNC): a batch of its own, posted just before the request's, one per
 * thread's queue of requests (request.c). Its owner looks at what it read
 * when it progresses the queue (hmaf__session_posted_look_done). */
struct hmaf__posted_look {
    struct hmaf_xfer_batch batch;
    struct hmaf_xfer xfer;
    uint8_t word[8];         /* the epoch as the host's mailbox holds it */
    uint64_t posted_ns;      /* coarse clock before it was posted */
    _Atomic uint64_t flight; /* odd from its post until its owner looked
                                at it (the drain waits for an odd one) */
};

/* What became of a request hmaf__session_post_async() was given. */
enum hmaf__post_result {
    HMAF_POSTED,      /* in flight: done when batch->completed ==
                         batch->count; *flight stays odd until then */
    HMAF_POST_SYNC,   /* more than one batch: run it the synchronous way */
    HMAF_POST_FAILED, /* not posted: *err_out says why */
};

/* Non-blocking requests on an engine ASYNC (request.c): build the
 * transfers of segs (validated, no mirror memory) into batch->xfers (room
 * for cap) and post them inside a read-side section, *flight made odd
 * before the section ends (the drain waits for an odd one). A look at the
 * epoch that is due goes with them as *look, unless the queue's look in
 * flight covers it. */
enum hmaf__post_result hmaf__session_post_async(
    struct hmaf_session *s, enum hmaf_xfer_op op, const hmaf_seg_t *segs,
    size_t nsegs, struct hmaf_xfer_batch *batch, uint32_t cap,
    _Atomic uint64_t *flight, struct hmaf__posted_look *look, int *err_out);

/* The queue's owner, outside any section: once the engine is done with
 * *look, count it as a look at the epoch, or take the separate look when
 * it found the epoch moved or failed. Nothing while it is not in flight or
 * not done. */
void hmaf__session_posted_look_done(struct hmaf_session *s,
                                    struct hmaf__posted_look *look);

#endif
