/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation (library hmaf_doca_emu), for tests on machines
 * without a BlueField or the DOCA SDK. The doca_*.h beside this file declare
 * the subset of the DOCA 2.10 API that HMAF uses, with the SDK's names and
 * signatures, so code written for the SDK builds against them unchanged.
 * "Host" and "dpu side" are two processes on this machine.
 *
 * Data path. doca_mmap_export_pci hands out a 250-byte descriptor (or
 * DOCA_EMU_EXPORT_DESC_SIZE bytes; a card's are about as large), a 64-byte
 * core zero-padded: the exporter's pid, range, permissions, the address
 * and value of a 64-bit "live" word in the exporter's memory, and its
 * fence (a memfd of the exporter, locked per live word). A
 * DMA task against an mmap created from it first reads that word with
 * process_vm_readv, then moves the bytes with process_vm_readv/writev.
 * Destroying the exported mmap clears the word, so every import of it fails
 * from then on, even in other processes (doca_mmap_stop refuses an exported
 * mmap with NOT_PERMITTED, as DOCA 2.10 lists); an exporter that exited
 * fails the same way (ESRCH). The value is random and changes whenever a
 * slot is reused. The exporter grants ptrace access (PR_SET_PTRACER_ANY) at
 * its first export, as the device's right to reach host memory; where Yama
 * forbids that, run the dpu side as the host's parent. A task holds a read
 * lock on the export's fence from its look at the word until its bytes
 * moved, and destroying the exported mmap waits for the write lock after
 * clearing the word: once the destroy returned, no task writes its range
 * any more, as a card is assumed (not documented) to guarantee.
 *
 * Registration. doca_mmap_start checks, as pinning does on hardware, that
 * every page of a local range is mapped and readable, and writable when
 * the permissions allow any write (LOCAL_READ_WRITE, PCI_READ_WRITE,
 * RDMA_WRITE, RDMA_ATOMIC); else it returns DRIVER (DOCA documents no
 * status for this). It charges the range's pages to the process's pinned
 * memory, as pinning does, and returns DRIVER past the limit (DOCA
 * reports a failed pin so: the memlock limit, or memory pressure): by
 * default the kernel's, RLIMIT_MEMLOCK as it is at that start, unless the
 * calling thread has CAP_IPC_LOCK (so root pins without limit, as on a
 * card); a stop or destroy gives them back. It does not pin: a range
 * unmapped after start makes DMA fail with DRIVER, where hardware would
 * still reach the pinned pages.
 *
 * DMA completion statuses (err_cb, doca_task_get_status); submit does
 * not validate a task, as DOCA documents, so these all arrive here:
 *   TOO_BIG        the source's data (all its list's) exceeds
 *                  max_buf_size (fatal)
 *   INVALID_VALUE  the source exceeds the destination's room (all its
 *                  list's), a list is longer than the device's cap, or
 *                  src or dst is not the head of its list (fatal)
 *   DRIVER         the import is invalid (exporter stopped or gone), or
 *                  the kernel refused the copy (unmapped address)
 *   NOT_PERMITTED  writing to an import exported PCI_READ_ONLY, or to a
 *                  local mmap without LOCAL_READ_WRITE, or no ptrace right
 *   NOT_SUPPORTED  both the source and the destination have a buf on
 *                  an imported mmap
 *   IO_FAILED      an injected fault (fatal with DOCA_EMU_FAULT_DMA_FATAL),
 *                  or flushed: its context was no longer running
 * A fatal error stops the context: it moves to STOPPING before the failed
 * task's callback (state callback), every other task of it fails with
 * IO_FAILED, and it turns IDLE once all its tasks are freed; start it
 * again to go on. Which errors are fatal on a card is **[verify]**.
 * A failed task leaves the destination's data_len alone; an injected fault
 * moves no bytes, a kernel refusal may have moved some.
 *
 * Environment, read at first use and again by doca_emu_reset():
 *   DOCA_EMU_DEVICES       device PCI addresses, comma-separated
 *                          (default "b1:00.0,03:00.0": host PF, dpu PF)
 *   DOCA_EMU_REPS          representors every device lists ("b1:00.0")
 *   DOCA_EMU_IMPORT_DEVICES  devices with create_from_export ("03:00.0",
 *                          the dpu side's PF): an import with any other
 *                          is NOT_SUPPORTED, as their capability says
 *   DOCA_EMU_DMA_COMPLETIONS  DMA completions one doca_pe_progress hands
 *                          out per context, at most, in shuffled order
 *                          (4; 0: all that are done, in submit order)
 *   DOCA_EMU_SEED          the shuffle's seed; each DMA context gets the
 *                          next state of its sequence (the n-th context
 *                          since the last reset, the n-th). Unset: drawn
 *                          at random once per process (a forked child
 *                          shares it) and printed on stderr at the first
 *                          DMA context, so a failing run's order can be
 *                          asked for again - as far as its threads'
 *                          timing, which decides what is done when,
 *                          repeats
 *   DOCA_EMU_MAX_BUF_SIZE  bytes per DMA task (1048576)
 *   DOCA_EMU_DMA_MAX_BUF_LIST_LEN  elements a DMA memcpy task's source or
 *                          destination list may hold, per device:
 *                          comma-separated "N" (every device not named)
 *                          and "PCI=N" entries, N from 1 (no lists) to
 *                          1024 (4 for every device: no card's figure is
 *                          published, so a small one)
 *   DOCA_EMU_MAX_TASKS     tasks per DMA ctx and send tasks per comch ctx
 *                          (1024)
 *   DOCA_EMU_COMCH_MAX_MSG comch message size cap (4080)
 *   DOCA_EMU_COMCH_DEFAULT_MSG  a comch instance's message size limit
 *                          until set (512, or the cap if that is smaller)
 *   DOCA_EMU_COMCH_MAX_NAME    comch name bytes, NUL included (64;
 *                          2 to 80)
 *   DOCA_EMU_MEMLOCK       bytes of local mmaps started at once, at most,
 *                          whatever the capabilities (0: no limit; unset
 *                          or "rlimit": the kernel's rule above). The
 *                          suites pin more than the usual 8 MiB (a dpu
 *                          side's staging slots alone are 16 MiB): as a
 *                          user without CAP_IPC_LOCK they need a raised
 *                          ulimit -l or DOCA_EMU_MEMLOCK=0, as HMAF on a
 *                          card needs root or a raised ulimit -l
 *   DOCA_EMU_EXPORT_DESC_SIZE  bytes of each export descriptor (250; 64
 *                          the least, at most 65536). An mmap keeps the size
 *                          of its first export, so a reset between
 *                          exports gives old and new mmaps different sizes
 * Timed mode (off by default, so tests run at the emulation's speed):
 *   DOCA_EMU_TIMED=1       a DMA task's callback comes only once a
 *                          modeled card would have completed it; bytes
 *                          still move with process_vm_readv/writev, in the
 *                          first progress call after submit, so they are
 *                          in place by then. Until a completion is due,
 *                          doca_pe_progress returns 0 (it never sleeps);
 *                          an armed notification handle fires when one
 *                          falls due. Per direction - read: from an
 *                          import (or local to local), write: to an
 *                          import - one engine per process serves tasks
 *                          in submit order:
 *                            cost = max(1/OPS, OVERHEAD_NS
 *                                       + extra elements * ELEM_NS
 *                                       + bytes/BW)
 *                            due  = max(submit, engine free) + cost
 *                                   + LATENCY_NS
 *                          A task of a context that is no longer running
 *                          is due at once. Defaults fit published
 *                          BlueField-2 figures: 2.4 us for a lone small
 *                          task; reads 10.5 M small tasks/s, 4 M/s at
 *                          4 KiB, 25 GB/s from 64 KiB; writes 10.2 M/s
 *                          small, 15 GB/s large (emu_dma.c has the fit)
 *   DOCA_EMU_TIMED_LATENCY_NS         added to each task's device time
 *                                      (2300)
 *   DOCA_EMU_TIMED_READ_OPS           tasks per second at most (10500000)
 *   DOCA_EMU_TIMED_READ_BW            bytes per second (26000000000)
 *   DOCA_EMU_TIMED_READ_OVERHEAD_NS   per task, in series with its bytes
 *                                      (90)
 *   DOCA_EMU_TIMED_WRITE_OPS          (10200000)
 *   DOCA_EMU_TIMED_WRITE_BW           (15100000000)
 *   DOCA_EMU_TIMED_WRITE_OVERHEAD_NS  (0)
 *   DOCA_EMU_TIMED_LIST_ELEM_NS       per buf list element past the first
 *                                      of the source's and of the
 *                                      destination's list (50: a model
 *                                      choice, not a measurement)
 * Faults (0 or unset: off):
 *   DOCA_EMU_FAULT_DMA_EVERY=N         every Nth DMA task this process runs
 *                                      completes with IO_FAILED
 *   DOCA_EMU_FAULT_DMA_FATAL=1         ... and stops its context
 *   DOCA_EMU_FAULT_STOP_AFTER=N        an imported mmap turns invalid after
 *                                      N DMA tasks, as if the host stopped
 *                                      its mmap early
 *   DOCA_EMU_FAULT_DISCONNECT_AFTER=N  this process drops the comch link
 *                                      that brought its Nth message
 *
 * Misuse: NULL arguments are not checked (the crash points at the bug);
 * calling doca_pe_progress from a callback, submitting a submitted task or
 * freeing one aborts with a message. Capabilities: every device supports
 * every emulated operation but create_from_export (above). Notification
 * handles are an epoll set per PE (doca_pe.h); comch never fires them, and
 * a PE in selective mode (the default) that has been armed leaves comch
 * out (doca_pe.h). Not emulated: comch counters and fast path,
 * receive-queue sizes.
 *
 * Thread safety: as DOCA: one thread per PE and the objects used with it.
 * Exporting is safe from any thread.
 */
#ifndef DOCA_EMU_H_
#define DOCA_EMU_H_

#include <stdint.h>

/* Re-read the environment and restart the fault counters. Existing
 * objects keep the limits they were created with (comch message size,
 * task counts); the rest applies from the next call. Not thread-safe: call
 * it while no other thread uses the emulation. */
void doca_emu_reset(void);

/* DOCA_EMU_FAULT_DMA_EVERY's setting, changed while contexts run (a reset
 * rereads every setting, which only a program without DOCA threads may
 * do); its count starts again. */
void doca_emu_set_fault_dma_every(uint32_t every);

/* What this process did with the emulation since it started (never
 * reset: compare two snapshots). Thread-safe. */
struct doca_emu_counters {
    uint64_t mmaps_started; /* local (non-import) mmaps started */
    uint64_t mmaps_stopped; /* local mmaps stopped, or destroyed started */
    uint64_t imports;       /* mmaps created from an export */
    uint64_t dma_tasks;     /* DMA memcpy tasks completed with SUCCESS */
    uint64_t dma_bytes;     /* bytes those tasks moved */
    uint64_t dma_device_ns; /* timed mode: device time the model charged
                               to DMA tasks at submit (ns) */
};

void doca_emu_counters(struct doca_emu_counters *out);

#endif
