/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: buffers. A buf describes [head, head + len) inside
 * one mmap and a data section [data, data + data_len) inside that. It goes
 * back to its inventory when its reference count drops to 0. Chained
 * (linked-list) bufs are not emulated.
 */
#ifndef DOCA_BUF_H_
#define DOCA_BUF_H_

#include <stddef.h>
#include <stdint.h>

#include <doca_error.h>

struct doca_buf;

/* refcount receives the count before the change; it may be NULL. */
doca_error_t doca_buf_inc_refcount(struct doca_buf *buf, uint16_t *refcount);
doca_error_t doca_buf_dec_refcount(struct doca_buf *buf, uint16_t *refcount);
doca_error_t doca_buf_get_data(const struct doca_buf *buf, void **data);
doca_error_t doca_buf_get_data_len(const struct doca_buf *buf,
                                   size_t *data_len);
/* The new data section must stay inside the buf (not checked, as in DOCA). */
doca_error_t doca_buf_set_data(struct doca_buf *buf, void *data,
                               size_t data_len);
doca_error_t doca_buf_reset_data_len(struct doca_buf *buf);

#endif
