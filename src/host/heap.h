/*
 * The agent's allocator over the heap range (include/hmaf/heap.h). Every
 * piece of bookkeeping lives here, in the agent's private memory: the
 * range itself holds only the blocks' data, which dpu sides may write.
 *
 * The range is cut into 4 KiB pages. A span is a run of pages: free, one
 * large block, or a 64 KiB slab of one size class. A page map (one pointer
 * per page) finds a span from any address: free and large spans are
 * entered at their first and last page (neighbours coalesce through them),
 * slabs at every page (any block's address finds its slab). Free spans sit
 * in exact-size lists up to 256 pages, with a bit mask of the non-empty
 * ones, and one first-fit list above. A slab has a bit per block (1: free),
 * belongs to one owner (the host is owner 0, a session its id), and is on
 * its owner's list of partly free slabs of its class while it has a free
 * block; once every block is free again its pages are given back at once.
 *
 * Not thread-safe: the agent's lock covers every call.
 */
#ifndef HMAF_HOST_HEAP_H
#define HMAF_HOST_HEAP_H

#include <stdint.h>

#include <hmaf/heap.h>

#define HMAF_HEAP_HOST_OWNER 0

struct hmaf__heap;

/* base and len as hmaf_agent_heap_create checks them; quota 0: none.
 * 0 or HMAF_ENOMEM. */
int hmaf__heap_create(uint64_t base, uint64_t len, uint64_t quota,
                      struct hmaf__heap **heap_out);
void hmaf__heap_destroy(struct hmaf__heap *h);

/*
 * Up to `count` blocks of at least `size` bytes for `owner` into addr_out
 * (count 1 when size exceeds HMAF_HEAP_SMALL_MAX). *got_out says how many
 * (>= 1 on success: fewer when room or quota ran short), *block_size_out
 * their size. 0; HMAF_EINVAL (size 0, larger than the heap, count 0, or
 * above 1 for a large size), HMAF_ENOMEM (not one block), HMAF_ENOSPC (the
 * owner's quota allows not one).
 */
int hmaf__heap_alloc(struct hmaf__heap *h, uint64_t owner, uint64_t size,
                     uint32_t count, uint64_t *addr_out, uint32_t *got_out,
                     uint64_t *block_size_out);
/* 0, or HMAF_EINVAL when addr is not the start of a live block (nothing
 * changes). */
int hmaf__heap_free(struct hmaf__heap *h, uint64_t addr);
/* The owner says it caches this many bytes of its blocks (stats only). */
void hmaf__heap_note_cached(struct hmaf__heap *h, uint64_t owner,
                            uint64_t bytes);
/* The owner (a session) ended: its blocks stay allocated and pass to the
 * host; what it last said it cached is lost. O(its spans). */
void hmaf__heap_owner_gone(struct hmaf__heap *h, uint64_t owner);
/* Bytes the owner holds now. */
uint64_t hmaf__heap_held(const struct hmaf__heap *h, uint64_t owner);
void hmaf__heap_stats(const struct hmaf__heap *h, hmaf_heap_stats_t *out);
/* Is [base, base + len) exactly the heap's range? */
int hmaf__heap_is_range(const struct hmaf__heap *h, uint64_t base,
                        uint64_t len);
/* Check every invariant (tests): 0 or -1 with a message on stderr. */
int hmaf__heap_check(const struct hmaf__heap *h);

#endif
