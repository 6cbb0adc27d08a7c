/**
 * @file config.h
 * @brief The effective configuration: every setting the environment can
 * change, its value and where the value came from.
 *
 * Settings come from params structs (session.h, host.h, map.h, heap.h)
 * and from HMAF_* environment variables, one per setting
 * (docs/configuration.md has the table). Precedence: each
 * hmaf_*_params_init() fills in the built-in defaults and then applies the
 * environment, so the program's own later assignments win: the
 * environment changes defaults, not choices the program made. Settings of
 * the library itself (the log, the engines' knobs) come from the
 * environment only.
 *
 * Values: times take a unit, ns, us, ms or s ("200ms"; a bare number is
 * the setting's own unit, the one its field is named after); sizes take
 * K, M, G or T, binary, also written KiB, KB ("16M", "16MiB"; a bare
 * number is bytes). A value that does not parse, overflows or is out of
 * range is warned about in the log and the default kept (three settings
 * make the call that uses them fail instead: HMAF_SPLIT_THREADS and
 * HMAF_UCX_PORT, as their fields' documentation says, and an HMAF_ENGINE
 * that names no built-in engine: HMAF_ENOENGINE, with a log line). An
 * empty value is the same as none.
 *
 * At the first use of the library HMAF looks at the whole environment
 * once and warns about every HMAF_* variable it does not know (a typo
 * would otherwise go unnoticed) and every bad value, each once.
 *
 * The environment is read when a value is used (by a params_init, a
 * session, an engine), except $HMAF_LOG and $HMAF_LOG_FILE, read at the
 * first message. HMAF reads it with getenv(), which is not safe against
 * setenv(), unsetenv() or putenv() in another thread at the same time:
 * change the environment before starting threads that use HMAF.
 */
#ifndef HMAF_CONFIG_H
#define HMAF_CONFIG_H

#include <stddef.h>

#include <hmaf/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hmaf_config hmaf_config_t; /**< opaque snapshot */

/** Where an entry's value came from. */
typedef enum hmaf_config_source {
    HMAF_CONFIG_DEFAULT = 0,    /**< built in; the variable is not set */
    HMAF_CONFIG_ENV = 1,        /**< the environment variable */
    HMAF_CONFIG_ENV_INVALID = 2 /**< the variable is set to a bad value:
                                     ignored (the default is in use), or
                                     the call using it fails */
} hmaf_config_source_t;

/**
 * One setting. Strings are owned by the snapshot and valid until
 * hmaf_config_free().
 */
typedef struct hmaf_config_entry {
    size_t size;        /**< [in] sizeof(hmaf_config_entry_t): set it
                             before the call; HMAF fills the fields that
                             fit, so a program built against this header
                             keeps working with a later library */
    const char *name;   /**< "session.rpc_timeout_ms": params struct and
                             field, or "log.level" for the library's own */
    const char *env;    /**< its variable, "HMAF_RPC_TIMEOUT" */
    const char *value;  /**< the effective value, as the variable would
                             write it: "200ms", "16MiB", "warn", a path;
                             "" for an unset text */
    hmaf_config_source_t source; /**< where value came from */
    const char *env_value;     /**< the variable's text when set (source
                                    ENV or ENV_INVALID), else NULL */
    const char *default_value; /**< the built-in value, as value */
    const char *unit;   /**< "ms", "us", "bytes", "count", "bool",
                             "level", "text" */
    const char *range;  /**< what the variable accepts, "1..256" or a
                             list of words */
    const char *description; /**< one line */
} hmaf_config_entry_t;

/**
 * @brief Read the environment now into a snapshot of every setting.
 * @param [out] config_out  the snapshot; release it with hmaf_config_free().
 *        Written only on success.
 * @param [out] count_out   how many entries it holds (may be NULL).
 * @return 0; HMAF_EINVAL (config_out NULL), HMAF_ENOMEM.
 *
 * Thread safe. A bad value in the snapshot is warned about as anywhere
 * (once per variable and value).
 */
HMAF_API int hmaf_config_snapshot(hmaf_config_t **config_out,
                                  size_t *count_out);

/**
 * @brief Entry @p index of a snapshot, 0 to count - 1, in a fixed order.
 * @param [in]     config  from hmaf_config_snapshot().
 * @param [in]     index   which entry.
 * @param [in,out] entry   entry->size set by the caller; filled on success.
 * @return 0; HMAF_ENOENT (index past the last entry), HMAF_EINVAL (NULL,
 *         or an entry->size the call does not accept: as for the
 *         counters structs, types.h, HMAF_STATS_SIZE_MAX; a larger one
 *         gets zeros past this struct).
 */
HMAF_API int hmaf_config_entry(const hmaf_config_t *config, size_t index,
                               hmaf_config_entry_t *entry);

/**
 * @brief The entry named @p name: its name ("session.rpc_timeout_ms") or
 * its variable ("HMAF_RPC_TIMEOUT").
 * @param [in]     config  from hmaf_config_snapshot().
 * @param [in]     name    a setting's name or variable.
 * @param [in,out] entry   entry->size set by the caller; filled on success.
 * @return 0; HMAF_ENOENT (no such setting), HMAF_EINVAL (as
 *         hmaf_config_entry()).
 */
HMAF_API int hmaf_config_find(const hmaf_config_t *config, const char *name,
                              hmaf_config_entry_t *entry);

/**
 * @brief Release a snapshot.
 * @param [in] config  from hmaf_config_snapshot(), or NULL.
 */
HMAF_API void hmaf_config_free(hmaf_config_t *config);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_CONFIG_H */
