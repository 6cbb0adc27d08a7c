/*
 * A session's holds on the host (host/holds.c, the hmaf__holds_ part) and
 * the hash table under them (util/hashtab.c), each against a linear
 * reference under random operations.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "host/holds.h"
#include "util/hashtab.h"

static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* --- the hash table ---------------------------------------------------- */

#define KEYS 20000

struct item {
    struct hmaf__hashtab_node node;
    int in; /* the reference: a member or not */
};

static void check_table(const struct hmaf__hashtab *t, struct item *items,
                        size_t n)
{
    size_t members = 0;

    for (size_t i = 0; i < n; i++) {
        struct hmaf__hashtab_node *found =
            hmaf__hashtab_find(t, items[i].node.key[0], items[i].node.key[1]);
        CHECK(found == (items[i].in ? &items[i].node : NULL));
        members += (size_t)items[i].in;
    }
    CHECK_EQ(t->n, members);
}

/* Keys that share either word, so both count; inserts and removes that
 * cross several growths, each moving buckets over while others land. */
static void test_hashtab_random(void)
{
    static struct item items[KEYS];
    struct hmaf__hashtab t = {0};
    uint64_t rng = 7;

    CHECK(hmaf__hashtab_find(&t, 0, 0) == NULL);
    for (size_t i = 0; i < KEYS; i++) {
        items[i].node.key[0] = i / 4;
        items[i].node.key[1] = i % 4 == 3 ? UINT64_MAX : i % 4;
    }
    for (int step = 0; step < 200000; step++) {
        /* more inserts than removes early on, then the other way */
        size_t i = (size_t)(next_rand(&rng) % KEYS);
        int grow =
            step < 120000 ? next_rand(&rng) % 4 != 0 : next_rand(&rng) % 4 == 0;
        if (!items[i].in && grow) {
            CHECK_OK(hmaf__hashtab_insert(&t, &items[i].node));
            items[i].in = 1;
        } else if (items[i].in && !grow) {
            hmaf__hashtab_remove(&t, &items[i].node);
            items[i].in = 0;
        }
        if (step % 20011 == 0) {
            check_table(&t, items, KEYS);
        }
    }
    check_table(&t, items, KEYS);
    hmaf__hashtab_fini(&t);
    CHECK(t.buckets == NULL && t.old == NULL && t.n == 0);
}

/* --- holds ------------------------------------------------------------- */

/* The reference: entries in the order they were made, searched
 * linearly, and how many entries hold each exposure. */
struct ref_hold {
    uint64_t id, epoch, count;
};

struct ref {
    struct ref_hold v[4096];
    size_t n;
    uint64_t ended_before;
    int all_ended;
    uint64_t epoch;   /* the agent's current one */
    long holders[65]; /* per exposure id: entries, from the returns */
};

static int ref_ended(const struct ref *r, const struct ref_hold *h)
{
    return r->all_ended || h->epoch < r->ended_before;
}

static long ref_find(const struct ref *r, uint64_t id, uint64_t epoch)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].id == id && r->v[i].epoch == epoch) {
            return (long)i;
        }
    }
    return -1;
}

static void ref_remove(struct ref *r, size_t i)
{
    memmove(&r->v[i], &r->v[i + 1], (r->n - i - 1) * sizeof(r->v[0]));
    r->n--;
}

static void op_add(struct hmaf__holds *h, struct ref *r, uint64_t *rng)
{
    uint64_t id = 1 + next_rand(rng) % 63;
    long i = ref_find(r, id, r->epoch);
    int ret = hmaf__holds_add(h, id, r->epoch);

    if (r->all_ended) {
        CHECK_ERR(ret, HMAF_EINVAL);
        return;
    }
    CHECK(r->n < sizeof(r->v) / sizeof(r->v[0]));
    if (i >= 0) {
        CHECK_EQ(ret, 0);
        r->v[i].count++;
        return;
    }
    CHECK_EQ(ret, 1);
    r->holders[id]++;
    r->v[r->n++] = (struct ref_hold){id, r->epoch, 1};
}

static void op_drop(struct hmaf__holds *h, struct ref *r, uint64_t *rng)
{
    uint64_t id, epoch;
    long i;
    int ret;

    if (r->n > 0 && next_rand(rng) % 4 != 0) { /* mostly one that exists */
        i = (long)(next_rand(rng) % r->n);
        id = r->v[i].id;
        epoch = r->v[i].epoch;
    } else {
        id = next_rand(rng) % 65;
        epoch = next_rand(rng) % (r->epoch + 2);
        i = ref_find(r, id, epoch);
    }
    ret = hmaf__holds_drop(h, id, epoch);
    if (i < 0 || ref_ended(r, &r->v[i])) {
        CHECK_ERR(ret, HMAF_ENOENT);
    } else if (--r->v[i].count > 0) {
        CHECK_EQ(ret, 0);
    } else {
        CHECK_EQ(ret, 1);
        r->holders[id]--;
        ref_remove(r, (size_t)i);
    }
}

/* Ended entries come off oldest first; the first one that has not ended
 * stops it. */
static void op_pop(struct hmaf__holds *h, struct ref *r, uint64_t *rng)
{
    uint64_t id = 0;
    int pops = (int)(next_rand(rng) % 8);

    for (int k = 0; k < pops; k++) {
        int ret = hmaf__holds_pop_ended(h, &id);
        if (r->n == 0 || !ref_ended(r, &r->v[0])) {
            CHECK_EQ(ret, 0);
            return;
        }
        CHECK_EQ(ret, 1);
        CHECK_EQ(id, r->v[0].id);
        r->holders[id]--;
        ref_remove(r, 0);
    }
}

static void op_epoch(struct hmaf__holds *h, struct ref *r, uint64_t *rng)
{
    uint64_t ack;

    switch (next_rand(rng) % 4) {
    case 0: /* a revocation */
        r->epoch++;
        break;
    case 1: /* an ack, of any epoch announced so far */
        ack = next_rand(rng) % (r->epoch + 1);
        hmaf__holds_end_before(h, ack);
        r->ended_before = ack > r->ended_before ? ack : r->ended_before;
        break;
    default: /* an ended epoch; a new entry older than the newest */
        if (r->ended_before > 0) {
            CHECK_ERR(hmaf__holds_add(h, 1 + next_rand(rng) % 63,
                                      r->ended_before - 1),
                      HMAF_EINVAL);
        }
        if (r->n > 0 && r->v[r->n - 1].epoch > 0) {
            CHECK_ERR(hmaf__holds_add(h, 64, r->v[r->n - 1].epoch - 1),
                      HMAF_EINVAL);
        }
        break;
    }
}

static void check_holds(const struct hmaf__holds *h, const struct ref *r)
{
    const struct hmaf__hold *hold = h->oldest;

    for (size_t i = 0; i < r->n; i++, hold = hold->next) {
        CHECK(hold != NULL);
        CHECK_EQ(hold->node.key[0], r->v[i].id);
        CHECK_EQ(hold->node.key[1], r->v[i].epoch);
        CHECK_EQ(hold->count, r->v[i].count);
    }
    CHECK(hold == NULL);
    CHECK_EQ(h->by_key.n, r->n);
    CHECK_EQ(hmaf__holds_empty(h), r->n == 0);
}

/* Whatever happens, each exposure's holders come back to zero: every
 * entry made (1 from add) ends once (1 from drop, or a pop). */
static void end_and_pop_all(struct hmaf__holds *h, struct ref *r)
{
    uint64_t id;

    hmaf__holds_end_all(h);
    r->all_ended = 1;
    CHECK_ERR(hmaf__holds_add(h, 1, r->epoch), HMAF_EINVAL);
    CHECK_ERR(hmaf__holds_drop(h, 1, r->epoch), HMAF_ENOENT);
    while (hmaf__holds_pop_ended(h, &id)) {
        CHECK(r->n > 0);
        CHECK_EQ(id, r->v[0].id);
        r->holders[id]--;
        ref_remove(r, 0);
    }
    CHECK_EQ(r->n, 0);
    for (int i = 0; i < 65; i++) {
        CHECK_EQ(r->holders[i], 0);
    }
    check_holds(h, r);
}

static void test_holds_random(unsigned long seed)
{
    static struct ref r;
    struct hmaf__holds h = {0};
    uint64_t rng = seed;

    memset(&r, 0, sizeof(r));
    for (int step = 0; step < 20000; step++) {
        switch (next_rand(&rng) % 8) {
        case 0:
        case 1:
        case 2:
            op_add(&h, &r, &rng);
            break;
        case 3:
        case 4:
            op_drop(&h, &r, &rng);
            break;
        case 5:
        case 6:
            op_pop(&h, &r, &rng);
            break;
        default:
            op_epoch(&h, &r, &rng);
            break;
        }
        if (step % 101 == 0) {
            check_holds(&h, &r);
        }
    }
    check_holds(&h, &r);
    end_and_pop_all(&h, &r);
    hmaf__holds_fini(&h);
}

/* 100,000 holds end at once, then come off one at a time; a hold made in
 * the new epoch meanwhile stays. fini frees what was never popped. */
static void test_holds_many(void)
{
    enum { N = 100000 };
    struct hmaf__holds h = {0};
    uint64_t id;
    size_t popped = 0;

    for (uint64_t i = 1; i <= N; i++) {
        CHECK_EQ(hmaf__holds_add(&h, i, 1), 1);
    }
    CHECK_EQ(hmaf__holds_add(&h, 7, 1), 0);
    hmaf__holds_end_before(&h, 2);
    CHECK_EQ(hmaf__holds_add(&h, 7, 2), 1);
    CHECK_ERR(hmaf__holds_drop(&h, 7, 1), HMAF_ENOENT);
    while (hmaf__holds_pop_ended(&h, &id)) {
        CHECK_EQ(id, ++popped);
    }
    CHECK_EQ(popped, N);
    CHECK_EQ(hmaf__holds_drop(&h, 7, 2), 1);
    CHECK(hmaf__holds_empty(&h));
    for (uint64_t i = 1; i <= N; i++) {
        CHECK_EQ(hmaf__holds_add(&h, i, 3), 1);
    }
    hmaf__holds_fini(&h);
    CHECK(hmaf__holds_empty(&h));
}

int main(int argc, char **argv)
{
    unsigned long seed = argc > 1 ? strtoul(argv[1], NULL, 0) : 1;

    test_hashtab_random();
    for (unsigned long k = 0; k < 20; k++) {
        test_holds_random(seed + k * 0x9e3779b9ul);
    }
    test_holds_many();
    printf("test_holds: ok\n");
    return 0;
}
