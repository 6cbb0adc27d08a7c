/*
 * The ucx engine's host against raw peers that hold its resources
 * (docs/engines.md, "ucx"): a session binds one connection, and once
 * that is gone no other; one that sends small requests and never takes
 * the answers holds no more of the host's memory than the bounce room
 * (each reply is counted in it, not only read data); the room a session
 * held comes back when it ends with replies unsent; more connections at
 * once than the host takes are refused, without UCX running out of room
 * for them (where UCX 1.13 closes a socket twice), those never bound are
 * closed, fds and all, and the host serves on.
 *
 * A forked child plays the host through the engine's ops; the parent
 * runs the raw ucp peers.
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ucx_raw.h"

#define PAGE     4096u
#define WATCHDOG 200
/* The host's read-only registration: room for READS reads of 4 MiB. */
#define READ_LEN (4u << 20)
#define READS    15
#define BIG_LEN  ((uint64_t)READS * READ_LEN)
/* Small requests a flooding peer sends, and what the host may hold for
 * them at most: its bounce room (UCX_BOUNCE_MAX), and some. Unbounded,
 * the host holds about 370 bytes a request: 530 MiB for these. */
#define FLOOD      1500000l
#define FLOOD_KIB  (320l << 10)
/* Connections peers open, between CONN_PEERS UCX workers (each has a
 * bound of its own): more than the host takes (UCX_MAX_CONNS). */
#define CONNS      1100
#define CONN_PEERS 4

struct host_info {
    uint64_t big;
    struct host_addr addr;
    struct ucx_blob big_blob;
};

static void run_host(const struct hmaf_engine_ops *ops, int cmd_fd,
                     int reply_fd)
{
    struct hmaf_engine_ctx *ctx;
    struct hmaf_engine_mem *mem;
    struct host_info info;
    uint8_t *p = aligned_alloc(PAGE, BIG_LEN);
    size_t n = 0;

    memset(&info, 0, sizeof(info));
    CHECK(p != NULL);
    memset(p, 0x5a, BIG_LEN);
    CHECK_OK(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx));
    CHECK_OK(hmaf__engine_mem_create(ctx, (uint64_t)(uintptr_t)p, BIG_LEN,
                                     HMAF_ACCESS_READ, &mem));
    CHECK_OK(ops->mem_export(mem, &info.big_blob, sizeof(info.big_blob), &n));
    info.big = (uint64_t)(uintptr_t)p;
    host_addr_get(ctx, &info.addr);
    io_full(reply_fd, &info, sizeof(info), 1);
    host_serve(ctx, cmd_fd, reply_fd, NULL, NULL);
}

struct host {
    struct host_link link;
    struct host_info info;
    char log_path[64]; /* what the host printed, UCX's logs with it */
};

/* The host, what it prints to a file of its own (host_said). */
static void start_logged_host(const struct hmaf_engine_ops *ops, struct host *h)
{
    int log_fd;

    snprintf(h->log_path, sizeof(h->log_path), "/tmp/ucx_limits.XXXXXX");
    log_fd = mkstemp(h->log_path);
    CHECK(log_fd >= 0);
    start_host(&h->link, ops, run_host, log_fd, &h->info, sizeof(h->info));
    close(log_fd);
}

/* The host's resident memory, in KiB. */
static long host_rss_kib(const struct host *h)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)h->link.pid);
    f = fopen(path, "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

/* The host's open fds. */
static int host_fds(const struct host *h)
{
    char path[64];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)h->link.pid);
    d = opendir(path);
    CHECK(d != NULL);
    while ((de = readdir(d)) != NULL) {
        n += de->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* r, connected and bound to a new session of the host's (*nonce). */
static void raw_bound(struct host *host, struct raw *r, uint64_t *nonce)
{
    raw_open(r, &host->info.addr);
    *nonce = random_nonce();
    host_session(&host->link, 'e', *nonce);
    CHECK_EQ(raw_hello(r, *nonce), UCX_ST_OK);
}

/* Sends h n times, ids 0.., and takes no answer: r is progressed only
 * while a send cannot go out at once. Paced, so that the host keeps up
 * and that is rare (each time r takes the answers that came meanwhile). */
static void raw_send_untaken(struct raw *r, struct ucx_req_hdr *h, long n)
{
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER};
    time_t deadline = time(NULL) + RAW_WAIT_S;

    for (long i = 0; i < n; i++) {
        ucs_status_ptr_t sp;

        h->id = (uint64_t)i;
        sp = ucp_am_send_nbx(r->ep, UCX_AM_REQUEST, h, sizeof(*h), NULL, 0,
                             &param);
        CHECK(!UCS_PTR_IS_ERR(sp));
        if (sp != NULL) {
            while (ucp_request_check_status(sp) == UCS_INPROGRESS) {
                ucp_worker_progress(r->worker);
                CHECK(time(NULL) < deadline);
            }
            ucp_request_free(sp);
        }
        if (i % 1000 == 999) {
            usleep(2000);
            deadline = time(NULL) + RAW_WAIT_S;
        }
    }
}

/* A session reads READS x 4 MiB at once, taking the answers only once
 * the host has made them all: the number served. With the shared bounce
 * room free they all are; with it full, only as many as its reserve
 * holds (UCX_RESERVE), the rest answered UCX_ST_NOMEM. */
static unsigned reads_served_at_once(struct host *host)
{
    struct raw r = {0};
    struct ucx_req_hdr h = {.key = host->info.big_blob.key,
                            .addr = host->info.big,
                            .len = READ_LEN,
                            .op = UCX_OP_READ};
    uint64_t nonce;
    unsigned ok;

    raw_bound(host, &r, &nonce);
    raw_count_anew(&r);
    raw_send_untaken(&r, &h, READS);
    sleep(1); /* the host serves them meanwhile */
    raw_await_replies(&r, READS);
    ok = r.by_status[UCX_ST_OK];
    CHECK_EQ(ok + r.by_status[UCX_ST_NOMEM], READS);
    raw_close(&r);
    host_session(&host->link, 'x', nonce);
    return ok;
}

/* A session sends small requests (of an unknown op: each answered
 * UCX_ST_PROTO) and takes no answer: the host holds no more for it than
 * its bounce room and some (each reply counted in it, UCX_REPLY_COST),
 * and serves another session meanwhile. */
static void flood_small(struct host *host)
{
    struct raw r = {0};
    struct ucx_req_hdr h = {.op = 9};
    uint64_t nonce;
    long before, grew;

    raw_bound(host, &r, &nonce);
    raw_count_anew(&r);
    before = host_rss_kib(host);
    raw_send_untaken(&r, &h, FLOOD);
    CHECK(r.replies < FLOOD / 2); /* the answers were not taken */
    CHECK_EQ(reads_served_at_once(host), READS);
    grew = host_rss_kib(host) - before;
    printf("ucx_limits: the host grew by %ld MiB for %ld untaken answers\n",
           grew >> 10, FLOOD - (long)r.replies);
    CHECK(grew < FLOOD_KIB);
    host_session(&host->link, 'x', nonce);
    raw_close(&r);
}

/* Rounds of a session that reads the whole registration and takes no
 * answer, then ends: the host drops the replies it held, and gives their
 * room back. Had it not, the rounds would fill the shared room twice
 * over, and a session's reads at once be refused but its reserve's. */
static void room_returns(struct host *host)
{
    for (int round = 0; round < 8; round++) {
        struct raw r = {0};
        struct ucx_req_hdr h = {.key = host->info.big_blob.key,
                                .addr = host->info.big,
                                .len = READ_LEN,
                                .op = UCX_OP_READ};
        uint64_t nonce;

        raw_bound(host, &r, &nonce);
        raw_send_untaken(&r, &h, READS);
        usleep(300000); /* the host serves them meanwhile, and holds them */
        host_session(&host->link, 'x', nonce);
        raw_close(&r);
    }
    CHECK_EQ(reads_served_at_once(host), READS);
}

/* A session's connection is its one: once it is gone (its peer closed
 * it), another that says the session's nonce is not bound to it. */
static void rebind_refused(struct host *host)
{
    struct raw a = {0}, b = {0};
    struct ucx_req_hdr h = {.id = 1,
                            .key = host->info.big_blob.key,
                            .addr = host->info.big,
                            .len = 8,
                            .op = UCX_OP_READ};
    uint64_t nonce;

    raw_bound(host, &a, &nonce);
    raw_close(&a);
    sleep(1); /* the host sees it fail, and closes its end */
    raw_open(&b, &host->info.addr);
    CHECK_EQ(raw_hello(&b, nonce), UCX_ST_NOKEY);
    CHECK_EQ(raw_call(&b, &h, NULL, 0), UCX_ST_NOKEY);
    raw_close(&b);
    host_session(&host->link, 'x', nonce);
}

/* Whether the host said "text" (UCX's warnings included). */
static int host_said(const struct host *h, const char *text)
{
    char line[512];
    int found = 0;
    FILE *f = fopen(h->log_path, "r");

    CHECK(f != NULL);
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = strstr(line, text) != NULL;
    }
    fclose(f);
    return found;
}

/* Peers open CONNS connections at once and bind none: UCX accepts them
 * all, with room for them (ucx_async_room: without it UCX closes a socket
 * twice); the host takes as many as it holds at once (UCX_MAX_CONNS) and
 * refuses the rest; it closes those it took once they stayed unbound
 * (UCX_BIND_WAIT_NS), fds and all, and serves on. Several peers: each
 * UCX worker has its own bound. */
static void many_conns(struct host *host)
{
    static ucp_ep_h eps[CONNS];
    struct raw r[CONN_PEERS] = {{0}};
    int fds = host_fds(host), taken = 0, failed = 0;
    time_t deadline;

    for (int p = 0; p < CONN_PEERS; p++) {
        raw_open(&r[p], &host->info.addr);
        taken += raw_wire_up(&r[p], r[p].ep);
    }
    for (int i = 0; i < CONNS; i++) { /* at once: UCX accepts them all */
        raw_connect(&r[i % CONN_PEERS], &host->info.addr, &eps[i]);
    }
    for (int i = 0; i < CONNS; i++) {
        taken += raw_wire_up(&r[i % CONN_PEERS], eps[i]);
    }
    printf("ucx_limits: %d of %d connections taken, the host has %d fds "
           "(%d before)\n", taken, CONNS + CONN_PEERS, host_fds(host), fds);
    CHECK(taken > CONNS / 2 && taken < CONNS); /* some refused */
    CHECK(!host_said(host, "failed to close fd"));
    deadline = time(NULL) + RAW_WAIT_S;
    while (failed < CONNS + CONN_PEERS) {
        failed = 0;
        for (int p = 0; p < CONN_PEERS; p++) {
            ucp_worker_progress(r[p].worker);
            failed += r[p].failed;
        }
        CHECK(time(NULL) < deadline);
    }
    for (int i = 0; i < CONNS; i++) {
        raw_ep_close(&r[i % CONN_PEERS], eps[i]);
    }
    for (int p = 0; p < CONN_PEERS; p++) {
        raw_close(&r[p]);
    }
    CHECK_EQ(reads_served_at_once(host), READS);
    CHECK(host_fds(host) <= fds + 2); /* none kept */
}

static void on_watchdog(int sig)
{
    static const char msg[] = "ucx_limits: timed out\n";

    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        _exit(1);
    }
    _exit(1);
}

/* Raises this process's fd limit (the host's too, forked after) to its
 * hard one: 1 when there is room for many_conns's sockets, two each on
 * either side. */
static int fds_for_conns(void)
{
    struct rlimit rl;

    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 4 * CONNS;
}

int main(void)
{
    const struct hmaf_engine_ops *ops = hmaf__engine_find("ucx");
    struct host host;
    int st, conns_fit;

    if (ops == NULL) {
        SKIP("engine ucx is not usable here");
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_watchdog);
    alarm(WATCHDOG);
    conns_fit = fds_for_conns();
    start_logged_host(ops, &host);
    CHECK_EQ(reads_served_at_once(&host), READS);
    rebind_refused(&host);
    flood_small(&host);
    room_returns(&host);
    if (conns_fit) {
        many_conns(&host);
    }
    CHECK_EQ(waitpid(host.link.pid, &st, WNOHANG), 0); /* alive */
    CHECK(kill(host.link.pid, SIGKILL) == 0);
    CHECK(waitpid(host.link.pid, &st, 0) == host.link.pid);
    unlink(host.log_path);
    if (!conns_fit) {
        SKIP("the fd limit leaves no room for %d connections; the rest "
             "passed", CONNS);
    }
    printf("ucx_limits: ok\n");
    return 0;
}
