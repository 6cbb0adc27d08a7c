/* SPDX-License-Identifier: BSD-3-Clause */
/* The emulation's private structures, shared by its emu_*.c files. */
#ifndef HMAF_DOCA_EMU_H
#define HMAF_DOCA_EMU_H

#include <stdint.h>
#include <sys/types.h>

#include <doca_ctx.h>
#include <doca_error.h>
#include <doca_pe.h>
#include <doca_types.h>

#define EMU_PCI_LEN    16          /* "0000:b1:00.0" and NUL, rounded up */
#define EMU_MAX_DEVS   8           /* devices in the list, and per mmap */
#define EMU_DESC_MAGIC 0x554d4544u /* "DEMU" */

/* Timed mode: one direction of the modeled card's DMA (emu_dma.c). */
struct emu_dma_link {
    uint64_t ops;         /* tasks per second at most */
    uint64_t bw;          /* bytes per second */
    uint64_t overhead_ns; /* per task, in series with its bytes */
};

/* One device's DMA memcpy buf list cap (DOCA_EMU_DMA_MAX_BUF_LIST_LEN). */
struct emu_list_cap {
    char pci[EMU_PCI_LEN];
    uint32_t max_len;
};

struct emu_config {
    char devices[EMU_MAX_DEVS][EMU_PCI_LEN];
    uint32_t ndevices;
    char reps[EMU_MAX_DEVS][EMU_PCI_LEN];
    uint32_t nreps;
    char importers[EMU_MAX_DEVS][EMU_PCI_LEN]; /* create_from_export cap */
    uint32_t nimporters;
    uint64_t max_buf_size;
    uint32_t max_tasks;
    uint32_t max_msg;     /* comch: the device's cap */
    uint32_t default_msg; /* comch: an instance's limit until set */
    uint32_t max_name;    /* comch: name bytes, NUL included */
    uint32_t fault_dma_every;
    uint32_t fault_dma_fatal; /* injected DMA faults stop the context */
    uint32_t fault_stop_after;
    uint32_t fault_disconnect_after;
    uint32_t export_desc_size; /* bytes doca_mmap_export_pci hands out */
    int memlock_rlimit; /* pins count against RLIMIT_MEMLOCK (the default) */
    uint64_t memlock;   /* else bytes local mmaps may pin; 0: no limit */
    uint64_t seed;      /* the completion shuffle's (DOCA_EMU_SEED) */
    int seed_drawn;     /* seed is this process's own, not the knob's */
    uint32_t dma_completions;  /* per ctx and progress call; 0: all */
    uint32_t list_len;         /* DMA buf list cap of unnamed devices */
    struct emu_list_cap list_caps[EMU_MAX_DEVS]; /* named devices */
    uint32_t nlist_caps;
    uint32_t timed;            /* DMA completions wait for the model */
    uint64_t timed_latency_ns; /* after the device's time, per task */
    struct emu_dma_link timed_read, timed_write;
    uint64_t timed_elem_ns; /* per buf list element past each list's first */
};

const struct emu_config *emu_config(void);
/* The DMA memcpy buf list cap of the device at pci (normalized form). */
uint32_t emu_dma_list_cap(const char *pci);
/* Writes the "0000:bb:dd.f" form of a PCI address; -1 if malformed. */
int emu_pci_normalize(const char *in, char out[EMU_PCI_LEN]);
/* The emulation aborts on misuse DOCA calls undefined, to catch it. */
_Noreturn void emu_die(const char *what);
/* CLOCK_MONOTONIC in ns. */
uint64_t emu_now_ns(void);
/* Fault counters, process-wide. Each returns 1 when the fault fires. */
int emu_fault_dma(void);
int emu_fault_disconnect(void);
/* Bytes local mmaps may pin now, 0 for no limit: DOCA_EMU_MEMLOCK's, or
 * as the kernel decides at each pin. */
uint64_t emu_memlock_limit(void);
/* A new DMA context's shuffle state, never 0: the n-th since the last
 * doca_emu_reset gets the n-th value of DOCA_EMU_SEED's sequence. */
uint64_t emu_next_seed(void);

/* Test counters behind doca_emu_counters(), process-wide. */
enum emu_counter {
    EMU_MMAPS_STARTED,
    EMU_MMAPS_STOPPED,
    EMU_IMPORTS,
    EMU_DMA_TASKS,
    EMU_DMA_BYTES,
    EMU_DMA_DEVICE_NS,
    EMU_NCOUNTERS
};
void emu_count(enum emu_counter which, uint64_t n);

struct doca_devinfo {
    char pci[EMU_PCI_LEN];
};
struct doca_dev {
    struct doca_devinfo info;
};
struct doca_devinfo_rep {
    char pci[EMU_PCI_LEN];
};
struct doca_dev_rep {
    struct doca_devinfo_rep info;
};

/* Exported mmaps of one process at a time, at most (live-word slots). */
#define EMU_MAX_EXPORTS 1024

/* What an export descriptor carries; also an import's view of it. */
struct emu_desc {
    uint32_t magic;
    uint32_t perms;
    int64_t pid;
    uint64_t addr;
    uint64_t len;
    uint64_t live_addr; /* exporter's word that holds live_value */
    uint64_t live_value;
    uint32_t slot;      /* the live word's, and its byte in the fence */
    int32_t fence_fd;   /* the exporter's fence memfd (emu_fence.c) */
    uint64_t fence_ino; /* ... and its inode */
};

struct emu_fence_peer;

struct doca_mmap {
    int started, range_set, exported, from_export;
    uint8_t *addr;
    size_t len;
    uint32_t perms;
    const struct doca_dev *devs[EMU_MAX_DEVS];
    uint32_t ndevs;
    uint32_t nbufs;
    int slot;             /* exporter: live-word slot, -1 when none */
    struct emu_desc desc; /* exporter: heads export_blob; importer: a copy */
    uint8_t *export_blob; /* exporter: desc, zero-padded; freed at stop */
    size_t export_len;
    size_t pinned;   /* started local mmap: bytes it counts as pinned */
    uint32_t ntasks; /* importer: DMA tasks run against it */
    int invalid;     /* importer: known dead */
    uint32_t users;  /* threads inside a buf call on it (emu_mmap.c) */
    struct emu_fence_peer *fence; /* importer: its exporter's fence */
};

/* A buf heads a list, alone or with others chained after it, or is a
 * later element of one (emu_buf.c). */
struct doca_buf {
    struct doca_buf_inventory *inv;
    struct doca_mmap *mmap;
    uint8_t *head, *data;
    size_t len, data_len;
    uint16_t refcount;          /* a later element's stays 1 */
    struct doca_buf *first;     /* its list's head, itself for a head */
    struct doca_buf *next;      /* the next element of its list, or NULL */
    struct doca_buf *next_free; /* in its inventory while free */
};

/* Give b back to its inventory (refcount 0, out of any list). */
void emu_buf_put(struct doca_buf *b);

/* SUCCESS while the exporter keeps the import's mmap started; DRIVER once
 * it stopped (or exited), NOT_PERMITTED without the right to read it. */
doca_error_t emu_import_check(struct doca_mmap *mm);
/* emu_import_check inside the export's fence, which a DMA task holds
 * until its bytes moved (SUCCESS: release it with emu_import_release);
 * the exporter's destroy waits for it. */
doca_error_t emu_import_hold(struct doca_mmap *mm);
void emu_import_release(struct doca_mmap *mm);

/* The export fence (emu_fence.c). Exporter: its memfd (0, or -1), and
 * the wait for the copies of slot's importers, after clearing its word.
 * Importer: the exporter's fence, attached per import, and a copy's
 * entry and exit. */
int emu_fence_export(int *fd_out, uint64_t *ino_out);
void emu_fence_wait(uint32_t slot);
doca_error_t emu_fence_attach(const struct emu_desc *d,
                              struct emu_fence_peer **out);
void emu_fence_detach(struct emu_fence_peer *p);
void emu_fence_enter(struct emu_fence_peer *p, uint32_t slot);
void emu_fence_exit(struct emu_fence_peer *p, uint32_t slot);

/* ---- contexts and tasks ---- */

enum emu_task_state { EMU_TASK_FREE, EMU_TASK_OWNED, EMU_TASK_SUBMITTED };

struct doca_task {
    struct doca_ctx *ctx;
    union doca_data user_data;
    doca_error_t status;
    enum emu_task_state state;
    struct doca_task *next; /* free list or the PE's queue */
};

struct emu_ctx_ops {
    doca_error_t (*start)(struct doca_ctx *ctx);  /* SUCCESS or IN_PROGRESS */
    void (*stop)(struct doca_ctx *ctx);           /* drop links; optional */
    int (*progress)(struct doca_ctx *ctx);        /* events; 1 if any */
    doca_error_t (*submit)(struct doca_task *t);  /* validate, maybe send */
    doca_error_t (*execute)(struct doca_task *t); /* at completion; optional */
    /* Call the typed callback, or hold the task for a later progress call.
     * Returns 1 if that counts as progress (doca_pe_progress's result). */
    int (*complete)(struct doca_task *t);
    /* The PE is being armed or cleared: pass every socket the ctx reads to
     * emu_pe_watch. When arming, return 1 if progress has work already, or
     * lower *wake_ns to the monotonic time it will (a connect retry).
     * Optional: a ctx without sockets has work only in submitted tasks. */
    int (*watch)(struct doca_ctx *ctx, uint64_t *wake_ns);
    /* Raises no events, whatever happens: DOCA's Comm Channel "does not
     * support event-triggered completions". So it never fires the PE's
     * handle, and a PE in selective mode leaves it out (emu_pe.c). */
    int quiet;
};

struct doca_ctx {
    const struct emu_ctx_ops *ops;
    struct doca_pe *pe;
    struct doca_ctx *pe_next;
    enum doca_ctx_states state;
    union doca_data user_data;
    doca_ctx_state_changed_callback_t state_cb;
    int selected;       /* had tasks to progress at the PE's latest arm */
    size_t task_size;   /* bytes of one task of this ctx's kind */
    uint32_t num_tasks; /* configured */
    uint8_t *pool;      /* num_tasks tasks, while not IDLE */
    struct doca_task *free_tasks;
    uint32_t allocated;
};

void emu_ctx_init(struct doca_ctx *ctx, const struct emu_ctx_ops *ops,
                  size_t task_size);
/* Unlink from the PE; BAD_STATE unless IDLE. */
doca_error_t emu_ctx_fini(struct doca_ctx *ctx);
void emu_ctx_set_state(struct doca_ctx *ctx, enum doca_ctx_states next);
/* The link is gone or stop was asked: IDLE now, or STOPPING until every
 * task is freed. Returns SUCCESS or IN_PROGRESS. */
doca_error_t emu_ctx_wind_down(struct doca_ctx *ctx);
doca_error_t emu_task_alloc(struct doca_ctx *ctx, struct doca_task **task_out);

/* ---- notification (doca_pe_request_notification) ---- */

/* Line fd's place in pe's notification set up with the PE's arming: one
 * wake-up when it turns readable while armed, none otherwise. Called from
 * the watch op only: a socket opened by a progress call after the arm
 * comes from work that has fired the handle already. */
void emu_pe_watch(struct doca_pe *pe, int fd);
/* Progress has work now (a task was submitted, a stopping ctx can turn
 * IDLE): make an armed handle readable. */
void emu_pe_kick(struct doca_pe *pe);
/* Progress will have work at monotonic time at_ns (a held completion
 * falls due): an armed handle turns readable then, or earlier if it was
 * to anyway. */
void emu_pe_kick_at(struct doca_pe *pe, uint64_t at_ns);

#endif
