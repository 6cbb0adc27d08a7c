/*
 * Regression: an agent in poll mode (params.threaded = 0) whose
 * application thread revokes without polling in between; cooperative,
 * idle dpu sides must still confirm, and revoke must return 0.
 *
 * 1. Two revocations in a row. The dpu side gave its holds back with
 *    DEREGISTER mailbox calls after acknowledging the first, which only
 *    hmaf_agent_poll would answer: its watch thread was stuck there and
 *    could not confirm the second, so revoke(B) returned HMAF_ETIMEDOUT
 *    and cut the healthy session off. Now an acknowledgement itself ends
 *    the older holds (src/host/holds.c).
 *
 * 2. A revocation right after a dpu side closed its session cleanly:
 *    nobody ran the agent's loop while revoke waited, so the closed
 *    session never acked and revoke timed out for a session that had
 *    stopped for good. Now a session that closed its end counts as
 *    settled.
 *
 * Exit 1 when either happens.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define LEN (1u << 20)

struct report {
    int ret[2];
    uint64_t ms[2];
    hmaf_agent_stats_t st;
};

static struct report *rep;
static char address[128];

static uint64_t cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int timed_revoke(hmaf_agent_t *a, void *p, int i)
{
    uint64_t t0 = now_ms();

    rep->ret[i] = hmaf_agent_revoke(a, p, LEN);
    rep->ms[i] = now_ms() - t0;
    return rep->ret[i];
}

static void host(int cmd_fd, int reply_fd)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    uint8_t *m[3];
    unsigned char c;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = "t";
    p.threaded = 0;
    CHECK_OK(hmaf_agent_create(&p, &a));
    for (int i = 0; i < 3; i++) {
        static const char *names[] = {"a", "b", "c"};
        m[i] = calloc(1, LEN);
        CHECK_OK(hmaf_agent_expose(a, m[i], LEN, HMAF_ACCESS_READ_WRITE));
        CHECK_OK(hmaf_agent_publish(a, names[i], m[i], LEN));
    }
    c = 'R';
    CHECK(write(reply_fd, &c, 1) == 1);
    for (;;) {
        struct pollfd pf = {.fd = cmd_fd, .events = POLLIN};
        if (poll(&pf, 1, 0) == 0) {
            hmaf_agent_poll(a, 1); /* the application's event loop */
            continue;
        }
        if (read(cmd_fd, &c, 1) != 1) {
            break;
        }
        switch (c) {
        case 'x': /* revoke A, then B, nothing in between */
            timed_revoke(a, m[0], 0);
            timed_revoke(a, m[1], 1);
            break;
        case 'h': /* busy elsewhere: no polling until the next command */
            c = 'k';
            CHECK(write(reply_fd, &c, 1) == 1);
            CHECK(read(cmd_fd, &c, 1) == 1);
            timed_revoke(a, m[2], 0);
            break;
        }
        rep->st = (hmaf_agent_stats_t)HMAF_AGENT_STATS_INIT;
        hmaf_agent_stats(a, &rep->st);
        c = 'k';
        CHECK(write(reply_fd, &c, 1) == 1);
    }
    hmaf_agent_destroy(a);
    _exit(0);
}

static hmaf_session_t *connect_session(void)
{
    hmaf_session_params_t sp;
    hmaf_session_t *s;

    hmaf_session_params_init(&sp);
    sp.address = address;
    sp.token = "t";
    CHECK_OK(hmaf_session_create(&sp, &s));
    return s;
}

static void touch(hmaf_session_t *s, const char *name)
{
    uint64_t at;
    char b[8];

    CHECK_OK(hmaf_session_lookup(s, name, &at, NULL));
    CHECK_OK(hmaf_session_read(s, b, at, sizeof(b)));
}

static void command(int cmd_fd, int reply_fd, char c)
{
    unsigned char r;

    CHECK(write(cmd_fd, &c, 1) == 1);
    CHECK(read(reply_fd, &r, 1) == 1);
}

int main(void)
{
    int to_child[2], to_parent[2], bad = 0;
    char dir[] = "/tmp/hmaf-test-XXXXXX";
    unsigned char c;
    hmaf_session_t *s;
    uint64_t cpu0, wall0;
    pid_t pid;

    setvbuf(stdout, NULL, _IONBF, 0);
    rep = mmap(NULL, sizeof(*rep), PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(rep != MAP_FAILED && mkdtemp(dir) != NULL);
    snprintf(address, sizeof(address), "unix:%s/a.sock", dir);
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    pid = fork();
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        host(to_child[0], to_parent[1]);
    }
    close(to_child[0]);
    close(to_parent[1]);
    CHECK(read(to_parent[0], &c, 1) == 1 && c == 'R');

    /* 1: two revocations in a row */
    s = connect_session();
    touch(s, "a");
    touch(s, "b");
    usleep(50 * 1000); /* idle */
    cpu0 = cpu_ms();
    wall0 = now_ms();
    command(to_child[1], to_parent[0], 'x');
    printf(
        "case 1: the idle dpu process used %llu ms of CPU in those %llu "
        "ms (its watch thread polls the mailbox for an answer, no back-off)\n",
        (unsigned long long)(cpu_ms() - cpu0),
        (unsigned long long)(now_ms() - wall0));
    printf("case 1: revoke(A) = %s in %llu ms, revoke(B) = %s in %llu ms, "
           "cut-offs %llu\n",
           hmaf_err_name(rep->ret[0]), (unsigned long long)rep->ms[0],
           hmaf_err_name(rep->ret[1]), (unsigned long long)rep->ms[1],
           (unsigned long long)rep->st.revoke_cutoffs);
    printf("case 1: the dpu side's next ping: %s\n",
           hmaf_err_name(hmaf_session_ping(s)));
    if (rep->ret[0] != 0 || rep->ret[1] != 0) {
        printf("case 1: DEFECT: an idle, cooperative session was cut off\n");
        bad = 1;
    }
    hmaf_session_destroy(s);
    usleep(20 * 1000);

    /* 2: a revocation right after a clean close */
    s = connect_session();
    touch(s, "c");
    command(to_child[1], to_parent[0], 'h');
    hmaf_session_destroy(s); /* fenced, end shut: it said it stopped */
    usleep(20 * 1000);
    command(to_child[1], to_parent[0], 'x' /* any byte: revoke C */);
    printf("case 2: revoke(C) after the only session closed = %s in %llu "
           "ms, cut-offs %llu\n",
           hmaf_err_name(rep->ret[0]), (unsigned long long)rep->ms[0],
           (unsigned long long)rep->st.revoke_cutoffs);
    if (rep->ret[0] != 0) {
        printf("case 2: DEFECT: a session that had closed its end made "
               "revoke wait and fail\n");
        bad = 1;
    }

    close(to_child[1]);
    waitpid(pid, NULL, 0);
    snprintf(address, sizeof(address), "%s/a.sock", dir);
    unlink(address);
    rmdir(dir);
    return bad;
}
