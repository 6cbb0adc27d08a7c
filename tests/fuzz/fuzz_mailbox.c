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
 * request halves of its slots, with polls in between (format below).
 * After each poll every slot is checked against a model of the
 * agent: which requests are new, the exact status each must get, the
 * session's holds, the agent's counters. Now and then the session's own
 * client must still ping and look up.
 *
 * Input: a sequence of commands, one byte c then its arguments; the slot
 * is (c >> 3) % NSLOTS, the command c & 7:
 *   0 request   op u8, length u16, n u8, n payload bytes; then the word
 *   1 word      u64 request word, stored as is
 *   2 bytes     offset u8, n u8, n bytes at that offset of the request half
 *   3 register  which u8, offset i32, len u32 [addr u64 when which%4 == 3]:
 *               REGISTER of an address relative to an exposure (0, 1), to
 *               unexposed memory (2) or absolute (3); which & 0x80: len is
 *               UINT64_MAX - len
 *   4 deregister which u8 [id u64 when which%4 == 2]: DEREGISTER of
 *               exposure 0's or 1's id (0, 1), of id (2), of which >> 2 (3)
 *   5 lookup    which u8 [64 bytes when which%8 == 6]: LOOKUP of root
 *               which%8 (0-3), of "nope" (4, 5), of the bytes (6), of ""
 *   6 poll      hmaf_agent_poll(agent, 0), then the checks
 *   7 word      op u8, length u16: a new request word over whatever
 *               payload the slot holds
 * Every store that reaches a request word sets bit 31 of a non-zero
 * sequence number, so fuzzed words never collide with the client's
 * (which count up from 1, in slot 0). The input ends with a poll, and
 * every CLIENT_CHECK_EVERY inputs (and at start) with the session's own
 * ping and lookups.
 */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/session_int.h"
#include "fuzz.h"
#include "proto/mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSLOTS          4
#define REQ_HALF        HMAF_MBOX_RESP_WORD /* the dpu-written half of a slot */
#define SEQ_FUZZ        0x80000000u
#define TOKEN           "fuzz-mailbox"
#define CALL_TIMEOUT_MS 10000
/* The client's calls need the worker thread and this one to take turns:
 * cheap on an idle machine, milliseconds on a loaded one. The checks
 * after every poll see each answer anyway. */
#define CLIENT_CHECK_EVERY 128

struct exposure {
    uint8_t *base;
    size_t len;
    hmaf_access_t access;
    uint64_t id;    /* learned from the first REGISTER answer */
    uint64_t holds; /* REGISTERs not given back by a DEREGISTER */
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
};

static uint8_t area_a[8192] __attribute__((aligned(4096)));
static uint8_t area_b[4096];
static uint8_t unexposed[256];
static char long_name[HMAF_ROOT_NAME_MAX + 1];

static struct exposure exposures[2] = {
    {area_a, sizeof(area_a), HMAF_ACCESS_READ_WRITE, 0, 0},
    {area_b + 512, 1024, HMAF_ACCESS_READ, 0, 0},
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
static hmaf_agent_stats_t stats;
static unsigned long inputs;

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

static void store_word(uint32_t slot, uint64_t word)
{
    atomic_store_explicit((_Atomic uint64_t *)slot_at(slot), word,
                          memory_order_release);
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
    memcpy(slot_at(slot) + HMAF_MBOX_REQ_PAYLOAD, payload, n);
    store_word(slot, hmaf__mbox_req_word(fresh_seq(), op, len));
}

/* ---- the model ---- */

static int find_exposure(uint64_t addr)
{
    for (int i = 0; i < 2; i++) {
        uint64_t base = (uint64_t)(uintptr_t)exposures[i].base;
        if (addr >= base && addr - base < exposures[i].len) {
            return i;
        }
    }
    return -1;
}

static int expect_register(const uint8_t *p, uint16_t len, struct expect *ex)
{
    uint64_t addr, n;

    if (len != 16) {
        return HMAF_EPROTO;
    }
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
    exposures[ex->exposure].holds++;
    return 0;
}

static int expect_deregister(const uint8_t *p, uint16_t len)
{
    uint64_t id = load_u64(p);

    if (len != 8) {
        return HMAF_EPROTO;
    }
    for (int i = 0; i < 2; i++) {
        if (id != 0 && exposures[i].id == id && exposures[i].holds > 0) {
            exposures[i].holds--;
            return 0;
        }
    }
    return HMAF_ENOENT;
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
    if (len > HMAF_MBOX_REQ_MAX) {
        ex->status = HMAF_EPROTO;
    } else if (ex->op == HMAF_OP_PING) {
        ex->status = len == 0 ? 0 : HMAF_EPROTO;
    } else if (ex->op == HMAF_OP_REGISTER) {
        ex->status = expect_register(p, len, ex);
    } else if (ex->op == HMAF_OP_DEREGISTER) {
        ex->status = expect_deregister(p, len);
    } else if (ex->op == HMAF_OP_LOOKUP) {
        ex->status = expect_lookup(p, len, ex);
    } else {
        ex->status = HMAF_EPROTO;
    }
}

/* ---- checking the answers ---- */

static void check_register_answer(const uint8_t *p, uint16_t len,
                                  const struct expect *ex)
{
    struct exposure *e = &exposures[ex->exposure];
    struct exposure *other = &exposures[1 - ex->exposure];
    struct hmaf_resp_register r;

    FUZZ_CHECK(hmaf__resp_register_decode(p, len, &r) == 0,
               "REGISTER answer of %u bytes does not decode", len);
    if (e->id == 0) {
        FUZZ_CHECK(r.region_id != 0 && r.region_id != other->id,
                   "region id %llu", (unsigned long long)r.region_id);
        e->id = r.region_id;
    }
    FUZZ_CHECK(r.region_id == e->id, "region id %llu, was %llu",
               (unsigned long long)r.region_id, (unsigned long long)e->id);
    FUZZ_CHECK(r.base == (uint64_t)(uintptr_t)e->base && r.len == e->len &&
                   r.access == (uint8_t)e->access,
               "REGISTER answer describes another range");
    FUZZ_CHECK(r.epoch == load_u64(mbox + HMAF_MBOX_HEADER_EPOCH), "epoch %llu",
               (unsigned long long)r.epoch);
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

static void check_stats(unsigned answered, unsigned malformed)
{
    hmaf_agent_stats_t now;

    FUZZ_CHECK(hmaf_agent_stats(agent, &now) == 0, "stats");
    FUZZ_CHECK(now.requests == stats.requests + answered,
               "requests %llu, want %llu + %u",
               (unsigned long long)now.requests,
               (unsigned long long)stats.requests, answered);
    FUZZ_CHECK(now.bad_requests == stats.bad_requests + malformed,
               "bad_requests %llu, want %llu + %u",
               (unsigned long long)now.bad_requests,
               (unsigned long long)stats.bad_requests, malformed);
    FUZZ_CHECK(now.sessions_live == 1, "%llu sessions live",
               (unsigned long long)now.sessions_live);
    stats = now;
}

static void poll_and_check(void)
{
    struct expect ex[NSLOTS];
    unsigned answered = 0, malformed = 0;
    int ret;

    memcpy(before, mbox, mbox_len);
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
    check_stats(answered, malformed);
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

/* ---- set-up ---- */

static char address[64];

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

static void start_agent(void)
{
    hmaf_agent_params_t p;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.threaded = 0;
    p.max_sessions = 2;
    p.mailbox_slots = NSLOTS;
    FUZZ_CHECK(hmaf_agent_create(&p, &agent) == 0, "agent at %s", address);
    for (int i = 0; i < 2; i++) {
        FUZZ_CHECK(hmaf_agent_expose(agent, exposures[i].base, exposures[i].len,
                                     exposures[i].access) == 0,
                   "expose");
    }
    memset(long_name, 'r', HMAF_ROOT_NAME_MAX);
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        FUZZ_CHECK(hmaf_agent_publish(agent, roots[i].name, roots[i].addr,
                                      roots[i].len) == 0,
                   "publish %s", roots[i].name);
    }
}

static void set_up(void)
{
    int ret;

    fuzz_quiet_logs();
    snprintf(address, sizeof(address), "unix:@hmaf-fuzz-mailbox-%d",
             (int)getpid());
    start_agent();
    ret = fuzz_beside_agent(agent, open_session, NULL, CALL_TIMEOUT_MS);
    FUZZ_CHECK(ret == 0, "session: %s", hmaf_err_name(ret));
    FUZZ_CHECK(session->mbox.nslots == NSLOTS, "slots");
    mbox = (uint8_t *)(uintptr_t)session->mbox.base;
    mbox_len = hmaf__mbox_size(NSLOTS);
    FUZZ_CHECK(hmaf_agent_stats(agent, &stats) == 0, "stats");
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

static void cmd_deregister(struct fuzz_in *in, uint32_t slot)
{
    uint8_t which = fuzz_u8(in), p[8];
    struct hmaf_req_deregister r;

    switch (which % 4) {
    case 0:
    case 1:
        r.region_id = exposures[which % 4].id;
        break;
    case 2:
        r.region_id = fuzz_u64(in);
        break;
    default:
        r.region_id = which >> 2;
    }
    hmaf__req_deregister_encode(&r, p);
    request(slot, HMAF_OP_DEREGISTER, sizeof(p), p, sizeof(p));
}

static void cmd_lookup(struct fuzz_in *in, uint32_t slot)
{
    uint8_t which = fuzz_u8(in) % 8, p[64] = {0};

    if (which < 4) {
        strcpy((char *)p, roots[which].name);
    } else if (which < 6) {
        strcpy((char *)p, "nope");
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

static void run_command(struct fuzz_in *in)
{
    uint8_t c = fuzz_u8(in);
    uint32_t slot = (uint32_t)(c >> 3) % NSLOTS;

    switch (c & 7) {
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
    default:
        cmd_word_only(in, slot);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};

    if (agent == NULL) {
        set_up();
    }
    while (fuzz_more(&in)) {
        run_command(&in);
    }
    if (++inputs % CLIENT_CHECK_EVERY == 0) {
        check_client();
    } else {
        poll_and_check();
    }
    return 0;
}
