/*
 * Settings from the environment: one table (config.c) of every HMAF_*
 * variable drives parsing, validation, the params_init defaults, the
 * listing (include/hmaf/config.h) and the check of docs/configuration.md.
 */
#ifndef HMAF_UTIL_CONFIG_H
#define HMAF_UTIL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* The table's rows, in its order. */
enum hmaf__cfg_id {
    HMAF_CFG_LOG,
    HMAF_CFG_LOG_FILE,
    HMAF_CFG_ENGINE,
    HMAF_CFG_CONNECT_TIMEOUT,
    HMAF_CFG_RPC_TIMEOUT,
    HMAF_CFG_CACHE_MAX_REGIONS,
    HMAF_CFG_CACHE_MAX_BYTES,
    HMAF_CFG_REVOKE_CHECK,
    HMAF_CFG_MAX_INFLIGHT,
    HMAF_CFG_MAP_MAX_RESIDENT,
    HMAF_CFG_SPLIT_THREADS,
    HMAF_CFG_MAX_SESSIONS,
    HMAF_CFG_MAILBOX_SLOTS,
    HMAF_CFG_HANDSHAKE_TIMEOUT,
    HMAF_CFG_REVOKE_WAIT,
    HMAF_CFG_MAP_READAHEAD,
    HMAF_CFG_HEAP_SESSION_QUOTA,
    HMAF_CFG_UCX_PORT,
    HMAF_CFG_DOCA_DEV,
    HMAF_CFG_DOCA_ZCOPY_MIN,
    HMAF_CFG_DOCA_ZCOPY_CACHE,
    HMAF_CFG_DOCA_LISTS,
    HMAF_CFG_MEMWATCH_WP,
    HMAF_CFG_MAP_WP,
    HMAF_CFG_MAP_MOVE,
    HMAF_CFG_NUM
};

/* The params struct a row's field lives in (NONE: a library setting). */
enum hmaf__cfg_struct {
    HMAF_CFG_NONE,
    HMAF_CFG_SESSION,
    HMAF_CFG_AGENT,
    HMAF_CFG_MAP,
    HMAF_CFG_HEAP,
};

enum hmaf__cfg_type {
    HMAF_CFG_COUNT, /* a plain number */
    HMAF_CFG_SIZE,  /* bytes; K, M, G, T suffixes */
    HMAF_CFG_TIME,  /* ns, us, ms, s; bare: the row's unit */
    HMAF_CFG_BOOL,  /* 0/1, off/on, no/yes, false/true */
    HMAF_CFG_LEVEL, /* off, error, warn, info, debug */
    HMAF_CFG_TEXT,  /* any non-empty string */
};

/* The C type of a params field. */
enum hmaf__cfg_ctype {
    HMAF_CFG_C_INT,
    HMAF_CFG_C_UNSIGNED,
    HMAF_CFG_C_U64,
};

/* Row flags. */
#define HMAF_CFG_STRICT 0x1    /* bad value: the using call fails, EINVAL */
#define HMAF_CFG_AT_CREATE 0x2 /* not applied by params_init: read when the
                                  object is created and its field is 0 */

struct hmaf__cfg_row {
    const char *name; /* "session.rpc_timeout_ms" */
    const char *env;  /* "HMAF_RPC_TIMEOUT" */
    enum hmaf__cfg_type type;
    uint64_t unit_ns; /* HMAF_CFG_TIME: ns per unit of the field */
    uint64_t min, max, def;
    const char *def_text; /* HMAF_CFG_TEXT: the default ("" none) */
    enum hmaf__cfg_struct in;
    size_t offset;
    enum hmaf__cfg_ctype ctype;
    unsigned flags;
    const char *doc;
};

extern const struct hmaf__cfg_row hmaf__cfg_rows[HMAF_CFG_NUM];

/* Parse text for row r: 0 and *value_out, or -1 with *why_out saying
 * what is wrong. TEXT rows always parse (value 0). No logging. */
int hmaf__config_parse(const struct hmaf__cfg_row *r, const char *text,
                       uint64_t *value_out, const char **why_out);

/* The row's variable, or NULL when unset or empty. */
const char *hmaf__config_env(enum hmaf__cfg_id id);

/* The value of a number row: the environment's when it is valid, else
 * the default (a bad value warned about once). A STRICT row's bad value
 * instead returns HMAF_EINVAL, saying why in the log. */
int hmaf__config_value(enum hmaf__cfg_id id, uint64_t *value_out);

/* Into a params struct of kind `in`, freshly filled with defaults, the
 * environment's valid values of its rows (except AT_CREATE ones). */
void hmaf__config_apply(enum hmaf__cfg_struct in, void *params);

/* First use of the library: once, warn about every HMAF_* variable of the
 * environment the table does not know and every bad value. */
void hmaf__config_check_env(void);

/* Warn about a bad value of row id, text, unless the same was warned
 * about before. */
void hmaf__config_warn_bad(enum hmaf__cfg_id id, const char *text,
                           const char *why);

/* The value as a variable would write it ("200ms", "16MiB", "warn"). */
void hmaf__config_format(const struct hmaf__cfg_row *r, uint64_t value,
                         char *buf, size_t len);

#endif
