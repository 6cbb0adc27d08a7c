/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: DMA memcpy. The task copies the source's data
 * section to the end of the destination's data section and grows the
 * destination's data_len by as much. Bytes move inside doca_pe_progress:
 * memcpy between local mmaps, process_vm_readv/writev against the exporter
 * when one side is an imported mmap (both imported: NOT_SUPPORTED).
 *
 * Refused at alloc_init and again at submit:
 *   TOO_BIG        source data longer than max_buf_size (DOCA_EMU_MAX_BUF_SIZE)
 *   INVALID_VALUE  destination has less room after its data than that
 * Allocating more than num_memcpy_tasks tasks at once is NO_MEMORY.
 * Completion statuses (err_cb): see doca_emu.h.
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
/* Always 1: no chained bufs. */
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
