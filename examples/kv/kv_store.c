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
    hmaf_seg_t seg = {.local = (void *)buf, .remote_addr = addr, .len = len};

    return s->ops->writev(s->ctx, &seg, 1);
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
    return ret;
}

void kv_store_rest(struct kv_store *s)
{
    if (s->nretired == 0 && s->ops->idle) {
        s->ops->idle(s->ctx);
    }
}

size_t kv_store_pending(const struct kv_store *s)
{
    return s->nretired;
}

/* ---- changes --------------------------------------------------------

A turn's writes go in rounds. Each round looks up every unfinished write's
key at once (kv_store_get_many), folds the writes of each bucket, in
command order, into one new block, writes every new entry and block with
one vectored write, then sends one atomic batch: a compare-and-swap per
changed bucket, a fetch-add per INCR on an integer entry. A bucket whose
swap failed is looked up again next round; so is a write that could not
join its bucket's fold (an INCR on an integer entry after a change of the
same bucket, or the reverse), and an INCR's add, which the next lookup
confirms (entries are published once: present before and after the add
means present at it). */

enum { W_PENDING, W_VERIFY, W_DONE };

/* A published entry or a new one, as the fold sees it. */
struct fold_item {
    struct kv_item item;
    const char *key; /* NULL: no write of this round names its key */
    size_t key_len;
    int kind;
    const char *value; /* KV_STRING */
    size_t value_len;
    int64_t integer;   /* KV_INTEGER */
    long fresh;        /* index in the round's new entries, -1: published */
};

struct fresh_entry {
    uint64_t addr;
    int kept; /* in the group's new block */
};

/* The writes of one bucket taken in one round. */
struct group {
    size_t first, n;  /* their positions in the round's sorted order */
    uint64_t bucket, old_word, new_word;
    int adds;         /* adds in place, not a new block */
    int exact;        /* one of them exact: no later write joins */
    int changed;      /* a new block to swap in */
    int failed;       /* could not be built: its writes fail */
    size_t cmd;       /* its first write's place in command order */
    size_t op;        /* its first atomic op */
    size_t fresh0, nfresh, dropped0, ndropped;
    int64_t delta;    /* keys gained */
};

struct placed {
    uint64_t bucket;
    size_t pos; /* in the round's live writes */
};

struct round {
    struct kv_store *s;
    struct kv_write **live; /* unfinished writes, in command order */
    size_t nlive;
    struct kv_get *gets;    /* one per live write */
    struct placed *order;   /* pending writes by bucket, then command order */
    size_t norder;
    struct group *groups;
    size_t ngroups;
    struct fold_item *fold;
    size_t nfold, cap_fold;
    struct fresh_entry *fresh;
    size_t nfresh;
    uint64_t *dropped;      /* published entries the new blocks leave out */
    size_t ndropped;
    hmaf_seg_t *segs;       /* new entries and blocks, written at once */
    size_t nsegs;
    hmaf_atomic_t *ops;
    size_t nops;
};

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

/* Stage `len` bytes (taken over: freed after the write) for `addr`. */
static void stage(struct round *r, uint64_t addr, void *buf, size_t len)
{
    r->segs[r->nsegs++] = (hmaf_seg_t){.local = buf, .remote_addr = addr,
                                       .len = len};
}

/* A new entry for w's key: a string, or an integer holding `integer`. */
static int new_entry(struct round *r, const struct kv_write *w, int kind,
                     int64_t integer, struct fold_item *out)
{
    struct kv_entry e = {.kind = (uint32_t)kind,
                         .key_len = (uint32_t)w->key_len,
                         .value_len = kind == KV_STRING ? w->value_len : 0,
                         .counter = (uint64_t)integer};
    size_t len = sizeof(e) + w->key_len + e.value_len;
    char *buf = malloc(len);
    uint64_t addr;
    int ret;

    if (buf == NULL) {
        return HMAF_ENOMEM;
    }
    ret = r->s->ops->alloc(r->s->ctx, len, &addr);
    if (ret < 0) {
        free(buf);
        return ret;
    }
    memcpy(buf, &e, sizeof(e));
    memcpy(buf + sizeof(e), w->key, w->key_len);
    if (e.value_len) {
        memcpy(buf + sizeof(e) + w->key_len, w->value, e.value_len);
    }
    stage(r, addr, buf, len);
    r->fresh[r->nfresh] = (struct fresh_entry){.addr = addr, .kept = 1};
    *out = (struct fold_item){
        .item = {.addr = addr,
                 .hash = (uint32_t)(key_hash(w->key, w->key_len) >> 32),
                 .len = (uint32_t)len},
        .key = w->key, .key_len = w->key_len, .kind = kind,
        .value = w->value, .value_len = e.value_len, .integer = integer,
        .fresh = (long)r->nfresh++};
    return 0;
}

static long fold_find(const struct round *r, const struct kv_write *w)
{
    for (size_t i = 0; i < r->nfold; i++) {
        const struct fold_item *f = &r->fold[i];
        if (f->key && f->key_len == w->key_len &&
            memcmp(f->key, w->key, w->key_len) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* Take item i out of the fold: a published entry is retired if the swap
 * succeeds, a new one freed. */
static void fold_drop(struct round *r, long i)
{
    struct fold_item *f = &r->fold[i];

    if (f->fresh >= 0) {
        r->fresh[f->fresh].kept = 0;
    } else {
        r->dropped[r->ndropped++] = f->item.addr;
    }
    r->fold[i] = r->fold[--r->nfold];
}

static void fold_put(struct round *r, long i, const struct fold_item *item)
{
    if (i >= 0) {
        fold_drop(r, i);
    }
    r->fold[r->nfold++] = *item;
}

/* The bucket's block as g read it, each item the round's writes found
 * named by its key. */
static int fold_start(struct round *r, const struct group *gr)
{
    const struct kv_get *base = &r->gets[r->order[gr->first].pos];
    uint64_t count = get_count(base);
    size_t cap = count + gr->n;

    if (cap > r->cap_fold) {
        struct fold_item *f = realloc(r->fold, cap * sizeof(*f));
        if (f == NULL) {
            return HMAF_ENOMEM;
        }
        r->fold = f;
        r->cap_fold = cap;
    }
    for (uint64_t j = 0; j < count; j++) {
        r->fold[j] = (struct fold_item){.item = get_items(base)[j],
                                        .fresh = -1};
    }
    r->nfold = count;
    for (size_t k = 0; k < gr->n; k++) {
        const struct kv_get *g = &r->gets[r->order[gr->first + k].pos];
        if (g->found) {
            struct fold_item *f = &r->fold[g->match];
            f->key = g->key;
            f->key_len = g->key_len;
            f->kind = g->kind;
            f->value = g->value;
            f->value_len = g->value_len;
            f->integer = g->integer;
        }
    }
    return 0;
}

/* Fetch-adds commute, so both sides' land whatever the order, but each
 * side checked for overflow against the value it read, without the other
 * side's adds in flight. A fetch-add therefore only starts from within
 * +-2^61 and adds at most 2^40: to wrap, millions of adds (2^63 - 2^61
 * over 2^40) would have to be in flight at once. Any other add is exact: a
 * compare-and-swap from the value read. */
#define ADD_FETCH_BAND (INT64_C(1) << 61)
#define ADD_FETCH_MAX  (INT64_C(1) << 40)

static int in_fetch_band(int64_t v)
{
    return v >= -ADD_FETCH_BAND && v <= ADD_FETCH_BAND;
}

/* How w would add to f's counter, given what the round added before. */
static int add_kind(const struct kv_write *w, const struct fold_item *f)
{
    if (add_overflows(f->integer, w->by)) {
        return KV_ADD_NONE;
    }
    return in_fetch_band(f->integer) && w->by >= -ADD_FETCH_MAX &&
                   w->by <= ADD_FETCH_MAX
               ? KV_ADD_FETCH
               : KV_ADD_EXACT;
}

/* INCRBY w where the key holds a published integer: an add in place. */
static void fold_add(struct kv_write *w, struct fold_item *f)
{
    w->adding = add_kind(w, f);
    if (w->adding == KV_ADD_NONE) {
        w->status = HMAF_EOVERFLOW;
        return;
    }
    w->expect = f->integer;
    f->integer += w->by; /* what the next add of this round expects */
    w->entry = f->item.addr;
}

/* INCRBY w where the key is missing, holds a string or a new integer:
 * a new integer entry. */
static int fold_convert(struct round *r, struct kv_write *w, long i)
{
    const struct fold_item *f = i >= 0 ? &r->fold[i] : NULL;
    struct fold_item item;
    int64_t base = 0;
    int ret;

    if (f && f->kind == KV_INTEGER) {
        base = f->integer;
    } else if (f && parse_int64(f->value, f->value_len, &base) < 0) {
        w->status = HMAF_EINVAL;
        return 0;
    }
    if (add_overflows(base, w->by)) {
        w->status = HMAF_EOVERFLOW;
        return 0;
    }
    ret = new_entry(r, w, KV_INTEGER, base + w->by, &item);
    if (ret == 0) {
        fold_put(r, i, &item);
        w->result = base + w->by;
    }
    return ret;
}

/* Apply w to the fold. 0: applied (w->status may say it failed without a
 * change); 1: w cannot join this group (a later round takes it). */
static int fold_write(struct round *r, struct group *gr, struct kv_write *w)
{
    long i = fold_find(r, w);
    int is_add = w->op == KV_INCRBY && i >= 0 && r->fold[i].fresh < 0 &&
                 r->fold[i].kind == KV_INTEGER;
    int changes = (w->op == KV_DEL && i >= 0) || w->op == KV_SET ||
                  (w->op == KV_INCRBY && !is_add);
    struct fold_item item;
    int ret = 0;

    w->status = 0;
    w->adding = KV_ADD_NONE;
    /* after an exact add, a later write would count on its landing */
    if ((is_add && gr->changed) || (changes && gr->adds) || gr->exact) {
        return 1;
    }
    if (w->op == KV_SET) {
        ret = new_entry(r, w, KV_STRING, 0, &item);
        if (ret == 0) {
            fold_put(r, i, &item);
        }
    } else if (w->op == KV_DEL) {
        w->deleted = i >= 0;
        if (i >= 0) {
            fold_drop(r, i);
        }
    } else if (is_add) {
        fold_add(w, &r->fold[i]);
    } else {
        ret = fold_convert(r, w, i);
    }
    if (ret < 0) {
        return ret;
    }
    gr->adds |= w->adding != KV_ADD_NONE;
    gr->exact |= w->adding == KV_ADD_EXACT;
    gr->changed |= changes && w->status == 0;
    return 0;
}

/* The group's new block (none when it empties the bucket). */
static int build_block(struct round *r, struct group *gr)
{
    size_t bytes = block_bytes(r->nfold);
    struct kv_block *b;
    int ret;

    gr->new_word = 0;
    if (r->nfold == 0) {
        return 0;
    }
    if (r->nfold > KV_BLOCK_LIMIT) {
        return HMAF_ENOSPC;
    }
    b = calloc(1, bytes);
    if (b == NULL) {
        return HMAF_ENOMEM;
    }
    b->count = r->nfold;
    for (size_t j = 0; j < r->nfold; j++) {
        ITEMS(b)[j] = r->fold[j].item;
    }
    ret = r->s->ops->alloc(r->s->ctx, bytes, &gr->new_word);
    if (ret < 0) {
        free(b);
        return ret;
    }
    stage(r, gr->new_word, b, bytes);
    return 0;
}

static void free_fresh(struct round *r, const struct group *gr, int all)
{
    for (size_t k = gr->fresh0; k < gr->fresh0 + gr->nfresh; k++) {
        if (all || !r->fresh[k].kept) {
            r->s->ops->free(r->s->ctx, r->fresh[k].addr);
        }
    }
}

/* Fold the writes of the bucket starting at order[first]; returns how
 * many order[] places the bucket's writes take. */
static size_t fold_bucket(struct round *r, size_t first)
{
    struct group *gr = &r->groups[r->ngroups];
    const struct kv_get *base = &r->gets[r->order[first].pos];
    size_t end = first, taken = 0;
    int ret = 0;

    while (end < r->norder && r->order[end].bucket == r->order[first].bucket) {
        end++;
    }
    /* a bucket word read twice in one turn may differ: the first reading
     * counts, the writes that saw another wait for the next round */
    while (first + taken < end &&
           r->gets[r->order[first + taken].pos].bucket_word == base->bucket_word) {
        taken++;
    }
    *gr = (struct group){.first = first, .n = taken,
                         .cmd = r->order[first].pos,
                         .bucket = r->order[first].bucket,
                         .old_word = base->bucket_word,
                         .fresh0 = r->nfresh, .dropped0 = r->ndropped};
    ret = fold_start(r, gr);
    for (size_t k = 0; ret == 0 && k < taken; k++) {
        ret = fold_write(r, gr, r->live[r->order[first + k].pos]);
        if (ret > 0) {
            gr->n = k;
            ret = 0;
            break;
        }
    }
    if (ret == 0 && gr->changed) {
        gr->delta = (int64_t)r->nfold - (int64_t)get_count(base);
        ret = build_block(r, gr);
    }
    gr->nfresh = r->nfresh - gr->fresh0;
    gr->ndropped = r->ndropped - gr->dropped0;
    if (ret < 0) {
        /* nothing of it is published: its writes fail, and its new
         * entries are freed once written (settle_adds) */
        gr->failed = 1;
        for (size_t k = 0; k < gr->n; k++) {
            struct kv_write *w = r->live[r->order[first + k].pos];
            w->status = ret;
            w->adding = KV_ADD_NONE;
        }
        gr->changed = gr->adds = gr->exact = 0;
    }
    r->ngroups++;
    return end - first;
}

static int by_bucket(const void *a, const void *b)
{
    const struct placed *x = a, *y = b;

    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int by_first_write(const void *a, const void *b)
{
    const struct group *x = a, *y = b;

    return (x->cmd > y->cmd) - (x->cmd < y->cmd);
}

/* The round's atomic ops, groups in the order of their first write. */
static void collect_ops(struct round *r)
{
    for (size_t i = 0; i < r->ngroups; i++) {
        struct group *gr = &r->groups[i];
        gr->op = r->nops;
        if (gr->changed) {
            r->ops[r->nops++] = (hmaf_atomic_t){
                .op = HMAF_ATOMIC_CAS, .size = 8, .remote_addr = gr->bucket,
                .compare = gr->old_word, .operand = gr->new_word};
        }
        for (size_t k = 0; gr->adds && k < gr->n; k++) {
            struct kv_write *w = r->live[r->order[gr->first + k].pos];
            uint64_t counter = w->entry + offsetof(struct kv_entry, counter);
            if (w->adding == KV_ADD_FETCH) {
                r->ops[r->nops++] = (hmaf_atomic_t){
                    .op = HMAF_ATOMIC_FADD, .size = 8,
                    .remote_addr = counter, .operand = (uint64_t)w->by};
            } else if (w->adding == KV_ADD_EXACT) {
                r->ops[r->nops++] = (hmaf_atomic_t){
                    .op = HMAF_ATOMIC_CAS, .size = 8, .remote_addr = counter,
                    .compare = (uint64_t)w->expect,
                    .operand = (uint64_t)(w->expect + w->by)};
            }
        }
    }
}

static void settle_swap(struct round *r, const struct group *gr,
                        int64_t *delta)
{
    const hmaf_atomic_t *op = &r->ops[gr->op];
    int done = op->status == 0 && op->old == gr->old_word;

    if (op->status != 0) {
        /* it may have landed: keep what it names, fail its writes */
        for (size_t k = 0; k < gr->n; k++) {
            r->live[r->order[gr->first + k].pos]->status = op->status;
        }
    } else if (done) {
        if (gr->old_word) {
            retire(r->s, gr->old_word);
        }
        for (size_t k = gr->dropped0; k < gr->dropped0 + gr->ndropped; k++) {
            retire(r->s, r->dropped[k]);
        }
        *delta += gr->delta;
    } else if (gr->new_word) {
        r->s->ops->free(r->s->ctx, gr->new_word);
    }
    /* new entries left out of the block were never published; the others
     * were only if the swap succeeded, or may have been if it failed
     * without an answer */
    free_fresh(r, gr, op->status == 0 && !done);
    for (size_t k = 0; k < gr->n; k++) {
        r->live[r->order[gr->first + k].pos]->state =
            op->status != 0 || done ? W_DONE : W_PENDING;
    }
}

/* A group without a swap: its fetch-adds wait for the next lookup to
 * confirm them; its other writes are answered by what the lookup saw. */
static void settle_adds(struct round *r, const struct group *gr)
{
    size_t op = gr->op;

    if (gr->failed) {
        free_fresh(r, gr, 1);
    }
    for (size_t k = 0; k < gr->n; k++) {
        struct kv_write *w = r->live[r->order[gr->first + k].pos];
        const hmaf_atomic_t *a =
            w->adding != KV_ADD_NONE ? &r->ops[op++] : NULL;

        w->state = W_DONE;
        if (a && a->status != 0) {
            w->status = a->status;
        } else if (a && a->op == HMAF_ATOMIC_CAS && a->old != a->compare) {
            w->state = W_PENDING; /* the counter moved: add again */
        } else if (a) {
            w->result = (int64_t)(a->old + (uint64_t)w->by);
            w->state = W_VERIFY;
        }
    }
}

/* Writes still to do, and their lookup; an add whose entry is still the
 * key's is done. */
static int look_up_live(struct round *r, struct kv_write *w, size_t n)
{
    int ret;

    r->nlive = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i].state != W_DONE) {
            r->gets[r->nlive].key = w[i].key;
            r->gets[r->nlive].key_len = w[i].key_len;
            r->live[r->nlive++] = &w[i];
        }
    }
    if (r->nlive == 0) {
        return 1;
    }
    ret = kv_store_get_many(r->s, r->gets, r->nlive);
    if (ret < 0) {
        return ret;
    }
    r->norder = 0;
    for (size_t i = 0; i < r->nlive; i++) {
        const struct kv_get *g = &r->gets[i];
        struct kv_write *lw = r->live[i];
        if (lw->state == W_VERIFY) {
            int still = g->found && get_items(g)[g->match].addr == lw->entry;
            lw->state = still ? W_DONE : W_PENDING;
        }
        if (lw->state == W_PENDING) {
            r->order[r->norder++] = (struct placed){
                .bucket = bucket_addr(r->s, key_hash(lw->key, lw->key_len)),
                .pos = i};
        }
    }
    return 0;
}

/* One round; 1 when every write is done. */
static int run_round(struct round *r, struct kv_write *w, size_t n,
                     int64_t *delta)
{
    int ret = look_up_live(r, w, n);

    if (ret != 0) {
        return ret;
    }
    r->ngroups = r->nfresh = r->ndropped = r->nsegs = r->nops = 0;
    qsort(r->order, r->norder, sizeof(*r->order), by_bucket);
    for (size_t i = 0; i < r->norder;) {
        i += fold_bucket(r, i);
    }
    qsort(r->groups, r->ngroups, sizeof(*r->groups), by_first_write);
    collect_ops(r);
    /* everything new is in place before any swap publishes it */
    if (r->nsegs) {
        ret = r->s->ops->writev(r->s->ctx, r->segs, r->nsegs);
    }
    if (ret == 0 && r->nops) {
        r->s->ops->atomic(r->s->ctx, r->ops, r->nops); /* each op's status */
    }
    for (size_t i = 0; ret == 0 && i < r->ngroups; i++) {
        if (r->groups[i].changed) {
            settle_swap(r, &r->groups[i], delta);
        } else {
            settle_adds(r, &r->groups[i]);
        }
    }
    for (size_t i = 0; i < r->nsegs; i++) {
        free(r->segs[i].local);
    }
    kv_get_release(r->gets, r->nlive);
    return ret;
}

static void round_release(struct round *r)
{
    free(r->live);
    free(r->gets);
    free(r->order);
    free(r->groups);
    free(r->fold);
    free(r->fresh);
    free(r->dropped);
    free(r->segs);
    free(r->ops);
}

/* Room for n writes: each makes at most one entry, drops at most one,
 * and takes at most one atomic op; each group one block. */
static int round_init(struct round *r, struct kv_store *s, size_t n)
{
    *r = (struct round){.s = s};
    r->live = malloc(n * sizeof(*r->live));
    r->gets = malloc(n * sizeof(*r->gets));
    r->order = malloc(n * sizeof(*r->order));
    r->groups = malloc(n * sizeof(*r->groups));
    r->fresh = malloc(n * sizeof(*r->fresh));
    r->dropped = malloc(n * sizeof(*r->dropped));
    r->segs = malloc(2 * n * sizeof(*r->segs));
    r->ops = malloc(n * sizeof(*r->ops));
    return r->live && r->gets && r->order && r->groups && r->fresh &&
                   r->dropped && r->segs && r->ops
               ? 0
               : HMAF_ENOMEM;
}

/* The key count follows the keys that appeared and went, once per turn. */
static int count_keys(struct kv_store *s, int64_t delta)
{
    hmaf_atomic_t op = {.op = HMAF_ATOMIC_FADD, .size = 8,
                        .remote_addr = s->root_addr +
                                       offsetof(struct kv_root, count),
                        .operand = (uint64_t)delta};

    return delta ? s->ops->atomic(s->ctx, &op, 1) : 0;
}

int kv_store_write_many(struct kv_store *s, struct kv_write *w, size_t n)
{
    struct round r;
    int64_t delta = 0;
    int ret, counted;

    for (size_t i = 0; i < n; i++) {
        w[i].status = 0;
        w[i].state = W_PENDING;
        w[i].deleted = 0;
        w[i].result = 0;
    }
    if (n == 0) {
        return 0;
    }
    ret = round_init(&r, s, n);
    while (ret == 0) {
        ret = run_round(&r, w, n, &delta);
    }
    round_release(&r);
    for (size_t i = 0; ret < 0 && i < n; i++) {
        if (w[i].state != W_DONE) {
            w[i].status = ret;
        }
    }
    /* what was published counts, whatever stopped the rest */
    counted = count_keys(s, delta);
    return ret < 0 ? ret : counted;
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
        hmaf_seg_t seg = {.local = zeros, .remote_addr = root.buckets,
                          .len = bytes};
        ret = ops->writev(ctx, &seg, 1);
    }
    if (ret == 0) {
        ret = ops->alloc(ctx, sizeof(root), &root_addr);
    }
    if (ret == 0) {
        hmaf_seg_t seg = {.local = &root, .remote_addr = root_addr,
                          .len = sizeof(root)};
        ret = ops->writev(ctx, &seg, 1);
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
