/*
 * Serving faults: fetch the missing page (and the pages after it when the
 * access looks sequential) with one engine read, install them, and keep
 * the session under its resident cap by evicting older pages.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <hmaf/error.h>

#include "map/map_int.h"
#include "util/config.h"
#include "util/log.h"

/* Readahead: grow on sequential faults, back to one page otherwise. */
static size_t readahead_window(struct hmaf_map *m, size_t page)
{
    size_t max = m->params.readahead_max == 0 ? 1 : m->params.readahead_max;

    if (page == m->ra_next && page != 0) {
        m->ra_window = m->ra_window * 2 > max ? max : m->ra_window * 2;
    } else {
        m->ra_window = 1;
    }
    return m->ra_window;
}

/* Pages to fetch from `page` on: up to window, stopping at the end of the
 * mapping or at a page already present. */
static size_t fetch_span(const struct hmaf_map *m, size_t page, size_t window)
{
    size_t n = 1;

    while (n < window && page + n < m->npages &&
           !(m->state[page + n] & PAGE_RESIDENT)) {
        n++;
    }
    return n;
}

/* Waiting for room that another handler's fetch holds: this long at a
 * time, this many times at most. */
#define ROOM_WAIT_NS 100000
#define ROOM_WAITS_MAX 10000

/* Room in the session's cap for `bytes`, taken at once (compare and
 * swap), so that no two fault handlers count on the same room. */
static int reserve(struct hmaf_session *s, uint64_t bytes)
{
    uint64_t cap = s->params.map_max_resident;
    uint64_t cur = atomic_load(&s->map_resident);

    do {
        if (bytes > cap || cur > cap - bytes) {
            return 0;
        }
    } while (!atomic_compare_exchange_weak(&s->map_resident, &cur,
                                           cur + bytes));
    return 1;
}

/* HMAF_MAP_MOVE=0 makes every move out fail, as on a kernel without
 * MREMAP_DONTUNMAP, so that path can be tested anywhere. */
static int move_allowed(void)
{
    uint64_t move = 1;

    (void)hmaf__config_value(HMAF_CFG_MAP_MOVE, &move);
    return move != 0;
}

static uint8_t *try_move_out(struct hmaf_map *m, size_t p)
{
    /* new_address NULL, said: the kernel looks at it whatever the flags,
     * and the variadic wrapper would pass a stray register. */
    void *moved = mremap(hmaf__map_page(m, p), m->page_size, m->page_size,
                         MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);

    return moved == MAP_FAILED ? NULL : moved;
}

/* A writable page without write protection is moved out of the mirror
 * first (mremap, leaving the mirror's range in place, empty): a writer
 * racing the eviction faults on the missing page and waits for the fault
 * thread, and gets the page back fetched afresh — with what is written
 * back from the moved copy now. NULL where the kernel will not (before
 * Linux 5.7, or a refusal seen once under load): asked twice, then the
 * page stays, because dropping it in place could lose such a store. */
static uint8_t *move_out(struct hmaf_map *m, size_t p)
{
    uint8_t *moved = NULL;

    if (move_allowed()) {
        moved = try_move_out(m, p);
        if (moved == NULL) {
            sched_yield();
            moved = try_move_out(m, p);
        }
    } else {
        errno = ENOSYS;
    }
    if (moved == NULL) {
        if (!m->move_warned) {
            hmaf__log_warn("mapping: mremap(MREMAP_DONTUNMAP): %m; written "
                           "pages stay, over map_max_resident if need be");
            m->move_warned = 1;
        }
        m->move_refused = 1;
    }
    return moved;
}

/* Write back and drop page p; 0 when it must stay. */
static int evict_page(struct hmaf_map *m, size_t p)
{
    uint8_t *moved = NULL;
    const uint8_t *now;
    int dirty = (m->state[p] & PAGE_DIRTY) != 0;

    /* With write protection the page is protected first, so a racing
     * writer waits instead of writing into a page on its way out. */
    if (dirty && m->track_wp && hmaf__uffd_protect(m, p, 1, 1) < 0) {
        return 0;
    }
    if (dirty && !m->track_wp) {
        moved = move_out(m, p);
        if (moved == NULL) {
            return 0;
        }
    }
    now = moved != NULL ? moved : hmaf__map_page(m, p);
    if (hmaf__map_write_back_from(m, p, now) < 0) {
        hmaf__map_discard(m, p, now);
    }
    hmaf__map_drop(m, p);
    if (moved != NULL) {
        munmap(moved, m->page_size);
    }
    m->stats.evictions++;
    return 1;
}

/* Evict one page of m, in address order from the clock hand, skipping
 * [keep, keep + n); m->lock held. 1 when a page went. A change that can
 * no longer be written back goes with its page (counted): the cap is a
 * bound, whatever the exposure allows. */
static int evict_one(struct hmaf_map *m, size_t keep, size_t n)
{
    for (size_t scanned = 0; scanned < m->npages && m->resident > 0;
         scanned++) {
        size_t p = m->clock_hand;
        m->clock_hand = (m->clock_hand + 1) % m->npages;
        if (!(m->state[p] & PAGE_RESIDENT) || (p >= keep && p - keep < n)) {
            continue;
        }
        if (evict_page(m, p)) {
            return 1;
        }
    }
    return 0;
}

/* Another mapping of the session gives a page; *kept is set when one
 * kept a written page it could not move out. Called without m->lock: only
 * one mapping's lock is ever held, after the session's list lock. */
static int evict_elsewhere(struct hmaf_map *m, int *kept)
{
    struct hmaf_session *s = m->session;
    int evicted = 0;

    pthread_mutex_lock(&s->maps_lock);
    for (struct hmaf_map *o = s->maps; o != NULL && !evicted; o = o->next) {
        if (o != m) {
            pthread_mutex_lock(&o->lock);
            o->move_refused = 0;
            evicted = evict_one(o, 0, 0);
            *kept |= o->move_refused;
            pthread_mutex_unlock(&o->lock);
        }
    }
    pthread_mutex_unlock(&s->maps_lock);
    return evicted;
}

/* Reserve room for the n pages at `page` (m->lock held, dropped while
 * other mappings are asked): this mapping's older pages go first, then
 * the readahead, then other mappings' pages. What cannot be evicted at
 * all is another handler's fetch in flight: it is resident, and so
 * evictable, a moment later. Returns the pages reserved (>= 1). */
static size_t make_room(struct hmaf_map *m, size_t page, size_t n)
{
    int kept = 0, evicted;

    m->move_refused = 0;
    for (unsigned waits = 0;;) {
        if (reserve(m->session, (uint64_t)n * m->page_size)) {
            return n;
        }
        if (waits == ROOM_WAITS_MAX) {
            /* Nothing gave way for a second: a page that cannot even be
             * write-protected. Better over the cap than a hung fault. */
            hmaf__log_error("mapping: no room under map_max_resident; "
                            "going over it");
            atomic_fetch_add(&m->session->map_resident,
                             (uint64_t)n * m->page_size);
            return n;
        }
        if (evict_one(m, page, n)) {
            continue;
        }
        if (n > 1) {
            n = 1;
            continue;
        }
        kept |= m->move_refused; /* read under the lock: others reset it */
        pthread_mutex_unlock(&m->lock);
        evicted = evict_elsewhere(m, &kept);
        if (!evicted && !kept) {
            nanosleep(&(struct timespec){0, ROOM_WAIT_NS}, NULL);
            waits++;
        }
        pthread_mutex_lock(&m->lock);
        if (!evicted && kept) {
            /* Written pages the kernel would not move out: over the cap
             * rather than a lost store (said once, in move_out). */
            atomic_fetch_add(&m->session->map_resident,
                             (uint64_t)n * m->page_size);
            return n;
        }
    }
}

/* No more pages than the cap holds, so a fault never waits for room it
 * can never get. */
static size_t within_cap(const struct hmaf_map *m, size_t n)
{
    uint64_t pages = m->session->params.map_max_resident / m->page_size;

    return pages < n ? (size_t)pages : n;
}

/* The faulting page alone, clipped to what the caller mapped: the mirror
 * is whole pages, but the range (typically an exposure) need not be, and
 * the bytes of the page outside it read as zero. */
static int fetch_clipped(struct hmaf_map *m, size_t page)
{
    uint64_t at = m->remote_base + (uint64_t)page * m->page_size;
    uint64_t from = at > m->user_remote ? at : m->user_remote;
    uint64_t end = m->user_remote + m->user_len;
    uint64_t to = at + m->page_size < end ? at + m->page_size : end;

    memset(m->staging, 0, m->page_size);
    if (to <= from) {
        return HMAF_EFAULT;
    }
    return hmaf_session_read(m->session, m->staging + (from - at), from,
                             (size_t)(to - from));
}

/* Read n pages from the host; one that runs into what the host does not
 * expose is cut back to the faulting page, clipped to the mapped range. */
static int fetch(struct hmaf_map *m, size_t page, size_t *n)
{
    uint64_t at = m->remote_base + (uint64_t)page * m->page_size;
    int ret = hmaf_session_read(m->session, m->staging, at,
                                *n * m->page_size);

    if (ret == HMAF_EFAULT) {
        *n = 1;
        ret = fetch_clipped(m, page);
    }
    return ret;
}

/* The session's count took them at reservation. */
static void mark_resident(struct hmaf_map *m, size_t page, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        m->state[page + i] |= PAGE_RESIDENT;
    }
    m->resident += n;
    m->stats.pages_fetched += n;
    m->stats.readahead_pages += n - 1;
    m->ra_next = page + n;
}

/*
 * A write to a missing page: it is installed writable at once with its
 * twin taken from the fetched bytes, saving the write-protect round trip.
 * Without write tracking every fetched page gets a twin.
 */
static int twin_fetched(struct hmaf_map *m, size_t page, size_t n,
                        int is_write)
{
    for (size_t i = 0; i < n; i++) {
        if (m->writable && (!m->track_wp || (is_write && i == 0))) {
            int ret = hmaf__map_take_twin(m, page + i,
                                          m->staging + i * m->page_size);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

static int install(struct hmaf_map *m, size_t page, size_t n, int is_write)
{
    int ret = twin_fetched(m, page, n, is_write);

    if (ret < 0) {
        return ret;
    }
    if (m->track_wp && is_write) {
        /* The faulting page writable, the readahead protected. */
        ret = hmaf__uffd_copy(m, page, m->staging, 1, 0);
        if (ret == 0 && n > 1) {
            ret = hmaf__uffd_copy(m, page + 1, m->staging + m->page_size,
                                  n - 1, 1);
        }
    } else {
        ret = hmaf__uffd_copy(m, page, m->staging, n, m->track_wp);
    }
    return ret;
}

void hmaf__map_missing(struct hmaf_map *m, size_t page, int is_write)
{
    size_t n;
    int ret = 0;

    pthread_mutex_lock(&m->lock);
    m->stats.faults++;
    if (!(m->state[page] & PAGE_RESIDENT)) {
        size_t reserved;
        n = within_cap(m, fetch_span(m, page, readahead_window(m, page)));
        n = reserved = make_room(m, page, n);
        ret = fetch(m, page, &n);
        if (ret == 0) {
            ret = install(m, page, n, is_write && m->writable);
        }
        if (ret == 0) {
            mark_resident(m, page, n);
        }
        /* A failed fetch, or one cut back to a page, holds less room. */
        atomic_fetch_sub(&m->session->map_resident,
                         (uint64_t)(reserved - (ret == 0 ? n : 0)) *
                             m->page_size);
    }
    if (ret < 0) {
        hmaf__log_info("mapping: page at %#llx: %s",
                       (unsigned long long)(m->remote_base +
                                            page * m->page_size),
                       hmaf_strerror(ret));
        m->stats.fault_errors++;
        hmaf__uffd_poison(m, page);
    }
    pthread_mutex_unlock(&m->lock);
}

void hmaf__map_first_write(struct hmaf_map *m, size_t page)
{
    int ret;

    pthread_mutex_lock(&m->lock);
    if (!(m->state[page] & PAGE_RESIDENT)) {
        /* Evicted or refreshed meanwhile: let the writer fault afresh. */
        hmaf__uffd_wake(m, page);
        pthread_mutex_unlock(&m->lock);
        return;
    }
    m->stats.write_faults++;
    ret = hmaf__map_take_twin(m, page, hmaf__map_page(m, page));
    if (ret == 0) {
        ret = hmaf__uffd_protect(m, page, 1, 0); /* wakes the writer */
    }
    if (ret < 0) {
        m->stats.fault_errors++;
        hmaf__uffd_poison(m, page);
    }
    pthread_mutex_unlock(&m->lock);
}
