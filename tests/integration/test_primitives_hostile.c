/*
 * The four primitives (atomic.h, heap.h, notify.h, seqlock.h) against a
 * hostile dpu side and a failing host: bad input on every call, many
 * threads mixing them on one session, dpu processes SIGKILLed mid-call,
 * the host stopped and killed under waiting calls.
 *
 *   test_primitives_hostile inputs|threads|kill|stop|death
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

#define PAGE 4096u
#define HEAP_LEN (8u << 20)
#define QUOTA (2u << 20)
#define WORDS_LEN 65536u
#define REC_LEN 4096u
#define TAGS 4
#define THREADS 48
#define ROUNDS 60
#define KILLS 6

/* MAP_SHARED before the fork: what the host reports. */
struct shared {
    hmaf_heap_stats_t stats;
    uint64_t counts[HMAF_NOTIFY_TAGS_MAX + 8];
    uint64_t entries;
    uint64_t ring_to;
    int fds;
    _Atomic int stop_writer;
    uint64_t writes;
    _Atomic int kill_connected; /* test_kill's dpu processes that got in */
};

struct host {
    hmaf_agent_t *agent;
    uint8_t *heap, *words, *ro, *rec;
    pthread_t writer;
};

static struct shared *sh;
static struct host host_state;

static int setup(hmaf_agent_t *agent, void *arg)
{
    struct host *h = arg;
    hmaf_heap_params_t p;
    int ret;

    h->agent = agent;
    h->heap = aligned_alloc(PAGE, HEAP_LEN);
    h->words = aligned_alloc(PAGE, WORDS_LEN);
    h->ro = aligned_alloc(PAGE, PAGE);
    h->rec = aligned_alloc(PAGE, REC_LEN + PAGE);
    if (h->heap == NULL || h->words == NULL || h->ro == NULL ||
        h->rec == NULL) {
        return HMAF_ENOMEM;
    }
    memset(h->words, 0, WORDS_LEN);
    memset(h->rec, 0, REC_LEN + PAGE);
    hmaf_heap_params_init(&p);
    p.session_quota = QUOTA;
    ret = hmaf_agent_heap_create(agent, h->heap, HEAP_LEN, &p);
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->words, WORDS_LEN,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->ro, PAGE, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->rec, REC_LEN + PAGE,
                                HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "words", h->words, WORDS_LEN);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "ro", h->ro, PAGE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "rec", h->rec, REC_LEN + PAGE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "heap", h->heap, HEAP_LEN);
    }
    return ret;
}

/* The record: a version word, then REC_LEN - 8 bytes all equal to the
 * generation's low byte. */
static void *writer(void *arg)
{
    struct host *h = arg;
    uint64_t *seq = (uint64_t *)h->rec;
    uint64_t gen = 0;

    while (!atomic_load(&sh->stop_writer)) {
        gen++;
        hmaf_seqlock_write_begin(seq);
        memset(h->rec + 8, (int)(gen & 0xff), REC_LEN - 8);
        hmaf_seqlock_write_end(seq);
        for (int i = 0; i < 200; i++) {
            __asm__ __volatile__("" ::: "memory");
        }
    }
    sh->writes = gen;
    return NULL;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

static int drain_notifications(hmaf_agent_t *agent)
{
    hmaf_notification_t buf[64];
    size_t n;

    do {
        if (hmaf_agent_notifications(agent, buf, 64, &n) != 0) {
            return 0;
        }
        for (size_t i = 0; i < n; i++) {
            if (buf[i].count == 0 || buf[i].tag >= HMAF_NOTIFY_TAGS_MAX + 8) {
                return 0;
            }
            sh->counts[buf[i].tag] += buf[i].count;
            sh->entries++;
        }
    } while (n > 0);
    return 1;
}

static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    struct host *h = arg;

    switch (cmd) {
    case 'S':
        sh->stats = (hmaf_heap_stats_t)HMAF_HEAP_STATS_INIT;
        return hmaf_agent_heap_stats(agent, &sh->stats) == 0;
    case 'N':
        return drain_notifications(agent);
    case 'g':
        return hmaf_agent_ring(agent, sh->ring_to, sh->ring_to + 7) == 0;
    case 'F':
        sh->fds = count_fds();
        return 1;
    case 'w':
        atomic_store(&sh->stop_writer, 0);
        return pthread_create(&h->writer, NULL, writer, h) == 0;
    case 'W':
        atomic_store(&sh->stop_writer, 1);
        return pthread_join(h->writer, NULL) == 0;
    case 's': {
        hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
        return hmaf_agent_stats(agent, &st) == 0 ? (int)st.sessions_live : 255;
    }
    default:
        return 0;
    }
}

static void start_host(struct target *t)
{
    struct target_options o = {
        .setup = setup, .command = command, .arg = &host_state};

    target_start(t, &o);
}

static hmaf_heap_stats_t host_stats(struct target *t)
{
    CHECK_EQ(target_command(t, 'S'), 1);
    return sh->stats;
}

static uint64_t words, ro, rec, heap;

static void find_roots(hmaf_session_t *s)
{
    words = target_root(s, "words");
    ro = target_root(s, "ro");
    rec = target_root(s, "rec");
    heap = target_root(s, "heap");
}

static uint64_t read64(hmaf_session_t *s, uint64_t addr)
{
    uint64_t v = 0;

    CHECK_OK(hmaf_session_read(s, &v, addr, 8));
    return v;
}

/* --- bad input ----------------------------------------------------------- */

static void atomic_inputs(hmaf_session_t *s)
{
    hmaf_atomic_t ops[] = {
        {.op = 0, .size = 8, .remote_addr = words},
        {.op = 7, .size = 8, .remote_addr = words},
        {.op = (hmaf_atomic_op_t)-1, .size = 8, .remote_addr = words},
        {.op = HMAF_ATOMIC_FADD, .size = 0, .remote_addr = words},
        {.op = HMAF_ATOMIC_FADD, .size = 16, .remote_addr = words},
        {.op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = words + 4},
        {.op = HMAF_ATOMIC_FADD, .size = 4, .remote_addr = words + 2},
        {.op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = 0},
        {.op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = UINT64_MAX - 7},
        {.op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = words + WORDS_LEN},
        {.op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = ro},
        {.op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = rec},
        {.op = HMAF_ATOMIC_FADD, .size = 4, .remote_addr = words + WORDS_LEN - 4,
         .operand = 1},
        {.op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = heap, .operand = 1},
    };
    int want[] = {HMAF_EINVAL, HMAF_EINVAL, HMAF_EINVAL, HMAF_EINVAL,
                  HMAF_EINVAL, HMAF_EINVAL, HMAF_EINVAL, HMAF_EFAULT,
                  HMAF_EFAULT, HMAF_EFAULT, HMAF_EACCES, HMAF_EACCES,
                  0,           0};
    size_t n = sizeof(ops) / sizeof(ops[0]);
    hmaf_atomic_t *big = calloc(1000, sizeof(*big));
    hmaf_req_t req;

    CHECK_ERR(hmaf_session_atomic(s, ops, n), HMAF_EINVAL);
    for (size_t i = 0; i < n; i++) {
        CHECK_ERR(ops[i].status, want[i]);
    }
    for (size_t i = 0; i < n; i++) {
        ops[i].status = 99;
    }
    CHECK_OK(hmaf_session_atomic_post(s, ops, n, &req));
    CHECK_ERR(hmaf_request_wait(s, req), HMAF_EINVAL);
    for (size_t i = 0; i < n; i++) {
        CHECK_ERR(ops[i].status, want[i]);
    }
    /* Only ops the local checks refuse: born complete. */
    CHECK_OK(hmaf_session_atomic_post(s, ops, 3, &req));
    CHECK_ERR(hmaf_request_test(s, req), HMAF_EINVAL);
    CHECK_ERR(hmaf_request_test(s, req), HMAF_ESTALE);
    /* 1000 ops alternating good and unexposed. */
    CHECK(big != NULL);
    for (int i = 0; i < 1000; i++) {
        big[i] = (hmaf_atomic_t){.op = HMAF_ATOMIC_FADD,
                                 .size = 8,
                                 .remote_addr = i % 2 ? 8 : words + 512,
                                 .operand = 1};
    }
    CHECK_ERR(hmaf_session_atomic(s, big, 1000), HMAF_EFAULT);
    CHECK_EQ(read64(s, words + 512), 500);
    for (int i = 0; i < 1000; i++) {
        CHECK_ERR(big[i].status, i % 2 ? HMAF_EFAULT : 0);
    }
    CHECK_OK(hmaf_session_atomic_post(s, big, 1000, &req));
    CHECK_ERR(hmaf_request_wait(s, req), HMAF_EFAULT);
    CHECK_EQ(read64(s, words + 512), 1000);
    free(big);
    CHECK_ERR(hmaf_session_fetch_add64(NULL, words, 1, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_fetch_add64(s, words + 1, 1, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_swap64(s, ro, 1, NULL), HMAF_EACCES);
    CHECK_ERR(hmaf_session_cas64(s, 16, 0, 1, NULL), HMAF_EFAULT);
    CHECK_ERR(hmaf_session_atomic_post(NULL, ops, 1, &req), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_atomic_post(s, NULL, 1, &req), HMAF_EINVAL);
}

static void heap_inputs(struct target *t, hmaf_session_t *s)
{
    hmaf_heap_stats_t before = host_stats(t), after;
    hmaf_session_heap_stats_t hs = HMAF_SESSION_HEAP_STATS_INIT;
    uint64_t a = 0, b = 0;

    CHECK_ERR(hmaf_session_alloc(NULL, 16, &a), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_alloc(s, 16, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_alloc(s, 0, &a), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_alloc(s, SIZE_MAX, &a), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_alloc(s, HEAP_LEN + 1, &a), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_alloc(s, HEAP_LEN, &a), HMAF_ENOSPC);
    CHECK_ERR(hmaf_session_alloc(s, QUOTA + 1, &a), HMAF_ENOSPC);
    CHECK_OK(hmaf_session_alloc(s, QUOTA, &a));
    CHECK_ERR(hmaf_session_alloc(s, 16, &b), HMAF_ENOSPC);
    CHECK_OK(hmaf_session_free(s, a));
    CHECK_OK(hmaf_session_heap_flush(s));
    CHECK_OK(hmaf_session_alloc(s, HMAF_HEAP_SMALL_MAX, &a));
    CHECK_OK(hmaf_session_alloc(s, HMAF_HEAP_SMALL_MAX + 1, &b));
    CHECK_EQ(a % HMAF_HEAP_ALIGN, 0);
    CHECK_EQ(b % HMAF_HEAP_PAGE, 0);
    CHECK_OK(hmaf_session_free(s, a));
    CHECK_OK(hmaf_session_free(s, b));
    CHECK_ERR(hmaf_session_free(NULL, b), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_free(s, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_free(s, heap + 8), HMAF_EINVAL);
    CHECK_OK(hmaf_session_heap_flush(s));
    /* Foreign, interior, double: each refused by the host, reported by
     * the next flush, nothing changed. */
    CHECK_OK(hmaf_session_alloc(s, 100, &a));
    CHECK_OK(hmaf_session_free(s, words));
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_EINVAL);
    CHECK_OK(hmaf_session_heap_flush(s));
    CHECK_OK(hmaf_session_free(s, a + 16));
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_EINVAL);
    CHECK_OK(hmaf_session_free(s, a));
    CHECK_OK(hmaf_session_free(s, a));
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_EINVAL);
    CHECK_OK(hmaf_session_free(s, UINT64_MAX - 15));
    CHECK_OK(hmaf_session_free(s, heap + HEAP_LEN));
    CHECK_ERR(hmaf_session_heap_flush(s), HMAF_EINVAL);
    CHECK_OK(hmaf_session_heap_stats(s, &hs));
    CHECK_EQ(hs.bad_frees, 5);
    CHECK_EQ(hs.bytes_cached, 0);
    CHECK_EQ(hs.frees_pending, 0);
    CHECK_ERR(hmaf_session_heap_stats(s, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_heap_stats(NULL, &hs), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_heap_flush(NULL), HMAF_EINVAL);
    after = host_stats(t);
    CHECK_EQ(after.bytes_in_use, before.bytes_in_use);
    CHECK_EQ(after.blocks_in_use, before.blocks_in_use);
    CHECK_EQ(after.bytes_reserved, before.bytes_reserved);
    CHECK_EQ(after.bad_frees - before.bad_frees, 5);
}

static void notify_inputs(struct target *t, hmaf_session_t *s)
{
    uint64_t id = 0, count = 0, value = 0;
    int fd = -1;

    CHECK_ERR(hmaf_session_notify(NULL, 1, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_id(NULL, &id), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_id(s, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_ring_fd(NULL, &fd), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_ring_fd(s, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_ring_wait(NULL, 0, NULL, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_ring_wait(s, -2, NULL, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_ring_wait(s, INT_MIN, NULL, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_ring_wait(s, 0, &count, &value), HMAF_ETIMEDOUT);
    CHECK_ERR(hmaf_session_ring_wait(s, 1, NULL, NULL), HMAF_ETIMEDOUT);
    /* 64 tags wait; a 65th is refused; the same tags still coalesce. */
    for (uint32_t tag = 0; tag < HMAF_NOTIFY_TAGS_MAX; tag++) {
        CHECK_OK(hmaf_session_notify(s, tag, tag));
    }
    CHECK_ERR(hmaf_session_notify(s, HMAF_NOTIFY_TAGS_MAX, 0), HMAF_ENOSPC);
    CHECK_ERR(hmaf_session_notify(s, UINT32_MAX, 0), HMAF_ENOSPC);
    CHECK_OK(hmaf_session_notify(s, 5, 55));
    memset(sh->counts, 0, sizeof(sh->counts));
    sh->entries = 0;
    CHECK_EQ(target_command(t, 'N'), 1);
    CHECK_EQ(sh->entries, HMAF_NOTIFY_TAGS_MAX);
    CHECK_EQ(sh->counts[5], 2);
    CHECK_EQ(sh->counts[HMAF_NOTIFY_TAGS_MAX], 0);
    CHECK_OK(hmaf_session_notify(s, HMAF_NOTIFY_TAGS_MAX, 0));
    CHECK_EQ(target_command(t, 'N'), 1);
    CHECK_EQ(sh->counts[HMAF_NOTIFY_TAGS_MAX], 1);
    /* A ring with the count taken by ring_wait(INT_MAX). */
    CHECK_OK(hmaf_session_id(s, &id));
    sh->ring_to = id;
    CHECK_EQ(target_command(t, 'g'), 1);
    CHECK_OK(hmaf_session_ring_wait(s, INT_MAX, &count, &value));
    CHECK_EQ(count, 1);
    CHECK_EQ(value, id + 7);
    sh->ring_to = id + 1000;
    CHECK_EQ(target_command(t, 'g'), 0); /* ENOENT */
}

static void seqlock_inputs(hmaf_session_t *s)
{
    uint8_t buf[REC_LEN];
    hmaf_consistent_read_t r[2] = {
        {.seq_addr = rec, .remote_addr = rec + 8, .buf = buf, .len = 64},
        {.seq_addr = rec, .remote_addr = 64, .buf = buf + 64, .len = 64},
    };

    CHECK_ERR(hmaf_session_read_consistent(NULL, rec, buf, rec, 8, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(s, rec, NULL, rec, 8, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(s, rec, buf, rec, 0, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(s, rec + 4, buf, rec, 8, 0),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistent(s, 8, buf, rec, 8, 0),
              HMAF_EFAULT);
    CHECK_ERR(hmaf_session_read_consistent(s, rec, buf, UINT64_MAX - 7, 64,
                                           0),
              HMAF_EOVERFLOW);
    CHECK_ERR(hmaf_session_read_consistent(s, rec, buf, rec + REC_LEN, PAGE + 1,
                                           3),
              HMAF_EFAULT);
    CHECK_OK(hmaf_session_read_consistent(s, rec, buf, rec, REC_LEN,
                                          UINT_MAX));
    CHECK_ERR(hmaf_session_read_consistentv(s, r, 2, 0), HMAF_EFAULT);
    CHECK_EQ(r[0].status, 0);
    CHECK_EQ(r[1].status, HMAF_EFAULT);
    CHECK_ERR(hmaf_session_read_consistentv(s, r, 0, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistentv(s, NULL, 1, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read_consistentv(NULL, r, 1, 0), HMAF_EINVAL);
}

static void host_inputs(void)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *a;
    hmaf_heap_params_t hp;
    hmaf_heap_stats_t st = HMAF_HEAP_STATS_INIT;
    hmaf_notification_t n;
    size_t got;
    void *ptr = NULL;
    uint8_t *mem = aligned_alloc(PAGE, 2 * HMAF_HEAP_MIN_LEN);
    char dir[] = "/tmp/hmaf-prim-XXXXXX", addr[64];

    CHECK(mem != NULL && mkdtemp(dir) != NULL);
    snprintf(addr, sizeof(addr), "unix:%s/a.sock", dir);
    hmaf_agent_params_init(&p);
    p.address = addr;
    p.token = TARGET_TOKEN;
    p.threaded = 0;
    CHECK_OK(hmaf_agent_create(&p, &a));
    hmaf_heap_params_init(&hp);
    CHECK_ERR(hmaf_agent_heap_alloc(a, 16, &ptr), HMAF_ENOENT);
    CHECK_ERR(hmaf_agent_heap_free(a, mem), HMAF_ENOENT);
    CHECK_ERR(hmaf_agent_heap_stats(a, &st), HMAF_ENOENT);
    CHECK_ERR(hmaf_agent_heap_create(NULL, mem, HMAF_HEAP_MIN_LEN, NULL),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_create(a, NULL, HMAF_HEAP_MIN_LEN, NULL),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_create(a, mem + 16, HMAF_HEAP_MIN_LEN, NULL),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_create(a, mem, HMAF_HEAP_MIN_LEN - PAGE, NULL),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_create(a, mem, HMAF_HEAP_MIN_LEN + 16, NULL),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_create(a, (void *)(uintptr_t)(UINT64_MAX - 4095),
                                     HMAF_HEAP_MIN_LEN, NULL),
              HMAF_EOVERFLOW);
    hp.size = 1;
    CHECK_ERR(hmaf_agent_heap_create(a, mem, HMAF_HEAP_MIN_LEN, &hp),
              HMAF_EINVAL);
    hmaf_heap_params_init(&hp);
    CHECK_OK(hmaf_agent_expose(a, mem + HMAF_HEAP_MIN_LEN, PAGE,
                               HMAF_ACCESS_READ));
    CHECK_ERR(hmaf_agent_heap_create(a, mem + PAGE, HMAF_HEAP_MIN_LEN, &hp),
              HMAF_EEXIST);
    CHECK_OK(hmaf_agent_heap_create(a, mem, HMAF_HEAP_MIN_LEN, &hp));
    CHECK_ERR(hmaf_agent_heap_create(a, mem, HMAF_HEAP_MIN_LEN, &hp),
              HMAF_EEXIST);
    CHECK_ERR(hmaf_agent_revoke(a, mem, HMAF_HEAP_MIN_LEN), HMAF_EBUSY);
    CHECK(hmaf_agent_revoke(a, mem, PAGE) < 0);
    CHECK_ERR(hmaf_agent_expose(a, mem + PAGE, PAGE, HMAF_ACCESS_READ),
              HMAF_EEXIST);
    CHECK_ERR(hmaf_agent_heap_alloc(NULL, 16, &ptr), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_alloc(a, 16, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_alloc(a, 0, &ptr), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_alloc(a, SIZE_MAX, &ptr), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_alloc(a, HMAF_HEAP_MIN_LEN + 1, &ptr),
              HMAF_EINVAL);
    CHECK_OK(hmaf_agent_heap_alloc(a, HMAF_HEAP_MIN_LEN, &ptr));
    CHECK_ERR(hmaf_agent_heap_alloc(a, 16, &ptr), HMAF_ENOMEM);
    CHECK_OK(hmaf_agent_heap_free(a, mem));
    CHECK_ERR(hmaf_agent_heap_free(a, mem), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_free(a, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_free(NULL, mem), HMAF_EINVAL);
    CHECK_OK(hmaf_agent_heap_alloc(a, 16, &ptr));
    CHECK_ERR(hmaf_agent_heap_free(a, (uint8_t *)ptr + 16), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_free(a, (uint8_t *)ptr + 8), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_free(a, mem + HMAF_HEAP_MIN_LEN), HMAF_EINVAL);
    CHECK_OK(hmaf_agent_heap_free(a, ptr));
    CHECK_OK(hmaf_agent_heap_stats(a, &st));
    CHECK_EQ(st.bytes_in_use, 0);
    CHECK_EQ(st.bytes_reserved, 0);
    CHECK_EQ(st.bad_frees, 5);
    CHECK_ERR(hmaf_agent_heap_stats(a, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_heap_stats(NULL, &st), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_ring(NULL, 0, 0), HMAF_EINVAL);
    CHECK_OK(hmaf_agent_ring(a, 0, 0)); /* nobody: still 0 */
    CHECK_ERR(hmaf_agent_ring(a, 1, 0), HMAF_ENOENT);
    CHECK_ERR(hmaf_agent_ring(a, UINT64_MAX, 0), HMAF_ENOENT);
    CHECK_ERR(hmaf_agent_notifications(a, &n, 0, &got), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_notifications(a, NULL, 1, &got), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_notifications(a, &n, 1, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_notifications(NULL, &n, 1, &got), HMAF_EINVAL);
    CHECK_OK(hmaf_agent_notifications(a, &n, 1, &got));
    CHECK_EQ(got, 0);
    CHECK_ERR(hmaf_agent_on_notify(NULL, NULL, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_notify_fd(NULL, &p.threaded), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_notify_fd(a, NULL), HMAF_EINVAL);
    hmaf_agent_destroy(a);
    free(mem);
    rmdir(dir);
}

static void test_inputs(void)
{
    struct target t;
    hmaf_session_t *s;
    hmaf_heap_stats_t st = HMAF_HEAP_STATS_INIT;

    host_inputs();
    start_host(&t);
    s = target_connect(&t);
    find_roots(s);
    atomic_inputs(s);
    heap_inputs(&t, s);
    notify_inputs(&t, s);
    seqlock_inputs(s);
    hmaf_session_destroy(s);
    for (int i = 0; i < 500 && target_command(&t, 's') != 0; i++) {
        usleep(10000);
    }
    st = host_stats(&t);
    CHECK_EQ(st.bytes_in_use, 0);
    CHECK_EQ(st.bytes_reserved, 0);
    CHECK_EQ(target_stop(&t), 0);
}

/* --- many threads -------------------------------------------------------- */

struct worker {
    hmaf_session_t *s;
    int id;
    uint64_t adds, notes[TAGS], rings, reads;
    uint64_t *ring_counts;
};

/* Blocks of varied sizes, each filled with a pattern of its own (the
 * address) and checked before it is freed: overlap would show. */
static void alloc_round(struct worker *w, unsigned r)
{
    enum { N = 6 };
    uint64_t addr[N];
    size_t size[N];
    uint8_t buf[3 * 4096], got[3 * 4096];

    for (int i = 0; i < N; i++) {
        size[i] = 1 + (size_t)((w->id * 131 + r * 17 + i * 977) % 3000);
        if (i == N - 1 && r % 10 == 0) {
            size[i] = HMAF_HEAP_SMALL_MAX + 1 + w->id; /* a large block */
        }
        CHECK_OK(hmaf_session_alloc(w->s, size[i], &addr[i]));
        CHECK_EQ(addr[i] % HMAF_HEAP_ALIGN, 0);
        CHECK(addr[i] >= heap && addr[i] + size[i] <= heap + HEAP_LEN);
        size[i] = size[i] > sizeof(buf) ? sizeof(buf) : size[i];
        target_fill(buf, size[i], addr[i], (unsigned)w->id);
        CHECK_OK(hmaf_session_write(w->s, addr[i], buf, size[i]));
    }
    for (int i = 0; i < N; i++) {
        CHECK_OK(hmaf_session_read(w->s, got, addr[i], size[i]));
        CHECK_PATTERN(got, size[i], addr[i], (unsigned)w->id);
        CHECK_OK(hmaf_session_free(w->s, addr[i]));
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t buf[REC_LEN];

    for (unsigned r = 0; r < ROUNDS; r++) {
        hmaf_atomic_t ops[5];
        hmaf_req_t req;
        for (int i = 0; i < 5; i++) {
            ops[i] = (hmaf_atomic_t){.op = HMAF_ATOMIC_FADD,
                                     .size = i % 2 ? 4 : 8,
                                     .remote_addr = words + 8 * (uint64_t)i,
                                     .operand = 1};
        }
        if (r % 2) {
            CHECK_OK(hmaf_session_atomic_post(w->s, ops, 5, &req));
            alloc_round(w, r);
            CHECK_OK(hmaf_request_wait(w->s, req));
        } else {
            CHECK_OK(hmaf_session_atomic(w->s, ops, 5));
            alloc_round(w, r);
        }
        w->adds++;
        CHECK_OK(hmaf_session_notify(w->s, (uint32_t)(r % TAGS), r));
        w->notes[r % TAGS]++;
        if (w->id < 4) {
            uint64_t count = 0;
            int ret = hmaf_session_ring_wait(w->s, 0, &count, NULL);
            CHECK(ret == 0 || ret == HMAF_ETIMEDOUT);
            w->rings += count;
        }
        if (r % 4 == 0) {
            int ret = hmaf_session_read_consistent(w->s, rec, buf, rec, REC_LEN,
                                                   0);
            CHECK(ret == 0 || ret == HMAF_EBUSY);
            for (unsigned i = 9; ret == 0 && i < REC_LEN; i++) {
                CHECK_EQ(buf[i], buf[8]);
            }
            w->reads++;
        }
    }
    return NULL;
}

static void test_threads(void)
{
    struct target t;
    hmaf_session_t *s, *s2;
    struct worker w[THREADS];
    pthread_t th[THREADS];
    hmaf_heap_stats_t start = HMAF_HEAP_STATS_INIT, end = HMAF_HEAP_STATS_INIT;
    uint64_t id, adds = 0, notes[TAGS] = {0}, rings = 0, count = 0;
    int sent_rings = 0;

    start_host(&t);
    s = target_connect(&t);
    s2 = target_connect(&t);
    find_roots(s);
    start = host_stats(&t);
    CHECK_EQ(target_command(&t, 'w'), 1);
    CHECK_OK(hmaf_session_id(s, &id));
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.s = i % 3 == 2 ? s2 : s, .id = i};
        CHECK(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
    }
    sh->ring_to = id;
    for (int i = 0; i < 200; i++) {
        CHECK_EQ(target_command(&t, 'g'), 1);
        sent_rings++;
        CHECK_EQ(target_command(&t, 'N'), 1);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        adds += w[i].adds;
        rings += w[i].rings;
        for (int k = 0; k < TAGS; k++) {
            notes[k] += w[i].notes[k];
        }
    }
    CHECK_EQ(target_command(&t, 'W'), 1);
    /* Every ring counted once, by some taker. */
    if (hmaf_session_ring_wait(s, 0, &count, NULL) == 0) {
        rings += count;
    }
    CHECK_EQ(rings, (uint64_t)sent_rings);
    CHECK_EQ(target_command(&t, 'N'), 1);
    for (int k = 0; k < TAGS; k++) {
        CHECK_EQ(sh->counts[k], notes[k]);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(read64(s, words + 8 * (uint64_t)i), adds);
    }
    CHECK_OK(hmaf_session_heap_flush(s));
    CHECK_OK(hmaf_session_heap_flush(s2));
    end = host_stats(&t);
    CHECK_EQ(end.bytes_in_use, start.bytes_in_use);
    CHECK_EQ(end.blocks_in_use, start.blocks_in_use);
    CHECK_EQ(end.bytes_reserved, start.bytes_reserved);
    CHECK_EQ(end.bytes_cached_by_sessions, 0);
    CHECK_EQ(end.bad_frees, 0);
    hmaf_session_destroy(s);
    hmaf_session_destroy(s2);
    printf("threads: %llu atomic rounds, %llu rings, host wrote the record "
           "%llu times\n",
           (unsigned long long)adds, (unsigned long long)rings,
           (unsigned long long)sh->writes);
    CHECK_EQ(target_stop(&t), 0);
}

/* --- peers dying --------------------------------------------------------- */

/* Dpu processes SIGKILLed while their threads are inside atomics, allocs
 * and notifies: the host serves a live session meanwhile and after, and
 * keeps no fd of theirs; what they leave in the heap is their cache. */
static void *busy_main(void *arg)
{
    struct worker *w = arg;

    for (unsigned r = 0;; r++) {
        uint64_t a;
        hmaf_atomic_t ops[HMAF_ATOMIC_BATCH_MAX + 3];
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
            ops[i] = (hmaf_atomic_t){.op = HMAF_ATOMIC_FADD, .size = 8,
                                     .remote_addr = words + 64, .operand = 1};
        }
        (void)hmaf_session_atomic(w->s, ops, sizeof(ops) / sizeof(ops[0]));
        if (hmaf_session_alloc(w->s, 16 + r % 2000, &a) == 0) {
            (void)hmaf_session_free(w->s, a);
        }
        (void)hmaf_session_notify(w->s, (uint32_t)(r % TAGS), r);
    }
    return NULL;
}

/* One of test_kill's dpu processes, forked before the test connects
 * (dpu_child_fork). */
static void killed_main(void *arg)
{
    struct worker w[4];
    pthread_t th[4];
    hmaf_session_t *ks = target_connect(arg);

    atomic_fetch_add(&sh->kill_connected, 1);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.s = ks, .id = i};
        pthread_create(&th[i], NULL, busy_main, &w[i]);
    }
    pause();
}

static void test_kill(void)
{
    struct target t;
    struct dpu_child child[KILLS];
    hmaf_session_t *s;
    hmaf_heap_stats_t start = HMAF_HEAP_STATS_INIT, end = HMAF_HEAP_STATS_INIT;
    int fds;

    start_host(&t);
    for (int round = 0; round < KILLS; round++) {
        child[round] = dpu_child_fork(killed_main, &t);
    }
    s = target_connect(&t);
    find_roots(s);
    start = host_stats(&t);
    CHECK_EQ(target_command(&t, 'F'), 1);
    fds = sh->fds;
    for (int round = 0; round < KILLS; round++) {
        pid_t pid = child[round].pid;
        dpu_child_start(&child[round]);
        usleep(20000 + 15000 * (useconds_t)round);
        CHECK_EQ(kill(pid, SIGKILL), 0);
        CHECK_EQ(waitpid(pid, NULL, 0), pid);
        /* The live session is served meanwhile. */
        CHECK_OK(hmaf_session_fetch_add64(s, words + 128, 1, NULL));
        CHECK_EQ(target_command(&t, 'N'), 1);
    }
    for (int i = 0; i < 1000 && target_command(&t, 's') != 1; i++) {
        usleep(10000);
    }
    CHECK_EQ(target_command(&t, 's'), 1);
    CHECK_EQ(read64(s, words + 128), KILLS);
    CHECK_EQ(target_command(&t, 'F'), 1);
    CHECK_EQ(sh->fds, fds);
    end = host_stats(&t);
    printf("kill: %d of %d connected before their kill; "
           "in use %llu -> %llu, lost %llu -> %llu\n",
           atomic_load(&sh->kill_connected), KILLS,
           (unsigned long long)start.bytes_in_use,
           (unsigned long long)end.bytes_in_use,
           (unsigned long long)start.bytes_lost,
           (unsigned long long)end.bytes_lost);
    /* Left behind: each one's cache (counted in bytes_lost), its frees
     * not sent yet and a block per thread between alloc and free (not
     * counted: heap.h), all under 2 KiB here. */
    CHECK(end.bytes_in_use - start.bytes_in_use <=
          end.bytes_lost - start.bytes_lost + KILLS * (220 + 4) * 2048);
    CHECK_EQ(end.bytes_cached_by_sessions, 0);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

/* The host stopped: every waiting call ends within its timeout (no
 * assertion of time: an alarm turns a hang into a failure). */
static void test_stop(void)
{
    struct target t;
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint64_t a;
    hmaf_atomic_t op = {.op = HMAF_ATOMIC_FADD, .size = 8, .operand = 1};
    hmaf_req_t req;
    uint8_t buf[64];
    int ret;

    start_host(&t);
    target_session_params(&t, &p);
    p.rpc_timeout_ms = 300;
    s = target_connect_params(&p);
    find_roots(s);
    op.remote_addr = words;
    CHECK_OK(hmaf_session_alloc(s, 64, &a));
    CHECK_OK(hmaf_session_read(s, buf, rec, sizeof(buf)));
    target_pause(&t);
    alarm(60);
    CHECK_ERR(hmaf_session_ring_wait(s, 200, NULL, NULL), HMAF_ETIMEDOUT);
    CHECK_ERR(hmaf_session_atomic(s, &op, 1), HMAF_ETIMEDOUT);
    CHECK_ERR(op.status, HMAF_ETIMEDOUT);
    CHECK_OK(hmaf_session_atomic_post(s, &op, 1, &req));
    CHECK_ERR(hmaf_request_wait(s, req), HMAF_ETIMEDOUT);
    CHECK_ERR(hmaf_session_notify(s, 1, 1), HMAF_ETIMEDOUT);
    CHECK_ERR(hmaf_session_alloc(s, 40000, &a), HMAF_ETIMEDOUT);
    ret = hmaf_session_read_consistent(s, rec, buf, rec + 8, 64, 0);
    CHECK_OK(ret); /* registered before: no round trip */
    CHECK_EQ(kill(t.pid, SIGCONT), 0);
    CHECK_OK(hmaf_session_fetch_add64(s, words, 1, NULL));
    CHECK_OK(hmaf_session_notify(s, 1, 1));
    alarm(0);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
}

/* The host killed while dpu threads wait in ring_wait(-1), atomics,
 * allocations: each returns HMAF_ECONNRESET. */
static void *wait_forever(void *arg)
{
    hmaf_session_t *s = arg;

    return (void *)(intptr_t)hmaf_session_ring_wait(s, -1, NULL, NULL);
}

static void *atomics_forever(void *arg)
{
    hmaf_session_t *s = arg;
    uint64_t a;
    int ret;

    do {
        ret = hmaf_session_fetch_add64(s, words, 1, NULL);
        if (ret == 0) {
            ret = hmaf_session_alloc(s, 64, &a);
        }
    } while (ret == 0);
    return (void *)(intptr_t)ret;
}

static void test_death(void)
{
    struct target t;
    hmaf_session_t *s;
    pthread_t th[4];
    void *ret;

    start_host(&t);
    s = target_connect(&t);
    find_roots(s);
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_create(&th[i], NULL,
                             i < 2 ? wait_forever : atomics_forever, s) == 0);
    }
    usleep(50000);
    alarm(60);
    target_kill(&t);
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(th[i], &ret) == 0);
        CHECK_ERR((int)(intptr_t)ret, HMAF_ECONNRESET);
    }
    alarm(0);
    CHECK_ERR(hmaf_session_ring_wait(s, -1, NULL, NULL), HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_notify(s, 1, 1), HMAF_ECONNRESET);
    hmaf_session_destroy(s);
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "inputs";

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    if (strcmp(which, "inputs") == 0) {
        test_inputs();
    } else if (strcmp(which, "threads") == 0) {
        test_threads();
    } else if (strcmp(which, "kill") == 0) {
        test_kill();
    } else if (strcmp(which, "stop") == 0) {
        test_stop();
    } else if (strcmp(which, "death") == 0) {
        test_death();
    } else {
        fprintf(stderr, "unknown case %s\n", which);
        return 2;
    }
    return 0;
}
