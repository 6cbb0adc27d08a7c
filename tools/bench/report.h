/*
 * What a run produced, and the ways hmaf-bench reports it: the table on
 * stdout, CSV, JSON and gnuplot charts.
 */
#ifndef HMAF_BENCH_REPORT_H
#define HMAF_BENCH_REPORT_H

#include "bench.h"

enum bound_kind { BOUND_AT_MOST, BOUND_AT_LEAST, BOUND_ABOVE };

/*
 * A goal, stated as a ratio of two contenders' times, per round, in one
 * cell: the worst cell counts when several match. Goals against the raw
 * cma calls (raw, raw-vec, raw-uffd) judge HMAF on the cma engine and are
 * n/a on another; the doca engine has a table of its own (main.c).
 *
 * A scaling goal compares that ratio with the same ratio in a reference
 * cell (ref_in, ref_scale): how it grows with N, or with threads. A goal
 * with unit_ns is a time, not a ratio (den is NULL).
 */
struct target {
    const char *what;     /* "64 B read, one at a time" */
    const char *patterns; /* pattern ids, comma-separated */
    size_t size;          /* 0: every size from size_min on */
    const char *num;      /* ratio = num's time / den's time, per round */
    const char *den;
    const char *means; /* how to read the ratio */
    enum bound_kind kind;
    double bound;
    size_t size_min;
    /* num's pattern, when not den's: its cell of the same size, rounds
     * paired by their index (the cells were measured one after the
     * other). NULL: den's cell. */
    const char *num_in;
    /* Non-NULL: den's time is the longer of den's and this contender's,
     * round by round. */
    const char *den_max;
    int report; /* reported against the bound, not judged */
    /* A scaling row: judged at this N (cell->n), or, when the run did not
     * plan that N (--quick), at the largest it planned below. 0: any. */
    unsigned scale;
    /* Non-NULL, or ref_scale non-zero: the value is the ratio over the
     * same ratio in the cell of pattern ref_in (NULL: the judged cell's)
     * at N ref_scale (0: the judged cell's N), of the same size; rounds
     * paired by their index. Without den: num's time over num's time
     * there. */
    const char *ref_in;
    unsigned ref_scale;
    /* > 0: the value is num's time in units of unit_ns ns (times the
     * cell's N with times_n: a total over N units), not a ratio; den is
     * NULL. */
    double unit_ns;
    int times_n;
};

struct target_result {
    const struct target *t;
    const char *num, *den, *means; /* as judged in this run */
    char na[96]; /* why the target does not apply here; "": it does */
    int found;   /* 0: a contender was missing (not installed) */
    const struct cell *cell; /* the cell judged (the worst one) */
    /* The cell judged was not measured (note says why): a miss. */
    const char *unmeasured;
    double ratio, lo, hi;
    int pass;
};

/* meta.c: a run's metadata (docs/benchmarks.md, "Run metadata"). */
struct meta {
    char engine[32];    /* the session's engine */
    const char *commit; /* the build's `git describe`, or "unknown" */
    char date[32];      /* the start, UTC, ISO 8601 */
    char hostname[256];
    char cpu[128];                     /* /proc/cpuinfo's model name */
    long nproc;                        /* cpus online */
    char kernel[128];                  /* uname's release */
    double load_start[3], load_end[3]; /* 1, 5, 15 min; -1: unknown */
};

/* Everything but the load at the end, which meta_end sets. */
void meta_start(struct meta *m, const char *engine);
void meta_end(struct meta *m);
/* "0.52 0.61 0.70" */
const char *meta_load_text(const double load[3], char *buf, size_t cap);

struct run {
    struct bench *b;
    const struct pattern *patterns;
    size_t npatterns;
    struct cell *cells;
    size_t ncells;
    const struct target *targets;
    size_t ntargets;
    struct target_result *results; /* ntargets */
    int quick;
    struct meta meta;
    uint64_t t_start;    /* now_ns() at the start */
    const char *out_dir; /* NULL: no files */
};

/* report.c */
/* Is id one of the comma-separated list's? */
int listed(const char *list, const char *id);
/* Does one of the n targets compare contender `name` in some cell of
 * pattern p? */
int targets_need(const struct target *t, size_t n, const struct pattern *p,
                 const char *name);
const char *size_text(size_t size, char *buf, size_t cap);
const char *unit_text(const struct cell *cell, char *buf, size_t cap);
void report_header(const struct run *r);
void report_progress(const struct cell *cell, unsigned round, void *arg);
void report_progress_done(void);
void judge_targets(struct run *r);
void report_table(const struct run *r);
void report_targets(const struct run *r);
void report_notes(const struct run *r);
int write_csv(const struct run *r, const char *path);
int write_json(const struct run *r, const char *path);

/* charts.c: 0, or -1 when gnuplot failed; *note_out says what happened. */
int draw_charts(const struct run *r, char *note_out, size_t cap);

#endif /* HMAF_BENCH_REPORT_H */
