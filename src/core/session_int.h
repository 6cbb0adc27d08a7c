/* The dpu-side session, shared by the core's source files. */
#ifndef HMAF_CORE_SESSION_INT_H
#define HMAF_CORE_SESSION_INT_H

#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>

#include <hmaf/session.h>

#include "channel/channel.h"
#include "core/mailbox.h"
#include "core/regcache.h"
#include "engine/engine.h"
#include "proto/handshake.h"

/* The slow-path counters; the hot ones live in each thread's reader slot
 * (core/readers.h). */
struct hmaf_session_counters {
    _Atomic uint64_t cache_misses;
    _Atomic uint64_t registrations;
    _Atomic uint64_t evictions;
    _Atomic uint64_t mailbox_round_trips;
    _Atomic uint64_t revocations;
    _Atomic uint64_t consistent_retries; /* seqlock.c: reads read again */
    _Atomic uint64_t consistent_busy;    /* ... that gave up: HMAF_EBUSY */
};

/* Evicted regions, imports released, whose holds the agent has not had
 * back yet: they ride on the next REGISTERs (regions.c), oldest first. */
struct hmaf__give_queue {
    struct hmaf__region *head, *tail; /* by next_victim */
    uint64_t queued;  /* regions ever queued */
    uint64_t taken;   /* regions ever taken off the head */
    uint64_t waiting; /* `queued` at the watch thread's last turn: those
                         still here then are given back at its next */
};

/* The session's watch thread (watch.c). */
struct hmaf__watch {
    pthread_t thread;
    int running;
    sem_t ready;        /* the thread has its reader slot */
    int wake_fd;        /* eventfd: the session died, look now */
    uint64_t period_ns; /* the host's lease: look at least this often */
};

/* The host's rings of this session (notify.c): the mailbox header's count
 * and value; the count at the last take is ours. */
struct hmaf__ring {
    pthread_mutex_t lock;     /* a take; the fd's creation */
    _Atomic int fd;           /* eventfd: rings not taken; -1 until asked */
    _Atomic uint64_t taken;   /* the header's count at the last take */
    struct hmaf__spin_budget spin; /* how long a ring_wait polls first */
};
struct hmaf__session_heap;

struct hmaf_session {
    /* Read by every transfer: one cache line at the front (the session is
     * allocated aligned), so that a small read after a system call finds
     * them in as few lines as possible: this one, and the region cache's
     * current set. */
    _Atomic int dead;               /* sticky: the host is gone, or the
                                       session is being destroyed; data
                                       steps and mailbox I/O look at it
                                       inside their read-side section */
    _Atomic uint64_t next_check_ns; /* when the epoch is due for a look */
    uint64_t check_interval_ns;     /* min(ours, the host's lease) */
    struct hmaf_engine_ep *ep;
    int (*move_one)(struct hmaf_engine_ep *ep, enum hmaf_xfer_op op,
                    const struct hmaf_xfer *x);
    uint64_t move_one_max;          /* bytes move_one takes: the lesser
                                       of HMAF_MOVE_ONE_MAX and
                                       limits.max_transfer */
    uint64_t readers_id;            /* cache.readers.id, copied here */
    int (*post)(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch);
    struct hmaf_engine_limits limits;
    struct hmaf__regcache cache;    /* its own hot fields come first */

    hmaf_session_params_t params;
    const struct hmaf_engine_ops *ops;
    struct hmaf_engine_ctx *ctx;
    struct hmaf_channel channel;
    struct hmaf_engine_rmem *mbox_rmem;
    struct hmaf__mbox_client mbox;
    uint64_t session_id;
    pthread_mutex_t epoch_lock;   /* one thread applies a revocation */
    uint64_t epoch_seen;          /* written under epoch_lock; read
                                     without it by carried looks
                                     (datapath.c), atomically */
    _Atomic uint64_t map_resident; /* bytes mirrored by all its mappings
                                      and reserved by their faults */
    pthread_mutex_t maps_lock;     /* the list below; taken before any
                                      mapping's own lock */
    struct hmaf_map *maps;         /* its mappings (map/) */
    pthread_mutex_t queues_lock;   /* engine ASYNC: a reader slot's queue
                                      of requests is replaced, or looked
                                      through by the drain (request.c) */
    pthread_mutex_t give_lock;     /* the queue below */
    struct hmaf__give_queue to_give; /* evicted regions whose holds go
                                        back to the agent (regions.c) */
    struct hmaf__watch watch;
    struct hmaf__ring ring;
    _Atomic(struct hmaf__session_heap *) heap; /* heap.c, on first use */
    struct hmaf_session *next_live; /* forks.c's list */
    int orphan; /* a forked child's copy: forks.c */
    int native_atomics; /* the engine performs atomics (atomic.c) */
    struct hmaf_session_counters c;
};

#define hmaf__count(s, field, n)                                               \
    atomic_fetch_add_explicit(&(s)->c.field, (n), memory_order_relaxed)

/* Record a connection error as the session's permanent state. */
int hmaf__session_fail(struct hmaf_session *s, int ret);
/* Mark the session dead with err (first caller wins) and wake its watch
 * thread, which fences it. Returns 1 for the first caller. */
int hmaf__session_kill(struct hmaf_session *s, int err);
/* The synchronous data path behind read/write/readv/writev. */
int hmaf__session_transfer(struct hmaf_session *s, enum hmaf_xfer_op op,
                           const hmaf_seg_t *segs, size_t nsegs);
/* A mailbox call on behalf of the API: counts it, notes a dead host. */
int hmaf__session_call(struct hmaf_session *s, uint8_t op, const void *req,
                       uint16_t req_len, void *resp, uint16_t resp_cap,
                       uint16_t *resp_len_out);

/* regions.c: the session's regions. */
/* The region cache, with the release that gives regions back. */
int hmaf__regions_init(struct hmaf_session *s);
/* Ask the agent for the exposure containing addr and cache it. */
int hmaf__session_register(struct hmaf_session *s, uint64_t addr,
                           uint64_t len);
/* Due for a look at the revocation epoch? Cheap: the coarse clock. */
static inline int hmaf__session_epoch_due(struct hmaf_session *s, uint64_t now)
{
    return now >= atomic_load_explicit(&s->next_check_ns, memory_order_relaxed);
}
/* Apply a revocation the host announced, if a look is due (or force).
 * Never from inside a read-side section. */
int hmaf__session_check_epoch(struct hmaf_session *s, int force);
/* Give back regions a revocation or the fence dropped (linked by
 * next_victim): DEREGISTER them, in batches, while the session lives,
 * then free them. Their imports must be released already. */
void hmaf__session_give_back(struct hmaf_session *s,
                             struct hmaf__region *list);
/* Release the imports of a list of dropped regions. */
void hmaf__session_release_imports(struct hmaf__region *list);
/* The watch thread, once a turn: DEREGISTER the evicted regions that
 * waited a whole turn for a REGISTER to carry them. */
void hmaf__session_give_back_waiting(struct hmaf_session *s);
/* Free the evicted regions not given back yet, without a word to the
 * host: the session is over, and its end returns every hold. */
void hmaf__session_drop_evicted(struct hmaf_session *s);

/* Largest params.max_inflight: handles carry a 16-bit request index. */
#define HMAF_MAX_INFLIGHT 65536

/* atomic.c: a posted batch of atomics (atomic.h) behind a handle. test:
 * one look (HMAF_EINPROGRESS, or the batch's status once it is over);
 * wait: until it is over. Once over, the batch is freed. drop: its
 * handle is gone (the thread's queue went): give its slot back, free it. */
struct hmaf__atomic_post;
int hmaf__atomic_post_test(struct hmaf_session *s,
                           struct hmaf__atomic_post *p);
int hmaf__atomic_post_wait(struct hmaf_session *s,
                           struct hmaf__atomic_post *p);
void hmaf__atomic_post_drop(struct hmaf_session *s,
                            struct hmaf__atomic_post *p);
/* request.c: a handle for a posted batch of atomics, completed by
 * hmaf_request_test()/hmaf_request_wait(). 0, or as a post. */
int hmaf__request_add_atomic(struct hmaf_session *s,
                             struct hmaf__atomic_post *p, hmaf_req_t *req_out);

/* request.c: free every thread's queue of posted requests. */
void hmaf__request_queues_free(struct hmaf_session *s);
/* request.c, engine ASYNC: the readers' drain (readers.h): progress the
 * engine until every request in flight when it was called is done. */
void hmaf__request_drain(void *session);

/* watch.c: the watch thread. start: 0 or HMAF_ENOMEM. wake: the session
 * died (any thread). stop: after the session was marked dead, wait until
 * the thread has fenced the session and ended. */
int hmaf__watch_start(struct hmaf_session *s, uint32_t lease_us);
void hmaf__watch_wake(struct hmaf_session *s);
void hmaf__watch_stop(struct hmaf_session *s);

/* notify.c: the rings' state (init before the watch thread starts, fini
 * after it stopped); look: the watch thread makes the ring fd readable
 * when the host rang and the rings are not taken. */
void hmaf__ring_init(struct hmaf_session *s);
void hmaf__ring_fini(struct hmaf_session *s);
void hmaf__ring_look(struct hmaf_session *s);
/* heap.c: the host's heap. idle: the watch thread, once a turn: give
 * back cached blocks and pending frees of a session that made no heap call
 * since its last turn. close: give back everything, before the session
 * dies. free: after the watch thread ended. */
void hmaf__session_heap_idle(struct hmaf_session *s);
void hmaf__session_heap_close(struct hmaf_session *s);
void hmaf__session_heap_free(struct hmaf_session *s);

/* forks.c: every live session, so that a forked child's copies are
 * orphaned (dead, and freed without a word to host or engine). */
void hmaf__sessions_add(struct hmaf_session *s);
void hmaf__sessions_remove(struct hmaf_session *s);

/* Dpu-side handshake on a connected channel. */
int hmaf__bootstrap_dpu(struct hmaf_session *s, int timeout_ms,
                        struct hmaf_welcome *welcome_out);

#endif
