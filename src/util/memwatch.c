/*
 * Memory watch (memwatch.h) on userfaultfd events.
 *
 * The watch thread reads events as soon as they come and queues the
 * changed ranges for every consumer; drain() hands a consumer its own.
 * The thread never takes a lock a consumer may hold while it unmaps
 * something (a free() under the consumer's lock may trim the heap inside a
 * watched range, and that munmap waits until its event is read): the
 * queue lock is held only around plain stores.
 *
 * The one window left is between the thread's read() (which lets the
 * unmapping thread go on) and the queueing: `reading` covers it, and
 * drain() waits for it to close before looking at the queue. What the
 * thread does to the kernel's registrations because of an event (a
 * remapped range, a fault) is also done before `reading` drops, so a
 * consumer that drained has nothing of that still to come.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "util/config.h"
#include "util/log.h"
#include "util/memwatch.h"
#include "util/thread.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ  22
#define MADV_POPULATE_WRITE 23
#endif

#define WATCH_EVENTS                                                           \
    (UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |                    \
     UFFD_FEATURE_EVENT_REMAP)
#define QUEUE_CAP     256
#define MSGS_PER_READ 32

struct change {
    uint64_t start, len;
};

/* One consumer: its queue of changes. */
struct hmaf__memwatch {
    struct hmaf__memwatch *next; /* under the queue lock */
    atomic_uint queued;          /* entries, or lost: drain has work */
    struct change queue[QUEUE_CAP];
    unsigned nqueue;
    int lost;
};

struct watched {
    uint64_t start, len;
    const struct hmaf__memwatch *owner;
};

static struct {
    pthread_mutex_t lock; /* refs, the thread, ranges */
    unsigned refs;
    int uffd, stop_fd;
    int missing_mode; /* no write-protect mode in this kernel */
    uint64_t page;
    pthread_t thread;
    struct watched *ranges;
    size_t nranges, cap;
    pthread_mutex_t queue_lock; /* consumers and their queues */
    struct hmaf__memwatch *consumers;
    atomic_int reading; /* the thread has read events not yet settled */
} the_watch = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .queue_lock = PTHREAD_MUTEX_INITIALIZER,
    .uffd = -1,
    .stop_fd = -1,
};

/* ---- the watch thread ---- */

static void queue_change(struct hmaf__memwatch *c, uint64_t start,
                         uint64_t len)
{
    if (c->nqueue == QUEUE_CAP) {
        c->lost = 1;
    } else {
        c->queue[c->nqueue++] = (struct change){start, len};
    }
    atomic_store(&c->queued, c->nqueue + (unsigned)c->lost);
}

static int msg_change(const struct uffd_msg *m, struct change *out)
{
    switch (m->event) {
    case UFFD_EVENT_UNMAP:
    case UFFD_EVENT_REMOVE:
        *out = (struct change){m->arg.remove.start,
                               m->arg.remove.end - m->arg.remove.start};
        return 1;
    case UFFD_EVENT_REMAP:
        *out = (struct change){m->arg.remap.from, m->arg.remap.len};
        return 1;
    case UFFD_EVENT_PAGEFAULT:
        *out = (struct change){m->arg.pagefault.address &
                                   ~(the_watch.page - 1),
                               the_watch.page};
        return 1;
    default:
        return 0;
    }
}

static void deliver(const struct uffd_msg *msgs, size_t n)
{
    pthread_mutex_lock(&the_watch.queue_lock);
    for (size_t i = 0; i < n; i++) {
        struct change ch;
        if (!msg_change(&msgs[i], &ch)) {
            continue;
        }
        for (struct hmaf__memwatch *c = the_watch.consumers; c != NULL;
             c = c->next) {
            queue_change(c, ch.start, ch.len);
        }
    }
    pthread_mutex_unlock(&the_watch.queue_lock);
}

/* A fault in a watched range: in missing mode a page was dropped (its
 * change is queued); a dropped private anonymous page reads as zeros, so
 * map the zero page and let the thread go on. In write-protect mode it
 * cannot happen (nothing is protected); lift any protection. */
static void serve_fault(const struct uffd_msg *m)
{
    uint64_t page = m->arg.pagefault.address & ~(the_watch.page - 1);
    struct uffdio_range range = {.start = page, .len = the_watch.page};

    if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
        struct uffdio_writeprotect wp = {.range = range, .mode = 0};
        (void)ioctl(the_watch.uffd, UFFDIO_WRITEPROTECT, &wp);
        return;
    }
    struct uffdio_zeropage zero = {.range = range, .mode = 0};
    if (ioctl(the_watch.uffd, UFFDIO_ZEROPAGE, &zero) != 0 &&
        errno != EEXIST && errno != EAGAIN) {
        /* cannot serve it: stop watching the page, the kernel will */
        (void)ioctl(the_watch.uffd, UFFDIO_UNREGISTER, &range);
    }
    (void)ioctl(the_watch.uffd, UFFDIO_WAKE, &range);
}

/* A remapped range keeps its registration at its new address, where
 * nobody watches it: drop that. */
static void settle(const struct uffd_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
            serve_fault(&msgs[i]);
        } else if (msgs[i].event == UFFD_EVENT_REMAP) {
            struct uffdio_range to = {.start = msgs[i].arg.remap.to,
                                      .len = msgs[i].arg.remap.len};
            (void)ioctl(the_watch.uffd, UFFDIO_UNREGISTER, &to);
        }
    }
}

/* Runs until told to stop, whatever happens: an unmapping thread waits
 * for its event to be read, so a watch thread that quit would hang it. */
static void *watch_thread(void *arg)
{
    struct pollfd fds[2] = {{.fd = the_watch.uffd, .events = POLLIN},
                            {.fd = the_watch.stop_fd, .events = POLLIN}};

    (void)arg;
    for (;;) {
        struct uffd_msg msgs[MSGS_PER_READ];
        ssize_t n;

        if (poll(fds, 2, -1) < 0) {
            nanosleep(&(struct timespec){0, 1000000}, NULL);
            continue;
        }
        if (fds[1].revents != 0) {
            return NULL;
        }
        atomic_store(&the_watch.reading, 1);
        n = read(the_watch.uffd, msgs, sizeof(msgs));
        if (n > 0) {
            deliver(msgs, (size_t)n / sizeof(msgs[0]));
            settle(msgs, (size_t)n / sizeof(msgs[0]));
        }
        atomic_store(&the_watch.reading, 0);
    }
}

/* ---- starting and stopping (under the_watch.lock) ---- */

/* Which features the kernel has: asking with none set reports them all
 * (an fd takes one UFFDIO_API, so this one is thrown away). */
static uint64_t kernel_features(int *err_out)
{
    struct uffdio_api api = {.api = UFFD_API};
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);

    if (fd < 0) {
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    }
    if (fd < 0) {
        *err_out = errno;
        return 0;
    }
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        api.features = 0;
    }
    close(fd);
    return api.features;
}

/* userfaultfd(2) refused: say which rule, once, for whoever falls back
 * (the doca engine stages every transfer then). A full descriptor (missing
 * mode) is what vm.unprivileged_userfaultfd=0 forbids without
 * CAP_SYS_PTRACE; a user-mode-only one only a seccomp filter or a
 * security module does. */
static int denied(int err, int full)
{
    if (err != EPERM && err != EACCES) {
        hmaf__log_info("memory watch unavailable: userfaultfd: %s",
                       strerror(err));
        return HMAF_ENOTSUP;
    }
    hmaf__log_info("memory watch: userfaultfd denied (%s): %s",
                   full ? "seccomp, or vm.unprivileged_userfaultfd=0 "
                          "without CAP_SYS_PTRACE"
                        : "seccomp, or a security module",
                   strerror(err));
    return HMAF_EPERM;
}

/* Write-protect mode needs no faults served, so a user-mode-only fd does.
 * Missing mode must see the kernel's own faults too (a read(2) into a
 * dropped page), or those would fail with EFAULT: only a full fd will do.
 * HMAF_MEMWATCH_WP=0 takes missing mode where write-protect mode exists,
 * so both are tested on one machine. */
static int open_uffd(void)
{
    int errno_of_features = 0;
    uint64_t have = kernel_features(&errno_of_features);
    uint64_t wp = 1;
    struct uffdio_api api = {.api = UFFD_API, .features = WATCH_EVENTS};

    if (have == 0 && errno_of_features != 0) {
        return denied(errno_of_features, 0);
    }
    if ((have & WATCH_EVENTS) != WATCH_EVENTS) {
        return HMAF_ENOTSUP;
    }
    (void)hmaf__config_value(HMAF_CFG_MEMWATCH_WP, &wp);
    the_watch.missing_mode = !(have & UFFD_FEATURE_PAGEFAULT_FLAG_WP) || !wp;
    if (the_watch.missing_mode) {
        the_watch.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    } else {
        api.features |= UFFD_FEATURE_PAGEFAULT_FLAG_WP;
        the_watch.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK |
                                                           UFFD_USER_MODE_ONLY);
    }
    if (the_watch.uffd < 0) {
        return denied(errno, the_watch.missing_mode);
    }
    if (ioctl(the_watch.uffd, UFFDIO_API, &api) != 0) {
        hmaf__log_debug("memory watch unavailable (%s mode): %m",
                        the_watch.missing_mode ? "missing" : "write-protect");
        return HMAF_ENOTSUP;
    }
    return 0;
}

static void close_fds(void)
{
    if (the_watch.uffd >= 0) {
        close(the_watch.uffd);
    }
    if (the_watch.stop_fd >= 0) {
        close(the_watch.stop_fd);
    }
    the_watch.uffd = the_watch.stop_fd = -1;
}

static int start_watch(void)
{
    int ret;

    the_watch.page = (uint64_t)sysconf(_SC_PAGESIZE);
    ret = open_uffd();
    if (ret != 0) {
        close_fds();
        return ret;
    }
    the_watch.stop_fd = eventfd(0, EFD_CLOEXEC);
    if (the_watch.stop_fd < 0 ||
        hmaf__thread_start(&the_watch.thread, watch_thread, NULL) != 0) {
        close_fds();
        return HMAF_ENOTSUP;
    }
    return 0;
}

/* Closing the userfaultfd unregisters every range. */
static void stop_watch(void)
{
    uint64_t one = 1;

    if (write(the_watch.stop_fd, &one, sizeof(one)) != sizeof(one)) {
        hmaf__log_warn("memory watch: stop: %m");
    }
    pthread_join(the_watch.thread, NULL);
    close_fds();
    free(the_watch.ranges);
    the_watch.ranges = NULL;
    the_watch.nranges = the_watch.cap = 0;
}

/* A forked child has no watch thread and must not use the parent's
 * userfaultfd (it registers ranges of the parent's memory). */
static void forget_in_child(void)
{
    close_fds();
    the_watch.refs = 0;
    the_watch.consumers = NULL;
    the_watch.ranges = NULL;
    the_watch.nranges = the_watch.cap = 0;
    pthread_mutex_init(&the_watch.lock, NULL);
    pthread_mutex_init(&the_watch.queue_lock, NULL);
}

static void install_fork_handler(void)
{
    (void)pthread_atfork(NULL, NULL, forget_in_child);
}

int hmaf__memwatch_open(struct hmaf__memwatch **watch_out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct hmaf__memwatch *c = calloc(1, sizeof(*c));
    int ret = 0;

    if (c == NULL) {
        return HMAF_ENOMEM;
    }
    pthread_once(&once, install_fork_handler);
    pthread_mutex_lock(&the_watch.lock);
    if (the_watch.refs == 0) {
        ret = start_watch();
    }
    if (ret == 0) {
        the_watch.refs++;
        pthread_mutex_lock(&the_watch.queue_lock);
        c->next = the_watch.consumers;
        the_watch.consumers = c;
        pthread_mutex_unlock(&the_watch.queue_lock);
    }
    pthread_mutex_unlock(&the_watch.lock);
    if (ret < 0) {
        free(c);
        return ret;
    }
    *watch_out = c;
    return 0;
}

/* ---- ranges (under the_watch.lock) ---- */

/* Unregister the parts of [start, end) no remaining range covers. */
static void unregister_uncovered(uint64_t start, uint64_t end)
{
    while (start < end) {
        uint64_t gap_end = end;
        int covered = 0;

        for (size_t i = 0; i < the_watch.nranges; i++) {
            uint64_t a = the_watch.ranges[i].start;
            uint64_t b = a + the_watch.ranges[i].len;

            if (a <= start && b > start) {
                start = b; /* covered up to b; look again from there */
                covered = 1;
                break;
            }
            if (a > start && a < gap_end) {
                gap_end = a;
            }
        }
        if (!covered) {
            struct uffdio_range range = {.start = start,
                                         .len = gap_end - start};
            /* fails where the range is gone already: nothing to undo */
            (void)ioctl(the_watch.uffd, UFFDIO_UNREGISTER, &range);
            start = gap_end;
        }
    }
}

static void remove_at(size_t i)
{
    struct watched w = the_watch.ranges[i];

    the_watch.ranges[i] = the_watch.ranges[--the_watch.nranges];
    unregister_uncovered(w.start, w.start + w.len);
}

void hmaf__memwatch_close(struct hmaf__memwatch *c)
{
    struct hmaf__memwatch **link = &the_watch.consumers;

    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&the_watch.lock);
    for (size_t i = the_watch.nranges; i-- > 0;) {
        if (the_watch.ranges[i].owner == c) {
            remove_at(i);
        }
    }
    pthread_mutex_lock(&the_watch.queue_lock);
    while (*link != c) {
        link = &(*link)->next;
    }
    *link = c->next;
    pthread_mutex_unlock(&the_watch.queue_lock);
    if (--the_watch.refs == 0) {
        stop_watch();
    }
    pthread_mutex_unlock(&the_watch.lock);
    free(c);
}

/* Private anonymous memory throughout: every mapping over the range is
 * private, backed by no file or device (inode 0), and not a special
 * kernel area. One read of /proc/self/maps. */
static int listed_private_anonymous(uint64_t start, uint64_t end)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    char line[512];
    uint64_t covered = start;

    if (maps == NULL) {
        return 0;
    }
    while (covered < end && fgets(line, sizeof(line), maps) != NULL) {
        unsigned long long lo, hi, inode;
        char perms[5];
        int path = 0;

        if (sscanf(line, "%llx-%llx %4s %*x %*x:%*x %llu %n", &lo, &hi, perms,
                   &inode, &path) < 4 || hi <= covered) {
            continue;
        }
        if (lo > covered || perms[3] != 'p' || inode != 0 ||
            (line[path] != '\n' && line[path] != '\0' &&
             strncmp(line + path, "[heap]", 6) != 0 &&
             strncmp(line + path, "[stack", 6) != 0 &&
             strncmp(line + path, "[anon:", 6) != 0)) {
            break;
        }
        covered = hi;
    }
    fclose(maps);
    return covered >= end;
}

/* The kernel's own refusals are not enough: newer kernels register shmem
 * in write-protect mode too, and missing mode takes shmem and hugetlb. A
 * listing read while other threads map and unmap may skip a mapping, so a
 * "no" is asked again. */
static int private_anonymous(uint64_t start, uint64_t end)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        if (listed_private_anonymous(start, end)) {
            return 1;
        }
    }
    return 0;
}

/* Missing mode reports a page only when it faults, so every page must be
 * present before the watch starts (the zero page counts). */
static void populate(uint64_t start, uint64_t len)
{
    void *p = (void *)(uintptr_t)start;

    if (madvise(p, len, MADV_POPULATE_WRITE) == 0 ||
        madvise(p, len, MADV_POPULATE_READ) == 0) {
        return;
    }
    for (uint64_t off = 0; off < len; off += the_watch.page) { /* < 5.14 */
        (void)*(volatile const char *)(uintptr_t)(start + off);
    }
}

static int register_range(uint64_t start, uint64_t len)
{
    struct uffdio_register reg = {
        .range = {.start = start, .len = len},
        .mode = the_watch.missing_mode ? UFFDIO_REGISTER_MODE_MISSING
                                       : UFFDIO_REGISTER_MODE_WP,
    };

    if (!private_anonymous(start, start + len)) {
        hmaf__log_debug("memory watch: %#llx+%llu is not private anonymous "
                        "memory",
                        (unsigned long long)start, (unsigned long long)len);
        return HMAF_ENOTSUP;
    }
    if (the_watch.missing_mode) {
        populate(start, len);
    }
    /* Registering again what is registered already is a no-op; memory
     * another userfaultfd watches is EBUSY, and in write-protect mode
     * anything but anonymous memory is EINVAL. */
    if (ioctl(the_watch.uffd, UFFDIO_REGISTER, &reg) != 0) {
        hmaf__log_debug("memory watch: %#llx+%llu: %m",
                        (unsigned long long)start, (unsigned long long)len);
        return HMAF_ENOTSUP;
    }
    return 0;
}

int hmaf__memwatch_add(struct hmaf__memwatch *c, uint64_t start, uint64_t len)
{
    int ret = 0;

    pthread_mutex_lock(&the_watch.lock);
    if (the_watch.nranges == the_watch.cap) {
        size_t cap = the_watch.cap == 0 ? 16 : the_watch.cap * 2;
        struct watched *v = realloc(the_watch.ranges, cap * sizeof(*v));

        if (v == NULL) {
            ret = HMAF_ENOMEM;
        } else {
            the_watch.ranges = v;
            the_watch.cap = cap;
        }
    }
    if (ret == 0) {
        ret = register_range(start, len);
    }
    if (ret == 0) {
        the_watch.ranges[the_watch.nranges++] =
            (struct watched){start, len, c};
    }
    pthread_mutex_unlock(&the_watch.lock);
    return ret;
}

void hmaf__memwatch_remove(struct hmaf__memwatch *c, uint64_t start,
                           uint64_t len)
{
    pthread_mutex_lock(&the_watch.lock);
    for (size_t i = 0; i < the_watch.nranges; i++) {
        const struct watched *w = &the_watch.ranges[i];
        if (w->owner == c && w->start == start && w->len == len) {
            remove_at(i);
            break;
        }
    }
    pthread_mutex_unlock(&the_watch.lock);
}

void hmaf__memwatch_drain(struct hmaf__memwatch *c,
                          hmaf__memwatch_changed_fn *changed, void *arg)
{
    struct change batch[QUEUE_CAP];
    unsigned n;
    int lost;

    if (atomic_load(&the_watch.reading) == 0 && atomic_load(&c->queued) == 0) {
        return;
    }
    while (atomic_load(&the_watch.reading) != 0) {
        sched_yield(); /* a read event is a few stores from the queue */
    }
    pthread_mutex_lock(&the_watch.queue_lock);
    n = c->nqueue;
    lost = c->lost;
    memcpy(batch, c->queue, n * sizeof(batch[0]));
    c->nqueue = 0;
    c->lost = 0;
    atomic_store(&c->queued, 0);
    pthread_mutex_unlock(&the_watch.queue_lock);
    if (lost) {
        changed(arg, 0, 0);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        changed(arg, batch[i].start, batch[i].len);
    }
}
