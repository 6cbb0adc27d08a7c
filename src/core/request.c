/*
 * Non-blocking transfers. Each thread has its own queue per session, kept
 * in its reader slot, so posting and completing need no lock and threads
 * never wait for one another.
 *
 * With a synchronous engine (cma), posting records the segments;
 * progressing runs them through the synchronous data path, merging
 * consecutive requests of one direction into one call, which the engine
 * turns into as few operations as it can (one process_vm_readv per 1024
 * segments with cma). Handle-less one-segment posts, one after another,
 * share one entry of the request table (a run), so that such a post
 * costs little more than copying its segment.
 *
 * With an asynchronous engine (HMAF_ENGINE_ASYNC: doca), posting hands the
 * request to the engine at once, as one batch of its own (datapath.c,
 * hmaf__session_post_async), and progressing completes what the engine
 * finished: the transfers overlap the caller's work. A request that needs
 * more than ASYNC_XFERS transfers, or moves mirror memory, runs at post
 * and is born complete. A request in flight is outside any read-side
 * section, so the session's readers have a drain: after a grace period,
 * whoever waits (a revocation, an eviction, the session's fence) drives
 * the engine until every request that was in flight is done, before any
 * import is released. A post that finds the revocation epoch due for a
 * look carries it (datapath.c): the queue's look goes to the engine beside
 * the request, and the request completes once both are done, when the
 * look is looked at.
 *
 * A request's segments are validated once, when it is posted; the data
 * path takes them as they are when the request runs.
 *
 * A handle is request index | generation << 16. Generations are unique
 * in the process — each queue takes ranges of them from one counter — so
 * a handle from another session or thread, a consumed one, or garbage is
 * recognised: it names a generation the caller's queue does not hold.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <stdatomic.h>

#include <hmaf/error.h>
#include <hmaf/session.h>

#include "core/datapath.h"
#include "core/session_int.h"
#include "util/compiler.h"

/* REQ_ATOMIC: a posted batch of atomics (atomic.c), in the mailbox. */
enum req_state { REQ_FREE, REQ_PENDING, REQ_INFLIGHT, REQ_DONE, REQ_ATOMIC };

/* Transfers of one request handed to an asynchronous engine, at most. */
#define ASYNC_XFERS 16

struct queued_req {
    uint64_t gen;
    uint8_t state;
    uint8_t op;         /* enum hmaf_xfer_op */
    uint8_t has_handle; /* else freed at completion, error kept for flush */
    uint8_t mirrored;   /* a buffer is mirror memory (bounced) */
    uint8_t joined;     /* handle-less one-segment posts, one after the
                           other: each segment is a request of its own */
    int status;
    uint32_t first_seg; /* while pending: its segments in queue->segs */
    uint32_t nsegs;
    uint64_t bytes; /* in flight: counted when it succeeds */
    struct hmaf__atomic_post *atomic; /* REQ_ATOMIC: the batch */
};

struct queue {
    int owner_tid;     /* a reclaimed slot's queue starts over */
    uint32_t window;   /* segments and requests, at most */
    uint32_t nsegs;
    uint32_t npending;
    uint32_t run;      /* the pending request that handle-less one-
                          segment posts join (a run), or NO_REQ; while
                          open, its segments go on to nsegs */
    uint8_t run_op;    /* the run's direction + 1; 0 while none is open */
    uint64_t next_gen; /* the queue's range of generations: */
    uint64_t gen_end;  /* [next_gen, gen_end) */
    int deferred_error; /* first error of a handle-less request */
    hmaf_seg_t *segs;      /* pending segments in post order */
    uint32_t *pending;     /* pending request indices in post order */
    struct queued_req *reqs;
    uint32_t *free_list;   /* indices of free reqs: a stack */
    uint32_t nfree;
    struct hmaf__reader *reader; /* the owner's slot */
    /* Engine ASYNC only (else NULL), per request: */
    struct hmaf_xfer_batch *batches;
    struct hmaf_xfer *xfers;   /* ASYNC_XFERS each */
    _Atomic uint64_t *flight;  /* odd while its batch may be in flight */
    uint32_t *inflight;        /* indices of requests in flight */
    uint32_t ninflight;
    uint32_t inflight_segs;
    struct hmaf__posted_look look; /* the epoch look posts carry */
    uint32_t look_req; /* the request that carried it, or NO_LOOK_REQ */
};

#define NO_LOOK_REQ UINT32_MAX
#define NO_REQ UINT32_MAX

#define HANDLE_INDEX_BITS 16
#define HANDLE_GEN_BITS 48
/* Generations a queue takes at a time: one atomic add per this many. */
#define GEN_RANGE (1ull << 20)

_Static_assert(HMAF_MAX_INFLIGHT <= 1 << HANDLE_INDEX_BITS, "index bits");

/* Ranges handed out so far; range 0 is never used, so no generation (and
 * no handle) is 0. After 2^48 posts in one process they come round. */
static _Atomic uint64_t gen_ranges = 1;

static hmaf_req_t encode_handle(uint32_t index, uint64_t gen)
{
    return (hmaf_req_t)index | (hmaf_req_t)gen << HANDLE_INDEX_BITS;
}

static uint64_t next_gen(struct queue *q)
{
    if (q->next_gen == q->gen_end) {
        uint64_t range = atomic_fetch_add(&gen_ranges, 1) %
                         ((1ull << HANDLE_GEN_BITS) / GEN_RANGE);
        q->next_gen = (range == 0 ? 1 : range) * GEN_RANGE;
        q->gen_end = q->next_gen + GEN_RANGE;
    }
    return q->next_gen++;
}

static void free_queue(struct queue *q)
{
    if (q != NULL) {
        free(q->segs);
        free(q->pending);
        free(q->reqs);
        free(q->free_list);
        free(q->batches);
        free(q->xfers);
        free((void *)q->flight);
        free(q->inflight);
        free(q);
    }
}

static int alloc_async(struct queue *q, uint32_t window)
{
    q->batches = calloc(window, sizeof(*q->batches));
    q->xfers = calloc((size_t)window * ASYNC_XFERS, sizeof(*q->xfers));
    q->flight = calloc(window, sizeof(*q->flight));
    q->inflight = calloc(window, sizeof(*q->inflight));
    if (q->batches == NULL || q->xfers == NULL || q->flight == NULL ||
        q->inflight == NULL) {
        return HMAF_ENOMEM;
    }
    for (uint32_t i = 0; i < window; i++) {
        q->batches[i].xfers = q->xfers + (size_t)i * ASYNC_XFERS;
    }
    return 0;
}

static struct queue *new_queue(uint32_t window, int tid, int async)
{
    struct queue *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        return NULL;
    }
    q->segs = calloc(window, sizeof(*q->segs));
    q->pending = calloc(window, sizeof(*q->pending));
    q->reqs = calloc(window, sizeof(*q->reqs));
    q->free_list = calloc(window, sizeof(*q->free_list));
    if (q->segs == NULL || q->pending == NULL || q->reqs == NULL ||
        q->free_list == NULL || (async && alloc_async(q, window) < 0)) {
        free_queue(q);
        return NULL;
    }
    for (uint32_t i = 0; i < window; i++) {
        q->free_list[i] = window - 1 - i; /* pops 0 first */
    }
    q->nfree = window;
    q->window = window;
    q->owner_tid = tid;
    q->look_req = NO_LOOK_REQ;
    q->run = NO_REQ;
    return q; /* next_gen == gen_end: the first post takes a range */
}

static int async_engine(const struct hmaf_session *s)
{
    return (s->ops->flags & HMAF_ENGINE_ASYNC) != 0;
}

/* Progress the engine until batch b, whose flight is *flight, is no
 * longer in flight. */
static void drain_one(struct hmaf_session *s, _Atomic uint64_t *flight,
                      struct hmaf_xfer_batch *b)
{
    uint64_t f = atomic_load_explicit(flight, memory_order_acquire);

    while ((f & 1) && atomic_load_explicit(flight, memory_order_acquire) == f &&
           __atomic_load_n(&b->completed, __ATOMIC_ACQUIRE) <
               __atomic_load_n(&b->count, __ATOMIC_RELAXED)) {
        s->ops->progress(s->ep);
    }
}

/* Under queues_lock. */
static void drain_queue(struct hmaf_session *s, struct queue *q)
{
    if (q == NULL || q->flight == NULL) {
        return;
    }
    for (uint32_t i = 0; i < q->window; i++) {
        drain_one(s, &q->flight[i], &q->batches[i]);
    }
    drain_one(s, &q->look.flight, &q->look.batch);
}

void hmaf__request_drain(void *session)
{
    struct hmaf_session *s = session;

    pthread_mutex_lock(&s->queues_lock);
    for (int i = 0; i < HMAF_READER_SLOTS; i++) {
        drain_queue(s, s->cache.readers.slot[i].queue);
    }
    pthread_mutex_unlock(&s->queues_lock);
}

/* Posted atomics whose handles go with their queue: their mailbox
 * slots come back (a late answer there names an old sequence number). */
static void drop_atomics(struct hmaf_session *s, struct queue *q)
{
    for (uint32_t i = 0; q != NULL && i < q->window; i++) {
        if (q->reqs[i].state == REQ_ATOMIC) {
            hmaf__atomic_post_drop(s, q->reqs[i].atomic);
            q->reqs[i].state = REQ_FREE;
        }
    }
}

/* A queue for a slot new to this thread; what an exited thread left in
 * flight is waited for first (the engine still writes its batches). */
static struct queue *replace_queue(struct hmaf_session *s,
                                   struct hmaf__reader *r)
{
    struct queue *q = new_queue(s->params.max_inflight,
                                atomic_load(&r->owner), async_engine(s));

    if (q != NULL) {
        q->reader = r; /* a queue stays with its slot */
    }
    pthread_mutex_lock(&s->queues_lock);
    drain_queue(s, r->queue);
    drop_atomics(s, r->queue);
    free_queue(r->queue);
    r->queue = q;
    pthread_mutex_unlock(&s->queues_lock);
    return q;
}

/* A queue for this thread's slot, where it has none of its own yet. */
static __attribute__((noinline)) int new_queue_for(struct hmaf_session *s,
                                                   struct hmaf__reader *r,
                                                   struct queue **q_out)
{
    struct queue *q = replace_queue(s, r);

    if (q == NULL) {
        return HMAF_ENOMEM;
    }
    *q_out = q;
    return 0;
}

/* This thread's queue; a queue left by an exited thread is started over. */
static inline __attribute__((always_inline)) int
my_queue(struct hmaf_session *s, struct queue **q_out)
{
    struct hmaf__reader *r;
    struct queue *q;
    int ret = hmaf__reader_get(&s->cache.readers, &r);

    if (ret < 0) {
        return ret;
    }
    q = r->queue;
    if (hmaf__unlikely(q == NULL || q->owner_tid != atomic_load(&r->owner))) {
        return new_queue_for(s, r, q_out);
    }
    *q_out = q;
    return 0;
}

void hmaf__request_queues_free(struct hmaf_session *s)
{
    for (int i = 0; i < HMAF_READER_SLOTS; i++) {
        drop_atomics(s, s->cache.readers.slot[i].queue);
        free_queue(s->cache.readers.slot[i].queue);
        s->cache.readers.slot[i].queue = NULL;
    }
}

static void release(struct queue *q, uint32_t index)
{
    q->reqs[index].state = REQ_FREE;
    q->free_list[q->nfree++] = index;
}

static void complete(struct queue *q, uint32_t index, int status)
{
    struct queued_req *r = &q->reqs[index];

    r->status = status;
    r->state = REQ_DONE;
    if (!r->has_handle) {
        if (status < 0 && q->deferred_error == 0) {
            q->deferred_error = status;
        }
        release(q, index);
    }
}

/* Run one request's segments (checked when it was posted) on their own.
 * Joined posts are each their own request: each segment runs alone, and
 * the first error is theirs (they have no handle to tell the others). */
static int run_request(struct hmaf_session *s, struct queue *q,
                       const struct queued_req *r)
{
    const hmaf_seg_t *segs = &q->segs[r->first_seg];
    int first_err = 0;

    if (!r->joined) {
        return hmaf__session_transfer_valid(s, r->op, segs, r->nsegs,
                                            r->mirrored);
    }
    for (uint32_t i = 0; i < r->nsegs; i++) {
        int err = hmaf__session_transfer_valid(s, r->op, &segs[i], 1,
                                               r->mirrored);
        first_err = first_err == 0 ? err : first_err;
    }
    return first_err;
}

/* Run pending[from, to): all one direction, their segments contiguous,
 * mirrored when any of them is. */
static void run_requests(struct hmaf_session *s, struct queue *q,
                         uint32_t from, uint32_t to, int mirrored)
{
    const struct queued_req *first = &q->reqs[q->pending[from]];
    const struct queued_req *last = &q->reqs[q->pending[to - 1]];
    uint32_t nsegs = last->first_seg + last->nsegs - first->first_seg;
    int ret = hmaf__session_transfer_valid(
        s, first->op, &q->segs[first->first_seg], nsegs, mirrored);

    for (uint32_t i = from; i < to; i++) {
        const struct queued_req *r = &q->reqs[q->pending[i]];
        /* A merged run failed somewhere: give each request its own fate. */
        int status = ret == 0 || (to - from == 1 && !r->joined)
                         ? ret
                         : run_request(s, q, r);
        complete(q, q->pending[i], status);
    }
}

static int batch_done(struct hmaf_xfer_batch *b)
{
    return __atomic_load_n(&b->completed, __ATOMIC_ACQUIRE) >= b->count;
}

/* Has the engine finished request i, and the look it carried? */
static int request_done(struct queue *q, uint32_t i)
{
    return batch_done(&q->batches[i]) &&
           (i != q->look_req || batch_done(&q->look.batch));
}

/* Complete the requests whose batches the engine finished; then look at
 * the epoch look they carried, if it is done (outside the loop: a moved
 * epoch takes the separate look, which drains this queue). */
static void reap(struct hmaf_session *s, struct queue *q)
{
    for (uint32_t k = 0; k < q->ninflight;) {
        uint32_t i = q->inflight[k];
        struct hmaf_xfer_batch *b = &q->batches[i];
        struct queued_req *r = &q->reqs[i];
        uint64_t f;
        int status;

        if (!request_done(q, i)) {
            k++;
            continue;
        }
        if (i == q->look_req) {
            q->look_req = NO_LOOK_REQ;
        }
        f = atomic_load_explicit(&q->flight[i], memory_order_relaxed);
        atomic_store_explicit(&q->flight[i], f + 1, memory_order_release);
        q->inflight[k] = q->inflight[--q->ninflight];
        q->inflight_segs -= r->nsegs;
        status = hmaf__session_fail(s, b->status);
        if (status == 0) {
            hmaf__reader_count(q->reader, HMAF_RC_OPS, 1);
            hmaf__reader_count(q->reader,
                               r->op == HMAF_XFER_READ ? HMAF_RC_BYTES_READ
                                                       : HMAF_RC_BYTES_WRITTEN,
                               r->bytes);
        }
        complete(q, i, status);
    }
    hmaf__session_posted_look_done(s, &q->look);
}

/* Everything in flight, done. */
static void progress_async(struct hmaf_session *s, struct queue *q)
{
    reap(s, q);
    while (q->ninflight > 0) {
        s->ops->progress(s->ep);
        reap(s, q);
    }
}

/* The open run, if any, takes no more posts: its segments are counted. */
static void close_run(struct queue *q)
{
    struct queued_req *r;

    if (q->run == NO_REQ) {
        return;
    }
    r = &q->reqs[q->run];
    r->nsegs = q->nsegs - r->first_seg;
    r->joined = r->nsegs > 1;
    q->run = NO_REQ;
    q->run_op = 0;
}

static void progress(struct hmaf_session *s, struct queue *q)
{
    uint32_t i = 0;

    if (q->ninflight > 0) {
        progress_async(s, q);
    }
    close_run(q);

    while (i < q->npending) {
        uint8_t op = q->reqs[q->pending[i]].op;
        int mirrored = q->reqs[q->pending[i]].mirrored;
        uint32_t j = i + 1;
        while (j < q->npending && q->reqs[q->pending[j]].op == op) {
            mirrored |= q->reqs[q->pending[j++]].mirrored;
        }
        run_requests(s, q, i, j, mirrored);
        i = j;
    }
    q->npending = 0;
    q->nsegs = 0;
}

static long free_request(struct queue *q)
{
    return q->nfree == 0 ? -1 : (long)q->free_list[--q->nfree];
}

/* Room for nsegs more segments and one request, progressing if need be.
 * Inlined: it is most of a cma post. */
static inline __attribute__((always_inline)) long
make_room(struct hmaf_session *s, struct queue *q, size_t nsegs)
{
    long index;

    if (q->nsegs + q->inflight_segs + nsegs > q->window) {
        progress(s, q);
    }
    index = free_request(q);
    if (index < 0) {
        progress(s, q);
        index = free_request(q);
    }
    return index < 0 ? HMAF_ENOSPC : index;
}

/* What a post knows of its request once the segments passed. */
struct post {
    enum hmaf_xfer_op op;
    const hmaf_seg_t *segs;
    size_t nsegs;
    int mirrored; /* a buffer is mirror memory */
    hmaf_req_t *req_out;
};

static void copy_segs(hmaf_seg_t *to, const hmaf_seg_t *from, size_t nsegs)
{
    if (nsegs == 1) {
        *to = *from; /* most posts: no call to memcpy */
    } else {
        memcpy(to, from, nsegs * sizeof(*from));
    }
}

/* A new request in the queue's table, its handle given out. */
static inline __attribute__((always_inline)) struct queued_req *
new_request(struct queue *q, long index, const struct post *p, uint8_t state)
{
    struct queued_req *r = &q->reqs[index];

    /* Field by field: a compound literal would clear the padding too. */
    r->gen = next_gen(q);
    r->state = state;
    r->op = (uint8_t)p->op;
    r->has_handle = p->req_out != NULL;
    r->mirrored = (uint8_t)p->mirrored;
    r->joined = 0;
    r->status = 0;
    r->first_seg = 0;
    r->nsegs = (uint32_t)p->nsegs;
    r->bytes = 0;
    r->atomic = NULL;
    if (p->req_out != NULL) {
        *p->req_out = encode_handle((uint32_t)index, r->gen);
    }
    return r;
}

/*
 * A handle-less one-segment post (without mirror memory) joins the run
 * the queue's last such post opened, where it can: the same direction,
 * and room in the window. It then costs a segment's copy, not a request
 * of its own; run_request still gives it its own fate.
 */
static inline __attribute__((always_inline)) int
join(struct queue *q, enum hmaf_xfer_op op, const hmaf_seg_t *seg)
{
    if (q->run_op != (uint8_t)op + 1 ||
        q->nsegs + q->inflight_segs >= q->window) {
        return 0;
    }
    q->segs[q->nsegs++] = *seg;
    return 1;
}

/* A synchronous engine: queued, to run merged with its neighbours. */
static inline __attribute__((always_inline)) int
enqueue(struct hmaf_session *s, struct queue *q, const struct post *p)
{
    int joinable = p->nsegs == 1 && p->req_out == NULL && !p->mirrored;
    struct queued_req *r;
    long index;

    if (joinable && join(q, p->op, p->segs)) {
        return 0;
    }
    close_run(q); /* requests stay in post order */
    index = make_room(s, q, p->nsegs);
    if (index < 0) {
        return (int)index;
    }
    r = new_request(q, index, p, REQ_PENDING);
    r->first_seg = q->nsegs;
    copy_segs(&q->segs[q->nsegs], p->segs, p->nsegs);
    q->nsegs += (uint32_t)p->nsegs;
    q->pending[q->npending++] = (uint32_t)index;
    if (joinable) { /* it opens a run */
        q->run = (uint32_t)index;
        q->run_op = (uint8_t)p->op + 1;
    }
    return 0;
}

/* Larger than the window: it runs now and is born complete. */
static __attribute__((noinline)) int
post_oversized(struct hmaf_session *s, struct queue *q, const struct post *p)
{
    int status = hmaf__session_transfer_valid(s, p->op, p->segs, p->nsegs,
                                              p->mirrored);
    long index = make_room(s, q, 0);

    if (index < 0) {
        return (int)index;
    }
    new_request(q, index, p, REQ_PENDING);
    complete(q, (uint32_t)index, status);
    return 0;
}

/* Engine ASYNC: to the engine now; what cannot go in one batch, or moves
 * mirror memory, runs now. */
static __attribute__((noinline)) int
post_async(struct hmaf_session *s, struct queue *q, const struct post *p)
{
    long index = make_room(s, q, p->nsegs);
    enum hmaf__post_result res = HMAF_POST_SYNC;
    struct queued_req *r;
    uint64_t look_flight;
    int err = 0;

    if (index < 0) {
        return (int)index;
    }
    r = new_request(q, index, p, REQ_INFLIGHT);
    for (size_t i = 0; i < p->nsegs; i++) {
        r->bytes += p->segs[i].len;
    }
    look_flight = atomic_load_explicit(&q->look.flight, memory_order_relaxed);
    if (!p->mirrored) {
        res = hmaf__session_post_async(s, p->op, p->segs, p->nsegs,
                                       &q->batches[index], ASYNC_XFERS,
                                       &q->flight[index], &q->look, &err);
    }
    if (res == HMAF_POSTED) {
        q->inflight[q->ninflight++] = (uint32_t)index;
        q->inflight_segs += (uint32_t)p->nsegs;
        if (atomic_load_explicit(&q->look.flight, memory_order_relaxed) !=
            look_flight) {
            q->look_req = (uint32_t)index; /* it carried the look */
        }
        return 0;
    }
    if (res == HMAF_POST_SYNC) {
        err = hmaf__session_transfer_valid(s, p->op, p->segs, p->nsegs,
                                           p->mirrored);
    }
    complete(q, (uint32_t)index, err);
    return 0;
}

/* Segments that passed their checks, on a live session. */
static inline __attribute__((always_inline)) int
post_valid(struct hmaf_session *s, const struct post *p)
{
    struct queue *q;
    int err = atomic_load_explicit(&s->dead, memory_order_relaxed);

    if (err == 0) {
        err = my_queue(s, &q);
    }
    if (err < 0) {
        return err;
    }
    if (p->nsegs > q->window) {
        return post_oversized(s, q, p);
    }
    if (q->flight != NULL) {
        return post_async(s, q, p);
    }
    return enqueue(s, q, p);
}

/* One segment, the general way: its checks inline, the rest as for many.
 * The public calls' arguments in their order, op last: the calls go
 * straight on here. */
static __attribute__((noinline)) int
post_one(struct hmaf_session *s, void *local, uint64_t remote_addr,
         size_t len, hmaf_req_t *req_out, enum hmaf_xfer_op op)
{
    hmaf_seg_t seg = {.local = local, .remote_addr = remote_addr, .len = len};
    struct post p = {.op = op, .segs = &seg, .nsegs = 1, .req_out = req_out};
    int err = s == NULL ? HMAF_EINVAL : hmaf__validate_seg(&seg);

    if (err < 0) {
        return err;
    }
    p.mirrored = hmaf__mirrors_overlap(local, len);
    return post_valid(s, &p);
}

static int post_many(struct hmaf_session *s, enum hmaf_xfer_op op,
                     const hmaf_seg_t *segs, size_t nsegs, hmaf_req_t *req_out)
{
    struct post p = {.op = op, .segs = segs, .nsegs = nsegs,
                     .req_out = req_out};
    int err = s == NULL ? HMAF_EINVAL
                        : hmaf__check_segs(segs, nsegs, &p.mirrored);

    return err < 0 ? err : post_valid(s, &p);
}

/*
 * The commonest post on a synchronous engine, a handle-less one-segment
 * post after another, joins their run (join) without a function call: 1
 * when it did. Anything else — a first such post, an argument to look
 * at, a full window, a dead session, mirror memory, an asynchronous
 * engine (whose queues open no runs) — returns 0 and takes the general
 * way, which does the same when it comes to it.
 */
static inline __attribute__((always_inline)) int
post_joined(struct hmaf_session *s, enum hmaf_xfer_op op, void *local,
            uint64_t remote_addr, size_t len)
{
    hmaf_seg_t seg = {.local = local, .remote_addr = remote_addr, .len = len};
    struct hmaf__reader *r;
    struct queue *q;

    /* The thread's last slot only (readers.h): no call on this path. */
    if (s == NULL || local == NULL || len == 0 ||
        remote_addr + len <= remote_addr ||
        hmaf__maybe_mirrored(local, len) ||
        atomic_load_explicit(&s->dead, memory_order_relaxed)) {
        return 0;
    }
    r = hmaf__reader_last_of(s->readers_id);
    if (r == NULL) {
        return 0;
    }
    q = r->queue;
    return q != NULL && q->owner_tid == atomic_load(&r->owner) &&
           join(q, op, &seg);
}

HMAF_API HMAF_HOT int hmaf_session_post_read(hmaf_session_t *session,
                                             void *buf, uint64_t remote_addr,
                                             size_t len, hmaf_req_t *req_out)
{
    if (req_out == NULL &&
        post_joined(session, HMAF_XFER_READ, buf, remote_addr, len)) {
        return 0;
    }
    return post_one(session, buf, remote_addr, len, req_out, HMAF_XFER_READ);
}

HMAF_API HMAF_HOT int hmaf_session_post_write(hmaf_session_t *session,
                                              uint64_t remote_addr,
                                              const void *buf, size_t len,
                                              hmaf_req_t *req_out)
{
    if (req_out == NULL &&
        post_joined(session, HMAF_XFER_WRITE, (void *)buf, remote_addr, len)) {
        return 0;
    }
    return post_one(session, (void *)buf, remote_addr, len, req_out,
                    HMAF_XFER_WRITE);
}

HMAF_API int hmaf_session_post_readv(hmaf_session_t *session,
                                     const hmaf_seg_t *segs, size_t nsegs,
                                     hmaf_req_t *req_out)
{
    return post_many(session, HMAF_XFER_READ, segs, nsegs, req_out);
}

HMAF_API int hmaf_session_post_writev(hmaf_session_t *session,
                                      const hmaf_seg_t *segs, size_t nsegs,
                                      hmaf_req_t *req_out)
{
    return post_many(session, HMAF_XFER_WRITE, segs, nsegs, req_out);
}

int hmaf__request_add_atomic(struct hmaf_session *s,
                             struct hmaf__atomic_post *p, hmaf_req_t *req_out)
{
    struct post post = {.req_out = req_out};
    struct queued_req *r;
    struct queue *q;
    long index;
    int err = my_queue(s, &q);

    if (err < 0) {
        return err;
    }
    index = make_room(s, q, 0);
    if (index < 0) {
        return (int)index;
    }
    r = new_request(q, index, &post, REQ_ATOMIC);
    r->atomic = p;
    return 0;
}

/* A posted batch of atomics: look at it once, or wait for it. */
static void progress_atomic(struct hmaf_session *s, struct queued_req *r,
                            int wait)
{
    int status = wait ? hmaf__atomic_post_wait(s, r->atomic)
                      : hmaf__atomic_post_test(s, r->atomic);

    if (status != HMAF_EINPROGRESS) {
        r->atomic = NULL; /* freed by atomic.c */
        r->status = status;
        r->state = REQ_DONE;
    }
}

/* The caller's request behind a handle, or NULL when it is not one. */
static struct queued_req *lookup(struct hmaf_session *s, hmaf_req_t req,
                                 struct queue **q_out)
{
    struct queue *q;
    uint32_t index = (uint32_t)(req & ((1u << HANDLE_INDEX_BITS) - 1));
    uint64_t gen = req >> HANDLE_INDEX_BITS;

    if (my_queue(s, &q) < 0 || index >= q->window || gen == 0 ||
        q->reqs[index].gen != gen ||
        q->reqs[index].state == REQ_FREE || !q->reqs[index].has_handle) {
        return NULL;
    }
    *q_out = q;
    return &q->reqs[index];
}

HMAF_API int hmaf_request_test(hmaf_session_t *session, hmaf_req_t req)
{
    struct queued_req *r;
    struct queue *q;

    if (session == NULL || req == 0) {
        return HMAF_EINVAL;
    }
    r = lookup(session, req, &q);
    if (r == NULL) {
        return HMAF_ESTALE;
    }
    if (r->state == REQ_ATOMIC) {
        progress_atomic(session, r, 0);
    } else if (r->state == REQ_PENDING) {
        progress(session, q); /* cma completes everything it progresses */
    } else if (r->state == REQ_INFLIGHT) {
        reap(session, q);
        if (r->state == REQ_INFLIGHT) {
            session->ops->progress(session->ep);
            reap(session, q);
        }
    }
    if (r->state != REQ_DONE) {
        return HMAF_EINPROGRESS;
    }
    release(q, (uint32_t)(r - q->reqs));
    return r->status;
}

HMAF_API int hmaf_request_wait(hmaf_session_t *session, hmaf_req_t req)
{
    struct queued_req *r;
    struct queue *q;
    int ret;

    /* A batch of atomics waits for the agent as a blocking call does. */
    if (session != NULL && req != 0 &&
        (r = lookup(session, req, &q)) != NULL && r->state == REQ_ATOMIC) {
        progress_atomic(session, r, 1);
    }

    do {
        ret = hmaf_request_test(session, req);
    } while (ret == HMAF_EINPROGRESS);
    return ret;
}

HMAF_API int hmaf_session_flush(hmaf_session_t *session)
{
    struct queue *q;
    int ret;

    if (session == NULL) {
        return HMAF_EINVAL;
    }
    ret = my_queue(session, &q);
    if (ret < 0) {
        return ret;
    }
    progress(session, q);
    ret = q->deferred_error;
    q->deferred_error = 0;
    return ret;
}
