/*
 * A host that lies in its answers to ATOMIC requests: the dpu side must
 * turn every lie into HMAF_EPROTO — never a hang, a crash or an error the
 * call does not document — and the session must serve on.
 *
 * The host's agent has no thread of its own: while the host sits in
 * command 'w' nobody serves the mailbox, and the test writes the answer
 * itself into the slot that holds the ATOMIC request (the mailbox is host
 * memory). The lies: an answer "still in progress" (a posted batch that
 * took it for no answer waited forever), statuses no ATOMIC request is
 * answered with, an answer of the wrong length, and an op status no op
 * can end with. Each as the answer to a posted batch and to a blocking
 * call.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "core/session_int.h"
#include "proto/atomic.h"
#include "raw_slot.h"
#include "target.h"

#define PAGE 4096u

struct pause {
    _Atomic int paused; /* the host sits in 'w' */
    _Atomic int go;     /* and may leave it */
};

static struct pause *pause_;
static uint64_t *host_words;

static int setup(hmaf_agent_t *agent, void *arg)
{
    int ret;

    (void)arg;
    host_words = aligned_alloc(PAGE, PAGE);
    if (host_words == NULL) {
        return HMAF_ENOMEM;
    }
    memset(host_words, 0, PAGE);
    ret = hmaf_agent_expose(agent, host_words, PAGE, HMAF_ACCESS_READ_WRITE);
    return ret != 0 ? ret
                    : hmaf_agent_publish(agent, "words", host_words, PAGE);
}

/* 'w': serve nothing until the test says go. */
static int command(hmaf_agent_t *agent, int cmd, void *arg)
{
    (void)agent;
    (void)arg;
    if (cmd != 'w') {
        return 0;
    }
    atomic_store(&pause_->paused, 1);
    while (!atomic_load(&pause_->go)) {
        usleep(200);
    }
    atomic_store(&pause_->go, 0);
    atomic_store(&pause_->paused, 0);
    return 1;
}

static struct target target;
static pthread_t pauser;

static void *send_pause(void *arg)
{
    (void)arg;
    CHECK_EQ(target_command(&target, 'w'), 1);
    return NULL;
}

static void pause_host(void)
{
    CHECK(pthread_create(&pauser, NULL, send_pause, NULL) == 0);
    while (!atomic_load(&pause_->paused)) {
        usleep(100);
    }
}

static void resume_host(void)
{
    atomic_store(&pause_->go, 1);
    pthread_join(pauser, NULL);
}

/* The slot whose ATOMIC request waits for its answer; its sequence. */
static uint64_t atomic_slot(struct raw *raw, hmaf_session_t *s,
                            uint32_t *seq_out)
{
    for (;;) {
        for (uint32_t i = 0; i < s->mbox.nslots; i++) {
            uint64_t at = s->mbox.base + hmaf__mbox_slot_offset(i);
            uint64_t req, resp;
            raw_peek(raw, at + HMAF_MBOX_REQ_WORD, &req, 8);
            raw_peek(raw, at + HMAF_MBOX_RESP_WORD, &resp, 8);
            if (hmaf__mbox_req_op(req) == HMAF_OP_ATOMIC &&
                hmaf__mbox_word_seq(req) != hmaf__mbox_word_seq(resp)) {
                *seq_out = hmaf__mbox_word_seq(req);
                return at;
            }
        }
        usleep(100);
    }
}

struct lie {
    const char *what;
    int status;      /* the answer's */
    uint16_t len;    /* its payload's */
    int op_status;   /* in the payload */
};

static void tell(struct raw *raw, hmaf_session_t *s, const struct lie *l)
{
    uint8_t payload[64] = {0};
    uint32_t seq;
    uint64_t at = atomic_slot(raw, s, &seq);
    uint64_t word = hmaf__mbox_resp_word(seq, l->status, l->len);

    /* u64 old, i16 status: the op's result */
    payload[8] = (uint8_t)(uint16_t)(int16_t)l->op_status;
    payload[9] = (uint8_t)((uint16_t)(int16_t)l->op_status >> 8);
    raw_poke(raw, at + HMAF_MBOX_RESP_PAYLOAD, payload, sizeof(payload));
    raw_poke(raw, at + HMAF_MBOX_RESP_WORD, &word, 8);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static hmaf_atomic_t fadd(uint64_t addr)
{
    return (hmaf_atomic_t){
        .op = HMAF_ATOMIC_FADD, .size = 8, .remote_addr = addr, .operand = 1};
}

static void posted(struct raw *raw, hmaf_session_t *s, uint64_t words,
                   const struct lie *l)
{
    hmaf_atomic_t op = fadd(words);
    hmaf_req_t req;
    double until;
    int ret;

    pause_host();
    CHECK_OK(hmaf_session_atomic_post(s, &op, 1, &req));
    tell(raw, s, l);
    /* A bound on a hang, not a time measured: the answer is there. */
    until = now_s() + 20;
    while ((ret = hmaf_request_test(s, req)) == HMAF_EINPROGRESS &&
           now_s() < until) {
        usleep(100);
    }
    if (ret != HMAF_EPROTO) {
        fprintf(stderr, "posted, %s: %s\n", l->what, hmaf_err_name(ret));
    }
    CHECK_ERR(ret, HMAF_EPROTO);
    CHECK_ERR(op.status, HMAF_EPROTO);
    resume_host();
}

struct blocking {
    hmaf_session_t *s;
    hmaf_atomic_t op;
    int ret;
};

static void *run_blocking(void *arg)
{
    struct blocking *b = arg;

    b->ret = hmaf_session_atomic(b->s, &b->op, 1);
    return NULL;
}

static void blocking(struct raw *raw, hmaf_session_t *s, uint64_t words,
                     const struct lie *l)
{
    struct blocking b = {.s = s, .op = fadd(words)};
    pthread_t th;

    pause_host();
    CHECK(pthread_create(&th, NULL, run_blocking, &b) == 0);
    tell(raw, s, l);
    pthread_join(th, NULL);
    if (b.ret != HMAF_EPROTO) {
        fprintf(stderr, "blocking, %s: %s\n", l->what, hmaf_err_name(b.ret));
    }
    CHECK_ERR(b.ret, HMAF_EPROTO);
    CHECK_ERR(b.op.status, HMAF_EPROTO);
    resume_host();
}

int main(void)
{
    static const struct lie lies[] = {
        {"in progress", HMAF_EINPROGRESS, 0, 0},
        {"no room", HMAF_ENOSPC, 0, 0},
        {"stale handle", HMAF_ESTALE, 0, 0},
        {"no such thing", HMAF_ENOENT, 0, 0},
        {"busy", HMAF_EBUSY, 0, 0},
        {"too long", 0, HMAF_ATOMIC_WIRE_RESULT + 1, 0},
        {"empty", 0, 0, 0},
        {"op busy", 0, HMAF_ATOMIC_WIRE_RESULT, HMAF_EBUSY},
        {"op in progress", 0, HMAF_ATOMIC_WIRE_RESULT, HMAF_EINPROGRESS},
    };
    struct target_options o = {
        .setup = setup, .command = command, .agent_threaded = -1};
    hmaf_session_t *s;
    struct raw raw;
    uint64_t words = 0, old = 0;

    pause_ = mmap(NULL, sizeof(*pause_), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(pause_ != MAP_FAILED);
    target_start(&target, &o);
    s = target_connect(&target);
    CHECK_OK(hmaf_session_lookup(s, "words", &words, NULL));
    raw_init(&raw, target.pid, s);
    for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
        posted(&raw, s, words, &lies[i]);
        blocking(&raw, s, words, &lies[i]);
        /* the session serves on; the host performed the lied-about ops
         * once it served again (their requests were there) */
        CHECK_OK(hmaf_session_fetch_add64(s, words, 1, &old));
    }
    CHECK_OK(hmaf_session_fetch_add64(s, words, 0, &old));
    CHECK(old >= sizeof(lies) / sizeof(lies[0]));
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&target), 0);
    return 0;
}
