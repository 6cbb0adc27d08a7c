/*
 * Writes the seed corpora of the fuzz harnesses: make_seeds DIR creates
 * DIR/wire, DIR/mailbox and DIR/hello (tests/fuzz/corpus is committed;
 * rerun this when an input format changes):
 *
 *   cmake --build build --target fuzz_make_seeds
 *   build/tests/fuzz/fuzz_make_seeds tests/fuzz/corpus
 *
 * Each seed is small and means one thing: a valid message or request of
 * every kind, and the truncated, oversized and out-of-range variants the
 * decoders and the agent must refuse. The formats are described at the
 * top of each harness.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hmaf/hmaf.h>

#include "proto/handshake.h"
#include "proto/atomic.h"
#include "proto/heap.h"
#include "proto/mailbox.h"
#include "proto/notify.h"

struct seed {
    uint8_t b[4096];
    size_t n;
};

static const char *out_dir;

static void put(struct seed *s, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    if (s->n + n > sizeof(s->b)) {
        fprintf(stderr, "seed too large\n");
        exit(1);
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void put_uint(struct seed *s, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)(v >> (8 * i));
        put(s, &b, 1);
    }
}

#define put_u8(s, v)  put_uint((s), (v), 1)
#define put_u16(s, v) put_uint((s), (v), 2)
#define put_u32(s, v) put_uint((s), (v), 4)
#define put_u64(s, v) put_uint((s), (v), 8)

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
}

static void save(const char *harness, const char *name, const struct seed *s)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, harness, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- messages ---- */

/* A HELLO whose engine blob is "$PID" (fuzz_hello puts its pid there). */
static size_t hello_msg(uint8_t *buf, const char *token, const char *engine)
{
    struct hmaf_hello h;

    memset(&h, 0, sizeof(h));
    hmaf__hello_set_token(&h, token);
    strncpy(h.engine, engine, sizeof(h.engine) - 1);
    h.engine_blob.len = 4;
    memcpy(h.engine_blob.data, "$PID", 4);
    return hmaf__hello_encode(&h, buf, HMAF_MSG_MAX);
}

/* A HELLO of engine "doca" whose blob has len bytes. */
static size_t hello_blob_msg(uint8_t *buf, uint16_t len)
{
    struct hmaf_hello h;

    memset(&h, 0, sizeof(h));
    hmaf__hello_set_token(&h, "secret");
    strcpy(h.engine, "doca");
    h.engine_blob.len = len;
    for (uint16_t i = 0; i < len; i++) {
        h.engine_blob.data[i] = (uint8_t)(i * 7);
    }
    return hmaf__hello_encode(&h, buf, HMAF_MSG_MAX);
}

/* Export bytes are a pattern: a descriptor is opaque. */
static size_t welcome_msg(uint8_t *buf, uint16_t export_len)
{
    struct hmaf_welcome w;

    memset(&w, 0, sizeof(w));
    strcpy(w.engine, "cma");
    w.engine_blob.len = 4;
    memcpy(w.engine_blob.data, "\x39\x30\x00\x00", 4);
    w.session_id = 7;
    w.mailbox_addr = 0x7f0000001000ull;
    w.mailbox_len = hmaf__mbox_size(16);
    w.mailbox_slots = 16;
    w.mailbox_export.len = export_len;
    for (uint16_t i = 0; i < export_len; i++) {
        w.mailbox_export.data[i] = (uint8_t)(i * 13 + 1);
    }
    w.lease_us = 50000;
    return hmaf__welcome_encode(&w, buf, HMAF_MSG_MAX);
}

/* ---- fuzz_wire: selector byte, then the decoder's input ---- */

enum wire_target {
    W_HDR,
    W_HELLO,
    W_WELCOME,
    W_REFUSAL,
    W_TOKEN,
    W_REQ_REGISTER,
    W_RESP_REGISTER,
    W_REQ_DEREGISTER,
    W_REQ_LOOKUP,
    W_RESP_LOOKUP,
    W_WORDS,
    W_CURSOR,
    W_REFUSE,
};

static void wire(const char *name, enum wire_target t, const void *p, size_t n)
{
    struct seed s = {.n = 0};

    put_u8(&s, t);
    put(&s, p, n);
    save("wire", name, &s);
}

/* The agent's refusal of a connection with this code. */
static void wire_refuse(const char *name, int code)
{
    uint8_t b[4];

    for (size_t i = 0; i < 4; i++) {
        b[i] = (uint8_t)((uint32_t)code >> (8 * i));
    }
    wire(name, W_REFUSE, b, sizeof(b));
}

/* Two equal 32-byte tokens of length 6, then a 33-character string. */
static void wire_token(void)
{
    uint8_t b[2 + 32 + 32 + 40] = {6, 6};

    memcpy(b + 2, "secret", 6);
    memcpy(b + 34, "secret", 6);
    memcpy(b + 66, "0123456789abcdef0123456789abcdefX", 33);
    wire("token-equal", W_TOKEN, b, sizeof(b));
}

static void wire_handshake(void)
{
    uint8_t m[HMAF_MSG_MAX];
    size_t n = hello_msg(m, "secret", "cma");

    wire("hdr-hello", W_HDR, m, HMAF_HDR_SIZE);
    wire("hello-valid", W_HELLO, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE);
    wire("hello-truncated", W_HELLO, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE - 1);
    m[HMAF_HDR_SIZE + 32] = 33; /* token_len */
    wire("hello-token-len-33", W_HELLO, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE);
    n = hello_msg(m, "secret", "cma");
    memset(m + HMAF_HDR_SIZE + 33, 'e', HMAF_ENGINE_NAME_MAX);
    wire("hello-engine-unterminated", W_HELLO, m + HMAF_HDR_SIZE,
         n - HMAF_HDR_SIZE);
    n = hello_msg(m, "secret", "cma");
    wire("hello-trailing", W_HELLO, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE + 1);
    m[HMAF_HDR_SIZE + 49] = 5; /* blob length past the body */
    wire("hello-blob-5", W_HELLO, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE);
    m[HMAF_HDR_SIZE + 49] = 0x01; /* blob length 1537 */
    m[HMAF_HDR_SIZE + 50] = 0x06;
    wire("hello-blob-1537", W_HELLO, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE);
    n = hello_blob_msg(m, 1024);
    wire("hello-blob-1024", W_HELLO, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE);

    n = welcome_msg(m, 8);
    wire("hdr-welcome", W_HDR, m, HMAF_HDR_SIZE);
    wire("welcome-valid", W_WELCOME, m + HMAF_HDR_SIZE, n - HMAF_HDR_SIZE);
    wire("welcome-truncated", W_WELCOME, m + HMAF_HDR_SIZE,
         n - HMAF_HDR_SIZE - 1);
    n = welcome_msg(m, 250);
    wire("welcome-export-250", W_WELCOME, m + HMAF_HDR_SIZE,
         n - HMAF_HDR_SIZE);
    m[HMAF_HDR_SIZE + 50] = 0x01; /* export length 1537 */
    m[HMAF_HDR_SIZE + 51] = 0x06;
    wire("welcome-export-1537", W_WELCOME, m + HMAF_HDR_SIZE,
         n - HMAF_HDR_SIZE);
    n = welcome_msg(m, 1024);
    wire("welcome-export-1024", W_WELCOME, m + HMAF_HDR_SIZE,
         n - HMAF_HDR_SIZE);

    n = hmaf__refusal_encode(HMAF_EAUTH, m);
    wire("hdr-refusal", W_HDR, m, n);
    m[0] = 'X';
    wire("hdr-bad-magic", W_HDR, m, n);
    wire("hdr-short", W_HDR, "HMAF\x02\x00\x01", 7);
    wire("refusal-eauth", W_REFUSAL, "\x5f\xf0\xff\xff", 4);
    wire_refuse("refuse-eauth", HMAF_EAUTH);
    wire_refuse("refuse-etimedout", HMAF_ETIMEDOUT);
    wire_refuse("refuse-econnreset", HMAF_ECONNRESET); /* EPROTO on the wire */
    wire_token();
}

static void wire_mailbox(void)
{
    uint8_t b[HMAF_MBOX_RESP_MAX];
    struct hmaf_req_register rr = {.addr = 0x7f0000001000ull, .len = 4096};
    struct hmaf_resp_register re = {.region_id = 1,
                                    .base = 0x7f0000000000ull,
                                    .len = 1 << 20,
                                    .epoch = 0,
                                    .access = HMAF_ACCESS_READ_WRITE};
    struct hmaf_req_deregister rd = {.epoch = 3, .count = 1, .region_id = {1}};
    struct hmaf_req_lookup rl = {{0}};
    struct hmaf_resp_lookup rs = {.addr = 0x7f0000001000ull, .len = 64};
    size_t n;

    n = hmaf__req_register_encode(&rr, b);
    wire("req-register", W_REQ_REGISTER, b, n);
    wire("req-register-short", W_REQ_REGISTER, b, n - 1);
    rr.give_epoch = 2;
    rr.give_count = HMAF_REGISTER_GIVE_MAX;
    for (uint16_t i = 0; i < rr.give_count; i++) {
        rr.give_id[i] = 1 + i * 5;
    }
    n = hmaf__req_register_encode(&rr, b);
    wire("req-register-give-full", W_REQ_REGISTER, b, n);
    b[24] = HMAF_REGISTER_GIVE_MAX + 1; /* a count past what fits */
    wire("req-register-give-count-huge", W_REQ_REGISTER, b, n + 8);
    rr.give_count = 1;
    n = hmaf__req_register_encode(&rr, b);
    wire("req-register-give", W_REQ_REGISTER, b, n);
    n = hmaf__resp_register_encode(&re, b);
    wire("resp-register", W_RESP_REGISTER, b, n);
    re.export_blob.len = 4;
    memcpy(re.export_blob.data, "blob", 4);
    n = hmaf__resp_register_encode(&re, b);
    wire("resp-register-blob", W_RESP_REGISTER, b, n);
    wire("resp-register-trailing", W_RESP_REGISTER, b, n + 1);
    b[34] = 0xff; /* blob length 0xff04 */
    wire("resp-register-blob-huge", W_RESP_REGISTER, b, n);
    n = hmaf__req_deregister_encode(&rd, b);
    wire("req-deregister", W_REQ_DEREGISTER, b, n);
    wire("req-deregister-v1", W_REQ_DEREGISTER, b, 8); /* protocol 1's */
    wire("req-deregister-v3", W_REQ_DEREGISTER, b, 16); /* protocol 3's */
    rd.count = HMAF_DEREGISTER_IDS_MAX;
    for (uint16_t i = 0; i < rd.count; i++) {
        rd.region_id[i] = 1 + i * 7;
    }
    n = hmaf__req_deregister_encode(&rd, b);
    wire("req-deregister-full", W_REQ_DEREGISTER, b, n);
    b[8] = HMAF_DEREGISTER_IDS_MAX + 1; /* a count past what fits */
    wire("req-deregister-count-huge", W_REQ_DEREGISTER, b, n + 8);
    strcpy(rl.name, "alpha");
    n = hmaf__req_lookup_encode(&rl, b);
    wire("req-lookup", W_REQ_LOOKUP, b, n);
    memset(b, 'r', 64);
    wire("req-lookup-unterminated", W_REQ_LOOKUP, b, 64);
    n = hmaf__resp_lookup_encode(&rs, b);
    wire("resp-lookup", W_RESP_LOOKUP, b, n);
    wire("word-request", W_WORDS, "\x01\x00\x00\x00\x02\x10\x00\x00", 8);
    wire("word-response", W_WORDS, "\x01\x00\x00\x00\xf2\xff\x00\x00", 8);
    wire("cursor", W_CURSOR,
         "\x05\x00\x01\x02\x03\x85"
         "abcdefghij",
         16);
}

/* ---- fuzz_mailbox: commands (see fuzz_mailbox.c) ---- */

enum mbox_cmd {
    M_REQ,
    M_WORD,
    M_BYTES,
    M_REG,
    M_DEREG,
    M_LOOKUP,
    M_POLL,
    M_WORD_ONLY,
    M_ACK,
    M_REVOKE
};

/* DEREGISTER's epoch: the agent's, one the model holds, an older one. */
enum { E_NOW, E_HELD, E_OLDER, E_RAW };
/* The acknowledgement: the agent's epoch, ahead of it, behind it. */
enum { A_NOW, A_AHEAD, A_BEHIND, A_RAW };

static void cmd(struct seed *s, enum mbox_cmd c, unsigned slot)
{
    put_u8(s, (uint8_t)(c | slot << 4));
}

static void raw_req(struct seed *s, unsigned slot, uint8_t op, uint16_t len,
                    const void *p, uint8_t n)
{
    cmd(s, M_REQ, slot);
    put_u8(s, op);
    put_u16(s, len);
    put_u8(s, n);
    put(s, p, n);
}

static void reg(struct seed *s, unsigned slot, uint8_t which, int32_t off,
                uint32_t len)
{
    cmd(s, M_REG, slot);
    put_u8(s, which);
    put_u32(s, (uint32_t)off);
    put_u32(s, len);
}

/* A DEREGISTER of n ids (which[i] as fuzz_mailbox.c reads it; ids of
 * which % 4 == 2 are not made here). */
static void dereg_many(struct seed *s, unsigned slot, uint8_t when,
                       unsigned n, const uint8_t *which)
{
    cmd(s, M_DEREG, slot);
    put_u8(s, (uint8_t)(n - 1));
    put_u8(s, when);
    for (unsigned i = 0; i < n; i++) {
        put_u8(s, which[i]);
    }
}

static void dereg(struct seed *s, unsigned slot, uint8_t which, uint8_t when)
{
    dereg_many(s, slot, when, 1, &which);
}

static void lookup(struct seed *s, unsigned slot, uint8_t which)
{
    cmd(s, M_LOOKUP, slot);
    put_u8(s, which);
}

static void ack(struct seed *s, uint8_t which)
{
    cmd(s, M_ACK, 0);
    put_u8(s, which);
}

static void revoke(struct seed *s, uint8_t exposure)
{
    cmd(s, M_REVOKE, 0);
    put_u8(s, exposure);
}

/* ATOMIC requests: a well-formed one whose ops fail each their own way
 * (an unexposed word, a bad op, a bad size, misaligned), a count of 0,
 * one op short, one op claimed too many. */
static void mailbox_atomic(void)
{
    struct hmaf_wire_atomic w[3] = {
        {.op = HMAF_ATOMIC_FADD, .size = 8, .addr = 4096, .operand = 1},
        {.op = 99, .size = 8, .addr = 8},
        {.op = HMAF_ATOMIC_CAS, .size = 3, .addr = 6}};
    uint8_t b[HMAF_MBOX_REQ_LONG_MAX];
    uint8_t n = (uint8_t)hmaf__req_atomic_encode(w, 3, b);
    struct seed s = {.n = 0};

    raw_req(&s, 0, HMAF_OP_ATOMIC, n, b, n);
    raw_req(&s, 1, HMAF_OP_ATOMIC, n - 1, b, n - 1);
    cmd(&s, M_POLL, 0);
    b[0] = 4;
    raw_req(&s, 2, HMAF_OP_ATOMIC, n, b, n);
    b[0] = 0;
    raw_req(&s, 3, HMAF_OP_ATOMIC, 2, b, 2);
    save("mailbox", "atomic", &s);
}

/* ALLOC, FREE and NOTIFY requests: well-formed (a FREE long enough to
 * sit at the answer's payload), one byte short or long, counts that
 * disagree with the length, a batch too large. */
static void mailbox_heap_notify(void)
{
    struct hmaf_req_alloc a = {.size = 64, .count = 4, .cached = 0};
    static struct hmaf_req_free f = {.cached = 128, .count = 30};
    uint8_t b[HMAF_MBOX_REQ_LONG_MAX];
    uint8_t n = (uint8_t)hmaf__req_alloc_encode(&a, b);
    struct seed s = {.n = 0};

    raw_req(&s, 0, HMAF_OP_ALLOC, n, b, n);
    raw_req(&s, 1, HMAF_OP_ALLOC, n - 1, b, n - 1);
    raw_req(&s, 2, HMAF_OP_ALLOC, n + 1, b, n);
    b[8] = HMAF_ALLOC_BATCH_MAX + 1;
    raw_req(&s, 3, HMAF_OP_ALLOC, n, b, n);
    save("mailbox", "alloc", &s);
    s.n = 0;
    for (uint16_t i = 0; i < f.count; i++) {
        f.addr[i] = 4096u * (i + 1);
    }
    n = (uint8_t)hmaf__req_free_encode(&f, b); /* 250: a long request */
    raw_req(&s, 0, HMAF_OP_FREE, n, b, n);
    f.count = 1;
    n = (uint8_t)hmaf__req_free_encode(&f, b);
    raw_req(&s, 1, HMAF_OP_FREE, n, b, n);
    raw_req(&s, 2, HMAF_OP_FREE, n + 8, b, n + 8);
    b[8] = 0;
    raw_req(&s, 3, HMAF_OP_FREE, n - 8, b, n - 8);
    cmd(&s, M_POLL, 0);
    raw_req(&s, 1, HMAF_OP_FREE, HMAF_MBOX_REQ_LONG_MAX, b, 10);
    raw_req(&s, 2, HMAF_OP_FREE, HMAF_MBOX_REQ_LONG_MAX + 1, b, 10);
    save("mailbox", "free", &s);
    s.n = 0;
    memset(b, 0, sizeof(b));
    b[0] = 7; /* tag 7, value 0 */
    raw_req(&s, 0, HMAF_OP_NOTIFY, HMAF_NOTIFY_REQ_LEN, b,
            HMAF_NOTIFY_REQ_LEN);
    raw_req(&s, 1, HMAF_OP_NOTIFY, HMAF_NOTIFY_REQ_LEN - 1, b,
            HMAF_NOTIFY_REQ_LEN - 1);
    raw_req(&s, 2, HMAF_OP_NOTIFY, 0, NULL, 0);
    save("mailbox", "notify", &s);
}

static void mailbox_simple(void)
{
    struct seed s = {.n = 0};
    uint8_t junk[HMAF_MBOX_REQ_MAX];

    memset(junk, 'A', sizeof(junk));
    raw_req(&s, 0, HMAF_OP_PING, 0, NULL, 0);
    cmd(&s, M_POLL, 0);
    save("mailbox", "ping", &s);
    s.n = 0;
    raw_req(&s, 1, HMAF_OP_PING, 8, junk, 8);
    raw_req(&s, 2, 99, 0, NULL, 0);
    raw_req(&s, 3, 0, 0, NULL, 0);
    save("mailbox", "malformed-ping-unknown-ops", &s);
    s.n = 0;
    raw_req(&s, 1, HMAF_OP_REGISTER, 0xffff, junk, 16);
    raw_req(&s, 2, HMAF_OP_LOOKUP, HMAF_MBOX_REQ_MAX + 1, junk, 64);
    raw_req(&s, 3, HMAF_OP_REGISTER, HMAF_MBOX_REQ_MAX, junk,
            HMAF_MBOX_REQ_MAX);
    save("mailbox", "oversized-lengths", &s);
    s.n = 0;
    raw_req(&s, 1, HMAF_OP_REGISTER, 15, junk, 15);
    raw_req(&s, 2, HMAF_OP_DEREGISTER, 15, junk, 15);
    raw_req(&s, 3, HMAF_OP_LOOKUP, 63, junk, 63);
    cmd(&s, M_POLL, 0);
    raw_req(&s, 2, HMAF_OP_DEREGISTER, 8, junk, 8); /* protocol 1's */
    save("mailbox", "truncated-payloads", &s);
    mailbox_atomic();
    mailbox_heap_notify();
}

/* REGISTERs giving holds back (exposures 1 and 2 are the first ids):
 * one of unexposed memory, answered HMAF_EFAULT, ends both holds and
 * skips an id nobody holds; a count of 0 and a count past the length are
 * refused whole. */
static void register_give_back(struct seed *s)
{
    struct hmaf_req_register rr = {.addr = 0,
                                   .len = 1,
                                   .give_epoch = 0,
                                   .give_count = 3,
                                   .give_id = {1, 2, 99}};
    uint8_t b[HMAF_MBOX_REQ_MAX];
    uint8_t n = (uint8_t)hmaf__req_register_encode(&rr, b);

    reg(s, 0, 0, 0, 1);
    reg(s, 1, 1, 0, 1);
    cmd(s, M_POLL, 0);
    raw_req(s, 2, HMAF_OP_REGISTER, n, b, n);
    cmd(s, M_POLL, 0);
    b[24] = 0;
    raw_req(s, 3, HMAF_OP_REGISTER, n, b, n);
    b[24] = 4;
    raw_req(s, 0, HMAF_OP_REGISTER, n, b, n);
}

static void mailbox_register(void)
{
    struct seed s = {.n = 0};

    reg(&s, 0, 0, 0, 1);
    reg(&s, 1, 1, 1023, 1);
    reg(&s, 2, 2, 0, 8);
    reg(&s, 3, 1, 1024, 1); /* one past the end */
    cmd(&s, M_POLL, 0);
    dereg(&s, 0, 0, E_NOW);
    dereg(&s, 1, 1, E_NOW);
    dereg(&s, 2, 1, E_NOW); /* the second one: no hold left */
    dereg(&s, 3, 3 | 40 << 2, E_NOW);
    save("mailbox", "register-deregister", &s);
    /* Both exposures and an id nobody holds in one DEREGISTER: the two
     * holds end, the answer says HMAF_ENOENT; a second time, nothing. */
    s.n = 0;
    reg(&s, 0, 0, 0, 1);
    reg(&s, 1, 1, 0, 1);
    reg(&s, 2, 0, 8, 1);
    cmd(&s, M_POLL, 0);
    dereg_many(&s, 0, E_NOW, 3, (const uint8_t[]){0, 1, 3 | 40 << 2});
    /* exposure 0 twice, held once more: the second finds none */
    dereg_many(&s, 1, E_NOW, 2, (const uint8_t[]){0, 0});
    cmd(&s, M_POLL, 0);
    dereg_many(&s, 2, E_NOW, 2, (const uint8_t[]){1, 0});
    save("mailbox", "deregister-batch", &s);
    s.n = 0;
    register_give_back(&s);
    save("mailbox", "register-give-back", &s);
    s.n = 0;
    reg(&s, 1, 0, 0, 0);     /* len 0 */
    reg(&s, 2, 0x80, 16, 0); /* len UINT64_MAX: overflow */
    reg(&s, 3, 0, -1, 1);    /* just before */
    save("mailbox", "register-edges", &s);
}

/* Holds per epoch: with the acknowledgement ahead of the epochs to come,
 * one answer before a revocation (of the other exposure) and one after
 * it are both held; each DEREGISTER names its own. */
static void mailbox_epochs(void)
{
    struct seed s = {.n = 0};

    ack(&s, A_AHEAD | 10 << 2);
    reg(&s, 0, 0, 0, 1);
    cmd(&s, M_POLL, 0);
    revoke(&s, 1);
    reg(&s, 1, 0, 8, 1);
    cmd(&s, M_POLL, 0);
    dereg(&s, 0, 0, E_OLDER); /* the first answer's epoch */
    dereg(&s, 1, 0, E_OLDER); /* none left in it */
    dereg(&s, 2, 0, E_NOW);
    dereg(&s, 3, 0, E_NOW); /* none left */
    save("mailbox", "deregister-epochs", &s);
    /* The session acknowledges the revocation: the older answer is given
     * back by the next poll, and naming it finds nothing. */
    s.n = 0;
    reg(&s, 0, 0, 0, 1);
    cmd(&s, M_POLL, 0);
    revoke(&s, 1);
    cmd(&s, M_POLL, 0);
    dereg(&s, 0, 0, E_OLDER);
    save("mailbox", "revoke-settles", &s);
    /* A REGISTER written before a revocation, answered after it, and one
     * of the revoked exposure's answers given back by its old id. */
    s.n = 0;
    reg(&s, 0, 1, 0, 1);
    cmd(&s, M_POLL, 0);
    reg(&s, 1, 1, 4, 4);
    revoke(&s, 1);
    cmd(&s, M_POLL, 0);
    dereg(&s, 2, 3 | 2 << 2, E_OLDER); /* exposure 1's first id */
    dereg(&s, 3, 1, E_HELD);
    save("mailbox", "revoke-pending-register", &s);
}

/* An acknowledgement that grows ends the older holds; one that does not
 * grow, or goes back, ends nothing. */
static void mailbox_acks(void)
{
    struct seed s = {.n = 0};

    reg(&s, 0, 0, 0, 1);
    reg(&s, 1, 1, 0, 1);
    cmd(&s, M_POLL, 0);
    ack(&s, A_AHEAD);
    cmd(&s, M_POLL, 0);
    dereg(&s, 0, 0, E_NOW); /* settled already */
    reg(&s, 1, 0, 0, 1);    /* registered again */
    cmd(&s, M_POLL, 0);
    ack(&s, A_AHEAD); /* the same: no news */
    cmd(&s, M_POLL, 0);
    dereg(&s, 2, 0, E_NOW);
    ack(&s, A_BEHIND);
    save("mailbox", "ack-settles", &s);
    /* Stuck far ahead: later revocations acknowledge less, and holds in
     * every epoch stay until given back. */
    s.n = 0;
    cmd(&s, M_ACK, 0);
    put_u8(&s, A_RAW);
    put_u64(&s, UINT64_MAX);
    reg(&s, 0, 0, 0, 1);
    cmd(&s, M_POLL, 0);
    revoke(&s, 1);
    reg(&s, 1, 0, 0, 1);
    cmd(&s, M_POLL, 0);
    dereg(&s, 2, 0, E_HELD);
    dereg(&s, 3, 0, E_HELD | 1 << 2);
    save("mailbox", "ack-stuck-ahead", &s);
}

static void mailbox_lookup(void)
{
    struct seed s = {.n = 0};
    uint8_t name[64];

    for (unsigned i = 0; i < 4; i++) {
        lookup(&s, i, (uint8_t)i);
    }
    cmd(&s, M_POLL, 0);
    lookup(&s, 1, 4);
    lookup(&s, 2, 7);
    lookup(&s, 3, 6);
    memset(name, 'r', sizeof(name));
    put(&s, name, sizeof(name));
    cmd(&s, M_POLL, 0);
    lookup(&s, 0, 5); /* a publish that was refused */
    save("mailbox", "lookups", &s);
}

static void mailbox_words(void)
{
    struct seed s = {.n = 0};
    struct hmaf_req_deregister rd = {.epoch = 0, .count = 1, .region_id = {1}};
    uint8_t p[18];

    raw_req(&s, 1, HMAF_OP_PING, 0, NULL, 0);
    cmd(&s, M_POLL, 0);
    /* The same word again: served once only. */
    cmd(&s, M_WORD, 2);
    put_u64(&s, hmaf__mbox_req_word(5, HMAF_OP_PING, 0));
    cmd(&s, M_POLL, 0);
    cmd(&s, M_WORD, 2);
    put_u64(&s, hmaf__mbox_req_word(5, HMAF_OP_PING, 0));
    cmd(&s, M_WORD, 3);
    put_u64(&s, 0); /* seq 0: no request */
    cmd(&s, M_POLL, 0);
    /* A new word over the payload of the last request in that slot. */
    raw_req(&s, 0, HMAF_OP_LOOKUP, 64, "alpha", 6);
    cmd(&s, M_POLL, 0);
    cmd(&s, M_WORD_ONLY, 0);
    put_u8(&s, HMAF_OP_LOOKUP);
    put_u16(&s, 64);
    /* A payload, then its word, written by separate stores. */
    cmd(&s, M_BYTES, 1);
    put_u8(&s, 8);
    put_u8(&s, 16);
    put(&s, "\0\0\0\0\0\0\0\0\x10\0\0\0\0\0\0\0", 16);
    cmd(&s, M_BYTES, 1);
    put_u8(&s, 0);
    put_u8(&s, 8);
    put_u64(&s, hmaf__mbox_req_word(9, HMAF_OP_REGISTER, 16));
    /* A DEREGISTER of exposure 0 in epoch 0, by hand. */
    hmaf__req_deregister_encode(&rd, p);
    raw_req(&s, 2, HMAF_OP_DEREGISTER, sizeof(p), p, sizeof(p));
    save("mailbox", "words-and-bytes", &s);
}

/* ---- fuzz_hello: connections (see fuzz_hello.c) ---- */

enum hello_cmd { H_SEND, H_SEND_POLL, H_SHUT, H_CLOSE, H_POLL };
#define H_GRACE_JUMP 5    /* H_POLL on this connection */
#define H_CLOCK_JUMP 6    /* H_POLL on this connection */
#define H_FLOOD      7    /* H_POLL on this one: n u8 */
#define H_FILL       0xf0 /* | extra, up to 15 */

static void hcmd(struct seed *s, enum hello_cmd c, unsigned conn)
{
    put_u8(s, (uint8_t)(c << 3 | conn));
}

static void send_bytes(struct seed *s, enum hello_cmd c, unsigned conn,
                       const void *p, size_t n)
{
    hcmd(s, c, conn);
    put_u16(s, (uint16_t)n);
    put(s, p, n);
}

static void hello_one(const char *name, const uint8_t *m, size_t n)
{
    struct seed s = {.n = 0};

    send_bytes(&s, H_SEND, 0, m, n);
    save("hello", name, &s);
}

static void hello_variants(void)
{
    uint8_t m[HMAF_MSG_MAX];
    size_t n = hello_msg(m, "fuzz-hello", "cma");

    hello_one("valid", m, n);
    m[HMAF_HDR_SIZE + 51] = '%'; /* "%PID": not ours, so someone else's */
    hello_one("other-pid", m, n);
    n = hello_msg(m, "fuzz-hellO", "cma");
    hello_one("wrong-token", m, n);
    n = hello_msg(m, "fuzz-hello", "ucx");
    hello_one("wrong-engine", m, n);
    n = hello_msg(m, "fuzz-hello", "cma");
    m[HMAF_HDR_SIZE + 49] = 3; /* blob length 3 */
    hello_one("short-blob", m, n);
    n = hello_msg(m, "fuzz-hello", "cma");
    m[4] = HMAF_PROTOCOL_VERSION - 1; /* the one before */
    hello_one("version-old", m, HMAF_HDR_SIZE);
    n = hello_msg(m, "fuzz-hello", "cma");
    m[6] = HMAF_MSG_WELCOME;
    hello_one("type-welcome", m, HMAF_HDR_SIZE);
    n = hello_msg(m, "fuzz-hello", "cma");
    m[13] = 0xff; /* body length past the largest HELLO */
    hello_one("body-len", m, n);
    n = hello_msg(m, "fuzz-hello", "cma");
    m[8] = 1; /* status */
    hello_one("status", m, n);
    hello_one("garbage", (const uint8_t *)"GET / HTTP/1.0\r\n\r\n", 18);
}

static void hello_sequences(void)
{
    struct seed s = {.n = 0};
    uint8_t m[HMAF_MSG_MAX];
    size_t n = hello_msg(m, "fuzz-hello", "cma");

    /* In three pieces with the agent looking in between. */
    send_bytes(&s, H_SEND_POLL, 0, m, 10);
    send_bytes(&s, H_SEND_POLL, 0, m + 10, 30);
    send_bytes(&s, H_SEND, 0, m + 40, n - 40);
    save("hello", "valid-in-pieces", &s);
    s.n = 0;
    send_bytes(&s, H_SEND, 0, m, n);
    hcmd(&s, H_SHUT, 0);
    send_bytes(&s, H_SEND, 1, m, n);
    send_bytes(&s, H_SEND, 1, "extra", 5);
    save("hello", "valid-then-shut-or-extra", &s);
    s.n = 0;
    send_bytes(&s, H_SEND_POLL, 0, m, HMAF_HDR_SIZE);
    hcmd(&s, H_SHUT, 0);
    send_bytes(&s, H_SEND, 1, m, 60);
    hcmd(&s, H_CLOSE, 1);
    send_bytes(&s, H_SEND, 2, NULL, 0);
    hcmd(&s, H_SHUT, 2);
    send_bytes(&s, H_SEND, 3, m, 7);
    hcmd(&s, H_POLL, 0);
    save("hello", "truncated-and-early-close", &s);
    s.n = 0;
    for (unsigned i = 0; i < 8; i++) {
        send_bytes(&s, H_SEND, i, m, i % 2 ? n : 40);
    }
    save("hello", "eight-connections", &s);
    /* One more session than the agent serves at once. */
    s.n = 0;
    for (unsigned i = 0; i < 5; i++) {
        send_bytes(&s, H_SEND_POLL, i, m, n);
    }
    save("hello", "sessions-over-limit", &s);
    /* A HELLO under way, then silent connections (not so many that the
     * table overflows), then the rest of the HELLO and another one. */
    s.n = 0;
    send_bytes(&s, H_SEND_POLL, 0, m, 40);
    hcmd(&s, H_POLL, H_FLOOD);
    put_u8(&s, 90);
    hcmd(&s, H_POLL, 0);
    send_bytes(&s, H_SEND, 0, m + 40, n - 40);
    send_bytes(&s, H_SEND, 1, m, n);
    save("hello", "silent-flood", &s);
    /* HELLOs sent with their connects are answered as they are accepted,
     * in the same poll; so is a malformed one. */
    s.n = 0;
    for (unsigned i = 0; i < 3; i++) {
        send_bytes(&s, H_SEND, i, m, n);
    }
    send_bytes(&s, H_SEND, 3, "GET / HTTP/1.0\r\n\r\n", 18);
    hcmd(&s, H_POLL, 0);
    save("hello", "first-look", &s);
    /* A full table: newcomers wait in the backlog while its oldest are in
     * their grace (the listener rests); past it, the oldest waiters (a
     * HELLO under way, a silent one) give way and are refused with
     * HMAF_ETIMEDOUT. A HELLO that came with its connect before the fill
     * is answered, one under way after it waits on. */
    s.n = 0;
    send_bytes(&s, H_SEND_POLL, 0, m, 40);
    send_bytes(&s, H_SEND_POLL, 1, NULL, 0);
    send_bytes(&s, H_SEND, 2, m, n);
    hcmd(&s, H_POLL, H_FLOOD);
    put_u8(&s, H_FILL | 3);
    send_bytes(&s, H_SEND_POLL, 3, m, 30);
    hcmd(&s, H_POLL, H_GRACE_JUMP);
    send_bytes(&s, H_SEND, 0, m + 40, n - 40); /* too late */
    save("hello", "table-full", &s);
    /* A full table in its grace: the listener rests, so a HELLO sent with
     * its connect waits in the backlog, even when a waiting connection
     * finishes its HELLO and frees a place; it is answered as soon as the
     * grace is over (its connect is taken, the oldest giving way). */
    s.n = 0;
    send_bytes(&s, H_SEND_POLL, 0, m, 40);
    hcmd(&s, H_POLL, H_FLOOD);
    put_u8(&s, H_FILL | 1);
    send_bytes(&s, H_SEND_POLL, 1, m, n);
    send_bytes(&s, H_SEND_POLL, 0, m + 40, n - 40);
    hcmd(&s, H_POLL, 0);
    hcmd(&s, H_POLL, H_GRACE_JUMP);
    save("hello", "listener-rests", &s);
    /* A fill and one more, past the grace: the newcomer is taken, the
     * oldest giving way, and no one else goes (the backlog is empty). */
    s.n = 0;
    hcmd(&s, H_POLL, H_FLOOD);
    put_u8(&s, H_FILL | 1);
    hcmd(&s, H_POLL, H_GRACE_JUMP);
    save("hello", "give-way-for-no-one", &s);
    /* The handshake timeout: what waits is refused with HMAF_ETIMEDOUT,
     * a complete HELLO is answered first, a newcomer waits on. */
    s.n = 0;
    send_bytes(&s, H_SEND_POLL, 0, m, 30);
    send_bytes(&s, H_SEND_POLL, 1, NULL, 0);
    send_bytes(&s, H_SEND_POLL, 2, m, 60);
    send_bytes(&s, H_SEND, 2, m + 60, n - 60);
    send_bytes(&s, H_SEND, 3, m, 10);
    hcmd(&s, H_POLL, H_CLOCK_JUMP);
    save("hello", "clock-jump", &s);
    /* Peers that close before their answer: a complete HELLO is no
     * refusal (but takes a session id), a wrong one is refused all the
     * same; a session whose peer closed makes room for a HELLO that
     * arrives in the same poll. */
    s.n = 0;
    send_bytes(&s, H_SEND, 0, m, n);
    hcmd(&s, H_CLOSE, 0);
    n = hello_msg(m, "fuzz-hellO", "cma");
    send_bytes(&s, H_SEND, 1, m, n);
    hcmd(&s, H_CLOSE, 1);
    hcmd(&s, H_POLL, 0);
    n = hello_msg(m, "fuzz-hello", "cma");
    for (unsigned i = 2; i < 6; i++) {
        send_bytes(&s, H_SEND_POLL, i, m, n);
    }
    send_bytes(&s, H_SEND_POLL, 6, m, n); /* no room: ENOSPC */
    hcmd(&s, H_CLOSE, 2);
    send_bytes(&s, H_SEND_POLL, 7, m, n); /* room, in the same poll */
    save("hello", "closed-before-answer", &s);
    /* Sessions whose peers send more and stay: graves, which keep their
     * places (HMAF_ENOSPC) while they swallow what comes, until their
     * peers close. */
    s.n = 0;
    for (unsigned i = 0; i < 4; i++) {
        send_bytes(&s, H_SEND_POLL, i, m, n);
    }
    send_bytes(&s, H_SEND_POLL, 0, "more", 4);
    send_bytes(&s, H_SEND, 1, m, 300);
    send_bytes(&s, H_SEND_POLL, 1, m, 300);
    send_bytes(&s, H_SEND_POLL, 4, m, n); /* ENOSPC */
    hcmd(&s, H_CLOSE, 0);
    hcmd(&s, H_POLL, 0);
    send_bytes(&s, H_SEND_POLL, 5, m, n); /* 0's place is free again */
    hcmd(&s, H_SHUT, 1);
    hcmd(&s, H_POLL, 0);
    send_bytes(&s, H_SEND_POLL, 6, m, n); /* and 1's: seen past its bytes */
    save("hello", "graves", &s);
    /* Bytes past the HELLO, then the end of the stream before the agent
     * looks: a peer that stopped, no grave. */
    s.n = 0;
    send_bytes(&s, H_SEND_POLL, 0, m, n);
    send_bytes(&s, H_SEND_POLL, 1, m, n);
    send_bytes(&s, H_SEND, 0, m, 300);
    hcmd(&s, H_SHUT, 0);
    send_bytes(&s, H_SEND, 1, "xyz", 3);
    hcmd(&s, H_CLOSE, 1);
    hcmd(&s, H_POLL, 0);
    for (unsigned i = 2; i < 6; i++) { /* every place free */
        send_bytes(&s, H_SEND_POLL, i, m, n);
    }
    save("hello", "bytes-then-end", &s);
}

int main(int argc, char **argv)
{
    char path[512];
    static const char *const harnesses[] = {"wire", "mailbox", "hello"};

    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    make_dir(out_dir);
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", out_dir, harnesses[i]);
        make_dir(path);
    }
    wire_handshake();
    wire_mailbox();
    mailbox_simple();
    mailbox_register();
    mailbox_epochs();
    mailbox_acks();
    mailbox_lookup();
    mailbox_words();
    hello_variants();
    hello_sequences();
    return 0;
}
