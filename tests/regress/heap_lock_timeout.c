/*
 * Regression: "rpc_timeout_ms: one mailbox call" (session.h), for the
 * heap's calls. A session's allocations and frees share one lock, held
 * through a refill's round trip. With the host stopped, each thread
 * queued behind the holder took the lock only after the holder's timeout,
 * then waited its own: 20 threads took 20 timeouts in a row (4 s for the
 * last at 200 ms). Now a heap call waits for the lock at most
 * rpc_timeout_ms too.
 *
 * 20 threads each allocate (an empty cache: a refill) while the host is
 * SIGSTOPped: each gets HMAF_ETIMEDOUT, and the last is back long before
 * 20 timeouts (within 10, a margin for a busy machine). Then the host
 * runs again and the session allocates and frees as before.
 * Exit 1 otherwise.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "target.h"

#define THREADS    20
#define TIMEOUT_MS 200
#define HEAP_LEN   (4u << 20)

static hmaf_session_t *session;
/* Held until the host exits, where the leak checker sees it (volatile: a
 * store never read back would be optimised away). */
static void *volatile heap_mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    void *base = heap_mem = aligned_alloc(HMAF_HEAP_PAGE, HEAP_LEN);

    (void)arg;
    return base == NULL ? HMAF_ENOMEM
                        : hmaf_agent_heap_create(agent, base, HEAP_LEN, NULL);
}

static void *alloc_one(void *arg)
{
    uint64_t addr;

    (void)arg;
    CHECK_ERR(hmaf_session_alloc(session, 64, &addr), HMAF_ETIMEDOUT);
    return NULL;
}

int main(void)
{
    struct target_options opts = {.setup = setup};
    struct target t;
    hmaf_session_params_t p;
    uint64_t took, addr;

    target_start(&t, &opts);
    target_session_params(&t, &p);
    p.rpc_timeout_ms = TIMEOUT_MS;
    session = target_connect_params(&p);
    CHECK_OK(hmaf_session_ping(session));
    target_pause(&t);
    took = target_threads_ms(THREADS, alloc_one, NULL);
    printf("%d allocations, host stopped: all back in %llu ms "
           "(rpc_timeout_ms %d)\n",
           THREADS, (unsigned long long)took, TIMEOUT_MS);
    CHECK(took < 10u * TIMEOUT_MS);
    CHECK_EQ(kill(t.pid, SIGCONT), 0);
    CHECK_OK(hmaf_session_alloc(session, 64, &addr));
    CHECK_OK(hmaf_session_free(session, addr));
    CHECK_OK(hmaf_session_heap_flush(session));
    hmaf_session_destroy(session);
    CHECK_EQ(target_stop(&t), 0);
    return 0;
}
