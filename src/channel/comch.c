/*
 * The comch bootstrap channel: DOCA Comm Channel between the dpu side
 * (server, on its PF with the host PF's representor) and the host (client,
 * on its BlueField PF). shared/DOCA.md (c) has the call sequences. A
 * transport (transport.h), built only where DOCA is
 * (HMAF_HAVE_CHANNEL_COMCH, src/channel/CMakeLists.txt).
 *
 * The channel API is a byte stream, comch carries messages: a send is one
 * message (HMAF_ENOSPC beyond the max message size), and received messages
 * are queued whole and read out as bytes, so the handshake's "header, then
 * body" reads work unchanged. Every callback runs inside doca_pe_progress on
 * the thread that called us; `current` names the channel it works for,
 * since the connection callbacks carry no user data of ours. A channel is
 * driven by one thread at a time; peer_gone may be called from several
 * (the dpu side's data path), so a mutex guards the progress engine and
 * peer_gone only tries it.
 *
 * Waiting: DOCA's Comm Channel "does not support event-triggered
 * completions", so nothing waits on the progress engine's notification
 * handle: a comch channel has no fd, and its waiters (the host agent's
 * loop, the dpu side's watch thread) ask peer_gone, one doca_pe_progress
 * call, every time they wake.
 *
 * The progress engine keeps DOCA's default event mode, selective: once a
 * PE has been armed (doca_pe_request_notification), doca_pe_progress
 * drives only the contexts that raised an event or had tasks in flight at
 * the arm, and comch raises none, so an armed PE would stop driving the
 * channel. A PE never armed drives all its contexts in either mode, and
 * this one is never armed, so nothing here sets PROGRESS_ALL: that takes
 * doca_pe_set_event_mode, experimental in DOCA 2.10 and so refused by
 * tools/check-doca-headers.sh. Code that arms this PE must set it first.
 *
 * What a card may do that the code must survive (the emulation does each):
 * the client has no server to reach yet (its start is refused: a fresh
 * client tries again until the deadline); the first message arrives in the
 * progress call that turns the client RUNNING, or before the server's
 * connection event (the first connection heard of is the peer, whichever
 * way); the instance's default max message size is smaller than the
 * device's cap (we set the cap); and a client learns that the server is
 * done only through doca_comch_server_disconnect (close disconnects and
 * waits for it).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <doca_comch.h>
#include <doca_ctx.h>
#include <doca_dev.h>
#include <doca_error.h>
#include <doca_pe.h>

#include <hmaf/error.h>

#include "channel/transport.h"
#include "proto/handshake.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"

#define COMCH_PREFIX "comch:"
#define COMCH_PCI_MAX 16
#define COMCH_SEND_TASKS 4
#define COMCH_RX_MAX 4   /* messages queued; the handshake needs one */
#define COMCH_CLOSE_MS 1000
#define COMCH_RETRY_MS 10 /* between connect attempts, as the sockets */
#define COMCH_POLL_NS 20000 /* between progress calls while waiting */

struct comch_msg {
    uint8_t *data;
    size_t len;
};

struct hmaf_comch {
    pthread_mutex_t lock; /* the progress engine and everything below */
    struct doca_dev *dev;
    struct doca_dev_rep *rep; /* server only */
    struct doca_pe *pe;
    struct doca_comch_server *server;
    struct doca_comch_client *client;
    struct doca_ctx *ctx;
    struct doca_comch_connection *conn; /* the peer, once heard of */
    char *name;                         /* the service name */
    uint32_t max_msg;
    _Atomic int gone; /* peer disconnected, link failed, protocol broken */
    int link_down;    /* server: the peer's connection has ended */
    int sending;      /* a send task is in flight */
    int send_failed;  /* the latest send completed with an error */
    struct comch_msg rx[COMCH_RX_MAX];
    size_t rx_head, rx_count, rx_off; /* rx_off: read into rx[rx_head] */
    uint8_t *tx;                      /* the message in flight, max_msg */
};

/* A listener holds its server until the one connection it takes came:
 * accepting hands the server to the channel. */
struct comch_listener {
    struct hmaf_listener base;
    struct hmaf_comch *server; /* NULL once it accepted */
};

static _Thread_local struct hmaf_comch *current;

static int status_to_hmaf(doca_error_t err)
{
    switch (err) {
    case DOCA_SUCCESS:
        return 0;
    case DOCA_ERROR_NO_MEMORY:
        return HMAF_ENOMEM;
    case DOCA_ERROR_NOT_FOUND:
        return HMAF_EADDRESS;
    case DOCA_ERROR_IN_USE:
        return HMAF_EADDRINUSE;
    case DOCA_ERROR_INVALID_VALUE:
        return HMAF_EINVAL;
    case DOCA_ERROR_NOT_PERMITTED:
        return HMAF_EPERM;
    default:
        return HMAF_ECONNRESET;
    }
}

static int check(doca_error_t err, const char *what)
{
    if (err != DOCA_SUCCESS) {
        hmaf__log_error("comch %s: %s", what, doca_error_get_name(err));
    }
    return status_to_hmaf(err);
}

static uint8_t progress(struct hmaf_comch *c)
{
    uint8_t any;

    current = c;
    any = doca_pe_progress(c->pe);
    current = NULL;
    return any;
}

/* Between progress calls of a wait: a card needs no faster look. */
static void pause_briefly(void)
{
    nanosleep(&(struct timespec){0, COMCH_POLL_NS}, NULL);
}

/* "NAME@PCI" or "NAME@PCI/REP" into its parts; rep is "" without one.
 * The name's length is the device's to judge (check_name). */
static int parse(const char *address, char **name_out, char *pci, char *rep)
{
    const char *at = strrchr(address, '@');
    const char *slash;
    size_t n;

    if (at == NULL || at == address) {
        return HMAF_EADDRESS;
    }
    slash = strchr(at + 1, '/');
    n = slash != NULL ? (size_t)(slash - at - 1) : strlen(at + 1);
    if (n == 0 || n >= COMCH_PCI_MAX ||
        (slash != NULL &&
         (slash[1] == '\0' || strlen(slash + 1) >= COMCH_PCI_MAX))) {
        return HMAF_EADDRESS;
    }
    memcpy(pci, at + 1, n);
    pci[n] = '\0';
    snprintf(rep, COMCH_PCI_MAX, "%s", slash != NULL ? slash + 1 : "");
    *name_out = strndup(address, (size_t)(at - address));
    return *name_out != NULL ? 0 : HMAF_ENOMEM;
}

static int open_dev(const char *pci, struct doca_dev **dev_out)
{
    struct doca_devinfo **list;
    uint32_t n = 0;
    int ret = HMAF_EADDRESS;

    if (check(doca_devinfo_create_list(&list, &n), "device list") < 0) {
        return HMAF_EADDRESS;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint8_t eq = 0;
        if (doca_devinfo_is_equal_pci_addr(list[i], pci, &eq) == DOCA_SUCCESS &&
            eq) {
            ret = check(doca_dev_open(list[i], dev_out), "device open");
            break;
        }
    }
    doca_devinfo_destroy_list(list);
    if (ret == HMAF_EADDRESS) {
        hmaf__log_error("comch: no doca device at pci %s", pci);
    }
    return ret;
}

static int open_rep(struct hmaf_comch *c, const char *pci)
{
    struct doca_devinfo_rep **list;
    uint32_t n = 0;
    int ret = HMAF_EADDRESS;

    if (check(doca_devinfo_rep_create_list(c->dev, DOCA_DEVINFO_REP_FILTER_NET,
                                           &list, &n),
              "representor list") < 0) {
        return HMAF_EADDRESS;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint8_t eq = 0;
        if (doca_devinfo_rep_is_equal_pci_addr(list[i], pci, &eq) ==
                DOCA_SUCCESS &&
            eq) {
            ret = check(doca_dev_rep_open(list[i], &c->rep),
                        "representor open");
            break;
        }
    }
    doca_devinfo_rep_destroy_list(list);
    if (ret == HMAF_EADDRESS) {
        hmaf__log_error("comch: no representor at pci %s", pci);
    }
    return ret;
}

/* ---- callbacks (inside doca_pe_progress) ---- */

static void send_done(struct doca_comch_task_send *task, union doca_data tud,
                      union doca_data cud)
{
    struct hmaf_comch *c = cud.ptr;

    (void)tud;
    c->sending = 0;
    doca_task_free(doca_comch_task_send_as_task(task));
}

static void send_failed(struct doca_comch_task_send *task, union doca_data tud,
                        union doca_data cud)
{
    struct hmaf_comch *c = cud.ptr;

    hmaf__log_info("comch send: %s",
                   doca_error_get_name(doca_task_get_status(
                       doca_comch_task_send_as_task(task))));
    c->send_failed = 1;
    c->gone = 1;
    send_done(task, tud, cud);
}

/* The first connection heard of, by event, message or the client turning
 * RUNNING, is the peer. */
static void adopt(struct hmaf_comch *c, struct doca_comch_connection *conn)
{
    c->conn = conn;
    doca_comch_connection_set_user_data(conn, (union doca_data){.ptr = c});
}

/* A message may come before its connection's event (server) or in the
 * progress call that turns the client RUNNING, before we asked for the
 * connection: it is the peer's all the same. */
static void msg_received(struct doca_comch_event_msg_recv *ev, uint8_t *buf,
                         uint32_t len, struct doca_comch_connection *conn)
{
    struct hmaf_comch *c = current;
    struct comch_msg *m;

    (void)ev;
    if (c == NULL) {
        return;
    }
    if (c->conn == NULL) {
        adopt(c, conn);
    }
    if (conn != c->conn) {
        return; /* a client we turned away */
    }
    if (c->rx_count == COMCH_RX_MAX) {
        c->gone = 1; /* far more than the handshake sends */
        return;
    }
    m = &c->rx[(c->rx_head + c->rx_count) % COMCH_RX_MAX];
    m->data = malloc(len > 0 ? len : 1);
    if (m->data == NULL) {
        c->gone = 1;
        return;
    }
    memcpy(m->data, buf, len); /* buf lives only during the callback */
    m->len = len;
    c->rx_count++;
}

static void connected(struct doca_comch_event_connection_status_changed *ev,
                      struct doca_comch_connection *conn, uint8_t ok)
{
    struct hmaf_comch *c = current;

    (void)ev;
    if (c == NULL || !ok) {
        return;
    }
    if (c->conn == NULL) {
        adopt(c, conn);
    } else if (conn != c->conn) {
        /* One peer per channel: later ones are turned away. */
        (void)doca_comch_server_disconnect(c->server, conn);
    }
}

static void disconnected(struct doca_comch_event_connection_status_changed *ev,
                         struct doca_comch_connection *conn, uint8_t ok)
{
    struct hmaf_comch *c = current;

    (void)ev;
    (void)ok;
    if (c != NULL && conn == c->conn) {
        c->link_down = 1;
        c->gone = 1;
    }
}

/* The client has no connection events: RUNNING is its connection made
 * (taken at once: messages may follow in the same progress call), and
 * leaving RUNNING is the link dropping. */
static void state_changed(const union doca_data ud, struct doca_ctx *ctx,
                          enum doca_ctx_states prev, enum doca_ctx_states next)
{
    struct hmaf_comch *c = ud.ptr;
    struct doca_comch_connection *conn;

    (void)ctx;
    if (next == DOCA_CTX_STATE_RUNNING && c->client != NULL &&
        c->conn == NULL &&
        doca_comch_client_get_connection(c->client, &conn) == DOCA_SUCCESS) {
        adopt(c, conn);
    }
    if (prev == DOCA_CTX_STATE_RUNNING && next != DOCA_CTX_STATE_RUNNING) {
        c->gone = 1;
    }
}

/* ---- setup and teardown ---- */

static struct hmaf_comch *comch_alloc(void)
{
    struct hmaf_comch *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        pthread_mutex_init(&c->lock, NULL);
    }
    return c;
}

/* PE, ctx user data and state callback, after server or client exists. */
static int attach_ctx(struct hmaf_comch *c)
{
    int ret = check(doca_pe_connect_ctx(c->pe, c->ctx), "pe connect");

    if (ret == 0) {
        ret = check(doca_ctx_set_user_data(c->ctx, (union doca_data){.ptr = c}),
                    "ctx user data");
    }
    if (ret == 0) {
        ret = check(doca_ctx_set_state_changed_cb(c->ctx, state_changed),
                    "state callback");
    }
    return ret;
}

/* The instance's max message size is a default until set, which may be
 * less than we need: set the device's cap, as NVIDIA's samples do, and
 * check that the handshake's largest message fits. */
static int set_max_msg(struct hmaf_comch *c)
{
    uint32_t cap = 0;
    int ret = check(
        doca_comch_cap_get_max_msg_size(doca_dev_as_devinfo(c->dev), &cap),
        "max msg size cap");

    if (ret < 0) {
        return ret;
    }
    if (cap < HMAF_MSG_MAX) {
        hmaf__log_error("comch: the device's messages hold at most %u bytes, "
                        "the handshake needs %u",
                        cap, (unsigned)HMAF_MSG_MAX);
        return HMAF_ENOSPC;
    }
    if (c->server != NULL) {
        ret = check(doca_comch_server_set_max_msg_size(c->server, cap),
                    "set max msg size");
        if (ret == 0) {
            ret = check(
                doca_comch_server_get_max_msg_size(c->server, &c->max_msg),
                "max msg size");
        }
    } else {
        ret = check(doca_comch_client_set_max_msg_size(c->client, cap),
                    "set max msg size");
        if (ret == 0) {
            ret = check(
                doca_comch_client_get_max_msg_size(c->client, &c->max_msg),
                "max msg size");
        }
    }
    return ret;
}

static int setup_server(struct hmaf_comch *c, const char *name)
{
    int ret = check(doca_comch_server_create(c->dev, c->rep, name, &c->server),
                    "server create");

    if (ret < 0) {
        return ret;
    }
    c->ctx = doca_comch_server_as_ctx(c->server);
    ret = attach_ctx(c);
    if (ret == 0) {
        ret = check(doca_comch_server_task_send_set_conf(
                        c->server, send_done, send_failed, COMCH_SEND_TASKS),
                    "send conf");
    }
    if (ret == 0) {
        ret = check(doca_comch_server_event_msg_recv_register(c->server,
                                                              msg_received),
                    "recv register");
    }
    if (ret == 0) {
        ret = check(doca_comch_server_event_connection_status_changed_register(
                        c->server, connected, disconnected),
                    "connection register");
    }
    if (ret == 0) {
        ret = set_max_msg(c);
    }
    return ret;
}

static int setup_client(struct hmaf_comch *c, const char *name)
{
    int ret = check(doca_comch_client_create(c->dev, name, &c->client),
                    "client create");

    if (ret < 0) {
        return ret;
    }
    c->ctx = doca_comch_client_as_ctx(c->client);
    ret = attach_ctx(c);
    if (ret == 0) {
        ret = check(doca_comch_client_task_send_set_conf(
                        c->client, send_done, send_failed, COMCH_SEND_TASKS),
                    "send conf");
    }
    if (ret == 0) {
        ret = check(doca_comch_client_event_msg_recv_register(c->client,
                                                              msg_received),
                    "recv register");
    }
    if (ret == 0) {
        ret = set_max_msg(c);
    }
    return ret;
}

/* Stop the ctx (waiting, bounded, for a send still in flight). */
static void stop_ctx(struct hmaf_comch *c, uint64_t deadline)
{
    enum doca_ctx_states st = DOCA_CTX_STATE_IDLE;

    if (c->ctx == NULL || doca_ctx_get_state(c->ctx, &st) != DOCA_SUCCESS ||
        st == DOCA_CTX_STATE_IDLE) {
        return;
    }
    if (doca_ctx_stop(c->ctx) != DOCA_ERROR_IN_PROGRESS) {
        return;
    }
    while (doca_ctx_get_state(c->ctx, &st) == DOCA_SUCCESS &&
           st != DOCA_CTX_STATE_IDLE && hmaf__now_ns() < deadline) {
        if (!progress(c)) {
            pause_briefly();
        }
    }
}

/* A client learns that the server is done only when the server
 * disconnects it (stopping or destroying the server tells it nothing): so
 * disconnect the peer and wait, bounded, until its link is down, as
 * NVIDIA's samples do before they stop a server. */
static void disconnect_peer(struct hmaf_comch *c, uint64_t deadline)
{
    doca_error_t err;

    if (c->server == NULL || c->conn == NULL || c->link_down) {
        return;
    }
    while ((err = doca_comch_server_disconnect(c->server, c->conn)) ==
               DOCA_ERROR_AGAIN &&
           hmaf__now_ns() < deadline) {
        progress(c); /* a full queue: let it drain */
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_info("comch disconnect: %s", doca_error_get_name(err));
        return;
    }
    while (!c->link_down && hmaf__now_ns() < deadline) {
        if (!progress(c)) {
            pause_briefly();
        }
    }
}

/* The client object and its ctx; the PE and device stay. */
static void destroy_client(struct hmaf_comch *c, uint64_t deadline)
{
    stop_ctx(c, deadline);
    if (c->client != NULL) {
        doca_comch_client_destroy(c->client);
    }
    c->client = NULL;
    c->ctx = NULL;
    c->conn = NULL;
}

static void drop_rx(struct hmaf_comch *c)
{
    for (size_t i = 0; i < c->rx_count; i++) {
        free(c->rx[(c->rx_head + i) % COMCH_RX_MAX].data);
    }
    c->rx_head = c->rx_count = c->rx_off = 0;
}

/* Tell the peer (server: disconnect), stop, then free everything in
 * DOCA's order, all within COMCH_CLOSE_MS. */
static void comch_close(struct hmaf_comch *c)
{
    uint64_t deadline;

    if (c == NULL) {
        return;
    }
    deadline = hmaf__deadline_ns(COMCH_CLOSE_MS);
    disconnect_peer(c, deadline);
    stop_ctx(c, deadline);
    if (c->server != NULL) {
        doca_comch_server_destroy(c->server);
        c->server = NULL;
        c->ctx = NULL; /* the server's: destroy_client must not stop it */
    }
    destroy_client(c, deadline);
    if (c->pe != NULL) {
        doca_pe_destroy(c->pe);
    }
    if (c->rep != NULL) {
        doca_dev_rep_close(c->rep);
    }
    if (c->dev != NULL) {
        doca_dev_close(c->dev);
    }
    drop_rx(c);
    free(c->tx);
    free(c->name);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The device says how long a name may be (NUL included). */
static int check_name(struct hmaf_comch *c)
{
    uint32_t max = 0;
    int ret = check(
        doca_comch_cap_get_max_name_len(doca_dev_as_devinfo(c->dev), &max),
        "max name length");

    if (ret == 0 && strlen(c->name) >= max) {
        hmaf__log_error("comch: name '%s' is %zu bytes, the device takes "
                        "names of at most %u bytes with the NUL",
                        c->name, strlen(c->name), max);
        ret = HMAF_EINVAL;
    }
    return ret;
}

/* Device(s), PE, ctx configured; not started. */
static int comch_open(const char *address, int server,
                      struct hmaf_comch **comch_out)
{
    char pci[COMCH_PCI_MAX], rep[COMCH_PCI_MAX];
    struct hmaf_comch *c = comch_alloc();
    int ret = c != NULL ? parse(address, &c->name, pci, rep) : HMAF_ENOMEM;

    if (ret == 0 && (rep[0] != '\0') != server) {
        hmaf__log_error("comch:%s: the dpu side listens at NAME@PCI/REP, the "
                        "host connects to NAME@PCI",
                        address);
        ret = HMAF_EINVAL;
    }
    if (ret == 0) {
        ret = open_dev(pci, &c->dev);
    }
    if (ret == 0) {
        ret = check_name(c);
    }
    if (ret == 0 && server) {
        ret = open_rep(c, rep);
    }
    if (ret == 0) {
        ret = check(doca_pe_create(&c->pe), "pe create");
    }
    if (ret == 0) {
        ret = server ? setup_server(c, c->name) : setup_client(c, c->name);
    }
    if (ret == 0) {
        c->tx = malloc(c->max_msg);
        ret = c->tx != NULL ? 0 : HMAF_ENOMEM;
    }
    if (ret < 0) {
        comch_close(c);
        return ret;
    }
    *comch_out = c;
    return 0;
}

/* Here and in comch_dial, address is what follows "comch:". */
static int comch_listen(const char *address, struct hmaf_comch **comch_out)
{
    struct hmaf_comch *c;
    int ret = comch_open(address, 1, &c);

    if (ret < 0) {
        return ret;
    }
    ret = check(doca_ctx_start(c->ctx), "server start");
    if (ret < 0) {
        comch_close(c);
        return ret;
    }
    *comch_out = c;
    return 0;
}

/* The peer is known from its connection event or its first message. */
static int comch_accept(struct hmaf_comch *c, int timeout_ms)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);

    for (;;) {
        progress(c);
        if (c->conn != NULL) {
            return 0;
        }
        if (hmaf__now_ns() >= deadline) {
            return timeout_ms == 0 ? -EAGAIN : HMAF_ETIMEDOUT;
        }
        pause_briefly();
    }
}

/* Client start is asynchronous: RUNNING once the server accepted (the
 * state callback took the connection then); IDLE (or STOPPING) without a
 * connection when it refused or nobody listened. */
static int wait_running(struct hmaf_comch *c, uint64_t deadline)
{
    enum doca_ctx_states st = DOCA_CTX_STATE_STARTING;

    for (;;) {
        progress(c);
        if (c->conn != NULL) {
            return 0; /* connected, even if the peer left at once */
        }
        if (doca_ctx_get_state(c->ctx, &st) != DOCA_SUCCESS ||
            st == DOCA_CTX_STATE_IDLE || st == DOCA_CTX_STATE_STOPPING) {
            return HMAF_ECONNREFUSED;
        }
        if (st == DOCA_CTX_STATE_RUNNING) {
            return check(doca_comch_client_get_connection(c->client, &c->conn),
                         "get connection");
        }
        if (hmaf__now_ns() >= deadline) {
            return HMAF_ETIMEDOUT;
        }
        pause_briefly();
    }
}

/* One attempt: HMAF_ECONNREFUSED when it may work later. */
static int dial_once(struct hmaf_comch *c, uint64_t deadline)
{
    doca_error_t err = doca_ctx_start(c->ctx);

    switch (err) {
    case DOCA_SUCCESS:
    case DOCA_ERROR_IN_PROGRESS:
        return wait_running(c, deadline);
    case DOCA_ERROR_NO_MEMORY:
    case DOCA_ERROR_INVALID_VALUE:
    case DOCA_ERROR_NOT_SUPPORTED:
    case DOCA_ERROR_NOT_PERMITTED:
        return check(err, "client start");
    default: /* no server (yet), in whatever words the card says it */
        hmaf__log_debug("comch client start: %s", doca_error_get_name(err));
        return HMAF_ECONNREFUSED;
    }
}

/* A refused client is replaced by a fresh one for the next attempt. */
static int renew_client(struct hmaf_comch *c)
{
    destroy_client(c, hmaf__deadline_ns(COMCH_CLOSE_MS));
    drop_rx(c);
    c->gone = 0;
    return setup_client(c, c->name);
}

/* The server may not be up yet (starting order is not ours), and a card
 * refuses a client started before its server instead of waiting: try
 * again until the deadline, as the socket channels do. */
static int comch_dial(const char *address, int timeout_ms,
                      struct hmaf_comch **comch_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    struct hmaf_comch *c = NULL;
    int ret = comch_open(address, 0, &c);

    while (ret == 0 && (ret = dial_once(c, deadline)) == HMAF_ECONNREFUSED) {
        int left = hmaf__ms_left(deadline);
        if (left == 0) {
            ret = HMAF_ETIMEDOUT; /* nobody came */
            break;
        }
        poll(NULL, 0, left < COMCH_RETRY_MS ? left : COMCH_RETRY_MS);
        ret = renew_client(c);
    }
    if (ret < 0) {
        hmaf__log_info("connect comch:%s: %s", address, hmaf_strerror(ret));
        if (c != NULL) {
            comch_close(c);
        }
        return ret;
    }
    *comch_out = c;
    return 0;
}

/* ---- messages ---- */

static doca_error_t send_alloc(struct hmaf_comch *c, size_t len,
                               struct doca_comch_task_send **task)
{
    if (c->server != NULL) {
        return doca_comch_server_task_send_alloc_init(c->server, c->conn, c->tx,
                                                      (uint32_t)len, task);
    }
    return doca_comch_client_task_send_alloc_init(c->client, c->conn, c->tx,
                                                  (uint32_t)len, task);
}

/* Progress until the send in flight completed, or the deadline. A send
 * that went through counts even if the peer left in the same progress
 * call: its answer may be queued already (a refusal comes just before the
 * peer closes). */
static int wait_sent(struct hmaf_comch *c, uint64_t deadline_ns)
{
    while (c->sending && !c->gone) {
        if (hmaf__now_ns() >= deadline_ns) {
            return HMAF_ETIMEDOUT;
        }
        progress(c);
    }
    return c->sending || c->send_failed ? HMAF_ECONNRESET : 0;
}

static int send_locked(struct hmaf_comch *c, const void *buf, size_t len,
                       uint64_t deadline_ns)
{
    struct doca_comch_task_send *task;
    doca_error_t err;
    int ret = wait_sent(c, deadline_ns); /* tx is free again */

    if (ret < 0) {
        return ret;
    }
    if (len > c->max_msg) {
        hmaf__log_error("comch: %zu-byte message, the channel's limit is %u",
                        len, c->max_msg);
        return HMAF_ENOSPC;
    }
    /* Our own copy: DOCA may read it until the completion. */
    memcpy(c->tx, buf, len);
    for (;;) {
        err = send_alloc(c, len, &task);
        if (err == DOCA_SUCCESS) {
            err = doca_task_submit(doca_comch_task_send_as_task(task));
            if (err != DOCA_SUCCESS) {
                doca_task_free(doca_comch_task_send_as_task(task));
            }
        }
        if (err != DOCA_ERROR_NO_MEMORY && err != DOCA_ERROR_AGAIN) {
            break;
        }
        if (hmaf__now_ns() >= deadline_ns) {
            return HMAF_ETIMEDOUT;
        }
        progress(c); /* no free task or a full queue: let it drain */
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_info("comch send: %s", doca_error_get_name(err));
        return err == DOCA_ERROR_INVALID_VALUE ? HMAF_ENOSPC : HMAF_ECONNRESET;
    }
    c->sending = 1;
    c->send_failed = 0;
    return wait_sent(c, deadline_ns);
}

static int comch_send(struct hmaf_channel *channel, const void *buf,
                      size_t len, uint64_t deadline_ns)
{
    struct hmaf_comch *c = channel->conn;
    int ret;

    pthread_mutex_lock(&c->lock);
    ret = c->gone ? HMAF_ECONNRESET : send_locked(c, buf, len, deadline_ns);
    pthread_mutex_unlock(&c->lock);
    return ret;
}

/* Copy from the queued messages; returns the bytes taken. */
static size_t take(struct hmaf_comch *c, uint8_t *p, size_t len)
{
    size_t got = 0;

    while (got < len && c->rx_count > 0) {
        struct comch_msg *m = &c->rx[c->rx_head];
        size_t n = m->len - c->rx_off;

        if (n > len - got) {
            n = len - got;
        }
        memcpy(p + got, m->data + c->rx_off, n);
        got += n;
        c->rx_off += n;
        if (c->rx_off == m->len) {
            free(m->data);
            c->rx_head = (c->rx_head + 1) % COMCH_RX_MAX;
            c->rx_count--;
            c->rx_off = 0;
        }
    }
    return got;
}

static int comch_recv(struct hmaf_channel *channel, void *buf, size_t len,
                      uint64_t deadline_ns)
{
    struct hmaf_comch *c = channel->conn;
    size_t got = 0;
    int ret = 0;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        got += take(c, (uint8_t *)buf + got, len - got);
        if (got == len) {
            break;
        }
        if (c->gone) {
            ret = HMAF_ECONNRESET;
            break;
        }
        if (hmaf__now_ns() >= deadline_ns) {
            ret = HMAF_ETIMEDOUT;
            break;
        }
        progress(c);
        if (c->rx_count == 0 && !c->gone) {
            nanosleep(&(struct timespec){0, 10000}, NULL);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

/* Anything received after the handshake counts as gone too (the channel
 * is idle by contract). */
static int gone_locked(struct hmaf_comch *c)
{
    if (c->rx_count > 0) {
        c->gone = 1;
    }
    return c->gone;
}

/* One progress call and the flag. When another thread is progressing, its
 * result will do. A comch channel carries no nudges to take. */
static int comch_peer_gone(struct hmaf_channel *channel, int take_nudges)
{
    struct hmaf_comch *c = channel->conn;
    int gone;

    (void)take_nudges;
    if (pthread_mutex_trylock(&c->lock) != 0) {
        return atomic_load_explicit(&c->gone, memory_order_relaxed);
    }
    progress(c);
    gone = gone_locked(c);
    pthread_mutex_unlock(&c->lock);
    return gone;
}

/* ---- the transport (transport.h) ---- */

/* Ended or not, the peer is gone: comch tells no end of file apart. */
static int comch_peer_closed(struct hmaf_channel *channel)
{
    return comch_peer_gone(channel, 0);
}

/* After the handshake any message ends the session: one byte says so. */
static void comch_shutdown(struct hmaf_channel *channel, uint64_t deadline_ns)
{
    static const uint8_t bye = 0;

    (void)comch_send(channel, &bye, 1, deadline_ns);
}

/* The dpu side (server) disconnects its peer first, so the host learns. */
static void comch_channel_close(struct hmaf_channel *channel)
{
    comch_close(channel->conn);
}

static int comch_connect(const char *address, int timeout_ms,
                         struct hmaf_channel *channel_out)
{
    struct hmaf_comch *c;
    int ret = comch_dial(address + sizeof(COMCH_PREFIX) - 1, timeout_ms, &c);

    if (ret == 0) {
        *channel_out = (struct hmaf_channel){
            .fd = -1, .ops = &hmaf_channel_comch, .conn = c};
    }
    return ret;
}

static struct comch_listener *to_listener(struct hmaf_listener *base)
{
    return hmaf__container_of(base, struct comch_listener, base);
}

static int comch_listener_open(struct hmaf_listener *base, const char *address)
{
    return comch_listen(address + sizeof(COMCH_PREFIX) - 1,
                        &to_listener(base)->server);
}

/* The accepted connection takes the whole comch server with it. */
static int comch_listener_accept_wait(struct hmaf_listener *base,
                                      int timeout_ms,
                                      struct hmaf_channel *channel_out)
{
    struct comch_listener *l = to_listener(base);
    int ret;

    if (l->server == NULL) {
        return timeout_ms == 0 ? -EAGAIN : HMAF_ETIMEDOUT; /* one per server */
    }
    ret = comch_accept(l->server, timeout_ms);
    if (ret == 0) {
        *channel_out = (struct hmaf_channel){
            .fd = -1, .ops = &hmaf_channel_comch, .conn = l->server};
        l->server = NULL;
    }
    return ret;
}

static int comch_listener_accept(struct hmaf_listener *base,
                                 struct hmaf_channel *channel_out)
{
    return comch_listener_accept_wait(base, 0, channel_out);
}

static void comch_listener_close(struct hmaf_listener *base)
{
    comch_close(to_listener(base)->server);
}

/* No nudges (the dpu side looks at its mailbox on its own) and no peer
 * pid: those ops stay NULL. */
const struct hmaf_channel_ops hmaf_channel_comch = {
    .prefix = COMCH_PREFIX,
    .listener_size = sizeof(struct comch_listener),
    .listen = comch_listener_open,
    .accept = comch_listener_accept,
    .accept_wait = comch_listener_accept_wait,
    .listener_close = comch_listener_close,
    .connect = comch_connect,
    .send = comch_send,
    .recv = comch_recv,
    .peer_gone = comch_peer_gone,
    .peer_closed = comch_peer_closed,
    .shutdown = comch_shutdown,
    .close = comch_channel_close,
};
