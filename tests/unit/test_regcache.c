/*
 * The dpu side's region cache (core/regcache.c): interval lookup, overlap
 * refusal, LRU eviction by count and by bytes in batches, the release
 * callback and epoch staleness; 100,000 regions against a simple model;
 * readers looking up while a writer inserts, evicts and clears (they
 * never see a released region: run it under ASan too); and, printed but
 * not judged, what an insert and a lookup cost at 10 to 100,000 regions.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/regcache.h"
#include "util/compiler.h"

#define MAX_RELEASED 2048
#define NUM_RANDOM   1000

/* Under a sanitizer the long model and reader runs do a fifth of their
 * operations: the same code, at a tenth of the speed or less. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define SCALED(n) ((n) / 5)
#else
#define SCALED(n) (n)
#endif

/* What the release callback saw, in order. */
struct released {
    int n;
    uint64_t id[MAX_RELEASED];
    int evicted[MAX_RELEASED];
};

static void record_release(void *arg, struct hmaf__region *list, int evicted)
{
    struct released *log = arg;

    CHECK(list != NULL);
    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        CHECK(log->n < MAX_RELEASED);
        log->id[log->n] = list->id;
        log->evicted[log->n] = evicted;
        log->n++;
        free(list);
        list = next;
    }
}

/* The cache orders regions by the times its callers stamp them with; a
 * counter makes every stamp distinct. */
static uint64_t fake_now = 1;

/* The cache never looks behind a region's rmem: a made-up one tells
 * whose copy a hit carries. */
static struct hmaf_engine_rmem *fake_rmem(uint64_t id)
{
    return (struct hmaf_engine_rmem *)(uintptr_t)(0x10000 + id * 64);
}

/* A hit carries copies of its region's fields, which a lookup reads
 * instead of the region. */
static int hit_matches(const struct hmaf__region *r,
                       const struct hmaf__rc_hit *hit)
{
    return hit->region == r && hit->base == r->iv.base &&
           hit->len == r->iv.len && hit->rmem == r->rmem &&
           hit->access == r->access;
}

static struct hmaf__region *region(uint64_t id, uint64_t base, uint64_t len,
                                   uint64_t epoch)
{
    struct hmaf__region *r = calloc(1, sizeof(*r));

    CHECK(r != NULL);
    r->id = id;
    r->iv.base = base;
    r->iv.len = len;
    r->epoch = epoch;
    r->access = HMAF_ACCESS_READ;
    r->last_used = fake_now++; /* inserting counts as a use */
    r->rmem = fake_rmem(id);
    return r;
}

static void init(struct hmaf__regcache *rc, struct released *log,
                 size_t max_regions, uint64_t max_bytes)
{
    memset(log, 0, sizeof(*log));
    CHECK_OK(
        hmaf__regcache_init(rc, max_regions, max_bytes, record_release, log));
}

/* Insert and expect `evicted` evictions. */
static void add(struct hmaf__regcache *rc, uint64_t id, uint64_t base,
                uint64_t len, uint64_t evicted)
{
    uint64_t n = 12345;

    CHECK_EQ(hmaf__regcache_insert(rc, region(id, base, len, 0), &n),
             HMAF_REGCACHE_ADDED);
    CHECK_EQ(n, evicted);
}

/* The id of the region containing addr, or 0 for a miss. */
static uint64_t find(struct hmaf__regcache *rc, uint64_t addr)
{
    struct hmaf__reader *reader;
    struct hmaf__region *r;
    struct hmaf__rc_hit hit;
    uint64_t id;

    CHECK_OK(hmaf__regcache_enter(rc, &reader));
    r = hmaf__regcache_find(rc, addr, fake_now++, &hit);
    CHECK(r == NULL || hit_matches(r, &hit));
    id = r == NULL ? 0 : r->id;
    hmaf__regcache_exit(reader);
    return id;
}

static void test_lookup_edges(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 16, UINT64_MAX);
    CHECK_EQ(find(&rc, 0x1000), 0); /* empty */
    add(&rc, 1, 0x1000, 0x1000, 0);
    CHECK_EQ(find(&rc, 0x1000), 1);
    CHECK_EQ(find(&rc, 0x1fff), 1);
    CHECK_EQ(find(&rc, 0x2000), 0);
    CHECK_EQ(find(&rc, 0xfff), 0);
    CHECK_EQ(find(&rc, 0), 0);
    CHECK_EQ(find(&rc, UINT64_MAX), 0);
    add(&rc, 2, 0x2000, 1, 0);      /* adjacent after */
    add(&rc, 3, 0x800, 0x800, 0);   /* adjacent before */
    add(&rc, 4, 0x10000, 0x100, 0); /* after a gap */
    CHECK_EQ(find(&rc, 0x7ff), 0);
    CHECK_EQ(find(&rc, 0xfff), 3);
    CHECK_EQ(find(&rc, 0x1000), 1);
    CHECK_EQ(find(&rc, 0x2000), 2);
    CHECK_EQ(find(&rc, 0x2001), 0);
    CHECK_EQ(find(&rc, 0xffff), 0);
    CHECK_EQ(find(&rc, 0x100ff), 4);
    CHECK_EQ(find(&rc, 0x10100), 0);
    CHECK_EQ(hmaf__regcache_count(&rc), 4);
    hmaf__regcache_fini(&rc);
    CHECK_EQ(log.n, 4);
}

static void check_overlap(struct hmaf__regcache *rc, uint64_t base,
                          uint64_t len)
{
    struct hmaf__region *r = region(99, base, len, 0);

    CHECK_EQ(hmaf__regcache_insert(rc, r, NULL), HMAF_REGCACHE_OVERLAPS);
    free(r); /* a refused region stays the caller's */
}

static void test_overlap(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 16, UINT64_MAX);
    add(&rc, 1, 0x1000, 0x1000, 0);
    add(&rc, 2, 0x4000, 0x1000, 0);
    check_overlap(&rc, 0x1000, 0x1000); /* identical */
    check_overlap(&rc, 0x800, 0x801);   /* reaches the first byte */
    check_overlap(&rc, 0x1fff, 1);      /* the last byte */
    check_overlap(&rc, 0x1800, 0x100);  /* inside */
    check_overlap(&rc, 0, 0x10000);     /* covers both */
    check_overlap(&rc, 0x1fff, 0x2002); /* bridges both */
    check_overlap(&rc, 0x3fff, 2);
    CHECK_EQ(hmaf__regcache_count(&rc), 2);
    CHECK_EQ(log.n, 0);
    add(&rc, 3, 0x2000, 0x2000, 0); /* fills the gap exactly */
    CHECK_EQ(find(&rc, 0x3fff), 3);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 0x4000);
    hmaf__regcache_fini(&rc);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

struct span {
    uint64_t base, len;
};

/* Non-overlapping spans, some adjacent, in address order. */
static void make_spans(struct span *s, size_t n)
{
    uint64_t at = 0x10000;

    for (size_t i = 0; i < n; i++) {
        at += rng() % 4 == 0 ? 0 : rng() % 8192;
        s[i].base = at;
        s[i].len = 1 + rng() % 10000;
        at += s[i].len;
    }
}

static uint64_t linear_find(const struct span *s, size_t n, uint64_t addr)
{
    for (size_t i = 0; i < n; i++) {
        if (addr >= s[i].base && addr - s[i].base < s[i].len) {
            return i + 1;
        }
    }
    return 0;
}

static void insert_shuffled(struct hmaf__regcache *rc, const struct span *s,
                            size_t n)
{
    size_t order[NUM_RANDOM];

    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = order[i];
        add(rc, k + 1, s[k].base, s[k].len, 0);
    }
}

static void test_random_against_linear(void)
{
    static struct span s[NUM_RANDOM];
    struct hmaf__regcache rc;
    struct released log;
    uint64_t end;

    make_spans(s, NUM_RANDOM);
    end = s[NUM_RANDOM - 1].base + s[NUM_RANDOM - 1].len;
    init(&rc, &log, NUM_RANDOM, UINT64_MAX);
    insert_shuffled(&rc, s, NUM_RANDOM);
    CHECK_EQ(hmaf__regcache_count(&rc), NUM_RANDOM);
    for (size_t i = 0; i < NUM_RANDOM; i++) {
        CHECK_EQ(find(&rc, s[i].base), i + 1);
        CHECK_EQ(find(&rc, s[i].base + s[i].len - 1), i + 1);
        CHECK_EQ(find(&rc, s[i].base - 1),
                 linear_find(s, NUM_RANDOM, s[i].base - 1));
        CHECK_EQ(find(&rc, s[i].base + s[i].len),
                 linear_find(s, NUM_RANDOM, s[i].base + s[i].len));
    }
    for (int i = 0; i < 20000; i++) {
        uint64_t addr = rng() % (end + 0x10000);
        CHECK_EQ(find(&rc, addr), linear_find(s, NUM_RANDOM, addr));
    }
    hmaf__regcache_fini(&rc);
    CHECK_EQ(log.n, NUM_RANDOM);
}

static void check_released(const struct released *log, int i, uint64_t id,
                           int evicted)
{
    CHECK(i < log->n);
    CHECK_EQ(log->id[i], id);
    CHECK_EQ(log->evicted[i], evicted);
}

/* Ids released in log entries [from, to), as a bit mask; all evicted or
 * all cleared as `evicted` says. The order within one call is free. */
static uint64_t released_ids(const struct released *log, int from, int to,
                             int evicted)
{
    uint64_t mask = 0;

    CHECK(to <= log->n);
    for (int i = from; i < to; i++) {
        CHECK(log->id[i] < 64);
        CHECK_EQ(log->evicted[i], evicted);
        mask |= 1ull << log->id[i];
    }
    return mask;
}

/* Finding a region makes it recent: the least recently found goes first. */
static void test_lru_by_count(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 3, UINT64_MAX);
    add(&rc, 1, 0x1000, 0x100, 0);
    add(&rc, 2, 0x2000, 0x100, 0);
    add(&rc, 3, 0x3000, 0x100, 0);
    CHECK_EQ(find(&rc, 0x1010), 1); /* now 2 is the oldest */
    add(&rc, 4, 0x4000, 0x100, 1);
    CHECK_EQ(log.n, 1);
    check_released(&log, 0, 2, 1);
    CHECK_EQ(find(&rc, 0x2000), 0);
    CHECK_EQ(find(&rc, 0x3000), 3); /* now 1 is the oldest */
    add(&rc, 5, 0x5000, 0x100, 1);
    check_released(&log, 1, 1, 1);
    CHECK_EQ(hmaf__regcache_count(&rc), 3);
    CHECK_EQ(find(&rc, 0x3000), 3);
    CHECK_EQ(find(&rc, 0x4000), 4);
    CHECK_EQ(find(&rc, 0x5000), 5);
    hmaf__regcache_fini(&rc);
    CHECK_EQ(log.n, 5);
}

/* However recently the others were found, the new region stays. */
static void test_newest_kept(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 0, UINT64_MAX); /* 0 regions means 1 */
    add(&rc, 1, 0x1000, 0x100, 0);
    CHECK_EQ(find(&rc, 0x1000), 1);
    add(&rc, 2, 0x2000, 0x100, 1);
    check_released(&log, 0, 1, 1);
    CHECK_EQ(find(&rc, 0x2000), 2);
    CHECK_EQ(hmaf__regcache_count(&rc), 1);
    hmaf__regcache_fini(&rc);
}

/* Over the count bound, least recently used regions leave in a batch,
 * until the cache holds 7/8 of the bound, the new region included. */
static void test_batch_by_count(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 16, UINT64_MAX);
    for (uint64_t id = 1; id <= 16; id++) {
        add(&rc, id, id << 12, 0x100, 0);
    }
    CHECK_EQ(find(&rc, 1 << 12), 1);
    CHECK_EQ(find(&rc, 2 << 12), 2);
    CHECK_EQ(find(&rc, 3 << 12), 3); /* 4, 5 and 6 are the oldest now */
    add(&rc, 17, 17 << 12, 0x100, 3);
    CHECK_EQ(released_ids(&log, 0, 3, 1), 1u << 4 | 1u << 5 | 1u << 6);
    CHECK_EQ(hmaf__regcache_count(&rc), 14);
    add(&rc, 18, 18 << 12, 0x100, 0);
    add(&rc, 19, 19 << 12, 0x100, 0);
    add(&rc, 20, 20 << 12, 0x100, 3);
    CHECK_EQ(released_ids(&log, 3, 6, 1), 1u << 7 | 1u << 8 | 1u << 9);
    CHECK_EQ(hmaf__regcache_count(&rc), 14);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 14 * 0x100);
    CHECK_EQ(find(&rc, 1 << 12), 1);
    CHECK_EQ(find(&rc, 20 << 12), 20);
    CHECK_EQ(find(&rc, 9 << 12), 0);
    hmaf__regcache_fini(&rc);
    CHECK_EQ(log.n, 20);
}

/* The same by bytes: down to 7/8 of the bound (8750 of 10000 here). */
static void test_lru_by_bytes(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 100, 10000);
    add(&rc, 1, 0x10000, 4000, 0);
    add(&rc, 2, 0x20000, 4000, 0);
    CHECK_EQ(find(&rc, 0x10000), 1);
    add(&rc, 3, 0x30000, 4000, 1); /* 12000 > 10000: 2 goes, 8000 left */
    check_released(&log, 0, 2, 1);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 8000);
    add(&rc, 4, 0x40000, 1000, 0);
    add(&rc, 5, 0x50000, 1000, 0); /* exactly at the bound */
    CHECK_EQ(hmaf__regcache_bytes(&rc), 10000);
    CHECK_EQ(find(&rc, 0x10000), 1); /* 3 is the oldest now */
    add(&rc, 6, 0x60000, 500, 1);    /* 10500: 3 goes, 6500 left */
    check_released(&log, 1, 3, 1);
    add(&rc, 7, 0x70000, 3000, 0); /* 9500 */
    add(&rc, 8, 0x80000, 1000, 2); /* 10500: 4, then 5 (9500 > 8750) */
    CHECK_EQ(released_ids(&log, 2, 4, 1), 1u << 4 | 1u << 5);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 8500);
    CHECK_EQ(hmaf__regcache_count(&rc), 4);
    /* Larger than the whole bound: cached alone. The release order of one
     * insert's victims is not part of the contract. */
    add(&rc, 9, 0x100000, 50000, 4);
    CHECK_EQ(log.n, 8);
    CHECK_EQ(released_ids(&log, 4, 8, 1),
             1u << 1 | 1u << 6 | 1u << 7 | 1u << 8);
    CHECK_EQ(hmaf__regcache_count(&rc), 1);
    CHECK_EQ(find(&rc, 0x100000 + 49999), 9);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 50000);
    hmaf__regcache_fini(&rc);
    check_released(&log, 8, 9, 0);
}

static void test_release_flags(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 2, UINT64_MAX);
    add(&rc, 1, 0x1000, 0x10, 0);
    add(&rc, 2, 0x2000, 0x10, 0);
    add(&rc, 3, 0x3000, 0x10, 1);
    check_released(&log, 0, 1, 1);
    CHECK_OK(hmaf__regcache_clear(&rc, 0, NULL));
    CHECK_EQ(log.n, 3);
    CHECK_EQ(released_ids(&log, 1, 3, 0), 1u << 2 | 1u << 3);
    CHECK_EQ(hmaf__regcache_count(&rc), 0);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 0);
    add(&rc, 4, 0x4000, 0x10, 0);
    hmaf__regcache_fini(&rc);
    check_released(&log, 3, 4, 0);
    CHECK_EQ(log.n, 4);
}

static void check_stale(struct hmaf__regcache *rc, uint64_t epoch)
{
    struct hmaf__region *r = region(98, 0x90000, 0x10, epoch);

    CHECK_EQ(hmaf__regcache_insert(rc, r, NULL), HMAF_REGCACHE_STALE);
    free(r);
}

static void add_epoch(struct hmaf__regcache *rc, uint64_t id, uint64_t base,
                      uint64_t epoch)
{
    CHECK_EQ(hmaf__regcache_insert(rc, region(id, base, 0x10, epoch), NULL),
             HMAF_REGCACHE_ADDED);
}

static void test_epoch(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 16, UINT64_MAX);
    add_epoch(&rc, 1, 0x1000, 0);
    add_epoch(&rc, 2, 0x2000, 3);
    CHECK_OK(hmaf__regcache_clear(&rc, 5, NULL));
    CHECK_EQ(hmaf__regcache_count(&rc), 0);
    CHECK_EQ(released_ids(&log, 0, 2, 0), 1u << 1 | 1u << 2);
    check_stale(&rc, 0);
    check_stale(&rc, 4);
    add_epoch(&rc, 3, 0x3000, 5); /* equal: answered after the revocation */
    add_epoch(&rc, 4, 0x4000, 6);
    CHECK_OK(hmaf__regcache_clear(&rc, 2, NULL)); /* an older epoch never lowers the bar */
    CHECK_EQ(released_ids(&log, 2, 4, 0), 1u << 3 | 1u << 4);
    check_stale(&rc, 4);
    add_epoch(&rc, 5, 0x5000, 5);
    CHECK_EQ(find(&rc, 0x5000), 5);
    CHECK_EQ(hmaf__regcache_count(&rc), 1);
    hmaf__regcache_fini(&rc);
    CHECK_EQ(log.n, 5);
}

/* What a lookup of addr through the thread's hint answers, on reader, at
 * coarse time now (a hint serves within one tick). */
static struct hmaf__region *find_hinted(struct hmaf__regcache *rc,
                                        struct hmaf__reader *reader,
                                        uint64_t addr, uint64_t now,
                                        struct hmaf__rc_hit *hit_out)
{
    struct hmaf__region *r;

    hmaf__reader_enter(reader);
    r = hmaf__regcache_find_hinted(rc, reader, addr, now, hit_out);
    hmaf__reader_exit(reader);
    return r;
}

/* A region's fields never change while it is cached; one that leaves
 * (cleared, or evicted) and comes back at the same base with another
 * rmem and access is a new region: neither the leaves' copies nor a
 * thread's hint (tried twice at the same time: the second look is the
 * hint's) may answer with the old one's. */
static void test_fields_of_a_region_back(void)
{
    struct hmaf__regcache rc;
    struct released log;
    struct hmaf__reader *reader;
    struct hmaf__region *r;
    struct hmaf__rc_hit hit;
    uint64_t now = fake_now++;

    init(&rc, &log, 2, UINT64_MAX);
    CHECK_OK(hmaf__reader_get(&rc.readers, &reader));
    add(&rc, 1, 0x1000, 0x100, 0);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(find_hinted(&rc, reader, 0x1010, now, &hit)->id, 1);
        CHECK_EQ(hit.access, HMAF_ACCESS_READ);
    }
    CHECK_OK(hmaf__regcache_clear(&rc, 0, NULL));
    CHECK(find_hinted(&rc, reader, 0x1010, now, &hit) == NULL);
    r = region(2, 0x1000, 0x200, 0);
    r->access = HMAF_ACCESS_READ_WRITE;
    CHECK_EQ(hmaf__regcache_insert(&rc, r, NULL), HMAF_REGCACHE_ADDED);
    for (int i = 0; i < 2; i++) {
        CHECK(find_hinted(&rc, reader, 0x1010, now, &hit) == r);
        CHECK(hit_matches(r, &hit) && hit.rmem == fake_rmem(2) &&
              hit.access == HMAF_ACCESS_READ_WRITE && hit.len == 0x200);
    }
    /* Evicted by two newer ones (the bound is 2), then back. */
    add(&rc, 3, 0x4000, 0x100, 0);
    add(&rc, 4, 0x5000, 0x100, 1);
    CHECK_EQ(released_ids(&log, 1, 2, 1), 1u << 2);
    CHECK(find_hinted(&rc, reader, 0x1010, now, &hit) == NULL);
    r = region(5, 0x1000, 0x80, 0);
    CHECK_EQ(hmaf__regcache_insert(&rc, r, NULL), HMAF_REGCACHE_ADDED);
    for (int i = 0; i < 2; i++) {
        CHECK(find_hinted(&rc, reader, 0x1010, now, &hit) == r);
        CHECK(hit_matches(r, &hit) && hit.rmem == fake_rmem(5) &&
              hit.access == HMAF_ACCESS_READ);
    }
    CHECK(find_hinted(&rc, reader, 0x1090, now, &hit) == NULL); /* shorter */
    hmaf__regcache_fini(&rc);
}

/* A hint serves within the tick its lookup stamped the leaf at; then the
 * tree is asked again, so a region a thread keeps to still counts as used
 * for the LRU order. */
static void test_hint_keeps_stamping(void)
{
    struct hmaf__regcache rc;
    struct released log;
    struct hmaf__reader *reader;
    struct hmaf__rc_hit hit;
    uint64_t now = fake_now++;

    init(&rc, &log, 3, UINT64_MAX);
    CHECK_OK(hmaf__reader_get(&rc.readers, &reader));
    add(&rc, 1, 0x1000, 0x100, 0);
    add(&rc, 2, 0x2000, 0x100, 0);
    add(&rc, 3, 0x3000, 0x100, 0);
    CHECK_EQ(find_hinted(&rc, reader, 0x1000, now, &hit)->id, 1);
    CHECK_EQ(find(&rc, 0x2000), 2); /* later, and not through the hint */
    CHECK_EQ(find(&rc, 0x3000), 3);
    now = fake_now++;
    for (int i = 0; i < 3; i++) { /* 1 again, with the hint it left */
        CHECK_EQ(find_hinted(&rc, reader, 0x1000 + i, now, &hit)->id, 1);
    }
    add(&rc, 4, 0x4000, 0x100, 1); /* 2 is the least recently used */
    CHECK_EQ(released_ids(&log, 0, 1, 1), 1u << 2);
    hmaf__regcache_fini(&rc);
}

/* ---- 100,000 regions against a model ---- */

/* Slot i may hold the region [MODEL_BASE + i * MODEL_STRIDE, + len[i]),
 * len[i] < MODEL_STRIDE: slots never overlap each other. */
#define MODEL_SLOTS  150000
#define MODEL_BASE   0x100000000ull
#define MODEL_STRIDE 0x1000ull

struct model {
    struct hmaf__regcache rc;
    size_t max_regions;
    uint64_t max_bytes;
    uint8_t present[MODEL_SLOTS];
    uint8_t leaving[MODEL_SLOTS]; /* predicted victims of this insert */
    uint16_t len[MODEL_SLOTS];
    uint64_t used[MODEL_SLOTS];
    uint32_t where[MODEL_SLOTS]; /* a present slot's index in list */
    uint32_t list[MODEL_SLOTS];  /* the present slots, count of them */
    size_t count, nleaving;
    uint64_t bytes, epoch;
    uint32_t *order; /* scratch: present slots by use */
};

static struct model m;

static uint64_t slot_base(size_t slot)
{
    return MODEL_BASE + slot * MODEL_STRIDE;
}

/* Every region the cache lets go must be one the model predicted. */
static void model_release(void *arg, struct hmaf__region *list, int evicted)
{
    (void)arg;
    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        size_t slot = list->id - 1;
        CHECK(slot < MODEL_SLOTS);
        CHECK(m.leaving[slot] == (evicted ? 1 : 2));
        m.leaving[slot] = 0;
        m.nleaving--;
        free(list);
        list = next;
    }
}

static void model_add(size_t slot, uint16_t len)
{
    m.present[slot] = 1;
    m.len[slot] = len;
    m.where[slot] = (uint32_t)m.count;
    m.list[m.count++] = (uint32_t)slot;
    m.bytes += len;
}

static void model_remove(size_t slot, int evicted)
{
    uint32_t last = m.list[--m.count];

    m.list[m.where[slot]] = last;
    m.where[last] = m.where[slot];
    m.present[slot] = 0;
    m.leaving[slot] = evicted ? 1 : 2;
    m.nleaving++;
    m.bytes -= m.len[slot];
}

static void model_init(size_t max_regions, uint64_t max_bytes)
{
    memset(&m, 0, sizeof(m));
    m.max_regions = max_regions;
    m.max_bytes = max_bytes;
    m.order = malloc(MODEL_SLOTS * sizeof(m.order[0]));
    CHECK(m.order != NULL);
    CHECK_OK(hmaf__regcache_init(&m.rc, max_regions, max_bytes, model_release,
                                 NULL));
}

static void model_fini(void)
{
    while (m.count > 0) {
        model_remove(m.list[m.count - 1], 0);
    }
    hmaf__regcache_fini(&m.rc);
    CHECK_EQ(m.nleaving, 0);
    free(m.order);
}

static const uint64_t *sort_used;

static int by_model_use(const void *a, const void *b)
{
    uint64_t x = sort_used[*(const uint32_t *)a];
    uint64_t y = sort_used[*(const uint32_t *)b];

    return (x > y) - (x < y);
}

static uint64_t low_water(uint64_t bound)
{
    return bound - bound / 8;
}

/* Which slots an insert of len bytes evicts: least recently used first,
 * down to 7/8 of whichever bound it crosses. */
static void predict_evictions(uint64_t len)
{
    size_t n = m.count + 1, k = 0, nused = 0;
    uint64_t bytes = m.bytes + len;
    size_t keep_max =
        n > m.max_regions ? low_water(m.max_regions) : m.max_regions;
    uint64_t bytes_max =
        bytes > m.max_bytes ? low_water(m.max_bytes) : m.max_bytes;

    if (m.count == 0 || (n <= m.max_regions && bytes <= m.max_bytes)) {
        return;
    }
    nused = m.count;
    memcpy(m.order, m.list, nused * sizeof(m.order[0]));
    sort_used = m.used;
    qsort(m.order, nused, sizeof(m.order[0]), by_model_use);
    while (k < nused && (n > HMAF_MAX(keep_max, 1) || bytes > bytes_max)) {
        uint32_t v = m.order[k++];
        n--;
        bytes -= m.len[v];
        model_remove(v, 1);
    }
}

static void model_insert(size_t slot, uint16_t len)
{
    uint64_t evicted = 0, before;
    struct hmaf__region *r;
    enum hmaf__regcache_insert_result ret;

    if (m.present[slot]) { /* the same base: refused, whatever the length */
        r = region(slot + 1, slot_base(slot), 1 + len % 64, m.epoch);
        CHECK_EQ(hmaf__regcache_insert(&m.rc, r, NULL), HMAF_REGCACHE_OVERLAPS);
        free(r);
        return;
    }
    r = region(slot + 1, slot_base(slot), len, m.epoch);
    predict_evictions(len);
    before = m.nleaving;
    ret = hmaf__regcache_insert(&m.rc, r, &evicted);
    CHECK_EQ(ret, HMAF_REGCACHE_ADDED);
    CHECK_EQ(m.nleaving, 0); /* every predicted victim went */
    CHECK_EQ(evicted, before);
    model_add(slot, len);
    m.used[slot] = atomic_load(&r->last_used);
    CHECK_EQ(hmaf__regcache_count(&m.rc), m.count);
    CHECK_EQ(hmaf__regcache_bytes(&m.rc), m.bytes);
}

/* A region reaching from the gap before a present slot into it. */
static void model_overlap(size_t slot)
{
    struct hmaf__region *r;

    if (!m.present[slot] || slot == 0) {
        return;
    }
    r = region(999999, slot_base(slot) - 1, 2, m.epoch);
    CHECK_EQ(hmaf__regcache_insert(&m.rc, r, NULL), HMAF_REGCACHE_OVERLAPS);
    free(r);
}

static void model_find(size_t slot, uint64_t off, int hinted)
{
    uint64_t now = fake_now++, addr = slot_base(slot) + off;
    struct hmaf__reader *reader;
    struct hmaf__region *r;
    struct hmaf__rc_hit found;
    int hit = m.present[slot] && off < m.len[slot];

    CHECK_OK(hmaf__regcache_enter(&m.rc, &reader));
    r = hinted ? hmaf__regcache_find_hinted(&m.rc, reader, addr, now, &found)
               : hmaf__regcache_find(&m.rc, addr, now, &found);
    CHECK_EQ(r == NULL ? 0 : r->id, hit ? slot + 1 : 0);
    CHECK(r == NULL || hit_matches(r, &found));
    hmaf__regcache_exit(reader);
    if (hit) {
        m.used[slot] = now;
    }
}

static void model_clear(void)
{
    while (m.count > 0) {
        model_remove(m.list[m.count - 1], 0);
    }
    m.epoch++;
    CHECK_OK(hmaf__regcache_clear(&m.rc, m.epoch, NULL));
    CHECK_EQ(m.nleaving, 0);
    CHECK_EQ(hmaf__regcache_count(&m.rc), 0);
}

static void model_stale(size_t slot)
{
    struct hmaf__region *r;

    if (m.epoch == 0) {
        return;
    }
    r = region(slot + 1, slot_base(slot), 16, m.epoch - 1);
    CHECK_EQ(hmaf__regcache_insert(&m.rc, r, NULL), HMAF_REGCACHE_STALE);
    free(r);
}

static uint16_t model_len(void)
{
    return (uint16_t)(1 + rng() % (MODEL_STRIDE - 1));
}

static void model_check_all(void)
{
    for (size_t i = 0; i < MODEL_SLOTS; i++) {
        model_find(i, rng() % MODEL_STRIDE, (int)(i & 1));
        if (m.present[i]) {
            model_find(i, m.len[i] - 1, 0);
        }
    }
}

/* 100,000 inserts: ascending, descending, then in random order (the
 * three ways a node splits), with lookups and refused inserts between. */
static void test_model_100k(void)
{
    static uint32_t perm[MODEL_SLOTS];
    size_t n = 100000;

    model_init(n, UINT64_MAX);
    for (size_t i = 0; i < MODEL_SLOTS; i++) {
        perm[i] = (uint32_t)i;
    }
    for (size_t i = MODEL_SLOTS - 1; i > 60000; i--) {
        size_t j = 60000 + rng() % (i - 60000 + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        size_t slot = i < 30000 ? i : i < 60000 ? 59999 - (i - 30000) : perm[i];
        model_insert(slot, model_len());
        if (i % 8 == 0) {
            model_find(rng() % MODEL_SLOTS, rng() % MODEL_STRIDE, (int)(i & 1));
            model_overlap(slot);
            model_insert(slot, model_len()); /* present: refused */
        }
    }
    CHECK_EQ(hmaf__regcache_count(&m.rc), n);
    model_check_all();
    model_fini();
}

/* Random inserts (evicting by count and by bytes), lookups, clears and
 * stale answers over 150,000 slots: with a bound of 20,000 regions, and
 * of 64 (where the new region often comes before every victim). */
static void test_model_evictions(size_t max_regions, uint64_t max_bytes,
                                 long ops)
{
    model_init(max_regions, max_bytes);
    for (long op = 0; op < ops; op++) {
        size_t slot = rng() % MODEL_SLOTS;
        unsigned what = (unsigned)(rng() % 1000);
        if (what < 550) {
            model_insert(slot, model_len());
        } else if (what < 990) {
            model_find(slot, rng() % MODEL_STRIDE, what & 1);
        } else if (what < 995) {
            model_overlap(slot);
        } else if (what < 999) {
            model_stale(slot);
        } else if (rng() % 8 == 0) {
            model_clear();
        }
    }
    model_check_all();
    model_fini();
}

/* ---- readers beside a writer ---- */

#define LIVE_SLOTS   4096
#define LIVE_READERS 2

struct live_region {
    struct hmaf__region r; /* first: the cache's pointer is ours */
    _Atomic int released;
};

static struct hmaf__regcache live;
static _Atomic int live_stop;
static _Atomic long live_bad, live_hits, live_lookups;

static void live_release(void *arg, struct hmaf__region *list, int evicted)
{
    (void)arg;
    (void)evicted;
    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        atomic_store(&((struct live_region *)list)->released, 1);
        free(list);
        list = next;
    }
}

/* Inside the section, a region found must be alive and what was asked. */
static void *live_reader(void *arg)
{
    uint64_t x = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    struct hmaf__reader *reader;
    long hits = 0;

    CHECK_OK(hmaf__reader_get(&live.readers, &reader));
    for (uint64_t i = 0; !atomic_load(&live_stop); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t slot = x % LIVE_SLOTS;
        uint64_t addr = slot_base(slot) + (x >> 32) % 64;
        struct hmaf__region *r;
        struct hmaf__rc_hit hit;
        hmaf__reader_enter(reader);
        r = i & 1 ? hmaf__regcache_find_hinted(&live, reader, addr, i, &hit)
                  : hmaf__regcache_find(&live, addr, i, &hit);
        if (r != NULL) {
            hits++;
            if (atomic_load(&((struct live_region *)r)->released) ||
                r->id != slot + 1 || addr - r->iv.base >= r->iv.len ||
                !hit_matches(r, &hit)) {
                atomic_fetch_add(&live_bad, 1);
            }
        }
        hmaf__reader_exit(reader);
        if (i % 1024 == 1023) {
            atomic_fetch_add(&live_lookups, 1024);
            /* Outside: a busy machine then rather preempts us here than
             * inside a section, which the writer's grace period waits
             * out. */
            sched_yield();
        }
    }
    atomic_fetch_add(&live_hits, hits);
    return NULL;
}

/* At least ops inserts, and on until the readers looked up enough. */
static void live_writer(long ops)
{
    for (long op = 0;
         op < ops || (atomic_load(&live_lookups) < 4 * ops && op < 20 * ops);
         op++) {
        size_t slot = rng() % LIVE_SLOTS;
        struct live_region *lr = calloc(1, sizeof(*lr));
        CHECK(lr != NULL);
        lr->r.id = slot + 1;
        lr->r.iv.base = slot_base(slot);
        lr->r.iv.len = 64;
        lr->r.last_used = fake_now++;
        lr->r.rmem = fake_rmem(lr->r.id);
        if (hmaf__regcache_insert(&live, &lr->r, NULL) != HMAF_REGCACHE_ADDED) {
            free(lr);
        }
        if (op % 5000 == 4999) {
            CHECK_OK(hmaf__regcache_clear(&live, 0, NULL));
        }
    }
}

static void test_readers_beside_writer(int fence_free)
{
    pthread_t t[LIVE_READERS];
    int saved = hmaf__readers_fence_free;

    CHECK_OK(hmaf__regcache_init(&live, 512, UINT64_MAX, live_release, NULL));
    hmaf__readers_fence_free = fence_free && saved;
    atomic_store(&live_stop, 0);
    atomic_store(&live_lookups, 0);
    for (uintptr_t i = 0; i < LIVE_READERS; i++) {
        CHECK_OK(pthread_create(&t[i], NULL, live_reader, (void *)(i + 1)));
    }
    live_writer(SCALED(100000));
    atomic_store(&live_stop, 1);
    for (int i = 0; i < LIVE_READERS; i++) {
        CHECK_OK(pthread_join(t[i], NULL));
    }
    hmaf__regcache_fini(&live);
    hmaf__readers_fence_free = saved;
    CHECK_EQ(atomic_load(&live_bad), 0);
    CHECK(atomic_load(&live_hits) > 0);
}

/* ---- figures (printed, not judged) ---- */

/* This thread's CPU time: the machine may be busy with others. */
static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void free_release(void *arg, struct hmaf__region *list, int evicted)
{
    (void)arg;
    (void)evicted;
    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        free(list);
        list = next;
    }
}

static void fill(struct hmaf__regcache *rc, const uint32_t *slots, size_t from,
                 size_t to)
{
    for (size_t i = from; i < to; i++) {
        struct hmaf__region *r =
            region(slots[i] + 1, slot_base(slots[i]), 64, 0);
        CHECK_EQ(hmaf__regcache_insert(rc, r, NULL), HMAF_REGCACHE_ADDED);
    }
}

/* Microseconds per insert into a cache of about n regions: n + m
 * inserts in random order, the last m timed, reps times. */
static double insert_us(const uint32_t *slots, size_t n)
{
    size_t timed = n < 1000 ? 10 : n / 100, reps = 100000 / n + 1;
    double total = 0;

    for (size_t rep = 0; rep < reps; rep++) {
        struct hmaf__regcache rc;
        double t0;
        CHECK_OK(
            hmaf__regcache_init(&rc, SIZE_MAX, UINT64_MAX, free_release, NULL));
        fill(&rc, slots, 0, n);
        t0 = now_s();
        fill(&rc, slots, n, n + timed);
        total += now_s() - t0;
        hmaf__regcache_fini(&rc);
    }
    return total / (double)(reps * timed) * 1e6;
}

/* Nanoseconds per lookup of a random cached address among n regions. */
static double lookup_ns(const uint32_t *slots, size_t n, int hinted)
{
    enum { LOOKUPS = 2000000 };
    struct hmaf__regcache rc;
    struct hmaf__reader *reader;
    struct hmaf__rc_hit hit;
    uint64_t x = 88172645463325252ull, found = 0;
    double t0, t;

    CHECK_OK(
        hmaf__regcache_init(&rc, SIZE_MAX, UINT64_MAX, free_release, NULL));
    fill(&rc, slots, 0, n);
    CHECK_OK(hmaf__regcache_enter(&rc, &reader));
    t0 = now_s();
    for (int i = 0; i < LOOKUPS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t addr = slot_base(slots[x % n]) + (x >> 40) % 64;
        found +=
            (hinted ? hmaf__regcache_find_hinted(&rc, reader, addr, 1, &hit)
                    : hmaf__regcache_find(&rc, addr, 1, &hit)) != NULL;
    }
    t = now_s() - t0;
    hmaf__regcache_exit(reader);
    CHECK_EQ(found, LOOKUPS);
    hmaf__regcache_fini(&rc);
    return t / LOOKUPS * 1e9;
}

/* Not under a sanitizer (what it would measure is the sanitizer), nor
 * with HMAF_TEST_FIGURES=0. */
static int figures_wanted(void)
{
#ifdef SANITIZED
    return 0;
#else
    return getenv("HMAF_TEST_FIGURES") == NULL ||
           strcmp(getenv("HMAF_TEST_FIGURES"), "0") != 0;
#endif
}

static void print_figures(void)
{
    static uint32_t slots[MODEL_SLOTS];
    static const size_t sizes[] = {10, 1000, 10000, 100000};

    for (size_t i = 0; i < MODEL_SLOTS; i++) {
        slots[i] = (uint32_t)i;
    }
    for (size_t i = MODEL_SLOTS - 1; i > 0; i--) {
        size_t j = rng() % (i + 1);
        uint32_t t = slots[i];
        slots[i] = slots[j];
        slots[j] = t;
    }
    printf("test_regcache: figures (random order, CPU time; not judged):\n");
    for (size_t i = 0; i < HMAF_ARRAY_SIZE(sizes); i++) {
        printf("  %6zu regions: insert %.2f us, lookup %.1f ns, "
               "hinted lookup (hint missing) %.1f ns\n",
               sizes[i], insert_us(slots, sizes[i]),
               lookup_ns(slots, sizes[i], 0), lookup_ns(slots, sizes[i], 1));
    }
}

int main(void)
{
    test_lookup_edges();
    test_overlap();
    test_random_against_linear();
    test_lru_by_count();
    test_newest_kept();
    test_batch_by_count();
    test_lru_by_bytes();
    test_release_flags();
    test_epoch();
    test_fields_of_a_region_back();
    test_hint_keeps_stamping();
    test_model_100k();
    test_model_evictions(20000, 20000ull * 1500, SCALED(300000));
    test_model_evictions(64, UINT64_MAX, SCALED(100000));
    test_readers_beside_writer(1);
    test_readers_beside_writer(0);
    if (figures_wanted()) {
        print_figures();
    }
    printf("test_regcache: ok\n");
    return 0;
}
