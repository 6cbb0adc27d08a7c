/*
 * The table on stdout, progress on a terminal, the targets, CSV and JSON.
 *
 * Times are per unit of work (one transfer, one batch, one walk of the
 * chains, one round trip); a ratio is a figure's time over the baseline's
 * (raw, or doca-raw) in the same round, the median over the rounds. Below
 * 1 is faster than the baseline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "../json.h"

/* Per-round ratios spread wider than this, relative (p25 to p75): the
 * figure is marked noisy. */
#define NOISY_SPREAD 0.10
#define COL_WIDTH    15

const char *size_text(size_t size, char *buf, size_t cap)
{
    if (size == 0) {
        snprintf(buf, cap, "-");
    } else if (size >= (1u << 20) && size % (1u << 20) == 0) {
        snprintf(buf, cap, "%zu MiB", size >> 20);
    } else if (size >= 1024 && size % 1024 == 0) {
        snprintf(buf, cap, "%zu KiB", size >> 10);
    } else {
        snprintf(buf, cap, "%zu B", size);
    }
    return buf;
}

/* A table row's label: the size, or a scaling row's N. */
static const char *row_text(const struct cell *cell, char *buf, size_t cap)
{
    if (cell->p->axis != NULL) {
        snprintf(buf, cap, "%u", cell->n);
        return buf;
    }
    return size_text(cell->size, buf, cap);
}

/* About four significant digits in at most 7 characters. */
static const char *num_text(double v, char *buf, size_t cap)
{
    const char *fmt = v < 1      ? "%.4f"
                      : v < 10   ? "%.3f"
                      : v < 100  ? "%.2f"
                      : v < 1000 ? "%.1f"
                                 : "%.0f";

    snprintf(buf, cap, fmt, v);
    return buf;
}

static const char *ratio_text(double v, char *buf, size_t cap)
{
    const char *fmt = v < 0.1 ? "%.3f" : v < 10 ? "%.2f" : "%.1f";

    snprintf(buf, cap, fmt, v);
    return buf;
}

static double gb_per_s(const struct cell *cell, const struct figure *f);

static int noisy(const struct figure *f)
{
    return f->hi - f->lo > NOISY_SPREAD * f->ratio;
}

const char *unit_text(const struct cell *cell, char *buf, size_t cap)
{
    const struct pattern *p = cell->p;

    if (p->unit != NULL) {
        snprintf(buf, cap, "%s", p->unit);
        return buf;
    }
    switch (p->kind) {
    case KIND_BATCH:
        snprintf(buf, cap, "us per batch of %u reads", p->count);
        break;
    case KIND_CHASE:
        snprintf(buf, cap, "us per walk of %u chain%s x %u nodes", p->count,
                 p->count > 1 ? "s" : "", cell->nodes);
        break;
    case KIND_PING:
        snprintf(buf, cap, "us per round trip");
        break;
    case KIND_FAULT:
        snprintf(buf, cap, "us per page, one word touched in each");
        break;
    case KIND_OVERLAP:
        snprintf(buf, cap, "us per batch of %u reads, or its CPU work",
                 p->count);
        break;
    default:
        snprintf(buf, cap, "us per transfer%s",
                 p->threads > 1   ? ", all threads together"
                 : p->idle_ns > 0 ? ", the idle spell before it not counted"
                                  : "");
    }
    return buf;
}

/* ------------------------------------------------------------------ */
/* Header and progress                                                 */
/* ------------------------------------------------------------------ */

/* Does c have a figure in some cell of the run? */
static int in_run(const struct run *r, const struct contender *c)
{
    for (size_t i = 0; i < r->ncells; i++) {
        for (unsigned j = 0; j < r->cells[i].nfig; j++) {
            if (r->cells[i].fig[j].c == c) {
                return 1;
            }
        }
    }
    return 0;
}

/* The contenders this run measures (not those of patterns left out). */
static void print_legend(const struct run *r)
{
    printf("contenders (a figure's ratio is its time over %s's):\n",
           r->b->baseline);
    for (size_t i = 0; i < bench_ncontenders; i++) {
        const struct contender *c = &bench_contenders[i];
        if (in_run(r, c)) {
            printf("  %-12s %s\n", c->name, c->what);
        }
    }
}

/* Split mode: the contenders left out, and why, once per name. */
static void print_skipped(void)
{
    const char *last = "";

    printf("split mode: not run, they need the host process on this "
           "machine:\n");
    for (size_t i = 0; i < bench_ncontenders; i++) {
        const struct contender *c = &bench_contenders[i];
        if (c->same_machine != NULL && strcmp(c->name, last) != 0) {
            printf("  %-12s %s\n", c->name, c->same_machine);
            last = c->name;
        }
    }
}

static void print_notes(const struct bench *b)
{
    if (b->ucx_note[0] != '\0') {
        printf("%s\n", b->ucx_note);
    }
    if (b->draw_note[0] != '\0') {
        printf("%s\n", b->draw_note);
    }
    if (b->staged_note[0] != '\0') {
        printf("%s\n", b->staged_note);
    }
    if (b->split) {
        print_skipped();
    }
}

/* Where the threads are, and where the host is. */
static void placement_text(const struct bench *b, char *buf, size_t cap)
{
    int n = b->split ? snprintf(buf, cap, "host at %s (split mode), ",
                                b->host->address)
                     : snprintf(buf, cap, "host pid %d, ", (int)b->pid);
    size_t at = n > 0 && (size_t)n < cap ? (size_t)n : 0;

    if (b->dpu_cpu == NO_CPU) {
        snprintf(buf + at, cap - at, "not pinned");
    } else if (b->split) {
        snprintf(buf + at, cap - at, "dpu side on cpu %d (second thread: %d)",
                 b->dpu_cpu, b->w[1].cpu);
    } else {
        snprintf(buf + at, cap - at,
                 "dpu side on cpu %d (second thread: %d), host on cpu %d",
                 b->dpu_cpu, b->w[1].cpu, b->host->cpu);
    }
}

void report_header(const struct run *r)
{
    const struct bench *b = r->b;
    const struct meta *m = &r->meta;
    char where[256], load[64];

    placement_text(b, where, sizeof(where));
    printf("hmaf-bench %d.%d.%d (commit %s): engine %s, %s\n"
           "machine: %s, %s, %ld cpus, Linux %s, load %s; %s\n"
           "%u rounds%s, about %.1f ms per contender and round; figures: "
           "medians of the rounds;\nratio: median of the per-round ratios "
           "to %s, the same work on the same addresses\n",
           HMAF_VERSION_MAJOR, HMAF_VERSION_MINOR, HMAF_VERSION_PATCH,
           m->commit, m->engine, where, m->hostname, m->cpu, m->nproc,
           m->kernel, meta_load_text(m->load_start, load, sizeof(load)),
           m->date, b->rounds, r->quick ? " (quick)" : "", b->target_ns / 1e6,
           b->baseline);
    print_notes(b);
    if (b->cpus_shared) {
        printf("fewer than 3 cpus: contenders that need a host thread sit "
               "out 2-thread patterns\n");
    }
    print_legend(r);
    fflush(stdout);
}

/* One line, rewritten in place, on a terminal only. */
void report_progress(const struct cell *cell, unsigned round, void *arg)
{
    const struct run *r = arg;
    char size[32];

    if (!isatty(STDERR_FILENO)) {
        return;
    }
    fprintf(stderr, "\r\033[K[%3zu/%zu %3.0f s] %s, %s: round %u/%u",
            (size_t)(cell - r->cells) + 1, r->ncells,
            (now_ns() - r->t_start) / 1e9, cell->p->title,
            row_text(cell, size, sizeof(size)), round + 1, r->b->rounds);
}

void report_progress_done(void)
{
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K");
    }
}

/* ------------------------------------------------------------------ */
/* The table                                                           */
/* ------------------------------------------------------------------ */

static void print_group_head(const struct cell *cell)
{
    char unit[96];

    printf("\n%s: %s (ratio to %s)\n%8.8s", cell->p->title,
           unit_text(cell, unit, sizeof(unit)), cell->fig[0].c->name,
           cell->p->axis != NULL ? cell->p->axis : "size");
    for (unsigned i = 0; i < cell->nfig; i++) {
        printf(" %*s", i == 0 ? 8 : COL_WIDTH, cell->fig[i].c->name);
    }
    printf("\n");
}

static void print_row(const struct cell *cell)
{
    char size[32], num[32], ratio[32], col[80];

    printf("%8s", row_text(cell, size, sizeof(size)));
    if (cell->rounds == 0) {
        printf(" not measured\n");
        return;
    }
    for (unsigned i = 0; i < cell->nfig; i++) {
        const struct figure *f = &cell->fig[i];
        num_text(f->ns_med / 1000, num, sizeof(num));
        if (i == 0) {
            printf(" %8s", num); /* the baseline: its ratio is 1 */
            continue;
        }
        snprintf(col, sizeof(col), "%s (%s%s)", num,
                 ratio_text(f->ratio, ratio, sizeof(ratio)),
                 noisy(f) ? "~" : "");
        printf(" %*s", COL_WIDTH, col);
    }
    printf("\n");
}

/* Mapping mode's rates, which its targets speak of. */
static void print_rates(const struct cell *cell)
{
    printf("%8s", "GB/s");
    for (unsigned i = 0; i < cell->nfig; i++) {
        printf(" %*.3f", i == 0 ? 8 : COL_WIDTH, gb_per_s(cell, &cell->fig[i]));
    }
    printf("\n");
}

static void print_mapping_head(const struct bench *b)
{
    printf("\nmapping mode: hmaf_map_create over the data area against a "
           "bare userfaultfd\nfault service; every timed touch is a page's "
           "first, except in second-touch reads%s%s\n",
           b->map_note[0] != '\0' ? "\n" : "", b->map_note);
}

void report_table(const struct run *r)
{
    int mapping = 0;

    for (size_t i = 0; i < r->ncells; i++) {
        const struct cell *cell = &r->cells[i];
        if (cell->p->mapping && !mapping) {
            print_mapping_head(r->b);
            mapping = 1;
        }
        if (i == 0 || cell->p != r->cells[i - 1].p) {
            print_group_head(cell);
        }
        print_row(cell);
        if (cell->note[0] != '\0') {
            printf("%8s %s\n", "", cell->note);
        }
        if (cell->p->mapping && cell->p->where != AT_RANDOM) {
            print_rates(cell);
        }
    }
    if (mapping) {
        char stats[256];
        mapping_stats(r->b, stats, sizeof(stats));
        printf("hmaf_map_stats: %s\n", stats);
    } else if (r->b->map == NULL) {
        printf("\nmapping mode: not available here (%s)\n", r->b->map_note);
    }
}

/* ------------------------------------------------------------------ */
/* Targets                                                             */
/* ------------------------------------------------------------------ */

static int passes(const struct target *t, double ratio)
{
    switch (t->kind) {
    case BOUND_AT_MOST:
        return ratio <= t->bound;
    case BOUND_AT_LEAST:
        return ratio >= t->bound;
    default:
        return ratio > t->bound;
    }
}

/* Is a the worse of two ratios for t? */
static int worse(const struct target *t, double a, double b)
{
    return t->kind == BOUND_AT_MOST ? a > b : a < b;
}

int listed(const char *list, const char *id)
{
    size_t n = strlen(id);

    for (const char *at = list; at != NULL; at = strchr(at, ',')) {
        at += *at == ',';
        if (strncmp(at, id, n) == 0 && (at[n] == ',' || at[n] == '\0')) {
            return 1;
        }
    }
    return 0;
}

/* The raw cma contenders, which only stand for HMAF's cma engine. */
static int is_raw_cma(const char *name)
{
    return name != NULL &&
           (strcmp(name, "raw") == 0 || strcmp(name, "raw-vec") == 0 ||
            strcmp(name, "raw-uffd") == 0);
}

/* Does a contender of this name run here at all? */
static int runs_here(const struct bench *b, const char *name)
{
    for (size_t i = 0; i < bench_ncontenders; i++) {
        const struct contender *c = &bench_contenders[i];
        if (strcmp(c->name, name) == 0 && contender_runs(b, c)) {
            return 1;
        }
    }
    return 0;
}

/*
 * A goal against a raw cma call judges HMAF's cma engine: on another
 * engine the call does not measure what HMAF does (process_vm_readv does
 * not cross PCIe), so the goal does not apply (res->na says why). The doca
 * engine's goals are against raw DOCA DMA (main.c). Nor does a goal apply
 * when one of its contenders cannot run here (not built, not set up, or
 * split mode).
 */
static void resolve_target(const struct bench *b, const struct target *t,
                           struct target_result *res)
{
    const char *raw = is_raw_cma(t->num) ? t->num : t->den;
    const char *names[] = {t->num, t->den, t->den_max};

    res->num = t->num;
    res->den = t->den;
    res->means = t->means;
    if (is_raw_cma(raw) && strcmp(b->engine, "cma") != 0) {
        snprintf(res->na, sizeof(res->na),
                 "%s is cma; HMAF runs %s, no raw counterpart", raw, b->engine);
        return;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i] != NULL && !runs_here(b, names[i])) {
            snprintf(res->na, sizeof(res->na), "%s does not run here",
                     names[i]);
            return;
        }
    }
}

static int sized(const struct target *t, size_t size)
{
    return t->size != 0 ? size == t->size : size >= t->size_min;
}

static int has_ref(const struct target *t)
{
    return t->ref_in != NULL || t->ref_scale != 0;
}

/* The N a scaling target is judged at: its own, or the largest N the run
 * planned below it (--quick plans fewer). */
static unsigned judged_scale(const struct run *r, const struct target *t)
{
    unsigned at = 0;

    for (size_t i = 0; i < r->ncells; i++) {
        const struct cell *cell = &r->cells[i];
        if (listed(t->patterns, cell->p->id) && cell->n <= t->scale &&
            cell->n > at) {
            at = cell->n;
        }
    }
    return at;
}

/* Is cell one of those t judges (at: judged_scale's N)? */
static int covers(const struct target *t, const struct cell *cell, unsigned at)
{
    return listed(t->patterns, cell->p->id) && sized(t, cell->size) &&
           (t->scale == 0 || cell->n == at);
}

/* Does t compare contender `name` in some cell of pattern p? */
static int needs(const struct target *t, const struct pattern *p,
                 const char *name)
{
    int is_num = strcmp(t->num, name) == 0;
    int is_den = t->den != NULL && strcmp(t->den, name) == 0;

    if (t->num_in != NULL && strcmp(t->num_in, p->id) == 0 && is_num) {
        return 1;
    }
    if (t->ref_in != NULL && strcmp(t->ref_in, p->id) == 0 &&
        (is_num || is_den)) {
        return 1;
    }
    if (!listed(t->patterns, p->id)) {
        return 0;
    }
    return (is_num && t->num_in == NULL) || is_den ||
           (t->den_max != NULL && strcmp(t->den_max, name) == 0);
}

int targets_need(const struct target *t, size_t n, const struct pattern *p,
                 const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (needs(&t[i], p, name)) {
            return 1;
        }
    }
    return 0;
}

/* The cell of pattern id at size and N, or NULL. */
static const struct cell *find_cell(const struct run *r, const char *id,
                                    size_t size, unsigned n)
{
    for (size_t i = 0; i < r->ncells; i++) {
        const struct cell *cell = &r->cells[i];
        if (strcmp(cell->p->id, id) == 0 && cell->size == size &&
            cell->n == n) {
            return cell;
        }
    }
    return NULL;
}

/* What a target compares in one cell, round by round. */
struct judged {
    const struct figure *num, *den, *den2;  /* den2: den_max's, or NULL */
    const struct figure *ref_num, *ref_den; /* NULL: no reference cell */
    unsigned rounds;                        /* paired by index: the fewest */
    const struct cell *unmeasured;          /* one of the cells was not */
};

/* Take cell c's rounds into j; 0 when it was not measured. */
static int pair_rounds(struct judged *j, const struct cell *c)
{
    if (c->rounds == 0) {
        j->unmeasured = c;
        return 0;
    }
    j->rounds = j->rounds == 0 || c->rounds < j->rounds ? c->rounds : j->rounds;
    return 1;
}

/* The reference cell's figures, when t has one; 0 when one did not run
 * there, -1 when the cell was not measured. */
static int gather_ref(const struct run *r, const struct target_result *res,
                      const struct cell *cell, struct judged *j)
{
    const struct target *t = res->t;
    const struct cell *ref;

    if (!has_ref(t)) {
        return 1;
    }
    ref = find_cell(r, t->ref_in != NULL ? t->ref_in : cell->p->id, cell->size,
                    t->ref_scale != 0 ? t->ref_scale : cell->n);
    if (ref == NULL) {
        return 0;
    }
    j->ref_num = cell_find(ref, res->num);
    j->ref_den = res->den != NULL ? cell_find(ref, res->den) : NULL;
    if (j->ref_num == NULL || (res->den != NULL && j->ref_den == NULL)) {
        return 0;
    }
    return pair_rounds(j, ref) ? 1 : -1;
}

/* The figures t compares in cell (num's may be in another, and the
 * reference in a third): 1; 0 when one did not run there; -1 when one of
 * the cells was not measured (j->unmeasured). */
static int gather(const struct run *r, const struct target_result *res,
                  const struct cell *cell, struct judged *j)
{
    const struct target *t = res->t;
    const struct cell *at =
        t->num_in != NULL ? find_cell(r, t->num_in, cell->size, cell->n) : cell;

    *j = (struct judged){.rounds = 0};
    if (at == NULL) {
        return 0;
    }
    j->num = cell_find(at, res->num);
    j->den = res->den != NULL ? cell_find(cell, res->den) : NULL;
    j->den2 = t->den_max != NULL ? cell_find(cell, t->den_max) : NULL;
    if (j->num == NULL || (res->den != NULL && j->den == NULL) ||
        (t->den_max != NULL && j->den2 == NULL)) {
        return 0;
    }
    if (!pair_rounds(j, cell) || !pair_rounds(j, at)) {
        return -1;
    }
    return gather_ref(r, res, cell, j);
}

/* Num's time over den's in round k: den's being the longer of den's and
 * den2's; without den, num's time. */
static double ratio_in(const struct figure *num, const struct figure *den,
                       const struct figure *den2, unsigned k)
{
    double d = den != NULL ? den->ns[k] : 1;

    if (den2 != NULL && den2->ns[k] > d) {
        d = den2->ns[k];
    }
    return num->ns[k] / d;
}

/* Round k's value: num's time over den's, over the same in the reference
 * cell; or num's time in t->unit_ns units. */
static double round_value(const struct target *t, const struct judged *j,
                          unsigned n, unsigned k)
{
    double v = j->num->ns[k];

    if (t->unit_ns > 0) {
        return v * (t->times_n ? n : 1) / t->unit_ns;
    }
    v = ratio_in(j->num, j->den, j->den2, k);
    if (j->ref_num != NULL) {
        v /= ratio_in(j->ref_num, j->ref_den, NULL, k);
    }
    return v;
}

/* res's figures from cell's rounds, if they are worse than those kept. */
static void judge_cell(const struct target *t, const struct judged *j,
                       const struct cell *cell, struct target_result *res)
{
    double v[ROUNDS_MAX], ratio, lo, hi;

    for (unsigned k = 0; k < j->rounds; k++) {
        v[k] = round_value(t, j, cell->n, k);
    }
    ratio = quantile(v, j->rounds, 0.5);
    lo = quantile(v, j->rounds, 0.25);
    hi = quantile(v, j->rounds, 0.75);
    if (!res->found || worse(t, ratio, res->ratio)) {
        res->found = 1;
        res->cell = cell;
        res->ratio = ratio;
        res->lo = lo;
        res->hi = hi;
    }
}

/* The worst of t's cells, or none found. A cell t needs that was not
 * measured (a scaling row that ran out of time) is a miss. */
static void judge_one(const struct run *r, const struct target *t,
                      struct target_result *res)
{
    unsigned at = t->scale != 0 ? judged_scale(r, t) : 0;

    *res = (struct target_result){.t = t};
    resolve_target(r->b, t, res);
    for (size_t i = 0; i < r->ncells && res->na[0] == '\0'; i++) {
        const struct cell *cell = &r->cells[i];
        struct judged j;
        int got;
        if (!covers(t, cell, at)) {
            continue;
        }
        got = gather(r, res, cell, &j);
        if (got < 0) {
            res->found = 1;
            res->cell = cell;
            res->unmeasured = j.unmeasured->note[0] != '\0' ? j.unmeasured->note
                                                            : "not measured";
            break;
        }
        if (got > 0) {
            judge_cell(t, &j, cell, res);
        }
    }
    res->pass = res->found && res->unmeasured == NULL && passes(t, res->ratio);
}

void judge_targets(struct run *r)
{
    for (size_t i = 0; i < r->ntargets; i++) {
        judge_one(r, &r->targets[i], &r->results[i]);
    }
}

static const char *bound_text(const struct target *t, char *buf, size_t cap)
{
    static const char *const op[] = {"<=", ">=", ">"};

    snprintf(buf, cap, "%s %.2f", op[t->kind], t->bound);
    return buf;
}

/* PASS or MISS; a line only reported says what it would be. */
static const char *result_text(const struct target_result *x)
{
    if (x->t->report) {
        return x->pass ? "(report: would pass)" : "(report: would miss)";
    }
    return x->pass ? "PASS" : "MISS";
}

/* Which of several cells was judged. */
static void print_judged_cell(const struct target_result *x)
{
    const struct target *t = x->t;
    char size[32];

    if (t->scale != 0) {
        printf(" (at %u %s)", x->cell->n, x->cell->p->axis);
    } else if (strchr(t->patterns, ',') != NULL) {
        printf(" (worst: %s %s)", x->cell->p->id,
               size_text(x->cell->size, size, sizeof(size)));
    } else if (t->size == 0 && x->cell->size != 0) {
        printf(" (worst: %s)", size_text(x->cell->size, size, sizeof(size)));
    }
}

void report_targets(const struct run *r)
{
    char bound[16], why[192];

    printf("\ntargets (each a median of per-round ratios in this run)\n"
           "%-34s %-40s %7s  %-13s %-8s %s\n",
           "what", "ratio", "value", "(p25-p75)", "target", "result");
    for (size_t i = 0; i < r->ntargets; i++) {
        const struct target_result *x = &r->results[i];
        const struct target *t = x->t;
        bound_text(t, bound, sizeof(bound));
        if (!x->found || x->unmeasured != NULL) {
            if (x->unmeasured != NULL) {
                snprintf(why, sizeof(why), "%s (%s)", result_text(x),
                         x->unmeasured);
            } else {
                snprintf(why, sizeof(why), "n/a (%s)",
                         x->na[0] != '\0' ? x->na : "not measured");
            }
            printf("%-34s %-40s %7s  %-13s %-8s %s\n", t->what, x->means, "-",
                   "", bound, why);
            continue;
        }
        printf("%-34s %-40s %7.3f  (%5.3f-%5.3f) %-8s %s", t->what, x->means,
               x->ratio, x->lo, x->hi, bound, result_text(x));
        print_judged_cell(x);
        printf("\n");
    }
}

void report_notes(const struct run *r)
{
    unsigned figures = 0, noisy_figures = 0;

    for (size_t i = 0; i < r->ncells; i++) {
        for (unsigned j = 1; j < r->cells[i].nfig && r->cells[i].rounds > 0;
             j++) {
            figures++;
            noisy_figures += (unsigned)noisy(&r->cells[i].fig[j]);
        }
    }
    printf("\nnotes: %u of %u ratios (marked ~) had rounds disagreeing by "
           "more than %.0f%% (p25-p75):\n       the machine was busy "
           "then. Load average %.2f at the start, %.2f at the end.\n",
           noisy_figures, figures, NOISY_SPREAD * 100, r->meta.load_start[0],
           r->meta.load_end[0]);
    if (r->b->reruns > 0) {
        printf("       %u contender side(s) of a round run again because "
               "other tasks kept our\n       threads waiting for a cpu; %u "
               "still were on the last try.\n",
               r->b->reruns, r->b->kept);
    }
    printf("       Run time %.0f s.\n", (now_ns() - r->t_start) / 1e9);
}

/* ------------------------------------------------------------------ */
/* CSV and JSON                                                        */
/* ------------------------------------------------------------------ */

static double gb_per_s(const struct cell *cell, const struct figure *f)
{
    return (double)cell_bytes(cell) / f->ns_med; /* bytes per ns */
}

static int finish_file(FILE *f, const char *path)
{
    int bad = ferror(f);

    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The metadata, one "# key: value" line each, before the header row:
 * readers skip them as comments (pandas: comment='#'; or grep -v '^#'). */
static void csv_meta(FILE *f, const struct run *r)
{
    const struct meta *m = &r->meta;
    char load[64];

    fprintf(f, "# tool: hmaf-bench %d.%d.%d\n", HMAF_VERSION_MAJOR,
            HMAF_VERSION_MINOR, HMAF_VERSION_PATCH);
    fprintf(f, "# engine: %s\n# commit: %s\n# date_utc: %s\n", m->engine,
            m->commit, m->date);
    fprintf(f, "# hostname: %s\n# cpu: %s\n# nproc: %ld\n# kernel: %s\n",
            m->hostname, m->cpu, m->nproc, m->kernel);
    fprintf(f, "# load_start: %s\n",
            meta_load_text(m->load_start, load, sizeof(load)));
    fprintf(f, "# load_end: %s\n",
            meta_load_text(m->load_end, load, sizeof(load)));
    fprintf(f, "# quick: %s\n# rounds: %u\n# baseline: %s\n",
            r->quick ? "yes" : "no", r->b->rounds, r->b->baseline);
}

int write_csv(const struct run *r, const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    csv_meta(f, r);
    fprintf(f, "pattern,threads,count,size,contender,iters,rounds,"
               "us_per_unit,gb_per_s,ratio_to_raw,ratio_p25,ratio_p75,n,"
               "us_p25,us_p75\n");
    for (size_t i = 0; i < r->ncells; i++) {
        const struct cell *cell = &r->cells[i];
        for (unsigned j = 0; j < cell->nfig && cell->rounds > 0; j++) {
            const struct figure *fg = &cell->fig[j];
            fprintf(f,
                    "%s,%u,%u,%zu,%s,%u,%u,%.4f,%.4f,%.4f,%.4f,%.4f,%u,%.4f,"
                    "%.4f\n",
                    cell->p->id, cell->p->threads, cell->p->count, cell->size,
                    fg->c->name, fg->iters, cell->rounds, fg->ns_med / 1000,
                    gb_per_s(cell, fg), fg->ratio, fg->lo, fg->hi, cell->n,
                    fg->ns_lo / 1000, fg->ns_hi / 1000);
        }
    }
    return finish_file(f, path);
}

static void json_figure(FILE *f, const struct cell *cell,
                        const struct figure *fg)
{
    fprintf(f, "        {\"contender\": ");
    json_str(f, fg->c->name);
    fprintf(f,
            ", \"iters\": %u, \"us\": %.4f, \"gb_per_s\": %.4f, "
            "\"us_p25\": %.4f, \"us_p75\": %.4f, \"ratio\": %.4f, "
            "\"ratio_p25\": %.4f, \"ratio_p75\": %.4f, \"rounds_us\": [",
            fg->iters, fg->ns_med / 1000, gb_per_s(cell, fg), fg->ns_lo / 1000,
            fg->ns_hi / 1000, fg->ratio, fg->lo, fg->hi);
    for (unsigned k = 0; k < cell->rounds; k++) {
        fprintf(f, "%s%.4f", k > 0 ? ", " : "", fg->ns[k] / 1000);
    }
    fprintf(f, "]}");
}

static void json_cell(FILE *f, const struct cell *cell)
{
    char unit[96];

    fprintf(f, "    {\"pattern\": ");
    json_str(f, cell->p->id);
    fprintf(f, ", \"title\": ");
    json_str(f, cell->p->title);
    fprintf(f, ", \"unit\": ");
    json_str(f, unit_text(cell, unit, sizeof(unit)));
    fprintf(f,
            ", \"size\": %zu, \"threads\": %u, \"count\": %u, "
            "\"bytes_per_unit\": %llu, \"rounds\": %u",
            cell->size, cell->p->threads, cell->p->count,
            (unsigned long long)cell_bytes(cell), cell->rounds);
    if (cell->p->axis != NULL) {
        fprintf(f, ", \"axis\": ");
        json_str(f, cell->p->axis);
        fprintf(f, ", \"n\": %u", cell->n);
    }
    if (cell->note[0] != '\0') {
        fprintf(f, ", \"note\": ");
        json_str(f, cell->note);
    }
    fprintf(f, ",\n      \"figures\": [\n");
    for (unsigned j = 0; j < cell->nfig && cell->rounds > 0; j++) {
        json_figure(f, cell, &cell->fig[j]);
        fprintf(f, "%s\n", j + 1 < cell->nfig ? "," : "");
    }
    fprintf(f, "      ]}");
}

static void json_target(FILE *f, const struct target_result *x)
{
    char bound[16];

    fprintf(f, "    {\"what\": ");
    json_str(f, x->t->what);
    fprintf(f, ", \"ratio_means\": ");
    json_str(f, x->means);
    fprintf(f, ", \"target\": ");
    json_str(f, bound_text(x->t, bound, sizeof(bound)));
    if (x->unmeasured != NULL) {
        fprintf(f, ", \"pattern\": ");
        json_str(f, x->cell->p->id);
        fprintf(f, ", \"ratio\": null, \"pass\": false, \"not_measured\": ");
        json_str(f, x->unmeasured);
        fprintf(f, "}");
    } else if (x->found) {
        if (x->t->scale != 0) {
            fprintf(f, ", \"n\": %u", x->cell->n);
        }
        fprintf(f, ", \"pattern\": ");
        json_str(f, x->cell->p->id);
        fprintf(f,
                ", \"size\": %zu, \"ratio\": %.4f, \"ratio_p25\": %.4f, "
                "\"ratio_p75\": %.4f, \"pass\": %s, \"judged\": %s}",
                x->cell->size, x->ratio, x->lo, x->hi,
                x->pass ? "true" : "false", x->t->report ? "false" : "true");
    } else if (x->na[0] != '\0') {
        fprintf(f, ", \"ratio\": null, \"pass\": null, \"not_applicable\": ");
        json_str(f, x->na);
        fprintf(f, "}");
    } else {
        fprintf(f, ", \"ratio\": null, \"pass\": null}");
    }
}

static void json_load(FILE *f, const char *key, const double load[3])
{
    fprintf(f, "    \"%s\": [%.2f, %.2f, %.2f]", key, load[0], load[1],
            load[2]);
}

/* One "key": "value" line of the meta object. */
static void json_meta_str(FILE *f, const char *key, const char *value)
{
    fprintf(f, "    \"%s\": ", key);
    json_str(f, value);
    fprintf(f, ",\n");
}

/* The run's metadata (docs/benchmarks.md, "Run metadata"), one key a
 * line. */
static void json_meta(FILE *f, const struct run *r)
{
    const struct meta *m = &r->meta;

    fprintf(f, "  \"meta\": {\n");
    json_meta_str(f, "engine", m->engine);
    json_meta_str(f, "commit", m->commit);
    json_meta_str(f, "date_utc", m->date);
    json_meta_str(f, "hostname", m->hostname);
    json_meta_str(f, "cpu", m->cpu);
    fprintf(f, "    \"nproc\": %ld,\n", m->nproc);
    json_meta_str(f, "kernel", m->kernel);
    json_load(f, "load_start", m->load_start);
    fprintf(f, ",\n");
    json_load(f, "load_end", m->load_end);
    fprintf(f, "\n  },\n");
}

static void json_head(FILE *f, const struct run *r)
{
    const struct meta *m = &r->meta;

    fprintf(f,
            "{\n  \"tool\": \"hmaf-bench\", \"version\": \"%d.%d.%d\", "
            "\"quick\": %s, \"rounds\": %u, \"round_ms\": %.2f,\n",
            HMAF_VERSION_MAJOR, HMAF_VERSION_MINOR, HMAF_VERSION_PATCH,
            r->quick ? "true" : "false", r->b->rounds, r->b->target_ns / 1e6);
    json_meta(f, r);
    fprintf(f, "  \"machine\": {\"cpu\": ");
    json_str(f, m->cpu);
    fprintf(f, ", \"cpus\": %ld, \"kernel\": ", m->nproc);
    json_str(f, m->kernel);
    fprintf(f,
            ", \"load_start\": %.2f, \"load_end\": %.2f, \"dpu_cpu\": %d, "
            "\"host_cpu\": %d},\n  \"split\": %s, \"baseline\": ",
            m->load_start[0], m->load_end[0], r->b->dpu_cpu, r->b->host->cpu,
            r->b->split ? "true" : "false");
    json_str(f, r->b->baseline);
    fprintf(f, ", \"doca_raw\": ");
    json_str(f, r->b->draw_note);
    fprintf(f, ",\n  \"ucx\": ");
    json_str(f, r->b->ucx_note);
    /* Empty when mapping mode ran with every contender; else why not, or
     * what sat out. */
    fprintf(f, ",\n  \"mapping\": {\"available\": %s, \"note\": ",
            r->b->map != NULL ? "true" : "false");
    json_str(f, r->b->map_note);
    fprintf(f,
            "},\n  \"reruns\": %u, \"kept_disturbed\": %u,\n"
            "  \"contenders\": [\n",
            r->b->reruns, r->b->kept);
    for (size_t i = 0; i < bench_ncontenders; i++) {
        fprintf(f, "    {\"name\": ");
        json_str(f, bench_contenders[i].name);
        fprintf(f, ", \"what\": ");
        json_str(f, bench_contenders[i].what);
        fprintf(f, "}%s\n", i + 1 < bench_ncontenders ? "," : "");
    }
    fprintf(f, "  ],\n");
}

int write_json(const struct run *r, const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    json_head(f, r);
    fprintf(f, "  \"cells\": [\n");
    for (size_t i = 0; i < r->ncells; i++) {
        json_cell(f, &r->cells[i]);
        fprintf(f, "%s\n", i + 1 < r->ncells ? "," : "");
    }
    fprintf(f, "  ],\n  \"targets\": [\n");
    for (size_t i = 0; i < r->ntargets; i++) {
        json_target(f, &r->results[i]);
        fprintf(f, "%s\n", i + 1 < r->ntargets ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return finish_file(f, path);
}
