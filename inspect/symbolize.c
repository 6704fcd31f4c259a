/*
 * pc -> function, offset, file:line, module, inline chain; with libdw, cached.
 *
 * dwfl_module_addrinfo scans a module's symbol table linearly (50-120 us per address,
 * shared/FIELD-NOTES.md), so each module's function symbols are sorted once and searched
 * by bisection. file:line comes from the line table (dwfl_module_getsrc), inline chains
 * from dwarf_getscopes with the DW_AT_call_file/DW_AT_call_line of each inlined instance (as
 * `eu-addr2line -i`). Every answer is cached per (address, flags) for the symbolizer's life:
 * parked coroutines share their pcs, so most frames of a large dump are one hash lookup.
 *
 * Strings handed out are libdw's own (symbol and file names of modules in the borrowed
 * Dwfl): they stay valid as long as that Dwfl does, which outlives the symbolizer.
 */
#define _GNU_SOURCE
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>

#include "inspect-int.h"
#include "symbol-name-int.h"

#define MAX_INLINE 16

typedef struct Sym {
    uint64_t addr, size;
    const char *name;
    int rank;                 /* prefer global over weak over local at the same address */
} Sym;

typedef struct ModSyms {
    Dwfl_Module *mod;
    const char *name;
    Sym *syms;
    size_t nsyms;
    char *names;              /* shown names of clones (symbol-name-int.h) */
} ModSyms;

typedef struct Entry {
    uint64_t key;             /* lookup address; 0 empty */
    unsigned flags;
    uint32_t first;           /* index into the frame pool */
    uint16_t nframes;
    uint64_t symstart;        /* start of the real function; 0 unknown */
} Entry;

struct CoroSymbolizer {
    Dwfl *dwfl;
    ModSyms *mods;
    size_t nmods, capmods;
    size_t lastmod;
    Entry *tab;
    size_t cap, count;
    CoroFrame *pool;
    size_t npool, cappool;
};

CoroSymbolizer *coro__symbolizer_create(Dwfl *dwfl)
{
    CoroSymbolizer *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->dwfl = dwfl;
    s->cap = 1024;
    s->tab = calloc(s->cap, sizeof(Entry));
    if (!s->tab) {
        free(s);
        errno = ENOMEM;
        return NULL;
    }
    return s;
}

void coro__symbolizer_destroy(CoroSymbolizer *s)
{
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->nmods; i++) {
        free(s->mods[i].syms);
        free(s->mods[i].names);
    }
    free(s->mods);
    free(s->tab);
    free(s->pool);
    free(s);
}

static int sym_cmp(const void *a, const void *b)
{
    const Sym *x = a, *y = b;
    if (x->addr != y->addr) {
        return x->addr < y->addr ? -1 : 1;
    }
    if ((x->size > 0) != (y->size > 0)) {
        return x->size > 0 ? -1 : 1;
    }
    return x->rank - y->rank;
}

static ModSyms *mod_syms(CoroSymbolizer *s, Dwfl_Module *m)
{
    if (s->nmods && s->mods[s->lastmod].mod == m) {
        return &s->mods[s->lastmod];
    }
    for (size_t i = 0; i < s->nmods; i++) {
        if (s->mods[i].mod == m) {
            s->lastmod = i;
            return &s->mods[i];
        }
    }
    if (s->nmods == s->capmods) {
        size_t ncap = s->capmods ? s->capmods * 2 : 16;
        ModSyms *nm = realloc(s->mods, ncap * sizeof(*nm));
        if (!nm) {
            return NULL;
        }
        s->mods = nm;
        s->capmods = ncap;
    }
    ModSyms *ms = &s->mods[s->nmods];
    memset(ms, 0, sizeof(*ms));
    ms->mod = m;
    int n = dwfl_module_getsymtab(m);
    /* A module's path, as JSON's "module" promises, for every target: libdwfl names the
     * modules of a core by soname ("libc.so.6"), so take the file it found for them then. */
    const char *mainfile = NULL;
    const char *modname = dwfl_module_info(m, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
    ms->name = modname && modname[0] != '/' && mainfile && mainfile[0] == '/' ? mainfile : modname;
    if (n > 0) {
        ms->syms = malloc((size_t)n * sizeof(Sym));
    }
    if (ms->syms) {
        for (int i = 1; i < n; i++) {
            GElf_Sym sym;
            GElf_Addr addr;
            GElf_Word shndx;
            const char *name = dwfl_module_getsym_info(m, i, &sym, &addr, &shndx, NULL, NULL);
            int type = GELF_ST_TYPE(sym.st_info);
            if (!name || !name[0] || addr == 0 || shndx == SHN_UNDEF ||
                (type != STT_FUNC && type != STT_GNU_IFUNC)) {
                continue;
            }
            int bind = GELF_ST_BIND(sym.st_info);
            Sym *e = &ms->syms[ms->nsyms++];
            e->addr = addr;
            e->size = sym.st_size;
            e->name = name;
            e->rank = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
        }
        qsort(ms->syms, ms->nsyms, sizeof(Sym), sym_cmp);
        /* Keep the best symbol of each address. */
        size_t w = 0;
        for (size_t i = 0; i < ms->nsyms; i++) {
            if (w == 0 || ms->syms[w - 1].addr != ms->syms[i].addr) {
                ms->syms[w++] = ms->syms[i];
            }
        }
        ms->nsyms = w;
        /* Clones' names as shown ("f.isra.0" -> "f", "f.part.0@V_1" -> "f@V_1"), copied
         * into one buffer. */
        size_t need = 0, cut0, cut1;
        for (size_t i = 0; i < ms->nsyms; i++) {
            size_t len = strlen(ms->syms[i].name);
            if (coro__symbol_clone_suffix(ms->syms[i].name, len, &cut0, &cut1)) {
                need += len - (cut1 - cut0) + 1;
            }
        }
        ms->names = need ? malloc(need) : NULL;
        size_t at = 0;
        for (size_t i = 0; ms->names && i < ms->nsyms; i++) {
            const char *name = ms->syms[i].name;
            size_t len = strlen(name);
            if (coro__symbol_clone_suffix(name, len, &cut0, &cut1)) {
                char *d = ms->names + at;
                memcpy(d, name, cut0);
                memcpy(d + cut0, name + cut1, len - cut1);
                d[cut0 + len - cut1] = '\0';
                ms->syms[i].name = d;
                at += cut0 + len - cut1 + 1;
            }
        }
    }
    s->lastmod = s->nmods++;
    return ms;
}

static const Sym *sym_find(const ModSyms *ms, uint64_t a)
{
    size_t lo = 0, hi = ms->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ms->syms[mid].addr <= a) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return NULL;
    }
    const Sym *e = &ms->syms[lo - 1];
    if (e->size > 0 && a >= e->addr + e->size) {
        return NULL;
    }
    return e;
}

static size_t slot_of(const CoroSymbolizer *s, uint64_t key, unsigned flags)
{
    uint64_t k = key * 0x9e3779b97f4a7c15ull ^ flags;
    k ^= k >> 29;
    return (size_t)k & (s->cap - 1);
}

static Entry *entry_find(CoroSymbolizer *s, uint64_t key, unsigned flags)
{
    for (size_t i = slot_of(s, key, flags);; i = (i + 1) & (s->cap - 1)) {
        if (s->tab[i].key == key && s->tab[i].flags == flags) {
            return &s->tab[i];
        }
        if (s->tab[i].key == 0) {
            return NULL;
        }
    }
}

static Entry *entry_add(CoroSymbolizer *s, const Entry *e)
{
    if ((s->count + 1) * 2 > s->cap) {
        Entry *old = s->tab;
        size_t oldcap = s->cap;
        s->tab = calloc(oldcap * 2, sizeof(Entry));
        if (!s->tab) {
            s->tab = old;
            return NULL;
        }
        s->cap = oldcap * 2;
        for (size_t i = 0; i < oldcap; i++) {
            if (old[i].key) {
                size_t j = slot_of(s, old[i].key, old[i].flags);
                while (s->tab[j].key) {
                    j = (j + 1) & (s->cap - 1);
                }
                s->tab[j] = old[i];
            }
        }
        free(old);
    }
    size_t i = slot_of(s, e->key, e->flags);
    while (s->tab[i].key) {
        i = (i + 1) & (s->cap - 1);
    }
    s->tab[i] = *e;
    s->count++;
    return &s->tab[i];
}

static CoroFrame *pool_take(CoroSymbolizer *s, size_t n, uint32_t *first)
{
    if (s->npool + n > s->cappool) {
        size_t ncap = s->cappool ? s->cappool * 2 : 1024;
        while (ncap < s->npool + n) {
            ncap *= 2;
        }
        CoroFrame *np = realloc(s->pool, ncap * sizeof(*np));
        if (!np) {
            return NULL;
        }
        s->pool = np;
        s->cappool = ncap;
    }
    *first = (uint32_t)s->npool;
    s->npool += n;
    memset(&s->pool[*first], 0, n * sizeof(CoroFrame));
    return &s->pool[*first];
}

static void call_site(Dwarf_Die *die, Dwarf_Files *files, size_t nfiles, const char **file,
                      int *line)
{
    Dwarf_Attribute at;
    Dwarf_Word w;
    *file = NULL;
    *line = 0;
    if (files && dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &at), &w) == 0 && w < nfiles) {
        *file = dwarf_filesrc(files, w, NULL, NULL);
    }
    if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &at), &w) == 0 && w < 0x7fffffff) {
        *line = (int)w;
    }
}

/* The DIE that names a function instance: its abstract origin, else itself. */
static Dwarf_Off origin_of(Dwarf_Die *die, Dwarf_Die *origin)
{
    Dwarf_Attribute at;
    if (!dwarf_attr(die, DW_AT_abstract_origin, &at) || !dwarf_formref_die(&at, origin)) {
        *origin = *die;
    }
    return dwarf_dieoffset(origin);
}

/*
 * GCC's partial inlining (ipa-split) moves the body of f into f.part.0, then may inline that
 * back into f: the DWARF then holds f inlined into f, called from f's own declaration (the
 * same file, line and column). That is one call, and gdb and eu-stack show one frame; a
 * function that really inlines a recursive call to itself calls from a line of its body.
 * True for such an instance chain[i], whose caller is the next function scope of the chain.
 */
static bool self_inline(Dwarf_Die *chain, int nc, int i, Dwarf_Files *files, size_t nfiles)
{
    int caller = i + 1;
    while (caller < nc && dwarf_tag(&chain[caller]) != DW_TAG_inlined_subroutine &&
           dwarf_tag(&chain[caller]) != DW_TAG_subprogram) {
        caller++;
    }
    Dwarf_Die origin, caller_origin;
    if (caller >= nc ||
        origin_of(&chain[i], &origin) != origin_of(&chain[caller], &caller_origin)) {
        return false;
    }
    const char *file, *decl_file = dwarf_decl_file(&origin);
    int line, decl_line, decl_col;
    Dwarf_Attribute at;
    Dwarf_Word col;
    call_site(&chain[i], files, nfiles, &file, &line);
    if (!file || !decl_file || strcmp(file, decl_file) != 0 ||
        dwarf_decl_line(&origin, &decl_line) != 0 || line != decl_line) {
        return false;
    }
    if (dwarf_formudata(dwarf_attr(&chain[i], DW_AT_call_column, &at), &col) == 0 &&
        dwarf_decl_column(&origin, &decl_col) == 0 && (int64_t)col != decl_col) {
        return false;
    }
    return true;
}

static Entry *resolve(CoroSymbolizer *s, uint64_t a, unsigned flags)
{
    Entry e = { .key = a, .flags = flags };
    Dwfl_Module *m = dwfl_addrmodule(s->dwfl, a);
    if (!m) {
        CoroFrame *f = pool_take(s, 1, &e.first);
        if (!f) {
            return NULL;
        }
        e.nframes = 1;
        return entry_add(s, &e);
    }
    ModSyms *ms = mod_syms(s, m);
    const Sym *sym = ms ? sym_find(ms, a) : NULL;
    const char *file = NULL;
    int line = 0;
    if (!(flags & CORO_SYM_NO_LINES)) {
        Dwfl_Line *l = dwfl_module_getsrc(m, a);
        if (l) {
            file = dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL);
        }
    }
    /* Inline chain, innermost first: names and the call site of each instance. */
    const char *inl_name[MAX_INLINE], *inl_file[MAX_INLINE];
    int inl_line[MAX_INLINE];
    size_t ninl = 0;
    if (!(flags & CORO_SYM_NO_INLINES)) {
        Dwarf_Addr bias;
        Dwarf_Die *cu = dwfl_module_addrdie(m, a, &bias);
        Dwarf_Die *scopes = NULL, *chain = NULL;
        int ns = cu ? dwarf_getscopes(cu, a - bias, &scopes) : 0;
        /* dwarf_getscopes follows an inlined instance into its abstract definition (whose
         * DW_TAG_subprogram would end the chain after one level); the concrete chain of
         * nested inlined instances up to the real function is what dwarf_getscopes_die
         * gives for the innermost scope. */
        int nc = ns > 0 ? dwarf_getscopes_die(&scopes[0], &chain) : 0;
        Dwarf_Files *files = NULL;
        size_t nfiles = 0;
        if (nc > 0 && dwarf_getsrcfiles(cu, &files, &nfiles) != 0) {
            files = NULL;
        }
        for (int i = 0; i < nc && ninl < MAX_INLINE; i++) {
            int tag = dwarf_tag(&chain[i]);
            if (tag == DW_TAG_subprogram) {
                break;
            }
            if (tag == DW_TAG_inlined_subroutine && self_inline(chain, nc, i, files, nfiles)) {
                /* One frame: the caller's takes the line inside, from the next instance in
                 * (or the line table), as if the call had never been split. */
                continue;
            }
            if (tag == DW_TAG_inlined_subroutine) {
                inl_name[ninl] = dwarf_diename(&chain[i]);
                call_site(&chain[i], files, nfiles, &inl_file[ninl], &inl_line[ninl]);
                ninl++;
            }
        }
        free(chain);
        free(scopes);
    }
    CoroFrame *f = pool_take(s, ninl + 1, &e.first);
    if (!f) {
        return NULL;
    }
    e.nframes = (uint16_t)(ninl + 1);
    const char *mname = ms ? ms->name : NULL;
    for (size_t i = 0; i <= ninl; i++) {
        f[i].module = mname;
        f[i].offset = -1;
        f[i].inlined = i < ninl;
        f[i].function = i < ninl ? inl_name[i] : (sym ? sym->name : NULL);
        if (i == 0) {
            f[i].file = file;
            f[i].line = line;
        } else if (!(flags & CORO_SYM_NO_LINES)) {
            f[i].file = inl_file[i - 1];
            f[i].line = inl_line[i - 1];
        }
    }
    e.symstart = sym ? sym->addr : 0;
    return entry_add(s, &e);
}

int coro__symbolize(CoroSymbolizer *s, uint64_t pc, bool is_return_address, unsigned flags,
                    CoroFrame *out, size_t max)
{
    uint64_t a = is_return_address && pc ? pc - 1 : pc;
    if (a == 0) {
        if (max) {
            memset(out, 0, sizeof(*out));
            out->offset = -1;
        }
        return 1;
    }
    Entry *e = entry_find(s, a, flags);
    if (!e) {
        e = resolve(s, a, flags);
        if (!e) {
            return -ENOMEM;
        }
    }
    size_t n = e->nframes;
    for (size_t i = 0; i < n && i < max; i++) {
        out[i] = s->pool[e->first + i];
        out[i].pc = pc;
        out[i].offset = -1;
        if (i == n - 1 && e->symstart && out[i].function) {
            out[i].offset = (int64_t)(pc - e->symstart);
        }
    }
    return (int)n;
}
