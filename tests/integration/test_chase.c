/* Pointer chasing through a forked host's linked lists: every node visited
 * in order, several chains at once, early stops, step limits, a cycle, a
 * chain that runs into unexposed memory, and node buffers that share their
 * host address's alignment. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "target.h"

#define CHAINS 16
#define LEN 1000
#define BAD_CHAIN 5  /* its node 700 points at unexposed memory */
#define LOOP_CHAIN 6 /* its last node points back at itself */

struct node {
    uint64_t value; /* chain * LEN + position */
    uint64_t next;
    char pad[29];   /* an odd size: nodes sit at every alignment */
} __attribute__((packed));

struct lists {
    uint64_t heads[CHAINS];
};

static struct lists lists;

static int build(hmaf_agent_t *agent, void *arg)
{
    struct node *arena = calloc(CHAINS * LEN, sizeof(*arena));
    static uint64_t unexposed[8];
    int ret;

    (void)arg;
    if (arena == NULL) {
        return HMAF_ENOMEM;
    }
    for (int c = 0; c < CHAINS; c++) {
        for (int i = 0; i < LEN; i++) {
            struct node *n = &arena[c * LEN + i];
            n->value = (uint64_t)c * LEN + (uint64_t)i;
            n->next = i + 1 < LEN ? (uint64_t)(uintptr_t)(n + 1) : 0;
        }
        lists.heads[c] = (uint64_t)(uintptr_t)&arena[c * LEN];
    }
    arena[BAD_CHAIN * LEN + 700].next = (uint64_t)(uintptr_t)unexposed;
    arena[LOOP_CHAIN * LEN + LEN - 1].next =
        (uint64_t)(uintptr_t)&arena[LOOP_CHAIN * LEN + LEN - 1];
    ret = hmaf_agent_expose(agent, arena, CHAINS * LEN * sizeof(*arena),
                            HMAF_ACCESS_READ);
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "lists", &lists, sizeof(lists));
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, &lists, sizeof(lists),
                                HMAF_ACCESS_READ);
    }
    return ret;
}

struct visits {
    uint64_t seen[CHAINS];
    int misaligned;
    int out_of_order;
    size_t stop_chain;
    uint64_t stop_at;
};

static int visit(void *arg, size_t chain, uint64_t node_addr, const void *p)
{
    struct visits *v = arg;
    struct node n;

    memcpy(&n, p, sizeof(n));
    v->misaligned |= (uintptr_t)p % 64 != node_addr % 64;
    if (n.value != (uint64_t)chain * LEN + v->seen[chain] &&
        chain != LOOP_CHAIN) {
        v->out_of_order = 1;
    }
    v->seen[chain]++;
    return chain == v->stop_chain && v->seen[chain] == v->stop_at;
}

static void chase(hmaf_session_t *s, const uint64_t *heads, size_t max_steps,
                  struct visits *v, hmaf_chain_t *chains, int want)
{
    hmaf_chase_params_t p = {
        .node_len = sizeof(struct node),
        .next_offset = offsetof(struct node, next),
        .max_steps = max_steps,
        .visit = visit,
        .arg = v,
    };

    for (int c = 0; c < CHAINS; c++) {
        chains[c] = (hmaf_chain_t){.start = heads[c]};
    }
    CHECK_ERR(hmaf_session_chase(s, &p, chains, CHAINS), want);
    CHECK_EQ(v->misaligned, 0);
    CHECK_EQ(v->out_of_order, 0);
}

static void check_full_walk(hmaf_session_t *s, const uint64_t *heads)
{
    struct visits v = {.stop_chain = 3, .stop_at = 250};
    hmaf_chain_t chains[CHAINS];

    chase(s, heads, 5000, &v, chains, HMAF_EFAULT);
    for (int c = 0; c < CHAINS; c++) {
        size_t want = c == 3 ? 250 : c == BAD_CHAIN ? 701 : c == LOOP_CHAIN
                                                              ? 5000
                                                              : LEN;
        CHECK_EQ(chains[c].steps, want);
        CHECK_EQ(chains[c].status, c == BAD_CHAIN ? HMAF_EFAULT : 0);
    }
    CHECK_EQ(chains[0].last, heads[0] + (LEN - 1) * sizeof(struct node));
}

static void check_limits(hmaf_session_t *s, const uint64_t *heads)
{
    struct visits v = {.stop_chain = CHAINS};
    hmaf_chain_t chains[CHAINS];
    uint64_t empty[CHAINS] = {0};
    hmaf_chase_params_t bad = {.node_len = 8, .next_offset = 4,
                               .max_steps = 1};

    chase(s, heads, 10, &v, chains, 0);
    for (int c = 0; c < CHAINS; c++) {
        CHECK_EQ(chains[c].steps, 10);
    }
    memset(&v, 0, sizeof(v));
    v.stop_chain = CHAINS;
    chase(s, empty, 10, &v, chains, 0);
    CHECK_EQ(chains[0].steps, 0);
    CHECK_EQ(chains[0].last, 0);
    CHECK_ERR(hmaf_session_chase(s, &bad, chains, 1), HMAF_EINVAL);
    CHECK_ERR(hmaf_session_chase(s, NULL, chains, 1), HMAF_EINVAL);
}

/* Many chains at once (more working memory than a chase keeps on the
 * stack): 200 chains, each list walked by 12 or 13 of them. */
static void check_many_chains(hmaf_session_t *s, const uint64_t *heads)
{
    enum { MANY = 200 };
    hmaf_chain_t *chains = calloc(MANY, sizeof(*chains));
    hmaf_chase_params_t p = {
        .node_len = sizeof(struct node),
        .next_offset = offsetof(struct node, next),
        .max_steps = LEN,
    };

    CHECK(chains != NULL);
    for (int c = 0; c < MANY; c++) {
        chains[c].start = heads[c % CHAINS];
    }
    CHECK_ERR(hmaf_session_chase(s, &p, chains, MANY), HMAF_EFAULT);
    for (int c = 0; c < MANY; c++) {
        int list = c % CHAINS;
        CHECK_EQ(chains[c].steps, list == BAD_CHAIN ? 701 : LEN);
        CHECK_EQ(chains[c].status, list == BAD_CHAIN ? HMAF_EFAULT : 0);
        if (list != BAD_CHAIN && list != LOOP_CHAIN) {
            CHECK_EQ(chains[c].last,
                     heads[list] + (LEN - 1) * sizeof(struct node));
        }
    }
    free(chains);
}

int main(void)
{
    struct target t;
    struct target_options opts = {.setup = build};
    hmaf_session_t *s;
    uint64_t root;
    uint64_t heads[CHAINS];

    target_start(&t, &opts);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "lists", &root, NULL));
    CHECK_OK(hmaf_session_read(s, heads, root, sizeof(heads)));
    check_full_walk(s, heads);
    check_limits(s, heads);
    check_many_chains(s, heads);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_chase: ok\n");
    return 0;
}
