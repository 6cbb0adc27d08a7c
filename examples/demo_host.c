/*
 * The host half of hmaf-demo: build a pointer-linked hash table in our own
 * memory, let one dpu-side session read and update it, then check that
 * exactly the values the dpu side was meant to change have changed.
 *
 *   HMAF_DEMO_TOKEN=secret demo_host unix:/tmp/demo.sock
 *   HMAF_DEMO_TOKEN=secret demo_host --dial ADDRESS
 *
 * The host listens and the dpu side connects, except with --dial or a
 * "comch:NAME@PCI" address: DOCA Comm Channel's dpu side is the server, so
 * there the dpu side listens (demo_dpu comch:NAME@PCI/REP) and the host
 * dials, again and again for a minute if the dpu side is not up yet.
 * HMAF_DEMO_KEYS overrides the number of keys (default 1,000,000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/hmaf.h>

#include "demo_table.h"
#include "help.h"

#define WAIT_LIMIT_S  120       /* give up on the dpu side after this long */
#define DIAL_S        60        /* a listening dpu side may start after us */
#define DIAL_TRY_MS   2000      /* one dial, within DIAL_S */
#define DIAL_PAUSE_NS 100000000 /* between dials (a refusal comes at once) */
#define POLL_NS       10000000  /* how often we look whether the dpu is done */

struct host {
    struct demo_table table; /* the root, published as "table" */
    void *base;              /* one mapping: the buckets, then the arena */
    size_t base_len;
    uint64_t *buckets;
    char *arena;
    size_t arena_used;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t addr_of(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

static void *ptr_to(uint64_t addr)
{
    return (void *)(uintptr_t)addr;
}

/* Bump allocation: the dpu side only sees one arena, whatever we put in. */
static void *arena_alloc(struct host *h, size_t len)
{
    void *p = h->arena + h->arena_used;

    h->arena_used += (len + 7) & ~(size_t)7;
    return p;
}

static uint64_t arena_copy(struct host *h, const char *s, size_t len)
{
    char *p = arena_alloc(h, len);

    memcpy(p, s, len);
    return addr_of(p);
}

static void insert(struct host *h, uint32_t idx)
{
    char key[DEMO_KEY_MAX], value[DEMO_VALUE_MAX];
    size_t key_len = demo_key(key, idx);
    size_t value_len = demo_value(value, idx);
    struct demo_node *node = arena_alloc(h, sizeof(*node));
    uint64_t *head;

    node->hash = demo_hash(key, key_len);
    node->key = arena_copy(h, key, key_len);
    node->value = arena_copy(h, value, value_len);
    node->key_len = (uint32_t)key_len;
    node->value_len = (uint32_t)value_len;
    if (key_len <= DEMO_KEY_INLINE) {
        memcpy(node->key_inline, key, key_len);
    }
    head = &h->buckets[node->hash & (h->table.nbuckets - 1)];
    node->next = *head;
    *head = addr_of(node);
}

static size_t page_round(size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    return (len + page - 1) & ~(page - 1);
}

/* The buckets and the arena, zero-filled, at DEMO_MAP_HINT when that is
 * free here (else wherever the kernel likes), on page boundaries. */
static int map_memory(struct host *h, uint32_t count)
{
    size_t buckets_len = DEMO_NBUCKETS * sizeof(*h->buckets);

    /* The arena's size is an upper bound; pages never touched cost
     * nothing. */
    h->base_len = buckets_len +
                  page_round((size_t)count * (sizeof(struct demo_node) +
                                              DEMO_KEY_MAX + DEMO_VALUE_MAX));
    h->base = mmap((void *)(uintptr_t)DEMO_MAP_HINT, h->base_len,
                   PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (h->base == MAP_FAILED) {
        h->base = mmap(NULL, h->base_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (h->base == MAP_FAILED) {
        h->base = NULL;
        return HMAF_ENOMEM;
    }
    h->buckets = h->base;
    h->arena = (char *)h->base + buckets_len;
    return 0;
}

static int build(struct host *h, uint32_t count)
{
    int ret = map_memory(h, count);

    if (ret < 0) {
        return ret;
    }
    h->table = (struct demo_table){
        .magic = DEMO_MAGIC,
        .nbuckets = DEMO_NBUCKETS,
        .buckets = addr_of(h->buckets),
        .count = count,
        .arena = addr_of(h->arena),
    };
    for (uint32_t i = 0; i < count; i++) {
        insert(h, i);
    }
    h->table.arena_len = page_round(h->arena_used);
    return 0;
}

static const struct demo_node *find(const struct host *h, const char *key,
                                    size_t len)
{
    uint64_t hash = demo_hash(key, len);
    uint64_t at = h->buckets[hash & (h->table.nbuckets - 1)];

    while (at != 0) {
        const struct demo_node *n = ptr_to(at);
        if (n->hash == hash && n->key_len == len &&
            memcmp(ptr_to(n->key), key, len) == 0) {
            return n;
        }
        at = n->next;
    }
    return NULL;
}

struct tally {
    uint32_t updated;   /* rewritten by the dpu side, as they should be */
    uint32_t unchanged; /* left alone, as they should be */
    uint32_t wrong;
};

/* Look every key up through our own pointers: this also checks that the
 * dpu side's writes left the table's structure alone. */
static void verify(const struct host *h, struct tally *t)
{
    char key[DEMO_KEY_MAX], want[DEMO_VALUE_MAX];

    for (uint32_t i = 0; i < h->table.count; i++) {
        size_t key_len = demo_key(key, i);
        size_t len = demo_value(want, i);
        const struct demo_node *n = find(h, key, key_len);
        if (demo_is_updated(i)) {
            demo_updated_value(want, i, len);
        }
        if (n == NULL || n->value_len != len ||
            memcmp(ptr_to(n->value), want, len) != 0) {
            if (t->wrong++ < 5) {
                fprintf(stderr, "demo_host: wrong value for key %u\n", i);
            }
        } else if (demo_is_updated(i)) {
            t->updated++;
        } else {
            t->unchanged++;
        }
    }
}

/* The buckets are read-only to the dpu side: it may change values in
 * place, never the table's shape. */
static int serve(struct host *h, hmaf_agent_t *agent)
{
    int ret =
        hmaf_agent_expose(agent, &h->table, sizeof(h->table), HMAF_ACCESS_READ);

    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->buckets,
                                DEMO_NBUCKETS * sizeof(*h->buckets),
                                HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->arena, h->table.arena_len,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "table", &h->table, sizeof(h->table));
    }
    return ret;
}

/* The agent serves from its own thread; we only watch its counters until
 * one session has come and gone. */
static int wait_for_dpu(hmaf_agent_t *agent, hmaf_agent_stats_t *st)
{
    double deadline = now_s() + WAIT_LIMIT_S;
    struct timespec pause = {0, POLL_NS};
    int ret;

    do {
        ret = hmaf_agent_stats(agent, st);
        if (ret < 0) {
            return ret;
        }
        if (st->sessions_closed >= 1 && st->sessions_live == 0) {
            return 0;
        }
        nanosleep(&pause, NULL);
    } while (now_s() < deadline);
    return HMAF_ETIMEDOUT;
}

/* Dial the listening dpu side. It may start after us, and until it
 * listens a dial is refused (on a BlueField, at once) or goes unanswered:
 * those are tried again until DIAL_S seconds have passed. Any other
 * failure (a wrong token, say) would only repeat. */
static int dial_dpu(hmaf_agent_t *agent, const char *address)
{
    double deadline = now_s() + DIAL_S;
    struct timespec pause = {0, DIAL_PAUSE_NS};
    int ret;

    for (;;) {
        double left_ms = (deadline - now_s()) * 1000;
        int try_ms = left_ms < DIAL_TRY_MS ? (int)left_ms + 1 : DIAL_TRY_MS;
        ret = hmaf_agent_dial(agent, address, try_ms);
        if (ret == 0 || (ret != HMAF_ECONNREFUSED && ret != HMAF_ETIMEDOUT) ||
            now_s() >= deadline) {
            return ret;
        }
        nanosleep(&pause, NULL);
    }
}

/* The agent is created without an address and listens (or dials) only once
 * the table is exposed and published, so no dpu side sees it half set up. */
static int run_agent(struct host *h, const char *address, int dial,
                     const char *token, hmaf_agent_stats_t *st)
{
    hmaf_agent_params_t params;
    hmaf_agent_t *agent;
    int ret;

    hmaf_agent_params_init(&params);
    params.token = token;
    ret = hmaf_agent_create(&params, &agent);
    if (ret < 0) {
        return ret;
    }
    ret = serve(h, agent);
    if (ret == 0) {
        ret =
            dial ? dial_dpu(agent, address) : hmaf_agent_listen(agent, address);
    }
    if (ret == 0) {
        printf("host: published root \"table\"; buckets exposed read-only, "
               "arena read-write\n");
        ret = wait_for_dpu(agent, st);
    }
    hmaf_agent_destroy(agent);
    return ret;
}

static uint32_t key_count(void)
{
    const char *s = getenv("HMAF_DEMO_KEYS");
    long n = s != NULL ? strtol(s, NULL, 10) : DEMO_KEYS_DEFAULT;

    return n > 0 && n <= 10 * (long)DEMO_KEYS_DEFAULT ? (uint32_t)n : 0;
}

static int report(const struct host *h, const hmaf_agent_stats_t *st)
{
    struct tally t = {0};

    verify(h, &t);
    printf("host: verified %u updated values and %u unchanged ones, "
           "%u wrong\n",
           t.updated, t.unchanged, t.wrong);
    printf("host: agent stats: %llu session(s), %llu mailbox requests "
           "served, %llu registrations\n",
           (unsigned long long)st->sessions_total,
           (unsigned long long)st->requests,
           (unsigned long long)st->registrations);
    return t.wrong == 0 ? 0 : -1;
}

static const char usage_text[] =
    "usage: HMAF_DEMO_TOKEN=T [HMAF_DEMO_KEYS=N] demo_host [--dial] ADDRESS\n"
    "The demo's host (hmaf-demo runs it): builds a hash table of N keys,\n"
    "exposes it and serves a dpu side at ADDRESS. --dial: connect to a dpu\n"
    "side listening there instead (always so for comch:).\n";

int main(int argc, char **argv)
{
    const char *token = getenv("HMAF_DEMO_TOKEN");
    uint32_t count = key_count();
    struct host h = {0};
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    double t0 = now_s();
    const char *address;
    int dial = 0;
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0); /* interleave sanely with demo_dpu */
    if (asked_help(argc, argv)) {
        return print_usage(usage_text, 1);
    }
    address = demo_parse_args(argc, argv, "--dial", &dial);
    if (address == NULL || token == NULL || count == 0) {
        return print_usage(usage_text, 0);
    }
    ret = build(&h, count);
    if (ret == 0) {
        printf("host: built %u keys in %.2f s (%.1f MiB arena, %u buckets, "
               "at %p)\n",
               count, now_s() - t0, (double)h.arena_used / (1 << 20),
               DEMO_NBUCKETS, h.base);
        ret = run_agent(&h, address, dial, token, &st);
    }
    if (ret == 0) {
        ret = report(&h, &st);
    } else {
        fprintf(stderr, "demo_host: %s: %s\n", hmaf_err_name(ret),
                hmaf_strerror(ret));
    }
    if (h.base != NULL) {
        munmap(h.base, h.base_len);
    }
    return ret == 0 ? 0 : 1;
}
