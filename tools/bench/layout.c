/*
 * What the host buffer holds and which addresses each pattern visits. The
 * host fills its buffer and the dpu side its mirror with the same
 * function, so the mirror is a byte-for-byte copy: chain links are host
 * addresses in both.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define NODE_SLOTS (CHASE_LEN / NODE_LEN)
#define CHAIN_SEED 0x5eed0fc4a5e5ull

uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* Word i of the data area. */
static uint64_t pattern_word(uint64_t i)
{
    return (i + 1) * 0x9e3779b97f4a7c15ull;
}

/*
 * CHAINS_MAX chains of CHAIN_NODES nodes each, on node slots drawn at
 * random from the whole chase area, so that a walk defeats the caches and
 * prefetchers as a real linked structure would.
 */
static void fill_chains(uint8_t *area, uint64_t area_addr, uint64_t *starts_out,
                        uint64_t *lasts_out)
{
    uint32_t *slot = malloc(NODE_SLOTS * sizeof(*slot));
    uint64_t state = CHAIN_SEED;
    size_t used = 0;

    if (slot == NULL) {
        abort(); /* 1 MiB at startup */
    }
    for (uint32_t i = 0; i < NODE_SLOTS; i++) {
        slot[i] = i;
    }
    memset(area, 0, CHASE_LEN);
    for (size_t c = 0; c < CHAINS_MAX; c++) {
        uint64_t prev = 0;
        for (size_t k = 0; k < CHAIN_NODES; k++, used++) {
            /* Partial Fisher-Yates: slot[used] becomes a fresh random slot. */
            size_t pick = used + xorshift(&state) % (NODE_SLOTS - used);
            uint32_t s = slot[pick];
            uint64_t addr = area_addr + (uint64_t)s * NODE_LEN;
            uint64_t tag = (uint64_t)c << 32 | k;
            slot[pick] = slot[used];
            slot[used] = s;
            memcpy(area + (size_t)s * NODE_LEN + 8, &tag, sizeof(tag));
            if (prev == 0) {
                starts_out[c] = addr;
            } else {
                memcpy(area + (prev - area_addr), &addr, sizeof(addr));
            }
            prev = addr;
        }
        lasts_out[c] = prev; /* its next pointer stays 0 */
    }
    free(slot);
}

void layout_fill(uint8_t *buf, uint64_t addr, uint64_t *starts_out,
                 uint64_t *lasts_out)
{
    uint64_t *words = (uint64_t *)buf;

    /* Writing every word also faults the pages in before anyone times. */
    for (size_t i = 0; i < DATA_LEN / sizeof(uint64_t); i++) {
        words[i] = pattern_word(i);
    }
    fill_chains(buf + DATA_LEN, addr + DATA_LEN, starts_out, lasts_out);
}

/* Word j of region i: no two regions alike, and unlike the buffer. */
static uint64_t region_word(uint64_t i, uint64_t j)
{
    return pattern_word(i * (REGION_LEN / sizeof(uint64_t)) + j) ^
           0x5ca1ab1e0ddba11ull;
}

void layout_fill_regions(uint8_t *area, unsigned n)
{
    memset(area, 0, (size_t)n * REGION_STRIDE);
    for (unsigned i = 0; i < n; i++) {
        uint64_t *words = (uint64_t *)(void *)(area + i * REGION_STRIDE);
        for (size_t j = 0; j < REGION_LEN / sizeof(uint64_t); j++) {
            words[j] = region_word(i, j);
        }
    }
}

uint64_t layout_chain_node(const uint8_t *buf, uint64_t addr, uint64_t start,
                           unsigned k)
{
    uint64_t node = start;

    for (unsigned i = 1; i < k; i++) {
        memcpy(&node, buf + (node - addr), sizeof(node));
    }
    return node;
}

void layout_random(uint32_t *rnd, unsigned seed)
{
    uint64_t state = 0x2545f4914f6cdd1dull * (seed + 1);

    for (unsigned i = 0; i < RND_N; i++) {
        rnd[i] = (uint32_t)(xorshift(&state) >> 16);
    }
}

void layout_permutation(uint32_t *v, size_t n, unsigned seed)
{
    uint64_t state = 0x2545f4914f6cdd1dull * (seed + 1);

    for (size_t i = 0; i < n; i++) {
        v[i] = (uint32_t)i;
    }
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        size_t j = xorshift(&state) % i;
        uint32_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Offset in the data area of transfer j of unit `unit`. Sizes are powers
 * of two, so slots tile the data area exactly, and masks replace the
 * divisions that would cost more than a small memcpy. */
uint64_t layout_offset(const struct worker *w, const struct cell *cell,
                       unsigned unit, unsigned j)
{
    uint64_t mask = DATA_LEN / cell->size - 1;
    uint64_t k = (uint64_t)unit * cell->p->count + j;

    switch (cell->p->where) {
    case AT_SEQ:
        return (k & mask) * cell->size;
    case AT_RANDOM:
        return (w->rnd[k % RND_N] & mask) * cell->size;
    case AT_REGIONS:
        return (uint64_t)(w->rnd[k % RND_N] % cell->n) * REGION_STRIDE;
    default:
        return SAME_OFF;
    }
}

uint64_t layout_addr(const struct worker *w, const struct cell *cell,
                     unsigned unit, unsigned j)
{
    uint64_t base = cell->p->where == AT_REGIONS ? w->b->regions : w->b->buf;

    return base + layout_offset(w, cell, unit, j);
}

const uint8_t *host_bytes(const struct bench *b, uint64_t remote)
{
    if (b->regions != 0 && remote >= b->regions &&
        remote - b->regions < (uint64_t)b->nregions * REGION_STRIDE) {
        return b->regions_mirror + (remote - b->regions);
    }
    return mirror_of(b, remote);
}
