/*
 * Many host regions from one session.
 *
 *   test_regions 100k   100,000 separate exposures, each registered and
 *                       read once, then all read again from the cache
 *                       (cache_max_regions large enough: no eviction)
 *   test_regions cycle  10,000 exposures read in turn, three times, with
 *                       the default cache_max_regions (1024): every read
 *                       misses, the cache evicts in batches and the next
 *                       misses' REGISTERs give the regions back
 *   test_regions idle   a session evicts, then stops missing: its watch
 *                       thread gives the evicted regions back
 *   test_regions idle-stopped  the same with the host stopped: the watch
 *                       thread's DEREGISTER waits unanswered, and
 *                       hmaf_session_destroy() still returns without
 *                       waiting for it (session.h: it never waits on the
 *                       host)
 *
 * The counters of both sides must agree. What the calls cost is printed
 * (per registration early and late, per miss against a ping), never
 * judged. Under a sanitizer, which slows every call, a fifth of the
 * regions (HMAF_TEST_REGIONS sets the count of either case).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifdef UNDER_SANITIZER
#define SCALE_DOWN 5
#else
#define SCALE_DOWN 1
#endif

#define STRIDE     128 /* apart: no two exposures touch */
#define REGION_LEN 64
#define SALT       5

struct many_host {
    size_t n;
    uint8_t *buf;
    hmaf_agent_stats_t *stats; /* shared with the parent */
};

static int many_setup(hmaf_agent_t *agent, void *arg)
{
    struct many_host *h = arg;
    int ret;

    h->buf = malloc(h->n * STRIDE);
    if (h->buf == NULL) {
        return HMAF_ENOMEM;
    }
    target_fill(h->buf, h->n * STRIDE, 0, SALT);
    ret = hmaf_agent_publish(agent, "many", h->buf, h->n * STRIDE);
    for (size_t i = 0; ret == 0 && i < h->n; i++) {
        ret = hmaf_agent_expose(agent, h->buf + i * STRIDE, REGION_LEN,
                                HMAF_ACCESS_READ);
    }
    return ret;
}

/* 'g': the agent's counters into the shared page. */
static int many_command(hmaf_agent_t *agent, int cmd, void *arg)
{
    struct many_host *h = arg;

    return cmd == 'g' && hmaf_agent_stats(agent, h->stats) == 0;
}

static struct many_host host;

static void start_host(struct target *t, size_t n)
{
    struct target_options opts = {
        .setup = many_setup, .command = many_command, .arg = &host};

    host.n = n;
    host.stats = mmap(NULL, sizeof(*host.stats), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(host.stats != MAP_FAILED);
    /* set once: the calls leave size as it is */
    *host.stats = (hmaf_agent_stats_t)HMAF_AGENT_STATS_INIT;
    target_start(t, &opts);
}

static hmaf_agent_stats_t agent_stats(struct target *t)
{
    CHECK_EQ(target_command(t, 'g'), 1);
    return *host.stats;
}

static size_t region_count(size_t n)
{
    const char *env = getenv("HMAF_TEST_REGIONS");

    return env != NULL && atol(env) > 0 ? (size_t)atol(env) : n / SCALE_DOWN;
}

/* The agent's counters once it has served `requests` mailbox requests,
 * or after some seconds (the caller checks the count). */
static hmaf_agent_stats_t agent_stats_after(struct target *t,
                                            uint64_t requests)
{
    hmaf_agent_stats_t st = agent_stats(t);

    for (int i = 0; i < 1000 && st.requests < requests; i++) {
        nanosleep(&(struct timespec){0, 10000000}, NULL);
        st = agent_stats(t);
    }
    return st;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Region i, whole, holds the pattern. */
static void read_region(hmaf_session_t *s, uint64_t base, size_t i)
{
    uint8_t tmp[REGION_LEN];

    CHECK_OK(hmaf_session_read(s, tmp, base + i * STRIDE, sizeof(tmp)));
    CHECK_PATTERN(tmp, sizeof(tmp), i * STRIDE, SALT);
}

static hmaf_session_t *connect_many(struct target *t, unsigned max_regions,
                                    uint64_t *base_out)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;

    target_session_params(t, &p);
    if (max_regions > 0) {
        p.cache_max_regions = max_regions;
    }
    s = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(s, "many", base_out, NULL));
    return s;
}

static void test_100k(void)
{
    const size_t N = region_count(100000), BAND = N / 10;
    struct target t;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    hmaf_agent_stats_t before = HMAF_AGENT_STATS_INIT;
    hmaf_agent_stats_t after = HMAF_AGENT_STATS_INIT;
    double t0, band_start, first_band = 0, last_band = 0, hits;
    uint64_t base;
    hmaf_session_t *s;

    start_host(&t, N);
    s = connect_many(&t, N, &base);
    before = agent_stats(&t);
    t0 = band_start = now_s();
    for (size_t i = 0; i < N; i++) {
        read_region(s, base, i);
        if ((i + 1) % BAND == 0) {
            double now = now_s();
            first_band = first_band == 0 ? now - band_start : first_band;
            last_band = now - band_start;
            band_start = now;
        }
    }
    printf("test_regions: %zu registrations in %.2f s (%.1f us each in the "
           "first %zu, %.1f us in the last)\n",
           N, now_s() - t0, first_band / BAND * 1e6, BAND,
           last_band / BAND * 1e6);
    t0 = now_s();
    for (size_t i = N; i-- > 0;) {
        read_region(s, base, i);
    }
    hits = now_s() - t0;
    printf("test_regions: %zu reads from the cache, %.2f us each\n", N,
           hits / N * 1e6);
    after = agent_stats(&t);
    CHECK_OK(hmaf_session_stats(s, &st));
    CHECK_EQ(st.registrations, N);
    CHECK_EQ(st.cache_misses, N);
    CHECK_EQ(st.evictions, 0);
    CHECK_EQ(st.cache_hits, 2 * N);
    CHECK_EQ(st.ops, 2 * N);
    CHECK_EQ(after.registrations - before.registrations, N);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

static double ping_us(hmaf_session_t *s)
{
    enum { PINGS = 2000 };
    double t0 = now_s();

    for (int i = 0; i < PINGS; i++) {
        CHECK_OK(hmaf_session_ping(s));
    }
    return (now_s() - t0) / PINGS * 1e6;
}

static void test_cycle(void)
{
    enum { PASSES = 3 };
    const size_t N = region_count(10000);
    struct target t;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    hmaf_agent_stats_t before = HMAF_AGENT_STATS_INIT;
    hmaf_agent_stats_t after = HMAF_AGENT_STATS_INIT;
    uint64_t base, deregisters, batches, cached;
    unsigned bound, batch;
    hmaf_session_t *s;
    double t0, miss;

    start_host(&t, N);
    s = connect_many(&t, 0, &base); /* the default bound */
    bound = 1024;
    batch = bound + 1 - (bound - bound / 8); /* down to 7/8 of the bound */
    before = agent_stats(&t);
    t0 = now_s();
    for (int pass = 0; pass < PASSES; pass++) {
        for (size_t i = 0; i < N; i++) {
            read_region(s, base, i);
        }
    }
    miss = (now_s() - t0) / (PASSES * N) * 1e6;
    after = agent_stats(&t);
    CHECK_OK(hmaf_session_stats(s, &st));
    /* Every read missed: the region read last before it left long ago. */
    CHECK_EQ(st.cache_misses, PASSES * N);
    CHECK_EQ(st.registrations, PASSES * N);
    CHECK_EQ(st.evictions % batch, 0);
    cached = st.registrations - st.evictions;
    CHECK(cached > bound - batch && cached <= bound);
    /* Each region was given back before it was asked for again (the
     * REGISTERs after an eviction carry its batch back): the agent
     * registered it anew every time. */
    CHECK_EQ(after.registrations - before.registrations, PASSES * N);
    /* The REGISTERs, and DEREGISTERs only for what the watch thread
     * found waiting for a REGISTER a whole turn of its own: fewer than a
     * batch's worth, however many batches. */
    CHECK(after.requests >= before.requests + PASSES * N);
    deregisters = after.requests - before.requests - PASSES * N;
    batches = st.evictions / batch;
    CHECK(deregisters <= (batch + 28) / 29);
    CHECK_EQ(after.bad_requests, 0);
    printf("test_regions: a miss past the bound of %u: %.1f us (a ping: "
           "%.1f us); %llu evictions in %llu batches, %llu DEREGISTERs\n",
           bound, miss, ping_us(s), (unsigned long long)st.evictions,
           (unsigned long long)batches, (unsigned long long)deregisters);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

/* Evicted regions that no REGISTER carries back (the session stopped
 * missing) go back from the watch thread, in one DEREGISTER, within two
 * of its turns (a lease, 250 ms by default). */
static void test_idle(void)
{
    enum { BOUND = 8, READS = BOUND + 1 };
    struct target t;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    hmaf_agent_stats_t before = HMAF_AGENT_STATS_INIT;
    hmaf_agent_stats_t after = HMAF_AGENT_STATS_INIT;
    uint64_t base;
    hmaf_session_t *s;

    start_host(&t, 64);
    s = connect_many(&t, BOUND, &base);
    before = agent_stats(&t);
    for (size_t i = 0; i < READS; i++) {
        read_region(s, base, i);
    }
    CHECK_OK(hmaf_session_stats(s, &st));
    CHECK_EQ(st.evictions, 2); /* regions 0 and 1: down to 7 of 8 */
    after = agent_stats_after(&t, before.requests + READS + 1);
    CHECK_EQ(after.requests, before.requests + READS + 1);
    CHECK_EQ(after.bad_requests, 0);
    /* Region 0's hold came back, so its registration ended: reading it
     * again registers it anew. */
    read_region(s, base, 0);
    CHECK_EQ(agent_stats(&t).registrations, after.registrations + 1);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

/* A watchdog far below the session's rpc_timeout_ms: a destroy that
 * waited for the stopped host's answer would be killed by it. */
enum { STOPPED_RPC_TIMEOUT_MS = 60000, STOPPED_WATCHDOG_S = 20 };

static void test_idle_stopped(void)
{
    enum { BOUND = 8, READS = BOUND + 1 };
    struct target t;
    hmaf_session_params_t p;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    uint64_t base;
    hmaf_session_t *s;

    start_host(&t, 64);
    target_session_params(&t, &p);
    p.cache_max_regions = BOUND;
    p.rpc_timeout_ms = STOPPED_RPC_TIMEOUT_MS;
    s = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(s, "many", &base, NULL));
    for (size_t i = 0; i < READS; i++) {
        read_region(s, base, i);
    }
    CHECK_OK(hmaf_session_stats(s, &st));
    CHECK_EQ(st.evictions, 2);
    target_pause(&t);
    /* Two watch turns (250 ms each by default): the give-back is sent
     * and waits for an answer that cannot come. */
    nanosleep(&(struct timespec){0, 700000000}, NULL);
    alarm(STOPPED_WATCHDOG_S);
    hmaf_session_destroy(s);
    alarm(0);
    CHECK_EQ(kill(t.pid, SIGCONT), 0);
    CHECK_EQ(target_stop(&t), 0);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "100k") == 0) {
        test_100k();
    } else if (argc == 2 && strcmp(argv[1], "cycle") == 0) {
        test_cycle();
    } else if (argc == 2 && strcmp(argv[1], "idle") == 0) {
        test_idle();
    } else if (argc == 2 && strcmp(argv[1], "idle-stopped") == 0) {
        test_idle_stopped();
    } else {
        fprintf(stderr, "usage: test_regions 100k|cycle|idle|idle-stopped\n");
        return 1;
    }
    printf("test_regions %s: ok\n", argv[1]);
    return 0;
}
