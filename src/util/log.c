#include "util/log.h"

#include "util/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static int log_level = HMAF_LOG_WARN;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_init(void)
{
    const char *env = getenv("HMAF_LOG");

    if (env != NULL && strcmp(env, "off") == 0) {
        log_level = -1;
        return;
    }
    for (int i = 0; env != NULL && i <= HMAF_LOG_DEBUG; i++) {
        if (strcmp(env, level_names[i]) == 0) {
            log_level = i;
        }
    }
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
    pthread_once(&log_once, log_init);
    return (int)level <= log_level;
}

void hmaf__log(enum hmaf_log_level level, const char *fmt, ...)
{
    int saved_errno = errno; /* so "%m" in fmt names the caller's error */
    char line[512];
    va_list ap;

    if (!hmaf__log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    errno = saved_errno;
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "hmaf[%d] %s: %s\n", (int)getpid(), level_names[level],
            line);
    errno = saved_errno;
}
