/*
 * Code addresses named inside a signal handler (sigsafe-sym-int.h), for the stack-overflow
 * report (guard.c) and the crash report (signal-crash.c).
 *
 * A handler may run inside malloc, inside the dynamic loader or inside libelf, so it may not
 * call dl_iterate_phdr, allocate or take a lock. The module table (dl_iterate_phdr) is prepared
 * beforehand, at thread start and before a dump, and retaken only when an object was loaded or
 * unloaded. Function names come from one of two places:
 *   - the crash report (CORO_DUMP_ON_CRASH=1) names every frame of every coroutine, so when it
 *     is armed every function symbol of every module (.symtab, else .dynsym, read with libelf)
 *     is sorted by address in advance into one read-only mmap'ed block the handler only
 *     binary-searches;
 *   - otherwise (the overflow report, on in every program: a few names, once, when the process
 *     dies) the handler reads the one symbol it needs from the module's ELF file with open,
 *     fstat and pread, which are async-signal-safe: nothing is spent before a fault. The file is
 *     untrusted (it may have been replaced on disk): every offset and size is checked against
 *     the file's size and the number of symbols read is bounded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sigsafe-sym-int.h"

#define MAX_MODULES 512
/* Reading a symbol from the file in the handler: symbols per pread, and at most this many
 * symbols looked at (a .symtab is about 24 bytes per symbol; the largest programs have a few
 * hundred thousand). */
#define FILE_SYMS_CHUNK 64
#define FILE_MAX_SYMS (1u << 21)

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

/* Replaced on refresh; the old block stays mapped, as a handler may be reading it. NULL until
 * coro__sigsym_symbols_enable(). */
static SigSymtab *_Atomic symtab;
static _Atomic bool symbols_wanted;
/* dl_iterate_phdr's adds/subs when the module table and the symbol table were last taken. */
static unsigned long long modules_gen = ~0ull;
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

static const char *table_function_of(const SigSymtab *t, uint64_t pc, uint64_t *offset)
{
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

/* ---- function names read from the module's file, in the handler ---- */

/* len bytes at off, all inside a file of file_size bytes, or false. CORO_SIGNAL_SAFE. */
static bool pread_within(int fd, void *buf, size_t len, uint64_t off, uint64_t file_size)
{
    if (off > file_size || len > file_size - off) {
        return false;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return false;
        }
        done += (size_t)got;
    }
    return true;
}

/* The symbol table the prepared table would use (.symtab, else .dynsym) and its string table,
 * both lying inside the file. CORO_SIGNAL_SAFE. */
static bool file_symtab(int fd, uint64_t file_size, Elf64_Shdr *symtab_sh, Elf64_Shdr *strtab_sh)
{
    Elf64_Ehdr eh;
    if (!pread_within(fd, &eh, sizeof(eh), 0, file_size) ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_shentsize != sizeof(Elf64_Shdr) ||
        eh.e_shnum == 0 || eh.e_shnum >= SHN_LORESERVE || eh.e_shoff > file_size ||
        (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > file_size - eh.e_shoff) {
        return false;
    }
    bool have = false;
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        Elf64_Shdr sh, str;
        if (!pread_within(fd, &sh, sizeof(sh), eh.e_shoff + (uint64_t)i * sizeof(sh),
                          file_size)) {
            return false;
        }
        if (sh.sh_type != SHT_SYMTAB && (sh.sh_type != SHT_DYNSYM || have)) {
            continue;
        }
        if (sh.sh_entsize != sizeof(Elf64_Sym) || sh.sh_offset > file_size ||
            sh.sh_size > file_size - sh.sh_offset || sh.sh_link == 0 ||
            sh.sh_link >= eh.e_shnum ||
            !pread_within(fd, &str, sizeof(str),
                          eh.e_shoff + (uint64_t)sh.sh_link * sizeof(str), file_size) ||
            str.sh_type != SHT_STRTAB || str.sh_offset > file_size ||
            str.sh_size > file_size - str.sh_offset) {
            continue;
        }
        *symtab_sh = sh;
        *strtab_sh = str;
        have = true;
        if (sh.sh_type == SHT_SYMTAB) {
            break;
        }
    }
    return have;
}

/* The function symbol of m's file containing pc, its name copied into buf. Takes the symbols
 * the prepared table takes (functions and ifuncs, defined, named, of a size in (0, 4 GiB)) and
 * answers as it does: the one starting last, and among aliases the last in the file.
 * CORO_SIGNAL_SAFE. */
static const char *file_function_of(const CoroSigModule *m, uint64_t pc, uint64_t *offset,
                                    char *buf, size_t size)
{
    int fd = open(m->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL; /* the vdso, a deleted file: module+offset only */
    }
    const char *found = NULL;
    struct stat st;
    Elf64_Shdr symtab_sh, strtab_sh;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        !file_symtab(fd, (uint64_t)st.st_size, &symtab_sh, &strtab_sh)) {
        close(fd);
        return NULL;
    }
    uint64_t file_size = (uint64_t)st.st_size;
    uint64_t vaddr = pc - m->base;
    uint64_t nsyms = symtab_sh.sh_size / sizeof(Elf64_Sym);
    if (nsyms > FILE_MAX_SYMS) {
        nsyms = FILE_MAX_SYMS;
    }
    Elf64_Sym best = { 0 };
    bool have = false;
    Elf64_Sym chunk[FILE_SYMS_CHUNK];
    for (uint64_t i = 0; i < nsyms;) {
        uint64_t n = nsyms - i < FILE_SYMS_CHUNK ? nsyms - i : FILE_SYMS_CHUNK;
        if (!pread_within(fd, chunk, n * sizeof(Elf64_Sym),
                          symtab_sh.sh_offset + i * sizeof(Elf64_Sym), file_size)) {
            break;
        }
        for (uint64_t k = 0; k < n; k++) {
            const Elf64_Sym *y = &chunk[k];
            unsigned type = ELF64_ST_TYPE(y->st_info);
            if ((type == STT_FUNC || type == STT_GNU_IFUNC) && y->st_shndx != SHN_UNDEF &&
                y->st_name != 0 && y->st_size != 0 && y->st_size <= UINT32_MAX &&
                y->st_value <= vaddr && vaddr - y->st_value < y->st_size &&
                (!have || y->st_value >= best.st_value)) {
                best = *y;
                have = true;
            }
        }
        i += n;
    }
    if (have && size > 1 && best.st_name < strtab_sh.sh_size) {
        uint64_t room = strtab_sh.sh_size - best.st_name;
        size_t len = room < size - 1 ? (size_t)room : size - 1;
        if (pread_within(fd, buf, len, strtab_sh.sh_offset + best.st_name, file_size)) {
            buf[len] = '\0';
            if (buf[0]) {
                *offset = vaddr - best.st_value;
                found = buf;
            }
        }
    }
    close(fd);
    return found;
}

const char *coro__sigsym_function_of(uint64_t pc, uint64_t *offset, char *buf, size_t size)
{
    const SigSymtab *t = atomic_load_explicit(&symtab, memory_order_acquire);
    if (t) {
        return t->nsyms ? table_function_of(t, pc, offset) : NULL;
    }
    const CoroSigModule *m = coro__sigsym_module_of(pc);
    if (!m) {
        return NULL;
    }
    int saved = errno; /* the interrupted code's */
    const char *fn = file_function_of(m, pc, offset, buf, size);
    errno = saved;
    return fn;
}

static int count_modules(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(unsigned long long *)data = info->dlpi_adds * 1000003ull + info->dlpi_subs;
    return 1;
}

/*
 * The handlers that use this file run on alternate signal stacks, which a program may have
 * made as small as 8 KiB (SIGSTKSZ). The first call through a lazily bound PLT entry runs the
 * dynamic linker's resolver, which needs several KiB of stack (the xsave area included): on
 * such a stack the report itself would overflow. So every libc function the handler paths
 * call that a program may not have called yet is called once here, beforehand.
 * (libcoroscope.so itself is linked with -z now; this is for the static library.)
 */
static void prebind(void)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        char c;
        if (fstat(fd, &st) == 0 && pread(fd, &c, 1, 0) == 1 && read(fd, &c, 1) < 0) {
            c = 0;
        }
        close(fd);
    }
    (void)tgkill(getpid(), gettid(), 0);
    size_t sink = strnlen(exe_name, 1) + (memchr(exe_name, '/', 1) != NULL) +
                  (size_t)memcmp(exe_name, exe_name, 1) + strlen(exe_name);
    __asm__ volatile("" ::"r"(sink)); /* keep the calls */
}

void coro__sigsym_refresh(void)
{
    pthread_mutex_lock(&refresh_lock);
    unsigned long long gen = 0;
    dl_iterate_phdr(count_modules, &gen);
    if (gen != modules_gen) {
        if (!exe_name[0]) {
            ssize_t len = readlink("/proc/self/exe", exe_name, sizeof(exe_name) - 1);
            exe_name[len > 0 ? len : 0] = '\0';
            prebind();
        }
        unsigned n = 0;
        atomic_store_explicit(&nmodules, 0, memory_order_release);
        dl_iterate_phdr(add_module, &n);
        atomic_store_explicit(&nmodules, n, memory_order_release);
        modules_gen = gen;
    }
    if (atomic_load(&symbols_wanted) && gen != symtab_gen) {
        symtab_build(atomic_load_explicit(&nmodules, memory_order_relaxed));
        symtab_gen = gen;
    }
    pthread_mutex_unlock(&refresh_lock);
}

void coro__sigsym_symbols_enable(void)
{
    atomic_store(&symbols_wanted, true);
    coro__sigsym_refresh();
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
