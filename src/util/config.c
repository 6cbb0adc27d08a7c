/*
 * Settings from the environment (util/config.h). The table below is the
 * one list of HMAF_* variables: params_init applies it, the engines and
 * the log read it, hmaf_config_snapshot() lists it, and a test checks
 * docs/configuration.md against it.
 */
#include "util/config.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hmaf/config.h>
#include <hmaf/error.h>
#include <hmaf/heap.h>
#include <hmaf/host.h>
#include <hmaf/map.h>
#include <hmaf/session.h>

#include "util/compiler.h"
#include "util/log.h"
#include "util/stats.h"

#define MS 1000000ull
#define RANGE_LEN 80 /* "min..max", two numbers of up to 31 */
#define US 1000ull

/* Limits other layers own (core/session_int.h HMAF_MAX_INFLIGHT,
 * proto/mailbox.h HMAF_MBOX_MAX_SLOTS, the agent's check_params); util
 * cannot include them, the unit test checks they agree. */
#define MAX_INFLIGHT 65536
#define MAILBOX_SLOTS_MAX 256
#define MAX_SESSIONS_MAX 1024
#define REVOKE_WAIT_MAX_MS 3600000

#define FIELD(st, f) offsetof(st, f)
#define SESSION(f) HMAF_CFG_SESSION, FIELD(hmaf_session_params_t, f)
#define AGENT(f) HMAF_CFG_AGENT, FIELD(hmaf_agent_params_t, f)
#define LIBRARY HMAF_CFG_NONE, 0

/* Each row: name, env, type, unit_ns, min, max, default, default text,
 * struct and offset, C type, flags, one line of doc. The order is the
 * listing's. Defaults equal what each params_init sets before applying
 * the environment (the unit test checks). */
const struct hmaf__cfg_row hmaf__cfg_rows[HMAF_CFG_NUM] = {
    [HMAF_CFG_LOG] = {"log.level", "HMAF_LOG", HMAF_CFG_LEVEL, 0, 0, 4, 2,
                      NULL, LIBRARY, 0, 0,
                      "library log level (read at the first message)"},
    [HMAF_CFG_LOG_FILE] = {"log.file", "HMAF_LOG_FILE", HMAF_CFG_TEXT, 0, 0,
                           0, 0, "", LIBRARY, 0, 0,
                           "append log lines to this file instead of "
                           "stderr (read at the first message)"},
    [HMAF_CFG_ENGINE] = {"engine", "HMAF_ENGINE", HMAF_CFG_TEXT, 0, 0, 0, 0,
                         "", LIBRARY, 0, 0,
                         "engine when params.engine is NULL or empty "
                         "(both sides); unset: the first built (cma)"},
    [HMAF_CFG_CONNECT_TIMEOUT] = {"session.connect_timeout_ms",
                                  "HMAF_CONNECT_TIMEOUT", HMAF_CFG_TIME, MS,
                                  1, INT_MAX, 5000, NULL,
                                  SESSION(connect_timeout_ms), HMAF_CFG_C_INT,
                                  0, "connect plus handshake"},
    [HMAF_CFG_RPC_TIMEOUT] = {"session.rpc_timeout_ms", "HMAF_RPC_TIMEOUT",
                              HMAF_CFG_TIME, MS, 1, INT_MAX, 5000, NULL,
                              SESSION(rpc_timeout_ms), HMAF_CFG_C_INT, 0,
                              "longest wait for one mailbox call"},
    [HMAF_CFG_CACHE_MAX_REGIONS] = {"session.cache_max_regions",
                                    "HMAF_CACHE_MAX_REGIONS", HMAF_CFG_COUNT,
                                    0, 1, UINT_MAX, 1024, NULL,
                                    SESSION(cache_max_regions),
                                    HMAF_CFG_C_UNSIGNED, 0,
                                    "region cache bound, regions"},
    [HMAF_CFG_CACHE_MAX_BYTES] = {"session.cache_max_bytes",
                                  "HMAF_CACHE_MAX_BYTES", HMAF_CFG_SIZE, 0, 1,
                                  UINT64_MAX, UINT64_MAX, NULL,
                                  SESSION(cache_max_bytes), HMAF_CFG_C_U64, 0,
                                  "region cache bound, bytes of host memory"},
    [HMAF_CFG_REVOKE_CHECK] = {"session.revoke_check_us", "HMAF_REVOKE_CHECK",
                               HMAF_CFG_TIME, US, 1, UINT_MAX, 1000, NULL,
                               SESSION(revoke_check_us), HMAF_CFG_C_UNSIGNED,
                               0,
                               "how often a calling thread looks for "
                               "revocations"},
    [HMAF_CFG_MAX_INFLIGHT] = {"session.max_inflight", "HMAF_MAX_INFLIGHT",
                               HMAF_CFG_COUNT, 0, 1, MAX_INFLIGHT, 1024, NULL,
                               SESSION(max_inflight), HMAF_CFG_C_UNSIGNED, 0,
                               "posted segments per thread"},
    [HMAF_CFG_MAP_MAX_RESIDENT] = {"session.map_max_resident",
                                   "HMAF_MAP_MAX_RESIDENT", HMAF_CFG_SIZE, 0,
                                   4096, UINT64_MAX, UINT64_MAX, NULL,
                                   SESSION(map_max_resident), HMAF_CFG_C_U64,
                                   0,
                                   "mapping mode: mirrored bytes present at "
                                   "once (at least a page)"},
    [HMAF_CFG_SPLIT_THREADS] = {"session.split_threads", "HMAF_SPLIT_THREADS",
                                HMAF_CFG_COUNT, 0, 0, HMAF_SPLIT_THREADS_MAX,
                                0, NULL, SESSION(split_threads),
                                HMAF_CFG_C_UNSIGNED,
                                HMAF_CFG_STRICT | HMAF_CFG_AT_CREATE,
                                "threads one large transfer may use, when "
                                "params.split_threads is 0 (0: one per "
                                "cpu, at most 4)"},
    [HMAF_CFG_MAX_SESSIONS] = {"agent.max_sessions", "HMAF_MAX_SESSIONS",
                               HMAF_CFG_COUNT, 0, 1, MAX_SESSIONS_MAX, 64,
                               NULL, AGENT(max_sessions), HMAF_CFG_C_UNSIGNED,
                               0, "sessions served at once"},
    [HMAF_CFG_MAILBOX_SLOTS] = {"agent.mailbox_slots", "HMAF_MAILBOX_SLOTS",
                                HMAF_CFG_COUNT, 0, 1, MAILBOX_SLOTS_MAX, 16,
                                NULL, AGENT(mailbox_slots),
                                HMAF_CFG_C_UNSIGNED, 0,
                                "mailbox calls in flight per session"},
    [HMAF_CFG_HANDSHAKE_TIMEOUT] = {"agent.handshake_timeout_ms",
                                    "HMAF_HANDSHAKE_TIMEOUT", HMAF_CFG_TIME,
                                    MS, 1, INT_MAX, 5000, NULL,
                                    AGENT(handshake_timeout_ms),
                                    HMAF_CFG_C_INT, 0,
                                    "a connection must finish its hello "
                                    "within this"},
    [HMAF_CFG_REVOKE_WAIT] = {"agent.revoke_wait_ms", "HMAF_REVOKE_WAIT",
                              HMAF_CFG_TIME, MS, 1, REVOKE_WAIT_MAX_MS, 1000,
                              NULL, AGENT(revoke_wait_ms), HMAF_CFG_C_INT, 0,
                              "longest wait for sessions to confirm a "
                              "revocation"},
    [HMAF_CFG_MAP_READAHEAD] = {"map.readahead_max", "HMAF_MAP_READAHEAD",
                                HMAF_CFG_COUNT, 0, 0, HMAF_MAP_READAHEAD_MAX,
                                16, NULL, HMAF_CFG_MAP,
                                FIELD(hmaf_map_params_t, readahead_max),
                                HMAF_CFG_C_UNSIGNED, 0,
                                "pages fetched ahead on sequential faults"},
    [HMAF_CFG_HEAP_SESSION_QUOTA] = {"heap.session_quota",
                                     "HMAF_HEAP_SESSION_QUOTA", HMAF_CFG_SIZE,
                                     0, 0, UINT64_MAX, 0, NULL, HMAF_CFG_HEAP,
                                     FIELD(hmaf_heap_params_t, session_quota),
                                     HMAF_CFG_C_U64, 0,
                                     "bytes one session may hold in the "
                                     "heap (0: the whole heap)"},
    [HMAF_CFG_UCX_PORT] = {"ucx.port", "HMAF_UCX_PORT", HMAF_CFG_COUNT, 0, 0,
                           65535, 0, NULL, LIBRARY, 0, HMAF_CFG_STRICT,
                           "ucx engine, host: the port of its listener "
                           "(0: the kernel picks one)"},
    [HMAF_CFG_DOCA_DEV] = {"doca.dev", "HMAF_DOCA_DEV", HMAF_CFG_TEXT, 0, 0,
                           0, 0, "", LIBRARY, 0, 0,
                           "doca engine: PCI address of the device (unset: "
                           "b1:00.0 on the host, 03:00.0 on the dpu side)"},
    [HMAF_CFG_DOCA_ZCOPY_MIN] = {"doca.zcopy_min", "HMAF_DOCA_ZCOPY_MIN",
                                 HMAF_CFG_SIZE, 0, 0, UINT64_MAX, 65536, NULL,
                                 LIBRARY, 0, 0,
                                 "doca engine, dpu side: buffers this long "
                                 "are moved in place (0: all staged)"},
    [HMAF_CFG_DOCA_ZCOPY_CACHE] = {"doca.zcopy_cache", "HMAF_DOCA_ZCOPY_CACHE",
                                   HMAF_CFG_SIZE, 0, 0, UINT64_MAX,
                                   1073741824, NULL, LIBRARY, 0, 0,
                                   "doca engine, dpu side: caller memory "
                                   "kept registered per session"},
    [HMAF_CFG_DOCA_LISTS] = {"doca.lists", "HMAF_DOCA_LISTS", HMAF_CFG_BOOL, 0,
                             0, 1, 1, NULL, LIBRARY, 0, 0,
                             "doca engine: chain host bufs in one task where "
                             "the device can"},
    [HMAF_CFG_MEMWATCH_WP] = {"memwatch.wp", "HMAF_MEMWATCH_WP", HMAF_CFG_BOOL,
                              0, 0, 1, 1, NULL, LIBRARY, 0, 0,
                              "watch registered caller memory in "
                              "write-protect mode where the kernel has it "
                              "(0: missing mode; for testing)"},
    [HMAF_CFG_MAP_WP] = {"map.wp", "HMAF_MAP_WP", HMAF_CFG_BOOL, 0, 0, 1, 1,
                         NULL, LIBRARY, 0, 0,
                         "mapping mode: use userfaultfd write-protect where "
                         "the kernel has it (0: twin every page; for "
                         "testing)"},
    [HMAF_CFG_MAP_MOVE] = {"map.move", "HMAF_MAP_MOVE", HMAF_CFG_BOOL, 0, 0, 1,
                           1, NULL, LIBRARY, 0, 0,
                           "mapping mode: move written pages out on "
                           "eviction where the kernel can (0: as if it "
                           "could not; for testing)"},
};

/* Names under HMAF_ that belong to HMAF's own tests, tools and examples,
 * not to the library: not warned about (docs/configuration.md). */
static const char *const reserved_prefixes[] = {
    "HMAF_TEST_", "HMAF_STRESS_", "HMAF_REVIEW_", "HMAF_DEMO_", "HMAF_FUZZ_",
};

static const char *const level_words[] = {"off", "error", "warn", "info",
                                          "debug"};

/* Per row, a hash of the bad text last warned about (0: none), so each
 * bad value is said once, and a new one again. */
static _Atomic uint64_t warned[HMAF_CFG_NUM];
static atomic_int env_checked;

/* ------------------------------------------------------------------ */
/* Parsing                                                             */
/* ------------------------------------------------------------------ */

/* Decimal digits only: no sign, space or base prefix. */
static int parse_digits(const char **s, uint64_t *v_out, const char **why)
{
    uint64_t v = 0;
    const char *p = *s;

    if (*p < '0' || *p > '9') {
        *why = "not a number";
        return -1;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            *why = "too large";
            return -1;
        }
        v = v * 10 + d;
    }
    *s = p;
    *v_out = v;
    return 0;
}

static int mul_checked(uint64_t v, uint64_t by, uint64_t *out, const char **why)
{
    if (by != 0 && v > UINT64_MAX / by) {
        *why = "too large";
        return -1;
    }
    *out = v * by;
    return 0;
}

/* "", K, M, G, T, each optionally followed by B or iB: binary. */
static int size_suffix(const char *s, uint64_t *mult_out)
{
    static const char units[] = "kmgt";
    const char *u = *s != '\0' ? strchr(units, (char)(*s | 0x20)) : NULL;

    if (*s == '\0') {
        *mult_out = 1;
        return 0;
    }
    if (u == NULL) {
        return -1;
    }
    s++;
    if (strcasecmp(s, "") != 0 && strcasecmp(s, "b") != 0 &&
        strcasecmp(s, "ib") != 0) {
        return -1;
    }
    *mult_out = 1ull << (10 * (u - units + 1));
    return 0;
}

static int time_suffix(const char *s, uint64_t *ns_out)
{
    static const struct {
        const char *word;
        uint64_t ns;
    } units[] = {{"ns", 1}, {"us", US}, {"ms", MS}, {"s", 1000 * MS}};

    for (size_t i = 0; i < HMAF_ARRAY_SIZE(units); i++) {
        if (strcmp(s, units[i].word) == 0) {
            *ns_out = units[i].ns;
            return 0;
        }
    }
    return -1;
}

static const char *unit_word(uint64_t unit_ns)
{
    return unit_ns == 1 ? "ns" : unit_ns == US ? "us" : unit_ns == MS ? "ms"
                                                                      : "s";
}

/* A time in the row's unit: bare, or any unit that converts to a whole
 * number of the row's. */
static int parse_time(const struct hmaf__cfg_row *r, const char *s,
                      uint64_t v, uint64_t *out, const char **why)
{
    uint64_t ns_per, ns;

    if (*s == '\0') {
        *out = v;
        return 0;
    }
    if (time_suffix(s, &ns_per) < 0) {
        *why = "not a time (ns, us, ms or s)";
        return -1;
    }
    if (mul_checked(v, ns_per, &ns, why) < 0) {
        return -1;
    }
    if (ns % r->unit_ns != 0) {
        *why = "not a whole number of the setting's unit";
        return -1;
    }
    *out = ns / r->unit_ns;
    return 0;
}

static int parse_word(const char *text, const char *const *words, size_t n,
                      uint64_t *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(text, words[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

static int parse_bool(const char *text, uint64_t *out)
{
    static const char *const words[] = {"0",  "1",   "off",   "on",
                                        "no", "yes", "false", "true"};

    if (parse_word(text, words, HMAF_ARRAY_SIZE(words), out) < 0) {
        return -1;
    }
    *out &= 1;
    return 0;
}

static int parse_number(const struct hmaf__cfg_row *r, const char *text,
                        uint64_t *out, const char **why)
{
    const char *s = text;
    uint64_t v, mult;

    if (parse_digits(&s, &v, why) < 0) {
        return -1;
    }
    if (r->type == HMAF_CFG_TIME) {
        return parse_time(r, s, v, out, why);
    }
    if (r->type == HMAF_CFG_SIZE) {
        if (size_suffix(s, &mult) < 0) {
            *why = "not a size (K, M, G or T, binary)";
            return -1;
        }
        return mul_checked(v, mult, out, why);
    }
    if (*s != '\0') {
        *why = "not a number";
        return -1;
    }
    *out = v;
    return 0;
}

int hmaf__config_parse(const struct hmaf__cfg_row *r, const char *text,
                       uint64_t *value_out, const char **why_out)
{
    uint64_t v = 0;

    switch (r->type) {
    case HMAF_CFG_TEXT:
        break;
    case HMAF_CFG_BOOL:
        if (parse_bool(text, &v) < 0) {
            *why_out = "not 0 or 1 (off/on, no/yes, false/true)";
            return -1;
        }
        break;
    case HMAF_CFG_LEVEL:
        if (parse_word(text, level_words, HMAF_ARRAY_SIZE(level_words), &v) <
            0) {
            *why_out = "not off, error, warn, info or debug";
            return -1;
        }
        break;
    default:
        if (parse_number(r, text, &v, why_out) < 0) {
            return -1;
        }
        if (v < r->min || v > r->max) {
            *why_out = "out of range";
            return -1;
        }
    }
    *value_out = v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Text                                                                */
/* ------------------------------------------------------------------ */

static void format_size(uint64_t v, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    int u = -1;

    while (v != 0 && u + 1 < 4 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)v, u < 0 ? "" : units[u]);
}

void hmaf__config_format(const struct hmaf__cfg_row *r, uint64_t value,
                         char *buf, size_t len)
{
    switch (r->type) {
    case HMAF_CFG_SIZE:
        format_size(value, buf, len);
        break;
    case HMAF_CFG_TIME:
        snprintf(buf, len, "%llu%s", (unsigned long long)value,
                 unit_word(r->unit_ns));
        break;
    case HMAF_CFG_LEVEL:
        snprintf(buf, len, "%s", level_words[value < 5 ? value : 2]);
        break;
    case HMAF_CFG_TEXT:
        snprintf(buf, len, "%s", r->def_text);
        break;
    default:
        snprintf(buf, len, "%llu", (unsigned long long)value);
    }
}

static const char *unit_of(const struct hmaf__cfg_row *r)
{
    static const char *const names[] = {
        [HMAF_CFG_COUNT] = "count", [HMAF_CFG_SIZE] = "bytes",
        [HMAF_CFG_BOOL] = "bool",   [HMAF_CFG_LEVEL] = "level",
        [HMAF_CFG_TEXT] = "text",
    };

    return r->type == HMAF_CFG_TIME ? unit_word(r->unit_ns) : names[r->type];
}

static void format_range(const struct hmaf__cfg_row *r, char *buf,
                         size_t len)
{
    char lo[32], hi[32];

    switch (r->type) {
    case HMAF_CFG_BOOL:
        snprintf(buf, len, "0, 1 (off/on, no/yes, false/true)");
        return;
    case HMAF_CFG_LEVEL:
        snprintf(buf, len, "off, error, warn, info, debug");
        return;
    case HMAF_CFG_TEXT:
        snprintf(buf, len, "text");
        return;
    default:
        hmaf__config_format(r, r->min, lo, sizeof(lo));
        hmaf__config_format(r, r->max, hi, sizeof(hi));
        snprintf(buf, len, "%s..%s", lo, hi);
    }
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

const char *hmaf__config_env(enum hmaf__cfg_id id)
{
    /* A log file is one the process writes, created if need be: in a
     * setuid, setgid or file-capability program the user who set the
     * variable must not choose it (secure_getenv is NULL there). */
    const char *v = id == HMAF_CFG_LOG_FILE
                        ? secure_getenv(hmaf__cfg_rows[id].env)
                        : getenv(hmaf__cfg_rows[id].env);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* FNV-1a, never 0 (0 means nothing warned yet). */
static uint64_t text_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h | 1;
}

void hmaf__config_warn_bad(enum hmaf__cfg_id id, const char *text,
                           const char *why)
{
    const struct hmaf__cfg_row *r = &hmaf__cfg_rows[id];
    char def[32], range[RANGE_LEN];

    if (atomic_exchange(&warned[id], text_hash(text)) == text_hash(text)) {
        return;
    }
    format_range(r, range, sizeof(range));
    if (r->flags & HMAF_CFG_STRICT) {
        hmaf__log_warn("%s=%s: %s (accepted: %s); calls that use it fail "
                       "with HMAF_EINVAL",
                       r->env, text, why, range);
        return;
    }
    hmaf__config_format(r, r->def, def, sizeof(def));
    hmaf__log_warn("%s=%s: %s (accepted: %s); ignored, the default %s "
                   "applies",
                   r->env, text, why, range, def[0] != '\0' ? def : "(none)");
}

int hmaf__config_value(enum hmaf__cfg_id id, uint64_t *value_out)
{
    const struct hmaf__cfg_row *r = &hmaf__cfg_rows[id];
    const char *text = hmaf__config_env(id);
    const char *why = NULL;
    char range[RANGE_LEN];

    hmaf__config_check_env();
    *value_out = r->def;
    if (text == NULL || hmaf__config_parse(r, text, value_out, &why) == 0) {
        return 0;
    }
    *value_out = r->def;
    if (r->flags & HMAF_CFG_STRICT) {
        format_range(r, range, sizeof(range));
        hmaf__log_error("%s=%s: %s (accepted: %s)", r->env, text, why, range);
        return HMAF_EINVAL;
    }
    hmaf__config_warn_bad(id, text, why);
    return 0;
}

static void store(const struct hmaf__cfg_row *r, void *params, uint64_t v)
{
    char *field = (char *)params + r->offset;

    switch (r->ctype) {
    case HMAF_CFG_C_INT: {
        int i = (int)v; /* the row's max keeps it in range */
        memcpy(field, &i, sizeof(i));
        break;
    }
    case HMAF_CFG_C_UNSIGNED: {
        unsigned u = (unsigned)v;
        memcpy(field, &u, sizeof(u));
        break;
    }
    case HMAF_CFG_C_U64:
        memcpy(field, &v, sizeof(v));
        break;
    }
}

void hmaf__config_apply(enum hmaf__cfg_struct in, void *params)
{
    hmaf__config_check_env();
    for (int id = 0; id < HMAF_CFG_NUM; id++) {
        const struct hmaf__cfg_row *r = &hmaf__cfg_rows[id];
        uint64_t v;

        if (r->in != in || (r->flags & HMAF_CFG_AT_CREATE) ||
            hmaf__config_env((enum hmaf__cfg_id)id) == NULL) {
            continue;
        }
        if (hmaf__config_value((enum hmaf__cfg_id)id, &v) == 0) {
            store(r, params, v);
        }
    }
}

/* ------------------------------------------------------------------ */
/* The environment at first use                                        */
/* ------------------------------------------------------------------ */

extern char **environ;

/* 1: a row's variable, or reserved; 0: unknown. name ends at '='. */
static int known_name(const char *name, size_t len)
{
    for (int id = 0; id < HMAF_CFG_NUM; id++) {
        const char *env = hmaf__cfg_rows[id].env;
        if (strlen(env) == len && strncmp(env, name, len) == 0) {
            return 1;
        }
    }
    for (size_t i = 0; i < HMAF_ARRAY_SIZE(reserved_prefixes); i++) {
        size_t n = strlen(reserved_prefixes[i]);
        if (len >= n && strncmp(name, reserved_prefixes[i], n) == 0) {
            return 1;
        }
    }
    return 0;
}

static void check_values(void)
{
    for (int id = 0; id < HMAF_CFG_NUM; id++) {
        const char *text = hmaf__config_env((enum hmaf__cfg_id)id);
        const char *why = NULL;
        uint64_t v;

        if (text != NULL &&
            hmaf__config_parse(&hmaf__cfg_rows[id], text, &v, &why) < 0) {
            hmaf__config_warn_bad((enum hmaf__cfg_id)id, text, why);
        }
    }
}

void hmaf__config_check_env(void)
{
    if (atomic_load(&env_checked) || atomic_exchange(&env_checked, 1)) {
        return;
    }
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        size_t len = eq != NULL ? (size_t)(eq - *e) : strlen(*e);

        if (strncmp(*e, "HMAF_", 5) == 0 && !known_name(*e, len)) {
            hmaf__log_warn("unknown variable %.*s in the environment: "
                           "ignored (docs/configuration.md lists them)",
                           (int)len, *e);
        }
    }
    check_values();
}

/* ------------------------------------------------------------------ */
/* The listing (include/hmaf/config.h)                                 */
/* ------------------------------------------------------------------ */

struct config_item {
    char *value;
    char *env_value;
    hmaf_config_source_t source;
    char def[32];
    char range[RANGE_LEN];
};

struct hmaf_config {
    size_t count;
    struct config_item items[HMAF_CFG_NUM];
};

/* The value a row has now, as text, and where it came from. */
static int snapshot_row(enum hmaf__cfg_id id, struct config_item *it)
{
    const struct hmaf__cfg_row *r = &hmaf__cfg_rows[id];
    const char *text = hmaf__config_env(id), *why = NULL;
    char buf[32];
    uint64_t v = r->def;

    hmaf__config_format(r, r->def, it->def, sizeof(it->def));
    format_range(r, it->range, sizeof(it->range));
    it->source = HMAF_CONFIG_DEFAULT;
    if (text != NULL) {
        it->env_value = strdup(text);
        it->source = hmaf__config_parse(r, text, &v, &why) == 0
                         ? HMAF_CONFIG_ENV
                         : HMAF_CONFIG_ENV_INVALID;
        if (it->source == HMAF_CONFIG_ENV_INVALID) {
            v = r->def;
            hmaf__config_warn_bad(id, text, why);
        }
    }
    if (r->type == HMAF_CFG_TEXT && it->source == HMAF_CONFIG_ENV) {
        it->value = strdup(text);
    } else {
        hmaf__config_format(r, v, buf, sizeof(buf));
        it->value = strdup(buf);
    }
    return it->value == NULL || (text != NULL && it->env_value == NULL)
               ? HMAF_ENOMEM
               : 0;
}

HMAF_API void hmaf_config_free(hmaf_config_t *config)
{
    if (config == NULL) {
        return;
    }
    for (size_t i = 0; i < config->count; i++) {
        free(config->items[i].value);
        free(config->items[i].env_value);
    }
    free(config);
}

HMAF_API int hmaf_config_snapshot(hmaf_config_t **config_out,
                                  size_t *count_out)
{
    hmaf_config_t *c;
    int ret = 0;

    if (config_out == NULL) {
        return HMAF_EINVAL;
    }
    hmaf__config_check_env();
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return HMAF_ENOMEM;
    }
    c->count = HMAF_CFG_NUM;
    for (int id = 0; id < HMAF_CFG_NUM && ret == 0; id++) {
        ret = snapshot_row((enum hmaf__cfg_id)id, &c->items[id]);
    }
    if (ret < 0) {
        hmaf_config_free(c);
        return ret;
    }
    *config_out = c;
    if (count_out != NULL) {
        *count_out = c->count;
    }
    return 0;
}

/* The first version's size: a caller's entry must hold at least it. */
HMAF__STATS_SIZE_MIN_DEFINE(ENTRY_SIZE_V1, hmaf_config_entry_t, description);

/* The entry's size follows the counters structs' rule (util/stats.h): a
 * caller built against a newer header gets zeros for what this library
 * does not know, one against an older header what fits. */
HMAF_API int hmaf_config_entry(const hmaf_config_t *config, size_t index,
                               hmaf_config_entry_t *entry)
{
    const struct hmaf__cfg_row *r;
    const struct config_item *it;
    hmaf_config_entry_t e = {.size = sizeof(e)};
    size_t size;
    int ret = hmaf__stats_size(entry, ENTRY_SIZE_V1, &size);

    if (ret < 0 || config == NULL) {
        return HMAF_EINVAL;
    }
    if (index >= config->count) {
        return HMAF_ENOENT;
    }
    r = &hmaf__cfg_rows[index];
    it = &config->items[index];
    e.name = r->name;
    e.env = r->env;
    e.value = it->value;
    e.source = it->source;
    e.env_value = it->env_value;
    e.default_value = it->def;
    e.unit = unit_of(r);
    e.range = it->range;
    e.description = r->doc;
    hmaf__stats_put(entry, size, &e, sizeof(e));
    return 0;
}

HMAF_API int hmaf_config_find(const hmaf_config_t *config, const char *name,
                              hmaf_config_entry_t *entry)
{
    if (config == NULL || name == NULL) {
        return HMAF_EINVAL;
    }
    for (size_t i = 0; i < config->count; i++) {
        if (strcmp(name, hmaf__cfg_rows[i].name) == 0 ||
            strcmp(name, hmaf__cfg_rows[i].env) == 0) {
            return hmaf_config_entry(config, i, entry);
        }
    }
    return HMAF_ENOENT;
}
