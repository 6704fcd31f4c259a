#!/bin/sh
# The gdb extension at 100,000 coroutines: coro-info of all of them and coro-bt of one, in
# `gdb -nx -batch` attached to a live process (bench/gdb-bench-prog.c, built by bench.mk
# against the scratch install), with the extension that `make install` installed.
#
#   sh bench/gdb-bench.sh PROG PYDIR [N]
#     PROG   the built bench/gdb-bench-prog.c;  PYDIR  <prefix>/share/coroscope
#
# Prints the best of three runs of each command (gdb's own time.monotonic around
# gdb.execute, so gdb's start-up and symbol loading are not counted), and the CPU time gdb
# spent (time.process_time, best of the same three: on a machine busy with other work the
# wall time grows, this much less), and the goals of issue 13 (coro-info <= 3 s, coro-bt ID
# <= 0.5 s, wall time).
set -eu
PROG=$1
PYDIR=$2
N=${3:-100000}
command -v gdb >/dev/null || { echo "gdb-bench: gdb is not installed"; exit 1; }
T=$(mktemp -d /tmp/coroscope-gdb-bench.XXXXXX)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

"$PROG" "$N" >"$T/ready" &
pid=$!
i=0
while ! grep -q '^ready' "$T/ready" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 1200 ] || { echo "gdb-bench: $PROG $N did not get ready"; exit 1; }
    kill -0 "$pid" 2>/dev/null || { echo "gdb-bench: $PROG $N exited"; exit 1; }
    sleep 0.05
done
mid=$((N / 2))

cat >"$T/time.py" <<PY
import time
import gdb
for cmd in ("coro-info", "coro-bt $mid"):
    best = cpu = None
    for _ in range(3):
        t0, c0 = time.monotonic(), time.process_time()
        text = gdb.execute(cmd, to_string=True)
        t, c = time.monotonic() - t0, time.process_time() - c0
        best = t if best is None else min(best, t)
        cpu = c if cpu is None else min(cpu, c)
    gdb.write("%-32s %10d %10.3f %10.3f\n" % (cmd, len(text.splitlines()), best, cpu))
PY
timeout 600 gdb -nx -batch -ex "source $PYDIR/coroscope-gdb.py" -p "$pid" \
    -ex "source $T/time.py" -ex detach >"$T/out" 2>&1 || true
if grep -q 'ptrace: Operation not permitted' "$T/out"; then
    echo "gdb-bench: skipped: ptrace is not permitted here (kernel.yama.ptrace_scope)"
    exit 0
fi
printf '%-32s %10s %10s %10s\n' "gdb command, $N coroutines" "lines" "seconds" "gdb CPU s"
grep -E '^coro-(info|bt) ' "$T/out" || { sed 's/^/    | /' "$T/out" | tail -20; exit 1; }
info=$(awk '$1 == "coro-info" { print $3 }' "$T/out")
bt=$(awk '$1 == "coro-bt" { print $4 }' "$T/out")
awk -v i="$info" -v b="$bt" 'BEGIN {
    printf "goals: coro-info <= 3 s: %s; coro-bt ID <= 0.5 s: %s\n",
        (i <= 3.0 ? "ok" : "TOO SLOW"), (b <= 0.5 ? "ok" : "TOO SLOW") }'
