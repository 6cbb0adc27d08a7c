/*
 * The host process hmaf-bench forks, and the parent's handle on it.
 *
 * The host holds "buf" (BUF_LEN bytes) and serves it four ways: an HMAF
 * agent that exposes it, a Unix-socket server thread that answers read and
 * write requests, UCX (the buffer ucp_mem_map'ed, its rkey and the worker's
 * address sent to the parent), and nothing at all for the raw
 * cross-memory-attach baseline. Ping pongs use a separate area, in the
 * tail after the buffer (same allocation, same exposure).
 *
 * Threads that spin (the raw pong thread, the UCX progress loop) run only
 * while the parent measures them, on its command: a spinning thread would
 * otherwise take the host's cpu from the agent and the socket server.
 *
 * With the doca engine the host also exports the buffer with plain DOCA
 * calls for the raw DOCA contenders (doca_raw.c), and publishes the
 * export record as root "doca-raw".
 *
 * For the scaling rows (scale.c) the forked host also holds an area of
 * many small regions, each exposed on its own, published as root
 * "regions".
 *
 * With --host-netns the forked host enters another network namespace
 * first: two machines on one, UCX (the engine's and the raw contender's)
 * crossing a veth pair over tcp. The pipe, the Unix sockets (the agent's
 * and the socket server's, bound to paths) and process_vm_readv still
 * reach it.
 *
 * Split mode (--serve, serve_main): the same host, standalone, for a dpu
 * side on another machine (--connect). Only what works across machines is
 * set up (the agent, the exports, the pong thread); commands arrive in a
 * word of the ping-pong area instead of a pipe. It serves one run and
 * succeeds only if the dpu side said the run was complete (CMD_DONE)
 * before it left; it gives up on a dpu side that is refused or does not
 * come.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define REPLY_OK    'K'
#define REPLY_READY 'R'
#define REPLY_FAIL  'F'

/* Split mode. A comch host dials a dpu side that may not listen yet:
 * it tries for this long. */
#define DIAL_WAIT_NS ((uint64_t)60 * 1000000000u)
#define DIAL_TRY_MS  2000
/* The standalone host looks at the command word this often, and whether
 * the run is over every SERVE_CHECK_TICKS looks. */
#define SERVE_TICK_NS     1000000
#define SERVE_CHECK_TICKS 100
/* A listening host waits this long for a dpu side, as long as a dpu side
 * waits for the host (SPLIT_WAIT_MS): a dpu side that never starts, or
 * dies before its handshake, must not leave the host waiting for ever. */
#define FIRST_SESSION_WAIT_NS ((uint64_t)60 * 1000000000u)
/* The dpu side waits this long for a command's acknowledgement, looking
 * every COMMAND_POLL_NS. */
#define COMMAND_WAIT_NS ((uint64_t)5 * 1000000000u)
#define COMMAND_POLL_NS 50000

/* A thread that calls poll() until told to stop. */
struct spinner {
    const char *name;
    int (*poll)(void *arg);
    void *arg;
    pthread_t thread;
    int running;
    _Atomic int stop;
};

struct host {
    hmaf_agent_t *agent;
    uint8_t *buf;               /* HOST_LEN: the buffer and its tail */
    uint8_t *regions;           /* the scaling rows' regions, or NULL */
    struct pingpong *pp;        /* in the tail */
    struct doca_raw_host *draw; /* NULL: no raw DOCA export */
    uint64_t pong_last;         /* last request echoed */
    struct spinner pong, ucx;
    struct sock_server *sock;
    struct ucx_host *ucxh; /* NULL: no UCX on this host */
    char ucx_error[128];
    int run_done; /* split mode: the dpu side said its run is complete */
};

/* Restrict the calling thread, and the threads it creates later, to cpu. */
int pin_to(int cpu)
{
    cpu_set_t set;

    if (cpu == NO_CPU) {
        return 0;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

/* ------------------------------------------------------------------ */
/* Host side (the forked child)                                        */
/* ------------------------------------------------------------------ */

static void *spinner_main(void *arg)
{
    struct spinner *sp = arg;

    /* No pause: each server answers as fast as it can. */
    while (!atomic_load_explicit(&sp->stop, memory_order_relaxed)) {
        if (sp->poll(sp->arg) < 0) {
            break;
        }
    }
    return NULL;
}

static int spinner_start(struct spinner *sp)
{
    if (sp->running) {
        return 0;
    }
    atomic_store(&sp->stop, 0);
    if (pthread_create(&sp->thread, NULL, spinner_main, sp) != 0) {
        return -1;
    }
    pthread_setname_np(sp->thread, sp->name);
    sp->running = 1;
    return 0;
}

static void spinner_stop(struct spinner *sp)
{
    if (sp->running) {
        atomic_store(&sp->stop, 1);
        pthread_join(sp->thread, NULL);
        sp->running = 0;
    }
}

/* Echo a new request. pong_last starts from the last echo, not from the
 * request: one written before the thread got going is still answered. */
static int pong_poll(void *arg)
{
    struct host *h = arg;
    uint64_t req = atomic_load_explicit(&h->pp->request, memory_order_acquire);

    if (req != h->pong_last) {
        atomic_store_explicit(&h->pp->reply, req, memory_order_release);
        h->pong_last = req;
    }
    return 0;
}

static int ucx_poll(void *arg)
{
    return ucx_host_progress(arg);
}

static int host_alloc(struct host *h)
{
    uint64_t starts[CHAINS_MAX], lasts[CHAINS_MAX];

    static_assert(sizeof(struct pingpong) <= DOCA_REC_OFF - PP_OFF,
                  "the ping-pong area fits its part of the tail");
    h->buf = aligned_alloc(4096, HOST_LEN);
    if (h->buf == NULL) {
        return HMAF_ENOMEM;
    }
    layout_fill(h->buf, (uint64_t)(uintptr_t)h->buf, starts, lasts);
    memset(h->buf + BUF_LEN, 0, TAIL_LEN);
    h->pp = (struct pingpong *)(void *)(h->buf + PP_OFF);
    atomic_init(&h->pp->request, 0);
    atomic_init(&h->pp->reply, 0);
    atomic_init(&h->pp->command, 0);
    atomic_init(&h->pp->ack, 0);
    h->pong = (struct spinner){.name = PONG_NAME, .poll = pong_poll, .arg = h};
    return 0;
}

/* With the doca engine: the buffer exported with plain DOCA calls, and
 * the record that lets the dpu side import it published as a root. The
 * record is published even when the export failed: it says why. */
static int doca_setup(struct host *h, const char *engine)
{
    uint8_t *rec = h->buf + DOCA_REC_OFF;

    if (engine == NULL || strcmp(engine, "doca") != 0) {
        return 0;
    }
    if (doca_raw_export(h->buf, HOST_LEN, rec, &h->draw) != 0) {
        fprintf(stderr, "hmaf-bench: no raw DOCA export (%s)\n",
                doca_raw_record_note(rec));
    }
    return hmaf_agent_publish(h->agent, "doca-raw", rec, DOCA_REC_LEN);
}

/* The agent, with everything exposed and published; listening at address
 * unless it is NULL (split mode: serve_attach). */
static int agent_setup(struct host *h, const char *address, const char *engine)
{
    hmaf_agent_params_t p;
    int ret;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.max_sessions = AGENT_SESSIONS;
    p.token = BENCH_TOKEN;
    /* cma unless --engine says otherwise; the raw baselines make cma's
     * syscalls either way. */
    p.engine = engine;
    ret = hmaf_agent_create(&p, &h->agent);
    /* One exposure over the buffer and its tail: the split mode's command
     * word is written through HMAF. */
    if (ret == 0) {
        ret = hmaf_agent_expose(h->agent, h->buf, HOST_LEN,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(h->agent, "buf", h->buf, BUF_LEN);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(h->agent, "pingpong", h->pp, sizeof(*h->pp));
    }
    if (ret == 0) {
        ret = doca_setup(h, engine);
    }
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: host agent: %s\n", hmaf_strerror(ret));
    }
    return ret;
}

/* The scaling rows' regions: n separate exposures, in ascending order
 * (each lands at the end of the agent's sorted list), and one root over
 * them all. */
static int regions_setup(struct host *h, unsigned n)
{
    int ret = 0;

    if (n == 0) {
        return 0;
    }
    /* aligned_alloc wants a size that is a multiple of the alignment */
    h->regions = aligned_alloc(4096, ((size_t)n * REGION_STRIDE + 4095) &
                                         ~(size_t)4095);
    if (h->regions == NULL) {
        return HMAF_ENOMEM;
    }
    layout_fill_regions(h->regions, n);
    for (unsigned i = 0; i < n && ret == 0; i++) {
        ret = hmaf_agent_expose(h->agent, h->regions + i * REGION_STRIDE,
                                REGION_LEN, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(h->agent, "regions", h->regions,
                                 (size_t)n * REGION_STRIDE);
    }
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: host regions: %s\n", hmaf_strerror(ret));
    }
    return ret;
}

static int host_setup(struct host *h, const struct child *c)
{
    int ret = host_alloc(h);

    if (ret == 0) {
        ret = agent_setup(h, c->address, c->engine);
    }
    if (ret == 0) {
        ret = regions_setup(h, c->regions);
    }
    if (ret == 0) {
        ret = sock_server_start(c->sock_path, h->buf, BUF_LEN, &h->sock);
    }
    /* UCX is optional: without it the parent reports why. */
    if (ret == 0 && ucx_host_start(h->buf, BUF_LEN, &h->ucxh, h->ucx_error,
                                   sizeof(h->ucx_error)) == 0) {
        h->ucx = (struct spinner){
            .name = UCX_NAME, .poll = ucx_poll, .arg = h->ucxh};
    }
    return ret;
}

static int write_blob(int fd, const void *p, size_t len)
{
    uint32_t n = (uint32_t)len;

    if (write(fd, &n, sizeof(n)) != sizeof(n)) {
        return -1;
    }
    return len == 0 || write(fd, p, len) == (ssize_t)len ? 0 : -1;
}

/* Tell the parent we are ready, with what it needs to reach UCX. */
static int host_ready(const struct host *h, int reply_fd)
{
    unsigned char ready = REPLY_READY;
    const void *addr = NULL, *rkey = NULL;
    size_t addr_len = 0, rkey_len = 0;

    if (h->ucxh != NULL) {
        ucx_host_blobs(h->ucxh, &addr, &addr_len, &rkey, &rkey_len);
    }
    if (write(reply_fd, &ready, 1) != 1 ||
        write_blob(reply_fd, addr, addr_len) < 0 ||
        write_blob(reply_fd, rkey, rkey_len) < 0) {
        return -1;
    }
    return write_blob(reply_fd, h->ucx_error, strlen(h->ucx_error));
}

static unsigned char host_obey(struct host *h, unsigned char cmd)
{
    switch (cmd) {
    case CMD_PONG_START:
        return spinner_start(&h->pong) == 0 ? REPLY_OK : REPLY_FAIL;
    case CMD_PONG_STOP:
        spinner_stop(&h->pong);
        return REPLY_OK;
    case CMD_UCX_START:
        return h->ucxh != NULL && spinner_start(&h->ucx) == 0 ? REPLY_OK
                                                              : REPLY_FAIL;
    case CMD_UCX_STOP:
        spinner_stop(&h->ucx);
        return REPLY_OK;
    case CMD_SOCK_SPIN:
    case CMD_SOCK_BLOCK:
        if (h->sock == NULL) {
            return REPLY_FAIL; /* split mode has no socket server */
        }
        sock_server_spin(h->sock, cmd == CMD_SOCK_SPIN);
        return REPLY_OK;
    case CMD_DONE:
        h->run_done = 1;
        return REPLY_OK;
    default:
        return REPLY_FAIL;
    }
}

static void host_serve(struct host *h, int cmd_fd, int reply_fd)
{
    unsigned char cmd, reply;

    /* EOF: the parent is done (or gone). */
    while (read(cmd_fd, &cmd, 1) == 1) {
        reply = host_obey(h, cmd);
        if (write(reply_fd, &reply, 1) != 1) {
            break;
        }
    }
}

/* The DOCA export goes last: the dpu side has released its imports by
 * now (it tears down before it leaves), and the agent is gone. */
static void host_teardown(struct host *h)
{
    spinner_stop(&h->pong);
    spinner_stop(&h->ucx);
    ucx_host_stop(h->ucxh);
    sock_server_stop(h->sock);
    hmaf_agent_destroy(h->agent);
    doca_raw_unexport(h->draw);
    free(h->buf);
    free(h->regions);
}

/* Into network namespace ns (a name under /run/netns, or a path), with
 * a sysfs of its own in a mount namespace of its own, as ip-netns-exec(8)
 * does: sysfs shows the devices of the namespace that mounted it, and UCX
 * looks for its network devices there. */
static int enter_netns(const char *ns)
{
    char path[256];
    int fd, ret;

    if (ns == NULL) {
        return 0;
    }
    snprintf(path, sizeof(path), "%s%s", strchr(ns, '/') ? "" : "/run/netns/",
             ns);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ret = fd >= 0 && setns(fd, CLONE_NEWNET) == 0 &&
                  unshare(CLONE_NEWNS) == 0 &&
                  mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) == 0 &&
                  umount2("/sys", MNT_DETACH) == 0 &&
                  mount("sysfs", "/sys", "sysfs", 0, NULL) == 0
              ? 0
              : -1;
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: host: network namespace %s: %s\n", path,
                strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return ret;
}

static _Noreturn void host_main(pid_t parent, const struct child *c, int cmd_fd,
                                int reply_fd)
{
    struct host h = {.agent = NULL};
    unsigned char fail = REPLY_FAIL;

    /* Never outlive the parent, even one that died before the prctl. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
        _exit(1);
    }
    /* Before any thread starts: they inherit the mask. */
    if (pin_to(c->cpu) != 0) {
        perror("hmaf-bench: host: sched_setaffinity");
    }
    if (enter_netns(c->netns) != 0 || host_setup(&h, c) != 0) {
        (void)!write(reply_fd, &fail, 1);
        _exit(1);
    }
    if (host_ready(&h, reply_fd) != 0) {
        _exit(1);
    }
    host_serve(&h, cmd_fd, reply_fd);
    host_teardown(&h);
    _exit(0);
}

/* ------------------------------------------------------------------ */
/* The parent's handle                                                 */
/* ------------------------------------------------------------------ */

static void child_cleanup(struct child *c)
{
    char path[192];

    close(c->cmd_fd);
    close(c->reply_fd);
    snprintf(path, sizeof(path), "%s/agent.sock", c->dir);
    unlink(path);
    unlink(c->sock_path);
    rmdir(c->dir);
    free(c->ucx_addr);
    free(c->ucx_rkey);
    c->ucx_addr = c->ucx_rkey = NULL;
}

/* Close the command pipe, reap the child; its exit status, or -1. */
int child_stop(struct child *c)
{
    int status = 0, reaped;

    close(c->cmd_fd);
    c->cmd_fd = -1;
    reaped = waitpid(c->pid, &status, 0) == c->pid;
    child_cleanup(c);
    return reaped && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void close_pipe(const int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

static int child_spawn(struct child *c)
{
    int to_child[2], to_parent[2];
    pid_t parent = getpid();

    if (pipe(to_child) != 0) {
        perror("hmaf-bench: pipe");
        return -1;
    }
    if (pipe(to_parent) != 0) {
        perror("hmaf-bench: pipe");
        close_pipe(to_child);
        return -1;
    }
    fflush(NULL); /* or the child would print our buffered output too */
    c->pid = fork();
    if (c->pid < 0) {
        perror("hmaf-bench: fork");
        close_pipe(to_child);
        close_pipe(to_parent);
        return -1;
    }
    if (c->pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        host_main(parent, c, to_child[0], to_parent[1]);
    }
    close(to_child[0]);
    close(to_parent[1]);
    c->cmd_fd = to_child[1];
    c->reply_fd = to_parent[0];
    return 0;
}

static int read_full(int fd, void *p, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, (char *)p + got, len - got);
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* A length-prefixed blob from the child; *p_out NULL when empty. */
static int read_blob(int fd, void **p_out, size_t *len_out)
{
    uint32_t n;

    *p_out = NULL;
    *len_out = 0;
    if (read_full(fd, &n, sizeof(n)) < 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    *p_out = calloc(1, (size_t)n + 1); /* NUL-terminated, for the text */
    if (*p_out == NULL || read_full(fd, *p_out, n) < 0) {
        return -1;
    }
    *len_out = n;
    return 0;
}

static int child_handshake(struct child *c)
{
    unsigned char ready = 0;
    void *err = NULL;
    size_t err_len;

    if (read(c->reply_fd, &ready, 1) != 1 || ready != REPLY_READY ||
        read_blob(c->reply_fd, &c->ucx_addr, &c->ucx_addr_len) < 0 ||
        read_blob(c->reply_fd, &c->ucx_rkey, &c->ucx_rkey_len) < 0 ||
        read_blob(c->reply_fd, &err, &err_len) < 0) {
        free(err);
        return -1;
    }
    snprintf(c->ucx_error, sizeof(c->ucx_error), "%s",
             err != NULL ? (char *)err : "");
    free(err);
    return 0;
}

/* Fork the host and wait until it serves. */
int child_start(struct child *c)
{
    snprintf(c->dir, sizeof(c->dir), "/tmp/hmaf-bench-XXXXXX");
    if (mkdtemp(c->dir) == NULL) {
        perror("hmaf-bench: mkdtemp");
        return -1;
    }
    snprintf(c->address, sizeof(c->address), "unix:%s/agent.sock", c->dir);
    snprintf(c->sock_path, sizeof(c->sock_path), "%s/server.sock", c->dir);
    if (child_spawn(c) != 0) {
        rmdir(c->dir);
        return -1;
    }
    if (child_handshake(c) != 0) {
        fprintf(stderr, "hmaf-bench: the host process failed to start\n");
        child_stop(c);
        return -1;
    }
    return 0;
}

int child_command(struct child *c, unsigned char cmd)
{
    unsigned char reply = 0;

    if (write(c->cmd_fd, &cmd, 1) != 1 || read(c->reply_fd, &reply, 1) != 1 ||
        reply != REPLY_OK) {
        fprintf(stderr, "hmaf-bench: host command '%c' failed\n", cmd);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Split mode                                                          */
/* ------------------------------------------------------------------ */

int is_comch(const char *address)
{
    return strncmp(address, "comch:", 6) == 0;
}

static void sleep_ns(long ns)
{
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = ns}, NULL);
}

/* Comch has fixed roles: the dpu side is the server, so the host dials,
 * and the dpu side may not be up yet. */
static int serve_dial(struct host *h, const char *address)
{
    uint64_t deadline = now_ns() + DIAL_WAIT_NS;
    int ret;

    for (;;) {
        ret = hmaf_agent_dial(h->agent, address, DIAL_TRY_MS);
        if (ret == 0 || now_ns() >= deadline ||
            (ret != HMAF_ECONNREFUSED && ret != HMAF_ETIMEDOUT)) {
            break;
        }
        sleep_ns(100 * 1000000); /* a refusal may come at once */
    }
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: dial %s: %s\n", address,
                hmaf_strerror(ret));
    }
    return ret;
}

static int serve_attach(struct host *h, const char *address)
{
    int ret;

    if (is_comch(address)) {
        return serve_dial(h, address);
    }
    ret = hmaf_agent_listen(h->agent, address);
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: listen %s: %s\n", address,
                hmaf_strerror(ret));
    }
    return ret;
}

enum run_state {
    RUN_GOING,  /* waiting for the dpu side, or serving it */
    RUN_OVER,   /* the dpu side came and has left */
    RUN_FAILED, /* no dpu side will come: said why */
};

/* Where the run stands, from the agent's counters. Before the first
 * session a refused handshake is the dpu side's, which has failed (wrong
 * engine, token, version): nothing else will come. */
static enum run_state run_state(hmaf_agent_t *agent, uint64_t deadline)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    if (hmaf_agent_stats(agent, &st) != 0) {
        return RUN_GOING;
    }
    if (st.sessions_total > 0) {
        return st.sessions_live == 0 ? RUN_OVER : RUN_GOING;
    }
    if (st.refused > 0) {
        fprintf(stderr, "hmaf-bench: refused the dpu side's handshake: %s\n",
                hmaf_strerror(st.last_refusal));
        return RUN_FAILED;
    }
    if (now_ns() >= deadline) {
        fprintf(stderr, "hmaf-bench: no dpu side came within %llu s\n",
                (unsigned long long)(FIRST_SESSION_WAIT_NS / 1000000000u));
        return RUN_FAILED;
    }
    return RUN_GOING;
}

/* Obey a new command in the command word; *seen is the last obeyed. */
static void obey_command_word(struct host *h, uint64_t *seen)
{
    uint64_t cmd = atomic_load_explicit(&h->pp->command, memory_order_acquire);

    if (cmd != *seen) {
        unsigned char reply = host_obey(h, (unsigned char)(cmd & 0xff));
        atomic_store_explicit(&h->pp->ack, (cmd & ~(uint64_t)0xff) | reply,
                              memory_order_release);
        *seen = cmd;
    }
}

/* Obey the command word until the run is over; 0 when the dpu side
 * finished its run (CMD_DONE) before it left. Sleeping between looks
 * costs a command up to a tick, which no measurement includes. */
static int serve_commands(struct host *h)
{
    uint64_t seen = 0, deadline = now_ns() + FIRST_SESSION_WAIT_NS;
    enum run_state state = RUN_GOING;

    for (unsigned tick = 0; state == RUN_GOING; tick++) {
        obey_command_word(h, &seen);
        if (tick % SERVE_CHECK_TICKS == 0) {
            state = run_state(h->agent, deadline);
        }
        if (state == RUN_GOING) {
            sleep_ns(SERVE_TICK_NS);
        }
    }
    if (state == RUN_FAILED) {
        return -1;
    }
    /* The dpu side waits for CMD_DONE's ack before it leaves: without it,
     * it crashed, was killed or gave up half way. */
    if (!h->run_done) {
        fprintf(stderr,
                "hmaf-bench: the dpu side left without finishing its run\n");
        return -1;
    }
    printf("hmaf-bench: the dpu side's run is over\n");
    return 0;
}

int serve_main(const char *address, const char *engine, int cpu)
{
    struct host h = {.agent = NULL};
    int ret;

    /* Before any thread starts: they inherit the mask. */
    if (pin_to(cpu) != 0) {
        perror("hmaf-bench: sched_setaffinity");
    }
    ret = host_alloc(&h);
    if (ret == 0) {
        ret = agent_setup(&h, NULL, engine);
    }
    if (ret == 0) {
        char where[32] = "not pinned";
        if (cpu != NO_CPU) {
            snprintf(where, sizeof(where), "on cpu %d", cpu);
        }
        printf("hmaf-bench: host of a split run, pid %d, engine %s, buffer "
               "at 0x%llx, %s;\n%s %s, for one run of hmaf-bench --connect\n",
               (int)getpid(), engine, (unsigned long long)(uintptr_t)h.buf,
               where, is_comch(address) ? "dialing" : "listening at", address);
        fflush(stdout);
        ret = serve_attach(&h, address);
    }
    if (ret == 0) {
        ret = serve_commands(&h);
    }
    host_teardown(&h);
    return ret;
}

/* The dpu side's half: write the command word, wait for its ack. */
static int remote_command(struct bench *b, unsigned char cmd)
{
    uint64_t word = (++b->host->cmd_seq << 8) | cmd, ack = 0;
    uint64_t deadline = now_ns() + COMMAND_WAIT_NS;
    uint64_t at = b->pp + offsetof(struct pingpong, command);
    int ret = hmaf_session_write(b->s, at, &word, sizeof(word));

    at = b->pp + offsetof(struct pingpong, ack);
    while (ret == 0 && (ack >> 8) != (word >> 8)) {
        if (now_ns() >= deadline) {
            ret = HMAF_ETIMEDOUT;
            break;
        }
        sleep_ns(COMMAND_POLL_NS);
        ret = hmaf_session_read(b->s, &ack, at, sizeof(ack));
    }
    if (ret == 0 && (ack & 0xff) == REPLY_OK) {
        return 0;
    }
    fprintf(stderr, "hmaf-bench: host command '%c' failed%s%s\n", cmd,
            ret < 0 ? ": " : "", ret < 0 ? hmaf_strerror(ret) : "");
    return -1;
}

int host_command(struct bench *b, unsigned char cmd)
{
    return b->split ? remote_command(b, cmd) : child_command(b->host, cmd);
}
