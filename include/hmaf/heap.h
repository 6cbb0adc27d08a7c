/**
 * @file heap.h
 * @brief Allocation in host memory: a heap the host exposes, where the
 * host and dpu sides allocate and free blocks.
 *
 * The host gives its agent one range of its memory (hmaf_agent_heap_create);
 * the agent exposes it read-write and keeps every piece of bookkeeping in
 * its own private memory, never inside the range, so nothing a dpu side
 * writes there can corrupt the allocator. Blocks are handed out as host
 * addresses, 16-byte aligned, which host code dereferences directly and dpu
 * sides read and write with hmaf_session_read()/write().
 *
 * Blocks. Sizes up to HMAF_HEAP_SMALL_MAX bytes are rounded up to one of 40
 * size classes (16 B steps to 128 B, then four steps per power of two) and
 * carved from 64 KiB slabs, each slab owned by the one requester (the host,
 * or one session) that allocates from it. Larger sizes take whole 4 KiB
 * pages of the range (first fit over free spans, neighbours coalesced).
 *
 * Who frees what: any side may free any live block, whoever allocated it
 * (a block the dpu side allocated may be freed by the host, and back). The
 * allocator checks every free: an address that is not the start of a live
 * block (outside the heap, inside a block, already free) is refused with
 * HMAF_EINVAL and changes nothing. A double free is detected as long as the
 * block has not been allocated again in between.
 *
 * Round trips. A dpu side takes small blocks in batches (one ALLOC request
 * answers up to 128 blocks of one size class) and hands them out from a
 * cache of its own: most small allocations cost no round trip. Its frees
 * are sent in batches of up to 221 addresses (a long mailbox request), when
 * a batch is full, on hmaf_session_heap_flush(), when the session is
 * destroyed, and by the session's watch thread once the session made no
 * heap call for one turn (at most a second). A large block costs one round
 * trip to allocate.
 *
 * Quotas. Each session may hold at most params.session_quota bytes (blocks
 * it allocated and not yet freed by anyone, its cached blocks included;
 * each counted at its class or page-rounded size). The host has no quota.
 *
 * Dead sessions: their blocks are kept. Blocks a session allocated stay
 * allocated when it ends (their data may be linked into host structures);
 * ownership of its slabs passes to the host, and anyone may free them as
 * usual. Blocks it held in its cache, never handed out, are given back by
 * hmaf_session_destroy() (which posts them without waiting for the host:
 * the agent frees them when it hears the session end, a stopped host once
 * it runs again) and by the idle give-back; a dpu process that dies
 * without either (SIGKILL) leaks them: at most one batch per size class
 * (at most 640 KiB in all), counted in hmaf_heap_stats_t.bytes_lost.
 * Such a process's frees not sent yet (at most 220 addresses, the batch
 * being filled) never reach the host either: those blocks stay allocated,
 * and bytes_lost does not count them (the dpu side knows their addresses,
 * not their sizes).
 *
 * Thread safety: every call may be made from any thread. Host-side calls
 * take the agent's lock for a short time (no allocation is O(n) in the
 * number of blocks). A session's dpu-side calls share one lock, held
 * through a refill's or a batch's round trip; a call that cannot have it
 * within rpc_timeout_ms gives HMAF_ETIMEDOUT.
 */
#ifndef HMAF_HEAP_H
#define HMAF_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/host.h>
#include <hmaf/session.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Largest block served from size classes; larger ones take pages. */
#define HMAF_HEAP_SMALL_MAX 32768u
/** Alignment of every block, and of a heap's base and length. */
#define HMAF_HEAP_ALIGN 16u
/** Unit of a heap's large blocks and slabs; a heap's base and length are
 * multiples of it. */
#define HMAF_HEAP_PAGE 4096u
/** Smallest heap: one slab. */
#define HMAF_HEAP_MIN_LEN 65536u

/** Parameters of hmaf_agent_heap_create(); fill with hmaf_heap_params_init(). */
typedef struct hmaf_heap_params {
    size_t size;             /**< sizeof(hmaf_heap_params_t), set by init */
    uint64_t session_quota;  /**< bytes one session may hold (0, the
                                  default: the whole heap) */
} hmaf_heap_params_t;

/**
 * Heap counters (host side). Initialise with HMAF_HEAP_STATS_INIT (size:
 * types.h, HMAF_STATS_SIZE_MAX).
 */
typedef struct hmaf_heap_stats {
    size_t size;              /**< [in] sizeof(hmaf_heap_stats_t), set by the
                                   caller; the call leaves it */
    uint64_t bytes_total;     /**< the heap's length */
    uint64_t bytes_in_use;    /**< blocks allocated to anyone, sessions'
                                   caches included, at their class or
                                   page-rounded size */
    uint64_t blocks_in_use;   /**< how many blocks that is */
    uint64_t bytes_reserved;  /**< pages taken by slabs and large blocks
                                   (>= bytes_in_use) */
    uint64_t bytes_cached_by_sessions; /**< of bytes_in_use: blocks live
                                   sessions took and have not handed out,
                                   as of each one's latest request */
    uint64_t bytes_lost;      /**< blocks dead sessions had cached and
                                   never handed out: allocated for good. An
                                   upper bound: a session's cache as of its
                                   latest request, so blocks it handed out
                                   after that are counted too (unless freed
                                   meanwhile: a session's cache never counts
                                   more than the blocks it still holds) */
    uint64_t allocs;          /**< blocks allocated (batches count each) */
    uint64_t frees;           /**< blocks freed */
    uint64_t bad_frees;       /**< frees refused: no live block there */
    uint64_t failed_allocs;   /**< requests refused for HMAF_ENOMEM or
                                   HMAF_ENOSPC */
} hmaf_heap_stats_t;

/** Initializer of an hmaf_heap_stats_t: its size, and zeros. */
#define HMAF_HEAP_STATS_INIT {.size = sizeof(hmaf_heap_stats_t)}

/**
 * Dpu-side heap counters of one session. Initialise with
 * HMAF_SESSION_HEAP_STATS_INIT (size: types.h, HMAF_STATS_SIZE_MAX).
 */
typedef struct hmaf_session_heap_stats {
    size_t size;              /**< [in] sizeof(hmaf_session_heap_stats_t),
                                   set by the caller; the call leaves it */
    uint64_t allocs;          /**< hmaf_session_alloc() calls that succeeded */
    uint64_t frees;           /**< hmaf_session_free() calls accepted */
    uint64_t alloc_requests;  /**< ALLOC round trips */
    uint64_t free_requests;   /**< FREE round trips */
    uint64_t bytes_cached;    /**< blocks taken and not handed out, now */
    uint64_t frees_pending;   /**< frees not sent yet, now */
    uint64_t bad_frees;       /**< frees the host refused */
} hmaf_session_heap_stats_t;

/** Initializer of an hmaf_session_heap_stats_t: its size, and zeros. */
#define HMAF_SESSION_HEAP_STATS_INIT                                           \
    {.size = sizeof(hmaf_session_heap_stats_t)}

/**
 * @brief Defaults into @p params, then the environment's HMAF_* settings
 *        of this struct (config.h).
 * @param [out] params  parameters to initialise; must not be NULL.
 */
HMAF_API void hmaf_heap_params_init(hmaf_heap_params_t *params);

/**
 * @brief Make [base, base + len) the agent's heap, and expose it
 * read-write to dpu sides.
 *
 * base and len must be multiples of HMAF_HEAP_PAGE (4096), len at least
 * HMAF_HEAP_MIN_LEN. The memory must stay mapped for the agent's life; the
 * heap lives until hmaf_agent_destroy(), and hmaf_agent_revoke() of its
 * exposure is refused (HMAF_EBUSY). HMAF keeps no bookkeeping inside the
 * range: what anyone writes there is only data.
 * @param [in] agent   the agent that serves the heap.
 * @param [in] base    the range's start, a multiple of HMAF_HEAP_PAGE.
 * @param [in] len     its length, a multiple of HMAF_HEAP_PAGE, at least
 *                     HMAF_HEAP_MIN_LEN.
 * @param [in] params  NULL for the defaults.
 * @return 0; HMAF_EINVAL (NULL agent or base, misaligned base or len, len
 *         below the minimum, params->size too small), HMAF_EOVERFLOW,
 *         HMAF_EEXIST (the agent has a heap, or the range overlaps an
 *         exposure), HMAF_ENOMEM.
 */
HMAF_API int hmaf_agent_heap_create(hmaf_agent_t *agent, void *base,
                                    size_t len,
                                    const hmaf_heap_params_t *params);

/**
 * @brief Allocate a block in the heap from the host, without the mailbox.
 * @param [in] agent     the agent whose heap it is.
 * @param [in] size      bytes, > 0.
 * @param [out] ptr_out  a 16-byte aligned block of at least @p size bytes;
 *        written only on success.
 * @return 0; HMAF_EINVAL (NULL, size 0, or larger than the heap),
 *         HMAF_ENOENT (no heap), HMAF_ENOMEM (no room).
 */
HMAF_API int hmaf_agent_heap_alloc(hmaf_agent_t *agent, size_t size,
                                   void **ptr_out);

/**
 * @brief Free a block of the heap, whoever allocated it.
 * @param [in] agent  the agent whose heap it is.
 * @param [in] ptr    the block's start, as an allocation returned it.
 * @return 0; HMAF_EINVAL (NULL agent, or @p ptr is not the start of a live
 *         block: nothing changes), HMAF_ENOENT (no heap).
 */
HMAF_API int hmaf_agent_heap_free(hmaf_agent_t *agent, void *ptr);

/**
 * @brief Snapshot of the heap's counters.
 * @param [in] agent       the agent whose heap it is.
 * @param [in,out] stats_out  its size set by the caller
 *        (HMAF_HEAP_STATS_INIT); filled as types.h, HMAF_STATS_SIZE_MAX
 *        says, and written only on success.
 * @return 0; HMAF_EINVAL (NULL, or a stats_out->size the call does not
 *         accept); HMAF_ENOENT (no heap).
 */
HMAF_API int hmaf_agent_heap_stats(hmaf_agent_t *agent,
                                   hmaf_heap_stats_t *stats_out);

/**
 * @brief Allocate a block in the host's heap.
 *
 * Up to HMAF_HEAP_SMALL_MAX bytes the block comes from the session's cache
 * of its size class, refilled by one round trip per batch (the batch grows
 * from 4 blocks to up to 128, at most 16 KiB a batch); larger blocks cost
 * one round trip each. When the host refuses for lack of room or quota, the
 * session first gives back its pending frees and cached blocks and asks
 * once more.
 * @param [in] session    the session.
 * @param [in] size       bytes, > 0.
 * @param [out] addr_out  the block's host address, 16-byte aligned, at
 *        least @p size bytes; written only on success.
 * @return 0; HMAF_EINVAL (NULL, size 0, larger than the heap), HMAF_ENOENT
 *         (the host has no heap), HMAF_ENOMEM (the heap is full),
 *         HMAF_ENOSPC (the session's quota), HMAF_EPROTO (a malformed
 *         answer), and the transport errors (HMAF_ECONNRESET,
 *         HMAF_ETIMEDOUT).
 */
HMAF_API int hmaf_session_alloc(hmaf_session_t *session, size_t size,
                                uint64_t *addr_out);

/**
 * @brief Free a block of the host's heap, whoever allocated it.
 *
 * The free is queued and sent with others (see the file comment); the host
 * checks it when it arrives. An address the host refuses is counted
 * (stats.bad_frees) and reported by the next hmaf_session_heap_flush().
 * Do not touch the block after this call: the host may reuse it as soon as
 * the batch arrives.
 * @param [in] session  the session.
 * @param [in] addr     the block's host address, as an allocation returned
 *                      it (by either side).
 * @return 0; HMAF_EINVAL (NULL session, address 0 or not 16-byte aligned),
 *         the transport errors of a batch this call sent, or
 *         HMAF_ETIMEDOUT also when another thread's heap call on this
 *         session held the heap for rpc_timeout_ms (waiting on a host that
 *         does not answer): then this block was not queued; free it again.
 */
HMAF_API int hmaf_session_free(hmaf_session_t *session, uint64_t addr);

/**
 * @brief Send the pending frees and give back every cached block now.
 * @param [in] session  the session.
 * @return 0; HMAF_EINVAL (NULL session, or a free since the previous flush
 *         named no live block: the others were freed), HMAF_ENOENT (the
 *         host has no heap), the transport errors.
 */
HMAF_API int hmaf_session_heap_flush(hmaf_session_t *session);

/**
 * @brief Snapshot of the session's heap counters.
 * @param [in] session     the session.
 * @param [in,out] stats_out  its size set by the caller
 *        (HMAF_SESSION_HEAP_STATS_INIT); filled as types.h,
 *        HMAF_STATS_SIZE_MAX says, and written only on success.
 * @return 0; HMAF_EINVAL (NULL, or a stats_out->size the call does not
 *         accept).
 */
HMAF_API int hmaf_session_heap_stats(hmaf_session_t *session,
                                     hmaf_session_heap_stats_t *stats_out);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_HEAP_H */
