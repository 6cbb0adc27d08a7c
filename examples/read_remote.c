/*
 * The smallest useful HMAF program: connect to a host agent, find a root
 * it published, and hex-dump the root's first bytes.
 *
 *   read_remote ADDRESS TOKEN ROOT [BYTES]
 *   read_remote unix:/tmp/app.sock secret table 32
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hmaf/hmaf.h>
#include "help.h"

static void hex_dump(const unsigned char *buf, size_t len, uint64_t addr)
{
    for (size_t i = 0; i < len; i++) {
        if (i % 16 == 0) {
            printf("%s%#014llx:", i > 0 ? "\n" : "",
                   (unsigned long long)(addr + i));
        }
        printf(" %02x", buf[i]);
    }
    printf("\n");
}

/* Lookup and read; the root's length bounds what we may ask for. */
static int dump_root(hmaf_session_t *session, const char *root, size_t want)
{
    uint64_t addr;
    size_t len;
    unsigned char *buf;
    int ret = hmaf_session_lookup(session, root, &addr, &len);

    if (ret < 0 || len == 0) {
        return ret;
    }
    len = want < len ? want : len;
    buf = malloc(len);
    ret =
        buf == NULL ? HMAF_ENOMEM : hmaf_session_read(session, buf, addr, len);
    if (ret == 0) {
        hex_dump(buf, len, addr);
    }
    free(buf);
    return ret;
}

static const char usage_text[] =
    "usage: read_remote ADDRESS TOKEN ROOT [BYTES]\n"
    "Connects to the host agent at ADDRESS (unix:PATH or tcp:HOST:PORT) with\n"
    "TOKEN, looks ROOT up and prints its first BYTES (default 64) in hex.\n";

int main(int argc, char **argv)
{
    hmaf_session_params_t params;
    hmaf_session_t *session = NULL;
    size_t want = argc > 4 ? strtoul(argv[4], NULL, 0) : 64;
    int ret;

    if (asked_help(argc, argv)) {
        return print_usage(usage_text, 1);
    }
    if (argc < 4 || argc > 5 || want == 0) {
        return print_usage(usage_text, 0);
    }
    hmaf_session_params_init(&params);
    params.address = argv[1];
    params.token = argv[2];
    ret = hmaf_session_create(&params, &session);
    if (ret == 0) {
        ret = dump_root(session, argv[3], want);
    }
    if (ret < 0) {
        fprintf(stderr, "read_remote: %s: %s\n", hmaf_err_name(ret),
                hmaf_strerror(ret));
    }
    hmaf_session_destroy(session);
    return ret == 0 ? 0 : 1;
}
