/*
 * A small CFI unwinder for coroutine stacks, driven by rules cached per pc.
 *
 * Why not libdw's dwfl_thread_getframes or libunwind: both cost ~2.5 us per frame
 * (shared/FIELD-NOTES.md), which puts 10,000 coroutines 8 deep at ~200 ms. Here, the CFI
 * row for a pc is fetched once with libdw (eh_frame, else debug_frame) and compiled into a
 * Rule: CFA = register + offset, and for each callee-saved register and the return address
 * one of same value / undefined / saved at CFA + off / value CFA + off / saved at reg + off.
 * The next time that pc is seen (every parked coroutine shares its pcs), a frame costs a
 * hash lookup and a couple of loads from a stack window read in one piece.
 *
 * Rules that are not of those shapes (DWARF expressions for the CFA, as in PLT stubs) stop
 * the walk with -ENOTSUP and a reason, rather than guessing.
 *
 * Not thread-safe: one unwinder per thread or a lock around it (dump.c holds one).
 */
#define _GNU_SOURCE
#include <dwarf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect-int.h"

/* DWARF register numbers (x86_64 psABI). */
enum { DW_RAX = 0, DW_RDX = 1, DW_RCX = 2, DW_RBX = 3, DW_RSI = 4, DW_RDI = 5, DW_RBP = 6,
       DW_RSP = 7, DW_R8 = 8, DW_R15 = 15, DW_RA = 16, NREGS = 17 };

enum { R_SAME = 0, R_UNDEF, R_AT_CFA, R_VAL_CFA, R_AT_REG, R_UNSUPPORTED };

/* The compiled CFI row of one pc. */
typedef struct Rule {
    uint64_t key;               /* lookup address (pc, or pc - 1 for return addresses); 0 empty */
    int32_t cfa_off;
    uint8_t cfa_reg;
    uint8_t status;             /* 0 ok, else an errno-ish reason (ENOENT, ENOTSUP) */
    uint8_t kind[NREGS];        /* R_* per DWARF register we track */
    uint8_t base[NREGS];        /* R_AT_REG: base register */
    int32_t off[NREGS];
} Rule;

/* Registers whose rules we compile: the callee-saved ones and the return address (caller-saved
 * registers are unknown above frame 0; rules may still read them, e.g. the switch's rsi). */
static const uint8_t tracked[] = { DW_RBX, DW_RBP, 12, 13, 14, 15, DW_RA };

#define WINDOW_SIZE (4u * 1024u)

struct CoroUnwinder {
    CoroTarget *t;
    Dwfl *dwfl;
    uint64_t tramp_lo, tramp_hi, switch_lo, switch_hi;
    Rule *rules;
    size_t cap, count;          /* open addressing, cap a power of two */
    /* One contiguous piece of the stack being unwound. */
    unsigned char *win;
    uint64_t win_lo, win_hi;
    uint64_t stack_lo, stack_hi;
    uint64_t first_lo;          /* the walk's starting sp (8-aligned) when inside the stack:
                                   the first window starts there, where the collect driver's
                                   prefetch starts (CORO_COLLECT_PREFETCH_BYTES) */
};

CoroUnwinder *coro__unwinder_create(CoroTarget *t, Dwfl *dwfl, const struct coro_debug_abi *abi)
{
    CoroUnwinder *u = calloc(1, sizeof(*u));
    if (!u) {
        return NULL;
    }
    u->t = t;
    u->dwfl = dwfl;
    u->tramp_lo = abi->trampoline_start;
    u->tramp_hi = abi->trampoline_end;
    u->switch_lo = abi->switch_start;
    u->switch_hi = abi->switch_end;
    u->cap = 1024;
    u->rules = calloc(u->cap, sizeof(Rule));
    u->win = malloc(WINDOW_SIZE);
    if (!u->rules || !u->win) {
        coro__unwinder_destroy(u);
        errno = ENOMEM;
        return NULL;
    }
    return u;
}

void coro__unwinder_destroy(CoroUnwinder *u)
{
    if (u) {
        free(u->rules);
        free(u->win);
        free(u);
    }
}

static inline size_t hash_key(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

static Rule *rule_find(CoroUnwinder *u, uint64_t key)
{
    size_t mask = u->cap - 1;
    for (size_t i = hash_key(key) & mask;; i = (i + 1) & mask) {
        if (u->rules[i].key == key) {
            return &u->rules[i];
        }
        if (u->rules[i].key == 0) {
            return NULL;
        }
    }
}

static Rule *rule_insert(CoroUnwinder *u, const Rule *r)
{
    if ((u->count + 1) * 2 > u->cap) {
        size_t ncap = u->cap * 2;
        Rule *nr = calloc(ncap, sizeof(Rule));
        if (!nr) {
            return NULL;
        }
        for (size_t i = 0; i < u->cap; i++) {
            if (u->rules[i].key) {
                size_t j = hash_key(u->rules[i].key) & (ncap - 1);
                while (nr[j].key) {
                    j = (j + 1) & (ncap - 1);
                }
                nr[j] = u->rules[i];
            }
        }
        free(u->rules);
        u->rules = nr;
        u->cap = ncap;
    }
    size_t mask = u->cap - 1;
    size_t i = hash_key(r->key) & mask;
    while (u->rules[i].key) {
        i = (i + 1) & mask;
    }
    u->rules[i] = *r;
    u->count++;
    return &u->rules[i];
}

/* Compiles one register's location description from libdw into a rule slot. */
static void compile_reg(Rule *r, int reg, const Dwarf_Op *ops, size_t nops)
{
    bool value = nops > 0 && ops[nops - 1].atom == DW_OP_stack_value;
    if (value) {
        nops--;
    }
    if (nops == 0) {
        /* ops NULL: same value; ops set: undefined (see dwarf_frame_register). */
        r->kind[reg] = ops ? R_UNDEF : R_SAME;
        return;
    }
    if (nops == 2 && ops[0].atom == DW_OP_call_frame_cfa &&
        ((ops[1].atom >= DW_OP_breg0 && ops[1].atom <= DW_OP_breg31) ||
         ops[1].atom == DW_OP_bregx)) {
        /* DW_CFA_expression "reg + off": libdw puts the CFA on the stack first, as DWARF
         * says; the expression does not use it (the switch saves registers this way). */
        ops++;
        nops--;
    }
    if (ops[0].atom == DW_OP_call_frame_cfa) {
        int64_t off = 0;
        if (nops == 2 && ops[1].atom == DW_OP_plus_uconst) {
            off = (int64_t)ops[1].number;
        } else if (nops != 1) {
            r->kind[reg] = R_UNSUPPORTED;
            return;
        }
        r->kind[reg] = value ? R_VAL_CFA : R_AT_CFA;
        r->off[reg] = (int32_t)off;
        return;
    }
    if (nops == 1 && !value && ((ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) ||
                                ops[0].atom == DW_OP_bregx)) {
        unsigned base = ops[0].atom == DW_OP_bregx ? (unsigned)ops[0].number
                                                   : (unsigned)(ops[0].atom - DW_OP_breg0);
        int64_t off = ops[0].atom == DW_OP_bregx ? (int64_t)ops[0].number2
                                                 : (int64_t)ops[0].number;
        if (base < NREGS) {
            r->kind[reg] = R_AT_REG;
            r->base[reg] = (uint8_t)base;
            r->off[reg] = (int32_t)off;
            return;
        }
    }
    r->kind[reg] = R_UNSUPPORTED;
}

static bool frame_from(Dwfl_Module *m, bool eh, uint64_t key, Dwarf_Frame **fr)
{
    Dwarf_Addr bias;
    Dwarf_CFI *cfi = eh ? dwfl_module_eh_cfi(m, &bias) : dwfl_module_dwarf_cfi(m, &bias);
    return cfi && dwarf_cfi_addrframe(cfi, key - bias, fr) == 0;
}

/*
 * The CFA expression binutils writes for .plt entries, rsp + 8 plus 8 more once the entry has
 * pushed its relocation index ((pc & 15) >= 11). Rules are per pc, so it compiles to a plain
 * rsp + offset. A thread the signal dump stops inside a PLT stub needs it.
 */
static bool plt_cfa(const Dwarf_Op *ops, size_t nops, uint64_t pc, Rule *r)
{
    if (nops != 9 || ops[0].atom != DW_OP_breg7 || ops[1].atom != DW_OP_breg16 ||
        ops[1].number != 0 || ops[2].atom != DW_OP_lit15 || ops[3].atom != DW_OP_and ||
        ops[4].atom != DW_OP_lit11 || ops[5].atom != DW_OP_ge || ops[6].atom != DW_OP_lit3 ||
        ops[7].atom != DW_OP_shl || ops[8].atom != DW_OP_plus || ops[0].number > 64) {
        return false;
    }
    r->cfa_reg = DW_RSP;
    r->cfa_off = (int32_t)ops[0].number + ((pc & 15) >= 11 ? 8 : 0);
    return true;
}

static Rule *rule_compile(CoroUnwinder *u, uint64_t key)
{
    Rule r;
    memset(&r, 0, sizeof(r));
    r.key = key;
    Dwfl_Module *m = dwfl_addrmodule(u->dwfl, key);
    Dwarf_Frame *fr = NULL;
    if (!m || (!frame_from(m, true, key, &fr) && !frame_from(m, false, key, &fr))) {
        r.status = ENOENT;
        return rule_insert(u, &r);
    }
    Dwarf_Op *ops;
    size_t nops;
    int cfa_err = dwarf_frame_cfa(fr, &ops, &nops);
    if (cfa_err == 0 && plt_cfa(ops, nops, key, &r)) {
        /* compiled for this pc */
    } else if (cfa_err != 0 || nops != 1 ||
        !(ops[0].atom == DW_OP_bregx ||
          (ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31))) {
        r.status = ENOTSUP;
    } else {
        unsigned base = ops[0].atom == DW_OP_bregx ? (unsigned)ops[0].number
                                                   : (unsigned)(ops[0].atom - DW_OP_breg0);
        int64_t off = ops[0].atom == DW_OP_bregx ? (int64_t)ops[0].number2
                                                 : (int64_t)ops[0].number;
        if (base >= NREGS || off < INT32_MIN || off > INT32_MAX) {
            r.status = ENOTSUP;
        }
        r.cfa_reg = (uint8_t)base;
        r.cfa_off = (int32_t)off;
    }
    int ra = dwarf_frame_info(fr, NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof(tracked); i++) {
        int reg = tracked[i];
        Dwarf_Op mem[3];
        if (dwarf_frame_register(fr, reg == DW_RA ? ra : reg, mem, &ops, &nops) != 0) {
            r.kind[reg] = R_UNSUPPORTED;
            continue;
        }
        compile_reg(&r, reg, ops, nops);
    }
    free(fr);
    return rule_insert(u, &r);
}

int coro__unwind_prepare(CoroUnwinder *u, uint64_t pc)
{
    if (rule_find(u, pc)) {
        return 0;
    }
    return rule_compile(u, pc) ? 0 : -ENOMEM;
}

/* Reads 8 bytes of the target, from the stack window when it covers them. */
static int read_u64(CoroUnwinder *u, uint64_t addr, uint64_t *v)
{
    if (addr >= u->win_lo && addr + 8 <= u->win_hi && addr + 8 > addr) {
        memcpy(v, u->win + (addr - u->win_lo), 8);
        return 0;
    }
    if (u->stack_lo < u->stack_hi && addr >= u->stack_lo && addr + 8 <= u->stack_hi) {
        uint64_t lo = addr & ~(uint64_t)7;
        if (u->first_lo && addr >= u->first_lo && addr - u->first_lo <= WINDOW_SIZE - 8) {
            lo = u->first_lo;
        }
        uint64_t hi = u->stack_hi - lo > WINDOW_SIZE ? lo + WINDOW_SIZE : u->stack_hi;
        if (u->t->ops->read(u->t, lo, u->win, hi - lo) == 0) {
            u->win_lo = lo;
            u->win_hi = hi;
            memcpy(v, u->win + (addr - lo), 8);
            return 0;
        }
        u->win_lo = u->win_hi = 0;
    }
    return u->t->ops->read(u->t, addr, v, 8);
}

static int fail(char *why, size_t whylen, int err, const char *fmt, uint64_t v)
{
    if (why && whylen) {
        snprintf(why, whylen, fmt, (unsigned long long)v);
    }
    return err;
}

/* The registers a walk starts from, by DWARF number; returns which are known. */
static uint32_t load_regs(const CoroMachineRegs *regs, uint64_t r[NREGS])
{
    r[DW_RA] = regs->rip;
    r[DW_RSP] = regs->rsp;
    r[DW_RBP] = regs->rbp;
    r[DW_RBX] = regs->rbx;
    r[12] = regs->r12;
    r[13] = regs->r13;
    r[14] = regs->r14;
    r[15] = regs->r15;
    uint32_t valid = 1u << DW_RA | 1u << DW_RSP;
    const unsigned cs[] = { CORO_MREG_RBP, DW_RBP, CORO_MREG_RBX, DW_RBX, CORO_MREG_R12, 12,
                            CORO_MREG_R13, 13, CORO_MREG_R14, 14, CORO_MREG_R15, 15 };
    for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i += 2) {
        if (regs->valid & cs[i]) {
            valid |= 1u << cs[i + 1];
        }
    }
    if (regs->valid & CORO_MREG_ALL) {
        r[DW_RAX] = regs->rax;
        r[DW_RDX] = regs->rdx;
        r[DW_RCX] = regs->rcx;
        r[DW_RSI] = regs->rsi;
        r[DW_RDI] = regs->rdi;
        r[8] = regs->r8;
        r[9] = regs->r9;
        r[10] = regs->r10;
        r[11] = regs->r11;
        valid |= 1u << DW_RAX | 1u << DW_RDX | 1u << DW_RCX | 1u << DW_RSI | 1u << DW_RDI |
                 1u << 8 | 1u << 9 | 1u << 10 | 1u << 11;
    }
    return valid;
}

/* The caller's registers from rule at cfa: nr and *nvalid (nr zeroed by the caller). 0 or
 * -EFAULT with why set. */
static int apply_rule(CoroUnwinder *u, const Rule *rule, uint64_t cfa, const uint64_t r[NREGS],
                      uint32_t valid, uint64_t nr[NREGS], uint32_t *nvalid_out, char *why,
                      size_t whylen)
{
    uint32_t nvalid = 0;
    for (size_t i = 0; i < sizeof(tracked); i++) {
        int reg = tracked[i];
        uint64_t v;
        switch (rule->kind[reg]) {
        case R_SAME:
            if (valid & (1u << reg)) {
                nr[reg] = r[reg];
                nvalid |= 1u << reg;
            }
            break;
        case R_AT_CFA:
            if (read_u64(u, cfa + (uint64_t)(int64_t)rule->off[reg], &v) < 0) {
                return fail(why, whylen, -EFAULT, "cannot read the stack at 0x%llx",
                            cfa + (uint64_t)(int64_t)rule->off[reg]);
            }
            nr[reg] = v;
            nvalid |= 1u << reg;
            break;
        case R_VAL_CFA:
            nr[reg] = cfa + (uint64_t)(int64_t)rule->off[reg];
            nvalid |= 1u << reg;
            break;
        case R_AT_REG:
            if (valid & (1u << rule->base[reg])) {
                uint64_t a = r[rule->base[reg]] + (uint64_t)(int64_t)rule->off[reg];
                if (read_u64(u, a, &v) < 0) {
                    return fail(why, whylen, -EFAULT, "cannot read saved registers at "
                                "0x%llx", a);
                }
                nr[reg] = v;
                nvalid |= 1u << reg;
            }
            break;
        default:
            break;      /* undefined or not compilable: unknown in the caller */
        }
    }
    *nvalid_out = nvalid;
    return 0;
}

int coro__unwind(CoroUnwinder *u, const CoroMachineRegs *regs, uint64_t stack_lo,
                 uint64_t stack_hi, unsigned flags, uint64_t *pcs, size_t max, size_t *n,
                 char *why, size_t whylen)
{
    uint64_t r[NREGS];
    uint32_t valid = 0;
    *n = 0;
    if (why && whylen) {
        why[0] = '\0';
    }
    memset(r, 0, sizeof(r));
    if (!(regs->valid & CORO_MREG_RIP) || !(regs->valid & CORO_MREG_RSP)) {
        return fail(why, whylen, -EINVAL, "no registers to unwind from%.0llu", 0);
    }
    valid = load_regs(regs, r);
    u->stack_lo = stack_lo;
    u->stack_hi = stack_hi;
    u->win_lo = u->win_hi = 0;
    u->first_lo = 0;
    if (stack_lo < stack_hi && (regs->rsp & ~(uint64_t)7) >= stack_lo &&
        regs->rsp < stack_hi) {
        u->first_lo = regs->rsp & ~(uint64_t)7;
    }
    bool is_ra = regs->rip_is_return_address;

    for (size_t depth = 0;; depth++) {
        uint64_t pc = r[DW_RA];
        if (pc == 0) {
            return 0;
        }
        /* The trampoline is the bottom of a coroutine stack; a return address one past the
         * trampoline's call of the entry function still belongs to it. */
        uint64_t look = is_ra ? pc - 1 : pc;
        if (look >= u->tramp_lo && look < u->tramp_hi) {
            return 0;
        }
        bool internal = look >= u->switch_lo && look < u->switch_hi;
        if (!internal || (flags & CORO_UNWIND_KEEP_INTERNAL)) {
            if (*n >= max) {
                return 1;
            }
            pcs[(*n)++] = pc;
        }
        if (depth >= CORO_UNWIND_MAX_FRAMES * 4) {
            return 1;
        }
        Rule *rule = rule_find(u, look);
        if (!rule) {
            if (flags & CORO_UNWIND_CACHED_ONLY) {
                return fail(why, whylen, -ENOENT, "no prepared unwind rule for 0x%llx", pc);
            }
            rule = rule_compile(u, look);
            if (!rule) {
                return fail(why, whylen, -ENOMEM, "out of memory caching the rule for 0x%llx",
                            pc);
            }
        }
        if (rule->status == ENOENT) {
            return fail(why, whylen, -ENOENT, "no unwind information for 0x%llx", pc);
        }
        if (rule->status) {
            return fail(why, whylen, -ENOTSUP, "unsupported CFA rule at 0x%llx", pc);
        }
        if (rule->kind[DW_RA] == R_UNDEF) {
            return 0;           /* CFI marks the outermost frame */
        }
        if (!(valid & (1u << rule->cfa_reg))) {
            return fail(why, whylen, -ENOTSUP, "CFA register of 0x%llx is not known here", pc);
        }
        uint64_t cfa = r[rule->cfa_reg] + (uint64_t)(int64_t)rule->cfa_off;
        /* The CFA must grow, so that every walk ends. Only an interrupted frame 0 may have
         * CFA == sp: the switch, once it has loaded the target's stack pointer, describes
         * the target context with CFA = rsp. */
        bool grows = cfa > r[DW_RSP] || (depth == 0 && cfa == r[DW_RSP] &&
                                         !regs->rip_is_return_address);
        if (!grows || (stack_lo < stack_hi && (cfa < stack_lo || cfa > stack_hi))) {
            return fail(why, whylen, -ELOOP, "bad frame address 0x%llx (outside the stack "
                        "or not growing)", cfa);
        }
        uint64_t nr[NREGS] = { 0 };
        uint32_t nvalid = 0;
        int rc = apply_rule(u, rule, cfa, r, valid, nr, &nvalid, why, whylen);
        if (rc < 0) {
            return rc;
        }
        if (!(nvalid & (1u << DW_RA))) {
            return fail(why, whylen, -ENOTSUP, "cannot find the return address of 0x%llx", pc);
        }
        memcpy(r, nr, sizeof(r));
        r[DW_RSP] = cfa;
        valid = nvalid | 1u << DW_RSP;
        is_ra = true;
    }
}
