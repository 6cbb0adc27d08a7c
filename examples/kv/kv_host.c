/*
 * hmaf-kv-host: the host half of the kv service. It builds the store in a
 * heap it exposes read-write, publishes the root as "kv", serves dpu
 * sides through an HMAF agent, and answers Redis clients on its own port
 * with plain loads, stores and CPU atomics on the same memory.
 *
 *   hmaf-kv-host --address unix:/tmp/kv.sock --port 7001 [--token T]
 *                [--buckets N] [--heap-mib M] [--bind 127.0.0.1]
 *
 * Prints "ready port P" on stdout once both are served.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <hmaf/hmaf.h>

#include "kv_server.h"
#include "kv_store.h"
#include "../help.h"

#define DEFAULT_BUCKETS  (1u << 16)
#define DEFAULT_HEAP_MIB 512

struct host {
    hmaf_agent_t *agent;
    void *base;
    size_t len;
};

static void *ptr_to(uint64_t addr)
{
    return (void *)(uintptr_t)addr;
}

static int host_alloc(void *ctx, size_t size, uint64_t *addr_out)
{
    struct host *h = ctx;
    void *p;
    int ret = hmaf_agent_heap_alloc(h->agent, size, &p);

    if (ret == 0) {
        *addr_out = (uint64_t)(uintptr_t)p;
    }
    return ret;
}

static int host_free(void *ctx, uint64_t addr)
{
    struct host *h = ctx;

    return hmaf_agent_heap_free(h->agent, ptr_to(addr));
}

static int heap_in_use(struct host *h, uint64_t *bytes, uint64_t *blocks)
{
    hmaf_heap_stats_t st = HMAF_HEAP_STATS_INIT;
    int ret = hmaf_agent_heap_stats(h->agent, &st);

    *bytes = st.bytes_in_use;
    *blocks = st.blocks_in_use;
    return ret;
}

static int heap_setup(struct host *h)
{
    hmaf_heap_params_t p;

    hmaf_heap_params_init(&p);
    return hmaf_agent_heap_create(h->agent, h->base, h->len, &p);
}

/* Copy len bytes from host memory. Bucket words, the key count and
 * counters are changed by the agent's thread (the dpu side's atomics)
 * while we read: every aligned 8-byte word is loaded atomically, and the
 * acquire orders what it points to after it. */
static void load_words(void *dst, uint64_t src, size_t len)
{
    size_t done = 0;

    if ((src & 7) == 0) {
        for (; done + 8 <= len; done += 8) {
            uint64_t v = __atomic_load_n((uint64_t *)ptr_to(src + done),
                                         __ATOMIC_ACQUIRE);
            memcpy((char *)dst + done, &v, 8);
        }
    }
    memcpy((char *)dst + done, ptr_to(src + done), len - done);
}

/* The local accessor: the store's memory is ours. */
static int host_readv(void *ctx, const hmaf_seg_t *segs, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        load_words(segs[i].local, segs[i].remote_addr, segs[i].len);
    }
    return 0;
}

static int host_writev(void *ctx, const hmaf_seg_t *segs, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        memcpy(ptr_to(segs[i].remote_addr), segs[i].local, segs[i].len);
    }
    /* a quiescence word must be seen before the reads that follow it */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return 0;
}

/* CPU atomics on the words the agent performs the dpu side's on. */
static int host_atomic_one(hmaf_atomic_t *op)
{
    uint64_t *word = ptr_to(op->remote_addr);

    if (op->size != 8 || (op->remote_addr & 7)) {
        return HMAF_EINVAL;
    }
    if (op->op == HMAF_ATOMIC_CAS) {
        op->old = op->compare;
        __atomic_compare_exchange_n(word, &op->old, op->operand, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    } else if (op->op == HMAF_ATOMIC_FADD) {
        op->old = __atomic_fetch_add(word, op->operand, __ATOMIC_SEQ_CST);
    } else {
        return HMAF_EINVAL;
    }
    return 0;
}

static int host_atomic(void *ctx, hmaf_atomic_t *ops, size_t n)
{
    int first = 0;

    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        ops[i].status = host_atomic_one(&ops[i]);
        if (first == 0) {
            first = ops[i].status;
        }
    }
    return first;
}

/* A dpu side that is gone holds nothing: free what waited for it. */
static int host_peer_alive(void *ctx)
{
    struct host *h = ctx;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    return hmaf_agent_stats(h->agent, &st) != 0 || st.sessions_live > 0;
}

static const struct kv_mem_ops host_ops = {
    .readv = host_readv,
    .writev = host_writev,
    .atomic = host_atomic,
    .alloc = host_alloc,
    .free = host_free,
    .peer_alive = host_peer_alive,
};

static void host_info(void *arg, struct resp_buf *out)
{
    struct host *h = arg;
    uint64_t bytes = 0, blocks = 0;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    char line[256];

    heap_in_use(h, &bytes, &blocks);
    hmaf_agent_stats(h->agent, &st);
    snprintf(line, sizeof(line),
             "# Heap\r\nheap_bytes_total:%zu\r\nheap_bytes_in_use:%llu\r\n"
             "heap_blocks_in_use:%llu\r\ndpu_sessions:%llu\r\n",
             h->len, (unsigned long long)bytes, (unsigned long long)blocks,
             (unsigned long long)st.sessions_live);
    resp_buf_put(out, line, strlen(line));
}

static void usage(FILE *to)
{
    fprintf(to, "usage: hmaf-kv-host --address unix:PATH --port P "
                    "[--token T] [--buckets N] [--heap-mib M] [--bind IP]\n");
}

static int start_agent(struct host *h, const struct kv_options *o)
{
    hmaf_agent_params_t ap;
    int ret;

    hmaf_agent_params_init(&ap);
    ap.address = o->address;
    ap.token = o->token;
    ret = hmaf_agent_create(&ap, &h->agent);
    if (ret < 0) {
        fprintf(stderr, "hmaf-kv-host: agent at %s: %s\n", o->address,
                hmaf_strerror(ret));
        return ret;
    }
    h->len = (size_t)o->heap_mib << 20;
    /* pages never touched cost nothing */
    h->base = mmap(NULL, h->len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (h->base == MAP_FAILED) {
        return HMAF_ENOMEM;
    }
    return heap_setup(h);
}

/* Undo start_agent(): the agent first, so no dpu side writes the heap
 * once it is unmapped. */
static void stop_agent(struct host *h)
{
    hmaf_agent_destroy(h->agent);
    if (h->base != NULL && h->base != MAP_FAILED) {
        munmap(h->base, h->len);
    }
}

static int serve(struct host *h, const struct kv_options *o,
                 struct kv_store *store)
{
    struct kv_server_params sp = {.wake_fd = -1, .role = "host",
                                  .port = o->port, .bind = o->bind,
                                  .store = store, .info = host_info,
                                  .arg = h};

    return kv_server_serve(&sp);
}

int main(int argc, char **argv)
{
    struct kv_options o = {.port = 7001, .buckets = DEFAULT_BUCKETS,
                           .heap_mib = DEFAULT_HEAP_MIB, .token = ""};
    struct host h = {0};
    struct kv_store store;
    uint64_t root;
    int ret;

    if (asked_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (kv_options_parse(argc, argv, &o) < 0 || o.address == NULL) {
        usage(stderr);
        return 2;
    }
    ret = start_agent(&h, &o);
    if (ret == 0) {
        ret = kv_store_format(&host_ops, &h, o.buckets, &root);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(h.agent, "kv", ptr_to(root),
                                 sizeof(struct kv_root));
    }
    if (ret == 0) {
        ret = kv_store_open(&store, &host_ops, &h, root, KV_SIDE_HOST);
    }
    if (ret < 0) {
        fprintf(stderr, "hmaf-kv-host: %s\n", hmaf_strerror(ret));
        stop_agent(&h);
        return 1;
    }
    /* SIGINT/SIGTERM end the loop; everything is released before exit */
    ret = serve(&h, &o, &store);
    kv_store_close(&store);
    stop_agent(&h);
    return ret < 0;
}
