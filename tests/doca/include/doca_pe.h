/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: the progress engine and generic tasks.
 *
 * A submitted task belongs to the emulation until its completion callback
 * runs, and callbacks run only inside doca_pe_progress, never inside
 * submit. Each progress call also drives the connected contexts (comch
 * connections and messages) and completes every task submitted before it
 * started; tasks submitted from a callback complete in a later call.
 * Calling doca_pe_progress from a callback aborts the process, to catch the
 * misuse DOCA forbids. Notification handles are not emulated: poll.
 */
#ifndef DOCA_PE_H_
#define DOCA_PE_H_

#include <stddef.h>
#include <stdint.h>

#include <doca_error.h>
#include <doca_types.h>

struct doca_ctx;
struct doca_pe;
struct doca_task;

typedef void (*doca_task_completion_cb_t)(struct doca_task *task,
                                          union doca_data task_user_data,
                                          union doca_data ctx_user_data);

doca_error_t doca_pe_create(struct doca_pe **pe);
/* IN_USE while contexts are connected. */
doca_error_t doca_pe_destroy(struct doca_pe *pe);
/* 1 if anything happened, 0 otherwise. */
uint8_t doca_pe_progress(struct doca_pe *pe);
/* The ctx must be IDLE (BAD_STATE) and unconnected (NOT_PERMITTED); the
 * link lasts until the ctx is destroyed. */
doca_error_t doca_pe_connect_ctx(struct doca_pe *pe, struct doca_ctx *ctx);
/* On failure the caller still owns the task. Both variants validate (see
 * doca_dma.h and doca_comch.h for what). */
doca_error_t doca_task_submit(struct doca_task *task);
doca_error_t doca_task_try_submit(struct doca_task *task);
/* Not while submitted (the emulation aborts). */
void doca_task_free(struct doca_task *task);
doca_error_t doca_task_get_status(const struct doca_task *task);
union doca_data doca_task_get_user_data(const struct doca_task *task);

#endif
