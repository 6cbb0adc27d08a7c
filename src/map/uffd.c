/*
 * The kernel side of mapping mode: userfaultfd. Missing-page faults in the
 * mirror arrive as messages; a handler thread per mapping serves them.
 * Write protection (where the kernel has it) catches the first write to a
 * fetched page so its twin can be taken before the write lands.
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
#include <unistd.h>

#include <hmaf/error.h>

#include "map/map_int.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/log.h"
#include "util/thread.h"

/* Newer than the headers on some build machines; the kernel tells at run
 * time whether it has them. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1ull << 14)
#endif
#ifndef UFFDIO_POISON
struct uffdio_poison {
    struct uffdio_range range;
    __u64 mode;
    __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif

#define MSGS_PER_READ 16
#define HANDLER_SPIN_NS 50000

static int uffd_api(int fd, uint64_t want, uint64_t *have_out)
{
    struct uffdio_api api = {.api = UFFD_API, .features = want};

    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        return -errno;
    }
    *have_out = api.features;
    return 0;
}

/* Which features the kernel has: asking with none set reports them all. */
static uint64_t kernel_features(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    uint64_t have = 0;

    if (fd >= 0) {
        (void)uffd_api(fd, 0, &have);
        close(fd);
    }
    return have;
}

static int register_range(struct hmaf_map *m)
{
    struct uffdio_register reg = {
        .range = {.start = (uintptr_t)m->local_base, .len = m->len},
        .mode = UFFDIO_REGISTER_MODE_MISSING |
                (m->track_wp ? UFFDIO_REGISTER_MODE_WP : 0),
    };

    if (ioctl(m->uffd, UFFDIO_REGISTER, &reg) != 0) {
        hmaf__log_error("userfaultfd register: %m");
        return HMAF_ENOTSUP;
    }
    return 0;
}

/* HMAF_MAP_WP=0 runs the twin-for-every-page path even where the kernel
 * has write protection, so that path can be tested anywhere. */
static int wp_allowed(void)
{
    uint64_t wp = 1;

    (void)hmaf__config_value(HMAF_CFG_MAP_WP, &wp);
    return wp != 0;
}

/* Why userfaultfd(2) refused, logged once here with the cure, and the
 * code the caller returns. The descriptor is user-mode-only, which
 * vm.unprivileged_userfaultfd does not restrict (Linux 5.11 on): EPERM is
 * a seccomp filter (docker's default profile has no userfaultfd) or a
 * security module. */
static int open_error(int err)
{
    switch (err) {
    case EPERM:
    case EACCES:
        hmaf__log_error("userfaultfd denied (seccomp, or a security module; "
                        "not vm.unprivileged_userfaultfd, which leaves the "
                        "user-mode-only descriptor mapping mode uses "
                        "alone): %s: allow userfaultfd in the seccomp "
                        "profile (docker: --security-opt seccomp=<a profile "
                        "with userfaultfd>)",
                        strerror(err));
        return HMAF_EPERM;
    case ENOMEM:
        hmaf__log_error("userfaultfd: %s", strerror(err));
        return HMAF_ENOMEM;
    case EMFILE:
    case ENFILE:
        hmaf__log_error("userfaultfd: %s: raise RLIMIT_NOFILE (ulimit -n)",
                        strerror(err));
        return HMAF_ENOSPC;
    case ENOSYS:
        hmaf__log_error("userfaultfd: ENOSYS: the kernel lacks "
                        "CONFIG_USERFAULTFD, or a seccomp filter answers "
                        "ENOSYS: mapping mode is not available here");
        return HMAF_ENOTSUP;
    default: /* EINVAL: no UFFD_USER_MODE_ONLY before Linux 5.11 */
        hmaf__log_error("userfaultfd: %s: mapping mode needs Linux 5.11 or "
                        "later (UFFD_USER_MODE_ONLY)",
                        strerror(err));
        return HMAF_ENOTSUP;
    }
}

int hmaf__uffd_open(struct hmaf_map *m)
{
    uint64_t want = UFFD_FEATURE_POISON, have = kernel_features(), got;

    m->track_wp = m->writable && wp_allowed() &&
                  (have & UFFD_FEATURE_PAGEFAULT_FLAG_WP);
    want |= m->track_wp ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0;
    m->uffd = (int)syscall(SYS_userfaultfd,
                           O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (m->uffd < 0) {
        return open_error(errno);
    }
    if (uffd_api(m->uffd, want & have, &got) != 0) {
        hmaf__log_error("userfaultfd UFFDIO_API: %s", strerror(errno));
        close(m->uffd);
        m->uffd = -1;
        return HMAF_ENOTSUP;
    }
    return register_range(m);
}

int hmaf__uffd_copy(struct hmaf_map *m, size_t page, const void *src,
                    size_t npages, int write_protect)
{
    struct uffdio_copy copy = {
        .dst = (uintptr_t)hmaf__map_page(m, page),
        .src = (uintptr_t)src,
        .len = npages * m->page_size,
        .mode = write_protect ? UFFDIO_COPY_MODE_WP : 0,
    };

    /* EEXIST: a page was already there (a racing fault); the rest of the
     * range is then not copied, and its faults come again. */
    if (ioctl(m->uffd, UFFDIO_COPY, &copy) != 0 && errno != EEXIST) {
        hmaf__log_error("userfaultfd copy: %m");
        return HMAF_EFAULT;
    }
    return 0;
}

int hmaf__uffd_protect(struct hmaf_map *m, size_t page, size_t npages,
                       int protect)
{
    struct uffdio_writeprotect wp = {
        .range = {.start = (uintptr_t)hmaf__map_page(m, page),
                  .len = npages * m->page_size},
        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };

    if (ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
        hmaf__log_error("userfaultfd write-protect: %m");
        return HMAF_EFAULT;
    }
    return 0;
}

/* The faulting thread gets SIGBUS: with UFFDIO_POISON where the kernel has
 * it, else by making the page inaccessible (SIGSEGV then, documented as an
 * access error all the same). */
void hmaf__uffd_poison(struct hmaf_map *m, size_t page)
{
    struct uffdio_poison poison = {
        .range = {.start = (uintptr_t)hmaf__map_page(m, page),
                  .len = m->page_size},
    };
    struct uffdio_range wake = poison.range;

    if (ioctl(m->uffd, UFFDIO_POISON, &poison) == 0) {
        return;
    }
    mprotect(hmaf__map_page(m, page), m->page_size, PROT_NONE);
    (void)ioctl(m->uffd, UFFDIO_WAKE, &wake);
}

void hmaf__uffd_wake(struct hmaf_map *m, size_t page)
{
    struct uffdio_range range = {.start = (uintptr_t)hmaf__map_page(m, page),
                                 .len = m->page_size};

    (void)ioctl(m->uffd, UFFDIO_WAKE, &range);
}

static void serve_message(struct hmaf_map *m, const struct uffd_msg *msg)
{
    uint64_t addr = msg->arg.pagefault.address;
    size_t page = (size_t)((addr - (uintptr_t)m->local_base) / m->page_size);

    if (msg->event != UFFD_EVENT_PAGEFAULT || page >= m->npages) {
        return;
    }
    if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
        hmaf__map_first_write(m, page);
    } else {
        hmaf__map_missing(m, page,
                          (msg->arg.pagefault.flags &
                           UFFD_PAGEFAULT_FLAG_WRITE) != 0);
    }
}

/* Serve what is queued; returns how many faults that was. */
static ssize_t serve_queued(struct hmaf_map *m)
{
    struct uffd_msg msgs[MSGS_PER_READ];
    ssize_t n = read(m->uffd, msgs, sizeof(msgs));

    n = n < 0 ? 0 : n / (ssize_t)sizeof(msgs[0]);
    for (ssize_t i = 0; i < n; i++) {
        serve_message(m, &msgs[i]);
    }
    return n;
}

/* After a fault the next one usually follows within microseconds (a walk
 * faults page after page): look again for a short while before sleeping,
 * which spares both threads a wake-up across CPUs. */
static void serve_burst(struct hmaf_map *m)
{
    uint64_t until = hmaf__now_ns() + HANDLER_SPIN_NS;

    while (hmaf__now_ns() < until) {
        if (serve_queued(m) > 0) {
            until = hmaf__now_ns() + HANDLER_SPIN_NS;
        }
    }
}

static void *handler_main(void *arg)
{
    struct hmaf_map *m = arg;
    struct pollfd fds[2] = {{.fd = m->uffd, .events = POLLIN},
                            {.fd = m->wake_pipe[0], .events = POLLIN}};
    struct hmaf__reader *reader;

    /* Its reader slot before hmaf_map_create returns: a fault it could not
     * serve for want of one would be a SIGBUS out of the blue. */
    hmaf__reader_library_thread();
    m->start_status = hmaf__reader_get(&m->session->cache.readers, &reader);
    sem_post(&m->started);
    if (m->start_status < 0) {
        return NULL;
    }
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR) {
            break;
        }
        if (fds[1].revents != 0) {
            break; /* destroy */
        }
        if (serve_queued(m) > 0) {
            serve_burst(m);
        }
    }
    return NULL;
}

int hmaf__uffd_start(struct hmaf_map *m)
{
    int ret;

    if (pipe2(m->wake_pipe, O_CLOEXEC) != 0) {
        return HMAF_ENOMEM;
    }
    sem_init(&m->started, 0, 0);
    ret = hmaf__thread_start(&m->thread, handler_main, m);
    if (ret == 0) {
        m->has_thread = 1;
        while (sem_wait(&m->started) != 0) {
            /* EINTR: a signal of the application's */
        }
        ret = m->start_status;
    }
    sem_destroy(&m->started);
    if (ret < 0 && !m->has_thread) {
        close(m->wake_pipe[0]);
        close(m->wake_pipe[1]);
    }
    return ret; /* with the thread ended, uffd_stop cleans up */
}

void hmaf__uffd_stop(struct hmaf_map *m)
{
    if (m->has_thread) {
        (void)!write(m->wake_pipe[1], "x", 1);
        pthread_join(m->thread, NULL);
        close(m->wake_pipe[0]);
        close(m->wake_pipe[1]);
        m->has_thread = 0;
    }
    if (m->uffd >= 0) {
        close(m->uffd);
        m->uffd = -1;
    }
}
