/*
 * The shared internals of coroscope's readers: the in-process dump (dump.c), the CLI
 * (cli/, through target-pid.c and target-core.c) and the signal dump (signal*.c) all go
 *
 *     target --registry.c--> CoroInfo[] --unwind.c--> pcs --symbolize.c--> CoroFrame[]
 *            --backtrace.c--> CoroBacktrace[] --format.c--> text | JSON | folded on an fd
 *
 * so that they print the same thing for the same stack. Every byte read from a target is
 * untrusted: walks are bounded, sizes checked, and a read that fails stops one coroutine's
 * backtrace with a reason, never the whole dump.
 *
 * Lifetimes: functions that allocate name their release function; strings in a CoroFrame are
 * borrowed from the CoroSymbolizer that produced them and live until it is destroyed.
 * Functions marked CORO_SIGNAL_SAFE take caller-provided buffers and neither allocate nor
 * lock (as long as the target's read() does not).
 */
#ifndef COROSCOPE_INSPECT_INT_H
#define COROSCOPE_INSPECT_INT_H

#include <coroscope/coro.h>
#include <coroscope/debug-abi.h>
#include <coroscope/inspect.h>
#include <elfutils/libdwfl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "target-int.h"

#ifndef CORO_EXPORT
#define CORO_EXPORT __attribute__((visibility("default")))
#endif

/* ------------------------------------------------------------------ registry snapshot */

/* Upper bounds that keep a corrupted registry from making a reader loop or allocate wildly. */
#define CORO_SNAPSHOT_MAX_RECORDS (16u * 1024u * 1024u)
#define CORO_SNAPSHOT_MAX_SHARDS (1u * 1024u * 1024u)
#define CORO_INFO_NAME_SIZE 64   /* names longer than this (target's name_size) are cut */

/* A record's saved context: the callee-saved part of CoroMachineRegs (a record never holds
 * the others), 72 bytes instead of 144 in each of 100,000 CoroInfo. */
typedef struct CoroSavedRegs {
    uint64_t rip, rsp, rbp, rbx, r12, r13, r14, r15;
    unsigned valid;               /* CORO_MREG_* bits */
    bool rip_is_return_address;
} CoroSavedRegs;

/* The full register set an unwinder starts from, from a saved context. */
static inline CoroMachineRegs coro__saved_regs(const CoroSavedRegs *s)
{
    CoroMachineRegs m = {
        .rip = s->rip, .rsp = s->rsp, .rbp = s->rbp, .rbx = s->rbx,
        .r12 = s->r12, .r13 = s->r13, .r14 = s->r14, .r15 = s->r15,
        .valid = s->valid & CORO_MREG_CALLEE_SAVED,
        .rip_is_return_address = s->rip_is_return_address,
    };
    return m;
}

/* One live coroutine as read from a target's registry. Plain data: copy it freely. */
typedef struct CoroInfo {
    uint64_t record;              /* target address of its registry record */
    uint64_t id;
    char name[CORO_INFO_NAME_SIZE]; /* NUL-terminated untrusted bytes; "" = unnamed */
    uint32_t state;               /* CORO_STATE_CREATED, _RUNNING, _SUSPENDED or _NESTED */
    int32_t tid;                  /* kernel tid it runs or last ran on; 0 unknown */
    CoroSavedRegs regs;           /* saved context: valid == CORO_MREG_CALLEE_SAVED and
                                     rip_is_return_address, or valid == 0 when the record
                                     holds none (RUNNING) or it could not be read consistently */
    uint64_t stack_base;          /* lowest usable address */
    uint64_t stack_size;          /* usable bytes */
    uint64_t entry, opaque;
    uint64_t create_site;         /* return address of the coro_create call; 0 unknown */
    uint64_t caller;              /* record that entered it; 0: a thread's own stack */
    uint64_t switch_count;
    uint64_t generation;          /* leak generation at creation (coro_leak_mark) */
    uint64_t wait_reason;         /* target address of a string, 0 none or absent */
    uint64_t wait_object;
    uint64_t wait_since;
    uint64_t stack_used_max;      /* bytes; UINT64_MAX when the runtime does not keep it */
    uint32_t wait_kind;           /* CORO_WAIT_*; meaningful when state is SUSPENDED */
    int32_t wait_fd;
    uint32_t wait_events;
    int64_t wait_deadline;        /* CLOCK_MONOTONIC ns, 0 none */
    uint64_t created_ns;          /* CLOCK_MONOTONIC(_COARSE) ns at creation, 0 unknown */
    uint64_t wait_holder;         /* id of the mutex holder / rwlock writer, 0 none or unknown
                                     (filled by the collect driver from the object) */
    bool torn;                    /* regs never read consistently (retries exhausted) */
    uint32_t seq;                 /* the record's seqlock when read: a reader that unwinds
                                     while the target runs re-reads it to see whether the
                                     coroutine moved meanwhile (coro__registry_read_one) */
} CoroInfo;

/* One thread shard (a thread that has used coroutines). */
typedef struct CoroThreadInfo {
    uint64_t shard;               /* target address */
    int32_t tid;                  /* 0: no thread owns the shard now */
    uint64_t current;             /* record running on it, 0 none */
    uint64_t created, terminated;
} CoroThreadInfo;

typedef struct CoroRegistry {
    uint64_t abi_addr;            /* where the descriptor was read */
    struct coro_debug_abi abi;    /* the target's descriptor, checked by coro__abi_read() */
    CoroInfo *coros;              /* live coroutines, in registry order (newest slab first) */
    size_t ncoros;
    size_t nlive;                 /* live records seen: ncoros, or more when only some ids
                                     were kept (coro__registry_read_ids) */
    CoroThreadInfo *threads;
    size_t nthreads;
    size_t unreadable;            /* records skipped because they could not be read */
    bool truncated;               /* a walk stopped at its bound, at a cycle or at capacity */
} CoroRegistry;

/*
 * Reads and checks the descriptor at target address addr: magic, version, size (at least
 * the fields this reader knows; newer, bigger descriptors are fine), ptr_size 8, arch 62,
 * every record/shard offset inside record_size/shard_size with room for its field, counts
 * below the CORO_SNAPSHOT_MAX_* bounds. Fields the writer's smaller descriptor lacks read as
 * CORO_DEBUG_ABSENT. 0, or -EFAULT (unreadable), -EPROTO (not a descriptor or inconsistent:
 * why in t->error), -EPROTONOSUPPORT (other version or architecture). CORO_SIGNAL_SAFE.
 */
int coro__abi_read(CoroTarget *t, uint64_t addr, struct coro_debug_abi *abi);

/*
 * Walks the registry described by abi into caller buffers: at most min(abi->nrecords,
 * cap) records and abi->nshards shards are visited, a cycle ends the walk; FREE and
 * TERMINATED records are skipped; each record's state and registers are read under its
 * seqlock (retried a few times, then marked torn). Fills *ncoros and *nthreads; sets *truncated
 * when a bound, a cycle or a capacity stopped a walk; counts unreadable records in
 * *unreadable. threads may be NULL (tcap 0). 0 or -errno when even the list heads cannot be
 * read. CORO_SIGNAL_SAFE (no allocation, no lock) when t->read is.
 */
int coro__registry_read_into(CoroTarget *t, const struct coro_debug_abi *abi,
                             CoroInfo *coros, size_t cap, size_t *ncoros,
                             CoroThreadInfo *threads, size_t tcap, size_t *nthreads,
                             size_t *unreadable, bool *truncated);

/*
 * Re-reads the single record at target address record into *out (consistently, as the walk
 * does). 0 when it is a live coroutine; -ESTALE when it is not live any more (terminated,
 * pooled, or reused by another coroutine: compare ids); -EAGAIN when it could not be read
 * consistently; -EFAULT. CORO_SIGNAL_SAFE when t->read is.
 */
int coro__registry_read_one(CoroTarget *t, const struct coro_debug_abi *abi, uint64_t record,
                            CoroInfo *out);

/* Reads the descriptor at abi_addr and the whole registry into *out (allocated: release with
 * coro__registry_free()). 0 or -errno (t->error says why). */
int coro__registry_read(CoroTarget *t, uint64_t abi_addr, CoroRegistry *out);
/* The same, keeping only the records whose id is one of ids[0..nids) (ids NULL: all): every
 * record is still read and checked, but only those are stored (nlive counts them all). */
int coro__registry_read_ids(CoroTarget *t, uint64_t abi_addr, const uint64_t *ids, size_t nids,
                            CoroRegistry *out);
void coro__registry_free(CoroRegistry *r);

/* ------------------------------------------------------------------ targets */

/*
 * This process as a target. read() never faults (process_vm_readv on our own pid, falling
 * back to checking /proc/self/mem), thread_regs() answers -ENOSYS (a running coroutine of
 * this process is unwound from registers its caller captured), report_modules() reports the
 * loaded objects from /proc/self/maps. Release with t->ops->close(t). 0 or -errno.
 */
int coro__self_target_open(CoroTarget **out);

/*
 * Copies the n ranges [addrs[i], addrs[i] + lens[i]) of this process in a few
 * process_vm_readv calls (many ranges per call), so that later reads inside one of them are
 * a memcpy instead of a syscall each. Ranges that cannot be read are left out (reads there
 * take the usual path). The copies are a snapshot: only for memory nobody changes meanwhile
 * (the dump uses it when no other thread runs coroutines). Replaces any previous prefetch;
 * released by coro__self_target_prefetch_drop() or close. 0 or -errno.
 */
int coro__self_target_prefetch(CoroTarget *t, const uint64_t *addrs, const uint64_t *lens,
                               size_t n);
void coro__self_target_prefetch_drop(CoroTarget *t);

/* To call in a fork child before reusing a self target opened in the parent. */
void coro__self_target_forked(CoroTarget *t);

/* Address of this process's own descriptor (the runtime's coroscope_debug_abi). */
uint64_t coro__self_abi_addr(void);

/*
 * Captures the caller's callee-saved registers as a saved context: rip is the return address
 * into the caller, rsp the caller's stack pointer after that return; valid ==
 * CORO_MREG_CALLEE_SAVED, rip_is_return_address true. Unwinding from it starts in the caller,
 * which then shows as frame 0 (coro_dump, coro_leak_check: "the public function it is in").
 * CORO_SIGNAL_SAFE.
 */
void coro__capture_regs(CoroMachineRegs *out);

/* ------------------------------------------------------------------ frames */

/* One frame as every output format shows it (the JSON F object). */
typedef struct CoroFrame {
    uint64_t pc;            /* the frame's pc: the return address for callers' frames, the
                               exact pc for an interrupted frame 0 or an entry function */
    const char *function;   /* bare (mangled) symbol name, NULL unknown */
    int64_t offset;         /* pc - function start; -1 unknown (and for inlined frames) */
    const char *file;       /* source file of the line below, NULL unknown */
    int line;               /* line of the call (or of pc for an interrupted frame); 0 unknown */
    const char *module;     /* path of the ELF module holding pc, NULL unknown */
    bool inlined;           /* an inlined instance: the next frame (same pc) is its caller */
} CoroFrame;

/* ------------------------------------------------------------------ unwinding */

#define CORO_UNWIND_MAX_FRAMES 256

enum {
    CORO_UNWIND_CACHED_ONLY = 1u << 0, /* use only rules cached before: no libdw, no malloc
                                          (for signal handlers); an uncached pc stops the
                                          walk with -ENOENT */
    CORO_UNWIND_KEEP_INTERNAL = 1u << 1, /* keep frames in coroscope's switch (debugging) */
};

typedef struct CoroUnwinder CoroUnwinder;

/*
 * Creates an unwinder for target t: CFI from the modules reported in dwfl (eh_frame, else
 * debug_frame), fetched once per pc with libdw and compiled into a compact rule (CFA =
 * reg + off; each callee-saved register same / undefined / at CFA + off / = CFA + off; RA
 * at CFA + off) kept in a hash table for the unwinder's life. abi gives the trampoline and
 * switch ranges. Borrows t and dwfl (they must outlive it). NULL with errno on failure.
 * Release with coro__unwinder_destroy().
 */
CoroUnwinder *coro__unwinder_create(CoroTarget *t, Dwfl *dwfl, const struct coro_debug_abi *abi);
void coro__unwinder_destroy(CoroUnwinder *u);

/*
 * Unwinds from regs into pcs[0..max): pcs[0] = regs->rip, then the return address of each
 * caller. Frames in coroscope's switch are left out (unless CORO_UNWIND_KEEP_INTERNAL), the
 * walk stops before the trampoline (nothing below a coroutine's entry function is shown) or
 * where CFI says the return address is undefined. [stack_lo, stack_hi) are the stack's
 * bounds when known (0, 0 otherwise): the CFA must stay inside and grow, and the stack is
 * read in one piece. Returns 0 when the bottom was reached, 1 when max stopped it, or -errno
 * with a one-line reason in why (-ENOENT no CFI for a pc, -EFAULT unreadable stack, -ELOOP
 * CFA did not grow, -ENOTSUP a rule too complex to compile); *n frames are valid in every
 * case. CORO_SIGNAL_SAFE with CORO_UNWIND_CACHED_ONLY and a signal-safe t->read.
 */
int coro__unwind(CoroUnwinder *u, const CoroMachineRegs *regs, uint64_t stack_lo,
                 uint64_t stack_hi, unsigned flags, uint64_t *pcs, size_t max, size_t *n,
                 char *why, size_t whylen);

/* Fetches and caches the rule for pc now (so that a later CORO_UNWIND_CACHED_ONLY walk
 * finds it). 0 or -errno. */
int coro__unwind_prepare(CoroUnwinder *u, uint64_t pc);

/* ------------------------------------------------------------------ symbolizing */

enum {
    CORO_SYM_NO_INLINES = 1u << 0, /* one frame per pc: the real function */
    CORO_SYM_NO_LINES = 1u << 1,   /* no file:line (cheaper) */
};

typedef struct CoroSymbolizer CoroSymbolizer;

/* Creates a symbolizer over the modules reported in dwfl (borrowed). Per module, the symbol
 * table is sorted once; results are cached per (pc, flags) for the symbolizer's life.
 * NULL with errno. Release with coro__symbolizer_destroy() (which frees every string it
 * handed out). */
CoroSymbolizer *coro__symbolizer_create(Dwfl *dwfl);
void coro__symbolizer_destroy(CoroSymbolizer *s);

/*
 * The frames of one pc, innermost first: inlined instances (inlined = true, line of the pc or
 * of the inner call) and last the real function with its offset. Looks up pc - 1 when
 * is_return_address (frame.pc stays pc). An address in no module gives one frame with only
 * pc set. Returns how many frames the pc has (>= 1; at most max are stored), or -errno.
 */
int coro__symbolize(CoroSymbolizer *s, uint64_t pc, bool is_return_address, unsigned flags,
                    CoroFrame *out, size_t max);

/* ------------------------------------------------------------------ backtraces */

/* One coroutine ready to print. */
typedef struct CoroBacktrace {
    const CoroInfo *info;     /* borrowed: the CoroInfo it was built from (in a collection,
                                 its registry's record: no copy of 376 bytes per coroutine) */
    const CoroFrame *entry;   /* the entry function (exact address); never NULL */
    const CoroFrame *created_at; /* function file:line of the coro_create call; pc 0:
                                    unknown; never NULL. Both live where the frames do
                                    (frames_borrowed), else in one array fini frees: in a
                                    collection, equal ones are shared (read-only) */
    CoroFrame *frames;        /* innermost first; owned (coro__backtrace_fini frees) unless
                                 frames_borrowed */
    char *error;              /* "" or why frames are missing or incomplete, one line (at most
                                 CORO_BT_ERROR_MAX bytes). Set with coro__backtrace_error();
                                 "" is coro__bt_no_error, shared; a message is owned (fini
                                 frees it): no 128 bytes per coroutine that has none */
    uint32_t nframes;         /* at most CORO_UNWIND_MAX_FRAMES */
    bool truncated;           /* stopped by the frame limit */
    bool frames_borrowed;     /* frames live in storage of the caller's (the options'
                                 frames_buf, a collection's arena): fini does not free them */
    bool sites_owned;         /* entry points to a 2-frame array (entry, created_at) the
                                 backtrace owns: fini frees it */
} CoroBacktrace;

#define CORO_BT_ERROR_MAX 128
extern char coro__bt_no_error[1];
/* An all-zero frame (pc 0: unknown): entry and created_at of a records-only backtrace. */
extern const CoroFrame coro__no_frame;

typedef struct CoroBacktraceOptions {
    size_t max_frames;        /* 0: CORO_UNWIND_MAX_FRAMES */
    unsigned sym_flags;       /* CORO_SYM_* */
    unsigned unwind_flags;    /* CORO_UNWIND_* */
    /* Where to build the frames instead of a malloc'd array (NULL: malloc), with room for
     * frames_cap >= the frame limit plus 2 more (entry and created_at, at frames_cap and
     * frames_cap + 1); the backtrace then borrows it (frames_borrowed). */
    CoroFrame *frames_buf;
    size_t frames_cap;
} CoroBacktraceOptions;

/*
 * Builds co's backtrace: a never-entered coroutine gets its entry function as its only
 * frame; a suspended or nested one is unwound from its saved registers; a running one from
 * live when given (its thread's or the caller's captured registers), else it gets no frames
 * and error "running on thread N". Frame 0 of a saved context is the public coroscope
 * function it is suspended in (coroscope-internal inline frames there are dropped). 0 or
 * -ENOMEM; unwind problems go to out->error with the frames found so far. out->info points
 * to co, which must outlive out. Release with coro__backtrace_fini() (which frees the frames
 * unless they are borrowed).
 */
int coro__backtrace_build(CoroUnwinder *u, CoroSymbolizer *s, const struct coro_debug_abi *abi,
                          const CoroInfo *co, const CoroMachineRegs *live,
                          const CoroBacktraceOptions *opts, CoroBacktrace *out);
void coro__backtrace_fini(CoroBacktrace *bt);
/* Leaves bt without frames (freed unless borrowed), keeping its info, entry, created_at and
 * error: for a coroutine that moved while it was read. */
void coro__backtrace_drop_frames(CoroBacktrace *bt);
/* Sets bt->error (printf format; cut at CORO_BT_ERROR_MAX - 1 bytes), replacing any message
 * it had. 0 or -ENOMEM (then the message is the placeholder "out of memory"). */
int coro__backtrace_error(CoroBacktrace *bt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The frame a one-line summary of bt shows (ps's WHERE): the innermost frame of the user's
 * code with file:line, else the innermost of the user's code, else the innermost outside
 * coroscope, else frame 0; a never-entered coroutine's entry function. Not the user's code:
 * coroscope's public functions (own-functions-int.h, a fixed list: a program's own
 * coro_read is its code), what they call in their module, coroscope's shared library, and
 * the system's libraries (/lib, /usr/lib). Borrowed from bt; NULL when it has no frame.
 */
const CoroFrame *coro__backtrace_where(const CoroBacktrace *bt);

/* ------------------------------------------------------------------ formatting */

/* A wait-for cycle: coroutines (indices into CoroCollection.bts), each waiting for a mutex
 * or write lock held by the next; the last waits for the first. */
#define CORO_DEADLOCK_MAX 16
typedef struct CoroDeadlock {
    size_t n;
    size_t members[CORO_DEADLOCK_MAX];
} CoroDeadlock;

/* What a dump says about itself (JSON top level, text preamble). */
/* Thresholds of the single-snapshot warnings (warnings.c, docs/live.md); 0: the default. */
#define CORO_WARN_LONG_WAIT_NS (60ll * 1000000000)
#define CORO_WARN_NEVER_ENTERED_NS (60ll * 1000000000)
enum { CORO_WARN_LONG_WAIT = 1, CORO_WARN_NEVER_ENTERED = 2 };
typedef struct CoroWarnLimits {
    int64_t long_wait_ns;
    int64_t never_entered_ns;
} CoroWarnLimits;

/* A stall the in-process watchdog found (watchdog.c): the report's subject. */
typedef struct CoroStall {
    uint64_t id;                  /* the coroutine that has not yielded */
    int32_t tid;                  /* on this thread */
    int64_t for_ns;               /* for at least this long */
    int64_t threshold_ns;         /* CORO_STALL_MS */
} CoroStall;

typedef struct CoroDumpMeta {
    int pid;
    struct timespec time;     /* CLOCK_REALTIME when the snapshot was taken */
    /* How partial the answer is (coro__collection_meta fills these): records that could not
     * be read at all, a registry walk cut short, coroutines listed without (all) frames. */
    size_t unreadable;
    bool truncated;
    size_t incomplete;
    /* Waits: "now" for durations (0: unknown), whether it is a core's last clock reading,
     * and the wait-for cycles (indices into the bts given to the formatter). */
    int64_t now_ns;
    bool now_from_registry;
    const CoroDeadlock *deadlocks;
    size_t ndeadlocks;
    CoroWarnLimits warn;          /* thresholds of the warnings (zeros: the defaults) */
    const CoroStall *stall;       /* a stall report (watchdog.c): its header; NULL: none */
} CoroDumpMeta;

enum {
    CORO_FORMAT_NO_PREAMBLE = 1u << 0, /* text: no "coroscope dump of pid ..." first line */
    CORO_FORMAT_GROUPS = 1u << 1,      /* JSON: add the "groups" array (format-group.c) */
};

/*
 * Writes one dump of bts[0..n) to fd in format (CORO_DUMP_TEXT, _JSON: exactly one document
 * and a newline, schema version 1 of docs/json-schema.md; _FOLDED: "name;outermost;...;
 * innermost count" with identical stacks aggregated). No stdio, no locks; the only
 * allocation is the folded format's index, avoided by passing order with room for n entries
 * (then CORO_SIGNAL_SAFE). 0, -EINVAL (format), -ENOMEM or -errno of write().
 */
int coro__format_dump(int fd, int format, const CoroDumpMeta *meta, const CoroBacktrace *bts,
                      size_t n, unsigned flags, uint32_t *order);

/* Writes one coroutine's text block (header, #N lines, "created by" line). Used by the leak
 * report. 0 or -errno of write(). CORO_SIGNAL_SAFE. */
int coro__format_text_one(int fd, const CoroBacktrace *bt);

/* A buffered fd writer without stdio, for the formatters and for callers adding lines of
 * their own (the overflow report). CORO_SIGNAL_SAFE. */
#define CORO_OUT_STR_CACHE 64
typedef struct CoroOut {
    int fd;
    int err;                  /* first -errno of write(); later output is dropped */
    size_t len;
    /* JSON strings that needed no escaping, by address: a dump repeats the same module,
     * file and function strings (owned by the symbolizer) thousands of times. Strings given
     * to one CoroOut must not change while it is in use. */
    const char *plain[CORO_OUT_STR_CACHE];
    uint32_t plain_len[CORO_OUT_STR_CACHE];
    char buf[16384];
} CoroOut;

void coro__out_init(CoroOut *o, int fd);
void coro__out_mem(CoroOut *o, const char *s, size_t len);
void coro__out_str(CoroOut *o, const char *s);
void coro__out_u64(CoroOut *o, uint64_t v);
void coro__out_i64(CoroOut *o, int64_t v);
void coro__out_hex(CoroOut *o, uint64_t v);       /* 0x... */
void coro__out_json_str(CoroOut *o, const char *s); /* quoted, escaped, invalid UTF-8 -> U+FFFD;
                                                       NULL -> null */
int coro__out_flush(CoroOut *o);                  /* 0 or the first -errno */

/* Waits (format-wait.c): the JSON kind name (NULL for none), whether a coroutine is parked
 * in a coroscope wait, "now" for durations (meta's, or this process's clock without meta),
 * and the text and JSON forms of a wait and of the deadlock cycles. CORO_SIGNAL_SAFE. */
const char *coro__wait_kind_name(uint32_t kind);
bool coro__waiting(const CoroInfo *ci);
int64_t coro__meta_now(const CoroDumpMeta *meta);
void coro__out_duration(CoroOut *o, int64_t ns);
void coro__out_wait_text(CoroOut *o, const CoroInfo *ci, int64_t now_ns);
void coro__out_wait_json(CoroOut *o, const CoroInfo *ci, int64_t now_ns);
/* quoted prints a name in quotes, escaped as the caller's format does. */
void coro__out_deadlocks_text(CoroOut *o, const CoroBacktrace *bts, const CoroDumpMeta *meta,
                              const char *prefix, void (*quoted)(CoroOut *, const char *));
void coro__out_deadlocks_json(CoroOut *o, const CoroBacktrace *bts, const CoroDumpMeta *meta);

/* Pieces of the text and JSON formats that the grouped format (format-group.c) reuses. */
void coro__format_text_frame(CoroOut *o, size_t i, const CoroFrame *f);
void coro__format_json_frame(CoroOut *o, const CoroFrame *f);
void coro__format_text_partial(CoroOut *o, const CoroDumpMeta *meta);
void coro__format_text_quoted(CoroOut *o, const char *s);
/* `ID "name"` (just the id when unnamed), the name through str (format-wait.c). */
void coro__out_who(CoroOut *o, const CoroInfo *ci, void (*str)(CoroOut *, const char *));

/* The single-snapshot warnings (warnings.c): long wait and never entered, one text line each
 * (after prefix), or the JSON "warnings" array. CORO_SIGNAL_SAFE. */
void coro__out_warnings_text(CoroOut *o, const CoroBacktrace *bts, size_t n,
                             const CoroDumpMeta *meta, const char *prefix,
                             void (*quoted)(CoroOut *, const char *));
void coro__out_warnings_json(CoroOut *o, const CoroBacktrace *bts, size_t n,
                             const CoroDumpMeta *meta);
/* A stall report's header (meta->stall; nothing without one): the text line after prefix, or
 * the JSON ',"stall":{...}' member. CORO_SIGNAL_SAFE. */
void coro__out_stall_text(CoroOut *o, const CoroBacktrace *bts, size_t n,
                          const CoroDumpMeta *meta, const char *prefix,
                          void (*quoted)(CoroOut *, const char *));
void coro__out_stall_json(CoroOut *o, const CoroDumpMeta *meta);

/* Grouped stacks (format-group.c): coroutines with the same state, wait kind and frames
 * (function, file:line) once, with a count and their ids, largest group first. Allocates
 * (not signal-safe). 0 or -ENOMEM. */
int coro__format_grouped_text(CoroOut *o, const CoroDumpMeta *meta, const CoroBacktrace *bts,
                              size_t n);
int coro__format_groups_json(CoroOut *o, const CoroBacktrace *bts, size_t n);

/* The groups themselves: ix (n entries, free()) sorts bts by key then id; group k is
 * ix[g[k].first .. first + count), groups largest first (g: free()). 0 or -ENOMEM. */
typedef struct CoroGroup {
    size_t first, count;
} CoroGroup;
int coro__groups_build(const CoroBacktrace *bts, size_t n, size_t **ix, CoroGroup **g,
                       size_t *ng);
/* The true first key of a group for labels: "created", "running", "suspended" or "waiting". */
const char *coro__group_state(const CoroInfo *ci);

/* pprof (format-pprof.c): a gzip'd profile.proto to fd, one sample per group of identical
 * stacks, sample type coroutines/count, labels state and wait. 0, -ENOMEM or -errno. */
int coro__format_pprof(int fd, const CoroDumpMeta *meta, const CoroBacktrace *bts, size_t n);

/* "created", "running" or "suspended" (NESTED is running), as in the JSON schema. */
const char *coro__state_name(uint32_t state);

/* ------------------------------------------------------------------ the collect driver */

/*
 * How a reader wants its coroutines collected. Zero-initialised means: every live coroutine,
 * default frame options, running coroutines unwound from their thread's registers when the
 * target gives them (t->ops->thread_regs), an unwinder and symbolizer of the collection's own.
 */
typedef struct CoroCollectOptions {
    CoroBacktraceOptions bt;
    CoroUnwinder *unwinder;       /* borrowed, or NULL: the collection makes one */
    CoroSymbolizer *symbolizer;   /* borrowed, or NULL: likewise */
    bool records_only;            /* no unwinding: bts[i].info only (coroscope top); no
                                     unwinder is made, the symbolizer only if given */
    /* The target does not change while it is read (a stopped process): before unwinding, copy
     * the top of each wanted suspended coroutine's stack (CORO_COLLECT_PREFETCH_BYTES above its
     * saved stack pointer) a batch of CORO_COLLECT_PREFETCH_BATCH at a time through
     * t->ops->prefetch, when the target has one. */
    bool prefetch_stacks;
    /* Called once the registry is read, before any backtrace is built (e.g. to
     * prefetch stacks); may be NULL. */
    void (*prepare)(const CoroRegistry *reg, void *arg);
    /* Leaves a coroutine out when it returns false (not counted anywhere). */
    bool (*want)(const CoroInfo *co, void *arg);
    /* When ids is not NULL, only records with one of these ids are even kept from the
     * registry (coro__registry_read_ids): reg.ncoros counts those, reg.nlive all. */
    const uint64_t *ids;
    size_t nids;
    /* Registers to unwind a coroutine from instead of its record (e.g. the caller's captured
     * context for the coroutine running the dump): buf is storage for the answer. NULL: the
     * default rule above. */
    const CoroMachineRegs *(*live)(const CoroInfo *co, CoroMachineRegs *buf, void *arg);
    /* Called after each backtrace is built (live: the registers used, or NULL), to recheck or
     * annotate it; 0, or -errno to stop the collection. */
    int (*after)(const CoroRegistry *reg, const CoroInfo *co, const CoroMachineRegs *live,
                 CoroBacktrace *bt, void *arg);
    void *arg;
} CoroCollectOptions;

#define CORO_COLLECT_PREFETCH_BYTES 4096u   /* the unwinder's first stack window */
#define CORO_COLLECT_PREFETCH_BATCH 1024u   /* IOV_MAX: one syscall per batch */

/* The result: every coroutine read, in id order, with the partial-record counts. */
typedef struct CoroCollection {
    CoroRegistry reg;             /* coros in registry order (bts are in id order) */
    CoroBacktrace *bts;           /* n backtraces, in id order */
    size_t n;
    size_t incomplete;            /* kept, but bts[i].error says frames are missing */
    size_t unreadable;            /* records that could not be read at all (not in bts) */
    bool truncated;               /* a registry walk stopped at a bound or a cycle */
    int64_t now_ns;               /* CLOCK_MONOTONIC "now" for wait durations; 0 unknown */
    bool now_from_registry;       /* a core: now_ns is the registry's last clock reading */
    CoroDeadlock *deadlocks;      /* each wait-for cycle once (deadlock.c) */
    size_t ndeadlocks;
    CoroUnwinder *u;              /* what was used (borrowed or own_u) */
    CoroSymbolizer *s;
    CoroUnwinder *own_u;
    CoroSymbolizer *own_s;
    /* Every backtrace's frames, packed into blocks (no allocation per coroutine): bts[i].frames
     * borrow from them until coro__collection_free; backtraces with equal frames side by side
     * share one copy, so bts[i].frames are read-only. */
    CoroFrame **frame_blocks;
    size_t nblocks, block_used, block_cap;
    CoroFrame *last_frames;       /* the frames packed last, and how many */
    size_t last_n;
    const CoroFrame *last_entry, *last_created_at; /* the sites packed last */
} CoroCollection;

/*
 * The one way every reader (CLI, coro_dump, the leak checks, the signal dump) collects: reads
 * the registry described at abi_addr and builds each wanted coroutine's backtrace, in id
 * order. The partial-record rule (collect.c): a record read is always kept, marked by its
 * backtrace's error and counted in incomplete; an unreadable record is counted in unreadable.
 * 0 or -errno (t->error says why); release with coro__collection_free().
 */
int coro__collect(CoroTarget *t, uint64_t abi_addr, const CoroCollectOptions *o,
                  CoroCollection *out);
void coro__collection_free(CoroCollection *c);
/* Finds the wait-for cycles among bts (mutex and write-lock holders): each cycle once, no
 * cycle through a coroutine that is not waiting. Allocates *out (free()); 0 or -ENOMEM. */
int coro__deadlocks_find(const CoroBacktrace *bts, size_t n, CoroDeadlock **out,
                         size_t *nout);

/* Copies the partial-record counts into a dump's header. */
void coro__collection_meta(const CoroCollection *c, CoroDumpMeta *meta);

/* ------------------------------------------------------------------ in-process glue */

/*
 * Reports this process's live coroutines created at or after leak generation since (0: all)
 * to fd in the text format, after a first line "<title>N coroutines still alive:"; the
 * coroutine running on this thread and the chain that entered it are left out (live: its
 * captured registers, or NULL). Returns how many; fd < 0 only counts. Not signal-safe.
 */
size_t coro__leak_report(uint64_t since, int fd, const char *title, const CoroMachineRegs *live);


#endif /* COROSCOPE_INSPECT_INT_H */
