/**
 * @file seqlock.h
 * @brief Consistent reads of host records the host rewrites concurrently.
 *
 * The protocol (a sequence lock). Each record has a version word: a
 * uint64_t, 8-byte aligned, anywhere in exposed memory (beside the record
 * or elsewhere; one word may guard several records). It is even while the
 * record is stable and odd while the host writes it.
 *
 * The host writes a record so (one writer per version word at a time: the
 * caller serialises writers, e.g. with its own lock; two writers at once
 * would make the word even in the middle of a write):
 * @code
 *     hmaf_seqlock_write_begin(&rec->version);  // odd; release fence
 *     memcpy(rec->payload, new, len);           // any stores
 *     hmaf_seqlock_write_end(&rec->version);    // even; release store
 * @endcode
 * write_begin stores version + 1 (relaxed) and then issues a release
 * fence, so that no store of the payload becomes visible before the odd
 * version; write_end stores version + 1 again with release order, so that
 * every store of the payload is visible before the even version. On x86
 * both are plain stores the compiler keeps in order; elsewhere the fence
 * is a store barrier.
 *
 * The dpu side reads with hmaf_session_read_consistent(): the version
 * word, then the payload, then the version word again, each read done
 * before the next begins (or, with an engine whose reads of one vectored
 * read are ordered — cma on x86 — one vectored read of the three). Both
 * versions equal and even: no write overlapped the payload's read, and the
 * payload is one write's. Else it backs off — a few spins growing, then
 * yields, then short sleeps growing to 100 us — and reads again, at most
 * max_retries times. The version word itself must be read whole: the
 * engines read an aligned 8-byte word in one piece (cma: the kernel's
 * copy; doca: one PCIe read).
 *
 * A reader never blocks the writer: a host that rewrites a record without
 * pause can starve readers of it (HMAF_EBUSY), never the other way round.
 */
#ifndef HMAF_SEQLOCK_H
#define HMAF_SEQLOCK_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/session.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief Host: make @p seq odd before writing the record it guards.
 * @param [in,out] seq  the record's version word, in exposed memory.
 */
static inline void hmaf_seqlock_write_begin(uint64_t *seq)
{
    uint64_t v = __atomic_load_n(seq, __ATOMIC_RELAXED);

    __atomic_store_n(seq, v + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

/**
 * @brief Host: make @p seq even again once the record is written.
 * @param [in,out] seq  the record's version word, in exposed memory.
 */
static inline void hmaf_seqlock_write_end(uint64_t *seq)
{
    uint64_t v = __atomic_load_n(seq, __ATOMIC_RELAXED);

    __atomic_store_n(seq, v + 1, __ATOMIC_RELEASE);
}

/** Retries of hmaf_session_read_consistent() when max_retries is 0. */
#define HMAF_SEQLOCK_RETRIES_DEFAULT 1000

/**
 * @brief Read @p len bytes at @p remote_addr into @p buf, consistently
 * with the host's writes guarded by the version word at @p seq_addr.
 *
 * On success @p buf holds the record as one write of the host left it.
 * On failure @p buf holds bytes of no guaranteed state.
 * @param [in] session      the session.
 * @param [in] seq_addr     the version word's host address, 8-byte aligned.
 * @param [out] buf         @p len bytes.
 * @param [in] remote_addr  the record's host address.
 * @param [in] len          its length in bytes, > 0.
 * @param [in] max_retries  reads after the first (0: the default, 1000).
 * @return 0; HMAF_EBUSY (every read overlapped a write); HMAF_EINVAL
 *         (NULL, len 0, seq_addr misaligned); and hmaf_session_read()'s
 *         errors (HMAF_EFAULT: not exposed, HMAF_ECONNRESET, ...).
 */
HMAF_API int hmaf_session_read_consistent(hmaf_session_t *session,
                                          uint64_t seq_addr, void *buf,
                                          uint64_t remote_addr, size_t len,
                                          unsigned max_retries);

/** One record of hmaf_session_read_consistentv(). */
typedef struct hmaf_consistent_read {
    uint64_t seq_addr;    /**< [in] its version word, 8-byte aligned */
    uint64_t remote_addr; /**< [in] the record */
    void *buf;            /**< [in] where it goes */
    size_t len;           /**< [in] its length, > 0 */
    int status;           /**< [out] 0, HMAF_EBUSY, or its read's error */
} hmaf_consistent_read_t;

/**
 * @brief hmaf_session_read_consistent() for many records in one call:
 * with an engine whose vectored reads are ordered, every record still
 * unsettled is read in one vectored read per round, and only the torn
 * ones are read again. Each record is consistent on its own (records
 * with different version words are not a snapshot of one moment).
 * @param [in] session      the session.
 * @param [in,out] recs     @p n records; each one's status is written.
 * @param [in] n            records, > 0.
 * @param [in] max_retries  reads of a record after its first, as for
 *                          hmaf_session_read_consistent().
 * @return 0 when every record was read; else the first failing record's
 *         status (each record's status says its own); HMAF_EINVAL (NULL
 *         recs, n 0, a record's len 0 or misaligned seq_addr).
 */
HMAF_API int hmaf_session_read_consistentv(hmaf_session_t *session,
                                           hmaf_consistent_read_t *recs,
                                           size_t n, unsigned max_retries);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_SEQLOCK_H */
