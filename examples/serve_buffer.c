/*
 * The host half of the smallest pair: expose a buffer, publish it as a
 * root, and serve dpu sides until told to stop. read_remote is the other
 * half:
 *
 *   serve_buffer unix:/tmp/app.sock secret &
 *   read_remote unix:/tmp/app.sock secret greeting 32
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <hmaf/hmaf.h>
#include "help.h"

static const char usage_text[] =
    "usage: serve_buffer ADDRESS TOKEN [ROOT]\n"
    "Exposes a 4 KiB buffer read-only, publishes it as ROOT (default\n"
    "greeting), and serves dpu sides at ADDRESS (unix:PATH or\n"
    "tcp:HOST:PORT) with TOKEN until SIGINT or SIGTERM.\n";

static char buffer[4096] = "hello from serve_buffer";

static int serve(const char *address, const char *token, const char *root,
                 const sigset_t *stop)
{
    hmaf_agent_params_t params;
    hmaf_agent_t *agent = NULL;
    int sig, ret;

    hmaf_agent_params_init(&params);
    params.token = token;
    ret = hmaf_agent_create(&params, &agent); /* its thread serves */
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, buffer, sizeof(buffer),
                                HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, root, buffer, sizeof(buffer));
    }
    if (ret == 0) {
        ret = hmaf_agent_listen(agent, address);
    }
    if (ret == 0) {
        printf("serve_buffer: serving %s at %s\n", root,
               hmaf_agent_address(agent));
        fflush(stdout);
        sigwait(stop, &sig);
    }
    hmaf_agent_destroy(agent);
    return ret;
}

int main(int argc, char **argv)
{
    sigset_t stop;
    int ret;

    if (asked_help(argc, argv)) {
        return print_usage(usage_text, 1);
    }
    if (argc < 3 || argc > 4) {
        return print_usage(usage_text, 0);
    }
    /* Blocked before the agent's thread starts, so that it inherits the
     * mask and the signals come to sigwait. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    ret = serve(argv[1], argv[2], argc > 3 ? argv[3] : "greeting", &stop);
    if (ret < 0) {
        fprintf(stderr, "serve_buffer: %s: %s\n", hmaf_err_name(ret),
                hmaf_strerror(ret));
        return 1;
    }
    return 0;
}
