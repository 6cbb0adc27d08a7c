/* Dpu sides that die at random points leave nothing behind on the host.
 *
 * One host process serves; 200 short-lived dpu processes each connect,
 * read and write (up to 4 MiB at a time), register a second exposure,
 * post non-blocking reads, ping, idle, and are SIGKILLed at a random
 * moment: during the handshake, mid-transfer or idle. After a warm-up of
 * 20 kills and again at the end, once the host reports no live session,
 * its open fds (/proc/<pid>/fd), its resident set (VmRSS) and its heap in
 * use (mallinfo2, or ASan's allocator count, measured inside the host and
 * passed up through shared memory) are taken: the fds must be the same,
 * the heap and the resident set may grow by a small bound only.
 *
 * HMAF_TEST_KILLS scales the run (default 200, at least 40).
 *
 *   test_dpu_kill [idle|mailbox]
 *
 * idle: the dpu sides only connect and idle, so every kill finds no
 * transfer in flight; mailbox: they only ping, so most kills land in a
 * mailbox call (docs/engines.md, "ucx", says why these are apart). */
#include <dirent.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "target.h"
#include "util/clock.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
/* From <sanitizer/allocator_interface.h>, which not every compiler has. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define BUF_LEN  (16u << 20)
#define TWO_LEN  (1u << 20)
#define RO_LEN   (256u << 10)
#define XFER_MAX (4u << 20)
#define WARMUP   20

#define HEAP_SLACK   (48u << 10)
#define RSS_SLACK_KB 256u

struct host_mem {
    uint8_t *buf, *two, *ro;
};

/* MAP_SHARED, made before the forks: the host writes heap, the current
 * dpu side its phase, so the parent knows what each kill interrupted. */
enum phase { CONNECTING, IDLE, TRANSFER, NPHASES };
struct shared {
    volatile uint64_t heap;
    volatile int phase;
    uint8_t local[XFER_MAX]; /* the dpu sides' buffer, faulted in once */
};

/* What the dpu sides do between connecting and their kill. */
enum mode { MIXED, IDLE_ONLY, MAILBOX_ONLY };

static struct host_mem mem;
static struct shared *shared;
static enum mode mode = MIXED;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    mem.buf = malloc(BUF_LEN);
    mem.two = malloc(TWO_LEN);
    mem.ro = malloc(RO_LEN);
    if (mem.buf == NULL || mem.two == NULL || mem.ro == NULL) {
        return HMAF_ENOMEM;
    }
    /* Every page resident now, so later writes add nothing to VmRSS. */
    target_fill(mem.buf, BUF_LEN, 0, 1);
    target_fill(mem.two, TWO_LEN, 0, 5);
    target_fill(mem.ro, RO_LEN, 0, 3);
    return hmaf_agent_expose(agent, mem.buf, BUF_LEN, HMAF_ACCESS_READ_WRITE) ||
           hmaf_agent_expose(agent, mem.two, TWO_LEN, HMAF_ACCESS_READ_WRITE) ||
           hmaf_agent_expose(agent, mem.ro, RO_LEN, HMAF_ACCESS_READ) ||
           hmaf_agent_publish(agent, "buf", mem.buf, BUF_LEN) ||
           hmaf_agent_publish(agent, "two", mem.two, TWO_LEN) ||
           hmaf_agent_publish(agent, "ro", mem.ro, RO_LEN);
}

static uint64_t heap_in_use(void)
{
#ifdef HAVE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0; /* unknown here: the heap bound is not checked */
#endif
}

/* 's': live sessions (at most 254); 'h': heap in use into shared memory. */
static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    (void)arg;
    switch (cmd) {
    case 's':
        hmaf_agent_stats(agent, &st);
        return st.sessions_live > 254 ? 254 : (int)st.sessions_live;
    case 'h':
        shared->heap = heap_in_use();
        return 1;
    default:
        return 255;
    }
}

static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* One random step of a dpu side's life. Errors are fine (EACCES on "ro"
 * is expected); only a lost host would be odd, and then it just exits. */
static void dpu_step(hmaf_session_t *s, uint64_t *rng, uint8_t *local,
                     const uint64_t root[3])
{
    size_t len = 1 + next_rand(rng) % XFER_MAX;
    uint64_t off = next_rand(rng) % (BUF_LEN - len);
    hmaf_req_t req[4];
    int ret = 0;

    shared->phase = TRANSFER;
    switch (next_rand(rng) % 8) {
    case 0:
    case 1:
        ret = hmaf_session_read(s, local, root[0] + off, len);
        break;
    case 2:
    case 3:
        ret = hmaf_session_write(s, root[0] + off, local, len);
        break;
    case 4: /* a second exposure: a registration round trip */
        ret = hmaf_session_read(s, local, root[1] + off % (TWO_LEN - 64), 64);
        break;
    case 5:
        (void)hmaf_session_write(s, root[2], local, 64); /* read-only */
        ret = hmaf_session_ping(s);
        break;
    case 6:
        for (int i = 0; i < 4 && ret == 0; i++) {
            ret = hmaf_session_post_read(s, local + i * 4096,
                                         root[0] + off + (uint64_t)i * 8192,
                                         4096, &req[i]);
        }
        for (int i = 0; i < 4 && ret == 0; i++) {
            ret = hmaf_request_wait(s, req[i]);
        }
        break;
    default: /* idle a while */
        shared->phase = IDLE;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        break;
    }
    shared->phase = IDLE;
    if (ret == HMAF_ECONNRESET) {
        _exit(3);
    }
}

/* A step of a dpu side that only idles, or only makes mailbox calls. */
static void dpu_step_only(hmaf_session_t *s)
{
    if (mode == IDLE_ONLY) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        return;
    }
    shared->phase = TRANSFER;
    if (hmaf_session_ping(s) == HMAF_ECONNRESET) {
        _exit(3);
    }
    shared->phase = IDLE;
}

static void dpu_main(const struct target *t, uint64_t seed)
{
    static const char *names[3] = {"buf", "two", "ro"};
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint64_t root[3], rng = seed | 1;
    uint8_t *local = shared->local;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    target_session_params(t, &p);
    if (hmaf_session_create(&p, &s) != 0) {
        _exit(2);
    }
    for (int i = 0; i < 3; i++) {
        if (hmaf_session_lookup(s, names[i], &root[i], NULL) != 0) {
            _exit(2);
        }
    }
    shared->phase = IDLE;
    for (;;) {
        if (mode == MIXED) {
            dpu_step(s, &rng, local, root);
        } else {
            dpu_step_only(s);
        }
    }
}

/* At most a second: a dpu side that cannot connect is killed anyway. */
static void await_connected(void)
{
    uint64_t deadline = hmaf__deadline_ns(1000);

    while (shared->phase == CONNECTING && hmaf__now_ns() < deadline) {
        nanosleep(&(struct timespec){0, 50000}, NULL);
    }
}

/* Fork a dpu side and SIGKILL it after a random delay: none (it dies
 * while starting or connecting), a little (handshake or first calls), or,
 * most often, a while after it connected (mid-call or idle). */
static void kill_one(const struct target *t, uint64_t *rng,
                     int killed_in[NPHASES])
{
    uint64_t seed = next_rand(rng), delay_us;
    pid_t pid;

    switch (seed % 4) {
    case 0:
        delay_us = 0;
        break;
    case 1:
        delay_us = next_rand(rng) % 2000;
        break;
    default:
        delay_us = next_rand(rng) % 10000;
        break;
    }
    shared->phase = CONNECTING;
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dpu_main(t, seed);
    }
    if (seed % 4 > 1) {
        await_connected();
    }
    if (delay_us > 0) {
        nanosleep(&(struct timespec){0, (long)delay_us * 1000}, NULL);
    }
    killed_in[shared->phase]++;
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, NULL, 0) == pid);
}

static void await_no_sessions(struct target *t)
{
    uint64_t deadline = hmaf__deadline_ns(10000);

    while (target_command(t, 's') != 0) {
        CHECK(hmaf__now_ns() < deadline);
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
}

struct usage {
    long fds;
    long rss_kb;
    uint64_t heap;
};

static long count_fds(pid_t pid)
{
    char path[64];
    struct dirent *e;
    long n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    CHECK(kb >= 0);
    return kb;
}

static struct usage measure_now(struct target *t)
{
    struct usage u;

    await_no_sessions(t);
    CHECK_EQ(target_command(t, 'h'), 1);
    u.heap = shared->heap;
    u.fds = count_fds(t->pid);
    u.rss_kb = rss_kb(t->pid);
    return u;
}

static int within_bounds(const struct usage *before, const struct usage *u)
{
#ifdef HAVE_ASAN /* its quarantine holds freed memory resident */
    long rss_slack_kb = LONG_MAX / 2;
#else
    long rss_slack_kb = RSS_SLACK_KB;
#endif

    return u->fds == before->fds && u->heap <= before->heap + HEAP_SLACK &&
           u->rss_kb <= before->rss_kb + rss_slack_kb;
}

/* Once no session is live, a connection killed during its handshake may
 * still be on its way out: the baseline is taken when two readings 20 ms
 * apart agree; the final figures get up to 2 s to come within bounds. */
static struct usage measure(struct target *t, const struct usage *before)
{
    uint64_t deadline = hmaf__deadline_ns(2000);
    struct usage u = measure_now(t), prev;

    do {
        prev = u;
        nanosleep(&(struct timespec){0, 20000000}, NULL);
        u = measure_now(t);
        if (before != NULL && within_bounds(before, &u)) {
            break;
        }
    } while (hmaf__now_ns() < deadline &&
             (before != NULL || u.fds != prev.fds || u.heap != prev.heap));
    return u;
}

/* The host still serves, and its data are where they were. */
static void check_host_alive(struct target *t)
{
    hmaf_session_t *s = target_connect(t);
    uint64_t two;
    uint8_t v[4096];

    CHECK_OK(hmaf_session_lookup(s, "two", &two, NULL));
    CHECK_OK(hmaf_session_read(s, v, two, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 0, 5);
    hmaf_session_destroy(s);
    await_no_sessions(t);
}

static int kills_wanted(void)
{
    const char *env = getenv("HMAF_TEST_KILLS");
    int n = env != NULL ? atoi(env) : 200;

    return n < 2 * WARMUP ? 2 * WARMUP : n;
}

static enum mode mode_named(int argc, char **argv)
{
    if (argc < 2) {
        return MIXED;
    }
    if (strcmp(argv[1], "idle") == 0) {
        return IDLE_ONLY;
    }
    CHECK(strcmp(argv[1], "mailbox") == 0);
    return MAILBOX_ONLY;
}

int main(int argc, char **argv)
{
    struct target_options opts = {.setup = setup, .command = command};
    struct target t;
    struct usage before, after;
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    uint64_t start;
    int kills = kills_wanted(), killed_in[NPHASES] = {0};

    mode = mode_named(argc, argv);
    shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    memset(shared->local, 0x5a, XFER_MAX);
    target_start(&t, &opts);
    check_host_alive(&t); /* also skips when ptrace is not permitted */
    start = hmaf__now_ns();
    for (int i = 0; i < WARMUP; i++) {
        kill_one(&t, &rng, killed_in);
    }
    before = measure(&t, NULL);
    for (int i = WARMUP; i < kills; i++) {
        kill_one(&t, &rng, killed_in);
    }
    after = measure(&t, &before);
    printf("%d kills in %.1f s; after %d -> after %d: fds %ld -> %ld, "
           "VmRSS %ld -> %ld KiB (%+ld), heap %llu -> %llu (%+lld bytes)\n",
           kills, (double)(hmaf__now_ns() - start) / 1e9, WARMUP, kills,
           before.fds, after.fds, before.rss_kb, after.rss_kb,
           after.rss_kb - before.rss_kb, (unsigned long long)before.heap,
           (unsigned long long)after.heap,
           (long long)after.heap - (long long)before.heap);
    printf("killed while connecting %d, idle %d, mid-call %d\n",
           killed_in[CONNECTING], killed_in[IDLE], killed_in[TRANSFER]);
    /* The run meant something. */
    CHECK(mode == IDLE_ONLY || killed_in[TRANSFER] >= kills / 20);
    check_host_alive(&t);
    CHECK_EQ(after.fds, before.fds);
    CHECK(after.heap <= before.heap + HEAP_SLACK);
    CHECK(within_bounds(&before, &after)); /* and VmRSS */
    CHECK_EQ(target_stop(&t), 0);
    printf("test_dpu_kill: ok\n");
    return 0;
}
