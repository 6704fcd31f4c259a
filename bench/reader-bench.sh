#!/bin/sh
# The CLI on a live process with 100,001 parked coroutines (issue 13 §7).
#
# Starts `tests/prog-cli wait 100000 0` (100,000 coroutines parked 8 user calls deep plus the
# fixed set, 16 KiB stacks) and times, best of REPS runs each, with the maximum RSS:
#   coroscope ps -p PID                    (every coroutine, one line each)
#   coroscope bt -p PID 50000              (one coroutine among all the others)
#   coroscope top -b -n 1 -p PID           (one refresh, read without stopping the process)
# "cpu" is user + system time of the best run: on a shared machine the wall time also counts
# waiting for a CPU, so both are printed, with the load average. The goals are printed beside
# the figures.
#
#   sh bench/reader-bench.sh [B]    B: build directory (default build)
# READER_BENCH_CLI=PATH times another coroscope binary (an older build) on the same target.
set -eu
B=${1:-${B:-build}}
CLI=${READER_BENCH_CLI:-$B/coroscope}
PROG=$B/tests/prog-cli
[ -x "$CLI" ] && [ -x "$PROG" ] || { echo "reader-bench: build first (make all $B/tests/prog-cli)"; exit 1; }
[ -x /usr/bin/time ] || { echo "reader-bench: /usr/bin/time (Debian package time) not installed"; exit 1; }
N=${READER_BENCH_N:-100000}
REPS=${READER_BENCH_REPS:-5}
T=$(mktemp -d /tmp/coroscope-reader-bench.XXXXXX)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
export CORO_LEAK_CHECK=0

"$PROG" wait "$N" 0 >"$T/ready" 2>&1 &
pid=$!
for _ in $(seq 600); do
    grep -q '^ready' "$T/ready" 2>/dev/null && break
    sleep 0.1
done
grep -q '^ready' "$T/ready" || { echo "reader-bench: prog-cli did not get ready"; exit 1; }

# best-of-REPS run of a command: prints "wall cpu maxrss_kb" of the run with the least CPU
best() {
    b=""
    for _ in $(seq "$REPS"); do
        /usr/bin/time -f '%e %U %S %M' -o "$T/time" "$@" >"$T/out" 2>"$T/err" || true
        r=$(awk '{ printf "%.3f %.3f %d\n", $1, $2 + $3, $4 }' "$T/time")
        if [ -z "$b" ] || awk -v r="$r" -v b="$b" 'BEGIN { split(r, x, " "); split(b, y, " ");
                                                         exit !(x[2] < y[2]) }'; then
            b=$r
        fi
    done
    echo "$b"
}

row() { # WHAT "wall cpu rss_kb" GOAL; MB = 1000 kB, as /usr/bin/time's %M counts kB
    set -- "$1" $2 "$3"
    printf '%-36s %8s %8s %10s   %s\n' "$1" "$2" "$3" "$(awk -v k="$4" 'BEGIN { printf "%.1f", k / 1000 }')" "$5"
}

ps_r=$(best "$CLI" ps -p "$pid")
lines=$(($(wc -l <"$T/out") - 1))
bt_r=$(best "$CLI" bt -p "$pid" 50000)
top_r=$(best "$CLI" top -b -n 1 -p "$pid")

date -u +"date: %Y-%m-%d %H:%M UTC"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "target: $B/tests/prog-cli wait $N 0 ($lines coroutines listed by ps), best of $REPS by CPU"
printf '%-36s %8s %8s %10s   %s\n' "command" "wall s" "cpu s" "maxrss MB" "goal"
row "coroscope ps -p PID" "$ps_r" "<= 0.25 s, <= 64 MB"
row "coroscope bt -p PID 50000" "$bt_r" "<= 0.05 s"
row "coroscope top -b -n 1 -p PID" "$top_r" "<= 0.2 s of CPU"
