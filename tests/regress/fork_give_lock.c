/*
 * Regression: a dpu process that forks while one of its threads is in
 * the middle of queueing or taking evicted regions (regions.c: a miss
 * that evicts, a REGISTER giving back, the watch thread's turn) leaves
 * its child a copy of the session whose give_lock is held by a thread the
 * child does not have. Destroying that orphan in the child locked it, and
 * the child hung there for ever. Here a thread of the parent holds the
 * lock across the fork, for certain, as those threads do for a moment.
 *
 * Exit 1 when the child does not get through hmaf_session_destroy (an
 * alarm ends it).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "target.h"

#define PIECE     4096u
#define EXPOSURES 32u
#define CHILD_ALARM_S 10

static uint8_t *mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    return target_expose_pieces(agent, "many", EXPOSURES, PIECE, &mem);
}

static hmaf_session_t *session;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int holding, done;

/* Holds the session's give_lock until the fork is over. */
static void *holder(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&session->give_lock);
    pthread_mutex_lock(&mu);
    holding = 1;
    pthread_cond_broadcast(&cv);
    while (!done) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&session->give_lock);
    return NULL;
}

int main(void)
{
    struct target target;
    struct target_options opts = {.setup = setup};
    hmaf_session_params_t p;
    pthread_t t;
    uint64_t base;
    uint8_t tmp[8];
    size_t len;
    pid_t pid;
    int status;

    target_start(&target, &opts);
    target_session_params(&target, &p);
    p.cache_max_regions = 4; /* evicted regions wait in the queue */
    session = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(session, "many", &base, &len));
    for (unsigned i = 0; i < EXPOSURES; i++) {
        CHECK_OK(hmaf_session_read(session, tmp, base + i * PIECE, 8));
    }
    CHECK_EQ(pthread_create(&t, NULL, holder, NULL), 0);
    pthread_mutex_lock(&mu);
    while (!holding) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(CHILD_ALARM_S);
        hmaf_session_destroy(session);
        _exit(0);
    }
    pthread_mutex_lock(&mu);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fork_give_lock: the child's destroy hung "
                        "(status %#x)\n", status);
        return 1;
    }
    hmaf_session_destroy(session);
    CHECK_EQ(target_stop(&target), 0);
    return 0;
}
