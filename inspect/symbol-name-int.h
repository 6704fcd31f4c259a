/*
 * How a symbol's name is shown: without GCC's clone suffix (".isra.0", ".constprop.1",
 * ".part.0", ".cold", ...), since people and the other readers (gdb shows the DWARF name)
 * know the function as written, but with its symbol version whole: the dots of
 * "clock_nanosleep@GLIBC_2.2.5" belong to the version, not to a clone suffix. Shared by the
 * symbolizer (symbolize.c) and the signal-safe overflow report (guard.c).
 */
#ifndef COROSCOPE_SYMBOL_NAME_INT_H
#define COROSCOPE_SYMBOL_NAME_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * Finds the clone suffix of the len bytes at name: true with name[*start, *end) the part to
 * leave out (".isra.0" of "f.isra.0", ".part.0" of "f.part.0@V_1.2"), false when there is none.
 * A suffix is a run of ".word" components, each a known clone word or a number, ending where
 * the name or its version ('@') ends. CORO_SIGNAL_SAFE.
 */
static inline bool coro__symbol_clone_suffix(const char *name, size_t len, size_t *start,
                                             size_t *end)
{
    static const char *const clones[] = { "isra", "constprop", "part", "cold", "lto_priv",
                                          "localalias", "clone", "specialized" };
    const char *at = memchr(name, '@', len);
    size_t base = at ? (size_t)(at - name) : len;
    const char *dot = memchr(name, '.', base);
    if (!dot || dot == name) {
        return false;
    }
    for (size_t p = (size_t)(dot - name); p < base;) {
        size_t q = p + 1, n = 0;
        bool digits = true;
        while (q + n < base && name[q + n] != '.') {
            digits = digits && name[q + n] >= '0' && name[q + n] <= '9';
            n++;
        }
        bool ok = n > 0 && digits;
        for (size_t i = 0; !ok && i < sizeof(clones) / sizeof(clones[0]); i++) {
            ok = strlen(clones[i]) == n && memcmp(name + q, clones[i], n) == 0;
        }
        if (!ok) {
            return false;
        }
        p = q + n;
    }
    *start = (size_t)(dot - name);
    *end = base;
    return true;
}

#endif /* COROSCOPE_SYMBOL_NAME_INT_H */
