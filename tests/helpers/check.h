/* Test assertions: print both sides and exit 1 on failure; SKIP exits 77. */
#ifndef HMAF_TEST_CHECK_H
#define HMAF_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <hmaf/hmaf.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);        \
        if (check_a_ != check_b_) {                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",          \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);           \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* expr must return exactly err (an HMAF code or 0). */
#define CHECK_ERR(expr, err)                                                   \
    do {                                                                       \
        int check_r_ = (expr);                                                 \
        if (check_r_ != (err)) {                                               \
            fprintf(stderr, "%s:%d: %s returned %s (%d), want %s\n", __FILE__, \
                    __LINE__, #expr, hmaf_err_name(check_r_), check_r_,        \
                    hmaf_err_name(err));                                       \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define CHECK_OK(expr) CHECK_ERR(expr, 0)

#define SKIP(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "SKIP: " __VA_ARGS__);                                 \
        fprintf(stderr, "\n");                                                 \
        exit(77);                                                              \
    } while (0)

#endif
