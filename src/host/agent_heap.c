/*
 * The host's side of the heap (include/hmaf/heap.h): the agent's public
 * calls, each a few steps of the allocator (host/heap.c) under the agent's
 * lock, which also covers the mailbox's ALLOC and FREE (serve_heap.c).
 */
#include <stdint.h>
#include <string.h>

#include <hmaf/error.h>
#include <hmaf/heap.h>

#include "host/agent_int.h"
#include "host/heap.h"
#include "util/config.h"
#include "util/stats.h"

HMAF_API void hmaf_heap_params_init(hmaf_heap_params_t *params)
{
    memset(params, 0, sizeof(*params));
    params->size = sizeof(*params);
    hmaf__config_apply(HMAF_CFG_HEAP, params);
}

static int check_heap_args(hmaf_agent_t *agent, void *base, size_t len,
                           const hmaf_heap_params_t *p)
{
    uint64_t b = (uint64_t)(uintptr_t)base;

    if (agent == NULL || base == NULL || b % HMAF_HEAP_PAGE != 0 ||
        len % HMAF_HEAP_PAGE != 0 || len < HMAF_HEAP_MIN_LEN ||
        (p != NULL && p->size != sizeof(*p))) {
        return HMAF_EINVAL;
    }
    return len > UINT64_MAX - b ? HMAF_EOVERFLOW : 0;
}

HMAF_API int hmaf_agent_heap_create(hmaf_agent_t *agent, void *base,
                                    size_t len,
                                    const hmaf_heap_params_t *params)
{
    uint64_t b = (uint64_t)(uintptr_t)base;
    struct hmaf__heap *h = NULL;
    struct hmaf__exposure *e;
    hmaf_heap_params_t defaults;
    int ret = check_heap_args(agent, base, len, params);

    if (ret < 0) {
        return ret;
    }
    if (params == NULL) { /* the defaults, the environment's included */
        hmaf_heap_params_init(&defaults);
        params = &defaults;
    }
    pthread_mutex_lock(&agent->lock);
    ret = agent->heap != NULL ? HMAF_EEXIST : 0;
    if (ret == 0) {
        ret = hmaf__heap_create(b, len, params->session_quota, &h);
    }
    if (ret == 0) {
        ret = hmaf__exposure_add(&agent->exposures, b, len,
                                 HMAF_ACCESS_READ_WRITE, &e);
    }
    if (ret == 0) {
        agent->heap = h;
        h = NULL;
    }
    pthread_mutex_unlock(&agent->lock);
    hmaf__heap_destroy(h); /* NULL unless the exposure failed */
    return ret;
}

HMAF_API int hmaf_agent_heap_alloc(hmaf_agent_t *agent, size_t size,
                                   void **ptr_out)
{
    uint64_t addr, block_size;
    uint32_t got;
    int ret;

    if (agent == NULL || ptr_out == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    ret = agent->heap == NULL
              ? HMAF_ENOENT
              : hmaf__heap_alloc(agent->heap, HMAF_HEAP_HOST_OWNER, size, 1,
                                 &addr, &got, &block_size);
    pthread_mutex_unlock(&agent->lock);
    if (ret == 0) {
        *ptr_out = (void *)(uintptr_t)addr;
    }
    return ret;
}

HMAF_API int hmaf_agent_heap_free(hmaf_agent_t *agent, void *ptr)
{
    int ret;

    if (agent == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    ret = agent->heap == NULL
              ? HMAF_ENOENT
              : hmaf__heap_free(agent->heap, (uint64_t)(uintptr_t)ptr);
    pthread_mutex_unlock(&agent->lock);
    return ret;
}

/* HMAF 0.1's hmaf_heap_stats_t, the smallest a caller may pass. */
HMAF__STATS_SIZE_MIN_DEFINE(HEAP_STATS_SIZE_MIN, hmaf_heap_stats_t,
                            failed_allocs);

HMAF_API int hmaf_agent_heap_stats(hmaf_agent_t *agent,
                                   hmaf_heap_stats_t *stats_out)
{
    hmaf_heap_stats_t st;
    size_t size;
    int ret = 0;

    if (agent == NULL ||
        hmaf__stats_size(stats_out, HEAP_STATS_SIZE_MIN, &size) < 0) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    if (agent->heap == NULL) {
        ret = HMAF_ENOENT;
    } else {
        hmaf__heap_stats(agent->heap, &st);
    }
    pthread_mutex_unlock(&agent->lock);
    if (ret == 0) {
        hmaf__stats_put(stats_out, size, &st, sizeof(st));
    }
    return ret;
}
