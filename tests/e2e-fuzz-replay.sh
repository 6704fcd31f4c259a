#!/bin/sh
# Every seed (fuzz/corpus/<target>/) and every input that once crashed a reader
# (fuzz/regress/<target>/) goes through its fuzz target again, built without clang
# ($B/fuzz/replay-<target>: gcc, fuzz/replay.c as main; under `make check-asan` with ASan and
# UBSan): a crash, a sanitizer report or a hang fails the test (docs/fuzzing.md).
set -u
B=${B:-build}
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Leaks inside libdw itself are not the readers' (fuzz/lsan.supp says which).
export LSAN_OPTIONS="suppressions=$(pwd)/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# fuzz/regress/core/hang-nt-file-fifo names this FIFO in its NT_FILE note (a reader that
# opened it would wait for a writer forever).
FIFO=/tmp/coroscope-fuzz-fifo
made_fifo=""
if [ ! -e "$FIFO" ]; then
    mkfifo "$FIFO" && made_fifo=1
fi
trap '[ -n "$made_fifo" ] && rm -f "$FIFO"' EXIT INT TERM
[ -p "$FIFO" ] || echo "note - $FIFO is not a FIFO: hang-nt-file-fifo checks nothing"
fails=0
for t in registry core elf sigsym; do
    prog=$B/fuzz/replay-$t
    if [ ! -x "$prog" ]; then
        echo "FAIL - $prog is not built"; fails=$((fails + 1)); continue
    fi
    dirs=""
    for d in fuzz/corpus/$t fuzz/regress/$t; do
        [ -d "$d" ] && dirs="$dirs $d"
    done
    n=$(find $dirs -type f 2>/dev/null | wc -l)
    [ "$n" -gt 0 ] || { echo "FAIL - no inputs for $t"; fails=$((fails + 1)); continue; }
    # shellcheck disable=SC2086
    if out=$(timeout 120 "$prog" $dirs 2>&1); then
        echo "ok   - fuzz-$t: $n seed and regression inputs replayed ($out)"
    else
        echo "FAIL - fuzz-$t: a seed or regression input fails (exit $?):"
        printf '%s\n' "$out" | tail -40 | sed 's/^/    | /'
        fails=$((fails + 1))
    fi
done
[ $fails -eq 0 ]
