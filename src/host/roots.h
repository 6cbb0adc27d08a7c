/* Named roots the host publishes: how a dpu side finds its way in. */
#ifndef HMAF_HOST_ROOTS_H
#define HMAF_HOST_ROOTS_H

#include <stddef.h>
#include <stdint.h>

#define HMAF_ROOTS_MAX 4096

struct hmaf__root {
    char name[64];
    uint64_t addr;
    uint64_t len;
};

struct hmaf__roots {
    struct hmaf__root *v;
    size_t n;
    size_t cap;
};

/* 0; HMAF_EINVAL, HMAF_ENAMETOOLONG, HMAF_EEXIST, HMAF_ENOSPC, HMAF_ENOMEM */
int hmaf__roots_publish(struct hmaf__roots *roots, const char *name,
                        uint64_t addr, uint64_t len);
int hmaf__roots_unpublish(struct hmaf__roots *roots, const char *name);
const struct hmaf__root *hmaf__roots_find(const struct hmaf__roots *roots,
                                          const char *name);
void hmaf__roots_fini(struct hmaf__roots *roots);

#endif
