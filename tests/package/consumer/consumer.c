/* The smallest program of one's own: a host agent exposes a buffer, and a
 * session in the same process reads it back. Built by consume.sh against
 * an installed libhmaf, with pkg-config and with CMake. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <hmaf/hmaf.h>

int main(int argc, char **argv)
{
    static char buf[64] = "hello from the host";
    char address[128], got[64] = {0};
    hmaf_agent_params_t ap;
    hmaf_session_params_t sp;
    hmaf_agent_t *agent = NULL;
    hmaf_session_t *s = NULL;
    uint64_t addr = 0;
    int ret;

    if (strcmp(hmaf_version(), argc > 1 ? argv[1] : "") != 0 ||
        hmaf_version_number() != HMAF_VERSION_NUMBER) {
        fprintf(stderr, "consumer: library %s, headers %d.%d.%d\n",
                hmaf_version(), HMAF_VERSION_MAJOR, HMAF_VERSION_MINOR,
                HMAF_VERSION_PATCH);
        return 1;
    }
    snprintf(address, sizeof(address), "unix:/tmp/hmaf-consumer-%d",
             (int)getpid());
    hmaf_agent_params_init(&ap);
    ap.address = address;
    ap.token = "consumer";
    hmaf_session_params_init(&sp);
    sp.address = address;
    sp.token = "consumer";
    ret = hmaf_agent_create(&ap, &agent);
    if (ret == 0) {
        ret = hmaf_agent_expose(agent, buf, sizeof(buf), HMAF_ACCESS_READ);
    }
    if (ret == 0) {
        ret = hmaf_agent_publish(agent, "buf", buf, sizeof(buf));
    }
    if (ret == 0) {
        ret = hmaf_session_create(&sp, &s);
    }
    if (ret == 0) {
        ret = hmaf_session_lookup(s, "buf", &addr, NULL);
    }
    if (ret == 0) {
        ret = hmaf_session_read(s, got, addr, sizeof(got));
    }
    hmaf_session_destroy(s);
    hmaf_agent_destroy(agent);
    if (ret != 0 || strcmp(got, buf) != 0) {
        fprintf(stderr, "consumer: %s\n", hmaf_strerror(ret));
        return 1;
    }
    printf("consumer: libhmaf %s read \"%s\"\n", hmaf_version(), got);
    return 0;
}
