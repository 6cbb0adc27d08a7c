/*
 * Sorted arrays of non-overlapping address intervals, with O(log n)
 * lookup of the interval containing an address. Elements are owned by
 * the caller and embed struct hmaf__interval. (A set that changes often
 * is better kept in util/itree.h.)
 */
#ifndef HMAF_UTIL_INTERVALS_H
#define HMAF_UTIL_INTERVALS_H

#include <stddef.h>
#include <stdint.h>

struct hmaf__interval {
    uint64_t base;
    uint64_t len; /* > 0; base + len <= UINT64_MAX (callers check) */
};

/* On a plain sorted array v[0..n) of non-overlapping intervals: */
/* index of the first interval whose base is > addr; */
size_t hmaf__intervals_upper_bound(struct hmaf__interval *const *v, size_t n,
                                   uint64_t addr);
/* index of the interval containing addr, or -1; */
long hmaf__intervals_find(struct hmaf__interval *const *v, size_t n,
                          uint64_t addr);
/* whether iv, going in at index at, overlaps a neighbour. */
int hmaf__intervals_overlap(struct hmaf__interval *const *v, size_t n,
                            size_t at, const struct hmaf__interval *iv);

#endif
