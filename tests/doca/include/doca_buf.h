/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: buffers. A buf describes [head, head + len) inside
 * one mmap and a data section [data, data + data_len) inside that. It goes
 * back to its inventory when its reference count drops to 0.
 *
 * Lists (DOCA's "linked-list buffers", scatter-gather): bufs chained after
 * a head; a lone buf heads a list of one. The head's reference count
 * stands for the list: a later element keeps a count of 1, its
 * inc/dec_refcount are NOT_PERMITTED, and it goes back to its inventory
 * (each element is one inventory element) when the head's count drops to
 * 0. Bufs of different mmaps and inventories may share a list.
 */
#ifndef DOCA_BUF_H_
#define DOCA_BUF_H_

#include <stddef.h>
#include <stdint.h>

#include <doca_error.h>

struct doca_buf;

/* refcount receives the count before the change; it may be NULL. A later
 * element of a list: NOT_PERMITTED. A buf back in its inventory:
 * BAD_STATE. */
doca_error_t doca_buf_inc_refcount(struct doca_buf *buf, uint16_t *refcount);
doca_error_t doca_buf_dec_refcount(struct doca_buf *buf, uint16_t *refcount);
doca_error_t doca_buf_get_refcount(const struct doca_buf *buf,
                                   uint16_t *refcount);
doca_error_t doca_buf_get_data(const struct doca_buf *buf, void **data);
doca_error_t doca_buf_get_data_len(const struct doca_buf *buf,
                                   size_t *data_len);
/* The new data section must stay inside the buf (not checked, as in DOCA). */
doca_error_t doca_buf_set_data(struct doca_buf *buf, void *data,
                               size_t data_len);
doca_error_t doca_buf_reset_data_len(struct doca_buf *buf);

/* ---- lists ---- */

/* *next_buf is NULL after the last element. */
doca_error_t doca_buf_get_next_in_list(struct doca_buf *buf,
                                       struct doca_buf **next_buf);
/* The last element from buf on; buf itself when it is the last. */
doca_error_t doca_buf_get_last_in_list(struct doca_buf *buf,
                                       struct doca_buf **last_buf);
/* A lone buf is both first and last, and not "in a list". */
doca_error_t doca_buf_is_last_in_list(const struct doca_buf *buf,
                                      uint8_t *is_last);
doca_error_t doca_buf_is_first_in_list(const struct doca_buf *buf,
                                       uint8_t *is_first);
doca_error_t doca_buf_is_in_list(const struct doca_buf *buf,
                                 uint8_t *is_in_list);
/* buf must head its list (NOT_PERMITTED). */
doca_error_t doca_buf_get_list_len(const struct doca_buf *buf,
                                   uint32_t *num_elements);
/* Append list2 to list1. Both must be heads and list2's count exactly 1
 * (NOT_PERMITTED); list1 == list2 is INVALID_VALUE. */
doca_error_t doca_buf_chain_list(struct doca_buf *list1,
                                 struct doca_buf *list2);
/* The same with list1's tail given (INVALID_VALUE if it is not the
 * tail). DOCA 2.10 marks it experimental, and the SDK then declares it
 * deprecated unless DOCA_ALLOW_EXPERIMENTAL_API is defined; so does the
 * emulation, so -Werror code cannot use it by accident. */
#ifndef DOCA_ALLOW_EXPERIMENTAL_API
__attribute__((deprecated("experimental in DOCA 2.10")))
#endif
doca_error_t
doca_buf_chain_list_tail(struct doca_buf *list1_head,
                         struct doca_buf *list1_tail, struct doca_buf *list2);
/* Split list1 before list2, which then heads the rest with a count of 1.
 * list2 must come after list1 in its list (INVALID_VALUE). */
doca_error_t doca_buf_unchain_list(struct doca_buf *list1,
                                   struct doca_buf *list2);

#endif
