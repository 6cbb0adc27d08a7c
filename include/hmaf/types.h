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

/** Access a dpu side gets to an exposed range. */
typedef enum hmaf_access {
    HMAF_ACCESS_READ = 1,      /**< read-only */
    HMAF_ACCESS_READ_WRITE = 3 /**< read and write */
} hmaf_access_t;

#ifdef __cplusplus
}
#endif

#endif /* HMAF_TYPES_H */
