/*
 * Library logging. Level from $HMAF_LOG (off, error, warn, info, debug, any
 * case; default warn). Messages are lowercase and go to the application's
 * handler (include/hmaf/log.h), else to $HMAF_LOG_FILE or stderr as one
 * line: "hmaf[pid:tid] 2026-12-06T06:01:02.123456Z warn: text".
 */
#ifndef HMAF_UTIL_LOG_H
#define HMAF_UTIL_LOG_H

#include <stdint.h>

#include <hmaf/log.h> /* enum hmaf_log_level */

void hmaf__log(enum hmaf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int hmaf__log_enabled(enum hmaf_log_level level);

/* What peers can make us say as often as they like goes out at most once
 * a second: the rest is counted, and the next message says how much. Not
 * thread-safe by itself (the agent's lock covers its own). */
struct hmaf__log_limit {
    uint64_t next_ns;
    uint64_t held_back;
};

/* 1 when a message may go out now, *held_back_out saying how many did not
 * since the last; 0 when this one is held back. */
int hmaf__log_allow(struct hmaf__log_limit *l, uint64_t *held_back_out);

#define hmaf__log_error(...) hmaf__log(HMAF_LOG_ERROR, __VA_ARGS__)
#define hmaf__log_warn(...) hmaf__log(HMAF_LOG_WARN, __VA_ARGS__)
#define hmaf__log_info(...) hmaf__log(HMAF_LOG_INFO, __VA_ARGS__)
#define hmaf__log_debug(...) hmaf__log(HMAF_LOG_DEBUG, __VA_ARGS__)

#endif
