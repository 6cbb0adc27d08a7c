/*
 * The dpu side's cache of registered host regions: an interval lookup over
 * non-overlapping regions sorted by base, bounded by region count and bytes
 * with least-recently-used eviction.
 *
 * Readers take no lock. The regions hang off an immutable B+tree whose
 * nodes keep their keys (region bases) side by side, so a lookup touches a
 * few cache lines per level, however many regions there are; a leaf also
 * keeps copies of what a hit needs of its regions, so a hit reads the
 * tree only. A writer
 * (insert, eviction, clear) works under a mutex: an insert copies the
 * nodes on the path to its leaf and publishes a new root; an eviction or a
 * clear builds the tree anew without the regions that leave. A reader
 * enters a read-side section (readers.h), looks regions up and runs its
 * transfer, then leaves. Nodes a writer replaced are freed after a later
 * grace period, in batches; regions only ever leave with one, so a
 * transfer that found its region keeps it valid to the end, and clear()
 * returns only when no transfer can still use a region it dropped — what
 * revocation relies on.
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

/* A cached region's fields do not change while it is in the cache: its
 * leaf keeps copies of those a hit needs (iv, access, rmem). */
struct hmaf__region {
    struct hmaf__interval iv;   /* base and len */
    uint64_t id;                /* the agent's region id */
    uint64_t epoch;             /* revocation epoch the agent answered in */
    unsigned access;            /* hmaf_access_t */
    /* Coarse time of a use: the insert's; the region's leaf stamps the
     * lookups (the later of the two counts). */
    _Atomic uint64_t last_used;
    struct hmaf__region *next_victim;
    struct hmaf_engine_rmem *rmem;
};

/* A lookup's answer: what a transfer needs, from the region's leaf, so
 * that a hit reads no more than the leaf (with many regions, the region
 * itself would be one more cold page after a system call flushed the
 * TLB). Valid until the caller leaves its read-side section. */
struct hmaf__rc_hit {
    uint64_t base;
    uint64_t len;
    struct hmaf_engine_rmem *rmem;
    unsigned access; /* hmaf_access_t */
    struct hmaf__region *region; /* for the hint; not to be read */
};

/* Releases a list of regions linked by next_victim, which no reader can
 * reach any more. evicted: 1 when dropped by the LRU bounds (or refused
 * by an insert the caller gives up), 0 when cleared. */
typedef void (*hmaf__region_release_fn)(void *arg, struct hmaf__region *list,
                                        int evicted);

struct hmaf__rc_node; /* regcache.c */
struct hmaf__rc_slab;

struct hmaf__regcache {
    /* Read by every lookup: together in the first line. */
    struct hmaf__rc_node *_Atomic root;
    /* Changes whenever a region leaves the cache (never for an insert):
     * a thread's remembered region is valid while it has not changed. */
    _Atomic uint64_t gen;
    _Atomic size_t count;
    _Atomic uint64_t bytes;
    struct hmaf__readers readers; /* its id next; the slots are aligned */
    pthread_mutex_t write_lock;
    size_t max_regions;
    uint64_t max_bytes;
    uint64_t min_epoch; /* inserts answered before this epoch are stale */
    struct hmaf__rc_node *retired; /* replaced nodes, spare after the
                                      next grace period */
    size_t nretired;
    struct hmaf__rc_node *spare; /* inner nodes to build with */
    struct hmaf__rc_node *spare_leaves; /* leaves to build with */
    struct hmaf__rc_slab *slabs; /* where the nodes live, all freed at
                                    fini */
    hmaf__region_release_fn release;
    void *release_arg;
};

/* What became of a region handed to hmaf__regcache_insert. */
enum hmaf__regcache_insert_result {
    HMAF_REGCACHE_ADDED,    /* cached: the cache owns it now */
    HMAF_REGCACHE_OVERLAPS, /* overlaps a cached region, which serves */
    HMAF_REGCACHE_STALE,    /* answered before a revocation the cache
                               has already applied */
    HMAF_REGCACHE_NOMEM,    /* no memory for the cache's nodes */
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

/* The region containing addr, or NULL; stamps it used at `now` and, when
 * found, fills *hit_out. Valid until the caller leaves its read-side
 * section. */
struct hmaf__region *hmaf__regcache_find(struct hmaf__regcache *rc,
                                         uint64_t addr, uint64_t now,
                                         struct hmaf__rc_hit *hit_out);

static inline void hmaf__regcache_stamp(_Atomic uint64_t *used, uint64_t now)
{
    /* Plain stores, and only when the coarse clock moved: threads sharing
     * a region don't fight over its cache line. */
    if (atomic_load_explicit(used, memory_order_relaxed) != now) {
        atomic_store_explicit(used, now, memory_order_relaxed);
    }
}

/* The same, trying the region this reader found last first: repeated
 * accesses to one region skip the search. The generation is read before
 * the tree (acquire): a region found in a tree that lost it is never
 * remembered under the generation that says so. The reader keeps the
 * hit's copy, so the hint reads neither the region nor its leaf; it
 * serves within the coarse tick its lookup stamped the leaf at, and a
 * lookup through the tree renews it, so uses keep being stamped. */
static inline struct hmaf__region *
hmaf__regcache_find_hinted(struct hmaf__regcache *rc,
                           struct hmaf__reader *reader, uint64_t addr,
                           uint64_t now, struct hmaf__rc_hit *hit_out)
{
    uint64_t gen = atomic_load_explicit(&rc->gen, memory_order_acquire);
    struct hmaf__region *r;

    /* Only while the generation matches is the hint still cached. */
    if (reader->hint_gen == gen && reader->hint_now == now &&
        addr - reader->hint_base < reader->hint_len) {
        *hit_out = (struct hmaf__rc_hit){reader->hint_base, reader->hint_len,
                                         reader->hint_rmem,
                                         reader->hint_access, reader->hint};
        return reader->hint;
    }
    r = hmaf__regcache_find(rc, addr, now, hit_out);
    if (r != NULL) {
        reader->hint_gen = gen;
        reader->hint = r;
        reader->hint_base = hit_out->base;
        reader->hint_len = hit_out->len;
        reader->hint_rmem = hit_out->rmem;
        reader->hint_access = hit_out->access;
        reader->hint_now = now;
    }
    return r;
}

/*
 * Add a region (O(log n): no grace period unless regions leave). When r
 * takes the cache past a bound, least recently used regions leave first,
 * a batch of them at once (down to 7/8 of the bound, r included: r itself
 * always stays, so a region larger than the byte bound is cached alone),
 * and go to the release callback, as evicted, before this returns;
 * *evicted_out counts them. Anything but HMAF_REGCACHE_ADDED leaves r to
 * the caller. Must not be called from inside a read-side section: it may
 * wait for a grace period.
 */
enum hmaf__regcache_insert_result
hmaf__regcache_insert(struct hmaf__regcache *rc, struct hmaf__region *r,
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
