/*
 * A full listen backlog: a connect must wait for room until its timeout,
 * then fail with HMAF_ETIMEDOUT, never HMAF_ECONNRESET at once (a
 * non-blocking unix connect to a full backlog fails with EAGAIN, which is
 * no reason to give up).
 *
 * Channel level, on a listener of our own with a backlog of 1 that nobody
 * accepts from (unix and tcp): hmaf__channel_connect succeeds when
 * accepting starts 200 ms later; it and hmaf_session_create time out when
 * nobody ever accepts. End to end (unix): an agent driven by
 * hmaf_agent_poll and not polled while its backlog fills, then a session
 * that must time out, and one that must get in once the agent is polled.
 * The end-to-end part needs as many connections as the backlog holds
 * (SOMAXCONN, 4096 here); it is left out, and says so, when it cannot
 * fill it. Prints one summary line; exit 1 on any failed check.
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
#include <unistd.h>

#include "channel/channel.h"
#include "check.h"
#include "util/clock.h"

#define TOKEN              "backlog-t0ken"
#define STUFF_MAX          16    /* a backlog of 1 holds 2 */
#define E2E_STUFF_MAX      16384 /* the agent's backlog, at most */
#define FD_RESERVE         2048  /* the agent's own fds, and ours */
#define ACCEPT_DELAY_MS    200
#define CONNECT_TIMEOUT_MS 2000
#define E2E_TIMEOUT_MS     5000 /* the agent drains 4096 first */
#define GIVE_UP_MS         500  /* when nobody ever accepts */
#define EARLY_MS           50   /* a timeout may end this much early */
#define SLACK_MS           1000 /* late wake-ups on a busy machine */
#define SUMMARY_MAX        1024

/* A listener nobody accepts from, with its backlog full. */
struct stuffed {
    int lfd;
    struct sockaddr_storage sa;
    socklen_t salen;
    char address[96];
    int *fds;
    size_t nfds;
};

static uint8_t memory[4096];
static char summary[SUMMARY_MAX];
static int failed;

static void report(const char *what, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Append "; what: details" to the summary, and remember a failure. */
static void report(const char *what, int ok, const char *fmt, ...)
{
    size_t n = strlen(summary);
    va_list ap;

    n += (size_t)snprintf(summary + n, SUMMARY_MAX - n, "; %s %s (", what,
                          ok ? "ok" : "FAILED");
    va_start(ap, fmt);
    if (n < SUMMARY_MAX) {
        n += (size_t)vsnprintf(summary + n, SUMMARY_MAX - n, fmt, ap);
    }
    va_end(ap);
    if (n < SUMMARY_MAX) {
        snprintf(summary + n, SUMMARY_MAX - n, ")");
    }
    failed |= !ok;
}

static uint64_t ms_since(uint64_t start_ns)
{
    return (hmaf__now_ns() - start_ns) / 1000000u;
}

/* One more connection into the backlog: 1, or 0 when it is full. A tcp
 * SYN to a full backlog is dropped: its connect does not finish. */
static int stuff_one(struct stuffed *st)
{
    int fd =
        socket(st->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof(err);

    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&st->sa, st->salen) != 0) {
        err = errno;
        if (err == EINPROGRESS && poll(&p, 1, 200) == 1) {
            CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0);
        }
    }
    if (err != 0) {
        CHECK(err == EAGAIN || err == EINPROGRESS);
        close(fd);
        return 0;
    }
    st->fds[st->nfds++] = fd;
    return 1;
}

/* Fill the backlog of the listener at st->sa; 1 when it is full. */
static int stuff(struct stuffed *st, size_t cap)
{
    st->fds = calloc(cap, sizeof(*st->fds));
    CHECK(st->fds != NULL);
    while (st->nfds < cap) {
        if (!stuff_one(st)) {
            return 1;
        }
    }
    return 0;
}

static void unstuff(struct stuffed *st)
{
    for (size_t i = 0; i < st->nfds; i++) {
        close(st->fds[i]);
    }
    free(st->fds);
    st->fds = NULL;
    st->nfds = 0;
    if (st->lfd >= 0) {
        close(st->lfd);
    }
}

/* st->address and st->sa for the abstract unix name "hmaf-backlog-PID"
 * and then suffix. */
static void abstract_name(struct stuffed *st, const char *suffix)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&st->sa;
    int n = snprintf(un->sun_path + 1, sizeof(un->sun_path) - 1,
                     "hmaf-backlog-%d%s", (int)getpid(), suffix);

    un->sun_family = AF_UNIX; /* abstract: a leading NUL, no trailing one */
    st->salen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    snprintf(st->address, sizeof(st->address), "unix:@%s", un->sun_path + 1);
}

static void listen_unix(struct stuffed *st)
{
    abstract_name(st, "");
    st->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(st->lfd >= 0);
    CHECK(bind(st->lfd, (struct sockaddr *)&st->sa, st->salen) == 0);
}

static void listen_tcp(struct stuffed *st)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&st->sa;

    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    st->salen = sizeof(*in);
    st->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(st->lfd >= 0);
    CHECK(bind(st->lfd, (struct sockaddr *)&st->sa, st->salen) == 0);
    CHECK(getsockname(st->lfd, (struct sockaddr *)&st->sa, &st->salen) == 0);
    snprintf(st->address, sizeof(st->address), "tcp:127.0.0.1:%d",
             (int)ntohs(in->sin_port));
}

/* Our own listener with a backlog of 1, already full. */
static void stuffed_open(struct stuffed *st, const char *transport)
{
    memset(st, 0, sizeof(*st));
    if (strcmp(transport, "unix") == 0) {
        listen_unix(st);
    } else {
        listen_tcp(st);
    }
    CHECK(listen(st->lfd, 1) == 0);
    CHECK(stuff(st, STUFF_MAX) == 1);
}

struct acceptor {
    struct stuffed *st;
    atomic_int stop;
    int fds[64];
    size_t nfds;
};

/* Start accepting late, and keep what comes until told to stop. */
static void *acceptor_main(void *arg)
{
    struct acceptor *ac = arg;
    struct pollfd p = {.fd = ac->st->lfd, .events = POLLIN};
    int last = 0;

    poll(NULL, 0, ACCEPT_DELAY_MS);
    while (ac->nfds < 64) {
        if (poll(&p, 1, last ? 0 : 10) == 1) {
            int fd = accept4(ac->st->lfd, NULL, NULL, SOCK_CLOEXEC);
            CHECK(fd >= 0);
            ac->fds[ac->nfds++] = fd;
        } else if (last) {
            break;
        }
        last = last || atomic_load(&ac->stop); /* then take what is left */
    }
    return NULL;
}

/* Whether some accepted connection received "ping". */
static int acceptor_got_ping(struct acceptor *ac)
{
    int got = 0;

    for (size_t i = 0; i < ac->nfds; i++) {
        char buf[4];
        got |= recv(ac->fds[i], buf, sizeof(buf), MSG_DONTWAIT) == 4 &&
               memcmp(buf, "ping", 4) == 0;
        close(ac->fds[i]);
    }
    return got;
}

/* Accepting starts while the connect waits: it must get through. */
static void check_accept_later(const char *transport)
{
    struct stuffed st;
    struct acceptor ac = {.st = &st};
    struct hmaf_channel ch;
    pthread_t th;
    uint64_t start, took;
    char what[64];
    int ret, got = 0;

    stuffed_open(&st, transport);
    CHECK(pthread_create(&th, NULL, acceptor_main, &ac) == 0);
    start = hmaf__now_ns();
    ret = hmaf__channel_connect(st.address, CONNECT_TIMEOUT_MS, &ch);
    took = ms_since(start);
    if (ret == 0) {
        got = hmaf__channel_send(&ch, "ping", 4, hmaf__deadline_ns(1000)) == 0;
    }
    atomic_store(&ac.stop, 1);
    pthread_join(th, NULL);
    got &= acceptor_got_ping(&ac);
    snprintf(what, sizeof(what), "%s/accept-later", transport);
    report(what, ret == 0 && got, "%s after %llu ms%s", hmaf_err_name(ret),
           (unsigned long long)took, ret == 0 && !got ? ", not connected" : "");
    if (ret == 0) {
        hmaf__channel_close(&ch);
    }
    unstuff(&st);
}

/* A failure that must be HMAF_ETIMEDOUT, after about GIVE_UP_MS. */
static void report_timeout(const char *what, int ret, uint64_t start)
{
    uint64_t took = ms_since(start);

    report(what,
           ret == HMAF_ETIMEDOUT && took + EARLY_MS >= GIVE_UP_MS &&
               took <= GIVE_UP_MS + SLACK_MS,
           "%s after %llu ms", hmaf_err_name(ret), (unsigned long long)took);
}

static int session_try(const char *address, int timeout_ms)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    int ret;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.connect_timeout_ms = timeout_ms;
    ret = hmaf_session_create(&p, &s);
    if (ret == 0) {
        ret = hmaf_session_ping(s);
        hmaf_session_destroy(s);
    }
    return ret;
}

/* Nobody ever accepts: both layers time out, and only then. */
static void check_never_accepted(const char *transport)
{
    struct stuffed st;
    struct hmaf_channel ch;
    uint64_t start;
    char what[64];
    int ret;

    stuffed_open(&st, transport);
    start = hmaf__now_ns();
    ret = hmaf__channel_connect(st.address, GIVE_UP_MS, &ch);
    if (ret == 0) {
        hmaf__channel_close(&ch);
    }
    snprintf(what, sizeof(what), "%s/channel-timeout", transport);
    report_timeout(what, ret, start);
    start = hmaf__now_ns();
    ret = session_try(st.address, GIVE_UP_MS);
    snprintf(what, sizeof(what), "%s/session-timeout", transport);
    report_timeout(what, ret, start);
    unstuff(&st);
}

static hmaf_agent_t *start_polled_agent(const char *address)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *agent;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.threaded = 0;
    CHECK_OK(hmaf_agent_create(&p, &agent));
    CHECK_OK(hmaf_agent_expose(agent, memory, sizeof(memory),
                               HMAF_ACCESS_READ_WRITE));
    return agent;
}

struct dpu_try {
    const char *address;
    atomic_int done;
    int ret;
    uint64_t took_ms;
};

static void *dpu_main(void *arg)
{
    struct dpu_try *d = arg;
    uint64_t start = hmaf__now_ns();

    d->ret = session_try(d->address, E2E_TIMEOUT_MS);
    d->took_ms = ms_since(start);
    atomic_store(&d->done, 1);
    return NULL;
}

/* The agent is polled again while a session waits for room: it gets in. */
static void check_agent_resumes(hmaf_agent_t *agent, const char *address)
{
    struct dpu_try d = {.address = address};
    uint64_t start = hmaf__now_ns();
    pthread_t th;

    CHECK(pthread_create(&th, NULL, dpu_main, &d) == 0);
    poll(NULL, 0, ACCEPT_DELAY_MS);
    while (!atomic_load(&d.done) &&
           ms_since(start) < E2E_TIMEOUT_MS + SLACK_MS) {
        (void)hmaf_agent_poll(agent, 1);
    }
    pthread_join(th, NULL);
    report("unix/agent-resumes", d.ret == 0, "%s after %llu ms",
           hmaf_err_name(d.ret), (unsigned long long)d.took_ms);
}

/* Connections we can hold to fill the agent's backlog, leaving room for
 * its pending table and the session, all in this process. */
static size_t fd_budget(void)
{
    struct rlimit rl;

    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    if (rl.rlim_cur <= FD_RESERVE) {
        return 0;
    }
    return rl.rlim_cur - FD_RESERVE < E2E_STUFF_MAX
               ? (size_t)(rl.rlim_cur - FD_RESERVE)
               : E2E_STUFF_MAX;
}

static void check_agent_backlog(void)
{
    struct stuffed st = {.lfd = -1};
    hmaf_agent_t *agent;
    size_t cap = fd_budget();
    uint64_t start;

    abstract_name(&st, "-agent");
    agent = start_polled_agent(st.address);
    if (cap == 0 || !stuff(&st, cap)) {
        report("unix/agent", 1, "left out: not full at %zu", st.nfds);
        unstuff(&st);
        hmaf_agent_destroy(agent);
        return;
    }
    report("unix/agent-backlog", 1, "full at %zu connections", st.nfds);
    start = hmaf__now_ns();
    report_timeout("unix/agent-timeout", session_try(st.address, GIVE_UP_MS),
                   start);
    check_agent_resumes(agent, st.address);
    unstuff(&st);
    hmaf_agent_destroy(agent);
}

int main(void)
{
    static const char *const transports[] = {"unix", "tcp"};

    setenv("HMAF_LOG", "off", 0); /* refusals of the stuffing connections */
    for (size_t i = 0; i < 2; i++) {
        check_accept_later(transports[i]);
        check_never_accepted(transports[i]);
    }
    check_agent_backlog();
    printf("test_backlog%s: %s\n", summary, failed ? "FAIL" : "ok");
    return failed ? 1 : 0;
}
