/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The DOCA emulation itself: mmap and inventory rules, task limits,
 * callbacks only from progress, a real DMA read and write against a forked
 * host process, invalidation when that host stops its mmap, buf lists and
 * scatter-gather DMA, Comm Channel messages and limits, the injected
 * faults, progress engine notification handles and event modes, the
 * memlock rule and the completion shuffle's seed, and the export fence:
 * an exporter's destroy returns only after the DMA tasks that found the
 * export live moved their bytes.
 */
/* doca_buf_chain_list_tail is experimental in DOCA 2.10; tested here. */
#define DOCA_ALLOW_EXPERIMENTAL_API

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <doca_buf.h>
#include <doca_buf_inventory.h>
#include <doca_comch.h>
#include <doca_ctx.h>
#include <doca_dev.h>
#include <doca_dma.h>
#include <doca_emu.h>
#include <doca_mmap.h>
#include <doca_pe.h>

#include "check.h"
#include "memlock.h"

#define CHECK_DOCA(expr, want)                                                 \
    do {                                                                       \
        doca_error_t check_r_ = (expr);                                        \
        if (check_r_ != (want)) {                                              \
            fprintf(stderr, "%s:%d: %s returned %s, want %s\n", __FILE__,      \
                    __LINE__, #expr, doca_error_get_name(check_r_),            \
                    doca_error_get_name(want));                                \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define DOCA_OK(expr) CHECK_DOCA(expr, DOCA_SUCCESS)

#define HOST_PCI "b1:00.0"
#define DPU_PCI  "03:00.0"
#define HOST_LEN (256 * 1024)

static struct doca_dev *open_dev(const char *pci)
{
    struct doca_devinfo **list;
    struct doca_dev *dev = NULL;
    uint32_t n;
    uint8_t eq;

    DOCA_OK(doca_devinfo_create_list(&list, &n));
    for (uint32_t i = 0; i < n && dev == NULL; i++) {
        DOCA_OK(doca_devinfo_is_equal_pci_addr(list[i], pci, &eq));
        if (eq) {
            DOCA_OK(doca_dev_open(list[i], &dev));
        }
    }
    DOCA_OK(doca_devinfo_destroy_list(list));
    CHECK(dev != NULL);
    return dev;
}

static struct doca_mmap *make_mmap(void *addr, size_t len, uint32_t perms,
                                   struct doca_dev *dev)
{
    struct doca_mmap *mm;

    DOCA_OK(doca_mmap_create(&mm));
    DOCA_OK(doca_mmap_set_memrange(mm, addr, len));
    DOCA_OK(doca_mmap_set_permissions(mm, perms));
    DOCA_OK(doca_mmap_add_dev(mm, dev));
    DOCA_OK(doca_mmap_start(mm));
    return mm;
}

/* ---- a DMA user, as the dpu side will be ---- */

struct dpu {
    struct doca_dev *dev;
    struct doca_pe *pe;
    struct doca_dma *dma;
    struct doca_buf_inventory *inv;
    int done, failed;
    doca_error_t status;
};

static void dma_done(struct doca_dma_task_memcpy *task, union doca_data ud,
                     union doca_data ctx_ud)
{
    struct dpu *d = ctx_ud.ptr;

    (void)ud;
    d->status = doca_task_get_status(doca_dma_task_memcpy_as_task(task));
    d->status == DOCA_SUCCESS ? d->done++ : d->failed++;
    doca_task_free(doca_dma_task_memcpy_as_task(task));
}

static void dpu_open(struct dpu *d, uint32_t num_tasks)
{
    *d = (struct dpu){.dev = open_dev(DPU_PCI)};
    DOCA_OK(doca_pe_create(&d->pe));
    DOCA_OK(doca_dma_create(d->dev, &d->dma));
    DOCA_OK(
        doca_dma_task_memcpy_set_conf(d->dma, dma_done, dma_done, num_tasks));
    CHECK_DOCA(doca_ctx_start(doca_dma_as_ctx(d->dma)),
               DOCA_ERROR_NOT_CONNECTED);
    DOCA_OK(doca_pe_connect_ctx(d->pe, doca_dma_as_ctx(d->dma)));
    DOCA_OK(doca_ctx_set_user_data(doca_dma_as_ctx(d->dma),
                                   (union doca_data){.ptr = d}));
    DOCA_OK(doca_ctx_start(doca_dma_as_ctx(d->dma)));
    DOCA_OK(doca_buf_inventory_create(8, &d->inv));
    DOCA_OK(doca_buf_inventory_start(d->inv));
}

static void dpu_close(struct dpu *d)
{
    DOCA_OK(doca_ctx_stop(doca_dma_as_ctx(d->dma)));
    CHECK_DOCA(doca_pe_destroy(d->pe), DOCA_ERROR_IN_USE);
    DOCA_OK(doca_dma_destroy(d->dma));
    DOCA_OK(doca_buf_inventory_destroy(d->inv));
    DOCA_OK(doca_pe_destroy(d->pe));
    DOCA_OK(doca_dev_close(d->dev));
}

/* One memcpy of n bytes; returns its completion status. */
static doca_error_t dma_copy(struct dpu *d, struct doca_mmap *smm, void *src,
                             struct doca_mmap *dmm, void *dst, size_t n)
{
    struct doca_buf *sb, *db;
    struct doca_dma_task_memcpy *t;
    int before = d->done + d->failed;
    size_t len;

    DOCA_OK(doca_buf_inventory_buf_get_by_data(d->inv, smm, src, n, &sb));
    DOCA_OK(doca_buf_inventory_buf_get_by_addr(d->inv, dmm, dst, n, &db));
    DOCA_OK(doca_dma_task_memcpy_alloc_init(d->dma, sb, db,
                                            (union doca_data){0}, &t));
    DOCA_OK(doca_task_submit(doca_dma_task_memcpy_as_task(t)));
    CHECK_EQ(d->done + d->failed, before); /* no callback from submit */
    while (d->done + d->failed == before) {
        doca_pe_progress(d->pe);
    }
    DOCA_OK(doca_buf_get_data_len(db, &len));
    CHECK_EQ(len, d->status == DOCA_SUCCESS ? n : 0);
    DOCA_OK(doca_buf_dec_refcount(sb, NULL));
    DOCA_OK(doca_buf_dec_refcount(db, NULL));
    return d->status;
}

static void test_mmap_rules(void)
{
    static uint8_t mem[4096];
    struct doca_dev *dev = open_dev(HOST_PCI);
    struct doca_mmap *mm;
    const void *desc;
    size_t len;

    DOCA_OK(doca_mmap_create(&mm));
    CHECK_DOCA(doca_mmap_start(mm), DOCA_ERROR_INVALID_VALUE); /* no range */
    DOCA_OK(doca_mmap_set_memrange(mm, mem, sizeof(mem)));
    CHECK_DOCA(doca_mmap_set_memrange(mm, mem, 1), DOCA_ERROR_NOT_PERMITTED);
    CHECK_DOCA(
        doca_mmap_set_permissions(mm, DOCA_ACCESS_FLAG_PCI_READ_ONLY |
                                          DOCA_ACCESS_FLAG_PCI_READ_WRITE),
        DOCA_ERROR_INVALID_VALUE);
    DOCA_OK(doca_mmap_add_dev(mm, dev));
    CHECK_DOCA(doca_mmap_add_dev(mm, dev), DOCA_ERROR_ALREADY_EXIST);
    CHECK_DOCA(doca_mmap_export_pci(mm, dev, &desc, &len),
               DOCA_ERROR_NOT_PERMITTED); /* not started */
    DOCA_OK(doca_mmap_start(mm));
    CHECK_DOCA(doca_mmap_set_permissions(mm, DOCA_ACCESS_FLAG_PCI_READ_WRITE),
               DOCA_ERROR_BAD_STATE);
    CHECK_DOCA(doca_mmap_set_memrange(mm, mem, 1), DOCA_ERROR_BAD_STATE);
    CHECK_DOCA(doca_mmap_add_dev(mm, dev), DOCA_ERROR_NOT_PERMITTED);
    /* Default permissions are local only: no export. */
    CHECK_DOCA(doca_mmap_export_pci(mm, dev, &desc, &len),
               DOCA_ERROR_NOT_PERMITTED);
    DOCA_OK(doca_mmap_stop(mm));
    DOCA_OK(doca_mmap_set_permissions(mm, DOCA_ACCESS_FLAG_PCI_READ_ONLY));
    DOCA_OK(doca_mmap_start(mm));
    DOCA_OK(doca_mmap_export_pci(mm, dev, &desc, &len));
    /* exported: neither stopped nor restarted; destroy ends it */
    CHECK_DOCA(doca_mmap_stop(mm), DOCA_ERROR_NOT_PERMITTED);
    CHECK_DOCA(doca_mmap_start(mm), DOCA_ERROR_NOT_PERMITTED);
    DOCA_OK(doca_mmap_destroy(mm));
    DOCA_OK(doca_dev_close(dev));
}

static void test_inventory(void)
{
    static uint8_t mem[4096];
    struct doca_dev *dev = open_dev(DPU_PCI);
    struct doca_mmap *mm =
        make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
    struct doca_buf_inventory *inv;
    struct doca_buf *a, *b, *c;
    uint16_t rc;
    uint32_t nfree;

    DOCA_OK(doca_buf_inventory_create(2, &inv));
    CHECK_DOCA(doca_buf_inventory_buf_get_by_addr(inv, mm, mem, 8, &a),
               DOCA_ERROR_BAD_STATE); /* not started */
    DOCA_OK(doca_buf_inventory_start(inv));
    CHECK_DOCA(doca_buf_inventory_buf_get_by_addr(inv, mm, mem + 4090, 8, &a),
               DOCA_ERROR_INVALID_VALUE); /* past the range */
    DOCA_OK(doca_buf_inventory_buf_get_by_addr(inv, mm, mem, 8, &a));
    DOCA_OK(doca_buf_inventory_buf_get_by_data(inv, mm, mem + 8, 8, &b));
    CHECK_DOCA(doca_buf_inventory_buf_get_by_data(inv, mm, mem, 8, &c),
               DOCA_ERROR_NO_MEMORY);
    DOCA_OK(doca_buf_inc_refcount(a, &rc));
    CHECK_EQ(rc, 1);
    DOCA_OK(doca_buf_dec_refcount(a, &rc));
    CHECK_EQ(rc, 2);
    CHECK_DOCA(doca_mmap_stop(mm), DOCA_ERROR_NOT_PERMITTED); /* bufs */
    CHECK_DOCA(doca_mmap_destroy(mm), DOCA_ERROR_NOT_PERMITTED);
    CHECK_DOCA(doca_buf_inventory_destroy(inv), DOCA_ERROR_IN_USE);
    DOCA_OK(doca_buf_dec_refcount(a, &rc));
    DOCA_OK(doca_buf_inventory_get_num_free_elements(inv, &nfree));
    CHECK_EQ(nfree, 1);
    DOCA_OK(doca_buf_dec_refcount(b, NULL));
    DOCA_OK(doca_buf_inventory_destroy(inv));
    DOCA_OK(doca_mmap_destroy(mm));
    DOCA_OK(doca_dev_close(dev));
}

static enum doca_ctx_states seen_states[8];
static int nseen_states;

static void note_state(const union doca_data ud, struct doca_ctx *ctx,
                       enum doca_ctx_states prev, enum doca_ctx_states next)
{
    (void)ud, (void)ctx, (void)prev;
    if (nseen_states < 8) {
        seen_states[nseen_states++] = next;
    }
}

/* A malformed task (sb holds more than max_buf_size, say): it is taken by
 * alloc_init and submit, fails with `want` in the error callback, and
 * stops the context (STOPPING before the callback, IDLE once the task is
 * freed); started again for the caller. */
static void check_fatal_task(struct dpu *d, struct doca_buf *sb,
                             struct doca_buf *db, doca_error_t want)
{
    struct doca_ctx *ctx = doca_dma_as_ctx(d->dma);
    struct doca_dma_task_memcpy *t;
    enum doca_ctx_states state;
    union doca_data none = {0};

    nseen_states = 0;
    DOCA_OK(doca_ctx_set_state_changed_cb(ctx, note_state));
    DOCA_OK(doca_dma_task_memcpy_alloc_init(d->dma, sb, db, none, &t));
    DOCA_OK(doca_task_submit(doca_dma_task_memcpy_as_task(t)));
    d->done = d->failed = 0;
    while (d->done + d->failed == 0) {
        doca_pe_progress(d->pe); /* the callback may take a few calls */
    }
    CHECK_DOCA(d->status, want);
    CHECK_EQ(nseen_states, 2);
    CHECK_EQ(seen_states[0], DOCA_CTX_STATE_STOPPING);
    CHECK_EQ(seen_states[1], DOCA_CTX_STATE_IDLE);
    DOCA_OK(doca_ctx_get_state(ctx, &state));
    CHECK_EQ(state, DOCA_CTX_STATE_IDLE);
    CHECK_DOCA(doca_dma_task_memcpy_alloc_init(d->dma, sb, db, none, &t),
               DOCA_ERROR_BAD_STATE);
    DOCA_OK(doca_ctx_set_state_changed_cb(ctx, NULL));
    DOCA_OK(doca_ctx_start(ctx));
}

/* With DOCA_EMU_FAULT_DMA_FATAL, an injected fault stops the context:
 * of three tasks submitted, the first moves its bytes, the second fails
 * with IO_FAILED and the third is flushed (IO_FAILED, no bytes). */
static void test_fatal_fault(void)
{
    static uint8_t src[64], dst[3][64];
    struct doca_dma_task_memcpy *t[3];
    struct doca_buf *sb[3], *db[3];
    struct doca_mmap *sm, *dm;
    enum doca_ctx_states state;
    struct dpu d;

    setenv("DOCA_EMU_FAULT_DMA_EVERY", "2", 1);
    setenv("DOCA_EMU_FAULT_DMA_FATAL", "1", 1);
    doca_emu_reset();
    dpu_open(&d, 3);
    memset(src, 7, sizeof(src));
    sm = make_mmap(src, sizeof(src), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    dm = make_mmap(dst, sizeof(dst), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    for (int i = 0; i < 3; i++) {
        DOCA_OK(doca_buf_inventory_buf_get_by_data(d.inv, sm, src, 64, &sb[i]));
        DOCA_OK(
            doca_buf_inventory_buf_get_by_addr(d.inv, dm, dst[i], 64, &db[i]));
        DOCA_OK(doca_dma_task_memcpy_alloc_init(d.dma, sb[i], db[i],
                                                (union doca_data){0}, &t[i]));
        DOCA_OK(doca_task_submit(doca_dma_task_memcpy_as_task(t[i])));
    }
    while (d.done + d.failed < 3) {
        doca_pe_progress(d.pe);
    }
    CHECK_EQ(d.done, 1);
    CHECK_EQ(d.failed, 2);
    CHECK_EQ(dst[0][0], 7);
    CHECK_EQ(dst[2][0], 0);
    doca_pe_progress(d.pe);
    DOCA_OK(doca_ctx_get_state(doca_dma_as_ctx(d.dma), &state));
    CHECK_EQ(state, DOCA_CTX_STATE_IDLE);
    for (int i = 0; i < 3; i++) {
        DOCA_OK(doca_buf_dec_refcount(sb[i], NULL));
        DOCA_OK(doca_buf_dec_refcount(db[i], NULL));
    }
    unsetenv("DOCA_EMU_FAULT_DMA_EVERY");
    unsetenv("DOCA_EMU_FAULT_DMA_FATAL");
    doca_emu_reset();
    DOCA_OK(doca_ctx_start(doca_dma_as_ctx(d.dma)));
    DOCA_OK(doca_mmap_destroy(sm));
    DOCA_OK(doca_mmap_destroy(dm));
    dpu_close(&d);
}

#define ORDER_TASKS 8

static int order_seen[ORDER_TASKS], norder_seen;

static void order_done(struct doca_dma_task_memcpy *task, union doca_data ud,
                       union doca_data ctx_ud)
{
    (void)ctx_ud;
    order_seen[norder_seen++] = (int)ud.u64;
    doca_task_free(doca_dma_task_memcpy_as_task(task));
}

/* ORDER_TASKS copies submitted at once, with DOCA_EMU_SEED=seed: the
 * order of their callbacks. At most DOCA_EMU_DMA_COMPLETIONS (4) come per
 * progress call, and each task's bytes have moved by its callback. */
static void run_order(const char *seed, int order_out[ORDER_TASKS])
{
    static uint8_t src[ORDER_TASKS], dst[ORDER_TASKS];
    struct doca_buf *sb[ORDER_TASKS], *db[ORDER_TASKS];
    struct doca_dma_task_memcpy *t;
    struct doca_mmap *sm, *dm;
    int calls = 0;
    struct dpu d;

    setenv("DOCA_EMU_SEED", seed, 1);
    doca_emu_reset(); /* the first DMA ctx from now on: the seed's first */
    dpu_open(&d, ORDER_TASKS);
    DOCA_OK(doca_ctx_stop(doca_dma_as_ctx(d.dma)));
    DOCA_OK(doca_dma_task_memcpy_set_conf(d.dma, order_done, order_done,
                                          ORDER_TASKS));
    DOCA_OK(doca_ctx_start(doca_dma_as_ctx(d.dma)));
    memset(src, 3, sizeof(src));
    sm = make_mmap(src, sizeof(src), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    dm = make_mmap(dst, sizeof(dst), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    DOCA_OK(doca_buf_inventory_destroy(d.inv));
    DOCA_OK(doca_buf_inventory_create(2 * ORDER_TASKS, &d.inv));
    DOCA_OK(doca_buf_inventory_start(d.inv));
    norder_seen = 0;
    for (int i = 0; i < ORDER_TASKS; i++) {
        DOCA_OK(doca_buf_inventory_buf_get_by_data(d.inv, sm, src + i, 1,
                                                   &sb[i]));
        DOCA_OK(
            doca_buf_inventory_buf_get_by_addr(d.inv, dm, dst + i, 1, &db[i]));
        DOCA_OK(doca_dma_task_memcpy_alloc_init(
            d.dma, sb[i], db[i], (union doca_data){.u64 = (uint64_t)i}, &t));
        DOCA_OK(doca_task_submit(doca_dma_task_memcpy_as_task(t)));
    }
    while (norder_seen < ORDER_TASKS) {
        int before = norder_seen;

        CHECK(calls++ < 100);
        doca_pe_progress(d.pe);
        CHECK(norder_seen - before <= 4);
    }
    CHECK(calls >= 3); /* 8 tasks, 4 a call, none in the first */
    for (int i = 0; i < ORDER_TASKS; i++) {
        CHECK_EQ(dst[order_seen[i]], 3);
        DOCA_OK(doca_buf_dec_refcount(sb[i], NULL));
        DOCA_OK(doca_buf_dec_refcount(db[i], NULL));
    }
    memcpy(order_out, order_seen, sizeof(order_seen));
    DOCA_OK(doca_mmap_destroy(sm));
    DOCA_OK(doca_mmap_destroy(dm));
    dpu_close(&d);
    unsetenv("DOCA_EMU_SEED");
    doca_emu_reset();
}

/* Completions do not come in submit order, and DOCA_EMU_SEED repeats an
 * order (the seeds are fixed: a drawn one could happen to keep it). */
static void test_completion_order(void)
{
    int one[ORDER_TASKS], again[ORDER_TASKS], two[ORDER_TASKS];
    int in_order = 1;

    run_order("1", one);
    run_order("1", again);
    run_order("2", two);
    for (int i = 0; i < ORDER_TASKS; i++) {
        in_order &= one[i] == i;
    }
    CHECK(!in_order);
    CHECK(memcmp(one, again, sizeof(one)) == 0);
    CHECK(memcmp(one, two, sizeof(one)) != 0);
}

static void test_local_dma(void)
{
    static uint8_t src[16384], dst[8192];
    struct dpu d;
    struct doca_mmap *mm, *dm;
    struct doca_buf *sb, *db;
    struct doca_dma_task_memcpy *t1, *t2;
    union doca_data none = {0};

    setenv("DOCA_EMU_MAX_BUF_SIZE", "4096", 1);
    doca_emu_reset();
    dpu_open(&d, 1);
    mm = make_mmap(src, sizeof(src), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    for (size_t i = 0; i < sizeof(src); i++) {
        src[i] = (uint8_t)(i * 7);
    }
    DOCA_OK(doca_buf_inventory_buf_get_by_data(d.inv, mm, src, 4097, &sb));
    DOCA_OK(
        doca_buf_inventory_buf_get_by_addr(d.inv, mm, src + 4097, 4097, &db));
    /* Nothing validates a task before it runs: too big, it is allocated
     * and submitted, and fails in the error callback (below). */
    DOCA_OK(doca_dma_task_memcpy_alloc_init(d.dma, sb, db, none, &t1));
    CHECK_DOCA(doca_dma_task_memcpy_alloc_init(d.dma, sb, db, none, &t2),
               DOCA_ERROR_NO_MEMORY); /* num_tasks is 1 */
    /* Stopping with a task out waits for it to come back. */
    CHECK_DOCA(doca_ctx_stop(doca_dma_as_ctx(d.dma)), DOCA_ERROR_IN_PROGRESS);
    doca_task_free(doca_dma_task_memcpy_as_task(t1));
    doca_pe_progress(d.pe);
    DOCA_OK(doca_ctx_start(doca_dma_as_ctx(d.dma)));
    check_fatal_task(&d, sb, db, DOCA_ERROR_TOO_BIG);
    DOCA_OK(doca_buf_dec_refcount(sb, NULL));
    DOCA_OK(doca_buf_dec_refcount(db, NULL));

    dm = make_mmap(dst, sizeof(dst), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    DOCA_OK(dma_copy(&d, mm, src, dm, dst, 4096));
    CHECK(memcmp(src, dst, 4096) == 0);

    setenv("DOCA_EMU_FAULT_DMA_EVERY", "2", 1);
    doca_emu_reset();
    DOCA_OK(dma_copy(&d, mm, src, dm, dst, 16));
    CHECK_DOCA(dma_copy(&d, mm, src, dm, dst, 16), DOCA_ERROR_IO_FAILED);
    unsetenv("DOCA_EMU_FAULT_DMA_EVERY");
    unsetenv("DOCA_EMU_MAX_BUF_SIZE");
    doca_emu_reset();
    DOCA_OK(doca_mmap_destroy(mm));
    DOCA_OK(doca_mmap_destroy(dm));
    dpu_close(&d);
}

/* ---- registration checks, descriptor size, counters ---- */

/* A local mmap over mem, its range set, not started. */
static struct doca_mmap *unstarted_mmap(void *mem, size_t len,
                                        struct doca_dev *dev)
{
    struct doca_mmap *mm;

    DOCA_OK(doca_mmap_create(&mm));
    DOCA_OK(doca_mmap_set_memrange(mm, mem, len));
    DOCA_OK(doca_mmap_add_dev(mm, dev));
    return mm;
}

/* The default, as on a card: a pin counts against RLIMIT_MEMLOCK as it is
 * at that start, unless the process has CAP_IPC_LOCK. Run in a child,
 * which drops the capability and lowers its limit. */
static void memlock_rlimit_child(uint8_t *mem, size_t page,
                                 struct doca_dev *dev)
{
    struct memlock_saved saved;
    struct rlimit rl;
    struct doca_mmap *a, *b;

    unsetenv("DOCA_EMU_MEMLOCK");
    doca_emu_reset();
    CHECK(memlock_limit(&saved, 3 * page, 1) == 0);
    CHECK(!memlock_has_cap());
    a = make_mmap(mem, page, DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
    b = unstarted_mmap(mem, 4 * page, dev);
    CHECK_DOCA(doca_mmap_start(b), DOCA_ERROR_DRIVER); /* 1 + 4 > 3 */
    CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    rl.rlim_cur = 5 * page;
    CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    DOCA_OK(doca_mmap_start(b)); /* the new limit, with no reset */
    DOCA_OK(doca_mmap_destroy(b));
    CHECK(memlock_restore(&saved) == 0);
    if (saved.dropped_cap) { /* root: the capability lifts the limit */
        CHECK(memlock_limit(&saved, page, 0) == 0);
        b = make_mmap(mem, 4 * page, DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
        DOCA_OK(doca_mmap_destroy(b));
        CHECK(memlock_restore(&saved) == 0);
    }
    DOCA_OK(doca_mmap_destroy(a));
    exit(0);
}

/* Started local mmaps are charged in whole pages to DOCA_EMU_MEMLOCK when
 * set, whatever the capabilities: past it start fails with DRIVER (a
 * failed pin), and a destroy gives the pages back. Imports pin nothing.
 * Unset, RLIMIT_MEMLOCK applies (memlock_rlimit_child). */
static void test_memlock(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *mem = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct doca_dev *dev = open_dev(HOST_PCI);
    struct doca_mmap *a, *b, *c;
    char limit[32];
    int status;
    pid_t pid;

    CHECK(mem != MAP_FAILED);
    snprintf(limit, sizeof(limit), "%zu", 3 * page);
    setenv("DOCA_EMU_MEMLOCK", limit, 1);
    doca_emu_reset();
    a = make_mmap(mem + 1, page, DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
    b = unstarted_mmap(mem, 2 * page, dev);
    CHECK_DOCA(doca_mmap_start(b), DOCA_ERROR_DRIVER); /* 2 + 2 pages > 3 */
    c = make_mmap(mem, page, DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
    DOCA_OK(doca_mmap_destroy(a));
    DOCA_OK(doca_mmap_start(b)); /* 1 + 2 */
    DOCA_OK(doca_mmap_destroy(b));
    DOCA_OK(doca_mmap_destroy(c));
    setenv("DOCA_EMU_MEMLOCK", "0", 1);
    doca_emu_reset();
    a = make_mmap(mem, 4 * page, DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
    DOCA_OK(doca_mmap_destroy(a));
    unsetenv("DOCA_EMU_MEMLOCK");
    doca_emu_reset();

    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        memlock_rlimit_child(mem, page, dev);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    DOCA_OK(doca_dev_close(dev));
    munmap(mem, 4 * page);
}

static struct doca_emu_counters counters_now(void)
{
    struct doca_emu_counters c;

    doca_emu_counters(&c);
    return c;
}

/* Start an mmap over [addr, addr + len) with perms; the start's status.
 * The mmap is destroyed either way. */
static doca_error_t try_start(void *addr, size_t len, uint32_t perms,
                              struct doca_dev *dev)
{
    struct doca_mmap *mm;
    doca_error_t err;

    DOCA_OK(doca_mmap_create(&mm));
    DOCA_OK(doca_mmap_set_memrange(mm, addr, len));
    DOCA_OK(doca_mmap_set_permissions(mm, perms));
    DOCA_OK(doca_mmap_add_dev(mm, dev));
    err = doca_mmap_start(mm);
    DOCA_OK(doca_mmap_destroy(mm));
    return err;
}

/* Start pins on hardware: a hole, a page without access, or a read-only
 * page under a write permission fails the whole range with DRIVER. Only
 * successful starts count. */
static void test_start_pins(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *p = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct doca_dev *dev = open_dev(HOST_PCI);
    struct doca_emu_counters before = counters_now();
    const uint32_t rw = DOCA_ACCESS_FLAG_LOCAL_READ_WRITE;

    CHECK(p != MAP_FAILED);
    DOCA_OK(try_start(p + 1, 4 * page - 2, rw, dev)); /* unaligned is fine */
    CHECK(mprotect(p + page, page, PROT_READ) == 0);
    CHECK_DOCA(try_start(p, 4 * page, rw, dev), DOCA_ERROR_DRIVER);
    CHECK_DOCA(try_start(p + page, 1, DOCA_ACCESS_FLAG_PCI_READ_WRITE, dev),
               DOCA_ERROR_DRIVER);
    DOCA_OK(try_start(p, 4 * page, DOCA_ACCESS_FLAG_PCI_READ_ONLY, dev));
    DOCA_OK(try_start(p, 4 * page, DOCA_ACCESS_FLAG_LOCAL_READ_ONLY, dev));
    CHECK(mprotect(p + 2 * page, page, PROT_NONE) == 0);
    CHECK_DOCA(try_start(p, 4 * page, DOCA_ACCESS_FLAG_PCI_READ_ONLY, dev),
               DOCA_ERROR_DRIVER);
    CHECK(munmap(p + 2 * page, page) == 0);
    CHECK_DOCA(
        try_start(p + page, 2 * page, DOCA_ACCESS_FLAG_PCI_READ_ONLY, dev),
        DOCA_ERROR_DRIVER);
    CHECK_DOCA(try_start(p + 3 * page - 1, 2, rw, dev), DOCA_ERROR_DRIVER);
    DOCA_OK(try_start(p + 3 * page, page, rw, dev)); /* past the hole */
    CHECK_EQ(counters_now().mmaps_started - before.mmaps_started, 4);
    CHECK_EQ(counters_now().mmaps_stopped - before.mmaps_stopped, 4);
    CHECK(munmap(p, 2 * page) == 0 && munmap(p + 3 * page, page) == 0);
    DOCA_OK(doca_dev_close(dev));
}

/* Export mm and import its descriptor here; returns the descriptor's
 * length. */
static size_t export_import(struct doca_mmap *mm, struct doca_dev *dev,
                            uint8_t *copy_out, size_t cap)
{
    struct doca_dev *dpu = open_dev(DPU_PCI);
    struct doca_mmap *imp;
    const void *desc;
    size_t len;

    DOCA_OK(doca_mmap_export_pci(mm, dev, &desc, &len));
    CHECK(len <= cap);
    memcpy(copy_out, desc, len);
    DOCA_OK(doca_mmap_create_from_export(NULL, desc, len, dpu, &imp));
    DOCA_OK(doca_mmap_destroy(imp));
    DOCA_OK(doca_dev_close(dpu));
    return len;
}

/* Only the dpu side's PF has create_from_export (DOCA_EMU_IMPORT_DEVICES):
 * an import with the host's device is NOT_SUPPORTED, as the capability
 * says. */
static void test_import_cap(void)
{
    static uint8_t mem[4096];
    struct doca_dev *host = open_dev(HOST_PCI), *dpu = open_dev(DPU_PCI);
    struct doca_mmap *mm, *imp;
    const void *desc;
    uint8_t cap = 1;
    size_t len;

    DOCA_OK(doca_mmap_cap_is_create_from_export_pci_supported(
        doca_dev_as_devinfo(host), &cap));
    CHECK_EQ(cap, 0);
    DOCA_OK(doca_mmap_cap_is_create_from_export_pci_supported(
        doca_dev_as_devinfo(dpu), &cap));
    CHECK_EQ(cap, 1);
    DOCA_OK(doca_mmap_cap_is_export_pci_supported(doca_dev_as_devinfo(host),
                                                  &cap));
    CHECK_EQ(cap, 1);
    mm = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_PCI_READ_ONLY, host);
    DOCA_OK(doca_mmap_export_pci(mm, host, &desc, &len));
    CHECK_DOCA(doca_mmap_create_from_export(NULL, desc, len, host, &imp),
               DOCA_ERROR_NOT_SUPPORTED);
    DOCA_OK(doca_mmap_create_from_export(NULL, desc, len, dpu, &imp));
    DOCA_OK(doca_mmap_destroy(imp));
    setenv("DOCA_EMU_IMPORT_DEVICES", "b1:00.0,03:00.0", 1);
    doca_emu_reset();
    DOCA_OK(doca_mmap_create_from_export(NULL, desc, len, host, &imp));
    DOCA_OK(doca_mmap_destroy(imp));
    unsetenv("DOCA_EMU_IMPORT_DEVICES");
    doca_emu_reset();
    DOCA_OK(doca_mmap_destroy(mm));
    DOCA_OK(doca_dev_close(host));
    DOCA_OK(doca_dev_close(dpu));
}

/* Descriptors are 250 bytes by default, about a card's;
 * DOCA_EMU_EXPORT_DESC_SIZE pads them with zeros to another size; an mmap
 * keeps the size of its first export; a damaged or short blob is
 * refused. */
static void test_export_desc_size(void)
{
    static uint8_t mem[4096];
    static uint8_t desc[2048];
    struct doca_dev *dev = open_dev(HOST_PCI), *dpu = open_dev(DPU_PCI);
    struct doca_mmap *old, *big, *imp;
    size_t len;

    old = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_PCI_READ_ONLY, dev);
    CHECK_EQ(export_import(old, dev, desc, sizeof(desc)), 250);
    setenv("DOCA_EMU_EXPORT_DESC_SIZE", "1024", 1);
    doca_emu_reset();
    CHECK_EQ(export_import(old, dev, desc, sizeof(desc)), 250);
    big = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_PCI_READ_ONLY, dev);
    len = export_import(big, dev, desc, sizeof(desc));
    CHECK_EQ(len, 1024);
    for (size_t i = 64; i < len; i++) {
        CHECK_EQ(desc[i], 0);
    }
    desc[1023] = 1;
    CHECK_DOCA(doca_mmap_create_from_export(NULL, desc, len, dpu, &imp),
               DOCA_ERROR_INVALID_VALUE);
    CHECK_DOCA(doca_mmap_create_from_export(NULL, desc, 63, dpu, &imp),
               DOCA_ERROR_INVALID_VALUE);
    unsetenv("DOCA_EMU_EXPORT_DESC_SIZE");
    doca_emu_reset();
    CHECK_EQ(export_import(big, dev, desc, sizeof(desc)), 1024);
    DOCA_OK(doca_mmap_destroy(old));
    DOCA_OK(doca_mmap_destroy(big));
    DOCA_OK(doca_dev_close(dev));
    DOCA_OK(doca_dev_close(dpu));
}

/* A knob set to `value` is a broken setup: the emulation aborts. */
static void check_knob_aborts(const char *name, const char *value)
{
    int status;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv(name, value, 1);
        signal(SIGABRT, SIG_DFL);
        if (freopen("/dev/null", "w", stderr) == NULL) {
            _exit(3);
        }
        doca_emu_reset();
        _exit(0);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* A size below the descriptor's core. */
static void test_export_desc_size_too_small(void)
{
    check_knob_aborts("DOCA_EMU_EXPORT_DESC_SIZE", "47");
}

struct churn {
    struct doca_dev *dev;
    uint8_t mem[4096];
};

/* Start and stop mmaps; the counters must add up across threads. */
static void *churn_main(void *arg)
{
    struct churn *c = arg;

    for (int i = 0; i < 200; i++) {
        struct doca_mmap *mm = make_mmap(
            c->mem, sizeof(c->mem), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, c->dev);

        if (i % 2 == 1) {
            DOCA_OK(doca_mmap_stop(mm)); /* else destroy stops it */
        }
        DOCA_OK(doca_mmap_destroy(mm));
    }
    return NULL;
}

/* Local starts and stops (a destroy stops a started mmap), imports, and
 * DMA tasks with their bytes; failed tasks and imports' teardown do not
 * count. */
static void test_counters(void)
{
    static uint8_t src[8192], dst[8192];
    static struct churn churns[4];
    struct doca_emu_counters before = counters_now(), after;
    pthread_t th[4];
    struct doca_mmap *sm, *dm, *imp;
    const void *desc;
    size_t len;
    struct dpu d;

    dpu_open(&d, 2);
    sm = make_mmap(src, sizeof(src),
                   DOCA_ACCESS_FLAG_LOCAL_READ_WRITE |
                       DOCA_ACCESS_FLAG_PCI_READ_ONLY,
                   d.dev);
    dm = make_mmap(dst, sizeof(dst), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    DOCA_OK(doca_mmap_export_pci(sm, d.dev, &desc, &len));
    DOCA_OK(doca_mmap_create_from_export(NULL, desc, len, d.dev, &imp));
    DOCA_OK(dma_copy(&d, sm, src, dm, dst, 1000));
    DOCA_OK(dma_copy(&d, sm, src, dm, dst, 24));
    setenv("DOCA_EMU_FAULT_DMA_EVERY", "1", 1);
    doca_emu_reset();
    CHECK_DOCA(dma_copy(&d, sm, src, dm, dst, 64), DOCA_ERROR_IO_FAILED);
    unsetenv("DOCA_EMU_FAULT_DMA_EVERY");
    doca_emu_reset();
    DOCA_OK(doca_mmap_destroy(imp));
    CHECK_DOCA(doca_mmap_stop(sm), DOCA_ERROR_NOT_PERMITTED); /* exported */
    DOCA_OK(doca_mmap_destroy(sm));
    DOCA_OK(doca_mmap_destroy(dm));
    after = counters_now();
    CHECK_EQ(after.mmaps_started - before.mmaps_started, 2);
    CHECK_EQ(after.mmaps_stopped - before.mmaps_stopped, 2);
    CHECK_EQ(after.imports - before.imports, 1);
    CHECK_EQ(after.dma_tasks - before.dma_tasks, 2);
    CHECK_EQ(after.dma_bytes - before.dma_bytes, 1024);

    for (int i = 0; i < 4; i++) {
        churns[i].dev = d.dev;
        CHECK(pthread_create(&th[i], NULL, churn_main, &churns[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
    }
    before = after;
    after = counters_now();
    CHECK_EQ(after.mmaps_started - before.mmaps_started, 800);
    CHECK_EQ(after.mmaps_stopped - before.mmaps_stopped, 800);
    dpu_close(&d);
}

/* ---- the export fence ---- */

/* Linked with -Wl,--wrap=process_vm_writev: a DMA write armed to park
 * stops right before its copy — after it found the export live — until
 * the test lets it go. */
ssize_t __real_process_vm_writev(pid_t pid, const struct iovec *local,
                                 unsigned long liovcnt,
                                 const struct iovec *remote,
                                 unsigned long riovcnt, unsigned long flags);

ssize_t __wrap_process_vm_writev(pid_t pid, const struct iovec *local,
                                 unsigned long liovcnt,
                                 const struct iovec *remote,
                                 unsigned long riovcnt, unsigned long flags);

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int armed, parked, go;
} park = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

ssize_t __wrap_process_vm_writev(pid_t pid, const struct iovec *local,
                                 unsigned long liovcnt,
                                 const struct iovec *remote,
                                 unsigned long riovcnt, unsigned long flags)
{
    pthread_mutex_lock(&park.lock);
    if (park.armed) {
        park.armed = 0;
        park.parked = 1;
        pthread_cond_broadcast(&park.cond);
        while (!park.go) {
            pthread_cond_wait(&park.cond, &park.lock);
        }
    }
    pthread_mutex_unlock(&park.lock);
    return __real_process_vm_writev(pid, local, liovcnt, remote, riovcnt,
                                    flags);
}

struct fence_case {
    struct dpu d;
    struct doca_mmap *export, *local, *imp;
    uint8_t *host, *src;
    uint8_t seen[64]; /* the host's bytes as the destroy returned */
    _Atomic int tid, destroyed;
};

static void *fence_writer(void *arg)
{
    struct fence_case *c = arg;

    DOCA_OK(dma_copy(&c->d, c->local, c->src, c->imp, c->host, 64));
    return NULL;
}

static void *fence_destroyer(void *arg)
{
    struct fence_case *c = arg;

    atomic_store(&c->tid, (int)syscall(SYS_gettid));
    DOCA_OK(doca_mmap_destroy(c->export));
    memcpy(c->seen, c->host, sizeof(c->seen));
    atomic_store(&c->destroyed, 1);
    return NULL;
}

/* Is thread tid of ours blocked in fcntl (the fence's wait)? */
static int in_fcntl(int tid)
{
    char path[64];
    long nr = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
    f = fopen(path, "re");
    if (f != NULL) {
        if (fscanf(f, "%ld", &nr) != 1) {
            nr = -1; /* "running" */
        }
        fclose(f);
    }
    return nr == SYS_fcntl;
}

/* A write task parked between its look at the live word and its copy:
 * the exporter's destroy must wait for the copy (it blocks in the fence;
 * without the fence it returns at once), so whatever the host sees once
 * the destroy returned is what it keeps. */
static void test_destroy_fences_dma(void)
{
    static uint8_t host[4096] __attribute__((aligned(4096)));
    static uint8_t src[4096] __attribute__((aligned(4096)));
    static struct fence_case c;
    const void *desc;
    pthread_t writer, destroyer;
    size_t len;

    c = (struct fence_case){.host = host, .src = src};
    memset(host, 0x11, sizeof(host));
    memset(src, 0x77, sizeof(src));
    dpu_open(&c.d, 2);
    c.export = make_mmap(host, sizeof(host),
                         DOCA_ACCESS_FLAG_LOCAL_READ_WRITE |
                             DOCA_ACCESS_FLAG_PCI_READ_WRITE,
                         c.d.dev);
    c.local = make_mmap(src, sizeof(src), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE,
                        c.d.dev);
    DOCA_OK(doca_mmap_export_pci(c.export, c.d.dev, &desc, &len));
    DOCA_OK(doca_mmap_create_from_export(NULL, desc, len, c.d.dev, &c.imp));
    park.armed = 1;
    CHECK(pthread_create(&writer, NULL, fence_writer, &c) == 0);
    pthread_mutex_lock(&park.lock);
    while (!park.parked) {
        pthread_cond_wait(&park.cond, &park.lock);
    }
    pthread_mutex_unlock(&park.lock);
    CHECK(pthread_create(&destroyer, NULL, fence_destroyer, &c) == 0);
    while (!atomic_load(&c.destroyed) &&
           (atomic_load(&c.tid) == 0 || !in_fcntl(atomic_load(&c.tid)))) {
        sched_yield();
    }
    pthread_mutex_lock(&park.lock);
    park.go = 1;
    pthread_cond_broadcast(&park.cond);
    pthread_mutex_unlock(&park.lock);
    CHECK(pthread_join(writer, NULL) == 0);
    CHECK(pthread_join(destroyer, NULL) == 0);
    CHECK(memcmp(c.seen, host, sizeof(c.seen)) == 0); /* nothing landed late */
    CHECK(host[0] == 0x77); /* the task found the export live */
    DOCA_OK(doca_mmap_destroy(c.imp));
    DOCA_OK(doca_mmap_destroy(c.local));
    dpu_close(&c.d);
    park.parked = park.go = 0;
}

/* ---- a forked host that exports its memory ---- */

struct export_msg {
    uint64_t addr;
    size_t len;
    uint8_t desc[2][1024]; /* read-write, read-only */
    size_t desc_len[2];
};

static uint8_t host_pattern(size_t i, unsigned salt)
{
    return (uint8_t)((i * 2654435761u) >> 11 ^ salt);
}

/* Commands: 'v' the buffer holds salt 2 -> 1; 's' end both mmaps -> 1. */
static _Noreturn void host_main(int sock)
{
    uint8_t *mem = malloc(HOST_LEN);
    struct doca_dev *dev = open_dev(HOST_PCI);
    struct doca_mmap *mm[2];
    struct export_msg m = {.addr = (uintptr_t)mem, .len = HOST_LEN};
    const void *desc;
    char cmd;

    CHECK(mem != NULL);
    for (size_t i = 0; i < HOST_LEN; i++) {
        mem[i] = host_pattern(i, 1);
    }
    mm[0] = make_mmap(mem, HOST_LEN, DOCA_ACCESS_FLAG_PCI_READ_WRITE, dev);
    mm[1] = make_mmap(mem, HOST_LEN, DOCA_ACCESS_FLAG_PCI_READ_ONLY, dev);
    for (int i = 0; i < 2; i++) {
        DOCA_OK(doca_mmap_export_pci(mm[i], dev, &desc, &m.desc_len[i]));
        CHECK(m.desc_len[i] <= sizeof(m.desc[i]));
        memcpy(m.desc[i], desc, m.desc_len[i]);
    }
    CHECK(write(sock, &m, sizeof(m)) == sizeof(m));
    while (read(sock, &cmd, 1) == 1) {
        char ok = 1;

        for (size_t i = 0; cmd == 'v' && i < HOST_LEN; i++) {
            ok &= mem[i] == host_pattern(i, 2);
        }
        if (cmd == 's') { /* an exported mmap only ends by destroy */
            CHECK_DOCA(doca_mmap_stop(mm[0]), DOCA_ERROR_NOT_PERMITTED);
            DOCA_OK(doca_mmap_destroy(mm[0]));
            DOCA_OK(doca_mmap_destroy(mm[1]));
        }
        CHECK(write(sock, &ok, 1) == 1);
    }
    DOCA_OK(doca_dev_close(dev));
    free(mem);
    _exit(0);
}

static char host_command(int sock, char cmd)
{
    char reply = 0;

    CHECK(write(sock, &cmd, 1) == 1);
    CHECK(read(sock, &reply, 1) == 1);
    return reply;
}

/* Fork a host (host_main) and read what it exports into m; its pid. The
 * test skips if this process may not read the child's memory. */
static pid_t host_start(int *sock_out, struct export_msg *m)
{
    uint8_t probe;
    struct iovec l = {&probe, 1}, r;
    int sv[2];
    pid_t pid;

    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        host_main(sv[1]);
    }
    close(sv[1]);
    CHECK(read(sv[0], m, sizeof(*m)) == sizeof(*m));
    r = (struct iovec){(void *)(uintptr_t)m->addr, 1};
    if (process_vm_readv(pid, &l, 1, &r, 1, 0) != 1 && errno == EPERM) {
        kill(pid, SIGKILL);
        SKIP("process_vm_readv of our child: EPERM");
    }
    *sock_out = sv[0];
    return pid;
}

/* The dpu side's view of the forked host: a local mmap over local, and
 * imports of its read-write and read-only exports. */
static void import_host(const struct dpu *d, const struct export_msg *m,
                        uint8_t *local, size_t len, struct doca_mmap **lm,
                        struct doca_mmap **rw, struct doca_mmap **ro)
{
    *lm = make_mmap(local, len, DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d->dev);
    DOCA_OK(doca_mmap_create_from_export(NULL, m->desc[0], m->desc_len[0],
                                         d->dev, rw));
    DOCA_OK(doca_mmap_create_from_export(NULL, m->desc[1], m->desc_len[1],
                                         d->dev, ro));
}

static void host_wait(int sock, pid_t pid)
{
    int status;

    close(sock);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_cross_process(void)
{
    static uint8_t local[HOST_LEN];
    struct export_msg m;
    struct dpu d;
    struct doca_mmap *rw, *ro, *lm;
    int sock;
    pid_t pid = host_start(&sock, &m);

    dpu_open(&d, 4);
    import_host(&d, &m, local, sizeof(local), &lm, &rw, &ro);
    CHECK_DOCA(doca_mmap_stop(rw), DOCA_ERROR_NOT_PERMITTED);

    /* Read the range through both imports, then write it back. */
    void *host = (void *)(uintptr_t)m.addr;
    DOCA_OK(dma_copy(&d, rw, host, lm, local, HOST_LEN / 2));
    DOCA_OK(dma_copy(&d, ro, (uint8_t *)host + HOST_LEN / 2, lm,
                     local + HOST_LEN / 2, HOST_LEN / 2));
    for (size_t i = 0; i < HOST_LEN; i++) {
        CHECK_EQ(local[i], host_pattern(i, 1));
        local[i] = host_pattern(i, 2);
    }
    CHECK_DOCA(dma_copy(&d, lm, local, ro, host, 64), DOCA_ERROR_NOT_PERMITTED);
    DOCA_OK(dma_copy(&d, lm, local, rw, host, HOST_LEN));
    CHECK_EQ(host_command(sock, 'v'), 1);

    /* Injected: the read-only import dies after its second task. */
    setenv("DOCA_EMU_FAULT_STOP_AFTER", "2", 1);
    doca_emu_reset();
    DOCA_OK(dma_copy(&d, ro, host, lm, local, 64));
    CHECK_DOCA(dma_copy(&d, ro, host, lm, local, 64), DOCA_ERROR_DRIVER);
    unsetenv("DOCA_EMU_FAULT_STOP_AFTER");
    doca_emu_reset();

    /* The host stops: imports fail, new imports too. */
    CHECK_EQ(host_command(sock, 's'), 1);
    CHECK_DOCA(dma_copy(&d, rw, host, lm, local, 64), DOCA_ERROR_DRIVER);
    DOCA_OK(doca_mmap_destroy(rw));
    CHECK_DOCA(doca_mmap_create_from_export(NULL, m.desc[0], m.desc_len[0],
                                            d.dev, &rw),
               DOCA_ERROR_DRIVER);
    DOCA_OK(doca_mmap_destroy(ro));
    DOCA_OK(doca_mmap_destroy(lm));
    dpu_close(&d);
    host_wait(sock, pid);
}

/* ---- buf lists and scatter-gather DMA ---- */

static uint16_t refcount_of(const struct doca_buf *b)
{
    uint16_t rc;

    DOCA_OK(doca_buf_get_refcount(b, &rc));
    return rc;
}

static uint32_t list_len(const struct doca_buf *head)
{
    uint32_t n;

    DOCA_OK(doca_buf_get_list_len(head, &n));
    return n;
}

static uint32_t free_bufs(struct doca_buf_inventory *inv)
{
    uint32_t n;

    DOCA_OK(doca_buf_inventory_get_num_free_elements(inv, &n));
    return n;
}

/* is_first, is_last and is_in_list of b, as three digits ("110"). */
static int place_of(const struct doca_buf *b)
{
    uint8_t first, last, in;

    DOCA_OK(doca_buf_is_first_in_list(b, &first));
    DOCA_OK(doca_buf_is_last_in_list(b, &last));
    DOCA_OK(doca_buf_is_in_list(b, &in));
    return first * 100 + last * 10 + in;
}

static struct doca_buf *next_of(struct doca_buf *b)
{
    struct doca_buf *next;

    DOCA_OK(doca_buf_get_next_in_list(b, &next));
    return next;
}

static struct doca_buf *last_of(struct doca_buf *b)
{
    struct doca_buf *last;

    DOCA_OK(doca_buf_get_last_in_list(b, &last));
    return last;
}

/* a-b from lone a and b: only heads chain, list2 only at a count of 1,
 * and a later element's count is 1 with the head's standing for it. Then
 * c (once its extra reference is gone) and, by its tail, e: a-b-c-e. */
static void check_chaining(struct doca_buf *a, struct doca_buf *b,
                           struct doca_buf *c, struct doca_buf *e)
{
    CHECK_EQ(place_of(a), 110); /* a lone buf heads a list of one */
    CHECK_EQ(list_len(a), 1);
    CHECK(next_of(a) == NULL && last_of(a) == a);
    DOCA_OK(doca_buf_chain_list(a, b));
    CHECK_EQ(place_of(a), 101);
    CHECK_EQ(place_of(b), 11);
    CHECK_EQ(list_len(a), 2);
    CHECK_DOCA(doca_buf_get_list_len(b, &(uint32_t){0}),
               DOCA_ERROR_NOT_PERMITTED);
    CHECK(next_of(a) == b && last_of(a) == b && last_of(b) == b);
    CHECK_EQ(refcount_of(b), 1);
    CHECK_DOCA(doca_buf_inc_refcount(b, NULL), DOCA_ERROR_NOT_PERMITTED);
    CHECK_DOCA(doca_buf_dec_refcount(b, NULL), DOCA_ERROR_NOT_PERMITTED);
    CHECK_DOCA(doca_buf_chain_list(c, b), DOCA_ERROR_NOT_PERMITTED);
    CHECK_DOCA(doca_buf_chain_list(b, c), DOCA_ERROR_NOT_PERMITTED);
    CHECK_DOCA(doca_buf_chain_list(a, a), DOCA_ERROR_INVALID_VALUE);
    DOCA_OK(doca_buf_inc_refcount(c, NULL));
    CHECK_DOCA(doca_buf_chain_list(a, c), DOCA_ERROR_NOT_PERMITTED);
    DOCA_OK(doca_buf_dec_refcount(c, NULL));
    DOCA_OK(doca_buf_chain_list(a, c));
    CHECK_DOCA(doca_buf_chain_list_tail(a, b, e), DOCA_ERROR_INVALID_VALUE);
    DOCA_OK(doca_buf_chain_list_tail(a, c, e));
    CHECK_EQ(list_len(a), 4);
    CHECK(last_of(b) == e);
}

/* Chaining, walking, refcounts and unchaining, as doca_buf.h describes
 * them; each element is an inventory element of its own, and a head's
 * last reference takes its whole list back. */
static void test_buf_lists(void)
{
    static uint8_t mem[4096], other[64];
    struct doca_dev *dev = open_dev(DPU_PCI);
    struct doca_mmap *mm = make_mmap(mem, sizeof(mem),
                                     DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
    struct doca_mmap *om = make_mmap(other, sizeof(other),
                                     DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, dev);
    struct doca_buf_inventory *inv;
    struct doca_buf *a, *b, *c, *e;

    DOCA_OK(doca_buf_inventory_create(5, &inv));
    DOCA_OK(doca_buf_inventory_start(inv));
    DOCA_OK(doca_buf_inventory_buf_get_by_data(inv, mm, mem, 8, &a));
    DOCA_OK(doca_buf_inventory_buf_get_by_data(inv, mm, mem + 8, 8, &b));
    DOCA_OK(doca_buf_inventory_buf_get_by_addr(inv, mm, mem + 16, 8, &c));
    DOCA_OK(doca_buf_inventory_buf_get_by_addr(inv, om, other, 8, &e));
    check_chaining(a, b, c, e); /* e on another mmap */
    CHECK_EQ(free_bufs(inv), 1);

    CHECK_DOCA(doca_buf_unchain_list(a, a), DOCA_ERROR_INVALID_VALUE);
    CHECK_DOCA(doca_buf_unchain_list(c, b), DOCA_ERROR_INVALID_VALUE);
    DOCA_OK(doca_buf_unchain_list(a, c)); /* a-b and c-e */
    CHECK_EQ(list_len(a), 2);
    CHECK_EQ(list_len(c), 2);
    CHECK_EQ(place_of(c), 101);
    CHECK_EQ(refcount_of(c), 1);

    DOCA_OK(doca_buf_inc_refcount(a, NULL));
    DOCA_OK(doca_buf_dec_refcount(a, NULL));
    CHECK_EQ(free_bufs(inv), 1);
    DOCA_OK(doca_buf_dec_refcount(a, NULL));
    CHECK_EQ(free_bufs(inv), 3);
    CHECK_DOCA(doca_mmap_destroy(om), DOCA_ERROR_NOT_PERMITTED); /* e */
    DOCA_OK(doca_buf_dec_refcount(c, NULL));
    CHECK_EQ(free_bufs(inv), 5);
    DOCA_OK(doca_buf_inventory_destroy(inv));
    DOCA_OK(doca_mmap_destroy(mm));
    DOCA_OK(doca_mmap_destroy(om));
    DOCA_OK(doca_dev_close(dev));
}

static uint32_t list_cap_of(const char *pci)
{
    struct doca_dev *dev = open_dev(pci);
    uint32_t n;

    DOCA_OK(doca_dma_cap_task_memcpy_get_max_buf_list_len(
        doca_dev_as_devinfo(dev), &n));
    DOCA_OK(doca_dev_close(dev));
    return n;
}

/* The cap is per device: 4 everywhere by default, "N" for the devices a
 * "PCI=N" entry does not name; out of 1..1024 the emulation aborts. */
static void test_list_cap(void)
{
    CHECK_EQ(list_cap_of(HOST_PCI), 4);
    CHECK_EQ(list_cap_of(DPU_PCI), 4);
    setenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN", "1,0000:03:00.0=16", 1);
    doca_emu_reset();
    CHECK_EQ(list_cap_of(HOST_PCI), 1);
    CHECK_EQ(list_cap_of(DPU_PCI), 16);
    unsetenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN");
    doca_emu_reset();
    check_knob_aborts("DOCA_EMU_DMA_MAX_BUF_LIST_LEN", "0");
    check_knob_aborts("DOCA_EMU_DMA_MAX_BUF_LIST_LEN", "b1:00.0=1025");
}

static void set_list_cap(const char *n)
{
    setenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN", n, 1);
    doca_emu_reset();
}

/* A buf over [at, at + cap) of mm with its first `data` bytes as data,
 * chained after head unless head is NULL; returns the list's head. */
static struct doca_buf *add_buf(struct dpu *d, struct doca_buf *head,
                                struct doca_mmap *mm, uint8_t *at, size_t cap,
                                size_t data)
{
    struct doca_buf *b;

    DOCA_OK(doca_buf_inventory_buf_get_by_args(d->inv, mm, at, cap, at, data,
                                               &b));
    if (head == NULL) {
        return b;
    }
    DOCA_OK(doca_buf_chain_list(head, b));
    return head;
}

/* Submit src -> dst (submit never refuses) and wait for the callback. */
static doca_error_t run_memcpy(struct dpu *d, const struct doca_buf *src,
                               struct doca_buf *dst)
{
    struct doca_dma_task_memcpy *t;
    int before = d->done + d->failed;

    DOCA_OK(doca_dma_task_memcpy_alloc_init(d->dma, src, dst,
                                            (union doca_data){0}, &t));
    DOCA_OK(doca_task_submit(doca_dma_task_memcpy_as_task(t)));
    while (d->done + d->failed == before) {
        doca_pe_progress(d->pe);
    }
    return d->status;
}

static size_t data_len_of(const struct doca_buf *b)
{
    size_t n;

    DOCA_OK(doca_buf_get_data_len(b, &n));
    return n;
}

static void dpu_inventory(struct dpu *d, size_t n)
{
    DOCA_OK(doca_buf_inventory_destroy(d->inv));
    DOCA_OK(doca_buf_inventory_create(n, &d->inv));
    DOCA_OK(doca_buf_inventory_start(d->inv));
}

/* Gather and scatter between local lists: the source's data sections in
 * order (an empty one adds nothing), each destination element filled
 * after its data before the next; one task, its bytes counted once. */
static void test_dma_lists_local(void)
{
    static uint8_t src[256], dst[256];
    struct doca_emu_counters before = counters_now();
    struct doca_buf *s = NULL, *t = NULL;
    struct doca_mmap *sm, *dm;
    struct dpu d;

    dpu_open(&d, 2);
    dpu_inventory(&d, 8);
    memcpy(src, "abcde", 5);
    memcpy(src + 100, "xyz", 3);
    memset(dst, '.', sizeof(dst));
    dst[0] = 'Q';
    sm = make_mmap(src, sizeof(src), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    dm = make_mmap(dst, sizeof(dst), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    s = add_buf(&d, s, sm, src, 5, 5);
    s = add_buf(&d, s, sm, src + 50, 10, 0);
    s = add_buf(&d, s, sm, src + 100, 3, 3);
    t = add_buf(&d, t, dm, dst, 4, 1); /* room 3 after its 'Q' */
    t = add_buf(&d, t, dm, dst + 64, 10, 0);
    CHECK_EQ(free_bufs(d.inv), 3);
    DOCA_OK(run_memcpy(&d, s, t));
    CHECK(memcmp(dst, "Qabc.", 5) == 0);
    CHECK(memcmp(dst + 64, "dexyz.", 6) == 0);
    CHECK_EQ(data_len_of(t), 4);
    CHECK_EQ(data_len_of(next_of(t)), 5);
    CHECK_EQ(counters_now().dma_tasks - before.dma_tasks, 1);
    CHECK_EQ(counters_now().dma_bytes - before.dma_bytes, 8);
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
    CHECK_EQ(free_bufs(d.inv), 8);
    DOCA_OK(doca_mmap_destroy(sm));
    DOCA_OK(doca_mmap_destroy(dm));
    dpu_close(&d);
}

/* Malformed lists fail in the error callback (submit takes them), stop
 * the context and move nothing: a destination one byte short, a list
 * longer than the cap on either side, a later element given as a list,
 * a source whose total exceeds max_buf_size though each element fits. A
 * read-only destination element is NOT_PERMITTED, not fatal. At a cap of
 * 1 (no lists) a lone buf still goes. */
static void test_dma_lists_bad(void)
{
    static uint8_t src[256], dst[256], ro[64];
    struct doca_buf *s = NULL, *t = NULL, *big = NULL, *lone, *r = NULL;
    struct doca_mmap *sm, *dm, *rm;
    struct dpu d;

    dpu_open(&d, 2);
    dpu_inventory(&d, 12);
    sm = make_mmap(src, sizeof(src), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    dm = make_mmap(dst, sizeof(dst), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    rm = make_mmap(ro, sizeof(ro), DOCA_ACCESS_FLAG_LOCAL_READ_ONLY, d.dev);
    s = add_buf(&d, s, sm, src, 8, 8);
    s = add_buf(&d, s, sm, src + 8, 8, 8);
    t = add_buf(&d, t, dm, dst, 10, 2); /* room 8 */
    t = add_buf(&d, t, dm, dst + 10, 7, 0);
    check_fatal_task(&d, s, t, DOCA_ERROR_INVALID_VALUE); /* 16 into 15 */
    CHECK_EQ(data_len_of(t), 2);
    CHECK_EQ(dst[2], 0);

    t = add_buf(&d, t, dm, dst + 20, 1, 0); /* room 16 in 3 */
    big = add_buf(&d, big, dm, dst + 32, 64, 0);
    set_list_cap("2");
    check_fatal_task(&d, s, t, DOCA_ERROR_INVALID_VALUE); /* dst of 3 */
    s = add_buf(&d, s, sm, src + 16, 8, 8);
    check_fatal_task(&d, s, big, DOCA_ERROR_INVALID_VALUE); /* src of 3 */
    set_list_cap("4");
    check_fatal_task(&d, next_of(s), big, DOCA_ERROR_INVALID_VALUE);
    setenv("DOCA_EMU_MAX_BUF_SIZE", "20", 1); /* 24 in three bufs of 8 */
    doca_emu_reset();
    check_fatal_task(&d, s, big, DOCA_ERROR_TOO_BIG);
    unsetenv("DOCA_EMU_MAX_BUF_SIZE");
    doca_emu_reset();
    CHECK_EQ(data_len_of(t), 2);
    CHECK_EQ(data_len_of(big), 0);

    r = add_buf(&d, r, dm, dst + 100, 16, 0);
    r = add_buf(&d, r, rm, ro, 16, 0);
    CHECK_DOCA(run_memcpy(&d, s, r), DOCA_ERROR_NOT_PERMITTED);
    CHECK_EQ(data_len_of(r), 0);
    CHECK_EQ(dst[100], 0);

    set_list_cap("1");
    DOCA_OK(doca_buf_inventory_buf_get_by_data(d.inv, sm, src, 8, &lone));
    DOCA_OK(run_memcpy(&d, lone, big));
    check_fatal_task(&d, s, big, DOCA_ERROR_INVALID_VALUE);
    unsetenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN");
    doca_emu_reset();
    CHECK_EQ(data_len_of(big), 8);
    DOCA_OK(doca_buf_dec_refcount(lone, NULL));
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
    DOCA_OK(doca_buf_dec_refcount(big, NULL));
    DOCA_OK(doca_buf_dec_refcount(r, NULL));
    DOCA_OK(doca_mmap_destroy(sm));
    DOCA_OK(doca_mmap_destroy(dm));
    DOCA_OK(doca_mmap_destroy(rm));
    dpu_close(&d);
}

/* Knobs for a test: set, and unset again, as name/value pairs. */
struct knob {
    const char *name, *value;
};

static void set_knobs(const struct knob *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        setenv(k[i].name, k[i].value, 1);
    }
    doca_emu_reset();
}

static void unset_knobs(const struct knob *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsetenv(k[i].name);
    }
    doca_emu_reset();
}

/* Three host ranges gathered into two local bufs, the first holding 5
 * bytes already: 45 land after them, the other 3062 in the second. */
static void list_read_gather(struct dpu *d, struct doca_mmap *rw,
                             struct doca_mmap *lm, uint8_t *host,
                             uint8_t *local)
{
    struct doca_buf *s = NULL, *t = NULL;

    s = add_buf(d, s, rw, host + 10, 100, 100);
    s = add_buf(d, s, rw, host + 5000, 3000, 3000);
    s = add_buf(d, s, rw, host + 200000, 7, 7);
    t = add_buf(d, t, lm, local, 50, 5);
    t = add_buf(d, t, lm, local + 1000, 5000, 0);
    DOCA_OK(run_memcpy(d, s, t));
    CHECK_EQ(data_len_of(t), 50);
    CHECK_EQ(data_len_of(next_of(t)), 3062);
    for (size_t k = 0; k < 3107; k++) {
        size_t at = k < 100    ? 10 + k
                    : k < 3100 ? 5000 + k - 100
                               : 200000 + k - 3100;
        uint8_t got = k < 45 ? local[5 + k] : local[1000 + k - 45];

        CHECK_EQ(got, host_pattern(at, 1));
    }
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
}

/* One lone read of n host bytes at off into local + 60000. */
static uint8_t *read_back(struct dpu *d, struct doca_mmap *rw,
                          struct doca_mmap *lm, uint8_t *host, size_t off,
                          size_t n, uint8_t *local)
{
    struct doca_buf *s = add_buf(d, NULL, rw, host + off, n, n);
    struct doca_buf *t = add_buf(d, NULL, lm, local + 60000, n, 0);

    DOCA_OK(run_memcpy(d, s, t));
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
    return local + 60000;
}

/* Host and local memory in one list: a source gathering both (a read),
 * a destination scattering to both (a write). */
static void list_mixed(struct dpu *d, struct doca_mmap *rw,
                       struct doca_mmap *ro, struct doca_mmap *lm,
                       uint8_t *host, uint8_t *local)
{
    struct doca_buf *s, *t;

    memset(local + 7000, 0xab, 32);
    s = add_buf(d, NULL, ro, host, 16, 16);
    s = add_buf(d, s, lm, local + 7000, 16, 16);
    t = add_buf(d, NULL, lm, local + 8000, 32, 0);
    DOCA_OK(run_memcpy(d, s, t));
    for (size_t i = 0; i < 32; i++) {
        CHECK_EQ(local[8000 + i], i < 16 ? host_pattern(i, 1) : 0xab);
    }
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));

    s = add_buf(d, NULL, lm, local + 7000, 32, 32);
    t = add_buf(d, NULL, lm, local + 9000, 16, 0);
    t = add_buf(d, t, rw, host + 64, 16, 0);
    DOCA_OK(run_memcpy(d, s, t));
    CHECK(memcmp(local + 9000, local + 7000, 16) == 0);
    CHECK(memcmp(read_back(d, rw, lm, host, 64, 16, local), local + 7016,
                 16) == 0);
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
}

/* The host's imports on both sides of a task are NOT_SUPPORTED, a
 * read-only host element in a destination list NOT_PERMITTED; neither
 * moves a byte. */
static void list_mixed_refused(struct dpu *d, struct doca_mmap *rw,
                               struct doca_mmap *ro, struct doca_mmap *lm,
                               uint8_t *host, uint8_t *local)
{
    struct doca_buf *s = add_buf(d, NULL, ro, host + 256, 16, 16);
    struct doca_buf *t = add_buf(d, NULL, lm, local + 9100, 8, 0);

    t = add_buf(d, t, rw, host + 128, 8, 0);
    CHECK_DOCA(run_memcpy(d, s, t), DOCA_ERROR_NOT_SUPPORTED);
    CHECK_EQ(data_len_of(t), 0);
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));

    s = add_buf(d, NULL, lm, local + 7000, 32, 32);
    t = add_buf(d, NULL, rw, host + 256, 16, 0);
    t = add_buf(d, t, ro, host + 272, 16, 0);
    CHECK_DOCA(run_memcpy(d, s, t), DOCA_ERROR_NOT_PERMITTED);
    CHECK_EQ(read_back(d, rw, lm, host, 256, 1, local)[0],
             host_pattern(256, 1));
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
}

/* The whole range written from four local bufs into three host bufs cut
 * elsewhere; the host checks every byte. In timed mode the task is one
 * op on the write engine: 5 extra elements at 300 ns, 262144 bytes at
 * 1 B/ns (the read engine's figures would give about 11.7 us). */
static void list_write_all(struct dpu *d, struct doca_mmap *rw,
                           struct doca_mmap *lm, uint8_t *host,
                           uint8_t *local, int sock)
{
    static const struct knob timed[] = {
        {"DOCA_EMU_TIMED", "1"},
        {"DOCA_EMU_TIMED_LATENCY_NS", "0"},
        {"DOCA_EMU_TIMED_WRITE_OPS", "1000000"},
        {"DOCA_EMU_TIMED_WRITE_BW", "1000000000"},
        {"DOCA_EMU_TIMED_LIST_ELEM_NS", "300"},
    };
    const size_t n = sizeof(timed) / sizeof(timed[0]);
    struct doca_buf *s = NULL, *t = NULL;
    uint64_t ns = counters_now().dma_device_ns;

    for (size_t i = 0; i < HOST_LEN; i++) {
        local[i] = host_pattern(i, 2);
    }
    s = add_buf(d, s, lm, local, 1000, 1000);
    s = add_buf(d, s, lm, local + 1000, 69000, 69000);
    s = add_buf(d, s, lm, local + 70000, 1, 1);
    s = add_buf(d, s, lm, local + 70001, HOST_LEN - 70001, HOST_LEN - 70001);
    t = add_buf(d, t, rw, host, 4099, 0);
    t = add_buf(d, t, rw, host + 4099, 131072 - 4099, 0);
    t = add_buf(d, t, rw, host + 131072, HOST_LEN - 131072, 0);
    set_knobs(timed, n);
    DOCA_OK(run_memcpy(d, s, t));
    unset_knobs(timed, n);
    CHECK_EQ(counters_now().dma_device_ns - ns, 5 * 300 + HOST_LEN);
    CHECK_EQ(host_command(sock, 'v'), 1);
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
}

/* A list of three bufs on one import is one task against it: with
 * DOCA_EMU_FAULT_STOP_AFTER=2 a fresh import dies after two such tasks,
 * not during the first. */
static void list_stop_after(struct dpu *d, const struct export_msg *m,
                            struct doca_mmap *lm, uint8_t *host,
                            uint8_t *local)
{
    struct doca_mmap *imp;
    struct doca_buf *s = NULL, *t;

    DOCA_OK(doca_mmap_create_from_export(NULL, m->desc[1], m->desc_len[1],
                                         d->dev, &imp));
    for (int i = 0; i < 3; i++) {
        s = add_buf(d, s, imp, host + 100 * i, 10, 10);
    }
    t = add_buf(d, NULL, lm, local, 30, 0);
    setenv("DOCA_EMU_FAULT_STOP_AFTER", "2", 1);
    doca_emu_reset();
    for (int i = 0; i < 3; i++) {
        DOCA_OK(doca_buf_reset_data_len(t));
        CHECK_DOCA(run_memcpy(d, s, t),
                   i < 2 ? DOCA_SUCCESS : DOCA_ERROR_DRIVER);
    }
    unsetenv("DOCA_EMU_FAULT_STOP_AFTER");
    doca_emu_reset();
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(t, NULL));
    DOCA_OK(doca_mmap_destroy(imp));
}

/* Lists against a forked host's exports, read-write and read-only. */
static void test_dma_lists_cross_process(void)
{
    static uint8_t local[HOST_LEN];
    struct export_msg m;
    struct doca_mmap *rw, *ro, *lm;
    struct dpu d;
    int sock;
    pid_t pid = host_start(&sock, &m);
    uint8_t *host = (uint8_t *)(uintptr_t)m.addr;

    dpu_open(&d, 2);
    dpu_inventory(&d, 16);
    import_host(&d, &m, local, sizeof(local), &lm, &rw, &ro);
    list_read_gather(&d, rw, lm, host, local);
    list_mixed(&d, rw, ro, lm, host, local);
    list_mixed_refused(&d, rw, ro, lm, host, local);
    list_stop_after(&d, &m, lm, host, local);
    list_write_all(&d, rw, lm, host, local, sock);
    CHECK_EQ(free_bufs(d.inv), 16);
    DOCA_OK(doca_mmap_destroy(rw));
    DOCA_OK(doca_mmap_destroy(ro));
    DOCA_OK(doca_mmap_destroy(lm));
    dpu_close(&d);
    host_wait(sock, pid);
}

/* ---- Comm Channel: server and client in one process, one PE ---- */

struct chan {
    struct doca_pe *pe;
    struct doca_dev *host_dev, *dpu_dev;
    struct doca_dev_rep *rep;
    struct doca_comch_server *srv;
    struct doca_comch_client *cli;
    struct doca_comch_connection *peer; /* the server's view */
    int connects, disconnects, sent, send_errors, client_state;
    int connects_at_recv; /* connects when the latest message came */
    char got[8192];
    uint32_t got_len;
};

static struct chan *the_chan; /* callbacks without a user-data hook */

static void on_send(struct doca_comch_task_send *task, union doca_data ud,
                    union doca_data ctx_ud)
{
    struct doca_task *t = doca_comch_task_send_as_task(task);

    (void)ud;
    (void)ctx_ud;
    doca_task_get_status(t) == DOCA_SUCCESS ? the_chan->sent++
                                            : the_chan->send_errors++;
    doca_task_free(t);
}

static void on_recv(struct doca_comch_event_msg_recv *ev, uint8_t *buf,
                    uint32_t len, struct doca_comch_connection *conn)
{
    (void)ev;
    (void)conn;
    CHECK(len <= sizeof(the_chan->got));
    memcpy(the_chan->got, buf, len);
    the_chan->got_len = len;
    the_chan->connects_at_recv = the_chan->connects;
}

static void on_connect(struct doca_comch_event_connection_status_changed *ev,
                       struct doca_comch_connection *conn, uint8_t ok)
{
    (void)ev;
    CHECK(ok);
    the_chan->peer = conn;
    the_chan->connects++;
}

static void on_disconnect(struct doca_comch_event_connection_status_changed *ev,
                          struct doca_comch_connection *conn, uint8_t ok)
{
    (void)ev;
    (void)ok;
    CHECK(conn == the_chan->peer);
    the_chan->disconnects++;
}

static uint32_t max_msg_cap(struct doca_dev *dev)
{
    uint32_t cap;

    DOCA_OK(doca_comch_cap_get_max_msg_size(doca_dev_as_devinfo(dev), &cap));
    return cap;
}

static void on_client_state(const union doca_data ud, struct doca_ctx *ctx,
                            enum doca_ctx_states prev,
                            enum doca_ctx_states next)
{
    (void)ud;
    (void)ctx;
    (void)prev;
    the_chan->client_state = next;
}

/* Devices, representor, the server on c->pe, configured, not started. */
static void server_create(struct chan *c, const char *name)
{
    struct doca_devinfo_rep **reps;
    uint32_t n;
    uint8_t eq;

    *c = (struct chan){.host_dev = open_dev(HOST_PCI),
                       .dpu_dev = open_dev(DPU_PCI)};
    the_chan = c;
    DOCA_OK(doca_pe_create(&c->pe));
    DOCA_OK(doca_devinfo_rep_create_list(
        c->dpu_dev, DOCA_DEVINFO_REP_FILTER_NET, &reps, &n));
    CHECK(n >= 1);
    DOCA_OK(doca_devinfo_rep_is_equal_pci_addr(reps[0], "0000:B1:00.0", &eq));
    CHECK(eq);
    DOCA_OK(doca_dev_rep_open(reps[0], &c->rep));
    DOCA_OK(doca_devinfo_rep_destroy_list(reps));

    DOCA_OK(doca_comch_server_create(c->dpu_dev, c->rep, name, &c->srv));
    DOCA_OK(doca_pe_connect_ctx(c->pe, doca_comch_server_as_ctx(c->srv)));
    DOCA_OK(doca_comch_server_task_send_set_conf(c->srv, on_send, on_send, 4));
    DOCA_OK(doca_comch_server_event_msg_recv_register(c->srv, on_recv));
    DOCA_OK(doca_comch_server_event_connection_status_changed_register(
        c->srv, on_connect, on_disconnect));
    DOCA_OK(
        doca_comch_server_set_max_msg_size(c->srv, max_msg_cap(c->dpu_dev)));
}

/* The client on pe, configured, not started. */
static void client_create(struct chan *c, struct doca_pe *pe,
                          const char *name)
{
    DOCA_OK(doca_comch_client_create(c->host_dev, name, &c->cli));
    DOCA_OK(doca_pe_connect_ctx(pe, doca_comch_client_as_ctx(c->cli)));
    DOCA_OK(doca_ctx_set_state_changed_cb(doca_comch_client_as_ctx(c->cli),
                                          on_client_state));
    DOCA_OK(doca_comch_client_task_send_set_conf(c->cli, on_send, on_send, 4));
    DOCA_OK(doca_comch_client_event_msg_recv_register(c->cli, on_recv));
    DOCA_OK(
        doca_comch_client_set_max_msg_size(c->cli, max_msg_cap(c->host_dev)));
}

static void chan_open(struct chan *c, const char *name)
{
    server_create(c, name);
    DOCA_OK(doca_ctx_start(doca_comch_server_as_ctx(c->srv)));
    CHECK_DOCA(doca_comch_server_set_max_msg_size(c->srv, 100),
               DOCA_ERROR_BAD_STATE);
    client_create(c, c->pe, name);
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(c->cli)),
               DOCA_ERROR_IN_PROGRESS);
    CHECK_EQ(c->client_state, DOCA_CTX_STATE_STARTING);
    while (c->client_state != DOCA_CTX_STATE_RUNNING || c->connects == 0) {
        doca_pe_progress(c->pe);
    }
}

static void chan_close(struct chan *c)
{
    doca_ctx_stop(doca_comch_client_as_ctx(c->cli)); /* may be IDLE already */
    DOCA_OK(doca_ctx_stop(doca_comch_server_as_ctx(c->srv)));
    DOCA_OK(doca_comch_client_destroy(c->cli));
    DOCA_OK(doca_comch_server_destroy(c->srv));
    DOCA_OK(doca_pe_destroy(c->pe));
    DOCA_OK(doca_dev_rep_close(c->rep));
    DOCA_OK(doca_dev_close(c->host_dev));
    DOCA_OK(doca_dev_close(c->dpu_dev));
}

/* Send msg from the client (or the server) and progress until it lands. */
static void chan_send(struct chan *c, int from_client, const void *msg,
                      uint32_t len)
{
    struct doca_comch_connection *conn;
    struct doca_comch_task_send *t;
    int sent = c->sent;

    c->got_len = UINT32_MAX;
    if (from_client) {
        DOCA_OK(doca_comch_client_get_connection(c->cli, &conn));
        DOCA_OK(
            doca_comch_client_task_send_alloc_init(c->cli, conn, msg, len, &t));
    } else {
        DOCA_OK(doca_comch_server_task_send_alloc_init(c->srv, c->peer, msg,
                                                       len, &t));
    }
    DOCA_OK(doca_task_submit(doca_comch_task_send_as_task(t)));
    CHECK_EQ(c->sent, sent);
    while (c->sent == sent || c->got_len == UINT32_MAX) {
        doca_pe_progress(c->pe);
    }
    CHECK_EQ(c->got_len, len);
    CHECK(memcmp(c->got, msg, len) == 0);
}

static void test_comch(void)
{
    static char big[4081];
    char name[64];
    struct chan c;
    struct doca_comch_connection *conn;
    struct doca_comch_task_send *t;
    uint32_t max;

    snprintf(name, sizeof(name), "emu-test-%d", (int)getpid());
    chan_open(&c, name);
    chan_send(&c, 1, "ping", 4);
    chan_send(&c, 0, "pong", 4);
    DOCA_OK(doca_comch_client_get_max_msg_size(c.cli, &max));
    CHECK_EQ(max, 4080);
    chan_send(&c, 1, big, max);
    DOCA_OK(doca_comch_client_get_connection(c.cli, &conn));
    CHECK_DOCA(
        doca_comch_client_task_send_alloc_init(c.cli, conn, big, max + 1, &t),
        DOCA_ERROR_INVALID_VALUE);

    /* The server hangs up: it hears of it in progress, the client idles. */
    DOCA_OK(doca_comch_server_disconnect(c.srv, c.peer));
    while (c.disconnects == 0 || c.client_state != DOCA_CTX_STATE_IDLE) {
        doca_pe_progress(c.pe);
    }
    chan_close(&c);

    /* Injected: the server drops the link after its first message. */
    setenv("DOCA_EMU_FAULT_DISCONNECT_AFTER", "1", 1);
    doca_emu_reset();
    chan_open(&c, name);
    chan_send(&c, 1, "one", 3);
    while (c.disconnects == 0 || c.client_state != DOCA_CTX_STATE_IDLE) {
        doca_pe_progress(c.pe);
    }
    DOCA_OK(doca_comch_server_task_send_alloc_init(c.srv, c.peer, "x", 1, &t));
    DOCA_OK(doca_task_submit(doca_comch_task_send_as_task(t)));
    while (c.send_errors == 0) {
        doca_pe_progress(c.pe);
    }
    unsetenv("DOCA_EMU_FAULT_DISCONNECT_AFTER");
    doca_emu_reset();
    chan_close(&c);
}

/* ---- notification handles ---- */

static int readable(doca_notification_handle_t h, int timeout_ms)
{
    struct pollfd p = {.fd = h, .events = POLLIN};

    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

static void progress_until_idle(struct doca_pe *pe)
{
    while (doca_pe_progress(pe)) {
    }
}

/* Start the server, then the client, and progress both until connected. */
static void chan_connect(struct chan *c, struct doca_pe *cli_pe)
{
    DOCA_OK(doca_ctx_start(doca_comch_server_as_ctx(c->srv)));
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(c->cli)),
               DOCA_ERROR_IN_PROGRESS);
    while (c->client_state != DOCA_CTX_STATE_RUNNING || c->connects == 0) {
        progress_until_idle(cli_pe);
        progress_until_idle(c->pe);
    }
}

/* A local copy submitted, not waited for; bufs to release after it. */
static void submit_copy(struct dpu *d, struct doca_mmap *mm, uint8_t *mem,
                        struct doca_buf *bufs[2])
{
    struct doca_dma_task_memcpy *t;

    DOCA_OK(doca_buf_inventory_buf_get_by_data(d->inv, mm, mem, 8, &bufs[0]));
    DOCA_OK(
        doca_buf_inventory_buf_get_by_addr(d->inv, mm, mem + 64, 8, &bufs[1]));
    DOCA_OK(doca_dma_task_memcpy_alloc_init(d->dma, bufs[0], bufs[1],
                                            (union doca_data){0}, &t));
    DOCA_OK(doca_task_submit(doca_dma_task_memcpy_as_task(t)));
}

static void release_bufs(struct doca_buf *bufs[2])
{
    DOCA_OK(doca_buf_dec_refcount(bufs[0], NULL));
    DOCA_OK(doca_buf_dec_refcount(bufs[1], NULL));
}

/* Tasks: one waiting at the arm or submitted after it wakes the handle, a
 * stopping ctx's last task freed does too; unarmed or cleared, it stays
 * quiet. */
static void test_notify_tasks(void)
{
    static uint8_t mem[128];
    doca_notification_handle_t h, again;
    struct doca_dma_task_memcpy *held;
    struct doca_buf *bufs[2];
    struct doca_mmap *mm;
    struct dpu d;

    dpu_open(&d, 2);
    mm = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    DOCA_OK(doca_pe_get_notification_handle(d.pe, &h));
    DOCA_OK(doca_pe_get_notification_handle(d.pe, &again));
    CHECK(h != doca_event_invalid_handle);
    CHECK_EQ(h, again);
    CHECK_DOCA(doca_pe_clear_notification(d.pe, h + 1),
               DOCA_ERROR_INVALID_VALUE);

    submit_copy(&d, mm, mem, bufs);
    CHECK(!readable(h, 20)); /* never armed */
    DOCA_OK(doca_pe_request_notification(d.pe));
    CHECK(readable(h, 0)); /* the task waited before the arm */
    DOCA_OK(doca_pe_clear_notification(d.pe, h));
    CHECK(!readable(h, 0));
    progress_until_idle(d.pe);
    CHECK_EQ(d.done, 1);
    release_bufs(bufs);

    DOCA_OK(doca_pe_request_notification(d.pe));
    CHECK(!readable(h, 20)); /* armed, nothing to do */
    submit_copy(&d, mm, mem, bufs);
    CHECK(readable(h, 1000));
    DOCA_OK(doca_pe_clear_notification(d.pe, h));
    progress_until_idle(d.pe);
    CHECK_EQ(d.done, 2);

    DOCA_OK(doca_buf_reset_data_len(bufs[1]));
    DOCA_OK(doca_dma_task_memcpy_alloc_init(d.dma, bufs[0], bufs[1],
                                            (union doca_data){0}, &held));
    CHECK_DOCA(doca_ctx_stop(doca_dma_as_ctx(d.dma)), DOCA_ERROR_IN_PROGRESS);
    DOCA_OK(doca_pe_request_notification(d.pe));
    CHECK(!readable(h, 20)); /* the ctx waits for our task */
    doca_task_free(doca_dma_task_memcpy_as_task(held));
    CHECK(readable(h, 1000));
    DOCA_OK(doca_pe_clear_notification(d.pe, h));
    progress_until_idle(d.pe);
    DOCA_OK(doca_ctx_start(doca_dma_as_ctx(d.dma))); /* dpu_close stops it */
    release_bufs(bufs);
    DOCA_OK(doca_mmap_destroy(mm));
    dpu_close(&d);
}

/* ---- timed mode ---- */

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void set_timed(const char *latency_ns, const char *read_ops)
{
    setenv("DOCA_EMU_TIMED", "1", 1);
    setenv("DOCA_EMU_TIMED_LATENCY_NS", latency_ns, 1);
    if (read_ops != NULL) {
        setenv("DOCA_EMU_TIMED_READ_OPS", read_ops, 1);
    }
    doca_emu_reset();
}

static void unset_timed(void)
{
    unsetenv("DOCA_EMU_TIMED");
    unsetenv("DOCA_EMU_TIMED_LATENCY_NS");
    unsetenv("DOCA_EMU_TIMED_READ_OPS");
    doca_emu_reset();
}

/* Progress until d has seen `want` callbacks, sleeping on the handle in
 * between; fails after 10 s. Returns when the last one was seen: a
 * monotonic time no earlier than its deadline. */
static uint64_t wait_callbacks(struct dpu *d, int want)
{
    uint64_t give_up = mono_ns() + 10000000000u;
    doca_notification_handle_t h;

    DOCA_OK(doca_pe_get_notification_handle(d->pe, &h));
    while (d->done + d->failed < want) {
        CHECK(mono_ns() < give_up);
        if (doca_pe_progress(d->pe)) {
            continue;
        }
        DOCA_OK(doca_pe_request_notification(d->pe));
        (void)readable(h, 1000);
        DOCA_OK(doca_pe_clear_notification(d->pe, h));
    }
    return mono_ns();
}

/* A completion due in 10 s is not reported by progress, nor by an armed
 * handle, well before then; the bytes may have moved already. A stop
 * makes it due at once (the handle fires), and it completes with
 * SUCCESS. */
static void test_timed_not_early(void)
{
    static uint8_t mem[128];
    doca_notification_handle_t h;
    struct doca_buf *bufs[2];
    struct doca_mmap *mm;
    struct dpu d;

    set_timed("10000000000", NULL);
    dpu_open(&d, 2);
    mm = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    DOCA_OK(doca_pe_get_notification_handle(d.pe, &h));
    memset(mem, 5, 8);
    submit_copy(&d, mm, mem, bufs);
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(doca_pe_progress(d.pe), 0); /* none is due */
    }
    CHECK_EQ(d.done + d.failed, 0);
    DOCA_OK(doca_pe_request_notification(d.pe));
    CHECK(!readable(h, 50));
    CHECK_EQ(doca_pe_progress(d.pe), 0);
    CHECK_EQ(d.done + d.failed, 0);
    CHECK_DOCA(doca_ctx_stop(doca_dma_as_ctx(d.dma)), DOCA_ERROR_IN_PROGRESS);
    CHECK(readable(h, 1000)); /* still armed: the stop made it due */
    DOCA_OK(doca_pe_clear_notification(d.pe, h));
    CHECK(doca_pe_progress(d.pe));
    CHECK_EQ(d.done, 1);
    CHECK_EQ(mem[64], 5);
    progress_until_idle(d.pe);
    DOCA_OK(doca_ctx_start(doca_dma_as_ctx(d.dma))); /* dpu_close stops it */
    release_bufs(bufs);
    DOCA_OK(doca_mmap_destroy(mm));
    dpu_close(&d);
    unset_timed();
}

/* With a latency of 50 ms: the callback comes no earlier than 50 ms after
 * submit, and the bytes are in place when it runs; an armed handle fires
 * for it, at its deadline or later, and then one progress call reports
 * it. Only lower bounds on times are checked: a busy machine is late. */
static void test_timed_deadline(void)
{
    static uint8_t mem[128];
    const uint64_t latency = 50000000;
    doca_notification_handle_t h;
    struct doca_buf *bufs[2];
    struct doca_mmap *mm;
    uint64_t t0;
    struct dpu d;

    set_timed("50000000", NULL);
    dpu_open(&d, 2);
    mm = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    DOCA_OK(doca_pe_get_notification_handle(d.pe, &h));

    memset(mem, 6, 8);
    t0 = mono_ns();
    submit_copy(&d, mm, mem, bufs);
    CHECK(wait_callbacks(&d, 1) - t0 >= latency);
    CHECK_EQ(d.done, 1);
    CHECK_EQ(mem[64], 6);
    release_bufs(bufs);

    memset(mem, 7, 8);
    t0 = mono_ns();
    submit_copy(&d, mm, mem, bufs);
    CHECK_EQ(doca_pe_progress(d.pe), 0); /* runs it; not due */
    DOCA_OK(doca_pe_request_notification(d.pe));
    CHECK(readable(h, 10000));
    CHECK(mono_ns() - t0 >= latency);
    DOCA_OK(doca_pe_clear_notification(d.pe, h));
    CHECK(doca_pe_progress(d.pe));
    CHECK_EQ(d.done, 2);
    CHECK_EQ(mem[64], 7);
    release_bufs(bufs);
    DOCA_OK(doca_mmap_destroy(mm));
    dpu_close(&d);
    unset_timed();
}

/* The device serves a direction's tasks one after another: at 20 tasks a
 * second (50 ms each) and no latency, the k-th of three completions
 * submitted together comes no earlier than k * 50 ms after submit. */
static void test_timed_queue(void)
{
    static uint8_t mem[4096];
    const uint64_t cost = 50000000;
    struct doca_buf *bufs[3][2];
    struct doca_mmap *mm;
    uint64_t t0;
    struct dpu d;

    set_timed("0", "20");
    dpu_open(&d, 3);
    mm = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    t0 = mono_ns();
    for (int i = 0; i < 3; i++) {
        submit_copy(&d, mm, mem + 128 * i, bufs[i]);
    }
    for (int k = 1; k <= 3; k++) {
        CHECK(wait_callbacks(&d, k) - t0 >= (uint64_t)k * cost);
    }
    CHECK_EQ(d.done, 3);
    for (int i = 0; i < 3; i++) {
        release_bufs(bufs[i]);
    }
    DOCA_OK(doca_mmap_destroy(mm));
    dpu_close(&d);
    unset_timed();
}

/* The model's device time for list tasks, read from the emulation's
 * counter rather than a clock: a task is one op (a floor of 1000 ns),
 * plus 100 ns of read overhead, 300 ns per element past each list's first
 * and 1 ns a byte. Four 64-byte bufs gathered into one: 1256 ns; into a
 * list of two: 1556 ns; the same bytes as four lone tasks: 4000 ns. */
static void test_timed_list_cost(void)
{
    static const struct knob timed[] = {
        {"DOCA_EMU_TIMED", "1"},
        {"DOCA_EMU_TIMED_LATENCY_NS", "0"},
        {"DOCA_EMU_TIMED_READ_OPS", "1000000"},
        {"DOCA_EMU_TIMED_READ_BW", "1000000000"},
        {"DOCA_EMU_TIMED_READ_OVERHEAD_NS", "100"},
        {"DOCA_EMU_TIMED_LIST_ELEM_NS", "300"},
    };
    const size_t n = sizeof(timed) / sizeof(timed[0]);
    static uint8_t mem[1024];
    struct doca_buf *s = NULL, *one, *two = NULL;
    struct doca_mmap *mm;
    uint64_t ns;
    struct dpu d;

    set_knobs(timed, n);
    dpu_open(&d, 2);
    dpu_inventory(&d, 10);
    mm = make_mmap(mem, sizeof(mem), DOCA_ACCESS_FLAG_LOCAL_READ_WRITE, d.dev);
    for (int i = 0; i < 4; i++) {
        memset(mem + 64 * i, 'a' + i, 64);
        s = add_buf(&d, s, mm, mem + 64 * i, 64, 64);
    }
    one = add_buf(&d, NULL, mm, mem + 256, 256, 0);
    two = add_buf(&d, NULL, mm, mem + 512, 128, 0);
    two = add_buf(&d, two, mm, mem + 640, 128, 0);
    ns = counters_now().dma_device_ns;
    DOCA_OK(run_memcpy(&d, s, one));
    CHECK_EQ(counters_now().dma_device_ns - ns, 1256);
    CHECK(memcmp(mem + 256, mem, 256) == 0);
    ns = counters_now().dma_device_ns;
    DOCA_OK(run_memcpy(&d, s, two));
    CHECK_EQ(counters_now().dma_device_ns - ns, 1556);
    CHECK(memcmp(mem + 512, mem, 256) == 0);
    DOCA_OK(doca_buf_dec_refcount(one, NULL));
    DOCA_OK(doca_buf_dec_refcount(two, NULL));
    one = add_buf(&d, NULL, mm, mem + 768, 64, 0);
    two = add_buf(&d, NULL, mm, mem, 64, 64); /* a lone source */
    ns = counters_now().dma_device_ns;
    for (int i = 0; i < 4; i++) {
        DOCA_OK(doca_buf_reset_data_len(one));
        DOCA_OK(run_memcpy(&d, two, one));
    }
    CHECK_EQ(counters_now().dma_device_ns - ns, 4000);
    DOCA_OK(doca_buf_dec_refcount(s, NULL));
    DOCA_OK(doca_buf_dec_refcount(one, NULL));
    DOCA_OK(doca_buf_dec_refcount(two, NULL));
    DOCA_OK(doca_mmap_destroy(mm));
    dpu_close(&d);
    unset_knobs(timed, n);
}

/* Server and client on a PE each; neither is started. */
static void split_chan_open(struct chan *c, struct doca_pe **cli_pe,
                            const char *name)
{
    server_create(c, name);
    DOCA_OK(doca_pe_create(cli_pe));
    client_create(c, *cli_pe, name);
}

/* After split_chan_open, once both contexts are stopped. */
static void split_chan_close(struct chan *c, struct doca_pe *cli_pe)
{
    DOCA_OK(doca_comch_client_destroy(c->cli));
    DOCA_OK(doca_comch_server_destroy(c->srv));
    DOCA_OK(doca_pe_destroy(cli_pe));
    DOCA_OK(doca_pe_destroy(c->pe));
    DOCA_OK(doca_dev_rep_close(c->rep));
    DOCA_OK(doca_dev_close(c->host_dev));
    DOCA_OK(doca_dev_close(c->dpu_dev));
}

static void client_send(struct chan *c, const char *msg)
{
    struct doca_comch_connection *conn;
    struct doca_comch_task_send *t;

    DOCA_OK(doca_comch_client_get_connection(c->cli, &conn));
    DOCA_OK(doca_comch_client_task_send_alloc_init(c->cli, conn, msg,
                                                   (uint32_t)strlen(msg), &t));
    DOCA_OK(doca_task_submit(doca_comch_task_send_as_task(t)));
}

static void server_send(struct chan *c, const char *msg)
{
    struct doca_comch_task_send *t;

    DOCA_OK(doca_comch_server_task_send_alloc_init(c->srv, c->peer, msg,
                                                   (uint32_t)strlen(msg), &t));
    DOCA_OK(doca_task_submit(doca_comch_task_send_as_task(t)));
}

/* Both handles armed; neither may turn readable. */
static void check_quiet(doca_notification_handle_t srv_h,
                        doca_notification_handle_t cli_h)
{
    CHECK(!readable(srv_h, 20));
    CHECK(!readable(cli_h, 0));
}

/* Comch never fires a handle: not for a connection, messages either way,
 * send completions or a hang-up; progress alone sees them. */
static void test_notify_comch(void)
{
    doca_notification_handle_t srv_h, cli_h;
    struct doca_pe *cli_pe;
    char name[64];
    struct chan c;

    snprintf(name, sizeof(name), "emu-notify-%d", (int)getpid());
    split_chan_open(&c, &cli_pe, name);
    /* Armed in the default mode they would not drive comch at all
     * (test_event_modes). */
    DOCA_OK(doca_pe_set_event_mode(c.pe, DOCA_PE_EVENT_MODE_PROGRESS_ALL));
    DOCA_OK(doca_pe_set_event_mode(cli_pe, DOCA_PE_EVENT_MODE_PROGRESS_ALL));
    DOCA_OK(doca_pe_get_notification_handle(c.pe, &srv_h));
    DOCA_OK(doca_pe_get_notification_handle(cli_pe, &cli_h));
    DOCA_OK(doca_pe_request_notification(c.pe));
    DOCA_OK(doca_pe_request_notification(cli_pe));
    DOCA_OK(doca_ctx_start(doca_comch_server_as_ctx(c.srv)));
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(c.cli)),
               DOCA_ERROR_IN_PROGRESS);
    check_quiet(srv_h, cli_h); /* a connection waits to be accepted */
    while (c.client_state != DOCA_CTX_STATE_RUNNING || c.connects == 0) {
        progress_until_idle(cli_pe);
        progress_until_idle(c.pe);
    }
    client_send(&c, "a");
    server_send(&c, "b");
    check_quiet(srv_h, cli_h);
    while (c.sent < 2) {
        progress_until_idle(cli_pe);
        progress_until_idle(c.pe);
    }
    CHECK_EQ(c.got_len, 1);
    DOCA_OK(doca_comch_server_disconnect(c.srv, c.peer));
    check_quiet(srv_h, cli_h);
    while (c.client_state != DOCA_CTX_STATE_IDLE || c.disconnects == 0) {
        progress_until_idle(cli_pe);
        progress_until_idle(c.pe);
    }
    check_quiet(srv_h, cli_h);
    DOCA_OK(doca_pe_clear_notification(c.pe, srv_h));
    DOCA_OK(doca_pe_clear_notification(cli_pe, cli_h));
    DOCA_OK(doca_ctx_stop(doca_comch_server_as_ctx(c.srv)));
    split_chan_close(&c, cli_pe);
}

/* Progress the server's PE alone, 20 calls 1 ms apart; whether the server
 * received a message meanwhile. */
static int server_hears(struct chan *c)
{
    c->got_len = 0;
    for (int i = 0; i < 20 && c->got_len == 0; i++) {
        progress_until_idle(c->pe);
        usleep(1000);
    }
    return c->got_len != 0;
}

/* The client sends msg and sees its completion; the server's PE is not
 * progressed. */
static void client_sends(struct chan *c, struct doca_pe *cli_pe,
                         const char *msg)
{
    int sent = c->sent;

    client_send(c, msg);
    while (c->sent == sent) {
        progress_until_idle(cli_pe);
    }
}

/* Event modes. Never armed, a PE in the default mode drives comch. Armed
 * in that mode (selective), it leaves a comch context out, since comch
 * raises no events, clear or not, unless one of its tasks was in flight
 * at the arm; PROGRESS_ALL drives it, armed or not. */
static void test_event_modes(void)
{
    doca_notification_handle_t h;
    struct doca_pe *cli_pe;
    char name[64];
    struct chan c;
    int sent;

    snprintf(name, sizeof(name), "emu-modes-%d", (int)getpid());
    split_chan_open(&c, &cli_pe, name);
    CHECK_DOCA(doca_pe_set_event_mode(c.pe, (enum doca_pe_event_mode)2),
               DOCA_ERROR_INVALID_VALUE);
    chan_connect(&c, cli_pe);
    client_sends(&c, cli_pe, "a");
    CHECK(server_hears(&c)); /* never armed */

    DOCA_OK(doca_pe_get_notification_handle(c.pe, &h));
    DOCA_OK(doca_pe_request_notification(c.pe));
    client_sends(&c, cli_pe, "b");
    CHECK(!server_hears(&c)); /* armed, nothing in flight */
    DOCA_OK(doca_pe_clear_notification(c.pe, h));
    CHECK(!server_hears(&c));

    /* A send in flight at the arm: the server is driven until the next. */
    sent = c.sent;
    server_send(&c, "c");
    CHECK(!server_hears(&c));
    CHECK_EQ(c.sent, sent); /* its completion waits too */
    DOCA_OK(doca_pe_request_notification(c.pe));
    CHECK(server_hears(&c));
    CHECK(c.got[0] == 'b' && c.sent == sent + 1);
    DOCA_OK(doca_pe_clear_notification(c.pe, h));
    DOCA_OK(doca_pe_request_notification(c.pe)); /* nothing in flight */
    client_sends(&c, cli_pe, "d");
    CHECK(!server_hears(&c));

    DOCA_OK(doca_pe_set_event_mode(c.pe, DOCA_PE_EVENT_MODE_PROGRESS_ALL));
    CHECK(server_hears(&c)); /* still armed */
    CHECK_EQ(c.got[0], 'd');
    DOCA_OK(doca_pe_clear_notification(c.pe, h));
    DOCA_OK(doca_comch_server_disconnect(c.srv, c.peer));
    while (c.client_state != DOCA_CTX_STATE_IDLE || c.disconnects == 0) {
        progress_until_idle(cli_pe);
        progress_until_idle(c.pe);
    }
    DOCA_OK(doca_ctx_stop(doca_comch_server_as_ctx(c.srv)));
    split_chan_close(&c, cli_pe);
}

/* The limits: a message size smaller than the cap until set, and the
 * name length cap. */
static void test_comch_limits(void)
{
    static char big[4080];
    char name[96];
    struct doca_comch_client *cli;
    struct doca_comch_connection *conn;
    struct doca_comch_task_send *t;
    struct doca_pe *cli_pe;
    struct chan c;
    uint32_t max, cap;

    snprintf(name, sizeof(name), "emu-limits-%d", (int)getpid());
    split_chan_open(&c, &cli_pe, name);
    cap = max_msg_cap(c.host_dev);
    CHECK_EQ(cap, 4080);
    DOCA_OK(doca_comch_client_create(c.host_dev, name, &cli));
    DOCA_OK(doca_comch_client_get_max_msg_size(cli, &max));
    CHECK_EQ(max, 512); /* the default, not the cap */
    CHECK_DOCA(doca_comch_client_set_max_msg_size(cli, cap + 1),
               DOCA_ERROR_INVALID_VALUE);
    DOCA_OK(doca_comch_client_destroy(cli));

    /* The server keeps the default: a message past it drops the link. */
    DOCA_OK(doca_comch_server_destroy(c.srv));
    DOCA_OK(doca_comch_server_create(c.dpu_dev, c.rep, name, &c.srv));
    DOCA_OK(doca_pe_connect_ctx(c.pe, doca_comch_server_as_ctx(c.srv)));
    DOCA_OK(doca_comch_server_task_send_set_conf(c.srv, on_send, on_send, 4));
    DOCA_OK(doca_comch_server_event_msg_recv_register(c.srv, on_recv));
    DOCA_OK(doca_comch_server_event_connection_status_changed_register(
        c.srv, on_connect, on_disconnect));
    chan_connect(&c, cli_pe);
    CHECK_DOCA(
        doca_comch_server_task_send_alloc_init(c.srv, c.peer, big, 513, &t),
        DOCA_ERROR_INVALID_VALUE);
    DOCA_OK(doca_comch_client_get_connection(c.cli, &conn));
    DOCA_OK(doca_comch_client_task_send_alloc_init(c.cli, conn, big, 513, &t));
    DOCA_OK(doca_task_submit(doca_comch_task_send_as_task(t)));
    while (c.disconnects == 0 || c.client_state != DOCA_CTX_STATE_IDLE) {
        progress_until_idle(cli_pe);
        progress_until_idle(c.pe);
    }
    DOCA_OK(doca_ctx_stop(doca_comch_server_as_ctx(c.srv)));
    split_chan_close(&c, cli_pe);

    /* Names: 63 bytes and a NUL fit the default cap of 64, 64 do not. */
    memset(name, 'n', sizeof(name));
    name[64] = '\0';
    c.host_dev = open_dev(HOST_PCI);
    CHECK_DOCA(doca_comch_client_create(c.host_dev, name, &cli),
               DOCA_ERROR_INVALID_VALUE);
    name[63] = '\0';
    DOCA_OK(doca_comch_client_create(c.host_dev, name, &cli));
    DOCA_OK(doca_comch_client_destroy(cli));
    setenv("DOCA_EMU_COMCH_MAX_NAME", "80", 1);
    doca_emu_reset();
    DOCA_OK(
        doca_comch_cap_get_max_name_len(doca_dev_as_devinfo(c.host_dev), &max));
    CHECK_EQ(max, 80);
    memset(name, 'n', 79);
    name[79] = '\0';
    DOCA_OK(doca_comch_client_create(c.host_dev, name, &cli));
    DOCA_OK(doca_comch_client_destroy(cli));
    unsetenv("DOCA_EMU_COMCH_MAX_NAME");
    doca_emu_reset();
    DOCA_OK(doca_dev_close(c.host_dev));
}

/* A client started before its server is refused (IDLE), not kept waiting;
 * started again once the server listens, it connects. */
static void test_comch_refused(void)
{
    struct doca_pe *cli_pe;
    char name[64];
    struct chan c;

    snprintf(name, sizeof(name), "emu-refused-%d", (int)getpid());
    split_chan_open(&c, &cli_pe, name);
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(c.cli)),
               DOCA_ERROR_IN_PROGRESS);
    progress_until_idle(cli_pe);
    CHECK_EQ(c.client_state, DOCA_CTX_STATE_IDLE);
    DOCA_OK(doca_ctx_start(doca_comch_server_as_ctx(c.srv)));
    progress_until_idle(cli_pe);
    CHECK_EQ(c.client_state, DOCA_CTX_STATE_IDLE); /* stays refused */
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(c.cli)),
               DOCA_ERROR_IN_PROGRESS);
    while (c.client_state != DOCA_CTX_STATE_RUNNING || c.connects == 0) {
        progress_until_idle(cli_pe);
        progress_until_idle(c.pe);
    }
    DOCA_OK(doca_comch_server_disconnect(c.srv, c.peer));
    while (c.client_state != DOCA_CTX_STATE_IDLE) {
        progress_until_idle(cli_pe);
    }
    DOCA_OK(doca_ctx_stop(doca_comch_server_as_ctx(c.srv)));
    split_chan_close(&c, cli_pe);
}

/* The orderings code must cope with: the client receives the server's
 * first message in the progress call that turns it RUNNING, and the
 * server a client's first message before the connection is reported. */
static void test_comch_orderings(void)
{
    struct doca_comch_client *cli2;
    struct doca_comch_connection *conn;
    struct doca_comch_task_send *t;
    struct doca_pe *cli_pe;
    char name[64];
    struct chan c;
    enum doca_ctx_states st = DOCA_CTX_STATE_STARTING;

    snprintf(name, sizeof(name), "emu-order-%d", (int)getpid());
    split_chan_open(&c, &cli_pe, name);
    DOCA_OK(doca_ctx_start(doca_comch_server_as_ctx(c.srv)));
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(c.cli)),
               DOCA_ERROR_IN_PROGRESS);
    doca_pe_progress(c.pe); /* accepts */
    CHECK_EQ(c.connects, 0);
    doca_pe_progress(c.pe); /* reports it */
    CHECK_EQ(c.connects, 1);
    server_send(&c, "first");
    c.got_len = 0;
    while (c.client_state != DOCA_CTX_STATE_RUNNING) {
        CHECK_EQ(c.got_len, 0);
        doca_pe_progress(cli_pe);
    }
    CHECK_EQ(c.got_len, 5); /* in the call that turned it RUNNING */

    /* A second client's first message reaches the server before the
     * connection is reported. */
    DOCA_OK(doca_comch_client_create(c.host_dev, name, &cli2));
    DOCA_OK(doca_pe_connect_ctx(cli_pe, doca_comch_client_as_ctx(cli2)));
    DOCA_OK(doca_comch_client_task_send_set_conf(cli2, on_send, on_send, 4));
    DOCA_OK(doca_comch_client_event_msg_recv_register(cli2, on_recv));
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(cli2)),
               DOCA_ERROR_IN_PROGRESS);
    doca_pe_progress(c.pe); /* accepts cli2 */
    while (st != DOCA_CTX_STATE_RUNNING) {
        doca_pe_progress(cli_pe);
        DOCA_OK(doca_ctx_get_state(doca_comch_client_as_ctx(cli2), &st));
    }
    DOCA_OK(doca_comch_client_get_connection(cli2, &conn));
    DOCA_OK(doca_comch_client_task_send_alloc_init(cli2, conn, "x", 1, &t));
    DOCA_OK(doca_task_submit(doca_comch_task_send_as_task(t)));
    c.got_len = 0;
    doca_pe_progress(c.pe);
    CHECK_EQ(c.got_len, 1);
    CHECK_EQ(c.connects_at_recv, 1); /* cli2's not reported yet */
    CHECK_EQ(c.connects, 2);

    /* cli2 again, gone before its new connection was reported: its
     * message, then the connection, then its end. */
    progress_until_idle(cli_pe);
    doca_ctx_stop(doca_comch_client_as_ctx(cli2));
    progress_until_idle(c.pe); /* the server sees cli2 go */
    CHECK_EQ(c.disconnects, 1);
    CHECK_DOCA(doca_ctx_start(doca_comch_client_as_ctx(cli2)),
               DOCA_ERROR_IN_PROGRESS);
    doca_pe_progress(c.pe); /* accepts */
    st = DOCA_CTX_STATE_STARTING;
    while (st != DOCA_CTX_STATE_RUNNING) {
        doca_pe_progress(cli_pe);
        DOCA_OK(doca_ctx_get_state(doca_comch_client_as_ctx(cli2), &st));
    }
    DOCA_OK(doca_comch_client_get_connection(cli2, &conn));
    DOCA_OK(doca_comch_client_task_send_alloc_init(cli2, conn, "y", 1, &t));
    DOCA_OK(doca_task_submit(doca_comch_task_send_as_task(t)));
    progress_until_idle(cli_pe);
    doca_ctx_stop(doca_comch_client_as_ctx(cli2));
    c.got_len = 0;
    doca_pe_progress(c.pe);
    CHECK(c.got_len == 1 && c.got[0] == 'y');
    CHECK_EQ(c.connects_at_recv, 2);
    CHECK_EQ(c.connects, 3);
    CHECK_EQ(c.disconnects, 2);
    progress_until_idle(cli_pe);
    doca_ctx_stop(doca_comch_client_as_ctx(c.cli));
    progress_until_idle(cli_pe);
    DOCA_OK(doca_comch_client_destroy(cli2));
    DOCA_OK(doca_ctx_stop(doca_comch_server_as_ctx(c.srv)));
    split_chan_close(&c, cli_pe);
}

/* Only doca_comch_server_disconnect tells the client: a server stopped
 * without it leaves the client RUNNING. */
static void test_comch_stop_needs_disconnect(void)
{
    struct doca_pe *cli_pe;
    char name[64];
    struct chan c;

    snprintf(name, sizeof(name), "emu-stop-%d", (int)getpid());
    split_chan_open(&c, &cli_pe, name);
    chan_connect(&c, cli_pe);
    DOCA_OK(doca_ctx_stop(doca_comch_server_as_ctx(c.srv)));
    for (int i = 0; i < 20; i++) {
        progress_until_idle(cli_pe);
        usleep(1000);
    }
    CHECK_EQ(c.client_state, DOCA_CTX_STATE_RUNNING);
    DOCA_OK(doca_ctx_stop(doca_comch_client_as_ctx(c.cli)));
    split_chan_close(&c, cli_pe);
}

int main(void)
{
    test_mmap_rules();
    test_inventory();
    test_local_dma();
    test_fatal_fault();
    test_completion_order();
    test_import_cap();
    test_start_pins();
    test_memlock();
    test_export_desc_size();
    test_export_desc_size_too_small();
    test_counters();
    test_destroy_fences_dma();
    test_cross_process();
    test_buf_lists();
    test_list_cap();
    test_dma_lists_local();
    test_dma_lists_bad();
    test_dma_lists_cross_process();
    test_comch();
    test_comch_limits();
    test_comch_refused();
    test_comch_orderings();
    test_comch_stop_needs_disconnect();
    test_notify_tasks();
    test_notify_comch();
    test_event_modes();
    test_timed_not_early();
    test_timed_deadline();
    test_timed_queue();
    test_timed_list_cost();
    return 0;
}
