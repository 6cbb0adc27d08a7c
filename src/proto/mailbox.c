#include "proto/mailbox.h"

#include <string.h>

#include <hmaf/error.h>

#include "util/wire.h"

#define REQ_REGISTER_SIZE 16
#define REQ_REGISTER_GIVE_FIXED 10 /* epoch, count */
#define REQ_DEREGISTER_FIXED 10
#define REQ_LOOKUP_SIZE 64
#define RESP_REGISTER_FIXED 33
#define RESP_LOOKUP_SIZE 16

_Static_assert(RESP_REGISTER_FIXED + 2 + HMAF_BLOB_MAX <= HMAF_MBOX_RESP_MAX,
               "a REGISTER answer must fit a response slot");
_Static_assert(REQ_REGISTER_SIZE + REQ_REGISTER_GIVE_FIXED +
                       8 * HMAF_REGISTER_GIVE_MAX <=
                   HMAF_MBOX_REQ_MAX,
               "a REGISTER giving back the most must fit a request slot");
_Static_assert(REQ_LOOKUP_SIZE <= HMAF_MBOX_REQ_MAX, "lookup must fit");
_Static_assert(REQ_DEREGISTER_FIXED + 8 * HMAF_DEREGISTER_IDS_MAX <=
                   HMAF_MBOX_REQ_MAX,
               "a full DEREGISTER must fit a request slot");

static int decoded(const struct hmaf_wire *w, size_t len)
{
    return w->ok && w->pos == len ? 0 : HMAF_EPROTO;
}

size_t hmaf__req_register_encode(const struct hmaf_req_register *r,
                                 uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_MBOX_REQ_MAX);

    if (r->give_count > HMAF_REGISTER_GIVE_MAX) {
        return 0;
    }
    hmaf__wire_put_u64(&w, r->addr);
    hmaf__wire_put_u64(&w, r->len);
    if (r->give_count > 0) {
        hmaf__wire_put_u64(&w, r->give_epoch);
        hmaf__wire_put_u16(&w, r->give_count);
    }
    for (uint16_t i = 0; i < r->give_count; i++) {
        hmaf__wire_put_u64(&w, r->give_id[i]);
    }
    return w.pos;
}

int hmaf__req_register_decode(const uint8_t *buf, size_t len,
                              struct hmaf_req_register *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    out->addr = hmaf__wire_get_u64(&w);
    out->len = hmaf__wire_get_u64(&w);
    out->give_epoch = 0;
    out->give_count = 0;
    if (len == REQ_REGISTER_SIZE) {
        return decoded(&w, len);
    }
    out->give_epoch = hmaf__wire_get_u64(&w);
    out->give_count = hmaf__wire_get_u16(&w);
    if (out->give_count == 0 || out->give_count > HMAF_REGISTER_GIVE_MAX ||
        len != REQ_REGISTER_SIZE + REQ_REGISTER_GIVE_FIXED +
                   8u * out->give_count) {
        out->give_count = 0;
        return HMAF_EPROTO;
    }
    for (uint16_t i = 0; i < out->give_count; i++) {
        out->give_id[i] = hmaf__wire_get_u64(&w);
    }
    return decoded(&w, len);
}

size_t hmaf__resp_register_encode(const struct hmaf_resp_register *r,
                                  uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_MBOX_RESP_MAX);

    hmaf__wire_put_u64(&w, r->region_id);
    hmaf__wire_put_u64(&w, r->base);
    hmaf__wire_put_u64(&w, r->len);
    hmaf__wire_put_u64(&w, r->epoch);
    hmaf__wire_put_u8(&w, r->access);
    if (r->export_blob.len > HMAF_BLOB_MAX) {
        return 0;
    }
    hmaf__wire_put_u16(&w, r->export_blob.len);
    hmaf__wire_put_bytes(&w, r->export_blob.data, r->export_blob.len);
    return w.ok ? w.pos : 0;
}

int hmaf__resp_register_decode(const uint8_t *buf, size_t len,
                               struct hmaf_resp_register *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    out->region_id = hmaf__wire_get_u64(&w);
    out->base = hmaf__wire_get_u64(&w);
    out->len = hmaf__wire_get_u64(&w);
    out->epoch = hmaf__wire_get_u64(&w);
    out->access = hmaf__wire_get_u8(&w);
    out->export_blob.len = hmaf__wire_get_u16(&w);
    if (out->export_blob.len > HMAF_BLOB_MAX) {
        return HMAF_EPROTO;
    }
    hmaf__wire_get_bytes(&w, out->export_blob.data, out->export_blob.len);
    return decoded(&w, len);
}

size_t hmaf__req_deregister_encode(const struct hmaf_req_deregister *r,
                                   uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, HMAF_MBOX_REQ_MAX);

    if (r->count == 0 || r->count > HMAF_DEREGISTER_IDS_MAX) {
        return 0;
    }
    hmaf__wire_put_u64(&w, r->epoch);
    hmaf__wire_put_u16(&w, r->count);
    for (uint16_t i = 0; i < r->count; i++) {
        hmaf__wire_put_u64(&w, r->region_id[i]);
    }
    return w.pos;
}

int hmaf__req_deregister_decode(const uint8_t *buf, size_t len,
                                struct hmaf_req_deregister *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    out->epoch = hmaf__wire_get_u64(&w);
    out->count = hmaf__wire_get_u16(&w);
    if (out->count == 0 || out->count > HMAF_DEREGISTER_IDS_MAX ||
        len != REQ_DEREGISTER_FIXED + 8u * out->count) {
        out->count = 0;
        return HMAF_EPROTO;
    }
    for (uint16_t i = 0; i < out->count; i++) {
        out->region_id[i] = hmaf__wire_get_u64(&w);
    }
    return decoded(&w, len);
}

size_t hmaf__req_lookup_encode(const struct hmaf_req_lookup *r, uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, REQ_LOOKUP_SIZE);

    hmaf__wire_put_bytes(&w, r->name, sizeof(r->name));
    return w.pos;
}

int hmaf__req_lookup_decode(const uint8_t *buf, size_t len,
                            struct hmaf_req_lookup *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    hmaf__wire_get_bytes(&w, out->name, sizeof(out->name));
    if (memchr(out->name, '\0', sizeof(out->name)) == NULL) {
        out->name[0] = '\0';
        return HMAF_EPROTO;
    }
    return decoded(&w, len);
}

size_t hmaf__resp_lookup_encode(const struct hmaf_resp_lookup *r,
                                uint8_t *buf)
{
    struct hmaf_wire w = hmaf__wire(buf, RESP_LOOKUP_SIZE);

    hmaf__wire_put_u64(&w, r->addr);
    hmaf__wire_put_u64(&w, r->len);
    return w.pos;
}

int hmaf__resp_lookup_decode(const uint8_t *buf, size_t len,
                             struct hmaf_resp_lookup *out)
{
    struct hmaf_wire w = hmaf__wire((void *)buf, len);

    out->addr = hmaf__wire_get_u64(&w);
    out->len = hmaf__wire_get_u64(&w);
    return decoded(&w, len);
}
