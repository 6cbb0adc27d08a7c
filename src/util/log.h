/*
 * Library logging. Level from $HMAF_LOG (error, warn, info, debug; default
 * warn). Messages are lowercase and go to stderr with a "hmaf" prefix.
 */
#ifndef HMAF_UTIL_LOG_H
#define HMAF_UTIL_LOG_H

enum hmaf_log_level {
    HMAF_LOG_ERROR,
    HMAF_LOG_WARN,
    HMAF_LOG_INFO,
    HMAF_LOG_DEBUG,
};

void hmaf__log(enum hmaf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int hmaf__log_enabled(enum hmaf_log_level level);

#define hmaf__log_error(...) hmaf__log(HMAF_LOG_ERROR, __VA_ARGS__)
#define hmaf__log_warn(...) hmaf__log(HMAF_LOG_WARN, __VA_ARGS__)
#define hmaf__log_info(...) hmaf__log(HMAF_LOG_INFO, __VA_ARGS__)
#define hmaf__log_debug(...) hmaf__log(HMAF_LOG_DEBUG, __VA_ARGS__)

#endif
