/*
 * The ATOMIC request (HMAF_OP_ATOMIC): a batch of atomics the agent
 * performs on host words (atomic.h), and its answer.
 *
 * Request: u16 count (1 to HMAF_ATOMIC_BATCH_MAX), then count ops of
 * HMAF_ATOMIC_WIRE_OP bytes: u8 op, u8 size, u64 addr, u64 operand,
 * u64 compare. Exactly 2 + 26 * count bytes, else the whole request is
 * refused with HMAF_EPROTO: a framing error says nothing can be trusted.
 * An op's fields are not judged here: a bad op code or size is that op's
 * own failure (status HMAF_EINVAL), and the other ops still run.
 *
 * Answer (status 0): per op, in request order, u64 old, i16 status:
 * exactly 10 * count bytes. A status is 0, HMAF_EINVAL, HMAF_EFAULT or
 * HMAF_EACCES; anything else is a malformed answer.
 */
#ifndef HMAF_PROTO_ATOMIC_H
#define HMAF_PROTO_ATOMIC_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/atomic.h>

#include "proto/mailbox.h"

#define HMAF_ATOMIC_WIRE_FIXED 2
#define HMAF_ATOMIC_WIRE_OP 26
#define HMAF_ATOMIC_WIRE_RESULT 10

_Static_assert(HMAF_ATOMIC_WIRE_FIXED +
                       HMAF_ATOMIC_WIRE_OP * HMAF_ATOMIC_BATCH_MAX <=
                   HMAF_MBOX_REQ_LONG_MAX,
               "a full ATOMIC request must fit a long request");
_Static_assert(HMAF_ATOMIC_WIRE_FIXED +
                       HMAF_ATOMIC_WIRE_OP * (HMAF_ATOMIC_BATCH_MAX + 1) >
                   HMAF_MBOX_REQ_LONG_MAX,
               "HMAF_ATOMIC_BATCH_MAX is as many as fit");
_Static_assert(HMAF_ATOMIC_WIRE_RESULT * HMAF_ATOMIC_BATCH_MAX <=
                   HMAF_MBOX_RESP_MAX,
               "a full ATOMIC answer must fit a response");

struct hmaf_wire_atomic {
    uint8_t op;   /* hmaf_atomic_op_t, unchecked */
    uint8_t size; /* unchecked */
    uint64_t addr;
    uint64_t operand;
    uint64_t compare;
};

struct hmaf_wire_atomic_result {
    uint64_t old;
    int status;
};

/* Payload length of a request of count ops. */
static inline size_t hmaf__req_atomic_len(size_t count)
{
    return HMAF_ATOMIC_WIRE_FIXED + HMAF_ATOMIC_WIRE_OP * count;
}

/* Encoders return the payload length (0: count out of bounds, or a
 * status that is not an op's); decoders 0 or HMAF_EPROTO. buf holds
 * HMAF_MBOX_REQ_LONG_MAX (requests) or HMAF_MBOX_RESP_MAX bytes;
 * ops_out and out hold HMAF_ATOMIC_BATCH_MAX. */
size_t hmaf__req_atomic_encode(const struct hmaf_wire_atomic *ops,
                               size_t count, uint8_t *buf);
int hmaf__req_atomic_decode(const uint8_t *buf, size_t len,
                            struct hmaf_wire_atomic *ops_out,
                            uint16_t *count_out);
size_t hmaf__resp_atomic_encode(const struct hmaf_wire_atomic_result *r,
                                size_t count, uint8_t *buf);
/* count: the request's; the answer must carry exactly that many. */
int hmaf__resp_atomic_decode(const uint8_t *buf, size_t len, size_t count,
                             struct hmaf_wire_atomic_result *out);

#endif
