/*
 * The process's live sessions, for fork(). A child gets a copy of every
 * session — its region cache, its mailbox client, its channel socket — but
 * none of the session's threads, and the host cannot tell it from the
 * parent. Left alive, the copy would keep reading and writing host memory
 * after a revocation the parent confirmed, and its end of the shared
 * socket could speak for the parent. So in the child every session is an
 * orphan: dead from the first instruction (its calls fail with
 * HMAF_ECONNRESET and touch nothing of the host's), and its destroy frees
 * memory only, without a word to the host or to the engine, whose state
 * is the parent's.
 */
#include <pthread.h>

#include <hmaf/error.h>

#include "core/session_int.h"

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hmaf_session *live;
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void lock_live(void)
{
    pthread_mutex_lock(&live_lock);
}

static void unlock_live(void)
{
    pthread_mutex_unlock(&live_lock);
}

static void orphan_all(void)
{
    for (struct hmaf_session *s = live; s != NULL; s = s->next_live) {
        atomic_store(&s->dead, HMAF_ECONNRESET);
        s->orphan = 1;
        s->watch.running = 0; /* the thread stayed with the parent */
    }
    pthread_mutex_unlock(&live_lock);
}

static void install_handlers(void)
{
    (void)pthread_atfork(lock_live, unlock_live, orphan_all);
}

void hmaf__sessions_add(struct hmaf_session *s)
{
    pthread_once(&handlers_once, install_handlers);
    pthread_mutex_lock(&live_lock);
    s->next_live = live;
    live = s;
    pthread_mutex_unlock(&live_lock);
}

void hmaf__sessions_remove(struct hmaf_session *s)
{
    pthread_mutex_lock(&live_lock);
    for (struct hmaf_session **at = &live; *at != NULL;
         at = &(*at)->next_live) {
        if (*at == s) {
            *at = s->next_live;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
}
