/* tests/check.h: the failure-counting CHECK of the plain-C tests (those that also build on
 * the GPU host, which has no cmocka): prints the file, line and message of a failed check and
 * counts it in `failures`, which main() turns into the exit status. */
#ifndef ORTHOD_TESTS_CHECK_H
#define ORTHOD_TESTS_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fprintf(stderr, "\n");                                                              \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

#endif
