/*
 * The doca engine's private state, shared by doca_engine.c (device, host
 * registrations, imports, ops table) and doca_ep.c (the dpu side's DMA
 * data path). Statics are named deng_ ("doca engine"): a doca_ prefix
 * would read as DOCA's own API.
 */
#ifndef HMAF_ENGINE_DOCA_INT_H
#define HMAF_ENGINE_DOCA_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <doca_buf.h>
#include <doca_buf_inventory.h>
#include <doca_ctx.h>
#include <doca_dev.h>
#include <doca_dma.h>
#include <doca_error.h>
#include <doca_mmap.h>
#include <doca_pe.h>

#include "engine/engine.h"

/* Tasks in flight per lane, at most (and so descriptors per post). */
#define DENG_TASKS_MAX 256
/* Bytes of one staging slot, at most: the engine's max_transfer. With
 * DENG_TASKS_MAX slots that is 16 MiB of registered staging per lane; 64 KiB
 * transfers already reach the DMA plateau (shared/DOCA.md, anchors). */
#define DENG_SLOT_MAX (64u << 10)
/* Small transfers of one batch on one import go as one task with a list
 * of host bufs (scatter-gather) and one staging slot: at most this many
 * per task (and the device's max_buf_list_len), each at most
 * DENG_LIST_ITEM_MAX bytes, where a task's fixed cost outweighs its bytes. */
#define DENG_LIST_MAX      16
#define DENG_LIST_ITEM_MAX 4096u
/* Bytes of one task in place, at most: a step moves 16 MiB at most, and
 * fewer, larger tasks cost the device and the cpu less per byte. */
#define DENG_TASK_MAX (16u << 20)
/* Export blobs travel in the handshake and in REGISTER answers. DOCA's
 * descriptors are opaque and grow with releases (234 B on a BF-2 with
 * DOCA 1.5; NVIDIA's samples allow 512 B; 3.4 adds access tokens): 1 KiB
 * and room to spare, within the protocol's 1536. */
#define DENG_BLOB_MAX 1280
/* Caller buffers registered for DMA in place, at most, per ep. */
#define DENG_LREG_MAX 64
/* HMAF_DOCA_ZCOPY_MIN and HMAF_DOCA_ZCOPY_CACHE: defaults in the table of
 * util/config.c (doca.md). */

struct hmaf__memwatch;

struct deng_ctx {
    struct hmaf_engine_ctx base;
    struct doca_dev *dev;
    /* dpu: fixed at ctx_open, so limits() needs no ep */
    uint32_t nslots;  /* tasks in flight per lane */
    size_t slot_size; /* bytes per staged task: min(max_buf_size,
                         DENG_SLOT_MAX) */
    uint64_t max_task; /* bytes per task in place: max_buf_size, at most
                          DENG_TASK_MAX; the engine's max_transfer */
    uint32_t list_max; /* host bufs per task: max_buf_list_len, at most
                          DENG_LIST_MAX; 1: no lists */
    uint64_t zcopy_min;   /* register caller runs this long; 0: never */
    uint64_t zcopy_cache; /* bytes of caller memory registered, at most */
};

/* Host: one registered, exported range. */
struct deng_mem {
    struct hmaf_engine_mem base;
    struct doca_mmap *mmap;
};

/* Dpu: one range imported from the host's export. Lanes of several
 * threads get bufs on it: a doca_mmap is not thread safe without
 * doca_mmap_enable_thread_safety, which is experimental, so its buf calls
 * take lock (one per import: threads on other ranges never meet). */
struct deng_rmem {
    struct hmaf_engine_rmem base;
    struct doca_mmap *mmap;
    pthread_mutex_t lock;
};

/* Caller memory registered for DMA in place (doca_lreg.c). */
struct deng_lreg {
    uint64_t base, len; /* whole pages */
    struct doca_mmap *mmap;
    uint32_t inflight; /* tasks using it */
    uint8_t dead;      /* dropped; destroyed once inflight is 0 */
    uint64_t last_use; /* lru clock */
    struct deng_lreg *next_dead;
};

struct deng_lregs {
    struct hmaf__memwatch *watch; /* opened at the first registration */
    int no_watch;                 /* ... and could not be */
    struct deng_lreg *live[DENG_LREG_MAX];
    uint32_t nlive;  /* read without the lock: 0 skips the lookup */
    uint64_t bytes;  /* of live registrations */
    uint64_t pinned; /* of live and dead (still in flight) ones */
    uint64_t clock;
    struct deng_lreg *dead; /* dropped while tasks still used them */
};

/* Caller memory that would not register, not looked at again within the
 * same post (its other transfers); unwatched, so forgotten at every post
 * (doca_lreg.c, skip). One per lane: a post belongs to one lane. */
struct deng_skip {
    uint64_t base, len;
};

/* One task in flight: a staging slot, its two bufs and its task. A
 * transfer moves in one task in place, or staged in pieces of at most
 * slot_size, a slot each; the slot of its first piece (its head) counts
 * the pieces and is free again only after the last. */
struct deng_slot {
    struct deng_lane *lane;
    struct deng_slot *next_free;
    uint8_t *stage; /* slot_size bytes of the local mmap */
    struct hmaf_xfer_batch *batch;
    struct deng_slot *head;
    uint32_t pieces_left; /* head: pieces not completed yet */
    int status;           /* head: the first error of its pieces */
    void *local; /* the caller's bytes of this piece: copied out at read
                    completion */
    size_t len;
    /* A list task (nparts > 1): the transfers it carries, whole, their
     * bytes one after another in stage. */
    uint32_t nparts;
    struct deng_part {
        void *local;
        size_t len;
    } parts[DENG_LIST_MAX];
    struct deng_lreg *lreg; /* local side in place, not through stage */
    enum hmaf_xfer_op op;
    struct doca_buf *src, *dst;
    /* guarding the mmap under src or dst, when other lanes share it */
    pthread_mutex_t *src_lock, *dst_lock;
    struct doca_dma_task_memcpy *task;
};

/* How far a batch has been handed to the DMA ctx: transfer next, from
 * byte off on (head: the slot of its first piece, once off > 0). */
struct deng_cursor {
    uint32_t next;
    uint64_t off;
    struct deng_slot *head;
};

/* A batch larger than the free window: the rest is posted by progress(). */
struct deng_pending {
    struct deng_pending *next;
    struct hmaf_xfer_batch *batch;
    struct deng_cursor cur;
};

/*
 * A lane: one DMA ctx with its progress engine, buf inventory, staging
 * pool and window of tasks, driven by one thread at a time (DOCA's rule for
 * a PE and its contexts) under its own lock. A thread that meets another
 * on lane 0 gets a lane of its own (doca_ep.c, deng_lock_lane), so threads
 * sharing a session do not wait for each other; everything below is
 * guarded by lock.
 */
struct deng_lane {
    pthread_mutex_t lock;
    struct deng_ep *ep;
    struct doca_pe *pe;
    struct doca_dma *dma;
    struct doca_buf_inventory *inv;
    struct doca_mmap *local_mmap;
    uint8_t *pool; /* nslots * slot_size staging bytes */
    struct deng_slot *slots;
    struct deng_slot *free_slots;
    struct deng_pending *pending_head, *pending_tail;
    struct deng_skip skip;
    uint32_t ncompleted; /* transfers completed by this progress() */
    uint32_t busy;       /* tasks and queued batches; read without lock */
    int stopping;        /* ep_close asked the DMA ctx to stop */
};

/* Lanes per ep, at most: more threads share them. Each lane made costs a
 * DMA ctx and its 16 MiB staging pool, so only threads that really move
 * data through a session make one. */
#define DENG_LANES_MAX 4

struct deng_ep {
    struct hmaf_engine_ep base;
    /* dpu: */
    uint64_t id; /* process-unique: threads remember their lane by it */
    struct deng_lane *lanes[DENG_LANES_MAX]; /* lane 0 from ep_open on,
                                                the rest made on demand */
    uint32_t next_lane;                      /* handed to the next thread */
    pthread_mutex_t lanes_lock;              /* making a lane */
    /* Imports and caller registrations (doca_mmap objects over the one
     * device) and the registration cache; taken inside a lane's lock. */
    pthread_mutex_t reg_lock;
    int has_locks;
    struct deng_lregs lregs;
    int failed; /* a DMA ctx stopped on its own (a fatal task error): every
                   transfer from then on fails HMAF_ECONNRESET; atomic */
    struct hmaf_xfer_batch orphans; /* for tasks outliving ep_close's callers */
};

/* The one place DOCA statuses become HMAF codes. */
int hmaf__doca_status_to_hmaf(doca_error_t err);

int hmaf__doca_ep_open(struct deng_ep *ep);
void hmaf__doca_ep_close(struct deng_ep *ep);
int hmaf__doca_post(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch);
int hmaf__doca_progress(struct hmaf_engine_ep *ep);

/* Under a lane's lock (skip is the lane's). The registration through
 * which transfer i of batch can be moved in place, held for one task, or
 * NULL: stage it. */
struct deng_lreg *hmaf__doca_lreg_get(struct deng_ep *ep, struct deng_skip *skip,
                                      const struct hmaf_xfer_batch *batch,
                                      uint32_t i);
void hmaf__doca_lreg_put(struct deng_ep *ep, struct deng_lreg *r);
/* Once no task runs: every registration and the memory watch. */
void hmaf__doca_lreg_fini(struct deng_ep *ep);

#endif
