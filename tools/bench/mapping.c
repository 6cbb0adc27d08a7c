/*
 * Mapping mode: the data area mirrored with hmaf_map_create(), against
 * the least a userfaultfd fault service can do.
 *
 * raw-uffd is that least: an anonymous region registered for MISSING
 * faults and one thread that serves each fault with process_vm_readv from
 * the host into a staging buffer and UFFDIO_COPY - one page, or 64 KiB
 * (RAW_RA_PAGES) from the faulting page on in scans, a fixed readahead.
 * Both handler threads are started from the pinned dpu thread and so share
 * its cpu, as the library's does.
 *
 * A unit of a KIND_FAULT pattern touches one word at the start of one page
 * (a page of the permutation below, or the next one); before each side of
 * a round every page is made missing again, so every timed touch is a
 * first touch. The second-touch pattern memcpys out of pages populated
 * beforehand.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hmaf/map.h>

#include "bench.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#define PAGE         ((size_t)4096)
#define MAP_PAGES    (DATA_LEN / PAGE)
#define RAW_RA_PAGES 16 /* 64 KiB */

struct raw_uffd {
    int fd;
    uint8_t *base; /* DATA_LEN, mirrors the data area */
    uint8_t *staging;
    pid_t pid;
    uint64_t remote;
    _Atomic unsigned ra; /* pages a fault fetches */
    int stop[2];         /* a pipe: written to stop the handler */
    pthread_t thread;
    int started;
};

struct mapping {
    hmaf_map_t *map;
    uint8_t *local; /* the mirror of the data area */
    struct raw_uffd raw;
    int raw_ok;
    uint32_t perm[MAP_PAGES]; /* random page order */
};

/* ------------------------------------------------------------------ */
/* raw-uffd                                                            */
/* ------------------------------------------------------------------ */

static void raw_serve(struct raw_uffd *r, uint64_t addr)
{
    size_t off = (size_t)(addr - (uintptr_t)r->base) & ~(PAGE - 1);
    size_t n = atomic_load_explicit(&r->ra, memory_order_relaxed);
    struct iovec l, rem;
    struct uffdio_copy copy;
    struct uffdio_range wake = {.start = (uintptr_t)r->base + off,
                                .len = PAGE};

    if (n > (DATA_LEN - off) / PAGE) {
        n = (DATA_LEN - off) / PAGE;
    }
    l = (struct iovec){.iov_base = r->staging, .iov_len = n * PAGE};
    rem = (struct iovec){.iov_base = (void *)(uintptr_t)(r->remote + off),
                         .iov_len = n * PAGE};
    if (process_vm_readv(r->pid, &l, 1, &rem, 1, 0) != (ssize_t)(n * PAGE)) {
        memset(r->staging, 0, n * PAGE); /* the check will say so */
    }
    copy = (struct uffdio_copy){.dst = (uintptr_t)r->base + off,
                                .src = (uintptr_t)r->staging,
                                .len = n * PAGE};
    if (ioctl(r->fd, UFFDIO_COPY, &copy) != 0) {
        /* Some page of the window was there already: the faulting one
         * was copied before it (or raced in), so wake the thread. */
        (void)ioctl(r->fd, UFFDIO_WAKE, &wake);
    }
}

static void *raw_handler(void *arg)
{
    struct raw_uffd *r = arg;
    struct pollfd fds[2] = {{.fd = r->fd, .events = POLLIN},
                            {.fd = r->stop[0], .events = POLLIN}};
    struct uffd_msg msg;

    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR) {
            break;
        }
        if (fds[1].revents != 0) {
            break;
        }
        if (read(r->fd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg) &&
            msg.event == UFFD_EVENT_PAGEFAULT) {
            raw_serve(r, msg.arg.pagefault.address);
        }
    }
    return NULL;
}

static int raw_uffd_fd(void)
{
    int fd = (int)syscall(SYS_userfaultfd,
                          O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    struct uffdio_api api = {.api = UFFD_API};

    if (fd < 0 && errno == EINVAL) { /* before Linux 5.11 */
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    }
    if (fd >= 0 && ioctl(fd, UFFDIO_API, &api) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int raw_open(struct raw_uffd *r, const struct bench *b)
{
    struct uffdio_register reg;

    *r = (struct raw_uffd){.fd = raw_uffd_fd(),
                           .pid = b->pid,
                           .remote = b->buf,
                           .ra = 1,
                           .stop = {-1, -1}};
    r->base = mmap(NULL, DATA_LEN, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r->staging = aligned_alloc(PAGE, RAW_RA_PAGES * PAGE);
    if (r->fd < 0 || r->base == MAP_FAILED || r->staging == NULL ||
        pipe2(r->stop, O_CLOEXEC) != 0) {
        return -1;
    }
    reg = (struct uffdio_register){
        .range = {.start = (uintptr_t)r->base, .len = DATA_LEN},
        .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(r->fd, UFFDIO_REGISTER, &reg) != 0) {
        return -1;
    }
    r->started = pthread_create(&r->thread, NULL, raw_handler, r) == 0;
    return r->started ? 0 : -1;
}

static void raw_close(struct raw_uffd *r)
{
    if (r->started) {
        (void)!write(r->stop[1], "x", 1);
        pthread_join(r->thread, NULL);
    }
    for (int i = 0; i < 2; i++) {
        if (r->stop[i] >= 0) {
            close(r->stop[i]);
        }
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    if (r->base != NULL && r->base != MAP_FAILED) {
        munmap(r->base, DATA_LEN);
    }
    free(r->staging);
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

int mapping_open(struct bench *b)
{
    struct mapping *m = calloc(1, sizeof(*m));
    hmaf_map_params_t p;
    int ret;

    if (m == NULL) {
        return -1;
    }
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_READ_ONLY | HMAF_MAP_ANYWHERE;
    ret = hmaf_map_create(b->s, b->buf, DATA_LEN, &p, &m->map);
    if (ret < 0) {
        snprintf(b->map_note, sizeof(b->map_note), "hmaf_map_create: %s",
                 hmaf_strerror(ret));
        free(m);
        return 0; /* HMAF_ENOTSUP, typically: not available here */
    }
    m->local = hmaf_map_local(m->map, b->buf);
    /* Split mode: raw-uffd reads the host by its pid, which is not here
     * (the run's header says so). */
    m->raw = (struct raw_uffd){.fd = -1, .stop = {-1, -1}};
    m->raw_ok = !b->split && raw_open(&m->raw, b) == 0;
    snprintf(b->map_note, sizeof(b->map_note), "%s",
             m->raw_ok || b->split
                 ? ""
                 : "no raw userfaultfd region: raw-uffd sits out");
    layout_permutation(m->perm, MAP_PAGES, 7);
    b->map = m;
    return 0;
}

void mapping_close(struct bench *b)
{
    struct mapping *m = b->map;

    if (m != NULL) {
        raw_close(&m->raw);
        hmaf_map_destroy(m->map);
        free(m);
        b->map = NULL;
    }
}

void mapping_stats(const struct bench *b, char *buf, size_t cap)
{
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;

    if (b->map == NULL || hmaf_map_stats(b->map->map, &st) != 0) {
        snprintf(buf, cap, "-");
        return;
    }
    snprintf(buf, cap,
             "faults %llu, pages fetched %llu (%llu read ahead), "
             "fault errors %llu",
             (unsigned long long)st.faults,
             (unsigned long long)st.pages_fetched,
             (unsigned long long)st.readahead_pages,
             (unsigned long long)st.fault_errors);
}

/* ------------------------------------------------------------------ */
/* Units                                                               */
/* ------------------------------------------------------------------ */

uint64_t mapping_offset(const struct bench *b, const struct cell *cell,
                        unsigned unit)
{
    size_t page = unit % MAP_PAGES;

    return (cell->p->where == AT_RANDOM ? b->map->perm[page] : page) * PAGE;
}

/* Read the first word of the unit's page at base: the touch. */
static void touch(struct worker *w, const uint8_t *base,
                  const struct cell *cell, unsigned unit)
{
    const volatile uint64_t *word =
        (const volatile uint64_t *)(const void *)(base +
                                                   mapping_offset(w->b, cell,
                                                                  unit));
    uint64_t v = *word;

    memcpy(w->dst, &v, sizeof(v));
}

int rawuffd_fault(struct worker *w, const struct cell *cell, unsigned unit)
{
    struct raw_uffd *r = &w->b->map->raw;

    atomic_store_explicit(&r->ra, cell->p->where == AT_SEQ ? RAW_RA_PAGES : 1,
                          memory_order_relaxed);
    touch(w, r->base, cell, unit);
    return 0;
}

int hmafmap_fault(struct worker *w, const struct cell *cell, unsigned unit)
{
    touch(w, w->b->map->local, cell, unit);
    return 0;
}

int hmafmap_reread(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    if (is_write) {
        return -1;
    }
    memcpy(seg->local, w->b->map->local + (seg->remote_addr - w->b->buf),
           seg->len);
    return 0;
}

/* Every page missing again. */
int rawuffd_reset(struct bench *b)
{
    return madvise(b->map->raw.base, DATA_LEN, MADV_DONTNEED);
}

int hmafmap_reset(struct bench *b)
{
    return hmaf_map_refresh(b->map->map, b->buf, DATA_LEN, 0);
}

/* The second-touch pattern's pages present (once fetched, they stay). */
int hmafmap_populate(struct bench *b)
{
    const volatile uint8_t *at = b->map->local + SAME_OFF;

    for (size_t off = 0; off < MAP_REREAD_LEN; off += PAGE) {
        (void)at[off];
    }
    return 0;
}

int rawuffd_usable(const struct bench *b)
{
    return b->map != NULL && b->map->raw_ok;
}

int hmafmap_usable(const struct bench *b)
{
    return b->map != NULL;
}
