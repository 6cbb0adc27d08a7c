/*
 * Regression: "a session holding 83,000 regions closes and another
 * session's ping fails with HMAF_ETIMEDOUT". The agent ended a closing
 * session's holds under its lock, each by a linear scan of the session's
 * holds and of the exposures: seconds of work during which no other
 * session was served. Now the holds come off in bounded chunks, the lock
 * dropped between them.
 *
 * A host exposes HOLDS separate 64-byte ranges. A dpu session registers
 * every one; another session pings and reads 64 bytes in a loop, with
 * rpc_timeout_ms 1000 (the stall lasted 1-5 s), while the first closes
 * (hmaf_session_destroy), and again while a forked dpu process holding
 * as many is killed (SIGKILL). Each ping and read must succeed. The
 * longest ping is printed, not judged.
 *
 * HMAF_TEST_HOLDS scales the run (default 100000).
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "target.h"
#include "util/clock.h"

#define PIECE           64u
#define PING_TIMEOUT_MS 1000
/* After the host has counted the session closed, the pings go on this
 * long: the agent may still be giving its holds back. */
#define TRAIL_NS 300000000ull

static size_t holds = 100000;
/* The host's exposed memory, kept where the leak checker sees it held
 * until the host exits (volatile: a store never read back would
 * otherwise be optimised away). */
static uint8_t *volatile host_mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    uint8_t *mem = host_mem = calloc(holds, PIECE);
    int ret = mem == NULL ? HMAF_ENOMEM : 0;

    (void)arg;
    for (size_t i = 0; i < holds && ret == 0; i++) {
        ret = hmaf_agent_expose(agent, mem + i * PIECE, PIECE,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "many", mem, holds * PIECE);
    }
    return ret;
}

/* 's': live sessions. */
static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    (void)arg;
    if (cmd != 's') {
        return 255;
    }
    hmaf_agent_stats(agent, &st);
    return st.sessions_live > 254 ? 254 : (int)st.sessions_live;
}

static hmaf_session_t *connect_holder(const struct target *t)
{
    hmaf_session_params_t p;

    target_session_params(t, &p);
    p.cache_max_regions = (unsigned)holds + 16;
    return target_connect_params(&p);
}

/* One REGISTER per range: each is a region of its own. */
static void hold_every_range(hmaf_session_t *s)
{
    uint64_t base, len;
    uint8_t b[8];

    CHECK_OK(hmaf_session_lookup(s, "many", &base, &len));
    CHECK_EQ(len, holds * PIECE);
    for (size_t i = 0; i < holds; i++) {
        CHECK_OK(hmaf_session_read(s, b, base + i * PIECE, sizeof(b)));
    }
}

struct pinger {
    hmaf_session_t *s;
    uint64_t addr;
    atomic_int stop;
    atomic_int failed; /* the first error, or 0 */
    uint64_t calls;
    uint64_t max_ns;
    pthread_t thread;
};

static void *ping_loop(void *arg)
{
    struct pinger *pg = arg;
    uint8_t buf[64];

    while (!atomic_load(&pg->stop) && atomic_load(&pg->failed) == 0) {
        uint64_t t0 = hmaf__now_ns(), dt;
        int ret = hmaf_session_ping(pg->s);
        if (ret == 0) {
            ret = hmaf_session_read(pg->s, buf, pg->addr, sizeof(buf));
        }
        dt = hmaf__now_ns() - t0;
        pg->max_ns = dt > pg->max_ns ? dt : pg->max_ns;
        pg->calls++;
        atomic_store(&pg->failed, ret);
        nanosleep(&(struct timespec){0, 100000}, NULL); /* leave CPU */
    }
    return NULL;
}

static void pinger_start(struct pinger *pg)
{
    pg->calls = 0;
    pg->max_ns = 0;
    atomic_store(&pg->stop, 0);
    CHECK(pthread_create(&pg->thread, NULL, ping_loop, pg) == 0);
}

/* Until the host counts `live` sessions, and TRAIL_NS more. */
static void pinger_finish(struct pinger *pg, struct target *t, int live,
                          const char *what)
{
    uint64_t trail_end;

    while (target_command(t, 's') != live && atomic_load(&pg->failed) == 0) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    trail_end = hmaf__now_ns() + TRAIL_NS;
    while (hmaf__now_ns() < trail_end && atomic_load(&pg->failed) == 0) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    atomic_store(&pg->stop, 1);
    pthread_join(pg->thread, NULL);
    printf("%s: %llu pings + reads, longest %.3f ms\n", what,
           (unsigned long long)pg->calls, (double)pg->max_ns / 1e6);
    CHECK_OK(atomic_load(&pg->failed));
}

/* A dpu process that holds every range, says 'R' on ready, and waits to
 * die. Forked before this process connects (dpu_child_fork). */
struct holder_child {
    const struct target *t;
    int ready[2];
    struct dpu_child child;
};

static void holder_main(void *arg)
{
    struct holder_child *h = arg;
    char c = 'R';

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(h->ready[0]);
    hold_every_range(connect_holder(h->t));
    CHECK(write(h->ready[1], &c, 1) == 1);
    for (;;) {
        pause();
    }
}

static void holder_fork(struct holder_child *h, const struct target *t)
{
    h->t = t;
    CHECK(pipe(h->ready) == 0);
    fflush(NULL);
    h->child = dpu_child_fork(holder_main, h);
    close(h->ready[1]);
}

int main(void)
{
    struct target_options opts = {.setup = setup, .command = command};
    struct pinger pg = {0};
    hmaf_session_params_t p;
    struct target t;
    struct holder_child dpu;
    hmaf_session_t *holder;
    uint64_t base, len, t0;
    char c = 0;

    if (getenv("HMAF_TEST_HOLDS") != NULL) {
        holds = strtoul(getenv("HMAF_TEST_HOLDS"), NULL, 10);
        CHECK(holds > 0);
    }
    t0 = hmaf__now_ns();
    target_start(&t, &opts);
    holder_fork(&dpu, &t);
    target_session_params(&t, &p);
    p.rpc_timeout_ms = PING_TIMEOUT_MS;
    pg.s = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(pg.s, "many", &base, &len));
    pg.addr = base;

    /* The forked holder registers while this process does too. */
    dpu_child_start(&dpu.child);
    holder = connect_holder(&t);
    hold_every_range(holder);
    CHECK(read(dpu.ready[0], &c, 1) == 1 && c == 'R');
    close(dpu.ready[0]);
    printf("%zu ranges held twice after %.1f s\n", holds,
           (double)(hmaf__now_ns() - t0) / 1e9);

    pinger_start(&pg);
    hmaf_session_destroy(holder);
    pinger_finish(&pg, &t, 2, "session destroy");

    pinger_start(&pg);
    kill(dpu.child.pid, SIGKILL);
    CHECK(waitpid(dpu.child.pid, NULL, 0) == dpu.child.pid);
    pinger_finish(&pg, &t, 1, "dpu process killed");

    hmaf_session_destroy(pg.s);
    CHECK_EQ(target_stop(&t), 0);
    printf("done after %.1f s\n", (double)(hmaf__now_ns() - t0) / 1e9);
    return 0;
}
