/*
 * The agent's event loop: mailbox service plus channel events (new
 * connections, HELLOs arriving, peers dying). With its own thread it polls
 * adaptively: it spins while requests keep coming, then sleeps in growing
 * steps up to SLEEP_MAX_NS, woken early by any channel event.
 *
 * Every session's channel gives an fd to wait on (hmaf__channel_arm): its
 * socket, or for comch the DOCA progress engine's notification handle,
 * armed for the wait. So hmaf_agent_poll sleeps its whole timeout with
 * comch sessions too, and wakes as soon as a dpu side dies. A comch channel
 * whose handle cannot be had is asked hmaf__channel_peer_gone (one
 * doca_pe_progress call) after every wait instead, and while there is one
 * a wait lasts at most SLEEP_MAX_NS, so its dead dpu side is still seen
 * within about a millisecond.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/thread.h"

#define SPIN_NS 200000ull       /* keep spinning this long after activity */
#define SPIN_FD_CHECK_NS 50000ull /* look at the channels this often then */
#define SLEEP_MIN_NS 10000ull
#define SLEEP_MAX_NS 1000000ull

#define POLL_MAX (1 + HMAF_AGENT_PENDING_MAX + 1024)

enum fd_kind { FD_LISTENER, FD_PENDING, FD_SESSION };

struct fd_map {
    enum fd_kind kind;
    size_t index;
};

static void drop_pending(struct hmaf_agent *a, size_t i)
{
    a->pending[i] = a->pending[--a->npending];
}

/* A full table gives way to the newcomer: the oldest connection has had
 * the longest to say hello (a well-behaved peer does at once), so a flood
 * of silent connections cannot lock real peers out for
 * handshake_timeout_ms. */
static void evict_oldest_pending(struct hmaf_agent *a)
{
    size_t oldest = 0;

    for (size_t i = 1; i < a->npending; i++) {
        if (a->pending[i].deadline_ns < a->pending[oldest].deadline_ns) {
            oldest = i;
        }
    }
    hmaf__agent_refuse(a, &a->pending[oldest].channel, HMAF_ETIMEDOUT);
    drop_pending(a, oldest);
}

static void accept_new(struct hmaf_agent *a)
{
    struct hmaf_channel ch;

    while (hmaf__listener_accept(a->listener, &ch) == 0) {
        struct agent_pending *p;
        if (a->npending == HMAF_AGENT_PENDING_MAX) {
            evict_oldest_pending(a);
        }
        p = &a->pending[a->npending++];
        p->channel = ch;
        p->got = 0;
        p->deadline_ns = hmaf__deadline_ns(a->params.handshake_timeout_ms);
    }
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

/* Sessions' entries after the listener's and the pending ones'. A
 * channel without an fd gets -1, which ppoll skips: it is asked after the
 * wait. Sessions found gone while arming are closed; how many. */
static int collect_sessions(struct hmaf_agent *a, struct pollfd *fds,
                            struct fd_map *map, size_t *n)
{
    int closed = 0;

    for (size_t i = 0; i < a->params.max_sessions && *n < POLL_MAX; i++) {
        int fd;
        if (a->sessions[i] == NULL) {
            continue;
        }
        if (hmaf__channel_arm(&a->sessions[i]->channel, &fd)) {
            hmaf__agent_session_close(a, i);
            closed++;
            continue;
        }
        fds[*n] = (struct pollfd){fd, POLLIN, 0};
        map[(*n)++] = (struct fd_map){FD_SESSION, i};
    }
    return closed;
}

/* The fds to wait on; *closed: sessions already found gone. */
static size_t collect_fds(struct hmaf_agent *a, struct pollfd *fds,
                          struct fd_map *map, int *closed)
{
    size_t n = 0;

    if (a->listener != NULL) {
        fds[n] = (struct pollfd){hmaf__listener_fd(a->listener), POLLIN, 0};
        map[n++] = (struct fd_map){FD_LISTENER, 0};
    }
    for (size_t i = 0; i < a->npending; i++) {
        fds[n] = (struct pollfd){a->pending[i].channel.fd, POLLIN, 0};
        map[n++] = (struct fd_map){FD_PENDING, i};
    }
    *closed = collect_sessions(a, fds, map, &n);
    return n;
}

static int64_t at_most(int64_t timeout_ns, int64_t cap_ns)
{
    return cap_ns >= 0 && (timeout_ns < 0 || timeout_ns > cap_ns) ? cap_ns
                                                                  : timeout_ns;
}

/* A session without an fd is only seen dying by asking: wait briefly. One
 * whose channel must also be looked at now and then (comch: the handle
 * may stay quiet for a hang-up on a card) bounds the wait too. */
static int64_t wait_limit(const struct hmaf_agent *a, const struct pollfd *fds,
                          const struct fd_map *map, size_t n,
                          int64_t timeout_ns)
{
    for (size_t k = 0; k < n; k++) {
        if (map[k].kind != FD_SESSION) {
            continue;
        }
        timeout_ns = at_most(timeout_ns,
                             fds[k].fd < 0
                                 ? (int64_t)SLEEP_MAX_NS
                                 : hmaf__channel_max_wait_ns(
                                       &a->sessions[map[k].index]->channel));
    }
    return timeout_ns;
}

/* A session after the wait; 1 when it ended. */
static int session_event(struct hmaf_agent *a, const struct pollfd *p,
                         size_t index)
{
    struct hmaf_channel *ch = &a->sessions[index]->channel;
    int gone;

    if (p->fd < 0) {
        gone = hmaf__channel_peer_gone(ch);
    } else {
        gone = p->revents != 0 && hmaf__channel_notified(ch);
    }
    if (gone) {
        hmaf__agent_session_close(a, index);
    }
    return gone;
}

/* Handle what poll reported, and ask the sessions without an fd. Pending
 * entries are dropped back to front so the indices in map stay valid. */
static int handle_events(struct hmaf_agent *a, const struct pollfd *fds,
                         const struct fd_map *map, size_t n)
{
    int events = 0;

    for (size_t k = n; k-- > 0;) {
        if (map[k].kind == FD_SESSION) {
            events += session_event(a, &fds[k], map[k].index);
            continue;
        }
        if (fds[k].revents == 0) {
            continue;
        }
        events++;
        if (map[k].kind == FD_PENDING) {
            if (advance_pending(a, &a->pending[map[k].index])) {
                drop_pending(a, map[k].index);
            }
        } else {
            accept_new(a);
        }
    }
    return events;
}

int hmaf__agent_poll_channels(struct hmaf_agent *a, int64_t timeout_ns)
{
    struct pollfd fds[POLL_MAX];
    struct fd_map map[POLL_MAX];
    struct timespec ts;
    size_t n;
    int events;

    pthread_mutex_lock(&a->lock);
    n = collect_fds(a, fds, map, &events);
    timeout_ns = events > 0 ? 0 : wait_limit(a, fds, map, n, timeout_ns);
    pthread_mutex_unlock(&a->lock);
    ts = (struct timespec){.tv_sec = (time_t)(timeout_ns / 1000000000),
                           .tv_nsec = (long)(timeout_ns % 1000000000)};
    /* Wait without the lock: API calls and revocations go on meanwhile. An
     * interrupted wait reports nothing (revents stay 0). */
    (void)ppoll(fds, n, timeout_ns < 0 ? NULL : &ts, NULL);
    pthread_mutex_lock(&a->lock);
    events += handle_events(a, fds, map, n);
    expire_pending(a);
    pthread_mutex_unlock(&a->lock);
    return events;
}

static int serve_locked(struct hmaf_agent *a)
{
    int served;

    pthread_mutex_lock(&a->lock);
    served = hmaf__agent_serve_all(a);
    pthread_mutex_unlock(&a->lock);
    return served;
}

/* One turn of the thread: serve, then spin or sleep as activity says. */
static void agent_turn(struct hmaf_agent *a)
{
    uint64_t now;

    if (serve_locked(a) > 0) {
        a->last_activity_ns = hmaf__now_ns();
        a->sleep_ns = SLEEP_MIN_NS;
        return;
    }
    now = hmaf__now_ns();
    if (now - a->last_activity_ns < SPIN_NS) {
        if (now >= a->next_fd_check_ns) {
            hmaf__agent_poll_channels(a, 0);
            a->next_fd_check_ns = now + SPIN_FD_CHECK_NS;
        }
        return;
    }
    if (hmaf__agent_poll_channels(a, (int64_t)a->sleep_ns) == 0) {
        a->sleep_ns = HMAF_MIN(a->sleep_ns * 2, SLEEP_MAX_NS);
    } else {
        a->sleep_ns = SLEEP_MIN_NS;
    }
}

static void *agent_main(void *arg)
{
    struct hmaf_agent *a = arg;

    a->sleep_ns = SLEEP_MIN_NS;
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
