/*
 * Connection floods against a listening agent while a real dpu side keeps
 * connecting (create, ping, destroy): every real attempt must succeed.
 *
 *   churn      two threads connect and close at once, flat out
 *   churn1k    the same at about 1,000 connections/s in all
 *   silent     900 connections held open, saying nothing
 *   slowloris  900 connections, each dribbling a HELLO a byte at a time
 *
 * Holders reconnect whatever the agent drops, as a real attacker would.
 * Each variant runs on a unix (abstract) and on a tcp listener, against a
 * fresh agent in this process (cma reads our own memory just as well).
 *
 * HMAF_STRESS_TRIALS: real attempts per variant (default 100), each
 * variant also ending after max(1 s, 10 ms per trial).
 * HMAF_STRESS_ONLY: run only the variants whose "transport/name" contains
 * this string. Prints one summary line; exit 1 on any failed attempt.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "proto/handshake.h"
#include "util/clock.h"

#define TOKEN          "churn-t0ken"
#define TRIALS_DEFAULT 100
#define TRIAL_CAP_NS   10000000ull   /* a variant's time: per trial */
#define VARIANT_MIN_NS 1000000000ull /* ... and at least this */
#define CHURN_THREADS  2
#define HOLD_CONNS     900
#define WARMUP_NS      100000000ull
#define CODES_MAX      8
#define SUMMARY_MAX    2048

struct attack {
    const char *name;
    unsigned rate;  /* churn: connections/s over both threads; 0: flat out */
    unsigned hold;  /* holders: connections kept open; 0: churn */
    int dribble_ms; /* holders: one more byte on each this often; 0: silent */
};

static const struct attack attacks[] = {
    {"churn", 0, 0, 0},
    {"churn1k", 1000, 0, 0},
    {"silent", 0, HOLD_CONNS, 0},
    {"slowloris", 0, HOLD_CONNS, 100},
};

struct flood {
    const struct attack *attack;
    struct sockaddr_storage sa;
    socklen_t salen;
    pthread_t threads[CHURN_THREADS];
    int nthreads;
    atomic_int stop;
    atomic_uint_fast64_t connects;
};

/* Real attempts of one variant, and how they failed. */
struct tally {
    unsigned attempts;
    unsigned failures;
    int codes[CODES_MAX];
    unsigned counts[CODES_MAX];
    uint64_t slowest_ns;
    uint64_t elapsed_ns;
};

static uint8_t memory[4096];
static uint8_t bad_hello[HMAF_MSG_MAX]; /* what slowloris dribbles */
static size_t bad_hello_len;

static void sockaddr_unix(const char *path, struct flood *fl)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&fl->sa;
    size_t n = strlen(path);

    CHECK(n < sizeof(un->sun_path));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') {
        un->sun_path[0] = '\0'; /* abstract: the length ends it */
    } else {
        n++;
    }
    fl->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

static void sockaddr_tcp(const char *host_port, struct flood *fl)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&fl->sa;
    const char *colon = strrchr(host_port, ':');
    char host[32];

    CHECK(colon != NULL && (size_t)(colon - host_port) < sizeof(host));
    memcpy(host, host_port, (size_t)(colon - host_port));
    host[colon - host_port] = '\0';
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)atoi(colon + 1));
    CHECK(inet_pton(AF_INET, host, &in->sin_addr) == 1);
    fl->salen = sizeof(*in);
}

/* The agent's address ("unix:@name", "unix:/path", "tcp:A.B.C.D:PORT")
 * for the attackers' raw sockets. */
static void sockaddr_of(const char *address, struct flood *fl)
{
    if (strncmp(address, "unix:", 5) == 0) {
        sockaddr_unix(address + 5, fl);
    } else {
        CHECK(strncmp(address, "tcp:", 4) == 0);
        sockaddr_tcp(address + 4, fl);
    }
}

/* One attacker connection, or -1. A connect blocked by a full backlog
 * gives up after 100 ms so that stop is seen. On tcp, close sends a reset:
 * no TIME_WAIT, so the flood cannot use up the local ports. */
static int attacker_connect(struct flood *fl)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int fd = socket(fl->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (fl->sa.ss_family == AF_INET) {
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    if (connect(fd, (struct sockaddr *)&fl->sa, fl->salen) != 0) {
        close(fd);
        return -1;
    }
    atomic_fetch_add(&fl->connects, 1);
    return fd;
}

static void sleep_until(uint64_t t_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000u),
                          .tv_nsec = (long)(t_ns % 1000000000u)};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
           EINTR) {
    }
}

static void *churn_main(void *arg)
{
    struct flood *fl = arg;
    uint64_t period = fl->attack->rate == 0
                          ? 0
                          : 1000000000ull * CHURN_THREADS / fl->attack->rate;
    uint64_t next = hmaf__now_ns();

    while (!atomic_load(&fl->stop)) {
        int fd = attacker_connect(fl);
        if (fd >= 0) {
            close(fd);
        }
        if (period != 0) {
            uint64_t now = hmaf__now_ns();
            next = next + period < now ? now : next + period; /* no bursts */
            sleep_until(next);
        }
    }
    return NULL;
}

/* Holders connect without blocking, all at once, as an attacker would: a
 * full backlog makes a unix connect fail (tried again on the next round)
 * and a tcp one wait for its SYN to be retried. */
enum slot_state { SLOT_CLOSED, SLOT_CONNECTING, SLOT_OPEN };

struct holder {
    struct pollfd *p;
    unsigned char *state;
    size_t *sent; /* bytes of bad_hello each has sent */
    unsigned n;
};

static void slot_open(struct flood *fl, struct holder *h, unsigned i)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int fd =
        socket(fl->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    h->p[i] = (struct pollfd){fd, POLLOUT, 0};
    h->state[i] = SLOT_CONNECTING;
    h->sent[i] = 0;
    if (fd < 0) {
        h->state[i] = SLOT_CLOSED;
        return;
    }
    if (fl->sa.ss_family == AF_INET) {
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    if (connect(fd, (struct sockaddr *)&fl->sa, fl->salen) == 0) {
        h->p[i].events = POLLIN;
        h->state[i] = SLOT_OPEN;
        atomic_fetch_add(&fl->connects, 1);
    } else if (errno != EINPROGRESS) {
        close(fd);
        h->p[i].fd = -1;
        h->state[i] = SLOT_CLOSED;
    }
}

static void slot_close(struct holder *h, unsigned i)
{
    if (h->p[i].fd >= 0) {
        close(h->p[i].fd);
    }
    h->p[i] = (struct pollfd){-1, 0, 0};
    h->state[i] = SLOT_CLOSED;
}

/* After a poll: finish connects, reopen whatever the agent dropped. */
static void holders_update(struct flood *fl, struct holder *h)
{
    for (unsigned i = 0; i < h->n; i++) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (h->state[i] != SLOT_CLOSED && h->p[i].revents == 0) {
            continue;
        }
        if (h->state[i] == SLOT_CONNECTING &&
            getsockopt(h->p[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
            err == 0) {
            h->p[i].events = POLLIN;
            h->state[i] = SLOT_OPEN;
            atomic_fetch_add(&fl->connects, 1);
            continue;
        }
        slot_close(h, i);
        slot_open(fl, h, i);
    }
}

/* One more byte on every open connection; a failed send drops it. */
static void holders_dribble(struct holder *h)
{
    for (unsigned i = 0; i < h->n; i++) {
        if (h->state[i] != SLOT_OPEN || h->sent[i] >= bad_hello_len) {
            continue;
        }
        if (send(h->p[i].fd, bad_hello + h->sent[i], 1,
                 MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
            h->sent[i]++;
        } else {
            h->p[i].revents = POLLERR;
        }
    }
}

static void *hold_main(void *arg)
{
    struct flood *fl = arg;
    struct holder h = {.n = fl->attack->hold};
    uint64_t dribble_ns = (uint64_t)fl->attack->dribble_ms * 1000000u;
    uint64_t next = hmaf__now_ns() + dribble_ns;

    h.p = calloc(h.n, sizeof(*h.p));
    h.state = calloc(h.n, sizeof(*h.state));
    h.sent = calloc(h.n, sizeof(*h.sent));
    CHECK(h.p != NULL && h.state != NULL && h.sent != NULL);
    for (unsigned i = 0; i < h.n; i++) {
        slot_open(fl, &h, i);
    }
    while (!atomic_load(&fl->stop)) {
        (void)poll(h.p, h.n, 10);
        if (dribble_ns != 0 && hmaf__now_ns() >= next) {
            holders_dribble(&h);
            next += dribble_ns;
        }
        holders_update(fl, &h);
    }
    for (unsigned i = 0; i < h.n; i++) {
        slot_close(&h, i);
    }
    free(h.p);
    free(h.state);
    free(h.sent);
    return NULL;
}

/* Start the attack and wait until it is in full swing. */
static void flood_start(struct flood *fl, const struct attack *at,
                        const char *address)
{
    uint64_t give_up = hmaf__now_ns() + 20000000000ull;

    memset(fl, 0, sizeof(*fl));
    fl->attack = at;
    sockaddr_of(address, fl);
    fl->nthreads = at->hold != 0 ? 1 : CHURN_THREADS;
    for (int i = 0; i < fl->nthreads; i++) {
        CHECK(pthread_create(&fl->threads[i], NULL,
                             at->hold != 0 ? hold_main : churn_main, fl) == 0);
    }
    while (atomic_load(&fl->connects) < at->hold) {
        CHECK(hmaf__now_ns() < give_up); /* holders: each connected once */
        poll(NULL, 0, 5);
    }
    sleep_until(hmaf__now_ns() + WARMUP_NS);
}

static void flood_stop(struct flood *fl)
{
    atomic_store(&fl->stop, 1);
    for (int i = 0; i < fl->nthreads; i++) {
        pthread_join(fl->threads[i], NULL);
    }
}

static hmaf_agent_t *start_agent(const char *address)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *agent;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    CHECK_OK(hmaf_agent_create(&p, &agent));
    CHECK_OK(hmaf_agent_expose(agent, memory, sizeof(memory),
                               HMAF_ACCESS_READ_WRITE));
    return agent;
}

/* One real dpu side: connect, one round trip, leave. */
static int legit_once(const char *address)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    int ret;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.connect_timeout_ms = 3000;
    p.rpc_timeout_ms = 3000;
    ret = hmaf_session_create(&p, &s);
    if (ret == 0) {
        ret = hmaf_session_ping(s);
        hmaf_session_destroy(s);
    }
    return ret;
}

static void tally_add(struct tally *t, int ret, uint64_t took_ns)
{
    int i = 0;

    t->attempts++;
    t->slowest_ns = took_ns > t->slowest_ns ? took_ns : t->slowest_ns;
    if (ret == 0) {
        return;
    }
    t->failures++;
    while (i < CODES_MAX - 1 && t->counts[i] != 0 && t->codes[i] != ret) {
        i++; /* the last slot takes whatever does not fit */
    }
    t->codes[i] = ret;
    t->counts[i]++;
}

static void legit_run(const char *address, unsigned trials, struct tally *t)
{
    uint64_t cap = (uint64_t)trials * TRIAL_CAP_NS;
    uint64_t begin = hmaf__now_ns();
    uint64_t end = begin + (cap > VARIANT_MIN_NS ? cap : VARIANT_MIN_NS);

    while (t->attempts < trials && hmaf__now_ns() < end) {
        uint64_t start = hmaf__now_ns();
        int ret = legit_once(address);
        tally_add(t, ret, hmaf__now_ns() - start);
    }
    t->elapsed_ns = hmaf__now_ns() - begin;
}

static void append(char *summary, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void append(char *summary, const char *fmt, ...)
{
    size_t n = strlen(summary);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(summary + n, SUMMARY_MAX - n, fmt, ap);
    va_end(ap);
}

/* "; unix/churn 3/100 failed (HMAF_EPROTO 2, HMAF_ECONNRESET 1) in ..." */
static void summary_add(char *summary, const char *variant,
                        const struct tally *t, uint64_t connects)
{
    append(summary, "; %s %u/%u failed", variant, t->failures, t->attempts);
    for (int i = 0; i < CODES_MAX && t->counts[i] != 0; i++) {
        append(summary, "%s%s %u", i == 0 ? " (" : ", ",
               hmaf_err_name(t->codes[i]), t->counts[i]);
    }
    append(summary, "%s in %llu ms, slowest %llu ms, %llu attacks",
           t->failures != 0 ? ")" : "",
           (unsigned long long)(t->elapsed_ns / 1000000u),
           (unsigned long long)(t->slowest_ns / 1000000u),
           (unsigned long long)connects);
}

/* One attack on one transport; the number of failed real attempts. */
static unsigned run_variant(const char *transport, const struct attack *at,
                            unsigned trials, char *summary)
{
    char listen_at[96], variant[64];
    struct tally t = {0};
    struct flood fl;
    hmaf_agent_t *agent;

    snprintf(variant, sizeof(variant), "%s/%s", transport, at->name);
    if (strcmp(transport, "unix") == 0) {
        snprintf(listen_at, sizeof(listen_at), "unix:@hmaf-churn-%d-%s",
                 (int)getpid(), at->name);
    } else {
        snprintf(listen_at, sizeof(listen_at), "tcp:127.0.0.1:0");
    }
    agent = start_agent(listen_at);
    flood_start(&fl, at, hmaf_agent_address(agent));
    legit_run(hmaf_agent_address(agent), trials, &t);
    flood_stop(&fl);
    hmaf_agent_destroy(agent);
    summary_add(summary, variant, &t, atomic_load(&fl.connects));
    return t.failures;
}

/* Holders need two fds per connection here (theirs and the agent's). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t want = 2 * HOLD_CONNS + 512;

    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < want && rl.rlim_max != rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    if (rl.rlim_cur < want) {
        SKIP("RLIMIT_NOFILE %llu (hard %llu): %llu fds needed",
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
             (unsigned long long)want);
    }
}

/* A well-formed HELLO with a wrong token: were one ever to finish, the
 * agent would refuse it rather than give it a session slot. */
static void make_bad_hello(void)
{
    struct hmaf_hello h = {0};

    CHECK_OK(hmaf__hello_set_token(&h, "not-the-token"));
    strcpy(h.engine, "cma");
    bad_hello_len = hmaf__hello_encode(&h, bad_hello, sizeof(bad_hello));
    CHECK(bad_hello_len > HMAF_HDR_SIZE);
}

static unsigned env_unsigned(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    long n = v != NULL ? strtol(v, NULL, 10) : 0;

    return n > 0 ? (unsigned)n : dflt;
}

int main(void)
{
    static const char *const transports[] = {"unix", "tcp"};
    static char summary[SUMMARY_MAX];
    unsigned trials = env_unsigned("HMAF_STRESS_TRIALS", TRIALS_DEFAULT);
    const char *only = getenv("HMAF_STRESS_ONLY");
    unsigned failures = 0;

    setenv("HMAF_LOG", "off", 0); /* thousands of refusals otherwise */
    raise_fd_limit();
    make_bad_hello();
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; k < sizeof(attacks) / sizeof(attacks[0]); k++) {
            char variant[64];
            snprintf(variant, sizeof(variant), "%s/%s", transports[i],
                     attacks[k].name);
            if (only == NULL || strstr(variant, only) != NULL) {
                failures +=
                    run_variant(transports[i], &attacks[k], trials, summary);
            }
        }
    }
    printf("test_churn: %u trials/variant%s: %s\n", trials, summary,
           failures == 0 ? "ok" : "FAIL");
    return failures == 0 ? 0 : 1;
}
