/*
 * Stress: revocations and re-exposures from two host threads while dpu
 * sessions come and go (created, used by two threads, destroyed) and
 * some get cut off (short revoke_wait_ms). After every revoke that
 * returned 0 the host fills the range with a sentinel and looks again a
 * little later: any change is a fence violation. Meant for the sanitizer
 * builds and valgrind as much as for the count.
 *
 * HMAF_STRESS_SECONDS (default 2) sets the length; argv[1] the host's
 * revoke_wait_ms (default 1000; 3 makes cut-offs frequent); argv[2]
 * "posted": the dpu threads post a few transfers, then wait for them
 * (with doca they are in flight meanwhile, outside any read-side section,
 * and revocations drain them); "sparse": they sleep longer than the epoch
 * check interval before each call or round, so that every one carries
 * its epoch look (with doca writes too, and posts); "posted-sparse": both.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SLOTS     8
#define SLOT_LEN  (256u * 1024)
#define SENTINEL  0xEE
#define DPU_LOOPS 3
#define WORKERS   2
/* > revoke_check_us (1 ms by default): every call finds a look due */
#define SPARSE_IDLE_NS 1500000

struct stats {
    _Atomic long revokes_ok, revokes_timeout, violations, violation_bytes;
    _Atomic long sessions, dpu_ok, dpu_err, create_err;
    _Atomic int stop;
    _Atomic uint64_t base; /* the child's exposure, once it exists */
};

static struct stats *st;
static char address[128];
static int revoke_wait_ms = 1000;
static int posted; /* argv[2] "posted" */
static int sparse; /* argv[2] "sparse" */
static unsigned seconds = 2;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- host ---- */

static hmaf_agent_t *agent;
static uint8_t *mem;

static void *revoker(void *arg)
{
    unsigned first = (unsigned)(uintptr_t)arg;
    unsigned seed = first * 7 + 1;

    while (!atomic_load(&st->stop)) {
        unsigned i = first + 2 * (rand_r(&seed) % (SLOTS / 2));
        uint8_t *p = mem + (size_t)i * SLOT_LEN;
        int ret = hmaf_agent_revoke(agent, p, SLOT_LEN);
        if (ret == 0) {
            size_t changed = 0;
            atomic_fetch_add(&st->revokes_ok, 1);
            memset(p, SENTINEL, SLOT_LEN);
            usleep(2000);
            for (size_t k = 0; k < SLOT_LEN; k++) {
                changed += p[k] != SENTINEL;
            }
            if (changed > 0) {
                atomic_fetch_add(&st->violations, 1);
                atomic_fetch_add(&st->violation_bytes, (long)changed);
            }
        } else if (ret == HMAF_ETIMEDOUT) {
            atomic_fetch_add(&st->revokes_timeout, 1);
        } else {
            fprintf(stderr, "host: revoke = %s\n", hmaf_err_name(ret));
            exit(2);
        }
        usleep(rand_r(&seed) % 3000);
        CHECK_OK(hmaf_agent_expose(agent, p, SLOT_LEN, HMAF_ACCESS_READ_WRITE));
    }
    return NULL;
}

static void host(void)
{
    hmaf_agent_params_t p;
    pthread_t th[2];

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = "t";
    p.revoke_wait_ms = revoke_wait_ms;
    CHECK_OK(hmaf_agent_create(&p, &agent));
    mem = aligned_alloc(4096, SLOTS * SLOT_LEN);
    memset(mem, 0, SLOTS * SLOT_LEN);
    for (unsigned i = 0; i < SLOTS; i++) {
        CHECK_OK(hmaf_agent_expose(agent, mem + (size_t)i * SLOT_LEN, SLOT_LEN,
                                   HMAF_ACCESS_READ_WRITE));
    }
    atomic_store(&st->base, (uint64_t)(uintptr_t)mem);
    atomic_thread_fence(memory_order_seq_cst);
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&th[i], NULL, revoker, (void *)(uintptr_t)i) == 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    hmaf_agent_destroy(agent);
    free(mem);
    exit(0);
}

/* ---- dpu ---- */

struct worker_arg {
    hmaf_session_t *s;
    _Atomic int *stop;
    unsigned seed;
};

#define POSTS 4

/* POSTS transfers posted, then waited for: the first error, or 0. */
static int posted_round(struct worker_arg *a, uint8_t (*bufs)[256])
{
    hmaf_req_t req[POSTS];
    int n = 0, first = 0;

    for (; n < POSTS; n++) {
        unsigned slot = rand_r(&a->seed) % SLOTS;
        uint64_t at = atomic_load(&st->base) + (uint64_t)slot * SLOT_LEN +
                      rand_r(&a->seed) % (SLOT_LEN - 256);
        int ret = rand_r(&a->seed) & 1
                      ? hmaf_session_post_write(a->s, at, bufs[n], 256,
                                                &req[n])
                      : hmaf_session_post_read(a->s, bufs[n], at, 256,
                                               &req[n]);
        if (ret != 0) {
            first = ret;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        int ret = hmaf_request_wait(a->s, req[i]);
        first = first == 0 ? ret : first;
    }
    return first;
}

static void *worker(void *argp)
{
    struct worker_arg *a = argp;
    uint8_t buf[256];
    uint8_t bufs[POSTS][256];

    memset(buf, 0x5A, sizeof(buf));
    memset(bufs, 0x5A, sizeof(bufs));
    while (!atomic_load(a->stop)) {
        unsigned slot = rand_r(&a->seed) % SLOTS;
        uint64_t at = atomic_load(&st->base) + (uint64_t)slot * SLOT_LEN +
                      rand_r(&a->seed) % (SLOT_LEN - sizeof(buf));
        int ret;

        if (sparse) {
            nanosleep(&(struct timespec){0, SPARSE_IDLE_NS}, NULL);
        }
        ret = posted ? posted_round(a, bufs)
                  : rand_r(&a->seed) & 1
                      ? hmaf_session_write(a->s, at, buf, sizeof(buf))
                      : hmaf_session_read(a->s, buf, at, sizeof(buf));
        if (ret == 0) {
            atomic_fetch_add(&st->dpu_ok, 1);
        } else {
            atomic_fetch_add(&st->dpu_err, 1);
            if (ret == HMAF_ECONNRESET) {
                break;
            }
            memset(buf, 0x5A, sizeof(buf));
        }
    }
    return NULL;
}

static void *dpu_loop(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 31 + 5;

    while (!atomic_load(&st->stop)) {
        hmaf_session_params_t sp;
        hmaf_session_t *s;
        struct worker_arg wa[WORKERS];
        pthread_t th[WORKERS];
        _Atomic int stop = 0;

        hmaf_session_params_init(&sp);
        sp.address = address;
        sp.token = "t";
        if (hmaf_session_create(&sp, &s) != 0) {
            atomic_fetch_add(&st->create_err, 1);
            usleep(1000);
            continue;
        }
        atomic_fetch_add(&st->sessions, 1);
        for (int i = 0; i < WORKERS; i++) {
            wa[i] = (struct worker_arg){s, &stop, rand_r(&seed)};
            CHECK(pthread_create(&th[i], NULL, worker, &wa[i]) == 0);
        }
        usleep(5000 + rand_r(&seed) % 30000);
        atomic_store(&stop, 1);
        for (int i = 0; i < WORKERS; i++) {
            pthread_join(th[i], NULL);
        }
        hmaf_session_destroy(s);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/hmaf-test-XXXXXX";
    pthread_t th[DPU_LOOPS];
    const char *secs = getenv("HMAF_STRESS_SECONDS");
    pid_t pid;
    int status = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1) {
        revoke_wait_ms = atoi(argv[1]);
    }
    posted = argc > 2 && strstr(argv[2], "posted") != NULL;
    sparse = argc > 2 && strstr(argv[2], "sparse") != NULL;
    if (secs != NULL) {
        seconds = (unsigned)atoi(secs);
    }
    st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(st != MAP_FAILED && mkdtemp(dir) != NULL);
    snprintf(address, sizeof(address), "unix:%s/a.sock", dir);
    pid = fork();
    if (pid == 0) {
        host();
    }
    while (atomic_load(&st->base) == 0) {
        usleep(1000);
    }
    usleep(20000);
    for (int i = 0; i < DPU_LOOPS; i++) {
        CHECK(pthread_create(&th[i], NULL, dpu_loop, (void *)(uintptr_t)i) ==
              0);
    }
    for (uint64_t end = now_ns() + seconds * 1000000000ull; now_ns() < end;) {
        usleep(100000);
    }
    atomic_store(&st->stop, 1);
    for (int i = 0; i < DPU_LOOPS; i++) {
        pthread_join(th[i], NULL);
    }
    waitpid(pid, &status, 0);
    printf("revoke_wait_ms %d: revokes ok %ld, timed out %ld; sessions %ld "
           "(create errors %ld); dpu calls ok %ld, failed %ld; host exit "
           "%d\n",
           revoke_wait_ms, atomic_load(&st->revokes_ok),
           atomic_load(&st->revokes_timeout), atomic_load(&st->sessions),
           atomic_load(&st->create_err), atomic_load(&st->dpu_ok),
           atomic_load(&st->dpu_err),
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    printf("fence violations: %ld revokes, %ld bytes\n",
           atomic_load(&st->violations), atomic_load(&st->violation_bytes));
    snprintf(address, sizeof(address), "%s/a.sock", dir);
    unlink(address);
    rmdir(dir);
    return atomic_load(&st->violations) > 0 || status != 0;
}
