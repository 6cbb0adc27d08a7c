/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The export fence: once doca_mmap_destroy (or stop) of an exported mmap
 * returns, no DMA task of an importer moves a byte of it any more.
 *
 * The live word alone cannot say that: an importer reads it, and its copy
 * (process_vm_writev) comes later, so a thread descheduled in between
 * writes after the exporter cleared the word and went on. A card is
 * assumed to fence there — a destroyed memory key is one the device no
 * longer uses once the destroy returned, as with ibv_dereg_mr — though
 * DOCA's documentation does not say so ([verify], docs/doca.md).
 *
 * Each exporting process has one memfd; byte i of it stands for live-word
 * slot i. An importer holds an OFD read lock on the byte from before it
 * reads the word until its copy is done; the exporter clears the word and
 * then takes the write lock on the byte, which waits for those copies.
 * Locks go with their process: an importer that dies mid-copy holds up no
 * one. The importer opens the memfd again through /proc (its own open
 * file description, so its locks conflict with the exporter's), once per
 * exporter, shared by all its imports of that exporter; within the
 * process a count per slot says when the lock is taken and given back.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emu.h"

/* ---- exporter ---- */

static int export_fd = -1;
static uint64_t export_ino;
static pthread_mutex_t export_lock = PTHREAD_MUTEX_INITIALIZER;

/* Retried on EINTR: a signal of the application's is no failure. */
static int lock_byte(int fd, short type, uint32_t byte)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET,
                       .l_start = (off_t)byte, .l_len = 1};
    int ret;

    do {
        ret = fcntl(fd, type == F_UNLCK ? F_OFD_SETLK : F_OFD_SETLKW, &fl);
    } while (ret != 0 && errno == EINTR);
    return ret;
}

int emu_fence_export(int *fd_out, uint64_t *ino_out)
{
    struct stat st;

    pthread_mutex_lock(&export_lock);
    if (export_fd < 0) {
        int fd = memfd_create("doca-emu-exports", MFD_CLOEXEC);

        if (fd >= 0 && fstat(fd, &st) == 0) {
            export_ino = (uint64_t)st.st_ino;
            export_fd = fd;
        } else if (fd >= 0) {
            close(fd);
        }
    }
    *fd_out = export_fd;
    *ino_out = export_ino;
    pthread_mutex_unlock(&export_lock);
    return export_fd >= 0 ? 0 : -1;
}

void emu_fence_wait(uint32_t slot)
{
    if (lock_byte(export_fd, F_WRLCK, slot) != 0 ||
        lock_byte(export_fd, F_UNLCK, slot) != 0) {
        emu_die("cannot fence an export's DMA");
    }
}

/* ---- importer ---- */

/* One exporter as an importing process sees it: pid and memfd inode
 * (a pid may be reused, an inode of a live memfd not). */
struct emu_fence_peer {
    struct emu_fence_peer *next;
    int64_t pid;
    uint64_t ino;
    int fd;
    uint32_t refs;                     /* imports, under peers_lock */
    pthread_mutex_t lock;              /* counts and the locks they stand for */
    uint32_t count[EMU_MAX_EXPORTS];   /* copies in flight, per slot */
};

static struct emu_fence_peer *peers;
static pthread_mutex_t peers_lock = PTHREAD_MUTEX_INITIALIZER;

/* The exporter's memfd, opened anew: NULL and errno when it cannot be. */
static struct emu_fence_peer *open_peer(const struct emu_desc *d)
{
    struct emu_fence_peer *p;
    char path[64];
    struct stat st;
    int fd;

    snprintf(path, sizeof(path), "/proc/%lld/fd/%d", (long long)d->pid,
             (int)d->fence_fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_ino != d->fence_ino) {
        close(fd);
        errno = ESRCH; /* another process by now, or another file */
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    p->pid = d->pid;
    p->ino = d->fence_ino;
    p->fd = fd;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

/* A forked child inherits the peers' fds, and with them their open file
 * descriptions, whose OFD locks are the parent's too: a read lock the
 * child took and died holding would stay while the parent keeps the fd,
 * and the exporter's fence would wait for good. The child opens each
 * memfd anew (its own description, under the same fd number), and the
 * copies in flight at the fork were the parent's threads'. */
static void fence_prepare_fork(void)
{
    pthread_mutex_lock(&peers_lock);
}

static void fence_parent_after_fork(void)
{
    pthread_mutex_unlock(&peers_lock);
}

static void fence_child_after_fork(void)
{
    for (struct emu_fence_peer *p = peers; p != NULL; p = p->next) {
        char path[64];
        int fd;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", p->fd);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || dup3(fd, p->fd, O_CLOEXEC) < 0) {
            emu_die("cannot reopen an export's fence after fork");
        }
        close(fd);
        memset(p->count, 0, sizeof(p->count));
        pthread_mutex_init(&p->lock, NULL);
    }
    pthread_mutex_unlock(&peers_lock);
}

static void fence_watch_forks(void)
{
    pthread_atfork(fence_prepare_fork, fence_parent_after_fork,
                   fence_child_after_fork);
}

doca_error_t emu_fence_attach(const struct emu_desc *d,
                              struct emu_fence_peer **out)
{
    static pthread_once_t forks_once = PTHREAD_ONCE_INIT;
    struct emu_fence_peer *p;

    if (d->slot >= EMU_MAX_EXPORTS) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    pthread_once(&forks_once, fence_watch_forks);
    pthread_mutex_lock(&peers_lock);
    for (p = peers; p != NULL; p = p->next) {
        if (p->pid == d->pid && p->ino == d->fence_ino) {
            break;
        }
    }
    if (p == NULL && (p = open_peer(d)) != NULL) {
        p->next = peers;
        peers = p;
    }
    if (p != NULL) {
        p->refs++;
    }
    pthread_mutex_unlock(&peers_lock);
    if (p == NULL) {
        return errno == ENOENT || errno == ESRCH ? DOCA_ERROR_DRIVER
               : errno == ENOMEM                 ? DOCA_ERROR_NO_MEMORY
                                                 : DOCA_ERROR_NOT_PERMITTED;
    }
    *out = p;
    return DOCA_SUCCESS;
}

void emu_fence_detach(struct emu_fence_peer *p)
{
    struct emu_fence_peer **at;

    pthread_mutex_lock(&peers_lock);
    if (--p->refs > 0) {
        pthread_mutex_unlock(&peers_lock);
        return;
    }
    for (at = &peers; *at != p; at = &(*at)->next) {
    }
    *at = p->next;
    pthread_mutex_unlock(&peers_lock);
    close(p->fd);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* The first copy of a slot takes the read lock; it waits only while the
 * exporter's destroy holds the write lock, which it gives back at once. */
void emu_fence_enter(struct emu_fence_peer *p, uint32_t slot)
{
    pthread_mutex_lock(&p->lock);
    if (p->count[slot]++ == 0 && lock_byte(p->fd, F_RDLCK, slot) != 0) {
        emu_die("cannot take an export's fence");
    }
    pthread_mutex_unlock(&p->lock);
}

void emu_fence_exit(struct emu_fence_peer *p, uint32_t slot)
{
    pthread_mutex_lock(&p->lock);
    if (--p->count[slot] == 0 && lock_byte(p->fd, F_UNLCK, slot) != 0) {
        emu_die("cannot give an export's fence back");
    }
    pthread_mutex_unlock(&p->lock);
}
