/**
 * @file types.h
 * @brief Types and limits both sides of HMAF share.
 */
#ifndef HMAF_TYPES_H
#define HMAF_TYPES_H

#include <hmaf/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest auth token, in bytes (host and dpu side must agree on it). */
#define HMAF_TOKEN_MAX 32
/** Longest root name, in bytes, without the terminating NUL. */
#define HMAF_ROOT_NAME_MAX 63

/**
 * Largest `size` a stats struct may declare.
 *
 * Every counters struct (hmaf_session_stats_t, hmaf_agent_stats_t,
 * hmaf_map_stats_t, hmaf_heap_stats_t, hmaf_session_heap_stats_t) starts
 * with `size_t size`, so that counters can be added at its end without
 * breaking programs built against an older header. Before the call the
 * caller sets size to the sizeof of the struct it was built with; the
 * struct's initializer does it:
 * @code
 *   hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
 *   ret = hmaf_session_stats(session, &st);
 * @endcode
 * The getter accepts a size that is a multiple of 8, at least the size of
 * the struct's first version (its sizeof in HMAF 0.1) and at most
 * HMAF_STATS_SIZE_MAX; any other size (0 included) gives HMAF_EINVAL and
 * nothing is written. Otherwise it fills the fields it knows that fit in
 * size, sets to zero every byte from its own sizeof up to size (counters
 * of a newer header, unknown to this library), never writes past size,
 * and leaves size as the caller set it: the struct may be passed again.
 */
#define HMAF_STATS_SIZE_MAX 4096

/** Access a dpu side gets to an exposed range. */
typedef enum hmaf_access {
    HMAF_ACCESS_READ = 1,      /**< read-only */
    HMAF_ACCESS_READ_WRITE = 3 /**< read and write */
} hmaf_access_t;

#ifdef __cplusplus
}
#endif

#endif /* HMAF_TYPES_H */
