/*
 * Regression: a mirror page (mapping mode) used as the local buffer of a
 * transfer on the same session — hmaf_session_write(s, dst,
 * hmaf_map_local(m, src), n), or a read into a writable mirror.
 *
 * doca used to hang for good: the engine copies between the caller's
 * buffer and its staging slot while it holds the ep's lock, inside the
 * step's read-side section, and the missing mirror page faulted into the
 * mapping's handler thread, which needs that lock (and a grace period) to
 * fetch the page. The watch thread then hung too, so the session could
 * not confirm revocations and destroy hung.
 *
 * cma used to fail with HMAF_EFAULT: process_vm_* touches the mirror in
 * the kernel, and the mapping's userfaultfd serves user-mode faults only.
 *
 * Now the data path moves mirror memory through a bounce buffer
 * (src/util/mirrors.h). With the argument "read", the other direction.
 *
 * Exit 1 on a hang (bounded) or a wrong result.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/map.h>

#include "check.h"
#include "target.h"

static hmaf_session_t *s;
static uint64_t buf, ro;
static void *mirror;
static _Atomic int done;
static int result;
static int into_mirror; /* argv[1] == "read": read into a mirror page */

static _Atomic int destroyed;
static hmaf_map_t *m;

static void *destroyer(void *arg)
{
    (void)arg;
    hmaf_map_destroy(m); /* first step of a clean teardown */
    atomic_store(&destroyed, 1);
    return NULL;
}

static void *copier(void *arg)
{
    (void)arg;
    result = into_mirror ? hmaf_session_read(s, mirror, ro, 64)
                         : hmaf_session_write(s, buf, mirror, 64);
    atomic_store(&done, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    struct target t;
    hmaf_map_params_t mp;
    pthread_t th;
    char b[8];
    int waited;

    setvbuf(stdout, NULL, _IONBF, 0);
    into_mirror = argc > 1 && strcmp(argv[1], "read") == 0;
    target_start_standard(&t);
    s = target_connect(&t);
    printf("engine: %s\n", hmaf_session_engine(s));
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    hmaf_map_params_init(&mp);
    if (into_mirror) {
        /* hmaf_session_read(s, mirror of "buf", ro, 64): ro cached first,
         * the mirrored "buf" exposure not */
        CHECK_OK(hmaf_session_read(s, b, ro, sizeof(b)));
        mp.flags = HMAF_MAP_ANYWHERE;
        if (hmaf_map_create(s, buf, 16384, &mp, &m) == HMAF_ENOTSUP) {
            SKIP("no userfaultfd here");
        }
        mirror = hmaf_map_local(m, buf);
    } else {
        /* hmaf_session_write(s, buf, mirror of "ro", 64) */
        CHECK_OK(hmaf_session_read(s, b, buf, sizeof(b))); /* dst cached */
        mp.flags = HMAF_MAP_READ_ONLY | HMAF_MAP_ANYWHERE;
        if (hmaf_map_create(s, ro, 16384, &mp, &m) == HMAF_ENOTSUP) {
            SKIP("no userfaultfd here");
        }
        mirror = hmaf_map_local(m, ro);
    }
    CHECK(pthread_create(&th, NULL, copier, NULL) == 0);
    for (waited = 0; waited < 5000 && !atomic_load(&done); waited += 10) {
        usleep(10 * 1000);
    }
    if (!atomic_load(&done)) {
        printf("DEFECT: hmaf_session_%s %s a mirror page has not "
               "returned in 5 s (deadlock: the staging copy under the "
               "ep's lock faults; the mapping's handler needs that lock "
               "for its own read on the same session)\n",
               into_mirror ? "read" : "write", into_mirror ? "into" : "from");
        printf("a revocation now: %s\n",
               target_command(&t, 'r') ? "0" : "failed (cut off)");
        CHECK(pthread_create(&th, NULL, destroyer, NULL) == 0);
        sleep(3);
        printf("hmaf_map_destroy from another thread: %s\n",
               atomic_load(&destroyed) ? "returned" : "still inside after 3 s");
        fflush(NULL);
        target_kill(&t);
        _exit(1);
    }
    pthread_join(th, NULL);
    printf("%s = %s\n",
           into_mirror ? "hmaf_session_read(mirror of buf, ro, 64)"
                       : "hmaf_session_write(buf, mirror of ro, 64)",
           hmaf_err_name(result));
    hmaf_map_destroy(m);
    hmaf_session_destroy(s);
    target_stop(&t);
    if (result != 0) {
        printf("DEFECT: a mirror page is not usable as a local buffer\n");
        return 1;
    }
    return 0;
}
