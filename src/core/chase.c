/*
 * Pointer chasing: many chains through host memory advance together, one
 * vectored read per step for all of them, so the cost of a step is one
 * engine operation however many chains there are.
 */
#include <stdlib.h>
#include <string.h>

#include <hmaf/error.h>
#include <hmaf/session.h>

#include "core/session_int.h"
#include "util/compiler.h"

/* Per-chain landing area: a node lands at its host address's offset modulo
 * this, so source and destination share their alignment. */
#define CHASE_ALIGN 64
/* A chase whose working memory fits this runs in a buffer on the caller's
 * stack (a few chains of small nodes: the common case, e.g. one lookup);
 * a larger one makes one allocation. */
#define CHASE_STACK_BYTES 4096

struct chase {
    const hmaf_chase_params_t *p;
    hmaf_chain_t *chains;
    size_t nchains;
    uint64_t *at;       /* per chain: the node to read next, 0 when done */
    uint8_t *area;      /* nchains landing areas */
    size_t area_len;    /* node_len + CHASE_ALIGN, rounded to CHASE_ALIGN */
    hmaf_seg_t *segs;
    size_t *seg_chain;  /* which chain each segment reads for */
    void *heap;         /* the working memory, when not on the stack */
};

static int valid_params(const hmaf_chase_params_t *p)
{
    return p != NULL && p->node_len > 0 && p->max_steps > 0 &&
           p->next_offset <= p->node_len &&
           p->node_len - p->next_offset >= sizeof(uint64_t) &&
           p->node_len <= HMAF_CHASE_NODE_MAX;
}

static void *node_buffer(const struct chase *c, size_t chain, uint64_t addr)
{
    return c->area + chain * c->area_len + addr % CHASE_ALIGN;
}

/* One block, CHASE_ALIGN-aligned: the landing areas (whole multiples of
 * CHASE_ALIGN), then at[], segs[] and seg_chain[]. */
static int carve(struct chase *c, uint8_t *stack, size_t stack_len)
{
    size_t per_chain = c->area_len + sizeof(*c->at) + sizeof(*c->segs) +
                       sizeof(*c->seg_chain);
    size_t bytes;
    uint8_t *block = stack;

    if (c->nchains > (SIZE_MAX - CHASE_ALIGN) / per_chain) {
        return HMAF_ENOMEM;
    }
    bytes = c->nchains * per_chain;
    if (bytes > stack_len) {
        block = aligned_alloc(CHASE_ALIGN, (bytes + CHASE_ALIGN - 1) /
                                               CHASE_ALIGN * CHASE_ALIGN);
        if (block == NULL) {
            return HMAF_ENOMEM;
        }
        c->heap = block;
    }
    c->area = block;
    c->at = (uint64_t *)(void *)(block + c->nchains * c->area_len);
    c->segs = (hmaf_seg_t *)(void *)(c->at + c->nchains);
    c->seg_chain = (size_t *)(void *)(c->segs + c->nchains);
    return 0;
}

static int chase_init(struct chase *c, const hmaf_chase_params_t *p,
                      hmaf_chain_t *chains, size_t nchains, uint8_t *stack,
                      size_t stack_len)
{
    int ret;

    memset(c, 0, sizeof(*c));
    c->p = p;
    c->chains = chains;
    c->nchains = nchains;
    c->area_len = (p->node_len + 2 * CHASE_ALIGN - 1) / CHASE_ALIGN *
                  CHASE_ALIGN;
    ret = carve(c, stack, stack_len);
    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < nchains; i++) {
        c->at[i] = chains[i].start;
        chains[i].steps = 0;
        chains[i].last = 0;
        chains[i].status = 0;
    }
    return 0;
}

static void chase_fini(struct chase *c)
{
    free(c->heap);
}

/* Segments for every live chain; returns how many. */
static size_t gather(struct chase *c)
{
    size_t n = 0;

    for (size_t i = 0; i < c->nchains; i++) {
        if (c->at[i] != 0) {
            c->segs[n] = (hmaf_seg_t){.local = node_buffer(c, i, c->at[i]),
                                      .remote_addr = c->at[i],
                                      .len = c->p->node_len};
            c->seg_chain[n++] = i;
        }
    }
    return n;
}

/* The step's read failed somewhere: read each node alone so that only the
 * chains whose node is unreachable end, each with its own error. */
static void read_one_by_one(hmaf_session_t *s, struct chase *c, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        int ret = hmaf_session_readv(s, &c->segs[k], 1);
        if (ret < 0) {
            c->chains[c->seg_chain[k]].status = ret;
            c->at[c->seg_chain[k]] = 0;
        }
    }
}

/* Visit the node chain i just read and move the chain on. */
static void advance(struct chase *c, size_t i)
{
    hmaf_chain_t *chain = &c->chains[i];
    const uint8_t *node = node_buffer(c, i, c->at[i]);
    uint64_t next;

    chain->steps++;
    chain->last = c->at[i];
    memcpy(&next, node + c->p->next_offset, sizeof(next));
    if ((c->p->visit != NULL && c->p->visit(c->p->arg, i, c->at[i], node)) ||
        chain->steps >= c->p->max_steps) {
        next = 0;
    }
    c->at[i] = next;
}

/* An error of the whole session, not of one chain's node: ends them all. */
static void end_all(struct chase *c, size_t n, int ret)
{
    for (size_t k = 0; k < n; k++) {
        c->chains[c->seg_chain[k]].status = ret;
        c->at[c->seg_chain[k]] = 0;
    }
}

static int walk(hmaf_session_t *s, struct chase *c)
{
    size_t n;

    while ((n = gather(c)) > 0) {
        int ret = hmaf_session_readv(s, c->segs, n);
        if (ret == HMAF_EFAULT || ret == HMAF_EOVERFLOW) {
            read_one_by_one(s, c, n);
        } else if (ret < 0) {
            end_all(c, n, ret);
            return ret;
        }
        for (size_t k = 0; k < n; k++) {
            if (c->at[c->seg_chain[k]] != 0) {
                advance(c, c->seg_chain[k]);
            }
        }
    }
    return 0;
}

HMAF_API int hmaf_session_chase(hmaf_session_t *session,
                                const hmaf_chase_params_t *params,
                                hmaf_chain_t *chains, size_t nchains)
{
    _Alignas(CHASE_ALIGN) uint8_t stack[CHASE_STACK_BYTES];
    struct chase c;
    int ret;

    if (session == NULL || !valid_params(params) || chains == NULL ||
        nchains == 0) {
        return HMAF_EINVAL;
    }
    ret = chase_init(&c, params, chains, nchains, stack, sizeof(stack));
    if (ret == 0) {
        ret = walk(session, &c);
    }
    for (size_t i = 0; ret == 0 && i < nchains; i++) {
        ret = chains[i].status;
    }
    chase_fini(&c);
    return ret;
}
