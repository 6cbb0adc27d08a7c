/*
 * The dpu half of hmaf-demo: GET every key of the host's hash table twice,
 * checking every value, and rewrite every 100th value in place.
 *
 *   HMAF_DEMO_TOKEN=secret demo_dpu unix:/tmp/demo.sock
 *   HMAF_DEMO_TOKEN=secret demo_dpu --listen ADDRESS
 *
 * The dpu side connects to a listening host, except with --listen or a
 * "comch:NAME@PCI/REP" address (DOCA Comm Channel, whose server is the dpu
 * side): there it listens and the host dials (demo_host --dial).
 *
 * Pass 1 follows the host's pointers with explicit HMAF reads, in batches:
 * one vectored read fetches the bucket heads of the whole batch,
 * hmaf_session_chase() walks all its chains together, one read per step,
 * and one last read fetches the values. A batch costs a handful of reads,
 * not a few per key.
 *
 * Pass 2 mirrors the buckets and the arena with mapping mode and GETs with
 * plain pointer code, twice. On the cold mirror each page's first touch is
 * a fault: a switch to the mapping's handler thread and an engine read.
 * On the warm one every GET runs at local memory speed. Then it makes the
 * updates, as plain stores published by one hmaf_map_sync(). Where mapping
 * mode is unavailable (no userfaultfd, as under valgrind), pass 1 makes
 * the updates with posted writes instead.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hmaf/hmaf.h>

#include "demo_table.h"
#include "help.h"

#define BATCH       256   /* GETs advancing together */
#define CHAIN_LIMIT 1000  /* longer chains mean a corrupt table: stop */
#define CONNECT_MS  60000 /* the host builds its table before it comes */

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

/* Pass 2's view of the table: the host's memory, mirrored here. */
struct mirror {
    hmaf_map_t *buckets_map; /* read-only */
    hmaf_map_t *arena_map;
    const uint64_t *buckets; /* the host's bucket array, here */
    uint64_t mask;
    uint64_t arena, arena_len; /* the host's addresses */
    uintptr_t delta; /* mirror minus host address: 0 unless relocated */
    int relocated;   /* either mapping is not at the host's addresses */
    uint64_t wrong;  /* mapped GETs that found no value or the wrong one */
    uint64_t updated;
};

struct dpu {
    hmaf_session_t *session;
    struct mirror mirror;
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
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;

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

/* Both passes GET every key once, in a strided order (the stride is
 * coprime with the count), so neighbouring GETs land far apart in the
 * host's memory. */
static uint64_t stride_for(uint64_t count)
{
    uint64_t stride = (uint64_t)((double)count * 0.618034) | 1;

    while (gcd(stride, count) != 1) {
        stride++;
    }
    return stride;
}

static int get_all(struct dpu *d)
{
    uint64_t count = d->table.count;
    uint64_t stride = stride_for(count);
    uint64_t ops = session_ops(d->session);
    int ret = 0;

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

/* Mirror [addr, addr + len) at the host's own address, or, when that is
 * taken here, wherever there is room. */
static int map_range(hmaf_session_t *session, uint64_t addr, uint64_t len,
                     unsigned flags, hmaf_map_t **map_out, void **local_out)
{
    hmaf_map_params_t params;
    int ret;

    hmaf_map_params_init(&params);
    params.flags = flags | HMAF_MAP_ANYWHERE;
    ret = hmaf_map_create(session, addr, (size_t)len, &params, map_out);
    if (ret == 0) {
        *local_out = hmaf_map_local(*map_out, addr);
    }
    return ret;
}

/* The bucket array holds arena addresses, and so do the nodes: only the
 * arena's placement matters to pointers read from the table. */
static int mirror_open(struct dpu *d, struct mirror *m)
{
    void *buckets = NULL, *arena = NULL;
    int ret = map_range(d->session, d->table.buckets,
                        d->table.nbuckets * sizeof(uint64_t),
                        HMAF_MAP_READ_ONLY, &m->buckets_map, &buckets);

    if (ret == 0) {
        ret = map_range(d->session, d->table.arena, d->table.arena_len, 0,
                        &m->arena_map, &arena);
    }
    if (ret < 0) {
        return ret;
    }
    m->buckets = buckets;
    m->mask = d->table.nbuckets - 1;
    m->arena = d->table.arena;
    m->arena_len = d->table.arena_len;
    m->delta = (uintptr_t)arena - (uintptr_t)d->table.arena;
    m->relocated = m->delta != 0 || (uintptr_t)buckets != d->table.buckets;
    return 0;
}

/* A host pointer into the arena, as a pointer here: the very same bits in
 * a mirror at the host's addresses, moved by delta in a relocated one.
 * One that leaves the arena (or is 0) is NULL: the host's word must not
 * send us into our own memory. */
static void *mirror_at(const struct mirror *m, uint64_t addr, size_t len)
{
    uint64_t off = addr - m->arena;

    if (off >= m->arena_len || len > m->arena_len - off) {
        return NULL;
    }
    return (void *)(uintptr_t)(addr + m->delta);
}

/* A GET is a chain walk in plain C; the value comes back writable. */
static char *mapped_get(const struct mirror *m, uint32_t idx,
                        uint32_t *value_len_out)
{
    char key[DEMO_KEY_MAX];
    size_t len = demo_key(key, idx);
    uint64_t hash = demo_hash(key, len);
    const struct demo_node *n;
    int steps = 0;

    for (n = mirror_at(m, m->buckets[hash & m->mask], sizeof(*n));
         n != NULL && steps < CHAIN_LIMIT;
         n = mirror_at(m, n->next, sizeof(*n)), steps++) {
        const char *k =
            len <= DEMO_KEY_INLINE ? n->key_inline : mirror_at(m, n->key, len);
        if (n->hash == hash && n->key_len == len && k != NULL &&
            memcmp(k, key, len) == 0) {
            *value_len_out = n->value_len;
            return mirror_at(m, n->value, n->value_len);
        }
    }
    return NULL;
}

/* Every GET of pass 1 again, in the same order; returns the GETs that
 * found no value or the wrong one. */
static uint64_t mapped_get_all(const struct dpu *d, const struct mirror *m,
                               double *secs_out)
{
    uint64_t count = d->table.count, stride = stride_for(count), wrong = 0;
    double t0 = now_s();

    for (uint64_t k = 0; k < count; k++) {
        uint32_t idx = (uint32_t)(k * stride % count), len = 0;
        char want[DEMO_VALUE_MAX];
        size_t want_len = demo_value(want, idx);
        const char *value = mapped_get(m, idx, &len);
        if ((value == NULL || len != want_len ||
             memcmp(value, want, want_len) != 0) &&
            wrong++ < 5) {
            fprintf(stderr, "demo_dpu: mapped GET key %u: wrong\n", idx);
        }
    }
    *secs_out = now_s() - t0;
    return wrong;
}

/* Each value due for an update is rewritten where it lies, with ordinary
 * stores; hmaf_map_sync() then sends exactly the changed bytes. */
static double mapped_update_all(const struct dpu *d, struct mirror *m)
{
    double t0 = now_s();

    for (uint64_t idx = 0; idx < d->table.count; idx += DEMO_UPDATE_EVERY) {
        uint32_t len = 0;
        char *value = mapped_get(m, (uint32_t)idx, &len);
        if (value != NULL) {
            demo_updated_value(value, (uint32_t)idx, len);
            m->updated++;
        }
    }
    return now_s() - t0;
}

static void print_rate(const struct dpu *d, double s, double explicit_s,
                       uint64_t wrong, const char *how)
{
    printf("dpu:  mapped GETs: %.0f/s, %.1fx the explicit-read path "
           "(%.2f s, %llu wrong, %s)\n",
           (double)d->table.count / s, explicit_s / s, s,
           (unsigned long long)wrong, how);
}

static void print_map(const struct mirror *m, double update_s, double sync_s)
{
    hmaf_map_stats_t b = HMAF_MAP_STATS_INIT, a = HMAF_MAP_STATS_INIT;

    hmaf_map_stats(m->buckets_map, &b);
    hmaf_map_stats(m->arena_map, &a);
    printf("dpu:  map %s: %llu faults, %llu pages fetched (%llu read "
           "ahead), %llu first writes\n",
           m->relocated ? "relocated (host's addresses taken here)"
                        : "at the host's own addresses",
           (unsigned long long)(b.faults + a.faults),
           (unsigned long long)(b.pages_fetched + a.pages_fetched),
           (unsigned long long)(b.readahead_pages + a.readahead_pages),
           (unsigned long long)a.write_faults);
    printf("dpu:  %llu values updated with plain stores in %.2f s; one "
           "hmaf_map_sync wrote back %llu bytes in %.2f s\n",
           (unsigned long long)m->updated, update_s,
           (unsigned long long)a.bytes_written_back, sync_s);
}

/* Pass 2: the GETs on a cold mirror (every page fetched on first touch),
 * again on the warm one, then the updates. They reach the host only if
 * every GET was right. */
static int mapped_pass(struct dpu *d, double explicit_s)
{
    struct mirror *m = &d->mirror;
    double secs, update_s, sync_s;
    uint64_t wrong;
    int ret = mirror_open(d, m);

    if (ret < 0) {
        return ret;
    }
    m->wrong = mapped_get_all(d, m, &secs);
    print_rate(d, secs, explicit_s, m->wrong, "cold mirror");
    wrong = mapped_get_all(d, m, &secs);
    print_rate(d, secs, explicit_s, wrong, "warm mirror");
    m->wrong += wrong;
    if (m->wrong > 0) {
        fprintf(stderr, "demo_dpu: %llu mapped GETs wrong: not updating\n",
                (unsigned long long)m->wrong);
        return 0;
    }
    update_s = mapped_update_all(d, m);
    sync_s = now_s();
    ret = hmaf_map_sync(m->arena_map);
    sync_s = now_s() - sync_s;
    if (ret == 0) {
        print_map(m, update_s, sync_s);
    }
    return ret;
}

static int open_table(struct dpu *d, const char *address, int listening,
                      const char *token)
{
    hmaf_session_params_t params;
    uint64_t addr;
    size_t len;
    int ret;

    hmaf_session_params_init(&params);
    params.address = address;
    params.listen = listening;
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
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    uint64_t cache_lookups;
    int ret = hmaf_session_stats(d->session, &st);

    if (ret < 0) {
        return ret;
    }
    cache_lookups = st.cache_hits + st.cache_misses;
    printf("dpu:  explicit-read GETs: %.0f/s (%.2f s, %llu wrong, "
           "%llu vectored reads)\n",
           get_s > 0 ? (double)d->table.count / get_s : 0.0, get_s,
           (unsigned long long)d->wrong, (unsigned long long)d->readvs);
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

/* Mapping mode unavailable: pass 1's findings make the updates. */
static int explicit_updates(struct dpu *d)
{
    int ret;

    printf("dpu:  mapping mode unavailable here (no userfaultfd): "
           "explicit path only\n");
    ret = update_all(d);
    if (ret == 0) {
        printf("dpu:  %llu values updated in place with %llu vectored "
               "writes\n",
               (unsigned long long)d->updated, (unsigned long long)d->writevs);
    }
    return ret;
}

static int run(struct dpu *d, const char *address, int listening,
               const char *token)
{
    double t0;
    int ret = open_table(d, address, listening, token);

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
    if (ret == 0) {
        ret = print_stats(d, t0);
    }
    if (ret == 0 && d->wrong > 0) {
        fprintf(stderr, "demo_dpu: %llu GETs wrong: not updating\n",
                (unsigned long long)d->wrong);
        return ret;
    }
    if (ret == 0) {
        ret = mapped_pass(d, t0);
    }
    return ret == HMAF_ENOTSUP ? explicit_updates(d) : ret;
}

static const char usage_text[] =
    "usage: HMAF_DEMO_TOKEN=T demo_dpu [--listen] ADDRESS\n"
    "The demo's dpu side (hmaf-demo runs it): follows the host's hash table\n"
    "through HMAF and changes it while the host reads. --listen: wait at\n"
    "ADDRESS for the host to dial (always so for comch:).\n";

int main(int argc, char **argv)
{
    const char *token = getenv("HMAF_DEMO_TOKEN");
    struct dpu d = {0};
    const char *address;
    int listening = 0;
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0); /* interleave sanely with demo_host */
    if (asked_help(argc, argv)) {
        return print_usage(usage_text, 1);
    }
    address = demo_parse_args(argc, argv, "--listen", &listening);
    if (address == NULL || token == NULL) {
        return print_usage(usage_text, 0);
    }
    ret = run(&d, address, listening, token);
    if (ret < 0) {
        fprintf(stderr, "demo_dpu: %s: %s\n", hmaf_err_name(ret),
                hmaf_strerror(ret));
    }
    hmaf_map_destroy(d.mirror.buckets_map); /* mappings before their session */
    hmaf_map_destroy(d.mirror.arena_map);
    hmaf_session_destroy(d.session);
    free(d.updates);
    return ret == 0 && d.wrong == 0 && d.mirror.wrong == 0 ? 0 : 1;
}
