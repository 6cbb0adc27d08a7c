/*
 * The agent's mailbox server, from the dpu side's position: whatever a dpu
 * side writes into its mailbox, the agent answers each new request once,
 * with a known code and a well-formed payload, touches nothing but the
 * answer, and keeps serving.
 *
 * Set up once per process: an agent in this process (threaded = 0, driven
 * by hmaf_agent_poll), two exposures and four roots, and a real session to
 * it over an abstract unix socket (cma on our own pid). The mailbox is in
 * this process, so each input is a program of plain stores into the
 * request halves of its slots and into its acknowledgement word, with
 * polls and revocations in between (format below). After each poll every
 * slot is checked against a model of the agent: which requests are new,
 * the exact status each must get, the session's holds per exposure and
 * revocation epoch (a REGISTER answer adds one at the agent's epoch, a
 * DEREGISTER ends some, and so may a REGISTER, after its own answer; an
 * acknowledgement that grew ends every older one — one above the agent's
 * epoch counts as that epoch —, and so does a revocation the session
 * confirmed), the exposures' engine registrations, the agent's counters.
 * The agent has no heap: a well-formed ALLOC or FREE (long or not) is
 * answered HMAF_ENOENT, a malformed one HMAF_EPROTO.
 * Now and then the session's own client must still ping and look up.
 *
 * Input: a sequence of commands, one byte c then its arguments; the slot
 * is (c >> 4) % NSLOTS, the command c & 15 (10-15 are 2-7 again):
 *   0 request   op u8, length u16, n u8, n payload bytes (where a request
 *               of that length sits: a long one at the answer's payload);
 *               then the word
 *   1 word      u64 request word, stored as is
 *   2 bytes     offset u8, n u8, n bytes at that offset of the request half
 *   3 register  which u8, offset i32, len u32 [addr u64 when which%4 == 3]:
 *               REGISTER of an address relative to an exposure (0, 1), to
 *               unexposed memory (2) or absolute (3); which & 0x80: len is
 *               UINT64_MAX - len
 *   4 deregister more u8, when u8 [epoch u64 when when%4 == 3], then
 *               1 + more%29 ids, each which u8 [id u64 when which%4 ==
 *               2]: a DEREGISTER of exposure 0's or 1's id (0, 1), of id
 *               (2), of which >> 2 (3); in the agent's epoch (0), in an
 *               epoch the model holds the first id's exposure in (1; the
 *               agent's epoch when none), in an older one (2: epoch - 1 -
 *               (when >> 2)), in epoch (3)
 *   5 lookup    which u8 [64 bytes when which%8 == 6]: LOOKUP of root
 *               which%8 (0-3), of "nope" (4), of "empty" (5: its publish
 *               was refused), of the bytes (6), of ""
 *   6 poll      hmaf_agent_poll(agent, 0), then the checks
 *   7 word      op u8, length u16: a new request word over whatever
 *               payload the slot holds
 *   8 ack       which u8 [u64 when which%4 == 3]: store into the
 *               acknowledgement word the agent's epoch (0), epoch + 1 +
 *               (which >> 2) (1), epoch - (which >> 2) (2), or u64 (3)
 *   9 revoke    which u8: hmaf_agent_revoke of exposure which%2, then
 *               expose it again (a new id); at most MAX_REVOKES an input
 * Every store that reaches a request word sets bit 31 of a non-zero
 * sequence number, so fuzzed words never collide with the client's
 * (which count up from 1, in slot 0). The input ends with a poll, and
 * every CLIENT_CHECK_EVERY inputs (and at start) with the session's own
 * ping and lookups.
 *
 * The session's watch thread reads the mailbox's epoch and writes the
 * acknowledgement word when the epoch changed: after each revocation the
 * harness waits until it has (the session's epoch_seen), so the word
 * holds the new epoch and nothing writes it behind the model's back.
 */
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/session_int.h"
#include "fuzz.h"
#include "proto/atomic.h"
#include "proto/heap.h"
#include "proto/mailbox.h"
#include "proto/notify.h"
#include "util/clock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSLOTS          4
#define NEXPOSURES      2
#define REQ_HALF        HMAF_MBOX_RESP_WORD /* the dpu-written half of a slot */
#define SEQ_FUZZ        0x80000000u
#define TOKEN           "fuzz-mailbox"
#define CALL_TIMEOUT_MS 10000
/* The client's calls need the worker thread and this one to take turns:
 * cheap on an idle machine, milliseconds on a loaded one. The checks
 * after every poll see each answer anyway. */
#define CLIENT_CHECK_EVERY 128
/* A revocation waits for the session's watch thread: tens of
 * microseconds, more on a loaded machine. */
#define MAX_REVOKES 2
/* Holds pile up, one per exposure and epoch, while the acknowledgement
 * word lags behind the epoch (any value goes there); past this many
 * the session starts over, which also ends every hold. */
#define MAX_HOLDS 64

struct exposure {
    uint8_t *base;
    size_t len;
    hmaf_access_t access;
    uint64_t id; /* ids count up from 1 with each hmaf_agent_expose */
};

/* The session's REGISTER answers not given back, per exposure and epoch. */
struct hold {
    int exposure;
    uint64_t epoch;
    uint64_t count;
};

struct root {
    const char *name;
    const uint8_t *addr;
    size_t len;
};

/* What the agent must answer a new request with. */
struct expect {
    int fresh; /* a new sequence number: the agent must answer */
    uint32_t seq;
    uint8_t op;
    int status;
    int exposure;            /* REGISTER: which one */
    const struct root *root; /* LOOKUP: which one */
    uint16_t atomics;        /* ATOMIC: ops, and each one's status */
    int atomic_status[HMAF_ATOMIC_BATCH_MAX];
};

static uint8_t area_a[8192] __attribute__((aligned(4096)));
static uint8_t area_b[4096];
static uint8_t unexposed[256];
static char long_name[HMAF_ROOT_NAME_MAX + 1];

static struct exposure exposures[NEXPOSURES] = {
    {area_a, sizeof(area_a), HMAF_ACCESS_READ_WRITE, 0},
    {area_b + 512, 1024, HMAF_ACCESS_READ, 0},
};
static struct root roots[4] = {
    {"alpha", area_a, sizeof(area_a)},
    {"beta", area_b + 600, 40},
    {"elsewhere", unexposed, 16}, /* roots need not be exposed */
    {long_name, area_a + 1, 1},
};

static hmaf_agent_t *agent;
static hmaf_session_t *session;
static uint8_t *mbox;
static size_t mbox_len;
static uint8_t before[HMAF_MBOX_SLOTS_OFFSET + NSLOTS * HMAF_MBOX_SLOT_SIZE];
static uint32_t served[NSLOTS]; /* the agent's served_seq, as we know it */
static uint32_t next_seq;
static hmaf_agent_stats_t stats = HMAF_AGENT_STATS_INIT;
static unsigned long inputs;
static int revokes; /* this input's */

/* The agent, as the model has it. */
static uint64_t epoch;       /* its revocation epoch */
static uint64_t exposed_ids; /* ids handed out so far */
static struct hold holds[MAX_HOLDS + NEXPOSURES * (MAX_REVOKES + 1)];
static size_t nholds;
static uint64_t settled_ack;   /* the session's: holds older are gone */
static unsigned registrations; /* made in the current poll */

static uint8_t *slot_at(uint32_t slot)
{
    return mbox + hmaf__mbox_slot_offset(slot);
}

static uint64_t load_u64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static void store_u64(uint8_t *p, uint64_t v)
{
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}

static void store_word(uint32_t slot, uint64_t word)
{
    store_u64(slot_at(slot), word);
}

/* Keep fuzzed sequence numbers out of the client's range. */
static void mark_word(uint32_t slot)
{
    uint64_t w = load_u64(slot_at(slot));

    if (hmaf__mbox_word_seq(w) != 0) {
        store_word(slot, w | SEQ_FUZZ);
    }
}

static uint32_t fresh_seq(void)
{
    next_seq = (next_seq + 1) | SEQ_FUZZ;
    return next_seq;
}

static void request(uint32_t slot, uint8_t op, uint16_t len,
                    const void *payload, size_t n)
{
    memcpy(slot_at(slot) + hmaf__mbox_req_payload_at(len), payload, n);
    store_word(slot, hmaf__mbox_req_word(fresh_seq(), op, len));
}

/* ---- the model: holds ---- */

static int held(int e)
{
    for (size_t i = 0; i < nholds; i++) {
        if (holds[i].exposure == e) {
            return 1;
        }
    }
    return 0;
}

static long hold_index(int e, uint64_t ep)
{
    for (size_t i = 0; i < nholds; i++) {
        if (holds[i].exposure == e && holds[i].epoch == ep) {
            return (long)i;
        }
    }
    return -1;
}

/* A REGISTER answer; the first hold of an exposure registers it. */
static void hold_add(int e)
{
    long i = hold_index(e, epoch);

    registrations += !held(e);
    if (i >= 0) {
        holds[i].count++;
        return;
    }
    FUZZ_CHECK(nholds < sizeof(holds) / sizeof(holds[0]), "holds");
    holds[nholds++] = (struct hold){e, epoch, 1};
}

static void hold_remove_at(size_t i)
{
    holds[i] = holds[--nholds];
}

/* Every hold answered before epoch `ack` ends, once. */
static void end_holds_before(uint64_t ack)
{
    if (ack <= settled_ack) {
        return;
    }
    settled_ack = ack;
    for (size_t i = nholds; i-- > 0;) {
        if (holds[i].epoch < ack) {
            hold_remove_at(i);
        }
    }
}

/* At each poll, before the slots: an acknowledgement that grew ends every
 * hold answered in an older epoch; one above the agent's epoch counts as
 * the agent's epoch. */
static void expect_settle(uint64_t ack)
{
    end_holds_before(ack < epoch ? ack : epoch);
}

/* ---- the model: requests ---- */

static int find_exposure(uint64_t addr)
{
    for (int i = 0; i < NEXPOSURES; i++) {
        uint64_t base = (uint64_t)(uintptr_t)exposures[i].base;
        if (addr >= base && addr - base < exposures[i].len) {
            return i;
        }
    }
    return -1;
}

static int find_id(uint64_t id)
{
    for (int i = 0; i < NEXPOSURES; i++) {
        if (exposures[i].id == id) {
            return i;
        }
    }
    return -1;
}

/* The range part of a REGISTER. */
static int expect_register_range(const uint8_t *p, struct expect *ex)
{
    uint64_t addr, n;

    addr = load_u64(p);
    n = load_u64(p + 8);
    if (n == 0) {
        return HMAF_EINVAL;
    }
    if (n > UINT64_MAX - addr) {
        return HMAF_EOVERFLOW;
    }
    ex->exposure = find_exposure(addr);
    if (ex->exposure < 0) {
        return HMAF_EFAULT;
    }
    hold_add(ex->exposure);
    return 0;
}

/* 16 bytes, or 26 + 8 * count giving back count holds of one epoch: each
 * id ends its hold after the REGISTER itself was served, whatever it
 * answered; one naming none is skipped, unreported. */
static int expect_register(const uint8_t *p, uint16_t len, struct expect *ex)
{
    uint16_t count = len >= 26 ? (uint16_t)(p[24] | p[25] << 8) : 0;
    int status;

    if (len != 16 && (count == 0 || count > HMAF_REGISTER_GIVE_MAX ||
                      len != 26 + 8u * count)) {
        return HMAF_EPROTO;
    }
    status = expect_register_range(p, ex);
    for (uint16_t k = 0; len > 16 && k < count; k++) {
        int e = find_id(load_u64(p + 26 + 8 * k));
        long i = e < 0 ? -1 : hold_index(e, load_u64(p + 16));
        if (i >= 0 && --holds[i].count == 0) {
            hold_remove_at((size_t)i);
        }
    }
    return status;
}

/* Holds of revoked exposures went with them, so an old id holds nothing.
 * Each id ends its hold, in order; one that names none is skipped, and
 * the answer says so. */
static int expect_deregister(const uint8_t *p, uint16_t len)
{
    uint16_t count = len >= 10 ? (uint16_t)(p[8] | p[9] << 8) : 0;
    int status = 0;

    if (count == 0 || count > HMAF_DEREGISTER_IDS_MAX ||
        len != 10 + 8u * count) {
        return HMAF_EPROTO;
    }
    for (uint16_t k = 0; k < count; k++) {
        int e = find_id(load_u64(p + 10 + 8 * k));
        long i = e < 0 ? -1 : hold_index(e, load_u64(p));
        if (i < 0) {
            status = HMAF_ENOENT;
        } else if (--holds[i].count == 0) {
            hold_remove_at((size_t)i);
        }
    }
    return status;
}

static int expect_lookup(const uint8_t *p, uint16_t len, struct expect *ex)
{
    if (len != 64 || memchr(p, '\0', 64) == NULL) {
        return HMAF_EPROTO;
    }
    if (p[0] == '\0') {
        return HMAF_EINVAL;
    }
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        if (strcmp((const char *)p, roots[i].name) == 0) {
            ex->root = &roots[i];
            return 0;
        }
    }
    return HMAF_ENOENT;
}

/* An atomic's own outcome, as atomic.h says: a known op and size,
 * aligned, inside one exposure, read-write. */
static int expect_atomic_op(const struct hmaf_wire_atomic *op)
{
    if (op->op < HMAF_ATOMIC_FADD || op->op > HMAF_ATOMIC_FXOR ||
        (op->size != 4 && op->size != 8) || op->addr % op->size != 0) {
        return HMAF_EINVAL;
    }
    for (int i = 0; i < NEXPOSURES; i++) {
        uint64_t base = (uint64_t)(uintptr_t)exposures[i].base;
        if (op->addr >= base && op->addr - base < exposures[i].len) {
            if (exposures[i].len - (op->addr - base) < op->size) {
                return HMAF_EFAULT;
            }
            return exposures[i].access == HMAF_ACCESS_READ_WRITE
                       ? 0
                       : HMAF_EACCES;
        }
    }
    return HMAF_EFAULT;
}

/* A long request sits where the answer will go. */
static int expect_atomic(const uint8_t *slot, uint16_t len, struct expect *ex)
{
    struct hmaf_wire_atomic ops[HMAF_ATOMIC_BATCH_MAX];
    uint16_t count;

    if (len > HMAF_MBOX_REQ_LONG_MAX ||
        hmaf__req_atomic_decode(slot + hmaf__mbox_req_payload_at(len), len,
                                ops, &count) < 0) {
        return HMAF_EPROTO;
    }
    ex->atomics = count;
    for (uint16_t i = 0; i < count; i++) {
        ex->atomic_status[i] = expect_atomic_op(&ops[i]);
    }
    return 0;
}

static void check_atomic_answer(const uint8_t *p, uint16_t len,
                                const struct expect *ex)
{
    struct hmaf_wire_atomic_result r[HMAF_ATOMIC_BATCH_MAX];

    FUZZ_CHECK(hmaf__resp_atomic_decode(p, len, ex->atomics, r) == 0,
               "ATOMIC answer of %u bytes for %u ops does not decode", len,
               ex->atomics);
    for (uint16_t i = 0; i < ex->atomics; i++) {
        FUZZ_CHECK(r[i].status == ex->atomic_status[i],
                   "atomic %u: %s, want %s", i, hmaf_err_name(r[i].status),
                   hmaf_err_name(ex->atomic_status[i]));
    }
}

/* ALLOC and FREE: this agent has no heap, so a well-formed one (a FREE
 * may be long) is HMAF_ENOENT, anything else malformed. */
static int expect_heap(const uint8_t *slot, uint8_t op, uint16_t len)
{
    struct hmaf_req_alloc a;
    static struct hmaf_req_free f;
    const uint8_t *p = slot + hmaf__mbox_req_payload_at(len);

    if (len > HMAF_MBOX_REQ_LONG_MAX) {
        return HMAF_EPROTO;
    }
    if (op == HMAF_OP_ALLOC) {
        return hmaf__req_alloc_decode(p, len, &a) < 0 ? HMAF_EPROTO
                                                       : HMAF_ENOENT;
    }
    return hmaf__req_free_decode(p, len, &f) < 0 ? HMAF_EPROTO : HMAF_ENOENT;
}

/* The agent serves the slots of a session in index order within one
 * poll, so the model (holds) goes the same way. */
static void expect_slot(uint32_t slot, struct expect *ex)
{
    const uint8_t *s = before + hmaf__mbox_slot_offset(slot);
    const uint8_t *p = s + HMAF_MBOX_REQ_PAYLOAD;
    uint64_t word = load_u64(s);
    uint16_t len = hmaf__mbox_req_len(word);

    memset(ex, 0, sizeof(*ex));
    ex->seq = hmaf__mbox_word_seq(word);
    ex->op = hmaf__mbox_req_op(word);
    ex->fresh = ex->seq != 0 && ex->seq != served[slot];
    if (!ex->fresh) {
        return;
    }
    if (ex->op == HMAF_OP_ATOMIC) {
        ex->status = expect_atomic(s, len, ex);
    } else if (ex->op == HMAF_OP_ALLOC || ex->op == HMAF_OP_FREE) {
        ex->status = expect_heap(s, ex->op, len);
    } else if (len > HMAF_MBOX_REQ_MAX) {
        ex->status = HMAF_EPROTO;
    } else if (ex->op == HMAF_OP_PING) {
        ex->status = len == 0 ? 0 : HMAF_EPROTO;
    } else if (ex->op == HMAF_OP_REGISTER) {
        ex->status = expect_register(p, len, ex);
    } else if (ex->op == HMAF_OP_DEREGISTER) {
        ex->status = expect_deregister(p, len);
    } else if (ex->op == HMAF_OP_LOOKUP) {
        ex->status = expect_lookup(p, len, ex);
    } else if (ex->op == HMAF_OP_NOTIFY) {
        /* taken by the callback each poll: never more tags than slots */
        ex->status = len == HMAF_NOTIFY_REQ_LEN ? 0 : HMAF_EPROTO;
    } else {
        ex->status = HMAF_EPROTO;
    }
}

/* ---- checking the answers ---- */

static void check_register_answer(const uint8_t *p, uint16_t len,
                                  const struct expect *ex)
{
    const struct exposure *e = &exposures[ex->exposure];
    struct hmaf_resp_register r;

    FUZZ_CHECK(hmaf__resp_register_decode(p, len, &r) == 0,
               "REGISTER answer of %u bytes does not decode", len);
    FUZZ_CHECK(r.region_id == e->id, "region id %llu, want %llu",
               (unsigned long long)r.region_id, (unsigned long long)e->id);
    FUZZ_CHECK(r.base == (uint64_t)(uintptr_t)e->base && r.len == e->len &&
                   r.access == (uint8_t)e->access,
               "REGISTER answer describes another range");
    FUZZ_CHECK(r.epoch == epoch &&
                   r.epoch == load_u64(mbox + HMAF_MBOX_HEADER_EPOCH),
               "epoch %llu, want %llu", (unsigned long long)r.epoch,
               (unsigned long long)epoch);
    FUZZ_CHECK(r.export_blob.len == 0, "cma exports nothing");
}

static void check_answer(uint32_t slot, const struct expect *ex)
{
    const uint8_t *s = slot_at(slot), *was = before + (s - mbox);
    uint64_t word = load_u64(s + HMAF_MBOX_RESP_WORD);
    int status = hmaf__mbox_resp_status(word);
    uint16_t len = hmaf__mbox_resp_len(word);
    const uint8_t *p = s + HMAF_MBOX_RESP_PAYLOAD;
    struct hmaf_resp_lookup l;

    FUZZ_CHECK(hmaf__mbox_word_seq(word) == ex->seq,
               "slot %u: answer for seq %08x, asked %08x", slot,
               hmaf__mbox_word_seq(word), ex->seq);
    FUZZ_CHECK(status <= 0 &&
                   strcmp(hmaf_err_name(status), "HMAF_UNKNOWN") != 0,
               "slot %u: status %d is no HMAF code", slot, status);
    FUZZ_CHECK(status == ex->status, "slot %u op %u: %s, want %s", slot, ex->op,
               hmaf_err_name(status), hmaf_err_name(ex->status));
    FUZZ_CHECK(len <= HMAF_MBOX_RESP_MAX && (status == 0 || len == 0),
               "slot %u: %s with %u payload bytes", slot, hmaf_err_name(status),
               len);
    FUZZ_CHECK(memcmp(p + len, was + (p - s) + len,
                      HMAF_MBOX_SLOT_SIZE - HMAF_MBOX_RESP_PAYLOAD - len) == 0,
               "slot %u: bytes past the answer changed", slot);
    if (status != 0) {
        return;
    }
    switch (ex->op) {
    case HMAF_OP_REGISTER:
        check_register_answer(p, len, ex);
        break;
    case HMAF_OP_ATOMIC:
        check_atomic_answer(p, len, ex);
        break;
    case HMAF_OP_LOOKUP:
        FUZZ_CHECK(hmaf__resp_lookup_decode(p, len, &l) == 0 &&
                       l.addr == (uint64_t)(uintptr_t)ex->root->addr &&
                       l.len == ex->root->len,
                   "LOOKUP answer for %s", ex->root->name);
        break;
    default:
        FUZZ_CHECK(len == 0, "op %u answered with %u bytes", ex->op, len);
    }
}

/* The agent's counters moved by exactly what the model says. */
static void check_stats(unsigned answered, unsigned malformed, unsigned revoked)
{
    hmaf_agent_stats_t now = HMAF_AGENT_STATS_INIT;

    FUZZ_CHECK(hmaf_agent_stats(agent, &now) == 0, "stats");
    FUZZ_CHECK(now.requests == stats.requests + answered,
               "requests %llu, want %llu + %u",
               (unsigned long long)now.requests,
               (unsigned long long)stats.requests, answered);
    FUZZ_CHECK(now.bad_requests == stats.bad_requests + malformed,
               "bad_requests %llu, want %llu + %u",
               (unsigned long long)now.bad_requests,
               (unsigned long long)stats.bad_requests, malformed);
    FUZZ_CHECK(now.registrations == stats.registrations + registrations,
               "registrations %llu, want %llu + %u",
               (unsigned long long)now.registrations,
               (unsigned long long)stats.registrations, registrations);
    FUZZ_CHECK(now.revocations == stats.revocations + revoked &&
                   now.revoke_timeouts == 0 && now.revoke_cutoffs == 0,
               "revocations %llu (want %llu + %u), timeouts %llu, "
               "cut-offs %llu",
               (unsigned long long)now.revocations,
               (unsigned long long)stats.revocations, revoked,
               (unsigned long long)now.revoke_timeouts,
               (unsigned long long)now.revoke_cutoffs);
    FUZZ_CHECK(now.sessions_live == 1, "%llu sessions live",
               (unsigned long long)now.sessions_live);
    stats = now;
    registrations = 0;
}

static void poll_and_check(void)
{
    struct expect ex[NSLOTS];
    unsigned answered = 0, malformed = 0;
    int ret;

    memcpy(before, mbox, mbox_len);
    expect_settle(load_u64(before + HMAF_MBOX_ACK_OFFSET));
    for (uint32_t i = 0; i < NSLOTS; i++) {
        expect_slot(i, &ex[i]);
        answered += (unsigned)ex[i].fresh;
        malformed += ex[i].fresh && ex[i].status == HMAF_EPROTO;
    }
    ret = hmaf_agent_poll(agent, 0);
    FUZZ_CHECK(ret >= (int)answered, "hmaf_agent_poll: %d", ret);
    FUZZ_CHECK(memcmp(mbox, before, HMAF_MBOX_SLOTS_OFFSET) == 0,
               "the mailbox header changed");
    for (uint32_t i = 0; i < NSLOTS; i++) {
        uint64_t at = hmaf__mbox_slot_offset(i);
        FUZZ_CHECK(memcmp(mbox + at, before + at, REQ_HALF) == 0,
                   "slot %u: the agent wrote into the request half", i);
        if (ex[i].fresh) {
            FUZZ_TRACE("slot %u seq %08x op %u: %s\n", i, ex[i].seq, ex[i].op,
                       hmaf_err_name(ex[i].status));
            check_answer(i, &ex[i]);
            served[i] = ex[i].seq;
        } else {
            FUZZ_CHECK(memcmp(mbox + at + REQ_HALF, before + at + REQ_HALF,
                              HMAF_MBOX_SLOT_SIZE - REQ_HALF) == 0,
                       "slot %u: answered without a new request", i);
        }
    }
    check_stats(answered, malformed, 0);
}

/* ---- the session's own client ---- */

static int client_calls(void *unused)
{
    uint64_t addr = 0;
    size_t len = 0;
    int ret;

    (void)unused;
    ret = hmaf_session_ping(session);
    if (ret == 0) {
        ret = hmaf_session_lookup(session, "alpha", &addr, &len);
    }
    if (ret == 0 &&
        (addr != (uint64_t)(uintptr_t)area_a || len != sizeof(area_a))) {
        ret = HMAF_EPROTO;
    }
    if (ret == 0) {
        ret = hmaf_session_lookup(session, "nope", &addr, &len);
        ret = ret == HMAF_ENOENT ? 0 : ret == 0 ? HMAF_EEXIST : ret;
    }
    return ret;
}

static void check_client(void)
{
    int ret;

    poll_and_check(); /* nothing of ours left for the client's polls */
    ret = fuzz_beside_agent(agent, client_calls, NULL, CALL_TIMEOUT_MS);
    FUZZ_CHECK(ret == 0, "the session's own calls: %s", hmaf_err_name(ret));
    served[0] = hmaf__mbox_word_seq(load_u64(slot_at(0)));
    FUZZ_CHECK(hmaf__mbox_word_seq(load_u64(slot_at(0) + REQ_HALF)) ==
                   served[0],
               "slot 0: the client's last call unanswered");
    FUZZ_CHECK(hmaf_agent_stats(agent, &stats) == 0, "stats");
}

/* ---- revocations ---- */

static uint64_t epoch_seen(void)
{
    uint64_t seen;

    pthread_mutex_lock(&session->epoch_lock);
    seen = session->epoch_seen;
    pthread_mutex_unlock(&session->epoch_lock);
    return seen;
}

/* The watch thread acknowledges a new epoch once nudged, and sets
 * epoch_seen under the same lock as it writes the word. */
static void await_watch_thread(void)
{
    uint64_t deadline = hmaf__deadline_ns(CALL_TIMEOUT_MS);

    while (epoch_seen() != epoch) {
        FUZZ_CHECK(hmaf__now_ns() < deadline,
                   "the watch thread saw epoch %llu, not %llu",
                   (unsigned long long)epoch_seen(), (unsigned long long)epoch);
        sched_yield();
    }
    FUZZ_CHECK(load_u64(mbox + HMAF_MBOX_ACK_OFFSET) == epoch,
               "acknowledged %llu, not %llu",
               (unsigned long long)load_u64(mbox + HMAF_MBOX_ACK_OFFSET),
               (unsigned long long)epoch);
}

/* The session acknowledges (the fuzzer may have done so first), so the
 * holds answered before go, the exposure's registration goes, and it
 * comes back with a new id. */
static void revoke_exposure(int e)
{
    struct exposure *x = &exposures[e];
    int ret = hmaf_agent_revoke(agent, x->base, x->len);

    FUZZ_CHECK(ret == 0, "revoke: %s", hmaf_err_name(ret));
    epoch++;
    end_holds_before(epoch);
    FUZZ_CHECK(load_u64(mbox + HMAF_MBOX_HEADER_EPOCH) == epoch,
               "mailbox epoch %llu, want %llu",
               (unsigned long long)load_u64(mbox + HMAF_MBOX_HEADER_EPOCH),
               (unsigned long long)epoch);
    await_watch_thread();
    FUZZ_CHECK(hmaf_agent_expose(agent, x->base, x->len, x->access) == 0,
               "expose again");
    x->id = ++exposed_ids;
    check_stats(0, 0, 1);
    FUZZ_TRACE("revoked exposure %d: epoch %llu, id %llu\n", e,
               (unsigned long long)epoch, (unsigned long long)x->id);
}

/* ---- set-up ---- */

static char address[64];

static void ignore_notification(void *arg, const hmaf_notification_t *n)
{
    (void)arg;
    (void)n;
}

static int open_session(void *unused)
{
    hmaf_session_params_t p;

    (void)unused;
    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.rpc_timeout_ms = CALL_TIMEOUT_MS / 2;
    return hmaf_session_create(&p, &session);
}

static int close_session(void *unused)
{
    (void)unused;
    hmaf_session_destroy(session);
    session = NULL;
    return 0;
}

/* A new session: no holds, nothing settled, no slot served. One made
 * after a revocation acknowledges the agent's epoch at its first look:
 * make that look now, not at some later time of the watch thread's. */
static void connect_session(void)
{
    int ret = fuzz_beside_agent(agent, open_session, NULL, CALL_TIMEOUT_MS);

    FUZZ_CHECK(ret == 0, "session: %s", hmaf_err_name(ret));
    FUZZ_CHECK(session->mbox.nslots == NSLOTS, "slots");
    mbox = (uint8_t *)(uintptr_t)session->mbox.base;
    mbox_len = hmaf__mbox_size(NSLOTS);
    FUZZ_CHECK(hmaf__session_check_epoch(session, 1) == 0, "first look");
    FUZZ_CHECK(epoch_seen() == epoch, "epoch %llu after the first look",
               (unsigned long long)epoch_seen());
    memset(served, 0, sizeof(served));
    nholds = 0;
    settled_ack = 0;
    FUZZ_CHECK(hmaf_agent_stats(agent, &stats) == 0, "stats");
}

/* The end of a session ends its holds and so the registrations. */
static void restart_session(void)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    uint64_t deadline = hmaf__deadline_ns(CALL_TIMEOUT_MS);

    FUZZ_TRACE("%zu holds: a new session\n", nholds);
    (void)fuzz_beside_agent(agent, close_session, NULL, CALL_TIMEOUT_MS);
    do {
        FUZZ_CHECK(hmaf_agent_poll(agent, 0) >= 0, "poll");
        FUZZ_CHECK(hmaf_agent_stats(agent, &st) == 0, "stats");
        FUZZ_CHECK(hmaf__now_ns() < deadline, "the session outlives its end");
    } while (st.sessions_live != 0);
    connect_session();
    check_client();
}

static void start_agent(void)
{
    hmaf_agent_params_t p;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.threaded = 0;
    p.max_sessions = 2;
    p.mailbox_slots = NSLOTS;
    p.revoke_wait_ms = CALL_TIMEOUT_MS; /* a loaded machine: no cut-offs */
    FUZZ_CHECK(hmaf_agent_create(&p, &agent) == 0, "agent at %s", address);
    FUZZ_CHECK(hmaf_agent_on_notify(agent, ignore_notification, NULL) == 0,
               "on_notify");
    for (int i = 0; i < NEXPOSURES; i++) {
        FUZZ_CHECK(hmaf_agent_expose(agent, exposures[i].base, exposures[i].len,
                                     exposures[i].access) == 0,
                   "expose");
        exposures[i].id = ++exposed_ids;
    }
    memset(long_name, 'r', HMAF_ROOT_NAME_MAX);
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        FUZZ_CHECK(hmaf_agent_publish(agent, roots[i].name, roots[i].addr,
                                      roots[i].len) == 0,
                   "publish %s", roots[i].name);
    }
    /* Refused: LOOKUP must not find them. */
    FUZZ_CHECK(hmaf_agent_publish(agent, "empty", area_a, 0) == HMAF_EINVAL,
               "publish of 0 bytes");
    FUZZ_CHECK(hmaf_agent_publish(agent, "empty", (void *)(UINTPTR_MAX - 7),
                                  16) == HMAF_EOVERFLOW,
               "publish of a range that wraps");
}

static void set_up(void)
{
    fuzz_quiet_logs();
    snprintf(address, sizeof(address), "unix:@hmaf-fuzz-mailbox-%d",
             (int)getpid());
    start_agent();
    connect_session();
    check_client();
}

/* ---- the input ---- */

static void cmd_request(struct fuzz_in *in, uint32_t slot)
{
    uint8_t op = fuzz_u8(in), payload[HMAF_MBOX_REQ_MAX];
    uint16_t len = fuzz_u16(in);
    size_t n = fuzz_u8(in);

    n = n < sizeof(payload) ? n : sizeof(payload);
    fuzz_take_bytes(in, payload, n);
    request(slot, op, len, payload, n);
}

static void cmd_bytes(struct fuzz_in *in, uint32_t slot)
{
    uint8_t buf[REQ_HALF];
    size_t off = fuzz_u8(in), n = fuzz_u8(in);

    n = n < REQ_HALF - off ? n : REQ_HALF - off;
    fuzz_take_bytes(in, buf, n);
    memcpy(slot_at(slot) + off, buf, n);
    if (off < HMAF_MBOX_REQ_PAYLOAD) {
        mark_word(slot);
    }
}

static void cmd_register(struct fuzz_in *in, uint32_t slot)
{
    uint8_t which = fuzz_u8(in), p[16];
    int32_t off = (int32_t)fuzz_u32(in);
    uint64_t len = fuzz_u32(in), addr;
    struct hmaf_req_register r;

    switch (which % 4) {
    case 0:
    case 1:
        addr = (uint64_t)(uintptr_t)exposures[which % 4].base;
        break;
    case 2:
        addr = (uint64_t)(uintptr_t)unexposed;
        break;
    default:
        addr = fuzz_u64(in);
    }
    r.addr = addr + (uint64_t)(int64_t)off;
    r.len = which & 0x80 ? UINT64_MAX - len : len;
    hmaf__req_register_encode(&r, p);
    request(slot, HMAF_OP_REGISTER, sizeof(p), p, sizeof(p));
}

/* An epoch the model holds exposure e in, the k-th of them (cyclic). */
static uint64_t held_epoch(int e, unsigned k)
{
    size_t n = 0;

    for (size_t i = 0; i < nholds; i++) {
        n += holds[i].exposure == e;
    }
    k = n > 0 ? k % (unsigned)n : 0;
    for (size_t i = 0; i < nholds; i++) {
        if (holds[i].exposure == e && k-- == 0) {
            return holds[i].epoch;
        }
    }
    return epoch;
}

static uint64_t deregister_id(struct fuzz_in *in)
{
    uint8_t which = fuzz_u8(in);

    switch (which % 4) {
    case 0:
    case 1:
        return exposures[which % 4].id;
    case 2:
        return fuzz_u64(in);
    default:
        return which >> 2;
    }
}

/* Built by hand, not by the encoder: the bytes are what is tested. */
static void cmd_deregister(struct fuzz_in *in, uint32_t slot)
{
    uint8_t more = fuzz_u8(in), when = fuzz_u8(in);
    uint8_t p[10 + 8 * HMAF_DEREGISTER_IDS_MAX];
    uint16_t count = (uint16_t)(1 + more % HMAF_DEREGISTER_IDS_MAX);
    uint64_t back = 1u + (when >> 2), first;
    uint64_t ep = when % 4 == 3 ? fuzz_u64(in) : 0;

    first = deregister_id(in);
    switch (when % 4) {
    case 0:
        ep = epoch;
        break;
    case 1:
        ep = held_epoch(find_id(first), when >> 2);
        break;
    case 2:
        ep = epoch - (back < epoch ? back : epoch);
        break;
    default:
        break;
    }
    memcpy(p, &ep, 8);
    p[8] = (uint8_t)count;
    p[9] = (uint8_t)(count >> 8);
    memcpy(p + 10, &first, 8);
    for (uint16_t k = 1; k < count; k++) {
        uint64_t id = deregister_id(in);
        memcpy(p + 10 + 8 * k, &id, 8);
    }
    request(slot, HMAF_OP_DEREGISTER, (uint16_t)(10 + 8 * count), p,
            10 + 8u * count);
}

static void cmd_lookup(struct fuzz_in *in, uint32_t slot)
{
    uint8_t which = fuzz_u8(in) % 8, p[64] = {0};

    if (which < 4) {
        strcpy((char *)p, roots[which].name);
    } else if (which == 4) {
        strcpy((char *)p, "nope");
    } else if (which == 5) {
        strcpy((char *)p, "empty");
    } else if (which == 6) {
        fuzz_take_bytes(in, p, sizeof(p));
    }
    request(slot, HMAF_OP_LOOKUP, sizeof(p), p, sizeof(p));
}

static void cmd_word_only(struct fuzz_in *in, uint32_t slot)
{
    uint8_t op = fuzz_u8(in);
    uint16_t len = fuzz_u16(in);

    store_word(slot, hmaf__mbox_req_word(fresh_seq(), op, len));
}

static void cmd_ack(struct fuzz_in *in)
{
    uint8_t which = fuzz_u8(in);
    uint64_t k = which >> 2, ack;

    switch (which % 4) {
    case 0:
        ack = epoch;
        break;
    case 1:
        ack = epoch + 1 + k;
        break;
    case 2:
        ack = epoch - (k < epoch ? k : epoch);
        break;
    default:
        ack = fuzz_u64(in);
    }
    store_u64(mbox + HMAF_MBOX_ACK_OFFSET, ack);
}

static void cmd_revoke(struct fuzz_in *in)
{
    uint8_t which = fuzz_u8(in);

    if (revokes < MAX_REVOKES) {
        revokes++;
        revoke_exposure(which % NEXPOSURES);
    }
}

static void run_command(struct fuzz_in *in)
{
    uint8_t c = fuzz_u8(in);
    uint32_t slot = (uint32_t)(c >> 4) % NSLOTS;
    unsigned cmd = c & 15;

    switch (cmd < 10 ? cmd : cmd - 8) {
    case 0:
        cmd_request(in, slot);
        break;
    case 1:
        store_word(slot, fuzz_u64(in));
        mark_word(slot);
        break;
    case 2:
        cmd_bytes(in, slot);
        break;
    case 3:
        cmd_register(in, slot);
        break;
    case 4:
        cmd_deregister(in, slot);
        break;
    case 5:
        cmd_lookup(in, slot);
        break;
    case 6:
        poll_and_check();
        break;
    case 7:
        cmd_word_only(in, slot);
        break;
    case 8:
        cmd_ack(in);
        break;
    default:
        cmd_revoke(in);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};

    if (agent == NULL) {
        set_up();
    }
    revokes = 0;
    while (fuzz_more(&in)) {
        run_command(&in);
    }
    if (++inputs % CLIENT_CHECK_EVERY == 0) {
        check_client();
    } else {
        poll_and_check();
    }
    if (nholds > MAX_HOLDS) {
        restart_session();
    }
    return 0;
}
