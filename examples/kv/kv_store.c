#include "kv_store.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QS_IDLE(v) (((v) & 1) == 0)
#define ENTRY_MAX  (sizeof(struct kv_entry) + KV_KEY_MAX + KV_VALUE_MAX)
#define ITEMS(p)   ((struct kv_item *)((char *)(p) + sizeof(struct kv_block)))

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* FNV-1a, then a final mix so both halves of the word are usable: the low
 * bits pick the bucket, the high ones go into the block item. */
static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t bucket_addr(const struct kv_store *s, uint64_t hash)
{
    return s->root.buckets + (hash & (s->root.nbuckets - 1)) * 8;
}

static int read_one(struct kv_store *s, uint64_t addr, void *buf, size_t len)
{
    hmaf_seg_t seg = {.local = buf, .remote_addr = addr, .len = len};

    return s->ops->readv(s->ctx, &seg, 1);
}

static int write_one(struct kv_store *s, uint64_t addr, const void *buf,
                     size_t len)
{
    return s->ops->write(s->ctx, addr, buf, len);
}

static size_t block_bytes(uint64_t count)
{
    return sizeof(struct kv_block) +
           (count < KV_BLOCK_MIN ? KV_BLOCK_MIN : count) *
               sizeof(struct kv_item);
}

/* ---- lookups ------------------------------------------------------- */

static uint64_t get_count(const struct kv_get *g)
{
    return g->bucket_word ? ((const struct kv_block *)g->block)->count : 0;
}

static const struct kv_item *get_items(const struct kv_get *g)
{
    return g->big_block ? ITEMS(g->big_block) : ITEMS(g->block);
}

/* Levels 1 and 2 for every key: the bucket words, then the blocks (the
 * first KV_BLOCK_MIN items speculatively, the rest of a longer block in
 * one more read for all). */
static int read_blocks(struct kv_store *s, struct kv_get *gets, size_t n,
                       hmaf_seg_t *segs)
{
    size_t nsegs = 0;
    int ret;

    memset(segs, 0, n * sizeof(*segs));
    for (size_t i = 0; i < n; i++) {
        uint64_t h = key_hash(gets[i].key, gets[i].key_len);
        gets[i].hash = (uint32_t)(h >> 32);
        gets[i].found = 0;
        gets[i].big_block = NULL;
        gets[i].entry = NULL;
        segs[i] = (hmaf_seg_t){.local = &gets[i].bucket_word,
                               .remote_addr = bucket_addr(s, h),
                               .len = 8};
    }
    ret = s->ops->readv(s->ctx, segs, n);
    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < n; i++) {
        if (gets[i].bucket_word != 0) {
            segs[nsegs++] = (hmaf_seg_t){.local = gets[i].block,
                                         .remote_addr = gets[i].bucket_word,
                                         .len = sizeof(gets[i].block)};
        }
    }
    if (nsegs && (ret = s->ops->readv(s->ctx, segs, nsegs)) < 0) {
        return ret;
    }
    nsegs = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t count = get_count(&gets[i]);
        if (count > KV_BLOCK_LIMIT) {
            return HMAF_EPROTO;
        }
        if (count > KV_BLOCK_MIN) {
            gets[i].big_block = malloc(block_bytes(count));
            if (gets[i].big_block == NULL) {
                return HMAF_ENOMEM;
            }
            segs[nsegs++] = (hmaf_seg_t){.local = gets[i].big_block,
                                         .remote_addr = gets[i].bucket_word,
                                         .len = block_bytes(count)};
        }
    }
    if (nsegs && (ret = s->ops->readv(s->ctx, segs, nsegs)) < 0) {
        return ret;
    }
    for (size_t i = 0; i < n; i++) {
        /* the block is immutable: the count read twice cannot differ */
        if (gets[i].big_block &&
            ((struct kv_block *)gets[i].big_block)->count != get_count(&gets[i])) {
            return HMAF_EPROTO;
        }
    }
    return 0;
}

/* The next item at or after *from whose hash matches, or -1. */
static long next_candidate(const struct kv_get *g, size_t from)
{
    const struct kv_item *items = get_items(g);

    for (size_t j = from; j < get_count(g); j++) {
        if (items[j].hash == g->hash &&
            items[j].len >= sizeof(struct kv_entry) + g->key_len &&
            items[j].len <= ENTRY_MAX) {
            return (long)j;
        }
    }
    return -1;
}

static int entry_matches(const struct kv_get *g, const struct kv_item *item)
{
    const struct kv_entry *e = g->entry;
    size_t expect = sizeof(*e) + e->key_len +
                    (e->kind == KV_STRING ? e->value_len : 0);

    return (e->kind == KV_STRING || e->kind == KV_INTEGER) &&
           e->key_len == g->key_len && expect == item->len &&
           memcmp(e + 1, g->key, g->key_len) == 0;
}

static void fill_result(struct kv_get *g)
{
    const struct kv_entry *e = g->entry;

    g->found = 1;
    g->kind = (int)e->kind;
    g->value = (const char *)(e + 1) + e->key_len;
    g->value_len = e->kind == KV_STRING ? e->value_len : 0;
    g->integer = (int64_t)e->counter;
}

/* Level 3: the entries whose hash matches, in rounds (a second round only
 * when two keys of one bucket share the 32 hash bits). g->match holds the
 * matching item's index. */
static int read_entries(struct kv_store *s, struct kv_get *gets, size_t n,
                        hmaf_seg_t *segs, long *cand)
{
    for (size_t i = 0; i < n; i++) {
        cand[i] = next_candidate(&gets[i], 0);
    }
    for (;;) {
        size_t nsegs = 0;
        int ret;

        for (size_t i = 0; i < n; i++) {
            if (cand[i] < 0) {
                continue;
            }
            const struct kv_item *item = &get_items(&gets[i])[cand[i]];
            free(gets[i].entry);
            gets[i].entry = malloc(item->len);
            if (gets[i].entry == NULL) {
                return HMAF_ENOMEM;
            }
            segs[nsegs++] = (hmaf_seg_t){.local = gets[i].entry,
                                         .remote_addr = item->addr,
                                         .len = item->len};
        }
        if (nsegs == 0) {
            return 0;
        }
        if ((ret = s->ops->readv(s->ctx, segs, nsegs)) < 0) {
            return ret;
        }
        for (size_t i = 0; i < n; i++) {
            if (cand[i] < 0) {
                continue;
            }
            if (entry_matches(&gets[i], &get_items(&gets[i])[cand[i]])) {
                fill_result(&gets[i]);
                gets[i].match = cand[i];
                cand[i] = -1;
            } else {
                cand[i] = next_candidate(&gets[i], (size_t)cand[i] + 1);
            }
        }
    }
}

int kv_store_get_many(struct kv_store *s, struct kv_get *gets, size_t n)
{
    hmaf_seg_t *segs;
    long *cand;
    int ret;

    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        gets[i].big_block = NULL;
        gets[i].entry = NULL;
        gets[i].found = 0;
        gets[i].match = -1;
    }
    segs = malloc(n * sizeof(*segs));
    cand = malloc(n * sizeof(*cand));
    ret = segs && cand ? read_blocks(s, gets, n, segs) : HMAF_ENOMEM;
    if (ret == 0) {
        ret = read_entries(s, gets, n, segs, cand);
    }
    free(segs);
    free(cand);
    if (ret < 0) {
        kv_get_release(gets, n);
    }
    return ret;
}

void kv_get_release(struct kv_get *gets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(gets[i].big_block);
        free(gets[i].entry);
        gets[i].big_block = NULL;
        gets[i].entry = NULL;
    }
}

static int lookup(struct kv_store *s, struct kv_get *g, const char *key,
                  size_t key_len)
{
    g->key = key;
    g->key_len = key_len;
    return kv_store_get_many(s, g, 1);
}

/* ---- reclamation --------------------------------------------------- */

static int retire(struct kv_store *s, uint64_t addr)
{
    if (s->nretired == s->cap_retired) {
        size_t cap = s->cap_retired ? 2 * s->cap_retired : 64;
        struct kv_retired *r = realloc(s->retired, cap * sizeof(*r));
        if (r == NULL) {
            return HMAF_ENOMEM; /* leaked, never freed too early */
        }
        s->retired = r;
        s->cap_retired = cap;
    }
    s->retired[s->nretired++] = (struct kv_retired){.addr = addr};
    return 0;
}

/* Free what the other side can no longer reach. */
static int reclaim(struct kv_store *s)
{
    uint64_t peer;
    int alive, ret;
    size_t kept = 0;

    if (s->nretired == 0) {
        return 0;
    }
    ret = read_one(s, s->peer_qs_addr, &peer, sizeof(peer));
    if (ret < 0) {
        return ret;
    }
    alive = s->ops->peer_alive ? s->ops->peer_alive(s->ctx) : 1;
    for (size_t i = 0; i < s->nretired; i++) {
        struct kv_retired *r = &s->retired[i];
        if (!r->stamped) {
            r->peer_qs = peer;
            r->stamped = 1;
        }
        if (!alive || QS_IDLE(r->peer_qs) || peer != r->peer_qs) {
            if (s->ops->free(s->ctx, r->addr) == 0) {
                s->frees++;
            }
        } else {
            s->retired[kept++] = *r;
        }
    }
    s->nretired = kept;
    return 0;
}

static int publish_qs(struct kv_store *s, uint64_t value)
{
    int ret = write_one(s, s->self_qs_addr, &value, sizeof(value));

    if (ret == 0) {
        s->qs = value;
        s->last_bump_ns = now_ns();
    }
    return ret;
}

int kv_store_enter(struct kv_store *s)
{
    return QS_IDLE(s->qs) ? publish_qs(s, s->qs + 1) : 0;
}

int kv_store_leave(struct kv_store *s)
{
    int ret = reclaim(s);

    if (ret < 0) {
        return ret;
    }
    if (s->lazy_ns == 0) {
        return publish_qs(s, s->qs + 1);
    }
    if (now_ns() - s->last_bump_ns >= s->lazy_ns) {
        return publish_qs(s, s->qs + 2);
    }
    return 0;
}

int kv_store_idle(struct kv_store *s)
{
    int ret = 0;

    if (!QS_IDLE(s->qs)) {
        ret = publish_qs(s, s->qs + 1);
    }
    if (ret == 0) {
        ret = reclaim(s);
    }
    if (ret == 0 && s->nretired == 0 && s->ops->idle) {
        s->ops->idle(s->ctx);
    }
    return ret;
}

size_t kv_store_pending(const struct kv_store *s)
{
    return s->nretired;
}

/* ---- changes ------------------------------------------------------- */

/* A new block: the old one's items, without item `drop` (-1: none), plus
 * `add` (len 0: none). *addr_out is 0 when nothing is left. */
static int make_block(struct kv_store *s, const struct kv_get *g, long drop,
                      const struct kv_item *add, uint64_t *addr_out)
{
    uint64_t old_count = get_count(g);
    uint64_t count = old_count - (drop >= 0) + (add->len != 0);
    size_t bytes = block_bytes(count);
    struct kv_block *b;
    struct kv_item *items;
    int ret;

    if (count == 0) {
        *addr_out = 0;
        return 0;
    }
    if (count > KV_BLOCK_LIMIT) {
        return HMAF_ENOSPC;
    }
    b = calloc(1, bytes);
    if (b == NULL) {
        return HMAF_ENOMEM;
    }
    b->count = count;
    items = ITEMS(b);
    for (uint64_t j = 0, k = 0; j < old_count; j++) {
        if ((long)j != drop) {
            items[k++] = get_items(g)[j];
        }
    }
    if (add->len != 0) {
        items[count - 1] = *add;
    }
    ret = s->ops->alloc(s->ctx, bytes, addr_out);
    if (ret == 0) {
        ret = write_one(s, *addr_out, b, bytes);
        if (ret < 0) {
            s->ops->free(s->ctx, *addr_out);
        }
    }
    free(b);
    return ret;
}

/* Swap the bucket from what g read to new_word. 1: done; 0: the bucket
 * changed meanwhile (new_word freed; look again). The replaced block and
 * entry are retired; the key count follows. */
static int publish(struct kv_store *s, const struct kv_get *g,
                   uint64_t new_word, int adds)
{
    uint64_t old;
    uint64_t addr = bucket_addr(s, key_hash(g->key, g->key_len));
    int ret = s->ops->cas64(s->ctx, addr, g->bucket_word, new_word, &old);
    int64_t delta = adds - (g->found != 0);

    if (ret < 0 || old != g->bucket_word) {
        if (new_word) {
            s->ops->free(s->ctx, new_word);
        }
        return ret < 0 ? ret : 0;
    }
    if (g->bucket_word) {
        retire(s, g->bucket_word);
    }
    if (g->found) {
        retire(s, get_items(g)[g->match].addr);
    }
    if (delta != 0) {
        s->ops->faa64(s->ctx, s->root_addr + offsetof(struct kv_root, count),
                      (uint64_t)delta, NULL);
    }
    return 1;
}

static int make_entry(struct kv_store *s, int kind, const char *key,
                      size_t key_len, const char *value, size_t value_len,
                      int64_t integer, struct kv_item *item_out)
{
    struct kv_entry e = {.kind = (uint32_t)kind,
                         .key_len = (uint32_t)key_len,
                         .value_len = kind == KV_STRING ? value_len : 0,
                         .counter = (uint64_t)integer};
    size_t len = sizeof(e) + key_len + e.value_len;
    char *buf = malloc(len);
    int ret;

    if (buf == NULL) {
        return HMAF_ENOMEM;
    }
    memcpy(buf, &e, sizeof(e));
    memcpy(buf + sizeof(e), key, key_len);
    if (e.value_len) {
        memcpy(buf + sizeof(e) + key_len, value, value_len);
    }
    ret = s->ops->alloc(s->ctx, len, &item_out->addr);
    if (ret == 0) {
        ret = write_one(s, item_out->addr, buf, len);
        if (ret < 0) {
            s->ops->free(s->ctx, item_out->addr);
        }
    }
    free(buf);
    item_out->hash = (uint32_t)(key_hash(key, key_len) >> 32);
    item_out->len = (uint32_t)len;
    return ret;
}

/* Put a prepared entry in place of the key's current one, whatever it is. */
static int replace_with(struct kv_store *s, const char *key, size_t key_len,
                        const struct kv_item *item)
{
    for (;;) {
        struct kv_get g;
        uint64_t block;
        int ret = lookup(s, &g, key, key_len);

        if (ret == 0) {
            ret = make_block(s, &g, g.found ? g.match : -1, item, &block);
        }
        if (ret == 0) {
            ret = publish(s, &g, block, 1);
        }
        kv_get_release(&g, 1);
        if (ret != 0) {
            return ret < 0 ? ret : 0;
        }
    }
}

int kv_store_set(struct kv_store *s, const char *key, size_t key_len,
                 const char *value, size_t value_len)
{
    struct kv_item item;
    int ret;

    if (key_len > KV_KEY_MAX || value_len > KV_VALUE_MAX) {
        return HMAF_EINVAL;
    }
    ret = make_entry(s, KV_STRING, key, key_len, value, value_len, 0, &item);
    if (ret < 0) {
        return ret;
    }
    ret = replace_with(s, key, key_len, &item);
    if (ret < 0) {
        s->ops->free(s->ctx, item.addr);
    }
    return ret;
}

int kv_store_del(struct kv_store *s, const char *key, size_t key_len,
                 int *deleted_out)
{
    static const struct kv_item none;

    for (;;) {
        struct kv_get g;
        uint64_t block = 0;
        int ret = lookup(s, &g, key, key_len);

        if (ret == 0 && !g.found) {
            kv_get_release(&g, 1);
            *deleted_out = 0;
            return 0;
        }
        if (ret == 0) {
            ret = make_block(s, &g, g.match, &none, &block);
        }
        if (ret == 0) {
            ret = publish(s, &g, block, 0);
        }
        kv_get_release(&g, 1);
        if (ret != 0) {
            *deleted_out = ret > 0;
            return ret < 0 ? ret : 0;
        }
    }
}

/* A whole decimal int64, as Redis accepts it. */
static int parse_int64(const char *p, size_t len, int64_t *out)
{
    char buf[24];
    char *end;
    long long v;

    if (len == 0 || len >= sizeof(buf)) {
        return HMAF_EINVAL;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    if (buf[0] == ' ' || buf[0] == '+' || (buf[0] == '0' && len > 1) ||
        (buf[0] == '-' && (len == 1 || buf[1] == '0'))) {
        return HMAF_EINVAL;
    }
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno || *end != '\0') {
        return HMAF_EINVAL;
    }
    *out = v;
    return 0;
}

static int add_overflows(int64_t a, int64_t b)
{
    return (b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b);
}

/* The key holds an integer entry: add to its counter, then make sure the
 * entry was still the key's at the add (entries are published once: there
 * before and after means there in between). 1: done, 0: look again. */
static int add_in_place(struct kv_store *s, struct kv_get *g, int64_t by,
                        int64_t *result_out)
{
    uint64_t entry = get_items(g)[g->match].addr;
    uint64_t old;
    struct kv_get again;
    int ret, still = 0;

    if (add_overflows(g->integer, by)) {
        return HMAF_EOVERFLOW;
    }
    ret = s->ops->faa64(s->ctx, entry + offsetof(struct kv_entry, counter),
                        (uint64_t)by, &old);
    if (ret < 0) {
        return ret;
    }
    ret = lookup(s, &again, g->key, g->key_len);
    if (ret == 0) {
        still = again.found && get_items(&again)[again.match].addr == entry;
        kv_get_release(&again, 1);
    }
    if (ret == 0 && still) {
        *result_out = (int64_t)(old + (uint64_t)by);
    }
    return ret < 0 ? ret : still;
}

/* The key is missing or holds a string: put an integer entry in its place. */
static int convert(struct kv_store *s, struct kv_get *g, int64_t by,
                   int64_t *result_out)
{
    int64_t base = 0;
    struct kv_item item;
    uint64_t block;
    int ret;

    if (g->found && parse_int64(g->value, g->value_len, &base) < 0) {
        return HMAF_EINVAL;
    }
    if (add_overflows(base, by)) {
        return HMAF_EOVERFLOW;
    }
    ret = make_entry(s, KV_INTEGER, g->key, g->key_len, NULL, 0, base + by,
                     &item);
    if (ret < 0) {
        return ret;
    }
    ret = make_block(s, g, g->found ? g->match : -1, &item, &block);
    if (ret == 0) {
        ret = publish(s, g, block, 1);
    }
    if (ret <= 0) {
        s->ops->free(s->ctx, item.addr);
    } else {
        *result_out = base + by;
    }
    return ret;
}

int kv_store_incrby(struct kv_store *s, const char *key, size_t key_len,
                    int64_t by, int64_t *result_out)
{
    for (;;) {
        struct kv_get g;
        int ret = lookup(s, &g, key, key_len);

        if (ret == 0) {
            ret = g.found && g.kind == KV_INTEGER
                      ? add_in_place(s, &g, by, result_out)
                      : convert(s, &g, by, result_out);
        }
        kv_get_release(&g, 1);
        if (ret != 0) {
            return ret < 0 ? ret : 0;
        }
    }
}

int kv_store_count(struct kv_store *s, uint64_t *count_out)
{
    return read_one(s, s->root_addr + offsetof(struct kv_root, count),
                    count_out, sizeof(*count_out));
}

/* ---- setup --------------------------------------------------------- */

int kv_store_format(const struct kv_mem_ops *ops, void *ctx,
                    uint64_t nbuckets, uint64_t *root_addr_out)
{
    struct kv_root root = {.magic = KV_MAGIC, .nbuckets = nbuckets};
    size_t bytes = (size_t)nbuckets * 8;
    void *zeros;
    uint64_t root_addr;
    int ret;

    if (nbuckets == 0 || (nbuckets & (nbuckets - 1)) || nbuckets > (1u << 26)) {
        return HMAF_EINVAL;
    }
    zeros = calloc(1, bytes);
    if (zeros == NULL) {
        return HMAF_ENOMEM;
    }
    ret = ops->alloc(ctx, bytes, &root.buckets);
    if (ret == 0) {
        ret = ops->write(ctx, root.buckets, zeros, bytes);
    }
    if (ret == 0) {
        ret = ops->alloc(ctx, sizeof(root), &root_addr);
    }
    if (ret == 0) {
        ret = ops->write(ctx, root_addr, &root, sizeof(root));
    }
    free(zeros);
    if (ret == 0) {
        *root_addr_out = root_addr;
    }
    return ret;
}

int kv_store_open(struct kv_store *s, const struct kv_mem_ops *ops, void *ctx,
                  uint64_t root_addr, enum kv_side side)
{
    size_t self = side == KV_SIDE_HOST ? offsetof(struct kv_root, host_qs)
                                       : offsetof(struct kv_root, dpu_qs);
    size_t peer = side == KV_SIDE_HOST ? offsetof(struct kv_root, dpu_qs)
                                       : offsetof(struct kv_root, host_qs);
    int ret;

    *s = (struct kv_store){.ops = ops, .ctx = ctx, .root_addr = root_addr};
    ret = read_one(s, root_addr, &s->root, sizeof(s->root));
    if (ret < 0) {
        return ret;
    }
    if (s->root.magic != KV_MAGIC || s->root.nbuckets == 0 ||
        (s->root.nbuckets & (s->root.nbuckets - 1))) {
        return HMAF_EPROTO;
    }
    s->self_qs_addr = root_addr + self;
    s->peer_qs_addr = root_addr + peer;
    s->lazy_ns = side == KV_SIDE_HOST ? 0 : 1000000;
    /* a previous process of this side may have died inside a batch */
    ret = read_one(s, s->self_qs_addr, &s->qs, sizeof(s->qs));
    if (ret == 0 && !QS_IDLE(s->qs)) {
        ret = publish_qs(s, s->qs + 1);
    }
    return ret;
}

void kv_store_close(struct kv_store *s)
{
    free(s->retired);
    s->retired = NULL;
    s->nretired = s->cap_retired = 0;
}
