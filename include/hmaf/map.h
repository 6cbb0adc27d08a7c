/**
 * @file map.h
 * @brief Mapping mode: a host range as ordinary local memory.
 *
 * hmaf_map_create() reserves local memory that mirrors a host range, by
 * default at the same virtual address as on the host, so host pointers
 * stored in the data are valid here unchanged. The first touch of a page
 * faults; HMAF fetches it (and, on sequential access, the pages after it)
 * with engine reads. Writes stay local until hmaf_map_sync() writes back
 * exactly the bytes that changed since each page was fetched.
 *
 * Consistency is release consistency: hmaf_map_sync() publishes local
 * writes to the host, hmaf_map_refresh() makes later reads see host writes;
 * between those fences the mirror and the host may differ. Bytes of a page
 * the dpu side did not change are never written back, so host writes to
 * other bytes of the same page survive a sync.
 *
 * An access that cannot be served — outside what the host exposes, or the
 * host gone — raises SIGBUS in the faulting thread (it never hangs). Writes
 * to a read-only mapping raise SIGSEGV.
 *
 * The session's map_max_resident bounds the bytes present: a fault evicts
 * older pages first, writing their changes back. One exception: without
 * userfaultfd write-protect, a written page is evicted by moving it out of
 * the mirror (mremap MREMAP_DONTUNMAP); where the kernel refuses (before
 * Linux 5.7), written pages stay and the cap is exceeded (logged) rather
 * than a store made during the eviction lost. A writable mapping
 * of a read-only exposure keeps local writes local (hmaf_map_sync returns
 * HMAF_EACCES for them); when such a page — or any page whose changes
 * cannot be written back any more — is evicted, its changes are dropped
 * and counted in bytes_discarded.
 *
 * Thread safety: any number of threads may touch the mirror at once; sync,
 * refresh and stats may be called from any thread. Touching the mirror
 * during or after hmaf_map_destroy() is undefined.
 */
#ifndef HMAF_MAP_H
#define HMAF_MAP_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/session.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hmaf_map hmaf_map_t; /**< opaque mapping */

/** hmaf_map_params_t.flags */
#define HMAF_MAP_READ_ONLY 0x1 /**< no local writes (SIGSEGV), no sync */
#define HMAF_MAP_ANYWHERE 0x2  /**< if the host's address is taken here,
                                    place the mirror elsewhere (use
                                    hmaf_map_local/hmaf_map_remote) */
/** Every hmaf_map_params_t.flags bit there is. */
#define HMAF_MAP_FLAGS (HMAF_MAP_READ_ONLY | HMAF_MAP_ANYWHERE)
/** Largest hmaf_map_params_t.readahead_max, pages. */
#define HMAF_MAP_READAHEAD_MAX 1024

/** hmaf_map_refresh() flags */
#define HMAF_REFRESH_CLEAN_ONLY 0x1 /**< keep pages with unsynced writes */

/** Parameters of hmaf_map_create(); fill with hmaf_map_params_init(). */
typedef struct hmaf_map_params {
    size_t size;            /**< sizeof(hmaf_map_params_t), set by init */
    unsigned flags;         /**< HMAF_MAP_* */
    unsigned readahead_max; /**< pages fetched ahead at most (16; at most
                                 HMAF_MAP_READAHEAD_MAX, and never more
                                 than the session's map_max_resident
                                 holds) */
} hmaf_map_params_t;

/**
 * Counters of one mapping. Initialise with HMAF_MAP_STATS_INIT (size:
 * types.h, HMAF_STATS_SIZE_MAX).
 */
typedef struct hmaf_map_stats {
    size_t size;              /**< [in] sizeof(hmaf_map_stats_t), set by the
                                   caller; the call leaves it */
    uint64_t faults;          /**< first touches of a missing page */
    uint64_t write_faults;    /**< first writes to a fetched page */
    uint64_t pages_fetched;   /**< pages read from the host */
    uint64_t readahead_pages; /**< of those, fetched ahead of a fault */
    uint64_t bytes_written_back; /**< changed bytes sync/eviction wrote */
    uint64_t evictions;       /**< pages dropped for the resident cap */
    uint64_t fault_errors;    /**< faults answered with SIGBUS */
    uint64_t resident_bytes;  /**< mirrored bytes present now */
    uint64_t bytes_discarded; /**< changed bytes an eviction dropped because
                                   they could not be written back (a
                                   read-only exposure, a revoked range, the
                                   host gone) */
} hmaf_map_stats_t;

/** Initializer of an hmaf_map_stats_t: its size, and zeros. */
#define HMAF_MAP_STATS_INIT {.size = sizeof(hmaf_map_stats_t)}

/**
 * @brief Defaults into @p params, then the environment's HMAF_* settings
 *        of this struct (config.h).
 * @param [out] params  parameters to initialise; must not be NULL.
 */
HMAF_API void hmaf_map_params_init(hmaf_map_params_t *params);

/**
 * @brief Mirror [remote_addr, remote_addr + len) of the host.
 * @param [in] session      the session the pages are fetched through; it
 *                          must outlive the mapping.
 * @param [in] remote_addr  the range's host address.
 * @param [in] len          its length in bytes, > 0.
 * @param [in] params  NULL for the defaults.
 * @param [out] map_out     the new mapping, written only on success.
 * @return 0; HMAF_EINVAL (NULL session or map_out, len 0, a params size
 *         that is not sizeof(hmaf_map_params_t), unknown flags,
 *         readahead_max over HMAF_MAP_READAHEAD_MAX), HMAF_EOVERFLOW (the
 *         range, rounded out to whole pages, ends past 2^64), HMAF_EEXIST
 *         (the host's address
 *         range is in use here and HMAF_MAP_ANYWHERE was not given),
 *         HMAF_ENOTSUP (no userfaultfd in this kernel: before Linux
 *         5.11, or without CONFIG_USERFAULTFD), HMAF_EPERM (userfaultfd
 *         denied, by a seccomp filter: docker's default profile; the log
 *         line begins "userfaultfd denied"), HMAF_ENOMEM,
 *         HMAF_ENOSPC (the mapping's fault thread found no place among
 *         the session's threads: more than 15 mappings, and 128
 *         application threads on the session).
 *         The range need not be exposed yet: touching what is not exposed
 *         raises SIGBUS.
 */
HMAF_API int hmaf_map_create(hmaf_session_t *session, uint64_t remote_addr,
                             size_t len, const hmaf_map_params_t *params,
                             hmaf_map_t **map_out);

/**
 * @brief Unmap and free everything. Unsynced writes are lost. Accepts
 * NULL. Destroy every mapping before its session.
 * @param [in] map  the mapping, or NULL.
 */
HMAF_API void hmaf_map_destroy(hmaf_map_t *map);

/**
 * @brief Local address of host address @p remote_addr, or NULL when it is
 * outside the mapping. Equal to the host address unless relocated.
 * @param [in] map          the mapping.
 * @param [in] remote_addr  a host address.
 * @return its mirror here, or NULL.
 */
HMAF_API void *hmaf_map_local(const hmaf_map_t *map, uint64_t remote_addr);

/**
 * @brief Host address of local address @p local, or 0 when outside.
 * @param [in] map    the mapping.
 * @param [in] local  an address in the mirror.
 * @return the host address it mirrors, or 0.
 */
HMAF_API uint64_t hmaf_map_remote(const hmaf_map_t *map, const void *local);

/**
 * @brief Write back every byte changed since its page was fetched (or last
 * synced); afterwards the host holds them.
 * @param [in] map  the mapping.
 * @return 0; HMAF_EACCES (read-only mapping or exposure), HMAF_EFAULT,
 *         HMAF_ECONNRESET, HMAF_EINVAL; and what hmaf_session_writev()
 *         returns for a failed write-back (HMAF_ETIMEDOUT, HMAF_EPROTO,
 *         HMAF_ENOMEM, HMAF_ENOSPC, HMAF_EPERM).
 */
HMAF_API int hmaf_map_sync(hmaf_map_t *map);

/**
 * @brief Drop the cached pages of [remote_addr, remote_addr + len) so the
 * next touch fetches the host's current data. Without
 * HMAF_REFRESH_CLEAN_ONLY, unsynced local writes in the range are dropped
 * too; with it, pages holding them stay.
 * @param [in] map          the mapping.
 * @param [in] remote_addr  the range's host address.
 * @param [in] len          its length in bytes, > 0.
 * @param [in] flags        0 or HMAF_REFRESH_CLEAN_ONLY.
 * @return 0; HMAF_EINVAL (NULL, len 0, unknown flags, or a range not
 *         inside [the mapped address, + the mapped length)).
 */
HMAF_API int hmaf_map_refresh(hmaf_map_t *map, uint64_t remote_addr,
                              size_t len, unsigned flags);

/**
 * @brief Snapshot of the counters.
 * @param [in] map         the mapping.
 * @param [in,out] stats_out  its size set by the caller
 *        (HMAF_MAP_STATS_INIT); filled as types.h, HMAF_STATS_SIZE_MAX
 *        says, and written only on success.
 * @return 0; HMAF_EINVAL (NULL, or a stats_out->size the call does not
 *         accept).
 */
HMAF_API int hmaf_map_stats(hmaf_map_t *map, hmaf_map_stats_t *stats_out);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_MAP_H */
