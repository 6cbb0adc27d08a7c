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
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#include "check.h"
#include "engine/engine.h"
#include "engine/ucx/ucx_wire.h"
#include "proto/handshake.h"

#define PAGE     4096u
#define WAIT_S   20
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
    uint32_t blob_len;
    uint8_t blob[HMAF_BLOB_MAX];
    struct ucx_blob big_blob;
};

static void io_full(int fd, void *p, size_t len, int out)
{
    uint8_t *at = p;

    while (len > 0) {
        ssize_t n = out ? write(fd, at, len) : read(fd, at, len);
        if (n <= 0) {
            _exit(2);
        }
        at += n;
        len -= (size_t)n;
    }
}

#define SESSIONS 64
static struct hmaf_engine_ep *sessions[SESSIONS];
static uint64_t session_nonce[SESSIONS];

static void host_command(struct hmaf_engine_ctx *ctx, int cmd_fd, int reply_fd)
{
    struct ucx_dpu_blob b = {.magic = UCX_DPU_MAGIC};
    uint8_t cmd, ok = 1;
    int i;

    io_full(cmd_fd, &cmd, 1, 0);
    io_full(cmd_fd, &b.nonce, sizeof(b.nonce), 0);
    for (i = 0; i < SESSIONS && (cmd == 'e' ? sessions[i] != NULL
                                            : session_nonce[i] != b.nonce);
         i++) {
    }
    CHECK(i < SESSIONS);
    if (cmd == 'e') {
        CHECK_OK(hmaf__engine_ep_create(ctx, 0, &b, sizeof(b), &sessions[i]));
        session_nonce[i] = b.nonce;
    } else {
        hmaf__engine_ep_destroy(sessions[i]);
        sessions[i] = NULL;
        session_nonce[i] = 0;
    }
    io_full(reply_fd, &ok, 1, 1);
}

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
    CHECK_OK(ops->local_blob(ctx, info.blob, sizeof(info.blob), &n));
    info.blob_len = (uint32_t)n;
    io_full(reply_fd, &info, sizeof(info), 1);
    for (;;) {
        struct pollfd pfd[2] = {{.fd = cmd_fd, .events = POLLIN},
                                {.fd = -1, .events = POLLIN}};
        int busy = ops->host_progress(ctx) > 0;
        int fd = -1;

        if (!busy && ops->wait_fd(ctx, &fd) == HMAF_EBUSY) {
            busy = 1;
        }
        pfd[1].fd = busy ? -1 : fd;
        if (poll(pfd, 2, busy ? 0 : 1000) < 0 && errno != EINTR) {
            _exit(2);
        }
        if (pfd[0].revents != 0) {
            host_command(ctx, cmd_fd, reply_fd);
        }
    }
}

struct host {
    pid_t pid;
    int cmd_fd, reply_fd;
    struct host_info info;
    char log_path[64]; /* what the host printed, UCX's logs with it */
};

static void start_host(const struct hmaf_engine_ops *ops, struct host *h)
{
    int to_child[2], to_parent[2], log_fd;

    snprintf(h->log_path, sizeof(h->log_path), "/tmp/ucx_limits.XXXXXX");
    log_fd = mkstemp(h->log_path);
    CHECK(log_fd >= 0);
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    h->pid = fork();
    CHECK(h->pid >= 0);
    if (h->pid == 0) {
        CHECK(dup2(log_fd, 1) == 1 && dup2(log_fd, 2) == 2);
        close(log_fd);
        close(to_child[1]);
        close(to_parent[0]);
        run_host(ops, to_child[0], to_parent[1]);
        _exit(2);
    }
    close(log_fd);
    close(to_child[0]);
    close(to_parent[1]);
    h->cmd_fd = to_child[1];
    h->reply_fd = to_parent[0];
    io_full(h->reply_fd, &h->info, sizeof(h->info), 0);
}

static void host_session(struct host *h, uint8_t cmd, uint64_t nonce)
{
    uint8_t ok = 0;

    io_full(h->cmd_fd, &cmd, 1, 1);
    io_full(h->cmd_fd, &nonce, sizeof(nonce), 1);
    io_full(h->reply_fd, &ok, 1, 0);
    CHECK_EQ(ok, 1);
}

/* The host's resident memory, in KiB. */
static long host_rss_kib(const struct host *h)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)h->pid);
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

/* A raw ucp peer: one worker, its first endpoint, and the replies it
 * took. */
struct raw {
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_ep_h ep;
    unsigned replies;
    unsigned by_status[UCX_ST_NOMEM + 1];
    uint32_t last;
    int failed; /* of the endpoints, how many the host closed */
};

static void raw_on_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    struct raw *r = arg;

    (void)ep;
    (void)status;
    r->failed++;
}

static ucs_status_t raw_on_reply(void *arg, const void *header,
                                 size_t header_len, void *data, size_t len,
                                 const ucp_am_recv_param_t *param)
{
    struct raw *r = arg;
    struct ucx_reply_hdr h;

    (void)data;
    (void)len;
    (void)param;
    CHECK_EQ(header_len, sizeof(h));
    memcpy(&h, header, sizeof(h));
    CHECK(h.status <= UCX_ST_NOMEM);
    r->replies++;
    r->by_status[h.status]++;
    r->last = h.status;
    return UCS_OK;
}

/* A new endpoint of r's worker to the host's first address. */
static void raw_connect(struct raw *r, const struct host_info *info,
                        ucp_ep_h *ep)
{
    struct ucx_conn_blob h;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    ucp_ep_params_t eparams = {
        .field_mask = UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_FLAGS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .sockaddr = {.addr = (const struct sockaddr *)&sa,
                     .addrlen = sizeof(sa)},
        .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = raw_on_error, .arg = r},
    };

    memcpy(&h, info->blob, sizeof(h));
    sa.sin_port = h.port;
    memcpy(&sa.sin_addr, info->blob + sizeof(h), 4);
    CHECK(ucp_ep_create(r->worker, &eparams, ep) == UCS_OK);
}

static void raw_open(struct raw *r, const struct host_info *info)
{
    ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                           .features = UCP_FEATURE_AM};
    ucp_worker_params_t wparams = {0};
    ucp_am_handler_param_t am = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                      UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = UCX_AM_REPLY,
        .cb = raw_on_reply,
        .arg = r,
    };
    ucp_config_t *config = NULL;

    /* Connected as the engine's dpu side is (ucx_config). */
    CHECK(ucp_config_read(NULL, NULL, &config) == UCS_OK);
    (void)ucp_config_modify(config, "CM_USE_ALL_DEVICES", "n");
    (void)ucp_config_modify(config, "SOCKADDR_TLS_PRIORITY", "tcp");
    (void)ucp_config_modify(config, "KEEPALIVE_INTERVAL", "500ms");
    CHECK(ucp_init(&params, config, &r->context) == UCS_OK);
    ucp_config_release(config);
    CHECK(ucp_worker_create(r->context, &wparams, &r->worker) == UCS_OK);
    CHECK(ucp_worker_set_am_recv_handler(r->worker, &am) == UCS_OK);
    raw_connect(r, info, &r->ep);
}

/* Progresses r until ep is connected (its flush completes), or has
 * failed: 1 when connected. */
static int raw_wire_up(struct raw *r, ucp_ep_h ep)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t sp = ucp_ep_flush_nbx(ep, &param);
    time_t deadline = time(NULL) + WAIT_S;
    ucs_status_t st;

    if (!UCS_PTR_IS_PTR(sp)) {
        return UCS_PTR_STATUS(sp) == UCS_OK;
    }
    while ((st = ucp_request_check_status(sp)) == UCS_INPROGRESS) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    ucp_request_free(sp);
    return st == UCS_OK;
}

static void raw_ep_close(struct raw *r, ucp_ep_h ep)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t sp = ucp_ep_close_nbx(ep, &param);
    time_t deadline = time(NULL) + WAIT_S;

    while (UCS_PTR_IS_PTR(sp) &&
           ucp_request_check_status(sp) == UCS_INPROGRESS) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    if (UCS_PTR_IS_PTR(sp)) {
        ucp_request_free(sp);
    }
}

static void raw_close(struct raw *r)
{
    raw_ep_close(r, r->ep);
    ucp_worker_destroy(r->worker);
    ucp_cleanup(r->context);
}

static void raw_send(struct raw *r, const void *hdr, size_t hdr_len,
                     const void *data, size_t len, uint32_t flags)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = flags};
    ucs_status_ptr_t sp =
        ucp_am_send_nbx(r->ep, UCX_AM_REQUEST, hdr, hdr_len, data, len, &param);
    time_t deadline = time(NULL) + WAIT_S;

    CHECK(!UCS_PTR_IS_ERR(sp));
    while (sp != NULL && ucp_request_check_status(sp) == UCS_INPROGRESS) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    if (sp != NULL) {
        ucp_request_free(sp);
    }
}

static uint32_t raw_call(struct raw *r, const struct ucx_req_hdr *h)
{
    unsigned seen = r->replies;
    time_t deadline = time(NULL) + WAIT_S;

    raw_send(r, h, sizeof(*h), NULL, 0, UCP_AM_SEND_FLAG_REPLY);
    while (r->replies == seen) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
    }
    return r->last;
}

static uint64_t random_nonce(void)
{
    static uint64_t next = 0x9e3779b97f4a7c15ull;

    next = next * 6364136223846793005ull + (uint64_t)getpid();
    return next | 1;
}

/* The host's open fds. */
static int host_fds(const struct host *h)
{
    char path[64];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)h->pid);
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
    struct ucx_req_hdr h = {.id = 1, .op = UCX_OP_HELLO};

    raw_open(r, &host->info);
    *nonce = random_nonce();
    host_session(host, 'e', *nonce);
    h.key = *nonce;
    CHECK_EQ(raw_call(r, &h), UCX_ST_OK);
}

/* Sends h n times, ids 0.., and takes no answer: r is progressed only
 * while a send cannot go out at once. Paced, so that the host keeps up
 * and that is rare (each time r takes the answers that came meanwhile). */
static void raw_send_untaken(struct raw *r, struct ucx_req_hdr *h, long n)
{
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER};
    time_t deadline = time(NULL) + WAIT_S;

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
            deadline = time(NULL) + WAIT_S;
        }
    }
}

/* Progresses r until it has n replies. */
static void raw_await_replies(struct raw *r, unsigned n)
{
    time_t deadline = time(NULL) + WAIT_S;

    while (r->replies < n) {
        ucp_worker_progress(r->worker);
        CHECK(time(NULL) < deadline);
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
    r.replies = 0;
    memset(r.by_status, 0, sizeof(r.by_status));
    raw_send_untaken(&r, &h, READS);
    sleep(1); /* the host serves them meanwhile */
    raw_await_replies(&r, READS);
    ok = r.by_status[UCX_ST_OK];
    CHECK_EQ(ok + r.by_status[UCX_ST_NOMEM], READS);
    raw_close(&r);
    host_session(host, 'x', nonce);
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
    r.replies = 0;
    before = host_rss_kib(host);
    raw_send_untaken(&r, &h, FLOOD);
    CHECK(r.replies < FLOOD / 2); /* the answers were not taken */
    CHECK_EQ(reads_served_at_once(host), READS);
    grew = host_rss_kib(host) - before;
    printf("ucx_limits: the host grew by %ld MiB for %ld untaken answers\n",
           grew >> 10, FLOOD - (long)r.replies);
    CHECK(grew < FLOOD_KIB);
    host_session(host, 'x', nonce);
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
        host_session(host, 'x', nonce);
        raw_close(&r);
    }
    CHECK_EQ(reads_served_at_once(host), READS);
}

/* A session's connection is its one: once it is gone (its peer closed
 * it), another that says the session's nonce is not bound to it. */
static void rebind_refused(struct host *host)
{
    struct raw a = {0}, b = {0};
    struct ucx_req_hdr h = {.id = 1, .op = UCX_OP_HELLO};
    uint64_t nonce;

    raw_bound(host, &a, &nonce);
    raw_close(&a);
    sleep(1); /* the host sees it fail, and closes its end */
    raw_open(&b, &host->info);
    h.key = nonce;
    CHECK_EQ(raw_call(&b, &h), UCX_ST_NOKEY);
    h.op = UCX_OP_READ;
    h.key = host->info.big_blob.key;
    h.addr = host->info.big;
    h.len = 8;
    CHECK_EQ(raw_call(&b, &h), UCX_ST_NOKEY);
    raw_close(&b);
    host_session(host, 'x', nonce);
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
        raw_open(&r[p], &host->info);
        taken += raw_wire_up(&r[p], r[p].ep);
    }
    for (int i = 0; i < CONNS; i++) { /* at once: UCX accepts them all */
        raw_connect(&r[i % CONN_PEERS], &host->info, &eps[i]);
    }
    for (int i = 0; i < CONNS; i++) {
        taken += raw_wire_up(&r[i % CONN_PEERS], eps[i]);
    }
    printf("ucx_limits: %d of %d connections taken, the host has %d fds "
           "(%d before)\n", taken, CONNS + CONN_PEERS, host_fds(host), fds);
    CHECK(taken > CONNS / 2 && taken < CONNS); /* some refused */
    CHECK(!host_said(host, "failed to close fd"));
    deadline = time(NULL) + WAIT_S;
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
    start_host(ops, &host);
    CHECK_EQ(reads_served_at_once(&host), READS);
    rebind_refused(&host);
    flood_small(&host);
    room_returns(&host);
    if (conns_fit) {
        many_conns(&host);
    }
    CHECK_EQ(waitpid(host.pid, &st, WNOHANG), 0); /* alive */
    CHECK(kill(host.pid, SIGKILL) == 0);
    CHECK(waitpid(host.pid, &st, 0) == host.pid);
    unlink(host.log_path);
    if (!conns_fit) {
        SKIP("the fd limit leaves no room for %d connections; the rest "
             "passed", CONNS);
    }
    printf("ucx_limits: ok\n");
    return 0;
}
