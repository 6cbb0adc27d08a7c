/* Regression: bad input that public calls accepted.
 *
 * - hmaf_agent_publish() took len 0 and ranges whose end wraps past 2^64
 *   (host.h: HMAF_EINVAL, HMAF_EOVERFLOW); both returned 0.
 * - hmaf_map_create() near the top of the address space: the overflow
 *   check subtracted a slack from UINT64_MAX - remote_addr, which wrapped,
 *   so ranges whose (page-rounded) end wraps were mapped.
 * - hmaf_map_params_t.readahead_max was not bounded: the staging buffer of
 *   (readahead_max + 1) pages wrapped to 0 bytes for UINT_MAX, and the
 *   first fault's engine read overran it (an ASan heap-buffer-overflow in
 *   process_vm_readv), or the allocation was absurd. Now HMAF_EINVAL at
 *   create. Each value runs in its own child process, so a crash (or an
 *   ASan abort on a huge allocation) is reported, not fatal to the rest.
 * - A request handle of another session on the same thread was taken as
 *   one of this session's (handles are slot | index | generation, with
 *   per-queue generations starting at 1), so hmaf_request_test/wait
 *   consumed the wrong request. Now HMAF_ESTALE, and the other session's
 *   request keeps its status.
 *
 * Every check runs and reports; the program fails if any did. */
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

static int failures;

/* Like CHECK_ERR, but report and go on. */
#define EXPECT_ERR(expr, err)                                                  \
    do {                                                                       \
        int expect_r_ = (expr);                                                \
        if (expect_r_ != (err)) {                                              \
            fprintf(stderr, "%s:%d: %s returned %s (%d), want %s\n", __FILE__, \
                    __LINE__, #expr, hmaf_err_name(expect_r_), expect_r_,      \
                    hmaf_err_name(err));                                       \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define MAP_PAGES 64

/* In a child: connect, create a mirror of "buf" with this readahead, send
 * the verdict up the pipe; if it was accepted, fault pages in
 * sequentially, which is where an undersized staging buffer overflows. */
static void readahead_child(const struct target *t, unsigned readahead, int fd)
{
    hmaf_map_params_t p;
    hmaf_map_t *map = NULL;
    hmaf_session_t *s;
    uint64_t buf;
    volatile const uint8_t *at;
    unsigned sum = 0;
    int ret;

    alarm(20); /* a fault handler gone wrong must not hang the test */
    s = target_connect(t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    buf = (buf + 4095) & ~(uint64_t)4095; /* whole pages: engine reads */
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE | HMAF_MAP_READ_ONLY;
    p.readahead_max = readahead;
    ret = hmaf_map_create(s, buf, MAP_PAGES * 4096, &p, &map);
    CHECK(write(fd, &ret, sizeof(ret)) == sizeof(ret));
    if (ret == 0) {
        at = hmaf_map_local(map, buf);
        for (size_t i = 0; i < MAP_PAGES; i++) {
            sum += at[i * 4096];
        }
        ret = (int)sum; /* survived: report it, keep the sum alive */
        CHECK(write(fd, &ret, sizeof(ret)) == sizeof(ret));
        hmaf_map_destroy(map);
    }
    hmaf_session_destroy(s);
    _exit(0);
}

static void check_readahead(const struct target *t, unsigned readahead)
{
    int fds[2], ret = 1, status = 0, touched;
    pid_t pid;

    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        readahead_child(t, readahead, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], &ret, sizeof(ret)) != sizeof(ret)) {
        ret = 1; /* died inside hmaf_map_create */
    }
    touched = read(fds[0], &status, sizeof(status)) == sizeof(status);
    close(fds[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        SKIP("ptrace access to the host process is not permitted here");
    }
    if (ret == HMAF_ENOTSUP) {
        SKIP("userfaultfd is not available to this process (valgrind?)");
    }
    if (ret == HMAF_EINVAL && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return;
    }
    fprintf(stderr,
            "readahead_max %u: hmaf_map_create %s, want HMAF_EINVAL; "
            "pages %s; child %s %d\n",
            readahead, ret == 1 ? "crashed" : hmaf_err_name(ret),
            ret != 0  ? "not touched"
            : touched ? "touched"
                      : "touch died",
            WIFEXITED(status) ? "exited" : "killed by signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    failures++;
}

/* The mirror's page-rounded range must not wrap either. */
static void check_map_near_top(hmaf_session_t *s)
{
    static const struct {
        uint64_t addr;
        size_t len;
    } cases[] = {
        {UINT64_MAX - 100, 50},     /* fits; its last page ends past 2^64 */
        {UINT64_MAX - 100, 200},    /* wraps */
        {UINT64_MAX - 5000, 4000},  /* fits; page-rounded end is 2^64 */
        {UINT64_MAX - 20000, 30000} /* wraps, within the old slack */
    };
    hmaf_map_params_t p;

    hmaf_map_params_init(&p);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int anywhere = 0; anywhere < 2; anywhere++) {
            hmaf_map_t *map = NULL;
            int ret;
            p.flags = anywhere ? HMAF_MAP_ANYWHERE : 0;
            ret = hmaf_map_create(s, cases[i].addr, cases[i].len, &p, &map);
            if (ret != HMAF_EOVERFLOW) {
                fprintf(stderr,
                        "hmaf_map_create(UINT64_MAX - %llu, %zu, %s) "
                        "returned %s, want HMAF_EOVERFLOW\n",
                        (unsigned long long)(UINT64_MAX - cases[i].addr),
                        cases[i].len, anywhere ? "ANYWHERE" : "in place",
                        hmaf_err_name(ret));
                failures++;
            }
            if (ret == 0) {
                hmaf_map_destroy(map);
            }
        }
    }
}

/* Session a posts a good read, session b a failing one, each from this
 * thread; each session must refuse the other's handle and keep its own. */
static void check_foreign_session_handles(hmaf_session_t *a, hmaf_session_t *b)
{
    uint64_t buf, hole;
    uint8_t va[16], vb[16];
    hmaf_req_t ha, hb;

    CHECK_OK(hmaf_session_lookup(a, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_lookup(a, "hole", &hole, NULL));
    CHECK_OK(hmaf_session_post_read(a, va, buf, sizeof(va), &ha));
    CHECK_OK(hmaf_session_post_read(b, vb, hole, sizeof(vb), &hb));
    if (ha == hb) {
        fprintf(stderr, "two sessions handed out the same handle %#llx\n",
                (unsigned long long)ha);
    }
    EXPECT_ERR(hmaf_request_test(a, hb), HMAF_ESTALE);
    EXPECT_ERR(hmaf_request_wait(a, hb), HMAF_ESTALE);
    EXPECT_ERR(hmaf_request_test(b, ha), HMAF_ESTALE);
    EXPECT_ERR(hmaf_request_wait(b, ha), HMAF_ESTALE);
    EXPECT_ERR(hmaf_request_wait(b, hb), HMAF_EFAULT); /* the real status */
    EXPECT_ERR(hmaf_request_wait(a, ha), 0);
    CHECK_OK(hmaf_session_flush(a));
    CHECK_OK(hmaf_session_flush(b));
}

static uint8_t memory[4096];

/* An agent in this process, as in test_channel.c. */
static void check_publish(void)
{
    hmaf_agent_params_t p;
    hmaf_agent_t *agent;
    const void *top = (const void *)(uintptr_t)(UINTPTR_MAX - 100);

    hmaf_agent_params_init(&p);
    p.threaded = 0;
    CHECK_OK(hmaf_agent_create(&p, &agent));
    /* The same ranges through expose: already refused (the control). */
    CHECK_ERR(hmaf_agent_expose(agent, memory, 0, HMAF_ACCESS_READ),
              HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_expose(agent, top, 200, HMAF_ACCESS_READ),
              HMAF_EOVERFLOW);
    EXPECT_ERR(hmaf_agent_publish(agent, "empty", memory, 0), HMAF_EINVAL);
    EXPECT_ERR(hmaf_agent_publish(agent, "wraps", top, 200), HMAF_EOVERFLOW);
    EXPECT_ERR(hmaf_agent_publish(agent, "huge", memory, SIZE_MAX),
               HMAF_EOVERFLOW);
    CHECK_OK(hmaf_agent_publish(agent, "top", top, 100)); /* ends at 2^64-1 */
    CHECK_OK(hmaf_agent_publish(agent, "mem", memory, sizeof(memory)));
    hmaf_agent_destroy(agent);
}

int main(void)
{
    static const unsigned readaheads[] = {
        UINT_MAX,     /* (readahead_max + 1) wraps to 0 pages */
        UINT_MAX - 1, /* 16 TiB of staging */
        1u << 31,     /* 8 TiB */
        1u << 24,     /* 64 GiB */
    };
    struct target t;
    hmaf_session_t *a, *b;

    target_start_standard(&t);
    /* Children first, while this process has no threads. */
    for (size_t i = 0; i < sizeof(readaheads) / sizeof(readaheads[0]); i++) {
        check_readahead(&t, readaheads[i]);
    }
    a = target_connect(&t);
    b = target_connect(&t);
    check_map_near_top(a);
    check_foreign_session_handles(a, b);
    CHECK_OK(hmaf_session_ping(a));
    hmaf_session_destroy(b);
    hmaf_session_destroy(a);
    CHECK_EQ(target_stop(&t), 0);
    check_publish();
    if (failures > 0) {
        fprintf(stderr, "bad_input: %d checks failed\n", failures);
        return 1;
    }
    printf("bad_input: ok\n");
    return 0;
}
