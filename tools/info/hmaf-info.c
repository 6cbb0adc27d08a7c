/*
 * hmaf-info: what HMAF can do on this machine, in this process's
 * circumstances (user, capabilities, seccomp filter, pid namespace,
 * limits), and for each thing that stops it, why and what to do.
 * docs/troubleshooting.md explains each line.
 *
 * It tries the system calls HMAF makes rather than guessing from settings:
 * a seccomp filter is only visible by its answers. Run it where, and as
 * whom, the dpu side (or the host) will run: in the same container, as
 * the same user.
 *
 * Exit status: 0 when the default engine (HMAF_ENGINE, or the first the
 * library lists) is usable here, 1 when it is not, 2 for a usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hmaf/hmaf.h>

#include "../../examples/help.h"
#include "../json.h"

#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#define CAP_SYS_PTRACE_BIT 19

#define ENGINES_MAX 16

enum status { OK, WARN, FAIL, INFO };
static const char *const status_word[] = {"ok", "warn", "fail", "info"};

/* One finding: what was looked at, what it is, what that means for HMAF
 * and, when it stops something, what to do. */
struct check {
    const char *name;
    enum status status;
    char value[160];
    char explain[640];
    char fix[480];
};

static struct check checks[32];
static size_t nchecks;
static int json;

static struct check *add(const char *name, enum status st)
{
    struct check *c = &checks[nchecks++];

    memset(c, 0, sizeof(*c));
    c->name = name;
    c->status = st;
    return c;
}

/* ---- reading the system ---- */

static int read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

static long read_long(const char *path, long fallback)
{
    char buf[64];

    return read_text(path, buf, sizeof(buf)) == 0 ? strtol(buf, NULL, 10)
                                                  : fallback;
}

/* The rest of the line "key:" in /proc/<pid>/status, or "" */
static void status_field(const char *pid, const char *key, char *out,
                         size_t len)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    FILE *f;

    out[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    f = fopen(path, "re");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            const char *v = line + klen + 1;

            v += strspn(v, " \t");
            snprintf(out, len, "%.*s", (int)strcspn(v, "\n"), v);
            for (char *t = out; (t = strchr(t, '\t')) != NULL;) {
                *t = ' '; /* "0\t0\t0\t0" reads as "0 0 0 0" */
            }
            break;
        }
    }
    fclose(f);
}

static int have_cap_sys_ptrace(void)
{
    char eff[64];

    status_field("self", "CapEff", eff, sizeof(eff));
    return (strtoull(eff, NULL, 16) >> CAP_SYS_PTRACE_BIT) & 1;
}

static const char *errno_name(int err)
{
    switch (err) {
    case 0:
        return "allowed";
    case EPERM:
        return "EPERM";
    case EACCES:
        return "EACCES";
    case ENOSYS:
        return "ENOSYS";
    case EINVAL:
        return "EINVAL";
    case ESRCH:
        return "ESRCH";
    case EFAULT:
        return "EFAULT";
    default:
        return strerror(err);
    }
}

/* ---- engines ---- */

static hmaf_engine_info_t engines[ENGINES_MAX];
static size_t nengines;

static int list_engines(void)
{
    engines[0].size = sizeof(engines[0]);
    return hmaf_engine_list(engines, ENGINES_MAX, &nengines);
}

static const hmaf_engine_info_t *default_engine(void)
{
    const char *name = getenv("HMAF_ENGINE");

    for (size_t i = 0; i < nengines; i++) {
        if (name == NULL || name[0] == '\0' ||
            strcmp(engines[i].name, name) == 0) {
            return &engines[i];
        }
    }
    return NULL;
}

static int engine_built(const char *name)
{
    for (size_t i = 0; i < nengines; i++) {
        if (strcmp(engines[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- ptrace: what the cma engine needs of the host process ---- */

static void check_ptrace_scope(void)
{
    long scope = read_long("/proc/sys/kernel/yama/ptrace_scope", -1);
    struct check *c = add("kernel.yama.ptrace_scope", scope >= 2 ? FAIL : OK);
    static const char *const meaning[] = {
        "0: classic rules: a process may read another of the same user "
        "(that is dumpable), or any with CAP_SYS_PTRACE",
        "1: restricted: only an ancestor of the process, or the process it "
        "named with prctl(PR_SET_PTRACER), or one with CAP_SYS_PTRACE; the "
        "host agent calls prctl(PR_SET_PTRACER) for each dpu-side process "
        "once its token checks out, so a dpu side of the same user works",
        "2: admin only: only a process with CAP_SYS_PTRACE may read "
        "another; PR_SET_PTRACER does not help",
        "3: no attach: no process may read another, whatever its "
        "capabilities, until reboot",
    };

    if (scope < 0) {
        snprintf(c->value, sizeof(c->value), "absent (no Yama)");
        snprintf(c->explain, sizeof(c->explain),
                 "classic rules: a dpu-side process may read a host of the "
                 "same user (that is dumpable), or any with CAP_SYS_PTRACE");
        return;
    }
    snprintf(c->value, sizeof(c->value), "%ld", scope);
    snprintf(c->explain, sizeof(c->explain), "%s",
             scope <= 3 ? meaning[scope] : "unknown value");
    if (scope == 2) {
        snprintf(c->fix, sizeof(c->fix),
                 "give the dpu side CAP_SYS_PTRACE (docker: --cap-add "
                 "SYS_PTRACE; setcap cap_sys_ptrace+ep <program>), or "
                 "sysctl kernel.yama.ptrace_scope=1");
    } else if (scope >= 3) {
        snprintf(c->fix, sizeof(c->fix),
                 "the cma engine cannot work until reboot with a lower "
                 "kernel.yama.ptrace_scope; use another engine");
    }
}

static void check_cap_ptrace(void)
{
    int have = have_cap_sys_ptrace();
    struct check *c = add("CAP_SYS_PTRACE", have ? OK : INFO);

    snprintf(c->value, sizeof(c->value), "%s",
             have ? "in the effective set" : "not in the effective set");
    snprintf(c->explain, sizeof(c->explain),
             "%s",
             have ? "this process may read any process it can see (up to "
                    "ptrace_scope 2), whatever its user"
                  : "this process may read only hosts of its own user, and "
                    "under ptrace_scope 1 only those that granted it "
                    "(the host agent does)");
    if (!have) {
        snprintf(c->fix, sizeof(c->fix),
                 "needed only for a host of another user or under "
                 "ptrace_scope 2: docker --cap-add SYS_PTRACE, or run both "
                 "as one user");
    }
}

/* ---- seccomp and the system calls themselves ---- */

static void check_seccomp(void)
{
    char mode[32], filters[32];
    struct check *c;

    status_field("self", "Seccomp", mode, sizeof(mode));
    status_field("self", "Seccomp_filters", filters, sizeof(filters));
    c = add("seccomp", mode[0] == '2' ? INFO : OK);
    snprintf(c->value, sizeof(c->value), "mode %s%s%s%s",
             mode[0] ? mode : "unknown",
             mode[0] == '0'   ? " (none)"
             : mode[0] == '1' ? " (strict)"
             : mode[0] == '2' ? " (filter)"
                              : "",
             filters[0] ? ", filters " : "", filters);
    snprintf(c->explain, sizeof(c->explain), "%s",
             mode[0] == '2'
                 ? "a filter decides which system calls this process may "
                   "make (a container's profile): the lines below try the "
                   "ones HMAF makes"
                 : "no filter: every system call reaches the kernel");
}

static int try_vm_readv(pid_t pid, void *addr)
{
    char dst;
    struct iovec local = {&dst, 1}, remote = {addr, 1};

    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == 1 ? 0 : errno;
}

static void check_vm_readv_self(void)
{
    static char here = 1;
    int err = try_vm_readv(getpid(), &here);
    struct check *c = add("process_vm_readv", err ? FAIL : OK);

    snprintf(c->value, sizeof(c->value), "%s (own memory)", errno_name(err));
    if (err == 0) {
        snprintf(c->explain, sizeof(c->explain),
                 "the system call the cma engine moves data with is allowed");
        return;
    }
    snprintf(c->explain, sizeof(c->explain),
             "reading its own memory needs no permission, so %s",
             err == ENOSYS ? "the kernel lacks CONFIG_CROSS_MEMORY_ATTACH or "
                             "a seccomp filter answers ENOSYS"
                           : "a seccomp filter denies the system call: the "
                             "cma engine cannot work here");
    snprintf(c->fix, sizeof(c->fix),
             "allow process_vm_readv and process_vm_writev in the seccomp "
             "profile (docker: --security-opt seccomp=<a profile with "
             "them>; docker's default profile allows them on Linux 4.8 and "
             "later)");
}

/* A forked child reads its parent: the dpu side's position towards a
 * host that is not its child. grant: the parent first names the child
 * with PR_SET_PTRACER, as the host agent does. */
static int child_reads_parent(int grant)
{
    static volatile char mark = 1;
    int go[2], st = 0, err = -1, sent;
    char byte = 0;
    pid_t pid;

    if (pipe(go) != 0) {
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        close(go[1]);
        _exit(read(go[0], &byte, 1) == 1 ? try_vm_readv(getppid(),
                                                        (void *)&mark)
                                         : 255);
    }
    close(go[0]);
    if (pid < 0) {
        close(go[1]);
        return -1;
    }
    if (grant) {
        (void)prctl(PR_SET_PTRACER, (unsigned long)pid, 0, 0, 0);
    }
    sent = write(go[1], "g", 1) == 1;
    close(go[1]); /* unsent: the child reads nothing and exits */
    if (waitpid(pid, &st, 0) == pid && WIFEXITED(st) && sent) {
        err = WEXITSTATUS(st);
    }
    if (grant) {
        (void)prctl(PR_SET_PTRACER, 0UL, 0, 0, 0);
    }
    return err;
}

static void check_vm_readv_peer(void)
{
    int plain = child_reads_parent(0), granted = child_reads_parent(1);
    struct check *c =
        add("process_vm_readv of a non-child", granted == 0 ? OK : FAIL);

    snprintf(c->value, sizeof(c->value), "%s; with PR_SET_PTRACER: %s",
             plain < 0 ? "not tried" : errno_name(plain),
             granted < 0 ? "not tried" : errno_name(granted));
    if (granted == 0) {
        snprintf(c->explain, sizeof(c->explain),
                 "%s",
                 plain == 0 ? "a process of this user may read a host that "
                              "is not its child"
                            : "a host must grant access with "
                              "prctl(PR_SET_PTRACER), which the host agent "
                              "does for each authenticated dpu-side process");
        return;
    }
    snprintf(c->explain, sizeof(c->explain),
             "even a granted host of this user may not be read: %s",
             granted == ENOSYS || granted == EPERM
                 ? "the system call itself is refused (see process_vm_readv "
                   "above), or ptrace_scope is 2 or 3 without CAP_SYS_PTRACE"
                 : "see the lines above");
    snprintf(c->fix, sizeof(c->fix),
             "see kernel.yama.ptrace_scope, CAP_SYS_PTRACE and "
             "process_vm_readv above");
}

/* --pid: may this process read that one? Address 1 is never mapped, so
 * a permitted read fails with EFAULT after the permission check passed. */
static void check_host_pid(const char *pid_text)
{
    pid_t pid = (pid_t)strtol(pid_text, NULL, 10);
    int err = try_vm_readv(pid, (void *)1);
    char uid[64], nspid[64];
    struct check *c = add("host pid", err == EFAULT ? OK : FAIL);

    status_field(pid_text, "Uid", uid, sizeof(uid));
    status_field(pid_text, "NSpid", nspid, sizeof(nspid));
    snprintf(c->value, sizeof(c->value), "%d: %s", (int)pid,
             err == EFAULT ? "may be read" : errno_name(err));
    if (err == EFAULT) {
        snprintf(c->explain, sizeof(c->explain),
                 "this process passes the kernel's ptrace check for pid %d",
                 (int)pid);
    } else if (err == ESRCH) {
        snprintf(c->explain, sizeof(c->explain),
                 "no process %d in this pid namespace: a host in another "
                 "pid namespace is not visible (HMAF_EPIDNS at connect)",
                 (int)pid);
        snprintf(c->fix, sizeof(c->fix), "run both in one pid namespace "
                                         "(docker: --pid=host, or "
                                         "--pid=container:<host's>)");
    } else {
        snprintf(c->explain, sizeof(c->explain),
                 "the kernel refuses ptrace access to pid %d (its uids: "
                 "%s; ours: %u): another user, ptrace_scope, a missing "
                 "grant (PR_SET_PTRACER: the agent grants only "
                 "authenticated peers), a non-dumpable host, or a seccomp "
                 "filter; a session would fail with HMAF_EPERM",
                 (int)pid, uid[0] ? uid : "unknown", (unsigned)getuid());
        snprintf(c->fix, sizeof(c->fix),
                 "run the dpu side as the host's user, or give it "
                 "CAP_SYS_PTRACE (docker: --cap-add SYS_PTRACE)");
    }
    if (strchr(nspid, ' ') != NULL) {
        snprintf(c->explain + strlen(c->explain),
                 sizeof(c->explain) - strlen(c->explain),
                 "; pid %d runs in a nested pid namespace (NSpid %s): the "
                 "cma engine refuses it with HMAF_EPIDNS",
                 (int)pid, nspid);
    }
}

/* ---- userfaultfd: mapping mode (and the doca engine's memory watch) ---- */

static int try_uffd(int flags)
{
    int fd = (int)syscall(SYS_userfaultfd, flags);

    if (fd < 0) {
        return errno;
    }
    close(fd);
    return 0;
}

static void explain_uffd(struct check *c, int user_only, int full,
                         long sysctl)
{
    int cap = have_cap_sys_ptrace();

    if (user_only == 0) {
        snprintf(c->explain, sizeof(c->explain),
                 "mapping mode works (it asks for a user-mode-only "
                 "descriptor)%s",
                 full == 0 ? "; so does the doca engine's memory watch in "
                             "either mode"
                 : sysctl == 0 && !have_cap_sys_ptrace()
                     ? "; a full descriptor is refused because "
                       "vm.unprivileged_userfaultfd is 0 and this process "
                       "lacks CAP_SYS_PTRACE: the doca engine's memory "
                       "watch has its write-protect mode only"
                     : "; a full descriptor is refused (a seccomp filter "
                       "that looks at the flags): the doca engine's memory "
                       "watch has its write-protect mode only");
        return;
    }
    if (user_only == EINVAL && full == 0) {
        snprintf(c->explain, sizeof(c->explain),
                 "the kernel predates UFFD_USER_MODE_ONLY (Linux 5.11): "
                 "mapping mode fails with HMAF_ENOTSUP");
        snprintf(c->fix, sizeof(c->fix), "Linux 5.11 or later");
        return;
    }
    if (user_only == ENOSYS) {
        snprintf(c->explain, sizeof(c->explain),
                 "no userfaultfd: the kernel lacks CONFIG_USERFAULTFD, or a "
                 "seccomp filter answers ENOSYS: mapping mode fails with "
                 "HMAF_ENOTSUP");
        snprintf(c->fix, sizeof(c->fix),
                 "a kernel with CONFIG_USERFAULTFD; allow userfaultfd in "
                 "the seccomp profile");
        return;
    }
    snprintf(c->explain, sizeof(c->explain),
             "userfaultfd denied: %s; mapping mode fails with HMAF_EPERM "
             "(log: \"userfaultfd denied ...\")",
             "vm.unprivileged_userfaultfd does not restrict user-mode-only "
             "descriptors, so a seccomp filter (docker's default profile "
             "has no userfaultfd) or a security module forbids it");
    snprintf(c->fix, sizeof(c->fix),
             "allow userfaultfd in the seccomp profile (docker: "
             "--security-opt seccomp=<a profile with userfaultfd>)%s",
             sysctl == 0 && !cap ? "; the full descriptor also needs "
                                   "vm.unprivileged_userfaultfd=1 or "
                                   "CAP_SYS_PTRACE"
                                 : "");
}

static void check_userfaultfd(void)
{
    long sysctl = read_long("/proc/sys/vm/unprivileged_userfaultfd", -1);
    int user_only = try_uffd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    int full = try_uffd(O_CLOEXEC | O_NONBLOCK);
    struct check *c = add("userfaultfd", user_only == 0 ? OK : FAIL);
    struct check *s;

    snprintf(c->value, sizeof(c->value),
             "user-mode-only: %s; full: %s", errno_name(user_only),
             errno_name(full));
    explain_uffd(c, user_only, full, sysctl);
    s = add("vm.unprivileged_userfaultfd", INFO);
    snprintf(s->value, sizeof(s->value), "%ld%s", sysctl,
             sysctl < 0 ? " (absent)" : "");
    snprintf(s->explain, sizeof(s->explain),
             "%s",
             sysctl == 0 ? "0: a process without CAP_SYS_PTRACE gets only "
                           "user-mode-only descriptors, which mapping mode "
                           "uses; the doca engine's memory watch in missing "
                           "mode needs a full one"
                         : "1 or absent: any process may open a full "
                           "userfaultfd (unless seccomp forbids it)");
}

/* ---- membarrier: the read side's grace periods ---- */

static void check_membarrier(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    int reg = -1;
    struct check *c;

    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) {
        reg = syscall(SYS_membarrier,
                      MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
                  ? 0
                  : errno;
    }
    c = add("membarrier", reg == 0 ? OK : WARN);
    snprintf(c->value, sizeof(c->value),
             "query: %s; private expedited: %s",
             cmds < 0 ? errno_name(errno) : "answered",
             reg == 0 ? "registers" : reg < 0 ? "not offered"
                                              : errno_name(reg));
    snprintf(c->explain, sizeof(c->explain), "%s",
             reg == 0 ? "the dpu side's readers run without fences; "
                        "revocations wait with one membarrier"
                      : "the dpu side's readers fence instead (correct, a "
                        "little slower on every call)");
    if (reg != 0) {
        snprintf(c->fix, sizeof(c->fix),
                 "allow membarrier in the seccomp profile; Linux 4.14 or "
                 "later");
    }
}

/* ---- limits ---- */

static void limit_text(rlim_t v, char *out, size_t len)
{
    if (v == RLIM_INFINITY) {
        snprintf(out, len, "unlimited");
    } else {
        snprintf(out, len, "%llu", (unsigned long long)v);
    }
}

static void check_limit(const char *name, int resource, rlim_t want,
                        const char *explain, const char *fix)
{
    char cur[32], max[32];
    struct rlimit rl;
    struct check *c;

    if (getrlimit(resource, &rl) != 0) {
        return;
    }
    c = add(name, rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want ? OK
                                                                       : WARN);
    limit_text(rl.rlim_cur, cur, sizeof(cur));
    limit_text(rl.rlim_max, max, sizeof(max));
    snprintf(c->value, sizeof(c->value), "%s (hard %s)", cur, max);
    snprintf(c->explain, sizeof(c->explain), "%s", explain);
    if (c->status != OK) {
        snprintf(c->fix, sizeof(c->fix), "%s", fix);
    }
}

static void check_limits(void)
{
    check_limit("RLIMIT_MEMLOCK", RLIMIT_MEMLOCK,
                engine_built("doca") ? 64ull << 20 : 0,
                "bytes a process may pin: the doca engine pins the memory "
                "it registers (host exposures, dpu-side buffers) and "
                "fails with HMAF_ENOMEM beyond it; cma pins nothing",
                "ulimit -l unlimited (docker: --ulimit memlock=-1; systemd: "
                "LimitMEMLOCK=infinity) where the doca engine runs");
    check_limit("RLIMIT_NOFILE", RLIMIT_NOFILE, 1024,
                "descriptors: a session takes a channel socket (and an "
                "eventfd, a userfaultfd per mapping), an agent one per "
                "session and its listener",
                "ulimit -n 65536 for an agent serving many sessions");
}

/* ---- environment: pid namespace, DOCA devices ---- */

static void check_pidns(void)
{
    char nspid[64];
    struct check *c;

    status_field("self", "NSpid", nspid, sizeof(nspid));
    c = add("pid namespace", INFO);
    snprintf(c->value, sizeof(c->value), "NSpid %s",
             nspid[0] ? nspid : "unknown");
    snprintf(c->explain, sizeof(c->explain),
             "%s",
             strchr(nspid, ' ') != NULL
                 ? "this process runs in a nested pid namespace (a "
                   "container): with the cma engine its host must run in "
                   "the same one, or a session fails with HMAF_EPIDNS"
                 : "the machine's own pid namespace (or /proc shows no "
                   "nesting): with the cma engine the host must run in it "
                   "too");
}

/* Devices of NVIDIA networking (PCI vendor 0x15b3): BlueField and
 * ConnectX, what the doca engine can open. */
static int count_nvidia_pci(void)
{
    DIR *d = opendir("/sys/bus/pci/devices");
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char path[512], vendor[16];

        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor",
                 e->d_name);
        if (read_text(path, vendor, sizeof(vendor)) == 0 &&
            strcmp(vendor, "0x15b3") == 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

static void check_doca(void)
{
    int n = count_nvidia_pci();
    int built = engine_built("doca");
    struct check *c = add("DOCA devices", INFO);

    snprintf(c->value, sizeof(c->value), "%d NVIDIA (0x15b3) PCI device%s%s",
             n < 0 ? 0 : n, n == 1 ? "" : "s",
             n < 0 ? " (no /sys/bus/pci)" : "");
    snprintf(c->explain, sizeof(c->explain), "%s%s",
             built ? "the doca engine is built in: its line under engines "
                     "says what DOCA itself lists"
                   : "the doca engine is not built into this library (the "
                     "DOCA SDK was not found when it was built; its tests "
                     "run against the project's emulation, which is not a "
                     "device)",
             n > 0 ? "" : "; no BlueField or ConnectX device is visible here");
    if (!built || n <= 0) {
        snprintf(c->fix, sizeof(c->fix),
                 "for the doca engine: build with the DOCA SDK "
                 "(docs/doca.md) and run on a BlueField or its host");
    }
}

/* ---- configuration ----
 *
 * The effective settings as the library sees them (hmaf_config_snapshot):
 * every parameter, its value, and whether it is the default or came from
 * the environment. This tool does not read the environment itself, so it
 * cannot disagree with the library. */
static const char *const source_word[] = {"default", "environment",
                                          "default (environment ignored)"};

static const char *source_name(hmaf_config_source_t source)
{
    return (unsigned)source < sizeof(source_word) / sizeof(source_word[0])
               ? source_word[source]
               : "?";
}

/* Calls show(entry, first) for each setting; 0 or the snapshot's error. */
static int each_setting(void (*show)(const hmaf_config_entry_t *, int))
{
    hmaf_config_t *config = NULL;
    size_t count = 0;
    int ret = hmaf_config_snapshot(&config, &count);

    for (size_t i = 0; ret == 0 && i < count; i++) {
        hmaf_config_entry_t e = {.size = sizeof(e)};

        ret = hmaf_config_entry(config, i, &e);
        if (ret == 0) {
            show(&e, i == 0);
        }
    }
    hmaf_config_free(config);
    return ret;
}

static void show_setting_text(const hmaf_config_entry_t *e, int first)
{
    (void)first;
    printf("  %-28s %-26s %s", e->name, e->env,
           e->value[0] != '\0' ? e->value : "(unset)");
    if (e->source == HMAF_CONFIG_DEFAULT) {
        printf("  [default]\n");
    } else {
        printf("  [%s: %s=%s]\n", source_name(e->source), e->env,
               e->env_value != NULL ? e->env_value : "");
    }
}

static void print_configuration(void)
{
    int ret;

    printf("\nconfiguration (params defaults, after the environment; a "
           "program's own\nassignments come after these: "
           "docs/configuration.md):\n");
    ret = each_setting(show_setting_text);
    if (ret != 0) {
        printf("  not available: %s\n", hmaf_strerror(ret));
    }
}

/* ---- output ---- */

static void print_text(const hmaf_engine_info_t *def)
{
    printf("libhmaf %s\n\nengines (the first is the default):\n",
           hmaf_version());
    for (size_t i = 0; i < nengines; i++) {
        printf("  %-6s %s%s%s%s\n", engines[i].name,
               engines[i].usable ? "usable" : "NOT usable",
               engines[i].usable ? "" : " (",
               engines[i].usable ? "" : hmaf_err_name(engines[i].error),
               engines[i].usable ? "" : ")");
        if (!engines[i].usable) {
            printf("         %s\n", engines[i].reason);
        }
    }
    if (def != NULL) {
        printf("  default: %s, %s\n", def->name,
               def->usable ? "usable" : "NOT usable");
    } else {
        printf("  default: HMAF_ENGINE=%s is not built into this library\n",
               getenv("HMAF_ENGINE"));
    }
    printf("\nchecks:\n");
    for (size_t i = 0; i < nchecks; i++) {
        const struct check *c = &checks[i];

        printf("  [%-4s] %s: %s\n", status_word[c->status], c->name,
               c->value);
        if (c->explain[0]) {
            printf("         %s\n", c->explain);
        }
        if (c->fix[0]) {
            printf("         fix: %s\n", c->fix);
        }
    }
    print_configuration();
}

static void show_setting_json(const hmaf_config_entry_t *e, int first)
{
    printf("%s{\"name\": ", first ? "" : ", ");
    json_str(stdout, e->name);
    printf(", \"env\": ");
    json_str(stdout, e->env);
    printf(", \"value\": ");
    json_str(stdout, e->value);
    printf(", \"default\": ");
    json_str(stdout, e->default_value);
    printf(", \"source\": ");
    json_str(stdout, source_name(e->source));
    printf(", \"env_value\": ");
    if (e->env_value != NULL) {
        json_str(stdout, e->env_value);
    } else {
        printf("null");
    }
    printf("}");
}

static void print_json(const hmaf_engine_info_t *def)
{
    printf("{\"version\": ");
    json_str(stdout, hmaf_version());
    printf(", \"engines\": [");
    for (size_t i = 0; i < nengines; i++) {
        printf("%s{\"name\": ", i ? ", " : "");
        json_str(stdout, engines[i].name);
        printf(", \"usable\": %s, \"error\": ",
               engines[i].usable ? "true" : "false");
        json_str(stdout, engines[i].usable ? "" : hmaf_err_name(engines[i].error));
        printf(", \"reason\": ");
        json_str(stdout, engines[i].reason);
        printf("}");
    }
    printf("], \"default_engine\": ");
    json_str(stdout, def ? def->name : "");
    printf(", \"default_usable\": %s, \"checks\": [",
           def && def->usable ? "true" : "false");
    for (size_t i = 0; i < nchecks; i++) {
        printf("%s{\"name\": ", i ? ", " : "");
        json_str(stdout, checks[i].name);
        printf(", \"status\": ");
        json_str(stdout, status_word[checks[i].status]);
        printf(", \"value\": ");
        json_str(stdout, checks[i].value);
        printf(", \"explain\": ");
        json_str(stdout, checks[i].explain);
        printf(", \"fix\": ");
        json_str(stdout, checks[i].fix);
        printf("}");
    }
    printf("], \"configuration\": [");
    (void)each_setting(show_setting_json);
    printf("]}\n");
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hmaf-info [--json] [--pid HOST_PID]\n"
            "       hmaf-info --version | --help\n"
            "What HMAF can do here: the engines built in and whether each "
            "is usable,\nthe system settings that decide it, each with "
            "what it means and what\nto do, and the effective "
            "configuration. Run it where and as whom the\ndpu side runs "
            "(docs/troubleshooting.md).\n"
            "  --json          one JSON object, for programs\n"
            "  --pid HOST_PID  also check that this process may read that "
            "one (cma)\n"
            "Exit status: 0 the default engine (HMAF_ENGINE, else the first "
            "listed) is\nusable here; 1 it is not; 2 usage error.\n");
}

static int parse_args(int argc, char **argv, const char **pid_out)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc &&
                   strtol(argv[i + 1], NULL, 10) > 0) {
            *pid_out = argv[++i];
        } else {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *pid = NULL;
    const hmaf_engine_info_t *def;
    int ret;

    if (asked_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("hmaf-info %d.%d.%d (libhmaf %s)\n", HMAF_VERSION_MAJOR,
               HMAF_VERSION_MINOR, HMAF_VERSION_PATCH, hmaf_version());
        return 0;
    }
    if (parse_args(argc, argv, &pid) != 0) {
        usage(stderr);
        return 2;
    }
    ret = list_engines();
    if (ret < 0) {
        fprintf(stderr, "hmaf-info: hmaf_engine_list: %s\n",
                hmaf_strerror(ret));
        return 1;
    }
    check_ptrace_scope();
    check_cap_ptrace();
    check_seccomp();
    check_vm_readv_self();
    check_vm_readv_peer();
    if (pid != NULL) {
        check_host_pid(pid);
    }
    check_userfaultfd();
    check_membarrier();
    check_limits();
    check_pidns();
    check_doca();
    def = default_engine();
    fflush(stdout);
    if (json) {
        print_json(def);
    } else {
        print_text(def);
    }
    return def != NULL && def->usable ? 0 : 1;
}
