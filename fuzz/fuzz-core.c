/*
 * Fuzz target: core files (inspect/target-core.c) — ELF header, program headers, the notes
 * (NT_PRSTATUS, NT_PRPSINFO, NT_FILE, NT_AUXV), the modules libdwfl finds from them — and then
 * what `coroscope ps --core` reads through such a target: thread registers, the registry found
 * by symbol or section (inspect/elf-registry.c) and read (registry-read.c), memory at the
 * addresses the records name.
 *
 * The input is the core, handed over as a memfd (fuzz-int.h): coro__target_core_open takes a
 * path. Modules the notes name are opened from this machine's disk, as for a real core. When
 * no module file gives the registry's address (the seeds' libcoroscope.so has been rebuilt
 * since, or is gone), the descriptor's magic is searched in the core's dumped segments, so
 * that reading a registry through a core stays reachable.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "elf-target-int.h"
#include "fuzz-int.h"
#include "inspect-int.h"

/* The target address of the first CORO_DEBUG_ABI_MAGIC in the dumped bytes of a PT_LOAD
 * segment of the core in data, or 0. */
static uint64_t scan_for_magic(const uint8_t *data, size_t size)
{
    Elf64_Ehdr eh;
    if (size < sizeof(eh)) {
        return 0;
    }
    memcpy(&eh, data, sizeof(eh));
    for (size_t i = 0; i < eh.e_phnum && i < 4096; i++) {
        Elf64_Phdr ph;
        uint64_t at = eh.e_phoff + i * sizeof(ph);
        if (eh.e_phoff > size || at > size - sizeof(ph)) {
            break;
        }
        memcpy(&ph, data + at, sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_offset > size || ph.p_filesz > size - ph.p_offset) {
            continue;
        }
        const uint8_t *hit = memmem(data + ph.p_offset, ph.p_filesz, CORO_DEBUG_ABI_MAGIC,
                                    sizeof(CORO_DEBUG_ABI_MAGIC));
        if (hit) {
            return ph.p_vaddr + (uint64_t)(hit - (data + ph.p_offset));
        }
    }
    return 0;
}

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
    if (coro__target_find_registry(t, &abi, &module, err, sizeof(err)) == 0 ||
        (abi = scan_for_magic(data, size)) != 0) {
        CoroCollectOptions opts = { .records_only = true };
        CoroCollection c;
        if (coro__collect(t, abi, &opts, &c) == 0) {
            /* The stack tops the unwinder would read first. */
            for (size_t i = 0; i < c.n && i < 16; i++) {
                uint64_t word[8];
                (void)t->ops->read(t, c.bts[i].info->regs.rsp, word, sizeof(word));
            }
            coro__collection_free(&c);
        }
    }
    t->ops->close(t);
    return 0;
}
