/*
 * Fuzz target: core files (inspect/target-core.c) — ELF header, program headers, the notes
 * (NT_PRSTATUS, NT_PRPSINFO, NT_FILE, NT_AUXV), the modules libdwfl finds from them — and then
 * what `coroscope ps --core` reads through such a target: thread registers, the registry found
 * by symbol or section (inspect/elf-registry.c) and read (registry-read.c), memory at the
 * addresses the records name.
 *
 * The input is the core, handed over as a memfd (fuzz-int.h): coro__target_core_open takes a
 * path. Modules the notes name are opened from this machine's disk, as for a real core.
 */
#define _GNU_SOURCE
#include <stdlib.h>

#include "elf-target-int.h"
#include "fuzz-int.h"
#include "inspect-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    if (fuzz_input_file(data, size, path, sizeof(path)) < 0) {
        return 0;
    }
    CoroTarget *t;
    if (coro__target_core_open(path, NULL, &t, err, sizeof(err)) < 0) {
        return 0;
    }
    const int32_t *tids;
    size_t ntids = coro__target_tids(t, &tids);
    for (size_t i = 0; i < ntids && i < 64; i++) {
        CoroMachineRegs regs;
        (void)t->ops->thread_regs(t, tids[i], &regs);
    }
    const char *missing[4];
    (void)coro__target_missing_modules(t, missing, 4);
    uint64_t abi;
    const char *module;
    if (coro__target_find_registry(t, &abi, &module, err, sizeof(err)) == 0) {
        CoroCollectOptions opts = { .records_only = true };
        CoroCollection c;
        if (coro__collect(t, abi, &opts, &c) == 0) {
            /* The stack tops the unwinder would read first. */
            for (size_t i = 0; i < c.n && i < 16; i++) {
                uint64_t word[8];
                (void)t->ops->read(t, c.bts[i].info.regs.rsp, word, sizeof(word));
            }
            coro__collection_free(&c);
        }
    }
    t->ops->close(t);
    return 0;
}
