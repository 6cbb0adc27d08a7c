/* A dpu side that writes whatever it likes into its mailbox: the agent
 * answers each malformed request with an error, counts it, and keeps
 * serving. The raw slot traffic here goes around the session's client. */
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/mailbox.h"
#include "target.h"

static pid_t host;
static uint64_t slot_base; /* the last slot: the session's client uses 0 */
static uint32_t next_seq = 1000;

static void poke(uint64_t addr, const void *p, size_t len)
{
    struct iovec l = {(void *)p, len}, r = {(void *)(uintptr_t)addr, len};

    CHECK_EQ(process_vm_writev(host, &l, 1, &r, 1, 0), (ssize_t)len);
}

static uint64_t peek_u64(uint64_t addr)
{
    uint64_t v = 0;
    struct iovec l = {&v, 8}, r = {(void *)(uintptr_t)addr, 8};

    CHECK_EQ(process_vm_readv(host, &l, 1, &r, 1, 0), 8);
    return v;
}

/* Send one raw request; return the status the agent answered with. */
static int raw_request(uint8_t op, const void *payload, uint16_t len,
                       uint16_t claimed_len)
{
    uint32_t seq = next_seq++;
    uint64_t word = hmaf__mbox_req_word(seq, op, claimed_len);

    if (len > 0) {
        poke(slot_base + HMAF_MBOX_REQ_PAYLOAD, payload, len);
    }
    poke(slot_base + HMAF_MBOX_REQ_WORD, &word, 8);
    for (int i = 0; i < 2000000; i++) {
        uint64_t resp = peek_u64(slot_base + HMAF_MBOX_RESP_WORD);
        if (hmaf__mbox_word_seq(resp) == seq) {
            return hmaf__mbox_resp_status(resp);
        }
    }
    CHECK(!"no answer from the agent");
    return 0;
}

static void send_malformed(void)
{
    /* room for a DEREGISTER naming one id too many, past the slot's
     * largest request */
    uint8_t p[10 + 8 * (HMAF_DEREGISTER_IDS_MAX + 1)];
    struct hmaf_req_register reg = {.addr = 4096, .len = 0};

    memset(p, 'A', sizeof(p));
    CHECK_EQ(raw_request(99, NULL, 0, 0), HMAF_EPROTO);
    CHECK_EQ(raw_request(0, NULL, 0, 0), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_PING, p, 8, 8), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, 3, 3), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, 16, 0xffff), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_LOOKUP, p, 64, 64), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_DEREGISTER, p, 15, 15), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_DEREGISTER, p, 8, 8), HMAF_EPROTO);
    memset(p, 0, 18);
    CHECK_EQ(raw_request(HMAF_OP_DEREGISTER, p, 10, 10), HMAF_EPROTO);
    p[8] = 1; /* one id, and its bytes one short, then one too many */
    CHECK_EQ(raw_request(HMAF_OP_DEREGISTER, p, 17, 17), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_DEREGISTER, p, 19, 19), HMAF_EPROTO);
    p[8] = HMAF_DEREGISTER_IDS_MAX + 1;
    CHECK_EQ(raw_request(HMAF_OP_DEREGISTER, p, 10 + 8 * p[8], 10 + 8 * p[8]),
             HMAF_EPROTO);
    hmaf__req_register_encode(&reg, p);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, 16, 16), HMAF_EINVAL);
    reg = (struct hmaf_req_register){.addr = UINT64_MAX - 4, .len = 10};
    hmaf__req_register_encode(&reg, p);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, 16, 16), HMAF_EOVERFLOW);
    reg = (struct hmaf_req_register){.addr = 4096, .len = 10};
    hmaf__req_register_encode(&reg, p);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, 16, 16), HMAF_EFAULT);
    memset(p, 0, 18);
    p[8] = 1;
    p[10] = 0x77; /* an id this session holds nothing of */
    CHECK_EQ(raw_request(HMAF_OP_DEREGISTER, p, 18, 18), HMAF_ENOENT);
    memset(p, 0, 64);
    CHECK_EQ(raw_request(HMAF_OP_LOOKUP, p, 64, 64), HMAF_EINVAL);
    CHECK_EQ(raw_request(HMAF_OP_PING, NULL, 0, 0), 0);
}

/* REGISTERs that give regions back: a malformed give-back part refuses
 * the whole request; ids the session holds nothing of are skipped, and
 * the REGISTER is answered all the same. */
static void send_give_backs(uint64_t addr)
{
    struct hmaf_req_register reg = {.addr = addr,
                                    .len = 64,
                                    .give_epoch = 0,
                                    .give_count = 2,
                                    .give_id = {0x77, 0x78}};
    uint8_t p[HMAF_MBOX_REQ_MAX];
    uint16_t n = (uint16_t)hmaf__req_register_encode(&reg, p);

    CHECK_EQ(n, 42);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, n, n), 0);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, n - 1, n - 1), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, n + 8, n + 8), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, 26, 26), HMAF_EPROTO);
    p[24] = 0; /* a count of 0, with or without ids */
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, 26, 26), HMAF_EPROTO);
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, n, n), HMAF_EPROTO);
    p[24] = HMAF_REGISTER_GIVE_MAX + 1;
    CHECK_EQ(raw_request(HMAF_OP_REGISTER, p, HMAF_MBOX_REQ_MAX,
                         HMAF_MBOX_REQ_MAX),
             HMAF_EPROTO);
}

/* Scribble over the host-written half of every slot and the header too:
 * the agent must not trust or crash on any of it. */
static void scribble(struct hmaf_session *s)
{
    uint8_t junk[HMAF_MBOX_SLOT_SIZE];

    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 37 + 11);
    }
    poke(s->mbox.base, junk, HMAF_MBOX_SLOTS_OFFSET);
    poke(slot_base + HMAF_MBOX_RESP_WORD, junk, 8);
}

int main(void)
{
    struct target t;
    hmaf_session_t *s;
    uint64_t buf;
    uint8_t tmp[64];

    target_start_standard(&t);
    s = target_connect(&t);
    host = t.pid;
    slot_base = s->mbox.base + hmaf__mbox_slot_offset(s->mbox.nslots - 1);
    send_malformed();
    CHECK(target_command(&t, 'b') >= 7);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    send_give_backs(buf);
    CHECK(target_command(&t, 'b') >= 13);
    scribble(s);
    CHECK_EQ(raw_request(HMAF_OP_PING, NULL, 0, 0), 0);
    /* This session broke its own mailbox header (a bogus revocation
     * epoch): its calls fail cleanly instead of looping. */
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_ERR(hmaf_session_read(s, tmp, buf + 1, sizeof(tmp)), HMAF_EPROTO);
    hmaf_session_destroy(s);
    /* Other sessions are unaffected. */
    s = target_connect(&t);
    CHECK_OK(hmaf_session_read(s, tmp, buf + 1, sizeof(tmp)));
    CHECK_EQ(tmp[0], target_pattern(1, 1));
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_mailbox_abuse: ok\n");
    return 0;
}
