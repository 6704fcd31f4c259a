#!/bin/sh
# The installed package as a program outside this repository sees it: `make install` into a
# scratch PREFIX, then the README's example built with nothing but
# `cc prog.c $(pkg-config --cflags --libs coroscope)` (shared library), and again linked
# statically against libcoroscope.a with `pkg-config --static`; both must run and dump their
# coroutine with its frames.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-install.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
fails=0
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fails=$((fails + 1)); }

PREFIX=$T/prefix
# A scratch prefix must not write gdb's system init directory (outside PREFIX, no DESTDIR).
initdir=$(gdb --configuration 2>/dev/null | sed -n 's/.*--with-system-gdbinit-dir=\([^ ]*\).*/\1/p')
had_init=no
[ -n "$initdir" ] && [ -e "$initdir/coroscope.py" ] && had_init=yes
if ! make --no-print-directory -s install B="$B" PREFIX="$PREFIX" >"$T/install.log" 2>&1; then
    bad "make install PREFIX=$PREFIX"; sed 's/^/    | /' "$T/install.log"; exit 1
fi
for f in include/coroscope/coro.h include/coroscope/inspect.h include/coroscope/sync.h \
         include/coroscope/cmocka.h include/coroscope/debug-abi.h lib/libcoroscope.so.0 \
         lib/libcoroscope.so lib/libcoroscope.a lib/pkgconfig/coroscope.pc bin/coroscope; do
    case $f in *sync.h) [ -f include/coroscope/sync.h ] || continue ;; esac
    [ -e "$PREFIX/$f" ] && ok "installed $f" || bad "not installed: $f"
done
if [ -n "$initdir" ] && [ $had_init = no ] && [ -e "$initdir/coroscope.py" ]; then
    bad "make install PREFIX=<scratch> wrote $initdir/coroscope.py outside its prefix"
    rm -f "$initdir/coroscope.py"
else
    ok "a scratch PREFIX leaves gdb's system init directory alone"
fi
soname=$(readelf -d "$PREFIX/lib/libcoroscope.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libcoroscope.so.0 ] && ok "soname libcoroscope.so.0" || bad "soname is '$soname'"

cp tests/readme-example.c "$T/prog.c"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
CC=${CC:-cc}
# Under check-asan the installed library is instrumented: so must its users be.
case "$B" in *asan*) CC="$CC -fsanitize=address,undefined" ;; *tsan*) CC="$CC -fsanitize=thread" ;; esac

# shellcheck disable=SC2046
if $CC -O0 -g -o "$T/prog" "$T/prog.c" $(pkg-config --cflags --libs coroscope) 2>"$T/cc.err"; then
    ok "cc prog.c \$(pkg-config --cflags --libs coroscope)"
    if LD_LIBRARY_PATH="$PREFIX/lib" "$T/prog" >"$T/out" 2>"$T/err"; then
        ok "shared: runs, no leak"
    else
        bad "shared: exit $?"; sed 's/^/    | /' "$T/err"
    fi
    grep -q '^coroutine 1 "conn-7" \[suspended, thread [0-9]*\]:$' "$T/out" &&
        grep -q 'wait_for_data (.*prog.c:5)' "$T/out" && ok "shared: dump shows conn-7 in wait_for_data" ||
        { bad "shared: dump"; sed 's/^/    | /' "$T/out"; }
else
    bad "build against the installed shared library"; sed 's/^/    | /' "$T/cc.err"
fi

# Static: the archive itself, plus what pkg-config --static says it needs.
libs=$(pkg-config --static --libs coroscope | sed 's/-lcoroscope//')
# shellcheck disable=SC2086
if $CC -O0 -g -o "$T/prog-static" "$T/prog.c" $(pkg-config --cflags coroscope) \
        "$PREFIX/lib/libcoroscope.a" $libs 2>"$T/cc.err"; then
    ok "static link with pkg-config --static"
    if ldd "$T/prog-static" | grep -q libcoroscope; then bad "static: still needs libcoroscope.so"; fi
    if "$T/prog-static" >"$T/out" 2>"$T/err" && grep -q 'wait_for_data (.*prog.c:5)' "$T/out"; then
        ok "static: runs and dumps"
    else
        bad "static"; sed 's/^/    | /' "$T/out" "$T/err"
    fi
else
    bad "static link with pkg-config --static"; sed 's/^/    | /' "$T/cc.err"
fi
echo "e2e-install: $fails failed"
[ $fails -eq 0 ]
