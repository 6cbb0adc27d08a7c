/*
 * The agent's event loop: mailbox service plus channel events (new
 * connections, HELLOs arriving, peers dying). With its own thread it polls
 * adaptively: it spins while requests keep coming — for a budget learnt
 * from the gaps between them (util/spin.h), then yielding between looks —
 * and after SPIN_NS without a request sleeps in growing steps up to
 * SLEEP_MAX_NS, woken early by any channel event — a dpu side whose
 * request finds the thread asleep rings its doorbell, a nudge on its
 * channel (core/mailbox.c), so an idle agent costs the host next to no
 * CPU (ten looks a second) and a request no more than a wake-up.
 *
 * A socket channel gives an fd to wait on (hmaf__channel_arm). A comch
 * channel has none: DOCA's Comm Channel has no event-triggered
 * completions, so nothing may sleep on its progress engine's notification
 * handle. It is asked hmaf__channel_peer_gone (one doca_pe_progress call)
 * after every wait instead, and while there is one a wait lasts at most
 * SLEEP_NO_FD_NS, so its dead dpu side is seen within about a
 * millisecond, and its requests, which ring no doorbell, are too.
 * That is no spin: the thread sleeps that long between looks anyway (for
 * the mailbox, which lives in memory), and hmaf_agent_poll waits again
 * until its timeout when a look found nothing.
 *
 * An engine whose transfers need the host's CPU (ucx without RDMA: the
 * dpu sides' gets and puts, mailbox writes included, are active messages
 * the host's worker serves) is progressed before every serve, and its
 * wait fd (ops->wait_fd, armed just before) sleeps in the same ppoll as
 * the channels: a dpu side's transfer wakes the loop like a doorbell, and
 * the host needs no thread of the engine's.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/thread.h"

#define SPIN_NS 200000ull       /* keep looking this long after activity */
#define SPIN_FD_CHECK_NS 50000ull /* look at the channels this often then */
#define SLEEP_MIN_NS 10000ull
#define SLEEP_MAX_NS 100000000ull /* every session can ring (sockets) */
#define SLEEP_NO_FD_NS 1000000ull /* some cannot (comch) */

/* Out of fds with no connection waiting to drop: accept again after. */
#define LISTEN_PAUSE_NS 10000000ull

static void drop_pending(struct hmaf_agent *a, size_t i)
{
    a->pending[i] = a->pending[--a->npending];
}

/* Bytes the HELLO still needs, or a refusal code once the header is in. */
static int hello_missing(const struct agent_pending *p)
{
    struct hmaf_msg_hdr hdr;
    int body;

    if (p->got < HMAF_HDR_SIZE) {
        return (int)(HMAF_HDR_SIZE - p->got);
    }
    hmaf__hdr_decode(p->buf, &hdr);
    body = hmaf__agent_hello_body_len(&hdr);
    return body < 0 ? body : (int)(HMAF_HDR_SIZE + (size_t)body - p->got);
}

/* Read what has arrived; 1 when the pending entry is finished with. */
static int advance_pending(struct hmaf_agent *a, struct agent_pending *p)
{
    int missing = hello_missing(p);

    while (missing > 0) {
        ssize_t n = recv(p->channel.fd, p->buf + p->got, (size_t)missing,
                         MSG_DONTWAIT);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return 0;
            }
            hmaf__channel_close(&p->channel); /* left before saying hello */
            return 1;
        }
        p->got += (size_t)n;
        missing = hello_missing(p);
    }
    if (missing < 0) {
        hmaf__agent_refuse(a, &p->channel, missing);
    } else {
        hmaf__agent_handle_hello(a, &p->channel, p->buf, p->got);
    }
    return 1;
}

/* The connection waiting longest: the one a full table gives up first. */
static size_t oldest_pending(const struct hmaf_agent *a)
{
    size_t oldest = 0;

    for (size_t i = 1; i < a->npending; i++) {
        if (a->pending[i].accepted_ns < a->pending[oldest].accepted_ns) {
            oldest = i;
        }
    }
    return oldest;
}

/* The table is full (or fds ran out): the longest waiter gives way, after
 * a last look — a HELLO that has arrived by now is answered, not dropped —
 * but only once it has waited pending_grace_ns: a well-behaved peer sends
 * its HELLO at once, so what has waited that long sends slowly or not at
 * all. Until then we accept no one: newcomers wait in the kernel's
 * backlog, and are read the moment they are accepted. 1 when a place is
 * free now. */
static int give_way(struct hmaf_agent *a)
{
    size_t oldest = oldest_pending(a);
    uint64_t ripe = a->pending[oldest].accepted_ns + a->pending_grace_ns;

    if (hmaf__now_ns() < ripe) {
        a->listen_paused_until_ns = ripe;
        return 0;
    }
    if (!advance_pending(a, &a->pending[oldest])) {
        hmaf__agent_refuse(a, &a->pending[oldest].channel, HMAF_ETIMEDOUT);
    }
    drop_pending(a, oldest);
    return 1;
}

/* A free entry for one more waiting connection: the table grows up to its
 * limit, then the longest waiter may give way — to a newcomer only: the
 * listener is asked first, so a turn that emptied the backlog does not
 * drop one more waiter for no one. */
static int room_for_one(struct hmaf_agent *a)
{
    if (a->npending < a->pending_cap) {
        return 1;
    }
    if (a->pending_cap < HMAF_AGENT_PENDING_MAX) {
        size_t cap = a->pending_cap == 0 ? 16 : a->pending_cap * 2;
        struct agent_pending *v = realloc(a->pending, cap * sizeof(*v));
        if (v != NULL) {
            a->pending = v;
            a->pending_cap = cap;
            return 1;
        }
    }
    return a->npending > 0 && hmaf__listener_has_newcomer(a->listener) &&
           give_way(a);
}

/* Out of fds: a waiting connection gives its fd back, or the listener
 * rests (its backlog holds the newcomers) rather than waking us in vain. */
static int make_fd_room(struct hmaf_agent *a)
{
    uint64_t held_back;

    if (a->npending > 0) {
        return give_way(a);
    }
    if (hmaf__log_allow(&a->fds_log, &held_back)) {
        hmaf__log_warn("out of file descriptors: not accepting for %llu ms "
                       "(%llu more times since the last such message)",
                       LISTEN_PAUSE_NS / 1000000ull,
                       (unsigned long long)held_back);
    }
    a->listen_paused_until_ns = hmaf__now_ns() + LISTEN_PAUSE_NS;
    return 0;
}

/* Take what is in the backlog, a bounded number per turn, while there is
 * room. Each newcomer gets a first look at once: a peer that sent its
 * HELLO with its connect is answered before it could ever be dropped. */
static void accept_new(struct hmaf_agent *a)
{
    for (int n = 0; n < HMAF_AGENT_ACCEPTS_PER_TURN && room_for_one(a);) {
        struct agent_pending *p;
        struct hmaf_channel ch;
        int ret = hmaf__listener_accept(a->listener, &ch);

        if (ret == -EMFILE && make_fd_room(a)) {
            continue;
        }
        if (ret < 0) {
            return;
        }
        n++;
        p = &a->pending[a->npending++];
        p->channel = ch;
        p->got = 0;
        p->accepted_ns = hmaf__now_ns();
        p->deadline_ns = hmaf__deadline_ns(a->params.handshake_timeout_ms);
        if (advance_pending(a, p)) {
            drop_pending(a, a->npending - 1);
        }
    }
}

static void expire_pending(struct hmaf_agent *a)
{
    uint64_t now = hmaf__now_ns();

    for (size_t i = a->npending; i-- > 0;) {
        if (now >= a->pending[i].deadline_ns) {
            hmaf__agent_refuse(a, &a->pending[i].channel, HMAF_ETIMEDOUT);
            drop_pending(a, i);
        }
    }
}

static void add_fd(struct hmaf_agent *a, size_t *n, int fd,
                   struct agent_fd what)
{
    a->pfds[*n] = (struct pollfd){fd, POLLIN, 0};
    a->pmap[(*n)++] = what;
}

/* Sessions' entries. A channel without an fd gets -1, which ppoll skips:
 * it is asked after the wait. Sessions found gone while arming are
 * closed; how many. */
static int collect_sessions(struct hmaf_agent *a, size_t *n)
{
    int closed = 0;

    for (size_t i = 0; i < a->params.max_sessions; i++) {
        struct agent_session *s = a->sessions[i];
        int fd;
        if (s == NULL) {
            continue;
        }
        if (hmaf__channel_arm(&s->channel, &fd)) {
            hmaf__agent_session_close(a, i, 1);
            closed++;
            continue;
        }
        add_fd(a, n, fd, (struct agent_fd){FD_SESSION, i, s->id});
    }
    return closed;
}

/* The fds to wait on; *closed: sessions already found gone. */
static size_t collect_fds(struct hmaf_agent *a, int *closed)
{
    size_t n = 0;

    if (a->listener != NULL && hmaf__now_ns() >= a->listen_paused_until_ns) {
        add_fd(a, &n, hmaf__listener_fd(a->listener),
               (struct agent_fd){FD_LISTENER, 0, 0});
    }
    for (size_t i = 0; i < a->npending; i++) {
        add_fd(a, &n, a->pending[i].channel.fd,
               (struct agent_fd){FD_PENDING, i, 0});
    }
    *closed = collect_sessions(a, &n);
    for (size_t i = 0; i < a->ngraves; i++) {
        add_fd(a, &n, a->graves[i].channel.fd,
               (struct agent_fd){FD_GRAVE, i, 0});
    }
    return n;
}

/* Arm the engine's wake-up: 1 when it has work already (do not sleep),
 * else 0 with its fd in *fd_out, or -1 when it has none. */
static int engine_arm(struct hmaf_agent *a, int *fd_out)
{
    int ret = a->ops->wait_fd(a->ctx, fd_out);

    if (ret == HMAF_EBUSY) {
        return 1;
    }
    if (ret < 0) {
        *fd_out = -1;
    }
    return 0;
}

int hmaf__agent_engine_progress(struct hmaf_agent *a)
{
    int n = a->ops->host_progress(a->ctx);

    return n > 0 ? n : 0;
}

static int64_t at_most(int64_t timeout_ns, int64_t cap_ns)
{
    return cap_ns >= 0 && (timeout_ns < 0 || timeout_ns > cap_ns) ? cap_ns
                                                                  : timeout_ns;
}

/* A session without an fd (comch) is only seen dying by asking: wait
 * briefly. A listener resting for want of fds bounds the wait too. */
static int64_t wait_limit(const struct hmaf_agent *a, size_t n,
                          int64_t timeout_ns)
{
    uint64_t now = hmaf__now_ns();

    if (a->listener != NULL && now < a->listen_paused_until_ns) {
        timeout_ns = at_most(timeout_ns,
                             (int64_t)(a->listen_paused_until_ns - now));
    }
    for (size_t k = 0; k < n; k++) {
        if (a->pmap[k].kind == FD_SESSION && a->pfds[k].fd < 0) {
            return at_most(timeout_ns, (int64_t)SLEEP_NO_FD_NS);
        }
    }
    return timeout_ns;
}

/* A session after the wait; 1 when it ended. It may have been closed by
 * an API call (a revocation cutting it off) while we waited. */
static int session_event(struct hmaf_agent *a, const struct pollfd *p,
                         const struct agent_fd *m)
{
    struct agent_session *s = a->sessions[m->index];
    int gone;

    if (s == NULL || s->id != m->id) {
        return 0;
    }
    if (p->fd < 0) {
        gone = hmaf__channel_peer_gone(&s->channel);
    } else {
        gone = p->revents != 0 && hmaf__channel_notified(&s->channel);
    }
    if (gone) {
        /* Only a peer that closed its end has stopped for sure; one that
         * merely broke the protocol may still be writing. */
        hmaf__agent_session_close(a, m->index,
                                  hmaf__channel_peer_closed(&s->channel));
    }
    return gone;
}

/* A grave's dpu side stirred: when it closed its end, the grave goes.
 * Anything else it sends is read and ignored. */
static int grave_event(struct hmaf_agent *a, const struct pollfd *p,
                       size_t index)
{
    struct agent_grave *g = &a->graves[index];
    char sink[256];

    if (p->revents == 0 || index >= a->ngraves || g->channel.fd != p->fd) {
        return 0;
    }
    if (hmaf__channel_peer_closed(&g->channel)) {
        hmaf__agent_grave_free(a, index);
        return 1;
    }
    (void)!recv(g->channel.fd, sink, sizeof(sink), MSG_DONTWAIT);
    return 0;
}

/* Handle what poll reported, and ask the sessions without an fd. Entries
 * are handled back to front, so removing an entry (swapping the last one
 * into its place) never moves one still to be handled; new connections
 * are taken last, after every waiting one had its turn. */
static int handle_events(struct hmaf_agent *a, size_t n)
{
    int events = 0;

    for (size_t k = n; k-- > 0;) {
        const struct pollfd *p = &a->pfds[k];
        const struct agent_fd *m = &a->pmap[k];
        if (m->kind == FD_SESSION) {
            events += session_event(a, p, m);
        } else if (m->kind == FD_ENGINE) {
            continue; /* progressed after the lock is dropped */
        } else if (m->kind == FD_GRAVE) {
            events += grave_event(a, p, m->index);
        } else if (p->revents != 0) {
            events++;
            if (m->kind == FD_LISTENER) {
                accept_new(a);
            } else if (advance_pending(a, &a->pending[m->index])) {
                drop_pending(a, m->index);
            }
        }
    }
    return events;
}

int hmaf__agent_poll_channels(struct hmaf_agent *a, int64_t timeout_ns)
{
    struct timespec ts;
    int engine_fd;
    int engine_busy = engine_arm(a, &engine_fd);
    size_t n, engine_at = SIZE_MAX; /* its entry, when it has one */
    int events;

    pthread_mutex_lock(&a->lock);
    n = collect_fds(a, &events);
    if (engine_fd >= 0 && !engine_busy) {
        engine_at = n;
        add_fd(a, &n, engine_fd, (struct agent_fd){FD_ENGINE, 0, 0});
    }
    timeout_ns = events > 0 || engine_busy ? 0 : wait_limit(a, n, timeout_ns);
    pthread_mutex_unlock(&a->lock);
    ts = (struct timespec){.tv_sec = (time_t)(timeout_ns / 1000000000),
                           .tv_nsec = (long)(timeout_ns % 1000000000)};
    /* Wait without the lock: API calls and revocations go on meanwhile. A
     * signal that interrupts the wait must not hide what is ready already
     * (a caller's hmaf_agent_poll would report no work where there is
     * some): look once more without waiting. Failing again, report
     * nothing (revents stay 0). */
    if (ppoll(a->pfds, n, timeout_ns < 0 ? NULL : &ts, NULL) < 0 &&
        ppoll(a->pfds, n, &(struct timespec){0, 0}, NULL) < 0) {
        for (size_t k = 0; k < n; k++) {
            a->pfds[k].revents = 0;
        }
    }
    engine_busy |= engine_at < n && a->pfds[engine_at].revents != 0;
    pthread_mutex_lock(&a->lock);
    events += handle_events(a, n);
    expire_pending(a);
    pthread_mutex_unlock(&a->lock);
    if (engine_busy) {
        events += hmaf__agent_engine_progress(a) > 0;
    }
    return events;
}

int hmaf__agent_poll_alloc(struct hmaf_agent *a)
{
    /* listener, engine, waiting connections, sessions and graves */
    a->poll_cap = 2 + HMAF_AGENT_PENDING_MAX + 2 * (size_t)a->params.max_sessions;
    a->pfds = calloc(a->poll_cap, sizeof(*a->pfds));
    a->pmap = calloc(a->poll_cap, sizeof(*a->pmap));
    return a->pfds != NULL && a->pmap != NULL ? 0 : HMAF_ENOMEM;
}

/* The engine's share first: the requests it lands (ucx) are served at
 * once. Its work counts as activity: a dpu side that reads keeps the
 * loop looking. */
static int serve_locked(struct hmaf_agent *a)
{
    int served = hmaf__agent_engine_progress(a);

    pthread_mutex_lock(&a->lock);
    served += hmaf__agent_serve_all(a);
    pthread_mutex_unlock(&a->lock);
    hmaf__agent_notify_deliver(a);
    return served;
}

/* The channels get a look now and then even while requests keep the
 * loop busy: new connections and dying peers must not wait for a lull. */
static void look_at_channels(struct hmaf_agent *a, uint64_t now)
{
    if (now >= a->next_fd_check_ns) {
        hmaf__agent_poll_channels(a, 0);
        a->next_fd_check_ns = now + SPIN_FD_CHECK_NS;
    }
}

/* Requests were served: the gap since the last ones teaches the spin
 * budget — unless the thread slept meanwhile (the dpu sides were idle,
 * which says nothing about CPUs) — and the next gap gets its budget. */
static void note_activity(struct hmaf_agent *a, uint64_t now)
{
    uint64_t gap = now - a->last_activity_ns;

    if (gap < SPIN_NS) {
        hmaf__spin_budget_learn(&a->spin, a->spin_ns, gap);
    }
    a->spin_ns = hmaf__spin_budget_take(&a->spin);
    a->last_activity_ns = now;
    a->sleep_ns = SLEEP_MIN_NS;
}

/* One turn of the thread: serve, then spin or sleep as activity says.
 * Spinning yields between empty looks once the spin budget is spent: a
 * dpu side on our CPU gets to write its next request (or to read our
 * answer) at once, instead of when the scheduler takes the CPU from us. */
static void agent_turn(struct hmaf_agent *a)
{
    uint64_t now;

    if (serve_locked(a) > 0) {
        now = hmaf__now_ns();
        note_activity(a, now);
        look_at_channels(a, now);
        return;
    }
    now = hmaf__now_ns();
    if (now - a->last_activity_ns < SPIN_NS) {
        look_at_channels(a, now);
        if (now - a->last_activity_ns >= a->spin_ns) {
            sched_yield();
        }
        return;
    }
    if (hmaf__agent_poll_channels(a, (int64_t)a->sleep_ns) == 0) {
        a->sleep_ns = HMAF_MIN(a->sleep_ns * 2, SLEEP_MAX_NS);
    } else {
        /* Woken with work: the engine's (ucx serves a dpu side's
         * transfers right there, and they reach no mailbox) or a
         * doorbell's. Look on as after a serve, so that the next one finds
         * the loop looking rather than asleep. */
        note_activity(a, hmaf__now_ns());
    }
}

static void *agent_main(void *arg)
{
    struct hmaf_agent *a = arg;

    a->sleep_ns = SLEEP_MIN_NS;
    hmaf__spin_budget_init(&a->spin);
    a->spin_ns = hmaf__spin_budget_take(&a->spin);
    while (!atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
        agent_turn(a);
    }
    return NULL;
}

int hmaf__agent_start_thread(struct hmaf_agent *a)
{
    int ret = hmaf__thread_start(&a->thread, agent_main, a);

    a->has_thread = ret == 0;
    return ret;
}

void hmaf__agent_stop_thread(struct hmaf_agent *a)
{
    if (a->has_thread) {
        atomic_store(&a->stopping, 1);
        pthread_join(a->thread, NULL);
        a->has_thread = 0;
    }
}
