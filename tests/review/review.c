#include "review.h"

#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct watch_page {
    _Atomic uint64_t deadline_ns; /* 0: no step running */
    char step[200];
};

static struct watch_page *watch_page;
static int findings;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

unsigned review_slow(void)
{
    const char *v = getenv("HMAF_REVIEW_SLOW");
    long n = v != NULL ? strtol(v, NULL, 10) : 1;

    return n > 0 ? (unsigned)n : 1;
}

static int in_doc(int got, const int *doc)
{
    for (; *doc != DOC_END; doc++) {
        if (*doc == got) {
            return 1;
        }
    }
    return 0;
}

void review_expect(const char *file, int line, const char *call, int got,
                   int want, const int *doc)
{
    const char *step = watch_page != NULL ? watch_page->step : "";

    if (got == REVIEW_HUNG || got == REVIEW_CRASHED) {
        return; /* reported already */
    }
    if (got == want && got != 0 && !in_doc(got, doc)) {
        findings++;
        printf("  UNDOC %s:%d [%s] %s -> %s (%d), the right code, but the "
               "header does not list it\n",
               file, line, step, call, hmaf_err_name(got), got);
        fflush(stdout);
        return;
    }
    if (got == want ||
        (want == WANT_ANY_DOC && (got == 0 || in_doc(got, doc)))) {
        return;
    }
    findings++;
    if (got != 0 && !in_doc(got, doc)) {
        printf("  UNDOC %s:%d [%s] %s -> %s (%d), not in the header's list"
               " (expected %s)\n",
               file, line, step, call, hmaf_err_name(got), got,
               want == WANT_ANY_DOC ? "a documented code"
                                    : hmaf_err_name(want));
    } else {
        printf("  WRONG %s:%d [%s] %s -> %s (%d), want %s\n", file, line, step,
               call, hmaf_err_name(got), got,
               want == WANT_ANY_DOC ? "a documented code"
                                    : hmaf_err_name(want));
    }
    fflush(stdout);
}

void review_assert(const char *file, int line, const char *what, int ok)
{
    if (!ok) {
        findings++;
        printf("  FAIL  %s:%d [%s] %s\n", file, line,
               watch_page != NULL ? watch_page->step : "", what);
        fflush(stdout);
    }
}

void review_step(const char *name, unsigned budget_ms)
{
    if (watch_page == NULL) {
        return;
    }
    snprintf(watch_page->step, sizeof(watch_page->step), "%s", name);
    atomic_store(&watch_page->deadline_ns,
                 now_ns() + (uint64_t)budget_ms * review_slow() * 1000000u);
}

int review_findings(void)
{
    return findings;
}

int review_count_fds(int pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    if (pid == 0) {
        snprintf(path, sizeof(path), "/proc/self/fd");
    } else {
        snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    }
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return pid == 0 ? n - 1 : n; /* the DIR's own fd */
}

int review_isolated(const char *what, unsigned budget_ms, int (*fn)(void *),
                    void *arg)
{
    uint64_t deadline =
        now_ns() + (uint64_t)budget_ms * review_slow() * 1000000u;
    int fds[2], ret = REVIEW_CRASHED, status = 0;
    pid_t pid;

    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        ret = fn(arg);
        if (write(fds[1], &ret, sizeof(ret)) != sizeof(ret)) {
            _exit(3);
        }
        exit(0); /* let LeakSanitizer look */
    }
    close(fds[1]);
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            close(fds[0]);
            findings++;
            printf("  HANG  [%s] %s: still running after %u ms, killed\n",
                   watch_page != NULL ? watch_page->step : "", what,
                   budget_ms * review_slow());
            fflush(stdout);
            return REVIEW_HUNG;
        }
        usleep(5000);
    }
    if (read(fds[0], &ret, sizeof(ret)) != sizeof(ret)) {
        ret = REVIEW_CRASHED;
        findings++;
        printf("  CRASH [%s] %s: %s %d\n",
               watch_page != NULL ? watch_page->step : "", what,
               WIFSIGNALED(status) ? "signal" : "exit",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        findings++;
        printf("  LEAK? [%s] %s: returned, then exit status %d (see stderr)\n",
               watch_page != NULL ? watch_page->step : "", what, status);
    }
    close(fds[0]);
    fflush(stdout);
    return ret;
}

static void describe_end(const char *name, int status, int hung)
{
    if (hung) {
        printf("%-18s HANG in step [%s] (killed by the watchdog)\n", name,
               watch_page->step);
    } else if (WIFSIGNALED(status)) {
        printf("%-18s CRASH: signal %d in step [%s]\n", name, WTERMSIG(status),
               watch_page->step);
    } else if (WEXITSTATUS(status) == 0) {
        printf("%-18s ok\n", name);
    } else if (WEXITSTATUS(status) == 1) {
        printf("%-18s findings (above)\n", name);
    } else if (WEXITSTATUS(status) == 77) {
        printf("%-18s skipped\n", name);
    } else {
        printf("%-18s exit %d in step [%s] (a sanitizer or leak report, or a "
               "helper's CHECK: see stderr)\n",
               name, WEXITSTATUS(status), watch_page->step);
    }
}

int review_run_group(const char *name, review_group_fn fn)
{
    int status = 0, hung = 0;
    pid_t pid;

    if (watch_page == NULL) {
        watch_page = mmap(NULL, sizeof(*watch_page), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (watch_page == MAP_FAILED) {
            perror("mmap");
            exit(2);
        }
    }
    memset(watch_page, 0, sizeof(*watch_page));
    printf("== %s\n", name);
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        review_step("start", 30000);
        fn();
        review_step("exit (leak check)", 60000);
        exit(findings > 0 ? 1 : 0);
    }
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        uint64_t deadline = atomic_load(&watch_page->deadline_ns);
        if (r == pid) {
            break;
        }
        if (deadline != 0 && now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            hung = 1;
            break;
        }
        usleep(10000);
    }
    describe_end(name, status, hung);
    fflush(stdout);
    return hung || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
