/*
 * hmaf-notify-lat: the latency of one notification each way against a
 * mailbox round trip, on one machine (both clocks are the same
 * CLOCK_MONOTONIC, so a notification carries its send time as its value).
 *
 *   ping       hmaf_session_ping(): one mailbox round trip; "idle" with
 *              2 ms between pings, so the agent's thread is asleep when
 *              the request comes (the fair base for a sleeping waiter)
 *   dpu->host  hmaf_session_notify() called -> the agent's callback runs
 *   host->dpu  hmaf_agent_ring() called -> hmaf_session_ring_wait()
 *              returns; "waiting" with the dpu side already in
 *              ring_wait (it polls the header during its spin), "asleep"
 *              with the ring 2 ms after the wait began (it sleeps on the
 *              ring fd and the channel, woken by the host's nudge),
 *              "polling" the same with the dpu side calling
 *              ring_wait(timeout 0) until a ring is there
 *
 * Usage: hmaf-notify-lat [rounds] (default 20000; idle and asleep:
 * rounds / 20).
 * The host is a forked child (a parent may read its child's memory under
 * Yama); the engine is $HMAF_ENGINE or cma. Medians and 90th percentiles.
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/hmaf.h>
#include "../examples/help.h"

#define TOKEN "notify-lat"

struct shared {
    _Atomic int up;             /* the host listens (-1: failed) */
    _Atomic uint64_t cb_seen;   /* callbacks so far */
    _Atomic uint64_t ready;     /* the dpu side waits for ring number */
    _Atomic int stop;
    uint64_t session_id;
    unsigned gap_us;            /* the host waits this long before a ring */
    uint64_t d2h[1];            /* rounds of them */
};

static struct shared *sh;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_notify(void *arg, const hmaf_notification_t *n)
{
    uint64_t t = now_ns();
    uint64_t i = atomic_load(&sh->cb_seen);

    (void)arg;
    sh->d2h[i] = t - n->value;
    atomic_store_explicit(&sh->cb_seen, i + 1, memory_order_release);
}

/* The host: rings whenever the dpu side says it waits for the next. */
static void host_main(const char *address)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    uint64_t rung = 0;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    if (hmaf_agent_create(&p, &a) != 0 ||
        hmaf_agent_on_notify(a, on_notify, NULL) != 0) {
        atomic_store(&sh->up, -1);
        _exit(1);
    }
    atomic_store(&sh->up, 1);
    while (!atomic_load(&sh->stop)) {
        if (atomic_load_explicit(&sh->ready, memory_order_acquire) == rung) {
            sched_yield();
            continue;
        }
        rung++;
        if (sh->gap_us > 0) {
            usleep(sh->gap_us);
        }
        (void)hmaf_agent_ring(a, sh->session_id, now_ns());
    }
    hmaf_agent_destroy(a);
    _exit(0);
}

static int by_value(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : a > b;
}

static void report(const char *what, uint64_t *v, size_t n, double base)
{
    double med;

    qsort(v, n, sizeof(*v), by_value);
    med = (double)v[n / 2] / 1000.0;
    printf("%-22s median %7.2f us  p90 %7.2f us", what, med,
           (double)v[n * 9 / 10] / 1000.0);
    if (base > 0) {
        printf("  (%.2fx the round trip)", med / base);
    }
    printf("\n");
}

static double measure_ping(hmaf_session_t *s, uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        if (hmaf_session_ping(s) != 0) {
            exit(1);
        }
        v[i] = now_ns() - t0;
    }
    report("ping (round trip)", v, n, 0);
    return (double)v[n / 2] / 1000.0;
}

/* A round trip after 2 ms of quiet: the agent's thread went to sleep. */
static double measure_ping_idle(hmaf_session_t *s, uint64_t *v, size_t n,
                                double base)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t t0;
        usleep(2000);
        t0 = now_ns();
        if (hmaf_session_ping(s) != 0) {
            exit(1);
        }
        v[i] = now_ns() - t0;
    }
    report("ping idle (round trip)", v, n, base);
    return (double)v[n / 2] / 1000.0;
}

static void measure_d2h(hmaf_session_t *s, size_t n, double base)
{
    for (size_t i = 0; i < n; i++) {
        if (hmaf_session_notify(s, 1, now_ns()) != 0) {
            exit(1);
        }
        while (atomic_load_explicit(&sh->cb_seen, memory_order_acquire) <=
               i) {
            sched_yield();
        }
    }
    report("dpu->host notify", sh->d2h, n, base);
}

/* One ring taken: by one wait, or (busy) by looking until there is one. */
static int take_ring(hmaf_session_t *s, int busy, uint64_t *value)
{
    uint64_t count;
    int ret;

    if (!busy) {
        return hmaf_session_ring_wait(s, 5000, &count, value);
    }
    while ((ret = hmaf_session_ring_wait(s, 0, &count, value)) ==
           HMAF_ETIMEDOUT) {
    }
    return ret;
}

static void measure_h2d(hmaf_session_t *s, uint64_t *v, size_t n,
                        unsigned gap_us, int busy, const char *what,
                        double base)
{
    uint64_t value;

    sh->gap_us = gap_us;
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add_explicit(&sh->ready, 1, memory_order_release);
        if (take_ring(s, busy, &value) != 0) {
            exit(1);
        }
        v[i] = now_ns() - value;
    }
    report(what, v, n, base);
}

static const char usage_text[] =
    "usage: hmaf-notify-lat [ROUNDS]\n"
    "Forks a host and measures how long a notification takes to\n"
    "reach a waiting dpu side, idle and asleep (ROUNDS, default\n"
    "20000, at least 20).\n";

int main(int argc, char **argv)
{
    size_t rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    char dir[] = "/tmp/hmaf-lat-XXXXXX", address[128];
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint64_t *v;
    double base, idle;
    pid_t host;

    if (asked_help(argc, argv) || argc > 2) {
        return print_usage(usage_text, argc <= 2);
    }
    sh = mmap(NULL, sizeof(*sh) + rounds * 8, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    v = calloc(rounds, sizeof(*v));
    if (rounds < 20 || sh == MAP_FAILED || v == NULL ||
        mkdtemp(dir) == NULL) {
        return 2;
    }
    snprintf(address, sizeof(address), "unix:%s/agent.sock", dir);
    host = fork();
    if (host == 0) {
        host_main(address);
    }
    while (atomic_load(&sh->up) == 0) {
        usleep(1000);
    }
    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    if (atomic_load(&sh->up) < 0 || hmaf_session_create(&p, &s) != 0 ||
        hmaf_session_id(s, &sh->session_id) != 0) {
        fprintf(stderr, "hmaf-notify-lat: no session (ptrace denied?)\n");
        kill(host, SIGKILL);
        return 77;
    }
    printf("engine %s, %zu rounds\n", hmaf_session_engine(s), rounds);
    base = measure_ping(s, v, rounds);
    measure_d2h(s, rounds, base);
    measure_h2d(s, v, rounds, 0, 0, "host->dpu waiting", base);
    idle = measure_ping_idle(s, v, rounds / 20, base);
    measure_h2d(s, v, rounds / 20, 2000, 0, "host->dpu asleep", base);
    printf("%-22s %.2fx the idle round trip\n", "host->dpu asleep",
           (double)v[rounds / 20 / 2] / 1000.0 / idle);
    measure_h2d(s, v, rounds / 20, 2000, 1, "host->dpu polling", base);
    hmaf_session_destroy(s);
    atomic_store(&sh->stop, 1);
    waitpid(host, NULL, 0);
    rmdir(dir);
    return 0;
}
