/*
 * A hash table of caller-owned elements that embed struct
 * hmaf__hashtab_node, keyed by two 64-bit words. Find, insert and remove
 * cost O(1) on average, and so does growth: the table doubles when it
 * holds as many elements as buckets, and moves the old buckets over a few
 * at a time with each insert and remove, so no single call rehashes the
 * whole table (the host agent serves other sessions between calls).
 */
#ifndef HMAF_UTIL_HASHTAB_H
#define HMAF_UTIL_HASHTAB_H

#include <stddef.h>
#include <stdint.h>

struct hmaf__hashtab_node {
    struct hmaf__hashtab_node *next; /* in its bucket */
    uint64_t key[2];
};

struct hmaf__hashtab {
    struct hmaf__hashtab_node **buckets; /* a power of two of them */
    size_t nbuckets;
    struct hmaf__hashtab_node **old; /* being moved into buckets, or NULL */
    size_t nold;
    size_t moved; /* old[0, moved) are empty */
    size_t n;     /* elements */
};

/* A zeroed struct is an empty table. */
struct hmaf__hashtab_node *hmaf__hashtab_find(const struct hmaf__hashtab *t,
                                              uint64_t k0, uint64_t k1);
/* node->key set, and no member has that key. 0; -ENOMEM (only while the
 * table has no buckets yet: a failed growth just leaves it fuller). */
int hmaf__hashtab_insert(struct hmaf__hashtab *t,
                         struct hmaf__hashtab_node *node);
/* node is a member. */
void hmaf__hashtab_remove(struct hmaf__hashtab *t,
                          struct hmaf__hashtab_node *node);
/* Frees the buckets, not the elements; the table is empty again. */
void hmaf__hashtab_fini(struct hmaf__hashtab *t);

#endif
