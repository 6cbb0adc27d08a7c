/*
 * The doca engine moves long runs of caller memory in place (a cached
 * local registration) and stages the rest; the registration cache must
 * never hand the device pages the caller has given back. Against the DOCA
 * emulation (HMAF_ENGINE=doca), whose counters say how many local mmaps
 * this process started and stopped: the engine's staging pool is one, each
 * registration of caller memory one more.
 *
 *   in_place       a 1 MiB read registers its buffer once; the next read
 *                  and a write from it register nothing; bytes exact
 *   small          4 KiB transfers into fresh buffers register nothing
 *   unmap          munmap + a new mapping at the same address: the old
 *                  registration is dropped and the next read registers
 *   dontneed       madvise(MADV_DONTNEED) drops it the same way
 *   read_only      a write from read-only memory is staged
 *   file           a shared file mapping, a memfd: not private
 *                  anonymous memory, staged
 *   disabled       HMAF_DOCA_ZCOPY_MIN=0 registers nothing
 *   cap            HMAF_DOCA_ZCOPY_CACHE bounds the cache (LRU)
 *   threads        readers and a thread remapping its buffer, exact
 * The whole file runs twice in ctest: with the memory watch's
 * write-protect mode and with its missing mode (HMAF_MEMWATCH_WP=0).
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <doca_emu.h>

#include "check.h"
#include "target.h"

#define MIB      (1u << 20)
#define LEN      MIB
#define CHUNK    (32u << 10) /* below the in-place threshold: staged */
#define NTHREADS 4
#define ROUNDS   40

static struct target host;
static uint64_t buf_addr; /* root "buf": pattern salt 1 */

static struct doca_emu_counters counters(void)
{
    struct doca_emu_counters c;

    doca_emu_counters(&c);
    return c;
}

#define STARTED_SINCE(before) (counters().mmaps_started - (before).mmaps_started)
#define STOPPED_SINCE(before) (counters().mmaps_stopped - (before).mmaps_stopped)
#define TASKS_SINCE(before)   (counters().dma_tasks - (before).dma_tasks)

static void read_check(hmaf_session_t *s, uint8_t *buf, uint64_t off,
                       size_t len)
{
    memset(buf, 0xee, len);
    CHECK_OK(hmaf_session_read(s, buf, buf_addr + off, len));
    CHECK_PATTERN(buf, len, off, 1);
}

/* The host's bytes at off, read back in staged chunks. */
static void host_holds(hmaf_session_t *s, uint64_t off, size_t len,
                       unsigned salt)
{
    static uint8_t chunk[CHUNK];

    for (size_t done = 0; done < len; done += CHUNK) {
        CHECK_OK(hmaf_session_read(s, chunk, buf_addr + off + done, CHUNK));
        CHECK_PATTERN(chunk, CHUNK, off + done, salt);
    }
}

static uint8_t *map_anon(void *at, size_t len)
{
    void *p = mmap(at, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS |
                       (at != NULL ? MAP_FIXED_NOREPLACE : 0),
                   -1, 0);

    CHECK(p != MAP_FAILED);
    CHECK(at == NULL || p == at);
    return p;
}

static hmaf_session_t *connect_with(const char *min, const char *cache)
{
    if (min != NULL) {
        setenv("HMAF_DOCA_ZCOPY_MIN", min, 1);
    } else {
        unsetenv("HMAF_DOCA_ZCOPY_MIN");
    }
    if (cache != NULL) {
        setenv("HMAF_DOCA_ZCOPY_CACHE", cache, 1);
    } else {
        unsetenv("HMAF_DOCA_ZCOPY_CACHE");
    }
    return target_connect(&host);
}

/* The kernel's flags of the mapping holding addr ("uw": watched in
 * write-protect mode, "um": missing mode), from /proc/self/smaps. */
static int vma_has_flag(const void *addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0, found = 0;

    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long lo, hi;
        if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2 &&
            strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            char want[8];
            snprintf(want, sizeof(want), " %s", flag);
            found = strstr(line, want) != NULL;
        }
    }
    fclose(f);
    return found;
}

/* The watch mode this run asked for is the one in use. */
static void check_watch_mode(const uint8_t *registered)
{
    const char *env = getenv("HMAF_MEMWATCH_WP");
    int missing = env != NULL && env[0] == '0';

    CHECK(vma_has_flag(registered, missing ? "um" : "uw"));
    CHECK(!vma_has_flag(registered, missing ? "uw" : "um"));
}

static void test_in_place(hmaf_session_t *s, uint8_t *buf)
{
    struct doca_emu_counters before = counters();

    read_check(s, buf, 4096, LEN);
    CHECK_EQ(STARTED_SINCE(before), 1);
    check_watch_mode(buf);
    read_check(s, buf, 777777, LEN);
    CHECK_EQ(STARTED_SINCE(before), 1);
    /* A write from the registered buffer: in place, no registration. */
    target_fill(buf, LEN, 8 * MIB, 2);
    CHECK_OK(hmaf_session_write(s, buf_addr + 8 * MIB, buf, LEN));
    CHECK_EQ(STARTED_SINCE(before), 1);
    host_holds(s, 8 * MIB, LEN, 2);
    target_fill(buf, LEN, 8 * MIB, 1); /* put the host's bytes back */
    CHECK_OK(hmaf_session_write(s, buf_addr + 8 * MIB, buf, LEN));
    host_holds(s, 8 * MIB, LEN, 1);
    CHECK_EQ(STOPPED_SINCE(before), 0);
}

/* Emulation settings for the next session (read at its context's open). */
static void emu_setting(const char *name, const char *value)
{
    if (value != NULL) {
        setenv(name, value, 1);
    } else {
        unsetenv(name);
    }
    doca_emu_reset();
}

/* A transfer in place is one DMA task up to the device's max_buf_size
 * (1 MiB here), not one per 64 KiB staging slot (16). The count is the
 * process's, so it takes in looks at the revocation epoch, carried along
 * or the watch thread's (a few on a slow machine): 8 reads, fewer than
 * 32 tasks where 64 KiB tasks made 128. */
#define ONE_TASK_READS 8

static void test_one_task(hmaf_session_t *s, uint8_t *buf)
{
    struct doca_emu_counters before = counters();

    for (int i = 0; i < ONE_TASK_READS; i++) {
        read_check(s, buf, 4096, LEN); /* registered by test_in_place */
    }
    CHECK(TASKS_SINCE(before) < 4 * ONE_TASK_READS);
}

/* A staged transfer goes in pieces of the engine's 64 KiB slots, 16 for
 * 1 MiB, through a window of 3 tasks as well as a wide one, and a piece
 * that fails fails its call (no hang, no wrong bytes reported as read).
 * The emulation's settings change only while no session runs. */
static void test_pieces(uint8_t *buf)
{
    struct doca_emu_counters before;
    hmaf_session_t *staged;
    uint64_t tasks;
    int failed = 0;

    for (int window = 0; window < 2; window++) {
        emu_setting("DOCA_EMU_MAX_TASKS", window ? "3" : NULL);
        staged = connect_with("0", NULL);
        read_check(staged, buf, 12345, 4096); /* registers the range */
        before = counters();
        read_check(staged, buf, 12345, LEN);
        tasks = TASKS_SINCE(before);
        /* and perhaps a few looks at the epoch (test_one_task) */
        CHECK(tasks >= LEN / (64u << 10) && tasks < 2 * LEN / (64u << 10));
        target_fill(buf, LEN - 999, 3 * MIB + 5, 2);
        CHECK_OK(hmaf_session_write(staged, buf_addr + 3 * MIB + 5, buf,
                                    LEN - 999));
        host_holds(staged, 3 * MIB + 5, (LEN - 999) / CHUNK * CHUNK, 2);
        target_fill(buf, LEN - 999, 3 * MIB + 5, 1);
        CHECK_OK(hmaf_session_write(staged, buf_addr + 3 * MIB + 5, buf,
                                    LEN - 999));
        hmaf_session_destroy(staged);
    }
    emu_setting("DOCA_EMU_MAX_TASKS", NULL);
    staged = connect_with("0", NULL);
    read_check(staged, buf, 0, 4096); /* registers the range */
    doca_emu_set_fault_dma_every(7);
    for (int i = 0; i < 3 && !failed; i++) {
        failed = hmaf_session_read(staged, buf, buf_addr, LEN) < 0;
    }
    CHECK(failed);
    doca_emu_set_fault_dma_every(0);
    hmaf_session_destroy(staged);
}

static void test_small(hmaf_session_t *s)
{
    struct doca_emu_counters before = counters();

    for (int i = 0; i < 16; i++) {
        uint8_t *b = malloc(4096);
        CHECK(b != NULL);
        read_check(s, b, (uint64_t)i * 12345, 4096);
        free(b);
    }
    CHECK_EQ(STARTED_SINCE(before), 0);
}

/* buf is registered; after the change, a read lands in the new pages and
 * registers them, and the old registration is gone. */
static uint8_t *check_reregisters(hmaf_session_t *s, uint8_t *buf)
{
    struct doca_emu_counters before = counters();

    read_check(s, buf, 0, LEN);
    CHECK_EQ(STARTED_SINCE(before), 1);
    CHECK_EQ(STOPPED_SINCE(before), 1);
    return buf;
}

static uint8_t *test_unmap(hmaf_session_t *s, uint8_t *buf)
{
    read_check(s, buf, 0, LEN); /* registered (again) */
    CHECK(munmap(buf, 2 * MIB) == 0);
    buf = map_anon(buf, 2 * MIB);
    return check_reregisters(s, buf);
}

static void test_dontneed(hmaf_session_t *s, uint8_t *buf)
{
    read_check(s, buf, 0, LEN);
    CHECK(madvise(buf, 2 * MIB, MADV_DONTNEED) == 0);
    check_reregisters(s, buf);
}

/* Read-only memory is staged: a read-only pin could hold the zero page,
 * which a write after an mprotect would replace unseen. */
static void test_read_only(hmaf_session_t *s)
{
    struct doca_emu_counters before = counters();
    uint8_t *ro = map_anon(NULL, LEN);

    target_fill(ro, LEN, 16 * MIB, 2);
    CHECK(mprotect(ro, LEN, PROT_READ) == 0);
    CHECK_OK(hmaf_session_write(s, buf_addr + 16 * MIB, ro, LEN));
    CHECK_EQ(STARTED_SINCE(before), 0);
    host_holds(s, 16 * MIB, LEN, 2);
    CHECK(munmap(ro, LEN) == 0);
}

/* Memory whose pages can go without an event (files, shared memory) is
 * staged, whatever the kind of mapping. */
static void staged_into(hmaf_session_t *s, int fd, int flags)
{
    struct doca_emu_counters before;
    uint8_t *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, flags, fd, 0);

    CHECK(p != MAP_FAILED);
    before = counters();
    read_check(s, p, 3 * MIB, LEN);
    read_check(s, p, 5 * MIB, LEN);
    CHECK_EQ(STARTED_SINCE(before), 0);
    munmap(p, LEN);
}

static void test_file(hmaf_session_t *s)
{
    char path[] = "zcopy-XXXXXX";
    int fd = mkstemp(path);
    int mfd = memfd_create("zcopy", MFD_CLOEXEC);

    CHECK(fd >= 0 && mfd >= 0);
    unlink(path);
    CHECK(ftruncate(fd, LEN) == 0 && ftruncate(mfd, LEN) == 0);
    staged_into(s, fd, MAP_SHARED);
    staged_into(s, fd, MAP_PRIVATE);
    staged_into(s, mfd, MAP_SHARED);
    staged_into(s, -1, MAP_SHARED | MAP_ANONYMOUS);
    close(fd);
    close(mfd);
}

static void test_disabled(void)
{
    hmaf_session_t *s = connect_with("0", NULL);
    uint8_t *b = map_anon(NULL, LEN);
    struct doca_emu_counters before = counters();

    read_check(s, b, 0, LEN);
    read_check(s, b, MIB, LEN);
    CHECK_EQ(STARTED_SINCE(before), 0);
    munmap(b, LEN);
    hmaf_session_destroy(s);
}

/* A cache of 3 MiB holds two 1 MiB registrations (each rounds out to a
 * page more), not three: the least recently used goes. */
static void test_cap(void)
{
    hmaf_session_t *s = connect_with(NULL, "3145728");
    uint8_t *b[3];
    struct doca_emu_counters before;

    for (int i = 0; i < 3; i++) {
        b[i] = map_anon(NULL, 2 * MIB);
    }
    before = counters();
    read_check(s, b[0] + 100, 0, LEN);
    read_check(s, b[1] + 100, 0, LEN);
    CHECK_EQ(STOPPED_SINCE(before), 0);
    read_check(s, b[0] + 100, 0, LEN); /* b[0] most recent: b[1] goes */
    read_check(s, b[2] + 100, 0, LEN);
    CHECK_EQ(STARTED_SINCE(before), 3);
    CHECK_EQ(STOPPED_SINCE(before), 1);
    read_check(s, b[0] + 100, 0, LEN); /* still cached */
    CHECK_EQ(STARTED_SINCE(before), 3);
    read_check(s, b[1] + 100, 0, LEN); /* evicted: registers again */
    CHECK_EQ(STARTED_SINCE(before), 4);
    hmaf_session_destroy(s);
    for (int i = 0; i < 3; i++) {
        munmap(b[i], 2 * MIB);
    }
}

struct reader {
    hmaf_session_t *s;
    int remap; /* gives its buffer back and maps a new one every round */
    int index;
};

static void *reader_main(void *arg)
{
    const struct reader *r = arg;
    uint8_t *buf = map_anon(NULL, LEN);

    for (int i = 0; i < ROUNDS; i++) {
        uint64_t off = ((uint64_t)r->index * 7 + (uint64_t)i * 3) * 65537;

        read_check(r->s, buf, off % (48 * MIB), LEN);
        if (r->remap) {
            void *at = buf;
            CHECK(munmap(buf, LEN) == 0);
            /* the same addresses if no other thread took them meanwhile */
            buf = mmap(at, LEN, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
                       0);
            if (buf == MAP_FAILED) {
                buf = map_anon(NULL, LEN);
            }
        }
    }
    munmap(buf, LEN);
    return NULL;
}

/* The remapping thread's registration of each round is dropped at the
 * next lookup after its munmap: without the watch the stale one would be
 * used (same address) or kept (another address; the cache holds 64). */
static void test_threads(hmaf_session_t *s)
{
    pthread_t th[NTHREADS];
    struct reader r[NTHREADS];
    struct doca_emu_counters before = counters();

    for (int i = 0; i < NTHREADS; i++) {
        r[i] = (struct reader){.s = s, .remap = i == 0, .index = i};
        CHECK(pthread_create(&th[i], NULL, reader_main, &r[i]) == 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
    }
    CHECK(STOPPED_SINCE(before) >= ROUNDS - 1);
}

/* The engine watches registered memory with userfaultfd's unmap events;
 * without them (valgrind has no userfaultfd ioctls) everything is staged
 * by design. Missing mode needs a userfaultfd that sees the kernel's own
 * faults, which takes privilege (root, or vm.unprivileged_userfaultfd=1). */
static int have_memory_watch(int missing_mode)
{
    struct uffdio_api api = {
        .api = UFFD_API,
        .features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
                    UFFD_FEATURE_EVENT_REMAP,
    };
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    int ok;

    if (fd < 0 && !missing_mode) {
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* user mode */);
    }
    if (fd < 0) {
        return 0;
    }
    ok = ioctl(fd, UFFDIO_API, &api) == 0;
    close(fd);
    return ok;
}

int main(void)
{
    hmaf_session_t *s;
    uint8_t *buf;
    size_t len = 0;
    const char *wp = getenv("HMAF_MEMWATCH_WP");

    if (!have_memory_watch(wp != NULL && wp[0] == '0')) {
        printf("SKIP: no userfaultfd with unmap events for this mode here "
               "(valgrind, or missing mode without privilege): the engine "
               "stages everything\n");
        return 77;
    }
    target_start_standard(&host);
    s = connect_with(NULL, NULL);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf_addr, &len));
    buf = map_anon(NULL, 2 * MIB);
    test_in_place(s, buf);
    test_one_task(s, buf);
    test_small(s);
    buf = test_unmap(s, buf);
    test_dontneed(s, buf);
    test_read_only(s);
    test_file(s);
    test_threads(s);
    hmaf_session_destroy(s);
    test_pieces(buf);
    test_disabled();
    test_cap();
    munmap(buf, 2 * MIB);
    CHECK_EQ(target_stop(&host), 0);
    printf("doca in-place transfers: ok\n");
    return 0;
}
