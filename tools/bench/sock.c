/*
 * The "socket" contenders: what a user writes without HMAF. A host thread
 * per connection answers requests over a Unix stream socket: a 16-byte
 * header (address, length, operation), then the data. The server buffers
 * its input, so that a batch of requests sent at once costs it a few
 * recv() calls, not one per request.
 *
 * "socket" blocks in recv() on both sides, like an ordinary server: each
 * request wakes a sleeping thread on the other cpu. "socket-spin" is the
 * best a socket can do: both sides poll with MSG_DONTWAIT instead, the
 * server only while the parent measures it (it would take the host's cpu
 * from everyone else). The first byte a client sends picks the kind.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench.h"

enum sock_op { SOCK_READ = 1, SOCK_WRITE = 2, SOCK_PING = 3 };

struct sock_req {
    uint64_t addr; /* host address */
    uint32_t len;
    uint32_t op;
};

struct sock_server {
    int fd;
    pthread_t acceptor;
    uint8_t *buf;
    size_t len;
    _Atomic int spin; /* spinning connections poll now */
    pthread_mutex_t lock; /* the connections below */
    pthread_cond_t gone;
    struct conn *conns;
};

/* One connection's state on the host. */
struct conn {
    int fd;
    struct sock_server *srv;
    struct conn *next; /* the server's list */
    uint8_t spin;      /* a socket-spin client's */
    size_t head, tail; /* unread input: in[head, tail) */
    uint8_t in[4096];
};

/* One recv(): polling while *spin, else blocking; 0 at EOF or error. */
static ssize_t recv_some(int fd, void *p, size_t len, _Atomic int *spin)
{
    for (;;) {
        int polling =
            spin != NULL && atomic_load_explicit(spin, memory_order_relaxed);
        ssize_t n = recv(fd, p, len, polling ? MSG_DONTWAIT : MSG_WAITALL);
        if (n >= 0 || !polling || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            return n < 0 ? 0 : n;
        }
    }
}

static int recv_full(int fd, void *p, size_t len, _Atomic int *spin)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = recv_some(fd, (char *)p + got, len - got, spin);
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

static int send_full(int fd, const void *p, size_t len)
{
    for (size_t sent = 0; sent < len;) {
        ssize_t n = send(fd, (const char *)p + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0) {
            return -1;
        }
        sent += (size_t)n;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Server (host)                                                       */
/* ------------------------------------------------------------------ */

/* len bytes of input: buffered first, big payloads straight from the
 * socket, small reads through the buffer. */
static int conn_read(struct conn *cn, void *dst, size_t len)
{
    size_t have = cn->tail - cn->head;
    size_t take = have < len ? have : len;
    _Atomic int *spin = cn->spin ? &cn->srv->spin : NULL;
    ssize_t n;

    memcpy(dst, cn->in + cn->head, take);
    cn->head += take;
    if (take == len) {
        return 0;
    }
    if (len - take >= sizeof(cn->in)) {
        return recv_full(cn->fd, (char *)dst + take, len - take, spin);
    }
    /* Not MSG_WAITALL: take what has come, however little. */
    do {
        n = recv(cn->fd, cn->in, sizeof(cn->in),
                 spin != NULL && atomic_load(spin) ? MSG_DONTWAIT : 0);
    } while (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    if (n <= 0) {
        return -1;
    }
    cn->head = 0;
    cn->tail = (size_t)n;
    return conn_read(cn, (char *)dst + take, len - take);
}

static int serve_one(struct conn *cn, const struct sock_req *rq)
{
    const struct sock_server *srv = cn->srv;
    uint64_t base = (uint64_t)(uintptr_t)srv->buf;
    uint8_t ack = 1;
    uint8_t *at;

    if (rq->op == SOCK_PING) {
        return send_full(cn->fd, &ack, 1);
    }
    /* Never trust the peer's range. */
    if (rq->addr < base || rq->len > srv->len ||
        rq->addr - base > srv->len - rq->len) {
        return -1;
    }
    at = srv->buf + (rq->addr - base);
    if (rq->op == SOCK_READ) {
        return send_full(cn->fd, at, rq->len);
    }
    if (rq->op == SOCK_WRITE && conn_read(cn, at, rq->len) == 0) {
        return send_full(cn->fd, &ack, 1);
    }
    return -1;
}

/* The last thing a connection thread does with the server: leave its
 * list, so that sock_server_stop can wait for it. */
static void conn_leave(struct conn *cn)
{
    struct sock_server *srv = cn->srv;

    pthread_mutex_lock(&srv->lock);
    for (struct conn **at = &srv->conns; *at != NULL; at = &(*at)->next) {
        if (*at == cn) {
            *at = cn->next;
            break;
        }
    }
    close(cn->fd);
    free(cn);
    pthread_cond_broadcast(&srv->gone);
    pthread_mutex_unlock(&srv->lock);
}

static void *conn_main(void *arg)
{
    struct conn *cn = arg;
    struct sock_req rq;

    if (conn_read(cn, &cn->spin, 1) == 0) {
        while (conn_read(cn, &rq, sizeof(rq)) == 0 && serve_one(cn, &rq) == 0) {
        }
    }
    conn_leave(cn);
    return NULL;
}

static void *acceptor_main(void *arg)
{
    struct sock_server *srv = arg;
    int fd;

    while ((fd = accept(srv->fd, NULL, NULL)) >= 0) {
        struct conn *cn = calloc(1, sizeof(*cn));
        pthread_t t;
        if (cn == NULL) {
            close(fd);
            continue;
        }
        cn->fd = fd;
        cn->srv = srv;
        pthread_mutex_lock(&srv->lock);
        cn->next = srv->conns;
        srv->conns = cn;
        pthread_mutex_unlock(&srv->lock);
        if (pthread_create(&t, NULL, conn_main, cn) != 0) {
            conn_leave(cn);
            continue;
        }
        pthread_setname_np(t, SOCK_NAME);
        pthread_detach(t);
    }
    return NULL; /* the listener was shut down */
}

static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 8) != 0) {
        fprintf(stderr, "hmaf-bench: socket server %s: %s\n", path,
                strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

int sock_server_start(const char *path, uint8_t *buf, size_t len,
                      struct sock_server **server_out)
{
    struct sock_server *srv = calloc(1, sizeof(*srv));

    if (srv == NULL) {
        return -1;
    }
    srv->buf = buf;
    srv->len = len;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->gone, NULL);
    srv->fd = listen_at(path);
    if (srv->fd < 0) {
        free(srv);
        return -1;
    }
    if (pthread_create(&srv->acceptor, NULL, acceptor_main, srv) != 0) {
        close(srv->fd);
        free(srv);
        return -1;
    }
    pthread_setname_np(srv->acceptor, SOCK_NAME);
    *server_out = srv;
    return 0;
}

void sock_server_spin(struct sock_server *srv, int on)
{
    atomic_store(&srv->spin, on);
}

/* Connection threads end when their clients close, or when their socket
 * is shut down here: none may still use the server (or the host buffer it
 * serves) once this returns. */
void sock_server_stop(struct sock_server *srv)
{
    if (srv != NULL) {
        shutdown(srv->fd, SHUT_RDWR); /* accept() returns */
        pthread_join(srv->acceptor, NULL);
        pthread_mutex_lock(&srv->lock);
        for (struct conn *cn = srv->conns; cn != NULL; cn = cn->next) {
            shutdown(cn->fd, SHUT_RDWR);
        }
        while (srv->conns != NULL) {
            pthread_cond_wait(&srv->gone, &srv->lock);
        }
        pthread_mutex_unlock(&srv->lock);
        close(srv->fd);
        pthread_cond_destroy(&srv->gone);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
    }
}

/* ------------------------------------------------------------------ */
/* Client (dpu side)                                                   */
/* ------------------------------------------------------------------ */

int sock_connect(const char *path, int spin)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint8_t hello = (uint8_t)spin;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        send_full(fd, &hello, 1) != 0) {
        fprintf(stderr, "hmaf-bench: connect %s: %s\n", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* The client's side of one kind of socket. */
struct client {
    int fd;
    _Atomic int *spin; /* NULL: block */
};

/* A spinning client always polls (the server only during its rounds). */
static _Atomic int always = 1;

static struct client client_of(const struct worker *w, int spin)
{
    return (struct client){.fd = w->sock_fd[spin],
                           .spin = spin ? &always : NULL};
}

static int sock_fail(const char *what)
{
    fprintf(stderr, "hmaf-bench: socket %s: %s\n", what,
            errno != 0 ? strerror(errno) : "peer closed");
    return -1;
}

/* Header and payload in one sendmsg, as a careful client would. */
static int send_write(int fd, const struct sock_req *rq, const void *data)
{
    struct iovec iov[2] = {
        {.iov_base = (void *)rq, .iov_len = sizeof(*rq)},
        {.iov_base = (void *)data, .iov_len = rq->len},
    };
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

    if (n < 0) {
        return -1;
    }
    if ((size_t)n < sizeof(*rq)) {
        if (send_full(fd, (const char *)rq + n, sizeof(*rq) - (size_t)n) < 0) {
            return -1;
        }
        return send_full(fd, data, rq->len);
    }
    n -= (ssize_t)sizeof(*rq);
    return send_full(fd, (const char *)data + n, rq->len - (size_t)n);
}

static int client_rw(struct client c, int is_write, const hmaf_seg_t *seg)
{
    struct sock_req rq = {.addr = seg->remote_addr,
                          .len = (uint32_t)seg->len,
                          .op = is_write ? SOCK_WRITE : SOCK_READ};
    uint8_t ack;

    errno = 0;
    if (is_write) {
        if (send_write(c.fd, &rq, seg->local) < 0 ||
            recv_full(c.fd, &ack, 1, c.spin) < 0) {
            return sock_fail("write");
        }
        return 0;
    }
    if (send_full(c.fd, &rq, sizeof(rq)) < 0 ||
        recv_full(c.fd, seg->local, seg->len, c.spin) < 0) {
        return sock_fail("read");
    }
    return 0;
}

/* All requests in one send, then the answers in order. */
static int client_batch(struct client c, const hmaf_seg_t *segs, size_t n)
{
    struct sock_req rq[BATCH_MAX];

    if (n == 0 || n > BATCH_MAX) { /* and gcc -O1 sees rq filled */
        errno = EINVAL;
        return sock_fail("batch");
    }
    for (size_t i = 0; i < n; i++) {
        rq[i] = (struct sock_req){.addr = segs[i].remote_addr,
                                  .len = (uint32_t)segs[i].len,
                                  .op = SOCK_READ};
    }
    errno = 0;
    if (send_full(c.fd, rq, n * sizeof(rq[0])) < 0) {
        return sock_fail("batch");
    }
    for (size_t i = 0; i < n; i++) {
        if (recv_full(c.fd, segs[i].local, segs[i].len, c.spin) < 0) {
            return sock_fail("batch");
        }
    }
    return 0;
}

static int client_ping(struct client c)
{
    struct sock_req rq = {.op = SOCK_PING};
    uint8_t ack;

    errno = 0;
    if (send_full(c.fd, &rq, sizeof(rq)) < 0 ||
        recv_full(c.fd, &ack, 1, c.spin) < 0) {
        return sock_fail("ping");
    }
    return 0;
}

int sock_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return client_rw(client_of(w, 0), is_write, seg);
}

int sock_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    return client_batch(client_of(w, 0), segs, n);
}

int sock_ping(struct worker *w)
{
    return client_ping(client_of(w, 0));
}

int sockspin_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return client_rw(client_of(w, 1), is_write, seg);
}

int sockspin_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    return client_batch(client_of(w, 1), segs, n);
}

int sockspin_ping(struct worker *w)
{
    return client_ping(client_of(w, 1));
}
