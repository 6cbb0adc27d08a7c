/* The host agent's public API: lifecycle, exposure, roots, revocation. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hmaf/error.h>
#include <hmaf/host.h>

#include "host/agent_int.h"
#include "host/heap.h"
#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/config.h"
#include "util/log.h"
#include "util/stats.h"

#define REVOKE_POLL_NS 20000
#define POLLS_PER_CHANNEL_LOOK 50 /* about every millisecond */
#define GOODBYE_MS     100 /* all goodbyes of an agent destroy, at most */

HMAF_API void hmaf_agent_params_init(hmaf_agent_params_t *params)
{
    if (params == NULL) {
        return;
    }
    memset(params, 0, sizeof(*params));
    params->size = sizeof(*params);
    params->threaded = 1;
    params->max_sessions = 64;
    params->mailbox_slots = 16;
    params->handshake_timeout_ms = 5000;
    params->revoke_wait_ms = 1000;
    hmaf__config_apply(HMAF_CFG_AGENT, params);
}

static int check_params(const hmaf_agent_params_t *p)
{
    if (p == NULL || p->size != sizeof(*p) || p->max_sessions == 0 ||
        p->max_sessions > 1024 || p->mailbox_slots == 0 ||
        p->mailbox_slots > HMAF_MBOX_MAX_SLOTS ||
        p->handshake_timeout_ms <= 0 || p->revoke_wait_ms <= 0 ||
        p->revoke_wait_ms > 3600000) {
        return HMAF_EINVAL;
    }
    if (p->token != NULL && strlen(p->token) > HMAF_TOKEN_MAX) {
        return HMAF_EINVAL;
    }
    return 0;
}

/* A tcp channel can be reached from anywhere the network allows: it gets
 * no agent without a token to check. On DOCA Comm Channel the host is the
 * client: it dials, never listens. */
static int check_channel_policy(const struct hmaf_agent *a, const char *address,
                                int listening)
{
    if (hmaf__channel_is_remote(address) && a->token[0] == '\0') {
        hmaf__log_error("refusing %s without a token", address);
        return HMAF_EINVAL;
    }
    if (listening && hmaf__channel_is_comch(address)) {
        hmaf__log_error("%s: the host dials comch (hmaf_agent_dial)", address);
        return HMAF_EINVAL;
    }
    return 0;
}

static int agent_init(struct hmaf_agent *a, const hmaf_agent_params_t *params)
{
    int ret;

    a->params = *params;
    a->params.token = NULL; /* we keep our own copy, not the caller's */
    a->params.address = NULL;
    a->pending_grace_ns = HMAF_AGENT_PENDING_GRACE_NS;
    if (params->token != NULL) {
        strcpy(a->token, params->token);
    }
    a->sessions = calloc(params->max_sessions, sizeof(*a->sessions));
    a->graves = calloc(params->max_sessions, sizeof(*a->graves));
    if (a->sessions == NULL || a->graves == NULL ||
        hmaf__agent_poll_alloc(a) < 0) {
        return HMAF_ENOMEM;
    }
    a->ops = hmaf__engine_find(params->engine);
    if (a->ops == NULL) {
        return HMAF_ENOENGINE;
    }
    ret = hmaf__engine_ctx_create(a->ops, HMAF_ROLE_HOST, &a->ctx);
    if (ret == 0) {
        struct hmaf_engine_limits lim;

        a->ops->limits(a->ctx, &lim);
        /* The wire carries no longer blob, whatever the engine says. */
        a->max_blob = HMAF_MIN(lim.max_blob, HMAF_BLOB_MAX);
    }
    if (ret == 0 && params->address != NULL) {
        ret = check_channel_policy(a, params->address, 1);
    }
    if (ret == 0 && params->address != NULL) {
        ret = hmaf__listener_open(params->address, &a->listener);
    }
    return ret;
}

static void free_exposure(struct hmaf__exposure *e)
{
    hmaf__engine_mem_destroy(e->mem);
    free(e);
}

static size_t live_sessions(const struct hmaf_agent *a)
{
    size_t n = 0;

    for (size_t i = 0; a->sessions != NULL && i < a->params.max_sessions;
         i++) {
        n += a->sessions[i] != NULL;
    }
    return n;
}

/* Tell every live session we are closing, then give the dpu sides
 * revoke_wait_ms to stop: each one fences itself — no transfer or mailbox
 * write in flight any more, imports released — and then closes its end,
 * and the loop closes a session once its peer has. A dpu side still there
 * afterwards is closed without that word (agent_fini). */
static void hand_off_sessions(struct hmaf_agent *a)
{
    uint64_t deadline = hmaf__deadline_ns(a->params.revoke_wait_ms);
    /* goodbyes that cannot leave soon are moot: the wait tells anyway */
    uint64_t goodbyes = hmaf__deadline_ns(HMAF_MIN(a->params.revoke_wait_ms,
                                                   GOODBYE_MS));
    uint64_t now;

    if (a->sessions == NULL) {
        return;
    }
    for (size_t i = 0; i < a->params.max_sessions; i++) {
        if (a->sessions[i] != NULL) {
            hmaf__channel_shutdown(&a->sessions[i]->channel, goodbyes);
        }
    }
    while (live_sessions(a) > 0 && (now = hmaf__now_ns()) < deadline) {
        (void)hmaf__agent_poll_channels(a, (int64_t)(deadline - now));
    }
    if (live_sessions(a) > 0) {
        hmaf__log_warn("agent destroyed: %zu dpu side(s) did not stop "
                       "within %d ms",
                       live_sessions(a), a->params.revoke_wait_ms);
    }
}

/* Undo agent_init and whatever sessions came since; thread stopped. */
static void agent_fini(struct hmaf_agent *a)
{
    struct hmaf__exposure *e;

    hmaf__listener_close(a->listener); /* no one new while we close */
    a->listener = NULL;
    for (size_t i = 0; i < a->npending; i++) {
        hmaf__channel_close(&a->pending[i].channel);
    }
    a->npending = 0;
    if (a->ops != NULL && a->pfds != NULL) {
        hand_off_sessions(a);
    }
    for (size_t i = 0; a->sessions != NULL && i < a->params.max_sessions;
         i++) {
        if (a->sessions[i] != NULL) {
            hmaf__agent_session_close(a, i, 0);
        }
    }
    hmaf__agent_graves_fini(a);
    hmaf__agent_orphans_fini(a);
    while ((e = hmaf__exposure_take_any(&a->exposures)) != NULL) {
        free_exposure(e);
    }
    hmaf__exposures_fini(&a->exposures);
    hmaf__roots_fini(&a->roots);
    hmaf__engine_ctx_destroy(a->ctx);
    free(a->sessions);
    free(a->graves);
    free(a->pending);
    free(a->pfds);
    free(a->pmap);
    hmaf__agent_notify_fini(a);
}

HMAF_API int hmaf_agent_create(const hmaf_agent_params_t *params,
                               hmaf_agent_t **agent_out)
{
    struct hmaf_agent *a;
    int ret = check_params(params);

    if (ret < 0 || agent_out == NULL) {
        return HMAF_EINVAL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return HMAF_ENOMEM;
    }
    pthread_mutex_init(&a->lock, NULL);
    hmaf__agent_notify_init(a);
    ret = agent_init(a, params);
    if (ret == 0 && params->threaded) {
        ret = hmaf__agent_start_thread(a);
    }
    if (ret < 0) {
        agent_fini(a);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return ret;
    }
    *agent_out = a;
    return 0;
}

HMAF_API void hmaf_agent_destroy(hmaf_agent_t *agent)
{
    if (agent == NULL) {
        return;
    }
    hmaf__agent_stop_thread(agent);
    agent_fini(agent);
    hmaf__heap_destroy(agent->heap);
    pthread_mutex_destroy(&agent->lock);
    free(agent);
}

HMAF_API int hmaf_agent_listen(hmaf_agent_t *agent, const char *address)
{
    struct hmaf_listener *listener;
    int ret;

    if (agent == NULL || address == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    ret = agent->listener != NULL ? HMAF_EINVAL : 0; /* before opening */
    pthread_mutex_unlock(&agent->lock);
    if (ret == 0) {
        ret = check_channel_policy(agent, address, 1);
    }
    if (ret == 0) {
        ret = hmaf__listener_open(address, &listener);
    }
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&agent->lock);
    if (agent->listener == NULL) {
        agent->listener = listener; /* the loop picks it up next turn */
        listener = NULL;
    }
    pthread_mutex_unlock(&agent->lock);
    if (listener != NULL) {
        hmaf__listener_close(listener);
        return HMAF_EINVAL;
    }
    return 0;
}

HMAF_API const char *hmaf_agent_address(const hmaf_agent_t *agent)
{
    struct hmaf_agent *a = (struct hmaf_agent *)agent; /* to lock it */
    const char *address = NULL;

    if (a == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&a->lock);
    if (a->listener != NULL) {
        address = hmaf__listener_address(a->listener);
    }
    pthread_mutex_unlock(&a->lock);
    return address;
}

/* The dpu side listens: connect, then receive its HELLO synchronously. */
static int receive_hello(struct hmaf_channel *ch, int timeout_ms,
                         uint8_t *buf, size_t *len_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    struct hmaf_msg_hdr hdr;
    int body;
    int ret = hmaf__channel_recv(ch, buf, HMAF_HDR_SIZE, deadline);

    if (ret < 0) {
        return ret;
    }
    hmaf__hdr_decode(buf, &hdr);
    body = hmaf__agent_hello_body_len(&hdr);
    if (body < 0) {
        return body;
    }
    ret = hmaf__channel_recv(ch, buf + HMAF_HDR_SIZE, (size_t)body, deadline);
    *len_out = HMAF_HDR_SIZE + (size_t)body;
    return ret;
}

HMAF_API int hmaf_agent_dial(hmaf_agent_t *agent, const char *address,
                             int timeout_ms)
{
    struct hmaf_channel ch;
    uint8_t buf[HMAF_MSG_MAX];
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    size_t len = 0;
    int ret;

    if (agent == NULL || address == NULL || timeout_ms <= 0) {
        return HMAF_EINVAL;
    }
    ret = check_channel_policy(agent, address, 0);
    if (ret == 0) {
        ret = hmaf__channel_connect(address, timeout_ms, &ch);
    }
    if (ret < 0) {
        return ret;
    }
    /* Connect and handshake share timeout_ms. */
    ret = hmaf__ms_left(deadline) == 0
              ? HMAF_ETIMEDOUT
              : receive_hello(&ch, hmaf__ms_left(deadline), buf, &len);
    pthread_mutex_lock(&agent->lock);
    if (ret == HMAF_ECONNRESET || ret == HMAF_ETIMEDOUT) {
        hmaf__channel_close(&ch);
    } else if (ret < 0) {
        hmaf__agent_refuse(agent, &ch, ret);
    } else {
        ret = hmaf__agent_handle_hello(agent, &ch, buf, len);
    }
    pthread_mutex_unlock(&agent->lock);
    return ret;
}

HMAF_API int hmaf_agent_expose(hmaf_agent_t *agent, const void *addr,
                               size_t len, hmaf_access_t access)
{
    int ret;

    if (agent == NULL || addr == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    ret = hmaf__exposure_add(&agent->exposures, (uint64_t)(uintptr_t)addr,
                             len, access, NULL);
    pthread_mutex_unlock(&agent->lock);
    return ret;
}

/* Step 1 of a revocation: unlink, announce the new epoch to everyone. */
static uint64_t announce_revocation(struct hmaf_agent *a)
{
    uint64_t epoch = ++a->epoch;

    for (size_t i = 0; i < a->params.max_sessions; i++) {
        struct agent_session *s = a->sessions[i];
        if (s != NULL) {
            s->must_ack = epoch;
            atomic_store_explicit(
                (_Atomic uint64_t *)(s->mbox + HMAF_MBOX_HEADER_EPOCH), epoch,
                memory_order_release);
            /* An idle session's watch thread sleeps on the channel. */
            hmaf__channel_nudge(&s->channel);
        }
    }
    return epoch;
}

static int acknowledged(const struct agent_session *s, uint64_t epoch)
{
    return s->must_ack < epoch ||
           atomic_load_explicit(
               (_Atomic uint64_t *)(s->mbox + HMAF_MBOX_ACK_OFFSET),
               memory_order_acquire) >= epoch;
}

/* Acknowledged, or gone: a dpu side closes its end of the channel only
 * once it fenced its session (and a dead one has no threads). Who drives
 * the agent with hmaf_agent_poll() may be the very thread waiting here,
 * so the loop may not have reaped the session yet. */
static int settled(struct agent_session *s, uint64_t epoch, int look)
{
    return acknowledged(s, epoch) ||
           (look && hmaf__channel_peer_closed(&s->channel));
}

/* A session the agent closed while its dpu side may still be writing (cut
 * off by another revocation, or for breaking the protocol) is a grave
 * until that dpu side closes its end — only then has it fenced. With cma
 * its threads can reach any exposed range meanwhile, ours included, so a
 * grave settles no revocation until its peer is gone. (Only engines that
 * do not enforce revocation leave graves.) */
static int graves_settled(struct hmaf_agent *a, int look)
{
    for (size_t i = 0; i < a->ngraves; i++) {
        if (!look || !hmaf__channel_peer_closed(&a->graves[i].channel)) {
            return 0;
        }
    }
    return 1;
}

/* must_ack only grows: a later revocation's ack covers ours. */
static int all_settled(struct hmaf_agent *a, uint64_t epoch, int look)
{
    for (size_t i = 0; i < a->params.max_sessions; i++) {
        if (a->sessions[i] != NULL && !settled(a->sessions[i], epoch, look)) {
            return 0;
        }
    }
    return graves_settled(a, look);
}

/* Step 2: wait, bounded, until every session that was live acknowledged:
 * 0, or HMAF_ETIMEDOUT. Channels are looked at every so often only: a
 * system call per session and poll would be a lot. */
static int await_acknowledgements(struct hmaf_agent *a, uint64_t epoch)
{
    uint64_t deadline = hmaf__deadline_ns(a->params.revoke_wait_ms);
    struct timespec pause = {0, REVOKE_POLL_NS};

    for (unsigned polls = 0;; polls++) {
        int done;
        /* The acknowledgement is a dpu side's write, which an engine that
         * needs the host's CPU (ucx) lands only when progressed: the
         * agent's thread may be absent (hmaf_agent_poll), or this one. */
        hmaf__agent_engine_progress(a);
        pthread_mutex_lock(&a->lock);
        done = all_settled(a, epoch, polls % POLLS_PER_CHANNEL_LOOK == 0);
        pthread_mutex_unlock(&a->lock);
        if (done) {
            return 0;
        }
        if (hmaf__now_ns() >= deadline) {
            return HMAF_ETIMEDOUT;
        }
        nanosleep(&pause, NULL);
    }
}

/* Step 2b, when the wait ran out: a session that has not confirmed by now
 * is cut off rather than trusted (host.h says what that guarantees per
 * engine). Returns how many. */
static size_t cut_off_unconfirmed(struct hmaf_agent *a, uint64_t epoch)
{
    size_t cut = 0;

    for (size_t i = 0; i < a->params.max_sessions; i++) {
        struct agent_session *s = a->sessions[i];
        if (s == NULL || acknowledged(s, epoch)) {
            continue;
        }
        if (hmaf__channel_peer_closed(&s->channel)) {
            hmaf__agent_session_close(a, i, 1); /* it stopped */
            continue;
        }
        hmaf__log_warn("revoke: session %llu did not confirm epoch %llu "
                       "within %d ms: closing it",
                       (unsigned long long)s->id, (unsigned long long)epoch,
                       a->params.revoke_wait_ms);
        hmaf__agent_session_close(a, i, 0);
        cut++;
    }
    if (cut > 0) {
        a->stats.revoke_timeouts++;
        a->stats.revoke_cutoffs += cut;
    }
    return cut;
}

/* Step 3: end the engine registration, and the holds answered before
 * the revocation: every session still here confirmed it (or stopped, or
 * came after it), so it dropped those regions — whatever its ack word
 * says by now. That is O(1) per session; the holds, e's among them, are
 * given back later, finding no exposure of e's id. */
static void retire_exposure(struct hmaf_agent *a, struct hmaf__exposure *e,
                            uint64_t epoch)
{
    for (size_t i = 0; i < a->params.max_sessions; i++) {
        if (a->sessions[i] != NULL) {
            hmaf__agent_end_holds_before(a->sessions[i], epoch);
        }
    }
    free_exposure(e);
    a->stats.revocations++;
}

HMAF_API int hmaf_agent_revoke(hmaf_agent_t *agent, const void *addr,
                               size_t len)
{
    struct hmaf__exposure *e;
    uint64_t epoch;
    int ret;

    if (agent == NULL || addr == NULL || len == 0) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    if (hmaf__heap_is_range(agent->heap, (uint64_t)(uintptr_t)addr, len)) {
        pthread_mutex_unlock(&agent->lock);
        return HMAF_EBUSY; /* heap.h: the heap lives as long as the agent */
    }
    e = hmaf__exposure_take(&agent->exposures, (uint64_t)(uintptr_t)addr,
                            len);
    if (e == NULL) {
        pthread_mutex_unlock(&agent->lock);
        return HMAF_ENOENT;
    }
    epoch = announce_revocation(agent);
    pthread_mutex_unlock(&agent->lock);
    ret = await_acknowledgements(agent, epoch);
    pthread_mutex_lock(&agent->lock);
    /* Confirmations may still arrive until we hold the lock. A grave
     * still open keeps the time-out even when no one is left to cut off. */
    if (ret < 0 && cut_off_unconfirmed(agent, epoch) == 0) {
        if (graves_settled(agent, 1)) {
            ret = 0;
        } else {
            agent->stats.revoke_timeouts++;
        }
    }
    retire_exposure(agent, e, epoch);
    pthread_mutex_unlock(&agent->lock);
    return ret;
}

HMAF_API int hmaf_agent_publish(hmaf_agent_t *agent, const char *name,
                                const void *addr, size_t len)
{
    int ret;

    if (agent == NULL || addr == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    ret = hmaf__roots_publish(&agent->roots, name, (uint64_t)(uintptr_t)addr,
                              len);
    pthread_mutex_unlock(&agent->lock);
    return ret;
}

HMAF_API int hmaf_agent_unpublish(hmaf_agent_t *agent, const char *name)
{
    int ret;

    if (agent == NULL) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    ret = hmaf__roots_unpublish(&agent->roots, name);
    pthread_mutex_unlock(&agent->lock);
    return ret;
}

/* One wait may end early (a channel that must be looked at now and then
 * bounds it), so wait again until something happened or time is up. */
static int poll_channels_for(struct hmaf_agent *a, int64_t timeout_ns)
{
    uint64_t deadline = hmaf__now_ns() + (uint64_t)timeout_ns;
    uint64_t now;
    int events;

    do {
        now = hmaf__now_ns();
        events = hmaf__agent_poll_channels(
            a, now < deadline ? (int64_t)(deadline - now) : 0);
    } while (events == 0 && hmaf__now_ns() < deadline);
    return events;
}

HMAF_API int hmaf_agent_poll(hmaf_agent_t *agent, int timeout_ms)
{
    int served;

    if (agent == NULL || timeout_ms < 0) {
        return HMAF_EINVAL;
    }
    if (agent->has_thread) {
        return HMAF_EBUSY;
    }
    served = hmaf__agent_engine_progress(agent);
    pthread_mutex_lock(&agent->lock);
    served += hmaf__agent_serve_all(agent);
    pthread_mutex_unlock(&agent->lock);
    hmaf__agent_notify_deliver(agent);
    return served + poll_channels_for(
                        agent, served > 0 ? 0 : (int64_t)timeout_ms * 1000000);
}

/* HMAF 0.1's hmaf_agent_stats_t, the smallest a caller may pass. */
HMAF__STATS_SIZE_MIN_DEFINE(AGENT_STATS_SIZE_MIN, hmaf_agent_stats_t, rings);

HMAF_API int hmaf_agent_stats(hmaf_agent_t *agent,
                              hmaf_agent_stats_t *stats_out)
{
    hmaf_agent_stats_t st;
    size_t size;

    if (agent == NULL ||
        hmaf__stats_size(stats_out, AGENT_STATS_SIZE_MIN, &size) < 0) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&agent->lock);
    /* memcpy, not assignment: the padding after last_refusal comes along
     * as the calloc'ed agent holds it (zeros), not as whatever was on the
     * stack */
    memcpy(&st, &agent->stats, sizeof(st));
    pthread_mutex_unlock(&agent->lock);
    hmaf__stats_put(stats_out, size, &st, sizeof(st));
    return 0;
}
