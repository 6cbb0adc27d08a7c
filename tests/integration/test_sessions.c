/* One host, several sessions: each gets its own mailbox and works alone;
 * a session that ends, cleanly or by death, is cleaned up on the host. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

/* Poll the host until it reports `want` live sessions (at most 2 s). */
static void await_live_sessions(struct target *t, int want)
{
    for (int i = 0; i < 200; i++) {
        if (target_command(t, 's') == want) {
            return;
        }
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    CHECK_EQ(target_command(t, 's'), want);
}

static void check_read(hmaf_session_t *s, uint64_t addr, uint64_t off)
{
    uint8_t tmp[256];

    CHECK_OK(hmaf_session_read(s, tmp, addr + off, sizeof(tmp)));
    for (size_t i = 0; i < sizeof(tmp); i++) {
        CHECK_EQ(tmp[i], target_pattern(off + i, 1));
    }
}

/* A dpu process that connects, reads, and is then killed mid-session.
 * Forked before this process connects (dpu_child_fork). */
struct dying {
    struct target *t;
    int ready[2];
    struct dpu_child child;
};

static void dying_main(void *arg)
{
    struct dying *d = arg;
    hmaf_session_t *s = target_connect(d->t);
    uint64_t addr;

    CHECK_OK(hmaf_session_lookup(s, "buf", &addr, NULL));
    check_read(s, addr, 777);
    CHECK(write(d->ready[1], "r", 1) == 1);
    pause(); /* until killed */
}

static void dying_fork(struct dying *d, struct target *t)
{
    d->t = t;
    CHECK(pipe(d->ready) == 0);
    d->child = dpu_child_fork(dying_main, d);
    close(d->ready[1]); /* a child that fails closes the last writer */
}

static void session_that_dies(struct target *t, struct dying *d)
{
    char c;

    dpu_child_start(&d->child);
    CHECK(read(d->ready[0], &c, 1) == 1);
    await_live_sessions(t, 3);
    kill(d->child.pid, SIGKILL);
    waitpid(d->child.pid, NULL, 0);
    close(d->ready[0]);
    await_live_sessions(t, 2);
}

int main(void)
{
    struct target t;
    hmaf_session_t *a, *b;
    uint64_t addr;
    uint8_t v[64];
    struct dying dying;

    target_start_standard(&t);
    dying_fork(&dying, &t);
    a = target_connect(&t);
    b = target_connect(&t);
    await_live_sessions(&t, 2);
    CHECK_OK(hmaf_session_lookup(a, "buf", &addr, NULL));
    check_read(a, addr, 100);
    check_read(b, addr, STD_SPLIT - 100);
    /* A write through one session is visible through the other. */
    target_fill(v, sizeof(v), 5000, 2);
    CHECK_OK(hmaf_session_write(a, addr + 5000, v, sizeof(v)));
    memset(v, 0, sizeof(v));
    CHECK_OK(hmaf_session_read(b, v, addr + 5000, sizeof(v)));
    for (size_t i = 0; i < sizeof(v); i++) {
        CHECK_EQ(v[i], target_pattern(5000 + i, 2));
    }
    session_that_dies(&t, &dying);
    check_read(a, addr, 4096);
    hmaf_session_destroy(b);
    await_live_sessions(&t, 1);
    CHECK_OK(hmaf_session_ping(a));
    hmaf_session_destroy(a);
    await_live_sessions(&t, 0);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_sessions: ok\n");
    return 0;
}
