/**
 * @file host.h
 * @brief Host side: the agent that serves dpu-side sessions.
 *
 * The host creates one agent, exposes ranges of its memory and publishes
 * named roots. Nothing is reachable until it is exposed. The agent serves
 * any number of sessions, each with its own mailbox; it never trusts what a
 * dpu side sends, and it cleans up a session whose peer died.
 *
 * By default the agent runs its own thread. With params.threaded = 0 the
 * application drives it by calling hmaf_agent_poll() from its own loop.
 *
 * Fences and the threat model. hmaf_agent_revoke() and
 * hmaf_agent_destroy() are fences: when they report success, no access to
 * the memory concerned begins or lands afterwards. They get there by
 * asking: each session confirms — its dpu side has dropped what it cached
 * and no transfer of its is still running — and a session that cannot
 * confirm in time is cut off and reported, never silently trusted. What
 * "cut off" guarantees depends on the engine:
 *  - doca (and engines like it, whose registrations are the access): the
 *    registration ends, so the dpu side's DMA to the range fails. [Per
 *    DOCA's documentation; only run against an emulation so far.]
 *  - cma: the kernel lets a ptrace-permitted peer read and write anything
 *    in this process, so every fence is kept by the dpu side's library,
 *    cooperatively. A peer that does not run libhmaf, or a dpu thread
 *    stalled inside one transfer step (at most 16 MiB) for longer than
 *    revoke_wait_ms, can still reach memory. Memory of the agent's own
 *    that a peer may address (session mailboxes) never goes back to the
 *    allocator while the peer may still write it.
 *  - ucx: as doca. Every read, write and atomic is a request that this
 *    process's agent serves: it checks the registration's key, the range
 *    and the access before it copies, under the lock that deregistration
 *    takes, so a cut-off session's requests are refused and none lands
 *    after the revocation returns. [Run over tcp and shared memory only;
 *    no RDMA.] docs/engines.md, "ucx".
 * The agent never trusts what a dpu side sends.
 *
 * Connections. Up to 1024 connections may wait for their HELLO at once
 * (fewer when the process runs out of file descriptors); each is read as
 * soon as it is accepted, so a dpu side that sends its HELLO with its
 * connect — as libhmaf does — is answered at once. When more arrive, the
 * connection that has waited longest is dropped, after a last look at
 * what it sent, once it has waited 200 ms (until then newcomers wait in
 * the kernel's backlog, the system's largest, SOMAXCONN); any connection
 * is dropped after handshake_timeout_ms. The agent needs a file descriptor
 * per session and per waiting connection: below max_sessions + 1024 + a
 * few (RLIMIT_NOFILE), connections held open by a flood can keep a new
 * session waiting in the backlog. Refusals are logged at most once a
 * second. A peer that knows the token can hold up to max_sessions
 * sessions.
 *
 * Thread safety: every call may be made from any thread, except that
 * hmaf_agent_destroy() must not race with other calls on the same agent.
 */
#ifndef HMAF_HOST_H
#define HMAF_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hmaf_agent hmaf_agent_t; /**< opaque host-side agent */

/** Parameters of hmaf_agent_create(); fill with hmaf_agent_params_init(). */
typedef struct hmaf_agent_params {
    size_t size;           /**< sizeof(hmaf_agent_params_t), set by init */
    const char *address;   /**< listen here ("unix:PATH", "tcp:HOST:PORT");
                                NULL: not yet (hmaf_agent_listen()) or
                                never (hmaf_agent_dial()) */
    const char *token;     /**< shared secret, at most HMAF_TOKEN_MAX bytes */
    const char *engine;    /**< "cma" (default), or NULL or "" for
                                $HMAF_ENGINE */
    int threaded;          /**< non-zero (default 1): run the agent in its
                                own thread; 0: hmaf_agent_poll() */
    unsigned max_sessions; /**< sessions served at once (64); a session
                                the agent closed while its dpu side may
                                still run (cma) keeps its place until the
                                dpu side closes its end */
    unsigned mailbox_slots; /**< requests in flight per session (16) */
    int handshake_timeout_ms; /**< a peer must finish its hello in this (5000) */
    int revoke_wait_ms;    /**< longest wait for sessions to confirm a
                                revocation, and for dpu sides to stop when
                                the agent is destroyed, ms (1000; >= 1).
                                Sessions confirm in well under a
                                millisecond on an idle machine; the wait is
                                what a busy one may need. */
} hmaf_agent_params_t;

/**
 * Agent counters. Initialise with HMAF_AGENT_STATS_INIT (size: types.h,
 * HMAF_STATS_SIZE_MAX).
 */
typedef struct hmaf_agent_stats {
    size_t size;               /**< [in] sizeof(hmaf_agent_stats_t), set by
                                    the caller; the call leaves it */
    uint64_t sessions_live;    /**< sessions connected now */
    uint64_t sessions_total;   /**< sessions accepted since creation */
    uint64_t sessions_closed;  /**< sessions ended (peer died or left) */
    uint64_t refused;          /**< handshakes refused */
    int last_refusal;          /**< HMAF_E* of the latest refusal, or 0 */
    uint64_t requests;         /**< mailbox requests served */
    uint64_t bad_requests;     /**< mailbox requests rejected as malformed */
    uint64_t registrations;    /**< engine registrations made */
    uint64_t revocations;      /**< revoke calls completed */
    uint64_t revoke_timeouts;  /**< revokes that returned HMAF_ETIMEDOUT */
    uint64_t revoke_cutoffs;   /**< sessions closed for not confirming a
                                    revocation within revoke_wait_ms */
    uint64_t notifications;    /**< NOTIFYs taken (notify.h), coalesced
                                    ones included */
    uint64_t notifications_coalesced; /**< of them, added to an entry of
                                           the same session and tag */
    uint64_t notifications_refused;   /**< NOTIFYs answered HMAF_ENOSPC */
    uint64_t rings;            /**< rings stored, one per session rung */
} hmaf_agent_stats_t;

/** Initializer of an hmaf_agent_stats_t: its size, and zeros. */
#define HMAF_AGENT_STATS_INIT {.size = sizeof(hmaf_agent_stats_t)}

/**
 * @brief Defaults into @p params, then the environment's HMAF_* settings
 *        of this struct (config.h).
 * @param [out] params  parameters to initialise; must not be NULL.
 */
HMAF_API void hmaf_agent_params_init(hmaf_agent_params_t *params);

/**
 * @brief Create an agent and, when params->address is set, start listening.
 * @param [in]  params     copied; the caller may free it afterwards.
 * @param [out] agent_out  written only on success.
 * @return 0; HMAF_EINVAL (bad params, or a tcp address and no token: a
 *         tcp agent always checks a token), HMAF_EADDRESS (malformed, or no
 *         such place to listen), HMAF_EADDRINUSE (also: a unix path where
 *         a live listener is, whose backlog may be full; ucx: the port
 *         HMAF_UCX_PORT names is taken), HMAF_EPERM,
 *         HMAF_ENOENGINE, HMAF_ENOMEM, HMAF_ENOSPC (out of file
 *         descriptors), HMAF_ENOTSUP (ucx: this process was forked while
 *         one of its parent's ucx sessions or agents was open, and UCX
 *         cannot run here; fork before the first, or exec: docs/engines.md,
 *         "ucx").
 */
HMAF_API int hmaf_agent_create(const hmaf_agent_params_t *params,
                               hmaf_agent_t **agent_out);

/**
 * @brief Stop the agent, disconnect every session, free everything.
 * Accepts NULL. Exposed memory is not touched.
 *
 * Every live session is told first, and the call waits, at most
 * params.revoke_wait_ms, until each dpu side has stopped: its library does
 * that on its own, at once — no transfer or mailbox write of it is still
 * running and none will start (its calls fail with HMAF_ECONNRESET), its
 * imports are released — and then says so. When the call returns, no
 * write of such a dpu side lands in exposed memory or in memory the agent
 * owned. A dpu side that did not say so in time is cut off (see the file
 * comment for what that means per engine); the agent logs a warning, and
 * its mailbox stays reserved and inaccessible for the life of the process
 * (a few KiB of address space, no memory). To learn whether every session
 * was fenced, revoke the exposures before destroying the agent.
 * @param [in] agent  the agent, or NULL.
 */
HMAF_API void hmaf_agent_destroy(hmaf_agent_t *agent);

/**
 * @brief The address the agent listens at, with the real port when the
 * params asked for port 0 ("tcp:127.0.0.1:40123"). NULL when not listening.
 * The string lives as long as the agent.
 * @param [in] agent  the agent.
 * @return the address, or NULL.
 */
HMAF_API const char *hmaf_agent_address(const hmaf_agent_t *agent);

/**
 * @brief Start listening at @p address, for an agent created without one:
 * expose and publish first, then listen, and no dpu side ever sees the
 * agent half set up.
 * @param [in] agent    the agent, created with no params.address.
 * @param [in] address  "unix:PATH" or "tcp:HOST:PORT".
 * @return 0; HMAF_EINVAL (NULL, already listening, or tcp without a
 *         token), HMAF_EADDRESS, HMAF_EADDRINUSE, HMAF_EPERM, HMAF_ENOMEM,
 *         HMAF_ENOSPC (out of file descriptors).
 */
HMAF_API int hmaf_agent_listen(hmaf_agent_t *agent, const char *address);

/**
 * @brief Connect to a dpu side that listens (params.listen = 1 there) and
 * serve it as one more session. Blocks for the handshake: connect and
 * handshake together take at most timeout_ms.
 * @param [in] agent       the agent that serves the new session.
 * @param [in] address     where the dpu side listens.
 * @param [in] timeout_ms  bound on connect and handshake, ms.
 * @return 0; HMAF_EINVAL (also: a tcp address and no token, a comch name
 *         longer than the device allows),
 *         HMAF_EADDRESS, HMAF_ECONNREFUSED, HMAF_ECONNRESET, HMAF_ETIMEDOUT
 *         (also: no comch server came within timeout_ms),
 *         HMAF_EAUTH, HMAF_EVERSION, HMAF_EENGINE, HMAF_EPIDNS (cma: the
 *         dpu side runs in another pid namespace), HMAF_EPROTO, HMAF_ENOSPC
 *         (max_sessions reached, out of file descriptors, or a comch
 *         device's largest message is smaller than the handshake's),
 *         HMAF_ENOMEM,
 *         HMAF_EPERM, HMAF_ENOTSUP (a comch address and a libhmaf built
 *         without DOCA).
 */
HMAF_API int hmaf_agent_dial(hmaf_agent_t *agent, const char *address,
                             int timeout_ms);

/**
 * @brief Make [addr, addr + len) reachable from dpu sides.
 *
 * The memory must stay mapped until hmaf_agent_revoke() returns for it.
 * The agent's own thread (or hmaf_agent_poll()) touches exposed memory
 * itself: it performs the dpu sides' atomics (atomic.h) on read-write
 * exposures with CPU atomic instructions, so a read-write exposure must
 * be writable memory of this process. Exposures may not overlap each
 * other.
 * @param [in] agent   the agent.
 * @param [in] addr    the range's start in this process.
 * @param [in] len     its length in bytes, > 0.
 * @param [in] access  HMAF_ACCESS_READ or HMAF_ACCESS_READ_WRITE.
 * @return 0; HMAF_EINVAL (NULL, len 0, bad access), HMAF_EOVERFLOW,
 *         HMAF_EEXIST (overlaps an exposure), HMAF_ENOMEM.
 */
HMAF_API int hmaf_agent_expose(hmaf_agent_t *agent, const void *addr,
                               size_t len, hmaf_access_t access);

/**
 * @brief Withdraw an exposure made with exactly this addr and len.
 *
 * The exposure is withdrawn at once (no new registration of it succeeds);
 * every live session is told, and the call waits, at most
 * params.revoke_wait_ms, until each has confirmed: its dpu side dropped
 * every region it cached and no transfer step that could use one is still
 * running. Busy or idle, a session confirms by itself (its library's
 * watch thread), within microseconds to milliseconds on a machine that is
 * not overloaded. Sessions that connect meanwhile never see the range.
 * Then the engine registration ends.
 *
 * 0 means every session confirmed: no access to the range begins or lands
 * after the call returns, from any thread of any session, whatever the
 * engine. Memory may be reused at once.
 *
 * HMAF_ETIMEDOUT means some session did not confirm in time — its dpu
 * process is stopped, starved of CPU, or stuck inside one transfer step —
 * or (cma) a session closed earlier by the agent (cut off by another
 * revocation, or for breaking the protocol) has not yet closed its end:
 * until it does, its threads may still be running.
 * The exposure is withdrawn all the same, and those sessions are closed
 * (their dpu sides see HMAF_ECONNRESET; stats.revoke_cutoffs counts
 * them). What then holds depends on the engine (see the file comment):
 * with doca and ucx their access to the range is gone; with cma a
 * transfer step they had already begun may still complete, so do not
 * reuse the memory for data a late write could corrupt until those dpu
 * processes are known to have stopped.
 * @param [in] agent  the agent.
 * @param [in] addr   the exposure's start, as given to hmaf_agent_expose().
 * @param [in] len    its length, as given to hmaf_agent_expose().
 * @return 0; HMAF_ETIMEDOUT; HMAF_ENOENT (no exposure with this addr and
 *         len); HMAF_EINVAL (NULL agent or addr, len 0); HMAF_EBUSY (the
 *         exposure is the agent's heap, heap.h: it lives as long as the
 *         agent).
 */
HMAF_API int hmaf_agent_revoke(hmaf_agent_t *agent, const void *addr,
                               size_t len);

/**
 * @brief Publish a named root so dpu sides can find [addr, addr + len).
 * The root need not be exposed, but reading it needs an exposure.
 * @param [in] agent  the agent.
 * @param [in] name   NUL-terminated, at most HMAF_ROOT_NAME_MAX bytes;
 *                    copied.
 * @param [in] addr   the root's start in this process.
 * @param [in] len    its length in bytes, > 0.
 * @return 0; HMAF_EINVAL (NULL agent, addr or name, an empty name, len 0),
 *         HMAF_EOVERFLOW (addr + len ends past 2^64 - 1),
 *         HMAF_ENAMETOOLONG, HMAF_EEXIST (name taken), HMAF_ENOSPC,
 *         HMAF_ENOMEM.
 */
HMAF_API int hmaf_agent_publish(hmaf_agent_t *agent, const char *name,
                                const void *addr, size_t len);

/**
 * @brief Remove a root.
 * @param [in] agent  the agent.
 * @param [in] name   the root's name, as published.
 * @return 0; HMAF_ENOENT; HMAF_EINVAL; HMAF_ENAMETOOLONG.
 */
HMAF_API int hmaf_agent_unpublish(hmaf_agent_t *agent, const char *name);

/**
 * @brief Do the agent's work once (for params.threaded = 0): accept and
 * hand-shake connections, serve mailbox requests, reap dead sessions.
 * Call it from one thread at a time.
 * @param [in] agent       an agent created with params.threaded = 0.
 * @param [in] timeout_ms  how long to wait when nothing is pending (0: not
 *        at all). Only channel events (connections, peers leaving) end the
 *        wait early; a mailbox request waits for the next call, so the
 *        timeout bounds the latency of lookups and registrations.
 *        Registrations a closed session held are given back a bounded
 *        number per call; while some are left, a call counts that as an
 *        event and does not wait.
 * @return the number of events handled (>= 0); HMAF_EBUSY if the agent runs
 *         its own thread; HMAF_EINVAL.
 */
HMAF_API int hmaf_agent_poll(hmaf_agent_t *agent, int timeout_ms);

/**
 * @brief Snapshot of the counters.
 * @param [in] agent       the agent.
 * @param [in,out] stats_out  its size set by the caller
 *        (HMAF_AGENT_STATS_INIT); filled as types.h, HMAF_STATS_SIZE_MAX
 *        says, and written only on success.
 * @return 0; HMAF_EINVAL (NULL, or a stats_out->size the call does not
 *         accept).
 */
HMAF_API int hmaf_agent_stats(hmaf_agent_t *agent,
                              hmaf_agent_stats_t *stats_out);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_HOST_H */
