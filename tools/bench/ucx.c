/*
 * The "ucx" contender: ucp_get_nbx/ucp_put_nbx on the host's own buffer,
 * the same user memory the other contenders use. The host ucp_mem_map's
 * "buf", packs its rkey and its worker's address; the parent unpacks them
 * on one endpoint per dpu thread and waits on each request with
 * ucp_worker_progress(), as UCX's examples do.
 *
 * UCX picks its transports itself (UCX_TLS and friends are honoured). If
 * no transport can reach this memory one-sidedly, UCX emulates RMA with
 * active messages that the host's worker must serve: the host's progress
 * thread spins during UCX rounds only (see host.c), UCX's best case.
 * ucx_open() finds out which it is and says so.
 *
 * With --engine ucx the endpoints are of the engine's kind, in UCX's
 * peer-failure mode: that mode takes only transports that can report a
 * dead peer (tcp rather than shared memory on one machine, UCX 1.13), so
 * the raw calls run on the transport HMAF's do. Otherwise the endpoints
 * handle no errors, and UCX may take shared memory: its best here.
 *
 * Built only when pkg-config finds ucx (HMAF_BENCH_UCX); otherwise every
 * entry point reports that UCX is not installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifdef HMAF_BENCH_UCX

#include <ucp/api/ucp.h>

/* How long a get may take without the host's help before we conclude
 * the host takes part in it. */
#define ONE_SIDED_PROBE_NS 50000000ull

struct ucx_host {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_mem_h memh;
    void *rkey;
    size_t rkey_len;
    ucp_address_t *addr;
    size_t addr_len;
};

struct ucx_ctx {
    ucp_context_h ctx;
};

struct ucx_worker {
    ucp_worker_h worker;
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    ucp_mem_h dst_mh, src_mh; /* the worker's buffers, mapped once */
    void *reqs[BATCH_MAX];
};

static int ucx_fail(const char *what, ucs_status_t st)
{
    fprintf(stderr, "hmaf-bench: ucx %s: %s\n", what, ucs_status_string(st));
    return -1;
}

static ucs_status_t new_context(ucp_context_h *ctx_out)
{
    ucp_params_t p = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                      .features = UCP_FEATURE_RMA};

    return ucp_init(&p, NULL, ctx_out);
}

/* SERIALIZED: a worker is created on one thread and used on another. */
static ucs_status_t new_worker(ucp_context_h ctx, ucp_worker_h *worker_out)
{
    ucp_worker_params_t p = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                             .thread_mode = UCS_THREAD_MODE_SERIALIZED};

    return ucp_worker_create(ctx, &p, worker_out);
}

static ucs_status_t map(ucp_context_h ctx, void *p, size_t len,
                        ucp_mem_h *memh_out)
{
    ucp_mem_map_params_t mp = {.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS |
                                             UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = p,
                               .length = len};

    return ucp_mem_map(ctx, &mp, memh_out);
}

/* ------------------------------------------------------------------ */
/* Host                                                                */
/* ------------------------------------------------------------------ */

static ucs_status_t host_init(struct ucx_host *h, void *buf, size_t len)
{
    ucs_status_t st = new_context(&h->ctx);

    if (st == UCS_OK) {
        st = new_worker(h->ctx, &h->worker);
    }
    if (st == UCS_OK) {
        st = map(h->ctx, buf, len, &h->memh);
    }
    if (st == UCS_OK) {
        st = ucp_rkey_pack(h->ctx, h->memh, &h->rkey, &h->rkey_len);
    }
    if (st == UCS_OK) {
        st = ucp_worker_get_address(h->worker, &h->addr, &h->addr_len);
    }
    return st;
}

int ucx_host_start(void *buf, size_t len, struct ucx_host **host_out, char *err,
                   size_t errlen)
{
    struct ucx_host *h = calloc(1, sizeof(*h));
    ucs_status_t st = h != NULL ? host_init(h, buf, len) : UCS_ERR_NO_MEMORY;

    if (st != UCS_OK) {
        snprintf(err, errlen, "host: %s", ucs_status_string(st));
        ucx_host_stop(h);
        return -1;
    }
    *host_out = h;
    return 0;
}

void ucx_host_blobs(const struct ucx_host *h, const void **addr_out,
                    size_t *addr_len_out, const void **rkey_out,
                    size_t *rkey_len_out)
{
    *addr_out = h->addr;
    *addr_len_out = h->addr_len;
    *rkey_out = h->rkey;
    *rkey_len_out = h->rkey_len;
}

int ucx_host_progress(struct ucx_host *h)
{
    ucp_worker_progress(h->worker);
    return 0;
}

void ucx_host_stop(struct ucx_host *h)
{
    if (h == NULL) {
        return;
    }
    if (h->addr != NULL) {
        ucp_worker_release_address(h->worker, h->addr);
    }
    if (h->rkey != NULL) {
        ucp_rkey_buffer_release(h->rkey);
    }
    if (h->memh != NULL) {
        ucp_mem_unmap(h->ctx, h->memh);
    }
    if (h->worker != NULL) {
        ucp_worker_destroy(h->worker);
    }
    if (h->ctx != NULL) {
        ucp_cleanup(h->ctx);
    }
    free(h);
}

/* ------------------------------------------------------------------ */
/* Dpu side                                                            */
/* ------------------------------------------------------------------ */

static int wait_req(struct ucx_worker *u, ucs_status_ptr_t req)
{
    ucs_status_t st;

    if (req == NULL) {
        return 0; /* completed in the call */
    }
    if (UCS_PTR_IS_ERR(req)) {
        return ucx_fail("request", UCS_PTR_STATUS(req));
    }
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        ucp_worker_progress(u->worker);
    }
    ucp_request_free(req);
    return st == UCS_OK ? 0 : ucx_fail("request", st);
}

static ucs_status_ptr_t post(struct ucx_worker *u, int is_write,
                             const hmaf_seg_t *seg)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_MEMH,
                             .memh = is_write ? u->src_mh : u->dst_mh};

    return is_write ? ucp_put_nbx(u->ep, seg->local, seg->len, seg->remote_addr,
                                  u->rkey, &p)
                    : ucp_get_nbx(u->ep, seg->local, seg->len, seg->remote_addr,
                                  u->rkey, &p);
}

/* A put completes when its buffer may be reused, maybe before the bytes
 * reach the host: the flush makes a write complete as the others are. */
int ucx_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    ucp_request_param_t p = {.op_attr_mask = 0};
    int ret = wait_req(w->ucx, post(w->ucx, is_write, seg));

    if (ret == 0 && is_write) {
        ret = wait_req(w->ucx, ucp_ep_flush_nbx(w->ucx->ep, &p));
    }
    return ret;
}

/* Post every get, then wait for them all. */
int ucx_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    struct ucx_worker *u = w->ucx;
    int ret = 0;

    for (size_t i = 0; i < n; i++) {
        u->reqs[i] = post(u, 0, &segs[i]);
    }
    for (size_t i = 0; i < n; i++) {
        int r = wait_req(u, u->reqs[i]);
        ret = ret < 0 ? ret : r;
    }
    return ret;
}

/* A flushing close: the host's worker is progressing meanwhile (see
 * ucx_close). */
static void close_ep(struct ucx_worker *u)
{
    ucp_request_param_t p = {.op_attr_mask = 0};

    wait_req(u, ucp_ep_close_nbx(u->ep, &p));
}

static void worker_close(struct ucx_ctx *x, struct ucx_worker *u)
{
    if (u == NULL) {
        return;
    }
    if (u->rkey != NULL) {
        ucp_rkey_destroy(u->rkey);
    }
    if (u->ep != NULL) {
        close_ep(u);
    }
    if (u->dst_mh != NULL) {
        ucp_mem_unmap(x->ctx, u->dst_mh);
    }
    if (u->src_mh != NULL) {
        ucp_mem_unmap(x->ctx, u->src_mh);
    }
    if (u->worker != NULL) {
        ucp_worker_destroy(u->worker);
    }
    free(u);
}

/* Endpoints like the ucx engine's, when HMAF runs on it. */
static int peer_mode(const struct bench *b)
{
    return strcmp(b->engine, "ucx") == 0;
}

static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t st)
{
    (void)arg;
    (void)ep;
    fprintf(stderr, "hmaf-bench: ucx endpoint failed: %s\n",
            ucs_status_string(st));
}

static ucs_status_t ep_open(const struct bench *b, struct ucx_worker *u)
{
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS,
                          .address = b->host->ucx_addr};

    if (peer_mode(b)) {
        ep.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                         UCP_EP_PARAM_FIELD_ERR_HANDLER;
        ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
        ep.err_handler = (ucp_err_handler_t){.cb = on_ep_error};
    }
    return ucp_ep_create(u->worker, &ep, &u->ep);
}

static ucs_status_t worker_open(struct bench *b, struct worker *w)
{
    struct ucx_worker *u = calloc(1, sizeof(*u));
    ucs_status_t st =
        u != NULL ? new_worker(b->ucx->ctx, &u->worker) : UCS_ERR_NO_MEMORY;

    if (st == UCS_OK) {
        st = ep_open(b, u);
    }
    if (st == UCS_OK) {
        st = ucp_ep_rkey_unpack(u->ep, b->host->ucx_rkey, &u->rkey);
    }
    if (st == UCS_OK) {
        st = map(b->ucx->ctx, w->dst, XFER_MAX, &u->dst_mh);
    }
    if (st == UCS_OK) {
        st = map(b->ucx->ctx, w->src, XFER_MAX, &u->src_mh);
    }
    if (st != UCS_OK) {
        worker_close(b->ucx, u);
        return st;
    }
    w->ucx = u;
    return UCS_OK;
}

/* "sysv/memory posix/memory": the transports of the endpoint's lanes,
 * from ucp_ep_print_info(). */
static void describe_lanes(ucp_ep_h ep, char *out, size_t cap)
{
    char *text = NULL, *line, *save = NULL;
    size_t len = 0, used = 0;
    FILE *f = open_memstream(&text, &len);

    out[0] = '\0';
    if (f == NULL) {
        return;
    }
    ucp_ep_print_info(ep, f);
    fclose(f);
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char tl[64];
        const char *lane = strstr(line, "lane[");
        const char *colon = lane != NULL ? strchr(lane, ':') : NULL;
        if (colon != NULL && sscanf(colon + 1, " %*d:%63[^. ]", tl) == 1 &&
            used < cap) {
            used += (size_t)snprintf(out + used, cap - used, "%s%s",
                                     used > 0 ? " " : "", tl);
        }
    }
    free(text);
}

/* Does a get complete without the host's worker? Asked with the host's
 * progress thread stopped; it is started afterwards either way, so a get
 * left waiting completes. */
static int probe_one_sided(struct bench *b, struct ucx_worker *u,
                           int *one_sided_out)
{
    hmaf_seg_t seg = {.local = b->w[0].dst, .remote_addr = b->buf, .len = 8};
    ucs_status_ptr_t req = post(u, 0, &seg);
    uint64_t t0 = now_ns();

    *one_sided_out = 1;
    while (req != NULL && !UCS_PTR_IS_ERR(req) &&
           ucp_request_check_status(req) == UCS_INPROGRESS) {
        if (now_ns() - t0 > ONE_SIDED_PROBE_NS) {
            *one_sided_out = 0;
            break;
        }
        ucp_worker_progress(u->worker);
    }
    if (child_command(b->host, CMD_UCX_START) < 0) {
        return -1;
    }
    return wait_req(u, req);
}

static void describe(struct bench *b, int one_sided)
{
    char lanes[128];

    describe_lanes(b->w[0].ucx->ep, lanes, sizeof(lanes));
    snprintf(b->ucx_note, sizeof(b->ucx_note),
             "ucx %s, lanes: %s, %s; ucp_get/ucp_put on this memory %s",
             ucp_get_version_string(), lanes[0] != '\0' ? lanes : "?",
             peer_mode(b) ? "peer-failure endpoints as the engine's"
                          : "endpoints without error handling",
             one_sided ? "are one-sided"
                       : "need the host's worker (software emulation over "
                         "active messages): its progress thread spins "
                         "during ucx rounds");
}

static int open_all(struct bench *b)
{
    ucs_status_t st = UCS_OK;
    int one_sided = 1;

    for (unsigned i = 0; i < b->nworkers && st == UCS_OK; i++) {
        st = worker_open(b, &b->w[i]);
    }
    if (st != UCS_OK) {
        return ucx_fail("endpoint", st);
    }
    if (probe_one_sided(b, b->w[0].ucx, &one_sided) < 0) {
        return -1;
    }
    describe(b, one_sided);
    return 0;
}

int ucx_open(struct bench *b)
{
    ucs_status_t st;
    int ret;

    if (b->host->ucx_addr == NULL || b->host->ucx_rkey == NULL) {
        snprintf(b->ucx_note, sizeof(b->ucx_note), "ucx: not available (%s)",
                 b->host->ucx_error);
        return 0;
    }
    b->ucx = calloc(1, sizeof(*b->ucx));
    st = b->ucx != NULL ? new_context(&b->ucx->ctx) : UCS_ERR_NO_MEMORY;
    ret = st == UCS_OK ? open_all(b) : -1;
    /* The probe may have left the host's progress thread spinning. */
    if (child_command(b->host, CMD_UCX_STOP) < 0) {
        return -1;
    }
    if (ret < 0) {
        snprintf(b->ucx_note, sizeof(b->ucx_note),
                 "ucx: not available (dpu side: %s)",
                 st != UCS_OK ? ucs_status_string(st) : "see above");
        ucx_close(b);
    }
    return 0;
}

void ucx_close(struct bench *b)
{
    int spinning;

    if (b->ucx == NULL) {
        return;
    }
    spinning = child_command(b->host, CMD_UCX_START) == 0;
    for (unsigned i = 0; i < THREADS_MAX; i++) {
        worker_close(b->ucx, b->w[i].ucx);
        b->w[i].ucx = NULL;
    }
    if (spinning) {
        child_command(b->host, CMD_UCX_STOP);
    }
    if (b->ucx->ctx != NULL) {
        ucp_cleanup(b->ucx->ctx);
    }
    free(b->ucx);
    b->ucx = NULL;
}

#else /* !HMAF_BENCH_UCX */

int ucx_host_start(void *buf, size_t len, struct ucx_host **host_out, char *err,
                   size_t errlen)
{
    (void)buf;
    (void)len;
    *host_out = NULL;
    snprintf(err, errlen, "not installed");
    return -1;
}

void ucx_host_blobs(const struct ucx_host *h, const void **addr_out,
                    size_t *addr_len_out, const void **rkey_out,
                    size_t *rkey_len_out)
{
    (void)h;
    *addr_out = *rkey_out = NULL;
    *addr_len_out = *rkey_len_out = 0;
}

int ucx_host_progress(struct ucx_host *h)
{
    (void)h;
    return -1;
}

void ucx_host_stop(struct ucx_host *h)
{
    (void)h;
}

int ucx_open(struct bench *b)
{
    snprintf(b->ucx_note, sizeof(b->ucx_note),
             "ucx: not installed (built without libucx-dev)");
    return 0;
}

void ucx_close(struct bench *b)
{
    (void)b;
}

int ucx_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    (void)w;
    (void)is_write;
    (void)seg;
    return -1;
}

int ucx_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    (void)w;
    (void)segs;
    (void)n;
    return -1;
}

#endif /* HMAF_BENCH_UCX */
