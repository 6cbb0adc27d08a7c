/*
 * Setting the ucx engine up: the host listener's port, and fork.
 *
 * HMAF_UCX_PORT (docs/configuration.md) pins the port of the host's UCX
 * listener, which its bootstrap blob names; a value that is not a port is
 * HMAF_EINVAL, and a port another agent holds is refused.
 *
 * Fork (docs/engines.md, "ucx", fork): a process forked
 * while one of the engine's UCX workers lived cannot run UCX (the
 * connection thread stays behind in the parent), so there every ctx_open
 * fails at once with HMAF_ENOTSUP, for either role, instead of hanging in
 * its connect. A process forked when none lived — before the first, or
 * after the last ended — connects and moves bytes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hmaf/hmaf.h>

#include "check.h"
#include "engine/engine.h"
#include "engine/ucx/ucx_wire.h"
#include "proto/handshake.h"

#define WATCHDOG_S 60

static const struct hmaf_engine_ops *ops;

/* The host's ctx, progressed by a thread of its own while this one
 * connects as the dpu side. */
struct host_loop {
    struct hmaf_engine_ctx *ctx;
    _Atomic int stop;
};

static void *host_main(void *arg)
{
    struct host_loop *h = arg;

    while (!atomic_load(&h->stop)) {
        if (ops->host_progress(h->ctx) == 0) {
            usleep(100);
        }
    }
    return NULL;
}

/* Host and dpu side in this process: one read through the engine. */
static void connect_and_read(void)
{
    static char src[4096] = "forked after the last worker ended";
    char dst[sizeof(src)] = {0};
    uint8_t host_blob[HMAF_BLOB_MAX], dpu_blob[HMAF_BLOB_MAX], export[256];
    size_t host_len = 0, dpu_len = 0, export_len = 0;
    struct host_loop h = {0};
    struct hmaf_engine_ctx *dpu;
    struct hmaf_engine_ep *hep, *dep;
    struct hmaf_engine_mem *mem;
    struct hmaf_engine_rmem *rmem;
    pthread_t th;

    CHECK_OK(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &h.ctx));
    CHECK_OK(hmaf__engine_ctx_create(ops, HMAF_ROLE_DPU, &dpu));
    CHECK_OK(ops->local_blob(h.ctx, host_blob, sizeof(host_blob), &host_len));
    CHECK_OK(ops->local_blob(dpu, dpu_blob, sizeof(dpu_blob), &dpu_len));
    CHECK_OK(hmaf__engine_mem_create(h.ctx, (uint64_t)(uintptr_t)src,
                                     sizeof(src), HMAF_ACCESS_READ, &mem));
    CHECK_OK(ops->mem_export(mem, export, sizeof(export), &export_len));
    CHECK_OK(hmaf__engine_ep_create(h.ctx, 0, dpu_blob, dpu_len, &hep));
    CHECK_EQ(pthread_create(&th, NULL, host_main, &h), 0);
    CHECK_OK(hmaf__engine_ep_create(dpu, 0, host_blob, host_len, &dep));
    CHECK_OK(hmaf__engine_rmem_create(dep, (uint64_t)(uintptr_t)src,
                                      sizeof(src), HMAF_ACCESS_READ, export,
                                      export_len, &rmem));
    {
        struct hmaf_xfer x = {rmem, dst, (uint64_t)(uintptr_t)src,
                              sizeof(dst)};
        struct hmaf_xfer_batch b = {
            .op = HMAF_XFER_READ, .xfers = &x, .count = 1};
        CHECK_OK(hmaf__engine_run(dep, &b));
    }
    CHECK(memcmp(dst, src, sizeof(src)) == 0);
    hmaf__engine_rmem_destroy(rmem);
    hmaf__engine_ep_destroy(dep);
    hmaf__engine_ctx_destroy(dpu);
    atomic_store(&h.stop, 1);
    CHECK_EQ(pthread_join(th, NULL), 0);
    hmaf__engine_ep_destroy(hep);
    hmaf__engine_mem_destroy(mem);
    hmaf__engine_ctx_destroy(h.ctx);
}

/* Neither role opens in a child forked beside a live worker, and the
 * public calls say so (session.h, host.h), before any connection. */
static void refused(void)
{
    struct hmaf_engine_ctx *ctx = NULL;
    hmaf_session_params_t sp;
    hmaf_agent_params_t ap;
    hmaf_session_t *s = NULL;
    hmaf_agent_t *a = NULL;

    CHECK_ERR(hmaf__engine_ctx_create(ops, HMAF_ROLE_DPU, &ctx),
              HMAF_ENOTSUP);
    CHECK_ERR(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx),
              HMAF_ENOTSUP);
    CHECK(ctx == NULL);
    hmaf_session_params_init(&sp);
    sp.engine = "ucx";
    sp.address = "unix:/nonexistent/hmaf-ucx-fork";
    sp.token = "t";
    CHECK_ERR(hmaf_session_create(&sp, &s), HMAF_ENOTSUP);
    CHECK(s == NULL);
    hmaf_agent_params_init(&ap);
    ap.engine = "ucx";
    CHECK_ERR(hmaf_agent_create(&ap, &a), HMAF_ENOTSUP);
    CHECK(a == NULL);
}

/* A tcp port nobody listens on now (the kernel's pick, let go). */
static uint16_t free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    CHECK(fd >= 0);
    CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void port_pinned(void)
{
    struct hmaf_engine_ctx *ctx = NULL, *other = NULL;
    struct ucx_conn_blob h;
    uint8_t blob[HMAF_BLOB_MAX];
    char text[16];
    size_t len = 0;
    uint16_t port = free_port();
    int ret;

    CHECK_EQ(setenv("HMAF_UCX_PORT", "http", 1), 0);
    CHECK_ERR(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx), HMAF_EINVAL);
    CHECK_EQ(setenv("HMAF_UCX_PORT", "65536", 1), 0);
    CHECK_ERR(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx), HMAF_EINVAL);
    CHECK_EQ(setenv("HMAF_UCX_PORT", "-1", 1), 0);
    CHECK_ERR(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx), HMAF_EINVAL);
    snprintf(text, sizeof(text), "%u", port);
    CHECK_EQ(setenv("HMAF_UCX_PORT", text, 1), 0);
    CHECK_OK(hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &ctx));
    CHECK_OK(ops->local_blob(ctx, blob, sizeof(blob), &len));
    CHECK(len >= sizeof(h));
    memcpy(&h, blob, sizeof(h));
    CHECK_EQ(ntohs(h.port), port);
    /* Another host on the same port: refused, and no ctx. */
    ret = hmaf__engine_ctx_create(ops, HMAF_ROLE_HOST, &other);
    CHECK_ERR(ret, HMAF_EADDRINUSE);
    CHECK(other == NULL);
    hmaf__engine_ctx_destroy(ctx);
    CHECK_EQ(unsetenv("HMAF_UCX_PORT"), 0);
}

static void in_child(void (*fn)(void))
{
    pid_t pid = fork();
    int st = 0;

    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(WATCHDOG_S); /* a hang fails the child, and so the test */
        fn();
        fflush(NULL);
        _exit(0);
    }
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
    struct hmaf_engine_ctx *ctx;

    ops = hmaf__engine_find("ucx");
    if (ops == NULL) {
        SKIP("engine ucx is not usable here");
    }
    alarm(WATCHDOG_S);
    in_child(port_pinned); /* its workers end there */
    in_child(connect_and_read); /* no worker yet in this process */
    CHECK_OK(hmaf__engine_ctx_create(ops, HMAF_ROLE_DPU, &ctx));
    in_child(refused);
    hmaf__engine_ctx_destroy(ctx);
    in_child(connect_and_read); /* the last worker has ended */
    connect_and_read();         /* and this process still runs UCX */
    printf("ucx_setup: ok\n");
    return 0;
}
