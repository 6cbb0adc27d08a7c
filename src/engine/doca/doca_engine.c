/*
 * doca: NVIDIA DOCA DMA between a BlueField DPU's Arm cores and host memory
 * (docs/doca.md, "Engine"; DOCA call sequences: shared/DOCA.md (b)).
 *
 * Host: each registered range is one doca_mmap (DOCA 2.x holds one range
 * per mmap) with PCI read-only or read-write permission, started (pinned)
 * and exported with doca_mmap_export_pci; the export descriptor is the
 * blob. Dpu: each blob becomes an mmap with doca_mmap_create_from_export,
 * and transfers are DMA memcpy tasks (doca_ep.c).
 *
 * Built into libhmaf when pkg-config finds the DOCA SDK; otherwise built
 * only for tests, against the emulation in tests/doca.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <hmaf/error.h>
#include <hmaf/types.h>

#include "engine/doca/doca_int.h"
#include "util/compiler.h"
#include "util/config.h"
#include "util/log.h"

/* Default devices: the BlueField PF as the host sees it, and the Arm-side
 * PF on the DPU. HMAF_DOCA_DEV overrides either. */
#define DENG_HOST_DEV "b1:00.0"
#define DENG_DPU_DEV  "03:00.0"

int hmaf__doca_status_to_hmaf(doca_error_t err)
{
    switch (err) {
    case DOCA_SUCCESS:
        return 0;
    case DOCA_ERROR_NO_MEMORY:
    case DOCA_ERROR_FULL:
        return HMAF_ENOMEM;
    case DOCA_ERROR_NOT_PERMITTED:
        return HMAF_EACCES; /* e.g. a write to a PCI_READ_ONLY export */
    case DOCA_ERROR_NOT_SUPPORTED:
        return HMAF_ENOTSUP;
    case DOCA_ERROR_AGAIN:
    case DOCA_ERROR_IN_USE:
    case DOCA_ERROR_BAD_STATE:
        return HMAF_EBUSY;
    case DOCA_ERROR_TIME_OUT:
        return HMAF_ETIMEDOUT;
    /* Host memory is pinned while exported, so a DMA cannot hit an
     * unmapped page: a device-level failure means the host's mmap is gone
     * (stopped, or the host died) or the path to it is broken. Either way
     * the session cannot go on; failed tasks are not retried. */
    case DOCA_ERROR_DRIVER:
    case DOCA_ERROR_IO_FAILED:
    case DOCA_ERROR_CONNECTION_RESET:
    case DOCA_ERROR_CONNECTION_ABORTED:
    case DOCA_ERROR_NOT_CONNECTED:
    case DOCA_ERROR_SHUTDOWN:
        return HMAF_ECONNRESET;
    case DOCA_ERROR_TOO_BIG: /* beyond max_buf_size: a bug of ours */
    case DOCA_ERROR_INVALID_VALUE:
    default:
        return HMAF_EINVAL;
    }
}

/* What DOCA lists is what the engine can open: devices of the mlx5
 * driver, BlueField or ConnectX; the device a session uses is chosen at
 * ctx_open (HMAF_DOCA_DEV). */
static int deng_probe(char *why, size_t len)
{
    struct doca_devinfo **list = NULL;
    uint32_t n = 0;
    doca_error_t err = doca_devinfo_create_list(&list, &n);

    if (err != DOCA_SUCCESS) {
        snprintf(why, len,
                 "doca_devinfo_create_list: %s: check the DOCA runtime and "
                 "the mlx5 driver (`mst status`, `devlink dev`)",
                 doca_error_get_name(err));
        return HMAF_ENOENGINE;
    }
    doca_devinfo_destroy_list(list);
    if (n == 0) {
        snprintf(why, len,
                 "DOCA lists no device: run on a BlueField or on its host "
                 "(with the mlx5 driver loaded), or pick another engine");
        return HMAF_ENOENGINE;
    }
    return 0;
}

static const char *deng_dev_name(enum hmaf_engine_role role)
{
    const char *env = hmaf__config_env(HMAF_CFG_DOCA_DEV);

    if (env != NULL) {
        return env;
    }
    return role == HMAF_ROLE_HOST ? DENG_HOST_DEV : DENG_DPU_DEV;
}

static int deng_open_dev(const char *pci, struct doca_dev **dev_out)
{
    struct doca_devinfo **list = NULL;
    uint32_t n = 0;
    doca_error_t err = doca_devinfo_create_list(&list, &n);
    int ret = HMAF_ENOENGINE;

    if (err != DOCA_SUCCESS) {
        hmaf__log_error("doca_devinfo_create_list: %s",
                        doca_error_get_name(err));
        return HMAF_ENOENGINE;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint8_t eq = 0;

        if (doca_devinfo_is_equal_pci_addr(list[i], pci, &eq) != DOCA_SUCCESS ||
            !eq) {
            continue;
        }
        err = doca_dev_open(list[i], dev_out);
        ret = hmaf__doca_status_to_hmaf(err);
        if (err != DOCA_SUCCESS) {
            hmaf__log_error("doca_dev_open %s: %s", pci,
                            doca_error_get_name(err));
        }
        break;
    }
    if (ret == HMAF_ENOENGINE) {
        hmaf__log_error("no doca device at pci %s (set HMAF_DOCA_DEV)", pci);
    }
    doca_devinfo_destroy_list(list);
    return ret;
}

/* A byte count from the environment, or its default when unset or
 * malformed (a malformed one is said: util/config.c). */
static uint64_t deng_env_bytes(enum hmaf__cfg_id id)
{
    uint64_t v = 0;

    (void)hmaf__config_value(id, &v);
    return v;
}

/* Host bufs one task may chain, as the device allows (1: no lists).
 * HMAF_DOCA_LISTS=0 turns lists off. */
static uint32_t deng_list_max(struct doca_devinfo *info)
{
    uint32_t n = 1;
    uint64_t lists = 1;

    (void)hmaf__config_value(HMAF_CFG_DOCA_LISTS, &lists);
    if (!lists) {
        return 1;
    }
    if (doca_dma_cap_task_memcpy_get_max_buf_list_len(info, &n) !=
            DOCA_SUCCESS ||
        n == 0) {
        return 1;
    }
    return HMAF_MIN(n, (uint32_t)DENG_LIST_MAX);
}

/* Dpu: the window and the transfer size, fixed for every ep of this ctx.
 * The task limit needs a DMA instance, so one is made and dropped. */
static int deng_dpu_caps(struct deng_ctx *c)
{
    struct doca_devinfo *info = doca_dev_as_devinfo(c->dev);
    struct doca_dma *dma = NULL;
    uint64_t max_buf = 0;
    uint32_t max_tasks = 0;
    uint8_t from_export = 0;
    doca_error_t err = doca_dma_cap_task_memcpy_is_supported(info);

    if (err == DOCA_SUCCESS) {
        err = doca_mmap_cap_is_create_from_export_pci_supported(info,
                                                                &from_export);
    }
    if (err == DOCA_SUCCESS && !from_export) {
        err = DOCA_ERROR_NOT_SUPPORTED;
    }
    if (err == DOCA_SUCCESS) {
        err = doca_dma_cap_task_memcpy_get_max_buf_size(info, &max_buf);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_dma_create(c->dev, &dma);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_dma_cap_get_max_num_tasks(dma, &max_tasks);
        doca_dma_destroy(dma);
    }
    if (err != DOCA_SUCCESS || max_buf == 0 || max_tasks == 0) {
        hmaf__log_error("doca device cannot dma from the host: %s",
                        doca_error_get_name(err));
        return err != DOCA_SUCCESS ? hmaf__doca_status_to_hmaf(err)
                                   : HMAF_ENOTSUP;
    }
    c->nslots = HMAF_MIN(max_tasks, (uint32_t)DENG_TASKS_MAX);
    c->slot_size = (size_t)HMAF_MIN(max_buf, (uint64_t)DENG_SLOT_MAX);
    c->max_task = HMAF_MIN(max_buf, (uint64_t)DENG_TASK_MAX);
    c->list_max = deng_list_max(info);
    c->zcopy_min = deng_env_bytes(HMAF_CFG_DOCA_ZCOPY_MIN);
    c->zcopy_cache = deng_env_bytes(HMAF_CFG_DOCA_ZCOPY_CACHE);
    return 0;
}

static int deng_host_caps(struct deng_ctx *c)
{
    uint8_t ok = 0;
    doca_error_t err =
        doca_mmap_cap_is_export_pci_supported(doca_dev_as_devinfo(c->dev), &ok);

    if (err != DOCA_SUCCESS || !ok) {
        hmaf__log_error("doca device cannot export memory over pci: %s",
                        doca_error_get_name(err));
        return HMAF_ENOTSUP;
    }
    return 0;
}

static int deng_ctx_open(struct hmaf_engine_ctx *ctx)
{
    struct deng_ctx *c = hmaf__container_of(ctx, struct deng_ctx, base);
    int ret = deng_open_dev(deng_dev_name(ctx->role), &c->dev);

    if (ret < 0) {
        return ret;
    }
    ret = ctx->role == HMAF_ROLE_HOST ? deng_host_caps(c) : deng_dpu_caps(c);
    if (ret < 0) {
        doca_dev_close(c->dev);
        c->dev = NULL;
    }
    return ret;
}

static void deng_ctx_close(struct hmaf_engine_ctx *ctx)
{
    struct deng_ctx *c = hmaf__container_of(ctx, struct deng_ctx, base);

    if (c->dev != NULL) {
        doca_dev_close(c->dev);
    }
}

static void deng_limits(const struct hmaf_engine_ctx *ctx,
                        struct hmaf_engine_limits *limits_out)
{
    const struct deng_ctx *c =
        hmaf__container_of(ctx, const struct deng_ctx, base);
    /* The host side moves nothing; it reports a nominal window. */
    uint32_t nslots = c->nslots > 0 ? c->nslots : 1;

    /* Staged transfers go in slot_size pieces (doca_ep.c) */
    limits_out->max_transfer = c->max_task > 0 ? c->max_task : 1;
    limits_out->max_inflight = nslots;
    limits_out->max_segments = nslots;
    limits_out->max_blob = DENG_BLOB_MAX;
}

/* The device links the two sides; there is nothing per peer to exchange
 * (the channel carries the export blobs). */
static int deng_ep_open(struct hmaf_engine_ep *ep, const void *peer_blob,
                        size_t len)
{
    (void)peer_blob;
    if (len != 0) {
        return HMAF_EPROTO;
    }
    if (ep->ctx->role == HMAF_ROLE_HOST) {
        return 0;
    }
    return hmaf__doca_ep_open(hmaf__container_of(ep, struct deng_ep, base));
}

static void deng_ep_close(struct hmaf_engine_ep *ep)
{
    if (ep->ctx->role == HMAF_ROLE_DPU) {
        hmaf__doca_ep_close(hmaf__container_of(ep, struct deng_ep, base));
    }
}

/* doca_mmap_start pins the range; check first that it is mapped, so that
 * a hole is a clear HMAF_EFAULT on hardware and in the emulation alike
 * (DOCA documents no status for a hole). mincore fails with ENOMEM on a
 * hole and has no side effect; it is asked about DENG_PROBE_PAGES pages
 * at a time. */
#define DENG_PROBE_PAGES 4096

static int deng_check_mapped(uint64_t addr, uint64_t len)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t at = addr & ~(page - 1);
    unsigned char resident[DENG_PROBE_PAGES];

    while (at < addr + len) {
        uint64_t span = HMAF_MIN(addr + len - at, DENG_PROBE_PAGES * page);

        if (mincore((void *)(uintptr_t)at, (size_t)span, resident) != 0) {
            hmaf__log_debug("doca register %#llx+%llu: %m",
                            (unsigned long long)addr, (unsigned long long)len);
            return HMAF_EFAULT;
        }
        at += span;
    }
    return 0;
}

/* Does every page of [addr, addr + len) grant read (and write when
 * need_write) in /proc/self/maps? Asked only after a pin failed, to tell
 * a page the device may not touch from a pin the system refused. The
 * listing is in address order: walk it until the range is covered. */
static int deng_range_accessible(uint64_t addr, uint64_t len, int need_write)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    uint64_t at = addr, end = addr + len;
    char line[512];

    if (maps == NULL) {
        return 1; /* cannot tell: say what is likelier */
    }
    while (at < end && fgets(line, sizeof(line), maps) != NULL) {
        unsigned long long lo, hi;
        char prot[5];

        if (strchr(line, '\n') == NULL) {
            int ch;

            while ((ch = fgetc(maps)) != EOF && ch != '\n') {
            }
        }
        if (sscanf(line, "%llx-%llx %4s", &lo, &hi, prot) != 3 || hi <= at) {
            continue;
        }
        if (lo > at || prot[0] != 'r' || (need_write && prot[1] != 'w')) {
            break;
        }
        at = hi;
    }
    fclose(maps);
    return at >= end;
}

/* DRIVER from doca_mmap_start: pinning failed. The range is mapped
 * (checked before); a page without the access asked for is HMAF_EFAULT
 * as a hole is, else the system refused the pin — the memlock limit, or
 * memory pressure — and that is HMAF_ENOMEM, said with the limit. */
static int deng_pin_failed(const struct hmaf_engine_mem *mem)
{
    struct rlimit rl;

    if (!deng_range_accessible(mem->addr, mem->len,
                               mem->access == HMAF_ACCESS_READ_WRITE)) {
        hmaf__log_debug("doca register %#llx+%llu: a page without access",
                        (unsigned long long)mem->addr,
                        (unsigned long long)mem->len);
        return HMAF_EFAULT;
    }
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        hmaf__log_error("doca could not pin %llu bytes at %#llx: memlock "
                        "limit %llu bytes (ulimit -l), or memory pressure",
                        (unsigned long long)mem->len,
                        (unsigned long long)mem->addr,
                        (unsigned long long)rl.rlim_cur);
    } else {
        hmaf__log_error("doca could not pin %llu bytes at %#llx: memory "
                        "pressure",
                        (unsigned long long)mem->len,
                        (unsigned long long)mem->addr);
    }
    return HMAF_ENOMEM;
}

static int deng_mem_register(struct hmaf_engine_mem *mem)
{
    struct deng_mem *m = hmaf__container_of(mem, struct deng_mem, base);
    struct deng_ctx *c = hmaf__container_of(mem->ctx, struct deng_ctx, base);
    uint32_t perm = mem->access == HMAF_ACCESS_READ_WRITE
                        ? DOCA_ACCESS_FLAG_PCI_READ_WRITE
                        : DOCA_ACCESS_FLAG_PCI_READ_ONLY;
    int ret = deng_check_mapped(mem->addr, mem->len);
    doca_error_t err;

    if (ret < 0) {
        return ret;
    }
    err = doca_mmap_create(&m->mmap);
    if (err != DOCA_SUCCESS) {
        return hmaf__doca_status_to_hmaf(err);
    }
    err = doca_mmap_set_memrange(m->mmap, (void *)(uintptr_t)mem->addr,
                                 (size_t)mem->len);
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_set_permissions(m->mmap, perm);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_add_dev(m->mmap, c->dev);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_start(m->mmap);
    }
    if (err != DOCA_SUCCESS) {
        if (err != DOCA_ERROR_DRIVER) {
            hmaf__log_error("doca mmap %#llx+%llu: %s",
                            (unsigned long long)mem->addr,
                            (unsigned long long)mem->len,
                            doca_error_get_name(err));
        }
        doca_mmap_destroy(m->mmap);
        m->mmap = NULL;
        return err == DOCA_ERROR_DRIVER ? deng_pin_failed(mem)
                                        : hmaf__doca_status_to_hmaf(err);
    }
    return 0;
}

/* The descriptor belongs to the mmap (freed when it stops): copy it. */
static int deng_mem_export(struct hmaf_engine_mem *mem, void *buf, size_t cap,
                           size_t *len_out)
{
    struct deng_mem *m = hmaf__container_of(mem, struct deng_mem, base);
    struct deng_ctx *c = hmaf__container_of(mem->ctx, struct deng_ctx, base);
    const void *desc = NULL;
    size_t len = 0;
    doca_error_t err = doca_mmap_export_pci(m->mmap, c->dev, &desc, &len);

    if (err != DOCA_SUCCESS) {
        hmaf__log_error("doca_mmap_export_pci: %s", doca_error_get_name(err));
        return hmaf__doca_status_to_hmaf(err);
    }
    if (len > cap || len > DENG_BLOB_MAX) {
        hmaf__log_error("doca export descriptor of %zu bytes exceeds %zu", len,
                        HMAF_MIN(cap, (size_t)DENG_BLOB_MAX));
        return HMAF_ENOSPC;
    }
    memcpy(buf, desc, len);
    *len_out = len;
    return 0;
}

/* Invalidates every import of this range: the protocol lets the dpu side
 * release its imports first (DEREGISTER, revocation acks, session close).
 * Destroy, not stop + destroy: DOCA refuses to stop an exported mmap
 * (NOT_PERMITTED); destroying stops it. */
static void deng_mem_deregister(struct hmaf_engine_mem *mem)
{
    struct deng_mem *m = hmaf__container_of(mem, struct deng_mem, base);
    doca_error_t err;

    if (m->mmap == NULL) {
        return;
    }
    err = doca_mmap_destroy(m->mmap);
    if (err != DOCA_SUCCESS) {
        hmaf__log_warn("doca mmap teardown: %s", doca_error_get_name(err));
    }
    m->mmap = NULL;
}

static int deng_rmem_import(struct hmaf_engine_rmem *rmem, const void *blob,
                            size_t len)
{
    struct deng_rmem *r = hmaf__container_of(rmem, struct deng_rmem, base);
    struct deng_ep *ep = hmaf__container_of(rmem->ep, struct deng_ep, base);
    struct deng_ctx *c =
        hmaf__container_of(rmem->ep->ctx, struct deng_ctx, base);
    doca_error_t err;

    if (len == 0 || len > DENG_BLOB_MAX) {
        return HMAF_EPROTO;
    }
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        return HMAF_ENOMEM;
    }
    pthread_mutex_lock(&ep->reg_lock);
    err = doca_mmap_create_from_export(NULL, blob, len, c->dev, &r->mmap);
    pthread_mutex_unlock(&ep->reg_lock);
    if (err != DOCA_SUCCESS) {
        pthread_mutex_destroy(&r->lock);
        hmaf__log_error("doca_mmap_create_from_export: %s",
                        doca_error_get_name(err));
        r->mmap = NULL;
        return err == DOCA_ERROR_INVALID_VALUE ? HMAF_EPROTO
                                               : hmaf__doca_status_to_hmaf(err);
    }
    return 0;
}

/* The core releases a region only once no transfer uses it, so no buf
 * points into the mmap any more. */
static void deng_rmem_release(struct hmaf_engine_rmem *rmem)
{
    struct deng_rmem *r = hmaf__container_of(rmem, struct deng_rmem, base);
    struct deng_ep *ep = hmaf__container_of(rmem->ep, struct deng_ep, base);
    doca_error_t err;

    if (r->mmap == NULL) {
        return;
    }
    pthread_mutex_lock(&ep->reg_lock);
    err = doca_mmap_destroy(r->mmap);
    pthread_mutex_unlock(&ep->reg_lock);
    pthread_mutex_destroy(&r->lock);
    if (err != DOCA_SUCCESS) {
        hmaf__log_warn("doca import teardown: %s", doca_error_get_name(err));
    }
    r->mmap = NULL;
}

const struct hmaf_engine_ops hmaf_engine_doca = {
    .name = "doca",
    .abi_version = HMAF_ENGINE_ABI_VERSION,
    .flags = HMAF_ENGINE_ENFORCED | HMAF_ENGINE_ASYNC,
    .ctx_size = sizeof(struct deng_ctx),
    .ep_size = sizeof(struct deng_ep),
    .mem_size = sizeof(struct deng_mem),
    .rmem_size = sizeof(struct deng_rmem),
    .probe = deng_probe,
    .ctx_open = deng_ctx_open,
    .ctx_close = deng_ctx_close,
    .limits = deng_limits,
    .ep_open = deng_ep_open,
    .ep_close = deng_ep_close,
    .mem_register = deng_mem_register,
    .mem_export = deng_mem_export,
    .mem_deregister = deng_mem_deregister,
    .rmem_import = deng_rmem_import,
    .rmem_release = deng_rmem_release,
    .post = hmaf__doca_post,
    .progress = hmaf__doca_progress,
};
