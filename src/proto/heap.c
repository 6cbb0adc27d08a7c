#include "proto/heap.h"

#include <hmaf/error.h>

#include "util/wire.h"

_Static_assert(HMAF_RESP_ALLOC_FIXED + 8 * HMAF_ALLOC_BATCH_MAX <=
                   HMAF_MBOX_RESP_MAX,
               "a full ALLOC answer must fit a response slot");
_Static_assert(HMAF_REQ_FREE_FIXED + 8 * HMAF_FREE_BATCH_MAX <=
                   HMAF_MBOX_REQ_LONG_MAX,
               "a full FREE must fit a long request");
_Static_assert(HMAF_REQ_ALLOC_SIZE <= HMAF_MBOX_REQ_MAX, "alloc must fit");

static int decoded(const struct hmaf_wire *w, size_t len)
{
    return w->ok && w->pos == len ? 0 : HMAF_EPROTO;
}

size_t hmaf__req_alloc_encode(const struct hmaf_req_alloc *r, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_REQ_ALLOC_SIZE);

    if (r->count == 0 || r->count > HMAF_ALLOC_BATCH_MAX) {
        return 0;
    }
    hmaf__wire_put_u64(&w, r->size);
    hmaf__wire_put_u16(&w, r->count);
    hmaf__wire_put_u64(&w, r->cached);
    return w.pos;
}

int hmaf__req_alloc_decode(const uint8_t *buf, size_t len,
                           struct hmaf_req_alloc *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    out->size = hmaf__wire_get_u64(&w);
    out->count = hmaf__wire_get_u16(&w);
    out->cached = hmaf__wire_get_u64(&w);
    if (out->count == 0 || out->count > HMAF_ALLOC_BATCH_MAX) {
        return HMAF_EPROTO;
    }
    return decoded(&w, len);
}

size_t hmaf__resp_alloc_encode(const struct hmaf_resp_alloc *r, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_MBOX_RESP_MAX);

    if (r->count == 0 || r->count > HMAF_ALLOC_BATCH_MAX) {
        return 0;
    }
    hmaf__wire_put_u64(&w, r->block_size);
    hmaf__wire_put_u16(&w, r->count);
    for (uint16_t i = 0; i < r->count; i++) {
        hmaf__wire_put_u64(&w, r->addr[i]);
    }
    return w.pos;
}

int hmaf__resp_alloc_decode(const uint8_t *buf, size_t len,
                            struct hmaf_resp_alloc *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    out->block_size = hmaf__wire_get_u64(&w);
    out->count = hmaf__wire_get_u16(&w);
    if (out->count == 0 || out->count > HMAF_ALLOC_BATCH_MAX ||
        len != HMAF_RESP_ALLOC_FIXED + 8u * out->count) {
        out->count = 0;
        return HMAF_EPROTO;
    }
    for (uint16_t i = 0; i < out->count; i++) {
        out->addr[i] = hmaf__wire_get_u64(&w);
    }
    return decoded(&w, len);
}

size_t hmaf__req_free_encode(const struct hmaf_req_free *r, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_MBOX_REQ_LONG_MAX);

    if (r->count == 0 || r->count > HMAF_FREE_BATCH_MAX) {
        return 0;
    }
    hmaf__wire_put_u64(&w, r->cached);
    hmaf__wire_put_u16(&w, r->count);
    for (uint16_t i = 0; i < r->count; i++) {
        hmaf__wire_put_u64(&w, r->addr[i]);
    }
    return w.pos;
}

int hmaf__req_free_decode(const uint8_t *buf, size_t len,
                          struct hmaf_req_free *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    out->cached = hmaf__wire_get_u64(&w);
    out->count = hmaf__wire_get_u16(&w);
    if (out->count == 0 || out->count > HMAF_FREE_BATCH_MAX ||
        len != HMAF_REQ_FREE_FIXED + 8u * out->count) {
        out->count = 0;
        return HMAF_EPROTO;
    }
    for (uint16_t i = 0; i < out->count; i++) {
        out->addr[i] = hmaf__wire_get_u64(&w);
    }
    return decoded(&w, len);
}

size_t hmaf__resp_free_encode(uint16_t bad, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_RESP_FREE_SIZE);

    hmaf__wire_put_u16(&w, bad);
    return w.pos;
}

int hmaf__resp_free_decode(const uint8_t *buf, size_t len, uint16_t *bad_out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    *bad_out = hmaf__wire_get_u16(&w);
    return decoded(&w, len);
}
