#include "core/mailbox.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hmaf/error.h>

#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/wire.h"

/* Look at the channel once per this many polls (a system call). */
#define POLLS_PER_LIVENESS_CHECK 64

static struct hmaf_xfer mbox_piece(const struct hmaf__mbox_client *mb,
                                   void *local, uint64_t offset, size_t len)
{
    return (struct hmaf_xfer){
        .rmem = mb->rmem,
        .local = local,
        .remote_addr = mb->base + offset,
        .len = len,
    };
}

/* One engine post on the mailbox, inside a read-side section and only
 * while the session lives: the session's fence waits for it. */
static int mbox_post(struct hmaf__mbox_client *mb, enum hmaf_xfer_op op,
                     struct hmaf_xfer *xfers, uint32_t count)
{
    struct hmaf_xfer_batch batch = {
        .op = op, .xfers = xfers, .count = count, .flags = HMAF_BATCH_CONTROL};
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

static int mbox_xfer(struct hmaf__mbox_client *mb, enum hmaf_xfer_op op,
                     void *local, uint64_t offset, size_t len)
{
    struct hmaf_xfer x = mbox_piece(mb, local, offset, len);

    return mbox_post(mb, op, &x, 1);
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
    pthread_condattr_t attr;

    memset(mb, 0, sizeof(*mb));
    mb->busy = calloc(p->nslots, sizeof(*mb->busy));
    mb->seq = calloc(p->nslots, sizeof(*mb->seq));
    mb->unsure = calloc(p->nslots, sizeof(*mb->unsure));
    if (mb->busy == NULL || mb->seq == NULL || mb->unsure == NULL) {
        free(mb->busy);
        free(mb->seq);
        free(mb->unsure);
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
    hmaf__spin_budget_init(&mb->spin);
    pthread_mutex_init(&mb->lock, NULL);
    pthread_condattr_init(&attr);
    /* Waits for a slot end at a deadline on hmaf__now_ns's clock. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&mb->slot_freed, &attr);
    pthread_condattr_destroy(&attr);
    return 0;
}

void hmaf__mbox_client_fini(struct hmaf__mbox_client *mb)
{
    pthread_cond_destroy(&mb->slot_freed);
    pthread_mutex_destroy(&mb->lock);
    free(mb->busy);
    free(mb->seq);
    free(mb->unsure);
}

static uint32_t next_seq(struct hmaf__mbox_client *mb, uint32_t slot)
{
    /* Sequence numbers skip 0 so a zeroed slot never looks answered. */
    mb->seq[slot] = mb->seq[slot] + 1 == 0 ? 1 : mb->seq[slot] + 1;
    return mb->seq[slot];
}

/* A free slot, waiting for one until deadline_ns: with more threads
 * than slots and a host that stopped answering, each call still ends
 * within its own rpc_timeout_ms, not after those ahead of it. */
static int take_slot(struct hmaf__mbox_client *mb, uint64_t deadline_ns,
                     uint32_t *slot_out, uint32_t *seq_out)
{
    struct timespec until = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                             .tv_nsec = (long)(deadline_ns % 1000000000u)};
    uint32_t slot;
    int ret = 0;

    pthread_mutex_lock(&mb->lock);
    for (;;) {
        for (slot = 0; slot < mb->nslots && mb->busy[slot]; slot++) {
        }
        if (slot < mb->nslots || ret == ETIMEDOUT) {
            break;
        }
        ret = pthread_cond_timedwait(&mb->slot_freed, &mb->lock, &until);
    }
    if (slot < mb->nslots) {
        mb->busy[slot] = 1;
        *slot_out = slot;
        *seq_out = next_seq(mb, slot);
    }
    pthread_mutex_unlock(&mb->lock);
    return slot < mb->nslots ? 0 : HMAF_ETIMEDOUT;
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
    uint64_t payload_at = at + hmaf__mbox_req_payload_at(req_len);
    int ret = 0;

    mb->unsure[slot] = 1; /* until its answer is seen */
    if (req_len > 0 && (mb->ep->ctx->ops->flags & HMAF_ENGINE_ORDERED)) {
        /* One post: its writes land in order, the word last. */
        uint8_t buf[8];
        struct hmaf_wire w = hmaf__wire(buf, sizeof(buf));
        struct hmaf_xfer x[2] = {
            mbox_piece(mb, (void *)req, payload_at, req_len),
            mbox_piece(mb, buf, at + HMAF_MBOX_REQ_WORD, sizeof(buf))};
        hmaf__wire_put_u64(&w, hmaf__mbox_req_word(seq, op, req_len));
        return mbox_post(mb, HMAF_XFER_WRITE, x, 2);
    }
    /* Payload first and completed, then the word that publishes it. */
    if (req_len > 0) {
        ret = mbox_xfer(mb, HMAF_XFER_WRITE, (void *)req, payload_at,
                        req_len);
    }
    if (ret == 0) {
        ret = mbox_write_u64(mb, at + HMAF_MBOX_REQ_WORD,
                             hmaf__mbox_req_word(seq, op, req_len));
    }
    return ret;
}

/* How a wait for an answer gives the CPU away once its spin budget is
 * spent: it yields between polls, so an agent that shares our CPU answers
 * at once; after WAIT_YIELD_NS, a time no shared CPU explains (the agent
 * is busy, or asleep and woken by the doorbell below), it sleeps between polls in steps that double up to
 * WAIT_SLEEP_MAX_NS, so that even a peer of lower priority, or one that a
 * yield does not make room for, gets to run. */
#define WAIT_YIELD_NS 1000000ull
#define WAIT_SLEEP_MIN_NS 10000ull
#define WAIT_SLEEP_MAX_NS 1000000ull

/* A posted request's answer is looked at now and then, not waited for:
 * ring the doorbell once it is this late. */
#define POSTED_DOORBELL_NS 50000ull

struct wait {
    uint64_t start_ns;
    uint64_t spin_ns; /* from the budget */
    uint64_t deadline_ns;
    uint64_t sleep_ns; /* the next sleep */
    int rang;          /* the doorbell */
};

/* The agent's thread sleeps when its sessions are quiet, woken by channel
 * events only (host/loop.c): a request that found it asleep rings its
 * doorbell — one nudge on the channel, which the agent takes and then
 * serves the mailboxes. Once per request, and only past its spin budget,
 * so a busy agent is not nudged. A channel without nudges (comch) has no
 * doorbell: its agent looks at the mailboxes every millisecond. */
static void ring_doorbell(struct hmaf__mbox_client *mb, int *rang)
{
    if (!*rang) {
        *rang = 1;
        hmaf__channel_nudge(mb->channel);
    }
}

/* Between two polls: spin on, yield or sleep, as long as the wait has
 * lasted says. */
static void give_way(struct hmaf__mbox_client *mb, struct wait *w,
                     uint64_t now)
{
    uint64_t waited = now - w->start_ns;
    uint64_t left = w->deadline_ns - now;

    if (waited < w->spin_ns) {
        return;
    }
    ring_doorbell(mb, &w->rang);
    if (waited < WAIT_YIELD_NS) {
        sched_yield();
        return;
    }
    nanosleep(&(struct timespec){0, (long)HMAF_MIN(w->sleep_ns, left)}, NULL);
    w->sleep_ns = HMAF_MIN(w->sleep_ns * 2, WAIT_SLEEP_MAX_NS);
}

/* Poll the response word until it carries our sequence number. The wait
 * teaches the session's spin budget, unless it lasted into sleeping: then
 * the agent was asleep or busy, which says nothing about CPUs. */
static int await_response(struct hmaf__mbox_client *mb, uint32_t slot,
                          uint32_t seq, uint64_t deadline_ns,
                          uint64_t *word_out)
{
    uint64_t at = hmaf__mbox_slot_offset(slot) + HMAF_MBOX_RESP_WORD;
    struct wait w = {.start_ns = hmaf__now_ns(),
                     .deadline_ns = deadline_ns,
                     .spin_ns = hmaf__spin_budget_take(&mb->spin),
                     .sleep_ns = WAIT_SLEEP_MIN_NS};

    if (w.spin_ns == 0) {
        /* An agent on our CPU cannot have answered yet: let it. */
        sched_yield();
    }
    for (unsigned polls = 1;; polls++) {
        int ret = mbox_read_u64(mb, at, word_out);
        uint64_t now = hmaf__now_ns();
        uint64_t waited = now - w.start_ns;
        if (ret < 0) {
            return ret;
        }
        if (hmaf__mbox_word_seq(*word_out) == seq) {
            mb->unsure[slot] = 0;
            if (waited < WAIT_YIELD_NS) {
                hmaf__spin_budget_learn(&mb->spin, w.spin_ns, waited);
            }
            return 0;
        }
        if ((polls % POLLS_PER_LIVENESS_CHECK == 0 ||
             waited >= WAIT_YIELD_NS) &&
            hmaf__channel_peer_gone(mb->channel)) {
            return HMAF_ECONNRESET;
        }
        if (now >= w.deadline_ns) {
            hmaf__log_warn("mailbox slot %u: no answer in %d ms", slot,
                           mb->timeout_ms);
            return HMAF_ETIMEDOUT;
        }
        give_way(mb, &w, now);
    }
}

/* The agent may only answer with codes we know; never "in progress",
 * which hmaf__mbox_poll() says while there is no answer: taken from the
 * agent, it would make a posted request wait for ever. */
static int checked_status(int status)
{
    if (status > 0 || status == HMAF_EINPROGRESS ||
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

/* A long request is written where answers go (proto/mailbox.h): in a
 * slot whose last request may still be answered, that late answer could
 * overwrite it before the agent reads it. A PING answered first proves
 * the agent is past the old request (it serves a slot's requests one
 * after the other). Only after a timeout or a request left behind. */
static int settle_for_long(struct hmaf__mbox_client *mb, uint32_t slot,
                           uint16_t req_len, uint64_t deadline_ns)
{
    uint64_t word;
    uint32_t seq;
    int ret;

    if (req_len <= HMAF_MBOX_REQ_MAX || !mb->unsure[slot]) {
        return 0;
    }
    pthread_mutex_lock(&mb->lock);
    seq = next_seq(mb, slot);
    pthread_mutex_unlock(&mb->lock);
    ret = send_request(mb, slot, seq, HMAF_OP_PING, NULL, 0);
    return ret == 0 ? await_response(mb, slot, seq, deadline_ns, &word) : ret;
}

int hmaf__mbox_call(struct hmaf__mbox_client *mb, uint8_t op,
                    const void *req, uint16_t req_len, void *resp,
                    uint16_t resp_cap, uint16_t *resp_len_out)
{
    /* One budget for the whole call: a slot, then the answer. */
    uint64_t deadline_ns = hmaf__now_ns() + (uint64_t)mb->timeout_ms * 1000000u;
    uint32_t seq = 0;
    uint32_t slot = 0;
    uint64_t word = 0;
    int ret;

    if (req_len > HMAF_MBOX_REQ_LONG_MAX) {
        return HMAF_EINVAL;
    }
    ret = take_slot(mb, deadline_ns, &slot, &seq);
    if (ret < 0) {
        hmaf__log_warn("mailbox: no free slot in %d ms", mb->timeout_ms);
        return ret;
    }
    ret = settle_for_long(mb, slot, req_len, deadline_ns);
    if (ret == 0 && req_len > HMAF_MBOX_REQ_MAX) {
        pthread_mutex_lock(&mb->lock);
        seq = next_seq(mb, slot); /* the PING may have used it */
        pthread_mutex_unlock(&mb->lock);
    }
    if (ret == 0) {
        ret = send_request(mb, slot, seq, op, req, req_len);
    }
    if (ret == 0) {
        ret = await_response(mb, slot, seq, deadline_ns, &word);
    }
    if (ret == 0) {
        ret = read_response(mb, slot, word, resp, resp == NULL ? 0 : resp_cap,
                            resp_len_out);
    }
    give_slot(mb, slot);
    return ret;
}

int hmaf__mbox_hold_slot(struct hmaf__mbox_client *mb, uint32_t *slot_out)
{
    uint32_t slot = 0;
    int ret = HMAF_EBUSY;

    pthread_mutex_lock(&mb->lock);
    if (mb->held < mb->nslots / 2) {
        /* Not one whose old answer may still come: a held slot's sends
         * never wait (hmaf_session_destroy's last FREEs). */
        for (slot = 0; slot < mb->nslots &&
                       (mb->busy[slot] || mb->unsure[slot]);
             slot++) {
        }
        if (slot < mb->nslots) {
            mb->busy[slot] = 1;
            mb->held++;
            ret = 0;
        }
    }
    pthread_mutex_unlock(&mb->lock);
    *slot_out = slot;
    return ret;
}

void hmaf__mbox_release_slot(struct hmaf__mbox_client *mb, uint32_t slot)
{
    pthread_mutex_lock(&mb->lock);
    mb->held--;
    mb->busy[slot] = 0;
    pthread_cond_signal(&mb->slot_freed);
    pthread_mutex_unlock(&mb->lock);
}

int hmaf__mbox_send(struct hmaf__mbox_client *mb, uint32_t slot, uint8_t op,
                    const void *req, uint16_t req_len,
                    struct hmaf__mbox_pending *p)
{
    int ret;

    if (req_len > HMAF_MBOX_REQ_LONG_MAX) {
        return HMAF_EINVAL;
    }
    /* Held slots are never unsure (hmaf__mbox_hold_slot): no wait. */
    ret = settle_for_long(mb, slot, req_len,
                          hmaf__now_ns() +
                              (uint64_t)mb->timeout_ms * 1000000u);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&mb->lock);
    p->seq = next_seq(mb, slot);
    pthread_mutex_unlock(&mb->lock);
    p->slot = slot;
    p->start_ns = hmaf__now_ns();
    p->polls = 0;
    p->rang = 0;
    return send_request(mb, slot, p->seq, op, req, req_len);
}

int hmaf__mbox_poll(struct hmaf__mbox_client *mb,
                    struct hmaf__mbox_pending *p, void *resp,
                    uint16_t resp_cap, uint16_t *resp_len_out)
{
    uint64_t at = hmaf__mbox_slot_offset(p->slot) + HMAF_MBOX_RESP_WORD;
    uint64_t word = 0;
    uint64_t waited;
    int ret = mbox_read_u64(mb, at, &word);

    if (ret < 0) {
        return ret;
    }
    if (hmaf__mbox_word_seq(word) == p->seq) {
        mb->unsure[p->slot] = 0;
        return read_response(mb, p->slot, word, resp,
                             resp == NULL ? 0 : resp_cap, resp_len_out);
    }
    waited = hmaf__now_ns() - p->start_ns;
    if (waited >= POSTED_DOORBELL_NS) {
        ring_doorbell(mb, &p->rang);
    }
    if ((++p->polls % POLLS_PER_LIVENESS_CHECK == 0 ||
         waited >= WAIT_YIELD_NS) &&
        hmaf__channel_peer_gone(mb->channel)) {
        return HMAF_ECONNRESET;
    }
    if (waited >= (uint64_t)mb->timeout_ms * 1000000u) {
        hmaf__log_warn("mailbox slot %u: no answer in %d ms", p->slot,
                       mb->timeout_ms);
        return HMAF_ETIMEDOUT;
    }
    return HMAF_EINPROGRESS;
}

int hmaf__mbox_read_epoch(struct hmaf__mbox_client *mb, uint64_t *epoch_out)
{
    return mbox_read_u64(mb, HMAF_MBOX_HEADER_EPOCH, epoch_out);
}

int hmaf__mbox_ack_epoch(struct hmaf__mbox_client *mb, uint64_t epoch)
{
    return mbox_write_u64(mb, HMAF_MBOX_ACK_OFFSET, epoch);
}

int hmaf__mbox_read_header(struct hmaf__mbox_client *mb, uint64_t offset,
                           uint64_t *v_out)
{
    return mbox_read_u64(mb, offset, v_out);
}
