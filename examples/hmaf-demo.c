/*
 * hmaf-demo: run demo_host and demo_dpu as two processes that share
 * nothing but a unix socket address and a random token, and report
 * whether both succeeded. The programs are found next to this one.
 *
 *   hmaf-demo          (HMAF_DEMO_KEYS=N shrinks the table)
 *
 * Built with HMAF_DEMO_COMCH (as hmaf-demo-doca, where the DOCA emulation
 * stands in for the SDK: see CMakeLists.txt here) it runs demo_host_doca
 * and demo_dpu_doca on engine doca instead, meeting over comch as on a
 * BlueField: the dpu side listens at comch:NAME@03:00.0/b1:00.0 and the
 * host dials comch:NAME@b1:00.0.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "help.h"

#ifdef HMAF_DEMO_COMCH
#define HOST_PROGRAM "demo_host_doca"
#define DPU_PROGRAM  "demo_dpu_doca"
#define HOST_PCI     "b1:00.0" /* the host's PF, the emulation's default */
#define DPU_PCI      "03:00.0" /* the dpu side's PF, likewise */
#else
#define HOST_PROGRAM "demo_host"
#define DPU_PROGRAM  "demo_dpu"
#endif

struct child {
    const char *name;
    pid_t pid;
    int status; /* exit code, or 128 + signal */
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 16 random bytes in hex: 32 characters, HMAF_TOKEN_MAX exactly. */
static int make_token(char token[33])
{
    unsigned char raw[16];

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        snprintf(token + 2 * i, 3, "%02x", raw[i]);
    }
    return 0;
}

/* The directory this program lives in, where its siblings are. */
static int own_dir(char *dir, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", dir, cap - 1);
    char *slash;

    if (n <= 0) {
        return -1;
    }
    dir[n] = '\0';
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        return -1;
    }
    *slash = '\0';
    return 0;
}

static int spawn(struct child *c, const char *dir, const char *address)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, c->name);
    fflush(NULL);
    c->pid = fork();
    if (c->pid == 0) {
        execl(path, c->name, address, (char *)NULL);
        fprintf(stderr, "hmaf-demo: exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    if (c->pid < 0) {
        perror("hmaf-demo: fork");
        return -1;
    }
    return 0;
}

/* Wait for both. Once one fails, the other would only wait for a peer
 * that is not coming: stop it. */
static void wait_both(struct child kids[2])
{
    while (kids[0].pid > 0 || kids[1].pid > 0) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            perror("hmaf-demo: wait");
            return;
        }
        for (int i = 0; i < 2; i++) {
            if (kids[i].pid == pid) {
                kids[i].status = WIFEXITED(status) ? WEXITSTATUS(status)
                                                   : 128 + WTERMSIG(status);
                kids[i].pid = 0;
                if (kids[i].status != 0 && kids[1 - i].pid > 0) {
                    (void)kill(kids[1 - i].pid, SIGTERM); /* may be gone */
                }
            }
        }
    }
}

/* Where each side goes: one unix socket in tmp; or over comch the dpu
 * side's server and the host's way to it, named after us so that
 * concurrent runs do not meet. */
static void addresses(const char *tmp, char *host, char *dpu, size_t cap)
{
#ifdef HMAF_DEMO_COMCH
    (void)tmp;
    snprintf(host, cap, "comch:hmaf-demo-%d@%s", (int)getpid(), HOST_PCI);
    snprintf(dpu, cap, "comch:hmaf-demo-%d@%s/%s", (int)getpid(), DPU_PCI,
             HOST_PCI);
    printf("hmaf-demo: the dpu process listens at %s, the host dials %s\n", dpu,
           host);
#else
    snprintf(host, cap, "unix:%s/demo.sock", tmp);
    snprintf(dpu, cap, "%s", host);
    printf("hmaf-demo: host and dpu processes meet at %s\n", host);
#endif
}

/* Start host then dpu; whichever connects retries until the other, maybe
 * still busy (the host builds its table first), listens. */
static int run(const char *dir, const char *tmp)
{
    struct child kids[2] = {{HOST_PROGRAM, 0, -1}, {DPU_PROGRAM, 0, -1}};
    char host_address[PATH_MAX], dpu_address[PATH_MAX];

    addresses(tmp, host_address, dpu_address, sizeof(host_address));
    if (spawn(&kids[0], dir, host_address) < 0) {
        return -1;
    }
    if (spawn(&kids[1], dir, dpu_address) < 0) {
        kids[1].pid = 0;
        (void)kill(kids[0].pid, SIGTERM); /* it may have failed already */
    }
    wait_both(kids);
    if (kids[0].status != 0 || kids[1].status != 0) {
        printf("hmaf-demo: FAILED (%s exit %d, %s exit %d)\n", kids[0].name,
               kids[0].status, kids[1].name, kids[1].status);
        return -1;
    }
    return 0;
}

/* The agent removes its socket when it stops; not if it was killed. */
static void remove_tmp(const char *tmp)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/demo.sock", tmp);
    if (unlink(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "hmaf-demo: unlink %s: %s\n", path, strerror(errno));
    }
    if (rmdir(tmp) != 0) {
        fprintf(stderr, "hmaf-demo: rmdir %s: %s\n", tmp, strerror(errno));
    }
}

static const char usage_text[] =
    "usage: hmaf-demo\n"
    "Runs the demo: demo_host builds a hash table and serves it,\n"
    "demo_dpu (beside this program) follows and changes it through\n"
    "HMAF, and both report what they saw.\n";

int main(int argc, char **argv)
{
    char tmp[] = "/tmp/hmaf-demo-XXXXXX";
    char dir[PATH_MAX], token[33];
    double t0 = now_s();
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (asked_help(argc, argv) || argc != 1) {
        return print_usage(usage_text, asked_help(argc, argv));
    }
    if (own_dir(dir, sizeof(dir)) < 0 || make_token(token) < 0 ||
        mkdtemp(tmp) == NULL) {
        perror("hmaf-demo: setting up");
        return 1;
    }
    /* The children inherit it; it never appears on a command line. */
    ret = setenv("HMAF_DEMO_TOKEN", token, 1);
#ifdef HMAF_DEMO_COMCH
    if (ret == 0) {
        ret = setenv("HMAF_ENGINE", "doca", 1);
    }
#endif
    if (ret == 0) {
        ret = run(dir, tmp);
    } else {
        perror("hmaf-demo: setenv");
    }
    remove_tmp(tmp);
    if (ret == 0) {
        printf("hmaf-demo: ok, both sides succeeded in %.1f s\n", now_s() - t0);
    }
    return ret == 0 ? 0 : 1;
}
