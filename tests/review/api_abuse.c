/*
 * Every public function against hostile input: NULLs, zero lengths,
 * wrapping ranges, huge counts and sizes, params structs with wrong sizes
 * and out-of-range fields, malformed and overlong addresses, foreign,
 * consumed and garbage request handles, busy listeners, and calls after the
 * peer died or left. Each call must return what its header documents, and
 * nothing may crash, hang or leak.
 *
 * Each group runs in a child process under a watchdog (review.c); a step
 * that may hang runs in a child of its own. The program prints one line
 * per finding and one per group, and exits 1 if anything was found.
 *
 * Groups: pure (no peer: error text, NULL handles everywhere),
 * agent_params, agent_calls, busy_listener (addresses whose listener has a
 * full backlog), timeouts_add_up, dial (hostile dpu sides), session_params,
 * data, requests (handles), threads, chase, map, host_killed, host_stopped,
 * dpu_killed, out_of_fds, threads_mailbox (mailbox calls from more threads
 * than a session takes), signal_during_connect, listen_squatter (who gets
 * a listening dpu side's HELLO).
 *
 *   HMAF_REVIEW_ONLY=name   run the groups whose name contains this
 *   HMAF_REVIEW_SLOW=n      multiply the time budgets (valgrind: 20)
 *
 * Under ASan, run with ASAN_OPTIONS=allocator_may_return_null=1: some
 * cases ask for absurd sizes on purpose and must get HMAF_ENOMEM.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "check.h"
#include "proto/handshake.h"
#include "review.h"
#include "target.h"

#define TOKEN "review-token"

static uint8_t memory[3 * 4096];

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *repeat(char c, size_t n, const char *prefix, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + n + sl + 1);

    CHECK(s != NULL);
    memcpy(s, prefix, pl);
    memset(s + pl, c, n);
    memcpy(s + pl + n, suffix, sl + 1);
    return s;
}

/* ------------------------------------------------------------------ pure */

static void group_pure(void)
{
    static const int values[] = {
        0,     1,     -1,     INT_MIN,     INT_MAX,
        -4000, -4006, -99999, HMAF_EINVAL, HMAF_EADDRESS};
    hmaf_agent_stats_t ast = HMAF_AGENT_STATS_INIT;
    hmaf_session_stats_t sst = HMAF_SESSION_STATS_INIT;
    hmaf_map_stats_t mst = HMAF_MAP_STATS_INIT;
    hmaf_seg_t seg = {memory, 4096, 8};
    hmaf_chase_params_t cp = {.node_len = 16, .max_steps = 1};
    hmaf_chain_t chain = {0};
    hmaf_agent_t *agent = (hmaf_agent_t *)(uintptr_t)1;
    hmaf_session_t *session = (hmaf_session_t *)(uintptr_t)1;
    hmaf_map_t *map = (hmaf_map_t *)(uintptr_t)1;
    hmaf_req_t req = 0;
    uint64_t addr = 0;
    int x = 0;

    review_step("strerror / err_name", 2000);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        ASSERT_THAT("hmaf_strerror never NULL",
                    hmaf_strerror(values[i]) != NULL);
        ASSERT_THAT("hmaf_err_name never NULL",
                    hmaf_err_name(values[i]) != NULL);
    }
    review_step("params_init(NULL), destroy(NULL)", 2000);
    hmaf_agent_params_init(NULL);
    hmaf_session_params_init(NULL);
    hmaf_map_params_init(NULL);
    hmaf_agent_destroy(NULL);
    hmaf_session_destroy(NULL);
    hmaf_map_destroy(NULL);
    ASSERT_THAT("hmaf_agent_address(NULL) == NULL",
                hmaf_agent_address(NULL) == NULL);
    ASSERT_THAT("hmaf_session_engine(NULL) != NULL",
                hmaf_session_engine(NULL) != NULL);
    ASSERT_THAT("hmaf_map_local(NULL) == NULL",
                hmaf_map_local(NULL, 1) == NULL);
    ASSERT_THAT("hmaf_map_remote(NULL) == 0", hmaf_map_remote(NULL, &x) == 0);

    review_step("host calls with a NULL agent", 2000);
    EXPECT(hmaf_agent_create(NULL, &agent), HMAF_EINVAL, DOC(D_AGENT_CREATE));
    EXPECT(hmaf_agent_listen(NULL, "unix:@review-null"), HMAF_EINVAL,
           DOC(D_AGENT_LISTEN));
    EXPECT(hmaf_agent_dial(NULL, "unix:@review-null", 100), HMAF_EINVAL,
           DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_expose(NULL, memory, 1, HMAF_ACCESS_READ), HMAF_EINVAL,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_revoke(NULL, memory, 1), HMAF_EINVAL,
           DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_publish(NULL, "x", memory, 1), HMAF_EINVAL,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_unpublish(NULL, "x"), HMAF_EINVAL,
           DOC(D_AGENT_UNPUBLISH));
    EXPECT(hmaf_agent_poll(NULL, 0), HMAF_EINVAL, DOC(D_AGENT_POLL));
    EXPECT(hmaf_agent_stats(NULL, &ast), HMAF_EINVAL, DOC(D_AGENT_STATS));

    review_step("dpu calls with a NULL session", 2000);
    EXPECT(hmaf_session_create(NULL, &session), HMAF_EINVAL,
           DOC(D_SESSION_CREATE));
    EXPECT(hmaf_session_lookup(NULL, "x", &addr, NULL), HMAF_EINVAL,
           DOC(D_LOOKUP));
    EXPECT(hmaf_session_read(NULL, memory, 4096, 8), HMAF_EINVAL, DOC(D_READ));
    EXPECT(hmaf_session_write(NULL, 4096, memory, 8), HMAF_EINVAL,
           DOC(D_WRITE));
    EXPECT(hmaf_session_readv(NULL, &seg, 1), HMAF_EINVAL, DOC(D_READ));
    EXPECT(hmaf_session_writev(NULL, &seg, 1), HMAF_EINVAL, DOC(D_WRITE));
    EXPECT(hmaf_session_post_read(NULL, memory, 4096, 8, &req), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_session_post_write(NULL, 4096, memory, 8, &req), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_session_post_readv(NULL, &seg, 1, &req), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_session_post_writev(NULL, &seg, 1, &req), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_request_test(NULL, 1), HMAF_EINVAL, DOC(D_TEST));
    EXPECT(hmaf_request_wait(NULL, 1), HMAF_EINVAL, DOC(D_WAIT));
    EXPECT(hmaf_session_flush(NULL), HMAF_EINVAL, DOC(D_FLUSH));
    EXPECT(hmaf_session_chase(NULL, &cp, &chain, 1), HMAF_EINVAL, DOC(D_CHASE));
    EXPECT(hmaf_session_ping(NULL), HMAF_EINVAL, DOC(D_PING));
    EXPECT(hmaf_session_stats(NULL, &sst), HMAF_EINVAL, DOC(D_SESSION_STATS));

    review_step("map calls with a NULL session or map", 2000);
    EXPECT(hmaf_map_create(NULL, 4096, 4096, NULL, &map), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    EXPECT(hmaf_map_sync(NULL), HMAF_EINVAL, DOC(D_MAP_SYNC));
    EXPECT(hmaf_map_refresh(NULL, 4096, 1, 0), HMAF_EINVAL, DOC(D_MAP_REFRESH));
    EXPECT(hmaf_map_stats(NULL, &mst), HMAF_EINVAL, DOC(D_MAP_STATS));
    ASSERT_THAT("outputs untouched on failure",
                agent == (hmaf_agent_t *)(uintptr_t)1 &&
                    session == (hmaf_session_t *)(uintptr_t)1 &&
                    map == (hmaf_map_t *)(uintptr_t)1 && req == 0 && addr == 0);
}

/* ---------------------------------------------------------- agent params */

/* Create with p; destroy on success; the return value. */
static int agent_try(const hmaf_agent_params_t *p)
{
    hmaf_agent_t *a = NULL;
    int ret = hmaf_agent_create(p, &a);

    if (ret == 0) {
        hmaf_agent_destroy(a);
    }
    return ret;
}

static void agent_base(hmaf_agent_params_t *p)
{
    hmaf_agent_params_init(p);
    p->threaded = 0;
    p->token = TOKEN;
}

#define AGENT_CASE(field, value, want)                                         \
    do {                                                                       \
        hmaf_agent_params_t p_;                                                \
        char what_[160];                                                       \
        agent_base(&p_);                                                       \
        p_.field = (value);                                                    \
        snprintf(what_, sizeof(what_), "hmaf_agent_create(%s = %s)", #field,   \
                 #value);                                                      \
        EXPECT_AS(what_, agent_try(&p_), (want), DOC(D_AGENT_CREATE));         \
    } while (0)

static void agent_address_case(const char *address, const char *token, int want)
{
    hmaf_agent_params_t p;
    char what[200];

    agent_base(&p);
    p.address = address;
    p.token = token;
    snprintf(what, sizeof(what), "hmaf_agent_create(address \"%.60s%s\"%s)",
             address, strlen(address) > 60 ? "..." : "",
             token == NULL ? ", no token" : "");
    EXPECT_AS(what, agent_try(&p), want, DOC(D_AGENT_CREATE));
}

static void group_agent_params(void)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a = NULL, *b = NULL;
    char *long_token = repeat('t', HMAF_TOKEN_MAX + 1, "", "");
    char *huge_token = repeat('t', 100000, "", "");
    char *long_engine = repeat('e', 1000, "", "");
    char *long_unix = repeat('a', 200, "unix:/tmp/", "");
    char *long_abstract = repeat('a', 200, "unix:@", "");
    char *long_host = repeat('h', 300, "tcp:", ":0");
    char path[128], file_addr[160], where[160];
    int fds0 = review_count_fds(0), fd;

    review_step("params struct", 5000);
    agent_base(&p);
    EXPECT(hmaf_agent_create(&p, NULL), HMAF_EINVAL, DOC(D_AGENT_CREATE));
    AGENT_CASE(size, 0, HMAF_EINVAL);
    AGENT_CASE(size, sizeof(hmaf_agent_params_t) - 1, HMAF_EINVAL);
    AGENT_CASE(size, sizeof(hmaf_agent_params_t) + 1, HMAF_EINVAL);
    AGENT_CASE(size, SIZE_MAX, HMAF_EINVAL);
    AGENT_CASE(max_sessions, 0, HMAF_EINVAL);
    AGENT_CASE(max_sessions, 1025, HMAF_EINVAL);
    AGENT_CASE(max_sessions, UINT_MAX, HMAF_EINVAL);
    AGENT_CASE(max_sessions, 1024, 0);
    AGENT_CASE(mailbox_slots, 0, HMAF_EINVAL);
    AGENT_CASE(mailbox_slots, 257, HMAF_EINVAL);
    AGENT_CASE(mailbox_slots, UINT_MAX, HMAF_EINVAL);
    AGENT_CASE(mailbox_slots, 256, 0);
    AGENT_CASE(handshake_timeout_ms, 0, HMAF_EINVAL);
    AGENT_CASE(handshake_timeout_ms, -1, HMAF_EINVAL);
    AGENT_CASE(handshake_timeout_ms, INT_MIN, HMAF_EINVAL);
    AGENT_CASE(handshake_timeout_ms, INT_MAX, 0);
    AGENT_CASE(revoke_wait_ms, 0, HMAF_EINVAL);
    AGENT_CASE(revoke_wait_ms, -1, HMAF_EINVAL);
    AGENT_CASE(revoke_wait_ms, INT_MIN, HMAF_EINVAL);
    AGENT_CASE(revoke_wait_ms, INT_MAX, HMAF_EINVAL);
    AGENT_CASE(revoke_wait_ms, 3600000, 0);
    AGENT_CASE(token, long_token, HMAF_EINVAL);
    AGENT_CASE(token, huge_token, HMAF_EINVAL);
    AGENT_CASE(token, "", 0);
    AGENT_CASE(token, NULL, 0);
    AGENT_CASE(engine, "no-such-engine", HMAF_ENOENGINE);
    AGENT_CASE(engine, long_engine, HMAF_ENOENGINE);
    AGENT_CASE(engine, "", 0);
    AGENT_CASE(threaded, 7, 0);
    AGENT_CASE(threaded, -1, 0);

    review_step("listen addresses", 20000);
    agent_address_case("", TOKEN, HMAF_EADDRESS);
    agent_address_case("unix:", TOKEN, HMAF_EADDRESS);
    agent_address_case(long_unix, TOKEN, HMAF_EADDRESS);
    agent_address_case(long_abstract, TOKEN, HMAF_EADDRESS);
    agent_address_case("UNIX:/tmp/x", TOKEN, HMAF_EADDRESS);
    agent_address_case("bogus:x", TOKEN, HMAF_EADDRESS);
    agent_address_case("unix:/nonexistent-dir/x.sock", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:127.0.0.1", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:127.0.0.1:", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp::80", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:host:-1", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:127.0.0.1:-1", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:127.0.0.1:65536", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:127.0.0.1:99999999999999999999", TOKEN,
                       HMAF_EADDRESS);
    agent_address_case("tcp:127.0.0.1:0x50", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:[::1", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:[::1]", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:[::1]:", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:[]:0", TOKEN, HMAF_EADDRESS);
    agent_address_case(long_host, TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:192.0.2.1:0", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:256.1.1.1:0", TOKEN, HMAF_EADDRESS);
    agent_address_case("tcp:127.0.0.1:0", NULL, HMAF_EINVAL);
    agent_address_case("tcp:127.0.0.1:0", "", HMAF_EINVAL);
    agent_address_case("tcp:[::1]:0", TOKEN, 0);
    agent_address_case("tcp:127.0.0.1:0", TOKEN, 0);
    agent_address_case("unix:@", TOKEN, WANT_ANY_DOC);
    agent_address_case("comch:review@03:00.0", TOKEN, HMAF_EINVAL);

    review_step("port reported for tcp:[::1]:0", 5000);
    agent_base(&p);
    p.address = "tcp:[::1]:0";
    if (hmaf_agent_create(&p, &a) == 0) {
        const char *at = hmaf_agent_address(a);
        ASSERT_THAT("hmaf_agent_address gives [::1] and a real port",
                    at != NULL && strncmp(at, "tcp:[::1]:", 10) == 0 &&
                        strcmp(at, "tcp:[::1]:0") != 0);
        hmaf_agent_destroy(a);
    }

    review_step("two agents at one address", 5000);
    snprintf(path, sizeof(path), "/tmp/hmaf-review-%d.sock", (int)getpid());
    snprintf(where, sizeof(where), "unix:%s", path);
    agent_base(&p);
    p.address = where;
    CHECK_OK(hmaf_agent_create(&p, &a));
    EXPECT(hmaf_agent_create(&p, &b), HMAF_EADDRINUSE, DOC(D_AGENT_CREATE));
    p.address = "tcp:127.0.0.1:0";
    CHECK_OK(hmaf_agent_create(&p, &b));
    p.address = hmaf_agent_address(b);
    {
        hmaf_agent_t *c = NULL;
        EXPECT(hmaf_agent_create(&p, &c), HMAF_EADDRINUSE, DOC(D_AGENT_CREATE));
    }
    hmaf_agent_destroy(b);
    hmaf_agent_destroy(a);
    ASSERT_THAT("the agent unlinks its socket file", access(path, F_OK) != 0);

    review_step("a unix address that is a regular file", 5000);
    snprintf(path, sizeof(path), "/tmp/hmaf-review-%d.file", (int)getpid());
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    snprintf(file_addr, sizeof(file_addr), "unix:%s", path);
    agent_address_case(file_addr, TOKEN, HMAF_EADDRINUSE);
    ASSERT_THAT("a regular file at the address is left alone",
                access(path, F_OK) == 0);
    unlink(path);

    ASSERT_THAT("no fd leaked by agent create/destroy",
                review_count_fds(0) == fds0);
    free(long_token);
    free(huge_token);
    free(long_engine);
    free(long_unix);
    free(long_abstract);
    free(long_host);
}

/* ----------------------------------------------------------- agent calls */

static void group_agent_calls(void)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a, *t;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    const void *top = (const void *)(uintptr_t)(UINTPTR_MAX - 100);
    char *name63 = repeat('n', 63, "", "");
    char *name64 = repeat('n', 64, "", "");
    char *name_huge = repeat('n', 100000, "", "");
    char name[32];
    int ret = 0, n;

    agent_base(&p);
    CHECK_OK(hmaf_agent_create(&p, &a));

    review_step("hmaf_agent_expose", 5000);
    EXPECT(hmaf_agent_expose(a, NULL, 1, HMAF_ACCESS_READ), HMAF_EINVAL,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory, 0, HMAF_ACCESS_READ), HMAF_EINVAL,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory, 1, (hmaf_access_t)0), HMAF_EINVAL,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory, 1, (hmaf_access_t)2), HMAF_EINVAL,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory, 1, (hmaf_access_t)-1), HMAF_EINVAL,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, top, 200, HMAF_ACCESS_READ), HMAF_EOVERFLOW,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory, SIZE_MAX, HMAF_ACCESS_READ),
           HMAF_EOVERFLOW, DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, top, 100, HMAF_ACCESS_READ), 0,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory + 4096, 4096, HMAF_ACCESS_READ), 0,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory + 4096, 4096, HMAF_ACCESS_READ),
           HMAF_EEXIST, DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory + 4097, 10, HMAF_ACCESS_READ_WRITE),
           HMAF_EEXIST, DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory + 4000, 100, HMAF_ACCESS_READ),
           HMAF_EEXIST, DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory, 4096, HMAF_ACCESS_READ), 0,
           DOC(D_AGENT_EXPOSE));
    EXPECT(hmaf_agent_expose(a, memory + 8192, 4096, HMAF_ACCESS_READ_WRITE), 0,
           DOC(D_AGENT_EXPOSE));

    review_step("hmaf_agent_revoke", 5000);
    EXPECT(hmaf_agent_revoke(a, NULL, 1), HMAF_EINVAL, DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_revoke(a, memory, 0), HMAF_EINVAL, DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_revoke(a, memory + 1, 4096), HMAF_ENOENT,
           DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_revoke(a, memory, 4095), HMAF_ENOENT,
           DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_revoke(a, memory, SIZE_MAX), HMAF_ENOENT,
           DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_revoke(a, memory, 4096), 0, DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_revoke(a, memory, 4096), HMAF_ENOENT,
           DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_revoke(a, top, 100), 0, DOC(D_AGENT_REVOKE));

    review_step("hmaf_agent_publish", 20000);
    EXPECT(hmaf_agent_publish(a, NULL, memory, 1), HMAF_EINVAL,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, "", memory, 1), HMAF_EINVAL,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, "x", NULL, 1), HMAF_EINVAL,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, "x", memory, 0), HMAF_EINVAL,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, name64, memory, 1), HMAF_ENAMETOOLONG,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, name_huge, memory, 1), HMAF_ENAMETOOLONG,
           DOC(D_AGENT_PUBLISH));
    /* host.h lists no EOVERFLOW for publish; the right answer is one. */
    EXPECT(hmaf_agent_publish(a, "wrap", top, 200), HMAF_EOVERFLOW,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, "huge", memory, SIZE_MAX), HMAF_EOVERFLOW,
           DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, name63, memory, 1), 0, DOC(D_AGENT_PUBLISH));
    EXPECT(hmaf_agent_publish(a, name63, memory, 1), HMAF_EEXIST,
           DOC(D_AGENT_PUBLISH));
    for (n = 1;
         n <= 5000 && (ret = hmaf_agent_publish(
                           a, (snprintf(name, sizeof(name), "r%d", n), name),
                           memory, 1)) == 0;
         n++) {
    }
    EXPECT_AS("hmaf_agent_publish, many roots: the first refusal", ret,
              HMAF_ENOSPC, DOC(D_AGENT_PUBLISH));

    review_step("hmaf_agent_unpublish", 5000);
    EXPECT(hmaf_agent_unpublish(a, NULL), HMAF_EINVAL, DOC(D_AGENT_UNPUBLISH));
    EXPECT(hmaf_agent_unpublish(a, ""), HMAF_EINVAL, DOC(D_AGENT_UNPUBLISH));
    EXPECT(hmaf_agent_unpublish(a, "no-such"), HMAF_ENOENT,
           DOC(D_AGENT_UNPUBLISH));
    EXPECT(hmaf_agent_unpublish(a, name64), WANT_ANY_DOC,
           DOC(D_AGENT_UNPUBLISH));
    EXPECT(hmaf_agent_unpublish(a, name_huge), WANT_ANY_DOC,
           DOC(D_AGENT_UNPUBLISH));
    EXPECT(hmaf_agent_unpublish(a, name63), 0, DOC(D_AGENT_UNPUBLISH));
    EXPECT(hmaf_agent_unpublish(a, name63), HMAF_ENOENT,
           DOC(D_AGENT_UNPUBLISH));

    review_step("hmaf_agent_poll / stats", 5000);
    EXPECT(hmaf_agent_poll(a, -1), HMAF_EINVAL, DOC(D_AGENT_POLL));
    EXPECT(hmaf_agent_poll(a, INT_MIN), HMAF_EINVAL, DOC(D_AGENT_POLL));
    EXPECT(hmaf_agent_poll(a, 0), 0, DOC(D_AGENT_POLL));
    EXPECT(hmaf_agent_poll(a, 1), 0, DOC(D_AGENT_POLL));
    EXPECT(hmaf_agent_stats(a, NULL), HMAF_EINVAL, DOC(D_AGENT_STATS));
    EXPECT(hmaf_agent_stats(a, &st), 0, DOC(D_AGENT_STATS));

    review_step("hmaf_agent_listen", 5000);
    ASSERT_THAT("no address before listening", hmaf_agent_address(a) == NULL);
    EXPECT(hmaf_agent_listen(a, NULL), HMAF_EINVAL, DOC(D_AGENT_LISTEN));
    EXPECT(hmaf_agent_listen(a, ""), HMAF_EADDRESS, DOC(D_AGENT_LISTEN));
    EXPECT(hmaf_agent_listen(a, "unix:"), HMAF_EADDRESS, DOC(D_AGENT_LISTEN));
    EXPECT(hmaf_agent_listen(a, "tcp:host:-1"), HMAF_EADDRESS,
           DOC(D_AGENT_LISTEN));
    EXPECT(hmaf_agent_listen(a, "comch:x@03:00.0"), HMAF_EINVAL,
           DOC(D_AGENT_LISTEN));
    EXPECT(hmaf_agent_listen(a, "unix:@hmaf-review-listen"), 0,
           DOC(D_AGENT_LISTEN));
    ASSERT_THAT("address after listening",
                hmaf_agent_address(a) != NULL &&
                    strcmp(hmaf_agent_address(a), "unix:@hmaf-review-listen") ==
                        0);
    EXPECT(hmaf_agent_listen(a, "unix:@hmaf-review-other"), HMAF_EINVAL,
           DOC(D_AGENT_LISTEN));
    /* host.h: "HMAF_EINVAL (... already listening ...)" */
    EXPECT(hmaf_agent_listen(a, "unix:@hmaf-review-listen"), HMAF_EINVAL,
           DOC(D_AGENT_LISTEN));
    hmaf_agent_destroy(a);

    review_step("a tcp listen without a token", 5000);
    hmaf_agent_params_init(&p);
    p.threaded = 0;
    CHECK_OK(hmaf_agent_create(&p, &a));
    EXPECT(hmaf_agent_listen(a, "tcp:127.0.0.1:0"), HMAF_EINVAL,
           DOC(D_AGENT_LISTEN));
    EXPECT(hmaf_agent_dial(a, "tcp:127.0.0.1:1", 100), HMAF_EINVAL,
           DOC(D_AGENT_DIAL));
    hmaf_agent_destroy(a);

    review_step("hmaf_agent_poll on a threaded agent", 5000);
    agent_base(&p);
    p.threaded = 1;
    CHECK_OK(hmaf_agent_create(&p, &t));
    EXPECT(hmaf_agent_poll(t, 0), HMAF_EBUSY, DOC(D_AGENT_POLL));
    EXPECT(hmaf_agent_poll(t, -1), HMAF_EINVAL, DOC(D_AGENT_POLL));
    hmaf_agent_destroy(t);
    free(name63);
    free(name64);
    free(name_huge);
}

/* ------------------------------------------- a listener with a full queue */

struct busy {
    char path[96];
    char address[160];
    int *fds;
    int nfds;
};

/* An agent in poll mode that is never polled, its backlog filled. */
static hmaf_agent_t *busy_agent(struct busy *b)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    snprintf(b->path, sizeof(b->path), "/tmp/hmaf-review-busy-%d.sock",
             (int)getpid());
    snprintf(b->address, sizeof(b->address), "unix:%s", b->path);
    agent_base(&p);
    p.address = b->address;
    CHECK_OK(hmaf_agent_create(&p, &a));
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", b->path);
    b->fds = calloc(8192, sizeof(int));
    CHECK(b->fds != NULL);
    for (b->nfds = 0; b->nfds < 8192; b->nfds++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&un, sizeof(un)) != 0) {
            close(fd);
            break; /* EAGAIN: the backlog is full */
        }
        b->fds[b->nfds] = fd;
    }
    return a;
}

static void busy_release(struct busy *b, hmaf_agent_t *a)
{
    for (int i = 0; i < b->nfds; i++) {
        close(b->fds[i]);
    }
    free(b->fds);
    hmaf_agent_destroy(a);
}

static int create_agent_at(void *arg)
{
    hmaf_agent_params_t p;

    agent_base(&p);
    p.address = arg;
    return agent_try(&p);
}

static int listen_agent_at(void *arg)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    int ret;

    agent_base(&p);
    CHECK_OK(hmaf_agent_create(&p, &a));
    ret = hmaf_agent_listen(a, arg);
    hmaf_agent_destroy(a);
    return ret;
}

/* A session at address, listening there or connecting to it. */
static int session_at(const char *address, int listen)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    int ret;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.listen = listen;
    p.connect_timeout_ms = 300;
    ret = hmaf_session_create(&p, &s);
    hmaf_session_destroy(s);
    return ret;
}

static int session_listen_at(void *arg)
{
    return session_at(arg, 1);
}

static int session_connect_to(void *arg)
{
    return session_at(arg, 0);
}

/* A bare listener (backlog 1, filled) that makes room after 250 ms and
 * then never answers: a connect with a 300 ms timeout should be over by
 * about 300 ms. */
struct late_room {
    int lfd;
    int filler;
    char address[96];
};

static void *make_room_late(void *arg)
{
    struct late_room *r = arg;
    int fd;

    poll(NULL, 0, 250);
    fd = accept(r->lfd, NULL, NULL); /* the filler: room for one more */
    poll(NULL, 0, 1500);
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static int late_listener(struct late_room *r)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    socklen_t sl;
    int n = 0;

    snprintf(r->address, sizeof(r->address), "unix:@hmaf-review-late-%d",
             (int)getpid());
    snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "%s", r->address + 6);
    sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                     strlen(r->address + 6));
    r->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(r->lfd >= 0 && bind(r->lfd, (struct sockaddr *)&un, sl) == 0 &&
          listen(r->lfd, 0) == 0);
    for (;;) { /* fill the backlog */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(fd, (struct sockaddr *)&un, sl) != 0) {
            close(fd);
            break;
        }
        r->filler = fd;
        n++;
    }
    return n;
}

static void group_timeouts_add_up(void)
{
    struct late_room r;
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    pthread_t th;
    uint64_t t0, took;
    int ret;

    review_step("connect that gets room late, then no WELCOME", 10000);
    late_listener(&r);
    CHECK(pthread_create(&th, NULL, make_room_late, &r) == 0);
    hmaf_session_params_init(&p);
    p.address = r.address;
    p.token = TOKEN;
    p.connect_timeout_ms = 300;
    t0 = now_ms();
    ret = hmaf_session_create(&p, &s);
    took = now_ms() - t0;
    printf("  (hmaf_session_create, connect_timeout_ms 300: %s after %llu "
           "ms)\n",
           hmaf_err_name(ret), (unsigned long long)took);
    EXPECT_AS("hmaf_session_create(room after 250 ms, no WELCOME)", ret,
              HMAF_ETIMEDOUT, DOC(D_SESSION_CREATE));
    ASSERT_THAT("hmaf_session_create keeps connect_timeout_ms (connect + "
                "handshake) within 150 ms",
                took < 450);
    pthread_join(th, NULL);
    close(r.filler);
    close(r.lfd);
}

static void group_busy_listener(void)
{
    struct busy b;
    hmaf_agent_t *a = busy_agent(&b);
    uint64_t t0;
    int ret;

    printf("  (backlog of the busy listener: %d connections)\n", b.nfds);
    review_step("hmaf_session_create to a full backlog (300 ms)", 20000);
    t0 = now_ms();
    ret = review_isolated("hmaf_session_create to a full backlog", 5000,
                          session_connect_to, b.address);
    EXPECT_AS("hmaf_session_create(full backlog, 300 ms)", ret, HMAF_ETIMEDOUT,
              DOC(D_SESSION_CREATE));
    ASSERT_THAT("a connect to a full backlog gives up within 2 s",
                now_ms() - t0 < 2000 * review_slow());
    review_step("hmaf_agent_create at a path whose listener is busy", 20000);
    ret = review_isolated("hmaf_agent_create at a busy path", 3000,
                          create_agent_at, b.address);
    EXPECT_AS("hmaf_agent_create(address of a listener with a full backlog)",
              ret, HMAF_EADDRINUSE, DOC(D_AGENT_CREATE));
    review_step("hmaf_agent_listen at a path whose listener is busy", 20000);
    ret = review_isolated("hmaf_agent_listen at a busy path", 3000,
                          listen_agent_at, b.address);
    EXPECT_AS("hmaf_agent_listen(address of a listener with a full backlog)",
              ret, HMAF_EADDRINUSE, DOC(D_AGENT_LISTEN));
    review_step("hmaf_session_create(listen) at a busy path", 20000);
    ret = review_isolated("hmaf_session_create(listen = 1) at a busy path",
                          3000, session_listen_at, b.address);
    EXPECT_AS("hmaf_session_create(listen = 1, connect_timeout_ms 300, "
              "address of a listener with a full backlog)",
              ret, WANT_ANY_DOC, DOC(D_SESSION_CREATE));
    busy_release(&b, a);
}

/* ------------------------------------------------------------------ dial */

/* A dpu side listening for hmaf_agent_dial, played by a thread. */
struct fake_dpu {
    int lfd;
    char address[96];
    uint8_t msg[HMAF_MSG_MAX + 64];
    size_t len;
    int hold_ms; /* keep the connection this long after sending */
    pthread_t thread;
};

static void *fake_dpu_main(void *arg)
{
    struct fake_dpu *f = arg;
    struct pollfd p = {.fd = f->lfd, .events = POLLIN};
    int fd;

    if (poll(&p, 1, 5000) != 1) {
        return NULL;
    }
    fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    if (f->len > 0) {
        (void)!send(fd, f->msg, f->len, MSG_NOSIGNAL);
    }
    if (f->hold_ms > 0) {
        poll(NULL, 0, f->hold_ms);
    }
    close(fd);
    return NULL;
}

static void fake_dpu_start(struct fake_dpu *f, const void *msg, size_t len,
                           int hold_ms)
{
    static int serial;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    socklen_t sl;

    snprintf(f->address, sizeof(f->address), "unix:@hmaf-review-dpu-%d-%d",
             (int)getpid(), serial++);
    snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "%s", f->address + 6);
    sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                     strlen(f->address + 6));
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(f->lfd >= 0);
    CHECK(bind(f->lfd, (struct sockaddr *)&un, sl) == 0);
    CHECK(listen(f->lfd, 16) == 0);
    memcpy(f->msg, msg, len);
    f->len = len;
    f->hold_ms = hold_ms;
    CHECK(pthread_create(&f->thread, NULL, fake_dpu_main, f) == 0);
}

static void fake_dpu_stop(struct fake_dpu *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

static size_t make_hello(uint8_t *buf, const char *token, uint16_t version,
                         uint32_t body_len_override)
{
    struct hmaf_hello h = {0};
    struct hmaf_msg_hdr hdr;
    uint32_t pid = (uint32_t)getpid();
    size_t len;

    CHECK_OK(hmaf__hello_set_token(&h, token));
    strcpy(h.engine, "cma");
    h.engine_blob.len = 4;
    memcpy(h.engine_blob.data, &pid, 4);
    len = hmaf__hello_encode(&h, buf, HMAF_MSG_MAX);
    hmaf__hdr_decode(buf, &hdr);
    hdr.version = version;
    if (body_len_override != 0) {
        hdr.body_len = body_len_override;
    }
    hmaf__hdr_encode(&hdr, buf);
    return len;
}

static void dial_case(hmaf_agent_t *a, const char *what, const void *msg,
                      size_t len, int hold_ms, int timeout_ms, int want)
{
    struct fake_dpu f;
    uint64_t t0 = now_ms();
    int ret;

    fake_dpu_start(&f, msg, len, hold_ms);
    ret = hmaf_agent_dial(a, f.address, timeout_ms);
    EXPECT_AS(what, ret, want, DOC(D_AGENT_DIAL));
    ASSERT_THAT(what, now_ms() - t0 < 3000u * review_slow());
    fake_dpu_stop(&f);
}

static void group_dial(void)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    uint8_t msg[HMAF_MSG_MAX + 64];
    size_t len;
    int fds0 = review_count_fds(0);

    agent_base(&p);
    CHECK_OK(hmaf_agent_create(&p, &a));
    review_step("hmaf_agent_dial arguments", 10000);
    EXPECT(hmaf_agent_dial(a, NULL, 100), HMAF_EINVAL, DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "unix:@x", 0), HMAF_EINVAL, DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "unix:@x", -1), HMAF_EINVAL, DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "unix:@x", INT_MIN), HMAF_EINVAL,
           DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "", 100), HMAF_EADDRESS, DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "unix:", 100), HMAF_EADDRESS, DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "tcp:host:-1", 100), HMAF_EADDRESS,
           DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "tcp:[::1]:0", 100), HMAF_ECONNREFUSED,
           DOC(D_AGENT_DIAL));
    EXPECT(hmaf_agent_dial(a, "unix:/nonexistent-dir/x", 100),
           HMAF_ECONNREFUSED, DOC(D_AGENT_DIAL));
    /* Without DOCA in this library: which documented code? */
    EXPECT(hmaf_agent_dial(a, "comch:review@03:00.0", 100), WANT_ANY_DOC,
           DOC(D_AGENT_DIAL));

    review_step("hmaf_agent_dial against hostile dpu sides", 30000);
    dial_case(a, "dial: peer accepts and says nothing (200 ms)", "", 0, 1000,
              200, HMAF_ETIMEDOUT);
    dial_case(a, "dial: peer accepts and closes", "", 0, 0, 1000,
              HMAF_ECONNRESET);
    dial_case(a, "dial: peer accepts and closes, timeout INT_MAX", "", 0, 0,
              INT_MAX, HMAF_ECONNRESET);
    memset(msg, 0xA5, sizeof(msg));
    dial_case(a, "dial: garbage", msg, 600, 200, 1000, HMAF_EPROTO);
    len = make_hello(msg, TOKEN, HMAF_PROTOCOL_VERSION, 0xFFFFFFFFu);
    dial_case(a, "dial: HELLO header with body_len 2^32-1", msg, len, 200, 1000,
              HMAF_EPROTO);
    len =
        make_hello(msg, TOKEN, HMAF_PROTOCOL_VERSION, HMAF_HELLO_BODY_MIN - 1);
    dial_case(a, "dial: HELLO header with body_len one short", msg, len, 200,
              1000, HMAF_EPROTO);
    len = make_hello(msg, TOKEN, HMAF_PROTOCOL_VERSION + 1, 0);
    dial_case(a, "dial: HELLO of protocol version + 1", msg, len, 200, 1000,
              HMAF_EVERSION);
    len = make_hello(msg, "wrong-token", HMAF_PROTOCOL_VERSION, 0);
    dial_case(a, "dial: HELLO with a wrong token", msg, len, 200, 1000,
              HMAF_EAUTH);
    len = make_hello(msg, TOKEN, HMAF_PROTOCOL_VERSION, 0);
    dial_case(a, "dial: half a HELLO, then nothing (300 ms)", msg, len / 2,
              1000, 300, HMAF_ETIMEDOUT);
    dial_case(a, "dial: a valid HELLO, then the peer closes", msg, len, 0, 1000,
              WANT_ANY_DOC);
    CHECK_OK(hmaf_agent_stats(a, &st));
    ASSERT_THAT("no session left over by the dials",
                st.sessions_live == 0 || hmaf_agent_poll(a, 50) >= 0);
    hmaf_agent_destroy(a);
    ASSERT_THAT("no fd leaked by dials", review_count_fds(0) == fds0);
}

/* -------------------------------------------------------- session params */

static int session_try(const hmaf_session_params_t *p)
{
    hmaf_session_t *s = NULL;
    int ret = hmaf_session_create(p, &s);

    if (ret == 0) {
        uint64_t buf;
        uint8_t tmp[64];
        ret = hmaf_session_ping(s);
        if (ret == 0) {
            ret = hmaf_session_lookup(s, "buf", &buf, NULL);
        }
        if (ret == 0) { /* spans the two exposures */
            ret = hmaf_session_read(s, tmp, buf + STD_SPLIT - 32, 64);
        }
        if (ret == 0) {
            ret = hmaf_session_read(s, tmp, buf + 100, 64);
        }
        hmaf_session_destroy(s);
    }
    return ret;
}

static struct target tgt;

static int session_try_isolated(void *arg)
{
    return session_try(arg);
}

/* Each case in a child of its own: a hang or crash is that case's. */
#define SESSION_CASE(field, value, want)                                       \
    do {                                                                       \
        hmaf_session_params_t p_;                                              \
        char what_[200];                                                       \
        target_session_params(&tgt, &p_);                                      \
        p_.connect_timeout_ms = 300;                                           \
        p_.field = (value);                                                    \
        snprintf(what_, sizeof(what_), "hmaf_session_create(%s = %.60s)",      \
                 #field, #value);                                              \
        review_step(what_, 20000);                                             \
        EXPECT_AS(what_,                                                       \
                  review_isolated(what_, 5000, session_try_isolated, &p_),     \
                  (want), DOC(D_SESSION_CREATE));                              \
    } while (0)

static void group_session_params(void)
{
    hmaf_session_params_t p;
    char *long_token = repeat('t', HMAF_TOKEN_MAX + 1, "", "");
    char *long_unix = repeat('a', 200, "unix:/tmp/", "");
    char *long_host = repeat('h', 300, "tcp:", ":1");
    int fds0;

    target_start_standard(&tgt);
    hmaf_session_destroy(target_connect(&tgt)); /* skips without ptrace */
    fds0 = review_count_fds(0);
    review_step("session params", 60000);
    target_session_params(&tgt, &p);
    EXPECT(hmaf_session_create(&p, NULL), HMAF_EINVAL, DOC(D_SESSION_CREATE));
    SESSION_CASE(size, 0, HMAF_EINVAL);
    SESSION_CASE(size, sizeof(hmaf_session_params_t) - 1, HMAF_EINVAL);
    SESSION_CASE(size, SIZE_MAX, HMAF_EINVAL);
    SESSION_CASE(address, NULL, HMAF_EINVAL);
    SESSION_CASE(address, "", HMAF_EADDRESS);
    SESSION_CASE(address, "unix:", HMAF_EADDRESS);
    SESSION_CASE(address, long_unix, HMAF_EADDRESS);
    SESSION_CASE(address, long_host, HMAF_EADDRESS);
    SESSION_CASE(address, "tcp:host:-1", HMAF_EADDRESS);
    SESSION_CASE(address, "tcp:127.0.0.1:65536", HMAF_EADDRESS);
    SESSION_CASE(address, "tcp:[::1]:0", HMAF_ECONNREFUSED);
    SESSION_CASE(address, "unix:/nonexistent-dir/x", HMAF_ECONNREFUSED);
    SESSION_CASE(address, "comch:review@03:00.0", HMAF_EINVAL);
    SESSION_CASE(token, long_token, HMAF_EINVAL);
    SESSION_CASE(token, "wrong", HMAF_EAUTH);
    SESSION_CASE(token, NULL, HMAF_EAUTH);
    SESSION_CASE(token, "", HMAF_EAUTH);
    SESSION_CASE(engine, "no-such-engine", HMAF_ENOENGINE);
    SESSION_CASE(engine, "", 0);
    SESSION_CASE(connect_timeout_ms, 0, HMAF_EINVAL);
    SESSION_CASE(connect_timeout_ms, -1, HMAF_EINVAL);
    SESSION_CASE(connect_timeout_ms, INT_MIN, HMAF_EINVAL);
    SESSION_CASE(connect_timeout_ms, INT_MAX, 0);
    SESSION_CASE(rpc_timeout_ms, 0, HMAF_EINVAL);
    SESSION_CASE(rpc_timeout_ms, -5, HMAF_EINVAL);
    SESSION_CASE(rpc_timeout_ms, INT_MAX, 0);
    SESSION_CASE(cache_max_regions, 0, HMAF_EINVAL);
    SESSION_CASE(cache_max_regions, 1, 0);
    SESSION_CASE(cache_max_regions, UINT_MAX, 0);
    SESSION_CASE(cache_max_bytes, 0, HMAF_EINVAL);
    SESSION_CASE(cache_max_bytes, 1, 0);
    SESSION_CASE(revoke_check_us, 0, HMAF_EINVAL); /* would spin */
    SESSION_CASE(revoke_check_us, 1, 0);
    SESSION_CASE(revoke_check_us, UINT_MAX, 0);
    SESSION_CASE(max_inflight, 0, HMAF_EINVAL);
    SESSION_CASE(max_inflight, 65537, HMAF_EINVAL);
    SESSION_CASE(max_inflight, UINT_MAX, HMAF_EINVAL);
    SESSION_CASE(max_inflight, 1, 0);
    SESSION_CASE(max_inflight, 65536, 0);
    SESSION_CASE(map_max_resident, 0, HMAF_EINVAL);
    SESSION_CASE(map_max_resident, 4095, HMAF_EINVAL);
    SESSION_CASE(map_max_resident, 4096, 0);

    review_step("session listen = 1", 30000);
    {
        hmaf_session_params_t q;
        uint64_t t0 = now_ms();
        target_session_params(&tgt, &q);
        q.listen = 1;
        q.connect_timeout_ms = 200;
        q.address = "tcp:127.0.0.1:0";
        EXPECT_AS("hmaf_session_create(listen, nobody dials, 200 ms)",
                  session_try(&q), HMAF_ETIMEDOUT, DOC(D_SESSION_CREATE));
        ASSERT_THAT("listen timeout kept",
                    now_ms() - t0 < 2000u * review_slow());
        q.listen = -1;
        EXPECT_AS("hmaf_session_create(listen = -1, nobody dials)",
                  session_try(&q), HMAF_ETIMEDOUT, DOC(D_SESSION_CREATE));
        q.listen = 1;
        q.address = "unix:/nonexistent-dir/x";
        EXPECT_AS("hmaf_session_create(listen at a place that does not exist)",
                  session_try(&q), HMAF_EADDRESS, DOC(D_SESSION_CREATE));
        q.address = "tcp:192.0.2.1:0";
        EXPECT_AS("hmaf_session_create(listen at an address not ours)",
                  session_try(&q), HMAF_EADDRESS, DOC(D_SESSION_CREATE));
        q.address = "comch:review@03:00.0";
        EXPECT_AS("hmaf_session_create(listen at comch, no DOCA in the lib)",
                  session_try(&q), WANT_ANY_DOC, DOC(D_SESSION_CREATE));
        /* the agent's own address: in use by a live listener */
        q.address = tgt.address;
        EXPECT_AS("hmaf_session_create(listen at an address in use)",
                  session_try(&q), WANT_ANY_DOC, DOC(D_SESSION_CREATE));
    }
    ASSERT_THAT("no fd leaked by session create/destroy",
                review_count_fds(0) == fds0);
    target_kill(&tgt);
    free(long_token);
    free(long_unix);
    free(long_host);
}

/* ------------------------------------------------------------- data path */

static void group_data(void)
{
    hmaf_session_t *s;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    uint64_t buf, ro, hole, addr = 0;
    size_t len = 0;
    uint8_t tmp[4096];
    uint8_t *big;
    hmaf_seg_t seg[4], *many;
    char *name63 = repeat('n', 63, "", "");
    char *name64 = repeat('n', 64, "", "");
    char *name_huge = repeat('n', 100000, "", "");

    target_start_standard(&tgt);
    s = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    CHECK_OK(hmaf_session_lookup(s, "hole", &hole, NULL));

    review_step("hmaf_session_lookup", 10000);
    EXPECT(hmaf_session_lookup(s, NULL, &addr, NULL), HMAF_EINVAL,
           DOC(D_LOOKUP));
    EXPECT(hmaf_session_lookup(s, "buf", NULL, &len), HMAF_EINVAL,
           DOC(D_LOOKUP));
    EXPECT(hmaf_session_lookup(s, "", &addr, NULL), HMAF_EINVAL, DOC(D_LOOKUP));
    EXPECT(hmaf_session_lookup(s, name63, &addr, NULL), HMAF_ENOENT,
           DOC(D_LOOKUP));
    EXPECT(hmaf_session_lookup(s, name64, &addr, NULL), HMAF_ENAMETOOLONG,
           DOC(D_LOOKUP));
    EXPECT(hmaf_session_lookup(s, name_huge, &addr, NULL), HMAF_ENAMETOOLONG,
           DOC(D_LOOKUP));
    EXPECT(hmaf_session_lookup(s, "buf", &addr, &len), 0, DOC(D_LOOKUP));
    ASSERT_THAT("lookup result", addr == buf && len == STD_BUF_LEN);

    review_step("hmaf_session_read / write", 20000);
    EXPECT(hmaf_session_read(s, NULL, buf, 1), HMAF_EINVAL, DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, buf, 0), HMAF_EINVAL, DOC(D_READ));
    EXPECT(hmaf_session_write(s, buf, NULL, 1), HMAF_EINVAL, DOC(D_WRITE));
    EXPECT(hmaf_session_write(s, buf, tmp, 0), HMAF_EINVAL, DOC(D_WRITE));
    EXPECT(hmaf_session_read(s, tmp, UINT64_MAX, 1), HMAF_EOVERFLOW,
           DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, UINT64_MAX - 10, 100), HMAF_EOVERFLOW,
           DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, buf, SIZE_MAX), HMAF_EOVERFLOW,
           DOC(D_READ));
    EXPECT(hmaf_session_write(s, UINT64_MAX - 1, tmp, 16), HMAF_EOVERFLOW,
           DOC(D_WRITE));
    EXPECT(hmaf_session_read(s, tmp, 0, 16), HMAF_EFAULT, DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, UINT64_MAX - 15, 16), HMAF_EOVERFLOW,
           DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, UINT64_MAX - 16, 16), HMAF_EFAULT,
           DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, hole, 16), HMAF_EFAULT, DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, buf - 8, 16), HMAF_EFAULT, DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, buf + STD_BUF_LEN - 8, 16), HMAF_EFAULT,
           DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, buf + STD_BUF_LEN - 16, 16), 0,
           DOC(D_READ));
    EXPECT(hmaf_session_read(s, tmp, buf + STD_SPLIT - 100, 200), 0,
           DOC(D_READ));
    EXPECT(hmaf_session_write(s, ro, tmp, 16), HMAF_EACCES, DOC(D_WRITE));
    EXPECT(hmaf_session_write(s, hole, tmp, 16), HMAF_EFAULT, DOC(D_WRITE));
    big = malloc(STD_BUF_LEN);
    CHECK(big != NULL);
    EXPECT(hmaf_session_read(s, big, buf, STD_BUF_LEN), 0, DOC(D_READ));
    ASSERT_THAT("a 64 MiB read spanning two exposures is right",
                target_mismatch(big, STD_BUF_LEN, 0, 1) == STD_BUF_LEN);
    free(big);

    review_step("hmaf_session_readv / writev", 20000);
    seg[0] = (hmaf_seg_t){tmp, buf, 16};
    seg[1] = (hmaf_seg_t){tmp + 16, buf + 100, 16};
    EXPECT(hmaf_session_readv(s, NULL, 1), HMAF_EINVAL, DOC(D_READ));
    EXPECT(hmaf_session_readv(s, seg, 0), HMAF_EINVAL, DOC(D_READ));
    seg[2] = (hmaf_seg_t){NULL, buf, 16};
    EXPECT(hmaf_session_readv(s, seg, 3), HMAF_EINVAL, DOC(D_READ));
    seg[2] = (hmaf_seg_t){tmp, buf, 0};
    EXPECT(hmaf_session_readv(s, seg, 3), HMAF_EINVAL, DOC(D_READ));
    seg[2] = (hmaf_seg_t){tmp, UINT64_MAX - 3, 16};
    EXPECT(hmaf_session_readv(s, seg, 3), HMAF_EOVERFLOW, DOC(D_READ));
    seg[2] = (hmaf_seg_t){tmp, hole, 16};
    EXPECT(hmaf_session_readv(s, seg, 3), HMAF_EFAULT, DOC(D_READ));
    seg[2] = (hmaf_seg_t){tmp, ro, 16};
    EXPECT(hmaf_session_readv(s, seg, 3), 0, DOC(D_READ));
    EXPECT(hmaf_session_writev(s, seg, 3), HMAF_EACCES, DOC(D_WRITE));
    /* A first bad segment with a count near SIZE_MAX: refused before the
     * count is believed. */
    seg[0] = (hmaf_seg_t){tmp, buf, 0};
    EXPECT(hmaf_session_readv(s, seg, SIZE_MAX), HMAF_EINVAL, DOC(D_READ));
    EXPECT(hmaf_session_writev(s, seg, SIZE_MAX), HMAF_EINVAL, DOC(D_WRITE));
    many = calloc(5000, sizeof(*many));
    CHECK(many != NULL);
    for (size_t i = 0; i < 5000; i++) {
        many[i] = (hmaf_seg_t){tmp + i % 4000, buf + i * 4099 % STD_BUF_LEN, 1};
    }
    EXPECT(hmaf_session_readv(s, many, 5000), 0, DOC(D_READ));
    EXPECT(hmaf_session_writev(s, many, 5000), 0, DOC(D_WRITE));
    free(many);

    review_step("ping / stats / engine", 5000);
    EXPECT(hmaf_session_ping(s), 0, DOC(D_PING));
    EXPECT(hmaf_session_stats(s, NULL), HMAF_EINVAL, DOC(D_SESSION_STATS));
    EXPECT(hmaf_session_stats(s, &st), 0, DOC(D_SESSION_STATS));
    ASSERT_THAT("engine name", strcmp(hmaf_session_engine(s), "cma") == 0);
    hmaf_session_destroy(s);
    target_kill(&tgt);
    free(name63);
    free(name64);
    free(name_huge);
}

/* --------------------------------------------------------------- requests */

struct thread_post {
    hmaf_session_t *s;
    uint64_t addr;
    uint8_t buf[64];
    hmaf_req_t req;
    int ret;
};

static void *post_in_thread(void *arg)
{
    struct thread_post *tp = arg;

    tp->ret = hmaf_session_post_read(tp->s, tp->buf, tp->addr, 64, &tp->req);
    return NULL;
}

static void *test_in_thread(void *arg)
{
    struct thread_post *tp = arg;

    tp->ret = hmaf_request_test(tp->s, tp->req);
    return NULL;
}

static hmaf_session_t *connect_with_inflight(unsigned max_inflight)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;

    target_session_params(&tgt, &p);
    p.max_inflight = max_inflight;
    CHECK_OK(hmaf_session_create(&p, &s));
    return s;
}

static void group_requests(void)
{
    hmaf_session_t *s, *s2, *small;
    uint64_t buf, ro, hole;
    uint8_t tmp[256];
    hmaf_req_t h, h2, h3, gone;
    hmaf_seg_t seg[3], bad = {tmp, 0, 0};
    struct thread_post tp;
    pthread_t th;
    int ret;

    target_start_standard(&tgt);
    s = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    CHECK_OK(hmaf_session_lookup(s, "hole", &hole, NULL));

    review_step("post arguments", 10000);
    EXPECT(hmaf_session_post_read(s, NULL, buf, 8, &h), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_session_post_read(s, tmp, buf, 0, &h), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_session_post_write(s, buf, NULL, 8, &h), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_session_post_read(s, tmp, UINT64_MAX - 3, 8, &h),
           HMAF_EOVERFLOW, DOC(D_POST));
    EXPECT(hmaf_session_post_readv(s, NULL, 1, &h), HMAF_EINVAL, DOC(D_POST));
    EXPECT(hmaf_session_post_readv(s, seg, 0, &h), HMAF_EINVAL, DOC(D_POST));
    EXPECT(hmaf_session_post_readv(s, &bad, SIZE_MAX, &h), HMAF_EINVAL,
           DOC(D_POST));
    EXPECT(hmaf_session_post_writev(s, &bad, SIZE_MAX, &h), HMAF_EINVAL,
           DOC(D_POST));

    review_step("access errors are the request's status", 10000);
    CHECK_OK(hmaf_session_post_read(s, tmp, hole, 8, &h));
    EXPECT(hmaf_request_wait(s, h), HMAF_EFAULT, DOC(D_WAIT));
    CHECK_OK(hmaf_session_post_write(s, ro, tmp, 8, &h));
    EXPECT(hmaf_request_wait(s, h), HMAF_EACCES, DOC(D_WAIT));
    CHECK_OK(hmaf_session_post_read(s, tmp, hole, 8, NULL));
    EXPECT(hmaf_session_flush(s), HMAF_EFAULT, DOC(D_FLUSH));
    EXPECT(hmaf_session_flush(s), 0, DOC(D_FLUSH));

    review_step("garbage and consumed handles", 10000);
    EXPECT(hmaf_request_test(s, 0), HMAF_EINVAL, DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, 0), HMAF_EINVAL, DOC(D_WAIT));
    EXPECT(hmaf_request_test(s, 1), HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_test(s, 0xFFFF), HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_test(s, UINT64_MAX), HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, UINT64_MAX), HMAF_ESTALE, DOC(D_WAIT));
    EXPECT(hmaf_request_wait(s, (hmaf_req_t)1 << 63), HMAF_ESTALE, DOC(D_WAIT));
    CHECK_OK(hmaf_session_post_read(s, tmp, buf, 8, &h));
    EXPECT(hmaf_request_test(s, h + 1), HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_test(s, h ^ ((hmaf_req_t)1 << 16)), HMAF_ESTALE,
           DOC(D_TEST));
    EXPECT(hmaf_request_test(s, h + ((hmaf_req_t)1 << 40)), HMAF_ESTALE,
           DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, h), 0, DOC(D_WAIT));
    EXPECT(hmaf_request_wait(s, h), HMAF_ESTALE, DOC(D_WAIT));
    EXPECT(hmaf_request_test(s, h), HMAF_ESTALE, DOC(D_TEST));
    /* handle-less requests are no one's handle */
    CHECK_OK(hmaf_session_post_read(s, tmp, buf, 8, NULL));
    CHECK_OK(hmaf_session_post_read(s, tmp, buf, 8, &h));
    EXPECT(hmaf_request_test(s, h - 1), HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, h), 0, DOC(D_WAIT));
    EXPECT(hmaf_session_flush(s), 0, DOC(D_FLUSH));

    review_step("handles of another session and of a destroyed one", 10000);
    s2 = target_connect(&tgt);
    CHECK_OK(hmaf_session_post_read(s2, tmp, buf, 8, &gone));
    CHECK_OK(hmaf_session_post_read(s, tmp + 8, buf, 8, &h));
    EXPECT(hmaf_request_test(s2, h), HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, gone), HMAF_ESTALE, DOC(D_WAIT));
    hmaf_session_destroy(s2);
    s2 = target_connect(&tgt);
    EXPECT(hmaf_request_wait(s2, gone), HMAF_ESTALE, DOC(D_WAIT));
    EXPECT(hmaf_request_wait(s, h), 0, DOC(D_WAIT));

    review_step("a handle of another thread", 10000);
    tp = (struct thread_post){.s = s, .addr = buf};
    CHECK(pthread_create(&th, NULL, post_in_thread, &tp) == 0);
    pthread_join(th, NULL);
    CHECK_OK(tp.ret);
    EXPECT(hmaf_request_test(s, tp.req), HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, tp.req), HMAF_ESTALE, DOC(D_WAIT));
    CHECK_OK(hmaf_session_post_read(s, tmp, buf, 8, &h));
    tp.req = h;
    CHECK(pthread_create(&th, NULL, test_in_thread, &tp) == 0);
    pthread_join(th, NULL);
    EXPECT_AS("hmaf_request_test(this thread's handle, on another thread)",
              tp.ret, HMAF_ESTALE, DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, h), 0, DOC(D_WAIT));

    review_step("max_inflight: unconsumed handles, oversized posts", 20000);
    small = connect_with_inflight(2);
    CHECK_OK(hmaf_session_post_read(small, tmp, buf, 8, &h));
    CHECK_OK(hmaf_session_post_read(small, tmp + 8, buf, 8, &h2));
    EXPECT(hmaf_session_flush(small), 0, DOC(D_FLUSH));
    EXPECT(hmaf_session_post_read(small, tmp + 16, buf, 8, &h3), HMAF_ENOSPC,
           DOC(D_POST));
    EXPECT(hmaf_request_wait(small, h), 0, DOC(D_WAIT));
    EXPECT(hmaf_request_wait(small, h2), 0, DOC(D_WAIT));
    seg[0] = (hmaf_seg_t){tmp, buf, 8};
    seg[1] = (hmaf_seg_t){tmp + 8, buf + 8, 8};
    seg[2] = (hmaf_seg_t){tmp + 16, hole, 8};
    EXPECT(hmaf_session_post_readv(small, seg, 3, &h), 0, DOC(D_POST));
    EXPECT(hmaf_request_wait(small, h), HMAF_EFAULT, DOC(D_WAIT));
    EXPECT(hmaf_session_post_readv(small, seg, 2, &h), 0, DOC(D_POST));
    EXPECT(hmaf_request_wait(small, h), 0, DOC(D_WAIT));
    for (int i = 0; i < 100000; i++) {
        ret = hmaf_session_post_read(small, tmp + (i % 16) * 8, buf, 8, NULL);
        if (ret != 0) {
            break;
        }
    }
    EXPECT_AS("100000 handle-less posts on max_inflight 2", ret, 0,
              DOC(D_POST));
    EXPECT(hmaf_session_flush(small), 0, DOC(D_FLUSH));
    hmaf_session_destroy(small);

    review_step("max_inflight 65536", 20000);
    small = connect_with_inflight(65536);
    for (int i = 0; i < 70000; i++) {
        ret = hmaf_session_post_read(small, tmp + (i % 16) * 8, buf, 8, NULL);
        if (ret != 0) {
            break;
        }
    }
    EXPECT_AS("70000 handle-less posts on max_inflight 65536", ret, 0,
              DOC(D_POST));
    EXPECT(hmaf_session_flush(small), 0, DOC(D_FLUSH));
    hmaf_session_destroy(small);

    hmaf_session_destroy(s2);
    hmaf_session_destroy(s);
    target_kill(&tgt);
}

/* ---------------------------------------------------------------- threads */

struct many_threads {
    hmaf_session_t *s;
    uint64_t addr;
    pthread_barrier_t *barrier;
    int ret;
};

static void *read_once_held(void *arg)
{
    struct many_threads *m = arg;
    uint8_t tmp[16];

    m->ret = hmaf_session_read(m->s, tmp, m->addr, sizeof(tmp));
    pthread_barrier_wait(m->barrier); /* all alive at once */
    return NULL;
}

static void group_threads(void)
{
    enum { N = 160 };
    static struct many_threads m[N];
    pthread_t th[N];
    pthread_barrier_t barrier;
    hmaf_session_t *s;
    uint64_t buf;
    int ok = 0, nospc = 0, other = 0;

    target_start_standard(&tgt);
    s = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    for (int round = 0; round < 2; round++) {
        review_step(round == 0 ? "160 threads at once" : "160 threads again",
                    30000);
        CHECK(pthread_barrier_init(&barrier, NULL, N + 1) == 0);
        ok = nospc = other = 0;
        for (int i = 0; i < N; i++) {
            m[i] =
                (struct many_threads){s, buf + (uint64_t)i * 64, &barrier, 0};
            CHECK(pthread_create(&th[i], NULL, read_once_held, &m[i]) == 0);
        }
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            ok += m[i].ret == 0;
            nospc += m[i].ret == HMAF_ENOSPC;
            if (m[i].ret != 0 && m[i].ret != HMAF_ENOSPC) {
                other++;
                EXPECT_AS("read from one of 160 threads", m[i].ret,
                          WANT_ANY_DOC, DOC(D_READ));
            }
        }
        pthread_barrier_destroy(&barrier);
        printf("  (round %d: %d ok, %d HMAF_ENOSPC, %d other)\n", round, ok,
               nospc, other);
        ASSERT_THAT("at most 128 threads (one is the watch thread's) get in",
                    ok <= 128 && ok >= 100);
    }
    EXPECT(hmaf_session_ping(s), 0, DOC(D_PING));
    hmaf_session_destroy(s);
    target_kill(&tgt);
}

/* ------------------------------------------------------------------ chase */

#define LIST_NODES 100

struct node {
    uint64_t next;
    uint64_t value;
};

static struct node *list_nodes; /* in the host child */

static int chase_setup(hmaf_agent_t *agent, void *arg)
{
    int ret;

    (void)arg;
    list_nodes = calloc(LIST_NODES + 1, sizeof(*list_nodes));
    if (list_nodes == NULL) {
        return HMAF_ENOMEM;
    }
    for (int i = 0; i < LIST_NODES; i++) {
        list_nodes[i].next =
            i + 1 < LIST_NODES ? (uint64_t)(uintptr_t)&list_nodes[i + 1] : 0;
        list_nodes[i].value = (uint64_t)i;
    }
    /* the extra node points at itself: a cycle */
    list_nodes[LIST_NODES].next = (uint64_t)(uintptr_t)&list_nodes[LIST_NODES];
    ret = hmaf_agent_expose(agent, list_nodes,
                            (LIST_NODES + 1) * sizeof(*list_nodes),
                            HMAF_ACCESS_READ);
    if (ret == 0) {
        ret =
            hmaf_agent_publish(agent, "list", list_nodes, sizeof(struct node));
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "cycle", &list_nodes[LIST_NODES],
                                 sizeof(struct node));
    }
    return ret;
}

static int stop_at_first(void *arg, size_t chain, uint64_t node_addr,
                         const void *node)
{
    (void)arg, (void)chain, (void)node_addr, (void)node;
    return 1;
}

static int chase_one(hmaf_session_t *s, const hmaf_chase_params_t *p,
                     uint64_t start, hmaf_chain_t *out)
{
    hmaf_chain_t c = {.start = start};
    int ret = hmaf_session_chase(s, p, &c, 1);

    if (out != NULL) {
        *out = c;
    }
    return ret;
}

static void group_chase(void)
{
    struct target_options opts = {.setup = chase_setup};
    hmaf_chase_params_t p = {
        .node_len = sizeof(struct node), .next_offset = 0, .max_steps = 1000};
    hmaf_chase_params_t q;
    hmaf_chain_t c, *chains;
    hmaf_session_t *s;
    uint64_t list, cycle;

    target_start(&tgt, &opts);
    s = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(s, "list", &list, NULL));
    CHECK_OK(hmaf_session_lookup(s, "cycle", &cycle, NULL));

    review_step("chase params", 10000);
    c = (hmaf_chain_t){.start = list};
    EXPECT(hmaf_session_chase(s, NULL, &c, 1), HMAF_EINVAL, DOC(D_CHASE));
    EXPECT(hmaf_session_chase(s, &p, NULL, 1), HMAF_EINVAL, DOC(D_CHASE));
    EXPECT(hmaf_session_chase(s, &p, &c, 0), HMAF_EINVAL, DOC(D_CHASE));
    q = p, q.node_len = 0;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));
    q = p, q.max_steps = 0;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));
    q = p, q.next_offset = 9;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));
    q = p, q.next_offset = SIZE_MAX;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));
    q = p, q.next_offset = SIZE_MAX - 7, q.node_len = SIZE_MAX;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));
    q = p, q.node_len = SIZE_MAX;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));

    review_step("chase: huge node_len and nchains", 20000);
    q = p, q.node_len = SIZE_MAX / 2;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));
    q = p, q.node_len = HMAF_CHASE_NODE_MAX + 1;
    EXPECT(chase_one(s, &q, list, NULL), HMAF_EINVAL, DOC(D_CHASE));
    c = (hmaf_chain_t){.start = list};
    EXPECT(hmaf_session_chase(s, &p, &c, SIZE_MAX), HMAF_ENOMEM, DOC(D_CHASE));
    EXPECT(hmaf_session_chase(s, &p, &c, SIZE_MAX / 64), HMAF_ENOMEM,
           DOC(D_CHASE));

    review_step("chase: chains", 20000);
    EXPECT(chase_one(s, &p, list, &c), 0, DOC(D_CHASE));
    ASSERT_THAT("list: 100 steps", c.steps == LIST_NODES && c.status == 0);
    EXPECT(chase_one(s, &p, 0, &c), 0, DOC(D_CHASE));
    ASSERT_THAT("empty chain: no steps", c.steps == 0 && c.last == 0);
    EXPECT(chase_one(s, &p, cycle, &c), 0, DOC(D_CHASE));
    ASSERT_THAT("cycle: max_steps", c.steps == 1000);
    q = p, q.max_steps = SIZE_MAX;
    EXPECT(chase_one(s, &q, list, &c), 0, DOC(D_CHASE));
    q = p, q.visit = stop_at_first;
    EXPECT(chase_one(s, &q, list, &c), 0, DOC(D_CHASE));
    ASSERT_THAT("visit ends the chain", c.steps == 1);
    EXPECT(chase_one(s, &p, 4096, &c), HMAF_EFAULT, DOC(D_CHASE));
    EXPECT(chase_one(s, &p, UINT64_MAX - 4, &c), HMAF_EOVERFLOW, DOC(D_CHASE));
    q = p, q.node_len = 1 << 20; /* past the exposure */
    EXPECT(chase_one(s, &q, list, &c), HMAF_EFAULT, DOC(D_CHASE));
    chains = calloc(1000, sizeof(*chains));
    CHECK(chains != NULL);
    for (int i = 0; i < 1000; i++) {
        chains[i].start = i % 3 == 0 ? list : i % 3 == 1 ? cycle : 4096;
    }
    q = p, q.max_steps = 50;
    EXPECT(hmaf_session_chase(s, &q, chains, 1000), HMAF_EFAULT, DOC(D_CHASE));
    ASSERT_THAT("each chain has its own fate",
                chains[0].steps == 50 && chains[0].status == 0 &&
                    chains[1].steps == 50 && chains[2].status == HMAF_EFAULT);
    free(chains);
    hmaf_session_destroy(s);
    target_kill(&tgt);
}

/* -------------------------------------------------------------------- map */

struct huge_map {
    uint64_t addr;
    size_t len;
};

/* In a child: a session of its own, one hmaf_map_create, its verdict. */
static int map_huge(void *arg)
{
    const struct huge_map *h = arg;
    hmaf_map_params_t p;
    hmaf_map_t *m = NULL;
    hmaf_session_t *s = target_connect(&tgt);
    int ret;

    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE;
    ret = hmaf_map_create(s, h->addr, h->len, &p, &m);
    hmaf_map_destroy(m);
    hmaf_session_destroy(s);
    return ret;
}

static void group_map(void)
{
    hmaf_session_t *s;
    hmaf_map_params_t p, q;
    hmaf_map_t *m = NULL, *ro = NULL, *rox = NULL;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;
    uint64_t buf, rbuf, robuf;
    int ret;

    target_start_standard(&tgt);
    s = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &robuf, NULL));
    rbuf = (buf + 4095) & ~(uint64_t)4095;
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE;

    review_step("map_create arguments", 20000);
    ret = hmaf_map_create(s, rbuf, 1 << 20, &p, &m);
    if (ret == HMAF_ENOTSUP) {
        printf("  (no userfaultfd here: map checks skipped)\n");
        hmaf_session_destroy(s);
        target_kill(&tgt);
        return;
    }
    EXPECT_AS("hmaf_map_create(buf, 1 MiB, ANYWHERE)", ret, 0,
              DOC(D_MAP_CREATE));
    EXPECT(hmaf_map_create(s, rbuf, 0, &p, &ro), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    EXPECT(hmaf_map_create(s, rbuf, 4096, &p, NULL), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    q = p, q.size = 0;
    EXPECT(hmaf_map_create(s, rbuf, 4096, &q, &ro), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    q = p, q.size = SIZE_MAX;
    EXPECT(hmaf_map_create(s, rbuf, 4096, &q, &ro), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    q = p, q.flags = 0x4;
    EXPECT(hmaf_map_create(s, rbuf, 4096, &q, &ro), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    q = p, q.flags = 0x80000000u;
    EXPECT(hmaf_map_create(s, rbuf, 4096, &q, &ro), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    q = p, q.readahead_max = HMAF_MAP_READAHEAD_MAX + 1;
    EXPECT(hmaf_map_create(s, rbuf, 4096, &q, &ro), HMAF_EINVAL,
           DOC(D_MAP_CREATE));
    EXPECT(hmaf_map_create(s, rbuf, SIZE_MAX, &p, &ro), HMAF_EOVERFLOW,
           DOC(D_MAP_CREATE));
    EXPECT(hmaf_map_create(s, UINT64_MAX - 10, 20, &p, &ro), HMAF_EOVERFLOW,
           DOC(D_MAP_CREATE));
    review_step("hmaf_map_create in place at taken, 0 and kernel addresses",
                10000);
    /* in place: the host's address is taken here (our own heap) */
    q = p, q.flags = 0;
    EXPECT(hmaf_map_create(s, (uint64_t)(uintptr_t)&tgt, 4096, &q, &ro),
           HMAF_EEXIST, DOC(D_MAP_CREATE));
    /* address 0 and a kernel address, in place: no mirror possible there */
    EXPECT(hmaf_map_create(s, 0, 4096, &q, &ro), WANT_ANY_DOC,
           DOC(D_MAP_CREATE));
    if (ro != NULL) {
        hmaf_map_destroy(ro);
        ro = NULL;
    }
    EXPECT(hmaf_map_create(s, 0xffff800000000000ull, 4096, &q, &ro),
           WANT_ANY_DOC, DOC(D_MAP_CREATE));
    if (ro != NULL) {
        hmaf_map_destroy(ro);
        ro = NULL;
    }
    /* absurd lengths that do not wrap, each in a child of its own */
    review_step("hmaf_map_create with absurd lengths", 60000);
    static const int shifts[] = {36, 40, 44, 46, 62};
    for (size_t k = 0; k < sizeof(shifts) / sizeof(shifts[0]); k++) {
        int sh = shifts[k];
        struct huge_map h = {.addr = sh == 62 ? 4096 : rbuf,
                             .len = (size_t)1 << sh};
        char what[96];
        snprintf(what, sizeof(what), "hmaf_map_create(%s, 2^%d, ANYWHERE)",
                 sh == 62 ? "4096" : "buf", sh);
        EXPECT_AS(what, review_isolated(what, 5000, map_huge, &h), WANT_ANY_DOC,
                  DOC(D_MAP_CREATE));
    }

    review_step("map_local / map_remote / refresh / stats", 20000);
    {
        uint8_t *l = hmaf_map_local(m, rbuf);
        volatile uint8_t v;
        ASSERT_THAT("local of the first byte", l != NULL);
        ASSERT_THAT("local before", hmaf_map_local(m, rbuf - 1) == NULL);
        ASSERT_THAT("local after", hmaf_map_local(m, rbuf + (1 << 20)) == NULL);
        ASSERT_THAT("local of UINT64_MAX",
                    hmaf_map_local(m, UINT64_MAX) == NULL);
        ASSERT_THAT("remote round trip", hmaf_map_remote(m, l + 5) == rbuf + 5);
        ASSERT_THAT("remote of NULL", hmaf_map_remote(m, NULL) == 0);
        ASSERT_THAT("remote before", hmaf_map_remote(m, l - 1) == 0);
        ASSERT_THAT("remote after", hmaf_map_remote(m, l + (1 << 20)) == 0);
        v = l[100];
        (void)v;
        l[200] ^= 0xFF;
        EXPECT(hmaf_map_refresh(m, rbuf, 0, 0), HMAF_EINVAL,
               DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_refresh(m, rbuf, 1, 2), HMAF_EINVAL,
               DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_refresh(m, rbuf - 1, 2, 0), HMAF_EINVAL,
               DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_refresh(m, rbuf, SIZE_MAX, 0), HMAF_EINVAL,
               DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_refresh(m, rbuf + 10, (1 << 20) - 9, 0), HMAF_EINVAL,
               DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_refresh(m, UINT64_MAX, 1, 0), HMAF_EINVAL,
               DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_refresh(m, rbuf, 1 << 20, HMAF_REFRESH_CLEAN_ONLY), 0,
               DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_sync(m), 0, DOC(D_MAP_SYNC));
        EXPECT(hmaf_map_refresh(m, rbuf, 1 << 20, 0), 0, DOC(D_MAP_REFRESH));
        EXPECT(hmaf_map_stats(m, NULL), HMAF_EINVAL, DOC(D_MAP_STATS));
        EXPECT(hmaf_map_stats(m, &st), 0, DOC(D_MAP_STATS));
    }

    review_step("read-only mappings and exposures", 20000);
    q = p, q.flags = HMAF_MAP_ANYWHERE | HMAF_MAP_READ_ONLY;
    EXPECT(hmaf_map_create(s, rbuf, 4096, &q, &ro), 0, DOC(D_MAP_CREATE));
    EXPECT(hmaf_map_sync(ro), HMAF_EACCES, DOC(D_MAP_SYNC));
    EXPECT(hmaf_map_create(s, robuf & ~(uint64_t)4095, 8192, &p, &rox), 0,
           DOC(D_MAP_CREATE));
    if (rox != NULL) {
        uint8_t *l = hmaf_map_local(rox, robuf + 4096);
        l[0] ^= 1;
        EXPECT(hmaf_map_sync(rox), HMAF_EACCES, DOC(D_MAP_SYNC));
        hmaf_map_destroy(rox);
    }
    hmaf_map_destroy(ro);
    hmaf_map_destroy(m);
    hmaf_session_destroy(s);
    target_kill(&tgt);
}

/* ---------------------------------------------- after the host went away */

/* Every dpu-side call after the host died (kill) or left (stop). */
static void after_host(int kill_it)
{
    hmaf_session_t *s;
    hmaf_map_params_t mp;
    hmaf_map_t *m = NULL;
    hmaf_chase_params_t cp = {.node_len = 16, .max_steps = 4};
    hmaf_chain_t chain;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    hmaf_seg_t seg[2];
    hmaf_req_t pending, h;
    uint64_t buf, addr, t0;
    uint8_t tmp[64], *l = NULL;
    int ret;

    target_start_standard(&tgt);
    s = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_read(s, tmp, buf, sizeof(tmp)));
    hmaf_map_params_init(&mp);
    mp.flags = HMAF_MAP_ANYWHERE;
    if (hmaf_map_create(s, (buf + 4095) & ~(uint64_t)4095, 8192, &mp, &m) ==
        0) {
        l = hmaf_map_local(m, (buf + 4095) & ~(uint64_t)4095);
        l[1] ^= 0x55; /* a dirty page */
    }
    CHECK_OK(hmaf_session_post_read(s, tmp, buf, 8, &pending));
    review_step(kill_it ? "host killed" : "host stopped", 10000);
    if (kill_it) {
        target_kill(&tgt);
    } else {
        CHECK_EQ(target_stop(&tgt), 0);
    }
    poll(NULL, 0, 100); /* the watch thread notices */

    review_step("every call after the host went", 20000);
    t0 = now_ms();
    seg[0] = (hmaf_seg_t){tmp, buf, 8};
    seg[1] = (hmaf_seg_t){tmp + 8, buf + 64, 8};
    EXPECT(hmaf_session_read(s, tmp, buf, 8), HMAF_ECONNRESET, DOC(D_READ));
    EXPECT(hmaf_session_write(s, buf, tmp, 8), HMAF_ECONNRESET, DOC(D_WRITE));
    EXPECT(hmaf_session_readv(s, seg, 2), HMAF_ECONNRESET, DOC(D_READ));
    EXPECT(hmaf_session_writev(s, seg, 2), HMAF_ECONNRESET, DOC(D_WRITE));
    EXPECT(hmaf_session_lookup(s, "buf", &addr, NULL), HMAF_ECONNRESET,
           DOC(D_LOOKUP));
    EXPECT(hmaf_session_ping(s), HMAF_ECONNRESET, DOC(D_PING));
    EXPECT(hmaf_request_test(s, pending), HMAF_ECONNRESET, DOC(D_TEST));
    EXPECT(hmaf_request_wait(s, pending), HMAF_ESTALE, DOC(D_WAIT));
    EXPECT(hmaf_session_post_read(s, tmp, buf, 8, &h), HMAF_ECONNRESET,
           DOC(D_POST));
    EXPECT(hmaf_session_post_writev(s, seg, 2, NULL), HMAF_ECONNRESET,
           DOC(D_POST));
    EXPECT(hmaf_session_flush(s), 0, DOC(D_FLUSH));
    chain = (hmaf_chain_t){.start = buf};
    EXPECT(hmaf_session_chase(s, &cp, &chain, 1), HMAF_ECONNRESET,
           DOC(D_CHASE));
    EXPECT(hmaf_session_stats(s, &st), 0, DOC(D_SESSION_STATS));
    if (m != NULL) {
        EXPECT(hmaf_map_sync(m), HMAF_ECONNRESET, DOC(D_MAP_SYNC));
        EXPECT(hmaf_map_refresh(m, (buf + 4095) & ~(uint64_t)4095, 8192, 0), 0,
               DOC(D_MAP_REFRESH));
        ret = hmaf_map_stats(m, &(hmaf_map_stats_t)HMAF_MAP_STATS_INIT);
        EXPECT_AS("hmaf_map_stats after the host went", ret, 0,
                  DOC(D_MAP_STATS));
        hmaf_map_destroy(m);
    }
    ASSERT_THAT("every call after the host went returned within 2 s",
                now_ms() - t0 < 2000u * review_slow());
    review_step("session destroy after the host went", 10000);
    hmaf_session_destroy(s);

    review_step("connect to the address of the departed host", 10000);
    {
        hmaf_session_params_t p;
        hmaf_session_t *s2 = NULL;
        target_session_params(&tgt, &p);
        p.connect_timeout_ms = 200;
        EXPECT(hmaf_session_create(&p, &s2), HMAF_ECONNREFUSED,
               DOC(D_SESSION_CREATE));
    }
}

static void group_host_killed(void)
{
    after_host(1);
}

static void group_host_stopped(void)
{
    after_host(0);
}

/* -------------------------------------------- after the dpu side went away */

static void dpu_child(int rfd, int wfd)
{
    char address[160];
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint64_t buf;
    uint8_t tmp[64];
    char ok = 'x';

    CHECK(read(rfd, address, sizeof(address)) > 0);
    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    CHECK_OK(hmaf_session_create(&p, &s));
    CHECK_OK(hmaf_session_lookup(s, "mem", &buf, NULL));
    CHECK_OK(hmaf_session_read(s, tmp, buf, sizeof(tmp)));
    ok = 'k';
    CHECK(write(wfd, &ok, 1) == 1);
    pause(); /* until killed */
    _exit(0);
}

static void group_dpu_killed(void)
{
    int to[2], from[2], fds0;
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    char address[160], ok = 0;
    uint64_t t0;
    pid_t pid;

    CHECK(pipe(to) == 0 && pipe(from) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dpu_child(to[0], from[1]);
    }
    fds0 = review_count_fds(0);
    agent_base(&p);
    snprintf(address, sizeof(address), "unix:@hmaf-review-dpu-kill-%d",
             (int)getpid());
    p.address = address;
    p.threaded = 1;
    p.revoke_wait_ms = 300;
    CHECK_OK(hmaf_agent_create(&p, &a));
    CHECK_OK(hmaf_agent_expose(a, memory, 4096, HMAF_ACCESS_READ_WRITE));
    CHECK_OK(hmaf_agent_publish(a, "mem", memory, 4096));
    review_step("a dpu side connects", 10000);
    CHECK(write(to[1], address, strlen(address) + 1) > 0);
    CHECK(read(from[0], &ok, 1) == 1 && ok == 'k');
    review_step("revoke while the dpu side is stopped", 10000);
    kill(pid, SIGSTOP); /* its watch thread cannot confirm */
    {
        siginfo_t si;
        CHECK(waitid(P_PID, (id_t)pid, &si, WSTOPPED) == 0);
    }
    CHECK_OK(hmaf_agent_expose(a, memory + 4096, 4096, HMAF_ACCESS_READ));
    EXPECT_AS("hmaf_agent_revoke(a session cannot confirm in time)",
              hmaf_agent_revoke(a, memory + 4096, 4096), WANT_ANY_DOC,
              DOC(D_AGENT_REVOKE));
    kill(pid, SIGCONT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    review_step("host calls after the dpu side died", 10000);
    t0 = now_ms();
    do {
        CHECK_OK(hmaf_agent_stats(a, &st));
        poll(NULL, 0, 5);
    } while (st.sessions_live != 0 && now_ms() - t0 < 2000u * review_slow());
    ASSERT_THAT("the dead dpu side's session is reaped within 2 s",
                st.sessions_live == 0);
    EXPECT(hmaf_agent_revoke(a, memory, 4096), 0, DOC(D_AGENT_REVOKE));
    EXPECT(hmaf_agent_unpublish(a, "mem"), 0, DOC(D_AGENT_UNPUBLISH));
    CHECK_OK(hmaf_agent_expose(a, memory, sizeof(memory), HMAF_ACCESS_READ));
    EXPECT(hmaf_agent_dial(a, address, 100), WANT_ANY_DOC, DOC(D_AGENT_DIAL));
    review_step("agent destroy after the dpu side died", 5000);
    t0 = now_ms();
    hmaf_agent_destroy(a);
    ASSERT_THAT("agent destroy within 1 s",
                now_ms() - t0 < 1000u * review_slow());
    close(to[0]);
    close(to[1]);
    close(from[0]);
    close(from[1]);
    ASSERT_THAT("no fd leaked by the agent", review_count_fds(0) == fds0 - 4);
}

/* ---------------------------------------------------------- out of fds */

/* Allow exactly `extra` more fds than are open now: fill every hole below
 * the highest open fd (new fds take the lowest free number), then set the
 * limit just above it. fd_budget_end() gives the fillers back. */
static int fillers[4096], nfillers;

static void fd_budget(int extra)
{
    struct rlimit rl;
    int high = 0, fd;

    for (fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            high = fd;
        }
    }
    while ((fd = open("/dev/null", O_RDONLY)) >= 0 && fd < high) {
        fillers[nfillers++] = fd; /* a hole below the highest */
    }
    if (fd >= 0) {
        close(fd);
    }
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = (rlim_t)high + 1 + (rlim_t)extra;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

static void fd_budget_end(void)
{
    struct rlimit rl;

    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    while (nfillers > 0) {
        close(fillers[--nfillers]);
    }
}

static void group_out_of_fds(void)
{
    hmaf_agent_params_t ap;
    hmaf_agent_t *a = NULL;
    hmaf_session_params_t sp;
    hmaf_session_t *s = NULL, *ok;
    hmaf_map_params_t mp;
    hmaf_map_t *m = NULL;
    uint64_t buf;
    int fds0, ret;

    target_start_standard(&tgt);
    ok = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(ok, "buf", &buf, NULL));
    target_session_params(&tgt, &sp);
    sp.connect_timeout_ms = 300;
    agent_base(&ap);
    ap.address = "unix:@hmaf-review-nofd";
    hmaf_map_params_init(&mp);
    mp.flags = HMAF_MAP_ANYWHERE;
    fds0 = review_count_fds(0);

    review_step("no fd left", 10000);
    fd_budget(0);
    /* Out of file descriptors is HMAF_ENOSPC, "limit reached" (headers). */
    ret = hmaf_agent_create(&ap, &a);
    EXPECT_AS("hmaf_agent_create(listen) with no fd left", ret, HMAF_ENOSPC,
              DOC(D_AGENT_CREATE));
    if (ret == 0) {
        hmaf_agent_destroy(a);
    }
    ret = hmaf_session_create(&sp, &s);
    EXPECT_AS("hmaf_session_create with no fd left", ret, HMAF_ENOSPC,
              DOC(D_SESSION_CREATE));
    if (ret == 0) {
        hmaf_session_destroy(s);
    }
    ret = hmaf_map_create(ok, (buf + 4095) & ~(uint64_t)4095, 4096, &mp, &m);
    EXPECT_AS("hmaf_map_create with no fd left", ret, HMAF_ENOSPC,
              DOC(D_MAP_CREATE));
    if (ret == 0) {
        hmaf_map_destroy(m);
    }
    fd_budget_end();
    review_step("one fd left", 10000);
    fd_budget(1); /* the channel, but no eventfd for the watch thread */
    ret = hmaf_session_create(&sp, &s);
    EXPECT_AS("hmaf_session_create with one fd left", ret, HMAF_ENOSPC,
              DOC(D_SESSION_CREATE));
    if (ret == 0) {
        hmaf_session_destroy(s);
    }
    fd_budget_end();
    if (review_count_fds(0) != fds0) {
        char cmd[64];
        printf("  (fds %d before, %d after)\n", fds0, review_count_fds(0));
        snprintf(cmd, sizeof(cmd),
                 "ls -l /proc/%d/fd | tail -n +2 | sed 's/^/    /'",
                 (int)getpid());
        fflush(stdout);
        (void)!system(cmd);
    }
    ASSERT_THAT("no fd leaked by the failures", review_count_fds(0) == fds0);
    EXPECT(hmaf_session_ping(ok), 0, DOC(D_PING));
    hmaf_session_destroy(ok);
    target_kill(&tgt);
}

/* ------------------------------------------ mailbox calls from 160 threads */

struct mb_thread {
    hmaf_session_t *s;
    hmaf_map_t *m;
    pthread_barrier_t *barrier;
    int ping, lookup, sync;
};

static void *mailbox_calls(void *arg)
{
    struct mb_thread *t = arg;
    uint64_t addr;

    t->ping = hmaf_session_ping(t->s);
    t->lookup = hmaf_session_lookup(t->s, "buf", &addr, NULL);
    t->sync = t->m != NULL ? hmaf_map_sync(t->m) : 0;
    pthread_barrier_wait(t->barrier);
    return NULL;
}

static void group_threads_mailbox(void)
{
    enum { N = 160 };
    static struct mb_thread t[N];
    pthread_t th[N];
    pthread_barrier_t barrier;
    hmaf_session_t *s;
    hmaf_map_params_t mp;
    hmaf_map_t *m = NULL;
    uint64_t buf;
    int reported[3] = {0};

    target_start_standard(&tgt);
    s = target_connect(&tgt);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    hmaf_map_params_init(&mp);
    mp.flags = HMAF_MAP_ANYWHERE;
    if (hmaf_map_create(s, (buf + 4095) & ~(uint64_t)4095, 4096, &mp, &m) ==
        0) {
        ((volatile uint8_t *)hmaf_map_local(m, (buf + 4095) &
                                                   ~(uint64_t)4095))[0] ^= 1;
    }
    review_step("ping, lookup and map sync from 160 threads at once", 60000);
    CHECK(pthread_barrier_init(&barrier, NULL, N + 1) == 0);
    for (int i = 0; i < N; i++) {
        t[i] = (struct mb_thread){s, m, &barrier, 0, 0, 0};
        CHECK(pthread_create(&th[i], NULL, mailbox_calls, &t[i]) == 0);
    }
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        /* one report per call kind */
        if (t[i].ping != 0 && !reported[0]++) {
            EXPECT_AS("hmaf_session_ping from the 129th thread", t[i].ping,
                      WANT_ANY_DOC, DOC(D_PING));
        }
        if (t[i].lookup != 0 && !reported[1]++) {
            EXPECT_AS("hmaf_session_lookup from the 129th thread", t[i].lookup,
                      WANT_ANY_DOC, DOC(D_LOOKUP));
        }
        if (t[i].sync != 0 && !reported[2]++) {
            EXPECT_AS("hmaf_map_sync from the 129th thread", t[i].sync,
                      WANT_ANY_DOC, DOC(D_MAP_SYNC));
        }
    }
    pthread_barrier_destroy(&barrier);
    hmaf_map_destroy(m);
    hmaf_session_destroy(s);
    target_kill(&tgt);
}

/* ------------------------------------- a signal during a tcp connect */

static void on_alarm(int sig)
{
    (void)sig;
}

static void group_signal_during_connect(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    socklen_t sl = sizeof(in);
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
    struct itimerval it = {.it_value = {0, 100000}};
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    char address[64];
    int lfd, fds[64], n = 0, ret;
    uint64_t t0, took;

    review_step("tcp connect to a full backlog, SIGALRM after 100 ms", 10000);
    /* A tcp listener whose backlog is full: a SYN waits unanswered. */
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&in, sl) == 0 &&
          listen(lfd, 0) == 0 &&
          getsockname(lfd, (struct sockaddr *)&in, &sl) == 0);
    while (n < 64) {
        struct pollfd pf;
        fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fds[n], (struct sockaddr *)&in, sl);
        pf = (struct pollfd){fds[n], POLLOUT, 0};
        if (poll(&pf, 1, 200) != 1) {
            n++;
            break; /* this one is not answered: full */
        }
        n++;
    }
    snprintf(address, sizeof(address), "tcp:127.0.0.1:%d",
             (int)ntohs(in.sin_port));
    sigaction(SIGALRM, &sa, NULL);
    setitimer(ITIMER_REAL, &it, NULL);
    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.connect_timeout_ms = 1500;
    t0 = now_ms();
    ret = hmaf_session_create(&p, &s);
    took = now_ms() - t0;
    printf("  (hmaf_session_create, 1500 ms, a signal at 100 ms: %s after "
           "%llu ms)\n",
           hmaf_err_name(ret), (unsigned long long)took);
    ASSERT_THAT("a signal does not cut a tcp connect short (timeout 1500 ms)",
                took >= 1400);
    hmaf_session_destroy(s);
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
    close(lfd);
}

/* --------------------------------- a dpu side that listens: who connects */

struct listening_dpu {
    char address[64];
    int ret;
};

static void *listen_for_host(void *arg)
{
    struct listening_dpu *l = arg;
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;

    hmaf_session_params_init(&p);
    p.address = l->address;
    p.token = TOKEN;
    p.listen = 1;
    p.connect_timeout_ms = 2000;
    l->ret = hmaf_session_create(&p, &s);
    hmaf_session_destroy(s);
    return NULL;
}

/* params.listen = 1: the first peer to connect gets the dpu side's HELLO,
 * token included, and the bootstrap is spent on it. */
static void group_listen_squatter(void)
{
    struct listening_dpu l;
    struct sockaddr_in in = {.sin_family = AF_INET};
    uint8_t msg[HMAF_MSG_MAX];
    struct hmaf_hello h;
    pthread_t th;
    int port, fd = -1, got = 0;

    review_step("a stranger connects to a listening dpu side first", 10000);
    /* a free port */
    {
        socklen_t sl = sizeof(in);
        int probe = socket(AF_INET, SOCK_STREAM, 0);
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(bind(probe, (struct sockaddr *)&in, sl) == 0 &&
              getsockname(probe, (struct sockaddr *)&in, &sl) == 0);
        port = ntohs(in.sin_port);
        close(probe);
    }
    snprintf(l.address, sizeof(l.address), "tcp:127.0.0.1:%d", port);
    CHECK(pthread_create(&th, NULL, listen_for_host, &l) == 0);
    for (int i = 0; i < 200 && fd < 0; i++) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&in, sizeof(in)) != 0) {
            close(fd);
            fd = -1;
            poll(NULL, 0, 5);
        }
    }
    CHECK(fd >= 0);
    {
        struct timeval tv = {.tv_sec = 2};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    /* cma's HELLO: a 4-byte blob */
    got = (int)recv(fd, msg, HMAF_HDR_SIZE + HMAF_HELLO_BODY_MIN + 4,
                    MSG_WAITALL);
    close(fd);
    pthread_join(th, NULL);
    if (got == HMAF_HDR_SIZE + HMAF_HELLO_BODY_MIN + 4 &&
        hmaf__hello_decode(msg + HMAF_HDR_SIZE, HMAF_HELLO_BODY_MIN + 4,
                           &h) == 0) {
        printf("  (the stranger read the dpu side's HELLO: token \"%.*s\")\n",
               (int)h.token_len, (const char *)h.token);
        ASSERT_THAT("a listening dpu side does not hand its token to whoever "
                    "connects first",
                    !(h.token_len == strlen(TOKEN) &&
                      memcmp(h.token, TOKEN, h.token_len) == 0));
    }
    printf("  (the listening hmaf_session_create returned %s)\n",
           hmaf_err_name(l.ret));
}

/* ------------------------------------------------------------------- main */

/* Groups run by default; `by_name` ones only when HMAF_REVIEW_ONLY names
 * them: listen_squatter shows a limitation session.h documents (a
 * listening dpu side sends its HELLO, token included, to whoever connects
 * first), so it fails until the handshake proves the token instead. */
static const struct {
    const char *name;
    review_group_fn fn;
    int by_name;
} groups[] = {
    {"pure", group_pure, 0},
    {"agent_params", group_agent_params, 0},
    {"agent_calls", group_agent_calls, 0},
    {"busy_listener", group_busy_listener, 0},
    {"timeouts_add_up", group_timeouts_add_up, 0},
    {"dial", group_dial, 0},
    {"session_params", group_session_params, 0},
    {"data", group_data, 0},
    {"requests", group_requests, 0},
    {"threads", group_threads, 0},
    {"chase", group_chase, 0},
    {"map", group_map, 0},
    {"host_killed", group_host_killed, 0},
    {"host_stopped", group_host_stopped, 0},
    {"dpu_killed", group_dpu_killed, 0},
    {"out_of_fds", group_out_of_fds, 0},
    {"threads_mailbox", group_threads_mailbox, 0},
    {"signal_during_connect", group_signal_during_connect, 0},
    {"listen_squatter", group_listen_squatter, 1},
};

int main(void)
{
    const char *only = getenv("HMAF_REVIEW_ONLY");
    int bad = 0;

    setenv("HMAF_LOG", "off", 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (only == NULL ? !groups[i].by_name
                         : strstr(groups[i].name, only) != NULL) {
            bad += review_run_group(groups[i].name, groups[i].fn);
        }
    }
    printf("api_abuse: %d group(s) with findings\n", bad);
    return bad == 0 ? 0 : 1;
}
