/* Raw mailbox traffic for tests that play a lying dpu side: requests
 * written straight into a session's last slot (its own client uses slot
 * 0 first), answers polled there, with process_vm_readv/writev on the
 * host process. */
#ifndef HMAF_TEST_RAW_SLOT_H
#define HMAF_TEST_RAW_SLOT_H

#include <sys/uio.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/mailbox.h"

struct raw {
    pid_t host;
    uint64_t slot;
    uint32_t seq;
};

static inline void raw_init(struct raw *raw, pid_t host, hmaf_session_t *s)
{
    raw->host = host;
    raw->slot = s->mbox.base + hmaf__mbox_slot_offset(s->mbox.nslots - 1);
    raw->seq = 1000;
}

static inline void raw_poke(const struct raw *raw, uint64_t addr,
                            const void *p, size_t len)
{
    struct iovec l = {(void *)p, len}, r = {(void *)(uintptr_t)addr, len};

    CHECK_EQ(process_vm_writev(raw->host, &l, 1, &r, 1, 0), (ssize_t)len);
}

static inline void raw_peek(const struct raw *raw, uint64_t addr, void *p,
                            size_t len)
{
    struct iovec l = {p, len}, r = {(void *)(uintptr_t)addr, len};

    CHECK_EQ(process_vm_readv(raw->host, &l, 1, &r, 1, 0), (ssize_t)len);
}

/* One request of `len` bytes, `claimed` in the request word; the status,
 * and the answer's payload to resp (when not NULL). The payload goes
 * where the agent looks for a request of the claimed length: a long one
 * (over HMAF_MBOX_REQ_MAX) at the answer's payload. */
static inline int raw_call(struct raw *raw, uint8_t op, const void *payload,
                           uint16_t len, uint16_t claimed, void *resp,
                           uint16_t *resp_len)
{
    uint32_t seq = raw->seq++;
    uint64_t word = hmaf__mbox_req_word(seq, op, claimed);

    uint64_t at = claimed <= HMAF_MBOX_REQ_LONG_MAX
                      ? hmaf__mbox_req_payload_at(claimed)
                      : HMAF_MBOX_REQ_PAYLOAD;

    CHECK(at + len <= HMAF_MBOX_SLOT_SIZE);
    if (len > 0) {
        raw_poke(raw, raw->slot + at, payload, len);
    }
    raw_poke(raw, raw->slot + HMAF_MBOX_REQ_WORD, &word, 8);
    for (;;) {
        uint64_t answer;
        raw_peek(raw, raw->slot + HMAF_MBOX_RESP_WORD, &answer, 8);
        if (hmaf__mbox_word_seq(answer) != seq) {
            continue;
        }
        if (resp != NULL) {
            *resp_len = hmaf__mbox_resp_len(answer);
            raw_peek(raw, raw->slot + HMAF_MBOX_RESP_PAYLOAD, resp,
                     *resp_len);
        }
        return hmaf__mbox_resp_status(answer);
    }
}

#endif
