#!/bin/sh
# Unwinding through the context switch and stopping at the bottom of coroutine stacks:
#   gdb      single-steps every instruction of every coro__switch in a fixed sequence (into a
#            new coroutine, yields, resumes, MXCSR reloads, termination) and at each one
#            checks that `bt` ends cleanly at main or at coro__trampoline, with no error.
#   eu-stack (libdw) unwinds a thread blocked inside a coroutine down to coro__trampoline and
#            stops there cleanly.
# Exit 0 pass, 77 skip (no gdb with Python), else fail.
set -u
B=${B:-build}
P="$B/tests/prog-switch"
[ -x "$P" ] || { echo "e2e-switch-unwind: $P missing"; exit 1; }
command -v gdb >/dev/null 2>&1 || { echo "e2e-switch-unwind: gdb not found: skipped"; exit 77; }
gdb -nx -batch -ex 'python print(1)' >/dev/null 2>&1 \
    || { echo "e2e-switch-unwind: gdb has no Python: skipped"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"; [ -n "${PARK:-}" ] && kill "$PARK" 2>/dev/null' EXIT INT TERM
fail=0
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }

cat > "$T/step.py" <<'EOF'
import gdb

gdb.execute("set pagination off")
gdb.execute("set breakpoint pending on")
gdb.execute("set confirm off")
gdb.execute("break coro__switch", to_string=True)
gdb.execute("run step", to_string=True)


def chain():
    """Function names from the newest frame outwards, and the error that ended it, if any."""
    names, f, err = [], gdb.newest_frame(), None
    while f is not None:
        names.append(f.name() or hex(f.pc()))
        try:
            f2 = f.older()
        except gdb.error as e:
            err = str(e)
            break
        if f2 is None and f.unwind_stop_reason() not in (gdb.FRAME_UNWIND_NO_REASON,
                                                         gdb.FRAME_UNWIND_OUTERMOST):
            err = gdb.frame_stop_reason_string(f.unwind_stop_reason())
        f = f2
    return names, err


switches = insns = bad = 0
while True:
    try:
        if gdb.selected_frame().name() != "coro__switch":
            break
    except gdb.error:
        break
    switches += 1
    start = int(gdb.parse_and_eval("(long)&coro__switch"))
    while gdb.newest_frame().name() == "coro__switch":
        names, err = chain()
        insns += 1
        if err or names[-1] not in ("main", "coro__trampoline"):
            bad += 1
            print("BAD switch %d +%d: %s (%s)" % (switches, gdb.newest_frame().pc() - start,
                                                 " <- ".join(names), err))
        gdb.execute("stepi", to_string=True)
    names, err = chain()
    print("switch %d lands in: %s%s" % (switches, " <- ".join(names),
                                        " (%s)" % err if err else ""))
    try:
        gdb.execute("continue", to_string=True)
    except gdb.error:
        break
print("switches %d, instructions %d, bad %d" % (switches, insns, bad))
EOF
out=$(gdb -nx -batch -x "$T/step.py" "$P" 2>&1)
echo "$out" | grep -q '^switches 6, instructions [0-9]*, bad 0$' \
    && ok "gdb: bt at every instruction of 6 switches ends at main or coro__trampoline" \
    || { bad "gdb: stepping through coro__switch"; echo "$out"; }
n=$(echo "$out" | sed -n 's/^switches 6, instructions \([0-9]*\), .*/\1/p')
[ "${n:-0}" -ge 120 ] && ok "gdb: $n instructions stepped (MXCSR reload path included)" \
    || bad "gdb: only ${n:-0} instructions stepped"
expect='switch 1 lands in: coro__trampoline
switch 2 lands in: coro_enter <- sw_outer <- main
switch 3 lands in: coro_yield <- sw_park <- sw_body <- coro__trampoline
switch 4 lands in: coro_enter <- sw_outer <- main
switch 5 lands in: coro_yield <- sw_park <- sw_body <- coro__trampoline
switch 6 lands in: coro_enter <- sw_outer <- main'
# do_switch is inlined into coro_enter/coro_yield; ASan builds land inside it (the fiber
# bookkeeping after the switch), others just after it.
got=$(echo "$out" | grep '^switch [0-9] lands in' | sed 's/in: do_switch <- /in: /')
[ "$got" = "$expect" ] && ok "gdb: each switch lands where expected" \
    || { bad "gdb: landing frames"; echo "expected:"; echo "$expect"; echo "got:"; echo "$got"; }

if command -v eu-stack >/dev/null 2>&1; then
    "$P" park > "$T/park.out" &
    PARK=$!
    i=0
    while [ $i -lt 100 ] && ! grep -q parked "$T/park.out" 2>/dev/null; do
        sleep 0.05
        i=$((i + 1))
    done
    st=$(eu-stack -p "$PARK" 2>&1)
    rc=$?
    kill "$PARK" 2>/dev/null
    wait "$PARK" 2>/dev/null
    PARK=
    last=$(echo "$st" | grep '^#' | tail -1)
    if [ $rc -eq 0 ] && echo "$st" | grep -q 'sw_blocked' && echo "$st" | grep -q 'sw_parker' \
        && echo "$last" | grep -q 'coro__trampoline$'; then
        ok "eu-stack: a thread inside a coroutine unwinds to coro__trampoline and stops (exit 0)"
    else
        bad "eu-stack (exit $rc)"
        echo "$st"
    fi
else
    echo "skip - eu-stack not found"
fi
echo "e2e-switch-unwind: $fail failed"
[ $fail -eq 0 ]
