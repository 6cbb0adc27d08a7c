/*
 * Settings from the environment (util/config.c) and the log's outputs
 * (util/log.c). What happens once per process (the look at the whole
 * environment, the log's level and file) is tested by cases that each run
 * as a process of their own: test_config <case>.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <regex.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/mailbox.h"
#include "util/config.h"
#include "util/log.h"

/* --- messages, through the handler ------------------------------------ */

#define MAX_MSGS 256

static char *msgs[MAX_MSGS];
static hmaf_log_level_t msg_levels[MAX_MSGS];
static int num_msgs;

static void capture(void *arg, hmaf_log_level_t level, const char *message)
{
    CHECK(arg == &num_msgs);
    if (num_msgs < MAX_MSGS) {
        msg_levels[num_msgs] = level;
        msgs[num_msgs++] = strdup(message);
    }
}

/* Messages that contain every one of the given texts (NULL-terminated). */
static int said(const char *text, ...)
{
    int n = 0;

    for (int i = 0; i < num_msgs; i++) {
        const char *t = text;
        int all = 1;
        va_list ap;

        va_start(ap, text);
        for (; t != NULL && all; t = va_arg(ap, const char *)) {
            all = strstr(msgs[i], t) != NULL;
        }
        va_end(ap);
        n += all;
    }
    return n;
}

static void unset_all(void)
{
    for (int id = 0; id < HMAF_CFG_NUM; id++) {
        unsetenv(hmaf__cfg_rows[id].env);
    }
}

/* --- the parser --------------------------------------------------------- */

static const struct hmaf__cfg_row *row(enum hmaf__cfg_id id)
{
    return &hmaf__cfg_rows[id];
}

static void parses(enum hmaf__cfg_id id, const char *text, uint64_t want)
{
    const char *why = NULL;
    uint64_t v = ~want;

    if (hmaf__config_parse(row(id), text, &v, &why) != 0) {
        fprintf(stderr, "%s=%s refused: %s\n", row(id)->env, text, why);
        exit(1);
    }
    CHECK_EQ(v, want);
}

static void refuses(enum hmaf__cfg_id id, const char *text)
{
    const char *why = NULL;
    uint64_t v = 12345;

    if (hmaf__config_parse(row(id), text, &v, &why) == 0) {
        fprintf(stderr, "%s=%s accepted as %llu\n", row(id)->env, text,
                (unsigned long long)v);
        exit(1);
    }
    CHECK(why != NULL && why[0] != '\0');
    CHECK_EQ(v, 12345); /* nothing written */
}

static void test_times(void)
{
    parses(HMAF_CFG_RPC_TIMEOUT, "200", 200); /* bare: the field's ms */
    parses(HMAF_CFG_RPC_TIMEOUT, "200ms", 200);
    parses(HMAF_CFG_RPC_TIMEOUT, "2s", 2000);
    parses(HMAF_CFG_RPC_TIMEOUT, "3000us", 3);
    parses(HMAF_CFG_RPC_TIMEOUT, "4000000ns", 4);
    parses(HMAF_CFG_RPC_TIMEOUT, "2147483647", 2147483647);
    parses(HMAF_CFG_REVOKE_CHECK, "250", 250); /* bare: the field's us */
    parses(HMAF_CFG_REVOKE_CHECK, "3ms", 3000);
    parses(HMAF_CFG_REVOKE_CHECK, "1500us", 1500);
    refuses(HMAF_CFG_RPC_TIMEOUT, "1500us"); /* 1.5 ms */
    refuses(HMAF_CFG_RPC_TIMEOUT, "0");      /* below the minimum */
    refuses(HMAF_CFG_RPC_TIMEOUT, "0ms");
    refuses(HMAF_CFG_RPC_TIMEOUT, "2147483648"); /* above INT_MAX */
    refuses(HMAF_CFG_RPC_TIMEOUT, "-1");
    refuses(HMAF_CFG_RPC_TIMEOUT, "+5");
    refuses(HMAF_CFG_RPC_TIMEOUT, " 5");
    refuses(HMAF_CFG_RPC_TIMEOUT, "5 ");
    refuses(HMAF_CFG_RPC_TIMEOUT, "5m");
    refuses(HMAF_CFG_RPC_TIMEOUT, "5MS");
    refuses(HMAF_CFG_RPC_TIMEOUT, "1.5s");
    refuses(HMAF_CFG_RPC_TIMEOUT, "ms");
    refuses(HMAF_CFG_RPC_TIMEOUT, "0x10");
    refuses(HMAF_CFG_RPC_TIMEOUT, "99999999999999999999");   /* 2^64 + */
    refuses(HMAF_CFG_RPC_TIMEOUT, "18446744073709551615s"); /* in ns */
    refuses(HMAF_CFG_REVOKE_CHECK, "1ns");
}

static void test_sizes(void)
{
    parses(HMAF_CFG_CACHE_MAX_BYTES, "4096", 4096);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "16K", 16ull << 10);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "16k", 16ull << 10);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "16KiB", 16ull << 10);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "16M", 16ull << 20);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "16MiB", 16ull << 20);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "16MB", 16ull << 20);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "3G", 3ull << 30);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "2TiB", 2ull << 40);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "16777215T", 16777215ull << 40);
    parses(HMAF_CFG_CACHE_MAX_BYTES, "18446744073709551615", UINT64_MAX);
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "16777216T"); /* 2^64 */
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "18446744073709551616");
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "0"); /* below the minimum */
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "1.5M");
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "16Q");
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "16MiBs");
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "16 M");
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "-16M");
    refuses(HMAF_CFG_CACHE_MAX_BYTES, "M");
    refuses(HMAF_CFG_MAP_MAX_RESIDENT, "4095");
    parses(HMAF_CFG_MAP_MAX_RESIDENT, "4K", 4096);
    parses(HMAF_CFG_HEAP_SESSION_QUOTA, "0", 0);
}

static void test_counts_words(void)
{
    parses(HMAF_CFG_MAILBOX_SLOTS, "32", 32);
    parses(HMAF_CFG_MAILBOX_SLOTS, "256", 256);
    refuses(HMAF_CFG_MAILBOX_SLOTS, "257");
    refuses(HMAF_CFG_MAILBOX_SLOTS, "0");
    refuses(HMAF_CFG_MAILBOX_SLOTS, "32K"); /* counts take no unit */
    refuses(HMAF_CFG_MAILBOX_SLOTS, "32ms");
    parses(HMAF_CFG_MAP_READAHEAD, "0", 0);
    refuses(HMAF_CFG_MAP_READAHEAD, "1025");
    parses(HMAF_CFG_UCX_PORT, "65535", 65535);
    refuses(HMAF_CFG_UCX_PORT, "65536");
    refuses(HMAF_CFG_UCX_PORT, "http");
    parses(HMAF_CFG_MAP_WP, "0", 0);
    parses(HMAF_CFG_MAP_WP, "1", 1);
    parses(HMAF_CFG_MAP_WP, "OFF", 0);
    parses(HMAF_CFG_MAP_WP, "yes", 1);
    parses(HMAF_CFG_MAP_WP, "False", 0);
    refuses(HMAF_CFG_MAP_WP, "2");
    refuses(HMAF_CFG_MAP_WP, "00");
    parses(HMAF_CFG_LOG, "off", 0);
    parses(HMAF_CFG_LOG, "ERROR", 1);
    parses(HMAF_CFG_LOG, "Warn", 2);
    parses(HMAF_CFG_LOG, "info", 3);
    parses(HMAF_CFG_LOG, "DEBUG", 4);
    refuses(HMAF_CFG_LOG, "verbose");
    refuses(HMAF_CFG_LOG, "warning");
    parses(HMAF_CFG_ENGINE, "anything", 0);
}

/* Every row's default, written as the listing writes it, reads back. */
static void test_round_trip(void)
{
    for (int id = 0; id < HMAF_CFG_NUM; id++) {
        const struct hmaf__cfg_row *r = row((enum hmaf__cfg_id)id);
        char text[64];

        hmaf__config_format(r, r->def, text, sizeof(text));
        if (r->type != HMAF_CFG_TEXT) {
            parses((enum hmaf__cfg_id)id, text, r->def);
        }
        CHECK(strncmp(r->env, "HMAF_", 5) == 0);
        for (int j = 0; j < id; j++) {
            CHECK(strcmp(r->env, hmaf__cfg_rows[j].env) != 0);
            CHECK(strcmp(r->name, hmaf__cfg_rows[j].name) != 0);
        }
    }
    /* The limits the table copies from layers util cannot include. */
    CHECK_EQ(row(HMAF_CFG_MAX_INFLIGHT)->max, HMAF_MAX_INFLIGHT);
    CHECK_EQ(row(HMAF_CFG_MAILBOX_SLOTS)->max, HMAF_MBOX_MAX_SLOTS);
    CHECK_EQ(row(HMAF_CFG_SPLIT_THREADS)->max, HMAF_SPLIT_THREADS_MAX);
    CHECK_EQ(row(HMAF_CFG_MAP_READAHEAD)->max, HMAF_MAP_READAHEAD_MAX);
}

/* Strict rows make the using call fail; the others keep the default. */
static void test_values(void)
{
    uint64_t v = 0;

    unset_all();
    CHECK_OK(hmaf__config_value(HMAF_CFG_SPLIT_THREADS, &v));
    CHECK_EQ(v, 0);
    setenv("HMAF_SPLIT_THREADS", "65", 1);
    CHECK_ERR(hmaf__config_value(HMAF_CFG_SPLIT_THREADS, &v), HMAF_EINVAL);
    setenv("HMAF_SPLIT_THREADS", "", 1); /* empty: unset */
    CHECK_OK(hmaf__config_value(HMAF_CFG_SPLIT_THREADS, &v));
    CHECK_EQ(v, 0);
    setenv("HMAF_UCX_PORT", "-1", 1);
    CHECK_ERR(hmaf__config_value(HMAF_CFG_UCX_PORT, &v), HMAF_EINVAL);
    setenv("HMAF_DOCA_ZCOPY_MIN", "64Q", 1);
    CHECK_OK(hmaf__config_value(HMAF_CFG_DOCA_ZCOPY_MIN, &v));
    CHECK_EQ(v, 65536);
    setenv("HMAF_DOCA_ZCOPY_MIN", "1M", 1);
    CHECK_OK(hmaf__config_value(HMAF_CFG_DOCA_ZCOPY_MIN, &v));
    CHECK_EQ(v, 1 << 20);
    unset_all();
}

static int case_parse(void)
{
    test_times();
    test_sizes();
    test_counts_words();
    test_round_trip();
    test_values();
    return 0;
}

/* --- the environment into each params struct ------------------------------ */

/* With nothing set, each params_init gives the table's defaults. */
static void check_defaults(void)
{
    hmaf_session_params_t s;
    hmaf_agent_params_t a;
    hmaf_map_params_t m;
    hmaf_heap_params_t h;
    void *of[] = {[HMAF_CFG_SESSION] = &s, [HMAF_CFG_AGENT] = &a,
                  [HMAF_CFG_MAP] = &m, [HMAF_CFG_HEAP] = &h};

    unset_all();
    hmaf_session_params_init(&s);
    hmaf_agent_params_init(&a);
    hmaf_map_params_init(&m);
    hmaf_heap_params_init(&h);
    for (int id = 0; id < HMAF_CFG_NUM; id++) {
        const struct hmaf__cfg_row *r = row((enum hmaf__cfg_id)id);
        const char *field;
        uint64_t v = 0;

        if (r->in == HMAF_CFG_NONE) {
            continue;
        }
        field = (const char *)of[r->in] + r->offset;
        if (r->ctype == HMAF_CFG_C_U64) {
            memcpy(&v, field, sizeof(v));
        } else {
            unsigned u;
            memcpy(&u, field, sizeof(u));
            v = u;
        }
        if (v != r->def) {
            fprintf(stderr, "%s: params_init gives %llu, the table %llu\n",
                    r->name, (unsigned long long)v,
                    (unsigned long long)r->def);
            exit(1);
        }
    }
}

static int case_apply(void)
{
    hmaf_session_params_t s;
    hmaf_agent_params_t a;
    hmaf_map_params_t m;
    hmaf_heap_params_t h;

    unset_all();
    CHECK_OK(hmaf_log_set_handler(capture, &num_msgs));
    num_msgs = 0; /* whatever else the environment holds */
    check_defaults();
    setenv("HMAF_CONNECT_TIMEOUT", "2s", 1);
    setenv("HMAF_RPC_TIMEOUT", "200ms", 1);
    setenv("HMAF_CACHE_MAX_REGIONS", "77", 1);
    setenv("HMAF_CACHE_MAX_BYTES", "16M", 1);
    setenv("HMAF_REVOKE_CHECK", "2ms", 1);
    setenv("HMAF_MAX_INFLIGHT", "99", 1);
    setenv("HMAF_MAP_MAX_RESIDENT", "1GiB", 1);
    setenv("HMAF_SPLIT_THREADS", "3", 1);
    setenv("HMAF_MAX_SESSIONS", "5", 1);
    setenv("HMAF_MAILBOX_SLOTS", "32", 1);
    setenv("HMAF_HANDSHAKE_TIMEOUT", "1500", 1);
    setenv("HMAF_REVOKE_WAIT", "3s", 1);
    setenv("HMAF_MAP_READAHEAD", "64", 1);
    setenv("HMAF_HEAP_SESSION_QUOTA", "1M", 1);
    hmaf_session_params_init(&s);
    CHECK_EQ(s.size, sizeof(s));
    CHECK_EQ(s.connect_timeout_ms, 2000);
    CHECK_EQ(s.rpc_timeout_ms, 200);
    CHECK_EQ(s.cache_max_regions, 77);
    CHECK_EQ(s.cache_max_bytes, 16 << 20);
    CHECK_EQ(s.revoke_check_us, 2000);
    CHECK_EQ(s.max_inflight, 99);
    CHECK_EQ(s.map_max_resident, 1 << 30);
    CHECK_EQ(s.split_threads, 0); /* read by hmaf_session_create */
    CHECK(s.address == NULL && s.token == NULL && s.engine == NULL);
    hmaf_agent_params_init(&a);
    CHECK_EQ(a.max_sessions, 5);
    CHECK_EQ(a.mailbox_slots, 32);
    CHECK_EQ(a.handshake_timeout_ms, 1500);
    CHECK_EQ(a.revoke_wait_ms, 3000);
    CHECK_EQ(a.threaded, 1);
    hmaf_map_params_init(&m);
    CHECK_EQ(m.readahead_max, 64);
    CHECK_EQ(m.flags, 0);
    hmaf_heap_params_init(&h);
    CHECK_EQ(h.session_quota, 1 << 20);
    CHECK_EQ(said("HMAF_", NULL), 0); /* all valid: nothing said */

    /* Bad values: the default, and one warning per variable and value. */
    setenv("HMAF_RPC_TIMEOUT", "200xs", 1);
    setenv("HMAF_MAILBOX_SLOTS", "1000", 1);
    setenv("HMAF_MAP_READAHEAD", "-1", 1);
    setenv("HMAF_HEAP_SESSION_QUOTA", "1.5G", 1);
    for (int i = 0; i < 3; i++) {
        hmaf_session_params_init(&s);
        hmaf_agent_params_init(&a);
        hmaf_map_params_init(&m);
        hmaf_heap_params_init(&h);
    }
    CHECK_EQ(s.rpc_timeout_ms, 5000);
    CHECK_EQ(s.connect_timeout_ms, 2000); /* the valid ones still apply */
    CHECK_EQ(a.mailbox_slots, 16);
    CHECK_EQ(m.readahead_max, 16);
    CHECK_EQ(h.session_quota, 0);
    CHECK_EQ(said("HMAF_RPC_TIMEOUT=200xs", "5000ms", NULL), 1);
    CHECK_EQ(said("HMAF_MAILBOX_SLOTS=1000", "out of range", "1..256", NULL),
             1);
    CHECK_EQ(said("HMAF_MAP_READAHEAD=-1", NULL), 1);
    CHECK_EQ(said("HMAF_HEAP_SESSION_QUOTA=1.5G", NULL), 1);
    for (int i = 0; i < num_msgs; i++) {
        CHECK_EQ(msg_levels[i], HMAF_LOG_WARN);
    }
    /* Another bad value of the same variable is said again. */
    setenv("HMAF_RPC_TIMEOUT", "fast", 1);
    hmaf_session_params_init(&s);
    CHECK_EQ(said("HMAF_RPC_TIMEOUT=fast", NULL), 1);
    /* The program's own assignment after init wins over the environment. */
    setenv("HMAF_RPC_TIMEOUT", "200ms", 1);
    hmaf_session_params_init(&s);
    s.rpc_timeout_ms = 42;
    CHECK_EQ(s.rpc_timeout_ms, 42);
    CHECK_OK(hmaf_log_set_handler(NULL, NULL));
    unset_all();
    return 0;
}

/* --- once per process ----------------------------------------------------- */

/* An unknown HMAF_ variable is said once, at the first use; reserved
 * names of HMAF's tests are not. */
static int case_unknown(void)
{
    hmaf_session_params_t s;
    hmaf_config_t *c = NULL;

    setenv("HMAF_RPC_TIMEOUTT", "200ms", 1); /* a typo */
    setenv("HMAF_TEST_CONFIG_RESERVED", "1", 1);
    setenv("HMAF_MAILBOX_SLOTS", "0", 1); /* bad, and never used here */
    setenv("NOT_HMAF_X", "1", 1);
    CHECK_OK(hmaf_log_set_handler(capture, &num_msgs));
    CHECK_EQ(said("HMAF_RPC_TIMEOUTT", NULL), 1); /* at the first use */
    CHECK_EQ(said("HMAF_MAILBOX_SLOTS=0", "out of range", NULL), 1);
    for (int i = 0; i < 3; i++) {
        hmaf_session_params_init(&s);
        CHECK_OK(hmaf_config_snapshot(&c, NULL));
        hmaf_config_free(c);
    }
    CHECK_EQ(said("HMAF_RPC_TIMEOUTT", "unknown", NULL), 1);
    CHECK_EQ(said("HMAF_MAILBOX_SLOTS=0", NULL), 1);
    CHECK_EQ(said("HMAF_TEST_CONFIG_RESERVED", NULL), 0);
    CHECK_EQ(said("NOT_HMAF_X", NULL), 0);
    CHECK_EQ(s.rpc_timeout_ms, 5000);
    return 0;
}

/* HMAF_LOG in any case; a bad level keeps warn and is said. Off makes
 * no HMAF_LOG_FILE either. */
static int case_log_level(const char *level)
{
    char dir[] = "/tmp/hmaf-config-XXXXXX", path[128];

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/hmaf.log", dir);
    setenv("HMAF_LOG_FILE", path, 1);
    setenv("HMAF_LOG", level, 1);
    CHECK_OK(hmaf_log_set_handler(capture, &num_msgs));
    hmaf__log_debug("debug %d", 4);
    hmaf__log_info("info %d", 3);
    hmaf__log_warn("warn %d", 2);
    hmaf__log_error("error %d", 1);
    if (strcasecmp(level, "debug") == 0) {
        CHECK_EQ(num_msgs, 4);
        CHECK_EQ(said("debug 4", NULL), 1);
        CHECK_EQ(msg_levels[0], HMAF_LOG_DEBUG);
        CHECK_EQ(msg_levels[3], HMAF_LOG_ERROR);
    } else if (strcasecmp(level, "off") == 0) {
        CHECK_EQ(num_msgs, 0);
        CHECK(access(path, F_OK) != 0);
    } else if (strcasecmp(level, "error") == 0) {
        CHECK_EQ(num_msgs, 1);
        CHECK_EQ(said("error 1", NULL), 1);
    } else { /* not a level: warn, and said */
        CHECK_EQ(said("HMAF_LOG=", level, NULL), 1);
        CHECK_EQ(said("warn 2", NULL), 1);
        CHECK_EQ(said("error 1", NULL), 1);
        CHECK_EQ(said("info 3", NULL) + said("debug 4", NULL), 0);
    }
    unlink(path);
    rmdir(dir);
    return 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    static char buf[65536];
    size_t n;

    CHECK(f != NULL);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The default line: greppable, with pid, tid and a UTC time. */
static void check_line(const char *text, const char *level, const char *msg)
{
    char pattern[256];
    regex_t re;

    snprintf(pattern, sizeof(pattern),
             "^hmaf\\[%d:[0-9]+\\] "
             "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
             "\\.[0-9]{6}Z %s: %s$",
             (int)getpid(), level, msg);
    CHECK_EQ(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE), 0);
    if (regexec(&re, text, 0, NULL, 0) != 0) {
        fprintf(stderr, "no line /%s/ in:\n%s", pattern, text);
        exit(1);
    }
    regfree(&re);
}

/* HMAF_LOG_FILE gets the lines (appended); one that cannot be opened
 * leaves them on stderr, with a warning. */
static int case_log_file(int openable)
{
    char dir[] = "/tmp/hmaf-config-XXXXXX", path[128], err_path[128];
    FILE *f;
    int fd;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/%s", dir,
             openable ? "hmaf.log" : "missing/hmaf.log");
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
    if (openable) {
        f = fopen(path, "w");
        CHECK(f != NULL);
        fputs("kept\n", f);
        fclose(f);
    }
    setenv("HMAF_LOG_FILE", path, 1);
    fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    fflush(stderr);
    CHECK(dup2(fd, 2) == 2); /* our stderr: a file to look at */
    close(fd);
    hmaf__log_warn("marker %d", 7);
    hmaf__log_error("second line");
    if (openable) {
        const char *text = read_file(path);
        CHECK(strncmp(text, "kept\n", 5) == 0); /* appended */
        check_line(text, "warn", "marker 7");
        check_line(text, "error", "second line");
        CHECK(read_file(err_path)[0] == '\0');
        unlink(path);
    } else {
        const char *text = read_file(err_path);
        check_line(text, "warn", "marker 7");
        check_line(text, "warn", "HMAF_LOG_FILE=.*: cannot open: .*");
        CHECK(access(path, F_OK) != 0);
    }
    unlink(err_path);
    rmdir(dir);
    return 0;
}

/* HMAF_LOG_FILE naming a FIFO. Nobody reading it: the first message
 * must not wait for a reader (open() on such a FIFO blocks until one
 * comes, and every thread that logs waits for the first message's open);
 * the FIFO counts as a file that cannot be opened. With a reader, the
 * lines go to it. A hang fails through the watchdog. */
static int case_log_file_fifo(int reader)
{
    char dir[] = "/tmp/hmaf-config-XXXXXX", path[128], err_path[128];
    char line[1024];
    ssize_t n;
    int fd, rfd = -1;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
    CHECK_EQ(mkfifo(path, 0600), 0);
    if (reader) {
        rfd = open(path, O_RDONLY | O_NONBLOCK);
        CHECK(rfd >= 0);
    }
    setenv("HMAF_LOG_FILE", path, 1);
    fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    fflush(stderr);
    CHECK(dup2(fd, 2) == 2);
    close(fd);
    alarm(30); /* watchdog: the default action ends the test, failed */
    hmaf__log_warn("marker %d", 7);
    alarm(0);
    if (reader) {
        n = read(rfd, line, sizeof(line) - 1);
        CHECK(n > 0);
        line[n] = '\0';
        check_line(line, "warn", "marker 7");
        CHECK(read_file(err_path)[0] == '\0');
        close(rfd);
    } else {
        const char *text = read_file(err_path);
        check_line(text, "warn", "marker 7");
        check_line(text, "warn", "HMAF_LOG_FILE=.*: cannot open: .*");
    }
    unlink(path);
    unlink(err_path);
    rmdir(dir);
    return 0;
}

/* A message quoting text with a newline (a bad value from the
 * environment) stays one line: the text must not forge a line of its
 * own. */
static int case_log_one_line(void)
{
    char dir[] = "/tmp/hmaf-config-XXXXXX", path[128];
    hmaf_session_params_t p;
    const char *text;
    int lines = 0;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/hmaf.log", dir);
    setenv("HMAF_LOG_FILE", path, 1);
    setenv("HMAF_RPC_TIMEOUT",
           "5\nhmaf[1:1] 2026-01-01T00:00:00.000000Z error: forged\tline", 1);
    hmaf_session_params_init(&p); /* the first use: warns, once */
    CHECK_EQ(p.rpc_timeout_ms, 5000);
    text = read_file(path);
    for (const char *c = text; *c != '\0'; c++) {
        lines += *c == '\n';
    }
    CHECK_EQ(lines, 1);
    check_line(text, "warn", "HMAF_RPC_TIMEOUT=5\\?hmaf\\[1:1\\] .* "
                             "error: forged\\?line: not a time .*");
    unlink(path);
    rmdir(dir);
    return 0;
}

/* HMAF_LOG_FILE in a setuid program, run by another user: that user must
 * not choose a file the program writes (and creates) with its owner's
 * rights. This program, copied setuid root, runs as nobody with
 * HMAF_LOG_FILE in a directory only root may write: the file must not
 * appear, the message goes to stderr. */
#define NOBODY 65534

static int case_log_file_setuid_child(void)
{
    if (getauxval(AT_SECURE) == 0) {
        return 77; /* a nosuid mount: not the secure mode */
    }
    hmaf__log_warn("marker %d", 9);
    return 0;
}

static int case_log_file_setuid(void)
{
    char dir[] = "/tmp/hmaf-config-XXXXXX", copy[128], path[128];
    char cmd[512];
    int status;
    pid_t pid;

    if (geteuid() != 0) {
        printf("skip: needs root, to make a setuid copy\n");
        return 77;
    }
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ(chmod(dir, 0755), 0);
    snprintf(copy, sizeof(copy), "%s/test_config", dir);
    snprintf(path, sizeof(path), "%s/chosen.log", dir);
    snprintf(cmd, sizeof(cmd), "cp /proc/%d/exe %s", (int)getpid(), copy);
    CHECK_EQ(system(cmd), 0);
    CHECK_EQ(chmod(copy, 04755), 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (setgid(NOBODY) != 0 || setuid(NOBODY) != 0) {
            _exit(2);
        }
        setenv("HMAF_LOG_FILE", path, 1);
        execl(copy, copy, "log-file-setuid-child", (char *)NULL);
        _exit(3);
    }
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    unlink(copy);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        rmdir(dir);
        printf("skip: the setuid copy did not run in secure mode (nosuid)\n");
        return 77;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "%s was created by a setuid program\n", path);
        unlink(path);
        rmdir(dir);
        return 1;
    }
    rmdir(dir);
    return 0;
}

/* HMAF_LOG_FILE a FIFO whose reader goes away: the next line is lost,
 * not the process (SIGPIPE's default action ends it), and no SIGPIPE is
 * left pending. */
static int case_log_file_fifo_gone(void)
{
    char dir[] = "/tmp/hmaf-config-XXXXXX", path[128], line[1024];
    sigset_t pending;
    int rfd;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    CHECK_EQ(mkfifo(path, 0600), 0);
    rfd = open(path, O_RDONLY | O_NONBLOCK);
    CHECK(rfd >= 0);
    setenv("HMAF_LOG_FILE", path, 1);
    hmaf__log_warn("marker %d", 1);
    CHECK(read(rfd, line, sizeof(line)) > 0);
    close(rfd); /* the reader goes */
    hmaf__log_warn("marker %d", 2);
    CHECK_EQ(sigpending(&pending), 0);
    CHECK_EQ(sigismember(&pending, SIGPIPE), 0);
    unlink(path);
    rmdir(dir);
    return 0;
}

/* A child forked while another thread was inside the handler: nobody in
 * the child is, so its own hmaf_log_set_handler() and messages go
 * through (they waited forever on the lock the parent's thread held). */
static int release_fd[2], entered_fd[2];

static void handler_blocks(void *arg, hmaf_log_level_t level,
                           const char *message)
{
    char c = 1;

    (void)arg;
    (void)level;
    (void)message;
    CHECK_EQ(write(entered_fd[1], &c, 1), 1);
    CHECK_EQ(read(release_fd[0], &c, 1), 1);
}

static void *log_once_thread(void *arg)
{
    (void)arg;
    hmaf__log_warn("held in the handler");
    return NULL;
}

static int case_fork_handler(void)
{
    pthread_t t;
    pid_t pid;
    int status;
    char c = 0;

    CHECK(pipe(release_fd) == 0 && pipe(entered_fd) == 0);
    CHECK_OK(hmaf_log_set_handler(handler_blocks, NULL));
    CHECK_EQ(pthread_create(&t, NULL, log_once_thread, NULL), 0);
    CHECK_EQ(read(entered_fd[0], &c, 1), 1); /* it is in the handler */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(30); /* watchdog: a hang ends the child by SIGALRM */
        num_msgs = 0;
        CHECK_OK(hmaf_log_set_handler(capture, &num_msgs));
        hmaf__log_warn("from the child");
        _exit(num_msgs == 1 && said("from the child", NULL) == 1 ? 0 : 1);
    }
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK_EQ(write(release_fd[1], &c, 1), 1);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_OK(hmaf_log_set_handler(NULL, NULL));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child: status %#x\n", status);
        return 1;
    }
    return 0;
}

/* A handler that forks (system(), popen()): in the child, the thread that
 * forked is inside the handler and the message ends as usual; after it
 * the child's own hmaf_log_set_handler() and messages go through. */
static pid_t forked_in_handler = -1;

static void handler_forks(void *arg, hmaf_log_level_t level,
                          const char *message)
{
    (void)arg;
    (void)level;
    (void)message;
    if (forked_in_handler < 0) {
        forked_in_handler = fork();
        CHECK(forked_in_handler >= 0);
    }
}

static int case_fork_in_handler(void)
{
    int status;

    CHECK_OK(hmaf_log_set_handler(handler_forks, NULL));
    hmaf__log_warn("forks");
    if (forked_in_handler == 0) {
        alarm(30); /* watchdog: a hang ends the child by SIGALRM */
        num_msgs = 0;
        CHECK_OK(hmaf_log_set_handler(capture, &num_msgs));
        hmaf__log_warn("from the child");
        CHECK_OK(hmaf_log_set_handler(NULL, NULL));
        _exit(num_msgs == 1 && said("from the child", NULL) == 1 ? 0 : 1);
    }
    CHECK_EQ(waitpid(forked_in_handler, &status, 0), forked_in_handler);
    CHECK_OK(hmaf_log_set_handler(NULL, NULL));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child: status %#x\n", status);
        return 1;
    }
    return 0;
}

/* An engine name that is not built in, from $HMAF_ENGINE or the params:
 * create fails with HMAF_ENOENGINE, and the log says which name and what
 * is built (it said nothing). */
static int case_engine_unknown(void)
{
    hmaf_agent_params_t ap;
    hmaf_session_params_t sp;
    hmaf_agent_t *agent = NULL;
    hmaf_session_t *session = NULL;

    setenv("HMAF_ENGINE", "bogus", 1);
    CHECK_OK(hmaf_log_set_handler(capture, &num_msgs));
    hmaf_agent_params_init(&ap);
    CHECK_ERR(hmaf_agent_create(&ap, &agent), HMAF_ENOENGINE);
    CHECK_EQ(said("no engine named 'bogus'", "built: cma", NULL), 1);
    hmaf_session_params_init(&sp);
    sp.address = "unix:/nonexistent/hmaf-config-test";
    sp.engine = "nope";
    CHECK_ERR(hmaf_session_create(&sp, &session), HMAF_ENOENGINE);
    CHECK_EQ(said("no engine named 'nope'", NULL), 1);
    CHECK(agent == NULL && session == NULL);
    return 0;
}

/* hmaf_log_set_handler() while other threads log: when it returns, the
 * old handler is no longer running and is never called again. */
static atomic_int calls_a, calls_b, a_retired, late_a, stop_logging;

static void handler_a(void *arg, hmaf_log_level_t level, const char *message)
{
    (void)arg;
    (void)level;
    (void)message;
    if (atomic_load(&a_retired)) {
        atomic_store(&late_a, 1);
    }
    atomic_fetch_add(&calls_a, 1);
}

static void handler_b(void *arg, hmaf_log_level_t level, const char *message)
{
    (void)level;
    CHECK(arg == &calls_b);
    CHECK(strncmp(message, "from thread ", 12) == 0);
    atomic_fetch_add(&calls_b, 1);
}

static void *log_loop(void *arg)
{
    while (!atomic_load(&stop_logging)) {
        hmaf__log_warn("from thread %d", *(int *)arg);
    }
    return NULL;
}

static void wait_calls(atomic_int *n, int at_least)
{
    while (atomic_load(n) < at_least) {
        sched_yield();
    }
}

static int case_handler(void)
{
    pthread_t t[4];
    int ids[4];
    int null = open("/dev/null", O_WRONLY);

    CHECK(null >= 0 && dup2(null, 2) == 2); /* the default's lines */
    close(null);
    CHECK_OK(hmaf_log_set_handler(handler_a, NULL));
    for (int i = 0; i < 4; i++) {
        ids[i] = i;
        CHECK_EQ(pthread_create(&t[i], NULL, log_loop, &ids[i]), 0);
    }
    wait_calls(&calls_a, 1000);
    CHECK_OK(hmaf_log_set_handler(handler_b, &calls_b));
    atomic_store(&a_retired, 1);
    wait_calls(&calls_b, 1000);
    CHECK_OK(hmaf_log_set_handler(NULL, NULL)); /* back to stderr */
    atomic_store(&stop_logging, 1);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    }
    CHECK_EQ(atomic_load(&late_a), 0);
    return 0;
}

/* --- the listing --------------------------------------------------- */

static void entry_is(const hmaf_config_t *c, const char *env, const char *value,
                     hmaf_config_source_t source)
{
    hmaf_config_entry_t e = {.size = sizeof(e)};

    CHECK_OK(hmaf_config_find(c, env, &e));
    if (strcmp(e.value, value) != 0 || e.source != source) {
        fprintf(stderr, "%s: value %s source %d, want %s %d\n", env, e.value,
                (int)e.source, value, (int)source);
        exit(1);
    }
    CHECK((e.env_value != NULL) == (source != HMAF_CONFIG_DEFAULT));
}

/* A caller built against a newer header, whose entry is longer: the tail
 * comes back zeroed, nothing past its size is written, size stays. */
static void entry_from_newer_header(const hmaf_config_t *c)
{
    struct {
        hmaf_config_entry_t e;
        unsigned char tail[24];
        unsigned char guard[16];
    } big;

    memset(&big, 0xa5, sizeof(big));
    big.e.size = sizeof(big.e) + sizeof(big.tail);
    CHECK_OK(hmaf_config_entry(c, 0, &big.e));
    CHECK_EQ(big.e.size, sizeof(big.e) + sizeof(big.tail));
    CHECK(big.e.name != NULL && strcmp(big.e.name, row(0)->name) == 0);
    for (size_t i = 0; i < sizeof(big.tail); i++) {
        CHECK_EQ(big.tail[i], 0);
    }
    for (size_t i = 0; i < sizeof(big.guard); i++) {
        CHECK_EQ(big.guard[i], 0xa5);
    }
}

static int case_list(void)
{
    hmaf_config_entry_t e = {.size = sizeof(e)};
    hmaf_config_t *c = NULL;
    size_t count = 0, i;

    unset_all();
    setenv("HMAF_RPC_TIMEOUT", "2s", 1);
    setenv("HMAF_CACHE_MAX_BYTES", "16777216", 1);
    setenv("HMAF_MAILBOX_SLOTS", "lots", 1);
    setenv("HMAF_LOG", "INFO", 1);
    setenv("HMAF_ENGINE", "cma", 1);
    setenv("HMAF_SPLIT_THREADS", "65", 1);
    setenv("HMAF_MAP_WP", "", 1); /* empty: unset */
    CHECK_OK(hmaf_log_set_handler(capture, &num_msgs));
    CHECK_ERR(hmaf_config_snapshot(NULL, &count), HMAF_EINVAL);
    CHECK_OK(hmaf_config_snapshot(&c, &count));
    CHECK_EQ(count, HMAF_CFG_NUM);
    for (i = 0; hmaf_config_entry(c, i, &e) == 0; i++) {
        const struct hmaf__cfg_row *r = row((enum hmaf__cfg_id)i);
        CHECK(strcmp(e.name, r->name) == 0 && strcmp(e.env, r->env) == 0);
        CHECK(e.value != NULL && e.default_value != NULL && e.unit != NULL &&
              e.range != NULL && e.description != NULL);
        CHECK(e.source == HMAF_CONFIG_DEFAULT || getenv(e.env) != NULL);
    }
    CHECK_EQ(i, count);
    CHECK_ERR(hmaf_config_entry(c, count, &e), HMAF_ENOENT);
    entry_is(c, "HMAF_RPC_TIMEOUT", "2000ms", HMAF_CONFIG_ENV);
    entry_is(c, "session.rpc_timeout_ms", "2000ms", HMAF_CONFIG_ENV);
    entry_is(c, "HMAF_CACHE_MAX_BYTES", "16MiB", HMAF_CONFIG_ENV);
    entry_is(c, "HMAF_MAILBOX_SLOTS", "16", HMAF_CONFIG_ENV_INVALID);
    entry_is(c, "HMAF_LOG", "info", HMAF_CONFIG_ENV);
    entry_is(c, "HMAF_ENGINE", "cma", HMAF_CONFIG_ENV);
    entry_is(c, "HMAF_SPLIT_THREADS", "0", HMAF_CONFIG_ENV_INVALID);
    entry_is(c, "HMAF_MAP_WP", "1", HMAF_CONFIG_DEFAULT);
    entry_is(c, "HMAF_CONNECT_TIMEOUT", "5000ms", HMAF_CONFIG_DEFAULT);
    entry_is(c, "HMAF_MAP_MAX_RESIDENT", "18446744073709551615",
             HMAF_CONFIG_DEFAULT);
    entry_is(c, "HMAF_DOCA_ZCOPY_CACHE", "1GiB", HMAF_CONFIG_DEFAULT);
    entry_is(c, "HMAF_DOCA_DEV", "", HMAF_CONFIG_DEFAULT);
    CHECK_OK(hmaf_config_find(c, "HMAF_MAILBOX_SLOTS", &e));
    CHECK(strcmp(e.env_value, "lots") == 0);
    CHECK(strcmp(e.default_value, "16") == 0);
    CHECK(strcmp(e.range, "1..256") == 0);
    CHECK(strcmp(e.unit, "count") == 0);
    CHECK_ERR(hmaf_config_find(c, "HMAF_NO_SUCH", &e), HMAF_ENOENT);
    CHECK_ERR(hmaf_config_find(c, NULL, &e), HMAF_EINVAL);
    e.size = sizeof(e) - 1;
    CHECK_ERR(hmaf_config_entry(c, 0, &e), HMAF_EINVAL);
    e.size = 0;
    CHECK_ERR(hmaf_config_entry(c, 0, &e), HMAF_EINVAL);
    e.size = HMAF_STATS_SIZE_MAX + 8;
    CHECK_ERR(hmaf_config_entry(c, 0, &e), HMAF_EINVAL);
    e.size = sizeof(e);
    CHECK_ERR(hmaf_config_entry(NULL, 0, &e), HMAF_EINVAL);
    entry_from_newer_header(c);
    hmaf_config_free(c);
    hmaf_config_free(NULL);
    CHECK_EQ(said("HMAF_MAILBOX_SLOTS=lots", NULL), 1);
    return 0;
}

/* --- docs/configuration.md against the table ----------------------- */

/* Every row has a line "| `HMAF_X` | `name` | ... `default` ..." in the
 * doc's table, and every variable the doc's table lists is a row. */
static int case_doc(const char *path)
{
    const char *text = read_file(path), *p;
    int bad = 0;

    for (int id = 0; id < HMAF_CFG_NUM; id++) {
        const struct hmaf__cfg_row *r = row((enum hmaf__cfg_id)id);
        char head[96], name[96], def[64], want_def[72];
        const char *line, *end;

        snprintf(head, sizeof(head), "\n| `%s` |", r->env);
        snprintf(name, sizeof(name), "`%s`", r->name);
        hmaf__config_format(r, r->def, def, sizeof(def));
        snprintf(want_def, sizeof(want_def), "`%s`", def);
        line = strstr(text, head);
        end = line != NULL ? strchr(line + 1, '\n') : NULL;
        if (line == NULL) {
            fprintf(stderr, "%s: no row for %s\n", path, r->env);
            bad = 1;
            continue;
        }
        if (end == NULL) {
            end = line + strlen(line);
        }
        if (memmem(line, (size_t)(end - line), name, strlen(name)) == NULL ||
            (def[0] != '\0' && memmem(line, (size_t)(end - line), want_def,
                                      strlen(want_def)) == NULL)) {
            fprintf(stderr, "%s: the row of %s should name %s and its "
                            "default %s\n",
                    path, r->env, name, want_def);
            bad = 1;
        }
    }
    for (p = strstr(text, "\n| `HMAF_"); p != NULL;
         p = strstr(p + 1, "\n| `HMAF_")) {
        const char *env = p + 4;
        size_t len = strcspn(env, "`");
        int found = 0;

        for (int id = 0; id < HMAF_CFG_NUM; id++) {
            found |= strlen(hmaf__cfg_rows[id].env) == len &&
                     strncmp(hmaf__cfg_rows[id].env, env, len) == 0;
        }
        if (!found) {
            fprintf(stderr, "%s: %.*s is not in src/util/config.c\n", path,
                    (int)len, env);
            bad = 1;
        }
    }
    return bad;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "parse";
    int ret;

    if (strcmp(c, "parse") == 0) {
        ret = case_parse();
    } else if (strcmp(c, "apply") == 0) {
        ret = case_apply();
    } else if (strcmp(c, "unknown") == 0) {
        ret = case_unknown();
    } else if (strcmp(c, "log-level") == 0 && argc > 2) {
        ret = case_log_level(argv[2]);
    } else if (strcmp(c, "log-file") == 0) {
        ret = case_log_file(1);
    } else if (strcmp(c, "log-file-bad") == 0) {
        ret = case_log_file(0);
    } else if (strcmp(c, "log-file-fifo") == 0) {
        ret = case_log_file_fifo(0);
    } else if (strcmp(c, "log-file-fifo-reader") == 0) {
        ret = case_log_file_fifo(1);
    } else if (strcmp(c, "log-file-fifo-gone") == 0) {
        ret = case_log_file_fifo_gone();
    } else if (strcmp(c, "log-one-line") == 0) {
        ret = case_log_one_line();
    } else if (strcmp(c, "log-file-setuid") == 0) {
        ret = case_log_file_setuid();
    } else if (strcmp(c, "log-file-setuid-child") == 0) {
        ret = case_log_file_setuid_child();
    } else if (strcmp(c, "handler") == 0) {
        ret = case_handler();
    } else if (strcmp(c, "fork-handler") == 0) {
        ret = case_fork_handler();
    } else if (strcmp(c, "fork-in-handler") == 0) {
        ret = case_fork_in_handler();
    } else if (strcmp(c, "engine-unknown") == 0) {
        ret = case_engine_unknown();
    } else if (strcmp(c, "list") == 0) {
        ret = case_list();
    } else if (strcmp(c, "doc") == 0 && argc > 2) {
        ret = case_doc(argv[2]);
    } else {
        fprintf(stderr, "usage: test_config parse|apply|unknown|"
                        "log-level LEVEL|log-file|log-file-bad|"
                        "log-file-fifo|log-file-fifo-reader|"
                        "log-file-fifo-gone|log-one-line|"
                        "log-file-setuid|handler|"
                        "fork-handler|fork-in-handler|engine-unknown|list|"
                        "doc PATH\n");
        return 2;
    }
    if (ret == 0) {
        printf("test_config %s: ok\n", c);
    }
    return ret;
}
