/*
 * The dpu half of hmaf-demo: GET every key of the host's hash table by
 * following the host's own pointers with HMAF reads, check every value,
 * then rewrite every 100th value in place.
 *
 *   HMAF_DEMO_TOKEN=secret demo_dpu unix:/tmp/demo.sock
 *
 * GETs go in batches that advance in lock step: one vectored read fetches
 * the bucket heads of the whole batch, the next the first node of every
 * chain, and so on. A batch costs a handful of reads, not a few per key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hmaf/hmaf.h>

#include "demo_table.h"

#define BATCH       256   /* GETs advancing together */
#define CHAIN_LIMIT 1000  /* longer chains mean a corrupt table: stop */
#define CONNECT_MS  60000 /* the host builds its table before it listens */

enum get_state {
    GET_WALKING, /* `at` is the next node to read, 0 if the chain ended */
    GET_KEY,     /* node matched on hash and length: compare the full key */
    GET_FOUND,   /* node is ours: read its value */
    GET_MISSING, /* chain ended without the key */
};

/* One GET in flight. */
struct get {
    enum get_state state;
    uint32_t idx;
    uint32_t steps;
    uint64_t hash;
    uint64_t at;
    struct demo_node node;
    size_t key_len;
    char key[DEMO_KEY_MAX];
    char remote[DEMO_KEY_MAX]; /* a key read from the host, or a value */
};

/* Where an updated value goes, learnt while GETting it. */
struct update {
    uint64_t addr;
    uint32_t len;
};

struct dpu {
    hmaf_session_t *session;
    struct demo_table table;
    struct update *updates; /* indexed by idx / DEMO_UPDATE_EVERY */
    uint64_t wrong;         /* GETs that found no value or the wrong one */
    uint64_t updated;       /* values rewritten */
    uint64_t readvs;
    uint64_t writevs;
    struct get gets[BATCH];
    char values[BATCH][DEMO_VALUE_MAX]; /* updated values being written */
    hmaf_seg_t segs[BATCH];
};

/* Fills *seg if this GET needs a read now; returns whether it does. The
 * read lands in *g. */
typedef int (*seg_fn)(const struct dpu *d, struct get *g, hmaf_seg_t *seg);

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One vectored read covering every GET that needs one. */
static int read_step(struct dpu *d, struct get *gets, size_t n, seg_fn fn)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        k += (size_t)fn(d, &gets[i], &d->segs[k]);
    }
    if (k == 0) {
        return 0;
    }
    d->readvs++;
    return hmaf_session_readv(d->session, d->segs, k);
}

static int bucket_seg(const struct dpu *d, struct get *g, hmaf_seg_t *seg)
{
    uint64_t slot = g->hash & (d->table.nbuckets - 1);

    *seg = (hmaf_seg_t){.local = &g->at,
                        .remote_addr = d->table.buckets + slot * sizeof(g->at),
                        .len = sizeof(g->at)};
    return 1;
}

/* A chain step reads the next node, or the key of a node that matched on
 * hash and length: both kinds share one vectored read. */
static int step_seg(const struct dpu *d, struct get *g, hmaf_seg_t *seg)
{
    (void)d;
    if (g->state == GET_WALKING) {
        *seg = (hmaf_seg_t){
            .local = &g->node, .remote_addr = g->at, .len = sizeof(g->node)};
        return 1;
    }
    if (g->state == GET_KEY) {
        *seg = (hmaf_seg_t){
            .local = g->remote, .remote_addr = g->node.key, .len = g->key_len};
        return 1;
    }
    return 0;
}

static int value_seg(const struct dpu *d, struct get *g, hmaf_seg_t *seg)
{
    (void)d;
    if (g->state != GET_FOUND) {
        return 0;
    }
    *seg = (hmaf_seg_t){.local = g->remote,
                        .remote_addr = g->node.value,
                        .len = g->node.value_len};
    return 1;
}

/* The bucket heads just read start the chains; an empty one ends a GET. */
static void enter_chains(struct get *gets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        gets[i].state = gets[i].at != 0 ? GET_WALKING : GET_MISSING;
    }
}

/* Move on along the chain; a cycle in the host's pointers must not
 * keep us here forever. */
static void next_node(struct get *g)
{
    g->at = g->node.next;
    if (g->at == 0 || ++g->steps >= CHAIN_LIMIT) {
        g->state = GET_MISSING;
    }
}

/* Short keys are compared in the node; long ones need their bytes,
 * read by the next step. */
static void match_node(struct get *g)
{
    if (g->node.hash != g->hash || g->node.key_len != g->key_len) {
        next_node(g);
    } else if (g->key_len > DEMO_KEY_INLINE) {
        g->state = GET_KEY;
    } else if (memcmp(g->node.key_inline, g->key, g->key_len) == 0) {
        g->state = GET_FOUND;
    } else {
        next_node(g);
    }
}

/* Judge what the step just read, by the state each GET read it in. */
static void match_step(struct get *gets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct get *g = &gets[i];
        if (g->state == GET_WALKING) {
            match_node(g);
        } else if (g->state == GET_KEY) {
            if (memcmp(g->remote, g->key, g->key_len) == 0) {
                g->state = GET_FOUND;
            } else {
                next_node(g);
            }
        }
    }
}

static int any_stepping(const struct get *gets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (gets[i].state == GET_WALKING || gets[i].state == GET_KEY) {
            return 1;
        }
    }
    return 0;
}

/* A value longer than we expect would overrun g->remote: the host's word
 * is checked before we act on it. */
static void check_value_lengths(struct get *gets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (gets[i].state == GET_FOUND &&
            (gets[i].node.value_len == 0 ||
             gets[i].node.value_len > DEMO_VALUE_MAX)) {
            gets[i].state = GET_MISSING;
        }
    }
}

static void check_values(struct dpu *d, const struct get *gets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct get *g = &gets[i];
        char want[DEMO_VALUE_MAX];
        size_t len = demo_value(want, g->idx);
        if (g->state != GET_FOUND || g->node.value_len != len ||
            memcmp(g->remote, want, len) != 0) {
            if (d->wrong++ < 5) {
                fprintf(stderr, "demo_dpu: GET key %u: wrong or missing\n",
                        g->idx);
            }
        } else if (demo_is_updated(g->idx)) {
            d->updates[g->idx / DEMO_UPDATE_EVERY] =
                (struct update){g->node.value, g->node.value_len};
        }
    }
}

static int get_batch(struct dpu *d, struct get *gets, size_t n)
{
    int ret = read_step(d, gets, n, bucket_seg);

    if (ret == 0) {
        enter_chains(gets, n);
    }
    while (ret == 0 && any_stepping(gets, n)) {
        ret = read_step(d, gets, n, step_seg);
        if (ret == 0) {
            match_step(gets, n);
        }
    }
    if (ret == 0) {
        check_value_lengths(gets, n);
        ret = read_step(d, gets, n, value_seg);
    }
    if (ret == 0) {
        check_values(d, gets, n);
    }
    return ret;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static void start_get(struct get *g, uint32_t idx)
{
    g->idx = idx;
    g->steps = 0;
    g->key_len = demo_key(g->key, idx);
    g->hash = demo_hash(g->key, g->key_len);
}

/* Every key once, in a strided order (the stride is coprime with the
 * count), so neighbouring GETs land far apart in the host's memory. */
static int get_all(struct dpu *d)
{
    struct get *gets = d->gets;
    uint64_t count = d->table.count;
    uint64_t stride = (uint64_t)((double)count * 0.618034) | 1;
    int ret = 0;

    while (gcd(stride, count) != 1) {
        stride++;
    }
    for (uint64_t k = 0; k < count && ret == 0; k += BATCH) {
        size_t n = count - k < BATCH ? (size_t)(count - k) : BATCH;
        for (size_t i = 0; i < n; i++) {
            start_get(&gets[i], (uint32_t)((k + i) * stride % count));
        }
        ret = get_batch(d, gets, n);
    }
    return ret;
}

/* Rewrite every 100th value in place, BATCH values per vectored write. */
static int update_all(struct dpu *d)
{
    uint64_t nupdates =
        (d->table.count + DEMO_UPDATE_EVERY - 1) / DEMO_UPDATE_EVERY;
    int ret = 0;

    for (uint64_t u = 0; u < nupdates && ret == 0; u += BATCH) {
        size_t n = nupdates - u < BATCH ? (size_t)(nupdates - u) : BATCH;
        for (size_t i = 0; i < n; i++) {
            const struct update *up = &d->updates[u + i];
            demo_updated_value(
                d->values[i], (uint32_t)((u + i) * DEMO_UPDATE_EVERY), up->len);
            d->segs[i] = (hmaf_seg_t){
                .local = d->values[i], .remote_addr = up->addr, .len = up->len};
        }
        ret = hmaf_session_writev(d->session, d->segs, n);
        d->updated += ret == 0 ? n : 0;
        d->writevs++;
    }
    return ret;
}

static int open_table(struct dpu *d, const char *address, const char *token)
{
    hmaf_session_params_t params;
    uint64_t addr;
    size_t len;
    int ret;

    hmaf_session_params_init(&params);
    params.address = address;
    params.token = token;
    params.connect_timeout_ms = CONNECT_MS;
    ret = hmaf_session_create(&params, &d->session);
    if (ret == 0) {
        ret = hmaf_session_lookup(d->session, "table", &addr, &len);
    }
    if (ret == 0 && len != sizeof(d->table)) {
        ret = HMAF_EPROTO;
    }
    if (ret == 0) {
        ret = hmaf_session_read(d->session, &d->table, addr, len);
    }
    if (ret == 0 && (d->table.magic != DEMO_MAGIC || d->table.nbuckets == 0 ||
                     (d->table.nbuckets & (d->table.nbuckets - 1)) != 0 ||
                     d->table.count == 0 || d->table.count > UINT32_MAX)) {
        ret = HMAF_EPROTO; /* not a table we know how to walk */
    }
    return ret;
}

static int print_stats(struct dpu *d, double get_s)
{
    hmaf_session_stats_t st;
    uint64_t cache_lookups;
    int ret = hmaf_session_stats(d->session, &st);

    if (ret < 0) {
        return ret;
    }
    cache_lookups = st.cache_hits + st.cache_misses;
    printf("dpu:  %llu GETs in %.2f s: %.0f lookups/s, %llu wrong, "
           "%llu vectored reads\n",
           (unsigned long long)d->table.count, get_s,
           get_s > 0 ? (double)d->table.count / get_s : 0.0,
           (unsigned long long)d->wrong, (unsigned long long)d->readvs);
    printf("dpu:  %llu values updated in place with %llu vectored writes\n",
           (unsigned long long)d->updated, (unsigned long long)d->writevs);
    printf("dpu:  moved %.1f MiB; cache hit rate %.5f%%, %llu "
           "registrations, %llu mailbox round trips\n",
           (double)(st.bytes_read + st.bytes_written) / (1 << 20),
           cache_lookups == 0
               ? 0.0
               : 100.0 * (double)st.cache_hits / (double)cache_lookups,
           (unsigned long long)st.registrations,
           (unsigned long long)st.mailbox_round_trips);
    return 0;
}

static int run(struct dpu *d, const char *address, const char *token)
{
    double t0;
    int ret = open_table(d, address, token);

    if (ret < 0) {
        return ret;
    }
    printf("dpu:  connected (engine %s); table has %llu keys\n",
           hmaf_session_engine(d->session), (unsigned long long)d->table.count);
    d->updates =
        calloc(d->table.count / DEMO_UPDATE_EVERY + 1, sizeof(*d->updates));
    if (d->updates == NULL) {
        return HMAF_ENOMEM;
    }
    t0 = now_s();
    ret = get_all(d);
    t0 = now_s() - t0;
    if (ret == 0 && d->wrong > 0) {
        fprintf(stderr, "demo_dpu: %llu GETs wrong: not updating\n",
                (unsigned long long)d->wrong);
    } else if (ret == 0) {
        ret = update_all(d);
    }
    return ret == 0 ? print_stats(d, t0) : ret;
}

int main(int argc, char **argv)
{
    const char *token = getenv("HMAF_DEMO_TOKEN");
    struct dpu d = {0};
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0); /* interleave sanely with demo_host */
    if (argc != 2 || token == NULL) {
        fprintf(stderr, "usage: HMAF_DEMO_TOKEN=T demo_dpu ADDRESS\n");
        return 2;
    }
    ret = run(&d, argv[1], token);
    if (ret < 0) {
        fprintf(stderr, "demo_dpu: %s: %s\n", hmaf_err_name(ret),
                hmaf_strerror(ret));
    }
    hmaf_session_destroy(d.session);
    free(d.updates);
    return ret == 0 && d.wrong == 0 ? 0 : 1;
}
