/*
 * The mailbox's ALLOC and FREE (proto/heap.h), served under the agent's
 * lock like every request. The dpu side is not trusted: every field is
 * checked by the decoder or the allocator, and a free of anything but a
 * live block's start is refused and counted, never acted on.
 */
#include <stdint.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "host/heap.h"
#include "proto/heap.h"

int hmaf__agent_serve_alloc(struct hmaf_agent *a, struct agent_session *s,
                            const uint8_t *req, uint16_t len, uint8_t *resp,
                            uint16_t *resp_len_out)
{
    struct hmaf_req_alloc r;
    struct hmaf_resp_alloc out;
    uint64_t granted;
    uint32_t got;
    int ret = hmaf__req_alloc_decode(req, len, &r);

    if (ret < 0) {
        return ret;
    }
    if (a->heap == NULL) {
        return HMAF_ENOENT;
    }
    ret = hmaf__heap_alloc(a->heap, s->id, r.size, r.count, out.addr, &got,
                           &out.block_size);
    if (ret < 0) {
        return ret;
    }
    out.count = (uint16_t)got;
    /* Small blocks go to its cache until handed out; a large one is
     * handed out at once. Its word is capped (heap.c) and must not wrap. */
    granted = r.size <= HMAF_HEAP_SMALL_MAX ? got * out.block_size : 0;
    hmaf__heap_note_cached(a->heap, s->id,
                           r.cached > UINT64_MAX - granted
                               ? UINT64_MAX
                               : r.cached + granted);
    *resp_len_out = (uint16_t)hmaf__resp_alloc_encode(&out, resp);
    return 0;
}

int hmaf__agent_serve_free(struct hmaf_agent *a, struct agent_session *s,
                           const uint8_t *req, uint16_t len, uint8_t *resp,
                           uint16_t *resp_len_out)
{
    struct hmaf_req_free r;
    uint16_t bad = 0;
    int ret = hmaf__req_free_decode(req, len, &r);

    if (ret < 0) {
        return ret;
    }
    if (a->heap == NULL) {
        return HMAF_ENOENT;
    }
    for (uint16_t i = 0; i < r.count; i++) {
        bad += hmaf__heap_free(a->heap, r.addr[i]) < 0;
    }
    hmaf__heap_note_cached(a->heap, s->id, r.cached);
    *resp_len_out = (uint16_t)hmaf__resp_free_encode(bad, resp);
    return 0;
}
