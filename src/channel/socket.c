/*
 * The socket transports, unix and tcp: the same fd code once the address
 * is parsed. Either side may listen; connects retry while nobody listens
 * yet. After the handshake a socket carries only nudges (channel.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "channel/transport.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/pidns.h"

#define UNIX_PREFIX "unix:"
#define TCP_PREFIX "tcp:"
#define CONNECT_RETRY_MS 10

struct sock_listener {
    struct hmaf_listener base;
    int is_unix_path; /* a filesystem socket we created and must unlink */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* A parsed channel address, ready for socket()/bind()/connect(). */
struct channel_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int family;
};

static int parse_unix(const char *path, struct channel_addr *out)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(un->sun_path)) {
        return HMAF_EADDRESS;
    }
    memset(un, 0, sizeof(*un));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') {
        un->sun_path[0] = '\0'; /* abstract: length, not NUL, ends it */
    }
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                           (path[0] == '@' ? 0 : 1));
    out->family = AF_UNIX;
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT" into host and port strings. */
static int split_host_port(const char *s, char *host, size_t host_cap,
                           const char **port_out)
{
    const char *colon;
    const char *start = s;
    size_t n;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return HMAF_EADDRESS;
        }
        start = s + 1;
        n = (size_t)(close - start);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return HMAF_EADDRESS;
        }
        n = (size_t)(colon - s);
    }
    if (n == 0 || n >= host_cap || colon[1] == '\0') {
        return HMAF_EADDRESS;
    }
    memcpy(host, start, n);
    host[n] = '\0';
    *port_out = colon + 1;
    return 0;
}

static int parse_tcp(const char *rest, int passive, struct channel_addr *out)
{
    struct addrinfo hints = {0}, *res = NULL;
    char host[HMAF_CHANNEL_ADDRESS_MAX];
    const char *port;
    char *end;
    long port_num;
    int ret = split_host_port(rest, host, sizeof(host), &port);

    if (ret < 0) {
        return ret;
    }
    port_num = strtol(port, &end, 10);
    if (*end != '\0' || port_num < 0 || port_num > 65535) {
        return HMAF_EADDRESS;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) {
        hmaf__log_error("cannot resolve tcp host '%s'", host);
        return HMAF_EADDRESS;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    out->family = res->ai_family;
    freeaddrinfo(res);
    return 0;
}

static int errno_to_hmaf(int err)
{
    switch (err) {
    case ECONNREFUSED:
    case ENOENT:
        return HMAF_ECONNREFUSED;
    case EADDRINUSE:
        return HMAF_EADDRINUSE;
    case ETIMEDOUT:
        return HMAF_ETIMEDOUT;
    case ENOMEM:
    case ENOBUFS:
        return HMAF_ENOMEM;
    case EMFILE:
    case ENFILE:
        return HMAF_ENOSPC; /* out of file descriptors */
    case EACCES:
    case EPERM:
        return HMAF_EPERM;
    default:
        return HMAF_ECONNRESET;
    }
}

/* bind/listen failures: the address is the problem, not a peer. */
static int listen_errno_to_hmaf(int err)
{
    switch (err) {
    case EADDRINUSE:
        return HMAF_EADDRINUSE;
    case EACCES:
    case EPERM:
        return HMAF_EPERM;
    case ENOMEM:
    case ENOBUFS:
        return HMAF_ENOMEM;
    case EMFILE:
    case ENFILE:
        return HMAF_ENOSPC; /* out of file descriptors */
    default: /* ENOENT, ENOTDIR, EADDRNOTAVAIL, ...: no such place here */
        return HMAF_EADDRESS;
    }
}

static void set_stream_options(int fd, int family)
{
    int one = 1;

    if (family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

/* A unix socket file left by a dead process: nobody accepts on it. The
 * probe never waits: a live listener whose backlog is full (EAGAIN) is
 * alive all the same, and then bind says EADDRINUSE. */
static void unlink_if_stale(const struct channel_addr *a)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
    struct stat st;
    int fd;

    if (un->sun_path[0] == '\0' || stat(un->sun_path, &st) != 0 ||
        !S_ISSOCK(st.st_mode)) {
        return;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0 &&
        errno == ECONNREFUSED) {
        unlink(un->sun_path);
    }
    if (fd >= 0) {
        close(fd);
    }
}

/* A tcp listener's address with the port it got (port 0 picks one). */
static void describe_bound(struct hmaf_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN + 2], port[8];

    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return;
    }
    snprintf(l->address, sizeof(l->address),
             ss.ss_family == AF_INET6 ? "tcp:[%s]:%s" : "tcp:%s:%s", host,
             port);
}

static int bind_and_listen(struct hmaf_listener *l,
                           const struct channel_addr *a)
{
    int one = 1;

    l->fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l->fd < 0) {
        hmaf__log_error("socket: %m");
        return listen_errno_to_hmaf(errno);
    }
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* The longest backlog the system allows: connections wait there
     * cheaply, and a full backlog makes a dpu side retry. */
    if (bind(l->fd, (const struct sockaddr *)&a->ss, a->len) != 0 ||
        listen(l->fd, SOMAXCONN) != 0) {
        int err = errno;
        hmaf__log_error("listen: %m");
        close(l->fd);
        l->fd = -1;
        return listen_errno_to_hmaf(err);
    }
    return 0;
}

static int unix_listen(struct hmaf_listener *base, const char *address)
{
    struct sock_listener *l =
        hmaf__container_of(base, struct sock_listener, base);
    const char *path = address + sizeof(UNIX_PREFIX) - 1;
    struct channel_addr a;
    int ret = parse_unix(path, &a);

    if (ret < 0) {
        return ret;
    }
    unlink_if_stale(&a);
    ret = bind_and_listen(base, &a);
    if (ret == 0 && path[0] != '@') {
        l->is_unix_path = 1;
        snprintf(l->path, sizeof(l->path), "%s", path);
    }
    return ret;
}

static int tcp_listen(struct hmaf_listener *l, const char *address)
{
    struct channel_addr a;
    int ret = parse_tcp(address + sizeof(TCP_PREFIX) - 1, 1, &a);

    if (ret == 0) {
        ret = bind_and_listen(l, &a);
    }
    if (ret == 0) {
        describe_bound(l);
    }
    return ret;
}

static int sock_accept(struct hmaf_listener *listener,
                       struct hmaf_channel *channel_out)
{
    int fd = accept4(listener->fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            return -EMFILE;
        }
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                   ? -EAGAIN
                   : errno_to_hmaf(errno);
    }
    set_stream_options(fd, AF_INET); /* harmless on unix sockets */
    *channel_out = (struct hmaf_channel){.fd = fd, .ops = listener->ops};
    return 0;
}

static int sock_accept_wait(struct hmaf_listener *listener, int timeout_ms,
                            struct hmaf_channel *channel_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);

    for (;;) {
        struct pollfd p = {.fd = listener->fd, .events = POLLIN};
        int ret = sock_accept(listener, channel_out);

        if (ret != -EAGAIN) {
            return ret;
        }
        if (hmaf__ms_left(deadline) == 0) {
            return HMAF_ETIMEDOUT;
        }
        poll(&p, 1, hmaf__ms_left(deadline));
    }
}

static void sock_listener_close(struct hmaf_listener *base)
{
    struct sock_listener *l =
        hmaf__container_of(base, struct sock_listener, base);

    if (base->fd >= 0) {
        close(base->fd);
    }
    if (l->is_unix_path) {
        unlink(l->path);
    }
}

/* Tries that may succeed later: nobody listens yet, or (a unix socket's
 * EAGAIN) the listener's backlog is full. */
#define CONNECT_REFUSED 1
#define CONNECT_BUSY 2

/* A unix socket's connect to a full backlog waits in the kernel, queued
 * fairly with other connectors, until there is room or the send timeout
 * runs out (EAGAIN); the socket is made non-blocking after. */
static int connect_unix(int fd, const struct channel_addr *a,
                        uint64_t deadline)
{
    int ms = hmaf__ms_left(deadline);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000};
    struct timeval none = {0, 0};
    int err = 0;

    if (ms == 0) {
        /* No time to wait in the kernel (a zero timeout would wait for
         * ever): one try as the socket is, non-blocking. Refused or
         * missing says nobody listens; EAGAIN, a full backlog. */
        return connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0
                   ? 0
                   : errno;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        fcntl(fd, F_SETFL, 0) != 0) {
        return errno;
    }
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
        err = errno == EINTR ? EAGAIN : errno;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
    return fcntl(fd, F_SETFL, O_NONBLOCK) == 0 ? err : errno;
}

/* A tcp connect goes on in the background; wait for it, bounded. */
static int connect_tcp(int fd, const struct channel_addr *a,
                       uint64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    socklen_t len;
    int err = 0;

    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0) {
        return 0;
    }
    err = errno;
    if (err == EINPROGRESS) {
        int ready;
        do { /* a signal is not the end of the wait */
            ready = poll(&p, 1, hmaf__ms_left(deadline));
        } while (ready < 0 && errno == EINTR);
        err = ready == 1 ? 0 : ETIMEDOUT;
        len = sizeof(err);
        if (err == 0) {
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
    }
    return err;
}

/* One connect attempt, finished within the deadline: 0, CONNECT_REFUSED,
 * CONNECT_BUSY, or an error. */
static int connect_once(const struct channel_addr *a, uint64_t deadline,
                        int *fd_out)
{
    int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int err;

    if (fd < 0) {
        return errno_to_hmaf(errno);
    }
    err = a->family == AF_UNIX ? connect_unix(fd, a, deadline)
                               : connect_tcp(fd, a, deadline);
    if (err != 0) {
        close(fd);
        if (err == EAGAIN) {
            return CONNECT_BUSY;
        }
        return err == ECONNREFUSED || err == ENOENT ? CONNECT_REFUSED
                                                    : errno_to_hmaf(err);
    }
    set_stream_options(fd, a->family);
    *fd_out = fd;
    return 0;
}

/* Connect within the deadline, retrying while nobody listens or the
 * listener is busy. One attempt is made however late the call is (a busy
 * machine may have spent the time before it): its answer, not the clock,
 * tells "nobody listens" from "timed out". */
static int connect_retrying(const struct channel_addr *a, uint64_t deadline,
                            int *fd_out)
{
    for (;;) {
        int ret = connect_once(a, deadline, fd_out);

        if (ret != CONNECT_REFUSED && ret != CONNECT_BUSY) {
            return ret;
        }
        if (hmaf__ms_left(deadline) == 0) {
            /* Nobody listening: refused; listening but full: timed out. */
            return ret == CONNECT_REFUSED ? HMAF_ECONNREFUSED
                                          : HMAF_ETIMEDOUT;
        }
        /* The listener may not be up yet (starting order is not ours), or
         * may be busy: try again shortly. */
        poll(NULL, 0, HMAF_MIN(CONNECT_RETRY_MS, hmaf__ms_left(deadline)));
    }
}

/* Either socket connect's end: the channel, or why not. A bad address was
 * told where it was found. */
static int connected(const struct hmaf_channel_ops *ops, const char *address,
                     int ret, int fd, struct hmaf_channel *channel_out)
{
    if (ret < 0) {
        if (ret != HMAF_EADDRESS) {
            hmaf__log_info("connect %s: %s", address, hmaf_strerror(ret));
        }
        return ret;
    }
    *channel_out = (struct hmaf_channel){.fd = fd, .ops = ops};
    return 0;
}

static int unix_connect(const char *address, int timeout_ms,
                        struct hmaf_channel *channel_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    struct channel_addr a;
    int fd = -1;
    int ret = parse_unix(address + sizeof(UNIX_PREFIX) - 1, &a);

    if (ret == 0) {
        ret = connect_retrying(&a, deadline, &fd);
    }
    return connected(&hmaf_channel_unix, address, ret, fd, channel_out);
}

/* The deadline runs from before the name lookup, which may take long. */
static int tcp_connect(const char *address, int timeout_ms,
                       struct hmaf_channel *channel_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    struct channel_addr a;
    int fd = -1;
    int ret = parse_tcp(address + sizeof(TCP_PREFIX) - 1, 0, &a);

    if (ret == 0) {
        ret = connect_retrying(&a, deadline, &fd);
    }
    return connected(&hmaf_channel_tcp, address, ret, fd, channel_out);
}

/* Wait for the fd to become ready for `events`, or fail at the deadline. */
static int wait_ready(int fd, short events, uint64_t deadline_ns)
{
    struct pollfd p = {.fd = fd, .events = events};
    int left = hmaf__ms_left(deadline_ns);
    int ret;

    if (left == 0) {
        return HMAF_ETIMEDOUT;
    }
    ret = poll(&p, 1, left);
    if (ret == 0) {
        return HMAF_ETIMEDOUT;
    }
    return ret < 0 && errno != EINTR ? HMAF_ECONNRESET : 0;
}

static int sock_send(struct hmaf_channel *channel, const void *buf, size_t len,
                     uint64_t deadline_ns)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(channel->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return HMAF_ECONNRESET;
        }
        int ret = wait_ready(channel->fd, POLLOUT, deadline_ns);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int sock_recv(struct hmaf_channel *channel, void *buf, size_t len,
                     uint64_t deadline_ns)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = recv(channel->fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            return HMAF_ECONNRESET;
        }
        int ret = wait_ready(channel->fd, POLLIN, deadline_ns);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* POLLRDHUP, not a peek: nudges the peer sent before it closed (its
 * doorbell rung while our thread was stopped) lie in front of the end of
 * file, and a peek sees only them. */
static int sock_peer_closed(struct hmaf_channel *channel)
{
    struct pollfd p = {.fd = channel->fd, .events = POLLRDHUP};

    if (poll(&p, 1, 0) < 0) {
        return errno != EINTR && errno != EAGAIN;
    }
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* Only nudges in buf? */
static int only_nudges(const char *buf, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != HMAF_CHANNEL_NUDGE) {
            return 0;
        }
    }
    return 1;
}

/* What the peer sent ends the session (end of file, an error, anything
 * but nudges)? With MSG_PEEK it stays for the nudges' consumer (the watch
 * thread, which sleeps on the channel); without, nudges are taken. */
static int peer_ended(int fd, int flags)
{
    char buf[512]; /* a peek sees this much: past the nudges that pile up
                      while the watch thread is busy, to an end of file */

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);
        if (n == 0) {
            return 1;
        }
        if (n < 0) {
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        }
        if (!only_nudges(buf, n)) {
            return 1; /* left in place: the end of the session is read */
        }
        if (flags & MSG_PEEK) {
            return 0;
        }
        (void)!recv(fd, buf, (size_t)n, MSG_DONTWAIT); /* those nudges */
    }
}

static int sock_peer_gone(struct hmaf_channel *channel, int take_nudges)
{
    struct pollfd p = {.fd = channel->fd, .events = POLLIN | POLLRDHUP};

    if (poll(&p, 1, 0) <= 0) {
        return 0;
    }
    /* An end of file behind nudges, which a peek would not reach. */
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
        return 1;
    }
    return (p.revents & POLLIN) != 0 &&
           peer_ended(channel->fd, take_nudges ? 0 : MSG_PEEK);
}

static void sock_nudge(struct hmaf_channel *channel)
{
    static const char nudge = HMAF_CHANNEL_NUDGE;

    /* A full buffer holds nudges enough already. */
    if (channel->fd >= 0) {
        (void)!send(channel->fd, &nudge, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
}

/* A half-close: the peer sees the end of the stream at once, and this
 * side goes on seeing when the peer closes too. */
static void sock_shutdown(struct hmaf_channel *channel, uint64_t deadline_ns)
{
    (void)deadline_ns;
    if (channel->fd >= 0) {
        (void)shutdown(channel->fd, SHUT_WR);
    }
}

static void sock_close(struct hmaf_channel *channel)
{
    if (channel->fd >= 0) {
        close(channel->fd);
    }
}

static int sock_peer_pid(struct hmaf_channel *channel)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (channel->fd < 0 ||
        getsockopt(channel->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        len != sizeof(cred)) {
        return 0; /* not a unix socket */
    }
    return (int)cred.pid;
}

/* A unix socket always has its peer's credentials; a pid of 0 in them
 * means the peer runs in a pid namespace we do not see. Over tcp the
 * kernel knows no peer process (0 too, but nothing to tell). */
static int unix_peer_pid(struct hmaf_channel *channel)
{
    int pid = sock_peer_pid(channel);

    return pid == 0 && channel->fd >= 0 ? HMAF_PEER_PID_HIDDEN : pid;
}

const struct hmaf_channel_ops hmaf_channel_unix = {
    .prefix = UNIX_PREFIX,
    .listener_size = sizeof(struct sock_listener),
    .listen = unix_listen,
    .accept = sock_accept,
    .accept_wait = sock_accept_wait,
    .listener_close = sock_listener_close,
    .connect = unix_connect,
    .send = sock_send,
    .recv = sock_recv,
    .peer_gone = sock_peer_gone,
    .peer_closed = sock_peer_closed,
    .nudge = sock_nudge,
    .shutdown = sock_shutdown,
    .close = sock_close,
    .peer_pid = unix_peer_pid,
};

const struct hmaf_channel_ops hmaf_channel_tcp = {
    .prefix = TCP_PREFIX,
    .flags = HMAF_CHANNEL_REMOTE,
    .listener_size = sizeof(struct sock_listener),
    .listen = tcp_listen,
    .accept = sock_accept,
    .accept_wait = sock_accept_wait,
    .listener_close = sock_listener_close,
    .connect = tcp_connect,
    .send = sock_send,
    .recv = sock_recv,
    .peer_gone = sock_peer_gone,
    .peer_closed = sock_peer_closed,
    .nudge = sock_nudge,
    .shutdown = sock_shutdown,
    .close = sock_close,
    .peer_pid = sock_peer_pid, /* 0: no credentials over tcp */
};
