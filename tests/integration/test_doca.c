/*
 * The doca engine's own limits end to end, against the DOCA emulation
 * (built with hmaf_static_doca, run with HMAF_ENGINE=doca):
 *   chunking    transfers cut at a small max_buf_size stay byte-exact
 *   window      four threads' readv through a window of 3 tasks
 *   message     the handshake against the comch message size (WELCOME)
 *   teardown    the host revokes, or destroys its agent, while a dpu
 *               thread has DMA tasks on the region submitted
 *   export      export descriptors against the engine's 1280-byte
 *               max_blob: a REGISTER and a handshake refused with
 *               HMAF_ENOSPC, and undone; 1024-byte ones work
 *   hand-off    the host's agent destroy waits for the dpu side to release
 *               its imports (bounded by revoke_wait_ms)
 *   fatal       a DMA ctx that stops after a fatal task error ends the
 *               session at once (HMAF_ECONNRESET), never HMAF_EBUSY
 *   pinning     a pin over the memlock limit is HMAF_ENOMEM, under
 *               DOCA_EMU_MEMLOCK and under the emulation's default rule
 *               (RLIMIT_MEMLOCK without CAP_IPC_LOCK); a dpu side that
 *               cannot pin its staging slots is refused a session
 *   import      a device without create_from_export: HMAF_ENOTSUP
 *   sparse      a read, a write, a posted read and a posted write after
 *               an idle spell (the epoch look due) each cost one round
 *               trip, the look carried beside the data
 *   posted      a posted transfer's tasks are submitted when it is posted;
 *               a session destroyed with requests in flight drains them
 * Each case sets the emulation's limits with setenv and doca_emu_reset
 * before its sessions exist (and before a host is forked, which inherits
 * them). The dpu side is the host's parent, as the emulation's DMA needs
 * where Yama is strict.
 *
 * A thread "stalled inside a step" is made with -Wl,--wrap of
 * doca_pe_progress (tests/CMakeLists.txt): once armed, the next caller
 * parks before the real call, its tasks submitted and not a byte moved
 * (the emulation moves bytes in progress), until released.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <doca_emu.h>
#include <doca_error.h>
#include <doca_pe.h>
#include <hmaf/hmaf.h>

#include "check.h"
#include "memlock.h"
#include "core/session_int.h"
#include "proto/handshake.h"
#include "target.h"
#include "util/clock.h"

/* The host's "mem": two read-write exposures, A = [0, MEM_SPLIT) and
 * B = [MEM_SPLIT, MEM_LEN), pattern salt 1. A second agent, the victim,
 * exposes "vmem" (salt 5) at its own address. */
#define MEM_LEN        (4u * 1024 * 1024 + 5000)
#define MEM_SPLIT      (2u * 1024 * 1024 + 123)
#define B_LEN          (MEM_LEN - MEM_SPLIT)
#define VMEM_LEN       (1u * 1024 * 1024)
#define XMEM_LEN       (64u * 1024) /* first exported under a set knob */
#define PMEM_LEN       (256u * 1024) /* first registered over memlock */
#define MIB            (1u << 20)
#define SALT_NEW       9   /* what the host writes once it withdrew a range */
#define REVOKE_WAIT_MS 400 /* the lease: a quarter of it */
#define CHECK_US_LONG  10000000

#define HOST_PCI "b1:00.0" /* the emulation's defaults */
#define DPU_PCI  "03:00.0"

struct host_state {
    uint8_t *mem, *vmem, *xmem, *pmem;
    hmaf_agent_t *victim;
    char victim_address[96];
    hmaf_agent_t *closer; /* (f): destroyed while a dpu side holds imports */
    char closer_address[96];
    struct doca_emu_counters mark; /* at the latest export_size() */
    struct memlock_saved memlock;  /* 'l' to 'L' */
};

static struct host_state the_host;

/* ---- doca_pe_progress, wrapped ---- */

static atomic_int park_armed, parked, park_release;
/* Calls that completed something: with every done task handed out at
 * once (DOCA_EMU_DMA_COMPLETIONS=0), one per engine round trip. */
static atomic_ulong progress_busy;

uint8_t __real_doca_pe_progress(struct doca_pe *pe);
uint8_t __wrap_doca_pe_progress(struct doca_pe *pe);

uint8_t __wrap_doca_pe_progress(struct doca_pe *pe)
{
    if (atomic_exchange(&park_armed, 0)) {
        atomic_store(&parked, 1);
        while (!atomic_load(&park_release)) {
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
    }
    if (__real_doca_pe_progress(pe) == 0) {
        return 0;
    }
    atomic_fetch_add(&progress_busy, 1);
    return 1;
}

/* Tasks submitted, counted. */
static atomic_ulong submits;

doca_error_t __real_doca_task_submit(struct doca_task *task);
doca_error_t __wrap_doca_task_submit(struct doca_task *task);

doca_error_t __wrap_doca_task_submit(struct doca_task *task)
{
    atomic_fetch_add(&submits, 1);
    return __real_doca_task_submit(task);
}

/* ---- the host ---- */

static void *map_filled(size_t len, unsigned salt)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        return NULL;
    }
    target_fill(p, len, 0, salt);
    return p;
}

/* A second agent at address serving vmem (revoke_wait_ms 0: default). */
static int vmem_agent(struct host_state *h, const char *address,
                      unsigned access, int revoke_wait_ms,
                      hmaf_agent_t **agent_out)
{
    hmaf_agent_params_t p;
    int ret;

    hmaf_agent_params_init(&p);
    p.address = address;
    p.token = TARGET_TOKEN;
    p.engine = "doca";
    if (revoke_wait_ms > 0) {
        p.revoke_wait_ms = revoke_wait_ms;
    }
    ret = hmaf_agent_create(&p, agent_out);
    if (ret == 0) {
        ret = hmaf_agent_expose(*agent_out, h->vmem, VMEM_LEN, access);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(*agent_out, "vmem", h->vmem, VMEM_LEN);
    }
    return ret;
}

static int victim_setup(struct host_state *h)
{
    return vmem_agent(h, h->victim_address, HMAF_ACCESS_READ_WRITE, 0,
                      &h->victim);
}

/* (f) An agent over vmem (read-only) whose destroy is timed. */
static int closer_create(struct host_state *h, int revoke_wait_ms)
{
    return vmem_agent(h, h->closer_address, HMAF_ACCESS_READ, revoke_wait_ms,
                      &h->closer) == 0;
}

/* Milliseconds hmaf_agent_destroy took, in 20 ms units (capped). */
static int closer_destroy(struct host_state *h)
{
    uint64_t start = hmaf__now_ns();
    uint64_t units;

    hmaf_agent_destroy(h->closer);
    h->closer = NULL;
    units = (hmaf__now_ns() - start) / 20000000u;
    return units > 254 ? 254 : (int)units;
}

static int host_setup(hmaf_agent_t *agent, void *arg)
{
    struct host_state *h = arg;
    int ret;

    h->mem = map_filled(MEM_LEN, 1);
    h->vmem = map_filled(VMEM_LEN, 5);
    h->xmem = map_filled(XMEM_LEN, 6);
    h->pmem = map_filled(PMEM_LEN, 8);
    if (h->mem == NULL || h->vmem == NULL || h->xmem == NULL ||
        h->pmem == NULL) {
        return HMAF_ENOMEM;
    }
    ret = hmaf_agent_expose(agent, h->xmem, XMEM_LEN, HMAF_ACCESS_READ);
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "xmem", h->xmem, XMEM_LEN);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->pmem, PMEM_LEN, HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "pmem", h->pmem, PMEM_LEN);
    }

    if (ret == 0) {
        ret =
            hmaf_agent_expose(agent, h->mem, MEM_SPLIT, HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, h->mem + MEM_SPLIT, B_LEN,
                                HMAF_ACCESS_READ_WRITE);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "mem", h->mem, MEM_LEN);
    }
    return ret == 0 ? victim_setup(h) : ret;
}

/* The export descriptor size from now on (NULL: the emulation's 250
 * bytes). The agent's thread is idle meanwhile: the dpu side waits for
 * the reply, so no registration runs while the knob changes. */
static int export_size(struct host_state *h, const char *size)
{
    if (size != NULL) {
        setenv("DOCA_EMU_EXPORT_DESC_SIZE", size, 1);
    } else {
        unsetenv("DOCA_EMU_EXPORT_DESC_SIZE");
    }
    doca_emu_reset();
    doca_emu_counters(&h->mark);
    return 1;
}

/* Local mmaps started and stopped since the latest export_size(), as
 * started * 16 + stopped, each capped at 15 (the reply is one byte). */
static int mmaps_since_mark(const struct host_state *h)
{
    struct doca_emu_counters now;
    uint64_t started, stopped;

    doca_emu_counters(&now);
    started = now.mmaps_started - h->mark.mmaps_started;
    stopped = now.mmaps_stopped - h->mark.mmaps_stopped;
    return (int)((started > 15 ? 15 : started) << 4 |
                 (stopped > 15 ? 15 : stopped));
}

/* 'r': revoke B; 'd': destroy the victim agent. Either way the memory is
 * the host's again on return, and it says so by writing SALT_NEW over it
 * ('r' replies 1 only for a revoke that timed out: a session is stalled).
 * 't': revokes whose wait expired (capped). 'x', 'y', 'X': export
 * descriptors of 1281 bytes, 1024 bytes, the default; 'p', 'P': a
 * memlock limit of one byte (no new mmap starts), none; 'l', 'L': the
 * same under the default rule, an unprivileged process's RLIMIT_MEMLOCK
 * of one page, and back; 'm': local mmaps
 * started and stopped since then (mmaps_since_mark); 'n': 1 if the
 * latest refused handshake was refused for HMAF_ENOSPC. 'H', 'h': create
 * the closer agent with revoke_wait_ms 3000, 300; 'C': destroy it, and
 * reply how long that took (closer_destroy). */
static int host_command(hmaf_agent_t *agent, int cmd, void *arg)
{
    struct host_state *h = arg;
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    switch (cmd) {
    case 'x':
        return export_size(h, "1281"); /* the doca engine's max_blob + 1 */
    case 'y':
        return export_size(h, "1024");
    case 'X':
        return export_size(h, NULL);
    case 'p':
        setenv("DOCA_EMU_MEMLOCK", "1", 1);
        doca_emu_reset();
        return 1;
    case 'P':
        unsetenv("DOCA_EMU_MEMLOCK");
        doca_emu_reset();
        return 1;
    case 'l':
        return memlock_limit(&h->memlock, 4096, 1) == 0;
    case 'L':
        return memlock_restore(&h->memlock) == 0;
    case 'm':
        return mmaps_since_mark(h);
    case 'n':
        hmaf_agent_stats(agent, &st);
        return st.last_refusal == HMAF_ENOSPC;
    case 'r':
        /* Timed out (a session cut off) or not, doca's export is gone. */
        if (hmaf_agent_revoke(agent, h->mem + MEM_SPLIT, B_LEN) !=
            HMAF_ETIMEDOUT) {
            return 0;
        }
        target_fill(h->mem + MEM_SPLIT, B_LEN, MEM_SPLIT, SALT_NEW);
        return 1;
    case 'd':
        hmaf_agent_destroy(h->victim);
        h->victim = NULL;
        target_fill(h->vmem, VMEM_LEN, 0, SALT_NEW);
        return 1;
    case 't':
        hmaf_agent_stats(agent, &st);
        return st.revoke_timeouts > 254 ? 254 : (int)st.revoke_timeouts;
    case 'H':
        return closer_create(h, 3000);
    case 'h':
        return closer_create(h, 300);
    case 'C':
        return closer_destroy(h);
    default:
        return 255;
    }
}

/* ---- the dpu side ---- */

static void limits(const char *max_buf_size, const char *max_tasks)
{
    if (max_buf_size != NULL) {
        setenv("DOCA_EMU_MAX_BUF_SIZE", max_buf_size, 1);
    } else {
        unsetenv("DOCA_EMU_MAX_BUF_SIZE");
    }
    if (max_tasks != NULL) {
        setenv("DOCA_EMU_MAX_TASKS", max_tasks, 1);
    } else {
        unsetenv("DOCA_EMU_MAX_TASKS");
    }
    doca_emu_reset();
}

/* revoke_check_us 0: the default. A stalled session asks for 10 s, so
 * its epoch looks come only as often as the host's lease forces them. */
static hmaf_session_t *connect_to(const char *address, unsigned check_us)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    int ret;

    hmaf_session_params_init(&p);
    p.address = address;
    p.token = TARGET_TOKEN;
    if (check_us > 0) {
        p.revoke_check_us = check_us;
    }
    ret = hmaf_session_create(&p, &s);
    if (ret == HMAF_EPERM || ret == HMAF_EACCES) {
        SKIP("no ptrace right over the host process (%s)", hmaf_strerror(ret));
    }
    CHECK_OK(ret);
    CHECK(strcmp(hmaf_session_engine(s), "doca") == 0);
    return s;
}

/* (a) Every task moves at most max_buf_size bytes (the emulation refuses
 * more with TOO_BIG), so 1 MiB goes as ~1049 tasks of 1000 bytes: written
 * at an odd offset, read back with untouched neighbours, and read across
 * the exposure boundary against the host's own pattern. */
static void check_chunking(const struct target *t, uint64_t mem)
{
    const uint64_t off = 4097, edge = 777, across = MEM_SPLIT - 300001;
    uint8_t *buf = malloc(MIB + 2 * edge);
    hmaf_session_t *s;

    CHECK(buf != NULL);
    limits("1000", NULL);
    s = connect_to(t->address, 0);
    CHECK_OK(hmaf_session_read(s, buf, mem + across, MIB));
    CHECK_PATTERN(buf, MIB, across, 1);
    target_fill(buf, MIB, off, 2);
    CHECK_OK(hmaf_session_write(s, mem + off, buf, MIB));
    memset(buf, 0, MIB + 2 * edge);
    CHECK_OK(hmaf_session_read(s, buf, mem + off - edge, MIB + 2 * edge));
    CHECK_PATTERN(buf, edge, off - edge, 1);
    CHECK_PATTERN(buf + edge, MIB, off, 2);
    CHECK_PATTERN(buf + edge + MIB, edge, off + MIB, 1);
    hmaf_session_destroy(s);
    free(buf);
}

/* ---- (b) the task window ---- */

#define WINDOW_THREADS 4
#define WINDOW_ROUNDS  25
#define WINDOW_SEGS    64
#define WINDOW_SEG_MAX 70000 /* some segments exceed the 64 KiB transfer */

struct window_worker {
    hmaf_session_t *s;
    uint64_t mem;
    unsigned seed;
    pthread_barrier_t *start;
    int ret;      /* first call error */
    long bad_seg; /* first segment with wrong bytes, or -1 */
};

static void *window_main(void *arg)
{
    struct window_worker *w = arg;
    uint8_t *buf = malloc((size_t)WINDOW_SEGS * WINDOW_SEG_MAX);
    hmaf_seg_t segs[WINDOW_SEGS];
    uint64_t offs[WINDOW_SEGS];

    w->bad_seg = -1;
    w->ret = buf != NULL ? 0 : HMAF_ENOMEM;
    pthread_barrier_wait(w->start);
    for (int r = 0; r < WINDOW_ROUNDS && w->ret == 0 && w->bad_seg < 0; r++) {
        for (int i = 0; i < WINDOW_SEGS; i++) {
            size_t len = 1 + (size_t)rand_r(&w->seed) % WINDOW_SEG_MAX;
            offs[i] = (uint64_t)rand_r(&w->seed) % (MEM_LEN - len);
            segs[i] = (hmaf_seg_t){.local = buf + (size_t)i * WINDOW_SEG_MAX,
                                   .remote_addr = w->mem + offs[i],
                                   .len = len};
            memset(segs[i].local, 0, len);
        }
        w->ret = hmaf_session_readv(w->s, segs, WINDOW_SEGS);
        for (int i = 0; i < WINDOW_SEGS && w->ret == 0; i++) {
            if (target_mismatch(segs[i].local, segs[i].len, offs[i], 1) !=
                segs[i].len) {
                w->bad_seg = r * WINDOW_SEGS + i;
                break;
            }
        }
    }
    free(buf);
    return NULL;
}

/* (b) 3 tasks in flight for four threads' 64-segment readv calls: most
 * transfers wait in the engine's queue for a slot. */
static void check_window(const struct target *t, uint64_t mem)
{
    struct window_worker w[WINDOW_THREADS];
    pthread_t th[WINDOW_THREADS];
    pthread_barrier_t start;
    hmaf_session_t *s;

    limits(NULL, "3");
    s = connect_to(t->address, 0);
    CHECK(pthread_barrier_init(&start, NULL, WINDOW_THREADS) == 0);
    for (unsigned i = 0; i < WINDOW_THREADS; i++) {
        w[i] = (struct window_worker){
            .s = s, .mem = mem, .seed = 17 + i, .start = &start};
        CHECK(pthread_create(&th[i], NULL, window_main, &w[i]) == 0);
    }
    for (unsigned i = 0; i < WINDOW_THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_OK(w[i].ret);
        CHECK_EQ(w[i].bad_seg, -1);
    }
    pthread_barrier_destroy(&start);
    hmaf_session_destroy(s);
}

/* ---- (c) the comch message size ---- */

static uint8_t comch_memory[4096];

/* The host dials; exits 0 when the dial returned `want`, and serves on
 * after a successful one until killed. */
static _Noreturn void comch_host(const char *address, int want)
{
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;
    int ret;

    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
    target_fill(comch_memory, sizeof(comch_memory), 0, 7);
    hmaf_agent_params_init(&ap);
    ap.engine = "doca";
    if (hmaf_agent_create(&ap, &agent) != 0 ||
        hmaf_agent_expose(agent, comch_memory, sizeof(comch_memory),
                          HMAF_ACCESS_READ) != 0) {
        _exit(2);
    }
    ret = hmaf_agent_dial(agent, address, 5000);
    if (ret != want) {
        fprintf(stderr, "host: dial: %s, want %s\n", hmaf_err_name(ret),
                hmaf_err_name(want));
        _exit(3);
    }
    while (ret == 0) {
        pause();
    }
    hmaf_agent_destroy(agent);
    _exit(0);
}

/* Listen with the comch message size max_msg; the dpu side's outcome. */
static int comch_try(uint32_t max_msg, int host_want, pid_t *host_out)
{
    char host_address[96], dpu_address[96], size[16];
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    uint8_t v[64];
    int ret;

    snprintf(host_address, sizeof(host_address), "comch:hmaf-d%d-%u@%s",
             (int)getpid(), max_msg, HOST_PCI);
    snprintf(dpu_address, sizeof(dpu_address), "comch:hmaf-d%d-%u@%s/%s",
             (int)getpid(), max_msg, DPU_PCI, HOST_PCI);
    snprintf(size, sizeof(size), "%u", max_msg);
    setenv("DOCA_EMU_COMCH_MAX_MSG", size, 1);
    doca_emu_reset();
    fflush(NULL);
    *host_out = fork();
    CHECK(*host_out >= 0);
    if (*host_out == 0) {
        comch_host(host_address, host_want);
    }
    hmaf_session_params_init(&p);
    p.engine = "doca";
    p.address = dpu_address;
    p.listen = 1;
    p.connect_timeout_ms = 5000;
    ret = hmaf_session_create(&p, &s);
    if (ret == 0) {
        ret = hmaf_session_read(s, v, (uint64_t)(uintptr_t)comch_memory,
                                sizeof(v));
        CHECK(ret != 0 || target_mismatch(v, sizeof(v), 0, 7) == sizeof(v));
        hmaf_session_destroy(s);
    }
    unsetenv("DOCA_EMU_COMCH_MAX_MSG");
    doca_emu_reset();
    return ret;
}

static int host_exit_status(pid_t host)
{
    int status = 0;

    CHECK(waitpid(host, &status, 0) == host);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* (c) A device whose message cap is one byte short of the WELCOME: the
 * handshake's largest message cannot fit, so both sides fail with ENOSPC
 * before sending anything (the agent at listen, the dpu side at dial). At
 * exactly the WELCOME's size the session works. */
static void check_comch_message(void)
{
    pid_t host;

    CHECK_ERR(comch_try(HMAF_MSG_MAX - 1, HMAF_ENOSPC, &host), HMAF_ENOSPC);
    CHECK_EQ(host_exit_status(host), 0);
    CHECK_OK(comch_try(HMAF_MSG_MAX, 0, &host));
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
}

/* ---- (d) teardown under a stalled dpu thread ---- */

struct stall {
    hmaf_session_t *s;
    uint64_t addr;
    uint8_t *buf;
    size_t len;
    int ret;
};

/* Read once (the region gets cached) and look at the epoch now, so that
 * the next step is a whole lease away from being due (were it due, the
 * park would catch the epoch look instead). Then arm the park and read
 * again: that read parks inside its step, its DMA tasks on the cached
 * import submitted. */
static void *stall_main(void *arg)
{
    struct stall *st = arg;
    uint8_t warm[64];

    st->ret = hmaf_session_read(st->s, warm, st->addr, sizeof(warm));
    if (st->ret == 0) {
        st->ret = hmaf__session_check_epoch(st->s, 1);
    }
    if (st->ret == 0) {
        atomic_store(&park_armed, 1);
        st->ret = hmaf_session_read(st->s, st->buf, st->addr, st->len);
    }
    return NULL;
}

static int all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

/* Park a read of st->addr, run the host command while it is parked, then
 * let it go on; returns what the read returned, the command's reply in
 * *reply_out. */
static int stalled_read_reply(struct target *t, struct stall *st, int cmd,
                              int *reply_out)
{
    uint64_t start = hmaf__now_ns();
    pthread_t th;

    atomic_store(&parked, 0);
    atomic_store(&park_release, 0);
    CHECK(pthread_create(&th, NULL, stall_main, st) == 0);
    while (!atomic_load(&parked) && hmaf__now_ns() - start < 5000000000ull) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK(atomic_load(&parked)); /* else the --wrap is missing */
    *reply_out = target_command(t, cmd);
    atomic_store(&park_release, 1);
    pthread_join(th, NULL);
    return st->ret;
}

/* The same for a command that must reply 1. */
static int stalled_read(struct target *t, struct stall *st, int cmd)
{
    int reply;
    int ret = stalled_read_reply(t, st, cmd, &reply);

    CHECK_EQ(reply, 1);
    return ret;
}

/* (d1) Revoke B while one session's thread is stalled inside a step on
 * it (for longer than the host's whole wait) and another has B cached
 * but is idle. The idle one's watch thread acknowledges; the stalled one
 * cannot (its grace period waits for the step), so the revoke waits it
 * out, cuts that session off, destroys the export and returns
 * HMAF_ETIMEDOUT; the host then overwrites B. The stalled tasks run after
 * that against the dead import: ECONNRESET (documented for DMA on a
 * stopped mmap), and no byte lands. The idle session dropped B: its read
 * is HMAF_EFAULT, and it keeps working elsewhere. */
static void check_revoke(struct target *t, uint64_t mem)
{
    struct stall st = {.addr = mem + MEM_SPLIT + 4096, .len = 512u << 10};
    hmaf_session_t *idle;
    uint8_t v[64];

    limits(NULL, NULL);
    st.s = connect_to(t->address, CHECK_US_LONG);
    idle = connect_to(t->address, 0);
    st.buf = calloc(1, st.len);
    CHECK(st.buf != NULL);
    CHECK_OK(hmaf_session_read(idle, v, st.addr, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), MEM_SPLIT + 4096, 1);
    CHECK_ERR(stalled_read(t, &st, 'r'), HMAF_ECONNRESET);
    CHECK(all_zero(st.buf, st.len));
    /* No acknowledgement came: the stopped mmap refused, not the protocol. */
    CHECK(target_command(t, 't') >= 1);
    CHECK_ERR(hmaf_session_ping(st.s), HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_read(idle, v, st.addr, sizeof(v)), HMAF_EFAULT);
    CHECK_OK(hmaf_session_read(idle, v, mem + 10, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 10, 1);
    hmaf_session_destroy(idle);
    hmaf_session_destroy(st.s);
    free(st.buf);
}

/* (d2) The same with the victim agent destroyed instead: the stalled
 * read and an idle session's next call fail with ECONNRESET at once. */
static void check_agent_destroy(struct target *t)
{
    struct stall st = {.len = 512u << 10};
    hmaf_session_t *idle;
    uint64_t vmem, start;
    uint8_t v[64];

    st.s = connect_to(the_host.victim_address, CHECK_US_LONG);
    idle = connect_to(the_host.victim_address, 0);
    CHECK_OK(hmaf_session_lookup(idle, "vmem", &vmem, NULL));
    st.addr = vmem + 8192;
    st.buf = calloc(1, st.len);
    CHECK(st.buf != NULL);
    CHECK_OK(hmaf_session_read(idle, v, st.addr, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 8192, 5);
    CHECK_ERR(stalled_read(t, &st, 'd'), HMAF_ECONNRESET);
    CHECK(all_zero(st.buf, st.len));
    start = hmaf__now_ns();
    CHECK_ERR(hmaf_session_read(idle, v, st.addr, sizeof(v)), HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_ping(idle), HMAF_ECONNRESET);
    CHECK(hmaf__now_ns() - start < 1000000000ull);
    hmaf_session_destroy(idle);
    hmaf_session_destroy(st.s);
    free(st.buf);
}

/* ---- (e) export descriptors against the blob ---- */

static int try_connect(const struct target *t)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    int ret;

    hmaf_session_params_init(&p);
    p.address = t->address;
    p.token = TARGET_TOKEN;
    ret = hmaf_session_create(&p, &s);
    hmaf_session_destroy(s);
    return ret;
}

/* (e) The engine's max_blob is 1280 bytes (what the handshake and the
 * REGISTER answer carry for it), so a 1281-byte descriptor is refused
 * with HMAF_ENOSPC. A session that is up (its mailbox and region A
 * exported at 250 bytes) gets that as the status of its first read of an
 * exposure exported now, and goes on with A; a new session gets it as the
 * handshake's refusal. Either way the host undoes the registration it
 * made for the export (two mmaps started, two stopped), so the exposure
 * refused once works with 1024-byte descriptors, in a REGISTER answer and
 * in a new session's WELCOME alike. */
static void check_export_size(struct target *t, uint64_t mem)
{
    hmaf_session_t *s;
    uint64_t xmem;
    uint8_t v[64];

    limits(NULL, NULL);
    s = connect_to(t->address, 0);
    CHECK_OK(hmaf_session_lookup(s, "xmem", &xmem, NULL));
    CHECK_OK(hmaf_session_read(s, v, mem + 10, sizeof(v)));
    CHECK_EQ(target_command(t, 'x'), 1);
    CHECK_ERR(hmaf_session_read(s, v, xmem, sizeof(v)), HMAF_ENOSPC);
    CHECK_ERR(try_connect(t), HMAF_ENOSPC);
    CHECK_EQ(target_command(t, 'n'), 1);
    CHECK_EQ(target_command(t, 'm'), 0x22);
    CHECK_OK(hmaf_session_read(s, v, mem + 10, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 10, 1);
    CHECK_EQ(target_command(t, 'y'), 1);
    CHECK_OK(hmaf_session_read(s, v, xmem + 100, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 100, 6);
    CHECK_OK(try_connect(t));
    CHECK_EQ(target_command(t, 'X'), 1);
    hmaf_session_destroy(s);
}

/* ---- (f) the host's teardown waits for the dpu side's imports ---- */

/* A DOCA export may be destroyed only once the dpu side released its
 * import (or died). So hmaf_agent_destroy tells each live session it is
 * closing and waits, up to revoke_wait_ms, for the dpu side to fence
 * itself — no task in flight, imports released — and say so. The
 * session's watch thread does that on its own, at once: the host's
 * destroy returns long before its wait is over, and the dpu side's calls
 * fail with ECONNRESET though its application did nothing. A dpu side
 * that cannot stop (a thread stalled inside a step) costs the host
 * revoke_wait_ms, and then its import ends under the stalled tasks: they
 * fail and no byte lands. */
static void check_teardown_hand_off(struct target *t)
{
    struct stall st = {.len = 512u << 10};
    hmaf_session_t *s;
    uint64_t vmem;
    uint8_t v[64];
    int units;

    CHECK_EQ(target_command(t, 'H'), 1);
    s = connect_to(the_host.closer_address, 0);
    CHECK_OK(hmaf_session_lookup(s, "vmem", &vmem, NULL));
    CHECK_OK(hmaf_session_read(s, v, vmem, sizeof(v))); /* an import */
    units = target_command(t, 'C');
    CHECK(units < 50); /* under 1 s of the 3 s it would wait */
    CHECK_ERR(hmaf_session_read(s, v, vmem, sizeof(v)), HMAF_ECONNRESET);
    hmaf_session_destroy(s);

    CHECK_EQ(target_command(t, 'h'), 1);
    st.s = connect_to(the_host.closer_address, CHECK_US_LONG);
    st.addr = vmem + 8192;
    st.buf = calloc(1, st.len);
    CHECK(st.buf != NULL);
    CHECK_ERR(stalled_read_reply(t, &st, 'C', &units), HMAF_ECONNRESET);
    CHECK(units >= 15 && units < 100); /* it waited its 300 ms */
    CHECK(all_zero(st.buf, st.len));
    hmaf_session_destroy(st.s);
    free(st.buf);
}

/* ---- (h) pinning refused ---- */

/* (h) doca_mmap_start pins, and a pin the system refuses (the memlock
 * limit) is DRIVER: the agent's registration of an exposure fails with
 * HMAF_ENOMEM, not HMAF_EFAULT (the range is mapped), and the dpu side's
 * read gets it from the REGISTER answer; its session goes on, and the
 * exposure works once the limit is lifted. The host commands `lower` and
 * `lift` set and lift the limit. */
static void check_pin_refused(struct target *t, int lower, int lift)
{
    hmaf_session_t *s = connect_to(t->address, 0);
    uint64_t pmem, mem;
    uint8_t v[64];

    CHECK_OK(hmaf_session_lookup(s, "pmem", &pmem, NULL));
    CHECK_OK(hmaf_session_lookup(s, "mem", &mem, NULL));
    CHECK_OK(hmaf_session_read(s, v, mem, sizeof(v)));
    CHECK_EQ(target_command(t, lower), 1);
    CHECK_ERR(hmaf_session_read(s, v, pmem + 100, sizeof(v)), HMAF_ENOMEM);
    CHECK_OK(hmaf_session_read(s, v, mem + 10, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 10, 1);
    CHECK_EQ(target_command(t, lift), 1);
    CHECK_OK(hmaf_session_read(s, v, pmem + 100, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 100, 8);
    hmaf_session_destroy(s);
}

/* (h) The same under the emulation's default rule, as on a card: the
 * host drops CAP_IPC_LOCK and lowers RLIMIT_MEMLOCK ('l'). The kernel
 * asks the pinning thread for the capability, so this host's agent runs
 * on the thread that takes the commands (no agent thread). */
static void check_pin_refused_unprivileged(const struct target_options *opts)
{
    struct target_options polled = *opts;
    struct target t;

    polled.agent_threaded = -1;
    target_start(&t, &polled);
    check_pin_refused(&t, 'l', 'L');
    CHECK_EQ(target_stop(&t), 0);
}

/* (h) The dpu side pins its staging slots (16 MiB) when a session opens
 * its endpoint. Unprivileged under a small ulimit -l (the emulation's
 * default rule, as on a card) that fails: no session, HMAF_ENOMEM (a
 * refused pin, not a broken device), no hang; once the limit is lifted a
 * session works. */
static void check_staging_pin_refused(const struct target *t)
{
    struct memlock_saved saved;
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;
    int ret;

    CHECK(memlock_limit(&saved, MIB, 1) == 0);
    hmaf_session_params_init(&p);
    p.address = t->address;
    p.token = TARGET_TOKEN;
    ret = hmaf_session_create(&p, &s);
    CHECK(memlock_restore(&saved) == 0);
    CHECK_ERR(ret, HMAF_ENOMEM);
    CHECK(s == NULL);
    s = connect_to(t->address, 0);
    CHECK_OK(hmaf_session_ping(s));
    hmaf_session_destroy(s);
}

/* ---- (i) a device that cannot import ---- */

/* (i) create_from_export needs a device with the capability (the dpu
 * side's PF; the emulation gives it to 03:00.0 alone): a dpu side on the
 * host's PF is refused at once with HMAF_ENOTSUP, before it connects. */
static void check_import_cap(struct target *t)
{
    hmaf_session_params_t p;
    hmaf_session_t *s = NULL;

    setenv("HMAF_DOCA_DEV", HOST_PCI, 1);
    hmaf_session_params_init(&p);
    p.address = t->address;
    p.token = TARGET_TOKEN;
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_ENOTSUP);
    unsetenv("HMAF_DOCA_DEV");
    s = connect_to(t->address, 0);
    CHECK_OK(hmaf_session_ping(s));
    hmaf_session_destroy(s);
}

/* ---- (g) a DMA context that stops on its own ---- */

#define FATAL_SEGS 64

/* The calls after the failure: each returns HMAF_ECONNRESET at once (a
 * stopped ctx would answer BAD_STATE, HMAF_EBUSY, call after call), and
 * the session goes without a hang. */
static void check_ended(hmaf_session_t *s, uint64_t mem)
{
    uint8_t v[16];

    for (int i = 0; i < 3; i++) {
        CHECK_ERR(hmaf_session_read(s, v, mem + 64, sizeof(v)),
                  HMAF_ECONNRESET);
        CHECK_ERR(hmaf_session_write(s, mem + 64, v, sizeof(v)),
                  HMAF_ECONNRESET);
        CHECK_ERR(hmaf_session_ping(s), HMAF_ECONNRESET);
    }
    hmaf_session_destroy(s);
}

/* (g) DOCA may stop a DMA context after a fatal task error, and submit
 * does not validate a task. First the emulation's max_buf_size drops below
 * the engine's transfer size once the session is up (the engine sized its
 * tasks at open), so its next task is malformed: submit takes it, it fails
 * with TOO_BIG and the ctx stops. Then an injected fatal fault among a
 * 64-segment readv's tasks, the others flushed. Either way the call fails
 * with HMAF_ECONNRESET, and so does every later one. */
static void check_ctx_fatal(struct target *t, uint64_t mem)
{
    static uint8_t buf[FATAL_SEGS * 100];
    hmaf_seg_t segs[FATAL_SEGS];
    hmaf_session_t *s = connect_to(t->address, CHECK_US_LONG);
    uint8_t v[4096];

    CHECK_OK(hmaf_session_read(s, v, mem, sizeof(v))); /* A is cached */
    limits("1000", NULL);
    CHECK_ERR(hmaf_session_read(s, v, mem, sizeof(v)), HMAF_ECONNRESET);
    check_ended(s, mem);
    limits(NULL, NULL);

    s = connect_to(t->address, CHECK_US_LONG);
    CHECK_OK(hmaf_session_read(s, v, mem, sizeof(v)));
    for (int i = 0; i < FATAL_SEGS; i++) {
        segs[i] = (hmaf_seg_t){.local = buf + i * 100,
                               .remote_addr = mem + (uint64_t)i * 1000,
                               .len = 100};
    }
    setenv("DOCA_EMU_FAULT_DMA_EVERY", "2", 1);
    setenv("DOCA_EMU_FAULT_DMA_FATAL", "1", 1);
    doca_emu_reset();
    CHECK_ERR(hmaf_session_readv(s, segs, FATAL_SEGS), HMAF_ECONNRESET);
    check_ended(s, mem);
    unsetenv("DOCA_EMU_FAULT_DMA_EVERY");
    unsetenv("DOCA_EMU_FAULT_DMA_FATAL");
    doca_emu_reset();
}

/* (j) A sparse call — the previous one longer ago than revoke_check_us,
 * so the revocation epoch is due for a look — costs one engine round trip:
 * the look travels beside the data (two DMA tasks, the data and the epoch
 * word, completed by one progress call). A read carries it in its own
 * batch; a write, and a posted request, post it as a batch of their own
 * just before theirs (the engine enforces revocation, so a write need not
 * look first). Before, a read took two round trips of one task each, and
 * until the writes and posts carried theirs, so did they. The watch
 * thread looks on its own now and then (once per lease: its look then
 * counts in, or the call finds none due), and on the timed model the two
 * tasks may complete in two progress calls, so one try of several must
 * cost exactly that. */
#define SPARSE_TRIES 8

enum sparse_kind {
    SPARSE_READ,
    SPARSE_WRITE,
    SPARSE_POST_READ,
    SPARSE_POST_WRITE,
    SPARSE_KINDS
};

struct sparse_cost {
    uint64_t tasks, trips;
};

static int sparse_op(hmaf_session_t *s, uint64_t at, uint8_t *v, size_t len,
                     enum sparse_kind kind)
{
    hmaf_req_t r;

    switch (kind) {
    case SPARSE_READ:
        return hmaf_session_read(s, v, at, len);
    case SPARSE_WRITE:
        return hmaf_session_write(s, at, v, len);
    case SPARSE_POST_READ:
        CHECK_OK(hmaf_session_post_read(s, v, at, len, &r));
        return hmaf_request_wait(s, r);
    default:
        CHECK_OK(hmaf_session_post_write(s, at, v, len, &r));
        return hmaf_request_wait(s, r);
    }
}

/* A 64-byte call of kind at mem + off, after 5 ms idle (> the 1 ms
 * default of revoke_check_us) or, with idle 0, at once. */
static struct sparse_cost sparse_call(hmaf_session_t *s, uint64_t mem,
                                      uint64_t off, enum sparse_kind kind,
                                      int idle)
{
    struct doca_emu_counters before, after;
    unsigned long busy;
    uint8_t v[64];

    if (idle) {
        nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    }
    memset(v, 0, sizeof(v));
    if (kind == SPARSE_WRITE || kind == SPARSE_POST_WRITE) {
        target_fill(v, sizeof(v), off, 1); /* the pattern it holds */
    }
    doca_emu_counters(&before);
    busy = atomic_load(&progress_busy);
    CHECK_OK(sparse_op(s, mem + off, v, sizeof(v), kind));
    doca_emu_counters(&after);
    if (kind == SPARSE_READ || kind == SPARSE_POST_READ) {
        CHECK_PATTERN(v, sizeof(v), off, 1);
    }
    return (struct sparse_cost){after.dma_tasks - before.dma_tasks,
                                atomic_load(&progress_busy) - busy};
}

/* Some try of what cost c[0..SPARSE_TRIES) cost exactly want. */
static void check_cost(const char *what, const struct sparse_cost *c,
                       struct sparse_cost want)
{
    for (int i = 0; i < SPARSE_TRIES; i++) {
        if (c[i].tasks == want.tasks && c[i].trips == want.trips) {
            return;
        }
    }
    fprintf(stderr, "%s: no try took %llu trip(s) and %llu task(s):", what,
            (unsigned long long)want.trips, (unsigned long long)want.tasks);
    for (int i = 0; i < SPARSE_TRIES; i++) {
        fprintf(stderr, " %llu/%llu", (unsigned long long)c[i].trips,
                (unsigned long long)c[i].tasks);
    }
    fprintf(stderr, "\n");
    exit(1);
}

/* Two reads posted after an idle spell, then waited for: the first
 * carries the look, the second goes without (the look in flight covers
 * it). One round trip, three tasks. */
static struct sparse_cost sparse_posted_pair(hmaf_session_t *s, uint64_t mem)
{
    struct doca_emu_counters before, after;
    unsigned long busy;
    uint8_t v[2][64];
    hmaf_req_t r[2];

    nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    doca_emu_counters(&before);
    busy = atomic_load(&progress_busy);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(
            hmaf_session_post_read(s, v[i], mem + 640 + 64u * i, 64, &r[i]));
    }
    CHECK_OK(hmaf_request_wait(s, r[1]));
    CHECK_OK(hmaf_request_wait(s, r[0]));
    doca_emu_counters(&after);
    CHECK_PATTERN(v[0], 64, 640, 1);
    CHECK_PATTERN(v[1], 64, 704, 1);
    return (struct sparse_cost){after.dma_tasks - before.dma_tasks,
                                atomic_load(&progress_busy) - busy};
}

static void check_sparse(const struct target *t, uint64_t mem)
{
    static const char *const names[SPARSE_KINDS] = {
        "sparse read", "sparse write", "sparse posted read",
        "sparse posted write"};
    struct sparse_cost idle[SPARSE_KINDS][SPARSE_TRIES],
        busy[SPARSE_KINDS][SPARSE_TRIES], pair[SPARSE_TRIES];
    hmaf_session_t *s;
    uint8_t v[64];

    setenv("DOCA_EMU_DMA_COMPLETIONS", "0", 1);
    limits(NULL, NULL);
    s = connect_to(t->address, 0);
    CHECK_OK(hmaf_session_read(s, v, mem + 640, sizeof(v))); /* registers */
    for (int i = 0; i < SPARSE_TRIES; i++) {
        for (int k = 0; k < SPARSE_KINDS; k++) {
            idle[k][i] = sparse_call(s, mem, 640, k, 1);
            /* at once: no look due (the one before counts) */
            busy[k][i] = sparse_call(s, mem, 640, k, 0);
        }
        pair[i] = sparse_posted_pair(s, mem);
    }
    for (int k = 0; k < SPARSE_KINDS; k++) {
        check_cost(names[k], idle[k], (struct sparse_cost){2, 1});
        check_cost("no look due", busy[k], (struct sparse_cost){1, 1});
    }
    check_cost("two posted reads", pair, (struct sparse_cost){3, 1});
    CHECK_OK(hmaf_session_read(s, v, mem + 640, sizeof(v)));
    CHECK_PATTERN(v, sizeof(v), 640, 1);
    hmaf_session_destroy(s);
    unsetenv("DOCA_EMU_DMA_COMPLETIONS");
    limits(NULL, NULL);
}

/* (k) Posted transfers reach the engine at once: their DMA tasks are
 * submitted by the post itself, before any test, wait or flush, and the
 * bytes are there once each request completes. A session destroyed with
 * requests in flight waits for them (its fence drains the engine). */
#define POSTED 4
#define POSTED_LEN 256
#define POSTED_AT  (1536u << 10) /* in A, past what (a) rewrote */

static void check_posted(const struct target *t, uint64_t mem)
{
    static uint8_t v[POSTED][POSTED_LEN];
    hmaf_req_t r[POSTED];
    unsigned long before;
    hmaf_session_t *s;

    limits(NULL, NULL);
    s = connect_to(t->address, CHECK_US_LONG);
    CHECK_OK(hmaf_session_read(s, v[0], mem + POSTED_AT, POSTED_LEN)); /* A */
    memset(v, 0, sizeof(v));
    before = atomic_load(&submits);
    for (int i = 0; i < POSTED; i++) {
        CHECK_OK(hmaf_session_post_read(
            s, v[i], mem + POSTED_AT + (uint64_t)i * POSTED_LEN, POSTED_LEN, &r[i]));
    }
    CHECK(atomic_load(&submits) - before >= POSTED);
    for (int i = POSTED; i-- > 0;) {
        CHECK_OK(hmaf_request_wait(s, r[i]));
        CHECK_PATTERN(v[i], POSTED_LEN, POSTED_AT + (uint64_t)i * POSTED_LEN, 1);
    }
    for (int i = 0; i < POSTED; i++) {
        CHECK_OK(hmaf_session_post_read(
            s, v[i], mem + POSTED_AT + (uint64_t)i * POSTED_LEN, POSTED_LEN, NULL));
    }
    hmaf_session_destroy(s); /* with the reads in flight */
}

/* (l) Threads on one session do not wait for each other: while a thread
 * is parked inside doca_pe_progress (in the middle of its own read), a
 * second thread's reads go through a DMA lane of their own and complete.
 * With one lock per session endpoint the second thread waited for the
 * parked one. */
#define LANE_READS 16
#define LANE_AT    (POSTED_AT + (64u << 10))

struct lane_reader {
    hmaf_session_t *s;
    uint64_t mem;
    atomic_int done;
    int ret;
};

static void *lane_reader_main(void *arg)
{
    struct lane_reader *lr = arg;
    uint8_t v[256];

    for (int i = 0; i < LANE_READS && lr->ret == 0; i++) {
        uint64_t off = LANE_AT + (uint64_t)i * sizeof(v);
        lr->ret = hmaf_session_read(lr->s, v, lr->mem + off, sizeof(v));
        if (lr->ret == 0 &&
            target_mismatch(v, sizeof(v), off, 1) != sizeof(v)) {
            lr->ret = -1000; /* wrong bytes */
        }
    }
    atomic_store(&lr->done, 1);
    return NULL;
}

static void check_lanes(const struct target *t, uint64_t mem)
{
    static uint8_t buf[4096];
    struct stall st = {.addr = mem + POSTED_AT, .buf = buf, .len = sizeof(buf)};
    struct lane_reader lr = {.mem = mem};
    uint64_t start = hmaf__now_ns();
    pthread_t parked_th, th;

    limits(NULL, NULL);
    st.s = lr.s = connect_to(t->address, CHECK_US_LONG);
    atomic_store(&parked, 0);
    atomic_store(&park_release, 0);
    CHECK(pthread_create(&parked_th, NULL, stall_main, &st) == 0);
    while (!atomic_load(&parked) && hmaf__now_ns() - start < 5000000000ull) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK(atomic_load(&parked));
    CHECK(pthread_create(&th, NULL, lane_reader_main, &lr) == 0);
    /* Not a timing bound: a reader that waits for the parked thread never
     * gets done, however long we wait. */
    start = hmaf__now_ns();
    while (!atomic_load(&lr.done) && hmaf__now_ns() - start < 20000000000ull) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK(atomic_load(&lr.done));
    atomic_store(&park_release, 1);
    pthread_join(th, NULL);
    pthread_join(parked_th, NULL);
    CHECK_OK(lr.ret);
    CHECK_OK(st.ret);
    CHECK_PATTERN(buf, sizeof(buf), POSTED_AT, 1);
    hmaf_session_destroy(st.s);
}

/* (m) Small transfers of one call on one import go as DMA tasks with a
 * list of host bufs, as many per task as the device allows (4 in the
 * emulation by default): 16 reads of 100 bytes are 4 tasks, 16 writes too,
 * and the bytes land where each segment says. On a device without lists
 * they are 16 tasks. */
#define LIST_SEGS 16
#define LIST_LEN  100
#define LIST_AT   (POSTED_AT + (128u << 10))

static unsigned long list_call(hmaf_session_t *s, uint64_t mem, int write,
                               unsigned salt)
{
    static uint8_t v[LIST_SEGS][LIST_LEN];
    hmaf_seg_t segs[LIST_SEGS];
    unsigned long before;

    for (int i = 0; i < LIST_SEGS; i++) {
        uint64_t off = LIST_AT + (uint64_t)i * 3 * LIST_LEN; /* gaps */
        segs[i] = (hmaf_seg_t){v[i], mem + off, LIST_LEN};
        if (write) {
            target_fill(v[i], LIST_LEN, off, salt);
        } else {
            memset(v[i], 0, LIST_LEN);
        }
    }
    before = atomic_load(&submits);
    CHECK_OK(write ? hmaf_session_writev(s, segs, LIST_SEGS)
                   : hmaf_session_readv(s, segs, LIST_SEGS));
    before = atomic_load(&submits) - before;
    for (int i = 0; i < LIST_SEGS && !write; i++) {
        CHECK_PATTERN(v[i], LIST_LEN, LIST_AT + (uint64_t)i * 3 * LIST_LEN,
                      salt);
    }
    return before;
}

#define CHECK_RANGE(n, want)                                                   \
    do {                                                                       \
        unsigned long n_ = (n);                                                \
        CHECK(n_ >= (want) && n_ <= (want) + 2);                               \
    } while (0)

static void check_lists(const struct target *t, uint64_t mem)
{
    for (int lists = 0; lists < 2; lists++) {
        unsigned long per_call = lists ? LIST_SEGS / 4 : LIST_SEGS;
        hmaf_session_t *s;

        if (lists) {
            unsetenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN");
        } else {
            setenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN", "1", 1);
        }
        limits(NULL, NULL);
        s = connect_to(t->address, CHECK_US_LONG);
        (void)list_call(s, mem, 0, 1); /* registers */
        /* submits are the process's: the watch thread may look at the
         * epoch meanwhile (a task or two) */
        CHECK_RANGE(list_call(s, mem, 0, 1), per_call);
        CHECK_RANGE(list_call(s, mem, 1, 2), per_call);
        CHECK_RANGE(list_call(s, mem, 0, 2), per_call);
        CHECK_RANGE(list_call(s, mem, 1, 1), per_call); /* the host's again */
        CHECK_RANGE(list_call(s, mem, 0, 1), per_call);
        hmaf_session_destroy(s);
    }
    unsetenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN");
    limits(NULL, NULL);
}

int main(void)
{
    struct target_options opts = {
        .setup = host_setup,
        .command = host_command,
        .arg = &the_host,
        .engine = "doca",
        .revoke_wait_ms = REVOKE_WAIT_MS,
    };
    struct target t;
    hmaf_session_t *s;
    uint64_t mem;
    size_t len = 0;

    setenv("HMAF_ENGINE", "doca", 1); /* also when run by hand */
    snprintf(the_host.victim_address, sizeof(the_host.victim_address),
             "unix:@hmaf-test-doca-%d", (int)getpid());
    snprintf(the_host.closer_address, sizeof(the_host.closer_address),
             "unix:@hmaf-test-doca-closer-%d", (int)getpid());
    target_start(&t, &opts);
    s = connect_to(t.address, 0);
    CHECK_OK(hmaf_session_lookup(s, "mem", &mem, &len));
    CHECK_EQ(len, MEM_LEN);
    hmaf_session_destroy(s);
    check_window(&t, mem); /* first: it wants the host's pattern throughout */
    check_chunking(&t, mem);
    check_sparse(&t, mem);
    check_posted(&t, mem);
    check_lanes(&t, mem);
    check_lists(&t, mem);
    check_comch_message();
    check_revoke(&t, mem);
    check_agent_destroy(&t);
    check_export_size(&t, mem);
    check_teardown_hand_off(&t);
    check_ctx_fatal(&t, mem);
    check_pin_refused(&t, 'p', 'P');
    check_pin_refused_unprivileged(&opts);
    check_staging_pin_refused(&t);
    check_import_cap(&t);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_doca: ok\n");
    return 0;
}
