#!/bin/sh
# coroscope top in batch mode on real processes: a thread stalled in a coroutine that never
# yields, a coroutine switching ~1,000 times a second, waits, a deadlock, and the target never
# stopped (no tracer attached while top reads it).
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-top.XXXXXX)
SRC=tests/prog-stall.c
. tests/cli-harness.sh
CLI=$B/coroscope

start_cmd "$B/tests/prog-stall" || exit 1
"$CLI" top -p "$pid" -b -n 4 -d 0.3 >"$T/top" 2>"$T/err" &
top=$!
tracer=0
for k in 1 2 3 4 5 6 7 8; do
    t=$(awk '/^TracerPid:/ { print $2 }' "/proc/$pid/status")
    [ "$t" != 0 ] && tracer=$t
    sleep 0.1
done
wait "$top"
rc=$?
[ $rc -eq 0 ] && ok "top -b -n 4 exits 0" || { bad "top exited $rc"; cat "$T/err"; }
[ "$tracer" = 0 ] && ok "the target was never traced (stopped) while top read it" \
    || bad "TracerPid was $tracer while top ran"
n=$(grep -c '^coroscope top - ' "$T/top")
[ "$n" -eq 4 ] && ok "four refreshes" || bad "$n refreshes"
has "header: counts per state" "$T/top" '^coroscope top - .* 4 coroutines: 1 created, 1 running, 0 suspended, 2 waiting$'
has "header: rates from the second refresh" "$T/top" '; created/s 0\.0, terminated/s 0\.0$'
has "stalled: the spinner is named with its thread" "$T/top" \
    '^warning: stalled: coroutine [0-9]+ "spinner" on thread [0-9]+ has not yielded for at least [0-9.]+ (ms|s)$'
has "columns" "$T/top" '^ID +NAME +STATE +WAIT +FOR +SW/s +THREAD +CREATED AT$'
has "the idle coroutine waits on its queue" "$T/top" '^[0-9]+ +idle +waiting +queue 0x[0-9a-f]+ +[0-9.]+ (ms|s) +0 '
rate=$(sed -nE 's/^[0-9]+ +ticker .* ([0-9]+) +[0-9]+ +ticker_thread .*/\1/p' "$T/top" | tail -n 1)
rate=${rate:-0}
[ "$rate" -gt 100 ] && [ "$rate" -lt 2000 ] && ok "ticker switches ~1000/s ($rate)" \
    || bad "ticker SW/s $rate"
has "creation site with file:line" "$T/top" '^[0-9]+ +ticker .* ticker_thread \(prog-stall\.c:[0-9]+\)$'
# The single-snapshot warnings, thresholds lowered: the same lines in top, ps and the dumps.
run "top --never-entered" 0 "$CLI" top -p "$pid" -b -n 1 --never-entered 0.01
has "top: never entered" "$T/out" \
    '^warning: never entered: coroutine [0-9]+ "unstarted" was created [0-9.]+ (ms|s) ago and never entered$'
lacks "top: no never-entered warning at the default 60 s" "$T/top" 'never entered'
run "ps warnings" 0 "$CLI" ps -p "$pid" --never-entered 0.01 --long-wait 0.01
has "ps: never entered, with the creation site" "$T/out" \
    '^warning: never entered: coroutine [0-9]+ "unstarted" was created [0-9.]+ (ms|s) ago and never entered \(created at maker prog-stall\.c:[0-9]+\)$'
has "ps: long wait on the queue" "$T/out" '^warning: long wait: coroutine [0-9]+ "idle" has waited [0-9.]+ (us|ms|s) on queue with no deadline$'
run "bt --json warnings" 0 "$CLI" bt --json -p "$pid" --never-entered 0.01
got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); n={c["id"]:c["name"] for c in d["coroutines"]}; print(sorted((w["kind"], n[w["id"]], w["for_ns"] > 0) for w in d["warnings"]))' "$T/out" 2>&1)
[ "$got" = "[('never-entered', 'unstarted', True)]" ] && ok "bt --json: the warnings array ($got)" || bad "bt --json warnings: $got"
run "bt text header" 0 "$CLI" bt -p "$pid" --never-entered 0.01
has "bt: the warning in the dump's header" "$T/out" '^coroscope: warning: never entered: coroutine [0-9]+ "unstarted"'
run "bad --never-entered" 64 "$CLI" ps -p "$pid" --never-entered abc
has "bad --never-entered: one line" "$T/err" "^coroscope: --never-entered wants seconds > 0, not 'abc'$"
kill -9 "$pid"

# Waits and a deadlock in a real server; a long wait with no deadline (threshold lowered).
SERVER=$B/examples/hello-server
"$SERVER" --idle 1 --deadlock >"$T/ready2" 2>&1 &
spid=$!
pids="$pids $spid"
i=0
while ! grep -q '^ready' "$T/ready2" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 200 ] && { bad "hello-server did not get ready"; exit 1; }; sleep 0.05
done
run "top on hello-server" 0 "$CLI" top -p "$spid" -b -n 1 --long-wait 0.01
has "deadlock warning" "$T/out" '^warning: deadlock: coroutine [0-9]+ "db-a" waits for mutex'
has "long wait warning for the acceptor (an fd, no deadline)" "$T/out" \
    '^warning: long wait: coroutine 1 "acceptor" has waited [0-9.]+ (us|ms|s) on fd with no deadline$'
lacks "no long-wait warning for a wait with a deadline" "$T/out" 'long wait: coroutine [0-9]+ "conn-'
kill "$spid"

run "top without -p" 64 "$CLI" top -b
has "says which process" "$T/err" '^coroscope: top: which process\? \(-p PID\)$'
run "top -n 0" 64 "$CLI" top -p 1 -n 0
run "top -p with no value" 64 "$CLI" top -p
has "says the option needs a value" "$T/err" 'needs a value'
run "top of a process that does not exist" 2 "$CLI" top -p 4194000 -b -n 1
one_line "one line for a missing process" "$T/err"
[ $fails -eq 0 ] && echo "e2e-top: all passed" || echo "e2e-top: $fails failed"
[ $fails -eq 0 ]
