/* Channels: tcp and unix, either side listening, and address errors. The
 * agent runs in this process: cma reads our own memory just as well. */
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "util/clock.h"

static uint8_t memory[8192];

static hmaf_agent_t *start_agent(const char *address)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *agent;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = "t0ken";
    CHECK_OK(hmaf_agent_create(&p, &agent));
    CHECK_OK(hmaf_agent_expose(agent, memory, sizeof(memory),
                               HMAF_ACCESS_READ_WRITE));
    CHECK_OK(hmaf_agent_publish(agent, "mem", memory, sizeof(memory)));
    return agent;
}

static void use_session(hmaf_session_t *s)
{
    uint64_t addr;
    uint8_t v[100], back[100];

    CHECK_OK(hmaf_session_lookup(s, "mem", &addr, NULL));
    CHECK_EQ(addr, (uint64_t)(uintptr_t)memory);
    for (size_t i = 0; i < sizeof(v); i++) {
        v[i] = (uint8_t)(i * 7 + 1);
    }
    CHECK_OK(hmaf_session_write(s, addr + 4000, v, sizeof(v)));
    CHECK_OK(hmaf_session_read(s, back, addr + 4000, sizeof(back)));
    CHECK(memcmp(v, back, sizeof(v)) == 0);
    CHECK(memcmp(memory + 4000, v, sizeof(v)) == 0);
}

static void connect_and_use(const char *address)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = "t0ken";
    CHECK_OK(hmaf_session_create(&p, &s));
    use_session(s);
    hmaf_session_destroy(s);
}

static void check_agent_listens(void)
{
    hmaf_agent_t *agent = start_agent("tcp:127.0.0.1:0");
    const char *address = hmaf_agent_address(agent);

    CHECK(address != NULL && strncmp(address, "tcp:127.0.0.1:", 14) == 0);
    CHECK(strcmp(address, "tcp:127.0.0.1:0") != 0);
    connect_and_use(address);
    hmaf_agent_destroy(agent);
    agent = start_agent("unix:@hmaf-test-channel");
    connect_and_use("unix:@hmaf-test-channel");
    hmaf_agent_destroy(agent);
}

struct listening_dpu {
    const char *address;
    hmaf_session_t *s;
    int ret;
};

static void *dpu_listen(void *arg)
{
    struct listening_dpu *d = arg;
    hmaf_session_params_t p;

    hmaf_session_params_init(&p);
    p.address = d->address;
    p.token = "t0ken";
    p.listen = 1;
    d->ret = hmaf_session_create(&p, &d->s);
    return NULL;
}

/* The dpu side listens and the agent dials, as on DOCA Comm Channel. */
static void check_dpu_listens(const char *address)
{
    hmaf_agent_t *agent = start_agent(NULL);
    struct listening_dpu d = {.address = address};
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    pthread_t th;

    CHECK(hmaf_agent_address(agent) == NULL);
    CHECK(pthread_create(&th, NULL, dpu_listen, &d) == 0);
    CHECK_OK(hmaf_agent_dial(agent, address, 2000));
    pthread_join(th, NULL);
    CHECK_OK(d.ret);
    use_session(d.s);
    CHECK_OK(hmaf_agent_stats(agent, &st));
    CHECK_EQ(st.sessions_live, 1);
    hmaf_session_destroy(d.s);
    hmaf_agent_destroy(agent);
}

static void check_address_errors(void)
{
    hmaf_session_params_t p;
    hmaf_agent_params_t ap;
    hmaf_session_t *s;
    hmaf_agent_t *a, *b;

    hmaf_session_params_init(&p);
    p.connect_timeout_ms = 200;
    p.token = "t0ken";
    p.address = "carrier-pigeon:home";
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EADDRESS);
    p.address = "tcp:127.0.0.1";
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EADDRESS);
    p.address = "tcp:127.0.0.1:99999";
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EADDRESS);
    p.address = "unix:";
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EADDRESS);
    p.address = "unix:/nonexistent-dir/x.sock";
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_ECONNREFUSED);
    a = start_agent("tcp:127.0.0.1:0");
    hmaf_agent_params_init(&ap);
    ap.address = hmaf_agent_address(a);
    CHECK_ERR(hmaf_agent_create(&ap, &b), HMAF_EINVAL); /* tcp, no token */
    ap.token = "t0ken";
    CHECK_ERR(hmaf_agent_create(&ap, &b), HMAF_EADDRINUSE);
    hmaf_agent_destroy(a);
    CHECK_ERR(hmaf_agent_dial(NULL, "tcp:127.0.0.1:1", 100), HMAF_EINVAL);
}

/* Nobody listening is HMAF_ECONNREFUSED however short the timeout: the
 * answer of a try, never the clock alone. (A deadline that ran out
 * between the retry loop's look at the clock and the unix connect's own
 * was reported as HMAF_ETIMEDOUT, seen once in api_abuse under ASan; the
 * window is too narrow to hit here on purpose, so this is the contract's
 * check, not that bug's reproducer.) */
static void check_refused_at_the_deadline(void)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;

    hmaf_session_params_init(&p);
    p.token = "t0ken";
    for (int ms = 1; ms <= 3; ms++) {
        p.connect_timeout_ms = ms;
        for (int i = 0; i < 200; i++) {
            p.address = i % 2 ? "unix:/nonexistent-dir/x.sock"
                              : "tcp:127.0.0.1:1";
            CHECK_ERR(hmaf_session_create(&p, &s), HMAF_ECONNREFUSED);
        }
    }
}

/* Create, expose, then listen: the order a host wants. */
static void check_listen_later(void)
{
    hmaf_agent_t *agent = start_agent(NULL);

    CHECK(hmaf_agent_address(agent) == NULL);
    CHECK_ERR(hmaf_agent_listen(agent, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_listen(agent, "bogus"), HMAF_EADDRESS);
    CHECK_OK(hmaf_agent_listen(agent, "tcp:127.0.0.1:0"));
    CHECK_ERR(hmaf_agent_listen(agent, "tcp:127.0.0.1:0"), HMAF_EINVAL);
    connect_and_use(hmaf_agent_address(agent));
    hmaf_agent_destroy(agent);
}

/* The agent goes away while the host process lives on: the data path,
 * which never waits on the host, still learns it within a few ms. */
static void check_agent_gone(void)
{
    hmaf_agent_t *agent = start_agent("unix:@hmaf-test-agent-gone");
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint8_t v[16];
    int ret = 0;

    hmaf_session_params_init(&p);
    p.address = "unix:@hmaf-test-agent-gone";
    p.token = "t0ken";
    CHECK_OK(hmaf_session_create(&p, &s));
    CHECK_OK(hmaf_session_read(s, v, (uint64_t)(uintptr_t)memory, sizeof(v)));
    hmaf_agent_destroy(agent);
    for (int i = 0; i < 1000 && ret == 0; i++) {
        ret = hmaf_session_read(s, v, (uint64_t)(uintptr_t)memory, sizeof(v));
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK_ERR(ret, HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_ping(s), HMAF_ECONNRESET);
    hmaf_session_destroy(s);
}

/* More silent connections than the agent keeps waiting for a HELLO:
 * the oldest give way, so a real peer gets in at once, not after the
 * handshake timeout (5 s). */
static void check_silent_flood(void)
{
    const char *name = "hmaf-test-silent-flood";
    hmaf_agent_t *agent = start_agent("unix:@hmaf-test-silent-flood");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                strlen(name));
    int silent[100];
    uint64_t start;

    memcpy(sa.sun_path + 1, name, strlen(name)); /* abstract: leading NUL */
    for (int i = 0; i < 100; i++) {
        silent[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(silent[i] >= 0);
        CHECK(connect(silent[i], (struct sockaddr *)&sa, len) == 0);
    }
    nanosleep(&(struct timespec){0, 50000000}, NULL); /* all accepted */
    start = hmaf__now_ns();
    connect_and_use("unix:@hmaf-test-silent-flood");
    CHECK(hmaf__now_ns() - start < 2000000000ull);
    for (int i = 0; i < 100; i++) {
        close(silent[i]);
    }
    hmaf_agent_destroy(agent);
}

int main(void)
{
    check_agent_listens();
    check_listen_later();
    check_dpu_listens("unix:@hmaf-test-dpu-listens");
    check_dpu_listens("tcp:127.0.0.1:47219");
    check_address_errors();
    check_refused_at_the_deadline();
    check_agent_gone();
    check_silent_flood();
    printf("test_channel: ok\n");
    return 0;
}
