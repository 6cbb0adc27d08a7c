/*
 * The dpu side of the host's heap (include/hmaf/heap.h).
 *
 * Small blocks come from a cache per size class, refilled by one ALLOC
 * that answers a batch (4 blocks at first, doubling with each refill up to
 * 128 or 16 KiB, so a session that allocates little takes little). Frees
 * are never kept for reuse here: a block may be freed by anyone, so only
 * the host knows whether it is still live, and reusing it locally could
 * hand out a block the host already gave to someone else. They queue in a
 * pending batch that one FREE carries when full, on flush, on destroy, and
 * from the watch thread once the session made no heap call for a turn.
 *
 * One mutex per session covers the caches and the batch, refills and
 * sends included: a refill is one round trip per up to 128 allocations,
 * and large blocks (one round trip each) go without it.
 *
 * hmaf_session_destroy() never waits on the host (session.h), yet gives
 * everything back: it posts its last FREEs without waiting for their
 * answers, and the agent serves the FREEs a session left in its mailbox
 * when it hears the farewell (host/serve.c), even those it had not seen
 * before. The watch thread's idle give-back, which does wait, stops
 * waiting as soon as destroy begins, so destroy never waits for the lock
 * either. What does not fit the slots destroy may take stays allocated,
 * and the host counts it lost (the `cached` word of those FREEs says how
 * much).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hmaf/error.h>
#include <hmaf/heap.h>

#include "core/session_int.h"
#include "proto/heap.h"
#include "util/stats.h"

#define BATCH_FIRST 4
#define BATCH_BYTES 16384u
/* Between two looks at an idle give-back's answer. */
#define IDLE_POLL_MIN_NS 10000l
#define IDLE_POLL_MAX_NS 1000000l
/* Slots destroy may take for its last FREEs: with the default 16 slots,
 * hmaf__mbox_hold_slot gives at most 8. */
#define LAST_FREE_SLOTS 8

struct heap_cache {
    uint32_t n;
    uint32_t next_batch;
    uint64_t block[HMAF_ALLOC_BATCH_MAX];
};

struct hmaf__session_heap {
    pthread_mutex_t lock; /* everything but the counters */
    struct heap_cache cache[HMAF_HEAP_CLASSES];
    _Atomic uint64_t cached_bytes; /* written under lock */
    struct hmaf_req_free pending;
    uint64_t bad_unreported; /* refused frees the next flush reports */
    uint64_t activity;       /* heap calls, ever */
    uint64_t idle_seen;      /* `activity` at the watch thread's last turn */
    _Atomic int closing;     /* destroy began: the watch thread stops waiting */
    int idle;                /* the watch thread's give-back is sending */
    _Atomic uint64_t allocs, frees, alloc_requests, free_requests, bad_frees;
};

#define heap_count(hp, field, n)                                               \
    atomic_fetch_add_explicit(&(hp)->field, (n), memory_order_relaxed)

static uint32_t batch_max(unsigned cls)
{
    uint64_t n = BATCH_BYTES / hmaf__heap_class_size(cls);

    return n < 1 ? 1 : n > HMAF_ALLOC_BATCH_MAX ? HMAF_ALLOC_BATCH_MAX
                                                  : (uint32_t)n;
}

static uint32_t batch_first(unsigned cls)
{
    return batch_max(cls) < BATCH_FIRST ? batch_max(cls) : BATCH_FIRST;
}

/* The session's heap state, made on first use. */
static struct hmaf__session_heap *heap_of(struct hmaf_session *s)
{
    struct hmaf__session_heap *hp = atomic_load(&s->heap);
    struct hmaf__session_heap *none = NULL;

    if (hp != NULL) {
        return hp;
    }
    hp = calloc(1, sizeof(*hp));
    if (hp == NULL) {
        return NULL;
    }
    pthread_mutex_init(&hp->lock, NULL);
    for (unsigned c = 0; c < HMAF_HEAP_CLASSES; c++) {
        hp->cache[c].next_batch = batch_first(c);
    }
    if (!atomic_compare_exchange_strong(&s->heap, &none, hp)) {
        pthread_mutex_destroy(&hp->lock);
        free(hp);
        hp = none; /* another thread's */
    }
    return hp;
}

/* The session's heap lock, waiting at most rpc_timeout_ms: its holder may
 * be waiting on a host that stopped answering, and the threads queued
 * behind it would otherwise take one timeout each, one after the other.
 * pthread_mutex_timedlock's deadline is on CLOCK_REALTIME (a clock step
 * moves this rare timeout; pthread_mutex_clocklock is not seen by every
 * sanitizer's interceptors). */
static int lock_heap(struct hmaf_session *s, struct hmaf__session_heap *hp)
{
    struct timespec until;

    if (pthread_mutex_trylock(&hp->lock) == 0) {
        return 0;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += s->mbox.timeout_ms / 1000;
    until.tv_nsec += (long)(s->mbox.timeout_ms % 1000) * 1000000l;
    if (until.tv_nsec >= 1000000000l) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000l;
    }
    return pthread_mutex_timedlock(&hp->lock, &until) == 0 ? 0
                                                           : HMAF_ETIMEDOUT;
}

/* One ALLOC; the answer checked: blocks of at least size bytes, aligned,
 * no more than asked. */
static int alloc_request(struct hmaf_session *s, struct hmaf__session_heap *hp,
                         uint64_t size, uint16_t count,
                         struct hmaf_resp_alloc *out)
{
    struct hmaf_req_alloc r = {
        .size = size,
        .count = count,
        .cached = atomic_load_explicit(&hp->cached_bytes,
                                       memory_order_relaxed),
    };
    uint8_t req[HMAF_REQ_ALLOC_SIZE];
    uint8_t resp[HMAF_MBOX_RESP_MAX];
    uint16_t req_len = (uint16_t)hmaf__req_alloc_encode(&r, req);
    uint16_t resp_len = 0;
    int ret = hmaf__session_call(s, HMAF_OP_ALLOC, req, req_len, resp,
                                 sizeof(resp), &resp_len);

    heap_count(hp, alloc_requests, 1);
    if (ret == 0) {
        ret = hmaf__resp_alloc_decode(resp, resp_len, out);
    }
    if (ret == 0 && (out->count > count || out->block_size < size)) {
        ret = HMAF_EPROTO;
    }
    for (uint16_t i = 0; ret == 0 && i < out->count; i++) {
        if (out->addr[i] == 0 || out->addr[i] % HMAF_HEAP_ALIGN != 0) {
            ret = HMAF_EPROTO;
        }
    }
    return ret;
}

/* The watch thread's FREE in the slot it holds: waits for its answer
 * like any call, but only until destroy begins. Then it stops waiting and
 * keeps the slot (the host may still answer into it) for the session's
 * last moments. */
static int idle_call(struct hmaf_session *s, struct hmaf__session_heap *hp,
                     uint32_t slot, const uint8_t *req, uint16_t req_len,
                     uint8_t *resp, uint16_t *resp_len_out)
{
    struct hmaf__mbox_pending p;
    long sleep_ns = IDLE_POLL_MIN_NS;
    int ret = hmaf__mbox_send(&s->mbox, slot, HMAF_OP_FREE, req, req_len, &p);

    /* Sent (0): look for the answer until there is one (0 again) or an
     * error; HMAF_EINPROGRESS means not yet. */
    if (ret == 0) {
        ret = HMAF_EINPROGRESS;
    }
    while (ret == HMAF_EINPROGRESS) {
        if (atomic_load(&hp->closing)) {
            return HMAF_ECONNRESET;
        }
        nanosleep(&(struct timespec){0, sleep_ns}, NULL);
        sleep_ns = sleep_ns * 2 > IDLE_POLL_MAX_NS ? IDLE_POLL_MAX_NS
                                                    : sleep_ns * 2;
        ret = hmaf__mbox_poll(&s->mbox, &p, resp, HMAF_RESP_FREE_SIZE,
                              resp_len_out);
    }
    hmaf__mbox_release_slot(&s->mbox, slot);
    return hmaf__session_fail(s, ret);
}

/* Send the pending frees, if any. The watch thread needs a slot of its
 * own first; without one (posted requests hold their share) the batch
 * stays, full or not, for a later turn: HMAF_EBUSY. */
static int send_frees_locked(struct hmaf_session *s,
                             struct hmaf__session_heap *hp)
{
    uint8_t req[HMAF_MBOX_REQ_LONG_MAX];
    uint8_t resp[HMAF_RESP_FREE_SIZE];
    uint16_t req_len, resp_len = 0, bad = 0;
    uint32_t slot = 0;
    int ret;

    if (hp->pending.count == 0) {
        return 0;
    }
    if (hp->idle && hmaf__mbox_hold_slot(&s->mbox, &slot) < 0) {
        return HMAF_EBUSY;
    }
    hp->pending.cached = atomic_load(&hp->cached_bytes);
    req_len = (uint16_t)hmaf__req_free_encode(&hp->pending, req);
    /* Sent or not, the batch is over: a session that cannot reach its
     * host has nothing left to free. */
    hp->pending.count = 0;
    ret = hp->idle ? idle_call(s, hp, slot, req, req_len, resp, &resp_len)
                   : hmaf__session_call(s, HMAF_OP_FREE, req, req_len, resp,
                                        sizeof(resp), &resp_len);
    heap_count(hp, free_requests, 1);
    if (ret == 0) {
        ret = hmaf__resp_free_decode(resp, resp_len, &bad);
    }
    if (ret == 0) {
        heap_count(hp, bad_frees, bad);
        hp->bad_unreported += bad;
    }
    return ret;
}

/* A full batch (the watch thread may have found no slot for one) is
 * sent first; the send's outcome. Only when the watch thread still finds
 * no slot is there no room after. */
static int make_room_locked(struct hmaf_session *s,
                            struct hmaf__session_heap *hp)
{
    return hp->pending.count < HMAF_FREE_BATCH_MAX ? 0
                                                    : send_frees_locked(s, hp);
}

static int queue_free_locked(struct hmaf_session *s,
                             struct hmaf__session_heap *hp, uint64_t addr)
{
    int ret = make_room_locked(s, hp);

    if (hp->pending.count == HMAF_FREE_BATCH_MAX) {
        return ret;
    }
    hp->pending.addr[hp->pending.count++] = addr;
    if (hp->pending.count == HMAF_FREE_BATCH_MAX) {
        ret = send_frees_locked(s, hp);
    }
    return ret;
}

/* Every cached block and pending free back to the host. A block leaves
 * its cache only once there is room for it in the batch. */
static int give_back_locked(struct hmaf_session *s,
                            struct hmaf__session_heap *hp)
{
    int ret = 0;

    for (unsigned c = 0; c < HMAF_HEAP_CLASSES && ret == 0; c++) {
        struct heap_cache *cache = &hp->cache[c];
        while (cache->n > 0 && (ret = make_room_locked(s, hp)) == 0) {
            cache->n--;
            atomic_fetch_sub(&hp->cached_bytes, hmaf__heap_class_size(c));
            hp->pending.addr[hp->pending.count++] = cache->block[cache->n];
        }
        if (cache->n == 0) {
            cache->next_batch = batch_first(c);
        }
    }
    return ret == 0 ? send_frees_locked(s, hp) : ret;
}

static int refill_locked(struct hmaf_session *s, struct hmaf__session_heap *hp,
                         unsigned cls)
{
    struct heap_cache *cache = &hp->cache[cls];
    uint64_t size = hmaf__heap_class_size(cls);
    struct hmaf_resp_alloc out;
    int ret = alloc_request(s, hp, size, (uint16_t)cache->next_batch, &out);

    if (ret == 0 && out.block_size != size) {
        ret = HMAF_EPROTO; /* the classes are the same on both sides */
    }
    if (ret < 0) {
        return ret;
    }
    memcpy(cache->block, out.addr, out.count * sizeof(out.addr[0]));
    cache->n = out.count;
    atomic_fetch_add(&hp->cached_bytes, out.count * size);
    cache->next_batch = cache->next_batch * 2 > batch_max(cls)
                            ? batch_max(cls)
                            : cache->next_batch * 2;
    return 0;
}

static int short_of_room(int ret)
{
    return ret == HMAF_ENOMEM || ret == HMAF_ENOSPC;
}

static int alloc_small(struct hmaf_session *s, struct hmaf__session_heap *hp,
                       size_t size, uint64_t *addr_out)
{
    unsigned cls = hmaf__heap_class_of(size);
    struct heap_cache *cache = &hp->cache[cls];
    int ret = lock_heap(s, hp);

    if (ret < 0) {
        return ret;
    }
    hp->activity++;
    if (cache->n == 0) {
        ret = refill_locked(s, hp, cls);
        /* Room may be held by our own frees and other classes' caches. */
        if (short_of_room(ret) &&
            (hp->pending.count > 0 || atomic_load(&hp->cached_bytes) > 0) &&
            give_back_locked(s, hp) == 0) {
            ret = refill_locked(s, hp, cls);
        }
    }
    if (ret == 0) {
        *addr_out = cache->block[--cache->n];
        atomic_fetch_sub(&hp->cached_bytes, hmaf__heap_class_size(cls));
    }
    pthread_mutex_unlock(&hp->lock);
    return ret;
}

static int alloc_large(struct hmaf_session *s, struct hmaf__session_heap *hp,
                       size_t size, uint64_t *addr_out)
{
    struct hmaf_resp_alloc out;
    int ret = alloc_request(s, hp, size, 1, &out);

    if (short_of_room(ret) && (ret = lock_heap(s, hp)) == 0) {
        ret = give_back_locked(s, hp);
        pthread_mutex_unlock(&hp->lock);
        ret = ret == 0 ? alloc_request(s, hp, size, 1, &out) : ret;
    }
    if (ret == 0) {
        *addr_out = out.addr[0];
    }
    return ret;
}

HMAF_API int hmaf_session_alloc(hmaf_session_t *session, size_t size,
                                uint64_t *addr_out)
{
    struct hmaf__session_heap *hp;
    uint64_t addr = 0;
    int ret;

    if (session == NULL || addr_out == NULL || size == 0) {
        return HMAF_EINVAL;
    }
    hp = heap_of(session);
    if (hp == NULL) {
        return HMAF_ENOMEM;
    }
    ret = size <= HMAF_HEAP_SMALL_MAX ? alloc_small(session, hp, size, &addr)
                                      : alloc_large(session, hp, size, &addr);
    if (ret == 0) {
        heap_count(hp, allocs, 1);
        *addr_out = addr;
    }
    return ret;
}

HMAF_API int hmaf_session_free(hmaf_session_t *session, uint64_t addr)
{
    struct hmaf__session_heap *hp;
    int ret;

    if (session == NULL || addr == 0 || addr % HMAF_HEAP_ALIGN != 0) {
        return HMAF_EINVAL;
    }
    hp = heap_of(session);
    if (hp == NULL) {
        return HMAF_ENOMEM;
    }
    ret = lock_heap(session, hp);
    if (ret < 0) {
        return ret; /* not queued */
    }
    hp->activity++;
    ret = queue_free_locked(session, hp, addr);
    pthread_mutex_unlock(&hp->lock);
    heap_count(hp, frees, 1);
    return ret;
}

HMAF_API int hmaf_session_heap_flush(hmaf_session_t *session)
{
    struct hmaf__session_heap *hp;
    int ret;

    if (session == NULL) {
        return HMAF_EINVAL;
    }
    hp = atomic_load(&session->heap);
    if (hp == NULL) {
        return 0; /* nothing taken, nothing to give */
    }
    ret = lock_heap(session, hp);
    if (ret < 0) {
        return ret;
    }
    ret = give_back_locked(session, hp);
    if (ret == 0 && hp->bad_unreported > 0) {
        ret = HMAF_EINVAL;
    }
    hp->bad_unreported = 0;
    pthread_mutex_unlock(&hp->lock);
    return ret;
}

/* HMAF 0.1's hmaf_session_heap_stats_t, the smallest a caller may pass. */
HMAF__STATS_SIZE_MIN_DEFINE(SESSION_HEAP_STATS_SIZE_MIN,
                            hmaf_session_heap_stats_t, bad_frees);

HMAF_API int hmaf_session_heap_stats(hmaf_session_t *session,
                                     hmaf_session_heap_stats_t *stats_out)
{
    struct hmaf__session_heap *hp;
    hmaf_session_heap_stats_t st = {0};
    size_t size;

    if (session == NULL ||
        hmaf__stats_size(stats_out, SESSION_HEAP_STATS_SIZE_MIN, &size) < 0) {
        return HMAF_EINVAL;
    }
    hp = atomic_load(&session->heap);
    if (hp != NULL) {
        pthread_mutex_lock(&hp->lock);
        st.allocs = atomic_load(&hp->allocs);
        st.frees = atomic_load(&hp->frees);
        st.alloc_requests = atomic_load(&hp->alloc_requests);
        st.free_requests = atomic_load(&hp->free_requests);
        st.bad_frees = atomic_load(&hp->bad_frees);
        st.bytes_cached = atomic_load(&hp->cached_bytes);
        st.frees_pending = hp->pending.count;
        pthread_mutex_unlock(&hp->lock);
    }
    hmaf__stats_put(stats_out, size, &st, sizeof(st));
    return 0;
}

void hmaf__session_heap_idle(struct hmaf_session *s)
{
    struct hmaf__session_heap *hp = atomic_load(&s->heap);

    /* Busy with a call: not idle. */
    if (hp == NULL || pthread_mutex_trylock(&hp->lock) != 0) {
        return;
    }
    if (hp->activity == hp->idle_seen &&
        (hp->pending.count > 0 || atomic_load(&hp->cached_bytes) > 0)) {
        hp->idle = 1;
        (void)give_back_locked(s, hp);
        hp->idle = 0;
    }
    hp->idle_seen = hp->activity;
    pthread_mutex_unlock(&hp->lock);
}

/* The addresses destroy gives back, the app's frees first (only they
 * would be lost for good), then the cached blocks; `dropped`: the bytes
 * of cached blocks beyond `room`, which stay allocated. */
struct last_frees {
    uint64_t addr[HMAF_FREE_BATCH_MAX * LAST_FREE_SLOTS];
    uint32_t n;
    uint64_t dropped;
};

static void collect_last_frees(struct hmaf__session_heap *hp, uint32_t room,
                               struct last_frees *lf)
{
    lf->n = 0;
    lf->dropped = 0;
    for (uint16_t i = 0; i < hp->pending.count && lf->n < room; i++) {
        lf->addr[lf->n++] = hp->pending.addr[i];
    }
    hp->pending.count = 0;
    for (unsigned c = 0; c < HMAF_HEAP_CLASSES; c++) {
        struct heap_cache *cache = &hp->cache[c];
        for (; cache->n > 0; cache->n--) {
            if (lf->n < room) {
                lf->addr[lf->n++] = cache->block[cache->n - 1];
            } else {
                lf->dropped += hmaf__heap_class_size(c);
            }
        }
    }
    atomic_store(&hp->cached_bytes, 0);
}

static uint32_t last_frees_wanted(const struct hmaf__session_heap *hp)
{
    uint32_t n = hp->pending.count;

    for (unsigned c = 0; c < HMAF_HEAP_CLASSES; c++) {
        n += hp->cache[c].n;
    }
    return (n + HMAF_FREE_BATCH_MAX - 1) / HMAF_FREE_BATCH_MAX;
}

/* Post the last FREEs, one per slot we may take, without waiting for an
 * answer: the agent serves them even once we are gone. Each says the
 * session keeps `dropped` bytes, whichever the agent serves last. */
static void post_last_frees_locked(struct hmaf_session *s,
                                   struct hmaf__session_heap *hp)
{
    struct last_frees lf;
    uint32_t slots[LAST_FREE_SLOTS];
    uint32_t wanted = last_frees_wanted(hp), held = 0;

    while (held < wanted && held < LAST_FREE_SLOTS &&
           hmaf__mbox_hold_slot(&s->mbox, &slots[held]) == 0) {
        held++;
    }
    collect_last_frees(hp, held * HMAF_FREE_BATCH_MAX, &lf);
    for (uint32_t k = 0; k < held; k++) {
        struct hmaf_req_free batch = {.cached = lf.dropped};
        uint8_t req[HMAF_MBOX_REQ_LONG_MAX];
        struct hmaf__mbox_pending p;
        uint32_t first = k * HMAF_FREE_BATCH_MAX;
        while (batch.count < HMAF_FREE_BATCH_MAX &&
               first + batch.count < lf.n) {
            batch.addr[batch.count] = lf.addr[first + batch.count];
            batch.count++;
        }
        if (batch.count > 0) {
            (void)hmaf__mbox_send(
                &s->mbox, slots[k], HMAF_OP_FREE, req,
                (uint16_t)hmaf__req_free_encode(&batch, req), &p);
            heap_count(hp, free_requests, 1);
        }
    }
}

void hmaf__session_heap_close(struct hmaf_session *s)
{
    struct hmaf__session_heap *hp = atomic_load(&s->heap);

    /* A forked child's copy: the lock may have been held at the fork, and
     * the blocks are the parent's to give back. */
    if (hp == NULL || s->orphan) {
        return;
    }
    atomic_store(&hp->closing, 1); /* an idle give-back stops waiting */
    pthread_mutex_lock(&hp->lock);
    post_last_frees_locked(s, hp);
    pthread_mutex_unlock(&hp->lock);
}

void hmaf__session_heap_free(struct hmaf_session *s)
{
    struct hmaf__session_heap *hp = atomic_load(&s->heap);

    if (hp == NULL) {
        return;
    }
    if (!s->orphan) {
        pthread_mutex_destroy(&hp->lock);
    }
    free(hp);
}
