/* hmaf_engine_list (engine.h): the registry's engines, each probed now. */
#include <hmaf/engine.h>
#include <hmaf/error.h>

#include <stdio.h>
#include <string.h>

#include "engine/engine.h"

_Static_assert(HMAF_ENGINE_WHY_MAX == HMAF_ENGINE_REASON_MAX,
               "a probe's reason fits hmaf_engine_info_t's");

static size_t count_engines(void)
{
    size_t n = 0;

    while (hmaf__engine_at(n) != NULL) {
        n++;
    }
    return n;
}

static void describe(const struct hmaf_engine_ops *ops,
                     hmaf_engine_info_t *info)
{
    memset(info, 0, sizeof(*info));
    info->size = sizeof(*info);
    snprintf(info->name, sizeof(info->name), "%s", ops->name);
    info->error = hmaf__engine_probe(ops, info->reason, sizeof(info->reason));
    info->usable = info->error == 0;
    if (info->usable) {
        info->reason[0] = '\0';
    }
}

HMAF_API int hmaf_engine_list(hmaf_engine_info_t *entries, size_t count,
                              size_t *count_out)
{
    size_t n = count_engines();

    if (count_out == NULL || (entries == NULL && count > 0) ||
        (count > 0 && entries[0].size != sizeof(hmaf_engine_info_t))) {
        return HMAF_EINVAL;
    }
    *count_out = n;
    if (count < n) {
        return HMAF_ENOSPC;
    }
    for (size_t i = 0; i < n; i++) {
        describe(hmaf__engine_at(i), &entries[i]);
    }
    return 0;
}
