/*
 * Sessions' holds (holds.h), and how the agent ends them. A hold ends
 * three ways: a DEREGISTER names it (the dpu side evicted the region);
 * the session acknowledges a newer epoch, which means it dropped every
 * region answered before — the agent ends those holds itself, so a
 * revocation costs the dpu side no round trips, and no waiting on an
 * agent that may be busy revoking; or the session ends. The last two end
 * any number of holds at once: in O(1), and the agent gives them back
 * (each may release an engine registration) a bounded number per turn,
 * between serving requests, so other sessions never wait for it.
 *
 * The agent functions run with the agent lock held.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/compiler.h"

/* Ended holds given back per turn of the agent, at most, and for how
 * long at most: a turn holds the agent lock. The clock is looked at
 * every 8: one may end an engine registration, which takes a while
 * (doca: an mmap destroyed). */
#define GIVE_BACK_MAX        1024
#define GIVE_BACK_SLICE_NS   200000ull
#define GIVE_BACK_CLOCK_MASK 7u

static struct hmaf__hold *find(const struct hmaf__holds *h,
                               uint64_t exposure_id, uint64_t epoch)
{
    struct hmaf__hashtab_node *n =
        hmaf__hashtab_find(&h->by_key, exposure_id, epoch);

    return n == NULL ? NULL : hmaf__container_of(n, struct hmaf__hold, node);
}

static int ended(const struct hmaf__holds *h, const struct hmaf__hold *hold)
{
    return h->all_ended || hold->node.key[1] < h->ended_before;
}

static void unlink_hold(struct hmaf__holds *h, struct hmaf__hold *hold)
{
    hmaf__hashtab_remove(&h->by_key, &hold->node);
    if (hold->prev != NULL) {
        hold->prev->next = hold->next;
    } else {
        h->oldest = hold->next;
    }
    if (hold->next != NULL) {
        hold->next->prev = hold->prev;
    } else {
        h->newest = hold->prev;
    }
    free(hold);
}

int hmaf__holds_add(struct hmaf__holds *h, uint64_t exposure_id, uint64_t epoch)
{
    struct hmaf__hold *hold;

    if (h->all_ended || epoch < h->ended_before) {
        return HMAF_EINVAL;
    }
    hold = find(h, exposure_id, epoch);
    if (hold != NULL) {
        hold->count++;
        return 0;
    }
    /* Appending must keep the chain in epoch order. */
    if (h->newest != NULL && epoch < h->newest->node.key[1]) {
        return HMAF_EINVAL;
    }
    hold = calloc(1, sizeof(*hold));
    if (hold == NULL) {
        return HMAF_ENOMEM;
    }
    hold->node.key[0] = exposure_id;
    hold->node.key[1] = epoch;
    hold->count = 1;
    if (hmaf__hashtab_insert(&h->by_key, &hold->node) < 0) {
        free(hold);
        return HMAF_ENOMEM;
    }
    hold->prev = h->newest;
    if (h->newest != NULL) {
        h->newest->next = hold;
    } else {
        h->oldest = hold;
    }
    h->newest = hold;
    return 1;
}

int hmaf__holds_drop(struct hmaf__holds *h, uint64_t exposure_id,
                     uint64_t epoch)
{
    struct hmaf__hold *hold = find(h, exposure_id, epoch);

    if (hold == NULL || ended(h, hold)) {
        return HMAF_ENOENT;
    }
    if (--hold->count > 0) {
        return 0;
    }
    unlink_hold(h, hold);
    return 1;
}

void hmaf__holds_end_before(struct hmaf__holds *h, uint64_t epoch)
{
    if (epoch > h->ended_before) {
        h->ended_before = epoch;
    }
}

void hmaf__holds_end_all(struct hmaf__holds *h)
{
    h->all_ended = 1;
}

int hmaf__holds_pop_ended(struct hmaf__holds *h, uint64_t *exposure_id_out)
{
    struct hmaf__hold *hold = h->oldest;

    if (hold == NULL || !ended(h, hold)) {
        return 0;
    }
    *exposure_id_out = hold->node.key[0];
    unlink_hold(h, hold);
    return 1;
}

int hmaf__holds_empty(const struct hmaf__holds *h)
{
    return h->oldest == NULL;
}

void hmaf__holds_fini(struct hmaf__holds *h)
{
    while (h->oldest != NULL) {
        struct hmaf__hold *next = h->oldest->next;
        free(h->oldest);
        h->oldest = next;
    }
    hmaf__hashtab_fini(&h->by_key);
    h->newest = NULL;
}

int hmaf__agent_hold(struct agent_session *s, uint64_t exposure_id,
                     uint64_t epoch)
{
    return hmaf__holds_add(&s->holds->h, exposure_id, epoch);
}

int hmaf__agent_unhold(struct agent_session *s, uint64_t exposure_id,
                       uint64_t epoch)
{
    return hmaf__holds_drop(&s->holds->h, exposure_id, epoch);
}

int hmaf__agent_drop_hold(struct hmaf_agent *a, struct agent_session *s,
                          uint64_t exposure_id, uint64_t epoch)
{
    struct hmaf__exposure *e;
    int ret = hmaf__agent_unhold(s, exposure_id, epoch);

    if (ret == 1 &&
        (e = hmaf__exposure_find_id(&a->exposures, exposure_id)) != NULL) {
        hmaf__agent_release_exposure(e);
    }
    return ret < 0 ? ret : 0;
}

void hmaf__agent_end_holds_before(struct agent_session *s, uint64_t epoch)
{
    if (epoch > s->settled_ack) {
        s->settled_ack = epoch;
        hmaf__holds_end_before(&s->holds->h, epoch);
    }
}

void hmaf__agent_release_exposure(struct hmaf__exposure *e)
{
    if (e->holders > 0 && --e->holders == 0 && e->mem != NULL) {
        hmaf__engine_mem_destroy(e->mem);
        e->mem = NULL;
    }
}

void hmaf__agent_orphan_holds(struct hmaf_agent *a, struct agent_session *s)
{
    if (s->holds == NULL) {
        return;
    }
    hmaf__holds_end_all(&s->holds->h);
    s->holds->next_orphan = a->orphans;
    a->orphans = s->holds;
    s->holds = NULL;
}

void hmaf__agent_give_back_start(struct agent_give_back *gb)
{
    *gb = (struct agent_give_back){GIVE_BACK_MAX, 0, 0};
}

static int may_go_on(struct agent_give_back *gb)
{
    if (gb->left == 0) {
        return 0;
    }
    if ((gb->left & GIVE_BACK_CLOCK_MASK) == 0 && gb->until != 0 &&
        hmaf__now_ns() >= gb->until) {
        gb->left = 0;
        return 0;
    }
    return 1;
}

/* The ended holds of h, while the turn allows: each exposure that is
 * still exposed loses a holder (a revoked one was freed with its
 * registration). */
static void give_back_from(struct hmaf_agent *a, struct hmaf__holds *h,
                           struct agent_give_back *gb)
{
    uint64_t id;

    while (may_go_on(gb) && hmaf__holds_pop_ended(h, &id)) {
        struct hmaf__exposure *e = hmaf__exposure_find_id(&a->exposures, id);
        if (gb->until == 0) {
            gb->until = hmaf__now_ns() + GIVE_BACK_SLICE_NS;
        }
        if (e != NULL) {
            hmaf__agent_release_exposure(e);
        }
        gb->left--;
        gb->given++;
    }
}

void hmaf__agent_give_back_orphans(struct hmaf_agent *a,
                                   struct agent_give_back *gb)
{
    while (a->orphans != NULL && gb->left > 0) {
        struct agent_holds *o = a->orphans;
        give_back_from(a, &o->h, gb);
        if (hmaf__holds_empty(&o->h)) {
            a->orphans = o->next_orphan;
            hmaf__holds_fini(&o->h);
            free(o);
        }
    }
}

/* The ack is the dpu side's word: an epoch we never announced ends no
 * hold answered in the current one. */
void hmaf__agent_settle(struct hmaf_agent *a, struct agent_session *s,
                        struct agent_give_back *gb)
{
    uint64_t ack = atomic_load_explicit(
        (_Atomic uint64_t *)(s->mbox + HMAF_MBOX_ACK_OFFSET),
        memory_order_acquire);

    hmaf__agent_end_holds_before(s, ack < a->epoch ? ack : a->epoch);
    give_back_from(a, &s->holds->h, gb);
}

void hmaf__agent_orphans_fini(struct hmaf_agent *a)
{
    while (a->orphans != NULL) {
        struct agent_holds *o = a->orphans;
        a->orphans = o->next_orphan;
        hmaf__holds_fini(&o->h);
        free(o);
    }
}
