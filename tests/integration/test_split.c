/*
 * Transfers of 1 MiB and more split over helper threads (cma; params
 * split_threads, $HMAF_SPLIT_THREADS): the settings and their checks;
 * bytes at odd sizes and offsets, across an exposure boundary, vectored
 * and posted; an unmapped host page inside a transfer gives the error an
 * unsplit call gives; several threads at once; a revocation during split
 * writes is still a fence; a forked child's copy of a session with
 * helpers is an orphan and a new session there splits anew.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "fence.h"
#include "target.h"
#include "util/compiler.h"

/* The host: "area", AREA_LEN bytes of pattern 1, exposed read-write as two
 * exposures meeting at SPLIT_AT (not page aligned). */
#define AREA_LEN (24u << 20)
#define SPLIT_AT ((10u << 20) + 123)
/* The page 'h' makes inaccessible, and 'H' gives back. */
#define HOLE_OFF (13u << 20)
#define THREADS  4

/* ThreadSanitizer loses track of a forked child's new threads: they get
 * the thread ids of the parent's, which it still counts as running. */
#if defined(__SANITIZE_THREAD__) /* gcc */
#define CHILD_MAY_START_THREADS 0
#elif defined(__has_feature) /* clang */
#if __has_feature(thread_sanitizer)
#define CHILD_MAY_START_THREADS 0
#endif
#endif
#ifndef CHILD_MAY_START_THREADS
#define CHILD_MAY_START_THREADS 1
#endif

static uint8_t *area;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    area = mmap(NULL, AREA_LEN, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        return HMAF_ENOMEM;
    }
    target_fill(area, AREA_LEN, 0, 1);
    return hmaf_agent_expose(agent, area, SPLIT_AT, HMAF_ACCESS_READ_WRITE) ||
           hmaf_agent_expose(agent, area + SPLIT_AT, AREA_LEN - SPLIT_AT,
                             HMAF_ACCESS_READ_WRITE) ||
           hmaf_agent_publish(agent, "area", area, AREA_LEN);
}

/* Revoke the second exposure, then fill it with the sentinel and see that
 * nothing writes there any more. */
static int revoke_and_watch(hmaf_agent_t *agent)
{
    if (hmaf_agent_revoke(agent, area + SPLIT_AT, AREA_LEN - SPLIT_AT) != 0) {
        return 2;
    }
    memset(area + SPLIT_AT, FENCE_SENTINEL, AREA_LEN - SPLIT_AT);
    fence_sleep_ms(100);
    return fence_changed(area + SPLIT_AT, AREA_LEN - SPLIT_AT) == 0;
}

static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    (void)arg;
    switch (cmd) {
    case 'h':
        return mprotect(area + HOLE_OFF, 4096, PROT_NONE) == 0;
    case 'H':
        return mprotect(area + HOLE_OFF, 4096, PROT_READ | PROT_WRITE) == 0;
    case 'r':
        return revoke_and_watch(agent);
    default:
        return 255;
    }
}

static struct target target;
static uint64_t base;
static uint8_t *buf; /* AREA_LEN */

static hmaf_session_t *connect_split(unsigned threads)
{
    hmaf_session_params_t p;

    target_session_params(&target, &p);
    p.split_threads = threads;
    return target_connect_params(&p);
}

static unsigned count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    unsigned n = 0;

    CHECK(d != NULL);
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n - 2; /* . and .. */
}

/* A joined thread may still be listed for a moment: its task ends just
 * after it wakes the joiner. */
static void await_threads(unsigned n)
{
    for (int i = 0; i < 5000 && count_threads() != n; i++) {
        fence_sleep_ms(1);
    }
    CHECK_EQ(count_threads(), n);
}

/* ------------------------------------------------------------------ */
/* Settings                                                            */
/* ------------------------------------------------------------------ */

/* Create a session with split_threads and $HMAF_SPLIT_THREADS (NULL:
 * unset); its resolved thread count, or the error. */
static int resolved(unsigned threads, const char *env, unsigned *out)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    int ret;

    target_session_params(&target, &p);
    p.split_threads = threads;
    if (env != NULL) {
        setenv("HMAF_SPLIT_THREADS", env, 1);
    } else {
        unsetenv("HMAF_SPLIT_THREADS");
    }
    ret = hmaf_session_create(&p, &s);
    unsetenv("HMAF_SPLIT_THREADS");
    if (ret == 0) {
        *out = s->ctx->split_threads;
        hmaf_session_destroy(s);
    }
    return ret;
}

static void test_settings(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned dflt = cpus < 1 ? 1 : cpus > 4 ? 4 : (unsigned)cpus;
    const char *bad[] = {
        "x", "65", "-1", "3x", " 3", "+2", "99999999999999999999"};
    hmaf_session_params_t p;
    hmaf_session_t *s;
    unsigned n = 0;

    CHECK_ERR(resolved(HMAF_SPLIT_THREADS_MAX + 1, NULL, &n), HMAF_EINVAL);
    CHECK_OK(resolved(HMAF_SPLIT_THREADS_MAX, NULL, &n));
    CHECK_EQ(n, HMAF_SPLIT_THREADS_MAX);
    CHECK_OK(resolved(0, NULL, &n));
    CHECK_EQ(n, dflt);
    CHECK_OK(resolved(0, "", &n));
    CHECK_EQ(n, dflt);
    CHECK_OK(resolved(0, "0", &n));
    CHECK_EQ(n, dflt);
    CHECK_OK(resolved(0, "3", &n));
    CHECK_EQ(n, 3);
    CHECK_OK(resolved(0, "64", &n));
    CHECK_EQ(n, 64);
    CHECK_OK(resolved(1, "5", &n)); /* the params' setting wins */
    CHECK_EQ(n, 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_ERR(resolved(0, bad[i], &n), HMAF_EINVAL);
    }
    CHECK_OK(resolved(2, "x", &n)); /* not looked at */
    CHECK_EQ(n, 2);
    /* A caller built before split_threads existed: the default. */
    target_session_params(&target, &p);
    p.size = offsetof(hmaf_session_params_t, split_threads);
    CHECK_OK(hmaf_session_create(&p, &s));
    CHECK_EQ(s->ctx->split_threads, dflt);
    hmaf_session_destroy(s);
    p.size = offsetof(hmaf_session_params_t, split_threads) - 8;
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EINVAL);
}

/* ------------------------------------------------------------------ */
/* Bytes                                                               */
/* ------------------------------------------------------------------ */

struct range {
    uint64_t off;
    size_t len;
};

/* Odd sizes and offsets; some across the exposures' boundary, one longer
 * than the core's 16 MiB step. */
static const struct range ranges[] = {
    {0, 1u << 20},
    {4097, (1u << 20) + 1},
    {5, (3u << 20) + 77},
    {SPLIT_AT - (3u << 20) + 11, (6u << 20) + 4093},
    {SPLIT_AT - 1, (2u << 20) + 2},
    {AREA_LEN - (1u << 20) - 3, (1u << 20) + 3},
    {1, AREA_LEN - 7},
};

static void check_reads(hmaf_session_t *s, unsigned salt)
{
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        memset(buf, 0, ranges[i].len);
        CHECK_OK(
            hmaf_session_read(s, buf, base + ranges[i].off, ranges[i].len));
        CHECK_PATTERN(buf, ranges[i].len, ranges[i].off, salt);
    }
}

/* Write pattern `salt` over the whole area in odd ranges. */
static void write_all(hmaf_session_t *s, unsigned salt)
{
    uint64_t off = 0;

    for (size_t len = (1u << 20) + 4099; off < AREA_LEN; len += 1u << 20) {
        len = HMAF_MIN(len, AREA_LEN - off);
        target_fill(buf, len, off, salt);
        CHECK_OK(hmaf_session_write(s, base + off, buf, len));
        off += len;
    }
}

/* A readv of odd segments, out of order, across the boundary: 5 MiB. */
static void check_readv(hmaf_session_t *s, unsigned salt)
{
    hmaf_seg_t segs[40];
    uint64_t at = SPLIT_AT - (2u << 20), local = 0;

    for (size_t i = 0; i < 40; i++) {
        size_t len = 100000 + 37 * i;
        segs[39 - i] = (hmaf_seg_t){buf + local, base + at, len};
        at += len + 13;
        local += len + 1;
    }
    CHECK_OK(hmaf_session_readv(s, segs, 40));
    for (size_t i = 0; i < 40; i++) {
        CHECK_PATTERN(segs[i].local, segs[i].len, segs[i].remote_addr - base,
                      salt);
    }
}

/* A posted read of 3 MiB (cma runs it at wait, split like any other). */
static void check_posted(hmaf_session_t *s, unsigned salt)
{
    hmaf_req_t req;
    uint64_t off = SPLIT_AT - 12345;

    memset(buf, 0, 3u << 20);
    CHECK_OK(hmaf_session_post_read(s, buf, base + off, 3u << 20, &req));
    CHECK_OK(hmaf_request_wait(s, req));
    CHECK_PATTERN(buf, 3u << 20, off, salt);
}

static void test_bytes(void)
{
    unsigned before = count_threads();
    hmaf_session_t *s = connect_split(4);
    unsigned with_session = count_threads();

    CHECK_OK(hmaf_session_lookup(s, "area", &base, NULL));
    check_reads(s, 1);
    /* The first split started its three helpers; they stay. */
    CHECK_EQ(count_threads(), with_session + 3);
    write_all(s, 2);
    check_reads(s, 2);
    check_readv(s, 2);
    check_posted(s, 2);
    write_all(s, 1);
    hmaf_session_destroy(s);
    await_threads(before); /* the helpers ended with it */
}

/* ------------------------------------------------------------------ */
/* An unmapped host page                                               */
/* ------------------------------------------------------------------ */

/* A read or write over the hole fails as an unsplit one does; one that
 * stops before it does not. */
static void check_hole(hmaf_session_t *s)
{
    const struct range over[] = {
        {HOLE_OFF - (3u << 20) + 5, 6u << 20}, /* in the middle */
        {HOLE_OFF, 2u << 20},                  /* at the start */
        {HOLE_OFF - (2u << 20) + 1, 2u << 20}, /* its last byte */
        {SPLIT_AT, AREA_LEN - SPLIT_AT},       /* a whole exposure */
    };

    for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
        CHECK_ERR(hmaf_session_read(s, buf, base + over[i].off, over[i].len),
                  HMAF_EFAULT);
        target_fill(buf, over[i].len, over[i].off, 1);
        CHECK_ERR(hmaf_session_write(s, base + over[i].off, buf, over[i].len),
                  HMAF_EFAULT);
    }
    CHECK_OK(hmaf_session_read(s, buf, base + HOLE_OFF - (3u << 20), 3u << 20));
    CHECK_PATTERN(buf, 3u << 20, HOLE_OFF - (3u << 20), 1);
}

static void test_hole(void)
{
    hmaf_session_t *split = connect_split(3), *unsplit = connect_split(1);

    CHECK_EQ(target_command(&target, 'h'), 1);
    check_hole(unsplit);
    check_hole(split);
    CHECK_EQ(target_command(&target, 'H'), 1);
    check_reads(split, 1);
    hmaf_session_destroy(unsplit);
    hmaf_session_destroy(split);
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

struct worker {
    hmaf_session_t *s;
    unsigned index;
    uint8_t *tmp;
};

/* Each thread rewrites its own slice with its own pattern, in odd
 * pieces, and reads each back. Two helpers for four threads. */
static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t slice = AREA_LEN / THREADS, at = slice * w->index;
    size_t len = (1u << 20) + 333 * w->index;

    for (int round = 0; round < 3; round++) {
        for (uint64_t off = at; off < at + slice; off += len) {
            size_t n = HMAF_MIN(len, at + slice - off);
            target_fill(w->tmp, n, off, 10 + w->index + round);
            CHECK_OK(hmaf_session_write(w->s, base + off, w->tmp, n));
            memset(w->tmp, 0, n);
            CHECK_OK(hmaf_session_read(w->s, w->tmp, base + off, n));
            CHECK_PATTERN(w->tmp, n, off, 10 + w->index + round);
        }
    }
    return NULL;
}

static void test_threads(void)
{
    hmaf_session_t *s = connect_split(3);
    struct worker w[THREADS];
    pthread_t th[THREADS];

    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.s = s, .index = i, .tmp = malloc(2u << 20)};
        CHECK(w[i].tmp != NULL);
        CHECK_EQ(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        free(w[i].tmp);
    }
    write_all(s, 1);
    hmaf_session_destroy(s);
}

/* ------------------------------------------------------------------ */
/* Revocation                                                          */
/* ------------------------------------------------------------------ */

struct writer {
    hmaf_session_t *s;
    _Atomic int stop;
    _Atomic long ok;
    int last;
};

/* Split writes over the second exposure until stopped (they fail once it
 * is revoked). Never the sentinel. */
static void *write_loop(void *arg)
{
    struct writer *wr = arg;
    uint8_t *src = malloc(4u << 20);
    uint64_t len = 4u << 20;

    CHECK(src != NULL);
    memset(src, 0x5a, len);
    for (unsigned i = 0; !atomic_load(&wr->stop); i++) {
        uint64_t off = SPLIT_AT + (i * 4099u) % (AREA_LEN - SPLIT_AT - len);
        wr->last = hmaf_session_write(wr->s, base + off, src, len);
        if (wr->last == 0) {
            atomic_fetch_add(&wr->ok, 1);
        }
    }
    free(src);
    return NULL;
}

static void test_revoke(void)
{
    struct writer wr = {.s = connect_split(2)};
    pthread_t th;

    CHECK_EQ(pthread_create(&th, NULL, write_loop, &wr), 0);
    while (atomic_load(&wr.ok) < 3) {
        fence_sleep_ms(1);
    }
    CHECK_EQ(target_command(&target, 'r'), 1); /* nothing landed after */
    atomic_store(&wr.stop, 1);
    pthread_join(th, NULL);
    CHECK_ERR(wr.last, HMAF_EFAULT);
    /* Across the boundary: the part in the revoked exposure fails. */
    CHECK_ERR(
        hmaf_session_read(wr.s, buf, base + SPLIT_AT - (2u << 20), 4u << 20),
        HMAF_EFAULT);
    CHECK_OK(hmaf_session_read(wr.s, buf, base, SPLIT_AT));
    CHECK_PATTERN(buf, SPLIT_AT, 0, 1);
    hmaf_session_destroy(wr.s);
}

/* ------------------------------------------------------------------ */
/* Fork                                                                */
/* ------------------------------------------------------------------ */

/* The child's copy of a session whose helpers run in the parent: an
 * orphan, destroyed without waiting on them; a new session splits with
 * helpers of its own. Exit status: 0 good, 77 the new session was not
 * tried (not allowed to connect, or under ThreadSanitizer). */
static void child_after_fork(hmaf_session_t *orphan)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    int ret;

    CHECK_ERR(hmaf_session_read(orphan, buf, base, 2u << 20), HMAF_ECONNRESET);
    hmaf_session_destroy(orphan);
    if (!CHILD_MAY_START_THREADS) {
        _exit(77);
    }
    target_session_params(&target, &p);
    p.split_threads = 2;
    ret = hmaf_session_create(&p, &s);
    if (ret == HMAF_EPERM) {
        _exit(77);
    }
    CHECK_OK(ret);
    CHECK_OK(hmaf_session_read(s, buf, base, SPLIT_AT));
    CHECK_PATTERN(buf, SPLIT_AT, 0, 1);
    hmaf_session_destroy(s);
    _exit(0);
}

static void test_fork(void)
{
    hmaf_session_t *s = connect_split(2);
    int status = 0;
    pid_t child;

    CHECK_OK(hmaf_session_read(s, buf, base, 4u << 20)); /* helpers up */
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        child_after_fork(s);
    }
    CHECK_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 77);
    printf("fork: %s\n", WEXITSTATUS(status) == 0
                             ? "the child's new session split its reads"
                             : "the child's new session was not tried");
    CHECK_OK(hmaf_session_read(s, buf, base, 4u << 20)); /* parent's works */
    CHECK_PATTERN(buf, 4u << 20, 0, 1);
    hmaf_session_destroy(s);
}

int main(void)
{
    struct target_options o = {.setup = setup, .command = command};
    hmaf_session_t *probe;

    setvbuf(stdout, NULL, _IONBF, 0);
    buf = malloc(AREA_LEN);
    CHECK(buf != NULL);
    unsetenv("HMAF_SPLIT_THREADS");
    if (strcmp(getenv("HMAF_ENGINE") ? getenv("HMAF_ENGINE") : "cma", "cma") !=
        0) {
        SKIP("split transfers are the cma engine's");
    }
    target_start(&target, &o);
    probe = target_connect(&target); /* skips when ptrace is denied */
    CHECK_OK(hmaf_session_lookup(probe, "area", &base, NULL));
    hmaf_session_destroy(probe);
    test_settings();
    test_bytes();
    test_hole();
    test_threads();
    test_fork();
    test_revoke(); /* last: the second exposure is gone afterwards */
    CHECK_EQ(target_stop(&target), 0);
    free(buf);
    printf("test_split: ok\n");
    return 0;
}
