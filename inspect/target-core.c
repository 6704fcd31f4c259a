/*
 * An ELF core file as a target: kernel cores and gdb `gcore` cores of x86_64 processes.
 *
 * Memory comes from the PT_LOAD segments. A core leaves out read-only file-backed pages
 * (.text, .rodata: filesz < memsz), so bytes there are read from the file that was mapped:
 * first the module's ELF as libdwfl found it (which is the -e executable when one is given,
 * build-id checked), then the file the core's NT_FILE note names. Registers come from one
 * NT_PRSTATUS note per thread. Nothing here attaches unwinder state to the Dwfl (the
 * unwinder calls dwfl_attach_state with its own callbacks).
 *
 * The core is untrusted input: every header, note and offset is checked against the file
 * size before use, and a core cut short (ulimit -c, a full disk) is refused with its sizes.
 */
#define _GNU_SOURCE
#include <elfutils/libdwelf.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/procfs.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <unistd.h>

#include "elf-target-int.h"

#ifndef NT_FILE
#define NT_FILE 0x46494c45
#endif

/* Sanity caps for counts read from the core. */
#define MAX_FILE_ENTRIES 1000000u
#define MAX_THREADS 100000u

typedef struct CoreSeg {
    uint64_t vaddr, memsz, filesz, offset;
} CoreSeg;

typedef struct CoreFile {
    uint64_t start, end, offset; /* offset in bytes */
    const char *name;            /* into the note data */
    int fd;                      /* -1 unopened, -2 failed */
} CoreFile;

typedef struct CoreThread {
    int32_t tid;
    struct user_regs_struct regs;
} CoreThread;

typedef struct CoreTarget {
    ElfTarget e;
    int fd;
    Elf *elf;
    uint64_t file_size;
    CoreSeg *segs;
    size_t nsegs;
    CoreThread *threads;
    size_t nthreads;
    CoreFile *files;
    size_t nfiles;
    char *file_note;             /* copy of the NT_FILE note: names point into it */
    uint64_t at_entry;           /* AT_ENTRY from NT_AUXV, 0 if none */
    char fname[17];              /* NT_PRPSINFO pr_fname */
    char *exe;                   /* -e, or NULL */
    Dwfl_Module *main_mod;       /* the module holding AT_ENTRY, when -e was given */
    struct CoreTarget *next_exe; /* on exe_targets while open */
} CoreTarget;

static char *core_debuginfo_path;

/*
 * Open core targets that were given -e, so that libdwfl's callbacks (which get a module, not
 * our target) can find the executable for the main module: find_elf when the core's notes
 * name a file that is gone, find_debuginfo when that file is there but stripped (the -e file
 * then supplies symbols and DWARF; open() has checked that the build-ids agree).
 */
static pthread_mutex_t exe_lock = PTHREAD_MUTEX_INITIALIZER;
static CoreTarget *exe_targets;

static int open_exe_for(Dwfl_Module *mod, char **file_name, Elf **elfp)
{
    char *path = NULL;
    pthread_mutex_lock(&exe_lock);
    for (CoreTarget *c = exe_targets; c; c = c->next_exe) {
        if (c->main_mod == mod) {
            path = strdup(c->exe);
            break;
        }
    }
    pthread_mutex_unlock(&exe_lock);
    if (!path) {
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        free(path);
        return -1;
    }
    if (elfp) {
        *elfp = elf_begin(fd, ELF_C_READ_MMAP, NULL);
        if (!*elfp) {
            close(fd);
            free(path);
            return -1;
        }
    }
    *file_name = path;
    return fd;
}

static int core_find_elf(Dwfl_Module *mod, void **userdata, const char *modname,
                         Dwarf_Addr base, char **file_name, Elf **elfp)
{
    int fd = open_exe_for(mod, file_name, elfp);
    if (fd >= 0) {
        return fd;
    }
    return dwfl_build_id_find_elf(mod, userdata, modname, base, file_name, elfp);
}

static int core_find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
                               Dwarf_Addr base, const char *file_name,
                               const char *debuglink_file, GElf_Word debuglink_crc,
                               char **debuginfo_file_name)
{
    int fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name,
                                          debuglink_file, debuglink_crc, debuginfo_file_name);
    if (fd >= 0) {
        return fd;
    }
    return open_exe_for(mod, debuginfo_file_name, NULL);
}

static const Dwfl_Callbacks core_callbacks = {
    .find_elf = core_find_elf,
    .find_debuginfo = core_find_debuginfo,
    .debuginfo_path = &core_debuginfo_path,
};

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -EFAULT;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Reads [addr, addr+len) from the ELF file of the module mapped there, through its program
 * headers. Returns the bytes read (maybe fewer than len at a segment end), or -EFAULT. */
static ssize_t read_from_module(CoreTarget *c, uint64_t addr, void *buf, size_t len)
{
    Dwfl *dwfl = c->e.base.dwfl;
    if (!dwfl) {
        return -EFAULT;
    }
    Dwfl_Module *mod = dwfl_addrmodule(dwfl, addr);
    if (!mod) {
        return -EFAULT;
    }
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    if (!elf) {
        return -EFAULT;
    }
    size_t raw_size;
    char *raw = elf_rawfile(elf, &raw_size);
    size_t nph;
    if (!raw || elf_getphdrnum(elf, &nph) != 0) {
        return -EFAULT;
    }
    uint64_t rel = addr - bias;
    for (size_t i = 0; i < nph; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD) {
            continue;
        }
        if (rel < ph.p_vaddr || rel - ph.p_vaddr >= ph.p_filesz) {
            continue;
        }
        uint64_t off = ph.p_offset + (rel - ph.p_vaddr);
        uint64_t avail = ph.p_filesz - (rel - ph.p_vaddr);
        size_t n = len < avail ? len : (size_t)avail;
        if (off > raw_size || n > raw_size - off) {
            return -EFAULT;
        }
        memcpy(buf, raw + off, n);
        return (ssize_t)n;
    }
    return -EFAULT;
}

/* Opens path for reading when it is a regular file, else -2. The name comes from the core:
 * it may name a FIFO (open would wait for a writer) or a device; O_NONBLOCK keeps open from
 * waiting, and only a regular file is read. */
static int open_regular(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    return fd < 0 ? -2 : fd;
}

/* Reads from the file the NT_FILE note says was mapped at addr. */
static ssize_t read_from_mapped_file(CoreTarget *c, uint64_t addr, void *buf, size_t len)
{
    for (size_t i = 0; i < c->nfiles; i++) {
        CoreFile *f = &c->files[i];
        if (addr < f->start || addr >= f->end) {
            continue;
        }
        if (f->fd == -1) {
            f->fd = open_regular(f->name);
        }
        if (f->fd < 0) {
            return -EFAULT;
        }
        uint64_t avail = f->end - addr;
        size_t n = len < avail ? len : (size_t)avail;
        ssize_t got = pread(f->fd, buf, n, (off_t)(f->offset + (addr - f->start)));
        return got > 0 ? got : -EFAULT;
    }
    return -EFAULT;
}

static int core_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    CoreTarget *c = (CoreTarget *)t;
    char *out = buf;
    while (len > 0) {
        if (addr + len < addr) {
            return -EFAULT;
        }
        ssize_t got = -EFAULT;
        for (size_t i = 0; i < c->nsegs; i++) {
            CoreSeg *s = &c->segs[i];
            if (addr < s->vaddr || addr - s->vaddr >= s->memsz) {
                continue;
            }
            uint64_t rel = addr - s->vaddr;
            if (rel < s->filesz) {
                uint64_t avail = s->filesz - rel;
                size_t n = len < avail ? len : (size_t)avail;
                got = pread_full(c->fd, out, n, s->offset + rel) == 0 ? (ssize_t)n : -EFAULT;
            } else {
                /* Mapped but not dumped: a read-only file-backed page. */
                uint64_t avail = s->memsz - rel;
                size_t n = len < avail ? len : (size_t)avail;
                got = read_from_module(c, addr, out, n);
                if (got < 0) {
                    got = read_from_mapped_file(c, addr, out, n);
                }
            }
            break;
        }
        if (got <= 0) {
            return -EFAULT;
        }
        out += got;
        addr += (uint64_t)got;
        len -= (size_t)got;
    }
    return 0;
}

static int core_thread_regs(CoroTarget *t, int32_t tid, CoroMachineRegs *out)
{
    CoreTarget *c = (CoreTarget *)t;
    for (size_t i = 0; i < c->nthreads; i++) {
        if (c->threads[i].tid != tid) {
            continue;
        }
        const struct user_regs_struct *r = &c->threads[i].regs;
        *out = (CoroMachineRegs){
            .rip = r->rip, .rsp = r->rsp, .rbp = r->rbp, .rbx = r->rbx,
            .r12 = r->r12, .r13 = r->r13, .r14 = r->r14, .r15 = r->r15,
            .rax = r->rax, .rcx = r->rcx, .rdx = r->rdx, .rsi = r->rsi, .rdi = r->rdi,
            .r8 = r->r8, .r9 = r->r9, .r10 = r->r10, .r11 = r->r11,
            .valid = CORO_MREG_CALLEE_SAVED | CORO_MREG_ALL,
            .rip_is_return_address = false,
        };
        return 0;
    }
    return -ESRCH;
}

static int core_report_modules(CoroTarget *t, Dwfl *dwfl)
{
    CoreTarget *c = (CoreTarget *)t;
    int n = dwfl_core_file_report(dwfl, c->elf, c->exe);
    return n < 0 ? -EIO : 0;
}

static void core_close(CoroTarget *t)
{
    CoreTarget *c = (CoreTarget *)t;
    if (c->main_mod) {
        pthread_mutex_lock(&exe_lock);
        for (CoreTarget **p = &exe_targets; *p; p = &(*p)->next_exe) {
            if (*p == c) {
                *p = c->next_exe;
                break;
            }
        }
        pthread_mutex_unlock(&exe_lock);
    }
    if (t->dwfl) {
        dwfl_end(t->dwfl);
    }
    for (size_t i = 0; i < c->nfiles; i++) {
        if (c->files[i].fd >= 0) {
            close(c->files[i].fd);
        }
    }
    if (c->elf) {
        elf_end(c->elf);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->segs);
    free(c->threads);
    free(c->files);
    free(c->file_note);
    free(c->exe);
    free(c->e.tids);
    free(c);
}

static const CoroTargetOps core_ops = {
    .read = core_read,
    .thread_regs = core_thread_regs,
    .report_modules = core_report_modules,
    .close = core_close,
};

static int parse_file_note(CoreTarget *c, const char *desc, size_t size)
{
    if (size < 16) {
        return -EINVAL;
    }
    uint64_t count, page;
    memcpy(&count, desc, 8);
    memcpy(&page, desc + 8, 8);
    if (count > MAX_FILE_ENTRIES || page == 0 || page > (1u << 30) ||
        16 + count * 24 > size) {
        return -EINVAL;
    }
    c->file_note = malloc(size + 1);
    c->files = calloc(count ? count : 1, sizeof(*c->files));
    if (!c->file_note || !c->files) {
        return -ENOMEM;
    }
    memcpy(c->file_note, desc, size);
    c->file_note[size] = '\0';
    const char *name = c->file_note + 16 + count * 24;
    const char *end = c->file_note + size;
    for (uint64_t i = 0; i < count && name < end; i++) {
        CoreFile *f = &c->files[c->nfiles];
        uint64_t v[3];
        memcpy(v, desc + 16 + i * 24, 24);
        size_t nlen = strnlen(name, (size_t)(end - name));
        if (v[0] < v[1] && v[2] <= UINT64_MAX / page) {
            *f = (CoreFile){ .start = v[0], .end = v[1], .offset = v[2] * page, .name = name,
                             .fd = -1 };
            c->nfiles++;
        }
        name += nlen + 1;
    }
    return 0;
}

static int parse_notes(CoreTarget *c, const GElf_Phdr *ph)
{
    Elf_Data *data = elf_getdata_rawchunk(c->elf, (int64_t)ph->p_offset, ph->p_filesz,
                                          ELF_T_NHDR);
    if (!data) {
        return -EINVAL;
    }
    size_t off = 0, name_off, desc_off;
    GElf_Nhdr nh;
    while (off < data->d_size && (off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
        const char *name = (const char *)data->d_buf + name_off;
        const char *desc = (const char *)data->d_buf + desc_off;
        if (nh.n_namesz != 5 || memcmp(name, "CORE", 5) != 0) {
            continue;
        }
        if (nh.n_type == NT_PRSTATUS && nh.n_descsz >= sizeof(struct elf_prstatus)) {
            if (c->nthreads >= MAX_THREADS) {
                continue;
            }
            CoreThread *n = realloc(c->threads, (c->nthreads + 1) * sizeof(*n));
            if (!n) {
                return -ENOMEM;
            }
            c->threads = n;
            struct elf_prstatus st;
            memcpy(&st, desc, sizeof(st));
            n[c->nthreads].tid = st.pr_pid;
            _Static_assert(sizeof(st.pr_reg) == sizeof(struct user_regs_struct), "x86_64");
            memcpy(&n[c->nthreads].regs, &st.pr_reg, sizeof(st.pr_reg));
            if (c->nthreads == 0) {
                c->e.base.pid = st.pr_pid;
            }
            c->nthreads++;
        } else if (nh.n_type == NT_PRPSINFO && nh.n_descsz >= sizeof(struct elf_prpsinfo)) {
            struct elf_prpsinfo ps;
            memcpy(&ps, desc, sizeof(ps));
            memcpy(c->fname, ps.pr_fname, sizeof(ps.pr_fname));
            c->fname[sizeof(ps.pr_fname)] = '\0';
        } else if (nh.n_type == NT_FILE && !c->files) {
            int rc = parse_file_note(c, desc, nh.n_descsz);
            if (rc == -ENOMEM) {
                return rc;
            }
        } else if (nh.n_type == NT_AUXV) {
            for (size_t i = 0; i + 16 <= nh.n_descsz; i += 16) {
                uint64_t kv[2];
                memcpy(kv, desc + i, 16);
                if (kv[0] == AT_ENTRY) {
                    c->at_entry = kv[1];
                }
            }
        }
    }
    return 0;
}

static int fail(CoreTarget *c, int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(CoreTarget *c, int rc, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    core_close(&c->e.base);
    return rc;
}

static void hex(const unsigned char *b, int n, char *out, size_t outlen)
{
    size_t o = 0;
    for (int i = 0; i < n && o + 3 <= outlen; i++) {
        o += (size_t)snprintf(out + o, outlen - o, "%02x", b[i]);
    }
    if (o == 0 && outlen) {
        out[0] = '\0';
    }
}

/* With -e: the build-id the core holds for its main executable (read from the dumped first
 * page of its mapping) must be the executable's. */
static int check_build_id(CoreTarget *c, const char *core, char *err, size_t errlen)
{
    int fd = open(c->exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(c, -errno, err, errlen, "cannot open executable %s: %s", c->exe,
                    strerror(errno));
    }
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    GElf_Ehdr eh;
    if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh) ||
        (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)) {
        if (elf) {
            elf_end(elf);
        }
        close(fd);
        return fail(c, -ENOEXEC, err, errlen, "executable %s is not an ELF executable",
                    c->exe);
    }
    const void *exe_id = NULL;
    ssize_t exe_len = dwelf_elf_gnu_build_id(elf, &exe_id);
    unsigned char exe_copy[64];
    if (exe_len > 0 && exe_len <= (ssize_t)sizeof(exe_copy)) {
        memcpy(exe_copy, exe_id, (size_t)exe_len);
    } else {
        exe_len = 0;
    }
    elf_end(elf);
    close(fd);

    /* Modules as the core alone describes them (no executable given). */
    Dwfl *probe = dwfl_begin(&core_callbacks);
    if (!probe) {
        return 0;
    }
    dwfl_report_begin(probe);
    int n = dwfl_core_file_report(probe, c->elf, NULL);
    dwfl_report_end(probe, NULL, NULL);
    Dwfl_Module *main_mod = NULL;
    if (n > 0 && c->at_entry) {
        main_mod = dwfl_addrmodule(probe, c->at_entry);
    }
    const unsigned char *core_id = NULL;
    GElf_Addr vaddr;
    int core_len = main_mod ? dwfl_module_build_id(main_mod, &core_id, &vaddr) : 0;
    int rc = 0;
    if (core_len > 0 && exe_len > 0 &&
        (core_len != exe_len || memcmp(core_id, exe_copy, (size_t)exe_len) != 0)) {
        char a[130], b[130];
        hex(exe_copy, (int)exe_len, a, sizeof(a));
        hex(core_id, core_len, b, sizeof(b));
        dwfl_end(probe);
        return fail(c, -EINVAL, err, errlen,
                    "executable %s does not match core file %s: its build-id is %s, the "
                    "core's executable had %s (pass the executable that made the core)",
                    c->exe, core, a, b);
    }
    dwfl_end(probe);
    return rc;
}

/* The ELF header: a 64-bit x86_64 core. 0, or -errno with c freed (fail). */
static int core_check_header(CoreTarget *c, const char *core, char *err, size_t errlen)
{
    struct stat st;
    if (c->fd < 0 || fstat(c->fd, &st) < 0) {
        int e = errno;
        return fail(c, -e, err, errlen, "cannot open core file %s: %s", core, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        return fail(c, -ENOEXEC, err, errlen, "cannot read core file %s: not a regular file",
                    core);
    }
    c->file_size = (uint64_t)st.st_size;
    c->elf = elf_begin(c->fd, ELF_C_READ_MMAP, NULL);
    GElf_Ehdr eh;
    if (!c->elf || elf_kind(c->elf) != ELF_K_ELF || !gelf_getehdr(c->elf, &eh)) {
        return fail(c, -ENOEXEC, err, errlen, "%s is not a core file: not an ELF file", core);
    }
    if (eh.e_type != ET_CORE) {
        return fail(c, -ENOEXEC, err, errlen,
                    "%s is not a core file: it is an ELF %s (pass the core with --core and the "
                    "program with -e)", core,
                    eh.e_type == ET_EXEC || eh.e_type == ET_DYN ? "executable or library"
                                                                : "object of another type");
    }
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
        return fail(c, -ENOEXEC, err, errlen,
                    "cannot read core file %s: it is for machine %d, %s-bit; coroscope reads "
                    "x86_64 cores", core, (int)eh.e_machine,
                    eh.e_ident[EI_CLASS] == ELFCLASS64 ? "64" : "32");
    }
    return 0;
}

/* The program headers (PT_LOAD segments, the size they need) and the notes (threads, files,
 * auxv). 0, or -errno with c freed. */
static int core_read_segments(CoreTarget *c, const char *core, char *err, size_t errlen)
{
    size_t nph;
    if (elf_getphdrnum(c->elf, &nph) != 0 || nph == 0) {
        return fail(c, -ENOEXEC, err, errlen, "cannot read core file %s: no program headers",
                    core);
    }
    c->segs = calloc(nph, sizeof(*c->segs));
    if (!c->segs) {
        return fail(c, -ENOMEM, err, errlen, "cannot read core file %s: out of memory", core);
    }
    uint64_t need = 0;
    for (size_t i = 0; i < nph; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(c->elf, (int)i, &ph)) {
            return fail(c, -ENOEXEC, err, errlen, "cannot read core file %s: bad program "
                        "header %zu", core, i);
        }
        if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE) {
            continue;
        }
        if (ph.p_offset + ph.p_filesz < ph.p_offset) {
            return fail(c, -ENOEXEC, err, errlen, "cannot read core file %s: corrupt "
                        "program header %zu", core, i);
        }
        if (ph.p_offset + ph.p_filesz > need) {
            need = ph.p_offset + ph.p_filesz;
        }
        if (ph.p_type == PT_LOAD) {
            if (ph.p_filesz > ph.p_memsz || ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
                return fail(c, -ENOEXEC, err, errlen, "cannot read core file %s: corrupt "
                            "program header %zu", core, i);
            }
            c->segs[c->nsegs++] = (CoreSeg){ ph.p_vaddr, ph.p_memsz, ph.p_filesz, ph.p_offset };
        }
    }
    if (need > c->file_size) {
        return fail(c, -EIO, err, errlen,
                    "core file %s is truncated: %llu bytes, its headers describe %llu (was "
                    "`ulimit -c` too small, or the disk full?)", core,
                    (unsigned long long)c->file_size, (unsigned long long)need);
    }
    for (size_t i = 0; i < nph; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(c->elf, (int)i, &ph) && ph.p_type == PT_NOTE) {
            int rc = parse_notes(c, &ph);
            if (rc < 0) {
                return fail(c, rc, err, errlen, "cannot read the notes of core file %s: %s",
                            core, rc == -ENOMEM ? "out of memory" : "corrupt note");
            }
        }
    }
    if (c->nthreads == 0) {
        return fail(c, -ENOEXEC, err, errlen, "cannot read core file %s: it has no thread "
                    "(no NT_PRSTATUS note)", core);
    }
    /* libdwfl opens the files the NT_FILE note names (dwfl_core_file_report) with a plain
     * blocking open(): one that names a FIFO would hang it. Nothing can map a FIFO or a
     * socket, so a note naming one is not a kernel's or gdb's: refused. */
    for (size_t i = 0; i < c->nfiles; i++) {
        struct stat fst;
        if (stat(c->files[i].name, &fst) == 0 &&
            (S_ISFIFO(fst.st_mode) || S_ISSOCK(fst.st_mode))) {
            return fail(c, -ENOEXEC, err, errlen, "core file %s is corrupt: its NT_FILE note "
                        "names %s, a %s, as a mapped file", core, c->files[i].name,
                        S_ISFIFO(fst.st_mode) ? "FIFO" : "socket");
        }
    }
    return 0;
}

/* -e: the executable must have the core's build-id, and stands for its mapping in NT_FILE.
 * 0, or -errno with c freed. */
static int core_use_exe(CoreTarget *c, const char *core, char *err, size_t errlen)
{
    int rc = check_build_id(c, core, err, errlen);
    if (rc < 0) {
        return rc; /* c is freed */
    }
    /* The -e file stands for the executable's mapping in NT_FILE reads too. */
    for (size_t i = 0; i < c->nfiles && c->at_entry; i++) {
        if (c->at_entry >= c->files[i].start && c->at_entry < c->files[i].end) {
            const char *mapped = c->files[i].name;
            for (size_t j = 0; j < c->nfiles; j++) {
                if (strcmp(c->files[j].name, mapped) == 0) {
                    c->files[j].name = c->exe;
                }
            }
            break;
        }
    }
    return 0;
}

/* The modules, from NT_FILE and the link map, into a new Dwfl. 0, or -errno with c freed. */
static int core_report(CoreTarget *c, const char *core, char *err, size_t errlen)
{
    c->e.base.dwfl = dwfl_begin(&core_callbacks);
    if (!c->e.base.dwfl) {
        return fail(c, -ENOMEM, err, errlen, "cannot read core file %s: %s", core,
                    dwfl_errmsg(-1));
    }
    dwfl_report_begin(c->e.base.dwfl);
    int rc = core_report_modules(&c->e.base, c->e.base.dwfl);
    dwfl_report_end(c->e.base.dwfl, NULL, NULL);
    if (rc == 0 && c->exe && c->at_entry) {
        c->main_mod = dwfl_addrmodule(c->e.base.dwfl, c->at_entry);
        if (c->main_mod) {
            pthread_mutex_lock(&exe_lock);
            c->next_exe = exe_targets;
            exe_targets = c;
            pthread_mutex_unlock(&exe_lock);
        }
    }
    if (rc < 0) {
        return fail(c, rc, err, errlen, "cannot find the modules of core file %s: %s", core,
                    dwfl_errmsg(-1));
    }
    return 0;
}

int coro__target_core_open(const char *core, const char *exe, CoroTarget **out, char *err,
                           size_t errlen)
{
    *out = NULL;
    elf_version(EV_CURRENT);
    CoreTarget *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "cannot read core file %s: out of memory", core);
        return -ENOMEM;
    }
    c->e.base.ops = &core_ops;
    c->e.base.frozen_clock = true;
    c->e.base.frozen_memory = true;   /* a file: one read of a record is as good as two */
    c->fd = -1;
    snprintf(c->e.what, sizeof(c->e.what), "core file %s", core);
    if (exe && !(c->exe = strdup(exe))) {
        return fail(c, -ENOMEM, err, errlen, "cannot read core file %s: out of memory", core);
    }
    c->fd = open(core, O_RDONLY | O_CLOEXEC);
    int rc = core_check_header(c, core, err, errlen);
    if (rc == 0) {
        rc = core_read_segments(c, core, err, errlen);
    }
    if (rc < 0) {
        return rc; /* c is freed */
    }
    c->e.tids = calloc(c->nthreads, sizeof(*c->e.tids));
    if (!c->e.tids) {
        return fail(c, -ENOMEM, err, errlen, "cannot read core file %s: out of memory", core);
    }
    for (size_t i = 0; i < c->nthreads; i++) {
        c->e.tids[i] = c->threads[i].tid;
    }
    c->e.ntids = c->nthreads;
    rc = c->exe ? core_use_exe(c, core, err, errlen) : 0;
    if (rc == 0) {
        rc = core_report(c, core, err, errlen);
    }
    if (rc < 0) {
        return rc; /* c is freed */
    }
    *out = &c->e.base;
    return 0;
}
