#include "util/hashtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_BUCKETS 16
/* Old buckets moved per insert and per remove. Growth starts when the
 * elements are as many as the old buckets and the next one when they are
 * twice that: the move is over long before (a quarter of the way). */
#define MOVES_PER_CALL 4

/* splitmix64's finaliser: sequential ids spread over every bucket. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t hash(uint64_t k0, uint64_t k1)
{
    return mix(k0 ^ mix(k1 + 0x9e3779b97f4a7c15ull));
}

/* Where a key's element is: in the old buckets until its bucket moved.
 * Each key has exactly one such place, so inserts go there too. */
static struct hmaf__hashtab_node **chain(const struct hmaf__hashtab *t,
                                         uint64_t h)
{
    if (t->old != NULL && (h & (t->nold - 1)) >= t->moved) {
        return &t->old[h & (t->nold - 1)];
    }
    return &t->buckets[h & (t->nbuckets - 1)];
}

static void move_bucket(struct hmaf__hashtab *t)
{
    struct hmaf__hashtab_node *node = t->old[t->moved];

    t->old[t->moved++] = NULL;
    while (node != NULL) {
        struct hmaf__hashtab_node *next = node->next;
        struct hmaf__hashtab_node **b =
            &t->buckets[hash(node->key[0], node->key[1]) & (t->nbuckets - 1)];
        node->next = *b;
        *b = node;
        node = next;
    }
}

static void move_some(struct hmaf__hashtab *t, size_t count)
{
    for (; t->old != NULL && count > 0; count--) {
        move_bucket(t);
        if (t->moved == t->nold) {
            free(t->old);
            t->old = NULL;
            t->nold = 0;
            t->moved = 0;
        }
    }
}

/* Twice the buckets once there are as many elements; the old ones move
 * over with the calls that follow. */
static int grow(struct hmaf__hashtab *t)
{
    size_t n = t->nbuckets == 0 ? FIRST_BUCKETS : t->nbuckets * 2;
    struct hmaf__hashtab_node **v;

    if (t->n < t->nbuckets) {
        return 0;
    }
    move_some(t, SIZE_MAX); /* a move still under way: never, see above */
    v = calloc(n, sizeof(*v));
    if (v == NULL) {
        return t->nbuckets == 0 ? -ENOMEM : 0;
    }
    t->old = t->buckets;
    t->nold = t->buckets == NULL ? 0 : t->nbuckets;
    t->moved = 0;
    t->buckets = v;
    t->nbuckets = n;
    return 0;
}

struct hmaf__hashtab_node *hmaf__hashtab_find(const struct hmaf__hashtab *t,
                                              uint64_t k0, uint64_t k1)
{
    struct hmaf__hashtab_node *node;

    if (t->nbuckets == 0) {
        return NULL;
    }
    for (node = *chain(t, hash(k0, k1)); node != NULL; node = node->next) {
        if (node->key[0] == k0 && node->key[1] == k1) {
            return node;
        }
    }
    return NULL;
}

int hmaf__hashtab_insert(struct hmaf__hashtab *t,
                         struct hmaf__hashtab_node *node)
{
    struct hmaf__hashtab_node **b;
    int ret = grow(t);

    if (ret < 0) {
        return ret;
    }
    move_some(t, MOVES_PER_CALL);
    b = chain(t, hash(node->key[0], node->key[1]));
    node->next = *b;
    *b = node;
    t->n++;
    return 0;
}

void hmaf__hashtab_remove(struct hmaf__hashtab *t,
                          struct hmaf__hashtab_node *node)
{
    struct hmaf__hashtab_node **p = chain(t, hash(node->key[0], node->key[1]));

    while (*p != node) {
        p = &(*p)->next;
    }
    *p = node->next;
    t->n--;
    move_some(t, MOVES_PER_CALL);
}

void hmaf__hashtab_fini(struct hmaf__hashtab *t)
{
    free(t->buckets);
    free(t->old);
    memset(t, 0, sizeof(*t));
}
