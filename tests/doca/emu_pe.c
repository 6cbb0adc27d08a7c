/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Progress engine, context state machine and the task pool every context
 * kind shares. Tasks wait in the PE's queue from submit to the next
 * doca_pe_progress, which is the only place callbacks run.
 *
 * Notification: the handle is an epoll set. While the PE is armed it holds
 * the contexts' sockets (one-shot, so a socket that fired stays quiet until
 * the next arm) and always a timerfd, which stands for every other kind of
 * work: set to a past time it fires at once (a task waits), set to a
 * future one it fires then (a completion held until a timed mode's
 * deadline, or a connect retry). A quiet context (comch) takes no part: its
 * tasks, events and stops never fire the handle.
 * Clearing drops the sockets and disarms the timer, so nothing fires until
 * the next arm.
 *
 * Event modes (doca_pe_set_event_mode): in PROGRESS_ALL every progress
 * call drives every context. In SELECTIVE, DOCA's default, a PE that has
 * been armed drives only the contexts that received an event or had tasks
 * to progress when it was armed. A DMA context raises an event for all
 * its work, so here it always counts as having received one; a quiet one
 * never does, so it is driven only if a task of it was queued at the
 * latest arm, and until the next arm. A PE never armed (since the mode
 * was set) drives everything in either mode: DOCA's samples poll without
 * ever arming or setting a mode.
 */
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <doca_ctx.h>
#include <doca_pe.h>

#include "emu.h"

#define WAKE_NOW_NS   1 /* an absolute time long past: the timer fires now */
#define WAKE_NEVER_NS 0 /* disarms the timer */

struct doca_pe {
    struct doca_ctx *ctxs;
    struct doca_task *head, *tail; /* submitted, not yet completed */
    int in_progress;
    int notify_fd;     /* the handle: an epoll set */
    int timer_fd;      /* in notify_fd, level-triggered */
    int armed;         /* from request_notification to clear_notification */
    uint64_t timer_at; /* what timer_fd is set to; WAKE_NEVER_NS: nothing */
    enum doca_pe_event_mode mode;
    int selecting; /* selective, and armed since the mode was set */
};

static void close_notify(struct doca_pe *pe)
{
    if (pe->timer_fd >= 0) {
        close(pe->timer_fd);
    }
    if (pe->notify_fd >= 0) {
        close(pe->notify_fd);
    }
}

static doca_error_t open_notify(struct doca_pe *pe)
{
    struct epoll_event ev = {.events = EPOLLIN};

    pe->notify_fd = epoll_create1(EPOLL_CLOEXEC);
    pe->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (pe->notify_fd < 0 || pe->timer_fd < 0 ||
        epoll_ctl(pe->notify_fd, EPOLL_CTL_ADD, pe->timer_fd, &ev) != 0) {
        close_notify(pe);
        return DOCA_ERROR_NO_MEMORY; /* out of fds, as DOCA reports it */
    }
    return DOCA_SUCCESS;
}

doca_error_t doca_pe_create(struct doca_pe **pe)
{
    struct doca_pe *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    if (open_notify(p) != DOCA_SUCCESS) {
        free(p);
        return DOCA_ERROR_NO_MEMORY;
    }
    p->mode = DOCA_PE_EVENT_MODE_PROGRESS_SELECTIVE;
    *pe = p;
    return DOCA_SUCCESS;
}

doca_error_t doca_pe_destroy(struct doca_pe *pe)
{
    if (pe->ctxs != NULL) {
        return DOCA_ERROR_IN_USE;
    }
    close_notify(pe);
    free(pe);
    return DOCA_SUCCESS;
}

/* ---- notification ---- */

static void set_timer(struct doca_pe *pe, uint64_t at_ns)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(at_ns / 1000000000u),
                     .tv_nsec = (long)(at_ns % 1000000000u)},
    };

    (void)timerfd_settime(pe->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
    pe->timer_at = at_ns;
}

void emu_pe_kick_at(struct doca_pe *pe, uint64_t at_ns)
{
    if (at_ns == WAKE_NEVER_NS) {
        at_ns = WAKE_NOW_NS;
    }
    /* Only ever earlier: a timer that fired stays readable (its time is
     * past, so any later one is too). */
    if (pe != NULL && pe->armed &&
        (pe->timer_at == WAKE_NEVER_NS || at_ns < pe->timer_at)) {
        set_timer(pe, at_ns);
    }
}

void emu_pe_kick(struct doca_pe *pe)
{
    emu_pe_kick_at(pe, WAKE_NOW_NS);
}

void emu_pe_watch(struct doca_pe *pe, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT};

    if (pe == NULL || fd < 0) {
        return;
    }
    if (!pe->armed) {
        /* Not merely disabled: epoll reports a hang-up on any member. */
        (void)epoll_ctl(pe->notify_fd, EPOLL_CTL_DEL, fd, NULL);
        return;
    }
    /* MOD re-enables a socket that fired, and fires now if it is ready. */
    if (epoll_ctl(pe->notify_fd, EPOLL_CTL_MOD, fd, &ev) != 0 &&
        epoll_ctl(pe->notify_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        emu_pe_kick(pe); /* cannot watch it: wake the waiter to look */
    }
}

/* Line the contexts' sockets up with the arming. For an arm: 1 when
 * progress has work now, else *wake_ns is when it will (unchanged: no
 * time). A clear ignores both. */
static int watch_all(struct doca_pe *pe, uint64_t *wake_ns)
{
    int due = 0;

    for (struct doca_task *t = pe->head; t != NULL && !due; t = t->next) {
        due = !t->ctx->ops->quiet;
    }
    for (struct doca_ctx *c = pe->ctxs; c != NULL; c = c->pe_next) {
        if (c->ops->quiet) {
            continue;
        }
        if (c->state == DOCA_CTX_STATE_STOPPING && c->allocated == 0) {
            due = 1; /* turns IDLE in the next progress */
        }
        if (c->state != DOCA_CTX_STATE_IDLE && c->ops->watch != NULL) {
            due |= c->ops->watch(c, wake_ns);
        }
    }
    return due;
}

doca_error_t doca_pe_get_notification_handle(const struct doca_pe *pe,
                                             doca_notification_handle_t *handle)
{
    *handle = pe->notify_fd;
    return DOCA_SUCCESS;
}

/* Selective mode: the arm picks the quiet contexts that will be driven
 * until the next one, those with a task queued now. */
static void select_ctxs(struct doca_pe *pe)
{
    if (pe->mode != DOCA_PE_EVENT_MODE_PROGRESS_SELECTIVE) {
        return;
    }
    pe->selecting = 1;
    for (struct doca_ctx *c = pe->ctxs; c != NULL; c = c->pe_next) {
        c->selected = 0;
    }
    for (struct doca_task *t = pe->head; t != NULL; t = t->next) {
        t->ctx->selected = 1;
    }
}

/* Does a progress call drive c (see the top of this file)? */
static int drives(const struct doca_pe *pe, const struct doca_ctx *c)
{
    return !pe->selecting || !c->ops->quiet || c->selected;
}

doca_error_t doca_pe_set_event_mode(struct doca_pe *pe,
                                    enum doca_pe_event_mode event_mode)
{
    if (event_mode != DOCA_PE_EVENT_MODE_PROGRESS_SELECTIVE &&
        event_mode != DOCA_PE_EVENT_MODE_PROGRESS_ALL) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    if (pe->in_progress) {
        emu_die("doca_pe_set_event_mode called from a callback");
    }
    if (event_mode != pe->mode) {
        pe->mode = event_mode;
        pe->selecting = 0; /* selective again: from the next arm on */
    }
    return DOCA_SUCCESS;
}

doca_error_t doca_pe_request_notification(struct doca_pe *pe)
{
    uint64_t wake_ns = UINT64_MAX;

    select_ctxs(pe);
    pe->armed = 1;
    if (watch_all(pe, &wake_ns)) {
        wake_ns = WAKE_NOW_NS;
    }
    set_timer(pe, wake_ns == UINT64_MAX ? WAKE_NEVER_NS : wake_ns);
    return DOCA_SUCCESS;
}

doca_error_t doca_pe_clear_notification(struct doca_pe *pe,
                                        doca_notification_handle_t handle)
{
    uint64_t wake_ns = UINT64_MAX;

    if (handle != pe->notify_fd) {
        return DOCA_ERROR_INVALID_VALUE;
    }
    /* Both steps also take back what fired: a dropped socket leaves the
     * set, and disarming forgets a firing of the timer not yet read. */
    pe->armed = 0;
    (void)watch_all(pe, &wake_ns);
    set_timer(pe, WAKE_NEVER_NS);
    return DOCA_SUCCESS;
}

doca_error_t doca_pe_connect_ctx(struct doca_pe *pe, struct doca_ctx *ctx)
{
    if (ctx->state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    if (ctx->pe != NULL) {
        return DOCA_ERROR_NOT_PERMITTED;
    }
    ctx->pe = pe;
    ctx->pe_next = pe->ctxs;
    pe->ctxs = ctx;
    return DOCA_SUCCESS;
}

/* 1 if its callback ran now, or the ctx counts holding it as progress. */
static int complete_task(struct doca_task *t)
{
    t->state = EMU_TASK_OWNED;
    if (t->status == DOCA_SUCCESS && t->ctx->ops->execute != NULL) {
        t->status = t->ctx->ops->execute(t);
    }
    return t->ctx->ops->complete(t); /* the callback may free or resubmit t */
}

/* Complete the tasks queued on entry, those of contexts this call
 * drives; the others stay queued, ahead of what callbacks submit. */
static int complete_queued(struct doca_pe *pe)
{
    struct doca_task *t = pe->head, *kept = NULL, *kept_last = NULL;
    int any = 0;

    pe->head = pe->tail = NULL;
    while (t != NULL) {
        struct doca_task *next = t->next;

        if (drives(pe, t->ctx)) {
            any |= complete_task(t);
        } else {
            t->next = NULL;
            if (kept_last != NULL) {
                kept_last->next = t;
            } else {
                kept = t;
            }
            kept_last = t;
        }
        t = next;
    }
    if (kept != NULL) {
        kept_last->next = pe->head;
        if (pe->head == NULL) {
            pe->tail = kept_last;
        }
        pe->head = kept;
    }
    return any;
}

/* A stopping ctx whose tasks are all back in the pool turns IDLE. */
static int finish_stops(struct doca_pe *pe)
{
    int any = 0;

    for (struct doca_ctx *c = pe->ctxs; c != NULL; c = c->pe_next) {
        if (c->state == DOCA_CTX_STATE_STOPPING && c->allocated == 0 &&
            drives(pe, c)) {
            emu_ctx_wind_down(c);
            any = 1;
        }
    }
    return any;
}

uint8_t doca_pe_progress(struct doca_pe *pe)
{
    int any = 0;

    if (pe->in_progress) {
        emu_die("doca_pe_progress called from a callback");
    }
    pe->in_progress = 1;
    for (struct doca_ctx *c = pe->ctxs; c != NULL; c = c->pe_next) {
        if (c->state != DOCA_CTX_STATE_IDLE && c->ops->progress != NULL &&
            drives(pe, c)) {
            any |= c->ops->progress(c);
        }
    }
    /* Only what was queued on entry: resubmissions wait for the next call. */
    any |= complete_queued(pe);
    any |= finish_stops(pe);
    pe->in_progress = 0;
    return (uint8_t)any;
}

/* ---- contexts ---- */

void emu_ctx_init(struct doca_ctx *ctx, const struct emu_ctx_ops *ops,
                  size_t task_size)
{
    *ctx = (struct doca_ctx){.ops = ops, .task_size = task_size};
}

doca_error_t emu_ctx_fini(struct doca_ctx *ctx)
{
    struct doca_ctx **link;

    if (ctx->state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    for (link = ctx->pe != NULL ? &ctx->pe->ctxs : NULL;
         link != NULL && *link != NULL; link = &(*link)->pe_next) {
        if (*link == ctx) {
            *link = ctx->pe_next;
            break;
        }
    }
    return DOCA_SUCCESS;
}

void emu_ctx_set_state(struct doca_ctx *ctx, enum doca_ctx_states next)
{
    enum doca_ctx_states prev = ctx->state;

    ctx->state = next;
    if (ctx->state_cb != NULL && prev != next) {
        ctx->state_cb(ctx->user_data, ctx, prev, next);
    }
}

doca_error_t emu_ctx_wind_down(struct doca_ctx *ctx)
{
    if (ctx->allocated != 0) {
        emu_ctx_set_state(ctx, DOCA_CTX_STATE_STOPPING);
        return DOCA_ERROR_IN_PROGRESS;
    }
    free(ctx->pool);
    ctx->pool = NULL;
    ctx->free_tasks = NULL;
    emu_ctx_set_state(ctx, DOCA_CTX_STATE_IDLE);
    return DOCA_SUCCESS;
}

/* The pool has exactly num_tasks tasks: that is the NO_MEMORY limit. */
static doca_error_t make_pool(struct doca_ctx *ctx)
{
    ctx->pool = calloc(ctx->num_tasks ? ctx->num_tasks : 1, ctx->task_size);
    if (ctx->pool == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    for (uint32_t i = ctx->num_tasks; i-- > 0;) {
        struct doca_task *t = (void *)(ctx->pool + i * ctx->task_size);

        t->ctx = ctx;
        t->next = ctx->free_tasks;
        ctx->free_tasks = t;
    }
    return DOCA_SUCCESS;
}

doca_error_t doca_ctx_start(struct doca_ctx *ctx)
{
    doca_error_t err;

    if (ctx->pe == NULL) {
        return DOCA_ERROR_NOT_CONNECTED;
    }
    if (ctx->state != DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    err = make_pool(ctx);
    if (err == DOCA_SUCCESS) {
        err = ctx->ops->start(ctx);
    }
    if (err == DOCA_SUCCESS || err == DOCA_ERROR_IN_PROGRESS) {
        emu_ctx_set_state(ctx, err == DOCA_SUCCESS ? DOCA_CTX_STATE_RUNNING
                                                   : DOCA_CTX_STATE_STARTING);
        return err;
    }
    free(ctx->pool);
    ctx->pool = NULL;
    ctx->free_tasks = NULL;
    return err;
}

doca_error_t doca_ctx_stop(struct doca_ctx *ctx)
{
    if (ctx->pe == NULL) {
        return DOCA_ERROR_NOT_CONNECTED;
    }
    if (ctx->state == DOCA_CTX_STATE_IDLE) {
        return DOCA_ERROR_BAD_STATE;
    }
    if (ctx->state == DOCA_CTX_STATE_STOPPING) {
        return DOCA_ERROR_IN_PROGRESS;
    }
    if (ctx->ops->stop != NULL) {
        ctx->ops->stop(ctx);
    }
    return emu_ctx_wind_down(ctx);
}

doca_error_t doca_ctx_get_state(const struct doca_ctx *ctx,
                                enum doca_ctx_states *state)
{
    *state = ctx->state;
    return DOCA_SUCCESS;
}

doca_error_t doca_ctx_set_user_data(struct doca_ctx *ctx,
                                    union doca_data user_data)
{
    ctx->user_data = user_data;
    return DOCA_SUCCESS;
}

doca_error_t doca_ctx_set_state_changed_cb(struct doca_ctx *ctx,
                                           doca_ctx_state_changed_callback_t cb)
{
    ctx->state_cb = cb;
    return DOCA_SUCCESS;
}

/* ---- tasks ---- */

doca_error_t emu_task_alloc(struct doca_ctx *ctx, struct doca_task **task_out)
{
    struct doca_task *t;

    if (ctx->state != DOCA_CTX_STATE_RUNNING) {
        return DOCA_ERROR_BAD_STATE;
    }
    t = ctx->free_tasks;
    if (t == NULL) {
        return DOCA_ERROR_NO_MEMORY;
    }
    ctx->free_tasks = t->next;
    ctx->allocated++;
    t->state = EMU_TASK_OWNED;
    t->status = DOCA_SUCCESS;
    t->next = NULL;
    *task_out = t;
    return DOCA_SUCCESS;
}

doca_error_t doca_task_submit(struct doca_task *task)
{
    struct doca_ctx *ctx = task->ctx;
    struct doca_pe *pe = ctx->pe;
    doca_error_t err;

    if (task->state != EMU_TASK_OWNED) {
        emu_die("submit of a task that is free or already submitted");
    }
    if (ctx->state != DOCA_CTX_STATE_RUNNING) {
        return DOCA_ERROR_BAD_STATE;
    }
    task->status = DOCA_SUCCESS;
    err = ctx->ops->submit(task);
    if (err != DOCA_SUCCESS) {
        return err;
    }
    task->state = EMU_TASK_SUBMITTED;
    task->next = NULL;
    if (pe->tail != NULL) {
        pe->tail->next = task;
    } else {
        pe->head = task;
    }
    pe->tail = task;
    if (!ctx->ops->quiet) {
        emu_pe_kick(pe);
    }
    return DOCA_SUCCESS;
}

doca_error_t doca_task_try_submit(struct doca_task *task)
{
    return doca_task_submit(task); /* submit validates already */
}

void doca_task_free(struct doca_task *task)
{
    struct doca_ctx *ctx = task->ctx;

    if (task->state != EMU_TASK_OWNED) {
        emu_die("free of a task that is free or still submitted");
    }
    task->state = EMU_TASK_FREE;
    task->next = ctx->free_tasks;
    ctx->free_tasks = task;
    ctx->allocated--;
    if (ctx->state == DOCA_CTX_STATE_STOPPING && ctx->allocated == 0 &&
        !ctx->ops->quiet) {
        emu_pe_kick(ctx->pe); /* the next progress turns it IDLE */
    }
}

doca_error_t doca_task_get_status(const struct doca_task *task)
{
    return task->status;
}

union doca_data doca_task_get_user_data(const struct doca_task *task)
{
    return task->user_data;
}
