/*
 * A session's holds: every REGISTER answer the agent gave it is one hold
 * on an exposure's engine registration, kept with the revocation epoch
 * the answer was given in. Holds of one exposure and one epoch share an
 * entry with a count. Entries are found by (exposure id, epoch) in a hash
 * table and are chained oldest epoch first — answers are given in the
 * agent's current epoch, which only grows, so appending keeps that order.
 *
 * Ending every hold older than an epoch is O(1): the entries stay where
 * they are, ended, and come off one by one from the front of the chain
 * (hmaf__holds_pop_ended) — the agent does that a bounded number at a
 * time, so that a session holding 100,000 regions does not keep it from
 * serving the others. Every other call is O(1) on average.
 */
#ifndef HMAF_HOST_HOLDS_H
#define HMAF_HOST_HOLDS_H

#include <stddef.h>
#include <stdint.h>

#include "util/hashtab.h"

struct hmaf__hold {
    struct hmaf__hashtab_node node; /* key: exposure id, epoch */
    uint64_t count;
    struct hmaf__hold *prev, *next; /* oldest epoch first */
};

struct hmaf__holds {
    struct hmaf__hashtab by_key;
    struct hmaf__hold *oldest, *newest;
    uint64_t ended_before; /* entries of older epochs have ended */
    int all_ended;         /* and all of them, once the session is over */
};

/* A zeroed struct holds nothing. */
/* One more hold, answered in epoch: 1 when it made a new entry, 0 when it
 * counted on one; HMAF_ENOMEM; HMAF_EINVAL for an epoch that ended, or
 * for a new entry older than the newest one (the agent's epoch only
 * grows, and it ends no epoch it has not announced). */
int hmaf__holds_add(struct hmaf__holds *h, uint64_t exposure_id,
                    uint64_t epoch);
/* Give one hold back: 1 when that removed its entry, 0 when the entry is
 * still counted; HMAF_ENOENT when there is no such hold, or it ended. */
int hmaf__holds_drop(struct hmaf__holds *h, uint64_t exposure_id,
                     uint64_t epoch);
/* Every hold answered before epoch ends (an older epoch changes nothing). */
void hmaf__holds_end_before(struct hmaf__holds *h, uint64_t epoch);
/* Every hold ends: the session is over. */
void hmaf__holds_end_all(struct hmaf__holds *h);
/* Remove one entry that ended: 1 and its exposure id, or 0 when none is
 * left. */
int hmaf__holds_pop_ended(struct hmaf__holds *h, uint64_t *exposure_id_out);
/* Whether nothing is held, ended or not. */
int hmaf__holds_empty(const struct hmaf__holds *h);
/* Free every entry at once, ended or not. */
void hmaf__holds_fini(struct hmaf__holds *h);

#endif
