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

struct chase {
    const hmaf_chase_params_t *p;
    hmaf_chain_t *chains;
    size_t nchains;
    uint64_t *at;       /* per chain: the node to read next, 0 when done */
    uint8_t *area;      /* nchains landing areas */
    size_t area_len;    /* node_len + CHASE_ALIGN, rounded to CHASE_ALIGN */
    hmaf_seg_t *segs;
    size_t *seg_chain;  /* which chain each segment reads for */
};

static int valid_params(const hmaf_chase_params_t *p)
{
    return p != NULL && p->node_len > 0 && p->max_steps > 0 &&
           p->next_offset <= p->node_len &&
           p->node_len - p->next_offset >= sizeof(uint64_t) &&
           p->node_len <= SIZE_MAX / 2;
}

static void *node_buffer(const struct chase *c, size_t chain, uint64_t addr)
{
    return c->area + chain * c->area_len + addr % CHASE_ALIGN;
}

static int chase_init(struct chase *c, const hmaf_chase_params_t *p,
                      hmaf_chain_t *chains, size_t nchains)
{
    memset(c, 0, sizeof(*c));
    c->p = p;
    c->chains = chains;
    c->nchains = nchains;
    c->area_len = (p->node_len + 2 * CHASE_ALIGN - 1) / CHASE_ALIGN *
                  CHASE_ALIGN;
    if (nchains > SIZE_MAX / c->area_len) {
        return HMAF_ENOMEM;
    }
    c->at = calloc(nchains, sizeof(*c->at));
    c->segs = calloc(nchains, sizeof(*c->segs));
    c->seg_chain = calloc(nchains, sizeof(*c->seg_chain));
    c->area = aligned_alloc(CHASE_ALIGN, nchains * c->area_len);
    if (c->at == NULL || c->segs == NULL || c->seg_chain == NULL ||
        c->area == NULL) {
        return HMAF_ENOMEM;
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
    free(c->at);
    free(c->segs);
    free(c->seg_chain);
    free(c->area);
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
    struct chase c;
    int ret;

    if (session == NULL || !valid_params(params) || chains == NULL ||
        nchains == 0) {
        return HMAF_EINVAL;
    }
    ret = chase_init(&c, params, chains, nchains);
    if (ret == 0) {
        ret = walk(session, &c);
    }
    for (size_t i = 0; ret == 0 && i < nchains; i++) {
        ret = chains[i].status;
    }
    chase_fini(&c);
    return ret;
}
