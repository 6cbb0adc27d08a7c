/*
 * hmaf-kv-dpu: the dpu half of the kv service. It connects to
 * hmaf-kv-host's agent, finds the store's root ("kv") and answers Redis
 * clients on its own port from the host's memory: reads are vectored HMAF
 * reads (one per level of the table for a whole turn of commands),
 * changes are HMAF writes, blocks come from the host's heap
 * (hmaf_session_alloc) and are published with HMAF compare-and-swap. The
 * host's CPU serves none of the reads.
 *
 *   hmaf-kv-dpu --address unix:/tmp/kv.sock --port 7002 [--token T]
 *
 * Prints "ready port P" on stdout once it serves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hmaf/hmaf.h>

#include "kv_server.h"
#include "kv_store.h"
#include "../help.h"

#define CONNECT_MS  10000
#define DRAIN_TRIES 1000 /* 1 ms apart */

static int dpu_readv(void *ctx, const hmaf_seg_t *segs, size_t n)
{
    return hmaf_session_readv(ctx, segs, n);
}

static int dpu_writev(void *ctx, const hmaf_seg_t *segs, size_t n)
{
    return hmaf_session_writev(ctx, segs, n);
}

/* A turn's swaps and adds: HMAF_ATOMIC_BATCH_MAX per round trip. */
static int dpu_atomic(void *ctx, hmaf_atomic_t *ops, size_t n)
{
    return hmaf_session_atomic(ctx, ops, n);
}

static int dpu_alloc(void *ctx, size_t size, uint64_t *addr_out)
{
    return hmaf_session_alloc(ctx, size, addr_out);
}

static int dpu_free(void *ctx, uint64_t addr)
{
    return hmaf_session_free(ctx, addr);
}

/* Idle: give the heap blocks this session keeps for later back to the
 * host, so that an idle host's heap shows what the store really holds. */
static void dpu_idle(void *ctx)
{
    hmaf_session_heap_flush(ctx);
}

static const struct kv_mem_ops dpu_ops = {
    .readv = dpu_readv,
    .writev = dpu_writev,
    .atomic = dpu_atomic,
    .alloc = dpu_alloc,
    .free = dpu_free,
    .idle = dpu_idle,
};

static void dpu_info(void *arg, struct resp_buf *out)
{
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    char line[256];

    if (hmaf_session_stats(arg, &st) != 0) {
        return;
    }
    snprintf(line, sizeof(line),
             "# HMAF\r\nhmaf_engine:%s\r\nhmaf_ops:%llu\r\n"
             "hmaf_bytes_read:%llu\r\nhmaf_mailbox_round_trips:%llu\r\n",
             hmaf_session_engine(arg), (unsigned long long)st.ops,
             (unsigned long long)st.bytes_read,
             (unsigned long long)st.mailbox_round_trips);
    resp_buf_put(out, line, strlen(line));
}

static void usage(FILE *to)
{
    fprintf(to, "usage: hmaf-kv-dpu --address unix:PATH --port P "
                    "[--token T] [--bind IP]\n");
}

static int connect_store(const struct kv_options *o, hmaf_session_t **s_out,
                         struct kv_store *store)
{
    hmaf_session_params_t sp;
    uint64_t root;
    size_t len;
    int ret;

    hmaf_session_params_init(&sp);
    sp.address = o->address;
    sp.token = o->token;
    sp.connect_timeout_ms = CONNECT_MS;
    ret = hmaf_session_create(&sp, s_out);
    if (ret < 0) {
        return ret;
    }
    ret = hmaf_session_lookup(*s_out, "kv", &root, &len);
    if (ret == 0 && len < sizeof(struct kv_root)) {
        ret = HMAF_EPROTO;
    }
    if (ret == 0) {
        ret = kv_store_open(store, &dpu_ops, *s_out, root, KV_SIDE_DPU);
    }
    if (ret < 0) {
        hmaf_session_destroy(*s_out);
    }
    return ret;
}

/* Before leaving: free what this side retired (the host goes idle
 * within milliseconds; a host that does not loses them, as if this side
 * had died) and give the cached heap blocks back. */
static void drain(struct kv_store *store)
{
    for (int i = 0; i < DRAIN_TRIES; i++) {
        if (kv_store_idle(store) < 0) {
            return;
        }
        if (kv_store_pending(store) == 0) {
            kv_store_rest(store);
            return;
        }
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
}

static int serve(hmaf_session_t *session, const struct kv_options *o,
                 struct kv_store *store)
{
    struct kv_server_params sp = {.wake_fd = -1, .role = "dpu",
                                  .port = o->port, .bind = o->bind,
                                  .store = store, .info = dpu_info,
                                  .arg = session};

    return kv_server_serve(&sp);
}

int main(int argc, char **argv)
{
    struct kv_options o = {.port = 7002, .token = ""};
    hmaf_session_t *session;
    struct kv_store store;
    int ret;

    if (asked_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (kv_options_parse(argc, argv, &o) < 0 || o.address == NULL) {
        usage(stderr);
        return 2;
    }
    ret = connect_store(&o, &session, &store);
    if (ret < 0) {
        fprintf(stderr, "hmaf-kv-dpu: store at %s: %s\n", o.address,
                hmaf_strerror(ret));
        return 1;
    }
    /* SIGINT/SIGTERM end the loop; everything is released before exit */
    ret = serve(session, &o, &store);
    drain(&store);
    kv_store_close(&store);
    hmaf_session_destroy(session);
    return ret < 0;
}
