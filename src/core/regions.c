/*
 * The session's regions: the miss path (REGISTER through the mailbox,
 * import, into the region cache), giving regions back (DEREGISTER, in
 * batches), and revocation (the look at the host's epoch, dropping the
 * cache, the acknowledgement). The cache itself is regcache.c.
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

void hmaf__session_release_imports(struct hmaf_session *s,
                                   struct hmaf__region *list)
{
    for (struct hmaf__region *r = list; r != NULL; r = r->next_victim) {
        s->ops->rmem_release(r->rmem);
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

/* Region release: drop the imports, then give the agent its holds back —
 * in that order, because the agent may destroy an export once the last
 * hold is back, and an engine like doca needs the import gone first. */
static void release_regions(void *arg, struct hmaf__region *list, int evicted)
{
    struct hmaf_session *s = arg;

    (void)evicted;
    if (!s->orphan) { /* an orphan's imports are the parent's */
        hmaf__session_release_imports(s, list);
    }
    hmaf__session_give_back(s, list);
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

static struct hmaf__region *new_region(struct hmaf_session *s,
                                       const struct hmaf_resp_register *resp)
{
    size_t size = sizeof(struct hmaf__region) + s->ops->rmem_size;
    /* Cache-line aligned, though a hit no longer reads it: the cache's
     * leaf keeps copies of the fields a hit needs. */
    struct hmaf__region *r =
        aligned_alloc(HMAF_CACHELINE, (size + HMAF_CACHELINE - 1) /
                                          HMAF_CACHELINE * HMAF_CACHELINE);

    if (r == NULL) {
        return NULL;
    }
    memset(r, 0, size);
    r->iv.base = resp->base;
    r->iv.len = resp->len;
    r->id = resp->region_id;
    r->epoch = resp->epoch;
    r->access = resp->access;
    atomic_init(&r->last_used, hmaf__coarse_now_ns()); /* a use */
    r->rmem = (struct hmaf_engine_rmem *)(r + 1);
    r->rmem->ep = s->ep;
    r->rmem->addr = resp->base;
    r->rmem->len = resp->len;
    r->rmem->access = r->access;
    return r;
}

/* An answer the cache would not take, handed back: import and hold. */
static void refuse_region(struct hmaf_session *s, struct hmaf__region *r)
{
    r->next_victim = NULL;
    release_regions(s, r, 1);
}

/*
 * Import the region the agent answered with and put it in the cache.
 * Returns 0 when addr is now covered, or an error. *again_out is set (and
 * HMAF_EPROTO returned) when a revocation stands between the answer and
 * the cache: one the cache already applied is newer than the answer, or a
 * cached region overlaps the answer without covering addr (one not yet
 * applied here is behind it). Asking again after a look may succeed.
 */
static int cache_region(struct hmaf_session *s,
                        const struct hmaf_resp_register *resp, uint64_t addr,
                        int *again_out)
{
    struct hmaf__region *r = new_region(s, resp);
    enum hmaf__regcache_insert_result result;
    uint64_t evicted = 0;
    int ret;

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
    ret = s->ops->rmem_import(r->rmem, resp->export_blob.data,
                              resp->export_blob.len);
    if (ret < 0) {
        free(r);
        return ret;
    }
    hmaf__count(s, registrations, 1);
    result = hmaf__regcache_insert(&s->cache, r, &evicted);
    hmaf__count(s, evictions, evicted);
    if (result == HMAF_REGCACHE_ADDED) {
        return 0;
    }
    refuse_region(s, r); /* the agent gets its hold back */
    if (result == HMAF_REGCACHE_NOMEM) {
        return HMAF_ENOMEM;
    }
    if (result == HMAF_REGCACHE_OVERLAPS && cached(s, addr)) {
        return 0; /* another thread cached the same region first */
    }
    *again_out = 1;
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

/* One REGISTER, and its answer into the cache (cache_region). */
static int register_once(struct hmaf_session *s, uint64_t addr, uint64_t len,
                         int *again_out)
{
    struct hmaf_req_register req = {.addr = addr, .len = len};
    struct hmaf_resp_register resp;
    uint8_t req_buf[HMAF_MBOX_REQ_MAX], resp_buf[HMAF_MBOX_RESP_MAX];
    uint16_t req_len = (uint16_t)hmaf__req_register_encode(&req, req_buf);
    uint16_t resp_len = 0;
    int ret;

    *again_out = 0;
    hmaf__count(s, cache_misses, 1);
    ret = hmaf__session_call(s, HMAF_OP_REGISTER, req_buf, req_len, resp_buf,
                             sizeof(resp_buf), &resp_len);
    if (ret == 0) {
        ret = hmaf__resp_register_decode(resp_buf, resp_len, &resp);
    }
    if (ret == 0 && !valid_region_answer(&resp, addr)) {
        ret = HMAF_EPROTO;
    }
    return ret == 0 ? cache_region(s, &resp, addr, again_out) : ret;
}

/* Answers that cannot be cached because of a revocation get this many
 * more tries, each after applying the revocation first. */
#define REGISTER_RETRIES 4

int hmaf__session_register(struct hmaf_session *s, uint64_t addr, uint64_t len)
{
    int again;
    int ret = register_once(s, addr, len, &again);

    for (int i = 0; i < REGISTER_RETRIES && again; i++) {
        again = 0;
        ret = hmaf__session_check_epoch(s, 1);
        if (ret == 0) {
            ret = register_once(s, addr, len, &again);
        }
    }
    if (again) {
        /* The mailbox's epoch is not the one the agent answers in, or the
         * agent answers with overlapping regions: the peer is broken. */
        hmaf__log_error("session %llu: agent answers cannot be cached",
                        (unsigned long long)s->session_id);
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
    hmaf__session_release_imports(s, *dropped_out);
    /* Read without the lock by steps that carry a look (carried_look). */
    __atomic_store_n(&s->epoch_seen, epoch, __ATOMIC_RELAXED);
    hmaf__count(s, revocations, 1);
    ret = hmaf__mbox_ack_epoch(&s->mbox, epoch);
    *dropped_out = keep_newer(*dropped_out, epoch);
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
