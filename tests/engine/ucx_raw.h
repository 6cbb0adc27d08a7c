/* The ucx engine's host against peers of the tests' making
 * (ucx_hostile.c, ucx_limits.c): a forked child serves as the host
 * through the engine's ops, and opens and ends sessions as its parent
 * commands over a pipe; raw ucp peers send the parent's requests, what
 * the engine's dpu side never would included. */
#ifndef HMAF_TEST_UCX_RAW_H
#define HMAF_TEST_UCX_RAW_H

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#include "check.h"
#include "engine/engine.h"
#include "engine/ucx/ucx_wire.h"
#include "proto/handshake.h"

/* How long a raw peer waits for any one thing before the test fails. */
#define RAW_WAIT_S 20
/* Sessions the host may have open at once. */
#define HOST_SESSIONS 64

/* Reads (out: writes) len bytes on fd. The other process gone, this one
 * ends too: either side's failure was reported by that side. */
static inline void io_full(int fd, void *p, size_t len, int out)
{
    uint8_t *at = p;

    while (len > 0) {
        ssize_t n = out ? write(fd, at, len) : read(fd, at, len);
        if (n <= 0) {
            _exit(2);
        }
        at += n;
        len -= (size_t)n;
    }
}

/* A session's nonce, as a dpu side's blob has: never 0, and not another
 * run's. */
static inline uint64_t random_nonce(void)
{
    static uint64_t next = 0x9e3779b97f4a7c15ull;

    next = next * 6364136223846793005ull + (uint64_t)getpid();
    return next | 1;
}

/* ---- the host (child) ---- */

/* Where the host listens (its bootstrap blob), as each test's host tells
 * its parent in its info. */
struct host_addr {
    uint32_t blob_len;
    uint8_t blob[HMAF_BLOB_MAX];
};

static inline void host_addr_get(struct hmaf_engine_ctx *ctx,
                                 struct host_addr *addr)
{
    size_t n = 0;

    CHECK_OK(ctx->ops->local_blob(ctx, addr->blob, sizeof(addr->blob), &n));
    addr->blob_len = (uint32_t)n;
}

/* 'e': a session opens, as the agent opens one for a dpu side whose blob
 * has nonce; 'x': the session of nonce ends. */
static inline void host_session_command(struct hmaf_engine_ctx *ctx,
                                        uint8_t cmd, uint64_t nonce)
{
    static struct hmaf_engine_ep *eps[HOST_SESSIONS];
    static uint64_t nonces[HOST_SESSIONS];
    struct ucx_dpu_blob b = {.magic = UCX_DPU_MAGIC, .nonce = nonce};
    int i;

    for (i = 0; i < HOST_SESSIONS &&
                (cmd == 'e' ? eps[i] != NULL : nonces[i] != nonce);
         i++) {
    }
    CHECK(i < HOST_SESSIONS);
    if (cmd == 'e') {
        CHECK_OK(hmaf__engine_ep_create(ctx, 0, &b, sizeof(b), &eps[i]));
        nonces[i] = nonce;
    } else {
        hmaf__engine_ep_destroy(eps[i]);
        eps[i] = NULL;
        nonces[i] = 0;
    }
}

/* A test's own command (not 'e' or 'x'): its answer, 1 for yes. */
typedef uint8_t host_other_fn(uint8_t cmd, void *arg);

/* One command from the parent (host_ask), answered with a byte: 'e' or
 * 'x' and a nonce (host_session_command), done; another, by other. */
static inline void host_command(struct hmaf_engine_ctx *ctx, int cmd_fd,
                                int reply_fd, host_other_fn *other, void *arg)
{
    uint8_t cmd, ok = 1;
    uint64_t nonce;

    io_full(cmd_fd, &cmd, 1, 0);
    if (cmd == 'e' || cmd == 'x') {
        io_full(cmd_fd, &nonce, sizeof(nonce), 0);
        host_session_command(ctx, cmd, nonce);
    } else {
        CHECK(other != NULL);
        ok = other(cmd, arg);
    }
    io_full(reply_fd, &ok, 1, 1);
}

/* Serves ctx's peers, and the parent's commands (host_command), until
 * killed. */
static inline void host_serve(struct hmaf_engine_ctx *ctx, int cmd_fd,
                              int reply_fd, host_other_fn *other, void *arg)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = cmd_fd, .events = POLLIN},
                                {.fd = -1, .events = POLLIN}};
        int busy = ctx->ops->host_progress(ctx) > 0;
        int fd = -1;

        if (!busy && ctx->ops->wait_fd(ctx, &fd) == HMAF_EBUSY) {
            busy = 1;
        }
        pfd[1].fd = busy ? -1 : fd;
        if (poll(pfd, 2, busy ? 0 : 1000) < 0 && errno != EINTR) {
            _exit(2);
        }
        if (pfd[0].revents != 0) {
            host_command(ctx, cmd_fd, reply_fd, other, arg);
        }
    }
}

/* ---- the parent ---- */

/* The forked host: the pipe that commands it, and the one it answers
 * on. */
struct host_link {
    pid_t pid;
    int cmd_fd, reply_fd;
};

/* The host's part: tells the parent its info on reply_fd, then serves
 * (host_serve). */
typedef void host_run_fn(const struct hmaf_engine_ops *ops, int cmd_fd,
                         int reply_fd);

/* Forks the host, which runs run (printing to log_fd, unless that is
 * -1), and reads its info, info_len bytes. */
static inline void start_host(struct host_link *h,
                              const struct hmaf_engine_ops *ops,
                              host_run_fn *run, int log_fd, void *info,
                              size_t info_len)
{
    int to_child[2], to_parent[2];

    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    h->pid = fork();
    CHECK(h->pid >= 0);
    if (h->pid == 0) {
        if (log_fd >= 0) {
            CHECK(dup2(log_fd, 1) == 1 && dup2(log_fd, 2) == 2);
            close(log_fd);
        }
        close(to_child[1]);
        close(to_parent[0]);
        run(ops, to_child[0], to_parent[1]);
        _exit(2);
    }
    close(to_child[0]);
    close(to_parent[1]);
    h->cmd_fd = to_child[1];
    h->reply_fd = to_parent[0];
    io_full(h->reply_fd, info, info_len, 0);
}

/* Sends the host cmd and len bytes of arg: its answer (host_command). */
static inline uint8_t host_ask(const struct host_link *h, uint8_t cmd,
                               const void *arg, size_t len)
{
    uint8_t ok = 0;

    io_full(h->cmd_fd, &cmd, 1, 1);
    io_full(h->cmd_fd, (void *)arg, len, 1);
    io_full(h->reply_fd, &ok, 1, 0);
    return ok;
}

/* The host opens ('e') or ends ('x') the session of nonce. */
static inline void host_session(const struct host_link *h, uint8_t cmd,
                                uint64_t nonce)
{
    CHECK_EQ(host_ask(h, cmd, &nonce, sizeof(nonce)), 1);
}

/* ---- raw ucp peers: what the engine's dpu side never sends ---- */

/* One worker, its first endpoint, and the replies it took. */
struct raw {
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_ep_h ep;
    unsigned replies;                     /* replies taken */
    unsigned by_status[UCX_ST_NOMEM + 1]; /* of them, with each status */
    uint32_t last;                        /* the latest reply's status */
    int failed; /* of the worker's endpoints, how many the host closed */
};

static inline void raw_on_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    struct raw *r = arg;

    (void)ep;
    (void)status;
    r->failed++;
}

static inline ucs_status_t raw_on_reply(void *arg, const void *header,
                                        size_t header_len, void *data,
                                        size_t len,
                                        const ucp_am_recv_param_t *param)
{
    struct raw *r = arg;
    struct ucx_reply_hdr h;

    (void)data;
    (void)len;
    (void)param;
    CHECK_EQ(header_len, sizeof(h));
    memcpy(&h, header, sizeof(h));
    CHECK(h.status <= UCX_ST_NOMEM);
    r->replies++;
    r->by_status[h.status]++;
    r->last = h.status;
    return UCS_OK;
}

/* Counts the replies from here on. */
static inline void raw_count_anew(struct raw *r)
{
    r->replies = 0;
    memset(r->by_status, 0, sizeof(r->by_status));
}

/* A new endpoint of r's worker to the host's first address, as the
 * engine tries that first. */
static inline void raw_connect(struct raw *r, const struct host_addr *addr,
                               ucp_ep_h *ep)
{
    struct ucx_conn_blob h;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    ucp_ep_params_t eparams = {
        .field_mask = UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_FLAGS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .sockaddr = {.addr = (const struct sockaddr *)&sa,
                     .addrlen = sizeof(sa)},
        .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER, /* the host's: both alike */
        .err_handler = {.cb = raw_on_error, .arg = r},
    };

    CHECK(addr->blob_len >= sizeof(h) + 4);
    memcpy(&h, addr->blob, sizeof(h));
    CHECK_EQ(h.magic, UCX_CONN_MAGIC);
    sa.sin_port = h.port;
    memcpy(&sa.sin_addr, addr->blob + sizeof(h), 4);
    CHECK(ucp_ep_create(r->worker, &eparams, ep) == UCS_OK);
}

/* r, a worker of its own, and its first endpoint to the host. */
static inline void raw_open(struct raw *r, const struct host_addr *addr)
{
    ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                           .features = UCP_FEATURE_AM};
    ucp_worker_params_t wparams = {0};
    ucp_am_handler_param_t am = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                      UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = UCX_AM_REPLY,
        .cb = raw_on_reply,
        .arg = r,
    };
    ucp_config_t *config = NULL;

    /* Connected as the engine's dpu side is (ucx_config). */
    CHECK(ucp_config_read(NULL, NULL, &config) == UCS_OK);
    (void)ucp_config_modify(config, "CM_USE_ALL_DEVICES", "n");
    (void)ucp_config_modify(config, "SOCKADDR_TLS_PRIORITY", "tcp");
    (void)ucp_config_modify(config, "KEEPALIVE_INTERVAL", "500ms");
    CHECK(ucp_init(&params, config, &r->context) == UCS_OK);
    ucp_config_release(config);
    CHECK(ucp_worker_create(r->context, &wparams, &r->worker) == UCS_OK);
    CHECK(ucp_worker_set_am_recv_handler(r->worker, &am) == UCS_OK);
    raw_connect(r, addr, &r->ep);
}

/* Progresses worker until the request sp has completed (it has already
 * when sp is not a pointer), and releases it: its status. */
static inline ucs_status_t raw_wait(ucp_worker_h worker, ucs_status_ptr_t sp)
{
    time_t deadline = time(NULL) + RAW_WAIT_S;
    ucs_status_t st;

    if (!UCS_PTR_IS_PTR(sp)) {
        return UCS_PTR_STATUS(sp);
    }
    while ((st = ucp_request_check_status(sp)) == UCS_INPROGRESS) {
        ucp_worker_progress(worker);
        CHECK(time(NULL) < deadline);
    }
    ucp_request_free(sp);
    return st;
}

/* Progresses r until ep is connected (its flush completes), or has
 * failed: 1 when connected. */
static inline int raw_wire_up(struct raw *r, ucp_ep_h ep)
{
    ucp_request_param_t param = {0};

    return raw_wait(r->worker, ucp_ep_flush_nbx(ep, &param)) == UCS_OK;
}

/* A forced close: it needs no answer, so the host may be gone. */
static inline void raw_ep_close(struct raw *r, ucp_ep_h ep)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};

    (void)raw_wait(r->worker, ucp_ep_close_nbx(ep, &param));
}

static inline void raw_close(struct raw *r)
{
    raw_ep_close(r, r->ep);
    ucp_worker_destroy(r->worker);
    ucp_cleanup(r->context);
}

/* A request: hdr_len bytes of header (a struct ucx_req_hdr, or not), and
 * data, sent with flags. */
static inline void raw_send(struct raw *r, const void *hdr, size_t hdr_len,
                            const void *data, size_t len, uint32_t flags)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = flags};

    CHECK(raw_wait(r->worker, ucp_am_send_nbx(r->ep, UCX_AM_REQUEST, hdr,
                                              hdr_len, data, len, &param)) ==
          UCS_OK);
}

/* Progresses r until it has n replies. */
static inline void raw_await_replies(struct raw *r, unsigned n)
{
    time_t deadline = time(NULL) + RAW_WAIT_S;

    while (r->replies < n) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
}

/* Progresses r until the host has closed an endpoint of its. */
static inline void raw_await_closed(struct raw *r)
{
    time_t deadline = time(NULL) + RAW_WAIT_S;

    while (r->failed == 0) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
}

/* Sends h (and data) and waits for its reply: the reply's status. */
static inline uint32_t raw_call(struct raw *r, const struct ucx_req_hdr *h,
                                const void *data, size_t len)
{
    unsigned seen = r->replies;

    raw_send(r, h, sizeof(*h), data, len, UCP_AM_SEND_FLAG_REPLY);
    raw_await_replies(r, seen + 1);
    return r->last;
}

/* Binds r's connection to the session of nonce: the reply's status. */
static inline uint32_t raw_hello(struct raw *r, uint64_t nonce)
{
    struct ucx_req_hdr h = {.id = 7, .key = nonce, .op = UCX_OP_HELLO};

    return raw_call(r, &h, NULL, 0);
}

#endif
