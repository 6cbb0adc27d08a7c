/*
 * The doca engine's data path (dpu side): lanes of one DMA ctx, progress
 * engine, buf inventory and window of nslots tasks each (doca_int.h,
 * struct deng_lane). A thread posts through lane 0 until it finds another
 * thread there, and then through a lane of its own (deng_lock_lane):
 * threads sharing a session do not wait for each other's submissions,
 * completions or staged copies.
 *
 * A transfer whose caller buffer is registered (doca_lreg.c: cached
 * registrations of long runs of caller memory, shared by the ep's lanes)
 * moves in place. Every other one goes through the lane's staging pool,
 * registered once (one local doca_mmap over nslots * slot_size bytes):
 * writes copy into a slot before the task is submitted, reads copy out of
 * it when the task completes.
 *
 * A batch may hold more transfers than there are free slots: what fits is
 * submitted at post(), the rest is queued in order and submitted by
 * progress() as slots free up. Each transfer ends in deng_finish(), which
 * bumps batch->completed with release order; after the last bump the batch
 * belongs to its caller again and is not touched. progress() drives the
 * calling thread's lane, and the other lanes with work when its own has
 * none, without waiting for them: a batch may be waited for by a thread
 * other than the one that posted it (the readers' drain, a request flushed
 * elsewhere).
 *
 * A DMA ctx may stop on its own after a fatal task error (DOCA moves it to
 * STOPPING; tasks still in flight come back failed). The state callback
 * marks the ep failed, and from then on every transfer on every lane —
 * those in flight, queued or posted later — fails with HMAF_ECONNRESET, so
 * the session ends at once instead of every call finding a stopped ctx
 * (BAD_STATE, which is HMAF_EBUSY) for good. Completions may come in any
 * order and over several doca_pe_progress calls: each task reports to its
 * own slot.
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

static int deng_failed(const struct deng_ep *ep)
{
    return __atomic_load_n(&ep->failed, __ATOMIC_ACQUIRE);
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

/* busy is read without the lock by other threads' progress(). */
static void deng_busy_add(struct deng_lane *l, int32_t n)
{
    __atomic_store_n(&l->busy, l->busy + (uint32_t)n, __ATOMIC_RELAXED);
}

/* A buf on mmap; lock, unless NULL, guards an mmap other lanes share. */
static doca_error_t deng_buf_get(struct doca_buf_inventory *inv,
                                 struct doca_mmap *mmap, pthread_mutex_t *lock,
                                 void *addr, size_t len, int with_data,
                                 struct doca_buf **out)
{
    doca_error_t err;

    if (lock != NULL) {
        pthread_mutex_lock(lock);
    }
    err = with_data
              ? doca_buf_inventory_buf_get_by_data(inv, mmap, addr, len, out)
              : doca_buf_inventory_buf_get_by_addr(inv, mmap, addr, len, out);
    if (lock != NULL) {
        pthread_mutex_unlock(lock);
    }
    return err;
}

static void deng_buf_put(struct doca_buf *buf, pthread_mutex_t *lock)
{
    if (buf == NULL) {
        return;
    }
    if (lock != NULL) {
        pthread_mutex_lock(lock);
    }
    doca_buf_dec_refcount(buf, NULL);
    if (lock != NULL) {
        pthread_mutex_unlock(lock);
    }
}

/* The slot's task and bufs back to DOCA, its registration to the cache. */
static void deng_clear_slot(struct deng_lane *l, struct deng_slot *s)
{
    if (s->task != NULL) {
        doca_task_free(doca_dma_task_memcpy_as_task(s->task));
    }
    deng_buf_put(s->src, s->src_lock);
    deng_buf_put(s->dst, s->dst_lock);
    if (s->lreg != NULL) {
        hmaf__doca_lreg_put(l->ep, s->lreg);
    }
    s->lreg = NULL;
    s->task = NULL;
    s->src = s->dst = NULL;
}

static void deng_free_slot(struct deng_lane *l, struct deng_slot *s)
{
    s->batch = NULL;
    s->head = NULL;
    s->next_free = l->free_slots;
    l->free_slots = s;
    deng_busy_add(l, -1);
}

static struct deng_slot *deng_take_slot(struct deng_lane *l,
                                        struct hmaf_xfer_batch *batch)
{
    struct deng_slot *s = l->free_slots;

    l->free_slots = s->next_free;
    deng_busy_add(l, 1);
    s->batch = batch;
    s->op = batch->op;
    s->nparts = 0;
    return s;
}

/* A transfer's status: once the ctx has failed, every error is the
 * session's end, whatever DOCA said of the task (flushed, or the fatal
 * error itself). */
static int deng_status(const struct deng_ep *ep, doca_error_t err)
{
    if (err == DOCA_SUCCESS) {
        return 0;
    }
    return deng_failed(ep) ? HMAF_ECONNRESET : hmaf__doca_status_to_hmaf(err);
}

/* n pieces of head's transfer are over (done, failed, or never sent):
 * after its last, the transfer is. */
static void deng_pieces_done(struct deng_lane *l, struct deng_slot *head,
                             uint32_t n, int status)
{
    struct hmaf_xfer_batch *batch = head->batch;

    if (status < 0 && head->status == 0) {
        head->status = status;
    }
    head->pieces_left -= n;
    if (head->pieces_left > 0) {
        return;
    }
    status = head->status;
    n = head->nparts > 1 ? head->nparts : 1; /* a list task's transfers */
    deng_free_slot(l, head);
    l->ncompleted += n;
    while (n-- > 0) {
        deng_finish(batch, status);
    }
}

/* A piece's task is over: its slot is free, unless it heads the transfer
 * and other pieces still run. */
static void deng_piece_over(struct deng_lane *l, struct deng_slot *s,
                            int status)
{
    struct deng_slot *head = s->head;

    deng_clear_slot(l, s);
    if (s != head) {
        deng_free_slot(l, s);
    }
    deng_pieces_done(l, head, 1, status);
}

/* A staged read's bytes to their callers. */
static void deng_copy_out(const struct deng_slot *s)
{
    const uint8_t *from = s->stage;

    if (s->nparts <= 1) {
        memcpy(s->local, from, s->len);
        return;
    }
    for (uint32_t j = 0; j < s->nparts; j++) {
        memcpy(s->parts[j].local, from, s->parts[j].len);
        from += s->parts[j].len;
    }
}

/* Runs inside doca_pe_progress, under the lane's lock. */
static void deng_complete(struct deng_slot *s, doca_error_t err)
{
    if (err == DOCA_SUCCESS && s->op == HMAF_XFER_READ && s->lreg == NULL) {
        deng_copy_out(s);
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_debug("doca dma %s of %zu bytes: %s",
                        s->op == HMAF_XFER_READ ? "read" : "write", s->len,
                        doca_error_get_name(err));
    }
    deng_piece_over(s->lane, s, deng_status(s->lane->ep, err));
}

/* Runs inside doca_pe_progress (or ctx start and stop), under the lane's
 * lock. Leaving RUNNING unasked is DOCA's answer to a fatal task error. */
static void deng_state_changed(const union doca_data user_data,
                               struct doca_ctx *ctx,
                               enum doca_ctx_states prev,
                               enum doca_ctx_states next)
{
    struct deng_lane *l = user_data.ptr;

    (void)ctx;
    if (prev == DOCA_CTX_STATE_RUNNING && next != DOCA_CTX_STATE_RUNNING &&
        !l->stopping && !deng_failed(l->ep)) {
        __atomic_store_n(&l->ep->failed, 1, __ATOMIC_RELEASE);
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

/* Bufs and task for a piece of transfer x in slot s (s->local, s->len:
 * the caller's bytes): the remote side is addressed by host virtual
 * address inside the imported mmap, the local side is the caller's buffer
 * in place (s->lreg) or the slot's staging bytes. */
static doca_error_t deng_prepare(struct deng_lane *l, struct deng_slot *s,
                                 const struct hmaf_xfer *x, uint64_t off)
{
    struct deng_rmem *r = hmaf__container_of(x->rmem, struct deng_rmem, base);
    void *remote = (void *)(uintptr_t)(x->remote_addr + off);
    struct doca_mmap *local_mmap = l->local_mmap;
    void *local = s->stage;
    union doca_data ud = {.ptr = s};
    pthread_mutex_t *local_lock = NULL;
    int write = s->op == HMAF_XFER_WRITE;
    doca_error_t err;

    if (s->lreg != NULL) {
        local_mmap = s->lreg->mmap;
        local = s->local;
        local_lock = &l->ep->reg_lock; /* the ep's registrations */
    } else if (write) {
        memcpy(s->stage, s->local, s->len);
    }
    /* src carries the data, dst only the room for it */
    s->src_lock = write ? local_lock : &r->lock;
    s->dst_lock = write ? &r->lock : local_lock;
    err = deng_buf_get(l->inv, write ? local_mmap : r->mmap, s->src_lock,
                       write ? local : remote, s->len, 1, &s->src);
    if (err == DOCA_SUCCESS) {
        err = deng_buf_get(l->inv, write ? r->mmap : local_mmap, s->dst_lock,
                           write ? remote : local, s->len, 0, &s->dst);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_dma_task_memcpy_alloc_init(l->dma, s->src, s->dst, ud,
                                              &s->task);
    }
    return err;
}

/* The first piece of transfer i: in place, the whole transfer in one task
 * (its caller memory registered, doca_lreg.c); staged, slot_size bytes of
 * it, the head of ceil(len / slot_size) pieces. */
static void deng_first_piece(struct deng_lane *l, struct deng_slot *s,
                             const struct hmaf_xfer_batch *batch, uint32_t i)
{
    const struct deng_ctx *c = deng_ctx_of(l->ep);
    uint64_t len = batch->xfers[i].len;

    s->head = s;
    s->status = 0;
    s->lreg = deng_failed(l->ep) || len > c->max_task
                  ? NULL
                  : hmaf__doca_lreg_get(l->ep, &l->skip, batch, i);
    s->pieces_left = s->lreg != NULL
                         ? 1
                         : (uint32_t)((len + c->slot_size - 1) / c->slot_size);
}

/* Submit the piece of the transfer under cur in a free slot, and move cur
 * on; a refusal ends the piece at once, failed. */
static void deng_start(struct deng_lane *l, struct hmaf_xfer_batch *batch,
                       struct deng_cursor *cur)
{
    const struct hmaf_xfer *x = &batch->xfers[cur->next];
    struct deng_slot *s = deng_take_slot(l, batch);
    doca_error_t err = DOCA_SUCCESS;

    if (cur->off == 0) {
        deng_first_piece(l, s, batch, cur->next);
        cur->head = s;
    }
    s->head = cur->head;
    s->local = (uint8_t *)x->local + cur->off;
    s->len = s->lreg != NULL ? x->len
                             : HMAF_MIN(x->len - cur->off,
                                        deng_ctx_of(l->ep)->slot_size);
    if (deng_failed(l->ep)) {
        err = DOCA_ERROR_BAD_STATE; /* nothing runs on a stopped ctx */
    } else if (x->len > deng_ctx_of(l->ep)->max_task) {
        err = DOCA_ERROR_TOO_BIG;
    }
    if (err == DOCA_SUCCESS) {
        err = deng_prepare(l, s, x, cur->off);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_task_submit(doca_dma_task_memcpy_as_task(s->task));
    }
    cur->off += s->len;
    if (cur->off == x->len) {
        cur->next++;
        cur->off = 0;
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_debug("doca dma submit of %zu bytes: %s", s->len,
                        doca_error_get_name(err));
        deng_piece_over(l, s, deng_status(l->ep, err));
    }
}

/* ---- list tasks: small transfers on one import, one task ---- */

/* How many transfers from i on one list task can carry: small, on the
 * same import, together within a slot; 1 or less: no list. */
static uint32_t deng_list_len(const struct deng_lane *l,
                              const struct hmaf_xfer_batch *batch, uint32_t i)
{
    const struct deng_ctx *c = deng_ctx_of(l->ep);
    const struct hmaf_xfer *x = &batch->xfers[i];
    size_t total = 0;
    uint32_t k = 0;

    while (k < c->list_max && i + k < batch->count &&
           x[k].rmem == x[0].rmem && x[k].len <= DENG_LIST_ITEM_MAX &&
           total + x[k].len <= c->slot_size) {
        total += x[k].len;
        k++;
    }
    return k;
}

/* The host side of k transfers as one list of bufs, chained back to
 * front (each doca_buf_chain_list then walks a list of one), under the
 * import's lock; on failure every buf got is returned. */
static doca_error_t deng_host_list(struct deng_lane *l, struct deng_rmem *r,
                                   const struct hmaf_xfer *x, uint32_t k,
                                   int with_data, struct doca_buf **out)
{
    struct doca_buf *head = NULL, *b;
    doca_error_t err = DOCA_SUCCESS;

    pthread_mutex_lock(&r->lock);
    for (uint32_t j = k; j-- > 0 && err == DOCA_SUCCESS;) {
        void *addr = (void *)(uintptr_t)x[j].remote_addr;
        err = with_data ? doca_buf_inventory_buf_get_by_data(
                              l->inv, r->mmap, addr, x[j].len, &b)
                        : doca_buf_inventory_buf_get_by_addr(
                              l->inv, r->mmap, addr, x[j].len, &b);
        if (err == DOCA_SUCCESS && head != NULL) {
            err = doca_buf_chain_list(b, head);
            if (err != DOCA_SUCCESS) {
                doca_buf_dec_refcount(b, NULL);
            }
        }
        if (err == DOCA_SUCCESS) {
            head = b;
        }
    }
    if (err != DOCA_SUCCESS && head != NULL) {
        doca_buf_dec_refcount(head, NULL); /* the whole list */
        head = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    *out = head;
    return err;
}

/* A list task over the k transfers at x: the host side a list, the local
 * side one staging slot holding their bytes one after another. */
static doca_error_t deng_prepare_list(struct deng_lane *l, struct deng_slot *s,
                                      const struct hmaf_xfer *x)
{
    struct deng_rmem *r = hmaf__container_of(x->rmem, struct deng_rmem, base);
    union doca_data ud = {.ptr = s};
    int write = s->op == HMAF_XFER_WRITE;
    doca_error_t err;

    if (write) {
        uint8_t *to = s->stage;
        for (uint32_t j = 0; j < s->nparts; j++) {
            memcpy(to, s->parts[j].local, s->parts[j].len);
            to += s->parts[j].len;
        }
        err = deng_buf_get(l->inv, l->local_mmap, NULL, s->stage, s->len, 1,
                           &s->src);
        if (err == DOCA_SUCCESS) {
            err = deng_host_list(l, r, x, s->nparts, 0, &s->dst);
        }
    } else {
        err = deng_host_list(l, r, x, s->nparts, 1, &s->src);
        if (err == DOCA_SUCCESS) {
            err = deng_buf_get(l->inv, l->local_mmap, NULL, s->stage, s->len,
                               0, &s->dst);
        }
    }
    s->src_lock = write ? NULL : &r->lock;
    s->dst_lock = write ? &r->lock : NULL;
    if (err == DOCA_SUCCESS) {
        err = doca_dma_task_memcpy_alloc_init(l->dma, s->src, s->dst, ud,
                                              &s->task);
    }
    return err;
}

/* Submit the k transfers under cur as one list task, and move cur past
 * them; a refusal ends them at once, failed. */
static void deng_start_list(struct deng_lane *l, struct hmaf_xfer_batch *batch,
                            struct deng_cursor *cur, uint32_t k)
{
    const struct hmaf_xfer *x = &batch->xfers[cur->next];
    struct deng_slot *s = deng_take_slot(l, batch);
    doca_error_t err;

    *s = (struct deng_slot){.lane = s->lane, .stage = s->stage,
                            .batch = batch, .op = batch->op, .head = s,
                            .pieces_left = 1, .nparts = k};
    for (uint32_t j = 0; j < k; j++) {
        s->parts[j] = (struct deng_part){x[j].local, x[j].len};
        s->len += x[j].len;
    }
    cur->next += k;
    err = deng_failed(l->ep) ? DOCA_ERROR_BAD_STATE
                             : deng_prepare_list(l, s, x);
    if (err == DOCA_SUCCESS) {
        err = doca_task_submit(doca_dma_task_memcpy_as_task(s->task));
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_debug("doca dma list of %u transfers: %s", k,
                        doca_error_get_name(err));
        deng_piece_over(l, s, deng_status(l->ep, err));
    }
}

/* Pieces of head's transfer not sent: over, failed, as the batch is. */
static void deng_drop_rest(struct deng_lane *l,
                           const struct hmaf_xfer_batch *batch,
                           struct deng_cursor *cur)
{
    uint64_t left = batch->xfers[cur->next].len - cur->off;
    size_t slot = deng_ctx_of(l->ep)->slot_size;

    cur->next++;
    cur->off = 0;
    deng_pieces_done(l, cur->head, (uint32_t)((left + slot - 1) / slot),
                     batch->status);
}

/* Submit batch's pieces from cur on while slots are free. After a failure
 * the rest is finished unsent: the batch has failed anyway. Returns 1 when
 * every transfer has been handed over. */
static int deng_submit_from(struct deng_lane *l, struct hmaf_xfer_batch *batch,
                            struct deng_cursor *cur)
{
    uint32_t count = batch->count; /* batch may be gone after the last */

    uint32_t k;

    while (cur->next < count && l->free_slots != NULL) {
        if (batch->status < 0 && cur->off > 0) {
            deng_drop_rest(l, batch, cur);
        } else if (batch->status < 0) {
            uint32_t left = count - cur->next;
            cur->next = count;
            __atomic_store_n(&batch->completed, batch->completed + left,
                             __ATOMIC_RELEASE);
        } else if (cur->off == 0 && deng_ctx_of(l->ep)->list_max > 1 &&
                   (k = deng_list_len(l, batch, cur->next)) > 1) {
            deng_start_list(l, batch, cur, k);
        } else {
            deng_start(l, batch, cur);
        }
    }
    return cur->next == count;
}

/* Queued batches, in order, as far as the window allows. */
static void deng_pump(struct deng_lane *l)
{
    while (l->pending_head != NULL && l->free_slots != NULL) {
        struct deng_pending *p = l->pending_head;

        if (!deng_submit_from(l, p->batch, &p->cur)) {
            break;
        }
        l->pending_head = p->next;
        if (l->pending_head == NULL) {
            l->pending_tail = NULL;
        }
        deng_busy_add(l, -1);
        free(p);
    }
}

/* Do batch's pieces (at most: a transfer in place takes one slot) fit in
 * the free window? */
static int deng_fits(const struct deng_lane *l,
                     const struct hmaf_xfer_batch *batch)
{
    size_t slot = deng_ctx_of(l->ep)->slot_size;
    const struct deng_slot *s = l->free_slots;
    uint64_t want = 0;

    for (uint32_t i = 0; i < batch->count; i++) {
        want += (batch->xfers[i].len + slot - 1) / slot;
    }
    for (; s != NULL && want > 0; s = s->next_free) {
        want--;
    }
    return want == 0;
}

/* ---- lanes ---- */

static doca_error_t deng_open_lane(struct deng_ep *ep, struct deng_lane **out);
static void deng_close_lane(struct deng_lane *l);

/* The lane a thread last used on each of a few eps, by ep id (never
 * reused, so an entry of a closed ep only misses). */
#define DENG_THREAD_EPS 4
static _Thread_local struct {
    uint64_t ep_id;
    struct deng_lane *lane;
} deng_thread_lanes[DENG_THREAD_EPS];
static _Thread_local uint32_t deng_thread_next;

static uint64_t deng_next_ep_id;

/* Lane i of ep, made on first use; lane 0 when it cannot be made. */
static struct deng_lane *deng_lane_at(struct deng_ep *ep, uint32_t i)
{
    struct deng_lane *l = __atomic_load_n(&ep->lanes[i], __ATOMIC_ACQUIRE);
    doca_error_t err = DOCA_SUCCESS;

    if (l != NULL) {
        return l;
    }
    pthread_mutex_lock(&ep->lanes_lock);
    l = ep->lanes[i];
    if (l == NULL) {
        err = deng_open_lane(ep, &l);
        if (err == DOCA_SUCCESS) {
            __atomic_store_n(&ep->lanes[i], l, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&ep->lanes_lock);
    if (err != DOCA_SUCCESS) {
        hmaf__log_warn("doca: another dma lane: %s; threads share one",
                       doca_error_get_name(err));
        return ep->lanes[0];
    }
    return l;
}

/* The lane the calling thread was given on ep, or NULL. */
static struct deng_lane *deng_own_lane(const struct deng_ep *ep)
{
    for (uint32_t i = 0; i < DENG_THREAD_EPS; i++) {
        if (deng_thread_lanes[i].ep_id == ep->id) {
            return deng_thread_lanes[i].lane;
        }
    }
    return NULL;
}

/* A lane of the thread's own: lanes 1 and up, one per thread that found
 * lane 0 taken by another when it came to move data, shared round the
 * rest once DENG_LANES_MAX are made. A thread that never meets another,
 * or only for the session's own traffic (the watch thread's looks at the
 * epoch), costs no lane. */
static struct deng_lane *deng_give_lane(struct deng_ep *ep)
{
    uint32_t n = __atomic_fetch_add(&ep->next_lane, 1, __ATOMIC_RELAXED);
    uint32_t slot = deng_thread_next++ % DENG_THREAD_EPS;
    struct deng_lane *l = deng_lane_at(ep, 1 + n % (DENG_LANES_MAX - 1));

    deng_thread_lanes[slot].ep_id = ep->id;
    deng_thread_lanes[slot].lane = l;
    return l;
}

/* The lane batch goes to, locked. */
static struct deng_lane *deng_lock_lane(struct deng_ep *ep,
                                        const struct hmaf_xfer_batch *batch)
{
    struct deng_lane *l = deng_own_lane(ep);

    if (l == NULL) {
        l = ep->lanes[0];
        if ((batch->flags & HMAF_BATCH_CONTROL) != 0) {
            pthread_mutex_lock(&l->lock);
            return l;
        }
        if (pthread_mutex_trylock(&l->lock) == 0) {
            return l;
        }
        l = deng_give_lane(ep);
    }
    pthread_mutex_lock(&l->lock);
    return l;
}

int hmaf__doca_post(struct hmaf_engine_ep *base, struct hmaf_xfer_batch *batch)
{
    struct deng_ep *ep = hmaf__container_of(base, struct deng_ep, base);
    struct deng_lane *l;
    struct deng_cursor cur = {0};

    if (batch->count == 0) {
        return 0;
    }
    l = deng_lock_lane(ep, batch);
    l->skip.len = 0;
    /* Behind earlier batches, or larger than the free window: queue it
     * (before submitting anything, so a failed malloc changes nothing). */
    if (l->pending_head != NULL || !deng_fits(l, batch)) {
        struct deng_pending *p = malloc(sizeof(*p));

        if (p == NULL) {
            pthread_mutex_unlock(&l->lock);
            return HMAF_ENOMEM;
        }
        *p = (struct deng_pending){.batch = batch};
        if (l->pending_tail != NULL) {
            l->pending_tail->next = p;
        } else {
            l->pending_head = p;
        }
        l->pending_tail = p;
        deng_busy_add(l, 1);
        deng_pump(l);
    } else {
        deng_submit_from(l, batch, &cur);
    }
    pthread_mutex_unlock(&l->lock);
    return 0;
}

/* Completions of one lane, unless another thread is driving it. */
static int deng_progress_lane(struct deng_lane *l)
{
    int n;

    if (pthread_mutex_trylock(&l->lock) != 0) {
        return 0;
    }
    l->ncompleted = 0;
    while (doca_pe_progress(l->pe)) {
        /* each call completes what is ready; drain */
    }
    deng_pump(l);
    n = (int)l->ncompleted;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* Calls of progress() on a busy lane of its own between two looks at the
 * other lanes. */
#define DENG_SWEEP_EVERY 64
static _Thread_local uint32_t deng_sweep_clock;

/* The thread's own lane; the others when its own has nothing in flight,
 * and else once every DENG_SWEEP_EVERY calls: rarely enough that two busy
 * threads do not take turns at each other's lanes, often enough that a
 * batch posted on another lane and waited for here (the readers' drain,
 * by the watch thread, while lane 0 stays busy) completes even if that
 * lane's thread is not driving it. */
int hmaf__doca_progress(struct hmaf_engine_ep *base)
{
    struct deng_ep *ep = hmaf__container_of(base, struct deng_ep, base);
    struct deng_lane *own = deng_own_lane(ep);
    int n;

    if (own == NULL) {
        own = ep->lanes[0];
    }
    n = deng_progress_lane(own);
    if (__atomic_load_n(&own->busy, __ATOMIC_RELAXED) != 0 &&
        ++deng_sweep_clock % DENG_SWEEP_EVERY != 0) {
        return n;
    }
    for (uint32_t i = 0; i < DENG_LANES_MAX; i++) {
        struct deng_lane *l = __atomic_load_n(&ep->lanes[i], __ATOMIC_ACQUIRE);
        if (l != NULL && l != own &&
            __atomic_load_n(&l->busy, __ATOMIC_RELAXED) != 0) {
            n += deng_progress_lane(l);
        }
    }
    return n;
}

/* ---- open and close ---- */

static doca_error_t deng_open_dma(struct deng_lane *l, uint32_t nslots)
{
    struct doca_ctx *dctx;
    doca_error_t err = doca_pe_create(&l->pe);

    if (err == DOCA_SUCCESS) {
        err = doca_dma_create(deng_ctx_of(l->ep)->dev, &l->dma);
    }
    if (err != DOCA_SUCCESS) {
        return err;
    }
    dctx = doca_dma_as_ctx(l->dma);
    err = doca_dma_task_memcpy_set_conf(l->dma, deng_task_done,
                                        deng_task_failed, nslots);
    if (err == DOCA_SUCCESS) {
        err = doca_ctx_set_user_data(dctx, (union doca_data){.ptr = l});
    }
    if (err == DOCA_SUCCESS) {
        err = doca_ctx_set_state_changed_cb(dctx, deng_state_changed);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_pe_connect_ctx(l->pe, dctx);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_ctx_start(dctx);
    }
    return err;
}

/* Staging pool, its mmap, and two buf descriptors per task. */
static doca_error_t deng_open_staging(struct deng_lane *l, uint32_t nslots,
                                      size_t slot_size)
{
    size_t bytes = (size_t)nslots * slot_size;
    doca_error_t err;

    l->pool = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
    l->slots = calloc(nslots, sizeof(*l->slots));
    if (l->pool == NULL || l->slots == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    for (uint32_t i = nslots; i-- > 0;) {
        l->slots[i] = (struct deng_slot){.lane = l,
                                         .stage = l->pool + i * slot_size,
                                         .next_free = l->free_slots};
        l->free_slots = &l->slots[i];
    }
    /* a task's local buf and up to list_max host bufs */
    err = doca_buf_inventory_create(
        (1 + (size_t)deng_ctx_of(l->ep)->list_max) * nslots, &l->inv);
    if (err == DOCA_SUCCESS) {
        err = doca_buf_inventory_start(l->inv);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_create(&l->local_mmap);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_set_memrange(l->local_mmap, l->pool, bytes);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_set_permissions(l->local_mmap,
                                        DOCA_ACCESS_FLAG_LOCAL_READ_WRITE);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_add_dev(l->local_mmap, deng_ctx_of(l->ep)->dev);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_start(l->local_mmap);
        if (err == DOCA_ERROR_DRIVER) {
            /* a refused pin, not a broken device (doca_engine.c, Host) */
            hmaf__log_error("doca could not pin %zu bytes of staging slots: "
                            "memlock limit (ulimit -l) without "
                            "CAP_IPC_LOCK, or memory pressure",
                            bytes);
            err = DOCA_ERROR_NO_MEMORY;
        }
    }
    return err;
}

static doca_error_t deng_open_lane(struct deng_ep *ep, struct deng_lane **out)
{
    const struct deng_ctx *c = deng_ctx_of(ep);
    struct deng_lane *l = calloc(1, sizeof(*l));
    doca_error_t err;

    if (l == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        free(l);
        return DOCA_ERROR_NO_MEMORY;
    }
    l->ep = ep;
    err = deng_open_dma(l, c->nslots);
    if (err == DOCA_SUCCESS) {
        err = deng_open_staging(l, c->nslots, c->slot_size);
    }
    if (err != DOCA_SUCCESS) {
        hmaf__log_error("doca dma setup: %s", doca_error_get_name(err));
        deng_close_lane(l);
        return err;
    }
    *out = l;
    return DOCA_SUCCESS;
}

int hmaf__doca_ep_open(struct deng_ep *ep)
{
    doca_error_t err;

    ep->id = __atomic_add_fetch(&deng_next_ep_id, 1, __ATOMIC_RELAXED);
    if (pthread_mutex_init(&ep->lanes_lock, NULL) != 0) {
        return HMAF_ENOMEM;
    }
    if (pthread_mutex_init(&ep->reg_lock, NULL) != 0) {
        pthread_mutex_destroy(&ep->lanes_lock);
        return HMAF_ENOMEM;
    }
    ep->has_locks = 1;
    err = deng_open_lane(ep, &ep->lanes[0]);
    if (err != DOCA_SUCCESS) {
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
static void deng_stop_dma(struct deng_lane *l)
{
    struct doca_ctx *dctx = doca_dma_as_ctx(l->dma);
    enum doca_ctx_states state = DOCA_CTX_STATE_IDLE;
    doca_error_t err;

    l->ep->orphans.count = UINT32_MAX;
    for (uint32_t i = 0; l->slots != NULL && i < deng_ctx_of(l->ep)->nslots;
         i++) {
        if (l->slots[i].batch != NULL) {
            l->slots[i].batch = &l->ep->orphans;
            l->slots[i].op = HMAF_XFER_WRITE;
        }
    }
    l->stopping = 1;
    err = doca_ctx_stop(dctx);
    if (err != DOCA_SUCCESS && err != DOCA_ERROR_IN_PROGRESS &&
        err != DOCA_ERROR_BAD_STATE) {
        hmaf__log_warn("doca_ctx_stop: %s", doca_error_get_name(err));
    }
    while (doca_ctx_get_state(dctx, &state) == DOCA_SUCCESS &&
           state != DOCA_CTX_STATE_IDLE) {
        doca_pe_progress(l->pe);
    }
}

static void deng_warn(const char *what, doca_error_t err)
{
    if (err != DOCA_SUCCESS) {
        hmaf__log_warn("%s: %s", what, doca_error_get_name(err));
    }
}

/* DOCA's order: tasks and bufs (freed as they complete), ctx stop until
 * idle, DMA ctx, mmap, inventory, PE. Also undoes a partial open. */
static void deng_close_lane(struct deng_lane *l)
{
    while (l->pending_head != NULL) {
        struct deng_pending *p = l->pending_head;
        l->pending_head = p->next;
        free(p);
    }
    l->pending_tail = NULL;
    if (l->dma != NULL) {
        deng_stop_dma(l);
        deng_warn("doca_dma_destroy", doca_dma_destroy(l->dma));
    }
    if (l->local_mmap != NULL) {
        deng_warn("doca_mmap_destroy", doca_mmap_destroy(l->local_mmap));
    }
    if (l->inv != NULL) {
        doca_buf_inventory_stop(l->inv);
        deng_warn("doca_buf_inventory_destroy",
                  doca_buf_inventory_destroy(l->inv));
    }
    if (l->pe != NULL) {
        deng_warn("doca_pe_destroy", doca_pe_destroy(l->pe));
    }
    free(l->slots);
    free(l->pool);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* Every lane (their tasks hold caller registrations), then the
 * registrations; the device goes with the ctx. */
void hmaf__doca_ep_close(struct deng_ep *ep)
{
    for (uint32_t i = 0; i < DENG_LANES_MAX; i++) {
        if (ep->lanes[i] != NULL) {
            deng_close_lane(ep->lanes[i]);
            ep->lanes[i] = NULL;
        }
    }
    hmaf__doca_lreg_fini(ep);
    if (ep->has_locks) {
        pthread_mutex_destroy(&ep->reg_lock);
        pthread_mutex_destroy(&ep->lanes_lock);
        ep->has_locks = 0;
    }
}
