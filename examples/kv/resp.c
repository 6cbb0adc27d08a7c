#include "resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal after a type byte, up to "\r\n". RESP_MORE when the line is
 * not complete, RESP_ERROR when it is not a number in [min, max]. */
static int parse_line_int(const char *in, size_t len, size_t *pos,
                          long long min, long long max, long long *out)
{
    size_t i = *pos;
    int negative = 0;
    long long v = 0;
    size_t digits = 0;

    if (i < len && in[i] == '-') {
        negative = 1;
        i++;
    }
    for (; i < len && in[i] >= '0' && in[i] <= '9'; i++) {
        if (++digits > 18) {
            return RESP_ERROR;
        }
        v = v * 10 + (in[i] - '0');
    }
    if (i == len || (i + 1 == len && in[i] == '\r')) {
        return digits < 20 ? RESP_MORE : RESP_ERROR;
    }
    if (digits == 0 || in[i] != '\r' || in[i + 1] != '\n') {
        return RESP_ERROR;
    }
    v = negative ? -v : v;
    if (v < min || v > max) {
        return RESP_ERROR;
    }
    *out = v;
    *pos = i + 2;
    return RESP_OK;
}

static int cmd_alloc(struct resp_cmd *cmd, size_t argc)
{
    cmd->argc = 0;
    cmd->argv = cmd->argv_inline;
    cmd->argl = cmd->argl_inline;
    if (argc <= RESP_ARGS_INLINE) {
        return 0;
    }
    cmd->argv = malloc(argc * sizeof(*cmd->argv));
    cmd->argl = malloc(argc * sizeof(*cmd->argl));
    if (cmd->argv == NULL || cmd->argl == NULL) {
        resp_cmd_release(cmd);
        return -1;
    }
    return 0;
}

void resp_cmd_release(struct resp_cmd *cmd)
{
    if (cmd->argv != cmd->argv_inline) {
        free((void *)cmd->argv);
    }
    if (cmd->argl != cmd->argl_inline) {
        free(cmd->argl);
    }
    cmd->argv = cmd->argv_inline;
    cmd->argl = cmd->argl_inline;
    cmd->argc = 0;
}

/* "*N\r\n" then N times "$L\r\n<L bytes>\r\n". */
static int parse_multibulk(const char *in, size_t len, struct resp_cmd *cmd,
                           size_t *used_out, const char **why_out)
{
    size_t pos = 1;
    long long argc, arg_len;
    int ret = parse_line_int(in, len, &pos, 0, RESP_ARGS_MAX, &argc);

    if (ret != RESP_OK) {
        *why_out = "Protocol error: invalid multibulk length";
        return ret;
    }
    if (cmd_alloc(cmd, (size_t)argc) < 0) {
        *why_out = "out of memory";
        return RESP_ERROR;
    }
    for (long long i = 0; i < argc; i++) {
        if (pos == len) {
            goto more;
        }
        if (in[pos] != '$') {
            *why_out = "Protocol error: expected '$'";
            goto err;
        }
        pos++;
        ret = parse_line_int(in, len, &pos, 0, RESP_BULK_MAX, &arg_len);
        if (ret == RESP_MORE) {
            goto more;
        }
        if (ret != RESP_OK) {
            *why_out = "Protocol error: invalid bulk length";
            goto err;
        }
        if (len - pos < (size_t)arg_len + 2) {
            goto more;
        }
        if (in[pos + arg_len] != '\r' || in[pos + arg_len + 1] != '\n') {
            *why_out = "Protocol error: bulk string not followed by CRLF";
            goto err;
        }
        cmd->argv[cmd->argc] = in + pos;
        cmd->argl[cmd->argc++] = (size_t)arg_len;
        pos += (size_t)arg_len + 2;
    }
    *used_out = pos;
    return RESP_OK;
more:
    resp_cmd_release(cmd);
    return RESP_MORE;
err:
    resp_cmd_release(cmd);
    return RESP_ERROR;
}

/* A line of words separated by blanks (telnet, "redis-cli" piping). */
static int parse_inline(const char *in, size_t len, struct resp_cmd *cmd,
                        size_t *used_out, const char **why_out)
{
    const char *nl = memchr(in, '\n', len < RESP_INLINE_MAX ? len
                                                            : RESP_INLINE_MAX);
    size_t end, words = 0;

    if (nl == NULL) {
        if (len >= RESP_INLINE_MAX) {
            *why_out = "Protocol error: too big inline request";
            return RESP_ERROR;
        }
        return RESP_MORE;
    }
    end = (size_t)(nl - in);
    if (end > 0 && in[end - 1] == '\r') {
        end--;
    }
    for (size_t i = 0; i < end; i++) {
        words += in[i] != ' ' && (i == 0 || in[i - 1] == ' ');
    }
    if (cmd_alloc(cmd, words) < 0) {
        *why_out = "out of memory";
        return RESP_ERROR;
    }
    for (size_t i = 0; i < end; i++) {
        if (in[i] != ' ' && (i == 0 || in[i - 1] == ' ')) {
            size_t j = i;
            while (j < end && in[j] != ' ') {
                j++;
            }
            cmd->argv[cmd->argc] = in + i;
            cmd->argl[cmd->argc++] = j - i;
        }
    }
    *used_out = (size_t)(nl - in) + 1;
    return RESP_OK;
}

int resp_parse(const char *in, size_t len, struct resp_cmd *cmd,
               size_t *used_out, const char **why_out)
{
    cmd->argc = 0;
    cmd->argv = cmd->argv_inline;
    cmd->argl = cmd->argl_inline;
    if (len == 0) {
        return RESP_MORE;
    }
    if (in[0] == '*') {
        return parse_multibulk(in, len, cmd, used_out, why_out);
    }
    return parse_inline(in, len, cmd, used_out, why_out);
}

int resp_buf_reserve(struct resp_buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    if (b->cap - b->len >= more) {
        return 0;
    }
    while (cap - b->len < more) {
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int resp_buf_put(struct resp_buf *b, const void *p, size_t len)
{
    if (len == 0) {
        return 0; /* an empty buffer may have no data to copy to */
    }
    if (resp_buf_reserve(b, len) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return 0;
}

void resp_buf_consume(struct resp_buf *b, size_t len)
{
    if (len == 0) {
        return; /* also: a buffer never used has no data to move */
    }
    memmove(b->data, b->data + len, b->len - len);
    b->len -= len;
}

void resp_buf_release(struct resp_buf *b)
{
    free(b->data);
    *b = (struct resp_buf){0};
}

static int put_line(struct resp_buf *b, char type, const char *s, size_t len)
{
    if (resp_buf_reserve(b, len + 3) < 0) {
        return -1;
    }
    b->data[b->len++] = type;
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len++] = '\r';
    b->data[b->len++] = '\n';
    return 0;
}

static int put_number(struct resp_buf *b, char type, long long v)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%lld", v);

    return put_line(b, type, digits, (size_t)n);
}

int resp_simple(struct resp_buf *b, const char *s)
{
    return put_line(b, '+', s, strlen(s));
}

int resp_error(struct resp_buf *b, const char *s)
{
    return put_line(b, '-', s, strlen(s));
}

int resp_integer(struct resp_buf *b, int64_t v)
{
    return put_number(b, ':', (long long)v);
}

int resp_nil(struct resp_buf *b)
{
    return put_line(b, '$', "-1", 2);
}

int resp_array(struct resp_buf *b, size_t n)
{
    return put_number(b, '*', (long long)n);
}

int resp_bulk(struct resp_buf *b, const void *p, size_t len)
{
    size_t old = b->len;

    if (resp_buf_reserve(b, len + 32) < 0 ||
        put_number(b, '$', (long long)len) < 0) {
        return -1;
    }
    if (resp_buf_put(b, p, len) < 0 || resp_buf_put(b, "\r\n", 2) < 0) {
        b->len = old;
        return -1;
    }
    return 0;
}
