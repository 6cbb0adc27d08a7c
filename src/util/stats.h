/*
 * The public counters structs carry their caller's size (types.h,
 * HMAF_STATS_SIZE_MAX): a getter takes a snapshot in its own version of the
 * struct, checks the size the caller declared, and copies what fits. The
 * snapshot is the library's whole struct, so a caller built against an
 * older header (a smaller size) gets the fields it knows, and one built
 * against a newer header (a larger size) gets zeros for the fields this
 * library does not know.
 */
#ifndef HMAF_UTIL_STATS_H
#define HMAF_UTIL_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hmaf/error.h>
#include <hmaf/types.h>

/* The size of a stats struct's first version, whose last field is `last`:
 * callers never declare less. Fields added later go after it, so this
 * stays what it was when sizeof grows. */
#define HMAF__STATS_SIZE_MIN(type, last)                                       \
    (offsetof(type, last) + sizeof(((type *)0)->last))

/* Whole counters only: a declared size ends on a field of some version. */
#define HMAF__STATS_ALIGN 8u

/* name: the first version's size of type, whose last field then was
 * `last`; the build fails where that or the struct is not whole
 * counters. */
#define HMAF__STATS_SIZE_MIN_DEFINE(name, type, last)                          \
    enum { name = HMAF__STATS_SIZE_MIN(type, last) };                          \
    _Static_assert(name % HMAF__STATS_ALIGN == 0 &&                            \
                       sizeof(type) % HMAF__STATS_ALIGN == 0,                  \
                   #type ": whole counters")

/* The size the caller's struct out declares, read once (a second read
 * could see another value), into *size_out: 0, or HMAF_EINVAL when out is
 * NULL or the size is not one a getter may fill, for a struct whose first
 * version had min bytes. */
static inline int hmaf__stats_size(const void *out, size_t min,
                                   size_t *size_out)
{
    size_t size;

    if (out == NULL) {
        return HMAF_EINVAL;
    }
    memcpy(&size, out, sizeof(size));
    if (size < min || size > HMAF_STATS_SIZE_MAX ||
        size % HMAF__STATS_ALIGN != 0) {
        return HMAF_EINVAL;
    }
    *size_out = size;
    return 0;
}

/* Copy the snapshot (snap_size bytes, the library's sizeof; its size
 * field ignored) to the caller's struct of out_size bytes: every field
 * that fits, zeros from snap_size up to out_size, nothing past out_size.
 * The caller's size field, the first, stays as it is. */
static inline void hmaf__stats_put(void *out, size_t out_size, const void *snap,
                                   size_t snap_size)
{
    size_t n = out_size < snap_size ? out_size : snap_size;

    memcpy((char *)out + sizeof(size_t), (const char *)snap + sizeof(size_t),
           n - sizeof(size_t));
    if (out_size > snap_size) {
        memset((char *)out + snap_size, 0, out_size - snap_size);
    }
}

#endif
