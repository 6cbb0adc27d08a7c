/*
 * A session's holds: every REGISTER answer the agent gave it is one hold
 * on an exposure's engine registration, kept with the revocation epoch
 * the answer was given in. A hold ends three ways: a DEREGISTER names it
 * (the dpu side evicted the region); the session acknowledges a newer
 * epoch, which means it dropped every region answered before — the agent
 * ends those holds itself, so a revocation costs the dpu side no round
 * trips, and no waiting on an agent that may be busy revoking; or the
 * session ends. Runs with the agent lock held.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "proto/mailbox.h"

static long hold_index(const struct agent_session *s, uint64_t exposure_id,
                       uint64_t epoch)
{
    for (size_t i = 0; i < s->nholds; i++) {
        if (s->holds[i].exposure_id == exposure_id &&
            s->holds[i].epoch == epoch) {
            return (long)i;
        }
    }
    return -1;
}

static int holds_exposure(const struct agent_session *s, uint64_t exposure_id)
{
    for (size_t i = 0; i < s->nholds; i++) {
        if (s->holds[i].exposure_id == exposure_id) {
            return 1;
        }
    }
    return 0;
}

static void remove_at(struct agent_session *s, size_t i)
{
    s->holds[i] = s->holds[--s->nholds];
}

int hmaf__agent_hold(struct agent_session *s, uint64_t exposure_id,
                     uint64_t epoch)
{
    long i = hold_index(s, exposure_id, epoch);
    int first = !holds_exposure(s, exposure_id);

    if (i >= 0) {
        s->holds[i].count++;
        return 0;
    }
    if (s->nholds == s->holds_cap) {
        size_t cap = s->holds_cap == 0 ? 8 : s->holds_cap * 2;
        struct agent_hold *v = realloc(s->holds, cap * sizeof(*v));
        if (v == NULL) {
            return HMAF_ENOMEM;
        }
        s->holds = v;
        s->holds_cap = cap;
    }
    s->holds[s->nholds++] = (struct agent_hold){exposure_id, epoch, 1};
    return first;
}

int hmaf__agent_unhold(struct agent_session *s, uint64_t exposure_id,
                       uint64_t epoch)
{
    long i = hold_index(s, exposure_id, epoch);

    if (i < 0) {
        return HMAF_ENOENT;
    }
    if (--s->holds[i].count == 0) {
        remove_at(s, (size_t)i);
    }
    return !holds_exposure(s, exposure_id);
}

int hmaf__agent_unhold_all(struct agent_session *s, uint64_t exposure_id)
{
    int held = 0;

    for (size_t i = s->nholds; i-- > 0;) {
        if (s->holds[i].exposure_id == exposure_id) {
            remove_at(s, i);
            held = 1;
        }
    }
    return held;
}

static void release_if_gone(struct hmaf_agent *a, struct agent_session *s,
                            uint64_t exposure_id)
{
    struct hmaf__exposure *e;

    if (!holds_exposure(s, exposure_id)) {
        e = hmaf__exposure_find_id(&a->exposures, exposure_id);
        if (e != NULL) {
            hmaf__agent_release_exposure(a, e);
        }
    }
}

void hmaf__agent_settle(struct hmaf_agent *a, struct agent_session *s)
{
    uint64_t ack = atomic_load_explicit(
        (_Atomic uint64_t *)(s->mbox + HMAF_MBOX_ACK_OFFSET),
        memory_order_acquire);

    if (ack <= s->settled_ack) {
        return;
    }
    s->settled_ack = ack;
    /* Back to front: what remove_at moves in was looked at already. */
    for (size_t i = s->nholds; i-- > 0;) {
        if (s->holds[i].epoch < ack) {
            uint64_t exposure_id = s->holds[i].exposure_id;
            remove_at(s, i);
            release_if_gone(a, s, exposure_id);
        }
    }
}

void hmaf__agent_release_exposure(struct hmaf_agent *a,
                                  struct hmaf__exposure *e)
{
    if (e->holders > 0 && --e->holders == 0 && e->mem != NULL) {
        a->ops->mem_deregister(e->mem);
        free(e->mem);
        e->mem = NULL;
    }
}

void hmaf__agent_release_holds(struct hmaf_agent *a, struct agent_session *s)
{
    while (s->nholds > 0) {
        uint64_t exposure_id = s->holds[0].exposure_id;
        (void)hmaf__agent_unhold_all(s, exposure_id);
        release_if_gone(a, s, exposure_id);
    }
}
