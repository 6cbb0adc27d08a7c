/*
 * The dpu side's cache of registered host regions: an interval lookup over
 * non-overlapping regions sorted by base, bounded by region count and bytes
 * with least-recently-used eviction.
 *
 * Locking: lookups run under the read lock and stay valid until it is
 * released, so a transfer that found its region keeps the lock for the
 * transfer's duration and eviction or revocation (write lock) waits for it.
 * A hit only stamps the region's last use, so readers never write shared
 * structure. Regions removed by insert() or clear() are handed to the
 * release callback after the write lock is dropped.
 */
#ifndef HMAF_CORE_REGCACHE_H
#define HMAF_CORE_REGCACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util/intervals.h"

struct hmaf_engine_rmem;

struct hmaf__region {
    struct hmaf__interval iv; /* first: the cache's set holds these */
    uint64_t id;     /* the agent's region id */
    uint64_t epoch;  /* revocation epoch the agent answered in */
    unsigned access; /* hmaf_access_t */
    _Atomic uint64_t last_used;
    struct hmaf__region *next_victim;
    struct hmaf_engine_rmem *rmem;
};

/* evicted: 1 when dropped by the LRU bounds, 0 when cleared. */
typedef void (*hmaf__region_release_fn)(void *arg, struct hmaf__region *r,
                                        int evicted);

struct hmaf__regcache {
    pthread_rwlock_t lock;
    struct hmaf__interval_set set;
    size_t max_regions;
    uint64_t max_bytes;
    uint64_t bytes;
    uint64_t min_epoch; /* inserts answered before this epoch are stale */
    _Atomic uint64_t tick;
    hmaf__region_release_fn release;
    void *release_arg;
};

int hmaf__regcache_init(struct hmaf__regcache *rc, size_t max_regions,
                        uint64_t max_bytes, hmaf__region_release_fn release,
                        void *release_arg);
/* Releases every region (as cleared). */
void hmaf__regcache_fini(struct hmaf__regcache *rc);

void hmaf__regcache_read_lock(struct hmaf__regcache *rc);
void hmaf__regcache_read_unlock(struct hmaf__regcache *rc);
/* The region containing addr, or NULL. Caller holds the read lock. */
struct hmaf__region *hmaf__regcache_find(struct hmaf__regcache *rc,
                                         uint64_t addr);

/*
 * Add a region. Returns 0 when added; -EEXIST when it overlaps a cached one
 * (the caller keeps r and releases it: the cached one serves); -ESTALE when
 * r->epoch is older than the cache's epoch (r was answered before a
 * revocation the cache has already applied).
 */
int hmaf__regcache_insert(struct hmaf__regcache *rc, struct hmaf__region *r,
                          uint64_t *evicted_out);
/* Drop every region and refuse inserts from before new_epoch. */
void hmaf__regcache_clear(struct hmaf__regcache *rc, uint64_t new_epoch);
size_t hmaf__regcache_count(struct hmaf__regcache *rc);

#endif
