#!/bin/sh
# The stalled-loop watchdog (issue 13 §3) on a real program: coroutine "busy" runs 400 ms
# without yielding, twice, while "polite" on another thread yields every millisecond.
#   env   CORO_STALL_MS=100 + CORO_DUMP_PATH: exactly two reports (once per stall), each naming
#         busy, its thread and how long, with the leaf function burn() in its backtrace; none
#         for polite; the program's own result is unchanged.
#   api   coro_stall_watchdog(100, path, CORO_DUMP_JSON): two JSON documents with a "stall"
#         member and only that coroutine, whose frames include burn.
#   off   without CORO_STALL_MS: no report, no helper thread.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-stall.XXXXXX)
SRC=tests/prog-watchdog.c
. tests/cli-harness.sh
PROG=$B/tests/prog-watchdog
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }

run "env: the program runs as before" 0 env CORO_STALL_MS=100 CORO_DUMP_PATH="$T/stall.txt" "$PROG"
has "env: the program's output" "$T/out" '^done$'
n=$(grep -c '^coroscope: stall: ' "$T/stall.txt" 2>/dev/null)
[ "${n:-0}" -eq 2 ] && ok "env: two reports for two stalls" || { bad "env: ${n:-0} reports"; cat "$T/stall.txt"; }
has "env: the report names busy, its thread and how long" "$T/stall.txt" \
    '^coroscope: stall: coroutine [0-9]+ "busy" on thread [0-9]+ has not yielded for at least [0-9]+ ms \(CORO_STALL_MS 100\)$'
has "env: busy is shown running" "$T/stall.txt" '^coroutine [0-9]+ "busy" \[running, thread [0-9]+\]:$'
n=$(grep -c ' burn (tests/prog-watchdog.c:[0-9]*)' "$T/stall.txt")
[ "$n" -eq 2 ] && ok "env: the leaf function burn() in both backtraces" || { bad "env: burn in $n reports"; cat "$T/stall.txt"; }
lacks "env: nothing about polite" "$T/stall.txt" 'polite'

run "api: the program runs as before" 0 "$PROG" api "$T/stall.json"
python3 - "$T/stall.json" >"$T/check" 2>&1 <<'PY'
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("documents", len(docs))
for d in docs:
    busy = [c for c in d["coroutines"] if c["name"] == "busy"]
    frames = [f.get("function") for f in busy[0]["frames"]] if busy else []
    print("stall", d["stall"]["id"] == (busy[0]["id"] if busy else -1),
          d["stall"]["for_ns"] >= 100000000, len(d["coroutines"]), "burn" in frames)
PY
has "api: two JSON reports" "$T/check" '^documents 2$'
n=$(grep -c '^stall True True 1 True$' "$T/check")
[ "$n" -eq 2 ] && ok "api: each has the stall member, only busy, and burn among its frames" \
    || { bad "api: $(cat "$T/check")"; head -c 2000 "$T/stall.json"; }

run "off: no watchdog without CORO_STALL_MS" 0 "$PROG"
lacks "off: no report" "$T/err" 'stall'
[ $fails -eq 0 ] && echo "e2e-stall: all passed" || echo "e2e-stall: $fails failed"
[ $fails -eq 0 ]
