/*
 * The mailbox: one session's control channel, laid out in host memory and
 * driven by the dpu side with engine reads and writes only.
 *
 *   [0, 64)     header, host-written: magic, version, nslots, slot size,
 *               session id, revocation epoch
 *   [64, 128)   dpu-written: the last revocation epoch it acknowledged
 *   [128, ...)  nslots slots of HMAF_MBOX_SLOT_SIZE bytes each:
 *     +0    request word (dpu-written)  +8    request payload
 *     +256  response word (host-written) +264 response payload
 *   (slots of 2048 bytes: a REGISTER answer carries an export blob of up
 *   to HMAF_BLOB_MAX bytes)
 *   A request longer than HMAF_MBOX_REQ_MAX bytes (a batch of atomics, of
 *   frees) is written at +264 instead, up to HMAF_MBOX_REQ_LONG_MAX bytes:
 *   the agent copies it out before it writes its answer there.
 *   [32, 48) of the header, host-written: the host's rings of this session
 *   (a count, then the latest value; notify.h)
 *
 * A request word is seq (bits 0-31, never 0) | op (32-39) | payload length
 * (40-55). The dpu side writes the payload, waits for that write to
 * complete, then writes the word. A response word is seq | status (32-47,
 * a negative HMAF code as int16) | payload length (48-63); the host writes
 * the payload first and the word last with release order. Neither side
 * trusts a payload read together with its word. Requests and responses
 * without arguments (PING, most errors) carry no payload at all, so they
 * cost one write and the polls.
 */
#ifndef HMAF_PROTO_MAILBOX_H
#define HMAF_PROTO_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include "proto/handshake.h"

#define HMAF_MBOX_MAGIC 0x584f424du /* bytes "MBOX" read as little-endian */
#define HMAF_MBOX_VERSION 3 /* 2: 2048-byte slots; 3: long requests, rings */
#define HMAF_MBOX_HEADER_EPOCH 24 /* offset of the revocation epoch */
#define HMAF_MBOX_HEADER_RING_COUNT 32 /* rings of the host, ever */
#define HMAF_MBOX_HEADER_RING_VALUE 40 /* the latest ring's value */
#define HMAF_MBOX_ACK_OFFSET 64
#define HMAF_MBOX_SLOTS_OFFSET 128
#define HMAF_MBOX_SLOT_SIZE 2048
#define HMAF_MBOX_REQ_WORD 0
#define HMAF_MBOX_REQ_PAYLOAD 8
#define HMAF_MBOX_REQ_MAX 248
#define HMAF_MBOX_RESP_WORD 256
#define HMAF_MBOX_RESP_PAYLOAD 264
#define HMAF_MBOX_RESP_MAX (HMAF_MBOX_SLOT_SIZE - HMAF_MBOX_RESP_PAYLOAD)
#define HMAF_MBOX_REQ_LONG_MAX HMAF_MBOX_RESP_MAX
#define HMAF_MBOX_MAX_SLOTS 256

enum hmaf_mbox_op {
    HMAF_OP_PING = 1,
    HMAF_OP_REGISTER = 2,
    HMAF_OP_DEREGISTER = 3,
    HMAF_OP_LOOKUP = 4,
    HMAF_OP_ATOMIC = 5, /* atomic.h: a batch performed by the agent */
    HMAF_OP_ALLOC = 6,  /* heap.h: blocks of the host's heap */
    HMAF_OP_FREE = 7,   /* heap.h: blocks given back, in a batch */
    HMAF_OP_NOTIFY = 8, /* notify.h: the dpu side rings the host */
};

/* Where a request of this payload length sits in its slot. */
static inline uint64_t hmaf__mbox_req_payload_at(uint16_t payload_len)
{
    return payload_len <= HMAF_MBOX_REQ_MAX ? HMAF_MBOX_REQ_PAYLOAD
                                            : HMAF_MBOX_RESP_PAYLOAD;
}

static inline uint64_t hmaf__mbox_req_word(uint32_t seq, uint8_t op,
                                           uint16_t payload_len)
{
    return (uint64_t)seq | (uint64_t)op << 32 | (uint64_t)payload_len << 40;
}

static inline uint64_t hmaf__mbox_resp_word(uint32_t seq, int status,
                                            uint16_t payload_len)
{
    return (uint64_t)seq | (uint64_t)(uint16_t)(int16_t)status << 32 |
           (uint64_t)payload_len << 48;
}

static inline uint32_t hmaf__mbox_word_seq(uint64_t word)
{
    return (uint32_t)word;
}
static inline uint8_t hmaf__mbox_req_op(uint64_t word)
{
    return (uint8_t)(word >> 32);
}
static inline uint16_t hmaf__mbox_req_len(uint64_t word)
{
    return (uint16_t)(word >> 40);
}
static inline int hmaf__mbox_resp_status(uint64_t word)
{
    return (int16_t)(uint16_t)(word >> 32);
}
static inline uint16_t hmaf__mbox_resp_len(uint64_t word)
{
    return (uint16_t)(word >> 48);
}

static inline size_t hmaf__mbox_size(uint32_t nslots)
{
    return HMAF_MBOX_SLOTS_OFFSET + (size_t)nslots * HMAF_MBOX_SLOT_SIZE;
}

static inline uint64_t hmaf__mbox_slot_offset(uint32_t slot)
{
    return HMAF_MBOX_SLOTS_OFFSET + (uint64_t)slot * HMAF_MBOX_SLOT_SIZE;
}

/* REGISTER: "give me the exposure that contains addr", and holds given
 * back on the way: up to HMAF_REGISTER_GIVE_MAX answers of one epoch,
 * like a DEREGISTER's, which the agent ends once it has answered (the dpu
 * side's evictions ride on its next misses instead of costing round trips
 * of their own). Wire: u64 addr, u64 len, and when holds are given back
 * u64 epoch, u16 count (1 to HMAF_REGISTER_GIVE_MAX), count u64 region
 * ids: 16, or 26 + 8 * count bytes. */
#define HMAF_REGISTER_GIVE_MAX 27
struct hmaf_req_register {
    uint64_t addr;
    uint64_t len;
    uint64_t give_epoch;
    uint16_t give_count; /* 0: none given back */
    uint64_t give_id[HMAF_REGISTER_GIVE_MAX];
};

struct hmaf_resp_register {
    uint64_t region_id;
    uint64_t base;
    uint64_t len;
    uint64_t epoch; /* revocation epoch the answer was given in */
    uint8_t access; /* hmaf_access_t */
    struct hmaf_blob export_blob;
};

/* DEREGISTER: REGISTER answers given back, up to HMAF_DEREGISTER_IDS_MAX
 * of one epoch in one request (the dpu side evicts in batches). The epoch
 * is the answers': an acknowledged revocation gives back every answer of
 * an older epoch at once (the agent drops those holds itself), so a
 * DEREGISTER names which ones it is. Wire: u64 epoch, u16 count (1 to
 * HMAF_DEREGISTER_IDS_MAX), count u64 region ids: 10 + 8 * count bytes. */
#define HMAF_DEREGISTER_IDS_MAX 29
struct hmaf_req_deregister {
    uint64_t epoch;
    uint16_t count;
    uint64_t region_id[HMAF_DEREGISTER_IDS_MAX];
};

struct hmaf_req_lookup {
    char name[64]; /* NUL-terminated */
};

struct hmaf_resp_lookup {
    uint64_t addr;
    uint64_t len;
};

/* Encoders return the payload length (0: the message cannot be encoded);
 * decoders 0 or -EPROTO. Decoders take exactly the payload length a
 * request of that op must have. */
size_t hmaf__req_register_encode(const struct hmaf_req_register *r,
                                 uint8_t *buf);
int hmaf__req_register_decode(const uint8_t *buf, size_t len,
                              struct hmaf_req_register *out);
size_t hmaf__resp_register_encode(const struct hmaf_resp_register *r,
                                  uint8_t *buf);
int hmaf__resp_register_decode(const uint8_t *buf, size_t len,
                               struct hmaf_resp_register *out);
size_t hmaf__req_deregister_encode(const struct hmaf_req_deregister *r,
                                   uint8_t *buf);
int hmaf__req_deregister_decode(const uint8_t *buf, size_t len,
                                struct hmaf_req_deregister *out);
size_t hmaf__req_lookup_encode(const struct hmaf_req_lookup *r, uint8_t *buf);
int hmaf__req_lookup_decode(const uint8_t *buf, size_t len,
                            struct hmaf_req_lookup *out);
size_t hmaf__resp_lookup_encode(const struct hmaf_resp_lookup *r,
                                uint8_t *buf);
int hmaf__resp_lookup_decode(const uint8_t *buf, size_t len,
                             struct hmaf_resp_lookup *out);

#endif
