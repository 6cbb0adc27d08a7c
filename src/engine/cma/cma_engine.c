/*
 * cma: cross-memory attach. The dpu side copies straight from and into the
 * host process's address space with process_vm_readv/writev; the host's CPU
 * takes no part, as with DMA. Works on one machine, needs the kernel to
 * allow ptrace-style access: the host grants it to its peer with
 * PR_SET_PTRACER so it also works where Yama's ptrace_scope is 1.
 *
 * Registration is a no-op (the kernel checks every access), so exposure is
 * enforced by the library, cooperatively: see docs/engines.md.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "engine/cma/cma_split.h"
#include "engine/engine.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/pidns.h"

#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif
#ifndef PR_SET_PTRACER_ANY
#define PR_SET_PTRACER_ANY ((unsigned long)-1)
#endif

/* One post moves at most this many bytes per descriptor, so byte counts
 * always fit the ssize_t that process_vm_readv returns. */
#define CMA_MAX_TRANSFER (1ull << 30)
/* Batches up to this size use iovec arrays of this many entries. */
#define CMA_SMALL_BATCH 8

/* Host: the peers granted ptrace-style access, so the grant can follow
 * them: one peer gets exactly its pid, several get "any" (the setting
 * holds one pid per process), none get nothing. */
#define CMA_PEERS_MAX 1024

struct cma_peer {
    pid_t pid;
    unsigned sessions;
};

struct cma_ctx {
    struct hmaf_engine_ctx base;
    struct cma_peer peers[CMA_PEERS_MAX];
    unsigned npeers;
    struct cma_split split; /* dpu: helper threads for large transfers */
};

/* A small transfer finds the peer's pid here, not in the imported range:
 * the core keeps what a hit needs of a range in its region cache's
 * leaves, and the range itself is, among many, one more cold page after
 * a system call flushed the TLB; the ep's stays warm. */
struct cma_ep {
    struct hmaf_engine_ep base;
    pid_t peer;
};

/* One byte of our own memory: reading ourselves needs no ptrace
 * permission, so a failure here is the system call itself refused — a
 * seccomp filter (a container's default profile) or a kernel without
 * CONFIG_CROSS_MEMORY_ATTACH — which no ptrace setting would fix. Access
 * to a host process is checked at session create (a first read). */
static int cma_probe(char *why, size_t len)
{
    char src = 1, dst = 0;
    struct iovec local = {&dst, 1}, remote = {&src, 1};
    int err;

    if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1) {
        return 0;
    }
    err = errno;
    snprintf(why, len,
             "process_vm_readv of its own memory fails with %s: %s: allow "
             "process_vm_readv and process_vm_writev in the seccomp profile "
             "(docker: --security-opt seccomp=<a profile with them>)",
             err == ENOSYS ? "ENOSYS" : err == EPERM ? "EPERM" : strerror(err),
             err == ENOSYS ? "a seccomp filter answers ENOSYS, or the "
                             "kernel lacks CONFIG_CROSS_MEMORY_ATTACH"
                           : "a seccomp filter denies the system call");
    return err == ENOSYS ? HMAF_ENOTSUP : HMAF_EPERM;
}

static int cma_ctx_open(struct hmaf_engine_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static void cma_ctx_close(struct hmaf_engine_ctx *ctx)
{
    hmaf__cma_split_fini(&hmaf__container_of(ctx, struct cma_ctx, base)->split);
}

static void cma_limits(const struct hmaf_engine_ctx *ctx,
                       struct hmaf_engine_limits *limits_out)
{
    (void)ctx;
    limits_out->max_transfer = CMA_MAX_TRANSFER;
    limits_out->max_inflight = UINT32_MAX;
    limits_out->max_segments = IOV_MAX;
    limits_out->max_blob = sizeof(uint32_t);
}

static int cma_local_blob(struct hmaf_engine_ctx *ctx, void *buf, size_t cap,
                          size_t *len_out)
{
    uint32_t pid = (uint32_t)getpid();
    uint8_t *p = buf;

    (void)ctx;
    if (cap < sizeof(pid)) {
        return HMAF_ENOSPC;
    }
    for (size_t i = 0; i < sizeof(pid); i++) {
        p[i] = (uint8_t)(pid >> (8 * i));
    }
    *len_out = sizeof(pid);
    return 0;
}

static void update_ptracer(const struct cma_ctx *ctx)
{
    unsigned long who = ctx->npeers == 0   ? 0
                        : ctx->npeers == 1 ? (unsigned long)ctx->peers[0].pid
                                           : PR_SET_PTRACER_ANY;

    /* EINVAL means no Yama: nothing to grant or take back. */
    if (prctl(PR_SET_PTRACER, who, 0, 0, 0) != 0 && errno != EINVAL) {
        hmaf__log_warn("prctl(PR_SET_PTRACER): %m");
    }
}

static int add_peer(struct cma_ctx *ctx, pid_t pid)
{
    for (unsigned i = 0; i < ctx->npeers; i++) {
        if (ctx->peers[i].pid == pid) {
            ctx->peers[i].sessions++;
            return 0;
        }
    }
    if (ctx->npeers == CMA_PEERS_MAX) {
        return HMAF_ENOSPC;
    }
    ctx->peers[ctx->npeers++] = (struct cma_peer){pid, 1};
    update_ptracer(ctx);
    return 0;
}

static void drop_peer(struct cma_ctx *ctx, pid_t pid)
{
    for (unsigned i = 0; i < ctx->npeers; i++) {
        if (ctx->peers[i].pid == pid && --ctx->peers[i].sessions == 0) {
            ctx->peers[i] = ctx->peers[--ctx->npeers];
            update_ptracer(ctx);
            return;
        }
    }
}

static const char *peer_name(const struct hmaf_engine_ep *ep)
{
    return ep->ctx->role == HMAF_ROLE_HOST ? "dpu-side process" : "host";
}

/* The pid the peer sent against the one the kernel gives for the channel.
 * cma reaches the host by its pid, so both sides must name it alike: a
 * peer in another pid namespace cannot work, and is told so rather than
 * taken for a liar (HMAF_EAUTH) — which it is only when its number is not
 * even its own namespace's for that process. */
static int check_peer_pid(const struct hmaf_engine_ep *ep, uint32_t pid)
{
    int inner;

    if (ep->peer_pid == HMAF_PEER_PID_HIDDEN) {
        hmaf__log_error("%s pid %u is not visible in this pid namespace "
                        "(the unix channel's credentials name no process): "
                        "%s",
                        peer_name(ep), pid, HMAF_PIDNS_FIX);
        return HMAF_EPIDNS;
    }
    if (ep->peer_pid == 0 || (pid_t)pid == ep->peer_pid) {
        return 0;
    }
    inner = hmaf__pidns_inner_pid(ep->peer_pid);
    if (inner > 0 && (uint32_t)inner == pid) {
        hmaf__log_error("%s pid %d runs in a pid namespace nested in this "
                        "one, where it is pid %u: %s",
                        peer_name(ep), ep->peer_pid, pid, HMAF_PIDNS_FIX);
        return HMAF_EPIDNS;
    }
    hmaf__log_warn("peer claims pid %u, the channel says %d", pid,
                   ep->peer_pid);
    return HMAF_EAUTH;
}

static int cma_ep_open(struct hmaf_engine_ep *ep, const void *peer_blob,
                       size_t len)
{
    struct cma_ep *cep = hmaf__container_of(ep, struct cma_ep, base);
    const uint8_t *p = peer_blob;
    uint32_t pid = 0;
    int ret;

    if (len != sizeof(pid)) {
        return HMAF_EPROTO;
    }
    for (size_t i = 0; i < sizeof(pid); i++) {
        pid |= (uint32_t)p[i] << (8 * i);
    }
    if (pid == 0 || pid > INT_MAX) {
        return HMAF_EPROTO;
    }
    ret = check_peer_pid(ep, pid);
    if (ret < 0) {
        return ret;
    }
    cep->peer = (pid_t)pid;
    if (ep->ctx->role == HMAF_ROLE_HOST) {
        return add_peer(hmaf__container_of(ep->ctx, struct cma_ctx, base),
                        cep->peer);
    }
    return 0;
}

static void cma_ep_close(struct hmaf_engine_ep *ep)
{
    struct cma_ep *cep = hmaf__container_of(ep, struct cma_ep, base);

    if (ep->ctx->role == HMAF_ROLE_HOST) {
        drop_peer(hmaf__container_of(ep->ctx, struct cma_ctx, base),
                  cep->peer);
    }
}

static int cma_mem_register(struct hmaf_engine_mem *mem)
{
    (void)mem; /* the kernel checks each access; nothing to pin */
    return 0;
}

static int cma_mem_export(struct hmaf_engine_mem *mem, void *buf, size_t cap,
                          size_t *len_out)
{
    (void)mem, (void)buf, (void)cap;
    *len_out = 0;
    return 0;
}

static int cma_rmem_import(struct hmaf_engine_rmem *rmem, const void *blob,
                           size_t len)
{
    (void)rmem, (void)blob;
    return len == 0 ? 0 : HMAF_EPROTO;
}

static int cma_errno_to_hmaf(int err)
{
    switch (err) {
    case ESRCH:
        return HMAF_ECONNRESET; /* the host process is gone */
    case EFAULT:
        return HMAF_EFAULT;
    case EPERM:
        return HMAF_EPERM;
    case ENOMEM:
        return HMAF_ENOMEM;
    default:
        return HMAF_EINVAL;
    }
}

/* An iovec list being filled: the last entry grows while the bytes
 * added follow on from it directly. */
struct iov_fill {
    struct iovec *last; /* the list's last entry */
    char *end;          /* where it ends */
};

static inline void iov_start(struct iov_fill *f, struct iovec *iov, char *base,
                             size_t len)
{
    f->last = iov;
    f->last->iov_base = base;
    f->last->iov_len = len;
    f->end = base + len;
}

static inline void iov_add(struct iov_fill *f, char *base, size_t len)
{
    if (base == f->end) {
        f->last->iov_len += len;
    } else {
        (++f->last)->iov_base = base;
        f->last->iov_len = len;
    }
    f->end = base + len;
}

/* The iovec lists for xfers[i] (from byte skip) on, as far as they fit.
 * Transfers whose host bytes are contiguous share one remote iovec: the
 * kernel looks up and pins each remote iovec's pages separately, so that
 * is most of what a small segment costs. */
struct cma_iov {
    struct iovec *local, *remote;
    int nlocal, nremote, cap;
    uint32_t next; /* the first transfer not in the lists */
    size_t bytes;  /* what the lists hold */
};

static void cma_fill_iov(const struct hmaf_xfer_batch *batch, uint32_t i,
                         size_t skip, struct cma_iov *v)
{
    const struct hmaf_xfer *x = batch->xfers;
    /* A transfer adds at most one entry to each list. */
    uint32_t end = batch->count - i > (uint32_t)v->cap ? i + (uint32_t)v->cap
                                                      : batch->count;
    size_t bytes = x[i].len - skip;
    struct iov_fill local, remote;

    iov_start(&local, v->local, (char *)x[i].local + skip, bytes);
    iov_start(&remote, v->remote,
              (char *)(uintptr_t)(x[i].remote_addr + skip), bytes);
    for (i++; i < end; i++) {
        iov_add(&local, x[i].local, x[i].len);
        iov_add(&remote, (char *)(uintptr_t)x[i].remote_addr, x[i].len);
        bytes += x[i].len;
    }
    v->nlocal = (int)(local.last - v->local) + 1;
    v->nremote = (int)(remote.last - v->remote) + 1;
    v->next = i;
    v->bytes = bytes;
}

/* Move the cursor (*i, *skip) on by done bytes. */
static void cma_advance(const struct hmaf_xfer_batch *batch, uint32_t *i,
                        size_t *skip, size_t done)
{
    while (done > 0) {
        size_t left = batch->xfers[*i].len - *skip;
        if (done < left) {
            *skip += done;
            return;
        }
        done -= left;
        *skip = 0;
        (*i)++;
    }
}

/*
 * process_vm_readv/writev, returning -errno on failure. On x86-64 the
 * system call is made here rather than through libc's wrapper (a PLT jump
 * to libc's page): where every system call flushes the TLB (page-table
 * isolation without PCID), each page a small transfer touches costs a
 * page walk, and the wrapper's is one more. Sanitized builds keep to
 * libc, whose wrapper the sanitizer intercepts.
 */
static inline long cma_syscall_raw(pid_t peer, enum hmaf_xfer_op op,
                                   const struct iovec *local, int nlocal,
                                   const struct iovec *remote, int nremote)
{
#if defined(__x86_64__) && defined(__linux__) && !defined(HMAF_SANITIZED)
    long ret = op == HMAF_XFER_READ ? SYS_process_vm_readv
                                    : SYS_process_vm_writev;
    register long r10 __asm__("r10") = (long)remote;
    register long r8 __asm__("r8") = nremote;
    register long r9 __asm__("r9") = 0; /* flags */

    __asm__ volatile("syscall"
                     : "+a"(ret)
                     : "D"((long)peer), "S"(local), "d"((long)nlocal),
                       "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#else
    ssize_t n = op == HMAF_XFER_READ
                    ? process_vm_readv(peer, local, (unsigned long)nlocal,
                                       remote, (unsigned long)nremote, 0)
                    : process_vm_writev(peer, local, (unsigned long)nlocal,
                                        remote, (unsigned long)nremote, 0);
    return n < 0 ? -errno : n;
#endif
}

/* A raw result as libc's wrapper returns it: -1 with errno set. */
static inline ssize_t cma_result(long ret)
{
    /* The kernel's errors are -4095..-1; anything else is a count. */
    if (ret < 0 && ret >= -4095) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static inline ssize_t cma_syscall(pid_t peer, enum hmaf_xfer_op op,
                                  const struct iovec *local, int nlocal,
                                  const struct iovec *remote, int nremote)
{
    return cma_result(
        cma_syscall_raw(peer, op, local, nlocal, remote, nremote));
}

static ssize_t cma_call(const struct cma_ep *cep, enum hmaf_xfer_op op,
                        const struct iovec *local, int nlocal,
                        const struct iovec *remote, int nremote)
{
    return cma_syscall(cep->peer, op, local, nlocal, remote, nremote);
}

static int cma_failed(const struct cma_ep *cep, enum hmaf_xfer_op op,
                      ssize_t done)
{
    hmaf__log_debug("process_vm_%sv pid %d: %m",
                    op == HMAF_XFER_READ ? "read" : "write", cep->peer);
    /* 0 bytes means the first remote page is unmapped. */
    return done == 0 ? HMAF_EFAULT : cma_errno_to_hmaf(errno);
}

/* Move every byte of the batch with as few calls as the kernel allows,
 * using iovec arrays of `cap` entries. */
static int cma_move(const struct cma_ep *cep, struct hmaf_xfer_batch *batch,
                    struct iovec *local, struct iovec *remote, int cap)
{
    struct cma_iov v = {.local = local, .remote = remote, .cap = cap};
    uint32_t i = 0;
    size_t skip = 0;

    while (i < batch->count) {
        ssize_t done;
        cma_fill_iov(batch, i, skip, &v);
        done = cma_call(cep, batch->op, local, v.nlocal, remote, v.nremote);
        if (done <= 0) {
            return cma_failed(cep, batch->op, done);
        }
        if ((size_t)done == v.bytes) {
            i = v.next; /* all of it: the common case */
            skip = 0;
        } else {
            cma_advance(batch, &i, &skip, (size_t)done);
        }
    }
    return 0;
}

/* What is left of a single transfer after a first call moved done bytes
 * (done <= 0: it failed). Rare: kept out of the common post's way. */
static __attribute__((noinline, cold)) int
cma_move_rest(const struct cma_ep *cep, enum hmaf_xfer_op op,
              const struct hmaf_xfer *x, ssize_t done)
{
    while (done > 0 && (size_t)done < x->len) {
        struct iovec local = {(char *)x->local + done, x->len - (size_t)done};
        struct iovec remote = {(void *)(uintptr_t)(x->remote_addr +
                                                   (size_t)done),
                               x->len - (size_t)done};
        ssize_t n = cma_call(cep, op, &local, 1, &remote, 1);
        if (n <= 0) {
            return cma_failed(cep, op, n);
        }
        done += n;
    }
    return done <= 0 ? cma_failed(cep, op, done) : 0;
}

/* A single transfer, the most common post (and the core's move_one, for
 * small reads and writes): one call, which moves every byte unless a page
 * is missing (or the kernel stopped short). */
static HMAF_HOT int cma_move_one(struct hmaf_engine_ep *ep,
                                 enum hmaf_xfer_op op,
                                 const struct hmaf_xfer *x)
{
    const struct cma_ep *cep = hmaf__container_of(ep, struct cma_ep, base);
    struct iovec local = {x->local, x->len};
    struct iovec remote = {(void *)(uintptr_t)x->remote_addr, x->len};
    long n = cma_syscall_raw(cep->peer, op, &local, 1, &remote, 1);

    if (hmaf__likely(n == (long)x->len)) {
        return 0;
    }
    /* Out of line with errno's setting: the common case keeps few
     * registers and no frame to speak of. */
    return cma_move_rest(hmaf__container_of(ep, struct cma_ep, base), op, x,
                         cma_result(n));
}

/* Kept out of line so the common small post needs no 32 KiB frame. */
static __attribute__((noinline)) int
cma_move_large(const struct cma_ep *cep, struct hmaf_xfer_batch *batch)
{
    struct iovec local[IOV_MAX], remote[IOV_MAX];

    return cma_move(cep, batch, local, remote, IOV_MAX);
}

/* Out of line so that the single-transfer post keeps a small frame. */
static __attribute__((noinline)) int
cma_move_many(const struct cma_ep *cep, struct hmaf_xfer_batch *batch)
{
    struct iovec local[CMA_SMALL_BATCH], remote[CMA_SMALL_BATCH];

    if (batch->count > CMA_SMALL_BATCH) {
        return cma_move_large(cep, batch);
    }
    return cma_move(cep, batch, local, remote, CMA_SMALL_BATCH);
}

/* The unsplit move of a batch, for the pieces of a split one. */
static int cma_move_piece(const void *arg, struct hmaf_xfer_batch *piece)
{
    const struct cma_ep *cep = arg;

    if (piece->count == 1) {
        /* cma_move_one only reads the ep (for a partial copy's error) */
        return cma_move_one((struct hmaf_engine_ep *)&cep->base, piece->op,
                            &piece->xfers[0]);
    }
    return cma_move_many(cep, piece);
}

/* Move a large batch in pieces copied by helper threads and this one
 * (cma_split.h), when the session lets transfers be split. Returns 1 when
 * it did, 0 to leave the batch to the unsplit move. */
static __attribute__((noinline)) int
cma_post_split(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch)
{
    struct cma_ctx *ctx = hmaf__container_of(ep->ctx, struct cma_ctx, base);
    const struct cma_ep *cep = hmaf__container_of(ep, struct cma_ep, base);
    uint64_t total;

    if (ctx->base.split_threads < 2 || (batch->flags & HMAF_BATCH_CONTROL) ||
        !hmaf__cma_split_worth(batch, &total)) {
        return 0;
    }
    batch->status = hmaf__cma_split_move(&ctx->split, ctx->base.split_threads,
                                         batch, total, cma_move_piece, cep);
    batch->completed = batch->count;
    return 1;
}

static int cma_post(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch)
{
    const struct cma_ep *cep = hmaf__container_of(ep, struct cma_ep, base);

    /* A single small transfer is told apart by its length alone. */
    if ((batch->count > 1 || batch->xfers[0].len >= CMA_SPLIT_MIN) &&
        cma_post_split(ep, batch)) {
        return 0;
    }
    batch->status = batch->count == 1
                        ? cma_move_one(ep, batch->op, &batch->xfers[0])
                        : cma_move_many(cep, batch);
    batch->completed = batch->count;
    return 0;
}

/* One process_vm_writev copies its iovecs in order, on one cpu, each with
 * a copy of its own; x86 makes the stores of one copy visible before
 * those of a later one (even string copies'), so a post's writes land in
 * order there. Other processors may reorder them. */
/* Reads likewise: the kernel copies the remote iovecs one after the
 * other, each copy's loads done by this cpu, and x86 does not let a load
 * pass an earlier one (string copies' loads may run out of order among
 * themselves, not past a later copy's), so the bytes of a later iovec are
 * never older than an earlier one's. */
#if defined(__x86_64__) || defined(__i386__)
#define CMA_FLAGS (HMAF_ENGINE_ORDERED | HMAF_ENGINE_ORDERED_READS)
#else
#define CMA_FLAGS 0u
#endif

const struct hmaf_engine_ops hmaf_engine_cma = {
    .name = "cma",
    .abi_version = HMAF_ENGINE_ABI_VERSION,
    .flags = CMA_FLAGS,
    .ctx_size = sizeof(struct cma_ctx),
    .ep_size = sizeof(struct cma_ep),
    .mem_size = sizeof(struct hmaf_engine_mem),
    .rmem_size = sizeof(struct hmaf_engine_rmem),
    .probe = cma_probe,
    .ctx_open = cma_ctx_open,
    .ctx_close = cma_ctx_close,
    .limits = cma_limits,
    .local_blob = cma_local_blob,
    .ep_open = cma_ep_open,
    .ep_close = cma_ep_close,
    .mem_register = cma_mem_register,
    .mem_export = cma_mem_export,
    .rmem_import = cma_rmem_import,
    .post = cma_post,
    .move_one = cma_move_one,
};
