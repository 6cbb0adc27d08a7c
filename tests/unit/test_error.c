/* hmaf_strerror() and hmaf_err_name(): static text for any int. */
#include <limits.h>
#include <string.h>

#include "check.h"

struct code {
    int value;
    const char *name; /* "HMAF_" #name, as the map spells it */
    const char *text;
};

static const struct code codes[] = {
#define CODE_(name, value, text) {(value), "HMAF_" #name, (text)},
    HMAF_ERROR_MAP(CODE_)
#undef CODE_
};

#define NUM_CODES (sizeof(codes) / sizeof(codes[0]))

static void test_every_code(void)
{
    for (size_t i = 0; i < NUM_CODES; i++) {
        const char *text = hmaf_strerror(codes[i].value);
        const char *name = hmaf_err_name(codes[i].value);

        CHECK(codes[i].value < 0);
        CHECK(text != NULL && name != NULL);
        CHECK(strcmp(text, codes[i].text) == 0);
        CHECK(strcmp(text, "unknown error") != 0);
        CHECK(strncmp(name, "HMAF_", 5) == 0);
        CHECK(strcmp(name, codes[i].name) == 0);
    }
}

/* Two codes sharing a value or a name would make one of them unreachable. */
static void test_distinct(void)
{
    for (size_t i = 0; i < NUM_CODES; i++) {
        for (size_t j = i + 1; j < NUM_CODES; j++) {
            CHECK(codes[i].value != codes[j].value);
            CHECK(strcmp(hmaf_err_name(codes[i].value),
                         hmaf_err_name(codes[j].value)) != 0);
        }
    }
}

static void test_own_codes_range(void)
{
    CHECK(HMAF_EAUTH <= -4000);
    CHECK(HMAF_EADDRESS <= -4000);
    CHECK_EQ(HMAF_EINVAL, -EINVAL);
    CHECK_EQ(HMAF_EFAULT, -EFAULT);
}

static void test_success(void)
{
    CHECK(strcmp(hmaf_strerror(0), "success") == 0);
    CHECK(strcmp(hmaf_err_name(0), "HMAF_OK") == 0);
}

static void test_unknown(void)
{
    static const int unknown[] = {12345, INT_MIN, INT_MAX, 1,
                                  -3,    -3999,   -4000,   -4999};

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        const char *text = hmaf_strerror(unknown[i]);
        const char *name = hmaf_err_name(unknown[i]);

        CHECK(text != NULL && name != NULL);
        CHECK(strcmp(text, "unknown error") == 0);
        CHECK(strcmp(name, "HMAF_UNKNOWN") == 0);
    }
}

int main(void)
{
    test_every_code();
    test_distinct();
    test_own_codes_range();
    test_success();
    test_unknown();
    printf("test_error: ok\n");
    return 0;
}
