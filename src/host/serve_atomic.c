/*
 * The agent's side of remote atomics (atomic.h, proto/atomic.h): each op
 * of an ATOMIC request is checked against the exposures and performed
 * with a sequentially consistent CPU atomic on our own memory, so it is
 * atomic with respect to the host's own atomics on the word and to every
 * other session's (all go through this thread, or the host's CPU).
 *
 * Runs with the agent lock held, like all serving: hmaf_agent_revoke()
 * withdraws an exposure under the same lock, so once it has, no op here
 * can find the range again. The host keeps exposed memory mapped until
 * revoke returns (host.h), which is what makes touching it safe.
 */
#include <hmaf/error.h>
#include <hmaf/host.h>

#include "host/agent_int.h"
#include "proto/atomic.h"

/* Why op must not be performed, or 0. The word must lie entirely inside
 * one read-write exposure: adjacent exposures are separate grants. */
static int check_op(const struct hmaf_agent *a, const struct hmaf_wire_atomic *op)
{
    const struct hmaf__exposure *e;

    if (op->op < HMAF_ATOMIC_FADD || op->op > HMAF_ATOMIC_FXOR ||
        (op->size != 4 && op->size != 8) || op->addr % op->size != 0) {
        return HMAF_EINVAL;
    }
    e = hmaf__exposure_find(&a->exposures, op->addr);
    if (e == NULL || e->iv.len - (op->addr - e->iv.base) < op->size) {
        return HMAF_EFAULT;
    }
    return e->access == HMAF_ACCESS_READ_WRITE ? 0 : HMAF_EACCES;
}

static uint64_t perform64(uint64_t *w, const struct hmaf_wire_atomic *op)
{
    uint64_t expected = op->compare;

    switch (op->op) {
    case HMAF_ATOMIC_FADD:
        return __atomic_fetch_add(w, op->operand, __ATOMIC_SEQ_CST);
    case HMAF_ATOMIC_SWAP:
        return __atomic_exchange_n(w, op->operand, __ATOMIC_SEQ_CST);
    case HMAF_ATOMIC_CAS:
        /* On failure expected becomes the word; on success it was it. */
        __atomic_compare_exchange_n(w, &expected, op->operand, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        return expected;
    case HMAF_ATOMIC_FAND:
        return __atomic_fetch_and(w, op->operand, __ATOMIC_SEQ_CST);
    case HMAF_ATOMIC_FOR:
        return __atomic_fetch_or(w, op->operand, __ATOMIC_SEQ_CST);
    default:
        return __atomic_fetch_xor(w, op->operand, __ATOMIC_SEQ_CST);
    }
}

/* The same on 4 bytes: the low 32 bits of operand and compare. */
static uint32_t perform32(uint32_t *w, const struct hmaf_wire_atomic *op)
{
    uint32_t operand = (uint32_t)op->operand;
    uint32_t expected = (uint32_t)op->compare;

    switch (op->op) {
    case HMAF_ATOMIC_FADD:
        return __atomic_fetch_add(w, operand, __ATOMIC_SEQ_CST);
    case HMAF_ATOMIC_SWAP:
        return __atomic_exchange_n(w, operand, __ATOMIC_SEQ_CST);
    case HMAF_ATOMIC_CAS:
        __atomic_compare_exchange_n(w, &expected, operand, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        return expected;
    case HMAF_ATOMIC_FAND:
        return __atomic_fetch_and(w, operand, __ATOMIC_SEQ_CST);
    case HMAF_ATOMIC_FOR:
        return __atomic_fetch_or(w, operand, __ATOMIC_SEQ_CST);
    default:
        return __atomic_fetch_xor(w, operand, __ATOMIC_SEQ_CST);
    }
}

static void perform(const struct hmaf_agent *a,
                    const struct hmaf_wire_atomic *op,
                    struct hmaf_wire_atomic_result *out)
{
    out->old = 0;
    out->status = check_op(a, op);
    if (out->status < 0) {
        return;
    }
    if (op->size == 8) {
        out->old = perform64((uint64_t *)(uintptr_t)op->addr, op);
    } else {
        out->old = perform32((uint32_t *)(uintptr_t)op->addr, op);
    }
}

int hmaf__agent_serve_atomic(struct hmaf_agent *a, const uint8_t *req,
                             uint16_t req_len, uint8_t *resp,
                             uint16_t *resp_len_out)
{
    struct hmaf_wire_atomic ops[HMAF_ATOMIC_BATCH_MAX];
    struct hmaf_wire_atomic_result results[HMAF_ATOMIC_BATCH_MAX];
    uint16_t count;
    int ret = hmaf__req_atomic_decode(req, req_len, ops, &count);

    if (ret < 0) {
        return ret;
    }
    for (uint16_t i = 0; i < count; i++) { /* in order, each on its own */
        perform(a, &ops[i], &results[i]);
    }
    *resp_len_out = (uint16_t)hmaf__resp_atomic_encode(results, count, resp);
    return 0;
}
