/*
 * Helpers shared by the inspect test binaries (tests/test-inspect*.c): reading a file
 * descriptor whole, and finding the helper programs built next to the test binary.
 * Include after <cmocka.h>.
 */
#ifndef TEST_INSPECT_COMMON_H
#define TEST_INSPECT_COMMON_H

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The whole content of fd (from offset 0), NUL-terminated; free() it. */
static __attribute__((unused)) char *read_all(int fd)
{
    off_t len = lseek(fd, 0, SEEK_END);
    assert_true(len >= 0);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
    buf[len] = '\0';
    return buf;
}

/* The directory of this test binary, where the helper programs are built (setup_paths). */
static char helper_dir[PATH_MAX] __attribute__((unused));

static __attribute__((unused)) int setup_paths(void **state)
{
    ssize_t n = readlink("/proc/self/exe", helper_dir, sizeof(helper_dir) - 1);
    if (n <= 0) {
        return -1;
    }
    helper_dir[n] = '\0';
    *strrchr(helper_dir, '/') = '\0';
    return 0;
}

#endif /* TEST_INSPECT_COMMON_H */
