#include "util/intervals.h"

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
