/*
 * The doca engine's data path (dpu side): one DMA ctx, progress engine and
 * buf inventory per ep, and a window of nslots tasks.
 *
 * A transfer whose caller buffer is registered (doca_lreg.c: cached
 * registrations of long runs of caller memory) moves in place. Every other
 * one goes through a staging pool registered once per ep (one local
 * doca_mmap over nslots * slot_size bytes): writes copy into a slot before
 * the task is submitted, reads copy out of it when the task completes. A
 * PE per thread is future work (one lock per ep today).
 *
 * A batch may hold more transfers than there are free slots (several
 * threads share the window): what fits is submitted at post(), the rest is
 * queued in order and submitted by progress() as slots free up. Each
 * transfer ends in deng_finish(), which bumps batch->completed with release
 * order; after the last bump the batch belongs to its caller again and is
 * not touched.
 *
 * A DMA ctx may stop on its own after a fatal task error (DOCA moves it to
 * STOPPING; tasks still in flight come back failed). The state callback
 * marks the ep failed, and from then on every transfer — those in flight,
 * queued or posted later — fails with HMAF_ECONNRESET, so the session ends
 * at once instead of every call finding a stopped ctx (BAD_STATE, which
 * is HMAF_EBUSY) for good. Completions may come in any order and over
 * several doca_pe_progress calls: each task reports to its own slot.
 */
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#include "engine/doca/doca_int.h"
#include "util/compiler.h"
#include "util/log.h"

static struct deng_ctx *deng_ctx_of(struct deng_ep *ep)
{
    return hmaf__container_of(ep->base.ctx, struct deng_ctx, base);
}

/* One transfer of batch is done. Not a byte of batch may be read after
 * this: its caller may be watching completed. */
static void deng_finish(struct hmaf_xfer_batch *batch, int status)
{
    if (status < 0 && batch->status == 0) {
        batch->status = status;
    }
    __atomic_store_n(&batch->completed, batch->completed + 1, __ATOMIC_RELEASE);
}

static void deng_release_slot(struct deng_ep *ep, struct deng_slot *s)
{
    if (s->task != NULL) {
        doca_task_free(doca_dma_task_memcpy_as_task(s->task));
    }
    if (s->src != NULL) {
        doca_buf_dec_refcount(s->src, NULL);
    }
    if (s->dst != NULL) {
        doca_buf_dec_refcount(s->dst, NULL);
    }
    if (s->lreg != NULL) {
        hmaf__doca_lreg_put(ep, s->lreg);
    }
    s->lreg = NULL;
    s->task = NULL;
    s->src = s->dst = NULL;
    s->batch = NULL;
    s->next_free = ep->free_slots;
    ep->free_slots = s;
}

/* A transfer's status: once the ctx has failed, every error is the
 * session's end, whatever DOCA said of the task (flushed, or the fatal
 * error itself). */
static int deng_status(const struct deng_ep *ep, doca_error_t err)
{
    if (err == DOCA_SUCCESS) {
        return 0;
    }
    return ep->failed ? HMAF_ECONNRESET : hmaf__doca_status_to_hmaf(err);
}

/* Runs inside doca_pe_progress, under ep->lock. */
static void deng_complete(struct deng_slot *s, doca_error_t err)
{
    struct deng_ep *ep = s->ep;
    struct hmaf_xfer_batch *batch = s->batch;

    if (err == DOCA_SUCCESS && s->op == HMAF_XFER_READ && s->lreg == NULL) {
        memcpy(s->local, s->stage, s->len);
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_debug("doca dma %s of %zu bytes: %s",
                        s->op == HMAF_XFER_READ ? "read" : "write", s->len,
                        doca_error_get_name(err));
    }
    deng_release_slot(ep, s);
    ep->ncompleted++;
    deng_finish(batch, deng_status(ep, err));
}

/* Runs inside doca_pe_progress (or ctx start and stop), under ep->lock.
 * Leaving RUNNING unasked is DOCA's answer to a fatal task error. */
static void deng_state_changed(const union doca_data user_data,
                               struct doca_ctx *ctx,
                               enum doca_ctx_states prev,
                               enum doca_ctx_states next)
{
    struct deng_ep *ep = user_data.ptr;

    (void)ctx;
    if (prev == DOCA_CTX_STATE_RUNNING && next != DOCA_CTX_STATE_RUNNING &&
        !ep->stopping && !ep->failed) {
        ep->failed = 1;
        hmaf__log_error("doca dma context stopped after a fatal task error: "
                        "the session ends");
    }
}

static void deng_task_done(struct doca_dma_task_memcpy *task,
                           union doca_data task_user_data,
                           union doca_data ctx_user_data)
{
    (void)task, (void)ctx_user_data;
    deng_complete(task_user_data.ptr, DOCA_SUCCESS);
}

static void deng_task_failed(struct doca_dma_task_memcpy *task,
                             union doca_data task_user_data,
                             union doca_data ctx_user_data)
{
    doca_error_t err = doca_task_get_status(doca_dma_task_memcpy_as_task(task));

    (void)ctx_user_data;
    deng_complete(task_user_data.ptr,
                  err == DOCA_SUCCESS ? DOCA_ERROR_UNKNOWN : err);
}

/* Bufs and task for transfer i of batch in slot s; the remote side is
 * addressed by host virtual address inside the imported mmap, the local
 * side is the caller's buffer in place or the slot's staging bytes. */
static doca_error_t deng_prepare(struct deng_ep *ep, struct deng_slot *s,
                                 const struct hmaf_xfer_batch *batch,
                                 uint32_t i)
{
    const struct hmaf_xfer *x = &batch->xfers[i];
    struct deng_rmem *r = hmaf__container_of(x->rmem, struct deng_rmem, base);
    void *remote = (void *)(uintptr_t)x->remote_addr;
    struct doca_mmap *local_mmap = ep->local_mmap;
    void *local = s->stage;
    union doca_data ud = {.ptr = s};
    doca_error_t err;

    s->lreg = hmaf__doca_lreg_get(ep, batch, i);
    if (s->lreg != NULL) {
        local_mmap = s->lreg->mmap;
        local = x->local;
    } else if (s->op == HMAF_XFER_WRITE) {
        memcpy(s->stage, x->local, x->len);
    }
    if (s->op == HMAF_XFER_WRITE) {
        err = doca_buf_inventory_buf_get_by_data(ep->inv, local_mmap, local,
                                                 x->len, &s->src);
        if (err == DOCA_SUCCESS) {
            err = doca_buf_inventory_buf_get_by_addr(ep->inv, r->mmap, remote,
                                                     x->len, &s->dst);
        }
    } else {
        err = doca_buf_inventory_buf_get_by_data(ep->inv, r->mmap, remote,
                                                 x->len, &s->src);
        if (err == DOCA_SUCCESS) {
            err = doca_buf_inventory_buf_get_by_addr(ep->inv, local_mmap,
                                                     local, x->len, &s->dst);
        }
    }
    if (err == DOCA_SUCCESS) {
        err = doca_dma_task_memcpy_alloc_init(ep->dma, s->src, s->dst, ud,
                                              &s->task);
    }
    return err;
}

/* Submit transfer i of batch in a free slot; a refusal finishes it at
 * once. Returns the transfer's status. */
static int deng_start(struct deng_ep *ep, struct hmaf_xfer_batch *batch,
                      uint32_t i)
{
    const struct hmaf_xfer *x = &batch->xfers[i];
    struct deng_slot *s = ep->free_slots;
    doca_error_t err;
    int ret;

    ep->free_slots = s->next_free;
    s->batch = batch;
    s->op = batch->op;
    s->local = x->local;
    s->len = x->len;
    if (ep->failed) {
        err = DOCA_ERROR_BAD_STATE; /* nothing runs on a stopped ctx */
    } else if (x->len > deng_ctx_of(ep)->slot_size) {
        err = DOCA_ERROR_TOO_BIG;
    } else {
        err = deng_prepare(ep, s, batch, i);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_task_submit(doca_dma_task_memcpy_as_task(s->task));
    }
    if (err == DOCA_SUCCESS) {
        return 0;
    }
    hmaf__log_debug("doca dma submit of %zu bytes: %s", x->len,
                    doca_error_get_name(err));
    ret = deng_status(ep, err);
    deng_release_slot(ep, s);
    ep->ncompleted++;
    deng_finish(batch, ret);
    return ret;
}

/* Submit batch's transfers from *next on while slots are free. After a
 * failure the rest is finished unsent: the batch has failed anyway.
 * Returns 1 when every transfer has been handed over. */
static int deng_submit_from(struct deng_ep *ep, struct hmaf_xfer_batch *batch,
                            uint32_t *next)
{
    uint32_t count = batch->count; /* batch may be gone after the last */

    while (*next < count && ep->free_slots != NULL) {
        uint32_t i = (*next)++;

        if (batch->status < 0) {
            uint32_t left = count - i;
            *next = count;
            __atomic_store_n(&batch->completed, batch->completed + left,
                             __ATOMIC_RELEASE);
            break;
        }
        deng_start(ep, batch, i);
    }
    return *next == count;
}

/* Queued batches, in order, as far as the window allows. */
static void deng_pump(struct deng_ep *ep)
{
    while (ep->pending_head != NULL && ep->free_slots != NULL) {
        struct deng_pending *p = ep->pending_head;

        if (!deng_submit_from(ep, p->batch, &p->next_xfer)) {
            break;
        }
        ep->pending_head = p->next;
        if (ep->pending_head == NULL) {
            ep->pending_tail = NULL;
        }
        free(p);
    }
}

static uint32_t deng_free_count(const struct deng_ep *ep, uint32_t want)
{
    uint32_t n = 0;

    for (const struct deng_slot *s = ep->free_slots; s != NULL && n < want;
         s = s->next_free) {
        n++;
    }
    return n;
}

int hmaf__doca_post(struct hmaf_engine_ep *base, struct hmaf_xfer_batch *batch)
{
    struct deng_ep *ep = hmaf__container_of(base, struct deng_ep, base);
    uint32_t next = 0;

    if (batch->count == 0) {
        return 0;
    }
    pthread_mutex_lock(&ep->lock);
    ep->lregs.skip_len = 0;
    /* Behind earlier batches, or larger than the free window: queue it
     * (before submitting anything, so a failed malloc changes nothing). */
    if (ep->pending_head != NULL ||
        deng_free_count(ep, batch->count) < batch->count) {
        struct deng_pending *p = malloc(sizeof(*p));

        if (p == NULL) {
            pthread_mutex_unlock(&ep->lock);
            return HMAF_ENOMEM;
        }
        *p = (struct deng_pending){.batch = batch};
        if (ep->pending_tail != NULL) {
            ep->pending_tail->next = p;
        } else {
            ep->pending_head = p;
        }
        ep->pending_tail = p;
        deng_pump(ep);
    } else {
        deng_submit_from(ep, batch, &next);
    }
    pthread_mutex_unlock(&ep->lock);
    return 0;
}

int hmaf__doca_progress(struct hmaf_engine_ep *base)
{
    struct deng_ep *ep = hmaf__container_of(base, struct deng_ep, base);
    int n;

    pthread_mutex_lock(&ep->lock);
    ep->ncompleted = 0;
    while (doca_pe_progress(ep->pe)) {
        /* each call completes what is ready; drain */
    }
    deng_pump(ep);
    n = (int)ep->ncompleted;
    pthread_mutex_unlock(&ep->lock);
    return n;
}

/* ---- open and close ---- */

static doca_error_t deng_open_dma(struct deng_ep *ep, uint32_t nslots)
{
    struct doca_ctx *dctx;
    doca_error_t err = doca_pe_create(&ep->pe);

    if (err == DOCA_SUCCESS) {
        err = doca_dma_create(deng_ctx_of(ep)->dev, &ep->dma);
    }
    if (err != DOCA_SUCCESS) {
        return err;
    }
    dctx = doca_dma_as_ctx(ep->dma);
    err = doca_dma_task_memcpy_set_conf(ep->dma, deng_task_done,
                                        deng_task_failed, nslots);
    if (err == DOCA_SUCCESS) {
        err = doca_ctx_set_user_data(dctx, (union doca_data){.ptr = ep});
    }
    if (err == DOCA_SUCCESS) {
        err = doca_ctx_set_state_changed_cb(dctx, deng_state_changed);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_pe_connect_ctx(ep->pe, dctx);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_ctx_start(dctx);
    }
    return err;
}

/* Staging pool, its mmap, and two buf descriptors per task. */
static doca_error_t deng_open_staging(struct deng_ep *ep, uint32_t nslots,
                                      size_t slot_size)
{
    size_t bytes = (size_t)nslots * slot_size;
    doca_error_t err;

    ep->pool = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
    ep->slots = calloc(nslots, sizeof(*ep->slots));
    if (ep->pool == NULL || ep->slots == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    for (uint32_t i = nslots; i-- > 0;) {
        ep->slots[i] = (struct deng_slot){.ep = ep,
                                          .stage = ep->pool + i * slot_size,
                                          .next_free = ep->free_slots};
        ep->free_slots = &ep->slots[i];
    }
    err = doca_buf_inventory_create(2 * (size_t)nslots, &ep->inv);
    if (err == DOCA_SUCCESS) {
        err = doca_buf_inventory_start(ep->inv);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_create(&ep->local_mmap);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_set_memrange(ep->local_mmap, ep->pool, bytes);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_set_permissions(ep->local_mmap,
                                        DOCA_ACCESS_FLAG_LOCAL_READ_WRITE);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_add_dev(ep->local_mmap, deng_ctx_of(ep)->dev);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_start(ep->local_mmap);
    }
    return err;
}

int hmaf__doca_ep_open(struct deng_ep *ep)
{
    const struct deng_ctx *c = deng_ctx_of(ep);
    doca_error_t err;

    if (pthread_mutex_init(&ep->lock, NULL) != 0) {
        return HMAF_ENOMEM;
    }
    ep->has_lock = 1;
    err = deng_open_dma(ep, c->nslots);
    if (err == DOCA_SUCCESS) {
        err = deng_open_staging(ep, c->nslots, c->slot_size);
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_error("doca dma setup: %s", doca_error_get_name(err));
        hmaf__doca_ep_close(ep);
        return hmaf__doca_status_to_hmaf(err);
    }
    return 0;
}

/* Tasks still in flight (a caller gave up on its batch) complete or are
 * flushed while the ctx stops: they report to a batch of the ep's own and
 * copy nothing out of staging, since their callers' memory may be gone.
 * (A task moving in place may still write its caller's buffer until it is
 * flushed: the core never closes an ep under a running call.) */
static void deng_stop_dma(struct deng_ep *ep)
{
    struct doca_ctx *dctx = doca_dma_as_ctx(ep->dma);
    enum doca_ctx_states state = DOCA_CTX_STATE_IDLE;
    doca_error_t err;

    ep->orphans.count = UINT32_MAX;
    for (uint32_t i = 0; ep->slots != NULL && i < deng_ctx_of(ep)->nslots;
         i++) {
        if (ep->slots[i].batch != NULL) {
            ep->slots[i].batch = &ep->orphans;
            ep->slots[i].op = HMAF_XFER_WRITE;
        }
    }
    ep->stopping = 1;
    err = doca_ctx_stop(dctx);
    if (err != DOCA_SUCCESS && err != DOCA_ERROR_IN_PROGRESS &&
        err != DOCA_ERROR_BAD_STATE) {
        hmaf__log_warn("doca_ctx_stop: %s", doca_error_get_name(err));
    }
    while (doca_ctx_get_state(dctx, &state) == DOCA_SUCCESS &&
           state != DOCA_CTX_STATE_IDLE) {
        doca_pe_progress(ep->pe);
    }
}

static void deng_warn(const char *what, doca_error_t err)
{
    if (err != DOCA_SUCCESS) {
        hmaf__log_warn("%s: %s", what, doca_error_get_name(err));
    }
}

/* DOCA's order: tasks and bufs (freed as they complete), ctx stop until
 * idle, DMA ctx, mmaps, inventory, PE; the device goes with the ctx.
 * Also undoes a partial open. */
void hmaf__doca_ep_close(struct deng_ep *ep)
{
    while (ep->pending_head != NULL) {
        struct deng_pending *p = ep->pending_head;
        ep->pending_head = p->next;
        free(p);
    }
    ep->pending_tail = NULL;
    if (ep->dma != NULL) {
        deng_stop_dma(ep);
        deng_warn("doca_dma_destroy", doca_dma_destroy(ep->dma));
    }
    hmaf__doca_lreg_fini(ep);
    if (ep->local_mmap != NULL) {
        deng_warn("doca_mmap_destroy", doca_mmap_destroy(ep->local_mmap));
    }
    if (ep->inv != NULL) {
        doca_buf_inventory_stop(ep->inv);
        deng_warn("doca_buf_inventory_destroy",
                  doca_buf_inventory_destroy(ep->inv));
    }
    if (ep->pe != NULL) {
        deng_warn("doca_pe_destroy", doca_pe_destroy(ep->pe));
    }
    free(ep->slots);
    free(ep->pool);
    if (ep->has_lock) {
        pthread_mutex_destroy(&ep->lock);
    }
}
