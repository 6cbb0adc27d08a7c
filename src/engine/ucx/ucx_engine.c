/*
 * ucx: UCX one-sided RMA (ucp_get_nbx / ucp_put_nbx), across machines
 * (docs/engines.md, "ucx").
 *
 * Host: a ucp context and worker; each registered range is ucp_mem_map'ped
 * and its packed rkey is the export blob; the worker's address is the
 * bootstrap blob. Dpu: one endpoint to that address per session, in
 * peer-failure mode, rkeys unpacked at import, transfers posted as
 * ucp_get_nbx / ucp_put_nbx and completed by worker progress.
 *
 * Without RDMA hardware UCX emulates gets and puts with active messages
 * that the host's worker serves, so the host must progress its worker:
 * host_progress and wait_fd let the agent's loop do it and sleep on the
 * worker's event fd. Those emulated transfers reach any host address the
 * peer names, registered or not (UCX checks no key): exposure and
 * revocation stay cooperative, as with cma, and this engine does not
 * declare HMAF_ENGINE_ENFORCED. A range must be mapped when registered
 * (the emulation would fault the host otherwise).
 *
 * Both workers run in UCS_THREAD_MODE_MULTI: a session's threads share
 * one endpoint (rkeys belong to it), and the agent's API calls register
 * memory while its loop progresses the worker.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ucp/api/ucp.h>

#include <hmaf/atomic.h>
#include <hmaf/error.h>
#include <hmaf/types.h>

#include "engine/engine.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"

/* The handshake's bound on a blob (proto/handshake.h, HMAF_BLOB_MAX):
 * worker addresses are ~215 bytes over tcp and shared memory, larger with
 * RDMA devices. */
#define UCX_MAX_BLOB     1536
#define UCX_MAX_TRANSFER (1ull << 30)
#define UCX_MAX_SEGMENTS 1024
#define UCX_MAX_INFLIGHT 16384
/* Worker progress calls one host_progress makes at most while they find
 * work: the agent's other duties wait no longer. */
#define UCX_HOST_PROGRESS_ROUNDS 64
/* ep_close waits this long for a forced close (it needs no peer). */
#define UCX_CLOSE_WAIT_NS 1000000000ull

struct ucx_ctx {
    struct hmaf_engine_ctx base;
    ucp_context_h context;
    ucp_worker_h worker;
    int efd;                /* host: the worker's wake-up fd */
    ucp_address_t *address; /* host: the bootstrap blob */
    size_t address_len;
    _Atomic int progressing; /* a thread is in ucx_progress_turn */
};

struct ucx_ep {
    struct hmaf_engine_ep base;
    ucp_ep_h ep;        /* dpu only */
    _Atomic int failed; /* the peer-failure handler ran */
};

struct ucx_mem {
    struct hmaf_engine_mem base;
    ucp_mem_h memh;
    void *rkey; /* packed, the export blob */
    size_t rkey_len;
};

struct ucx_rmem {
    struct hmaf_engine_rmem base;
    ucp_rkey_h rkey;
};

/* The ucp operations of one post (or one move_one) still in flight, plus
 * one the poster holds while it posts; whoever ends the last one
 * completes the batch (status first, then completed, release). A
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

static struct ucx_ctx *ucx_ctx_of(struct hmaf_engine_ctx *ctx)
{
    return hmaf__container_of(ctx, struct ucx_ctx, base);
}

static struct ucx_ep *ucx_ep_of(struct hmaf_engine_ep *ep)
{
    return hmaf__container_of(ep, struct ucx_ep, base);
}

static int ucx_probe(void)
{
    return 0; /* linked against UCX; ctx_open says whether it starts */
}

/* The dpu side must see a dead host within about a second
 * (docs/engines.md): UCX's own keepalive default is 20 s. The host learns
 * of a dead dpu side from its channel, and keeps UCX's default.
 * Atomics must be atomic with respect to the host CPU's own (atomic.h):
 * UCX's "cpu" atomic mode uses a device's atomics only where they are
 * (else it emulates them on the host's CPU), where its default may pick
 * device atomics coherent with each other only. The environment still
 * decides both. */
static ucp_config_t *ucx_config(enum hmaf_engine_role role)
{
    ucp_config_t *config = NULL;

    if (ucp_config_read(NULL, NULL, &config) != UCS_OK) {
        return NULL;
    }
    if (role == HMAF_ROLE_DPU && getenv("UCX_KEEPALIVE_INTERVAL") == NULL) {
        (void)ucp_config_modify(config, "KEEPALIVE_INTERVAL", "500ms");
    }
    if (getenv("UCX_ATOMIC_MODE") == NULL) {
        (void)ucp_config_modify(config, "ATOMIC_MODE", "cpu");
    }
    return config;
}

static int ucx_context_open(struct ucx_ctx *c)
{
    ucp_params_t params = {
        .field_mask =
            UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED,
        .features = UCP_FEATURE_RMA | UCP_FEATURE_AMO32 | UCP_FEATURE_AMO64,
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

static int ucx_worker_open(struct ucx_ctx *c)
{
    ucp_worker_params_t params = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_MULTI,
    };
    ucs_status_t st = ucp_worker_create(c->context, &params, &c->worker);

    if (st != UCS_OK) {
        hmaf__log_error("ucp_worker_create: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

/* Host: the address peers connect to, and the fd the agent sleeps on. */
static int ucx_host_open(struct ucx_ctx *c)
{
    ucs_status_t st =
        ucp_worker_get_address(c->worker, &c->address, &c->address_len);

    if (st == UCS_OK) {
        st = ucp_worker_get_efd(c->worker, &c->efd);
    }
    if (st != UCS_OK) {
        hmaf__log_error("ucx host worker: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

static void ucx_ctx_close(struct hmaf_engine_ctx *ctx)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);

    if (c->address != NULL) {
        ucp_worker_release_address(c->worker, c->address);
    }
    if (c->worker != NULL) {
        ucp_worker_destroy(c->worker);
    }
    if (c->context != NULL) {
        ucp_cleanup(c->context);
    }
}

static int ucx_ctx_open(struct hmaf_engine_ctx *ctx)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);
    int ret;

    c->efd = -1;
    ret = ucx_context_open(c);
    if (ret == 0) {
        ret = ucx_worker_open(c);
    }
    if (ret == 0 && ctx->role == HMAF_ROLE_HOST) {
        ret = ucx_host_open(c);
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

/* The host's worker address; the dpu side sends nothing (UCX's wire-up
 * tells the host's worker what it needs when the endpoint connects). */
static int ucx_local_blob(struct hmaf_engine_ctx *ctx, void *buf, size_t cap,
                          size_t *len_out)
{
    struct ucx_ctx *c = ucx_ctx_of(ctx);

    if (ctx->role != HMAF_ROLE_HOST) {
        *len_out = 0;
        return 0;
    }
    if (c->address_len > cap) {
        hmaf__log_error("ucx worker address of %zu bytes, room for %zu",
                        c->address_len, cap);
        return HMAF_ENOSPC;
    }
    memcpy(buf, c->address, c->address_len);
    *len_out = c->address_len;
    return 0;
}

static void ucx_on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    struct ucx_ep *e = arg;

    (void)ep;
    hmaf__log_info("ucx peer failed: %s", ucs_status_string(status));
    atomic_store(&e->failed, 1);
}

/* Dpu: connect to the host's worker. The host opens nothing: the dpu
 * side's blob is empty, and its worker learns of us at wire-up. */
static int ucx_ep_open(struct hmaf_engine_ep *ep, const void *peer_blob,
                       size_t len)
{
    struct ucx_ep *e = ucx_ep_of(ep);
    struct ucx_ctx *c = ucx_ctx_of(ep->ctx);
    /* A blob UCX parses by its own lengths: never past our copy. */
    uint8_t address[UCX_MAX_BLOB + 64] = {0};
    ucp_ep_params_t params = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .address = (const ucp_address_t *)address,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = ucx_on_ep_error, .arg = e},
    };
    ucs_status_t st;

    if (ep->ctx->role == HMAF_ROLE_HOST) {
        return 0;
    }
    if (len == 0 || len > UCX_MAX_BLOB) {
        return HMAF_EPROTO;
    }
    memcpy(address, peer_blob, len);
    st = ucp_ep_create(c->worker, &params, &e->ep);
    if (st != UCS_OK) {
        hmaf__log_error("ucp_ep_create: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    return 0;
}

/* Forced: it needs no answer from the peer (which may be gone or
 * stopped); the core has drained every transfer before. */
static void ucx_ep_close(struct hmaf_engine_ep *ep)
{
    struct ucx_ep *e = ucx_ep_of(ep);
    ucp_worker_h worker = ucx_ctx_of(ep->ctx)->worker;
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};
    uint64_t deadline = hmaf__now_ns() + UCX_CLOSE_WAIT_NS;
    ucs_status_ptr_t req;

    if (e->ep == NULL) {
        return;
    }
    req = ucp_ep_close_nbx(e->ep, &param);
    if (req == NULL || UCS_PTR_IS_ERR(req)) {
        return;
    }
    while (ucp_request_check_status(req) == UCS_INPROGRESS &&
           hmaf__now_ns() < deadline) {
        ucp_worker_progress(worker);
    }
    ucp_request_free(req);
}

/* 1 when [addr, addr + len) is mapped without a gap, readable, and
 * writable when asked: UCX's emulated transfers would fault the host on
 * anything else (the kernel's page tables are the only check they meet). */
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

static int ucx_pack_rkey(struct ucx_ctx *c, struct ucx_mem *m)
{
    void *packed;
    size_t len;
    ucs_status_t st = ucp_rkey_pack(c->context, m->memh, &packed, &len);

    if (st != UCS_OK) {
        hmaf__log_error("ucp_rkey_pack: %s", ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    m->rkey = malloc(len);
    if (m->rkey != NULL) {
        memcpy(m->rkey, packed, len);
        m->rkey_len = len;
    }
    ucp_rkey_buffer_release(packed);
    return m->rkey != NULL ? 0 : HMAF_ENOMEM;
}

static int ucx_mem_register(struct hmaf_engine_mem *mem)
{
    struct ucx_mem *m = hmaf__container_of(mem, struct ucx_mem, base);
    struct ucx_ctx *c = ucx_ctx_of(mem->ctx);
    int writable = mem->access == HMAF_ACCESS_READ_WRITE;
    ucp_mem_map_params_t params = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS |
                      UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_PROT,
        .address = (void *)(uintptr_t)mem->addr,
        .length = mem->len,
        .prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_REMOTE_READ |
                (writable ? UCP_MEM_MAP_PROT_LOCAL_WRITE |
                                UCP_MEM_MAP_PROT_REMOTE_WRITE
                          : 0),
    };
    ucs_status_t st;
    int ret;

    if (!ucx_range_mapped(mem->addr, mem->len, writable)) {
        return HMAF_EFAULT;
    }
    st = ucp_mem_map(c->context, &params, &m->memh);
    if (st != UCS_OK) {
        hmaf__log_error("ucp_mem_map 0x%llx+%llu: %s",
                        (unsigned long long)mem->addr,
                        (unsigned long long)mem->len, ucs_status_string(st));
        return ucx_status_to_hmaf(st);
    }
    ret = ucx_pack_rkey(c, m);
    if (ret < 0) {
        ucp_mem_unmap(c->context, m->memh);
    }
    return ret;
}

static int ucx_mem_export(struct hmaf_engine_mem *mem, void *buf, size_t cap,
                          size_t *len_out)
{
    struct ucx_mem *m = hmaf__container_of(mem, struct ucx_mem, base);

    if (m->rkey_len > cap) {
        hmaf__log_error("ucx rkey of %zu bytes, room for %zu", m->rkey_len,
                        cap);
        return HMAF_ENOSPC;
    }
    memcpy(buf, m->rkey, m->rkey_len);
    *len_out = m->rkey_len;
    return 0;
}

static void ucx_mem_deregister(struct hmaf_engine_mem *mem)
{
    struct ucx_mem *m = hmaf__container_of(mem, struct ucx_mem, base);

    ucp_mem_unmap(ucx_ctx_of(mem->ctx)->context, m->memh);
    free(m->rkey);
    m->rkey = NULL;
}

static int ucx_rmem_import(struct hmaf_engine_rmem *rmem, const void *blob,
                           size_t len)
{
    struct ucx_rmem *r = hmaf__container_of(rmem, struct ucx_rmem, base);
    struct ucx_ep *e = ucx_ep_of(rmem->ep);
    uint8_t packed[UCX_MAX_BLOB + 64] = {0}; /* as in ep_open */
    ucs_status_t st;

    if (len == 0 || len > UCX_MAX_BLOB) {
        return HMAF_EPROTO;
    }
    memcpy(packed, blob, len);
    st = ucp_ep_rkey_unpack(e->ep, packed, &r->rkey);
    if (st != UCS_OK) {
        hmaf__log_error("ucp_ep_rkey_unpack: %s", ucs_status_string(st));
        return atomic_load(&e->failed) ? HMAF_ECONNRESET : HMAF_EPROTO;
    }
    return 0;
}

static void ucx_rmem_release(struct hmaf_engine_rmem *rmem)
{
    struct ucx_rmem *r = hmaf__container_of(rmem, struct ucx_rmem, base);

    ucp_rkey_destroy(r->rkey);
}

/* ---- transfers ---- */

static void track_note(struct ucx_track *t, ucs_status_t st)
{
    int none = 0;

    if (st != UCS_OK) {
        atomic_compare_exchange_strong(&t->status, &none,
                                       ucx_status_to_hmaf(st));
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

static void ucx_on_done(void *request, ucs_status_t st, void *arg)
{
    struct ucx_track *t = arg;

    track_note(t, st);
    ucp_request_free(request);
    track_end_one(t);
}

/* What a nbx call returned: done at once, failed at once, or in flight
 * (its callback ends it). */
static void track_started(struct ucx_track *t, ucs_status_ptr_t sp)
{
    if (sp == NULL) {
        track_end_one(t);
    } else if (UCS_PTR_IS_ERR(sp)) {
        track_note(t, UCS_PTR_STATUS(sp));
        track_end_one(t);
    }
}

static ucs_status_ptr_t ucx_start(struct ucx_ep *e, enum hmaf_xfer_op op,
                                  const struct hmaf_xfer *x,
                                  const ucp_request_param_t *param)
{
    ucp_rkey_h rkey = hmaf__container_of(x->rmem, struct ucx_rmem, base)->rkey;

    if (op == HMAF_XFER_READ) {
        return ucp_get_nbx(e->ep, x->local, x->len, x->remote_addr, rkey,
                           param);
    }
    return ucp_put_nbx(e->ep, x->local, x->len, x->remote_addr, rkey, param);
}

/* Post every transfer (until one fails at once) and, for writes, a flush:
 * a put completes locally when its buffer may be reused, and a write
 * batch counts as done only once its bytes are in the host's memory. The
 * poster's own hold on t is ended by the caller. */
static void ucx_post_all(struct ucx_ep *e, enum hmaf_xfer_op op,
                         const struct hmaf_xfer *x, uint32_t count,
                         struct ucx_track *t)
{
    ucp_request_param_t param = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = ucx_on_done,
        .user_data = t,
    };

    for (uint32_t i = 0; i < count && atomic_load(&t->status) == 0; i++) {
        atomic_fetch_add(&t->pending, 1);
        track_started(t, ucx_start(e, op, &x[i], &param));
    }
    if (op == HMAF_XFER_WRITE && atomic_load(&t->status) == 0) {
        atomic_fetch_add(&t->pending, 1);
        track_started(t, ucp_ep_flush_nbx(e->ep, &param));
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

static int ucx_move_one(struct hmaf_engine_ep *ep, enum hmaf_xfer_op op,
                        const struct hmaf_xfer *x)
{
    struct ucx_ep *e = ucx_ep_of(ep);
    struct ucx_ctx *c = ucx_ctx_of(ep->ctx);
    struct ucx_track t = {.batch = NULL};

    atomic_init(&t.pending, 1);
    atomic_init(&t.status, atomic_load(&e->failed) ? HMAF_ECONNRESET : 0);
    ucx_post_all(e, op, x, 1, &t);
    track_end_one(&t);
    while (atomic_load(&t.pending) > 0) {
        ucx_progress_turn(c);
    }
    return atomic_load(&t.status);
}

/* ---- atomics ---- */

static int ucx_atomic_opcode(uint8_t op, ucp_atomic_op_t *out)
{
    switch (op) {
    case HMAF_ATOMIC_FADD:
        *out = UCP_ATOMIC_OP_ADD;
        return 0;
    case HMAF_ATOMIC_SWAP:
        *out = UCP_ATOMIC_OP_SWAP;
        return 0;
    case HMAF_ATOMIC_CAS:
        *out = UCP_ATOMIC_OP_CSWAP;
        return 0;
    case HMAF_ATOMIC_FAND:
        *out = UCP_ATOMIC_OP_AND;
        return 0;
    case HMAF_ATOMIC_FOR:
        *out = UCP_ATOMIC_OP_OR;
        return 0;
    case HMAF_ATOMIC_FXOR:
        *out = UCP_ATOMIC_OP_XOR;
        return 0;
    default:
        return HMAF_EINVAL;
    }
}

/* One atomic, waited for. UCX fetches into reply; CSWAP compares with
 * buffer and takes the new value from reply. Words are host-endian. */
static int ucx_atomic_one(struct ucx_ep *e, struct ucx_ctx *c,
                          struct hmaf_engine_atomic *a)
{
    union {
        uint32_t u32;
        uint64_t u64;
    } arg, reply;
    ucp_atomic_op_t opcode;
    struct ucx_track t = {.batch = NULL};
    ucp_request_param_t param = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
            UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER,
        .cb.send = ucx_on_done,
        .user_data = &t,
        .datatype = ucp_dt_make_contig(a->size),
        .reply_buffer = &reply,
    };
    ucp_rkey_h rkey = hmaf__container_of(a->rmem, struct ucx_rmem, base)->rkey;
    int is_cas = a->op == HMAF_ATOMIC_CAS;

    if (ucx_atomic_opcode(a->op, &opcode) < 0 ||
        (a->size != 4 && a->size != 8) || a->remote_addr % a->size != 0) {
        return HMAF_EINVAL;
    }
    if (a->size == 4) {
        arg.u32 = (uint32_t)(is_cas ? a->compare : a->operand);
        reply.u32 = (uint32_t)a->operand;
    } else {
        arg.u64 = is_cas ? a->compare : a->operand;
        reply.u64 = a->operand;
    }
    atomic_init(&t.pending, 2);
    atomic_init(&t.status, 0);
    track_started(&t, ucp_atomic_op_nbx(e->ep, opcode, &arg, 1, a->remote_addr,
                                        rkey, &param));
    track_end_one(&t);
    while (atomic_load(&t.pending) > 0) {
        ucx_progress_turn(c);
    }
    a->old = a->size == 4 ? reply.u32 : reply.u64;
    return atomic_load(&t.status);
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

/* ---- the host's share ---- */

static int ucx_host_progress(struct hmaf_engine_ctx *ctx)
{
    ucp_worker_h worker = ucx_ctx_of(ctx)->worker;
    int done = 0;

    for (int i = 0; i < UCX_HOST_PROGRESS_ROUNDS; i++) {
        unsigned n = ucp_worker_progress(worker);
        if (n == 0) {
            break;
        }
        done += (int)n;
    }
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
    .flags = HMAF_ENGINE_ASYNC | HMAF_ENGINE_HOST_WRITES,
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
    .rmem_release = ucx_rmem_release,
    .post = ucx_post,
    .progress = ucx_progress,
    .move_one = ucx_move_one,
    .atomic = ucx_atomic,
    .host_progress = ucx_host_progress,
    .wait_fd = ucx_wait_fd,
};
