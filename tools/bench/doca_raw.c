/*
 * The raw DOCA DMA contenders: what a BlueField user writes without HMAF,
 * with DOCA's documented calls only, so that every figure of the doca
 * engine has a ratio to raw DMA measured in the same rounds.
 *
 * Host: the whole host allocation (the buffer and its tail) is one
 * doca_mmap - set_memrange, PCI_READ_WRITE, add_dev, start - exported with
 * doca_mmap_export_pci. The descriptor goes into a record in the tail,
 * which the host publishes as root "doca-raw": the dpu side reads it with
 * the HMAF session it already has, so no other channel is needed.
 *
 * Dpu side, per thread (DOCA wants one thread per progress engine):
 * doca_mmap_create_from_export, a local mmap over the thread's buffers, a
 * buf inventory, and a DMA context on its own doca_pe. A transfer is one
 * memcpy task per piece of at most max_buf_size bytes:
 *   doca-raw   one task at a time: alloc, submit, progress until done
 *   doca-pipe  a window of tasks in flight, refilled as they complete
 *   doca+cpu   doca-pipe's tasks, with CPU work between the last submit
 *              and the wait (the overlap pattern)
 * Bufs and tasks are taken for each piece and released in the completion
 * callback, as DOCA's samples do.
 *
 * Built where the bench is built with DOCA (the SDK, or the emulation for
 * hmaf-bench-doca): HMAF_BENCH_DOCA. Otherwise the host exports nothing
 * and the contenders are unusable.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* Devices, as the doca engine picks them: the BlueField PF as the host
 * sees it, the Arm-side PF on the dpu side; HMAF_DOCA_DEV overrides. */
#define HOST_DEV "b1:00.0"
#define DPU_DEV  "03:00.0"

#define REC_MAGIC 0x7761722d61636f64ull /* "doca-raw" */
#define NOTE_LEN  104

/* The record in the host's tail. Both ends are little-endian (x86 or Arm
 * hosts, the BlueField's Arm cores), so fields are stored as they are. */
struct doca_record {
    uint64_t magic;
    uint64_t addr; /* the exported range: host virtual address */
    uint64_t len;
    uint32_t desc_len; /* 0: nothing exported, the note says why */
    uint32_t reserved;
    char note[NOTE_LEN]; /* what was exported, or why not */
    uint8_t desc[DOCA_REC_LEN - 4 * sizeof(uint64_t) - NOTE_LEN];
};

static_assert(sizeof(struct doca_record) == DOCA_REC_LEN,
              "the record fills its page of the tail");

const char *doca_raw_record_note(const void *rec)
{
    return ((const struct doca_record *)rec)->note;
}

static void record_init(struct doca_record *rec, const void *mem, size_t len)
{
    memset(rec, 0, sizeof(*rec));
    rec->magic = REC_MAGIC;
    rec->addr = (uint64_t)(uintptr_t)mem;
    rec->len = len;
}

#ifdef HMAF_BENCH_DOCA

#include <doca_buf.h>
#include <doca_buf_inventory.h>
#include <doca_ctx.h>
#include <doca_dev.h>
#include <doca_dma.h>
#include <doca_error.h>
#include <doca_mmap.h>
#include <doca_pe.h>
#include <doca_types.h>

#define WINDOW_MAX 256u /* tasks in flight, as the doca engine's window */
/* A DMA that has not completed after this long will not: the device or
 * the host is gone. */
#define DMA_WAIT_NS    ((uint64_t)10 * 1000000000u)
#define IDLE_POLLS     4096u /* empty progress calls between clock reads */
#define PONG_POLLS_MAX (1u << 20)

struct doca_raw_host {
    struct doca_dev *dev;
    struct doca_mmap *mmap;
};

struct draw_worker;

/* A task's bufs; the task's user data. */
struct draw_slot {
    struct doca_buf *src, *dst;
    struct draw_worker *dw;
};

struct draw_worker {
    struct doca_mmap *remote; /* from the host's export */
    struct doca_mmap *local;  /* the thread's WORKER_MEM */
    struct doca_buf_inventory *inv;
    struct doca_pe *pe;
    struct doca_dma *dma;
    size_t chunk;    /* bytes per task at most */
    unsigned window; /* memcpy tasks the context holds */
    unsigned inflight;
    doca_error_t status; /* the first failure since the transfer began */
    unsigned nfree;
    unsigned free[WINDOW_MAX]; /* indexes of free slots */
    struct draw_slot slot[WINDOW_MAX];
};

struct doca_raw {
    struct doca_dev *dev;
    struct doca_record rec;
};

/* The first DOCA call of a setup that failed, for the note. */
struct trail {
    const char *what;
    doca_error_t err;
};

/* Record err; 1 to go on. */
static int step(struct trail *t, const char *what, doca_error_t err)
{
    if (err != DOCA_SUCCESS) {
        *t = (struct trail){.what = what, .err = err};
    }
    return err == DOCA_SUCCESS;
}

static const char *dev_pci(int host)
{
    const char *env = getenv("HMAF_DOCA_DEV");

    if (env != NULL && env[0] != '\0') {
        return env;
    }
    return host ? HOST_DEV : DPU_DEV;
}

static doca_error_t open_dev(const char *pci, struct doca_dev **dev_out)
{
    struct doca_devinfo **list = NULL;
    uint32_t n = 0;
    doca_error_t err = doca_devinfo_create_list(&list, &n);

    if (err != DOCA_SUCCESS) {
        return err;
    }
    err = DOCA_ERROR_NOT_FOUND;
    for (uint32_t i = 0; i < n && err == DOCA_ERROR_NOT_FOUND; i++) {
        uint8_t eq = 0;
        if (doca_devinfo_is_equal_pci_addr(list[i], pci, &eq) == DOCA_SUCCESS &&
            eq) {
            err = doca_dev_open(list[i], dev_out);
        }
    }
    doca_devinfo_destroy_list(list);
    return err;
}

static doca_error_t supported(uint8_t cap)
{
    return cap ? DOCA_SUCCESS : DOCA_ERROR_NOT_SUPPORTED;
}

/* ------------------------------------------------------------------ */
/* Host                                                                */
/* ------------------------------------------------------------------ */

static int host_export(struct doca_raw_host *h, void *mem, size_t len,
                       struct doca_record *rec, struct trail *t)
{
    const void *desc = NULL;
    size_t desc_len = 0;
    uint8_t can_export = 0;

    if (!(step(t, "doca_dev_open", open_dev(dev_pci(1), &h->dev)) &&
          step(t, "doca_mmap_cap_is_export_pci_supported",
               doca_mmap_cap_is_export_pci_supported(
                   doca_dev_as_devinfo(h->dev), &can_export)) &&
          step(t, "export_pci", supported(can_export)) &&
          step(t, "doca_mmap_create", doca_mmap_create(&h->mmap)) &&
          step(t, "doca_mmap_set_memrange",
               doca_mmap_set_memrange(h->mmap, mem, len)) &&
          step(t, "doca_mmap_set_permissions",
               doca_mmap_set_permissions(h->mmap,
                                         DOCA_ACCESS_FLAG_PCI_READ_WRITE)) &&
          step(t, "doca_mmap_add_dev", doca_mmap_add_dev(h->mmap, h->dev)) &&
          step(t, "doca_mmap_start", doca_mmap_start(h->mmap)) &&
          step(t, "doca_mmap_export_pci",
               doca_mmap_export_pci(h->mmap, h->dev, &desc, &desc_len)))) {
        return -1;
    }
    if (desc_len == 0 || desc_len > sizeof(rec->desc)) {
        step(t, "the descriptor's size", DOCA_ERROR_TOO_BIG);
        return -1;
    }
    memcpy(rec->desc, desc, desc_len);
    rec->desc_len = (uint32_t)desc_len;
    return 0;
}

int doca_raw_export(void *mem, size_t len, void *rec_out,
                    struct doca_raw_host **host_out)
{
    struct doca_record *rec = rec_out;
    struct doca_raw_host *h = calloc(1, sizeof(*h));
    struct trail t = {.what = "calloc", .err = DOCA_ERROR_NO_MEMORY};

    record_init(rec, mem, len);
    *host_out = NULL;
    if (h != NULL && host_export(h, mem, len, rec, &t) == 0) {
        snprintf(rec->note, sizeof(rec->note),
                 "host: %zu bytes exported on %s, descriptor %u bytes", len,
                 dev_pci(1), rec->desc_len);
        *host_out = h;
        return 0;
    }
    snprintf(rec->note, sizeof(rec->note), "host: %s on %s: %s", t.what,
             dev_pci(1), doca_error_get_name(t.err));
    doca_raw_unexport(h);
    return -1;
}

/* An exported mmap cannot be stopped (DOCA 2.10: NOT_PERMITTED): only
 * destroying it ends the export, and with it every import of it; the dpu
 * side has released its own by now. */
void doca_raw_unexport(struct doca_raw_host *h)
{
    if (h == NULL) {
        return;
    }
    if (h->mmap != NULL) {
        doca_error_t err = doca_mmap_destroy(h->mmap);
        if (err != DOCA_SUCCESS) {
            fprintf(stderr, "hmaf-bench: doca_mmap_destroy (export): %s\n",
                    doca_error_get_name(err));
        }
    }
    if (h->dev != NULL) {
        doca_dev_close(h->dev);
    }
    free(h);
}

/* ------------------------------------------------------------------ */
/* Dpu side: transfers                                                 */
/* ------------------------------------------------------------------ */

static void slot_put(struct draw_worker *dw, struct draw_slot *s)
{
    if (s->src != NULL) {
        doca_buf_dec_refcount(s->src, NULL);
    }
    if (s->dst != NULL) {
        doca_buf_dec_refcount(s->dst, NULL);
    }
    s->src = s->dst = NULL;
    dw->free[dw->nfree++] = (unsigned)(s - dw->slot);
}

static void draw_complete(struct doca_dma_task_memcpy *task,
                          struct draw_slot *s, doca_error_t status)
{
    struct draw_worker *dw = s->dw;

    if (status != DOCA_SUCCESS && dw->status == DOCA_SUCCESS) {
        dw->status = status;
    }
    doca_task_free(doca_dma_task_memcpy_as_task(task));
    slot_put(dw, s);
    dw->inflight--;
}

static void draw_done(struct doca_dma_task_memcpy *task,
                      union doca_data task_user_data,
                      union doca_data ctx_user_data)
{
    (void)ctx_user_data;
    draw_complete(task, task_user_data.ptr, DOCA_SUCCESS);
}

static void draw_failed(struct doca_dma_task_memcpy *task,
                        union doca_data task_user_data,
                        union doca_data ctx_user_data)
{
    (void)ctx_user_data;
    draw_complete(task, task_user_data.ptr,
                  doca_task_get_status(doca_dma_task_memcpy_as_task(task)));
}

/* Progress until at most `left` tasks are in flight; DOCA_ERROR_TIME_OUT
 * when none completed for DMA_WAIT_NS. */
static doca_error_t draw_wait(struct draw_worker *dw, unsigned left)
{
    uint64_t deadline = 0; /* 0: tasks are completing */
    unsigned idle = 0;

    while (dw->inflight > left) {
        if (doca_pe_progress(dw->pe)) {
            /* Progress: a long transfer that keeps completing tasks is
             * not stuck, however long it takes in all. */
            idle = 0;
            deadline = 0;
            continue;
        }
        if (++idle % IDLE_POLLS != 0) {
            continue;
        }
        /* Clock reads only when idle for a while: none on the fast path. */
        if (deadline == 0) {
            deadline = now_ns() + DMA_WAIT_NS;
        } else if (now_ns() >= deadline) {
            return DOCA_ERROR_TIME_OUT;
        }
    }
    return DOCA_SUCCESS;
}

/* The bufs of one task: the source's data is [from, from + len), the
 * destination is empty with room for len at `to`. */
static doca_error_t get_bufs(struct draw_worker *dw, struct doca_mmap *from_mm,
                             void *from, struct doca_mmap *to_mm, void *to,
                             size_t len, struct draw_slot *s)
{
    doca_error_t err = doca_buf_inventory_buf_get_by_data(dw->inv, from_mm,
                                                          from, len, &s->src);

    if (err == DOCA_SUCCESS) {
        err = doca_buf_inventory_buf_get_by_addr(dw->inv, to_mm, to, len,
                                                 &s->dst);
    }
    return err;
}

/* Submit one memcpy task between local and host address remote; a slot
 * must be free. */
static doca_error_t draw_post(struct draw_worker *dw, int is_write, void *local,
                              uint64_t remote, size_t len)
{
    struct draw_slot *s = &dw->slot[dw->free[--dw->nfree]];
    struct doca_dma_task_memcpy *task = NULL;
    void *there = (void *)(uintptr_t)remote;
    doca_error_t err =
        is_write ? get_bufs(dw, dw->local, local, dw->remote, there, len, s)
                 : get_bufs(dw, dw->remote, there, dw->local, local, len, s);

    if (err == DOCA_SUCCESS) {
        err = doca_dma_task_memcpy_alloc_init(
            dw->dma, s->src, s->dst, (union doca_data){.ptr = s}, &task);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_task_submit(doca_dma_task_memcpy_as_task(task));
        if (err != DOCA_SUCCESS) {
            doca_task_free(doca_dma_task_memcpy_as_task(task));
        }
    }
    if (err != DOCA_SUCCESS) {
        slot_put(dw, s);
        return err;
    }
    dw->inflight++;
    return DOCA_SUCCESS;
}

static int draw_check(doca_error_t err, const char *who)
{
    if (err == DOCA_SUCCESS) {
        return 0;
    }
    fprintf(stderr, "hmaf-bench: %s: DMA memcpy: %s (%s)\n", who,
            doca_error_get_name(err), doca_error_get_descr(err));
    return -1;
}

/*
 * segs as memcpy tasks of at most dw->chunk bytes each, with at most
 * `window` in flight: 1 is one at a time (each task waited for before the
 * next is submitted), dw->window is pipelined. cpu_work(work) runs after
 * the last submit, before the wait for what is still in flight.
 */
static int draw_segs(struct worker *w, int is_write, const hmaf_seg_t *segs,
                     size_t n, unsigned window, uint64_t work)
{
    struct draw_worker *dw = w->draw;
    doca_error_t err = DOCA_SUCCESS, waited;

    dw->status = DOCA_SUCCESS;
    for (size_t i = 0; i < n && err == DOCA_SUCCESS; i++) {
        for (size_t off = 0; off < segs[i].len && err == DOCA_SUCCESS;
             off += dw->chunk) {
            size_t left = segs[i].len - off;
            err = draw_wait(dw, window - 1);
            if (err == DOCA_SUCCESS) {
                err = draw_post(dw, is_write, (uint8_t *)segs[i].local + off,
                                segs[i].remote_addr + off,
                                left < dw->chunk ? left : dw->chunk);
            }
        }
    }
    if (work > 0 && err == DOCA_SUCCESS) {
        cpu_work(work);
    }
    waited = draw_wait(dw, 0);
    err = err != DOCA_SUCCESS      ? err
          : waited != DOCA_SUCCESS ? waited
                                   : dw->status;
    return draw_check(err, window == 1 ? "doca-raw" : "doca-pipe");
}

int doca_raw_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return draw_segs(w, is_write, seg, 1, 1, 0);
}

int doca_raw_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    return draw_segs(w, 0, segs, n, 1, 0);
}

int doca_pipe_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return draw_segs(w, is_write, seg, 1, w->draw->window, 0);
}

int doca_pipe_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    return draw_segs(w, 0, segs, n, w->draw->window, 0);
}

int doca_pipe_overlap(struct worker *w, const hmaf_seg_t *segs, size_t n,
                      uint64_t work)
{
    return draw_segs(w, 0, segs, n, w->draw->window, work);
}

/* As the raw cma ping: write the request word, then read the reply word
 * until the host's spinning pong thread has echoed it - each a DMA. */
int doca_raw_ping(struct worker *w)
{
    uint64_t seq = ++w->b->ping_seq, reply = 0;
    hmaf_seg_t req = {.local = w->scratch,
                      .remote_addr =
                          w->b->pp + offsetof(struct pingpong, request),
                      .len = sizeof(seq)};
    hmaf_seg_t rep = {.local = w->scratch + 64,
                      .remote_addr =
                          w->b->pp + offsetof(struct pingpong, reply),
                      .len = sizeof(reply)};

    memcpy(req.local, &seq, sizeof(seq));
    if (draw_segs(w, 1, &req, 1, 1, 0) < 0) {
        return -1;
    }
    for (unsigned polls = 0; polls < PONG_POLLS_MAX; polls++) {
        if (draw_segs(w, 0, &rep, 1, 1, 0) < 0) {
            return -1;
        }
        memcpy(&reply, rep.local, sizeof(reply));
        if (reply == seq) {
            return 0;
        }
    }
    fprintf(stderr, "hmaf-bench: doca-raw ping: no echo from the host\n");
    return -1;
}

/* ------------------------------------------------------------------ */
/* Dpu side: setup                                                     */
/* ------------------------------------------------------------------ */

static doca_error_t set_window(struct draw_worker *dw, uint32_t max_tasks)
{
    dw->window = max_tasks < WINDOW_MAX ? max_tasks : WINDOW_MAX;
    return dw->window > 0 ? DOCA_SUCCESS : DOCA_ERROR_NOT_SUPPORTED;
}

/* The host's range imported, the thread's memory registered. */
static int import_memory(const struct doca_raw *d, struct worker *w,
                         struct draw_worker *dw, struct trail *t)
{
    return step(t, "doca_mmap_create_from_export",
                doca_mmap_create_from_export(NULL, d->rec.desc, d->rec.desc_len,
                                             d->dev, &dw->remote)) &&
           step(t, "doca_mmap_create", doca_mmap_create(&dw->local)) &&
           step(t, "doca_mmap_set_memrange",
                doca_mmap_set_memrange(dw->local, w->mem, WORKER_MEM)) &&
           step(t, "doca_mmap_set_permissions",
                doca_mmap_set_permissions(dw->local,
                                          DOCA_ACCESS_FLAG_LOCAL_READ_WRITE)) &&
           step(t, "doca_mmap_add_dev", doca_mmap_add_dev(dw->local, d->dev)) &&
           step(t, "doca_mmap_start", doca_mmap_start(dw->local));
}

/* A DMA context with a window of memcpy tasks on its own progress engine,
 * and bufs for every task. */
static int make_dma(const struct doca_raw *d, struct draw_worker *dw,
                    struct trail *t)
{
    uint32_t max_tasks = 0;

    return step(t, "doca_pe_create", doca_pe_create(&dw->pe)) &&
           step(t, "doca_dma_create", doca_dma_create(d->dev, &dw->dma)) &&
           step(t, "doca_dma_cap_get_max_num_tasks",
                doca_dma_cap_get_max_num_tasks(dw->dma, &max_tasks)) &&
           step(t, "max_num_tasks", set_window(dw, max_tasks)) &&
           step(t, "doca_dma_task_memcpy_set_conf",
                doca_dma_task_memcpy_set_conf(dw->dma, draw_done, draw_failed,
                                              dw->window)) &&
           step(t, "doca_buf_inventory_create",
                doca_buf_inventory_create(2 * (size_t)dw->window, &dw->inv)) &&
           step(t, "doca_buf_inventory_start",
                doca_buf_inventory_start(dw->inv)) &&
           step(t, "doca_pe_connect_ctx",
                doca_pe_connect_ctx(dw->pe, doca_dma_as_ctx(dw->dma))) &&
           step(t, "doca_ctx_start", doca_ctx_start(doca_dma_as_ctx(dw->dma)));
}

/* Stop the context; 0 once it is idle. DOCA may finish stopping in later
 * progress calls (tasks in flight complete as flushed); one that never
 * started is idle already, and its stop fails harmlessly. */
static int stop_ctx(struct draw_worker *dw)
{
    struct doca_ctx *ctx = doca_dma_as_ctx(dw->dma);
    enum doca_ctx_states state = DOCA_CTX_STATE_STOPPING;
    uint64_t deadline = now_ns() + DMA_WAIT_NS;
    doca_error_t err = doca_ctx_stop(ctx);

    while (doca_ctx_get_state(ctx, &state) == DOCA_SUCCESS &&
           state != DOCA_CTX_STATE_IDLE && now_ns() < deadline) {
        doca_pe_progress(dw->pe);
    }
    if (state == DOCA_CTX_STATE_IDLE) {
        return 0;
    }
    fprintf(stderr,
            "hmaf-bench: doca-raw: the DMA context did not stop "
            "(doca_ctx_stop: %s, state %d, %u tasks in flight)\n",
            doca_error_get_name(err), (int)state, dw->inflight);
    return -1;
}

/* In DOCA's order: context, mmaps, inventory, progress engine. 0; -1 when
 * the context would not stop: DOCA refuses to destroy it, and everything
 * its tasks may still use (bufs, mmaps, inventory, progress engine, the
 * slots), so all of it is left allocated, knowingly. */
static int worker_teardown(struct draw_worker *dw)
{
    if (dw == NULL) {
        return 0;
    }
    if (dw->dma != NULL && stop_ctx(dw) != 0) {
        fprintf(stderr, "hmaf-bench: doca-raw: leaving a thread's DMA "
                        "context, mmaps and inventory allocated\n");
        return -1;
    }
    if (dw->dma != NULL) {
        doca_dma_destroy(dw->dma);
    }
    if (dw->remote != NULL) {
        doca_mmap_destroy(dw->remote);
    }
    if (dw->local != NULL) {
        doca_mmap_stop(dw->local);
        doca_mmap_destroy(dw->local);
    }
    if (dw->inv != NULL) {
        doca_buf_inventory_stop(dw->inv);
        doca_buf_inventory_destroy(dw->inv);
    }
    if (dw->pe != NULL) {
        doca_pe_destroy(dw->pe);
    }
    free(dw);
    return 0;
}

static int worker_setup(const struct doca_raw *d, struct worker *w,
                        size_t chunk, struct trail *t)
{
    struct draw_worker *dw = calloc(1, sizeof(*dw));

    if (dw == NULL) {
        *t = (struct trail){.what = "calloc", .err = DOCA_ERROR_NO_MEMORY};
        return -1;
    }
    w->draw = dw;
    dw->chunk = chunk;
    for (unsigned i = 0; i < WINDOW_MAX; i++) {
        dw->slot[i].dw = dw;
        dw->free[i] = i;
    }
    dw->nfree = WINDOW_MAX;
    return import_memory(d, w, dw, t) && make_dma(d, dw, t) ? 0 : -1;
}

/* The host's record, checked: it covers the buffer and its tail. */
static int fetch_record(struct bench *b, struct doca_record *rec)
{
    uint64_t at = 0;
    size_t len = 0;
    int ret = hmaf_session_lookup(b->s, "doca-raw", &at, &len);

    if (ret == 0 && len != sizeof(*rec)) {
        ret = HMAF_EPROTO;
    }
    if (ret == 0) {
        ret = hmaf_session_read(b->s, rec, at, sizeof(*rec));
    }
    if (ret < 0) {
        snprintf(b->draw_note, sizeof(b->draw_note),
                 "doca-raw: not available (no export record from the host: "
                 "%s)",
                 hmaf_strerror(ret));
        return -1;
    }
    rec->note[NOTE_LEN - 1] = '\0';
    if (rec->magic != REC_MAGIC || rec->desc_len == 0 ||
        rec->desc_len > sizeof(rec->desc) || rec->addr > b->buf ||
        b->buf + HOST_LEN > rec->addr + rec->len) {
        snprintf(b->draw_note, sizeof(b->draw_note),
                 "doca-raw: not available (%s)",
                 rec->magic == REC_MAGIC ? rec->note : "bad export record");
        return -1;
    }
    return 0;
}

/* The device, checked for what the contenders do; *chunk_out the bytes
 * one task may move. */
static int open_dpu_dev(struct doca_raw *d, size_t *chunk_out, struct trail *t)
{
    struct doca_devinfo *info;
    uint64_t max_buf = 0;
    uint8_t can_import = 0;

    if (!step(t, "doca_dev_open", open_dev(dev_pci(0), &d->dev))) {
        return -1;
    }
    info = doca_dev_as_devinfo(d->dev);
    if (!(step(t, "doca_dma_cap_task_memcpy_is_supported",
               doca_dma_cap_task_memcpy_is_supported(info)) &&
          step(t, "doca_mmap_cap_is_create_from_export_pci_supported",
               doca_mmap_cap_is_create_from_export_pci_supported(
                   info, &can_import)) &&
          step(t, "create_from_export", supported(can_import)) &&
          step(t, "doca_dma_cap_task_memcpy_get_max_buf_size",
               doca_dma_cap_task_memcpy_get_max_buf_size(info, &max_buf)) &&
          step(t, "max_buf_size", supported(max_buf > 0)))) {
        return -1;
    }
    *chunk_out = max_buf < XFER_MAX ? (size_t)max_buf : XFER_MAX;
    return 0;
}

/* The DOCA emulation's timed model, when asked for (tests/doca, doca_emu.h):
 * its figures come from a model of a card, said in the header. */
static const char *timed_model(void)
{
    const char *v = getenv("DOCA_EMU_TIMED");

    return v != NULL && strcmp(v, "1") == 0 ? " (DOCA_EMU_TIMED=1)" : "";
}

static int draw_setup(struct bench *b, struct doca_raw *d, struct trail *t)
{
    size_t chunk = 0;
    char size[32];

    if (open_dpu_dev(d, &chunk, t) < 0) {
        return -1;
    }
    for (unsigned i = 0; i < b->nworkers; i++) {
        if (worker_setup(d, &b->w[i], chunk, t) < 0) {
            return -1;
        }
    }
    snprintf(b->draw_note, sizeof(b->draw_note),
             "doca-raw, doca-pipe: raw DOCA DMA on %s%s, at most %s per "
             "task, a window of %u tasks; %s",
             dev_pci(0), timed_model(), size_text(chunk, size, sizeof(size)),
             b->w[0].draw->window, d->rec.note);
    return 0;
}

int doca_raw_open(struct bench *b)
{
    struct trail t = {.what = "calloc", .err = DOCA_ERROR_NO_MEMORY};
    struct doca_raw *d;

    if (strcmp(b->engine, "doca") != 0) {
        return 0; /* the cma baselines apply */
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL || fetch_record(b, &d->rec) < 0) {
        free(d);
        return 0;
    }
    b->draw = d;
    if (draw_setup(b, d, &t) < 0) {
        snprintf(b->draw_note, sizeof(b->draw_note),
                 "doca-raw: not available (%s on %s: %s)", t.what, dev_pci(0),
                 doca_error_get_name(t.err));
        doca_raw_close(b);
    }
    return 0;
}

/* A context left running (worker_teardown) still holds the device: it
 * stays open then. */
void doca_raw_close(struct bench *b)
{
    int left = 0;

    if (b->draw == NULL) {
        return;
    }
    for (unsigned i = 0; i < THREADS_MAX; i++) {
        left |= worker_teardown(b->w[i].draw) != 0;
        b->w[i].draw = NULL;
    }
    if (b->draw->dev != NULL && !left) {
        doca_dev_close(b->draw->dev);
    }
    free(b->draw);
    b->draw = NULL;
}

int doca_raw_usable(const struct bench *b)
{
    return b->draw != NULL;
}

#else /* !HMAF_BENCH_DOCA */

int doca_raw_export(void *mem, size_t len, void *rec_out,
                    struct doca_raw_host **host_out)
{
    struct doca_record *rec = rec_out;

    record_init(rec, mem, len);
    snprintf(rec->note, sizeof(rec->note),
             "host: hmaf-bench built without DOCA");
    *host_out = NULL;
    return -1;
}

void doca_raw_unexport(struct doca_raw_host *h)
{
    (void)h;
}

int doca_raw_open(struct bench *b)
{
    if (strcmp(b->engine, "doca") == 0) {
        snprintf(b->draw_note, sizeof(b->draw_note),
                 "doca-raw: not built (hmaf-bench without DOCA)");
    }
    return 0;
}

void doca_raw_close(struct bench *b)
{
    (void)b;
}

int doca_raw_usable(const struct bench *b)
{
    (void)b;
    return 0;
}

int doca_raw_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    (void)w;
    (void)is_write;
    (void)seg;
    return -1;
}

int doca_raw_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    (void)w;
    (void)segs;
    (void)n;
    return -1;
}

int doca_pipe_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return doca_raw_rw(w, is_write, seg);
}

int doca_pipe_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    return doca_raw_batch(w, segs, n);
}

int doca_pipe_overlap(struct worker *w, const hmaf_seg_t *segs, size_t n,
                      uint64_t work)
{
    (void)work;
    return doca_raw_batch(w, segs, n);
}

int doca_raw_ping(struct worker *w)
{
    (void)w;
    return -1;
}

#endif /* HMAF_BENCH_DOCA */
