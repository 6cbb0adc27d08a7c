#include "target.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "netns.h"

void target_fill(void *buf, size_t len, uint64_t first, unsigned salt)
{
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++) {
        p[i] = target_pattern(first + i, salt);
    }
}

size_t target_mismatch(const void *buf, size_t len, uint64_t first,
                       unsigned salt)
{
    const uint8_t *p = buf;

    for (size_t i = 0; i < len; i++) {
        if (p[i] != target_pattern(first + i, salt)) {
            return i;
        }
    }
    return len;
}

int target_expose_pieces(hmaf_agent_t *agent, const char *root, size_t n,
                         size_t piece, uint8_t **mem_out)
{
    uint8_t *mem = aligned_alloc(piece, n * piece);
    int ret = 0;

    if (mem == NULL) {
        return HMAF_ENOMEM;
    }
    *mem_out = mem;
    target_fill(mem, n * piece, 0, 1);
    for (size_t i = 0; i < n && ret == 0; i++) {
        ret = hmaf_agent_expose(agent, mem + i * piece, piece,
                                HMAF_ACCESS_READ_WRITE);
    }
    return ret != 0 ? ret : hmaf_agent_publish(agent, root, mem, n * piece);
}

int target_stats_command(hmaf_agent_t *agent, int cmd, void *arg)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    (void)arg;
    if (hmaf_agent_stats(agent, &st) != 0) {
        return 255;
    }
    switch (cmd) {
    case 'g':
        return (int)(st.registrations & 0xff);
    case 's':
        return (int)st.sessions_live;
    default:
        return 255;
    }
}

uint64_t target_root(hmaf_session_t *s, const char *name)
{
    uint64_t addr = 0;

    CHECK_OK(hmaf_session_lookup(s, name, &addr, NULL));
    return addr;
}

int target_read_random(hmaf_session_t *s, uint64_t base, uint64_t span,
                       unsigned salt, uint64_t *state)
{
    uint64_t x = *state, off;
    uint8_t buf[64];
    int ret;

    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    *state = x;
    off = x % (span - sizeof(buf));
    ret = hmaf_session_read(s, buf, base + off, sizeof(buf));
    if (ret == 0 && target_mismatch(buf, sizeof(buf), off, salt) !=
                        sizeof(buf)) {
        fprintf(stderr, "read at +%llu: wrong bytes\n",
                (unsigned long long)off);
        return 1;
    }
    return ret;
}

/* Wait for the parent's next command; an agent without its own thread is
 * driven from here meanwhile, as an application's event loop would. */
static int next_command(hmaf_agent_t *agent, int threaded, int cmd_fd,
                        unsigned char *cmd)
{
    struct pollfd p = {.fd = cmd_fd, .events = POLLIN};

    while (!threaded && poll(&p, 1, 0) == 0) {
        if (hmaf_agent_poll(agent, 1) < 0) {
            return 0;
        }
    }
    return read(cmd_fd, cmd, 1) == 1;
}

static void child_main(struct target *t, const struct target_options *opts,
                       int cmd_fd, int reply_fd)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *agent;
    unsigned char cmd;
    int ret;

    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
    netns_enter_host();
    hmaf_agent_params_init(&p);
    p.address = t->address;
    p.token = TARGET_TOKEN;
    p.engine = opts->engine;
    p.threaded = opts->agent_threaded != -1;
    if (opts->revoke_wait_ms > 0) {
        p.revoke_wait_ms = opts->revoke_wait_ms;
    }
    if (opts->mailbox_slots > 0) {
        p.mailbox_slots = opts->mailbox_slots;
    }
    ret = hmaf_agent_create(&p, &agent);
    if (ret == 0 && opts->setup != NULL) {
        ret = opts->setup(agent, opts->arg);
    }
    cmd = ret == 0 ? 'R' : 'F';
    if (write(reply_fd, &cmd, 1) != 1 || ret != 0) {
        _exit(3);
    }
    if (netns_host_address() != NULL) {
        /* Listening at port 0: the parent learns the real one. */
        char bound[sizeof(t->address)] = {0};
        snprintf(bound, sizeof(bound), "%s", hmaf_agent_address(agent));
        if (write(reply_fd, bound, sizeof(bound)) != (ssize_t)sizeof(bound)) {
            _exit(3);
        }
    }
    while (next_command(agent, p.threaded, cmd_fd, &cmd)) {
        unsigned char reply = (unsigned char)(opts->command != NULL
                                                  ? opts->command(agent, cmd,
                                                                  opts->arg)
                                                  : 0);
        if (write(reply_fd, &reply, 1) != 1) {
            break;
        }
    }
    hmaf_agent_destroy(agent);
    exit(0); /* not _exit: let the leak checkers look at the agent */
}

void target_start(struct target *t, const struct target_options *opts)
{
    int to_child[2], to_parent[2];
    unsigned char ready = 0;

    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/hmaf-test-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    snprintf(t->address, sizeof(t->address), "unix:%s/agent.sock", t->dir);
    if (netns_host_address() != NULL) {
        snprintf(t->address, sizeof(t->address), "%s:0",
                 netns_host_address());
    }
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    fflush(NULL);
    t->pid = fork();
    CHECK(t->pid >= 0);
    if (t->pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        child_main(t, opts, to_child[0], to_parent[1]);
    }
    close(to_child[0]);
    close(to_parent[1]);
    t->cmd_fd = to_child[1];
    t->reply_fd = to_parent[0];
    CHECK(read(t->reply_fd, &ready, 1) == 1 && ready == 'R');
    if (netns_host_address() != NULL) {
        CHECK(read(t->reply_fd, t->address, sizeof(t->address)) ==
              (ssize_t)sizeof(t->address));
        t->address[sizeof(t->address) - 1] = '\0';
    }
}

int target_command(struct target *t, int cmd)
{
    unsigned char c = (unsigned char)cmd, reply = 0;

    CHECK(write(t->cmd_fd, &c, 1) == 1);
    CHECK(read(t->reply_fd, &reply, 1) == 1);
    return reply;
}

static void target_cleanup(struct target *t)
{
    char path[160];

    close(t->cmd_fd);
    close(t->reply_fd);
    snprintf(path, sizeof(path), "%s/agent.sock", t->dir);
    unlink(path);
    rmdir(t->dir);
}

int target_stop(struct target *t)
{
    int status = 0;

    close(t->cmd_fd);
    t->cmd_fd = -1;
    CHECK(waitpid(t->pid, &status, 0) == t->pid);
    target_cleanup(t);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void target_kill(struct target *t)
{
    kill(t->pid, SIGKILL);
    waitpid(t->pid, NULL, 0);
    target_cleanup(t);
}

struct dpu_child dpu_child_fork(void (*fn)(void *), void *arg)
{
    struct dpu_child c;
    int go[2];
    char byte;

    CHECK(pipe(go) == 0);
    c.pid = fork();
    CHECK(c.pid >= 0);
    if (c.pid == 0) {
        close(go[1]);
        if (read(go[0], &byte, 1) != 1) {
            _exit(1); /* the test ended without starting it */
        }
        close(go[0]);
        fn(arg);
        _exit(0);
    }
    close(go[0]);
    c.go = go[1];
    return c;
}

void dpu_child_start(struct dpu_child *c)
{
    CHECK(c->go >= 0);
    CHECK(write(c->go, "g", 1) == 1);
    close(c->go);
    c->go = -1;
}

uint64_t target_threads_ms(int n, void *(*fn)(void *), void *arg)
{
    pthread_t th[64];
    struct timespec a, b;

    CHECK(n > 0 && n <= 64);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(pthread_create(&th[i], NULL, fn, arg), 0);
    }
    for (int i = 0; i < n; i++) {
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (uint64_t)(b.tv_sec - a.tv_sec) * 1000u +
           (uint64_t)((b.tv_nsec - a.tv_nsec) / 1000000);
}

void target_pause(struct target *t)
{
    int status;

    CHECK_EQ(kill(t->pid, SIGSTOP), 0);
    CHECK_EQ(waitpid(t->pid, &status, WUNTRACED), t->pid);
    CHECK(WIFSTOPPED(status));
}

void target_session_params(const struct target *t, hmaf_session_params_t *p)
{
    hmaf_session_params_init(p);
    p->address = t->address;
    p->token = TARGET_TOKEN;
}

hmaf_session_t *target_connect(const struct target *t)
{
    hmaf_session_params_t p;

    target_session_params(t, &p);
    return target_connect_params(&p);
}

hmaf_session_t *target_connect_params(const hmaf_session_params_t *p)
{
    hmaf_session_t *s = NULL;
    int ret = hmaf_session_create(p, &s);

    if (ret == 0) {
        ret = hmaf_session_ping(s);
    }
    if (ret == HMAF_EPERM) {
        SKIP("ptrace access to the host process is not permitted here");
    }
    CHECK_OK(ret);
    return s;
}

struct standard_host {
    uint8_t *buf;
    uint8_t *ro;
    uint8_t *hole;
};

static struct standard_host std_host;

static int standard_setup(hmaf_agent_t *agent, void *arg)
{
    struct standard_host *h = arg;
    int ret;

    h->buf = malloc(STD_BUF_LEN);
    h->ro = malloc(STD_RO_LEN);
    h->hole = malloc(STD_RO_LEN);
    if (h->buf == NULL || h->ro == NULL || h->hole == NULL) {
        return HMAF_ENOMEM;
    }
    target_fill(h->buf, STD_BUF_LEN, 0, 1);
    target_fill(h->ro, STD_RO_LEN, 0, 3);
    target_fill(h->hole, STD_RO_LEN, 0, 4);
    ret = hmaf_agent_expose(agent, h->buf, STD_SPLIT, HMAF_ACCESS_READ_WRITE);
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->buf + STD_SPLIT,
                                STD_BUF_LEN - STD_SPLIT,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->ro, STD_RO_LEN, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "buf", h->buf, STD_BUF_LEN);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "ro", h->ro, STD_RO_LEN);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "hole", h->hole, STD_RO_LEN);
    }
    return ret;
}

static int holds_pattern(const uint8_t *p, size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != target_pattern(i, salt)) {
            fprintf(stderr, "host: byte %zu is %u, want %u\n", i, p[i],
                    target_pattern(i, salt));
            return 0;
        }
    }
    return 1;
}

static int refusal_for(int cmd)
{
    switch (cmd) {
    case 'A':
        return HMAF_EAUTH;
    case 'V':
        return HMAF_EVERSION;
    case 'P':
        return HMAF_EPROTO;
    case 'N':
        return HMAF_EPIDNS;
    default:
        return HMAF_EENGINE;
    }
}

static int standard_command(hmaf_agent_t *agent, int cmd, void *arg)
{
    struct standard_host *h = arg;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    switch (cmd) {
    case 'v':
        return holds_pattern(h->buf, STD_BUF_LEN, 2);
    case 'r':
        return hmaf_agent_revoke(agent, h->buf + STD_SPLIT,
                                 STD_BUF_LEN - STD_SPLIT) == 0;
    case 's':
        hmaf_agent_stats(agent, &st);
        return (int)st.sessions_live;
    case 'b':
        hmaf_agent_stats(agent, &st);
        return st.bad_requests > 254 ? 254 : (int)st.bad_requests;
    case 'A':
    case 'V':
    case 'P':
    case 'E':
    case 'N':
        hmaf_agent_stats(agent, &st);
        return st.last_refusal == refusal_for(cmd);
    default:
        return 255;
    }
}

void target_start_standard(struct target *t)
{
    target_start_standard_mode(t, 1);
}

void target_start_standard_mode(struct target *t, int threaded)
{
    target_start_standard_wait(t, threaded, 0);
}

void target_start_standard_wait(struct target *t, int threaded,
                                int revoke_wait_ms)
{
    struct target_options opts = {
        .setup = standard_setup,
        .command = standard_command,
        .arg = &std_host,
        .agent_threaded = threaded ? 1 : -1,
        .revoke_wait_ms = revoke_wait_ms,
    };

    target_start(t, &opts);
}
