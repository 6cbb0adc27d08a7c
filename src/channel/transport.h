/*
 * The transport contract: how channel.c reaches unix, tcp and comch
 * without knowing which it drives. Not seen outside src/channel/.
 *
 * One const ops table per transport, listed once in channel.c and chosen
 * by the address's prefix ("unix:", "tcp:", "comch:"). unix and tcp share
 * their fd code (socket.c); comch (comch.c) is built only where DOCA is
 * (HMAF_HAVE_CHANNEL_COMCH). channel.c allocates each listener with the
 * size the table declares; the transport embeds struct hmaf_listener
 * first and reaches its own with hmaf__container_of(). A channel is
 * struct hmaf_channel: its fd, its ops, and the transport's own state.
 */
#ifndef HMAF_CHANNEL_TRANSPORT_H
#define HMAF_CHANNEL_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "channel/channel.h"

#define HMAF_CHANNEL_ADDRESS_MAX 160

/* ops->flags */
/* The transport's channels can leave this machine (tcp). */
#define HMAF_CHANNEL_REMOTE 1u

struct hmaf_listener {
    const struct hmaf_channel_ops *ops;
    int fd; /* -1 when the transport has none to wait on (comch) */
    char address[HMAF_CHANNEL_ADDRESS_MAX]; /* as bound */
};

/*
 * Every op is required but nudge and peer_pid. address is the whole one,
 * prefix included. The error codes and waits are those channel.h states.
 */
struct hmaf_channel_ops {
    const char *prefix; /* "unix:": an address starting so is ours */
    unsigned flags;
    size_t listener_size; /* >= sizeof(struct hmaf_listener) */

    /* listener->ops is set, ->fd is -1 and ->address holds address; the
     * rest of listener_size is zeroed. The transport may rewrite
     * ->address (tcp port 0: the real port). On failure it leaves nothing
     * to release: listener_close is not called. */
    int (*listen)(struct hmaf_listener *listener, const char *address);
    /* One pending connection, no wait (-EAGAIN when there is none). */
    int (*accept)(struct hmaf_listener *listener,
                  struct hmaf_channel *channel_out);
    int (*accept_wait)(struct hmaf_listener *listener, int timeout_ms,
                       struct hmaf_channel *channel_out);
    /* What listen acquired; channel.c frees the listener itself. */
    void (*listener_close)(struct hmaf_listener *listener);

    /* channel_out is written on success only, its ops included. */
    int (*connect)(const char *address, int timeout_ms,
                   struct hmaf_channel *channel_out);
    int (*send)(struct hmaf_channel *channel, const void *buf, size_t len,
                uint64_t deadline_ns);
    int (*recv)(struct hmaf_channel *channel, void *buf, size_t len,
                uint64_t deadline_ns);
    /* hmaf__channel_peer_gone, or with take_nudges set,
     * hmaf__channel_take_nudges. */
    int (*peer_gone)(struct hmaf_channel *channel, int take_nudges);
    int (*peer_closed)(struct hmaf_channel *channel);
    /* NULL: the transport carries no nudges. */
    void (*nudge)(struct hmaf_channel *channel);
    void (*shutdown)(struct hmaf_channel *channel, uint64_t deadline_ns);
    /* What connect or accept acquired; channel.c then resets the channel
     * to an unused one. */
    void (*close)(struct hmaf_channel *channel);
    /* NULL: the transport cannot tell (0). HMAF_PEER_PID_HIDDEN: a
     * peer outside our pid namespace. */
    int (*peer_pid)(struct hmaf_channel *channel);
};

/* socket.c */
extern const struct hmaf_channel_ops hmaf_channel_unix;
extern const struct hmaf_channel_ops hmaf_channel_tcp;
/* comch.c, defined only with HMAF_HAVE_CHANNEL_COMCH */
extern const struct hmaf_channel_ops hmaf_channel_comch;

#endif
