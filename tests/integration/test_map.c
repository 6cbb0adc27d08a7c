/* Mapping mode against a forked host: a linked list walked with plain
 * pointers at the host's own addresses, writes visible on the host only
 * after sync, the twin/diff rule with a concurrent host write to the same
 * page, refresh, relocation when the address is taken here, several
 * faulting threads, eviction under the resident cap, and SIGBUS (no hang)
 * for unexposed memory and for a dead host. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"
#include "target.h"

#define ARENA (4u << 20)
#define NODES 20000
/* Far from the test's own memory. ThreadSanitizer keeps most of the
 * address space for its shadow and drops a hint that points there (with
 * MAP_FIXED_NOREPLACE, root then gets page 0 and TSan aborts): under it,
 * a hint in its low application range, below 512 GiB. */
#if defined(__SANITIZE_THREAD__) /* gcc */
#define HINT ((void *)0x5a5a000000ull)
#elif defined(__has_feature) /* clang */
#if __has_feature(thread_sanitizer)
#define HINT ((void *)0x5a5a000000ull)
#endif
#endif
#ifndef HINT
#define HINT ((void *)0x5a5a00000000ull)
#endif

struct node {
    struct node *next;
    uint64_t value;
    char pad[40];
};

struct host {
    uint8_t *arena; /* nodes, then a page for the twin test at the end */
    struct node *head;
    uint8_t *odd;   /* exposed from byte 100 to 200 bytes before its end */
};

#define ODD_PAGES 3
#define ODD_OFF 100
#define ODD_LEN (ODD_PAGES * 4096 - ODD_OFF - 200)

static struct host host;

static uint8_t *last_page(uint8_t *arena)
{
    return arena + ARENA - 4096;
}

/* Nodes in a scattered order, so the walk jumps around the arena. */
static int build(hmaf_agent_t *agent, void *arg)
{
    struct node *nodes;

    (void)arg;
    host.arena = mmap(HINT, ARENA + 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
                      0);
    if (host.arena == MAP_FAILED) {
        return HMAF_ENOMEM;
    }
    nodes = (struct node *)host.arena;
    for (uint64_t i = 0; i < NODES; i++) {
        uint64_t at = (i * 7919) % NODES, next = ((i + 1) * 7919) % NODES;
        nodes[at].value = i;
        nodes[at].next = i + 1 < NODES ? &nodes[next] : NULL;
    }
    host.head = &nodes[0];
    memset(last_page(host.arena), 0x11, 4096);
    host.odd = mmap(NULL, ODD_PAGES * 4096, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (host.odd == MAP_FAILED) {
        return HMAF_ENOMEM;
    }
    memset(host.odd, 0x44, ODD_PAGES * 4096);
    if (hmaf_agent_expose(agent, host.odd + ODD_OFF, ODD_LEN,
                          HMAF_ACCESS_READ_WRITE) ||
        hmaf_agent_publish(agent, "odd", host.odd + ODD_OFF, ODD_LEN)) {
        return HMAF_EINVAL;
    }
    return hmaf_agent_expose(agent, host.arena, ARENA,
                             HMAF_ACCESS_READ_WRITE) ||
           hmaf_agent_publish(agent, "head", &host.head, sizeof(host.head)) ||
           hmaf_agent_expose(agent, &host.head, sizeof(host.head),
                             HMAF_ACCESS_READ);
}

/* 'n': value of the first node; 'h': host writes bytes 200..299 of the last
 * page; 'm': 1 if the last page is dpu 0..99 = 0x22, host 200..299 = 0x33,
 * the rest 0x11; 'u': host bumps the first node's value by 1000. */
static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    uint8_t *page = last_page(host.arena);

    (void)agent, (void)arg;
    switch (cmd) {
    case 'n':
        return (int)(host.head->value & 0xff);
    case 'h':
        memset(page + 200, 0x33, 100);
        return 1;
    case 'm':
        for (int i = 0; i < 4096; i++) {
            uint8_t want = i < 100 ? 0x22 : i >= 200 && i < 300 ? 0x33 : 0x11;
            if (page[i] != want) {
                return 0;
            }
        }
        return 1;
    case 'u':
        host.head->value += 1000;
        return 1;
    default:
        return 255;
    }
}

/* Run with HMAF_MAP_WP=0: no write-protect faults, twins at fetch. */
static int twins_everywhere(void)
{
    const char *env = getenv("HMAF_MAP_WP");

    return env != NULL && strcmp(env, "0") == 0;
}

static uint64_t walk(const struct node *n)
{
    uint64_t sum = 0, count = 0;

    for (; n != NULL; n = n->next, count++) {
        CHECK_EQ(n->value, count);
        sum += n->value;
    }
    CHECK_EQ(count, NODES);
    return sum;
}

static void check_walk_and_writes(struct target *t, hmaf_session_t *s,
                                  struct node *head)
{
    hmaf_map_t *map;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;

    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map));
    CHECK(hmaf_map_local(map, (uint64_t)(uintptr_t)HINT) == HINT);
    CHECK_EQ(walk(head), (uint64_t)NODES * (NODES - 1) / 2);
    head->value = 77; /* the host's own pointer, written like local memory */
    CHECK_EQ(target_command(t, 'n'), 0);
    CHECK_OK(hmaf_map_sync(map));
    CHECK_EQ(target_command(t, 'n'), 77);
    head->value = 0;
    CHECK_OK(hmaf_map_sync(map));
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK(st.faults > 0 && st.pages_fetched >= st.faults);
    CHECK(st.write_faults >= 1 || twins_everywhere());
    CHECK_EQ(st.bytes_written_back, 2); /* 0 -> 77 -> 0: one byte each time */
    hmaf_map_destroy(map);
}

/* The dpu changes bytes 0..99 of a page, the host 200..299 meanwhile:
 * after sync the host page holds both. */
static void check_twin_rule(struct target *t, hmaf_session_t *s)
{
    hmaf_map_t *map;
    uint8_t *page = last_page(HINT);

    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map));
    CHECK_EQ(page[150], 0x11); /* fetched */
    memset(page, 0x22, 100);
    CHECK_EQ(target_command(t, 'h'), 1);
    CHECK_OK(hmaf_map_sync(map));
    CHECK_EQ(target_command(t, 'm'), 1);
    hmaf_map_destroy(map);
}

/* A sequential scan fetches ahead in growing windows; scattered touches
 * fetch one page each. */
static void check_readahead(hmaf_session_t *s)
{
    hmaf_map_t *map;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;
    volatile const uint8_t *base = HINT;
    unsigned sum = 0;

    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map));
    for (size_t off = 0; off < (1u << 20); off += 64) {
        sum += base[off];
    }
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK(st.pages_fetched >= 256 && st.pages_fetched <= 256 + 16);
    CHECK(st.faults <= 32); /* windows of up to 16 pages */
    CHECK_EQ(st.readahead_pages, st.pages_fetched - st.faults);
    hmaf_map_destroy(map);
    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map));
    for (size_t i = 0; i < 64; i++) {
        sum += base[((i * 37) % 512) * 8192]; /* every other page, shuffled */
    }
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK_EQ(st.readahead_pages, 0);
    CHECK_EQ(st.pages_fetched, 64);
    hmaf_map_destroy(map);
    (void)sum;
}

/* An exposure that starts and ends inside pages: its first and last bytes
 * map like any other, the rest of those pages reads as zero, and a sync
 * writes back nothing outside the range. */
static void check_partial_pages(hmaf_session_t *s)
{
    hmaf_map_params_t p;
    hmaf_map_t *map;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;
    uint64_t odd;
    uint8_t *at, back[2];

    CHECK_OK(hmaf_session_lookup(s, "odd", &odd, NULL));
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE; /* the host's address may be ours too */
    CHECK_OK(hmaf_map_create(s, odd, ODD_LEN, &p, &map));
    at = hmaf_map_local(map, odd);
    CHECK_EQ(at[0], 0x44);
    CHECK_EQ(at[ODD_LEN - 1], 0x44);
    CHECK_EQ(at[-1], 0); /* before the range, same page */
    at[0] = 0x55;
    at[-1] = 0x66; /* outside the range: never written back */
    at[ODD_LEN - 1] = 0x77;
    CHECK_OK(hmaf_map_sync(map));
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK_EQ(st.fault_errors, 0);
    CHECK_EQ(st.bytes_written_back, 2);
    CHECK_OK(hmaf_session_read(s, &back[0], odd, 1));
    CHECK_OK(hmaf_session_read(s, &back[1], odd + ODD_LEN - 1, 1));
    CHECK_EQ(back[0], 0x55);
    CHECK_EQ(back[1], 0x77);
    hmaf_map_destroy(map);
}

static void check_refresh(struct target *t, hmaf_session_t *s,
                          struct node *head)
{
    hmaf_map_t *map;
    uint64_t at = (uint64_t)(uintptr_t)head;

    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map));
    CHECK_EQ(head->value, 0);
    CHECK_EQ(target_command(t, 'u'), 1);
    CHECK_EQ(head->value, 0); /* cached until refreshed */
    CHECK_OK(hmaf_map_refresh(map, at, sizeof(*head), HMAF_REFRESH_CLEAN_ONLY));
    CHECK_EQ(head->value, 1000);
    head->pad[0] = 'x'; /* unsynced: a clean-only refresh keeps it */
    CHECK_OK(hmaf_map_refresh(map, at, 1, HMAF_REFRESH_CLEAN_ONLY));
    CHECK_EQ(head->pad[0], 'x');
    CHECK_OK(hmaf_map_refresh(map, at, 1, 0)); /* a full one drops it */
    CHECK_EQ(head->pad[0], 0);
    CHECK_ERR(hmaf_map_refresh(map, at, 0, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_map_refresh(map, 4096, 1, 0), HMAF_EINVAL);
    hmaf_map_destroy(map);
}

/* The host's address range is busy here: refused, or relocated. */
static void check_relocation(hmaf_session_t *s)
{
    hmaf_map_params_t p;
    hmaf_map_t *map;
    struct node *mirror_head, *first;
    uint8_t *busy = mmap(HINT, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
                                                    MAP_FIXED_NOREPLACE, -1, 0);

    CHECK(busy == HINT);
    CHECK_ERR(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map),
              HMAF_EEXIST);
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE | HMAF_MAP_READ_ONLY;
    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, &p, &map));
    first = hmaf_map_local(map, (uint64_t)(uintptr_t)HINT);
    CHECK(first != NULL && (void *)first != HINT);
    CHECK_EQ(hmaf_map_remote(map, first), (uint64_t)(uintptr_t)HINT);
    CHECK(hmaf_map_local(map, (uint64_t)(uintptr_t)HINT + ARENA) == NULL);
    /* Host pointers need translating in a relocated mirror. */
    mirror_head = hmaf_map_local(map, (uint64_t)(uintptr_t)HINT);
    CHECK_EQ(mirror_head->value, 1000);
    CHECK(hmaf_map_local(map, (uint64_t)(uintptr_t)mirror_head->next) != NULL);
    CHECK_ERR(hmaf_map_sync(map), HMAF_EACCES);
    hmaf_map_destroy(map);
    munmap(busy, 4096);
}

struct walker {
    struct node *head;
    int skip; /* each thread starts at a different place in the list */
};

static void *walk_part(void *arg)
{
    struct walker *w = arg;
    const struct node *n = w->head;

    for (int i = 0; i < w->skip && n != NULL; i++) {
        n = n->next;
    }
    for (int i = 0; i < 2000 && n != NULL; i++, n = n->next) {
        if (n->value != (uint64_t)(w->skip + i)) {
            return (void *)1;
        }
    }
    return NULL;
}

static void check_threads(hmaf_session_t *s, struct node *head)
{
    hmaf_map_t *map;
    struct walker w[4];
    pthread_t th[4];
    void *ret;

    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map));
    for (int i = 0; i < 4; i++) {
        w[i] = (struct walker){head, 1 + i * 4000};
        CHECK(pthread_create(&th[i], NULL, walk_part, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], &ret);
        CHECK(ret == NULL);
    }
    hmaf_map_destroy(map);
}

/* A 64 KiB cap on a 4 MiB mirror: pages come and go, data stays right,
 * and an evicted page's writes reach the host without a sync. */
static void check_eviction(struct target *t)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    hmaf_map_t *map;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;
    struct node *head;
    uint64_t head_addr;

    target_session_params(t, &p);
    p.map_max_resident = 64 << 10;
    CHECK_OK(hmaf_session_create(&p, &s));
    CHECK_OK(hmaf_session_lookup(s, "head", &head_addr, NULL));
    CHECK_OK(hmaf_session_read(s, &head, head_addr, sizeof(head)));
    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA, NULL, &map));
    CHECK_EQ(head->value, 1000);
    head->value = 5; /* dirty; the walk below evicts its page */
    for (const struct node *n = head->next; n != NULL; n = n->next) {
        CHECK(n->value >= 1 && n->value < NODES);
    }
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK(st.evictions > 0);
    CHECK(st.resident_bytes <= 64 << 10);
    CHECK_EQ(target_command(t, 'n'), 5); /* written back on eviction */
    hmaf_map_destroy(map);
    hmaf_session_destroy(s);
}

static sigjmp_buf on_sigbus;

static void sigbus(int sig)
{
    (void)sig;
    siglongjmp(on_sigbus, 1);
}

/* Touch that must fail with SIGBUS; returns 1 when it did. */
static int touch_fails(volatile const uint8_t *p)
{
    struct sigaction sa = {.sa_handler = sigbus}, old;
    int failed = 0;

    sigaction(SIGBUS, &sa, &old);
    if (sigsetjmp(on_sigbus, 1) == 0) {
        (void)*p;
    } else {
        failed = 1;
    }
    sigaction(SIGBUS, &old, NULL);
    return failed;
}

static void check_failures(hmaf_session_t *s, struct target *t)
{
    hmaf_map_t *map;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;

    /* One page past the exposure, inside the mapping. */
    CHECK_OK(hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, ARENA + 4096, NULL,
                             &map));
    CHECK_EQ(touch_fails((uint8_t *)HINT + ARENA), 1);
    CHECK_EQ(((struct node *)HINT)->value, 5); /* the rest still works */
    target_kill(t);
    CHECK_EQ(touch_fails((uint8_t *)HINT + ARENA / 2), 1); /* host gone */
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK_EQ(st.fault_errors, 2);
    hmaf_map_destroy(map);
}

int main(void)
{
    struct target_options opts = {.setup = build, .command = command};
    struct target t;
    hmaf_session_t *s;
    hmaf_map_t *map;
    struct node *head;
    uint64_t head_addr;

    target_start(&t, &opts);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "head", &head_addr, NULL));
    CHECK_OK(hmaf_session_read(s, &head, head_addr, sizeof(head)));
    if (hmaf_map_create(s, (uint64_t)(uintptr_t)HINT, 4096, NULL, &map) ==
        HMAF_ENOTSUP) {
        target_kill(&t);
        SKIP("userfaultfd is not available to this process (valgrind?)");
    }
    hmaf_map_destroy(map); /* unmap with no activity */
    check_walk_and_writes(&t, s, head);
    check_readahead(s);
    check_partial_pages(s);
    check_twin_rule(&t, s);
    check_refresh(&t, s, head);
    check_relocation(s);
    check_threads(s, head);
    check_eviction(&t);
    check_failures(s, &t);
    hmaf_session_destroy(s);
    printf("test_map: ok\n");
    return 0;
}
