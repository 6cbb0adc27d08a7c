/*
 * A run's metadata: what ran where, when, and how busy the machine was.
 * The same fields head the table, the CSV and the JSON and sit under each
 * chart's title, so that a file found later still says where it came
 * from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

/* Set by the build at configure time (tools/CMakeLists.txt): `git
 * describe --always --dirty` of the source tree. */
#ifndef HMAF_BENCH_COMMIT
#define HMAF_BENCH_COMMIT "unknown"
#endif

static void cpu_model(char *buf, size_t cap)
{
    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");

    snprintf(buf, cap, "unknown cpu");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(buf, cap, "%s", colon + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
}

/* The 1, 5 and 15 minute load averages; -1 where not known. */
static void load_now(double load_out[3])
{
    int n = getloadavg(load_out, 3);

    for (int i = n < 0 ? 0 : n; i < 3; i++) {
        load_out[i] = -1;
    }
}

void meta_start(struct meta *m, const char *engine)
{
    struct utsname u;
    time_t now = time(NULL);
    struct tm tm;

    *m = (struct meta){.commit = HMAF_BENCH_COMMIT};
    snprintf(m->engine, sizeof(m->engine), "%s", engine);
    if (gmtime_r(&now, &tm) == NULL ||
        strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(m->date, sizeof(m->date), "unknown");
    }
    if (gethostname(m->hostname, sizeof(m->hostname)) != 0) {
        snprintf(m->hostname, sizeof(m->hostname), "unknown");
    }
    m->hostname[sizeof(m->hostname) - 1] = '\0'; /* may be truncated */
    cpu_model(m->cpu, sizeof(m->cpu));
    m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(m->kernel, sizeof(m->kernel), "%s",
             uname(&u) == 0 ? u.release : "unknown");
    load_now(m->load_start);
    load_now(m->load_end); /* until meta_end */
}

void meta_end(struct meta *m)
{
    load_now(m->load_end);
}

const char *meta_load_text(const double load[3], char *buf, size_t cap)
{
    snprintf(buf, cap, "%.2f %.2f %.2f", load[0], load[1], load[2]);
    return buf;
}
