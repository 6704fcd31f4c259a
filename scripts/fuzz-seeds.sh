#!/bin/sh
# Regenerates the seed corpus of the fuzz targets (fuzz/corpus/<target>/, docs/fuzzing.md)
# from real programs of the test suite, run here:
#   core      kernel cores of tests/prog-cli (shared library), of prog-cli linked with the
#             static library and stripped (registry found by section), and of
#             examples/hello-server with two coroutines deadlocked on mutexes, each trimmed
#             (scripts/fuzz-trim-core.py) to its notes, small segments and registry pages;
#   registry  memory images (build/fuzz/seed-image) of the registry in those cores and in
#             cores of prog-cli with many coroutines on several threads and with a record
#             list made a cycle and a descriptor whose magic was scribbled on;
#   elf       prog-cli, prog-cli stripped, a small shared library, libcoroscope.so stripped
#             of DWARF;
#   sigsym    the same files.
# Usage: scripts/fuzz-seeds.sh [B=build]. Needs gdb-free kernel cores: core_pattern must not
# pipe (it writes "core" in the program's directory). Keeps the corpus under 2 MB.
set -eu
B=${B:-build}
cd "$(dirname "$0")/.."
case "$(cat /proc/sys/kernel/core_pattern)" in
    core*) ;;
    *) echo "fuzz-seeds: kernel.core_pattern must be 'core' (is $(cat /proc/sys/kernel/core_pattern))" >&2
       exit 1 ;;
esac
make --no-print-directory B="$B" all "$B/tests/prog-cli" "$B/tests/libchain-inspect.so" \
    "$B/examples/hello-server" "$B/fuzz/seed-image"
T=$(mktemp -d /tmp/coroscope-fuzz-seeds.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
export CORO_LEAK_CHECK=0 ASAN_OPTIONS="detect_leaks=0:disable_coredump=0"

# core_of NAME CMD...: runs CMD in $T/NAME until it dumps core; the core is $T/NAME/core.
core_of() {
    d=$T/$1
    shift
    mkdir -p "$d"
    sh -c 'cd "$1" && shift && ulimit -c unlimited && exec "$@"' sh "$d" "$@" >/dev/null 2>&1 || true
    [ -s "$d/core" ] || { echo "fuzz-seeds: no core from $*" >&2; exit 1; }
}

PROG=$(realpath "$B/tests/prog-cli")
core_of cli "$PROG" abort
core_of many "$PROG" many-abort 40 2
core_of cycle "$PROG" corrupt-cycle
core_of magic "$PROG" corrupt-magic
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -g -Iinclude -o "$T/prog-static" tests/prog-cli.c "$B/libcoroscope.a" \
    $(pkg-config --libs libdw libelf zlib) -lpthread
strip -o "$T/prog-stripped" "$T/prog-static"
core_of stripped "$T/prog-stripped" abort
# hello-server: coroutines waiting on fds, a queue and two mutexes in a deadlock; then ABRT.
mkdir -p "$T/deadlock"
SERVER=$(realpath "$B/examples/hello-server")
(cd "$T/deadlock" && ulimit -c unlimited &&
    exec "$SERVER" --clients 2 --idle 3 --workers 2 --deadlock) >"$T/ready" 2>/dev/null &
pid=$!
i=0
while ! grep -q '^ready' "$T/ready" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 200 ] && { kill -9 $pid; echo "fuzz-seeds: hello-server not ready" >&2; exit 1; }
    sleep 0.05
done
sleep 0.3
kill -ABRT $pid
wait $pid 2>/dev/null || true
[ -s "$T/deadlock/core" ] || { echo "fuzz-seeds: no core from hello-server" >&2; exit 1; }

C=fuzz/corpus
rm -rf "$C"
mkdir -p "$C/core" "$C/registry" "$C/elf" "$C/sigsym"
for n in cli many cycle magic stripped deadlock; do
    "$B/fuzz/seed-image" "$T/$n/core" "$C/registry/$n.img" >/dev/null
done
for n in cli stripped deadlock; do
    python3 scripts/fuzz-trim-core.py "$T/$n/core" "$C/registry/$n.img" "$C/core/$n.core"
done
strip -o "$T/prog-cli-stripped" "$PROG"
strip -g -o "$T/libcoroscope-nodebug.so" "$B/libcoroscope.so.0"
for d in elf sigsym; do
    cp "$PROG" "$C/$d/prog-cli"
    cp "$T/prog-cli-stripped" "$C/$d/prog-cli-stripped"
    cp "$B/tests/libchain-inspect.so" "$C/$d/libchain-inspect.so"
    cp "$T/libcoroscope-nodebug.so" "$C/$d/libcoroscope-nodebug.so"
done
du -sh "$C"/* "$C"
total=$(du -sb "$C" | cut -f1)
[ "$total" -lt 2000000 ] || { echo "fuzz-seeds: corpus is $total bytes, over 2 MB" >&2; exit 1; }
