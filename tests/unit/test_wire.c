/*
 * The wire codecs: the little-endian cursor (util/wire.h), the bootstrap
 * handshake (proto/handshake.c) and the mailbox payloads and words
 * (proto/mailbox.c). Every decoder must refuse malformed input with
 * HMAF_EPROTO: the peer is not trusted.
 */
#include <string.h>

#include "check.h"
#include "proto/handshake.h"
#include "proto/mailbox.h"
#include "util/wire.h"

/* Body offsets of the fields the rejection tests corrupt. */
#define HELLO_TOKEN_LEN_AT    32
#define HELLO_ENGINE_AT       33
#define HELLO_BLOB_LEN_AT     (33 + HMAF_ENGINE_NAME_MAX)
#define WELCOME_ENGINE_AT     0
#define WELCOME_BLOB_LEN_AT   HMAF_ENGINE_NAME_MAX
/* In make_welcome's welcome, whose engine blob has 4 bytes. */
#define WELCOME_SESSION_AT    (HMAF_ENGINE_NAME_MAX + 2 + 4)
#define WELCOME_EXPORT_LEN_AT (WELCOME_SESSION_AT + 8 + 8 + 8 + 4)
/* Body sizes of make_hello(.., 4) and make_welcome. */
#define HELLO_SIZE   (HMAF_HELLO_BODY_MIN + 4)
#define WELCOME_SIZE (HMAF_WELCOME_BODY_MIN + 4 + WELCOME_EXPORT)
#define WELCOME_EXPORT 250 /* a card's export descriptor is about this */
#define RESP_REGISTER_FIXED   33

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void fill_blob(struct hmaf_blob *b, uint16_t len, unsigned salt)
{
    memset(b, 0, sizeof(*b));
    b->len = len;
    for (uint16_t i = 0; i < len; i++) {
        b->data[i] = (uint8_t)(i * 7 + salt);
    }
}

static void check_blob_eq(const struct hmaf_blob *a, const struct hmaf_blob *b)
{
    CHECK_EQ(a->len, b->len);
    CHECK(memcmp(a->data, b->data, a->len) == 0);
}

/* ---- util/wire.h ---- */

static void test_cursor_little_endian(void)
{
    uint8_t buf[15];
    static const uint8_t want[15] = {0x01, 0x03, 0x02, 0x07, 0x06,
                                     0x05, 0x04, 0x0f, 0x0e, 0x0d,
                                     0x0c, 0x0b, 0x0a, 0x09, 0x08};
    struct hmaf_wire w = hmaf__wire(buf, sizeof(buf));

    hmaf__wire_put_u8(&w, 0x01);
    hmaf__wire_put_u16(&w, 0x0203);
    hmaf__wire_put_u32(&w, 0x04050607);
    hmaf__wire_put_u64(&w, 0x08090a0b0c0d0e0full);
    CHECK(w.ok);
    CHECK_EQ(w.pos, sizeof(buf));
    CHECK(memcmp(buf, want, sizeof(buf)) == 0);

    w = hmaf__wire(buf, sizeof(buf));
    CHECK_EQ(hmaf__wire_get_u8(&w), 0x01);
    CHECK_EQ(hmaf__wire_get_u16(&w), 0x0203);
    CHECK_EQ(hmaf__wire_get_u32(&w), 0x04050607);
    CHECK(hmaf__wire_get_u64(&w) == 0x08090a0b0c0d0e0full);
    CHECK(w.ok);
}

/* Once a bound check fails the cursor stays bad and reads yield zeros. */
static void test_cursor_bounds(void)
{
    uint8_t buf[6] = {1, 2, 3, 4, 5, 6};
    uint8_t out[4] = {9, 9, 9, 9};
    struct hmaf_wire w = hmaf__wire(buf, sizeof(buf));

    CHECK_EQ(hmaf__wire_get_u32(&w), 0x04030201);
    CHECK_EQ(hmaf__wire_get_u32(&w), 0); /* 2 bytes left */
    CHECK(!w.ok);
    CHECK_EQ(hmaf__wire_get_u8(&w), 0); /* still bad: no partial reads */
    hmaf__wire_get_bytes(&w, out, sizeof(out));
    CHECK(out[0] == 0 && out[3] == 0);
    CHECK_EQ(w.pos, 4);

    w = hmaf__wire(buf, sizeof(buf));
    hmaf__wire_put_u64(&w, UINT64_MAX); /* too long: writes nothing */
    CHECK(!w.ok);
    CHECK_EQ(buf[0], 1);
    CHECK_EQ(buf[5], 6);
}

/* ---- handshake ---- */

static void test_hdr_round_trip(void)
{
    struct hmaf_msg_hdr in = {.magic = HMAF_WIRE_MAGIC,
                              .version = 0xbeef,
                              .type = HMAF_MSG_WELCOME,
                              .status = HMAF_EVERSION,
                              .body_len = 0x01020304};
    struct hmaf_msg_hdr out;
    uint8_t buf[HMAF_HDR_SIZE];

    memset(&out, 0xff, sizeof(out));
    hmaf__hdr_encode(&in, buf);
    CHECK_EQ(buf[7], 0); /* the pad byte */
    CHECK_OK(hmaf__hdr_decode(buf, &out));
    CHECK_EQ(out.magic, HMAF_WIRE_MAGIC);
    CHECK_EQ(out.version, 0xbeef);
    CHECK_EQ(out.type, HMAF_MSG_WELCOME);
    CHECK_EQ(out.status, HMAF_EVERSION);
    CHECK_EQ(out.body_len, 0x01020304);
}

/* The header comment promises the four bytes "HMAF" on the wire. */
static void test_hdr_magic_bytes(void)
{
    struct hmaf_msg_hdr in = {.magic = HMAF_WIRE_MAGIC};
    uint8_t buf[HMAF_HDR_SIZE];

    hmaf__hdr_encode(&in, buf);
    CHECK(memcmp(buf, "HMAF", 4) == 0);
}

static void test_hdr_wrong_magic(void)
{
    struct hmaf_msg_hdr hdr = {.magic = HMAF_WIRE_MAGIC,
                               .version = HMAF_PROTOCOL_VERSION,
                               .type = HMAF_MSG_HELLO};
    struct hmaf_msg_hdr out;
    uint8_t buf[HMAF_HDR_SIZE];

    hmaf__hdr_encode(&hdr, buf);
    for (int i = 0; i < 4; i++) {
        buf[i] ^= 0x20;
        CHECK_ERR(hmaf__hdr_decode(buf, &out), HMAF_EPROTO);
        buf[i] ^= 0x20;
    }
    CHECK_OK(hmaf__hdr_decode(buf, &out));
}

static void test_body_sizes(void)
{
    CHECK_EQ(hmaf__msg_body_min(HMAF_MSG_HELLO), HMAF_HELLO_BODY_MIN);
    CHECK_EQ(hmaf__msg_body_max(HMAF_MSG_HELLO), HMAF_HELLO_BODY_MAX);
    CHECK_EQ(hmaf__msg_body_min(HMAF_MSG_WELCOME), HMAF_WELCOME_BODY_MIN);
    CHECK_EQ(hmaf__msg_body_max(HMAF_MSG_WELCOME), HMAF_WELCOME_BODY_MAX);
    CHECK_EQ(HMAF_HELLO_BODY_MIN, 51);
    CHECK_EQ(HMAF_WELCOME_BODY_MIN, 52);
    CHECK_EQ(HMAF_MSG_MAX, HMAF_HDR_SIZE + 52 + 2 * HMAF_BLOB_MAX);
    CHECK(HMAF_MSG_MAX <= 4080); /* the comch message size usually quoted */
    for (unsigned t = 0; t < 256; t++) {
        if (t != HMAF_MSG_HELLO && t != HMAF_MSG_WELCOME) {
            CHECK_EQ(hmaf__msg_body_min((uint8_t)t), 0);
            CHECK_EQ(hmaf__msg_body_max((uint8_t)t), 0);
        }
    }
}

static void make_hello(struct hmaf_hello *h, const char *token,
                       uint16_t blob_len)
{
    memset(h, 0, sizeof(*h));
    CHECK_OK(hmaf__hello_set_token(h, token));
    strcpy(h->engine, "cma");
    fill_blob(&h->engine_blob, blob_len, 3);
}

/* Encode h and check the header; returns the body, of
 * HMAF_HELLO_BODY_MIN + the blob's length bytes. */
static const uint8_t *encode_hello(const struct hmaf_hello *h, uint8_t *buf)
{
    struct hmaf_msg_hdr hdr;
    size_t size = HMAF_HELLO_BODY_MIN + h->engine_blob.len;
    size_t n = hmaf__hello_encode(h, buf, HMAF_MSG_MAX);

    CHECK_EQ(n, HMAF_HDR_SIZE + size);
    CHECK_OK(hmaf__hdr_decode(buf, &hdr));
    CHECK_EQ(hdr.version, HMAF_PROTOCOL_VERSION);
    CHECK_EQ(hdr.type, HMAF_MSG_HELLO);
    CHECK_EQ(hdr.status, 0);
    CHECK_EQ(hdr.body_len, size);
    return buf + HMAF_HDR_SIZE;
}

static void check_hello_round_trip(const char *token, uint16_t blob_len)
{
    struct hmaf_hello in, out;
    uint8_t buf[HMAF_MSG_MAX];
    const uint8_t *body;

    make_hello(&in, token, blob_len);
    body = encode_hello(&in, buf);
    memset(&out, 0xaa, sizeof(out));
    CHECK_OK(hmaf__hello_decode(body, HMAF_HELLO_BODY_MIN + blob_len, &out));
    CHECK_EQ(out.token_len, strlen(token));
    CHECK(memcmp(out.token, in.token, sizeof(in.token)) == 0);
    CHECK(strcmp(out.engine, "cma") == 0);
    check_blob_eq(&out.engine_blob, &in.engine_blob);
}

static void test_hello_round_trip(void)
{
    check_hello_round_trip("secret", 4);
    check_hello_round_trip("", 0);
    check_hello_round_trip("x", 250);
    check_hello_round_trip("y", 1024);
    check_hello_round_trip("0123456789abcdef0123456789abcdef", HMAF_BLOB_MAX);
}

static void test_hello_set_token(void)
{
    struct hmaf_hello h;

    memset(&h, 0x55, sizeof(h));
    CHECK_OK(hmaf__hello_set_token(&h, "abc"));
    CHECK_EQ(h.token_len, 3);
    CHECK(memcmp(h.token, "abc", 3) == 0);
    CHECK_EQ(h.token[3], 0); /* padded with zeros */
    CHECK_EQ(h.token[31], 0);
    CHECK_OK(hmaf__hello_set_token(&h, NULL));
    CHECK_EQ(h.token_len, 0);
    CHECK_OK(hmaf__hello_set_token(&h, "0123456789abcdef0123456789abcdef"));
    CHECK_EQ(h.token_len, 32);
    CHECK_ERR(hmaf__hello_set_token(&h, "0123456789abcdef0123456789abcdefX"),
              HMAF_EINVAL);
}

static void test_hello_encode_cap(void)
{
    struct hmaf_hello h;
    uint8_t buf[HMAF_MSG_MAX];

    make_hello(&h, "t", 4);
    CHECK_EQ(hmaf__hello_encode(&h, buf, HMAF_HDR_SIZE - 1), 0);
    CHECK_EQ(hmaf__hello_encode(&h, buf, HMAF_HDR_SIZE), 0);
    CHECK_EQ(hmaf__hello_encode(&h, buf, HMAF_HDR_SIZE + HELLO_SIZE - 1), 0);
    CHECK_EQ(hmaf__hello_encode(&h, buf, HMAF_HDR_SIZE + HELLO_SIZE),
             HMAF_HDR_SIZE + HELLO_SIZE);
    /* A blob longer than the protocol carries is never encoded. */
    h.engine_blob.len = HMAF_BLOB_MAX + 1;
    CHECK_EQ(hmaf__hello_encode(&h, buf, HMAF_MSG_MAX), 0);
}

/* A valid hello body with a 4-byte blob, encoded, copied into body. */
static void valid_hello_body(uint8_t *body)
{
    struct hmaf_hello h;
    uint8_t buf[HMAF_MSG_MAX];

    make_hello(&h, "secret", 4);
    memset(body, 0, HMAF_HELLO_BODY_MAX + 2);
    memcpy(body, encode_hello(&h, buf), HELLO_SIZE);
}

static void test_hello_rejects(void)
{
    uint8_t body[HMAF_HELLO_BODY_MAX + 2];
    struct hmaf_hello out;

    valid_hello_body(body);
    CHECK_OK(hmaf__hello_decode(body, HELLO_SIZE, &out));
    CHECK_ERR(hmaf__hello_decode(body, HELLO_SIZE - 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__hello_decode(body, HELLO_SIZE + 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__hello_decode(body, HMAF_HELLO_BODY_MIN - 1, &out),
              HMAF_EPROTO);
    CHECK_ERR(hmaf__hello_decode(body, 0, &out), HMAF_EPROTO);

    body[HELLO_TOKEN_LEN_AT] = 32;
    CHECK_OK(hmaf__hello_decode(body, HELLO_SIZE, &out));
    body[HELLO_TOKEN_LEN_AT] = 33;
    CHECK_ERR(hmaf__hello_decode(body, HELLO_SIZE, &out), HMAF_EPROTO);
    body[HELLO_TOKEN_LEN_AT] = 255;
    CHECK_ERR(hmaf__hello_decode(body, HELLO_SIZE, &out), HMAF_EPROTO);

    valid_hello_body(body);
    memset(body + HELLO_ENGINE_AT, 'a', HMAF_ENGINE_NAME_MAX);
    CHECK_ERR(hmaf__hello_decode(body, HELLO_SIZE, &out), HMAF_EPROTO);
    CHECK(memchr(out.engine, '\0', sizeof(out.engine)) != NULL);

    /* The blob's length must account for the body exactly. */
    valid_hello_body(body);
    put_le16(body + HELLO_BLOB_LEN_AT, 5);
    CHECK_ERR(hmaf__hello_decode(body, HELLO_SIZE, &out), HMAF_EPROTO);
    CHECK_OK(hmaf__hello_decode(body, HELLO_SIZE + 1, &out));
    CHECK_EQ(out.engine_blob.len, 5);
    put_le16(body + HELLO_BLOB_LEN_AT, 3);
    CHECK_ERR(hmaf__hello_decode(body, HELLO_SIZE, &out), HMAF_EPROTO);
    put_le16(body + HELLO_BLOB_LEN_AT, HMAF_BLOB_MAX);
    CHECK_OK(hmaf__hello_decode(body, HMAF_HELLO_BODY_MAX, &out));
    put_le16(body + HELLO_BLOB_LEN_AT, HMAF_BLOB_MAX + 1);
    CHECK_ERR(hmaf__hello_decode(body, HMAF_HELLO_BODY_MAX + 1, &out),
              HMAF_EPROTO);
    put_le16(body + HELLO_BLOB_LEN_AT, 0xffff);
    CHECK_ERR(hmaf__hello_decode(body, HMAF_HELLO_BODY_MAX, &out),
              HMAF_EPROTO);
}

static void make_welcome(struct hmaf_welcome *w)
{
    memset(w, 0, sizeof(*w));
    strcpy(w->engine, "abcdefghijklmno"); /* 15 chars: the longest */
    fill_blob(&w->engine_blob, 4, 5);
    w->session_id = 0x0102030405060708ull;
    w->mailbox_addr = 0xffff800012345678ull;
    w->mailbox_len = 0x8000000000000001ull;
    w->mailbox_slots = 0xfedcba98u;
    fill_blob(&w->mailbox_export, WELCOME_EXPORT, 9);
    w->lease_us = 0x11223344u;
}

static const uint8_t *encode_welcome(const struct hmaf_welcome *w, uint8_t *buf)
{
    struct hmaf_msg_hdr hdr;
    size_t size = HMAF_WELCOME_BODY_MIN + w->engine_blob.len +
                  w->mailbox_export.len;
    size_t n = hmaf__welcome_encode(w, buf, HMAF_MSG_MAX);

    CHECK_EQ(n, HMAF_HDR_SIZE + size);
    CHECK_OK(hmaf__hdr_decode(buf, &hdr));
    CHECK_EQ(hdr.version, HMAF_PROTOCOL_VERSION);
    CHECK_EQ(hdr.type, HMAF_MSG_WELCOME);
    CHECK_EQ(hdr.status, 0);
    CHECK_EQ(hdr.body_len, size);
    return buf + HMAF_HDR_SIZE;
}

static void check_welcome_eq(const struct hmaf_welcome *out,
                             const struct hmaf_welcome *in)
{
    CHECK(strcmp(out->engine, in->engine) == 0);
    check_blob_eq(&out->engine_blob, &in->engine_blob);
    CHECK(out->session_id == in->session_id);
    CHECK(out->mailbox_addr == in->mailbox_addr);
    CHECK(out->mailbox_len == in->mailbox_len);
    CHECK(out->mailbox_slots == in->mailbox_slots);
    check_blob_eq(&out->mailbox_export, &in->mailbox_export);
    CHECK(out->lease_us == in->lease_us);
}

static void test_welcome_round_trip(void)
{
    struct hmaf_welcome in, out;
    uint8_t buf[HMAF_MSG_MAX];
    const uint8_t *body;

    make_welcome(&in);
    body = encode_welcome(&in, buf);
    CHECK_EQ(body[WELCOME_SESSION_AT], 0x08); /* little-endian */
    CHECK_EQ(body[WELCOME_SESSION_AT + 7], 0x01);
    CHECK_EQ(body[WELCOME_EXPORT_LEN_AT], WELCOME_EXPORT);
    memset(&out, 0xaa, sizeof(out));
    CHECK_OK(hmaf__welcome_decode(body, WELCOME_SIZE, &out));
    check_welcome_eq(&out, &in);
    CHECK_EQ(hmaf__welcome_encode(&in, buf, HMAF_HDR_SIZE + WELCOME_SIZE - 1),
             0);

    /* Both blobs at the protocol's bound: the largest message. */
    fill_blob(&in.engine_blob, HMAF_BLOB_MAX, 1);
    fill_blob(&in.mailbox_export, HMAF_BLOB_MAX, 2);
    body = encode_welcome(&in, buf);
    CHECK_OK(hmaf__welcome_decode(body, HMAF_WELCOME_BODY_MAX, &out));
    check_welcome_eq(&out, &in);
    CHECK_EQ(hmaf__welcome_encode(&in, buf, HMAF_MSG_MAX - 1), 0);
    in.mailbox_export.len = HMAF_BLOB_MAX + 1;
    CHECK_EQ(hmaf__welcome_encode(&in, buf, sizeof(buf)), 0);
}

static void valid_welcome_body(uint8_t *body)
{
    struct hmaf_welcome w;
    uint8_t buf[HMAF_MSG_MAX];

    make_welcome(&w);
    memset(body, 0, WELCOME_SIZE + 2);
    memcpy(body, encode_welcome(&w, buf), WELCOME_SIZE);
}

static void test_welcome_rejects(void)
{
    uint8_t body[WELCOME_SIZE + 2];
    struct hmaf_welcome out;
    const size_t size = WELCOME_SIZE;

    valid_welcome_body(body);
    CHECK_OK(hmaf__welcome_decode(body, size, &out));
    CHECK_ERR(hmaf__welcome_decode(body, size - 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__welcome_decode(body, size + 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__welcome_decode(body, HELLO_SIZE, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__welcome_decode(body, 0, &out), HMAF_EPROTO);

    body[WELCOME_ENGINE_AT + HMAF_ENGINE_NAME_MAX - 1] = 'p';
    CHECK_ERR(hmaf__welcome_decode(body, size, &out), HMAF_EPROTO);
    CHECK(memchr(out.engine, '\0', sizeof(out.engine)) != NULL);

    valid_welcome_body(body);
    put_le16(body + WELCOME_BLOB_LEN_AT, HMAF_BLOB_MAX + 1);
    CHECK_ERR(hmaf__welcome_decode(body, size, &out), HMAF_EPROTO);
    put_le16(body + WELCOME_BLOB_LEN_AT, 5); /* shifts every later field */
    CHECK_ERR(hmaf__welcome_decode(body, size, &out), HMAF_EPROTO);

    valid_welcome_body(body);
    put_le16(body + WELCOME_EXPORT_LEN_AT, HMAF_BLOB_MAX + 1);
    CHECK_ERR(hmaf__welcome_decode(body, size, &out), HMAF_EPROTO);
    put_le16(body + WELCOME_EXPORT_LEN_AT, WELCOME_EXPORT + 1);
    CHECK_ERR(hmaf__welcome_decode(body, size, &out), HMAF_EPROTO);
    CHECK_OK(hmaf__welcome_decode(body, size + 1, &out));
    put_le16(body + WELCOME_EXPORT_LEN_AT, WELCOME_EXPORT - 1);
    CHECK_ERR(hmaf__welcome_decode(body, size, &out), HMAF_EPROTO);
}

static void test_refusal(void)
{
    static const int statuses[] = {HMAF_EAUTH, HMAF_EVERSION, HMAF_EENGINE,
                                   HMAF_EPIDNS, HMAF_EINVAL};
    uint8_t buf[HMAF_HDR_SIZE + 1];
    struct hmaf_msg_hdr hdr;

    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        buf[HMAF_HDR_SIZE] = 0x5a;
        CHECK_EQ(hmaf__refusal_encode(statuses[i], buf), HMAF_HDR_SIZE);
        CHECK_EQ(buf[HMAF_HDR_SIZE], 0x5a); /* nothing past the header */
        CHECK_OK(hmaf__hdr_decode(buf, &hdr));
        CHECK_EQ(hdr.version, HMAF_PROTOCOL_VERSION);
        CHECK_EQ(hdr.type, HMAF_MSG_WELCOME);
        CHECK_EQ(hdr.status, statuses[i]);
        CHECK_EQ(hdr.body_len, 0);
    }
}

static void test_token_equal(void)
{
    uint8_t a[32] = "correct horse", b[32] = "correct horse";
    uint8_t zero_a[32] = {0}, zero_b[32] = {0};
    size_t n = strlen("correct horse");

    CHECK_EQ(hmaf__token_equal(a, n, b, n), 1);
    CHECK_EQ(hmaf__token_equal(zero_a, 0, zero_b, 0), 1);
    CHECK_EQ(hmaf__token_equal(a, n, b, n - 1), 0);
    CHECK_EQ(hmaf__token_equal(a, n, b, n + 1), 0);
    CHECK_EQ(hmaf__token_equal(zero_a, 0, zero_b, 32), 0);
    b[0] ^= 1;
    CHECK_EQ(hmaf__token_equal(a, n, b, n), 0);
    b[0] ^= 1;
    b[n - 1] ^= 0x80;
    CHECK_EQ(hmaf__token_equal(a, n, b, n), 0);
    b[n - 1] ^= 0x80;
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    CHECK_EQ(hmaf__token_equal(a, 32, b, 32), 1);
    b[31] = 'y';
    CHECK_EQ(hmaf__token_equal(a, 32, b, 32), 0);
}

/* ---- mailbox payloads ---- */

static void test_req_register(void)
{
    struct hmaf_req_register in = {.addr = 0x00007fff12345678ull,
                                   .len = 0x8000000000000000ull};
    struct hmaf_req_register out;
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    size_t n = hmaf__req_register_encode(&in, buf);

    CHECK_EQ(n, 16);
    CHECK_EQ(buf[0], 0x78);
    CHECK_OK(hmaf__req_register_decode(buf, n, &out));
    CHECK(out.addr == in.addr && out.len == in.len);
    CHECK_ERR(hmaf__req_register_decode(buf, n - 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__req_register_decode(buf, n + 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__req_register_decode(buf, 0, &out), HMAF_EPROTO);
}

/* A REGISTER that gives regions back: 26 + 8 * count bytes, the count 1
 * to HMAF_REGISTER_GIVE_MAX and agreeing with the length. */
static void test_req_register_give(void)
{
    struct hmaf_req_register in = {.addr = 4096, .len = 64, .give_epoch = 7};
    struct hmaf_req_register out;
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    size_t n;

    in.give_count = 1;
    in.give_id[0] = 0x1122334455667788ull;
    n = hmaf__req_register_encode(&in, buf);
    CHECK_EQ(n, 34);
    CHECK_EQ(buf[16], 7);
    CHECK_EQ(buf[24], 1);
    CHECK_EQ(buf[26], 0x88);
    CHECK_OK(hmaf__req_register_decode(buf, n, &out));
    CHECK(out.addr == 4096 && out.len == 64 && out.give_epoch == 7 &&
          out.give_count == 1 && out.give_id[0] == in.give_id[0]);
    CHECK_ERR(hmaf__req_register_decode(buf, n - 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__req_register_decode(buf, n + 8, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__req_register_decode(buf, 26, &out), HMAF_EPROTO);
    buf[24] = 0; /* a count of 0 with the ids */
    CHECK_ERR(hmaf__req_register_decode(buf, n, &out), HMAF_EPROTO);
    CHECK_EQ(out.give_count, 0);
    for (uint16_t i = 0; i < HMAF_REGISTER_GIVE_MAX; i++) {
        in.give_id[i] = i;
    }
    in.give_count = HMAF_REGISTER_GIVE_MAX;
    n = hmaf__req_register_encode(&in, buf);
    CHECK_EQ(n, 26 + 8 * HMAF_REGISTER_GIVE_MAX);
    CHECK(n <= HMAF_MBOX_REQ_MAX);
    CHECK_OK(hmaf__req_register_decode(buf, n, &out));
    CHECK_EQ(out.give_count, HMAF_REGISTER_GIVE_MAX);
    CHECK_EQ(out.give_id[HMAF_REGISTER_GIVE_MAX - 1],
             HMAF_REGISTER_GIVE_MAX - 1);
    buf[24] = HMAF_REGISTER_GIVE_MAX + 1; /* one past what fits */
    CHECK_ERR(hmaf__req_register_decode(buf, n + 8, &out), HMAF_EPROTO);
    in.give_count = HMAF_REGISTER_GIVE_MAX + 1;
    CHECK_EQ(hmaf__req_register_encode(&in, buf), 0);
}

static void make_resp_register(struct hmaf_resp_register *r, uint16_t blob)
{
    memset(r, 0, sizeof(*r));
    r->region_id = 42;
    r->base = 0x00007f0000001000ull;
    r->len = 0x0000000100000000ull;
    r->epoch = UINT64_MAX - 1;
    r->access = 3;
    fill_blob(&r->export_blob, blob, 11);
}

static void check_resp_register_round_trip(uint16_t blob)
{
    struct hmaf_resp_register in, out;
    uint8_t buf[HMAF_MBOX_RESP_MAX + 1];
    size_t n;

    make_resp_register(&in, blob);
    n = hmaf__resp_register_encode(&in, buf);
    CHECK_EQ(n, RESP_REGISTER_FIXED + 2 + blob);
    CHECK(n <= HMAF_MBOX_RESP_MAX);
    memset(&out, 0xaa, sizeof(out));
    CHECK_OK(hmaf__resp_register_decode(buf, n, &out));
    CHECK(out.region_id == in.region_id && out.base == in.base);
    CHECK(out.len == in.len && out.epoch == in.epoch);
    CHECK_EQ(out.access, in.access);
    check_blob_eq(&out.export_blob, &in.export_blob);
    CHECK_ERR(hmaf__resp_register_decode(buf, n - 1, &out), HMAF_EPROTO);
    buf[n] = 0;
    CHECK_ERR(hmaf__resp_register_decode(buf, n + 1, &out), HMAF_EPROTO);
}

static void test_resp_register(void)
{
    uint8_t buf[HMAF_MBOX_RESP_MAX];
    struct hmaf_resp_register r, out;
    size_t n;

    check_resp_register_round_trip(0);
    check_resp_register_round_trip(4);
    check_resp_register_round_trip(HMAF_BLOB_MAX);

    make_resp_register(&r, 8);
    n = hmaf__resp_register_encode(&r, buf);
    CHECK_ERR(hmaf__resp_register_decode(buf, RESP_REGISTER_FIXED, &out),
              HMAF_EPROTO); /* no blob length */
    CHECK_ERR(hmaf__resp_register_decode(buf, 10, &out), HMAF_EPROTO);
    /* A blob length past HMAF_BLOB_MAX, even with the bytes present. */
    memset(buf + n, 0, sizeof(buf) - n);
    put_le16(buf + RESP_REGISTER_FIXED, HMAF_BLOB_MAX + 1);
    CHECK_ERR(hmaf__resp_register_decode(
                  buf, RESP_REGISTER_FIXED + 2 + HMAF_BLOB_MAX + 1, &out),
              HMAF_EPROTO);
    put_le16(buf + RESP_REGISTER_FIXED, 0xffff);
    CHECK_ERR(hmaf__resp_register_decode(buf, sizeof(buf), &out), HMAF_EPROTO);
}

static void check_req_deregister_round_trip(uint16_t count)
{
    struct hmaf_req_deregister in = {.epoch = 0x1122334455667788ull,
                                     .count = count};
    struct hmaf_req_deregister out;
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    size_t n;

    for (uint16_t i = 0; i < count; i++) {
        in.region_id[i] = 0xa1b2c3d4e5f60718ull + i * 0x101;
    }
    n = hmaf__req_deregister_encode(&in, buf);
    CHECK_EQ(n, 10 + 8u * count);
    CHECK(n <= HMAF_MBOX_REQ_MAX);
    CHECK_OK(hmaf__req_deregister_decode(buf, n, &out));
    CHECK(out.epoch == in.epoch);
    CHECK_EQ(out.count, count);
    for (uint16_t i = 0; i < count; i++) {
        CHECK(out.region_id[i] == in.region_id[i]);
    }
    CHECK_ERR(hmaf__req_deregister_decode(buf, n - 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__req_deregister_decode(buf, n + 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__req_deregister_decode(buf, n - 8, &out), HMAF_EPROTO);
}

static void test_req_deregister(void)
{
    struct hmaf_req_deregister in = {.epoch = 7, .count = 1};
    struct hmaf_req_deregister out;
    uint8_t buf[HMAF_MBOX_REQ_MAX] = {0};

    check_req_deregister_round_trip(1);
    check_req_deregister_round_trip(2);
    check_req_deregister_round_trip(HMAF_DEREGISTER_IDS_MAX);
    /* A count the message cannot carry is not encoded, nor decoded. */
    in.count = 0;
    CHECK_EQ(hmaf__req_deregister_encode(&in, buf), 0);
    in.count = HMAF_DEREGISTER_IDS_MAX + 1;
    CHECK_EQ(hmaf__req_deregister_encode(&in, buf), 0);
    CHECK_ERR(hmaf__req_deregister_decode(buf, 10, &out), HMAF_EPROTO);
    put_le16(buf + 8, HMAF_DEREGISTER_IDS_MAX + 1);
    CHECK_ERR(hmaf__req_deregister_decode(
                  buf, 10 + 8 * (HMAF_DEREGISTER_IDS_MAX + 1), &out),
              HMAF_EPROTO);
    put_le16(buf + 8, 0xffff);
    CHECK_ERR(hmaf__req_deregister_decode(buf, sizeof(buf), &out),
              HMAF_EPROTO);
    CHECK_ERR(hmaf__req_deregister_decode(buf, 16, &out),
              HMAF_EPROTO); /* protocol 3's */
}

static void test_req_lookup(void)
{
    struct hmaf_req_lookup in, out;
    uint8_t buf[HMAF_MBOX_REQ_MAX];
    size_t n;

    memset(&in, 0, sizeof(in));
    strcpy(in.name, "my-root");
    n = hmaf__req_lookup_encode(&in, buf);
    CHECK_EQ(n, 64);
    CHECK_OK(hmaf__req_lookup_decode(buf, n, &out));
    CHECK(strcmp(out.name, "my-root") == 0);
    memset(in.name, 'r', sizeof(in.name) - 1); /* 63 chars: the longest */
    n = hmaf__req_lookup_encode(&in, buf);
    CHECK_OK(hmaf__req_lookup_decode(buf, n, &out));
    CHECK_EQ(strlen(out.name), 63);

    CHECK_ERR(hmaf__req_lookup_decode(buf, n - 1, &out), HMAF_EPROTO);
    buf[n] = 0;
    CHECK_ERR(hmaf__req_lookup_decode(buf, n + 1, &out), HMAF_EPROTO);
    buf[n - 1] = 'r'; /* no NUL anywhere */
    CHECK_ERR(hmaf__req_lookup_decode(buf, n, &out), HMAF_EPROTO);
    CHECK(memchr(out.name, '\0', sizeof(out.name)) != NULL);
}

static void test_resp_lookup(void)
{
    struct hmaf_resp_lookup in = {.addr = 0x7ffdeadbeef0ull, .len = 4096};
    struct hmaf_resp_lookup out;
    uint8_t buf[HMAF_MBOX_RESP_MAX];
    size_t n = hmaf__resp_lookup_encode(&in, buf);

    CHECK_EQ(n, 16);
    CHECK_OK(hmaf__resp_lookup_decode(buf, n, &out));
    CHECK(out.addr == in.addr && out.len == in.len);
    CHECK_ERR(hmaf__resp_lookup_decode(buf, n - 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__resp_lookup_decode(buf, n + 1, &out), HMAF_EPROTO);
    CHECK_ERR(hmaf__resp_lookup_decode(buf, 8, &out), HMAF_EPROTO);
}

/* ---- mailbox words ---- */

static void check_req_word(uint32_t seq, uint8_t op, uint16_t len)
{
    uint64_t w = hmaf__mbox_req_word(seq, op, len);

    CHECK_EQ(hmaf__mbox_word_seq(w), seq);
    CHECK_EQ(hmaf__mbox_req_op(w), op);
    CHECK_EQ(hmaf__mbox_req_len(w), len);
    CHECK_EQ(w >> 56, 0); /* bits 56-63 unused */
}

static void check_resp_word(uint32_t seq, int status, uint16_t len)
{
    uint64_t w = hmaf__mbox_resp_word(seq, status, len);

    CHECK_EQ(hmaf__mbox_word_seq(w), seq);
    CHECK_EQ(hmaf__mbox_resp_status(w), status);
    CHECK_EQ(hmaf__mbox_resp_len(w), len);
}

static void test_words(void)
{
    CHECK(hmaf__mbox_req_word(1, 2, 3) == (1ull | 2ull << 32 | 3ull << 40));
    check_req_word(1, HMAF_OP_PING, 0);
    check_req_word(UINT32_MAX, HMAF_OP_LOOKUP, HMAF_MBOX_REQ_MAX);
    check_req_word(0x80000001u, 0xff, 0xffff);

    CHECK(hmaf__mbox_resp_word(7, -1, 0) == (7ull | 0xffffull << 32));
    check_resp_word(1, 0, 0);
    check_resp_word(UINT32_MAX, HMAF_EAUTH, 0xffff); /* -4001 */
    check_resp_word(5, HMAF_EADDRESS, HMAF_MBOX_RESP_MAX);
    check_resp_word(9, HMAF_EINVAL, 35);
    check_resp_word(0x12345678u, HMAF_EFAULT, 1);
    check_resp_word(2, -32768, 0);
    check_resp_word(3, 32767, 0);
}

static void test_layout(void)
{
    CHECK_EQ(hmaf__mbox_size(0), HMAF_MBOX_SLOTS_OFFSET);
    CHECK_EQ(hmaf__mbox_size(2),
             HMAF_MBOX_SLOTS_OFFSET + 2 * HMAF_MBOX_SLOT_SIZE);
    CHECK_EQ(hmaf__mbox_slot_offset(1),
             HMAF_MBOX_SLOTS_OFFSET + HMAF_MBOX_SLOT_SIZE);
    CHECK(HMAF_MBOX_REQ_PAYLOAD + HMAF_MBOX_REQ_MAX <= HMAF_MBOX_RESP_WORD);
    CHECK(RESP_REGISTER_FIXED + 2 + HMAF_BLOB_MAX <= HMAF_MBOX_RESP_MAX);
}

int main(void)
{
    test_cursor_little_endian();
    test_cursor_bounds();
    test_hdr_round_trip();
    test_hdr_wrong_magic();
    test_body_sizes();
    test_hello_round_trip();
    test_hello_set_token();
    test_hello_encode_cap();
    test_hello_rejects();
    test_welcome_round_trip();
    test_welcome_rejects();
    test_refusal();
    test_token_equal();
    test_req_register();
    test_req_register_give();
    test_resp_register();
    test_req_deregister();
    test_req_lookup();
    test_resp_lookup();
    test_words();
    test_layout();
    test_hdr_magic_bytes();
    printf("test_wire: ok\n");
    return 0;
}
