/* Regression: on the twin path (no userfaultfd write-protect), evicting a
 * page under map_max_resident wrote it back and then dropped it, so a
 * store another thread made in between was lost for good. Now the page is
 * moved out of the mirror first, and a racing store faults and waits for
 * the eviction. One thread fills page 0 with distinct values, round after
 * round, while another keeps the resident cap busy; every value must stay.
 * With "kept" (run with HMAF_MAP_MOVE=0: the kernel will not move a page
 * out, as before Linux 5.7), evicting wrote back in place and the racing
 * store could be lost; now written pages stay, over the cap. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "target.h"

#define PAGE   4096u
#define PAGES  8u         /* the mapping */
#define CAP    (2 * PAGE) /* the session holds two of its pages at once */
#define SLOTS  (PAGE / 4) /* u32 words in page 0 */
#define ROUNDS 300
#define SPIN   300 /* between stores: some 0.5 us */

static hmaf_map_t *map;
static uint64_t base;
static _Atomic int done;

/* Touch the other pages round and round: every touch evicts one. */
static void *evictor(void *arg)
{
    volatile uint8_t sink = 0;

    (void)arg;
    for (unsigned i = 1; !atomic_load(&done); i = i % (PAGES - 1) + 1) {
        sink += *(volatile uint8_t *)hmaf_map_local(map, base + i * PAGE);
    }
    (void)sink;
    return NULL;
}

/* Store every word of page 0 once, then count those that were lost. */
static unsigned fill_and_count(uint32_t round)
{
    volatile uint32_t *word = hmaf_map_local(map, base);
    unsigned lost = 0;

    for (uint32_t i = 0; i < SLOTS; i++) {
        word[i] = round << 16 | i;
        for (volatile int spin = 0; spin < SPIN; spin++) {
            /* spread the stores over the evictions */
        }
    }
    for (uint32_t i = 0; i < SLOTS; i++) {
        lost += word[i] != (round << 16 | i);
    }
    return lost;
}

int main(int argc, char **argv)
{
    int kept = argc > 1 && strcmp(argv[1], "kept") == 0;
    hmaf_session_params_t sp;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;
    hmaf_map_params_t p;
    struct target t;
    hmaf_session_t *s;
    pthread_t th;
    unsigned lost = 0;
    int ret;

    setenv("HMAF_MAP_WP", "0", 1); /* the twin path, whatever the kernel */
    target_start_standard(&t);
    target_session_params(&t, &sp);
    sp.map_max_resident = CAP;
    s = target_connect_params(&sp);
    CHECK_OK(hmaf_session_lookup(s, "buf", &base, NULL));
    base = (base + PAGE - 1) & ~(uint64_t)(PAGE - 1);
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE; /* the host's address may be ours too */
    p.readahead_max = 0;
    ret = hmaf_map_create(s, base, PAGES * PAGE, &p, &map);
    if (ret == HMAF_ENOTSUP) {
        target_kill(&t);
        SKIP("userfaultfd is not available to this process (valgrind?)");
    }
    CHECK_OK(ret);
    CHECK(pthread_create(&th, NULL, evictor, NULL) == 0);
    for (uint32_t r = 1; r <= ROUNDS; r++) {
        lost += fill_and_count(r);
    }
    atomic_store(&done, 1);
    pthread_join(th, NULL);
    CHECK_EQ(lost, 0);
    CHECK_OK(hmaf_map_stats(map, &st));
    if (kept) { /* every page of a writable twin mapping is written */
        CHECK_EQ(st.evictions, 0);
        CHECK_EQ(st.resident_bytes, PAGES * PAGE);
    } else { /* the race was run */
        CHECK(st.evictions > 0);
    }
    hmaf_map_destroy(map);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("twin_evict_race%s: ok (%llu evictions)\n", kept ? " kept" : "",
           (unsigned long long)st.evictions);
    return 0;
}
