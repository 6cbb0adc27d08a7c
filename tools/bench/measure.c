/*
 * How a cell is measured.
 *
 * The machines are shared and noisy, so absolute figures mean little: each
 * figure is compared with raw's in the same round. Within a round every
 * contender runs once, in an order that rotates and flips from round to
 * round so that drift hits all alike; a figure's ratio is the median of
 * its per-round ratios to raw. A contender's part of a round (its side)
 * during which other tasks kept our threads from their cpus (the schedstat
 * run delay says so) is run again.
 *
 * Each contender's units per round are calibrated first, so that a round
 * takes about b->target_ns whatever the contender's speed.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* A contender's side of a round whose threads waited on a runqueue for
 * more than 1/DISTURBED of its time is run again, up to b->rerun_max times
 * (RERUN_MAX, bench.h): that wait is the neighbours' noise, not a cost of
 * what we measure. */
#define DISTURBED 10
#define ITERS_MAX (1u << 22)
/* A unit longer than LONG_UNIT rounds' budget (b->target_ns) is a round by
 * itself: one unit, without warm-up. Several would add samples of what
 * varies little (on the DOCA emulation's 100x timed model, a 16-chain walk
 * node by node takes 4 s), and a warm-up's wake-ups are lost in it. */
#define LONG_UNIT 10
/* KIND_OVERLAP: units of the reads alone timed to size the CPU work. */
#define WORK_PROBES 5

/* ------------------------------------------------------------------ */
/* Runqueue delays                                                     */
/* ------------------------------------------------------------------ */

/* Nanoseconds a thread has waited on a runqueue (its schedstat file);
 * 0 if the kernel does not say. */
static uint64_t run_delay_of(const char *path)
{
    unsigned long long run = 0, wait = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%llu %llu", &run, &wait) != 2) {
        wait = 0;
    }
    fclose(f);
    return wait;
}

/* Is host thread tid one whose name starts with prefix? */
static int named(pid_t pid, const char *tid, const char *prefix)
{
    char path[64], name[32] = "";
    FILE *f;

    if (prefix[0] == '\0') {
        return 1;
    }
    snprintf(path, sizeof(path), "/proc/%d/task/%.16s/comm", (int)pid, tid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    if (fgets(name, sizeof(name), f) == NULL) {
        name[0] = '\0';
    }
    fclose(f);
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

/* Runqueue wait of the host threads named prefix ("": all). */
static uint64_t host_run_delay(pid_t pid, const char *prefix)
{
    char path[64];
    struct dirent *e;
    uint64_t sum = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' && named(pid, e->d_name, prefix)) {
            snprintf(path, sizeof(path), "/proc/%d/task/%.16s/schedstat",
                     (int)pid, e->d_name);
            sum += run_delay_of(path);
        }
    }
    closedir(d);
    return sum;
}

/* ------------------------------------------------------------------ */
/* Worker threads                                                      */
/* ------------------------------------------------------------------ */

/* A sparse pattern's units (p->idle_ns), each after an idle spell: only
 * the units are timed, their times added up as if they ran back to back,
 * and only runqueue waits during a unit count (waking from the spell may
 * wait for a cpu; that is not the call's cost). One thread. */
static void run_job_sparse(struct worker *w, struct job *job)
{
    uint64_t idle_ns = job->cell->p->idle_ns;
    struct timespec idle = {.tv_sec = (time_t)(idle_ns / 1000000000u),
                            .tv_nsec = (long)(idle_ns % 1000000000u)};
    struct thread_result *r = &w->res;
    uint64_t busy = 0, delay = 0;

    r->ret = 0;
    for (unsigned i = 0; i < job->n && r->ret == 0; i++) {
        uint64_t delay0, t0;
        nanosleep(&idle, NULL);
        delay0 = run_delay_of("/proc/thread-self/schedstat");
        t0 = now_ns();
        r->ret = run_unit(w, job->cell, job->c, job->first + i);
        busy += now_ns() - t0;
        delay += run_delay_of("/proc/thread-self/schedstat") - delay0;
    }
    r->t0 = 0;
    r->t1 = busy;
    r->delay = delay;
}

static void run_job(struct worker *w, struct job *job)
{
    struct thread_result *r = &w->res;
    uint64_t delay;

    if (job->cell->p->idle_ns != 0) {
        run_job_sparse(w, job);
        return;
    }

    /* All threads start together. */
    atomic_fetch_add(&job->arrived, 1);
    while (atomic_load(&job->arrived) < job->nthreads) {
    }
    delay = run_delay_of("/proc/thread-self/schedstat");
    r->ret = 0;
    r->t0 = now_ns();
    for (unsigned i = 0; i < job->n && r->ret == 0; i++) {
        r->ret = run_unit(w, job->cell, job->c, job->first + i);
    }
    r->t1 = now_ns();
    r->delay = run_delay_of("/proc/thread-self/schedstat") - delay;
}

/* Worker 1 and up: wait (asleep, not spinning: they share the host's
 * cpu) for a job, run it, say so. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned seen = 0;

    if (pin_to(w->cpu) != 0) {
        perror("hmaf-bench: worker: sched_setaffinity");
    }
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->gen == seen && !w->stop) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->stop) {
            break;
        }
        seen = w->gen;
        pthread_mutex_unlock(&w->lock);
        run_job(w, w->job);
        atomic_store_explicit(&w->done, seen, memory_order_release);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int workers_start(struct bench *b)
{
    for (unsigned i = 1; i < b->nworkers; i++) {
        struct worker *w = &b->w[i];
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            fprintf(stderr, "hmaf-bench: cannot start a worker thread\n");
            return -1;
        }
        w->started = 1;
    }
    return 0;
}

void workers_stop(struct bench *b)
{
    for (unsigned i = 1; i < THREADS_MAX; i++) {
        struct worker *w = &b->w[i];
        if (w->started) {
            pthread_mutex_lock(&w->lock);
            w->stop = 1;
            pthread_cond_signal(&w->cond);
            pthread_mutex_unlock(&w->lock);
            pthread_join(w->thread, NULL);
            w->started = 0;
        }
    }
}

/* Run job on its threads, worker 0 being us. Elapsed: first start to last
 * end; delay: worker 0's, the one thread that has a cpu to itself (others
 * share the host's, by design). */
static int run_parallel(struct bench *b, struct job *job, uint64_t *ns_out,
                        uint64_t *delay_out)
{
    uint64_t t0, t1;
    int ret;

    atomic_store(&job->arrived, 0);
    for (unsigned i = 1; i < job->nthreads; i++) {
        struct worker *w = &b->w[i];
        pthread_mutex_lock(&w->lock);
        w->job = job;
        w->gen++;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
    run_job(&b->w[0], job);
    t0 = b->w[0].res.t0;
    t1 = b->w[0].res.t1;
    ret = b->w[0].res.ret;
    for (unsigned i = 1; i < job->nthreads; i++) {
        struct worker *w = &b->w[i];
        while (atomic_load_explicit(&w->done, memory_order_acquire) != w->gen) {
        }
        t0 = w->res.t0 < t0 ? w->res.t0 : t0;
        t1 = w->res.t1 > t1 ? w->res.t1 : t1;
        ret = ret < 0 ? ret : w->res.ret;
    }
    *ns_out = t1 - t0;
    *delay_out = b->w[0].res.delay;
    return ret;
}

/* ------------------------------------------------------------------ */
/* Rounds                                                              */
/* ------------------------------------------------------------------ */

/* Runqueue wait of the host threads serving f's contender, when they
 * matter: with one dpu thread (see run_parallel). */
static uint64_t serving_delay(const struct bench *b, const struct cell *cell,
                              const struct contender *c)
{
    /* Split mode: the host's threads are not on this machine. */
    if (c->serves == NULL || cell->p->threads > 1 || b->pid == 0) {
        return 0;
    }
    return host_run_delay(b->pid, c->serves);
}

/* The untimed units before `iters` timed ones of a short unit. */
static unsigned warm_for(unsigned iters)
{
    return iters / 8 + 1;
}

/*
 * One side of a round: `iters` units on each thread; *elapsed_out their
 * wall time. Untimed around it: enter/leave, and `warm` units that wake
 * the agent (asleep after 200 us idle) or let a spinning host thread get
 * going. *disturbed_out is set if other tasks kept our threads waiting.
 */
static int time_side(struct bench *b, const struct cell *cell,
                     const struct contender *c, unsigned iters, unsigned warm,
                     uint64_t *elapsed_out, int *disturbed_out)
{
    struct job job = {.cell = cell,
                      .c = c,
                      .first = 0,
                      .n = warm,
                      .nthreads = cell->p->threads};
    uint64_t ns = 0, delay = 0, host0, host1;
    int ret = c->enter != NULL ? c->enter(b) : 0;

    if (ret == 0 && warm > 0) {
        ret = run_parallel(b, &job, &ns, &delay);
    }
    host0 = serving_delay(b, cell, c);
    job.first = warm;
    job.n = iters;
    if (ret == 0) {
        ret = run_parallel(b, &job, &ns, &delay);
    }
    host1 = serving_delay(b, cell, c);
    *disturbed_out |=
        !c->shares_cpu && (delay + host1 - host0) * DISTURBED > ns;
    if (c->leave != NULL) {
        int left = c->leave(b);
        ret = ret < 0 ? ret : left;
    }
    *elapsed_out = ns;
    return ret;
}

/* ns per unit, all threads together. */
static double per_unit(const struct cell *cell, unsigned iters,
                       uint64_t elapsed)
{
    return (double)elapsed / ((double)iters * cell->p->threads);
}

/* Does f's contender move the right bytes? */
static int verify(struct bench *b, const struct cell *cell,
                  const struct figure *f)
{
    int ret = f->c->enter != NULL ? f->c->enter(b) : 0;

    if (ret == 0) {
        ret = verify_unit(&b->w[0], cell, f->c);
    }
    if (f->c->leave != NULL) {
        int left = f->c->leave(b);
        ret = ret < 0 ? ret : left;
    }
    return ret;
}

/* Find how many units fill a round: at most b->sparse_iters_max in a
 * sparse pattern, each unit costing a spell asleep. A unit that (with its
 * check) took LONG_UNIT rounds' budget is a round by itself. */
static int calibrate(struct bench *b, const struct cell *cell, struct figure *f)
{
    unsigned most = cell->p->idle_ns != 0 ? b->sparse_iters_max : ITERS_MAX;
    uint64_t t0 = now_ns();
    int disturbed = 0, ret = verify(b, cell, f);

    if (ret == 0 && now_ns() - t0 >= LONG_UNIT * b->target_ns) {
        f->iters = 1;
        f->warm = 0;
        return 0;
    }
    for (unsigned n = 1; ret == 0; n = n * 4 < most ? n * 4 : most) {
        uint64_t elapsed;
        ret = time_side(b, cell, f->c, n, warm_for(n), &elapsed, &disturbed);
        if (ret == 0 && (elapsed >= b->target_ns / 8 || n >= most)) {
            double iters = (double)b->target_ns * n / (double)elapsed;
            f->iters = iters < b->iters_min ? b->iters_min
                       : iters > most       ? most
                                            : (unsigned)iters;
            f->warm = warm_for(f->iters);
            return 0;
        }
    }
    return ret;
}

/* ns per cpu_work() step: the best of a few runs of about a millisecond. */
static double cpu_step_ns(void)
{
    const uint64_t steps = 1u << 20;
    double best = 0;

    for (int i = 0; i < 5; i++) {
        uint64_t t0 = now_ns();
        double ns;
        cpu_work(steps);
        ns = (double)(now_ns() - t0) / (double)steps;
        best = i == 0 || ns < best ? ns : best;
    }
    return best;
}

/* KIND_OVERLAP: the CPU work of a unit is set to take as long as the reads
 * alone (p->work_like, the median of a few units), so that neither side
 * hides the other by being much the longer. Fixed for the cell's rounds. */
static int size_work(struct bench *b, struct cell *cell)
{
    const struct figure *f = cell_find(cell, cell->p->work_like);
    double t[WORK_PROBES];
    int disturbed = 0;

    if (f == NULL) {
        fprintf(stderr, "hmaf-bench: %s: %s does not run here\n", cell->p->id,
                cell->p->work_like);
        return -1;
    }
    for (unsigned i = 0; i < WORK_PROBES; i++) {
        uint64_t elapsed;
        int ret = time_side(b, cell, f->c, 1, 1, &elapsed, &disturbed);
        if (ret < 0) {
            return ret;
        }
        t[i] = (double)elapsed;
    }
    cell->work = (uint64_t)(quantile(t, WORK_PROBES, 0.5) / cpu_step_ns());
    return 0;
}

/* Position j of round k: the order rotates every round and runs backwards
 * every other round. */
static unsigned round_order(unsigned k, unsigned j, unsigned m)
{
    return k % 2 == 0 ? (k / 2 + j) % m : (k / 2 + m - 1 - j) % m;
}

static void print_round(const struct cell *cell, unsigned k, int disturbed)
{
    fprintf(stderr, "%s %zu round %2u:", cell->p->id, cell->size, k);
    for (unsigned i = 0; i < cell->nfig; i++) {
        fprintf(stderr, " %s %.3f", cell->fig[i].c->name,
                cell->fig[i].ns[k] / 1000.0);
    }
    fprintf(stderr, " us%s\n", disturbed ? " (disturbed)" : "");
}

/* f's side of round k, run again at once while other tasks disturbed it,
 * up to b->rerun_max times: a disturbance spoils that side, not the
 * others of the round. *disturbed_out is set if the side kept was. */
static int time_figure(struct bench *b, const struct cell *cell,
                       struct figure *f, unsigned k, int *disturbed_out)
{
    for (unsigned tries = 0;; tries++) {
        int disturbed = 0;
        uint64_t elapsed;
        int ret =
            time_side(b, cell, f->c, f->iters, f->warm, &elapsed, &disturbed);
        if (ret < 0) {
            return ret;
        }
        f->ns[k] = per_unit(cell, f->iters, elapsed);
        if (!disturbed) {
            return 0;
        }
        if (tries == b->rerun_max) {
            b->kept++;
            *disturbed_out = 1;
            return 0;
        }
        b->reruns++;
    }
}

/* Round k of every figure. */
static int time_round(struct bench *b, struct cell *cell, unsigned k)
{
    int disturbed = 0;

    for (unsigned j = 0; j < cell->nfig; j++) {
        struct figure *f = &cell->fig[round_order(k, j, cell->nfig)];
        int ret = time_figure(b, cell, f, k, &disturbed);
        if (ret < 0) {
            return ret;
        }
    }
    if (b->verbose) {
        print_round(cell, k, disturbed);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Sorts v; the q-quantile with linear interpolation. */
double quantile(double *v, unsigned n, double q)
{
    double pos = q * (n - 1);
    unsigned i = (unsigned)pos;

    qsort(v, n, sizeof(*v), cmp_double);
    return i + 1 < n ? v[i] + (pos - i) * (v[i + 1] - v[i]) : v[i];
}

void ratio_of(const struct figure *num, const struct figure *den,
              unsigned rounds, double *med_out, double *lo_out, double *hi_out)
{
    double r[ROUNDS_MAX];

    for (unsigned k = 0; k < rounds; k++) {
        r[k] = num->ns[k] / den->ns[k];
    }
    *med_out = quantile(r, rounds, 0.5);
    *lo_out = quantile(r, rounds, 0.25);
    *hi_out = quantile(r, rounds, 0.75);
}

void summarize_cell(struct cell *cell)
{
    unsigned rounds = cell->rounds;
    double v[ROUNDS_MAX];

    for (unsigned i = 0; i < cell->nfig && rounds > 0; i++) {
        struct figure *f = &cell->fig[i];
        memcpy(v, f->ns, rounds * sizeof(v[0]));
        f->ns_med = quantile(v, rounds, 0.5);
        f->ns_lo = quantile(v, rounds, 0.25); /* v is sorted by now */
        f->ns_hi = quantile(v, rounds, 0.75);
        ratio_of(f, &cell->fig[0], rounds, &f->ratio, &f->lo, &f->hi);
    }
}

int measure_cell(struct bench *b, struct cell *cell, progress_fn progress,
                 void *arg)
{
    int ret = cell->p->kind == KIND_OVERLAP ? size_work(b, cell) : 0;

    for (unsigned i = 0; i < cell->nfig && ret == 0; i++) {
        cell->fig[i].ns = calloc(b->rounds, sizeof(double));
        ret = cell->fig[i].ns == NULL ? -1 : calibrate(b, cell, &cell->fig[i]);
    }
    for (unsigned k = 0; k < b->rounds && ret == 0; k++) {
        progress(cell, k, arg);
        ret = time_round(b, cell, k);
    }
    /* Again at the end: a contender must not have got fast by moving the
     * wrong bytes. */
    for (unsigned i = 0; i < cell->nfig && ret == 0; i++) {
        ret = verify(b, cell, &cell->fig[i]);
    }
    cell->measured = 1;
    if (ret == 0) {
        cell->rounds = b->rounds;
        summarize_cell(cell);
    }
    return ret;
}
