/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Comm Channel over abstract unix SOCK_SEQPACKET sockets, which keep
 * message boundaries and leave no file behind. Every packet starts with a
 * type byte: the server sends HELLO when it accepts (the client turns
 * RUNNING on it), DATA carries one message. Sends go out at submit, so the
 * payload is captured there; the completion waits for doca_pe_progress.
 * Connections stay allocated until their server is destroyed, so a task
 * or a caller holding one never dangles.
 *
 * Orderings DOCA does not rule out, made the rule here so that code must
 * cope: the client turns RUNNING and receives what came with the server's
 * accept in one progress call; the server reports a connection one
 * progress call after accepting it, after its first messages. A link the
 * server never disconnected stays up for the client after the server
 * stopped or went away, until this process exits.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <doca_comch.h>
#include <doca_dev.h>

#include "emu.h"

#define MSG_HELLO    'H'
#define MSG_DATA     'D'
#define LOOK_NS      10000000ull /* a starting client's looks for the accept */
#define DRAIN_BUDGET 64 /* messages per connection per progress call */

struct doca_comch_connection {
    int fd; /* -1 once the link is gone */
    int announced;    /* server: connect callback made */
    int heard;        /* a message of it was delivered */
    int disconnected; /* server: doca_comch_server_disconnect called */
    union doca_data user_data;
    struct emu_comch *owner;
    struct doca_comch_connection *next;
};

struct emu_comch {
    struct doca_ctx ctx; /* first: the ctx ops cast back */
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint32_t max_msg;
    doca_comch_task_send_completion_cb_t ok_cb, err_cb;
    doca_comch_event_msg_recv_cb_t recv_cb;
    uint8_t *rx; /* type byte, the device's largest message, one spare */
    size_t rx_size;
};

struct doca_comch_server {
    struct emu_comch c;
    int listen_fd;
    doca_comch_event_connection_status_changed_cb_t connect_cb, disconnect_cb;
    struct doca_comch_connection *conns; /* live and dead */
};

struct doca_comch_client {
    struct emu_comch c;
    struct doca_comch_connection conn;
    uint64_t look_ns; /* STARTING: next look for the server's accept */
};

struct doca_comch_task_send {
    struct doca_task task; /* first */
    struct doca_comch_connection *conn;
    const void *msg;
    uint32_t len;
};

/* The callbacks get event handles; the emulation keeps nothing in them. */
struct doca_comch_event_msg_recv {
    int unused;
};
struct doca_comch_event_connection_status_changed {
    int unused;
};
static struct doca_comch_event_msg_recv recv_event;
static struct doca_comch_event_connection_status_changed conn_event;

static void close_link(struct doca_comch_connection *conn)
{
    if (conn->fd >= 0) {
        close(conn->fd);
        conn->fd = -1;
    }
}

/* Reads what is queued: 1 if anything came, 0 if nothing, -1 if the link
 * broke (or a fault dropped it). */
static int drain(struct emu_comch *c, struct doca_comch_connection *conn)
{
    int any = 0;

    for (int i = 0; i < DRAIN_BUDGET && conn->fd >= 0 &&
                    c->ctx.state == DOCA_CTX_STATE_RUNNING;
         i++) {
        struct iovec iov = {c->rx, c->rx_size};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(conn->fd, &mh, MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return any;
        }
        if (n <= 0 || (mh.msg_flags & MSG_TRUNC) || c->rx[0] != MSG_DATA ||
            (size_t)n - 1 > c->max_msg) {
            return -1;
        }
        any = 1;
        conn->heard = 1;
        if (c->recv_cb != NULL) {
            c->recv_cb(&recv_event, c->rx + 1, (uint32_t)(n - 1), conn);
        }
        if (emu_fault_disconnect()) {
            return -1;
        }
    }
    return any;
}

static doca_error_t comch_submit(struct doca_task *t)
{
    struct doca_comch_task_send *s = (struct doca_comch_task_send *)t;
    uint8_t type = MSG_DATA;
    struct iovec iov[2] = {{&type, 1}, {(void *)s->msg, s->len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    int fd = s->conn->fd;
    ssize_t n = fd >= 0 ? sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) : -1;

    if (n < 0 && fd >= 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return DOCA_ERROR_AGAIN;
    }
    if (n < 0) {
        t->status = DOCA_ERROR_CONNECTION_RESET; /* reported on completion */
    }
    return DOCA_SUCCESS;
}

static int comch_complete(struct doca_task *t)
{
    struct emu_comch *c = (struct emu_comch *)t->ctx;

    (t->status == DOCA_SUCCESS ? c->ok_cb : c->err_cb)(
        (struct doca_comch_task_send *)t, t->user_data, t->ctx->user_data);
    return 1;
}

static doca_error_t comch_init(struct emu_comch *c,
                               const struct emu_ctx_ops *ops, const char *pci,
                               const char *name)
{
    int n;

    const struct emu_config *cfg = emu_config();

    if (strlen(name) >= cfg->max_name) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    c->addr.sun_family = AF_UNIX;
    n = snprintf(c->addr.sun_path + 1, sizeof(c->addr.sun_path) - 1,
                 "doca-emu-comch/%s/%s", pci, name);
    c->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    /* DOCA uses "a default value" until set_max_msg_size; here it is
     * smaller than the cap (and than HMAF's WELCOME), so code that never
     * sets it fails here rather than on a card. */
    c->max_msg =
        cfg->default_msg < cfg->max_msg ? cfg->default_msg : cfg->max_msg;
    c->rx_size = (size_t)cfg->max_msg + 2;
    c->rx = malloc(c->rx_size);
    if (c->rx == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    emu_ctx_init(&c->ctx, ops, sizeof(struct doca_comch_task_send));
    return DOCA_SUCCESS;
}

static doca_error_t send_alloc(struct emu_comch *c,
                               struct doca_comch_connection *peer,
                               const void *msg, uint32_t len,
                               struct doca_comch_task_send **task)
{
    struct doca_task *t;
    doca_error_t err;

    if (peer->owner != c || msg == NULL || len > c->max_msg) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    err = emu_task_alloc(&c->ctx, &t);
    if (err != DOCA_SUCCESS) {
        return err;
    }
    *task = (struct doca_comch_task_send *)t;
    (*task)->conn = peer;
    (*task)->msg = msg;
    (*task)->len = len;
    return DOCA_SUCCESS;
}

static doca_error_t set_conf(struct emu_comch *c,
                             doca_comch_task_send_completion_cb_t ok,
                             doca_comch_task_send_completion_cb_t err,
                             uint32_t num)
{
    if (ok == NULL || err == NULL || num == 0 ||
        num > emu_config()->max_tasks) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (c->ctx.state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    c->ok_cb = ok;
    c->err_cb = err;
    c->ctx.num_tasks = num;
    return DOCA_SUCCESS;
}

static doca_error_t set_max_msg(struct emu_comch *c, uint32_t size)
{
    if (size == 0 || size > emu_config()->max_msg) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (c->ctx.state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    c->max_msg = size;
    return DOCA_SUCCESS;
}

static doca_error_t set_recv_cb(struct emu_comch *c,
                                doca_comch_event_msg_recv_cb_t cb)
{
    if (cb == NULL) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (c->ctx.state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    c->recv_cb = cb;
    return DOCA_SUCCESS;
}

/* ---- server ---- */

static doca_error_t server_start(struct doca_ctx *ctx)
{
    struct doca_comch_server *s = (struct doca_comch_server *)ctx;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err;

    if (fd < 0) {
        return DOCA_ERROR_INITIALIZATION;
    }
    if (bind(fd, (struct sockaddr *)&s->c.addr, s->c.addr_len) != 0 ||
        listen(fd, 64) != 0) {
        err = errno;
        close(fd);
        return err == EADDRINUSE ? DOCA_ERROR_IN_USE
                                 : DOCA_ERROR_INITIALIZATION;
    }
    s->listen_fd = fd;
    return DOCA_SUCCESS;
}

/* No disconnect callbacks: the application asked for the stop. Only
 * doca_comch_server_disconnect tells a client: a link not disconnected is
 * left open (never closed here, so the client believes it is connected
 * until this process exits). */
static void server_stop(struct doca_ctx *ctx)
{
    struct doca_comch_server *s = (struct doca_comch_server *)ctx;

    close(s->listen_fd);
    s->listen_fd = -1;
    for (struct doca_comch_connection *c = s->conns; c != NULL; c = c->next) {
        if (c->disconnected) {
            close_link(c);
        }
        c->fd = -1;
    }
}

static int accept_one(struct doca_comch_server *s)
{
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    uint8_t hello = MSG_HELLO;
    struct doca_comch_connection *conn;

    if (fd < 0) {
        return 0;
    }
    conn = calloc(1, sizeof(*conn));
    if (conn == NULL || send(fd, &hello, 1, MSG_NOSIGNAL) != 1) {
        free(conn); /* the client sees the link drop and retries */
        close(fd);
        return 1;
    }
    /* Reported in the next progress call, after its first messages. */
    *conn = (struct doca_comch_connection){
        .fd = fd, .owner = &s->c, .next = s->conns};
    s->conns = conn;
    return 1;
}

static void announce(struct doca_comch_server *s,
                     struct doca_comch_connection *c)
{
    c->announced = 1;
    if (s->connect_cb != NULL) {
        s->connect_cb(&conn_event, c, 1);
    }
}

/* Messages and hang-ups on a link; then a connection accepted in an
 * earlier call is reported. One that dropped before it was reported is
 * reported, then its disconnection, only if its messages came. */
static int serve_link(struct doca_comch_server *s,
                      struct doca_comch_connection *c)
{
    int r = c->fd >= 0 ? drain(&s->c, c) : 0;

    if (r < 0 && c->fd >= 0) {
        close_link(c);
        if (!c->announced && c->heard) {
            announce(s, c);
        }
        if (c->announced && s->disconnect_cb != NULL) {
            s->disconnect_cb(&conn_event, c, 1);
        }
    }
    if (!c->announced && c->fd >= 0) {
        announce(s, c);
        r = 1;
    }
    return r != 0;
}

static int server_progress(struct doca_ctx *ctx)
{
    struct doca_comch_server *s = (struct doca_comch_server *)ctx;
    int any = 0;

    if (ctx->state != DOCA_CTX_STATE_RUNNING) {
        return 0;
    }
    for (struct doca_comch_connection *c = s->conns; c != NULL; c = c->next) {
        any |= serve_link(s, c);
    }
    return accept_one(s) | any;
}

/* No watch op: comch never fires the PE's handle. */
static const struct emu_ctx_ops server_ops = {
    .start = server_start,
    .stop = server_stop,
    .progress = server_progress,
    .submit = comch_submit,
    .complete = comch_complete,
    .quiet = 1,
};

doca_error_t doca_comch_server_create(struct doca_dev *dev,
                                      struct doca_dev_rep *repr,
                                      const char *name,
                                      struct doca_comch_server **comch_server)
{
    struct doca_comch_server *s = calloc(1, sizeof(*s));
    doca_error_t err = s != NULL ? DOCA_SUCCESS : DOCA_ERROR_NO_MEMORY;

    (void)dev;
    if (err == DOCA_SUCCESS) {
        err = comch_init(&s->c, &server_ops, repr->info.pci, name);
    }
    if (err != DOCA_SUCCESS) {
        free(s);
        return err;
    }
    s->listen_fd = -1;
    *comch_server = s;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_server_destroy(struct doca_comch_server *comch_server)
{
    doca_error_t err = emu_ctx_fini(&comch_server->c.ctx);

    if (err != DOCA_SUCCESS) {
        return err;
    }
    while (comch_server->conns != NULL) {
        struct doca_comch_connection *next = comch_server->conns->next;

        free(comch_server->conns);
        comch_server->conns = next;
    }
    free(comch_server->c.rx);
    free(comch_server);
    return DOCA_SUCCESS;
}

struct doca_ctx *
doca_comch_server_as_ctx(struct doca_comch_server *comch_server)
{
    return &comch_server->c.ctx;
}

doca_error_t
doca_comch_server_set_max_msg_size(struct doca_comch_server *comch_server,
                                   uint32_t size)
{
    return set_max_msg(&comch_server->c, size);
}

doca_error_t
doca_comch_server_get_max_msg_size(const struct doca_comch_server *comch_server,
                                   uint32_t *size)
{
    *size = comch_server->c.max_msg;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_server_task_send_set_conf(
    struct doca_comch_server *comch_server,
    doca_comch_task_send_completion_cb_t task_completion_cb,
    doca_comch_task_send_completion_cb_t task_error_cb, uint32_t num_send_tasks)
{
    return set_conf(&comch_server->c, task_completion_cb, task_error_cb,
                    num_send_tasks);
}

doca_error_t doca_comch_server_event_msg_recv_register(
    struct doca_comch_server *comch_server,
    doca_comch_event_msg_recv_cb_t recv_event_cb)
{
    return set_recv_cb(&comch_server->c, recv_event_cb);
}

doca_error_t doca_comch_server_event_connection_status_changed_register(
    struct doca_comch_server *comch_server,
    doca_comch_event_connection_status_changed_cb_t connect_event_cb,
    doca_comch_event_connection_status_changed_cb_t disconnect_event_cb)
{
    if (connect_event_cb == NULL || disconnect_event_cb == NULL) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (comch_server->c.ctx.state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    comch_server->connect_cb = connect_event_cb;
    comch_server->disconnect_cb = disconnect_event_cb;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_server_task_send_alloc_init(
    struct doca_comch_server *comch_server, struct doca_comch_connection *peer,
    const void *msg, uint32_t len, struct doca_comch_task_send **task)
{
    return send_alloc(&comch_server->c, peer, msg, len, task);
}

/* shutdown, not close: our own next read sees the end of the link and
 * reports the disconnection from doca_pe_progress. */
doca_error_t
doca_comch_server_disconnect(struct doca_comch_server *comch_server,
                             struct doca_comch_connection *connection)
{
    if (connection->owner != &comch_server->c) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (connection->fd < 0) {
        return DOCA_ERROR_NOT_CONNECTED;
    }
    shutdown(connection->fd, SHUT_RDWR);
    connection->disconnected = 1;
    return DOCA_SUCCESS;
}

/* ---- client ---- */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One connect attempt, now: a client started before its server listens is
 * refused (it goes IDLE in the next progress call), as on a card; trying
 * again is the application's business. */
static doca_error_t client_start(struct doca_ctx *ctx)
{
    struct doca_comch_client *cl = (struct doca_comch_client *)ctx;

    cl->look_ns = now_ns() + LOOK_NS;
    cl->conn.fd =
        socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cl->conn.fd >= 0 && connect(cl->conn.fd, (struct sockaddr *)&cl->c.addr,
                                    cl->c.addr_len) != 0) {
        close_link(&cl->conn);
    }
    return DOCA_ERROR_IN_PROGRESS;
}

static void client_stop(struct doca_ctx *ctx)
{
    close_link(&((struct doca_comch_client *)ctx)->conn);
}

/* STARTING: look for the server's HELLO now and then. Refused (nobody
 * listened, or the server went before accepting): IDLE. Accepted: RUNNING,
 * and what the server sent since comes in the same call. */
static int client_connect(struct doca_comch_client *cl)
{
    uint8_t hello = 0;

    if (cl->conn.fd >= 0) {
        if (now_ns() < cl->look_ns) {
            return 0;
        }
        cl->look_ns = now_ns() + LOOK_NS;
        if (recv(cl->conn.fd, &hello, 1, MSG_DONTWAIT) < 0 &&
            (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
    }
    if (hello != MSG_HELLO) {
        close_link(&cl->conn);
        emu_ctx_wind_down(&cl->c.ctx);
        return 1;
    }
    emu_ctx_set_state(&cl->c.ctx, DOCA_CTX_STATE_RUNNING);
    if (drain(&cl->c, &cl->conn) < 0) {
        close_link(&cl->conn);
        emu_ctx_wind_down(&cl->c.ctx);
    }
    return 1;
}

static int client_progress(struct doca_ctx *ctx)
{
    struct doca_comch_client *cl = (struct doca_comch_client *)ctx;
    int r;

    if (ctx->state == DOCA_CTX_STATE_STARTING) {
        return client_connect(cl);
    }
    if (ctx->state != DOCA_CTX_STATE_RUNNING || cl->conn.fd < 0) {
        return 0;
    }
    r = drain(&cl->c, &cl->conn);
    if (r < 0 && cl->conn.fd >= 0) {
        close_link(&cl->conn); /* the client has no disconnect event */
        emu_ctx_wind_down(ctx);
    }
    return r != 0;
}

static const struct emu_ctx_ops client_ops = {
    .start = client_start,
    .stop = client_stop,
    .progress = client_progress,
    .submit = comch_submit,
    .complete = comch_complete,
    .quiet = 1,
};

doca_error_t doca_comch_client_create(struct doca_dev *dev, const char *name,
                                      struct doca_comch_client **comch_client)
{
    struct doca_comch_client *cl = calloc(1, sizeof(*cl));
    doca_error_t err = cl != NULL ? DOCA_SUCCESS : DOCA_ERROR_NO_MEMORY;

    if (err == DOCA_SUCCESS) {
        err = comch_init(&cl->c, &client_ops, dev->info.pci, name);
    }
    if (err != DOCA_SUCCESS) {
        free(cl);
        return err;
    }
    cl->conn = (struct doca_comch_connection){.fd = -1, .owner = &cl->c};
    *comch_client = cl;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_client_destroy(struct doca_comch_client *comch_client)
{
    doca_error_t err = emu_ctx_fini(&comch_client->c.ctx);

    if (err == DOCA_SUCCESS) {
        free(comch_client->c.rx);
        free(comch_client);
    }
    return err;
}

struct doca_ctx *
doca_comch_client_as_ctx(struct doca_comch_client *comch_client)
{
    return &comch_client->c.ctx;
}

doca_error_t
doca_comch_client_set_max_msg_size(struct doca_comch_client *comch_client,
                                   uint32_t size)
{
    return set_max_msg(&comch_client->c, size);
}

doca_error_t
doca_comch_client_get_max_msg_size(const struct doca_comch_client *comch_client,
                                   uint32_t *size)
{
    *size = comch_client->c.max_msg;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_client_task_send_set_conf(
    struct doca_comch_client *comch_client,
    doca_comch_task_send_completion_cb_t task_completion_cb,
    doca_comch_task_send_completion_cb_t task_error_cb, uint32_t num_send_tasks)
{
    return set_conf(&comch_client->c, task_completion_cb, task_error_cb,
                    num_send_tasks);
}

doca_error_t doca_comch_client_event_msg_recv_register(
    struct doca_comch_client *comch_client,
    doca_comch_event_msg_recv_cb_t recv_event_cb)
{
    return set_recv_cb(&comch_client->c, recv_event_cb);
}

doca_error_t
doca_comch_client_get_connection(const struct doca_comch_client *comch_client,
                                 struct doca_comch_connection **connection)
{
    if (comch_client->c.ctx.state == DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    *connection = (struct doca_comch_connection *)&comch_client->conn;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_client_task_send_alloc_init(
    struct doca_comch_client *comch_client, struct doca_comch_connection *peer,
    const void *msg, uint32_t len, struct doca_comch_task_send **task)
{
    return send_alloc(&comch_client->c, peer, msg, len, task);
}

struct doca_task *
doca_comch_task_send_as_task(struct doca_comch_task_send *task)
{
    return &task->task;
}

/* ---- connections and capabilities ---- */

doca_error_t
doca_comch_connection_set_user_data(struct doca_comch_connection *connection,
                                    union doca_data user_data)
{
    connection->user_data = user_data;
    return DOCA_SUCCESS;
}

union doca_data doca_comch_connection_get_user_data(
    const struct doca_comch_connection *connection)
{
    return connection->user_data;
}

/* Every emulated device can be either end. */
doca_error_t
doca_comch_cap_server_is_supported(const struct doca_devinfo *devinfo)
{
    (void)devinfo;
    return DOCA_SUCCESS;
}

doca_error_t
doca_comch_cap_client_is_supported(const struct doca_devinfo *devinfo)
{
    (void)devinfo;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_cap_get_max_name_len(const struct doca_devinfo *devinfo,
                                             uint32_t *max_name_len)
{
    (void)devinfo;
    *max_name_len = emu_config()->max_name;
    return DOCA_SUCCESS;
}

doca_error_t doca_comch_cap_get_max_msg_size(const struct doca_devinfo *devinfo,
                                             uint32_t *size)
{
    (void)devinfo;
    *size = emu_config()->max_msg;
    return DOCA_SUCCESS;
}

doca_error_t
doca_comch_cap_get_max_send_tasks(const struct doca_devinfo *devinfo,
                                  uint32_t *max_send_tasks)
{
    (void)devinfo;
    *max_send_tasks = emu_config()->max_tasks;
    return DOCA_SUCCESS;
}
