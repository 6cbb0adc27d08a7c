/*
 * The bootstrap handshake, the only traffic a channel carries.
 *
 * The dpu side sends HELLO, the host answers WELCOME (or a refusal), then
 * the channel falls silent. Both messages start with the same 16-byte
 * header, frozen across protocol versions so that any two versions can at
 * least tell each other they differ:
 *
 *   u32 magic "HMAF" | u16 version | u8 type | u8 0 | i32 status | u32 body_len
 *
 * All integers are little-endian. A refusal is a WELCOME header with a
 * negative status and no body.
 *
 * Bodies (protocol 3); every blob is a u16 length and that many bytes:
 *
 *   HELLO    token[32] | u8 token_len | engine[16] | u16 n | blob[n]
 *   WELCOME  engine[16] | u16 n | engine_blob[n] | u64 session_id |
 *            u64 mailbox_addr | u64 mailbox_len | u32 mailbox_slots |
 *            u16 m | mailbox_export[m] | u32 lease_us
 *
 * body_len is exactly what the fields add up to. A blob is at most
 * HMAF_BLOB_MAX bytes here; each side also holds it to its engine's
 * limits.max_blob (core/bootstrap.c, host/session.c), and a longer one
 * from the peer is a protocol error.
 */
#ifndef HMAF_PROTO_HANDSHAKE_H
#define HMAF_PROTO_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#define HMAF_WIRE_MAGIC 0x46414d48u /* bytes "HMAF" read as little-endian u32 */
#define HMAF_HDR_SIZE 16
#define HMAF_ENGINE_NAME_MAX 16
/* The protocol's bound on one blob: no engine's limits.max_blob may
 * exceed it (the registry refuses such an engine). An export descriptor
 * of a real card is a few hundred bytes and grows with DOCA releases. */
#define HMAF_BLOB_MAX 1536

enum hmaf_msg_type {
    HMAF_MSG_HELLO = 1,   /* dpu side -> host */
    HMAF_MSG_WELCOME = 2, /* host -> dpu side */
};

struct hmaf_msg_hdr {
    uint32_t magic;
    uint16_t version;
    uint8_t type;
    int32_t status;
    uint32_t body_len;
};

struct hmaf_blob {
    uint16_t len;
    uint8_t data[HMAF_BLOB_MAX];
};

struct hmaf_hello {
    uint8_t token[32];
    uint8_t token_len;
    char engine[HMAF_ENGINE_NAME_MAX]; /* NUL-terminated */
    struct hmaf_blob engine_blob;      /* e.g. the dpu side's pid for cma */
};

struct hmaf_welcome {
    char engine[HMAF_ENGINE_NAME_MAX];
    struct hmaf_blob engine_blob; /* the host's bootstrap blob */
    uint64_t session_id;
    uint64_t mailbox_addr; /* host address of this session's mailbox */
    uint64_t mailbox_len;
    uint32_t mailbox_slots;
    struct hmaf_blob mailbox_export; /* the mailbox region's export blob */
    uint32_t lease_us; /* longest a dpu side may act on one look at the
                          revocation epoch: the host's wait allows for it */
};

/* Body sizes without their blobs: the smallest valid bodies. */
#define HMAF_HELLO_BODY_MIN (32 + 1 + HMAF_ENGINE_NAME_MAX + 2)
#define HMAF_WELCOME_BODY_MIN (HMAF_ENGINE_NAME_MAX + 2 + 28 + 2 + 4)
#define HMAF_HELLO_BODY_MAX (HMAF_HELLO_BODY_MIN + HMAF_BLOB_MAX)
#define HMAF_WELCOME_BODY_MAX (HMAF_WELCOME_BODY_MIN + 2 * HMAF_BLOB_MAX)
/* The largest message either side sends or accepts (a channel with a
 * message size limit, comch, must carry it): 3140 bytes. */
#define HMAF_MSG_MAX (HMAF_HDR_SIZE + HMAF_WELCOME_BODY_MAX)

void hmaf__hdr_encode(const struct hmaf_msg_hdr *hdr, uint8_t *buf);
/* Checks the magic only: version and type are the caller's decision. */
int hmaf__hdr_decode(const uint8_t *buf, struct hmaf_msg_hdr *hdr_out);
/* Largest body a message type may have at our protocol version, 0 for
 * an unknown type. */
size_t hmaf__msg_body_max(uint8_t type);
/* Smallest body, 0 for an unknown type. */
size_t hmaf__msg_body_min(uint8_t type);

/* Encoders return the message size (header included), or 0 when it does
 * not fit cap or a blob is longer than HMAF_BLOB_MAX. Decoders take the
 * body and its exact length: 0 or HMAF_EPROTO. */
size_t hmaf__hello_encode(const struct hmaf_hello *hello, uint8_t *buf,
                          size_t cap);
int hmaf__hello_decode(const uint8_t *body, size_t len,
                       struct hmaf_hello *hello_out);
size_t hmaf__welcome_encode(const struct hmaf_welcome *welcome, uint8_t *buf,
                            size_t cap);
int hmaf__welcome_decode(const uint8_t *body, size_t len,
                         struct hmaf_welcome *welcome_out);
/* A refusal: header only, with status < 0. Returns its size. */
size_t hmaf__refusal_encode(int status, uint8_t *buf);

/* Token comparison in constant time with respect to the contents. */
int hmaf__token_equal(const uint8_t *a, size_t a_len, const uint8_t *b,
                      size_t b_len);
/* Copy a NUL-terminated token into a hello; -EINVAL if longer than 32. */
int hmaf__hello_set_token(struct hmaf_hello *hello, const char *token);

#endif
