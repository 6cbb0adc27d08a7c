/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: the context every engine object (DMA, comch server
 * or client) is used through.
 *
 *   IDLE --start--> RUNNING                 (DMA, comch server)
 *   IDLE --start--> STARTING --progress--> RUNNING   (comch client:
 *                   start returns IN_PROGRESS)
 *   RUNNING/STARTING --stop--> STOPPING --progress--> IDLE
 *
 * start needs a connected PE (NOT_CONNECTED) and an IDLE ctx (BAD_STATE).
 * stop returns SUCCESS and goes straight to IDLE when no task is allocated;
 * otherwise it returns IN_PROGRESS, submitted tasks still complete in
 * doca_pe_progress, and the ctx turns IDLE once every task is freed.
 * Tasks can be allocated and submitted only while RUNNING (BAD_STATE).
 * The state callback runs inside start/stop for the transitions they make
 * and inside doca_pe_progress for the others.
 */
#ifndef DOCA_CTX_H_
#define DOCA_CTX_H_

#include <stddef.h>
#include <stdint.h>

#include <doca_error.h>
#include <doca_types.h>

struct doca_ctx;

enum doca_ctx_states {
    DOCA_CTX_STATE_IDLE = 0,
    DOCA_CTX_STATE_STARTING = 1,
    DOCA_CTX_STATE_RUNNING = 2,
    DOCA_CTX_STATE_STOPPING = 3,
};

typedef void (*doca_ctx_state_changed_callback_t)(
    const union doca_data user_data, struct doca_ctx *ctx,
    enum doca_ctx_states prev_state, enum doca_ctx_states next_state);

doca_error_t doca_ctx_start(struct doca_ctx *ctx);
doca_error_t doca_ctx_stop(struct doca_ctx *ctx);
doca_error_t doca_ctx_get_state(const struct doca_ctx *ctx,
                                enum doca_ctx_states *state);
doca_error_t doca_ctx_set_user_data(struct doca_ctx *ctx,
                                    union doca_data user_data);
doca_error_t
doca_ctx_set_state_changed_cb(struct doca_ctx *ctx,
                              doca_ctx_state_changed_callback_t cb);

#endif
