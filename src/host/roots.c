#include "host/roots.h"

#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

static long index_of(const struct hmaf__roots *roots, const char *name)
{
    for (size_t i = 0; i < roots->n; i++) {
        if (strcmp(roots->v[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static int check_name(const char *name)
{
    if (name == NULL || name[0] == '\0') {
        return HMAF_EINVAL;
    }
    return strlen(name) < sizeof(((struct hmaf__root *)0)->name)
               ? 0
               : HMAF_ENAMETOOLONG;
}

int hmaf__roots_publish(struct hmaf__roots *roots, const char *name,
                        uint64_t addr, uint64_t len)
{
    int ret = check_name(name);

    if (ret < 0) {
        return ret;
    }
    if (len == 0) {
        return HMAF_EINVAL;
    }
    if (len > UINT64_MAX - addr) { /* the end address must not wrap */
        return HMAF_EOVERFLOW;
    }
    if (index_of(roots, name) >= 0) {
        return HMAF_EEXIST;
    }
    if (roots->n == HMAF_ROOTS_MAX) {
        return HMAF_ENOSPC;
    }
    if (roots->n == roots->cap) {
        size_t cap = roots->cap == 0 ? 8 : roots->cap * 2;
        struct hmaf__root *v = realloc(roots->v, cap * sizeof(*v));
        if (v == NULL) {
            return HMAF_ENOMEM;
        }
        roots->v = v;
        roots->cap = cap;
    }
    memset(&roots->v[roots->n], 0, sizeof(roots->v[0]));
    strcpy(roots->v[roots->n].name, name);
    roots->v[roots->n].addr = addr;
    roots->v[roots->n].len = len;
    roots->n++;
    return 0;
}

int hmaf__roots_unpublish(struct hmaf__roots *roots, const char *name)
{
    int ret = check_name(name);
    long i;

    if (ret < 0) {
        return ret;
    }
    i = index_of(roots, name);
    if (i < 0) {
        return HMAF_ENOENT;
    }
    roots->v[i] = roots->v[--roots->n];
    return 0;
}

const struct hmaf__root *hmaf__roots_find(const struct hmaf__roots *roots,
                                          const char *name)
{
    long i = index_of(roots, name);

    return i < 0 ? NULL : &roots->v[i];
}

void hmaf__roots_fini(struct hmaf__roots *roots)
{
    free(roots->v);
    memset(roots, 0, sizeof(*roots));
}
