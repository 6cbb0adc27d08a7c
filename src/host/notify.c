/*
 * Notifications, both ways (notify.h).
 *
 * dpu -> host: a NOTIFY request lands in a queue with one entry per
 * session and tag, so a burst coalesces into a count and the latest value,
 * and a dpu side cannot make the queue grow without bound: it may have
 * HMAF_NOTIFY_TAGS_MAX tags waiting, and the queue holds at most that many
 * per session the agent can serve (entries of closed sessions stay until
 * taken, so new sessions are held to the same total). The entries go to
 * the callback after the agent's turn, outside the agent lock so that the
 * callback may call the agent; or, without a callback, they wait for
 * hmaf_agent_notifications(), announced by an eventfd.
 *
 * host -> dpu: a ring is a count and a value in the session's mailbox
 * header, and a nudge on its channel: the count is what the dpu side
 * compares, so rings coalesce there too and none is lost.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "proto/mailbox.h"
#include "proto/notify.h"
#include "util/log.h"

/* Entries handed to the callback per turn of the lock. */
#define DELIVER_BATCH 32

void hmaf__agent_notify_init(struct hmaf_agent *a)
{
    pthread_mutex_init(&a->notify.lock, NULL);
    a->notify.fd = -1;
}

void hmaf__agent_notify_fini(struct hmaf_agent *a)
{
    if (a->notify.fd >= 0) {
        close(a->notify.fd);
    }
    free(a->notify.q);
    pthread_mutex_destroy(&a->notify.lock);
}

/* Lock held. The fd says whether entries wait for the application. */
static void signal_fd(struct agent_notify *nq)
{
    uint64_t one = 1;

    if (nq->fd >= 0 && !nq->fd_set && nq->n > 0 && nq->fn == NULL) {
        nq->fd_set = write(nq->fd, &one, sizeof(one)) == sizeof(one);
    }
}

static void clear_fd(struct agent_notify *nq)
{
    uint64_t v;

    if (nq->fd >= 0 && nq->fd_set && nq->n == 0) {
        nq->fd_set = !(read(nq->fd, &v, sizeof(v)) == sizeof(v) ||
                       errno == EAGAIN);
    }
}

/* Room for one more entry, within the queue's bound. */
static int make_room(struct hmaf_agent *a, struct agent_notify *nq)
{
    size_t bound = (size_t)a->params.max_sessions * HMAF_NOTIFY_TAGS_MAX;
    size_t cap;
    hmaf_notification_t *q;

    if (nq->n < nq->cap) {
        return 0;
    }
    if (nq->cap >= bound) {
        return HMAF_ENOSPC;
    }
    cap = nq->cap == 0 ? 16 : nq->cap * 2;
    cap = cap > bound ? bound : cap;
    q = realloc(nq->q, cap * sizeof(*q));
    if (q == NULL) {
        return HMAF_ENOMEM;
    }
    nq->q = q;
    nq->cap = cap;
    return 0;
}

/* Lock held: coalesce into the session's entry of that tag (1), or add
 * one (0). */
static int enqueue(struct hmaf_agent *a, struct agent_notify *nq,
                   uint64_t session_id, const struct hmaf_req_notify *r)
{
    size_t tags = 0;
    int ret;

    for (size_t i = 0; i < nq->n; i++) {
        hmaf_notification_t *e = &nq->q[i];
        if (e->session_id != session_id) {
            continue;
        }
        if (e->tag == r->tag) {
            e->count++;
            e->value = r->value;
            return 1;
        }
        tags++;
    }
    if (tags >= HMAF_NOTIFY_TAGS_MAX) {
        return HMAF_ENOSPC;
    }
    ret = make_room(a, nq);
    if (ret < 0) {
        return ret;
    }
    nq->q[nq->n++] = (hmaf_notification_t){.session_id = session_id,
                                           .tag = r->tag,
                                           .value = r->value,
                                           .count = 1};
    atomic_store_explicit(&nq->waiting, nq->n, memory_order_relaxed);
    signal_fd(nq);
    return 0;
}

int hmaf__agent_serve_notify(struct hmaf_agent *a, struct agent_session *s,
                             const uint8_t *payload, size_t len)
{
    struct hmaf_req_notify r;
    int ret = hmaf__req_notify_decode(payload, len, &r);

    if (ret < 0) {
        return HMAF_EPROTO;
    }
    pthread_mutex_lock(&a->notify.lock);
    ret = enqueue(a, &a->notify, s->id, &r);
    pthread_mutex_unlock(&a->notify.lock);
    /* The agent lock is held while requests are served. */
    if (ret >= 0) {
        a->stats.notifications++;
        a->stats.notifications_coalesced += (uint64_t)ret;
        return 0;
    }
    a->stats.notifications_refused += ret == HMAF_ENOSPC;
    return ret;
}

/* Lock held: move up to max entries, oldest first, to out. */
static size_t take(struct agent_notify *nq, hmaf_notification_t *out,
                   size_t max)
{
    size_t n = nq->n < max ? nq->n : max;

    if (n > 0) { /* q is NULL until the first entry */
        memcpy(out, nq->q, n * sizeof(*out));
        memmove(nq->q, nq->q + n, (nq->n - n) * sizeof(*out));
        nq->n -= n;
    }
    atomic_store_explicit(&nq->waiting, nq->n, memory_order_relaxed);
    clear_fd(nq);
    return n;
}

void hmaf__agent_notify_deliver(struct hmaf_agent *a)
{
    struct agent_notify *nq = &a->notify;
    hmaf_notification_t batch[DELIVER_BATCH];

    while (atomic_load_explicit(&nq->waiting, memory_order_relaxed) > 0) {
        hmaf_notify_fn fn;
        void *arg;
        size_t n = 0;

        pthread_mutex_lock(&nq->lock);
        fn = nq->fn;
        arg = nq->arg;
        if (fn != NULL) {
            n = take(nq, batch, DELIVER_BATCH);
        } else {
            signal_fd(nq); /* the callback went meanwhile */
        }
        pthread_mutex_unlock(&nq->lock);
        if (fn == NULL) {
            return;
        }
        for (size_t i = 0; i < n; i++) {
            fn(arg, &batch[i]);
        }
    }
}

HMAF_API int hmaf_agent_on_notify(hmaf_agent_t *agent, hmaf_notify_fn fn,
                                  void *arg)
{
    if (agent == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->notify.lock);
    agent->notify.fn = fn;
    agent->notify.arg = arg;
    signal_fd(&agent->notify); /* entries left to the application now */
    pthread_mutex_unlock(&agent->notify.lock);
    return 0;
}

HMAF_API int hmaf_agent_notify_fd(hmaf_agent_t *agent, int *fd_out)
{
    struct agent_notify *nq;
    int ret = 0;

    if (agent == NULL || fd_out == NULL) {
        return HMAF_EINVAL;
    }
    nq = &agent->notify;
    pthread_mutex_lock(&nq->lock);
    if (nq->fd < 0) {
        nq->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (nq->fd < 0) {
            hmaf__log_error("eventfd: %m");
            ret = errno == EMFILE || errno == ENFILE ? HMAF_ENOSPC
                                                    : HMAF_ENOMEM;
        }
        signal_fd(nq);
    }
    if (ret == 0) {
        *fd_out = nq->fd;
    }
    pthread_mutex_unlock(&nq->lock);
    return ret;
}

HMAF_API int hmaf_agent_notifications(hmaf_agent_t *agent,
                                      hmaf_notification_t *out, size_t max,
                                      size_t *n_out)
{
    if (agent == NULL || out == NULL || max == 0 || n_out == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->notify.lock);
    *n_out = take(&agent->notify, out, max);
    pthread_mutex_unlock(&agent->notify.lock);
    return 0;
}

/* Agent lock held. The value first, then the count that publishes it
 * (release): a dpu side that sees the new count reads this value or a
 * later one. Then a nudge, so a sleeping watch thread looks now. */
static void ring_one(struct agent_session *s, uint64_t value)
{
    _Atomic uint64_t *count =
        (_Atomic uint64_t *)(s->mbox + HMAF_MBOX_HEADER_RING_COUNT);
    _Atomic uint64_t *latest =
        (_Atomic uint64_t *)(s->mbox + HMAF_MBOX_HEADER_RING_VALUE);

    atomic_store_explicit(latest, value, memory_order_relaxed);
    atomic_store_explicit(
        count, atomic_load_explicit(count, memory_order_relaxed) + 1,
        memory_order_release);
    hmaf__channel_nudge(&s->channel);
}

HMAF_API int hmaf_agent_ring(hmaf_agent_t *agent, uint64_t session_id,
                             uint64_t value)
{
    int found = 0;

    if (agent == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    for (size_t i = 0; i < agent->params.max_sessions; i++) {
        struct agent_session *s = agent->sessions[i];
        if (s != NULL && (session_id == 0 || s->id == session_id)) {
            ring_one(s, value);
            agent->stats.rings++;
            found = 1;
        }
    }
    pthread_mutex_unlock(&agent->lock);
    return found || session_id == 0 ? 0 : HMAF_ENOENT;
}
