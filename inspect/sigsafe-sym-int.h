/*
 * Naming code addresses inside a signal handler (sigsafe-sym.c), shared by the stack-overflow
 * report (guard.c) and the crash report (signal-crash.c). A table of this process's modules is
 * built in advance outside any handler (cheap: one dl_iterate_phdr). Function names come from a
 * sorted table of every module's function symbols when the crash report asked for one in
 * advance (coro__sigsym_symbols_enable), and otherwise are read from the module's ELF file by
 * the handler itself (open/pread), so a program that never faults pays nothing for them.
 * No malloc, no locks, no stdio on the reading side.
 */
#ifndef COROSCOPE_SIGSAFE_SYM_INT_H
#define COROSCOPE_SIGSAFE_SYM_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <coroscope/coro.h>

#define CORO_SIGSYM_MAX_RANGES 4
#define CORO_SIGSYM_NAME_SIZE 256

typedef struct CoroSigModule {
    uint64_t base;                                  /* load bias */
    uint64_t lo[CORO_SIGSYM_MAX_RANGES];            /* executable segments [lo, hi) */
    uint64_t hi[CORO_SIGSYM_MAX_RANGES];
    unsigned nranges;
    char name[CORO_SIGSYM_NAME_SIZE];               /* path as the loader knows it */
} CoroSigModule;

/*
 * Retakes the module table, and the symbol table once enabled, when an object was loaded or
 * unloaded since the last call (cheap otherwise). Not signal-safe (dl_iterate_phdr takes the
 * loader's lock, libelf allocates): call at process and thread start and before a dump, never
 * in a handler.
 */
void coro__sigsym_refresh(void);

/*
 * From now on keeps the sorted symbol table too (built here, then by every refresh that finds
 * an object loaded or unloaded), for reports that name many addresses (the crash report).
 * Costs time and memory in proportion to the program's symbol tables. Not signal-safe.
 */
void coro__sigsym_symbols_enable(void);

/* The module whose executable segments contain pc, or NULL (unknown, or loaded since the last
 * refresh). Borrowed: valid until the next refresh. CORO_SIGNAL_SAFE. */
const CoroSigModule *coro__sigsym_module_of(uint64_t pc);

/* The name of the function containing pc and pc's offset in it, or NULL. The name is the
 * symbol's, GCC clone suffixes (".isra.0") included. From the symbol table when it is enabled
 * (the name, whole, stays mapped for the life of the process), else read from the module's
 * file into buf (at most size - 1 bytes, NUL-terminated). CORO_SIGNAL_SAFE. */
const char *coro__sigsym_function_of(uint64_t pc, uint64_t *offset, char *buf, size_t size);

/* True when the bytes before ra are a call instruction (direct, or indirect through a register
 * or memory operand): then ra is a plausible return address. Reads the code with
 * process_vm_readv, so an unmapped ra is only a "no". CORO_SIGNAL_SAFE. */
bool coro__sigsym_after_call(uint64_t ra);

#endif /* COROSCOPE_SIGSAFE_SYM_INT_H */
