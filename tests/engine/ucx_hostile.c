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
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hmaf/atomic.h>

#include "ucx_raw.h"

#define PAGE     4096u
#define RW_LEN   (4 * PAGE)
#define WATCHDOG 50
/* More than the host's bounce room (UCX_BOUNCE_MAX) in one batch. */
#define BIG_LEN (640ull << 20)
/* Raw peers that never take their answers, and the 4 MiB reads each asks
 * for: more than the host's bounce room between them. */
#define STALLERS    5
#define STALL_READS 100

struct host_info {
    uint64_t rw, ro, gone; /* addresses: RW_LEN, PAGE, PAGE bytes */
    uint64_t big;          /* BIG_LEN bytes, read-only */
    struct host_addr addr;
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

/* A session's dpu blob is checked: its size, magic, a nonce. */
static void host_refuse_blobs(struct hmaf_engine_ctx *ctx)
{
    struct ucx_dpu_blob junk = {.magic = UCX_DPU_MAGIC};
    struct hmaf_engine_ep *ep = NULL;

    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, NULL, 0, &ep), HMAF_EPROTO);
    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, &junk, sizeof(junk), &ep),
              HMAF_EPROTO);
    junk.nonce = 1;
    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, &junk, sizeof(junk) - 1, &ep),
              HMAF_EPROTO);
    junk.magic ^= 1;
    CHECK_ERR(hmaf__engine_ep_create(ctx, 0, &junk, sizeof(junk), &ep),
              HMAF_EPROTO);
}

/* 'v': whether the read-only and the deregistered pages (after mem's
 * RW_LEN bytes) still hold what they did. */
static uint8_t host_verify(uint8_t cmd, void *mem)
{
    const uint8_t *ro = (const uint8_t *)mem + RW_LEN;

    CHECK_EQ(cmd, 'v');
    return same_as(ro, PAGE, 2) && same_as(ro + PAGE, PAGE, 3);
}

static void run_host(const struct hmaf_engine_ops *ops, int cmd_fd,
                     int reply_fd)
{
    struct hmaf_engine_ctx *ctx;
    struct hmaf_engine_mem *gone;
    struct host_info info;
    uint8_t *mem = aligned_alloc(PAGE, RW_LEN + 2 * PAGE);

    memset(&info, 0, sizeof(info));
    CHECK(mem != NULL);
    CHECK_OK(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx));
    host_refuse_blobs(ctx);
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
    host_addr_get(ctx, &info.addr);
    io_full(reply_fd, &info, sizeof(info), 1);
    host_serve(ctx, cmd_fd, reply_fd, host_verify, mem);
}

/* ---- the dpu side (parent) ---- */

struct dpu {
    const struct hmaf_engine_ops *ops;
    struct host_link host;
    struct host_info info;
    struct hmaf_engine_ctx *ctx;
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_rmem *rw, *ro, *gone, *forged, *big;
};

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
    CHECK_ERR(hmaf__engine_ep_create(d->ctx, 0, d->info.addr.blob,
                                     d->info.addr.blob_len, &d->ep),
              HMAF_ECONNRESET);
    host_session(&d->host, 'e', mine.nonce);
    CHECK_OK(hmaf__engine_ep_create(d->ctx, 0, d->info.addr.blob,
                                    d->info.addr.blob_len, &d->ep));
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

    raw_open(&a, &d->info.addr);
    raw_open(&b, &d->info.addr);
    CHECK_EQ(raw_call(&a, &h, NULL, 0), UCX_ST_NOKEY); /* unbound */
    CHECK_EQ(raw_hello(&a, nonce), UCX_ST_NOKEY);      /* no such session */
    CHECK_EQ(raw_hello(&a, 0), UCX_ST_NOKEY);
    host_session(&d->host, 'e', nonce);
    CHECK_EQ(raw_hello(&a, nonce), UCX_ST_OK);
    CHECK_EQ(raw_call(&a, &h, NULL, 0), UCX_ST_OK);
    CHECK_EQ(raw_hello(&a, nonce), UCX_ST_PROTO); /* bound already */
    CHECK_EQ(raw_hello(&b, nonce), UCX_ST_NOKEY); /* the session has one */
    CHECK_EQ(raw_call(&b, &h, NULL, 0), UCX_ST_NOKEY);
    h.op = UCX_OP_HELLO;
    h.key = nonce;
    CHECK_EQ(raw_call(&b, &h, "x", 1), UCX_ST_PROTO); /* a hello has no data */
    host_session(&d->host, 'x', nonce);
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
    const uint32_t reply = UCP_AM_SEND_FLAG_REPLY;
    uint64_t nonce = random_nonce();

    raw_open(&r, &d->info.addr);
    host_session(&d->host, 'e', nonce);
    CHECK_EQ(raw_hello(&r, nonce), UCX_ST_OK);
    raw_count_anew(&r);
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
    raw_await_replies(&r, 10);
    CHECK_EQ(r.by_status[UCX_ST_PROTO], 9u);
    raw_close(&r);
    host_session(&d->host, 'x', nonce);
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
        raw_open(&r[p], &d->info.addr);
        host_session(&d->host, 'e', nonce);
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
    uint8_t buf[RW_LEN];
    int st;

    CHECK_OK(move(d, HMAF_XFER_READ, d->rw, buf, d->info.rw, RW_LEN));
    CHECK(same_as(buf, RW_LEN, 1)); /* the rendezvous wrote nothing */
    CHECK_EQ(host_ask(&d->host, 'v', NULL, 0), 1);
    CHECK_EQ(waitpid(d->host.pid, &st, WNOHANG), 0); /* alive */
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
    struct dpu d = {.host.pid = -1};
    struct raw idle = {0};
    int st;

    d.ops = hmaf__engine_find("ucx");
    if (d.ops == NULL) {
        SKIP("engine ucx is not usable here");
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_watchdog);
    alarm(WATCHDOG);
    start_host(&d.host, d.ops, run_host, -1, &d.info, sizeof(d.info));
    raw_open(&idle, &d.info.addr); /* never says which session it is for */
    CHECK(raw_wire_up(&idle, idle.ep));
    connect_host(&d);
    lie_through_engine(&d);
    bind_raw(&d);
    lie_raw(&d);
    read_big(&d);
    stall_peers(&d);
    check_host(&d);
    raw_await_closed(&idle); /* after UCX_BIND_WAIT_NS */
    raw_close(&idle);
    CHECK(kill(d.host.pid, SIGKILL) == 0);
    CHECK(waitpid(d.host.pid, &st, 0) == d.host.pid);
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
