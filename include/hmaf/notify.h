/**
 * @file notify.h
 * @brief Notifications both ways: a dpu side rings the host (a tag and a
 * value), and the host rings one session or all of them (a value).
 *
 * dpu -> host. hmaf_session_notify() is one mailbox request; it returns
 * once the agent has taken the notification. The agent keeps what it took
 * in a queue that coalesces: while an entry of the same session and tag is
 * waiting, a new notification adds to its count and replaces its value,
 * so a burst costs one entry and loses no count (the sum of the counts
 * taken equals the notifications sent). Each notification goes either to
 * the callback (hmaf_agent_on_notify(), when one is set) or to the queue
 * that hmaf_agent_notifications() drains and the notify fd announces —
 * never to both. The queue is bounded: a session may have at most
 * HMAF_NOTIFY_TAGS_MAX distinct tags waiting; a notification with one more
 * tag is refused (HMAF_ENOSPC to its sender, nothing queued) until the host
 * takes what waits. The whole queue holds at most max_sessions x
 * HMAF_NOTIFY_TAGS_MAX entries (entries of closed sessions stay until
 * taken and count against it; past it, HMAF_ENOSPC too). A dpu side that
 * floods therefore costs the agent a few KiB at most.
 *
 * host -> dpu. hmaf_agent_ring() counts one ring and stores the value in
 * the session's mailbox header (value first, then the count, with release
 * order), then nudges the session's channel. The dpu side takes the rings
 * with hmaf_session_ring_wait(): the number since its last take and the
 * latest value. Rings coalesce there as well: a count, and the last value
 * only. How soon a ring is seen:
 *  - a waiter in hmaf_session_ring_wait() polls the header word itself
 *    for a short spin (tens of microseconds) and then, on a socket channel
 *    (unix, tcp), sleeps on the ring fd and on the channel: the nudge
 *    wakes it directly, and it reads the count itself: a ring is seen
 *    within microseconds by a spinning waiter, and within one thread
 *    wake-up (tens of microseconds) by a sleeping one; a thread that
 *    must see every ring within a round trip polls with timeout 0 (one
 *    read of the header word per call);
 *  - the ring fd alone is made readable by the session's watch thread,
 *    which the nudge wakes: an application's poll/epoll on it sees a ring
 *    within two thread wake-ups;
 *  - on a comch channel, which carries no nudges, a waiter polls the header
 *    word with a spin, then yields, then sleeps in steps growing to 1 ms:
 *    a ring is seen within about a millisecond by a waiter; the ring fd
 *    alone is made readable by the watch thread's periodic look, within
 *    min(100 ms, the host's lease).
 *
 * Thread safety: any call from any thread. The agent's callback runs on
 * the agent's thread (or inside hmaf_agent_poll()), without the agent's
 * lock held.
 */
#ifndef HMAF_NOTIFY_H
#define HMAF_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/host.h>
#include <hmaf/session.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Distinct tags one session may have waiting in the agent's queue. */
#define HMAF_NOTIFY_TAGS_MAX 64

/** One entry of the agent's queue: notifications of one session and tag. */
typedef struct hmaf_notification {
    uint64_t session_id; /**< the sender (hmaf_session_id() there) */
    uint32_t tag;        /**< the sender's tag */
    uint64_t value;      /**< the latest notification's value */
    uint64_t count;      /**< notifications this entry stands for (>= 1) */
} hmaf_notification_t;

/** Called with each entry taken; @p n is valid during the call only. */
typedef void (*hmaf_notify_fn)(void *arg, const hmaf_notification_t *n);

/**
 * @brief Deliver notifications to @p fn from now on (NULL: to the queue).
 *
 * The callback runs on the agent's thread (or inside hmaf_agent_poll()),
 * after the agent has answered the requests of its turn, without the
 * agent's lock held. It may call hmaf_agent_ring(),
 * hmaf_agent_notifications(), hmaf_agent_notify_fd(),
 * hmaf_agent_on_notify(), hmaf_agent_expose(), hmaf_agent_publish(),
 * hmaf_agent_unpublish() and hmaf_agent_stats(); it must not call
 * hmaf_agent_poll(), hmaf_agent_revoke(), hmaf_agent_dial() or
 * hmaf_agent_destroy(), and while it runs the agent serves no request of
 * any session (every session's mailbox calls wait for it), so it should
 * be short: hand long work to a thread of the application's. Entries waiting in the queue when a callback is set
 * go to it at the agent's next turn.
 * @param [in] agent  the agent.
 * @param [in] fn     the callback, or NULL for the queue.
 * @param [in] arg    passed to @p fn.
 * @return 0; HMAF_EINVAL (NULL agent).
 */
HMAF_API int hmaf_agent_on_notify(hmaf_agent_t *agent, hmaf_notify_fn fn,
                                  void *arg);

/**
 * @brief An eventfd that is readable while entries wait in the queue
 * (poll/epoll it for POLLIN; do not read it: hmaf_agent_notifications()
 * resets it once the queue is empty). It may be readable for a moment when
 * a callback takes the entries. The fd belongs to the agent:
 * hmaf_agent_destroy() closes it (take it out of epoll sets before, as its
 * number may be reused at once).
 * @param [in] agent    the agent.
 * @param [out] fd_out  the eventfd.
 * @return 0; HMAF_EINVAL; HMAF_ENOSPC (out of file descriptors).
 */
HMAF_API int hmaf_agent_notify_fd(hmaf_agent_t *agent, int *fd_out);

/**
 * @brief Take up to @p max entries from the queue, oldest first.
 * @param [in] agent   the agent.
 * @param [out] out    @p max entries at least.
 * @param [in] max     entries to take at most, > 0.
 * @param [out] n_out  entries taken (0 when none waited).
 * @return 0; HMAF_EINVAL (NULL, or max 0).
 */
HMAF_API int hmaf_agent_notifications(hmaf_agent_t *agent,
                                      hmaf_notification_t *out, size_t max,
                                      size_t *n_out);

/**
 * @brief Ring session @p session_id, or every live session when it is 0:
 * one more ring, and @p value as the latest value (see the file comment).
 * Never waits for the dpu side.
 * @param [in] agent       the agent.
 * @param [in] session_id  the session's id (hmaf_notification_t), or 0.
 * @param [in] value       the value the dpu side takes with the ring.
 * @return 0; HMAF_ENOENT (no live session has that id: never was, or
 *         closed); HMAF_EINVAL (NULL agent).
 */
HMAF_API int hmaf_agent_ring(hmaf_agent_t *agent, uint64_t session_id,
                             uint64_t value);

/**
 * @brief The id the host knows this session by (hmaf_notification_t's
 * session_id, hmaf_agent_ring()'s argument).
 * @param [in] session  the session.
 * @param [out] id_out  its id, never 0.
 * @return 0; HMAF_EINVAL.
 */
HMAF_API int hmaf_session_id(hmaf_session_t *session, uint64_t *id_out);

/**
 * @brief Ring the host: @p tag and @p value reach its callback or queue.
 * Returns once the agent has taken it (one mailbox round trip).
 * @param [in] session  the session.
 * @param [in] tag      any value the application gives a meaning.
 * @param [in] value    the notification's value.
 * @return 0; HMAF_ENOSPC (HMAF_NOTIFY_TAGS_MAX other tags of this session
 *         wait for the host to take them: nothing queued); HMAF_EINVAL
 *         (NULL); HMAF_ECONNRESET, HMAF_ETIMEDOUT (transport).
 */
HMAF_API int hmaf_session_notify(hmaf_session_t *session, uint32_t tag,
                                 uint64_t value);

/**
 * @brief An eventfd that is readable when the host rang and the rings are
 * not taken yet (poll it for POLLIN; do not read it:
 * hmaf_session_ring_wait() resets it). It may stay readable for a moment
 * after the rings were taken; a ring_wait with timeout 0 then finds
 * nothing. See the file comment for how soon it becomes readable per
 * channel. The fd belongs to the session: hmaf_session_destroy() closes
 * it.
 * @param [in] session  the session.
 * @param [out] fd_out  the eventfd.
 * @return 0; HMAF_EINVAL; HMAF_ENOSPC (out of file descriptors).
 */
HMAF_API int hmaf_session_ring_fd(hmaf_session_t *session, int *fd_out);

/**
 * @brief Take the host's rings since the last take, waiting up to
 * @p timeout_ms for one (0: just look; -1: no limit).
 * @param [in] session     the session.
 * @param [in] timeout_ms  ms to wait at most, 0, or -1.
 * @param [out] count_out  rings taken (>= 1 on success); may be NULL.
 * @param [out] value_out  the latest ring's value (it may belong to a ring
 *        that arrived while this call took the count: the next take then
 *        reports that ring with the same value); may be NULL.
 * Threads may wait at once: each ring is taken by one of them.
 * @return 0; HMAF_ETIMEDOUT (no ring within timeout_ms); HMAF_EINVAL;
 *         HMAF_ECONNRESET (the host is gone or the session closed);
 *         HMAF_ENOSPC (out of file descriptors for the ring fd).
 */
HMAF_API int hmaf_session_ring_wait(hmaf_session_t *session, int timeout_ms,
                                    uint64_t *count_out, uint64_t *value_out);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_NOTIFY_H */
