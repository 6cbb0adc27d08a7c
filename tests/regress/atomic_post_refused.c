/*
 * A posted batch that is refused (the thread holds params.max_inflight
 * handles: HMAF_ENOSPC) left every op's status at an internal "waiting"
 * value, 1 — neither 0 nor an error — or at the local checks' outcome,
 * though nothing was posted. A refused post must leave the ops as the
 * caller filled them; the batch, posted again once there is room, runs.
 */
#include <string.h>
#include <stdlib.h>

#include "check.h"
#include "target.h"

#define INFLIGHT 2
#define UNTOUCHED 12345

/* Held until the host exits, where the leak checker sees it (volatile: a
 * store never read back would be optimised away). */
static uint8_t *volatile host_mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    uint8_t *mem = host_mem = aligned_alloc(4096, 4096);
    int ret;

    (void)arg;
    if (mem == NULL) {
        return HMAF_ENOMEM;
    }
    memset(mem, 0, 4096);
    ret = hmaf_agent_expose(agent, mem, 4096, HMAF_ACCESS_READ_WRITE);
    return ret != 0 ? ret : hmaf_agent_publish(agent, "w", mem, 4096);
}

int main(void)
{
    struct target t;
    struct target_options o = {.setup = setup};
    hmaf_session_params_t p;
    hmaf_session_t *s;
    hmaf_atomic_t held[INFLIGHT], ops[2];
    hmaf_req_t req[INFLIGHT], extra;
    uint64_t w, v = 0;

    target_start(&t, &o);
    target_session_params(&t, &p);
    p.max_inflight = INFLIGHT;
    s = target_connect_params(&p);
    w = target_root(s, "w");
    for (int i = 0; i < INFLIGHT; i++) {
        held[i] = (hmaf_atomic_t){
            .op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = w, .operand = 1};
        CHECK_OK(hmaf_session_atomic_post(s, &held[i], 1, &req[i]));
    }
    ops[0] = (hmaf_atomic_t){.op = HMAF_ATOMIC_FADD, .size = 8,
                             .remote_addr = w, .operand = 1,
                             .status = UNTOUCHED};
    ops[1] = (hmaf_atomic_t){.op = 0, .size = 8, .remote_addr = w,
                             .status = UNTOUCHED};
    CHECK_ERR(hmaf_session_atomic_post(s, ops, 2, &extra), HMAF_ENOSPC);
    CHECK_EQ(ops[0].status, UNTOUCHED);
    CHECK_EQ(ops[1].status, UNTOUCHED);
    for (int i = 0; i < INFLIGHT; i++) {
        CHECK_OK(hmaf_request_wait(s, req[i]));
    }
    CHECK_OK(hmaf_session_atomic_post(s, ops, 2, &extra));
    CHECK_ERR(hmaf_request_wait(s, extra), HMAF_EINVAL);
    CHECK_EQ(ops[0].status, 0);
    CHECK_EQ(ops[0].old, INFLIGHT);
    CHECK_ERR(ops[1].status, HMAF_EINVAL);
    CHECK_OK(hmaf_session_read(s, &v, w, 8));
    CHECK_EQ(v, INFLIGHT + 1);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    return 0;
}
