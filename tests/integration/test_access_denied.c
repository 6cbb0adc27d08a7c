/*
 * A dpu side that may not access the host process learns it at
 * hmaf_session_create (HMAF_EPERM, the reason in the log), not at its first
 * call: here it runs as another user (nobody), which process_vm_readv
 * refuses whatever the ptrace scope. Needs root, to be both users.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

#define NOBODY 65534

/* As nobody: create must fail with HMAF_EPERM and say why on stderr
 * (a file the parent reads). */
static void connect_as_nobody(const struct target *t, int log_fd)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;

    CHECK(dup2(log_fd, 2) == 2);
    CHECK(setgid(NOBODY) == 0 && setuid(NOBODY) == 0);
    target_session_params(t, &p);
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EPERM);
    CHECK(s == NULL);
}

int main(void)
{
    char log_path[] = "/tmp/hmaf-access-XXXXXX", text[1024] = {0};
    struct target t;
    int log_fd, st;
    pid_t pid;

    const char *engine = getenv("HMAF_ENGINE");

    if (engine != NULL && engine[0] != '\0' && strcmp(engine, "cma") != 0) {
        SKIP("engine %s does not reach the host process itself (its "
             "transfers go through the host's side): nothing to deny",
             engine);
    }
    if (geteuid() != 0) {
        SKIP("needs root, to run the dpu side as another user");
    }
    log_fd = mkstemp(log_path);
    CHECK(log_fd >= 0);
    target_start_standard(&t);
    /* nobody may reach the socket, not the process */
    CHECK(chmod(t.dir, 0777) == 0);
    CHECK(chmod(t.address + strlen("unix:"), 0777) == 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        connect_as_nobody(&t, log_fd);
        _exit(0);
    }
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(pread(log_fd, text, sizeof(text) - 1, 0) > 0);
    printf("the dpu side said: %s", text);
    CHECK(strstr(text, "cannot access the host process") != NULL);
    close(log_fd);
    unlink(log_path);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_access_denied: ok\n");
    return 0;
}
