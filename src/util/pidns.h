/*
 * Pid namespaces, for saying why a peer's pid does not match: a unix
 * socket's credentials give a peer's pid as this process's namespace
 * sees it (0 when it does not see the peer at all), the peer's own
 * getpid() as its namespace does.
 */
#ifndef HMAF_UTIL_PIDNS_H
#define HMAF_UTIL_PIDNS_H

/* A peer the kernel vouches for but cannot name here: it runs in a pid
 * namespace this process does not see (an ancestor's or a sibling's). The
 * channel's and the engine's peer_pid take this value for it. */
#define HMAF_PEER_PID_HIDDEN (-1)

/* The pid that process pid (as this namespace sees it) has in its own,
 * innermost pid namespace: pid itself when it runs in ours, another
 * number when it runs in a namespace nested in ours; 0 when /proc cannot
 * tell (gone, no NSpid line before Linux 4.1, or a /proc mounted for
 * another pid namespace). */
int hmaf__pidns_inner_pid(int pid);

/* Fixed text for the fix, shared by every message about it. */
#define HMAF_PIDNS_FIX                                                         \
    "run host and dpu side in one pid namespace (docker: --pid=host, or "      \
    "--pid=container:<the other container>; kubernetes: "                      \
    "shareProcessNamespace)"

#endif
