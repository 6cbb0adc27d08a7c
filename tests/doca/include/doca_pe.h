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
 * misuse DOCA forbids.
 *
 * Notification (Linux): the handle is an fd, fixed for the PE's life, that
 * turns readable for poll/epoll once the PE is armed and has work for
 * doca_pe_progress. The flow DOCA documents: progress until it returns 0,
 * doca_pe_request_notification, wait on the handle,
 * doca_pe_clear_notification, progress again. Armed, the handle turns
 * readable when a task is submitted or already waits, or a stopping ctx
 * can turn IDLE — except for comch contexts, which never fire it (DOCA's
 * Comm Channel "does not support event-triggered completions"). Work that
 * came before the arm counts too (spurious wake-ups are allowed, missed
 * ones are not). Cleared or never armed, it stays quiet whatever arrives.
 *
 * Event modes: which contexts doca_pe_progress drives once the PE has
 * been armed. SELECTIVE (the default): those that received an event, or
 * had tasks to progress at the latest doca_pe_request_notification; a
 * comch context receives none, so it is left out unless one of its tasks
 * was in flight at that arm. PROGRESS_ALL: every context, always. A PE
 * never armed drives every context in either mode.
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

/* An fd to wait on for readability (doca_types.h in the SDK). */
typedef int doca_event_handle_t;
typedef doca_event_handle_t doca_notification_handle_t;
#define doca_event_invalid_handle -1

enum doca_pe_event_mode {
    DOCA_PE_EVENT_MODE_PROGRESS_SELECTIVE,
    DOCA_PE_EVENT_MODE_PROGRESS_ALL
};

typedef void (*doca_task_completion_cb_t)(struct doca_task *task,
                                          union doca_data task_user_data,
                                          union doca_data ctx_user_data);

/* NO_MEMORY also when out of file descriptors (the handle needs two). */
doca_error_t doca_pe_create(struct doca_pe **pe);
/* IN_USE while contexts are connected. */
doca_error_t doca_pe_destroy(struct doca_pe *pe);
/* 1 if anything happened, 0 otherwise. */
uint8_t doca_pe_progress(struct doca_pe *pe);
/* The PE's handle; the same value for as long as the PE lives. */
doca_error_t
doca_pe_get_notification_handle(const struct doca_pe *pe,
                                doca_notification_handle_t *handle);
/* Arm: the handle turns readable once progress has work (see above). */
doca_error_t doca_pe_request_notification(struct doca_pe *pe);
/* After a wake-up: quiet the handle and disarm. INVALID_VALUE if handle
 * is not this PE's. */
doca_error_t doca_pe_clear_notification(struct doca_pe *pe,
                                        doca_notification_handle_t handle);
/* See above; INVALID_VALUE for another value. Not from a callback (the
 * emulation aborts). A switch to SELECTIVE applies from the next arm.
 * DOCA 2.10 marks it experimental. */
#ifndef DOCA_ALLOW_EXPERIMENTAL_API
__attribute__((deprecated("experimental in DOCA 2.10")))
#endif
doca_error_t
doca_pe_set_event_mode(struct doca_pe *pe, enum doca_pe_event_mode event_mode);
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
