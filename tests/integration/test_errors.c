/* Bad input, each with its documented error, and peers that misbehave or
 * die: wrong token, version or engine, garbage on the channel in both
 * directions, and a host killed mid-session. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel/channel.h"
#include "check.h"
#include "proto/handshake.h"
#include "target.h"
#include "util/clock.h"

static void check_bad_arguments(hmaf_session_t *s, uint64_t buf, uint64_t ro,
                                uint64_t hole)
{
    uint8_t tmp[128];
    hmaf_seg_t seg = {tmp, buf, 16};
    uint64_t addr;

    CHECK_ERR(hmaf_session_create(NULL, &s), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read(NULL, tmp, buf, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read(s, NULL, buf, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_write(s, buf, NULL, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_readv(s, NULL, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_readv(s, &seg, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_lookup(s, NULL, &addr, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_lookup(s, "buf", NULL, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_stats(s, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_ping(NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read(s, tmp, buf, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_write(s, buf, tmp, 0), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_read(s, tmp, UINT64_MAX - 10, 100),
              HMAF_EOVERFLOW);
    CHECK_ERR(hmaf_session_write(s, UINT64_MAX, tmp, 2), HMAF_EOVERFLOW);
    CHECK_ERR(hmaf_session_read(s, tmp, hole, 16), HMAF_EFAULT);
    CHECK_ERR(hmaf_session_read(s, tmp, 4096, 16), HMAF_EFAULT);
    /* Starts exposed, runs past the end of the exposure. */
    CHECK_ERR(hmaf_session_read(s, tmp, buf + STD_BUF_LEN - 8, 16),
              HMAF_EFAULT);
    CHECK_ERR(hmaf_session_write(s, ro, tmp, 16), HMAF_EACCES);
    CHECK_OK(hmaf_session_read(s, tmp, ro, 16));
    CHECK_EQ(tmp[0], target_pattern(0, 3)); /* nothing was written */
    CHECK_ERR(hmaf_session_lookup(s, "no-such-root", &addr, NULL),
              HMAF_ENOENT);
    CHECK_ERR(hmaf_session_lookup(s, "", &addr, NULL), HMAF_EINVAL);
    memset(tmp, 'x', 100);
    tmp[100] = '\0';
    CHECK_ERR(hmaf_session_lookup(s, (char *)tmp, &addr, NULL),
              HMAF_ENAMETOOLONG);
}

static void check_refused(struct target *t, const char *token,
                          const char *engine, int want)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;

    target_session_params(t, &p);
    p.token = token;
    p.engine = engine;
    CHECK_ERR(hmaf_session_create(&p, &s), want);
    CHECK(s == NULL);
}

/* Send raw bytes as a dpu side would; return the refusal status, or 1
 * when the host just closed the connection. */
static int raw_exchange(struct target *t, const void *msg, size_t len)
{
    struct hmaf_channel ch;
    struct hmaf_msg_hdr hdr;
    uint8_t reply[HMAF_HDR_SIZE];
    uint64_t deadline = hmaf__deadline_ns(2000);

    CHECK_OK(hmaf__channel_connect(t->address, 1000, &ch));
    CHECK_OK(hmaf__channel_send(&ch, msg, len, deadline));
    shutdown(ch.fd, SHUT_WR); /* a short message ends here */
    if (hmaf__channel_recv(&ch, reply, sizeof(reply), deadline) != 0) {
        hmaf__channel_close(&ch);
        return 1;
    }
    hmaf__channel_close(&ch);
    CHECK_OK(hmaf__hdr_decode(reply, &hdr));
    return hdr.status;
}

static size_t hello_from(uint8_t *buf, uint16_t version, const char *engine,
                         uint32_t pid)
{
    struct hmaf_hello h = {0};
    struct hmaf_msg_hdr hdr;
    size_t len;

    hmaf__hello_set_token(&h, TARGET_TOKEN);
    strcpy(h.engine, engine);
    h.engine_blob.len = 4;
    memcpy(h.engine_blob.data, &pid, 4);
    len = hmaf__hello_encode(&h, buf, HMAF_MSG_MAX);
    hmaf__hdr_decode(buf, &hdr);
    hdr.version = version;
    hmaf__hdr_encode(&hdr, buf);
    return len;
}

static size_t hello_with(uint8_t *buf, uint16_t version, const char *engine)
{
    return hello_from(buf, version, engine, (uint32_t)getpid());
}

static void check_handshake_refusals(struct target *t)
{
    uint8_t msg[HMAF_MSG_MAX];
    size_t len;

    check_refused(t, "wrong-token", NULL, HMAF_EAUTH);
    CHECK_EQ(target_command(t, 'A'), 1);
    check_refused(t, NULL, NULL, HMAF_EAUTH);
    check_refused(t, TARGET_TOKEN, "no-such-engine", HMAF_ENOENGINE);
    len = hello_with(msg, HMAF_PROTOCOL_VERSION + 1, "cma");
    CHECK_EQ(raw_exchange(t, msg, len), HMAF_EVERSION);
    CHECK_EQ(target_command(t, 'V'), 1);
    len = hello_with(msg, HMAF_PROTOCOL_VERSION, "ucx");
    CHECK_EQ(raw_exchange(t, msg, len), HMAF_EENGINE);
    CHECK_EQ(target_command(t, 'E'), 1);
    /* A pid that is not the connecting process's: no ptrace grant. */
    len = hello_from(msg, HMAF_PROTOCOL_VERSION, "cma", (uint32_t)getpid() + 1);
    CHECK_EQ(raw_exchange(t, msg, len), HMAF_EAUTH);
    /* A blob longer than the engine's max_blob (cma: 4 bytes), well
     * formed on the wire: the host holds the peer to its engine. */
    {
        struct hmaf_hello h = {0};

        hmaf__hello_set_token(&h, TARGET_TOKEN);
        strcpy(h.engine, "cma");
        h.engine_blob.len = 5;
        memcpy(h.engine_blob.data, &(uint32_t){(uint32_t)getpid()}, 4);
        len = hmaf__hello_encode(&h, msg, sizeof(msg));
        CHECK_EQ(raw_exchange(t, msg, len), HMAF_EPROTO);
        CHECK_EQ(target_command(t, 'P'), 1);
    }
    /* Garbage, and a valid header announcing a body of the wrong size. */
    memset(msg, 0xA5, sizeof(msg));
    CHECK_EQ(raw_exchange(t, msg, 200), HMAF_EPROTO);
    CHECK_EQ(target_command(t, 'P'), 1);
    len = hello_with(msg, HMAF_PROTOCOL_VERSION, "cma");
    msg[13] = 0xff; /* body_len past the largest HELLO */
    CHECK_EQ(raw_exchange(t, msg, HMAF_HDR_SIZE), HMAF_EPROTO);
    /* A short hello and a hang-up: the host just drops it. */
    CHECK_EQ(raw_exchange(t, msg, 5) != 0, 1);
}

/* A fake host that answers every connection with `reply`. */
struct fake_host {
    struct hmaf_listener *listener;
    uint8_t reply[HMAF_MSG_MAX];
    size_t reply_len;
};

static void *fake_host_main(void *arg)
{
    struct fake_host *f = arg;
    struct hmaf_channel ch;
    uint8_t hello[HMAF_MSG_MAX];
    uint64_t deadline = hmaf__deadline_ns(3000);

    if (hmaf__listener_accept_wait(f->listener, 3000, &ch) == 0) {
        /* cma's HELLO: a 4-byte blob */
        (void)hmaf__channel_recv(&ch, hello, HMAF_HDR_SIZE +
                                 HMAF_HELLO_BODY_MIN + 4, deadline);
        (void)hmaf__channel_send(&ch, f->reply, f->reply_len, deadline);
        hmaf__channel_close(&ch);
    }
    return NULL;
}

static void check_bad_host(const void *reply, size_t len, int want)
{
    struct fake_host f;
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    pthread_t th;

    CHECK_OK(hmaf__listener_open("tcp:127.0.0.1:0", &f.listener));
    memcpy(f.reply, reply, len);
    f.reply_len = len;
    CHECK(pthread_create(&th, NULL, fake_host_main, &f) == 0);
    hmaf_session_params_init(&p);
    p.address = hmaf__listener_address(f.listener);
    p.token = TARGET_TOKEN;
    p.connect_timeout_ms = 1000;
    CHECK_ERR(hmaf_session_create(&p, &s), want);
    pthread_join(th, NULL);
    hmaf__listener_close(f.listener);
}

static void check_bad_hosts(void)
{
    struct hmaf_welcome w = {0};
    struct hmaf_msg_hdr hdr;
    uint8_t msg[HMAF_MSG_MAX];
    size_t len;

    memset(msg, 0x5A, sizeof(msg));
    check_bad_host(msg, 64, HMAF_EPROTO);
    strcpy(w.engine, "cma");
    len = hmaf__welcome_encode(&w, msg, sizeof(msg));
    hmaf__hdr_decode(msg, &hdr);
    hdr.version = HMAF_PROTOCOL_VERSION + 7;
    hmaf__hdr_encode(&hdr, msg);
    check_bad_host(msg, len, HMAF_EVERSION);
    hdr.version = HMAF_PROTOCOL_VERSION;
    hdr.status = -77777; /* not a refusal code anyone sends */
    hmaf__hdr_encode(&hdr, msg);
    check_bad_host(msg, HMAF_HDR_SIZE, HMAF_EPROTO);
    /* A welcome whose mailbox makes no sense. */
    w.mailbox_slots = 100000;
    w.engine_blob.len = 4;
    memcpy(w.engine_blob.data, &(uint32_t){(uint32_t)getpid()}, 4);
    len = hmaf__welcome_encode(&w, msg, sizeof(msg));
    check_bad_host(msg, len, HMAF_EPROTO);
    check_bad_host(msg, 10, HMAF_ECONNRESET); /* hangs up mid-header */
    /* A sane welcome but for a mailbox export longer than our engine's
     * max_blob (cma: 4): the dpu side does not trust the host either. */
    w.mailbox_slots = 1;
    w.mailbox_len = 1 << 20;
    w.mailbox_addr = 4096;
    w.lease_us = 1000;
    w.mailbox_export.len = 5;
    len = hmaf__welcome_encode(&w, msg, sizeof(msg));
    check_bad_host(msg, len, HMAF_EPROTO);
}

static void *ping_until_error(void *arg)
{
    hmaf_session_t *s = arg;
    int ret;

    while ((ret = hmaf_session_ping(s)) == 0) {
    }
    return (void *)(intptr_t)ret;
}

/* Kill the host while one thread waits in the mailbox and another reads:
 * both get a connection error within a second, and so does every call. */
static void check_host_death(void)
{
    struct target t;
    hmaf_session_t *s;
    pthread_t th;
    void *ret;
    uint64_t buf, start;
    uint8_t tmp[64];

    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_read(s, tmp, buf, sizeof(tmp)));
    CHECK(pthread_create(&th, NULL, ping_until_error, s) == 0);
    kill(t.pid, SIGSTOP); /* the pinger now waits for an answer */
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    start = hmaf__now_ns();
    target_kill(&t);
    pthread_join(th, &ret);
    CHECK_EQ((intptr_t)ret, HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_read(s, tmp, buf, sizeof(tmp)), HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_write(s, buf, tmp, sizeof(tmp)), HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_lookup(s, "buf", &buf, NULL), HMAF_ECONNRESET);
    CHECK(hmaf__now_ns() - start < 1000000000ull);
    hmaf_session_destroy(s);
}

int main(void)
{
    struct target t;
    hmaf_session_t *s;
    uint64_t buf, ro, hole;

    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(s, "ro", &ro, NULL));
    CHECK_OK(hmaf_session_lookup(s, "hole", &hole, NULL));
    check_bad_arguments(s, buf, ro, hole);
    check_handshake_refusals(&t);
    CHECK_OK(hmaf_session_ping(s)); /* the host survived all that */
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    check_bad_hosts();
    check_host_death();
    printf("test_errors: ok\n");
    return 0;
}
