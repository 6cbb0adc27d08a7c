/*
 * A dpu side that lies in the give-back part of its REGISTERs (wire
 * protocol 5), through raw mailbox slot traffic: ids only another session
 * holds, ids never held, its own hold named three times, the id of the
 * region the same request registers (held and not held), epochs from the
 * future and the past, a count that disagrees with the length. Every
 * REGISTER is answered as if nothing had been given back, the liar's own
 * hold ends at most once, and the victim's holds stay: a hold ended by
 * mistake would end the engine registration, and a fresh session's
 * REGISTER would make a new one (the agent's registration count tells).
 * Then an honest session that evicts on almost every miss: once it stops
 * missing, the watch thread gives back what no REGISTER carried, while
 * the session lives. Once every session is gone, no hold is left: a
 * fresh session registers every exposure anew.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/mailbox.h"
#include "raw_slot.h"
#include "target.h"

#define PIECE     4096u
#define EXPOSURES 64u
#define HONEST_CACHE 8u

static uint8_t *host_mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    return target_expose_pieces(agent, "many", EXPOSURES, PIECE, &host_mem);
}


static struct target target;
static uint64_t base;

/* A REGISTER of addr giving back n ids of epoch; its answer. */
static struct hmaf_resp_register raw_register(struct raw *raw, uint64_t addr,
                                              uint64_t epoch,
                                              const uint64_t *ids, uint16_t n)
{
    struct hmaf_req_register req = {
        .addr = addr, .len = 1, .give_epoch = epoch, .give_count = n};
    struct hmaf_resp_register out;
    uint8_t buf[HMAF_MBOX_REQ_MAX], resp[HMAF_MBOX_RESP_MAX];
    uint16_t len, resp_len = 0;

    if (n > 0) {
        memcpy(req.give_id, ids, n * sizeof(ids[0]));
    }
    len = (uint16_t)hmaf__req_register_encode(&req, buf);
    CHECK(len > 0);
    CHECK_OK(raw_call(raw, HMAF_OP_REGISTER, buf, len, len, resp, &resp_len));
    CHECK_OK(hmaf__resp_register_decode(resp, resp_len, &out));
    return out;
}

static int raw_deregister(struct raw *raw, uint64_t epoch, uint64_t id)
{
    struct hmaf_req_deregister req = {.epoch = epoch, .count = 1};
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    uint16_t len;

    req.region_id[0] = id;
    len = (uint16_t)hmaf__req_deregister_encode(&req, buf);
    return raw_call(raw, HMAF_OP_DEREGISTER, buf, len, len, NULL, NULL);
}

/* A fresh session reads every exposure: the REGISTERs it sends make new
 * engine registrations only for exposures nobody holds. */
static int fresh_registrations(void)
{
    hmaf_session_t *s = target_connect(&target);
    int before = target_command(&target, 'g');
    uint8_t tmp[8];

    for (unsigned i = 0; i < EXPOSURES; i++) {
        CHECK_OK(hmaf_session_read(s, tmp, base + i * PIECE, sizeof(tmp)));
    }
    hmaf_session_destroy(s);
    return (target_command(&target, 'g') - before) & 0xff;
}

static void wait_sessions(int n)
{
    for (int i = 0; i < 10000 && target_command(&target, 's') != n; i++) {
        usleep(1000);
    }
    CHECK_EQ(target_command(&target, 's'), n);
}

/* ---- the lies ---- */

static void lie(struct raw *raw, const uint64_t *victims)
{
    uint64_t a = base, b = base + PIECE; /* the victim holds both too */
    struct hmaf_resp_register own = raw_register(raw, a, 0, NULL, 0);
    uint64_t e = own.epoch, x = own.region_id;
    uint64_t thrice[3] = {x, x, x};
    uint64_t never[HMAF_REGISTER_GIVE_MAX];
    struct hmaf_resp_register other;

    /* The victim's ids, in our epoch and others. */
    other = raw_register(raw, b, e, victims, HMAF_REGISTER_GIVE_MAX);
    CHECK_OK(raw_deregister(raw, other.epoch, other.region_id));
    (void)raw_register(raw, b, e + 1, victims, 7);
    (void)raw_register(raw, b, e - 1, victims, 7);
    (void)raw_register(raw, b, UINT64_MAX, victims, 7);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(raw_deregister(raw, e, other.region_id));
    }
    CHECK_ERR(raw_deregister(raw, e, other.region_id), HMAF_ENOENT);
    /* Ids never held. */
    for (unsigned i = 0; i < HMAF_REGISTER_GIVE_MAX; i++) {
        never[i] = EXPOSURES + 1000 + i * 7919u;
    }
    other = raw_register(raw, b, e, never, HMAF_REGISTER_GIVE_MAX);
    CHECK_OK(raw_deregister(raw, other.epoch, other.region_id));
    /* The region being registered, held once already: still held once. */
    CHECK_EQ(raw_register(raw, a, e, &x, 1).region_id, x);
    CHECK_OK(raw_deregister(raw, e, x));
    CHECK_ERR(raw_deregister(raw, e, x), HMAF_ENOENT);
    /* The same, not held before: answered, and held no more. */
    CHECK_EQ(raw_register(raw, a, e, &x, 1).region_id, x);
    CHECK_ERR(raw_deregister(raw, e, x), HMAF_ENOENT);
    /* Our one hold named three times: it ends once. */
    (void)raw_register(raw, a, 0, NULL, 0);
    other = raw_register(raw, b, e, thrice, 3);
    CHECK_ERR(raw_deregister(raw, e, x), HMAF_ENOENT);
    CHECK_OK(raw_deregister(raw, other.epoch, other.region_id));
}

/* An honest session with a small cache reads every exposure twice: it
 * evicts on almost every miss. Once it stops missing, what it evicted
 * goes back within watch turns, while it lives: a fresh session then
 * registers anew every exposure but the ones it still caches. */
static void honest_evictions(void)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    uint8_t tmp[8];
    int fresh = 0, cached;

    target_session_params(&target, &p);
    p.cache_max_regions = HONEST_CACHE;
    s = target_connect_params(&p);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < EXPOSURES; i++) {
            CHECK_OK(hmaf_session_read(s, tmp, base + i * PIECE, 8));
            CHECK_PATTERN(tmp, 8, i * PIECE, 1);
        }
    }
    /* Misses on, in the same order, up to one that evicts: what it
     * evicted waits for the watch thread, no REGISTER comes to carry it.
     * No time asserted: looked at every 50 ms for up to 20 s. */
    for (unsigned i = 0; i < EXPOSURES; i++) {
        size_t before = hmaf__regcache_count(&s->cache);
        CHECK_OK(hmaf_session_read(s, tmp, base + i * PIECE, 8));
        if (hmaf__regcache_count(&s->cache) <= before) {
            break;
        }
    }
    cached = (int)hmaf__regcache_count(&s->cache);
    CHECK(cached > 0 && cached <= (int)HONEST_CACHE);
    for (int i = 0; i < 400; i++) {
        fresh = fresh_registrations();
        if (fresh == (int)EXPOSURES - cached) {
            break;
        }
        usleep(50000);
    }
    CHECK_EQ(fresh, (int)EXPOSURES - cached);
    hmaf_session_destroy(s);
    wait_sessions(0);
}

int main(void)
{
    struct target_options opts = {.setup = setup, .command = target_stats_command};
    hmaf_session_params_t p;
    hmaf_session_t *victim, *liar;
    uint64_t victim_ids[HMAF_REGISTER_GIVE_MAX];
    struct raw raw;
    uint8_t tmp[8];
    size_t len;

    target_start(&target, &opts);
    target_session_params(&target, &p);
    p.cache_max_regions = 2 * EXPOSURES; /* holds every one */
    victim = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(victim, "many", &base, &len));
    for (unsigned i = 0; i < EXPOSURES; i++) {
        CHECK_OK(hmaf_session_read(victim, tmp, base + i * PIECE, 8));
    }
    CHECK_EQ(fresh_registrations(), 0);
    liar = target_connect(&target);
    raw_init(&raw, target.pid, liar);
    for (unsigned i = 0; i < HMAF_REGISTER_GIVE_MAX; i++) {
        /* The ids of exposures only the victim holds: learnt from
         * answers of our own, given back at once. */
        struct hmaf_resp_register r =
            raw_register(&raw, base + (i + 2) * PIECE, 0, NULL, 0);
        victim_ids[i] = r.region_id;
        CHECK_OK(raw_deregister(&raw, r.epoch, r.region_id));
    }
    for (int round = 0; round < 3; round++) {
        lie(&raw, victim_ids);
        CHECK_EQ(fresh_registrations(), 0);
    }
    for (unsigned i = 0; i < EXPOSURES; i++) {
        CHECK_OK(hmaf_session_read(victim, tmp, base + i * PIECE, 8));
        CHECK_PATTERN(tmp, 8, i * PIECE, 1);
    }
    hmaf_session_destroy(liar);
    hmaf_session_destroy(victim);
    wait_sessions(0);
    /* Nobody holds anything: every exposure is registered anew. */
    CHECK_EQ(fresh_registrations(), (int)EXPOSURES);
    honest_evictions();
    CHECK_EQ(fresh_registrations(), (int)EXPOSURES);
    CHECK_EQ(target_stop(&target), 0);
    return 0;
}
