#include "core/regcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#define REGION(set, i) ((struct hmaf__region *)(set).v[i])

int hmaf__regcache_init(struct hmaf__regcache *rc, size_t max_regions,
                        uint64_t max_bytes, hmaf__region_release_fn release,
                        void *release_arg)
{
    pthread_rwlockattr_t attr;
    int ret;

    memset(rc, 0, sizeof(*rc));
    rc->max_regions = max_regions == 0 ? 1 : max_regions;
    rc->max_bytes = max_bytes;
    rc->release = release;
    rc->release_arg = release_arg;
    /* Revocation takes the write lock while threads read in a loop: it
     * must not starve behind an endless stream of readers. */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    ret = pthread_rwlock_init(&rc->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return ret == 0 ? 0 : HMAF_ENOMEM;
}

static void release_list(struct hmaf__regcache *rc, struct hmaf__region *list,
                         int evicted)
{
    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        rc->release(rc->release_arg, list, evicted);
        list = next;
    }
}

/* Unlink region i; caller holds the write lock. */
static struct hmaf__region *unlink_at(struct hmaf__regcache *rc, size_t i,
                                      struct hmaf__region *list)
{
    struct hmaf__region *r =
        (struct hmaf__region *)hmaf__iset_remove_at(&rc->set, i);

    rc->bytes -= r->iv.len;
    r->next_victim = list;
    return r;
}

static struct hmaf__region *take_all(struct hmaf__regcache *rc)
{
    struct hmaf__region *list = NULL;

    while (rc->set.n > 0) {
        list = unlink_at(rc, rc->set.n - 1, list);
    }
    return list;
}

void hmaf__regcache_fini(struct hmaf__regcache *rc)
{
    release_list(rc, take_all(rc), 0);
    hmaf__iset_fini(&rc->set);
    pthread_rwlock_destroy(&rc->lock);
}

void hmaf__regcache_read_lock(struct hmaf__regcache *rc)
{
    pthread_rwlock_rdlock(&rc->lock);
}

void hmaf__regcache_read_unlock(struct hmaf__regcache *rc)
{
    pthread_rwlock_unlock(&rc->lock);
}

static void touch(struct hmaf__regcache *rc, struct hmaf__region *r)
{
    uint64_t now = atomic_fetch_add_explicit(&rc->tick, 1,
                                             memory_order_relaxed);

    atomic_store_explicit(&r->last_used, now, memory_order_relaxed);
}

struct hmaf__region *hmaf__regcache_find(struct hmaf__regcache *rc,
                                         uint64_t addr)
{
    long i = hmaf__iset_find(&rc->set, addr);

    if (i < 0) {
        return NULL;
    }
    touch(rc, REGION(rc->set, i));
    return REGION(rc->set, i);
}

static size_t least_recently_used(const struct hmaf__regcache *rc)
{
    size_t best = 0;

    for (size_t i = 1; i < rc->set.n; i++) {
        if (atomic_load_explicit(&REGION(rc->set, i)->last_used,
                                 memory_order_relaxed) <
            atomic_load_explicit(&REGION(rc->set, best)->last_used,
                                 memory_order_relaxed)) {
            best = i;
        }
    }
    return best;
}

static int over_bounds(const struct hmaf__regcache *rc)
{
    return rc->set.n > rc->max_regions || rc->bytes > rc->max_bytes;
}

/* Evict least recently used regions until the bounds hold again. The
 * region just inserted is the most recent, so it goes last: a region
 * larger than the byte bound is still cached, alone. */
static struct hmaf__region *evict_over_bounds(struct hmaf__regcache *rc,
                                              uint64_t *evicted_out)
{
    struct hmaf__region *list = NULL;

    while (rc->set.n > 1 && over_bounds(rc)) {
        list = unlink_at(rc, least_recently_used(rc), list);
        (*evicted_out)++;
    }
    return list;
}

static int insert_locked(struct hmaf__regcache *rc, struct hmaf__region *r,
                         struct hmaf__region **victims, uint64_t *evicted_out)
{
    int ret;

    if (r->epoch < rc->min_epoch) {
        return -ESTALE;
    }
    ret = hmaf__iset_insert(&rc->set, &r->iv);
    if (ret < 0) {
        return ret;
    }
    rc->bytes += r->iv.len;
    touch(rc, r);
    *victims = evict_over_bounds(rc, evicted_out);
    return 0;
}

int hmaf__regcache_insert(struct hmaf__regcache *rc, struct hmaf__region *r,
                          uint64_t *evicted_out)
{
    struct hmaf__region *victims = NULL;
    uint64_t evicted = 0;
    int ret;

    pthread_rwlock_wrlock(&rc->lock);
    ret = insert_locked(rc, r, &victims, &evicted);
    pthread_rwlock_unlock(&rc->lock);
    release_list(rc, victims, 1);
    if (evicted_out != NULL) {
        *evicted_out = evicted;
    }
    return ret;
}

void hmaf__regcache_clear(struct hmaf__regcache *rc, uint64_t new_epoch)
{
    struct hmaf__region *list;

    pthread_rwlock_wrlock(&rc->lock);
    list = take_all(rc);
    if (new_epoch > rc->min_epoch) {
        rc->min_epoch = new_epoch;
    }
    pthread_rwlock_unlock(&rc->lock);
    release_list(rc, list, 0);
}

size_t hmaf__regcache_count(struct hmaf__regcache *rc)
{
    size_t n;

    pthread_rwlock_rdlock(&rc->lock);
    n = rc->set.n;
    pthread_rwlock_unlock(&rc->lock);
    return n;
}
