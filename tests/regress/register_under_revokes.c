/*
 * Regression: "hmaf_session_read fails with HMAF_EPROTO, 'agent answers
 * cannot be cached', while the host revokes and exposes again in a
 * loop". Every revocation empties the dpu side's region cache and makes
 * answers given before it unusable; a miss asked again at most four
 * times, each after applying the newest revocation, and then blamed the
 * agent for a broken protocol. On a busy machine a thread preempted
 * between its REGISTER and the insert finds another revocation applied
 * each time. An answer the host could not have known was outdated is no
 * fault of the host's: the miss goes on asking (until the session's
 * rpc_timeout_ms, then HMAF_ETIMEDOUT).
 *
 * And on doca (regress.register_under_revokes.doca): "the session dies
 * (HMAF_ECONNRESET) while the host revokes an exposure it never reads".
 * The session's acknowledgement of a revocation ends the holds of every
 * answer given before it, answers still on their way to the cache among
 * them; the agent then ends the engine registration, and importing the
 * answer's export failed as if the host had gone. An import that fails
 * after the session confirmed a revocation newer than the answer is asked
 * again like any outdated answer.
 *
 * The host revokes an exposure no dpu thread touches, exposes it again,
 * and so on, as fast as the session confirms, while dpu threads read
 * from many other exposures through a region cache of 8 (a miss every
 * few reads). Every read must succeed.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "check.h"
#include "target.h"

#define EXPOSURES 256
#define PIECE     4096u
#define THREADS   4
#define READS     1500 /* per thread */

/* Under a sanitizer every thread runs several times slower, and a miss
 * whose answer each back-to-back revocation outdates can be outdated
 * until rpc_timeout_ms (the limit session.h states for a host that
 * revokes without pause): there the host pauses between turns and the
 * session waits longer. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifdef UNDER_SANITIZER
#define CHURN_PAUSE_NS  1000000
#define RPC_TIMEOUT_MS  30000
#else
#define CHURN_PAUSE_NS  0
#define RPC_TIMEOUT_MS  0 /* the default */
#endif

static uint8_t *mem, *churned;
static pthread_t churner;
static _Atomic int churning;
static _Atomic unsigned churn_failures;

static int setup(hmaf_agent_t *agent, void *arg)
{
    int ret = 0;

    (void)arg;
    mem = mmap(NULL, (EXPOSURES + 1) * PIECE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        return HMAF_ENOMEM;
    }
    target_fill(mem, EXPOSURES * PIECE, 0, 1);
    churned = mem + EXPOSURES * PIECE;
    for (unsigned i = 0; i <= EXPOSURES && ret == 0; i++) {
        ret = hmaf_agent_expose(agent, mem + i * PIECE, PIECE,
                                HMAF_ACCESS_READ_WRITE);
    }
    return ret != 0 ? ret
                    : hmaf_agent_publish(agent, "mem", mem, EXPOSURES * PIECE);
}

static void *churn(void *arg)
{
    hmaf_agent_t *agent = arg;

    while (atomic_load(&churning)) {
        if (CHURN_PAUSE_NS > 0) {
            nanosleep(&(struct timespec){0, CHURN_PAUSE_NS}, NULL);
        }
        if (hmaf_agent_revoke(agent, churned, PIECE) != 0 ||
            hmaf_agent_expose(agent, churned, PIECE,
                              HMAF_ACCESS_READ_WRITE) != 0) {
            atomic_fetch_add(&churn_failures, 1);
        }
    }
    return NULL;
}

/* 'c': start revoking in a loop; 'C': stop, 1 when every turn worked. */
static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    (void)arg;
    switch (cmd) {
    case 'c':
        atomic_store(&churning, 1);
        return pthread_create(&churner, NULL, churn, agent) == 0;
    case 'C':
        atomic_store(&churning, 0);
        return pthread_join(churner, NULL) == 0 &&
               atomic_load(&churn_failures) == 0;
    default:
        return 255;
    }
}

static hmaf_session_t *session;
static uint64_t base;
static _Atomic unsigned failures;

static void *reader(void *arg)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);

    for (int i = 0; i < READS; i++) {
        int ret = target_read_random(session, base, EXPOSURES * PIECE, 1, &x);
        if (ret != 0) {
            if (ret < 0) {
                fprintf(stderr, "read: %s\n", hmaf_strerror(ret));
            }
            atomic_fetch_add(&failures, 1);
        }
    }
    return NULL;
}

int main(void)
{
    struct target_options opts = {.setup = setup, .command = command};
    struct target target;
    hmaf_session_params_t p;
    pthread_t thr[THREADS];
    size_t len;

    target_start(&target, &opts);
    target_session_params(&target, &p);
    p.cache_max_regions = 8;
    if (RPC_TIMEOUT_MS > 0) {
        p.rpc_timeout_ms = RPC_TIMEOUT_MS;
    }
    session = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(session, "mem", &base, &len));
    CHECK_EQ(target_command(&target, 'c'), 1);
    for (uintptr_t i = 0; i < THREADS; i++) {
        CHECK_EQ(pthread_create(&thr[i], NULL, reader, (void *)i), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK_EQ(pthread_join(thr[i], NULL), 0);
    }
    CHECK_EQ(target_command(&target, 'C'), 1);
    CHECK_EQ(atomic_load(&failures), 0);
    hmaf_session_destroy(session);
    CHECK_EQ(target_stop(&target), 0);
    printf("register_under_revokes: ok\n");
    return 0;
}
