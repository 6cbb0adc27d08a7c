#include "host/exposure.h"

#include <stdlib.h>

#include <hmaf/error.h>
#include <hmaf/host.h>

#define EXPOSURE(set, i) ((struct hmaf__exposure *)(set).v[i])

int hmaf__exposure_add(struct hmaf__exposures *ex, uint64_t base, uint64_t len,
                       unsigned access, struct hmaf__exposure **out)
{
    struct hmaf__exposure *e;
    int ret;

    if (len == 0 ||
        (access != HMAF_ACCESS_READ && access != HMAF_ACCESS_READ_WRITE)) {
        return HMAF_EINVAL;
    }
    if (len > UINT64_MAX - base) { /* the end address must not wrap */
        return HMAF_EOVERFLOW;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return HMAF_ENOMEM;
    }
    e->iv.base = base;
    e->iv.len = len;
    e->access = access;
    e->id = ++ex->next_id;
    ret = hmaf__iset_insert(&ex->set, &e->iv);
    if (ret < 0) {
        free(e);
        return ret == -EEXIST ? HMAF_EEXIST : HMAF_ENOMEM;
    }
    if (out != NULL) {
        *out = e;
    }
    return 0;
}

struct hmaf__exposure *hmaf__exposure_find(const struct hmaf__exposures *ex,
                                           uint64_t addr)
{
    long i = hmaf__iset_find(&ex->set, addr);

    return i < 0 ? NULL : EXPOSURE(ex->set, i);
}

struct hmaf__exposure *hmaf__exposure_find_id(const struct hmaf__exposures *ex,
                                              uint64_t id)
{
    for (size_t i = 0; i < ex->set.n; i++) {
        if (EXPOSURE(ex->set, i)->id == id) {
            return EXPOSURE(ex->set, i);
        }
    }
    return NULL;
}

struct hmaf__exposure *hmaf__exposure_take(struct hmaf__exposures *ex,
                                           uint64_t base, uint64_t len)
{
    long i = hmaf__iset_find(&ex->set, base);

    if (i < 0 || EXPOSURE(ex->set, i)->iv.base != base ||
        EXPOSURE(ex->set, i)->iv.len != len) {
        return NULL;
    }
    return (struct hmaf__exposure *)hmaf__iset_remove_at(&ex->set, (size_t)i);
}

struct hmaf__exposure *hmaf__exposure_take_any(struct hmaf__exposures *ex)
{
    if (ex->set.n == 0) {
        return NULL;
    }
    return (struct hmaf__exposure *)hmaf__iset_remove_at(&ex->set,
                                                         ex->set.n - 1);
}

void hmaf__exposures_fini(struct hmaf__exposures *ex)
{
    hmaf__iset_fini(&ex->set);
}
