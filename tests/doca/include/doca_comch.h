/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: Comm Channel. Server = dpu side, client = host.
 *
 * The server listens on the abstract unix socket
 * "@doca-emu-comch/<representor PCI>/<name>"; the client connects to
 * "@doca-emu-comch/<its device's PCI>/<name>", so a client reaches the
 * server whose representor names its device, as on a BlueField. Both PCI
 * addresses are in the "0000:b1:00.0" form.
 *
 * Server start is synchronous; it accepts in doca_pe_progress and calls the
 * connect callback in the progress call after the accept, after any
 * message the client sent meanwhile (so a message may come from a
 * connection not reported yet). Client start returns IN_PROGRESS after one
 * connect attempt: with no server listening the ctx goes IDLE in the next
 * progress call (refused; the client does not wait for a server). Once
 * the server accepted, the client looks for it every 10 ms; it turns
 * RUNNING and receives what the server sent since in the same progress
 * call. When the link drops, the server calls the disconnect callback and
 * the client ctx goes STOPPING, then IDLE once its tasks are freed. A
 * connection handle stays valid until its server is destroyed.
 * doca_comch_server_disconnect is the only way a client learns that the
 * server is done: stopping or destroying a server drops its links without
 * disconnect callbacks, and a link not disconnected stays up for the
 * client until the server's process exits.
 *
 * Messages are at most max_msg_size bytes: DOCA_EMU_COMCH_DEFAULT_MSG
 * (512) until set, at most the cap (doca_comch_cap_get_max_msg_size,
 * DOCA_EMU_COMCH_MAX_MSG): alloc_init refuses longer ones with
 * INVALID_VALUE, and a receiver whose limit is smaller drops the
 * connection. Names, NUL included, are at most
 * doca_comch_cap_get_max_name_len bytes (DOCA_EMU_COMCH_MAX_NAME, 64):
 * create refuses longer ones with INVALID_VALUE. The payload is copied at
 * submit; submit returns AGAIN when the socket is full, and a send on a
 * dead link completes with CONNECTION_RESET. recv_buffer is valid only
 * during the receive callback.
 *
 * Comch never makes a PE's notification handle readable (DOCA: it "does
 * not support event-triggered completions"): messages, connections,
 * hang-ups and send completions are seen only by calling
 * doca_pe_progress.
 */
#ifndef DOCA_COMCH_H_
#define DOCA_COMCH_H_

#include <stddef.h>
#include <stdint.h>

#include <doca_error.h>
#include <doca_types.h>

struct doca_dev;
struct doca_dev_rep;
struct doca_devinfo;
struct doca_ctx;
struct doca_task;
struct doca_comch_server;
struct doca_comch_client;
struct doca_comch_connection;
struct doca_comch_task_send;
struct doca_comch_event_msg_recv;
struct doca_comch_event_connection_status_changed;

typedef void (*doca_comch_task_send_completion_cb_t)(
    struct doca_comch_task_send *task, union doca_data task_user_data,
    union doca_data ctx_user_data);
typedef void (*doca_comch_event_msg_recv_cb_t)(
    struct doca_comch_event_msg_recv *event, uint8_t *recv_buffer,
    uint32_t msg_len, struct doca_comch_connection *comch_connection);
typedef void (*doca_comch_event_connection_status_changed_cb_t)(
    struct doca_comch_event_connection_status_changed *event,
    struct doca_comch_connection *comch_connection, uint8_t change_successful);

/* Device limits. */
doca_error_t
doca_comch_cap_server_is_supported(const struct doca_devinfo *devinfo);
doca_error_t
doca_comch_cap_client_is_supported(const struct doca_devinfo *devinfo);
doca_error_t doca_comch_cap_get_max_name_len(const struct doca_devinfo *devinfo,
                                             uint32_t *max_name_len);
doca_error_t doca_comch_cap_get_max_msg_size(const struct doca_devinfo *devinfo,
                                             uint32_t *size);
doca_error_t
doca_comch_cap_get_max_send_tasks(const struct doca_devinfo *devinfo,
                                  uint32_t *max_send_tasks);

/* Server (the name, NUL included, is at most max_name_len bytes). */
doca_error_t doca_comch_server_create(struct doca_dev *dev,
                                      struct doca_dev_rep *repr,
                                      const char *name,
                                      struct doca_comch_server **comch_server);
doca_error_t doca_comch_server_destroy(struct doca_comch_server *comch_server);
struct doca_ctx *
doca_comch_server_as_ctx(struct doca_comch_server *comch_server);
/* Setters and registrations need an IDLE ctx (BAD_STATE). */
doca_error_t
doca_comch_server_set_max_msg_size(struct doca_comch_server *comch_server,
                                   uint32_t size);
doca_error_t
doca_comch_server_get_max_msg_size(const struct doca_comch_server *comch_server,
                                   uint32_t *size);
doca_error_t doca_comch_server_task_send_set_conf(
    struct doca_comch_server *comch_server,
    doca_comch_task_send_completion_cb_t task_completion_cb,
    doca_comch_task_send_completion_cb_t task_error_cb,
    uint32_t num_send_tasks);
doca_error_t doca_comch_server_event_msg_recv_register(
    struct doca_comch_server *comch_server,
    doca_comch_event_msg_recv_cb_t recv_event_cb);
doca_error_t doca_comch_server_event_connection_status_changed_register(
    struct doca_comch_server *comch_server,
    doca_comch_event_connection_status_changed_cb_t connect_event_cb,
    doca_comch_event_connection_status_changed_cb_t disconnect_event_cb);
doca_error_t doca_comch_server_task_send_alloc_init(
    struct doca_comch_server *comch_server, struct doca_comch_connection *peer,
    const void *msg, uint32_t len, struct doca_comch_task_send **task);
/* Closes the link now; the disconnect callback follows in progress. */
doca_error_t
doca_comch_server_disconnect(struct doca_comch_server *comch_server,
                             struct doca_comch_connection *connection);

/* Client. */
doca_error_t doca_comch_client_create(struct doca_dev *dev, const char *name,
                                      struct doca_comch_client **comch_client);
doca_error_t doca_comch_client_destroy(struct doca_comch_client *comch_client);
struct doca_ctx *
doca_comch_client_as_ctx(struct doca_comch_client *comch_client);
doca_error_t
doca_comch_client_set_max_msg_size(struct doca_comch_client *comch_client,
                                   uint32_t size);
doca_error_t
doca_comch_client_get_max_msg_size(const struct doca_comch_client *comch_client,
                                   uint32_t *size);
doca_error_t doca_comch_client_task_send_set_conf(
    struct doca_comch_client *comch_client,
    doca_comch_task_send_completion_cb_t task_completion_cb,
    doca_comch_task_send_completion_cb_t task_error_cb,
    uint32_t num_send_tasks);
doca_error_t doca_comch_client_event_msg_recv_register(
    struct doca_comch_client *comch_client,
    doca_comch_event_msg_recv_cb_t recv_event_cb);
/* BAD_STATE while the ctx is IDLE. */
doca_error_t
doca_comch_client_get_connection(const struct doca_comch_client *comch_client,
                                 struct doca_comch_connection **connection);
doca_error_t doca_comch_client_task_send_alloc_init(
    struct doca_comch_client *comch_client, struct doca_comch_connection *peer,
    const void *msg, uint32_t len, struct doca_comch_task_send **task);

struct doca_task *
doca_comch_task_send_as_task(struct doca_comch_task_send *task);

/* Connections. */
doca_error_t
doca_comch_connection_set_user_data(struct doca_comch_connection *connection,
                                    union doca_data user_data);
union doca_data doca_comch_connection_get_user_data(
    const struct doca_comch_connection *connection);

#endif
