#include "core/mailbox.h"

#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/wire.h"

/* Look at the channel and the clock once per this many polls. */
#define POLLS_PER_LIVENESS_CHECK 64

/* One engine operation on the mailbox, inside a read-side section and
 * only while the session lives: the session's fence waits for it. */
static int mbox_xfer(struct hmaf__mbox_client *mb, enum hmaf_xfer_op op,
                     void *local, uint64_t offset, size_t len)
{
    struct hmaf_xfer x = {
        .rmem = mb->rmem,
        .local = local,
        .remote_addr = mb->base + offset,
        .len = len,
    };
    struct hmaf_xfer_batch batch = {
        .op = op, .xfers = &x, .count = 1, .flags = HMAF_BATCH_CONTROL};
    struct hmaf__reader *reader;
    int ret = hmaf__reader_get(mb->readers, &reader);

    if (ret < 0) {
        return ret;
    }
    hmaf__reader_enter(reader);
    ret = atomic_load_explicit(mb->dead, memory_order_relaxed);
    if (ret == 0) {
        ret = hmaf__engine_run(mb->ep, &batch);
    }
    hmaf__reader_exit(reader);
    /* The mailbox stays mapped and registered while the agent serves the
     * session: when it is not, the agent closed the session. */
    return ret == HMAF_EFAULT ? HMAF_ECONNRESET : ret;
}

static int mbox_write_u64(struct hmaf__mbox_client *mb, uint64_t offset,
                          uint64_t v)
{
    uint8_t buf[8];
    struct hmaf_wire w = hmaf__wire(buf, sizeof(buf));

    hmaf__wire_put_u64(&w, v);
    return mbox_xfer(mb, HMAF_XFER_WRITE, buf, offset, sizeof(buf));
}

static int mbox_read_u64(struct hmaf__mbox_client *mb, uint64_t offset,
                         uint64_t *v_out)
{
    uint8_t buf[8];
    struct hmaf_wire w = hmaf__wire(buf, sizeof(buf));
    int ret = mbox_xfer(mb, HMAF_XFER_READ, buf, offset, sizeof(buf));

    *v_out = hmaf__wire_get_u64(&w);
    return ret;
}

int hmaf__mbox_client_init(struct hmaf__mbox_client *mb,
                           const struct hmaf__mbox_client_params *p)
{
    memset(mb, 0, sizeof(*mb));
    mb->busy = calloc(p->nslots, sizeof(*mb->busy));
    mb->seq = calloc(p->nslots, sizeof(*mb->seq));
    if (mb->busy == NULL || mb->seq == NULL) {
        free(mb->busy);
        free(mb->seq);
        return HMAF_ENOMEM;
    }
    mb->ep = p->ep;
    mb->rmem = p->rmem;
    mb->channel = p->channel;
    mb->readers = p->readers;
    mb->dead = p->dead;
    mb->base = p->rmem->addr;
    mb->nslots = p->nslots;
    mb->timeout_ms = p->timeout_ms;
    pthread_mutex_init(&mb->lock, NULL);
    pthread_cond_init(&mb->slot_freed, NULL);
    return 0;
}

void hmaf__mbox_client_fini(struct hmaf__mbox_client *mb)
{
    pthread_cond_destroy(&mb->slot_freed);
    pthread_mutex_destroy(&mb->lock);
    free(mb->busy);
    free(mb->seq);
}

static uint32_t take_slot(struct hmaf__mbox_client *mb, uint32_t *seq_out)
{
    uint32_t slot;

    pthread_mutex_lock(&mb->lock);
    for (;;) {
        for (slot = 0; slot < mb->nslots && mb->busy[slot]; slot++) {
        }
        if (slot < mb->nslots) {
            break;
        }
        pthread_cond_wait(&mb->slot_freed, &mb->lock);
    }
    mb->busy[slot] = 1;
    /* Sequence numbers skip 0 so a zeroed slot never looks answered. */
    mb->seq[slot] = mb->seq[slot] + 1 == 0 ? 1 : mb->seq[slot] + 1;
    *seq_out = mb->seq[slot];
    pthread_mutex_unlock(&mb->lock);
    return slot;
}

static void give_slot(struct hmaf__mbox_client *mb, uint32_t slot)
{
    pthread_mutex_lock(&mb->lock);
    mb->busy[slot] = 0;
    pthread_cond_signal(&mb->slot_freed);
    pthread_mutex_unlock(&mb->lock);
}

static int send_request(struct hmaf__mbox_client *mb, uint32_t slot,
                        uint32_t seq, uint8_t op, const void *req,
                        uint16_t req_len)
{
    uint64_t at = hmaf__mbox_slot_offset(slot);
    int ret = 0;

    /* Payload first and completed, then the word that publishes it. */
    if (req_len > 0) {
        ret = mbox_xfer(mb, HMAF_XFER_WRITE, (void *)req,
                        at + HMAF_MBOX_REQ_PAYLOAD, req_len);
    }
    if (ret == 0) {
        ret = mbox_write_u64(mb, at + HMAF_MBOX_REQ_WORD,
                             hmaf__mbox_req_word(seq, op, req_len));
    }
    return ret;
}

/* Poll the response word until it carries our sequence number. */
static int await_response(struct hmaf__mbox_client *mb, uint32_t slot,
                          uint32_t seq, uint64_t *word_out)
{
    uint64_t at = hmaf__mbox_slot_offset(slot) + HMAF_MBOX_RESP_WORD;
    uint64_t deadline = hmaf__deadline_ns(mb->timeout_ms);

    for (unsigned polls = 1;; polls++) {
        int ret = mbox_read_u64(mb, at, word_out);
        if (ret < 0) {
            return ret;
        }
        if (hmaf__mbox_word_seq(*word_out) == seq) {
            return 0;
        }
        if (polls % POLLS_PER_LIVENESS_CHECK == 0) {
            if (hmaf__channel_peer_gone(mb->channel)) {
                return HMAF_ECONNRESET;
            }
            if (hmaf__now_ns() >= deadline) {
                hmaf__log_warn("mailbox slot %u: no answer in %d ms", slot,
                               mb->timeout_ms);
                return HMAF_ETIMEDOUT;
            }
        }
    }
}

/* The agent may only answer with codes we know. */
static int checked_status(int status)
{
    if (status > 0 ||
        (status < 0 && strcmp(hmaf_err_name(status), "HMAF_UNKNOWN") == 0)) {
        return HMAF_EPROTO;
    }
    return status;
}

static int read_response(struct hmaf__mbox_client *mb, uint32_t slot,
                         uint64_t word, void *resp, uint16_t resp_cap,
                         uint16_t *resp_len_out)
{
    uint16_t len = hmaf__mbox_resp_len(word);
    int ret;

    if (len > resp_cap || len > HMAF_MBOX_RESP_MAX) {
        return HMAF_EPROTO;
    }
    if (len > 0) {
        ret = mbox_xfer(mb, HMAF_XFER_READ, resp,
                        hmaf__mbox_slot_offset(slot) + HMAF_MBOX_RESP_PAYLOAD,
                        len);
        if (ret < 0) {
            return ret;
        }
    }
    if (resp_len_out != NULL) {
        *resp_len_out = len;
    }
    return checked_status(hmaf__mbox_resp_status(word));
}

int hmaf__mbox_call(struct hmaf__mbox_client *mb, uint8_t op,
                    const void *req, uint16_t req_len, void *resp,
                    uint16_t resp_cap, uint16_t *resp_len_out)
{
    uint32_t seq;
    uint32_t slot = take_slot(mb, &seq);
    uint64_t word = 0;
    int ret;

    ret = send_request(mb, slot, seq, op, req, req_len);
    if (ret == 0) {
        ret = await_response(mb, slot, seq, &word);
    }
    if (ret == 0) {
        ret = read_response(mb, slot, word, resp, resp == NULL ? 0 : resp_cap,
                            resp_len_out);
    }
    give_slot(mb, slot);
    return ret;
}

int hmaf__mbox_read_epoch(struct hmaf__mbox_client *mb, uint64_t *epoch_out)
{
    return mbox_read_u64(mb, HMAF_MBOX_HEADER_EPOCH, epoch_out);
}

int hmaf__mbox_ack_epoch(struct hmaf__mbox_client *mb, uint64_t epoch)
{
    return mbox_write_u64(mb, HMAF_MBOX_ACK_OFFSET, epoch);
}
