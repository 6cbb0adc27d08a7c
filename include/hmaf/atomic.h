/**
 * @file atomic.h
 * @brief Dpu side: atomic operations on host words.
 *
 * Fetch-and-add, swap, compare-and-swap and fetch-and/or/xor on naturally
 * aligned 4- or 8-byte words of host memory the host exposed read-write.
 *
 * Who performs them. With the cma and doca engines the host agent
 * performs each one with a CPU atomic instruction (sequentially consistent)
 * on its own memory: a batch travels to it as one mailbox request of up to
 * HMAF_ATOMIC_BATCH_MAX operations and costs one round trip. The ucx
 * engine sends each as a request of its own (one round trip per op, no
 * mailbox), which the host's agent checks and performs with the same
 * seq_cst CPU atomics.
 *
 * What they are atomic with respect to:
 *  - the host's own CPU atomics on the same word (__atomic builtins,
 *    C11 atomics, lock-prefixed instructions), whatever thread runs them;
 *  - the atomics of every session, this one's other threads included.
 * They are NOT atomic with respect to plain transfers of the same bytes:
 * an hmaf_session_write() (or a host's plain store) that overlaps a word
 * may land before, after, or torn across an atomic on it. Use atomics
 * only, on both sides, for a word that several parties change.
 *
 * A 4-byte op uses the low 32 bits of operand and compare and returns the
 * old value zero-extended in old (the high 32 bits of operand and compare
 * are ignored). Words are in the host's byte order, which is this side's
 * (both little-endian).
 *
 * Batches. The ops of one hmaf_session_atomic() call are performed in
 * array order, each atomic on its own: the batch as a whole is not (the
 * host and other sessions may act between two of its ops). One op failing
 * does not stop the others: every op runs, and each op's status says its
 * own outcome. A batch may be of any size: up to HMAF_ATOMIC_BATCH_MAX ops
 * go in one mailbox request (one round trip), more go as several requests,
 * one after the other.
 *
 * Checks. An op with a bad op code, a size other than 4 or 8, or a
 * misaligned address fails with HMAF_EINVAL on this side, without a round
 * trip; the agent checks everything again (it never trusts a dpu side):
 * the word must lie entirely inside one exposure (HMAF_EFAULT otherwise,
 * also for a word straddling two adjacent exposures), exposed read-write
 * (HMAF_EACCES).
 *
 * Revocation. cma and doca: the agent performs atomics and withdraws
 * exposures under one lock, and hmaf_agent_revoke() withdraws the
 * exposure at once: no atomic lands in the range after revoke returns,
 * and an atomic on it afterwards fails with HMAF_EFAULT. ucx: atomics are
 * fenced like transfers (host.h): when revoke returns 0 none lands
 * afterwards, and afterwards one fails with HMAF_EFAULT; a session revoke
 * had to cut off (HMAF_ETIMEDOUT) can still reach the range, as with cma
 * (docs/engines.md, "ucx").
 *
 * Transport errors (HMAF_ECONNRESET: the host or its agent is gone;
 * HMAF_ETIMEDOUT: no answer in params.rpc_timeout_ms) are the status of
 * every op whose answer did not come back: such an op may or may not have
 * been performed. An answer no agent gives (a wrong length, a status the
 * request or an op cannot end with) is HMAF_EPROTO, for the same ops.
 *
 * Thread safety: as for session.h; calls on one session may run from many
 * threads at once. Posted batches belong to the posting thread, like
 * posted transfers.
 */
#ifndef HMAF_ATOMIC_H
#define HMAF_ATOMIC_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/session.h>
#include <hmaf/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Ops of one mailbox request at most (one round trip). */
#define HMAF_ATOMIC_BATCH_MAX 68

/** What an atomic does to the word; each returns the word's old value. */
typedef enum hmaf_atomic_op {
    HMAF_ATOMIC_FADD = 1, /**< word += operand (wrapping) */
    HMAF_ATOMIC_SWAP = 2, /**< word = operand */
    HMAF_ATOMIC_CAS = 3,  /**< if word == compare: word = operand */
    HMAF_ATOMIC_FAND = 4, /**< word &= operand */
    HMAF_ATOMIC_FOR = 5,  /**< word |= operand */
    HMAF_ATOMIC_FXOR = 6  /**< word ^= operand */
} hmaf_atomic_op_t;

/** One atomic operation on a host word. */
typedef struct hmaf_atomic {
    hmaf_atomic_op_t op;  /**< [in] */
    unsigned size;        /**< [in] 4 or 8 bytes */
    uint64_t remote_addr; /**< [in] naturally aligned host address, in a
                               read-write exposure */
    uint64_t operand;     /**< [in] FADD: addend; SWAP: new value; CAS:
                               desired; FAND/FOR/FXOR: mask */
    uint64_t compare;     /**< [in] CAS: expected value */
    uint64_t old;         /**< [out] the word before the op (CAS
                               succeeded iff old == compare); written only
                               when status is 0 */
    int status;           /**< [out] 0 or this op's error */
} hmaf_atomic_t;

/**
 * @brief Perform a batch of atomics and wait for all of them.
 * @param [in] session  the session whose host performs them.
 * @param [in,out] ops  n ops, performed in array order; each op's old and
 *        status are written.
 * @param [in] n        ops, > 0; any number (HMAF_ATOMIC_BATCH_MAX per
 *        round trip).
 * @return 0 when every op succeeded; else the first failing op's error
 *         (in array order): HMAF_EINVAL (NULL session or ops, n 0 — then
 *         no status is written —, a bad op code or size, a misaligned
 *         address), HMAF_EFAULT (not inside one exposure), HMAF_EACCES
 *         (read-only exposure), HMAF_ECONNRESET, HMAF_ETIMEDOUT,
 *         HMAF_EPROTO (a malformed answer), HMAF_ENOMEM.
 */
HMAF_API int hmaf_session_atomic(hmaf_session_t *session, hmaf_atomic_t *ops,
                                 size_t n);

/**
 * @brief Start a batch of atomics and return without waiting for it.
 *
 * Completed by hmaf_request_test() or hmaf_request_wait() like a posted
 * transfer (session.h), on the posting thread; the request's status is
 * what hmaf_session_atomic() would have returned. The post sends the
 * first request of the batch into a mailbox slot of its own; test looks
 * at its answer once and, when the batch needs more than one request,
 * sends the next; wait waits. hmaf_session_flush() does not complete
 * posted atomics. The ops array must stay valid, and its inputs
 * untouched, until the request completes; old and status are written
 * then.
 *
 * Posted batches may hold up to half the session's mailbox slots at once
 * (the rest stay for blocking calls, other threads and the library's own
 * requests). When they all are taken — or ops fail the local checks only
 * — the batch is performed inside the post and its request is born
 * complete. Outstanding posted batches are not ordered with respect to
 * one another or to later blocking calls: complete one before depending
 * on its effect.
 * @param [in] session  the session whose host performs them.
 * @param [in,out] ops  n ops, as for hmaf_session_atomic(); valid until the
 *        request completes.
 * @param [in] n        ops, > 0; any number.
 * @param [out] req_out  the handle; must not be NULL.
 * @return 0 (posted: the batch's own outcome comes from test or wait);
 *         HMAF_EINVAL (NULL session, ops or req_out, n 0),
 *         HMAF_ECONNRESET (the session is dead), HMAF_ENOSPC (the thread
 *         holds params.max_inflight unconsumed handles), HMAF_ENOMEM; on
 *         any of these nothing is posted and no op's status is written.
 */
HMAF_API int hmaf_session_atomic_post(hmaf_session_t *session,
                                      hmaf_atomic_t *ops, size_t n,
                                      hmaf_req_t *req_out);

/**
 * @brief 8-byte fetch-and-add: *remote_addr += add.
 * @param [in] session      the session whose host performs it.
 * @param [in] remote_addr  8-byte aligned host address, read-write exposed.
 * @param [in] add          the addend (the sum wraps).
 * @param [out] old_out  the value before; may be NULL.
 * @return as hmaf_session_atomic() for one op.
 */
HMAF_API int hmaf_session_fetch_add64(hmaf_session_t *session,
                                      uint64_t remote_addr, uint64_t add,
                                      uint64_t *old_out);

/**
 * @brief 8-byte swap: *remote_addr = value.
 * @param [in] session      the session whose host performs it.
 * @param [in] remote_addr  8-byte aligned host address, read-write exposed.
 * @param [in] value        the word's new value.
 * @param [out] old_out  the value before; may be NULL.
 * @return as hmaf_session_atomic() for one op.
 */
HMAF_API int hmaf_session_swap64(hmaf_session_t *session,
                                 uint64_t remote_addr, uint64_t value,
                                 uint64_t *old_out);

/**
 * @brief 8-byte compare-and-swap: if *remote_addr == expected, it becomes
 * desired. The call succeeds (0) whether or not the word matched: the swap
 * happened iff *old_out == expected.
 * @param [in] session      the session whose host performs it.
 * @param [in] remote_addr  8-byte aligned host address, read-write exposed.
 * @param [in] expected     the value the word must hold for the swap.
 * @param [in] desired      the word's value if it held @p expected.
 * @param [out] old_out  the value before; may be NULL (then the caller
 *        cannot tell whether the swap happened).
 * @return as hmaf_session_atomic() for one op.
 */
HMAF_API int hmaf_session_cas64(hmaf_session_t *session, uint64_t remote_addr,
                                uint64_t expected, uint64_t desired,
                                uint64_t *old_out);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_ATOMIC_H */
