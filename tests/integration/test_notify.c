/* Notifications both ways against a real host: test_notify <case>.
 *   callback       several sessions and threads notify; the agent's
 *                  callback counts exactly what was sent
 *   callback-poll  the same, the agent driven by hmaf_agent_poll
 *   fd             no callback: the queue coalesces per session and tag,
 *                  the notify fd says so, a drain takes exactly the count
 *   ring           one session, all sessions, a waiter asleep, a dead one
 *   ring-race      rings at random intervals (bursts, spins, sleeps) and
 *                  revocations between them, two waiters take them: every
 *                  ring is counted once, none is lost
 *   flood          a session's distinct tags are bounded (HMAF_ENOSPC)
 *   hostile        128 threads notify at once; a callback that rings back
 *                  and takes from the queue; rings to every session while
 *                  sessions come and go; the agent destroyed while a slow
 *                  callback runs and notifications wait
 *   malformed      NOTIFY requests written raw: errors, the agent lives
 * The host's findings come back through memory shared with the child. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "raw_slot.h"
#include "target.h"

#define SESSIONS 3
#define THREADS 2

struct shared {
    _Atomic uint64_t cb_count;   /* counts the callback saw, summed */
    _Atomic uint64_t cb_entries; /* its calls */
    _Atomic uint64_t cb_max;     /* the largest count of one call */
    uint64_t ring_session, ring_value;
    int ring_ret;
    int fd_readable, fd_after; /* around a drain */
    uint64_t drained_count, drained_entries;
    uint32_t drained_tags[SESSIONS * THREADS];
    hmaf_agent_stats_t stats; /* command 's' */
};

static struct shared *sh;

static void on_notify(void *arg, const hmaf_notification_t *n)
{
    (void)arg;
    CHECK(n->count >= 1 && n->session_id != 0);
    atomic_fetch_add(&sh->cb_count, n->count);
    atomic_fetch_add(&sh->cb_entries, 1);
    if (n->count > atomic_load(&sh->cb_max)) {
        atomic_store(&sh->cb_max, n->count);
    }
}

static int fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) == 1;
}

static int drain(hmaf_agent_t *agent)
{
    hmaf_notification_t out[16];
    size_t n;
    int fd;

    CHECK_OK(hmaf_agent_notify_fd(agent, &fd));
    sh->fd_readable = fd_readable(fd);
    sh->drained_count = sh->drained_entries = 0;
    do {
        CHECK_OK(hmaf_agent_notifications(agent, out, 16, &n));
        for (size_t i = 0; i < n; i++) {
            sh->drained_count += out[i].count;
            if (sh->drained_entries < SESSIONS * THREADS) {
                sh->drained_tags[sh->drained_entries] = out[i].tag;
            }
            sh->drained_entries++;
        }
    } while (n > 0);
    sh->fd_after = fd_readable(fd);
    return 1;
}

static int host_setup(hmaf_agent_t *agent, void *arg)
{
    return arg != NULL ? hmaf_agent_on_notify(agent, on_notify, NULL) : 0;
}

/* A revocation: every session's watch thread is nudged and confirms. */
static int expose_revoke(hmaf_agent_t *agent)
{
    static char page[4096] __attribute__((aligned(4096)));

    CHECK_OK(hmaf_agent_expose(agent, page, sizeof(page), HMAF_ACCESS_READ));
    CHECK_OK(hmaf_agent_revoke(agent, page, sizeof(page)));
    return 1;
}

/* Rings the sender back with its value, and looks at the queue. */
static void on_notify_echo(void *arg, const hmaf_notification_t *n)
{
    hmaf_agent_t *agent = arg;
    hmaf_notification_t out[4];
    size_t k;

    CHECK_OK(hmaf_agent_ring(agent, n->session_id, n->value));
    CHECK_OK(hmaf_agent_notifications(agent, out, 4, &k));
    CHECK_EQ(k, 0); /* a callback is set: nothing waits in the queue */
    atomic_fetch_add(&sh->cb_count, n->count);
}

static void on_notify_slow(void *arg, const hmaf_notification_t *n)
{
    (void)arg;
    atomic_fetch_add(&sh->cb_count, n->count);
    usleep(10000);
}

static _Atomic int ringer_stop;

/* The host's application thread ringing every session. */
static void *ring_all(void *arg)
{
    while (!atomic_load(&ringer_stop)) {
        CHECK_OK(hmaf_agent_ring(arg, 0, 1));
    }
    return NULL;
}

static int ringer(hmaf_agent_t *agent, int on)
{
    static pthread_t th;

    if (on) {
        atomic_store(&ringer_stop, 0);
        return pthread_create(&th, NULL, ring_all, agent) == 0;
    }
    atomic_store(&ringer_stop, 1);
    return pthread_join(th, NULL) == 0;
}

static int host_command(hmaf_agent_t *agent, int cmd, void *arg)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    (void)arg;
    switch (cmd) {
    case 'v':
        return expose_revoke(agent);
    case 's':
        sh->stats = (hmaf_agent_stats_t)HMAF_AGENT_STATS_INIT;
        return hmaf_agent_stats(agent, &sh->stats) == 0;
    case 'e':
        return hmaf_agent_on_notify(agent, on_notify_echo, agent) == 0;
    case 'w':
        return hmaf_agent_on_notify(agent, on_notify_slow, NULL) == 0;
    case 'A':
    case 'a':
        return ringer(agent, cmd == 'A');
    case 'r':
        sh->ring_ret = hmaf_agent_ring(agent, sh->ring_session,
                                       sh->ring_value);
        return 1;
    case 'd':
        return drain(agent);
    case 'c':
        return hmaf_agent_on_notify(agent, on_notify, NULL) == 0;
    case 'l':
        CHECK_OK(hmaf_agent_stats(agent, &st));
        return (int)st.sessions_live;
    case 'b':
        CHECK_OK(hmaf_agent_stats(agent, &st));
        return (int)st.bad_requests;
    default:
        return 0;
    }
}

static void start(struct target *t, int with_callback, int threaded)
{
    struct target_options o = {.setup = host_setup,
                               .command = host_command,
                               .arg = with_callback ? (void *)1 : NULL,
                               .agent_threaded = threaded ? 1 : -1};

    target_start(t, &o);
}

struct sender {
    hmaf_session_t *s;
    uint32_t tag;
    int n;
};

static void *send_many(void *arg)
{
    struct sender *x = arg;

    for (int i = 0; i < x->n; i++) {
        CHECK_OK(hmaf_session_notify(x->s, x->tag, (uint64_t)i));
    }
    return NULL;
}

/* SESSIONS sessions of THREADS threads send n each; thread k of a
 * session uses tag tag_of(k). */
static void send_from_all(hmaf_session_t **s, int n, uint32_t (*tag_of)(int))
{
    pthread_t th[SESSIONS * THREADS];
    struct sender x[SESSIONS * THREADS];

    for (int i = 0; i < SESSIONS * THREADS; i++) {
        x[i] = (struct sender){s[i / THREADS], tag_of(i % THREADS), n};
        CHECK(pthread_create(&th[i], NULL, send_many, &x[i]) == 0);
    }
    for (int i = 0; i < SESSIONS * THREADS; i++) {
        pthread_join(th[i], NULL);
    }
}

static uint32_t one_tag(int k)
{
    (void)k;
    return 7;
}

static uint32_t own_tag(int k)
{
    return 100u + (uint32_t)k;
}

static void connect_all(const struct target *t, hmaf_session_t **s)
{
    for (int i = 0; i < SESSIONS; i++) {
        s[i] = target_connect(t);
    }
}

static void destroy_all(hmaf_session_t **s)
{
    for (int i = 0; i < SESSIONS; i++) {
        hmaf_session_destroy(s[i]);
    }
}

/* The callback runs after the answer: wait for it, boundedly. */
static void await_cb_count(uint64_t want)
{
    for (int i = 0; i < 10000 && atomic_load(&sh->cb_count) < want; i++) {
        usleep(1000);
    }
    CHECK_EQ(atomic_load(&sh->cb_count), want);
}

static void case_callback(int threaded)
{
    struct target t;
    hmaf_session_t *s[SESSIONS];
    const int n = 1500;
    const uint64_t total = (uint64_t)SESSIONS * THREADS * n;

    start(&t, 1, threaded);
    connect_all(&t, s);
    send_from_all(s, n, one_tag);
    await_cb_count(total);
    usleep(20000);
    CHECK_EQ(atomic_load(&sh->cb_count), total); /* nothing more */
    printf("callback: %llu notifications in %llu calls, largest count %llu\n",
           (unsigned long long)total,
           (unsigned long long)atomic_load(&sh->cb_entries),
           (unsigned long long)atomic_load(&sh->cb_max));
    destroy_all(s);
    CHECK_EQ(target_stop(&t), 0);
}

static void case_fd(void)
{
    struct target t;
    hmaf_session_t *s[SESSIONS];
    const int n = 1000;

    start(&t, 0, 1);
    connect_all(&t, s);
    CHECK_EQ(target_command(&t, 'd'), 1); /* nothing yet */
    CHECK_EQ(sh->fd_readable, 0);
    CHECK_EQ(sh->drained_entries, 0);
    send_from_all(s, n, own_tag);
    /* Nothing taken meanwhile: one entry per session and tag. */
    CHECK_EQ(target_command(&t, 'd'), 1);
    CHECK_EQ(sh->fd_readable, 1);
    CHECK_EQ(sh->fd_after, 0);
    CHECK_EQ(sh->drained_entries, SESSIONS * THREADS);
    CHECK_EQ(sh->drained_count, (uint64_t)SESSIONS * THREADS * n);
    for (int i = 0; i < SESSIONS * THREADS; i++) {
        CHECK(sh->drained_tags[i] == 100 || sh->drained_tags[i] == 101);
    }
    /* A callback from now on: the queue stays empty. */
    CHECK_EQ(target_command(&t, 'c'), 1);
    CHECK_OK(hmaf_session_notify(s[0], 1, 2));
    await_cb_count(1);
    CHECK_EQ(target_command(&t, 'd'), 1);
    CHECK_EQ(sh->drained_entries, 0);
    destroy_all(s);
    CHECK_EQ(target_stop(&t), 0);
}

static void ring(struct target *t, uint64_t id, uint64_t value)
{
    sh->ring_session = id;
    sh->ring_value = value;
    CHECK_EQ(target_command(t, 'r'), 1);
}

static void expect_ring(hmaf_session_t *s, int timeout_ms, uint64_t count,
                        uint64_t value)
{
    uint64_t c = 0, v = 0;

    CHECK_OK(hmaf_session_ring_wait(s, timeout_ms, &c, &v));
    CHECK_EQ(c, count);
    CHECK_EQ(v, value);
}

struct waiter {
    hmaf_session_t *s;
    uint64_t count, value;
    int ret;
};

static void *wait_ring(void *arg)
{
    struct waiter *w = arg;

    w->ret = hmaf_session_ring_wait(w->s, 10000, &w->count, &w->value);
    return NULL;
}

static void ring_fd_readable(hmaf_session_t *s)
{
    struct pollfd p = {.events = POLLIN};

    CHECK_OK(hmaf_session_ring_fd(s, &p.fd));
    CHECK_EQ(poll(&p, 1, 10000), 1); /* comch: the watch thread's look */
}

static void case_ring(void)
{
    struct target t;
    hmaf_session_t *s[SESSIONS];
    uint64_t id[SESSIONS];
    struct waiter w;
    pthread_t th;
    int fd;

    start(&t, 0, 1);
    connect_all(&t, s);
    for (int i = 0; i < SESSIONS; i++) {
        CHECK_OK(hmaf_session_id(s[i], &id[i]));
        CHECK(id[i] != 0 && (i == 0 || id[i] != id[i - 1]));
        CHECK_ERR(hmaf_session_ring_wait(s[i], 0, NULL, NULL),
                  HMAF_ETIMEDOUT);
    }
    /* One session: by fd, then taken; the others see nothing. */
    ring(&t, id[1], 42);
    CHECK_OK(sh->ring_ret);
    ring_fd_readable(s[1]);
    expect_ring(s[1], 0, 1, 42);
    CHECK_OK(hmaf_session_ring_fd(s[1], &fd));
    CHECK_EQ(fd_readable(fd), 0);
    CHECK_ERR(hmaf_session_ring_wait(s[0], 0, NULL, NULL), HMAF_ETIMEDOUT);
    CHECK_ERR(hmaf_session_ring_wait(s[2], 20, NULL, NULL), HMAF_ETIMEDOUT);
    /* Rings coalesce: a count and the latest value. */
    for (uint64_t v = 1; v <= 3; v++) {
        ring(&t, id[0], v);
    }
    expect_ring(s[0], 5000, 3, 3);
    /* Every session. */
    ring(&t, 0, 77);
    CHECK_OK(sh->ring_ret);
    for (int i = 0; i < SESSIONS; i++) {
        expect_ring(s[i], 5000, 1, 77);
    }
    /* A waiter already asleep. */
    w = (struct waiter){.s = s[2]};
    CHECK(pthread_create(&th, NULL, wait_ring, &w) == 0);
    usleep(20000);
    ring(&t, id[2], 5);
    pthread_join(th, NULL);
    CHECK_OK(w.ret);
    CHECK_EQ(w.count, 1);
    CHECK_EQ(w.value, 5);
    /* A session gone: HMAF_ENOENT once the agent closed it. */
    hmaf_session_destroy(s[2]);
    for (int i = 0; i < 5000 && target_command(&t, 'l') != SESSIONS - 1;
         i++) {
        usleep(1000);
    }
    ring(&t, id[2], 1);
    CHECK_ERR(sh->ring_ret, HMAF_ENOENT);
    ring(&t, 999999, 1);
    CHECK_ERR(sh->ring_ret, HMAF_ENOENT);
    hmaf_session_destroy(s[0]);
    hmaf_session_destroy(s[1]);
    CHECK_EQ(target_stop(&t), 0);
}

struct taker {
    hmaf_session_t *s;
    _Atomic uint64_t *taken;
    _Atomic int *stop;
};

static void *take_rings(void *arg)
{
    struct taker *x = arg;
    uint64_t c, v;

    while (!atomic_load(x->stop)) {
        int ret = hmaf_session_ring_wait(x->s, 50, &c, &v);
        if (ret == HMAF_ETIMEDOUT) {
            continue;
        }
        CHECK_OK(ret);
        CHECK(c >= 1 && v >= 1);
        atomic_fetch_add(x->taken, c);
    }
    return NULL;
}

/* Most gaps are past the waiters' spin, so they sleep; some are within
 * it, some none (bursts that coalesce). */
static unsigned random_gap_us(void)
{
    switch (rand() % 4) {
    case 0:
        return 0;
    case 1:
        return (unsigned)(rand() % 30);
    default:
        return 100u + (unsigned)(rand() % 900);
    }
}

static void case_ring_race(void)
{
    struct target t;
    hmaf_session_t *s;
    _Atomic uint64_t taken = 0;
    _Atomic int stop = 0;
    struct taker x;
    pthread_t th[2];
    const uint64_t rings = 1500;
    uint64_t id;

    srand((unsigned)getpid());
    start(&t, 0, 1);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_id(s, &id));
    x = (struct taker){s, &taken, &stop};
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&th[i], NULL, take_rings, &x) == 0);
    }
    for (uint64_t i = 1; i <= rings; i++) {
        usleep(random_gap_us());
        ring(&t, id, i);
        CHECK_OK(sh->ring_ret);
        if (i % 100 == 0) {
            CHECK_EQ(target_command(&t, 'v'), 1);
        }
    }
    for (int i = 0; i < 10000 && atomic_load(&taken) < rings; i++) {
        usleep(1000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_EQ(atomic_load(&taken), rings);
    CHECK_ERR(hmaf_session_ring_wait(s, 0, NULL, NULL), HMAF_ETIMEDOUT);
    CHECK_EQ(target_command(&t, 's'), 1);
    CHECK_EQ(sh->stats.rings, rings);
    printf("ring-race: %llu rings taken\n", (unsigned long long)rings);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

static void case_flood(void)
{
    struct target t;
    hmaf_session_t *s, *other;

    start(&t, 0, 1);
    s = target_connect(&t);
    other = target_connect(&t);
    for (uint32_t tag = 0; tag < HMAF_NOTIFY_TAGS_MAX; tag++) {
        CHECK_OK(hmaf_session_notify(s, tag, tag));
    }
    for (int i = 0; i < 1000; i++) {
        CHECK_ERR(hmaf_session_notify(s, HMAF_NOTIFY_TAGS_MAX + (uint32_t)i,
                                      0),
                  HMAF_ENOSPC);
        CHECK_OK(hmaf_session_notify(s, 5, 0)); /* coalesces */
    }
    CHECK_OK(hmaf_session_notify(other, 9999, 1)); /* its own bound */
    CHECK_EQ(target_command(&t, 's'), 1);
    CHECK_EQ(sh->stats.notifications, HMAF_NOTIFY_TAGS_MAX + 1000 + 1);
    CHECK_EQ(sh->stats.notifications_coalesced, 1000);
    CHECK_EQ(sh->stats.notifications_refused, 1000);
    CHECK_EQ(target_command(&t, 'd'), 1);
    CHECK_EQ(sh->drained_entries, HMAF_NOTIFY_TAGS_MAX + 1);
    CHECK_EQ(sh->drained_count, HMAF_NOTIFY_TAGS_MAX + 1000 + 1);
    CHECK_OK(hmaf_session_notify(s, HMAF_NOTIFY_TAGS_MAX + 1, 0));
    hmaf_session_destroy(other);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

#define FLOODERS 128

static void *notify_twenty(void *arg)
{
    struct sender *x = arg;

    for (int i = 0; i < 20; i++) {
        CHECK_OK(hmaf_session_notify(x->s, x->tag, (uint64_t)i));
    }
    return NULL;
}

/* 128 threads on one session, 8 tags: every notification counted. */
static void flood_from_threads(struct target *t)
{
    hmaf_session_t *s = target_connect(t);
    static pthread_t th[FLOODERS];
    static struct sender x[FLOODERS];

    atomic_store(&sh->cb_count, 0);
    for (int i = 0; i < FLOODERS; i++) {
        x[i] = (struct sender){s, (uint32_t)(i % 8), 20};
        CHECK(pthread_create(&th[i], NULL, notify_twenty, &x[i]) == 0);
    }
    for (int i = 0; i < FLOODERS; i++) {
        pthread_join(th[i], NULL);
    }
    await_cb_count(FLOODERS * 20);
    hmaf_session_destroy(s);
}

/* The callback rings the sender back from the agent's thread. */
static void echo_rings(struct target *t)
{
    hmaf_session_t *s = target_connect(t);

    CHECK_EQ(target_command(t, 'e'), 1);
    for (uint64_t i = 1; i <= 200; i++) {
        CHECK_OK(hmaf_session_notify(s, 1, i));
        expect_ring(s, 5000, 1, i);
    }
    hmaf_session_destroy(s);
}

/* Rings to every session while sessions open and close. */
static void ring_churn(struct target *t)
{
    CHECK_EQ(target_command(t, 'A'), 1);
    for (int i = 0; i < 20; i++) {
        hmaf_session_t *s = target_connect(t);
        (void)hmaf_session_ring_wait(s, i % 2, NULL, NULL);
        hmaf_session_destroy(s);
    }
    CHECK_EQ(target_command(t, 'a'), 1);
}

static void *notify_ignoring(void *arg)
{
    struct sender *x = arg;

    for (int i = 0; i < x->n; i++) {
        (void)hmaf_session_notify(x->s, x->tag, 1); /* the host goes */
    }
    return NULL;
}

/* The agent destroyed while its slow callback runs, entries waiting. */
static void destroy_while_delivering(struct target *t)
{
    hmaf_session_t *s = target_connect(t);
    pthread_t th[4];
    struct sender x[4];

    CHECK_EQ(target_command(t, 'w'), 1);
    for (int i = 0; i < 4; i++) {
        x[i] = (struct sender){s, (uint32_t)i, 50};
        CHECK(pthread_create(&th[i], NULL, notify_ignoring, &x[i]) == 0);
    }
    usleep(30000);
    CHECK_EQ(target_stop(t), 0); /* clean exit, leak checkers included */
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_ERR(hmaf_session_notify(s, 9, 9), HMAF_ECONNRESET);
    hmaf_session_destroy(s);
}

static void case_hostile(void)
{
    struct target t;

    start(&t, 1, 1);
    flood_from_threads(&t);
    echo_rings(&t);
    ring_churn(&t);
    destroy_while_delivering(&t);
}

static void case_malformed(void)
{
    struct target t;
    hmaf_session_t *s;
    struct raw raw;
    uint8_t ok[12] = {1, 0, 0, 0, 2};
    uint8_t junk[64] = {0};

    start(&t, 1, 1);
    s = target_connect(&t);
    raw_init(&raw, t.pid, s);
    CHECK_ERR(raw_call(&raw, HMAF_OP_NOTIFY, NULL, 0, 0, NULL, NULL),
              HMAF_EPROTO);
    CHECK_ERR(raw_call(&raw, HMAF_OP_NOTIFY, junk, 11, 11, NULL, NULL),
              HMAF_EPROTO);
    CHECK_ERR(raw_call(&raw, HMAF_OP_NOTIFY, junk, 13, 13, NULL, NULL),
              HMAF_EPROTO);
    CHECK_ERR(raw_call(&raw, HMAF_OP_NOTIFY, junk, 12, 60000, NULL, NULL),
              HMAF_EPROTO);
    CHECK_EQ(target_command(&t, 'b'), 4);
    CHECK_OK(raw_call(&raw, HMAF_OP_NOTIFY, ok, 12, 12, NULL, NULL));
    CHECK_OK(hmaf_session_notify(s, 3, 4));
    CHECK_OK(hmaf_session_ping(s));
    await_cb_count(2);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    if (strcmp(c, "callback") == 0) {
        case_callback(1);
    } else if (strcmp(c, "callback-poll") == 0) {
        case_callback(0);
    } else if (strcmp(c, "fd") == 0) {
        case_fd();
    } else if (strcmp(c, "ring") == 0) {
        case_ring();
    } else if (strcmp(c, "ring-race") == 0) {
        case_ring_race();
    } else if (strcmp(c, "flood") == 0) {
        case_flood();
    } else if (strcmp(c, "hostile") == 0) {
        case_hostile();
    } else if (strcmp(c, "malformed") == 0) {
        case_malformed();
    } else {
        fprintf(stderr, "usage: test_notify callback|callback-poll|fd|ring|"
                        "ring-race|flood|hostile|malformed\n");
        return 2;
    }
    return 0;
}
