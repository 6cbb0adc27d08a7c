/*
 * Shared by the libFuzzer harnesses: a failed invariant aborts (libFuzzer
 * then saves the input and prints the stack), a cursor over the fuzz input,
 * and, for the harnesses that drive an in-process agent, a worker thread
 * that makes dpu-side calls while the calling thread polls the agent.
 */
#ifndef HMAF_FUZZ_H
#define HMAF_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <hmaf/hmaf.h>

#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant (%s) broken: ", __FILE__,        \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Reads past the end of the input yield zeros. */
struct fuzz_in {
    const uint8_t *p;
    size_t left;
};

static inline int fuzz_more(const struct fuzz_in *in)
{
    return in->left > 0;
}

static inline uint64_t fuzz_take_uint(struct fuzz_in *in, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n && in->left > 0; i++, in->p++, in->left--) {
        v |= (uint64_t)in->p[0] << (8 * i);
    }
    return v;
}

#define fuzz_u8(in)  ((uint8_t)fuzz_take_uint((in), 1))
#define fuzz_u16(in) ((uint16_t)fuzz_take_uint((in), 2))
#define fuzz_u32(in) ((uint32_t)fuzz_take_uint((in), 4))
#define fuzz_u64(in) fuzz_take_uint((in), 8)

/* Up to n bytes into dst, the rest of dst's n zeroed; how many were real. */
size_t fuzz_take_bytes(struct fuzz_in *in, void *dst, size_t n);

/* Default log level "off" unless HMAF_LOG says otherwise: refusals and
 * malformed requests are the normal case here. */
void fuzz_quiet_logs(void);

/* Run fn(arg) on a worker thread while this thread drives the agent with
 * hmaf_agent_poll(agent, 0): a dpu-side call in this process needs someone
 * to serve it. Returns fn's result; aborts when fn takes longer than
 * timeout_ms (the agent stopped answering). */
typedef int (*fuzz_job_fn)(void *arg);
int fuzz_beside_agent(hmaf_agent_t *agent, fuzz_job_fn fn, void *arg,
                      int timeout_ms);

/* HMAF_FUZZ_TRACE=1: the harnesses say what each input did (with -runs=0
 * on a corpus: what each seed exercises). */
extern int fuzz_trace;
#define FUZZ_TRACE(...)                                                        \
    do {                                                                       \
        if (fuzz_trace) {                                                      \
            fprintf(stderr, __VA_ARGS__);                                      \
        }                                                                      \
    } while (0)

/* Open fds of this process but pipes (see fuzz_util.c); with show, every
 * fd is listed on stderr. */
int fuzz_count_fds(int show);

#endif
