/*
 * What the data path adds to the system call it makes, in instructions:
 * run under callgrind (tools/callgrind/hotpath.sh), each run_* function's
 * inclusive cost divided by its calls is what one call costs in user
 * space (callgrind does not count the kernel). Public API only.
 *
 * A forked host exposes 1 MiB; the dpu side (the parent) then makes the
 * same transfers through HMAF and through raw process_vm_readv/writev:
 *
 *   run_hmaf_read / run_raw_read      N reads of 64 B at one address
 *   run_hmaf_write / run_raw_write    N writes of 64 B at one address
 *   run_hmaf_posted / run_raw_vec     M times: 256 reads of 64 B at random
 *                                     addresses posted, then flushed /
 *                                     one process_vm_readv carrying them
 *   run_hmaf_readv                    M times hmaf_session_readv of them
 *
 *   hotpath [N [M]]        (defaults 10000 and 100)
 *
 * With --time ROUNDS it times the same loops instead, alternating HMAF and
 * raw in each round (100 single transfers or 4 batches a side), and
 * prints the ratio of the fastest rounds' per-call times and the median
 * of the per-round ratios: on a busy machine the fastest round is the one
 * the scheduler left alone.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hmaf/hmaf.h>

#define HOST_LEN (1u << 20)
#define SEGS     256
#define SEG_LEN  64
#define TOKEN    "hotpath"

struct host_info {
    uint64_t addr;
};

static void die(const char *what, int ret)
{
    fprintf(stderr, "hotpath: %s: %s\n", what, hmaf_err_name(ret));
    exit(1);
}

/* The host: expose a buffer, say where it is, serve until the parent
 * closes the pipe. A long revocation wait gives a long lease, so no look
 * at the epoch falls inside the counted loops. */
static void run_host(const char *address, int info_fd, int stop_fd)
{
    static unsigned char buf[HOST_LEN] __attribute__((aligned(4096)));
    hmaf_agent_params_t p;
    hmaf_agent_t *agent;
    struct host_info info = {.addr = (uint64_t)(uintptr_t)buf};
    char c;
    int ret;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    memset(buf, 0x5a, sizeof(buf));
    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.revoke_wait_ms = 600000;
    ret = hmaf_agent_create(&p, &agent);
    if (ret == 0) {
        ret =
            hmaf_agent_expose(agent, buf, sizeof(buf), HMAF_ACCESS_READ_WRITE);
    }
    if (ret < 0) {
        die("host", ret);
    }
    if (write(info_fd, &info, sizeof(info)) != sizeof(info)) {
        exit(1);
    }
    while (read(stop_fd, &c, 1) > 0) {
    }
    hmaf_agent_destroy(agent);
    exit(0);
}

__attribute__((noinline)) void run_hmaf_read(hmaf_session_t *s, void *buf,
                                             uint64_t addr, long n)
{
    for (long i = 0; i < n; i++) {
        if (hmaf_session_read(s, buf, addr, SEG_LEN) != 0) {
            die("read", -1);
        }
    }
}

__attribute__((noinline)) void run_raw_read(pid_t pid, void *buf, uint64_t addr,
                                            long n)
{
    for (long i = 0; i < n; i++) {
        struct iovec l = {buf, SEG_LEN};
        struct iovec r = {(void *)(uintptr_t)addr, SEG_LEN};
        if (process_vm_readv(pid, &l, 1, &r, 1, 0) != SEG_LEN) {
            die("process_vm_readv", -1);
        }
    }
}

__attribute__((noinline)) void run_hmaf_write(hmaf_session_t *s, void *buf,
                                              uint64_t addr, long n)
{
    for (long i = 0; i < n; i++) {
        if (hmaf_session_write(s, addr, buf, SEG_LEN) != 0) {
            die("write", -1);
        }
    }
}

__attribute__((noinline)) void run_raw_write(pid_t pid, void *buf,
                                             uint64_t addr, long n)
{
    for (long i = 0; i < n; i++) {
        struct iovec l = {buf, SEG_LEN};
        struct iovec r = {(void *)(uintptr_t)addr, SEG_LEN};
        if (process_vm_writev(pid, &l, 1, &r, 1, 0) != SEG_LEN) {
            die("process_vm_writev", -1);
        }
    }
}

__attribute__((noinline)) void run_hmaf_posted(hmaf_session_t *s,
                                               const hmaf_seg_t *segs, long m)
{
    for (long k = 0; k < m; k++) {
        for (int i = 0; i < SEGS; i++) {
            if (hmaf_session_post_read(s, segs[i].local, segs[i].remote_addr,
                                       segs[i].len, NULL) != 0) {
                die("post_read", -1);
            }
        }
        if (hmaf_session_flush(s) != 0) {
            die("flush", -1);
        }
    }
}

__attribute__((noinline)) void run_hmaf_readv(hmaf_session_t *s,
                                              const hmaf_seg_t *segs, long m)
{
    for (long k = 0; k < m; k++) {
        if (hmaf_session_readv(s, segs, SEGS) != 0) {
            die("readv", -1);
        }
    }
}

__attribute__((noinline)) void run_raw_vec(pid_t pid, const struct iovec *l,
                                           const struct iovec *r, long m)
{
    for (long k = 0; k < m; k++) {
        if (process_vm_readv(pid, l, SEGS, r, SEGS, 0) != SEGS * SEG_LEN) {
            die("process_vm_readv", -1);
        }
    }
}

static hmaf_session_t *connect_host(const char *address)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    int ret;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.revoke_check_us = 600000000; /* 10 min: the host's lease decides */
    ret = hmaf_session_create(&p, &s);
    if (ret < 0) {
        die("session", ret);
    }
    return s;
}

/* 256 distinct random 64 B slots of the host's buffer, in the same
 * local/remote layout for HMAF and raw. */
static void random_segs(uint64_t base, unsigned char *local, hmaf_seg_t *segs,
                        struct iovec *l, struct iovec *r)
{
    static unsigned char used[HOST_LEN / SEG_LEN];
    uint64_t x = 0x9e3779b97f4a7c15ull;

    for (int i = 0; i < SEGS; i++) {
        uint64_t slot;
        do {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            slot = x % (HOST_LEN / SEG_LEN);
        } while (used[slot]);
        used[slot] = 1;
        segs[i] =
            (hmaf_seg_t){local + i * SEG_LEN, base + slot * SEG_LEN, SEG_LEN};
        l[i] = (struct iovec){segs[i].local, SEG_LEN};
        r[i] = (struct iovec){(void *)(uintptr_t)segs[i].remote_addr, SEG_LEN};
    }
}

static void run_dpu(hmaf_session_t *s, pid_t host, uint64_t base, long n,
                    long m)
{
    static unsigned char local[SEGS * SEG_LEN];
    static hmaf_seg_t segs[SEGS];
    static struct iovec l[SEGS], r[SEGS];

    random_segs(base, local, segs, l, r);
    /* Warm up: the region registered, the look at the epoch done. */
    run_hmaf_read(s, local, base, 2);
    run_hmaf_posted(s, segs, 1);

    run_hmaf_read(s, local, base, n);
    run_raw_read(host, local, base, n);
    run_hmaf_write(s, local, base, n);
    run_raw_write(host, local, base, n);
    run_hmaf_posted(s, segs, m);
    run_hmaf_readv(s, segs, m);
    run_raw_vec(host, l, r, m);
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* One figure: fastest rounds and median round, HMAF against raw. */
struct timing {
    const char *what;
    double best_hmaf, best_raw; /* ns per call */
    double *ratios;
    long rounds;
};

static void timing_add(struct timing *t, long round, double hmaf, double raw)
{
    t->best_hmaf = round == 0 || hmaf < t->best_hmaf ? hmaf : t->best_hmaf;
    t->best_raw = round == 0 || raw < t->best_raw ? raw : t->best_raw;
    t->ratios[round] = hmaf / raw;
}

static void timing_print(struct timing *t)
{
    qsort(t->ratios, (size_t)t->rounds, sizeof(double), by_value);
    printf("%-28s %10.1f %10.1f %8.3f %8.3f\n", t->what, t->best_hmaf,
           t->best_raw, t->best_hmaf / t->best_raw, t->ratios[t->rounds / 2]);
}

static void time_dpu(hmaf_session_t *s, pid_t host, uint64_t base, long rounds)
{
    static unsigned char local[SEGS * SEG_LEN];
    static hmaf_seg_t segs[SEGS];
    static struct iovec l[SEGS], r[SEGS];
    double *ratios = calloc((size_t)rounds * 3, sizeof(double));
    struct timing read = {"64 B read", 0, 0, ratios, rounds};
    struct timing write = {"64 B write", 0, 0, ratios + rounds, rounds};
    struct timing posted = {"256 x 64 B posted + flush", 0, 0,
                            ratios + 2 * rounds, rounds};

    if (ratios == NULL) {
        exit(1);
    }
    random_segs(base, local, segs, l, r);
    run_hmaf_read(s, local, base, 2);
    run_hmaf_posted(s, segs, 1);
    for (long k = 0; k < rounds; k++) {
        double t0 = now_ns(), t1, t2, t3, t4, t5, t6;
        run_hmaf_read(s, local, base, 100);
        t1 = now_ns();
        run_raw_read(host, local, base, 100);
        t2 = now_ns();
        run_hmaf_write(s, local, base, 100);
        t3 = now_ns();
        run_raw_write(host, local, base, 100);
        t4 = now_ns();
        run_hmaf_posted(s, segs, 4);
        t5 = now_ns();
        run_raw_vec(host, l, r, 4);
        t6 = now_ns();
        timing_add(&read, k, (t1 - t0) / 100, (t2 - t1) / 100);
        timing_add(&write, k, (t3 - t2) / 100, (t4 - t3) / 100);
        timing_add(&posted, k, (t5 - t4) / 4, (t6 - t5) / 4);
    }
    printf("%-28s %10s %10s %8s %8s\n", "ns per call", "hmaf", "raw", "fastest",
           "median");
    timing_print(&read);
    timing_print(&write);
    timing_print(&posted);
    free(ratios);
}

/* The host runs as a program of its own, so that callgrind (without
 * --trace-children) counts the dpu side only, and the host runs at full
 * speed. */
static void exec_host(const char *self, const char *address, int info_fd,
                      int stop_fd)
{
    char info[16], stop[16];

    snprintf(info, sizeof(info), "%d", info_fd);
    snprintf(stop, sizeof(stop), "%d", stop_fd);
    execl(self, self, "--host", address, info, stop, (char *)NULL);
    perror("hotpath: exec");
    _exit(1);
}

static int run(long n, long m, long rounds, const char *self)
{
    char address[64];
    struct host_info info;
    int info_pipe[2], stop_pipe[2];
    hmaf_session_t *s;
    pid_t pid;

    snprintf(address, sizeof(address), "unix:/tmp/hmaf-hotpath-%d.sock",
             (int)getpid());
    if (pipe(info_pipe) != 0 || pipe(stop_pipe) != 0) {
        return 1;
    }
    pid = fork();
    if (pid == 0) {
        close(info_pipe[0]);
        close(stop_pipe[1]);
        exec_host(self, address, info_pipe[1], stop_pipe[0]);
    }
    close(info_pipe[1]);
    close(stop_pipe[0]);
    if (pid < 0 || read(info_pipe[0], &info, sizeof(info)) != sizeof(info)) {
        fprintf(stderr, "hotpath: host did not start\n");
        return 1;
    }
    s = connect_host(address);
    if (rounds > 0) {
        time_dpu(s, pid, info.addr, rounds);
    } else {
        run_dpu(s, pid, info.addr, n, m);
    }
    hmaf_session_destroy(s);
    close(stop_pipe[1]);
    waitpid(pid, NULL, 0);
    if (rounds == 0) {
        printf("hotpath: %ld single transfers, %ld batches of %d\n", n, m,
               SEGS);
    }
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000;
    long m = argc > 2 ? atol(argv[2]) : 100;

    if (argc == 5 && strcmp(argv[1], "--host") == 0) {
        run_host(argv[2], atoi(argv[3]), atoi(argv[4]));
    }
    if (argc == 3 && strcmp(argv[1], "--time") == 0) {
        long rounds = atol(argv[2]);
        return rounds > 0 ? run(1, 1, rounds, argv[0]) : 2;
    }
    if (n <= 0 || m <= 0) {
        fprintf(stderr, "usage: hotpath [N [M]] | hotpath --time ROUNDS\n");
        return 2;
    }
    return run(n, m, 0, argv[0]);
}
