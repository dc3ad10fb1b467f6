/* Assertions shared by the C tests: a failed check prints where, what, the result's name and
 * the library's last error message, and exits 1. */
#ifndef XVMI_TEST_CHECK_H
#define XVMI_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xenvmi.h"

static inline void print_last_error(void) {
    char msg[1024];
    xvmi_last_error(msg, sizeof msg, NULL);
    fprintf(stderr, "  last error: %s\n", msg);
}

/* The last error message, in a static buffer. */
static inline const char *last_error(void) {
    static char msg[4096];
    xvmi_last_error(msg, sizeof msg, NULL);
    return msg;
}

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
            print_last_error();                                                      \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define CHECK_RC(call, want)                                                         \
    do {                                                                             \
        xvmi_result rc_ = (call);                                                    \
        if (rc_ != (want)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: %s returned %s, expected %s\n", __FILE__,   \
                    __LINE__, #call, xvmi_result_name(rc_), xvmi_result_name(want)); \
            print_last_error();                                                      \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define OK(call) CHECK_RC(call, XVMI_OK)

#endif
