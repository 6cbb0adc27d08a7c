/*
 * The dpu side's looks at the host's revocation epoch: the separate look
 * (hmaf__session_check_epoch), and applying a revocation it finds. The
 * data path, which carries most looks along with its own transfers, is in
 * datapath.c.
 */
#include <stdlib.h>

#include <hmaf/error.h>

#include "core/session_int.h"
#include "util/clock.h"

/* Due for a look at the revocation epoch? Cheap: the coarse clock. */
static int epoch_due(struct hmaf_session *s, uint64_t now)
{
    return now >= atomic_load_explicit(&s->next_check_ns, memory_order_relaxed);
}

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

    if (!force && !epoch_due(s, hmaf__coarse_now_ns())) {
        return 0;
    }
    pthread_mutex_lock(&s->epoch_lock);
    /* Unless forced, another thread may just have looked. */
    if (force || epoch_due(s, hmaf__coarse_now_ns())) {
        ret = look_locked(s, &dropped);
    }
    pthread_mutex_unlock(&s->epoch_lock);
    hmaf__session_give_back(s, dropped);
    return hmaf__session_fail(s, ret);
}
