/*
 * Local address ranges whose pages a fault thread of ours fills on first
 * touch (mapping mode's userfaultfd mirrors). Such memory must not be a
 * transfer's local buffer as it is: the engine would touch it inside the
 * transfer — the kernel (cma) cannot fault it in at all, a user-mode copy
 * (doca's staging) faults while holding what the fault thread needs — so
 * the data path moves it through a bounce buffer instead. The check costs
 * two loads when no mirror is near the buffer.
 */
#ifndef HMAF_UTIL_MIRRORS_H
#define HMAF_UTIL_MIRRORS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The lowest start and highest end of all mirrors: nothing outside. */
extern _Atomic uintptr_t hmaf__mirrors_lo, hmaf__mirrors_hi;

int hmaf__mirrors_add(const void *base, size_t len);
void hmaf__mirrors_remove(const void *base);
/* Does [p, p + len) overlap a mirror? Exact; takes a lock. */
int hmaf__mirrors_overlap_slow(const void *p, size_t len);

static inline int hmaf__mirrors_overlap(const void *p, size_t len)
{
    uintptr_t at = (uintptr_t)p;

    if (at >= atomic_load_explicit(&hmaf__mirrors_hi, memory_order_relaxed) ||
        at + len <=
            atomic_load_explicit(&hmaf__mirrors_lo, memory_order_relaxed)) {
        return 0;
    }
    return hmaf__mirrors_overlap_slow(p, len);
}

#endif
