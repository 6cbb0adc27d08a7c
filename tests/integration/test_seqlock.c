/* Consistent reads of records a host thread rewrites continuously:
 * test_seqlock [reads [gap]] (default $HMAF_TEST_READS, else 200,000
 * reads; the figure is 10,000,000). The writer busy-waits `gap` spin-wait hints (default
 * 100, a few microseconds) between writes — it never sleeps: hundreds of
 * thousands of writes a second; with gap 0 a 4 KiB record is stable only
 * while the writer is preempted, and reads mostly wait for that. Each write fills its record with one generation number, so
 * a torn read shows as two numbers in one record. Records of 64 B, 1 KiB
 * and 4 KiB, their version words apart from them; read one by one and all
 * three in one call. Then plain reads of the same 4 KiB record under the
 * same writer, which must see torn records: the check can fail. */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "target.h"

#define NREC 3
static const size_t rec_len[NREC] = {64, 1024, 4096};

struct records {
    uint64_t seq[NREC];
    uint8_t pad[64 - NREC * 8];
    uint64_t rec64[64 / 8];
    uint64_t rec1k[1024 / 8];
    uint64_t rec4k[4096 / 8];
};

static const size_t rec_off[NREC] = {offsetof(struct records, rec64),
                                     offsetof(struct records, rec1k),
                                     offsetof(struct records, rec4k)};

struct shared {
    _Atomic int writing; /* which record the writer rewrites, -1: none */
    _Atomic uint64_t writes;
};

static struct shared *sh;
static struct records *host_recs; /* the child's */
static uint64_t gap = 100;

/* The writer's pause between writes: no system call (a clock read may be
 * one in a VM), only the CPU's spin-wait hint. */
static void spin_gap(void)
{
    for (uint64_t i = 0; i < gap; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        atomic_signal_fence(memory_order_seq_cst);
#endif
    }
}

static void write_record(int r, uint64_t gen)
{
    uint64_t *p = (uint64_t *)((uint8_t *)host_recs + rec_off[r]);

    hmaf_seqlock_write_begin(&host_recs->seq[r]);
    for (size_t i = 0; i < rec_len[r] / 8; i++) {
        p[i] = gen;
    }
    hmaf_seqlock_write_end(&host_recs->seq[r]);
}

static void *writer(void *arg)
{
    uint64_t gen = 0;

    (void)arg;
    for (;;) {
        int r = atomic_load_explicit(&sh->writing, memory_order_relaxed);
        if (r < 0) {
            usleep(1000);
            continue;
        }
        write_record(r, ++gen);
        atomic_fetch_add_explicit(&sh->writes, 1, memory_order_relaxed);
        spin_gap();
    }
    return NULL;
}

static int host_setup(hmaf_agent_t *agent, void *arg)
{
    pthread_t th;
    int ret;

    (void)arg;
    host_recs = aligned_alloc(64, sizeof(*host_recs));
    memset(host_recs, 0, sizeof(*host_recs));
    ret = hmaf_agent_expose(agent, host_recs, sizeof(*host_recs),
                            HMAF_ACCESS_READ);
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "records", host_recs,
                                 sizeof(*host_recs));
    }
    if (ret == 0 && pthread_create(&th, NULL, writer, NULL) != 0) {
        ret = -1;
    }
    return ret;
}

/* One generation throughout? */
static int torn(const uint64_t *p, size_t len)
{
    for (size_t i = 1; i < len / 8; i++) {
        if (p[i] != p[0]) {
            return 1;
        }
    }
    return 0;
}

struct tally {
    uint64_t reads, torn, busy;
};

static void read_one(hmaf_session_t *s, uint64_t base, int r,
                     struct tally *t)
{
    uint64_t buf[4096 / 8];
    int ret = hmaf_session_read_consistent(
        s, base + offsetof(struct records, seq) + 8 * (uint64_t)r, buf,
        base + rec_off[r], rec_len[r], 0);

    t->reads++;
    if (ret == HMAF_EBUSY) {
        t->busy++;
        return;
    }
    CHECK_OK(ret);
    t->torn += torn(buf, rec_len[r]);
}

static void read_all(hmaf_session_t *s, uint64_t base, struct tally *t)
{
    static uint64_t buf[NREC][4096 / 8];
    hmaf_consistent_read_t recs[NREC];
    int ret;

    for (int r = 0; r < NREC; r++) {
        recs[r] = (hmaf_consistent_read_t){
            .seq_addr = base + 8 * (uint64_t)r,
            .remote_addr = base + rec_off[r],
            .buf = buf[r],
            .len = rec_len[r]};
    }
    ret = hmaf_session_read_consistentv(s, recs, NREC, 0);
    CHECK(ret == 0 || ret == HMAF_EBUSY);
    for (int r = 0; r < NREC; r++) {
        t->reads++;
        if (recs[r].status == HMAF_EBUSY) {
            t->busy++;
            continue;
        }
        CHECK_OK(recs[r].status);
        t->torn += torn(buf[r], rec_len[r]);
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(hmaf_session_t *s, const char *what, const struct tally *t,
                   uint64_t retries0, double t0, uint64_t writes0)
{
    printf("%-10s reads %llu torn %llu busy %llu retries %llu host writes "
           "%llu (%.1f s)\n",
           what, (unsigned long long)t->reads, (unsigned long long)t->torn,
           (unsigned long long)t->busy,
           (unsigned long long)(atomic_load(&s->c.consistent_retries) -
                                retries0),
           (unsigned long long)(atomic_load(&sh->writes) - writes0),
           now_s() - t0);
    fflush(stdout);
}

/* The same writer, plain reads: torn records must show. */
static void check_plain_reads_tear(hmaf_session_t *s, uint64_t base)
{
    uint64_t buf[4096 / 8];
    uint64_t seen = 0, reads = 0;

    atomic_store(&sh->writing, 2);
    for (; reads < 2000000 && seen < 10; reads++) {
        CHECK_OK(hmaf_session_read(s, buf, base + rec_off[2], 4096));
        seen += torn(buf, 4096);
    }
    atomic_store(&sh->writing, -1);
    printf("plain 4096 B reads: %llu torn in %llu\n",
           (unsigned long long)seen, (unsigned long long)reads);
    CHECK(seen > 0);
}

int main(int argc, char **argv)
{
    const char *reads = argc > 1 ? argv[1] : getenv("HMAF_TEST_READS");
    uint64_t total = reads != NULL ? strtoull(reads, NULL, 10) : 200000;
    struct target_options o = {.setup = host_setup};
    uint64_t base, len;
    struct target t;
    hmaf_session_t *s;
    struct tally all = {0};

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED && total >= 4);
    if (argc > 2) {
        gap = strtoull(argv[2], NULL, 10);
    }
    printf("%llu reads, writer gap %llu spin-wait hints\n",
           (unsigned long long)total, (unsigned long long)gap);
    atomic_store(&sh->writing, -1);
    target_start(&t, &o);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "records", &base, &len));
    for (int r = 0; r < NREC; r++) {
        struct tally one = {0};
        uint64_t retries0 = atomic_load(&s->c.consistent_retries);
        uint64_t writes0 = atomic_load(&sh->writes);
        double t0 = now_s();
        char what[16];
        atomic_store(&sh->writing, r);
        /* and on until the writer has rewritten it often: a writer
         * that was not scheduled would prove nothing */
        while (one.reads < total / 4 ||
               (atomic_load(&sh->writes) - writes0 < 1000 &&
                now_s() - t0 < 30)) {
            read_one(s, base, r, &one);
        }
        snprintf(what, sizeof(what), "%zu B", rec_len[r]);
        report(s, what, &one, retries0, t0, writes0);
        CHECK_EQ(one.torn, 0);
        all.busy += one.busy;
    }
    {
        struct tally v = {0};
        uint64_t retries0 = atomic_load(&s->c.consistent_retries);
        uint64_t writes0 = atomic_load(&sh->writes);
        double t0 = now_s();
        /* the writer takes each record in turn meanwhile */
        for (uint64_t i = 0; v.reads < total / 4; i++) {
            atomic_store(&sh->writing, (int)(i % NREC));
            read_all(s, base, &v);
        }
        report(s, "all three", &v, retries0, t0, writes0);
        CHECK_EQ(v.torn, 0);
        all.busy += v.busy;
    }
    /* Not asserted: a host that never pauses may starve a reader. */
    printf("busy (HMAF_EBUSY) in all: %llu\n", (unsigned long long)all.busy);
    check_plain_reads_tear(s, base);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    return 0;
}
