/*
 * Fuzz target: the signal-safe symbol readers of the crash and overflow reports
 * (inspect/sigsafe-sym.c) over a module's ELF file — the one a handler reads with open and
 * pread (file_function_of: headers, section table, symbol and string tables, all checked
 * against the file's size) and the one that prepares the sorted table in advance with libelf
 * (read_module_symbols, then table_function_of as the handler searches it).
 *
 * Both readers are static, so this file compiles inspect/sigsafe-sym.c into itself. The input
 * is the module's file (a memfd, fuzz-int.h) at load bias 0; the addresses looked up are the
 * prepared table's symbols, the ELF entry point and one taken from the input's last bytes.
 */
#define _GNU_SOURCE
#include "../inspect/sigsafe-sym.c"

#include "fuzz-int.h"

#define MAX_PCS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static CoroSigModule m;
    if (fuzz_input_file(data, size, m.name, sizeof(m.name)) < 0) {
        return 0;
    }
    elf_version(EV_CURRENT);
    SymBuild b = { 0 };
    read_module_symbols(&b, &m);
    if (b.n) {
        qsort(b.syms, b.n, sizeof(SigSym), sym_cmp);
    }
    SigSymtab table = { b.n, b.syms, b.names };

    uint64_t pcs[MAX_PCS];
    size_t npcs = 0;
    if (size >= 0x20) {
        memcpy(&pcs[npcs++], data + 0x18, 8); /* e_entry */
    }
    if (size >= 8) {
        memcpy(&pcs[npcs++], data + size - 8, 8);
    }
    for (size_t i = 0; i < b.n && npcs + 2 <= MAX_PCS; i += 1 + b.n / 8) {
        pcs[npcs++] = b.syms[i].lo;
        pcs[npcs++] = b.syms[i].lo + b.syms[i].size - 1;
    }
    for (size_t i = 0; i < npcs; i++) {
        char buf[CORO_SIGSYM_NAME_SIZE], small[8];
        uint64_t off;
        (void)table_function_of(&table, pcs[i], &off);
        (void)file_function_of(&m, pcs[i], &off, buf, sizeof(buf));
        (void)file_function_of(&m, pcs[i], &off, small, sizeof(small));
    }
    free(b.syms);
    free(b.names);
    return 0;
}
