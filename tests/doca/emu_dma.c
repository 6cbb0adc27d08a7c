/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * DMA memcpy tasks. As DOCA says of submit, nothing validates a task
 * before it runs: alloc_init checks only that it has bufs, submit nothing,
 * and a task whose source exceeds max_buf_size or its destination's room
 * fails in the error callback. The bytes move when doca_pe_progress
 * completes the task, so a caller that reads the destination before its
 * callback sees stale data, as on hardware.
 *
 * Fatal errors: a malformed task (TOO_BIG, INVALID_VALUE) and, with
 * DOCA_EMU_FAULT_DMA_FATAL, an injected fault stop the context, as a card
 * may after a fatal task error: it moves to STOPPING before the failed
 * task's callback (the state callback says so), every task still queued
 * fails with IO_FAILED (flushed), and it turns IDLE once every task is
 * freed. A task of a context that is no longer RUNNING is flushed the
 * same way, whether the stop was asked for or not.
 *
 * Completion order: DOCA does not promise submit order, nor that one
 * doca_pe_progress reports everything that is done. A task that has run
 * waits in its context's held set; each progress call hands out at most
 * DOCA_EMU_DMA_COMPLETIONS (4) of them to their callbacks, picked at
 * random (0: all, in submit order, at once). Each context draws from its
 * own state, the next one of DOCA_EMU_SEED's sequence (emu_next_seed), so
 * a run's orders can be asked for again.
 *
 * Timed mode (DOCA_EMU_TIMED=1) models a card's timing. At submit a task
 * gets the time its completion falls due; it still runs (moves its bytes)
 * in the next progress call, but stays held until then, so its callback
 * never comes early and the bytes are in place by then. The card is one
 * DMA engine per direction for the whole process - read (an import to
 * local memory; also local to local) and write (local to an import) -
 * each serving its tasks in submit order, one at a time:
 *
 *   cost  = max(1 / ops, overhead + bytes / bw)      that direction's knobs
 *   start = max(submit, busy)       busy: when its previous task finished
 *   busy  = start + cost
 *   due   = busy + latency
 *
 * A lone task takes latency + cost; with enough in flight a direction
 * completes one every cost. Reads pay a per-task overhead that does not
 * overlap their bytes (a PCIe read waits for its data; writes are posted).
 * The defaults fit the BlueField-2 figures of shared/DOCA.md (ops/s):
 *
 *   read   64 B 10.5 M (10.5 M)  1 KiB 7.7 M (6.8 M)  4 KiB 4.0 M (3.9 M)
 *          16 KiB 1.39 M (1.5 M)  64 KiB 0.38 M = 25 GB/s (0.39 M)
 *   write  64 B 10.2 M (10.2 M)  1 KiB 10.2 M (9.0 M)  4 KiB 3.7 M (3.7 M)
 *          16 KiB 0.92 M (0.94 M)  64 KiB 0.23 M = 15 GB/s (0.23 M)
 *   a lone 64 B task: 2.4 us (2.3-2.5 us measured)
 *
 * Progress never sleeps: a call before any deadline returns 0, and an
 * armed notification handle fires when the earliest held task falls due.
 * Tasks of a context that is no longer running (flushed, or done before a
 * stop) are due at once: a stop does not wait for the device. Faster than
 * the model the emulation cannot go: its own copies are syscalls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <doca_buf.h>
#include <doca_dma.h>

#include "emu.h"

struct doca_dma {
    struct doca_ctx ctx; /* first: the ctx ops cast back */
    doca_dma_task_memcpy_completion_cb_t ok_cb, err_cb;
    struct doca_task **held; /* run, callback not called yet: num_tasks */
    uint32_t nheld;
    uint64_t next_due;        /* the earliest due time in held */
    struct doca_task **batch; /* a progress call's callbacks: num_tasks */
    uint64_t rng;             /* xorshift: which held task goes next */
};

struct doca_dma_task_memcpy {
    struct doca_task task; /* first, likewise */
    const struct doca_buf *src;
    struct doca_buf *dst;
    int fatal;       /* its failure stops the context */
    uint64_t due_ns; /* its callback not before (timed mode; else 0) */
};

/* Timed mode: when each direction's engine is free again (ns, monotonic);
 * one card per process, shared by every DMA context. */
enum { LINK_READ, LINK_WRITE };
static uint64_t link_busy[2];

/* At execute: what submit does not look at. */
static doca_error_t check_bufs(const struct doca_buf *src,
                               const struct doca_buf *dst)
{
    uintptr_t end, tail;

    if (src->data_len > emu_config()->max_buf_size) {
        return DOCA_ERROR_TOO_BIG;
    }
    /* Addresses of imported bufs are the exporter's: compare as numbers. */
    end = (uintptr_t)dst->head + dst->len;
    tail = (uintptr_t)dst->data + dst->data_len;
    return src->data_len <= end - tail ? DOCA_SUCCESS
                                       : DOCA_ERROR_INVALID_VALUE;
}

/* Loops because the kernel may stop at a page it cannot reach. */
static doca_error_t remote_copy(pid_t pid, int write, uint8_t *local,
                                uintptr_t remote, size_t n)
{
    while (n > 0) {
        struct iovec l = {local, n};
        struct iovec r = {(void *)remote, n};
        ssize_t k = write ? process_vm_writev(pid, &l, 1, &r, 1, 0)
                          : process_vm_readv(pid, &l, 1, &r, 1, 0);

        if (k <= 0) {
            return k < 0 && errno == EPERM ? DOCA_ERROR_NOT_PERMITTED
                                           : DOCA_ERROR_DRIVER;
        }
        local += k;
        remote += (size_t)k;
        n -= (size_t)k;
    }
    return DOCA_SUCCESS;
}

static doca_error_t copy_with_import(const struct doca_buf *src,
                                     struct doca_buf *dst)
{
    struct doca_mmap *remote = src->mmap->from_export ? src->mmap : dst->mmap;
    uint8_t *to = dst->data + dst->data_len;
    doca_error_t err = emu_import_check(remote);

    remote->ntasks++;
    if (err != DOCA_SUCCESS) {
        return err;
    }
    if (remote == src->mmap) {
        return remote_copy((pid_t)remote->desc.pid, 0, to, (uintptr_t)src->data,
                           src->data_len);
    }
    return remote_copy((pid_t)remote->desc.pid, 1, src->data, (uintptr_t)to,
                       src->data_len);
}

static doca_error_t dma_execute(struct doca_task *t)
{
    struct doca_dma_task_memcpy *m = (struct doca_dma_task_memcpy *)t;
    const struct doca_mmap *sm = m->src->mmap, *dm = m->dst->mmap;
    uint32_t need = dm->from_export ? DOCA_ACCESS_FLAG_PCI_READ_WRITE
                                    : DOCA_ACCESS_FLAG_LOCAL_READ_WRITE;
    doca_error_t err;

    if (t->ctx->state != DOCA_CTX_STATE_RUNNING) {
        return DOCA_ERROR_IO_FAILED; /* flushed by the stop */
    }
    err = check_bufs(m->src, m->dst);
    if (err != DOCA_SUCCESS) {
        m->fatal = 1;
        return err;
    }
    if (emu_fault_dma()) {
        m->fatal = emu_config()->fault_dma_fatal != 0;
        return DOCA_ERROR_IO_FAILED;
    }
    if (sm->from_export && dm->from_export) {
        return DOCA_ERROR_NOT_SUPPORTED;
    }
    if ((dm->perms & need) == 0) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    if (sm->from_export || dm->from_export) {
        err = copy_with_import(m->src, m->dst);
    } else {
        memcpy(m->dst->data + m->dst->data_len, m->src->data, m->src->data_len);
    }
    if (err == DOCA_SUCCESS) {
        m->dst->data_len += m->src->data_len;
        emu_count(EMU_DMA_TASKS, 1);
        emu_count(EMU_DMA_BYTES, m->src->data_len);
    }
    return err;
}

static doca_error_t dma_start(struct doca_ctx *ctx)
{
    struct doca_dma *dma = (struct doca_dma *)ctx;
    struct doca_task **held, **batch;

    if (dma->ok_cb == NULL) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    held = realloc(dma->held, ctx->num_tasks * sizeof(*held));
    if (held != NULL) {
        dma->held = held;
    }
    batch = realloc(dma->batch, ctx->num_tasks * sizeof(*batch));
    if (batch != NULL) {
        dma->batch = batch;
    }
    if (held == NULL || batch == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    dma->nheld = 0;
    dma->next_due = UINT64_MAX;
    return DOCA_SUCCESS;
}

/* The device's time for one task of `bytes` on link l, in ns. */
static uint64_t link_cost_ns(const struct emu_dma_link *l, uint64_t bytes)
{
    double per_op = 1e9 / (double)l->ops;
    double moving =
        (double)l->overhead_ns + (double)bytes * 1e9 / (double)l->bw;

    return (uint64_t)((per_op > moving ? per_op : moving) + 0.5);
}

/* Timed mode, at submit: queue the task on its direction's engine and
 * return when its completion falls due (the model above). The bufs are
 * not checked yet: a malformed task costs what its length says, up to
 * max_buf_size. */
static uint64_t model_due(const struct doca_dma_task_memcpy *m)
{
    const struct emu_config *c = emu_config();
    int link = m->dst->mmap->from_export && !m->src->mmap->from_export
                   ? LINK_WRITE
                   : LINK_READ;
    uint64_t bytes =
        m->src->data_len < c->max_buf_size ? m->src->data_len : c->max_buf_size;
    uint64_t cost = link_cost_ns(
        link == LINK_WRITE ? &c->timed_write : &c->timed_read, bytes);
    uint64_t now = emu_now_ns();
    uint64_t busy = __atomic_load_n(&link_busy[link], __ATOMIC_RELAXED);
    uint64_t done;

    do {
        done = (busy > now ? busy : now) + cost;
    } while (!__atomic_compare_exchange_n(&link_busy[link], &busy, done, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return done + c->timed_latency_ns;
}

static doca_error_t dma_submit(struct doca_task *t)
{
    struct doca_dma_task_memcpy *m = (struct doca_dma_task_memcpy *)t;

    m->fatal = 0;
    m->due_ns = emu_config()->timed ? model_due(m) : 0;
    return DOCA_SUCCESS; /* DOCA: submit does not validate the task */
}

static void deliver(struct doca_task *t)
{
    struct doca_dma *dma = (struct doca_dma *)t->ctx;

    (t->status == DOCA_SUCCESS ? dma->ok_cb : dma->err_cb)(
        (struct doca_dma_task_memcpy *)t, t->user_data, t->ctx->user_data);
}

/* The task has run: its callback now, or from the held set later. A
 * fatal error stops the ctx at once, so the tasks queued behind it are
 * flushed whenever their callbacks come. Holding a task is progress
 * untimed (as it always was), not in timed mode: a card's progress call
 * reports nothing until a completion is due. */
static int dma_complete(struct doca_task *t)
{
    struct doca_dma *dma = (struct doca_dma *)t->ctx;
    struct doca_dma_task_memcpy *m = (struct doca_dma_task_memcpy *)t;
    const struct emu_config *c = emu_config();

    if (m->fatal && t->ctx->state == DOCA_CTX_STATE_RUNNING) {
        (void)emu_ctx_wind_down(t->ctx); /* STOPPING: t is still out */
    }
    if (c->dma_completions == 0 && m->due_ns == 0) {
        deliver(t);
        return 1;
    }
    dma->held[dma->nheld++] = t;
    if (m->due_ns < dma->next_due) {
        dma->next_due = m->due_ns;
    }
    emu_pe_kick_at(t->ctx->pe,
                   t->ctx->state == DOCA_CTX_STATE_RUNNING ? m->due_ns : 0);
    return !c->timed;
}

static uint32_t next_random(struct doca_dma *dma)
{
    dma->rng ^= dma->rng << 13;
    dma->rng ^= dma->rng >> 7;
    dma->rng ^= dma->rng << 17;
    return (uint32_t)(dma->rng >> 32);
}

static uint64_t due_of(const struct doca_task *t)
{
    return ((const struct doca_dma_task_memcpy *)t)->due_ns;
}

/* Move the held tasks due by `now` to dma->batch, at most `limit` of
 * them (0: all) picked at random, the others keeping their order in
 * held; returns how many. */
static uint32_t take_due(struct doca_dma *dma, uint64_t now, uint32_t limit)
{
    uint32_t ndue = 0, nkeep = 0, n;

    for (uint32_t i = 0; i < dma->nheld; i++) {
        struct doca_task *t = dma->held[i];

        if (due_of(t) <= now) {
            dma->batch[ndue++] = t;
        } else {
            dma->held[nkeep++] = t;
        }
    }
    n = limit != 0 && limit < ndue ? limit : ndue;
    for (uint32_t k = 0; limit != 0 && k < n; k++) {
        uint32_t j = k + next_random(dma) % (ndue - k);
        struct doca_task *t = dma->batch[k];

        dma->batch[k] = dma->batch[j];
        dma->batch[j] = t;
    }
    for (uint32_t k = n; k < ndue; k++) {
        dma->held[nkeep++] = dma->batch[k]; /* due: next_due is past */
    }
    dma->nheld = nkeep;
    dma->next_due = UINT64_MAX;
    for (uint32_t i = 0; i < nkeep; i++) {
        if (due_of(dma->held[i]) < dma->next_due) {
            dma->next_due = due_of(dma->held[i]);
        }
    }
    return n;
}

/* At the start of each doca_pe_progress: a few held tasks that are due,
 * at random. A callback may submit again; that task is held no sooner
 * than the PE's next pass over its queue. Reads the clock, never sleeps. */
static int dma_progress(struct doca_ctx *ctx)
{
    struct doca_dma *dma = (struct doca_dma *)ctx;
    uint64_t now = UINT64_MAX; /* untimed, or stopping: all are due */
    uint32_t n;

    if (dma->nheld == 0) {
        return 0;
    }
    if (emu_config()->timed && ctx->state == DOCA_CTX_STATE_RUNNING) {
        now = emu_now_ns();
    }
    if (now < dma->next_due) {
        return 0;
    }
    n = take_due(dma, now, emu_config()->dma_completions);
    for (uint32_t k = 0; k < n; k++) {
        deliver(dma->batch[k]);
    }
    return n > 0;
}

/* A stop makes every held task due (below): wake the waiter for them. */
static void dma_stop(struct doca_ctx *ctx)
{
    if (((struct doca_dma *)ctx)->nheld > 0) {
        emu_pe_kick(ctx->pe);
    }
}

/* Work now when a held task is due, else a wake-up when the first is. */
static int dma_watch(struct doca_ctx *ctx, uint64_t *wake_ns)
{
    struct doca_dma *dma = (struct doca_dma *)ctx;

    if (dma->nheld == 0) {
        return 0;
    }
    if (!emu_config()->timed || ctx->state != DOCA_CTX_STATE_RUNNING ||
        dma->next_due <= emu_now_ns()) {
        return 1;
    }
    if (dma->next_due < *wake_ns) {
        *wake_ns = dma->next_due;
    }
    return 0;
}

static const struct emu_ctx_ops dma_ops = {
    .start = dma_start,
    .stop = dma_stop,
    .progress = dma_progress,
    .submit = dma_submit,
    .execute = dma_execute,
    .complete = dma_complete,
    .watch = dma_watch,
};

doca_error_t doca_dma_create(struct doca_dev *dev, struct doca_dma **dma)
{
    struct doca_dma *d = calloc(1, sizeof(*d));

    (void)dev;
    if (d == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    emu_ctx_init(&d->ctx, &dma_ops, sizeof(struct doca_dma_task_memcpy));
    d->rng = emu_next_seed();
    *dma = d;
    return DOCA_SUCCESS;
}

doca_error_t doca_dma_destroy(struct doca_dma *dma)
{
    doca_error_t err = emu_ctx_fini(&dma->ctx);

    if (err == DOCA_SUCCESS) {
        free(dma->held);
        free(dma->batch);
        free(dma);
    }
    return err;
}

struct doca_ctx *doca_dma_as_ctx(struct doca_dma *dma)
{
    return &dma->ctx;
}

doca_error_t
doca_dma_cap_task_memcpy_is_supported(const struct doca_devinfo *devinfo)
{
    (void)devinfo;
    return DOCA_SUCCESS;
}

doca_error_t doca_dma_cap_get_max_num_tasks(struct doca_dma *dma,
                                            uint32_t *max_num_tasks)
{
    (void)dma;
    *max_num_tasks = emu_config()->max_tasks;
    return DOCA_SUCCESS;
}

doca_error_t
doca_dma_cap_task_memcpy_get_max_buf_size(const struct doca_devinfo *devinfo,
                                          uint64_t *buf_size)
{
    (void)devinfo;
    *buf_size = emu_config()->max_buf_size;
    return DOCA_SUCCESS;
}

doca_error_t doca_dma_cap_task_memcpy_get_max_buf_list_len(
    const struct doca_devinfo *devinfo, uint32_t *max_buf_list_len)
{
    (void)devinfo;
    *max_buf_list_len = 1;
    return DOCA_SUCCESS;
}

doca_error_t doca_dma_task_memcpy_set_conf(
    struct doca_dma *dma,
    doca_dma_task_memcpy_completion_cb_t task_completion_cb,
    doca_dma_task_memcpy_completion_cb_t task_error_cb,
    uint32_t num_memcpy_tasks)
{
    if (task_completion_cb == NULL || task_error_cb == NULL ||
        num_memcpy_tasks == 0 || num_memcpy_tasks > emu_config()->max_tasks) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (dma->ctx.state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    dma->ok_cb = task_completion_cb;
    dma->err_cb = task_error_cb;
    dma->ctx.num_tasks = num_memcpy_tasks;
    return DOCA_SUCCESS;
}

doca_error_t doca_dma_task_memcpy_alloc_init(struct doca_dma *dma,
                                             const struct doca_buf *src,
                                             struct doca_buf *dst,
                                             union doca_data user_data,
                                             struct doca_dma_task_memcpy **task)
{
    struct doca_task *t;
    doca_error_t err = src != NULL && dst != NULL ? DOCA_SUCCESS
                                                  : DOCA_ERROR_INVALID_VALUE;

    if (err == DOCA_SUCCESS) {
        err = emu_task_alloc(&dma->ctx, &t);
    }
    if (err != DOCA_SUCCESS) {
        return err;
    }
    t->user_data = user_data;
    *task = (struct doca_dma_task_memcpy *)t;
    (*task)->src = src;
    (*task)->dst = dst;
    return DOCA_SUCCESS;
}

struct doca_task *
doca_dma_task_memcpy_as_task(struct doca_dma_task_memcpy *task)
{
    return &task->task;
}

void doca_dma_task_memcpy_set_src(struct doca_dma_task_memcpy *task,
                                  const struct doca_buf *src)
{
    task->src = src;
}

void doca_dma_task_memcpy_set_dst(struct doca_dma_task_memcpy *task,
                                  struct doca_buf *dst)
{
    task->dst = dst;
}
