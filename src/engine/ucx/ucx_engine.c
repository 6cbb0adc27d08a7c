/*
 * ucx: the engine's own request/reply protocol over UCX active messages,
 * across machines (docs/engines.md, "ucx"; the messages: ucx_wire.h).
 *
 * Connections are client-server: the host's worker listens on every
 * local IPv4 address, and the bootstrap blob is the listener's port and
 * the host's addresses (ucx_wire.h), which the dpu side tries in turn.
 * The host makes an endpoint of its own for each connection (ucx_on_conn)
 * and keeps it until its peer fails (closed by host_progress) or the ctx
 * closes. Unlike connecting to the host's worker address, this leaves the
 * host no wire-up message of its own to send (UCX_CM_USE_ALL_DEVICES=n,
 * ucx_config): UCX 1.13 aborts when it purges one for a dead peer.
 *
 * Host: a ucp context (active messages and wake-up only: no RMA, no
 * atomics, so UCX serves no emulated get or put of its own) and a worker
 * with its listener. A registration is an entry in the
 * host's table: a random 64-bit key, the range and its access; its export
 * blob is those four words. The worker's request handler, run by
 * host_progress in the agent's loop, looks each request's key up, checks
 * the range (inside the registration, no wrap) and the access, and only
 * then copies — all under the table's lock, so deregistering is a fence:
 * once mem_deregister has returned no copy touches the range, and none
 * was under way. It answers each request with its status, a read's bytes
 * (copied to a bounce buffer under the lock, sent from there) or an
 * atomic's old word (performed with the host CPU's own seq_cst atomics).
 * Revocation is thus enforced here (HMAF_ENGINE_ENFORCED), and a late
 * write to a freed mailbox is refused, not made.
 *
 * Dpu: one endpoint to the host's listener per session, in peer-failure
 * mode. Each transfer or atomic is one request, tracked in the ctx's
 * request table by id until the host's reply; a write completes on that
 * reply, which the host sends after the bytes are in its memory. When the
 * endpoint fails, every request still waiting ends with HMAF_ECONNRESET.
 * The host's bounce room is bounded (UCX_BOUNCE_MAX): an endpoint keeps
 * its reads within a window, and its requests unanswered within another
 * (UCX_EP_REQUESTS), and asks again for a read the host had no room
 * for.
 * Every message is sent eager: the host validates a write's bytes in the
 * handler that holds them, and never receives a rendezvous (it refuses
 * one).
 *
 * Both workers run in UCS_THREAD_MODE_MULTI: a session's threads share
 * one endpoint, and the agent's API calls register memory while its loop
 * progresses the worker.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

#include <ucp/api/ucp.h>
#include <ucs/config/global_opts.h>

#include <hmaf/atomic.h>
#include <hmaf/error.h>
#include <hmaf/types.h>

#include "engine/engine.h"
#include "engine/ucx/ucx_wire.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/config.h"
#include "util/log.h"

/* The handshake's bound on a blob (proto/handshake.h, HMAF_BLOB_MAX):
 * worker addresses are ~215 bytes over tcp and shared memory, larger with
 * RDMA devices. */
#define UCX_MAX_BLOB 1536
/* A request's bytes travel in one eager message, which UCX assembles
 * whole in memory of its own before the handler sees it, and a read's
 * reply is a bounce copy: the core splits larger transfers. */
#define UCX_MAX_TRANSFER (4ull << 20)
#define UCX_MAX_SEGMENTS 1024
#define UCX_MAX_INFLIGHT 16384
/* Host: bytes of replies made and not yet sent, over every peer: read
 * data, and UCX_REPLY_COST for each reply. Past it a read is answered
 * UCX_ST_NOMEM: a peer that asks and never takes its answers holds no
 * more of the host's memory than this. */
#define UCX_BOUNCE_MAX (256ull << 20)
/* Host: what one reply holds besides its data until UCX has sent it (its
 * header and UCX's request; about 400 bytes with UCX 1.13), rounded up.
 * Every reply is counted so: a peer that sends small requests and never
 * takes the answers would otherwise hold the host's memory without
 * bound. */
#define UCX_REPLY_COST 512ull
/* Dpu: requests one endpoint has sent and not had answered; more wait in
 * post. It bounds the replies a peer keeping to the protocol has unsent
 * at the host, which its reserve covers (UCX_RESERVE). */
#define UCX_EP_REQUESTS 16384
/* Host: buckets of the table of peers with replies unsent (struct
 * ucx_peer); a peer's bounce room is UCX_READ_WINDOW. */
#define UCX_PEER_BUCKETS 64
/* Host: bytes of replies a session's connection may hold beyond the
 * shared room, when that is full: one read of the largest size and an
 * answer to every request its dpu side may have unanswered (and to that
 * read), so a session's reads go on (one at a time), and each of its
 * requests is answered, whatever other sessions hold. A connection bound
 * to no session has room of its own for one reply (its hello's). */
#define UCX_RESERVE                                                            \
    (UCX_MAX_TRANSFER + (UCX_EP_REQUESTS + 1) * UCX_REPLY_COST)
/* Host: connections at once; past it, the listener rejects. Below UCX's
 * own bound: a worker has at most 1024 event handlers (UCX_ASYNC_MAX_EVENTS)
 * and each connection, taken or waiting for ucx_on_conn, holds one, the
 * listener and UCX's own a few more. Past that UCX fails the accept, and
 * UCX 1.13 then closes the accepted socket twice (tcp_listener.c), the
 * second time perhaps another thread's new fd. (Connections arriving
 * faster than host_progress takes them can still get there.) */
#define UCX_MAX_CONNS 960
/* Host: how long a connection may stay bound to no session (its peer
 * never said which one) before the host closes it; and how often it
 * looks. */
#define UCX_BIND_WAIT_NS 5000000000ull
#define UCX_SWEEP_NS 1000000000ull
/* Dpu: bytes of reads one endpoint has asked for and not yet received.
 * A larger read waits in post for room: one session's large reads do not
 * fill the host's bounce room by themselves. Reads that meet a full one
 * (other sessions') are asked again (ucx_on_reply). */
#define UCX_READ_WINDOW (64ull << 20)
/* Worker progress calls one host_progress makes at most while they find
 * work: the agent's other duties wait no longer. */
#define UCX_HOST_PROGRESS_ROUNDS 64
/* ep_close waits this long for a forced close (it needs no peer). */
#define UCX_CLOSE_WAIT_NS 1000000000ull
/* Dpu: how long one of the host's addresses has to take the connection
 * before the next is tried. */
#define UCX_CONNECT_WAIT_NS 10000000000ull

/* Host: the endpoint of one dpu side's connection, made when the listener
 * hands it over (ucx_on_conn), bound to its session by the peer's
 * UCX_OP_HELLO, and closed by the host: when its peer failed, its session
 * ended, it stayed unbound too long (conns_reap), or at ctx_close. */
struct ucx_conn {
    ucp_ep_h ep;
    struct ucx_ctx *ctx;
    _Atomic int failed;     /* closing: peer failed, or the host is done */
    struct ucx_ep *session; /* under the ctx's lock; NULL: unbound */
    uint64_t born_ns;
    struct ucx_conn *next;
};

/* Host: a peer (the endpoint its requests name for the answer) while
 * replies to it are unsent. Past UCX_READ_WINDOW of them, more than a
 * peer keeping to the protocol asks for, its reads are answered "no
 * room": one that asks and never takes its answers (never progresses,
 * or died on an endpoint without error handling, which UCX never fails)
 * holds no more of the shared bounce room than that, and the others' reads
 * are served. Past its reserve too, its requests are dropped unanswered:
 * only a peer that does not take its answers gets there. */
struct ucx_peer {
    ucp_ep_h ep;
    uint64_t bounce;  /* of the shared room */
    uint64_t reserve; /* of its own (UCX_RESERVE) */
    struct ucx_peer *next; /* in its bucket */
};

/* Host: a registration, in its ctx's table while it lives. */
struct ucx_mem {
    struct hmaf_engine_mem base;
    uint64_t key;
    struct ucx_mem *next; /* in its bucket */
};

/* Dpu: a request the host has not answered yet (or whose send UCX has not
 * completed): in its ctx's table by id until the reply or the endpoint's
 * failure takes it out. */
struct ucx_req {
    struct ucx_req_hdr hdr; /* UCX reads it until the send completes */
    struct ucx_ep *ep;
    struct ucx_track *track;
    void *local;      /* a read: where the reply's bytes go */
    uint64_t *old;    /* an atomic: where the old word goes */
    _Atomic int refs; /* the send's and the reply's */
    _Atomic int status;
};

struct ucx_slot {
    struct ucx_req *req;
    uint32_t gen; /* the id's high half: a stale id finds nothing */
};

struct ucx_ctx {
    struct hmaf_engine_ctx base;
    ucp_context_h context;
    ucp_worker_h worker;
    int efd;                 /* host: the worker's wake-up fd */
    ucp_listener_h listener; /* host: where dpu sides connect */
    uint8_t blob[UCX_MAX_BLOB]; /* host: the listener's addresses */
    size_t blob_len;
    /* Host: every connection's endpoint and every session's ep, under
     * lock; conn_failed says a connection needs closing. */
    struct ucx_conn *conns;
    unsigned nconns;
    _Atomic uint64_t next_sweep_ns;
    struct ucx_ep *sessions;
    _Atomic int conn_failed;
    uint64_t nonce; /* dpu: this side's, in its bootstrap blob */
    _Atomic int progressing; /* a thread is in ucx_progress_turn */
    pthread_mutex_t lock;    /* the table below of this side */
    int lock_ready;
    /* Host: live registrations, hashed by key. */
    struct ucx_mem **bucket;
    size_t nbuckets, nregs;
    _Atomic uint64_t bounce; /* UCX_BOUNCE_MAX's count */
    /* Host: peers with bounce room held, hashed by endpoint; their own
     * lock, taken with no other. */
    pthread_mutex_t peers_lock;
    int peers_lock_ready;
    struct ucx_peer *peer[UCX_PEER_BUCKETS];
    /* Dpu: requests in flight, by id's low half. */
    struct ucx_slot *slot;
    uint32_t *free_slots;
    uint32_t nslots, nfree;
};

struct ucx_ep {
    struct hmaf_engine_ep base;
    ucp_ep_h ep;              /* dpu only */
    _Atomic int failed;       /* the peer-failure handler ran */
    _Atomic uint64_t reading; /* UCX_READ_WINDOW's count */
    _Atomic uint64_t requests; /* UCX_EP_REQUESTS' count */
    /* Host: the nonce of the dpu side's blob, and the connection that
     * said it (bound: one did, which may have closed since: a session has
     * one connection, and the dpu side never makes another); in the ctx's
     * list of sessions. Under the ctx's lock. */
    uint64_t nonce;
    struct ucx_conn *conn;
    int bound;
    struct ucx_ep *next;
};

struct ucx_rmem {
    struct hmaf_engine_rmem base;
    uint64_t key;
};

/* Host: one reply, made whole before it is sent and freed when UCX is
 * done with it (the header too: UCX 1.13 reads it until then). */
struct ucx_reply {
    struct ucx_ctx *ctx;
    struct ucx_peer *peer; /* whose bounce room holds it */
    uint64_t bounce;       /* counted in ctx->bounce and peer's */
    int reserved;          /* counted in the peer's reserve instead */
    size_t data_len;
    struct ucx_reply_hdr hdr;
    uint8_t data[];
};

/* The requests of one post (or one move_one, one atomic) still in
 * flight, plus one the poster holds while it posts; whoever ends the last
 * one completes the batch (status first, then completed, release). A
 * move_one's tracker is on its caller's stack and has no batch: the
 * caller waits for pending to reach 0 and reads status itself. */
struct ucx_track {
    struct hmaf_xfer_batch *batch;
    _Atomic uint32_t pending;
    _Atomic int status;
};

static int ucx_status_to_hmaf(ucs_status_t st)
{
    switch (st) {
    case UCS_OK:
        return 0;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
        return HMAF_ENOMEM;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
        return HMAF_EINVAL;
    case UCS_ERR_UNSUPPORTED:
        return HMAF_ENOTSUP;
    case UCS_ERR_BUSY:
        return HMAF_EBUSY;
    case UCS_ERR_EXCEEDS_LIMIT:
        return HMAF_ENOSPC;
    case UCS_ERR_MESSAGE_TRUNCATED:
        return HMAF_EPROTO;
    default:
        /* Connection reset, endpoint timeout, unreachable, canceled (the
         * endpoint failed under the request), I/O errors: the peer is
         * gone or cannot be reached, and the endpoint is finished. */
        return HMAF_ECONNRESET;
    }
}

/* The host's answer. A key no registration has is an export the host
 * took back: the import is dead, as doca's is once its export is
 * destroyed, and the core ends the session on it (only a session the host
 * cut off, or a lying one, names such a key). */
static int ucx_wire_to_hmaf(uint32_t st)
{
    switch (st) {
    case UCX_ST_OK:
        return 0;
    case UCX_ST_NOKEY:
        return HMAF_ECONNRESET;
    case UCX_ST_RANGE:
        return HMAF_EFAULT;
    case UCX_ST_ACCESS:
        return HMAF_EACCES;
    case UCX_ST_NOMEM:
        return HMAF_ENOMEM;
    default:
        return HMAF_EPROTO;
    }
}

static struct ucx_ctx *ucx_ctx_of(struct hmaf_engine_ctx *ctx)
{
    return hmaf__container_of(ctx, struct ucx_ctx, base);
}

static struct ucx_ep *ucx_ep_of(struct hmaf_engine_ep *ep)
{
    return hmaf__container_of(ep, struct ucx_ep, base);
}

static int ucx_probe(char *why, size_t len)
{
    (void)why, (void)len;
    return 0; /* linked against UCX; ctx_open says whether it starts */
}

/* A setting of ours, unless the environment has one. */
static void ucx_config_default(ucp_config_t *config, const char *name,
                               const char *value)
{
    char env[64];

    snprintf(env, sizeof(env), "UCX_%s", name);
    if (getenv(env) == NULL) {
        (void)ucp_config_modify(config, name, value);
    }
}

/* The dpu side must see a dead host within about a second
 * (docs/engines.md): UCX's own keepalive default is 20 s. The host learns
 * of a dead dpu side from its channel, and keeps UCX's default.
 * Connections (docs/engines.md, "ucx"): the connection manager over tcp,
 * where RDMA devices exist too, and it alone carries the wire-up (with
 * CM_USE_ALL_DEVICES, the host would send wire-up messages of its own on
 * other lanes, and UCX 1.13 aborts when one is purged for a dead peer).
 * The environment still decides. */
static ucp_config_t *ucx_config(enum hmaf_engine_role role)
{
    ucp_config_t *config = NULL;

    if (ucp_config_read(NULL, NULL, &config) != UCS_OK) {
        return NULL;
    }
    if (role == HMAF_ROLE_DPU) {
        ucx_config_default(config, "KEEPALIVE_INTERVAL", "500ms");
    }
    ucx_config_default(config, "CM_USE_ALL_DEVICES", "n");
    ucx_config_default(config, "SOCKADDR_TLS_PRIORITY", "tcp");
    return config;
}

/* Active messages only: without UCP_FEATURE_RMA and _AMO the host's
 * worker has no emulated get, put or atomic to serve, so nothing reaches
 * its memory but this engine's checked handler. */
static int ucx_context_open(struct ucx_ctx *c)
{
    ucp_params_t params = {
        .field_mask =
            UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED,
        .features = UCP_FEATURE_AM,
        .mt_workers_shared = 1,
    };
    ucp_config_t *config = ucx_config(c->base.role);
    ucs_status_t st;

    if (c->base.role == HMAF_ROLE_HOST) {
        params.features |= UCP_FEATURE_WAKEUP;
    }
    st = ucp_init(&params, config, &c->context);
    if (config != NULL) {
        ucp_config_release(config);
    }
    if (st != UCS_OK) {
        hmaf__log_error("ucp_init: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

/* UCX runs its connection manager on one thread per process, shared by
 * every worker. A child forked while a worker lived inherits that thread's
 * count and its epoll fd but not the thread: its connections would never
 * complete, and its fds would wake the parent's thread. So a process
 * forked while one of this engine's workers lived refuses to open any
 * (docs/engines.md, "ucx": fork first, or exec). */
static _Atomic int ucx_workers_live;
static _Atomic int ucx_forked_live;
static pthread_once_t ucx_fork_watch_once = PTHREAD_ONCE_INIT;

static void ucx_on_fork_child(void)
{
    if (atomic_load(&ucx_workers_live) > 0) {
        atomic_store(&ucx_forked_live, 1);
    }
}

/* UCX gives a worker UCX_ASYNC_MAX_EVENTS (1024) event handlers, one
 * for each socket of its connection manager: accepted as they come, before
 * ucx_on_conn can refuse them (UCX_MAX_CONNS). Past that UCX 1.13 fails
 * the accept, closes the accepted socket twice (tcp_listener.c; the
 * second time perhaps another thread's new fd) and leaves the freed
 * endpoint in its list. Unless the environment says otherwise, the bound
 * is the process's fd limit (up to UCX_ASYNC_EVENTS_MAX): an accept fails
 * for want of an fd first, which UCX handles. Before the first worker:
 * each sizes a queue by it. */
#define UCX_ASYNC_EVENTS_MAX 65536
static void ucx_async_room(void)
{
    struct rlimit rl;
    char value[24];

    if (getenv("UCX_ASYNC_MAX_EVENTS") != NULL ||
        getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > UCX_ASYNC_EVENTS_MAX) {
        rl.rlim_cur = UCX_ASYNC_EVENTS_MAX;
    }
    if (rl.rlim_cur > ucs_global_opts.async_max_events) {
        snprintf(value, sizeof(value), "%llu",
                 (unsigned long long)rl.rlim_cur);
        (void)ucs_global_opts_set_value("ASYNC_MAX_EVENTS", value);
    }
}

static void ucx_fork_watch(void)
{
    (void)pthread_atfork(NULL, NULL, ucx_on_fork_child);
    ucx_async_room();
}

static int ucx_worker_open(struct ucx_ctx *c)
{
    ucp_worker_params_t params = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_MULTI,
    };
    ucs_status_t st;

    (void)pthread_once(&ucx_fork_watch_once, ucx_fork_watch);
    if (atomic_load(&ucx_forked_live)) {
        hmaf__log_error("ucx: this process was forked while its parent had "
                        "a ucx session or agent open, and UCX cannot run in "
                        "it (fork before the first one, or exec)");
        return HMAF_ENOTSUP;
    }
    /* Counted before UCX starts its thread: a fork meanwhile is one
     * beside a live worker. */
    atomic_fetch_add(&ucx_workers_live, 1);
    st = ucp_worker_create(c->context, &params, &c->worker);
    if (st != UCS_OK) {
        atomic_fetch_sub(&ucx_workers_live, 1);
        c->worker = NULL;
        hmaf__log_error("ucp_worker_create: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

static ucs_status_t ucx_on_request(void *arg, const void *header,
                                   size_t header_len, void *data, size_t len,
                                   const ucp_am_recv_param_t *param);
static ucs_status_t ucx_on_reply(void *arg, const void *header,
                                 size_t header_len, void *data, size_t len,
                                 const ucp_am_recv_param_t *param);

/* The host serves requests, the dpu side takes replies. Whole messages:
 * a handler sees a request's bytes together, in UCX's memory. */
static int ucx_handler_open(struct ucx_ctx *c)
{
    int host = c->base.role == HMAF_ROLE_HOST;
    ucp_am_handler_param_t params = {
        .field_mask =
            UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
            UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = host ? UCX_AM_REQUEST : UCX_AM_REPLY,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = host ? ucx_on_request : ucx_on_reply,
        .arg = c,
    };
    ucs_status_t st = ucp_worker_set_am_recv_handler(c->worker, &params);

    if (st != UCS_OK) {
        hmaf__log_error("ucp_worker_set_am_recv_handler: %s",
                        ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

/* ---- the host's connections ---- */

static void ucx_on_conn_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    struct ucx_conn *conn = arg;

    (void)ep;
    hmaf__log_info("ucx peer failed: %s", ucs_status_string(status));
    atomic_store(&conn->failed, 1);
    atomic_store(&conn->ctx->conn_failed, 1);
}

/* A dpu side connects: the host makes the endpoint its replies go on,
 * in peer-failure mode, and keeps it until it fails or the ctx closes.
 * (A request's reply_ep is this endpoint: UCX names the sender's.) */
static void ucx_on_conn(ucp_conn_request_h req, void *arg)
{
    struct ucx_ctx *c = arg;
    struct ucx_conn *conn = calloc(1, sizeof(*conn));
    int full;
    ucp_ep_params_t params = {
        .field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .conn_request = req,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = ucx_on_conn_error, .arg = conn},
    };
    ucs_status_t st;

    if (conn == NULL) {
        hmaf__log_warn("ucx connection refused: out of memory");
        (void)ucp_listener_reject(c->listener, req);
        return;
    }
    pthread_mutex_lock(&c->lock);
    full = c->nconns >= UCX_MAX_CONNS;
    c->nconns += !full;
    pthread_mutex_unlock(&c->lock);
    if (full) {
        hmaf__log_warn("ucx connection refused: %u open", UCX_MAX_CONNS);
        free(conn);
        (void)ucp_listener_reject(c->listener, req);
        return;
    }
    conn->ctx = c;
    conn->born_ns = hmaf__coarse_now_ns();
    st = ucp_ep_create(c->worker, &params, &conn->ep);
    pthread_mutex_lock(&c->lock);
    if (st == UCS_OK) {
        conn->next = c->conns;
        c->conns = conn;
    } else {
        c->nconns--;
    }
    pthread_mutex_unlock(&c->lock);
    if (st != UCS_OK) {
        hmaf__log_warn("ucx connection: %s", ucs_status_string(st));
        free(conn);
    }
}

/* Forced: the peer is gone, or the host is done with it. The request is
 * let go: UCX completes it on its own. */
static ucs_status_ptr_t conn_close(struct ucx_conn *conn)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};

    return ucp_ep_close_nbx(conn->ep, &param);
}

/* Under the lock: whether conn is to be closed now. An unbound one past
 * UCX_BIND_WAIT_NS is: a dpu side binds its connection at once. */
static int conn_done(const struct ucx_conn *conn, uint64_t now, int sweep)
{
    if (atomic_load(&conn->failed)) {
        return 1;
    }
    if (sweep && conn->session == NULL &&
        now - conn->born_ns > UCX_BIND_WAIT_NS) {
        hmaf__log_info("ucx connection closed: bound to no session");
        return 1;
    }
    return 0;
}

/* Out of UCX's callbacks: the endpoints of connections that failed,
 * whose session ended, or that stayed unbound, closed. No UCX call is
 * made under the lock (UCX's handlers take it). */
static void conns_reap(struct ucx_ctx *c)
{
    struct ucx_conn *dead = NULL;
    struct ucx_conn **pp;
    uint64_t now = hmaf__coarse_now_ns();
    int sweep;

    sweep = now >= atomic_load(&c->next_sweep_ns);
    if (!atomic_exchange(&c->conn_failed, 0) && !sweep) {
        return;
    }
    if (sweep) {
        atomic_store(&c->next_sweep_ns, now + UCX_SWEEP_NS);
    }
    pthread_mutex_lock(&c->lock);
    pp = &c->conns;
    while (*pp != NULL) {
        struct ucx_conn *conn = *pp;
        if (conn_done(conn, now, sweep)) {
            *pp = conn->next;
            conn->next = dead;
            dead = conn;
            c->nconns--;
            if (conn->session != NULL) {
                conn->session->conn = NULL;
            }
        } else {
            pp = &conn->next;
        }
    }
    pthread_mutex_unlock(&c->lock);
    while (dead != NULL) {
        struct ucx_conn *next = dead->next;
        ucs_status_ptr_t req = conn_close(dead);
        if (UCS_PTR_IS_PTR(req)) {
            ucp_request_free(req);
        }
        free(dead);
        dead = next;
    }
}

/* ctx_close: every endpoint closed, each waited for a while. */
static void conns_close_all(struct ucx_ctx *c)
{
    uint64_t deadline = hmaf__now_ns() + UCX_CLOSE_WAIT_NS;

    while (c->conns != NULL) {
        struct ucx_conn *conn = c->conns;
        ucs_status_ptr_t req = conn_close(conn);
        c->conns = conn->next;
        while (UCS_PTR_IS_PTR(req) &&
               ucp_request_check_status(req) == UCS_INPROGRESS &&
               hmaf__now_ns() < deadline) {
            ucp_worker_progress(c->worker);
        }
        if (UCS_PTR_IS_PTR(req)) {
            ucp_request_free(req);
        }
        free(conn);
    }
}

/* Whether UCX_NET_DEVICES lets UCX use interface name ("eth1", of
 * entries such as "eth1" or "mlx5_0:1"; unset or "all": every one). */
static int ucx_device_allowed(const char *name)
{
    const char *list = getenv("UCX_NET_DEVICES");
    size_t n = strlen(name);

    if (list == NULL || list[0] == '\0' || strcmp(list, "all") == 0) {
        return 1;
    }
    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ",");
        size_t dev = strcspn(p, ",:");
        if (dev > len) {
            dev = len;
        }
        if (dev == n && strncmp(p, name, n) == 0) {
            return 1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Appends the IPv4 addresses of interfaces that are up, loopback ones or
 * the others, as many as the blob has room for. */
static void blob_add_addrs(struct ucx_ctx *c, const struct ifaddrs *ifa,
                           int loopback, uint16_t *count)
{
    for (; ifa != NULL; ifa = ifa->ifa_next) {
        const struct sockaddr_in *sin = (const void *)ifa->ifa_addr;
        int lo = (ifa->ifa_flags & IFF_LOOPBACK) != 0;

        if (sin == NULL || sin->sin_family != AF_INET ||
            !(ifa->ifa_flags & IFF_UP) || lo != loopback ||
            (!lo && !ucx_device_allowed(ifa->ifa_name)) ||
            c->blob_len + 4 > sizeof(c->blob)) {
            continue;
        }
        memcpy(c->blob + c->blob_len, &sin->sin_addr, 4);
        c->blob_len += 4;
        (*count)++;
    }
}

/* The bootstrap blob: the listener's port and the host's addresses, the
 * ones UCX_NET_DEVICES allows first, loopback last. */
static int ucx_blob_make(struct ucx_ctx *c, uint16_t port)
{
    struct ucx_conn_blob h = {.magic = UCX_CONN_MAGIC, .port = port};
    struct ifaddrs *ifs = NULL;

    if (getifaddrs(&ifs) != 0) {
        hmaf__log_error("ucx: getifaddrs failed");
        return HMAF_ENOMEM;
    }
    c->blob_len = sizeof(h);
    blob_add_addrs(c, ifs, 0, &h.count);
    blob_add_addrs(c, ifs, 1, &h.count);
    freeifaddrs(ifs);
    if (h.count == 0) {
        hmaf__log_error("ucx: no IPv4 address to listen on");
        return HMAF_ENOTSUP;
    }
    memcpy(c->blob, &h, sizeof(h));
    return 0;
}

/* HMAF_UCX_PORT pins the listener's port (a firewall's hole); unset or
 * 0, the kernel picks one. Network order. */
static int ucx_listen_port(uint16_t *port_out)
{
    uint64_t v = 0;
    int ret = hmaf__config_value(HMAF_CFG_UCX_PORT, &v); /* strict */

    *port_out = htons((uint16_t)v);
    return ret;
}

/* The listener, on every local IPv4 address. */
static int ucx_listen(struct ucx_ctx *c, uint16_t *port_out)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    ucp_listener_params_t params = {
        .field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR |
                      UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
        .sockaddr = {.addr = (const struct sockaddr *)&sa,
                     .addrlen = sizeof(sa)},
        .conn_handler = {.cb = ucx_on_conn, .arg = c},
    };
    ucp_listener_attr_t attr = {.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR};
    int ret = ucx_listen_port(&sa.sin_port);
    ucs_status_t st;

    if (ret < 0) {
        return ret;
    }
    st = ucp_listener_create(c->worker, &params, &c->listener);
    if (st == UCS_OK) {
        st = ucp_listener_query(c->listener, &attr);
    }
    if (st == UCS_ERR_BUSY) {
        hmaf__log_error("ucx listener: port %u is taken", ntohs(sa.sin_port));
        return HMAF_EADDRINUSE;
    }
    if (st != UCS_OK) {
        hmaf__log_error("ucx listener: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    *port_out = ((const struct sockaddr_in *)&attr.sockaddr)->sin_port;
    return 0;
}

/* Host: the listener peers connect to, and the fd the agent sleeps on. */
static int ucx_host_open(struct ucx_ctx *c)
{
    uint16_t port = 0;
    int ret = ucx_listen(c, &port);
    ucs_status_t st;

    if (ret == 0) {
        hmaf__log_debug("ucx listening on port %u", ntohs(port));
        ret = ucx_blob_make(c, port);
    }
    if (ret < 0) {
        return ret;
    }
    st = ucp_worker_get_efd(c->worker, &c->efd);
    if (st != UCS_OK) {
        hmaf__log_error("ucx host worker: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

/* Dpu: the nonce its connection binds to its session with: never 0. */
static int ucx_nonce_make(uint64_t *nonce)
{
    do {
        if (getrandom(nonce, sizeof(*nonce), 0) != (ssize_t)sizeof(*nonce)) {
            hmaf__log_error("ucx: getrandom failed");
            return HMAF_ENOMEM;
        }
    } while (*nonce == 0);
    return 0;
}

static void ucx_ctx_close(struct hmaf_engine_ctx *ctx)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);

    if (c->listener != NULL) {
        ucp_listener_destroy(c->listener);
    }
    if (c->worker != NULL) {
        conns_close_all(c);
        ucp_worker_destroy(c->worker);
        atomic_fetch_sub(&ucx_workers_live, 1);
    }
    if (c->context != NULL) {
        ucp_cleanup(c->context);
    }
    free(c->bucket); /* every registration has ended */
    free(c->slot);   /* every request has ended */
    free(c->free_slots);
    if (c->lock_ready) {
        pthread_mutex_destroy(&c->lock);
    }
    if (c->peers_lock_ready) {
        pthread_mutex_destroy(&c->peers_lock); /* every reply has ended */
    }
}

static int ucx_ctx_open(struct hmaf_engine_ctx *ctx)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);
    int ret;

    c->efd = -1;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        return HMAF_ENOMEM;
    }
    c->lock_ready = 1;
    if (pthread_mutex_init(&c->peers_lock, NULL) != 0) {
        ucx_ctx_close(ctx);
        return HMAF_ENOMEM;
    }
    c->peers_lock_ready = 1;
    ret = ucx_context_open(c);
    if (ret == 0) {
        ret = ucx_worker_open(c);
    }
    if (ret == 0) {
        ret = ucx_handler_open(c);
    }
    if (ret == 0 && ctx->role == HMAF_ROLE_HOST) {
        ret = ucx_host_open(c);
    } else if (ret == 0) {
        ret = ucx_nonce_make(&c->nonce);
    }
    if (ret < 0) {
        ucx_ctx_close(ctx);
    }
    return ret;
}

static void ucx_limits(const struct hmaf_engine_ctx *ctx,
                       struct hmaf_engine_limits *limits_out)
{
    (void)ctx;
    limits_out->max_transfer = UCX_MAX_TRANSFER;
    limits_out->max_inflight = UCX_MAX_INFLIGHT;
    limits_out->max_segments = UCX_MAX_SEGMENTS;
    limits_out->max_blob = UCX_MAX_BLOB;
}

/* Where the host's listener is; the dpu side sends nothing (the host
 * learns of it when it connects). */
static int ucx_local_blob(struct hmaf_engine_ctx *ctx, void *buf, size_t cap,
                          size_t *len_out)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);

    if (ctx->role != HMAF_ROLE_HOST) {
        struct ucx_dpu_blob b = {.magic = UCX_DPU_MAGIC, .nonce = c->nonce};
        if (cap < sizeof(b)) {
            return HMAF_ENOSPC;
        }
        memcpy(buf, &b, sizeof(b));
        *len_out = sizeof(b);
        return 0;
    }
    if (c->blob_len > cap) {
        hmaf__log_error("ucx bootstrap blob of %zu bytes, room for %zu",
                        c->blob_len, cap);
        return HMAF_ENOSPC;
    }
    memcpy(buf, c->blob, c->blob_len);
    *len_out = c->blob_len;
    return 0;
}

/* ---- the dpu side's requests ---- */

static void track_note(struct ucx_track *t, int err)
{
    int none = 0;

    if (err < 0) {
        atomic_compare_exchange_strong(&t->status, &none, err);
    }
}

/* Out of line: inlined where a tracker lives on the stack (move_one,
 * atomics), gcc -O3 cannot tell that batch is NULL there and warns of a
 * free of a stack object. */
static __attribute__((noinline)) void track_complete(struct ucx_track *t,
                                                     struct hmaf_xfer_batch *b)
{
    b->status = atomic_load(&t->status);
    __atomic_store_n(&b->completed, b->count, __ATOMIC_RELEASE);
    free(t);
}

/* batch is read first: once pending is 0, a stack tracker's owner may
 * have returned. */
static void track_end_one(struct ucx_track *t)
{
    struct hmaf_xfer_batch *b = t->batch;

    if (atomic_fetch_sub(&t->pending, 1) == 1 && b != NULL) {
        track_complete(t, b);
    }
}

/* Drop one of r's references (each send's, its reply's), noting err; the
 * last ends r's share of its tracker. */
static void req_put(struct ucx_req *r, int err)
{
    int none = 0;

    if (err < 0) {
        atomic_compare_exchange_strong(&r->status, &none, err);
    }
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        struct ucx_track *t = r->track;

        if (r->hdr.op == UCX_OP_READ) {
            atomic_fetch_sub(&r->ep->reading, r->hdr.len);
        }
        atomic_fetch_sub(&r->ep->requests, 1);
        track_note(t, atomic_load(&r->status));
        free(r);
        track_end_one(t);
    }
}

/* Room for one more request in the table: doubles it when full. Under
 * the lock. */
static int reqs_grow(struct ucx_ctx *c)
{
    uint32_t n = c->nslots == 0 ? 64 : c->nslots * 2;
    struct ucx_slot *slot;
    uint32_t *free_slots;

    if (c->nfree > 0) {
        return 0;
    }
    slot = realloc(c->slot, n * sizeof(*slot));
    if (slot == NULL) {
        return HMAF_ENOMEM;
    }
    c->slot = slot;
    free_slots = realloc(c->free_slots, n * sizeof(*free_slots));
    if (free_slots == NULL) {
        return HMAF_ENOMEM;
    }
    c->free_slots = free_slots;
    for (uint32_t i = n; i-- > c->nslots;) {
        c->slot[i] = (struct ucx_slot){NULL, 0};
        c->free_slots[c->nfree++] = i;
    }
    c->nslots = n;
    return 0;
}

/* Give r an id and list it, before its send: the reply may come first. */
static int reqs_add(struct ucx_ctx *c, struct ucx_req *r)
{
    struct ucx_slot *s;
    uint32_t i;
    int ret;

    pthread_mutex_lock(&c->lock);
    ret = reqs_grow(c);
    if (ret == 0) {
        i = c->free_slots[--c->nfree];
        s = &c->slot[i];
        s->req = r;
        r->hdr.id = (uint64_t)++s->gen << 32 | i;
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

/* Under the lock. */
static void reqs_unlist(struct ucx_ctx *c, uint32_t i)
{
    c->slot[i].req = NULL;
    c->free_slots[c->nfree++] = i;
}

/* The request with this id, taken out of the table; NULL when none has it
 * (it ended, or the id is not one of ours). Whoever takes it owns its
 * reply's reference. */
static struct ucx_req *reqs_take(struct ucx_ctx *c, uint64_t id)
{
    uint32_t i = (uint32_t)id;
    struct ucx_req *r = NULL;

    pthread_mutex_lock(&c->lock);
    if (i < c->nslots && c->slot[i].req != NULL &&
        c->slot[i].req->hdr.id == id) {
        r = c->slot[i].req;
        reqs_unlist(c, i);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* The endpoint failed: no reply will come to what waits on it. */
static void reqs_fail_ep(struct ucx_ctx *c, struct ucx_ep *e)
{
    pthread_mutex_lock(&c->lock);
    for (uint32_t i = 0; i < c->nslots; i++) {
        struct ucx_req *r = c->slot[i].req;
        if (r != NULL && r->ep == e) {
            reqs_unlist(c, i);
            req_put(r, HMAF_ECONNRESET);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* The send ended: a failed one takes its reply's reference too, if the
 * reply has not come (it will not). */
static void req_sent(struct ucx_req *r, ucs_status_t st)
{
    int err = ucx_status_to_hmaf(st);

    if (err < 0 && reqs_take(ucx_ctx_of(r->ep->base.ctx), r->hdr.id) == r) {
        req_put(r, err);
    }
    req_put(r, err);
}

static void ucx_on_sent(void *request, ucs_status_t st, void *arg)
{
    ucp_request_free(request);
    req_sent(arg, st);
}

/* Send r (listed, holding a reference for this send). Eager: the host
 * refuses a rendezvous. */
static void req_send(struct ucx_req *r, const void *data, size_t len)
{
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER,
        .cb.send = ucx_on_sent,
        .user_data = r,
    };
    ucs_status_ptr_t sp = ucp_am_send_nbx(r->ep->ep, UCX_AM_REQUEST, &r->hdr,
                                          sizeof(r->hdr), data, len, &param);

    if (!UCS_PTR_IS_PTR(sp)) {
        req_sent(r, UCS_PTR_STATUS(sp)); /* done or failed at once */
    }
}

static int ucx_progress_turn(struct ucx_ctx *c);

/* Waits for room for len in one of e's windows (held, of max): a read's
 * bytes in UCX_READ_WINDOW, a request in UCX_EP_REQUESTS. One alone takes
 * a window whole; the endpoint's failure ends the wait. */
static void window_enter(struct ucx_ep *e, struct ucx_ctx *c,
                         _Atomic uint64_t *held, uint64_t len, uint64_t max)
{
    uint64_t cur = atomic_load(held);

    for (;;) {
        if ((cur == 0 || cur + len <= max || atomic_load(&e->failed)) &&
            atomic_compare_exchange_weak(held, &cur, cur + len)) {
            return;
        }
        if (cur != 0 && cur + len > max && !atomic_load(&e->failed)) {
            ucx_progress_turn(c);
            cur = atomic_load(held);
        }
    }
}

/* Send one request for t; its end ends one of t's pending. data: a
 * write's bytes. */
static void ucx_request(struct ucx_ep *e, struct ucx_track *t,
                        const struct ucx_req_hdr *hdr, void *local,
                        uint64_t *old, const void *data, size_t len)
{
    struct ucx_ctx *c = ucx_ctx_of(e->base.ctx);
    struct ucx_req *r = malloc(sizeof(*r));

    if (r == NULL) {
        track_note(t, HMAF_ENOMEM);
        return;
    }
    *r = (struct ucx_req){
        .hdr = *hdr, .ep = e, .track = t, .local = local, .old = old};
    atomic_init(&r->refs, 2);
    atomic_init(&r->status, 0);
    atomic_fetch_add(&t->pending, 1);
    window_enter(e, c, &e->requests, 1, UCX_EP_REQUESTS);
    if (reqs_add(c, r) < 0) {
        atomic_fetch_sub(&e->requests, 1);
        free(r);
        track_note(t, HMAF_ENOMEM);
        track_end_one(t); /* the poster still holds t */
        return;
    }
    if (hdr->op == UCX_OP_READ) {
        window_enter(e, c, &e->reading, hdr->len, UCX_READ_WINDOW);
    }
    req_send(r, data, len);
}

/* The host had no room for a read's bytes (other peers' reads held it):
 * ask again, under the same id, as it stays listed. 1 when it was a read
 * of ours still waiting. The endpoint's failure ends it as any other. */
static int reqs_retry(struct ucx_ctx *c, uint64_t id)
{
    uint32_t i = (uint32_t)id;
    struct ucx_req *r = NULL;

    pthread_mutex_lock(&c->lock);
    if (i < c->nslots && c->slot[i].req != NULL &&
        c->slot[i].req->hdr.id == id && c->slot[i].req->hdr.op == UCX_OP_READ) {
        r = c->slot[i].req;
        atomic_fetch_add(&r->refs, 1); /* the new send's */
    }
    pthread_mutex_unlock(&c->lock);
    if (r != NULL) {
        sched_yield(); /* room comes as the host's replies drain */
        req_send(r, NULL, 0);
    }
    return r != NULL;
}

/* A reply's effect on its request: 0, or the request's error. The
 * host's reply is checked as any message from the peer is. */
static int reply_apply(struct ucx_req *r, const struct ucx_reply_hdr *h,
                       const void *data, size_t len, uint64_t recv_attr)
{
    int err = ucx_wire_to_hmaf(h->status);

    if (recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
        return HMAF_EPROTO; /* never sent so: dropped unread */
    }
    if (err < 0) {
        return err;
    }
    if (r->hdr.op == UCX_OP_READ) {
        if (len != r->hdr.len) {
            return HMAF_EPROTO;
        }
        memcpy(r->local, data, len);
        return 0;
    }
    if (len != 0) {
        return HMAF_EPROTO;
    }
    if (r->hdr.op == UCX_OP_ATOMIC) {
        *r->old = r->hdr.len == 4 ? (uint32_t)h->old : h->old;
    }
    return 0;
}

/* Dpu: a reply from the host. One that names no request of ours (late:
 * the request ended when the endpoint failed) is dropped. */
static ucs_status_t ucx_on_reply(void *arg, const void *header,
                                 size_t header_len, void *data, size_t len,
                                 const ucp_am_recv_param_t *param)
{
    struct ucx_ctx *c = arg;
    struct ucx_reply_hdr h;
    struct ucx_req *r;

    if (header_len != sizeof(h)) {
        hmaf__log_warn("ucx reply with a %zu-byte header dropped", header_len);
        return UCS_OK;
    }
    memcpy(&h, header, sizeof(h));
    if (h.status == UCX_ST_NOMEM && reqs_retry(c, h.id)) {
        return UCS_OK;
    }
    r = reqs_take(c, h.id);
    if (r != NULL) {
        req_put(r, reply_apply(r, &h, data, len, param->recv_attr));
    }
    return UCS_OK;
}

static void ucx_on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    struct ucx_ep *e = arg;

    (void)ep;
    hmaf__log_info("ucx peer failed: %s", ucs_status_string(status));
    atomic_store(&e->failed, 1);
    reqs_fail_ep(ucx_ctx_of(e->base.ctx), e);
}

/* Forced: it needs no answer from the peer (which may be gone, stopped,
 * or never there). */
static void ucx_ep_end(ucp_worker_h worker, ucp_ep_h ep)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};
    uint64_t deadline = hmaf__now_ns() + UCX_CLOSE_WAIT_NS;
    ucs_status_ptr_t req = ucp_ep_close_nbx(ep, &param);

    if (req == NULL || UCS_PTR_IS_ERR(req)) {
        return;
    }
    while (ucp_request_check_status(req) == UCS_INPROGRESS &&
           hmaf__now_ns() < deadline) {
        ucp_worker_progress(worker);
    }
    ucp_request_free(req);
}

/* Waits until e's endpoint is connected (its flush completes once the
 * host accepted it and the lanes are wired up) or has failed. */
static ucs_status_t ucx_connected(struct ucx_ctx *c, struct ucx_ep *e)
{
    ucp_request_param_t param = {0};
    uint64_t deadline = hmaf__now_ns() + UCX_CONNECT_WAIT_NS;
    ucs_status_ptr_t req = ucp_ep_flush_nbx(e->ep, &param);
    ucs_status_t st;

    if (!UCS_PTR_IS_PTR(req)) {
        st = UCS_PTR_STATUS(req);
    } else {
        while (ucp_request_check_status(req) == UCS_INPROGRESS &&
               hmaf__now_ns() < deadline) {
            ucp_worker_progress(c->worker);
        }
        st = ucp_request_check_status(req);
        if (st == UCS_INPROGRESS) {
            st = UCS_ERR_TIMED_OUT;
        }
        ucp_request_free(req);
    }
    if (st == UCS_OK && atomic_load(&e->failed)) {
        st = UCS_ERR_UNREACHABLE;
    }
    return st;
}

/* One connection attempt to the host's listener at addr:port. */
static ucs_status_t ucx_connect(struct ucx_ctx *c, struct ucx_ep *e,
                                const uint8_t addr[4], uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = port};
    ucp_ep_params_t params = {
        .field_mask = UCP_EP_PARAM_FIELD_SOCK_ADDR |
                      UCP_EP_PARAM_FIELD_FLAGS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .sockaddr = {.addr = (const struct sockaddr *)&sa,
                     .addrlen = sizeof(sa)},
        .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = ucx_on_ep_error, .arg = e},
    };
    char text[INET_ADDRSTRLEN] = "?";
    ucs_status_t st;

    memcpy(&sa.sin_addr, addr, 4);
    atomic_store(&e->failed, 0);
    st = ucp_ep_create(c->worker, &params, &e->ep);
    if (st == UCS_OK) {
        st = ucx_connected(c, e);
        if (st != UCS_OK) {
            ucx_ep_end(c->worker, e->ep);
            e->ep = NULL;
        }
    }
    if (st != UCS_OK) {
        (void)inet_ntop(AF_INET, addr, text, sizeof(text));
        hmaf__log_info("ucx connect to %s:%u: %s", text, ntohs(port),
                       ucs_status_string(st));
    }
    return st;
}

/* Host: a session. Its dpu side's connection is bound to it when it says
 * the nonce of its blob (conn_bind). */
static int ucx_host_ep_open(struct ucx_ctx *c, struct ucx_ep *e,
                            const void *peer_blob, size_t len)
{
    struct ucx_dpu_blob b;

    if (len != sizeof(b)) {
        return HMAF_EPROTO;
    }
    memcpy(&b, peer_blob, sizeof(b));
    if (b.magic != UCX_DPU_MAGIC || b.nonce == 0) {
        return HMAF_EPROTO;
    }
    e->nonce = b.nonce;
    pthread_mutex_lock(&c->lock);
    e->next = c->sessions;
    c->sessions = e;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* Host: the session ended, and its connection with it: the peer's
 * requests are served no more, and the replies UCX still holds for it are
 * dropped with their bounce room. */
static void ucx_host_ep_close(struct ucx_ctx *c, struct ucx_ep *e)
{
    struct ucx_ep **pp;

    pthread_mutex_lock(&c->lock);
    for (pp = &c->sessions; *pp != NULL && *pp != e; pp = &(*pp)->next) {
    }
    if (*pp == e) {
        *pp = e->next;
    }
    if (e->conn != NULL) {
        e->conn->session = NULL;
        atomic_store(&e->conn->failed, 1);
        atomic_store(&c->conn_failed, 1);
        e->conn = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    conns_reap(c);
}

/* Under the lock: binds conn (NULL: not one of the listener's) to a
 * session never bound whose dpu side's nonce this is; the reply's
 * status. */
static uint32_t conn_bind(struct ucx_ctx *c, struct ucx_conn *conn,
                          uint64_t nonce)
{
    struct ucx_ep *e = c->sessions;

    if (conn == NULL || atomic_load(&conn->failed)) {
        return UCX_ST_NOKEY;
    }
    if (conn->session != NULL) {
        return UCX_ST_PROTO; /* bound already */
    }
    while (e != NULL && (e->nonce != nonce || e->bound)) {
        e = e->next;
    }
    if (e == NULL || nonce == 0) {
        return UCX_ST_NOKEY;
    }
    e->conn = conn;
    e->bound = 1;
    conn->session = e;
    return UCX_ST_OK;
}

/* Dpu: the first request on a connection names the session it is for;
 * the host serves none before. Waited for until deadline. */
static ucs_status_t ucx_hello(struct ucx_ctx *c, struct ucx_ep *e,
                              uint64_t deadline)
{
    struct ucx_track t = {.batch = NULL};
    struct ucx_req_hdr h = {.key = c->nonce, .op = UCX_OP_HELLO};
    int ret;

    atomic_init(&t.pending, 1);
    atomic_init(&t.status, 0);
    ucx_request(e, &t, &h, NULL, NULL, NULL, 0);
    track_end_one(&t);
    while (atomic_load(&t.pending) > 0 && hmaf__now_ns() < deadline) {
        ucx_progress_turn(c);
    }
    if (atomic_load(&t.pending) > 0) {
        ucx_ep_end(c->worker, e->ep); /* its sends end */
        reqs_fail_ep(c, e);           /* and so does the wait */
        e->ep = NULL;
        while (atomic_load(&t.pending) > 0) {
            ucx_progress_turn(c);
        }
        return UCS_ERR_TIMED_OUT;
    }
    ret = atomic_load(&t.status);
    if (ret == HMAF_ECONNRESET && !atomic_load(&e->failed)) {
        hmaf__log_error("ucx: the host knows no session of this side's");
    }
    return ret == 0 ? UCS_OK : UCS_ERR_CONNECTION_RESET;
}

/* Dpu: connect to the host's listener, at each of its addresses in turn
 * until one takes it, and bind the connection to the session. */
static int ucx_ep_open(struct hmaf_engine_ep *ep, const void *peer_blob,
                       size_t len)
{
    struct ucx_ep *e = ucx_ep_of(ep);
    struct ucx_ctx *c = ucx_ctx_of(ep->ctx);
    struct ucx_conn_blob h;
    const uint8_t *addrs = (const uint8_t *)peer_blob + sizeof(h);
    ucs_status_t st = UCS_ERR_UNREACHABLE;

    if (ep->ctx->role == HMAF_ROLE_HOST) {
        return ucx_host_ep_open(c, e, peer_blob, len);
    }
    if (len < sizeof(h)) {
        return HMAF_EPROTO;
    }
    memcpy(&h, peer_blob, sizeof(h));
    if (h.magic != UCX_CONN_MAGIC || h.count == 0 || h.port == 0 ||
        len != sizeof(h) + 4 * (size_t)h.count) {
        return HMAF_EPROTO;
    }
    for (uint16_t i = 0; i < h.count; i++) {
        st = ucx_connect(c, e, addrs + 4 * (size_t)i, h.port);
        if (st == UCS_OK) {
            st = ucx_hello(c, e, hmaf__now_ns() + UCX_CONNECT_WAIT_NS);
            if (st == UCS_OK) {
                return 0;
            }
            if (e->ep != NULL) {
                ucx_ep_end(c->worker, e->ep);
                e->ep = NULL;
            }
            break; /* the host took it and said no: no other will */
        }
    }
    atomic_store(&e->failed, 0);
    hmaf__log_error("ucx: no address of the host's took the connection");
    return ucx_status_to_hmaf(st);
}

/* Forced: it needs no answer from the peer (which may be gone or
 * stopped); the core has drained every transfer before. */
static void ucx_ep_close(struct hmaf_engine_ep *ep)
{
    struct ucx_ep *e = ucx_ep_of(ep);

    if (ep->ctx->role == HMAF_ROLE_HOST) {
        ucx_host_ep_close(ucx_ctx_of(ep->ctx), e);
    } else if (e->ep != NULL) {
        ucx_ep_end(ucx_ctx_of(ep->ctx)->worker, e->ep);
    }
}

/* ---- the host's registrations ---- */

static struct ucx_mem *ucx_mem_of(struct hmaf_engine_mem *mem)
{
    return hmaf__container_of(mem, struct ucx_mem, base);
}

/* Under the lock. Keys are random: their low bits spread them. */
static struct ucx_mem *regs_find(struct ucx_ctx *c, uint64_t key)
{
    struct ucx_mem *m;

    if (c->nbuckets == 0) {
        return NULL;
    }
    m = c->bucket[key & (c->nbuckets - 1)];
    while (m != NULL && m->key != key) {
        m = m->next;
    }
    return m;
}

/* Under the lock: doubles the buckets once they are as many as the
 * registrations. */
static int regs_grow(struct ucx_ctx *c)
{
    size_t n = c->nbuckets == 0 ? 64 : c->nbuckets * 2;
    struct ucx_mem **bucket;

    if (c->nregs < c->nbuckets) {
        return 0;
    }
    bucket = calloc(n, sizeof(*bucket));
    if (bucket == NULL) {
        return HMAF_ENOMEM;
    }
    for (size_t i = 0; i < c->nbuckets; i++) {
        while (c->bucket[i] != NULL) {
            struct ucx_mem *m = c->bucket[i];
            c->bucket[i] = m->next;
            m->next = bucket[m->key & (n - 1)];
            bucket[m->key & (n - 1)] = m;
        }
    }
    free(c->bucket);
    c->bucket = bucket;
    c->nbuckets = n;
    return 0;
}

/* A fresh key for m, unlike any live one (and never 0), and m listed.
 * Under the lock. */
static int regs_insert(struct ucx_ctx *c, struct ucx_mem *m)
{
    struct ucx_mem **head;
    int ret = regs_grow(c);

    if (ret < 0) {
        return ret;
    }
    do {
        if (getrandom(&m->key, sizeof(m->key), 0) != sizeof(m->key)) {
            hmaf__log_error("getrandom for a registration key: %m");
            return HMAF_ENOMEM;
        }
    } while (m->key == 0 || regs_find(c, m->key) != NULL);
    head = &c->bucket[m->key & (c->nbuckets - 1)];
    m->next = *head;
    *head = m;
    c->nregs++;
    return 0;
}

static void regs_remove(struct ucx_ctx *c, struct ucx_mem *m)
{
    struct ucx_mem **at = &c->bucket[m->key & (c->nbuckets - 1)];

    while (*at != m) {
        at = &(*at)->next;
    }
    *at = m->next;
    c->nregs--;
}

/* 1 when [addr, addr + len) is mapped without a gap, readable, and
 * writable when asked: the request handler copies from and to a
 * registered range with this process's own loads and stores, which would
 * fault on anything else. */
static int ucx_range_mapped(uint64_t addr, uint64_t len, int want_write)
{
    FILE *f = fopen("/proc/self/maps", "re");
    uint64_t at = addr, end = addr + len;
    char *line = NULL;
    size_t cap = 0;

    if (f == NULL) {
        hmaf__log_warn("/proc/self/maps: %m; registering unchecked");
        return 1;
    }
    while (at < end && getline(&line, &cap, f) > 0) {
        unsigned long long lo, hi;
        char perms[8];

        if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3 || hi <= at) {
            continue;
        }
        if (lo > at || perms[0] != 'r' || (want_write && perms[1] != 'w')) {
            break;
        }
        at = hi;
    }
    free(line);
    fclose(f);
    return at >= end;
}

/* No ucp_mem_map: nothing but the handler, which copies through the
 * table, reaches a registered range (docs/engines.md, "ucx"). */
static int ucx_mem_register(struct hmaf_engine_mem *mem)
{
    struct ucx_mem *m = ucx_mem_of(mem);
    struct ucx_ctx *c = ucx_ctx_of(mem->ctx);
    int ret;

    if (mem->len == 0 || mem->addr + mem->len < mem->addr ||
        !ucx_range_mapped(mem->addr, mem->len,
                          mem->access == HMAF_ACCESS_READ_WRITE)) {
        return HMAF_EFAULT;
    }
    pthread_mutex_lock(&c->lock);
    ret = regs_insert(c, m);
    pthread_mutex_unlock(&c->lock);
    return ret;
}

static int ucx_mem_export(struct hmaf_engine_mem *mem, void *buf, size_t cap,
                          size_t *len_out)
{
    struct ucx_blob b = {.magic = UCX_BLOB_MAGIC,
                         .access = mem->access,
                         .key = ucx_mem_of(mem)->key,
                         .addr = mem->addr,
                         .len = mem->len};

    if (sizeof(b) > cap) {
        return HMAF_ENOSPC;
    }
    memcpy(buf, &b, sizeof(b));
    *len_out = sizeof(b);
    return 0;
}

/* The fence: the handler copies only under the lock, after finding the
 * key; once the key is gone under the same lock, no copy is under way
 * and none will start. */
static void ucx_mem_deregister(struct hmaf_engine_mem *mem)
{
    struct ucx_ctx *c = ucx_ctx_of(mem->ctx);

    pthread_mutex_lock(&c->lock);
    regs_remove(c, ucx_mem_of(mem));
    pthread_mutex_unlock(&c->lock);
}

/* Dpu: the blob is the host's, checked as any message from the peer is:
 * it must be one, and cover what the agent said it registered. */
static int ucx_rmem_import(struct hmaf_engine_rmem *rmem, const void *blob,
                           size_t len)
{
    struct ucx_rmem *r = hmaf__container_of(rmem, struct ucx_rmem, base);
    struct ucx_blob b;

    if (len != sizeof(b)) {
        return HMAF_EPROTO;
    }
    memcpy(&b, blob, sizeof(b));
    if (b.magic != UCX_BLOB_MAGIC || b.key == 0 || b.addr + b.len < b.addr ||
        rmem->addr < b.addr || rmem->len > b.len ||
        rmem->addr - b.addr > b.len - rmem->len ||
        (rmem->access == HMAF_ACCESS_READ_WRITE &&
         b.access != HMAF_ACCESS_READ_WRITE)) {
        hmaf__log_error("ucx export blob does not describe 0x%llx+%llu",
                        (unsigned long long)rmem->addr,
                        (unsigned long long)rmem->len);
        return HMAF_EPROTO;
    }
    r->key = b.key;
    return 0;
}

/* ---- the host's share: serving requests ---- */

/* Endpoints are UCX's objects: their address bits spread them. */
static struct ucx_peer **peer_bucket(struct ucx_ctx *c, ucp_ep_h ep)
{
    return &c->peer[((uintptr_t)ep >> 6) % UCX_PEER_BUCKETS];
}

/* Under peers_lock: ep's entry, made when make is set (NULL: none, or no
 * memory for it). */
static struct ucx_peer *peer_find(struct ucx_ctx *c, ucp_ep_h ep, int make)
{
    struct ucx_peer **head = peer_bucket(c, ep);
    struct ucx_peer *p = *head;

    while (p != NULL && p->ep != ep) {
        p = p->next;
    }
    if (p == NULL && make) {
        p = calloc(1, sizeof(*p));
        if (p != NULL) {
            p->ep = ep;
            p->next = *head;
            *head = p;
        }
    }
    return p;
}

/* Under peers_lock: p leaves the table once it holds nothing. Its
 * endpoint is not released before its replies' sends have ended, so no
 * other endpoint can have its address while p is listed. */
static void peer_put(struct ucx_ctx *c, struct ucx_peer *p, uint64_t len,
                     int reserved)
{
    struct ucx_peer **at = peer_bucket(c, p->ep);

    if (reserved) {
        p->reserve -= len;
    } else {
        p->bounce -= len;
    }
    if (p->bounce > 0 || p->reserve > 0) {
        return;
    }
    while (*at != p) {
        at = &(*at)->next;
    }
    *at = p->next;
    free(p);
}

/* Under the lock: the listener's connection whose endpoint ep is; NULL
 * for any other (a peer that reached the worker some other way). */
static struct ucx_conn *conn_of(struct ucx_ctx *c, ucp_ep_h ep)
{
    struct ucx_conn *conn = c->conns;

    while (conn != NULL && conn->ep != ep) {
        conn = conn->next;
    }
    return conn;
}

/* Under the lock: whether requests on ep are served: its connection is
 * bound to a live session. */
static int conn_serves(struct ucx_ctx *c, ucp_ep_h ep)
{
    const struct ucx_conn *conn = conn_of(c, ep);

    return conn != NULL && conn->session != NULL && !atomic_load(&conn->failed);
}

/* The room of its own ep has for replies (UCX_RESERVE): a session's, or
 * one reply's for a connection bound to none (its hello's). */
static uint64_t conn_reserve(struct ucx_ctx *c, ucp_ep_h ep)
{
    int serves;

    pthread_mutex_lock(&c->lock);
    serves = conn_serves(c, ep);
    pthread_mutex_unlock(&c->lock);
    return serves ? UCX_RESERVE : UCX_REPLY_COST;
}

/* Under peers_lock: the peer's share of the shared room (and the whole
 * room) has len more. */
static int pool_take(struct ucx_ctx *c, struct ucx_peer *p, uint64_t len)
{
    if (p->bounce + len > UCX_READ_WINDOW) {
        return 0;
    }
    if (atomic_fetch_add(&c->bounce, len) + len > UCX_BOUNCE_MAX) {
        atomic_fetch_sub(&c->bounce, len);
        return 0;
    }
    p->bounce += len;
    return 1;
}

/* cost bytes of bounce room for a reply to ep (with data_len of data):
 * from the peer's share of the shared room, or else from its own reserve
 * (*reserved set), as conn_reserve sizes it — looked up only then, the
 * shared room being full. A reply with data leaves the reserve room for
 * an answer to every request the peer may have open: it holds one read at
 * a time. The peer, or NULL when there is no room. */
static struct ucx_peer *bounce_take(struct ucx_ctx *c, ucp_ep_h ep,
                                    uint64_t cost, uint64_t data_len,
                                    int *reserved)
{
    uint64_t need = cost + (data_len > 0 ? UCX_EP_REQUESTS * UCX_REPLY_COST : 0);
    uint64_t reserve_max;
    struct ucx_peer *p;

    *reserved = 0;
    pthread_mutex_lock(&c->peers_lock);
    p = peer_find(c, ep, 1);
    if (p != NULL && pool_take(c, p, cost)) {
        pthread_mutex_unlock(&c->peers_lock);
        return p;
    }
    pthread_mutex_unlock(&c->peers_lock);
    reserve_max = conn_reserve(c, ep); /* not under peers_lock */
    pthread_mutex_lock(&c->peers_lock);
    p = peer_find(c, ep, 1);
    if (p != NULL && p->reserve + need <= reserve_max) {
        p->reserve += cost;
        *reserved = 1;
    } else if (p != NULL) {
        peer_put(c, p, 0, 0); /* unlisted if it held nothing */
        p = NULL;
    }
    pthread_mutex_unlock(&c->peers_lock);
    return p;
}

static void bounce_give(struct ucx_ctx *c, struct ucx_peer *p, uint64_t len,
                        int reserved)
{
    if (!reserved) {
        atomic_fetch_sub(&c->bounce, len);
    }
    pthread_mutex_lock(&c->peers_lock);
    peer_put(c, p, len, reserved);
    pthread_mutex_unlock(&c->peers_lock);
}

/* A reply to ep with room for data_len bytes; NULL when there is no
 * memory for it, or no bounce room for it (UCX_REPLY_COST and its data). */
static struct ucx_reply *reply_new(struct ucx_ctx *c, ucp_ep_h ep, uint64_t id,
                                   size_t data_len)
{
    uint64_t cost = UCX_REPLY_COST + data_len;
    struct ucx_reply *rep;
    struct ucx_peer *p;
    int reserved = 0;

    p = bounce_take(c, ep, cost, data_len, &reserved);
    if (p == NULL) {
        return NULL;
    }
    rep = malloc(sizeof(*rep) + data_len);
    if (rep == NULL) {
        bounce_give(c, p, cost, reserved);
        return NULL;
    }
    *rep = (struct ucx_reply){.ctx = c,
                              .peer = p,
                              .reserved = reserved,
                              .bounce = cost,
                              .data_len = data_len,
                              .hdr = {.id = id}};
    return rep;
}

static void reply_free(struct ucx_reply *rep)
{
    bounce_give(rep->ctx, rep->peer, rep->bounce, rep->reserved);
    free(rep);
}

/* A refused read's reply carries no bytes: their bounce room and memory
 * are given back at once, so a read with a forged key or range holds
 * neither while its answer waits to be taken. */
static struct ucx_reply *reply_shrink(struct ucx_reply *rep)
{
    struct ucx_reply *small;

    bounce_give(rep->ctx, rep->peer, rep->data_len, rep->reserved);
    rep->bounce -= rep->data_len;
    rep->data_len = 0;
    small = realloc(rep, sizeof(*rep));
    return small != NULL ? small : rep;
}

static void ucx_on_replied(void *request, ucs_status_t st, void *arg)
{
    (void)st; /* a requester gone: nothing to do */
    ucp_request_free(request);
    reply_free(arg);
}

/* Eager, as requests are: a rendezvous would leave the bounce copy's
 * fate to the requester. */
static void reply_send(ucp_ep_h ep, struct ucx_reply *rep)
{
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_EAGER,
        .cb.send = ucx_on_replied,
        .user_data = rep,
    };
    ucs_status_ptr_t sp =
        ucp_am_send_nbx(ep, UCX_AM_REPLY, &rep->hdr, sizeof(rep->hdr),
                        rep->data, rep->data_len, &param);

    if (!UCS_PTR_IS_PTR(sp)) {
        reply_free(rep);
    }
}

/* Under the lock: may h, from ep, reach [addr, addr + len) of its
 * registration? */
static uint32_t regs_check(struct ucx_ctx *c, ucp_ep_h ep,
                           const struct ucx_req_hdr *h, int want_write)
{
    const struct ucx_mem *m;

    if (!conn_serves(c, ep)) {
        return UCX_ST_NOKEY;
    }
    m = regs_find(c, h->key);
    if (m == NULL) {
        return UCX_ST_NOKEY;
    }
    if (h->addr < m->base.addr || h->len > m->base.len ||
        h->addr - m->base.addr > m->base.len - h->len) {
        return UCX_ST_RANGE;
    }
    if (want_write && m->base.access != HMAF_ACCESS_READ_WRITE) {
        return UCX_ST_ACCESS;
    }
    return UCX_ST_OK;
}

/* The bytes are copied out under the lock, into the reply: they are sent
 * after it is dropped, from memory no revocation concerns. */
static struct ucx_reply *serve_read(struct ucx_ctx *c, ucp_ep_h ep,
                                    const struct ucx_req_hdr *h)
{
    struct ucx_reply *rep = reply_new(c, ep, h->id, h->len);

    if (rep == NULL) {
        rep = reply_new(c, ep, h->id, 0);
        if (rep != NULL) {
            rep->hdr.status = UCX_ST_NOMEM;
        }
        return rep;
    }
    pthread_mutex_lock(&c->lock);
    rep->hdr.status = regs_check(c, ep, h, 0);
    if (rep->hdr.status == UCX_ST_OK) {
        memcpy(rep->data, (const void *)(uintptr_t)h->addr, h->len);
    }
    pthread_mutex_unlock(&c->lock);
    if (rep->hdr.status != UCX_ST_OK) {
        rep = reply_shrink(rep);
    }
    return rep;
}

/* The reply is made first: a write the host could not answer is not
 * made either. */
static struct ucx_reply *serve_write(struct ucx_ctx *c, ucp_ep_h ep,
                                     const struct ucx_req_hdr *h,
                                     const void *data)
{
    struct ucx_reply *rep = reply_new(c, ep, h->id, 0);

    if (rep == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    rep->hdr.status = regs_check(c, ep, h, 1);
    if (rep->hdr.status == UCX_ST_OK) {
        memcpy((void *)(uintptr_t)h->addr, data, h->len);
    }
    pthread_mutex_unlock(&c->lock);
    return rep;
}

/* The host CPU's own atomics, seq_cst: atomic with respect to the host's
 * threads' (hmaf/atomic.h). op is one of hmaf_atomic_op_t. */
#define UCX_ATOMIC_FN(name, type)                                              \
    static type name(type *p, uint8_t op, type v, type cmp)                    \
    {                                                                          \
        switch (op) {                                                          \
        case HMAF_ATOMIC_FADD:                                                 \
            return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);                 \
        case HMAF_ATOMIC_SWAP:                                                 \
            return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);                \
        case HMAF_ATOMIC_CAS:                                                  \
            __atomic_compare_exchange_n(p, &cmp, v, 0, __ATOMIC_SEQ_CST,       \
                                        __ATOMIC_SEQ_CST);                     \
            return cmp;                                                        \
        case HMAF_ATOMIC_FAND:                                                 \
            return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);                 \
        case HMAF_ATOMIC_FOR:                                                  \
            return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);                  \
        default: /* HMAF_ATOMIC_FXOR: ucx_atomic_valid checked */              \
            return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);                 \
        }                                                                      \
    }
UCX_ATOMIC_FN(ucx_atomic32, uint32_t)
UCX_ATOMIC_FN(ucx_atomic64, uint64_t)

/* A known op on a naturally aligned word of 4 or 8 bytes. */
static int ucx_atomic_valid(uint8_t op, uint64_t size, uint64_t addr)
{
    return op >= HMAF_ATOMIC_FADD && op <= HMAF_ATOMIC_FXOR &&
           (size == 4 || size == 8) && addr % size == 0;
}

static struct ucx_reply *serve_atomic(struct ucx_ctx *c, ucp_ep_h ep,
                                       const struct ucx_req_hdr *h)
{
    struct ucx_reply *rep = reply_new(c, ep, h->id, 0);
    void *p = (void *)(uintptr_t)h->addr;

    if (rep == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    rep->hdr.status = regs_check(c, ep, h, 1);
    if (rep->hdr.status == UCX_ST_OK && h->len == 4) {
        rep->hdr.old = ucx_atomic32(p, h->atomic_op, (uint32_t)h->operand,
                                    (uint32_t)h->compare);
    } else if (rep->hdr.status == UCX_ST_OK) {
        rep->hdr.old = ucx_atomic64(p, h->atomic_op, h->operand, h->compare);
    }
    pthread_mutex_unlock(&c->lock);
    return rep;
}

/* A connection names its session (conn_bind); its reply says whether it
 * was bound. */
static struct ucx_reply *serve_hello(struct ucx_ctx *c, ucp_ep_h ep,
                                     const struct ucx_req_hdr *h, size_t len)
{
    struct ucx_reply *rep = reply_new(c, ep, h->id, 0);

    if (rep == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    rep->hdr.status =
        len == 0 ? conn_bind(c, conn_of(c, ep), h->key) : UCX_ST_PROTO;
    pthread_mutex_unlock(&c->lock);
    return rep;
}

/* Whether h, with len bytes of data, is a request the host can serve:
 * its shape only; the table decides the rest. */
static int request_well_formed(const struct ucx_req_hdr *h, size_t len)
{
    switch (h->op) {
    case UCX_OP_READ:
        return len == 0 && h->len > 0 && h->len <= UCX_MAX_TRANSFER;
    case UCX_OP_WRITE:
        return len == h->len && h->len > 0 && h->len <= UCX_MAX_TRANSFER;
    case UCX_OP_ATOMIC:
        return len == 0 && ucx_atomic_valid(h->atomic_op, h->len, h->addr);
    default:
        return 0;
    }
}

static struct ucx_reply *serve(struct ucx_ctx *c, ucp_ep_h ep,
                               const struct ucx_req_hdr *h, const void *data,
                               size_t len, uint64_t recv_attr)
{
    struct ucx_reply *rep;

    /* A rendezvous is dropped unreceived (UCS_OK below): the engine's
     * requests are eager, and its bytes would arrive after the check. */
    if ((recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) ||
        !request_well_formed(h, len)) {
        rep = reply_new(c, ep, h->id, 0);
        if (rep != NULL) {
            rep->hdr.status = UCX_ST_PROTO;
        }
        return rep;
    }
    switch (h->op) {
    case UCX_OP_READ:
        return serve_read(c, ep, h);
    case UCX_OP_WRITE:
        return serve_write(c, ep, h, data);
    default:
        return serve_atomic(c, ep, h);
    }
}

/* Host: one request, run by host_progress in the agent's loop. A header
 * of the wrong size, or no endpoint to answer on, is dropped: there is no
 * id to answer, or no one. Nothing a peer sends is kept past the call. */
static ucs_status_t ucx_on_request(void *arg, const void *header,
                                   size_t header_len, void *data, size_t len,
                                   const ucp_am_recv_param_t *param)
{
    struct ucx_ctx *c = arg;
    struct ucx_req_hdr h;
    struct ucx_reply *rep;

    if (header_len != sizeof(h) ||
        !(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP)) {
        hmaf__log_debug("ucx request dropped: %zu-byte header%s", header_len,
                        param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP
                            ? ""
                            : ", no reply endpoint");
        return UCS_OK;
    }
    memcpy(&h, header, sizeof(h));
    if (h.op == UCX_OP_HELLO) {
        rep = serve_hello(c, param->reply_ep, &h, len);
    } else {
        rep = serve(c, param->reply_ep, &h, data, len, param->recv_attr);
    }
    if (rep != NULL) {
        reply_send(param->reply_ep, rep);
    } else {
        hmaf__log_debug("ucx request %llu dropped: out of memory, or its "
                        "peer takes no answers",
                        (unsigned long long)h.id);
    }
    return UCS_OK;
}

/* ---- transfers ---- */

/* One request per transfer, until one fails at once. A write's reply
 * comes once its bytes are in the host's memory: the batch's completion
 * is the remote completion the core needs, with no flush. The poster's
 * own hold on t is ended by the caller. */
static void ucx_post_all(struct ucx_ep *e, enum hmaf_xfer_op op,
                         const struct hmaf_xfer *x, uint32_t count,
                         struct ucx_track *t)
{
    for (uint32_t i = 0; i < count && atomic_load(&t->status) == 0; i++) {
        struct ucx_req_hdr h = {
            .key = hmaf__container_of(x[i].rmem, struct ucx_rmem, base)->key,
            .addr = x[i].remote_addr,
            .len = x[i].len,
            .op = op == HMAF_XFER_READ ? UCX_OP_READ : UCX_OP_WRITE,
        };

        if (op == HMAF_XFER_READ) {
            ucx_request(e, t, &h, x[i].local, NULL, NULL, 0);
        } else {
            ucx_request(e, t, &h, NULL, NULL, x[i].local, x[i].len);
        }
    }
}

static int ucx_post(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch)
{
    struct ucx_ep *e = ucx_ep_of(ep);
    struct ucx_track *t = malloc(sizeof(*t));

    if (t == NULL) {
        return HMAF_ENOMEM;
    }
    t->batch = batch;
    atomic_init(&t->pending, 1);
    atomic_init(&t->status, atomic_load(&e->failed) ? HMAF_ECONNRESET : 0);
    ucx_post_all(e, batch->op, batch->xfers, batch->count, t);
    track_end_one(t);
    return 0;
}

/*
 * One turn of a thread waiting for its transfers. One thread progresses
 * the worker at a time, and the others yield: UCX's MULTI thread mode
 * guards the worker with a spinlock, and a session's threads all spinning
 * on it, more of them than CPUs, stall behind a preempted holder (test
 * runs of seconds took minutes). Whichever thread progresses runs every
 * thread's completions. A turn that found nothing yields too: on a shared
 * machine the host's agent may need this CPU to answer.
 */
static int ucx_progress_turn(struct ucx_ctx *c)
{
    int expected = 0;
    int n = 0;

    if (atomic_compare_exchange_strong(&c->progressing, &expected, 1)) {
        n = (int)ucp_worker_progress(c->worker);
        atomic_store(&c->progressing, 0);
    }
    if (n == 0) {
        sched_yield();
    }
    return n;
}

static int ucx_progress(struct hmaf_engine_ep *ep)
{
    return ucx_progress_turn(ucx_ctx_of(ep->ctx));
}

/* Drive progress until t's requests and the caller's hold have ended;
 * t's status. */
static int ucx_wait(struct ucx_ctx *c, struct ucx_track *t)
{
    track_end_one(t);
    while (atomic_load(&t->pending) > 0) {
        ucx_progress_turn(c);
    }
    return atomic_load(&t->status);
}

static int ucx_move_one(struct hmaf_engine_ep *ep, enum hmaf_xfer_op op,
                        const struct hmaf_xfer *x)
{
    struct ucx_ep *e = ucx_ep_of(ep);
    struct ucx_track t = {.batch = NULL};

    atomic_init(&t.pending, 1);
    atomic_init(&t.status, atomic_load(&e->failed) ? HMAF_ECONNRESET : 0);
    ucx_post_all(e, op, x, 1, &t);
    return ucx_wait(ucx_ctx_of(ep->ctx), &t);
}

/* ---- atomics ---- */

/* One atomic, waited for: the host performs it (serve_atomic). One at a
 * time, so they are performed in order whatever lanes UCX sends on. */
static int ucx_atomic_one(struct ucx_ep *e, struct ucx_ctx *c,
                          struct hmaf_engine_atomic *a)
{
    struct ucx_track t = {.batch = NULL};
    struct ucx_req_hdr h = {
        .key = hmaf__container_of(a->rmem, struct ucx_rmem, base)->key,
        .addr = a->remote_addr,
        .len = a->size,
        .operand = a->size == 4 ? (uint32_t)a->operand : a->operand,
        .compare = a->size == 4 ? (uint32_t)a->compare : a->compare,
        .op = UCX_OP_ATOMIC,
        .atomic_op = a->op,
    };

    if (!ucx_atomic_valid(a->op, a->size, a->remote_addr)) {
        return HMAF_EINVAL;
    }
    atomic_init(&t.pending, 1);
    atomic_init(&t.status, 0);
    ucx_request(e, &t, &h, NULL, &a->old, NULL, 0);
    return ucx_wait(c, &t);
}

static int ucx_atomic(struct hmaf_engine_ep *ep, struct hmaf_engine_atomic *ops,
                      uint32_t count)
{
    struct ucx_ep *e = ucx_ep_of(ep);
    struct ucx_ctx *c = ucx_ctx_of(ep->ctx);

    if (atomic_load(&e->failed)) {
        return HMAF_ECONNRESET;
    }
    for (uint32_t i = 0; i < count; i++) {
        ops[i].status = ucx_atomic_one(e, c, &ops[i]);
        if (ops[i].status == HMAF_ECONNRESET) {
            return HMAF_ECONNRESET;
        }
    }
    return 0;
}

/* ---- the host's loop ---- */

static int ucx_host_progress(struct hmaf_engine_ctx *ctx)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);
    int done = 0;

    for (int i = 0; i < UCX_HOST_PROGRESS_ROUNDS; i++) {
        unsigned n = ucp_worker_progress(c->worker);
        if (n == 0) {
            break;
        }
        done += (int)n;
    }
    conns_reap(c);
    return done;
}

static int ucx_wait_fd(struct hmaf_engine_ctx *ctx, int *fd_out)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);
    ucs_status_t st = ucp_worker_arm(c->worker);

    *fd_out = c->efd;
    if (st == UCS_ERR_BUSY) {
        return HMAF_EBUSY;
    }
    if (st != UCS_OK) {
        hmaf__log_error("ucp_worker_arm: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

const struct hmaf_engine_ops hmaf_engine_ucx = {
    .name = "ucx",
    .abi_version = HMAF_ENGINE_ABI_VERSION,
    .flags = HMAF_ENGINE_ASYNC | HMAF_ENGINE_ENFORCED,
    .ctx_size = sizeof(struct ucx_ctx),
    .ep_size = sizeof(struct ucx_ep),
    .mem_size = sizeof(struct ucx_mem),
    .rmem_size = sizeof(struct ucx_rmem),
    .probe = ucx_probe,
    .ctx_open = ucx_ctx_open,
    .ctx_close = ucx_ctx_close,
    .limits = ucx_limits,
    .local_blob = ucx_local_blob,
    .ep_open = ucx_ep_open,
    .ep_close = ucx_ep_close,
    .mem_register = ucx_mem_register,
    .mem_export = ucx_mem_export,
    .mem_deregister = ucx_mem_deregister,
    .rmem_import = ucx_rmem_import,
    .post = ucx_post,
    .progress = ucx_progress,
    .move_one = ucx_move_one,
    .atomic = ucx_atomic,
    .host_progress = ucx_host_progress,
    .wait_fd = ucx_wait_fd,
};
