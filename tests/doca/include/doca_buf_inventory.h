/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: a fixed pool of buf descriptors. Getting a buf
 * needs a started inventory and a started mmap (BAD_STATE), a range inside
 * the mmap (INVALID_VALUE) and a free element (NO_MEMORY).
 */
#ifndef DOCA_BUF_INVENTORY_H_
#define DOCA_BUF_INVENTORY_H_

#include <stddef.h>
#include <stdint.h>

#include <doca_error.h>
#include <doca_types.h>

struct doca_buf;
struct doca_mmap;
struct doca_buf_inventory;

doca_error_t doca_buf_inventory_create(size_t num_elements,
                                       struct doca_buf_inventory **inventory);
/* IN_USE while bufs are out. */
doca_error_t doca_buf_inventory_destroy(struct doca_buf_inventory *inventory);
doca_error_t doca_buf_inventory_start(struct doca_buf_inventory *inventory);
doca_error_t doca_buf_inventory_stop(struct doca_buf_inventory *inventory);
doca_error_t doca_buf_inventory_get_num_free_elements(
    const struct doca_buf_inventory *inventory, uint32_t *num_of_free_elements);

/* A buf of [addr, addr + len) whose data is [data, data + data_len). */
doca_error_t doca_buf_inventory_buf_get_by_args(
    struct doca_buf_inventory *inventory, struct doca_mmap *mmap, void *addr,
    size_t len, void *data, size_t data_len, struct doca_buf **buf);

/* An empty buf of capacity len at addr: a DMA destination. */
static inline doca_error_t
doca_buf_inventory_buf_get_by_addr(struct doca_buf_inventory *inventory,
                                   struct doca_mmap *mmap, void *addr,
                                   size_t len, struct doca_buf **buf)
{
    return doca_buf_inventory_buf_get_by_args(inventory, mmap, addr, len, addr,
                                              0, buf);
}

/* A buf that is all data: a DMA source. */
static inline doca_error_t
doca_buf_inventory_buf_get_by_data(struct doca_buf_inventory *inventory,
                                   struct doca_mmap *mmap, void *data,
                                   size_t data_len, struct doca_buf **buf)
{
    return doca_buf_inventory_buf_get_by_args(inventory, mmap, data, data_len,
                                              data, data_len, buf);
}

#endif
