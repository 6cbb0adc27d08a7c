/*
 * A dpu side that lies in its batched DEREGISTERs (wire protocol 4), at
 * scale, through raw mailbox slot traffic: ids named twice in one batch,
 * ids only another session holds, ids in epochs never answered, ids never
 * held at all (100,000 of them), counts that disagree with the length,
 * REGISTER floods of one range, and a dpu process holding every range
 * (more than the agent gives back in one turn) SIGKILLed while it sends
 * such batches, the next session registering the same ranges while its
 * holds come off the orphan list. The agent answers each with an error, keeps every
 * other session's holds (a hold ended by mistake would end the engine
 * registration, and the next REGISTER of the range would make a new one:
 * the agent's registration count tells), and its fds and memory stay flat
 * over repeated rounds.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/mailbox.h"
#include "raw_slot.h"
#include "target.h"

#define PIECE     4096u
#define BOGUS_IDS 100000u
#define ROUNDS    5

/* Ranges exposed: more than the agent gives back in one turn (1024);
 * HMAF_TEST_EXPOSURES sets it (the doca emulation exports ~1000 at once). */
static unsigned exposures = 1500;
static uint8_t *host_mem;

static int setup(hmaf_agent_t *agent, void *arg)
{
    (void)arg;
    return target_expose_pieces(agent, "many", exposures, PIECE, &host_mem);
}


static struct target target;
static uint64_t base;

static struct hmaf_resp_register raw_register(struct raw *raw, uint64_t addr)
{
    struct hmaf_req_register req = {.addr = addr, .len = 1};
    struct hmaf_resp_register out;
    uint8_t buf[HMAF_MBOX_REQ_MAX], resp[HMAF_MBOX_RESP_MAX];
    uint16_t len = (uint16_t)hmaf__req_register_encode(&req, buf);
    uint16_t resp_len = 0;

    CHECK_OK(raw_call(raw, HMAF_OP_REGISTER, buf, len, len, resp, &resp_len));
    CHECK_OK(hmaf__resp_register_decode(resp, resp_len, &out));
    return out;
}

static int raw_deregister(struct raw *raw, uint64_t epoch, const uint64_t *ids,
                          uint16_t count)
{
    struct hmaf_req_deregister req = {.epoch = epoch, .count = count};
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    uint16_t len;

    memcpy(req.region_id, ids, count * sizeof(ids[0]));
    len = (uint16_t)hmaf__req_deregister_encode(&req, buf);
    CHECK(len > 0);
    return raw_call(raw, HMAF_OP_DEREGISTER, buf, len, len, NULL, NULL);
}

/* ---- the host's figures ---- */

static long host_rss_kib(void)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)target.pid);
    f = fopen(path, "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

static int host_fds(void)
{
    char path[64];
    int n = 0;

    for (int fd = 0; fd < 4096; fd++) {
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)target.pid, fd);
        n += access(path, F_OK) == 0;
    }
    return n;
}

/* A fresh session reads every exposure: the REGISTERs it sends make new
 * engine registrations only for exposures nobody holds. */
static int fresh_registrations(void)
{
    hmaf_session_t *s = target_connect(&target);
    int before = target_command(&target, 'g');
    uint8_t tmp[8];

    for (unsigned i = 0; i < exposures; i++) {
        CHECK_OK(hmaf_session_read(s, tmp, base + i * PIECE, sizeof(tmp)));
    }
    hmaf_session_destroy(s);
    return (target_command(&target, 'g') - before) & 0xff;
}

/* ---- the lies ---- */

/* Ids named twice, ids held only by the victim, epochs never answered,
 * counts disagreeing with the length. */
static void lie_about_ids(struct raw *raw, const struct hmaf_resp_register *own,
                          const uint64_t *victims)
{
    uint64_t ids[HMAF_DEREGISTER_IDS_MAX];
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    struct hmaf_req_deregister req = {.epoch = own->epoch, .count = 5};
    uint16_t len;

    /* Our one hold, named three times: it ends once, then ENOENT. */
    for (int i = 0; i < 3; i++) {
        ids[i] = own->region_id;
    }
    CHECK_ERR(raw_deregister(raw, own->epoch, ids, 3), HMAF_ENOENT);
    /* The victim's, in its epoch and in others. */
    CHECK_ERR(raw_deregister(raw, own->epoch, victims, HMAF_DEREGISTER_IDS_MAX),
              HMAF_ENOENT);
    CHECK_ERR(raw_deregister(raw, own->epoch + 1, victims, 7), HMAF_ENOENT);
    CHECK_ERR(raw_deregister(raw, own->epoch - 1, victims, 7), HMAF_ENOENT);
    CHECK_ERR(raw_deregister(raw, UINT64_MAX, victims, 7), HMAF_ENOENT);
    /* A count of 5, the bytes of 4 and of 6. */
    memcpy(req.region_id, victims, 5 * sizeof(victims[0]));
    len = (uint16_t)hmaf__req_deregister_encode(&req, buf);
    CHECK_ERR(raw_call(raw, HMAF_OP_DEREGISTER, buf, len - 8, len - 8, NULL,
                       NULL),
              HMAF_EPROTO);
    memset(buf + len, 0, 8);
    CHECK_ERR(raw_call(raw, HMAF_OP_DEREGISTER, buf, len + 8, len + 8, NULL,
                       NULL),
              HMAF_EPROTO);
    /* The length claimed past what was written, and past the slot. */
    CHECK_ERR(raw_call(raw, HMAF_OP_DEREGISTER, buf, len, 0xffff, NULL, NULL),
              HMAF_EPROTO);
}

/* n ids never held, 29 at a time. */
static void bogus_flood(struct raw *raw, uint64_t epoch, unsigned n,
                        uint64_t seed)
{
    uint64_t ids[HMAF_DEREGISTER_IDS_MAX];

    for (unsigned sent = 0; sent < n; sent += HMAF_DEREGISTER_IDS_MAX) {
        for (unsigned i = 0; i < HMAF_DEREGISTER_IDS_MAX; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            /* Half of them in the range real ids take. */
            ids[i] = i % 2 ? seed : exposures + 1 + (seed >> 40);
        }
        CHECK_ERR(raw_deregister(raw, epoch, ids, HMAF_DEREGISTER_IDS_MAX),
                  HMAF_ENOENT);
    }
}

/* One range registered many times over, then given back as many times,
 * plus once more than held. */
static void register_flood(struct raw *raw, uint64_t addr)
{
    struct hmaf_resp_register r = raw_register(raw, addr);
    uint64_t ids[HMAF_DEREGISTER_IDS_MAX];

    for (unsigned i = 0; i < HMAF_DEREGISTER_IDS_MAX; i++) {
        ids[i] = r.region_id;
    }
    for (unsigned i = 1; i < 20 * HMAF_DEREGISTER_IDS_MAX; i++) {
        CHECK_EQ(raw_register(raw, addr).region_id, r.region_id);
    }
    for (unsigned i = 0; i < 20; i++) {
        CHECK_OK(raw_deregister(raw, r.epoch, ids, HMAF_DEREGISTER_IDS_MAX));
    }
    CHECK_ERR(raw_deregister(raw, r.epoch, ids, 1), HMAF_ENOENT);
}

/* A dpu process holding every range (more than the agent gives back in
 * one turn) and flooding bogus ids, killed delay_us into the flood: its
 * holds go to the orphans while the next session registers the same
 * ranges. One a round, each forked before this process connects
 * (dpu_child_fork). */
struct liar_child {
    unsigned delay_us;
    int ready[2];
    struct dpu_child child;
};

static void liar_main(void *arg)
{
    struct liar_child *l = arg;
    hmaf_session_params_t p;
    hmaf_session_t *s;
    struct raw raw;
    uint8_t tmp[8];
    size_t len;

    target_session_params(&target, &p);
    p.cache_max_regions = 2 * exposures;
    s = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(s, "many", &base, &len));
    raw_init(&raw, target.pid, s);
    for (unsigned i = 0; i < exposures; i++) {
        (void)hmaf_session_read(s, tmp, base + i * PIECE, sizeof(tmp));
    }
    CHECK_EQ(write(l->ready[1], "r", 1), 1);
    bogus_flood(&raw, raw_register(&raw, base).epoch, BOGUS_IDS, l->delay_us);
}

static void liar_fork(struct liar_child *l, unsigned delay_us)
{
    l->delay_us = delay_us;
    CHECK_EQ(pipe(l->ready), 0);
    l->child = dpu_child_fork(liar_main, l);
    close(l->ready[1]);
}

static void killed_liar(struct liar_child *l)
{
    char c;

    dpu_child_start(&l->child);
    CHECK_EQ(read(l->ready[0], &c, 1), 1);
    close(l->ready[0]);
    usleep(l->delay_us);
    kill(l->child.pid, SIGKILL);
    CHECK_EQ(waitpid(l->child.pid, NULL, 0), l->child.pid);
}

static void wait_sessions(int n)
{
    for (int i = 0; i < 10000 && target_command(&target, 's') != n; i++) {
        usleep(1000);
    }
    CHECK_EQ(target_command(&target, 's'), n);
}

int main(void)
{
    struct target_options opts = {.setup = setup, .command = target_stats_command};
    const char *env = getenv("HMAF_TEST_EXPOSURES");
    hmaf_session_params_t p;
    hmaf_session_t *victim, *liar;
    uint64_t victim_ids[HMAF_DEREGISTER_IDS_MAX];
    struct liar_child liars[ROUNDS];
    struct raw raw;
    long rss[ROUNDS];
    int fds[ROUNDS];
    uint8_t tmp[8];
    size_t len;

    if (env != NULL && atoi(env) > HMAF_DEREGISTER_IDS_MAX + 1) {
        exposures = (unsigned)atoi(env);
    }
    target_start(&target, &opts);
    for (int round = 0; round < ROUNDS; round++) {
        liar_fork(&liars[round], 1000u * (unsigned)round);
    }
    target_session_params(&target, &p);
    p.cache_max_regions = 2 * exposures; /* holds every one */
    victim = target_connect_params(&p);
    CHECK_OK(hmaf_session_lookup(victim, "many", &base, &len));
    for (unsigned i = 0; i < exposures; i++) {
        CHECK_OK(hmaf_session_read(victim, tmp, base + i * PIECE, 8));
    }
    /* Every exposure is held: a fresh session makes no registration. */
    CHECK_EQ(fresh_registrations(), 0);
    liar = target_connect(&target);
    raw_init(&raw, target.pid, liar);
    for (unsigned i = 0; i < HMAF_DEREGISTER_IDS_MAX; i++) {
        /* The ids of exposures only the victim holds: learnt from
         * answers of our own, given back at once. */
        struct hmaf_resp_register r =
            raw_register(&raw, base + (i + 1) * PIECE);
        victim_ids[i] = r.region_id;
        CHECK_OK(raw_deregister(&raw, r.epoch, &r.region_id, 1));
    }
    for (int round = 0; round < ROUNDS; round++) {
        struct hmaf_resp_register own = raw_register(&raw, base);
        lie_about_ids(&raw, &own, victim_ids);
        /* 100,000 the first time; a tenth after (the rounds compare
         * figures). */
        bogus_flood(&raw, own.epoch, round == 0 ? BOGUS_IDS : BOGUS_IDS / 10,
                    (uint64_t)round + 1);
        register_flood(&raw, base + 2 * PIECE);
        killed_liar(&liars[round]);
        wait_sessions(2);
        if (round == 0 || round == ROUNDS - 1) {
            /* Right after the close: the orphan's holds may still be
             * coming off. (A hold ended by mistake stays ended: the last
             * round sees those of every round.) */
            CHECK_EQ(fresh_registrations(), 0);
        }
        rss[round] = host_rss_kib();
        fds[round] = host_fds();
    }
    printf("host rss (KiB) by round:");
    for (int i = 0; i < ROUNDS; i++) {
        printf(" %ld", rss[i]);
    }
    printf("; fds");
    for (int i = 0; i < ROUNDS; i++) {
        printf(" %d", fds[i]);
    }
    printf("\n");
    /* The first round may grow tables to their size; then flat. A
     * session that just closed may keep its fd a moment longer. */
    CHECK(rss[ROUNDS - 1] - rss[1] < 4096);
    CHECK(fds[ROUNDS - 1] <= fds[1] + 1);
    /* The victim reads on, its holds intact. */
    for (unsigned i = 0; i < exposures; i++) {
        CHECK_OK(hmaf_session_read(victim, tmp, base + i * PIECE, 8));
        CHECK_PATTERN(tmp, 8, i * PIECE, 1);
    }
    hmaf_session_destroy(liar);
    hmaf_session_destroy(victim);
    CHECK_EQ(target_stop(&target), 0);
    return 0;
}
