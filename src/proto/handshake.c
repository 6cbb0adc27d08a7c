#include "proto/handshake.h"

#include <string.h>

#include <hmaf/error.h>

#include "util/wire.h"

void hmaf__hdr_encode(const struct hmaf_msg_hdr *hdr, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_HDR_SIZE);

    hmaf__wire_put_u32(&w, hdr->magic);
    hmaf__wire_put_u16(&w, hdr->version);
    hmaf__wire_put_u8(&w, hdr->type);
    hmaf__wire_put_u8(&w, 0);
    hmaf__wire_put_u32(&w, (uint32_t)hdr->status);
    hmaf__wire_put_u32(&w, hdr->body_len);
}

int hmaf__hdr_decode(const uint8_t *buf, struct hmaf_msg_hdr *hdr_out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, HMAF_HDR_SIZE);

    hdr_out->magic = hmaf__wire_get_u32(&w);
    hdr_out->version = hmaf__wire_get_u16(&w);
    hdr_out->type = hmaf__wire_get_u8(&w);
    (void)hmaf__wire_get_u8(&w);
    hdr_out->status = (int32_t)hmaf__wire_get_u32(&w);
    hdr_out->body_len = hmaf__wire_get_u32(&w);
    return hdr_out->magic == HMAF_WIRE_MAGIC ? 0 : HMAF_EPROTO;
}

size_t hmaf__msg_body_max(uint8_t type)
{
    switch (type) {
    case HMAF_MSG_HELLO:
        return HMAF_HELLO_BODY_MAX;
    case HMAF_MSG_WELCOME:
        return HMAF_WELCOME_BODY_MAX;
    default:
        return 0;
    }
}

size_t hmaf__msg_body_min(uint8_t type)
{
    switch (type) {
    case HMAF_MSG_HELLO:
        return HMAF_HELLO_BODY_MIN;
    case HMAF_MSG_WELCOME:
        return HMAF_WELCOME_BODY_MIN;
    default:
        return 0;
    }
}

static void put_blob(struct hmaf_wire *w, const struct hmaf_blob *b)
{
    if (b->len > sizeof(b->data)) {
        w->ok = false;
        return;
    }
    hmaf__wire_put_u16(w, b->len);
    hmaf__wire_put_bytes(w, b->data, b->len);
}

/* The length is checked before the bytes are taken, so a huge length
 * never reads past the body; the unused rest of data is zeroed. */
static void get_blob(struct hmaf_wire *w, struct hmaf_blob *b)
{
    b->len = hmaf__wire_get_u16(w);
    if (b->len > sizeof(b->data)) {
        w->ok = false;
        b->len = 0;
    }
    hmaf__wire_get_bytes(w, b->data, b->len);
    memset(b->data + b->len, 0, sizeof(b->data) - b->len);
}

/* Engine names arrive as fixed fields: demand a NUL inside the field. */
static void get_name(struct hmaf_wire *w, char *name, size_t cap)
{
    hmaf__wire_get_bytes(w, name, cap);
    if (memchr(name, '\0', cap) == NULL) {
        w->ok = false;
        name[cap - 1] = '\0';
    }
}

static size_t encode_with_header(uint8_t type, uint8_t *buf, size_t cap,
                                 struct hmaf_wire *body)
{
    struct hmaf_msg_hdr hdr = {
        .magic = HMAF_WIRE_MAGIC,
        .version = HMAF_PROTOCOL_VERSION,
        .type = type,
        .status = 0,
        .body_len = (uint32_t)body->pos,
    };

    if (!body->ok || cap < HMAF_HDR_SIZE) {
        return 0;
    }
    hmaf__hdr_encode(&hdr, buf);
    return HMAF_HDR_SIZE + body->pos;
}

size_t hmaf__hello_encode(const struct hmaf_hello *hello, uint8_t *buf,
                          size_t cap)
{
    struct hmaf_wire w;

    if (cap < HMAF_HDR_SIZE) {
        return 0;
    }
    w = hmaf__wire(buf + HMAF_HDR_SIZE, cap - HMAF_HDR_SIZE);
    hmaf__wire_put_bytes(&w, hello->token, sizeof(hello->token));
    hmaf__wire_put_u8(&w, hello->token_len);
    hmaf__wire_put_bytes(&w, hello->engine, sizeof(hello->engine));
    put_blob(&w, &hello->engine_blob);
    return encode_with_header(HMAF_MSG_HELLO, buf, cap, &w);
}

int hmaf__hello_decode(const uint8_t *body, size_t len,
                       struct hmaf_hello *hello_out)
{
    struct hmaf_wire w = hmaf__wire((void *)body, len);

    if (len < HMAF_HELLO_BODY_MIN || len > HMAF_HELLO_BODY_MAX) {
        return HMAF_EPROTO;
    }
    hmaf__wire_get_bytes(&w, hello_out->token, sizeof(hello_out->token));
    hello_out->token_len = hmaf__wire_get_u8(&w);
    get_name(&w, hello_out->engine, sizeof(hello_out->engine));
    get_blob(&w, &hello_out->engine_blob);
    if (hello_out->token_len > sizeof(hello_out->token)) {
        return HMAF_EPROTO;
    }
    return w.ok && w.pos == len ? 0 : HMAF_EPROTO;
}

size_t hmaf__welcome_encode(const struct hmaf_welcome *welcome, uint8_t *buf,
                            size_t cap)
{
    struct hmaf_wire w;

    if (cap < HMAF_HDR_SIZE) {
        return 0;
    }
    w = hmaf__wire(buf + HMAF_HDR_SIZE, cap - HMAF_HDR_SIZE);
    hmaf__wire_put_bytes(&w, welcome->engine, sizeof(welcome->engine));
    put_blob(&w, &welcome->engine_blob);
    hmaf__wire_put_u64(&w, welcome->session_id);
    hmaf__wire_put_u64(&w, welcome->mailbox_addr);
    hmaf__wire_put_u64(&w, welcome->mailbox_len);
    hmaf__wire_put_u32(&w, welcome->mailbox_slots);
    put_blob(&w, &welcome->mailbox_export);
    hmaf__wire_put_u32(&w, welcome->lease_us);
    return encode_with_header(HMAF_MSG_WELCOME, buf, cap, &w);
}

int hmaf__welcome_decode(const uint8_t *body, size_t len,
                         struct hmaf_welcome *welcome_out)
{
    struct hmaf_wire w = hmaf__wire((void *)body, len);

    if (len < HMAF_WELCOME_BODY_MIN || len > HMAF_WELCOME_BODY_MAX) {
        return HMAF_EPROTO;
    }
    get_name(&w, welcome_out->engine, sizeof(welcome_out->engine));
    get_blob(&w, &welcome_out->engine_blob);
    welcome_out->session_id = hmaf__wire_get_u64(&w);
    welcome_out->mailbox_addr = hmaf__wire_get_u64(&w);
    welcome_out->mailbox_len = hmaf__wire_get_u64(&w);
    welcome_out->mailbox_slots = hmaf__wire_get_u32(&w);
    get_blob(&w, &welcome_out->mailbox_export);
    welcome_out->lease_us = hmaf__wire_get_u32(&w);
    return w.ok && w.pos == len ? 0 : HMAF_EPROTO;
}

size_t hmaf__refusal_encode(int status, uint8_t *buf)
{
    struct hmaf_msg_hdr hdr = {
        .magic = HMAF_WIRE_MAGIC,
        .version = HMAF_PROTOCOL_VERSION,
        .type = HMAF_MSG_WELCOME,
        .status = status,
        .body_len = 0,
    };

    hmaf__hdr_encode(&hdr, buf);
    return HMAF_HDR_SIZE;
}

int hmaf__token_equal(const uint8_t *a, size_t a_len, const uint8_t *b,
                      size_t b_len)
{
    volatile uint8_t diff = (uint8_t)(a_len != b_len);

    /* Always walk the full field so timing says nothing about where the
     * first difference is. Both buffers are HMAF_TOKEN_MAX bytes. */
    for (size_t i = 0; i < 32; i++) {
        diff |= (uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0;
}

int hmaf__hello_set_token(struct hmaf_hello *hello, const char *token)
{
    size_t n = token == NULL ? 0 : strlen(token);

    if (n > sizeof(hello->token)) {
        return HMAF_EINVAL;
    }
    memset(hello->token, 0, sizeof(hello->token));
    if (n > 0) {
        memcpy(hello->token, token, n);
    }
    hello->token_len = (uint8_t)n;
    return 0;
}
