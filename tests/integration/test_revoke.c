/* Revocation under load: a dpu thread reads the second "buf" exposure in a
 * loop while the host revokes it. Reads that start after the revoke call
 * returned must fail; reads of the other exposure go on working. A second,
 * idle session must also fail once it touches the range again. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"
#include "target.h"

struct reader {
    hmaf_session_t *s;
    uint64_t addr;
    _Atomic int revoked;   /* set once the revoke call has returned */
    _Atomic int stop;
    _Atomic long tries_after; /* reads begun after the revoke returned */
    _Atomic int read_once;    /* a read succeeded before the revoke */
    long ok_before, ok_after, failed_after;
    int wrong_error;
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    uint8_t tmp[512];

    while (!atomic_load(&r->stop)) {
        int after = atomic_load(&r->revoked);
        int ret = hmaf_session_read(r->s, tmp, r->addr, sizeof(tmp));
        atomic_fetch_add(&r->tries_after, after);
        if (ret == 0) {
            after ? r->ok_after++ : r->ok_before++;
            atomic_store(&r->read_once, 1);
        } else if (after) {
            r->failed_after++;
            r->wrong_error |= ret != HMAF_EFAULT;
        } else {
            r->wrong_error |= ret != HMAF_EFAULT;
        }
    }
    return NULL;
}

int main(void)
{
    struct target t;
    struct reader r = {0};
    pthread_t th;
    hmaf_session_t *idle;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    uint64_t buf;
    uint8_t tmp[64];

    target_start_standard(&t);
    r.s = target_connect(&t);
    idle = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(r.s, "buf", &buf, NULL));
    r.addr = buf + STD_SPLIT + 4096;
    CHECK_OK(hmaf_session_read(idle, tmp, r.addr, sizeof(tmp)));
    CHECK(pthread_create(&th, NULL, read_loop, &r) == 0);
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    /* Its first read is a miss, a few round trips through the agent: on a
     * busy machine, with an engine whose transfers need the host's cpu
     * (ucx), they may take longer than the pause. */
    for (int i = 0; i < 5000 && !atomic_load(&r.read_once); i++) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK_EQ(target_command(&t, 'r'), 1); /* revoke returns ... */
    atomic_store(&r.revoked, 1);          /* ... and only then this */
    /* Let the reader try again a while, however busy the machine. */
    for (int i = 0; i < 5000 && atomic_load(&r.tries_after) < 100; i++) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECK(r.ok_before > 0);
    CHECK_EQ(r.ok_after, 0);
    CHECK(r.failed_after > 0);
    CHECK_EQ(r.wrong_error, 0);
    /* The idle session did not acknowledge in time, yet cannot read. */
    CHECK_ERR(hmaf_session_read(idle, tmp, r.addr, sizeof(tmp)), HMAF_EFAULT);
    /* The first exposure is untouched by the revocation. */
    CHECK_OK(hmaf_session_read(r.s, tmp, buf + 10, sizeof(tmp)));
    CHECK_OK(hmaf_session_read(idle, tmp, buf + 10, sizeof(tmp)));
    CHECK_EQ(tmp[0], target_pattern(10, 1));
    CHECK_OK(hmaf_session_stats(r.s, &st));
    CHECK(st.revocations >= 1);
    hmaf_session_destroy(idle);
    hmaf_session_destroy(r.s);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_revoke: ok (%ld reads before, %ld refused after)\n",
           r.ok_before, r.failed_after);
    return 0;
}
