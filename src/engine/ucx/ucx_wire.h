/*
 * The ucx engine's own protocol over UCX active messages (docs/engines.md,
 * "ucx"): what the dpu side asks of the host's worker, what the host
 * answers, and the export blob that names a registration. Included by the
 * engine and by its hostile-peer test, which forges these.
 *
 * Both sides are the same build of the engine: words are host-endian,
 * fields fixed-size, and every message is copied out of UCX's buffer
 * before it is read (a header has no alignment of its own).
 */
#ifndef HMAF_ENGINE_UCX_WIRE_H
#define HMAF_ENGINE_UCX_WIRE_H

#include <stdint.h>

/* Active message ids: requests go to the host, replies to the dpu side. */
#define UCX_AM_REQUEST 0x48
#define UCX_AM_REPLY   0x49

/* The export blob of one registration. key is random, chosen per
 * registration: a peer that never saw the blob cannot name it, and one
 * that kept it after the registration ended names nothing. */
#define UCX_BLOB_MAGIC 0x78637568u /* "hucx" */
struct ucx_blob {
    uint32_t magic;
    uint32_t access; /* hmaf_access_t */
    uint64_t key;
    uint64_t addr;
    uint64_t len;
};

enum ucx_op {
    UCX_OP_READ = 1,   /* reply carries len bytes */
    UCX_OP_WRITE = 2,  /* request carries len bytes */
    UCX_OP_ATOMIC = 3, /* len is the word's size, 4 or 8 */
    UCX_OP_HELLO = 4,  /* key is the session's nonce: binds the connection */
};

/* Dpu -> host, the header of a UCX_AM_REQUEST; a write's bytes are the
 * message's data. */
struct ucx_req_hdr {
    uint64_t id; /* echoed in the reply */
    uint64_t key;
    uint64_t addr;
    uint64_t len;
    uint64_t operand;  /* atomics */
    uint64_t compare;  /* atomics: CAS */
    uint8_t op;        /* enum ucx_op */
    uint8_t atomic_op; /* hmaf_atomic_op_t */
    uint8_t pad[6];
};

/* What the host found. */
enum ucx_status {
    UCX_ST_OK = 0,
    UCX_ST_NOKEY = 1,  /* no live registration has this key */
    UCX_ST_RANGE = 2,  /* outside the registration, or wraps round */
    UCX_ST_ACCESS = 3, /* a write or atomic to a read-only registration */
    UCX_ST_PROTO = 4,  /* malformed: unknown op, bad length, size, align */
    UCX_ST_NOMEM = 5,  /* the host is out of memory (or of bounce room) */
};

/* Host -> dpu, the header of a UCX_AM_REPLY; a read's bytes are the
 * message's data. */
struct ucx_reply_hdr {
    uint64_t id;
    uint64_t old;    /* atomics: the word before, zero-extended */
    uint32_t status; /* enum ucx_status */
    uint32_t pad;
};

/* The dpu side's bootstrap blob: a random nonce, which reaches the host
 * over the session's authenticated channel. The dpu side's first request
 * on its connection is UCX_OP_HELLO with it: the host serves a connection
 * only once it is bound so to a live session, one connection a session,
 * and closes it when the session ends. */
#define UCX_DPU_MAGIC 0x64637568u /* "hucd" */
struct ucx_dpu_blob {
    uint32_t magic;
    uint32_t pad;
    uint64_t nonce;
};

/* The host's bootstrap blob: where its listener is. A header, then count
 * IPv4 addresses (network order, 4 bytes each) that the dpu side tries in
 * turn on port (network order): the host's own addresses, loopback last.
 * The listener takes every local address (INADDR_ANY). */
#define UCX_CONN_MAGIC 0x48434331u /* "HCC1" */
struct ucx_conn_blob {
    uint32_t magic;
    uint16_t port;  /* network order */
    uint16_t count; /* addresses that follow */
};

#endif
