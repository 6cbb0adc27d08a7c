/*
 * PNG charts with gnuplot, when it is installed: one per pattern of the
 * run. A pattern measured at several sizes (or a scaling row at several
 * N) is drawn against them, one line per contender; one measured at a
 * single size (batches in a --quick run, chases, pings, mapping mode) as
 * one point per contender. The panels: time per unit, bandwidth when the
 * unit moves bytes, and each contender's ratio to the cell's baseline
 * (raw, or what the table calls it) in the same rounds. Every value is a
 * median over the rounds with the rounds' p25-p75 as its error bar, and
 * the run's metadata sits under the title.
 *
 * Each chart's script (data inline) is kept beside it, so that it can be
 * redrawn or restyled without running the benchmark again. One gnuplot
 * process draws them all: a start of gnuplot costs about a tenth of a
 * second, a --quick run draws over twenty charts.
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

#define PANEL_W 620 /* pixels per panel */
#define PANEL_H 600

/* The same colour for a contender on every chart. */
static const struct {
    const char *name;
    const char *style;
} styles[] = {
    {"doca-raw", "lc rgb '#8c564b' dt 1 lw 3 pt 7"},
    {"doca-pipe", "lc rgb '#c49c94' dt 2 lw 2 pt 6"},
    {"raw", "lc rgb '#000000' dt 1 lw 3 pt 7"},
    {"raw-vec", "lc rgb '#777777' dt 2 lw 2 pt 6"},
    {"raw-uffd", "lc rgb '#000000' dt 1 lw 3 pt 7"},
    {"memcpy", "lc rgb '#2ca02c' dt 1 lw 1.5 pt 9"},
    {"hmaf", "lc rgb '#1f4fd0' dt 1 lw 2 pt 5"},
    {"hmaf-vec", "lc rgb '#5fa8ff' dt 2 lw 1.5 pt 4"},
    {"hmaf-nb", "lc rgb '#9467bd' dt 4 lw 1.5 pt 13"},
    {"hmaf-chase", "lc rgb '#1f4fd0' dt 1 lw 2 pt 11"},
    {"hmaf-chase1", "lc rgb '#5fa8ff' dt 2 lw 1.5 pt 10"},
    {"hmaf-map", "lc rgb '#1f4fd0' dt 1 lw 2 pt 5"},
    {"socket", "lc rgb '#ff7f0e' dt 1 lw 1.5 pt 3"},
    {"socket-spin", "lc rgb '#ff7f0e' dt 2 lw 1.5 pt 1"},
    {"ucx", "lc rgb '#d62728' dt 1 lw 1.5 pt 2"},
    {"hmaf-1t", "lc rgb '#17becf' dt 3 lw 1.5 pt 8"},
    {"hmaf-staged", "lc rgb '#17becf' dt 1 lw 1.5 pt 8"},
    {"cpu", "lc rgb '#7f7f7f' dt 1 lw 1.5 pt 12"},
    {"hmaf-nb+cpu", "lc rgb '#9467bd' dt 2 lw 1.5 pt 12"},
    {"doca+cpu", "lc rgb '#8c564b' dt 2 lw 1.5 pt 12"},
    /* The scaling rows' HMAF variants, one or two per pattern. */
    {"hmaf-nsess", "lc rgb '#e377c2' dt 1 lw 2 pt 9"},
    {"hmaf-1cpu", "lc rgb '#e377c2' dt 1 lw 2 pt 9"},
    {"hmaf-miss", "lc rgb '#e377c2' dt 1 lw 2 pt 9"},
    {"hmaf-reg", "lc rgb '#e377c2' dt 1 lw 2 pt 9"},
    {"hmaf-close", "lc rgb '#e377c2' dt 1 lw 2 pt 9"},
    {"hmaf-sweep", "lc rgb '#bcbd22' dt 2 lw 2 pt 8"},
};

static const char *style_of(const char *name)
{
    for (size_t i = 0; i < sizeof(styles) / sizeof(styles[0]); i++) {
        if (strcmp(styles[i].name, name) == 0) {
            return styles[i].style;
        }
    }
    return "dt 1 lw 1.5";
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

/* A gnuplot string: double quotes, so that "\n" breaks a title. */
static void gp_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '\n') {
            fputs("\\n", f);
            continue;
        }
        if (*s == '"' || *s == '\\') {
            fputc('\\', f);
        }
        fputc(*s, f);
    }
    fputc('"', f);
}

/* One pattern's chart. */
struct chart {
    const struct run *r;
    const struct cell *cells; /* the pattern's, measured or not */
    size_t n;
    int curve; /* measured at two or more sizes (or N): lines */
    int bytes; /* its units move bytes: a bandwidth panel */
};

/* The cells of pattern p, [first, first + n), and how many were measured
 * (a scaling row may not have got to its largest N). */
static size_t pattern_cells(const struct run *r, const struct pattern *p,
                            size_t *first_out, size_t *measured_out)
{
    size_t n = 0;

    *measured_out = 0;
    for (size_t i = 0; i < r->ncells; i++) {
        if (r->cells[i].p == p) {
            *first_out = n == 0 ? i : *first_out;
            n++;
            *measured_out += r->cells[i].rounds > 0;
        }
    }
    return n;
}

/* A cell's place on a curve's x axis: its size, or a scaling row's N. */
static double x_of(const struct cell *cell)
{
    return cell->p->axis != NULL ? (double)cell->n : (double)cell->size;
}

/* One row of datablock $d<j>: x, then value, p25, p75 of the time (us),
 * the bandwidth (GB/s) and the ratio to the baseline. */
static void write_row(FILE *f, const struct cell *cell, const struct figure *fg,
                      double x)
{
    double bytes = (double)cell_bytes(cell);
    double lo = fg->ns_lo > 0 ? fg->ns_lo : fg->ns_med;
    double hi = fg->ns_hi > 0 ? fg->ns_hi : fg->ns_med;

    fprintf(f, "%.6g %.6g %.6g %.6g %.6g %.6g %.6g %.6g %.6g %.6g\n", x,
            fg->ns_med / 1000, lo / 1000, hi / 1000, bytes / fg->ns_med,
            bytes / hi, bytes / lo, fg->ratio, fg->lo, fg->hi);
}

/* Contender j's datablock: a row per measured cell it has a figure in;
 * a single cell's at x = j. */
static void write_block(FILE *f, const struct chart *ch, unsigned j)
{
    const char *name = ch->cells[0].fig[j].c->name;

    fprintf(f, "$d%u << EOD\n", j);
    for (size_t i = 0; i < ch->n; i++) {
        const struct cell *cell = &ch->cells[i];
        const struct figure *fg = cell_find(cell, name);
        if (cell->rounds > 0 && fg != NULL && fg->ns_med > 0) {
            write_row(f, cell, fg, ch->curve ? x_of(cell) : (double)j);
        }
    }
    fprintf(f, "EOD\n");
}

/* One panel's plot command: columns y, y_lo, y_hi of every contender
 * from `from` on (the ratio panel leaves the baseline out). */
static void write_plot(FILE *f, const struct chart *ch, int y, unsigned from)
{
    const char *with = ch->curve ? "yerrorlines" : "yerrorbars";
    const char *sep = "plot ";

    for (unsigned j = from; j < ch->cells[0].nfig; j++) {
        const char *name = ch->cells[0].fig[j].c->name;
        fprintf(f, "%s$d%u using 1:%d:%d:%d with %s %s ps 1.3 title ", sep, j,
                y, y + 1, y + 2, with, style_of(name));
        gp_str(f, name);
        sep = ", \\\n     ";
    }
    /* The ratio panel: the baseline's 1, also its only line when the
     * baseline ran alone. */
    if (from > 0) {
        fprintf(f, "%s1 with lines lc rgb '#000000' dt 3 title ", sep);
        gp_str(f, ch->cells[0].fig[0].c->name);
    }
    fprintf(f, "\n");
}

/* The x axis: sizes (or N) on a log scale, or the contenders' names. */
static void write_x_axis(FILE *f, const struct chart *ch)
{
    const struct cell *c0 = &ch->cells[0];
    char text[32];
    int k = 0;

    fprintf(f, "set xtics (");
    if (!ch->curve) {
        for (unsigned j = 0; j < c0->nfig; j++) {
            fprintf(f, "%s", j > 0 ? ", " : "");
            gp_str(f, c0->fig[j].c->name);
            fprintf(f, " %u", j);
        }
        /* The names say which point is whose: no key. */
        fprintf(f,
                ") rotate by -35\nset xrange [-0.6:%u.6]\nunset xlabel\n"
                "unset key\n",
                c0->nfig > 0 ? c0->nfig - 1 : 0);
        return;
    }
    for (size_t i = 0; i < ch->n; i++) {
        const struct cell *cell = &ch->cells[i];
        if (cell->rounds == 0) {
            continue;
        }
        if (cell->p->axis != NULL) {
            snprintf(text, sizeof(text), "%u", cell->n);
        } else {
            size_text(cell->size, text, sizeof(text));
        }
        fprintf(f, "%s", k++ > 0 ? ", " : "");
        gp_str(f, text);
        fprintf(f, " %.6g", x_of(cell));
    }
    /* Room for the end points' error bars. */
    fprintf(f, ")\nset logscale x\nset offsets graph 0.06, graph 0.06, 0, 0"
               "\nset xlabel ");
    gp_str(f, c0->p->axis != NULL ? c0->p->axis : "size");
    fprintf(f, "\n");
}

/* The multiplot's title: the pattern, how the figures were made, and the
 * run's metadata. */
static void write_title(FILE *f, const struct chart *ch)
{
    const struct run *r = ch->r;
    const struct meta *m = &r->meta;
    const struct cell *c0 = &ch->cells[0];
    char title[1024], at[64] = "", load0[64], load1[64];

    if (!ch->curve && c0->p->axis != NULL) {
        snprintf(at, sizeof(at), ", %u %s", c0->n, c0->p->axis);
    } else if (!ch->curve && c0->size > 0) {
        size_text(c0->size, at, sizeof(at));
        memmove(at + 2, at, strlen(at) + 1);
        memcpy(at, ", ", 2);
    }
    snprintf(title, sizeof(title),
             "hmaf-bench: %s%s; medians of %u rounds%s, bars p25-p75\n"
             "engine %s, commit %s, %s; %s: %s, %ld cpus, Linux %s\n"
             "load average %s at the start, %s at the end",
             c0->p->title, at, r->b->rounds, r->quick ? " (--quick)" : "",
             m->engine, m->commit, m->date, m->hostname, m->cpu, m->nproc,
             m->kernel, meta_load_text(m->load_start, load0, sizeof(load0)),
             meta_load_text(m->load_end, load1, sizeof(load1)));
    fprintf(f, "set multiplot layout 1,%d title ", ch->bytes ? 3 : 2);
    gp_str(f, title);
    fprintf(f, "\n");
}

static void write_panels(FILE *f, const struct chart *ch)
{
    const struct cell *c0 = &ch->cells[0];
    char unit[96], text[160];

    fprintf(f, "set title 'time per unit (lower is better)'\nset ylabel ");
    gp_str(f, unit_text(c0, unit, sizeof(unit)));
    fprintf(f, "\n");
    write_plot(f, ch, 2, 0);
    if (ch->bytes) {
        fprintf(f, "set title 'bandwidth (higher is better)'\n"
                   "set ylabel 'GB/s'\n");
        write_plot(f, ch, 5, 0);
    }
    snprintf(text, sizeof(text), "ratio to %s: time / %s's in the same round",
             c0->fig[0].c->name, c0->fig[0].c->name);
    fprintf(f, "set title ");
    gp_str(f, text);
    snprintf(text, sizeof(text), "dotted line: 1, %s itself; below: faster",
             c0->fig[0].c->name);
    fprintf(f, "\nset ylabel ");
    gp_str(f, text);
    fprintf(f, "\n");
    write_plot(f, ch, 8, 1);
}

static void write_script(FILE *f, const struct chart *ch, const char *png)
{
    fprintf(f,
            "reset\nset terminal pngcairo noenhanced size %d,%d "
            "font 'sans,10'\nset output ",
            PANEL_W * (ch->bytes ? 3 : 2), PANEL_H);
    gp_str(f, png);
    fprintf(f, "\n");
    for (unsigned j = 0; j < ch->cells[0].nfig; j++) {
        write_block(f, ch, j);
    }
    write_title(f, ch);
    fprintf(f, "set logscale y\nset format y '%%g'\nset grid\n"
               "set key top left font ',9'\nset bars small\nset tmargin 6\n");
    write_x_axis(f, ch);
    write_panels(f, ch);
    fprintf(f, "unset multiplot\nunset output\n");
}

/* Pattern p's script, when it has a measured cell; *script_out then
 * names it (malloc'd). */
static int script_one(const struct run *r, const struct pattern *p,
                      char **script_out)
{
    char script[4096], png[4096];
    size_t first = 0, measured, n = pattern_cells(r, p, &first, &measured);
    struct chart ch = {.r = r, .cells = &r->cells[first], .n = n};
    FILE *f;

    *script_out = NULL;
    if (measured == 0 || ch.cells[0].nfig == 0) {
        return 0;
    }
    ch.curve = measured > 1;
    ch.bytes = cell_bytes(&ch.cells[0]) > 0;
    snprintf(script, sizeof(script), "%s/%s.gp", r->out_dir, p->id);
    snprintf(png, sizeof(png), "%s.png", p->id); /* beside its script */
    f = fopen(script, "w");
    if (f == NULL) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", script, strerror(errno));
        return -1;
    }
    write_script(f, &ch, png);
    if (fclose(f) != 0) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", script, strerror(errno));
        return -1;
    }
    *script_out = strdup(script + strlen(r->out_dir) + 1);
    return *script_out != NULL ? 0 : -1;
}

/* gnuplot -e "cd DIR" SCRIPT...: each script names its PNG, both
 * relative to DIR, so that `cd DIR && gnuplot SCRIPT` redraws one. */
static int run_gnuplot(char **argv, const char *dir)
{
    char cd[8192];
    int status;
    pid_t pid;
    int err;
    size_t at = snprintf(cd, sizeof(cd), "cd \"");

    for (const char *s = dir; *s != '\0' && at + 4 < sizeof(cd); s++) {
        if (*s == '"' || *s == '\\') {
            cd[at++] = '\\';
        }
        cd[at++] = *s;
    }
    snprintf(cd + at, sizeof(cd) - at, "\"");
    argv[0] = "gnuplot";
    argv[1] = "-e";
    argv[2] = cd;
    err = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);

    if (err != 0) {
        fprintf(stderr, "hmaf-bench: gnuplot: %s\n", strerror(err));
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "hmaf-bench: gnuplot failed on the scripts in %s\n",
                dir);
        return -1;
    }
    return 0;
}

/* argv: "gnuplot", "-e", "cd DIR", a script per pattern, NULL */
#define ARGV_SCRIPTS 3

static void free_scripts(char **argv, size_t n)
{
    for (size_t i = ARGV_SCRIPTS; i < ARGV_SCRIPTS + n; i++) {
        free(argv[i]);
    }
    free(argv);
}

int draw_charts(const struct run *r, char *note_out, size_t cap)
{
    char **argv = calloc(ARGV_SCRIPTS + r->npatterns + 1, sizeof(*argv));
    size_t n = 0;
    int ret = argv != NULL ? 0 : -1;

    if (!have_program("gnuplot")) {
        snprintf(note_out, cap, "gnuplot: not installed, charts skipped");
        free(argv);
        return 0;
    }
    for (size_t i = 0; i < r->npatterns && ret == 0; i++) {
        ret = script_one(r, &r->patterns[i], &argv[ARGV_SCRIPTS + n]);
        n += argv[ARGV_SCRIPTS + n] != NULL;
    }
    if (ret == 0 && n > 0) {
        ret = run_gnuplot(argv, r->out_dir);
    }
    if (argv != NULL) {
        free_scripts(argv, n);
    }
    if (ret < 0) {
        snprintf(note_out, cap, "charts: failed, see above");
        return -1;
    }
    snprintf(note_out, cap, "charts: %zu PNG files in %s", n, r->out_dir);
    return 0;
}
