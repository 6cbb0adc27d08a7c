/*
 * Host and dpu side in different pid namespaces (a container without
 * --pid=host): the cma engine reaches the host by pid, so this cannot
 * work, and must say so — HMAF_EPIDNS at hmaf_session_create with the
 * cause in the dpu side's log, a refusal for EPIDNS in the host's — not
 * HMAF_EAUTH, which reads as a wrong token. Both ways round:
 *   dpu-inside: the dpu side in a new pid namespace, the host outside (it
 *               sees the dpu side under another pid than the one it sends);
 *   host-inside: the host in a new pid namespace, the dpu side outside
 *               (the host does not see the dpu side at all).
 * The namespaces are what `unshare --pid --fork` makes (unshare(2) here).
 * Needs CAP_SYS_ADMIN; skips without it.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

/* What the child told on stderr, read back after it ended. */
struct log {
    char path[64];
    int fd;
};

static void log_open(struct log *l)
{
    snprintf(l->path, sizeof(l->path), "/tmp/hmaf-pidns-XXXXXX");
    l->fd = mkstemp(l->path);
    CHECK(l->fd >= 0);
}

static void log_read(struct log *l, char *text, size_t len)
{
    memset(text, 0, len);
    CHECK(pread(l->fd, text, len - 1, 0) > 0);
    close(l->fd);
    unlink(l->path);
}

/* New pid namespace for the children of this process, or exit 77. */
static void unshare_pid_or_skip(void)
{
    if (unshare(CLONE_NEWPID) != 0) {
        fprintf(stderr, "unshare(CLONE_NEWPID): %m\n");
        _exit(77);
    }
}

/* Connect and expect HMAF_EPIDNS, logging to fd. */
static void connect_refused(const struct target *t, int fd)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;

    fflush(stderr);
    CHECK(dup2(fd, 2) == 2);
    target_session_params(t, &p);
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EPIDNS);
    CHECK(s == NULL);
}

static int wait_status(pid_t pid)
{
    int st;

    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void dpu_inside(void)
{
    char text[4096];
    struct target t;
    struct log l;
    pid_t pid;
    int st;

    log_open(&l);
    target_start_standard(&t);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pid_t inner;

        unshare_pid_or_skip();
        inner = fork(); /* pid 1 of the new namespace */
        CHECK(inner >= 0);
        if (inner == 0) {
            connect_refused(&t, l.fd);
            _exit(0);
        }
        _exit(wait_status(inner));
    }
    st = wait_status(pid);
    if (st == 77) {
        target_stop(&t);
        SKIP("cannot make a pid namespace here (unshare(CLONE_NEWPID) "
             "needs CAP_SYS_ADMIN)");
    }
    CHECK_EQ(st, 0);
    log_read(&l, text, sizeof(text));
    printf("dpu-inside: the dpu side said: %s", text);
    CHECK(strstr(text, "handshake with host: host and dpu side run in "
                       "different pid namespaces") != NULL);
    CHECK(strstr(text, "the host process is not visible in this pid "
                       "namespace") != NULL);
    CHECK(strstr(text, "--pid=host") != NULL);
    CHECK(strstr(text, "authentication") == NULL);
    CHECK_EQ(target_command(&t, 'N'), 1); /* the host refused for EPIDNS */
    CHECK_EQ(target_stop(&t), 0);
}

static void host_inside(void)
{
    char text[4096];
    struct log l;
    pid_t pid;
    int st;

    log_open(&l);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct target t;

        unshare_pid_or_skip();
        target_start_standard(&t); /* its child: pid 1 in there */
        connect_refused(&t, l.fd);
        CHECK_EQ(target_command(&t, 'N'), 1);
        CHECK_EQ(target_stop(&t), 0);
        _exit(0);
    }
    st = wait_status(pid);
    if (st == 77) {
        SKIP("cannot make a pid namespace here (unshare(CLONE_NEWPID) "
             "needs CAP_SYS_ADMIN)");
    }
    CHECK_EQ(st, 0);
    log_read(&l, text, sizeof(text));
    printf("host-inside: the dpu side said: %s", text);
    CHECK(strstr(text, "runs in a pid namespace nested in this one, where "
                       "it is pid 1") != NULL);
    CHECK(strstr(text, "authentication") == NULL);
}

int main(void)
{
    const char *engine = getenv("HMAF_ENGINE");

    if (engine != NULL && engine[0] != '\0' && strcmp(engine, "cma") != 0) {
        SKIP("engine %s does not reach the host by pid: pid namespaces do "
             "not matter to it",
             engine);
    }
    dpu_inside();
    host_inside();
    printf("test_pidns: ok\n");
    return 0;
}
