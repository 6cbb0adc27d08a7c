#include "core/regcache.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>

#include "util/compiler.h"

#ifdef HMAF_ASAN
/* A spare node is poisoned: a reader that reached one is reported as if
 * it had been freed. */
#include <sanitizer/asan_interface.h>
#define rc_poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define rc_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define rc_poison(p, n)   ((void)(p), (void)(n))
#define rc_unpoison(p, n) ((void)(p), (void)(n))
#endif

/* A node's keys come in groups of four, each group one cache line. The
 * node's first line holds the first key of each group but the first, so a
 * search reads two lines of a node (its first, and the group's),
 * branch-free and without looking at a count: the levels near the leaves
 * are the ones a lookup among many regions finds cold. */
#define RC_GROUP  4
#define RC_GROUPS 8
#define RC_FANOUT (RC_GROUP * RC_GROUPS)
/* Above every base a region can have (base + len <= UINT64_MAX, len > 0):
 * pads a node's keys, so the search never looks at how many it has. */
#define RC_NO_KEY UINT64_MAX
/* Deeper than any tree gets: a node splits only when full, so a tree of
 * height h holds more than 16^(h-2) regions. */
#define RC_HEIGHT_MAX 24
/* Replaced nodes wait for a grace period in batches of this many, so an
 * insert pays for one only now and then. */
#define RC_RETIRE_BATCH 512
/* Nodes come in slabs and go back to the cache's spares, not to the
 * allocator: an insert copies a few nodes, and aligned allocations that
 * come and go that often fragment the heap. Inner nodes and leaves have
 * slabs of their own: the few inner nodes then lie on a few pages, whose
 * translations and lines stay warm, instead of one page each among the
 * leaves. A slab of either is 10 or 16 whole pages. */
#define RC_PAGE        4096
#define RC_SLAB_INNERS 64
#define RC_SLAB_LEAVES 32
/* A leaf takes half a page, aligned: the lines a hit reads are on one
 * page, a single page walk after a system call flushed the TLB. */
#define RC_LEAF_SIZE 2048
/* An insert past a bound evicts down to 7/8 of it: the scan for least
 * recently used regions, the rebuild, the grace period and the caller's
 * DEREGISTER are paid once per eighth of the cache, not per miss. */
#define RC_EVICT_SHARE 8

/* What both kinds of node begin with: one line. */
struct hmaf__rc_node {
    uint32_t level; /* 0: a leaf (struct rc_leaf), else struct rc_inner */
    uint32_t n;
    uint64_t fence[RC_GROUPS - 1]; /* the first key of group j + 1 */
} __attribute__((aligned(HMAF_CACHELINE)));

struct rc_entry {
    uint64_t key; /* the smallest base under child */
    struct hmaf__rc_node *child;
};

struct rc_inner {
    struct hmaf__rc_node head;
    struct rc_entry e[RC_FANOUT]; /* keys ascending, RC_NO_KEY from n on */
    struct hmaf__rc_node *next_retired; /* never read by readers */
};

/* A group of a leaf's regions: bases (ascending, RC_NO_KEY from n on)
 * beside lengths (0 from n on), so the line that finds a region also
 * tells whether it holds the address. */
struct rc_keys {
    uint64_t base[RC_GROUP];
    uint64_t len[RC_GROUP];
};

/* What a hit needs of a region besides its range, copied from it at
 * insert (its fields never change while it is cached), so that a hit
 * never touches the region itself: at 100,000 regions that would be one
 * more cold page. */
struct rc_slot {
    struct hmaf_engine_rmem *rmem;
    struct hmaf__region *region;
    _Atomic uint64_t used; /* a lookup through the tree stamps it here */
    uint64_t access;
};

struct rc_leaf {
    struct hmaf__rc_node head;
    struct rc_keys g[RC_GROUPS];
    struct rc_slot s[RC_FANOUT];
    struct hmaf__rc_node *next_retired; /* never read by readers */
} __attribute__((aligned(RC_LEAF_SIZE)));

_Static_assert(offsetof(struct rc_inner, e) == HMAF_CACHELINE &&
                   sizeof(struct rc_entry) * RC_GROUP == HMAF_CACHELINE &&
                   sizeof(struct rc_keys) == HMAF_CACHELINE,
               "the fences fill the first line, each group one line");
_Static_assert(sizeof(struct rc_leaf) == RC_LEAF_SIZE &&
                   offsetof(struct rc_leaf, s) % HMAF_CACHELINE == 0 &&
                   sizeof(struct rc_slot) * 2 == HMAF_CACHELINE,
               "a leaf: half a page; a group's slots: two lines");
_Static_assert(RC_GROUPS == 8 && RC_GROUP == 4, "fence_rank's steps");
_Static_assert(sizeof(struct rc_inner) * RC_SLAB_INNERS % RC_PAGE == 0,
               "inner slabs of whole pages");

/* Slabs, in a list of their own: a slab is pages of nodes only. */
struct hmaf__rc_slab {
    struct hmaf__rc_slab *next;
    void *nodes;
    size_t size;
};

/* A node's entries being edited, one more than a node holds. */
struct entries {
    unsigned n;
    uint64_t key[RC_FANOUT + 1];
    void *ptr[RC_FANOUT + 1];     /* regions in a leaf, else children */
    uint64_t used[RC_FANOUT + 1]; /* a leaf's stamps */
};

/* Generation 0 is never used: a fresh reader's hint_gen matches nothing. */
static _Atomic uint64_t next_gen = 1;

static inline const struct rc_inner *inner_of(const struct hmaf__rc_node *node)
{
    return (const struct rc_inner *)node;
}

static inline const struct rc_leaf *leaf_of(const struct hmaf__rc_node *node)
{
    return (const struct rc_leaf *)node;
}

/* How many of the node's groups after the first start at or below addr. */
static inline unsigned fence_rank(const struct hmaf__rc_node *node,
                                  uint64_t addr)
{
    const uint64_t *f = node->fence;
    unsigned g = 0;

    g += f[g + 3] <= addr ? 4 : 0;
    g += f[g + 1] <= addr ? 2 : 0;
    g += f[g] <= addr ? 1 : 0;
    return g;
}

/* How many of an inner node's keys are <= addr (addr < RC_NO_KEY). */
static inline unsigned inner_rank(const struct rc_inner *node, uint64_t addr)
{
    unsigned g = fence_rank(&node->head, addr);
    const struct rc_entry *grp = &node->e[RC_GROUP * g];

    return RC_GROUP * g + (grp[0].key <= addr) + (grp[1].key <= addr) +
           (grp[2].key <= addr) + (grp[3].key <= addr);
}

/* The same for a leaf. */
static inline unsigned leaf_rank(const struct rc_leaf *leaf, uint64_t addr)
{
    unsigned g = fence_rank(&leaf->head, addr);
    const uint64_t *base = leaf->g[g].base;

    return RC_GROUP * g + (base[0] <= addr) + (base[1] <= addr) +
           (base[2] <= addr) + (base[3] <= addr);
}

static inline uint64_t leaf_base(const struct rc_leaf *leaf, unsigned i)
{
    return leaf->g[i / RC_GROUP].base[i % RC_GROUP];
}

static inline uint64_t leaf_len(const struct rc_leaf *leaf, unsigned i)
{
    return leaf->g[i / RC_GROUP].len[i % RC_GROUP];
}

/* Among many regions the nodes below the root are cold: a child's lines
 * are asked for all at once, as soon as its address is known, so that
 * they miss in parallel rather than one after another as the search
 * reads them (its fences, then a group, then a leaf's slot). */
static inline void node_fetch(const struct hmaf__rc_node *node,
                              unsigned level)
{
    const char *at = (const char *)node;
    size_t size = level == 0 ? offsetof(struct rc_leaf, next_retired)
                             : offsetof(struct rc_inner, next_retired);

    for (size_t off = 0; off < size; off += HMAF_CACHELINE) {
        __builtin_prefetch(at + off);
    }
}

/* The leaf that the region with the greatest base <= addr would be in,
 * and that region's index there (*i_out); NULL when there is none. */
static const struct rc_leaf *predecessor(const struct hmaf__rc_node *node,
                                         uint64_t addr, unsigned *i_out)
{
    unsigned i;

    if (addr == RC_NO_KEY) {
        addr--; /* no region starts there: the same answer */
    }
    while (node->level > 0) {
        const struct rc_inner *inner = inner_of(node);
        i = inner_rank(inner, addr);
        if (i == 0) {
            return NULL;
        }
        node = inner->e[i - 1].child;
        node_fetch(node, inner->head.level - 1);
    }
    i = leaf_rank(leaf_of(node), addr);
    if (i == 0) {
        return NULL;
    }
    *i_out = i - 1;
    return leaf_of(node);
}

struct hmaf__region *hmaf__regcache_find(struct hmaf__regcache *rc,
                                         uint64_t addr, uint64_t now,
                                         struct hmaf__rc_hit *hit_out)
{
    const struct hmaf__rc_node *root =
        atomic_load_explicit(&rc->root, memory_order_acquire);
    unsigned i;
    const struct rc_leaf *leaf = predecessor(root, addr, &i);
    struct rc_slot *slot;
    uint64_t base, len;

    if (leaf == NULL) {
        return NULL;
    }
    base = leaf_base(leaf, i);
    len = leaf_len(leaf, i);
    if (addr - base >= len) {
        return NULL;
    }
    slot = (struct rc_slot *)&leaf->s[i];
    hmaf__regcache_stamp(&slot->used, now);
    hit_out->base = base;
    hit_out->len = len;
    hit_out->rmem = slot->rmem;
    hit_out->access = (unsigned)slot->access;
    hit_out->region = slot->region;
    return slot->region;
}

/* ---- nodes ---- */

/* What a spare node keeps readable: its link among the spares (its
 * level is poisoned too: a spare's list tells its kind). */
static size_t node_body(unsigned level)
{
    return level == 0 ? offsetof(struct rc_leaf, next_retired)
                      : offsetof(struct rc_inner, next_retired);
}

static struct hmaf__rc_node **node_link(struct hmaf__rc_node *node)
{
    return node->level == 0 ? &((struct rc_leaf *)node)->next_retired
                            : &((struct rc_inner *)node)->next_retired;
}

static struct hmaf__rc_node **spares_of(struct hmaf__regcache *rc,
                                        unsigned level)
{
    return level == 0 ? &rc->spare_leaves : &rc->spare;
}

static void node_free(struct hmaf__regcache *rc, struct hmaf__rc_node *node)
{
    struct hmaf__rc_node **spares = spares_of(rc, node->level);

    *node_link(node) = *spares;
    *spares = node;
    rc_poison(node, node_body(node->level));
}

static void free_slabs(struct hmaf__regcache *rc)
{
    while (rc->slabs != NULL) { /* no reader: every node at once */
        struct hmaf__rc_slab *next = rc->slabs->next;
        rc_unpoison(rc->slabs->nodes, rc->slabs->size);
        free(rc->slabs->nodes);
        free(rc->slabs);
        rc->slabs = next;
    }
}

/* A slab of nodes of level 0 (leaves) or above, page-aligned. */
static int add_slab(struct hmaf__regcache *rc, unsigned level)
{
    size_t count = level == 0 ? RC_SLAB_LEAVES : RC_SLAB_INNERS;
    size_t each = level == 0 ? sizeof(struct rc_leaf) : sizeof(struct rc_inner);
    struct hmaf__rc_slab *slab = malloc(sizeof(*slab));
    char *nodes = aligned_alloc(RC_PAGE, count * each);

    if (slab == NULL || nodes == NULL) {
        free(slab);
        free(nodes);
        return HMAF_ENOMEM;
    }
    *slab = (struct hmaf__rc_slab){rc->slabs, nodes, count * each};
    rc->slabs = slab;
    for (size_t i = count; i-- > 0;) {
        struct hmaf__rc_node *node = (struct hmaf__rc_node *)(nodes + i * each);
        node->level = level; /* which spares, and which link */
        node_free(rc, node);
    }
    return 0;
}

static void inner_clear(struct rc_inner *inner)
{
    for (unsigned i = 0; i < RC_FANOUT; i++) {
        inner->e[i] = (struct rc_entry){RC_NO_KEY, NULL};
    }
    inner->next_retired = NULL;
}

static void leaf_clear(struct rc_leaf *leaf)
{
    for (unsigned j = 0; j < RC_GROUPS; j++) {
        for (unsigned k = 0; k < RC_GROUP; k++) {
            leaf->g[j].base[k] = RC_NO_KEY;
            leaf->g[j].len[k] = 0;
        }
    }
    for (unsigned i = 0; i < RC_FANOUT; i++) {
        leaf->s[i].rmem = NULL;
        leaf->s[i].region = NULL;
        atomic_init(&leaf->s[i].used, 0);
        leaf->s[i].access = 0;
    }
    leaf->next_retired = NULL;
}

/* An empty node, from the spares; writers only (under the lock). */
static struct hmaf__rc_node *node_alloc(struct hmaf__regcache *rc,
                                        unsigned level)
{
    struct hmaf__rc_node **spares = spares_of(rc, level);
    struct hmaf__rc_node *node;

    if (*spares == NULL && add_slab(rc, level) < 0) {
        return NULL;
    }
    node = *spares;
    rc_unpoison(node, node_body(level));
    *spares = *node_link(node);
    node->level = level;
    node->n = 0;
    for (unsigned j = 0; j < RC_GROUPS - 1; j++) {
        node->fence[j] = RC_NO_KEY;
    }
    if (level == 0) {
        leaf_clear((struct rc_leaf *)node);
    } else {
        inner_clear((struct rc_inner *)node);
    }
    return node;
}

/* Nodes are filled in order before they are published, never after. A
 * leaf's ptr is a region, whose range, rmem and access it copies, and
 * used its stamp; an inner node's is a child. */
static void node_push(struct hmaf__rc_node *node, uint64_t key, void *ptr,
                      uint64_t used)
{
    unsigned i = node->n++;

    if (i > 0 && i % RC_GROUP == 0) {
        node->fence[i / RC_GROUP - 1] = key;
    }
    if (node->level == 0) {
        struct rc_leaf *leaf = (struct rc_leaf *)node;
        struct hmaf__region *r = ptr;
        leaf->g[i / RC_GROUP].base[i % RC_GROUP] = key;
        leaf->g[i / RC_GROUP].len[i % RC_GROUP] = r->iv.len;
        leaf->s[i].rmem = r->rmem;
        leaf->s[i].region = r;
        atomic_init(&leaf->s[i].used, used);
        leaf->s[i].access = r->access;
    } else {
        ((struct rc_inner *)node)->e[i] = (struct rc_entry){key, ptr};
    }
}

static uint64_t node_first_key(const struct hmaf__rc_node *node)
{
    return node->level == 0 ? leaf_base(leaf_of(node), 0)
                            : inner_of(node)->e[0].key;
}

static void free_tree(struct hmaf__regcache *rc, struct hmaf__rc_node *node)
{
    for (unsigned i = 0; node->level > 0 && i < node->n; i++) {
        free_tree(rc, inner_of(node)->e[i].child);
    }
    node_free(rc, node);
}

/* A leaf's region's last use: the later of its stamp in the leaf and its
 * own (the insert's, or those the leaf it was rebuilt from had). */
static uint64_t slot_used(const struct rc_slot *slot)
{
    uint64_t in_leaf = atomic_load_explicit(&slot->used, memory_order_relaxed);
    uint64_t own =
        atomic_load_explicit(&slot->region->last_used, memory_order_relaxed);

    return HMAF_MAX(in_leaf, own);
}

static void entries_of(const struct hmaf__rc_node *node, struct entries *e)
{
    e->n = node->n;
    for (unsigned i = 0; i < node->n; i++) {
        if (node->level == 0) {
            e->key[i] = leaf_base(leaf_of(node), i);
            e->ptr[i] = leaf_of(node)->s[i].region;
            e->used[i] = slot_used(&leaf_of(node)->s[i]);
        } else {
            e->key[i] = inner_of(node)->e[i].key;
            e->ptr[i] = inner_of(node)->e[i].child;
            e->used[i] = 0;
        }
    }
}

static void entries_insert(struct entries *e, unsigned at, uint64_t key,
                           void *ptr, uint64_t used)
{
    memmove(&e->key[at + 1], &e->key[at], (e->n - at) * sizeof(e->key[0]));
    memmove(&e->ptr[at + 1], &e->ptr[at], (e->n - at) * sizeof(e->ptr[0]));
    memmove(&e->used[at + 1], &e->used[at], (e->n - at) * sizeof(e->used[0]));
    e->key[at] = key;
    e->ptr[at] = ptr;
    e->used[at] = used;
    e->n++;
}

/*
 * New nodes holding e: one, or two when e is one too many. A split after
 * an append keeps the left node full, so regions registered in address
 * order leave full leaves behind, not half-empty ones.
 */
static int nodes_of(struct hmaf__regcache *rc, const struct entries *e,
                    unsigned level, int appended,
                    struct hmaf__rc_node **left_out,
                    struct hmaf__rc_node **right_out)
{
    unsigned nleft = e->n <= RC_FANOUT ? e->n : appended ? RC_FANOUT : e->n / 2;
    struct hmaf__rc_node *left = node_alloc(rc, level);
    struct hmaf__rc_node *right = NULL;

    if (left != NULL && nleft < e->n) {
        right = node_alloc(rc, level);
        if (right == NULL) {
            node_free(rc, left);
            left = NULL;
        }
    }
    if (left == NULL) {
        return HMAF_ENOMEM;
    }
    for (unsigned i = 0; i < e->n; i++) {
        node_push(i < nleft ? left : right, e->key[i], e->ptr[i], e->used[i]);
    }
    *left_out = left;
    *right_out = right;
    return 0;
}

/* ---- insert: copy the path to the leaf ---- */

struct path {
    unsigned depth;
    const struct hmaf__rc_node *node[RC_HEIGHT_MAX];
    unsigned at[RC_HEIGHT_MAX]; /* the child taken; a leaf: where key goes */
};

static void descend(const struct hmaf__rc_node *node, uint64_t key,
                    struct path *p)
{
    p->depth = 0;
    while (node->level > 0) {
        unsigned i = inner_rank(inner_of(node), key);
        i = i == 0 ? 0 : i - 1; /* a new smallest key goes to child 0 */
        p->node[p->depth] = node;
        p->at[p->depth++] = i;
        node = inner_of(node)->e[i].child;
    }
    p->node[p->depth] = node;
    p->at[p->depth++] = leaf_rank(leaf_of(node), key);
}

/* Nodes made for a new path, freed again if it cannot be finished. */
struct fresh {
    unsigned n;
    struct hmaf__rc_node *node[2 * RC_HEIGHT_MAX + 1];
};

static int fresh_nodes(struct hmaf__regcache *rc, struct fresh *f,
                       const struct entries *e, unsigned level, int appended,
                       struct hmaf__rc_node **left_out,
                       struct hmaf__rc_node **right_out)
{
    int ret = nodes_of(rc, e, level, appended, left_out, right_out);

    if (ret == 0) {
        f->node[f->n++] = *left_out;
        if (*right_out != NULL) {
            f->node[f->n++] = *right_out;
        }
    }
    return ret;
}

/* Copies of the path's nodes, bottom up, with r added: the new root. */
static int copy_path(struct hmaf__regcache *rc, const struct path *p,
                     struct hmaf__region *r, struct fresh *f,
                     struct hmaf__rc_node **root_out)
{
    const struct hmaf__rc_node *leaf = p->node[p->depth - 1];
    unsigned at = p->at[p->depth - 1];
    struct hmaf__rc_node *left, *right;
    struct entries e;
    int ret;

    entries_of(leaf, &e);
    entries_insert(&e, at, r->iv.base, r,
                   atomic_load_explicit(&r->last_used, memory_order_relaxed));
    ret = fresh_nodes(rc, f, &e, 0, at == leaf->n, &left, &right);
    for (unsigned d = p->depth - 1; ret == 0 && d-- > 0;) {
        const struct hmaf__rc_node *parent = p->node[d];
        unsigned c = p->at[d];
        entries_of(parent, &e);
        e.key[c] = node_first_key(left);
        e.ptr[c] = left;
        if (right != NULL) {
            entries_insert(&e, c + 1, node_first_key(right), right, 0);
        }
        ret = fresh_nodes(rc, f, &e, parent->level,
                          right != NULL && c + 1 == parent->n, &left, &right);
    }
    if (ret == 0 && right != NULL) { /* the root split: one level more */
        e = (struct entries){
            2, {node_first_key(left), node_first_key(right)}, {left, right},
            {0}};
        ret = p->depth + 1 < RC_HEIGHT_MAX
                  ? fresh_nodes(rc, f, &e, left->level + 1, 0, &left, &right)
                  : HMAF_ENOMEM;
    }
    *root_out = left;
    return ret;
}

static void retire(struct hmaf__regcache *rc, const struct hmaf__rc_node *c)
{
    struct hmaf__rc_node *node = (struct hmaf__rc_node *)c;

    *node_link(node) = rc->retired;
    rc->retired = node;
    rc->nretired++;
}

/* After a grace period: no reader can be on a retired node. */
static void free_retired(struct hmaf__regcache *rc)
{
    while (rc->retired != NULL) {
        struct hmaf__rc_node *next = *node_link(rc->retired);
        node_free(rc, rc->retired);
        rc->retired = next;
    }
    rc->nretired = 0;
}

static void publish(struct hmaf__regcache *rc, struct hmaf__rc_node *root,
                    size_t count, uint64_t bytes)
{
    atomic_store_explicit(&rc->root, root, memory_order_release);
    atomic_store_explicit(&rc->count, count, memory_order_relaxed);
    atomic_store_explicit(&rc->bytes, bytes, memory_order_relaxed);
}

static int insert_path_copy(struct hmaf__regcache *rc, struct hmaf__region *r)
{
    const struct hmaf__rc_node *root = atomic_load(&rc->root);
    struct hmaf__rc_node *new_root;
    struct fresh fresh = {0};
    struct path path;
    int ret;

    descend(root, r->iv.base, &path);
    ret = copy_path(rc, &path, r, &fresh, &new_root);
    if (ret < 0) {
        for (unsigned i = 0; i < fresh.n; i++) {
            node_free(rc, fresh.node[i]);
        }
        return ret;
    }
    publish(rc, new_root, atomic_load(&rc->count) + 1,
            atomic_load(&rc->bytes) + r->iv.len);
    for (unsigned d = 0; d < path.depth; d++) {
        retire(rc, path.node[d]);
    }
    if (rc->nretired >= RC_RETIRE_BATCH) {
        hmaf__readers_synchronize(&rc->readers);
        free_retired(rc);
    }
    return 0;
}

/* ---- rebuilding: evictions and clears ---- */

/* Appends the regions under node, in address order, to v, each with its
 * last use in its own stamp: a rebuilt tree starts its leaves' stamps
 * from there. */
static size_t collect(const struct hmaf__rc_node *node, struct hmaf__region **v,
                      size_t n)
{
    for (unsigned i = 0; i < node->n; i++) {
        if (node->level == 0) {
            const struct rc_slot *slot = &leaf_of(node)->s[i];
            atomic_store_explicit(&slot->region->last_used, slot_used(slot),
                                  memory_order_relaxed);
            v[n++] = slot->region;
        } else {
            n = collect(inner_of(node)->e[i].child, v, n);
        }
    }
    return n;
}

/* One level of a tree over items[0..n) (regions, or nodes of the level
 * below), spread evenly over as few nodes as hold them; written over
 * items' front, each node after the items it takes were read. Returns how
 * many nodes; 0 when out of memory, everything built so far freed. */
static size_t build_level(struct hmaf__regcache *rc, void **items, size_t n,
                          unsigned level)
{
    size_t nodes = n == 0 ? 1 : (n + RC_FANOUT - 1) / RC_FANOUT;

    for (size_t j = 0; j < nodes; j++) {
        size_t from = j * n / nodes, to = (j + 1) * n / nodes;
        struct hmaf__rc_node *node = node_alloc(rc, level);
        if (node == NULL) {
            for (size_t i = 0; i < j; i++) {
                free_tree(rc, items[i]); /* this level's nodes */
            }
            for (size_t i = from; level > 0 && i < n; i++) {
                free_tree(rc, items[i]); /* the level below's, not taken */
            }
            return 0;
        }
        for (size_t i = from; i < to; i++) {
            if (level == 0) {
                struct hmaf__region *r = items[i];
                node_push(node, r->iv.base, r,
                          atomic_load_explicit(&r->last_used,
                                               memory_order_relaxed));
            } else {
                node_push(node, node_first_key(items[i]), items[i], 0);
            }
        }
        items[j] = node;
    }
    return nodes;
}

/* A tree over v[0..n), in address order; v is used up. NULL: no memory. */
static struct hmaf__rc_node *build(struct hmaf__regcache *rc,
                                   struct hmaf__region **v, size_t n)
{
    void **items = (void **)v;
    unsigned level = 0;

    n = build_level(rc, items, n, level);
    while (n > 1) {
        n = build_level(rc, items, n, ++level);
    }
    return n == 1 ? items[0] : NULL;
}

/* Publish a tree without the regions that left: they, and the nodes of
 * the old tree and every retired one, are unreachable once no reader is
 * left that started before (the new generation tells remembered regions
 * apart). */
static void replace_tree(struct hmaf__regcache *rc, struct hmaf__rc_node *root,
                         size_t count, uint64_t bytes)
{
    struct hmaf__rc_node *old = atomic_load(&rc->root);

    publish(rc, root, count, bytes);
    atomic_store_explicit(&rc->gen, atomic_fetch_add(&next_gen, 1),
                          memory_order_release);
    hmaf__readers_synchronize(&rc->readers);
    free_tree(rc, old);
    free_retired(rc);
}

struct lru_entry {
    uint64_t used;
    struct hmaf__region *r;
};

static int by_use(const void *a, const void *b)
{
    const struct lru_entry *x = a, *y = b;

    return (x->used > y->used) - (x->used < y->used);
}

static int by_base(const void *a, const void *b)
{
    const struct lru_entry *x = a, *y = b;

    return (x->r->iv.base > y->r->iv.base) - (x->r->iv.base < y->r->iv.base);
}

static void swap_entries(struct lru_entry *a, struct lru_entry *b)
{
    struct lru_entry t = *a;

    *a = *b;
    *b = t;
}

/* Reorders e[0..n) so that its k least recently used come first
 * (quickselect, three ways: the coarse clock makes many uses equal). */
static void select_least_used(struct lru_entry *e, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* e[0..lo) <= e[lo..hi) <= e[hi..n) */

    while (lo < k && k < hi) {
        uint64_t pivot = e[lo + (hi - lo) / 2].used;
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (e[i].used < pivot) {
                swap_entries(&e[lt++], &e[i++]);
            } else if (e[i].used > pivot) {
                swap_entries(&e[i], &e[--gt]);
            } else {
                i++;
            }
        }
        if (k <= lt) {
            hi = lt;
        } else if (k >= gt) {
            lo = gt;
        } else {
            return; /* the k-th is one of those equal to the pivot */
        }
    }
}

static uint64_t low_water(uint64_t bound)
{
    return bound - bound / RC_EVICT_SHARE;
}

/* How many of the least recently used of e[0..n) go when r comes in;
 * e ends in use order where it matters. */
static size_t choose_victims(const struct hmaf__regcache *rc,
                             struct lru_entry *e, size_t n,
                             const struct hmaf__region *r)
{
    uint64_t bytes = atomic_load(&rc->bytes) + r->iv.len;
    size_t keep = n + 1, k = 0;
    size_t max_keep =
        keep > rc->max_regions ? low_water(rc->max_regions) : rc->max_regions;
    uint64_t max_bytes =
        bytes > rc->max_bytes ? low_water(rc->max_bytes) : rc->max_bytes;

    if (bytes <= max_bytes) { /* the count alone: any order will do */
        k = keep - HMAF_MAX(max_keep, 1);
        select_least_used(e, n, k);
        return k;
    }
    qsort(e, n, sizeof(e[0]), by_use);
    while (k < n && (keep > max_keep || bytes > max_bytes)) {
        bytes -= e[k++].r->iv.len;
        keep--;
    }
    return k;
}

/* in[0..n) in address order, without victims[0..k) (sorted by base), with
 * r in its place, written to out, which may be in - 1 (one more is
 * written than read at most). Returns how many were written. */
static size_t survivors(struct hmaf__region **out,
                        struct hmaf__region *const *in, size_t n,
                        const struct lru_entry *victims, size_t k,
                        struct hmaf__region *r)
{
    size_t count = 0, vi = 0;
    int placed = 0;

    for (size_t i = 0; i < n; i++) {
        struct hmaf__region *next = in[i];
        if (vi < k && victims[vi].r == next) {
            vi++;
            continue;
        }
        if (!placed && next->iv.base > r->iv.base) {
            out[count++] = r;
            placed = 1;
        }
        out[count++] = next;
    }
    if (!placed) {
        out[count++] = r;
    }
    return count;
}

static struct hmaf__region *victim_list(struct lru_entry *victims, size_t k)
{
    struct hmaf__region *list = NULL;

    for (size_t i = k; i-- > 0;) {
        victims[i].r->next_victim = list;
        list = victims[i].r;
    }
    return list;
}

/* r in, a batch of least recently used regions out, in one new tree. */
static int insert_evicting(struct hmaf__regcache *rc, struct hmaf__region *r,
                           struct hmaf__region **victims_out,
                           uint64_t *evicted_out)
{
    size_t n = atomic_load(&rc->count), k, count;
    struct hmaf__region **v = malloc((n + 1) * sizeof(*v));
    struct lru_entry *e = malloc(n * sizeof(*e));
    struct hmaf__rc_node *root;
    uint64_t bytes = atomic_load(&rc->bytes) + r->iv.len;

    if (v == NULL || e == NULL) {
        free(v);
        free(e);
        return HMAF_ENOMEM;
    }
    n = collect(atomic_load(&rc->root), v + 1, 0);
    for (size_t i = 0; i < n; i++) {
        e[i] = (struct lru_entry){atomic_load(&v[i + 1]->last_used), v[i + 1]};
    }
    k = choose_victims(rc, e, n, r);
    qsort(e, k, sizeof(e[0]), by_base);
    count = survivors(v, v + 1, n, e, k, r);
    root = build(rc, v, count);
    if (root != NULL) {
        for (size_t i = 0; i < k; i++) {
            bytes -= e[i].r->iv.len;
        }
        replace_tree(rc, root, count, bytes);
        *victims_out = victim_list(e, k);
        *evicted_out = k;
    }
    free(v);
    free(e);
    return root != NULL ? 0 : HMAF_ENOMEM;
}

/* ---- the cache ---- */

int hmaf__regcache_init(struct hmaf__regcache *rc, size_t max_regions,
                        uint64_t max_bytes, hmaf__region_release_fn release,
                        void *release_arg)
{
    struct hmaf__rc_node *empty;
    int ret;

    memset(rc, 0, sizeof(*rc));
    empty = node_alloc(rc, 0);
    if (empty == NULL) {
        return HMAF_ENOMEM;
    }
    ret = hmaf__readers_init(&rc->readers);
    if (ret < 0) {
        free_slabs(rc);
        return ret;
    }
    pthread_mutex_init(&rc->write_lock, NULL);
    atomic_init(&rc->root, empty);
    atomic_init(&rc->gen, atomic_fetch_add(&next_gen, 1));
    rc->max_regions = max_regions == 0 ? 1 : max_regions;
    rc->max_bytes = max_bytes;
    rc->release = release;
    rc->release_arg = release_arg;
    return 0;
}

/* Links the regions under node in front of list, in address order. */
static struct hmaf__region *link_all(const struct hmaf__rc_node *node,
                                     struct hmaf__region *list)
{
    for (unsigned i = node->n; i-- > 0;) {
        if (node->level == 0) {
            struct hmaf__region *r = leaf_of(node)->s[i].region;
            r->next_victim = list;
            list = r;
        } else {
            list = link_all(inner_of(node)->e[i].child, list);
        }
    }
    return list;
}

void hmaf__regcache_fini(struct hmaf__regcache *rc)
{
    struct hmaf__region *list = link_all(atomic_load(&rc->root), NULL);

    if (list != NULL) {
        rc->release(rc->release_arg, list, 0);
    }
    free_slabs(rc);
    pthread_mutex_destroy(&rc->write_lock);
    hmaf__readers_fini(&rc->readers);
}

static int over_bounds(const struct hmaf__regcache *rc,
                       const struct hmaf__region *r)
{
    return atomic_load(&rc->count) + 1 > rc->max_regions ||
           atomic_load(&rc->bytes) + r->iv.len > rc->max_bytes;
}

static enum hmaf__regcache_insert_result
insert_locked(struct hmaf__regcache *rc, struct hmaf__region *r,
              struct hmaf__region **victims, uint64_t *evicted_out)
{
    const struct rc_leaf *leaf;
    unsigned i;
    int ret;

    if (r->epoch < rc->min_epoch) {
        return HMAF_REGCACHE_STALE;
    }
    /* Whatever overlaps r, the region starting last at or before r's last
     * byte does (compared by last bytes: an end of 2^64 would wrap). */
    leaf = predecessor(atomic_load(&rc->root), r->iv.base + (r->iv.len - 1), &i);
    if (leaf != NULL &&
        leaf_base(leaf, i) + (leaf_len(leaf, i) - 1) >= r->iv.base) {
        return HMAF_REGCACHE_OVERLAPS;
    }
    if (atomic_load(&rc->count) > 0 && over_bounds(rc, r)) {
        ret = insert_evicting(rc, r, victims, evicted_out);
    } else {
        ret = insert_path_copy(rc, r);
    }
    return ret == 0 ? HMAF_REGCACHE_ADDED : HMAF_REGCACHE_NOMEM;
}

enum hmaf__regcache_insert_result
hmaf__regcache_insert(struct hmaf__regcache *rc, struct hmaf__region *r,
                      uint64_t *evicted_out)
{
    struct hmaf__region *victims = NULL;
    uint64_t evicted = 0;
    enum hmaf__regcache_insert_result ret;

    pthread_mutex_lock(&rc->write_lock);
    ret = insert_locked(rc, r, &victims, &evicted);
    pthread_mutex_unlock(&rc->write_lock);
    if (victims != NULL) {
        rc->release(rc->release_arg, victims, 1);
    }
    if (evicted_out != NULL) {
        *evicted_out = evicted;
    }
    return ret;
}

int hmaf__regcache_clear(struct hmaf__regcache *rc, uint64_t new_epoch,
                         struct hmaf__region **dropped_out)
{
    struct hmaf__rc_node *empty;
    struct hmaf__region *list = NULL;

    pthread_mutex_lock(&rc->write_lock);
    empty = node_alloc(rc, 0);
    if (empty != NULL) {
        if (new_epoch > rc->min_epoch) {
            rc->min_epoch = new_epoch;
        }
        list = link_all(atomic_load(&rc->root), NULL);
        replace_tree(rc, empty, 0, 0);
    }
    pthread_mutex_unlock(&rc->write_lock);
    if (empty == NULL) {
        return HMAF_ENOMEM; /* nothing changed: the caller tries again */
    }
    if (dropped_out != NULL) {
        *dropped_out = list;
    } else if (list != NULL) {
        rc->release(rc->release_arg, list, 0);
    }
    return 0;
}

size_t hmaf__regcache_count(struct hmaf__regcache *rc)
{
    return atomic_load(&rc->count);
}

uint64_t hmaf__regcache_bytes(struct hmaf__regcache *rc)
{
    return atomic_load(&rc->bytes);
}
