/* Allocation in host memory end to end (heap.h), against a forked host
 * whose agent has a 32 MiB heap and a 4 MiB session quota: blocks from
 * both sides, used directly by host code, freed by the other side; round
 * trips per small allocation; quota and full heap; bad frees from the API
 * and lies written raw into the mailbox; many threads; a dpu process
 * SIGKILLed with blocks out; and the heap back to where it started. */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "host/agent_int.h"
#include "host/heap.h"
#include "proto/heap.h"
#include "raw_slot.h"
#include "target.h"

#define HEAP_LEN (32u << 20)
#define QUOTA (4u << 20)
#define MAX_ADDRS 4096
#define MAGIC 0x5ca1ab1e00000000ull
#define THREADS 8
#define SLOTS 16
#define LOST_BOUND (640u << 10) /* heap.h: at most one batch per class */

/* MAP_SHARED before the fork: how the two processes pass addresses. */
struct shared {
    uint64_t heap_base;
    uint32_t n;
    uint64_t size;
    uint64_t addr[MAX_ADDRS];
    hmaf_heap_stats_t stats;
};

static struct shared *sh;

static uint64_t stamp(uint64_t addr)
{
    return addr * 3 + 1;
}

static int setup(hmaf_agent_t *agent, void *arg)
{
    hmaf_heap_params_t p;
    void *none;
    void *base = mmap(NULL, HEAP_LEN, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    (void)arg;
    if (base == MAP_FAILED) {
        return HMAF_ENOMEM;
    }
    hmaf_heap_params_init(&p);
    p.session_quota = QUOTA;
    CHECK_ERR(hmaf_agent_heap_alloc(agent, 16, &none), HMAF_ENOENT);
    CHECK_ERR(hmaf_agent_heap_create(agent, base, HEAP_LEN + 1, &p),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_create(agent, (char *)base + 16, 1 << 20, &p),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_create(agent, base, HEAP_LEN, &p), 0);
    CHECK_ERR(hmaf_agent_heap_create(agent, base, HEAP_LEN, &p),
              HMAF_EEXIST);
    CHECK_ERR(hmaf_agent_expose(agent, base, 4096, HMAF_ACCESS_READ),
              HMAF_EEXIST);
    CHECK_ERR(hmaf_agent_revoke(agent, base, HEAP_LEN), HMAF_EBUSY);
    sh->heap_base = (uint64_t)(uintptr_t)base;
    return 0;
}

/* Host: allocate sh->n blocks of sh->size and stamp them. */
static int host_alloc(hmaf_agent_t *agent)
{
    for (uint32_t i = 0; i < sh->n; i++) {
        void *p;
        if (hmaf_agent_heap_alloc(agent, sh->size, &p) != 0 ||
            (uintptr_t)p % 16 != 0) {
            return 0;
        }
        *(uint64_t *)p = stamp((uint64_t)(uintptr_t)p);
        sh->addr[i] = (uint64_t)(uintptr_t)p;
    }
    return 1;
}

/* Host: every listed block holds its stamp (the dpu side wrote it). */
static int host_check(void)
{
    for (uint32_t i = 0; i < sh->n; i++) {
        if (*(uint64_t *)(uintptr_t)sh->addr[i] != stamp(sh->addr[i])) {
            return 0;
        }
    }
    return 1;
}

static int host_free(hmaf_agent_t *agent)
{
    int ok = 1;

    for (uint32_t i = 0; i < sh->n; i++) {
        ok &= hmaf_agent_heap_free(agent, (void *)(uintptr_t)sh->addr[i]) == 0;
    }
    return ok;
}

/* Host: bad frees are refused and change nothing. */
static int host_bad_frees(hmaf_agent_t *agent)
{
    char *p;
    int ok = hmaf_agent_heap_alloc(agent, 100, (void **)&p) == 0;

    ok &= hmaf_agent_heap_free(agent, p + 16) == HMAF_EINVAL;
    ok &= hmaf_agent_heap_free(agent, p + 1) == HMAF_EINVAL;
    ok &= hmaf_agent_heap_free(agent, &ok) == HMAF_EINVAL;
    ok &= hmaf_agent_heap_free(agent, p) == 0;
    ok &= hmaf_agent_heap_free(agent, p) == HMAF_EINVAL;
    return ok;
}

/* Host: fill the heap with 1 MiB blocks but the last few. */
static int host_fill(hmaf_agent_t *agent)
{
    void *p;

    sh->n = 0;
    while (sh->n < MAX_ADDRS && hmaf_agent_heap_alloc(agent, 1 << 20, &p) == 0) {
        sh->addr[sh->n++] = (uint64_t)(uintptr_t)p;
    }
    return sh->n > 0;
}

static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    struct hmaf_agent *a = (struct hmaf_agent *)agent;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    int ok;

    (void)arg;
    switch (cmd) {
    case 'a':
        return host_alloc(agent);
    case 'c':
        return host_check();
    case 'f':
        return host_free(agent);
    case 'b':
        return host_bad_frees(agent);
    case 'F':
        return host_fill(agent);
    case 'S':
        sh->stats = (hmaf_heap_stats_t)HMAF_HEAP_STATS_INIT;
        return hmaf_agent_heap_stats(agent, &sh->stats) == 0;
    case 'k':
        pthread_mutex_lock(&a->lock);
        ok = hmaf__heap_check(a->heap) == 0;
        pthread_mutex_unlock(&a->lock);
        return ok;
    case 'm': /* where the allocator's own bookkeeping lives */
        pthread_mutex_lock(&a->lock);
        for (uint32_t i = 0; i < 16; i++) {
            sh->addr[i] = (uint64_t)(uintptr_t)a->heap + 16u * i;
        }
        pthread_mutex_unlock(&a->lock);
        return 1;
    case 'X': /* the agent goes while dpu sides allocate */
        hmaf_agent_destroy(agent);
        return 1; /* then the child is killed: nothing else to do */
    case 's':
        hmaf_agent_stats(agent, &st);
        return (int)st.sessions_live;
    default:
        return 0;
    }
}

static hmaf_heap_stats_t host_stats(struct target *t)
{
    CHECK_EQ(target_command(t, 'S'), 1);
    return sh->stats;
}

static void write_stamp(hmaf_session_t *s, uint64_t addr)
{
    uint64_t v = stamp(addr);

    CHECK_ERR(hmaf_session_write(s, addr, &v, 8), 0);
}

/* dpu blocks, written by the dpu side, read by host code; a large one. */
static void test_dpu_blocks(struct target *t, hmaf_session_t *s)
{
    uint64_t big, back = 0;

    sh->n = 100;
    for (uint32_t i = 0; i < sh->n; i++) {
        CHECK_ERR(hmaf_session_alloc(s, 1 + i * 37, &sh->addr[i]), 0);
        CHECK_EQ(sh->addr[i] % 16, 0);
        CHECK(sh->addr[i] >= sh->heap_base &&
              sh->addr[i] < sh->heap_base + HEAP_LEN);
        write_stamp(s, sh->addr[i]);
    }
    CHECK_EQ(target_command(t, 'c'), 1);
    /* The host frees what the dpu side allocated. */
    CHECK_EQ(target_command(t, 'f'), 1);
    CHECK_ERR(hmaf_session_alloc(s, 100 << 10, &big), 0);
    CHECK_EQ(big % 4096, 0);
    write_stamp(s, big + (100 << 10) - 8);
    CHECK_ERR(hmaf_session_read(s, &back, big + (100 << 10) - 8, 8), 0);
    CHECK_EQ(back, stamp(big + (100 << 10) - 8));
    CHECK_ERR(hmaf_session_free(s, big), 0);
    CHECK_ERR(hmaf_session_alloc(s, 0, &big), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_alloc(s, HEAP_LEN + 1u, &big), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
}

/* Host blocks, read by the dpu side and freed by it. */
static void test_host_blocks(struct target *t, hmaf_session_t *s)
{
    sh->n = 200;
    sh->size = 48;
    CHECK_EQ(target_command(t, 'a'), 1);
    for (uint32_t i = 0; i < sh->n; i++) {
        uint64_t v;
        CHECK_ERR(hmaf_session_read(s, &v, sh->addr[i], 8), 0);
        CHECK_EQ(v, stamp(sh->addr[i]));
        CHECK_ERR(hmaf_session_free(s, sh->addr[i]), 0);
    }
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    CHECK_EQ(target_command(t, 'b'), 1);
    CHECK_EQ(target_command(t, 'k'), 1);
}

/* 100,000 small allocations and frees: far fewer round trips. */
static void test_round_trips(hmaf_session_t *s)
{
    static uint64_t addr[1000];
    hmaf_session_stats_t a = HMAF_SESSION_STATS_INIT;
    hmaf_session_stats_t b = HMAF_SESSION_STATS_INIT;
    hmaf_session_heap_stats_t hs = HMAF_SESSION_HEAP_STATS_INIT;

    CHECK_ERR(hmaf_session_stats(s, &a), 0);
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 1000; i++) {
            CHECK_ERR(hmaf_session_alloc(s, 64, &addr[i]), 0);
        }
        for (int i = 0; i < 1000; i++) {
            CHECK_ERR(hmaf_session_free(s, addr[i]), 0);
        }
    }
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    CHECK_ERR(hmaf_session_stats(s, &b), 0);
    CHECK_ERR(hmaf_session_heap_stats(s, &hs), 0);
    printf("100000 allocations + 100000 frees of 64 B: %llu round trips "
           "(%llu ALLOC, %llu FREE): %.4f per allocation\n",
           (unsigned long long)(b.mailbox_round_trips - a.mailbox_round_trips),
           (unsigned long long)hs.alloc_requests,
           (unsigned long long)hs.free_requests,
           (double)(b.mailbox_round_trips - a.mailbox_round_trips) / 100000);
    CHECK(b.mailbox_round_trips - a.mailbox_round_trips < 100000 / 50);
    CHECK_EQ(hs.bytes_cached, 0);
    CHECK_EQ(hs.frees_pending, 0);
}

static void test_quota(struct target *t, hmaf_session_t *s)
{
    static uint64_t addr[1024];
    size_t n = 0;
    int ret;

    while ((ret = hmaf_session_alloc(s, 8192, &addr[n])) == 0) {
        n++;
        CHECK(n < 1024);
    }
    CHECK_ERR(ret, HMAF_ENOSPC);
    CHECK(n * 8192 <= QUOTA && n * 8192 > QUOTA / 2);
    CHECK_ERR(hmaf_session_alloc(s, 1 << 20, &addr[n]), HMAF_ENOSPC);
    while (n > 0) {
        CHECK_ERR(hmaf_session_free(s, addr[--n]), 0);
    }
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    CHECK_EQ(target_command(t, 'k'), 1);
}

static void test_full(struct target *t, hmaf_session_t *s)
{
    uint64_t addr;

    CHECK_EQ(target_command(t, 'F'), 1);
    CHECK_ERR(hmaf_session_alloc(s, 2 << 20, &addr), HMAF_ENOMEM);
    CHECK_EQ(target_command(t, 'f'), 1);
    CHECK_ERR(hmaf_session_alloc(s, 2 << 20, &addr), 0);
    CHECK_ERR(hmaf_session_free(s, addr), 0);
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
}

/* The dpu side's bad frees: refused locally or by the host, reported by
 * the next flush; the heap stays whole. */
static void test_bad_frees(struct target *t, hmaf_session_t *s)
{
    hmaf_session_heap_stats_t hs = HMAF_SESSION_HEAP_STATS_INIT;
    uint64_t addr;

    CHECK_ERR(hmaf_session_alloc(s, 100, &addr), 0);
    CHECK_ERR(hmaf_session_free(s, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_free(s, addr + 8), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_free(s, addr + 16), 0); /* inside a block */
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_free(s, addr), 0);
    CHECK_ERR(hmaf_session_free(s, addr), 0); /* twice */
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_free(s, sh->heap_base + HEAP_LEN), 0);
    CHECK_ERR(hmaf_session_free(s, sh->heap_base - 4096), 0);
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_heap_flush(s), 0); /* reported once */
    CHECK_ERR(hmaf_session_heap_stats(s, &hs), 0);
    CHECK_EQ(hs.bad_frees, 4);
    CHECK_EQ(target_command(t, 'k'), 1);
}

static int raw_alloc(struct raw *raw, uint64_t size, uint16_t count,
                     uint16_t len)
{
    uint8_t req[32] = {0}, resp[HMAF_MBOX_RESP_MAX];
    uint16_t resp_len;
    struct hmaf_req_alloc r = {.size = size, .count = 1, .cached = 0};

    hmaf__req_alloc_encode(&r, req);
    memcpy(req + 8, &count, 2); /* little-endian host assumed */
    return raw_call(raw, HMAF_OP_ALLOC, req, len, len, resp, &resp_len);
}

/* A lying dpu side: malformed ALLOCs and FREEs get errors; lies about
 * addresses free nothing that is not a live block. */
static void test_lies(struct target *t, hmaf_session_t *s)
{
    static uint8_t req[HMAF_MBOX_REQ_LONG_MAX + 8];
    uint8_t resp[HMAF_MBOX_RESP_MAX];
    struct hmaf_req_free f = {.cached = UINT64_MAX, .count = 3};
    hmaf_heap_stats_t before = host_stats(t), after;
    uint16_t resp_len, bad;
    struct raw raw;
    uint64_t keep;

    raw_init(&raw, t->pid, s);
    CHECK_ERR(raw_alloc(&raw, 64, 0, 18), HMAF_EPROTO);
    CHECK_ERR(raw_alloc(&raw, 64, 129, 18), HMAF_EPROTO);
    CHECK_ERR(raw_alloc(&raw, 64, 1, 17), HMAF_EPROTO);
    CHECK_ERR(raw_alloc(&raw, 64, 1, 19), HMAF_EPROTO);
    CHECK_ERR(raw_alloc(&raw, 0, 1, 18), HMAF_EINVAL);
    CHECK_ERR(raw_alloc(&raw, UINT64_MAX, 1, 18), HMAF_EINVAL);
    CHECK_ERR(raw_alloc(&raw, 1 << 20, 2, 18), HMAF_EINVAL);
    CHECK_ERR(raw_call(&raw, HMAF_OP_FREE, req, 10, 10, resp, &resp_len),
              HMAF_EPROTO); /* count 0 */
    CHECK_ERR(hmaf_session_alloc(s, 64, &keep), 0);
    f.addr[0] = keep + 16;
    f.addr[1] = UINT64_MAX & ~15ull;
    f.addr[2] = sh->heap_base + HEAP_LEN - 4096; /* free pages */
    hmaf__req_free_encode(&f, req);
    CHECK_ERR(raw_call(&raw, HMAF_OP_FREE, req, 33, 33, resp, &resp_len),
              HMAF_EPROTO); /* length and claim disagree with the count */
    CHECK_ERR(raw_call(&raw, HMAF_OP_FREE, req, 34, 34, resp, &resp_len), 0);
    CHECK_EQ(hmaf__resp_free_decode(resp, resp_len, &bad), 0);
    CHECK_EQ(bad, 3);
    CHECK_ERR(raw_call(&raw, HMAF_OP_FREE, req, 8, HMAF_MBOX_REQ_LONG_MAX + 1,
                       resp, &resp_len),
              HMAF_EPROTO);
    CHECK_EQ(target_command(t, 'k'), 1);
    after = host_stats(t);
    /* Only keep's slab came and its cached bytes are the liar's word,
     * capped at what it holds. */
    CHECK(after.bytes_cached_by_sessions <= after.bytes_in_use);
    CHECK_EQ(after.frees, before.frees);
    CHECK_ERR(hmaf_session_free(s, keep), 0);
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    CHECK_ERR(hmaf_session_ping(s), 0);
}

/* A raw FREE of `count` addresses (its word and length agree); the
 * status, and how many the host refused. */
static int raw_free(struct raw *raw, const uint64_t *addr, uint16_t count,
                    uint16_t *bad_out)
{
    static struct hmaf_req_free f;
    static uint8_t req[HMAF_MBOX_REQ_LONG_MAX];
    uint8_t resp[HMAF_MBOX_RESP_MAX];
    uint16_t len, resp_len = 0;
    int ret;

    f.cached = 0;
    f.count = count;
    memcpy(f.addr, addr, count * sizeof(addr[0]));
    len = (uint16_t)hmaf__req_free_encode(&f, req);
    ret = raw_call(raw, HMAF_OP_FREE, req, len, len, resp, &resp_len);
    *bad_out = UINT16_MAX;
    if (ret == 0) {
        CHECK_EQ(hmaf__resp_free_decode(resp, resp_len, bad_out), 0);
    }
    return ret;
}

/* A long FREE (written at the answer's payload) with its count and
 * length disagreeing: `count` in the message, `len` bytes claimed. */
static int raw_free_lying(struct raw *raw, uint16_t count, uint16_t len)
{
    static uint8_t req[HMAF_MBOX_REQ_LONG_MAX + 16];
    uint8_t resp[HMAF_MBOX_RESP_MAX];
    uint16_t resp_len;

    memset(req, 0, sizeof(req));
    memcpy(req + 8, &count, 2); /* little-endian host assumed */
    for (size_t at = 10; at + 8 <= sizeof(req); at += 8) {
        uint64_t a = sh->heap_base + 16 * at;
        memcpy(req + at, &a, 8);
    }
    return raw_call(raw, HMAF_OP_FREE, req, len, len, resp, &resp_len);
}

/* Long FREEs from a lying dpu side: 221 addresses of garbage, one live
 * block named 221 times, the allocator's own bookkeeping, counts that
 * disagree with the length. Only live blocks' starts are freed, once;
 * the heap stays whole. */
static void test_long_lies(struct target *t, hmaf_session_t *s)
{
    uint64_t addr[HMAF_FREE_BATCH_MAX];
    uint64_t rnd = 88172645463325252ull, keep;
    hmaf_heap_stats_t before = HMAF_HEAP_STATS_INIT;
    hmaf_heap_stats_t after = HMAF_HEAP_STATS_INIT;
    uint16_t bad;
    struct raw raw;

    raw_init(&raw, t->pid, s);
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    before = host_stats(t);
    for (int i = 0; i < HMAF_FREE_BATCH_MAX; i++) {
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        /* Half inside the heap (mostly free pages or mid-block), half
         * anywhere. */
        addr[i] = i % 2 ? rnd : sh->heap_base + rnd % HEAP_LEN;
    }
    CHECK_ERR(raw_free(&raw, addr, HMAF_FREE_BATCH_MAX, &bad), 0);
    CHECK_EQ(bad, HMAF_FREE_BATCH_MAX);

    CHECK_ERR(hmaf_session_alloc(s, 200, &keep), 0);
    for (int i = 0; i < HMAF_FREE_BATCH_MAX; i++) {
        addr[i] = keep;
    }
    CHECK_ERR(raw_free(&raw, addr, HMAF_FREE_BATCH_MAX, &bad), 0);
    CHECK_EQ(bad, HMAF_FREE_BATCH_MAX - 1); /* freed once */

    CHECK_EQ(target_command(t, 'm'), 1);
    CHECK_ERR(raw_free(&raw, sh->addr, 16, &bad), 0);
    CHECK_EQ(bad, 16);

    CHECK_ERR(raw_free_lying(&raw, 221, 10 + 8 * 220), HMAF_EPROTO);
    CHECK_ERR(raw_free_lying(&raw, 220, 10 + 8 * 221), HMAF_EPROTO);
    CHECK_ERR(raw_free_lying(&raw, 0, 10 + 8 * 221), HMAF_EPROTO);
    CHECK_ERR(raw_free_lying(&raw, 222, 10 + 8 * 221), HMAF_EPROTO);
    CHECK_ERR(raw_free_lying(&raw, UINT16_MAX, 10 + 8 * 221), HMAF_EPROTO);
    CHECK_ERR(raw_free_lying(&raw, 40, 10 + 8 * 40 + 3), HMAF_EPROTO);
    CHECK_ERR(raw_free_lying(&raw, 222, 10 + 8 * 222), HMAF_EPROTO);
    CHECK_EQ(target_command(t, 'k'), 1);
    after = host_stats(t);
    CHECK_EQ(after.frees, before.frees + 1);
    CHECK_EQ(after.bad_frees,
             before.bad_frees + 2 * HMAF_FREE_BATCH_MAX - 1 + 16);
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    CHECK_ERR(hmaf_session_ping(s), 0);
}

struct worker {
    hmaf_session_t *s;
    unsigned seed;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t addr[SLOTS] = {0};
    uint64_t rnd = w->seed * 2654435761u + 1;

    for (int i = 0; i < 20000; i++) {
        unsigned k;
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        k = (unsigned)(rnd % SLOTS);
        if (addr[k] != 0) {
            uint64_t v;
            CHECK_ERR(hmaf_session_read(w->s, &v, addr[k], 8), 0);
            CHECK_EQ(v, stamp(addr[k]));
            CHECK_ERR(hmaf_session_free(w->s, addr[k]), 0);
            addr[k] = 0;
        } else {
            /* within the quota: 8 threads, 16 blocks each */
            uint64_t size = (rnd >> 40) % 16 ? 8 + (rnd >> 20) % 2000 : 40000;
            CHECK_ERR(hmaf_session_alloc(w->s, size, &addr[k]), 0);
            write_stamp(w->s, addr[k]);
        }
    }
    for (unsigned k = 0; k < SLOTS; k++) {
        if (addr[k] != 0) {
            CHECK_ERR(hmaf_session_free(w->s, addr[k]), 0);
        }
    }
    return NULL;
}

static void test_threads(struct target *t, hmaf_session_t *s)
{
    pthread_t th[THREADS];
    struct worker w[THREADS];

    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){s, i + 1};
        CHECK_EQ(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    CHECK_EQ(target_command(t, 'k'), 1);
}

/* The watch thread gives an idle session's cache back by itself. */
static void test_idle_give_back(struct target *t, hmaf_session_t *s,
                                const hmaf_heap_stats_t *start)
{
    uint64_t addr;
    hmaf_heap_stats_t st = HMAF_HEAP_STATS_INIT;

    CHECK_ERR(hmaf_session_alloc(s, 32, &addr), 0);
    CHECK_ERR(hmaf_session_free(s, addr), 0);
    for (int i = 0; i < 1000; i++) { /* 10 s at most: far above a turn */
        st = host_stats(t);
        if (st.bytes_in_use == start->bytes_in_use) {
            break;
        }
        usleep(10000);
    }
    CHECK_EQ(st.bytes_in_use, start->bytes_in_use);
    CHECK_EQ(st.bytes_cached_by_sessions, 0);
    /* And the session goes on allocating after its give-back was
     * answered (the watch thread once kept looking at that answer for
     * ever, holding the heap's lock: the alarm catches that). */
    alarm(20);
    CHECK_ERR(hmaf_session_alloc(s, 32, &addr), 0);
    CHECK_ERR(hmaf_session_free(s, addr), 0);
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    alarm(0);
}

/* A dpu process with blocks out and its cache full is SIGKILLed: the
 * blocks it handed out stay, with their data; its cache is lost, within
 * the bound. Forked before test_main connects (dpu_child_fork). */
static void dead_session_main(void *arg)
{
    hmaf_session_t *s = target_connect(arg);

    sh->n = 500;
    for (uint32_t i = 0; i < sh->n; i++) {
        CHECK_ERR(hmaf_session_alloc(s, 16 + i % 3000, &sh->addr[i]), 0);
        write_stamp(s, sh->addr[i]);
    }
    raise(SIGKILL);
}

static void test_dead_session(struct target *t, struct dpu_child *child)
{
    hmaf_heap_stats_t before = host_stats(t), after;

    dpu_child_start(child);
    CHECK_EQ(waitpid(child->pid, NULL, 0), child->pid);
    for (int i = 0; i < 1000 && target_command(t, 's') != 1; i++) {
        usleep(10000);
    }
    CHECK_EQ(target_command(t, 's'), 1);
    CHECK_EQ(target_command(t, 'c'), 1); /* its blocks, their data intact */
    CHECK_EQ(target_command(t, 'k'), 1);
    after = host_stats(t);
    CHECK(after.bytes_lost > before.bytes_lost);
    CHECK(after.bytes_lost - before.bytes_lost <= LOST_BOUND);
    CHECK_EQ(target_command(t, 'f'), 1); /* now the host's to free */
    after = host_stats(t);
    /* What is left is what its cache held: bytes_lost counts that as of
     * its latest request, an upper bound. */
    CHECK(after.bytes_in_use > before.bytes_in_use);
    CHECK(after.bytes_in_use <=
          before.bytes_in_use + after.bytes_lost - before.bytes_lost);
    printf("SIGKILLed session: %llu bytes of never handed-out blocks lost "
           "(counted: %llu)\n",
           (unsigned long long)(after.bytes_in_use - before.bytes_in_use),
           (unsigned long long)(after.bytes_lost - before.bytes_lost));
}

static int no_heap(hmaf_agent_t *agent, void *arg)
{
    (void)agent;
    (void)arg;
    return 0;
}

/* A host without a heap says so. */
static void test_no_heap(void)
{
    struct target t;
    struct target_options opts = {.setup = no_heap, .command = command};
    hmaf_session_t *s;
    uint64_t addr;

    target_start(&t, &opts);
    s = target_connect(&t);
    CHECK_ERR(hmaf_session_alloc(s, 16, &addr), HMAF_ENOENT);
    CHECK_ERR(hmaf_session_alloc(s, 1 << 20, &addr), HMAF_ENOENT);
    CHECK_ERR(hmaf_session_free(s, 4096), 0);
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_ENOENT);
    CHECK_EQ(target_command(&t, 'S'), 0);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

/* The heap back where it started, once the agent has served what a
 * destroyed session posted on its way out (10 s at most). */
static hmaf_heap_stats_t wait_in_use(struct target *t, uint64_t in_use)
{
    hmaf_heap_stats_t st = host_stats(t);

    for (int i = 0; i < 1000 && st.bytes_in_use != in_use; i++) {
        usleep(10000);
        st = host_stats(t);
    }
    return st;
}

/* A session with blocks cached in several classes and frees pending. */
static hmaf_session_t *busy_session(struct target *t, int rpc_timeout_ms)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint64_t addr[64];

    target_session_params(t, &p);
    p.rpc_timeout_ms = rpc_timeout_ms;
    s = target_connect_params(&p);
    for (int i = 0; i < 64; i++) {
        CHECK_ERR(hmaf_session_alloc(s, 16 + (uint64_t)(i % 8) * 300,
                                     &addr[i]), 0);
    }
    for (int i = 0; i < 64; i++) {
        CHECK_ERR(hmaf_session_free(s, addr[i]), 0);
    }
    return s;
}

/* A watchdog far below the sessions' rpc_timeout_ms: a destroy that
 * waited for the stopped host's answer would be killed by it. */
enum { STOPPED_RPC_TIMEOUT_MS = 60000, STOPPED_WATCHDOG_S = 20 };

/* The heap back where it started, nothing counted lost. */
static void check_given_back(struct target *t, const hmaf_heap_stats_t *start)
{
    hmaf_heap_stats_t st = wait_in_use(t, start->bytes_in_use);

    CHECK_EQ(st.bytes_in_use, start->bytes_in_use);
    CHECK_EQ(st.bytes_lost, start->bytes_lost);
    CHECK_EQ(target_command(t, 'k'), 1);
}

static void destroy_stopped(struct target *t, hmaf_session_t *s)
{
    alarm(STOPPED_WATCHDOG_S);
    hmaf_session_destroy(s);
    alarm(0);
    CHECK_EQ(kill(t->pid, SIGCONT), 0);
}

/* hmaf_session_destroy() never waits on the host (session.h), yet gives
 * its cached blocks and pending frees back: to a live host that is
 * asleep (so it sees the farewell together with the last FREEs), to a
 * stopped one, and while its watch thread waits for a stopped host's
 * answer to an idle give-back. Every time the heap is back where it
 * started once the host runs, and nothing is counted lost. */
static void test_destroy(void)
{
    /* Watch turns of a second: no idle give-back before destroy. */
    struct target_options opts = {
        .setup = setup, .command = command, .revoke_wait_ms = 4000};
    struct target t;
    hmaf_heap_stats_t start = HMAF_HEAP_STATS_INIT;
    hmaf_session_t *s;

    target_start(&t, &opts);
    start = host_stats(&t);
    s = busy_session(&t, 5000);
    /* The agent's loop goes to sleep after 200 us without a request. */
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    hmaf_session_destroy(s);
    check_given_back(&t, &start);

    s = busy_session(&t, STOPPED_RPC_TIMEOUT_MS);
    target_pause(&t);
    destroy_stopped(&t, s);
    check_given_back(&t, &start);
    CHECK_EQ(target_stop(&t), 0);

    opts.revoke_wait_ms = 0; /* turns of 250 ms */
    target_start(&t, &opts);
    s = busy_session(&t, STOPPED_RPC_TIMEOUT_MS);
    target_pause(&t);
    /* Two watch turns: the idle give-back is sent and waits for an
     * answer that cannot come. */
    nanosleep(&(struct timespec){0, 700000000}, NULL);
    destroy_stopped(&t, s);
    check_given_back(&t, &start);
    CHECK_EQ(target_stop(&t), 0);
}

/* ---- a hostile reviewer's cases (test_alloc hostile) ---- */

#define MANY_THREADS 128
#define KILL_ROUNDS 4

struct hostile {
    hmaf_session_t *s;
    unsigned seed;
    unsigned ops;
    _Atomic int *stop;
    int last_error; /* the error that ended the loop, 0: none */
    uint64_t taken; /* quota race: bytes it holds at the end */
    uint64_t addr[QUOTA / 8192 + 1]; /* one thread may take them all */
};

static uint64_t xorshift(uint64_t *r)
{
    *r ^= *r << 13, *r ^= *r >> 7, *r ^= *r << 17;
    return *r;
}

/* Allocate and free at random, holding at most two blocks; small ones
 * mostly, now and then a large one. HMAF_ENOSPC (all threads' blocks
 * against one quota) is an answer, not a failure. */
static void *churn_main(void *arg)
{
    struct hostile *w = arg;
    uint64_t rnd = w->seed * 2654435761u + 7, held[2] = {0, 0};

    for (unsigned i = 0; i < w->ops && !atomic_load(w->stop); i++) {
        uint64_t r = xorshift(&rnd);
        uint64_t *b = &held[r % 2];
        int ret;
        if (*b != 0) {
            ret = hmaf_session_free(w->s, *b);
            *b = 0;
        } else {
            uint64_t size = r >> 59 == 0 ? 40000 : 1 + (r >> 20) % 4000;
            ret = hmaf_session_alloc(w->s, size, b);
            ret = ret == HMAF_ENOSPC ? 0 : ret;
        }
        if (ret < 0) {
            w->last_error = ret;
            break;
        }
    }
    for (int k = 0; k < 2; k++) {
        if (held[k] != 0 && w->last_error == 0) {
            CHECK_ERR(hmaf_session_free(w->s, held[k]), 0);
        }
    }
    return NULL;
}

static void run_threads(struct hostile *w, unsigned n,
                        void *(*fn)(void *))
{
    pthread_t th[MANY_THREADS];

    for (unsigned i = 0; i < n; i++) {
        CHECK_EQ(pthread_create(&th[i], NULL, fn, &w[i]), 0);
    }
    for (unsigned i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }
}

/* 128 threads on one session, at once (HMAF_TEST_THREADS fewer: on ucx,
 * where each of their calls' looks at the mailbox is a round trip through
 * the host's agent, which shares the machine's cpus with them, 128 on two
 * cpus made a call outlast its 5 s timeout on a busy machine). */
static unsigned many_threads(void)
{
    const char *env = getenv("HMAF_TEST_THREADS");
    unsigned n = env != NULL ? (unsigned)atoi(env) : MANY_THREADS;

    CHECK(n > 0 && n <= MANY_THREADS);
    return n;
}

static void test_many_threads(struct target *t,
                              const hmaf_heap_stats_t *start)
{
    static struct hostile w[MANY_THREADS];
    static _Atomic int stop;
    hmaf_session_t *s = target_connect(t);
    unsigned n = many_threads();

    for (unsigned i = 0; i < n; i++) {
        w[i] = (struct hostile){.s = s, .seed = i + 1, .ops = 100,
                                .stop = &stop};
    }
    run_threads(w, n, churn_main);
    for (unsigned i = 0; i < n; i++) {
        CHECK_ERR(w[i].last_error, 0);
    }
    CHECK_ERR(hmaf_session_heap_flush(s), 0);
    CHECK_EQ(target_command(t, 'k'), 1);
    CHECK_EQ(host_stats(t).bytes_in_use, start->bytes_in_use);
    hmaf_session_destroy(s);
}

/* Dpu processes SIGKILLed while their threads allocate and free: the
 * agent stays whole and serves the next session. */
static void test_killed_mid_call(struct target *t)
{
    hmaf_heap_stats_t before = host_stats(t), after;
    uint64_t addr;

    for (int round = 0; round < KILL_ROUNDS; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            static struct hostile w[8];
            static _Atomic int stop;
            hmaf_session_t *s = target_connect(t);
            for (unsigned i = 0; i < 8; i++) {
                w[i] = (struct hostile){.s = s, .seed = i + 1,
                                        .ops = UINT32_MAX, .stop = &stop};
            }
            run_threads(w, 8, churn_main);
            _exit(1); /* not reached: killed first */
        }
        CHECK(pid > 0);
        nanosleep(&(struct timespec){0, 30000000 + round * 20000000}, NULL);
        CHECK_EQ(kill(pid, SIGKILL), 0);
        CHECK_EQ(waitpid(pid, NULL, 0), pid);
    }
    for (int i = 0; i < 1000 && target_command(t, 's') != 0; i++) {
        usleep(10000);
    }
    CHECK_EQ(target_command(t, 's'), 0);
    CHECK_EQ(target_command(t, 'k'), 1);
    after = host_stats(t);
    CHECK(after.bytes_lost - before.bytes_lost <= KILL_ROUNDS * LOST_BOUND);
    {
        hmaf_session_t *s = target_connect(t);
        CHECK_ERR(hmaf_session_alloc(s, 100, &addr), 0);
        CHECK_ERR(hmaf_session_free(s, addr), 0);
        hmaf_session_destroy(s);
    }
}

/* Take 8 KiB blocks until the quota says no. */
static void *quota_main(void *arg)
{
    struct hostile *w = arg;
    unsigned n = 0;
    int ret;

    while (n < QUOTA / 8192 + 1 &&
           (ret = hmaf_session_alloc(w->s, 8192, &w->addr[n])) == 0) {
        n++;
    }
    CHECK(n <= QUOTA / 8192);
    CHECK_ERR(ret, HMAF_ENOSPC);
    w->ops = n;
    w->taken = (uint64_t)n * 8192;
    return NULL;
}

/* Two sessions race for their quotas, four threads each: neither takes
 * more than its own, whatever the other does. */
static void test_quota_race(struct target *t, const hmaf_heap_stats_t *start)
{
    static struct hostile w[8];
    hmaf_session_t *s[2] = {target_connect(t), target_connect(t)};
    uint64_t taken[2] = {0, 0};

    for (unsigned i = 0; i < 8; i++) {
        w[i] = (struct hostile){.s = s[i % 2]};
    }
    run_threads(w, 8, quota_main);
    for (unsigned i = 0; i < 8; i++) {
        taken[i % 2] += w[i].taken;
    }
    for (int k = 0; k < 2; k++) {
        CHECK(taken[k] <= QUOTA);
        CHECK(taken[k] > QUOTA / 2);
    }
    for (unsigned i = 0; i < 8; i++) {
        for (unsigned j = 0; j < w[i].ops; j++) {
            CHECK_ERR(hmaf_session_free(w[i].s, w[i].addr[j]), 0);
        }
    }
    for (int k = 0; k < 2; k++) {
        CHECK_ERR(hmaf_session_heap_flush(s[k]), 0);
        hmaf_session_destroy(s[k]);
    }
    CHECK_EQ(target_command(t, 'k'), 1);
    CHECK_EQ(wait_in_use(t, start->bytes_in_use).bytes_in_use,
             start->bytes_in_use);
}

/* hmaf_agent_destroy while dpu threads allocate: every call ends with a
 * transport error, none hangs. */
static void test_agent_destroy(void)
{
    static struct hostile w[8];
    static _Atomic int stop;
    struct target t;
    struct target_options opts = {.setup = setup, .command = command};
    hmaf_session_params_t p;
    pthread_t th[8];
    hmaf_session_t *s;

    target_start(&t, &opts);
    target_session_params(&t, &p);
    p.rpc_timeout_ms = 60000; /* a hang would outlast the watchdog */
    s = target_connect_params(&p);
    for (unsigned i = 0; i < 8; i++) {
        w[i] = (struct hostile){.s = s, .seed = i + 1, .ops = UINT32_MAX,
                                .stop = &stop};
        CHECK_EQ(pthread_create(&th[i], NULL, churn_main, &w[i]), 0);
    }
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    alarm(STOPPED_WATCHDOG_S);
    CHECK_EQ(target_command(&t, 'X'), 1);
    for (unsigned i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK_ERR(w[i].last_error, HMAF_ECONNRESET);
    }
    hmaf_session_destroy(s);
    alarm(0);
    target_kill(&t);
}

static void test_hostile(void)
{
    struct target t;
    struct target_options opts = {.setup = setup, .command = command};
    hmaf_heap_stats_t start = HMAF_HEAP_STATS_INIT;

    target_start(&t, &opts);
    start = host_stats(&t);
    test_many_threads(&t, &start);
    test_quota_race(&t, &start);
    test_killed_mid_call(&t);
    CHECK_EQ(target_stop(&t), 0);
    test_agent_destroy();
}

static void test_main(void)
{
    struct target t;
    struct target_options opts = {.setup = setup, .command = command};
    hmaf_heap_stats_t start = HMAF_HEAP_STATS_INIT, end = HMAF_HEAP_STATS_INIT;
    struct dpu_child dead;
    hmaf_session_t *s;

    target_start(&t, &opts);
    dead = dpu_child_fork(dead_session_main, &t);
    s = target_connect(&t);
    start = host_stats(&t);
    CHECK_EQ(start.bytes_total, HEAP_LEN);
    CHECK_EQ(start.bytes_in_use, 0);
    test_dpu_blocks(&t, s);
    test_host_blocks(&t, s);
    test_round_trips(s);
    test_quota(&t, s);
    test_full(&t, s);
    test_bad_frees(&t, s);
    test_lies(&t, s);
    test_long_lies(&t, s);
    test_threads(&t, s);
    end = host_stats(&t);
    CHECK_EQ(end.bytes_in_use, start.bytes_in_use);
    CHECK_EQ(end.blocks_in_use, start.blocks_in_use);
    CHECK_EQ(end.bytes_reserved, 0);
    test_idle_give_back(&t, s, &start);
    test_dead_session(&t, &dead);
    hmaf_session_destroy(s);
    CHECK_EQ(target_command(&t, 'k'), 1);
    CHECK_EQ(target_stop(&t), 0);
    test_no_heap();
}

int main(int argc, char **argv)
{
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    if (argc == 1) {
        test_main();
    } else if (argc == 2 && strcmp(argv[1], "destroy") == 0) {
        test_destroy();
    } else if (argc == 2 && strcmp(argv[1], "hostile") == 0) {
        test_hostile();
    } else {
        fprintf(stderr, "usage: test_alloc [destroy|hostile]\n");
        return 2;
    }
    printf("ok\n");
    return 0;
}
