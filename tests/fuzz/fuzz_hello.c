/*
 * The agent's side of the handshake, from the network: connections that
 * send anything, in any pieces, and may half-close or close at any point,
 * alongside floods of silent ones. The agent must answer each one as
 * handshake.h says (a refusal header with the right code, or a WELCOME
 * describing a real mailbox), or close it, or keep waiting for the rest
 * of a HELLO; and it must forget every connection that went away.
 *
 * Set up once per process: an agent in this process (threaded = 0, at
 * most MAX_SESSIONS sessions) that listens on an abstract unix socket.
 * Each input is a program over up to 8 client connections; one byte c,
 * then its arguments:
 *   (c >> 3) & 7:  0, 5, 6, 7  send: n u16, then n bytes
 *                  1           send (as 0), then one hmaf_agent_poll
 *                  2           shutdown(SHUT_WR)
 *                  3           close (a later send opens a new connection)
 *                  4           one hmaf_agent_poll; for connection 5 first
 *                              a jump of the clock past the grace: every
 *                              connection waiting for its HELLO has waited
 *                              longer than its grace; for connection 6 the
 *                              same and past the handshake time-out too;
 *                              for connection 7 instead a flood: n u8,
 *                              then, for n < 0xf0, n % 96 silent
 *                              connections without a poll (96 an input at
 *                              most), else, once an input, a fill (a
 *                              thousand connections, tens of
 *                              milliseconds): as many as the table of
 *                              waiting connections has room for plus
 *                              n & 15, with a poll after every 64, until
 *                              the table is full and the listener rests;
 *                              silent ones stay open to the end
 *   c & 7: the connection.
 * The four bytes "$PID" in a send become this process's pid (little-
 * endian), so committed seeds can carry the cma engine blob a WELCOME
 * needs.
 *
 * The model is the agent's loop, step by step: every dial, send, close
 * and poll of the input is applied to a copy of the agent's state (the
 * listen backlog, whether the listener rests, the table of connections
 * waiting for their HELLO in the agent's order, the live sessions, the
 * graves), so each outcome is known exactly: a connection is read once
 * when accepted (a HELLO sent with the connect is answered at once) and
 * again whenever it has something new; before each accept a full table
 * makes its oldest entry give way after a last look (refused with
 * HMAF_ETIMEDOUT unless that look finished it) if it waited past its grace,
 * else the listener rests (newcomers stay in the backlog) until the clock
 * jumps; the time-out jump refuses every waiting connection with
 * HMAF_ETIMEDOUT; a session ends at any event on its channel (our
 * half-close, a close, bytes past the HELLO), and one whose peer sent more
 * and is still there becomes a grave, which keeps its place among
 * MAX_SESSIONS (HMAF_ENOSPC) until the peer closes its end (half or
 * whole; the agent sees that past unread bytes), swallowing 256 bytes
 * a poll meanwhile; a complete HELLO from a peer that closed before its
 * WELCOME went out is no refusal, but uses a session id. After each poll
 * the agent must count the events the model does and hold as many
 * waiting connections (in the model's order of age), sessions and graves,
 * and its listener must rest exactly when the model's does. At the end of
 * an input the agent is driven until it has nothing left to do (the
 * clock jumps past the grace where newcomers wait behind a resting
 * listener), each open connection's answer is read and must be the
 * model's (the refusal code, the WELCOME's session id, end of stream or
 * not), and the agent's counters of refusals and sessions must agree;
 * then everything is closed, and the agent must have no session, grave
 * or waiting connection. Every SESSION_CHECK_EVERY inputs a real session
 * must still come up, and the process must hold no more fds than after
 * the first input (pipes aside: the sanitizer runtime's symbolizer comes
 * and stays).
 *
 * The agent's clock stands still between polls (hold_clock), so that only
 * the jumps end a grace, a listener's rest or a handshake time-out.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "host/agent_int.h"
#include "proto/handshake.h"
#include "proto/mailbox.h"
#include "util/clock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN               "fuzz-hello"
#define NCONNS              8
#define MAX_OPENS           16 /* connections opened by one input */
#define NSLOTS              2
#define MAX_SESSIONS        4    /* small: a few HELLOs meet the limit */
#define MAX_SILENT          96   /* a flood without polls */
#define FILL                0xf0 /* a flood's n from here on is a fill */
#define FILL_EXTRA          15   /* a fill: the table's room, then this many */
#define TABLE_MAX           HMAF_AGENT_PENDING_MAX
#define MAX_FLOOD           (TABLE_MAX + FILL_EXTRA)
#define MAX_PEERS           (MAX_OPENS + MAX_SILENT + MAX_FLOOD)
#define SESSION_CHECK_EVERY 64
#define CALL_TIMEOUT_MS     10000
/* Longer than libFuzzer's -timeout: only the clock jump ends a wait. */
#define HANDSHAKE_MS 60000
/* The largest HELLO (its header says how long it is), and cma's WELCOME:
 * a 4-byte engine blob, an empty mailbox export. */
#define HELLO_MAX         (HMAF_HDR_SIZE + HMAF_HELLO_BODY_MAX)
#define WELCOME_BODY_SIZE (HMAF_WELCOME_BODY_MIN + 4)
#define WELCOME_SIZE      (HMAF_HDR_SIZE + WELCOME_BODY_SIZE)
/* cma's limits.max_blob */
#define CMA_BLOB_MAX 4
/* The agent's grace for waiting connections (pending_grace_ns; 200 ms by
 * default, stretched so that no poll on a busy machine takes that long),
 * and what a grave reads of its peer a turn (loop.c). */
#define GRACE_NS   2000000000ull
#define GRAVE_SINK 256
/* The harness's clock (hold_clock): a jump moves the agent's times back
 * JUMP_NS; a waiting connection accepted SPLIT_NS ago or more was jumped
 * past its grace. */
#define JUMP_NS  8000000000ull
#define SPLIT_NS 4000000000ull

enum where { IN_BACKLOG, WAITING, IN_SESSION, DONE };
enum jump { NO_JUMP, GRACE_JUMP, TIMEOUT_JUMP };
enum outcome { PENDING, CLOSED, REFUSED, WELCOMED };
static const char *const outcome_names[] = {"pending", "closed", "refused",
                                            "welcomed"};

/* One connection of this input, as the model has it. */
struct peer {
    int fd;                   /* ours; -1 once we closed it */
    int silent;               /* of a flood: sends nothing */
    uint8_t sent[HELLO_MAX]; /* the first bytes that left */
    size_t nsent;             /* all of them */
    size_t taken;             /* what the agent read */
    int shut;                 /* we half-closed it */
    int closed;               /* we closed it */
    enum where where;
    uint64_t accepted;    /* accept order: the oldest gives way */
    int ripe;             /* waited past its grace (a jump) */
    int aged;             /* its deadline passed (the time-out jump) */
    enum outcome outcome; /* once DONE or IN_SESSION */
    int code;             /* REFUSED: the code */
    int ended;            /* WELCOMED: the agent closed the session */
    size_t sunk;          /* of what we sent past the HELLO, what the
                             agent's grave read and dropped */
    uint64_t session_id;
};

/* What came back on a connection. */
struct answer {
    uint8_t got[WELCOME_SIZE + 64];
    size_t ngot;
    int eof;
};

/* The agent, as the model has it. */
struct model {
    struct peer peers[MAX_PEERS];
    size_t npeers;
    size_t backlog[MAX_PEERS]; /* dialed, not accepted yet: a queue */
    size_t backlog_head, backlog_tail;
    size_t table[TABLE_MAX]; /* the agent's pending[], in its order */
    size_t ntable;
    size_t sessions[MAX_SESSIONS];
    size_t nsessions;
    size_t graves[MAX_SESSIONS]; /* ended sessions whose peers may write */
    size_t ngraves;
    int resting; /* the listener: a full table's oldest was in its grace */
    int stirred; /* this poll: a grave read something */
    int young;   /* this poll: a full table's oldest was in its grace */
    uint64_t accepts;
    uint64_t session_ids; /* the agent's next_session_id */
    uint64_t refused;     /* this input's refusals */
    int last_refusal;
    uint64_t welcomed;
    size_t silent; /* connections of floods without polls */
    size_t filled; /* of the fill */
};

static hmaf_agent_t *agent;
static char address[64];
static char sun_name[64];
static struct model m;
static size_t conns[NCONNS]; /* the peer of each, or SIZE_MAX */
static int opens;
static size_t flood_max;         /* connections a fill may open */
/* at the start of the input */
static hmaf_agent_stats_t stats = HMAF_AGENT_STATS_INIT;
static unsigned long inputs;
static int fd_baseline = -1;
static uint8_t pid_blob[4];

/* ---- the model: the handshake ---- */

static int header_verdict(const struct hmaf_msg_hdr *h)
{
    if (h->magic != HMAF_WIRE_MAGIC || h->type != HMAF_MSG_HELLO) {
        return HMAF_EPROTO;
    }
    if (h->version != HMAF_PROTOCOL_VERSION) {
        return HMAF_EVERSION;
    }
    return h->status != 0 || h->body_len < HMAF_HELLO_BODY_MIN ||
                   h->body_len > HMAF_HELLO_BODY_MAX
               ? HMAF_EPROTO
               : 0;
}

/* The whole HELLO p announced, once its header is in. */
static size_t hello_size(const struct peer *p)
{
    struct hmaf_msg_hdr h;

    hmaf__hdr_decode(p->sent, &h);
    return HMAF_HDR_SIZE + h.body_len;
}

/* A complete HELLO: refused with which code, or 0 for a WELCOME. The
 * session limit comes between the checks of the message and the engine's
 * look at its blob: *admissible_out says whether it got that far. */
static int hello_verdict(const uint8_t *body, size_t len,
                         int *admissible_out)
{
    struct hmaf_hello h;
    uint8_t want[32] = {0};
    uint32_t pid;

    *admissible_out = 0;
    if (hmaf__hello_decode(body, len, &h) != 0) {
        return HMAF_EPROTO;
    }
    memcpy(want, TOKEN, strlen(TOKEN));
    if (h.token_len != strlen(TOKEN) || memcmp(h.token, want, 32) != 0) {
        return HMAF_EAUTH;
    }
    if (strcmp(h.engine, "cma") != 0) {
        return HMAF_EENGINE;
    }
    if (h.engine_blob.len > CMA_BLOB_MAX) { /* the engine's max_blob */
        return HMAF_EPROTO;
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

static void model_refuse(struct peer *p, int code)
{
    p->where = DONE;
    p->outcome = REFUSED;
    p->code = code;
    m.refused++;
    m.last_refusal = code;
}

/* The complete HELLO of p: refused, or a session, or nothing at all when
 * the peer is gone before its WELCOME could go out. */
static void model_hello(struct peer *p)
{
    int admissible;
    int code = hello_verdict(p->sent + HMAF_HDR_SIZE,
                             hello_size(p) - HMAF_HDR_SIZE, &admissible);

    if (!admissible) {
        model_refuse(p, code);
        return;
    }
    if (m.nsessions + m.ngraves >= MAX_SESSIONS) { /* graves hold places */
        model_refuse(p, HMAF_ENOSPC);
        return;
    }
    m.session_ids++;
    if (code < 0) {
        model_refuse(p, code);
        return;
    }
    p->where = DONE;
    p->outcome = CLOSED;
    if (p->closed) {
        return;
    }
    p->where = IN_SESSION;
    p->outcome = WELCOMED;
    p->session_id = m.session_ids;
    m.sessions[m.nsessions++] = (size_t)(p - m.peers);
    m.welcomed++;
}

/* Something to read, or the end of the stream? */
static int readable(const struct peer *p)
{
    return p->nsent > p->taken || p->shut || p->closed;
}

/* The agent reads what p sent until the HELLO is complete: 1 when p is
 * finished with (answered or closed), 0 when it goes on waiting. */
static int model_advance(struct peer *p)
{
    for (;;) {
        size_t need = HMAF_HDR_SIZE;
        if (p->taken >= HMAF_HDR_SIZE) {
            struct hmaf_msg_hdr h;
            int code;
            hmaf__hdr_decode(p->sent, &h);
            code = header_verdict(&h);
            if (code < 0) {
                model_refuse(p, code);
                return 1;
            }
            need = hello_size(p);
        }
        if (p->taken >= HMAF_HDR_SIZE && p->taken == hello_size(p)) {
            model_hello(p);
            return 1;
        }
        if (p->nsent == p->taken) {
            if (p->shut || p->closed) {
                p->where = DONE; /* left before saying hello */
                p->outcome = CLOSED;
                return 1;
            }
            return 0;
        }
        need -= p->taken;
        p->taken += need < p->nsent - p->taken ? need : p->nsent - p->taken;
    }
}

static void table_drop(size_t i)
{
    m.table[i] = m.table[--m.ntable];
}

/* The table is full: its longest waiter gives way, after a last look,
 * once past its grace; until then the listener rests. 1 when a place is
 * free now. */
static int model_give_way(void)
{
    size_t oldest = 0;
    struct peer *p;

    for (size_t i = 1; i < m.ntable; i++) {
        if (m.peers[m.table[i]].accepted < m.peers[m.table[oldest]].accepted) {
            oldest = i;
        }
    }
    p = &m.peers[m.table[oldest]];
    if (!p->ripe) {
        m.resting = 1;
        m.young = 1;
        return 0;
    }
    if (!model_advance(p)) {
        model_refuse(p, HMAF_ETIMEDOUT);
    }
    table_drop(oldest);
    return 1;
}

static int model_newcomer(void)
{
    return m.backlog_head < m.backlog_tail;
}

/* Up to HMAF_AGENT_ACCEPTS_PER_TURN newcomers while there is room. A
 * full table gives way to a newcomer only: none waiting, none is dropped
 * and the listener does not rest. */
static void model_accept(void)
{
    for (int n = 0; n < HMAF_AGENT_ACCEPTS_PER_TURN && model_newcomer() &&
                    (m.ntable < TABLE_MAX || model_give_way());
         n++) {
        struct peer *p = &m.peers[m.backlog[m.backlog_head++]];

        m.table[m.ntable++] = (size_t)(p - m.peers);
        p->where = WAITING;
        p->accepted = m.accepts++;
        if (model_advance(p)) { /* the first look */
            table_drop(m.ntable - 1);
        }
    }
}

/* Bytes p sent past its HELLO that the agent has not read. */
static size_t unread(const struct peer *p)
{
    return p->nsent - hello_size(p) - p->sunk;
}

/* A session ends; its peer closed its end (half or whole: the agent
 * sees that past anything unread), or it may still write: a grave. */
static void model_end_session(size_t i)
{
    struct peer *p = &m.peers[m.sessions[i]];

    p->where = DONE;
    p->ended = 1;
    m.sessions[i] = m.sessions[--m.nsessions];
    if (unread(p) > 0 && !p->shut && !p->closed) {
        m.graves[m.ngraves++] = (size_t)(p - m.peers);
    }
}

/* A grave whose peer stirred: it goes once its peer closed its end, else
 * it reads what came and drops it. 1 when it went (an event). */
static int model_grave(size_t i)
{
    struct peer *p = &m.peers[m.graves[i]];
    size_t left = unread(p);

    if (!p->shut && !p->closed) {
        if (left > 0) {
            p->sunk += left < GRAVE_SINK ? left : GRAVE_SINK;
            m.stirred = 1;
        }
        return 0;
    }
    m.graves[i] = m.graves[--m.ngraves];
    return 1;
}

/* One turn of the agent's loop (loop.c): the events ppoll reports are
 * handled back to front in the order the loop collected them (the
 * listener unless it rests, waiting connections, sessions, graves), so
 * graves first, then sessions, then the waiting connections from the last
 * one, then the new ones; expiry last. Returns the events the agent
 * counts. */
static int model_poll(void)
{
    int events = 0;

    m.stirred = m.young = 0;
    for (size_t i = m.ngraves; i-- > 0;) {
        events += model_grave(i);
    }
    for (size_t i = m.nsessions; i-- > 0;) {
        if (readable(&m.peers[m.sessions[i]])) {
            model_end_session(i);
            events++;
        }
    }
    /* Removing entry i moves the last one, looked at already, into it. */
    for (size_t i = m.ntable; i-- > 0;) {
        if (readable(&m.peers[m.table[i]])) {
            events++;
            if (model_advance(&m.peers[m.table[i]])) {
                table_drop(i);
            }
        }
    }
    if (!m.resting && model_newcomer()) {
        events++;
        model_accept();
    }
    for (size_t i = m.ntable; i-- > 0;) {
        if (m.peers[m.table[i]].aged) {
            model_refuse(&m.peers[m.table[i]], HMAF_ETIMEDOUT);
            table_drop(i);
        }
    }
    return events;
}

/* A jump of the clock: what waits now has waited past its grace (and
 * with TIMEOUT_JUMP past its handshake time-out); a resting listener
 * listens again. */
static void model_jump(enum jump j)
{
    for (size_t i = 0; i < m.ntable; i++) {
        m.peers[m.table[i]].ripe = 1;
        m.peers[m.table[i]].aged |= j == TIMEOUT_JUMP;
    }
    m.resting = 0;
}

/* ---- driving the agent ---- */

/* The agent's clock, held (run before each poll). Between two polls it
 * stands still: the waiting connections get new accept times in the
 * agent's own order (oldest first, a nanosecond apart), just before now
 * for those still in their grace, JUMP_NS before that for those a jump
 * took past it; a resting listener rests on, as from now. So only a
 * poll's own time passes for the agent, far less than the grace, and only
 * the jumps end a grace or a rest. (Deadlines keep the real clock: 60 s,
 * longer than any input takes.) */
static uint64_t clock_held;

static int older(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    uint64_t ti = agent->pending[i].accepted_ns;
    uint64_t tj = agent->pending[j].accepted_ns;

    return ti != tj ? (ti < tj ? -1 : 1) : (i < j ? -1 : 1);
}

static int agent_resting(uint64_t now)
{
    return agent->listen_paused_until_ns + SPLIT_NS > now;
}

static void hold_clock(void)
{
    static size_t order[TABLE_MAX];
    size_t n = agent->npending;
    uint64_t now = hmaf__now_ns();

    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    qsort(order, n, sizeof(order[0]), older);
    for (size_t r = 0; r < n; r++) {
        struct agent_pending *p = &agent->pending[order[r]];
        uint64_t base = now - p->accepted_ns >= SPLIT_NS ? now - JUMP_NS : now;
        p->accepted_ns = base - (n - r);
    }
    if (agent_resting(now)) {
        agent->listen_paused_until_ns = now + GRACE_NS;
    }
    clock_held = now;
}

/* The agent's side of a jump: its times move back (the same shift for
 * all keeps their order). */
static void jump(enum jump j)
{
    uint64_t *rest = &agent->listen_paused_until_ns;

    for (size_t i = 0; i < agent->npending; i++) {
        agent->pending[i].accepted_ns -= JUMP_NS;
        if (j == TIMEOUT_JUMP) {
            agent->pending[i].deadline_ns -=
                (uint64_t)agent->params.handshake_timeout_ms * 1000000u;
        }
    }
    *rest = *rest > JUMP_NS ? *rest - JUMP_NS : 0;
    model_jump(j);
}

/* The agent holds what the model does: the waiting connections (their
 * accept times in the model's order), sessions and graves, and its
 * listener rests or not. */
static void check_agent(void)
{
    static uint64_t by_age[MAX_PEERS];
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    uint64_t last = 0;

    FUZZ_CHECK(hmaf_agent_stats(agent, &st) == 0, "stats");
    FUZZ_CHECK(agent->npending == m.ntable,
               "%zu connections wait for their HELLO, want %zu",
               agent->npending, m.ntable);
    FUZZ_CHECK(st.sessions_live == m.nsessions && agent->ngraves == m.ngraves,
               "%llu sessions and %zu graves, want %zu and %zu",
               (unsigned long long)st.sessions_live, agent->ngraves,
               m.nsessions, m.ngraves);
    FUZZ_CHECK(agent_resting(hmaf__now_ns()) == m.resting,
               "the listener %s, want it %s", m.resting ? "listens" : "rests",
               m.resting ? "resting" : "listening");
    memset(by_age, 0, m.accepts * sizeof(by_age[0]));
    for (size_t i = 0; i < m.ntable; i++) {
        by_age[m.peers[m.table[i]].accepted] = agent->pending[i].accepted_ns;
    }
    for (size_t k = 0; k < m.accepts; k++) {
        FUZZ_CHECK(by_age[k] == 0 || by_age[k] > last,
                   "waiting connection %zu accepted at %llu ns, before one "
                   "accepted earlier (%llu)",
                   k, (unsigned long long)by_age[k], (unsigned long long)last);
        last = by_age[k] != 0 ? by_age[k] : last;
    }
}

/* One hmaf_agent_poll after the jump j, and the model's turn. */
static int poll_once(enum jump j)
{
    uint64_t took;
    int ret, want;

    hold_clock();
    if (j != NO_JUMP) {
        jump(j);
    }
    ret = hmaf_agent_poll(agent, 0);
    took = hmaf__now_ns() - clock_held;
    want = model_poll();
    /* Where the model found a full table's oldest in its grace, so must
     * the agent have: this poll took less than that. */
    FUZZ_CHECK(!m.young || took < GRACE_NS - 1000000u,
               "a poll took %llu ms: the grace passed during it",
               (unsigned long long)(took / 1000000u));
    FUZZ_CHECK(ret == want, "hmaf_agent_poll: %d, want %d", ret, want);
    check_agent();
    return ret;
}

/* Drive the agent until it has nothing left to do: a poll finds nothing
 * (no grave drops what its peer sent either) and no newcomer waits behind
 * a resting listener; for those, the clock jumps past the grace. */
static void settle(void)
{
    size_t turns = 64 + m.npeers;
    enum jump j = NO_JUMP;

    for (size_t i = 0; i < turns; i++) {
        int ret = poll_once(j);
        j = NO_JUMP;
        if (ret == 0 && !m.stirred) {
            if (!m.resting || !model_newcomer()) {
                return;
            }
            j = GRACE_JUMP;
        }
    }
    FUZZ_CHECK(0, "the agent keeps finding work");
}

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

/* A new connection, in the backlog until the agent accepts it. */
static struct peer *open_peer(int silent)
{
    struct peer *p;
    int fd = dial();

    if (fd < 0) {
        return NULL;
    }
    FUZZ_CHECK(m.npeers < MAX_PEERS, "peers");
    p = &m.peers[m.npeers];
    memset(p, 0, sizeof(*p));
    p->fd = fd;
    p->silent = silent;
    p->where = IN_BACKLOG;
    m.backlog[m.backlog_tail++] = m.npeers++;
    return p;
}

/* Silent connections: n without polls (MAX_SILENT an input, all told),
 * or once an input (a fill) as many as the table has room for and then
 * extra more, with polls in between so that the agent takes them in
 * until its table is full (the extra ones then wait in the backlog, the
 * listener resting, until a jump lets the oldest give way). A fill costs
 * tens of milliseconds: a thousand connections. */
static void flood(uint8_t n)
{
    static size_t *const limits[2] = {&m.silent, &m.filled};
    int fill = n >= FILL && m.filled == 0;
    size_t want = n % MAX_SILENT, dialed = 0, *count = limits[fill];
    size_t max = fill ? flood_max : MAX_SILENT;

    if (fill) {
        size_t queued = m.ntable + (m.backlog_tail - m.backlog_head);
        want = (queued < TABLE_MAX ? TABLE_MAX - queued : 0) + (n & FILL_EXTRA);
    }
    while (dialed < want && *count < max) {
        if (open_peer(1) == NULL) {
            break; /* the backlog is full */
        }
        dialed++;
        ++*count;
        if (fill && dialed % HMAF_AGENT_ACCEPTS_PER_TURN == 0) {
            poll_once(NO_JUMP);
        }
    }
    while (fill && model_newcomer() && !m.resting) {
        poll_once(NO_JUMP);
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

/* Whether the agent has our bytes coming is known for a connection it
 * has not answered yet (yes) or answered and closed (no); a session it
 * ended may have left its end open, to notice when we stop. */
static void check_send(const struct peer *p, size_t n, ssize_t ret)
{
    if (p->shut || n == 0) {
        return;
    }
    if (p->where != DONE) {
        FUZZ_CHECK(ret == (ssize_t)n, "send of %zu bytes: %zd (%s)", n, ret,
                   ret < 0 ? strerror(errno) : "short");
    } else if (p->outcome != WELCOMED) {
        FUZZ_CHECK(ret < 0 && (errno == EPIPE || errno == ECONNRESET),
                   "send to a connection the agent closed: %zd", ret);
    }
}

/* After its HELLO a dpu side may send nudges (the agent's doorbell,
 * core/mailbox.c), which the agent takes and serves its mailboxes for;
 * anything else ends the session. The model knows only the second, so the
 * bytes a peer sends past its HELLO are made no nudge. */
static void no_doorbells(const struct peer *p, uint8_t *buf, size_t n)
{
    uint8_t hdr[HMAF_HDR_SIZE];
    struct hmaf_msg_hdr h;

    for (size_t i = 0; i < HMAF_HDR_SIZE; i++) {
        if (i < p->nsent) {
            hdr[i] = p->sent[i];
        } else if (i - p->nsent < n) {
            hdr[i] = buf[i - p->nsent];
        } else {
            return; /* no header yet: no byte is past the HELLO */
        }
    }
    hmaf__hdr_decode(hdr, &h);
    for (size_t i = 0; i < n; i++) {
        if (p->nsent + i >= HMAF_HDR_SIZE + (size_t)h.body_len &&
            buf[i] == HMAF_CHANNEL_NUDGE) {
            buf[i] = HMAF_CHANNEL_NUDGE + 1;
        }
    }
}

static void conn_send(size_t *c, struct fuzz_in *in)
{
    uint8_t buf[1024];
    size_t n = fuzz_u16(in);
    struct peer *p;
    ssize_t ret;

    n = fuzz_take_bytes(in, buf, n < sizeof(buf) ? n : sizeof(buf));
    if (*c == SIZE_MAX) {
        p = opens < MAX_OPENS ? open_peer(0) : NULL;
        if (p == NULL) {
            return;
        }
        opens++;
        *c = (size_t)(p - m.peers);
    }
    p = &m.peers[*c];
    patch_pid(buf, n);
    no_doorbells(p, buf, n);
    /* Fails once the agent closed its end (EPIPE): those bytes never
     * reached it. */
    ret = send(p->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    check_send(p, n, ret);
    if (ret <= 0) {
        return;
    }
    for (size_t i = 0; i < (size_t)ret && p->nsent + i < HELLO_MAX; i++) {
        p->sent[p->nsent + i] = buf[i];
    }
    p->nsent += (size_t)ret;
}

static void conn_shut(const size_t *c)
{
    struct peer *p = *c == SIZE_MAX ? NULL : &m.peers[*c];

    if (p != NULL && !p->shut && shutdown(p->fd, SHUT_WR) == 0) {
        p->shut = 1;
    }
}

static void peer_close(struct peer *p)
{
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
        p->closed = 1;
    }
}

static void conn_close(size_t *c)
{
    if (*c != SIZE_MAX) {
        peer_close(&m.peers[*c]);
        *c = SIZE_MAX;
    }
}

/* Read what the agent sent, without waiting; EOF or a reset ends it. */
static void drain(int fd, struct answer *c)
{
    for (;;) {
        uint8_t buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
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

/* ---- checking the answers ---- */

static void check_welcome(const struct answer *c, const struct peer *p,
                          const struct hmaf_msg_hdr *h)
{
    struct hmaf_welcome w;
    hmaf_agent_params_t params;

    hmaf_agent_params_init(&params);
    FUZZ_CHECK(h->body_len == WELCOME_BODY_SIZE && c->ngot == WELCOME_SIZE,
               "WELCOME: body %u, %zu bytes", h->body_len, c->ngot);
    FUZZ_CHECK(hmaf__welcome_decode(c->got + HMAF_HDR_SIZE, WELCOME_BODY_SIZE,
                                    &w) == 0,
               "WELCOME body does not decode");
    FUZZ_CHECK(strcmp(w.engine, "cma") == 0 && w.engine_blob.len == 4 &&
                   memcmp(w.engine_blob.data, pid_blob, 4) == 0,
               "WELCOME: engine %s", w.engine);
    FUZZ_CHECK(w.session_id == p->session_id, "session id %llu, want %llu",
               (unsigned long long)w.session_id,
               (unsigned long long)p->session_id);
    FUZZ_CHECK(w.mailbox_slots == NSLOTS &&
                   w.mailbox_len == hmaf__mbox_size(NSLOTS) &&
                   w.mailbox_addr != 0 && w.mailbox_addr % 4096 == 0 &&
                   w.mailbox_export.len == 0,
               "WELCOME: mailbox at %llx, %llu bytes, %u slots",
               (unsigned long long)w.mailbox_addr,
               (unsigned long long)w.mailbox_len, w.mailbox_slots);
    /* The default revoke_wait_ms (1000 ms), a quarter of it. */
    FUZZ_CHECK(w.lease_us == (uint32_t)params.revoke_wait_ms * 1000u / 4u,
               "lease %u us", w.lease_us);
}

/* What came back: nothing (with or without EOF), a refusal (then EOF),
 * or a WELCOME. Anything else is broken. */
static enum outcome observed(size_t i, const struct answer *c,
                             const struct peer *p, int *code_out)
{
    struct hmaf_msg_hdr h;

    *code_out = 0;
    if (c->ngot == 0) {
        return c->eof ? CLOSED : PENDING;
    }
    FUZZ_CHECK(c->ngot >= HMAF_HDR_SIZE && hmaf__hdr_decode(c->got, &h) == 0 &&
                   h.version == HMAF_PROTOCOL_VERSION &&
                   h.type == HMAF_MSG_WELCOME && h.status <= 0,
               "conn %zu: %zu bytes back, not an answer", i, c->ngot);
    *code_out = h.status;
    if (h.status == 0) {
        FUZZ_CHECK(p->outcome == WELCOMED, "conn %zu: a WELCOME, want %s", i,
                   outcome_names[p->outcome]);
        check_welcome(c, p, &h);
        return WELCOMED;
    }
    FUZZ_CHECK(strcmp(hmaf_err_name(h.status), "HMAF_UNKNOWN") != 0 &&
                   h.body_len == 0 && c->ngot == HMAF_HDR_SIZE && c->eof,
               "conn %zu: refusal %d with %u body bytes, %zu in all, eof %d", i,
               h.status, h.body_len, c->ngot, c->eof);
    return REFUSED;
}

/* What the model says the peer sees now. */
static enum outcome expected(const struct peer *p, int *eof_out)
{
    *eof_out = p->where == DONE;
    return p->where == WAITING ? PENDING : p->outcome;
}

static void check_peer(size_t i, const struct peer *p)
{
    struct answer c = {.ngot = 0};
    int want_eof, got_code;
    enum outcome want, got;

    drain(p->fd, &c);
    want = expected(p, &want_eof);
    got = observed(i, &c, p, &got_code);
    if (!p->silent) {
        FUZZ_TRACE("conn %zu: %zu bytes sent%s: want %s %s, got %s %s\n", i,
                   p->nsent, p->shut ? ", shut" : "", outcome_names[want],
                   want == REFUSED ? hmaf_err_name(p->code) : "",
                   outcome_names[got],
                   got == REFUSED ? hmaf_err_name(got_code) : "");
    }
    FUZZ_CHECK(p->where != IN_BACKLOG, "conn %zu never accepted", i);
    FUZZ_CHECK(got == want && (want != REFUSED || got_code == p->code) &&
                   c.eof == want_eof,
               "conn %zu (%zu bytes sent%s%s): %s %s%s, want %s %s%s", i,
               p->nsent, p->shut ? ", shut" : "", p->silent ? ", silent" : "",
               outcome_names[got],
               got == REFUSED ? hmaf_err_name(got_code) : "",
               c.eof ? " then EOF" : "", outcome_names[want],
               want == REFUSED ? hmaf_err_name(p->code) : "",
               want_eof ? " then EOF" : "");
}

/* The agent's counters moved by exactly what the model says. */
static void check_stats(void)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    FUZZ_CHECK(hmaf_agent_stats(agent, &st) == 0, "stats");
    FUZZ_CHECK(st.refused == stats.refused + m.refused,
               "%llu refusals, want %llu",
               (unsigned long long)(st.refused - stats.refused),
               (unsigned long long)m.refused);
    FUZZ_CHECK(
        st.last_refusal ==
            (m.refused > 0 ? m.last_refusal : stats.last_refusal),
        "last refusal %s, want %s", hmaf_err_name(st.last_refusal),
        hmaf_err_name(m.refused > 0 ? m.last_refusal : stats.last_refusal));
    FUZZ_CHECK(st.sessions_total == stats.sessions_total + m.welcomed,
               "%llu sessions, want %llu",
               (unsigned long long)(st.sessions_total - stats.sessions_total),
               (unsigned long long)m.welcomed);
    FUZZ_CHECK(agent->next_session_id == m.session_ids,
               "session ids up to %llu, want %llu",
               (unsigned long long)agent->next_session_id,
               (unsigned long long)m.session_ids);
}

/* Everything closed: the agent must let go of all of it (and refuse
 * nothing more: what still waited had no complete HELLO). A listener
 * still resting is let listen (time passes), for the next input. */
static void check_forgotten(void)
{
    settle();
    if (m.resting) {
        poll_once(GRACE_JUMP);
    }
    FUZZ_CHECK(m.ntable == 0 && m.nsessions == 0 && m.ngraves == 0,
               "model: %zu, %zu, %zu", m.ntable, m.nsessions, m.ngraves);
    check_stats();
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
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    int fds;

    FUZZ_CHECK(ret == 0, "a real session: %s", hmaf_err_name(ret));
    for (int i = 0; i < 16; i++) {
        FUZZ_CHECK(hmaf_agent_poll(agent, 0) >= 0, "poll");
    }
    FUZZ_CHECK(hmaf_agent_stats(agent, &st) == 0, "stats");
    FUZZ_CHECK(
        st.sessions_live == 0 && agent->npending == 0 && agent->ngraves == 0,
        "%llu sessions, %zu graves and %zu connections after a real "
        "session",
        (unsigned long long)st.sessions_live, agent->ngraves, agent->npending);
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

/* A fill keeps two fds per waiting connection (ours and the agent's):
 * raise the soft limit as far as it takes, or fill less where the hard
 * limit is lower (then the table never overflows). */
static void fd_room(void)
{
    struct rlimit rl;
    rlim_t want = 2 * (rlim_t)MAX_PEERS + 512;
    rlim_t have;

    FUZZ_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        FUZZ_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    }
    have = rl.rlim_cur / 2;
    have = have < 256 + MAX_OPENS + MAX_SILENT
               ? 0
               : have - 256 - MAX_OPENS - MAX_SILENT;
    flood_max = have < MAX_FLOOD ? (size_t)have : MAX_FLOOD;
    if (flood_max <= TABLE_MAX) {
        fprintf(stderr,
                "fuzz_hello: %llu fds at most: fills of %zu connections, "
                "the table of %d never overflows\n",
                (unsigned long long)rl.rlim_cur, flood_max, TABLE_MAX);
    }
}

static void set_up(void)
{
    hmaf_agent_params_t p;
    uint32_t pid = (uint32_t)getpid();

    fuzz_quiet_logs();
    fd_room();
    /* The jumps move the agent's times back up to twice JUMP_NS. */
    FUZZ_CHECK(hmaf__now_ns() > 3 * JUMP_NS, "the monotonic clock is at %llu",
               (unsigned long long)hmaf__now_ns());
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
    p.handshake_timeout_ms = HANDSHAKE_MS;
    FUZZ_CHECK(hmaf_agent_create(&p, &agent) == 0, "agent at %s", address);
    agent->pending_grace_ns = GRACE_NS;
    for (size_t i = 0; i < NCONNS; i++) {
        conns[i] = SIZE_MAX;
    }
    check_real_session();
}

/* ---- the input ---- */

static void run_command(struct fuzz_in *in)
{
    uint8_t c = fuzz_u8(in);
    size_t *conn = &conns[c & 7];

    switch ((c >> 3) & 7) {
    case 1:
        conn_send(conn, in);
        poll_once(NO_JUMP);
        break;
    case 2:
        conn_shut(conn);
        break;
    case 3:
        conn_close(conn);
        break;
    case 4:
        if ((c & 7) == 7) {
            flood(fuzz_u8(in));
            break;
        }
        poll_once((c & 7) == 6   ? TIMEOUT_JUMP
                  : (c & 7) == 5 ? GRACE_JUMP
                                 : NO_JUMP);
        break;
    default:
        conn_send(conn, in);
    }
}

static void start_input(void)
{
    FUZZ_CHECK(agent->npending == 0, "%zu connections from before",
               agent->npending);
    FUZZ_CHECK(hmaf_agent_stats(agent, &stats) == 0, "stats");
    FUZZ_CHECK(stats.sessions_live == 0 && agent->ngraves == 0,
               "sessions or graves from before");
    FUZZ_CHECK(!agent_resting(hmaf__now_ns()), "the listener rests");
    m.npeers = m.backlog_head = m.backlog_tail = 0;
    m.ntable = m.nsessions = m.ngraves = 0;
    m.resting = 0;
    m.accepts = 0;
    m.refused = m.welcomed = 0;
    m.silent = m.filled = 0;
    m.session_ids = agent->next_session_id;
    opens = 0;
}

static void end_input(void)
{
    size_t silent = 0, refused = 0;

    settle();
    for (size_t i = 0; i < m.npeers; i++) {
        if (m.peers[i].fd >= 0) {
            check_peer(i, &m.peers[i]);
        }
        silent += m.peers[i].silent;
        refused += m.peers[i].silent && m.peers[i].where == DONE;
    }
    FUZZ_TRACE("%zu connections (%zu silent, %zu of them refused), %llu "
               "refusals, %llu sessions\n",
               m.npeers, silent, refused, (unsigned long long)m.refused,
               (unsigned long long)m.welcomed);
    check_stats();
    for (size_t i = 0; i < m.npeers; i++) {
        peer_close(&m.peers[i]);
    }
    for (size_t i = 0; i < NCONNS; i++) {
        conns[i] = SIZE_MAX;
    }
    check_forgotten();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};

    if (agent == NULL) {
        set_up();
    }
    start_input();
    while (fuzz_more(&in)) {
        run_command(&in);
    }
    end_input();
    if (++inputs % SESSION_CHECK_EVERY == 0) {
        check_real_session();
    }
    return 0;
}
