#include "util/intervals.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Index of the first member whose base is > addr. */
static size_t upper_bound(const struct hmaf__interval_set *set, uint64_t addr)
{
    size_t lo = 0, hi = set->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->v[mid]->base <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

long hmaf__iset_find(const struct hmaf__interval_set *set, uint64_t addr)
{
    size_t i = upper_bound(set, addr);

    if (i == 0 || addr - set->v[i - 1]->base >= set->v[i - 1]->len) {
        return -1;
    }
    return (long)(i - 1);
}

static int overlaps_neighbours(const struct hmaf__interval_set *set,
                               size_t at, const struct hmaf__interval *iv)
{
    /* Compare last bytes, not ends: an end of exactly 2^64 would wrap. */
    if (at > 0 && set->v[at - 1]->base + (set->v[at - 1]->len - 1) >= iv->base) {
        return 1;
    }
    return at < set->n && iv->base + (iv->len - 1) >= set->v[at]->base;
}

int hmaf__iset_insert(struct hmaf__interval_set *set,
                      struct hmaf__interval *iv)
{
    size_t at = upper_bound(set, iv->base);

    if (overlaps_neighbours(set, at, iv)) {
        return -EEXIST;
    }
    if (set->n == set->cap) {
        size_t cap = set->cap == 0 ? 16 : set->cap * 2;
        struct hmaf__interval **v = realloc(set->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        set->v = v;
        set->cap = cap;
    }
    memmove(&set->v[at + 1], &set->v[at], (set->n - at) * sizeof(set->v[0]));
    set->v[at] = iv;
    set->n++;
    return 0;
}

struct hmaf__interval *hmaf__iset_remove_at(struct hmaf__interval_set *set,
                                            size_t i)
{
    struct hmaf__interval *iv = set->v[i];

    memmove(&set->v[i], &set->v[i + 1], (set->n - i - 1) * sizeof(set->v[0]));
    set->n--;
    return iv;
}

void hmaf__iset_fini(struct hmaf__interval_set *set)
{
    free(set->v);
    memset(set, 0, sizeof(*set));
}
