/*
 * The host's exposure policy (host/exposure.c, over util/itree.c and
 * util/hashtab.c) and its named roots (host/roots.c).
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

/* An end address of exactly 2^64 is refused by the policy, and the tree
 * it sits on stays correct for such a range anyway. */
static void test_top_of_address_space(void)
{
    struct hmaf__exposures ex = {0};
    struct hmaf__itree tree = {0};
    struct hmaf__itree_node top = {.base = UINT64_MAX - 9, .len = 10};
    struct hmaf__itree_node inside = {.base = UINT64_MAX, .len = 1};
    struct hmaf__itree_node below = {.base = UINT64_MAX - 10, .len = 1};

    CHECK_ERR(hmaf__exposure_add(&ex, UINT64_MAX - 9, 10, R, NULL),
              HMAF_EOVERFLOW);
    CHECK_OK(hmaf__exposure_add(&ex, UINT64_MAX - 10, 10, R, NULL));
    CHECK_EQ(drain(&ex), 1);
    CHECK_OK(hmaf__itree_insert(&tree, &top));
    CHECK(hmaf__itree_find(&tree, UINT64_MAX) == &top);
    CHECK_EQ(hmaf__itree_insert(&tree, &inside), -EEXIST);
    CHECK_OK(hmaf__itree_insert(&tree, &below));
    CHECK(hmaf__itree_find(&tree, UINT64_MAX - 10) == &below);
    hmaf__itree_remove(&tree, &top);
    hmaf__itree_remove(&tree, &below);
    CHECK(hmaf__itree_any(&tree) == NULL);
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

static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* The tree's shape: ordered, no overlap, AVL-balanced, heights right.
 * Returns the subtree's height; counts its nodes into *n. */
static int check_subtree(const struct hmaf__itree_node *node, uint64_t lo,
                         uint64_t hi, size_t *n)
{
    int l, r;

    if (node == NULL) {
        return 0;
    }
    CHECK(node->base >= lo && node->base + (node->len - 1) <= hi);
    l = check_subtree(node->left, lo, node->base - 1, n);
    r = check_subtree(node->right, node->base + node->len, hi, n);
    CHECK(l - r <= 1 && r - l <= 1);
    CHECK_EQ(node->height, 1 + (l > r ? l : r));
    (*n)++;
    return node->height;
}

static void check_tree(const struct hmaf__exposures *ex)
{
    size_t n = 0;

    check_subtree(ex->by_addr.root, 0, UINT64_MAX, &n);
    CHECK_EQ(n, ex->by_addr.n);
    CHECK_EQ(n, ex->by_id.n);
}

/* The reference: live exposures in an array, searched linearly. */
struct model {
    struct hmaf__exposure *v[512];
    size_t n;
    uint64_t ids[4096]; /* every id handed out, live or not */
    size_t nids;
};

static long model_find(const struct model *m, uint64_t addr)
{
    for (size_t i = 0; i < m->n; i++) {
        if (addr >= m->v[i]->iv.base &&
            addr - m->v[i]->iv.base < m->v[i]->iv.len) {
            return (long)i;
        }
    }
    return -1;
}

static int model_overlaps(const struct model *m, uint64_t base, uint64_t len)
{
    for (size_t i = 0; i < m->n; i++) {
        const struct hmaf__itree_node *iv = &m->v[i]->iv;
        if (base <= iv->base + (iv->len - 1) && iv->base <= base + (len - 1)) {
            return 1;
        }
    }
    return 0;
}

static void model_add(struct hmaf__exposures *ex, struct model *m,
                      uint64_t *rng)
{
    uint64_t base = next_rand(rng) % 0x10000, len = 1 + next_rand(rng) % 300;
    struct hmaf__exposure *e = NULL;
    int ret = hmaf__exposure_add(ex, base, len, R, &e);

    if (model_overlaps(m, base, len)) {
        CHECK_ERR(ret, HMAF_EEXIST);
        return;
    }
    CHECK_OK(ret);
    for (size_t i = 0; i < m->nids; i++) {
        CHECK(e->id != m->ids[i]);
    }
    if (m->nids < 4096) {
        m->ids[m->nids++] = e->id;
    }
    m->v[m->n++] = e;
}

static void model_take(struct hmaf__exposures *ex, struct model *m,
                       uint64_t *rng)
{
    size_t i = (size_t)(next_rand(rng) % m->n);
    struct hmaf__exposure *e = m->v[i];

    if (next_rand(rng) % 4 == 0) { /* not exactly its range: nothing */
        CHECK(hmaf__exposure_take(ex, e->iv.base, e->iv.len + 1) == NULL);
        CHECK(hmaf__exposure_take(ex, e->iv.base + 1, e->iv.len) == NULL ||
              e->iv.len == 1);
    }
    CHECK(hmaf__exposure_find(ex, e->iv.base + e->iv.len - 1) == e);
    CHECK(hmaf__exposure_take(ex, e->iv.base, e->iv.len) == e);
    m->v[i] = m->v[--m->n];
    free(e);
}

static void model_lookups(const struct hmaf__exposures *ex,
                          const struct model *m, uint64_t *rng)
{
    for (int k = 0; k < 8; k++) {
        uint64_t addr = next_rand(rng) % 0x10200;
        long i = model_find(m, addr);
        CHECK(hmaf__exposure_find(ex, addr) == (i < 0 ? NULL : m->v[i]));
    }
    for (int k = 0; k < 4 && m->nids > 0; k++) {
        uint64_t id = m->ids[next_rand(rng) % m->nids];
        struct hmaf__exposure *e = hmaf__exposure_find_id(ex, id);
        long live = -1;
        for (size_t i = 0; i < m->n; i++) {
            live = m->v[i]->id == id ? (long)i : live;
        }
        CHECK(e == (live < 0 ? NULL : m->v[live]));
    }
}

/* Random adds, exact takes and lookups against the linear reference. */
static void test_random_against_model(void)
{
    static struct model m;
    struct hmaf__exposures ex = {0};
    uint64_t rng = 0x9e3779b97f4a7c15ull;

    for (int step = 0; step < 40000; step++) {
        uint64_t op = next_rand(&rng) % 8;
        if ((op < 4 && m.n < 512) || m.n == 0) {
            model_add(&ex, &m, &rng);
        } else if (op < 6) {
            model_take(&ex, &m, &rng);
        } else {
            model_lookups(&ex, &m, &rng);
        }
        if (step % 997 == 0) {
            check_tree(&ex);
        }
    }
    check_tree(&ex);
    CHECK_EQ(drain(&ex), (int)m.n);
}

/* 100,000 exposures, added from the top down (as mmap hands out
 * addresses) and taken in a scattered order: the tree stays balanced. */
static void test_many(void)
{
    enum { N = 100000 };
    struct hmaf__exposures ex = {0};
    static struct hmaf__exposure *v[N];
    uint64_t rng = 42;

    for (size_t i = 0; i < N; i++) {
        CHECK_OK(hmaf__exposure_add(&ex, (uint64_t)(N - i) * 0x1000, 0x1000, RW,
                                    &v[i]));
    }
    check_tree(&ex);
    CHECK(ex.by_addr.root->height <= 25); /* 1.44 log2(100,000) */
    for (size_t i = N; i > 1; i--) { /* shuffle */
        size_t j = (size_t)(next_rand(&rng) % i);
        struct hmaf__exposure *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
    for (size_t i = 0; i < N; i++) {
        CHECK(hmaf__exposure_find(&ex, v[i]->iv.base + 0x800) == v[i]);
        CHECK(hmaf__exposure_find_id(&ex, v[i]->id) == v[i]);
        CHECK(hmaf__exposure_take(&ex, v[i]->iv.base, 0x1000) == v[i]);
        free(v[i]);
        if (i % 20000 == 0) {
            check_tree(&ex);
        }
    }
    CHECK_EQ(drain(&ex), 0);
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
    test_random_against_model();
    test_many();
    test_roots_basic();
    test_roots_name_length();
    test_roots_many();
    test_top_of_address_space();
    printf("test_exposure: ok\n");
    return 0;
}
