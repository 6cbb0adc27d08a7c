/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * DMA memcpy tasks. As DOCA says of submit, nothing validates a task
 * before it runs: alloc_init checks only that it has bufs, submit nothing,
 * and a task whose source exceeds max_buf_size or its destination's room
 * fails in the error callback. The bytes move when doca_pe_progress
 * completes the task, so a caller that reads the destination before its
 * callback sees stale data, as on hardware.
 *
 * Buf lists (scatter-gather): the source is the data sections of its list,
 * element after element (empty ones add nothing), and the destination
 * list takes those bytes in order, filling each element's room after its
 * data before the next: DOCA's rule for one buf (the bytes land after
 * its data) applied along the list. Each list may hold up to the device's cap
 * (DOCA_EMU_DMA_MAX_BUF_LIST_LEN), max_buf_size bounds the source's total,
 * and everything is checked before a byte moves, so a failed task leaves
 * every data_len alone. Elements may come from different mmaps; a task
 * with an import on both sides is NOT_SUPPORTED (host to host is none of
 * DOCA DMA's documented directions). Pieces against one exporter go in
 * one process_vm_readv/writev.
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
 *   cost  = max(1 / ops, overhead + extra * elem + bytes / bw)
 *   start = max(submit, busy)       busy: when its previous task finished
 *   busy  = start + cost
 *   due   = busy + latency
 *
 * with that direction's ops, bw and overhead; extra is the list elements
 * past the first of the source's list and of the destination's (0 for
 * two lone bufs), elem DOCA_EMU_TIMED_LIST_ELEM_NS. A task is one op
 * however long its lists: a list saves the per-task floor and the host's
 * submit and completion, and costs the device a descriptor per element.
 * elem is a model choice (about half a small task), not a measurement.
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
    struct doca_ctx ctx;   /* first: the ctx ops cast back */
    char pci[EMU_PCI_LEN]; /* its device's: the buf list cap is per device */
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

/* ---- a task's buf lists (a lone buf is a list of one) ---- */

/* A list as the device sees it. */
struct list_shape {
    uint32_t n;        /* elements */
    uint64_t bytes;    /* source: all its data; destination: all its room */
    uint32_t imports;  /* elements on an imported mmap */
    uint32_t readonly; /* destination: elements the device may not write */
};

/* A destination element's room: after its data, to its end. Addresses of
 * imported bufs are the exporter's: compare as numbers. */
static uint64_t room_of(const struct doca_buf *b)
{
    return (uintptr_t)b->head + b->len - ((uintptr_t)b->data + b->data_len);
}

static int writable(const struct doca_mmap *mm)
{
    uint32_t need = mm->from_export ? DOCA_ACCESS_FLAG_PCI_READ_WRITE
                                    : DOCA_ACCESS_FLAG_LOCAL_READ_WRITE;

    return (mm->perms & need) != 0;
}

static struct list_shape shape_of(const struct doca_buf *head, int dst)
{
    struct list_shape s = {0};

    for (const struct doca_buf *b = head; b != NULL; b = b->next) {
        s.n++;
        s.bytes += dst ? room_of(b) : b->data_len;
        s.imports += b->mmap->from_export != 0;
        s.readonly += dst && !writable(b->mmap);
    }
    return s;
}

/* At execute: what submit does not look at. Each failure is a malformed
 * task, which DOCA may treat as fatal; the emulation does. */
static doca_error_t check_shapes(const struct doca_dma_task_memcpy *m,
                                 const struct list_shape *src,
                                 const struct list_shape *dst, uint32_t cap)
{
    if (m->src->first != m->src || m->dst->first != m->dst) {
        return DOCA_ERROR_INVALID_VALUE; /* lists go by their heads */
    }
    if (src->n > cap || dst->n > cap) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (src->bytes > emu_config()->max_buf_size) {
        return DOCA_ERROR_TOO_BIG;
    }
    return src->bytes <= dst->bytes ? DOCA_SUCCESS : DOCA_ERROR_INVALID_VALUE;
}

static int seen_before(const struct doca_buf *head, const struct doca_buf *b)
{
    for (const struct doca_buf *p = head; p != b; p = p->next) {
        if (p->mmap == b->mmap) {
            return 1;
        }
    }
    return 0;
}

/* The imports of the list from head up to end (NULL: all of it), each
 * once: their fences back. */
static void release_imports(const struct doca_buf *head,
                            const struct doca_buf *end)
{
    for (const struct doca_buf *b = head; b != end; b = b->next) {
        if (b->mmap->from_export && !seen_before(head, b)) {
            emu_import_release(b->mmap);
        }
    }
}

/* Before any byte moves, each import of the list is held — its live word
 * read inside its export's fence, which stays held until the bytes moved
 * (release_imports), so an exporter's destroy cannot slip in between —
 * and counts the task once (DOCA_EMU_FAULT_STOP_AFTER: the tasks before
 * this one). On a failure nothing stays held. */
static doca_error_t hold_imports(const struct doca_buf *head)
{
    doca_error_t err = DOCA_SUCCESS;

    for (const struct doca_buf *b = head; b != NULL; b = b->next) {
        if (b->mmap->from_export && !seen_before(head, b)) {
            if (err == DOCA_SUCCESS) {
                err = emu_import_hold(b->mmap);
                if (err != DOCA_SUCCESS) {
                    release_imports(head, b);
                }
            }
            /* tasks of several contexts may run against one import */
            __atomic_add_fetch(&b->mmap->ntasks, 1, __ATOMIC_RELAXED);
        }
    }
    return err;
}

/* ---- moving the bytes ---- */

/* A list read byte by byte: the source's data sections, or the
 * destination's room after its data, element after element. */
struct cursor {
    const struct doca_buf *b;
    uint64_t off; /* into b's part */
    int dst;
};

/* A stretch both lists can move at once. */
struct piece {
    uintptr_t from, to;
    size_t n;
    const struct doca_mmap *from_mm, *to_mm;
};

static uint64_t part_len(const struct cursor *c)
{
    return c->dst ? room_of(c->b) : c->b->data_len;
}

static uintptr_t part_at(const struct cursor *c)
{
    return (uintptr_t)c->b->data + (c->dst ? c->b->data_len : 0) + c->off;
}

/* Bytes left in the current element, skipping spent and empty ones; 0 at
 * the end of the list. */
static uint64_t cursor_left(struct cursor *c)
{
    while (c->b != NULL && c->off == part_len(c)) {
        c->b = c->b->next;
        c->off = 0;
    }
    return c->b == NULL ? 0 : part_len(c) - c->off;
}

/* The next piece; 0 once the source is spent. */
static int next_piece(struct cursor *src, struct cursor *dst, struct piece *p)
{
    uint64_t have = cursor_left(src), room;

    if (have == 0) {
        return 0;
    }
    room = cursor_left(dst);
    if (room == 0) {
        emu_die("DMA destination room miscounted"); /* checked before */
    }
    p->n = (size_t)(have < room ? have : room);
    p->from = part_at(src);
    p->to = part_at(dst);
    p->from_mm = src->b->mmap;
    p->to_mm = dst->b->mmap;
    src->off += p->n;
    dst->off += p->n;
    return 1;
}

#define IOV_BATCH 64

/* Pieces for one process_vm_readv/writev: one exporter, one direction. */
struct batch {
    pid_t pid;
    int write; /* local memory to the exporter's */
    int n;
    struct iovec local[IOV_BATCH], remote[IOV_BATCH];
};

/* Loops because the kernel may stop at a page it cannot reach. The
 * pieces pair up one to one, so both sides advance alike. */
static doca_error_t flush(struct batch *bt)
{
    struct iovec *l = bt->local, *r = bt->remote;
    int cnt = bt->n;

    bt->n = 0;
    while (cnt > 0) {
        ssize_t k = bt->write ? process_vm_writev(bt->pid, l, cnt, r, cnt, 0)
                              : process_vm_readv(bt->pid, l, cnt, r, cnt, 0);

        if (k <= 0) {
            return k < 0 && errno == EPERM ? DOCA_ERROR_NOT_PERMITTED
                                           : DOCA_ERROR_DRIVER;
        }
        while (k > 0) {
            size_t take = (size_t)k < l->iov_len ? (size_t)k : l->iov_len;

            l->iov_base = (uint8_t *)l->iov_base + take;
            r->iov_base = (uint8_t *)r->iov_base + take;
            l->iov_len -= take;
            r->iov_len -= take;
            k -= (ssize_t)take;
            if (l->iov_len == 0) {
                l++, r++, cnt--;
            }
        }
    }
    return DOCA_SUCCESS;
}

/* Local to local is a memcpy; a piece that reaches an import joins the
 * batch, which goes first if it is full or for another exporter or
 * direction. */
static doca_error_t add_piece(struct batch *bt, const struct piece *p)
{
    const struct doca_mmap *remote = p->from_mm->from_export ? p->from_mm
                                     : p->to_mm->from_export ? p->to_mm
                                                             : NULL;
    int write = remote == p->to_mm;

    if (remote == NULL) {
        memcpy((void *)p->to, (const void *)p->from, p->n);
        return DOCA_SUCCESS;
    }
    if (bt->n == IOV_BATCH ||
        (bt->n > 0 && (bt->pid != remote->desc.pid || bt->write != write))) {
        doca_error_t err = flush(bt);

        if (err != DOCA_SUCCESS) {
            return err;
        }
    }
    bt->pid = (pid_t)remote->desc.pid;
    bt->write = write;
    bt->local[bt->n] = (struct iovec){(void *)(write ? p->from : p->to), p->n};
    bt->remote[bt->n] = (struct iovec){(void *)(write ? p->to : p->from), p->n};
    bt->n++;
    return DOCA_SUCCESS;
}

static doca_error_t move_bytes(const struct doca_dma_task_memcpy *m)
{
    struct cursor src = {m->src, 0, 0}, dst = {m->dst, 0, 1};
    struct batch bt = {.n = 0};
    struct piece p;
    doca_error_t err = DOCA_SUCCESS;

    while (err == DOCA_SUCCESS && next_piece(&src, &dst, &p)) {
        err = add_piece(&bt, &p);
    }
    return err == DOCA_SUCCESS ? flush(&bt) : err;
}

/* The destination's elements took the bytes in order, each after its
 * data up to its end: each data section grows by what landed in it. */
static void grow_dst(struct doca_buf *head, uint64_t bytes)
{
    for (struct doca_buf *b = head; b != NULL && bytes > 0; b = b->next) {
        uint64_t n = room_of(b) < bytes ? room_of(b) : bytes;

        b->data_len += n;
        bytes -= n;
    }
}

static doca_error_t dma_execute(struct doca_task *t)
{
    struct doca_dma_task_memcpy *m = (struct doca_dma_task_memcpy *)t;
    struct list_shape src, dst;
    const struct doca_buf *held;
    doca_error_t err;

    if (t->ctx->state != DOCA_CTX_STATE_RUNNING) {
        return DOCA_ERROR_IO_FAILED; /* flushed by the stop */
    }
    src = shape_of(m->src, 0);
    dst = shape_of(m->dst, 1);
    err = check_shapes(m, &src, &dst,
                       emu_dma_list_cap(((struct doca_dma *)t->ctx)->pci));
    if (err != DOCA_SUCCESS) {
        m->fatal = 1;
        return err;
    }
    if (emu_fault_dma()) {
        m->fatal = emu_config()->fault_dma_fatal != 0;
        return DOCA_ERROR_IO_FAILED;
    }
    if (src.imports > 0 && dst.imports > 0) {
        return DOCA_ERROR_NOT_SUPPORTED;
    }
    if (dst.readonly > 0) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    held = src.imports > 0 ? m->src : m->dst;
    err = hold_imports(held);
    if (err == DOCA_SUCCESS) {
        err = move_bytes(m);
        release_imports(held, NULL);
    }
    if (err == DOCA_SUCCESS) {
        grow_dst(m->dst, src.bytes);
        emu_count(EMU_DMA_TASKS, 1);
        emu_count(EMU_DMA_BYTES, src.bytes);
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

/* The device's time for one task on link l, in ns: `bytes` to move,
 * `elements` list elements past each list's first. */
static uint64_t link_cost_ns(const struct emu_dma_link *l, uint64_t bytes,
                             uint64_t elements)
{
    double per_op = 1e9 / (double)l->ops;
    double moving = (double)l->overhead_ns +
                    (double)elements * (double)emu_config()->timed_elem_ns +
                    (double)bytes * 1e9 / (double)l->bw;

    return (uint64_t)((per_op > moving ? per_op : moving) + 0.5);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* A task's direction: write when it writes to an import and reads from
 * none, else read (from an import, or local to local). */
static int link_of(const struct list_shape *src, const struct list_shape *dst)
{
    return dst->imports > 0 && src->imports == 0 ? LINK_WRITE : LINK_READ;
}

/* A task's device time (the model above). The bufs are not checked yet:
 * a malformed task costs what its lists say, up to max_buf_size and the
 * list cap. */
static uint64_t task_cost_ns(const struct doca_dma *dma, int link,
                             const struct list_shape *src,
                             const struct list_shape *dst)
{
    const struct emu_config *c = emu_config();
    uint32_t cap = emu_dma_list_cap(dma->pci);
    uint64_t elements = min_u64(src->n, cap) - 1 + min_u64(dst->n, cap) - 1;

    return link_cost_ns(link == LINK_WRITE ? &c->timed_write : &c->timed_read,
                        min_u64(src->bytes, c->max_buf_size), elements);
}

/* Timed mode, at submit: queue the task on its direction's engine and
 * return when its completion falls due. */
static uint64_t model_due(const struct doca_dma_task_memcpy *m)
{
    struct list_shape src = shape_of(m->src, 0), dst = shape_of(m->dst, 1);
    int link = link_of(&src, &dst);
    uint64_t cost =
        task_cost_ns((const struct doca_dma *)m->task.ctx, link, &src, &dst);
    uint64_t now = emu_now_ns();
    uint64_t busy = __atomic_load_n(&link_busy[link], __ATOMIC_RELAXED);
    uint64_t done;

    do {
        done = (busy > now ? busy : now) + cost;
    } while (!__atomic_compare_exchange_n(&link_busy[link], &busy, done, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    emu_count(EMU_DMA_DEVICE_NS, cost);
    return done + emu_config()->timed_latency_ns;
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

    if (d == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    memcpy(d->pci, dev->info.pci, sizeof(d->pci));
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
    *max_buf_list_len = emu_dma_list_cap(devinfo->pci);
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
