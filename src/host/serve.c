/*
 * The agent's mailbox server. The dpu side writes requests into slots in
 * our memory; we notice a new sequence number, copy the payload out before
 * looking at it (the peer may rewrite it meanwhile), validate every field,
 * act, and publish the answer: payload first, then the response word with
 * release order. Runs with the agent lock held.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "proto/mailbox.h"
#include "util/log.h"

struct request {
    uint32_t slot;
    uint32_t seq;
    uint8_t op;
    uint16_t len;
    uint8_t payload[HMAF_MBOX_REQ_LONG_MAX];
};

struct response {
    int status;
    uint16_t len;
    uint8_t payload[HMAF_MBOX_RESP_MAX];
};

static _Atomic uint64_t *slot_word(struct agent_session *s, uint32_t slot,
                                   size_t at)
{
    return (_Atomic uint64_t *)(s->mbox + hmaf__mbox_slot_offset(slot) + at);
}

/* A new request in this slot? Copies it out and marks it served. */
static int take_request(struct agent_session *s, uint32_t slot,
                        struct request *req)
{
    uint64_t word = atomic_load_explicit(
        slot_word(s, slot, HMAF_MBOX_REQ_WORD), memory_order_acquire);
    uint32_t seq = hmaf__mbox_word_seq(word);

    if (seq == 0 || seq == s->served_seq[slot]) {
        return 0;
    }
    s->served_seq[slot] = seq;
    req->slot = slot;
    req->seq = seq;
    req->op = hmaf__mbox_req_op(word);
    req->len = hmaf__mbox_req_len(word);
    if (req->len <= HMAF_MBOX_REQ_LONG_MAX) {
        memcpy(req->payload,
               s->mbox + hmaf__mbox_slot_offset(slot) +
                   hmaf__mbox_req_payload_at(req->len),
               req->len);
    }
    return 1;
}

/* The engine registration of e, made on first use. *fresh_out says
 * whether this call made it, so a failure right after can undo exactly
 * that and nothing another session relies on. */
static int ensure_registered(struct hmaf_agent *a, struct hmaf__exposure *e,
                             int *fresh_out)
{
    int ret;

    *fresh_out = e->mem == NULL;
    if (e->mem != NULL) {
        return 0;
    }
    ret = hmaf__engine_mem_create(a->ctx, e->iv.base, e->iv.len, e->access,
                                  &e->mem);
    if (ret < 0) {
        return ret;
    }
    a->stats.registrations++;
    return 0;
}

static void undo_fresh_registration(struct hmaf__exposure *e)
{
    hmaf__engine_mem_destroy(e->mem);
    e->mem = NULL;
}

/* Register (once), export, and count the session's hold. */
static int grant_region(struct hmaf_agent *a, struct agent_session *s,
                        struct hmaf__exposure *e, struct hmaf_blob *blob)
{
    size_t blob_len = 0;
    int fresh;
    int ret = ensure_registered(a, e, &fresh);

    if (ret == 0) {
        ret = a->ops->mem_export(e->mem, blob->data, a->max_blob, &blob_len);
    }
    if (ret == 0 && blob_len > a->max_blob) {
        hmaf__log_error("%s engine: export of %zu bytes exceeds its "
                        "max_blob %u",
                        a->ops->name, blob_len, a->max_blob);
        ret = HMAF_ENOSPC;
    }
    if (ret == 0) {
        ret = hmaf__agent_hold(s, e->id, a->epoch);
    }
    if (ret < 0) {
        if (fresh && e->mem != NULL) {
            undo_fresh_registration(e);
        }
        return ret;
    }
    e->holders += (uint64_t)ret; /* 1 for a new entry of the session's */
    blob->len = (uint16_t)blob_len;
    return 0;
}

static int serve_register(struct hmaf_agent *a, struct agent_session *s,
                          const struct request *req, struct response *resp)
{
    struct hmaf_req_register r;
    struct hmaf_resp_register out = {0};
    struct hmaf__exposure *e;
    int ret = hmaf__req_register_decode(req->payload, req->len, &r);

    if (ret < 0) {
        return ret;
    }
    if (r.len == 0) {
        return HMAF_EINVAL;
    }
    if (r.len > UINT64_MAX - r.addr) {
        return HMAF_EOVERFLOW;
    }
    e = hmaf__exposure_find(&a->exposures, r.addr);
    if (e == NULL) {
        return HMAF_EFAULT;
    }
    ret = grant_region(a, s, e, &out.export_blob);
    if (ret < 0) {
        return ret;
    }
    out.region_id = e->id;
    out.base = e->iv.base;
    out.len = e->iv.len;
    out.epoch = a->epoch;
    out.access = (uint8_t)e->access;
    resp->len = (uint16_t)hmaf__resp_register_encode(&out, resp->payload);
    return 0;
}

/* Ends the holds a REGISTER gave back, once it has been answered: the
 * dpu side is not kept waiting for them. As with a DEREGISTER, an id the
 * session does not hold is skipped; there is no answer left to say so
 * (the REGISTER's is its own). A malformed request was refused whole. */
static void end_given_back(struct hmaf_agent *a, struct agent_session *s,
                           const struct request *req)
{
    struct hmaf_req_register r;

    if (req->op != HMAF_OP_REGISTER || req->len > HMAF_MBOX_REQ_LONG_MAX ||
        hmaf__req_register_decode(req->payload, req->len, &r) < 0) {
        return;
    }
    for (uint16_t i = 0; i < r.give_count; i++) {
        (void)hmaf__agent_drop_hold(a, s, r.give_id[i], r.give_epoch);
    }
}

/* Ends the hold each id names in the request's epoch. Every id is looked
 * at; one the session does not hold is skipped (the others still end), and
 * the answer then says HMAF_ENOENT. */
static int serve_deregister(struct hmaf_agent *a, struct agent_session *s,
                            const struct request *req)
{
    struct hmaf_req_deregister r;
    int status = hmaf__req_deregister_decode(req->payload, req->len, &r);

    for (uint16_t i = 0; status != HMAF_EPROTO && i < r.count; i++) {
        int ret = hmaf__agent_drop_hold(a, s, r.region_id[i], r.epoch);
        if (ret < 0) {
            status = ret;
        }
    }
    return status;
}

static int serve_lookup(struct hmaf_agent *a, const struct request *req,
                        struct response *resp)
{
    struct hmaf_req_lookup r;
    struct hmaf_resp_lookup out;
    const struct hmaf__root *root;
    int ret = hmaf__req_lookup_decode(req->payload, req->len, &r);

    if (ret < 0) {
        return ret;
    }
    if (r.name[0] == '\0') {
        return HMAF_EINVAL;
    }
    root = hmaf__roots_find(&a->roots, r.name);
    if (root == NULL) {
        return HMAF_ENOENT;
    }
    out.addr = root->addr;
    out.len = root->len;
    resp->len = (uint16_t)hmaf__resp_lookup_encode(&out, resp->payload);
    return 0;
}

static int dispatch(struct hmaf_agent *a, struct agent_session *s,
                    const struct request *req, struct response *resp)
{
    if (req->len > HMAF_MBOX_REQ_LONG_MAX) {
        return HMAF_EPROTO;
    }
    switch (req->op) {
    case HMAF_OP_PING:
        return req->len == 0 ? 0 : HMAF_EPROTO;
    case HMAF_OP_REGISTER:
        return serve_register(a, s, req, resp);
    case HMAF_OP_DEREGISTER:
        return serve_deregister(a, s, req);
    case HMAF_OP_LOOKUP:
        return serve_lookup(a, req, resp);
    case HMAF_OP_ATOMIC:
        return hmaf__agent_serve_atomic(a, req->payload, req->len,
                                        resp->payload, &resp->len);
    case HMAF_OP_NOTIFY:
        return hmaf__agent_serve_notify(a, s, req->payload, req->len);
    case HMAF_OP_ALLOC:
        return hmaf__agent_serve_alloc(a, s, req->payload, req->len,
                                       resp->payload, &resp->len);
    case HMAF_OP_FREE:
        return hmaf__agent_serve_free(a, s, req->payload, req->len,
                                      resp->payload, &resp->len);
    default:
        return HMAF_EPROTO;
    }
}

static void answer(struct agent_session *s, const struct request *req,
                   const struct response *resp)
{
    uint16_t len = resp->status == 0 ? resp->len : 0;

    if (len > 0) {
        memcpy(s->mbox + hmaf__mbox_slot_offset(req->slot) +
                   HMAF_MBOX_RESP_PAYLOAD,
               resp->payload, len);
    }
    atomic_store_explicit(slot_word(s, req->slot, HMAF_MBOX_RESP_WORD),
                          hmaf__mbox_resp_word(req->seq, resp->status, len),
                          memory_order_release);
}

static int serve_session(struct hmaf_agent *a, struct agent_session *s,
                         struct agent_give_back *gb)
{
    struct request req;
    struct response resp;
    int served = 0;

    /* First: a DEREGISTER the dpu side sent after its acknowledgement
     * names a hold the acknowledgement did not end. */
    hmaf__agent_settle(a, s, gb);
    for (uint32_t slot = 0; slot < s->nslots; slot++) {
        if (!take_request(s, slot, &req)) {
            continue;
        }
        resp.len = 0;
        resp.status = dispatch(a, s, &req, &resp);
        if (resp.status == HMAF_EPROTO) {
            a->stats.bad_requests++;
            hmaf__log_info("session %llu slot %u: malformed request op %u",
                           (unsigned long long)s->id, slot, req.op);
        }
        answer(s, &req, &resp);
        end_given_back(a, s, &req);
        a->stats.requests++;
        served++;
    }
    return served;
}

void hmaf__agent_serve_last_frees(struct hmaf_agent *a,
                                  struct agent_session *s)
{
    struct request req;
    struct response resp;

    for (uint32_t slot = 0; s->mbox != NULL && slot < s->nslots; slot++) {
        if (take_request(s, slot, &req) && req.op == HMAF_OP_FREE &&
            req.len <= HMAF_MBOX_REQ_LONG_MAX) {
            (void)hmaf__agent_serve_free(a, s, req.payload, req.len,
                                         resp.payload, &resp.len);
            a->stats.requests++;
        }
    }
}

int hmaf__agent_serve_all(struct hmaf_agent *a)
{
    struct agent_give_back gb;
    int served = 0;

    hmaf__agent_give_back_start(&gb);
    hmaf__agent_give_back_orphans(a, &gb);
    for (size_t i = 0; i < a->params.max_sessions; i++) {
        if (a->sessions[i] != NULL) {
            served += serve_session(a, a->sessions[i], &gb);
        }
    }
    return served + (gb.given > 0);
}
