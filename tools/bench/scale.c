/*
 * The scaling rows: how HMAF's costs grow with the regions a session has
 * cached, with the sessions an agent serves, and when the dpu side shares
 * the agent's cpu (docs/benchmarks.md, "Scaling rows").
 *
 * The forked host exposes b->nregions small regions, each an exposure of
 * its own (host.c), so that each is a region of its own in a session's
 * cache.
 *  - sessions: a ping on each of N live sessions in turn (hmaf-nsess)
 *    against one session's (hmaf); the N - 1 others open before the cell.
 *  - one-cpu: hmaf's ping with our thread moved to the host's cpu for its
 *    side (hmaf-1cpu).
 *  - regions-miss: reads cycling through ten times more regions than a
 *    session's cache holds (hmaf-miss), each a miss, against a ping.
 *  - regions-hit, regions-reg, regions-close: one procedure,
 *    regions_measure. Each round is a sweep: a fresh session reads region
 *    0, 1, 2, ... once each, every read a miss and a registration, timed
 *    piece by piece, with a burst of pings at each N for the baseline. In
 *    the first sweep the hits are measured at each N on the way. At the
 *    end the sweep's session closes while another session pings: its
 *    longest ping is the stall. A sweep stops once it has spent
 *    SWEEP_CAP_NS registering, or when a registration gets no answer
 *    within STALL_RPC_MS; the cells it did not reach say so.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* A sweep registers for at most this long (three times the target for
 * 100,000 registrations), so that a slow library makes a slow row, not a
 * hung bench. */
#define SWEEP_CAP_NS ((uint64_t)15 * 1000000000u)
/* Sweeps (rounds of regions-reg and regions-close), at most; each is up to
 * REGIONS_MAX registrations. */
#define SWEEP_ROUNDS 3
/* The baseline at each N: pings timed after a few that wake the agent. */
#define PING_WARM  10
#define PING_BURST 200
/* The close is watched by pings this far apart; as long before it (the
 * idle baseline, --quick: _QUICK), and at least as long and until
 * CLOSE_TAIL_NS after hmaf_session_destroy returned (the agent may still
 * be tearing the session down). */
#define WATCH_GAP_NS   50000
#define WATCH_NS       ((uint64_t)100 * 1000000)
#define WATCH_NS_QUICK ((uint64_t)20 * 1000000)
#define CLOSE_TAIL_NS  ((uint64_t)50 * 1000000)
/* The rows' own sessions wait this long for an answer (the default is 5
 * s): an agent that stalls makes a slow figure, not a failed run. */
#define STALL_RPC_MS 60000
/* regions-miss: this many regions in a cycle, through the cache's default
 * bound (fewer regions: a tenth of them as the bound). */
#define MISS_CYCLE 10000u

struct scale {
    hmaf_session_t *others[SESSIONS_MAX]; /* the sessions row's, not b->s */
    unsigned nothers;
    unsigned turn;           /* the next session sessions_ping pings */
    hmaf_session_t *missing; /* regions-miss: a cache of the usual bound */
    unsigned miss_cycle, miss_next;
};

static int scale_check(const char *what, int ret)
{
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: %s: %s (%s)\n", what, hmaf_strerror(ret),
                hmaf_err_name(ret));
    }
    return ret;
}

int scale_open(struct bench *b)
{
    b->scale = calloc(1, sizeof(*b->scale));
    return b->scale != NULL ? 0 : -1;
}

void scale_close(struct bench *b)
{
    if (b->scale != NULL) {
        sessions_finish(b);
        miss_finish(b);
        free(b->scale);
        b->scale = NULL;
    }
}

int regions_usable(const struct bench *b)
{
    return b->nregions > 0;
}

static uint64_t region_addr(const struct bench *b, unsigned i)
{
    return b->regions + (uint64_t)i * REGION_STRIDE;
}

/* Read region i into dst with session s, and check its bytes. */
static int region_read(const struct bench *b, hmaf_session_t *s, unsigned i,
                       uint8_t *dst)
{
    uint64_t at = region_addr(b, i);
    int ret = scale_check("hmaf_session_read",
                          hmaf_session_read(s, dst, at, REGION_LEN));

    if (ret == 0 && memcmp(dst, host_bytes(b, at), REGION_LEN) != 0) {
        fprintf(stderr, "hmaf-bench: region %u: wrong bytes\n", i);
        return -1;
    }
    return ret;
}

/* ------------------------------------------------------------------ */
/* sessions: N live, pinged in turn                                    */
/* ------------------------------------------------------------------ */

int sessions_prepare(struct bench *b, struct cell *cell)
{
    struct scale *sc = b->scale;
    unsigned want = cell->n - 1;
    int ret = 0;

    while (sc->nothers > want) {
        hmaf_session_destroy(sc->others[--sc->nothers]);
    }
    while (sc->nothers < want && ret == 0) {
        ret =
            scale_check("sessions row: hmaf_session_create",
                        bench_session_open(b, 0, 0, &sc->others[sc->nothers]));
        sc->nothers += ret == 0;
    }
    sc->turn = 0;
    return ret;
}

void sessions_finish(struct bench *b)
{
    struct scale *sc = b->scale;

    while (sc->nothers > 0) {
        hmaf_session_destroy(sc->others[--sc->nothers]);
    }
}

/* One unit: the next session's ping, b->hmaf_s being the first. */
int sessions_ping(struct worker *w)
{
    struct scale *sc = w->b->scale;
    unsigned k = sc->turn;
    hmaf_session_t *s = k == 0 ? w->b->hmaf_s : sc->others[k - 1];

    sc->turn = k == sc->nothers ? 0 : k + 1;
    return scale_check("hmaf_session_ping", hmaf_session_ping(s));
}

/* ------------------------------------------------------------------ */
/* one-cpu: our thread on the host's cpu for hmaf-1cpu's side          */
/* ------------------------------------------------------------------ */

int one_cpu_usable(const struct bench *b)
{
    return !b->split && b->dpu_cpu != NO_CPU && b->host->cpu != NO_CPU &&
           b->host->cpu != b->dpu_cpu;
}

/* enter and leave run on worker 0's thread, the one that pings. */
int one_cpu_enter(struct bench *b)
{
    return pin_to(b->host->cpu) == 0 ? 0 : -1;
}

int one_cpu_leave(struct bench *b)
{
    return pin_to(b->dpu_cpu) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* regions-miss: every read a miss                                     */
/* ------------------------------------------------------------------ */

/* The session's cache bound: the default with a full cycle, else a tenth
 * of the regions cycled through (--quick). */
static unsigned miss_bound(unsigned cycle)
{
    hmaf_session_params_t p;

    hmaf_session_params_init(&p);
    return cycle >= MISS_CYCLE ? p.cache_max_regions : cycle / 10;
}

/* The cache is filled first, so that every timed miss also evicts. */
int miss_prepare(struct bench *b, struct cell *cell)
{
    struct scale *sc = b->scale;
    unsigned cycle = b->nregions < MISS_CYCLE ? b->nregions : MISS_CYCLE;
    unsigned bound = miss_bound(cycle);
    int ret =
        scale_check("regions-miss: hmaf_session_create",
                    bench_session_open(b, bound, STALL_RPC_MS, &sc->missing));

    sc->miss_cycle = cycle;
    for (sc->miss_next = 0; sc->miss_next < bound && ret == 0;
         sc->miss_next++) {
        ret = region_read(b, sc->missing, sc->miss_next, b->w[0].dst);
    }
    snprintf(cell->note, sizeof(cell->note),
             "hmaf-miss: %u regions in a cycle through a cache of %u", cycle,
             bound);
    return ret;
}

void miss_finish(struct bench *b)
{
    hmaf_session_destroy(b->scale->missing);
    b->scale->missing = NULL;
}

int miss_read(struct worker *w)
{
    struct scale *sc = w->b->scale;
    unsigned i = sc->miss_next;

    sc->miss_next = i + 1 == sc->miss_cycle ? 0 : i + 1;
    return region_read(w->b, sc->missing, i, w->dst);
}

/* ------------------------------------------------------------------ */
/* regions-hit, regions-reg, regions-close: the sweeps                 */
/* ------------------------------------------------------------------ */

/* The cells of the procedure, and what it needs to run them. */
struct regions_run {
    struct bench *b;
    struct cell *cells; /* the run's, all of them */
    size_t ncells;
    progress_fn progress;
    void *arg;
    unsigned stops[16]; /* the N a sweep stops at, ascending */
    unsigned nstops;
    unsigned rounds; /* sweeps planned */
    double *times;   /* a window's registrations, ns each */
};

/* One sweep: a session that registers region after region. */
struct sweep {
    hmaf_session_t *s;
    unsigned done; /* regions registered */
    uint64_t busy; /* ns spent registering them */
    int capped;    /* stopped at SWEEP_CAP_NS */
    int stalled;   /* stopped: a registration got no answer */
};

static int stopped(const struct sweep *sw)
{
    return sw->capped || sw->stalled;
}

/* The registrations that make "at N": the tenth of the sweep before N
 * (all of it below 100). Their median: a preemption in a window of ten
 * must not make the figure; what a registration costs now and then (a
 * table growing) is in hmaf-sweep, the mean of the whole sweep. */
static unsigned window_of(unsigned n)
{
    return n >= 100 ? n / 10 : n < 10 ? n : 10;
}

static int in_procedure(const struct cell *cell)
{
    return cell->p->measure == regions_measure;
}

/* The cell of pattern id at N, or NULL. */
static struct cell *group_cell(const struct regions_run *rr, const char *id,
                               unsigned n)
{
    for (size_t i = 0; i < rr->ncells; i++) {
        struct cell *cell = &rr->cells[i];
        if (in_procedure(cell) && cell->n == n &&
            strcmp(cell->p->id, id) == 0) {
            return cell;
        }
    }
    return NULL;
}

static struct figure *figure_of(struct cell *cell, const char *name)
{
    for (unsigned i = 0; cell != NULL && i < cell->nfig; i++) {
        if (strcmp(cell->fig[i].c->name, name) == 0) {
            return &cell->fig[i];
        }
    }
    return NULL;
}

static void set_figure(struct cell *cell, const char *name, unsigned k,
                       double ns, unsigned iters)
{
    struct figure *f = figure_of(cell, name);

    if (f != NULL) {
        f->ns[k] = ns;
        f->iters = iters;
    }
}

static void add_stop(struct regions_run *rr, unsigned n)
{
    unsigned i = 0;

    while (i < rr->nstops && rr->stops[i] < n) {
        i++;
    }
    if ((i < rr->nstops && rr->stops[i] == n) || rr->nstops == 16) {
        return;
    }
    memmove(&rr->stops[i + 1], &rr->stops[i],
            (rr->nstops - i) * sizeof(rr->stops[0]));
    rr->stops[i] = n;
    rr->nstops++;
}

/* The stops, the sweeps, and room for the sweeps' figures. A cell past
 * the host's regions is not measured. */
static int plan_sweeps(struct regions_run *rr)
{
    int sweeps_timed = 0;

    for (size_t i = 0; i < rr->ncells; i++) {
        struct cell *cell = &rr->cells[i];
        if (!in_procedure(cell)) {
            continue;
        }
        if (cell->n > rr->b->nregions) {
            cell->measured = 1;
            snprintf(cell->note, sizeof(cell->note),
                     "not measured: the host has %u regions", rr->b->nregions);
            continue;
        }
        add_stop(rr, cell->n);
        sweeps_timed |= cell->p->kind == KIND_SWEEP;
        for (unsigned j = 0; j < cell->nfig && cell->p->kind == KIND_SWEEP;
             j++) {
            cell->fig[j].ns = calloc(SWEEP_ROUNDS, sizeof(double));
            if (cell->fig[j].ns == NULL) {
                return -1;
            }
        }
    }
    if (rr->nstops > 0) {
        rr->times =
            calloc(window_of(rr->stops[rr->nstops - 1]), sizeof(*rr->times));
        if (rr->times == NULL) {
            return -1;
        }
    }
    /* The hits need one sweep; the timed rows, rounds. */
    rr->rounds = !sweeps_timed                  ? 1
                 : rr->b->rounds < SWEEP_ROUNDS ? rr->b->rounds
                                                : SWEEP_ROUNDS;
    return 0;
}

/* Register regions [sw->done, to): a first read of each; with times,
 * each one's ns goes there, in order. Stops short once the sweep has spent
 * SWEEP_CAP_NS registering (sw->capped), or when the agent did not answer
 * within STALL_RPC_MS (sw->stalled). */
static int sweep_to(struct bench *b, struct sweep *sw, unsigned to,
                    double *times)
{
    uint64_t t0 = now_ns(), t = t0;
    unsigned first = sw->done;
    int ret = 0;

    while (sw->done < to && ret == 0 && !stopped(sw)) {
        uint64_t t1;
        ret = region_read(b, sw->s, sw->done, b->w[0].dst);
        t1 = now_ns();
        if (times != NULL) {
            times[sw->done - first] = (double)(t1 - t);
        }
        t = t1;
        sw->done += ret == 0;
        sw->capped = sw->busy + (t - t0) >= SWEEP_CAP_NS;
        if (ret == HMAF_ETIMEDOUT) {
            sw->stalled = 1;
            ret = 0;
        }
    }
    sw->busy += t - t0;
    return ret;
}

/* Mean ns of a ping on s, after a few untimed. */
static int ping_burst(hmaf_session_t *s, double *ns_out)
{
    uint64_t t0 = 0;
    int ret = 0;

    for (unsigned i = 0; i < PING_WARM + PING_BURST && ret == 0; i++) {
        if (i == PING_WARM) {
            t0 = now_ns();
        }
        ret = scale_check("hmaf_session_ping", hmaf_session_ping(s));
    }
    *ns_out = (double)(now_ns() - t0) / PING_BURST;
    return ret;
}

/* Sweep k's figures at N, in regions-reg's cell (if it is planned). */
static int time_stop(struct regions_run *rr, struct sweep *sw, unsigned k,
                     unsigned n)
{
    struct cell *cell = group_cell(rr, "regions-reg", n);
    unsigned from, w = window_of(n);
    double ping_ns;
    int ret = sweep_to(rr->b, sw, cell != NULL ? n - w : n, NULL);

    if (ret < 0 || cell == NULL || stopped(sw)) {
        return ret;
    }
    from = sw->done; /* n - w, or past it when the stop before was */
    ret = sweep_to(rr->b, sw, n, rr->times);
    if (ret < 0 || stopped(sw) || sw->done == from) {
        return ret;
    }
    w = sw->done - from;
    ret = ping_burst(sw->s, &ping_ns);
    if (ret < 0) {
        return ret;
    }
    rr->progress(cell, k, rr->arg);
    set_figure(cell, "hmaf", k, ping_ns, PING_BURST);
    set_figure(cell, "hmaf-reg", k, quantile(rr->times, w, 0.5), w);
    set_figure(cell, "hmaf-sweep", k, (double)sw->busy / n, n);
    cell->rounds = k + 1;
    return 0;
}

/* The first sweep, paused at N: the hits, on its session. */
static int time_hits(struct regions_run *rr, struct sweep *sw, unsigned n)
{
    struct cell *cell = group_cell(rr, "regions-hit", n);
    int ret;

    if (cell == NULL) {
        return 0;
    }
    rr->b->hmaf_s = sw->s;
    ret = measure_cell(rr->b, cell, rr->progress, rr->arg);
    rr->b->hmaf_s = rr->b->s;
    return ret;
}

/* A sweep that stopped short: the cells it did not reach are not
 * measured. */
static void mark_unreached(struct regions_run *rr, const struct sweep *sw)
{
    for (size_t i = 0; i < rr->ncells; i++) {
        struct cell *cell = &rr->cells[i];
        if (!in_procedure(cell) || cell->n <= sw->done || cell->rounds > 0 ||
            strcmp(cell->p->id, "regions-close") == 0) {
            continue;
        }
        cell->measured = 1;
        if (sw->stalled) {
            snprintf(cell->note, sizeof(cell->note),
                     "not reached: after %u regions a registration got no "
                     "answer in %d s",
                     sw->done, STALL_RPC_MS / 1000);
        } else {
            snprintf(cell->note, sizeof(cell->note),
                     "not reached: a sweep registered %u regions in %.0f s, "
                     "its cap",
                     sw->done, SWEEP_CAP_NS / 1e9);
        }
    }
}

/* ------------------------------------------------------------------ */
/* regions-close: another session's pings while one closes             */
/* ------------------------------------------------------------------ */

struct closer {
    hmaf_session_t *s;
    uint64_t ns; /* hmaf_session_destroy took this long */
    _Atomic int done;
};

static void *closer_main(void *arg)
{
    struct closer *c = arg;
    uint64_t t0 = now_ns();

    hmaf_session_destroy(c->s);
    c->ns = now_ns() - t0;
    atomic_store(&c->done, 1);
    return NULL;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};

    nanosleep(&ts, NULL);
}

/* The calling thread's runqueue wait so far, ns, from its schedstat file
 * open at fd; 0 if the kernel does not say. */
static uint64_t own_run_delay(int fd)
{
    unsigned long long run, wait;
    char text[128];
    ssize_t n = fd >= 0 ? pread(fd, text, sizeof(text) - 1, 0) : -1;

    if (n <= 0) {
        return 0;
    }
    text[n] = '\0';
    return sscanf(text, "%llu %llu", &run, &wait) == 2 ? wait : 0;
}

/* A ping's time, less what our thread meanwhile waited for a cpu (the
 * closer shares it, and the machine may be busy): the agent's delay. */
static int timed_ping(hmaf_session_t *p, int fd, uint64_t *ns_out)
{
    uint64_t wait0 = own_run_delay(fd), t0 = now_ns(), t, wait;
    int ret = hmaf_session_ping(p);

    t = now_ns() - t0;
    wait = own_run_delay(fd) - wait0;
    *ns_out = t - (wait < t ? wait : t);
    return ret;
}

/* Ping p every WATCH_GAP_NS for at least min_ns; with a closer, also
 * until CLOSE_TAIL_NS after it is done. The longest ping in *max_out; a
 * failed one (the agent stalled past STALL_RPC_MS) counts what it
 * waited and ends the watch. */
static int watch_pings(hmaf_session_t *p, struct closer *c, uint64_t min_ns,
                       uint64_t *max_out, unsigned *pings_out)
{
    uint64_t start = now_ns(), done_at = 0, t1 = start;
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    int ret = 0;

    *max_out = 0;
    *pings_out = 0;
    while (t1 - start < min_ns || (c != NULL && done_at == 0) ||
           (done_at != 0 && t1 - done_at < CLOSE_TAIL_NS)) {
        uint64_t ns;
        ret = timed_ping(p, fd, &ns);
        t1 = now_ns();
        *max_out = ns > *max_out ? ns : *max_out;
        ++*pings_out;
        if (ret < 0) {
            break;
        }
        if (c != NULL && done_at == 0 && atomic_load(&c->done)) {
            done_at = t1;
        }
        sleep_ns(WATCH_GAP_NS);
    }
    if (fd >= 0) {
        close(fd);
    }
    return scale_check("regions-close: hmaf_session_ping", ret);
}

/* Close sweep k's session (it is gone afterwards) while a session of its
 * own pings; as long before, the idle baseline. A close cell that is not
 * planned: the session just closes. */
static int time_close(struct regions_run *rr, struct sweep *sw, unsigned k)
{
    struct cell *cell =
        group_cell(rr, "regions-close", rr->stops[rr->nstops - 1]);
    uint64_t watch = rr->b->quick ? WATCH_NS_QUICK : WATCH_NS;
    struct closer c = {.s = sw->s};
    hmaf_session_t *p = NULL;
    uint64_t idle_max = 0, close_max = 0;
    unsigned idle_n = 0, close_n = 0;
    pthread_t thread;
    int ret;

    sw->s = NULL;
    if (cell == NULL) {
        hmaf_session_destroy(c.s);
        return 0;
    }
    ret = scale_check("regions-close: hmaf_session_create",
                      bench_session_open(rr->b, 0, STALL_RPC_MS, &p));
    if (ret == 0) {
        rr->progress(cell, k, rr->arg);
        ret = watch_pings(p, NULL, watch, &idle_max, &idle_n);
    }
    if (ret < 0 || pthread_create(&thread, NULL, closer_main, &c) != 0) {
        hmaf_session_destroy(c.s);
        hmaf_session_destroy(p);
        return -1;
    }
    /* A ping that failed is the stall's measure: the watch goes on no
     * further, and the row reports what it saw. */
    (void)watch_pings(p, &c, watch, &close_max, &close_n);
    pthread_join(thread, NULL);
    hmaf_session_destroy(p);
    set_figure(cell, "hmaf", k, (double)idle_max, idle_n);
    set_figure(cell, "hmaf-close", k, (double)close_max, close_n);
    cell->rounds = k + 1;
    snprintf(cell->note, sizeof(cell->note),
             "the session held %u regions%s; hmaf_session_destroy took "
             "%.1f ms",
             sw->done, sw->done < cell->n ? " (its sweep stopped short)" : "",
             c.ns / 1e6);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The procedure                                                       */
/* ------------------------------------------------------------------ */

/* Sweep k: up to each stop, timed; the hits on the first; the close. */
static int sweep_round(struct regions_run *rr, unsigned k, int *short_out)
{
    struct sweep sw = {.s = NULL};
    int ret = scale_check(
        "regions: hmaf_session_create",
        bench_session_open(rr->b, rr->b->nregions + 1, STALL_RPC_MS, &sw.s));

    for (unsigned i = 0; i < rr->nstops && ret == 0; i++) {
        ret = time_stop(rr, &sw, k, rr->stops[i]);
        if (ret == 0 && stopped(&sw)) {
            break;
        }
        if (ret == 0 && k == 0) {
            ret = time_hits(rr, &sw, rr->stops[i]);
        }
    }
    if (stopped(&sw)) {
        mark_unreached(rr, &sw);
    }
    *short_out = stopped(&sw);
    if (ret < 0) {
        hmaf_session_destroy(sw.s);
        return ret;
    }
    return time_close(rr, &sw, k);
}

/* Every cell of the procedure, measured or said why not; medians. */
static void finish_cells(struct regions_run *rr)
{
    for (size_t i = 0; i < rr->ncells; i++) {
        struct cell *cell = &rr->cells[i];
        if (in_procedure(cell) && cell->p->kind == KIND_SWEEP) {
            summarize_cell(cell);
        }
        if (in_procedure(cell)) {
            cell->measured = 1;
        }
    }
}

int regions_measure(struct bench *b, struct cell *cells, size_t ncells,
                    progress_fn progress, void *arg)
{
    struct regions_run rr = {.b = b,
                             .cells = cells,
                             .ncells = ncells,
                             .progress = progress,
                             .arg = arg};
    int stopped_short = 0, ret = plan_sweeps(&rr);

    /* A sweep that stopped short: another would too, as slowly. */
    for (unsigned k = 0;
         k < rr.rounds && rr.nstops > 0 && ret == 0 && !stopped_short; k++) {
        ret = sweep_round(&rr, k, &stopped_short);
    }
    finish_cells(&rr);
    free(rr.times);
    return ret;
}
