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

/* Every request of the batch, each waited for. */
static int run_blocking(struct hmaf_session *s, struct batch *b)
{
    uint8_t resp[HMAF_MBOX_RESP_MAX];
    uint16_t resp_len = 0;

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
    p->has_slot = hmaf__mbox_hold_slot(&session->mbox,
                                       &p->pending.slot) == 0;
    ret = hmaf__request_add_atomic(session, p, req_out);
    if (ret < 0) {
        hmaf__atomic_post_drop(session, p);
        return ret;
    }
    /* Only a batch that was posted has its statuses written: a refused
     * post leaves the ops as the caller filled them. */
    batch_init(&p->b, ops, n);
    if (!p->has_slot) {
        /* Posted batches hold their share of the slots: this one runs
         * now, and its first test reports it. */
        run_blocking(session, &p->b);
        return 0;
    }
    /* A first request that cannot go ends the batch: its handle, not the
     * post, reports that. */
    send_next(session, p);
    return 0;
}
