/*
 * The dpu side of notifications (notify.h): NOTIFY requests to the host,
 * and the host's rings, a count and a value in the mailbox header.
 *
 * A take reads the count, and the value only when the count moved: the
 * host writes the value before the count (release), so a value read after
 * a new count is that ring's or a later one's. Two reads rather than one
 * of both words: a single copy may load them in any order.
 *
 * The ring fd is an eventfd. A take drains it before it reads the count,
 * and the watch thread writes it when the count is past the last take:
 * whichever order they run in, rings not taken leave it readable.
 *
 * A waiter asleep on a socket channel sleeps on the channel as well, so
 * that the host's nudge wakes it directly (one thread wake-up, not the
 * watch thread's and then its own). It only looks: the nudge bytes stay
 * for the watch thread, which needs them for revocations. A nudge the
 * watch thread took first still reaches the waiter, through the eventfd
 * (the host stores the count before it nudges, and the watch thread looks
 * at the count after it took the nudges). A nudge that was not a ring
 * keeps the channel readable until the watch thread takes it: the waiter
 * then leaves the channel out of its sleep for CHANNEL_QUIET_NS instead
 * of spinning on it, and relies on the eventfd meanwhile.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/error.h>
#include <hmaf/notify.h>

#include "core/session_int.h"
#include "proto/mailbox.h"
#include "proto/notify.h"
#include "util/clock.h"
#include "util/compiler.h"
#include "util/log.h"

/* A waiter on a channel without nudges (comch): after its spin, it yields
 * between looks up to YIELD_NS, then sleeps in steps doubling to
 * SLEEP_MAX_NS — the latency it promises. */
#define RING_YIELD_NS 200000ull
#define RING_SLEEP_MIN_NS 10000ull
#define RING_SLEEP_MAX_NS 1000000ull
/* How long a waiter woken by a nudge that was no ring leaves the channel
 * out of its sleep (the watch thread takes the nudge meanwhile). */
#define CHANNEL_QUIET_NS 50000ull

void hmaf__ring_init(struct hmaf_session *s)
{
    pthread_mutex_init(&s->ring.lock, NULL);
    atomic_init(&s->ring.fd, -1);
    atomic_init(&s->ring.taken, 0);
    hmaf__spin_budget_init(&s->ring.spin);
}

void hmaf__ring_fini(struct hmaf_session *s)
{
    int fd = atomic_load(&s->ring.fd);

    if (fd >= 0) {
        close(fd);
    }
    pthread_mutex_destroy(&s->ring.lock);
}

static int read_count(struct hmaf_session *s, uint64_t *count_out)
{
    return hmaf__mbox_read_header(&s->mbox, HMAF_MBOX_HEADER_RING_COUNT,
                                  count_out);
}

static void signal_ring_fd(int fd)
{
    uint64_t one = 1;

    (void)!write(fd, &one, sizeof(one));
}

void hmaf__ring_look(struct hmaf_session *s)
{
    int fd = atomic_load_explicit(&s->ring.fd, memory_order_acquire);
    uint64_t count;

    if (fd >= 0 && read_count(s, &count) == 0 &&
        count != atomic_load_explicit(&s->ring.taken, memory_order_relaxed)) {
        signal_ring_fd(fd);
    }
}

/* The ring fd, made on first use. */
static int ring_fd(struct hmaf_session *s, int *fd_out)
{
    int fd = atomic_load_explicit(&s->ring.fd, memory_order_acquire);

    if (fd >= 0) {
        *fd_out = fd;
        return 0;
    }
    pthread_mutex_lock(&s->ring.lock);
    fd = atomic_load_explicit(&s->ring.fd, memory_order_relaxed);
    if (fd < 0) {
        fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd >= 0) {
            atomic_store_explicit(&s->ring.fd, fd, memory_order_release);
        }
    }
    pthread_mutex_unlock(&s->ring.lock);
    if (fd < 0) {
        hmaf__log_error("eventfd: %m");
        return errno == EMFILE || errno == ENFILE ? HMAF_ENOSPC : HMAF_ENOMEM;
    }
    /* Rings before the fd existed: the watch thread had no fd to tell. */
    hmaf__ring_look(s);
    *fd_out = fd;
    return 0;
}

/* Take the rings since the last take: *count_out 0 when there were none. */
static int take_rings(struct hmaf_session *s, int fd, uint64_t *count_out,
                      uint64_t *value_out)
{
    uint64_t count, drained;
    int ret;

    pthread_mutex_lock(&s->ring.lock);
    if (fd >= 0) {
        (void)!read(fd, &drained, sizeof(drained)); /* before the look */
    }
    ret = read_count(s, &count);
    *count_out = 0;
    if (ret == 0) {
        /* Modulo 2^64: a count that wrapped still gives the difference. */
        *count_out = count - atomic_load_explicit(&s->ring.taken,
                                                  memory_order_relaxed);
        atomic_store_explicit(&s->ring.taken, count, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->ring.lock);
    if (ret == 0 && *count_out > 0) {
        ret = hmaf__mbox_read_header(&s->mbox, HMAF_MBOX_HEADER_RING_VALUE,
                                     value_out);
    }
    return hmaf__session_fail(s, ret);
}

struct ring_wait {
    uint64_t start_ns;
    uint64_t deadline_ns; /* UINT64_MAX: none */
    uint64_t spin_ns;
    uint64_t sleep_ns;
    uint64_t quiet_until_ns; /* the channel stays out of the sleep */
    int channel_woke;        /* the last sleep ended on the channel */
};

static uint64_t left_ns(const struct ring_wait *w, uint64_t now)
{
    return now >= w->deadline_ns ? 0 : w->deadline_ns - now;
}

/* Sleep on the ring fd, the session's death and (unless quiet) the
 * channel, until one is readable or the wait is over. */
static void sleep_on_fds(struct hmaf_session *s, int fd, struct ring_wait *w,
                         uint64_t now)
{
    struct pollfd p[3] = {{.fd = fd, .events = POLLIN},
                          {.fd = s->watch.wake_fd, .events = POLLIN},
                          {.fd = s->channel.fd, .events = POLLIN}};
    nfds_t n = now >= w->quiet_until_ns ? 3 : 2;
    uint64_t left = left_ns(w, now);
    struct timespec ts;

    if (n == 2) {
        left = HMAF_MIN(left, w->quiet_until_ns - now);
    }
    ts = (struct timespec){.tv_sec = (time_t)(left / 1000000000u),
                           .tv_nsec = (long)(left % 1000000000u)};
    w->channel_woke =
        ppoll(p, n, w->deadline_ns == UINT64_MAX && n == 3 ? NULL : &ts,
              NULL) > 0 &&
        n == 3 && p[2].revents != 0;
}

/* Between two looks at the header: spin on, then (socket channel) sleep
 * on the fds, or (comch) yield, then sleep in growing steps. */
static void between_looks(struct hmaf_session *s, int fd, struct ring_wait *w,
                          uint64_t now)
{
    uint64_t waited = now - w->start_ns;

    if (waited < w->spin_ns) {
        return;
    }
    if (s->channel.fd >= 0) {
        if (w->channel_woke) {
            /* The look found no ring: a nudge for the watch thread. */
            w->quiet_until_ns = now + CHANNEL_QUIET_NS;
        }
        sleep_on_fds(s, fd, w, now);
        return;
    }
    if (waited < RING_YIELD_NS) {
        sched_yield();
        return;
    }
    nanosleep(&(struct timespec){0, (long)HMAF_MIN(w->sleep_ns,
                                                   left_ns(w, now))},
              NULL);
    w->sleep_ns = HMAF_MIN(w->sleep_ns * 2, RING_SLEEP_MAX_NS);
}

static int wait_rings(struct hmaf_session *s, int fd, int timeout_ms,
                      uint64_t *count_out, uint64_t *value_out)
{
    struct ring_wait w = {.start_ns = hmaf__now_ns(),
                          .deadline_ns = UINT64_MAX,
                          .spin_ns = hmaf__spin_budget_take(&s->ring.spin),
                          .sleep_ns = RING_SLEEP_MIN_NS};

    if (timeout_ms >= 0) {
        w.deadline_ns = w.start_ns + (uint64_t)timeout_ms * 1000000u;
    }
    for (;;) {
        int ret = take_rings(s, fd, count_out, value_out);
        uint64_t now = hmaf__now_ns();
        if (ret < 0 || *count_out > 0) {
            if (ret == 0 && now - w.start_ns < w.spin_ns) {
                hmaf__spin_budget_learn(&s->ring.spin, w.spin_ns,
                                        now - w.start_ns);
            }
            return ret;
        }
        if (now >= w.deadline_ns) {
            return HMAF_ETIMEDOUT;
        }
        between_looks(s, fd, &w, now);
    }
}

HMAF_API int hmaf_session_id(hmaf_session_t *session, uint64_t *id_out)
{
    if (session == NULL || id_out == NULL) {
        return HMAF_EINVAL;
    }
    *id_out = session->session_id;
    return 0;
}

HMAF_API int hmaf_session_notify(hmaf_session_t *session, uint32_t tag,
                                 uint64_t value)
{
    struct hmaf_req_notify r = {.tag = tag, .value = value};
    uint8_t buf[HMAF_NOTIFY_REQ_LEN];

    if (session == NULL) {
        return HMAF_EINVAL;
    }
    return hmaf__session_call(session, HMAF_OP_NOTIFY, buf,
                              (uint16_t)hmaf__req_notify_encode(&r, buf),
                              NULL, 0, NULL);
}

HMAF_API int hmaf_session_ring_fd(hmaf_session_t *session, int *fd_out)
{
    if (session == NULL || fd_out == NULL) {
        return HMAF_EINVAL;
    }
    return ring_fd(session, fd_out);
}

HMAF_API int hmaf_session_ring_wait(hmaf_session_t *session, int timeout_ms,
                                    uint64_t *count_out, uint64_t *value_out)
{
    uint64_t count = 0, value = 0;
    int fd;
    int ret;

    if (session == NULL || timeout_ms < -1) {
        return HMAF_EINVAL;
    }
    ret = ring_fd(session, &fd);
    if (ret == 0) {
        ret = wait_rings(session, fd, timeout_ms, &count, &value);
    }
    if (ret < 0) {
        return ret;
    }
    if (count_out != NULL) {
        *count_out = count;
    }
    if (value_out != NULL) {
        *value_out = value;
    }
    return 0;
}
