/*
 * Twins and write-back. A page's twin is its content as fetched (or last
 * synced); write-back sends exactly the byte runs where the page now
 * differs from it, never the bytes in between, so host writes to other
 * bytes of the same page survive. Everything here runs with m->lock held.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <hmaf/error.h>

#include "map/map_int.h"
#include "util/log.h"

/* Write-back segments gathered before one vectored write. */
#define RUNS_PER_WRITE 64

int hmaf__map_take_twin(struct hmaf_map *m, size_t page, const void *from)
{
    if (m->twin[page] == NULL) {
        m->twin[page] = malloc(m->page_size);
        if (m->twin[page] == NULL) {
            return HMAF_ENOMEM;
        }
        memcpy(m->twin[page], from, m->page_size);
    }
    m->state[page] |= PAGE_DIRTY;
    return 0;
}

/* Has the page really changed since its twin was taken? */
static int page_changed(const struct hmaf_map *m, size_t page)
{
    return (m->state[page] & PAGE_DIRTY) && m->twin[page] != NULL &&
           memcmp(hmaf__map_page(m, page), m->twin[page], m->page_size) != 0;
}

struct runs {
    hmaf_seg_t seg[RUNS_PER_WRITE];
    size_t n;
    uint64_t bytes;
};

static int flush_runs(struct hmaf_map *m, struct runs *r)
{
    int ret = r->n == 0 ? 0 : hmaf_session_writev(m->session, r->seg, r->n);

    if (ret == 0) {
        m->stats.bytes_written_back += r->bytes;
    }
    r->n = 0;
    r->bytes = 0;
    return ret;
}

/* Queue bytes [from, to) of a page, clipped to the mapped range: the
 * mirror is whole pages, the host range need not be. */
static int add_run(struct hmaf_map *m, struct runs *r, size_t page,
                   const uint8_t *src, size_t from, size_t to)
{
    uint64_t at = m->remote_base + page * m->page_size;
    uint64_t lo = at + from, hi = at + to;
    uint64_t end = m->user_remote + m->user_len;

    lo = lo > m->user_remote ? lo : m->user_remote;
    hi = hi < end ? hi : end;
    if (hi <= lo) {
        return 0;
    }
    r->seg[r->n++] = (hmaf_seg_t){
        .local = (void *)(src + (lo - at)),
        .remote_addr = lo,
        .len = (size_t)(hi - lo),
    };
    r->bytes += hi - lo;
    return r->n == RUNS_PER_WRITE ? flush_runs(m, r) : 0;
}

/* Write back the runs where `now` (the page, or a snapshot of it) differs
 * from the page's twin. */
int hmaf__map_write_back_from(struct hmaf_map *m, size_t page,
                              const uint8_t *now)
{
    const uint8_t *was = m->twin[page];
    struct runs r = {.n = 0};
    size_t i = 0;
    int ret = 0;

    if (!(m->state[page] & PAGE_DIRTY) || was == NULL) {
        return 0;
    }
    while (ret == 0 && i < m->page_size) {
        size_t start;
        while (i < m->page_size && now[i] == was[i]) {
            i++;
        }
        start = i;
        while (i < m->page_size && now[i] != was[i]) {
            i++;
        }
        if (i > start) {
            ret = add_run(m, &r, page, now, start, i);
        }
    }
    return ret == 0 ? flush_runs(m, &r) : ret;
}

void hmaf__map_discard(struct hmaf_map *m, size_t page, const uint8_t *now)
{
    const uint8_t *was = m->twin[page];
    uint64_t changed = 0;

    if (!(m->state[page] & PAGE_DIRTY) || was == NULL) {
        return;
    }
    for (size_t i = 0; i < m->page_size; i++) {
        changed += now[i] != was[i];
    }
    if (changed > 0 && m->stats.bytes_discarded == 0) {
        hmaf__log_warn("mapping at %#llx: evicting changes that cannot be "
                       "written back (counted in bytes_discarded)",
                       (unsigned long long)m->user_remote);
    }
    m->stats.bytes_discarded += changed;
}

int hmaf__map_write_back(struct hmaf_map *m, size_t page)
{
    return hmaf__map_write_back_from(m, page, hmaf__map_page(m, page));
}

void hmaf__map_drop(struct hmaf_map *m, size_t page)
{
    if (!(m->state[page] & PAGE_RESIDENT)) {
        return;
    }
    /* The next touch faults as missing and fetches afresh. */
    madvise(hmaf__map_page(m, page), m->page_size, MADV_DONTNEED);
    free(m->twin[page]);
    m->twin[page] = NULL;
    m->state[page] = 0;
    m->resident--;
    atomic_fetch_sub(&m->session->map_resident, m->page_size);
}

/* Without write tracking nothing makes a writer racing with us wait:
 * write back a snapshot and make it the twin. A store the snapshot
 * missed still differs from the twin and goes out with the next sync
 * (taking the page itself as the new twin lost it for good). */
static int sync_snapshot(struct hmaf_map *m, size_t page)
{
    int ret;

    if (m->twin[page] == NULL) {
        return 0;
    }
    memcpy(m->staging, hmaf__map_page(m, page), m->page_size);
    ret = hmaf__map_write_back_from(m, page, m->staging);
    if (ret == 0) {
        memcpy(m->twin[page], m->staging, m->page_size);
    }
    return ret;
}

static int sync_page(struct hmaf_map *m, size_t page)
{
    int ret;

    if (!m->track_wp) {
        return sync_snapshot(m, page);
    }
    /* Protect before diffing: a write racing with us faults, waits for
     * the lock, and takes its twin after we are done. Then the page is
     * clean, its twin dropped. */
    ret = hmaf__uffd_protect(m, page, 1, 1);
    if (ret == 0) {
        ret = hmaf__map_write_back(m, page);
    }
    if (ret == 0) {
        free(m->twin[page]);
        m->twin[page] = NULL;
        m->state[page] &= (uint8_t)~PAGE_DIRTY;
    }
    return ret;
}

HMAF_API int hmaf_map_sync(hmaf_map_t *map)
{
    int ret = 0;

    if (map == NULL) {
        return HMAF_EINVAL;
    }
    if (!map->writable) {
        return HMAF_EACCES;
    }
    pthread_mutex_lock(&map->lock);
    for (size_t p = 0; p < map->npages && ret == 0; p++) {
        if (map->state[p] & PAGE_DIRTY) {
            ret = sync_page(map, p);
        }
    }
    pthread_mutex_unlock(&map->lock);
    return ret;
}

HMAF_API int hmaf_map_refresh(hmaf_map_t *map, uint64_t remote_addr,
                              size_t len, unsigned flags)
{
    size_t first, last;

    if (map == NULL || len == 0 || (flags & ~HMAF_REFRESH_CLEAN_ONLY) ||
        remote_addr < map->user_remote ||
        remote_addr - map->user_remote >= map->user_len ||
        len > map->user_len - (remote_addr - map->user_remote)) {
        return HMAF_EINVAL;
    }
    first = (size_t)(remote_addr - map->remote_base) / map->page_size;
    last = (size_t)(remote_addr - map->remote_base + len - 1) / map->page_size;
    pthread_mutex_lock(&map->lock);
    for (size_t p = first; p <= last; p++) {
        if (!(flags & HMAF_REFRESH_CLEAN_ONLY) || !page_changed(map, p)) {
            hmaf__map_drop(map, p);
        }
    }
    pthread_mutex_unlock(&map->lock);
    return 0;
}
