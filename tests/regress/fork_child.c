/*
 * Regression: a dpu process that forked after creating a session left its
 * child a live copy of the session (region cache, mailbox client, the
 * channel's socket) without a watch thread, and nothing marked it dead.
 * Now a forked child's sessions are orphans (src/core/forks.c).
 *
 * A. Revocation: the child writes into an exposure in a loop while the
 *    host revokes it. The parent's watch thread acknowledges, so revoke
 *    returns 0; the child's copy must not write (it did, from its stale
 *    cache). The host refills the range with a sentinel right after the
 *    return and looks for the child's bytes in it.
 *
 * B. Mailbox hand-back: the parent destroys its session, the host unmaps
 *    its mailbox, and the next session's mailbox may come at the same
 *    address. The child's copy then makes a mailbox call: it must fail
 *    and land nowhere (its request used to land in the other session's
 *    mailbox, and the agent answered it there).
 *
 * Exit 1 when either shows.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "fence.h"
#include "target.h"

#define LEN      (1u << 20)
#define WATCH_MS 50

struct shared {
    _Atomic uint64_t fence_ns;
    int revoke_ret;
    size_t changed;
    _Atomic int child_stop;
    _Atomic long child_ok, child_ok_after, child_failed;
    int child_first_err;
    int64_t child_first_err_ns; /* relative to fence_ns */
    uint64_t child_last_ok_ns;
    _Atomic int child_go;
    int child_ping, child_lookup;
    uint64_t child_mbox, new_mbox;
    _Atomic int child_done;
    int served_for_child;
};

static struct shared *sh;
static uint8_t *area;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    area = calloc(1, LEN);
    if (area == NULL) {
        return HMAF_ENOMEM;
    }
    CHECK_OK(hmaf_agent_expose(agent, area, LEN, HMAF_ACCESS_READ_WRITE));
    return hmaf_agent_publish(agent, "area", area, LEN);
}

static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    (void)arg;
    if (cmd == 'z') {
        sh->revoke_ret = hmaf_agent_revoke(agent, area, LEN);
        atomic_store(&sh->fence_ns, fence_now_ns());
        memset(area, FENCE_SENTINEL, LEN);
        fence_sleep_ms(WATCH_MS);
        sh->changed = fence_changed(area, LEN);
        return 1;
    }
    hmaf_agent_stats(agent, &st);
    if (cmd == 'q') {
        return (int)(st.requests & 0x7f);
    }
    return (int)st.sessions_live;
}

static void case_revoke(void)
{
    struct target t;
    struct target_options o = {.setup = setup, .command = command};
    hmaf_session_t *s;
    uint64_t at;
    uint8_t mark[64];
    pid_t child;

    memset(mark, 0x11, sizeof(mark));
    hmaf_session_params_t p;

    target_start(&t, &o);
    /* A legal setting: the watch thread confirms revocations anyway, so an
     * application may look less often on its data path (the host's lease,
     * 250 ms here, bounds it). With the default 1 ms the child's window
     * is a millisecond or so. */
    target_session_params(&t, &p);
    p.revoke_check_us = 200000;
    CHECK_OK(hmaf_session_create(&p, &s));
    CHECK_OK(hmaf_session_lookup(s, "area", &at, NULL));
    CHECK_OK(hmaf_session_write(s, at, mark, sizeof(mark)));
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        for (unsigned i = 0; !atomic_load(&sh->child_stop); i++) {
            uint64_t t0 = fence_now_ns();
            int ret = hmaf_session_write(s, at + (i * 64) % (LEN - 64), mark,
                                         sizeof(mark));
            uint64_t f = atomic_load(&sh->fence_ns);
            if (ret == 0) {
                atomic_fetch_add(&sh->child_ok, 1);
                if (f != 0 && t0 > f) {
                    atomic_fetch_add(&sh->child_ok_after, 1);
                }
                sh->child_last_ok_ns = t0;
            } else if (atomic_fetch_add(&sh->child_failed, 1) == 0) {
                sh->child_first_err = ret;
                sh->child_first_err_ns = (int64_t)(t0 - f);
            }
        }
        _exit(0);
    }
    fence_sleep_ms(20);
    target_command(&t, 'z');
    atomic_store(&sh->child_stop, 1);
    waitpid(child, NULL, 0);
    printf("A: revoke = %s; child: %ld writes ok (%ld begun after revoke "
           "returned), %ld failed; host found %zu bytes written after the "
           "return\n",
           hmaf_err_name(sh->revoke_ret), atomic_load(&sh->child_ok),
           atomic_load(&sh->child_ok_after), atomic_load(&sh->child_failed),
           sh->changed);
    printf("A: child's first error %s, its call began %lld ns after the "
           "return (fence %s); last success began %lld ns after it\n",
           hmaf_err_name(sh->child_first_err),
           (long long)sh->child_first_err_ns,
           sh->child_first_err_ns > (int64_t)1e15 ? "unknown" : "known",
           (long long)(sh->child_last_ok_ns - sh->fence_ns));
    hmaf_session_destroy(s);
    target_stop(&t);
}

static void case_mailbox(void)
{
    struct target t;
    struct target_options o = {.setup = setup, .command = command};
    hmaf_session_t *s, *s2;
    int req0, req1;
    pid_t child;

    target_start(&t, &o);
    s = target_connect(&t);
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        uint64_t at = 0;
        while (!atomic_load(&sh->child_go)) {
            usleep(1000);
        }
        sh->child_mbox = s->mbox.base;
        sh->child_ping = hmaf_session_ping(s);
        sh->child_lookup = hmaf_session_lookup(s, "area", &at, NULL);
        atomic_store(&sh->child_done, 1);
        _exit(0);
    }
    hmaf_session_destroy(s); /* the parent is done with it */
    fence_sleep_ms(50);
    CHECK_EQ(target_command(&t, 's'), 0); /* the host closed it */
    s2 = target_connect(&t);
    sh->new_mbox = s2->mbox.base;
    req0 = target_command(&t, 'q');
    atomic_store(&sh->child_go, 1);
    waitpid(child, NULL, 0);
    fence_sleep_ms(50);
    req1 = target_command(&t, 'q');
    printf("B: mailbox requests the agent served while only the child "
           "called: %d\n",
           (req1 - req0) & 0x7f);
    printf("B: old mailbox at %#llx, the next session's at %#llx; the "
           "child's ping on the destroyed session = %s, lookup = %s\n",
           (unsigned long long)sh->child_mbox, (unsigned long long)sh->new_mbox,
           hmaf_err_name(sh->child_ping), hmaf_err_name(sh->child_lookup));
    sh->served_for_child = (req1 - req0) & 0x7f;
    printf("B: the next session's ping afterwards = %s\n",
           hmaf_err_name(hmaf_session_ping(s2)));
    hmaf_session_destroy(s2);
    target_stop(&t);
}

int main(void)
{
    int bad = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    sh = fence_shared(sizeof(*sh));
    case_revoke();
    if (sh->revoke_ret == 0 &&
        (sh->changed > 0 || atomic_load(&sh->child_ok_after) > 0)) {
        printf("A: DEFECT: revoke returned 0, yet the forked child's "
               "accesses began and landed after it\n");
        bad = 1;
    }
    case_mailbox();
    if (sh->child_mbox == sh->new_mbox && sh->served_for_child > 0) {
        printf("B: DEFECT: the child's mailbox I/O landed in memory the "
               "host had handed to another session\n");
        bad = 1;
    }
    return bad;
}
