/*
 * Regression: a session used by 128 application threads (session.h)
 * whose threads are ready the moment hmaf_session_create returns — a
 * worker pool waiting for the session. The session's watch thread used to
 * claim its reader slot only when it first ran, and to ignore a failure:
 * either the pool took all 128 slots and the watch thread could never
 * read the mailbox (every revoke then cut the idle session off), or one
 * of the application's 128 threads got HMAF_ENOSPC. Now the library's
 * threads have slots of their own, claimed before create returns.
 *
 * Exit 1 when either happens.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "target.h"

/* with the main thread, 128 threads use the session */
#define NTHREADS 127

static hmaf_session_t *_Atomic session;
static uint64_t base;
static _Atomic int claimed, failed, release;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *worker(void *arg)
{
    hmaf_session_t *s;
    char b[8];

    (void)arg;
    while ((s = atomic_load(&session)) == NULL) {
    }
    if (hmaf_session_read(s, b, base, sizeof(b)) == 0) {
        atomic_fetch_add(&claimed, 1);
    } else {
        atomic_fetch_add(&failed, 1);
    }
    pthread_mutex_lock(&mu); /* an idle pool thread */
    while (!atomic_load(&release)) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(void)
{
    struct target t;
    pthread_t tid[NTHREADS];
    hmaf_session_t *s;
    int live, ok, main_ret;
    char b[8];

    setvbuf(stdout, NULL, _IONBF, 0);
    target_start_standard(&t);
    /* the address of "buf" without a session: the host publishes it */
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &base, NULL));
    hmaf_session_destroy(s);

    for (int i = 0; i < NTHREADS; i++) {
        CHECK(pthread_create(&tid[i], NULL, worker, NULL) == 0);
    }
    usleep(100 * 1000); /* the pool is up and waiting */
    {
        hmaf_session_params_t p;
        target_session_params(&t, &p);
        CHECK_OK(hmaf_session_create(&p, &s));
    }
    atomic_store(&session, s); /* the pool goes at once */
    while (atomic_load(&claimed) + atomic_load(&failed) < NTHREADS) {
        usleep(1000);
    }
    usleep(50 * 1000);
    printf("pool threads with a slot: %d, without: %d\n", atomic_load(&claimed),
           atomic_load(&failed));
    ok = target_command(&t, 'r'); /* revoke an exposure; the session idles */
    live = target_command(&t, 's');
    printf("revoke while the session is idle: %s; sessions live after: %d\n",
           ok ? "0" : "failed (HMAF_ETIMEDOUT)", live);
    main_ret = hmaf_session_read(s, b, base, sizeof(b));
    printf("main thread's read (the 128th thread): %s\n",
           hmaf_err_name(main_ret));
    if (main_ret == HMAF_ENOSPC) {
        atomic_fetch_add(&failed, 1);
    }
    atomic_store(&release, 1);
    pthread_mutex_lock(&mu);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(tid[i], NULL);
    }
    hmaf_session_destroy(s);
    target_stop(&t);
    if (atomic_load(&failed) > 0) {
        printf("DEFECT: 128 application threads, yet %d got no slot (the "
               "library's own watch thread holds one)\n",
               atomic_load(&failed));
    }
    if (!ok || live != 1) {
        printf("DEFECT: the watch thread found no reader slot; the idle "
               "session could not confirm and was cut off\n");
    }
    return atomic_load(&failed) > 0 || !ok || live != 1;
}
