/*
 * The kv example under a mixed workload on both ports at once:
 * - INCRs from clients of both ports on one key never lose an increment,
 *   and readers of either port never see the counter go back; near
 *   INT64_MAX they stop at it with errors, never wrap;
 * - commands followed at once by the client's shutdown are answered;
 *   nothing after QUIT runs;
 * - a SET answered on one port is seen by a GET sent afterwards on the
 *   other, and so is a DEL;
 * - writes pipelined in one burst, batched in one turn, take effect in
 *   order where they share a key or a bucket;
 * - malformed RESP and clients vanishing mid-command harm no one else;
 * - after DEL of every key, once both sides are idle, the host's heap is
 *   back to its size before the workload;
 * - SIGTERM ends each server with exit status 0.
 *   test_kv_mixed HMAF-KV-HOST HMAF-KV-DPU
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define INCR_CLIENTS 2  /* per port */
#define INCRS        3000
#define INCR_PIPE    10
#define KEYS         300
#define ROUNDS       3

static int ports[2]; /* host, dpu */
static pid_t pids[2];

/* ---- a small blocking RESP client -------------------------------- */

struct conn {
    int fd;
    char buf[1 << 16];
    size_t len, pos;
};

static void conn_open(struct conn *c, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c->fd >= 0);
    CHECK(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    c->len = c->pos = 0;
}

static void conn_send(struct conn *c, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(c->fd, p, len);
        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* argv-style command as RESP */
static void conn_cmd(struct conn *c, int argc, const char **argv)
{
    char out[4096];
    size_t len = (size_t)snprintf(out, sizeof(out), "*%d\r\n", argc);

    for (int i = 0; i < argc; i++) {
        len += (size_t)snprintf(out + len, sizeof(out) - len, "$%zu\r\n%s\r\n",
                                strlen(argv[i]), argv[i]);
    }
    conn_send(c, out, len);
}

static int conn_byte(struct conn *c)
{
    if (c->pos == c->len) {
        ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
        if (n <= 0) {
            return -1;
        }
        c->len = (size_t)n;
        c->pos = 0;
    }
    return (unsigned char)c->buf[c->pos++];
}

/* One reply: its type byte, and its line or bulk in out (NUL-ended).
 * Arrays: the count in out; their items are further replies. '!': EOF. */
static char conn_reply(struct conn *c, char *out, size_t cap)
{
    size_t n = 0;
    int type = conn_byte(c), ch;

    if (type < 0) {
        return '!';
    }
    while ((ch = conn_byte(c)) >= 0 && ch != '\r') {
        if (n + 1 < cap) {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
    CHECK(conn_byte(c) == '\n');
    if (type == '$' && atol(out) >= 0) {
        long blen = atol(out);
        CHECK((size_t)blen < cap);
        for (long i = 0; i < blen + 2; i++) {
            ch = conn_byte(c);
            CHECK(ch >= 0);
            if (i < blen) {
                out[i] = (char)ch;
            }
        }
        out[blen] = '\0';
    } else if (type == '$') {
        return 'n'; /* nil */
    }
    return (char)type;
}

static long long call_int(struct conn *c, int argc, const char **argv)
{
    char out[256];

    conn_cmd(c, argc, argv);
    CHECK(conn_reply(c, out, sizeof(out)) == ':');
    return atoll(out);
}

/* ---- servers ------------------------------------------------------ */

static int start(const char *bin, const char *sock, pid_t *pid_out)
{
    int pipefd[2];
    char line[128];
    FILE *f;
    int port = -1;

    CHECK(pipe(pipefd) == 0);
    *pid_out = fork();
    CHECK(*pid_out >= 0);
    if (*pid_out == 0) {
        /* gone with the test, however it ends (two threads failing at
         * once may skip the exit handlers) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        /* few buckets: many keys per block, and writes of one turn that
         * share a bucket */
        execl(bin, bin, "--address", sock, "--port", "0", "--token", "mixed",
              "--buckets", "16", (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    f = fdopen(pipefd[0], "r");
    if (fgets(line, sizeof(line), f) && sscanf(line, "ready port %d", &port) == 1) {
        fclose(f); /* the server's later output goes nowhere */
        return port;
    }
    fprintf(stderr, "%s did not start\n", bin);
    exit(1);
}

/* On a failed check: whatever state they are in (a hung one too). */
static void kill_servers(void)
{
    for (int i = 1; i >= 0; i--) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    }
}

/* At the end: each server closes its clients, frees everything and exits
 * 0 on SIGTERM (under ASan, a leak makes the exit status non-zero). The
 * dpu side first, so it can hand back what it holds. */
static void stop_servers(void)
{
    for (int i = 1; i >= 0; i--) {
        int status;
        CHECK(kill(pids[i], SIGTERM) == 0);
        CHECK(waitpid(pids[i], &status, 0) == pids[i]);
        pids[i] = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "%s server: status 0x%x, want exit 0\n",
                    i ? "dpu" : "host", status);
            exit(1);
        }
    }
    printf("stop: both servers exited 0 on SIGTERM\n");
}

/* ---- INCRs and monotonic reads ------------------------------------ */

static void *incr_client(void *arg)
{
    struct conn *c = malloc(sizeof(*c));
    const char *argv[] = {"INCR", "mixed:ctr"};
    char out[64];

    CHECK(c != NULL);
    conn_open(c, *(int *)arg);
    for (int i = 0; i < INCRS; i += INCR_PIPE) {
        for (int k = 0; k < INCR_PIPE; k++) {
            conn_cmd(c, 2, argv);
        }
        for (int k = 0; k < INCR_PIPE; k++) {
            CHECK(conn_reply(c, out, sizeof(out)) == ':');
        }
    }
    close(c->fd);
    free(c);
    return NULL;
}

static atomic_int incr_done;

static void *monotonic_reader(void *arg)
{
    struct conn *c = malloc(sizeof(*c));
    const char *argv[] = {"GET", "mixed:ctr"};
    long long last = 0;
    char out[64];

    CHECK(c != NULL);
    conn_open(c, *(int *)arg);
    while (!incr_done) {
        char t;
        conn_cmd(c, 2, argv);
        t = conn_reply(c, out, sizeof(out));
        CHECK(t == '$' || t == 'n');
        if (t == '$') {
            CHECK(atoll(out) >= last);
            last = atoll(out);
        }
    }
    close(c->fd);
    free(c);
    return NULL;
}

static void incrs(void)
{
    pthread_t writers[2 * INCR_CLIENTS], readers[2];
    int nw = 0;
    long long want;
    char out[64];
    struct conn c;
    const char *get[] = {"GET", "mixed:ctr"};

    for (int p = 0; p < 2; p++) {
        CHECK(pthread_create(&readers[p], NULL, monotonic_reader, &ports[p]) == 0);
        for (int k = 0; k < INCR_CLIENTS; k++) {
            CHECK(pthread_create(&writers[nw++], NULL, incr_client, &ports[p]) == 0);
        }
    }
    for (int i = 0; i < nw; i++) {
        pthread_join(writers[i], NULL);
    }
    incr_done = 1;
    pthread_join(readers[0], NULL);
    pthread_join(readers[1], NULL);
    want = (long long)nw * INCRS;
    for (int p = 0; p < 2; p++) {
        conn_open(&c, ports[p]);
        conn_cmd(&c, 2, get);
        CHECK(conn_reply(&c, out, sizeof(out)) == '$');
        CHECK_EQ(atoll(out), want);
        close(c.fd);
    }
    printf("incr: %d clients x %d, none lost\n", nw, INCRS);
}

/* ---- INCR at the end of the range ----------------------------------- */

#define EDGE_TRIALS  20
#define EDGE_ROOM    50 /* increments left before INT64_MAX */
#define EDGE_INCRS   60 /* per client: together, more than the room */

struct edge_client {
    int port;
    int ok;      /* INCRs answered with a number */
    int wrapped; /* ... below the start: checked by the main thread */
};

/* INCRs until the room is gone: each is a number or the overflow error,
 * never a number below the start (a wrapped counter). */
static void *edge_client(void *arg)
{
    struct edge_client *e = arg;
    struct conn *c = malloc(sizeof(*c));
    const char *argv[] = {"INCR", "mixed:edge"};
    char out[128];

    CHECK(c != NULL);
    conn_open(c, e->port);
    for (int i = 0; i < EDGE_INCRS; i += INCR_PIPE) {
        for (int k = 0; k < INCR_PIPE; k++) {
            conn_cmd(c, 2, argv);
        }
        for (int k = 0; k < INCR_PIPE; k++) {
            char t = conn_reply(c, out, sizeof(out));
            CHECK(t == ':' || t == '-');
            if (t == ':') {
                e->wrapped += atoll(out) <= INT64_MAX - EDGE_ROOM;
                e->ok++;
            }
        }
    }
    close(c->fd);
    free(c);
    return NULL;
}

/* Both ports' INCRs near INT64_MAX: each side checks for overflow against
 * the value it read, so adds in flight from the other side must not take
 * the counter past the end. Exactly the room is used, then errors. */
static void incr_edge(void)
{
    char start[32], out[64];
    const char *set[] = {"SET", "mixed:edge", start};
    const char *get[] = {"GET", "mixed:edge"};
    const char *del[] = {"DEL", "mixed:edge"};
    struct conn c;

    snprintf(start, sizeof(start), "%lld", (long long)(INT64_MAX - EDGE_ROOM));
    conn_open(&c, ports[0]);
    for (int trial = 0; trial < EDGE_TRIALS; trial++) {
        struct edge_client e[2 * INCR_CLIENTS];
        pthread_t t[2 * INCR_CLIENTS];
        int ok = 0, wrapped = 0;

        conn_cmd(&c, 3, set);
        CHECK(conn_reply(&c, out, sizeof(out)) == '+');
        for (int i = 0; i < 2 * INCR_CLIENTS; i++) {
            e[i] = (struct edge_client){.port = ports[i % 2]};
            CHECK(pthread_create(&t[i], NULL, edge_client, &e[i]) == 0);
        }
        for (int i = 0; i < 2 * INCR_CLIENTS; i++) {
            pthread_join(t[i], NULL);
            ok += e[i].ok;
            wrapped += e[i].wrapped;
        }
        CHECK_EQ(wrapped, 0);
        CHECK_EQ(ok, EDGE_ROOM);
        conn_cmd(&c, 2, get);
        CHECK(conn_reply(&c, out, sizeof(out)) == '$');
        CHECK(strcmp(out, "9223372036854775807") == 0);
    }
    CHECK_EQ(call_int(&c, 2, del), 1);
    close(c.fd);
    printf("incr edge: %d trials, the counter stopped at INT64_MAX\n",
           EDGE_TRIALS);
}

/* ---- the end of a client's commands ------------------------------- */

/* A client that sends its commands and shuts its side down at once (one
 * segment with FIN: TCP_CORK holds the data until the shutdown) still
 * gets them run and answered; and nothing after QUIT runs. */
static void client_ends(int port)
{
    static const char cmds[] =
        "*3\r\n$3\r\nSET\r\n$10\r\nmixed:half\r\n$1\r\nv\r\n"
        "*2\r\n$3\r\nGET\r\n$10\r\nmixed:half\r\n";
    static const char quit[] =
        "*1\r\n$4\r\nQUIT\r\n*3\r\n$3\r\nSET\r\n$10\r\nmixed:half\r\n$1\r\nw\r\n";
    const char *get[] = {"GET", "mixed:half"};
    const char *del[] = {"DEL", "mixed:half"};
    char out[64];
    int one = 1;
    struct conn c;

    conn_open(&c, port);
    CHECK(setsockopt(c.fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) == 0);
    conn_send(&c, cmds, sizeof(cmds) - 1);
    CHECK(shutdown(c.fd, SHUT_WR) == 0);
    CHECK(conn_reply(&c, out, sizeof(out)) == '+');
    CHECK(conn_reply(&c, out, sizeof(out)) == '$');
    CHECK(strcmp(out, "v") == 0);
    CHECK(conn_reply(&c, out, sizeof(out)) == '!');
    close(c.fd);

    conn_open(&c, port);
    conn_send(&c, quit, sizeof(quit) - 1);
    CHECK(conn_reply(&c, out, sizeof(out)) == '+');
    CHECK(conn_reply(&c, out, sizeof(out)) == '!');
    close(c.fd);
    conn_open(&c, port);
    conn_cmd(&c, 2, get);
    CHECK(conn_reply(&c, out, sizeof(out)) == '$');
    CHECK(strcmp(out, "v") == 0);
    CHECK_EQ(call_int(&c, 2, del), 1);
    close(c.fd);
}

/* A command that never ends: past 256 MiB of it the server answers an
 * error and closes, instead of holding whatever the client sends. */
static void query_limit(int port)
{
    static char arg[(1u << 20) + 16];
    size_t head = (size_t)snprintf(arg, sizeof(arg), "$%u\r\n", 1u << 20);
    char b[256];
    struct conn c;
    int closed = 0;

    memset(arg + head, 'q', 1u << 20);
    memcpy(arg + head + (1u << 20), "\r\n", 2);
    conn_open(&c, port);
    conn_send(&c, "*1000\r\n", 7);
    for (int i = 0; i < 300; i++) {
        if (send(c.fd, arg, head + (1u << 20) + 2, MSG_NOSIGNAL) < 0) {
            break; /* closed by the server already */
        }
    }
    /* The error, then the end of the stream (or a reset: unread bytes). */
    for (int i = 0; i < 1000 && !closed; i++) {
        struct pollfd p = {.fd = c.fd, .events = POLLIN};
        ssize_t n;
        CHECK(poll(&p, 1, 10) >= 0);
        n = recv(c.fd, b, sizeof(b), MSG_DONTWAIT);
        closed = n == 0 || (n < 0 && errno == ECONNRESET);
    }
    CHECK(closed);
    close(c.fd);
}

static void clients_end(void)
{
    client_ends(ports[0]);
    client_ends(ports[1]);
    /* One port: both programs parse with kv_server.c, and 257 MiB per
     * port is most of this test's time under the sanitizers. */
    query_limit(ports[1]);
    printf("ends: commands before a shutdown answered, none after QUIT run, "
           "a command past 256 MiB ends its client\n");
}

/* ---- one turn's writes, in order ------------------------------------ */

/* Sent as one burst, so the server takes them in one turn and batches
 * them: writes of one key (and of keys sharing a bucket: 16 buckets for
 * 40 keys) must take effect in order. */
static void pipelined_turn(int port)
{
    static const char *const want[] = {
        "+OK", "+OK", ":3", ":8", ":1", ":1", "+OK", "-ERR", "+OK", ":8",
        "$8", ":2", ":0"};
    char burst[8192], out[256];
    size_t len = 0;
    struct conn c;

#define ADD(...) (len += (size_t)snprintf(burst + len, sizeof(burst) - len, __VA_ARGS__))
#define CMD2(a, b) ADD("*2\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(a), a, strlen(b), b)
#define CMD3(a, b, v) ADD("*3\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", \
                          strlen(a), a, strlen(b), b, strlen(v), v)
    CMD3("SET", "turn:a", "1");
    CMD3("SET", "turn:a", "2");
    CMD2("INCR", "turn:a");
    CMD3("INCRBY", "turn:a", "5");
    CMD2("DEL", "turn:a");
    CMD2("INCR", "turn:a");
    CMD3("SET", "turn:b", "x");
    CMD2("INCR", "turn:b");
    ADD("*5\r\n$4\r\nMSET\r\n$6\r\nturn:a\r\n$1\r\n7\r\n$6\r\nturn:b\r\n$1\r\n8\r\n");
    CMD2("INCR", "turn:a");
    CMD2("GET", "turn:a");
    ADD("*3\r\n$3\r\nDEL\r\n$6\r\nturn:a\r\n$6\r\nturn:b\r\n");
    CMD2("DEL", "turn:a");
    /* and 40 keys of 16 buckets, each set, incremented and deleted */
    for (int i = 0; i < 40; i++) {
        char key[32];
        snprintf(key, sizeof(key), "turn:%d", i);
        CMD3("SET", key, "41");
        CMD2("INCR", key);
        CMD2("INCR", key);
        CMD2("DEL", key);
    }
#undef CMD3
#undef CMD2
#undef ADD
    CHECK(len < sizeof(burst));
    conn_open(&c, port);
    conn_send(&c, burst, len);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char t = conn_reply(&c, out, sizeof(out));
        char got[300];
        snprintf(got, sizeof(got), "%c%s", t == 'n' ? '$' : t, out);
        if (strncmp(got, want[i], strlen(want[i])) != 0) {
            fprintf(stderr, "port %d, reply %zu: '%s', want '%s'\n", port, i,
                    got, want[i]);
            exit(1);
        }
    }
    for (int i = 0; i < 40; i++) {
        CHECK(conn_reply(&c, out, sizeof(out)) == '+');
        CHECK(conn_reply(&c, out, sizeof(out)) == ':');
        CHECK_EQ(atoll(out), 42);
        CHECK(conn_reply(&c, out, sizeof(out)) == ':');
        CHECK_EQ(atoll(out), 43);
        CHECK(conn_reply(&c, out, sizeof(out)) == ':');
        CHECK_EQ(atoll(out), 1);
    }
    close(c.fd);
}

static void pipelined_turns(void)
{
    pipelined_turn(ports[0]);
    pipelined_turn(ports[1]);
    printf("turns: pipelined writes of one key and one bucket in order\n");
}

/* ---- visibility across ports --------------------------------------- */

static void visibility(void)
{
    struct conn w, r;
    char key[32], value[64], out[128];

    for (int round = 0; round < ROUNDS; round++) {
        int from = round % 2;
        conn_open(&w, ports[from]);
        conn_open(&r, ports[!from]);
        for (int i = 0; i < KEYS; i++) {
            const char *set[] = {"SET", key, value};
            const char *get[] = {"GET", key};
            snprintf(key, sizeof(key), "mixed:%d", i);
            snprintf(value, sizeof(value), "value-%d-%d", i, round);
            conn_cmd(&w, 3, set);
            CHECK(conn_reply(&w, out, sizeof(out)) == '+');
            conn_cmd(&r, 2, get);
            CHECK(conn_reply(&r, out, sizeof(out)) == '$');
            CHECK(strcmp(out, value) == 0);
        }
        for (int i = 0; i < KEYS; i += 2) {
            const char *del[] = {"DEL", key};
            const char *get[] = {"GET", key};
            snprintf(key, sizeof(key), "mixed:%d", i);
            CHECK_EQ(call_int(&w, 2, del), 1);
            conn_cmd(&r, 2, get);
            CHECK(conn_reply(&r, out, sizeof(out)) == 'n');
        }
        close(w.fd);
        close(r.fd);
    }
    printf("visibility: %d rounds of %d keys\n", ROUNDS, KEYS);
}

/* ---- abuse ---------------------------------------------------------- */

static void abuse(void)
{
    static const char *bad[] = {"*2\r\n$3\r\nGET\r\n+x\r\n", "*1\r\n$9999999\r\n",
                                "*-7\r\n", "*1\r\n$3\r\nabcXY"};
    static const char half[] = "*3\r\n$3\r\nSET\r\n$9\r\nmixed:ctr\r\n$1\r\n0";
    char out[256];
    struct conn c;

    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            conn_open(&c, ports[p]);
            conn_send(&c, bad[i], strlen(bad[i]));
            CHECK(conn_reply(&c, out, sizeof(out)) == '-');
            CHECK(conn_reply(&c, out, sizeof(out)) == '!'); /* closed */
            close(c.fd);
        }
        /* a client gone half-way through a SET: the SET never happens */
        conn_open(&c, ports[p]);
        conn_send(&c, half, sizeof(half) - 1);
        close(c.fd);
    }
    printf("abuse: malformed input answered and closed\n");
}

/* ---- heap ----------------------------------------------------------- */

/* INFO field of the host (0 when absent). */
static long long info_field(int port, const char *name)
{
    struct conn c;
    const char *info[] = {"INFO"};
    static char out[8192];
    char *p;

    conn_open(&c, port);
    conn_cmd(&c, 1, info);
    CHECK(conn_reply(&c, out, sizeof(out)) == '$');
    close(c.fd);
    p = strstr(out, name);
    return p ? atoll(p + strlen(name) + 1) : 0;
}

static void delete_all(void)
{
    struct conn c;
    char key[32];

    conn_open(&c, ports[0]);
    for (int i = 0; i < KEYS; i++) {
        const char *del[] = {"DEL", key};
        snprintf(key, sizeof(key), "mixed:%d", i);
        call_int(&c, 2, del);
    }
    {
        const char *del[] = {"DEL", "mixed:ctr"};
        call_int(&c, 2, del);
        const char *dbsize[] = {"DBSIZE"};
        CHECK_EQ(call_int(&c, 1, dbsize), 0);
    }
    close(c.fd);
}

static void heap_returns(long long start)
{
    long long now = -1;

    delete_all();
    /* both sides go idle and free what they retired; a few seconds at most
     * on a busy machine, but no time is asserted: the limit is generous */
    for (int i = 0; i < 1000; i++) {
        now = info_field(ports[0], "heap_bytes_in_use");
        if (now == start && info_field(ports[1], "retired_pending") == 0 &&
            info_field(ports[0], "retired_pending") == 0) {
            break;
        }
        usleep(20000);
    }
    printf("heap: %lld bytes in use before, %lld after deleting everything\n",
           start, now);
    CHECK_EQ(now, start);
}

int main(int argc, char **argv)
{
    char sock[64];
    struct conn c;
    char out[256];
    const char *probe[] = {"SET", "mixed:probe", "1"};
    const char *del[] = {"DEL", "mixed:probe"};
    long long heap_start;

    if (argc != 3) {
        fprintf(stderr, "usage: test_kv_mixed HMAF-KV-HOST HMAF-KV-DPU\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(sock, sizeof(sock), "unix:/tmp/kv-mixed-%d.sock", (int)getpid());
    ports[0] = start(argv[1], sock, &pids[0]);
    ports[1] = start(argv[2], sock, &pids[1]);
    atexit(kill_servers);
    heap_start = info_field(ports[0], "heap_bytes_in_use");

    conn_open(&c, ports[1]);
    conn_cmd(&c, 3, probe);
    CHECK(conn_reply(&c, out, sizeof(out)) == '+');
    CHECK_EQ(call_int(&c, 2, del), 1);
    close(c.fd);

    pipelined_turns();
    incrs();
    incr_edge();
    clients_end();
    visibility();
    abuse();
    heap_returns(heap_start);
    for (int i = 0; i < 2; i++) {
        CHECK(waitpid(pids[i], NULL, WNOHANG) == 0); /* both still serve */
    }
    stop_servers();
    return 0;
}
