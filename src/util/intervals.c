#include "util/intervals.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t hmaf__intervals_upper_bound(struct hmaf__interval *const *v, size_t n,
                                   uint64_t addr)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid]->base <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

long hmaf__intervals_find(struct hmaf__interval *const *v, size_t n,
                          uint64_t addr)
{
    size_t i = hmaf__intervals_upper_bound(v, n, addr);

    if (i == 0 || addr - v[i - 1]->base >= v[i - 1]->len) {
        return -1;
    }
    return (long)(i - 1);
}

int hmaf__intervals_overlap(struct hmaf__interval *const *v, size_t n,
                            size_t at, const struct hmaf__interval *iv)
{
    /* Compare last bytes, not ends: an end of exactly 2^64 would wrap. */
    if (at > 0 && v[at - 1]->base + (v[at - 1]->len - 1) >= iv->base) {
        return 1;
    }
    return at < n && iv->base + (iv->len - 1) >= v[at]->base;
}

long hmaf__iset_find(const struct hmaf__interval_set *set, uint64_t addr)
{
    return hmaf__intervals_find(set->v, set->n, addr);
}

int hmaf__iset_insert(struct hmaf__interval_set *set,
                      struct hmaf__interval *iv)
{
    size_t at = hmaf__intervals_upper_bound(set->v, set->n, iv->base);

    if (hmaf__intervals_overlap(set->v, set->n, at, iv)) {
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
