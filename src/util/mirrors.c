#include "util/mirrors.h"

#include <pthread.h>
#include <stdlib.h>

#include <hmaf/error.h>

struct mirror {
    uintptr_t base;
    size_t len;
};

_Atomic uintptr_t hmaf__mirrors_lo = UINTPTR_MAX;
_Atomic uintptr_t hmaf__mirrors_hi = 0;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct mirror *mirrors;
static size_t n, cap;

/* The span of what is left; an empty set spans nothing. */
static void update_span(void)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0;

    for (size_t i = 0; i < n; i++) {
        lo = mirrors[i].base < lo ? mirrors[i].base : lo;
        hi = mirrors[i].base + mirrors[i].len > hi
                 ? mirrors[i].base + mirrors[i].len
                 : hi;
    }
    atomic_store(&hmaf__mirrors_lo, lo);
    atomic_store(&hmaf__mirrors_hi, hi);
}

int hmaf__mirrors_add(const void *base, size_t len)
{
    int ret = 0;

    pthread_mutex_lock(&lock);
    if (n == cap) {
        size_t grown = cap == 0 ? 8 : cap * 2;
        struct mirror *v = realloc(mirrors, grown * sizeof(*v));
        if (v == NULL) {
            ret = HMAF_ENOMEM;
        } else {
            mirrors = v;
            cap = grown;
        }
    }
    if (ret == 0) {
        mirrors[n++] = (struct mirror){(uintptr_t)base, len};
        update_span();
    }
    pthread_mutex_unlock(&lock);
    return ret;
}

void hmaf__mirrors_remove(const void *base)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n; i++) {
        if (mirrors[i].base == (uintptr_t)base) {
            mirrors[i] = mirrors[--n];
            break;
        }
    }
    update_span();
    if (n == 0) {
        free(mirrors); /* nothing kept while mapping mode is unused */
        mirrors = NULL;
        cap = 0;
    }
    pthread_mutex_unlock(&lock);
}

int hmaf__mirrors_overlap_slow(const void *p, size_t len)
{
    uintptr_t at = (uintptr_t)p;
    int found = 0;

    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n && !found; i++) {
        found =
            at < mirrors[i].base + mirrors[i].len && mirrors[i].base < at + len;
    }
    pthread_mutex_unlock(&lock);
    return found;
}
