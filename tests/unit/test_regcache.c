/*
 * The dpu side's region cache (core/regcache.c): interval lookup, overlap
 * refusal, LRU eviction by count and by bytes, the release callback and
 * epoch staleness.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/regcache.h"

#define MAX_RELEASED 2048
#define NUM_RANDOM   1000

/* What the release callback saw, in order. */
struct released {
    int n;
    uint64_t id[MAX_RELEASED];
    int evicted[MAX_RELEASED];
};

static void record_release(void *arg, struct hmaf__region *r, int evicted)
{
    struct released *log = arg;

    CHECK(log->n < MAX_RELEASED);
    log->id[log->n] = r->id;
    log->evicted[log->n] = evicted;
    log->n++;
    free(r);
}

/* The cache orders regions by the times its callers stamp them with; a
 * counter makes every stamp distinct. */
static uint64_t fake_now = 1;

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

    CHECK_OK(hmaf__regcache_insert(rc, region(id, base, len, 0), &n));
    CHECK_EQ(n, evicted);
}

/* The id of the region containing addr, or 0 for a miss. */
static uint64_t find(struct hmaf__regcache *rc, uint64_t addr)
{
    struct hmaf__reader *reader;
    struct hmaf__region *r;
    uint64_t id;

    CHECK_OK(hmaf__regcache_enter(rc, &reader));
    r = hmaf__regcache_find(rc, addr, fake_now++);
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

    CHECK_ERR(hmaf__regcache_insert(rc, r, NULL), HMAF_EEXIST);
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

static void test_lru_by_bytes(void)
{
    struct hmaf__regcache rc;
    struct released log;

    init(&rc, &log, 100, 10000);
    add(&rc, 1, 0x10000, 4000, 0);
    add(&rc, 2, 0x20000, 4000, 0);
    CHECK_EQ(find(&rc, 0x10000), 1);
    add(&rc, 3, 0x30000, 4000, 1); /* 12000 > 10000: 2 goes */
    check_released(&log, 0, 2, 1);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 8000);
    add(&rc, 4, 0x40000, 5000, 1); /* 1 was found before 3 was added */
    check_released(&log, 1, 1, 1);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 9000);
    add(&rc, 5, 0x50000, 1000, 0); /* exactly at the bound */
    CHECK_EQ(hmaf__regcache_bytes(&rc), 10000);
    CHECK_EQ(hmaf__regcache_count(&rc), 3);
    /* Larger than the whole bound: cached alone. The release order of one
     * insert's victims is not part of the contract. */
    add(&rc, 6, 0x100000, 50000, 3);
    CHECK_EQ(log.n, 5);
    CHECK_EQ(released_ids(&log, 2, 5, 1), 1u << 3 | 1u << 4 | 1u << 5);
    CHECK_EQ(hmaf__regcache_count(&rc), 1);
    CHECK_EQ(find(&rc, 0x100000 + 49999), 6);
    CHECK_EQ(hmaf__regcache_bytes(&rc), 50000);
    hmaf__regcache_fini(&rc);
    check_released(&log, 5, 6, 0);
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

    CHECK_EQ(hmaf__regcache_insert(rc, r, NULL), -ESTALE);
    free(r);
}

static void add_epoch(struct hmaf__regcache *rc, uint64_t id, uint64_t base,
                      uint64_t epoch)
{
    CHECK_OK(hmaf__regcache_insert(rc, region(id, base, 0x10, epoch), NULL));
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

int main(void)
{
    test_lookup_edges();
    test_overlap();
    test_random_against_linear();
    test_lru_by_count();
    test_newest_kept();
    test_lru_by_bytes();
    test_release_flags();
    test_epoch();
    printf("test_regcache: ok\n");
    return 0;
}
