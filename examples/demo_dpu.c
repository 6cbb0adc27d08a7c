/*
 * The dpu half of hmaf-demo: GET every key of the host's hash table by
 * following the host's own pointers with HMAF reads, check every value,
 * then rewrite every 100th value in place.
 *
 *   HMAF_DEMO_TOKEN=secret demo_dpu unix:/tmp/demo.sock
 *
 * GETs go in batches: one vectored read fetches the bucket heads of the
 * whole batch, hmaf_session_chase() walks all its chains together, one read
 * per step, and one last read fetches the values. A batch costs a handful
 * of reads, not a few per key.
 */
#include <stddef.h>
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
    GET_MISSING, /* no node has matched (yet) */
    GET_KEY,     /* node matched on hash and length: check its full key */
    GET_FOUND,   /* node is ours */
};

/* One GET in flight. */
struct get {
    enum get_state state;
    uint32_t idx;
    uint32_t steps; /* nodes visited, over every chase of this GET */
    uint64_t hash;
    struct demo_node node; /* the last node visited */
    size_t key_len;
    char key[DEMO_KEY_MAX];
    char remote_key[DEMO_KEY_MAX]; /* a long key, read from the host */
    char value[DEMO_VALUE_MAX];
};

/* Where an updated value goes, learnt while GETting it. */
struct update {
    uint64_t addr;
    uint32_t len;
    char value[DEMO_VALUE_MAX]; /* the new value, until its write completes */
};

struct dpu {
    hmaf_session_t *session;
    struct demo_table table;
    struct update *updates; /* indexed by idx / DEMO_UPDATE_EVERY */
    uint64_t wrong;         /* GETs that found no value or the wrong one */
    uint64_t updated;       /* values rewritten */
    uint64_t readvs;        /* transfer calls made by the GETs */
    uint64_t writevs;       /* and by the updates */
    struct get gets[BATCH];
    hmaf_chain_t chains[BATCH];
    hmaf_seg_t segs[2 * BATCH]; /* a long key's GET reads key and value */
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Transfer calls so far: merged posts and chase steps count too. */
static uint64_t session_ops(hmaf_session_t *session)
{
    hmaf_session_stats_t st;

    return hmaf_session_stats(session, &st) == 0 ? st.ops : 0;
}

/* The bucket heads land where the chase starts from. */
static int read_heads(struct dpu *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t slot = d->gets[i].hash & (d->table.nbuckets - 1);
        d->segs[i] = (hmaf_seg_t){.local = &d->chains[i].start,
                                  .remote_addr = d->table.buckets +
                                                 slot * sizeof(uint64_t),
                                  .len = sizeof(uint64_t)};
    }
    return hmaf_session_readv(d->session, d->segs, n);
}

/* Each node of chain i, for GET i: keep a copy (the chase's is ours only
 * during the call) and end the chain on a match. Short keys are compared
 * in the node; long ones match on hash and length until their key is read. */
static int visit(void *arg, size_t i, uint64_t node_addr, const void *node)
{
    struct get *g = &((struct get *)arg)[i];

    (void)node_addr;
    memcpy(&g->node, node, sizeof(g->node));
    g->steps++;
    if (g->node.hash != g->hash || g->node.key_len != g->key_len) {
        return 0;
    }
    if (g->key_len > DEMO_KEY_INLINE) {
        g->state = GET_KEY;
    } else if (memcmp(g->node.key_inline, g->key, g->key_len) == 0) {
        g->state = GET_FOUND;
    }
    return g->state != GET_MISSING;
}

static int chase(struct dpu *d, size_t n)
{
    const hmaf_chase_params_t params = {
        .node_len = sizeof(struct demo_node),
        .next_offset = offsetof(struct demo_node, next),
        .max_steps = CHAIN_LIMIT, /* a cycle must not keep us here */
        .visit = visit,
        .arg = d->gets,
    };

    return hmaf_session_chase(d->session, &params, d->chains, n);
}

/* One vectored read of the values the chase found; a long key's candidate
 * has its key read alongside, and its value read on the bet that the key
 * matches. Only chains that moved in the last chase have anything new. A
 * length over our buffer is the host's word we do not act on. */
static int read_values(struct dpu *d, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        struct get *g = &d->gets[i];
        if (g->state == GET_MISSING || d->chains[i].steps == 0) {
            continue;
        }
        if (g->node.value_len == 0 || g->node.value_len > DEMO_VALUE_MAX) {
            g->state = GET_MISSING;
            continue;
        }
        d->segs[k++] = (hmaf_seg_t){.local = g->value,
                                    .remote_addr = g->node.value,
                                    .len = g->node.value_len};
        if (g->state == GET_KEY) {
            d->segs[k++] = (hmaf_seg_t){.local = g->remote_key,
                                        .remote_addr = g->node.key,
                                        .len = g->key_len};
        }
    }
    return k == 0 ? 0 : hmaf_session_readv(d->session, d->segs, k);
}

/* Settle the long keys. One that shared only hash and length with ours
 * (rare) sends its chain on from the node after; returns whether any did,
 * all other chains now being empty. */
static int check_keys(struct dpu *d, size_t n)
{
    int again = 0;

    for (size_t i = 0; i < n; i++) {
        struct get *g = &d->gets[i];
        d->chains[i].start = 0;
        if (g->state != GET_KEY) {
            continue;
        }
        if (memcmp(g->remote_key, g->key, g->key_len) == 0) {
            g->state = GET_FOUND;
        } else {
            g->state = GET_MISSING;
            if (g->steps < CHAIN_LIMIT) {
                d->chains[i].start = g->node.next;
                again |= g->node.next != 0;
            }
        }
    }
    return again;
}

static void check_values(struct dpu *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct get *g = &d->gets[i];
        char want[DEMO_VALUE_MAX];
        size_t len = demo_value(want, g->idx);
        if (g->state != GET_FOUND || g->node.value_len != len ||
            memcmp(g->value, want, len) != 0) {
            if (d->wrong++ < 5) {
                fprintf(stderr, "demo_dpu: GET key %u: wrong or missing\n",
                        g->idx);
            }
        } else if (demo_is_updated(g->idx)) {
            struct update *up = &d->updates[g->idx / DEMO_UPDATE_EVERY];
            up->addr = g->node.value;
            up->len = g->node.value_len;
        }
    }
}

static int get_batch(struct dpu *d, size_t n)
{
    int ret = read_heads(d, n);

    do {
        if (ret == 0) {
            ret = chase(d, n);
        }
        if (ret == 0) {
            ret = read_values(d, n);
        }
    } while (ret == 0 && check_keys(d, n));
    if (ret == 0) {
        check_values(d, n);
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
    g->state = GET_MISSING;
    g->idx = idx;
    g->steps = 0;
    g->key_len = demo_key(g->key, idx);
    g->hash = demo_hash(g->key, g->key_len);
}

/* Every key once, in a strided order (the stride is coprime with the
 * count), so neighbouring GETs land far apart in the host's memory. */
static int get_all(struct dpu *d)
{
    uint64_t count = d->table.count;
    uint64_t stride = (uint64_t)((double)count * 0.618034) | 1;
    uint64_t ops = session_ops(d->session);
    int ret = 0;

    while (gcd(stride, count) != 1) {
        stride++;
    }
    for (uint64_t k = 0; k < count && ret == 0; k += BATCH) {
        size_t n = count - k < BATCH ? (size_t)(count - k) : BATCH;
        for (size_t i = 0; i < n; i++) {
            start_get(&d->gets[i], (uint32_t)((k + i) * stride % count));
        }
        ret = get_batch(d, n);
    }
    d->readvs = session_ops(d->session) - ops;
    return ret;
}

/* Rewrite every 100th value in place: post every write, then one flush
 * completes them, merged into as few vectored writes as the session's
 * window of posted segments allows. */
static int update_all(struct dpu *d)
{
    uint64_t nupdates =
        (d->table.count + DEMO_UPDATE_EVERY - 1) / DEMO_UPDATE_EVERY;
    uint64_t ops = session_ops(d->session);
    int ret = 0;

    for (uint64_t u = 0; u < nupdates && ret == 0; u++) {
        struct update *up = &d->updates[u];
        demo_updated_value(up->value, (uint32_t)(u * DEMO_UPDATE_EVERY),
                           up->len);
        ret = hmaf_session_post_write(d->session, up->addr, up->value, up->len,
                                      NULL);
    }
    if (ret == 0) {
        ret = hmaf_session_flush(d->session);
    }
    d->updated = ret == 0 ? nupdates : 0;
    d->writevs = session_ops(d->session) - ops;
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
