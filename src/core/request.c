/*
 * Non-blocking transfers. Each thread has its own queue per session, kept
 * in its reader slot, so posting and completing need no lock and threads
 * never wait for one another. Posting records the segments; progressing
 * runs them through the synchronous data path, merging consecutive requests
 * of one direction into one call, which the engine turns into as few
 * operations as it can (one process_vm_readv per 1024 segments with cma).
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

#include <hmaf/error.h>
#include <hmaf/session.h>

#include "core/session_int.h"

enum req_state { REQ_FREE, REQ_PENDING, REQ_DONE };

struct queued_req {
    uint64_t gen;
    uint8_t state;
    uint8_t op;         /* enum hmaf_xfer_op */
    uint8_t has_handle; /* else freed at completion, error kept for flush */
    int status;
    uint32_t first_seg; /* while pending: its segments in queue->segs */
    uint32_t nsegs;
};

struct queue {
    int owner_tid;     /* a reclaimed slot's queue starts over */
    uint32_t window;   /* segments and requests, at most */
    uint32_t nsegs;
    uint32_t npending;
    uint64_t next_gen; /* the queue's range of generations: */
    uint64_t gen_end;  /* [next_gen, gen_end) */
    int deferred_error; /* first error of a handle-less request */
    hmaf_seg_t *segs;      /* pending segments in post order */
    uint32_t *pending;     /* pending request indices in post order */
    struct queued_req *reqs;
    uint32_t *free_list;   /* indices of free reqs: a stack */
    uint32_t nfree;
};

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
        free(q);
    }
}

static struct queue *new_queue(uint32_t window, int tid)
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
        q->free_list == NULL) {
        free_queue(q);
        return NULL;
    }
    for (uint32_t i = 0; i < window; i++) {
        q->free_list[i] = window - 1 - i; /* pops 0 first */
    }
    q->nfree = window;
    q->window = window;
    q->owner_tid = tid;
    return q; /* next_gen == gen_end: the first post takes a range */
}

/* This thread's queue; a queue left by an exited thread is started over. */
static int my_queue(struct hmaf_session *s, struct hmaf__reader **reader_out,
                    struct queue **q_out)
{
    struct hmaf__reader *r;
    struct queue *q;
    int ret = hmaf__reader_get(&s->cache.readers, &r);

    if (ret < 0) {
        return ret;
    }
    q = r->queue;
    if (q == NULL || q->owner_tid != atomic_load(&r->owner)) {
        free_queue(q);
        q = new_queue(s->params.max_inflight, atomic_load(&r->owner));
        r->queue = q;
        if (q == NULL) {
            return HMAF_ENOMEM;
        }
    }
    *reader_out = r;
    *q_out = q;
    return 0;
}

void hmaf__request_queues_free(struct hmaf_session *s)
{
    for (int i = 0; i < HMAF_READER_SLOTS; i++) {
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

/* Run pending[from, to): all one direction, their segments contiguous. */
static void run_requests(struct hmaf_session *s, struct queue *q,
                         uint32_t from, uint32_t to)
{
    const struct queued_req *first = &q->reqs[q->pending[from]];
    const struct queued_req *last = &q->reqs[q->pending[to - 1]];
    uint32_t nsegs = last->first_seg + last->nsegs - first->first_seg;
    int ret = hmaf__session_transfer(s, first->op, &q->segs[first->first_seg],
                                     nsegs);

    for (uint32_t i = from; i < to; i++) {
        const struct queued_req *r = &q->reqs[q->pending[i]];
        /* A merged run failed somewhere: give each request its own fate. */
        int status = ret == 0 || to - from == 1
                         ? ret
                         : hmaf__session_transfer(s, r->op,
                                                  &q->segs[r->first_seg],
                                                  r->nsegs);
        complete(q, q->pending[i], status);
    }
}

static void progress(struct hmaf_session *s, struct queue *q)
{
    uint32_t i = 0;

    while (i < q->npending) {
        uint32_t j = i + 1;
        while (j < q->npending &&
               q->reqs[q->pending[j]].op == q->reqs[q->pending[i]].op) {
            j++;
        }
        run_requests(s, q, i, j);
        i = j;
    }
    q->npending = 0;
    q->nsegs = 0;
}

static long free_request(struct queue *q)
{
    return q->nfree == 0 ? -1 : (long)q->free_list[--q->nfree];
}

/* Room for nsegs more segments and one request, progressing if need be. */
static long make_room(struct hmaf_session *s, struct queue *q, size_t nsegs)
{
    long index;

    if (q->nsegs + nsegs > q->window) {
        progress(s, q);
    }
    index = free_request(q);
    if (index < 0) {
        progress(s, q);
        index = free_request(q);
    }
    return index < 0 ? HMAF_ENOSPC : index;
}

static int enqueue(struct hmaf_session *s, struct queue *q,
                   enum hmaf_xfer_op op,
                   const hmaf_seg_t *segs, size_t nsegs, hmaf_req_t *req_out)
{
    long index = make_room(s, q, nsegs);
    struct queued_req *r;

    if (index < 0) {
        return (int)index;
    }
    r = &q->reqs[index];
    memcpy(&q->segs[q->nsegs], segs, nsegs * sizeof(*segs));
    *r = (struct queued_req){
        .gen = next_gen(q),
        .state = REQ_PENDING,
        .op = (uint8_t)op,
        .has_handle = req_out != NULL,
        .first_seg = q->nsegs,
        .nsegs = (uint32_t)nsegs,
    };
    q->nsegs += (uint32_t)nsegs;
    q->pending[q->npending++] = (uint32_t)index;
    if (req_out != NULL) {
        *req_out = encode_handle((uint32_t)index, r->gen);
    }
    return 0;
}

/* Larger than the window: it runs now and is born complete. */
static int post_oversized(struct hmaf_session *s, struct queue *q,
                          enum hmaf_xfer_op op,
                          const hmaf_seg_t *segs, size_t nsegs,
                          hmaf_req_t *req_out)
{
    int status = hmaf__session_transfer(s, op, segs, nsegs);
    hmaf_seg_t none = {.local = NULL, .remote_addr = 0, .len = 0};
    int ret = enqueue(s, q, op, &none, 0, req_out);

    if (ret == 0) {
        complete(q, q->pending[--q->npending], status);
    }
    return ret;
}

static int post(struct hmaf_session *s, enum hmaf_xfer_op op,
                const hmaf_seg_t *segs, size_t nsegs, hmaf_req_t *req_out)
{
    struct hmaf__reader *reader;
    struct queue *q;
    int ret;

    if (s == NULL) {
        return HMAF_EINVAL;
    }
    ret = hmaf__validate_segs(segs, nsegs);
    if (ret == 0) {
        ret = atomic_load_explicit(&s->dead, memory_order_relaxed);
    }
    if (ret == 0) {
        ret = my_queue(s, &reader, &q);
    }
    if (ret < 0) {
        return ret;
    }
    if (nsegs > q->window) {
        return post_oversized(s, q, op, segs, nsegs, req_out);
    }
    return enqueue(s, q, op, segs, nsegs, req_out);
}

HMAF_API int hmaf_session_post_read(hmaf_session_t *session, void *buf,
                                    uint64_t remote_addr, size_t len,
                                    hmaf_req_t *req_out)
{
    hmaf_seg_t seg = {.local = buf, .remote_addr = remote_addr, .len = len};

    return post(session, HMAF_XFER_READ, &seg, 1, req_out);
}

HMAF_API int hmaf_session_post_write(hmaf_session_t *session,
                                     uint64_t remote_addr, const void *buf,
                                     size_t len, hmaf_req_t *req_out)
{
    hmaf_seg_t seg = {.local = (void *)buf, .remote_addr = remote_addr,
                      .len = len};

    return post(session, HMAF_XFER_WRITE, &seg, 1, req_out);
}

HMAF_API int hmaf_session_post_readv(hmaf_session_t *session,
                                     const hmaf_seg_t *segs, size_t nsegs,
                                     hmaf_req_t *req_out)
{
    return post(session, HMAF_XFER_READ, segs, nsegs, req_out);
}

HMAF_API int hmaf_session_post_writev(hmaf_session_t *session,
                                      const hmaf_seg_t *segs, size_t nsegs,
                                      hmaf_req_t *req_out)
{
    return post(session, HMAF_XFER_WRITE, segs, nsegs, req_out);
}

/* The caller's request behind a handle, or NULL when it is not one. */
static struct queued_req *lookup(struct hmaf_session *s, hmaf_req_t req,
                                 struct queue **q_out)
{
    struct hmaf__reader *reader;
    struct queue *q;
    uint32_t index = (uint32_t)(req & ((1u << HANDLE_INDEX_BITS) - 1));
    uint64_t gen = req >> HANDLE_INDEX_BITS;

    if (my_queue(s, &reader, &q) < 0 || index >= q->window || gen == 0 ||
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
    if (r->state == REQ_PENDING) {
        progress(session, q); /* cma completes everything it progresses */
    }
    if (r->state != REQ_DONE) {
        return HMAF_EINPROGRESS;
    }
    release(q, (uint32_t)(r - q->reqs));
    return r->status;
}

HMAF_API int hmaf_request_wait(hmaf_session_t *session, hmaf_req_t req)
{
    int ret;

    do {
        ret = hmaf_request_test(session, req);
    } while (ret == HMAF_EINPROGRESS);
    return ret;
}

HMAF_API int hmaf_session_flush(hmaf_session_t *session)
{
    struct hmaf__reader *reader;
    struct queue *q;
    int ret;

    if (session == NULL) {
        return HMAF_EINVAL;
    }
    ret = my_queue(session, &reader, &q);
    if (ret < 0) {
        return ret;
    }
    progress(session, q);
    ret = q->deferred_error;
    q->deferred_error = 0;
    return ret;
}
