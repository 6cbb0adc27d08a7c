/*
 * Regression: "peer death: nothing leaks on the host, graves included".
 * A session cut off by a revocation (its dpu process stopped, so it cannot
 * confirm) leaves its mailbox in a grave (PROT_NONE) until the dpu side
 * closes its end. The dpu process then dies. If the agent is destroyed
 * before its loop looked at the grave's channel (poll mode, or a peer that
 * died within the loop's last sleep), the grave used to keep its
 * reservation for the life of the process; now agent destroy frees the
 * graves whose peers closed.
 *
 * Exit 1 when the dead peer's mailbox is still reserved after destroy.
 */
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"

#define LEN (1u << 20)

struct shared {
    _Atomic uint64_t mbox; /* the dpu side's view of its mailbox address */
    int revoke_ret;
    char maps_line[256]; /* the host's mapping at that address, after */
    int reserved;
};

static struct shared *sh;
static char address[128];

static void find_mapping(uint64_t addr)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[256];

    sh->reserved = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && addr >= lo &&
            addr < hi) {
            snprintf(sh->maps_line, sizeof(sh->maps_line), "%s", line);
            sh->reserved = 1;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
}

static void host(int cmd_fd, int reply_fd)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    uint8_t *mem;
    unsigned char c;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = "t";
    p.threaded = 0;
    p.revoke_wait_ms = 100;
    CHECK_OK(hmaf_agent_create(&p, &a));
    mem = calloc(1, LEN);
    CHECK_OK(hmaf_agent_expose(a, mem, LEN, HMAF_ACCESS_READ_WRITE));
    CHECK_OK(hmaf_agent_publish(a, "mem", mem, LEN));
    c = 'R';
    CHECK(write(reply_fd, &c, 1) == 1);
    for (;;) {
        struct pollfd pf = {.fd = cmd_fd, .events = POLLIN};
        if (poll(&pf, 1, 0) == 0) {
            hmaf_agent_poll(a, 1);
            continue;
        }
        CHECK(read(cmd_fd, &c, 1) == 1);
        break;
    }
    /* 'r': revoke, then shut down (the application's teardown) */
    sh->revoke_ret = hmaf_agent_revoke(a, mem, LEN);
    c = 'k';
    CHECK(write(reply_fd, &c, 1) == 1);
    CHECK(read(cmd_fd, &c, 1) == 1); /* the dpu process is dead now */
    hmaf_agent_destroy(a);
    free(mem);
    find_mapping(atomic_load(&sh->mbox));
    c = 'k';
    CHECK(write(reply_fd, &c, 1) == 1);
    _exit(0);
}

static void dpu(void)
{
    hmaf_session_params_t sp;
    hmaf_session_t *s;
    uint64_t at;
    char b[8];

    hmaf_session_params_init(&sp);
    sp.address = address;
    sp.token = "t";
    CHECK_OK(hmaf_session_create(&sp, &s));
    CHECK_OK(hmaf_session_lookup(s, "mem", &at, NULL));
    CHECK_OK(hmaf_session_read(s, b, at, sizeof(b)));
    atomic_store(&sh->mbox, s->mbox.base);
    for (;;) {
        pause();
    }
}

int main(void)
{
    int to_host[2], from_host[2];
    char dir[] = "/tmp/hmaf-test-XXXXXX";
    unsigned char c;
    pid_t h, d;

    setvbuf(stdout, NULL, _IONBF, 0);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED && mkdtemp(dir) != NULL);
    snprintf(address, sizeof(address), "unix:%s/a.sock", dir);
    CHECK(pipe(to_host) == 0 && pipe(from_host) == 0);
    h = fork();
    if (h == 0) {
        close(to_host[1]);
        close(from_host[0]);
        host(to_host[0], from_host[1]);
    }
    close(to_host[0]);
    close(from_host[1]);
    CHECK(read(from_host[0], &c, 1) == 1);
    d = fork();
    if (d == 0) {
        dpu();
    }
    while (atomic_load(&sh->mbox) == 0) {
        usleep(1000);
    }
    kill(d, SIGSTOP); /* it cannot confirm */
    CHECK(write(to_host[1], "r", 1) == 1);
    CHECK(read(from_host[0], &c, 1) == 1);
    printf("revoke with the dpu process stopped: %s (cut off)\n",
           hmaf_err_name(sh->revoke_ret));
    kill(d, SIGKILL);
    waitpid(d, NULL, 0);
    usleep(20000);
    CHECK(write(to_host[1], "g", 1) == 1); /* now destroy the agent */
    CHECK(read(from_host[0], &c, 1) == 1);
    waitpid(h, NULL, 0);
    printf("after hmaf_agent_destroy, the dead peer's mailbox at %#llx: %s",
           (unsigned long long)atomic_load(&sh->mbox),
           sh->reserved ? sh->maps_line : "not mapped\n");
    snprintf(address, sizeof(address), "%s/a.sock", dir);
    unlink(address);
    rmdir(dir);
    if (sh->reserved) {
        printf("DEFECT: a grave whose peer had died stays reserved after "
               "the agent is gone\n");
        return 1;
    }
    return 0;
}
