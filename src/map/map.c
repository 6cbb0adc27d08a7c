/* Mapping mode: creating, translating and tearing down a mirror. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hmaf/error.h>
#include <hmaf/map.h>

#include "map/map_int.h"
#include "util/config.h"
#include "util/log.h"
#include "util/mirrors.h"
#include "util/stats.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define READAHEAD_DEFAULT 16

HMAF_API void hmaf_map_params_init(hmaf_map_params_t *params)
{
    if (params == NULL) {
        return;
    }
    memset(params, 0, sizeof(*params));
    params->size = sizeof(*params);
    params->readahead_max = READAHEAD_DEFAULT;
    hmaf__config_apply(HMAF_CFG_MAP, params);
}

/* Reserve the mirror at the host's own address, or (when allowed and that
 * address is taken here) wherever the kernel likes. */
static int reserve(struct hmaf_map *m)
{
    void *want = (void *)(uintptr_t)m->remote_base;
    void *at = mmap(want, m->len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

    if (at != MAP_FAILED && at != want) { /* kernels that ignore the flag */
        munmap(at, m->len);
        at = MAP_FAILED;
        errno = EEXIST;
    }
    if (at == MAP_FAILED && (m->params.flags & HMAF_MAP_ANYWHERE)) {
        at = mmap(NULL, m->len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (at == MAP_FAILED) {
        return errno == ENOMEM ? HMAF_ENOMEM : HMAF_EEXIST;
    }
    m->local_base = at;
    if (!m->writable) {
        mprotect(at, m->len, PROT_READ);
    }
    return 0;
}

static int check_params(const hmaf_map_params_t *p)
{
    return p == NULL ||
                   (p->size == sizeof(*p) &&
                    (p->flags & ~(unsigned)HMAF_MAP_FLAGS) == 0 &&
                    p->readahead_max <= HMAF_MAP_READAHEAD_MAX)
               ? 0
               : HMAF_EINVAL;
}

/* The range, rounded out to whole pages, must not wrap past 2^64. */
static int check_args(const hmaf_session_t *session, uint64_t remote_addr,
                      size_t len, const hmaf_map_params_t *params)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

    if (session == NULL || len == 0 || check_params(params) < 0) {
        return HMAF_EINVAL;
    }
    if (len > UINT64_MAX - remote_addr ||
        remote_addr + len > UINT64_MAX - (page - 1)) {
        return HMAF_EOVERFLOW;
    }
    return 0;
}

static int alloc_state(struct hmaf_map *m)
{
    m->state = calloc(m->npages, sizeof(*m->state));
    m->twin = calloc(m->npages, sizeof(*m->twin));
    m->staging = aligned_alloc(m->page_size,
                               m->page_size * (m->params.readahead_max + 1));
    return m->state != NULL && m->twin != NULL && m->staging != NULL
               ? 0
               : HMAF_ENOMEM;
}

static void link_map(struct hmaf_map *m)
{
    struct hmaf_session *s = m->session;

    pthread_mutex_lock(&s->maps_lock);
    m->next = s->maps;
    s->maps = m;
    pthread_mutex_unlock(&s->maps_lock);
}

/* First of all: no other mapping's fault may take pages from it now. */
static void unlink_map(struct hmaf_map *m)
{
    struct hmaf_session *s = m->session;

    pthread_mutex_lock(&s->maps_lock);
    for (struct hmaf_map **at = &s->maps; *at != NULL; at = &(*at)->next) {
        if (*at == m) {
            *at = m->next;
            break;
        }
    }
    pthread_mutex_unlock(&s->maps_lock);
}

static void free_map(struct hmaf_map *m)
{
    unlink_map(m);
    hmaf__mirrors_remove(m->local_base);
    hmaf__uffd_stop(m);
    pthread_mutex_lock(&m->lock);
    /* Up to the last resident page only: a huge, sparse mapping (or one
     * whose creation failed) is not walked page by page. */
    for (size_t p = 0; m->state != NULL && m->resident > 0 && p < m->npages;
         p++) {
        hmaf__map_drop(m, p);
    }
    pthread_mutex_unlock(&m->lock);
    if (m->local_base != NULL) {
        munmap(m->local_base, m->len);
    }
    free(m->state);
    free(m->twin);
    free(m->staging);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void init_geometry(struct hmaf_map *m, uint64_t remote_addr,
                          size_t len)
{
    uint64_t end;

    m->page_size = (size_t)sysconf(_SC_PAGESIZE);
    m->user_remote = remote_addr;
    m->user_len = len;
    m->remote_base = remote_addr & ~(uint64_t)(m->page_size - 1);
    end = (remote_addr + len + m->page_size - 1) &
          ~(uint64_t)(m->page_size - 1);
    m->len = (size_t)(end - m->remote_base);
    m->npages = m->len / m->page_size;
}

HMAF_API int hmaf_map_create(hmaf_session_t *session, uint64_t remote_addr,
                             size_t len, const hmaf_map_params_t *params,
                             hmaf_map_t **map_out)
{
    struct hmaf_map *m;
    int ret = check_args(session, remote_addr, len, params);

    if (ret < 0 || map_out == NULL) {
        return ret < 0 ? ret : HMAF_EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return HMAF_ENOMEM;
    }
    m->session = session;
    m->uffd = -1;
    pthread_mutex_init(&m->lock, NULL);
    hmaf_map_params_init(&m->params);
    if (params != NULL) {
        m->params = *params;
    }
    m->writable = !(m->params.flags & HMAF_MAP_READ_ONLY);
    init_geometry(m, remote_addr, len);
    /* The address range first: a length no address space holds fails
     * there, before page tables sized by it are asked for. */
    ret = reserve(m);
    if (ret == 0) {
        ret = alloc_state(m);
    }
    if (ret == 0) {
        ret = hmaf__uffd_open(m);
    }
    if (ret == 0) {
        ret = hmaf__uffd_start(m);
    }
    if (ret == 0) {
        ret = hmaf__mirrors_add(m->local_base, m->len);
    }
    if (ret < 0) {
        free_map(m);
        return ret;
    }
    link_map(m);
    *map_out = m;
    return 0;
}

HMAF_API void hmaf_map_destroy(hmaf_map_t *map)
{
    if (map != NULL) {
        free_map(map);
    }
}

HMAF_API void *hmaf_map_local(const hmaf_map_t *map, uint64_t remote_addr)
{
    if (map == NULL || remote_addr < map->user_remote ||
        remote_addr - map->user_remote >= map->user_len) {
        return NULL;
    }
    return map->local_base + (remote_addr - map->remote_base);
}

HMAF_API uint64_t hmaf_map_remote(const hmaf_map_t *map, const void *local)
{
    const uint8_t *p = local;

    if (map == NULL || p == NULL ||
        p < map->local_base + (map->user_remote - map->remote_base) ||
        p >= map->local_base + (map->user_remote - map->remote_base) +
                 map->user_len) {
        return 0;
    }
    return map->remote_base + (uint64_t)(p - map->local_base);
}

/* HMAF 0.1's hmaf_map_stats_t, the smallest a caller may pass. */
HMAF__STATS_SIZE_MIN_DEFINE(MAP_STATS_SIZE_MIN, hmaf_map_stats_t,
                            bytes_discarded);

HMAF_API int hmaf_map_stats(hmaf_map_t *map, hmaf_map_stats_t *stats_out)
{
    hmaf_map_stats_t st;
    size_t size;

    if (map == NULL ||
        hmaf__stats_size(stats_out, MAP_STATS_SIZE_MIN, &size) < 0) {
        return HMAF_EINVAL;
    }
    pthread_mutex_lock(&map->lock);
    st = map->stats;
    st.resident_bytes = (uint64_t)map->resident * map->page_size;
    pthread_mutex_unlock(&map->lock);
    hmaf__stats_put(stats_out, size, &st, sizeof(st));
    return 0;
}
