/* The data path's ways — one small segment in one step, the general call,
 * posted requests joined into one run — against a real host: the bytes,
 * the errors, and the session's counters (ops, bytes, cache hits) each
 * way leaves behind. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "target.h"

#define SMALL (64u << 10) /* the engine's move_one bound (engine.h) */

static uint64_t buf, hole, ro;
static int async; /* posted requests go to the engine one by one (doca) */

static hmaf_session_stats_t stats(hmaf_session_t *s)
{
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;

    CHECK_OK(hmaf_session_stats(s, &st));
    return st;
}

/* What moved since `before`: ops, cache hits, bytes read and written. */
static void check_delta(hmaf_session_t *s, const hmaf_session_stats_t *before,
                        uint64_t ops, uint64_t hits, uint64_t read,
                        uint64_t written)
{
    hmaf_session_stats_t now = stats(s);

    CHECK_EQ(now.ops - before->ops, ops);
    CHECK_EQ(now.cache_hits - before->cache_hits, hits);
    CHECK_EQ(now.bytes_read - before->bytes_read, read);
    CHECK_EQ(now.bytes_written - before->bytes_written, written);
    CHECK_EQ(now.cache_misses, before->cache_misses);
}

static void read_at(hmaf_session_t *s, uint8_t *tmp, uint64_t off, size_t len)
{
    memset(tmp, 0, len);
    CHECK_OK(hmaf_session_read(s, tmp, buf + off, len));
    CHECK_PATTERN(tmp, len, off, 1);
}

/* Small reads and writes take one step each; one byte more than move_one
 * takes, or two regions, take the general call: the same counts. */
static void check_one_step(hmaf_session_t *s, uint8_t *tmp)
{
    hmaf_session_stats_t st = stats(s);

    for (int i = 0; i < 100; i++) {
        read_at(s, tmp, 4096 + (uint64_t)i * 64, 64);
    }
    check_delta(s, &st, 100, 100, 6400, 0);
    st = stats(s);
    read_at(s, tmp, 1, SMALL);
    read_at(s, tmp, 1, SMALL + 1);
    check_delta(s, &st, 2, 2, 2 * (uint64_t)SMALL + 1, 0);
    st = stats(s);
    read_at(s, tmp, STD_SPLIT - 32, 64); /* two exposures: two pieces */
    check_delta(s, &st, 1, 2, 64, 0);
    st = stats(s);
    for (int i = 0; i < 10; i++) {
        target_fill(tmp, 64, (uint64_t)i * 64, 1); /* what is there */
        CHECK_OK(hmaf_session_write(s, buf + (uint64_t)i * 64, tmp, 64));
    }
    check_delta(s, &st, 10, 10, 0, 640);
}

/* Arguments and access the one step leaves to the general call. */
static void check_one_step_errors(hmaf_session_t *s, uint8_t *tmp)
{
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;

    CHECK_ERR(hmaf_session_read(s, tmp, buf, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read(s, NULL, buf, 64), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read(NULL, tmp, buf, 64), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read(s, tmp, UINT64_MAX - 3, 16), HMAF_EOVERFLOW);
    CHECK_ERR(hmaf_session_read(s, tmp, hole, 64), HMAF_EFAULT);
    CHECK_ERR(hmaf_session_write(s, ro, tmp, 64), HMAF_EACCES);
    /* past the end of the exposure: the region does not cover it */
    CHECK_ERR(hmaf_session_read(s, tmp, buf + STD_BUF_LEN - 32, 64),
              HMAF_EFAULT);
    CHECK_OK(hmaf_session_read(s, tmp, ro, 64));
    st = stats(s);
    CHECK_OK(hmaf_session_read(s, tmp, ro, 64));
    check_delta(s, &st, 1, 1, 64, 0);
}

static void check_vectored(hmaf_session_t *s)
{
    enum { N = 300 };
    static uint8_t bufs[N][64];
    hmaf_seg_t segs[N];
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;

    for (int i = 0; i < N; i++) {
        /* 64-byte slots, none across the split but segs[9] */
        segs[i] = (hmaf_seg_t){bufs[i], buf + i * 7919u % 900000 * 64, 64};
    }
    segs[9].remote_addr = buf + STD_SPLIT - 10; /* two pieces */
    st = stats(s);
    CHECK_OK(hmaf_session_readv(s, segs, N));
    check_delta(s, &st, 1, N + 1, (uint64_t)N * 64, 0);
    for (int i = 0; i < N; i++) {
        CHECK_PATTERN(bufs[i], 64, segs[i].remote_addr - buf, 1);
    }
}

/* Random 64-byte slots, none across the split between the exposures. */
static uint64_t slot(int i)
{
    return (uint64_t)i * 104729 % 937500 * 64;
}

/* Handle-less posts, one after the other, run as one call with cma (one
 * op); each is a request of its own with doca. */
static void check_posted_run(hmaf_session_t *s)
{
    enum { N = 256 };
    static uint8_t bufs[N][64];
    hmaf_session_stats_t st = stats(s);

    for (int i = 0; i < N; i++) {
        CHECK_OK(hmaf_session_post_read(s, bufs[i], buf + slot(i), 64, NULL));
    }
    CHECK_OK(hmaf_session_flush(s));
    check_delta(s, &st, async ? N : 1, N, (uint64_t)N * 64, 0);
    for (int i = 0; i < N; i++) {
        CHECK_PATTERN(bufs[i], 64, slot(i), 1);
    }
}

/* A failing post in the middle of a run: flush reports it, every other
 * post of the run has its bytes (each its own fate), and the next flush
 * has nothing to say. A post with a handle between handle-less ones
 * keeps its own status. */
static void check_posted_failure(hmaf_session_t *s)
{
    enum { N = 10 };
    static uint8_t bufs[N][64];
    hmaf_req_t req = 0;

    memset(bufs, 0, sizeof(bufs));
    for (int i = 0; i < N; i++) {
        uint64_t at = i == 4 ? hole : buf + (uint64_t)i * 1000;
        if (i == 6) {
            CHECK_OK(hmaf_session_post_read(s, bufs[i], at, 64, &req));
            continue;
        }
        CHECK_OK(hmaf_session_post_read(s, bufs[i], at, 64, NULL));
    }
    CHECK_ERR(hmaf_session_flush(s), HMAF_EFAULT);
    CHECK_OK(hmaf_session_flush(s));
    CHECK_OK(hmaf_request_wait(s, req));
    for (int i = 0; i < N; i++) {
        if (i != 4) {
            CHECK_PATTERN(bufs[i], 64, (uint64_t)i * 1000, 1);
        }
    }
}

/* Posted writes joined into a run land, each where it was asked. */
static void check_posted_writes(hmaf_session_t *s, uint8_t *tmp)
{
    enum { N = 100 };
    static uint8_t src[N][64];

    for (int i = 0; i < N; i++) {
        target_fill(src[i], 64, 8192 + (uint64_t)i * 64, 2);
        CHECK_OK(hmaf_session_post_write(s, buf + 8192 + (uint64_t)i * 64,
                                         src[i], 64, NULL));
    }
    CHECK_OK(hmaf_session_flush(s));
    memset(tmp, 0, N * 64);
    CHECK_OK(hmaf_session_read(s, tmp, buf + 8192, N * 64));
    CHECK_PATTERN(tmp, N * 64, 8192, 2);
    /* put back what was there, so the host still holds pattern 1 */
    target_fill(tmp, N * 64, 8192, 1);
    CHECK_OK(hmaf_session_write(s, buf + 8192, tmp, N * 64));
}

int main(void)
{
    struct target t;
    hmaf_session_t *s;
    uint8_t *tmp = malloc(1u << 20);

    CHECK(tmp != NULL);
    target_start_standard(&t);
    s = target_connect(&t);
    async = strcmp(hmaf_session_engine(s), "cma") != 0;
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "hole", &hole, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    /* both exposures registered, so that no miss falls inside a count */
    read_at(s, tmp, 0, 64);
    read_at(s, tmp, STD_SPLIT, 64);
    check_one_step(s, tmp);
    check_one_step_errors(s, tmp);
    check_vectored(s);
    check_posted_run(s);
    check_posted_failure(s);
    check_posted_writes(s, tmp);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    free(tmp);
    printf("test_counts: ok\n");
    return 0;
}
