/*
 * Memory watch: learn when ranges of this process's memory stop being the
 * pages they were, so that a registration cache (memory a device reaches
 * by physical page, pinned when it was registered) never hands the device
 * a range whose virtual addresses now name other pages. munmap, mremap
 * and madvise(DONTNEED/FREE/REMOVE) on a watched range are reported; so
 * are brk shrinks and frees that give memory back to the kernel.
 *
 * Only private anonymous memory is watched (heap, stacks, anonymous
 * mmaps): shared memory and files can lose their pages in ways no event
 * reports (truncation, another process's madvise), so they cannot be
 * cached safely.
 *
 * Built on userfaultfd's non-cooperative events. Ranges are registered in
 * write-protect mode and never protected: nothing faults, the kernel only
 * reports. Kernels without write-protect mode (arm64 before 6.10) get
 * missing mode: pages are made present first, and a fault then means a
 * page was dropped; it is reported and served with a zero page, which is
 * what a dropped private anonymous page reads as. Missing mode needs a
 * userfaultfd that also sees faults the kernel takes on our behalf (root,
 * CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1); without one nothing
 * is watched.
 *
 * One watch per process: one userfaultfd (a range can be registered with
 * only one) and one thread, shared by every consumer, each with its own
 * queue of changes. An unmapping thread is held until the event has been
 * read by the watch's thread (which takes no lock a caller may hold), so
 * once munmap returns, each consumer's next hmaf__memwatch_drain() reports
 * that range.
 *
 * Each consumer serializes its own calls (its own lock). Not every range
 * can be watched: add says so, and such memory must not be cached.
 * Known limit: madvise(DONTNEED) reports its range before it drops the
 * pages; a registration made by another thread in between (a transfer
 * racing a discard of its own buffer) pins pages about to be dropped.
 */
#ifndef HMAF_UTIL_MEMWATCH_H
#define HMAF_UTIL_MEMWATCH_H

#include <stdint.h>

struct hmaf__memwatch;

/* Join the process's watch. 0; HMAF_ENOTSUP where the kernel cannot
 * watch; HMAF_EPERM where userfaultfd is denied (the log says by what);
 * HMAF_ENOMEM. */
int hmaf__memwatch_open(struct hmaf__memwatch **watch_out);
/* Leave; accepts NULL. Undoes this consumer's adds. */
void hmaf__memwatch_close(struct hmaf__memwatch *watch);

/* Watch [start, start + len), page aligned. 0, or HMAF_ENOTSUP for memory
 * that cannot be watched, HMAF_ENOMEM. Adds of overlapping ranges are fine;
 * each is undone by its own remove. */
int hmaf__memwatch_add(struct hmaf__memwatch *watch, uint64_t start,
                       uint64_t len);
/* Undo one add of exactly this range. */
void hmaf__memwatch_remove(struct hmaf__memwatch *watch, uint64_t start,
                           uint64_t len);

/* Calls changed(arg, start, len) for every range whose mapping changed
 * since the last drain; len 0 means "anything may have changed" (events
 * were lost). Cheap when nothing happened: two atomic loads. */
typedef void hmaf__memwatch_changed_fn(void *arg, uint64_t start,
                                       uint64_t len);
void hmaf__memwatch_drain(struct hmaf__memwatch *watch,
                          hmaf__memwatch_changed_fn *changed, void *arg);

#endif
