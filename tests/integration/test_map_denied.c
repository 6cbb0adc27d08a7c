/*
 * Mapping mode where userfaultfd is denied — run under seccomp_run
 * --deny userfaultfd, as under docker's default seccomp profile:
 * hmaf_map_create returns HMAF_EPERM (not HMAF_ENOTSUP, which means the
 * kernel has no userfaultfd), and its log line names the cause. The
 * session itself (cma) is unaffected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

int main(void)
{
    char log_path[] = "/tmp/hmaf-map-denied-XXXXXX", text[2048] = {0};
    hmaf_map_t *map = (hmaf_map_t *)1;
    hmaf_map_params_t mp;
    uint64_t base = 0;
    struct target t;
    hmaf_session_t *s;
    int log_fd, saved;

    log_fd = mkstemp(log_path);
    CHECK(log_fd >= 0);
    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &base, NULL));
    fflush(stderr);
    saved = dup(2);
    CHECK(saved >= 0 && dup2(log_fd, 2) == 2);
    hmaf_map_params_init(&mp);
    mp.flags = HMAF_MAP_ANYWHERE; /* the error under test, not EEXIST */
    CHECK_ERR(hmaf_map_create(s, base, 1 << 20, &mp, &map), HMAF_EPERM);
    CHECK(dup2(saved, 2) == 2);
    CHECK(map == (hmaf_map_t *)1); /* not written on failure */
    CHECK(pread(log_fd, text, sizeof(text) - 1, 0) > 0);
    printf("hmaf_map_create said: %s", text);
    CHECK(strstr(text, "userfaultfd denied (seccomp") != NULL);
    CHECK(strstr(text, "allow userfaultfd in the seccomp profile") != NULL);
    /* the session still reads */
    {
        uint8_t b = 0;

        CHECK_OK(hmaf_session_read(s, &b, base, 1));
        CHECK_EQ(b, target_pattern(0, 1));
    }
    hmaf_session_destroy(s);
    close(log_fd);
    unlink(log_path);
    CHECK_EQ(target_stop(&t), 0);
    printf("test_map_denied: ok\n");
    return 0;
}
