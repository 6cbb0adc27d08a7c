#include "kv_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENTS_MAX     128
#define READ_CHUNK     (64u << 10)
#define READ_TURN_MAX  (2u << 20)  /* bytes one client may send per turn */
/* One command still coming may hold this much (as redis-server's
 * client-query-buffer-limit): its 65,536 arguments of up to 1 MiB could
 * otherwise make one client take 64 GiB. */
#define QUERY_MAX      (256u << 20)
#define IDLE_WAIT_MS   1000
#define RECLAIM_WAIT_MS 1          /* while retired pieces wait to be freed */
#define QUIET_MS       10          /* nothing came this long: rest */

struct client {
    struct client *prev, *next; /* every open client, to close at the end */
    int fd;
    struct resp_buf in, out;
    size_t parsed;   /* bytes of `in` the queued commands came from */
    int closing;     /* close once `out` is written */
    int writing;     /* waiting for EPOLLOUT */
    int touched;     /* has commands or output this turn */
};

/* One parsed command of this turn. */
struct queued {
    struct client *c;
    struct resp_cmd cmd;
    /* CMD_WRITE: its writes in the turn's batch, or why it was refused */
    size_t first_write, nwrites;
    const char *refused;
};

struct kv_server {
    struct kv_server_params p;
    int listen_fd, ep;
    int port;
    struct client *clients;
    struct queued *queue;
    size_t nqueue, cap_queue;
    struct client **touched;
    size_t ntouched, cap_touched;
    struct kv_get *gets;
    size_t cap_gets;
    struct kv_write *writes;
    size_t cap_writes;
    uint64_t commands;
};

/* Stopping: a flag, and an eventfd in the loop's epoll set so that the
 * loop wakes whichever thread the signal was delivered to. */
static volatile sig_atomic_t stop_requested;
static int stop_fd = -1;

void kv_server_stop(void)
{
    uint64_t one = 1;
    int saved = errno;

    stop_requested = 1;
    if (stop_fd >= 0 && write(stop_fd, &one, sizeof(one)) < 0) {
        /* the flag alone stops the loop at its next turn */
    }
    errno = saved;
}

static void on_signal(int sig)
{
    (void)sig;
    kv_server_stop();
}

/* ---- command table ------------------------------------------------- */

enum cmd_kind { CMD_READ, CMD_WRITE, CMD_OTHER };

typedef void cmd_fn(struct kv_server *srv, struct client *c,
                    const struct resp_cmd *cmd);

struct command {
    const char *name;
    int min_args; /* with the name */
    int max_args; /* -1: any */
    int step;     /* arguments after the first key come in groups of this */
    enum cmd_kind kind;
    cmd_fn *fn;
};

static int arg_is(const struct resp_cmd *cmd, size_t i, const char *s)
{
    return cmd->argl[i] == strlen(s) &&
           strncasecmp(cmd->argv[i], s, cmd->argl[i]) == 0;
}

static void reply_store_error(struct client *c, int err)
{
    char msg[128];

    if (err == HMAF_EINVAL) {
        resp_error(&c->out, "ERR value is not an integer or out of range");
    } else if (err == HMAF_EOVERFLOW) {
        resp_error(&c->out, "ERR increment or decrement would overflow");
    } else {
        snprintf(msg, sizeof(msg), "ERR store: %s", hmaf_strerror(err));
        resp_error(&c->out, msg);
    }
}

static void cmd_ping(struct kv_server *srv, struct client *c,
                     const struct resp_cmd *cmd)
{
    (void)srv;
    if (cmd->argc == 2) {
        resp_bulk(&c->out, cmd->argv[1], cmd->argl[1]);
    } else {
        resp_simple(&c->out, "PONG");
    }
}

static void cmd_echo(struct kv_server *srv, struct client *c,
                     const struct resp_cmd *cmd)
{
    (void)srv;
    resp_bulk(&c->out, cmd->argv[1], cmd->argl[1]);
}

static void cmd_dbsize(struct kv_server *srv, struct client *c,
                       const struct resp_cmd *cmd)
{
    uint64_t count;
    int ret = kv_store_count(srv->p.store, &count);

    (void)cmd;
    if (ret < 0) {
        reply_store_error(c, ret);
    } else {
        resp_integer(&c->out, (int64_t)count);
    }
}

/* redis-benchmark and redis-cli ask for these; nothing is configurable. */
static void cmd_empty_array(struct kv_server *srv, struct client *c,
                            const struct resp_cmd *cmd)
{
    (void)srv;
    (void)cmd;
    resp_array(&c->out, 0);
}

static void cmd_info(struct kv_server *srv, struct client *c,
                     const struct resp_cmd *cmd)
{
    struct resp_buf text = {0};
    char line[256];
    uint64_t count = 0;

    (void)cmd;
    kv_store_count(srv->p.store, &count);
    snprintf(line, sizeof(line),
             "# Server\r\nredis_version:7.0.0\r\nhmaf_kv_role:%s\r\n"
             "tcp_port:%d\r\n# Stats\r\ntotal_commands_processed:%llu\r\n"
             "retired_pending:%zu\r\nretired_freed:%llu\r\n"
             "# Keyspace\r\ndb0:keys=%llu,expires=0\r\n",
             srv->p.role, srv->port, (unsigned long long)srv->commands,
             kv_store_pending(srv->p.store),
             (unsigned long long)srv->p.store->frees,
             (unsigned long long)count);
    resp_buf_put(&text, line, strlen(line));
    if (srv->p.info) {
        srv->p.info(srv->p.arg, &text);
    }
    resp_bulk(&c->out, text.data, text.len);
    resp_buf_release(&text);
}

static void cmd_quit(struct kv_server *srv, struct client *c,
                     const struct resp_cmd *cmd)
{
    (void)srv;
    (void)cmd;
    resp_simple(&c->out, "OK");
    c->closing = 1;
}

static void cmd_ok(struct kv_server *srv, struct client *c,
                   const struct resp_cmd *cmd)
{
    (void)srv;
    (void)cmd;
    resp_simple(&c->out, "OK");
}

static const struct command commands[] = {
    {"GET", 2, 2, 1, CMD_READ, NULL},
    {"MGET", 2, -1, 1, CMD_READ, NULL},
    {"EXISTS", 2, -1, 1, CMD_READ, NULL},
    {"SET", 3, 3, 1, CMD_WRITE, NULL},
    {"MSET", 3, -1, 2, CMD_WRITE, NULL},
    {"DEL", 2, -1, 1, CMD_WRITE, NULL},
    {"INCR", 2, 2, 1, CMD_WRITE, NULL},
    {"INCRBY", 3, 3, 1, CMD_WRITE, NULL},
    {"DBSIZE", 1, 1, 1, CMD_OTHER, cmd_dbsize},
    {"PING", 1, 2, 1, CMD_OTHER, cmd_ping},
    {"ECHO", 2, 2, 1, CMD_OTHER, cmd_echo},
    {"CONFIG", 2, -1, 1, CMD_OTHER, cmd_empty_array},
    {"COMMAND", 1, -1, 1, CMD_OTHER, cmd_empty_array},
    {"INFO", 1, 2, 1, CMD_OTHER, cmd_info},
    {"SELECT", 2, 2, 1, CMD_OTHER, cmd_ok},
    {"QUIT", 1, 1, 1, CMD_OTHER, cmd_quit},
};

static const struct command *find_command(const struct resp_cmd *cmd)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (arg_is(cmd, 0, commands[i].name)) {
            return &commands[i];
        }
    }
    return NULL;
}

static int args_ok(const struct command *def, const struct resp_cmd *cmd)
{
    int argc = (int)cmd->argc;

    return argc >= def->min_args &&
           (def->max_args < 0 || argc <= def->max_args) &&
           (def->step != 2 || argc % 2 == 1);
}

/* NULL with the error already answered when the command cannot run. */
static const struct command *check_command(struct client *c,
                                           const struct resp_cmd *cmd)
{
    const struct command *def = find_command(cmd);
    char msg[128];

    if (def == NULL) {
        snprintf(msg, sizeof(msg), "ERR unknown command '%.*s'",
                 (int)(cmd->argl[0] < 64 ? cmd->argl[0] : 64), cmd->argv[0]);
        resp_error(&c->out, msg);
        return NULL;
    }
    if (!args_ok(def, cmd)) {
        snprintf(msg, sizeof(msg),
                 "ERR wrong number of arguments for '%s' command", def->name);
        resp_error(&c->out, msg);
        return NULL;
    }
    return def;
}

/* ---- batched reads ------------------------------------------------- */

static size_t read_keys(const struct resp_cmd *cmd)
{
    return cmd->argc - 1;
}

static int grow_gets(struct kv_server *srv, size_t n)
{
    if (n > srv->cap_gets) {
        struct kv_get *g = realloc(srv->gets, n * sizeof(*g));
        if (g == NULL) {
            return -1;
        }
        srv->gets = g;
        srv->cap_gets = n;
    }
    return 0;
}

static void reply_value(struct client *c, const struct kv_get *g)
{
    char digits[24];

    if (!g->found) {
        resp_nil(&c->out);
    } else if (g->kind == KV_INTEGER) {
        int n = snprintf(digits, sizeof(digits), "%lld", (long long)g->integer);
        resp_bulk(&c->out, digits, (size_t)n);
    } else {
        resp_bulk(&c->out, g->value, g->value_len);
    }
}

/* Answer queue[first, last): GET, MGET and EXISTS, with one lookup. */
static void run_reads(struct kv_server *srv, size_t first, size_t last)
{
    size_t n = 0, k = 0;
    int ret;

    for (size_t i = first; i < last; i++) {
        n += read_keys(&srv->queue[i].cmd);
    }
    ret = grow_gets(srv, n) < 0 ? HMAF_ENOMEM : 0;
    for (size_t i = first; ret == 0 && i < last; i++) {
        const struct resp_cmd *cmd = &srv->queue[i].cmd;
        for (size_t a = 1; a < cmd->argc; a++) {
            srv->gets[k].key = cmd->argv[a];
            srv->gets[k++].key_len = cmd->argl[a];
        }
    }
    if (ret == 0) {
        ret = kv_store_get_many(srv->p.store, srv->gets, n);
    }
    k = 0;
    for (size_t i = first; i < last; i++) {
        struct client *c = srv->queue[i].c;
        const struct resp_cmd *cmd = &srv->queue[i].cmd;
        size_t keys = read_keys(cmd);

        if (ret < 0) {
            reply_store_error(c, ret);
        } else if (arg_is(cmd, 0, "EXISTS")) {
            int64_t found = 0;
            for (size_t j = 0; j < keys; j++) {
                found += srv->gets[k + j].found;
            }
            resp_integer(&c->out, found);
        } else if (arg_is(cmd, 0, "MGET")) {
            resp_array(&c->out, keys);
            for (size_t j = 0; j < keys; j++) {
                reply_value(c, &srv->gets[k + j]);
            }
        } else {
            reply_value(c, &srv->gets[k]);
        }
        k += keys;
    }
    if (ret == 0) {
        kv_get_release(srv->gets, n);
    }
}

/* ---- batched writes ------------------------------------------------ */

static int parse_arg_int(const struct resp_cmd *cmd, size_t i, int64_t *out)
{
    char buf[24], *end;
    long long v;

    if (cmd->argl[i] == 0 || cmd->argl[i] >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, cmd->argv[i], cmd->argl[i]);
    buf[cmd->argl[i]] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno || *end != '\0' || buf[0] == ' ' || buf[0] == '+') {
        return -1;
    }
    *out = v;
    return 0;
}

static int grow_writes(struct kv_server *srv, size_t n)
{
    if (n > srv->cap_writes) {
        struct kv_write *w = realloc(srv->writes, n * sizeof(*w));
        if (w == NULL) {
            return -1;
        }
        srv->writes = w;
        srv->cap_writes = n;
    }
    return 0;
}

/* Why a write command cannot run, or NULL. */
static const char *refuse_write(const struct resp_cmd *cmd, int64_t *by_out)
{
    int mset = arg_is(cmd, 0, "MSET"), set = arg_is(cmd, 0, "SET");

    for (size_t i = 1; i < cmd->argc; i += 1 + (mset || set)) {
        if (cmd->argl[i] > KV_KEY_MAX) {
            return "ERR key too long";
        }
        if ((mset || set) && cmd->argl[i + 1] > KV_VALUE_MAX) {
            return "ERR value larger than 1 MiB";
        }
    }
    *by_out = 1;
    if (arg_is(cmd, 0, "INCRBY") && parse_arg_int(cmd, 2, by_out) < 0) {
        return "ERR value is not an integer or out of range";
    }
    return NULL;
}

/* q's writes, from srv->writes[k]; the next free place. */
static size_t queue_writes(struct kv_server *srv, struct queued *q, size_t k)
{
    const struct resp_cmd *cmd = &q->cmd;
    int64_t by;
    int pairs = arg_is(cmd, 0, "SET") || arg_is(cmd, 0, "MSET");
    int del = arg_is(cmd, 0, "DEL");

    q->first_write = k;
    q->nwrites = 0;
    q->refused = refuse_write(cmd, &by);
    if (q->refused) {
        return k;
    }
    for (size_t i = 1; i < cmd->argc; i += 1 + pairs) {
        srv->writes[k++] = (struct kv_write){
            .op = pairs ? KV_SET : del ? KV_DEL : KV_INCRBY,
            .key = cmd->argv[i], .key_len = cmd->argl[i],
            .value = pairs ? cmd->argv[i + 1] : NULL,
            .value_len = pairs ? cmd->argl[i + 1] : 0, .by = by};
        if (!pairs && !del) {
            break; /* INCRBY's second argument is not a key */
        }
    }
    q->nwrites = k - q->first_write;
    return k;
}

static void reply_writes(struct kv_server *srv, const struct queued *q)
{
    const struct kv_write *w = &srv->writes[q->first_write];
    struct client *c = q->c;
    int64_t deleted = 0;

    if (q->refused) {
        resp_error(&c->out, q->refused);
        return;
    }
    for (size_t i = 0; i < q->nwrites; i++) {
        if (w[i].status < 0) {
            reply_store_error(c, w[i].status);
            return;
        }
        deleted += w[i].deleted;
    }
    if (w->op == KV_SET) {
        resp_simple(&c->out, "OK");
    } else if (w->op == KV_DEL) {
        resp_integer(&c->out, deleted);
    } else {
        resp_integer(&c->out, w->result);
    }
}

/* Answer queue[first, last): SET, MSET, DEL, INCR and INCRBY of every
 * client, as one batch: all published before any is answered. */
static void run_writes(struct kv_server *srv, size_t first, size_t last)
{
    size_t n = 0;
    int ret;

    for (size_t i = first; i < last; i++) {
        n += srv->queue[i].cmd.argc; /* at least its writes */
    }
    ret = grow_writes(srv, n);
    n = 0;
    for (size_t i = first; ret == 0 && i < last; i++) {
        n = queue_writes(srv, &srv->queue[i], n);
    }
    if (ret == 0) {
        kv_store_write_many(srv->p.store, srv->writes, n);
    }
    for (size_t i = first; i < last; i++) {
        if (ret < 0) {
            reply_store_error(srv->queue[i].c, HMAF_ENOMEM);
        } else {
            reply_writes(srv, &srv->queue[i]);
        }
    }
}

/* queue[i, j): the commands of i's kind that follow it. */
static size_t run_of_kind(struct kv_server *srv, size_t i, enum cmd_kind kind)
{
    size_t j = i + 1;

    while (j < srv->nqueue) {
        const struct command *next = find_command(&srv->queue[j].cmd);
        if (next == NULL || next->kind != kind ||
            !args_ok(next, &srv->queue[j].cmd)) {
            break;
        }
        j++;
    }
    return j;
}

/* Run the turn's commands in arrival order; each client's stay in its
 * order, and a run of reads (of any clients) is one lookup, a run of
 * writes one batch. */
static void run_queue(struct kv_server *srv)
{
    size_t i = 0;

    while (i < srv->nqueue) {
        struct queued *q = &srv->queue[i];
        const struct command *def = check_command(q->c, &q->cmd);
        size_t j;

        if (def == NULL) {
            i++;
            continue;
        }
        if (def->kind != CMD_OTHER) {
            j = run_of_kind(srv, i, def->kind);
            if (def->kind == CMD_READ) {
                run_reads(srv, i, j);
            } else {
                run_writes(srv, i, j);
            }
            i = j;
            continue;
        }
        def->fn(srv, q->c, &q->cmd);
        i++;
    }
    srv->commands += srv->nqueue;
    for (i = 0; i < srv->nqueue; i++) {
        resp_cmd_release(&srv->queue[i].cmd);
    }
    srv->nqueue = 0;
}

/* ---- clients ------------------------------------------------------- */

static int watch(struct kv_server *srv, int op, struct client *c)
{
    struct epoll_event ev = {.events = c->writing ? EPOLLOUT : EPOLLIN,
                             .data.ptr = c};

    return epoll_ctl(srv->ep, op, c->fd, &ev);
}

static void client_close(struct kv_server *srv, struct client *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->clients = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    epoll_ctl(srv->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    resp_buf_release(&c->in);
    resp_buf_release(&c->out);
    free(c);
}

static void accept_clients(struct kv_server *srv)
{
    for (;;) {
        int one = 1;
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK);
        struct client *c;

        if (fd < 0) {
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        if (watch(srv, EPOLL_CTL_ADD, c) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = srv->clients;
        if (c->next) {
            c->next->prev = c;
        }
        srv->clients = c;
    }
}

static int touch(struct kv_server *srv, struct client *c)
{
    if (c->touched) {
        return 0;
    }
    if (srv->ntouched == srv->cap_touched) {
        size_t cap = srv->cap_touched ? 2 * srv->cap_touched : 64;
        struct client **t = realloc(srv->touched, cap * sizeof(*t));
        if (t == NULL) {
            return -1;
        }
        srv->touched = t;
        srv->cap_touched = cap;
    }
    c->touched = 1;
    srv->touched[srv->ntouched++] = c;
    return 0;
}

/* A command's small argument arrays live inside it (resp.h): after a
 * copy, point at the copy's. */
static void repoint(struct resp_cmd *cmd)
{
    if (cmd->argc <= RESP_ARGS_INLINE) {
        cmd->argv = cmd->argv_inline;
        cmd->argl = cmd->argl_inline;
    }
}

static int enqueue(struct kv_server *srv, struct client *c,
                   const struct resp_cmd *cmd)
{
    if (srv->nqueue == srv->cap_queue) {
        size_t cap = srv->cap_queue ? 2 * srv->cap_queue : 256;
        struct queued *q = realloc(srv->queue, cap * sizeof(*q));
        if (q == NULL) {
            return -1;
        }
        srv->queue = q;
        srv->cap_queue = cap;
        /* the moved commands' small argument arrays moved with them */
        for (size_t i = 0; i < srv->nqueue; i++) {
            repoint(&srv->queue[i].cmd);
        }
    }
    srv->queue[srv->nqueue] = (struct queued){.c = c, .cmd = *cmd};
    repoint(&srv->queue[srv->nqueue++].cmd);
    return 0;
}

/* Queue every whole command c sent; a malformed one ends the client after
 * the answers to those before it. */
static void parse_client(struct kv_server *srv, struct client *c)
{
    while (!c->closing) {
        struct resp_cmd cmd;
        size_t used = 0;
        const char *why = NULL;
        int ret = resp_parse(c->in.data + c->parsed, c->in.len - c->parsed,
                             &cmd, &used, &why);

        if (ret == RESP_MORE && c->in.len - c->parsed > QUERY_MAX) {
            ret = RESP_ERROR;
            why = "command over 256 MiB (client query buffer limit)";
        }
        if (ret == RESP_MORE) {
            return;
        }
        if (ret == RESP_ERROR) {
            char msg[160];
            snprintf(msg, sizeof(msg), "ERR %s", why);
            /* answered after the queued commands: run them first */
            run_queue(srv);
            resp_error(&c->out, msg);
            c->closing = 1;
            return;
        }
        c->parsed += used;
        if (cmd.argc == 0) {
            continue;
        }
        if (enqueue(srv, c, &cmd) < 0) {
            resp_cmd_release(&cmd);
            c->closing = 1;
            return;
        }
        if (arg_is(&cmd, 0, "QUIT")) {
            c->closing = 1; /* what follows QUIT is not run */
            return;
        }
    }
}

/* Read what c sent (up to READ_TURN_MAX this turn). */
static void read_client(struct kv_server *srv, struct client *c)
{
    size_t got = 0;
    int ended = 0;

    if (touch(srv, c) < 0) {
        return;
    }
    while (got < READ_TURN_MAX && !c->closing && !ended) {
        ssize_t n;

        if (resp_buf_reserve(&c->in, READ_CHUNK) < 0) {
            c->closing = 1;
            break;
        }
        n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (n > 0) {
            c->in.len += (size_t)n;
            got += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            ended = 1;
        } else if (errno == EAGAIN) {
            break;
        }
    }
    /* a client that sent its commands and shut its side down still gets
     * them run and answered: close only once they are parsed */
    parse_client(srv, c);
    if (ended) {
        c->closing = 1;
    }
}

/* Write c's answers; 1 when c was closed. */
static int flush_client(struct kv_server *srv, struct client *c)
{
    size_t done = 0;
    int writing;

    resp_buf_consume(&c->in, c->parsed);
    c->parsed = 0;
    while (done < c->out.len) {
        ssize_t n = write(c->fd, c->out.data + done, c->out.len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            client_close(srv, c);
            return 1;
        }
    }
    resp_buf_consume(&c->out, done);
    if (c->closing && c->out.len == 0) {
        client_close(srv, c);
        return 1;
    }
    /* a client that does not read its answers is not read either */
    writing = c->out.len > 0;
    if (writing != c->writing) {
        c->writing = writing;
        watch(srv, EPOLL_CTL_MOD, c);
    }
    return 0;
}

static void flush_touched(struct kv_server *srv)
{
    for (size_t i = 0; i < srv->ntouched; i++) {
        struct client *c = srv->touched[i];
        c->touched = 0;
        flush_client(srv, c);
    }
    srv->ntouched = 0;
}

static int wait_events(struct kv_server *srv, struct epoll_event *evs)
{
    int n = epoll_wait(srv->ep, evs, EVENTS_MAX, 0);

    if (n == 0) {
        /* nothing waiting: hold no references while we sleep */
        kv_store_idle(srv->p.store);
        n = epoll_wait(srv->ep, evs, EVENTS_MAX,
                       kv_store_pending(srv->p.store) ? RECLAIM_WAIT_MS
                                                      : QUIET_MS);
    }
    if (n == 0 && kv_store_pending(srv->p.store) == 0) {
        kv_store_rest(srv->p.store);
        n = epoll_wait(srv->ep, evs, EVENTS_MAX, IDLE_WAIT_MS);
    }
    return n;
}

int kv_server_run(struct kv_server *srv)
{
    struct epoll_event evs[EVENTS_MAX];

    while (!stop_requested) {
        int n = wait_events(srv, evs);
        int wake = 0;

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("epoll_wait");
            return -1;
        }
        kv_store_enter(srv->p.store);
        for (int i = 0; i < n; i++) {
            struct client *c = evs[i].data.ptr;
            if (c == NULL) {
                accept_clients(srv);
            } else if (c == (struct client *)&stop_fd) {
                continue; /* the loop's condition ends it */
            } else if (c == (struct client *)srv) {
                wake = 1;
            } else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) &&
                       !c->writing) {
                read_client(srv, c);
            } else {
                touch(srv, c);
            }
        }
        run_queue(srv);
        kv_store_leave(srv->p.store);
        flush_touched(srv);
        if (wake && srv->p.on_wake) {
            srv->p.on_wake(srv->p.arg);
        }
    }
    return 0;
}

/* ---- setup --------------------------------------------------------- */

static int listen_on(const char *bind_addr, int port, int *port_out)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 511) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        close(fd);
        return -1;
    }
    *port_out = ntohs(sa.sin_port);
    return fd;
}

int kv_server_create(const struct kv_server_params *p, struct kv_server **out)
{
    struct kv_server *srv = calloc(1, sizeof(*srv));
    struct epoll_event ev = {.events = EPOLLIN};
    struct sigaction sa = {.sa_handler = on_signal};

    if (srv == NULL) {
        return -1;
    }
    srv->p = *p;
    srv->listen_fd = listen_on(p->bind ? p->bind : "127.0.0.1", p->port,
                               &srv->port);
    if (srv->listen_fd < 0) {
        perror("listen");
        free(srv);
        return -1;
    }
    srv->ep = epoll_create1(0);
    ev.data.ptr = NULL;
    if (srv->ep < 0 || epoll_ctl(srv->ep, EPOLL_CTL_ADD, srv->listen_fd, &ev) < 0) {
        goto err;
    }
    if (p->wake_fd >= 0 && p->on_wake) {
        ev.data.ptr = srv;
        if (epoll_ctl(srv->ep, EPOLL_CTL_ADD, p->wake_fd, &ev) < 0) {
            goto err;
        }
    }
    stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ev.data.ptr = &stop_fd;
    if (stop_fd < 0 || epoll_ctl(srv->ep, EPOLL_CTL_ADD, stop_fd, &ev) < 0) {
        goto err;
    }
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    *out = srv;
    return 0;
err:
    perror("epoll");
    if (stop_fd >= 0) {
        close(stop_fd);
        stop_fd = -1;
    }
    if (srv->ep >= 0) {
        close(srv->ep);
    }
    close(srv->listen_fd);
    free(srv);
    return -1;
}

int kv_server_port(const struct kv_server *srv)
{
    return srv->port;
}

void kv_server_destroy(struct kv_server *srv)
{
    if (srv == NULL) {
        return;
    }
    while (srv->clients) {
        client_close(srv, srv->clients);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    close(stop_fd);
    stop_fd = -1;
    close(srv->ep);
    close(srv->listen_fd);
    free(srv->queue);
    free(srv->touched);
    free(srv->gets);
    free(srv->writes);
    free(srv);
}

int kv_options_parse(int argc, char **argv, struct kv_options *o)
{
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL) {
            return -1;
        }
        if (strcmp(argv[i], "--port") == 0) {
            o->port = atoi(v);
        } else if (strcmp(argv[i], "--address") == 0) {
            o->address = v;
        } else if (strcmp(argv[i], "--token") == 0) {
            o->token = v;
        } else if (strcmp(argv[i], "--bind") == 0) {
            o->bind = v;
        } else if (strcmp(argv[i], "--buckets") == 0) {
            o->buckets = strtoul(v, NULL, 0);
        } else if (strcmp(argv[i], "--heap-mib") == 0) {
            o->heap_mib = strtoul(v, NULL, 0);
        } else {
            return -1;
        }
    }
    return 0;
}

int kv_server_serve(const struct kv_server_params *p)
{
    struct kv_server *srv;
    int ret;

    if (kv_server_create(p, &srv) < 0) {
        return -1;
    }
    printf("ready port %d\n", kv_server_port(srv));
    fflush(stdout);
    ret = kv_server_run(srv);
    kv_server_destroy(srv);
    return ret;
}
