/* Many threads on one session (doca lanes): reads, writes, readv, writev
 * and posted requests of 1 B to 2 MiB, in place and staged, each thread on
 * its own slice of "buf" (a shadow copy checks every byte), plus reads of
 * "ro". Env: STRESS_THREADS (8), STRESS_ROUNDS (200), STRESS_FAULTS=1:
 * failures allowed (DMA fault injection), bytes then unchecked. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

static unsigned nthreads = 8, rounds = 200;
static int faults;

struct worker {
    hmaf_session_t *s;
    uint64_t buf, ro, base, len;
    unsigned index;
    uint8_t *shadow;
    int failed, dead;
    unsigned long errors;
    char why[200];
};

static uint64_t rnd(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

static size_t rlen(uint64_t *st, size_t max)
{
    unsigned bits = 1 + rnd(st) % 21; /* up to 2 MiB */
    size_t len = 1 + rnd(st) % ((size_t)1 << bits);
    return len > max ? max : len;
}

#define FAIL(w, ...)                                                           \
    do {                                                                       \
        snprintf((w)->why, sizeof((w)->why), __VA_ARGS__);                     \
        return 1;                                                              \
    } while (0)

static int ok(struct worker *w, int ret, const char *what)
{
    if (ret == 0) {
        return 1;
    }
    if (faults && ret == HMAF_ECONNRESET) {
        w->errors++;
        w->dead = 1;
        return 0;
    }
    snprintf(w->why, sizeof(w->why), "%s: %d", what, ret);
    w->failed = 1;
    return 0;
}

static int check_bytes(struct worker *w, const uint8_t *got, uint64_t off,
                       size_t len, const char *what)
{
    if (memcmp(got, w->shadow + off, len) != 0) {
        size_t i = 0;
        while (got[i] == w->shadow[off + i]) {
            i++;
        }
        FAIL(w, "%s: slice off %llu len %zu: byte %zu differs", what,
             (unsigned long long)off, len, i);
    }
    return 0;
}

static int one_round(struct worker *w, uint64_t *st, uint8_t *tmp,
                     uint8_t *tmp2)
{
    unsigned op = rnd(st) % 9;
    size_t len = rlen(st, w->len);
    uint64_t off = rnd(st) % (w->len - len + 1);
    int ret;

    switch (op) {
    case 0: /* read */
    case 1:
        memset(tmp, 0xee, len);
        if (ok(w, hmaf_session_read(w->s, tmp, w->buf + w->base + off, len),
               "read")) {
            return check_bytes(w, tmp, off, len, "read");
        }
        return w->failed;
    case 2: /* write */
        for (size_t i = 0; i < len; i++) {
            tmp[i] = (uint8_t)rnd(st);
        }
        if (ok(w, hmaf_session_write(w->s, w->buf + w->base + off, tmp, len),
               "write")) {
            memcpy(w->shadow + off, tmp, len);
        } else if (faults) {
            /* unknown prefix written: reread the range into the shadow */
            if (hmaf_session_read(w->s, w->shadow + off,
                                  w->buf + w->base + off, len) != 0) {
                w->failed = 2; /* give up checking */
            }
        }
        return w->failed == 1;
    case 3:
    case 4: { /* readv/writev of n small or mixed segments, scattered */
        hmaf_seg_t segs[64];
        size_t n = 1 + rnd(st) % 64, used = 0;
        uint64_t roff[64];
        int write = op == 4;
        size_t maxseg = rnd(st) % 2 ? 4096 : 200000;
        uint64_t at = rnd(st) % (w->len / 2);
        size_t k = 0;
        for (; k < n; k++) {
            size_t l = 1 + rnd(st) % maxseg;
            at += rnd(st) % 3 == 0 ? 0 : rnd(st) % 5000; /* gaps or not */
            if (at + l > w->len || used + l > (4u << 20)) {
                break;
            }
            segs[k] = (hmaf_seg_t){tmp + used, w->buf + w->base + at, l};
            roff[k] = at;
            if (write) {
                for (size_t i = 0; i < l; i++) {
                    tmp[used + i] = (uint8_t)rnd(st);
                }
            }
            used += l + (rnd(st) % 2 ? 0 : 1 + rnd(st) % 64);
            at += l;
        }
        if (k == 0) {
            return 0;
        }
        ret = write ? hmaf_session_writev(w->s, segs, k)
                    : hmaf_session_readv(w->s, segs, k);
        if (!ok(w, ret, write ? "writev" : "readv")) {
            if (faults && write) {
                for (size_t j = 0; j < k; j++) {
                    if (hmaf_session_read(w->s, w->shadow + roff[j],
                                          segs[j].remote_addr,
                                          segs[j].len) != 0) {
                        w->failed = 2;
                    }
                }
            }
            return w->failed == 1;
        }
        for (size_t j = 0; j < k; j++) {
            if (write) {
                memcpy(w->shadow + roff[j], segs[j].local, segs[j].len);
            } else if (
                       check_bytes(w, segs[j].local, roff[j], segs[j].len,
                                   "readv")) {
                return 1;
            }
        }
        return 0;
    }
    case 5:
    case 6: { /* posted reads, waited in random order */
        hmaf_req_t r[8];
        uint64_t o[8];
        size_t l[8], n = 1 + rnd(st) % 8;
        for (size_t j = 0; j < n; j++) {
            l[j] = rlen(st, 256 << 10);
            o[j] = rnd(st) % (w->len - l[j] + 1);
            ret = hmaf_session_post_read(w->s, tmp + j * (256 << 10),
                                         w->buf + w->base + o[j], l[j], &r[j]);
            if (!ok(w, ret, "post_read")) {
                n = j;
                break;
            }
        }
        for (size_t j = n; j-- > 0;) {
            if (ok(w, hmaf_request_wait(w->s, r[j]), "wait read") &&
                
                check_bytes(w, tmp + j * (256 << 10), o[j], l[j], "posted")) {
                return 1;
            }
            if (w->failed == 1) {
                return 1;
            }
        }
        return 0;
    }
    case 7: { /* posted writes to disjoint ranges, flushed */
        size_t n = 1 + rnd(st) % 8, l = rlen(st, 128 << 10);
        uint64_t o = rnd(st) % (w->len - n * l + 1);
        if (n * l > w->len) {
            return 0;
        }
        for (size_t i = 0; i < n * l; i++) {
            tmp2[i] = (uint8_t)rnd(st);
        }
        for (size_t j = 0; j < n; j++) {
            ret = hmaf_session_post_write(w->s, w->buf + w->base + o + j * l,
                                          tmp2 + j * l, l, NULL);
            if (!ok(w, ret, "post_write")) {
                break;
            }
        }
        if (ok(w, hmaf_session_flush(w->s), "flush")) {
            memcpy(w->shadow + o, tmp2, n * l);
        } else if (faults &&
                   hmaf_session_read(w->s, w->shadow + o,
                                     w->buf + w->base + o, n * l) != 0) {
            w->failed = 2;
        }
        return w->failed == 1;
    }
    default: { /* ro */
        size_t l2 = rlen(st, STD_RO_LEN);
        uint64_t o2 = rnd(st) % (STD_RO_LEN - l2 + 1);
        if (ok(w, hmaf_session_read(w->s, tmp, w->ro + o2, l2), "ro") &&
            target_mismatch(tmp, l2, o2, 3) != l2) {
            FAIL(w, "ro bytes off %llu len %zu", (unsigned long long)o2, l2);
        }
        return w->failed == 1;
    }
    }
}

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t st = 0x9e3779b97f4a7c15ull * (w->index + 1) ^
                  (uint64_t)strtoull(getenv("STRESS_SEED") ? getenv("STRESS_SEED") : "1", NULL, 0);
    uint8_t *tmp = malloc(4u << 20), *tmp2 = malloc(2u << 20);

    int r0 = -1;

    r0 = hmaf_session_read(w->s, w->shadow, w->buf + w->base, w->len);
    if (faults && r0 == HMAF_ECONNRESET) {
        w->dead = 1;
    } else if (r0 != 0 || target_mismatch(w->shadow, w->len, w->base, 1) != w->len) {
        snprintf(w->why, sizeof(w->why), "initial read %d", r0);
        w->failed = 1;
    }
    for (unsigned i = 0; i < rounds && !w->failed && !w->dead; i++) {
        if (one_round(w, &st, tmp, tmp2)) {
            w->failed = 1;
        }
        if (w->failed == 2) {
            w->failed = 0; /* a shadow not refreshed: the session ended */
            w->dead = 1;
        }
    }
    /* leave requests posted, no handle, when exiting */
    if (!w->failed && (w->index & 1)) {
        (void)hmaf_session_post_read(w->s, w->shadow, w->buf + w->base, 4096,
                                     NULL);
        hmaf_session_flush(w->s);
    }
    free(tmp);
    free(tmp2);
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "doca_lanes_stress: hung\n";
    write(2, msg, sizeof(msg) - 1);
    abort();
}

int main(void)
{
    struct target t;
    struct worker w[64];
    pthread_t th[64];
    hmaf_session_t *s;
    uint64_t buf, ro;
    int bad = 0;

    if (getenv("STRESS_THREADS")) {
        nthreads = (unsigned)atoi(getenv("STRESS_THREADS"));
    }
    if (getenv("STRESS_ROUNDS")) {
        rounds = (unsigned)atoi(getenv("STRESS_ROUNDS"));
    }
    faults = getenv("STRESS_FAULTS") != NULL;
    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    signal(SIGALRM, on_alarm);
    alarm(getenv("STRESS_ALARM") ? (unsigned)atoi(getenv("STRESS_ALARM")) : 240);
    for (unsigned i = 0; i < nthreads; i++) {
        uint64_t slice = (STD_BUF_LEN / nthreads) & ~(uint64_t)7;
        w[i] = (struct worker){.s = s, .buf = buf, .ro = ro, .index = i,
                               .base = slice * i, .len = slice};
        w[i].shadow = malloc(slice);
        CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failed) {
            fprintf(stderr, "thread %u: %s\n", i, w[i].why);
            bad = 1;
        }
        if (w[i].errors) {
            fprintf(stderr, "thread %u: %lu errors\n", i, w[i].errors);
        }
        free(w[i].shadow);
    }
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    CHECK_EQ(bad, 0);
    printf("doca_lanes_stress: ok\n");
    return 0;
}
