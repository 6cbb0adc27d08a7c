/*
 * The contenders, one row each, and the glue that runs one unit of a
 * cell's work with one of them.
 *
 * Every contender reads the same host addresses into the same local
 * buffers. Each figure is compared with a baseline (choose_baseline): raw,
 * the process_vm_readv/writev calls HMAF's cma engine makes, one per
 * transfer; with the doca engine doca-raw, DOCA DMA memcpy tasks one at a
 * time (doca_raw.c), since the cma calls do not cross PCIe; with the ucx
 * engine ucx, plain ucp_get_nbx/ucp_put_nbx on the same transport (ucx.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "report.h"

/* A raw ping gives up after this many polls (seconds): the host died. */
#define PONG_POLLS_MAX (1u << 23)

static int hmaf_check(const char *what, int ret)
{
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: %s: %s (%s)\n", what, hmaf_strerror(ret),
                hmaf_err_name(ret));
    }
    return ret;
}

/* ------------------------------------------------------------------ */
/* raw: process_vm_readv/writev                                        */
/* ------------------------------------------------------------------ */

static int raw_check(const struct worker *w, int is_write, ssize_t n,
                     size_t want)
{
    if (n == (ssize_t)want) {
        return 0;
    }
    fprintf(stderr, "hmaf-bench: process_vm_%sv pid %d: %s\n",
            is_write ? "write" : "read", (int)w->b->pid,
            n < 0 ? strerror(errno) : "short transfer");
    return -1;
}

static int raw_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    struct iovec l = {.iov_base = seg->local, .iov_len = seg->len};
    struct iovec r = {.iov_base = (void *)(uintptr_t)seg->remote_addr,
                      .iov_len = seg->len};
    ssize_t n = is_write ? process_vm_writev(w->b->pid, &l, 1, &r, 1, 0)
                         : process_vm_readv(w->b->pid, &l, 1, &r, 1, 0);

    return raw_check(w, is_write, n, seg->len);
}

static int raw_each(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (raw_rw(w, 0, &segs[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* One call carrying every segment: the primitive's own best. */
static int raw_vec(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    struct iovec l[BATCH_MAX], r[BATCH_MAX];
    size_t total = 0;

    for (size_t i = 0; i < n; i++) {
        l[i] =
            (struct iovec){.iov_base = segs[i].local, .iov_len = segs[i].len};
        r[i] =
            (struct iovec){.iov_base = (void *)(uintptr_t)segs[i].remote_addr,
                           .iov_len = segs[i].len};
        total += segs[i].len;
    }
    return raw_check(w, 0, process_vm_readv(w->b->pid, l, n, r, n, 0), total);
}

/* Like a mailbox round trip: write the request word, then poll the reply
 * word until the host's spinning pong thread has echoed it. */
static int raw_ping(struct worker *w)
{
    uint64_t seq = ++w->b->ping_seq, reply = 0;
    hmaf_seg_t req = {.local = &seq,
                      .remote_addr =
                          w->b->pp + offsetof(struct pingpong, request),
                      .len = sizeof(seq)};
    hmaf_seg_t rep = {.local = &reply,
                      .remote_addr =
                          w->b->pp + offsetof(struct pingpong, reply),
                      .len = sizeof(reply)};

    if (raw_rw(w, 1, &req) < 0) {
        return -1;
    }
    for (unsigned polls = 0; polls < PONG_POLLS_MAX; polls++) {
        if (raw_rw(w, 0, &rep) < 0) {
            return -1;
        }
        if (reply == seq) {
            return 0;
        }
    }
    fprintf(stderr, "hmaf-bench: raw ping-pong: no echo from the host\n");
    return -1;
}

static int pong_enter(struct bench *b)
{
    return host_command(b, CMD_PONG_START);
}

static int pong_leave(struct bench *b)
{
    return host_command(b, CMD_PONG_STOP);
}

/* ------------------------------------------------------------------ */
/* cpu: the work of an overlap cell alone                              */
/* ------------------------------------------------------------------ */

static volatile uint64_t work_sink;

/* xorshift64: each step needs the last, so it cannot be spread over
 * cycles or vectorised; the result is stored so it cannot be left out. */
void cpu_work(uint64_t steps)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    for (uint64_t i = 0; i < steps; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    work_sink = x;
}

static int cpu_only(struct worker *w, const hmaf_seg_t *segs, size_t n,
                    uint64_t work)
{
    (void)w;
    (void)segs;
    (void)n;
    cpu_work(work);
    return 0;
}

/* doca-pipe's reads alone, in an overlap cell. */
static int doca_pipe_alone(struct worker *w, const hmaf_seg_t *segs, size_t n,
                           uint64_t work)
{
    (void)work;
    return doca_pipe_batch(w, segs, n);
}

/* ------------------------------------------------------------------ */
/* memcpy: the same bytes in our own memory                            */
/* ------------------------------------------------------------------ */

static int mem_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    uint8_t *there = mirror_of(w->b, seg->remote_addr);

    if (is_write) {
        memcpy(there, seg->local, seg->len);
    } else {
        memcpy(seg->local, there, seg->len);
    }
    return 0;
}

static int mem_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mem_rw(w, 0, &segs[i]);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* HMAF                                                                */
/* ------------------------------------------------------------------ */

static int session_rw(hmaf_session_t *s, int is_write, const hmaf_seg_t *seg)
{
    if (is_write) {
        return hmaf_check(
            "hmaf_session_write",
            hmaf_session_write(s, seg->remote_addr, seg->local, seg->len));
    }
    return hmaf_check(
        "hmaf_session_read",
        hmaf_session_read(s, seg->local, seg->remote_addr, seg->len));
}

static int hmaf_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return session_rw(w->b->hmaf_s, is_write, seg);
}

/* The same calls on the session that stages every transfer. */
static int staged_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return session_rw(w->b->staged, is_write, seg);
}

static int staged_usable(const struct bench *b)
{
    return b->staged != NULL;
}

/* The same calls on the session that never splits a transfer. */
static int unsplit_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return session_rw(w->b->unsplit, is_write, seg);
}

static int unsplit_usable(const struct bench *b)
{
    return b->unsplit != NULL;
}

static int hmaf_each(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (hmaf_rw(w, 0, &segs[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

static int hmaf_vec_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return hmaf_check("hmaf_session_readv/writev",
                      is_write ? hmaf_session_writev(w->b->hmaf_s, seg, 1)
                               : hmaf_session_readv(w->b->hmaf_s, seg, 1));
}

static int hmaf_vec_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    return hmaf_check("hmaf_session_readv",
                      hmaf_session_readv(w->b->hmaf_s, segs, n));
}

/* Post without handles, then one flush: the idiom for a batch. Between
 * the two, cpu_work(work): what the caller does while the engine moves the
 * bytes. */
static int hmaf_nb_post(struct worker *w, int is_write, const hmaf_seg_t *segs,
                        size_t n, uint64_t work)
{
    hmaf_session_t *s = w->b->hmaf_s;

    for (size_t i = 0; i < n; i++) {
        int ret =
            is_write
                ? hmaf_session_post_write(s, segs[i].remote_addr, segs[i].local,
                                          segs[i].len, NULL)
                : hmaf_session_post_read(s, segs[i].local, segs[i].remote_addr,
                                         segs[i].len, NULL);
        if (ret < 0) {
            return hmaf_check("hmaf_session_post", ret);
        }
    }
    if (work > 0) {
        cpu_work(work);
    }
    return hmaf_check("hmaf_session_flush", hmaf_session_flush(s));
}

static int hmaf_nb_rw(struct worker *w, int is_write, const hmaf_seg_t *seg)
{
    return hmaf_nb_post(w, is_write, seg, 1, 0);
}

static int hmaf_nb_batch(struct worker *w, const hmaf_seg_t *segs, size_t n)
{
    return hmaf_nb_post(w, 0, segs, n, 0);
}

/* The reads alone, in an overlap cell. */
static int hmaf_nb_alone(struct worker *w, const hmaf_seg_t *segs, size_t n,
                         uint64_t work)
{
    (void)work;
    return hmaf_nb_post(w, 0, segs, n, 0);
}

static int hmaf_nb_overlap(struct worker *w, const hmaf_seg_t *segs, size_t n,
                           uint64_t work)
{
    return hmaf_nb_post(w, 0, segs, n, work);
}

/* hmaf_session_chase() over chains [first, first + n) of ch. */
static int hmaf_chase_some(struct worker *w, struct chase *ch, size_t first,
                           size_t n)
{
    hmaf_chase_params_t p = {
        .node_len = NODE_LEN, .next_offset = 0, .max_steps = ch->nodes};
    hmaf_chain_t chains[CHAINS_MAX];
    int ret;

    for (size_t i = 0; i < n; i++) {
        chains[i] = (hmaf_chain_t){.start = ch->at[first + i]};
    }
    ret = hmaf_session_chase(w->b->hmaf_s, &p, chains, n);
    for (size_t i = 0; i < n; i++) {
        ch->steps[first + i] = (unsigned)chains[i].steps;
        ch->last[first + i] = chains[i].last;
        ch->at[first + i] = 0;
    }
    return hmaf_check("hmaf_session_chase", ret);
}

/* All chains in one call: they advance together. */
static int hmaf_chase_all(struct worker *w, const struct contender *self,
                          struct chase *ch)
{
    (void)self;
    return hmaf_chase_some(w, ch, 0, ch->n);
}

/* One call per chain: the baseline batching is measured against. */
static int hmaf_chase_each(struct worker *w, const struct contender *self,
                           struct chase *ch)
{
    (void)self;
    for (size_t i = 0; i < ch->n; i++) {
        if (hmaf_chase_some(w, ch, i, 1) < 0) {
            return -1;
        }
    }
    return 0;
}

static int hmaf_ping(struct worker *w)
{
    return hmaf_check("hmaf_session_ping", hmaf_session_ping(w->b->hmaf_s));
}

/* ------------------------------------------------------------------ */
/* Chases, for the contenders without their own                        */
/* ------------------------------------------------------------------ */

static uint8_t *node_buf(struct worker *w, size_t chain)
{
    return w->dst + chain * NODE_LEN;
}

/* Chain i read its current node into node: move it on. */
static void chase_step(struct chase *ch, size_t i, const uint8_t *node)
{
    uint64_t next;

    memcpy(&next, node, sizeof(next));
    ch->steps[i]++;
    ch->last[i] = ch->at[i];
    ch->at[i] = ch->steps[i] < ch->nodes ? next : 0;
}

int chase_serial(struct worker *w, const struct contender *self,
                 struct chase *ch)
{
    for (size_t i = 0; i < ch->n; i++) {
        while (ch->at[i] != 0) {
            hmaf_seg_t seg = {.local = node_buf(w, i),
                              .remote_addr = ch->at[i],
                              .len = NODE_LEN};
            if (self->rw(w, 0, &seg) < 0) {
                return -1;
            }
            chase_step(ch, i, seg.local);
        }
    }
    return 0;
}

int chase_stepwise(struct worker *w, const struct contender *self,
                   struct chase *ch)
{
    for (;;) {
        size_t n = 0;
        for (size_t i = 0; i < ch->n; i++) {
            if (ch->at[i] != 0) {
                ch->segs[n] = (hmaf_seg_t){.local = node_buf(w, i),
                                           .remote_addr = ch->at[i],
                                           .len = NODE_LEN};
                ch->live[n++] = i;
            }
        }
        if (n == 0) {
            return 0;
        }
        if (self->batch(w, ch->segs, n) < 0) {
            return -1;
        }
        for (size_t k = 0; k < n; k++) {
            chase_step(ch, ch->live[k], ch->segs[k].local);
        }
    }
}

/* ------------------------------------------------------------------ */
/* The table                                                           */
/* ------------------------------------------------------------------ */

static int ucx_enter(struct bench *b)
{
    return host_command(b, CMD_UCX_START);
}

static int ucx_leave(struct bench *b)
{
    return host_command(b, CMD_UCX_STOP);
}

static int sock_spin(struct bench *b)
{
    return host_command(b, CMD_SOCK_SPIN);
}

static int sock_block(struct bench *b)
{
    return host_command(b, CMD_SOCK_BLOCK);
}

static int sock_usable(const struct bench *b)
{
    return b->w[0].sock_fd[0] >= 0;
}

static int sockspin_usable(const struct bench *b)
{
    return b->w[0].sock_fd[1] >= 0;
}

static int ucx_usable(const struct bench *b)
{
    return b->w[0].ucx != NULL;
}

#define ON_PID  "process_vm_readv/writev on the host's pid"
#define ON_SOCK "a Unix socket"

/* Columns in this order, but the baseline's first (cell_init). A name may
 * appear twice when a contender's ping needs other settings (host threads
 * to run and to watch) than its transfers. */
const struct contender bench_contenders[] = {
    {.name = "doca-raw",
     .what = "DOCA DMA memcpy tasks one at a time: alloc, submit, progress "
             "until done",
     .rw = doca_raw_rw,
     .batch = doca_raw_batch,
     .chase = chase_serial,
     .usable = doca_raw_usable},
    {.name = "doca-raw",
     .what = "ping: request written, reply polled with DMA memcpy tasks",
     .ping = doca_raw_ping,
     .enter = pong_enter,
     .leave = pong_leave,
     .serves = PONG_NAME,
     .usable = doca_raw_usable},
    {.name = "doca-pipe",
     .what = "DOCA DMA memcpy tasks pipelined, a window of them in flight",
     .rw = doca_pipe_rw,
     .batch = doca_pipe_batch,
     .chase = chase_stepwise,
     .overlap = doca_pipe_alone,
     .usable = doca_raw_usable},
    {.name = "doca+cpu",
     .what = "doca-pipe's tasks submitted, the CPU work, then waited for",
     .overlap = doca_pipe_overlap,
     .usable = doca_raw_usable},
    {.name = "raw",
     .what = "process_vm_readv/writev, one call per transfer",
     .rw = raw_rw,
     .batch = raw_each,
     .chase = chase_serial,
     .same_machine = ON_PID},
    {.name = "raw",
     .what = "ping: request written, reply polled with cma calls",
     .ping = raw_ping,
     .enter = pong_enter,
     .leave = pong_leave,
     .serves = PONG_NAME,
     .same_machine = ON_PID},
    {.name = "raw-vec",
     .what = "one process_vm_readv carrying every segment",
     .batch = raw_vec,
     .chase = chase_stepwise,
     .same_machine = ON_PID},
    {.name = "cpu",
     .what = "the CPU work of an overlap cell alone (no transfer)",
     .overlap = cpu_only,
     .no_data = 1},
    {.name = "memcpy",
     .what = "memcpy from a copy in our own memory",
     .local = 1,
     .rw = mem_rw,
     .batch = mem_batch,
     .chase = chase_stepwise,
     .same_machine = "the machine's limit beside the host"},
    {.name = "hmaf",
     .what = "hmaf_session_read/write, one call per transfer",
     .rw = hmaf_rw,
     .batch = hmaf_each,
     .chase = chase_serial},
    {.name = "hmaf",
     .what = "ping: hmaf_session_ping, a mailbox round trip",
     .ping = hmaf_ping,
     .serves = ""},
    {.name = "hmaf-vec",
     .what = "hmaf_session_readv/writev, one call per batch",
     .rw = hmaf_vec_rw,
     .batch = hmaf_vec_batch,
     .chase = chase_stepwise},
    {.name = "hmaf-staged",
     .what = "hmaf_session_read/write on a session staging every transfer "
             "(HMAF_DOCA_ZCOPY_MIN=0)",
     .rw = staged_rw,
     .patterns = "read-one,write-one",
     .usable = staged_usable},
    {.name = "hmaf-1t",
     .what = "hmaf_session_read/write on a session that never splits a "
             "transfer over threads (HMAF_SPLIT_THREADS=1)",
     .rw = unsplit_rw,
     .patterns = "read-one,write-one,read-seq,read-random",
     .usable = unsplit_usable},
    {.name = "hmaf-nb",
     .what = "hmaf_session_post_read/write each, then hmaf_session_flush",
     .rw = hmaf_nb_rw,
     .batch = hmaf_nb_batch,
     .chase = chase_stepwise,
     .overlap = hmaf_nb_alone},
    {.name = "hmaf-nb+cpu",
     .what = "hmaf-nb's posts, the CPU work, then hmaf_session_flush",
     .overlap = hmaf_nb_overlap},
    {.name = "hmaf-chase1",
     .what = "hmaf_session_chase, one call per chain",
     .chase = hmaf_chase_each,
     .multi_chain = 1},
    {.name = "hmaf-chase",
     .what = "hmaf_session_chase, all chains in one call",
     .chase = hmaf_chase_all},
    {.name = "socket",
     .what = "a host thread serving requests on a Unix socket",
     .rw = sock_rw,
     .batch = sock_batch,
     .chase = chase_stepwise,
     .ping = sock_ping,
     .serves = SOCK_NAME,
     .usable = sock_usable,
     .same_machine = ON_SOCK},
    {.name = "socket-spin",
     .what = "the same, both sides polling (MSG_DONTWAIT) instead of "
             "sleeping",
     .rw = sockspin_rw,
     .batch = sockspin_batch,
     .chase = chase_stepwise,
     .ping = sockspin_ping,
     .enter = sock_spin,
     .leave = sock_block,
     .serves = SOCK_NAME,
     .usable = sockspin_usable,
     .same_machine = ON_SOCK},
    {.name = "ucx",
     .what = "ucp_get_nbx, or ucp_put_nbx + ucp_ep_flush_nbx, waited for",
     .rw = ucx_rw,
     .batch = ucx_batch,
     .chase = chase_stepwise,
     .enter = ucx_enter,
     .leave = ucx_leave,
     .serves = UCX_NAME,
     .usable = ucx_usable,
     .same_machine = "its addresses and rkey come over a pipe"},
    /* The scaling rows (scale.c), each in the patterns that name it. */
    {.name = "hmaf-nsess",
     .what = "hmaf_session_ping on each of N live sessions in turn",
     .ping = sessions_ping,
     .named_only = 1,
     .serves = ""},
    {.name = "hmaf-1cpu",
     .what = "hmaf_session_ping with our thread on the host's cpu",
     .ping = hmaf_ping,
     .enter = one_cpu_enter,
     .leave = one_cpu_leave,
     .named_only = 1,
     .shares_cpu = 1,
     .serves = "",
     .usable = one_cpu_usable,
     .same_machine = "it moves our thread to the host's cpu"},
    {.name = "hmaf-miss",
     .what = "a 64 B read that misses the region cache (default bound), "
             "regions in a cycle",
     .ping = miss_read,
     .named_only = 1,
     .serves = "",
     .usable = regions_usable},
    {.name = "hmaf-reg",
     .what = "first 64 B read of a region (miss, registration, read), the "
             "tenth of a sweep before N",
     .own = 1,
     .named_only = 1,
     .usable = regions_usable},
    {.name = "hmaf-sweep",
     .what = "the same, the mean over the whole sweep to N",
     .own = 1,
     .named_only = 1,
     .usable = regions_usable},
    {.name = "hmaf-close",
     .what = "hmaf_session_ping on another session while one holding N "
             "regions closes",
     .own = 1,
     .named_only = 1,
     .usable = regions_usable},
    /* Mapping mode (mapping.c). */
    {.name = "raw-uffd",
     .what = "userfaultfd, one thread: process_vm_readv + UFFDIO_COPY of 1 "
             "page (64 KiB in scans)",
     .fault = rawuffd_fault,
     .enter = rawuffd_reset,
     .usable = rawuffd_usable,
     .same_machine = ON_PID},
    {.name = "hmaf-map",
     .what = "hmaf_map_create: first touches of the mirror",
     .fault = hmafmap_fault,
     .enter = hmafmap_reset,
     .usable = hmafmap_usable},
    {.name = "hmaf-map",
     .what = "hmaf_map_create: memcpy out of pages already present",
     .rw = hmafmap_reread,
     .named_only = 1,
     .enter = hmafmap_populate,
     .usable = hmafmap_usable},
};

const size_t bench_ncontenders =
    sizeof(bench_contenders) / sizeof(bench_contenders[0]);

int contender_runs(const struct bench *b, const struct contender *c)
{
    if (b->split && c->same_machine != NULL) {
        return 0;
    }
    return c->usable == NULL || c->usable(b);
}

/* HMAF on the ucx engine is measured against raw ucp calls on the same
 * transport (ucx.c: the same kind of endpoint), when they run. */
static int ucx_baseline(const struct bench *b)
{
    return strcmp(b->engine, "ucx") == 0 && ucx_usable(b);
}

/* The baseline contender's transfers also spoil and read back host bytes
 * for the checks: the one way to the host that is sure to be there. But
 * ucx's need its host thread, which spins during its own sides only: with
 * ucx as the baseline, raw's check (ucx runs with the forked host only). */
void choose_baseline(struct bench *b)
{
    const char *checker;

    b->baseline = doca_raw_usable(b) ? "doca-raw"
                  : ucx_baseline(b)  ? "ucx"
                  : b->split         ? "hmaf"
                                     : "raw";
    checker = strcmp(b->baseline, "ucx") == 0 ? "raw" : b->baseline;
    b->checker = NULL;
    for (size_t i = 0; i < bench_ncontenders && b->checker == NULL; i++) {
        const struct contender *c = &bench_contenders[i];
        if (strcmp(c->name, checker) == 0 && c->rw != NULL) {
            b->checker = c;
        }
    }
}

int contender_applies(const struct bench *b, const struct contender *c,
                      const struct pattern *p)
{
    int has;

    switch (p->kind) {
    case KIND_ONE:
        has = c->rw != NULL;
        break;
    case KIND_BATCH:
        has = c->batch != NULL;
        break;
    case KIND_CHASE:
        has = c->chase != NULL && (!c->multi_chain || p->count > 1);
        break;
    case KIND_FAULT:
        has = c->fault != NULL;
        break;
    case KIND_OVERLAP:
        has = c->overlap != NULL;
        break;
    case KIND_SWEEP: /* a ping, the baseline of its own figures */
        has = c->own || c->ping != NULL;
        break;
    default:
        has = c->ping != NULL;
        break;
    }
    if (p->only != NULL ? !listed(p->only, c->name) : c->named_only) {
        return 0;
    }
    if (c->patterns != NULL && !listed(c->patterns, p->id)) {
        return 0;
    }
    /* A contender that needs a host thread would share a cpu with a dpu
     * thread: its figures would show the scheduler's time slices. */
    if (p->threads > 1 && c->serves != NULL && b->cpus_shared) {
        return 0;
    }
    return has && contender_runs(b, c);
}

/* ------------------------------------------------------------------ */
/* Units of work                                                       */
/* ------------------------------------------------------------------ */

static void chase_reset(const struct bench *b, struct chase *ch, size_t n,
                        unsigned nodes)
{
    ch->n = n;
    ch->nodes = nodes;
    for (size_t i = 0; i < n; i++) {
        ch->at[i] = b->chain_start[i];
        ch->steps[i] = 0;
        ch->last[i] = 0;
    }
}

int run_unit(struct worker *w, const struct cell *cell,
             const struct contender *c, unsigned unit)
{
    const struct pattern *p = cell->p;

    switch (p->kind) {
    case KIND_ONE: {
        hmaf_seg_t seg = {.local = p->is_write ? w->src : w->dst,
                          .remote_addr = layout_addr(w, cell, unit, 0),
                          .len = cell->size};
        return c->rw(w, p->is_write, &seg);
    }
    case KIND_BATCH:
    case KIND_OVERLAP:
        for (unsigned j = 0; j < p->count; j++) {
            w->segs[j] =
                (hmaf_seg_t){.local = w->dst + (size_t)j * cell->size,
                             .remote_addr = layout_addr(w, cell, unit, j),
                             .len = cell->size};
        }
        return p->kind == KIND_BATCH
                   ? c->batch(w, w->segs, p->count)
                   : c->overlap(w, w->segs, p->count, cell->work);
    case KIND_CHASE:
        chase_reset(w->b, &w->chase, p->count, cell->nodes);
        return c->chase(w, c, &w->chase);
    case KIND_FAULT:
        return c->fault(w, cell, unit);
    default:
        return c->ping(w);
    }
}

static int verify_chase(const struct worker *w)
{
    for (size_t i = 0; i < w->chase.n; i++) {
        if (w->chase.steps[i] != w->chase.nodes ||
            w->chase.last[i] != w->b->chain_last[i]) {
            return -1;
        }
    }
    return 0;
}

/* Read back what a write left at the host (with the baseline's
 * transfers), or in the mirror. */
static int verify_write(struct worker *w, const struct cell *cell,
                        const struct contender *c)
{
    hmaf_seg_t seg = {.local = w->dst,
                      .remote_addr = w->b->buf + SAME_OFF,
                      .len = cell->size};

    if (c->local) {
        return memcmp(mirror_of(w->b, seg.remote_addr), w->src, seg.len) == 0
                   ? 0
                   : -1;
    }
    if (w->b->checker->rw(w, 0, &seg) < 0) {
        return -1;
    }
    return memcmp(w->dst, w->src, cell->size) == 0 ? 0 : -1;
}

static int verify_reads(const struct worker *w, const struct cell *cell,
                        unsigned unit)
{
    for (unsigned j = 0; j < cell->p->count; j++) {
        uint64_t remote = layout_addr(w, cell, unit, j);
        if (memcmp(w->dst + (size_t)j * cell->size, host_bytes(w->b, remote),
                   cell->size) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Spoil what unit 0 is to produce, so that a unit that moves nothing
 * fails its check: the local destination of reads, or the host bytes a
 * write is to put back. */
static int poison(struct worker *w, const struct cell *cell,
                  const struct contender *c)
{
    size_t len = (size_t)cell->p->count * cell->size;
    hmaf_seg_t seg = {.local = w->dst,
                      .remote_addr = w->b->buf + SAME_OFF,
                      .len = cell->size};

    switch (cell->p->kind) {
    case KIND_CHASE:
        len = (size_t)cell->p->count * NODE_LEN;
        break;
    case KIND_PING:
        return 0;
    default:
        break;
    }
    memset(w->dst, 0xa5, len);
    if (!cell->p->is_write) {
        return 0;
    }
    if (c->local) {
        memcpy(mirror_of(w->b, seg.remote_addr), w->dst, seg.len);
        return 0;
    }
    return w->b->checker->rw(w, 1, &seg);
}

static int check_unit(struct worker *w, const struct cell *cell,
                      const struct contender *c, unsigned unit)
{
    int ret;

    if (c->no_data) {
        return 0;
    }
    switch (cell->p->kind) {
    case KIND_CHASE:
        ret = verify_chase(w);
        break;
    case KIND_PING:
        ret = 0;
        break;
    case KIND_FAULT: /* the word touched */
        ret = memcmp(w->dst,
                     mirror_of(w->b, w->b->buf + mapping_offset(w->b, cell, 0)),
                     sizeof(uint64_t)) == 0
                  ? 0
                  : -1;
        break;
    default:
        ret = cell->p->is_write ? verify_write(w, cell, c)
                                : verify_reads(w, cell, unit);
    }
    if (ret < 0) {
        fprintf(stderr, "hmaf-bench: %s %zu, %s: wrong bytes\n", cell->p->id,
                cell->size, c->name);
    }
    return ret;
}

int verify_unit(struct worker *w, const struct cell *cell,
                const struct contender *c)
{
    int ret = poison(w, cell, c);

    if (ret == 0) {
        ret = run_unit(w, cell, c, 0);
    }
    return ret == 0 ? check_unit(w, cell, c, 0) : ret;
}

uint64_t cell_bytes(const struct cell *cell)
{
    switch (cell->p->kind) {
    case KIND_CHASE:
        return (uint64_t)cell->p->count * cell->nodes * NODE_LEN;
    case KIND_PING:
        return 0;
    default:
        return (uint64_t)cell->p->count * cell->size;
    }
}

const struct figure *cell_find(const struct cell *cell, const char *name)
{
    for (unsigned i = 0; i < cell->nfig; i++) {
        if (strcmp(cell->fig[i].c->name, name) == 0) {
            return &cell->fig[i];
        }
    }
    return NULL;
}
