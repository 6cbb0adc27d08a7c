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

/**
 * X(name, value, description): the one list behind hmaf_error_t,
 * hmaf_strerror() and hmaf_err_name(). A program may expand it too, with an
 * X of its own, e.g. for a table of its own messages.
 * @param X  a macro of three arguments: the code's name without HMAF_, its
 *           value, and its description (hmaf_strerror()'s text).
 */
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

/* One doc block per code: the values come from HMAF_ERROR_MAP. */
/** @var HMAF_EINVAL
 * An argument is invalid: NULL where an object is needed, a zero
 * length, unknown flags, a bad params field.
 */
/** @var HMAF_ENOMEM
 * Out of memory, on this side or on the host (which also reports memory
 * it could not pin).
 */
/** @var HMAF_EOVERFLOW
 * An address plus a length ends past 2^64 - 1.
 */
/** @var HMAF_EFAULT
 * The host range is not exposed, or not mapped in the host process.
 */
/** @var HMAF_EACCES
 * A write or an atomic to a read-only exposure or mapping.
 */
/** @var HMAF_ENOENT
 * No such root, exposure, session id or heap.
 */
/** @var HMAF_EEXIST
 * Already exists, or overlaps an existing exposure or address range.
 */
/** @var HMAF_ENAMETOOLONG
 * A root name longer than HMAF_ROOT_NAME_MAX bytes.
 */
/** @var HMAF_EPERM
 * Not permitted: to reach the host process (another user, a ptrace
 * scope, a seccomp filter), or to connect.
 */
/** @var HMAF_ENOTSUP
 * Not supported by this engine, build or process (e.g. no
 * userfaultfd, a comch address without DOCA).
 */
/** @var HMAF_ETIMEDOUT
 * Timed out waiting for the peer: a handshake, a mailbox answer, or
 * sessions confirming a revocation.
 */
/** @var HMAF_ECONNRESET
 * The connection to the peer is lost: the host, its agent or the
 * session is gone.
 */
/** @var HMAF_ECONNREFUSED
 * Nobody listens at the channel address.
 */
/** @var HMAF_EPROTO
 * A malformed message from the peer.
 */
/** @var HMAF_EBUSY
 * Busy: hmaf_agent_poll() on an agent with its own thread, a revoke of
 * the heap's exposure, or every consistent read overlapped a write.
 */
/** @var HMAF_ENOSPC
 * A limit is reached: sessions, threads on a session, file descriptors,
 * a heap quota, queued notifications, unconsumed request handles.
 */
/** @var HMAF_EADDRINUSE
 * The channel address is already in use.
 */
/** @var HMAF_EINPROGRESS
 * A posted request is not complete yet (hmaf_request_test()).
 */
/** @var HMAF_ESTALE
 * A request handle that is unknown, already consumed, or another
 * thread's.
 */
/** @var HMAF_EAUTH
 * The peer refused the authentication token.
 */
/** @var HMAF_EVERSION
 * The two sides speak different protocol versions
 * (HMAF_PROTOCOL_VERSION).
 */
/** @var HMAF_EENGINE
 * The host and the dpu side run different engines.
 */
/** @var HMAF_ENOENGINE
 * No usable engine of that name in this library, on this machine.
 */
/** @var HMAF_EADDRESS
 * A malformed channel address, or no such place to listen.
 */

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
