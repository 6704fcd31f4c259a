/*
 * Code addresses named inside a signal handler (sigsafe-sym-int.h), for the stack-overflow
 * report (guard.c) and the crash report (signal-crash.c).
 *
 * A handler may run inside malloc, inside the dynamic loader or inside libelf, so it may not
 * call dl_iterate_phdr, allocate or take a lock. Everything it needs is prepared beforehand:
 * the module table (dl_iterate_phdr) and every function symbol of every module (.symtab, else
 * .dynsym, read with libelf), sorted by address in one read-only mmap'ed block that the handler
 * only binary-searches. Both are retaken only when an object was loaded or unloaded.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <gelf.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sigsafe-sym-int.h"

#define MAX_MODULES 512

/* A handler that runs during a refresh sees no modules (nmodules is 0 meanwhile) and prints
 * bare addresses; it never sees a half-written entry as valid. */
static CoroSigModule modules[MAX_MODULES];
static _Atomic unsigned nmodules;
static char exe_name[CORO_SIGSYM_NAME_SIZE];
static pthread_mutex_t refresh_lock = PTHREAD_MUTEX_INITIALIZER;

static int add_module(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    unsigned *n = data;
    if (*n >= MAX_MODULES) {
        return 1;
    }
    CoroSigModule *m = &modules[*n];
    m->base = info->dlpi_addr;
    m->nranges = 0;
    for (int i = 0; i < info->dlpi_phnum && m->nranges < CORO_SIGSYM_MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            m->lo[m->nranges] = info->dlpi_addr + ph->p_vaddr;
            m->hi[m->nranges] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            m->nranges++;
        }
    }
    const char *name = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : exe_name;
    size_t len = strnlen(name, CORO_SIGSYM_NAME_SIZE - 1);
    memcpy(m->name, name, len);
    m->name[len] = '\0';
    if (m->nranges) {
        (*n)++;
    }
    return 0;
}

const CoroSigModule *coro__sigsym_module_of(uint64_t pc)
{
    unsigned n = atomic_load_explicit(&nmodules, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        for (unsigned r = 0; r < modules[i].nranges; r++) {
            if (pc >= modules[i].lo[r] && pc < modules[i].hi[r]) {
                return &modules[i];
            }
        }
    }
    return NULL;
}

/* ---- function names, prepared in advance ---- */

typedef struct SigSym {
    uint64_t lo;
    uint32_t size;
    uint32_t name;              /* offset into the names */
} SigSym;

typedef struct SigSymtab {
    size_t nsyms;
    const SigSym *syms;
    const char *names;
} SigSymtab;

/* Replaced on refresh; the old block stays mapped, as a handler may be reading it. */
static SigSymtab *_Atomic symtab;
static unsigned long long symtab_gen = ~0ull;

typedef struct SymBuild {
    SigSym *syms;
    size_t n, cap;
    char *names;
    size_t nlen, ncap;
} SymBuild;

static void sym_add(SymBuild *b, uint64_t lo, uint64_t size, const char *name)
{
    size_t len = strlen(name) + 1;
    if (size == 0 || size > UINT32_MAX || b->nlen + len > UINT32_MAX) {
        return;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        SigSym *p = realloc(b->syms, cap * sizeof(*p));
        if (!p) {
            return;
        }
        b->syms = p;
        b->cap = cap;
    }
    if (b->nlen + len > b->ncap) {
        size_t cap = b->ncap ? 2 * b->ncap : 65536;
        while (cap < b->nlen + len) {
            cap *= 2;
        }
        char *p = realloc(b->names, cap);
        if (!p) {
            return;
        }
        b->names = p;
        b->ncap = cap;
    }
    memcpy(b->names + b->nlen, name, len);
    b->syms[b->n++] = (SigSym){ lo, (uint32_t)size, (uint32_t)b->nlen };
    b->nlen += len;
}

static void read_module_symbols(SymBuild *b, const CoroSigModule *m)
{
    int fd = open(m->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return; /* the vdso, a deleted file: module+offset only */
    }
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    Elf_Scn *chosen = NULL, *scn = NULL;
    GElf_Shdr sh, chosen_sh;
    memset(&chosen_sh, 0, sizeof(chosen_sh));
    while (elf && (scn = elf_nextscn(elf, scn))) {
        if (gelf_getshdr(scn, &sh) && (sh.sh_type == SHT_SYMTAB ||
                                       (sh.sh_type == SHT_DYNSYM && !chosen))) {
            chosen = scn;
            chosen_sh = sh;
        }
    }
    Elf_Data *data = chosen ? elf_getdata(chosen, NULL) : NULL;
    size_t count = data && chosen_sh.sh_entsize ? chosen_sh.sh_size / chosen_sh.sh_entsize : 0;
    for (size_t i = 0; i < count; i++) {
        GElf_Sym sym;
        if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF ||
            (GELF_ST_TYPE(sym.st_info) != STT_FUNC &&
             GELF_ST_TYPE(sym.st_info) != STT_GNU_IFUNC)) {
            continue;
        }
        const char *name = elf_strptr(elf, chosen_sh.sh_link, sym.st_name);
        if (name && name[0]) {
            sym_add(b, m->base + sym.st_value, sym.st_size, name);
        }
    }
    if (elf) {
        elf_end(elf);
    }
    close(fd);
}

static int sym_cmp(const void *a, const void *b)
{
    const SigSym *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void symtab_build(unsigned n)
{
    elf_version(EV_CURRENT);
    SymBuild b = { 0 };
    for (unsigned i = 0; i < n; i++) {
        read_module_symbols(&b, &modules[i]);
    }
    if (b.n) {
        qsort(b.syms, b.n, sizeof(SigSym), sym_cmp);
        size_t syms_len = b.n * sizeof(SigSym);
        size_t len = sizeof(SigSymtab) + syms_len + b.nlen;
        char *block = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
        if (block != MAP_FAILED) {
            SigSymtab *t = (SigSymtab *)(void *)block;
            memcpy(block + sizeof(*t), b.syms, syms_len);
            memcpy(block + sizeof(*t) + syms_len, b.names, b.nlen);
            t->nsyms = b.n;
            t->syms = (const SigSym *)(void *)(block + sizeof(*t));
            t->names = block + sizeof(*t) + syms_len;
            mprotect(block, len, PROT_READ);
            atomic_store_explicit(&symtab, t, memory_order_release);
        }
    }
    free(b.syms);
    free(b.names);
}

const char *coro__sigsym_function_of(uint64_t pc, uint64_t *offset)
{
    const SigSymtab *t = atomic_load_explicit(&symtab, memory_order_acquire);
    if (!t || !t->nsyms) {
        return NULL;
    }
    size_t lo = 0, hi = t->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->syms[mid].lo <= pc) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return NULL;
    }
    const SigSym *s = &t->syms[lo - 1];
    if (pc - s->lo >= s->size) {
        return NULL;
    }
    *offset = pc - s->lo;
    return t->names + s->name;
}

static int count_modules(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(unsigned long long *)data = info->dlpi_adds * 1000003ull + info->dlpi_subs;
    return 1;
}

void coro__sigsym_refresh(void)
{
    pthread_mutex_lock(&refresh_lock);
    unsigned long long gen = 0;
    dl_iterate_phdr(count_modules, &gen);
    if (gen != symtab_gen) {
        if (!exe_name[0]) {
            ssize_t len = readlink("/proc/self/exe", exe_name, sizeof(exe_name) - 1);
            exe_name[len > 0 ? len : 0] = '\0';
        }
        unsigned n = 0;
        atomic_store_explicit(&nmodules, 0, memory_order_release);
        dl_iterate_phdr(add_module, &n);
        atomic_store_explicit(&nmodules, n, memory_order_release);
        symtab_build(n);
        symtab_gen = gen;
    }
    pthread_mutex_unlock(&refresh_lock);
}

/* ---- return addresses ---- */

/* Length of an indirect call ff /2 whose ModRM byte is op[1] (SIB byte op[2] when there is
 * one, read only when have > 2), or 0 when op does not start one. */
static unsigned indirect_call_len(const uint8_t *op, unsigned have)
{
    uint8_t modrm = op[1];
    if (op[0] != 0xff || ((modrm >> 3) & 7) != 2) {
        return 0;
    }
    unsigned mod = modrm >> 6, rm = modrm & 7;
    if (mod == 3) {
        return 2;                               /* call *%reg */
    }
    if (rm == 4 && have <= 2) {
        return 0;                               /* needs a SIB byte that is not there */
    }
    bool sib = rm == 4;
    if (mod == 0) {
        if (sib) {
            return (op[2] & 7) == 5 ? 7 : 3;   /* [base + index] or [index + disp32] */
        }
        return rm == 5 ? 6 : 2;                 /* [rip + disp32] or [reg] */
    }
    return (mod == 1 ? 3 : 6) + sib;            /* + disp8 or + disp32 */
}

bool coro__sigsym_after_call(uint64_t ra)
{
    uint8_t b[7];
    struct iovec local = { b, sizeof(b) };
    struct iovec remote = { (void *)(uintptr_t)(ra - sizeof(b)), sizeof(b) };
    if (ra < sizeof(b) ||
        process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != (ssize_t)sizeof(b)) {
        return false;
    }
    if (b[2] == 0xe8) {
        return true;                            /* call rel32 */
    }
    /* An indirect call ending exactly at ra (prefixes such as REX sit before the ff). */
    for (unsigned len = 2; len <= 7; len++) {
        if (indirect_call_len(&b[7 - len], len) == len) {
            return true;
        }
    }
    return false;
}
