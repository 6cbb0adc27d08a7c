/*
 * A real host process for integration tests: fork a child that runs an
 * agent on a fresh unix socket, lets the test's setup function expose and
 * publish, then answers one-byte commands from the parent until told to
 * stop. Being the child's parent passes Yama's ptrace check.
 */
#ifndef HMAF_TEST_TARGET_H
#define HMAF_TEST_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hmaf/hmaf.h>

#define TARGET_TOKEN "test-token"

/* Runs in the child after the agent is up. Returns 0 or fails the child. */
typedef int (*target_setup_fn)(hmaf_agent_t *agent, void *arg);
/* Runs in the child per command byte; its return value is the reply. */
typedef int (*target_command_fn)(hmaf_agent_t *agent, int cmd, void *arg);

struct target {
    pid_t pid;
    int cmd_fd;   /* parent -> child */
    int reply_fd; /* child -> parent */
    char dir[64];
    char address[128];
};

struct target_options {
    target_setup_fn setup;
    target_command_fn command;
    void *arg;
    const char *engine;  /* NULL: default */
    int agent_threaded;  /* 1 unless set to -1 */
    int revoke_wait_ms;  /* 0: default */
    unsigned mailbox_slots; /* 0: default */
};

/* Start the child and wait until its agent listens. */
void target_start(struct target *t, const struct target_options *opts);
/* Send a command and wait for the reply byte. */
int target_command(struct target *t, int cmd);
/* Ask the child to exit; returns its exit status. */
int target_stop(struct target *t);
/* SIGKILL the child and reap it. */
void target_kill(struct target *t);
/* Run fn(arg) in n threads at once (n <= 64); the milliseconds until the
 * last of them ended. */
uint64_t target_threads_ms(int n, void *(*fn)(void *), void *arg);
/* SIGSTOP the child and return once it is stopped (kill() returns before
 * a thread running on another CPU has stopped). */
void target_pause(struct target *t);

/* A dpu process forked now and started later. A process with a ucx
 * session open cannot fork a child that opens one (docs/engines.md,
 * "ucx"), so a test that needs a dpu process beside its own sessions forks
 * it before it connects them. The child waits for dpu_child_start, runs
 * fn(arg) and exits 0; it exits 1 if the test dies first. */
struct dpu_child {
    pid_t pid;
    int go; /* parent -> child; -1 once started */
};
struct dpu_child dpu_child_fork(void (*fn)(void *), void *arg);
void dpu_child_start(struct dpu_child *c);

/* Session parameters for this target, with the right token. */
void target_session_params(const struct target *t, hmaf_session_params_t *p);
/* Connect a session, or skip the test (77) when ptrace access is denied. */
hmaf_session_t *target_connect(const struct target *t);
/* The same with parameters of the caller's (target_session_params first). */
hmaf_session_t *target_connect_params(const hmaf_session_params_t *p);

/* Byte i of the test pattern for buffer `salt`. */
static inline uint8_t target_pattern(uint64_t i, unsigned salt)
{
    return (uint8_t)((i * 2654435761u) >> 13 ^ (i >> 7) ^ salt);
}
void target_fill(void *buf, size_t len, uint64_t first, unsigned salt);
/* Index of the first byte of buf that is not the pattern, or len. */
size_t target_mismatch(const void *buf, size_t len, uint64_t first,
                       unsigned salt);
/* A 64 B read at a random offset below span from base (the offset from
 * a xorshift step of *state, each thread its own), checked against the
 * pattern of salt laid from base on: 0; the read's error; or 1 for wrong
 * bytes (reported on stderr). */
int target_read_random(hmaf_session_t *s, uint64_t base, uint64_t span,
                       unsigned salt, uint64_t *state);
/* For setup functions: n pieces of `piece` bytes (piece-aligned, the
 * pattern of salt 1), each exposed read-write on its own, all published
 * as `root`; *mem_out says where (it stays until the host exits). */
int target_expose_pieces(hmaf_agent_t *agent, const char *root, size_t n,
                         size_t piece, uint8_t **mem_out);
/* A command function: 'g' -> engine registrations made so far (low
 * byte), 's' -> live sessions, anything else 255. */
int target_stats_command(hmaf_agent_t *agent, int cmd, void *arg);
/* The address of root `name` (a failed lookup fails the test). */
uint64_t target_root(hmaf_session_t *s, const char *name);
/* buf holds the pattern from byte first on (check.h's report on failure). */
#define CHECK_PATTERN(buf, len, first, salt)                                   \
    CHECK_EQ(target_mismatch((buf), (len), (first), (salt)), (len))

#endif

/*
 * The standard host most integration tests use:
 *   root "buf":  STD_BUF_LEN bytes, pattern salt 1, exposed read-write as
 *                two exposures split at STD_SPLIT (not page aligned)
 *   root "ro":   STD_RO_LEN bytes, pattern salt 3, exposed read-only
 *   root "hole": STD_RO_LEN bytes, published but never exposed
 * Commands: 'v' -> 1 if "buf" holds pattern salt 2 everywhere;
 *           'r' -> revoke the second "buf" exposure, 1 on success;
 *           's' -> the number of live sessions;
 *           'b' -> malformed mailbox requests seen (capped at 254);
 *           'A', 'V', 'P', 'E', 'N' -> 1 if the latest refused handshake
 *           was refused for EAUTH, EVERSION, EPROTO, EENGINE, EPIDNS
 *           respectively.
 */
#define STD_BUF_LEN (64u * 1024 * 1024 + 8192)
#define STD_SPLIT (40u * 1024 * 1024 + 123)
#define STD_RO_LEN (1u * 1024 * 1024)
void target_start_standard(struct target *t);
/* threaded 0: the agent has no thread; the child drives hmaf_agent_poll. */
void target_start_standard_mode(struct target *t, int threaded);
/* The same with the agent's revoke_wait_ms (0: default): a long one puts
 * the sessions' periodic looks at the epoch far apart. */
void target_start_standard_wait(struct target *t, int threaded,
                                int revoke_wait_ms);
