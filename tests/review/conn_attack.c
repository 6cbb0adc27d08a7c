/*
 * Attacks on the agent's connection handling, each against a fresh host
 * process, while a real dpu side keeps one session pinging (the mailbox
 * latency of an existing session) and another keeps connecting (create,
 * ping, destroy: the success rate of legitimate sessions).
 *
 * For each attack one line: legitimate attempts that failed (and how),
 * the slowest one, ping latency p50/p99/max and failed pings, the host's
 * CPU while attacked and once the attack is over (a spin shows there), the
 * host's fds, memory mappings, address space and live sessions before and
 * after (a leak shows there), and whether the host still answers
 * (hmaf_agent_stats). During each attack, legitimate dpu sides whose HELLO
 * leaves 2, 20 or 200 ms after connect() returned (raw), and real
 * hmaf_session_create calls paused 5 or 50 ms before their HELLO (send()
 * is wrapped), show how much slack the agent's "first look" leaves.
 *
 *   HMAF_REVIEW_ONLY=name  run the attacks whose name contains this
 *   HMAF_REVIEW_SECS=n     seconds per attack (default 3)
 *   HMAF_REVIEW_HOST_WRAP  run the host under this command, e.g.
 *                          "valgrind --leak-check=full --log-file=/tmp/h.%p"
 *
 * Attacks (u = unix socket, t = tcp loopback):
 *   baseline            nothing
 *   churn               connect and close, two threads flat out (u, t)
 *   flood-tcp           3000 silent connections held over tcp + churn
 *   silent              900 silent connections held (u)
 *   slowloris           900 connections dribbling a HELLO byte by byte
 *   bad-sizes           HELLO headers whose body_len is wrong, flat out
 *   hello-close         a valid HELLO then close at once (right token)
 *   hello-close-bad     the same with a wrong token
 *   nofile64            the host at RLIMIT_NOFILE 64, 200 silent holders
 *   nofile64-churn      the host at RLIMIT_NOFILE 64, churn
 *   nofile64-tcp        the host at RLIMIT_NOFILE 64, 1000 tcp holders
 *   no-welcome          the right token, HELLO sent, WELCOME never read
 *                       (SO_RCVBUF tiny), 100 held (max_sessions 64)
 *   exhaust-sessions    the right token, sessions held until max_sessions
 *   graves              the right token, then a garbage byte after the
 *                       WELCOME, the connection kept: closed sessions
 *                       pile up as graves
 *   busy-mailbox        one session, 16 threads pinging flat out
 *   mailbox-flood(4)    one session writing a new request into every slot
 *                       over and over, without waiting (1 or 4 threads)
 *   log-volume          wrong-token HELLOs; the host's stderr is a file:
 *                       how much an unauthenticated peer makes it log
 *   log-stall           the host's stderr is a pipe nobody reads (as
 *                       under a stopped log collector); wrong-token HELLOs
 *
 * Exit 1 when any legitimate attempt failed where it should not, the
 * existing session lost a ping, the host spun or leaked, or stopped
 * answering.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sys/uio.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/handshake.h"
#include "proto/mailbox.h"
#include "review.h"
#include "util/clock.h"

#define TOKEN     "attack-t0ken"
#define PINGS_MAX 200000

/* ------------------------------------------------------------ the host */

struct host_cfg {
    int tcp;
    int nofile;       /* RLIMIT_NOFILE of the host, 0: as inherited */
    int stuck_stderr; /* stderr: 1 a pipe nobody reads, 2 a file, else
                         /dev/null */
    unsigned max_sessions;
};

struct host {
    pid_t pid;
    int cmd_fd, reply_fd;
    char address[128];
};

static uint8_t host_memory[65536];

static void host_main(const struct host_cfg *cfg, int cmd_fd, int reply_fd)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *agent;
    char address[128] = "", cmd;
    int stuck[2];

    unsetenv("HMAF_LOG"); /* the default a deployment runs with: warn */
    if (cfg->stuck_stderr == 1) {
        CHECK(pipe(stuck) == 0);
        dup2(stuck[1], 2);               /* stuck[0] stays open, never read */
    } else if (cfg->stuck_stderr == 2) { /* a log file, to measure it */
        char path[64];
        int fd;
        snprintf(path, sizeof(path), "/tmp/hmaf-attack-log-%d", (int)getpid());
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CHECK(fd >= 0);
        dup2(fd, 2);
        close(fd);
    } else {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        close(null);
    }
    if (cfg->nofile > 0) {
        struct rlimit rl = {(rlim_t)cfg->nofile, (rlim_t)cfg->nofile};
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    hmaf_agent_params_init(&p);
    if (cfg->tcp) {
        p.address = "tcp:127.0.0.1:0";
    } else {
        snprintf(address, sizeof(address), "unix:@hmaf-attack-%d",
                 (int)getpid());
        p.address = address;
    }
    p.token = TOKEN;
    if (cfg->max_sessions != 0) {
        p.max_sessions = cfg->max_sessions;
    }
    CHECK_OK(hmaf_agent_create(&p, &agent));
    CHECK_OK(hmaf_agent_expose(agent, host_memory, sizeof(host_memory),
                               HMAF_ACCESS_READ_WRITE));
    CHECK_OK(
        hmaf_agent_publish(agent, "mem", host_memory, sizeof(host_memory)));
    snprintf(address, sizeof(address), "%s", hmaf_agent_address(agent));
    CHECK(write(reply_fd, address, sizeof(address)) == sizeof(address));
    while (read(cmd_fd, &cmd, 1) == 1 && cmd == 's') {
        hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
        hmaf_agent_stats(agent, &st);
        if (write(reply_fd, &st, sizeof(st)) != sizeof(st)) {
            break;
        }
    }
    hmaf_agent_destroy(agent);
    exit(0); /* not _exit: let the leak checkers look */
}

/* The host runs a fresh image of this program (argv: --host tcp nofile
 * stuck max_sessions; commands on fd 3, replies on fd 4), so nothing of
 * this process's library state (its log level) carries over. */
static void host_start(struct host *h, const struct host_cfg *cfg)
{
    int to[2], from[2];
    char a[4][16];

    CHECK(pipe(to) == 0 && pipe(from) == 0);
    snprintf(a[0], sizeof(a[0]), "%d", cfg->tcp);
    snprintf(a[1], sizeof(a[1]), "%d", cfg->nofile);
    snprintf(a[2], sizeof(a[2]), "%d", cfg->stuck_stderr);
    snprintf(a[3], sizeof(a[3]), "%u", cfg->max_sessions);
    fflush(NULL);
    h->pid = fork();
    CHECK(h->pid >= 0);
    if (h->pid == 0) {
        char *argv[] = {"conn_attack", "--host", a[0], a[1], a[2], a[3], NULL};
        const char *wrap = getenv("HMAF_REVIEW_HOST_WRAP");
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(to[0], 3);
        dup2(from[1], 4);
        for (int fd = 5; fd < 64; fd++) {
            close(fd);
        }
        if (wrap != NULL) {
            /* e.g. "valgrind --leak-check=full --log-file=/tmp/h.%p" */
            char exe[512], cmd[2048];
            ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
            CHECK(n > 0);
            exe[n] = '\0';
            snprintf(cmd, sizeof(cmd), "exec %s %s --host %s %s %s %s", wrap,
                     exe, a[0], a[1], a[2], a[3]);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    h->cmd_fd = to[1];
    h->reply_fd = from[0];
    CHECK(read(h->reply_fd, h->address, sizeof(h->address)) ==
          sizeof(h->address));
}

/* The agent's counters, or -1 when the host does not answer in time. */
static int host_stats(struct host *h, hmaf_agent_stats_t *st, int timeout_ms)
{
    struct pollfd p = {.fd = h->reply_fd, .events = POLLIN};
    static int wedged;

    if (wedged == h->pid) {
        return -1; /* still stuck in the previous one */
    }
    if (write(h->cmd_fd, "s", 1) != 1 || poll(&p, 1, timeout_ms) != 1 ||
        read(h->reply_fd, st, sizeof(*st)) != sizeof(*st)) {
        wedged = h->pid;
        return -1;
    }
    return 0;
}

static void host_stop(struct host *h)
{
    struct pollfd p = {.fd = h->reply_fd, .events = POLLIN};
    int status;

    (void)!write(h->cmd_fd, "q", 1);
    for (int i = 0; i < 300; i++) {
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            goto done;
        }
        poll(&p, 0, 10);
    }
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &status, 0);
done:
    close(h->cmd_fd);
    close(h->reply_fd);
}

/* CPU time of the whole host process, ms (utime + stime). */
static uint64_t host_cpu_ms(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
        if (f != NULL) {
            fclose(f);
        }
        return 0;
    }
    fclose(f);
    p = strrchr(buf, ')');
    /* fields after the name: state(3) ... utime(14) stime(15) */
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                            "%*u %lu %lu",
                            &ut, &st) != 2) {
        return 0;
    }
    return (uint64_t)(ut + st) * 1000u / (uint64_t)sysconf(_SC_CLK_TCK);
}

static int host_vmas(pid_t pid)
{
    char path[64], line[512];
    FILE *f;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        n++;
    }
    fclose(f);
    return n;
}

static long host_vsz_kb(pid_t pid)
{
    char path[64], line[256];
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmSize: %ld", &v) == 1) {
            break;
        }
    }
    fclose(f);
    return v;
}

/* ------------------------------------------------------------ attackers */

struct attack;

struct flood {
    const struct attack *at;
    struct sockaddr_storage sa;
    socklen_t salen;
    pthread_t threads[16];
    int nthreads;
    atomic_int stop;
    atomic_uint_fast64_t connects;
    atomic_uint_fast64_t events; /* attack-specific count */
    const char *address;
};

typedef void *(*attack_fn)(void *);

struct attack {
    const char *name;
    int tcp;
    int nofile;
    int stuck_stderr;
    unsigned max_sessions;
    attack_fn fn;
    int threads;
    unsigned hold;      /* holders: connections kept */
    int dribble_ms;     /* slowloris */
    int legit_may_fail; /* documented limit reached (HMAF_ENOSPC ...) */
};

static uint8_t good_hello[HMAF_MSG_MAX], bad_hello[HMAF_MSG_MAX];
static size_t hello_len;

static void make_hellos(void)
{
    struct hmaf_hello h = {0};
    uint32_t pid = (uint32_t)getpid();

    CHECK_OK(hmaf__hello_set_token(&h, TOKEN));
    strcpy(h.engine, "cma");
    h.engine_blob.len = 4;
    memcpy(h.engine_blob.data, &pid, 4);
    hello_len = hmaf__hello_encode(&h, good_hello, sizeof(good_hello));
    CHECK_OK(hmaf__hello_set_token(&h, "not-the-token"));
    CHECK(hmaf__hello_encode(&h, bad_hello, sizeof(bad_hello)) == hello_len);
}

static void sockaddr_of(const char *address, struct flood *fl)
{
    memset(&fl->sa, 0, sizeof(fl->sa));
    if (strncmp(address, "unix:@", 6) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&fl->sa;
        size_t n = strlen(address + 6);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path + 1, address + 6, n);
        fl->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&fl->sa;
        const char *colon = strrchr(address, ':');
        CHECK(strncmp(address, "tcp:127.0.0.1:", 14) == 0 && colon != NULL);
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)atoi(colon + 1));
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fl->salen = sizeof(*in);
    }
}

/* A blocking connect that gives up after 100 ms; tcp closes with a reset
 * (no TIME_WAIT, so ports last). rcvbuf > 0: SO_RCVBUF before connect. */
static int attacker_connect(struct flood *fl, int rcvbuf)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int fd = socket(fl->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
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

static void *churn_main(void *arg)
{
    struct flood *fl = arg;

    while (!atomic_load(&fl->stop)) {
        int fd = attacker_connect(fl, 0);
        if (fd >= 0) {
            close(fd);
        } else {
            poll(NULL, 0, 1);
        }
    }
    return NULL;
}

#define CMA_WELCOME_SIZE (HMAF_HDR_SIZE + HMAF_WELCOME_BODY_MIN + 4)

/* Valid headers announcing bodies of the wrong size, then close. */
static void *bad_sizes_main(void *arg)
{
    static const uint32_t sizes[] = {0,
                                     1,
                                     HMAF_HELLO_BODY_MIN - 1,
                                     HMAF_HELLO_BODY_MAX + 1,
                                     0xFFFFFFFFu,
                                     HMAF_MSG_MAX};
    struct flood *fl = arg;
    uint8_t msg[HMAF_MSG_MAX];
    unsigned i = 0;

    while (!atomic_load(&fl->stop)) {
        struct hmaf_msg_hdr hdr;
        int fd = attacker_connect(fl, 0);
        if (fd < 0) {
            poll(NULL, 0, 1);
            continue;
        }
        memcpy(msg, good_hello, hello_len);
        hmaf__hdr_decode(msg, &hdr);
        hdr.body_len = sizes[i++ % (sizeof(sizes) / sizeof(sizes[0]))];
        hmaf__hdr_encode(&hdr, msg);
        (void)!send(fd, msg, i % 2 ? HMAF_HDR_SIZE : hello_len, MSG_NOSIGNAL);
        close(fd);
    }
    return NULL;
}

static void *hello_close_main(void *arg, const uint8_t *hello)
{
    struct flood *fl = arg;

    while (!atomic_load(&fl->stop)) {
        int fd = attacker_connect(fl, 0);
        if (fd < 0) {
            poll(NULL, 0, 1);
            continue;
        }
        (void)!send(fd, hello, hello_len, MSG_NOSIGNAL);
        close(fd);
    }
    return NULL;
}

static void *hello_close_good(void *arg)
{
    return hello_close_main(arg, good_hello);
}

static void *hello_close_bad(void *arg)
{
    return hello_close_main(arg, bad_hello);
}

/* Holders: n connections kept open, reopened when the agent drops them;
 * slowloris ones dribble a wrong-token HELLO one byte each dribble_ms. */
static void *hold_main(void *arg)
{
    struct flood *fl = arg;
    unsigned n = fl->at->hold;
    int *fd = calloc(n, sizeof(int));
    size_t *sent = calloc(n, sizeof(size_t));
    struct pollfd *p = calloc(n, sizeof(*p));
    uint64_t next = hmaf__now_ns();

    CHECK(fd != NULL && sent != NULL && p != NULL);
    for (unsigned i = 0; i < n; i++) {
        fd[i] = -1;
    }
    while (!atomic_load(&fl->stop)) {
        for (unsigned i = 0; i < n && !atomic_load(&fl->stop); i++) {
            if (fd[i] < 0) {
                fd[i] = attacker_connect(fl, 0);
                sent[i] = 0;
            }
            p[i] = (struct pollfd){fd[i], POLLIN, 0};
        }
        (void)poll(p, n, 10);
        for (unsigned i = 0; i < n; i++) {
            if (fd[i] >= 0 && p[i].revents != 0) { /* refused or dropped */
                close(fd[i]);
                fd[i] = -1;
                atomic_fetch_add(&fl->events, 1);
            }
        }
        if (fl->at->dribble_ms > 0 && hmaf__now_ns() >= next) {
            next += (uint64_t)fl->at->dribble_ms * 1000000u;
            for (unsigned i = 0; i < n; i++) {
                if (fd[i] >= 0 && sent[i] < hello_len &&
                    send(fd[i], bad_hello + sent[i], 1,
                         MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
                    sent[i]++;
                }
            }
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (fd[i] >= 0) {
            close(fd[i]);
        }
    }
    free(fd);
    free(sent);
    free(p);
    return NULL;
}

/* The right token, HELLO sent at once, then nothing is ever read: the
 * WELCOME (or refusal) stays in our tiny receive buffer. A refused one
 * (peeked) is dropped and tried again. */
static void *no_welcome_main(void *arg)
{
    struct flood *fl = arg;
    unsigned n = fl->at->hold;
    int *fd = calloc(n, sizeof(int));

    CHECK(fd != NULL);
    for (unsigned i = 0; i < n; i++) {
        fd[i] = -1;
    }
    while (!atomic_load(&fl->stop)) {
        for (unsigned i = 0; i < n && !atomic_load(&fl->stop); i++) {
            uint8_t hdr[HMAF_HDR_SIZE];
            struct hmaf_msg_hdr h;
            if (fd[i] < 0) {
                fd[i] = attacker_connect(fl, 1);
                if (fd[i] >= 0) {
                    (void)!send(fd[i], good_hello, hello_len, MSG_NOSIGNAL);
                }
                continue;
            }
            ssize_t got =
                recv(fd[i], hdr, sizeof(hdr), MSG_PEEK | MSG_DONTWAIT);
            if (got == 0 || (got == (ssize_t)sizeof(hdr) &&
                             hmaf__hdr_decode(hdr, &h) == 0 && h.status != 0)) {
                close(fd[i]); /* refused: try again later */
                fd[i] = -1;
                atomic_fetch_add(&fl->events, 1);
            }
        }
        poll(NULL, 0, 20);
    }
    for (unsigned i = 0; i < n; i++) {
        if (fd[i] >= 0) {
            close(fd[i]);
        }
    }
    free(fd);
    return NULL;
}

/* The right token; after the WELCOME one byte that is not a nudge, the
 * connection kept open (the agent's shutdown is ignored): the agent closes
 * the session without the dpu side's word, its mailbox becomes a grave.
 * The last KEEP connections stay open, more than the agent keeps graves. */
static void *graves_main(void *arg)
{
    struct flood *fl = arg;
    enum { KEEP = 600 };
    int fd[KEEP];
    unsigned next = 0;

    for (int i = 0; i < KEEP; i++) {
        fd[i] = -1;
    }
    while (!atomic_load(&fl->stop)) {
        uint8_t welcome[HMAF_MSG_MAX];
        int c = attacker_connect(fl, 0);
        if (c < 0) {
            poll(NULL, 0, 1);
            continue;
        }
        if (send(c, good_hello, hello_len, MSG_NOSIGNAL) !=
                (ssize_t)hello_len ||
            /* cma's WELCOME: a 4-byte engine blob, an empty export */
            recv(c, welcome, CMA_WELCOME_SIZE, MSG_WAITALL) !=
                CMA_WELCOME_SIZE ||
            send(c, "X", 1, MSG_NOSIGNAL) != 1) {
            close(c);
            continue;
        }
        atomic_fetch_add(&fl->events, 1);
        if (fd[next] >= 0) {
            close(fd[next]);
        }
        fd[next] = c;
        next = (next + 1) % KEEP;
    }
    for (int i = 0; i < KEEP; i++) {
        if (fd[i] >= 0) {
            close(fd[i]);
        }
    }
    return NULL;
}

/* A real session with 16 threads pinging flat out. */
struct busy_ctx {
    struct flood *fl;
    hmaf_session_t *s;
};

static struct busy_ctx busy;

static void *busy_pinger(void *arg)
{
    struct flood *fl = arg;

    while (!atomic_load(&fl->stop)) {
        if (hmaf_session_ping(busy.s) == 0) {
            atomic_fetch_add(&fl->events, 1);
        }
    }
    return NULL;
}

static void *busy_main(void *arg)
{
    struct flood *fl = arg;
    hmaf_session_params_t p;
    pthread_t th[16];

    hmaf_session_params_init(&p);
    p.address = fl->address;
    p.token = TOKEN;
    CHECK_OK(hmaf_session_create(&p, &busy.s));
    for (int i = 0; i < 16; i++) {
        CHECK(pthread_create(&th[i], NULL, busy_pinger, fl) == 0);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
    }
    hmaf_session_destroy(busy.s);
    return NULL;
}

/* A session with the right token that writes a new request into every
 * slot of its mailbox over and over, without waiting for answers: every
 * turn of the agent's loop finds work. (What a dpu side may do with its
 * own mailbox; it needs no more than the engine's writes.) */
static void *mailbox_flood_main(void *arg)
{
    struct flood *fl = arg;
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint64_t words[HMAF_MBOX_MAX_SLOTS];
    struct iovec local[HMAF_MBOX_MAX_SLOTS], remote[HMAF_MBOX_MAX_SLOTS];
    uint32_t seq = 1000;
    pid_t host;

    hmaf_session_params_init(&p);
    p.address = fl->address;
    p.token = TOKEN;
    CHECK_OK(hmaf_session_create(&p, &s));
    CHECK_OK(hmaf_session_ping(s));
    host = (pid_t)atoi(getenv("HMAF_REVIEW_HOST_PID"));
    while (!atomic_load(&fl->stop)) {
        for (uint32_t i = 0; i < s->mbox.nslots; i++) {
            words[i] = hmaf__mbox_req_word(seq, HMAF_OP_PING, 0);
            local[i] = (struct iovec){&words[i], 8};
            remote[i] = (struct iovec){
                (void *)(uintptr_t)(s->mbox.base + hmaf__mbox_slot_offset(i) +
                                    HMAF_MBOX_REQ_WORD),
                8};
        }
        seq = seq + 1 == 0 ? 1 : seq + 1;
        if (process_vm_writev(host, local, s->mbox.nslots, remote,
                              s->mbox.nslots, 0) < 0) {
            break;
        }
        atomic_fetch_add(&fl->events, 1);
    }
    hmaf_session_destroy(s);
    return NULL;
}

static const struct attack attacks[] = {
    {"baseline", 0, 0, 0, 0, NULL, 0, 0, 0, 0},
    {"churn-unix", 0, 0, 0, 0, churn_main, 2, 0, 0, 0},
    {"churn-tcp", 1, 0, 0, 0, churn_main, 2, 0, 0, 0},
    {"flood-tcp", 1, 0, 0, 0, hold_main, 1, 3000, 0, 0},
    {"silent", 0, 0, 0, 0, hold_main, 1, 900, 0, 0},
    {"slowloris", 0, 0, 0, 0, hold_main, 1, 900, 100, 0},
    {"bad-sizes", 0, 0, 0, 0, bad_sizes_main, 2, 0, 0, 0},
    {"hello-close", 0, 0, 0, 0, hello_close_good, 2, 0, 0, 0},
    {"hello-close-bad", 0, 0, 0, 0, hello_close_bad, 2, 0, 0, 0},
    {"nofile64", 0, 64, 0, 0, hold_main, 1, 200, 0, 0},
    {"nofile64-churn", 0, 64, 0, 0, churn_main, 2, 0, 0, 0},
    {"no-welcome", 0, 0, 0, 64, no_welcome_main, 1, 100, 0, 1},
    {"no-welcome-tcp", 1, 0, 0, 64, no_welcome_main, 1, 100, 0, 1},
    /* A token holder's graves hold session places, as its sessions do
     * (host.h, max_sessions): legitimate sessions may be refused, with
     * HMAF_ENOSPC, while no reservation is ever abandoned. */
    {"graves", 0, 0, 0, 0, graves_main, 1, 0, 0, 1},
    /* Below the fds host.h asks for, held tcp connections can keep a
     * newcomer in the backlog until its connect timeout. */
    {"nofile64-tcp", 1, 64, 0, 0, hold_main, 1, 1000, 0, 1},
    {"busy-mailbox", 0, 0, 0, 0, busy_main, 1, 0, 0, 0},
    {"mailbox-flood", 0, 0, 0, 0, mailbox_flood_main, 1, 0, 0, 0},
    {"mailbox-flood4", 0, 0, 0, 0, mailbox_flood_main, 4, 0, 0, 0},
    {"log-volume", 0, 0, 2, 0, hello_close_bad, 2, 0, 0, 0},
    {"log-stall", 0, 0, 1, 0, hello_close_bad, 2, 0, 0, 0},
};

/* ------------------------------------------------------ the real dpu side */

struct prober {
    hmaf_session_t *s;
    pthread_t thread;
    atomic_int stop;
    uint64_t *lat_ns;
    unsigned n, failed;
    int first_error;
};

static void *prober_main(void *arg)
{
    struct prober *pr = arg;

    while (!atomic_load(&pr->stop) && pr->n < PINGS_MAX) {
        uint64_t t0 = hmaf__now_ns();
        int ret = hmaf_session_ping(pr->s);
        pr->lat_ns[pr->n++] = hmaf__now_ns() - t0;
        if (ret != 0) {
            pr->failed++;
            if (pr->first_error == 0) {
                pr->first_error = ret;
            }
        }
        poll(NULL, 0, 1);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

struct legit {
    unsigned attempts, failures;
    int codes[4];
    unsigned counts[4];
    uint64_t slowest_ns;
};

static int legit_once(const char *address)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint64_t addr;
    int ret;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.connect_timeout_ms = 3000;
    p.rpc_timeout_ms = 3000;
    ret = hmaf_session_create(&p, &s);
    if (ret == 0) {
        ret = hmaf_session_lookup(s, "mem", &addr, NULL);
        hmaf_session_destroy(s);
    }
    return ret;
}

static void legit_add(struct legit *l, int ret, uint64_t ns)
{
    int i = 0;

    l->attempts++;
    l->slowest_ns = ns > l->slowest_ns ? ns : l->slowest_ns;
    if (ret == 0) {
        return;
    }
    l->failures++;
    while (i < 3 && l->counts[i] != 0 && l->codes[i] != ret) {
        i++;
    }
    l->codes[i] = ret;
    l->counts[i]++;
}

/* Linked with --wrap=send: a thread that sets pause_before_send_ms has its
 * next send() delayed that long, as if the scheduler took the CPU right
 * after connect() returned. With it, hmaf_session_create itself shows
 * what a late HELLO costs. */
ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
static _Thread_local int pause_before_send_ms;

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    if (pause_before_send_ms > 0) {
        poll(NULL, 0, pause_before_send_ms);
        pause_before_send_ms = 0;
    }
    return __real_send(fd, buf, len, flags);
}

static int legit_once(const char *address);

/* n real hmaf_session_create calls, each pausing before its HELLO. */
static int legit_paused(const char *address, int pause_ms, int n, int *last)
{
    int okc = 0;

    for (int i = 0; i < n; i++) {
        int r;
        pause_before_send_ms = pause_ms;
        r = legit_once(address);
        pause_before_send_ms = 0;
        okc += r == 0;
        *last = r != 0 ? r : *last;
    }
    return okc;
}

/* A legitimate dpu side whose HELLO leaves delay_ms after its connect
 * returned (a descheduled process, a lost segment): WELCOME (0), the
 * refusal's code, or HMAF_ECONNRESET when the agent just closed. */
static int delayed_hello(struct flood *fl, int delay_ms)
{
    uint8_t hdr_buf[HMAF_HDR_SIZE];
    struct hmaf_msg_hdr hdr;
    struct timeval tv = {.tv_sec = 3, .tv_usec = 0};
    int fd = socket(fl->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

    CHECK(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&fl->sa, fl->salen) != 0) {
        close(fd);
        return HMAF_ETIMEDOUT;
    }
    poll(NULL, 0, delay_ms);
    if (send(fd, good_hello, hello_len, MSG_NOSIGNAL) != (ssize_t)hello_len ||
        recv(fd, hdr_buf, sizeof(hdr_buf), MSG_WAITALL) != sizeof(hdr_buf) ||
        hmaf__hdr_decode(hdr_buf, &hdr) != 0) {
        ret = HMAF_ECONNRESET;
    } else {
        ret = hdr.status;
    }
    close(fd);
    return ret;
}

/* ------------------------------------------------------------- one run */

static unsigned secs(void)
{
    const char *v = getenv("HMAF_REVIEW_SECS");
    long n = v != NULL ? strtol(v, NULL, 10) : 3;

    return n > 0 ? (unsigned)n : 3;
}

static int run_attack(const struct attack *at)
{
    struct host_cfg cfg = {at->tcp, at->nofile, at->stuck_stderr,
                           at->max_sessions};
    struct host h;
    struct flood fl;
    struct prober pr = {0};
    struct legit lg = {0};
    hmaf_session_params_t sp;
    hmaf_agent_stats_t st0 = {0}, st1 = {0};
    uint64_t t0, t1, cpu0, cpu1, cpu2, end, p50 = 0, p99 = 0, pmax = 0;
    int fds0, fds1, vmas0, vmas1, answered, bad = 0;
    long vsz0, vsz1;
    char codes[160] = "", delayed[512] = "";
    int late_failed = 0;

    host_start(&h, &cfg);
    {
        char pid[16];
        snprintf(pid, sizeof(pid), "%d", (int)h.pid);
        setenv("HMAF_REVIEW_HOST_PID", pid, 1);
    }
    hmaf_session_params_init(&sp);
    sp.address = h.address;
    sp.token = TOKEN;
    sp.rpc_timeout_ms = 2000;
    CHECK_OK(hmaf_session_create(&sp, &pr.s));
    for (int i = 0; i < 100; i++) {
        CHECK_OK(hmaf_session_ping(pr.s));
    }
    poll(NULL, 0, 200);
    fds0 = review_count_fds(h.pid);
    vmas0 = host_vmas(h.pid);
    vsz0 = host_vsz_kb(h.pid);
    (void)host_stats(&h, &st0, 2000);
    pr.lat_ns = calloc(PINGS_MAX, sizeof(uint64_t));
    CHECK(pr.lat_ns != NULL);

    memset(&fl, 0, sizeof(fl));
    fl.at = at;
    fl.address = h.address;
    sockaddr_of(h.address, &fl);
    t0 = hmaf__now_ns();
    cpu0 = host_cpu_ms(h.pid);
    CHECK(pthread_create(&pr.thread, NULL, prober_main, &pr) == 0);
    fl.nthreads = at->fn == NULL ? 0 : at->threads;
    for (int i = 0; i < fl.nthreads; i++) {
        CHECK(pthread_create(&fl.threads[i], NULL, at->fn, &fl) == 0);
    }
    poll(NULL, 0, 300); /* in full swing */
    end = hmaf__now_ns() + (uint64_t)secs() * 1000000000u;
    while (hmaf__now_ns() < end) {
        uint64_t a = hmaf__now_ns();
        int ret = legit_once(h.address);
        legit_add(&lg, ret, hmaf__now_ns() - a);
        poll(NULL, 0, 5);
    }
    {
        static const int delays[] = {2, 20, 200};
        char line[512] = "";
        for (int d = 0; d < 3; d++) {
            int okc = 0, last = 0;
            for (int k = 0; k < 5; k++) {
                int r = delayed_hello(&fl, delays[d]);
                okc += r == 0;
                last = r != 0 ? r : last;
            }
            snprintf(line + strlen(line), sizeof(line) - strlen(line),
                     "%s%d ms: %d/5%s%s", d ? ", " : "", delays[d], okc,
                     last ? " " : "", last ? hmaf_err_name(last) : "");
        }
        for (int d = 0; d < 2; d++) {
            int last = 0, okc = legit_paused(h.address, d ? 50 : 5, 5, &last);
            if (d == 0) {
                late_failed = okc < 5;
            }
            snprintf(line + strlen(line), sizeof(line) - strlen(line),
                     "; hmaf_session_create pausing %d ms: %d/5%s%s",
                     d ? 50 : 5, okc, last ? " " : "",
                     last ? hmaf_err_name(last) : "");
        }
        snprintf(delayed, sizeof(delayed), "%s", line);
    }
    atomic_store(&fl.stop, 1);
    for (int i = 0; i < fl.nthreads; i++) {
        pthread_join(fl.threads[i], NULL);
    }
    atomic_store(&pr.stop, 1);
    pthread_join(pr.thread, NULL);
    t1 = hmaf__now_ns();
    cpu1 = host_cpu_ms(h.pid);

    /* settle, then the idle host: a spin shows as CPU here */
    poll(NULL, 0, 1500);
    cpu2 = host_cpu_ms(h.pid);
    poll(NULL, 0, 1000);
    cpu2 = host_cpu_ms(h.pid) - cpu2;
    fds1 = review_count_fds(h.pid);
    vmas1 = host_vmas(h.pid);
    vsz1 = host_vsz_kb(h.pid);
    answered = host_stats(&h, &st1, 2000) == 0;

    if (pr.n > 0) {
        qsort(pr.lat_ns, pr.n, sizeof(uint64_t), cmp_u64);
        p50 = pr.lat_ns[pr.n / 2];
        p99 = pr.lat_ns[pr.n * 99 / 100];
        pmax = pr.lat_ns[pr.n - 1];
    }
    for (int i = 0; i < 4 && lg.counts[i] != 0; i++) {
        size_t n = strlen(codes);
        snprintf(codes + n, sizeof(codes) - n, "%s%s %u", i ? ", " : " (",
                 hmaf_err_name(lg.codes[i]), lg.counts[i]);
    }
    if (codes[0] != '\0') {
        strcat(codes, ")");
    }
    printf("%-16s legit %u/%u failed%s, slowest %llu ms | ping n=%u "
           "p50 %.0f us p99 %.0f us max %.1f ms, %u failed%s%s | host cpu "
           "%.0f%% attacked, %.1f%% idle after | fds %d->%d, maps %d->%d, "
           "VmSize %ld->%ld MiB%s | "
           "attack: %llu connects, %llu events\n",
           at->name, lg.failures, lg.attempts, codes,
           (unsigned long long)(lg.slowest_ns / 1000000u), pr.n, p50 / 1e3,
           p99 / 1e3, pmax / 1e6, pr.failed, pr.first_error ? " first " : "",
           pr.first_error ? hmaf_err_name(pr.first_error) : "",
           100.0 * (double)(cpu1 - cpu0) / ((double)(t1 - t0) / 1e6),
           100.0 * (double)cpu2 / 1000.0, fds0, fds1, vmas0, vmas1, vsz0 / 1024,
           vsz1 / 1024,
           answered ? "" : " | HOST DOES NOT ANSWER hmaf_agent_stats",
           (unsigned long long)atomic_load(&fl.connects),
           (unsigned long long)atomic_load(&fl.events));
    printf("%-16s   HELLO sent late after connect, WELCOMEd: %s\n", "",
           delayed);
    if (answered) {
        printf("%-16s   (sessions live %llu before, after: live %llu, total "
               "%llu, refused %llu, last refusal %s)\n",
               "", (unsigned long long)st0.sessions_live,
               (unsigned long long)st1.sessions_live,
               (unsigned long long)st1.sessions_total,
               (unsigned long long)st1.refused,
               hmaf_err_name(st1.last_refusal));
    }
    fflush(stdout);
    bad |= lg.failures > 0 && !at->legit_may_fail;
    bad |= pr.failed > 0;
    bad |= cpu2 > 100; /* more than 10% of a CPU while nobody is there */
    bad |= fds1 > fds0 + 2 || vmas1 > vmas0 + 16 || vsz1 > vsz0 + 16384;
    bad |= !answered;
    bad |= late_failed && !at->legit_may_fail; /* a 5 ms pause before HELLO */
    if (bad) {
        printf("%-16s   FINDING\n", "");
    }
    if (at->stuck_stderr == 2) {
        char path[64];
        struct stat stt;
        snprintf(path, sizeof(path), "/tmp/hmaf-attack-log-%d", (int)h.pid);
        if (stat(path, &stt) == 0) {
            printf("%-16s   host stderr: %lld bytes logged during the attack "
                   "(%.0f kB/s)\n",
                   "", (long long)stt.st_size,
                   (double)stt.st_size / 1024.0 / ((double)(t1 - t0) / 1e9));
        }
        unlink(path);
    }
    hmaf_session_destroy(pr.s);
    free(pr.lat_ns);
    host_stop(&h);
    return bad;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;

    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < 8000) {
        SKIP("RLIMIT_NOFILE %llu: 8000 fds needed",
             (unsigned long long)rl.rlim_cur);
    }
}

int main(int argc, char **argv)
{
    const char *only = getenv("HMAF_REVIEW_ONLY");
    int bad = 0;

    if (argc == 6 && strcmp(argv[1], "--host") == 0) {
        struct host_cfg cfg = {atoi(argv[2]), atoi(argv[3]), atoi(argv[4]),
                               (unsigned)atoi(argv[5])};
        host_main(&cfg, 3, 4);
    }
    setenv("HMAF_LOG", "off", 1); /* this process: the dpu side */
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    make_hellos();
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        if (only == NULL || strstr(attacks[i].name, only) != NULL) {
            bad += run_attack(&attacks[i]);
        }
    }
    printf("conn_attack: %d attack(s) with findings\n", bad);
    return bad == 0 ? 0 : 1;
}
