/*
 * Regression: "rpc_timeout_ms: one mailbox round trip" (session.h), with
 * more threads than the session has mailbox slots and a host that stopped
 * answering. A call waited for a free slot without a limit, then for its
 * own answer: the threads behind the first ones took a timeout each for
 * every round of slots ahead of them (here 20 rounds of 200 ms: 4 s for
 * the last). Now a call's rpc_timeout_ms covers its wait for a slot too.
 *
 * The host has 2 slots and is SIGSTOPped; 40 threads ping. Every ping
 * must fail with HMAF_ETIMEDOUT, and the last must be back long before 20
 * rounds of timeouts: within 10 of them, a margin for a busy machine.
 * Exit 1 otherwise.
 */
#include <signal.h>
#include <stdio.h>

#include "check.h"
#include "target.h"

#define SLOTS      2u
#define THREADS    40
#define TIMEOUT_MS 200

static hmaf_session_t *session;

static void *ping(void *arg)
{
    (void)arg;
    CHECK_ERR(hmaf_session_ping(session), HMAF_ETIMEDOUT);
    return NULL;
}

int main(void)
{
    struct target_options opts = {.mailbox_slots = SLOTS};
    struct target t;
    hmaf_session_params_t p;
    uint64_t took;

    target_start(&t, &opts);
    target_session_params(&t, &p);
    p.rpc_timeout_ms = TIMEOUT_MS;
    session = target_connect_params(&p);
    CHECK_OK(hmaf_session_ping(session));
    target_pause(&t);
    took = target_threads_ms(THREADS, ping, NULL);
    printf("%d pings, %u slots, host stopped: all back in %llu ms "
           "(rpc_timeout_ms %d)\n",
           THREADS, SLOTS, (unsigned long long)took, TIMEOUT_MS);
    CHECK(took < 10u * TIMEOUT_MS);
    CHECK_EQ(kill(t.pid, SIGCONT), 0);
    CHECK_OK(hmaf_session_ping(session));
    hmaf_session_destroy(session);
    CHECK_EQ(target_stop(&t), 0);
    return 0;
}
