/*
 * hmaf-bench: what HMAF's hot paths cost over the raw syscalls they wrap.
 *
 * It forks its own host process: an agent that exposes a 64 MiB buffer
 * (root "buf") and publishes a raw ping-pong area (root "pingpong"). The
 * parent is the dpu side: it connects a session and times each HMAF
 * operation against its raw cross-memory-attach equivalent on the same
 * addresses and local buffers.
 *
 * The machines are shared and noisy, so absolute figures mean little: each
 * metric is a ratio against a baseline measured in the same run. HMAF and
 * raw rounds alternate, the order flipping every round so that drift hits
 * both alike, and each figure is the median of its rounds. A round during
 * which other tasks kept our threads from their cpus (the schedstat run
 * delay says so) is run again; the notes under the table say how noisy the
 * run was.
 *
 * Fairness: host and dpu side share two cores. The agent's thread spins
 * for 200 us after a request and then sleeps; the raw pong thread spins
 * too, so it only runs during raw ping-pong rounds and never steals a core
 * from the other measurements.
 *
 * Pinning: by default the dpu side runs on one CPU and the whole host
 * process (agent thread, pong thread) on another, like a DPU beside its
 * host. Left to itself the scheduler sometimes stacks the spinning client
 * and server on one CPU, and round trips then take a time slice each
 * (hundreds of us) for whole rounds; --no-pin shows it.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/hmaf.h>

#define BENCH_TOKEN "hmaf-bench"
#define NO_CPU      (-1)
#define BUF_LEN     ((size_t)64 << 20)
#define BIG_LEN     ((size_t)1 << 20)
#define SMALL_LEN   ((size_t)64)
/* The small transfers use one page-aligned host address, inside "buf". */
#define SMALL_OFF      ((uint64_t)4096)
#define ROUNDS_DEFAULT 15
#define ROUNDS_QUICK   5
#define ROUNDS_MAX     1000
/* A round whose threads waited on a runqueue for more than 1/DISTURBED of
 * its time is run again, up to RERUN_MAX times: that wait is the
 * neighbours' noise, not a cost of HMAF. (A quiet machine shows 0-3%:
 * kernel threads, and the idle agent waking beside the pong thread.) */
#define DISTURBED 10
#define RERUN_MAX 2
/* Per-round ratios spread wider than this (p25 to p75): say it was noisy. */
#define NOISY_SPREAD 0.10
/* A raw ping gives up after this many polls (seconds): the host died. */
#define PONG_POLLS_MAX (1u << 23)

/* Host commands, one byte on the pipe; the host answers REPLY_OK or not. */
#define CMD_PONG_START 'P'
#define CMD_PONG_STOP  'S'
#define REPLY_OK       'K'
#define REPLY_READY    'R'
#define REPLY_FAIL     'F'
/* The pong thread's name, so the parent can find it in /proc. */
#define PONG_NAME "hmaf-bench-pong"

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Word i of "buf": lets the dpu side check it reads the right bytes. */
static uint64_t pattern_word(uint64_t i)
{
    return (i + 1) * 0x9e3779b97f4a7c15ull;
}

/* Restrict the calling thread, and the threads it creates later, to cpu. */
static int pin_to(int cpu)
{
    cpu_set_t set;

    if (cpu == NO_CPU) {
        return 0;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

/* The first two CPUs we may use: the dpu side's, then the host's. */
static int pick_cpus(int *dpu_out, int *host_out)
{
    cpu_set_t set;
    int cpus[2], n = 0;

    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return -1;
    }
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++) {
        if (CPU_ISSET(c, &set)) {
            cpus[n++] = c;
        }
    }
    if (n < 2) {
        return -1;
    }
    *dpu_out = cpus[0];
    *host_out = cpus[1];
    return 0;
}

/* ------------------------------------------------------------------ */
/* Host side (the forked child)                                        */
/* ------------------------------------------------------------------ */

/* Request and reply on separate cache lines, so the echo costs one line
 * transfer each way, like the agent's request and response words. */
struct pingpong {
    alignas(64) _Atomic uint64_t request; /* the parent writes here */
    alignas(64) _Atomic uint64_t reply;   /* the pong thread echoes here */
};

struct host {
    hmaf_agent_t *agent;
    uint64_t *buf;
    struct pingpong *pp;
    pthread_t pong;
    int pong_running;
    _Atomic int pong_stop;
};

static void *pong_main(void *arg)
{
    struct host *h = arg;
    /* Start from the last echo, not the request: one written before this
     * thread got going must still be answered. */
    uint64_t last = atomic_load_explicit(&h->pp->reply, memory_order_relaxed);

    /* Spin without pause, as the agent's loop does while it is busy:
     * each server answers as fast as it can. */
    while (!atomic_load_explicit(&h->pong_stop, memory_order_relaxed)) {
        uint64_t req =
            atomic_load_explicit(&h->pp->request, memory_order_acquire);
        if (req != last) {
            atomic_store_explicit(&h->pp->reply, req, memory_order_release);
            last = req;
        }
    }
    return NULL;
}

static int pong_start(struct host *h)
{
    if (h->pong_running) {
        return 0;
    }
    atomic_store(&h->pong_stop, 0);
    if (pthread_create(&h->pong, NULL, pong_main, h) != 0) {
        return -1;
    }
    pthread_setname_np(h->pong, PONG_NAME);
    h->pong_running = 1;
    return 0;
}

static void pong_stop(struct host *h)
{
    if (h->pong_running) {
        atomic_store(&h->pong_stop, 1);
        pthread_join(h->pong, NULL);
        h->pong_running = 0;
    }
}

static int host_alloc(struct host *h)
{
    h->buf = aligned_alloc(4096, BUF_LEN);
    h->pp = aligned_alloc(alignof(struct pingpong), sizeof(*h->pp));
    if (h->buf == NULL || h->pp == NULL) {
        return HMAF_ENOMEM;
    }
    /* Writing every word also faults the pages in before anyone times. */
    for (size_t i = 0; i < BUF_LEN / sizeof(uint64_t); i++) {
        h->buf[i] = pattern_word(i);
    }
    atomic_init(&h->pp->request, 0);
    atomic_init(&h->pp->reply, 0);
    return 0;
}

static int host_setup(struct host *h, const char *address)
{
    hmaf_agent_params_t p;
    int ret = host_alloc(h);

    if (ret < 0) {
        return ret;
    }
    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = BENCH_TOKEN;
    p.engine = "cma"; /* the raw baselines are cma's syscalls */
    ret = hmaf_agent_create(&p, &h->agent);
    if (ret == 0) {
        ret = hmaf_agent_expose(h->agent, h->buf, BUF_LEN,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(h->agent, "buf", h->buf, BUF_LEN);
    }
    if (ret == 0) {
        /* Published so the parent can find it; the raw ping-pong does not
         * go through HMAF, so it needs no exposure. */
        ret = hmaf_agent_publish(h->agent, "pingpong", h->pp, sizeof(*h->pp));
    }
    return ret;
}

static void host_serve(struct host *h, int cmd_fd, int reply_fd)
{
    unsigned char cmd, reply;

    /* EOF: the parent is done (or gone). */
    while (read(cmd_fd, &cmd, 1) == 1) {
        reply = REPLY_OK;
        if (cmd == CMD_PONG_START) {
            reply = pong_start(h) == 0 ? REPLY_OK : REPLY_FAIL;
        } else if (cmd == CMD_PONG_STOP) {
            pong_stop(h);
        } else {
            reply = REPLY_FAIL;
        }
        if (write(reply_fd, &reply, 1) != 1) {
            break;
        }
    }
}

static _Noreturn void host_main(pid_t parent, int cpu, const char *address,
                                int cmd_fd, int reply_fd)
{
    struct host h = {.agent = NULL};
    unsigned char ready;
    int ret;

    /* Never outlive the parent, even one that died before the prctl. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
        _exit(1);
    }
    /* Before the agent starts its thread, which inherits the mask. */
    if (pin_to(cpu) != 0) {
        perror("hmaf-bench: host: sched_setaffinity");
    }
    ret = host_setup(&h, address);
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: host setup: %s\n", hmaf_strerror(ret));
    }
    ready = ret == 0 ? REPLY_READY : REPLY_FAIL;
    if (write(reply_fd, &ready, 1) != 1 || ret != 0) {
        _exit(1);
    }
    host_serve(&h, cmd_fd, reply_fd);
    pong_stop(&h);
    hmaf_agent_destroy(h.agent);
    _exit(0);
}

/* ------------------------------------------------------------------ */
/* The parent's handle on the host process                             */
/* ------------------------------------------------------------------ */

struct child {
    pid_t pid;
    int cpu;      /* the host process runs here, or NO_CPU */
    int cmd_fd;   /* parent -> child; closing it stops the child */
    int reply_fd; /* child -> parent */
    char dir[64];
    char address[128];
};

static void child_cleanup(struct child *c)
{
    char path[160];

    close(c->cmd_fd);
    close(c->reply_fd);
    snprintf(path, sizeof(path), "%s/agent.sock", c->dir);
    unlink(path);
    rmdir(c->dir);
}

/* Close the command pipe, reap the child; its exit status, or -1. */
static int child_stop(struct child *c)
{
    int status = 0, reaped;

    close(c->cmd_fd);
    c->cmd_fd = -1;
    reaped = waitpid(c->pid, &status, 0) == c->pid;
    child_cleanup(c);
    return reaped && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void close_pipe(const int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

static int child_spawn(struct child *c)
{
    int to_child[2], to_parent[2];
    pid_t parent = getpid();

    if (pipe(to_child) != 0) {
        perror("hmaf-bench: pipe");
        return -1;
    }
    if (pipe(to_parent) != 0) {
        perror("hmaf-bench: pipe");
        close_pipe(to_child);
        return -1;
    }
    fflush(NULL); /* or the child would print our buffered output too */
    c->pid = fork();
    if (c->pid < 0) {
        perror("hmaf-bench: fork");
        close_pipe(to_child);
        close_pipe(to_parent);
        return -1;
    }
    if (c->pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        host_main(parent, c->cpu, c->address, to_child[0], to_parent[1]);
    }
    close(to_child[0]);
    close(to_parent[1]);
    c->cmd_fd = to_child[1];
    c->reply_fd = to_parent[0];
    return 0;
}

/* Fork the host and wait until its agent listens. */
static int child_start(struct child *c)
{
    unsigned char ready = 0;

    snprintf(c->dir, sizeof(c->dir), "/tmp/hmaf-bench-XXXXXX");
    if (mkdtemp(c->dir) == NULL) {
        perror("hmaf-bench: mkdtemp");
        return -1;
    }
    snprintf(c->address, sizeof(c->address), "unix:%s/agent.sock", c->dir);
    if (child_spawn(c) != 0) {
        rmdir(c->dir);
        return -1;
    }
    if (read(c->reply_fd, &ready, 1) != 1 || ready != REPLY_READY) {
        fprintf(stderr, "hmaf-bench: the host process failed to start\n");
        child_stop(c);
        return -1;
    }
    return 0;
}

static int child_command(struct child *c, unsigned char cmd)
{
    unsigned char reply = 0;

    if (write(c->cmd_fd, &cmd, 1) != 1 || read(c->reply_fd, &reply, 1) != 1 ||
        reply != REPLY_OK) {
        fprintf(stderr, "hmaf-bench: host command '%c' failed\n", cmd);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The dpu side: one operation of each kind, HMAF and raw              */
/* ------------------------------------------------------------------ */

struct bench {
    hmaf_session_t *s;
    struct child *host;
    pid_t pid;       /* the host's, for the raw syscalls */
    uint64_t buf;    /* root "buf" */
    uint64_t pp;     /* root "pingpong" */
    uint8_t *small;  /* 64-byte aligned, SMALL_LEN bytes */
    uint8_t *big;    /* page aligned, BIG_LEN bytes */
    uint64_t seq;    /* last raw ping sequence number */
    int verbose;     /* print every round */
    unsigned reruns; /* rounds run again: other tasks took our cpus */
    unsigned kept;   /* rounds still disturbed after the last rerun */
};

static int hmaf_check(const char *what, int ret)
{
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: %s: %s (%s)\n", what, hmaf_strerror(ret),
                hmaf_err_name(ret));
    }
    return ret;
}

/* One raw process_vm_readv/writev: the syscall HMAF's cma engine makes. */
static int raw_rw(const struct bench *b, int is_write, void *local,
                  uint64_t remote, size_t len)
{
    struct iovec l = {.iov_base = local, .iov_len = len};
    struct iovec r = {.iov_base = (void *)(uintptr_t)remote, .iov_len = len};
    ssize_t n = is_write ? process_vm_writev(b->pid, &l, 1, &r, 1, 0)
                         : process_vm_readv(b->pid, &l, 1, &r, 1, 0);

    if (n == (ssize_t)len) {
        return 0;
    }
    fprintf(stderr, "hmaf-bench: process_vm_%sv pid %d: %s\n",
            is_write ? "write" : "read", (int)b->pid,
            n < 0 ? strerror(errno) : "short transfer");
    return -1;
}

/* The big transfers walk the whole buffer, 1 MiB at a time: both sides
 * use the same sequence of host addresses. */
static uint64_t big_addr(const struct bench *b, unsigned i)
{
    return b->buf + (uint64_t)(i % (BUF_LEN / BIG_LEN)) * BIG_LEN;
}

static int hmaf_read_small(struct bench *b, unsigned i)
{
    (void)i;
    return hmaf_check(
        "hmaf_session_read",
        hmaf_session_read(b->s, b->small, b->buf + SMALL_OFF, SMALL_LEN));
}

static int raw_read_small(struct bench *b, unsigned i)
{
    (void)i;
    return raw_rw(b, 0, b->small, b->buf + SMALL_OFF, SMALL_LEN);
}

static int hmaf_read_big(struct bench *b, unsigned i)
{
    return hmaf_check("hmaf_session_read",
                      hmaf_session_read(b->s, b->big, big_addr(b, i), BIG_LEN));
}

static int raw_read_big(struct bench *b, unsigned i)
{
    return raw_rw(b, 0, b->big, big_addr(b, i), BIG_LEN);
}

static int hmaf_write_small(struct bench *b, unsigned i)
{
    (void)i;
    return hmaf_check(
        "hmaf_session_write",
        hmaf_session_write(b->s, b->buf + SMALL_OFF, b->small, SMALL_LEN));
}

static int raw_write_small(struct bench *b, unsigned i)
{
    (void)i;
    return raw_rw(b, 1, b->small, b->buf + SMALL_OFF, SMALL_LEN);
}

static int hmaf_write_big(struct bench *b, unsigned i)
{
    return hmaf_check(
        "hmaf_session_write",
        hmaf_session_write(b->s, big_addr(b, i), b->big, BIG_LEN));
}

static int raw_write_big(struct bench *b, unsigned i)
{
    return raw_rw(b, 1, b->big, big_addr(b, i), BIG_LEN);
}

static int hmaf_ping(struct bench *b, unsigned i)
{
    (void)i;
    return hmaf_check("hmaf_session_ping", hmaf_session_ping(b->s));
}

/* Like a mailbox round trip: write the request word, then poll the reply
 * word until the host's spinning thread has echoed it. */
static int raw_ping(struct bench *b, unsigned i)
{
    uint64_t seq = ++b->seq, reply = 0;

    (void)i;
    if (raw_rw(b, 1, &seq, b->pp + offsetof(struct pingpong, request),
               sizeof(seq)) < 0) {
        return -1;
    }
    for (unsigned polls = 0; polls < PONG_POLLS_MAX; polls++) {
        if (raw_rw(b, 0, &reply, b->pp + offsetof(struct pingpong, reply),
                   sizeof(reply)) < 0) {
            return -1;
        }
        if (reply == seq) {
            return 0;
        }
    }
    fprintf(stderr, "hmaf-bench: raw ping-pong: no echo from the host\n");
    return -1;
}

static int pong_enter(struct bench *b)
{
    return child_command(b->host, CMD_PONG_START);
}

static int pong_leave(struct bench *b)
{
    return child_command(b->host, CMD_PONG_STOP);
}

/* ------------------------------------------------------------------ */
/* Measuring                                                           */
/* ------------------------------------------------------------------ */

typedef int (*op_fn)(struct bench *b, unsigned i);

/* Whose waits for a cpu spoil a round (see time_side). */
enum watch {
    WATCH_DPU,  /* one-sided transfers run in our context only */
    WATCH_HOST, /* a mailbox round trip also needs the agent's thread */
    WATCH_PONG, /* a raw one needs the pong thread; the agent then only
                   wakes now and then, and its waits slow nobody down */
};

/* One way of doing a metric's operation; enter and leave are untimed. */
struct side {
    op_fn op;
    int (*enter)(struct bench *b);
    int (*leave)(struct bench *b);
    enum watch watch;
};

enum target_kind { TARGET_NONE, TARGET_AT_MOST, TARGET_AT_LEAST };

struct metric {
    const char *name;
    size_t bytes;   /* per op: the figure is GB/s; 0: latency in us */
    unsigned iters; /* timed ops per round and side */
    struct side hmaf, raw;
    enum target_kind kind;
    double target; /* bound on the ratio */
};

struct result {
    const struct metric *m;
    double hmaf, raw; /* medians over the rounds, in us or GB/s */
    double ratio;     /* median of the rounds' hmaf / raw: HMAF is slower
                         above 1 in us, below 1 in GB/s */
    double lo, hi;    /* 25th and 75th percentiles of those */
};

static int run_ops(struct bench *b, op_fn op, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int ret = op(b, i);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Nanoseconds a thread has waited on a runqueue (its schedstat file);
 * 0 if the kernel does not say. */
static uint64_t run_delay_of(const char *path)
{
    unsigned long long run = 0, wait = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%llu %llu", &run, &wait) != 2) {
        wait = 0;
    }
    fclose(f);
    return wait;
}

/* Is host thread tid (a /proc/PID/task entry) one to watch? */
static int watched(pid_t pid, const char *tid, enum watch watch)
{
    char path[64], name[32] = "";
    FILE *f;

    if (watch != WATCH_PONG) {
        return 1; /* the pong thread is not running then */
    }
    snprintf(path, sizeof(path), "/proc/%d/task/%.16s/comm", (int)pid, tid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    if (fgets(name, sizeof(name), f) == NULL) {
        name[0] = '\0';
    }
    fclose(f);
    return strncmp(name, PONG_NAME, strlen(PONG_NAME)) == 0;
}

/* Runqueue wait of the watched host threads. */
static uint64_t host_run_delay(pid_t pid, enum watch watch)
{
    char path[64];
    struct dirent *e;
    uint64_t sum = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' && watched(pid, e->d_name, watch)) {
            snprintf(path, sizeof(path), "/proc/%d/task/%.16s/schedstat",
                     (int)pid, e->d_name);
            sum += run_delay_of(path);
        }
    }
    closedir(d);
    return sum;
}

/* Runqueue wait of the threads a side depends on. */
static uint64_t run_delay(const struct bench *b, const struct side *sd)
{
    uint64_t ours = run_delay_of("/proc/thread-self/schedstat");

    return sd->watch == WATCH_DPU ? ours
                                  : ours + host_run_delay(b->pid, sd->watch);
}

/* Per-op time in ns of one round; *disturbed_out set if other tasks kept
 * our threads off their cpus meanwhile. The untimed warm-up wakes the
 * agent (asleep after 200 us idle) or lets the pong thread get going. */
static int time_side(struct bench *b, const struct metric *m,
                     const struct side *sd, double *ns_out, int *disturbed_out)
{
    uint64_t t0, t1, delay;
    int ret = sd->enter != NULL ? sd->enter(b) : 0;

    if (ret == 0) {
        ret = run_ops(b, sd->op, m->iters / 8 + 1);
    }
    delay = run_delay(b, sd);
    t0 = now_ns();
    if (ret == 0) {
        ret = run_ops(b, sd->op, m->iters);
    }
    t1 = now_ns();
    delay = run_delay(b, sd) - delay;
    *disturbed_out |= delay * DISTURBED > t1 - t0;
    if (sd->leave != NULL) {
        int left = sd->leave(b);
        ret = ret < 0 ? ret : left;
    }
    *ns_out = (double)(t1 - t0) / m->iters;
    return ret;
}

/* Round k: both sides, the order flipping every round so that drift
 * hits both alike; run again while other tasks disturbed it. Returns 1
 * if it was still disturbed on the last try. */
static int time_round(struct bench *b, const struct metric *m, unsigned k,
                      double *h, double *r)
{
    const struct side *first = k % 2 == 0 ? &m->hmaf : &m->raw;
    const struct side *second = k % 2 == 0 ? &m->raw : &m->hmaf;
    double *first_ns = k % 2 == 0 ? h : r, *second_ns = k % 2 == 0 ? r : h;

    for (unsigned tries = 0;; tries++) {
        int disturbed = 0;
        int ret = time_side(b, m, first, first_ns, &disturbed);
        if (ret == 0) {
            ret = time_side(b, m, second, second_ns, &disturbed);
        }
        if (ret < 0 || !disturbed) {
            return ret;
        }
        if (tries == RERUN_MAX) {
            b->kept++;
            return 1;
        }
        b->reruns++;
    }
}

/* What gets reported for one round: us per op, or GB/s. */
static double figure(const struct metric *m, double ns_per_op)
{
    return m->bytes > 0 ? (double)m->bytes / ns_per_op : ns_per_op / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Sorts v; the q-quantile with linear interpolation. */
static double quantile(double *v, unsigned n, double q)
{
    double pos = q * (n - 1);
    unsigned i = (unsigned)pos;

    qsort(v, n, sizeof(*v), cmp_double);
    return i + 1 < n ? v[i] + (pos - i) * (v[i + 1] - v[i]) : v[i];
}

static void summarize(const struct metric *m, double *h, double *r,
                      unsigned rounds, struct result *res)
{
    for (unsigned k = 0; k < rounds; k++) {
        h[k] = figure(m, h[k]);
        r[k] = figure(m, r[k]);
        /* Round k's own ratio, stored after r's figures. */
        r[rounds + k] = h[k] / r[k];
    }
    res->m = m;
    res->ratio = quantile(r + rounds, rounds, 0.5);
    res->lo = quantile(r + rounds, rounds, 0.25);
    res->hi = quantile(r + rounds, rounds, 0.75);
    res->hmaf = quantile(h, rounds, 0.5);
    res->raw = quantile(r, rounds, 0.5);
}

/* One untimed round of both sides: the first round after a change of
 * metric (caches, the agent's sleep, the host's fresh pages) runs slow. */
static int settle(struct bench *b, const struct metric *m)
{
    double ns;
    int disturbed = 0;
    int ret = time_side(b, m, &m->hmaf, &ns, &disturbed);

    return ret < 0 ? ret : time_side(b, m, &m->raw, &ns, &disturbed);
}

/* Alternate HMAF and raw rounds. The figures are the medians of each
 * side's rounds; the ratio is the median of the rounds' own ratios, as
 * slow drift (neighbours' memory traffic, clock changes) moves both sides
 * of a round alike. */
static int measure(struct bench *b, const struct metric *m, unsigned rounds,
                   struct result *res)
{
    double *h = calloc(rounds, sizeof(*h));
    double *r = calloc(2 * (size_t)rounds, sizeof(*r));
    int ret = h == NULL || r == NULL ? -1 : settle(b, m);

    for (unsigned k = 0; ret == 0 && k < rounds; k++) {
        int got = time_round(b, m, k, &h[k], &r[k]);
        ret = got < 0 ? got : 0;
        if (ret == 0 && b->verbose) {
            fprintf(stderr, "%-18s round %2u: hmaf %9.3f raw %9.3f %s%s\n",
                    m->name, k, figure(m, h[k]), figure(m, r[k]),
                    m->bytes > 0 ? "GB/s" : "us", got ? " (disturbed)" : "");
        }
    }
    if (ret == 0) {
        summarize(m, h, r, rounds, res);
    }
    free(h);
    free(r);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Reporting                                                           */
/* ------------------------------------------------------------------ */

static const char *verdict(const struct result *res)
{
    switch (res->m->kind) {
    case TARGET_AT_MOST:
        return res->ratio <= res->m->target ? "PASS" : "MISS";
    case TARGET_AT_LEAST:
        return res->ratio >= res->m->target ? "PASS" : "MISS";
    default:
        return "-";
    }
}

/* "<= 1.10"; without a target, none ("-" in the table, "" in the CSV). */
static void target_text(const struct metric *m, const char *none, char *buf,
                        size_t cap)
{
    if (m->kind == TARGET_NONE) {
        snprintf(buf, cap, "%s", none);
    } else {
        snprintf(buf, cap, "%s %.2f",
                 m->kind == TARGET_AT_MOST ? "<=" : ">=", m->target);
    }
}

static const char *unit(const struct metric *m)
{
    return m->bytes > 0 ? "GB/s" : "us";
}

static void print_table(const struct result *res, size_t n)
{
    char target[16];

    printf("%-17s %10s %-4s %10s %-4s %6s  %-13s  %-8s %s\n", "metric", "HMAF",
           "", "raw", "", "ratio", "(p25-p75)", "target", "result");
    for (size_t i = 0; i < n; i++) {
        const struct result *x = &res[i];
        target_text(x->m, "-", target, sizeof(target));
        printf("%-17s %10.3f %-4s %10.3f %-4s %6.3f  (%5.3f-%5.3f)  %-8s %s\n",
               x->m->name, x->hmaf, unit(x->m), x->raw, unit(x->m), x->ratio,
               x->lo, x->hi, target, verdict(x));
    }
}

/* Say when rounds disagreed: such figures describe the neighbours more
 * than HMAF. */
static void print_notes(const struct bench *b, const struct result *res,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (res[i].hi - res[i].lo > NOISY_SPREAD) {
            printf("note: %s: rounds disagree (ratios %.3f-%.3f): the "
                   "machine was busy, run again\n",
                   res[i].m->name, res[i].lo, res[i].hi);
        }
    }
    if (b->reruns > 0) {
        printf("note: %u round(s) run again: other tasks kept our threads "
               "waiting for a cpu; %u still were on the last try\n",
               b->reruns, b->kept);
    }
}

static int write_csv(FILE *f, const char *path, const struct result *res,
                     size_t n)
{
    char target[16];

    fprintf(f, "metric,unit,hmaf,raw,ratio,ratio_p25,ratio_p75,target,"
               "result\n");
    for (size_t i = 0; i < n; i++) {
        const struct result *x = &res[i];
        target_text(x->m, "", target, sizeof(target));
        fprintf(f, "%s,%s,%.4f,%.4f,%.4f,%.4f,%.4f,%s,%s\n", x->m->name,
                unit(x->m), x->hmaf, x->raw, x->ratio, x->lo, x->hi, target,
                verdict(x));
    }
    if (fflush(f) != 0 || ferror(f)) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void print_counters(hmaf_session_t *s)
{
    hmaf_session_stats_t st;

    if (hmaf_session_stats(s, &st) != 0) {
        return;
    }
    printf(
        "session: ops %llu, bytes read %llu, bytes written %llu, "
        "cache hits %llu, misses %llu,\n"
        "         registrations %llu, evictions %llu, "
        "mailbox round trips %llu, revocations %llu\n",
        (unsigned long long)st.ops, (unsigned long long)st.bytes_read,
        (unsigned long long)st.bytes_written, (unsigned long long)st.cache_hits,
        (unsigned long long)st.cache_misses,
        (unsigned long long)st.registrations, (unsigned long long)st.evictions,
        (unsigned long long)st.mailbox_round_trips,
        (unsigned long long)st.revocations);
}

/* ------------------------------------------------------------------ */
/* Setup and main                                                      */
/* ------------------------------------------------------------------ */

struct options {
    unsigned rounds;
    int quick;
    int pin;
    int verbose;
    const char *csv_path;
    FILE *csv; /* opened up front: a bad path fails before the run */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: hmaf-bench [--rounds N] [--quick] [--csv FILE] "
            "[--no-pin] [--verbose]\n"
            "  --rounds N  HMAF and raw rounds per metric (default %d, "
            "%d with --quick)\n"
            "  --quick     fewer iterations: a smoke test\n"
            "  --csv FILE  also write the result rows to FILE\n"
            "  --no-pin    leave CPU placement to the scheduler\n"
            "  --verbose   print every round's figures on stderr\n"
            "Exit status: 0 when the measurements ran, even if a target "
            "was missed.\n",
            ROUNDS_DEFAULT, ROUNDS_QUICK);
}

static int parse_rounds(const char *arg, unsigned *rounds_out)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);

    if (*arg == '\0' || *end != '\0' || v == 0 || v > ROUNDS_MAX) {
        fprintf(stderr, "hmaf-bench: --rounds wants 1..%d\n", ROUNDS_MAX);
        return -1;
    }
    *rounds_out = (unsigned)v;
    return 0;
}

/* 0; 1 after --help; -1 on a bad command line. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"rounds", required_argument, NULL, 'r'},
        {"quick", no_argument, NULL, 'q'},
        {"csv", required_argument, NULL, 'c'},
        {"no-pin", no_argument, NULL, 'P'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    *o = (struct options){.pin = 1};
    while ((c = getopt_long(argc, argv, "r:qc:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            if (parse_rounds(optarg, &o->rounds) != 0) {
                return -1;
            }
            break;
        case 'q':
            o->quick = 1;
            break;
        case 'c':
            o->csv_path = optarg;
            break;
        case 'P':
            o->pin = 0;
            break;
        case 'v':
            o->verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    if (o->rounds == 0) {
        o->rounds = o->quick ? ROUNDS_QUICK : ROUNDS_DEFAULT;
    }
    return 0;
}

/* The dpu side reads what the host wrote, through HMAF and raw alike. */
static int verify_pattern(struct bench *b)
{
    uint64_t want[SMALL_LEN / sizeof(uint64_t)];

    for (size_t i = 0; i < SMALL_LEN / sizeof(uint64_t); i++) {
        want[i] = pattern_word(SMALL_OFF / sizeof(uint64_t) + i);
    }
    if (hmaf_read_small(b, 0) < 0 || memcmp(b->small, want, SMALL_LEN) != 0 ||
        raw_read_small(b, 0) < 0 || memcmp(b->small, want, SMALL_LEN) != 0) {
        fprintf(stderr, "hmaf-bench: \"buf\" does not hold the pattern\n");
        return -1;
    }
    return 0;
}

static int bench_connect(struct bench *b)
{
    hmaf_session_params_t p;
    size_t len = 0;
    int ret;

    hmaf_session_params_init(&p);
    p.address = b->host->address;
    p.token = BENCH_TOKEN;
    p.engine = "cma";
    ret = hmaf_check("hmaf_session_create", hmaf_session_create(&p, &b->s));
    if (ret == 0) {
        ret = hmaf_check("lookup \"buf\"",
                         hmaf_session_lookup(b->s, "buf", &b->buf, &len));
    }
    if (ret == 0 && len != BUF_LEN) {
        fprintf(stderr, "hmaf-bench: root \"buf\" is %zu bytes\n", len);
        ret = -1;
    }
    if (ret == 0) {
        ret = hmaf_check("lookup \"pingpong\"",
                         hmaf_session_lookup(b->s, "pingpong", &b->pp, NULL));
    }
    return ret;
}

static int bench_init(struct bench *b, struct child *host, int verbose)
{
    memset(b, 0, sizeof(*b));
    b->host = host;
    b->pid = host->pid;
    b->verbose = verbose;
    b->small = aligned_alloc(64, SMALL_LEN);
    b->big = aligned_alloc(4096, BIG_LEN);
    if (b->small == NULL || b->big == NULL) {
        fprintf(stderr, "hmaf-bench: out of memory\n");
        return -1;
    }
    memset(b->big, 0, BIG_LEN); /* fault the pages in now, not when timed */
    if (bench_connect(b) < 0) {
        return -1;
    }
    return verify_pattern(b);
}

static void bench_fini(struct bench *b)
{
    hmaf_session_destroy(b->s);
    free(b->small);
    free(b->big);
}

/* Iteration counts aim at ~6 ms per round and side, ~2 s in all; --quick
 * runs a tenth of them. */
static const struct metric metrics[] = {
    {.name = "read 64 B (hit)",
     .iters = 10000,
     .hmaf = {.op = hmaf_read_small},
     .raw = {.op = raw_read_small},
     .kind = TARGET_AT_MOST,
     .target = 1.10},
    {.name = "read 1 MiB",
     .bytes = BIG_LEN,
     .iters = 64,
     .hmaf = {.op = hmaf_read_big},
     .raw = {.op = raw_read_big},
     .kind = TARGET_AT_LEAST,
     .target = 0.95},
    {.name = "ping round trip",
     .iters = 5000,
     .hmaf = {.op = hmaf_ping, .watch = WATCH_HOST},
     .raw = {.op = raw_ping,
             .enter = pong_enter,
             .leave = pong_leave,
             .watch = WATCH_PONG},
     .kind = TARGET_AT_MOST,
     .target = 1.30},
    {.name = "write 64 B (hit)",
     .iters = 10000,
     .hmaf = {.op = hmaf_write_small},
     .raw = {.op = raw_write_small}},
    {.name = "write 1 MiB",
     .bytes = BIG_LEN,
     .iters = 64,
     .hmaf = {.op = hmaf_write_big},
     .raw = {.op = raw_write_big}},
};

#define NMETRICS (sizeof(metrics) / sizeof(metrics[0]))

static void print_header(const struct bench *b, const struct options *o,
                         int dpu_cpu)
{
    double load[1] = {0};
    char pin[64] = "not pinned";

    if (dpu_cpu != NO_CPU) {
        snprintf(pin, sizeof(pin), "dpu side on cpu %d, host on cpu %d",
                 dpu_cpu, b->host->cpu);
    }
    getloadavg(load, 1);
    printf("hmaf-bench: engine %s, host pid %d, %s, load %.2f\n"
           "%u rounds per side%s, alternating; HMAF and raw: medians of the "
           "rounds;\nratio: median of the per-round HMAF/raw ratios, "
           "(p25-p75) their spread\n",
           hmaf_session_engine(b->s), (int)b->pid, pin, load[0], o->rounds,
           o->quick ? " (quick)" : "");
}

static int run_all(struct bench *b, const struct options *o, int dpu_cpu)
{
    struct metric ms[NMETRICS];
    struct result res[NMETRICS];

    print_header(b, o, dpu_cpu);
    for (size_t i = 0; i < NMETRICS; i++) {
        ms[i] = metrics[i];
        ms[i].iters = o->quick ? ms[i].iters / 10 : ms[i].iters;
        if (measure(b, &ms[i], o->rounds, &res[i]) < 0) {
            fprintf(stderr, "hmaf-bench: %s: failed\n", ms[i].name);
            return -1;
        }
    }
    print_table(res, NMETRICS);
    print_notes(b, res, NMETRICS);
    print_counters(b->s);
    return o->csv != NULL ? write_csv(o->csv, o->csv_path, res, NMETRICS) : 0;
}

/* Start the host, pinned apart from us when asked and possible. */
static int start_host(struct child *host, int pin, int *dpu_cpu_out)
{
    *dpu_cpu_out = NO_CPU;
    host->cpu = NO_CPU;
    if (pin && pick_cpus(dpu_cpu_out, &host->cpu) != 0) {
        fprintf(stderr, "hmaf-bench: fewer than 2 usable cpus: not pinned\n");
        *dpu_cpu_out = NO_CPU;
        host->cpu = NO_CPU;
    }
    if (child_start(host) != 0) {
        return -1;
    }
    if (pin_to(*dpu_cpu_out) != 0) {
        perror("hmaf-bench: sched_setaffinity");
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    struct child host;
    struct bench b;
    int dpu_cpu, ret = parse_options(argc, argv, &o);

    if (ret != 0) {
        return ret > 0 ? 0 : 2;
    }
    if (o.csv_path != NULL && (o.csv = fopen(o.csv_path, "w")) == NULL) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", o.csv_path, strerror(errno));
        return 1;
    }
    /* A dead host must show up as an error, not kill us on a write. */
    signal(SIGPIPE, SIG_IGN);
    ret = start_host(&host, o.pin, &dpu_cpu);
    if (ret == 0) {
        ret = bench_init(&b, &host, o.verbose);
        if (ret == 0) {
            ret = run_all(&b, &o, dpu_cpu);
        }
        bench_fini(&b);
        if (child_stop(&host) != 0 && ret == 0) {
            fprintf(stderr, "hmaf-bench: the host process failed\n");
            ret = -1;
        }
    }
    if (o.csv != NULL && fclose(o.csv) != 0 && ret == 0) {
        perror("hmaf-bench: csv");
        ret = -1;
    }
    return ret == 0 ? 0 : 1;
}
