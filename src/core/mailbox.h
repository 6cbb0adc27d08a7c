/*
 * The dpu side of the mailbox: request/response calls to the host agent,
 * made with engine reads and writes only (layout: proto/mailbox.h).
 * Threads share the slots; each call holds one slot from request to
 * response, so as many calls as there are slots are in flight at once.
 */
#ifndef HMAF_CORE_MAILBOX_H
#define HMAF_CORE_MAILBOX_H

#include <pthread.h>
#include <stdint.h>

#include "channel/channel.h"
#include "engine/engine.h"

struct hmaf__mbox_client {
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_rmem *rmem; /* the imported mailbox region */
    struct hmaf_channel *channel;  /* watched for peer death while waiting */
    uint64_t base;
    uint32_t nslots;
    int timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t slot_freed;
    uint8_t *busy;  /* per slot */
    uint32_t *seq;  /* per slot: last sequence number used */
};

int hmaf__mbox_client_init(struct hmaf__mbox_client *mb,
                           struct hmaf_engine_ep *ep,
                           struct hmaf_engine_rmem *rmem,
                           struct hmaf_channel *channel, uint32_t nslots,
                           int timeout_ms);
void hmaf__mbox_client_fini(struct hmaf__mbox_client *mb);

/*
 * One request/response. resp may be NULL when none is expected. Returns the
 * agent's status (0 or a negative HMAF code), or a transport error
 * (HMAF_ECONNRESET, HMAF_ETIMEDOUT, HMAF_EPROTO).
 */
int hmaf__mbox_call(struct hmaf__mbox_client *mb, uint8_t op,
                    const void *req, uint16_t req_len, void *resp,
                    uint16_t resp_cap, uint16_t *resp_len_out);

/* Read the host's revocation epoch; write our acknowledgement of one. */
int hmaf__mbox_read_epoch(struct hmaf__mbox_client *mb, uint64_t *epoch_out);
int hmaf__mbox_ack_epoch(struct hmaf__mbox_client *mb, uint64_t epoch);

#endif
