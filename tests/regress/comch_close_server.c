/*
 * Closing a comch server (a dpu side's listener or channel) touched its
 * ctx after destroying it: comch_close destroyed the server, then
 * destroy_client stopped c->ctx, still the server's. On a card that is a
 * use after free at every dpu side's close.
 *
 * doca_comch_server_destroy and doca_ctx_get_state are wrapped: a state
 * asked of a destroyed server's ctx fails the test (the emulation frees
 * it, so this is also what a sanitizer build reports).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <doca_comch.h>
#include <doca_ctx.h>
#include <hmaf/hmaf.h>

#include "channel/channel.h"
#include "check.h"

#define HOST_PCI "b1:00.0" /* the emulation's defaults */
#define DPU_PCI  "03:00.0"

static struct doca_ctx *destroyed;
static int touched;

doca_error_t __real_doca_comch_server_destroy(struct doca_comch_server *s);
doca_error_t __wrap_doca_comch_server_destroy(struct doca_comch_server *s);
doca_error_t __real_doca_ctx_get_state(const struct doca_ctx *ctx,
                                       enum doca_ctx_states *state);
doca_error_t __wrap_doca_ctx_get_state(const struct doca_ctx *ctx,
                                       enum doca_ctx_states *state);

doca_error_t __wrap_doca_comch_server_destroy(struct doca_comch_server *s)
{
    struct doca_ctx *ctx = doca_comch_server_as_ctx(s);
    doca_error_t err = __real_doca_comch_server_destroy(s);

    if (err == DOCA_SUCCESS) {
        destroyed = ctx;
    }
    return err;
}

doca_error_t __wrap_doca_ctx_get_state(const struct doca_ctx *ctx,
                                       enum doca_ctx_states *state)
{
    if (ctx != NULL && ctx == destroyed) {
        touched++;
        *state = DOCA_CTX_STATE_IDLE; /* and do not read it */
        return DOCA_SUCCESS;
    }
    return __real_doca_ctx_get_state(ctx, state);
}

int main(void)
{
    char address[96];
    struct hmaf_listener *l;

    snprintf(address, sizeof(address), "comch:hmaf-close%d@%s/%s",
             (int)getpid(), DPU_PCI, HOST_PCI);
    CHECK_OK(hmaf__listener_open(address, &l));
    hmaf__listener_close(l);
    CHECK(destroyed != NULL);
    CHECK_EQ(touched, 0);
    printf("comch_close_server: ok\n");
    return 0;
}
