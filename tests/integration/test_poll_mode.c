/* An agent without its own thread, driven by hmaf_agent_poll() from the
 * host application's loop, serves sessions like a threaded one. */
#include <string.h>

#include "check.h"
#include "target.h"

int main(void)
{
    struct target t;
    hmaf_session_t *s;
    uint64_t buf;
    uint8_t tmp[4096];
    hmaf_agent_params_t p;
    hmaf_agent_t *threaded;

    hmaf_agent_params_init(&p);
    CHECK_OK(hmaf_agent_create(&p, &threaded));
    CHECK_ERR(hmaf_agent_poll(threaded, 0), HMAF_EBUSY);
    CHECK_ERR(hmaf_agent_poll(NULL, 0), HMAF_EINVAL);
    hmaf_agent_destroy(threaded);

    target_start_standard_mode(&t, 0);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_read(s, tmp, buf + STD_SPLIT - 2048, sizeof(tmp)));
    for (size_t i = 0; i < sizeof(tmp); i++) {
        CHECK_EQ(tmp[i], target_pattern(STD_SPLIT - 2048 + i, 1));
    }
    target_fill(tmp, sizeof(tmp), 64, 2);
    CHECK_OK(hmaf_session_write(s, buf + 64, tmp, sizeof(tmp)));
    memset(tmp, 0, sizeof(tmp));
    CHECK_OK(hmaf_session_read(s, tmp, buf + 64, sizeof(tmp)));
    CHECK_EQ(tmp[100], target_pattern(164, 2));
    CHECK_OK(hmaf_session_ping(s));
    CHECK_EQ(target_command(&t, 's'), 1);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_poll_mode: ok\n");
    return 0;
}
