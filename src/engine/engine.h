/*
 * The engine contract: how the core and the host agent move bytes without
 * knowing whether cma, UCX or DOCA does it. Not installed.
 *
 * One const ops table per engine, hmaf_engine_<name>, listed once: in
 * src/engine/CMakeLists.txt, from which registry.c's table is generated
 * (docs/engines.md, "Adding an engine"). The registry allocates and frees
 * every engine object (hmaf__engine_*_create and _destroy below) with the
 * sizes the table declares; the engine embeds the base struct first and
 * reaches its own with hmaf__container_of(). Neither the core nor the
 * agent knows those sizes.
 *
 *   ctx   one per host agent, or per dpu session: the engine's global state
 *         (UCX context + worker, DOCA device). role says which side.
 *   ep    the link to one peer, opened from the peer's bootstrap blob.
 *   mem   host: one registered range, exported as an opaque blob.
 *   rmem  dpu: one imported range, named by the transfers that use it.
 *
 * The data path is asynchronous: post() queues a batch of transfers and
 * progress() completes them; a batch is done when completed == count. An
 * engine that works synchronously (cma) completes the whole batch inside
 * post(). Every transfer moves all its bytes or the batch reports an error.
 * A batch has one direction. Several batches may be posted before any is
 * complete, by one thread or several (the core posts an epoch look, a
 * read, beside a write); each completes on its own, in no given order, and
 * a failed transfer fails its own batch only (an engine that breaks down
 * may fail them all).
 *
 * Optional ops may be NULL; the registry fills them with stubs (teardown
 * ops do nothing, progress reports no work, the rest return HMAF_ENOTSUP),
 * so callers never test for NULL. Engines never include core headers.
 *
 * What may run at once (true of cma and doca; a new engine must allow as
 * much):
 *
 *   Host side: the agent makes every call on its ctx and on that ctx's eps
 *   and mems one at a time (under its lock, or with its loop stopped), from
 *   whichever thread it is on: an engine needs no lock for these (cma's
 *   list of peers has none). Except host_progress and wait_fd: the agent's
 *   loop calls them without its lock, beside any other host call but
 *   ctx_open and ctx_close, and beside each other (a revocation's wait
 *   progresses the engine from the caller's thread while the loop does;
 *   ucx's worker is made for that: UCS_THREAD_MODE_MULTI).
 *
 *   Dpu side, on one ep (a session's):
 *   - post, progress, move_one and atomic run on any number of threads at
 *     once, on the same rmems or others: the application's threads, and
 *     the session's watch thread driving progress to drain posted
 *     requests. A batch may be completed by another thread's progress
 *     than its poster's. (cma keeps no state per call but its split
 *     helpers', which lock their own; doca gives threads lanes, each
 *     under its own lock.)
 *   - rmem_import runs beside all of these and beside other imports and
 *     releases on the ep (threads that miss at once). No transfer names
 *     the rmem being imported.
 *   - rmem_release(r) runs beside post, progress, move_one, atomic and the
 *     other imports and releases on the ep, but never while a call names
 *     r nor while a posted batch naming r is in flight: the core releases
 *     a region only after a grace period of its readers, which waits for
 *     posted batches too (core/readers.c, the drain).
 *   - ep_open runs before every other call on the ep, and ep_close alone
 *     after all of them: no call on the ep is running, every rmem of it
 *     has been released, and the core has completed every batch it
 *     posted. (An engine still ends a batch left in flight without
 *     writing to it: doca's ep_close does.)
 *   - limits may be called at any time. ctx->split_threads is set before
 *     the first post.
 *
 *   ctx_close runs alone, once every ep, mem and rmem of the ctx has
 *   ended. A forked child frees its copies of the parent's objects without
 *   a call (hmaf__engine_*_abandon; regions and the mailbox import freed
 *   as memory).
 */
#ifndef HMAF_ENGINE_ENGINE_H
#define HMAF_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#define HMAF_ENGINE_ABI_VERSION 8 /* 2: ops->flags, batch->local_span;
                                     3: HMAF_ENGINE_ENFORCED;
                                     4: batch->flags;
                                     5: ops->move_one, ctx->split_threads;
                                     6: ops->atomic;
                                     7: ops->host_progress, ops->wait_fd;
                                     8: probe says why not */

enum hmaf_engine_role {
    HMAF_ROLE_HOST = 1,
    HMAF_ROLE_DPU = 2,
};

enum hmaf_xfer_op {
    HMAF_XFER_READ,  /* host -> local */
    HMAF_XFER_WRITE, /* local -> host */
};

struct hmaf_engine_limits {
    uint64_t max_transfer; /* bytes in one transfer descriptor */
    uint32_t max_inflight; /* descriptors posted and not yet completed */
    uint32_t max_segments; /* descriptors in one post() */
    uint32_t max_blob;     /* bootstrap and export blobs, bytes */
};

struct hmaf_engine_ctx {
    const struct hmaf_engine_ops *ops;
    enum hmaf_engine_role role;
    /* Dpu side: threads one large transfer may use, the posting thread
     * included (session params.split_threads, resolved); 0 or 1: never
     * split. Set by the core before the first post. An engine that copies
     * with the cpu (cma) may split a large batch across threads of its
     * own; its post still returns only once every piece has ended. */
    unsigned split_threads;
};

struct hmaf_engine_ep {
    struct hmaf_engine_ctx *ctx;
    int peer_pid; /* the peer's pid as the kernel vouches for it (a unix
                     channel's credentials), 0 when unknown (tcp), or
                     HMAF_PEER_PID_HIDDEN (util/pidns.h): the peer runs in
                     a pid namespace this process does not see */
};

struct hmaf_engine_mem {
    struct hmaf_engine_ctx *ctx;
    uint64_t addr;
    uint64_t len;
    unsigned access; /* hmaf_access_t */
};

struct hmaf_engine_rmem {
    struct hmaf_engine_ep *ep;
    uint64_t addr;
    uint64_t len;
    unsigned access;
};

struct hmaf_xfer {
    struct hmaf_engine_rmem *rmem; /* contains [remote_addr, +len) */
    void *local;
    uint64_t remote_addr;
    size_t len; /* > 0, <= limits.max_transfer */
};

struct hmaf_xfer_batch {
    enum hmaf_xfer_op op;
    struct hmaf_xfer *xfers;
    /* The caller's whole buffer these transfers are pieces of, when the
     * call had one (else NULL): an engine that registers local memory can
     * register it at once rather than batch by batch. */
    const void *local_span;
    uint64_t local_span_len;
    uint32_t count;
    uint32_t completed; /* advanced by the engine */
    int status;         /* 0, or the first error the engine saw */
    uint32_t flags;     /* HMAF_BATCH_* */
};

/* The most bytes the core hands to ops->move_one at once. */
#define HMAF_MOVE_ONE_MAX (64u << 10)

/* batch->flags */
/* The session's own traffic (its mailbox): small and seldom. An engine
 * that gives busy threads resources of their own (doca: a DMA lane each)
 * need not give them to a thread for this. */
#define HMAF_BATCH_CONTROL 1u

/* ops->flags */
/* Deregistering a range ends the peer's access to it: the engine, not the
 * dpu side's library, enforces revocation (doca: destroying an export
 * invalidates every import of it; ucx: the host's handler serves no
 * request whose key is gone). Without it (cma), the agent keeps
 * memory a peer could still write — a session's mailbox — away from the
 * allocator until the peer has said it stopped (host/session.c). Either
 * way the agent closes a live session in two steps — tell the peer, give
 * it revoke_wait_ms to release its imports and say so — so that an
 * export never ends under an import still in use. */
#define HMAF_ENGINE_ENFORCED 1u
/* post() returns with transfers in flight and progress() completes them,
 * from any thread (doca). The core then hands non-blocking requests to the
 * engine when they are posted (core/request.c); without it (cma) they are
 * queued and run at test, wait or flush, merged into few posts. */
#define HMAF_ENGINE_ASYNC 2u
/* The transfers of one write post land in order: a peer that sees any
 * byte of one sees every byte of those before it. The mailbox then writes
 * a request's payload and the word that publishes it in one post
 * (core/mailbox.c), instead of waiting for the payload's write first. */
#define HMAF_ENGINE_ORDERED 4u
/* The transfers of one read post are read in order: a load of a later
 * transfer's bytes is not done before the loads of an earlier one's. A
 * consistent read (core/seqlock.c) then reads a record's version word, the
 * record and the word again in one post; without it, in three posts, each
 * completed before the next. */
#define HMAF_ENGINE_ORDERED_READS 8u

/* One remote atomic for ops->atomic (atomic.h's contract: naturally
 * aligned, a 4-byte op uses the low 32 bits of operand and compare). */
struct hmaf_engine_atomic {
    struct hmaf_engine_rmem *rmem; /* contains [remote_addr, +size) */
    uint64_t remote_addr;
    uint8_t op;   /* hmaf_atomic_op_t */
    uint8_t size; /* 4 or 8 */
    uint64_t operand;
    uint64_t compare;
    uint64_t old; /* out: the word before, zero-extended */
    int status;   /* out: 0 or this op's error */
};

struct hmaf_engine_ops {
    const char *name;
    unsigned abi_version;
    unsigned flags;
    size_t ctx_size; /* >= sizeof(struct hmaf_engine_ctx); likewise below */
    size_t ep_size;
    size_t mem_size;
    size_t rmem_size;

    /* Usable on this machine? 0, or an error and, in why (len bytes,
     * NUL-terminated), one line for a person: what is missing and, where
     * it can, what to do about it ("...: do this"). Cheap and without
     * side effects: it runs at every engine selection and for
     * hmaf_engine_list(). Required. */
    int (*probe)(char *why, size_t len);
    /* ctx->ops and ctx->role are set; the rest of ctx_size is zeroed. */
    int (*ctx_open)(struct hmaf_engine_ctx *ctx); /* required */
    void (*ctx_close)(struct hmaf_engine_ctx *ctx);
    void (*limits)(const struct hmaf_engine_ctx *ctx,
                   struct hmaf_engine_limits *limits_out); /* required */
    /* This side's bootstrap blob, sent in the handshake. */
    int (*local_blob)(struct hmaf_engine_ctx *ctx, void *buf, size_t cap,
                      size_t *len_out);

    /* ep->ctx and ep->peer_pid are set. Opens the link from the peer's
     * bootstrap blob; a blob that contradicts peer_pid is HMAF_EAUTH, or
     * HMAF_EPIDNS when an engine that needs the peer's pid finds the peer
     * in another pid namespace (hidden, or naming itself by its own
     * namespace's number). */
    int (*ep_open)(struct hmaf_engine_ep *ep, const void *peer_blob,
                   size_t len); /* required */
    void (*ep_close)(struct hmaf_engine_ep *ep);

    /* Host: mem->ctx/addr/len/access are set. */
    int (*mem_register)(struct hmaf_engine_mem *mem);
    int (*mem_export)(struct hmaf_engine_mem *mem, void *buf, size_t cap,
                      size_t *len_out);
    void (*mem_deregister)(struct hmaf_engine_mem *mem);

    /* Dpu: rmem->ep/addr/len/access are set; blob is the host's export. */
    int (*rmem_import)(struct hmaf_engine_rmem *rmem, const void *blob,
                       size_t len);
    void (*rmem_release)(struct hmaf_engine_rmem *rmem);

    /* Dpu: queue a batch (count <= max_segments). Required. */
    int (*post)(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch);
    /* Dpu: complete what can be completed; returns the number completed. */
    int (*progress)(struct hmaf_engine_ep *ep);
    /* Dpu: move one transfer of at most HMAF_MOVE_ONE_MAX bytes (and
     * limits.max_transfer) and return when it has: 0, or its error, as a
     * batch of it would end. The data path's commonest call, a small read
     * or write, without a batch around it: for an engine that moves bytes
     * at post (cma), the batch would cost more than the rest of the call.
     * Without it, the registry posts a batch of one and drives it to
     * completion. May run concurrently with post() and progress(). */
    int (*move_one)(struct hmaf_engine_ep *ep, enum hmaf_xfer_op op,
                    const struct hmaf_xfer *x);
    /* Dpu, optional: perform count atomics natively, in order, atomic with
     * respect to the host CPU's atomics on the same words, and return once
     * all are done: 0 when the call ran (each op's status says its own),
     * or an error for all of them. An engine without native atomics (cma,
     * doca) leaves it NULL; the registry's stub returns HMAF_ENOTSUP and
     * the agent performs atomics from mailbox requests instead. */
    int (*atomic)(struct hmaf_engine_ep *ep, struct hmaf_engine_atomic *ops,
                  uint32_t count);

    /* Host, optional: the host's share of the transfers, for an engine
     * whose transfers need the host's CPU (ucx: the host's worker serves
     * every read, write and atomic as a request, after checking it:
     * without this, the dpu side's transfers stall). Does what is
     * ready and returns how much (> 0), 0 when nothing was, or an error.
     * The agent calls it on every turn of its loop, from whichever thread
     * drives the agent, concurrently with mem_register/mem_deregister
     * from API calls. The stub does nothing and returns 0 (cma, doca: the
     * host's CPU takes no part). */
    int (*host_progress)(struct hmaf_engine_ctx *ctx);
    /* Host, optional: called before the agent sleeps. Arms the engine's
     * wake-up and gives the fd that becomes readable when host_progress
     * has work: 0 and *fd_out, or HMAF_EBUSY when there is work already
     * (progress and ask again), or HMAF_ENOTSUP when the engine has none
     * (the stub's answer: cma, doca). The fd stays the engine's. */
    int (*wait_fd)(struct hmaf_engine_ctx *ctx, int *fd_out);
};

/* The table for name; NULL or "" for $HMAF_ENGINE, else the default (the
 * first built: cma; the others are chosen by name only). Returns NULL,
 * having logged why, when none is built with that name or it is not
 * usable here; stubs are filled in. */
const struct hmaf_engine_ops *hmaf__engine_find(const char *name);
/* Whether the engine performs atomics itself (its own ops->atomic, not
 * the stub): the core then hands them to it rather than to the agent. */
int hmaf__engine_has_atomic(const struct hmaf_engine_ops *ops);
/* Names of all built engines, in auto-selection order, NULL-terminated. */
const char *const *hmaf__engine_names(void);
/* The i-th built engine in auto-selection order, NULL past the last. */
const struct hmaf_engine_ops *hmaf__engine_at(size_t i);
/* Room for a probe's reason (hmaf_engine_info_t's). */
#define HMAF_ENGINE_WHY_MAX 384
/* Probe a table: 0, or its error with why (len bytes) saying why not. */
int hmaf__engine_probe(const struct hmaf_engine_ops *ops, char *why,
                       size_t len);

/* Engine objects: allocated with the sizes the engine's table declares,
 * their base struct filled in, then handed to the engine's op. On
 * failure nothing is left allocated and *_out is not written. */

/* Allocate and open a ctx for role; NULL ops is not allowed. */
int hmaf__engine_ctx_create(const struct hmaf_engine_ops *ops,
                            enum hmaf_engine_role role,
                            struct hmaf_engine_ctx **ctx_out);
void hmaf__engine_ctx_destroy(struct hmaf_engine_ctx *ctx);
int hmaf__engine_ep_create(struct hmaf_engine_ctx *ctx, int peer_pid,
                           const void *peer_blob, size_t len,
                           struct hmaf_engine_ep **ep_out);
void hmaf__engine_ep_destroy(struct hmaf_engine_ep *ep);
/* Free the memory only, no engine call: for a forked child's copies,
 * whose engine state is the parent's. */
void hmaf__engine_ep_abandon(struct hmaf_engine_ep *ep);
void hmaf__engine_ctx_abandon(struct hmaf_engine_ctx *ctx);

/* Host: register [addr, +len) with access (hmaf_access_t) on ctx. */
int hmaf__engine_mem_create(struct hmaf_engine_ctx *ctx, uint64_t addr,
                            uint64_t len, unsigned access,
                            struct hmaf_engine_mem **mem_out);
/* Deregister and free; NULL does nothing. */
void hmaf__engine_mem_destroy(struct hmaf_engine_mem *mem);

/* Dpu: import [addr, +len) with access on ep, from the host's export
 * blob. */
int hmaf__engine_rmem_create(struct hmaf_engine_ep *ep, uint64_t addr,
                             uint64_t len, unsigned access, const void *blob,
                             size_t blob_len,
                             struct hmaf_engine_rmem **rmem_out);
/* Bytes of an rmem of ops's engine, for an owner that keeps it in its own
 * allocation (the core's regions: one allocation per miss, not two). */
size_t hmaf__engine_rmem_size(const struct hmaf_engine_ops *ops);
/* The rmem is placed at storage: hmaf__engine_rmem_size() bytes, aligned
 * as malloc's memory is (HMAF_ENGINE_RMEM_ALIGN). Otherwise as _create;
 * the storage stays its owner's, to free after the release. */
#define HMAF_ENGINE_RMEM_ALIGN _Alignof(max_align_t)
int hmaf__engine_rmem_import_at(void *storage, struct hmaf_engine_ep *ep,
                                uint64_t addr, uint64_t len, unsigned access,
                                const void *blob, size_t blob_len,
                                struct hmaf_engine_rmem **rmem_out);
/* End the import: no transfer may name it any more. Its memory stays, for
 * an owner that still lists it; NULL does nothing. */
void hmaf__engine_rmem_release(struct hmaf_engine_rmem *rmem);
/* Free a released rmem made by _create (no engine call); NULL does
 * nothing. */
void hmaf__engine_rmem_free(struct hmaf_engine_rmem *rmem);
/* Release and free an rmem made by _create; NULL does nothing. */
void hmaf__engine_rmem_destroy(struct hmaf_engine_rmem *rmem);

/* Post a batch and drive progress until it completes; returns its status. */
int hmaf__engine_run(struct hmaf_engine_ep *ep, struct hmaf_xfer_batch *batch);
/* Drive progress until a posted batch completes; returns its status. */
int hmaf__engine_complete(struct hmaf_engine_ep *ep,
                          struct hmaf_xfer_batch *batch);

#endif
