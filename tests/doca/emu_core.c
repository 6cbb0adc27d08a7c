/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The emulation's configuration (environment, see doca_emu.h), fault
 * counters, error names, and the device and representor lists.
 */
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <doca_dev.h>
#include <doca_emu.h>
#include <doca_error.h>

#include "emu.h"

/* Indexed by code; the emulation's descriptions are the names. */
static const char *const error_names[] = {"DOCA_SUCCESS",
                                          "DOCA_ERROR_UNKNOWN",
                                          "DOCA_ERROR_NOT_PERMITTED",
                                          "DOCA_ERROR_IN_USE",
                                          "DOCA_ERROR_NOT_SUPPORTED",
                                          "DOCA_ERROR_AGAIN",
                                          "DOCA_ERROR_INVALID_VALUE",
                                          "DOCA_ERROR_NO_MEMORY",
                                          "DOCA_ERROR_INITIALIZATION",
                                          "DOCA_ERROR_TIME_OUT",
                                          "DOCA_ERROR_SHUTDOWN",
                                          "DOCA_ERROR_CONNECTION_RESET",
                                          "DOCA_ERROR_CONNECTION_ABORTED",
                                          "DOCA_ERROR_CONNECTION_INPROGRESS",
                                          "DOCA_ERROR_NOT_CONNECTED",
                                          "DOCA_ERROR_NO_LOCK",
                                          "DOCA_ERROR_NOT_FOUND",
                                          "DOCA_ERROR_IO_FAILED",
                                          "DOCA_ERROR_BAD_STATE",
                                          "DOCA_ERROR_UNSUPPORTED_VERSION",
                                          "DOCA_ERROR_OPERATING_SYSTEM",
                                          "DOCA_ERROR_DRIVER",
                                          "DOCA_ERROR_UNEXPECTED",
                                          "DOCA_ERROR_ALREADY_EXIST",
                                          "DOCA_ERROR_FULL",
                                          "DOCA_ERROR_EMPTY",
                                          "DOCA_ERROR_IN_PROGRESS",
                                          "DOCA_ERROR_TOO_BIG",
                                          "DOCA_ERROR_AUTHENTICATION",
                                          "DOCA_ERROR_BAD_CONFIG",
                                          "DOCA_ERROR_SKIPPED"};

const char *doca_error_get_name(doca_error_t error)
{
    size_t n = sizeof(error_names) / sizeof(error_names[0]);

    return (unsigned)error < n ? error_names[error] : "unrecognized error code";
}

const char *doca_error_get_descr(doca_error_t error)
{
    return doca_error_get_name(error);
}

_Noreturn void emu_die(const char *what)
{
    fprintf(stderr, "doca emulation: %s\n", what);
    abort();
}

int emu_pci_normalize(const char *in, char out[EMU_PCI_LEN])
{
    unsigned dom = 0, bus, dev, fn;
    int end = 0;

    if (!(sscanf(in, "%x:%x:%x.%x%n", &dom, &bus, &dev, &fn, &end) == 4 &&
          in[end] == '\0')) {
        dom = 0;
        end = 0;
        if (!(sscanf(in, "%x:%x.%x%n", &bus, &dev, &fn, &end) == 3 &&
              in[end] == '\0')) {
            return -1;
        }
    }
    if (dom > 0xffff || bus > 0xff || dev > 0x1f || fn > 7) {
        return -1;
    }
    snprintf(out, EMU_PCI_LEN, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
    return 0;
}

/* ---- configuration and faults ---- */

/* What doca_mmap_export_pci hands out unless DOCA_EMU_EXPORT_DESC_SIZE
 * says otherwise: about what a card hands out (a BF-2's was 234 bytes),
 * so that code sized for the emulation's 48-byte core fails here too.
 * The upper bound only catches a mistyped knob. */
#define EXPORT_DESC_MIN sizeof(struct emu_desc)
#define EXPORT_DESC_DEFAULT 250u
#define EXPORT_DESC_MAX (64u << 10)

/* Timed mode's defaults (doca_emu.h): published BlueField-2 figures
 * (shared/DOCA.md, "Performance anchors"), fitted in emu_dma.c's model. */
#define TIMED_LATENCY_NS     2300u
#define TIMED_READ_OPS       10500000u
#define TIMED_READ_BW        26000000000ull
#define TIMED_READ_OVERHEAD  90u
#define TIMED_WRITE_OPS      10200000u
#define TIMED_WRITE_BW       15100000000ull
#define TIMED_WRITE_OVERHEAD 0u
/* A buf list element past the first of its list, on either side: about
 * half a small task's device time (95 ns at 10.5 M tasks/s). A model
 * choice: nothing published measures it. */
#define TIMED_LIST_ELEM_NS 50u

/* DMA memcpy buf list cap. No BlueField-2 or -3 figure is published (DOCA
 * says only that 1 means no lists), so a small one: code that assumes
 * long lists fails here, and 1 can be set to model a card without them.
 * The upper bound only catches a mistyped knob. */
#define LIST_LEN_DEFAULT 4u
#define LIST_LEN_MAX     1024u

static struct emu_config config;
static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static unsigned long dma_count, msg_count, dma_ctxs;
static uint64_t drawn_seed; /* this process's, once drawn */
static int seed_told;
static uint64_t counters[EMU_NCOUNTERS];

/* A malformed knob is a broken test setup: fail loudly. */
static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long x;

    if (v == NULL || *v == '\0') {
        return def;
    }
    errno = 0;
    x = strtoull(v, &end, 0);
    if (errno != 0 || *end != '\0') {
        emu_die(name);
    }
    return x;
}

static uint64_t env_u64_in(const char *name, uint64_t def, uint64_t min,
                           uint64_t max)
{
    uint64_t x = env_u64(name, def);

    if (x < min || x > max) {
        emu_die(name);
    }
    return x;
}

/* DOCA_EMU_MEMLOCK: unset or "rlimit", as a card (emu_memlock_limit); a
 * byte count; 0: no limit. */
static void load_memlock(struct emu_config *c)
{
    const char *v = getenv("DOCA_EMU_MEMLOCK");

    c->memlock_rlimit = v == NULL || *v == '\0' || strcmp(v, "rlimit") == 0;
    c->memlock = c->memlock_rlimit ? 0 : env_u64("DOCA_EMU_MEMLOCK", 0);
}

/* DOCA_EMU_SEED, else a seed drawn once per process: a reset keeps it, a
 * forked child shares it. */
static void load_seed(struct emu_config *c)
{
    const char *v = getenv("DOCA_EMU_SEED");

    c->seed_drawn = v == NULL || *v == '\0';
    if (!c->seed_drawn) {
        c->seed = env_u64("DOCA_EMU_SEED", 0);
        return;
    }
    if (drawn_seed == 0 &&
        getrandom(&drawn_seed, sizeof(drawn_seed), 0) != sizeof(drawn_seed)) {
        drawn_seed = (uint64_t)emu_now_ns() ^ (uint64_t)getpid() << 32;
    }
    c->seed = drawn_seed;
}

static uint32_t env_pci_list(const char *name, const char *def,
                             char out[EMU_MAX_DEVS][EMU_PCI_LEN])
{
    const char *v = getenv(name);
    char buf[256], *save = NULL;
    uint32_t n = 0;

    snprintf(buf, sizeof(buf), "%s", v != NULL ? v : def);
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (n == EMU_MAX_DEVS || emu_pci_normalize(tok, out[n]) != 0) {
            emu_die(name);
        }
        n++;
    }
    return n;
}

static void load_link(struct emu_dma_link *l, const char *ops,
                      uint64_t ops_def, const char *bw, uint64_t bw_def,
                      const char *overhead, uint64_t overhead_def)
{
    l->ops = env_u64_in(ops, ops_def, 1, UINT32_MAX);
    l->bw = env_u64_in(bw, bw_def, 1, UINT64_MAX);
    l->overhead_ns = env_u64_in(overhead, overhead_def, 0, 1000000000u);
}

/* One entry of DOCA_EMU_DMA_MAX_BUF_LIST_LEN: a count in range. */
static uint32_t list_len_value(const char *v)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(v, &end, 0);
    if (errno != 0 || end == v || *end != '\0' || n < 1 || n > LIST_LEN_MAX) {
        emu_die("DOCA_EMU_DMA_MAX_BUF_LIST_LEN");
    }
    return (uint32_t)n;
}

/* DOCA_EMU_DMA_MAX_BUF_LIST_LEN: comma-separated entries, "N" for every
 * device not named, "PCI=N" for one device. */
static void load_list_caps(struct emu_config *c)
{
    const char *v = getenv("DOCA_EMU_DMA_MAX_BUF_LIST_LEN");
    char buf[256], *save = NULL;

    c->list_len = LIST_LEN_DEFAULT;
    c->nlist_caps = 0;
    snprintf(buf, sizeof(buf), "%s", v != NULL ? v : "");
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        struct emu_list_cap *cap = &c->list_caps[c->nlist_caps];

        if (eq == NULL) {
            c->list_len = list_len_value(tok);
            continue;
        }
        *eq = '\0';
        if (c->nlist_caps == EMU_MAX_DEVS ||
            emu_pci_normalize(tok, cap->pci) != 0) {
            emu_die("DOCA_EMU_DMA_MAX_BUF_LIST_LEN");
        }
        cap->max_len = list_len_value(eq + 1);
        c->nlist_caps++;
    }
}

uint32_t emu_dma_list_cap(const char *pci)
{
    const struct emu_config *c = emu_config();

    for (uint32_t i = 0; i < c->nlist_caps; i++) {
        if (strcmp(c->list_caps[i].pci, pci) == 0) {
            return c->list_caps[i].max_len;
        }
    }
    return c->list_len;
}

static void load_timed(struct emu_config *c)
{
    c->timed = (uint32_t)env_u64_in("DOCA_EMU_TIMED", 0, 0, 1);
    c->timed_latency_ns = env_u64_in("DOCA_EMU_TIMED_LATENCY_NS",
                                     TIMED_LATENCY_NS, 0, 3600000000000ull);
    load_link(&c->timed_read, "DOCA_EMU_TIMED_READ_OPS", TIMED_READ_OPS,
              "DOCA_EMU_TIMED_READ_BW", TIMED_READ_BW,
              "DOCA_EMU_TIMED_READ_OVERHEAD_NS", TIMED_READ_OVERHEAD);
    load_link(&c->timed_write, "DOCA_EMU_TIMED_WRITE_OPS", TIMED_WRITE_OPS,
              "DOCA_EMU_TIMED_WRITE_BW", TIMED_WRITE_BW,
              "DOCA_EMU_TIMED_WRITE_OVERHEAD_NS", TIMED_WRITE_OVERHEAD);
    c->timed_elem_ns = env_u64_in("DOCA_EMU_TIMED_LIST_ELEM_NS",
                                  TIMED_LIST_ELEM_NS, 0, 1000000000u);
}

static void load_config(void)
{
    struct emu_config *c = &config;

    c->ndevices =
        env_pci_list("DOCA_EMU_DEVICES", "b1:00.0,03:00.0", c->devices);
    c->nreps = env_pci_list("DOCA_EMU_REPS", "b1:00.0", c->reps);
    c->nimporters =
        env_pci_list("DOCA_EMU_IMPORT_DEVICES", "03:00.0", c->importers);
    c->dma_completions = (uint32_t)env_u64("DOCA_EMU_DMA_COMPLETIONS", 4);
    c->max_buf_size = env_u64("DOCA_EMU_MAX_BUF_SIZE", 1u << 20);
    c->max_tasks = (uint32_t)env_u64("DOCA_EMU_MAX_TASKS", 1024);
    c->max_msg = (uint32_t)env_u64("DOCA_EMU_COMCH_MAX_MSG", 4080);
    c->default_msg = (uint32_t)env_u64("DOCA_EMU_COMCH_DEFAULT_MSG", 512);
    /* 80 at most: the name must fit the emulation's socket address. */
    c->max_name = (uint32_t)env_u64_in("DOCA_EMU_COMCH_MAX_NAME", 64, 2, 80);
    c->fault_dma_every = (uint32_t)env_u64("DOCA_EMU_FAULT_DMA_EVERY", 0);
    c->fault_dma_fatal = (uint32_t)env_u64("DOCA_EMU_FAULT_DMA_FATAL", 0);
    c->fault_stop_after = (uint32_t)env_u64("DOCA_EMU_FAULT_STOP_AFTER", 0);
    c->fault_disconnect_after =
        (uint32_t)env_u64("DOCA_EMU_FAULT_DISCONNECT_AFTER", 0);
    load_memlock(c);
    load_seed(c);
    c->export_desc_size =
        (uint32_t)env_u64_in("DOCA_EMU_EXPORT_DESC_SIZE", EXPORT_DESC_DEFAULT,
                             EXPORT_DESC_MIN, EXPORT_DESC_MAX);
    load_list_caps(c);
    load_timed(c);
}

const struct emu_config *emu_config(void)
{
    pthread_once(&config_once, load_config);
    return &config;
}

void doca_emu_reset(void)
{
    pthread_once(&config_once, load_config);
    load_config();
    __atomic_store_n(&dma_count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&msg_count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&dma_ctxs, 0, __ATOMIC_RELAXED);
}

uint64_t emu_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void doca_emu_set_fault_dma_every(uint32_t every)
{
    struct emu_config *c = (struct emu_config *)emu_config();

    __atomic_store_n(&dma_count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->fault_dma_every, every, __ATOMIC_RELAXED);
}

int emu_fault_dma(void)
{
    unsigned long every =
        __atomic_load_n(&emu_config()->fault_dma_every, __ATOMIC_RELAXED);

    return every != 0 &&
           __atomic_add_fetch(&dma_count, 1, __ATOMIC_RELAXED) % every == 0;
}

int emu_fault_disconnect(void)
{
    unsigned long after = emu_config()->fault_disconnect_after;

    return after != 0 &&
           __atomic_add_fetch(&msg_count, 1, __ATOMIC_RELAXED) == after;
}

/* Does the kernel let the calling thread pin past RLIMIT_MEMLOCK? It asks
 * capable(CAP_IPC_LOCK) of the pinning thread: its effective set. */
static int can_ipc_lock(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    if (syscall(SYS_capget, &hdr, data) != 0) {
        return 0;
    }
    return (data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &
            CAP_TO_MASK(CAP_IPC_LOCK)) != 0;
}

/* As the kernel checks each pin (ib_umem_get): the limit and the
 * capability as they are now, since a process may change either. */
uint64_t emu_memlock_limit(void)
{
    const struct emu_config *c = emu_config();
    struct rlimit rl;

    if (!c->memlock_rlimit) {
        return c->memlock;
    }
    if (can_ipc_lock() || getrlimit(RLIMIT_MEMLOCK, &rl) != 0 ||
        rl.rlim_cur == RLIM_INFINITY) {
        return 0;
    }
    return rl.rlim_cur > 0 ? (uint64_t)rl.rlim_cur : 1; /* 1: none fits */
}

/* splitmix64: well-spread states from consecutive inputs. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A drawn seed is told once per process, so that a failing run can be
 * repeated with the same completion order (as far as its threads'
 * timing allows). */
uint64_t emu_next_seed(void)
{
    const struct emu_config *c = emu_config();
    unsigned long n = __atomic_fetch_add(&dma_ctxs, 1, __ATOMIC_RELAXED);
    uint64_t state = mix(c->seed + n);

    if (c->seed_drawn &&
        !__atomic_exchange_n(&seed_told, 1, __ATOMIC_RELAXED)) {
        fprintf(stderr, "doca emulation: DOCA_EMU_SEED=%#llx\n",
                (unsigned long long)c->seed);
    }
    return state != 0 ? state : 1; /* xorshift stays at 0 */
}

/* ---- test counters ---- */

void emu_count(enum emu_counter which, uint64_t n)
{
    __atomic_add_fetch(&counters[which], n, __ATOMIC_RELAXED);
}

static uint64_t counter(enum emu_counter which)
{
    return __atomic_load_n(&counters[which], __ATOMIC_RELAXED);
}

void doca_emu_counters(struct doca_emu_counters *out)
{
    *out = (struct doca_emu_counters){
        .mmaps_started = counter(EMU_MMAPS_STARTED),
        .mmaps_stopped = counter(EMU_MMAPS_STOPPED),
        .imports = counter(EMU_IMPORTS),
        .dma_tasks = counter(EMU_DMA_TASKS),
        .dma_bytes = counter(EMU_DMA_BYTES),
        .dma_device_ns = counter(EMU_DMA_DEVICE_NS),
    };
}

/* ---- devices and representors ---- */

/* Arguments are not checked for NULL here or anywhere in the emulation:
 * a crash points straight at the caller's bug. */

/* Both lists are one allocation: n + 1 pointers, then the n entries. */
doca_error_t doca_devinfo_create_list(struct doca_devinfo ***dev_list,
                                      uint32_t *nb_devs)
{
    const struct emu_config *c = emu_config();
    struct doca_devinfo **list, *info;

    list = calloc(1, (c->ndevices + 1) * (sizeof(*list) + sizeof(*info)));
    if (list == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    info = (struct doca_devinfo *)(list + c->ndevices + 1);
    for (uint32_t i = 0; i < c->ndevices; i++) {
        memcpy(info[i].pci, c->devices[i], EMU_PCI_LEN);
        list[i] = &info[i];
    }
    *dev_list = list;
    *nb_devs = c->ndevices;
    return DOCA_SUCCESS;
}

doca_error_t doca_devinfo_destroy_list(struct doca_devinfo **dev_list)
{
    free(dev_list);
    return DOCA_SUCCESS;
}

static doca_error_t pci_equal(const char *pci, const char *str, uint8_t *eq)
{
    char norm[EMU_PCI_LEN];

    if (emu_pci_normalize(str, norm) != 0) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    *eq = strcmp(pci, norm) == 0;
    return DOCA_SUCCESS;
}

doca_error_t doca_devinfo_is_equal_pci_addr(const struct doca_devinfo *devinfo,
                                            const char *pci_addr_str,
                                            uint8_t *is_equal)
{
    return pci_equal(devinfo->pci, pci_addr_str, is_equal);
}

/* A device keeps its own copy of the info: the list may go right away. */
doca_error_t doca_dev_open(struct doca_devinfo *devinfo, struct doca_dev **dev)
{
    *dev = malloc(sizeof(**dev));
    if (*dev == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    (*dev)->info = *devinfo;
    return DOCA_SUCCESS;
}

doca_error_t doca_dev_close(struct doca_dev *dev)
{
    free(dev);
    return DOCA_SUCCESS;
}

struct doca_devinfo *doca_dev_as_devinfo(const struct doca_dev *dev)
{
    return (struct doca_devinfo *)&dev->info;
}

doca_error_t
doca_devinfo_rep_create_list(struct doca_dev *dev, int filter,
                             struct doca_devinfo_rep ***dev_list_rep,
                             uint32_t *nb_devs_rep)
{
    const struct emu_config *c = emu_config();
    uint32_t n = filter == DOCA_DEVINFO_REP_FILTER_EMULATED ? 0 : c->nreps;
    struct doca_devinfo_rep **list, *info;

    (void)dev; /* every device lists every representor */
    list = calloc(1, (n + 1) * (sizeof(*list) + sizeof(*info)));
    if (list == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    info = (struct doca_devinfo_rep *)(list + n + 1);
    for (uint32_t i = 0; i < n; i++) {
        memcpy(info[i].pci, c->reps[i], EMU_PCI_LEN);
        list[i] = &info[i];
    }
    *dev_list_rep = list;
    *nb_devs_rep = n;
    return DOCA_SUCCESS;
}

doca_error_t
doca_devinfo_rep_destroy_list(struct doca_devinfo_rep **dev_list_rep)
{
    free(dev_list_rep);
    return DOCA_SUCCESS;
}

doca_error_t
doca_devinfo_rep_is_equal_pci_addr(const struct doca_devinfo_rep *devinfo_rep,
                                   const char *pci_addr_str, uint8_t *is_equal)
{
    return pci_equal(devinfo_rep->pci, pci_addr_str, is_equal);
}

doca_error_t doca_dev_rep_open(struct doca_devinfo_rep *devinfo,
                               struct doca_dev_rep **dev_rep)
{
    *dev_rep = malloc(sizeof(**dev_rep));
    if (*dev_rep == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    (*dev_rep)->info = *devinfo;
    return DOCA_SUCCESS;
}

doca_error_t doca_dev_rep_close(struct doca_dev_rep *dev)
{
    free(dev);
    return DOCA_SUCCESS;
}
