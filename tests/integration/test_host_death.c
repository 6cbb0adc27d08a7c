/* The host dies at every phase of a dpu side's work: each caller gets an
 * error within a second of the kill, and nothing hangs.
 *
 *   handshake   a fake host that accepts and reads the hello but never
 *               answers, killed; and a real host stopped before it
 *               accepted, killed (the connection waits in its backlog)
 *   idle        a connected, idle session; then each kind of call
 *   transfers   two threads inside 32 MiB reads and writes
 *   register    a thread waiting in the mailbox for the registration of an
 *               exposure it has not used yet (the host stopped, then
 *               killed)
 *   map fault   a thread whose fault waits for that registration, and a
 *               thread streaming through a mirror under a small resident
 *               cap: both get SIGBUS (map.h)
 *
 * Covered elsewhere, not repeated: a thread waiting in a ping round trip
 * and calls after it (test_errors), 1,000 outstanding non-blocking
 * requests (test_nonblocking), a fault after the host is gone (test_map).
 *
 * Default timeouts stay (connect and rpc 5 s), so an error that only comes
 * from a timeout fails the 1 s bound. HMAF_TEST_ROUNDS repeats the run. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "target.h"
#include "util/clock.h"

#define BOUND_NS 1000000000ull
#define HANG_MS  8000 /* past every timeout: a caller this late hangs */
#define XFER     (32u << 20)

enum phase {
    HANDSHAKE_FAKE,
    HANDSHAKE_BACKLOG,
    IDLE,
    TRANSFERS,
    REGISTER,
    MAP_REGISTER,
    MAP_STREAM,
    NPHASES
};

static const char *phase_name[NPHASES] = {
    "handshake (fake host)",      "handshake (backlog)",
    "idle, then calls",           "inside large transfers",
    "waiting for a registration", "map fault waiting for a registration",
    "map faults while streaming",
};

static uint64_t worst_ns[NPHASES];
static int map_skipped;

/* One blocking call (or loop of calls) on a thread of its own. */
struct call {
    pthread_t th;
    int (*fn)(struct call *c);
    hmaf_session_t *s;
    uint64_t addr;
    size_t len;
    uint8_t *buf;
    volatile uint8_t *mirror;
    _Atomic int done;
    int ret;
    uint64_t end_ns;
};

static void *call_main(void *arg)
{
    struct call *c = arg;

    c->ret = c->fn(c);
    c->end_ns = hmaf__now_ns();
    atomic_store(&c->done, 1);
    return NULL;
}

static void call_start(struct call *c)
{
    atomic_store(&c->done, 0);
    CHECK(pthread_create(&c->th, NULL, call_main, c) == 0);
}

static int acceptable(int ret, int handshake)
{
    return ret == HMAF_ECONNRESET ||
           (handshake && (ret == HMAF_ETIMEDOUT || ret == HMAF_EPROTO ||
                          ret == HMAF_ECONNREFUSED));
}

/* The error, when, and whether it is one the phase allows. */
static void judge(enum phase ph, const char *what, int ret, uint64_t kill_ns,
                  uint64_t end_ns)
{
    uint64_t took = end_ns > kill_ns ? end_ns - kill_ns : 0;

    if (end_ns < kill_ns) {
        fprintf(stderr, "%s: %s ended with %s before the kill\n",
                phase_name[ph], what, hmaf_err_name(ret));
        exit(1);
    }
    worst_ns[ph] = took > worst_ns[ph] ? took : worst_ns[ph];
    if (!acceptable(ret, ph <= HANDSHAKE_BACKLOG) || took > BOUND_NS) {
        fprintf(stderr, "%s: %s returned %s %.1f ms after the kill\n",
                phase_name[ph], what, hmaf_err_name(ret), (double)took / 1e6);
        exit(1);
    }
}

/* Join the call, or fail (not hang) when it is far too late. */
static void call_finish(struct call *c, enum phase ph, const char *what,
                        uint64_t kill_ns)
{
    uint64_t deadline = hmaf__deadline_ns(HANG_MS);

    while (!atomic_load(&c->done)) {
        if (hmaf__now_ns() > deadline) {
            fprintf(stderr, "%s: %s still blocked %d ms after the kill\n",
                    phase_name[ph], what, HANG_MS);
            exit(1);
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    pthread_join(c->th, NULL);
    judge(ph, what, c->ret, kill_ns, c->end_ns);
}

/* The call must still be under way when the host is killed. */
static void expect_blocked(const struct call *c, enum phase ph,
                           const char *what)
{
    if (atomic_load(&c->done)) {
        fprintf(stderr, "%s: %s returned %s before the kill\n", phase_name[ph],
                what, hmaf_err_name(c->ret));
        exit(1);
    }
}

static void pause_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* SIGSTOP the host and wait until every thread of it has stopped: the
 * signal alone returns before they do. */
static void stop_host(const struct target *t)
{
    uint64_t deadline = hmaf__deadline_ns(2000);
    char path[64];
    int running;

    kill(t->pid, SIGSTOP);
    do {
        struct dirent *e;
        DIR *d;
        snprintf(path, sizeof(path), "/proc/%d/task", (int)t->pid);
        d = opendir(path);
        CHECK(d != NULL);
        running = 0;
        while ((e = readdir(d)) != NULL) {
            char stat[400], line[256], *end;
            FILE *f;
            if (e->d_name[0] == '.') {
                continue;
            }
            snprintf(stat, sizeof(stat), "%s/%s/stat", path, e->d_name);
            f = fopen(stat, "r");
            if (f != NULL && fgets(line, sizeof(line), f) != NULL &&
                (end = strrchr(line, ')')) != NULL && end[1] == ' ' &&
                end[2] != 'T') {
                running = 1;
            }
            if (f != NULL) {
                fclose(f);
            }
        }
        closedir(d);
        CHECK(hmaf__now_ns() < deadline);
    } while (running);
}

/* SIGKILL the host and reap it; returns when the kill was sent. */
static uint64_t kill_host(struct target *t)
{
    uint64_t at = hmaf__now_ns();

    target_kill(t);
    return at;
}

/* --- handshake --------------------------------------------------------- */

static int create_session(struct call *c)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    int ret;

    hmaf_session_params_init(&p);
    p.address = (const char *)c->buf;
    p.token = TARGET_TOKEN;
    ret = hmaf_session_create(&p, &s);
    if (ret == 0) {
        hmaf_session_destroy(s);
        ret = 1; /* not an HMAF code: judged a failure */
    }
    return ret;
}

/* The fake host: listen at path, accept, read whatever comes, tell the
 * parent, then wait to be killed. */
static void fake_host_main(const char *path, int ready_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0), fd;
    char hello[64];

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(lfd, 4) != 0 || write(ready_fd, "l", 1) != 1) {
        _exit(2);
    }
    fd = accept(lfd, NULL, NULL);
    if (fd < 0 || read(fd, hello, sizeof(hello)) <= 0 ||
        write(ready_fd, "h", 1) != 1) {
        _exit(2);
    }
    for (;;) {
        pause();
    }
}

static void check_handshake_fake(void)
{
    char dir[] = "/tmp/hmaf-death-XXXXXX", path[96], address[128], c;
    struct call call = {.fn = create_session, .buf = (uint8_t *)address};
    int ready[2];
    uint64_t kill_ns;
    pid_t pid;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/fake.sock", dir);
    snprintf(address, sizeof(address), "unix:%s", path);
    CHECK(pipe(ready) == 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fake_host_main(path, ready[1]);
    }
    CHECK(read(ready[0], &c, 1) == 1 && c == 'l');
    call_start(&call);
    CHECK(read(ready[0], &c, 1) == 1 && c == 'h'); /* hello received */
    pause_ms(20);
    expect_blocked(&call, HANDSHAKE_FAKE, "hmaf_session_create");
    kill_ns = hmaf__now_ns();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    call_finish(&call, HANDSHAKE_FAKE, "hmaf_session_create", kill_ns);
    close(ready[0]);
    close(ready[1]);
    unlink(path);
    rmdir(dir);
}

static void check_handshake_backlog(void)
{
    struct target t;
    struct call call = {.fn = create_session};
    uint64_t kill_ns;

    target_start_standard(&t);
    call.buf = (uint8_t *)t.address;
    stop_host(&t);
    call_start(&call);
    pause_ms(30);
    expect_blocked(&call, HANDSHAKE_BACKLOG, "hmaf_session_create");
    kill_ns = kill_host(&t);
    call_finish(&call, HANDSHAKE_BACKLOG, "hmaf_session_create", kill_ns);
}

/* --- idle, transfers, registration ------------------------------------ */

static void check_idle(void)
{
    struct target t;
    hmaf_session_t *s;
    uint64_t buf, ro, kill_ns, addr;
    uint8_t v[256];

    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    CHECK_OK(hmaf_session_read(s, v, buf, sizeof(v))); /* cached now */
    pause_ms(20);
    kill_ns = kill_host(&t);
    pause_ms(5);
    judge(IDLE, "read (cached)", hmaf_session_read(s, v, buf, sizeof(v)),
          kill_ns, hmaf__now_ns());
    judge(IDLE, "write (cached)", hmaf_session_write(s, buf, v, sizeof(v)),
          kill_ns, hmaf__now_ns());
    judge(IDLE, "read (new region)", hmaf_session_read(s, v, ro, sizeof(v)),
          kill_ns, hmaf__now_ns());
    judge(IDLE, "ping", hmaf_session_ping(s), kill_ns, hmaf__now_ns());
    judge(IDLE, "lookup", hmaf_session_lookup(s, "buf", &addr, NULL), kill_ns,
          hmaf__now_ns());
    hmaf_session_destroy(s);
}

/* A fresh session per thread: idle-then-call must not be what ends it. */
static int read_until_error(struct call *c)
{
    int ret;

    while ((ret = hmaf_session_read(c->s, c->buf, c->addr, c->len)) == 0) {
    }
    return ret;
}

static int write_until_error(struct call *c)
{
    int ret;

    while ((ret = hmaf_session_write(c->s, c->addr, c->buf, c->len)) == 0) {
    }
    return ret;
}

static void check_transfers(void)
{
    struct target t;
    struct call rd = {.fn = read_until_error, .len = XFER};
    struct call wr = {.fn = write_until_error, .len = XFER};
    hmaf_session_t *s;
    uint64_t buf, kill_ns;

    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    rd.s = wr.s = s;
    rd.addr = buf;
    wr.addr = buf + XFER;
    rd.buf = malloc(XFER);
    wr.buf = malloc(XFER);
    CHECK(rd.buf != NULL && wr.buf != NULL);
    memset(wr.buf, 0x77, XFER);
    call_start(&rd);
    call_start(&wr);
    pause_ms(60);
    expect_blocked(&rd, TRANSFERS, "32 MiB reads");
    expect_blocked(&wr, TRANSFERS, "32 MiB writes");
    kill_ns = kill_host(&t);
    call_finish(&rd, TRANSFERS, "32 MiB reads", kill_ns);
    call_finish(&wr, TRANSFERS, "32 MiB writes", kill_ns);
    free(rd.buf);
    free(wr.buf);
    hmaf_session_destroy(s);
}

static int read_once(struct call *c)
{
    return hmaf_session_read(c->s, c->buf, c->addr, c->len);
}

static void check_registration(void)
{
    struct target t;
    uint8_t v[64];
    struct call call = {.fn = read_once, .buf = v, .len = sizeof(v)};
    uint64_t kill_ns;

    target_start_standard(&t);
    call.s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(call.s, "ro", &call.addr, NULL));
    stop_host(&t); /* the registration request waits unanswered */
    call_start(&call);
    pause_ms(30);
    expect_blocked(&call, REGISTER, "read needing a registration");
    kill_ns = kill_host(&t);
    call_finish(&call, REGISTER, "read needing a registration", kill_ns);
    hmaf_session_destroy(call.s);
}

/* --- mapping mode ------------------------------------------------------ */

static _Thread_local sigjmp_buf on_sigbus;

static void sigbus(int sig)
{
    (void)sig;
    siglongjmp(on_sigbus, 1);
}

/* Touch every page of the mirror, over and over, until one raises
 * SIGBUS: HMAF_ECONNRESET stands for that. */
static int touch_until_sigbus(struct call *c)
{
    if (sigsetjmp(on_sigbus, 1) != 0) {
        return HMAF_ECONNRESET;
    }
    for (;;) {
        for (size_t off = 0; off < c->len; off += 4096) {
            (void)c->mirror[off]; /* a volatile read: done */
        }
    }
}

/* One touch of the first page, which must raise SIGBUS. */
static int touch_once(struct call *c)
{
    if (sigsetjmp(on_sigbus, 1) != 0) {
        return HMAF_ECONNRESET;
    }
    return c->mirror[0] + 1; /* served: not an HMAF code, judged a failure */
}

static hmaf_session_t *connect_capped(const struct target *t, uint64_t cap)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;

    target_session_params(t, &p);
    p.map_max_resident = cap;
    CHECK_OK(hmaf_session_create(&p, &s));
    return s;
}

/* Mirror root `name`; 0 when userfaultfd is not available here. */
static hmaf_map_t *mirror(hmaf_session_t *s, const char *name, struct call *c)
{
    hmaf_map_params_t p;
    hmaf_map_t *map = NULL;
    size_t len;
    int ret;

    CHECK_OK(hmaf_session_lookup(s, name, &c->addr, &len));
    c->addr = (c->addr + 4095) & ~(uint64_t)4095; /* whole pages */
    c->len = (len - 8192) & ~(size_t)4095;
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE | HMAF_MAP_READ_ONLY;
    ret = hmaf_map_create(s, c->addr, c->len, &p, &map);
    if (ret == HMAF_ENOTSUP) {
        return NULL;
    }
    CHECK_OK(ret);
    c->mirror = hmaf_map_local(map, c->addr);
    return map;
}

static void check_map(enum phase ph)
{
    struct sigaction sa = {.sa_handler = sigbus}, old;
    struct call call = {.fn =
                            ph == MAP_STREAM ? touch_until_sigbus : touch_once};
    struct target t;
    hmaf_map_t *map;
    uint64_t kill_ns;

    target_start_standard(&t);
    hmaf_session_destroy(target_connect(&t)); /* skips if not allowed */
    call.s = connect_capped(&t, ph == MAP_STREAM ? 1u << 20 : UINT64_MAX);
    map = mirror(call.s, ph == MAP_STREAM ? "buf" : "ro", &call);
    if (map == NULL) {
        map_skipped = 1;
        hmaf_session_destroy(call.s);
        target_kill(&t);
        return;
    }
    sigaction(SIGBUS, &sa, &old);
    if (ph == MAP_REGISTER) {
        stop_host(&t); /* the first fault's registration waits */
    }
    call_start(&call);
    pause_ms(ph == MAP_STREAM ? 60 : 30);
    expect_blocked(&call, ph, "a touch of the mirror");
    kill_ns = kill_host(&t);
    call_finish(&call, ph, "a touch of the mirror", kill_ns);
    sigaction(SIGBUS, &old, NULL);
    hmaf_map_destroy(map);
    hmaf_session_destroy(call.s);
}

static int rounds_wanted(void)
{
    const char *env = getenv("HMAF_TEST_ROUNDS");
    int n = env != NULL ? atoi(env) : 1;

    return n < 1 ? 1 : n;
}

int main(void)
{
    int rounds = rounds_wanted();

    for (int r = 0; r < rounds; r++) {
        check_handshake_fake();
        check_handshake_backlog();
        check_idle();
        check_transfers();
        check_registration();
        check_map(MAP_REGISTER);
        check_map(MAP_STREAM);
    }
    for (int ph = 0; ph < NPHASES; ph++) {
        if ((ph == MAP_REGISTER || ph == MAP_STREAM) && map_skipped) {
            printf("%-38s skipped: no userfaultfd here\n", phase_name[ph]);
            continue;
        }
        printf("%-38s worst %7.1f ms from kill to error\n", phase_name[ph],
               (double)worst_ns[ph] / 1e6);
    }
    printf("test_host_death: ok\n");
    return 0;
}
