#include "util/pidns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* /proc is this pid namespace's only if it names us by our pid: a
 * process that entered a new namespace without mounting a /proc of it
 * still sees its parent's, where numbers mean other processes. */
static int proc_is_ours(void)
{
    char link[32];
    ssize_t n = readlink("/proc/self", link, sizeof(link) - 1);

    if (n <= 0) {
        return 0;
    }
    link[n] = '\0';
    return atoi(link) == (int)getpid();
}

/* The last number of the NSpid line: the innermost namespace's. */
static int last_nspid(const char *line)
{
    const char *p = line + strlen("NSpid:");
    int last = 0;
    char *end;

    for (;;) {
        long v = strtol(p, &end, 10);

        if (end == p) {
            return last;
        }
        last = (int)v;
        p = end;
    }
}

int hmaf__pidns_inner_pid(int pid)
{
    char path[64], line[256];
    int inner = 0;
    FILE *f;

    if (pid <= 0 || !proc_is_ours()) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "re");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "NSpid:", 6) == 0) {
            inner = last_nspid(line);
            break;
        }
    }
    fclose(f);
    return inner;
}
