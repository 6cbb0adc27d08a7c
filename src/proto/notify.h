/*
 * NOTIFY (HMAF_OP_NOTIFY): the dpu side rings the host. Wire: u32 tag,
 * u64 value: exactly HMAF_NOTIFY_REQ_LEN bytes; the answer carries no
 * payload (its status: 0, or HMAF_ENOSPC when the session has too many
 * tags waiting).
 */
#ifndef HMAF_PROTO_NOTIFY_H
#define HMAF_PROTO_NOTIFY_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "util/wire.h"

#define HMAF_NOTIFY_REQ_LEN 12

struct hmaf_req_notify {
    uint32_t tag;
    uint64_t value;
};

static inline size_t hmaf__req_notify_encode(const struct hmaf_req_notify *r,
                                             uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_NOTIFY_REQ_LEN);

    hmaf__wire_put_u32(&w, r->tag);
    hmaf__wire_put_u64(&w, r->value);
    return HMAF_NOTIFY_REQ_LEN;
}

static inline int hmaf__req_notify_decode(const uint8_t *buf, size_t len,
                                          struct hmaf_req_notify *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    if (len != HMAF_NOTIFY_REQ_LEN) {
        return -EPROTO;
    }
    out->tag = hmaf__wire_get_u32(&w);
    out->value = hmaf__wire_get_u64(&w);
    return 0;
}

#endif
