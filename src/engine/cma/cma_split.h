/*
 * cma: large transfers split over helper threads (cma_split.c).
 *
 * One process_vm_readv copies on one cpu, and a cold source keeps that
 * cpu waiting on memory; a transfer of CMA_SPLIT_MIN bytes or more is
 * cut into pieces that the calling thread and idle helper threads of the
 * engine context (one per dpu session) copy at once. The caller copies
 * pieces too, takes back what no helper started, and returns only once
 * every piece has ended: to the core the post is as synchronous as an
 * unsplit one, so a read-side section around it still covers every byte
 * it moves (the revocation fence).
 */
#ifndef HMAF_ENGINE_CMA_SPLIT_H
#define HMAF_ENGINE_CMA_SPLIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "engine/engine.h"

/* Batches moving fewer bytes go unsplit: a helper's wake-up would cost
 * more than its share saves. */
#define CMA_SPLIT_MIN (1ull << 20)
/* Threads one transfer may use at most, the caller included. */
#define CMA_SPLIT_THREADS_MAX 64u

/* One helper thread; a cache line of its own (the caller and the helper
 * both spin on its state). */
struct cma_helper {
    _Atomic uint32_t state; /* generation, flag and phase: cma_split.c */
    struct cma_split_job *job;
    pthread_t thread;
} __attribute__((aligned(64)));

/* The helpers of one engine context, started by its first split. */
struct cma_split {
    _Atomic int started; /* 0, 1 (being started), 2 (nhelpers are up) */
    unsigned nhelpers;
    _Atomic uint64_t quiet_until; /* transfers go unsplit until then (ns) */
    _Atomic unsigned misses;      /* jobs in a row whose helpers held it up */
    _Atomic unsigned busy;        /* callers in hmaf__cma_split_move, and the
                                     helpers they claimed */
    struct cma_helper helpers[CMA_SPLIT_THREADS_MAX - 1];
};

/* Moves one piece of a batch (a batch of its own, at most a few
 * descriptors): the engine's unsplit move. Returns its status. */
typedef int (*cma_split_move_fn)(const void *arg,
                                 struct hmaf_xfer_batch *piece);

/* Does the batch move CMA_SPLIT_MIN bytes or more? Its total to *total_out. */
int hmaf__cma_split_worth(const struct hmaf_xfer_batch *batch,
                          uint64_t *total_out);
/* Move every byte of batch (total bytes) in pieces, by the calling thread
 * and as many idle helpers as `threads` allows, counting the threads other
 * callers use meanwhile (the helpers are started by the first call).
 * Returns what one unsplit move would: 0, or the status of the first
 * piece, in byte order, that failed. */
int hmaf__cma_split_move(struct cma_split *sp, unsigned threads,
                         struct hmaf_xfer_batch *batch, uint64_t total,
                         cma_split_move_fn move, const void *arg);
/* End the helpers. No split may be running (the context is closing). */
void hmaf__cma_split_fini(struct cma_split *sp);

#endif
