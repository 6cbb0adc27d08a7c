/*
 * Remote atomics against a real host (atomic.h): every op on 4 and 8
 * bytes, CAS both ways, the host's own atomics racing the dpu side's on
 * one word, the errors, batches of several requests, posted batches, a
 * malformed ATOMIC request written raw into the mailbox, revocation (also
 * while dpu threads add to the word: none lands after it), posted batches
 * left behind, and the host dying mid-batch.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "proto/atomic.h"
#include "raw_slot.h"
#include "target.h"

/* The host: "words", WORDS_LEN bytes exposed read-write as two exposures
 * that meet at SEAM (so an aligned 8-byte word can straddle them); "ro"
 * read-only; "hole" never exposed; "rev" read-write until command 'r'.
 * Commands: 'h' starts HOST_THREADS threads doing __atomic_fetch_add(1) on
 * the word at COUNTER; 'j' stops and joins them and stores how many adds
 * they made at HOST_TOTAL; 'r' revokes "rev" (1 on success). */
#define WORDS_LEN 65536u
#define SEAM (32768u + 4)
#define PAGE 4096u
#define COUNTER 256u
#define HOST_TOTAL 264u
#define HOST_THREADS 2

struct host {
    uint64_t *words;
    uint8_t *ro, *hole, *rev, *rev2;
    pthread_t threads[HOST_THREADS];
    uint64_t adds[HOST_THREADS];
    _Atomic int stop; /* the adders read it while the host sets it */
};

static struct host host_state;

static int setup(hmaf_agent_t *agent, void *arg)
{
    struct host *h = arg;
    int ret;

    h->words = aligned_alloc(PAGE, WORDS_LEN);
    h->ro = aligned_alloc(PAGE, PAGE);
    h->hole = aligned_alloc(PAGE, PAGE);
    h->rev = aligned_alloc(PAGE, PAGE);
    h->rev2 = aligned_alloc(PAGE, PAGE);
    if (h->words == NULL || h->ro == NULL || h->hole == NULL ||
        h->rev == NULL || h->rev2 == NULL) {
        return HMAF_ENOMEM;
    }
    memset(h->words, 0, WORDS_LEN);
    ret = hmaf_agent_expose(agent, h->words, SEAM, HMAF_ACCESS_READ_WRITE);
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, (uint8_t *)h->words + SEAM,
                                WORDS_LEN - SEAM, HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->ro, PAGE, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->rev, PAGE, HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        memset(h->rev2, 0, PAGE);
        ret = hmaf_agent_expose(agent, h->rev2, PAGE, HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "words", h->words, WORDS_LEN);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "ro", h->ro, PAGE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "hole", h->hole, PAGE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "rev", h->rev, PAGE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "rev2", h->rev2, PAGE);
    }
    return ret;
}

static void *host_adder(void *arg)
{
    uint64_t *adds = arg;
    uint64_t *counter = &host_state.words[COUNTER / 8];

    while (!atomic_load_explicit(&host_state.stop, memory_order_relaxed)) {
        __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
        (*adds)++;
    }
    return NULL;
}

/* Revoke "rev2" while dpu threads add to its first word; then the word
 * must stay as it is: 1 when it did, 2 when no add had landed before. */
static int revoke_then_watch(hmaf_agent_t *agent, struct host *h)
{
    uint64_t *w = (uint64_t *)h->rev2;
    uint64_t at_revoke;

    if (hmaf_agent_revoke(agent, h->rev2, PAGE) != 0) {
        return 0;
    }
    at_revoke = __atomic_load_n(w, __ATOMIC_SEQ_CST);
    /* the agent serves on meanwhile: a late add would show */
    nanosleep(&(struct timespec){0, 30000000}, NULL);
    if (__atomic_load_n(w, __ATOMIC_SEQ_CST) != at_revoke) {
        return 0;
    }
    return at_revoke == 0 ? 2 : 1;
}

static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    struct host *h = arg;
    uint64_t total = 0;

    switch (cmd) {
    case 'h':
        atomic_store(&h->stop, 0);
        for (int i = 0; i < HOST_THREADS; i++) {
            h->adds[i] = 0;
            pthread_create(&h->threads[i], NULL, host_adder, &h->adds[i]);
        }
        return 1;
    case 'j':
        atomic_store(&h->stop, 1);
        for (int i = 0; i < HOST_THREADS; i++) {
            pthread_join(h->threads[i], NULL);
            total += h->adds[i];
        }
        __atomic_store_n(&h->words[HOST_TOTAL / 8], total, __ATOMIC_SEQ_CST);
        return 1;
    case 'r':
        return hmaf_agent_revoke(agent, h->rev, PAGE) == 0;
    case 'R':
        return revoke_then_watch(agent, h);
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

static uint64_t words, ro, hole, rev, rev2;


static uint64_t read64(hmaf_session_t *s, uint64_t addr)
{
    uint64_t v = 0;

    CHECK_OK(hmaf_session_read(s, &v, addr, 8));
    return v;
}

static void write64(hmaf_session_t *s, uint64_t addr, uint64_t v)
{
    CHECK_OK(hmaf_session_write(s, addr, &v, 8));
}

static hmaf_atomic_t op_at(hmaf_atomic_op_t code, unsigned size, uint64_t addr,
                           uint64_t operand, uint64_t compare)
{
    return (hmaf_atomic_t){.op = code,
                           .size = size,
                           .remote_addr = addr,
                           .operand = operand,
                           .compare = compare,
                           .old = 0xdead,
                           .status = 1};
}

/* What op makes of a word (4 bytes: the low halves only). */
static uint64_t model(hmaf_atomic_op_t code, uint64_t mask, uint64_t w,
                      uint64_t operand, uint64_t compare)
{
    operand &= mask;
    switch (code) {
    case HMAF_ATOMIC_FADD:
        return (w + operand) & mask;
    case HMAF_ATOMIC_SWAP:
        return operand;
    case HMAF_ATOMIC_CAS:
        return w == (compare & mask) ? operand : w;
    case HMAF_ATOMIC_FAND:
        return w & operand;
    case HMAF_ATOMIC_FOR:
        return w | operand;
    default:
        return w ^ operand;
    }
}

/* One op on a word that holds `before`: its old value and what the word
 * holds afterwards (read back from the host), and (4 bytes) the other
 * half untouched. */
static void check_op(hmaf_session_t *s, hmaf_atomic_op_t code, unsigned size,
                     uint64_t before, uint64_t operand, uint64_t compare)
{
    uint64_t at = words + 1024;
    const uint64_t fence = 0x51515151ull << 32;
    hmaf_atomic_t op = op_at(code, size, at, operand, compare);
    uint64_t mask = size == 8 ? UINT64_MAX : 0xffffffffull;
    uint64_t after = model(code, mask, before & mask, operand, compare);

    write64(s, at, size == 8 ? before : fence | (before & mask));
    CHECK_OK(hmaf_session_atomic(s, &op, 1));
    CHECK_EQ(op.status, 0);
    CHECK_EQ(op.old, before & mask);
    CHECK_EQ(read64(s, at), size == 8 ? after : fence | after);
}

static void check_every_op(hmaf_session_t *s)
{
    const uint64_t hi = 0xabcdef0100000000ull; /* ignored by 4-byte ops */

    for (unsigned size = 4; size <= 8; size += 4) {
        uint64_t m = size == 8 ? UINT64_MAX : 0xffffffffull;
        for (hmaf_atomic_op_t code = HMAF_ATOMIC_FADD;
             code <= HMAF_ATOMIC_FXOR; code++) {
            check_op(s, code, size, m - 1, hi | 3, 0);
            check_op(s, code, size, 0xff00ff, hi | 0x0ff0f0, 0xff00ff);
        }
        /* CAS: the word matches (swapped) or not (kept); a 4-byte
         * compare's high half does not count */
        check_op(s, HMAF_ATOMIC_CAS, size, 7, hi | 9, size == 8 ? 7 : hi | 7);
        CHECK_EQ(read64(s, words + 1024) & m, (hi | 9) & m);
        check_op(s, HMAF_ATOMIC_CAS, size, 8, hi | 9, size == 8 ? 7 : hi | 7);
        CHECK_EQ(read64(s, words + 1024) & m, 8);
    }
}

static void check_convenience(hmaf_session_t *s)
{
    uint64_t at = words + 2048;
    uint64_t old = 0;

    write64(s, at, 40);
    CHECK_OK(hmaf_session_fetch_add64(s, at, 2, &old));
    CHECK_EQ(old, 40);
    CHECK_OK(hmaf_session_fetch_add64(s, at, 1, NULL));
    CHECK_OK(hmaf_session_swap64(s, at, 100, &old));
    CHECK_EQ(old, 43);
    CHECK_OK(hmaf_session_cas64(s, at, 99, 5, &old)); /* fails: no swap */
    CHECK_EQ(old, 100);
    CHECK_EQ(read64(s, at), 100);
    CHECK_OK(hmaf_session_cas64(s, at, 100, 5, &old)); /* succeeds */
    CHECK_EQ(old, 100);
    CHECK_EQ(read64(s, at), 5);
}

/* A batch of every kind of failure and good ops between them: each op
 * says its own, the good ones still ran, the call the first error. */
static void check_errors(hmaf_session_t *s)
{
    uint64_t at = words + 4096;
    hmaf_atomic_t ops[] = {
        op_at(HMAF_ATOMIC_FADD, 8, at, 1, 0),
        op_at(HMAF_ATOMIC_FADD, 8, at + 4, 1, 0),        /* misaligned */
        op_at(HMAF_ATOMIC_FADD, 8, hole, 1, 0),          /* not exposed */
        op_at(HMAF_ATOMIC_FADD, 8, ro, 1, 0),            /* read-only */
        op_at(HMAF_ATOMIC_FADD, 8, words + SEAM - 4, 1, 0), /* straddles */
        op_at(HMAF_ATOMIC_FADD, 3, at, 1, 0),            /* bad size */
        op_at(0, 8, at, 1, 0),                           /* bad op */
        op_at(7, 8, at, 1, 0),                           /* bad op */
        op_at(HMAF_ATOMIC_FADD, 4, words + SEAM - 4, 1, 0), /* inside */
        op_at(HMAF_ATOMIC_FADD, 8, words + WORDS_LEN, 1, 0), /* past end */
        op_at(HMAF_ATOMIC_FADD, 8, at, 1, 0),
    };
    int want[] = {0, HMAF_EINVAL, HMAF_EFAULT, HMAF_EACCES, HMAF_EFAULT,
                  HMAF_EINVAL, HMAF_EINVAL, HMAF_EINVAL, 0, HMAF_EFAULT, 0};
    size_t n = sizeof(ops) / sizeof(ops[0]);

    write64(s, at, 10);
    CHECK_ERR(hmaf_session_atomic(s, ops, n), HMAF_EINVAL);
    for (size_t i = 0; i < n; i++) {
        CHECK_ERR(ops[i].status, want[i]);
    }
    CHECK_EQ(ops[0].old, 10);
    CHECK_EQ(ops[10].old, 11);
    CHECK_EQ(read64(s, at), 12);
    /* the first failure decides the call's return */
    CHECK_ERR(hmaf_session_atomic(s, &ops[3], 2), HMAF_EACCES);
    CHECK_ERR(hmaf_session_atomic(s, &ops[2], 1), HMAF_EFAULT);
    CHECK_ERR(hmaf_session_atomic(NULL, ops, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_atomic(s, NULL, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_atomic(s, ops, 0), HMAF_EINVAL);
}

/* The ucx engine performs atomics itself (atomic.h): no mailbox round
 * trip. */
static int engine_performs_atomics(void)
{
    const char *engine = getenv("HMAF_ENGINE");

    return engine != NULL && strcmp(engine, "ucx") == 0;
}

/* More ops than one request holds: several round trips, in order. */
static void check_large_batch(hmaf_session_t *s)
{
    enum { N = 3 * HMAF_ATOMIC_BATCH_MAX - 5 };
    static hmaf_atomic_t ops[N];
    uint64_t at = words + 8192;
    hmaf_session_stats_t before = HMAF_SESSION_STATS_INIT;
    hmaf_session_stats_t after = HMAF_SESSION_STATS_INIT;

    write64(s, at, 0);
    for (size_t i = 0; i < N; i++) {
        ops[i] = op_at(HMAF_ATOMIC_FADD, 8, at, 1, 0);
    }
    ops[7].remote_addr = ro; /* one failing op does not stop the others */
    CHECK_OK(hmaf_session_stats(s, &before));
    CHECK_ERR(hmaf_session_atomic(s, ops, N), HMAF_EACCES);
    CHECK_OK(hmaf_session_stats(s, &after));
    CHECK_EQ(after.mailbox_round_trips - before.mailbox_round_trips,
             engine_performs_atomics() ? 0 : 3);
    CHECK_EQ(read64(s, at), N - 1);
    for (size_t i = 0, k = 0; i < N; i++) {
        if (i != 7) {
            CHECK_EQ(ops[i].status, 0);
            CHECK_EQ(ops[i].old, k++); /* performed in order */
        }
    }
}

/* Posted batches: many outstanding (more than the slots posts may hold:
 * those run inside their post), waited for; and one of several requests,
 * tested until done. */
static void check_posted(hmaf_session_t *s)
{
    enum { POSTS = 40, BIG = 2 * HMAF_ATOMIC_BATCH_MAX + 3 };
    static hmaf_atomic_t ops[POSTS][2], big[BIG];
    hmaf_req_t req[POSTS], big_req;
    uint64_t at = words + 12288;
    int ret;

    write64(s, at, 0);
    for (int i = 0; i < POSTS; i++) {
        ops[i][0] = op_at(HMAF_ATOMIC_FADD, 8, at, 1, 0);
        ops[i][1] = op_at(HMAF_ATOMIC_FADD, 4, at + 8, 1, 0);
        CHECK_OK(hmaf_session_atomic_post(s, ops[i], 2, &req[i]));
    }
    for (int i = 0; i < POSTS; i++) {
        CHECK_OK(hmaf_request_wait(s, req[i]));
        CHECK_EQ(ops[i][0].status, 0);
        CHECK_EQ(ops[i][1].status, 0);
    }
    CHECK_EQ(read64(s, at), POSTS);
    CHECK_EQ(read64(s, at + 8), POSTS);
    CHECK_ERR(hmaf_request_test(s, req[0]), HMAF_ESTALE);

    for (int i = 0; i < BIG; i++) {
        big[i] = op_at(HMAF_ATOMIC_FADD, 8, at + 16, 2, 0);
    }
    big[BIG - 1].remote_addr = hole;
    CHECK_OK(hmaf_session_atomic_post(s, big, BIG, &big_req));
    while ((ret = hmaf_request_test(s, big_req)) == HMAF_EINPROGRESS) {
    }
    CHECK_ERR(ret, HMAF_EFAULT);
    CHECK_EQ(big[BIG - 1].status, HMAF_EFAULT);
    CHECK_EQ(read64(s, at + 16), 2 * (BIG - 1));
    CHECK_EQ(big[BIG - 2].old, 2 * (BIG - 2));

    CHECK_ERR(hmaf_session_atomic_post(s, big, 1, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_atomic_post(s, big, 0, &big_req), HMAF_EINVAL);
}

/* Dpu threads adding to the word the host's threads add to. */
struct adder {
    hmaf_session_t *s;
    uint64_t batches;
    size_t per_batch;
    int posted;
};

static void *dpu_adder(void *arg)
{
    struct adder *a = arg;
    hmaf_atomic_t ops[16];
    hmaf_req_t req;

    for (uint64_t b = 0; b < a->batches; b++) {
        for (size_t i = 0; i < a->per_batch; i++) {
            ops[i] = op_at(HMAF_ATOMIC_FADD, 8, words + COUNTER, 1, 0);
        }
        if (a->posted) {
            CHECK_OK(hmaf_session_atomic_post(a->s, ops, a->per_batch, &req));
            CHECK_OK(hmaf_request_wait(a->s, req));
        } else {
            CHECK_OK(hmaf_session_atomic(a->s, ops, a->per_batch));
        }
    }
    return NULL;
}

static void check_race(struct target *t, hmaf_session_t *s1,
                       hmaf_session_t *s2)
{
    struct adder adders[] = {
        {s1, 300, 1, 0}, {s1, 100, 16, 0}, {s1, 200, 2, 1}, {s2, 150, 7, 0}};
    enum { N = sizeof(adders) / sizeof(adders[0]) };
    pthread_t th[N];
    uint64_t dpu_total = 0;

    write64(s1, words + COUNTER, 0);
    CHECK_EQ(target_command(t, 'h'), 1);
    for (int i = 0; i < N; i++) {
        dpu_total += adders[i].batches * adders[i].per_batch;
        CHECK(pthread_create(&th[i], NULL, dpu_adder, &adders[i]) == 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_EQ(target_command(t, 'j'), 1);
    CHECK_EQ(read64(s1, words + COUNTER),
             read64(s1, words + HOST_TOTAL) + dpu_total);
}

/* Raw ATOMIC requests around the session's client: malformed ones are
 * refused whole, an unknown op in a well-formed one is that op's
 * failure, and the agent serves on. */
static void check_raw(struct target *t, hmaf_session_t *s)
{
    struct hmaf_wire_atomic w[HMAF_ATOMIC_BATCH_MAX];
    uint8_t p[HMAF_MBOX_REQ_LONG_MAX + 16], resp[HMAF_MBOX_RESP_MAX];
    struct hmaf_wire_atomic_result res[2];
    struct raw raw;
    uint16_t len, resp_len = 0;

    raw_init(&raw, t->pid, s);
    memset(p, 0, sizeof(p));
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, NULL, 0, 0, NULL, NULL),
             HMAF_EPROTO);
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, p, 2, 2, NULL, NULL),
             HMAF_EPROTO); /* count 0 */
    for (int i = 0; i < 2; i++) {
        w[i] = (struct hmaf_wire_atomic){.op = HMAF_ATOMIC_FADD, .size = 8,
                                         .addr = words + 16384, .operand = 1};
    }
    len = (uint16_t)hmaf__req_atomic_encode(w, 2, p);
    CHECK_EQ(len, 54);
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, p, len - 1, len - 1, NULL, NULL),
             HMAF_EPROTO);
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, p, len + 1, len + 1, NULL, NULL),
             HMAF_EPROTO);
    p[0] = 3; /* claims one op more than it carries */
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, p, len, len, NULL, NULL),
             HMAF_EPROTO);
    p[0] = HMAF_ATOMIC_BATCH_MAX + 1;
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, p, 200, 200, NULL, NULL),
             HMAF_EPROTO);
    /* well-formed, one op unknown: only that op fails */
    w[1].op = 99;
    len = (uint16_t)hmaf__req_atomic_encode(w, 2, p);
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, p, len, len, resp, &resp_len), 0);
    CHECK_OK(hmaf__resp_atomic_decode(resp, resp_len, 2, res));
    CHECK_EQ(res[0].status, 0);
    CHECK_EQ(res[1].status, HMAF_EINVAL);
    /* a long request one byte past a full batch, where long ones go */
    for (int i = 0; i < HMAF_ATOMIC_BATCH_MAX; i++) {
        w[i] = w[0];
    }
    len = (uint16_t)hmaf__req_atomic_encode(w, HMAF_ATOMIC_BATCH_MAX, p);
    raw_poke(&raw, raw.slot + HMAF_MBOX_RESP_PAYLOAD, p, len + 1u);
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, NULL, 0, len + 1, NULL, NULL),
             HMAF_EPROTO);
    raw_poke(&raw, raw.slot + HMAF_MBOX_RESP_PAYLOAD, p, len);
    CHECK_EQ(raw_call(&raw, HMAF_OP_ATOMIC, NULL, 0, len, NULL, NULL), 0);
    CHECK_EQ(read64(s, words + 16384), 1 + HMAF_ATOMIC_BATCH_MAX);
    CHECK_OK(hmaf_session_fetch_add64(s, words + 16384, 1, NULL));
    CHECK_OK(hmaf_session_ping(s));
}

static void check_revoke(struct target *t, hmaf_session_t *s)
{
    CHECK_OK(hmaf_session_fetch_add64(s, rev, 1, NULL));
    CHECK_EQ(target_command(t, 'r'), 1);
    CHECK_ERR(hmaf_session_fetch_add64(s, rev, 1, NULL), HMAF_EFAULT);
}

/* Dpu threads add to a word as fast as they can, blocking and posted,
 * while the host revokes its exposure: no add lands after the revocation
 * returned, and every add after it fails with HMAF_EFAULT. */
struct hammer {
    hmaf_session_t *s;
    int posted;
    _Atomic uint64_t adds;
    _Atomic int *stop;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;

    while (!atomic_load(h->stop)) {
        hmaf_atomic_t ops[4];
        hmaf_req_t req;
        int ret;
        for (int i = 0; i < 4; i++) {
            ops[i] = op_at(HMAF_ATOMIC_FADD, 8, rev2, 1, 0);
        }
        if (h->posted) {
            CHECK_OK(hmaf_session_atomic_post(h->s, ops, 4, &req));
            ret = hmaf_request_wait(h->s, req);
        } else {
            ret = hmaf_session_atomic(h->s, ops, 4);
        }
        CHECK(ret == 0 || ret == HMAF_EFAULT);
        atomic_fetch_add(&h->adds, ret == 0);
    }
    return NULL;
}

static void check_revoke_race(struct target *t, hmaf_session_t *s1,
                              hmaf_session_t *s2)
{
    _Atomic int stop = 0;
    struct hammer h[3] = {{.s = s1, .stop = &stop},
                          {.s = s1, .posted = 1, .stop = &stop},
                          {.s = s2, .stop = &stop}};
    pthread_t th[3];
    uint64_t v = 0;

    for (int i = 0; i < 3; i++) {
        CHECK(pthread_create(&th[i], NULL, hammer_main, &h[i]) == 0);
    }
    while (atomic_load(&h[0].adds) + atomic_load(&h[1].adds) +
               atomic_load(&h[2].adds) < 100) {
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    CHECK_EQ(target_command(t, 'R'), 1);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_ERR(hmaf_session_fetch_add64(s1, rev2, 1, &v), HMAF_EFAULT);
}

/* Posted batches left behind: by a thread that ended without completing
 * them, and outstanding when their session is destroyed. Nothing leaks
 * (the sanitizer builds tell), and the host serves other sessions on. */
static void *post_and_leave(void *arg)
{
    static hmaf_atomic_t ops[2 * HMAF_ATOMIC_BATCH_MAX + 1];
    hmaf_req_t req;

    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        ops[i] = op_at(HMAF_ATOMIC_FADD, 8, words + 20480, 1, 0);
    }
    CHECK_OK(hmaf_session_atomic_post(arg, ops, sizeof(ops) / sizeof(ops[0]),
                                      &req));
    return NULL;
}

static void check_left_behind(struct target *t, hmaf_session_t *other)
{
    static hmaf_atomic_t ops[8][HMAF_ATOMIC_BATCH_MAX + 1];
    hmaf_session_t *s = target_connect(t);
    hmaf_req_t req;
    pthread_t th;

    CHECK(pthread_create(&th, NULL, post_and_leave, s) == 0);
    pthread_join(th, NULL);
    for (int b = 0; b < 8; b++) {
        for (int i = 0; i <= HMAF_ATOMIC_BATCH_MAX; i++) {
            ops[b][i] = op_at(HMAF_ATOMIC_FADD, 8, words + 20488, 1, 0);
        }
        CHECK_OK(hmaf_session_atomic_post(s, ops[b],
                                          HMAF_ATOMIC_BATCH_MAX + 1, &req));
    }
    hmaf_session_destroy(s);
    CHECK_OK(hmaf_session_fetch_add64(other, words + 20488, 0, NULL));
}

/* The host dies while a long batch runs, and with a posted one
 * outstanding: HMAF_ECONNRESET, never a hang. */
struct long_batch {
    hmaf_session_t *s;
    hmaf_atomic_t *ops;
    size_t n;
    int ret;
};

static void *run_long(void *arg)
{
    struct long_batch *lb = arg;

    lb->ret = hmaf_session_atomic(lb->s, lb->ops, lb->n);
    return NULL;
}

static void check_host_death(void)
{
    enum { N = 200000 };
    struct target t;
    hmaf_session_t *s;
    struct long_batch lb = {.n = N};
    hmaf_atomic_t posted = op_at(HMAF_ATOMIC_FADD, 8, 0, 1, 0);
    hmaf_req_t req;
    pthread_t th;
    size_t reset = 0;

    start_host(&t);
    s = target_connect(&t);
    lb.s = s;
    lb.ops = calloc(N, sizeof(*lb.ops));
    CHECK(lb.ops != NULL);
    posted.remote_addr = target_root(s, "words");
    for (size_t i = 0; i < N; i++) {
        lb.ops[i] = op_at(HMAF_ATOMIC_FADD, 8, posted.remote_addr, 1, 0);
    }
    CHECK(pthread_create(&th, NULL, run_long, &lb) == 0);
    nanosleep(&(struct timespec){0, 2000000}, NULL); /* mid-batch, mostly */
    CHECK_OK(hmaf_session_atomic_post(s, &posted, 1, &req));
    target_kill(&t);
    pthread_join(th, NULL);
    CHECK_ERR(lb.ret, HMAF_ECONNRESET);
    for (size_t i = 0; i < N; i++) {
        CHECK(lb.ops[i].status == 0 || lb.ops[i].status == HMAF_ECONNRESET);
        reset += lb.ops[i].status == HMAF_ECONNRESET;
    }
    CHECK(reset > 0);
    CHECK_EQ(lb.ops[N - 1].status, HMAF_ECONNRESET);
    {
        int ret = hmaf_request_wait(s, req);
        CHECK(ret == 0 || ret == HMAF_ECONNRESET);
    }
    CHECK_ERR(hmaf_session_fetch_add64(s, posted.remote_addr, 1, NULL),
              HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_atomic_post(s, &posted, 1, &req),
              HMAF_ECONNRESET);
    hmaf_session_destroy(s);
    free(lb.ops);
}

int main(void)
{
    struct target t;
    hmaf_session_t *s1, *s2;

    start_host(&t);
    s1 = target_connect(&t);
    s2 = target_connect(&t);
    words = target_root(s1, "words");
    ro = target_root(s1, "ro");
    hole = target_root(s1, "hole");
    rev = target_root(s1, "rev");
    rev2 = target_root(s1, "rev2");
    check_every_op(s1);
    check_convenience(s1);
    check_errors(s1);
    check_large_batch(s1);
    check_posted(s1);
    check_race(&t, s1, s2);
    check_raw(&t, s2);
    check_revoke(&t, s1);
    check_revoke_race(&t, s1, s2);
    check_left_behind(&t, s1);
    hmaf_session_destroy(s2);
    hmaf_session_destroy(s1);
    CHECK_EQ(target_stop(&t), 0);
    check_host_death();
    return 0;
}
