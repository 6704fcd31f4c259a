/*
 * A program whose coroutine registry is damaged in the two ways every reader must report
 * rather than hide (tests/e2e-partial.sh): coroutine "bad-sp" has a saved stack pointer
 * outside its stack, so its frames cannot be read (it is listed, marked, counted as
 * incomplete), and the last record of the registry list points at unreadable memory, so the
 * walk is cut short. It then writes its own coro_dump (JSON) to argv[2], takes a signal dump
 * (the environment sets CORO_DUMP_SIGNAL/PATH/FORMAT), prints "ready" and waits ("wait") for
 * the CLI, or aborts ("abort") for a kernel core.
 * Limits, not damage: "huge-count" sets nrecords to 2^40 (above every reader's limit) and
 * "bad-descriptor" makes the record size invalid; coro_dump must give a result or an error
 * line and a return value, never abort the program ("survived" on stdout, exit 0).
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/debug-abi.h>
#include <coroscope/inspect.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern struct coro_debug_abi coroscope_debug_abi;

static void parked(void *opaque)
{
    for (;;) {
        coro_yield();
    }
}

static uint64_t *field(uint64_t record, uint32_t off)
{
    return (uint64_t *)(uintptr_t)(record + off);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: prog-partial wait|abort|crash-head DUMP-FILE SIGNAL-DUMP-FILE\n");
        return 64;
    }
    static const char *const names[] = { "first", "bad-sp", "third" };
    Coroutine *cos[3];
    for (int i = 0; i < 3; i++) {
        CoroutineOptions o = { .name = names[i] };
        cos[i] = coro_create_opts(parked, NULL, &o);
        coro_enter(cos[i]);
    }
    const struct coro_debug_abi *abi = &coroscope_debug_abi;
    if (strcmp(argv[1], "huge-count") == 0 || strcmp(argv[1], "bad-descriptor") == 0) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (strcmp(argv[1], "huge-count") == 0) {
            coroscope_debug_abi.nrecords = 1ull << 40;
        } else {
            coroscope_debug_abi.record_size = 3;
        }
        int rc = coro_dump(fd, CORO_DUMP_JSON);
        printf("coro_dump: %d\nsurvived\n", rc);
        return 0;
    }
    /* A saved context in no stack and no code: its frames cannot be read. */
    *field((uint64_t)(uintptr_t)cos[1], abi->off_regs + abi->regs.rsp) = 0x10;
    *field((uint64_t)(uintptr_t)cos[1], abi->off_regs + abi->regs.rip) = 0x10;
    /* The last record of the list now leads to a page that cannot be read. It stays mapped
     * (PROT_NONE): an unmapped hole can be reused by the next mmap — the crash report's own
     * buffers — and would then read as zeros. */
    void *hole = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t rec = abi->records, last = 0;
    for (uint64_t n = 0; rec && n < abi->nrecords; n++) {
        last = rec;
        rec = *field(rec, abi->off_next);
    }
    *field(last, abi->off_next) = (uint64_t)(uintptr_t)hole;
    if (strcmp(argv[1], "crash-head") == 0) {
        /* The list's very first record leads to the unreadable page: the crash report's
         * signal-safe walk must stop there, not fault inside its own handler. */
        *field(abi->records, abi->off_next) = (uint64_t)(uintptr_t)hole;
        abort();
    }

    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || coro_dump(fd, CORO_DUMP_JSON) < 0) {
        perror("coro_dump");
        return 1;
    }
    close(fd);
    raise(SIGUSR1);
    for (int i = 0; i < 400; i++) { /* the dump thread writes it */
        struct stat st;
        if (stat(argv[3], &st) == 0 && st.st_size > 0) {
            break;
        }
        usleep(10000);
    }
    usleep(50000);
    printf("ready\n");
    fflush(stdout);
    if (strcmp(argv[1], "abort") == 0) {
        abort();
    }
    pause();
    return 0;
}
