#!/bin/sh
# End-to-end tests of the coroscope CLI on a program linked with the static library, on its
# stripped copy (registry found by ELF section, not by symbol), on a core whose library file
# has gone, and on an installed coroscope moved away from its PREFIX.
# Runs from the repository root with the build directory in $B.
set -u
B=${B:-build}
CLI=$B/coroscope
SRC=tests/prog-cli.c
[ -x "$CLI" ] && [ -f "$B/libcoroscope.a" ] || { echo "skip: $CLI not built"; exit 77; }

T=$(mktemp -d /tmp/coroscope-e2e-cli-static.XXXXXX)
. tests/cli-harness.sh
L_PARK_C=$(line_of park_c)
L_SLEEP=$(line_of sleep)
L_CORO_READ=$(line_of coro_read)


# The same sanitizers as the library, or the static link fails.
case "$B" in *asan*) SAN="-fsanitize=address,undefined" ;; *tsan*) SAN="-fsanitize=thread" ;; *) SAN="" ;; esac
PROG=$T/prog-static
# shellcheck disable=SC2046,SC2086
if ! ${CC:-cc} -std=gnu11 -O2 -g $SAN -Iinclude -o "$PROG" "$SRC" "$B/libcoroscope.a" \
        $(pkg-config --libs libdw libelf zlib) -lpthread; then
    echo "FAIL - static link of prog-cli"
    exit 1
fi
if nm "$PROG" | grep -q ' coroscope_debug_abi$' && ! ldd "$PROG" | grep -q libcoroscope; then
    ok "static: runtime linked in, no libcoroscope.so"
else
    bad "static: not a statically linked coroscope program"
fi
strip -o "$T/prog-stripped" "$PROG"
if nm "$T/prog-stripped" 2>&1 | grep -q 'no symbols'; then ok "stripped: no symbol table"; else
    bad "stripped: still has symbols"; fi

# ---------------------------------------------------------------- static, live and core
if start "$PROG"; then
    run "static live: ps" 0 "$CLI" ps -p "$pid" &&
        has "static live: parker-1 in park_c" "$T/out" \
            "^1 +suspended +parker-1 +[0-9]+ +- +park_c \(prog-cli\.c:$L_PARK_C\)$" &&
        has "static live: sleeper running" "$T/out" \
            "^[0-9]+ +running +sleeper +[0-9]+ +- +sleep_deep \(prog-cli\.c:$L_SLEEP\)$" &&
        has "static live: the program's own coro_read shown (coroscope's code is in the program too)" \
            "$T/out" "^7 +suspended +reader +[0-9]+ +- +coro_read \(prog-cli\.c:$L_CORO_READ\)$"
    run "static live: bt --folded" 0 "$CLI" bt --folded -p "$pid" &&
        has "static live: folded parker" "$T/out" \
            "^parker-1;park_entry;park_a;park_b;park_c;coro_yield 1$"
    kill "$pid"
fi
mkdir -p "$T/c"
if make_core "$T/c" "$PROG" abort; then
    run "static core: ps" 0 "$CLI" ps --core "$T/c/core" &&
        has "static core: parker-1 in park_c" "$T/out" \
            "^1 +suspended +parker-1 +[0-9]+ +- +park_c \(prog-cli\.c:$L_PARK_C\)$"
else
    bad "static core: no core"
fi

# ---------------------------------------------------------------- stripped
if start "$T/prog-stripped"; then
    run "stripped live: ps (registry by section)" 0 "$CLI" ps -p "$pid" &&
        has "stripped live: parker-1 listed" "$T/out" "^1 +suspended +parker-1 +[0-9]+ " &&
        has "stripped live: never-entered listed" "$T/out" "^3 +created +fresh "
    # No symbols at all (coroscope's own are stripped too), but .eh_frame is kept: the five
    # frames are all there, as addresses in the program.
    if run "stripped live: bt" 0 "$CLI" bt -p "$pid" 1; then
        n=$(grep -cE '^ *#[0-9]+ +0x[0-9a-f]+ .*prog-stripped' "$T/out")
        [ "$n" -eq 5 ] && ok "stripped live: 5 frames unwound without symbols" ||
            { bad "stripped live: $n frames"; sed 's/^/    | /' "$T/out"; }
    fi
    kill "$pid"
fi
mkdir -p "$T/sc"
if make_core "$T/sc" "$T/prog-stripped" abort; then
    run "stripped core: ps" 0 "$CLI" ps --core "$T/sc/core" &&
        has "stripped core: parker-2 listed" "$T/out" "^2 +suspended +parker-2 "
    # strip keeps the build-id: the unstripped file gives the names back.
    run "stripped core with -e unstripped: ps" 0 "$CLI" ps --core "$T/sc/core" -e "$PROG" &&
        has "stripped core -e: parker-1 in park_c" "$T/out" \
            "^1 +suspended +parker-1 +[0-9]+ +- +park_c \(prog-cli\.c:$L_PARK_C\)$"
else
    bad "stripped core: no core"
fi

# ---------------------------------------------------------------- fully static (-static)
# No dynamic loader, no link map: modules come from the core's NT_FILE note only.
FULL=$T/prog-full-static
# shellcheck disable=SC2046,SC2086
if [ -z "$SAN" ] && ${CC:-cc} -static -std=gnu11 -O2 -g -Iinclude -o "$FULL" "$SRC" \
        "$B/libcoroscope.a" $(pkg-config --static --libs libdw libelf zlib) -lpthread \
        >"$T/static.log" 2>&1; then
    strip -o "$T/full-stripped" "$FULL"
    if start "$FULL"; then
        run "full static live: ps" 0 "$CLI" ps -p "$pid" &&
            has "full static live: parker-1 in park_c" "$T/out" \
                "^1 +suspended +parker-1 +[0-9]+ +- +park_c \(prog-cli\.c:$L_PARK_C\)$"
        kill "$pid"
    fi
    mkdir -p "$T/fs"
    if make_core "$T/fs" "$T/full-stripped" abort; then
        run "full static stripped core: ps" 0 "$CLI" ps --core "$T/fs/core" &&
            has "full static stripped core: listed" "$T/out" "^1 +suspended +parker-1 +[0-9]+ +- +0x"
        # The stripped file is still where the core says: -e supplies symbols and lines.
        run "full static stripped core, -e unstripped: bt" 0 "$CLI" bt --folded \
            --core "$T/fs/core" -e "$FULL" &&
            has "full static stripped core -e: names back" "$T/out" \
                "^parker-1;park_entry;park_a;park_b;park_c;coro_yield 1$"
    else
        bad "full static: no core"
    fi
else
    echo "skip - fully static link (sanitizer build, or static libraries missing)"
fi

# ---------------------------------------------------------------- library replaced while running
# A package upgrade deletes the library a running service mapped: /proc/PID/maps says
# "(deleted)", and the original file is still reachable through /proc/PID/map_files.
mkdir -p "$T/del/tests"
cp "$B/libcoroscope.so.0" "$T/del/"
cp "$B/tests/prog-cli" "$T/del/tests/"
if start "$T/del/tests/prog-cli"; then
    rm "$T/del/libcoroscope.so.0"
    if grep -q "libcoroscope.so.0 (deleted)" "/proc/$pid/maps"; then
        run "deleted library, live: bt" 0 "$CLI" bt --folded -p "$pid" &&
            has "deleted library, live: frames and names" "$T/out" \
                "^parker-1;park_entry;park_a;park_b;park_c;coro_yield 1$"
    else
        bad "deleted library: maps does not say (deleted)"
    fi
    kill "$pid"
fi

# ---------------------------------------------------------------- module files gone
mkdir -p "$T/gone/tests"
cp "$B/libcoroscope.so.0" "$T/gone/"
cp "$B/tests/prog-cli" "$T/gone/tests/"
if make_core "$T/gone" "$T/gone/tests/prog-cli" abort; then
    # The program moved after the crash: -e finds it again.
    mv "$T/gone/tests/prog-cli" "$T/gone/moved"
    run "core whose program moved: without -e" 1 "$CLI" ps --core "$T/gone/core" &&
        has "program moved: warning names it and -e" "$T/err" \
            "warning: core file .*: module .*/gone/tests/prog-cli is missing .*pass the program with -e"
    run "core whose program moved: with -e" 0 "$CLI" ps --core "$T/gone/core" -e "$T/gone/moved" &&
        has "program moved, -e: parker-1 in park_c" "$T/out" \
            "^1 +suspended +parker-1 +[0-9]+ +- +park_c \(prog-cli\.c:$L_PARK_C\)$"
    rm "$T/gone/libcoroscope.so.0"
    run "core whose library is gone" 2 "$CLI" ps --core "$T/gone/core" -e "$T/gone/moved" &&
        has "library gone: says files are missing" "$T/err" \
            "files of [0-9]+ of its modules are missing .*libcoroscope\.so\.0" &&
        lacks "library gone: does not blame the program" "$T/err" "not built with coroscope"
else
    bad "library gone: no core"
fi

# ---------------------------------------------------------------- installed, then moved
# DESTDIR, not PREFIX: the build's coroscope.pc keeps its prefix for whoever uses it next.
if make --no-print-directory -s install B="$B" DESTDIR="$T/dest" >"$T/inst.log" 2>&1; then
    bin=$(find "$T/dest" -path '*/bin/coroscope' | head -1)
    if [ -n "$bin" ]; then
        mkdir -p "$T/moved"
        mv "$bin" "$T/moved/coroscope"
        rm -rf "$T/dest"
        run "installed: --version, moved away from its prefix" 0 "$T/moved/coroscope" --version
        if [ -s "$T/c/core" ]; then
            run "installed: ps of a core, moved away from its prefix" 0 "$T/moved/coroscope" \
                ps --core "$T/c/core" && has "installed: parker-1" "$T/out" "^1 +suspended +parker-1"
        fi
    else
        bad "make install put no bin/coroscope under DESTDIR"
    fi
else
    bad "make install DESTDIR=$T/dest"
    sed 's/^/    | /' "$T/inst.log" | tail -5
fi

echo "e2e-cli-static: $fails failed"
[ "$fails" -eq 0 ]
