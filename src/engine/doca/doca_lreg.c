/*
 * The dpu side's registration cache: caller buffers the DMA reads and
 * writes in place, so large transfers skip the staging copy.
 *
 * When a transfer's buffer lies in a cached registration, it goes in
 * place, whatever its size. Otherwise, when the caller's buffer (the
 * call's one buffer, or the batch's buffers contiguous from this transfer
 * on) spans at least zcopy_min bytes of writable private memory, its pages
 * are registered (one local doca_mmap) and cached; the rest is staged. The cache keeps at most DENG_LREG_MAX registrations and
 * zcopy_cache bytes, dropping the least recently used (one dropped while
 * tasks still use it pins, and counts, until they complete).
 *
 * A registration pins the pages it was made on. If the caller unmaps or
 * discards them and reuses the addresses, the device would still reach
 * the old pages: so every registered range is under a memory watch
 * (util/memwatch.h), and each lookup first drops what the watch reports as
 * changed. Memory that cannot be watched is never registered; without a
 * watch at all (no userfaultfd) every transfer is staged.
 *
 * The cache is the ep's, shared by its lanes, under ep->reg_lock (taken
 * inside a lane's lock); whether a run is worth registering is worked out
 * before, without it.
 */
#include <stdlib.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "engine/doca/doca_int.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/memwatch.h"

static struct deng_ctx *ctx_of(struct deng_ep *ep)
{
    return hmaf__container_of(ep->base.ctx, struct deng_ctx, base);
}

static uint64_t page_size(void)
{
    return (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Destroy stops it (and unpins): its bytes stop counting only now. */
static void destroy(struct deng_lregs *c, struct deng_lreg *r)
{
    doca_error_t err = doca_mmap_destroy(r->mmap);

    c->pinned -= r->len;
    if (err != DOCA_SUCCESS) {
        hmaf__log_warn("doca local mmap teardown: %s",
                       doca_error_get_name(err));
    }
    free(r);
}

/* Out of the cache; gone at once, or when its last task completes. */
static void drop(struct deng_ep *ep, uint32_t i)
{
    struct deng_lregs *c = &ep->lregs;
    struct deng_lreg *r = c->live[i];
    uint32_t n = c->nlive - 1;

    c->live[i] = c->live[n];
    __atomic_store_n(&c->nlive, n, __ATOMIC_RELAXED);
    c->bytes -= r->len;
    hmaf__memwatch_remove(c->watch, r->base, r->len);
    if (r->inflight == 0) {
        destroy(c, r);
        return;
    }
    r->dead = 1;
    r->next_dead = c->dead;
    c->dead = r;
}

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* The watch saw [start, +len) change (len 0: anything). */
static void on_change(void *arg, uint64_t start, uint64_t len)
{
    struct deng_ep *ep = arg;
    struct deng_lregs *c = &ep->lregs;

    for (uint32_t i = c->nlive; i-- > 0;) {
        const struct deng_lreg *r = c->live[i];
        if (len == 0 || overlaps(r->base, r->len, start, len)) {
            drop(ep, i);
        }
    }
}

static struct deng_lreg *find(struct deng_lregs *c, uint64_t addr,
                              uint64_t len)
{
    for (uint32_t i = 0; i < c->nlive; i++) {
        struct deng_lreg *r = c->live[i];
        if (addr >= r->base && addr + len <= r->base + r->len) {
            return r;
        }
    }
    return NULL;
}

/* The caller memory worth registering for transfer i: the call's whole
 * buffer when the core names it, else the run of the batch's buffers
 * contiguous from transfer i on; at most cap bytes from transfer i. */
static void span_of(const struct hmaf_xfer_batch *batch, uint32_t i,
                    uint64_t cap, uint64_t *start_out, uint64_t *len_out)
{
    uint64_t local = (uintptr_t)batch->xfers[i].local;
    uint64_t start = local, end = local;
    uint64_t span = (uintptr_t)batch->local_span;

    if (span != 0 && local >= span && local < span + batch->local_span_len) {
        start = span;
        end = span + batch->local_span_len;
    } else {
        for (uint32_t j = i; j < batch->count && end - start < cap; j++) {
            if ((uintptr_t)batch->xfers[j].local != end) {
                break;
            }
            end += batch->xfers[j].len;
        }
    }
    if (end - start > cap) {
        start = local;
        end = HMAF_MIN(end, local + cap);
    }
    *start_out = start;
    *len_out = end - start;
}

static doca_error_t map_pages(struct deng_ep *ep, struct deng_lreg *r)
{
    doca_error_t err = doca_mmap_create(&r->mmap);

    if (err != DOCA_SUCCESS) {
        return err;
    }
    err = doca_mmap_set_memrange(r->mmap, (void *)(uintptr_t)r->base,
                                 (size_t)r->len);
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_set_permissions(r->mmap,
                                        DOCA_ACCESS_FLAG_LOCAL_READ_WRITE);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_add_dev(r->mmap, ctx_of(ep)->dev);
    }
    if (err == DOCA_SUCCESS) {
        err = doca_mmap_start(r->mmap);
    }
    if (err != DOCA_SUCCESS) {
        doca_mmap_destroy(r->mmap);
        r->mmap = NULL;
    }
    return err;
}

/* Watched before it is pinned, so no change between the two is missed.
 * Writable memory only: a read-only pin of a page never written holds
 * the shared zero page, which the first write after an mprotect would
 * replace without any event. Read-only memory is staged. */
static struct deng_lreg *register_pages(struct deng_ep *ep, uint64_t base,
                                        uint64_t len)
{
    struct deng_lregs *c = &ep->lregs;
    struct deng_lreg *r = calloc(1, sizeof(*r));
    doca_error_t err;

    if (r == NULL || hmaf__memwatch_add(c->watch, base, len) != 0) {
        free(r);
        return NULL;
    }
    r->base = base;
    r->len = len;
    err = map_pages(ep, r);
    if (err != DOCA_SUCCESS) {
        hmaf__log_debug("doca register %#llx+%llu: %s; staging",
                        (unsigned long long)base, (unsigned long long)len,
                        doca_error_get_name(err));
        hmaf__memwatch_remove(c->watch, base, len);
        free(r);
        return NULL;
    }
    return r;
}

static void make_room(struct deng_ep *ep, uint64_t len)
{
    struct deng_lregs *c = &ep->lregs;
    uint64_t cap = ctx_of(ep)->zcopy_cache;

    while (c->nlive > 0 &&
           (c->nlive == DENG_LREG_MAX || c->bytes + len > cap)) {
        uint32_t lru = 0;
        for (uint32_t i = 1; i < c->nlive; i++) {
            if (c->live[i]->last_use < c->live[lru]->last_use) {
                lru = i;
            }
        }
        drop(ep, lru);
    }
}

static int have_watch(struct deng_lregs *c)
{
    int ret;

    if (c->watch == NULL && !c->no_watch &&
        (ret = hmaf__memwatch_open(&c->watch)) != 0) {
        hmaf__log_info("doca: no memory watch here (userfaultfd: %s); "
                       "every transfer is staged",
                       hmaf_err_name(ret));
        c->no_watch = 1;
    }
    return c->watch != NULL;
}

/* Within the current post, caller memory found not to register (a run
 * too short, a registration refused) is not looked at again for each of
 * its transfers: a batch of many small contiguous pieces would otherwise
 * measure its run once per piece. */
static void skip(struct deng_skip *sk, uint64_t start, uint64_t len)
{
    sk->base = start;
    sk->len = len;
}

static int in_skip(const struct deng_skip *sk, const struct hmaf_xfer *x)
{
    uint64_t at = (uintptr_t)x->local;

    return at >= sk->base && at + x->len <= sk->base + sk->len;
}

/* The pages under transfer i's span, if it is long enough and did not
 * just fail: 1 and [*base, +*len), else 0. Reads only the batch, the
 * lane's skip and fixed settings: no lock. */
static int run_to_register(const struct deng_ep *ep, struct deng_skip *sk,
                           const struct hmaf_xfer_batch *batch, uint32_t i,
                           uint64_t *base, uint64_t *len)
{
    const struct deng_ctx *ctx =
        hmaf__container_of(ep->base.ctx, struct deng_ctx, base);
    uint64_t page = page_size();
    /* a run's pages, rounded out, must fit the cache */
    uint64_t cap = ctx->zcopy_cache > 2 * page ? ctx->zcopy_cache - 2 * page
                                                : 0;
    uint64_t start, run;

    if (ctx->zcopy_min == 0 || in_skip(sk, &batch->xfers[i])) {
        return 0;
    }
    span_of(batch, i, cap, &start, &run);
    *base = start & ~(page - 1);
    *len = ((start + run + page - 1) & ~(page - 1)) - *base;
    if (run < ctx->zcopy_min || *len > ctx->zcopy_cache) {
        skip(sk, start, run); /* the run's later transfers: shorter runs */
        return 0;
    }
    return 1;
}

/* Under reg_lock: register [base, +len) and cache it, or NULL. */
static struct deng_lreg *register_run(struct deng_ep *ep, struct deng_skip *sk,
                                      uint64_t base, uint64_t len)
{
    const struct deng_ctx *ctx = ctx_of(ep);
    struct deng_lregs *c = &ep->lregs;
    struct deng_lreg *r = have_watch(c) ? register_pages(ep, base, len) : NULL;

    if (r == NULL) {
        skip(sk, base, len);
        return NULL;
    }
    make_room(ep, len);
    c->pinned += len;
    if (c->pinned > ctx->zcopy_cache) {
        /* registrations dropped while tasks use them still pin: until
         * those complete, this one would go over the cap */
        hmaf__memwatch_remove(c->watch, base, len);
        destroy(c, r);
        return NULL;
    }
    c->live[c->nlive] = r;
    __atomic_store_n(&c->nlive, c->nlive + 1, __ATOMIC_RELAXED);
    c->bytes += len;
    hmaf__log_debug("doca registered %#llx+%llu for in-place transfers",
                    (unsigned long long)base, (unsigned long long)len);
    return r;
}

struct deng_lreg *hmaf__doca_lreg_get(struct deng_ep *ep, struct deng_skip *sk,
                                      const struct hmaf_xfer_batch *batch,
                                      uint32_t i)
{
    struct deng_lregs *c = &ep->lregs;
    const struct hmaf_xfer *x = &batch->xfers[i];
    uint64_t base = 0, len = 0;
    int cached = __atomic_load_n(&c->nlive, __ATOMIC_RELAXED) != 0;
    int want = 0;
    struct deng_lreg *r = NULL;

    /* Nothing cached to move it in place and nothing to register: the
     * common small transfer takes no shared lock. The run is measured
     * only when the cache has nothing for the transfer: the pieces of a
     * registered run find it, not measure it again each. */
    if (!cached && !(want = run_to_register(ep, sk, batch, i, &base, &len))) {
        return NULL;
    }
    pthread_mutex_lock(&ep->reg_lock);
    if (c->watch != NULL) {
        hmaf__memwatch_drain(c->watch, on_change, ep);
    }
    /* (another lane may have registered it meanwhile) */
    r = find(c, (uintptr_t)x->local, x->len);
    if (r == NULL && !want) {
        want = run_to_register(ep, sk, batch, i, &base, &len);
    }
    if (r == NULL && want) {
        r = register_run(ep, sk, base, len);
    }
    if (r != NULL) {
        r->last_use = ++c->clock;
        r->inflight++;
    }
    pthread_mutex_unlock(&ep->reg_lock);
    return r;
}

void hmaf__doca_lreg_put(struct deng_ep *ep, struct deng_lreg *r)
{
    struct deng_lreg **link = &ep->lregs.dead;

    pthread_mutex_lock(&ep->reg_lock);
    if (--r->inflight == 0 && r->dead) {
        while (*link != r) {
            link = &(*link)->next_dead;
        }
        *link = r->next_dead;
        destroy(&ep->lregs, r);
    }
    pthread_mutex_unlock(&ep->reg_lock);
}

void hmaf__doca_lreg_fini(struct deng_ep *ep)
{
    struct deng_lregs *c = &ep->lregs;

    while (c->nlive > 0) {
        drop(ep, c->nlive - 1);
    }
    while (c->dead != NULL) { /* no task runs any more */
        struct deng_lreg *r = c->dead;
        c->dead = r->next_dead;
        destroy(c, r);
    }
    hmaf__memwatch_close(c->watch);
    c->watch = NULL;
}
