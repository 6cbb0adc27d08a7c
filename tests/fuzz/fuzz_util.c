#include "fuzz.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"

/* ASan keeps 256 MB of freed memory by default to catch late uses; with
 * it, a long run's RSS climbs to about 800 MB. The agent reuses what it
 * frees within an input, so 64 MB catch as much. ASAN_OPTIONS overrides. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=64";
}

size_t fuzz_take_bytes(struct fuzz_in *in, void *dst, size_t n)
{
    size_t got = n < in->left ? n : in->left;

    memcpy(dst, in->p, got);
    memset((uint8_t *)dst + got, 0, n - got);
    in->p += got;
    in->left -= got;
    return got;
}

int fuzz_trace;

void fuzz_quiet_logs(void)
{
    const char *trace = getenv("HMAF_FUZZ_TRACE");

    setenv("HMAF_LOG", "off", 0);
    fuzz_trace = trace != NULL && strcmp(trace, "0") != 0;
}

/* One worker, started on first use, that runs one job at a time. */
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_posted = PTHREAD_COND_INITIALIZER;
static fuzz_job_fn job_fn;
static void *job_arg;
static int job_result;
static _Atomic int job_done;
static pthread_once_t worker_once = PTHREAD_ONCE_INIT;

static void *worker_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&job_lock);
    for (;;) {
        while (job_fn == NULL) {
            pthread_cond_wait(&job_posted, &job_lock);
        }
        fuzz_job_fn fn = job_fn;
        pthread_mutex_unlock(&job_lock);
        int ret = fn(job_arg);
        pthread_mutex_lock(&job_lock);
        job_result = ret;
        job_fn = NULL;
        atomic_store_explicit(&job_done, 1, memory_order_release);
    }
    return NULL;
}

static void worker_start(void)
{
    pthread_t th;

    FUZZ_CHECK(pthread_create(&th, NULL, worker_main, NULL) == 0,
               "no worker thread");
    pthread_detach(th);
}

int fuzz_beside_agent(hmaf_agent_t *agent, fuzz_job_fn fn, void *arg,
                      int timeout_ms)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    int ret;

    pthread_once(&worker_once, worker_start);
    pthread_mutex_lock(&job_lock);
    atomic_store_explicit(&job_done, 0, memory_order_relaxed);
    job_arg = arg;
    job_fn = fn;
    pthread_cond_signal(&job_posted);
    pthread_mutex_unlock(&job_lock);
    while (!atomic_load_explicit(&job_done, memory_order_acquire)) {
        ret = hmaf_agent_poll(agent, 0);
        FUZZ_CHECK(ret >= 0, "hmaf_agent_poll: %s", hmaf_err_name(ret));
        FUZZ_CHECK(hmaf__now_ns() < deadline,
                   "a dpu-side call got no answer within %d ms", timeout_ms);
        sched_yield(); /* two CPUs, shared: let the worker run */
    }
    pthread_mutex_lock(&job_lock);
    ret = job_result;
    pthread_mutex_unlock(&job_lock);
    return ret;
}

/* Pipes left out: the sanitizers' runtime starts llvm-symbolizer on first
 * need, at some input or other, and keeps its pipes. The directory's own
 * fd counts, the same every time. */
int fuzz_count_fds(int show)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    FUZZ_CHECK(d != NULL, "opendir /proc/self/fd");
    while ((e = readdir(d)) != NULL) {
        char path[300], target[256];
        ssize_t len;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        len = readlink(path, target, sizeof(target) - 1);
        target[len < 0 ? 0 : len] = '\0';
        if (len > 0 && strncmp(target, "pipe:", 5) != 0) {
            n++;
        }
        if (show && len > 0) {
            fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
        }
    }
    closedir(d);
    return n;
}
