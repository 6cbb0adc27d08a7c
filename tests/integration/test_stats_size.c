/*
 * The size the caller declares in a counters struct (types.h,
 * HMAF_STATS_SIZE_MAX), for each of the five getters:
 *  - a size it refuses (0, below the first version's, not a multiple of 8,
 *    over the cap) gives HMAF_EINVAL and leaves the caller's memory as it
 *    was;
 *  - the exact size, and larger ones (a program built against a newer
 *    header, whose struct is this one followed by more counters), get
 *    every field this library knows, zeros from its sizeof up to the
 *    declared size, nothing written past that, and size as it was.
 * The caller's struct sits between guard bytes in a buffer as large as the
 * cap allows, so that any size can be declared. The objects stay idle
 * while they are looked at, so every snapshot of one is the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "target.h"

#define POISON   0xA5
#define POISON32 0xA5A5A5A5u
#define GUARD    64         /* bytes before and after the caller's struct */
#define AREA_LEN (1u << 16) /* the host's buffer and each heap */
#define READ_LEN 100u

struct getter {
    const char *name;
    int (*get)(void *obj, void *stats_out);
    void *obj;
    size_t own; /* sizeof the struct, as this program was built */
    unsigned char ref[HMAF_STATS_SIZE_MAX]; /* a snapshot of exact size */
};

/* The host's buffer and heap (in the forked host), and the heap of this
 * process's own agent: static, they stay until the process exits. */
static _Alignas(4096) uint8_t host_buf[AREA_LEN];
static _Alignas(4096) uint8_t host_heap[AREA_LEN];
static _Alignas(4096) uint8_t local_heap[AREA_LEN];

/* The caller's memory: guard, a struct of up to the cap, guard (8 bytes
 * more, where a size over the cap, wrongly taken, would write). */
static _Alignas(64) unsigned char mem[GUARD + HMAF_STATS_SIZE_MAX + 8 + GUARD];
static unsigned char want[sizeof(mem)];
#define AT (mem + GUARD)

static int get_session(void *obj, void *out)
{
    return hmaf_session_stats(obj, out);
}

static int get_agent(void *obj, void *out)
{
    return hmaf_agent_stats(obj, out);
}

static int get_map(void *obj, void *out)
{
    return hmaf_map_stats(obj, out);
}

static int get_heap(void *obj, void *out)
{
    return hmaf_agent_heap_stats(obj, out);
}

static int get_session_heap(void *obj, void *out)
{
    return hmaf_session_heap_stats(obj, out);
}

static void poison(unsigned char *buf, size_t declared)
{
    memset(buf, POISON, sizeof(mem));
    memcpy(buf + GUARD, &declared, sizeof(declared));
}

static void fail(const struct getter *g, size_t size, const char *what)
{
    fprintf(stderr, "%s, size %zu: %s\n", g->name, size, what);
    exit(1);
}

/* Refused, and nothing of the caller's memory written. */
static void check_refused(const struct getter *g, size_t size)
{
    int ret;

    poison(mem, size);
    poison(want, size);
    ret = g->get(g->obj, AT);
    if (ret != HMAF_EINVAL) {
        fprintf(stderr, "%s, size %zu: returned %s, want HMAF_EINVAL\n",
                g->name, size, hmaf_err_name(ret));
        exit(1);
    }
    if (memcmp(mem, want, sizeof(mem)) != 0) {
        fail(g, size, "refused, but wrote to the caller's memory");
    }
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != v) {
            return 0;
        }
    }
    return 1;
}

/* Whether a 4-byte word of [8, own) was left as poisoned: a field (or the
 * padding after an int field) the getter did not write. */
static int poison_left(size_t own)
{
    for (size_t off = sizeof(size_t); off + 4 <= own; off += 4) {
        uint32_t w;
        memcpy(&w, AT + off, 4);
        if (w == POISON32) {
            return 1;
        }
    }
    return 0;
}

static void check_filled(const struct getter *g, size_t size)
{
    size_t kept;
    int ret;

    poison(mem, size);
    ret = g->get(g->obj, AT);
    if (ret != 0) {
        fprintf(stderr, "%s, size %zu: returned %s, want 0\n", g->name, size,
                hmaf_err_name(ret));
        exit(1);
    }
    memcpy(&kept, AT, sizeof(kept));
    if (kept != size) {
        fail(g, size, "size changed");
    }
    if (poison_left(g->own)) {
        fail(g, size, "a known field left unwritten");
    }
    if (memcmp(AT + sizeof(size_t), g->ref + sizeof(size_t),
               g->own - sizeof(size_t)) != 0) {
        fail(g, size, "the counters differ from the exact-size snapshot");
    }
    if (!all_bytes(AT + g->own, size - g->own, 0)) {
        fail(g, size, "the bytes past the library's struct are not zeros");
    }
    if (!all_bytes(mem, GUARD, POISON) ||
        !all_bytes(AT + size, sizeof(mem) - GUARD - size, POISON)) {
        fail(g, size, "wrote outside the declared size");
    }
}

static void check_getter(const struct getter *g)
{
    const size_t own = g->own;
    const size_t refused[] = {0,
                              sizeof(size_t), /* the size field alone */
                              own - 8,        /* a counter short of 0.1's */
                              own - 1,
                              own + 1,
                              own + 4,
                              own + 12,
                              HMAF_STATS_SIZE_MAX + 8,
                              SIZE_MAX - 7,
                              SIZE_MAX};
    const size_t filled[] = {own, own + 8, own + 64, HMAF_STATS_SIZE_MAX};

    CHECK(own % 8 == 0 && own <= HMAF_STATS_SIZE_MAX);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        check_refused(g, refused[i]);
    }
    for (size_t i = 0; i < sizeof(filled) / sizeof(filled[0]); i++) {
        check_filled(g, filled[i]);
    }
    /* The arguments' own contract is kept. */
    poison(mem, own);
    CHECK_ERR(g->get(NULL, AT), HMAF_EINVAL);
    CHECK_ERR(g->get(g->obj, NULL), HMAF_EINVAL);
    CHECK(all_bytes(AT + sizeof(size_t), own - sizeof(size_t), POISON));
    printf("%s: ok\n", g->name);
}

/* The host: a buffer "buf" and a heap, both AREA_LEN. */
static int setup(hmaf_agent_t *agent, void *arg)
{
    int ret;

    (void)arg;
    target_fill(host_buf, AREA_LEN, 0, 1);
    ret = hmaf_agent_expose(agent, host_buf, AREA_LEN, HMAF_ACCESS_READ_WRITE);
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "buf", host_buf, AREA_LEN);
    }
    return ret != 0 ? ret
                    : hmaf_agent_heap_create(agent, host_heap, AREA_LEN, NULL);
}

/* A session that read, allocated and freed, then went idle: nothing is
 * left cached or pending, which its watch thread would give back. */
static hmaf_session_t *busy_session(struct target *t, uint64_t *buf_out)
{
    struct target_options opts = {.setup = setup};
    hmaf_session_heap_stats_t hs = HMAF_SESSION_HEAP_STATS_INIT;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    unsigned char tmp[READ_LEN];
    hmaf_session_t *s;
    uint64_t block;

    target_start(t, &opts);
    s = target_connect(t);
    *buf_out = target_root(s, "buf");
    CHECK_OK(hmaf_session_read(s, tmp, *buf_out, sizeof(tmp)));
    CHECK_PATTERN(tmp, sizeof(tmp), 0, 1);
    CHECK_OK(hmaf_session_alloc(s, 64, &block));
    CHECK_OK(hmaf_session_free(s, block));
    CHECK_OK(hmaf_session_heap_flush(s));
    CHECK_OK(hmaf_session_stats(s, &st));
    CHECK(st.ops >= 1 && st.bytes_read >= READ_LEN);
    CHECK_OK(hmaf_session_heap_stats(s, &hs));
    CHECK_EQ(hs.allocs, 1);
    CHECK_EQ(hs.frees, 1);
    CHECK_EQ(hs.bytes_cached, 0);
    CHECK_EQ(hs.frees_pending, 0);
    return s;
}

/* A mapping of the first pages of "buf" with one page touched; NULL when
 * this process has no userfaultfd. */
static hmaf_map_t *touched_map(hmaf_session_t *s, uint64_t buf)
{
    hmaf_map_params_t mp;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;
    hmaf_map_t *map;
    volatile uint8_t *p;
    int ret;

    hmaf_map_params_init(&mp);
    mp.flags = HMAF_MAP_ANYWHERE; /* the host's address may be in use here */
    ret = hmaf_map_create(s, buf, 4 * 4096, &mp, &map);
    if (ret == HMAF_ENOTSUP) {
        return NULL;
    }
    CHECK_OK(ret);
    p = hmaf_map_local(map, buf);
    CHECK(p != NULL);
    CHECK_EQ(p[5], target_pattern(5, 1));
    /* the fault is accounted under the map's lock, which the getter takes */
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK_EQ(st.faults, 1);
    CHECK(st.pages_fetched >= 1);
    return map;
}

/* An agent of this process with a heap holding one block. */
static hmaf_agent_t *local_agent(struct getter *heap_getter)
{
    hmaf_heap_stats_t hst = HMAF_HEAP_STATS_INIT;
    hmaf_agent_params_t ap;
    hmaf_agent_t *a;
    void *block;

    hmaf_agent_params_init(&ap);
    CHECK_OK(hmaf_agent_create(&ap, &a));
    /* no heap yet: a bad size is still a bad argument, a good one ENOENT */
    heap_getter->obj = a;
    check_refused(heap_getter, 0);
    poison(mem, heap_getter->own);
    poison(want, heap_getter->own);
    CHECK_ERR(get_heap(a, AT), HMAF_ENOENT);
    CHECK(memcmp(mem, want, sizeof(mem)) == 0);
    CHECK_OK(hmaf_agent_heap_create(a, local_heap, AREA_LEN, NULL));
    CHECK_OK(hmaf_agent_heap_alloc(a, 100, &block));
    CHECK_OK(hmaf_agent_heap_stats(a, &hst));
    CHECK_EQ(hst.bytes_total, AREA_LEN);
    CHECK_EQ(hst.allocs, 1);
    CHECK_EQ(hst.blocks_in_use, 1);
    return a;
}

int main(void)
{
    static struct getter g[] = {
        {.name = "hmaf_session_stats",
         .get = get_session,
         .own = sizeof(hmaf_session_stats_t)},
        {.name = "hmaf_agent_stats",
         .get = get_agent,
         .own = sizeof(hmaf_agent_stats_t)},
        {.name = "hmaf_agent_heap_stats",
         .get = get_heap,
         .own = sizeof(hmaf_heap_stats_t)},
        {.name = "hmaf_session_heap_stats",
         .get = get_session_heap,
         .own = sizeof(hmaf_session_heap_stats_t)},
        {.name = "hmaf_map_stats",
         .get = get_map,
         .own = sizeof(hmaf_map_stats_t)},
    };
    const size_t n = sizeof(g) / sizeof(g[0]);
    struct target t;
    hmaf_session_t *s;
    hmaf_agent_t *a;
    hmaf_map_t *map;
    uint64_t buf;

    s = busy_session(&t, &buf); /* forks the host: before our own agent */
    map = touched_map(s, buf);
    a = local_agent(&g[2]);
    g[0].obj = s;
    g[1].obj = a;
    g[3].obj = s;
    g[4].obj = map;
    for (size_t i = 0; i < n; i++) {
        if (g[i].obj == NULL) {
            continue; /* the map, without userfaultfd: reported below */
        }
        /* the reference: what a caller of this header's size gets */
        memcpy(g[i].ref, &g[i].own, sizeof(size_t));
        CHECK_OK(g[i].get(g[i].obj, g[i].ref));
        check_getter(&g[i]);
    }
    hmaf_map_destroy(map);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    hmaf_agent_destroy(a);
    if (map == NULL) {
        SKIP("userfaultfd is not available to this process: "
             "hmaf_map_stats not checked (the other four passed)");
    }
    printf("test_stats_size: ok\n");
    return 0;
}
