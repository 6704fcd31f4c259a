#!/bin/sh
# Watching costs the watched program nothing measurable (issue 13 §1, §3): a target with
# 100,000 parked coroutines and one coroutine switching flat out prints its round trips per
# second every 0.5 s; compared in one run:
#   alone                    nothing reads it
#   top attached             `coroscope top -b -d 0.2 -p PID` refreshing all the while (no
#                            ptrace: process_vm_readv only), with top's own CPU per refresh
#   watchdog on              CORO_STALL_MS=100 (a thread in the target checks every 50 ms)
# Medians of the 0.5 s intervals (the first one dropped: creation).
#
#   sh bench/watch-bench.sh TARGET CLI [N]
set -eu
TARGET=$1 CLI=$2 N=${3:-100000}
T=$(mktemp -d /tmp/coroscope-watch-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
export CORO_LEAK_CHECK=0
SECS=10

median() { sed -n 's/^rate //p' "$1" | tail -n +2 | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print 0 }'; }

wait_ready() { k=0; while ! grep -q ready "$1" 2>/dev/null; do k=$((k + 1)); [ $k -gt 600 ] && { echo "watch-bench: target not ready"; exit 1; }; sleep 0.05; done; }

"$TARGET" "$N" "$SECS" >"$T/alone" 2>&1
CORO_STALL_MS=100 "$TARGET" "$N" "$SECS" >"$T/watchdog" 2>&1

"$TARGET" "$N" "$SECS" >"$T/top" 2>&1 &
pid=$!
wait_ready "$T/top"
refreshes=8 # each refresh of 100,000 takes a few hundred ms: all of them inside the run
/usr/bin/time -f "%U %S %e %M" -o "$T/time" "$CLI" top -b -d 0.2 -n "$refreshes" -p "$pid" >"$T/top.out" 2>"$T/top.err" || true
wait "$pid" || true

alone=$(median "$T/alone") with_top=$(median "$T/top") watchdog=$(median "$T/watchdog")
read -r user sys wall rss <<EOT
$(tail -n 1 "$T/time")
EOT
n_ref=$(grep -c '^coroscope top - ' "$T/top.out" || true)
cpu_ms=$(awk -v u="$user" -v s="$sys" -v n="$n_ref" 'BEGIN { if (n) printf "%.0f", (u + s) * 1000 / n; else print "-" }')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b) printf "%.3f", a / b; else print "-" }'; }
echo "| $N parked coroutines + 1 switching flat out | round trips/s (median of 0.5 s) | vs alone |"
echo "|---|---|---|"
echo "| alone | $alone | 1.000 |"
echo "| coroscope top -b -d 0.2 attached ($n_ref refreshes; top: $cpu_ms ms CPU per refresh, max RSS $((rss / 1024)) MB) | $with_top | $(ratio "$with_top" "$alone") |"
echo "| CORO_STALL_MS=100 (in-process watchdog) | $watchdog | $(ratio "$watchdog" "$alone") |"
