/**
 * @file error.h
 * @brief HMAF error codes.
 *
 * Every fallible HMAF call returns 0 on success or one negative code from
 * this table. Codes reuse -errno where one fits; HMAF's own codes are -4000
 * and below. hmaf_strerror() and hmaf_err_name() accept any int and never
 * return NULL.
 */
#ifndef HMAF_ERROR_H
#define HMAF_ERROR_H

#include <errno.h>

#include <hmaf/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description): the one list behind the enum and the text. */
#define HMAF_ERROR_MAP(X)                                                      \
    X(EINVAL, -EINVAL, "invalid argument")                                     \
    X(ENOMEM, -ENOMEM, "out of memory")                                        \
    X(EOVERFLOW, -EOVERFLOW, "address + length overflows")                     \
    X(EFAULT, -EFAULT, "host range not exposed or not mapped")                 \
    X(EACCES, -EACCES, "write to a read-only exposure")                        \
    X(ENOENT, -ENOENT, "no such root or exposure")                             \
    X(EEXIST, -EEXIST, "already exists or overlaps an existing one")           \
    X(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                            \
    X(EPERM, -EPERM, "access to the host process or a system call denied")   \
    X(ENOTSUP, -ENOTSUP, "operation not supported by this engine")             \
    X(ETIMEDOUT, -ETIMEDOUT, "timed out waiting for the peer")                 \
    X(ECONNRESET, -ECONNRESET, "connection to the peer lost")                  \
    X(ECONNREFUSED, -ECONNREFUSED, "nobody listens at the channel address")    \
    X(EPROTO, -EPROTO, "malformed message from the peer")                      \
    X(EBUSY, -EBUSY, "resource busy")                                          \
    X(ENOSPC, -ENOSPC, "limit reached")                                        \
    X(EADDRINUSE, -EADDRINUSE, "channel address already in use")               \
    X(EINPROGRESS, -EINPROGRESS, "request still in progress")                  \
    X(ESTALE, -ESTALE, "request handle unknown or already completed")          \
    X(EAUTH, -4001, "authentication token refused")                            \
    X(EVERSION, -4002, "protocol version mismatch")                            \
    X(EENGINE, -4003, "engine mismatch between host and dpu side")             \
    X(ENOENGINE, -4004, "no usable engine of that name")                       \
    X(EADDRESS, -4005, "malformed channel address")                            \
    X(EPIDNS, -4006, "host and dpu side run in different pid namespaces")

/** HMAF error codes (all negative). */
typedef enum {
#define HMAF_ERROR_ENUM_(name, value, text) HMAF_##name = (value),
    HMAF_ERROR_MAP(HMAF_ERROR_ENUM_)
#undef HMAF_ERROR_ENUM_
} hmaf_error_t;

/**
 * @brief Human-readable description of an HMAF return code.
 * @param [in] err  any int; 0 gives "success", unknown values "unknown error".
 * @return static text, never NULL.
 */
HMAF_API const char *hmaf_strerror(int err);

/**
 * @brief Symbolic name of an HMAF return code, e.g. "HMAF_EFAULT".
 * @param [in] err  any int.
 * @return static text, never NULL ("HMAF_UNKNOWN" for unknown values).
 */
HMAF_API const char *hmaf_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_ERROR_H */
