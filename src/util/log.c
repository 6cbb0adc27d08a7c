#include "util/log.h"

#include "util/clock.h"
#include "util/config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/log.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static int log_level = HMAF_LOG_WARN; /* -1: off; written once, by log_init */
static int log_fd = STDERR_FILENO;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
/* HMAF_LOG_FILE that would not open: said once, after log_init (which
 * cannot log: it runs inside the first message's own check). */
static int log_file_errno;
static char log_file_path[256];
static atomic_int log_file_said;

/* The application's handler; readers are the messages being delivered,
 * so a writer (hmaf_log_set_handler) waits until none is in the old one.
 * Writers first: threads that log without pause must not starve it. */
static pthread_rwlock_t handler_lock =
    PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static hmaf_log_handler_t handler;
static void *handler_arg;

/* This thread holds handler_lock for reading (it is delivering one). */
static _Thread_local int delivering;

/* A forked child has only the thread that called fork(): a message another
 * thread was delivering at that moment would hold handler_lock in the
 * child for good, and the child's hmaf_log_set_handler() (then, behind
 * that writer, its every message) would wait forever. So the lock starts
 * anew in the child, held only if the thread that forked holds it: a
 * handler that forks (system(), popen()) ends its message as usual. */
static void log_fork_child(void)
{
    static const pthread_rwlock_t unlocked =
        PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

    memcpy(&handler_lock, &unlocked, sizeof(handler_lock));
    if (delivering) {
        pthread_rwlock_rdlock(&handler_lock);
    }
}

/* The file of $HMAF_LOG_FILE, or -1 with errno. Opened non-blocking: a
 * FIFO that nobody reads would otherwise block open() for good, and with
 * it every thread that logs (all wait for the first message's open); such
 * a FIFO fails with ENXIO instead. Writes then block again, as they do on
 * stderr. O_NOCTTY: a terminal named here must not become the process's
 * controlling terminal. */
static int open_log_file(const char *path)
{
    int fd = open(path,
                  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK |
                      O_NOCTTY,
                  0644);
    int flags = fd >= 0 ? fcntl(fd, F_GETFL) : -1;

    if (fd >= 0 && (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Level and file, from the table's parser; a bad $HMAF_LOG keeps warn and
 * is warned about by hmaf__config_check_env(). */
static void log_init(void)
{
    const struct hmaf__cfg_row *r = &hmaf__cfg_rows[HMAF_CFG_LOG];
    const char *level = hmaf__config_env(HMAF_CFG_LOG);
    const char *path = hmaf__config_env(HMAF_CFG_LOG_FILE);
    const char *why = NULL;
    uint64_t v;

    (void)pthread_atfork(NULL, NULL, log_fork_child);
    if (level != NULL && hmaf__config_parse(r, level, &v, &why) == 0) {
        log_level = (int)v - 1; /* the row's words start at "off" */
    }
    if (path == NULL || log_level < 0) {
        return; /* off: no line will be written, so no file is made */
    }
    snprintf(log_file_path, sizeof(log_file_path), "%s", path);
    log_fd = open_log_file(path);
    if (log_fd < 0) {
        log_file_errno = errno;
        log_fd = STDERR_FILENO;
    }
}

/* The log's settings, then (once per process) the warnings about the
 * environment, which go through the log themselves. */
static void log_ready(void)
{
    pthread_once(&log_once, log_init);
    if (log_file_errno != 0 && !atomic_exchange(&log_file_said, 1)) {
        errno = log_file_errno;
        hmaf__log_warn("HMAF_LOG_FILE=%s: cannot open: %m; logging to stderr",
                       log_file_path);
    }
    hmaf__config_check_env();
}

int hmaf__log_allow(struct hmaf__log_limit *l, uint64_t *held_back_out)
{
    uint64_t now = hmaf__now_ns();

    if (now < l->next_ns) {
        l->held_back++;
        return 0;
    }
    l->next_ns = now + 1000000000ull;
    *held_back_out = l->held_back;
    l->held_back = 0;
    return 1;
}

int hmaf__log_enabled(enum hmaf_log_level level)
{
    log_ready();
    return (int)level <= log_level;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1; /* nowhere else to say it */
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* write_all, without SIGPIPE: a log FIFO (or stderr pipe) whose reader
 * went away must cost the line, not the process, as the channels' sends
 * (MSG_NOSIGNAL). The signal is blocked in this thread for the write, and
 * taken back if the write raised it (not if it was pending before). */
static void write_quiet(int fd, const char *buf, size_t len)
{
    static const struct timespec now = {0, 0};
    sigset_t pipe_set, old, pending;
    int was_pending;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    if (write_all(fd, buf, len) < 0 && errno == EPIPE && !was_pending) {
        while (sigtimedwait(&pipe_set, NULL, &now) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* "hmaf[pid:tid] 2026-12-06T06:01:02.123456Z warn: text\n", in one write
 * so lines of concurrent threads and processes do not interleave. */
static void write_line(enum hmaf_log_level level, const char *msg)
{
    char line[640], stamp[32];
    struct timespec ts;
    struct tm tm;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "hmaf[%d:%ld] %s.%06ldZ %s: %s\n",
                 (int)getpid(), (long)syscall(SYS_gettid), stamp,
                 ts.tv_nsec / 1000, level_names[level], msg);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    write_quiet(log_fd, line, (size_t)n);
}

/* One message, one line: a control character in the text (a value from
 * the environment, a name from the application) becomes '?', so that
 * nothing a message quotes can end its line and forge the next. */
static void one_line(char *msg)
{
    for (unsigned char *p = (unsigned char *)msg; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
}

void hmaf__log(enum hmaf_log_level level, const char *fmt, ...)
{
    int saved_errno = errno; /* so "%m" in fmt names the caller's error */
    char msg[512];
    va_list ap;

    if (!hmaf__log_enabled(level)) {
        errno = saved_errno;
        return;
    }
    va_start(ap, fmt);
    errno = saved_errno;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    one_line(msg);
    pthread_rwlock_rdlock(&handler_lock);
    delivering = 1;
    if (handler != NULL) {
        handler(handler_arg, level, msg);
    } else {
        write_line(level, msg);
    }
    delivering = 0;
    pthread_rwlock_unlock(&handler_lock);
    errno = saved_errno;
}

HMAF_API int hmaf_log_set_handler(hmaf_log_handler_t fn, void *arg)
{
    pthread_once(&log_once, log_init); /* the fork handler, before locking */
    pthread_rwlock_wrlock(&handler_lock);
    handler = fn;
    handler_arg = arg;
    pthread_rwlock_unlock(&handler_lock);
    /* A first use: the environment's warnings reach the new handler. */
    log_ready();
    return 0;
}
