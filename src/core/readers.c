#include "core/readers.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "util/log.h"

#define SPINS_BEFORE_YIELD 1000

int hmaf__readers_fence_free;
HMAF_TLS struct hmaf__reader_cache_entry hmaf__reader_cache[HMAF_READER_CACHE];
static HMAF_TLS unsigned cache_next;
static HMAF_TLS int library_thread;
static _Atomic uint64_t next_id = 1;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static long membarrier(int cmd)
{
    return syscall(SYS_membarrier, cmd, 0, 0);
}

static void membarrier_setup(void)
{
    long cmds = membarrier(MEMBARRIER_CMD_QUERY);

    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0) {
        hmaf__readers_fence_free = 1;
    } else {
        hmaf__log_info("no expedited membarrier: readers fence instead");
    }
}

int hmaf__readers_init(struct hmaf__readers *rs)
{
    pthread_once(&membarrier_once, membarrier_setup);
    memset(rs->slot, 0, sizeof(rs->slot));
    rs->id = atomic_fetch_add(&next_id, 1);
    return pthread_mutex_init(&rs->claim_lock, NULL) == 0 ? 0 : HMAF_ENOMEM;
}

void hmaf__readers_fini(struct hmaf__readers *rs)
{
    pthread_mutex_destroy(&rs->claim_lock);
}

static int thread_gone(int tid)
{
    return syscall(SYS_tgkill, getpid(), tid, 0) != 0 && errno == ESRCH;
}

void hmaf__reader_library_thread(void)
{
    library_thread = 1;
}

/*
 * A slot of ours (left by a dead thread whose id we now carry), a free one,
 * or one whose owner has exited, among slots [lo, hi). A thread never
 * gives its slot back: it cannot know when the session goes away. Its
 * counts stay with the slot.
 */
static struct hmaf__reader *claim_in(struct hmaf__readers *rs, int tid, int lo,
                                     int hi)
{
    struct hmaf__reader *free_slot = NULL;

    for (int i = lo; i < hi; i++) {
        int owner = atomic_load(&rs->slot[i].owner);
        if (owner == tid) {
            return &rs->slot[i];
        }
        if (owner == 0 && free_slot == NULL) {
            free_slot = &rs->slot[i];
        }
    }
    for (int i = lo; free_slot == NULL && i < hi; i++) {
        if (thread_gone(atomic_load(&rs->slot[i].owner))) {
            free_slot = &rs->slot[i];
        }
    }
    if (free_slot != NULL) {
        atomic_store(&free_slot->owner, tid);
    }
    return free_slot;
}

/* The application's threads get the first slots; the library's get the
 * last, and the application's only when those are all taken. */
static struct hmaf__reader *claim(struct hmaf__readers *rs, int tid)
{
    struct hmaf__reader *r;

    if (!library_thread) {
        return claim_in(rs, tid, 0, HMAF_READER_APP_SLOTS);
    }
    r = claim_in(rs, tid, HMAF_READER_APP_SLOTS, HMAF_READER_SLOTS);
    return r != NULL ? r : claim_in(rs, tid, 0, HMAF_READER_APP_SLOTS);
}

/* Entry i becomes the first, where hmaf__reader_get looks; the first
 * takes its place. */
static void to_front(unsigned i)
{
    struct hmaf__reader_cache_entry first = hmaf__reader_cache[0];

    hmaf__reader_cache[0] = hmaf__reader_cache[i];
    hmaf__reader_cache[i] = first;
}

int hmaf__reader_get_slow(struct hmaf__readers *rs, struct hmaf__reader **out)
{
    struct hmaf__reader *r;

    pthread_mutex_lock(&rs->claim_lock);
    r = claim(rs, (int)syscall(SYS_gettid));
    pthread_mutex_unlock(&rs->claim_lock);
    if (r == NULL) {
        hmaf__log_error("more than %d threads use one session",
                        HMAF_READER_APP_SLOTS);
        return HMAF_ENOSPC;
    }
    hmaf__reader_cache[cache_next].id = rs->id;
    hmaf__reader_cache[cache_next].reader = r;
    to_front(cache_next);
    cache_next = (cache_next + 1) % HMAF_READER_CACHE;
    *out = r;
    return 0;
}

int hmaf__reader_get_cached(struct hmaf__readers *rs,
                            struct hmaf__reader **out)
{
    for (unsigned i = 1; i < HMAF_READER_CACHE; i++) {
        if (hmaf__reader_cache[i].id == rs->id) {
            to_front(i);
            *out = hmaf__reader_cache[0].reader;
            return 0;
        }
    }
    return hmaf__reader_get_slow(rs, out);
}

void hmaf__readers_synchronize(struct hmaf__readers *rs)
{
    if (!hmaf__readers_fence_free ||
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
        atomic_thread_fence(memory_order_seq_cst);
    }
    for (int i = 0; i < HMAF_READER_SLOTS; i++) {
        uint64_t seq = atomic_load_explicit(&rs->slot[i].seq,
                                            memory_order_acquire);
        /* Odd: inside a section that may use what was replaced. Any change
         * means it left; a new section sees the new structure. */
        for (int spins = 0;
             (seq & 1) && atomic_load_explicit(&rs->slot[i].seq,
                                               memory_order_acquire) == seq;
             spins++) {
            if (spins >= SPINS_BEFORE_YIELD) {
                sched_yield();
            }
        }
    }
    if (rs->drain != NULL) {
        rs->drain(rs->drain_arg);
    }
}

uint64_t hmaf__readers_sum(struct hmaf__readers *rs,
                           enum hmaf__reader_counter c)
{
    uint64_t sum = 0;

    for (int i = 0; i < HMAF_READER_SLOTS; i++) {
        sum += atomic_load_explicit(&rs->slot[i].counters[c],
                                    memory_order_relaxed);
    }
    return sum;
}
