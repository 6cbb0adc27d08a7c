/*
 * The host's exposure policy: which ranges dpu sides may touch, and how.
 * Exposures never overlap. Each carries its engine registration, made on
 * the first REGISTER and kept while any session holds it. They are found
 * by address (a balanced tree) and by id (a hash table): every lookup,
 * insert and removal costs O(log n) at most, however many there are.
 */
#ifndef HMAF_HOST_EXPOSURE_H
#define HMAF_HOST_EXPOSURE_H

#include <stdint.h>

#include "util/hashtab.h"
#include "util/itree.h"

struct hmaf_engine_mem;

struct hmaf__exposure {
    struct hmaf__itree_node iv;        /* base, len: by address */
    struct hmaf__hashtab_node id_node; /* key: id, 0 */
    uint64_t id;                       /* never reused */
    unsigned access;                   /* hmaf_access_t */
    uint64_t holders;                  /* holds on the registration: every
                                          session's, each epoch's (holds.c) */
    struct hmaf_engine_mem *mem;       /* NULL until first registered */
};

struct hmaf__exposures {
    struct hmaf__itree by_addr;
    struct hmaf__hashtab by_id;
    uint64_t next_id;
};

/* 0; HMAF_EINVAL (len 0, bad access), HMAF_EOVERFLOW, HMAF_EEXIST,
 * HMAF_ENOMEM. */
int hmaf__exposure_add(struct hmaf__exposures *ex, uint64_t base, uint64_t len,
                       unsigned access, struct hmaf__exposure **out);
/* The exposure containing addr, or NULL. */
struct hmaf__exposure *hmaf__exposure_find(const struct hmaf__exposures *ex,
                                           uint64_t addr);
struct hmaf__exposure *hmaf__exposure_find_id(const struct hmaf__exposures *ex,
                                              uint64_t id);
/* Unlink and return the exposure with exactly this base and len, or NULL. */
struct hmaf__exposure *hmaf__exposure_take(struct hmaf__exposures *ex,
                                           uint64_t base, uint64_t len);
/* Unlink and return any exposure (NULL when empty): for teardown. */
struct hmaf__exposure *hmaf__exposure_take_any(struct hmaf__exposures *ex);
void hmaf__exposures_fini(struct hmaf__exposures *ex);

#endif
