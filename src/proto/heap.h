/*
 * The heap's messages (heap.h) and its size classes, which both sides
 * compute alike.
 *
 * ALLOC: "give me `count` blocks of at least `size` bytes". A size up to
 * HMAF_HEAP_SMALL_MAX is rounded up to its class and may ask for up to
 * HMAF_ALLOC_BATCH_MAX blocks; a larger one for exactly one. `cached` is
 * what the dpu side holds in its cache besides (for the host's stats).
 * Wire: u64 size, u16 count, u64 cached: 18 bytes. Answer: u64 block size,
 * u16 count (1 to the count asked: fewer when the heap or the quota ran
 * short), count u64 addresses: 10 + 8 * count bytes. No block at all is
 * an error status without payload.
 *
 * FREE: blocks given back, up to HMAF_FREE_BATCH_MAX in one long request.
 * Wire: u64 cached, u16 count (>= 1), count u64 addresses: 10 + 8 * count
 * bytes. Answer: u16 how many addresses were refused (not a live block).
 */
#ifndef HMAF_PROTO_HEAP_H
#define HMAF_PROTO_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include <hmaf/heap.h>

#include "proto/mailbox.h"

#define HMAF_HEAP_CLASSES 40
#define HMAF_ALLOC_BATCH_MAX 128
#define HMAF_FREE_BATCH_MAX 221
#define HMAF_REQ_ALLOC_SIZE 18
#define HMAF_RESP_ALLOC_FIXED 10
#define HMAF_REQ_FREE_FIXED 10
#define HMAF_RESP_FREE_SIZE 2

/* The size class of a size in [1, HMAF_HEAP_SMALL_MAX]: 16 B steps up to
 * 128 B, then four steps per power of two (at most 25 % lost). */
static inline unsigned hmaf__heap_class_of(uint64_t size)
{
    unsigned b;
    uint64_t quarter;

    if (size <= 128) {
        return size == 0 ? 0 : (unsigned)((size + 15) / 16 - 1);
    }
    b = 63u - (unsigned)__builtin_clzll(size - 1); /* 2^b < size */
    quarter = (1ull << b) / 4;
    return 8 + (b - 7) * 4 +
           (unsigned)((size - (1ull << b) + quarter - 1) / quarter) - 1;
}

static inline uint64_t hmaf__heap_class_size(unsigned cls)
{
    unsigned j;

    if (cls < 8) {
        return 16ull * (cls + 1);
    }
    j = cls - 8;
    return (1ull << (7 + j / 4)) + (j % 4 + 1) * ((1ull << (7 + j / 4)) / 4);
}

struct hmaf_req_alloc {
    uint64_t size;
    uint16_t count;
    uint64_t cached;
};

struct hmaf_resp_alloc {
    uint64_t block_size;
    uint16_t count;
    uint64_t addr[HMAF_ALLOC_BATCH_MAX];
};

struct hmaf_req_free {
    uint64_t cached;
    uint16_t count;
    uint64_t addr[HMAF_FREE_BATCH_MAX];
};

/* As in proto/mailbox.h: encoders return the payload length (0: cannot be
 * encoded), decoders 0 or HMAF_EPROTO and take exactly the length a
 * message of that kind must have. */
size_t hmaf__req_alloc_encode(const struct hmaf_req_alloc *r, uint8_t *buf);
int hmaf__req_alloc_decode(const uint8_t *buf, size_t len,
                           struct hmaf_req_alloc *out);
size_t hmaf__resp_alloc_encode(const struct hmaf_resp_alloc *r, uint8_t *buf);
int hmaf__resp_alloc_decode(const uint8_t *buf, size_t len,
                            struct hmaf_resp_alloc *out);
size_t hmaf__req_free_encode(const struct hmaf_req_free *r, uint8_t *buf);
int hmaf__req_free_decode(const uint8_t *buf, size_t len,
                          struct hmaf_req_free *out);
size_t hmaf__resp_free_encode(uint16_t bad, uint8_t *buf);
int hmaf__resp_free_decode(const uint8_t *buf, size_t len, uint16_t *bad_out);

#endif
