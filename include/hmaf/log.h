/**
 * @file log.h
 * @brief Where the library's log messages go.
 *
 * HMAF logs what it cannot report through a return code (why a call
 * failed, a peer that misbehaves, a setting it ignored). $HMAF_LOG picks
 * the level (off, error, warn (default), info, debug; any case) and
 * $HMAF_LOG_FILE a file to append to; both are read once, at the first
 * message. A file that cannot be opened (a FIFO with no reader included:
 * HMAF does not wait for one) leaves the lines on stderr, with a warning;
 * lines that cannot be written (a full disk, a FIFO or pipe whose reader
 * left) are lost, and never raise SIGPIPE.
 * $HMAF_LOG_FILE is ignored in a setuid, setgid or file-capability
 * program (secure_getenv()). By default each message is one line on
 * stderr:
 *
 *     hmaf[pid:tid] 2026-12-06T06:01:02.123456Z warn: text
 *
 * (the time in UTC, tid the kernel's thread id). A control character in
 * a message's text (say, a newline in a bad value it quotes) is written
 * as '?', so a message is always one line. A program may take the
 * messages itself instead, with hmaf_log_set_handler().
 */
#ifndef HMAF_LOG_H
#define HMAF_LOG_H

#include <hmaf/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Severity of a message; a level lets through itself and those below. */
typedef enum hmaf_log_level {
    HMAF_LOG_ERROR = 0, /**< a call failed, or a peer broke the protocol */
    HMAF_LOG_WARN = 1,  /**< something was ignored or worked around */
    HMAF_LOG_INFO = 2,  /**< noteworthy events (sessions, engines) */
    HMAF_LOG_DEBUG = 3, /**< details for debugging */
} hmaf_log_level_t;

/**
 * Receives a message instead of the default line on stderr or in
 * $HMAF_LOG_FILE.
 *
 * @param arg      as given to hmaf_log_set_handler().
 * @param level    the message's severity; only those $HMAF_LOG lets
 *                 through arrive.
 * @param message  the text, without prefix or newline; valid only
 *                 during the call.
 *
 * Called from any thread that logs: the application's own inside an hmaf
 * call, and HMAF's threads (the agent's, a session's watch, mapping and
 * split-transfer threads), from several at once. It must return soon
 * (those threads wait for it, some of them holding locks that transfers
 * need) and must not call into HMAF (hmaf_strerror() and hmaf_err_name()
 * excepted): some messages are logged with HMAF's locks held, and
 * hmaf_log_set_handler() from inside a handler deadlocks.
 */
typedef void (*hmaf_log_handler_t)(void *arg, hmaf_log_level_t level,
                                   const char *message);

/**
 * @brief Send every later message to @p handler; NULL restores the
 * default (stderr, or $HMAF_LOG_FILE).
 *
 * Thread safe. When it returns, no call of the previous handler is still
 * running and none begins, so its @p arg may be freed. Setting a handler
 * first thing, before any other hmaf call, also catches the warnings about
 * the environment (unknown HMAF_ variables, bad values: config.h), which
 * are logged once, at the first use of the library.
 *
 * @param [in] handler  called for each message, or NULL.
 * @param [in] arg      passed to @p handler.
 * @return 0.
 */
HMAF_API int hmaf_log_set_handler(hmaf_log_handler_t handler, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_LOG_H */
