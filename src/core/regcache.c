#include "core/regcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

/* Generation 0 is never used: a fresh reader's hint_gen matches nothing. */
static _Atomic uint64_t next_set_gen = 1;

static struct hmaf__region_set *set_alloc(size_t n)
{
    struct hmaf__region_set *set =
        malloc(sizeof(*set) + (n == 0 ? 1 : n) * sizeof(set->v[0]));

    if (set != NULL) {
        set->gen = atomic_fetch_add(&next_set_gen, 1);
        set->n = 0;
        set->bytes = 0;
    }
    return set;
}

static void set_push(struct hmaf__region_set *set, struct hmaf__region *r)
{
    set->v[set->n++] = r;
    set->bytes += r->iv.len;
}

int hmaf__regcache_init(struct hmaf__regcache *rc, size_t max_regions,
                        uint64_t max_bytes, hmaf__region_release_fn release,
                        void *release_arg)
{
    struct hmaf__region_set *empty = set_alloc(0);
    int ret;

    memset(rc, 0, sizeof(*rc));
    if (empty == NULL) {
        return HMAF_ENOMEM;
    }
    ret = hmaf__readers_init(&rc->readers);
    if (ret < 0) {
        free(empty);
        return ret;
    }
    pthread_mutex_init(&rc->write_lock, NULL);
    atomic_init(&rc->current, empty);
    rc->max_regions = max_regions == 0 ? 1 : max_regions;
    rc->max_bytes = max_bytes;
    rc->release = release;
    rc->release_arg = release_arg;
    return 0;
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

static struct hmaf__region *list_of(const struct hmaf__region_set *set)
{
    struct hmaf__region *list = NULL;

    for (size_t i = set->n; i-- > 0;) {
        set->v[i]->next_victim = list;
        list = set->v[i];
    }
    return list;
}

void hmaf__regcache_fini(struct hmaf__regcache *rc)
{
    struct hmaf__region_set *set = atomic_load(&rc->current);

    release_list(rc, list_of(set), 0);
    free(set);
    pthread_mutex_destroy(&rc->write_lock);
    hmaf__readers_fini(&rc->readers);
}

struct hmaf__region *hmaf__regcache_find(struct hmaf__regcache *rc,
                                         uint64_t addr, uint64_t now)
{
    const struct hmaf__region_set *set =
        atomic_load_explicit(&rc->current, memory_order_acquire);
    long i = hmaf__intervals_find((struct hmaf__interval *const *)set->v,
                                  set->n, addr);
    struct hmaf__region *r;

    if (i < 0) {
        return NULL;
    }
    r = set->v[i];
    /* Plain stores, and only when the coarse clock moved: threads sharing
     * a region don't fight over its cache line. */
    if (atomic_load_explicit(&r->last_used, memory_order_relaxed) != now) {
        atomic_store_explicit(&r->last_used, now, memory_order_relaxed);
    }
    return r;
}

/* Publish next, wait until no reader can see the old set, free it. */
static void replace_set(struct hmaf__regcache *rc,
                        struct hmaf__region_set *next)
{
    struct hmaf__region_set *old = atomic_load(&rc->current);

    atomic_store_explicit(&rc->current, next, memory_order_release);
    hmaf__readers_synchronize(&rc->readers);
    free(old);
}

static int over_bounds(const struct hmaf__regcache *rc, size_t n,
                       uint64_t bytes)
{
    return n > rc->max_regions || bytes > rc->max_bytes;
}

/* Index of the least recently used region other than `keep`. */
static size_t least_recently_used(const struct hmaf__region_set *set,
                                  const struct hmaf__region *keep)
{
    size_t best = SIZE_MAX;

    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i] == keep) {
            continue;
        }
        if (best == SIZE_MAX ||
            atomic_load(&set->v[i]->last_used) <
                atomic_load(&set->v[best]->last_used)) {
            best = i;
        }
    }
    return best;
}

/* old + r, minus least recently used regions until the bounds hold (r
 * itself always stays: a region larger than the byte bound is cached
 * alone). Victims are chained onto *victims. */
static struct hmaf__region_set *set_with(struct hmaf__regcache *rc,
                                         const struct hmaf__region_set *old,
                                         struct hmaf__region *r, size_t at,
                                         struct hmaf__region **victims,
                                         uint64_t *evicted_out)
{
    struct hmaf__region_set *next = set_alloc(old->n + 1);
    size_t n = old->n + 1;
    uint64_t bytes = old->bytes + r->iv.len;

    if (next == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < old->n; i++) {
        if (i == at) {
            set_push(next, r);
        }
        set_push(next, old->v[i]);
    }
    if (at == old->n) {
        set_push(next, r);
    }
    while (n > 1 && over_bounds(rc, n, bytes)) {
        size_t victim = least_recently_used(next, r);
        struct hmaf__region *v = next->v[victim];
        memmove(&next->v[victim], &next->v[victim + 1],
                (next->n - victim - 1) * sizeof(next->v[0]));
        next->n = --n;
        next->bytes = bytes -= v->iv.len;
        v->next_victim = *victims;
        *victims = v;
        (*evicted_out)++;
    }
    return next;
}

/* Where r goes in set, or -EEXIST when it overlaps a member. */
static long insert_position(const struct hmaf__region_set *set,
                            const struct hmaf__region *r)
{
    size_t at = hmaf__intervals_upper_bound(
        (struct hmaf__interval *const *)set->v, set->n, r->iv.base);

    if (hmaf__intervals_overlap((struct hmaf__interval *const *)set->v,
                                set->n, at, &r->iv)) {
        return -EEXIST;
    }
    return (long)at;
}

static int insert_locked(struct hmaf__regcache *rc, struct hmaf__region *r,
                         struct hmaf__region **victims, uint64_t *evicted_out)
{
    const struct hmaf__region_set *old = atomic_load(&rc->current);
    struct hmaf__region_set *next;
    long at;

    if (r->epoch < rc->min_epoch) {
        return -ESTALE;
    }
    at = insert_position(old, r);
    if (at < 0) {
        return HMAF_EEXIST;
    }
    next = set_with(rc, old, r, (size_t)at, victims, evicted_out);
    if (next == NULL) {
        return HMAF_ENOMEM;
    }
    replace_set(rc, next);
    return 0;
}

int hmaf__regcache_insert(struct hmaf__regcache *rc, struct hmaf__region *r,
                          uint64_t *evicted_out)
{
    struct hmaf__region *victims = NULL;
    uint64_t evicted = 0;
    int ret;

    pthread_mutex_lock(&rc->write_lock);
    ret = insert_locked(rc, r, &victims, &evicted);
    pthread_mutex_unlock(&rc->write_lock);
    release_list(rc, victims, 1);
    if (evicted_out != NULL) {
        *evicted_out = evicted;
    }
    return ret;
}

int hmaf__regcache_clear(struct hmaf__regcache *rc, uint64_t new_epoch,
                         struct hmaf__region **dropped_out)
{
    struct hmaf__region_set *empty = set_alloc(0);
    struct hmaf__region *list;

    if (empty == NULL) {
        return HMAF_ENOMEM; /* nothing changed: the caller tries again */
    }
    pthread_mutex_lock(&rc->write_lock);
    if (new_epoch > rc->min_epoch) {
        rc->min_epoch = new_epoch;
    }
    list = list_of(atomic_load(&rc->current));
    replace_set(rc, empty);
    pthread_mutex_unlock(&rc->write_lock);
    if (dropped_out != NULL) {
        *dropped_out = list;
    } else {
        release_list(rc, list, 0);
    }
    return 0;
}

size_t hmaf__regcache_count(struct hmaf__regcache *rc)
{
    return atomic_load(&rc->current)->n;
}

uint64_t hmaf__regcache_bytes(struct hmaf__regcache *rc)
{
    return atomic_load(&rc->current)->bytes;
}
