/*
 * RESP2, the Redis wire protocol: an incremental request parser and the
 * reply encoders the kv servers need.
 *
 * The parser never copies: a parsed command's arguments point into the
 * caller's input buffer, which must stay put until the command is done.
 * It takes whatever bytes have arrived; a command cut anywhere is
 * RESP_MORE, and parsing it again once more bytes came gives the same
 * command (the servers keep unparsed bytes and retry).
 */
#ifndef KV_RESP_H
#define KV_RESP_H

#include <stddef.h>
#include <stdint.h>

#define RESP_VALUE_MAX   (1u << 20)            /* a value: 1 MiB */
#define RESP_BULK_MAX    (RESP_VALUE_MAX + 4096) /* any bulk string */
#define RESP_ARGS_MAX    (1u << 16)            /* arguments of one command */
#define RESP_INLINE_MAX  (64u << 10)           /* an inline command's line */
#define RESP_ARGS_INLINE 16                    /* before argv goes to the heap */

enum resp_status {
    RESP_OK = 1,    /* one command parsed */
    RESP_MORE = 0,  /* not a whole command yet */
    RESP_ERROR = -1 /* malformed or over a limit: answer and close */
};

struct resp_cmd {
    size_t argc;
    const char **argv;
    size_t *argl;
    /* small commands use these, larger ones malloc'ed arrays */
    const char *argv_inline[RESP_ARGS_INLINE];
    size_t argl_inline[RESP_ARGS_INLINE];
};

/* A growable byte buffer: a client's input or output. */
struct resp_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Parse one command from in[0, len). RESP_OK: *used_out bytes made it and
 * cmd holds it (resp_cmd_release() it); RESP_ERROR: *why_out says why. */
int resp_parse(const char *in, size_t len, struct resp_cmd *cmd,
               size_t *used_out, const char **why_out);
void resp_cmd_release(struct resp_cmd *cmd);

/* Reply encoders: append to out. They return 0, or -1 when out of memory
 * (the buffer is then unchanged past its old length). */
int resp_buf_reserve(struct resp_buf *b, size_t more);
int resp_buf_put(struct resp_buf *b, const void *p, size_t len);
void resp_buf_consume(struct resp_buf *b, size_t len); /* drop a prefix */
void resp_buf_release(struct resp_buf *b);
int resp_simple(struct resp_buf *b, const char *s);   /* +s */
int resp_error(struct resp_buf *b, const char *s);    /* -s */
int resp_integer(struct resp_buf *b, int64_t v);      /* :v */
int resp_bulk(struct resp_buf *b, const void *p, size_t len);
int resp_nil(struct resp_buf *b);                     /* $-1 */
int resp_array(struct resp_buf *b, size_t n);         /* *n, then n items */

#endif
