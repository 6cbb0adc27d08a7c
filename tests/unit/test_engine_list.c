/*
 * hmaf_engine_list (engine.h): the argument checks, the count asked for
 * with a buffer too small, and the entries: every built engine, in the
 * registry's order, the default first, usable here with no reason (this
 * process runs under no filter; integration.info_seccomp covers a cma
 * that is not usable).
 */
#include <string.h>

#include <hmaf/hmaf.h>

#include "check.h"
#include "engine/engine.h"

static void test_arguments(void)
{
    hmaf_engine_info_t e[2];
    size_t n = 12345;

    memset(e, 0, sizeof(e));
    CHECK_ERR(hmaf_engine_list(e, 2, NULL), HMAF_EINVAL);
    CHECK_ERR(hmaf_engine_list(NULL, 1, &n), HMAF_EINVAL);
    e[0].size = sizeof(e[0]) - 1; /* not a size this library knows */
    CHECK_ERR(hmaf_engine_list(e, 2, &n), HMAF_EINVAL);
    CHECK_EQ(n, 12345u); /* nothing written on EINVAL */
}

static size_t built_engines(void)
{
    size_t n = 0;

    while (hmaf__engine_names()[n] != NULL) {
        n++;
    }
    return n;
}

static void test_too_small(size_t built)
{
    hmaf_engine_info_t e[1];
    size_t n = 0;

    CHECK_ERR(hmaf_engine_list(NULL, 0, &n), HMAF_ENOSPC);
    CHECK_EQ(n, built);
    if (built > 1) {
        memset(e, 0x5a, sizeof(e));
        e[0].size = sizeof(e[0]);
        n = 0;
        CHECK_ERR(hmaf_engine_list(e, 1, &n), HMAF_ENOSPC);
        CHECK_EQ(n, built);
        CHECK_EQ((unsigned char)e[0].name[0], 0x5au); /* untouched */
    }
}

static void test_entries(size_t built)
{
    hmaf_engine_info_t e[17];
    size_t n = 0;

    memset(e, 0x5a, sizeof(e));
    e[0].size = sizeof(e[0]);
    CHECK(built < 17);
    CHECK_OK(hmaf_engine_list(e, 17, &n));
    CHECK_EQ(n, built);
    CHECK_EQ(strcmp(e[0].name, "cma"), 0); /* the default, first */
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(e[i].size, sizeof(e[i]));
        CHECK_EQ(strcmp(e[i].name, hmaf__engine_names()[i]), 0);
        CHECK(memchr(e[i].reason, '\0', sizeof(e[i].reason)) != NULL);
        CHECK(e[i].usable == 0 || e[i].usable == 1);
        CHECK_EQ(e[i].usable, e[i].error == 0);
        CHECK_EQ(e[i].usable, e[i].reason[0] == '\0');
    }
    CHECK_EQ(e[0].usable, 1); /* nothing here forbids process_vm_readv */
    CHECK_EQ((unsigned char)e[n].name[0], 0x5au); /* past the last */
}

int main(void)
{
    size_t built = built_engines();

    CHECK(built >= 1);
    test_arguments();
    test_too_small(built);
    test_entries(built);
    printf("test_engine_list: ok\n");
    return 0;
}
