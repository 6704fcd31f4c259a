#!/bin/sh
# Every CORO_* environment variable with a bad value says so in one line on stderr — the
# variable, the value, what it accepts — and the program goes on with the documented default.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-env.XXXXXX)
SRC=examples/loop-embed.c
. tests/cli-harness.sh
PROG=$B/examples/loop-embed
unset CORO_LEAK_CHECK

check() { # NAME EXPECTED-STATUS LINE-REGEX ENV...
    name=$1 want=$2 line=$3
    shift 3
    env "$@" "$PROG" >/dev/null 2>"$T/err"
    rc=$?
    [ "$rc" -eq "$want" ] && ok "$name: exit $rc" || bad "$name: exit $rc, expected $want"
    has "$name: one line naming the variable" "$T/err" "$line"
    one_line "$name: just that line" "$T/err"
}
check "CORO_LEAK_EXITCODE=abc" 0 \
    '^coroscope: CORO_LEAK_EXITCODE=abc: not a number from 0 to 255; using 23 \(the default\)$' \
    CORO_LEAK_CHECK=1 CORO_LEAK_EXITCODE=abc
check "CORO_LEAK_EXITCODE=300" 0 '^coroscope: CORO_LEAK_EXITCODE=300: not a number from 0 to 255' \
    CORO_LEAK_CHECK=1 CORO_LEAK_EXITCODE=300
check "CORO_LEAK_CHECK=yes" 0 '^coroscope: CORO_LEAK_CHECK=yes: not 0 or 1; leak check off \(the default\)$' \
    CORO_LEAK_CHECK=yes
check "CORO_STACK_GUARD=bogus" 0 \
    '^coroscope: CORO_STACK_GUARD=bogus: not one of madvise, mprotect; using madvise \(the default\)$' \
    CORO_STACK_GUARD=bogus
check "CORO_DUMP_ON_CRASH=2" 0 '^coroscope: CORO_DUMP_ON_CRASH=2: not 0 or 1; crash report off \(the default\)$' \
    CORO_DUMP_ON_CRASH=2
check "CORO_DUMP_FORMAT=xml" 0 '^coroscope: CORO_DUMP_FORMAT=xml: not one of text, json, folded, grouped, pprof; signal dump off$' \
    CORO_DUMP_SIGNAL=USR1 CORO_DUMP_FORMAT=xml
check "CORO_STALL_MS=abc" 0 \
    '^coroscope: CORO_STALL_MS=abc: not a number of milliseconds from 1 to 3600000; stall watchdog off \(the default\)$' \
    CORO_STALL_MS=abc
# Good values stay silent.
env CORO_LEAK_CHECK=0 CORO_STACK_GUARD=mprotect CORO_DUMP_ON_CRASH=0 "$PROG" >/dev/null 2>"$T/err"
[ ! -s "$T/err" ] && ok "good values print nothing" || { bad "good values printed"; cat "$T/err"; }
# The crash report escapes a coroutine name's control characters (it printed them raw).
CORO_DUMP_ON_CRASH=1 "$B/tests/prog-crash-name" >/dev/null 2>"$T/crash"
has "crash report: the name escaped" "$T/crash" 'coroutine [0-9]+ "evil\\x1b\[2J\\x1b\[31m\\x22name\\x5c"'
if tr -d '\n' <"$T/crash" | grep -q "$(printf '\033')"; then
    bad "crash report: a raw escape character reached stderr"
else
    ok "crash report: no raw escape character"
fi

# A message naming a long path carries all of it (it was cut at ~520 bytes).
long=$T/$(printf 'd%.0s' $(seq 1 200))/$(printf 'e%.0s' $(seq 1 200))/$(printf 'f%.0s' $(seq 1 200))/core
run "a missing core with a long path" 2 "$B/coroscope" ps --core "$long"
if grep -qF "$long: No such file or directory" "$T/err"; then ok "the whole path in the message"
else bad "the path was cut: $(cat "$T/err")"; fi
[ $fails -eq 0 ] && echo "e2e-env: all passed" || echo "e2e-env: $fails failed"
[ $fails -eq 0 ]
