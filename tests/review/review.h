/*
 * Shared bits of the review programs: documented-error bookkeeping,
 * groups run in child processes under a watchdog, and small helpers.
 *
 * A check names the call, the code it should return, and the list of codes
 * the header documents for that call. It reports
 *   WRONG  the call returned a documented code, but not the right one;
 *   UNDOC  the call returned a code its header does not list;
 * and goes on. A group runs in a child process: a crash, a sanitizer
 * report, a leak (LeakSanitizer's exit code) or a hang (the step it was
 * in when the watchdog fired) is reported against the group.
 */
#ifndef HMAF_REVIEW_H
#define HMAF_REVIEW_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/hmaf.h>

/* A list of codes ends with this (no HMAF code is positive). */
#define DOC_END 1
/* "Any code of the documented list (or 0) is right." */
#define WANT_ANY_DOC 2

#define DOC(...) ((const int[]){__VA_ARGS__, DOC_END})

/* The headers' lists, call by call (include/hmaf: host.h, session.h, map.h). */
#define D_AGENT_CREATE                                                         \
    HMAF_EINVAL, HMAF_EADDRESS, HMAF_EADDRINUSE, HMAF_EPERM, HMAF_ENOENGINE,   \
        HMAF_ENOMEM, HMAF_ENOSPC
#define D_AGENT_LISTEN                                                         \
    HMAF_EINVAL, HMAF_EADDRESS, HMAF_EADDRINUSE, HMAF_EPERM, HMAF_ENOMEM,      \
        HMAF_ENOSPC
#define D_AGENT_DIAL                                                           \
    HMAF_EINVAL, HMAF_EADDRESS, HMAF_ECONNREFUSED, HMAF_ECONNRESET,            \
        HMAF_ETIMEDOUT, HMAF_EAUTH, HMAF_EVERSION, HMAF_EENGINE, HMAF_EPROTO,  \
        HMAF_ENOSPC, HMAF_ENOMEM, HMAF_EPERM, HMAF_ENOTSUP
#define D_AGENT_EXPOSE HMAF_EINVAL, HMAF_EOVERFLOW, HMAF_EEXIST, HMAF_ENOMEM
#define D_AGENT_REVOKE HMAF_ETIMEDOUT, HMAF_ENOENT, HMAF_EINVAL
#define D_AGENT_PUBLISH                                                        \
    HMAF_EINVAL, HMAF_EOVERFLOW, HMAF_ENAMETOOLONG, HMAF_EEXIST, HMAF_ENOSPC,  \
        HMAF_ENOMEM
#define D_AGENT_UNPUBLISH HMAF_ENOENT, HMAF_EINVAL, HMAF_ENAMETOOLONG
#define D_AGENT_POLL      HMAF_EBUSY, HMAF_EINVAL
#define D_AGENT_STATS     HMAF_EINVAL
#define D_SESSION_CREATE                                                       \
    HMAF_EINVAL, HMAF_EADDRESS, HMAF_ECONNREFUSED, HMAF_ETIMEDOUT, HMAF_EAUTH, \
        HMAF_EVERSION, HMAF_EENGINE, HMAF_ENOENGINE, HMAF_EPROTO, HMAF_ENOMEM, \
        HMAF_ENOSPC, HMAF_ECONNRESET, HMAF_EPERM, HMAF_EADDRINUSE,             \
        HMAF_ENOTSUP
#define D_LOOKUP                                                               \
    HMAF_ENOENT, HMAF_EINVAL, HMAF_ENAMETOOLONG, HMAF_ECONNRESET,              \
        HMAF_ETIMEDOUT, HMAF_EPROTO, HMAF_EPERM, HMAF_ENOSPC
#define D_READ                                                                 \
    HMAF_EINVAL, HMAF_EOVERFLOW, HMAF_EFAULT, HMAF_ECONNRESET, HMAF_ETIMEDOUT, \
        HMAF_EPERM, HMAF_ENOSPC, HMAF_EPROTO, HMAF_ENOMEM
#define D_WRITE D_READ, HMAF_EACCES
#define D_POST                                                                 \
    HMAF_EINVAL, HMAF_EOVERFLOW, HMAF_ECONNRESET, HMAF_ENOSPC, HMAF_ENOMEM
/* test/wait: the request's own error (a read's or write's) too */
#define D_TEST  D_WRITE, HMAF_EINPROGRESS, HMAF_ESTALE
#define D_WAIT  D_WRITE, HMAF_ESTALE
#define D_FLUSH D_WRITE
#define D_CHASE D_READ
#define D_PING                                                                 \
    HMAF_EINVAL, HMAF_ECONNRESET, HMAF_ETIMEDOUT, HMAF_EPROTO, HMAF_EPERM,     \
        HMAF_ENOSPC
#define D_SESSION_STATS HMAF_EINVAL
#define D_MAP_CREATE                                                           \
    HMAF_EINVAL, HMAF_EOVERFLOW, HMAF_EEXIST, HMAF_ENOTSUP, HMAF_ENOMEM,       \
        HMAF_ENOSPC
#define D_MAP_SYNC                                                             \
    HMAF_EACCES, HMAF_EFAULT, HMAF_ECONNRESET, HMAF_EINVAL, HMAF_ETIMEDOUT,    \
        HMAF_EPROTO, HMAF_ENOMEM, HMAF_ENOSPC, HMAF_EPERM
#define D_MAP_REFRESH HMAF_EINVAL
#define D_MAP_STATS   HMAF_EINVAL

/* Check one return value; see the file comment. */
void review_expect(const char *file, int line, const char *call, int got,
                   int want, const int *doc);
#define EXPECT(call, want, doc)                                                \
    review_expect(__FILE__, __LINE__, #call, (call), (want), (doc))
/* The same, with a description instead of the expression text. */
#define EXPECT_AS(what, got, want, doc)                                        \
    review_expect(__FILE__, __LINE__, (what), (got), (want), (doc))
/* A plain condition that must hold (a crash-free "never NULL" and such). */
void review_assert(const char *file, int line, const char *what, int ok);
#define ASSERT_THAT(what, cond)                                                \
    review_assert(__FILE__, __LINE__, (what), (cond))

/* Name the step a group is in, with the time it may take at most (ms)
 * before the watchdog calls it a hang. */
void review_step(const char *name, unsigned budget_ms);

/* Findings of this process (a group's child) so far. */
int review_findings(void);

typedef void (*review_group_fn)(void);
/* Run fn in a child process; the result line goes to stdout. Returns 1 if
 * the group reported anything. */
int review_run_group(const char *name, review_group_fn fn);

/* Open file descriptors of a process (0: this one). */
int review_count_fds(int pid);

/* Run fn(arg) in a child process (call it only while this process has no
 * threads): fn's return value, or REVIEW_HUNG when it took longer than
 * budget_ms (the child is killed), or REVIEW_CRASHED. A child that
 * returned but then failed its exit (a leak report) adds a finding. */
#define REVIEW_HUNG    100001
#define REVIEW_CRASHED 100002
int review_isolated(const char *what, unsigned budget_ms, int (*fn)(void *),
                    void *arg);

/* Multiply time budgets (valgrind): $HMAF_REVIEW_SLOW, default 1. */
unsigned review_slow(void);

#endif
