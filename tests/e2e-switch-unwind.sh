#!/bin/sh
# Unwinding through the context switch and stopping at the bottom of coroutine stacks:
#   gdb      single-steps every instruction of coro_enter, coro_yield and a coroutine's
#            termination, the switch and whatever they call, in a fixed sequence (into a new
#            coroutine, yields, resumes, MXCSR reloads, termination), and at each one checks
#            that `bt` ends cleanly at main or at coro__trampoline, with no error; then where
#            each switch lands.
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
# Under ThreadSanitizer "whatever they call" includes TSan's fiber switch and every access
# hook: gdb single-stepped one run for over 10 minutes (make check-tsan). The switch's
# unwind information is the same code as in check and check-asan, which run this test.
case "$B" in *tsan*) echo "e2e-switch-unwind: skipped under ThreadSanitizer (single-stepping its runtime takes too long)"; exit 77 ;; esac
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
# The switch itself, and a terminating coroutine's last switch where the runtime has one.
SWITCH = ("coro__switch", "coro__switch_exit")
USER = ("sw_outer", "sw_park", "sw_body", "main")


STARTS = ("coro_enter", "coro_yield", "coro__terminate")


def arm():
    for f in STARTS:
        gdb.execute("break " + f, to_string=True)


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


arm()
gdb.execute("run step", to_string=True)
calls = switches = insns = in_switch = bad = 0
while True:
    try:
        if gdb.selected_frame().name() not in STARTS:
            break
    except gdb.error:
        break
    calls += 1
    gdb.execute("delete", to_string=True)
    was_switch = False
    # Every instruction from the entry of coro_enter / coro_yield / coro__terminate until
    # the program is back in its own code, whatever the runtime calls on the way (ASan's
    # fiber hooks too).
    while gdb.newest_frame().name() not in USER:
        names, err = chain()
        insns += 1
        is_switch = names[0] in SWITCH
        in_switch += is_switch
        if was_switch and not is_switch:
            switches += 1
            print("switch %d lands in: %s" % (switches, " <- ".join(names)))
        was_switch = is_switch
        if err or names[-1] not in ("main", "coro__trampoline"):
            bad += 1
            print("BAD call %d pc %#x: %s (%s)" % (calls, gdb.newest_frame().pc(),
                                                   " <- ".join(names), err))
        gdb.execute("stepi", to_string=True)
    if was_switch:
        switches += 1
        print("switch %d lands in: %s" % (switches, " <- ".join(chain()[0])))
    arm()
    try:
        gdb.execute("continue", to_string=True)
    except gdb.error:
        break
print("calls %d, switches %d, instructions %d (%d in the switch), bad %d"
      % (calls, switches, insns, in_switch, bad))
EOF
out=$(gdb -nx -batch -x "$T/step.py" "$P" 2>&1 | tr -d '\000')
echo "$out" | grep -aq '^calls 6, switches 6, instructions [0-9]* ([0-9]* in the switch), bad 0$' \
    && ok "gdb: bt at every instruction of 3 enters, 2 yields, 1 termination ends at main or coro__trampoline" \
    || { bad "gdb: stepping through coro_enter/coro_yield/coro__terminate"; \
         echo "$out" | grep -a '^BAD\|^calls\|^switch\|rror' | head -40; }
n=$(echo "$out" | sed -n 's/^calls .*(\([0-9]*\) in the switch).*/\1/p')
[ "${n:-0}" -ge 100 ] && ok "gdb: $n instructions stepped inside the switch (MXCSR reload path included)" \
    || bad "gdb: only ${n:-0} instructions stepped inside the switch"
expect='switch 1 lands in: coro__trampoline
switch 2 lands in: sw_outer <- main
switch 3 lands in: sw_park <- sw_body <- coro__trampoline
switch 4 lands in: sw_outer <- main
switch 5 lands in: sw_park <- sw_body <- coro__trampoline
switch 6 lands in: sw_outer <- main'
# Outside ASan builds the switch resumes a context suspended in coro_enter / coro_yield by
# doing their final `ret` itself (runtime/switch-x86_64.S), so it lands in their caller. ASan
# builds switch from C and land inside do_switch (the fiber bookkeeping after the switch),
# inlined into coro_enter / coro_yield.
got=$(echo "$out" | grep -a '^switch [0-9] lands in' \
      | sed -e 's/in: do_switch <- coro_enter <- /in: /' -e 's/in: do_switch <- coro_yield <- /in: /' \
            -e 's/in: coro_enter <- /in: /' -e 's/in: coro_yield <- /in: /')
[ "$got" = "$expect" ] && ok "gdb: each switch lands where expected" \
    || { bad "gdb: landing frames"; echo "expected:"; echo "$expect"; echo "got:"; echo "$got"; }

if command -v eu-stack >/dev/null 2>&1; then
    "$P" park > "$T/park.out" &
    PARK=$!
    i=0
    while [ $i -lt 100 ] && ! grep -aq parked "$T/park.out" 2>/dev/null; do
        sleep 0.05
        i=$((i + 1))
    done
    st=$(eu-stack -p "$PARK" 2>&1)
    rc=$?
    kill "$PARK" 2>/dev/null
    wait "$PARK" 2>/dev/null
    PARK=
    last=$(echo "$st" | grep '^#' | tail -1)
    if [ $rc -eq 0 ] && echo "$st" | grep -aq 'sw_blocked' && echo "$st" | grep -aq 'sw_parker' \
        && echo "$last" | grep -aq 'coro__trampoline$'; then
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
