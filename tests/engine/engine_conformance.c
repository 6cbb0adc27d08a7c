/*
 * The engine contract (src/engine/engine.h), tested through the ops table
 * only, once per built engine: `engine_conformance <engine-name>`.
 *
 * A forked child plays the host: it opens a host ctx, opens an ep from our
 * bootstrap blob (granting us access, as the agent does), registers and
 * exports a buffer and an unmapped page, then serves verification
 * commands. The parent plays the dpu side: it imports both regions and
 * moves bytes with post() and progress(). It keeps a model of what the
 * host buffer must hold and checks every transfer against it.
 *
 * Faults. An engine that registers what it is given (cma) meets the
 * unmapped page at transfer time: HMAF_EFAULT. An engine that pins at
 * registration (doca) must refuse the page with HMAF_EFAULT instead, and
 * a range with a page it cannot pin (no access) in the middle too; its
 * transfers can only fail once the host's registration is gone, so its
 * fault batches run against a region the host deregisters after we
 * imported it: HMAF_ECONNRESET.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/atomic.h>

#include "check.h"
#include "netns.h"
#include "engine/engine.h"
#include "proto/handshake.h"

#define BUF_LEN            (8u << 20)
#define DEAD_LEN           (64u << 10) /* deregistered under our import */
#define CANARY             64
#define SLOT               256 /* local bytes per segment in segment batches */
#define MAX_SEGS_TESTED    16384 /* keeps every segment 511 bytes apart */
#define PIPE_TIMEOUT_MS    30000
#define PROGRESS_TIMEOUT_S 30
#define WATCHDOG_S         50 /* under ctest's 60: say where we hung */

/* Child -> parent, once, after setup. */
struct host_info {
    uint64_t addr, len;  /* the registered buffer */
    uint64_t hole;       /* an unmapped page */
    int32_t hole_status; /* its mem_register() result */
    int32_t gap_status;  /* that of three pages, the middle one PROT_NONE */
    uint64_t dead;       /* pinning engines: DEAD_LEN bytes, 'd' drops them */
    uint32_t blob_len, export_len, hole_export_len, dead_export_len;
    uint8_t blob[HMAF_BLOB_MAX];
    uint8_t export_blob[HMAF_BLOB_MAX];
    uint8_t hole_export[HMAF_BLOB_MAX];
    uint8_t dead_export[HMAF_BLOB_MAX];
};

/* Parent -> child, replies 1 or 0: 'v' = does [off, off+len) hash to
 * hash? 'd' = deregister the dead region. */
struct host_cmd {
    uint64_t off, len, hash;
    uint8_t op;
};

struct host {
    const struct hmaf_engine_ops *ops;
    struct hmaf_engine_ctx *ctx;
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_mem *buf_mem, *hole_mem, *dead_mem;
    uint8_t *buf;
};

struct conf {
    const char *name;
    const struct hmaf_engine_ops *ops;
    struct hmaf_engine_limits lim;
    pid_t pid;
    int cmd_fd, reply_fd;
    struct hmaf_engine_ctx *ctx;
    struct hmaf_engine_ep *ep;
    struct hmaf_engine_rmem *buf, *hole, *dead;
    struct host_info info;
    uint8_t *model; /* what the host buffer must hold */
    int manual;     /* drive the next batch with post + progress by hand */
    unsigned moves; /* small transfers so far: every other goes by
                       move_one */
};

static uint8_t pattern(uint64_t i, unsigned salt)
{
    return (uint8_t)((i * 2654435761u) >> 11 ^ (i >> 9) ^ salt);
}

static void fill(uint8_t *p, size_t len, uint64_t first, unsigned salt)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = pattern(first + i, salt);
    }
}

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

/* ---- pipes ---- */

static int write_full(int fd, const void *p, size_t len)
{
    const uint8_t *at = p;

    while (len > 0) {
        ssize_t n = write(fd, at, len);
        if (n <= 0) {
            return -1;
        }
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

/* -1 on EOF, error or timeout. */
static int read_full(int fd, void *p, size_t len)
{
    uint8_t *at = p;

    while (len > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, PIPE_TIMEOUT_MS) != 1) {
            return -1;
        }
        n = read(fd, at, len);
        if (n <= 0) {
            return -1;
        }
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- the host (child) ---- */

static struct hmaf_engine_mem *host_register(struct host *h, void *addr,
                                             uint64_t len, int *status,
                                             uint8_t *blob, uint32_t *blob_len)
{
    struct hmaf_engine_mem *mem = NULL;
    size_t n = 0;

    *status = hmaf__engine_mem_create(h->ctx, (uint64_t)(uintptr_t)addr, len,
                                      HMAF_ACCESS_READ_WRITE, &mem);
    if (*status < 0) {
        CHECK(mem == NULL);
        return NULL;
    }
    CHECK(mem->ctx == h->ctx && mem->addr == (uint64_t)(uintptr_t)addr &&
          mem->len == len);
    CHECK_OK(h->ops->mem_export(mem, blob, HMAF_BLOB_MAX, &n));
    CHECK(n <= HMAF_BLOB_MAX);
    *blob_len = (uint32_t)n;
    return mem;
}

/* An address whose page is unmapped, between two PROT_NONE guard pages
 * so that no later mapping of ours lands there. */
static uint64_t unmapped_page(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *p =
        mmap(NULL, 3 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    CHECK(p != MAP_FAILED);
    CHECK(munmap(p + page, page) == 0);
    return (uint64_t)(uintptr_t)(p + page);
}

/* mem_register() of three mapped pages whose middle one has no access:
 * the kernel knows the range, but a device cannot pin it. */
static int32_t gap_status(struct host *h)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t blob[HMAF_BLOB_MAX];
    uint32_t blob_len;
    struct hmaf_engine_mem *mem;
    int status;

    CHECK(p != MAP_FAILED);
    CHECK(mprotect(p + page, page, PROT_NONE) == 0);
    mem = host_register(h, p, 3 * page, &status, blob, &blob_len);
    hmaf__engine_mem_destroy(mem);
    CHECK(munmap(p, 3 * page) == 0);
    return status;
}

/* Pinning engines only: a region whose registration 'd' drops. */
static void dead_setup(struct host *h, struct host_info *info)
{
    uint8_t *dead = aligned_alloc(4096, DEAD_LEN);
    int status;

    CHECK(dead != NULL);
    fill(dead, DEAD_LEN, 0, 7);
    info->dead = (uint64_t)(uintptr_t)dead;
    h->dead_mem = host_register(h, dead, DEAD_LEN, &status, info->dead_export,
                                &info->dead_export_len);
    CHECK_OK(status);
}

static void host_setup(struct host *h, int cmd_fd, struct host_info *info)
{
    uint8_t peer[HMAF_BLOB_MAX];
    uint32_t peer_len;
    size_t n = 0;
    int status;

    CHECK_OK(hmaf__engine_ctx_create(h->ops, HMAF_ROLE_HOST, &h->ctx));
    if (read_full(cmd_fd, &peer_len, sizeof(peer_len)) < 0 ||
        peer_len > sizeof(peer) || read_full(cmd_fd, peer, peer_len) < 0) {
        _exit(2);
    }
    CHECK_OK(hmaf__engine_ep_create(h->ctx, 0, peer, peer_len, &h->ep));
    h->buf = aligned_alloc(4096, BUF_LEN);
    CHECK(h->buf != NULL);
    fill(h->buf, BUF_LEN, 0, 1);
    h->buf_mem = host_register(h, h->buf, BUF_LEN, &status, info->export_blob,
                               &info->export_len);
    CHECK_OK(status);
    info->addr = (uint64_t)(uintptr_t)h->buf;
    info->len = BUF_LEN;
    info->hole = unmapped_page();
    h->hole_mem = host_register(h, (void *)(uintptr_t)info->hole, 4096, &status,
                                info->hole_export, &info->hole_export_len);
    info->hole_status = status;
    info->gap_status = gap_status(h);
    if (info->hole_status < 0) {
        dead_setup(h, info);
    }
    CHECK_OK(h->ops->local_blob(h->ctx, info->blob, HMAF_BLOB_MAX, &n));
    info->blob_len = (uint32_t)n;
}

/* 'd': the host takes its dead region back, as a revoke would. */
static uint8_t host_drop_dead(struct host *h)
{
    if (h->dead_mem == NULL) {
        return 0;
    }
    hmaf__engine_mem_destroy(h->dead_mem);
    h->dead_mem = NULL;
    return 1;
}

static uint8_t host_answer(struct host *h, const struct host_cmd *cmd)
{
    switch (cmd->op) {
    case 'v':
        return cmd->off <= BUF_LEN && cmd->len <= BUF_LEN - cmd->off &&
               fnv1a(h->buf + cmd->off, cmd->len) == cmd->hash;
    case 'd':
        return host_drop_dead(h);
    default:
        return 0;
    }
}

/* Wait for the parent's next command; 0 when one is there. Meanwhile the
 * engine gets its host-side share (ucx without RDMA: the parent's
 * transfers are served here), sleeping on its wait fd, as the agent's
 * loop does. */
static int host_wait_cmd(struct host *h, int cmd_fd)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = cmd_fd, .events = POLLIN},
                                {.fd = -1, .events = POLLIN}};
        int busy = h->ops->host_progress(h->ctx) > 0;
        int fd = -1, n;

        if (!busy && h->ops->wait_fd(h->ctx, &fd) == HMAF_EBUSY) {
            busy = 1;
        }
        pfd[1].fd = busy ? -1 : fd;
        n = poll(pfd, 2, busy ? 0 : PIPE_TIMEOUT_MS);
        if (n < 0 && errno != EINTR) {
            return -1;
        }
        if (pfd[0].revents != 0) {
            return 0;
        }
        if (n == 0 && !busy) {
            return -1;
        }
    }
}

static void host_serve(struct host *h, int cmd_fd, int reply_fd)
{
    struct host_cmd cmd;

    while (host_wait_cmd(h, cmd_fd) == 0 &&
           read_full(cmd_fd, &cmd, sizeof(cmd)) == 0) {
        uint8_t ok = host_answer(h, &cmd);

        if (write_full(reply_fd, &ok, 1) < 0) {
            break;
        }
    }
    _exit(2); /* the parent went away: it kills us when it is done */
}

static void run_host(const struct hmaf_engine_ops *ops, int cmd_fd,
                     int reply_fd)
{
    struct host h = {.ops = ops};
    struct host_info info;

    memset(&info, 0, sizeof(info));
    host_setup(&h, cmd_fd, &info);
    if (write_full(reply_fd, &info, sizeof(info)) < 0) {
        _exit(2);
    }
    host_serve(&h, cmd_fd, reply_fd);
}

/* ---- the dpu side (parent) ---- */

static void start_host(struct conf *c)
{
    int to_child[2], to_parent[2];

    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    c->pid = fork();
    CHECK(c->pid >= 0);
    if (c->pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        netns_enter_host();
        run_host(c->ops, to_child[0], to_parent[1]);
        _exit(2);
    }
    close(to_child[0]);
    close(to_parent[1]);
    c->cmd_fd = to_child[1];
    c->reply_fd = to_parent[0];
}

/* An import the registry allocates (as the core's mailbox is). */
static struct hmaf_engine_rmem *import(struct conf *c, uint64_t addr,
                                       uint64_t len, const uint8_t *blob,
                                       uint32_t blob_len)
{
    struct hmaf_engine_rmem *rmem = NULL;

    CHECK_OK(hmaf__engine_rmem_create(c->ep, addr, len, HMAF_ACCESS_READ_WRITE,
                                      blob, blob_len, &rmem));
    CHECK(rmem->ep == c->ep && rmem->addr == addr && rmem->len == len);
    return rmem;
}

/* An import in storage of ours (as the core's regions are), which the
 * registry must not expect zeroed. */
static struct hmaf_engine_rmem *import_in_place(struct conf *c, uint64_t addr,
                                                uint64_t len,
                                                const uint8_t *blob,
                                                uint32_t blob_len)
{
    size_t size = hmaf__engine_rmem_size(c->ops);
    size_t align = HMAF_ENGINE_RMEM_ALIGN;
    void *storage = aligned_alloc(align, (size + align - 1) / align * align);
    struct hmaf_engine_rmem *rmem = NULL;

    CHECK(storage != NULL && size >= sizeof(*rmem));
    memset(storage, 0xa5, size);
    CHECK_OK(hmaf__engine_rmem_import_at(storage, c->ep, addr, len,
                                         HMAF_ACCESS_READ_WRITE, blob,
                                         blob_len, &rmem));
    CHECK(rmem == storage && rmem->ep == c->ep && rmem->addr == addr);
    return rmem;
}

static void connect_host(struct conf *c)
{
    uint8_t blob[HMAF_BLOB_MAX];
    size_t n = 0;
    uint32_t len;

    CHECK_OK(hmaf__engine_ctx_create(c->ops, HMAF_ROLE_DPU, &c->ctx));
    CHECK(c->ctx->ops == c->ops && c->ctx->role == HMAF_ROLE_DPU);
    CHECK_OK(c->ops->local_blob(c->ctx, blob, sizeof(blob), &n));
    CHECK(n <= sizeof(blob));
    len = (uint32_t)n;
    CHECK(write_full(c->cmd_fd, &len, sizeof(len)) == 0);
    CHECK(write_full(c->cmd_fd, blob, len) == 0);
    CHECK(read_full(c->reply_fd, &c->info, sizeof(c->info)) == 0);
    CHECK(c->info.blob_len <= HMAF_BLOB_MAX);
    CHECK_OK(hmaf__engine_ep_create(c->ctx, 0, c->info.blob, c->info.blob_len,
                                    &c->ep));
    CHECK(c->ep->ctx == c->ctx);
    c->buf = import_in_place(c, c->info.addr, c->info.len,
                             c->info.export_blob, c->info.export_len);
    if (c->info.hole_status == 0) {
        c->hole = import(c, c->info.hole, 4096, c->info.hole_export,
                         c->info.hole_export_len);
    } else {
        c->dead = import(c, c->info.dead, DEAD_LEN, c->info.dead_export,
                         c->info.dead_export_len);
    }
    c->model = malloc(BUF_LEN);
    CHECK(c->model != NULL);
    fill(c->model, BUF_LEN, 0, 1);
}


static void stop_host(struct conf *c)
{
    int st;

    if (c->pid > 0) {
        CHECK(kill(c->pid, SIGKILL) == 0);
        CHECK(waitpid(c->pid, &st, 0) == c->pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        c->pid = -1;
    }
}

static void disconnect(struct conf *c)
{
    stop_host(c);
    hmaf__engine_rmem_destroy(c->dead);
    hmaf__engine_rmem_destroy(c->hole);
    hmaf__engine_rmem_release(c->buf); /* in storage of ours */
    free(c->buf);
    hmaf__engine_ep_destroy(c->ep);
    hmaf__engine_ctx_destroy(c->ctx);
    free(c->model);
    close(c->cmd_fd);
    close(c->reply_fd);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run a batch, alternating hmaf__engine_run and post + progress by hand. */
static int submit(struct conf *c, struct hmaf_xfer_batch *b)
{
    double deadline = now() + PROGRESS_TIMEOUT_S;
    int ret;

    CHECK(b->count >= 1 && b->count <= c->lim.max_segments);
    c->manual = !c->manual;
    if (!c->manual) {
        ret = hmaf__engine_run(c->ep, b);
        CHECK_EQ(b->completed, b->count);
        return ret;
    }
    b->completed = 0;
    b->status = 0;
    ret = c->ops->post(c->ep, b);
    if (ret < 0) {
        return ret;
    }
    while (b->completed < b->count) {
        CHECK(c->ops->progress(c->ep) >= 0);
        CHECK(now() < deadline);
    }
    CHECK_EQ(b->completed, b->count);
    return b->status;
}

/* One small transfer through move_one, the data path's way for small
 * reads and writes: it must end as a batch of it would. */
static int move_one(struct conf *c, enum hmaf_xfer_op op,
                    struct hmaf_engine_rmem *rmem, uint8_t *local,
                    uint64_t remote, size_t len)
{
    struct hmaf_xfer x = {rmem, local, remote, len};

    CHECK(len <= HMAF_MOVE_ONE_MAX && len <= c->lim.max_transfer);
    return c->ops->move_one(c->ep, op, &x);
}

/* Move len bytes, split at max_transfer, in posts of at most max_segments
 * descriptors (every other small transfer by move_one). Returns the first
 * failing batch's status. */
static int transfer(struct conf *c, enum hmaf_xfer_op op,
                    struct hmaf_engine_rmem *rmem, uint8_t *local,
                    uint64_t remote, size_t len)
{
    struct hmaf_xfer x[8];
    uint32_t per_post = c->lim.max_segments < 8 ? c->lim.max_segments : 8;

    if (len <= HMAF_MOVE_ONE_MAX && len <= c->lim.max_transfer &&
        c->moves++ % 2 == 1) {
        return move_one(c, op, rmem, local, remote, len);
    }

    while (len > 0) {
        struct hmaf_xfer_batch b = {.op = op, .xfers = x, .count = 0};
        int ret;

        while (len > 0 && b.count < per_post) {
            size_t n = len < c->lim.max_transfer ? len : c->lim.max_transfer;
            x[b.count++] = (struct hmaf_xfer){rmem, local, remote, n};
            local += n;
            remote += n;
            len -= n;
        }
        ret = submit(c, &b);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Send cmd to the host; its one-byte reply. */
static uint8_t host_ask(struct conf *c, const struct host_cmd *cmd)
{
    uint8_t ok = 0;

    CHECK(write_full(c->cmd_fd, cmd, sizeof(*cmd)) == 0);
    CHECK(read_full(c->reply_fd, &ok, 1) == 0);
    return ok;
}

/* Ask the host whether its [off, off+len) matches our model. */
static void host_verify(struct conf *c, uint64_t off, uint64_t len)
{
    struct host_cmd cmd;

    memset(&cmd, 0, sizeof(cmd)); /* no uninitialised padding on the pipe */
    cmd.off = off;
    cmd.len = len;
    cmd.hash = fnv1a(c->model + off, len);
    cmd.op = 'v';
    CHECK_EQ(host_ask(c, &cmd), 1);
}

static void host_drop_dead_region(struct conf *c)
{
    struct host_cmd cmd;

    memset(&cmd, 0, sizeof(cmd));
    cmd.op = 'd';
    CHECK_EQ(host_ask(c, &cmd), 1);
}

static void check_ops_table(const struct hmaf_engine_ops *ops, const char *name)
{
    CHECK(strcmp(ops->name, name) == 0);
    CHECK_EQ(ops->abi_version, HMAF_ENGINE_ABI_VERSION);
    CHECK(ops->ctx_size >= sizeof(struct hmaf_engine_ctx));
    CHECK(ops->ep_size >= sizeof(struct hmaf_engine_ep));
    CHECK(ops->mem_size >= sizeof(struct hmaf_engine_mem));
    CHECK(ops->rmem_size >= sizeof(struct hmaf_engine_rmem));
    /* The registry fills every optional op: callers never test for NULL. */
    CHECK(ops->probe && ops->ctx_open && ops->ctx_close && ops->limits);
    CHECK(ops->local_blob && ops->ep_open && ops->ep_close);
    CHECK(ops->mem_register && ops->mem_export && ops->mem_deregister);
    CHECK(ops->rmem_import && ops->rmem_release);
    CHECK(ops->post && ops->progress && ops->move_one && ops->atomic);
    CHECK(ops->host_progress && ops->wait_fd);
    {
        char why[HMAF_ENGINE_WHY_MAX] = "untouched";

        /* usable (the registry found it so): 0, and no reason needed */
        CHECK_OK(ops->probe(why, sizeof(why)));
        CHECK(memchr(why, '\0', sizeof(why)) != NULL);
    }
}

static void check_limits(struct conf *c)
{
    struct hmaf_engine_limits *lim = &c->lim;

    memset(lim, 0, sizeof(*lim));
    c->ops->limits(c->ctx, lim);
    CHECK(lim->max_transfer >= 1);
    CHECK(lim->max_inflight >= 1);
    CHECK(lim->max_segments >= 1);
    CHECK(lim->max_blob >= 1);
    CHECK(c->info.blob_len <= lim->max_blob);
    CHECK(c->info.export_len <= lim->max_blob);
}

static void first_read_or_skip(struct conf *c)
{
    uint8_t b = 0;
    int ret = transfer(c, HMAF_XFER_READ, c->buf, &b, c->info.addr, 1);

    if (ret == HMAF_EPERM) {
        disconnect(c);
        SKIP("engine %s: not permitted to access the host process", c->name);
    }
    CHECK_OK(ret);
    CHECK_EQ(b, c->model[0]);
}

static void check_read(struct conf *c, uint64_t off, size_t len)
{
    uint8_t *buf = malloc(len + 2 * CANARY);

    CHECK(buf != NULL);
    memset(buf, 0xee, len + 2 * CANARY);
    CHECK_OK(transfer(c, HMAF_XFER_READ, c->buf, buf + CANARY,
                      c->info.addr + off, len));
    CHECK(memcmp(buf + CANARY, c->model + off, len) == 0);
    for (size_t i = 0; i < CANARY; i++) {
        CHECK_EQ(buf[i], 0xee);
        CHECK_EQ(buf[CANARY + len + i], 0xee);
    }
    free(buf);
}

static void test_reads(struct conf *c)
{
    check_read(c, 0, 1);
    check_read(c, BUF_LEN - 1, 1);
    check_read(c, 64, 64);
    check_read(c, 100, 64);
    check_read(c, 4000, HMAF_MOVE_ONE_MAX);
    check_read(c, 4001, HMAF_MOVE_ONE_MAX);
    check_read(c, 4095, 4097);
    check_read(c, (1u << 20) + 1, 1u << 20);
    check_read(c, 0, BUF_LEN);
}

/* Write salt's pattern, then have the host check it and the margins. */
static void check_write(struct conf *c, uint64_t off, size_t len, unsigned salt)
{
    uint8_t *src = malloc(len);
    uint64_t lo = off < CANARY ? 0 : off - CANARY;
    uint64_t hi = off + len + CANARY > BUF_LEN ? BUF_LEN : off + len + CANARY;

    CHECK(src != NULL);
    fill(src, len, off, salt);
    CHECK_OK(
        transfer(c, HMAF_XFER_WRITE, c->buf, src, c->info.addr + off, len));
    fill(c->model + off, len, off, salt);
    CHECK(memcmp(src, c->model + off, len) == 0); /* the source is intact */
    free(src);
    host_verify(c, lo, hi - lo);
}

static void test_writes(struct conf *c)
{
    check_write(c, 5, 1, 2);
    check_write(c, BUF_LEN - 1, 1, 2);
    check_write(c, 8191, 4097, 2);
    check_write(c, 3 * (1u << 20) + 17, 1u << 20, 2);
    host_verify(c, 0, BUF_LEN);
    check_write(c, 0, BUF_LEN, 3);
    host_verify(c, 0, BUF_LEN);
    check_read(c, 0, BUF_LEN);
}

struct segs {
    uint32_t n;
    struct hmaf_xfer *x;
    uint8_t *local;
};

/* n small transfers spread over the buffer, each with its own local slot. */
static void make_segments(struct conf *c, struct segs *s)
{
    uint64_t stride;

    s->n = c->lim.max_segments < MAX_SEGS_TESTED ? c->lim.max_segments
                                                 : MAX_SEGS_TESTED;
    stride = (BUF_LEN - SLOT) / s->n;
    s->x = calloc(s->n, sizeof(*s->x));
    s->local = malloc((size_t)s->n * SLOT);
    CHECK(s->x != NULL && s->local != NULL);
    memset(s->local, 0xee, (size_t)s->n * SLOT);
    for (uint32_t i = 0; i < s->n; i++) {
        s->x[i].rmem = c->buf;
        s->x[i].local = s->local + (size_t)i * SLOT;
        s->x[i].remote_addr = c->info.addr + i * stride + i % 7;
        s->x[i].len = 1 + (i * 37u) % 200;
    }
}

static void free_segments(struct segs *s)
{
    free(s->x);
    free(s->local);
}

static uint64_t seg_off(const struct conf *c, const struct hmaf_xfer *x)
{
    return x->remote_addr - c->info.addr;
}

static void test_segments_read(struct conf *c)
{
    struct segs s;
    struct hmaf_xfer_batch b = {.op = HMAF_XFER_READ};

    make_segments(c, &s);
    b.xfers = s.x;
    b.count = s.n;
    CHECK_OK(submit(c, &b));
    for (uint32_t i = 0; i < s.n; i++) {
        const uint8_t *slot = s.local + (size_t)i * SLOT;
        CHECK(memcmp(slot, c->model + seg_off(c, &s.x[i]), s.x[i].len) == 0);
        for (size_t j = s.x[i].len; j < SLOT; j++) {
            CHECK_EQ(slot[j], 0xee);
        }
    }
    free_segments(&s);
}

static void test_segments_write(struct conf *c)
{
    struct segs s;
    struct hmaf_xfer_batch b = {.op = HMAF_XFER_WRITE};

    make_segments(c, &s);
    for (uint32_t i = 0; i < s.n; i++) {
        fill(s.x[i].local, s.x[i].len, seg_off(c, &s.x[i]), 4);
    }
    b.xfers = s.x;
    b.count = s.n;
    CHECK_OK(submit(c, &b));
    for (uint32_t i = 0; i < s.n; i++) {
        fill(c->model + seg_off(c, &s.x[i]), s.x[i].len, seg_off(c, &s.x[i]),
             4);
    }
    host_verify(c, 0, BUF_LEN);
    free_segments(&s);
}

/* Where a transfer must fail, and how. */
struct fault {
    struct hmaf_engine_rmem *rmem;
    uint64_t addr;
    int err;
};

/* The middle of three transfers fails: the batch fails with f's error and
 * the first transfer has landed. */
static void test_fault_read(struct conf *c, const struct fault *f)
{
    uint8_t a[100], bad[100], z[100];
    struct hmaf_xfer x[3] = {
        {c->buf, a, c->info.addr + 200, sizeof(a)},
        {f->rmem, bad, f->addr, sizeof(bad)},
        {c->buf, z, c->info.addr + 5000, sizeof(z)},
    };
    struct hmaf_xfer_batch b = {.op = HMAF_XFER_READ, .xfers = x, .count = 3};

    memset(a, 0xee, sizeof(a));
    CHECK_ERR(submit(c, &b), f->err);
    CHECK_ERR(b.status, f->err);
    CHECK(memcmp(a, c->model + 200, sizeof(a)) == 0);
    CHECK_ERR(transfer(c, HMAF_XFER_READ, f->rmem, bad, f->addr, 1), f->err);
    CHECK_ERR(move_one(c, HMAF_XFER_READ, f->rmem, bad, f->addr, 1), f->err);
}

static void test_fault_write(struct conf *c, const struct fault *f)
{
    uint8_t a[100], bad[100], z[100];
    struct hmaf_xfer x[3] = {
        {c->buf, a, c->info.addr, sizeof(a)},
        {f->rmem, bad, f->addr, sizeof(bad)},
        {c->buf, z, c->info.addr + 1000, sizeof(z)},
    };
    struct hmaf_xfer_batch b = {.op = HMAF_XFER_WRITE, .xfers = x, .count = 3};

    fill(a, sizeof(a), 0, 5);
    memset(bad, 0x11, sizeof(bad));
    memcpy(z, c->model + 1000, sizeof(z)); /* landing or not: no change */
    CHECK_ERR(submit(c, &b), f->err);
    CHECK_ERR(b.status, f->err);
    fill(c->model, sizeof(a), 0, 5);
    host_verify(c, 0, BUF_LEN);
    CHECK_ERR(transfer(c, HMAF_XFER_WRITE, f->rmem, bad, f->addr, 1), f->err);
    CHECK_ERR(move_one(c, HMAF_XFER_WRITE, f->rmem, bad, f->addr, 1), f->err);
}

/* A hole is the transfer's own fault: the ep goes on. */
static void test_faults_at_transfer(struct conf *c)
{
    struct fault f = {c->hole, c->info.hole, HMAF_EFAULT};

    test_fault_read(c, &f);
    check_read(c, 0, 64);
    test_fault_write(c, &f);
    check_write(c, 64, 64, 6);
}

/* Pinning engines refuse what they cannot pin, with exactly this error;
 * then only a registration the host dropped can fail a transfer, and a
 * session whose host withdrew memory under it ends (the core marks it
 * dead on HMAF_ECONNRESET), so the ep is not used again for it. That
 * last part only where deregistering ends the peer's access
 * (HMAF_ENGINE_ENFORCED: doca; ucx, whose host refuses a request with a
 * key no longer registered). */
static void test_faults_pinned(struct conf *c)
{
    struct fault f = {c->dead, c->info.dead, HMAF_ECONNRESET};
    uint8_t v[64], want[64];

    CHECK_ERR(c->info.hole_status, HMAF_EFAULT);
    CHECK_ERR(c->info.gap_status, HMAF_EFAULT);
    fill(want, sizeof(want), 0, 7);
    CHECK_OK(transfer(c, HMAF_XFER_READ, c->dead, v, c->info.dead, sizeof(v)));
    CHECK(memcmp(v, want, sizeof(v)) == 0); /* alive until dropped */
    if (!(c->ops->flags & HMAF_ENGINE_ENFORCED)) {
        return;
    }
    host_drop_dead_region(c);
    test_fault_read(c, &f);
    test_fault_write(c, &f);
}

static void test_faults(struct conf *c)
{
    if (c->hole != NULL) {
        test_faults_at_transfer(c);
    } else {
        test_faults_pinned(c);
    }
}

/* Native atomics, where the engine has them (the stub says
 * HMAF_ENOTSUP): each returns the word before and leaves what the op
 * says, as a read then shows. */
static void check_atomic(struct conf *c, uint8_t op, uint8_t size,
                         uint64_t off, uint64_t operand, uint64_t compare,
                         uint64_t want_after)
{
    struct hmaf_engine_atomic a = {c->buf, c->info.addr + off, op, size,
                                   operand, compare, 0, -1};
    uint64_t before = 0, after = 0;

    memcpy(&before, c->model + off, size);
    CHECK_OK(c->ops->atomic(c->ep, &a, 1));
    CHECK_OK(a.status);
    CHECK_EQ(a.old, before);
    memcpy(c->model + off, &want_after, size);
    CHECK_OK(transfer(c, HMAF_XFER_READ, c->buf, (uint8_t *)&after,
                      c->info.addr + off, size));
    CHECK_EQ(after, want_after);
}

static void test_atomics(struct conf *c)
{
    struct hmaf_engine_atomic probe = {c->buf, c->info.addr, HMAF_ATOMIC_FADD,
                                       8, 0, 0, 0, -1};
    uint64_t w = 0;
    uint32_t h = 0;
    int ret = c->ops->atomic(c->ep, &probe, 1);

    if (ret == HMAF_ENOTSUP) {
        return;
    }
    CHECK_OK(ret);
    memcpy(&w, c->model + 4096, 8);
    check_atomic(c, HMAF_ATOMIC_FADD, 8, 4096, 5, 0, w + 5);
    check_atomic(c, HMAF_ATOMIC_SWAP, 8, 4096, 0x1122334455667788ull, 0,
                 0x1122334455667788ull);
    check_atomic(c, HMAF_ATOMIC_CAS, 8, 4096, 7, 0x1122334455667788ull, 7);
    check_atomic(c, HMAF_ATOMIC_CAS, 8, 4096, 9, 8, 7); /* no match */
    check_atomic(c, HMAF_ATOMIC_FOR, 8, 4096, 0xf0, 0, 0xf7);
    check_atomic(c, HMAF_ATOMIC_FAND, 8, 4096, 0x3c, 0, 0x34);
    check_atomic(c, HMAF_ATOMIC_FXOR, 8, 4096, 0xff, 0, 0xcb);
    memcpy(&h, c->model + 8192, 4);
    check_atomic(c, HMAF_ATOMIC_FADD, 4, 8192, 1, 0, (uint32_t)(h + 1));
    check_atomic(c, HMAF_ATOMIC_CAS, 4, 8192, 3, (uint32_t)(h + 1), 3);
    host_verify(c, 0, BUF_LEN);
}

static void test_host_gone(struct conf *c)
{
    uint8_t b = 0;

    stop_host(c);
    CHECK_ERR(transfer(c, HMAF_XFER_READ, c->buf, &b, c->info.addr, 1),
              HMAF_ECONNRESET);
    CHECK_ERR(transfer(c, HMAF_XFER_WRITE, c->buf, &b, c->info.addr, 1),
              HMAF_ECONNRESET);
    CHECK_ERR(move_one(c, HMAF_XFER_READ, c->buf, &b, c->info.addr, 1),
              HMAF_ECONNRESET);
    CHECK_ERR(move_one(c, HMAF_XFER_WRITE, c->buf, &b, c->info.addr, 1),
              HMAF_ECONNRESET);
}

static void on_watchdog(int sig)
{
    static const char msg[] = "engine_conformance: timed out (a transfer "
                              "never completed?)\n";

    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        _exit(1);
    }
    _exit(1);
}

int main(int argc, char **argv)
{
    struct conf c = {.pid = -1};

    if (argc != 2) {
        fprintf(stderr, "usage: engine_conformance <engine-name>\n");
        return 1;
    }
    c.name = argv[1];
    c.ops = hmaf__engine_find(c.name);
    if (c.ops == NULL) {
        SKIP("engine %s is not built or not usable here", c.name);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_watchdog);
    alarm(WATCHDOG_S);
    check_ops_table(c.ops, c.name);
    start_host(&c);
    connect_host(&c);
    check_limits(&c);
    first_read_or_skip(&c);
    test_reads(&c);
    test_segments_read(&c);
    test_writes(&c);
    test_segments_write(&c);
    test_faults(&c);
    test_atomics(&c);
    test_host_gone(&c);
    disconnect(&c);
    printf("engine_conformance %s: ok\n", c.name);
    return 0;
}
