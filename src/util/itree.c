#include "util/itree.h"

#include <errno.h>

/* Recursion is as deep as the tree is high: at most 1.44 log2(n + 2),
 * under 100 levels for any n that fits in memory. */

static int height(const struct hmaf__itree_node *n)
{
    return n == NULL ? 0 : n->height;
}

static void update(struct hmaf__itree_node *n)
{
    int l = height(n->left), r = height(n->right);

    n->height = 1 + (l > r ? l : r);
}

static struct hmaf__itree_node *rotate_right(struct hmaf__itree_node *n)
{
    struct hmaf__itree_node *l = n->left;

    n->left = l->right;
    l->right = n;
    update(n);
    update(l);
    return l;
}

static struct hmaf__itree_node *rotate_left(struct hmaf__itree_node *n)
{
    struct hmaf__itree_node *r = n->right;

    n->right = r->left;
    r->left = n;
    update(n);
    update(r);
    return r;
}

/* n's subtrees are balanced and differ in height by 2 at most. */
static struct hmaf__itree_node *rebalance(struct hmaf__itree_node *n)
{
    int balance = height(n->left) - height(n->right);

    if (balance > 1) {
        if (height(n->left->left) < height(n->left->right)) {
            n->left = rotate_left(n->left);
        }
        return rotate_right(n);
    }
    if (balance < -1) {
        if (height(n->right->right) < height(n->right->left)) {
            n->right = rotate_right(n->right);
        }
        return rotate_left(n);
    }
    update(n);
    return n;
}

static struct hmaf__itree_node *insert_under(struct hmaf__itree_node *root,
                                             struct hmaf__itree_node *node)
{
    if (root == NULL) {
        return node;
    }
    if (node->base < root->base) {
        root->left = insert_under(root->left, node);
    } else {
        root->right = insert_under(root->right, node);
    }
    return rebalance(root);
}

static struct hmaf__itree_node *take_min(struct hmaf__itree_node *root,
                                         struct hmaf__itree_node **min_out)
{
    if (root->left == NULL) {
        *min_out = root;
        return root->right;
    }
    root->left = take_min(root->left, min_out);
    return rebalance(root);
}

/* Bases are unique, so the way down to node is found by base. */
static struct hmaf__itree_node *remove_under(struct hmaf__itree_node *root,
                                             struct hmaf__itree_node *node)
{
    struct hmaf__itree_node *next;

    if (root == node) {
        if (node->right == NULL) {
            return node->left;
        }
        node->right = take_min(node->right, &next);
        next->left = node->left;
        next->right = node->right;
        return rebalance(next);
    }
    if (node->base < root->base) {
        root->left = remove_under(root->left, node);
    } else {
        root->right = remove_under(root->right, node);
    }
    return rebalance(root);
}

/* The member with the greatest base <= addr, or NULL. */
static struct hmaf__itree_node *floor_of(const struct hmaf__itree *t,
                                         uint64_t addr)
{
    struct hmaf__itree_node *n = t->root, *best = NULL;

    while (n != NULL) {
        if (n->base <= addr) {
            best = n;
            n = n->right;
        } else {
            n = n->left;
        }
    }
    return best;
}

/* The member with the smallest base > addr, or NULL. */
static struct hmaf__itree_node *above(const struct hmaf__itree *t,
                                      uint64_t addr)
{
    struct hmaf__itree_node *n = t->root, *best = NULL;

    while (n != NULL) {
        if (n->base > addr) {
            best = n;
            n = n->left;
        } else {
            n = n->right;
        }
    }
    return best;
}

struct hmaf__itree_node *hmaf__itree_find(const struct hmaf__itree *t,
                                          uint64_t addr)
{
    struct hmaf__itree_node *n = floor_of(t, addr);

    return n != NULL && addr - n->base < n->len ? n : NULL;
}

int hmaf__itree_insert(struct hmaf__itree *t, struct hmaf__itree_node *node)
{
    struct hmaf__itree_node *before = floor_of(t, node->base);
    struct hmaf__itree_node *after = above(t, node->base);

    /* Compare last bytes, not ends: an end of exactly 2^64 would wrap. */
    if ((before != NULL && before->base + (before->len - 1) >= node->base) ||
        (after != NULL && node->base + (node->len - 1) >= after->base)) {
        return -EEXIST;
    }
    node->left = NULL;
    node->right = NULL;
    node->height = 1;
    t->root = insert_under(t->root, node);
    t->n++;
    return 0;
}

void hmaf__itree_remove(struct hmaf__itree *t, struct hmaf__itree_node *node)
{
    t->root = remove_under(t->root, node);
    t->n--;
}

struct hmaf__itree_node *hmaf__itree_any(const struct hmaf__itree *t)
{
    return t->root;
}
