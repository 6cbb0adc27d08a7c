/*
 * The dpu side's cache of registered host regions: an interval lookup over
 * non-overlapping regions sorted by base, bounded by region count and bytes
 * with least-recently-used eviction.
 *
 * Readers take no lock. The regions live in an immutable sorted array that
 * writers (insert, clear) replace under a mutex; a reader enters a
 * read-side section (readers.h), looks regions up and runs its transfer,
 * then leaves. A writer frees the array and the regions it removed only
 * after a grace period, so a transfer that found its region keeps it valid
 * to the end, and clear() returns only when no transfer can still use a
 * region it dropped — what revocation relies on.
 */
#ifndef HMAF_CORE_REGCACHE_H
#define HMAF_CORE_REGCACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/readers.h"
#include "util/intervals.h"

struct hmaf_engine_rmem;

struct hmaf__region {
    struct hmaf__interval iv; /* first: looked up as an interval */
    uint64_t id;     /* the agent's region id */
    uint64_t epoch;  /* revocation epoch the agent answered in */
    unsigned access; /* hmaf_access_t */
    _Atomic uint64_t last_used; /* coarse time of the latest lookup */
    struct hmaf__region *next_victim;
    struct hmaf_engine_rmem *rmem;
};

/* evicted: 1 when dropped by the LRU bounds, 0 when cleared. */
typedef void (*hmaf__region_release_fn)(void *arg, struct hmaf__region *r,
                                        int evicted);

/* An immutable snapshot; gen is unique, so a thread's remembered region
 * is known valid exactly while the snapshot it came from is current. */
struct hmaf__region_set {
    uint64_t gen;
    size_t n;
    uint64_t bytes;
    struct hmaf__region *v[]; /* sorted by base, non-overlapping */
};

struct hmaf__regcache {
    struct hmaf__region_set *_Atomic current; /* first: read every call */
    struct hmaf__readers readers; /* its id next; the slots are aligned */
    pthread_mutex_t write_lock;
    size_t max_regions;
    uint64_t max_bytes;
    uint64_t min_epoch; /* inserts answered before this epoch are stale */
    hmaf__region_release_fn release;
    void *release_arg;
};

int hmaf__regcache_init(struct hmaf__regcache *rc, size_t max_regions,
                        uint64_t max_bytes, hmaf__region_release_fn release,
                        void *release_arg);
/* Releases every region (as cleared). No reader may be inside. */
void hmaf__regcache_fini(struct hmaf__regcache *rc);

/* Enter a read-side section on this thread's slot (-ENOSPC: no slot). */
static inline int hmaf__regcache_enter(struct hmaf__regcache *rc,
                                       struct hmaf__reader **reader_out)
{
    int ret = hmaf__reader_get(&rc->readers, reader_out);

    if (ret == 0) {
        hmaf__reader_enter(*reader_out);
    }
    return ret;
}

static inline void hmaf__regcache_exit(struct hmaf__reader *reader)
{
    hmaf__reader_exit(reader);
}

/* The region containing addr, or NULL; stamps it used at `now`. Valid
 * until the caller leaves its read-side section. */
struct hmaf__region *hmaf__regcache_find(struct hmaf__regcache *rc,
                                         uint64_t addr, uint64_t now);

/* The same, trying the region this reader found last first: repeated
 * accesses to one region skip the search. */
static inline struct hmaf__region *
hmaf__regcache_find_hinted(struct hmaf__regcache *rc,
                           struct hmaf__reader *reader, uint64_t addr,
                           uint64_t now)
{
    const struct hmaf__region_set *set =
        atomic_load_explicit(&rc->current, memory_order_acquire);
    struct hmaf__region *r = (struct hmaf__region *)reader->hint;

    if (reader->hint_gen == set->gen && addr - r->iv.base < r->iv.len) {
        if (atomic_load_explicit(&r->last_used, memory_order_relaxed) != now) {
            atomic_store_explicit(&r->last_used, now, memory_order_relaxed);
        }
        return r;
    }
    r = hmaf__regcache_find(rc, addr, now);
    if (r != NULL) {
        reader->hint_gen = set->gen;
        reader->hint = r;
    }
    return r;
}

/*
 * Add a region. Returns 0 when added; HMAF_EEXIST when it overlaps a cached
 * one (the caller keeps r and releases it: the cached one serves); -ESTALE
 * when r->epoch is older than the cache's epoch (r was answered before a
 * revocation the cache has already applied). Must not be called from inside
 * a read-side section: it waits for a grace period.
 */
int hmaf__regcache_insert(struct hmaf__regcache *rc, struct hmaf__region *r,
                          uint64_t *evicted_out);
/* Drop every region and refuse inserts from before new_epoch (UINT64_MAX:
 * refuse every insert from now on). Returns once no read-side section can
 * still see them; HMAF_ENOMEM when nothing could be done. The dropped
 * regions go to the release callback, or, with dropped_out, to the caller
 * as a list linked by next_victim. Not from inside a read-side section. */
int hmaf__regcache_clear(struct hmaf__regcache *rc, uint64_t new_epoch,
                         struct hmaf__region **dropped_out);
size_t hmaf__regcache_count(struct hmaf__regcache *rc);
/* Bytes of host memory the cached regions cover. */
uint64_t hmaf__regcache_bytes(struct hmaf__regcache *rc);

#endif
