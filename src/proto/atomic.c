#include "proto/atomic.h"

#include <hmaf/error.h>

#include "util/wire.h"

static int count_ok(size_t count)
{
    return count >= 1 && count <= HMAF_ATOMIC_BATCH_MAX;
}

/* The statuses an op may end with on the agent's side. */
static int op_status_ok(int status)
{
    return status == 0 || status == HMAF_EINVAL || status == HMAF_EFAULT ||
           status == HMAF_EACCES;
}

size_t hmaf__req_atomic_encode(const struct hmaf_wire_atomic *ops,
                               size_t count, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_MBOX_REQ_LONG_MAX);

    if (!count_ok(count)) {
        return 0;
    }
    hmaf__wire_put_u16(&w, count);
    for (size_t i = 0; i < count; i++) {
        hmaf__wire_put_u8(&w, ops[i].op);
        hmaf__wire_put_u8(&w, ops[i].size);
        hmaf__wire_put_u64(&w, ops[i].addr);
        hmaf__wire_put_u64(&w, ops[i].operand);
        hmaf__wire_put_u64(&w, ops[i].compare);
    }
    return w.ok ? w.pos : 0;
}

int hmaf__req_atomic_decode(const uint8_t *buf, size_t len,
                            struct hmaf_wire_atomic *ops_out,
                            uint16_t *count_out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);
    uint16_t count = hmaf__wire_get_u16(&w);

    *count_out = 0;
    if (!w.ok || !count_ok(count) || len != hmaf__req_atomic_len(count)) {
        return HMAF_EPROTO;
    }
    for (uint16_t i = 0; i < count; i++) {
        ops_out[i].op = hmaf__wire_get_u8(&w);
        ops_out[i].size = hmaf__wire_get_u8(&w);
        ops_out[i].addr = hmaf__wire_get_u64(&w);
        ops_out[i].operand = hmaf__wire_get_u64(&w);
        ops_out[i].compare = hmaf__wire_get_u64(&w);
    }
    if (!w.ok || w.pos != len) {
        return HMAF_EPROTO;
    }
    *count_out = count;
    return 0;
}

size_t hmaf__resp_atomic_encode(const struct hmaf_wire_atomic_result *r,
                                size_t count, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_MBOX_RESP_MAX);

    if (!count_ok(count)) {
        return 0;
    }
    for (size_t i = 0; i < count; i++) {
        if (!op_status_ok(r[i].status)) {
            return 0;
        }
        hmaf__wire_put_u64(&w, r[i].old);
        hmaf__wire_put_u16(&w, (uint16_t)(int16_t)r[i].status);
    }
    return w.ok ? w.pos : 0;
}

int hmaf__resp_atomic_decode(const uint8_t *buf, size_t len, size_t count,
                             struct hmaf_wire_atomic_result *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    if (!count_ok(count) || len != HMAF_ATOMIC_WIRE_RESULT * count) {
        return HMAF_EPROTO;
    }
    for (size_t i = 0; i < count; i++) {
        out[i].old = hmaf__wire_get_u64(&w);
        out[i].status = (int16_t)hmaf__wire_get_u16(&w);
        if (!op_status_ok(out[i].status)) {
            return HMAF_EPROTO;
        }
    }
    return w.ok && w.pos == len ? 0 : HMAF_EPROTO;
}
