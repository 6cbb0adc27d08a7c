/*
 * Does a busy mailbox starve the agent's connection handling?
 *
 * The agent's thread (src/host/loop.c, agent_turn) looks at its channels
 * (accept, HELLOs, dead peers) only on a turn where serving found no
 * request. Here one session's mailbox always holds a fresh request: a
 * thread of this process (the agent runs here too, so the mailbox is plain
 * memory) bumps every slot's sequence word as fast as it can, as a dpu
 * side with a fast write path (a DMA engine) could. Meanwhile a second dpu
 * side tries to connect with a 2 s timeout, and a third session's peer
 * closes its end: is it reaped?
 *
 * Prints what happened; exit 1 if the connect failed or took over 1 s, or
 * the closed session was not reaped within 1 s.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/mailbox.h"
#include "util/clock.h"

#define TOKEN "starve-t0ken"

static uint8_t memory[4096];
static atomic_int stop;
static atomic_uint_fast64_t bumps;

struct flood {
    uint8_t *mbox;
    uint32_t nslots;
};

/* HMAF_REVIEW_RT=1: the flood thread runs SCHED_FIFO on CPU 0 and this
 * process's other threads on CPU 1, so that it is never descheduled, as a
 * dedicated core (or a DMA engine) would be; without it, on a busy
 * machine, the flood pauses whenever the scheduler takes its CPU, and the
 * agent looks at its channels in those pauses. */
static int want_rt(void)
{
    const char *v = getenv("HMAF_REVIEW_RT");

    return v != NULL && v[0] == '1' && sysconf(_SC_NPROCESSORS_ONLN) >= 2;
}

static void pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *flood_main(void *arg)
{
    struct flood *f = arg;
    uint32_t seq = 1000;

    if (want_rt()) {
        struct sched_param sp = {.sched_priority = 1};
        pin(0);
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0) {
            printf("serve_starve: SCHED_FIFO refused, flooding without\n");
        }
    }

    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (uint32_t i = 0; i < f->nslots; i++) {
            _Atomic uint64_t *w =
                (_Atomic uint64_t *)(f->mbox + hmaf__mbox_slot_offset(i) +
                                     HMAF_MBOX_REQ_WORD);
            atomic_store_explicit(w, hmaf__mbox_req_word(seq, HMAF_OP_PING, 0),
                                  memory_order_release);
        }
        seq = seq + 1 == 0 ? 1 : seq + 1;
        atomic_fetch_add_explicit(&bumps, 1, memory_order_relaxed);
    }
    return NULL;
}

static hmaf_session_t *connect_one(const char *address, int timeout_ms,
                                   int *ret_out)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.connect_timeout_ms = timeout_ms;
    *ret_out = hmaf_session_create(&p, &s);
    return s;
}

int main(void)
{
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    hmaf_session_t *busy, *victim, *late;
    struct flood f;
    pthread_t th;
    uint64_t t0, took_ns, reap_ns = 0;
    uint64_t live_before;
    int ret, bad = 0;

    setenv("HMAF_LOG", "off", 0);
    if (want_rt()) {
        pin(1); /* inherited by the agent's and sessions' threads */
    }
    hmaf_agent_params_init(&ap);
    ap.address = "unix:@hmaf-review-starve";
    ap.token = TOKEN;
    CHECK_OK(hmaf_agent_create(&ap, &agent));
    CHECK_OK(hmaf_agent_expose(agent, memory, sizeof(memory),
                               HMAF_ACCESS_READ_WRITE));
    busy = connect_one(ap.address, 2000, &ret);
    CHECK_OK(ret);
    victim = connect_one(ap.address, 2000, &ret);
    CHECK_OK(ret);
    f.mbox = (uint8_t *)(uintptr_t)busy->mbox.base;
    f.nslots = busy->mbox.nslots;
    CHECK(pthread_create(&th, NULL, flood_main, &f) == 0);
    poll(NULL, 0, 100);

    /* A new dpu side. */
    t0 = hmaf__now_ns();
    late = connect_one(ap.address, 2000, &ret);
    took_ns = hmaf__now_ns() - t0;
    printf("serve_starve: connect during the flood: %s in %llu ms "
           "(%llu flood rounds so far)\n",
           hmaf_err_name(ret), (unsigned long long)(took_ns / 1000000u),
           (unsigned long long)atomic_load(&bumps));
    bad |= ret != 0 || took_ns > 1000000000ull;
    hmaf_session_destroy(late);

    /* A peer that leaves. */
    CHECK_OK(hmaf_agent_stats(agent, &st));
    live_before = st.sessions_live;
    t0 = hmaf__now_ns();
    hmaf_session_destroy(victim);
    do {
        poll(NULL, 0, 5);
        CHECK_OK(hmaf_agent_stats(agent, &st));
        reap_ns = hmaf__now_ns() - t0;
    } while (st.sessions_live == live_before && reap_ns < 3000000000ull);
    printf("serve_starve: a departed peer's session %s after %llu ms\n",
           st.sessions_live < live_before ? "reaped" : "NOT reaped",
           (unsigned long long)(reap_ns / 1000000u));
    bad |= st.sessions_live == live_before || reap_ns > 1000000000ull;

    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    CHECK_OK(hmaf_agent_stats(agent, &st));
    printf("serve_starve: requests served %llu, malformed %llu\n",
           (unsigned long long)st.requests,
           (unsigned long long)st.bad_requests);
    /* Control: the same without the flood. */
    t0 = hmaf__now_ns();
    late = connect_one(ap.address, 2000, &ret);
    printf("serve_starve: connect after the flood: %s in %llu ms\n",
           hmaf_err_name(ret),
           (unsigned long long)((hmaf__now_ns() - t0) / 1000000u));
    hmaf_session_destroy(late);
    hmaf_session_destroy(busy);
    hmaf_agent_destroy(agent);
    printf("serve_starve: %s\n", bad ? "FAIL" : "ok");
    return bad;
}
