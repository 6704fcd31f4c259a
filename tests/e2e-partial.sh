#!/bin/sh
# One rule for partial records, in every reader: a program damages its own registry (a
# coroutine whose saved stack pointer is outside its stack; a list that runs into unmapped
# memory) and coro_dump, the signal dump, `coroscope bt --json -p` and `coroscope bt --json
# --core` must each list the damaged coroutine with the reason, and report the same "partial"
# counts in their header. The crash report (signal-safe: no collect driver) says it is partial.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-partial.XXXXXX)
SRC=tests/prog-partial.c
. tests/cli-harness.sh
PROG=$B/tests/prog-partial
CLI=$B/coroscope
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }

export CORO_DUMP_SIGNAL=USR1 CORO_DUMP_FORMAT=json
# partial FILE: the "partial" object of the (last) JSON document in FILE, and the error of
# the coroutine named bad-sp, on one line.
partial() {
    python3 - "$1" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
doc = json.loads(lines[-1])
bad = [c for c in doc["coroutines"] if c["name"] == "bad-sp"]
p = doc["partial"]
print("unreadable=%d truncated=%s incomplete=%d bad-sp=%s error=%s" % (
    p["unreadable"], p["truncated"], p["incomplete"], len(bad),
    "yes" if bad and bad[0]["error"] else "no"))
PY
}

CORO_DUMP_PATH=$T/sig.json "$PROG" wait "$T/dump.json" "$T/sig.json" >"$T/ready" 2>"$T/prog.err" &
pid=$!
pids="$pids $pid"
i=0
while ! grep -q ready "$T/ready" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 200 ] && { bad "prog-partial did not get ready"; cat "$T/prog.err"; exit 1; }
    sleep 0.05
done
ref=$(partial "$T/dump.json")
echo "coro_dump: $ref"
case $ref in
    *"bad-sp=1 error=yes"*) ok "coro_dump lists bad-sp with the reason its frames are missing" ;;
    *) bad "coro_dump: $ref" ;;
esac
case $ref in
    "unreadable=0 truncated=False incomplete=0"*) bad "coro_dump reports nothing partial" ;;
    *) ok "coro_dump reports the damage in its header" ;;
esac
got=$(partial "$T/sig.json")
[ "$got" = "$ref" ] && ok "signal dump: same ($got)" || bad "signal dump: $got, coro_dump: $ref"

run "bt --json -p" 1 "$CLI" bt --json -p "$pid"
got=$(partial "$T/out")
[ "$got" = "$ref" ] && ok "coroscope bt -p: same ($got)" || bad "bt -p: $got, coro_dump: $ref"
has "bt -p names the damaged coroutine on stderr" "$T/err" 'coroutine [0-9]+ "bad-sp"'
run "bt -p (text)" 1 "$CLI" bt -p "$pid"
has "text header says the answer is partial" "$T/out" '^coroscope: partial: '
kill -9 "$pid" 2>/dev/null

mkdir -p "$T/c"
# An inner shell waits for the program, so its "Aborted (core dumped)" stays out of the log.
CORO_DUMP_PATH=$T/sig2.json sh -c 'cd "$1" && ulimit -c unlimited && "$2" abort "$3/d2.json" "$3/sig2.json"; exit 0' sh \
    "$T/c" "$(realpath "$PROG")" "$T" >/dev/null 2>&1
if [ -s "$T/c/core" ]; then
    run "bt --json --core" 1 "$CLI" bt --json --core "$T/c/core" -e "$PROG"
    got=$(partial "$T/out")
    [ "$got" = "$ref" ] && ok "coroscope bt --core: same ($got)" || bad "bt --core: $got, coro_dump: $ref"
else
    bad "no kernel core (core_pattern: $(cat /proc/sys/kernel/core_pattern))"
fi
# The crash report over a list broken at its head: it reports and the process dies by the
# original SIGABRT, never by a SIGSEGV inside coroscope's handler.
CORO_DUMP_ON_CRASH=1 "$PROG" crash-head "$T/d3.json" "$T/sig3.json" >/dev/null 2>"$T/crash.err"
rc=$?
[ $rc -eq 134 ] && ok "crash report over a broken list: died by SIGABRT (status $rc)" \
    || { bad "crash report over a broken list: status $rc"; sed 's/^/    | /' "$T/crash.err" | head; }
has "crash report written" "$T/crash.err" '^coroscope: crash report: SIGABRT'
has "crash report says it is partial" "$T/crash.err" \
    '^coroscope: partial: the registry walk stopped at 0x[0-9a-f]+ \(a record that could not be read\): coroutines after it are not listed$'
# Limits give a result or an error, never an abort in the caller's process.
"$PROG" huge-count "$T/huge.json" x >"$T/huge.out" 2>"$T/huge.err"
rc=$?
[ $rc -eq 0 ] && grep -q '^coro_dump: 0$' "$T/huge.out" && ok "nrecords 2^40: coro_dump returns 0" \
    || { bad "nrecords 2^40: status $rc"; cat "$T/huge.out" "$T/huge.err" | head; }
got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sorted(c["name"] for c in d["coroutines"]))' "$T/huge.json" 2>&1)
[ "$got" = "['bad-sp', 'first', 'third']" ] && ok "nrecords 2^40: every coroutine listed" || bad "nrecords 2^40: $got"
"$PROG" bad-descriptor "$T/bad.txt" x >"$T/bad.out" 2>"$T/bad.err"
rc=$?
[ $rc -eq 0 ] && grep -q '^survived$' "$T/bad.out" && ok "bad descriptor: the program goes on" \
    || { bad "bad descriptor: status $rc"; cat "$T/bad.out" "$T/bad.err" | head; }
grep -Eq '^coro_dump: -[0-9]+$' "$T/bad.out" && ok "bad descriptor: coro_dump returns -errno" || bad "bad descriptor: $(cat "$T/bad.out")"
has "bad descriptor: one line says why" "$T/bad.txt" "^coroscope: this process's coroutine registry cannot be read: .*record_size.*; nothing was dumped$"
[ $fails -eq 0 ] && echo "e2e-partial: all passed" || echo "e2e-partial: $fails failed"
[ $fails -eq 0 ]
