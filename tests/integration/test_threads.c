/* Four dpu threads share one session: each reads and writes its own slice
 * of "buf", reads the read-only root, and makes mailbox calls, at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "target.h"

#define THREADS 4
#define ROUNDS 400

struct worker {
    hmaf_session_t *s;
    uint64_t buf;
    uint64_t ro;
    unsigned index;
    int failed;
};

static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static int matches(const uint8_t *p, size_t len, uint64_t first, unsigned salt)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != target_pattern(first + i, salt)) {
            return 0;
        }
    }
    return 1;
}

/* Random reads of the slice (still pattern 1) and of "ro". */
static int random_reads(struct worker *w, uint8_t *tmp, uint64_t *rng)
{
    uint64_t slice = STD_BUF_LEN / THREADS, base = slice * w->index;

    for (int i = 0; i < ROUNDS; i++) {
        size_t len = 1 + next_rand(rng) % 70000;
        uint64_t off = base + next_rand(rng) % (slice - len);
        uint64_t ro_off = next_rand(rng) % (STD_RO_LEN - 64);
        if (hmaf_session_read(w->s, tmp, w->buf + off, len) != 0 ||
            !matches(tmp, len, off, 1) ||
            hmaf_session_read(w->s, tmp, w->ro + ro_off, 64) != 0 ||
            !matches(tmp, 64, ro_off, 3)) {
            return 1;
        }
        if (i % 50 == 0 && hmaf_session_ping(w->s) != 0) {
            return 1;
        }
    }
    return 0;
}

/* Overwrite the slice with pattern 2 in 1 MiB pieces, reading each back. */
static int rewrite_slice(struct worker *w, uint8_t *tmp)
{
    uint64_t slice = STD_BUF_LEN / THREADS, base = slice * w->index;
    uint64_t end = w->index == THREADS - 1 ? STD_BUF_LEN : base + slice;

    for (uint64_t off = base; off < end; off += 1 << 20) {
        size_t len = end - off < (1 << 20) ? end - off : 1 << 20;
        target_fill(tmp, len, off, 2);
        if (hmaf_session_write(w->s, w->buf + off, tmp, len) != 0) {
            return 1;
        }
        memset(tmp, 0, len);
        if (hmaf_session_read(w->s, tmp, w->buf + off, len) != 0 ||
            !matches(tmp, len, off, 2)) {
            return 1;
        }
    }
    return 0;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (w->index + 1);
    uint8_t *tmp = malloc(1 << 20 > 70000 ? 1 << 20 : 70000);
    uint64_t addr;

    w->failed = tmp == NULL || hmaf_session_lookup(w->s, "ro", &addr, NULL) ||
                addr != w->ro || random_reads(w, tmp, &rng) ||
                rewrite_slice(w, tmp);
    free(tmp);
    return NULL;
}

int main(void)
{
    struct target t;
    struct worker w[THREADS];
    pthread_t th[THREADS];
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    hmaf_session_t *s;
    uint64_t buf, ro;

    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.s = s, .buf = buf, .ro = ro, .index = i};
        CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(w[i].failed, 0);
    }
    CHECK_EQ(target_command(&t, 'v'), 1); /* every slice rewritten */
    CHECK_OK(hmaf_session_stats(s, &st));
    CHECK(st.registrations >= 3 && st.registrations <= 3 * THREADS);
    CHECK(st.ops >= THREADS * ROUNDS * 2);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_threads: ok\n");
    return 0;
}
