/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Pinning as a process without privileges sees it, for tests of the DOCA
 * emulation's default rule (a pin counts against RLIMIT_MEMLOCK unless
 * the process has CAP_IPC_LOCK): lower RLIMIT_MEMLOCK's soft limit, and
 * drop CAP_IPC_LOCK from the effective set, then put both back. The
 * capability stays permitted, so a test run as root gets it back; a test
 * run without it has nothing to drop. Header-only: the unit and the
 * integration tests link different helper libraries.
 */
#ifndef HMAF_TEST_MEMLOCK_H
#define HMAF_TEST_MEMLOCK_H

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct memlock_saved {
    struct rlimit rl;
    int dropped_cap; /* CAP_IPC_LOCK was effective, and dropped */
};

static inline int memlock_caps(struct __user_cap_header_struct *hdr,
                               struct __user_cap_data_struct *data)
{
    *hdr = (struct __user_cap_header_struct){_LINUX_CAPABILITY_VERSION_3, 0};
    return syscall(SYS_capget, hdr, data) == 0 ? 0 : -1;
}

/* Is CAP_IPC_LOCK effective (the kernel's test at each pin)? */
static inline int memlock_has_cap(void)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    return memlock_caps(&hdr, data) == 0 &&
           (data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &
            CAP_TO_MASK(CAP_IPC_LOCK)) != 0;
}

/* Make CAP_IPC_LOCK effective or not; *had_out: whether it was. 0 or
 * -1 (raising it needs it permitted). */
static inline int memlock_set_cap(int on, int *had_out)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    unsigned i = CAP_TO_INDEX(CAP_IPC_LOCK);
    unsigned mask = CAP_TO_MASK(CAP_IPC_LOCK);
    int had;

    if (memlock_caps(&hdr, data) != 0) {
        return -1;
    }
    had = (data[i].effective & mask) != 0;
    if (had_out != NULL) {
        *had_out = had;
    }
    if (had == (on != 0)) {
        return 0;
    }
    data[i].effective =
        on ? data[i].effective | mask : data[i].effective & ~mask;
    return syscall(SYS_capset, &hdr, data) == 0 ? 0 : -1;
}

/* A soft limit of `bytes`, with CAP_IPC_LOCK dropped or kept. 0 or -1. */
static inline int memlock_limit(struct memlock_saved *saved, rlim_t bytes,
                                int drop_cap)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_MEMLOCK, &saved->rl) != 0) {
        return -1;
    }
    rl = saved->rl;
    rl.rlim_cur = bytes;
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
        return -1;
    }
    saved->dropped_cap = 0;
    return drop_cap ? memlock_set_cap(0, &saved->dropped_cap) : 0;
}

static inline int memlock_restore(const struct memlock_saved *saved)
{
    if (setrlimit(RLIMIT_MEMLOCK, &saved->rl) != 0) {
        return -1;
    }
    return saved->dropped_cap ? memlock_set_cap(1, NULL) : 0;
}

#endif
