#!/bin/sh
# Waits in every view, on a real server: examples/hello-server with idle clients (fd waits
# with deadlines), a worker pool (queue waits) and two coroutines deadlocked on two CoMutexes.
# coroscope ps (live and on a kernel core) shows the WAIT column and the deadlock and exits 3;
# bt --json has each wait object and the cycle; the signal dump names the deadlock too.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-wait.XXXXXX)
SRC=examples/hello-server.c
. tests/cli-harness.sh
SERVER=$(realpath "$B/examples/hello-server")
CLI=$B/coroscope

# examples/loop-embed: a program's own poll(2) loop drives coroscope's through coro_loop_fd.
if timeout 10 "$B/examples/loop-embed" >"$T/embed" 2>&1; then
    has "loop-embed: coroutines ran inside the program's own loop" "$T/embed" '^done: both'
    has "loop-embed: the sleeping coroutine ticked three times" "$T/embed" '^ticker: tick 3$'
else
    bad "loop-embed failed or hung"; sed 's/^/    | /' "$T/embed"
fi

# Started in its own directory with cores allowed: the last part reads its kernel core.
mkdir -p "$T/c"
(cd "$T/c" && ulimit -c unlimited && CORO_DUMP_SIGNAL=USR1 CORO_DUMP_PATH=$T/sig.txt \
    exec "$SERVER" --clients 2 --idle 3 --workers 2 --deadlock) >"$T/ready" 2>"$T/server.err" &
pid=$!
pids="$pids $pid"
i=0
while ! grep -q '^ready' "$T/ready" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 200 ] && { bad "hello-server did not get ready"; cat "$T/server.err"; exit 1; }
    sleep 0.05
done
ok "hello-server served 2 full conversations and parked 3 idle ones ($(cat "$T/ready"))"

run "ps -p exits 3 on a deadlock" 3 "$CLI" ps -p "$pid"
cp "$T/out" "$T/ps.txt"
has "ps: header has WAIT" "$T/ps.txt" '^ID +STATE +NAME +THREAD +WAIT +WHERE$'
has "ps: acceptor waits for its listening fd" "$T/ps.txt" \
    '^1 +waiting +acceptor +[0-9]+ +fd [0-9]+ readable, [0-9.]+ (s|ms|us) +acceptor \(hello-server\.c:[0-9]+\)$'
has "ps: workers wait on the job queue" "$T/ps.txt" '^[0-9]+ +waiting +worker-1 +[0-9]+ +queue 0x[0-9a-f]+, '
has "ps: a server connection waits for its client's name, with the read deadline" "$T/ps.txt" \
    'conn-[0-9]+ +[0-9]+ +fd [0-9]+ readable, [0-9.]+ (s|ms|us), deadline in [0-9.]+ s +co_read_line'
has "ps: db-a waits for a mutex held by db-b" "$T/ps.txt" \
    '^([0-9]+) +waiting +db-a +[0-9]+ +mutex 0x[0-9a-f]+ held by coroutine [0-9]+, '
has "ps: the deadlock line names both and their mutexes" "$T/ps.txt" \
    '^deadlock: coroutine [0-9]+ "db-a" waits for mutex 0x[0-9a-f]+ held by [0-9]+ "db-b", which waits for mutex 0x[0-9a-f]+ held by [0-9]+$'
n=$(grep -c '^deadlock:' "$T/ps.txt")
[ "$n" -eq 1 ] && ok "the cycle is reported once" || bad "$n deadlock lines"
lacks "no coroscope-internal function in WHERE" "$T/ps.txt" ' (wait_fd|coro__park|wait_granted_unlock) \('

run "bt --json" 0 "$CLI" bt --json -p "$pid"
python3 - "$T/out" "$T/ps.txt" >"$T/py" 2>&1 <<'PY'
import json, re, sys
doc = json.load(open(sys.argv[1]))
by = {c["name"]: c for c in doc["coroutines"]}
a, b = by["db-a"], by["db-b"]
assert a["wait"]["kind"] == "mutex" and a["wait"]["holder"] == b["id"], a["wait"]
assert b["wait"]["holder"] == a["id"], b["wait"]
assert a["wait"]["for_ns"] > 0 and a["wait"]["since_ns"] > 0
w = by["worker-1"]["wait"]
assert w["kind"] == "queue" and w["holder"] is None and w["fd"] is None, w
conns = [c for c in doc["coroutines"] if c["name"] and c["name"].startswith("conn-")
         and c["wait"] and c["wait"]["kind"] == "fd"]
assert len(conns) == 3, [c["name"] for c in conns]
assert all(c["wait"]["events"] & 1 and c["wait"]["deadline_ns"] for c in conns)
cyc = doc["deadlocks"]
assert len(cyc) == 1 and sorted(cyc[0]["cycle"]) == sorted([a["id"], b["id"]]), cyc
assert set(cyc[0]["objects"]) == {a["wait"]["object"], b["wait"]["object"]}
try:
    import jsonschema
    jsonschema.validate(doc, json.load(open("docs/coroscope-dump.schema.json")))
    print("schema: valid")
except ImportError:
    print("schema: python3-jsonschema missing, not validated")
print("json: ok")
PY
if grep -q '^json: ok' "$T/py"; then ok "bt --json: waits, holders, the cycle ($(grep schema "$T/py"))"
else bad "bt --json"; sed 's/^/    | /' "$T/py"; fi

run "bt --group" 0 "$CLI" bt --group -p "$pid"
cp "$T/out" "$T/group.txt"
has "grouped: the header counts groups" "$T/group.txt" '^coroscope: 12 coroutines in 7 groups, process [0-9]+$'
n=$(grep -cE '^3 coroutines \[waiting fd\]: [0-9,-]+$' "$T/group.txt")
[ "$n" -eq 2 ] && ok "grouped: idle clients and their server connections, 3 each" \
    || { bad "grouped: $n groups of 3 fd waiters"; sed 's/^/    | /' "$T/group.txt"; }
has "grouped: the worker pool is one group" "$T/group.txt" '^2 coroutines \[waiting queue\]: [0-9]+(-[0-9]+|,[0-9]+)$'
run "bt --group --json" 0 "$CLI" bt --group --json -p "$pid"
python3 - "$T/out" >"$T/py" 2>&1 <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
g = doc["groups"]
assert [x["count"] for x in g] == sorted([x["count"] for x in g], reverse=True), g
assert sum(x["count"] for x in g) == len(doc["coroutines"])
assert all(len(x["ids"]) == x["count"] for x in g)
try:
    import jsonschema
    jsonschema.validate(doc, json.load(open("docs/coroscope-dump.schema.json")))
except ImportError:
    pass
print("groups: ok")
PY
grep -q '^groups: ok' "$T/py" && ok "bt --group --json: groups largest first, every coroutine once, schema" \
    || { bad "bt --group --json"; sed 's/^/    | /' "$T/py"; }

# pprof: decoded by an independent reader, Go's own pprof.
run "bt --pprof" 0 "$CLI" bt --pprof "$T/coro.pb.gz" -p "$pid"
if command -v go >/dev/null 2>&1; then
    (cd "$T" && HOME=$T PPROF_TMPDIR=$T timeout 120 go tool pprof -raw coro.pb.gz) >"$T/raw" 2>&1
    has "pprof: sample type coroutines/count" "$T/raw" '^coroutines/count$'
    n=$(grep -cE '^ +3: ([0-9]+ )+$' "$T/raw")
    [ "$n" -eq 2 ] && ok "pprof: two samples of 3 coroutines (idle clients, their connections)" \
        || { bad "pprof: $n samples of 3"; sed 's/^/    | /' "$T/raw" | head -40; }
    has "pprof: labels state and wait" "$T/raw" 'state:\[waiting\] wait:\[fd\]'
    has "pprof: a location names say_hello with its line" "$T/raw" ' say_hello examples/hello-server\.c:[0-9]+ '
    has "pprof: the program's mapping" "$T/raw" '/examples/hello-server '
    bid=$(readelf -n "$B/examples/hello-server" 2>/dev/null | sed -n 's/.*Build ID: //p')
    has "pprof: the mapping carries the program's build id ($bid)" "$T/raw" "/examples/hello-server ${bid:-none} \\["
else
    bad "go is not installed: cannot decode the pprof profile (make deps installs golang-go)"
fi

if command -v gdb >/dev/null 2>&1; then
    gdb -nx -batch -iex "add-auto-load-safe-path $(cd "$B" && pwd)" -p "$pid" -ex coro-info \
        >"$T/gdb" 2>&1
    has "gdb coro-info: db-a's wait and holder" "$T/gdb" \
        '^ +[0-9]+ +waiting +"db-a" +thread [0-9]+ \[mutex 0x[0-9a-f]+ held by coroutine [0-9]+, [0-9.]+ (s|ms|us)\] at db_a '
    has "gdb coro-info: the deadlock" "$T/gdb" '^deadlock: coroutine [0-9]+ "db-a" waits for mutex 0x[0-9a-f]+ held by [0-9]+ "db-b", which waits for mutex 0x[0-9a-f]+ held by [0-9]+$'
    lacks "gdb coro-info: no Python error" "$T/gdb" 'Python Exception|Traceback'
fi

kill -USR1 "$pid"
i=0
while ! grep -q 'deadlock:' "$T/sig.txt" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
has "signal dump names the deadlock" "$T/sig.txt" '^coroscope: deadlock: coroutine [0-9]+ "db-a"'
has "signal dump shows a wait in a coroutine header" "$T/sig.txt" \
    '^coroutine [0-9]+ "db-b" \[waiting mutex 0x[0-9a-f]+ held by coroutine [0-9]+, [0-9.]+ (s|ms|us), thread [0-9]+\]:$'

# A kernel core: "waiting for" is measured against the registry's last clock reading.
kill -ABRT "$pid"
wait "$pid" 2>/dev/null
if [ -s "$T/c/core" ]; then
    run "ps --core exits 3" 3 "$CLI" ps --core "$T/c/core" -e "$SERVER"
    has "core: the deadlock is found in the core" "$T/out" '^deadlock: coroutine [0-9]+ "db-a"'
    has "core: durations from the registry's clock" "$T/out" 'db-b +[0-9]+ +mutex 0x[0-9a-f]+ held by coroutine [0-9]+, [0-9.]+ (s|ms|us) '
    if command -v gdb >/dev/null 2>&1; then
        gdb -nx -batch -iex "add-auto-load-safe-path $(cd "$B" && pwd)" "$SERVER" "$T/c/core" \
            -ex coro-info >"$T/gdb" 2>&1
        has "gdb on the core: the deadlock" "$T/gdb" '^deadlock: coroutine [0-9]+ "db-a"'
        has "gdb on the core: a duration from the registry's clock" "$T/gdb" \
            '"db-b" +thread [0-9]+ \[mutex 0x[0-9a-f]+ held by coroutine [0-9]+, [0-9.]+ (s|ms|us)\]'
    fi
else
    bad "no kernel core of hello-server (core_pattern: $(cat /proc/sys/kernel/core_pattern))"
fi
[ $fails -eq 0 ] && echo "e2e-wait: all passed" || echo "e2e-wait: $fails failed"
[ $fails -eq 0 ]
