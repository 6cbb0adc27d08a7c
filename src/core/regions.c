/*
 * The session's regions: the miss path (REGISTER through the mailbox,
 * import, into the region cache), giving regions back (on the next
 * REGISTERs, or in batched DEREGISTERs), and revocation (the look at the
 * host's epoch, dropping the cache, the acknowledgement). The cache itself
 * is regcache.c.
 */
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>
#include <hmaf/types.h>

#include "core/session_int.h"
#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"

/* ---- giving regions back ---- */

void hmaf__session_release_imports(struct hmaf__region *list)
{
    for (struct hmaf__region *r = list; r != NULL; r = r->next_victim) {
        hmaf__engine_rmem_release(r->rmem);
    }
}

/* Sends what req gathered, unless the session is over; empties it. */
static void send_deregister(struct hmaf_session *s,
                            struct hmaf_req_deregister *req)
{
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    uint16_t len;

    if (req->count > 0 && !atomic_load(&s->dead)) {
        len = (uint16_t)hmaf__req_deregister_encode(req, buf);
        (void)hmaf__mbox_call(&s->mbox, HMAF_OP_DEREGISTER, buf, len, NULL, 0,
                              NULL);
    }
    req->count = 0;
}

/* Each answer the agent gave is one hold: give them back, as many of one
 * epoch as a DEREGISTER carries at once, unless the session is over
 * (closing the channel returns them all). Best effort: the agent forgets
 * our holds at session end anyway. */
void hmaf__session_give_back(struct hmaf_session *s, struct hmaf__region *list)
{
    struct hmaf_req_deregister req = {.count = 0};

    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        if (req.count == HMAF_DEREGISTER_IDS_MAX ||
            (req.count > 0 && req.epoch != list->epoch)) {
            send_deregister(s, &req);
        }
        req.epoch = list->epoch;
        req.region_id[req.count++] = list->id;
        free(list);
        list = next;
    }
    send_deregister(s, &req);
}

static void free_regions(struct hmaf__region *list)
{
    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        free(list);
        list = next;
    }
}

/*
 * Evicted regions are not given back by the miss that evicted them — a
 * batch of them was several DEREGISTER round trips in its way — but on
 * the next misses: each REGISTER carries up to GIVE_PER_REGISTER of them,
 * of one epoch, and the agent ends those holds after it has answered,
 * while we import and read. A few per miss keep that work on the agent
 * shorter than the time to our next request, and still give back several
 * times faster than misses evict (one region per miss on average, in
 * batches). What no REGISTER took within a turn of the watch thread, it
 * gives back in DEREGISTERs (hmaf__session_give_back_waiting).
 */
#define GIVE_PER_REGISTER 8

static void queue_evicted(struct hmaf_session *s, struct hmaf__region *list)
{
    struct hmaf__give_queue *q = &s->to_give;
    struct hmaf__region *last = list;
    uint64_t n = 1;

    while (last->next_victim != NULL) {
        last = last->next_victim;
        n++;
    }
    pthread_mutex_lock(&s->give_lock);
    if (q->tail != NULL) {
        q->tail->next_victim = list;
    } else {
        q->head = list;
    }
    q->tail = last;
    q->queued += n;
    pthread_mutex_unlock(&s->give_lock);
}

/* Under give_lock: up to max regions off the head of the queue; with
 * one_epoch, only as many as share the first one's epoch. */
static struct hmaf__region *take_locked(struct hmaf__give_queue *q,
                                        uint64_t max, int one_epoch)
{
    struct hmaf__region *first = q->head, *last = NULL, *r = q->head;
    uint64_t n = 0;

    while (r != NULL && n < max && (!one_epoch || r->epoch == first->epoch)) {
        last = r;
        r = r->next_victim;
        n++;
    }
    if (last == NULL) {
        return NULL;
    }
    q->head = r;
    if (r == NULL) {
        q->tail = NULL;
    }
    last->next_victim = NULL;
    q->taken += n;
    return first;
}

/* Fills the give-back part of a REGISTER; returns the regions it names,
 * to be freed once the request has gone. */
static struct hmaf__region *take_for_register(struct hmaf_session *s,
                                              struct hmaf_req_register *req)
{
    struct hmaf__region *list;

    pthread_mutex_lock(&s->give_lock);
    list = take_locked(&s->to_give, GIVE_PER_REGISTER, 1);
    pthread_mutex_unlock(&s->give_lock);
    for (struct hmaf__region *r = list; r != NULL; r = r->next_victim) {
        req->give_epoch = r->epoch;
        req->give_id[req->give_count++] = r->id;
    }
    return list;
}

void hmaf__session_give_back_waiting(struct hmaf_session *s)
{
    struct hmaf__give_queue *q = &s->to_give;
    struct hmaf__region *list = NULL;

    pthread_mutex_lock(&s->give_lock);
    if (q->waiting > q->taken) {
        list = take_locked(q, q->waiting - q->taken, 0);
    }
    q->waiting = q->queued;
    pthread_mutex_unlock(&s->give_lock);
    hmaf__session_give_back(s, list);
}

/* Under give_lock: a revocation's ack ended the holds of regions answered
 * before `epoch`; those leave the queue unsent (counted as taken). */
static void unqueue_older_locked(struct hmaf__give_queue *q, uint64_t epoch)
{
    struct hmaf__region **link = &q->head;

    q->tail = NULL;
    while (*link != NULL) {
        struct hmaf__region *r = *link;
        if (r->epoch < epoch) {
            *link = r->next_victim;
            free(r);
            q->taken++;
        } else {
            q->tail = r;
            link = &r->next_victim;
        }
    }
}

/* The whole queue, left empty. */
static struct hmaf__region *take_all(struct hmaf__give_queue *q)
{
    struct hmaf__region *list = q->head;

    *q = (struct hmaf__give_queue){.queued = 0};
    return list;
}

void hmaf__session_drop_evicted(struct hmaf_session *s)
{
    struct hmaf__region *list;

    /* A forked child's copy has no other thread, but its lock is as the
     * fork found it: maybe held, for ever, by a thread of the parent's
     * that the child does not have. */
    if (s->orphan) {
        free_regions(take_all(&s->to_give));
        return;
    }
    pthread_mutex_lock(&s->give_lock);
    list = take_all(&s->to_give);
    pthread_mutex_unlock(&s->give_lock);
    free_regions(list);
}

/* Region release: drop the imports, then give the agent its holds back —
 * in that order, because the agent may destroy an export once the last
 * hold is back, and an engine like doca needs the import gone first.
 * Evicted regions' holds go back later (queue_evicted). */
static void release_regions(void *arg, struct hmaf__region *list, int evicted)
{
    struct hmaf_session *s = arg;

    if (!s->orphan) { /* an orphan's imports are the parent's */
        hmaf__session_release_imports(list);
    }
    if (evicted && !s->orphan) {
        queue_evicted(s, list);
    } else {
        hmaf__session_give_back(s, list);
    }
}

int hmaf__regions_init(struct hmaf_session *s)
{
    const hmaf_session_params_t *p = &s->params;
    int ret = hmaf__regcache_init(&s->cache, p->cache_max_regions,
                                  p->cache_max_bytes, release_regions, s);

    if (ret == 0 && (s->ops->flags & HMAF_ENGINE_ASYNC)) {
        /* posted requests are in flight outside any section */
        s->cache.readers.drain = hmaf__request_drain;
        s->cache.readers.drain_arg = s;
    }
    return ret;
}

/* ---- the miss path ---- */

/* Is addr covered by a cached region now? */
static int cached(struct hmaf_session *s, uint64_t addr)
{
    struct hmaf__reader *reader;
    struct hmaf__rc_hit hit;
    int found;

    if (hmaf__regcache_enter(&s->cache, &reader) < 0) {
        return 0;
    }
    found = hmaf__regcache_find(&s->cache, addr, hmaf__coarse_now_ns(),
                                &hit) != NULL;
    hmaf__regcache_exit(reader);
    return found;
}

/* Where a region's engine import lives: in the region's own allocation,
 * right after it, so that a miss allocates once. */
#define RMEM_AT                                                                \
    ((sizeof(struct hmaf__region) + HMAF_ENGINE_RMEM_ALIGN - 1) /              \
     HMAF_ENGINE_RMEM_ALIGN * HMAF_ENGINE_RMEM_ALIGN)

/* Not imported yet (rmem NULL): import_region does. */
static struct hmaf__region *new_region(struct hmaf_session *s,
                                       const struct hmaf_resp_register *resp)
{
    size_t size = RMEM_AT + hmaf__engine_rmem_size(s->ops);
    /* Cache-line aligned, though a hit no longer reads it: the cache's
     * leaf keeps copies of the fields a hit needs. */
    struct hmaf__region *r =
        aligned_alloc(HMAF_CACHELINE, (size + HMAF_CACHELINE - 1) /
                                          HMAF_CACHELINE * HMAF_CACHELINE);

    if (r == NULL) {
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->iv.base = resp->base;
    r->iv.len = resp->len;
    r->id = resp->region_id;
    r->epoch = resp->epoch;
    r->access = resp->access;
    atomic_init(&r->last_used, hmaf__coarse_now_ns()); /* a use */
    return r;
}

static int import_region(struct hmaf_session *s, struct hmaf__region *r,
                         const struct hmaf_resp_register *resp)
{
    return hmaf__engine_rmem_import_at(
        (char *)r + RMEM_AT, s->ep, r->iv.base, r->iv.len, r->access,
        resp->export_blob.data, resp->export_blob.len, &r->rmem);
}

/* An answer the cache would not take, handed back at once: import and
 * hold. */
static void refuse_region(struct hmaf_session *s, struct hmaf__region *r)
{
    r->next_victim = NULL;
    release_regions(s, r, 0);
}

/* Why an answer could not be cached, and asking again may help. */
enum ask_again {
    ASK_DONE,    /* cached, or an error asking again will not cure */
    ASK_REVOKED, /* the host revoked since we asked: the answer was right
                    when given, a fresh one may stay so */
    ASK_ODD,     /* an answer an honest agent would hardly give */
};

/* Has this session confirmed a revocation newer than an answer of
 * `epoch`? Its acknowledgement ended the answer's hold on the agent
 * (host/holds.c), which may have ended the engine registration the
 * answer's export belongs to before we imported it: an import failing
 * then is no fault of anyone's. Read under epoch_lock, which the
 * acknowledgement is written under, after epoch_seen: an ack the agent
 * acted on is seen here. */
static int answer_outdated(struct hmaf_session *s, uint64_t epoch)
{
    uint64_t seen;

    pthread_mutex_lock(&s->epoch_lock);
    seen = s->epoch_seen;
    pthread_mutex_unlock(&s->epoch_lock);
    return seen > epoch;
}

/* Inserts of one answer whose overlap left the cache before we looked. */
#define INSERT_RETRIES 4

/*
 * Put r in the cache. An overlapping region is most often r's own
 * exposure, cached by another thread first: then addr is covered
 * (*covered_out). When that region left again before we looked (another
 * thread's insert evicted it, or a revocation dropped it), r itself is
 * inserted again: the answer is as good as before.
 */
static enum hmaf__regcache_insert_result
insert_answer(struct hmaf_session *s, struct hmaf__region *r, uint64_t addr,
              int *covered_out)
{
    enum hmaf__regcache_insert_result result;

    *covered_out = 0;
    for (int tries = 0;; tries++) {
        uint64_t evicted = 0;
        result = hmaf__regcache_insert(&s->cache, r, &evicted);
        hmaf__count(s, evictions, evicted);
        if (result != HMAF_REGCACHE_OVERLAPS) {
            return result;
        }
        if (cached(s, addr)) {
            *covered_out = 1;
            return result;
        }
        if (tries == INSERT_RETRIES) {
            return result;
        }
    }
}

/*
 * Import the region the agent answered with and put it in the cache.
 * Returns 0 when addr is now covered, or an error. *again_out is set (and
 * HMAF_EPROTO returned) when a revocation stands between the answer and
 * the cache: one the cache already applied is newer than the answer
 * (ASK_REVOKED when the answer is no older than the epoch this session
 * had seen when it asked: the agent answered in good faith), or a cached
 * region overlaps the answer without covering addr (one not yet applied
 * here is behind it). Asking again after a look may succeed. So it may
 * after an import that failed once this session confirmed a revocation
 * newer than the answer (ASK_REVOKED too: answer_outdated).
 */
static int cache_region(struct hmaf_session *s,
                        const struct hmaf_resp_register *resp, uint64_t addr,
                        uint64_t asked_in, enum ask_again *again_out)
{
    struct hmaf__region *r = new_region(s, resp);
    enum hmaf__regcache_insert_result result;
    int covered, ret;

    if (r == NULL) {
        return HMAF_ENOMEM;
    }
    if (resp->export_blob.len > s->limits.max_blob) {
        hmaf__log_error("session %llu: export of %u bytes exceeds the %s "
                        "engine's max_blob %u",
                        (unsigned long long)s->session_id,
                        (unsigned)resp->export_blob.len, s->ops->name,
                        s->limits.max_blob);
        free(r);
        return HMAF_EPROTO;
    }
    ret = import_region(s, r, resp);
    if (ret < 0) {
        free(r);
        if (answer_outdated(s, resp->epoch)) {
            /* Its hold ended with our ack: nothing to give back. */
            *again_out = ASK_REVOKED;
            return HMAF_EPROTO;
        }
        return ret;
    }
    hmaf__count(s, registrations, 1);
    result = insert_answer(s, r, addr, &covered);
    if (result == HMAF_REGCACHE_ADDED) {
        return 0;
    }
    refuse_region(s, r); /* the agent gets its hold back */
    if (result == HMAF_REGCACHE_NOMEM) {
        return HMAF_ENOMEM;
    }
    if (covered) {
        return 0; /* another thread cached the same region first */
    }
    *again_out = result == HMAF_REGCACHE_STALE && resp->epoch >= asked_in
                     ? ASK_REVOKED
                     : ASK_ODD;
    return HMAF_EPROTO;
}

static int valid_region_answer(const struct hmaf_resp_register *resp,
                               uint64_t addr)
{
    return resp->len > 0 && resp->len <= UINT64_MAX - resp->base &&
           addr >= resp->base && addr - resp->base < resp->len &&
           (resp->access == HMAF_ACCESS_READ ||
            resp->access == HMAF_ACCESS_READ_WRITE);
}

/* One REGISTER, giving back what it can carry, and its answer into the
 * cache (cache_region). The regions it gave back are freed whatever the
 * outcome: the agent ends their holds with any well-formed REGISTER, and
 * a session that did not get it through is over (its end returns every
 * hold), or timed out (best effort, as for a DEREGISTER). */
static int register_once(struct hmaf_session *s, uint64_t addr, uint64_t len,
                         enum ask_again *again_out)
{
    /* The agent answers in its current epoch, never older than the one
     * it announced in the mailbox before we asked. */
    uint64_t asked_in = __atomic_load_n(&s->epoch_seen, __ATOMIC_RELAXED);
    struct hmaf_req_register req = {.addr = addr, .len = len};
    struct hmaf_resp_register resp;
    uint8_t req_buf[HMAF_MBOX_REQ_MAX], resp_buf[HMAF_MBOX_RESP_MAX];
    struct hmaf__region *given = take_for_register(s, &req);
    uint16_t req_len = (uint16_t)hmaf__req_register_encode(&req, req_buf);
    uint16_t resp_len = 0;
    int ret;

    *again_out = ASK_DONE;
    hmaf__count(s, cache_misses, 1);
    ret = hmaf__session_call(s, HMAF_OP_REGISTER, req_buf, req_len, resp_buf,
                             sizeof(resp_buf), &resp_len);
    free_regions(given);
    if (ret == 0) {
        ret = hmaf__resp_register_decode(resp_buf, resp_len, &resp);
    }
    if (ret == 0 && !valid_region_answer(&resp, addr)) {
        ret = HMAF_EPROTO;
    }
    return ret == 0 ? cache_region(s, &resp, addr, asked_in, again_out) : ret;
}

/* Answers that cannot be cached for no reason an honest agent gives get
 * this many more tries, each after applying the newest revocation first.
 * Answers outdated by a revocation made after we asked are asked again
 * for as long as a mailbox round trip may take (rpc_timeout_ms): a host
 * that revokes often, and a thread preempted between its REGISTER and
 * the cache, may meet a few in a row. */
#define REGISTER_RETRIES 4

int hmaf__session_register(struct hmaf_session *s, uint64_t addr, uint64_t len)
{
    uint64_t deadline = 0;
    enum ask_again again;
    int odd = 0;
    int ret = register_once(s, addr, len, &again);

    while (ret < 0 && again != ASK_DONE) {
        if (again == ASK_ODD && ++odd > REGISTER_RETRIES) {
            /* The mailbox's epoch is not the one the agent answers in, or
             * the agent answers with overlapping regions: the peer is
             * broken. */
            hmaf__log_error("session %llu: agent answers cannot be cached",
                            (unsigned long long)s->session_id);
            break;
        }
        if (again == ASK_REVOKED) {
            if (deadline == 0) {
                deadline = hmaf__deadline_ns(s->params.rpc_timeout_ms);
            } else if (hmaf__now_ns() >= deadline) {
                ret = HMAF_ETIMEDOUT; /* revoked faster than we can ask */
                break;
            }
        }
        again = ASK_DONE;
        ret = hmaf__session_check_epoch(s, 1);
        if (ret == 0) {
            ret = register_once(s, addr, len, &again);
        }
    }
    return ret;
}

/* ---- revocation ---- */

/* Regions answered before `epoch` leave the list: the acknowledgement
 * ends their holds on the agent (host/holds.c), so they are only freed. */
static struct hmaf__region *keep_newer(struct hmaf__region *list,
                                       uint64_t epoch)
{
    struct hmaf__region *newer = NULL;

    while (list != NULL) {
        struct hmaf__region *next = list->next_victim;
        if (list->epoch >= epoch) {
            list->next_victim = newer;
            newer = list;
        } else {
            free(list);
        }
        list = next;
    }
    return newer;
}

/* A new epoch: drop every cached region, wait until no step uses them,
 * release their imports, and only then acknowledge — so once the host
 * sees the ack nothing of ours can reach a revoked range, and an engine
 * whose exports must outlive the imports (doca) may end them. Only
 * regions answered in the new epoch itself (a registration that raced the
 * revocation) still need a DEREGISTER (*dropped_out, sent after the ack:
 * the host may be waiting for the ack and serving nothing meanwhile). */
static int apply_revocation(struct hmaf_session *s, uint64_t epoch,
                            struct hmaf__region **dropped_out)
{
    int ret = hmaf__regcache_clear(&s->cache, epoch, dropped_out);

    if (ret < 0) {
        return ret;
    }
    hmaf__session_release_imports(*dropped_out);
    /* Read without the lock by steps that carry a look (carried_look). */
    __atomic_store_n(&s->epoch_seen, epoch, __ATOMIC_RELAXED);
    hmaf__count(s, revocations, 1);
    ret = hmaf__mbox_ack_epoch(&s->mbox, epoch);
    *dropped_out = keep_newer(*dropped_out, epoch);
    pthread_mutex_lock(&s->give_lock);
    unqueue_older_locked(&s->to_give, epoch);
    pthread_mutex_unlock(&s->give_lock);
    return ret;
}

/* Under epoch_lock: look at the channel and the epoch. */
static int look_locked(struct hmaf_session *s,
                       struct hmaf__region **dropped_out)
{
    /* Taken before the look: the view is at least this old. */
    uint64_t look_ns = hmaf__coarse_now_ns();
    uint64_t epoch;
    int ret = atomic_load(&s->dead);

    /* The data path never waits on the host, so this periodic look is
     * where it learns that the agent closed the session or died (before
     * the host's pid could ever be reused). */
    if (ret == 0 && hmaf__channel_peer_gone(&s->channel)) {
        ret = HMAF_ECONNRESET;
    }
    if (ret == 0) {
        ret = hmaf__mbox_read_epoch(&s->mbox, &epoch);
    }
    if (ret == 0 && epoch != s->epoch_seen) {
        ret = apply_revocation(s, epoch, dropped_out);
    }
    if (ret == 0) {
        atomic_store_explicit(&s->next_check_ns, look_ns + s->check_interval_ns,
                              memory_order_relaxed);
    }
    return ret;
}

int hmaf__session_check_epoch(struct hmaf_session *s, int force)
{
    struct hmaf__region *dropped = NULL;
    int ret = 0;

    if (!force && !hmaf__session_epoch_due(s, hmaf__coarse_now_ns())) {
        return 0;
    }
    pthread_mutex_lock(&s->epoch_lock);
    /* Unless forced, another thread may just have looked. */
    if (force || hmaf__session_epoch_due(s, hmaf__coarse_now_ns())) {
        ret = look_locked(s, &dropped);
    }
    pthread_mutex_unlock(&s->epoch_lock);
    hmaf__session_give_back(s, dropped);
    return hmaf__session_fail(s, ret);
}
