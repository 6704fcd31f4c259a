/*
 * The opt-in crash report (CORO_DUMP_ON_CRASH=1): on SIGSEGV, SIGBUS, SIGABRT or SIGFPE,
 * every coroutine is listed on stderr before the process dies as it would have (default
 * disposition, core included). SIGBUS, SIGABRT and SIGFPE are handled here; SIGSEGV by the
 * stack-overflow handler of inspect/guard.c, which calls coro__sig_crash_report_once() —
 * one handler for both, so neither hides the other.
 *
 * A crash can happen anywhere — inside malloc, inside the dynamic loader, inside libdw — so
 * nothing here allocates with malloc or takes a lock: the same snapshot as the signal dump
 * (the other coroutine threads are held while their records and stacks are copied into
 * freshly mmap'ed memory), then, per coroutine, its exact pc and the return addresses found
 * by scanning its stack, printed as module+offset with the module table taken in advance.
 * That is best effort, and marked so: a scanned frame is a word on the stack that points
 * just after a call instruction in a known module, which may be stale. Symbolize offline:
 *     eu-addr2line -f -i -e MODULE OFFSET
 * docs/signal-dump.md shows a report.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <link.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <signal.h>
#include <string.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include "coro-int.h"
#include "inspect-int.h"
#include "signal-int.h"

#define MAX_MODULES 512
#define MODULE_NAME 256
#define MAX_RANGES 4
#define SCAN_BYTES (64u * 1024u)
#define SCAN_FRAMES 48

typedef struct CrashModule {
    uint64_t base;                       /* load bias */
    uint64_t lo[MAX_RANGES], hi[MAX_RANGES]; /* executable segments */
    unsigned nranges;
    char name[MODULE_NAME];
} CrashModule;

/* The module table: filled outside any signal handler (at arming and before each signal
 * dump); the handler only reads it. A module loaded since is shown as a bare address. */
static CrashModule modules[MAX_MODULES];
static _Atomic unsigned nmodules;
static char exe_name[MODULE_NAME];

static int add_module(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    unsigned *n = data;
    if (*n >= MAX_MODULES) {
        return 1;
    }
    CrashModule *m = &modules[*n];
    m->base = info->dlpi_addr;
    m->nranges = 0;
    for (int i = 0; i < info->dlpi_phnum && m->nranges < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            m->lo[m->nranges] = info->dlpi_addr + ph->p_vaddr;
            m->hi[m->nranges] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            m->nranges++;
        }
    }
    const char *name = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : exe_name;
    size_t len = strnlen(name, MODULE_NAME - 1);
    memcpy(m->name, name, len);
    m->name[len] = '\0';
    if (m->nranges) {
        (*n)++;
    }
    return 0;
}

/* ---- function names, prepared in advance ---- */

/*
 * Every function symbol of every module (.symtab, else .dynsym), sorted by address, in one
 * read-only mmap'ed block that the handler only searches. Built outside handlers; replaced
 * (the old block is left mapped: a crashing thread may be reading it) only when a library
 * was loaded or unloaded.
 */
typedef struct CrashSym {
    uint64_t lo;
    uint32_t size;
    uint32_t name;              /* offset into the names */
} CrashSym;

typedef struct CrashSymtab {
    size_t nsyms;
    const CrashSym *syms;
    const char *names;
} CrashSymtab;

static CrashSymtab *_Atomic symtab;
static unsigned long long symtab_gen = ~0ull;

typedef struct SymBuild {
    CrashSym *syms;
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
        CrashSym *p = realloc(b->syms, cap * sizeof(*p));
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
    b->syms[b->n++] = (CrashSym){ lo, (uint32_t)size, (uint32_t)b->nlen };
    b->nlen += len;
}

static void read_module_symbols(SymBuild *b, const CrashModule *m)
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
    const CrashSym *x = a, *y = b;
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
        qsort(b.syms, b.n, sizeof(CrashSym), sym_cmp);
        size_t syms_len = b.n * sizeof(CrashSym);
        size_t len = sizeof(CrashSymtab) + syms_len + b.nlen;
        char *block = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
        if (block != MAP_FAILED) {
            CrashSymtab *t = (CrashSymtab *)(void *)block;
            memcpy(block + sizeof(*t), b.syms, syms_len);
            memcpy(block + sizeof(*t) + syms_len, b.names, b.nlen);
            t->nsyms = b.n;
            t->syms = (const CrashSym *)(void *)(block + sizeof(*t));
            t->names = block + sizeof(*t) + syms_len;
            mprotect(block, len, PROT_READ);
            atomic_store_explicit(&symtab, t, memory_order_release);
        }
    }
    free(b.syms);
    free(b.names);
}

/* The function containing pc, or NULL. CORO_SIGNAL_SAFE. */
static const char *function_of(uint64_t pc, uint64_t *offset)
{
    const CrashSymtab *t = atomic_load_explicit(&symtab, memory_order_acquire);
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
    const CrashSym *s = &t->syms[lo - 1];
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

/* Not signal-safe (dl_iterate_phdr takes the loader's lock, libelf allocates): call outside
 * handlers. */
void coro__sig_crash_modules_refresh(void)
{
    unsigned long long gen = 0;
    dl_iterate_phdr(count_modules, &gen);
    if (gen == symtab_gen) {
        return;
    }
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

static const CrashModule *module_of(uint64_t pc)
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

/* ---- stack scanning ---- */

static bool read_self(uint64_t addr, void *buf, size_t len)
{
    struct iovec local = { buf, len };
    struct iovec remote = { (void *)(uintptr_t)addr, len };
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len;
}

/* True when the bytes before ra end with a call instruction (direct, or indirect through a
 * register or memory operand): then ra is a plausible return address. */
static bool after_call(uint64_t ra)
{
    uint8_t b[8];
    if (ra < 8 || !read_self(ra - 8, b, sizeof(b))) {
        return false;
    }
    if (b[3] == 0xe8) {
        return true; /* call rel32 */
    }
    /* call r/m64: ff /2, with a 0, 1 or 4-byte displacement (or a SIB byte) */
    static const int at[] = { 6, 5, 2, 1 };
    for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        if (b[at[i]] == 0xff && (b[at[i] + 1] & 0x38) == 0x10) {
            return true;
        }
    }
    return false;
}

/* A return address is shown at its call instruction (pc - 1), so that addr2line names the
 * line of the call, as the symbolized dumps do. */
static void out_frame(CoroOut *o, unsigned n, uint64_t pc, bool is_ra, bool scanned)
{
    coro__out_str(o, scanned ? "  ?" : "  #");
    coro__out_u64(o, n);
    coro__out_str(o, " ");
    coro__out_hex(o, pc);
    uint64_t look = is_ra ? pc - 1 : pc;
    uint64_t off;
    const char *fn = function_of(look, &off);
    if (fn) {
        coro__out_str(o, " ");
        coro__out_str(o, fn);
        coro__out_str(o, "+");
        coro__out_hex(o, off);
    }
    const CrashModule *m = module_of(look);
    if (m) {
        coro__out_str(o, fn ? " (" : " ");
        coro__out_str(o, m->name);
        coro__out_str(o, "+");
        coro__out_hex(o, look - m->base);
        coro__out_str(o, fn ? ")" : "");
    }
    coro__out_str(o, "\n");
}

/* Frame 0 at pc, then return addresses found on [sp, top). */
static void out_frames(CoroOut *o, uint64_t pc, bool is_ra, uint64_t sp, uint64_t top,
                       const SigSnapshot *s)
{
    out_frame(o, 0, pc, is_ra, false);
    uint64_t end = top - sp > SCAN_BYTES ? sp + SCAN_BYTES : top;
    unsigned n = 1;
    uint64_t tramp_lo = (uint64_t)(uintptr_t)coro__trampoline;
    uint64_t tramp_hi = (uint64_t)(uintptr_t)coro__trampoline_end;
    for (uint64_t a = (sp + 7) & ~7ull; a + 8 <= end && n < SCAN_FRAMES; a += 8) {
        bool fenced;
        const uint64_t *w = coro__sig_find(s, a, 8, &fenced);
        if (!w) {
            break;
        }
        uint64_t v = *w;
        if (v >= tramp_lo && v < tramp_hi) {
            break; /* the bottom of the coroutine */
        }
        if (module_of(v) && after_call(v)) {
            out_frame(o, n++, v, true, true);
        }
    }
}

/* ---- the report ---- */

static SigSnapshot crash_snap;

static void out_header(CoroOut *o, const Coroutine *rec)
{
    coro__out_str(o, "coroutine ");
    coro__out_u64(o, rec->id);
    if (rec->name[0]) {
        char name[CORO_NAME_SIZE];
        memcpy(name, rec->name, sizeof(name));
        name[CORO_NAME_SIZE - 1] = '\0';
        coro__out_str(o, " \"");
        coro__out_str(o, name);
        coro__out_str(o, "\"");
    }
    coro__out_str(o, " [");
    coro__out_str(o, coro__state_name(rec->state));
    coro__out_str(o, ", thread ");
    coro__out_i64(o, rec->tid);
    coro__out_str(o, "]:\n");
}

void coro__sig_crash_report(int fd, int signo, const void *ucontext)
{
    CoroOut o;
    coro__out_init(&o, fd);
    CoroMachineRegs self;
    memset(&self, 0, sizeof(self));
    if (ucontext) {
        const greg_t *g = ((const ucontext_t *)ucontext)->uc_mcontext.gregs;
        self.rip = (uint64_t)g[REG_RIP];
        self.rsp = (uint64_t)g[REG_RSP];
        self.valid = CORO_MREG_RIP | CORO_MREG_RSP;
    }
    int err = coro__sig_capture(&crash_snap, ucontext ? &self : NULL);
    const char *abbrev = sigabbrev_np(signo);
    coro__out_str(&o, "coroscope: crash report: SIG");
    coro__out_str(&o, abbrev ? abbrev : "?");
    coro__out_str(&o, " in thread ");
    coro__out_i64(&o, gettid());
    if (err < 0) {
        coro__out_str(&o, "; no snapshot: ");
        coro__out_str(&o, strerrorname_np(-err) ? strerrorname_np(-err) : "error");
        coro__out_str(&o, "\n");
        coro__out_flush(&o);
        return;
    }
    coro__out_str(&o, ", ");
    coro__out_u64(&o, crash_snap.ncoroutines);
    coro__out_str(&o, " coroutines (#N exact pc, ?N found by scanning the stack)\n");
    const SigSnapshot *s = &crash_snap;
    bool fenced;
    const struct coro_debug_abi *abi = coro__sig_find(s, s->abi_addr, sizeof(*abi), &fenced);
    uint64_t addr = abi ? abi->records : 0;
    for (uint64_t n = 0; abi && addr && n < abi->nrecords; n++) {
        const Coroutine *rec = coro__sig_find(s, addr, sizeof(Coroutine), &fenced);
        if (!rec) {
            break;
        }
        uint32_t st = rec->state;
        if (st == CORO_STATE_CREATED || st == CORO_STATE_RUNNING ||
            st == CORO_STATE_SUSPENDED || st == CORO_STATE_NESTED) {
            out_header(&o, rec);
            uint64_t top = (uint64_t)(uintptr_t)rec->stack_base + rec->stack_size;
            if (st == CORO_STATE_CREATED) {
                out_frame(&o, 0, (uint64_t)(uintptr_t)rec->entry, false, false);
            } else if (st == CORO_STATE_RUNNING) {
                const SigThread *t = NULL;
                for (size_t i = 0; i < s->nthreads; i++) {
                    if (s->threads[i].tid == rec->tid && s->threads[i].held) {
                        t = &s->threads[i];
                    }
                }
                if (t) {
                    out_frames(&o, t->regs.rip, t->regs.rip_is_return_address, t->regs.rsp, top, s);
                } else {
                    coro__out_str(&o, "  (running on a thread that could not be stopped)\n");
                }
            } else {
                /* A saved context: rip is the return address into the suspended function. */
                out_frames(&o, rec->regs.rip, true, rec->regs.rsp, top, s);
            }
        }
        addr = (uint64_t)(uintptr_t)rec->next;
    }
    coro__out_str(&o, "coroscope: end of crash report; symbolize with "
                      "eu-addr2line -f -i -e MODULE OFFSET\n");
    coro__out_flush(&o);
}

/* ---- the handler ---- */

/* SIGSEGV is not here: inspect/guard.c owns the one SIGSEGV handler (stack overflows) and
 * calls coro__sig_crash_report() from it when the report is armed. */
static const int crash_signals[] = { SIGBUS, SIGABRT, SIGFPE };
static _Atomic int reporting;
static _Atomic bool armed;

static void crash_handler(int signo, siginfo_t *si, void *uc)
{
    /* One report per process: a second crash (in another thread, or in the report) goes
     * straight to the default action. */
    coro__sig_crash_report_once(signo, uc);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(signo, &dfl, NULL);
    /* A fault the kernel raised happens again when we return, now with the default action
     * (the core shows the original fault). A sent signal (kill, abort) is sent again. */
    if (si->si_code > 0 && signo != SIGABRT) {
        return;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    tgkill(getpid(), gettid(), signo);
}

bool coro__sig_crash_armed(void)
{
    return atomic_load_explicit(&armed, memory_order_acquire);
}

void coro__sig_crash_report_once(int signo, const void *ucontext)
{
    if (coro__sig_crash_armed() && !atomic_exchange(&reporting, 1)) {
        coro__sig_crash_report(STDERR_FILENO, signo, ucontext);
    }
}

int coro__sig_crash_init(void)
{
    int err = coro__sig_hold_init();
    if (err < 0) {
        return err;
    }
    coro__sig_crash_modules_refresh();
    atomic_store_explicit(&armed, true, memory_order_release);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (unsigned i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++) {
        sigaddset(&sa.sa_mask, crash_signals[i]);
    }
    for (unsigned i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++) {
        struct sigaction old;
        if (sigaction(crash_signals[i], NULL, &old) != 0) {
            continue;
        }
        /* Never replace a handler of the program's. */
        if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) {
            continue;
        }
        sigaction(crash_signals[i], &sa, NULL);
    }
    return 0;
}
