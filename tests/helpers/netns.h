/*
 * Two machines on one: tests/integration/netns_run.sh runs a test inside
 * a network namespace of its own (the dpu side's) and names another (the
 * host's) in HMAF_TEST_HOST_NETNS, with the host's address on the veth
 * pair between them in HMAF_TEST_HOST_ADDRESS ("tcp:10.199.0.1"). A
 * forked host enters that namespace before it opens anything, and its
 * agent listens there. Outside netns_run.sh neither is set: nothing
 * changes.
 */
#ifndef HMAF_TEST_NETNS_H
#define HMAF_TEST_NETNS_H

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include "check.h"

/* The host's "tcp:ADDR" when the test runs across namespaces, else NULL. */
static inline const char *netns_host_address(void)
{
    const char *ns = getenv("HMAF_TEST_HOST_NETNS");
    const char *addr = getenv("HMAF_TEST_HOST_ADDRESS");

    return ns != NULL && ns[0] != '\0' && addr != NULL ? addr : NULL;
}

/* sysfs shows the network devices of the namespace that mounted it: the
 * host's own view needs a sysfs of its own, in a mount namespace of its
 * own (as ip-netns-exec(8) does). UCX finds its devices there. */
static inline int netns_remount_sysfs(void)
{
    return unshare(CLONE_NEWNS) == 0 &&
                   mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) == 0 &&
                   umount2("/sys", MNT_DETACH) == 0 &&
                   mount("sysfs", "/sys", "sysfs", 0, NULL) == 0
               ? 0
               : -1;
}

/* In a forked host, before it opens a socket: into the host's namespace. */
static inline void netns_enter_host(void)
{
    const char *ns = getenv("HMAF_TEST_HOST_NETNS");
    int fd;

    if (netns_host_address() == NULL) {
        return;
    }
    fd = open(ns, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0 || netns_remount_sysfs() != 0) {
        fprintf(stderr, "cannot enter the host's namespace %s\n", ns);
        exit(1);
    }
    close(fd);
}

#endif
