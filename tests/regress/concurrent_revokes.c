/* Regression: with two revocations at once, the first returned without
 * waiting for any acknowledgement (the second overwrote what each session
 * had to acknowledge), so an active session went on reading the first
 * range after its revoke had returned. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "target.h"

#define LEN (1u << 20)

static uint8_t *a_mem, *b_mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    a_mem = calloc(1, LEN);
    b_mem = calloc(1, LEN);
    if (a_mem == NULL || b_mem == NULL) {
        return HMAF_ENOMEM;
    }
    return hmaf_agent_expose(agent, a_mem, LEN, HMAF_ACCESS_READ) ||
           hmaf_agent_expose(agent, b_mem, LEN, HMAF_ACCESS_READ) ||
           hmaf_agent_publish(agent, "a", a_mem, LEN) ||
           hmaf_agent_publish(agent, "b", b_mem, LEN);
}

static void *revoke_b(void *agent)
{
    return (void *)(intptr_t)hmaf_agent_revoke(agent, b_mem, LEN);
}

/* 'c': revoke a and b at the same moment, answer as soon as a's revoke
 * returns (b's may still wait); 'j': answer once b's has returned. */
static int revoke_both(hmaf_agent_t *agent, int cmd, void *arg)
{
    static pthread_t b_thread;
    void *b_ret;

    (void)arg;
    if (cmd == 'j') {
        pthread_join(b_thread, &b_ret);
        return b_ret == NULL;
    }
    if (pthread_create(&b_thread, NULL, revoke_b, agent) != 0) {
        return 0;
    }
    return hmaf_agent_revoke(agent, a_mem, LEN) == 0;
}

struct reader {
    hmaf_session_t *s;
    uint64_t addr;
    _Atomic int revoked;
    _Atomic int stop;
    long ok_after;
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    uint8_t v[64];

    while (!atomic_load(&r->stop)) {
        int after = atomic_load(&r->revoked);
        if (hmaf_session_read(r->s, v, r->addr, sizeof(v)) == 0 && after) {
            r->ok_after++;
        }
    }
    return NULL;
}

int main(void)
{
    struct target_options opts = {.setup = setup, .command = revoke_both};
    hmaf_session_params_t p;
    struct target t;
    struct reader r = {0};
    pthread_t th;

    target_start(&t, &opts);
    target_session_params(&t, &p);
    p.revoke_check_us = 40000; /* within the agent's lease of 50 ms */
    CHECK_OK(hmaf_session_create(&p, &r.s));
    CHECK_OK(hmaf_session_lookup(r.s, "a", &r.addr, NULL));
    CHECK(pthread_create(&th, NULL, read_loop, &r) == 0);
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    CHECK_EQ(target_command(&t, 'c'), 1);
    atomic_store(&r.revoked, 1);
    nanosleep(&(struct timespec){0, 60000000}, NULL);
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECK_EQ(target_command(&t, 'j'), 1);
    CHECK_EQ(r.ok_after, 0);
    hmaf_session_destroy(r.s);
    CHECK_EQ(target_stop(&t), 0);
    printf("concurrent_revokes: ok\n");
    return 0;
}
