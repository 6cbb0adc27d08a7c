/*
 * The engines built into this library, and the life of their objects.
 *
 * The list is src/engine/CMakeLists.txt's, in its order (the first is
 * the default, cma, so the default does not change where other engines
 * are built; they are chosen by name, params.engine or HMAF_ENGINE).
 * CMake generates engine/engine_list.h from it, whose
 * HMAF_ENGINE_LIST(X) names each engine this library is compiled with. An
 * explicit table, not constructors, so static linking keeps every engine.
 */
#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#include "engine/engine_list.h"
#include "util/config.h"
#include "util/log.h"

/* Each engine's table is hmaf_engine_<name> (engine.h). */
#define DECLARE_ENGINE(name)                                                   \
    extern const struct hmaf_engine_ops hmaf_engine_##name;
HMAF_ENGINE_LIST(DECLARE_ENGINE)

#define ENGINE_ENTRY(name) &hmaf_engine_##name,
static const struct hmaf_engine_ops *const builtin[] = {
    HMAF_ENGINE_LIST(ENGINE_ENTRY)
};

#define NUM_ENGINES (sizeof(builtin) / sizeof(builtin[0]))

static struct hmaf_engine_ops resolved[NUM_ENGINES];
static const char *names[NUM_ENGINES + 1];
static size_t num_resolved;
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

static void stub_void_ctx(struct hmaf_engine_ctx *ctx)
{
    (void)ctx;
}
static void stub_void_ep(struct hmaf_engine_ep *ep)
{
    (void)ep;
}
static void stub_void_mem(struct hmaf_engine_mem *mem)
{
    (void)mem;
}
static void stub_void_rmem(struct hmaf_engine_rmem *rmem)
{
    (void)rmem;
}
static int stub_no_progress(struct hmaf_engine_ep *ep)
{
    (void)ep;
    return 0;
}
static int stub_empty_blob(struct hmaf_engine_ctx *ctx, void *buf, size_t cap,
                           size_t *len_out)
{
    (void)ctx, (void)buf, (void)cap;
    *len_out = 0;
    return 0;
}
static int stub_mem_register(struct hmaf_engine_mem *mem)
{
    (void)mem;
    return HMAF_ENOTSUP;
}
static int stub_mem_export(struct hmaf_engine_mem *mem, void *buf, size_t cap,
                           size_t *len_out)
{
    (void)mem, (void)buf, (void)cap, (void)len_out;
    return HMAF_ENOTSUP;
}
static int stub_rmem_import(struct hmaf_engine_rmem *rmem, const void *blob,
                            size_t len)
{
    (void)rmem, (void)blob, (void)len;
    return HMAF_ENOTSUP;
}

/* move_one for an engine without it: a batch of one, run to completion. */
static int stub_move_one(struct hmaf_engine_ep *ep, enum hmaf_xfer_op op,
                         const struct hmaf_xfer *x)
{
    struct hmaf_xfer xfer = *x;
    struct hmaf_xfer_batch batch = {.op = op, .xfers = &xfer, .count = 1};

    return hmaf__engine_run(ep, &batch);
}

static int stub_atomic(struct hmaf_engine_ep *ep,
                       struct hmaf_engine_atomic *ops, uint32_t count)
{
    (void)ep;
    (void)ops;
    (void)count;
    return HMAF_ENOTSUP;
}

/* Engines whose transfers need no host CPU: nothing to do, nothing to
 * wait on. */
static int stub_host_progress(struct hmaf_engine_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static int stub_wait_fd(struct hmaf_engine_ctx *ctx, int *fd_out)
{
    (void)ctx;
    *fd_out = -1;
    return HMAF_ENOTSUP;
}

int hmaf__engine_has_atomic(const struct hmaf_engine_ops *ops)
{
    return ops->atomic != stub_atomic;
}

#define FILL(ops, field, stub)                                                 \
    do {                                                                       \
        if ((ops)->field == NULL) {                                            \
            (ops)->field = (stub);                                             \
        }                                                                      \
    } while (0)

static int required_ops_present(const struct hmaf_engine_ops *ops)
{
    return ops->probe != NULL && ops->ctx_open != NULL &&
           ops->limits != NULL && ops->ep_open != NULL && ops->post != NULL;
}

static void resolve_all(void)
{
    for (size_t i = 0; i < NUM_ENGINES; i++) {
        struct hmaf_engine_ops *ops = &resolved[num_resolved];

        if (builtin[i]->abi_version != HMAF_ENGINE_ABI_VERSION ||
            !required_ops_present(builtin[i])) {
            hmaf__log_error("engine %s: abi %u or required ops unusable",
                            builtin[i]->name, builtin[i]->abi_version);
            continue;
        }
        *ops = *builtin[i];
        FILL(ops, ctx_close, stub_void_ctx);
        FILL(ops, local_blob, stub_empty_blob);
        FILL(ops, ep_close, stub_void_ep);
        FILL(ops, mem_register, stub_mem_register);
        FILL(ops, mem_export, stub_mem_export);
        FILL(ops, mem_deregister, stub_void_mem);
        FILL(ops, rmem_import, stub_rmem_import);
        FILL(ops, rmem_release, stub_void_rmem);
        FILL(ops, progress, stub_no_progress);
        FILL(ops, move_one, stub_move_one);
        FILL(ops, atomic, stub_atomic);
        FILL(ops, host_progress, stub_host_progress);
        FILL(ops, wait_fd, stub_wait_fd);
        names[num_resolved++] = ops->name;
    }
}

const char *const *hmaf__engine_names(void)
{
    pthread_once(&resolve_once, resolve_all);
    return names;
}

const struct hmaf_engine_ops *hmaf__engine_at(size_t i)
{
    pthread_once(&resolve_once, resolve_all);
    return i < num_resolved ? &resolved[i] : NULL;
}

int hmaf__engine_probe(const struct hmaf_engine_ops *ops, char *why,
                       size_t len)
{
    int ret;

    why[0] = '\0';
    ret = ops->probe(why, len);
    if (ret < 0 && why[0] == '\0') {
        snprintf(why, len, "%s", "its check failed and gave no reason");
    }
    return ret < 0 ? ret : 0;
}

/* Nothing matched: say so, with what there is, or a typo in
 * params.engine or $HMAF_ENGINE would fail create with HMAF_ENOENGINE and
 * no word why. */
static void log_not_found(const char *name)
{
    char built[64] = "";
    size_t len = 0;

    for (size_t i = 0; i < num_resolved && len < sizeof(built); i++) {
        len += (size_t)snprintf(built + len, sizeof(built) - len, "%s%s",
                                i > 0 ? ", " : "", resolved[i].name);
    }
    if (name != NULL && name[0] != '\0') {
        hmaf__log_error("no engine named '%s' in this libhmaf (built: %s)",
                        name, built);
    } else {
        hmaf__log_error("no engine is usable here (built: %s)", built);
    }
}

/* A named engine, or else the default: the first built (cma). The others
 * are taken by name only, so a default that cannot run here is an error
 * that says why, not a silent switch to an engine the peer does not run
 * (which would end as HMAF_EENGINE, the cause nowhere). */
const struct hmaf_engine_ops *hmaf__engine_find(const char *name)
{
    char why[HMAF_ENGINE_WHY_MAX];
    int named;

    pthread_once(&resolve_once, resolve_all);
    hmaf__config_check_env(); /* sessions and agents all pass here */
    if (name == NULL || name[0] == '\0') {
        name = hmaf__config_env(HMAF_CFG_ENGINE);
    }
    named = name != NULL && name[0] != '\0';
    for (size_t i = 0; i < num_resolved; i++) {
        const struct hmaf_engine_ops *ops = &resolved[i];

        if (named && strcmp(ops->name, name) != 0) {
            continue;
        }
        if (hmaf__engine_probe(ops, why, sizeof(why)) == 0) {
            return ops;
        }
        hmaf__log_error("engine %s%s is built but not usable here: %s",
                        ops->name, named ? "" : " (the default)", why);
        return NULL;
    }
    log_not_found(name);
    return NULL;
}

int hmaf__engine_ctx_create(const struct hmaf_engine_ops *ops,
                            enum hmaf_engine_role role,
                            struct hmaf_engine_ctx **ctx_out)
{
    struct hmaf_engine_ctx *ctx = calloc(1, ops->ctx_size);
    int ret;

    if (ctx == NULL) {
        return HMAF_ENOMEM;
    }
    ctx->ops = ops;
    ctx->role = role;
    ret = ops->ctx_open(ctx);
    if (ret < 0) {
        free(ctx);
        return ret;
    }
    *ctx_out = ctx;
    return 0;
}

void hmaf__engine_ctx_destroy(struct hmaf_engine_ctx *ctx)
{
    if (ctx != NULL) {
        ctx->ops->ctx_close(ctx);
        free(ctx);
    }
}

int hmaf__engine_ep_create(struct hmaf_engine_ctx *ctx, int peer_pid,
                           const void *peer_blob, size_t len,
                           struct hmaf_engine_ep **ep_out)
{
    struct hmaf_engine_ep *ep = calloc(1, ctx->ops->ep_size);
    int ret;

    if (ep == NULL) {
        return HMAF_ENOMEM;
    }
    ep->ctx = ctx;
    ep->peer_pid = peer_pid;
    ret = ctx->ops->ep_open(ep, peer_blob, len);
    if (ret < 0) {
        free(ep);
        return ret;
    }
    *ep_out = ep;
    return 0;
}

void hmaf__engine_ep_destroy(struct hmaf_engine_ep *ep)
{
    if (ep != NULL) {
        ep->ctx->ops->ep_close(ep);
        free(ep);
    }
}

void hmaf__engine_ep_abandon(struct hmaf_engine_ep *ep)
{
    free(ep);
}

void hmaf__engine_ctx_abandon(struct hmaf_engine_ctx *ctx)
{
    free(ctx);
}

int hmaf__engine_mem_create(struct hmaf_engine_ctx *ctx, uint64_t addr,
                            uint64_t len, unsigned access,
                            struct hmaf_engine_mem **mem_out)
{
    struct hmaf_engine_mem *mem = calloc(1, ctx->ops->mem_size);
    int ret;

    if (mem == NULL) {
        return HMAF_ENOMEM;
    }
    mem->ctx = ctx;
    mem->addr = addr;
    mem->len = len;
    mem->access = access;
    ret = ctx->ops->mem_register(mem);
    if (ret < 0) {
        free(mem);
        return ret;
    }
    *mem_out = mem;
    return 0;
}

void hmaf__engine_mem_destroy(struct hmaf_engine_mem *mem)
{
    if (mem != NULL) {
        mem->ctx->ops->mem_deregister(mem);
        free(mem);
    }
}

size_t hmaf__engine_rmem_size(const struct hmaf_engine_ops *ops)
{
    return ops->rmem_size;
}

int hmaf__engine_rmem_import_at(void *storage, struct hmaf_engine_ep *ep,
                                uint64_t addr, uint64_t len, unsigned access,
                                const void *blob, size_t blob_len,
                                struct hmaf_engine_rmem **rmem_out)
{
    struct hmaf_engine_rmem *rmem = storage;
    int ret;

    memset(rmem, 0, ep->ctx->ops->rmem_size);
    rmem->ep = ep;
    rmem->addr = addr;
    rmem->len = len;
    rmem->access = access;
    ret = ep->ctx->ops->rmem_import(rmem, blob, blob_len);
    if (ret < 0) {
        return ret;
    }
    *rmem_out = rmem;
    return 0;
}

int hmaf__engine_rmem_create(struct hmaf_engine_ep *ep, uint64_t addr,
                             uint64_t len, unsigned access, const void *blob,
                             size_t blob_len,
                             struct hmaf_engine_rmem **rmem_out)
{
    void *storage = malloc(ep->ctx->ops->rmem_size);
    int ret;

    if (storage == NULL) {
        return HMAF_ENOMEM;
    }
    ret = hmaf__engine_rmem_import_at(storage, ep, addr, len, access, blob,
                                      blob_len, rmem_out);
    if (ret < 0) {
        free(storage);
    }
    return ret;
}

void hmaf__engine_rmem_release(struct hmaf_engine_rmem *rmem)
{
    if (rmem != NULL) {
        rmem->ep->ctx->ops->rmem_release(rmem);
    }
}

void hmaf__engine_rmem_free(struct hmaf_engine_rmem *rmem)
{
    free(rmem);
}

void hmaf__engine_rmem_destroy(struct hmaf_engine_rmem *rmem)
{
    hmaf__engine_rmem_release(rmem);
    hmaf__engine_rmem_free(rmem);
}

int hmaf__engine_complete(struct hmaf_engine_ep *ep,
                          struct hmaf_xfer_batch *batch)
{
    /* Acquire: an engine may complete the batch from another thread's
     * progress (doca), publishing status before completed. */
    while (__atomic_load_n(&batch->completed, __ATOMIC_ACQUIRE) <
           batch->count) {
        ep->ctx->ops->progress(ep);
    }
    return batch->status;
}

int hmaf__engine_run(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch)
{
    int ret;

    batch->completed = 0;
    batch->status = 0;
    ret = ep->ctx->ops->post(ep, batch);
    return ret < 0 ? ret : hmaf__engine_complete(ep, batch);
}
