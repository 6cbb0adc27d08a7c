/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Buffers and their lists. A buf describes [head, head + len) inside one
 * mmap and a data section [data, data + data_len) inside that; it goes
 * back to its inventory when its reference count drops to 0.
 *
 * Lists, as doca_buf.h (DOCA 2.10) describes them: bufs chained one after
 * another, known by their first element, the head. A lone buf heads a
 * list of one. The head's reference count stands for the whole list:
 * later elements keep a count of 1, refuse inc/dec_refcount with
 * NOT_PERMITTED, and go back to their inventories with the head. Only a
 * head with a count of exactly 1 may be chained after another list
 * (NOT_PERMITTED otherwise), so a buf is in one list at most and a list
 * someone else still holds cannot vanish into another.
 *
 * Where DOCA states a precondition (a list argument must be a head) but no
 * status for breaking it, the emulation refuses with the status DOCA gives for
 * the nearest documented case, rather than build a broken list: a later
 * element where a head is wanted is NOT_PERMITTED (as for refcounts), a
 * list chained to itself or a wrong tail is INVALID_VALUE (as for an
 * unchain of a buf that is not in the list).
 */
#include <doca_buf.h>

#include "emu.h"

static int is_head(const struct doca_buf *b)
{
    return b->first == b;
}

static struct doca_buf *last_of(struct doca_buf *b)
{
    while (b->next != NULL) {
        b = b->next;
    }
    return b;
}

doca_error_t doca_buf_inc_refcount(struct doca_buf *buf, uint16_t *refcount)
{
    if (buf->refcount == 0) {
        return DOCA_ERROR_BAD_STATE; /* back in the inventory */
    }
    if (!is_head(buf)) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    if (buf->refcount == UINT16_MAX) {
        return DOCA_ERROR_TOO_BIG;
    }
    if (refcount != NULL) {
        *refcount = buf->refcount;
    }
    buf->refcount++;
    return DOCA_SUCCESS;
}

/* At 0 the head takes every element of its list back with it. */
doca_error_t doca_buf_dec_refcount(struct doca_buf *buf, uint16_t *refcount)
{
    if (buf->refcount == 0) {
        return DOCA_ERROR_BAD_STATE;
    }
    if (!is_head(buf)) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    if (refcount != NULL) {
        *refcount = buf->refcount;
    }
    if (--buf->refcount == 0) {
        for (struct doca_buf *b = buf, *next; b != NULL; b = next) {
            next = b->next;
            emu_buf_put(b);
        }
    }
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_get_refcount(const struct doca_buf *buf,
                                   uint16_t *refcount)
{
    *refcount = buf->refcount;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_get_data(const struct doca_buf *buf, void **data)
{
    *data = buf->data;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_get_data_len(const struct doca_buf *buf, size_t *data_len)
{
    *data_len = buf->data_len;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_set_data(struct doca_buf *buf, void *data,
                               size_t data_len)
{
    buf->data = data;
    buf->data_len = data_len;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_reset_data_len(struct doca_buf *buf)
{
    buf->data_len = 0;
    return DOCA_SUCCESS;
}

/* ---- lists ---- */

doca_error_t doca_buf_get_next_in_list(struct doca_buf *buf,
                                       struct doca_buf **next_buf)
{
    *next_buf = buf->next;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_get_last_in_list(struct doca_buf *buf,
                                       struct doca_buf **last_buf)
{
    *last_buf = last_of(buf);
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_is_last_in_list(const struct doca_buf *buf,
                                      uint8_t *is_last)
{
    *is_last = buf->next == NULL;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_is_first_in_list(const struct doca_buf *buf,
                                       uint8_t *is_first)
{
    *is_first = (uint8_t)is_head(buf);
    return DOCA_SUCCESS;
}

/* A lone buf is not "in a list": it takes a second element. */
doca_error_t doca_buf_is_in_list(const struct doca_buf *buf,
                                 uint8_t *is_in_list)
{
    *is_in_list = !is_head(buf) || buf->next != NULL;
    return DOCA_SUCCESS;
}

doca_error_t doca_buf_get_list_len(const struct doca_buf *buf,
                                   uint32_t *num_elements)
{
    uint32_t n = 0;

    if (!is_head(buf)) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    for (const struct doca_buf *b = buf; b != NULL; b = b->next) {
        n++;
    }
    *num_elements = n;
    return DOCA_SUCCESS;
}

/* What both chain calls demand of their lists. */
static doca_error_t check_chain(const struct doca_buf *list1,
                                const struct doca_buf *list2)
{
    if (list1->refcount == 0) {
        return DOCA_ERROR_BAD_STATE; /* back in the inventory */
    }
    if (!is_head(list1) || !is_head(list2) || list2->refcount != 1) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    return list1 == list2 ? DOCA_ERROR_INVALID_VALUE : DOCA_SUCCESS;
}

/* list2's elements now belong to the list headed by head, after tail. */
static void append(struct doca_buf *head, struct doca_buf *tail,
                   struct doca_buf *list2)
{
    tail->next = list2;
    for (struct doca_buf *b = list2; b != NULL; b = b->next) {
        b->first = head;
    }
}

doca_error_t doca_buf_chain_list(struct doca_buf *list1, struct doca_buf *list2)
{
    doca_error_t err = check_chain(list1, list2);

    if (err == DOCA_SUCCESS) {
        append(list1, last_of(list1), list2);
    }
    return err;
}

/* The caller names list1's tail, so the list need not be walked; the
 * emulation still checks that it is the tail. */
doca_error_t doca_buf_chain_list_tail(struct doca_buf *list1_head,
                                      struct doca_buf *list1_tail,
                                      struct doca_buf *list2)
{
    doca_error_t err = check_chain(list1_head, list2);

    if (err == DOCA_SUCCESS &&
        (list1_tail->first != list1_head || list1_tail->next != NULL)) {
        err = DOCA_ERROR_INVALID_VALUE;
    }
    if (err == DOCA_SUCCESS) {
        append(list1_head, list1_tail, list2);
    }
    return err;
}

/* list2 and what follows it leave list1 and head a list of their own
 * (its count is the 1 every later element keeps). list1 may be any
 * element before list2. */
doca_error_t doca_buf_unchain_list(struct doca_buf *list1,
                                   struct doca_buf *list2)
{
    struct doca_buf *prev = list1;

    while (prev->next != NULL && prev->next != list2) {
        prev = prev->next;
    }
    if (list2 == list1 || prev->next != list2) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    prev->next = NULL;
    for (struct doca_buf *b = list2; b != NULL; b = b->next) {
        b->first = list2;
    }
    return DOCA_SUCCESS;
}
