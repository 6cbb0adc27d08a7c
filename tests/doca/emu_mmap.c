/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Memory maps, their export across processes, and buffer inventories
 * (the bufs themselves: emu_buf.c).
 *
 * Export validity: each exported mmap owns a slot of live_words while it
 * is started. The descriptor names the slot's address and its current
 * random value; an importer reads the word from the exporter with
 * process_vm_readv before each DMA and treats any other value (or a dead
 * pid) as "the exporter stopped". No file or daemon to clean up, and the
 * check needs exactly the right the DMA itself needs. A task holds the
 * export's fence from that read until its bytes moved, and the exporter's
 * destroy waits for it (emu_fence.c): a destroyed export is one no task
 * writes any more, as a card's is assumed to be.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include <doca_buf.h>
#include <doca_buf_inventory.h>
#include <doca_dev.h>
#include <doca_mmap.h>

#include "emu.h"

#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif
#ifndef PR_SET_PTRACER_ANY
#define PR_SET_PTRACER_ANY ((unsigned long)-1)
#endif

#define PCI_ACCESS                                                             \
    (DOCA_ACCESS_FLAG_PCI_READ_ONLY | DOCA_ACCESS_FLAG_PCI_READ_WRITE)
/* Any of these lets a device write the range: pinning it needs write. */
#define WRITE_ACCESS                                                           \
    (DOCA_ACCESS_FLAG_LOCAL_READ_WRITE | DOCA_ACCESS_FLAG_PCI_READ_WRITE |     \
     DOCA_ACCESS_FLAG_RDMA_WRITE | DOCA_ACCESS_FLAG_RDMA_ATOMIC)
#define ALL_ACCESS ((1u << 7) - 1)

static uint64_t live_words[EMU_MAX_EXPORTS]; /* read by importers */
static uint64_t pinned_bytes; /* of started local mmaps, under slot_lock */
static uint8_t slot_used[EMU_MAX_EXPORTS];
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;

doca_error_t doca_mmap_create(struct doca_mmap **mmap)
{
    struct doca_mmap *mm = calloc(1, sizeof(*mm));

    if (mm == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    mm->perms = DOCA_ACCESS_FLAG_LOCAL_READ_WRITE;
    mm->slot = -1;
    *mmap = mm;
    return DOCA_SUCCESS;
}

/* Every setter: BAD_STATE once started (imports are born started). */
doca_error_t doca_mmap_set_memrange(struct doca_mmap *mmap, void *addr,
                                    size_t len)
{
    if (addr == NULL || len == 0 || (uintptr_t)addr + len < (uintptr_t)addr) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (mmap->started) {
        return DOCA_ERROR_BAD_STATE;
    }
    if (mmap->range_set) {
        return DOCA_ERROR_NOT_PERMITTED; /* one range, set once */
    }
    mmap->addr = addr;
    mmap->len = len;
    mmap->range_set = 1;
    return DOCA_SUCCESS;
}

doca_error_t doca_mmap_set_permissions(struct doca_mmap *mmap,
                                       uint32_t access_mask)
{
    if ((access_mask & ~ALL_ACCESS) != 0 ||
        (access_mask & PCI_ACCESS) == PCI_ACCESS) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (mmap->started) {
        return DOCA_ERROR_BAD_STATE;
    }
    mmap->perms = access_mask;
    return DOCA_SUCCESS;
}

doca_error_t doca_mmap_add_dev(struct doca_mmap *mmap, struct doca_dev *dev)
{
    if (mmap->started || mmap->exported) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    for (uint32_t i = 0; i < mmap->ndevs; i++) {
        if (mmap->devs[i] == dev) {
            return DOCA_ERROR_ALREADY_EXIST;
        }
    }
    if (mmap->ndevs == EMU_MAX_DEVS) {
        return DOCA_ERROR_NO_MEMORY;
    }
    mmap->devs[mmap->ndevs++] = dev;
    return DOCA_SUCCESS;
}

/* Does one line of /proc/self/maps grant what pinning needs? The line
 * reads "lo-hi rwxp ..."; *lo_out and *hi_out get its bounds. -1 if the
 * line is not a mapping. */
static int maps_line_grants(const char *line, int need_write, uintptr_t *lo_out,
                            uintptr_t *hi_out)
{
    unsigned long lo, hi;
    char prot[5];

    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, prot) != 3) {
        return -1;
    }
    *lo_out = lo;
    *hi_out = hi;
    return prot[0] == 'r' && (!need_write || prot[1] == 'w');
}

/* Hardware pins the range at start, and pinning fails on a hole or on a
 * page without the access asked for. The mappings are listed in address
 * order: walk them from the range's start until its end is covered. */
static doca_error_t check_pinnable(const struct doca_mmap *mm)
{
    uintptr_t at = (uintptr_t)mm->addr, end = at + mm->len;
    int need_write = (mm->perms & WRITE_ACCESS) != 0;
    FILE *maps = fopen("/proc/self/maps", "re");
    char *line = NULL;
    size_t cap = 0;

    if (maps == NULL) {
        emu_die("cannot read /proc/self/maps to check a range");
    }
    while (at < end && getline(&line, &cap, maps) > 0) {
        uintptr_t lo, hi;
        int grants = maps_line_grants(line, need_write, &lo, &hi);

        if (grants < 0 || hi <= at) {
            continue;
        }
        if (lo > at || !grants) {
            break; /* a hole before this mapping, or too little access */
        }
        at = hi;
    }
    free(line);
    fclose(maps);
    return at >= end ? DOCA_SUCCESS : DOCA_ERROR_DRIVER;
}

/* Said once per process: without CAP_IPC_LOCK the usual 8 MiB limit
 * stops a dpu side's staging pool, on a card as here. */
static void tell_refused(uint64_t bytes, uint64_t limit)
{
    static int told;

    if (emu_config()->memlock_rlimit &&
        !__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED)) {
        fprintf(stderr,
                "doca emulation: pinning %llu more bytes passes "
                "RLIMIT_MEMLOCK (%llu bytes; no CAP_IPC_LOCK): start "
                "returns DRIVER, as on a card. Raise ulimit -l, or set "
                "DOCA_EMU_MEMLOCK=0 for no limit\n",
                (unsigned long long)bytes, (unsigned long long)limit);
    }
}

/* Pinning is charged to the process, as the kernel charges pinned pages
 * against RLIMIT_MEMLOCK: whole pages. 0 when the limit would be passed. */
static size_t pin(const struct doca_mmap *mm)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)mm->addr & ~(page - 1);
    size_t bytes =
        ((uintptr_t)mm->addr + mm->len - lo + page - 1) & ~(page - 1);
    uint64_t limit = emu_memlock_limit();
    size_t taken = 0;

    pthread_mutex_lock(&slot_lock);
    if (limit == 0 || (bytes <= limit && pinned_bytes <= limit - bytes)) {
        pinned_bytes += bytes;
        taken = bytes;
    }
    pthread_mutex_unlock(&slot_lock);
    if (taken == 0) {
        tell_refused(bytes, limit);
    }
    return taken;
}

static void unpin(struct doca_mmap *mm)
{
    pthread_mutex_lock(&slot_lock);
    pinned_bytes -= mm->pinned;
    pthread_mutex_unlock(&slot_lock);
    mm->pinned = 0;
}

doca_error_t doca_mmap_start(struct doca_mmap *mmap)
{
    doca_error_t err;

    if (!mmap->range_set) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (mmap->exported || mmap->from_export) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    if (mmap->started) {
        return DOCA_ERROR_BAD_STATE;
    }
    /* A listing read while other threads map and unmap may skip a
     * mapping; a real hole fails every time. */
    err = check_pinnable(mmap);
    for (int again = 0; err != DOCA_SUCCESS && again < 3; again++) {
        err = check_pinnable(mmap);
    }
    if (err != DOCA_SUCCESS) {
        return err;
    }
    mmap->pinned = pin(mmap);
    if (mmap->pinned == 0) {
        return DOCA_ERROR_DRIVER; /* over the memlock limit */
    }
    mmap->started = 1;
    emu_count(EMU_MMAPS_STARTED, 1);
    return DOCA_SUCCESS;
}

/* Clearing the live word is what invalidates every import; the
 * descriptor goes with it, as DOCA frees it at stop. */
static void unexport(struct doca_mmap *mm)
{
    free(mm->export_blob);
    mm->export_blob = NULL;
    mm->export_len = 0;
    if (mm->slot < 0) {
        return;
    }
    __atomic_store_n(&live_words[mm->slot], 0, __ATOMIC_SEQ_CST);
    /* Tasks that found the word live are still copying: wait for them,
     * and only then may the slot serve another export. */
    emu_fence_wait((uint32_t)mm->slot);
    pthread_mutex_lock(&slot_lock);
    slot_used[mm->slot] = 0;
    pthread_mutex_unlock(&slot_lock);
    mm->slot = -1;
}

/* Imports are born started and never counted: they pin nothing. */
static void stop_local(struct doca_mmap *mm)
{
    unexport(mm);
    if (mm->started && !mm->from_export) {
        emu_count(EMU_MMAPS_STOPPED, 1);
        unpin(mm);
    }
    mm->started = 0;
}

/* DOCA 2.10 lists NOT_PERMITTED for stopping an exported mmap: only
 * destroy ends one (and with it every import). */
doca_error_t doca_mmap_stop(struct doca_mmap *mmap)
{
    if (mmap->from_export || mmap->exported || mmap->nbufs != 0) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    if (!mmap->started) {
        return DOCA_ERROR_BAD_STATE;
    }
    stop_local(mmap);
    return DOCA_SUCCESS;
}

doca_error_t doca_mmap_destroy(struct doca_mmap *mmap)
{
    if (mmap->nbufs != 0) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    if (mmap->fence != NULL) {
        emu_fence_detach(mmap->fence);
    }
    stop_local(mmap);
    free(mmap);
    return DOCA_SUCCESS;
}

/* ---- export and import ---- */

/* Every byte nonzero, so a torn read of a cleared word never matches. */
static int take_slot(struct doca_mmap *mm)
{
    uint64_t value;

    if (getrandom(&value, sizeof(value), 0) != sizeof(value)) {
        return -1;
    }
    value |= 0x0101010101010101ull;
    pthread_mutex_lock(&slot_lock);
    for (int i = 0; i < EMU_MAX_EXPORTS; i++) {
        if (!slot_used[i]) {
            slot_used[i] = 1;
            __atomic_store_n(&live_words[i], value, __ATOMIC_RELEASE);
            mm->slot = i;
            break;
        }
    }
    pthread_mutex_unlock(&slot_lock);
    mm->desc.live_value = value;
    return mm->slot >= 0 ? 0 : -1;
}

static void grant_access_once(void)
{
    static int granted;

    /* EINVAL means no Yama: every ptrace-capable peer may read us. */
    if (!__atomic_exchange_n(&granted, 1, __ATOMIC_RELAXED)) {
        (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    }
}

static int has_dev(const struct doca_mmap *mm, const struct doca_dev *dev)
{
    for (uint32_t i = 0; i < mm->ndevs; i++) {
        if (mm->devs[i] == dev) {
            return 1;
        }
    }
    return 0;
}

/* The descriptor, padded with zeros to the configured size, which the
 * mmap keeps from now on (the knob may change before its next export). */
static int first_export(struct doca_mmap *mm)
{
    size_t size = emu_config()->export_desc_size;
    int fence_fd = -1;

    mm->export_blob = calloc(1, size);
    if (mm->export_blob == NULL ||
        emu_fence_export(&fence_fd, &mm->desc.fence_ino) != 0 ||
        take_slot(mm) != 0) {
        free(mm->export_blob);
        mm->export_blob = NULL;
        return -1;
    }
    mm->desc.magic = EMU_DESC_MAGIC;
    mm->desc.perms = mm->perms;
    mm->desc.pid = getpid();
    mm->desc.addr = (uintptr_t)mm->addr;
    mm->desc.len = mm->len;
    mm->desc.live_addr = (uintptr_t)&live_words[mm->slot];
    mm->desc.slot = (uint32_t)mm->slot;
    mm->desc.fence_fd = fence_fd;
    memcpy(mm->export_blob, &mm->desc, sizeof(mm->desc));
    mm->export_len = size;
    grant_access_once();
    return 0;
}

doca_error_t doca_mmap_export_pci(struct doca_mmap *mmap,
                                  const struct doca_dev *dev,
                                  const void **export_desc,
                                  size_t *export_desc_len)
{
    if (!mmap->started || mmap->from_export ||
        (mmap->perms & PCI_ACCESS) == 0) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    if (!has_dev(mmap, dev)) {
        return DOCA_ERROR_NOT_FOUND;
    }
    if (mmap->slot < 0 && first_export(mmap) != 0) {
        return DOCA_ERROR_NO_MEMORY;
    }
    mmap->exported = 1;
    *export_desc = mmap->export_blob;
    *export_desc_len = mmap->export_len;
    return DOCA_SUCCESS;
}

doca_error_t emu_import_check(struct doca_mmap *mm)
{
    uint64_t word = 0;
    struct iovec local = {&word, sizeof(word)};
    struct iovec remote = {(void *)(uintptr_t)mm->desc.live_addr, sizeof(word)};
    uint32_t stop_after = emu_config()->fault_stop_after;
    ssize_t n;

    if (stop_after != 0 &&
        __atomic_load_n(&mm->ntasks, __ATOMIC_RELAXED) >= stop_after) {
        /* injected: the host stopped its mmap early */
        __atomic_store_n(&mm->invalid, 1, __ATOMIC_RELAXED);
    }
    if (__atomic_load_n(&mm->invalid, __ATOMIC_RELAXED)) {
        return DOCA_ERROR_DRIVER;
    }
    n = process_vm_readv((pid_t)mm->desc.pid, &local, 1, &remote, 1, 0);
    if (n < 0 && errno == EPERM) {
        return DOCA_ERROR_NOT_PERMITTED; /* no ptrace right: not sticky */
    }
    if (n != sizeof(word) || word != mm->desc.live_value) {
        /* for good: a live word never comes back */
        __atomic_store_n(&mm->invalid, 1, __ATOMIC_RELAXED);
        return DOCA_ERROR_DRIVER;
    }
    return DOCA_SUCCESS;
}

doca_error_t emu_import_hold(struct doca_mmap *mm)
{
    doca_error_t err;

    if (__atomic_load_n(&mm->invalid, __ATOMIC_RELAXED)) {
        return DOCA_ERROR_DRIVER; /* no fence needed to know that */
    }
    emu_fence_enter(mm->fence, mm->desc.slot);
    err = emu_import_check(mm);
    if (err != DOCA_SUCCESS) {
        emu_fence_exit(mm->fence, mm->desc.slot);
    }
    return err;
}

void emu_import_release(struct doca_mmap *mm)
{
    emu_fence_exit(mm->fence, mm->desc.slot);
}

/* A descriptor, and zeros up to its length (DOCA_EMU_EXPORT_DESC_SIZE of
 * the exporter): anything else is a damaged blob. */
static int valid_desc_size(const void *desc, size_t len)
{
    const uint8_t *pad = (const uint8_t *)desc + sizeof(struct emu_desc);

    if (len < sizeof(struct emu_desc)) {
        return 0;
    }
    for (size_t i = 0; i < len - sizeof(struct emu_desc); i++) {
        if (pad[i] != 0) {
            return 0;
        }
    }
    return 1;
}

/* Only a device listed in DOCA_EMU_IMPORT_DEVICES (the dpu side's PF by
 * default) has the capability. */
static int can_import(const struct doca_devinfo *info)
{
    const struct emu_config *c = emu_config();

    for (uint32_t i = 0; i < c->nimporters; i++) {
        if (strcmp(info->pci, c->importers[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

doca_error_t doca_mmap_create_from_export(const union doca_data *user_data,
                                          const void *export_desc,
                                          size_t export_desc_len,
                                          struct doca_dev *dev,
                                          struct doca_mmap **mmap)
{
    struct doca_mmap *mm;
    doca_error_t err;

    (void)user_data; /* no getter is emulated */
    if (!valid_desc_size(export_desc, export_desc_len)) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (!can_import(doca_dev_as_devinfo(dev))) {
        return DOCA_ERROR_NOT_SUPPORTED;
    }
    err = doca_mmap_create(&mm);
    if (err != DOCA_SUCCESS) {
        return err;
    }
    memcpy(&mm->desc, export_desc, sizeof(mm->desc));
    if (mm->desc.magic != EMU_DESC_MAGIC || mm->desc.len == 0) {
        free(mm);
        return DOCA_ERROR_INVALID_VALUE;
    }
    err = emu_import_check(mm);
    if (err == DOCA_SUCCESS) {
        err = emu_fence_attach(&mm->desc, &mm->fence);
    }
    if (err != DOCA_SUCCESS) {
        free(mm);
        return err;
    }
    mm->addr = (uint8_t *)(uintptr_t)mm->desc.addr;
    mm->len = mm->desc.len;
    mm->perms = mm->desc.perms;
    mm->range_set = mm->started = mm->from_export = 1;
    mm->devs[mm->ndevs++] = dev;
    emu_count(EMU_IMPORTS, 1);
    *mmap = mm;
    return DOCA_SUCCESS;
}

doca_error_t
doca_mmap_cap_is_export_pci_supported(const struct doca_devinfo *devinfo,
                                      uint8_t *mmap_export)
{
    (void)devinfo;
    *mmap_export = 1;
    return DOCA_SUCCESS;
}

doca_error_t doca_mmap_cap_is_create_from_export_pci_supported(
    const struct doca_devinfo *devinfo, uint8_t *from_export)
{
    *from_export = (uint8_t)can_import(devinfo);
    return DOCA_SUCCESS;
}

/* ---- buffer inventory ---- */

struct doca_buf_inventory {
    struct doca_buf *elems;
    struct doca_buf *free;
    uint32_t n, nfree;
    int started;
};

doca_error_t doca_buf_inventory_create(size_t num_elements,
                                       struct doca_buf_inventory **inventory)
{
    struct doca_buf_inventory *inv;

    if (num_elements == 0 || num_elements > UINT32_MAX) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    inv = calloc(1, sizeof(*inv));
    if (inv != NULL) {
        inv->elems = calloc(num_elements, sizeof(*inv->elems));
    }
    if (inv == NULL || inv->elems == NULL) {
        free(inv);
        return DOCA_ERROR_NO_MEMORY;
    }
    inv->n = inv->nfree = (uint32_t)num_elements;
    for (size_t i = num_elements; i-- > 0;) {
        inv->elems[i].inv = inv;
        inv->elems[i].next_free = inv->free;
        inv->free = &inv->elems[i];
    }
    *inventory = inv;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_inventory_destroy(struct doca_buf_inventory *inventory)
{
    if (inventory->nfree != inventory->n) {
        return DOCA_ERROR_IN_USE;
    }
    free(inventory->elems);
    free(inventory);
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_inventory_start(struct doca_buf_inventory *inventory)
{
    inventory->started = 1;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_inventory_stop(struct doca_buf_inventory *inventory)
{
    inventory->started = 0;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_inventory_get_num_free_elements(
    const struct doca_buf_inventory *inventory, uint32_t *num_of_free_elements)
{
    *num_of_free_elements = inventory->nfree;
    return DOCA_SUCCESS;
}

/*
 * A doca_mmap is not thread safe (doca_mmap.h: only the experimental
 * doca_mmap_enable_thread_safety makes the buf fast path so): getting a
 * buf on one, or returning the last reference, from two threads at once
 * corrupts its buf count on a card. The emulation catches the overlap it
 * happens to see, and stops the program, as a card's corrupted count would
 * stop its teardown.
 */
static void mmap_enter(struct doca_mmap *mm)
{
    if (__atomic_fetch_add(&mm->users, 1, __ATOMIC_ACQUIRE) != 0) {
        fprintf(stderr, "doca emulation: doca_mmap %p used by two threads "
                        "at once (not thread safe)\n", (void *)mm);
        abort();
    }
}

static void mmap_exit(struct doca_mmap *mm)
{
    __atomic_sub_fetch(&mm->users, 1, __ATOMIC_RELEASE);
}

/* [p, p + n) inside [base, base + len), without overflow. */
static int inside(uintptr_t base, size_t len, uintptr_t p, size_t n)
{
    return p >= base && n <= len && p - base <= len - n;
}

doca_error_t doca_buf_inventory_buf_get_by_args(
    struct doca_buf_inventory *inventory, struct doca_mmap *mmap, void *addr,
    size_t len, void *data, size_t data_len, struct doca_buf **buf)
{
    struct doca_buf *b;

    if (!inventory->started || !mmap->started) {
        return DOCA_ERROR_BAD_STATE;
    }
    if (!inside((uintptr_t)mmap->addr, mmap->len, (uintptr_t)addr, len) ||
        !inside((uintptr_t)addr, len, (uintptr_t)data, data_len)) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    b = inventory->free;
    if (b == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    inventory->free = b->next_free;
    inventory->nfree--;
    mmap_enter(mmap);
    mmap->nbufs++;
    mmap_exit(mmap);
    *b = (struct doca_buf){.inv = inventory,
                           .mmap = mmap,
                           .head = addr,
                           .len = len,
                           .data = data,
                           .data_len = data_len,
                           .refcount = 1};
    b->first = b; /* a list of one */
    *buf = b;
    return DOCA_SUCCESS;
}

/* Each element of a list is an inventory element of its own: a list of n
 * bufs holds n of them until its head's refcount drops to 0. */
void emu_buf_put(struct doca_buf *b)
{
    struct doca_buf_inventory *inv = b->inv;

    mmap_enter(b->mmap);
    b->mmap->nbufs--;
    mmap_exit(b->mmap);
    b->mmap = NULL;
    b->refcount = 0;
    b->first = b->next = NULL;
    b->next_free = inv->free;
    inv->free = b;
    inv->nfree++;
}
