/*
 * The ucx engine's host against a lying dpu side (docs/engines.md, "ucx"):
 * requests outside a registration, with a forged key, to a read-only
 * registration, after a deregistration, and malformed ones sent with raw
 * ucp calls (short header, unknown op, huge or zero length, a write whose
 * data does not match, a rendezvous, no reply endpoint, an atomic of a
 * bad size, misaligned or of an unknown op). The host must refuse each —
 * HMAF_EFAULT, HMAF_EACCES, HMAF_ECONNRESET for a key it does not know
 * (as a destroyed doca export), an error reply or nothing for the
 * malformed — change no byte, and keep serving; atomics on a
 * registration's last words are served. Raw peers that ask for reads and
 * never take the answers do not keep the host from serving another.
 * A connection is served only once bound to a live session by its first
 * request (UCX_OP_HELLO with the nonce of the session's dpu blob), one
 * connection a session; it is closed when its session ends, and when it
 * stays unbound.
 *
 * A forked child plays the host through the engine's ops, as
 * engine_conformance does; the parent is the dpu side.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#include <hmaf/atomic.h>

#include "check.h"
#include "engine/engine.h"
#include "engine/ucx/ucx_wire.h"
#include "proto/handshake.h"

#define PAGE     4096u
#define RW_LEN   (4 * PAGE)
#define WAIT_S   20
#define WATCHDOG 50
/* More than the host's bounce room (UCX_BOUNCE_MAX) in one batch. */
#define BIG_LEN (640ull << 20)
/* Raw peers that never take their answers, and the 4 MiB reads each asks
 * for: more than the host's bounce room between them. */
#define STALLERS    5
#define STALL_READS 100
/* Sessions the host may have open at once. */
#define SESSIONS 16

struct host_info {
    uint64_t rw, ro, gone; /* addresses: RW_LEN, PAGE, PAGE bytes */
    uint64_t big;          /* BIG_LEN bytes, read-only */
    uint32_t blob_len;
    uint8_t blob[HMAF_BLOB_MAX];
    struct ucx_blob rw_blob, ro_blob, gone_blob, big_blob;
};

static uint8_t pattern(uint64_t i, unsigned salt)
{
    return (uint8_t)((i * 2654435761u) >> 7 ^ salt);
}

static void fill(uint8_t *p, size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = pattern(i, salt);
    }
}

static int same_as(const uint8_t *p, size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != pattern(i, salt)) {
            return 0;
        }
    }
    return 1;
}

static void io_full(int fd, void *p, size_t len, int out)
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

/* ---- the host (child) ---- */

static struct hmaf_engine_mem *host_register(struct hmaf_engine_ctx *ctx,
                                             uint8_t *p, uint64_t len,
                                             unsigned access, unsigned salt,
                                             struct ucx_blob *blob)
{
    struct hmaf_engine_mem *mem = NULL;
    size_t n = 0;

    fill(p, len, salt);
    CHECK_OK(hmaf__engine_mem_create(ctx, (uint64_t)(uintptr_t)p, len, access,
                                     &mem));
    CHECK_OK(ctx->ops->mem_export(mem, blob, sizeof(*blob), &n));
    CHECK_EQ(n, sizeof(*blob));
    return mem;
}

/* The host's sessions, by the nonce of their dpu side's blob. */
static struct hmaf_engine_ep *sessions[SESSIONS];
static uint64_t session_nonce[SESSIONS];

/* 'e' nonce: a session opens, as the agent opens one for a dpu side whose
 * blob has that nonce; 'x' nonce: it ends; 'v': whether the read-only and
 * the deregistered pages still hold what they did. Each answered with a
 * byte, 1 for yes. */
static void host_command(struct hmaf_engine_ctx *ctx, int cmd_fd,
                         int reply_fd, const uint8_t *ro, const uint8_t *gone)
{
    struct ucx_dpu_blob b = {.magic = UCX_DPU_MAGIC};
    uint8_t cmd, ok = 0;
    int i;

    io_full(cmd_fd, &cmd, 1, 0);
    if (cmd == 'v') {
        ok = same_as(ro, PAGE, 2) && same_as(gone, PAGE, 3);
    } else {
        io_full(cmd_fd, &b.nonce, sizeof(b.nonce), 0);
        for (i = 0; i < SESSIONS && (cmd == 'e' ? sessions[i] != NULL
                                                : session_nonce[i] != b.nonce);
             i++) {
        }
        CHECK(i < SESSIONS);
        if (cmd == 'e') {
            CHECK_OK(hmaf__engine_ep_create(ctx, 0, &b, sizeof(b),
                                            &sessions[i]));
            session_nonce[i] = b.nonce;
        } else {
            hmaf__engine_ep_destroy(sessions[i]);
            sessions[i] = NULL;
            session_nonce[i] = 0;
        }
        ok = 1;
    }
    io_full(reply_fd, &ok, 1, 1);
}

/* Serve until the parent asks (host_command). */
static void host_serve(struct hmaf_engine_ctx *ctx, int cmd_fd, int reply_fd,
                       const uint8_t *ro, const uint8_t *gone)
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
            host_command(ctx, cmd_fd, reply_fd, ro, gone);
        }
    }
}

/* BIG_LEN bytes, each page holding its index in its first byte. */
static uint64_t map_big(struct hmaf_engine_ctx *ctx, struct ucx_blob *blob)
{
    struct hmaf_engine_mem *mem = NULL;
    uint8_t *big = mmap(NULL, BIG_LEN, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t n = 0;

    CHECK(big != MAP_FAILED);
    for (uint64_t i = 0; i < BIG_LEN; i += PAGE) {
        big[i] = (uint8_t)(i / PAGE);
    }
    CHECK_OK(hmaf__engine_mem_create(ctx, (uint64_t)(uintptr_t)big, BIG_LEN,
                                     HMAF_ACCESS_READ, &mem));
    CHECK_OK(ctx->ops->mem_export(mem, blob, sizeof(*blob), &n));
    return (uint64_t)(uintptr_t)big;
}

static void run_host(const struct hmaf_engine_ops *ops, int cmd_fd,
                     int reply_fd)
{
    struct hmaf_engine_ctx *ctx;
    struct hmaf_engine_mem *gone;
    struct ucx_dpu_blob junk = {.magic = UCX_DPU_MAGIC};
    struct host_info info;
    uint8_t *mem = aligned_alloc(PAGE, RW_LEN + 2 * PAGE);
    size_t n = 0;

    memset(&info, 0, sizeof(info));
    CHECK(mem != NULL);
    CHECK_OK(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx));
    /* A session's dpu blob is checked: its size, magic, a nonce. */
    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, NULL, 0, &sessions[0]),
              HMAF_EPROTO);
    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, &junk, sizeof(junk),
                                     &sessions[0]),
              HMAF_EPROTO);
    junk.nonce = 1;
    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, &junk, sizeof(junk) - 1,
                                     &sessions[0]),
              HMAF_EPROTO);
    junk.magic ^= 1;
    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, &junk, sizeof(junk),
                                     &sessions[0]),
              HMAF_EPROTO);
    (void)host_register(ctx, mem, RW_LEN, HMAF_ACCESS_READ_WRITE, 1,
                        &info.rw_blob);
    (void)host_register(ctx, mem + RW_LEN, PAGE, HMAF_ACCESS_READ, 2,
                        &info.ro_blob);
    gone = host_register(ctx, mem + RW_LEN + PAGE, PAGE, HMAF_ACCESS_READ_WRITE,
                         3, &info.gone_blob);
    hmaf__engine_mem_destroy(gone); /* the blob lives on, the key not */
    info.big = map_big(ctx, &info.big_blob);
    info.rw = (uint64_t)(uintptr_t)mem;
    info.ro = info.rw + RW_LEN;
    info.gone = info.ro + PAGE;
    CHECK_OK(ops->local_blob(ctx, info.blob, sizeof(info.blob), &n));
    info.blob_len = (uint32_t)n;
    io_full(reply_fd, &info, sizeof(info), 1);
    host_serve(ctx, cmd_fd, reply_fd, mem + RW_LEN, mem + RW_LEN + PAGE);
}

/* ---- the dpu side (parent) ---- */

struct dpu {
    const struct hmaf_engine_ops *ops;
    pid_t pid;
    int cmd_fd, reply_fd;
    struct host_info info;
    struct hmaf_engine_ctx *ctx;
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_rmem *rw, *ro, *gone, *forged, *big;
};

static void start_host(struct dpu *d)
{
    int to_child[2], to_parent[2];

    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    d->pid = fork();
    CHECK(d->pid >= 0);
    if (d->pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        run_host(d->ops, to_child[0], to_parent[1]);
        _exit(2);
    }
    close(to_child[0]);
    close(to_parent[1]);
    d->cmd_fd = to_child[1];
    d->reply_fd = to_parent[0];
    io_full(d->reply_fd, &d->info, sizeof(d->info), 0);
}

/* The host opens ('e') or ends ('x') the session of nonce. */
static void host_session(struct dpu *d, uint8_t cmd, uint64_t nonce)
{
    uint8_t ok = 0;

    io_full(d->cmd_fd, &cmd, 1, 1);
    io_full(d->cmd_fd, &nonce, sizeof(nonce), 1);
    io_full(d->reply_fd, &ok, 1, 0);
    CHECK_EQ(ok, 1);
}

static uint64_t random_nonce(void)
{
    static uint64_t next = 0x9e3779b97f4a7c15ull;

    next = next * 6364136223846793005ull + (uint64_t)getpid();
    return next | 1;
}

static struct hmaf_engine_rmem *import(struct dpu *d, const struct ucx_blob *b,
                                       unsigned access)
{
    struct hmaf_engine_rmem *r = NULL;

    CHECK_OK(hmaf__engine_rmem_create(d->ep, b->addr, b->len, access, b,
                                      sizeof(*b), &r));
    return r;
}

static void connect_host(struct dpu *d)
{
    struct ucx_blob forged = d->info.rw_blob;
    struct ucx_blob bad = d->info.rw_blob;
    struct hmaf_engine_rmem *r = NULL;
    struct ucx_dpu_blob mine;
    size_t n = 0;

    CHECK_OK(hmaf__engine_ctx_create(d->ops, HMAF_ROLE_DPU, &d->ctx));
    CHECK_OK(d->ops->local_blob(d->ctx, &mine, sizeof(mine), &n));
    CHECK_EQ(n, sizeof(mine));
    CHECK_EQ(mine.magic, UCX_DPU_MAGIC);
    CHECK(mine.nonce != 0);
    /* Before the host has its session, the connection is not taken. */
    CHECK_ERR(hmaf__engine_ep_create(d->ctx, 0, d->info.blob,
                                     d->info.blob_len, &d->ep),
              HMAF_ECONNRESET);
    host_session(d, 'e', mine.nonce);
    CHECK_OK(hmaf__engine_ep_create(d->ctx, 0, d->info.blob, d->info.blob_len,
                                    &d->ep));
    d->rw = import(d, &d->info.rw_blob, HMAF_ACCESS_READ_WRITE);
    d->ro = import(d, &d->info.ro_blob, HMAF_ACCESS_READ);
    d->gone = import(d, &d->info.gone_blob, HMAF_ACCESS_READ_WRITE);
    d->big = import(d, &d->info.big_blob, HMAF_ACCESS_READ);
    forged.key ^= 0x5a5a;
    d->forged = import(d, &forged, HMAF_ACCESS_READ_WRITE);
    /* rmem_import checks what the host sent too. */
    bad.magic ^= 1;
    CHECK_ERR(hmaf__engine_rmem_create(d->ep, bad.addr, bad.len,
                                       HMAF_ACCESS_READ, &bad, sizeof(bad), &r),
              HMAF_EPROTO);
    CHECK_ERR(hmaf__engine_rmem_create(d->ep, d->info.ro, PAGE,
                                       HMAF_ACCESS_READ_WRITE, &d->info.ro_blob,
                                       sizeof(d->info.ro_blob), &r),
              HMAF_EPROTO);
    CHECK(r == NULL);
}

static int move(struct dpu *d, enum hmaf_xfer_op op,
                struct hmaf_engine_rmem *rmem, void *local, uint64_t addr,
                size_t len)
{
    struct hmaf_xfer x = {rmem, local, addr, len};
    struct hmaf_xfer_batch b = {.op = op, .xfers = &x, .count = 1};

    return hmaf__engine_run(d->ep, &b);
}

/* The op's status; a dead key (HMAF_ECONNRESET) is the call's too. */
static int one_atomic(struct dpu *d, struct hmaf_engine_rmem *rmem,
                      uint64_t addr, uint8_t size)
{
    struct hmaf_engine_atomic a = {.rmem = rmem,
                                   .remote_addr = addr,
                                   .op = HMAF_ATOMIC_FADD,
                                   .size = size,
                                   .operand = 1,
                                   .status = -1};
    int ret = d->ops->atomic(d->ep, &a, 1);

    CHECK(ret == 0 || ret == a.status);
    return a.status;
}

/* Reads and writes of every kind of lie through the engine itself. */
static void lie_through_engine(struct dpu *d)
{
    uint8_t buf[RW_LEN];
    uint64_t rw = d->info.rw;

    memset(buf, 0x77, sizeof(buf));
    CHECK_ERR(move(d, HMAF_XFER_READ, d->rw, buf, rw + RW_LEN - 10, 64),
              HMAF_EFAULT);
    CHECK_ERR(move(d, HMAF_XFER_READ, d->rw, buf, rw - 64, 64), HMAF_EFAULT);
    CHECK_ERR(move(d, HMAF_XFER_READ, d->rw, buf, UINT64_MAX - 8, 64),
              HMAF_EFAULT);
    CHECK_ERR(move(d, HMAF_XFER_WRITE, d->rw, buf, rw + RW_LEN, 1),
              HMAF_EFAULT);
    CHECK_ERR(move(d, HMAF_XFER_WRITE, d->rw, buf, d->info.ro, PAGE),
              HMAF_EFAULT); /* the next registration, named by rw's key */
    CHECK_ERR(move(d, HMAF_XFER_WRITE, d->ro, buf, d->info.ro, 8), HMAF_EACCES);
    CHECK_ERR(move(d, HMAF_XFER_WRITE, d->gone, buf, d->info.gone, 8),
              HMAF_ECONNRESET);
    CHECK_ERR(move(d, HMAF_XFER_READ, d->gone, buf, d->info.gone, 8),
              HMAF_ECONNRESET);
    CHECK_ERR(move(d, HMAF_XFER_WRITE, d->forged, buf, rw, 8), HMAF_ECONNRESET);
    CHECK_ERR(move(d, HMAF_XFER_READ, d->forged, buf, rw, 8), HMAF_ECONNRESET);
    CHECK_ERR(one_atomic(d, d->ro, d->info.ro, 8), HMAF_EACCES);
    CHECK_ERR(one_atomic(d, d->gone, d->info.gone, 8), HMAF_ECONNRESET);
    CHECK_ERR(one_atomic(d, d->rw, rw + RW_LEN, 8), HMAF_EFAULT);
    CHECK_ERR(one_atomic(d, d->rw, rw + RW_LEN - 4, 8), HMAF_EINVAL);
    /* The ep goes on: a read-only range reads, and nothing moved. */
    CHECK_OK(move(d, HMAF_XFER_READ, d->ro, buf, d->info.ro, PAGE));
    CHECK(same_as(buf, PAGE, 2));
    CHECK_OK(move(d, HMAF_XFER_READ, d->rw, buf, rw, RW_LEN));
    CHECK(same_as(buf, RW_LEN, 1));
    /* The last words of a registration are inside it: each swapped with
     * what it holds, so nothing changes. */
    for (uint8_t size = 4; size <= 8; size += 4) {
        struct hmaf_engine_atomic a = {.rmem = d->rw,
                                       .remote_addr = rw + RW_LEN - size,
                                       .op = HMAF_ATOMIC_SWAP,
                                       .size = size,
                                       .status = -1};
        uint64_t word = 0;

        memcpy(&word, buf + RW_LEN - size, size);
        a.operand = word;
        CHECK_OK(d->ops->atomic(d->ep, &a, 1));
        CHECK_OK(a.status);
        CHECK_EQ(a.old, word);
    }
}

/* ---- raw ucp: what the engine never sends ---- */

struct raw {
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_ep_h ep;
    unsigned replies, proto; /* replies seen, of them UCX_ST_PROTO */
    uint32_t last;           /* the latest reply's status */
    int failed;              /* the endpoint failed: the host closed it */
};

static void raw_on_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    struct raw *r = arg;

    (void)ep;
    (void)status;
    r->failed = 1;
}

static ucs_status_t raw_on_reply(void *arg, const void *header,
                                 size_t header_len, void *data, size_t len,
                                 const ucp_am_recv_param_t *param)
{
    struct raw *r = arg;
    struct ucx_reply_hdr h;

    (void)data;
    (void)len;
    (void)param;
    CHECK_EQ(header_len, sizeof(h));
    memcpy(&h, header, sizeof(h));
    r->replies++;
    r->proto += h.status == UCX_ST_PROTO;
    r->last = h.status;
    return UCS_OK;
}

static void raw_open(struct raw *r, const struct host_info *info)
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

    /* The host's first address, as the engine tries it first. */
    CHECK(info->blob_len >= sizeof(h) + 4);
    memcpy(&h, info->blob, sizeof(h));
    CHECK_EQ(h.magic, UCX_CONN_MAGIC);
    sa.sin_port = h.port;
    memcpy(&sa.sin_addr, info->blob + sizeof(h), 4);
    /* Connected as the engine's dpu side is (ucx_config). */
    CHECK(ucp_config_read(NULL, NULL, &config) == UCS_OK);
    (void)ucp_config_modify(config, "CM_USE_ALL_DEVICES", "n");
    (void)ucp_config_modify(config, "SOCKADDR_TLS_PRIORITY", "tcp");
    (void)ucp_config_modify(config, "KEEPALIVE_INTERVAL", "500ms");
    CHECK(ucp_init(&params, config, &r->context) == UCS_OK);
    ucp_config_release(config);
    CHECK(ucp_worker_create(r->context, &wparams, &r->worker) == UCS_OK);
    CHECK(ucp_worker_set_am_recv_handler(r->worker, &am) == UCS_OK);
    CHECK(ucp_ep_create(r->worker, &eparams, &r->ep) == UCS_OK);
}

static void raw_send(struct raw *r, const void *hdr, size_t hdr_len,
                     const void *data, size_t len, uint32_t flags)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = flags};
    ucs_status_ptr_t sp =
        ucp_am_send_nbx(r->ep, UCX_AM_REQUEST, hdr, hdr_len, data, len, &param);
    time_t deadline = time(NULL) + WAIT_S;

    CHECK(!UCS_PTR_IS_ERR(sp));
    while (sp != NULL && ucp_request_check_status(sp) == UCS_INPROGRESS) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    if (sp != NULL) {
        CHECK(ucp_request_check_status(sp) == UCS_OK);
        ucp_request_free(sp);
    }
}

/* Sends h (and data) and waits for its reply: the reply's status. */
static uint32_t raw_call(struct raw *r, const struct ucx_req_hdr *h,
                         const void *data, size_t len)
{
    unsigned seen = r->replies;
    time_t deadline = time(NULL) + WAIT_S;

    raw_send(r, h, sizeof(*h), data, len, UCP_AM_SEND_FLAG_REPLY);
    while (r->replies == seen) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    return r->last;
}

static uint32_t raw_hello(struct raw *r, uint64_t nonce)
{
    struct ucx_req_hdr h = {.id = 7, .key = nonce, .op = UCX_OP_HELLO};

    return raw_call(r, &h, NULL, 0);
}

/* Progresses r until its connection is up: its flush completes. */
static void raw_wire_up(struct raw *r)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t sp = ucp_ep_flush_nbx(r->ep, &param);
    time_t deadline = time(NULL) + WAIT_S;

    CHECK(!UCS_PTR_IS_ERR(sp));
    while (sp != NULL && ucp_request_check_status(sp) == UCS_INPROGRESS) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    if (sp != NULL) {
        CHECK(ucp_request_check_status(sp) == UCS_OK);
        ucp_request_free(sp);
    }
}

/* Progresses r until the host has closed its connection. */
static void raw_await_closed(struct raw *r)
{
    time_t deadline = time(NULL) + WAIT_S;

    while (!r->failed) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
}

static void raw_close(struct raw *r)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t sp = ucp_ep_close_nbx(r->ep, &param);
    time_t deadline = time(NULL) + WAIT_S;

    while (UCS_PTR_IS_PTR(sp) &&
           ucp_request_check_status(sp) == UCS_INPROGRESS) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    if (UCS_PTR_IS_PTR(sp)) {
        ucp_request_free(sp);
    }
    ucp_worker_destroy(r->worker);
    ucp_cleanup(r->context);
}

/* Nothing is served on a connection before it is bound to a session; a
 * session binds one connection, once; its end closes it. */
static void bind_raw(struct dpu *d)
{
    struct raw a = {0}, b = {0};
    struct ucx_req_hdr h = {.id = 1,
                            .key = d->info.rw_blob.key,
                            .addr = d->info.rw,
                            .len = 8,
                            .op = UCX_OP_READ};
    uint64_t nonce = random_nonce();

    raw_open(&a, &d->info);
    raw_open(&b, &d->info);
    CHECK_EQ(raw_call(&a, &h, NULL, 0), UCX_ST_NOKEY); /* unbound */
    CHECK_EQ(raw_hello(&a, nonce), UCX_ST_NOKEY);      /* no such session */
    CHECK_EQ(raw_hello(&a, 0), UCX_ST_NOKEY);
    host_session(d, 'e', nonce);
    CHECK_EQ(raw_hello(&a, nonce), UCX_ST_OK);
    CHECK_EQ(raw_call(&a, &h, NULL, 0), UCX_ST_OK);
    CHECK_EQ(raw_hello(&a, nonce), UCX_ST_PROTO); /* bound already */
    CHECK_EQ(raw_hello(&b, nonce), UCX_ST_NOKEY); /* the session has one */
    CHECK_EQ(raw_call(&b, &h, NULL, 0), UCX_ST_NOKEY);
    h.op = UCX_OP_HELLO;
    h.key = nonce;
    CHECK_EQ(raw_call(&b, &h, "x", 1), UCX_ST_PROTO); /* a hello has no data */
    host_session(d, 'x', nonce);
    raw_await_closed(&a);
    CHECK(!b.failed);
    raw_close(&a);
    raw_close(&b);
}

/* Malformed requests, each answered UCX_ST_PROTO or dropped, then a good
 * one: answered, after the others (one endpoint, one lane, in order). */
static void lie_raw(struct dpu *d)
{
    static uint8_t junk[1 << 16];
    struct raw r = {0};
    struct ucx_req_hdr h = {.id = 1,
                            .key = d->info.rw_blob.key,
                            .addr = d->info.rw,
                            .len = 8,
                            .op = UCX_OP_READ};
    time_t deadline = time(NULL) + WAIT_S;
    const uint32_t reply = UCP_AM_SEND_FLAG_REPLY;
    uint64_t nonce = random_nonce();

    raw_open(&r, &d->info);
    host_session(d, 'e', nonce);
    CHECK_EQ(raw_hello(&r, nonce), UCX_ST_OK);
    r.replies = 0;
    memset(junk, 0x66, sizeof(junk));
    raw_send(&r, &h, 10, NULL, 0, reply);    /* short: dropped */
    raw_send(&r, &h, sizeof(h), NULL, 0, 0); /* no reply ep */
    h.op = 9;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* unknown op */
    h.op = UCX_OP_READ;
    h.len = 1ull << 40;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* huge read */
    h.op = UCX_OP_WRITE;
    h.len = 8;
    raw_send(&r, &h, sizeof(h), junk, 16, reply); /* data != len */
    h.len = sizeof(junk);
    raw_send(&r, &h, sizeof(h), junk, sizeof(junk),
             reply | UCP_AM_SEND_FLAG_RNDV); /* rendezvous */
    h.len = 0;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* empty write */
    h.op = UCX_OP_READ;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* empty read */
    h.op = UCX_OP_ATOMIC;
    h.atomic_op = HMAF_ATOMIC_FADD;
    h.len = 2;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* bad size */
    h.len = 8;
    h.addr = d->info.rw + RW_LEN - 4;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* misaligned */
    h.addr = d->info.rw;
    h.atomic_op = 200;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* unknown atomic op */
    h.op = UCX_OP_READ;
    h.len = 8;
    raw_send(&r, &h, sizeof(h), NULL, 0, reply); /* good */
    while (r.replies < 10) {
        ucp_worker_progress(r.worker);
        CHECK(time(NULL) < deadline);
    }
    CHECK_EQ(r.proto, 9u);
    raw_close(&r);
    host_session(d, 'x', nonce);
}

/* A peer that keeps to the protocol is never refused for want of the
 * host's bounce room: a batch reading more than there is completes. */
static void read_big(struct dpu *d)
{
    uint32_t count = (uint32_t)(BIG_LEN / (4u << 20));
    struct hmaf_xfer *x = calloc(count, sizeof(*x));
    uint8_t *local = malloc(BIG_LEN);
    struct hmaf_xfer_batch b = {
        .op = HMAF_XFER_READ, .xfers = x, .count = count};

    CHECK(x != NULL && local != NULL);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t off = (uint64_t)i * (4u << 20);
        x[i] = (struct hmaf_xfer){d->big, local + off, d->info.big + off,
                                  4u << 20};
    }
    CHECK_OK(hmaf__engine_run(d->ep, &b));
    for (uint64_t i = 0; i < BIG_LEN; i += PAGE) {
        CHECK_EQ(local[i], (uint8_t)(i / PAGE));
    }
    free(local);
    free(x);
}

/* Peers that ask for reads and never take the answers: each holds no
 * more of the host's bounce room than one keeping to the protocol may
 * (UCX_READ_WINDOW), so between them they do not fill it, and another's
 * reads are served. They stay open, unprogressed, until the end: their
 * endpoints have no error handling, so the host is told nothing of them. */
static struct raw stallers[STALLERS];

static void stall_peers(struct dpu *d)
{
    struct raw *r = stallers;
    struct ucx_req_hdr h = {.key = d->info.big_blob.key, .op = UCX_OP_READ};
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_AM_SEND_FLAG_REPLY |
                                          UCP_AM_SEND_FLAG_EAGER};
    uint8_t *local = malloc(4u << 20);

    CHECK(local != NULL);
    for (int p = 0; p < STALLERS; p++) {
        uint64_t nonce = random_nonce();
        raw_open(&r[p], &d->info);
        host_session(d, 'e', nonce);
        CHECK_EQ(raw_hello(&r[p], nonce), UCX_ST_OK);
        h.addr = d->info.big;
        h.len = 8;
        raw_send(&r[p], &h, sizeof(h), NULL, 0, UCP_AM_SEND_FLAG_REPLY);
        while (r[p].replies == 0) { /* wired up: later sends go out at once */
            ucp_worker_progress(r[p].worker);
        }
        h.len = 4u << 20;
        for (uint64_t i = 0; i < STALL_READS; i++) {
            h.id = i;
            h.addr = d->info.big + i * h.len;
            ucs_status_ptr_t sp = ucp_am_send_nbx(r[p].ep, UCX_AM_REQUEST, &h,
                                                  sizeof(h), NULL, 0, &param);
            CHECK(!UCS_PTR_IS_ERR(sp));
            if (sp != NULL) {
                ucp_request_free(sp); /* released when it ends */
            }
        }
    }
    for (uint64_t i = 0; i < STALL_READS; i++) {
        CHECK_OK(move(d, HMAF_XFER_READ, d->big, local, d->info.big, 4u << 20));
        CHECK_EQ(local[PAGE], 1);
    }
    free(local);
}

/* Once the host is gone: a forced close needs no answer. */
static void stall_peers_close(void)
{
    for (int p = 0; p < STALLERS; p++) {
        raw_close(&stallers[p]);
    }
}

static void check_host(struct dpu *d)
{
    uint8_t cmd = 'v', ok = 0, buf[RW_LEN];
    int st;

    CHECK_OK(move(d, HMAF_XFER_READ, d->rw, buf, d->info.rw, RW_LEN));
    CHECK(same_as(buf, RW_LEN, 1)); /* the rendezvous wrote nothing */
    io_full(d->cmd_fd, &cmd, 1, 1);
    io_full(d->reply_fd, &ok, 1, 0);
    CHECK_EQ(ok, 1);
    CHECK_EQ(waitpid(d->pid, &st, WNOHANG), 0); /* alive */
}

static void on_watchdog(int sig)
{
    static const char msg[] = "ucx_hostile: timed out\n";

    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        _exit(1);
    }
    _exit(1);
}

int main(void)
{
    struct dpu d = {.pid = -1};
    struct raw idle = {0};
    int st;

    d.ops = hmaf__engine_find("ucx");
    if (d.ops == NULL) {
        SKIP("engine ucx is not usable here");
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_watchdog);
    alarm(WATCHDOG);
    start_host(&d);
    raw_open(&idle, &d.info); /* never says which session it is for */
    raw_wire_up(&idle);
    connect_host(&d);
    lie_through_engine(&d);
    bind_raw(&d);
    lie_raw(&d);
    read_big(&d);
    stall_peers(&d);
    check_host(&d);
    raw_await_closed(&idle); /* after UCX_BIND_WAIT_NS */
    raw_close(&idle);
    CHECK(kill(d.pid, SIGKILL) == 0);
    CHECK(waitpid(d.pid, &st, 0) == d.pid);
    stall_peers_close();
    hmaf__engine_rmem_destroy(d.big);
    hmaf__engine_rmem_destroy(d.forged);
    hmaf__engine_rmem_destroy(d.gone);
    hmaf__engine_rmem_destroy(d.ro);
    hmaf__engine_rmem_destroy(d.rw);
    hmaf__engine_ep_destroy(d.ep);
    hmaf__engine_ctx_destroy(d.ctx);
    printf("ucx_hostile: ok\n");
    return 0;
}
