/*
 * The host's exposure policy (host/exposure.c, over util/intervals.c) and
 * its named roots (host/roots.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "host/exposure.h"
#include "host/roots.h"

#define R  HMAF_ACCESS_READ
#define RW HMAF_ACCESS_READ_WRITE

static struct hmaf__exposure *add(struct hmaf__exposures *ex, uint64_t base,
                                  uint64_t len, unsigned access)
{
    struct hmaf__exposure *e = NULL;

    CHECK_OK(hmaf__exposure_add(ex, base, len, access, &e));
    CHECK(e != NULL);
    CHECK(e->iv.base == base && e->iv.len == len);
    CHECK_EQ(e->access, access);
    CHECK_EQ(e->holders, 0);
    CHECK(e->mem == NULL);
    return e;
}

/* Take every exposure and free it; returns how many there were. */
static int drain(struct hmaf__exposures *ex)
{
    struct hmaf__exposure *e;
    int n = 0;

    while ((e = hmaf__exposure_take_any(ex)) != NULL) {
        CHECK(hmaf__exposure_find_id(ex, e->id) == NULL);
        free(e);
        n++;
    }
    hmaf__exposures_fini(ex);
    return n;
}

static void test_find(void)
{
    struct hmaf__exposures ex = {0};
    struct hmaf__exposure *a, *b, *c;

    CHECK(hmaf__exposure_find(&ex, 0x1000) == NULL);
    a = add(&ex, 0x1000, 0x1000, R);
    b = add(&ex, 0x2000, 0x10, RW); /* adjacent after */
    c = add(&ex, 0x800, 0x800, RW); /* adjacent before */
    CHECK(hmaf__exposure_find(&ex, 0x1000) == a);
    CHECK(hmaf__exposure_find(&ex, 0x1fff) == a);
    CHECK(hmaf__exposure_find(&ex, 0x2000) == b);
    CHECK(hmaf__exposure_find(&ex, 0x200f) == b);
    CHECK(hmaf__exposure_find(&ex, 0x2010) == NULL);
    CHECK(hmaf__exposure_find(&ex, 0xfff) == c);
    CHECK(hmaf__exposure_find(&ex, 0x7ff) == NULL);
    CHECK(hmaf__exposure_find(&ex, 0) == NULL);
    CHECK(hmaf__exposure_find(&ex, UINT64_MAX) == NULL);
    CHECK(hmaf__exposure_find_id(&ex, a->id) == a);
    CHECK(hmaf__exposure_find_id(&ex, b->id) == b);
    CHECK(hmaf__exposure_find_id(&ex, c->id) == c);
    CHECK(hmaf__exposure_find_id(&ex, 0) == NULL);
    CHECK(hmaf__exposure_find_id(&ex, 12345) == NULL);
    CHECK(a->id != b->id && b->id != c->id && a->id != c->id);
    CHECK_EQ(drain(&ex), 3);
}

static void test_rejects(void)
{
    struct hmaf__exposures ex = {0};
    struct hmaf__exposure *e = NULL;

    add(&ex, 0x1000, 0x1000, R);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x1000, 0x1000, R, &e), HMAF_EEXIST);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x1800, 0x10, RW, &e), HMAF_EEXIST);
    CHECK_ERR(hmaf__exposure_add(&ex, 0xfff, 2, R, &e), HMAF_EEXIST);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x1fff, 2, R, &e), HMAF_EEXIST);
    CHECK_ERR(hmaf__exposure_add(&ex, 0, 0x100000, R, &e), HMAF_EEXIST);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x5000, 0, R, &e), HMAF_EINVAL);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x5000, 1, 0, &e), HMAF_EINVAL);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x5000, 1, 2, &e), HMAF_EINVAL);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x5000, 1, 4, &e), HMAF_EINVAL);
    CHECK_ERR(hmaf__exposure_add(&ex, 0x5000, 1, 7, &e), HMAF_EINVAL);
    CHECK_ERR(hmaf__exposure_add(&ex, UINT64_MAX - 10, 100, R, &e),
              HMAF_EOVERFLOW);
    CHECK_ERR(hmaf__exposure_add(&ex, 2, UINT64_MAX, R, &e), HMAF_EOVERFLOW);
    CHECK_ERR(hmaf__exposure_add(&ex, UINT64_MAX, 2, R, &e), HMAF_EOVERFLOW);
    /* Outputs are written only on success. */
    CHECK(e == NULL);
    /* Ends one byte short of 2^64: fine. */
    add(&ex, UINT64_MAX - 10, 10, R);
    CHECK_EQ(drain(&ex), 2);
}

/*
 * A range that ends exactly at 2^64 is either refused or a full member:
 * nothing may overlap it afterwards.
 */
/* An end address of exactly 2^64 is refused by the policy, and the interval
 * set it sits on stays correct for such a range anyway. */
static void test_top_of_address_space(void)
{
    struct hmaf__exposures ex = {0};
    struct hmaf__interval_set set = {0};
    struct hmaf__interval top = {UINT64_MAX - 9, 10}, inside = {UINT64_MAX, 1};

    CHECK_ERR(hmaf__exposure_add(&ex, UINT64_MAX - 9, 10, R, NULL),
              HMAF_EOVERFLOW);
    CHECK_OK(hmaf__exposure_add(&ex, UINT64_MAX - 10, 10, R, NULL));
    CHECK_EQ(drain(&ex), 1);
    CHECK_OK(hmaf__iset_insert(&set, &top));
    CHECK_EQ(hmaf__iset_find(&set, UINT64_MAX), 0);
    CHECK_EQ(hmaf__iset_insert(&set, &inside), -EEXIST);
    hmaf__iset_fini(&set);
}

static void test_take_exact(void)
{
    struct hmaf__exposures ex = {0};
    struct hmaf__exposure *a = add(&ex, 0x1000, 0x1000, R);
    struct hmaf__exposure *b = add(&ex, 0x3000, 0x1000, RW);
    uint64_t a_id = a->id;

    CHECK(hmaf__exposure_take(&ex, 0x1000, 0xfff) == NULL);
    CHECK(hmaf__exposure_take(&ex, 0x1000, 0x1001) == NULL);
    CHECK(hmaf__exposure_take(&ex, 0x1001, 0xfff) == NULL);
    CHECK(hmaf__exposure_take(&ex, 0x1001, 0x1000) == NULL);
    CHECK(hmaf__exposure_take(&ex, 0x800, 0x1800) == NULL);
    CHECK(hmaf__exposure_take(&ex, 0x2000, 0x1000) == NULL); /* a gap */
    CHECK(hmaf__exposure_find(&ex, 0x1800) == a);
    CHECK(hmaf__exposure_take(&ex, 0x1000, 0x1000) == a);
    CHECK(hmaf__exposure_find(&ex, 0x1000) == NULL);
    CHECK(hmaf__exposure_find_id(&ex, a_id) == NULL);
    CHECK(hmaf__exposure_take(&ex, 0x1000, 0x1000) == NULL); /* gone */
    CHECK(hmaf__exposure_find(&ex, 0x3000) == b);
    free(a);
    CHECK_EQ(drain(&ex), 1);
}

/* A session may still name an old id: a new exposure never gets it. */
static void test_ids_not_reused(void)
{
    struct hmaf__exposures ex = {0};
    uint64_t seen[64];

    for (int i = 0; i < 64; i++) {
        struct hmaf__exposure *e = add(&ex, 0x1000, 0x1000, R);
        for (int j = 0; j < i; j++) {
            CHECK(e->id != seen[j]);
        }
        seen[i] = e->id;
        if (i % 2 == 0) {
            CHECK(hmaf__exposure_take(&ex, 0x1000, 0x1000) == e);
        } else {
            CHECK(hmaf__exposure_take_any(&ex) == e);
        }
        free(e);
        CHECK_ERR(hmaf__exposure_add(&ex, 0x1000, 0, R, NULL), HMAF_EINVAL);
    }
    CHECK(hmaf__exposure_take_any(&ex) == NULL);
    CHECK_EQ(drain(&ex), 0);
}

static void test_take_any(void)
{
    struct hmaf__exposures ex = {0};

    for (uint64_t i = 0; i < 100; i++) {
        CHECK_OK(hmaf__exposure_add(&ex, 0x10000 + i * 0x2000, 0x1000,
                                    i % 2 ? R : RW, NULL));
    }
    CHECK(hmaf__exposure_find(&ex, 0x10000 + 99 * 0x2000) != NULL);
    CHECK_EQ(drain(&ex), 100);
    CHECK(hmaf__exposure_take_any(&ex) == NULL);
}

static void check_root(const struct hmaf__roots *roots, const char *name,
                       uint64_t addr, uint64_t len)
{
    const struct hmaf__root *r = hmaf__roots_find(roots, name);

    CHECK(r != NULL);
    CHECK(strcmp(r->name, name) == 0);
    CHECK(r->addr == addr && r->len == len);
}

static void test_roots_basic(void)
{
    struct hmaf__roots roots = {0};

    CHECK(hmaf__roots_find(&roots, "a") == NULL);
    CHECK_OK(hmaf__roots_publish(&roots, "a", 0x1000, 10));
    CHECK_OK(hmaf__roots_publish(&roots, "b", UINT64_MAX - 10, 10));
    check_root(&roots, "a", 0x1000, 10);
    check_root(&roots, "b", UINT64_MAX - 10, 10);
    /* Empty, or ending past 2^64 - 1 (as exposures): refused. */
    CHECK_ERR(hmaf__roots_publish(&roots, "c", 0x1000, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf__roots_publish(&roots, "c", UINT64_MAX - 10, 11),
              HMAF_EOVERFLOW);
    CHECK_ERR(hmaf__roots_publish(&roots, "c", UINT64_MAX, UINT64_MAX),
              HMAF_EOVERFLOW);
    CHECK(hmaf__roots_find(&roots, "c") == NULL);
    CHECK(hmaf__roots_find(&roots, "A") == NULL);
    CHECK_ERR(hmaf__roots_publish(&roots, "a", 0x2000, 1), HMAF_EEXIST);
    check_root(&roots, "a", 0x1000, 10);
    CHECK_ERR(hmaf__roots_publish(&roots, "", 0x2000, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf__roots_publish(&roots, NULL, 0x2000, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf__roots_unpublish(&roots, "c"), HMAF_ENOENT);
    CHECK_ERR(hmaf__roots_unpublish(&roots, ""), HMAF_EINVAL);
    CHECK_ERR(hmaf__roots_unpublish(&roots, NULL), HMAF_EINVAL);
    CHECK_OK(hmaf__roots_unpublish(&roots, "a"));
    CHECK(hmaf__roots_find(&roots, "a") == NULL);
    CHECK_ERR(hmaf__roots_unpublish(&roots, "a"), HMAF_ENOENT);
    check_root(&roots, "b", UINT64_MAX - 10, 10);
    CHECK_OK(hmaf__roots_publish(&roots, "a", 0x3000, 30)); /* again */
    check_root(&roots, "a", 0x3000, 30);
    hmaf__roots_fini(&roots);
}

static void test_roots_name_length(void)
{
    struct hmaf__roots roots = {0};
    char name[66];

    memset(name, 'n', sizeof(name));
    name[63] = '\0';
    CHECK_OK(hmaf__roots_publish(&roots, name, 1, 1));
    check_root(&roots, name, 1, 1);
    name[63] = 'n';
    name[64] = '\0';
    CHECK_ERR(hmaf__roots_publish(&roots, name, 1, 1), HMAF_ENAMETOOLONG);
    CHECK_ERR(hmaf__roots_unpublish(&roots, name), HMAF_ENAMETOOLONG);
    CHECK(hmaf__roots_find(&roots, name) == NULL);
    name[65] = '\0';
    name[64] = 'n';
    CHECK_ERR(hmaf__roots_publish(&roots, name, 1, 1), HMAF_ENAMETOOLONG);
    name[63] = '\0';
    CHECK_OK(hmaf__roots_unpublish(&roots, name));
    hmaf__roots_fini(&roots);
}

/* Many roots: growth, removal from the middle, and the count limit. */
static void test_roots_many(void)
{
    struct hmaf__roots roots = {0};
    char name[32];

    for (int i = 0; i < HMAF_ROOTS_MAX; i++) {
        snprintf(name, sizeof(name), "root-%d", i);
        CHECK_OK(hmaf__roots_publish(&roots, name, (uint64_t)i, 1));
    }
    CHECK_ERR(hmaf__roots_publish(&roots, "one-too-many", 0, 1), HMAF_ENOSPC);
    for (int i = 0; i < HMAF_ROOTS_MAX; i += 3) {
        snprintf(name, sizeof(name), "root-%d", i);
        CHECK_OK(hmaf__roots_unpublish(&roots, name));
    }
    for (int i = 0; i < HMAF_ROOTS_MAX; i++) {
        snprintf(name, sizeof(name), "root-%d", i);
        if (i % 3 == 0) {
            CHECK(hmaf__roots_find(&roots, name) == NULL);
        } else {
            check_root(&roots, name, (uint64_t)i, 1);
        }
    }
    CHECK_OK(hmaf__roots_publish(&roots, "one-too-many", 0, 1));
    hmaf__roots_fini(&roots);
}

int main(void)
{
    test_find();
    test_rejects();
    test_take_exact();
    test_ids_not_reused();
    test_take_any();
    test_roots_basic();
    test_roots_name_length();
    test_roots_many();
    test_top_of_address_space();
    printf("test_exposure: ok\n");
    return 0;
}
