/*
 * The channel API (channel.h) over the transports: the address's prefix
 * picks one, and the channel or listener then carries its ops. The list is
 * explicit, as the engines' is (engine/registry.c), so static linking keeps
 * every transport; a transport whose SDK is not built is left out of it.
 */
#include "channel/channel.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#include "channel/transport.h"
#include "util/compiler.h"
#include "util/log.h"

static const struct hmaf_channel_ops *const transports[] = {
    &hmaf_channel_unix,
    &hmaf_channel_tcp,
#ifdef HMAF_HAVE_CHANNEL_COMCH
    &hmaf_channel_comch,
#endif
};

/* The transport address names, or NULL; says nothing. */
static const struct hmaf_channel_ops *transport_of(const char *address)
{
    if (address == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < HMAF_ARRAY_SIZE(transports); i++) {
        const char *prefix = transports[i]->prefix;

        if (strncmp(address, prefix, strlen(prefix)) == 0) {
            return transports[i];
        }
    }
    return NULL;
}

/* The same, or why there is none (logged here, once). */
static int find_transport(const char *address,
                          const struct hmaf_channel_ops **ops_out)
{
    if (address == NULL) {
        return HMAF_EINVAL;
    }
    *ops_out = transport_of(address);
    if (*ops_out != NULL) {
        return 0;
    }
    /* A comch address is good; this build just has no comch to take it. */
    if (hmaf__channel_is_comch(address)) {
        hmaf__log_error("channel '%s': this libhmaf has no DOCA", address);
        return HMAF_ENOTSUP;
    }
    hmaf__log_error("unknown channel address '%s' (want unix: or tcp:)",
                    address);
    return HMAF_EADDRESS;
}

/* A channel made from a bare socket has no ops (channel.h). */
static const struct hmaf_channel_ops *
ops_of(const struct hmaf_channel *channel)
{
    return channel->ops != NULL ? channel->ops : &hmaf_channel_unix;
}

int hmaf__listener_open(const char *address,
                        struct hmaf_listener **listener_out)
{
    const struct hmaf_channel_ops *ops;
    struct hmaf_listener *l;
    int ret = find_transport(address, &ops);

    if (ret < 0) {
        return ret;
    }
    l = calloc(1, ops->listener_size);
    if (l == NULL) {
        return HMAF_ENOMEM;
    }
    l->ops = ops;
    l->fd = -1;
    snprintf(l->address, sizeof(l->address), "%s", address);
    ret = ops->listen(l, address);
    if (ret < 0) {
        free(l);
        return ret;
    }
    *listener_out = l;
    return 0;
}

const char *hmaf__listener_address(const struct hmaf_listener *listener)
{
    return listener->address;
}

int hmaf__listener_fd(const struct hmaf_listener *listener)
{
    return listener->fd;
}

/* A listener without an fd is told only by accepting: it may. */
int hmaf__listener_has_newcomer(const struct hmaf_listener *listener)
{
    struct pollfd p = {.fd = listener->fd, .events = POLLIN};

    return listener->fd < 0 || poll(&p, 1, 0) > 0;
}

int hmaf__listener_accept(struct hmaf_listener *listener,
                          struct hmaf_channel *channel_out)
{
    return listener->ops->accept(listener, channel_out);
}

int hmaf__listener_accept_wait(struct hmaf_listener *listener, int timeout_ms,
                               struct hmaf_channel *channel_out)
{
    return listener->ops->accept_wait(listener, timeout_ms, channel_out);
}

void hmaf__listener_close(struct hmaf_listener *listener)
{
    if (listener == NULL) {
        return;
    }
    listener->ops->listener_close(listener);
    free(listener);
}

int hmaf__channel_connect(const char *address, int timeout_ms,
                          struct hmaf_channel *channel_out)
{
    const struct hmaf_channel_ops *ops;
    int ret = find_transport(address, &ops);

    if (ret == HMAF_ENOTSUP) {
        hmaf__log_info("connect %s: %s", address, hmaf_strerror(ret));
    }
    return ret < 0 ? ret : ops->connect(address, timeout_ms, channel_out);
}

int hmaf__channel_send(struct hmaf_channel *channel, const void *buf,
                       size_t len, uint64_t deadline_ns)
{
    return ops_of(channel)->send(channel, buf, len, deadline_ns);
}

int hmaf__channel_recv(struct hmaf_channel *channel, void *buf, size_t len,
                       uint64_t deadline_ns)
{
    return ops_of(channel)->recv(channel, buf, len, deadline_ns);
}

int hmaf__channel_peer_closed(struct hmaf_channel *channel)
{
    return ops_of(channel)->peer_closed(channel);
}

int hmaf__channel_peer_gone(struct hmaf_channel *channel)
{
    return ops_of(channel)->peer_gone(channel, 0);
}

int hmaf__channel_take_nudges(struct hmaf_channel *channel)
{
    return ops_of(channel)->peer_gone(channel, 1);
}

void hmaf__channel_nudge(struct hmaf_channel *channel)
{
    const struct hmaf_channel_ops *ops = ops_of(channel);

    if (ops->nudge != NULL) {
        ops->nudge(channel);
    }
}

void hmaf__channel_shutdown(struct hmaf_channel *channel,
                            uint64_t deadline_ns)
{
    ops_of(channel)->shutdown(channel, deadline_ns);
}

/* Closed twice, or never used, a channel is still fine to close. */
void hmaf__channel_close(struct hmaf_channel *channel)
{
    ops_of(channel)->close(channel);
    *channel = (struct hmaf_channel){.fd = -1};
}

int hmaf__channel_peer_pid(struct hmaf_channel *channel)
{
    const struct hmaf_channel_ops *ops = ops_of(channel);

    return ops->peer_pid != NULL ? ops->peer_pid(channel) : 0;
}

int hmaf__channel_is_remote(const char *address)
{
    const struct hmaf_channel_ops *ops = transport_of(address);

    return ops != NULL && (ops->flags & HMAF_CHANNEL_REMOTE) != 0;
}

/* By name, built or not: callers refuse a comch address used the wrong
 * way round whatever this build supports. */
int hmaf__channel_is_comch(const char *address)
{
    return address != NULL && strncmp(address, "comch:", 6) == 0;
}
