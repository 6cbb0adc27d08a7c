#include "host/exposure.h"

#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>
#include <hmaf/host.h>

#include "util/compiler.h"

static struct hmaf__exposure *of_node(struct hmaf__itree_node *n)
{
    return n == NULL ? NULL : hmaf__container_of(n, struct hmaf__exposure, iv);
}

int hmaf__exposure_add(struct hmaf__exposures *ex, uint64_t base, uint64_t len,
                       unsigned access, struct hmaf__exposure **out)
{
    struct hmaf__exposure *e;

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
    e->id = ex->next_id + 1;
    e->id_node.key[0] = e->id;
    if (hmaf__itree_insert(&ex->by_addr, &e->iv) < 0) {
        free(e);
        return HMAF_EEXIST;
    }
    if (hmaf__hashtab_insert(&ex->by_id, &e->id_node) < 0) {
        hmaf__itree_remove(&ex->by_addr, &e->iv);
        free(e);
        return HMAF_ENOMEM;
    }
    ex->next_id = e->id;
    if (out != NULL) {
        *out = e;
    }
    return 0;
}

struct hmaf__exposure *hmaf__exposure_find(const struct hmaf__exposures *ex,
                                           uint64_t addr)
{
    return of_node(hmaf__itree_find(&ex->by_addr, addr));
}

struct hmaf__exposure *hmaf__exposure_find_id(const struct hmaf__exposures *ex,
                                              uint64_t id)
{
    struct hmaf__hashtab_node *n = hmaf__hashtab_find(&ex->by_id, id, 0);

    return n == NULL ? NULL
                     : hmaf__container_of(n, struct hmaf__exposure, id_node);
}

static struct hmaf__exposure *unlink_exposure(struct hmaf__exposures *ex,
                                              struct hmaf__exposure *e)
{
    hmaf__itree_remove(&ex->by_addr, &e->iv);
    hmaf__hashtab_remove(&ex->by_id, &e->id_node);
    return e;
}

struct hmaf__exposure *hmaf__exposure_take(struct hmaf__exposures *ex,
                                           uint64_t base, uint64_t len)
{
    struct hmaf__exposure *e = hmaf__exposure_find(ex, base);

    if (e == NULL || e->iv.base != base || e->iv.len != len) {
        return NULL;
    }
    return unlink_exposure(ex, e);
}

struct hmaf__exposure *hmaf__exposure_take_any(struct hmaf__exposures *ex)
{
    struct hmaf__exposure *e = of_node(hmaf__itree_any(&ex->by_addr));

    return e == NULL ? NULL : unlink_exposure(ex, e);
}

void hmaf__exposures_fini(struct hmaf__exposures *ex)
{
    hmaf__hashtab_fini(&ex->by_id);
    memset(ex, 0, sizeof(*ex));
}
