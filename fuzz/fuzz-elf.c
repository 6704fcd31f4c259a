/*
 * Fuzz target: a module's ELF file as the readers use it — reported to libdwfl as a module
 * (program headers, sections, symbol tables, DWARF, build-id), the debug ABI descriptor found
 * by symbol or by section (inspect/elf-registry.c), missing-module checks, and the symbolizer
 * (inspect/symbolize.c: the sorted function symbols, clone-suffix stripping, line tables,
 * inline chains) over addresses of its symbols and a few others.
 *
 * The input is the ELF file (a memfd, fuzz-int.h), reported at load address 0 with no
 * separate debug file. Target memory is the file's PT_LOAD contents, as a mapped module's.
 */
#define _GNU_SOURCE
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdlib.h>

#include "elf-target-int.h"
#include "fuzz-int.h"
#include "inspect-int.h"

#define MAX_PCS 64

static char *debuginfo_path;

/* No separate debug files: the input alone, and no search of this machine's disk. */
static int no_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                        const char *file_name, const char *debuglink_file,
                        GElf_Word debuglink_crc, char **debuginfo_file_name)
{
    return -1;
}

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = no_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

/* Memory of a module loaded at its link addresses: its PT_LOAD file bytes. */
static int module_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    Dwfl_Module *mod = dwfl_addrmodule(t->dwfl, addr);
    GElf_Addr bias;
    Elf *elf = mod ? dwfl_module_getelf(mod, &bias) : NULL;
    size_t raw_size, nph;
    char *raw = elf ? elf_rawfile(elf, &raw_size) : NULL;
    if (!raw || elf_getphdrnum(elf, &nph) != 0) {
        return -EFAULT;
    }
    uint64_t rel = addr - bias;
    for (size_t i = 0; i < nph; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || rel < ph.p_vaddr ||
            rel - ph.p_vaddr >= ph.p_filesz || len > ph.p_filesz - (rel - ph.p_vaddr)) {
            continue;
        }
        uint64_t off = ph.p_offset + (rel - ph.p_vaddr);
        if (off > raw_size || len > raw_size - off) {
            return -EFAULT;
        }
        memcpy(buf, raw + off, len);
        return 0;
    }
    return -EFAULT;
}

static int module_thread_regs(CoroTarget *t, int32_t tid, CoroMachineRegs *out)
{
    return -ESRCH;
}

static int module_report(CoroTarget *t, Dwfl *dwfl)
{
    return 0;
}

static void module_close(CoroTarget *t)
{
}

static const CoroTargetOps module_ops = {
    .read = module_read,
    .thread_regs = module_thread_regs,
    .report_modules = module_report,
    .close = module_close,
};

/* Up to max addresses of function and object symbols of mod, and one past each function. */
static size_t symbol_pcs(Dwfl_Module *mod, uint64_t *pcs, size_t max)
{
    size_t n = 0;
    int nsyms = dwfl_module_getsymtab(mod);
    for (int i = 1; i < nsyms && n + 2 <= max; i++) {
        GElf_Sym sym;
        GElf_Addr value;
        if (dwfl_module_getsym_info(mod, i, &sym, &value, NULL, NULL, NULL) && value) {
            pcs[n++] = value;
            pcs[n++] = value + (sym.st_size ? sym.st_size - 1 : 1);
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    int fd = fuzz_input_file(data, size, path, sizeof(path));
    if (fd < 0) {
        return 0;
    }
    Dwfl *dwfl = dwfl_begin(&callbacks);
    if (!dwfl) {
        return 0;
    }
    dwfl_report_begin(dwfl);
    /* libdwfl opens the path itself: a fd handed to it stays open when the report fails. */
    Dwfl_Module *mod = dwfl_report_elf(dwfl, "fuzz", path, -1, 0, false);
    dwfl_report_end(dwfl, NULL, NULL);
    if (!mod) {
        dwfl_end(dwfl);
        return 0;
    }
    ElfTarget et = { 0 };
    et.base.ops = &module_ops;
    et.base.dwfl = dwfl;
    snprintf(et.what, sizeof(et.what), "fuzz input %s", path);
    uint64_t abi;
    const char *module;
    (void)coro__target_find_registry(&et.base, &abi, &module, err, sizeof(err));
    const char *missing[2];
    (void)coro__target_missing_modules(&et.base, missing, 2);

    uint64_t pcs[MAX_PCS];
    size_t npcs = symbol_pcs(mod, pcs, MAX_PCS - 4);
    Dwarf_Addr lo, hi;
    if (dwfl_module_info(mod, NULL, &lo, &hi, NULL, NULL, NULL, NULL)) {
        pcs[npcs++] = lo;
        pcs[npcs++] = lo + (hi - lo) / 2;
        pcs[npcs++] = hi - 1;
    }
    CoroSymbolizer *s = coro__symbolizer_create(dwfl);
    static const unsigned flags[] = { 0, CORO_SYM_NO_LINES, CORO_SYM_NO_INLINES };
    for (size_t f = 0; s && f < sizeof(flags) / sizeof(flags[0]); f++) {
        for (size_t i = 0; i < npcs; i++) {
            CoroFrame frames[20];
            (void)coro__symbolize(s, pcs[i], i & 1, flags[f], frames, 20);
        }
    }
    coro__symbolizer_destroy(s);
    dwfl_end(dwfl);
    return 0;
}
