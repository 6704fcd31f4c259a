/*
 * Naming code addresses inside a signal handler (sigsafe-sym.c), shared by the stack-overflow
 * report (guard.c) and the crash report (signal-crash.c): a table of this process's modules and
 * a sorted table of their function symbols, both built in advance outside any handler, then
 * only read by the handler. No malloc, no locks, no stdio on the reading side.
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
 * Retakes the module and symbol tables when an object was loaded or unloaded since the last
 * call (cheap otherwise). Not signal-safe (dl_iterate_phdr takes the loader's lock, libelf
 * allocates): call at process and thread start and before a dump, never in a handler.
 */
void coro__sigsym_refresh(void);

/* The module whose executable segments contain pc, or NULL (unknown, or loaded since the last
 * refresh). Borrowed: valid until the next refresh. CORO_SIGNAL_SAFE. */
const CoroSigModule *coro__sigsym_module_of(uint64_t pc);

/* The name of the function containing pc and pc's offset in it, or NULL. The name is the
 * symbol's, GCC clone suffixes (".isra.0") included; it stays mapped for the life of the
 * process. CORO_SIGNAL_SAFE. */
const char *coro__sigsym_function_of(uint64_t pc, uint64_t *offset);

/* True when the bytes before ra are a call instruction (direct, or indirect through a register
 * or memory operand): then ra is a plausible return address. Reads the code with
 * process_vm_readv, so an unmapped ra is only a "no". CORO_SIGNAL_SAFE. */
bool coro__sigsym_after_call(uint64_t ra);

#endif /* COROSCOPE_SIGSAFE_SYM_INT_H */
