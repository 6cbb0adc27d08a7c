/*
 * The session's watch thread.
 *
 * The data path looks at the host's revocation epoch only when a thread
 * makes a call, so a session whose threads are idle would never confirm a
 * revocation, and a revoking host could only guess whether it may go on.
 * The watch thread looks at least once per lease the host gave
 * (WELCOME.lease_us, a quarter of its revocation wait), on the precise
 * clock, so every live session confirms in time. It sleeps on the channel
 * too, so it notices at once when the host leaves.
 *
 * Once a turn it also gives back the holds of evicted regions that no
 * REGISTER carried back since its last turn (regions.c): a session that
 * stopped missing keeps no registration on the host for longer than that.
 * Likewise a session that made no heap call since its last turn gives its
 * cached blocks and pending frees back to the host's heap (heap.c).
 *
 * When the session dies — the host left or closed it, or the application
 * destroys it — the watch thread fences it: it waits for a grace period
 * (data steps and mailbox I/O look at `dead` inside their read-side
 * section, so after it none is running and none starts), releases every
 * import, and only then tells the host (a socket is shut down, a comch
 * channel gets one message). The host's agent hands the session's mailbox
 * back to its allocator only after hearing that, so nothing of ours can
 * land in memory the host has reused.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "core/session_int.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/thread.h"

/* Bounds on how often the thread looks. Fewer looks than one a second
 * would also slow noticing a dead comch peer, which has no fd to wait on
 * (the socket channels wake the thread at once). */
#define WATCH_PERIOD_MIN_NS   100000ull
#define WATCH_PERIOD_MAX_NS   1000000000ull
#define WATCH_PERIOD_NO_FD_NS 100000000ull
/* How long telling the host may take (a comch send). */
#define FAREWELL_MS 100

/* Sleep until the period is over, the session's channel stirs, or the
 * session died; 1 when the channel stirred. */
static int wait_for_event(struct hmaf_session *s)
{
    uint64_t period = s->watch.period_ns;
    struct pollfd fds[2] = {{.fd = s->watch.wake_fd, .events = POLLIN},
                            {.fd = s->channel.fd, .events = POLLIN}};
    nfds_t n = s->channel.fd >= 0 ? 2 : 1;
    struct timespec ts;

    if (n == 1 && period > WATCH_PERIOD_NO_FD_NS) {
        period = WATCH_PERIOD_NO_FD_NS;
    }
    ts = (struct timespec){.tv_sec = (time_t)(period / 1000000000u),
                           .tv_nsec = (long)(period % 1000000000u)};
    if (ppoll(fds, n, &ts, NULL) <= 0) {
        return 0;
    }
    return n == 2 && fds[1].revents != 0;
}

/* No step and no mailbox operation runs any more, and none will start:
 * drop everything imported from the host, then tell it. */
static void fence(struct hmaf_session *s)
{
    hmaf__readers_synchronize(&s->cache.readers);
    /* UINT64_MAX: a registration answered meanwhile is refused and
     * released by the thread that asked for it. */
    (void)hmaf__regcache_clear(&s->cache, UINT64_MAX, NULL);
    hmaf__engine_rmem_release(s->mbox_rmem);
    hmaf__channel_shutdown(&s->channel, hmaf__deadline_ns(FAREWELL_MS));
}

static void *watch_main(void *arg)
{
    struct hmaf_session *s = arg;
    struct hmaf__reader *reader;

    /* Its reader slot first, while hmaf_session_create waits: the
     * application has no thread on the session yet, so there is one, and
     * it could not look at the mailbox without. */
    hmaf__reader_library_thread();
    (void)hmaf__reader_get(&s->cache.readers, &reader);
    sem_post(&s->watch.ready);
    while (!atomic_load(&s->dead)) {
        int stirred = wait_for_event(s);
        if (stirred && hmaf__channel_take_nudges(&s->channel)) {
            (void)hmaf__session_fail(s, HMAF_ECONNRESET);
        } else if (!atomic_load(&s->dead)) {
            /* A nudge: a ring, or a revocation to confirm, now. Nudges
             * do not say which (they coalesce in the socket): each look
             * compares its own word, the ring's first (its latency is
             * the point). */
            hmaf__ring_look(s);
            (void)hmaf__session_check_epoch(s, stirred);
            hmaf__session_give_back_waiting(s);
            hmaf__session_heap_idle(s);
        }
    }
    fence(s);
    return NULL;
}

static uint64_t watch_period_ns(uint32_t lease_us)
{
    uint64_t period = (uint64_t)lease_us * 1000u;

    if (period < WATCH_PERIOD_MIN_NS) {
        return WATCH_PERIOD_MIN_NS;
    }
    return period > WATCH_PERIOD_MAX_NS ? WATCH_PERIOD_MAX_NS : period;
}

int hmaf__watch_start(struct hmaf_session *s, uint32_t lease_us)
{
    int ret;

    s->watch.period_ns = watch_period_ns(lease_us);
    s->watch.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->watch.wake_fd < 0) {
        hmaf__log_error("eventfd: %m");
        return errno == EMFILE || errno == ENFILE ? HMAF_ENOSPC : HMAF_ENOMEM;
    }
    sem_init(&s->watch.ready, 0, 0);
    s->watch.running = 1; /* before the thread: it may wake itself */
    ret = hmaf__thread_start(&s->watch.thread, watch_main, s);
    if (ret < 0) {
        s->watch.running = 0;
        close(s->watch.wake_fd);
        sem_destroy(&s->watch.ready);
        return ret;
    }
    while (sem_wait(&s->watch.ready) != 0) {
        /* EINTR: a signal of the application's */
    }
    sem_destroy(&s->watch.ready);
    return 0;
}

void hmaf__watch_wake(struct hmaf_session *s)
{
    uint64_t one = 1;

    if (s->watch.running) {
        (void)!write(s->watch.wake_fd, &one, sizeof(one));
    }
}

void hmaf__watch_stop(struct hmaf_session *s)
{
    if (s->watch.running) {
        pthread_join(s->watch.thread, NULL);
        close(s->watch.wake_fd);
        s->watch.running = 0;
    }
}
