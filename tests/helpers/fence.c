#include "fence.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "check.h"

#define START_WAIT_NS 1000000000ull
/* A load that cannot get one call through in this long is broken. */
#define WARM_LIMIT_MS 20000

void *fence_shared(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    CHECK(p != MAP_FAILED);
    return p;
}

uint64_t fence_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fence_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

void fence_start_wait(struct fence_start *fs)
{
    uint64_t until = fence_now_ns() + START_WAIT_NS;

    atomic_store(&fs->go, 0);
    atomic_store(&fs->armed, 1);
    while (!atomic_load(&fs->go) && fence_now_ns() < until) {
    }
    atomic_store(&fs->armed, 0);
}

static void await_tick(void)
{
    struct timespec a, b;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &a);
    do {
        clock_gettime(CLOCK_MONOTONIC_COARSE, &b);
    } while (a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec);
}

unsigned fence_trials(unsigned dflt)
{
    const char *v = getenv("HMAF_STRESS_TRIALS");
    char *end;
    unsigned long n;

    if (v == NULL || *v == '\0') {
        return dflt;
    }
    n = strtoul(v, &end, 10);
    CHECK(*end == '\0' && n > 0 && n <= 1000000);
    return (unsigned)n;
}

size_t fence_changed(const void *p, size_t len)
{
    const uint8_t *b = p;
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        n += b[i] != FENCE_SENTINEL;
    }
    return n;
}

void fence_tally_init(struct fence_tally *t, const _Atomic uint64_t *fence_ns)
{
    memset(t, 0, sizeof(*t));
    t->fence_ns = fence_ns;
}

void fence_tally_call(struct fence_tally *t, uint64_t start_ns, int ret)
{
    uint64_t end = fence_now_ns();
    /* Loaded after the call: if the host has not published yet, the call
     * ended before the host's store, but it may still have begun after
     * the host's clock read; such calls are judged in finish. */
    uint64_t fence = atomic_load(t->fence_ns);

    if (end - start_ns > t->max_call_ns) {
        t->max_call_ns = end - start_ns;
    }
    if (ret != 0) {
        t->failed++;
        t->last_error = ret;
        return;
    }
    t->ok++;
    if (fence == 0) {
        t->pending[t->npending++ % FENCE_PENDING] = start_ns;
    } else if (start_ns > fence) {
        t->ok_after++;
    }
}

void fence_tally_finish(struct fence_tally *t)
{
    uint64_t fence = atomic_load(t->fence_ns);
    unsigned n = t->npending < FENCE_PENDING ? t->npending : FENCE_PENDING;

    CHECK(fence != 0);
    for (unsigned i = 0; i < n; i++) {
        t->ok_after += t->pending[i] > fence;
    }
}

uint64_t fence_next_addr(struct fence_thread *ft)
{
    ft->rng = ft->rng * 1664525u + 1013904223u;
    return ft->base + (ft->rng >> 8) % (ft->len - FENCE_IO);
}

static void timed_call(struct fence_thread *ft, unsigned i)
{
    struct fence_start *fs = ft->load->start;
    int answer = fs != NULL && ft == &ft->load->th[0] &&
                 atomic_load(&fs->armed) && !atomic_load(&fs->go);
    uint64_t start;
    int ret;

    if (ft->load->idle_us != 0) {
        nanosleep(
            &(struct timespec){.tv_sec = ft->load->idle_us / 1000000,
                               .tv_nsec = ft->load->idle_us % 1000000 * 1000l},
            NULL);
    }
    if (answer) {
        await_tick();
    }
    start = fence_now_ns();
    ret = ft->load->call(ft, i);
    if (answer) {
        atomic_store(&fs->go, 1); /* the sessions have looked for this tick */
    }
    fence_tally_call(&ft->tally, start, ret);
    if (ret == 0 && !atomic_load_explicit(&ft->warm, memory_order_relaxed)) {
        atomic_store(&ft->warm, 1);
    }
}

static void *load_loop(void *arg)
{
    struct fence_thread *ft = arg;
    unsigned i = 1;

    while (!atomic_load(&ft->load->stop)) {
        timed_call(ft, i++);
    }
    timed_call(ft, i);
    return NULL;
}

void fence_load_start(struct fence_load *l, int nthreads, fence_call_fn call,
                      hmaf_session_t *s, uint64_t base, size_t len,
                      const _Atomic uint64_t *fence_ns,
                      struct fence_start *start)
{
    CHECK(nthreads > 0 && nthreads <= FENCE_THREADS_MAX);
    l->nthreads = nthreads;
    l->call = call;
    l->start = start;
    atomic_store(&l->stop, 0);
    for (int i = 0; i < nthreads; i++) {
        struct fence_thread *ft = &l->th[i];

        ft->load = l;
        ft->s = s;
        ft->base = base;
        ft->len = len;
        ft->rng = (uint32_t)i + 1;
        memset(ft->mark, 0x11 * (i + 1), FENCE_IO); /* 0x11 .. 0x88 */
        atomic_store(&ft->warm, 0);
        fence_tally_init(&ft->tally, fence_ns);
        CHECK(pthread_create(&l->tid[i], NULL, load_loop, ft) == 0);
    }
}

void fence_load_warm(struct fence_load *l, unsigned ms)
{
    /* A thread's first call registers the exposure with the agent: on a
     * busy machine that alone can take longer than any fixed warm-up. */
    for (int i = 0; i < l->nthreads; i++) {
        for (unsigned waited = 0; !atomic_load(&l->th[i].warm); waited++) {
            CHECK(waited < WARM_LIMIT_MS);
            fence_sleep_ms(1);
        }
    }
    fence_sleep_ms(ms);
}

void fence_load_stop(struct fence_load *l, struct fence_sum *sum_out)
{
    struct fence_sum sum = {0};

    atomic_store(&l->stop, 1);
    for (int i = 0; i < l->nthreads; i++) {
        struct fence_tally *t = &l->th[i].tally;

        pthread_join(l->tid[i], NULL);
        fence_tally_finish(t);
        sum.ok += t->ok;
        sum.failed += t->failed;
        sum.ok_after += t->ok_after;
        sum.max_call_ns =
            t->max_call_ns > sum.max_call_ns ? t->max_call_ns : sum.max_call_ns;
        sum.last_error = t->last_error != 0 ? t->last_error : sum.last_error;
    }
    *sum_out = sum;
}

uint8_t *fence_area;

int fence_setup(hmaf_agent_t *agent, void *arg)
{
    int ret;

    (void)arg;
    fence_area = calloc(1, FENCE_AREA_LEN);
    if (fence_area == NULL) {
        return HMAF_ENOMEM;
    }
    ret = hmaf_agent_expose(agent, fence_area, FENCE_AREA_LEN,
                            HMAF_ACCESS_READ_WRITE);
    return ret < 0
               ? ret
               : hmaf_agent_publish(agent, "area", fence_area, FENCE_AREA_LEN);
}

void fence_trial_run(struct fence_load *l, struct target *t, int nthreads,
                     fence_call_fn call, unsigned warm_ms, int cmd,
                     const _Atomic uint64_t *fence_ns,
                     struct fence_start *start, struct fence_sum *sum_out)
{
    hmaf_session_t *s = target_connect(t);
    uint64_t base;

    CHECK_OK(hmaf_session_lookup(s, "area", &base, NULL));
    fence_load_start(l, nthreads, call, s, base, FENCE_AREA_LEN, fence_ns,
                     start);
    fence_load_warm(l, warm_ms);
    CHECK_EQ(target_command(t, cmd), 1);
    fence_load_stop(l, sum_out);
    hmaf_session_destroy(s);
}
