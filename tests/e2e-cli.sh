#!/bin/sh
# End-to-end tests of `coroscope ps` / `coroscope bt` on real processes and real core files
# that this script makes: a live pid, a kernel core (ulimit -c in a temporary directory), a
# gdb gcore, the program linked with the shared and with the static library, stripped, and
# the bad inputs (each with its message and exit code).
# Runs from the repository root with the build directory in $B.
set -u
B=${B:-build}
CLI=$B/coroscope
PROG=$B/tests/prog-cli
case "$PROG" in /*) ;; *) PROG=$PWD/$PROG ;; esac
SRC=tests/prog-cli.c
[ -x "$CLI" ] && [ -x "$PROG" ] || { echo "skip: $CLI or $PROG not built"; exit 77; }

T=$(mktemp -d /tmp/coroscope-e2e-cli.XXXXXX)
. tests/cli-harness.sh

L_PARK_C=$(line_of park_c); L_PARK_B=$(line_of park_b); L_PARK_A=$(line_of park_a)
L_PARK_ENTRY=$(line_of park_entry); L_SLEEP=$(line_of sleep); L_SLEEPER=$(line_of sleeper)
L_WAITER=$(line_of waiter); L_OUTER=$(line_of outer-yield); L_INNER=$(line_of inner)




# check_ps WHAT: the fixed set of prog-cli, as ps prints it.
check_ps() {
    has "$1: ps parker-1 suspended in park_c" "$T/out" \
        "^1 +suspended +parker-1 +[0-9]+ +- +park_c \(prog-cli\.c:$L_PARK_C\)$"
    has "$1: ps fresh created at its entry" "$T/out" "^3 +created +fresh +[0-9]+ +- +fresh_entry"
    has "$1: ps inner" "$T/out" "^4 +suspended +inner +[0-9]+ +- +inner_entry \(prog-cli\.c:$L_INNER\)$"
    has "$1: ps outer" "$T/out" "^5 +suspended +outer +[0-9]+ +- +outer_entry \(prog-cli\.c:$L_OUTER\)$"
    has "$1: ps unnamed" "$T/out" "^6 +suspended +- +[0-9]+ +- +park_c"
    has "$1: ps sleeper running in sleep_deep" "$T/out" \
        "^[0-9]+ +running +sleeper +[0-9]+ +- +sleep_deep \(prog-cli\.c:$L_SLEEP\)$"
    has "$1: ps waiter running (entered sleeper)" "$T/out" \
        "^[0-9]+ +running +waiter +[0-9]+ +- +waiter_entry \(prog-cli\.c:$L_WAITER\)$"
}

# check_bt WHAT: bt text of coroutine 1 and of the sleeper, frames and lines in order.
check_bt() {
    # Frames of parker-1, innermost first, with their lines, as one string.
    got=$(sed -n '/"parker-1"/,/^$/p' "$T/out" | grep -E '^ *#[0-9]+' |
          sed -E 's/^ *#[0-9]+ +(0x[0-9a-f]+ +)?([A-Za-z_0-9]+).*prog-cli\.c:([0-9]+).*/\2:\3/;
                  s/^ *#[0-9]+ +(0x[0-9a-f]+ +)?([A-Za-z_0-9]+).*/\2/' | tr '\n' ' ')
    want="coro_yield park_c:$L_PARK_C park_b:$L_PARK_B park_a:$L_PARK_A park_entry:$L_PARK_ENTRY "
    if [ "$got" = "$want" ]; then ok "$1: bt parker-1 frames and lines"; else
        bad "$1: bt parker-1: got '$got', want '$want'"; sed 's/^/    | /' "$T/out" | head -30
    fi
}

# check_json WHAT: the JSON document parses and has the fixed set with frames.
check_json() {
    if python3 - "$T/out" "$L_PARK_C" "$L_SLEEP" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["format"] == "coroscope" and doc["version"] == 1, doc.get("version")
by = {c["name"]: c for c in doc["coroutines"]}
p = by["parker-1"]
fn = [f["function"] for f in p["frames"]]
assert fn[:5] == ["coro_yield", "park_c", "park_b", "park_a", "park_entry"], fn
assert p["frames"][1]["line"] == int(sys.argv[2]), p["frames"][1]
assert p["state"] == "suspended"
s = by["sleeper"]
assert s["state"] == "running" and s["thread"], s
assert any(f["function"] == "sleep_deep" and f["line"] == int(sys.argv[3]) for f in s["frames"]), s
assert [f["function"] for f in by["fresh"]["frames"]] == ["fresh_entry"], by["fresh"]
# "module" is a path for every target (libdwfl names a core's libraries by soname).
mod = p["frames"][0]["module"]
assert mod.startswith("/") and mod.endswith("/libcoroscope.so.0"), mod
assert p["frames"][1]["module"].startswith("/"), p["frames"][1]
EOF
    then ok "$1: bt --json"; else bad "$1: bt --json"; head -c 2000 "$T/out"; fi
}

check_folded() {
    has "$1: bt --folded parker stack" "$T/out" \
        "^parker-1;park_entry;park_a;park_b;park_c;coro_yield 1$"
}

# ---------------------------------------------------------------- usage
run "usage: no arguments" 64 "$CLI" && has "usage: no arguments says why" "$T/err" "no command"
run "usage: unknown command" 64 "$CLI" frob -p 1
run "usage: two targets" 64 "$CLI" ps -p 1 --core x
run "usage: -e without --core" 64 "$CLI" ps -p 1 -e x
run "usage: bad -n" 64 "$CLI" bt -p 1 -n 0
run "usage: bad id" 64 "$CLI" bt -p 1 x7
run "usage: --json with --folded" 64 "$CLI" bt -p 1 --json --folded
run "usage: -p without its value" 64 "$CLI" bt -p && has "usage: says -p needs a value" "$T/err" \
    "^coroscope: option -p needs a value$"
run "--help" 0 "$CLI" --help && has "--help lists bt" "$T/out" "coroscope bt"
run "--version" 0 "$CLI" --version && has "--version" "$T/out" "^coroscope [0-9]"

# ---------------------------------------------------------------- live process
if start "$PROG"; then
    run "live: ps" 0 "$CLI" ps -p "$pid" && check_ps live
    run "live: bt" 0 "$CLI" bt -p "$pid" && check_bt live
    has "live: bt sleeper from its thread's registers" "$T/out" "sleep_deep .*prog-cli\.c:$L_SLEEP"
    # libc's versioned symbol, whole (it was cut to clock_nanosleep@GLIBC_2 by the clone-suffix rule).
    has "live: symbol versions printed whole" "$T/out" " clock_nanosleep@@?GLIBC_[0-9]+\.[0-9]+[.0-9]* "
    run "live: bt --json" 0 "$CLI" bt --json -p "$pid" && check_json live
    run "live: bt --folded" 0 "$CLI" bt --folded -p "$pid" && check_folded live
    run "live: bt 2 (one id)" 0 "$CLI" bt -p "$pid" 2
    if grep -q '"parker-2"' "$T/out" && ! grep -q '"parker-1"' "$T/out"; then
        ok "live: bt ID shows only that coroutine"; else bad "live: bt ID"; cat "$T/out"; fi
    run "live: bt -n 2" 0 "$CLI" bt -p "$pid" -n 2 1
    n=$(grep -cE '^ *#[0-9]+' "$T/out")
    [ "$n" -eq 2 ] && ok "live: -n 2 gives 2 frames" || bad "live: -n 2 gave $n frames"
    run "live: bt unknown id" 1 "$CLI" bt -p "$pid" 1 99999 &&
        has "live: unknown id message" "$T/err" "no coroutine 99999 in process $pid"
    # The process goes on unharmed: not left stopped or traced, still answering.
    sleep 0.1
    st=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$pid/stat")
    tr=$(awk '/^TracerPid/ {print $2}' "/proc/$pid/status")
    if [ "$st" = S ] && [ "$tr" = 0 ]; then ok "live: process continues, not traced"; else
        bad "live: process state $st, tracer $tr"; fi
    run "live: ps again" 0 "$CLI" ps -p "$pid" && check_ps "live again"
    kill -9 "$pid" 2>/dev/null
    # A process that has run coro_dump() itself (its ELF files are mapped a second time).
    if PROG_CLI_SELF_DUMP=1 start "$PROG"; then
        run "live after an in-process dump: ps" 0 "$CLI" ps -p "$pid" &&
            check_ps "live after an in-process dump"
        kill -9 "$pid" 2>/dev/null
    fi
    start "$PROG"
    # Another user may not trace it: one line that says what to do.
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
        setpriv --reuid=65534 --regid=65534 --clear-groups "$CLI" --version >/dev/null 2>&1; then
        run "live: not allowed to trace" 2 setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$CLI" ps -p "$pid" &&
            has "live: EPERM message" "$T/err" "cannot attach to process $pid: not allowed to trace it \(.*root" &&
            one_line "live: EPERM is one line" "$T/err"
    fi

    # Already traced by a debugger: say by whom.
    if command -v gdb >/dev/null 2>&1; then
        gdb -nx -batch -p "$pid" -ex "shell \"$CLI\" ps -p $pid 2>\"$T/err\"; echo \$? >\"$T/rc\"" \
            >/dev/null 2>&1
        if [ "$(cat "$T/rc" 2>/dev/null)" = 2 ] &&
            grep -q "cannot attach to process $pid: it is already traced by process [0-9]* (a debugger?)" "$T/err"; then
            ok "live: already traced by gdb: says so, exit 2"
        else
            bad "live: already traced by gdb (exit $(cat "$T/rc" 2>/dev/null))"; sed 's/^/    | /' "$T/err"
        fi
    fi
    # gdb's gcore of the same process.
    # Not for ASan or TSan builds: gcore does not skip their terabytes of shadow memory.
    if nm "$PROG" 2>/dev/null | grep -q '__asan_init\|__tsan_init'; then
        echo "skip - gcore of an ASan or TSan program"
    elif command -v gcore >/dev/null 2>&1 && gcore -o "$T/gcore" "$pid" >/dev/null 2>&1; then
        # gdb's gcore zero-fills every 1 MiB chunk it cannot read through /proc/PID/mem, and
        # stacks with MADV_GUARD_INSTALL guard pages (Linux >= 6.13) cannot be read that way:
        # then each such coroutine must be reported, never shown with made-up frames.
        "$CLI" ps --core "$T/gcore.$pid" >"$T/out" 2>"$T/err"
        rc=$?
        if [ $rc -eq 0 ]; then
            check_ps gcore
            run "gcore: bt" 0 "$CLI" bt --core "$T/gcore.$pid" && check_bt gcore
        elif [ $rc -eq 1 ] && grep -q "^coroscope: coroutine 1 \"parker-1\" of core file .*reads as all zeros .*gcore" "$T/err"; then
            ok "gcore: zero-filled coroutine stacks are reported, not shown as frames"
            has "gcore: the never-entered coroutine is still shown" "$T/out" "^3 +created +fresh +[0-9]+ +- +fresh_entry"
            n=$(grep -c "reads as all zeros" "$T/err")
            [ "$n" -eq 7 ] && ok "gcore: one message per zeroed stack" || bad "gcore: $n zero-stack messages, expected 7"
        else
            bad "gcore: ps exit $rc"; sed 's/^/    | /' "$T/out" "$T/err"
        fi
    else
        bad "gcore: could not make a core with gdb"
    fi
    kill "$pid"
fi

# ---------------------------------------------------------------- threads that come and go
# A thread keeps creating threads that each run a coroutine: attaching must catch every
# thread that appears meanwhile, and leave none stopped or traced.
rm -f "$T/ready"
"$PROG" churn >"$T/ready" 2>/dev/null &
cpid=$!
pids="$pids $cpid"
i=0
while ! grep -q ready "$T/ready" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
# Threads that exit while we attach (seizing a zombie thread answers EPERM) must not fail the
# attach: 20 runs, since one in a few hundred used to meet one.
churn_ok=0
: >"$T/churn-err"
for i in $(seq 1 20); do
    if "$CLI" ps -p "$cpid" >"$T/out" 2>"$T/err" && grep -Eq "^1 +suspended +parker-1 .*park_c" "$T/out"; then
        churn_ok=$((churn_ok + 1))
    else
        { echo "run $i:"; cat "$T/err" "$T/out"; } >>"$T/churn-err"
    fi
done
[ $churn_ok -eq 20 ] && ok "churn: 20 of 20 ps runs complete while threads come and go" ||
    { bad "churn: $churn_ok of 20 ps runs complete"; sed 's/^/    | /' "$T/churn-err" | head -20; }
sleep 0.1
tracer=0
for task in /proc/"$cpid"/task/*; do
    tp=$(awk '/^TracerPid/ {print $2}' "$task/status" 2>/dev/null)
    st=$(awk '/^State/ {print $2}' "$task/status" 2>/dev/null)
    { [ -n "$tp" ] && [ "$tp" != 0 ]; } || [ "$st" = t ] || [ "$st" = T ] && tracer=1
done
[ $tracer -eq 0 ] && ok "churn: no thread left traced or stopped" || bad "churn: a thread left traced or stopped"
kill "$cpid"

# ---------------------------------------------------------------- kernel core
# A core of a process that ran an in-process dump first: the core must still name each module
# once, at its load address.
mkdir -p "$T/sd"
if PROG_CLI_SELF_DUMP=1 make_core "$T/sd" "$PROG" abort; then
    run "core after an in-process dump: ps" 0 "$CLI" ps --core "$T/sd/core" &&
        check_ps "core after an in-process dump"
    rm -f "$T/sd/core"
else
    bad "core after an in-process dump: no core"
fi
mkdir -p "$T/k"
if make_core "$T/k" "$PROG" abort; then
    run "core: ps" 0 "$CLI" ps --core "$T/k/core" && check_ps core
    run "core: bt" 0 "$CLI" bt --core "$T/k/core" && check_bt core
    run "core: bt --json" 0 "$CLI" bt --json --core "$T/k/core" && check_json core
    run "core: bt --folded -e" 0 "$CLI" bt --folded --core "$T/k/core" -e "$PROG" &&
        check_folded core
    run "core: -e mismatching build-id" 2 "$CLI" ps --core "$T/k/core" -e /bin/true &&
        has "core: build-id message" "$T/err" \
            "executable /bin/true does not match core file .*build-id" && one_line "core: mismatch is one line" "$T/err"
    # The same core claiming to be for AArch64 (e_machine 183 at offset 18).
    cp "$T/k/core" "$T/arm"
    printf '\267\000' | dd of="$T/arm" bs=1 seek=18 conv=notrunc 2>/dev/null
    run "core of another architecture" 2 "$CLI" ps --core "$T/arm" &&
        has "other architecture: message" "$T/err" "cannot read core file .*/arm: it is for machine 183, 64-bit; coroscope reads x86_64 cores" &&
        one_line "other architecture: one line" "$T/err"
    head -c 200000 "$T/k/core" >"$T/trunc"
    run "truncated core" 2 "$CLI" ps --core "$T/trunc" &&
        has "truncated core message" "$T/err" "core file .*/trunc is truncated: 200000 bytes" &&
        one_line "truncated core: one line" "$T/err"
else
    bad "core: no kernel core (core_pattern is $(cat /proc/sys/kernel/core_pattern))"
fi

run "not a core: text file" 2 "$CLI" ps --core "$SRC" &&
    has "not a core: message" "$T/err" "prog-cli\.c is not a core file: not an ELF file" &&
    one_line "not a core: one line" "$T/err"
run "not a core: an executable" 2 "$CLI" bt --core "$PROG" &&
    has "not a core: executable message" "$T/err" "is not a core file: it is an ELF executable"
run "no such core" 2 "$CLI" ps --core "$T/nonexistent" &&
    has "no such core: message" "$T/err" "cannot open core file .*nonexistent: No such file"

# A core of a program without coroscope.
mkdir -p "$T/s"
sh -c 'cd "$1" && ulimit -c unlimited && { sleep 60 & echo $! >"$1/pid"; wait; }; exit 0' \
    sh "$T/s" >/dev/null 2>&1 &
i=0
while [ ! -s "$T/s/pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
spid=$(cat "$T/s/pid")
pids="$pids $spid"
sleep 0.1
kill -ABRT "$spid"
i=0
while kill -0 "$spid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
wait
if [ -s "$T/s/core" ]; then
    run "core without coroscope" 2 "$CLI" ps --core "$T/s/core" &&
        has "core without coroscope: message" "$T/err" "was not built with coroscope" &&
        one_line "core without coroscope: one line" "$T/err"
else
    bad "no core of sleep"
fi

# A pid that does not exist, and a live program without coroscope.
sh -c 'exit 0' &
gone=$!
wait "$gone"
run "no such pid" 2 "$CLI" ps -p "$gone" &&
    has "no such pid: message" "$T/err" "cannot attach to process $gone: no such process" &&
    one_line "no such pid: one line" "$T/err"
# A zombie: exited, not reaped yet.
sh -c 'sleep 0 & echo $! >"$1"; exec sleep 3' sh "$T/zpid" &
zparent=$!
pids="$pids $zparent"
sleep 0.3
zpid=$(cat "$T/zpid")
run "zombie pid" 2 "$CLI" ps -p "$zpid" &&
    has "zombie: message" "$T/err" "cannot attach to process $zpid: it has exited and is a zombie" &&
    one_line "zombie: one line" "$T/err"
kill "$zparent" 2>/dev/null
sleep 60 &
sp=$!
pids="$pids $sp"
run "live program without coroscope" 2 "$CLI" bt -p "$sp" &&
    has "live without coroscope: message" "$T/err" "process $sp: it was not built with coroscope"
kill "$sp"

# ---------------------------------------------------------------- corrupted registries
for m in corrupt-cycle corrupt-magic corrupt-stack; do
    mkdir -p "$T/$m"
    make_core "$T/$m" "$PROG" "$m" || bad "$m: no core"
done
if [ -s "$T/corrupt-cycle/core" ]; then
    run "corrupt: cyclic record list" 1 timeout 20 "$CLI" ps --core "$T/corrupt-cycle/core" &&
        has "corrupt cycle: message" "$T/err" "registry of core file .* is corrupt" &&
        has "corrupt cycle: what was read is shown" "$T/out" "^1 +suspended +parker-1"
fi
if [ -s "$T/corrupt-magic/core" ]; then
    run "corrupt: bad magic" 2 timeout 20 "$CLI" bt --core "$T/corrupt-magic/core" &&
        has "corrupt magic: message" "$T/err" "cannot read the coroutine registry of core file .*bad magic" &&
        one_line "corrupt magic: one line" "$T/err"
fi
if [ -s "$T/corrupt-stack/core" ]; then
    run "corrupt: one coroutine's registers" 1 timeout 20 "$CLI" bt --core "$T/corrupt-stack/core" &&
        has "corrupt stack: message names the coroutine" "$T/err" "coroutine 1 \"parker-1\" of core file" &&
        has "corrupt stack: the others are shown" "$T/out" "\"parker-2\""
fi

echo "e2e-cli: $fails failed"
[ "$fails" -eq 0 ]
