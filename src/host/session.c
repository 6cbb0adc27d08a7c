/* Host side of a session: the handshake, the mailbox, holds, teardown.
 * Every function here runs with the agent lock held. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hmaf/error.h>

#include "host/agent_int.h"
#include "host/heap.h"
#include "proto/mailbox.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/wire.h"

#define SEND_TIMEOUT_MS 1000

int hmaf__agent_hello_body_len(const struct hmaf_msg_hdr *hdr)
{
    if (hdr->magic != HMAF_WIRE_MAGIC || hdr->type != HMAF_MSG_HELLO) {
        return HMAF_EPROTO;
    }
    if (hdr->version != HMAF_PROTOCOL_VERSION) {
        return HMAF_EVERSION;
    }
    if (hdr->status != 0 || hdr->body_len < HMAF_HELLO_BODY_MIN ||
        hdr->body_len > HMAF_HELLO_BODY_MAX) {
        return HMAF_EPROTO;
    }
    return (int)hdr->body_len;
}

void hmaf__agent_refuse(struct hmaf_agent *a, struct hmaf_channel *ch,
                        int why)
{
    uint8_t buf[HMAF_HDR_SIZE];
    uint64_t held_back;
    size_t len;

    /* Only codes a dpu side can act on cross the wire. ETIMEDOUT: its
     * HELLO did not arrive in time, or it waited longest of too many.
     * EPIDNS: the engine needs both sides in one pid namespace. */
    if (why != HMAF_EAUTH && why != HMAF_EVERSION && why != HMAF_EENGINE &&
        why != HMAF_ENOSPC && why != HMAF_ENOMEM && why != HMAF_ETIMEDOUT &&
        why != HMAF_EPIDNS) {
        why = HMAF_EPROTO;
    }
    len = hmaf__refusal_encode(why, buf);

    if (hmaf__log_allow(&a->refusal_log, &held_back)) {
        hmaf__log_warn("refused a session: %s (and %llu more since the "
                       "last such message)",
                       hmaf_strerror(why), (unsigned long long)held_back);
    }
    (void)hmaf__channel_send(ch, buf, len, hmaf__deadline_ns(SEND_TIMEOUT_MS));
    hmaf__channel_close(ch);
    a->stats.refused++;
    a->stats.last_refusal = why;
}

static int check_hello(const struct hmaf_agent *a,
                       const struct hmaf_hello *hello)
{
    uint8_t want[32] = {0};
    size_t want_len = strlen(a->token);

    memcpy(want, a->token, want_len);
    if (!hmaf__token_equal(hello->token, hello->token_len, want, want_len)) {
        return HMAF_EAUTH;
    }
    if (strcmp(hello->engine, a->ops->name) != 0) {
        return HMAF_EENGINE;
    }
    /* The dpu side is not trusted to keep to our engine's limit. */
    if (hello->engine_blob.len > a->max_blob) {
        hmaf__log_warn("hello: engine blob of %u bytes exceeds the %s "
                       "engine's max_blob %u",
                       (unsigned)hello->engine_blob.len, a->ops->name,
                       a->max_blob);
        return HMAF_EPROTO;
    }
    return 0;
}

/* A blob our own engine made, held to its limit before it is sent. */
static int check_own_blob(const struct hmaf_agent *a, const char *what,
                          size_t len)
{
    if (len <= a->max_blob) {
        return 0;
    }
    hmaf__log_error("%s engine: %s of %zu bytes exceeds its max_blob %u",
                    a->ops->name, what, len, a->max_blob);
    return HMAF_ENOSPC;
}

static void init_mailbox(struct agent_session *s, uint64_t epoch)
{
    struct hmaf_wire w = hmaf__wire(s->mbox, HMAF_MBOX_ACK_OFFSET);

    hmaf__wire_put_u32(&w, HMAF_MBOX_MAGIC);
    hmaf__wire_put_u32(&w, HMAF_MBOX_VERSION);
    hmaf__wire_put_u32(&w, s->nslots);
    hmaf__wire_put_u32(&w, HMAF_MBOX_SLOT_SIZE);
    hmaf__wire_put_u64(&w, s->id);
    hmaf__wire_put_u64(&w, epoch); /* at HMAF_MBOX_HEADER_EPOCH */
}

/* The mailbox lives in pages of its own, mapped for it and never from the
 * allocator: the dpu side may write it until it says it stopped, and a
 * grave must be able to make exactly these pages inaccessible. */
static int map_mailbox(struct agent_session *s)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *p;

    s->mbox_map_len = (s->mbox_len + page - 1) / page * page;
    p = mmap(NULL, s->mbox_map_len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        hmaf__log_error("mmap of a %zu-byte mailbox: %m", s->mbox_map_len);
        return HMAF_ENOMEM;
    }
    s->mbox = p; /* zero-filled */
    return 0;
}

/* Registered like any exposure. */
static int create_mailbox(struct hmaf_agent *a, struct agent_session *s)
{
    int ret;

    s->nslots = a->params.mailbox_slots;
    s->mbox_len = hmaf__mbox_size(s->nslots);
    ret = map_mailbox(s);
    if (ret < 0) {
        return ret;
    }
    init_mailbox(s, a->epoch);
    s->served_seq = calloc(s->nslots, sizeof(*s->served_seq));
    if (s->served_seq == NULL ||
        hmaf__engine_mem_create(a->ctx, (uint64_t)(uintptr_t)s->mbox,
                                s->mbox_len, HMAF_ACCESS_READ_WRITE,
                                &s->mbox_mem) < 0) {
        return HMAF_ENOMEM;
    }
    return 0;
}

/* Keep the pages reserved but inaccessible: a write the dpu side still
 * makes fails instead of landing in memory someone else got. A fresh
 * PROT_NONE mapping over them also frees their memory. */
static int tombstone(void *mbox, size_t len)
{
    void *p = mmap(mbox, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                   -1, 0);

    if (p == MAP_FAILED) {
        hmaf__log_error("mailbox at %p: cannot make it inaccessible: %m",
                        mbox);
        return -1;
    }
    return 0;
}

static void bury(struct hmaf_agent *a, struct agent_session *s)
{
    struct agent_grave *g;

    if (tombstone(s->mbox, s->mbox_map_len) < 0) {
        s->mbox = NULL; /* leak it rather than hand it back */
        return;
    }
    if (a->ngraves == a->params.max_sessions) {
        /* Cannot be (a grave holds its session's place); else one of them
         * would keep its reservation for good. */
        hmaf__channel_close(&a->graves[0].channel);
        a->graves[0] = a->graves[--a->ngraves];
    }
    g = &a->graves[a->ngraves++];
    g->channel = s->channel;
    g->mbox = s->mbox;
    g->len = s->mbox_map_len;
    s->channel = (struct hmaf_channel){.fd = -1};
    s->mbox = NULL;
}

void hmaf__agent_grave_free(struct hmaf_agent *a, size_t index)
{
    struct agent_grave *g = &a->graves[index];

    munmap(g->mbox, g->len);
    hmaf__channel_close(&g->channel);
    *g = a->graves[--a->ngraves];
}

void hmaf__agent_graves_fini(struct hmaf_agent *a)
{
    /* Those that stopped since the loop last looked go for good too. */
    for (size_t i = a->ngraves; i-- > 0;) {
        if (hmaf__channel_peer_closed(&a->graves[i].channel)) {
            hmaf__agent_grave_free(a, i);
        }
    }
    if (a->ngraves > 0) {
        hmaf__log_info("agent destroyed: %zu dpu side(s) never said they "
                       "stopped; their mailboxes stay reserved, "
                       "inaccessible", a->ngraves);
    }
    for (size_t i = 0; i < a->ngraves; i++) {
        hmaf__channel_close(&a->graves[i].channel);
    }
    a->ngraves = 0;
}

/* The mailbox's engine registration ends first: with an engine that
 * enforces revocation (doca, ucx) the dpu side can reach it no more, a
 * late write is refused by the engine, and its pages go back at once.
 * Otherwise (cma) they go to a grave while the dpu side may still be
 * writing them. */
static void free_session(struct hmaf_agent *a, struct agent_session *s,
                         int peer_stopped)
{
    hmaf__engine_mem_destroy(s->mbox_mem);
    hmaf__engine_ep_destroy(s->ep);
    if (s->mbox != NULL && !peer_stopped &&
        !(a->ops->flags & HMAF_ENGINE_ENFORCED)) {
        hmaf__channel_shutdown(&s->channel, 0);
        bury(a, s);
    }
    if (s->mbox != NULL) {
        munmap(s->mbox, s->mbox_map_len);
    }
    free(s->served_seq);
    if (s->holds != NULL) { /* not handed to the orphans: nothing held */
        hmaf__holds_fini(&s->holds->h);
        free(s->holds);
    }
    hmaf__channel_close(&s->channel);
    free(s);
}

static int build_welcome(struct hmaf_agent *a, const struct agent_session *s,
                         struct hmaf_welcome *w)
{
    size_t len = 0;
    int ret;

    memset(w, 0, sizeof(*w));
    strncpy(w->engine, a->ops->name, sizeof(w->engine) - 1);
    ret = a->ops->local_blob(a->ctx, w->engine_blob.data, a->max_blob, &len);
    if (ret == 0) {
        ret = check_own_blob(a, "bootstrap blob", len);
    }
    w->engine_blob.len = (uint16_t)len;
    w->session_id = s->id;
    w->mailbox_addr = s->mbox_mem->addr;
    w->mailbox_len = s->mbox_len;
    w->mailbox_slots = s->nslots;
    /* A quarter of the revocation wait: a session that keeps to it has
     * looked at the epoch, and finished a step, well before we give up. */
    w->lease_us = (uint32_t)a->params.revoke_wait_ms * 1000u / 4u;
    if (ret == 0) {
        ret = a->ops->mem_export(s->mbox_mem, w->mailbox_export.data,
                                 a->max_blob, &len);
    }
    if (ret == 0) {
        ret = check_own_blob(a, "mailbox export", len);
        w->mailbox_export.len = (uint16_t)len;
    }
    return ret;
}

static int send_welcome(struct hmaf_agent *a, struct agent_session *s)
{
    struct hmaf_welcome w;
    uint8_t buf[HMAF_MSG_MAX];
    size_t len;
    int ret = build_welcome(a, s, &w);

    if (ret < 0) {
        return ret;
    }
    len = hmaf__welcome_encode(&w, buf, sizeof(buf));
    return hmaf__channel_send(&s->channel, buf, len,
                              hmaf__deadline_ns(SEND_TIMEOUT_MS));
}

static long free_session_index(const struct hmaf_agent *a)
{
    for (size_t i = 0; i < a->params.max_sessions; i++) {
        if (a->sessions[i] == NULL) {
            return (long)i;
        }
    }
    return -1;
}

static int open_session(struct hmaf_agent *a, struct hmaf_channel *ch,
                        const struct hmaf_hello *hello,
                        struct agent_session **out)
{
    struct agent_session *s = calloc(1, sizeof(*s));
    int ret;

    if (s == NULL) {
        return HMAF_ENOMEM;
    }
    s->id = ++a->next_session_id;
    s->channel = *ch;
    s->holds = calloc(1, sizeof(*s->holds));
    ret = s->holds == NULL ? HMAF_ENOMEM : create_mailbox(a, s);
    if (ret == 0) {
        ret = hmaf__engine_ep_create(a->ctx,
                                     hmaf__channel_peer_pid(&s->channel),
                                     hello->engine_blob.data,
                                     hello->engine_blob.len, &s->ep);
    }
    if (ret == 0) {
        ret = send_welcome(a, s);
    }
    if (ret < 0) {
        /* The dpu side has no mailbox to write before its WELCOME. */
        s->channel = (struct hmaf_channel){.fd = -1}; /* still the caller's */
        free_session(a, s, 1);
        return ret;
    }
    *out = s;
    return 0;
}

int hmaf__agent_handle_hello(struct hmaf_agent *a, struct hmaf_channel *ch,
                             const uint8_t *msg, size_t len)
{
    struct hmaf_hello hello;
    struct agent_session *s = NULL;
    long slot = free_session_index(a);
    int ret = hmaf__hello_decode(msg + HMAF_HDR_SIZE, len - HMAF_HDR_SIZE,
                                 &hello);

    if (ret == 0) {
        ret = check_hello(a, &hello);
    }
    /* A grave holds its session's place: else a peer could make the
     * agent abandon reservations without end. */
    if (ret == 0 && (slot < 0 || a->stats.sessions_live + a->ngraves >=
                                     a->params.max_sessions)) {
        ret = HMAF_ENOSPC;
    }
    if (ret == 0) {
        ret = open_session(a, ch, &hello, &s);
    }
    if (ret == HMAF_ECONNRESET) {
        /* Gone before its WELCOME was out: nothing to refuse. */
        hmaf__log_info("a dpu side left during its handshake");
        hmaf__channel_close(ch);
        return ret;
    }
    if (ret < 0) {
        hmaf__agent_refuse(a, ch, ret);
        return ret;
    }
    a->sessions[slot] = s;
    a->stats.sessions_live++;
    a->stats.sessions_total++;
    hmaf__log_info("session %llu up", (unsigned long long)s->id);
    return 0;
}

void hmaf__agent_session_close(struct hmaf_agent *a, size_t index,
                               int peer_stopped)
{
    struct agent_session *s = a->sessions[index];

    /* One that stopped writes no more: what it left is whole. */
    if (peer_stopped) {
        hmaf__agent_serve_last_frees(a, s);
    }
    /* However many it holds: the agent gives them back bit by bit. */
    hmaf__agent_orphan_holds(a, s);
    /* Its blocks stay allocated and pass to the host (heap.h). */
    hmaf__heap_owner_gone(a->heap, s->id);
    hmaf__log_info("session %llu closed", (unsigned long long)s->id);
    free_session(a, s, peer_stopped);
    a->sessions[index] = NULL;
    a->stats.sessions_live--;
    a->stats.sessions_closed++;
}
