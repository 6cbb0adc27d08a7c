/*
 * seccomp_run: run a program under a seccomp filter that makes chosen
 * system calls fail, as a container's profile would, and optionally as
 * another user:
 *
 *   seccomp_run [--deny NAME[:ENOSYS]]... [--user UID] -- PROGRAM ARGS...
 *
 * NAME is process_vm_readv, process_vm_writev or userfaultfd; a denied
 * call fails with EPERM (docker's default answer), or ENOSYS when asked.
 * The filter is raw classic BPF installed with PR_SET_NO_NEW_PRIVS and
 * PR_SET_SECCOMP, inherited by every child and kept across execve.
 * Exit 77 when this kernel or architecture cannot do it.
 */
#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define THIS_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_ARCH AUDIT_ARCH_AARCH64
#endif

#define DENY_MAX 8

struct deny {
    int nr;
    int err;
};

static int syscall_nr(const char *name)
{
    if (strcmp(name, "process_vm_readv") == 0) {
        return SYS_process_vm_readv;
    }
    if (strcmp(name, "process_vm_writev") == 0) {
        return SYS_process_vm_writev;
    }
    if (strcmp(name, "userfaultfd") == 0) {
        return SYS_userfaultfd;
    }
    return -1;
}

static int parse_deny(const char *arg, struct deny *d)
{
    char name[64];
    const char *colon = strchr(arg, ':');
    size_t len = colon != NULL ? (size_t)(colon - arg) : strlen(arg);

    if (len >= sizeof(name)) {
        return -1;
    }
    memcpy(name, arg, len);
    name[len] = '\0';
    d->nr = syscall_nr(name);
    d->err = EPERM;
    if (colon != NULL) {
        if (strcmp(colon + 1, "ENOSYS") != 0) {
            return -1;
        }
        d->err = ENOSYS;
    }
    return d->nr < 0 ? -1 : 0;
}

#ifdef THIS_ARCH
/* Another architecture's calls (a 32-bit binary) are let through: the
 * programs run here are this one's. */
static int install(const struct deny *d, int n)
{
    struct sock_filter prog[4 + 2 * DENY_MAX + 1];
    struct sock_fprog fprog;
    int k = 0;

    prog[k++] = (struct sock_filter)BPF_STMT(
        BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                             THIS_ARCH, 1, 0);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                             SECCOMP_RET_ALLOW);
    prog[k++] = (struct sock_filter)BPF_STMT(
        BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (int i = 0; i < n; i++) {
        prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                                 (unsigned)d[i].nr, 0, 1);
        prog[k++] = (struct sock_filter)BPF_STMT(
            BPF_RET | BPF_K,
            SECCOMP_RET_ERRNO | ((unsigned)d[i].err & SECCOMP_RET_DATA));
    }
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                             SECCOMP_RET_ALLOW);
    fprog.len = (unsigned short)k;
    fprog.filter = prog;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) {
        fprintf(stderr, "seccomp_run: cannot install a filter: %s\n",
                strerror(errno));
        return -1;
    }
    return 0;
}
#else
static int install(const struct deny *d, int n)
{
    (void)d, (void)n;
    fprintf(stderr, "seccomp_run: no filter for this architecture\n");
    return -1;
}
#endif

static int become(const char *uid_text)
{
    uid_t uid = (uid_t)strtoul(uid_text, NULL, 10);

    if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 ||
        setuid(uid) != 0) {
        fprintf(stderr, "seccomp_run: cannot become uid %u: %s\n",
                (unsigned)uid, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct deny deny[DENY_MAX];
    const char *user = NULL;
    int n = 0, i = 1;

    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--deny") == 0 && i + 1 < argc && n < DENY_MAX &&
            parse_deny(argv[i + 1], &deny[n]) == 0) {
            n++, i++;
        } else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
            user = argv[++i];
        } else {
            fprintf(stderr, "usage: seccomp_run [--deny NAME[:ENOSYS]]... "
                            "[--user UID] -- PROGRAM ARGS...\n");
            return 2;
        }
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "seccomp_run: no program\n");
        return 2;
    }
    if (user != NULL && become(user) != 0) {
        return 77;
    }
    if (n > 0 && install(deny, n) != 0) {
        return 77;
    }
    execvp(argv[i + 1], argv + i + 1);
    fprintf(stderr, "seccomp_run: %s: %s\n", argv[i + 1], strerror(errno));
    return 127;
}
