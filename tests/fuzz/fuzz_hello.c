/*
 * The agent's side of the handshake, from the network: connections that
 * send anything, in any pieces, and may half-close or close at any point.
 * The agent must answer each one as handshake.h says (a refusal header
 * with the right code, or a WELCOME describing a real mailbox), or close
 * it, or keep waiting for the rest of a HELLO; and it must forget every
 * connection that went away.
 *
 * Set up once per process: an agent in this process (threaded = 0, at
 * most MAX_SESSIONS sessions) that listens on an abstract unix socket.
 * Each input is a program over up to 8 client connections; one byte c,
 * then its arguments:
 *   (c >> 3) & 7:  0, 5, 6, 7  send: n u16, then n bytes
 *                  1           send (as 0), then one hmaf_agent_poll
 *                  2           shutdown(SHUT_WR)
 *                  3           close (a later send opens a new connection)
 *                  4           one hmaf_agent_poll; for connection 7: n u8,
 *                              then n % 96 silent connections, kept open
 *                              to the end (more than the agent keeps
 *                              waiting for: the oldest are refused)
 *   c & 7: the connection.
 * The four bytes "$PID" in a send become this process's pid (little-
 * endian), so committed seeds can carry the cma engine blob a WELCOME
 * needs. At the end of an input the agent is driven until it has nothing
 * left to do, each open connection's answer is read and held to a model
 * of the handshake computed from the bytes sent, and everything is
 * closed; the agent must then have no session and no pending connection.
 * Every SESSION_CHECK_EVERY inputs a real session must still come up, and
 * the process must hold no more fds than after the first input (pipes
 * aside: the sanitizer runtime's symbolizer comes and stays).
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "host/agent_int.h"
#include "proto/handshake.h"
#include "proto/mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN               "fuzz-hello"
#define NCONNS              8
#define MAX_OPENS           16 /* connections opened by one input */
#define NSLOTS              2
#define MAX_SESSIONS        4 /* small: a few HELLOs meet the limit */
#define MAX_SILENT          96
#define SESSION_CHECK_EVERY 64
#define CALL_TIMEOUT_MS     10000
#define HELLO_SIZE          (HMAF_HDR_SIZE + HMAF_HELLO_BODY_SIZE)
#define WELCOME_SIZE        (HMAF_HDR_SIZE + HMAF_WELCOME_BODY_SIZE)

struct conn {
    int fd;
    uint8_t sent[HELLO_SIZE]; /* the first bytes that left */
    size_t nsent;             /* all of them */
    int shut;
    uint8_t got[WELCOME_SIZE + 64];
    size_t ngot;
    int eof;
};

enum outcome { PENDING, CLOSED, REFUSED, WELCOMED };
static const char *const outcome_names[] = {"pending", "closed", "refused",
                                            "welcomed"};

static hmaf_agent_t *agent;
static char address[64];
static char sun_name[64];
static struct conn conns[NCONNS];
static int opens;
static int closed_early; /* connections this input closed before the end */
static int silent[MAX_SILENT];
static size_t nsilent;
static uint64_t ids_before;  /* the newest session id of earlier inputs */
static uint64_t ids[NCONNS]; /* this input's, in the order checked */
static size_t nids;
static unsigned long inputs;
static int fd_baseline = -1;
static uint8_t pid_blob[4];

/* ---- connections ---- */

/* A connected socket, or -1 when the listen backlog is full (the agent
 * accepts only when polled). */
static int dial(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t name_len = strlen(sun_name);
    socklen_t len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    memcpy(sa.sun_path + 1, sun_name, name_len); /* abstract: leading NUL */
    if (connect(fd, (struct sockaddr *)&sa, len) == 0) {
        return fd;
    }
    FUZZ_CHECK(errno == EAGAIN, "connect %s: %s", address, strerror(errno));
    close(fd);
    return -1;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
}

static void open_silent(uint8_t n)
{
    for (size_t i = 0; i < n % MAX_SILENT && nsilent < MAX_SILENT; i++) {
        int fd = dial();
        if (fd < 0) {
            return;
        }
        silent[nsilent++] = fd;
    }
}

static void patch_pid(uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(p + i, "$PID", 4) == 0) {
            memcpy(p + i, pid_blob, 4);
        }
    }
}

static void conn_send(struct conn *c, struct fuzz_in *in)
{
    uint8_t buf[1024];
    size_t n = fuzz_u16(in);
    ssize_t ret;

    n = fuzz_take_bytes(in, buf, n < sizeof(buf) ? n : sizeof(buf));
    if (c->fd < 0) {
        int fd = opens < MAX_OPENS ? dial() : -1;
        if (fd < 0) {
            return;
        }
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        opens++;
    }
    patch_pid(buf, n);
    /* Fails once the agent closed its end (EPIPE): those bytes never
     * reached it, and the model does not count them. */
    ret = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (ret <= 0) {
        return;
    }
    for (size_t i = 0; i < (size_t)ret && c->nsent + i < HELLO_SIZE; i++) {
        c->sent[c->nsent + i] = buf[i];
    }
    c->nsent += (size_t)ret;
}

/* Read what the agent sent, without waiting; EOF or a reset ends it. */
static void conn_drain(struct conn *c)
{
    for (;;) {
        uint8_t buf[256];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            /* A reset: the agent closed with some of our bytes unread. */
            FUZZ_CHECK(n == 0 || errno == ECONNRESET, "recv: %s",
                       strerror(errno));
            c->eof = 1;
            return;
        }
        FUZZ_CHECK(c->ngot + (size_t)n <= sizeof(c->got),
                   "the agent sent %zu bytes and more", c->ngot);
        memcpy(c->got + c->ngot, buf, (size_t)n);
        c->ngot += (size_t)n;
    }
}

/* ---- the model ---- */

static int header_verdict(const struct hmaf_msg_hdr *h)
{
    if (h->magic != HMAF_WIRE_MAGIC || h->type != HMAF_MSG_HELLO) {
        return HMAF_EPROTO;
    }
    if (h->version != HMAF_PROTOCOL_VERSION) {
        return HMAF_EVERSION;
    }
    return h->status != 0 || h->body_len != HMAF_HELLO_BODY_SIZE ? HMAF_EPROTO
                                                                 : 0;
}

/* A complete HELLO: refused with which code, or 0 for a WELCOME. The
 * session limit comes between the checks of the message and the engine's
 * look at its blob: *admissible_out says whether it got that far. */
static int hello_verdict(const uint8_t *body, int *admissible_out)
{
    struct hmaf_hello h;
    uint8_t want[32] = {0};
    uint32_t pid;

    if (hmaf__hello_decode(body, HMAF_HELLO_BODY_SIZE, &h) != 0) {
        return HMAF_EPROTO;
    }
    memcpy(want, TOKEN, strlen(TOKEN));
    if (h.token_len != strlen(TOKEN) || memcmp(h.token, want, 32) != 0) {
        return HMAF_EAUTH;
    }
    if (strcmp(h.engine, "cma") != 0) {
        return HMAF_EENGINE;
    }
    *admissible_out = 1;
    /* cma's blob: the dpu side's pid, which the socket vouches for. */
    if (h.engine_blob.len != 4) {
        return HMAF_EPROTO;
    }
    memcpy(&pid, h.engine_blob.data, 4);
    if (pid == 0 || pid > INT_MAX) {
        return HMAF_EPROTO;
    }
    return pid == (uint32_t)getpid() ? 0 : HMAF_EAUTH;
}

static enum outcome model(const struct conn *c, int *code_out,
                          int *admissible_out)
{
    struct hmaf_msg_hdr h;

    if (c->nsent < HMAF_HDR_SIZE) {
        return c->shut ? CLOSED : PENDING;
    }
    hmaf__hdr_decode(c->sent, &h);
    *code_out = header_verdict(&h);
    if (*code_out < 0) {
        return REFUSED;
    }
    if (c->nsent < HELLO_SIZE) {
        return c->shut ? CLOSED : PENDING;
    }
    *code_out = hello_verdict(c->sent + HMAF_HDR_SIZE, admissible_out);
    return *code_out < 0 ? REFUSED : WELCOMED;
}

/* ---- checking the answers ---- */

static void check_welcome(const struct conn *c, const struct hmaf_msg_hdr *h)
{
    struct hmaf_welcome w;
    hmaf_agent_params_t p;

    hmaf_agent_params_init(&p);
    FUZZ_CHECK(h->body_len == HMAF_WELCOME_BODY_SIZE && c->ngot == WELCOME_SIZE,
               "WELCOME: body %u, %zu bytes", h->body_len, c->ngot);
    FUZZ_CHECK(hmaf__welcome_decode(c->got + HMAF_HDR_SIZE,
                                    HMAF_WELCOME_BODY_SIZE, &w) == 0,
               "WELCOME body does not decode");
    FUZZ_CHECK(strcmp(w.engine, "cma") == 0 && w.engine_blob.len == 4 &&
                   memcmp(w.engine_blob.data, pid_blob, 4) == 0,
               "WELCOME: engine %s", w.engine);
    /* New, and unique: connections are served in no particular order. */
    FUZZ_CHECK(w.session_id > ids_before, "session id %llu after %llu",
               (unsigned long long)w.session_id,
               (unsigned long long)ids_before);
    for (size_t i = 0; i < nids; i++) {
        FUZZ_CHECK(ids[i] != w.session_id, "session id %llu twice",
                   (unsigned long long)w.session_id);
    }
    ids[nids++] = w.session_id;
    FUZZ_CHECK(w.mailbox_slots == NSLOTS &&
                   w.mailbox_len == hmaf__mbox_size(NSLOTS) &&
                   w.mailbox_addr != 0 && w.mailbox_addr % 4096 == 0 &&
                   w.mailbox_export.len == 0,
               "WELCOME: mailbox at %llx, %llu bytes, %u slots",
               (unsigned long long)w.mailbox_addr,
               (unsigned long long)w.mailbox_len, w.mailbox_slots);
    FUZZ_CHECK(w.lease_us == (uint32_t)p.revoke_wait_ms * 1000u / 4u,
               "lease %u us", w.lease_us);
}

/* What came back: nothing (with or without EOF), a refusal (then EOF),
 * or a WELCOME. Anything else is broken. */
static enum outcome observed(size_t i, const struct conn *c, int *code_out)
{
    struct hmaf_msg_hdr h;

    if (c->ngot == 0) {
        return c->eof ? CLOSED : PENDING;
    }
    FUZZ_CHECK(c->ngot >= HMAF_HDR_SIZE && hmaf__hdr_decode(c->got, &h) == 0 &&
                   h.version == HMAF_PROTOCOL_VERSION &&
                   h.type == HMAF_MSG_WELCOME && h.status <= 0,
               "conn %zu: %zu bytes back, not an answer", i, c->ngot);
    *code_out = h.status;
    if (h.status == 0) {
        check_welcome(c, &h);
        return WELCOMED;
    }
    FUZZ_CHECK(strcmp(hmaf_err_name(h.status), "HMAF_UNKNOWN") != 0 &&
                   h.body_len == 0 && c->ngot == HMAF_HDR_SIZE && c->eof,
               "conn %zu: refusal %d with %u body bytes, %zu in all, eof %d", i,
               h.status, h.body_len, c->ngot, c->eof);
    return REFUSED;
}

/* The sessions of this input: those it had to refuse for want of room
 * must have been, at the time, MAX_SESSIONS live ones. */
static int sessions_full(void)
{
    int welcomed = 0;

    for (size_t i = 0; i < NCONNS; i++) {
        welcomed += conns[i].fd >= 0 && conns[i].ngot == WELCOME_SIZE;
    }
    return welcomed + closed_early >= MAX_SESSIONS;
}

static void check_conn(size_t i, struct conn *c)
{
    int want_code = 0, got_code = 0, admissible = 0;
    enum outcome want = model(c, &want_code, &admissible);
    enum outcome got = observed(i, c, &got_code);

    FUZZ_TRACE("conn %zu: %zu bytes sent%s: %s %s, got %s %s\n", i, c->nsent,
               c->shut ? ", shut" : "", outcome_names[want],
               want == REFUSED ? hmaf_err_name(want_code) : "",
               outcome_names[got],
               got == REFUSED ? hmaf_err_name(got_code) : "");
    if (got == want && got_code == want_code) {
        /* A session ends at any event on its channel: our half-close,
         * or bytes past the HELLO. */
        FUZZ_CHECK(got != WELCOMED ||
                       c->eof == (c->shut || c->nsent > HELLO_SIZE),
                   "conn %zu: session after WELCOME: eof %d", i, c->eof);
        return;
    }
    /* Pushed out of a full pending table by newer connections. */
    if (got == REFUSED && got_code == HMAF_EPROTO && nsilent > 0) {
        return;
    }
    /* No room: the HELLO passed every check before the session limit. */
    FUZZ_CHECK(got == REFUSED && got_code == HMAF_ENOSPC && admissible &&
                   sessions_full(),
               "conn %zu (%zu bytes sent%s): %s %s, want %s %s", i, c->nsent,
               c->shut ? ", shut" : "", outcome_names[got],
               got == REFUSED ? hmaf_err_name(got_code) : "",
               outcome_names[want],
               want == REFUSED ? hmaf_err_name(want_code) : "");
}

/* A silent connection: still waiting, or pushed out with a refusal. */
static void check_silent(int fd)
{
    struct conn c = {.fd = fd};
    int code = 0;

    conn_drain(&c);
    FUZZ_CHECK(observed(99, &c, &code) == PENDING ||
                   (code == HMAF_EPROTO && c.eof),
               "silent connection: %zu bytes back, eof %d", c.ngot, c.eof);
}

/* Drive the agent until a poll finds nothing to do. */
static void settle(void)
{
    for (int i = 0; i < 16; i++) {
        int ret = hmaf_agent_poll(agent, 0);
        FUZZ_CHECK(ret >= 0, "hmaf_agent_poll: %s", hmaf_err_name(ret));
        if (ret == 0) {
            return;
        }
    }
    FUZZ_CHECK(0, "the agent keeps finding work");
}

/* Everything closed: the agent must let go of all of it. */
static void check_forgotten(void)
{
    hmaf_agent_stats_t st;

    settle();
    FUZZ_CHECK(hmaf_agent_stats(agent, &st) == 0, "stats");
    FUZZ_CHECK(st.sessions_live == 0, "%llu sessions outlive their peers",
               (unsigned long long)st.sessions_live);
    FUZZ_CHECK(agent->npending == 0,
               "%zu pending connections outlive their peers", agent->npending);
}

/* ---- a real session ---- */

static int real_session(void *unused)
{
    hmaf_session_params_t p;
    hmaf_session_t *s;
    int ret;

    (void)unused;
    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.connect_timeout_ms = CALL_TIMEOUT_MS / 2;
    p.rpc_timeout_ms = CALL_TIMEOUT_MS / 2;
    ret = hmaf_session_create(&p, &s);
    if (ret == 0) {
        ret = hmaf_session_ping(s);
        hmaf_session_destroy(s);
    }
    return ret;
}

static void check_real_session(void)
{
    int ret = fuzz_beside_agent(agent, real_session, NULL, CALL_TIMEOUT_MS);
    int fds;

    FUZZ_CHECK(ret == 0, "a real session: %s", hmaf_err_name(ret));
    check_forgotten();
    fds = fuzz_count_fds(0);
    if (fd_baseline < 0) {
        fd_baseline = fds;
    }
    if (fds > fd_baseline) {
        fuzz_count_fds(1);
    }
    FUZZ_CHECK(fds <= fd_baseline, "%d fds open, %d after the first input", fds,
               fd_baseline);
}

static void set_up(void)
{
    hmaf_agent_params_t p;
    uint32_t pid = (uint32_t)getpid();

    fuzz_quiet_logs();
    for (size_t i = 0; i < 4; i++) {
        pid_blob[i] = (uint8_t)(pid >> (8 * i));
    }
    snprintf(sun_name, sizeof(sun_name), "hmaf-fuzz-hello-%d", (int)pid);
    snprintf(address, sizeof(address), "unix:@%s", sun_name);
    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TOKEN;
    p.threaded = 0;
    p.mailbox_slots = NSLOTS;
    p.max_sessions = MAX_SESSIONS;
    FUZZ_CHECK(hmaf_agent_create(&p, &agent) == 0, "agent at %s", address);
    for (size_t i = 0; i < NCONNS; i++) {
        conns[i].fd = -1;
    }
    check_real_session();
}

/* ---- the input ---- */

static void run_command(struct fuzz_in *in)
{
    uint8_t c = fuzz_u8(in);
    struct conn *conn = &conns[c & 7];

    switch ((c >> 3) & 7) {
    case 1:
        conn_send(conn, in);
        (void)hmaf_agent_poll(agent, 0);
        break;
    case 2:
        if (conn->fd >= 0 && shutdown(conn->fd, SHUT_WR) == 0) {
            conn->shut = 1;
        }
        break;
    case 3:
        closed_early += conn->fd >= 0;
        conn_close(conn);
        break;
    case 4:
        if ((c & 7) == 7) {
            open_silent(fuzz_u8(in));
        } else {
            FUZZ_CHECK(hmaf_agent_poll(agent, 0) >= 0, "poll");
        }
        break;
    default:
        conn_send(conn, in);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};

    if (agent == NULL) {
        set_up();
    }
    opens = closed_early = 0;
    nsilent = nids = 0;
    while (fuzz_more(&in)) {
        run_command(&in);
    }
    settle();
    for (size_t i = 0; i < NCONNS; i++) {
        if (conns[i].fd >= 0) {
            conn_drain(&conns[i]);
        }
    }
    for (size_t i = 0; i < NCONNS; i++) {
        if (conns[i].fd >= 0) {
            check_conn(i, &conns[i]);
        }
    }
    for (size_t i = 0; i < nsilent; i++) {
        check_silent(silent[i]);
        close(silent[i]);
    }
    for (size_t i = 0; i < NCONNS; i++) {
        conn_close(&conns[i]);
    }
    for (size_t i = 0; i < nids; i++) {
        ids_before = ids[i] > ids_before ? ids[i] : ids_before;
    }
    check_forgotten();
    if (++inputs % SESSION_CHECK_EVERY == 0) {
        check_real_session();
    }
    return 0;
}
