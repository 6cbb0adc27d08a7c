/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: DMA memcpy. The task copies the source's data
 * section to the end of the destination's data section and grows the
 * destination's data_len by as much. Bytes move inside doca_pe_progress:
 * memcpy between local mmaps, process_vm_readv/writev against the exporter
 * when one side is an imported mmap (both sides: NOT_SUPPORTED).
 *
 * Source and destination may be buf lists (doca_buf.h), each up to the
 * device's doca_dma_cap_task_memcpy_get_max_buf_list_len elements
 * (DOCA_EMU_DMA_MAX_BUF_LIST_LEN). The source is the data sections of its
 * list in order; the destination list takes those bytes in order, each
 * element after its data up to its end, and each element's data_len grows
 * by what landed in it. max_buf_size bounds the source's total.
 *
 * Neither alloc_init (beyond NULL bufs) nor submit checks a task, as DOCA
 * says of submit: a task too big, too long a list, or a destination with
 * too little room fails in the error callback (statuses: doca_emu.h).
 * Allocating more than num_memcpy_tasks tasks at once is NO_MEMORY.
 */
#ifndef DOCA_DMA_H_
#define DOCA_DMA_H_

#include <stdint.h>

#include <doca_error.h>
#include <doca_types.h>

struct doca_buf;
struct doca_ctx;
struct doca_dev;
struct doca_devinfo;
struct doca_task;
struct doca_dma;
struct doca_dma_task_memcpy;

typedef void (*doca_dma_task_memcpy_completion_cb_t)(
    struct doca_dma_task_memcpy *task, union doca_data task_user_data,
    union doca_data ctx_user_data);

doca_error_t doca_dma_create(struct doca_dev *dev, struct doca_dma **dma);
/* The ctx must be IDLE (BAD_STATE). */
doca_error_t doca_dma_destroy(struct doca_dma *dma);
struct doca_ctx *doca_dma_as_ctx(struct doca_dma *dma);

/* SUCCESS when supported. */
doca_error_t
doca_dma_cap_task_memcpy_is_supported(const struct doca_devinfo *devinfo);
doca_error_t doca_dma_cap_get_max_num_tasks(struct doca_dma *dma,
                                            uint32_t *max_num_tasks);
doca_error_t
doca_dma_cap_task_memcpy_get_max_buf_size(const struct doca_devinfo *devinfo,
                                          uint64_t *buf_size);
/* Elements a source or destination list may hold (1: no lists). */
doca_error_t doca_dma_cap_task_memcpy_get_max_buf_list_len(
    const struct doca_devinfo *devinfo, uint32_t *max_buf_list_len);

/* Needed before start; only while IDLE (BAD_STATE). num_memcpy_tasks must
 * be 1..max_num_tasks (INVALID_VALUE). */
doca_error_t doca_dma_task_memcpy_set_conf(
    struct doca_dma *dma,
    doca_dma_task_memcpy_completion_cb_t task_completion_cb,
    doca_dma_task_memcpy_completion_cb_t task_error_cb,
    uint32_t num_memcpy_tasks);
doca_error_t doca_dma_task_memcpy_alloc_init(
    struct doca_dma *dma, const struct doca_buf *src, struct doca_buf *dst,
    union doca_data user_data, struct doca_dma_task_memcpy **task);
struct doca_task *
doca_dma_task_memcpy_as_task(struct doca_dma_task_memcpy *task);
void doca_dma_task_memcpy_set_src(struct doca_dma_task_memcpy *task,
                                  const struct doca_buf *src);
void doca_dma_task_memcpy_set_dst(struct doca_dma_task_memcpy *task,
                                  struct doca_buf *dst);

#endif
