/*
 * The kv store: a hash table in host memory that both servers share, the
 * host's (hmaf-kv-host: plain loads and stores) and the dpu side's
 * (hmaf-kv-dpu: HMAF transfers and atomics). One implementation runs on
 * either side over a small memory accessor (struct kv_mem_ops), so both
 * ports run the same code paths and agree by construction.
 *
 * Layout (all in one heap the host exposes read-write; addresses are host
 * addresses):
 *   root:   struct kv_root, published as "kv"
 *   bucket: a 64-bit word, 0 or the address of a bucket block
 *   block:  struct kv_block: its items (entry address, hash, length);
 *           immutable once published
 *   entry:  struct kv_entry, then the key, then the value (string) or
 *           nothing (integer: the value is the entry's counter word);
 *           immutable once published, except an integer's counter
 * Every change builds a new block and publishes it with one compare-and-
 * swap of the bucket word: no locks, and a reader following bucket ->
 * block -> entry always sees a consistent key and value.
 *
 * Reclamation: a replaced block or entry is retired, and freed once the
 * other side cannot hold a reference to it any more. Each side owns a
 * quiescence word in the root: odd while it may be inside a batch of
 * commands, even while idle, and moved on (+2) at least every few
 * milliseconds of uninterrupted work. A retired piece is freed when the
 * other side's word, read after the swap, was even or has changed since.
 */
#ifndef KV_STORE_H
#define KV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/hmaf.h>

#define KV_MAGIC     0x31767320766b6d68ull /* "hmkv sv1" */
#define KV_KEY_MAX   (64u << 10)
#define KV_VALUE_MAX (1u << 20)

struct kv_root {
    uint64_t magic;
    uint64_t nbuckets; /* a power of two */
    uint64_t buckets;  /* address of nbuckets words */
    uint64_t count;    /* keys present (DBSIZE), changed atomically */
    uint64_t host_qs;  /* quiescence words, one per side */
    uint64_t dpu_qs;
};

enum kv_kind { KV_STRING = 1, KV_INTEGER = 2 };

struct kv_entry {
    uint32_t kind;
    uint32_t key_len;
    uint64_t value_len; /* KV_STRING: bytes after the key */
    uint64_t counter;   /* KV_INTEGER: the value, changed atomically */
};

struct kv_item {
    uint64_t addr; /* the entry */
    uint32_t hash; /* of its key, to skip entries that cannot match */
    uint32_t len;  /* the entry's bytes */
};

struct kv_block {
    uint64_t count;
    uint64_t reserved;
    /* struct kv_item items[count], space for at least KV_BLOCK_MIN */
};

#define KV_BLOCK_MIN   4 /* so a reader may fetch this many at once */
#define KV_BLOCK_LIMIT 4096 /* more items in one bucket means corruption */

/* How a side reaches host memory. Every call returns 0 or an HMAF_E*. */
struct kv_mem_ops {
    int (*readv)(void *ctx, const hmaf_seg_t *segs, size_t n);
    int (*writev)(void *ctx, const hmaf_seg_t *segs, size_t n);
    /* 8-byte HMAF_ATOMIC_CAS and HMAF_ATOMIC_FADD, performed in order, as
     * hmaf_session_atomic(): each op's status and old are written */
    int (*atomic)(void *ctx, hmaf_atomic_t *ops, size_t n);
    int (*alloc)(void *ctx, size_t size, uint64_t *addr_out);
    int (*free)(void *ctx, uint64_t addr);
    /* optional: non-zero while the other side may hold references (the
     * host: a dpu session is connected); NULL: always */
    int (*peer_alive)(void *ctx);
    /* optional: the side went idle, holding no references (the dpu: give
     * cached heap blocks back) */
    void (*idle)(void *ctx);
};

enum kv_side { KV_SIDE_HOST, KV_SIDE_DPU };

struct kv_retired {
    uint64_t addr;
    uint64_t peer_qs; /* the other side's word, read after the swap */
    int stamped;      /* peer_qs read yet */
};

struct kv_store {
    const struct kv_mem_ops *ops;
    void *ctx;
    uint64_t root_addr;
    struct kv_root root; /* magic, nbuckets and buckets, read once */
    uint64_t self_qs_addr, peer_qs_addr;
    uint64_t qs;            /* our word's value */
    uint64_t lazy_ns;       /* 0: even after every batch; else bump (+2)
                               this often while busy, even when idle */
    uint64_t last_bump_ns;
    struct kv_retired *retired;
    size_t nretired, cap_retired;
    uint64_t frees; /* retired pieces freed so far */
};

/* One key of a batched lookup, and what it found. */
struct kv_get {
    const char *key; /* [in] */
    size_t key_len;  /* [in] */
    int found;       /* [out] */
    int kind;        /* [out] KV_STRING or KV_INTEGER */
    const char *value;  /* [out] KV_STRING: value_len bytes, valid until
                           kv_get_release() */
    size_t value_len;
    int64_t integer;    /* [out] KV_INTEGER */
    /* private */
    uint32_t hash;
    uint64_t bucket_word;
    long match; /* the item of the entry found */
    unsigned char block[sizeof(struct kv_block) +
                        KV_BLOCK_MIN * sizeof(struct kv_item)];
    void *big_block;
    void *entry;
};

/* Build an empty table (the host, once) in memory from ops->alloc. */
int kv_store_format(const struct kv_mem_ops *ops, void *ctx,
                    uint64_t nbuckets, uint64_t *root_addr_out);
int kv_store_open(struct kv_store *s, const struct kv_mem_ops *ops, void *ctx,
                  uint64_t root_addr, enum kv_side side);
void kv_store_close(struct kv_store *s);

/* Around every batch of commands: enter before the first touch, leave
 * after the last; idle when nothing is waiting (before blocking); rest
 * when nothing came for a while (the side's idle hook: the dpu gives its
 * cached heap blocks back, which a busy side keeps for the next turn). */
int kv_store_enter(struct kv_store *s);
int kv_store_leave(struct kv_store *s);
int kv_store_idle(struct kv_store *s);
void kv_store_rest(struct kv_store *s);
size_t kv_store_pending(const struct kv_store *s); /* retired, not freed */

/* Look up n keys at once: one vectored read per level for all of them. */
int kv_store_get_many(struct kv_store *s, struct kv_get *gets, size_t n);
void kv_get_release(struct kv_get *gets, size_t n);

enum kv_write_op { KV_SET = 1, KV_DEL, KV_INCRBY };

/* How an INCRBY changes an integer entry's counter in place: a fetch-add,
 * or, near the ends of the int64 range, a compare-and-swap from the value
 * read (it lands only on that value, so it cannot wrap). */
enum kv_add { KV_ADD_NONE, KV_ADD_FETCH, KV_ADD_EXACT };

/* One write of a batch, and its outcome. */
struct kv_write {
    enum kv_write_op op; /* [in] */
    const char *key;     /* [in] */
    size_t key_len;
    const char *value;   /* [in] KV_SET */
    size_t value_len;
    int64_t by;          /* [in] KV_INCRBY */
    int status;          /* [out] 0, HMAF_EINVAL (KV_INCRBY: the value is
                            not an integer), HMAF_EOVERFLOW, or what the
                            store's memory answered */
    int deleted;         /* [out] KV_DEL: the key was there */
    int64_t result;      /* [out] KV_INCRBY: the new value */
    /* private */
    int state;
    int adding;          /* this round: an add on entry's counter
                            (KV_ADD_FETCH or KV_ADD_EXACT) */
    int64_t expect;      /* KV_ADD_EXACT: the counter it was computed on */
    uint64_t entry;
};

/* Apply n writes, each published (visible to both sides) when this
 * returns. Writes of one key, and of keys sharing a bucket, take effect
 * in array order; writes of other buckets take effect in array order too
 * unless a compare-and-swap had to be retried (then a later write of
 * another bucket may land first). Returns 0, or the error that stopped
 * the batch (the status of every write not done then). */
int kv_store_write_many(struct kv_store *s, struct kv_write *w, size_t n);
int kv_store_count(struct kv_store *s, uint64_t *count_out);

#endif
