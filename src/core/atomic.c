/*
 * Remote atomics, dpu side (atomic.h). The agent performs them: a batch
 * goes as ATOMIC requests of up to HMAF_ATOMIC_BATCH_MAX ops each
 * (proto/atomic.h), one after another, through the session's mailbox
 * client, which keeps the session's fence (no mailbox I/O once the session
 * is dead). Ops that fail the local checks never travel: they are marked
 * HMAF_EINVAL first, and a request carries the others.
 *
 * A posted batch holds a mailbox slot of its own (core/mailbox.h): the
 * post sends the first request, each test looks at its answer once and
 * sends the next request when there is one, and wait waits. Its handle
 * lives in the posting thread's queue of requests (request.c).
 *
 * An engine with atomics of its own (ops->atomic: ucx) performs them
 * instead, like transfers: on cached regions, inside a read-side section
 * whose view of the revocation epoch is fresh, so a revocation's
 * confirmation waits for them as for transfers (native_run, below). A
 * posted batch then runs at its post, and its first test reports it.
 */
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include <hmaf/atomic.h>
#include <hmaf/error.h>

#include "core/session_int.h"
#include "proto/atomic.h"
#include "util/clock.h"

/* Status of an op the local checks passed, until its answer comes. */
#define OP_WAITING 1

/* A batch's ops, one request at a time. */
struct batch {
    hmaf_atomic_t *ops;
    size_t n;
    size_t next; /* where the next request's ops are looked for */
    size_t count; /* ops in the request built last */
    size_t idx[HMAF_ATOMIC_BATCH_MAX]; /* their places in ops */
    uint8_t req[HMAF_MBOX_REQ_LONG_MAX];
    uint16_t req_len;
};

struct hmaf__atomic_post {
    struct batch b;
    int has_slot;
    struct hmaf__mbox_pending pending;
};

static int check_local(const hmaf_atomic_t *op)
{
    if (op->op < HMAF_ATOMIC_FADD || op->op > HMAF_ATOMIC_FXOR ||
        (op->size != 4 && op->size != 8) || op->remote_addr % op->size != 0) {
        return HMAF_EINVAL;
    }
    return OP_WAITING;
}

static void batch_init(struct batch *b, hmaf_atomic_t *ops, size_t n)
{
    b->ops = ops;
    b->n = n;
    b->next = 0;
    b->count = 0;
    for (size_t i = 0; i < n; i++) {
        ops[i].status = check_local(&ops[i]);
    }
}

/* The next request: up to HMAF_ATOMIC_BATCH_MAX waiting ops, in order.
 * Returns how many (0: none left). */
static size_t build_request(struct batch *b)
{
    struct hmaf_wire_atomic wire[HMAF_ATOMIC_BATCH_MAX];

    b->count = 0;
    for (; b->next < b->n && b->count < HMAF_ATOMIC_BATCH_MAX; b->next++) {
        const hmaf_atomic_t *op = &b->ops[b->next];
        if (op->status != OP_WAITING) {
            continue;
        }
        wire[b->count] = (struct hmaf_wire_atomic){
            .op = (uint8_t)op->op,
            .size = (uint8_t)op->size,
            .addr = op->remote_addr,
            .operand = op->operand,
            .compare = op->compare};
        b->idx[b->count++] = b->next;
    }
    b->req_len = b->count == 0 ? 0
                               : (uint16_t)hmaf__req_atomic_encode(
                                     wire, b->count, b->req);
    return b->count;
}

/* What may befall a request as a whole: the agent refuses a malformed
 * one (HMAF_EPROTO), or the mailbox's transfers fail (the host is gone or
 * slow, the engine short of memory or of its access). Any other status
 * is one the agent cannot answer an ATOMIC with — a lie of the host's —
 * and no call passes it on: HMAF_ESTALE or HMAF_EINPROGRESS from
 * hmaf_request_test(), say, would mean something else. */
static int request_status(int ret)
{
    return ret == 0 || ret == HMAF_EPROTO || ret == HMAF_ECONNRESET ||
                   ret == HMAF_ETIMEDOUT || ret == HMAF_ENOMEM ||
                   ret == HMAF_EPERM
               ? ret
               : HMAF_EPROTO;
}

/* The answer to the request built last, or why there is none: then its
 * ops and every op still waiting get that error (they may or may not
 * have been performed). */
static int apply_answer(struct batch *b, int ret, const uint8_t *resp,
                        uint16_t resp_len)
{
    struct hmaf_wire_atomic_result results[HMAF_ATOMIC_BATCH_MAX];

    ret = request_status(ret);
    if (ret == 0) {
        ret = hmaf__resp_atomic_decode(resp, resp_len, b->count, results);
    }
    for (size_t i = 0; ret == 0 && i < b->count; i++) {
        hmaf_atomic_t *op = &b->ops[b->idx[i]];
        op->status = results[i].status;
        if (op->status == 0) {
            /* a 4-byte word's old value, zero-extended */
            op->old = op->size == 4 ? (uint32_t)results[i].old
                                    : results[i].old;
        }
    }
    for (size_t i = 0; ret < 0 && i < b->n; i++) {
        if (b->ops[i].status == OP_WAITING) {
            b->ops[i].status = ret;
        }
    }
    return ret;
}

static int first_error(const struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->ops[i].status < 0) {
            return b->ops[i].status;
        }
    }
    return 0;
}

/* ---- Native atomics ------------------------------------------------- */

/* Ops handed to the engine in one call, and ranges registered in a row
 * for one batch before it gives up (as datapath.c's transfers do). */
#define NATIVE_CHUNK 64
#define NATIVE_MISSES_MAX 64

/* An op's registration failing for the op's own reasons: its status as
 * the agent would give it (a word in no exposure, one that wraps round
 * included, is HMAF_EFAULT). 0 for any other error (the host gone, no
 * answer, a lying one): the session's, which every op still waiting
 * gets. */
static int op_own_error(int err)
{
    switch (err) {
    case HMAF_EACCES:
        return err;
    case HMAF_EFAULT:
    case HMAF_EOVERFLOW:
    case HMAF_EINVAL:
        return HMAF_EFAULT;
    default:
        return 0;
    }
}

static void fail_waiting(struct batch *b, int err)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->ops[i].status == OP_WAITING) {
            b->ops[i].status = err;
        }
    }
}

/* One chunk, as native_run's step. */
struct native_chunk {
    struct hmaf_engine_atomic eops[NATIVE_CHUNK];
    size_t idx[NATIVE_CHUNK]; /* their places in ops */
    uint32_t count;
    size_t miss;   /* an op without a cached region: register it */
    size_t fresh;  /* the op registered last (SIZE_MAX: none) */
    int look;      /* the epoch is due for a look first */
};

/* Inside the section: the cached region of op, allowing it, in eop. 0, or
 * 1 when no cached region covers it, or the op's own error. fresh: the
 * op's range was registered just now, so a region that holds its address
 * but not the whole word is the exposure's end (HMAF_EFAULT, as the agent
 * says of a word straddling two exposures). */
static int native_op(struct hmaf_session *s, struct hmaf__reader *reader,
                     uint64_t now, const hmaf_atomic_t *op, int fresh,
                     struct hmaf_engine_atomic *eop)
{
    struct hmaf__rc_hit hit;

    if (hmaf__regcache_find_hinted(&s->cache, reader, op->remote_addr, now,
                                   &hit) == NULL) {
        return 1;
    }
    if (op->size > hit.len - (op->remote_addr - hit.base)) {
        return fresh ? HMAF_EFAULT : 1;
    }
    if (hit.access != HMAF_ACCESS_READ_WRITE) {
        return HMAF_EACCES;
    }
    *eop = (struct hmaf_engine_atomic){.rmem = hit.rmem,
                                       .remote_addr = op->remote_addr,
                                       .op = (uint8_t)op->op,
                                       .size = (uint8_t)op->size,
                                       .operand = op->operand,
                                       .compare = op->compare};
    return 0;
}

/* Gather the waiting ops from b->next on that have cached regions, up to
 * the first that has none (c->miss) or a full chunk. */
static void native_gather(struct hmaf_session *s, struct hmaf__reader *reader,
                          struct batch *b, struct native_chunk *c)
{
    uint64_t now = hmaf__coarse_now_ns_cached();

    c->count = 0;
    c->miss = SIZE_MAX;
    c->look = hmaf__session_epoch_due(s, now);
    for (; !c->look && b->next < b->n && c->count < NATIVE_CHUNK; b->next++) {
        hmaf_atomic_t *op = &b->ops[b->next];
        int ret;
        if (op->status != OP_WAITING) {
            continue;
        }
        ret = native_op(s, reader, now, op, b->next == c->fresh,
                        &c->eops[c->count]);
        if (ret == 1) {
            c->miss = b->next;
            return;
        }
        if (ret < 0) {
            op->status = ret;
            continue;
        }
        c->idx[c->count++] = b->next;
    }
}

/* The chunk gathered, performed inside the section that found its
 * regions: none of them can be dropped, nor a revocation confirmed,
 * before the engine is done. 0, or the session's error. */
static int native_chunk_run(struct hmaf_session *s, struct hmaf__reader *reader,
                            struct batch *b, struct native_chunk *c)
{
    int err = 0;

    hmaf__reader_enter(reader);
    err = atomic_load_explicit(&s->dead, memory_order_relaxed);
    if (err == 0) {
        native_gather(s, reader, b, c);
        if (c->count > 0) {
            err = s->ops->atomic(s->ep, c->eops, c->count);
        }
    }
    hmaf__reader_exit(reader);
    if (err < 0) {
        return hmaf__session_fail(s, err);
    }
    for (uint32_t k = 0; k < c->count; k++) {
        hmaf_atomic_t *op = &b->ops[c->idx[k]];
        op->status = c->eops[k].status;
        if (op->status == 0) {
            op->old = op->size == 4 ? (uint32_t)c->eops[k].old
                                    : c->eops[k].old;
        }
    }
    return 0;
}

/* What the chunk left to do before the batch goes on: a look at the
 * epoch, or the missing op's range registered. 0, or the session's
 * error. */
static int native_need(struct hmaf_session *s, struct batch *b,
                       struct native_chunk *c, int *misses)
{
    hmaf_atomic_t *op;
    int err;

    if (c->look) {
        return hmaf__session_check_epoch(s, 0);
    }
    if (c->count > 0) {
        *misses = 0; /* the batch moved on: only misses in a row count */
    }
    if (c->miss == SIZE_MAX) {
        return 0;
    }
    op = &b->ops[c->miss];
    err = ++*misses > NATIVE_MISSES_MAX
              ? HMAF_ENOSPC
              : hmaf__session_register(s, op->remote_addr, op->size);
    c->fresh = c->miss;
    if (err < 0 && op_own_error(err) < 0) {
        op->status = op_own_error(err);
        b->next = c->miss + 1;
        *misses = 0;
        return 0;
    }
    return err;
}

/* Every waiting op through the engine, in order. */
static int native_run(struct hmaf_session *s, struct batch *b)
{
    struct native_chunk *c = malloc(sizeof(*c));
    struct hmaf__reader *reader;
    int misses = 0;
    int err = c == NULL ? HMAF_ENOMEM
                        : hmaf__reader_get(&s->cache.readers, &reader);

    b->next = 0;
    if (c != NULL) {
        c->fresh = SIZE_MAX;
    }
    while (err == 0 && b->next < b->n) {
        err = native_chunk_run(s, reader, b, c);
        if (err == 0) {
            err = native_need(s, b, c, &misses);
        }
    }
    if (err < 0) {
        fail_waiting(b, err);
    }
    free(c);
    return first_error(b);
}

/* ---- Through the agent ------------------------------------------------ */

/* Every request of the batch, each waited for. */
static int run_blocking(struct hmaf_session *s, struct batch *b)
{
    uint8_t resp[HMAF_MBOX_RESP_MAX];
    uint16_t resp_len = 0;

    if (s->native_atomics) {
        return native_run(s, b);
    }
    while (build_request(b) > 0) {
        int ret = hmaf__session_call(s, HMAF_OP_ATOMIC, b->req, b->req_len,
                                     resp, sizeof(resp), &resp_len);
        if (apply_answer(b, ret, resp, resp_len) < 0) {
            break;
        }
    }
    return first_error(b);
}

HMAF_API int hmaf_session_atomic(hmaf_session_t *session, hmaf_atomic_t *ops,
                                 size_t n)
{
    struct batch *b;
    int ret;

    if (session == NULL || ops == NULL || n == 0) {
        return HMAF_EINVAL;
    }
    b = malloc(sizeof(*b)); /* too big for some threads' stacks */
    if (b == NULL) {
        return HMAF_ENOMEM;
    }
    batch_init(b, ops, n);
    ret = run_blocking(session, b);
    free(b);
    return ret;
}

static int one_op(hmaf_session_t *session, hmaf_atomic_op_t code,
                  uint64_t remote_addr, uint64_t operand, uint64_t compare,
                  uint64_t *old_out)
{
    hmaf_atomic_t op = {.op = code,
                        .size = 8,
                        .remote_addr = remote_addr,
                        .operand = operand,
                        .compare = compare};
    int ret = hmaf_session_atomic(session, &op, 1);

    if (ret == 0 && old_out != NULL) {
        *old_out = op.old;
    }
    return ret;
}

HMAF_API int hmaf_session_fetch_add64(hmaf_session_t *session,
                                      uint64_t remote_addr, uint64_t add,
                                      uint64_t *old_out)
{
    return one_op(session, HMAF_ATOMIC_FADD, remote_addr, add, 0, old_out);
}

HMAF_API int hmaf_session_swap64(hmaf_session_t *session,
                                 uint64_t remote_addr, uint64_t value,
                                 uint64_t *old_out)
{
    return one_op(session, HMAF_ATOMIC_SWAP, remote_addr, value, 0, old_out);
}

HMAF_API int hmaf_session_cas64(hmaf_session_t *session, uint64_t remote_addr,
                                uint64_t expected, uint64_t desired,
                                uint64_t *old_out)
{
    return one_op(session, HMAF_ATOMIC_CAS, remote_addr, desired, expected,
                  old_out);
}

/* Posted batches. */

/* The batch's requests are over: the slot goes back at once. The post
 * stays until its handle is tested. */
static void end_requests(struct hmaf_session *s, struct hmaf__atomic_post *p)
{
    if (p->has_slot) {
        hmaf__mbox_release_slot(&s->mbox, p->pending.slot);
        p->has_slot = 0;
    }
}

/* Reported: the post is freed; the batch's status. */
static int finish(struct hmaf_session *s, struct hmaf__atomic_post *p)
{
    int ret = first_error(&p->b);

    hmaf__atomic_post_drop(s, p);
    return ret;
}

/* Send the batch's next request; without one left, or when it cannot
 * go (its ops and the rest then fail), the requests are over. */
static void send_next(struct hmaf_session *s, struct hmaf__atomic_post *p)
{
    int ret;

    if (build_request(&p->b) == 0) {
        end_requests(s, p);
        return;
    }
    ret = hmaf__session_fail(
        s, hmaf__mbox_send(&s->mbox, p->pending.slot, HMAF_OP_ATOMIC,
                           p->b.req, p->b.req_len, &p->pending));
    if (ret < 0) {
        apply_answer(&p->b, ret, NULL, 0);
        end_requests(s, p);
    }
}

int hmaf__atomic_post_test(struct hmaf_session *s, struct hmaf__atomic_post *p)
{
    uint8_t resp[HMAF_MBOX_RESP_MAX];
    uint16_t resp_len = 0;
    int ret;

    if (!p->has_slot) { /* over already, or born complete */
        return finish(s, p);
    }
    ret = hmaf__mbox_poll(&s->mbox, &p->pending, resp, sizeof(resp),
                          &resp_len);
    if (ret == HMAF_EINPROGRESS) {
        return ret;
    }
    if (ret != HMAF_ECONNRESET && ret != HMAF_ETIMEDOUT) {
        hmaf__count(s, mailbox_round_trips, 1);
    }
    if (apply_answer(&p->b, hmaf__session_fail(s, ret), resp, resp_len) < 0) {
        end_requests(s, p);
    } else {
        send_next(s, p);
    }
    return p->has_slot ? HMAF_EINPROGRESS : finish(s, p);
}

/* How a wait gives the CPU away between looks: it spins this long, then
 * yields (an agent on our CPU answers at once), then sleeps. */
#define POST_WAIT_SPIN_NS 20000ull
#define POST_WAIT_YIELD_NS 1000000ull
#define POST_WAIT_SLEEP_NS 20000l

int hmaf__atomic_post_wait(struct hmaf_session *s, struct hmaf__atomic_post *p)
{
    uint64_t start = hmaf__now_ns();
    int ret;

    while ((ret = hmaf__atomic_post_test(s, p)) == HMAF_EINPROGRESS) {
        uint64_t waited = hmaf__now_ns() - start;
        if (waited >= POST_WAIT_YIELD_NS) {
            nanosleep(&(struct timespec){0, POST_WAIT_SLEEP_NS}, NULL);
        } else if (waited >= POST_WAIT_SPIN_NS) {
            sched_yield();
        }
    }
    return ret;
}

void hmaf__atomic_post_drop(struct hmaf_session *s, struct hmaf__atomic_post *p)
{
    end_requests(s, p);
    free(p);
}

HMAF_API int hmaf_session_atomic_post(hmaf_session_t *session,
                                      hmaf_atomic_t *ops, size_t n,
                                      hmaf_req_t *req_out)
{
    struct hmaf__atomic_post *p;
    int ret;

    if (session == NULL || ops == NULL || n == 0 || req_out == NULL) {
        return HMAF_EINVAL;
    }
    ret = atomic_load_explicit(&session->dead, memory_order_relaxed);
    if (ret < 0) {
        return ret;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return HMAF_ENOMEM;
    }
    /* Native atomics need no slot: they run at the post. */
    p->has_slot = !session->native_atomics &&
                  hmaf__mbox_hold_slot(&session->mbox, &p->pending.slot) == 0;
    ret = hmaf__request_add_atomic(session, p, req_out);
    if (ret < 0) {
        hmaf__atomic_post_drop(session, p);
        return ret;
    }
    /* Only a batch that was posted has its statuses written: a refused
     * post leaves the ops as the caller filled them. */
    batch_init(&p->b, ops, n);
    if (!p->has_slot) {
        /* Posted batches hold their share of the slots (or the engine
         * performs them): this one runs now, and its first test reports
         * it. */
        run_blocking(session, &p->b);
        return 0;
    }
    /* A first request that cannot go ends the batch: its handle, not the
     * post, reports that. */
    send_next(session, p);
    return 0;
}
