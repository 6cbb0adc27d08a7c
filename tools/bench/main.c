/*
 * hmaf-bench: HMAF against the primitive it wraps and the alternatives,
 * in one run.
 *
 * It forks its own host process, which holds an 80 MiB buffer and serves
 * it through an HMAF agent, a Unix-socket server thread and UCX. The
 * parent is the dpu side: for every pattern (one at a time, after an idle
 * spell, sequential, random, batches, CPU work overlapping posted reads,
 * pointer chases, two threads, ping) and size, it times every contender on
 * the same addresses and local buffers, and reports each figure with its
 * ratio to a baseline measured in the same rounds (see measure.c): raw
 * process_vm_readv/writev, with --engine doca raw DOCA DMA (doca_raw.c),
 * with --engine ucx raw ucp_get_nbx/ucp_put_nbx on the engine's transport
 * (ucx.c). The targets it judges are the engine's: issue 3's (and issue
 * 11's scaling rows, scale.c: N regions cached, N sessions, one cpu
 * shared), with --engine doca the DOCA issue's, with --engine ucx the UCX
 * issue's.
 *
 * Split mode, for a host and a dpu side on two machines (a BlueField's
 * host and its Arm cores): `--serve ADDRESS` runs the host alone and
 * `--connect ADDRESS` the dpu side; only contenders that work across
 * machines run. With comch addresses the dpu side listens and the host
 * dials, as DOCA Comm Channel's roles require.
 *
 * Pinning: by default the dpu side runs on one cpu and the whole host
 * process on another, like a DPU beside its host; a second dpu thread,
 * when a pattern wants one, runs on the host's cpu. Left to itself the
 * scheduler sometimes stacks a spinning client and server on one cpu, and
 * round trips then take a time slice each; --no-pin shows it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"

#define ROUNDS_DEFAULT 15
#define ROUNDS_QUICK   3
#define ROUND_MS       3.0 /* timed work per contender and round */
#define ROUND_MS_QUICK 0.25
#define QUICK_LARGE    (256 * KIB) /* --quick's large size (in sweep) */
#define OUT_DEFAULT    "hmaf-bench-results"

/* Split mode: how long the dpu side waits for the host (a comch dpu side
 * listens until the host has dialed). */
#define SPLIT_WAIT_MS 60000

/* The doca engine's in-place threshold, read when a session opens. */
#define STAGED_ENV "HMAF_DOCA_ZCOPY_MIN"
/* Threads one transfer may use, read when a session opens. */
#define UNSPLIT_ENV "HMAF_SPLIT_THREADS"

#define KIB      ((size_t)1 << 10)
#define MIB      ((size_t)1 << 20)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* What is measured                                                    */
/* ------------------------------------------------------------------ */

static const size_t sweep[] = {8,        64,        512,     4 * KIB,
                               32 * KIB, 256 * KIB, 2 * MIB, 16 * MIB};
/* One at a time, also 64 KiB: where the doca engine starts to move a
 * caller's buffer in place (HMAF_DOCA_ZCOPY_MIN). */
static const size_t sweep_one[] = {
    8, 64, 512, 4 * KIB, 32 * KIB, 64 * KIB, 256 * KIB, 2 * MIB, 16 * MIB};
static const size_t small[] = {8, 64, 512, 4 * KIB};
static const size_t overlap[] = {64 * KIB};
static const size_t node[] = {NODE_LEN};
static const size_t no_size[] = {0};
static const size_t page[] = {4 * KIB};
static const size_t reread[] = {MAP_REREAD_LEN};
static const size_t one_small[] = {64};

/* A sparse call: longer asleep than HMAF's revocation check interval
 * (revoke_check_us, 1 ms by default), so the call finds the host's
 * revocation epoch due for a look. Each such unit costs SPARSE_IDLE_NS of
 * wall time: a round has at most SPARSE_UNITS (--quick: _QUICK). */
#define SPARSE_IDLE_NS     (5ull * 1000 * 1000)
#define SPARSE_UNITS       32
#define SPARSE_UNITS_QUICK 4
#define SPARSE_WITH        "raw,doca-raw,hmaf,hmaf-nb"

#define SIZES(a) .sizes = (a), .nsizes = COUNT(a)

/* The scaling rows' N (scale.c): a full run's, and --quick's, which stay
 * small (at most REGIONS_QUICK regions, 4 sessions). */
static const unsigned region_counts[] = {10, 1000, 10000, REGIONS_MAX};
static const unsigned region_counts_quick[] = {10, REGIONS_QUICK};
static const unsigned region_top[] = {REGIONS_MAX};
static const unsigned region_top_quick[] = {REGIONS_QUICK};
static const unsigned session_counts[] = {1, 4, 16, SESSIONS_MAX};
static const unsigned session_counts_quick[] = {1, 4};

#define SCALES(a, q)                                                           \
    .scales = (a), .nscales = COUNT(a), .qscales = (q), .nqscales = COUNT(q)
/* The scaling rows judge HMAF against the raw cma calls, with the host
 * process on this machine. */
#define SCALING .scaling = 1, .engines = "cma", .forked_host = 1

static const struct pattern patterns[] = {
    {.id = "read-one",
     .title = "read, one at a time, same address",
     .kind = KIND_ONE,
     .where = AT_SAME,
     .count = 1,
     .threads = 1,
     SIZES(sweep_one)},
    {.id = "write-one",
     .title = "write, one at a time, same address",
     .kind = KIND_ONE,
     .where = AT_SAME,
     .is_write = 1,
     .count = 1,
     .threads = 1,
     SIZES(sweep_one)},
    {.id = "read-sparse",
     .title = "read after 5 ms idle, same address",
     .kind = KIND_ONE,
     .where = AT_SAME,
     .count = 1,
     .threads = 1,
     SIZES(one_small),
     .only = SPARSE_WITH,
     .idle_ns = SPARSE_IDLE_NS},
    {.id = "write-sparse",
     .title = "write after 5 ms idle, same address",
     .kind = KIND_ONE,
     .where = AT_SAME,
     .is_write = 1,
     .count = 1,
     .threads = 1,
     SIZES(one_small),
     .only = SPARSE_WITH,
     .idle_ns = SPARSE_IDLE_NS},
    {.id = "read-seq",
     .title = "read, sequential addresses",
     .kind = KIND_ONE,
     .where = AT_SEQ,
     .count = 1,
     .threads = 1,
     SIZES(sweep)},
    {.id = "read-random",
     .title = "read, random addresses",
     .kind = KIND_ONE,
     .where = AT_RANDOM,
     .count = 1,
     .threads = 1,
     SIZES(sweep),
     .scaling = 1},
    {.id = "read-random-2t",
     .title = "read, random addresses, 2 threads",
     .kind = KIND_ONE,
     .where = AT_RANDOM,
     .count = 1,
     .threads = 2,
     SIZES(sweep),
     .scaling = 1},
    {.id = "batch16",
     .title = "batches of 16 reads, random addresses",
     .kind = KIND_BATCH,
     .where = AT_RANDOM,
     .count = 16,
     .threads = 1,
     SIZES(small)},
    {.id = "batch256",
     .title = "batches of 256 reads, random addresses",
     .kind = KIND_BATCH,
     .where = AT_RANDOM,
     .count = 256,
     .threads = 1,
     SIZES(small)},
    {.id = "batch256-seq",
     .title = "batches of 256 reads, consecutive "
              "addresses",
     .kind = KIND_BATCH,
     .where = AT_SEQ,
     .count = 256,
     .threads = 1,
     SIZES(small)},
    /* An engine that moves bytes while the CPU is free (doca) against
     * the same reads and the same CPU work alone. */
    {.id = "overlap",
     .title = "16 reads posted, CPU work, then flushed",
     .kind = KIND_OVERLAP,
     .where = AT_RANDOM,
     .count = 16,
     .threads = 1,
     SIZES(overlap),
     .engines = "doca",
     .work_like = "hmaf-nb"},
    {.id = "chase1",
     .title = "pointer chase, 1 chain",
     .kind = KIND_CHASE,
     .count = 1,
     .threads = 1,
     SIZES(node)},
    {.id = "chase16",
     .title = "pointer chase, 16 chains",
     .kind = KIND_CHASE,
     .count = CHAINS_MAX,
     .threads = 1,
     SIZES(node)},
    {.id = "ping",
     .title = "round trip with the host",
     .kind = KIND_PING,
     .count = 1,
     .threads = 1,
     SIZES(no_size)},
    /* The scaling rows (scale.c). The sessions row keeps N sessions live
     * and pings them one after another. */
    {.id = "sessions",
     .title = "ping with N sessions live, pinged in turn",
     .kind = KIND_PING,
     .count = 1,
     .threads = 1,
     SIZES(no_size),
     SCALES(session_counts, session_counts_quick),
     .axis = "sessions",
     .only = "raw,hmaf,hmaf-nsess",
     SCALING,
     .prepare = sessions_prepare,
     .finish = sessions_finish},
    {.id = "one-cpu",
     .title = "ping, dpu side and agent on one cpu",
     .kind = KIND_PING,
     .count = 1,
     .threads = 1,
     SIZES(no_size),
     .only = "raw,hmaf,hmaf-1cpu",
     SCALING},
    {.id = "regions-miss",
     .title = "read missing the region cache, against a ping",
     .kind = KIND_PING,
     .count = 1,
     .threads = 1,
     SIZES(no_size),
     .unit = "us per round trip, or per read that misses (hmaf-miss)",
     .only = "raw,hmaf,hmaf-miss",
     SCALING,
     .regions = 1,
     .prepare = miss_prepare,
     .finish = miss_finish},
    /* The three regions rows come from one procedure: sweeps that
     * register regions one by one, the hits timed at each N on the way,
     * and each sweep's session closed at the end. */
    {.id = "regions-hit",
     .title = "read at random cached regions, N regions cached",
     .kind = KIND_ONE,
     .where = AT_REGIONS,
     .count = 1,
     .threads = 1,
     SIZES(one_small),
     SCALES(region_counts, region_counts_quick),
     .axis = "regions",
     .unit = "us per 64 B transfer",
     .only = "raw,hmaf",
     SCALING,
     .regions = 1,
     .measure = regions_measure},
    {.id = "regions-reg",
     .title = "registration, N regions cached",
     .kind = KIND_SWEEP,
     .count = 1,
     .threads = 1,
     SIZES(no_size),
     SCALES(region_counts, region_counts_quick),
     .axis = "regions",
     .unit = "us per first read of a region, or per ping (hmaf)",
     .only = "hmaf,hmaf-reg,hmaf-sweep",
     SCALING,
     .regions = 1,
     .measure = regions_measure},
    {.id = "regions-close",
     .title = "another session's ping while N regions' session closes",
     .kind = KIND_SWEEP,
     .count = 1,
     .threads = 1,
     SIZES(no_size),
     SCALES(region_top, region_top_quick),
     .axis = "regions",
     .unit = "us, the longest ping (hmaf: just before the close)",
     .only = "hmaf,hmaf-close",
     SCALING,
     .regions = 1,
     .measure = regions_measure},
    /* Mapping mode: one word touched per page; every touch a first. */
    {.id = "map-random",
     .title = "first touch, pages in random order",
     .kind = KIND_FAULT,
     .where = AT_RANDOM,
     .count = 1,
     .threads = 1,
     SIZES(page),
     .mapping = 1},
    {.id = "map-seq",
     .title = "first-touch scan, pages in order",
     .kind = KIND_FAULT,
     .where = AT_SEQ,
     .count = 1,
     .threads = 1,
     SIZES(page),
     .mapping = 1},
    {.id = "map-reread",
     .title = "second touch, memcpy out of present pages",
     .kind = KIND_ONE,
     .where = AT_SAME,
     .count = 1,
     .threads = 1,
     SIZES(reread),
     .mapping = 1,
     .only = "memcpy,hmaf-map"},
};

/* A target's fields that every target has (struct target, report.h). */
#define TARGET(what_, patterns_, size_, num_, den_, means_, kind_, bound_)     \
    .what = (what_), .patterns = (patterns_), .size = (size_), .num = (num_),  \
    .den = (den_), .means = (means_), .kind = (kind_), .bound = (bound_)

/* Issue 3's targets, and the mailbox's from before, for the cma engine
 * (and any but doca: those against raw cma calls are n/a there); issue 11
 * tightened the 64 B read (1.05 before) and the random posted batch
 * (1.10 before). */
static const struct target cma_targets[] = {
    {TARGET("64 B read, one at a time", "read-one", 64, "hmaf", "raw",
            "hmaf time / raw time", BOUND_AT_MOST, 1.03)},
    {TARGET("256 x 64 B random, non-blocking", "batch256", 64, "raw", "hmaf-nb",
            "256 raw calls' time / hmaf-nb time", BOUND_AT_LEAST, 10)},
    {TARGET("256 x 64 B random, non-blocking", "batch256", 64, "hmaf-nb",
            "raw-vec", "hmaf-nb time / one raw vectored call", BOUND_AT_MOST,
            1.05)},
    {TARGET("256 x 64 B consecutive, non-block.", "batch256-seq", 64, "raw",
            "hmaf-nb", "256 raw calls' time / hmaf-nb time", BOUND_AT_LEAST,
            10)},
    {TARGET("256 x 64 B consecutive, non-block.", "batch256-seq", 64, "hmaf-nb",
            "raw-vec", "hmaf-nb time / one raw vectored call", BOUND_AT_MOST,
            1.10)},
    {TARGET("16 MiB read", "read-one", 16 * MIB, "raw", "hmaf",
            "hmaf bandwidth / raw bandwidth", BOUND_AT_LEAST, 0.97)},
    {TARGET("64 B read vs Unix socket server", "read-one", 64, "socket", "hmaf",
            "socket latency / hmaf latency", BOUND_AT_LEAST, 5)},
    {TARGET("64 B read vs spinning socket", "read-one", 64, "socket-spin",
            "hmaf", "socket-spin latency / hmaf latency", BOUND_AT_LEAST, 5)},
    {TARGET("read vs ucp_get, every size", "read-one,read-seq,read-random", 0,
            "ucx", "hmaf", "ucx time / hmaf time", BOUND_ABOVE, 1)},
    {TARGET("write vs ucp_put, every size", "write-one", 0, "ucx", "hmaf",
            "ucx time / hmaf time", BOUND_ABOVE, 1)},
    {TARGET("16 chains chased together", "chase16", NODE_LEN, "hmaf-chase1",
            "hmaf-chase", "throughput / one chain at a time", BOUND_AT_LEAST,
            8)},
    {TARGET("mailbox ping", "ping", 0, "hmaf", "raw",
            "hmaf time / raw cma ping-pong", BOUND_AT_MOST, 1.30)},
    /* Issue 11's scaling targets. */
    {TARGET("64 B hit, 100,000 regions cached", "regions-hit", 64, "hmaf",
            "raw", "hmaf/raw at N / hmaf/raw at 10 regions", BOUND_AT_MOST,
            1.10),
     .scale = REGIONS_MAX, .ref_scale = 10},
    {TARGET("100,000 registrations, in total", "regions-reg", 0, "hmaf-sweep",
            NULL, "seconds, the sweep to N", BOUND_AT_MOST, 5),
     .scale = REGIONS_MAX, .unit_ns = 1e9, .times_n = 1},
    {TARGET("registration, flat to 100,000", "regions-reg", 0, "hmaf-reg", NULL,
            "hmaf-reg at N / hmaf-reg at 10 regions", BOUND_AT_MOST, 2),
     .scale = REGIONS_MAX, .ref_scale = 10},
    {TARGET("miss past cache_max_regions", "regions-miss", 0, "hmaf-miss",
            "hmaf", "hmaf-miss time / hmaf ping time", BOUND_AT_MOST, 3)},
    {TARGET("ping, 64 sessions in turn", "sessions", 0, "hmaf-nsess", NULL,
            "hmaf-nsess at N / at 1 session", BOUND_AT_MOST, 2),
     .scale = SESSIONS_MAX, .ref_scale = 1},
    {TARGET("ping, dpu side on the agent's cpu", "one-cpu", 0, "hmaf-1cpu",
            "hmaf", "hmaf-1cpu time / hmaf time (two cpus)", BOUND_AT_MOST, 5)},
    {TARGET("2 dpu threads, vs raw's scaling", "read-random", 64, "hmaf", "raw",
            "hmaf 2t/1t rate / raw 2t/1t rate", BOUND_AT_LEAST, 0.95),
     .ref_in = "read-random-2t"},
    {TARGET("reads >= 1 MiB vs ucp_get", "read-one,read-seq,read-random", 0,
            "ucx", "hmaf", "ucx time / hmaf time", BOUND_ABOVE, 1),
     .size_min = MIB},
    {TARGET("writes >= 1 MiB vs ucp_put", "write-one", 0, "ucx", "hmaf",
            "ucx time / hmaf time", BOUND_ABOVE, 1),
     .size_min = MIB},
    {TARGET("16 MiB read, split vs unsplit", "read-one", 16 * MIB, "hmaf-1t",
            "hmaf", "hmaf-1t time / hmaf time", BOUND_AT_LEAST, 1),
     .report = 1},
    {TARGET("ping stall, 100,000 regions closed", "regions-close", 0,
            "hmaf-close", NULL, "ms, another session's longest ping",
            BOUND_AT_MOST, 10),
     .scale = REGIONS_MAX, .unit_ns = 1e6},
    {TARGET("mapping: 4 KiB random first touch", "map-random", 4 * KIB,
            "hmaf-map", "raw-uffd", "hmaf-map time / raw uffd fault service",
            BOUND_AT_MOST, 1.2)},
    {TARGET("mapping: first-touch scan", "map-seq", 4 * KIB, "raw-uffd",
            "hmaf-map", "hmaf-map rate / raw 64 KiB-readahead rate",
            BOUND_AT_LEAST, 0.8)},
    {TARGET("mapping: second-touch reads", "map-reread", MAP_REREAD_LEN,
            "memcpy", "hmaf-map", "hmaf-map bandwidth / memcpy bandwidth",
            BOUND_AT_LEAST, 0.9)},
};

/* The DOCA issue's targets, against raw DOCA DMA in the same run. Large
 * transfers compare with doca-pipe, the faster raw way: a transfer above
 * max_buf_size is several tasks, which doca-raw waits for one by one.
 * Lines marked .report are only reported: how far a staged transfer, raw
 * DOCA itself (is the limit the emulation's?) get. */
static const struct target doca_targets[] = {
    {TARGET("64 B read, one at a time", "read-one", 64, "hmaf", "doca-raw",
            "hmaf time / doca-raw time", BOUND_AT_MOST, 1.05)},
    {TARGET("64 B read after 5 ms idle", "read-sparse", 64, "hmaf", "doca-raw",
            "hmaf time / doca-raw time, the op only", BOUND_AT_MOST, 1.10)},
    {TARGET("64 B write after 5 ms idle", "write-sparse", 64, "hmaf",
            "doca-raw", "hmaf time / doca-raw time, the op only", BOUND_AT_MOST,
            1.10)},
    {TARGET("256 x 64 B reads in flight", "batch256,batch256-seq", 64,
            "doca-pipe", "hmaf-nb", "hmaf-nb rate / doca-pipe rate",
            BOUND_AT_LEAST, 0.90)},
    {TARGET(">= 64 KiB reads, in place", "read-one", 0, "doca-pipe", "hmaf",
            "hmaf bandwidth / doca-pipe bandwidth", BOUND_AT_LEAST, 0.95),
     .size_min = 64 * KIB},
    {TARGET(">= 64 KiB writes, in place", "write-one", 0, "doca-pipe", "hmaf",
            "hmaf bandwidth / doca-pipe bandwidth", BOUND_AT_LEAST, 0.95),
     .size_min = 64 * KIB},
    {TARGET(">= 64 KiB reads, staged", "read-one", 0, "doca-pipe",
            "hmaf-staged", "hmaf-staged bandwidth / doca-pipe's",
            BOUND_AT_LEAST, 0.95),
     .size_min = 64 * KIB, .report = 1},
    {TARGET(">= 64 KiB writes, staged", "write-one", 0, "doca-pipe",
            "hmaf-staged", "hmaf-staged bandwidth / doca-pipe's",
            BOUND_AT_LEAST, 0.95),
     .size_min = 64 * KIB, .report = 1},
    {TARGET("16 chains chased together", "chase16", NODE_LEN, "hmaf-chase1",
            "hmaf-chase", "throughput / one chain at a time", BOUND_AT_LEAST,
            8)},
    {TARGET("CPU work + 16 posted reads", "overlap", 64 * KIB, "hmaf-nb+cpu",
            "cpu", "hmaf-nb+cpu / max(cpu, hmaf-nb) time", BOUND_AT_MOST, 1.10),
     .den_max = "hmaf-nb"},
    {TARGET("CPU work + 16 raw DOCA reads", "overlap", 64 * KIB, "doca+cpu",
            "cpu", "doca+cpu / max(cpu, doca-pipe) time", BOUND_AT_MOST, 1.10),
     .den_max = "doca-pipe", .report = 1},
    {TARGET("2 dpu threads, 64 B random reads", "read-random-2t", 64, "hmaf",
            "hmaf", "hmaf rate, 2 threads / 1 thread", BOUND_AT_LEAST, 1.8),
     .num_in = "read-random"},
    {TARGET("2 dpu threads, raw DOCA", "read-random-2t", 64, "doca-raw",
            "doca-raw", "doca-raw rate, 2 threads / 1 thread", BOUND_AT_LEAST,
            1.8),
     .num_in = "read-random", .report = 1},
};

/* The UCX issue's targets, against raw ucp_get_nbx/ucp_put_nbx on the
 * same memory, transport and kind of endpoint, in the same run (ucx.c).
 * Writes are timed to remote completion on both sides (a flush); the
 * 64 B bound holds for both directions. */
static const struct target ucx_targets[] = {
    {TARGET("64 B read, one at a time", "read-one", 64, "hmaf", "ucx",
            "hmaf time / ucx time", BOUND_AT_MOST, 1.05)},
    {TARGET("64 B write, one at a time", "write-one", 64, "hmaf", "ucx",
            "hmaf time / ucx time (flushed)", BOUND_AT_MOST, 1.05)},
    {TARGET(">= 1 MiB reads", "read-one", 0, "ucx", "hmaf",
            "hmaf bandwidth / ucx bandwidth", BOUND_AT_LEAST, 0.97),
     .size_min = MIB},
    {TARGET(">= 1 MiB writes", "write-one", 0, "ucx", "hmaf",
            "the same, both flushed", BOUND_AT_LEAST, 0.97),
     .size_min = MIB},
    {TARGET("256 x 64 B reads in flight", "batch256,batch256-seq", 64, "ucx",
            "hmaf-nb", "hmaf-nb rate / ucx pipelined rate", BOUND_AT_LEAST,
            0.90)},
    {TARGET("16 chains chased together", "chase16", NODE_LEN, "hmaf-chase1",
            "hmaf-chase", "throughput / one chain at a time", BOUND_AT_LEAST,
            8)},
};

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

struct options {
    unsigned rounds;
    int quick;
    int scale; /* only the scaling rows */
    int pin;
    int verbose;
    int charts;
    const char *out_dir; /* NULL: write no files */
    const char *only;    /* run only patterns whose id starts with this */
    const char *with;    /* run only these contenders (and raw) */
    const char *engine;  /* the agent's and the session's */
    const char *csv_path, *json_path;
    const char *serve;      /* split mode: be the host, at this address */
    const char *connect;    /* split mode: be the dpu side, reach it here */
    const char *host_netns; /* the forked host's network namespace */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: hmaf-bench [--quick] [--rounds N] [--out DIR | --no-out]"
            "\n                  [--csv FILE] [--json FILE] [--no-charts] "
            "[--only PATTERN]\n                  [--scale] [--with LIST] "
            "[--no-pin] [--engine NAME] [--verbose]\n"
            "                  [--host-netns NS] [--connect ADDRESS]\n"
            "       hmaf-bench --serve ADDRESS [--engine NAME]\n"
            "       hmaf-bench --help | --version\n"
            "  --quick       every pattern, at most two sizes, %d short "
            "rounds, 32-node\n                chases: a smoke test of a few "
            "seconds\n"
            "  --rounds N    rounds per cell (default %d)\n"
            "  --out DIR     results.csv, results.json and a PNG chart per "
            "pattern (with\n                gnuplot) go here (default ./%s)\n"
            "  --no-out      write no files\n"
            "  --csv FILE, --json FILE  write those here instead\n"
            "  --no-charts   do not run gnuplot\n"
            "  --only P      only patterns whose name starts with P "
            "(read-one, write-one,\n                read-sparse, "
            "write-sparse, read-seq, read-random,\n                "
            "read-random-2t, batch16, batch256, batch256-seq, overlap\n"
            "                (doca), chase1, chase16, ping, sessions, "
            "one-cpu,\n                regions-miss, regions-hit, "
            "regions-reg, regions-close,\n                map-random, "
            "map-seq, map-reread)\n"
            "  --scale       only the scaling rows: sessions, one-cpu, "
            "regions-*, and\n                read-random, read-random-2t "
            "at 64 B\n"
            "  --with LIST   only these contenders (comma-separated), the "
            "baseline and\n                those the targets compare\n"
            "  --no-pin      leave cpu placement to the scheduler\n"
            "  --engine NAME the HMAF engine (default cma); the raw "
            "contenders still\n                measure the cma syscalls; "
            "with doca, raw DOCA DMA is the baseline,\n                with "
            "ucx, raw ucp_get/ucp_put on the engine's transport\n"
            "  --host-netns NS  the forked host runs in network namespace NS "
            "(a name in\n                /run/netns, or a path): two "
            "machines on one, for ucx over tcp\n"
            "  --verbose     every round's figures on stderr\n"
            "split mode, host and dpu side on two machines (both with the "
            "same --engine):\n"
            "  --serve ADDRESS    be the host: serve one run, then exit; "
            "listen at\n                     unix:PATH or tcp:HOST:PORT, or "
            "dial comch:NAME@PCI;\n                     on the last cpu "
            "unless --no-pin\n"
            "  --connect ADDRESS  be the dpu side: connect to unix:/tcp:, or "
            "listen at\n                     comch:NAME@PCI/REP; only "
            "contenders that cross machines run\n"
            "Exit status: 0 when the measurements ran, even if a target "
            "was missed; --serve:\n0 when the dpu side completed its run.\n",
            ROUNDS_QUICK, ROUNDS_DEFAULT, OUT_DEFAULT);
}

static int parse_rounds(const char *arg, unsigned *rounds_out)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);

    if (*arg == '\0' || *end != '\0' || v == 0 || v > ROUNDS_MAX) {
        fprintf(stderr, "hmaf-bench: --rounds wants 1..%d\n", ROUNDS_MAX);
        return -1;
    }
    *rounds_out = (unsigned)v;
    return 0;
}

/* 0, or -1 for an unknown option. */
static int apply_option(int c, const char *arg, struct options *o)
{
    switch (c) {
    case 'r':
        return parse_rounds(arg, &o->rounds);
    case 'q':
        o->quick = 1;
        break;
    case 'o':
        o->out_dir = arg;
        break;
    case 'n':
        o->out_dir = NULL;
        break;
    case 'c':
        o->csv_path = arg;
        break;
    case 'j':
        o->json_path = arg;
        break;
    case 'C':
        o->charts = 0;
        break;
    case 'O':
        o->only = arg;
        break;
    case 'w':
        o->with = arg;
        break;
    case 'P':
        o->pin = 0;
        break;
    case 'e':
        o->engine = arg;
        break;
    case 'v':
        o->verbose = 1;
        break;
    case 'S':
        o->scale = 1;
        break;
    case 's':
        o->serve = arg;
        break;
    case 'a':
        o->connect = arg;
        break;
    case 'N':
        o->host_netns = arg;
        break;
    default:
        return -1;
    }
    return 0;
}

/* 0; 1 after --help or --version; -1 on a bad command line. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"rounds", required_argument, NULL, 'r'},
        {"quick", no_argument, NULL, 'q'},
        {"out", required_argument, NULL, 'o'},
        {"no-out", no_argument, NULL, 'n'},
        {"csv", required_argument, NULL, 'c'},
        {"json", required_argument, NULL, 'j'},
        {"no-charts", no_argument, NULL, 'C'},
        {"only", required_argument, NULL, 'O'},
        {"scale", no_argument, NULL, 'S'},
        {"with", required_argument, NULL, 'w'},
        {"no-pin", no_argument, NULL, 'P'},
        {"engine", required_argument, NULL, 'e'},
        {"verbose", no_argument, NULL, 'v'},
        {"serve", required_argument, NULL, 's'},
        {"connect", required_argument, NULL, 'a'},
        {"host-netns", required_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;

    *o = (struct options){
        .pin = 1, .charts = 1, .out_dir = OUT_DEFAULT, .engine = "cma"};
    while ((c = getopt_long(argc, argv, "r:qo:vh", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("hmaf-bench %d.%d.%d (libhmaf %s)\n", HMAF_VERSION_MAJOR,
                   HMAF_VERSION_MINOR, HMAF_VERSION_PATCH, hmaf_version());
            return 1;
        }
        if (apply_option(c, optarg, o) != 0) {
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc || (o->serve != NULL && o->connect != NULL) ||
        (o->host_netns != NULL && (o->serve != NULL || o->connect != NULL))) {
        usage(stderr);
        return -1;
    }
    if (o->rounds == 0) {
        o->rounds = o->quick ? ROUNDS_QUICK : ROUNDS_DEFAULT;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

/* Where the threads run. */
struct placement {
    int dpu;   /* the dpu side's first thread */
    int host;  /* the whole host process */
    int dpu2;  /* a second dpu thread: a third cpu, or the host's */
    int ncpus; /* cpus we may use */
};

/* The first three cpus we may use (the host's twice if there are two).
 * In split mode the host is not ours to place: our two threads take the
 * first two. */
static int pick_cpus(int pin, int split, struct placement *pl_out)
{
    cpu_set_t set;
    int cpus[3], n = 0;

    *pl_out = (struct placement){NO_CPU, NO_CPU, NO_CPU, 1};
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return -1;
    }
    pl_out->ncpus = CPU_COUNT(&set);
    for (int c = 0; c < CPU_SETSIZE && n < 3; c++) {
        if (CPU_ISSET(c, &set)) {
            cpus[n++] = c;
        }
    }
    if (!pin || n < 2) {
        return pin ? -1 : 0;
    }
    if (split) {
        *pl_out = (struct placement){cpus[0], NO_CPU, cpus[1], pl_out->ncpus};
        return 0;
    }
    *pl_out = (struct placement){cpus[0], cpus[1], cpus[n > 2 ? 2 : 1],
                                 pl_out->ncpus};
    return 0;
}

/* --serve: the host takes the last cpu, --connect the first ones, so that
 * both fit one machine when tried there; on two machines it costs
 * nothing. */
static int last_cpu(void)
{
    cpu_set_t set;
    int last = NO_CPU;

    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return NO_CPU;
    }
    for (int c = 0; c < CPU_SETSIZE; c++) {
        last = CPU_ISSET(c, &set) ? c : last;
    }
    return CPU_COUNT(&set) > 1 ? last : NO_CPU;
}

/* Start the host, pinned apart from us when asked and possible. */
static int start_host(struct child *host, int pin, struct placement *pl_out)
{
    if (pick_cpus(pin, 0, pl_out) != 0) {
        fprintf(stderr, "hmaf-bench: fewer than 2 usable cpus: not pinned\n");
    }
    host->cpu = pl_out->host;
    if (child_start(host) != 0) {
        return -1;
    }
    if (pin_to(pl_out->dpu) != 0) {
        perror("hmaf-bench: sched_setaffinity");
    }
    return 0;
}

/* Split mode: the host is a `--serve` process, maybe on another machine;
 * there is nothing to start, and only we are pinned. */
static int attach_host(struct child *host, const char *address, int pin,
                       struct placement *pl_out)
{
    if ((size_t)snprintf(host->address, sizeof(host->address), "%s", address) >=
        sizeof(host->address)) {
        fprintf(stderr, "hmaf-bench: address too long: %s\n", address);
        return -1;
    }
    if (pick_cpus(pin, 1, pl_out) != 0) {
        fprintf(stderr, "hmaf-bench: fewer than 2 usable cpus: not pinned\n");
    }
    host->remote = 1;
    host->cpu = NO_CPU;
    host->cmd_fd = host->reply_fd = -1;
    if (pin_to(pl_out->dpu) != 0) {
        perror("hmaf-bench: sched_setaffinity");
    }
    return 0;
}

int bench_session_open(const struct bench *b, unsigned cache_max_regions,
                       int rpc_timeout_ms, hmaf_session_t **s_out)
{
    hmaf_session_params_t p;

    hmaf_session_params_init(&p);
    p.address = b->host->address;
    p.token = BENCH_TOKEN;
    p.engine = b->host->engine;
    if (cache_max_regions != 0) {
        p.cache_max_regions = cache_max_regions;
    }
    if (rpc_timeout_ms != 0) {
        p.rpc_timeout_ms = rpc_timeout_ms;
    }
    if (b->split) {
        /* Comch's roles: the dpu side is the server. */
        p.listen = is_comch(p.address);
        p.connect_timeout_ms = SPLIT_WAIT_MS;
    }
    return hmaf_session_create(&p, s_out);
}

static int bench_connect(struct bench *b)
{
    size_t len = 0;
    int ret;

    if (b->split) {
        printf("hmaf-bench: dpu side of a split run: %s %s\n",
               is_comch(b->host->address) ? "waiting for the host at"
                                          : "connecting to",
               b->host->address);
        fflush(stdout);
    }
    ret = bench_session_open(b, 0, 0, &b->s);
    if (ret == 0) {
        ret = hmaf_session_lookup(b->s, "buf", &b->buf, &len);
    }
    if (ret == 0 && len != BUF_LEN) {
        ret = HMAF_EPROTO;
    }
    if (ret == 0) {
        ret = hmaf_session_lookup(b->s, "pingpong", &b->pp, NULL);
    }
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: session: %s\n", hmaf_strerror(ret));
    }
    b->hmaf_s = b->s;
    return ret;
}

/* The scaling rows' regions, when the host has them (not in split
 * mode), and our copy of their bytes. */
static int find_regions(struct bench *b)
{
    size_t len = 0;
    int ret = hmaf_session_lookup(b->s, "regions", &b->regions, &len);

    if (ret == HMAF_ENOENT) {
        b->regions = 0;
        return 0;
    }
    if (ret < 0 || len % REGION_STRIDE != 0) {
        fprintf(stderr, "hmaf-bench: root \"regions\": %s\n",
                ret < 0 ? hmaf_strerror(ret) : "bad length");
        return -1;
    }
    b->nregions = (unsigned)(len / REGION_STRIDE);
    b->regions_mirror = aligned_alloc(4096, (len + 4095) & ~(uint64_t)4095);
    if (b->regions_mirror == NULL) {
        return -1;
    }
    layout_fill_regions(b->regions_mirror, b->nregions);
    return 0;
}

/* bench_session_open with name=value in the environment meanwhile; afterwards
 * the variable is as it was. */
static int open_session_env(const struct bench *b, const char *name,
                            const char *value, hmaf_session_t **s_out)
{
    const char *was = getenv(name);
    char *saved = was != NULL ? strdup(was) : NULL;
    int ret;

    if (was != NULL && saved == NULL) {
        return HMAF_ENOMEM;
    }
    setenv(name, value, 1);
    ret = bench_session_open(b, 0, 0, s_out);
    if (saved != NULL) {
        setenv(name, saved, 1);
    } else {
        unsetenv(name);
    }
    free(saved);
    return ret;
}

/* hmaf-staged's session: the doca engine reads HMAF_DOCA_ZCOPY_MIN when a
 * session opens, and 0 stages every transfer through its own slots. Opened
 * before our threads start (setenv is not thread safe). Not over comch in
 * split mode: there the host dials one session. The run goes on without
 * it. */
static void open_staged(struct bench *b)
{
    int ret;

    if (strcmp(b->engine, "doca") != 0) {
        return;
    }
    if (b->split && is_comch(b->host->address)) {
        snprintf(b->staged_note, sizeof(b->staged_note),
                 "hmaf-staged: not run (split mode over comch: the host "
                 "dials one session)");
        return;
    }
    ret = open_session_env(b, STAGED_ENV, "0", &b->staged);
    if (ret < 0) {
        snprintf(b->staged_note, sizeof(b->staged_note),
                 "hmaf-staged: not available (session: %s)",
                 hmaf_strerror(ret));
    }
}

/* hmaf-1t's session: with HMAF_SPLIT_THREADS=1 the cma engine moves every
 * transfer on the calling thread alone, where b->s splits those of 1 MiB
 * and more (the default). Only with cma, the engine that splits; not over
 * comch (the host dials one session). Opened before our threads start. */
static void open_unsplit(struct bench *b)
{
    if (strcmp(b->engine, "cma") != 0 ||
        (b->split && is_comch(b->host->address))) {
        return;
    }
    if (open_session_env(b, UNSPLIT_ENV, "1", &b->unsplit) < 0) {
        b->unsplit = NULL;
    }
}

/* Buffers are written once here so that no page fault is timed. */
static int worker_init(struct bench *b, unsigned id, int cpu)
{
    struct worker *w = &b->w[id];

    w->b = b;
    w->id = (int)id;
    w->cpu = cpu;
    /* One block, so that DOCA registers it as one local mmap. */
    w->mem = aligned_alloc(4096, WORKER_MEM);
    w->rnd = malloc(RND_N * sizeof(*w->rnd));
    if (w->mem == NULL || w->rnd == NULL) {
        fprintf(stderr, "hmaf-bench: out of memory\n");
        return -1;
    }
    w->dst = w->mem;
    w->src = w->mem + XFER_MAX;
    w->scratch = w->mem + 2 * XFER_MAX;
    memset(w->dst, 0, XFER_MAX);
    memset(w->scratch, 0, SCRATCH_LEN);
    /* Writes put back what the host holds, so reads stay checkable. */
    memcpy(w->src, b->mirror + SAME_OFF, XFER_MAX);
    layout_random(w->rnd, id);
    for (int spin = 0; spin < 2 && !b->split; spin++) {
        w->sock_fd[spin] = sock_connect(b->host->sock_path, spin);
        if (w->sock_fd[spin] < 0) {
            return -1;
        }
    }
    return 0;
}

static void worker_fini(struct worker *w)
{
    for (int spin = 0; spin < 2; spin++) {
        if (w->sock_fd[spin] >= 0) {
            close(w->sock_fd[spin]);
        }
    }
    free(w->mem);
    free(w->rnd);
}

static int bench_init(struct bench *b, struct child *host,
                      const struct options *o, const struct placement *pl)
{
    int ret;

    b->host = host;
    b->pid = host->remote ? 0 : host->pid;
    b->split = host->remote;
    b->engine = host->engine;
    b->dpu_cpu = pl->dpu;
    /* A remote host's threads take none of our cpus. */
    b->cpus_shared = !b->split && pl->ncpus < 3;
    b->verbose = o->verbose;
    b->rounds = o->rounds;
    b->quick = o->quick;
    b->target_ns = (uint64_t)((o->quick ? ROUND_MS_QUICK : ROUND_MS) * 1e6);
    /* A smoke run judges no figure: on a busy machine, rerunning its
     * disturbed sides of rounds would only make it long. */
    b->rerun_max = o->quick ? 0 : RERUN_MAX;
    b->iters_min = o->quick ? 1 : ITERS_MIN;
    b->sparse_iters_max = o->quick ? SPARSE_UNITS_QUICK : SPARSE_UNITS;
    b->nworkers = THREADS_MAX;
    for (unsigned i = 0; i < THREADS_MAX; i++) {
        b->w[i].sock_fd[0] = b->w[i].sock_fd[1] = -1; /* none yet */
    }
    ret = bench_connect(b);
    if (ret == 0) {
        open_staged(b);
        open_unsplit(b);
        ret = find_regions(b);
    }
    if (ret == 0) {
        ret = scale_open(b);
    }
    b->mirror = ret == 0 ? aligned_alloc(4096, BUF_LEN) : NULL;
    if (b->mirror == NULL) {
        return -1;
    }
    layout_fill(b->mirror, b->buf, b->chain_start, b->chain_last);
    b->chase_nodes =
        o->quick ? CHASE_NODES_QUICK
        : strcmp(b->engine, "doca") == 0 || strcmp(b->engine, "ucx") == 0
            ? CHASE_NODES_DMA
            : CHAIN_NODES;
    for (unsigned i = 0; i < CHAINS_MAX; i++) {
        b->chain_last[i] = layout_chain_node(b->mirror, b->buf,
                                             b->chain_start[i], b->chase_nodes);
    }
    for (unsigned i = 0; i < b->nworkers && ret == 0; i++) {
        ret = worker_init(b, i, i == 0 ? pl->dpu : pl->dpu2);
    }
    if (ret == 0) {
        ret = workers_start(b);
    }
    if (ret == 0) {
        ret = mapping_open(b);
    }
    /* UCX's bootstrap is a pipe to a forked host. */
    if (ret == 0 && !b->split) {
        ret = ucx_open(b);
    }
    if (ret == 0) {
        ret = doca_raw_open(b);
    }
    choose_baseline(b);
    return ret;
}

/* The raw DOCA imports go before the session: the host tears its export
 * down once the session has left. */
static void bench_fini(struct bench *b)
{
    ucx_close(b);
    doca_raw_close(b);
    mapping_close(b);
    workers_stop(b);
    for (unsigned i = 0; i < THREADS_MAX; i++) {
        worker_fini(&b->w[i]);
    }
    scale_close(b);
    hmaf_session_destroy(b->staged);
    hmaf_session_destroy(b->unsplit);
    hmaf_session_destroy(b->s);
    free(b->mirror);
    free(b->regions_mirror);
}

/* ------------------------------------------------------------------ */
/* The run                                                             */
/* ------------------------------------------------------------------ */

static int wanted(const struct bench *b, const struct options *o,
                  const struct pattern *p, size_t size)
{
    if (o->only != NULL && strncmp(p->id, o->only, strlen(o->only)) != 0) {
        return 0;
    }
    if (p->mapping && b->map == NULL) {
        return 0; /* reported as not available */
    }
    if (p->engines != NULL && !listed(p->engines, b->engine)) {
        return 0;
    }
    if ((p->forked_host && b->split) || (p->regions && b->nregions == 0)) {
        return 0;
    }
    /* --scale: the scaling rows; the threads' at 64 B, which the target
     * judges. */
    if (o->scale && !(p->scaling && (p->nsizes == 1 || size == 64))) {
        return 0;
    }
    /* Quick: a small and a large size, enough to exercise everything; the
     * large one well below XFER_MAX, so that a smoke run stays short on a
     * busy machine. */
    return !o->quick || p->nsizes == 1 || size == 64 || size == QUICK_LARGE;
}

/* The targets judged in this run: the doca or ucx engine's own, or issue
 * 3's. */
static const struct target *targets_for(const struct bench *b, size_t *n_out)
{
    if (strcmp(b->engine, "doca") == 0) {
        *n_out = COUNT(doca_targets);
        return doca_targets;
    }
    if (strcmp(b->engine, "ucx") == 0) {
        *n_out = COUNT(ucx_targets);
        return ucx_targets;
    }
    *n_out = COUNT(cma_targets);
    return cma_targets;
}

/* Is c in the cell whatever --with says: the baseline, one a target of
 * the pattern compares (in all its cells, so that a table's columns stay
 * the same), or the one an overlap cell's work is sized on? */
static int always_in(const struct bench *b, const struct cell *cell,
                     const struct contender *c)
{
    size_t nt;
    const struct target *t = targets_for(b, &nt);

    return strcmp(c->name, b->baseline) == 0 ||
           targets_need(t, nt, cell->p, c->name) ||
           (cell->p->work_like != NULL &&
            strcmp(c->name, cell->p->work_like) == 0);
}

/* The baseline's figure (baseline = 1), or the others asked for. */
static void add_figures(const struct bench *b, const struct options *o,
                        struct cell *cell, int baseline)
{
    for (size_t i = 0; i < bench_ncontenders; i++) {
        const struct contender *c = &bench_contenders[i];
        int is_base = strcmp(c->name, b->baseline) == 0;
        int asked = o->with == NULL || listed(o->with, c->name) ||
                    always_in(b, cell, c);
        if (is_base == baseline && asked && contender_applies(b, c, cell->p) &&
            cell->nfig < CONTENDERS_MAX) {
            cell->fig[cell->nfig++] = (struct figure){.c = c};
        }
    }
}

/* The contenders of pattern p: the baseline first, when it applies (the
 * mapping patterns have their own), then those asked for. */
static void cell_init(const struct bench *b, const struct options *o,
                      struct cell *cell, const struct pattern *p, size_t size,
                      unsigned n)
{
    *cell =
        (struct cell){.p = p, .size = size, .n = n, .nodes = b->chase_nodes};
    add_figures(b, o, cell, 1);
    add_figures(b, o, cell, 0);
}

/* A scaling row's N in this run (--quick: its short list); *n_out 0 for
 * the other patterns. */
static const unsigned *scales_of(const struct options *o,
                                 const struct pattern *p, size_t *n_out)
{
    *n_out = o->quick ? p->nqscales : p->nscales;
    return o->quick ? p->qscales : p->scales;
}

/* Cells of pattern p at size: one, or one per N. */
static size_t plan_size(const struct bench *b, const struct options *o,
                        const struct pattern *p, size_t size,
                        struct cell *cells)
{
    size_t nscales;
    const unsigned *scales = scales_of(o, p, &nscales);

    if (!wanted(b, o, p, size)) {
        return 0;
    }
    if (nscales == 0) {
        cell_init(b, o, &cells[0], p, size, 0);
        return 1;
    }
    for (size_t k = 0; k < nscales; k++) {
        cell_init(b, o, &cells[k], p, size, scales[k]);
    }
    return nscales;
}

/* Every wanted pattern x size (x N); *n_out cells. */
static struct cell *plan(const struct bench *b, const struct options *o,
                         size_t *n_out)
{
    size_t most = 0, n = 0, nscales;
    struct cell *cells;

    for (size_t i = 0; i < COUNT(patterns); i++) {
        scales_of(o, &patterns[i], &nscales);
        most += patterns[i].nsizes * (nscales > 0 ? nscales : 1);
    }
    cells = calloc(most, sizeof(*cells));
    for (size_t i = 0; cells != NULL && i < COUNT(patterns); i++) {
        for (size_t j = 0; j < patterns[i].nsizes; j++) {
            n += plan_size(b, o, &patterns[i], patterns[i].sizes[j], &cells[n]);
        }
    }
    *n_out = n;
    return cells;
}

static void free_cells(struct cell *cells, size_t n)
{
    for (size_t i = 0; cells != NULL && i < n; i++) {
        for (unsigned j = 0; j < cells[i].nfig; j++) {
            free(cells[i].fig[j].ns);
        }
    }
    free(cells);
}

/* Cell i, with what its pattern sets up around it; or every cell of its
 * pattern's procedure (and of the patterns sharing it), at once. */
static int measure_one(struct run *r, size_t i)
{
    struct cell *cell = &r->cells[i];
    const struct pattern *p = cell->p;
    int last = i + 1 == r->ncells || r->cells[i + 1].p != p;
    int ret;

    r->b->hmaf_s = r->b->s;
    if (p->measure != NULL) {
        return p->measure(r->b, r->cells, r->ncells, report_progress, r);
    }
    ret = p->prepare != NULL ? p->prepare(r->b, cell) : 0;
    if (ret == 0) {
        ret = measure_cell(r->b, cell, report_progress, r);
    }
    if (p->finish != NULL && (last || ret < 0)) {
        p->finish(r->b);
    }
    return ret;
}

static int measure_all(struct run *r)
{
    for (size_t i = 0; i < r->ncells; i++) {
        if (!r->cells[i].measured && measure_one(r, i) < 0) {
            report_progress_done();
            fprintf(stderr, "hmaf-bench: %s: failed\n", r->cells[i].p->id);
            return -1;
        }
    }
    r->b->hmaf_s = r->b->s;
    report_progress_done();
    return 0;
}

static void print_counters(const char *name, hmaf_session_t *s)
{
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;

    if (s == NULL || hmaf_session_stats(s, &st) != 0) {
        return;
    }
    printf("%s: ops %llu, bytes read %llu, written %llu, cache hits "
           "%llu, misses %llu,\n         registrations %llu, mailbox round "
           "trips %llu\n",
           name, (unsigned long long)st.ops, (unsigned long long)st.bytes_read,
           (unsigned long long)st.bytes_written,
           (unsigned long long)st.cache_hits,
           (unsigned long long)st.cache_misses,
           (unsigned long long)st.registrations,
           (unsigned long long)st.mailbox_round_trips);
}

/* A file in the output directory, or the one an option names. */
static const char *out_path(const struct options *o, const char *chosen,
                            const char *name, char *buf, size_t cap)
{
    if (chosen != NULL) {
        return chosen;
    }
    if (o->out_dir == NULL) {
        return NULL;
    }
    snprintf(buf, cap, "%s/%s", o->out_dir, name);
    return buf;
}

static int write_outputs(struct run *r, const struct options *o)
{
    char csv[4096], json[4096], note[256] = "charts: not drawn (--no-charts)";
    const char *csv_path =
        out_path(o, o->csv_path, "results.csv", csv, sizeof(csv));
    const char *json_path =
        out_path(o, o->json_path, "results.json", json, sizeof(json));
    int ret = 0;

    if (csv_path != NULL && write_csv(r, csv_path) == 0) {
        printf("wrote %s\n", csv_path);
    } else if (csv_path != NULL) {
        ret = -1;
    }
    if (json_path != NULL && write_json(r, json_path) == 0) {
        printf("wrote %s\n", json_path);
    } else if (json_path != NULL) {
        ret = -1;
    }
    if (o->out_dir != NULL && o->charts && draw_charts(r, note, sizeof(note))) {
        ret = -1;
    }
    if (o->out_dir != NULL) {
        printf("%s\n", note);
    }
    return ret;
}

_Static_assert(COUNT(cma_targets) >= COUNT(doca_targets) &&
                   COUNT(cma_targets) >= COUNT(ucx_targets),
               "run_all's results hold every table");

static int run_all(struct bench *b, const struct options *o)
{
    /* The largest table: issue 3's. */
    struct target_result results[COUNT(cma_targets)];
    struct run r = {.b = b,
                    .patterns = patterns,
                    .npatterns = COUNT(patterns),
                    .results = results,
                    .quick = o->quick,
                    .t_start = now_ns(),
                    .out_dir = o->out_dir};
    int ret;

    r.targets = targets_for(b, &r.ntargets);

    meta_start(&r.meta, hmaf_session_engine(b->s));
    r.cells = plan(b, o, &r.ncells);
    if (r.cells == NULL) {
        return -1;
    }
    report_header(&r);
    ret = measure_all(&r);
    if (ret == 0) {
        meta_end(&r.meta);
        judge_targets(&r);
        report_table(&r);
        report_targets(&r);
        report_notes(&r);
        print_counters("session", b->s);
        print_counters("staged session", b->staged);
        ret = write_outputs(&r, o);
    }
    free_cells(r.cells, r.ncells);
    return ret;
}

static int make_out_dir(const char *dir)
{
    if (dir != NULL && mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "hmaf-bench: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    struct child host = {.cpu = NO_CPU};
    struct bench b = {.s = NULL};
    struct placement pl;
    int ret = parse_options(argc, argv, &o);

    if (ret != 0) {
        return ret > 0 ? 0 : 2;
    }
    /* A dead peer must show up as an error, not kill us on a write. */
    signal(SIGPIPE, SIG_IGN);
    if (o.serve != NULL) {
        int cpu = o.pin ? last_cpu() : NO_CPU;
        return serve_main(o.serve, o.engine, cpu) == 0 ? 0 : 1;
    }
    if (make_out_dir(o.out_dir) != 0) {
        return 1;
    }
    host.engine = o.engine;
    host.netns = o.host_netns;
    /* The regions rows run on the cma engine only (their raw baseline). */
    if (strcmp(o.engine, "cma") == 0) {
        host.regions = o.quick ? REGIONS_QUICK : REGIONS_MAX;
    }
    ret = o.connect != NULL ? attach_host(&host, o.connect, o.pin, &pl)
                            : start_host(&host, o.pin, &pl);
    if (ret == 0) {
        ret = bench_init(&b, &host, &o, &pl);
        if (ret == 0) {
            ret = run_all(&b, &o);
        }
        /* The host tells a complete run from a dpu side that died. */
        if (ret == 0 && b.split) {
            ret = host_command(&b, CMD_DONE);
        }
        bench_fini(&b);
        if (!host.remote && child_stop(&host) != 0 && ret == 0) {
            fprintf(stderr, "hmaf-bench: the host process failed\n");
            ret = -1;
        }
    }
    return ret == 0 ? 0 : 1;
}
