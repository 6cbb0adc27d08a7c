/* Mapping mode internals, shared by the files of src/map/. */
#ifndef HMAF_MAP_MAP_INT_H
#define HMAF_MAP_MAP_INT_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <hmaf/map.h>

#include "core/session_int.h"

enum page_state {
    PAGE_RESIDENT = 0x1, /* fetched and installed */
    PAGE_DIRTY = 0x2,    /* written since fetched or synced: has a twin */
};

struct hmaf_map {
    struct hmaf_session *session;
    struct hmaf_map *next; /* the session's mappings, under its maps_lock */
    hmaf_map_params_t params;
    uint64_t remote_base; /* page-aligned; maps to local_base */
    uint8_t *local_base;
    size_t len;           /* page multiple */
    size_t page_size;     /* the kernel's */
    size_t npages;
    uint64_t user_remote; /* what the caller asked to map */
    size_t user_len;
    int writable;
    int track_wp;         /* first writes are caught with uffd WP */
    int move_warned;      /* eviction could not move a page out: said so */
    int uffd;
    int wake_pipe[2];     /* destroy wakes the handler thread */
    pthread_t thread;
    int has_thread;
    sem_t started;        /* the handler thread has its reader slot ... */
    int start_status;     /* ... or HMAF_ENOSPC */

    pthread_mutex_t lock; /* everything below */
    uint8_t *state;       /* enum page_state bits per page */
    uint8_t **twin;       /* per page: its content when fetched or synced */
    uint8_t *staging;     /* readahead_max pages: fetches land here */
    size_t resident;      /* pages */
    size_t clock_hand;    /* eviction sweeps pages in address order */
    size_t ra_next;       /* the page a sequential reader touches next */
    size_t ra_window;
    int move_refused;     /* this fault's eviction kept a written page */
    hmaf_map_stats_t stats;
};

/* uffd.c: the kernel interface */
int hmaf__uffd_open(struct hmaf_map *m);
int hmaf__uffd_copy(struct hmaf_map *m, size_t page, const void *src,
                    size_t npages, int write_protect);
int hmaf__uffd_protect(struct hmaf_map *m, size_t page, size_t npages,
                       int protect);
void hmaf__uffd_poison(struct hmaf_map *m, size_t page);
void hmaf__uffd_wake(struct hmaf_map *m, size_t page);
int hmaf__uffd_start(struct hmaf_map *m);
void hmaf__uffd_stop(struct hmaf_map *m);

/* fault.c: serving faults; called by the handler thread, lock not held */
void hmaf__map_missing(struct hmaf_map *m, size_t page, int is_write);
void hmaf__map_first_write(struct hmaf_map *m, size_t page);

/* writeback.c: with m->lock held */
int hmaf__map_write_back(struct hmaf_map *m, size_t page);
void hmaf__map_drop(struct hmaf_map *m, size_t page);
/* Count the changes of a page (its content now: `now`) that cannot be
 * written back, before it is dropped all the same. */
void hmaf__map_discard(struct hmaf_map *m, size_t page, const uint8_t *now);
/* Write back where `now` (the page, or a copy of it) differs from its
 * twin. */
int hmaf__map_write_back_from(struct hmaf_map *m, size_t page,
                              const uint8_t *now);
int hmaf__map_take_twin(struct hmaf_map *m, size_t page, const void *from);

static inline uint8_t *hmaf__map_page(const struct hmaf_map *m, size_t page)
{
    return m->local_base + page * m->page_size;
}

#endif
