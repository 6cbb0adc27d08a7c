/* The kv example's RESP2 parser: pipelined and cut-up input, binary
 * values, limits, malformed input, and the reply encoders. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "resp.h"

static int parse(const char *in, size_t len, struct resp_cmd *cmd,
                 size_t *used)
{
    const char *why = NULL;
    int ret = resp_parse(in, len, cmd, used, &why);

    CHECK(ret != RESP_ERROR || why != NULL);
    return ret;
}

static int arg_eq(const struct resp_cmd *cmd, size_t i, const char *s,
                  size_t len)
{
    return cmd->argl[i] == len && memcmp(cmd->argv[i], s, len) == 0;
}

static void pipelined(void)
{
    static const char in[] = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
                             "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$4\r\nx\r\ny\r\n"
                             "PING\r\n"
                             "*1\r\n$4\r\nPI";
    size_t len = sizeof(in) - 1, pos = 0, used;
    struct resp_cmd cmd;

    CHECK_EQ(parse(in + pos, len - pos, &cmd, &used), RESP_OK);
    CHECK(cmd.argc == 2 && arg_eq(&cmd, 0, "GET", 3) && arg_eq(&cmd, 1, "a", 1));
    resp_cmd_release(&cmd);
    pos += used;
    CHECK_EQ(parse(in + pos, len - pos, &cmd, &used), RESP_OK);
    /* binary-safe: the value holds CRLF */
    CHECK(cmd.argc == 3 && arg_eq(&cmd, 2, "x\r\ny", 4));
    resp_cmd_release(&cmd);
    pos += used;
    CHECK_EQ(parse(in + pos, len - pos, &cmd, &used), RESP_OK);
    CHECK(cmd.argc == 1 && arg_eq(&cmd, 0, "PING", 4));
    resp_cmd_release(&cmd);
    pos += used;
    CHECK_EQ(parse(in + pos, len - pos, &cmd, &used), RESP_MORE);
}

/* Every cut of a command is "more", the whole is the command. */
static void every_prefix(void)
{
    static const char in[] = "*3\r\n$3\r\nSET\r\n$10\r\nkey:000001\r\n$0\r\n\r\n";
    size_t len = sizeof(in) - 1, used;
    struct resp_cmd cmd;

    for (size_t cut = 0; cut < len; cut++) {
        CHECK_EQ(parse(in, cut, &cmd, &used), RESP_MORE);
    }
    CHECK_EQ(parse(in, len, &cmd, &used), RESP_OK);
    CHECK_EQ(used, len);
    CHECK(arg_eq(&cmd, 1, "key:000001", 10) && cmd.argl[2] == 0);
    resp_cmd_release(&cmd);
}

static void many_args(void)
{
    char in[4096];
    size_t len = (size_t)snprintf(in, sizeof(in), "*100\r\n"), used;
    struct resp_cmd cmd;

    for (int i = 0; i < 100; i++) {
        len += (size_t)snprintf(in + len, sizeof(in) - len, "$2\r\n%02d\r\n", i);
    }
    CHECK_EQ(parse(in, len, &cmd, &used), RESP_OK);
    CHECK_EQ(cmd.argc, 100);
    CHECK(arg_eq(&cmd, 99, "99", 2));
    resp_cmd_release(&cmd);
}

static void inline_commands(void)
{
    struct resp_cmd cmd;
    size_t used;

    CHECK_EQ(parse("GET  a\n", 7, &cmd, &used), RESP_OK);
    CHECK(cmd.argc == 2 && arg_eq(&cmd, 1, "a", 1) && used == 7);
    resp_cmd_release(&cmd);
    CHECK_EQ(parse("\r\n", 2, &cmd, &used), RESP_OK);
    CHECK_EQ(cmd.argc, 0);
    CHECK_EQ(parse("PIN", 3, &cmd, &used), RESP_MORE);
}

static void malformed(void)
{
    static const char *bad[] = {
        "*x\r\n",
        "*-1\r\n",
        "*2\r\n+a\r\n",
        "*1\r\n$3\r\nabcde",          /* bulk longer than said */
        "*1\r\n$99999999999999999999\r\n",
        "*1\r\n$2000000\r\n",         /* over the bulk limit */
        "*100000000\r\n",             /* over the argument limit */
        "*1\r\n$-5\r\n",
        "*1\n",
    };
    struct resp_cmd cmd;
    size_t used;
    char *line;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], strlen(bad[i]), &cmd, &used) != RESP_ERROR) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            exit(1);
        }
    }
    /* an inline line that never ends */
    line = malloc(RESP_INLINE_MAX + 1);
    CHECK(line != NULL);
    memset(line, 'a', RESP_INLINE_MAX + 1);
    CHECK_EQ(parse(line, RESP_INLINE_MAX + 1, &cmd, &used), RESP_ERROR);
    free(line);
}

/* Random bytes and mutated commands: never a crash, never past the end. */
static void garbage(void)
{
    static const char seed[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
    char buf[64];
    struct resp_cmd cmd;

    srand(12);
    for (int round = 0; round < 200000; round++) {
        size_t len = (size_t)(rand() % (int)sizeof(buf)), used = 0;
        int ret;

        memcpy(buf, seed, sizeof(seed) - 1);
        for (int k = rand() % 4; k >= 0; k--) {
            buf[rand() % (int)sizeof(buf)] = (char)rand();
        }
        ret = parse(buf, len, &cmd, &used);
        if (ret == RESP_OK) {
            CHECK(used > 0 && used <= len);
            for (size_t i = 0; i < cmd.argc; i++) {
                CHECK(cmd.argv[i] >= buf &&
                      cmd.argv[i] + cmd.argl[i] <= buf + len);
            }
            resp_cmd_release(&cmd);
        }
    }
}

static void encoders(void)
{
    struct resp_buf b = {0};
    static const char want[] = "+OK\r\n-ERR x\r\n:-42\r\n$3\r\na\0b\r\n$-1\r\n*2\r\n";

    CHECK_OK(resp_simple(&b, "OK"));
    CHECK_OK(resp_error(&b, "ERR x"));
    CHECK_OK(resp_integer(&b, -42));
    CHECK_OK(resp_bulk(&b, "a\0b", 3));
    CHECK_OK(resp_nil(&b));
    CHECK_OK(resp_array(&b, 2));
    CHECK_EQ(b.len, sizeof(want) - 1);
    CHECK(memcmp(b.data, want, b.len) == 0);
    resp_buf_consume(&b, 5);
    CHECK(memcmp(b.data, "-ERR", 4) == 0);
    resp_buf_release(&b);
}

int main(void)
{
    pipelined();
    every_prefix();
    many_args();
    inline_commands();
    malformed();
    garbage();
    encoders();
    return 0;
}
