/*
 * The agent's allocator (host/heap.h says how it is laid out). Costs: a
 * small block is a bit search in its owner's first partly free slab (at
 * most 64 words); a large one a look at the non-empty exact lists (a bit
 * scan) or a walk of the few free spans above 1 MiB; a free is a page map
 * look-up, and for a span a merge with its two neighbours.
 */
#include "host/heap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#include "proto/heap.h"
#include "util/hashtab.h"

#define PAGE_SHIFT 12
#define SLAB_PAGES 16 /* 64 KiB */
#define SLAB_BYTES ((uint64_t)SLAB_PAGES << PAGE_SHIFT)
#define SLAB_WORDS (SLAB_BYTES / 16 / 64) /* bits for the smallest class */
#define EXACT_MAX 256 /* free lists by exact page count up to here */
#define MASK_WORDS ((EXACT_MAX + 64) / 64)

enum span_kind { SPAN_FREE, SPAN_LARGE, SPAN_SLAB };

struct heap_owner;

struct heap_span {
    uint64_t start;  /* first page */
    uint64_t npages;
    enum span_kind kind;
    unsigned cls;     /* slab */
    uint32_t nblocks; /* slab */
    uint32_t nfree;   /* slab */
    uint32_t hint;    /* slab: a word that may have a free bit */
    struct heap_owner *owner;        /* large, slab */
    struct heap_span *prev, *next;   /* free list, or owner's partial list */
    struct heap_span *oprev, *onext; /* owner's spans */
    uint64_t *freemap;               /* slab: bit set = free block */
};

struct heap_owner {
    struct hmaf__hashtab_node node; /* key: id, 0 */
    uint64_t id;
    uint64_t held;   /* bytes of live blocks in its spans */
    uint64_t cached; /* bytes it says it caches */
    struct heap_span *partial[HMAF_HEAP_CLASSES];
    struct heap_span *spans;
    struct heap_owner *prev, *next; /* every session's, for teardown */
};

struct hmaf__heap {
    uint64_t base, len, npages;
    uint64_t quota;
    struct heap_span **pagemap;
    struct heap_span *free_exact[EXACT_MAX + 1];
    uint64_t nonempty[MASK_WORDS];
    struct heap_span *free_big; /* above EXACT_MAX pages, first fit */
    struct heap_owner host;
    struct hmaf__hashtab owners; /* sessions', by id */
    struct heap_owner *owner_list;
    uint64_t cached_total;
    hmaf_heap_stats_t st;
};

static uint64_t span_addr(const struct hmaf__heap *h,
                          const struct heap_span *sp)
{
    return h->base + (sp->start << PAGE_SHIFT);
}

static uint64_t span_last(const struct heap_span *sp)
{
    return sp->start + sp->npages - 1;
}

/* --- lists ------------------------------------------------------------- */

static void list_push(struct heap_span **head, struct heap_span *sp)
{
    sp->prev = NULL;
    sp->next = *head;
    if (*head != NULL) {
        (*head)->prev = sp;
    }
    *head = sp;
}

static void list_remove(struct heap_span **head, struct heap_span *sp)
{
    if (sp->prev != NULL) {
        sp->prev->next = sp->next;
    } else {
        *head = sp->next;
    }
    if (sp->next != NULL) {
        sp->next->prev = sp->prev;
    }
    sp->prev = sp->next = NULL;
}

static void owner_link(struct heap_owner *o, struct heap_span *sp)
{
    sp->owner = o;
    sp->oprev = NULL;
    sp->onext = o->spans;
    if (o->spans != NULL) {
        o->spans->oprev = sp;
    }
    o->spans = sp;
}

static void owner_unlink(struct heap_span *sp)
{
    struct heap_owner *o = sp->owner;

    if (sp->oprev != NULL) {
        sp->oprev->onext = sp->onext;
    } else {
        o->spans = sp->onext;
    }
    if (sp->onext != NULL) {
        sp->onext->oprev = sp->oprev;
    }
    sp->owner = NULL;
    sp->oprev = sp->onext = NULL;
}

static struct heap_span **free_list_of(struct hmaf__heap *h, uint64_t npages)
{
    return npages <= EXACT_MAX ? &h->free_exact[npages] : &h->free_big;
}

static void free_push(struct hmaf__heap *h, struct heap_span *sp)
{
    list_push(free_list_of(h, sp->npages), sp);
    if (sp->npages <= EXACT_MAX) {
        h->nonempty[sp->npages / 64] |= 1ull << (sp->npages % 64);
    }
}

static void free_remove(struct hmaf__heap *h, struct heap_span *sp)
{
    list_remove(free_list_of(h, sp->npages), sp);
    if (sp->npages <= EXACT_MAX && h->free_exact[sp->npages] == NULL) {
        h->nonempty[sp->npages / 64] &= ~(1ull << (sp->npages % 64));
    }
}

/* The smallest exact list at or above n that has a span, or the first
 * big span large enough. */
static struct heap_span *free_find(struct hmaf__heap *h, uint64_t n)
{
    for (uint64_t w = n / 64; n <= EXACT_MAX && w < MASK_WORDS; w++) {
        uint64_t bits = h->nonempty[w];
        if (w == n / 64) {
            bits &= ~0ull << (n % 64);
        }
        if (bits != 0) {
            return h->free_exact[w * 64 + (uint64_t)__builtin_ctzll(bits)];
        }
    }
    for (struct heap_span *sp = h->free_big; sp != NULL; sp = sp->next) {
        if (sp->npages >= n) {
            return sp;
        }
    }
    return NULL;
}

/* --- pages ------------------------------------------------------------- */

static void map_ends(struct hmaf__heap *h, struct heap_span *sp)
{
    h->pagemap[sp->start] = sp;
    h->pagemap[span_last(sp)] = sp;
}

/* n pages off a free span (split when larger): the caller maps them. */
static struct heap_span *pages_take(struct hmaf__heap *h, uint64_t n)
{
    struct heap_span *sp = free_find(h, n);
    struct heap_span *rest = NULL;

    if (sp == NULL) {
        return NULL;
    }
    if (sp->npages > n) {
        rest = calloc(1, sizeof(*rest));
        if (rest == NULL) {
            return NULL;
        }
    }
    free_remove(h, sp);
    if (sp->npages > n) {
        rest->kind = SPAN_FREE;
        rest->start = sp->start + n;
        rest->npages = sp->npages - n;
        map_ends(h, rest);
        free_push(h, rest);
        sp->npages = n;
    }
    return sp;
}

/* Pages back, merged with free neighbours. The span's own page map
 * entries are cleared already. */
static void pages_give(struct hmaf__heap *h, struct heap_span *sp)
{
    uint64_t end = sp->start + sp->npages;
    struct heap_span *left = sp->start > 0 ? h->pagemap[sp->start - 1] : NULL;
    struct heap_span *right = end < h->npages ? h->pagemap[end] : NULL;

    if (left != NULL && left->kind == SPAN_FREE) {
        free_remove(h, left);
        h->pagemap[left->start] = NULL;
        h->pagemap[span_last(left)] = NULL;
        sp->start = left->start;
        sp->npages += left->npages;
        free(left);
    }
    if (right != NULL && right->kind == SPAN_FREE) {
        free_remove(h, right);
        h->pagemap[right->start] = NULL;
        h->pagemap[span_last(right)] = NULL;
        sp->npages += right->npages;
        free(right);
    }
    sp->kind = SPAN_FREE;
    sp->owner = NULL;
    map_ends(h, sp);
    free_push(h, sp);
}

/* --- owners ------------------------------------------------------------ */

static struct heap_owner *owner_find(const struct hmaf__heap *h, uint64_t id)
{
    struct hmaf__hashtab_node *n;

    if (id == HMAF_HEAP_HOST_OWNER) {
        return (struct heap_owner *)&h->host;
    }
    n = hmaf__hashtab_find(&h->owners, id, 0);
    return n == NULL ? NULL : (struct heap_owner *)n;
}

static struct heap_owner *owner_get(struct hmaf__heap *h, uint64_t id)
{
    struct heap_owner *o = owner_find(h, id);

    if (o != NULL) {
        return o;
    }
    o = calloc(1, sizeof(*o));
    if (o == NULL) {
        return NULL;
    }
    o->id = id;
    o->node.key[0] = id;
    if (hmaf__hashtab_insert(&h->owners, &o->node) < 0) {
        free(o);
        return NULL;
    }
    o->next = h->owner_list;
    if (o->next != NULL) {
        o->next->prev = o;
    }
    h->owner_list = o;
    return o;
}

static int quota_allows(const struct hmaf__heap *h,
                        const struct heap_owner *o, uint64_t bytes)
{
    return o->id == HMAF_HEAP_HOST_OWNER || h->quota == 0 ||
           (o->held <= h->quota && bytes <= h->quota - o->held);
}

/* --- blocks ------------------------------------------------------------ */

static void count_alloc(struct hmaf__heap *h, struct heap_owner *o,
                        uint64_t bytes)
{
    o->held += bytes;
    h->st.bytes_in_use += bytes;
    h->st.blocks_in_use++;
    h->st.allocs++;
}

static void count_free(struct hmaf__heap *h, struct heap_owner *o,
                       uint64_t bytes)
{
    o->held -= bytes;
    /* What it caches is part of what it holds: others may free blocks it
     * handed out since it last told us, or even blocks it still caches. */
    if (o->cached > o->held) {
        h->cached_total -= o->cached - o->held;
        o->cached = o->held;
    }
    h->st.bytes_in_use -= bytes;
    h->st.blocks_in_use--;
    h->st.frees++;
}

static int large_alloc(struct hmaf__heap *h, struct heap_owner *o,
                       uint64_t size, uint64_t *addr_out)
{
    uint64_t n = (size + HMAF_HEAP_PAGE - 1) >> PAGE_SHIFT;
    struct heap_span *sp;

    if (!quota_allows(h, o, n << PAGE_SHIFT)) {
        return HMAF_ENOSPC;
    }
    sp = pages_take(h, n);
    if (sp == NULL) {
        return HMAF_ENOMEM;
    }
    sp->kind = SPAN_LARGE;
    map_ends(h, sp);
    owner_link(o, sp);
    h->st.bytes_reserved += n << PAGE_SHIFT;
    count_alloc(h, o, n << PAGE_SHIFT);
    *addr_out = span_addr(h, sp);
    return 0;
}

static struct heap_span *slab_new(struct hmaf__heap *h, struct heap_owner *o,
                                  unsigned cls)
{
    uint64_t *freemap = calloc(SLAB_WORDS, sizeof(uint64_t));
    struct heap_span *sp = freemap == NULL ? NULL : pages_take(h, SLAB_PAGES);

    if (sp == NULL) {
        free(freemap);
        return NULL;
    }
    sp->kind = SPAN_SLAB;
    sp->cls = cls;
    sp->nblocks = (uint32_t)(SLAB_BYTES / hmaf__heap_class_size(cls));
    sp->nfree = sp->nblocks;
    sp->hint = 0;
    sp->freemap = freemap;
    for (uint32_t i = 0; i < sp->nblocks; i++) {
        freemap[i / 64] |= 1ull << (i % 64);
    }
    for (uint64_t p = 0; p < SLAB_PAGES; p++) {
        h->pagemap[sp->start + p] = sp;
    }
    owner_link(o, sp);
    list_push(&o->partial[cls], sp);
    h->st.bytes_reserved += SLAB_BYTES;
    return sp;
}

static void slab_release(struct hmaf__heap *h, struct heap_span *sp)
{
    list_remove(&sp->owner->partial[sp->cls], sp);
    owner_unlink(sp);
    free(sp->freemap);
    sp->freemap = NULL;
    for (uint64_t p = 0; p < SLAB_PAGES; p++) {
        h->pagemap[sp->start + p] = NULL;
    }
    h->st.bytes_reserved -= SLAB_BYTES;
    pages_give(h, sp);
}

/* One block off a slab that has a free one. */
static uint64_t slab_take(struct hmaf__heap *h, struct heap_span *sp)
{
    uint32_t w = sp->hint;
    uint32_t bit;

    while (sp->freemap[w] == 0) {
        w = (w + 1) % SLAB_WORDS;
    }
    sp->hint = w;
    bit = (uint32_t)__builtin_ctzll(sp->freemap[w]);
    sp->freemap[w] &= ~(1ull << bit);
    if (--sp->nfree == 0) {
        list_remove(&sp->owner->partial[sp->cls], sp);
    }
    return span_addr(h, sp) + (w * 64u + bit) * hmaf__heap_class_size(sp->cls);
}

static int small_alloc(struct hmaf__heap *h, struct heap_owner *o,
                       unsigned cls, uint64_t *addr_out)
{
    uint64_t bytes = hmaf__heap_class_size(cls);
    struct heap_span *sp = o->partial[cls];

    if (!quota_allows(h, o, bytes)) {
        return HMAF_ENOSPC;
    }
    if (sp == NULL) {
        sp = slab_new(h, o, cls);
        if (sp == NULL) {
            return HMAF_ENOMEM;
        }
    }
    *addr_out = slab_take(h, sp);
    count_alloc(h, o, bytes);
    return 0;
}

int hmaf__heap_alloc(struct hmaf__heap *h, uint64_t owner, uint64_t size,
                     uint32_t count, uint64_t *addr_out, uint32_t *got_out,
                     uint64_t *block_size_out)
{
    int small = size <= HMAF_HEAP_SMALL_MAX;
    struct heap_owner *o;
    uint32_t got = 0;
    int ret = 0;

    if (size == 0 || size > h->len || count == 0 || (!small && count > 1)) {
        return HMAF_EINVAL;
    }
    o = owner_get(h, owner);
    if (o == NULL) {
        return HMAF_ENOMEM;
    }
    while (got < count && ret == 0) {
        ret = small ? small_alloc(h, o, hmaf__heap_class_of(size),
                                  &addr_out[got])
                    : large_alloc(h, o, size, &addr_out[got]);
        got += ret == 0;
    }
    if (got == 0) {
        h->st.failed_allocs++;
        return ret;
    }
    *got_out = got;
    *block_size_out = small ? hmaf__heap_class_size(hmaf__heap_class_of(size))
                            : (size + HMAF_HEAP_PAGE - 1) &
                                  ~(uint64_t)(HMAF_HEAP_PAGE - 1);
    return 0;
}

/* The live block that starts at addr, as its span and block index. */
static struct heap_span *block_at(const struct hmaf__heap *h, uint64_t addr,
                                  uint32_t *index_out)
{
    struct heap_span *sp;
    uint64_t off, size;

    if (addr < h->base || addr - h->base >= h->len ||
        addr % HMAF_HEAP_ALIGN != 0) {
        return NULL;
    }
    sp = h->pagemap[(addr - h->base) >> PAGE_SHIFT];
    if (sp == NULL || sp->kind == SPAN_FREE) {
        return NULL;
    }
    off = addr - span_addr(h, sp);
    if (sp->kind == SPAN_LARGE) {
        *index_out = 0;
        return off == 0 ? sp : NULL;
    }
    size = hmaf__heap_class_size(sp->cls);
    if (off % size != 0 || off / size >= sp->nblocks) {
        return NULL;
    }
    *index_out = (uint32_t)(off / size);
    /* Already free: a double free. */
    return sp->freemap[off / size / 64] >> (off / size % 64) & 1 ? NULL : sp;
}

static void slab_put(struct hmaf__heap *h, struct heap_span *sp,
                     uint32_t index)
{
    sp->freemap[index / 64] |= 1ull << (index % 64);
    count_free(h, sp->owner, hmaf__heap_class_size(sp->cls));
    if (++sp->nfree == 1) {
        list_push(&sp->owner->partial[sp->cls], sp);
    }
    if (sp->nfree == sp->nblocks) {
        slab_release(h, sp);
    }
}

int hmaf__heap_free(struct hmaf__heap *h, uint64_t addr)
{
    uint32_t index;
    struct heap_span *sp = block_at(h, addr, &index);

    if (sp == NULL) {
        h->st.bad_frees++;
        return HMAF_EINVAL;
    }
    if (sp->kind == SPAN_SLAB) {
        slab_put(h, sp, index);
        return 0;
    }
    count_free(h, sp->owner, sp->npages << PAGE_SHIFT);
    owner_unlink(sp);
    h->st.bytes_reserved -= sp->npages << PAGE_SHIFT;
    h->pagemap[sp->start] = NULL;
    h->pagemap[span_last(sp)] = NULL;
    pages_give(h, sp);
    return 0;
}

/* --- owners' lives ----------------------------------------------------- */

void hmaf__heap_note_cached(struct hmaf__heap *h, uint64_t owner,
                            uint64_t bytes)
{
    struct heap_owner *o = owner_find(h, owner);

    if (o == NULL || owner == HMAF_HEAP_HOST_OWNER) {
        return;
    }
    if (bytes > o->held) {
        bytes = o->held; /* it cannot cache more than it holds */
    }
    h->cached_total = h->cached_total - o->cached + bytes;
    o->cached = bytes;
}

/* Append the partial list `from` to `to`. */
static void partial_move(struct heap_span **to, struct heap_span **from)
{
    while (*from != NULL) {
        struct heap_span *sp = *from;
        list_remove(from, sp);
        list_push(to, sp);
    }
}

void hmaf__heap_owner_gone(struct hmaf__heap *h, uint64_t owner)
{
    struct heap_owner *o;

    if (h == NULL || owner == HMAF_HEAP_HOST_OWNER ||
        (o = owner_find(h, owner)) == NULL) {
        return;
    }
    h->st.bytes_lost += o->cached;
    h->cached_total -= o->cached;
    for (unsigned c = 0; c < HMAF_HEAP_CLASSES; c++) {
        partial_move(&h->host.partial[c], &o->partial[c]);
    }
    while (o->spans != NULL) {
        struct heap_span *sp = o->spans;
        owner_unlink(sp);
        owner_link(&h->host, sp);
    }
    h->host.held += o->held;
    hmaf__hashtab_remove(&h->owners, &o->node);
    if (o->prev != NULL) {
        o->prev->next = o->next;
    } else {
        h->owner_list = o->next;
    }
    if (o->next != NULL) {
        o->next->prev = o->prev;
    }
    free(o);
}

uint64_t hmaf__heap_held(const struct hmaf__heap *h, uint64_t owner)
{
    const struct heap_owner *o = owner_find(h, owner);

    return o == NULL ? 0 : o->held;
}

void hmaf__heap_stats(const struct hmaf__heap *h, hmaf_heap_stats_t *out)
{
    *out = h->st;
    out->bytes_total = h->len;
    out->bytes_cached_by_sessions = h->cached_total;
}

int hmaf__heap_is_range(const struct hmaf__heap *h, uint64_t base,
                        uint64_t len)
{
    return h != NULL && h->base == base && h->len == len;
}

/* --- life -------------------------------------------------------------- */

int hmaf__heap_create(uint64_t base, uint64_t len, uint64_t quota,
                      struct hmaf__heap **heap_out)
{
    struct hmaf__heap *h = calloc(1, sizeof(*h));
    struct heap_span *all = calloc(1, sizeof(*all));

    if (h != NULL) {
        /* calloc: the kernel hands out zero pages as they are touched */
        h->pagemap = calloc(len >> PAGE_SHIFT, sizeof(*h->pagemap));
    }
    if (h == NULL || all == NULL || h->pagemap == NULL) {
        free(all);
        if (h != NULL) {
            free(h->pagemap);
        }
        free(h);
        return HMAF_ENOMEM;
    }
    h->base = base;
    h->len = len;
    h->npages = len >> PAGE_SHIFT;
    h->quota = quota;
    h->host.id = HMAF_HEAP_HOST_OWNER;
    all->kind = SPAN_FREE;
    all->npages = h->npages;
    map_ends(h, all);
    free_push(h, all);
    *heap_out = h;
    return 0;
}

static void span_free(struct heap_span *sp)
{
    free(sp->freemap);
    free(sp);
}

void hmaf__heap_destroy(struct hmaf__heap *h)
{
    if (h == NULL) {
        return;
    }
    /* Every span is entered at its first page. */
    for (uint64_t p = 0; p < h->npages;) {
        struct heap_span *sp = h->pagemap[p];
        p = sp->start + sp->npages;
        span_free(sp);
    }
    while (h->owner_list != NULL) {
        struct heap_owner *o = h->owner_list;
        h->owner_list = o->next;
        free(o);
    }
    hmaf__hashtab_fini(&h->owners);
    free(h->pagemap);
    free(h);
}

/* --- checking (tests) -------------------------------------------------- */

#define CHECK_THAT(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "heap check: " __VA_ARGS__);                       \
            fprintf(stderr, "\n");                                             \
            return -1;                                                         \
        }                                                                      \
    } while (0)

static int check_span(const struct hmaf__heap *h, const struct heap_span *sp,
                      uint64_t *in_use, uint64_t *blocks, uint64_t *reserved)
{
    uint32_t nfree = 0;

    for (uint64_t p = sp->start; p <= span_last(sp); p++) {
        int end = p == sp->start || p == span_last(sp);
        CHECK_THAT(h->pagemap[p] == (end || sp->kind == SPAN_SLAB
                                         ? sp
                                         : NULL),
                   "page %llu mapped wrong", (unsigned long long)p);
    }
    if (sp->kind == SPAN_FREE) {
        CHECK_THAT(sp->start + sp->npages == h->npages ||
                       h->pagemap[sp->start + sp->npages]->kind != SPAN_FREE,
                   "free spans not merged at page %llu",
                   (unsigned long long)sp->start);
        return 0;
    }
    *reserved += sp->npages << PAGE_SHIFT;
    if (sp->kind == SPAN_LARGE) {
        *in_use += sp->npages << PAGE_SHIFT;
        *blocks += 1;
        return 0;
    }
    for (uint32_t i = 0; i < sp->nblocks; i++) {
        nfree += sp->freemap[i / 64] >> (i % 64) & 1;
    }
    CHECK_THAT(nfree == sp->nfree && nfree < sp->nblocks,
               "slab at page %llu counts %u free of %u, has %u",
               (unsigned long long)sp->start, sp->nfree, sp->nblocks, nfree);
    *in_use += (sp->nblocks - nfree) * hmaf__heap_class_size(sp->cls);
    *blocks += sp->nblocks - nfree;
    return 0;
}

int hmaf__heap_check(const struct hmaf__heap *h)
{
    uint64_t in_use = 0, blocks = 0, reserved = 0;

    for (uint64_t p = 0; p < h->npages;) {
        const struct heap_span *sp = h->pagemap[p];
        CHECK_THAT(sp != NULL && sp->start == p, "no span at page %llu",
                   (unsigned long long)p);
        if (check_span(h, sp, &in_use, &blocks, &reserved) < 0) {
            return -1;
        }
        p = sp->start + sp->npages;
    }
    CHECK_THAT(in_use == h->st.bytes_in_use, "bytes in use %llu, counted %llu",
               (unsigned long long)in_use,
               (unsigned long long)h->st.bytes_in_use);
    CHECK_THAT(blocks == h->st.blocks_in_use, "blocks in use differ");
    CHECK_THAT(reserved == h->st.bytes_reserved, "reserved bytes differ");
    return 0;
}
