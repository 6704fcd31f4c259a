/*
 * Finding a target's coroutine registry: the debug ABI descriptor is exported as the symbol
 * CORO_DEBUG_ABI_SYMBOL (shared library, or a static executable with a symbol table) and
 * placed alone in the section CORO_DEBUG_ABI_SECTION, which `strip` keeps — so a stripped
 * statically linked program is found by section plus the module's load bias.
 */
#define _GNU_SOURCE
#include <coroscope/debug-abi.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf-target-int.h"

typedef struct FindState {
    CoroTarget *target;
    uint64_t addr;
    uint64_t bad_addr;     /* a candidate whose bytes are not a descriptor */
    const char *bad_module;
    const char *module;
    bool by_section;   /* second pass */
    unsigned missing;  /* modules whose ELF file could not be found */
    const char *first_missing;
} FindState;

static bool module_symbol(Dwfl_Module *mod, uint64_t *addr)
{
    int n = dwfl_module_getsymtab(mod);
    for (int i = 1; i < n; i++) {
        GElf_Sym sym;
        GElf_Addr value;
        const char *name = dwfl_module_getsym_info(mod, i, &sym, &value, NULL, NULL, NULL);
        if (name && GELF_ST_TYPE(sym.st_info) == STT_OBJECT && sym.st_shndx != SHN_UNDEF &&
            strcmp(name, CORO_DEBUG_ABI_SYMBOL) == 0) {
            *addr = value;
            return true;
        }
    }
    return false;
}

static bool module_section(Dwfl_Module *mod, uint64_t *addr)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    size_t shstrndx;
    if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0) {
        return false;
    }
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_ALLOC)) {
            continue;
        }
        const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
        if (name && strcmp(name, CORO_DEBUG_ABI_SECTION) == 0 &&
            sh.sh_size >= offsetof(struct coro_debug_abi, records)) {
            *addr = sh.sh_addr + bias;
            return true;
        }
    }
    return false;
}

/* True when path does not exist or is an ELF file (which then did not match). */
static bool missing_or_elf(const char *path)
{
    /* A deleted mapping that could not be reopened: shared memory and memfds look the same
     * ("/dev/shm/x (deleted)", "/memfd:x (deleted)"), so only shared objects count. */
    const char *deleted = strstr(path, " (deleted)");
    if (deleted && deleted[10] == '\0') {
        const char *base = strrchr(path, '/');
        return base && strstr(base, ".so") && strncmp(path, "/memfd:", 7) != 0 &&
               strncmp(path, "/dev/", 5) != 0;
    }
    /* The name comes from the target (a core's NT_FILE note): never wait on a FIFO or a
     * device, only a regular file can be a module. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return errno == ENOENT;
    }
    struct stat st;
    unsigned char magic[SELFMAG];
    bool elf = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
               read(fd, magic, SELFMAG) == SELFMAG && memcmp(magic, ELFMAG, SELFMAG) == 0;
    close(fd);
    return elf;
}

static int each_module(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start,
                       void *arg)
{
    FindState *st = arg;
    uint64_t addr;
    if (st->by_section) {
        GElf_Addr bias;
        if (!dwfl_module_getelf(mod, &bias)) {
            /* The vdso and anonymous pseudo-modules have no file worth mentioning, and
             * mapped files that are not ELF (locale archives) are not modules at all. */
            if (name && name[0] == '/' && missing_or_elf(name)) {
                if (!st->missing++) {
                    st->first_missing = name;
                }
            }
            return DWARF_CB_OK;
        }
    }
    if (st->by_section ? module_section(mod, &addr) : module_symbol(mod, &addr)) {
        /* A file can also be mapped outside its load segments (a process that opened its own
         * ELF files with libelf's mmap, as an in-process libdw does), and libdwfl then reports
         * a second module of that name at the wrong bias: only a candidate whose bytes hold the
         * magic is the registry. */
        char magic[8];
        if (st->target->ops->read(st->target, addr, magic, sizeof(magic)) < 0 ||
            memcmp(magic, CORO_DEBUG_ABI_MAGIC, sizeof(magic)) != 0) {
            if (!st->bad_module) {
                st->bad_addr = addr;
                st->bad_module = name;
            }
            return DWARF_CB_OK;
        }
        st->addr = addr;
        st->module = name;
        return DWARF_CB_ABORT;
    }
    return DWARF_CB_OK;
}

int coro__target_find_registry(CoroTarget *t, uint64_t *addr, const char **module, char *err,
                               size_t errlen)
{
    FindState st = { .target = t };
    if (t->dwfl) {
        dwfl_getmodules(t->dwfl, each_module, &st, 0);
        if (!st.module) {
            st.by_section = true;
            dwfl_getmodules(t->dwfl, each_module, &st, 0);
        }
    }
    if (!st.module && st.bad_module) {
        /* The magic is checked again (with the rest) by the registry reader, whose message
         * says what is wrong; hand it the first candidate. */
        st.addr = st.bad_addr;
        st.module = st.bad_module;
    }
    if (!st.module && st.missing) {
        snprintf(err, errlen, "no coroutine registry found in %s: the files of %u of its "
                 "modules are missing or are not the ones it ran (first: %s); was the program "
                 "rebuilt or moved? (pass it with -e)", coro__target_describe(t), st.missing,
                 st.first_missing);
        return -ENOENT;
    }
    if (!st.module) {
        snprintf(err, errlen, "no coroutine registry in %s: it was not built with coroscope "
                 "(no symbol %s and no section %s in any of its modules)",
                 coro__target_describe(t), CORO_DEBUG_ABI_SYMBOL, CORO_DEBUG_ABI_SECTION);
        return -ENOENT;
    }
    *addr = st.addr;
    *module = st.module;
    return 0;
}

typedef struct MissingState {
    const char **names;
    size_t n, max;
} MissingState;

static int each_missing(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start,
                        void *arg)
{
    MissingState *st = arg;
    GElf_Addr bias;
    if (!dwfl_module_getelf(mod, &bias) && name && name[0] == '/' && missing_or_elf(name)) {
        if (st->n < st->max) {
            st->names[st->n] = name;
        }
        st->n++;
    }
    return DWARF_CB_OK;
}

size_t coro__target_missing_modules(CoroTarget *t, const char **names, size_t max)
{
    MissingState st = { names, 0, max };
    if (t->dwfl) {
        dwfl_getmodules(t->dwfl, each_missing, &st, 0);
    }
    return st.n;
}
