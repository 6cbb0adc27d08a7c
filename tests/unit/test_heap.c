/* The agent's allocator alone (host/heap.c): size classes, random
 * allocations and frees against a shadow map of the range, coalescing of
 * spans, bad frees, quotas, batches, owners that go away. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "host/heap.c"

#define HEAP_BASE 0x10000000ull
#define HEAP_LEN (16ull << 20)
#define GRANULES (HEAP_LEN / 16)

static uint8_t shadow[GRANULES]; /* 1: granule inside a live block */

struct live {
    uint64_t addr, size;
};

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_classes(void)
{
    for (unsigned c = 0; c < HMAF_HEAP_CLASSES; c++) {
        CHECK_EQ(hmaf__heap_class_of(hmaf__heap_class_size(c)), c);
        CHECK_EQ(hmaf__heap_class_size(c) % 16, 0);
    }
    CHECK_EQ(hmaf__heap_class_size(HMAF_HEAP_CLASSES - 1),
             HMAF_HEAP_SMALL_MAX);
    for (uint64_t size = 1; size <= HMAF_HEAP_SMALL_MAX; size++) {
        unsigned c = hmaf__heap_class_of(size);
        CHECK(hmaf__heap_class_size(c) >= size);
        CHECK(c == 0 || hmaf__heap_class_size(c - 1) < size);
    }
}

static void mark(uint64_t addr, uint64_t size, uint8_t to)
{
    for (uint64_t g = (addr - HEAP_BASE) / 16; g < (addr - HEAP_BASE + size) / 16;
         g++) {
        CHECK_EQ(shadow[g], !to); /* no overlap, no stray free */
        shadow[g] = to;
    }
}

static uint64_t random_size(void)
{
    switch (next_rand() % 8) {
    case 0:
        return 1 + next_rand() % (1u << 20); /* large, mostly */
    case 1:
    case 2:
        return 1 + next_rand() % HMAF_HEAP_SMALL_MAX;
    default:
        return 1 + next_rand() % 512;
    }
}

/* Bad frees never change anything. */
static void try_bad_frees(struct hmaf__heap *h, const struct live *l)
{
    hmaf_heap_stats_t before, after;

    hmaf__heap_stats(h, &before);
    CHECK_EQ(hmaf__heap_free(h, HEAP_BASE - 16), HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_free(h, HEAP_BASE + HEAP_LEN), HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_free(h, 0), HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_free(h, l->addr + 8), HMAF_EINVAL);
    if (l->size > 16) {
        CHECK_EQ(hmaf__heap_free(h, l->addr + 16), HMAF_EINVAL);
    }
    hmaf__heap_stats(h, &after);
    CHECK_EQ(after.bytes_in_use, before.bytes_in_use);
    CHECK_EQ(after.blocks_in_use, before.blocks_in_use);
}

static void test_random(void)
{
    static struct live live[20000];
    size_t n = 0;
    struct hmaf__heap *h;
    hmaf_heap_stats_t st;

    CHECK_EQ(hmaf__heap_create(HEAP_BASE, HEAP_LEN, 0, &h), 0);
    for (int step = 0; step < 200000; step++) {
        if (n < 20000 && (n == 0 || next_rand() % 100 < 55)) {
            uint64_t size = random_size(), addr, bs;
            uint32_t got;
            int ret = hmaf__heap_alloc(h, next_rand() % 3, size, 1, &addr,
                                       &got, &bs);
            if (ret == HMAF_ENOMEM) {
                continue;
            }
            CHECK_EQ(ret, 0);
            CHECK_EQ(got, 1);
            CHECK(bs >= size && addr % 16 == 0);
            CHECK(addr >= HEAP_BASE && addr + bs <= HEAP_BASE + HEAP_LEN);
            mark(addr, bs, 1);
            live[n++] = (struct live){addr, bs};
        } else {
            size_t i = next_rand() % n;
            if (step % 97 == 0) {
                try_bad_frees(h, &live[i]);
            }
            CHECK_EQ(hmaf__heap_free(h, live[i].addr), 0);
            mark(live[i].addr, live[i].size, 0);
            /* freed already: a double free */
            CHECK_EQ(hmaf__heap_free(h, live[i].addr), HMAF_EINVAL);
            live[i] = live[--n];
        }
        if (step % 5000 == 0) {
            CHECK_EQ(hmaf__heap_check(h), 0);
        }
    }
    while (n > 0) {
        CHECK_EQ(hmaf__heap_free(h, live[--n].addr), 0);
    }
    CHECK_EQ(hmaf__heap_check(h), 0);
    hmaf__heap_stats(h, &st);
    CHECK_EQ(st.bytes_in_use, 0);
    CHECK_EQ(st.blocks_in_use, 0);
    CHECK_EQ(st.bytes_reserved, 0);
    hmaf__heap_destroy(h);
}

/* Spans split and merge back: after any order of frees, one block can
 * take the whole heap again. */
static void test_coalescing(void)
{
    static uint64_t addr[4096];
    struct hmaf__heap *h;
    uint64_t bs, one;
    uint32_t got;
    size_t n = 0;

    CHECK_EQ(hmaf__heap_create(HEAP_BASE, HEAP_LEN, 0, &h), 0);
    while (hmaf__heap_alloc(h, 0, 40000 + next_rand() % 70000, 1, &addr[n],
                            &got, &bs) == 0) {
        n++;
    }
    CHECK(n > 100);
    /* Every other block free: fragmented, no room for 256 KiB. */
    for (size_t i = 0; i < n; i += 2) {
        CHECK_EQ(hmaf__heap_free(h, addr[i]), 0);
    }
    CHECK_EQ(hmaf__heap_alloc(h, 0, 256 << 10, 1, &one, &got, &bs),
             HMAF_ENOMEM);
    CHECK_EQ(hmaf__heap_check(h), 0);
    for (size_t i = 1; i < n; i += 2) {
        CHECK_EQ(hmaf__heap_free(h, addr[i]), 0);
    }
    CHECK_EQ(hmaf__heap_alloc(h, 0, HEAP_LEN, 1, &one, &got, &bs), 0);
    CHECK_EQ(one, HEAP_BASE);
    CHECK_EQ(hmaf__heap_alloc(h, 0, 16, 1, &one, &got, &bs), HMAF_ENOMEM);
    CHECK_EQ(hmaf__heap_free(h, HEAP_BASE), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 0, HEAP_LEN + 1, 1, &one, &got, &bs),
             HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_alloc(h, 0, 0, 1, &one, &got, &bs), HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_alloc(h, 0, 1 << 20, 2, addr, &got, &bs),
             HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_check(h), 0);
    hmaf__heap_destroy(h);
}

/* Batches, quota, an owner that goes away with blocks and a cache. */
static void test_owners(void)
{
    uint64_t addr[HMAF_ALLOC_BATCH_MAX], more[HMAF_ALLOC_BATCH_MAX], bs;
    struct hmaf__heap *h;
    hmaf_heap_stats_t st;
    uint32_t got, total = 0;
    int ret;

    CHECK_EQ(hmaf__heap_create(HEAP_BASE, HEAP_LEN, 1 << 20, &h), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 7, 100, 128, addr, &got, &bs), 0);
    CHECK_EQ(got, 128);
    CHECK_EQ(bs, 112);
    CHECK_EQ(hmaf__heap_held(h, 7), 128 * 112);
    hmaf__heap_note_cached(h, 7, 10 * 112);
    /* Quota: 1 MiB, in 8 KiB blocks. */
    while ((ret = hmaf__heap_alloc(h, 7, 8192, 128, more, &got, &bs)) == 0) {
        total += got;
    }
    CHECK_EQ(ret, HMAF_ENOSPC);
    CHECK(hmaf__heap_held(h, 7) <= 1 << 20);
    CHECK(hmaf__heap_held(h, 7) + 8192 > 1 << 20);
    /* The host has no quota; another session its own. */
    CHECK_EQ(hmaf__heap_alloc(h, 0, 2 << 20, 1, more, &got, &bs), 0);
    CHECK_EQ(hmaf__heap_free(h, more[0]), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 8, 64, 1, more, &got, &bs), 0);
    /* Anyone frees anyone's: room for one more of 7's. */
    CHECK_EQ(hmaf__heap_free(h, addr[0]), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 7, 100, 1, &addr[0], &got, &bs), 0);
    hmaf__heap_stats(h, &st);
    CHECK_EQ(st.bytes_cached_by_sessions, 10 * 112);
    hmaf__heap_owner_gone(h, 7);
    hmaf__heap_stats(h, &st);
    CHECK_EQ(st.bytes_lost, 10 * 112);
    CHECK_EQ(st.bytes_cached_by_sessions, 0);
    CHECK_EQ(hmaf__heap_held(h, 7), 0);
    /* Its blocks live on, now the host's: freed as usual. */
    for (int i = 0; i < 128; i++) {
        CHECK_EQ(hmaf__heap_free(h, addr[i]), 0);
    }
    CHECK_EQ(hmaf__heap_check(h), 0);
    /* A new owner 7 starts from nothing. */
    CHECK_EQ(hmaf__heap_alloc(h, 7, 16, 1, addr, &got, &bs), 0);
    CHECK_EQ(hmaf__heap_held(h, 7), 16);
    hmaf__heap_destroy(h); /* with live blocks and owners */
    (void)total;
}

/* A batch that does not fit is granted in part. */
static void test_partial_batch(void)
{
    uint64_t addr[HMAF_ALLOC_BATCH_MAX], big, bs;
    struct hmaf__heap *h;
    uint32_t got;

    CHECK_EQ(hmaf__heap_create(HEAP_BASE, 256 << 10, 0, &h), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 0, 192 << 10, 1, &big, &got, &bs), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 3, 32768, 128, addr, &got, &bs), 0);
    CHECK_EQ(got, 2); /* one slab of two */
    CHECK_EQ(hmaf__heap_alloc(h, 3, 32768, 128, addr, &got, &bs),
             HMAF_ENOMEM);
    CHECK_EQ(hmaf__heap_check(h), 0);
    hmaf__heap_destroy(h);
}

/* Others free blocks a session still caches (a misuse the host cannot
 * see, or simply blocks it handed out since its last request): what it
 * caches is part of what it holds, so the host's count of its cache
 * shrinks with them, and none is counted lost when it goes. */
static void test_cached_freed_by_others(void)
{
    uint64_t addr[4], bs;
    struct hmaf__heap *h;
    hmaf_heap_stats_t st;
    uint32_t got;

    CHECK_EQ(hmaf__heap_create(HEAP_BASE, 1 << 20, 0, &h), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 5, 64, 4, addr, &got, &bs), 0);
    CHECK_EQ(got, 4);
    hmaf__heap_note_cached(h, 5, 4 * 64);
    CHECK_EQ(hmaf__heap_free(h, addr[0]), 0);
    hmaf__heap_stats(h, &st);
    CHECK(st.bytes_cached_by_sessions <= st.bytes_in_use);
    for (int i = 1; i < 4; i++) {
        CHECK_EQ(hmaf__heap_free(h, addr[i]), 0);
    }
    hmaf__heap_stats(h, &st);
    CHECK_EQ(st.bytes_in_use, 0);
    CHECK_EQ(st.bytes_cached_by_sessions, 0);
    hmaf__heap_owner_gone(h, 5);
    hmaf__heap_stats(h, &st);
    CHECK_EQ(st.bytes_lost, 0);
    CHECK_EQ(hmaf__heap_check(h), 0);
    hmaf__heap_destroy(h);
}

/* The smallest heap, one slab: a slab of one class fills it, gives way
 * to another class once empty, and the whole range goes as one large
 * block; sizes past it (SIZE_MAX, 2^63) are refused, nothing overflows. */
static void test_minimum_and_huge(void)
{
    uint64_t a, b, bs;
    struct hmaf__heap *h;
    uint32_t got;

    CHECK_EQ(hmaf__heap_create(HEAP_BASE, HMAF_HEAP_MIN_LEN, 0, &h), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 1, 16, 1, &a, &got, &bs), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 2, 48, 1, &b, &got, &bs), HMAF_ENOMEM);
    CHECK_EQ(hmaf__heap_alloc(h, 0, 4096, 1, &b, &got, &bs), HMAF_ENOMEM);
    CHECK_EQ(hmaf__heap_free(h, a), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 2, 48, 1, &b, &got, &bs), 0);
    CHECK_EQ(hmaf__heap_free(h, b), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 0, HMAF_HEAP_MIN_LEN, 1, &a, &got, &bs), 0);
    CHECK_EQ(a, HEAP_BASE);
    CHECK_EQ(bs, HMAF_HEAP_MIN_LEN);
    CHECK_EQ(hmaf__heap_free(h, a), 0);
    CHECK_EQ(hmaf__heap_alloc(h, 0, HMAF_HEAP_MIN_LEN + 1, 1, &a, &got, &bs),
             HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_alloc(h, 0, SIZE_MAX, 1, &a, &got, &bs), HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_alloc(h, 3, 1ull << 63, 1, &a, &got, &bs),
             HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_alloc(h, 3, UINT64_MAX - 4095, 1, &a, &got, &bs),
             HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_alloc(h, 3, 0, 1, &a, &got, &bs), HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_free(h, UINT64_MAX & ~15ull), HMAF_EINVAL);
    CHECK_EQ(hmaf__heap_check(h), 0);
    hmaf__heap_destroy(h);
}

int main(void)
{
    test_classes();
    test_random();
    test_coalescing();
    test_owners();
    test_partial_batch();
    test_cached_freed_by_others();
    test_minimum_and_huge();
    printf("ok\n");
    return 0;
}
