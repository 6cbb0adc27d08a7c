/*
 * Every decoder of src/proto (and the cursor under them) on arbitrary
 * bytes. The first byte picks the decoder, the rest is its input. Besides
 * "no crash, no read past the input", each decoder is held to what its
 * format says: it accepts exactly the inputs a model built from the raw
 * bytes accepts, and where it accepts, encoding the result gives the input
 * back and decoding that gives the same struct again. The agent's refusal
 * (hmaf__agent_refuse) runs over a socket pair: which codes cross the wire.
 */
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "host/agent_int.h"
#include "proto/handshake.h"
#include "proto/mailbox.h"
#include "util/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Body offsets, from the layout in handshake.h and mailbox.c. */
#define HELLO_TOKEN_LEN_AT  32
#define HELLO_ENGINE_AT     33
#define HELLO_BLOB_AT       (33 + HMAF_ENGINE_NAME_MAX)
#define WELCOME_BLOB_AT     HMAF_ENGINE_NAME_MAX
/* The export's length follows the engine blob's bytes and 28 bytes of
 * fixed fields: at WELCOME_EXPORT_AT + the engine blob's length. */
#define WELCOME_EXPORT_AT   (HMAF_ENGINE_NAME_MAX + 2 + 28)
#define RESP_REGISTER_FIXED 33

static uint32_t le(const uint8_t *p, size_t n)
{
    uint32_t v = 0;

    for (size_t i = 0; i < n; i++) {
        v |= (uint32_t)p[i] << (8 * i);
    }
    return v;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le(p, 4) | (uint64_t)le(p + 4, 4) << 32;
}

static int has_nul(const void *p, size_t n)
{
    return memchr(p, '\0', n) != NULL;
}

/* ---- handshake ---- */

static void check_hello_body_len(const struct hmaf_msg_hdr *h)
{
    int want;

    if (h->magic != HMAF_WIRE_MAGIC || h->type != HMAF_MSG_HELLO) {
        want = HMAF_EPROTO;
    } else if (h->version != HMAF_PROTOCOL_VERSION) {
        want = HMAF_EVERSION;
    } else if (h->status != 0 || h->body_len < 51 ||
               h->body_len > 51 + HMAF_BLOB_MAX) {
        want = HMAF_EPROTO;
    } else {
        want = (int)h->body_len;
    }
    FUZZ_CHECK(hmaf__agent_hello_body_len(h) == want, "hello body len");
}

static void fuzz_hdr(const uint8_t *p, size_t n)
{
    uint8_t in[HMAF_HDR_SIZE] = {0}, out[HMAF_HDR_SIZE];
    struct hmaf_msg_hdr h, again;
    int ret;

    memcpy(in, p, n < sizeof(in) ? n : sizeof(in));
    ret = hmaf__hdr_decode(in, &h);
    FUZZ_CHECK((ret == 0) == (memcmp(in, "HMAF", 4) == 0), "magic: %d", ret);
    FUZZ_CHECK(ret == 0 || ret == HMAF_EPROTO, "code %d", ret);
    FUZZ_CHECK(h.version == le(in + 4, 2) && h.type == in[6] &&
                   (uint32_t)h.status == le(in + 8, 4) &&
                   h.body_len == le(in + 12, 4),
               "fields");
    FUZZ_CHECK(hmaf__msg_body_min(h.type) ==
                   (h.type == HMAF_MSG_HELLO     ? 51u
                    : h.type == HMAF_MSG_WELCOME ? 52u
                                                 : 0u),
               "smallest body of type %u", h.type);
    FUZZ_CHECK(hmaf__msg_body_max(h.type) ==
                   (h.type == HMAF_MSG_HELLO     ? 51u + HMAF_BLOB_MAX
                    : h.type == HMAF_MSG_WELCOME ? 52u + 2 * HMAF_BLOB_MAX
                                                 : 0u),
               "largest body of type %u", h.type);
    check_hello_body_len(&h);
    hmaf__hdr_encode(&h, out);
    in[7] = 0; /* the pad byte: ignored on decode, 0 on encode */
    FUZZ_CHECK(memcmp(in, out, sizeof(in)) == 0, "header round trip");
    FUZZ_CHECK(hmaf__hdr_decode(out, &again) == ret, "decode again");
    FUZZ_CHECK(again.magic == h.magic && again.version == h.version &&
                   again.type == h.type && again.status == h.status &&
                   again.body_len == h.body_len,
               "header fields after a round trip");
}

/* token[32] u8 engine[16] u16 n blob[n]: 51 + n bytes, n <= 1536. */
static int hello_model(const uint8_t *p, size_t n)
{
    return n >= 51 && p[HELLO_TOKEN_LEN_AT] <= 32 &&
           has_nul(p + HELLO_ENGINE_AT, HMAF_ENGINE_NAME_MAX) &&
           le(p + HELLO_BLOB_AT, 2) <= HMAF_BLOB_MAX &&
           n == 51 + le(p + HELLO_BLOB_AT, 2);
}

/* Encode m (a HELLO or WELCOME), check its header, compare the body. */
static void check_encoded(const uint8_t *msg, size_t len, uint8_t type,
                          const uint8_t *body, size_t body_len)
{
    struct hmaf_msg_hdr h;

    FUZZ_CHECK(len == HMAF_HDR_SIZE + body_len, "encoded %zu bytes", len);
    FUZZ_CHECK(hmaf__hdr_decode(msg, &h) == 0, "encoded header");
    FUZZ_CHECK(h.version == HMAF_PROTOCOL_VERSION && h.type == type &&
                   h.status == 0 && h.body_len == body_len,
               "encoded header fields");
    FUZZ_CHECK(memcmp(msg + HMAF_HDR_SIZE, body, body_len) == 0,
               "encode(decode(x)) != x");
}

static void fuzz_hello(const uint8_t *p, size_t n)
{
    struct hmaf_hello h, again;
    uint8_t msg[HMAF_MSG_MAX];
    int ret;

    memset(&h, 0xa5, sizeof(h));
    ret = hmaf__hello_decode(p, n, &h);
    FUZZ_CHECK((ret == 0) == hello_model(p, n), "accepts: %d", ret);
    FUZZ_CHECK(ret == 0 || ret == HMAF_EPROTO, "code %d", ret);
    if (n >= 51 && n <= 51 + HMAF_BLOB_MAX) {
        /* Whatever the verdict, the engine name is a C string. */
        FUZZ_CHECK(has_nul(h.engine, sizeof(h.engine)), "engine unterminated");
    }
    if (ret < 0) {
        return;
    }
    FUZZ_CHECK(h.token_len <= sizeof(h.token) &&
                   h.engine_blob.len <= HMAF_BLOB_MAX,
               "accepted out-of-range lengths");
    check_encoded(msg, hmaf__hello_encode(&h, msg, sizeof(msg)), HMAF_MSG_HELLO,
                  p, n);
    FUZZ_CHECK(hmaf__hello_decode(msg + HMAF_HDR_SIZE, n, &again) == 0,
               "re-decode");
    FUZZ_CHECK(memcmp(again.token, h.token, sizeof(h.token)) == 0 &&
                   again.token_len == h.token_len &&
                   memcmp(again.engine, h.engine, sizeof(h.engine)) == 0 &&
                   again.engine_blob.len == h.engine_blob.len &&
                   memcmp(again.engine_blob.data, h.engine_blob.data,
                          HMAF_BLOB_MAX) == 0,
               "hello fields after a round trip");
    FUZZ_CHECK(hmaf__hello_encode(&h, msg, n + HMAF_HDR_SIZE - 1) == 0,
               "encoded into too small a buffer");
}

/* engine[16] u16 a blob[a] u64 u64 u64 u32 u16 b export[b] u32:
 * 52 + a + b bytes, a and b <= 1536. */
static int welcome_model(const uint8_t *p, size_t n)
{
    size_t a, b;

    if (n < 52 || !has_nul(p, HMAF_ENGINE_NAME_MAX)) {
        return 0;
    }
    a = le(p + WELCOME_BLOB_AT, 2);
    if (a > HMAF_BLOB_MAX || n < WELCOME_EXPORT_AT + a + 2) {
        return 0;
    }
    b = le(p + WELCOME_EXPORT_AT + a, 2);
    return b <= HMAF_BLOB_MAX && n == 52 + a + b;
}

static int blob_eq(const struct hmaf_blob *a, const struct hmaf_blob *b)
{
    return a->len == b->len && memcmp(a->data, b->data, HMAF_BLOB_MAX) == 0;
}

static void fuzz_welcome(const uint8_t *p, size_t n)
{
    struct hmaf_welcome w, again;
    uint8_t msg[HMAF_MSG_MAX];
    int ret;

    memset(&w, 0xa5, sizeof(w));
    ret = hmaf__welcome_decode(p, n, &w);
    FUZZ_CHECK((ret == 0) == welcome_model(p, n), "accepts: %d", ret);
    FUZZ_CHECK(ret == 0 || ret == HMAF_EPROTO, "code %d", ret);
    if (n >= 52 && n <= 52 + 2 * HMAF_BLOB_MAX) {
        FUZZ_CHECK(has_nul(w.engine, sizeof(w.engine)), "engine unterminated");
    }
    if (ret < 0) {
        return;
    }
    check_encoded(msg, hmaf__welcome_encode(&w, msg, sizeof(msg)),
                  HMAF_MSG_WELCOME, p, n);
    FUZZ_CHECK(hmaf__welcome_decode(msg + HMAF_HDR_SIZE, n, &again) == 0,
               "re-decode");
    FUZZ_CHECK(memcmp(again.engine, w.engine, sizeof(w.engine)) == 0 &&
                   blob_eq(&again.engine_blob, &w.engine_blob) &&
                   again.session_id == w.session_id &&
                   again.mailbox_addr == w.mailbox_addr &&
                   again.mailbox_len == w.mailbox_len &&
                   again.mailbox_slots == w.mailbox_slots &&
                   blob_eq(&again.mailbox_export, &w.mailbox_export) &&
                   again.lease_us == w.lease_us,
               "welcome fields after a round trip");
    FUZZ_CHECK(hmaf__welcome_encode(&w, msg, n + HMAF_HDR_SIZE - 1) == 0,
               "encoded into too small a buffer");
}

static void fuzz_refusal(const uint8_t *p, size_t n)
{
    uint8_t buf[HMAF_HDR_SIZE + 1];
    struct hmaf_msg_hdr h;
    int status = (int)le(p, n < 4 ? n : 4);

    buf[HMAF_HDR_SIZE] = 0x5a;
    FUZZ_CHECK(hmaf__refusal_encode(status, buf) == HMAF_HDR_SIZE, "size");
    FUZZ_CHECK(buf[HMAF_HDR_SIZE] == 0x5a, "wrote past the header");
    FUZZ_CHECK(hmaf__hdr_decode(buf, &h) == 0, "refusal header");
    FUZZ_CHECK(h.version == HMAF_PROTOCOL_VERSION &&
                   h.type == HMAF_MSG_WELCOME && h.status == status &&
                   h.body_len == 0,
               "refusal fields");
}

/* Which codes a refusal may carry: those a dpu side can act on (a HELLO
 * that came too late, or waited longest of too many, is HMAF_ETIMEDOUT);
 * any other is HMAF_EPROTO on the wire. */
static int refusal_model(int why)
{
    return why == HMAF_EAUTH || why == HMAF_EVERSION || why == HMAF_EENGINE ||
                   why == HMAF_ENOSPC || why == HMAF_ENOMEM ||
                   why == HMAF_ETIMEDOUT || why == HMAF_EPIDNS
               ? why
               : HMAF_EPROTO;
}

/* The agent's refusal over a socket pair: one header with the code, the
 * end of the stream, one more refusal in the agent's counters. */
static void fuzz_refuse(const uint8_t *p, size_t n)
{
    static struct hmaf_agent a; /* only its counters are used */
    int why = (int)le(p, n < 4 ? n : 4), want = refusal_model(why), sv[2];
    struct hmaf_channel ch = {.fd = -1};
    uint8_t buf[HMAF_HDR_SIZE + 1];
    struct hmaf_msg_hdr h;
    uint64_t refused = a.stats.refused;

    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
               "socketpair");
    ch.fd = sv[0];
    hmaf__agent_refuse(&a, &ch, why);
    FUZZ_CHECK(ch.fd == -1, "the refused channel stays open");
    FUZZ_CHECK(recv(sv[1], buf, sizeof(buf), MSG_WAITALL) == HMAF_HDR_SIZE,
               "a refusal is one header, then the end");
    FUZZ_CHECK(hmaf__hdr_decode(buf, &h) == 0 &&
                   h.version == HMAF_PROTOCOL_VERSION &&
                   h.type == HMAF_MSG_WELCOME && h.body_len == 0,
               "refusal header");
    FUZZ_CHECK(h.status == want, "%s refused as %s, want %s",
               hmaf_err_name(why), hmaf_err_name(h.status),
               hmaf_err_name(want));
    FUZZ_CHECK(a.stats.refused == refused + 1 && a.stats.last_refusal == want,
               "counted %llu refusals, the last %s",
               (unsigned long long)(a.stats.refused - refused),
               hmaf_err_name(a.stats.last_refusal));
    close(sv[1]);
}

static void fuzz_token(const uint8_t *p, size_t n)
{
    struct fuzz_in in = {p, n};
    uint8_t a[32], b[32];
    uint8_t a_len = fuzz_u8(&in) % 40, b_len = fuzz_u8(&in) % 40;
    char s[41];
    struct hmaf_hello h;
    int ret;

    fuzz_take_bytes(&in, a, sizeof(a));
    fuzz_take_bytes(&in, b, sizeof(b));
    FUZZ_CHECK(hmaf__token_equal(a, a_len, b, b_len) ==
                   (a_len == b_len && memcmp(a, b, 32) == 0),
               "token_equal");
    FUZZ_CHECK(hmaf__token_equal(a, a_len, a, a_len) == 1, "reflexive");
    fuzz_take_bytes(&in, s, sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    memset(&h, 0xa5, sizeof(h));
    ret = hmaf__hello_set_token(&h, s);
    if (strlen(s) > 32) {
        FUZZ_CHECK(ret == HMAF_EINVAL, "long token accepted");
        return;
    }
    FUZZ_CHECK(ret == 0 && h.token_len == strlen(s), "token set");
    FUZZ_CHECK(memcmp(h.token, s, strlen(s)) == 0, "token bytes");
    for (size_t i = strlen(s); i < sizeof(h.token); i++) {
        FUZZ_CHECK(h.token[i] == 0, "token padding");
    }
}

/* ---- mailbox payloads ---- */

static void fuzz_req_register(const uint8_t *p, size_t n)
{
    struct hmaf_req_register r;
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    int ret = hmaf__req_register_decode(p, n, &r);
    /* 16 bytes, or 26 + 8 * count giving back count regions */
    uint64_t count = n >= 26 ? le(p + 24, 2) : 0;
    int model = n == 16 || (count >= 1 && count <= HMAF_REGISTER_GIVE_MAX &&
                            n == 26 + 8 * count);

    FUZZ_CHECK((ret == 0) == model, "accepts %zu bytes: %d", n, ret);
    if (ret == 0) {
        FUZZ_CHECK(r.addr == le64(p) && r.len == le64(p + 8), "fields");
        FUZZ_CHECK(r.give_count == (n == 16 ? 0 : count) &&
                       (n == 16 || r.give_epoch == le64(p + 16)),
                   "give-back count or epoch");
        for (uint16_t i = 0; i < r.give_count; i++) {
            FUZZ_CHECK(r.give_id[i] == le64(p + 26 + 8 * i), "id %u", i);
        }
        FUZZ_CHECK(hmaf__req_register_encode(&r, buf) == n &&
                       memcmp(buf, p, n) == 0,
                   "round trip");
    }
}

static void fuzz_resp_register(const uint8_t *p, size_t n)
{
    struct hmaf_resp_register r, again;
    uint8_t buf[HMAF_MBOX_RESP_MAX];
    size_t blob =
        n >= RESP_REGISTER_FIXED + 2 ? le(p + RESP_REGISTER_FIXED, 2) : 0;
    int model = n >= RESP_REGISTER_FIXED + 2 && blob <= HMAF_BLOB_MAX &&
                n == RESP_REGISTER_FIXED + 2 + blob;
    int ret = hmaf__resp_register_decode(p, n, &r);

    FUZZ_CHECK((ret == 0) == model, "accepts %zu bytes: %d", n, ret);
    FUZZ_CHECK(ret == 0 || ret == HMAF_EPROTO, "code %d", ret);
    if (ret < 0) {
        return;
    }
    FUZZ_CHECK(r.region_id == le64(p) && r.base == le64(p + 8) &&
                   r.len == le64(p + 16) && r.epoch == le64(p + 24) &&
                   r.access == p[32] && r.export_blob.len == blob,
               "fields");
    FUZZ_CHECK(hmaf__resp_register_encode(&r, buf) == n &&
                   memcmp(buf, p, n) == 0,
               "round trip");
    FUZZ_CHECK(hmaf__resp_register_decode(buf, n, &again) == 0 &&
                   again.region_id == r.region_id && again.base == r.base &&
                   again.len == r.len && again.epoch == r.epoch &&
                   again.access == r.access &&
                   again.export_blob.len == r.export_blob.len &&
                   memcmp(again.export_blob.data, r.export_blob.data, blob) ==
                       0,
               "decode again");
}

static void fuzz_req_deregister(const uint8_t *p, size_t n)
{
    struct hmaf_req_deregister r;
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    int ret = hmaf__req_deregister_decode(p, n, &r);

    uint16_t count = n >= 10 ? (uint16_t)(p[8] | p[9] << 8) : 0;

    FUZZ_CHECK((ret == 0) == (count >= 1 && count <= HMAF_DEREGISTER_IDS_MAX &&
                              n == 10 + 8u * count),
               "accepts %zu bytes: %d", n, ret);
    FUZZ_CHECK(ret == 0 || ret == HMAF_EPROTO, "code %d", ret);
    if (ret == 0) {
        FUZZ_CHECK(r.epoch == le64(p) && r.count == count, "fields");
        for (uint16_t i = 0; i < count; i++) {
            FUZZ_CHECK(r.region_id[i] == le64(p + 10 + 8 * i), "id %u", i);
        }
        FUZZ_CHECK(hmaf__req_deregister_encode(&r, buf) == n &&
                       memcmp(buf, p, n) == 0,
                   "round trip");
    }
}

static void fuzz_req_lookup(const uint8_t *p, size_t n)
{
    struct hmaf_req_lookup r;
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    int model = n == 64 && has_nul(p, 64);
    int ret = hmaf__req_lookup_decode(p, n, &r);

    FUZZ_CHECK((ret == 0) == model, "accepts %zu bytes: %d", n, ret);
    FUZZ_CHECK(ret == 0 || ret == HMAF_EPROTO, "code %d", ret);
    /* The agent only looks at the name on success, but a C string it is
     * in any case. */
    FUZZ_CHECK(has_nul(r.name, sizeof(r.name)), "name unterminated");
    if (ret == 0) {
        FUZZ_CHECK(hmaf__req_lookup_encode(&r, buf) == n &&
                       memcmp(buf, p, n) == 0,
                   "round trip");
        FUZZ_CHECK(strcmp(r.name, (const char *)p) == 0, "name");
    }
}

static void fuzz_resp_lookup(const uint8_t *p, size_t n)
{
    struct hmaf_resp_lookup r;
    uint8_t buf[HMAF_MBOX_RESP_MAX];
    int ret = hmaf__resp_lookup_decode(p, n, &r);

    FUZZ_CHECK((ret == 0) == (n == 16), "accepts %zu bytes: %d", n, ret);
    if (ret == 0) {
        FUZZ_CHECK(r.addr == le64(p) && r.len == le64(p + 8), "fields");
        FUZZ_CHECK(hmaf__resp_lookup_encode(&r, buf) == n &&
                       memcmp(buf, p, n) == 0,
                   "round trip");
    }
}

/* ---- mailbox words ---- */

static void fuzz_words(const uint8_t *p, size_t n)
{
    uint8_t b[8] = {0};
    uint64_t w;
    uint32_t seq;
    int status;

    memcpy(b, p, n < 8 ? n : 8);
    w = le64(b);
    seq = hmaf__mbox_word_seq(w);
    FUZZ_CHECK(seq == (uint32_t)w, "seq");
    /* A request word keeps bits 0-55; 56-63 are unused. */
    FUZZ_CHECK(
        hmaf__mbox_req_word(seq, hmaf__mbox_req_op(w), hmaf__mbox_req_len(w)) ==
            (w & 0x00ffffffffffffffull),
        "request word %016llx", (unsigned long long)w);
    FUZZ_CHECK(hmaf__mbox_req_op(w) == b[4] &&
                   hmaf__mbox_req_len(w) == le(b + 5, 2),
               "request fields");
    status = hmaf__mbox_resp_status(w);
    FUZZ_CHECK(status >= INT16_MIN && status <= INT16_MAX, "status range");
    FUZZ_CHECK(hmaf__mbox_resp_word(seq, status, hmaf__mbox_resp_len(w)) == w,
               "response word %016llx", (unsigned long long)w);
    FUZZ_CHECK(hmaf__mbox_resp_len(w) == le(b + 6, 2), "response length");
    /* Every HMAF code survives the 16 bits of a response word. */
    status = -(int)(le(b + 4, 2) % 4100);
    if (strcmp(hmaf_err_name(status), "HMAF_UNKNOWN") != 0) {
        FUZZ_CHECK(hmaf__mbox_resp_status(
                       hmaf__mbox_resp_word(seq, status, 0)) == status,
                   "code %d through a word", status);
    }
}

/* ---- the cursor ---- */

/* One get of k bytes (k from op) at the cursor, checked against buf. */
static void check_get(struct hmaf_wire *w, const uint8_t *buf, size_t len,
                      uint8_t op)
{
    size_t pos = w->pos, k = (size_t)1 << (op % 4);
    int was_ok = w->ok;
    uint8_t out[64];
    uint64_t v = 0;

    if (op & 0x80) {
        k = op & 0x3f;
        memset(out, 0xa5, sizeof(out));
        hmaf__wire_get_bytes(w, out, k);
    } else {
        v = hmaf__wire_get_uint(w, k);
    }
    FUZZ_CHECK(w->ok == (was_ok && k <= len - pos), "ok flag");
    FUZZ_CHECK(w->pos == (w->ok ? pos + k : pos) && w->pos <= len, "position");
    for (size_t i = 0; i < k; i++) {
        uint8_t got = op & 0x80 ? out[i] : (uint8_t)(v >> (8 * i));
        FUZZ_CHECK(got == (w->ok ? buf[pos + i] : 0),
                   "byte %zu of a get of %zu", i, k);
    }
}

/* A program of gets (the first bytes) over the input's tail, then puts
 * into a buffer of the tail's length. */
static void fuzz_cursor(const uint8_t *p, size_t n)
{
    size_t prog = n > 0 ? p[0] % 16 : 0;
    const uint8_t *buf = p + (prog + 1 < n ? prog + 1 : n);
    size_t len = (size_t)(p + n - buf);
    struct hmaf_wire w = hmaf__wire((void *)buf, len);
    uint8_t out[300];

    for (size_t i = 0; i < prog && i + 1 < n; i++) {
        check_get(&w, buf, len, p[i + 1]);
    }
    w = hmaf__wire(out, len < sizeof(out) ? len : sizeof(out));
    for (size_t i = 0; i < len; i++) {
        hmaf__wire_put_u32(&w, buf[i]);
        FUZZ_CHECK(w.pos <= w.len && w.ok == (w.pos == 4 * (i + 1)),
                   "put past the end");
    }
}

typedef void (*fuzz_fn)(const uint8_t *p, size_t n);

static const fuzz_fn targets[] = {
    fuzz_hdr,        fuzz_hello,        fuzz_welcome,       fuzz_refusal,
    fuzz_token,      fuzz_req_register, fuzz_resp_register, fuzz_req_deregister,
    fuzz_req_lookup, fuzz_resp_lookup,  fuzz_words,         fuzz_cursor,
    fuzz_refuse,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    size_t ntargets = sizeof(targets) / sizeof(targets[0]);

    if (!quiet) {
        fuzz_quiet_logs(); /* refusals log a warning */
        quiet = 1;
    }
    if (size == 0) {
        return 0;
    }
    targets[data[0] % ntargets](data + 1, size - 1);
    return 0;
}
