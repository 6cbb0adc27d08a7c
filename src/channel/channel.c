#include "channel/channel.h"

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

#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"

#define CHANNEL_ADDRESS_MAX 160
#define CONNECT_RETRY_MS 10

struct hmaf_listener {
    int fd;                   /* -1 for comch */
    struct hmaf_comch *comch; /* a comch server until it accepted */
    int is_unix_path; /* a filesystem socket we created and must unlink */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char address[CHANNEL_ADDRESS_MAX];
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
    char host[CHANNEL_ADDRESS_MAX];
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

static int parse_address(const char *address, int passive,
                         struct channel_addr *out)
{
    if (address == NULL) {
        return HMAF_EINVAL;
    }
    if (strncmp(address, "unix:", 5) == 0) {
        return parse_unix(address + 5, out);
    }
    if (strncmp(address, "tcp:", 4) == 0) {
        return parse_tcp(address + 4, passive, out);
    }
    if (hmaf__channel_is_comch(address)) {
        hmaf__log_error("channel '%s': this libhmaf has no DOCA", address);
        return HMAF_ENOTSUP; /* with DOCA, comch never gets here */
    }
    hmaf__log_error("unknown channel address '%s' (want unix: or tcp:)",
                    address);
    return HMAF_EADDRESS;
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

static void describe_bound(struct hmaf_listener *l, const char *address)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN + 2], port[8];

    snprintf(l->address, sizeof(l->address), "%s", address);
    if (strncmp(address, "tcp:", 4) != 0 ||
        getsockname(l->fd, (struct sockaddr *)&ss, &len) != 0 ||
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
        return listen_errno_to_hmaf(err);
    }
    return 0;
}

#ifdef HMAF_HAVE_ENGINE_DOCA
static int comch_listener_open(const char *address,
                               struct hmaf_listener **listener_out)
{
    struct hmaf_listener *l = calloc(1, sizeof(*l));
    int ret;

    if (l == NULL) {
        return HMAF_ENOMEM;
    }
    l->fd = -1;
    ret = hmaf__comch_listen(address + 6, &l->comch);
    if (ret < 0) {
        free(l);
        return ret;
    }
    snprintf(l->address, sizeof(l->address), "%s", address);
    *listener_out = l;
    return 0;
}

/* The accepted connection takes the whole comch server with it. */
static int comch_listener_accept(struct hmaf_listener *l, int timeout_ms,
                                 struct hmaf_channel *channel_out)
{
    int ret;

    if (l->comch == NULL) {
        return timeout_ms == 0 ? -EAGAIN : HMAF_ETIMEDOUT; /* one per server */
    }
    ret = hmaf__comch_accept(l->comch, timeout_ms);
    if (ret == 0) {
        *channel_out = (struct hmaf_channel){.fd = -1, .comch = l->comch};
        l->comch = NULL;
    }
    return ret;
}
#endif

int hmaf__listener_open(const char *address,
                        struct hmaf_listener **listener_out)
{
    struct channel_addr a;
    struct hmaf_listener *l;
    int ret;

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (hmaf__channel_is_comch(address)) {
        return comch_listener_open(address, listener_out);
    }
#endif
    ret = parse_address(address, 1, &a);
    if (ret < 0) {
        return ret;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return HMAF_ENOMEM;
    }
    if (a.family == AF_UNIX) {
        unlink_if_stale(&a);
    }
    ret = bind_and_listen(l, &a);
    if (ret < 0) {
        free(l);
        return ret;
    }
    if (a.family == AF_UNIX && address[5] != '@') {
        l->is_unix_path = 1;
        snprintf(l->path, sizeof(l->path), "%s", address + 5);
    }
    describe_bound(l, address);
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

int hmaf__listener_has_newcomer(const struct hmaf_listener *listener)
{
    struct pollfd p = {.fd = listener->fd, .events = POLLIN};

    return listener->fd < 0 || poll(&p, 1, 0) > 0;
}

int hmaf__listener_accept(struct hmaf_listener *listener,
                          struct hmaf_channel *channel_out)
{
    int fd;

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (listener->fd < 0) {
        return comch_listener_accept(listener, 0, channel_out);
    }
#endif
    fd = accept4(listener->fd, NULL, NULL, SOCK_CLOEXEC);
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
    *channel_out = (struct hmaf_channel){.fd = fd};
    return 0;
}

int hmaf__listener_accept_wait(struct hmaf_listener *listener, int timeout_ms,
                               struct hmaf_channel *channel_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (listener->fd < 0) {
        return comch_listener_accept(listener, timeout_ms, channel_out);
    }
#endif
    for (;;) {
        struct pollfd p = {.fd = listener->fd, .events = POLLIN};
        int ret = hmaf__listener_accept(listener, channel_out);

        if (ret != -EAGAIN) {
            return ret;
        }
        if (hmaf__ms_left(deadline) == 0) {
            return HMAF_ETIMEDOUT;
        }
        poll(&p, 1, hmaf__ms_left(deadline));
    }
}

void hmaf__listener_close(struct hmaf_listener *listener)
{
    if (listener == NULL) {
        return;
    }
#ifdef HMAF_HAVE_ENGINE_DOCA
    hmaf__comch_close(listener->comch);
#endif
    if (listener->fd >= 0) {
        close(listener->fd);
    }
    if (listener->is_unix_path) {
        unlink(listener->path);
    }
    free(listener);
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
        return EAGAIN; /* a zero timeout would wait for ever */
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

int hmaf__channel_connect(const char *address, int timeout_ms,
                          struct hmaf_channel *channel_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    struct channel_addr a;
    int ret;

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (hmaf__channel_is_comch(address)) {
        *channel_out = (struct hmaf_channel){.fd = -1};
        return hmaf__comch_connect(address + 6, timeout_ms,
                                   &channel_out->comch);
    }
#endif
    ret = parse_address(address, 0, &a);
    channel_out->comch = NULL;
    for (int last = CONNECT_BUSY; ret == 0;) {
        if (hmaf__ms_left(deadline) == 0) {
            /* Nobody listening: refused; listening but full: timed out. */
            ret = last == CONNECT_REFUSED ? HMAF_ECONNREFUSED : HMAF_ETIMEDOUT;
            break;
        }
        ret = connect_once(&a, deadline, &channel_out->fd);
        if (ret != CONNECT_REFUSED && ret != CONNECT_BUSY) {
            break;
        }
        last = ret;
        /* The listener may not be up yet (starting order is not ours), or
         * may be busy: try again shortly. */
        poll(NULL, 0, HMAF_MIN(CONNECT_RETRY_MS, hmaf__ms_left(deadline)));
        ret = 0;
    }
    if (ret < 0 && ret != HMAF_EADDRESS) {
        hmaf__log_info("connect %s: %s", address, hmaf_strerror(ret));
    }
    return ret;
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

int hmaf__channel_send(struct hmaf_channel *channel, const void *buf,
                       size_t len, uint64_t deadline_ns)
{
    const char *p = buf;

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (channel->comch != NULL) {
        return hmaf__comch_send(channel->comch, buf, len, deadline_ns);
    }
#endif
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

int hmaf__channel_recv(struct hmaf_channel *channel, void *buf, size_t len,
                       uint64_t deadline_ns)
{
    char *p = buf;

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (channel->comch != NULL) {
        return hmaf__comch_recv(channel->comch, buf, len, deadline_ns);
    }
#endif
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

int hmaf__channel_peer_closed(struct hmaf_channel *channel)
{
    char c;
    ssize_t n;

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (channel->comch != NULL) {
        return hmaf__comch_peer_gone(channel->comch);
    }
#endif
    n = recv(channel->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                      errno != EINTR);
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
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | flags);
        if (n == 0) {
            return 1;
        }
        if (n < 0) {
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        }
        if (!only_nudges(buf, n)) {
            return 1;
        }
        if (flags & MSG_PEEK) {
            return 0;
        }
    }
}

static int channel_gone(struct hmaf_channel *channel, int flags)
{
    struct pollfd p = {.fd = channel->fd, .events = POLLIN};

#ifdef HMAF_HAVE_ENGINE_DOCA
    if (channel->comch != NULL) {
        return hmaf__comch_peer_gone(channel->comch);
    }
#endif
    if (poll(&p, 1, 0) <= 0) {
        return 0;
    }
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) {
        return 1;
    }
    return (p.revents & POLLIN) != 0 && peer_ended(channel->fd, flags);
}

int hmaf__channel_peer_gone(struct hmaf_channel *channel)
{
    return channel_gone(channel, MSG_PEEK);
}

int hmaf__channel_take_nudges(struct hmaf_channel *channel)
{
    return channel_gone(channel, 0);
}

void hmaf__channel_nudge(struct hmaf_channel *channel)
{
    static const char nudge = HMAF_CHANNEL_NUDGE;

    /* A full buffer holds nudges enough already. */
    if (channel->comch == NULL && channel->fd >= 0) {
        (void)!send(channel->fd, &nudge, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
}

void hmaf__channel_shutdown(struct hmaf_channel *channel,
                            uint64_t deadline_ns)
{
#ifdef HMAF_HAVE_ENGINE_DOCA
    if (channel->comch != NULL) {
        static const uint8_t bye = 0;
        (void)hmaf__comch_send(channel->comch, &bye, 1, deadline_ns);
        return;
    }
#else
    (void)deadline_ns;
#endif
    if (channel->fd >= 0) {
        (void)shutdown(channel->fd, SHUT_WR);
    }
}

void hmaf__channel_close(struct hmaf_channel *channel)
{
#ifdef HMAF_HAVE_ENGINE_DOCA
    hmaf__comch_close(channel->comch);
#endif
    channel->comch = NULL;
    if (channel->fd >= 0) {
        close(channel->fd);
        channel->fd = -1;
    }
}

int hmaf__channel_peer_pid(struct hmaf_channel *channel)
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

int hmaf__channel_is_remote(const char *address)
{
    return address != NULL && strncmp(address, "tcp:", 4) == 0;
}

int hmaf__channel_is_comch(const char *address)
{
    return address != NULL && strncmp(address, "comch:", 6) == 0;
}
