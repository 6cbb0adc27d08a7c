/* The host agent, shared by the host side's source files. */
#ifndef HMAF_HOST_AGENT_INT_H
#define HMAF_HOST_AGENT_INT_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <hmaf/host.h>
#include <hmaf/notify.h>

#include "channel/channel.h"
#include "engine/engine.h"
#include "host/exposure.h"
#include "host/holds.h"
#include "host/roots.h"
#include "proto/handshake.h"
#include "util/log.h"
#include "util/spin.h"

/* Connections waiting for their HELLO, at most (host.h says what happens
 * beyond); and new connections taken per turn of the loop, so a flood of
 * them cannot keep the agent from serving mailboxes. */
#define HMAF_AGENT_PENDING_MAX 1024
#define HMAF_AGENT_ACCEPTS_PER_TURN 64
/* A waiting connection is safe from being dropped for newcomers this long
 * (a dpu side late with its HELLO by a scheduling hiccup is not lost). */
#define HMAF_AGENT_PENDING_GRACE_NS 200000000ull

/* A session's holds (holds.h). Once the session is closed they are an
 * orphan, which the agent gives back a bounded number per turn. */
struct agent_holds {
    struct hmaf__holds h;
    struct agent_holds *next_orphan;
};

/* One dpu side being served. */
struct agent_session {
    uint64_t id;
    struct hmaf_channel channel;
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_mem *mbox_mem;
    uint8_t *mbox;          /* the mailbox: pages of its own (mmap) */
    size_t mbox_len;        /* what the dpu side may address */
    size_t mbox_map_len;    /* mbox_len in whole pages */
    uint32_t nslots;
    uint32_t *served_seq;   /* per slot, private: the dpu side can't fake it */
    uint64_t must_ack;      /* revocation epoch it has to acknowledge */
    struct agent_holds *holds; /* exposures it registered, and how often */
    uint64_t settled_ack;      /* holds older than this epoch ended */
};

/* Notifications dpu sides sent, not taken yet (notify.c, notify.h): one
 * entry per session and tag, oldest first. Its lock is taken inside the
 * agent lock (serving) or alone (delivering, taking), never around it. */
struct agent_notify {
    pthread_mutex_t lock;     /* everything below */
    hmaf_notification_t *q;
    size_t n, cap;
    _Atomic size_t waiting;   /* n, for a look without the lock */
    hmaf_notify_fn fn;
    void *arg;
    int fd;                   /* eventfd, -1 until asked for */
    int fd_set;               /* fd readable now */
};

/* A connection whose HELLO is still arriving. */
struct agent_pending {
    struct hmaf_channel channel;
    uint8_t buf[HMAF_MSG_MAX];
    size_t got;
    uint64_t accepted_ns;
    uint64_t deadline_ns;
};

/* A session the agent closed while its dpu side may still be running
 * (cma): its mailbox pages stay reserved, inaccessible, so a late write
 * fails instead of landing in reused memory, until the dpu side closes
 * its end of the half-closed channel to say it stopped. */
struct agent_grave {
    struct hmaf_channel channel;
    void *mbox;
    size_t len;
};

struct hmaf__heap;

struct hmaf_agent {
    hmaf_agent_params_t params;
    char token[HMAF_TOKEN_MAX + 1];
    const struct hmaf_engine_ops *ops;
    struct hmaf_engine_ctx *ctx;
    uint32_t max_blob; /* the engine's limit, at most HMAF_BLOB_MAX */

    pthread_mutex_t lock; /* everything below */
    struct hmaf_listener *listener;
    struct hmaf__exposures exposures;
    struct hmaf__roots roots;
    struct hmaf__heap *heap;         /* hmaf_agent_heap_create's, or NULL */
    struct agent_session **sessions; /* params.max_sessions slots */
    struct agent_pending *pending;   /* grows up to PENDING_MAX */
    size_t npending;
    size_t pending_cap;
    struct agent_grave *graves;      /* params.max_sessions at most */
    size_t ngraves;
    struct agent_holds *orphans;     /* closed sessions' holds, still to
                                        give back */
    uint64_t listen_paused_until_ns; /* out of fds: accept later */
    uint64_t pending_grace_ns; /* HMAF_AGENT_PENDING_GRACE_NS (the fuzzer
                                  stretches it, to be immune to a slow poll) */
    struct hmaf__log_limit refusal_log; /* peers can make us refuse a lot */
    struct hmaf__log_limit fds_log;
    struct pollfd *pfds;             /* the loop's wait set */
    struct agent_fd *pmap;
    size_t poll_cap;
    uint64_t next_session_id;
    uint64_t epoch;
    hmaf_agent_stats_t stats;
    struct agent_notify notify; /* its own lock */

    pthread_t thread;
    int has_thread;
    _Atomic int stopping;
    uint64_t last_activity_ns; /* agent thread only, from here on */
    uint64_t next_fd_check_ns;
    uint64_t sleep_ns;
    struct hmaf__spin_budget spin; /* learnt from the gaps between requests */
    uint64_t spin_ns;              /* this gap's: then yield between looks */
};

/* What each entry of the loop's wait set stands for. */
enum agent_fd_kind { FD_LISTENER, FD_PENDING, FD_SESSION, FD_GRAVE, FD_ENGINE };

struct agent_fd {
    enum agent_fd_kind kind;
    size_t index;
    uint64_t id; /* a session's: it may be closed while the loop waits */
};

/* session.c of the host side */
int hmaf__agent_handle_hello(struct hmaf_agent *a, struct hmaf_channel *ch,
                             const uint8_t *msg, size_t len);
/* Header check shared by accept and dial: the body length to expect, or a
 * refusal code. */
int hmaf__agent_hello_body_len(const struct hmaf_msg_hdr *hdr);
void hmaf__agent_refuse(struct hmaf_agent *a, struct hmaf_channel *ch,
                        int why);
/* Close a session. peer_stopped: its dpu side said it stopped (closed its
 * end) or died, so its mailbox may go back to the allocator; otherwise
 * the dpu side is told and, unless the engine enforces revocation, the
 * mailbox waits in a grave until it says so. */
void hmaf__agent_session_close(struct hmaf_agent *a, size_t index,
                               int peer_stopped);
/* A grave's dpu side closed its end: free the mailbox for good. */
void hmaf__agent_grave_free(struct hmaf_agent *a, size_t index);
/* At agent teardown: graves whose dpu sides never said they stopped keep
 * their reservation (address space only) for the process's lifetime. */
void hmaf__agent_graves_fini(struct hmaf_agent *a);
/* holds.c. Count one more hold of an answer given in `epoch`; 1 when it
 * is a new entry (the exposure gains a holder), 0 when not, HMAF_ENOMEM. */
int hmaf__agent_hold(struct agent_session *s, uint64_t exposure_id,
                     uint64_t epoch);
/* Give one hold back; 1 when the exposure loses a holder (the caller
 * releases it), 0 when not, HMAF_ENOENT when there was no such hold. */
int hmaf__agent_unhold(struct agent_session *s, uint64_t exposure_id,
                       uint64_t epoch);
/* A DEREGISTER: give one hold back, and release the exposure when it
 * loses a holder. 0 or HMAF_ENOENT; O(1). */
int hmaf__agent_drop_hold(struct hmaf_agent *a, struct agent_session *s,
                          uint64_t exposure_id, uint64_t epoch);
/* Ended holds one turn of the agent may still give back, and how many it
 * did. */
struct agent_give_back {
    size_t left;
    uint64_t until; /* 0 until the first one is given back */
    size_t given;
};
void hmaf__agent_give_back_start(struct agent_give_back *gb);
/* Closed sessions' holds first, while the turn allows. */
void hmaf__agent_give_back_orphans(struct hmaf_agent *a,
                                   struct agent_give_back *gb);
/* End the holds the session's acknowledged revocation epoch released
 * (O(1)) and give back its ended holds while the turn allows. */
void hmaf__agent_settle(struct hmaf_agent *a, struct agent_session *s,
                        struct agent_give_back *gb);
/* The session confirmed a revocation of this epoch: it dropped every
 * region answered before, so those holds end. O(1). */
void hmaf__agent_end_holds_before(struct agent_session *s, uint64_t epoch);
/* Session end: every hold ends and the lot becomes an orphan; O(1). */
void hmaf__agent_orphan_holds(struct hmaf_agent *a, struct agent_session *s);
/* Agent teardown: free the orphans without giving back (every exposure
 * and its registration goes anyway). */
void hmaf__agent_orphans_fini(struct hmaf_agent *a);
/* Drop one holder of e; deregisters when it was the last. */
void hmaf__agent_release_exposure(struct hmaf__exposure *e);

/* serve.c: answer every pending mailbox request, after giving back a
 * bounded number of ended holds; returns how many requests, plus one when
 * it gave holds back (more may be waiting: keep turning). */
int hmaf__agent_serve_all(struct hmaf_agent *a);
/* serve.c: the FREEs a session that stopped left unserved in its mailbox
 * (a destroyed session posts its last ones without waiting). */
void hmaf__agent_serve_last_frees(struct hmaf_agent *a,
                                  struct agent_session *s);
/* serve_atomic.c: an ATOMIC request's ops, performed in order; its answer
 * into resp (HMAF_MBOX_RESP_MAX bytes). 0, or HMAF_EPROTO for a malformed
 * request (then nothing was performed). */
int hmaf__agent_serve_atomic(struct hmaf_agent *a, const uint8_t *req,
                             uint16_t req_len, uint8_t *resp,
                             uint16_t *resp_len_out);

/* notify.c. init: before anything can fail (agent_fini undoes it). serve:
 * a NOTIFY request, agent lock held. deliver: hand waiting entries to the
 * callback, agent lock NOT held (the agent's thread, hmaf_agent_poll). */
void hmaf__agent_notify_init(struct hmaf_agent *a);
void hmaf__agent_notify_fini(struct hmaf_agent *a);
int hmaf__agent_serve_notify(struct hmaf_agent *a, struct agent_session *s,
                             const uint8_t *payload, size_t len);
void hmaf__agent_notify_deliver(struct hmaf_agent *a);

/* serve_heap.c: the mailbox's ALLOC and FREE (proto/heap.h). */
int hmaf__agent_serve_alloc(struct hmaf_agent *a, struct agent_session *s,
                            const uint8_t *req, uint16_t len, uint8_t *resp,
                            uint16_t *resp_len_out);
int hmaf__agent_serve_free(struct hmaf_agent *a, struct agent_session *s,
                           const uint8_t *req, uint16_t len, uint8_t *resp,
                           uint16_t *resp_len_out);

/* loop.c: one round of channel events (accept, hello, peer death). */
int hmaf__agent_poll_channels(struct hmaf_agent *a, int64_t timeout_ns);
/* The engine's host-side share of the transfers (ops->host_progress):
 * how much it did, errors counting as nothing. Any thread, no lock. */
int hmaf__agent_engine_progress(struct hmaf_agent *a);
/* The loop's wait set, sized for every fd the agent can have. */
int hmaf__agent_poll_alloc(struct hmaf_agent *a);
int hmaf__agent_start_thread(struct hmaf_agent *a);
void hmaf__agent_stop_thread(struct hmaf_agent *a);

#endif
