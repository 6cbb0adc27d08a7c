/*
 * hmaf-bench's shared declarations: the host buffer's layout, the patterns,
 * the contenders and the per-thread state of the dpu side.
 *
 * The bench is table-driven: a run is every pattern x size ("cell"), and
 * in each cell every contender that has an operation for the pattern's
 * kind. Adding a contender is one row in contenders.c; a pattern, one row
 * in main.c.
 */
#ifndef HMAF_BENCH_H
#define HMAF_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <hmaf/hmaf.h>

#define BENCH_TOKEN "hmaf-bench"
#define NO_CPU      (-1)

/* The host buffer, root "buf": transfers use the data area, pointer
 * chases the chase area after it. The dpu side keeps a byte-identical
 * mirror (the memcpy contender's source, and what reads are checked
 * against). */
#define DATA_LEN  ((size_t)64 << 20)
#define CHASE_LEN ((size_t)16 << 20)
#define BUF_LEN   (DATA_LEN + CHASE_LEN)
#define XFER_MAX  ((size_t)16 << 20) /* largest transfer */
/* One-at-a-time transfers all use this page-aligned offset. */
#define SAME_OFF ((uint64_t)4096)

#define NODE_LEN    64   /* bytes per chain node; the next pointer first */
#define CHAIN_NODES 1000 /* nodes per chain */
#define CHAINS_MAX  16
#define BATCH_MAX   256
#define THREADS_MAX 2
#define RND_N       (1u << 16) /* random slots per thread, reused cyclically */
#define ROUNDS_MAX  1000

/* Nodes walked per chain where each is a DMA round trip (the doca
 * engine): on the emulation's 100x timed model one takes 240 us, and 16
 * chains of 1000 one node at a time would take 4 s a walk. The same with
 * ucx, where each node is a network round trip (20-30 us over tcp). */
#define CHASE_NODES_DMA 100
/* --quick walks fewer on every engine: on a busy machine a walk of the
 * socket contenders (16 x 1000 round trips) alone takes seconds. */
#define CHASE_NODES_QUICK 32

/* The host's allocation: the buffer, then a tail in the same pages, so
 * that one HMAF exposure and one DOCA export cover everything a contender
 * touches. The tail holds the ping-pong area and the raw DOCA export
 * record (doca_raw.c). */
#define TAIL_LEN     ((size_t)8192)
#define HOST_LEN     (BUF_LEN + TAIL_LEN)
#define PP_OFF       BUF_LEN
#define DOCA_REC_OFF (BUF_LEN + 4096)
#define DOCA_REC_LEN ((size_t)4096)

/* Each dpu thread's local memory, one block (one DOCA local mmap): reads
 * land in dst, writes come from src, and a page of scratch words. */
#define SCRATCH_LEN ((size_t)4096)
#define WORKER_MEM  (2 * XFER_MAX + SCRATCH_LEN)

/* Names of the host's threads, so the parent can find them in /proc. */
#define PONG_NAME "bench-pong"
#define SOCK_NAME "bench-sock"
#define UCX_NAME  "bench-ucx"

/* The scaling rows' regions (scale.c): the host exposes REGIONS_MAX
 * (--quick: REGIONS_QUICK) separate ranges of REGION_LEN bytes, one every
 * REGION_STRIDE bytes, each its own exposure, so that each is a region of
 * its own in a session's cache; root "regions" covers them all. */
#define REGIONS_MAX   100000u
#define REGIONS_QUICK 1000u
#define REGION_LEN    ((size_t)64)
#define REGION_STRIDE ((size_t)128)
/* The most sessions the sessions row keeps live at once; the agent serves
 * SESSIONS_SPARE more, the bench's own. */
#define SESSIONS_MAX   64u
#define SESSIONS_SPARE 16u

/* The raw ping-pong area, root "pingpong". Request and reply sit on
 * separate cache lines, so an echo costs one line transfer each way, like
 * the agent's request and response words. */
struct pingpong {
    _Alignas(64) _Atomic uint64_t request; /* the dpu side writes here */
    _Alignas(64) _Atomic uint64_t reply;   /* the pong thread echoes here */
    /* Split mode: the dpu side's commands, there being no pipe between
     * the two processes. command = seq << 8 | CMD_*, written by the dpu
     * side; ack = seq << 8 | reply, written by the host when done. */
    _Alignas(64) _Atomic uint64_t command;
    _Alignas(64) _Atomic uint64_t ack;
};

/* ------------------------------------------------------------------ */
/* Patterns and cells                                                  */
/* ------------------------------------------------------------------ */

enum kind {
    KIND_ONE,   /* one transfer per unit of work */
    KIND_BATCH, /* p->count small reads per unit */
    KIND_CHASE, /* walk p->count chains, cell->nodes deep, per unit */
    KIND_PING,  /* one round trip with the host per unit */
    KIND_FAULT, /* mapping mode: the first touch of one page per unit */
    /* p->count reads posted, CPU work meanwhile (cell->work), then all
     * waited for: does the engine move bytes while the CPU computes? */
    KIND_OVERLAP,
    /* Figures filled by the pattern's own procedure (p->measure), not
     * unit by unit: a registration sweep, a close watched by pings. */
    KIND_SWEEP,
};

/* AT_REGIONS: one of the first cell->n regions, at random. */
enum where { AT_SAME, AT_SEQ, AT_RANDOM, AT_REGIONS };

struct bench;
struct cell;
typedef void (*progress_fn)(const struct cell *cell, unsigned round, void *arg);

struct pattern {
    const char *id;    /* file names, CSV and JSON */
    const char *title; /* table and chart headings */
    enum kind kind;
    enum where where;
    int is_write;     /* only with AT_SAME: writes put back what is there */
    unsigned count;   /* reads per batch, or chains; 1 otherwise */
    unsigned threads; /* dpu threads running it together */
    const size_t *sizes;
    size_t nsizes;
    int mapping;      /* mapping mode: runs where userfaultfd works */
    const char *only; /* these contenders only; NULL: all that apply */
    /* Sparse calls: each unit comes after this long asleep, and only the
     * units are timed (measure.c); 0: units back to back. */
    uint64_t idle_ns;
    const char *engines; /* run only on these engines; NULL: on any */
    /* KIND_OVERLAP: the CPU work per unit is set to take as long as this
     * contender's unit (the reads alone). */
    const char *work_like;
    /* A scaling row is measured at each N of this list (cell->n; --quick:
     * qscales), which the table calls axis ("regions"). */
    const unsigned *scales, *qscales;
    size_t nscales, nqscales;
    const char *axis;
    const char *unit; /* the table's unit line; NULL: the kind's */
    int scaling;      /* --scale runs it (at 64 B if it has sizes) */
    int forked_host;  /* needs the forked host: not in split mode */
    int regions;      /* needs the host's regions (root "regions") */
    /* Untimed: before each cell of the pattern, and after its last. */
    int (*prepare)(struct bench *b, struct cell *cell);
    void (*finish)(struct bench *b);
    /* Measures every cell of the run whose pattern has this procedure, at
     * once (scale.c); NULL: measure_cell, cell by cell. */
    int (*measure)(struct bench *b, struct cell *cells, size_t ncells,
                   progress_fn progress, void *arg);
};

struct contender;

/* One contender's figures in one cell. */
struct figure {
    const struct contender *c;
    unsigned iters;      /* timed units per round and thread */
    unsigned warm;       /* untimed units before them */
    double *ns;          /* per round: ns per unit (all threads together) */
    double ns_med;       /* median of ns */
    double ns_lo, ns_hi; /* its 25th and 75th percentiles (the charts' bars) */
    double ratio;        /* median of the per-round ratios to raw's time */
    double lo, hi;       /* their 25th and 75th percentiles */
};

#define CONTENDERS_MAX 16

struct cell {
    const struct pattern *p;
    size_t size;    /* bytes per transfer (per node for chases) */
    unsigned n;     /* a scaling row's N (p->axis); 0 otherwise */
    uint64_t work;  /* KIND_OVERLAP: cpu_work() steps per unit */
    unsigned nodes; /* KIND_CHASE: nodes walked per chain */
    int measured;
    /* Rounds measured; 0 after measuring: not measured, note says why
     * (a scaling row that did not get to its N in time). */
    unsigned rounds;
    char note[160]; /* printed under the cell's table row */
    unsigned nfig;
    struct figure fig[CONTENDERS_MAX]; /* fig[0] is the baseline */
};

/* Bytes one unit of work moves (0 for pings). */
uint64_t cell_bytes(const struct cell *cell);
/* The figure of contender `name` in cell, or NULL. */
const struct figure *cell_find(const struct cell *cell, const char *name);

/* ------------------------------------------------------------------ */
/* Contenders                                                          */
/* ------------------------------------------------------------------ */

struct worker;
struct bench;

/* State of one pointer chase: where each chain is and how far it got. */
struct chase {
    size_t n;
    unsigned nodes;          /* walked per chain */
    uint64_t at[CHAINS_MAX]; /* next node to read; 0 when done */
    unsigned steps[CHAINS_MAX];
    uint64_t last[CHAINS_MAX];   /* last node read */
    hmaf_seg_t segs[CHAINS_MAX]; /* one step's reads */
    size_t live[CHAINS_MAX];     /* the chain each of segs reads for */
};

typedef int (*rw_fn)(struct worker *w, int is_write, const hmaf_seg_t *seg);
typedef int (*batch_fn)(struct worker *w, const hmaf_seg_t *segs, size_t n);
typedef int (*chase_fn)(struct worker *w, const struct contender *self,
                        struct chase *ch);
typedef int (*ping_fn)(struct worker *w);
typedef int (*fault_fn)(struct worker *w, const struct cell *cell,
                        unsigned unit);
typedef int (*overlap_fn)(struct worker *w, const hmaf_seg_t *segs, size_t n,
                          uint64_t work);

/*
 * A way of reaching host memory. Each operation is NULL where it does not
 * apply; the contender then sits out cells of that kind.
 */
struct contender {
    const char *name;     /* column heading, at most 11 characters */
    const char *what;     /* one line for the legend */
    rw_fn rw;             /* one transfer: KIND_ONE */
    batch_fn batch;       /* many reads: KIND_BATCH */
    chase_fn chase;       /* KIND_CHASE */
    ping_fn ping;         /* KIND_PING */
    fault_fn fault;       /* KIND_FAULT */
    overlap_fn overlap;   /* KIND_OVERLAP */
    int multi_chain;      /* chase only with several chains */
    int named_only;       /* only in patterns whose `only` names it */
    const char *patterns; /* only in these patterns; NULL: in any */
    int local;            /* works on the mirror, not on the host */
    /* Its figures come from its pattern's own procedure (KIND_SWEEP). */
    int own;
    /* Its side runs a dpu thread on the host's cpu on purpose: runqueue
     * waits are what it measures, not a disturbance. */
    int shares_cpu;
    int no_data; /* moves no bytes (CPU work only): nothing to check */
    /* Why it needs the host process on this machine (its pid, a Unix
     * socket, a pipe); NULL: it works across machines. Split mode skips
     * these. */
    const char *same_machine;
    /* Untimed, around each round: host threads that only run meanwhile. */
    int (*enter)(struct bench *b);
    int (*leave)(struct bench *b);
    /* Prefix of the host threads that serve it: their runqueue waits
     * spoil its rounds too. NULL: none (one-sided); "": all. */
    const char *serves;
    int (*usable)(const struct bench *b); /* NULL: always */
};

extern const struct contender bench_contenders[];
extern const size_t bench_ncontenders;

/* Does contender c take part in cells of pattern p? */
int contender_applies(const struct bench *b, const struct contender *c,
                      const struct pattern *p);
/* Can c run in this run at all (installed, set up, not skipped)? */
int contender_runs(const struct bench *b, const struct contender *c);
/* Set b->baseline and b->checker, once the contenders are set up. */
void choose_baseline(struct bench *b);

/* Unit `unit` of a cell's work on worker w. */
int run_unit(struct worker *w, const struct cell *cell,
             const struct contender *c, unsigned unit);
/* Unit 0, checked: the bytes read are the mirror's, a write left its
 * bytes at the host, a chase got to the end of every chain. What the unit
 * should produce is spoiled first, so that one moving nothing fails. */
int verify_unit(struct worker *w, const struct cell *cell,
                const struct contender *c);

/* CPU work that touches no memory: `steps` steps of a dependent chain. */
void cpu_work(uint64_t steps);

/* Generic chase drivers: node by node with self->rw, chains one after
 * another; or all live chains each step with one self->batch. */
int chase_serial(struct worker *w, const struct contender *self,
                 struct chase *ch);
int chase_stepwise(struct worker *w, const struct contender *self,
                   struct chase *ch);

/* ------------------------------------------------------------------ */
/* The dpu side                                                        */
/* ------------------------------------------------------------------ */

struct ucx_worker;
struct ucx_ctx;
struct mapping;
struct doca_raw;
struct draw_worker;

/* What a thread runs: units [first, first + n) of a cell. */
struct job {
    const struct cell *cell;
    const struct contender *c;
    unsigned first, n;
    unsigned nthreads;
    _Atomic unsigned arrived; /* start barrier */
};

struct thread_result {
    uint64_t t0, t1; /* ns, CLOCK_MONOTONIC */
    uint64_t delay;  /* ns waited on a runqueue meanwhile */
    int ret;
};

struct worker {
    struct bench *b;
    int id;
    int cpu;
    uint8_t *mem; /* WORKER_MEM, page aligned: dst, src, scratch */
    uint8_t *dst; /* XFER_MAX: reads and chase nodes land here */
    uint8_t *src; /* XFER_MAX: writes send what the host holds at SAME_OFF */
    uint8_t *scratch; /* SCRATCH_LEN: raw DOCA ping words */
    uint32_t *rnd;    /* RND_N random slots */
    hmaf_seg_t segs[BATCH_MAX];
    struct chase chase;
    int sock_fd[2];           /* blocking, spinning socket; -1: none */
    struct ucx_worker *ucx;   /* NULL: no UCX contender */
    struct draw_worker *draw; /* NULL: no raw DOCA contenders */
    /* Worker 1 and up run in their own thread, fed one job at a time. */
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *job;
    unsigned gen;          /* jobs posted */
    _Atomic unsigned done; /* jobs finished */
    int stop;
    struct thread_result res;
};

struct child;

struct scale;

struct bench {
    hmaf_session_t *s;
    /* The session HMAF's contenders use in the cell being measured: s, or
     * a scaling row's own (scale.c). */
    hmaf_session_t *hmaf_s;
    /* With the doca engine, a second session whose engine stages every
     * transfer (HMAF_DOCA_ZCOPY_MIN=0 when it opened); NULL: none. */
    hmaf_session_t *staged;
    char staged_note[128]; /* why there is none */
    /* With the cma engine, a second session that never splits a
     * transfer (HMAF_SPLIT_THREADS=1 when it opened); NULL: none. */
    hmaf_session_t *unsplit;
    struct child *host;
    pid_t pid; /* the host's; 0 in split mode (not on this machine) */
    int split; /* --connect: the host is a separate `--serve` process */
    const char *engine;
    /* The contender every ratio is against: raw, doca-raw with the doca
     * engine, hmaf in split mode without DOCA. Its rw also spoils and
     * reads back host bytes for the checks. */
    const char *baseline;
    const struct contender *checker;
    uint64_t buf; /* root "buf" */
    uint64_t pp;  /* root "pingpong" */
    uint8_t *mirror;
    uint64_t regions;        /* root "regions"; 0: the host has none */
    unsigned nregions;       /* how many */
    uint8_t *regions_mirror; /* their bytes, as the host holds them */
    struct scale *scale;     /* the scaling rows' sessions (scale.c) */
    unsigned chase_nodes;    /* nodes a chase walks per chain */
    /* Where each chain starts, and the last node a walk reads. */
    uint64_t chain_start[CHAINS_MAX], chain_last[CHAINS_MAX];
    uint64_t ping_seq;
    struct ucx_ctx *ucx;
    char ucx_note[384];    /* what UCX is doing here, or why not */
    struct doca_raw *draw; /* NULL: no raw DOCA DMA here */
    char draw_note[256];   /* what it runs on, or why not */
    struct mapping *map;   /* NULL: no mapping mode here */
    char map_note[128];    /* why not, or what sits out */
    struct worker w[THREADS_MAX];
    unsigned nworkers;
    int dpu_cpu;
    int cpus_shared; /* a second dpu thread shares the host's cpu */
    unsigned rounds;
    int quick;          /* --quick */
    uint64_t target_ns; /* timed work per round and contender */
    int verbose;
    unsigned reruns, kept;
    unsigned rerun_max; /* disturbed sides of rounds are run again this often */
#define RERUN_MAX 2     /* ... in a full run */
    unsigned iters_min; /* units per round and contender, at least */
    /* ... and at most, in sparse patterns: each unit costs p->idle_ns */
    unsigned sparse_iters_max;
/* In a full run even the slowest contender runs a few units per round: one
 * unit is one sample, and a 16 MiB transfer's time varies from one to the
 * next (but see LONG_UNIT, measure.c). */
#define ITERS_MIN 3
};

/* Host memory seen through the mirror. */
static inline uint8_t *mirror_of(const struct bench *b, uint64_t remote)
{
    return b->mirror + (remote - b->buf);
}

/* ------------------------------------------------------------------ */
/* Modules                                                             */
/* ------------------------------------------------------------------ */

/* layout.c: the buffer's contents, shared by host and dpu side. */
void layout_fill(uint8_t *buf, uint64_t addr, uint64_t *starts_out,
                 uint64_t *lasts_out);
/* The regions' area: n regions, REGION_STRIDE apart, and the gaps. */
void layout_fill_regions(uint8_t *area, unsigned n);
/* The k-th node (from 1) of the chain at start in buf, which lies at addr:
 * k - 1 next pointers followed. */
uint64_t layout_chain_node(const uint8_t *buf, uint64_t addr, uint64_t start,
                           unsigned k);
void layout_random(uint32_t *rnd, unsigned seed);
/* v[0..n) a random permutation of 0..n-1. */
void layout_permutation(uint32_t *v, size_t n, unsigned seed);
uint64_t layout_offset(const struct worker *w, const struct cell *cell,
                       unsigned unit, unsigned j);
/* The host address of transfer j of unit `unit`: in the buffer, or in
 * the regions' area (AT_REGIONS). */
uint64_t layout_addr(const struct worker *w, const struct cell *cell,
                     unsigned unit, unsigned j);
/* What the host holds at remote, as we know it: the mirror, or the
 * regions' copy. */
const uint8_t *host_bytes(const struct bench *b, uint64_t remote);
uint64_t now_ns(void);

/* host.c: the forked host process and the parent's handle on it. */
struct child {
    pid_t pid;
    int cpu;      /* the host process runs here, or NO_CPU */
    int cmd_fd;   /* parent -> child; closing it stops the child */
    int reply_fd; /* child -> parent */
    char dir[64];
    char address[128];   /* the agent's */
    const char *engine;  /* the agent's engine, and the session's */
    const char *netns;   /* the network namespace it enters, or NULL */
    char sock_path[128]; /* the socket server's */
    void *ucx_addr;      /* the host's UCX worker address, or NULL */
    size_t ucx_addr_len;
    void *ucx_rkey; /* packed rkey of "buf" */
    size_t ucx_rkey_len;
    char ucx_error[128]; /* why there is no UCX on the host */
    unsigned regions;    /* separate regions to expose (scale.c) */
    int remote;          /* split mode: a `--serve` process, no pid, no pipe */
    uint64_t cmd_seq;    /* split mode: commands sent */
};

/* Host commands, one byte on the pipe, answered with REPLY_OK or not. */
#define CMD_PONG_START 'P'
#define CMD_PONG_STOP  'S'
#define CMD_UCX_START  'U'
#define CMD_UCX_STOP   'V'
#define CMD_SOCK_SPIN  'T' /* spinning socket connections poll */
#define CMD_SOCK_BLOCK 'W' /* ... or block again */
/* Split mode: the dpu side's run is complete. The host exits 0 only when
 * this came before the session ended. */
#define CMD_DONE 'D'

int child_start(struct child *c);
int child_stop(struct child *c);
int child_command(struct child *c, unsigned char cmd);
/* A command to the host: over the pipe to a forked one, through the
 * command word (written with the session) to a remote one. */
int host_command(struct bench *b, unsigned char cmd);
int pin_to(int cpu);
/* Does address name a DOCA Comm Channel ("comch:...")? */
int is_comch(const char *address);
/* --serve: be the host, standalone, on cpu (or NO_CPU), until one
 * dpu-side run has ended; 0 when it ended complete (CMD_DONE), -1 when no
 * dpu side came within a minute, its handshake was refused, or it left
 * without finishing. */
int serve_main(const char *address, const char *engine, int cpu);
/* The agent's params.max_sessions: the sessions row's and ours. */
#define AGENT_SESSIONS (SESSIONS_MAX + SESSIONS_SPARE)

/* main.c: a session to the host like the bench's own, with a region cache
 * of cache_max_regions (0: the default) and mailbox requests that may
 * wait rpc_timeout_ms (0: the default). */
int bench_session_open(const struct bench *b, unsigned cache_max_regions,
                       int rpc_timeout_ms, hmaf_session_t **s_out);

/* scale.c: the scaling rows' sessions and procedures. */
int scale_open(struct bench *b);
void scale_close(struct bench *b);
int sessions_prepare(struct bench *b, struct cell *cell);
void sessions_finish(struct bench *b);
int sessions_ping(struct worker *w);
int miss_prepare(struct bench *b, struct cell *cell);
void miss_finish(struct bench *b);
int miss_read(struct worker *w);
int one_cpu_enter(struct bench *b);
int one_cpu_leave(struct bench *b);
int one_cpu_usable(const struct bench *b);
int regions_usable(const struct bench *b);
int regions_measure(struct bench *b, struct cell *cells, size_t ncells,
                    progress_fn progress, void *arg);

/* sock.c: the socket server (host) and its client (dpu). */
struct sock_server;
int sock_server_start(const char *path, uint8_t *buf, size_t len,
                      struct sock_server **server_out);
void sock_server_stop(struct sock_server *srv);
void sock_server_spin(struct sock_server *srv, int on);
int sock_connect(const char *path, int spin);
int sock_rw(struct worker *w, int is_write, const hmaf_seg_t *seg);
int sock_batch(struct worker *w, const hmaf_seg_t *segs, size_t n);
int sock_ping(struct worker *w);
int sockspin_rw(struct worker *w, int is_write, const hmaf_seg_t *seg);
int sockspin_batch(struct worker *w, const hmaf_seg_t *segs, size_t n);
int sockspin_ping(struct worker *w);

/* ucx.c: ucp_get/ucp_put on the host's own buffer. */
struct ucx_host;
int ucx_host_start(void *buf, size_t len, struct ucx_host **host_out, char *err,
                   size_t errlen);
void ucx_host_blobs(const struct ucx_host *h, const void **addr_out,
                    size_t *addr_len_out, const void **rkey_out,
                    size_t *rkey_len_out);
int ucx_host_progress(struct ucx_host *h);
void ucx_host_stop(struct ucx_host *h);
int ucx_open(struct bench *b);
void ucx_close(struct bench *b);
int ucx_rw(struct worker *w, int is_write, const hmaf_seg_t *seg);
int ucx_batch(struct worker *w, const hmaf_seg_t *segs, size_t n);

/* doca_raw.c: raw DOCA DMA, the baseline of the doca engine. Built with
 * DOCA only (HMAF_BENCH_DOCA); otherwise nothing is exported and the
 * contenders are unusable. */
struct doca_raw_host;
/* Host: export [mem, mem + len) for PCI reads and writes with plain DOCA
 * calls and fill the record at rec (DOCA_REC_LEN bytes) that the dpu side
 * reads; on failure the record says why. */
int doca_raw_export(void *mem, size_t len, void *rec,
                    struct doca_raw_host **host_out);
void doca_raw_unexport(struct doca_raw_host *h);
/* The record's note: what was exported, or why not. */
const char *doca_raw_record_note(const void *rec);
/* Dpu side: import the export, one DMA context per thread. 0 also when
 * not available: b->draw stays NULL and b->draw_note says why. */
int doca_raw_open(struct bench *b);
void doca_raw_close(struct bench *b);
int doca_raw_usable(const struct bench *b);
int doca_raw_rw(struct worker *w, int is_write, const hmaf_seg_t *seg);
int doca_raw_batch(struct worker *w, const hmaf_seg_t *segs, size_t n);
int doca_pipe_rw(struct worker *w, int is_write, const hmaf_seg_t *seg);
int doca_pipe_batch(struct worker *w, const hmaf_seg_t *segs, size_t n);
/* doca-pipe's reads, with cpu_work(work) after they are all submitted and
 * before they are waited for. */
int doca_pipe_overlap(struct worker *w, const hmaf_seg_t *segs, size_t n,
                      uint64_t work);
int doca_raw_ping(struct worker *w);

/* mapping.c: mapping mode, hmaf_map against a bare userfaultfd region. */
#define MAP_REREAD_LEN ((size_t)2 << 20) /* second-touch reads */
/* 0 also when userfaultfd is not available: b->map stays NULL and
 * b->map_note says why. */
int mapping_open(struct bench *b);
void mapping_close(struct bench *b);
void mapping_stats(const struct bench *b, char *buf, size_t cap);
/* Offset in the data area of the page unit `unit` touches. */
uint64_t mapping_offset(const struct bench *b, const struct cell *cell,
                        unsigned unit);
int rawuffd_fault(struct worker *w, const struct cell *cell, unsigned unit);
int hmafmap_fault(struct worker *w, const struct cell *cell, unsigned unit);
int hmafmap_reread(struct worker *w, int is_write, const hmaf_seg_t *seg);
int rawuffd_reset(struct bench *b);
int hmafmap_reset(struct bench *b);
int hmafmap_populate(struct bench *b);
int rawuffd_usable(const struct bench *b);
int hmafmap_usable(const struct bench *b);

/* measure.c: rounds, medians, the worker threads. */
int workers_start(struct bench *b);
void workers_stop(struct bench *b);
int measure_cell(struct bench *b, struct cell *cell, progress_fn progress,
                 void *arg);
/* Medians and ratios of a measured cell's cell->rounds rounds. */
void summarize_cell(struct cell *cell);
double quantile(double *v, unsigned n, double q);
/* Median over rounds of num's time / den's time, with p25 and p75. */
void ratio_of(const struct figure *num, const struct figure *den,
              unsigned rounds, double *med_out, double *lo_out, double *hi_out);

#endif /* HMAF_BENCH_H */
