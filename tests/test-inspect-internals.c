/*
 * The shared reader internals (inspect/inspect-int.h) against bad input and against an
 * independent unwinder. Linked with the static library, where the internal symbols are
 * reachable.
 *
 *   - the descriptor check and the registry walk on a fake target whose memory the test
 *     writes: bad magic, version, sizes and offsets; cycles, bounds, unaligned and unreadable
 *     records, torn records, unknown states;
 *   - the unwinder's pcs for real suspended coroutines compared with libunwind's (used here
 *     only, as a cross-check: the library does not link libunwind, docs/dump-format.md);
 *   - unwinding from bad registers stops with a reason and keeps the frames found;
 *   - the signal-safe symbol reader (sigsafe-sym.c): reading a symbol from a module's file, as
 *     the overflow report does, survives corrupted files, and names every address as the
 *     prepared table of the crash report does.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "inspect-int.h"
#include "sigsafe-sym-int.h"

extern struct coro_debug_abi coroscope_debug_abi;
void chain_a_o2(void *opaque);

/* ---- a target whose memory is a buffer ---- */

#define FAKE_BASE 0x10000000ull
#define FAKE_SIZE (256u * 1024u)

typedef struct FakeTarget {
    CoroTarget base;
    unsigned char *mem;
    unsigned reads;
} FakeTarget;

static int fake_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    FakeTarget *f = (FakeTarget *)t;
    f->reads++;
    if (addr < FAKE_BASE || addr - FAKE_BASE > FAKE_SIZE || len > FAKE_SIZE - (addr - FAKE_BASE)) {
        return -EFAULT;
    }
    memcpy(buf, f->mem + (addr - FAKE_BASE), len);
    return 0;
}

static int fake_regs(CoroTarget *t, int32_t tid, CoroMachineRegs *out)
{
    return -ENOSYS;
}

static int fake_modules(CoroTarget *t, Dwfl *dwfl)
{
    return 0;
}

static void fake_close(CoroTarget *t)
{
}

static const CoroTargetOps fake_ops = { fake_read, fake_regs, fake_modules, fake_close, NULL };

#define REC0 (FAKE_BASE + 4096)

static FakeTarget fake;
static struct coro_debug_abi *abi;    /* the descriptor inside fake memory */

static unsigned char *rec_at(unsigned i)
{
    return fake.mem + 4096 + (size_t)i * abi->record_size;
}

static uint64_t rec_addr(unsigned i)
{
    return REC0 + (uint64_t)i * abi->record_size;
}

static void put64(unsigned char *rec, uint32_t off, uint64_t v)
{
    memcpy(rec + off, &v, 8);
}

static void put32(unsigned char *rec, uint32_t off, uint32_t v)
{
    memcpy(rec + off, &v, 4);
}

/* n records linked in order, ids 1..n, all suspended with recognisable registers. */
static void build_registry(unsigned n)
{
    memset(fake.mem, 0, FAKE_SIZE);
    abi = (struct coro_debug_abi *)fake.mem;
    *abi = coroscope_debug_abi;
    abi->records = n ? REC0 : 0;
    abi->nrecords = n;
    abi->shards = 0;
    abi->nshards = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned char *r = rec_at(i);
        put64(r, abi->off_next, i + 1 < n ? rec_addr(i + 1) : 0);
        put64(r, abi->off_id, i + 1);
        put32(r, abi->off_state, CORO_STATE_SUSPENDED);
        put32(r, abi->off_seq, 2);
        snprintf((char *)r + abi->off_name, abi->name_size, "co-%u", i + 1);
        put64(r + abi->off_regs, abi->regs.rip, 0x1000 + i);
        put64(r + abi->off_regs, abi->regs.rsp, 0x2000 + i);
        put64(r, abi->off_stack_base, 0x700000 + i * 0x10000);
        put64(r, abi->off_stack_size, 0x10000);
        put64(r, abi->off_entry, 0x3000);
    }
}

static int setup_fake(void **state)
{
    fake.base.ops = &fake_ops;
    fake.mem = calloc(1, FAKE_SIZE);
    return fake.mem ? 0 : -1;
}

static int teardown_fake(void **state)
{
    free(fake.mem);
    return 0;
}

typedef struct Walk {
    CoroInfo coros[64];
    size_t n, unreadable;
    bool truncated;
    int rc;
} Walk;

static Walk walk(size_t cap)
{
    Walk w;
    memset(&w, 0, sizeof(w));
    struct coro_debug_abi a;
    w.rc = coro__abi_read(&fake.base, FAKE_BASE, &a);
    if (w.rc == 0) {
        w.rc = coro__registry_read_into(&fake.base, &a, w.coros, cap, &w.n, NULL, 0, NULL,
                                        &w.unreadable, &w.truncated);
    }
    return w;
}

/* ---- descriptor ---- */

static void test_abi_accepts_the_runtime_layout(void **state)
{
    build_registry(3);
    Walk w = walk(64);
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.n, 3);
    assert_false(w.truncated);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(w.coros[i].id, i + 1);
        assert_int_equal(w.coros[i].record, rec_addr(i));
        assert_int_equal(w.coros[i].regs.rip, 0x1000 + i);
        assert_int_equal(w.coros[i].regs.rsp, 0x2000 + i);
        assert_int_equal(w.coros[i].regs.valid, CORO_MREG_CALLEE_SAVED);
        assert_true(w.coros[i].regs.rip_is_return_address);
        assert_int_equal(w.coros[i].stack_used_max, UINT64_MAX);
        char name[16];
        snprintf(name, sizeof(name), "co-%u", i + 1);
        assert_string_equal(w.coros[i].name, name);
    }
}

static void expect_abi_error(int want, const char *words)
{
    struct coro_debug_abi a;
    fake.base.error[0] = '\0';
    assert_int_equal(coro__abi_read(&fake.base, FAKE_BASE, &a), want);
    if (!strstr(fake.base.error, words)) {
        print_error("error \"%s\" lacks \"%s\"\n", fake.base.error, words);
        fail();
    }
}

static void test_abi_rejects_bad_descriptors(void **state)
{
    build_registry(1);
    abi->magic[0] = 'X';
    expect_abi_error(-EPROTO, "bad magic");
    build_registry(1);
    abi->version = 2;
    expect_abi_error(-EPROTONOSUPPORT, "version 2");
    build_registry(1);
    abi->size = 8;
    expect_abi_error(-EPROTO, "impossible size");
    build_registry(1);
    abi->arch = 183;
    expect_abi_error(-EPROTONOSUPPORT, "another architecture");
    build_registry(1);
    abi->off_entry = abi->record_size - 4;
    expect_abi_error(-EPROTO, "record field offsets");
    build_registry(1);
    abi->regs.r15 = abi->record_size;
    expect_abi_error(-EPROTO, "register offsets");
    build_registry(1);
    abi->record_size = 1u << 30;
    expect_abi_error(-EPROTO, "record_size");
    /* A count above the readers' limits is not an error: the walk stops at the limit (a
     * partial answer) or, as here, at the end of the list. */
    build_registry(1);
    abi->nrecords = UINT64_MAX;
    Walk huge = walk(64);
    assert_int_equal(huge.rc, 0);
    assert_int_equal(huge.n, 1);
    struct coro_debug_abi a;
    assert_int_equal(coro__abi_read(&fake.base, 0x40, &a), -EFAULT);
    assert_non_null(strstr(fake.base.error, "cannot read"));
}

static void test_abi_newer_bigger_writer_is_read(void **state)
{
    build_registry(2);
    /* A later writer appends fields: the part this reader knows is read as it is. */
    abi->size = (uint32_t)sizeof(*abi) + 64;
    struct coro_debug_abi a;
    assert_int_equal(coro__abi_read(&fake.base, FAKE_BASE, &a), 0);
    assert_int_equal(a.record_size, coroscope_debug_abi.record_size);
    assert_int_equal(a.shard_off_terminated, coroscope_debug_abi.shard_off_terminated);
    Walk w = walk(64);
    assert_int_equal(w.n, 2);
}

/* ---- walks ---- */

static void test_walk_skips_free_terminated_and_unknown_states(void **state)
{
    build_registry(5);
    put32(rec_at(1), abi->off_state, CORO_STATE_FREE);
    put32(rec_at(2), abi->off_state, CORO_STATE_TERMINATED);
    put32(rec_at(3), abi->off_state, 77);
    put32(rec_at(4), abi->off_state, CORO_STATE_RUNNING);
    Walk w = walk(64);
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.coros[0].id, 1);
    assert_int_equal(w.coros[1].id, 5);
    /* A running record holds no valid registers: its thread's are the truth. */
    assert_int_equal(w.coros[1].regs.valid, 0);
    assert_false(w.truncated);
}

static void test_walk_stops_at_cycles(void **state)
{
    build_registry(6);
    abi->nrecords = 1000000;        /* a bound that would not stop it soon */
    put64(rec_at(5), abi->off_next, rec_addr(2));
    fake.reads = 0;
    Walk w = walk(64);
    assert_int_equal(w.rc, 0);
    assert_true(w.truncated);
    assert_true(w.n >= 6 && w.n <= 6 + 8);
    assert_true(fake.reads < 100);
}

static void test_walk_is_bounded_by_nrecords_and_capacity(void **state)
{
    build_registry(10);
    abi->nrecords = 4;
    Walk w = walk(64);
    assert_int_equal(w.n, 4);
    assert_true(w.truncated);
    build_registry(10);
    w = walk(3);
    assert_int_equal(w.n, 3);
    assert_true(w.truncated);
}

static void test_walk_stops_at_bad_links(void **state)
{
    build_registry(4);
    put64(rec_at(1), abi->off_next, rec_addr(2) + 3);           /* unaligned */
    Walk w = walk(64);
    assert_int_equal(w.n, 2);
    assert_true(w.truncated);
    assert_int_equal(w.unreadable, 1);
    build_registry(4);
    put64(rec_at(1), abi->off_next, 0xdead0000ull);              /* unreadable */
    w = walk(64);
    assert_int_equal(w.n, 2);
    assert_true(w.truncated);
    assert_int_equal(w.unreadable, 1);
}

static void test_walk_marks_records_caught_mid_update_as_torn(void **state)
{
    build_registry(3);
    put32(rec_at(1), abi->off_seq, 5);      /* odd: a save in progress that never ends */
    Walk w = walk(64);
    assert_int_equal(w.n, 3);
    assert_false(w.coros[0].torn);
    assert_true(w.coros[1].torn);
    assert_int_equal(w.coros[1].regs.valid, 0);
    assert_false(w.coros[2].torn);
}

static void test_walk_survives_random_corruption(void **state)
{
    /* Random bytes over the descriptor and the records: every walk must end, bounded, with
     * a clean answer (the fake target returns -EFAULT outside its buffer). */
    unsigned seed = 12345;
    for (int round = 0; round < 3000; round++) {
        build_registry(8);
        int flips = 1 + (int)(rand_r(&seed) % 8);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)rand_r(&seed) % (4096 + 8 * coroscope_debug_abi.record_size);
            if (at < 8 && round % 2 == 0) {
                continue;                   /* keep the magic half the time */
            }
            fake.mem[at] = (unsigned char)rand_r(&seed);
        }
        if (round % 7 == 0) {
            /* A plausible link to somewhere inside the buffer, aligned or not (the layout
             * from the runtime's own descriptor: the copy in the buffer may be corrupt). */
            const struct coro_debug_abi *t = &coroscope_debug_abi;
            unsigned i = (unsigned)rand_r(&seed) % 8;
            put64(fake.mem + 4096 + (size_t)i * t->record_size, t->off_next,
                  FAKE_BASE + (uint64_t)(rand_r(&seed) % FAKE_SIZE));
        }
        fake.reads = 0;
        Walk w = walk(64);
        assert_true(w.rc == 0 || w.rc == -EPROTO || w.rc == -EPROTONOSUPPORT ||
                    w.rc == -EFAULT);
        assert_true(w.n <= 64);
        assert_true(fake.reads < 2000);
    }
}

/* ---- the unwinder against libunwind, and against bad registers ---- */

static CoroTarget *self;
static CoroUnwinder *unw;
static CoroSymbolizer *sym;
static CoroRegistry reg;

static int setup_self(void **state)
{
    if (coro__self_target_open(&self) < 0) {
        return -1;
    }
    if (coro__registry_read(self, coro__self_abi_addr(), &reg) < 0) {
        return -1;
    }
    unw = coro__unwinder_create(self, self->dwfl, &reg.abi);
    sym = coro__symbolizer_create(self->dwfl);
    coro__registry_free(&reg);
    return unw && sym ? 0 : -1;
}

static int teardown_self(void **state)
{
    coro__symbolizer_destroy(sym);
    coro__unwinder_destroy(unw);
    self->ops->close(self);
    return 0;
}

static const CoroInfo *find_info(const CoroRegistry *r, Coroutine *co)
{
    for (size_t i = 0; i < r->ncoros; i++) {
        if (r->coros[i].record == (uint64_t)(uintptr_t)co) {
            return &r->coros[i];
        }
    }
    return NULL;
}

static size_t libunwind_pcs(const CoroMachineRegs *regs, uint64_t *pcs, size_t max)
{
    ucontext_t uc;
    memset(&uc, 0, sizeof(uc));
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)regs->rip;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)regs->rsp;
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)regs->rbp;
    uc.uc_mcontext.gregs[REG_RBX] = (greg_t)regs->rbx;
    uc.uc_mcontext.gregs[REG_R12] = (greg_t)regs->r12;
    uc.uc_mcontext.gregs[REG_R13] = (greg_t)regs->r13;
    uc.uc_mcontext.gregs[REG_R14] = (greg_t)regs->r14;
    uc.uc_mcontext.gregs[REG_R15] = (greg_t)regs->r15;
    unw_cursor_t cur;
    if (unw_init_local(&cur, (unw_context_t *)&uc) < 0) {
        return 0;
    }
    size_t n = 0;
    do {
        unw_word_t ip;
        unw_get_reg(&cur, UNW_REG_IP, &ip);
        if (ip == 0 || n == max) {
            break;
        }
        pcs[n++] = ip;
    } while (unw_step(&cur) > 0);
    return n;
}

static void test_unwinder_matches_libunwind(void **state)
{
    Coroutine *cos[3] = { coro_create(chain_a_o2, NULL), coro_create(chain_a_o2, NULL),
                          coro_create(chain_a_o2, NULL) };
    for (int i = 0; i < 3; i++) {
        coro_enter(cos[i]);
    }
    CoroRegistry r;
    assert_int_equal(coro__registry_read(self, coro__self_abi_addr(), &r), 0);
    for (int i = 0; i < 3; i++) {
        const CoroInfo *ci = find_info(&r, cos[i]);
        assert_non_null(ci);
        uint64_t ours[64], theirs[64];
        size_t n = 0;
        char why[128];
        CoroMachineRegs regs = coro__saved_regs(&ci->regs);
        int rc = coro__unwind(unw, &regs, ci->stack_base, ci->stack_base + ci->stack_size,
                              0, ours, 64, &n, why, sizeof(why));
        assert_int_equal(rc, 0);
        size_t m = libunwind_pcs(&regs, theirs, 64);
        /* coro_yield, chain_c, chain_b, chain_a; libunwind also shows the trampoline. */
        assert_int_equal(n, 4);
        assert_true(m >= n);
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(ours[k], theirs[k]);
        }
        for (size_t k = n; k < m; k++) {
            assert_true(theirs[k] - 1 >= r.abi.trampoline_start &&
                        theirs[k] - 1 < r.abi.trampoline_end);
        }
    }
    coro__registry_free(&r);
    for (int i = 0; i < 3; i++) {
        coro_enter(cos[i]);
    }
}

static void test_unwinder_stops_with_a_reason(void **state)
{
    Coroutine *co = coro_create(chain_a_o2, NULL);
    coro_enter(co);
    CoroRegistry r;
    assert_int_equal(coro__registry_read(self, coro__self_abi_addr(), &r), 0);
    CoroInfo ci = *find_info(&r, co);
    uint64_t pcs[16];
    size_t n;
    char why[128];

    /* Stack and frame pointer in unmapped memory (the CFA may be either, depending on the
     * build's flags): frame 0 is known, then the read fails. */
    CoroMachineRegs bad = coro__saved_regs(&ci.regs);
    bad.rsp = 0x1000;
    bad.rbp = 0x1000;
    assert_int_equal(coro__unwind(unw, &bad, 0, 0, 0, pcs, 16, &n, why, sizeof(why)), -EFAULT);
    assert_int_equal(n, 1);
    assert_int_equal(pcs[0], ci.regs.rip);
    assert_non_null(strstr(why, "cannot read the stack at 0x"));

    /* Stack pointer outside the coroutine's stack bounds. */
    bad = coro__saved_regs(&ci.regs);
    bad.rsp = ci.stack_base + ci.stack_size + 4096;
    bad.rbp = bad.rsp;
    assert_int_equal(coro__unwind(unw, &bad, ci.stack_base, ci.stack_base + ci.stack_size, 0,
                                  pcs, 16, &n, why, sizeof(why)), -ELOOP);
    assert_non_null(strstr(why, "outside the stack"));

    /* A pc in no module. */
    bad = coro__saved_regs(&ci.regs);
    bad.rip = 0x10;
    assert_int_equal(coro__unwind(unw, &bad, 0, 0, 0, pcs, 16, &n, why, sizeof(why)), -ENOENT);
    assert_non_null(strstr(why, "no unwind information"));

    /* The frame limit. */
    CoroMachineRegs good = coro__saved_regs(&ci.regs);
    assert_int_equal(coro__unwind(unw, &good, 0, 0, 0, pcs, 2, &n, why, sizeof(why)), 1);
    assert_int_equal(n, 2);

    /* A backtrace built from bad registers keeps frame 0 and says why it stops (the stack
     * pointer is not in the coroutine's stack); the text format prints that reason. */
    ci.regs.rsp = 0x1000;
    ci.regs.rbp = 0x1000;
    CoroBacktrace bt;
    assert_int_equal(coro__backtrace_build(unw, sym, &r.abi, &ci, NULL, NULL, &bt), 0);
    assert_int_equal(bt.nframes, 1);
    assert_string_equal(bt.frames[0].function, "coro_yield");
    assert_non_null(strstr(bt.error, "bad frame address"));
    int fd = memfd_create("bt", 0);
    assert_int_equal(coro__format_text_one(fd, &bt), 0);
    char text[1024] = "";
    assert_true(pread(fd, text, sizeof(text) - 1, 0) > 0);
    close(fd);
    assert_non_null(strstr(text, "  (backtrace stops: bad frame address 0x"));
    coro__backtrace_fini(&bt);
    coro__registry_free(&r);
    coro_enter(co);
}

/*
 * A thread interrupted inside the switch right after it loaded the target's stack pointer
 * (what the signal dump and the CLI see for a thread caught mid-switch): the switch's CFI
 * describes the target context through rsi, the switch frame is hidden, and the frames are
 * those of the coroutine being resumed.
 */
static void test_unwind_through_an_interrupted_switch(void **state)
{
    const unsigned char *p = (const unsigned char *)(uintptr_t)coroscope_debug_abi.switch_start;
    const unsigned char *end = (const unsigned char *)(uintptr_t)coroscope_debug_abi.switch_end;
    const unsigned char *after = NULL;
    for (; p + 3 <= end; p++) {
        if (p[0] == 0x48 && p[1] == 0x8b && p[2] == 0x26) {     /* mov (%rsi),%rsp */
            after = p + 3;
            break;
        }
    }
    if (!after) {
        skip();
    }
    Coroutine *co = coro_create(chain_a_o2, NULL);
    coro_enter(co);
    CoroRegistry r;
    assert_int_equal(coro__registry_read(self, coro__self_abi_addr(), &r), 0);
    const CoroInfo *ci = find_info(&r, co);
    assert_non_null(ci);
    uint64_t want[16], got[16];
    size_t nwant, ngot;
    char why[128];
    CoroMachineRegs saved = coro__saved_regs(&ci->regs);
    assert_int_equal(coro__unwind(unw, &saved, 0, 0, 0, want, 16, &nwant, why, sizeof(why)),
                     0);
    CoroMachineRegs m;
    memset(&m, 0, sizeof(m));
    m.rip = (uint64_t)(uintptr_t)after;
    m.rsp = ci->regs.rsp;
    m.rsi = ci->record + r.abi.off_regs;      /* the CoroRegs being loaded */
    m.rbx = 0x1111;                           /* not loaded yet: the CFI must say where */
    m.rbp = 0x2222;
    m.valid = CORO_MREG_CALLEE_SAVED | CORO_MREG_ALL;
    m.rip_is_return_address = false;
    int rc = coro__unwind(unw, &m, 0, 0, 0, got, 16, &ngot, why, sizeof(why));
    if (rc != 0) {
        print_error("unwind from inside the switch: %s\n", why);
        fail();
    }
    assert_int_equal(ngot, nwant);
    for (size_t i = 0; i < ngot; i++) {
        assert_int_equal(got[i], want[i]);
    }
    /* With the switch frame kept, it comes first. */
    assert_int_equal(coro__unwind(unw, &m, 0, 0, CORO_UNWIND_KEEP_INTERNAL, got, 16, &ngot, why,
                                  sizeof(why)), 0);
    assert_int_equal(ngot, nwant + 1);
    assert_int_equal(got[0], m.rip);
    coro__registry_free(&r);
    coro_enter(co);
}

static void test_torn_record_gets_a_reason_not_frames(void **state)
{
    CoroInfo ci;
    memset(&ci, 0, sizeof(ci));
    ci.id = 9;
    ci.state = CORO_STATE_SUSPENDED;
    ci.entry = (uint64_t)(uintptr_t)chain_a_o2;
    ci.torn = true;
    CoroBacktrace bt;
    assert_int_equal(coro__backtrace_build(unw, sym, &coroscope_debug_abi, &ci, NULL, NULL, &bt),
                     0);
    assert_int_equal(bt.nframes, 0);
    assert_non_null(strstr(bt.error, "could not be read consistently"));
    assert_string_equal(bt.entry->function, "chain_a_o2");
    coro__backtrace_fini(&bt);
}

/* A byte offset inside the section headers of the ELF image orig (for random damage). */
static size_t orig_shoff_byte(const unsigned char *orig, size_t len, unsigned r)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)(const void *)orig;
    uint64_t n = (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr);
    return eh->e_shoff < len && n ? (size_t)(eh->e_shoff + r % n) : r % len;
}

/* ---- the signal-safe symbol reader ---- */

/* Puts len bytes at path by rename, so that a mapping of the old file keeps its contents. */
static void replace_file(const char *path, const void *bytes, size_t len)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* Before any symbol table is enabled (the next test enables it): names come from the file. */
static void test_sigsym_file_reader_survives_bad_files(void **state)
{
    (void)state;
    /* A copy of libz (loaded already, for libdw; .dynsym only, as Debian strips it) is
     * loaded, then replaced on disk. */
    void *z = dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD);
    Dl_info zi;
    if (!z || !dladdr(dlsym(z, "zlibVersion"), &zi) || !zi.dli_fname) {
        skip();
    }
    char dir[] = "/tmp/coroscope-sigsym.XXXXXX", lib[sizeof(dir) + 32];
    assert_non_null(mkdtemp(dir));
    snprintf(lib, sizeof(lib), "%s/libcopy.so", dir);
    FILE *f = fopen(zi.dli_fname, "rb");
    assert_non_null(f);
    size_t cap = 16u << 20;
    unsigned char *orig = malloc(cap), *mut = malloc(cap);
    assert_non_null(orig);
    assert_non_null(mut);
    size_t len = fread(orig, 1, cap, f);
    fclose(f);
    dlclose(z);
    assert_true(len > sizeof(Elf64_Ehdr) && len < cap);
    replace_file(lib, orig, len);
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    uint64_t fn = (uint64_t)(uintptr_t)dlsym(h, "zlibVersion");
    assert_true(fn != 0);
    coro__sigsym_refresh();

    char buf[64];
    uint64_t off = 0;
    const char *name = coro__sigsym_function_of(fn + 2, &off, buf, sizeof(buf));
    assert_non_null(name);
    assert_ptr_equal(name, buf);        /* read from the file: no table yet */
    assert_string_equal(name, "zlibVersion");
    assert_int_equal(off, 2);
    char small[6];
    assert_string_equal(coro__sigsym_function_of(fn, &off, small, sizeof(small)), "zlibV");

    /* Truncated to its ELF header, and section headers said to lie past the end: no name. */
    replace_file(lib, orig, sizeof(Elf64_Ehdr));
    assert_null(coro__sigsym_function_of(fn, &off, buf, sizeof(buf)));
    memcpy(mut, orig, len);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)(void *)mut;
    eh->e_shoff = len - 16;
    replace_file(lib, mut, len);
    assert_null(coro__sigsym_function_of(fn, &off, buf, sizeof(buf)));
    /* Its symbol table reaching past the end of the file, or its string table another kind
     * of section: no name either. */
    memcpy(mut, orig, len);
    Elf64_Shdr *sh = (Elf64_Shdr *)(void *)(mut + eh->e_shoff);
    assert_true(eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(*sh) <= len);
    unsigned dynsym = 0;
    for (unsigned i = 1; i < eh->e_shnum && !dynsym; i++) {
        dynsym = sh[i].sh_type == SHT_DYNSYM ? i : 0;
    }
    assert_true(dynsym != 0);
    sh[dynsym].sh_size = len;
    replace_file(lib, mut, len);
    assert_null(coro__sigsym_function_of(fn, &off, buf, sizeof(buf)));
    memcpy(mut, orig, len);
    unsigned text = 0;          /* the biggest code section: bytes that are not names */
    for (unsigned i = 1; i < eh->e_shnum; i++) {
        if ((sh[i].sh_flags & SHF_EXECINSTR) && (!text || sh[i].sh_size > sh[text].sh_size)) {
            text = i;
        }
    }
    assert_true(text != 0);
    sh[dynsym].sh_link = text;
    replace_file(lib, mut, len);
    assert_null(coro__sigsym_function_of(fn, &off, buf, sizeof(buf)));

    /* Random damage: truncation, bytes of the ELF header, of the section headers, anywhere.
     * Whatever the answer, it is bounded and terminated. */
    srand(4242);
    unsigned named = 0;
    for (unsigned it = 0; it < 400; it++) {
        size_t l = len;
        memcpy(mut, orig, len);
        unsigned kind = (unsigned)rand() % 4;
        if (kind == 0) {
            l = (size_t)rand() % len;
        }
        for (unsigned k = 1 + (unsigned)rand() % 16; k > 0; k--) {
            size_t at = kind == 1 ? (size_t)rand() % sizeof(Elf64_Ehdr)
                      : kind == 2 ? orig_shoff_byte(orig, len, (unsigned)rand())
                      : (size_t)rand() % (l ? l : 1);
            if (at < l) {
                mut[at] = (unsigned char)(rand() % 3 == 0 ? 0xff : rand());
            }
        }
        replace_file(lib, mut, l);
        name = coro__sigsym_function_of(fn + 3, &off, small, sizeof(small));
        if (name) {
            assert_true(strnlen(name, sizeof(small)) < sizeof(small));
            named++;
        }
    }
    /* Most damage misses what the lookup reads: it still names the function then. */
    assert_true(named > 0);

    replace_file(lib, orig, len);
    assert_string_equal(coro__sigsym_function_of(fn, &off, buf, sizeof(buf)), "zlibVersion");
    dlclose(h);
    unlink(lib);
    rmdir(dir);
    free(orig);
    free(mut);
}

#define AGREE_MAX 3000
#define AGREE_NAME 64

typedef struct AgreeSet {
    uint64_t total;             /* bytes of executable segments of file-backed modules */
    uint64_t step;
    unsigned n;
    uint64_t addr[AGREE_MAX];
} AgreeSet;

static int agree_collect(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    AgreeSet *a = data;
    if (info->dlpi_name && strstr(info->dlpi_name, "linux-vdso")) {
        return 0;               /* no file to read: neither source names it */
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) {
            continue;
        }
        if (!a->step) {
            a->total += ph->p_memsz;
            continue;
        }
        for (uint64_t v = info->dlpi_addr + ph->p_vaddr;
             v < info->dlpi_addr + ph->p_vaddr + ph->p_memsz && a->n < AGREE_MAX; v += a->step) {
            a->addr[a->n++] = v;
        }
    }
    return 0;
}

/* The overflow report (names read from the file) and the crash report (the prepared table)
 * name the same function at the same offset for addresses spread over every module. */
static void test_sigsym_file_reader_agrees_with_table(void **state)
{
    (void)state;
    static AgreeSet a;
    static char names[AGREE_MAX][AGREE_NAME];
    static uint64_t offs[AGREE_MAX];
    memset(&a, 0, sizeof(a));
    coro__sigsym_refresh();
    dl_iterate_phdr(agree_collect, &a);
    a.step = (a.total / (AGREE_MAX - 64)) | 1;     /* odd: lands at every alignment */
    dl_iterate_phdr(agree_collect, &a);
    assert_true(a.n > 1000);
    unsigned named = 0;
    for (unsigned i = 0; i < a.n; i++) {
        char buf[AGREE_NAME];
        const char *name = coro__sigsym_function_of(a.addr[i], &offs[i], buf, sizeof(buf));
        snprintf(names[i], AGREE_NAME, "%s", name ? name : "");
        named += name != NULL;
    }
    assert_true(named > a.n / 10);

    coro__sigsym_symbols_enable();
    unsigned differ = 0;
    for (unsigned i = 0; i < a.n; i++) {
        char buf[AGREE_NAME], cut[AGREE_NAME];
        uint64_t off = 0;
        const char *name = coro__sigsym_function_of(a.addr[i], &off, buf, sizeof(buf));
        assert_true(name != buf);       /* from the table now */
        snprintf(cut, sizeof(cut), "%s", name ? name : "");
        if (strcmp(cut, names[i]) != 0 || (name && off != offs[i])) {
            print_message("0x%" PRIx64 ": file %s+%" PRIu64 ", table %s+%" PRIu64 "\n",
                          a.addr[i], names[i], offs[i], cut, off);
            differ++;
        }
    }
    assert_int_equal(differ, 0);
}

int main(void)
{
    const struct CMUnitTest fake_tests[] = {
        cmocka_unit_test(test_abi_accepts_the_runtime_layout),
        cmocka_unit_test(test_abi_rejects_bad_descriptors),
        cmocka_unit_test(test_abi_newer_bigger_writer_is_read),
        cmocka_unit_test(test_walk_skips_free_terminated_and_unknown_states),
        cmocka_unit_test(test_walk_stops_at_cycles),
        cmocka_unit_test(test_walk_is_bounded_by_nrecords_and_capacity),
        cmocka_unit_test(test_walk_stops_at_bad_links),
        cmocka_unit_test(test_walk_marks_records_caught_mid_update_as_torn),
        cmocka_unit_test(test_walk_survives_random_corruption),
    };
    const struct CMUnitTest self_tests[] = {
        cmocka_unit_test(test_unwinder_matches_libunwind),
        cmocka_unit_test(test_unwinder_stops_with_a_reason),
        cmocka_unit_test(test_unwind_through_an_interrupted_switch),
        cmocka_unit_test(test_torn_record_gets_a_reason_not_frames),
    };
    /* In this order: the second enables the symbol table for the rest of the process. */
    const struct CMUnitTest sigsym_tests[] = {
        cmocka_unit_test(test_sigsym_file_reader_survives_bad_files),
        cmocka_unit_test(test_sigsym_file_reader_agrees_with_table),
    };
    int failed = cmocka_run_group_tests_name("registry", fake_tests, setup_fake, teardown_fake);
    failed += cmocka_run_group_tests_name("unwinder", self_tests, setup_self, teardown_self);
    failed += cmocka_run_group_tests_name("sigsym", sigsym_tests, NULL, NULL);
    return failed;
}
