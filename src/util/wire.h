/*
 * Little-endian field codec for everything that crosses between host and
 * dpu side. A cursor never reads or writes past its end: once a bounds
 * check fails it is marked bad and every later get returns 0, so decoders
 * check `ok` once at the end instead of after every field.
 */
#ifndef HMAF_UTIL_WIRE_H
#define HMAF_UTIL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct hmaf_wire {
    uint8_t *p;
    size_t len;
    size_t pos;
    bool ok;
};

static inline struct hmaf_wire hmaf__wire(void *buf, size_t len)
{
    struct hmaf_wire w = {.p = buf, .len = len, .pos = 0, .ok = true};

    return w;
}

static inline uint8_t *hmaf__wire_take(struct hmaf_wire *w, size_t n)
{
    uint8_t *at;

    if (!w->ok || n > w->len - w->pos) {
        w->ok = false;
        return NULL;
    }
    at = w->p + w->pos;
    w->pos += n;
    return at;
}

static inline void hmaf__wire_put_bytes(struct hmaf_wire *w, const void *src,
                                        size_t n)
{
    uint8_t *at = hmaf__wire_take(w, n);

    if (at != NULL && n > 0) {
        memcpy(at, src, n);
    }
}

static inline void hmaf__wire_get_bytes(struct hmaf_wire *w, void *dst,
                                        size_t n)
{
    uint8_t *at = hmaf__wire_take(w, n);

    if (at != NULL && n > 0) {
        memcpy(dst, at, n);
    } else if (n > 0) {
        memset(dst, 0, n);
    }
}

static inline void hmaf__wire_put_uint(struct hmaf_wire *w, uint64_t v,
                                       size_t n)
{
    uint8_t *at = hmaf__wire_take(w, n);

    for (size_t i = 0; at != NULL && i < n; i++) {
        at[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline uint64_t hmaf__wire_get_uint(struct hmaf_wire *w, size_t n)
{
    uint8_t *at = hmaf__wire_take(w, n);
    uint64_t v = 0;

    for (size_t i = 0; at != NULL && i < n; i++) {
        v |= (uint64_t)at[i] << (8 * i);
    }
    return v;
}

#define hmaf__wire_put_u8(w, v) hmaf__wire_put_uint((w), (v), 1)
#define hmaf__wire_put_u16(w, v) hmaf__wire_put_uint((w), (v), 2)
#define hmaf__wire_put_u32(w, v) hmaf__wire_put_uint((w), (v), 4)
#define hmaf__wire_put_u64(w, v) hmaf__wire_put_uint((w), (v), 8)
#define hmaf__wire_get_u8(w) ((uint8_t)hmaf__wire_get_uint((w), 1))
#define hmaf__wire_get_u16(w) ((uint16_t)hmaf__wire_get_uint((w), 2))
#define hmaf__wire_get_u32(w) ((uint32_t)hmaf__wire_get_uint((w), 4))
#define hmaf__wire_get_u64(w) hmaf__wire_get_uint((w), 8)

#endif
