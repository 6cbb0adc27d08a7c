/*
 * Regression: the dpu side and the agent on one CPU. A mailbox call
 * polled its answer without ever giving the CPU away, so the agent
 * answered only once the scheduler took the CPU from the caller: a round
 * trip took the scheduler's time slice instead of microseconds, and a
 * caller of real-time priority (SCHED_FIFO), from which the scheduler
 * never takes the CPU for a normal thread, starved the agent outright —
 * until the kernel's real-time throttling let normal threads in, about a
 * second later — so every call timed out. Now a wait yields after its
 * spin budget and sleeps after a millisecond, and the agent answers.
 *
 * Both sides pinned to one CPU (the first this process may use): calls at
 * normal priority first, then the same at SCHED_FIFO with an
 * rpc_timeout_ms of 300 — hundreds of times what a waiter that sleeps
 * needs (about a millisecond a call, on a busy machine a few), and well
 * short of the throttling's second. Exit 1 when a call fails. Skipped
 * (77) where real-time priority is not permitted.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "check.h"
#include "target.h"

#define PINGS 100

/* Pin this process (and so the host it forks, and their threads) to the
 * first CPU it may run on. */
static void pin_to_one_cpu(void)
{
    cpu_set_t allowed, one;
    int cpu = 0;

    CHECK(sched_getaffinity(0, sizeof(allowed), &allowed) == 0);
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &allowed)) {
        cpu++;
    }
    CHECK(cpu < CPU_SETSIZE);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    CHECK(sched_setaffinity(0, sizeof(one), &one) == 0);
}

/* 0, or the errno of being refused the policy. */
static int set_policy(int policy, int priority)
{
    struct sched_param p = {.sched_priority = priority};

    return pthread_setschedparam(pthread_self(), policy, &p);
}

/* Calls of each kind the mailbox carries: PING, LOOKUP, and REGISTER (a
 * first read of the root's region). */
static void calls(hmaf_session_t *s, const char *root, unsigned salt)
{
    uint64_t base;
    uint8_t b[8];

    for (int i = 0; i < PINGS; i++) {
        CHECK_OK(hmaf_session_ping(s));
    }
    CHECK_OK(hmaf_session_lookup(s, root, &base, NULL));
    CHECK_OK(hmaf_session_read(s, b, base, sizeof(b)));
    CHECK_PATTERN(b, sizeof(b), 0, salt);
}

int main(void)
{
    struct target t;
    hmaf_session_params_t p;
    hmaf_session_t *s;
    int ret;

    setvbuf(stdout, NULL, _IONBF, 0);
    ret = set_policy(SCHED_FIFO, 1);
    if (ret == EPERM) {
        SKIP("real-time priority (SCHED_FIFO) not permitted here");
    }
    CHECK_EQ(ret, 0);
    CHECK_OK(set_policy(SCHED_OTHER, 0));

    pin_to_one_cpu();
    target_start_standard(&t);
    target_session_params(&t, &p);
    p.rpc_timeout_ms = 300;
    s = target_connect_params(&p);

    calls(s, "ro", 3);
    CHECK_OK(set_policy(SCHED_FIFO, 1));
    calls(s, "buf", 1);
    CHECK_OK(set_policy(SCHED_OTHER, 0));

    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("ok\n");
    return 0;
}
