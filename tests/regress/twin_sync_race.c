/* Regression: on the twin path (no userfaultfd write-protect), a store to
 * the mirror that landed while another thread's hmaf_map_sync() was
 * between diffing the page and refreshing its twin went into the twin
 * without being written back, so no later sync ever sent it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "check.h"
#include "target.h"

#define ROUNDS 20
#define SYNCS  100 /* per round, each racing with stores */

static hmaf_map_t *map;
static _Atomic int writing, syncs;

static void *syncer(void *arg)
{
    (void)arg;
    while (!atomic_load(&writing)) {
        /* start together with the stores */
    }
    while (atomic_load(&syncs) < SYNCS) {
        CHECK_OK(hmaf_map_sync(map));
        atomic_fetch_add(&syncs, 1);
    }
    return NULL;
}

/* Store ever new values while another thread syncs; after a last sync
 * the host must hold the final one. */
static void round_trip(hmaf_session_t *s, uint64_t at, _Atomic uint32_t *word,
                       uint32_t base)
{
    pthread_t th;
    uint32_t last = base, host = 0;

    atomic_store(&writing, 0);
    atomic_store(&syncs, 0);
    CHECK(pthread_create(&th, NULL, syncer, NULL) == 0);
    do {
        atomic_store_explicit(word, ++last, memory_order_relaxed);
        atomic_store(&writing, 1);
    } while (atomic_load(&syncs) < SYNCS);
    pthread_join(th, NULL);
    CHECK_OK(hmaf_map_sync(map));
    CHECK_OK(hmaf_session_read(s, &host, at, sizeof(host)));
    CHECK_EQ(host, last);
}

int main(void)
{
    struct target t;
    hmaf_session_t *s;
    hmaf_map_params_t p;
    uint64_t buf;
    int ret;

    setenv("HMAF_MAP_WP", "0", 1); /* the twin path, whatever the kernel */
    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE; /* the host's address may be ours too */
    ret = hmaf_map_create(s, buf, 4096, &p, &map);
    if (ret == HMAF_ENOTSUP) {
        target_kill(&t);
        SKIP("userfaultfd is not available to this process (valgrind?)");
    }
    CHECK_OK(ret);
    for (uint32_t r = 0; r < ROUNDS; r++) {
        round_trip(s, buf, hmaf_map_local(map, buf), r << 24);
    }
    hmaf_map_destroy(map);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("twin_sync_race: ok\n");
    return 0;
}
