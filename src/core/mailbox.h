/*
 * The dpu side of the mailbox: request/response calls to the host agent,
 * made with engine reads and writes only (layout: proto/mailbox.h).
 * Threads share the slots; each call holds one slot from request to
 * response, so as many calls as there are slots are in flight at once.
 * A call waiting for its answer spins, then yields, then sleeps: the spin
 * budget is the session's, learnt from its recent calls (util/spin.h).
 *
 * Every engine operation on the mailbox runs inside a read-side section
 * of the session's readers and only while the session is not dead, so
 * once the session is marked dead and a grace period has passed, no
 * thread touches the host's mailbox memory again (the session's fence,
 * core/watch.c).
 */
#ifndef HMAF_CORE_MAILBOX_H
#define HMAF_CORE_MAILBOX_H

#include <pthread.h>
#include <stdint.h>

#include "channel/channel.h"
#include "core/readers.h"
#include "engine/engine.h"
#include "util/spin.h"

struct hmaf__mbox_client {
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_rmem *rmem; /* the imported mailbox region */
    struct hmaf_channel *channel;  /* watched for peer death while waiting */
    struct hmaf__readers *readers; /* the session's: sections around I/O */
    _Atomic int *dead;             /* the session's: no I/O once set */
    uint64_t base;
    uint32_t nslots;
    int timeout_ms;
    struct hmaf__spin_budget spin; /* how long a wait for an answer spins */
    pthread_mutex_t lock;
    pthread_cond_t slot_freed;
    uint32_t held;  /* slots posted requests hold (at most nslots / 2) */
    uint8_t *busy;  /* per slot */
    uint8_t *unsure; /* per slot: its last request's answer may still come
                        (it was given back unanswered: a timeout, a posted
                        request left behind) */
    uint32_t *seq;  /* per slot: last sequence number used */
};

struct hmaf__mbox_client_params {
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_rmem *rmem;
    struct hmaf_channel *channel;
    struct hmaf__readers *readers;
    _Atomic int *dead;
    uint32_t nslots;
    int timeout_ms;
};

int hmaf__mbox_client_init(struct hmaf__mbox_client *mb,
                           const struct hmaf__mbox_client_params *p);
void hmaf__mbox_client_fini(struct hmaf__mbox_client *mb);

/*
 * One request/response. resp may be NULL when none is expected. Returns the
 * agent's status (0 or a negative HMAF code), or a transport error
 * (HMAF_ECONNRESET, HMAF_ETIMEDOUT, HMAF_EPROTO).
 */
int hmaf__mbox_call(struct hmaf__mbox_client *mb, uint8_t op,
                    const void *req, uint16_t req_len, void *resp,
                    uint16_t resp_cap, uint16_t *resp_len_out);

/*
 * Requests sent without waiting for the answer (atomic.h's posted
 * batches). A posted request holds its slot from hold to release; the
 * slot may carry several requests one after another. Posted requests hold
 * at most half the slots, so blocking calls always find one in the end.
 */
struct hmaf__mbox_pending {
    uint32_t slot;
    uint32_t seq;      /* of the request in flight */
    uint64_t start_ns; /* when it was sent */
    unsigned polls;
    int rang;          /* the agent's doorbell rung for it */
};

/* A slot for posted requests: 0, or HMAF_EBUSY when they hold their
 * share already (never waits). */
int hmaf__mbox_hold_slot(struct hmaf__mbox_client *mb, uint32_t *slot_out);
void hmaf__mbox_release_slot(struct hmaf__mbox_client *mb, uint32_t slot);
/* Send one request in a held slot. 0 or a transport error. */
int hmaf__mbox_send(struct hmaf__mbox_client *mb, uint32_t slot, uint8_t op,
                    const void *req, uint16_t req_len,
                    struct hmaf__mbox_pending *p);
/* One look at its answer: HMAF_EINPROGRESS while there is none; else as
 * hmaf__mbox_call() (HMAF_ETIMEDOUT once timeout_ms passed since the
 * send). */
int hmaf__mbox_poll(struct hmaf__mbox_client *mb,
                    struct hmaf__mbox_pending *p, void *resp,
                    uint16_t resp_cap, uint16_t *resp_len_out);

/* Read the host's revocation epoch; write our acknowledgement of one. */
int hmaf__mbox_read_epoch(struct hmaf__mbox_client *mb, uint64_t *epoch_out);
int hmaf__mbox_ack_epoch(struct hmaf__mbox_client *mb, uint64_t epoch);
/* Read a word of the host-written header (HMAF_MBOX_HEADER_*). */
int hmaf__mbox_read_header(struct hmaf__mbox_client *mb, uint64_t offset,
                           uint64_t *v_out);

#endif
