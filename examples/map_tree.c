/*
 * Mapping mode on a pointer-linked structure, in one command. A forked host
 * builds a binary search tree of 100,000 keys with ordinary pointers; this
 * process, the dpu side, maps the host's tree at the host's own addresses
 * and walks it with plain C: lookups of present and absent keys, then an
 * in-order traversal. No HMAF call per access: pages come on first touch.
 *
 *   map_tree        (exit 0: every check passed; 77: no userfaultfd here)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hmaf/hmaf.h>
#include "help.h"

#define NKEYS     100000u /* keys 0, 2, 4, ...; the odd ones are absent */
#define STRIDE    61803u  /* coprime with NKEYS, about NKEYS / 1.618 */
#define HINT      ((void *)0x5a0000000000ull) /* far from heaps and stacks */
#define MAX_DEPTH 200 /* deeper means a cycle: a corrupt tree */

struct node {
    struct node *left, *right;
    uint64_t key, value;
};

/* Published as root "tree": what the dpu side needs to map and walk it. */
struct tree {
    struct node *root;
    struct node *arena; /* every node, in [arena, arena + arena_len) */
    size_t arena_len;   /* whole pages: a mirror fetches whole pages */
};

static uint64_t value_of(uint64_t key)
{
    return key * 2654435761u + 1;
}

/* Node i gets key 2 * (i * STRIDE % NKEYS): inserted in this golden-ratio
 * order the tree comes out balanced, and neighbouring keys sit far apart
 * in the arena. */
static int build(struct tree *t)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    t->arena_len = (NKEYS * sizeof(struct node) + page - 1) & ~(page - 1);
    t->arena = mmap(HINT, t->arena_len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (t->arena == MAP_FAILED) {
        return -1;
    }
    for (uint64_t i = 0; i < NKEYS; i++) {
        struct node *n = &t->arena[i], **at = &t->root;
        n->key = 2 * (i * STRIDE % NKEYS);
        n->value = value_of(n->key);
        while (*at != NULL) {
            at = n->key < (*at)->key ? &(*at)->left : &(*at)->right;
        }
        *at = n;
    }
    return 0;
}

/* The host: build, expose read-only, publish, listen, say so on ready_fd,
 * then serve until the dpu side closes done_fd (or dies). */
static int host_main(const char *address, int ready_fd, int done_fd)
{
    static struct tree t; /* exposed: it outlives the agent */
    hmaf_agent_params_t params;
    hmaf_agent_t *agent = NULL;
    char byte;
    int ok;

    hmaf_agent_params_init(&params);
    ok =
        build(&t) == 0 && hmaf_agent_create(&params, &agent) == 0 &&
        hmaf_agent_expose(agent, t.arena, t.arena_len, HMAF_ACCESS_READ) == 0 &&
        hmaf_agent_expose(agent, &t, sizeof(t), HMAF_ACCESS_READ) == 0 &&
        hmaf_agent_publish(agent, "tree", &t, sizeof(t)) == 0 &&
        hmaf_agent_listen(agent, address) == 0 && write(ready_fd, "R", 1) == 1;
    if (ok) {
        (void)!read(done_fd, &byte, 1); /* EOF: the dpu side is done */
    }
    hmaf_agent_destroy(agent);
    return ok ? 0 : 1;
}

static const struct node *find(const struct node *n, uint64_t key)
{
    for (int depth = 0; n != NULL && n->key != key && depth < MAX_DEPTH;
         depth++) {
        n = key < n->key ? n->left : n->right;
    }
    return n != NULL && n->key == key ? n : NULL;
}

struct walk {
    uint64_t seen, wrong;
    int depth;
};

/* In order, the keys must come out as 0, 2, 4, ... with their values. */
static void in_order(const struct node *n, struct walk *w, int depth)
{
    if (n == NULL || depth > MAX_DEPTH) {
        w->wrong += n != NULL;
        return;
    }
    w->depth = depth > w->depth ? depth : w->depth;
    in_order(n->left, w, depth + 1);
    w->wrong += n->key != 2 * w->seen++ || n->value != value_of(n->key);
    in_order(n->right, w, depth + 1);
}

/* Plain pointer code: the mirror sits at the host's own addresses. */
static int walk_tree(const struct tree *t, hmaf_map_t *map)
{
    struct walk w = {0, 0, 0};
    struct timespec t0, t1;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t key = 0; key < 2 * (uint64_t)NKEYS; key++) {
        const struct node *n = find(t->root, key);
        w.wrong += key % 2 ? n != NULL : n == NULL || n->value != value_of(key);
    }
    in_order(t->root, &w, 1);
    w.wrong += w.seen != NKEYS;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    hmaf_map_stats(map, &st);
    printf("map_tree: %u lookups (half absent) and an in-order walk of %llu "
           "keys in %.3f s: %llu wrong, depth %d\n"
           "map_tree: %llu faults, %llu pages fetched (%llu read ahead)\n",
           2 * NKEYS, (unsigned long long)w.seen,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9,
           (unsigned long long)w.wrong, w.depth, (unsigned long long)st.faults,
           (unsigned long long)st.pages_fetched,
           (unsigned long long)st.readahead_pages);
    return w.wrong == 0 ? 0 : HMAF_EPROTO;
}

/* The dpu side: find the root, read it, map the arena it names. */
static int dpu_main(const char *address)
{
    hmaf_session_params_t sp;
    hmaf_map_params_t mp;
    hmaf_session_t *s = NULL;
    hmaf_map_t *map = NULL;
    struct tree t;
    uint64_t at;
    int ret;

    hmaf_session_params_init(&sp);
    sp.address = address;
    hmaf_map_params_init(&mp);
    mp.flags = HMAF_MAP_READ_ONLY;
    ret = hmaf_session_create(&sp, &s);
    if (ret == 0) {
        ret = hmaf_session_lookup(s, "tree", &at, NULL);
    }
    if (ret == 0) {
        ret = hmaf_session_read(s, &t, at, sizeof(t));
    }
    if (ret == 0) {
        ret = hmaf_map_create(s, (uintptr_t)t.arena, t.arena_len, &mp, &map);
    }
    if (ret == 0) {
        printf("map_tree: the host's tree mapped at %p, the host's own "
               "address\n",
               (void *)t.arena);
        ret = walk_tree(&t, map);
    }
    hmaf_map_destroy(map);
    hmaf_session_destroy(s);
    return ret;
}

static const char usage_text[] =
    "usage: map_tree\n"
    "Forks a host that builds a binary tree of pointers and maps it\n"
    "into this process (hmaf_map_create) at the host's own\n"
    "addresses, then walks it as local memory.\n";

int main(int argc, char **argv)
{
    char dir[] = "/tmp/map_tree-XXXXXX", address[64], byte;
    int ready[2], done[2], status, host = -1, ret = HMAF_ECONNREFUSED;
    pid_t pid;

    if (asked_help(argc, argv) || argc != 1) {
        return print_usage(usage_text, asked_help(argc, argv));
    }
    if (mkdtemp(dir) == NULL || pipe(ready) != 0 || pipe(done) != 0) {
        perror("map_tree");
        return 1;
    }
    /* A socket in a private directory: only our own user can connect. */
    snprintf(address, sizeof(address), "unix:%s/agent.sock", dir);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        close(done[1]);
        _exit(host_main(address, ready[1], done[0]));
    }
    close(ready[1]);
    close(done[0]);
    if (pid > 0 && read(ready[0], &byte, 1) == 1) {
        ret = dpu_main(address); /* as the host's parent we may read it */
    }
    close(done[1]); /* the host stops */
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
        host = WEXITSTATUS(status);
    }
    rmdir(dir);
    if (ret == HMAF_ENOTSUP) {
        printf("map_tree: mapping mode unavailable here (no userfaultfd)\n");
        return 77;
    }
    if (ret < 0 || host != 0) {
        printf("map_tree: FAILED (%s: %s; host exit status %d)\n",
               hmaf_err_name(ret), hmaf_strerror(ret), host);
        return 1;
    }
    printf("map_tree: ok\n");
    return 0;
}
