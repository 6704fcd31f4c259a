/*
 * A main() for a fuzz target built without libFuzzer (gcc, `make check`): feeds every file
 * named on the command line, and every file in every directory named, to
 * LLVMFuzzerTestOneInput once. A crash, a sanitizer report or a hang (the test's timeout) is a
 * failure; otherwise prints how many inputs ran and exits 0. tests/e2e-fuzz-replay.sh runs it
 * over fuzz/corpus/<target> and fuzz/regress/<target>.
 *
 * As libFuzzer's -malloc_limit_mb, an allocation of more than REPLAY_MALLOC_LIMIT bytes by
 * the library or the target aborts (they are linked with --wrap=malloc,calloc,realloc): a
 * reader that sizes a buffer by a count read from its input fails here too. And, which
 * libFuzzer does not check, an input after the first may not leave more file descriptors open
 * than the first left (a reader that loses one per corrupt file runs out of them).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz-int.h"

/* Inputs bigger than this are refused, as `make fuzz` runs with -max_len below it. */
#define REPLAY_MAX_INPUT (64u * 1024u * 1024u)

#define REPLAY_MALLOC_LIMIT (2048ull << 20)

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static void check_size(const char *what, unsigned long long size)
{
    if (size > REPLAY_MALLOC_LIMIT) {
        fprintf(stderr, "replay: %s(%llu) is over the limit of %llu bytes\n", what, size,
                REPLAY_MALLOC_LIMIT);
        abort();
    }
}

void *__wrap_malloc(size_t size)
{
    check_size("malloc", size);
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    check_size("calloc", size && n > SIZE_MAX / size ? ~0ull : (unsigned long long)n * size);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    check_size("realloc", size);
    return __real_realloc(p, size);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d)) {
        n++;
    }
    if (d) {
        closedir(d);
    }
    return n;
}

static int run_file(const char *path, unsigned *count)
{
    static int fds_after_first = -1;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        if (f) {
            fclose(f);
        }
        return -1;
    }
    /* Exactly the input's size, so that ASan sees a read past its end. */
    size_t size = (size_t)st.st_size;
    uint8_t *in = size <= REPLAY_MAX_INPUT ? malloc(size ? size : 1) : NULL;
    bool bad = !in || fread(in, 1, size, f) != size;
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read %s (or it is over %u bytes)\n", path, REPLAY_MAX_INPUT);
        free(in);
        return -1;
    }
    LLVMFuzzerTestOneInput(in, size);
    free(in);
    (*count)++;
    int fds = open_fds();
    if (fds_after_first < 0) {
        fds_after_first = fds;
    } else if (fds > fds_after_first) {
        fprintf(stderr, "replay: %s leaves %d more file descriptors open\n", path,
                fds - fds_after_first);
        fds_after_first = fds;
        return -1;
    }
    return 0;
}

static int compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, unsigned *count)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, NULL);
    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    char **paths = calloc((size_t)n + 1, sizeof(*paths));
    int np = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.' && paths &&
            asprintf(&paths[np], "%s/%s", dir, names[i]->d_name) >= 0) {
            np++;
        }
        free(names[i]);
    }
    free(names);
    if (!paths) {
        return -1;
    }
    qsort(paths, (size_t)np, sizeof(*paths), compare);
    for (int i = 0; i < np; i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0 && S_ISREG(st.st_mode) && run_file(paths[i], count) < 0) {
            rc = -1;
        }
        free(paths[i]);
    }
    free(paths);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
        } else if (S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) < 0
                                       : run_file(argv[i], &count) < 0) {
            rc = 1;
        }
    }
    printf("replay: %u inputs ran\n", count);
    return rc;
}
