/**
 * @file session.h
 * @brief Dpu side: connect to a host agent, then read and write host memory.
 *
 * Host addresses are uint64_t: they are the host process's own virtual
 * addresses and cannot be dereferenced here. Registration is automatic: the
 * first access to a host range asks the agent to register the exposed range
 * that contains it and caches the answer.
 *
 * Thread safety: one session may be used from up to 128 live threads of
 * the application at once (more get HMAF_ENOSPC); each call is independent
 * and no lock sits on the data path. The session's own threads (below)
 * have 16 places of their own: only a session with more than 15 mappings
 * has them share the application's. hmaf_session_destroy() must not race
 * with other calls on the same session.
 *
 * Each session runs one thread of its own, the watch thread (plus one per
 * mapping, map.h, and with cma, from its first transfer split across
 * threads on, split_threads - 1 helpers that copy only while a calling
 * thread waits for them). The watch thread confirms the host's revocations
 * while the application's threads are idle, so the host never waits on an
 * idle session, and notices at once when the host goes. When the session ends —
 * the host left or closed it, a transfer found the host gone, or
 * hmaf_session_destroy() — it fences the session: no transfer or mailbox
 * request of it is running any more and none will start (calls fail with
 * HMAF_ECONNRESET), everything imported from the host is released, and
 * only then is the host told. A session the host closed because it did not
 * confirm a revocation in time (host.h) ends the same way.
 *
 * A stopped host. With cma and doca a transfer needs nothing of the host
 * process, and mailbox calls end with HMAF_ETIMEDOUT after
 * params.rpc_timeout_ms. With ucx the host's agent serves every transfer
 * (it checks each against the host's registrations), mailbox I/O
 * included: while the host process is stopped (SIGSTOP, a debugger) or
 * its agent not polled, calls wait for it, rpc_timeout_ms bounds none of
 * them, and hmaf_session_destroy() waits too. A host that dies is seen within about
 * a second (HMAF_ECONNRESET). docs/engines.md, "ucx".
 *
 * On error a read leaves the destination buffer unspecified; a write that
 * fails part-way may have written part of the data: a prefix of it, or,
 * when it was split across threads (params.split_threads) or moved by DMA
 * tasks in parallel (doca), any of its pieces.
 */
#ifndef HMAF_SESSION_H
#define HMAF_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hmaf_session hmaf_session_t; /**< opaque dpu-side session */

/** Parameters of hmaf_session_create(); fill with hmaf_session_params_init(). */
typedef struct hmaf_session_params {
    size_t size;         /**< sizeof(hmaf_session_params_t), set by init */
    const char *address; /**< channel: "unix:PATH" or "tcp:HOST:PORT" */
    const char *token;   /**< shared secret, at most HMAF_TOKEN_MAX bytes */
    const char *engine;  /**< "cma" (default), or NULL or "" for
                              $HMAF_ENGINE */
    int listen;          /**< non-zero: listen at address and wait for the
                              host. The dpu side then sends its HELLO,
                              token included, to the first peer that
                              connects: listen only where no one but the
                              host can connect (comch; a unix path only
                              the host may reach), never on an open tcp
                              port. */
    int connect_timeout_ms; /**< bootstrap: connect + handshake (5000) */
    int rpc_timeout_ms;     /**< one mailbox call, its wait for a free
                                 slot included (5000) */
    unsigned cache_max_regions; /**< region cache bound, regions (1024);
                                     past it, the least recently used go,
                                     down to 7/8 of it at once */
    uint64_t cache_max_bytes;   /**< region cache bound, bytes (UINT64_MAX);
                                     the same */
    unsigned revoke_check_us;   /**< how often a calling thread looks at
                                     the host's revocations, µs (1000;
                                     >= 1); the host may shorten it (its
                                     lease). Idle sessions confirm through
                                     their watch thread whatever this
                                     is. */
    unsigned max_inflight;      /**< posted segments per thread (1024) */
    uint64_t map_max_resident;  /**< mapping mode: mirrored bytes present
                                     at once, all mappings of the session
                                     together (UINT64_MAX; at least a
                                     page) */
    unsigned split_threads;     /**< threads one read or write of 1 MiB
                                     or more may use, the calling thread
                                     included: with cma, helper threads
                                     of the session copy pieces of it at
                                     once (they run on any cpu the
                                     process may use). 0 (default):
                                     $HMAF_SPLIT_THREADS, else the number
                                     of online cpus, at most 4; 1: never
                                     split; at most
                                     HMAF_SPLIT_THREADS_MAX. The doca
                                     engine ignores it (DMA moves the
                                     pieces of a transfer at once
                                     anyway). */
} hmaf_session_params_t;

/** Largest hmaf_session_params_t.split_threads (and $HMAF_SPLIT_THREADS). */
#define HMAF_SPLIT_THREADS_MAX 64

/** One segment of a vectored transfer. */
typedef struct hmaf_seg {
    void *local;          /**< local buffer */
    uint64_t remote_addr; /**< host virtual address */
    size_t len;           /**< bytes, > 0 */
} hmaf_seg_t;

/**
 * Handle of a posted transfer (hmaf_session_post_read() and friends). 0 is
 * never a valid handle.
 */
typedef uint64_t hmaf_req_t;

/** One chain for hmaf_session_chase(). */
typedef struct hmaf_chain {
    uint64_t start; /**< [in] host address of the first node; 0: empty */
    size_t steps;   /**< [out] nodes read */
    uint64_t last;  /**< [out] host address of the last node read, or 0 */
    int status;     /**< [out] 0, or the error that ended this chain */
} hmaf_chain_t;

/**
 * Called for every node a chase reads, in step order. Return non-zero to
 * end this chain here. @p node is valid only during the call.
 */
typedef int (*hmaf_chase_visit_fn)(void *arg, size_t chain, uint64_t node_addr,
                                   const void *node);

/** Largest hmaf_chase_params_t.node_len. */
#define HMAF_CHASE_NODE_MAX ((size_t)1 << 20)

/** How hmaf_session_chase() walks. */
typedef struct hmaf_chase_params {
    size_t node_len;    /**< bytes read per node, 1..HMAF_CHASE_NODE_MAX */
    size_t next_offset; /**< where the 8-byte next pointer sits in a node;
                             next_offset + 8 <= node_len */
    size_t max_steps;   /**< nodes per chain at most, > 0 */
    hmaf_chase_visit_fn visit; /**< may be NULL */
    void *arg;          /**< passed to visit */
} hmaf_chase_params_t;

/**
 * Per-session counters; all monotonic since hmaf_session_create().
 * Initialise with HMAF_SESSION_STATS_INIT (size: types.h,
 * HMAF_STATS_SIZE_MAX).
 */
typedef struct hmaf_session_stats {
    size_t size;            /**< [in] sizeof(hmaf_session_stats_t), set by
                                 the caller; the call leaves it */
    uint64_t ops;           /**< successful data-path calls: each read,
                                 write, readv and writev, and each merged
                                 run of posted requests (doca: each posted
                                 request), counts one */
    uint64_t bytes_read;    /**< bytes moved host -> here */
    uint64_t bytes_written; /**< bytes moved here -> host */
    uint64_t cache_hits;    /**< region lookups served by the cache (one
                                 per piece: a segment spanning two regions
                                 makes two) */
    uint64_t cache_misses;  /**< region lookups that asked the agent */
    uint64_t registrations; /**< regions registered and imported */
    uint64_t evictions;     /**< regions dropped by the LRU bounds */
    uint64_t mailbox_round_trips; /**< requests answered by the agent */
    uint64_t revocations;   /**< revocation epochs seen and acknowledged */
} hmaf_session_stats_t;

/** Initializer of an hmaf_session_stats_t: its size, and zeros. */
#define HMAF_SESSION_STATS_INIT {.size = sizeof(hmaf_session_stats_t)}

/**
 * @brief Set every field of @p params to its default, then apply the
 * environment's HMAF_* settings of this struct (config.h): what the
 * program assigns afterwards wins.
 * @param [out] params  parameters to initialise; must not be NULL.
 */
HMAF_API void hmaf_session_params_init(hmaf_session_params_t *params);

/**
 * @brief Connect to a host agent (or wait for it, with params->listen).
 * @param [in]  params       copied; the caller may free it afterwards.
 * @param [out] session_out  the new session, written only on success.
 * Connect (or wait, with params->listen) and handshake together take at
 * most params->connect_timeout_ms.
 * @return 0; HMAF_EINVAL (NULL or bad field; a comch name longer than the
 *         device allows), HMAF_EADDRESS,
 *         HMAF_ECONNREFUSED (nobody listens), HMAF_ETIMEDOUT (the agent's
 *         backlog stayed full, or the handshake did not finish, within
 *         connect_timeout_ms; also the agent's answer when it dropped our
 *         connection from a full table of waiting ones), HMAF_EAUTH (wrong
 *         token), HMAF_EVERSION, HMAF_EENGINE (host runs another engine),
 *         HMAF_EPIDNS (cma: the host runs in another pid namespace; the
 *         log says which way and what to do),
 *         HMAF_ENOENGINE (the engine named, or the default, is not built
 *         or not usable here: the log says why; hmaf_engine_list()), HMAF_EPROTO (garbage from the peer, or a blob
 *         longer than our engine's max_blob), HMAF_ENOMEM (also: the
 *         host could not pin the session's mailbox, doca: memlock limit),
 *         HMAF_ENOSPC (the agent is at max_sessions, a handshake message
 *         exceeds the channel's message size, a comch device's largest
 *         message is smaller than the handshake's, the mailbox's export
 *         descriptor is too large, or out of file descriptors),
 *         HMAF_ECONNRESET, HMAF_EPERM (not allowed to connect, or to reach
 *         the host process: create reads the host's mailbox once, so a
 *         dpu side of another user, under a ptrace scope or a seccomp
 *         filter that forbids it, learns it here; the log says which),
 *         HMAF_EADDRINUSE (listen: the address is taken), HMAF_ENOTSUP
 *         (a comch address and a libhmaf built without DOCA; ucx: this
 *         process was forked while one of its parent's ucx sessions or
 *         agents was open, and UCX cannot run here — fork before the
 *         first, or exec: docs/engines.md, "ucx").
 */
HMAF_API int hmaf_session_create(const hmaf_session_params_t *params,
                                 hmaf_session_t **session_out);

/**
 * @brief Close the session and free everything it holds. Accepts NULL.
 * Returns once the session is fenced (see the file comment) and the host
 * told; it never waits on the host (but with ucx, on a stopped host: see
 * the file comment).
 * @param [in] session  the session, or NULL.
 */
HMAF_API void hmaf_session_destroy(hmaf_session_t *session);

/**
 * @brief Find a root the host published.
 * @param [in]  session          the session.
 * @param [in]  name             NUL-terminated, at most HMAF_ROOT_NAME_MAX.
 * @param [out] remote_addr_out  host address of the root.
 * @param [out] len_out          its length in bytes (may be NULL).
 * @return 0; HMAF_ENOENT (no such root), HMAF_EINVAL, HMAF_ENAMETOOLONG,
 *         HMAF_ECONNRESET, HMAF_ETIMEDOUT, HMAF_EPROTO, HMAF_EPERM,
 *         HMAF_ENOSPC (more than 128 threads on the session).
 */
HMAF_API int hmaf_session_lookup(hmaf_session_t *session, const char *name,
                                 uint64_t *remote_addr_out, size_t *len_out);

/**
 * @brief Copy @p len bytes at host address @p remote_addr into @p buf.
 *
 * Any length at any address inside exposed memory; the range may span
 * several exposures.
 * @param [in]  session      the session.
 * @param [out] buf          @p len bytes.
 * @param [in]  remote_addr  host address of the first byte.
 * @param [in]  len          bytes, > 0.
 * @return 0; HMAF_EINVAL (NULL, len 0), HMAF_EOVERFLOW (address + len wraps),
 *         HMAF_EFAULT (not exposed, or not mapped in the host),
 *         HMAF_EOVERFLOW also when remote_addr + len exceeds UINT64_MAX,
 *         HMAF_ECONNRESET (host gone; doca: also the DMA context stopped
 *         after a fatal task error, which ends the session),
 *         HMAF_ETIMEDOUT (no answer in rpc_timeout_ms; also a miss
 *         whose every answer a newer revocation outdated before it was
 *         cached, for rpc_timeout_ms: a host that revokes without pause
 *         can starve a miss that long), HMAF_EPERM,
 *         HMAF_ENOSPC (too many threads on this session, a region cache
 *         far too small for them, or the engine's export descriptor for
 *         the region exceeds its max_blob: doca, 1280 bytes),
 *         HMAF_EPROTO (also: an export descriptor from the host longer
 *         than our engine's max_blob), HMAF_ENOMEM (also: the host could
 *         not pin the region, doca: its memlock limit).
 */
HMAF_API int hmaf_session_read(hmaf_session_t *session, void *buf,
                               uint64_t remote_addr, size_t len);

/**
 * @brief Copy @p len bytes from @p buf to host address @p remote_addr.
 * @param [in] session      the session.
 * @param [in] remote_addr  host address of the first byte.
 * @param [in] buf          @p len bytes.
 * @param [in] len          bytes, > 0.
 * @return as hmaf_session_read(), plus HMAF_EACCES (read-only exposure).
 */
HMAF_API int hmaf_session_write(hmaf_session_t *session, uint64_t remote_addr,
                                const void *buf, size_t len);

/**
 * @brief Read many segments in one call. Pieces go to the engine in posts
 * of up to 1024 (fewer if the engine's limits say so): with cma, up to 1024
 * pieces are one process_vm_readv. @p segs and the buffers are used only during
 * the call.
 * @param [in] session  the session.
 * @param [in] segs     @p nsegs segments; each one's local buffer receives
 *                      its bytes.
 * @param [in] nsegs    segments, > 0.
 * @return as hmaf_session_read(); HMAF_EINVAL also for nsegs 0 or any
 *         segment with len 0 or a NULL buffer.
 */
HMAF_API int hmaf_session_readv(hmaf_session_t *session, const hmaf_seg_t *segs,
                                size_t nsegs);

/**
 * @brief Write many segments in one call.
 * @param [in] session  the session.
 * @param [in] segs     @p nsegs segments, used only during the call.
 * @param [in] nsegs    segments, > 0.
 * @return as hmaf_session_write(); HMAF_EINVAL also for nsegs 0 or any
 *         segment with len 0 or a NULL buffer.
 */
HMAF_API int hmaf_session_writev(hmaf_session_t *session,
                                 const hmaf_seg_t *segs, size_t nsegs);

/**
 * @name Non-blocking transfers
 *
 * Post a transfer, get a handle, and complete it later with
 * hmaf_request_test(), hmaf_request_wait() or hmaf_session_flush(). With
 * cma, posted transfers are merged: everything a thread posted goes to the
 * kernel in as few vectored calls as possible when it is progressed (and a
 * merged run of 1 MiB or more is split over threads like a blocking call:
 * params.split_threads). With
 * doca (an asynchronous engine), the post itself hands the transfer to the
 * DMA engine, so it moves while the caller works, and test, wait and flush
 * complete what the engine finished; each request goes on its own, and one
 * that needs more than 16 DMA tasks, or whose buffer is mapping-mode
 * memory, runs inside the post and is born complete.
 *
 * - Buffers must stay valid and untouched until the transfer completes.
 * - Requests belong to the thread that posted them: test, wait and flush
 *   see only the calling thread's requests, and a handle used on another
 *   thread is HMAF_ESTALE there. Threads never wait for one another.
 * - Each thread may have params.max_inflight posted segments outstanding;
 *   posting more first completes what is in flight (it never fails for
 *   that). Every handle must be consumed by test or wait: a thread holding
 *   max_inflight completed, unconsumed handles gets HMAF_ENOSPC.
 * - Ordering: completion of a request (test, wait, flush) guarantees its
 *   bytes have moved. With doca a request the engine finished before the
 *   host died succeeds; the others fail with HMAF_ECONNRESET. Outstanding requests are not ordered with respect to
 *   one another: to read what an outstanding write wrote, complete the write
 *   first. (cma happens to run them in post order.)
 * - If a merged run of requests fails, its requests are redone one by one
 *   so that each gets its own status.
 * @{
 */

/**
 * @brief Post a read of @p len bytes at host address @p remote_addr.
 * @param [in]  session      the session.
 * @param [out] buf          @p len bytes, filled by the time the request
 *        completes.
 * @param [in]  remote_addr  host address of the first byte.
 * @param [in]  len          bytes, > 0.
 * @param [out] req_out  the handle, or NULL for none: the outcome is then
 *        reported by the next hmaf_session_flush().
 * @return 0 (posted); HMAF_EINVAL, HMAF_EOVERFLOW, HMAF_ECONNRESET,
 *         HMAF_ENOSPC, HMAF_ENOMEM. Access errors (HMAF_EFAULT, HMAF_EACCES)
 *         are the request's status.
 */
HMAF_API int hmaf_session_post_read(hmaf_session_t *session, void *buf,
                                    uint64_t remote_addr, size_t len,
                                    hmaf_req_t *req_out);

/**
 * @brief Post a write.
 * @param [in]  session      the session.
 * @param [in]  remote_addr  host address of the first byte.
 * @param [in]  buf          @p len bytes, untouched until the request
 *        completes.
 * @param [in]  len          bytes, > 0.
 * @param [out] req_out      the handle, or NULL, as for
 *        hmaf_session_post_read().
 * @return as hmaf_session_post_read().
 */
HMAF_API int hmaf_session_post_write(hmaf_session_t *session,
                                     uint64_t remote_addr, const void *buf,
                                     size_t len, hmaf_req_t *req_out);

/**
 * @brief Post a vectored read: one request, many segments.
 * @param [in]  session  the session.
 * @param [in]  segs     @p nsegs segments; the array and the buffers stay
 *        valid until the request completes.
 * @param [in]  nsegs    segments, > 0.
 * @param [out] req_out  the handle, or NULL, as for
 *        hmaf_session_post_read().
 * @return as hmaf_session_post_read().
 */
HMAF_API int hmaf_session_post_readv(hmaf_session_t *session,
                                     const hmaf_seg_t *segs, size_t nsegs,
                                     hmaf_req_t *req_out);

/**
 * @brief Post a vectored write: one request, many segments.
 * @param [in]  session  the session.
 * @param [in]  segs     @p nsegs segments; the array and the buffers stay
 *        valid and untouched until the request completes.
 * @param [in]  nsegs    segments, > 0.
 * @param [out] req_out  the handle, or NULL, as for
 *        hmaf_session_post_read().
 * @return as hmaf_session_post_read().
 */
HMAF_API int hmaf_session_post_writev(hmaf_session_t *session,
                                      const hmaf_seg_t *segs, size_t nsegs,
                                      hmaf_req_t *req_out);

/**
 * @brief Progress outstanding work and report on one request. Once it
 * reports completion (0 or an error other than HMAF_EINPROGRESS) the handle
 * is consumed.
 * @param [in] session  the session the request was posted on.
 * @param [in] req      the handle a post returned.
 * @return 0 (done); the request's error; HMAF_EINPROGRESS (not done yet:
 *         test again); HMAF_ESTALE (unknown, consumed, or another thread's
 *         handle); HMAF_EINVAL.
 */
HMAF_API int hmaf_request_test(hmaf_session_t *session, hmaf_req_t req);

/**
 * @brief Wait until the request completes and consume its handle.
 * @param [in] session  the session the request was posted on.
 * @param [in] req      the handle a post returned.
 * @return 0; the request's error; HMAF_ESTALE; HMAF_EINVAL.
 */
HMAF_API int hmaf_request_wait(hmaf_session_t *session, hmaf_req_t req);

/**
 * @brief Complete everything the calling thread posted on this session.
 * Handles stay valid (test or wait still report their status).
 * @param [in] session  the session.
 * @return 0 when every request posted without a handle since the last flush
 *         succeeded (also when nothing was posted); otherwise the first of
 *         their errors.
 */
HMAF_API int hmaf_session_flush(hmaf_session_t *session);

/** @} */

/**
 * @brief Follow chains of host pointers, all chains advancing together:
 * each step reads the current node of every live chain with one batched
 * engine post, passes each node to params->visit, then moves each chain to
 * the 8-byte pointer at params->next_offset in its node. A chain ends at a
 * NULL pointer, after params->max_steps nodes, when visit returns non-zero,
 * or on an error (its status). Nodes land in internal buffers placed at the
 * same offset modulo 64 as their host address, which keeps copies fast.
 * @param [in] session      the session.
 * @param [in] params       how to walk; used only during the call.
 * @param [in,out] chains   @p nchains chains: start in, the outcome out.
 * @param [in] nchains      chains, > 0.
 * @return 0 when no chain ended on an error; otherwise the first chain
 *         error; HMAF_EINVAL (bad params, NULL, nchains 0), HMAF_ENOMEM.
 */
HMAF_API int hmaf_session_chase(hmaf_session_t *session,
                                const hmaf_chase_params_t *params,
                                hmaf_chain_t *chains, size_t nchains);

/**
 * @brief One mailbox round trip with the agent; useful as a liveness check.
 * @param [in] session  the session.
 * @return 0; HMAF_EINVAL, HMAF_ECONNRESET, HMAF_ETIMEDOUT, HMAF_EPROTO,
 *         HMAF_EPERM, HMAF_ENOSPC (more than 128 threads on the session).
 */
HMAF_API int hmaf_session_ping(hmaf_session_t *session);

/**
 * @brief Snapshot of the session's counters.
 * @param [in]  session    the session.
 * @param [in,out] stats_out  its size set by the caller
 *        (HMAF_SESSION_STATS_INIT); filled as types.h, HMAF_STATS_SIZE_MAX
 *        says, and written only on success.
 * @return 0; HMAF_EINVAL if an argument is NULL or stats_out->size is not
 *         one the call accepts (HMAF_STATS_SIZE_MAX).
 */
HMAF_API int hmaf_session_stats(hmaf_session_t *session,
                                hmaf_session_stats_t *stats_out);

/**
 * @brief Name of the engine the session runs on ("cma", ...); never NULL.
 * @param [in] session  the session.
 * @return static text.
 */
HMAF_API const char *hmaf_session_engine(const hmaf_session_t *session);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_SESSION_H */
