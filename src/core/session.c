/* Dpu-side session: lifecycle, roots, ping, counters. The data path is in
 * datapath.c, the regions (misses, registration, revocation) in
 * regions.c. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hmaf/error.h>
#include <hmaf/types.h>
#include <hmaf/session.h>

#include "core/session_int.h"
#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/config.h"
#include "util/log.h"
#include "util/stats.h"

/* A page; aligned_alloc wants the size rounded up to it. */
#define SESSION_ALIGN 4096
#define SESSION_SIZE                                                           \
    ((sizeof(struct hmaf_session) + SESSION_ALIGN - 1) / SESSION_ALIGN *       \
     SESSION_ALIGN)
_Static_assert(_Alignof(struct hmaf_session) <= SESSION_ALIGN, "alignment");

HMAF_API void hmaf_session_params_init(hmaf_session_params_t *params)
{
    if (params == NULL) {
        return;
    }
    memset(params, 0, sizeof(*params));
    params->size = sizeof(*params);
    params->connect_timeout_ms = 5000;
    params->rpc_timeout_ms = 5000;
    params->cache_max_regions = 1024;
    params->cache_max_bytes = UINT64_MAX;
    params->revoke_check_us = 1000;
    params->max_inflight = 1024;
    params->map_max_resident = UINT64_MAX;
    hmaf__config_apply(HMAF_CFG_SESSION, params);
}

/* The size of hmaf_session_params_t before split_threads was added. */
#define PARAMS_SIZE_BEFORE_SPLIT offsetof(hmaf_session_params_t, split_threads)
/* split_threads 0 and no $HMAF_SPLIT_THREADS: one thread per online cpu,
 * up to this many (a copy rarely gains from more: memory bandwidth). */
#define SPLIT_THREADS_DEFAULT_MAX 4

/* Params from callers built before split_threads existed are shorter;
 * the field then takes its default. */
static int read_params(const hmaf_session_params_t *params,
                       hmaf_session_params_t *out)
{
    if (params == NULL) {
        return HMAF_EINVAL;
    }
    if (params->size == sizeof(*params)) {
        *out = *params;
        return 0;
    }
    if (params->size != PARAMS_SIZE_BEFORE_SPLIT) {
        return HMAF_EINVAL;
    }
    hmaf_session_params_init(out);
    memcpy(out, params, PARAMS_SIZE_BEFORE_SPLIT);
    out->size = sizeof(*out);
    return 0;
}

static int check_params(const hmaf_session_params_t *p)
{
    if (p->size != sizeof(*p) || p->address == NULL ||
        p->connect_timeout_ms <= 0 || p->rpc_timeout_ms <= 0 ||
        p->cache_max_regions == 0 || p->cache_max_bytes == 0 ||
        p->max_inflight == 0 || p->max_inflight > HMAF_MAX_INFLIGHT ||
        p->revoke_check_us == 0 ||
        p->map_max_resident < (uint64_t)sysconf(_SC_PAGESIZE) ||
        p->split_threads > HMAF_SPLIT_THREADS_MAX) {
        return HMAF_EINVAL;
    }
    if (p->token != NULL && strlen(p->token) > HMAF_TOKEN_MAX) {
        return HMAF_EINVAL;
    }
    /* DOCA Comm Channel: the dpu side is the server, so it listens. */
    if (!p->listen && hmaf__channel_is_comch(p->address)) {
        return HMAF_EINVAL;
    }
    return 0;
}

/* $HMAF_SPLIT_THREADS: 0 when unset or empty; else a number from 0 to
 * HMAF_SPLIT_THREADS_MAX, or the session is refused (a typo must not pass
 * for the default unnoticed: a strict row of util/config.c). */
static int split_threads_env(unsigned *threads_out)
{
    uint64_t v;
    int ret = hmaf__config_value(HMAF_CFG_SPLIT_THREADS, &v);

    *threads_out = ret == 0 ? (unsigned)v : 0;
    return ret;
}

/* Threads one large transfer may use: the params', else the
 * environment's, else one per online cpu (SPLIT_THREADS_DEFAULT_MAX at
 * most). */
static int split_threads_of(const hmaf_session_params_t *p,
                            unsigned *threads_out)
{
    unsigned threads = p->split_threads;
    int ret = threads == 0 ? split_threads_env(&threads) : 0;

    if (ret < 0) {
        return ret;
    }
    if (threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads =
            cpus < 1 ? 1 : (unsigned)HMAF_MIN(cpus, SPLIT_THREADS_DEFAULT_MAX);
    }
    *threads_out = threads;
    return 0;
}

static int open_channel(struct hmaf_session *s, uint64_t deadline)
{
    const hmaf_session_params_t *p = &s->params;
    struct hmaf_listener *listener;
    int ret;

    if (!p->listen) {
        return hmaf__channel_connect(p->address, hmaf__ms_left(deadline),
                                     &s->channel);
    }
    ret = hmaf__listener_open(p->address, &listener);
    if (ret == 0) {
        ret = hmaf__listener_accept_wait(listener, hmaf__ms_left(deadline),
                                         &s->channel);
        hmaf__listener_close(listener);
    }
    return ret;
}

/* Import the mailbox region the host described in its welcome. */
static int import_mailbox(struct hmaf_session *s, const struct hmaf_welcome *w)
{
    if (w->mailbox_slots == 0 || w->mailbox_slots > HMAF_MBOX_MAX_SLOTS ||
        w->lease_us == 0 || /* a look could never be fresh enough */
        w->mailbox_len < hmaf__mbox_size(w->mailbox_slots) ||
        w->mailbox_addr + w->mailbox_len < w->mailbox_addr) {
        return HMAF_EPROTO;
    }
    return hmaf__engine_rmem_create(s->ep, w->mailbox_addr, w->mailbox_len,
                                    HMAF_ACCESS_READ_WRITE,
                                    w->mailbox_export.data,
                                    w->mailbox_export.len, &s->mbox_rmem);
}

/* One read of the mailbox's first word: a dpu side that may not reach the
 * host process (another user, the ptrace scope, a seccomp filter, another
 * pid namespace) learns it at create, not at its first call. */
static int probe_host(struct hmaf_session *s, const struct hmaf_welcome *w)
{
    uint64_t word;
    struct hmaf_xfer x = {s->mbox_rmem, &word, w->mailbox_addr, sizeof(word)};
    int ret = s->move_one(s->ep, HMAF_XFER_READ, &x);

    if (ret == HMAF_EPERM) {
        hmaf__log_error("cannot access the host process (pid %d) with the "
                        "%s engine: it runs as another user, or the ptrace "
                        "scope (/proc/sys/kernel/yama/ptrace_scope), a "
                        "missing CAP_SYS_PTRACE or a seccomp filter forbids "
                        "it",
                        hmaf__channel_peer_pid(&s->channel), s->ops->name);
    } else if (ret < 0) {
        hmaf__log_error("cannot read the host's mailbox: %s",
                        hmaf_strerror(ret));
    }
    return ret;
}

static int init_mailbox_client(struct hmaf_session *s,
                               const struct hmaf_welcome *w)
{
    struct hmaf__mbox_client_params mp = {
        .ep = s->ep,
        .rmem = s->mbox_rmem,
        .channel = &s->channel,
        .readers = &s->cache.readers,
        .dead = &s->dead,
        .nslots = w->mailbox_slots,
        .timeout_ms = s->params.rpc_timeout_ms,
    };

    return hmaf__mbox_client_init(&s->mbox, &mp);
}

/* Everything after the channel: engine endpoint, mailbox, region cache,
 * and the watch thread last, once there is a session to watch. */
static int attach_to_host(struct hmaf_session *s, const struct hmaf_welcome *w)
{
    const hmaf_session_params_t *p = &s->params;
    int ret = hmaf__engine_ep_create(s->ctx,
                                     hmaf__channel_peer_pid(&s->channel),
                                     w->engine_blob.data,
                                     w->engine_blob.len, &s->ep);

    if (ret < 0) {
        return ret;
    }
    ret = import_mailbox(s, w);
    if (ret < 0) {
        goto err_ep;
    }
    ret = probe_host(s, w);
    if (ret < 0) {
        goto err_rmem;
    }
    ret = hmaf__regions_init(s);
    if (ret < 0) {
        goto err_rmem;
    }
    s->readers_id = s->cache.readers.id;
    ret = init_mailbox_client(s, w);
    if (ret < 0) {
        goto err_cache;
    }
    s->session_id = w->session_id;
    s->check_interval_ns =
        (uint64_t)HMAF_MIN(p->revoke_check_us, w->lease_us) * 1000u;
    ret = hmaf__watch_start(s, w->lease_us);
    if (ret < 0) {
        goto err_mbox;
    }
    return 0;
err_mbox:
    hmaf__mbox_client_fini(&s->mbox);
err_cache:
    hmaf__regcache_fini(&s->cache);
err_rmem:
    hmaf__engine_rmem_destroy(s->mbox_rmem);
err_ep:
    hmaf__engine_ep_destroy(s->ep);
    return ret;
}

/* Connect and handshake share connect_timeout_ms. */
static int connect_session(struct hmaf_session *s)
{
    uint64_t deadline = hmaf__deadline_ns(s->params.connect_timeout_ms);
    struct hmaf_welcome welcome;
    int ret = open_channel(s, deadline);

    if (ret < 0) {
        return ret;
    }
    ret = hmaf__ms_left(deadline) == 0
              ? HMAF_ETIMEDOUT
              : hmaf__bootstrap_dpu(s, hmaf__ms_left(deadline), &welcome);
    if (ret == 0) {
        ret = attach_to_host(s, &welcome);
    }
    if (ret < 0) {
        hmaf__channel_close(&s->channel);
    }
    return ret;
}

HMAF_API int hmaf_session_create(const hmaf_session_params_t *params,
                                 hmaf_session_t **session_out)
{
    hmaf_session_params_t p;
    struct hmaf_session *s;
    unsigned split_threads = 1;
    int ret = read_params(params, &p);

    if (ret == 0) {
        ret = check_params(&p);
    }
    if (ret == 0) {
        ret = split_threads_of(&p, &split_threads);
    }
    if (ret < 0 || session_out == NULL) {
        return HMAF_EINVAL;
    }
    /* On a page of its own: its hot line, the region cache's current set
     * pointer and the first reader slots share that page (and its TLB
     * entry, which a system call may flush), and each slot has its lines
     * to itself. */
    s = aligned_alloc(SESSION_ALIGN, SESSION_SIZE);
    if (s == NULL) {
        return HMAF_ENOMEM;
    }
    memset(s, 0, sizeof(*s));
    s->params = p;
    s->channel = (struct hmaf_channel){.fd = -1};
    s->watch.wake_fd = -1;
    hmaf__ring_init(s);
    s->ops = hmaf__engine_find(p.engine);
    if (s->ops == NULL) {
        ret = HMAF_ENOENGINE;
        goto err_free;
    }
    ret = hmaf__engine_ctx_create(s->ops, HMAF_ROLE_DPU, &s->ctx);
    if (ret < 0) {
        goto err_free;
    }
    s->ctx->split_threads = split_threads;
    s->ops->limits(s->ctx, &s->limits);
    /* The wire carries no longer blob, whatever the engine says. */
    s->limits.max_blob = HMAF_MIN(s->limits.max_blob, HMAF_BLOB_MAX);
    s->post = s->ops->post;
    s->move_one = s->ops->move_one;
    s->native_atomics = hmaf__engine_has_atomic(s->ops);
    s->move_one_max = HMAF_MIN(HMAF_MOVE_ONE_MAX, s->limits.max_transfer);
    pthread_mutex_init(&s->epoch_lock, NULL); /* the watch thread locks it */
    pthread_mutex_init(&s->maps_lock, NULL);
    pthread_mutex_init(&s->queues_lock, NULL);
    pthread_mutex_init(&s->give_lock, NULL);
    ret = connect_session(s);
    if (ret < 0) {
        goto err_ctx;
    }
    hmaf__sessions_add(s);
    *session_out = s;
    return 0;
err_ctx:
    hmaf__ring_fini(s);
    pthread_mutex_destroy(&s->give_lock);
    pthread_mutex_destroy(&s->queues_lock);
    pthread_mutex_destroy(&s->maps_lock);
    pthread_mutex_destroy(&s->epoch_lock);
    hmaf__engine_ctx_destroy(s->ctx);
err_free:
    free(s);
    return ret;
}

/* A forked child's copy: its channel and engine belong to the parent,
 * which goes on using them. Memory and our own fds only. */
static void free_orphan(struct hmaf_session *s)
{
    if (s->channel.fd >= 0) {
        close(s->channel.fd);
    }
    if (s->watch.wake_fd >= 0) {
        close(s->watch.wake_fd);
    }
    hmaf__engine_ep_abandon(s->ep);
    hmaf__engine_ctx_abandon(s->ctx);
}

HMAF_API void hmaf_session_destroy(hmaf_session_t *session)
{
    if (session == NULL) {
        return;
    }
    hmaf__sessions_remove(session);
    hmaf__session_heap_close(session); /* while the host still listens */
    /* Dead first: no DEREGISTER traffic (closing the channel returns our
     * holds), and the watch thread fences the session — every import
     * released, the host told — before it ends. */
    (void)hmaf__session_kill(session, HMAF_ECONNRESET);
    hmaf__watch_stop(session);
    hmaf__session_heap_free(session);
    hmaf__session_drop_evicted(session);
    hmaf__request_queues_free(session);
    hmaf__regcache_fini(&session->cache);
    hmaf__mbox_client_fini(&session->mbox);
    hmaf__engine_rmem_free(session->mbox_rmem); /* released by the fence */
    if (session->orphan) {
        free_orphan(session);
    } else {
        hmaf__engine_ep_destroy(session->ep);
        hmaf__channel_close(&session->channel);
        hmaf__engine_ctx_destroy(session->ctx);
    }
    hmaf__ring_fini(session);
    pthread_mutex_destroy(&session->give_lock);
    pthread_mutex_destroy(&session->queues_lock);
    pthread_mutex_destroy(&session->maps_lock);
    pthread_mutex_destroy(&session->epoch_lock);
    free(session);
}

int hmaf__session_kill(struct hmaf_session *s, int err)
{
    int expected = 0;

    if (!atomic_compare_exchange_strong(&s->dead, &expected, err)) {
        return 0;
    }
    hmaf__watch_wake(s);
    return 1;
}

int hmaf__session_fail(struct hmaf_session *s, int ret)
{
    if (ret == HMAF_ECONNRESET && hmaf__session_kill(s, ret)) {
        hmaf__log_warn("session %llu: host gone",
                       (unsigned long long)s->session_id);
    }
    return ret;
}

int hmaf__session_call(struct hmaf_session *s, uint8_t op, const void *req,
                       uint16_t req_len, void *resp, uint16_t resp_cap,
                       uint16_t *resp_len_out)
{
    int ret = atomic_load_explicit(&s->dead, memory_order_relaxed);

    if (ret != 0) {
        return ret;
    }
    ret = hmaf__mbox_call(&s->mbox, op, req, req_len, resp, resp_cap,
                          resp_len_out);
    if (ret != HMAF_ECONNRESET && ret != HMAF_ETIMEDOUT) {
        hmaf__count(s, mailbox_round_trips, 1);
    }
    return hmaf__session_fail(s, ret);
}

HMAF_API int hmaf_session_ping(hmaf_session_t *session)
{
    if (session == NULL) {
        return HMAF_EINVAL;
    }
    return hmaf__session_call(session, HMAF_OP_PING, NULL, 0, NULL, 0, NULL);
}

HMAF_API int hmaf_session_lookup(hmaf_session_t *session, const char *name,
                                 uint64_t *remote_addr_out, size_t *len_out)
{
    struct hmaf_req_lookup req = {{0}};
    struct hmaf_resp_lookup resp;
    uint8_t req_buf[HMAF_MBOX_REQ_MAX], resp_buf[HMAF_MBOX_RESP_MAX];
    uint16_t req_len, resp_len = 0;
    int ret;

    if (session == NULL || name == NULL || remote_addr_out == NULL ||
        name[0] == '\0') {
        return HMAF_EINVAL;
    }
    if (strlen(name) > HMAF_ROOT_NAME_MAX) {
        return HMAF_ENAMETOOLONG;
    }
    memcpy(req.name, name, strlen(name));
    req_len = (uint16_t)hmaf__req_lookup_encode(&req, req_buf);
    ret = hmaf__session_call(session, HMAF_OP_LOOKUP, req_buf, req_len,
                             resp_buf, sizeof(resp_buf), &resp_len);
    if (ret == 0) {
        ret = hmaf__resp_lookup_decode(resp_buf, resp_len, &resp);
    }
    if (ret == 0) {
        *remote_addr_out = resp.addr;
        if (len_out != NULL) {
            *len_out = (size_t)resp.len;
        }
    }
    return ret;
}

/* HMAF 0.1's hmaf_session_stats_t, the smallest a caller may pass. */
HMAF__STATS_SIZE_MIN_DEFINE(SESSION_STATS_SIZE_MIN, hmaf_session_stats_t,
                            revocations);

HMAF_API int hmaf_session_stats(hmaf_session_t *session,
                                hmaf_session_stats_t *stats_out)
{
    struct hmaf_session_counters *c;
    struct hmaf__readers *r;
    hmaf_session_stats_t st = {0};
    size_t size;

    if (session == NULL ||
        hmaf__stats_size(stats_out, SESSION_STATS_SIZE_MIN, &size) < 0) {
        return HMAF_EINVAL;
    }
    c = &session->c;
    r = &session->cache.readers;
    st.ops = hmaf__readers_sum(r, HMAF_RC_OPS);
    st.bytes_read = hmaf__readers_sum(r, HMAF_RC_BYTES_READ);
    st.bytes_written = hmaf__readers_sum(r, HMAF_RC_BYTES_WRITTEN);
    st.cache_hits = hmaf__readers_sum(r, HMAF_RC_CACHE_HITS);
    st.cache_misses = atomic_load(&c->cache_misses);
    st.registrations = atomic_load(&c->registrations);
    st.evictions = atomic_load(&c->evictions);
    st.mailbox_round_trips = atomic_load(&c->mailbox_round_trips);
    st.revocations = atomic_load(&c->revocations);
    hmaf__stats_put(stats_out, size, &st, sizeof(st));
    return 0;
}

HMAF_API const char *hmaf_session_engine(const hmaf_session_t *session)
{
    return session == NULL ? "none" : session->ops->name;
}
