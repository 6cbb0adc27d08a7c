/*
 * PNG charts with gnuplot, when it is installed: for each pattern swept
 * over sizes, latency and bandwidth against size, one line per contender.
 * Each chart's script (data inline) is kept beside it, so that it can be
 * redrawn or restyled without running the benchmark again.
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report.h"

extern char **environ;

/* The same colour for a contender on every chart. */
static const struct {
    const char *name;
    const char *style;
} styles[] = {
    {"doca-raw", "lc rgb '#8c564b' dt 1 lw 3 pt 7"},
    {"doca-pipe", "lc rgb '#c49c94' dt 2 lw 2 pt 6"},
    {"raw", "lc rgb '#000000' dt 1 lw 3 pt 7"},
    {"raw-vec", "lc rgb '#777777' dt 2 lw 2 pt 6"},
    {"memcpy", "lc rgb '#2ca02c' dt 1 lw 1.5 pt 9"},
    {"hmaf", "lc rgb '#1f4fd0' dt 1 lw 2 pt 5"},
    {"hmaf-vec", "lc rgb '#5fa8ff' dt 2 lw 1.5 pt 4"},
    {"hmaf-nb", "lc rgb '#9467bd' dt 4 lw 1.5 pt 13"},
    {"hmaf-chase", "lc rgb '#1f4fd0' dt 1 lw 2 pt 11"},
    {"hmaf-chase1", "lc rgb '#5fa8ff' dt 2 lw 1.5 pt 10"},
    {"socket", "lc rgb '#ff7f0e' dt 1 lw 1.5 pt 3"},
    {"socket-spin", "lc rgb '#ff7f0e' dt 2 lw 1.5 pt 1"},
    {"ucx", "lc rgb '#d62728' dt 1 lw 1.5 pt 2"},
};

static const char *style_of(const char *name)
{
    for (size_t i = 0; i < sizeof(styles) / sizeof(styles[0]); i++) {
        if (strcmp(styles[i].name, name) == 0) {
            return styles[i].style;
        }
    }
    return "dt 1";
}

/* `command -v gnuplot` */
static int have_program(const char *prog)
{
    const char *path = getenv("PATH");
    char dir[4096], file[4200];

    while (path != NULL && *path != '\0') {
        size_t n = strcspn(path, ":");
        snprintf(dir, sizeof(dir), "%.*s", (int)n, path);
        snprintf(file, sizeof(file), "%s/%s", n > 0 ? dir : ".", prog);
        if (access(file, X_OK) == 0) {
            return 1;
        }
        path += n + (path[n] == ':');
    }
    return 0;
}

/* The cells of pattern p: [first, first + n). */
static size_t pattern_cells(const struct run *r, const struct pattern *p,
                            size_t *first_out)
{
    size_t n = 0;

    for (size_t i = 0; i < r->ncells; i++) {
        if (r->cells[i].p == p) {
            *first_out = n == 0 ? i : *first_out;
            n++;
        }
    }
    return n;
}

/* Datablock $d<j>: size, us, GB/s of contender j of the first cell. */
static void write_block(FILE *f, const struct cell *cells, size_t n, unsigned j)
{
    const char *name = cells[0].fig[j].c->name;

    fprintf(f, "$d%u << EOD\n", j);
    for (size_t i = 0; i < n; i++) {
        const struct figure *fg = cell_find(&cells[i], name);
        if (fg != NULL) {
            fprintf(f, "%zu %.6g %.6g\n", cells[i].size, fg->ns_med / 1000,
                    (double)cell_bytes(&cells[i]) / fg->ns_med);
        }
    }
    fprintf(f, "EOD\n");
}

static void write_plot(FILE *f, const struct cell *cells, int column)
{
    fprintf(f, "plot ");
    for (unsigned j = 0; j < cells[0].nfig; j++) {
        const char *name = cells[0].fig[j].c->name;
        fprintf(f, "%s$d%u using 1:%d with linespoints %s title '%s'",
                j > 0 ? ", \\\n     " : "", j, column, style_of(name), name);
    }
    fprintf(f, "\n");
}

static void write_xtics(FILE *f, const struct cell *cells, size_t n)
{
    char size[32];

    fprintf(f, "set xtics (");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s'%s' %zu", i > 0 ? ", " : "",
                size_text(cells[i].size, size, sizeof(size)), cells[i].size);
    }
    fprintf(f, ")\n");
}

static void write_script(FILE *f, const struct run *r, const struct cell *cells,
                         size_t n, const char *png)
{
    char unit[96];

    fprintf(f,
            "set terminal pngcairo size 1400,560 font 'sans,11'\n"
            "set output '%s'\n",
            png);
    for (unsigned j = 0; j < cells[0].nfig; j++) {
        write_block(f, cells, n, j);
    }
    fprintf(f,
            "set multiplot layout 1,2 title 'hmaf-bench: %s "
            "(medians of %u rounds)'\n"
            "set logscale xy\nset grid\nset key top left\n"
            "set xlabel 'size'\n",
            cells[0].p->title, r->b->rounds);
    write_xtics(f, cells, n);
    fprintf(f, "set title 'latency (lower is better)'\n"
               "set ylabel '%s'\n",
            unit_text(&cells[0], unit, sizeof(unit)));
    write_plot(f, cells, 2);
    fprintf(f, "set title 'bandwidth (higher is better)'\n"
               "set ylabel 'GB/s'\nset key bottom right\n");
    write_plot(f, cells, 3);
    fprintf(f, "unset multiplot\n");
}

static int run_gnuplot(const char *script)
{
    char *argv[] = {"gnuplot", (char *)script, NULL};
    int status;
    pid_t pid;
    int err = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);

    if (err != 0) {
        fprintf(stderr, "hmaf-bench: gnuplot: %s\n", strerror(err));
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "hmaf-bench: gnuplot %s failed\n", script);
        return -1;
    }
    return 0;
}

static int draw_one(const struct run *r, const struct pattern *p,
                    unsigned *drawn)
{
    char script[4096], png[4096];
    size_t first = 0, n = pattern_cells(r, p, &first);
    FILE *f;

    if (n < 2) {
        return 0; /* a single size makes no curve */
    }
    (*drawn)++;
    snprintf(script, sizeof(script), "%s/%s.gp", r->out_dir, p->id);
    snprintf(png, sizeof(png), "%s/%s.png", r->out_dir, p->id);
    f = fopen(script, "w");
    if (f == NULL) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", script, strerror(errno));
        return -1;
    }
    write_script(f, r, &r->cells[first], n, png);
    if (fclose(f) != 0) {
        return -1;
    }
    return run_gnuplot(script);
}

int draw_charts(const struct run *r, char *note_out, size_t cap)
{
    unsigned drawn = 0;

    if (!have_program("gnuplot")) {
        snprintf(note_out, cap, "gnuplot: not installed, charts skipped");
        return 0;
    }
    for (size_t i = 0; i < r->npatterns; i++) {
        const struct pattern *p = &r->patterns[i];
        if (p->chart && draw_one(r, p, &drawn) < 0) {
            snprintf(note_out, cap, "gnuplot failed: see above");
            return -1;
        }
    }
    snprintf(note_out, cap, "charts: %u PNG files in %s", drawn, r->out_dir);
    return 0;
}
