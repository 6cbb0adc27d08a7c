/* Reader slots and grace periods: readers that hold an object inside a
 * read-side section must never see it retired under them, with and without
 * the kernel's membarrier; counters are per slot and add up. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "check.h"
#include "core/readers.h"

#define READERS 2
#define SWAPS 300

struct box {
    _Atomic int alive; /* 1 while published or possibly in use */
    int payload;
};

static struct hmaf__readers rs;
static struct box *_Atomic current;
static _Atomic int stop;
static _Atomic long violations;

static void *reader_main(void *arg)
{
    struct hmaf__reader *me;
    long sections = 0;

    (void)arg;
    CHECK_OK(hmaf__reader_get(&rs, &me));
    while (!atomic_load(&stop)) {
        hmaf__reader_enter(me);
        struct box *b = atomic_load_explicit(&current, memory_order_acquire);
        for (int spin = 0; spin < 50; spin++) {
            if (!atomic_load(&b->alive)) {
                atomic_fetch_add(&violations, 1);
            }
        }
        hmaf__reader_exit(me);
        hmaf__reader_count(me, HMAF_RC_OPS, 1);
        sections++;
    }
    return (void *)sections;
}

/* Swap in a fresh box, wait a grace period, then retire the old one. The
 * box is marked dead rather than freed, so a violation is observable. */
static void writer(struct box *boxes)
{
    for (int i = 1; i <= SWAPS; i++) {
        struct box *old = atomic_load(&current);
        atomic_store(&boxes[i].alive, 1);
        atomic_store_explicit(&current, &boxes[i], memory_order_release);
        hmaf__readers_synchronize(&rs);
        atomic_store(&old->alive, 0);
    }
}

static void run(int fence_free)
{
    struct box *boxes = calloc(SWAPS + 1, sizeof(*boxes));
    pthread_t th[READERS];
    long total = 0;
    void *sections;

    CHECK(boxes != NULL);
    CHECK_OK(hmaf__readers_init(&rs));
    hmaf__readers_fence_free = fence_free;
    atomic_store(&boxes[0].alive, 1);
    atomic_store(&current, &boxes[0]);
    atomic_store(&stop, 0);
    for (int i = 0; i < READERS; i++) {
        CHECK(pthread_create(&th[i], NULL, reader_main, NULL) == 0);
    }
    writer(boxes);
    atomic_store(&stop, 1);
    for (int i = 0; i < READERS; i++) {
        pthread_join(th[i], &sections);
        total += (long)sections;
    }
    CHECK_EQ(atomic_load(&violations), 0);
    CHECK_EQ(hmaf__readers_sum(&rs, HMAF_RC_OPS), total);
    hmaf__readers_fini(&rs);
    free(boxes);
}

/* A slot is per thread and stays with it; a second session's slot differs. */
static void check_slots(void)
{
    struct hmaf__readers other;
    struct hmaf__reader *a, *b, *c;

    CHECK_OK(hmaf__readers_init(&rs));
    CHECK_OK(hmaf__readers_init(&other));
    CHECK_OK(hmaf__reader_get(&rs, &a));
    CHECK_OK(hmaf__reader_get(&rs, &b));
    CHECK_OK(hmaf__reader_get(&other, &c));
    CHECK(a == b);
    CHECK(c != a);
    CHECK(rs.id != other.id);
    hmaf__readers_fini(&other);
    hmaf__readers_fini(&rs);
}

int main(void)
{
    int have_membarrier;

    check_slots();
    have_membarrier = hmaf__readers_fence_free;
    run(0);
    if (have_membarrier) {
        run(1);
    }
    printf("test_readers: ok (membarrier %s)\n",
           have_membarrier ? "tested too" : "not available here");
    return 0;
}
