/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Progress engine, context state machine and the task pool every context
 * kind shares. Tasks wait in the PE's queue from submit to the next
 * doca_pe_progress, which is the only place callbacks run.
 */
#include <stdlib.h>

#include <doca_ctx.h>
#include <doca_pe.h>

#include "emu.h"

struct doca_pe {
    struct doca_ctx *ctxs;
    struct doca_task *head, *tail; /* submitted, not yet completed */
    int in_progress;
};

doca_error_t doca_pe_create(struct doca_pe **pe)
{
    *pe = calloc(1, sizeof(**pe));
    return *pe != NULL ? DOCA_SUCCESS : DOCA_ERROR_NO_MEMORY;
}

doca_error_t doca_pe_destroy(struct doca_pe *pe)
{
    if (pe->ctxs != NULL) {
        return DOCA_ERROR_IN_USE;
    }
    free(pe);
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

static void complete_task(struct doca_task *t)
{
    t->state = EMU_TASK_OWNED;
    if (t->status == DOCA_SUCCESS && t->ctx->ops->execute != NULL) {
        t->status = t->ctx->ops->execute(t);
    }
    t->ctx->ops->complete(t); /* the callback may free or resubmit t */
}

/* A stopping ctx whose tasks are all back in the pool turns IDLE. */
static int finish_stops(struct doca_pe *pe)
{
    int any = 0;

    for (struct doca_ctx *c = pe->ctxs; c != NULL; c = c->pe_next) {
        if (c->state == DOCA_CTX_STATE_STOPPING && c->allocated == 0) {
            emu_ctx_wind_down(c);
            any = 1;
        }
    }
    return any;
}

uint8_t doca_pe_progress(struct doca_pe *pe)
{
    struct doca_task *t;
    int any = 0;

    if (pe->in_progress) {
        emu_die("doca_pe_progress called from a callback");
    }
    pe->in_progress = 1;
    for (struct doca_ctx *c = pe->ctxs; c != NULL; c = c->pe_next) {
        if (c->state != DOCA_CTX_STATE_IDLE && c->ops->progress != NULL) {
            any |= c->ops->progress(c);
        }
    }
    /* Only what was queued on entry: resubmissions wait for the next call. */
    t = pe->head;
    pe->head = pe->tail = NULL;
    while (t != NULL) {
        struct doca_task *next = t->next;

        complete_task(t);
        any = 1;
        t = next;
    }
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
}

doca_error_t doca_task_get_status(const struct doca_task *task)
{
    return task->status;
}

union doca_data doca_task_get_user_data(const struct doca_task *task)
{
    return task->user_data;
}
