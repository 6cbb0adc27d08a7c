/*
 * A set of non-overlapping address intervals in a balanced (AVL) tree
 * ordered by base: finding the interval that contains an address,
 * inserting and removing all cost O(log n), whatever order the intervals
 * come and go in. Elements are owned by the caller and embed struct
 * hmaf__itree_node.
 */
#ifndef HMAF_UTIL_ITREE_H
#define HMAF_UTIL_ITREE_H

#include <stddef.h>
#include <stdint.h>

struct hmaf__itree_node {
    uint64_t base;
    uint64_t len; /* > 0; base + len <= UINT64_MAX (callers check) */
    struct hmaf__itree_node *left, *right;
    int height;
};

struct hmaf__itree {
    struct hmaf__itree_node *root;
    size_t n;
};

/* A zeroed struct is an empty set. */
/* The member containing addr, or NULL. */
struct hmaf__itree_node *hmaf__itree_find(const struct hmaf__itree *t,
                                          uint64_t addr);
/* 0; -EEXIST if node (base and len set) overlaps a member. */
int hmaf__itree_insert(struct hmaf__itree *t, struct hmaf__itree_node *node);
/* node is a member. */
void hmaf__itree_remove(struct hmaf__itree *t, struct hmaf__itree_node *node);
/* Some member (the root), or NULL when empty: for teardown. */
struct hmaf__itree_node *hmaf__itree_any(const struct hmaf__itree *t);

#endif
