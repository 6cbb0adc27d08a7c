/* The dpu side of the handshake (format: proto/handshake.h). */
#include <string.h>

#include <hmaf/error.h>

#include "core/session_int.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/pidns.h"

static int build_hello(struct hmaf_session *s, struct hmaf_hello *hello)
{
    size_t blob_len = 0;
    int ret;

    memset(hello, 0, sizeof(*hello));
    ret = hmaf__hello_set_token(hello, s->params.token);
    if (ret < 0) {
        return ret;
    }
    strncpy(hello->engine, s->ops->name, sizeof(hello->engine) - 1);
    ret = s->ops->local_blob(s->ctx, hello->engine_blob.data,
                             s->limits.max_blob, &blob_len);
    if (ret == 0 && blob_len > s->limits.max_blob) {
        hmaf__log_error("%s engine: bootstrap blob of %zu bytes exceeds its "
                        "max_blob %u",
                        s->ops->name, blob_len, s->limits.max_blob);
        ret = HMAF_ENOSPC;
    }
    hello->engine_blob.len = (uint16_t)blob_len;
    return ret;
}

/* The host's blobs are held to our engine's limit: its descriptors are
 * what our engine will parse. */
static int check_peer_blob(const struct hmaf_session *s, const char *what,
                           const struct hmaf_blob *b)
{
    if (b->len <= s->limits.max_blob) {
        return 0;
    }
    hmaf__log_error("welcome: %s of %u bytes exceeds the %s engine's "
                    "max_blob %u",
                    what, (unsigned)b->len, s->ops->name, s->limits.max_blob);
    return HMAF_EPROTO;
}

/* A refusal's status must be one we know, or the peer is talking garbage. */
static int refusal_code(int32_t status)
{
    switch (status) {
    case HMAF_EAUTH:
    case HMAF_EVERSION:
    case HMAF_EENGINE:
    case HMAF_ENOSPC:
    case HMAF_ENOMEM:
    case HMAF_EPROTO:
    case HMAF_ETIMEDOUT:
    case HMAF_EPIDNS:
        return status;
    default:
        return HMAF_EPROTO;
    }
}

static int receive_welcome(struct hmaf_session *s, uint64_t deadline,
                           struct hmaf_welcome *welcome_out)
{
    uint8_t buf[HMAF_MSG_MAX];
    struct hmaf_msg_hdr hdr;
    int ret = hmaf__channel_recv(&s->channel, buf, HMAF_HDR_SIZE, deadline);

    if (ret < 0) {
        return ret;
    }
    ret = hmaf__hdr_decode(buf, &hdr);
    if (ret < 0 || hdr.type != HMAF_MSG_WELCOME) {
        return HMAF_EPROTO;
    }
    if (hdr.status != 0) {
        return refusal_code(hdr.status);
    }
    if (hdr.version != HMAF_PROTOCOL_VERSION) {
        return HMAF_EVERSION;
    }
    if (hdr.body_len < HMAF_WELCOME_BODY_MIN ||
        hdr.body_len > HMAF_WELCOME_BODY_MAX) {
        return HMAF_EPROTO;
    }
    ret = hmaf__channel_recv(&s->channel, buf, hdr.body_len, deadline);
    if (ret == 0) {
        ret = hmaf__welcome_decode(buf, hdr.body_len, welcome_out);
    }
    if (ret == 0) {
        ret = check_peer_blob(s, "engine blob", &welcome_out->engine_blob);
    }
    if (ret == 0) {
        ret = check_peer_blob(s, "mailbox export",
                              &welcome_out->mailbox_export);
    }
    return ret;
}

/* The host refused us for another pid namespace: say what this side
 * sees, which is half the answer (the host's log has the other half). */
static void explain_pidns(struct hmaf_session *s)
{
    int host = hmaf__channel_peer_pid(&s->channel);
    int inner = host > 0 ? hmaf__pidns_inner_pid(host) : 0;

    if (host == HMAF_PEER_PID_HIDDEN) {
        hmaf__log_error("the host process is not visible in this pid "
                        "namespace (the unix channel's credentials name no "
                        "process), and the %s engine reaches it by pid: %s",
                        s->ops->name, HMAF_PIDNS_FIX);
    } else if (inner > 0 && inner != host) {
        hmaf__log_error("host pid %d runs in a pid namespace nested in this "
                        "one, where it is pid %d, and the %s engine needs "
                        "both sides to name a process alike: %s",
                        host, inner, s->ops->name, HMAF_PIDNS_FIX);
    } else {
        hmaf__log_error("the host says this process runs in another pid "
                        "namespace than its own: %s",
                        HMAF_PIDNS_FIX);
    }
}

int hmaf__bootstrap_dpu(struct hmaf_session *s, int timeout_ms,
                        struct hmaf_welcome *welcome_out)
{
    uint64_t deadline = hmaf__deadline_ns(timeout_ms);
    uint8_t buf[HMAF_MSG_MAX];
    struct hmaf_hello hello;
    size_t len;
    int ret = build_hello(s, &hello);

    if (ret < 0) {
        return ret;
    }
    len = hmaf__hello_encode(&hello, buf, sizeof(buf));
    ret = hmaf__channel_send(&s->channel, buf, len, deadline);
    if (ret == 0) {
        ret = receive_welcome(s, deadline, welcome_out);
    }
    if (ret == 0 && strcmp(welcome_out->engine, s->ops->name) != 0) {
        ret = HMAF_EENGINE;
    }
    if (ret < 0) {
        hmaf__log_error("handshake with host: %s", hmaf_strerror(ret));
    }
    if (ret == HMAF_EPIDNS) {
        explain_pidns(s);
    }
    return ret;
}
