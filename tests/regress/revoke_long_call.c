/* Regression: a call already under way when the host revoked kept using
 * its cached region after hmaf_agent_revoke() had returned (the epoch was
 * looked at only when a call began). Now each step checks that its view
 * of the epoch is within the host's lease. A 16 GiB writev runs while the
 * host revokes, zeroes the memory, and watches that nothing writes again.
 * The revocation wait (250 ms) leaves room for a sanitizer build on a
 * busy machine to confirm; the writev, cut short when all is well, would
 * last seconds past it if the call did not look at the epoch. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "target.h"

#define AREA (64u << 20)
#define PIECE (16u << 20)
#define PIECES 1024 /* 16 GiB in all: far longer than the revocation wait */

static uint8_t *area;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    area = calloc(1, AREA);
    if (area == NULL) {
        return HMAF_ENOMEM;
    }
    return hmaf_agent_expose(agent, area, AREA, HMAF_ACCESS_READ_WRITE) ||
           hmaf_agent_publish(agent, "area", area, AREA);
}

/* Revoke, wipe, and check for 150 ms that nobody writes any more. */
static int revoke_and_watch(hmaf_agent_t *agent, int cmd, void *arg)
{
    (void)cmd, (void)arg;
    if (hmaf_agent_revoke(agent, area, AREA) != 0) {
        return 2;
    }
    memset(area, 0, AREA);
    nanosleep(&(struct timespec){0, 150000000}, NULL);
    for (size_t i = 0; i < AREA; i += 4096) {
        if (area[i] != 0) {
            return 0;
        }
    }
    return 1;
}

struct writer {
    hmaf_session_t *s;
    uint64_t addr;
    _Atomic int started; /* the long writev is about to begin */
    int ret;
};

static void *write_long(void *arg)
{
    struct writer *w = arg;
    static hmaf_seg_t segs[PIECES];
    uint8_t *src = malloc(PIECE);

    CHECK(src != NULL);
    memset(src, 'X', PIECE);
    for (int i = 0; i < PIECES; i++) {
        segs[i] = (hmaf_seg_t){src, w->addr + (uint64_t)(i % 4) * PIECE,
                               PIECE};
    }
    CHECK_OK(hmaf_session_write(w->s, w->addr, src, PIECE));
    atomic_store(&w->started, 1);
    w->ret = hmaf_session_writev(w->s, segs, PIECES);
    free(src);
    return NULL;
}

int main(void)
{
    struct target_options opts = {.setup = setup,
                                  .command = revoke_and_watch,
                                  .revoke_wait_ms = 250};
    struct target t;
    struct writer w = {0};
    pthread_t th;

    target_start(&t, &opts);
    w.s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(w.s, "area", &w.addr, NULL));
    CHECK(pthread_create(&th, NULL, write_long, &w) == 0);
    while (!atomic_load(&w.started)) {
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    nanosleep(&(struct timespec){0, 5000000}, NULL);
    CHECK_EQ(target_command(&t, 'z'), 1);
    pthread_join(th, NULL);
    CHECK_ERR(w.ret, HMAF_EFAULT); /* cut short by the revocation */
    hmaf_session_destroy(w.s);
    CHECK_EQ(target_stop(&t), 0);
    printf("revoke_long_call: ok\n");
    return 0;
}
