/*
 * The Redis-protocol front end the two kv programs share: one thread, one
 * epoll loop, any number of clients. Each turn of the loop reads whatever
 * every ready client sent, parses all the commands that arrived, runs
 * them in order — consecutive GET, MGET and EXISTS of all clients as one
 * batched lookup, a few vectored reads for all of them — and answers each
 * client with one write.
 */
#ifndef KV_SERVER_H
#define KV_SERVER_H

#include "kv_store.h"
#include "resp.h"

struct kv_server_params {
    const char *bind;     /* address to listen on ("127.0.0.1") */
    int port;             /* 0: any; the port is in kv_server.port */
    struct kv_store *store;
    const char *role;     /* "host" or "dpu": INFO and logs */
    /* optional: more INFO lines (key:value\r\n) */
    void (*info)(void *arg, struct resp_buf *out);
    /* optional: another fd the loop waits on (the dpu's ring fd); its
     * handler runs between batches */
    int wake_fd;
    void (*on_wake)(void *arg);
    void *arg;
};

struct kv_server;

int kv_server_create(const struct kv_server_params *p, struct kv_server **out);
int kv_server_port(const struct kv_server *srv);
/* Serve until kv_server_stop() (async-signal-safe) or SIGINT/SIGTERM. */
int kv_server_run(struct kv_server *srv);
void kv_server_stop(void);
void kv_server_destroy(struct kv_server *srv);
/* Create, say "ready port P" on stdout (the tests and scripts wait for
 * it), run until stopped, destroy: what both programs do. */
int kv_server_serve(const struct kv_server_params *p);

/* Reads the program's common options: --port P, --address A, --token T,
 * --buckets N; unknown ones return -1. */
struct kv_options {
    int port;
    const char *address;
    const char *token;
    const char *bind;
    unsigned long buckets;
    unsigned long heap_mib;
};
int kv_options_parse(int argc, char **argv, struct kv_options *o);

#endif
