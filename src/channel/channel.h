/*
 * Bootstrap channels: a reliable byte stream between host and dpu side,
 * used for the handshake and afterwards only to notice that the peer died.
 *
 * Addresses: "unix:PATH" (PATH starting with '@' is Linux's abstract
 * namespace) and "tcp:HOST:PORT" (HOST may be "[v6addr]"; port 0 when
 * listening picks a free port). Either side may listen. Each prefix names
 * a transport (src/channel/transport.h, listed in channel.c).
 *
 * Where comch is built (HMAF_HAVE_CHANNEL_COMCH: with the DOCA SDK, or
 * against the DOCA emulation for tests) also "comch:NAME@PCI" (DOCA Comm
 * Channel, src/channel/comch.c): only the dpu side listens, at
 * "comch:NAME@PCI/REP" (its PF, then the host PF's representor), and only
 * the host connects, to "comch:NAME@PCI" (its BlueField PF). Elsewhere a
 * comch address is HMAF_ENOTSUP. A comch channel has no fd to wait on
 * (DOCA's Comm Channel has no event-triggered completions): its peer death
 * is seen only by calling hmaf__channel_peer_gone. Its sends and receives
 * move whole messages of at most the channel's max message size (a longer
 * send is HMAF_ENOSPC). A NAME longer than the device takes is
 * HMAF_EINVAL; a device whose messages cannot hold the handshake is
 * HMAF_ENOSPC, at listen or connect.
 */
#ifndef HMAF_CHANNEL_CHANNEL_H
#define HMAF_CHANNEL_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

struct hmaf_listener;
struct hmaf_channel_ops;

/* An unused channel is {.fd = -1}. One made from a bare socket ({.fd =
 * fd}, no ops: a socketpair's end in tests) is a socket channel. */
struct hmaf_channel {
    int fd; /* -1 when the transport has none to wait on (comch) */
    const struct hmaf_channel_ops *ops; /* its transport's */
    void *conn; /* the transport's own state (comch), NULL for sockets */
};

/* Listen at address; the listener's fd is non-blocking. */
int hmaf__listener_open(const char *address,
                        struct hmaf_listener **listener_out);
/* The bound address, with the real port for tcp port 0. */
const char *hmaf__listener_address(const struct hmaf_listener *listener);
/* -1 for a comch listener: it is driven only by the accept calls. */
int hmaf__listener_fd(const struct hmaf_listener *listener);
/* 1 when a connection waits to be accepted (a comch listener: when it
 * may: it is told only by accepting). */
int hmaf__listener_has_newcomer(const struct hmaf_listener *listener);
/* One pending connection; -EAGAIN when there is none, -EMFILE when the
 * process (or system) is out of file descriptors. */
int hmaf__listener_accept(struct hmaf_listener *listener,
                          struct hmaf_channel *channel_out);
/* Wait up to timeout_ms for one connection. */
int hmaf__listener_accept_wait(struct hmaf_listener *listener, int timeout_ms,
                               struct hmaf_channel *channel_out);
void hmaf__listener_close(struct hmaf_listener *listener);

/* Connect, retrying while nobody listens yet, until timeout_ms (comch:
 * HMAF_ETIMEDOUT when no server came). */
int hmaf__channel_connect(const char *address, int timeout_ms,
                          struct hmaf_channel *channel_out);
/* Exactly len bytes, or an error: -ETIMEDOUT at deadline_ns (monotonic),
 * -ECONNRESET when the peer closed. */
int hmaf__channel_send(struct hmaf_channel *channel, const void *buf,
                       size_t len, uint64_t deadline_ns);
int hmaf__channel_recv(struct hmaf_channel *channel, void *buf, size_t len,
                       uint64_t deadline_ns);
/* After the handshake a socket channel carries one thing only: nudges,
 * one byte each, both ways. From the host: look at your mailbox now (a
 * revocation, a ring). From the dpu side: the agent's doorbell, serve the
 * mailboxes now (a request found the agent's thread asleep). A comch
 * channel carries none. */
#define HMAF_CHANNEL_NUDGE 'N'

/* 1 when the peer closed, failed, or sent anything after the handshake
 * but nudges; 0 while it looks alive. No wait. */
int hmaf__channel_peer_gone(struct hmaf_channel *channel);
/* The same, taking the nudges that arrived (for the one thread that
 * sleeps on the channel: else it would wake for them again and again). */
int hmaf__channel_take_nudges(struct hmaf_channel *channel);
/* Nudge the peer (best effort, never waits; no-op on comch). */
void hmaf__channel_nudge(struct hmaf_channel *channel);
/* 1 when the peer closed its end (end of file) or the connection failed —
 * not merely sent something; comch: as hmaf__channel_peer_gone. No wait. */
int hmaf__channel_peer_closed(struct hmaf_channel *channel);
/* Tell the peer this side is closing, and go on seeing when it is gone:
 * a socket half-closes; a comch channel sends one byte (after the
 * handshake any message ends the session), waiting at most until
 * deadline_ns (hmaf__now_ns clock) for it to leave. */
void hmaf__channel_shutdown(struct hmaf_channel *channel,
                            uint64_t deadline_ns);
void hmaf__channel_close(struct hmaf_channel *channel);
/* The peer process's pid as the kernel reports it (unix sockets), 0
 * when the channel cannot tell (tcp), HMAF_PEER_PID_HIDDEN
 * (util/pidns.h) when it can but the peer runs in a pid namespace this
 * process does not see. */
int hmaf__channel_peer_pid(struct hmaf_channel *channel);
/* Whether address names a channel that can leave this machine (tcp). */
int hmaf__channel_is_remote(const char *address);
/* Whether address is a comch one (whatever this build supports). */
int hmaf__channel_is_comch(const char *address);

/* For a wait on the channel (after the handshake): *fd_out is the fd to
 * poll for POLLIN, or -1 when there is none (comch), and then only asking
 * hmaf__channel_peer_gone (every millisecond or so) tells. 1 when the peer
 * is gone already, else 0. Inline, as is the next: the agent's loop calls
 * them for every session on every turn. */
static inline int hmaf__channel_arm(struct hmaf_channel *channel, int *fd_out)
{
    *fd_out = channel->fd; /* a socket needs no arming; comch has none */
    return 0;
}

/* The fd from hmaf__channel_arm was readable: 1 when the peer is gone;
 * its doorbell nudges are taken (the caller serves the mailboxes next). */
static inline int hmaf__channel_notified(struct hmaf_channel *channel)
{
    return hmaf__channel_take_nudges(channel);
}

#endif
