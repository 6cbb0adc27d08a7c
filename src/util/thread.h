/* Library threads: started with every signal blocked, because the
 * application's signal handlers belong on its own threads. */
#ifndef HMAF_UTIL_THREAD_H
#define HMAF_UTIL_THREAD_H

#include <pthread.h>
#include <signal.h>

#include <hmaf/error.h>

static inline int hmaf__thread_start(pthread_t *thread, void *(*fn)(void *),
                                     void *arg)
{
    sigset_t all, old;
    int ret;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ret = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret == 0 ? 0 : HMAF_ENOMEM;
}

#endif
