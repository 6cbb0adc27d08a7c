/*
 * Per-thread reader slots: the data path's alternative to a lock.
 *
 * Each thread that uses a session owns one slot (found through a small
 * thread-local cache, claimed on first use). A read-side section makes the
 * slot's sequence odd on entry and even on exit; a writer that replaced a
 * shared structure waits until every slot that was odd has moved on (a
 * grace period) before it frees what it replaced. With the kernel's
 * membarrier the reader pays no fence at all: the writer makes every
 * running thread execute one instead.
 *
 * The slot also holds the owner's hot counters, written by the owner only,
 * so counting costs a plain load and store, no locked instruction.
 */
#ifndef HMAF_CORE_READERS_H
#define HMAF_CORE_READERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "util/compiler.h"

/* Slots for the application's threads, then for the library's own (a
 * session's watch thread, its mappings' fault threads): these never take
 * an application's slot while one of their own is free. */
#define HMAF_READER_APP_SLOTS 128
#define HMAF_READER_LIB_SLOTS 16
#define HMAF_READER_SLOTS (HMAF_READER_APP_SLOTS + HMAF_READER_LIB_SLOTS)

enum hmaf__reader_counter {
    HMAF_RC_OPS,
    HMAF_RC_BYTES_READ,
    HMAF_RC_BYTES_WRITTEN,
    HMAF_RC_CACHE_HITS,
    HMAF_RC_COUNT
};

/* Two lines, so that no other slot shares them. A small read touches the
 * first (sequence, counters, hint) and the hint's copy of its region's
 * range, rmem and access in the second: a hint, fitting or not, never
 * touches its region (see hmaf__regcache_find_hinted). */
struct hmaf__reader {
    _Atomic uint64_t seq;    /* odd while inside a read-side section */
    _Atomic int owner;       /* thread id, 0 when free */
    _Atomic uint64_t counters[HMAF_RC_COUNT]; /* written by the owner only */
    uint64_t hint_gen;  /* the region this thread found last, valid while */
    void *hint;         /* the cache's region set has generation hint_gen */
    void *queue; /* the owner's posted requests (core/request.c) */
    uint64_t hint_base;
    uint64_t hint_len;
    void *hint_rmem;
    unsigned hint_access;
    uint64_t hint_now; /* the coarse time the hint was found at */
} __attribute__((aligned(128)));

struct hmaf__readers {
    uint64_t id;           /* unique per process lifetime: keys the cache */
    /* Called by synchronize once no section is left: waits until the
     * transfers posted inside sections and still in flight are done
     * (core/request.c), or NULL. */
    void (*drain)(void *arg);
    void *drain_arg;
    pthread_mutex_t claim_lock;
    struct hmaf__reader slot[HMAF_READER_SLOTS];
};

int hmaf__readers_init(struct hmaf__readers *rs);
void hmaf__readers_fini(struct hmaf__readers *rs);

/* This thread's slot: 0, or -ENOSPC with more live threads than slots
 * (hmaf__reader_get, below, looks in the thread's cache first). */
int hmaf__reader_get_slow(struct hmaf__readers *rs, struct hmaf__reader **out);
/* Call once at the start of a library thread: its slots are the library's. */
void hmaf__reader_library_thread(void);

/* Wait until every read-side section that began before this call ended,
 * and what such sections left in flight (drain) completed. */
void hmaf__readers_synchronize(struct hmaf__readers *rs);

/* Index of a slot in its set, for handles that must name it. */
static inline unsigned hmaf__reader_index(const struct hmaf__readers *rs,
                                          const struct hmaf__reader *r)
{
    return (unsigned)(r - rs->slot);
}

/* Sum of one counter over all slots. */
uint64_t hmaf__readers_sum(struct hmaf__readers *rs,
                           enum hmaf__reader_counter c);

extern int hmaf__readers_fence_free; /* membarrier registered */

struct hmaf__reader_cache_entry {
    uint64_t id;
    struct hmaf__reader *reader;
};
#define HMAF_READER_CACHE 8
extern HMAF_TLS struct hmaf__reader_cache_entry
    hmaf__reader_cache[HMAF_READER_CACHE];

/* The cache's other entries, or a slot claimed (readers.c). */
int hmaf__reader_get_cached(struct hmaf__readers *rs,
                            struct hmaf__reader **out);

/* The slot this thread used last, if it is one of the set with this id
 * (hmaf__readers.id), else NULL. */
static inline struct hmaf__reader *hmaf__reader_last_of(uint64_t id)
{
    return hmaf__reader_cache[0].id == id ? hmaf__reader_cache[0].reader
                                          : NULL;
}

/* The slot this thread used last, if it is one of rs, else NULL (then
 * hmaf__reader_get finds or claims one). The cache's first entry holds
 * it: a thread that keeps to one session finds its slot with one
 * comparison and no call. */
static inline struct hmaf__reader *
hmaf__reader_last(const struct hmaf__readers *rs)
{
    return hmaf__reader_last_of(rs->id);
}

static inline int hmaf__reader_get(struct hmaf__readers *rs,
                                   struct hmaf__reader **out)
{
    struct hmaf__reader *r = hmaf__reader_last(rs);

    if (hmaf__likely(r != NULL)) {
        *out = r;
        return 0;
    }
    return hmaf__reader_get_cached(rs, out);
}

/* The same as a pointer: NULL with more live threads than slots. Its
 * caller keeps the slot in a register, not behind an address. */
static inline struct hmaf__reader *hmaf__reader_mine(struct hmaf__readers *rs)
{
    struct hmaf__reader *r = hmaf__reader_last(rs);

    if (hmaf__unlikely(r == NULL) && hmaf__reader_get_cached(rs, &r) < 0) {
        return NULL;
    }
    return r;
}

static inline void hmaf__reader_enter(struct hmaf__reader *r)
{
    uint64_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);

    atomic_store_explicit(&r->seq, seq + 1, memory_order_relaxed);
    /* Order the store before the section's loads: the writer's membarrier
     * does it for us, or else a full fence here. */
    if (hmaf__readers_fence_free) {
        atomic_signal_fence(memory_order_seq_cst);
    } else {
        atomic_thread_fence(memory_order_seq_cst);
    }
}

static inline void hmaf__reader_exit(struct hmaf__reader *r)
{
    uint64_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);

    atomic_store_explicit(&r->seq, seq + 1, memory_order_release);
}

static inline void hmaf__reader_count(struct hmaf__reader *r,
                                      enum hmaf__reader_counter c, uint64_t n)
{
    uint64_t v = atomic_load_explicit(&r->counters[c], memory_order_relaxed);

    atomic_store_explicit(&r->counters[c], v + n, memory_order_relaxed);
}

#endif
