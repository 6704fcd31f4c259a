#!/bin/sh
# USDT probes: readelf lists each with its arguments; gdb stops on coroscope:create and reads
# the new coroutine's id and name, and on enter and yield (the asm fast path) reads the id; bpftrace counts creates and wait ends where the kernel and
# privileges allow it (skipped with the reason otherwise).
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-probes.XXXXXX)
SRC=examples/hello-server.c
. tests/cli-harness.sh
LIB=$B/libcoroscope.so.0

readelf -n "$LIB" >"$T/notes" 2>&1
for probe in create:4 terminate:2 wait_begin:4 wait_end:3 wake:2 enter:1 yield:1; do
    name=${probe%:*} nargs=${probe#*:}
    got=$(awk -v n="$name" '/Name: / { cur = $2 } /Arguments:/ && cur == n { print NF - 1; exit }' "$T/notes")
    [ "$got" = "$nargs" ] && ok "readelf -n: coroscope:$name with $nargs arguments" \
        || bad "readelf -n: coroscope:$name has ${got:-no} arguments, expected $nargs"
done
grep -q 'Provider: coroscope' "$T/notes" && ok "provider coroscope" || bad "no provider coroscope"

if command -v gdb >/dev/null 2>&1; then
    gdb -nx -batch -ex 'set breakpoint pending on' -ex 'break -probe-stap coroscope:create' \
        -ex run -ex 'printf "id=%d name=%s\n", $_probe_arg0, (char *)$_probe_arg3' \
        -ex kill --args "$B/examples/hello-server" --idle 1 >"$T/gdb" 2>&1
    has "gdb stops at coroscope:create and reads its arguments" "$T/gdb" '^id=1 name=acceptor$'
    # enter and yield: the asm fast path's probes, whose argument is the record's id in memory.
    gdb -nx -batch -ex 'set breakpoint pending on' -ex 'break -probe-stap coroscope:enter' \
        -ex run -ex 'printf "enter id=%d\n", $_probe_arg0' -ex delete \
        -ex 'break -probe-stap coroscope:yield' -ex continue \
        -ex 'printf "yield id=%d\n", $_probe_arg0' -ex kill \
        --args "$B/examples/loop-embed" >"$T/gdb2" 2>&1
    has "gdb: coroscope:enter gives the id of the coroutine entered" "$T/gdb2" '^enter id=1$'
    has "gdb: coroscope:yield gives the id of the coroutine yielding" "$T/gdb2" '^yield id=1$'
fi

if command -v bpftrace >/dev/null 2>&1 && [ "$(id -u)" = 0 ] &&
   timeout 20 bpftrace -e 'BEGIN { exit(); }' >"$T/bt-probe" 2>&1; then
    lib=$(realpath "$LIB")
    # examples/loop-embed creates two coroutines; they sleep three times and wait on a pipe.
    timeout 60 bpftrace -c "$(realpath "$B/examples/loop-embed")" -e "
        usdt:$lib:coroscope:create { @creates = count(); }
        usdt:$lib:coroscope:wait_end { @waits[arg1] = count(); @waited = hist(nsecs - arg2); }
        usdt:$lib:coroscope:terminate { @terminates = count(); }" >"$T/bt" 2>&1
    if grep -q '^@creates: 2$' "$T/bt" && grep -q '^@terminates: 2$' "$T/bt" &&
       grep -q '^@waits\[2\]: 3$' "$T/bt"; then
        ok "bpftrace: 2 creates, 2 terminates, 3 sleeps ended (wait kind 2), a wait-time histogram"
    elif grep -qi 'error\|not supported\|permission\|ERROR' "$T/bt"; then
        echo "skip - bpftrace could not attach here: $(grep -i -m1 'error\|not supported\|permission' "$T/bt")"
    else
        bad "bpftrace counts"; sed 's/^/    | /' "$T/bt"
    fi
else
    echo "skip - bpftrace: $(command -v bpftrace >/dev/null || echo 'not installed'; [ "$(id -u)" = 0 ] || echo 'not root'; head -c 200 "$T/bt-probe" 2>/dev/null)"
fi
[ $fails -eq 0 ] && echo "e2e-probes: all passed" || echo "e2e-probes: $fails failed"
[ $fails -eq 0 ]
