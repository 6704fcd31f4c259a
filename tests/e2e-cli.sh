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
L_CORO_READ=$(line_of coro_read); L_PARTIAL=$(line_of partial)




# check_ps WHAT: the fixed set of prog-cli, as ps prints it.
check_ps() {
    has "$1: ps parker-1 suspended in park_c" "$T/out" \
        "^1 +suspended +parker-1 +[0-9]+ +- +park_c \(prog-cli\.c:$L_PARK_C\)$"
    has "$1: ps fresh created at its entry" "$T/out" "^3 +created +fresh +[0-9]+ +- +fresh_entry"
    has "$1: ps inner" "$T/out" "^4 +suspended +inner +[0-9]+ +- +inner_entry \(prog-cli\.c:$L_INNER\)$"
    has "$1: ps outer" "$T/out" "^5 +suspended +outer +[0-9]+ +- +outer_entry \(prog-cli\.c:$L_OUTER\)$"
    has "$1: ps unnamed" "$T/out" "^6 +suspended +- +[0-9]+ +- +park_c"
    # The program's own coro_read is its code, not coroscope's: not skipped.
    has "$1: ps shows the program's own coro_read" "$T/out" \
        "^7 +suspended +reader +[0-9]+ +- +coro_read \(prog-cli\.c:$L_CORO_READ\)$"
    has "$1: ps partial (inlined into itself)" "$T/out" \
        "^8 +suspended +partial +[0-9]+ +- +partial_entry \(prog-cli\.c:$L_PARTIAL\)$"
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
    # GCC's partial inlining put partial_entry inlined into itself: one frame, inner line.
    got=$(sed -n '/"partial"/,/^$/p' "$T/out" | grep -E '^ *#[0-9]+' |
          sed -E 's/^ *#[0-9]+ +(0x[0-9a-f]+ +)?([A-Za-z_0-9]+).*prog-cli\.c:([0-9]+)\)(.*)/\2:\3\4/; t
                  s/^ *#[0-9]+ +(0x[0-9a-f]+ +)?([A-Za-z_0-9]+).*/\2/' | tr '\n' ' ')
    want="coro_yield partial_entry:$L_PARTIAL "
    if [ "$got" = "$want" ]; then ok "$1: bt partial_entry inlined into itself is one frame"; else
        bad "$1: bt partial: got '$got', want '$want'"; sed -n '/"partial"/,/^$/p' "$T/out"
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
pf = [(f["function"], f["inlined"]) for f in by["partial"]["frames"]]
assert pf == [("coro_yield", False), ("partial_entry", False)], pf
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
    has "$1: bt --folded partial_entry once" "$T/out" "^partial;partial_entry;coro_yield 1$"
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
# An option without its value says so (not "unknown option"), for every option that takes one.
for o in --pid --core -e --executable -n --max-frames --pprof; do
    run "usage: $o without a value" 64 "$CLI" bt "$o" &&
        has "usage: $o without a value says it needs one" "$T/err" "^coroscope: option $o needs a value$"
done
run "usage: unknown option" 64 "$CLI" bt --frob && has "usage: unknown option named" "$T/err" \
    "^coroscope: unknown option '--frob'$"
run "usage: --json=1" 64 "$CLI" bt -p 1 --json=1 && has "usage: --json takes no value" "$T/err" \
    "^coroscope: option --json takes no value$"
run "usage: --core twice" 64 "$CLI" ps --core a --core b &&
    has "usage: --core twice says so" "$T/err" "^coroscope: --core given twice$"
run "usage: -e twice" 64 "$CLI" ps --core a -e b -e c
run "usage: top after options" 64 "$CLI" -p 1 top &&
    has "usage: top after options says where it goes" "$T/err" "^coroscope: top comes first"
run "--help" 0 "$CLI" --help && has "--help lists bt" "$T/out" "coroscope bt"
# One exit-status table: every code in --help, in top --help and in docs/cli.md, each explained.
for code in 0 1 2 3 64; do
    has "--help: exit status $code explained" "$T/out" "^  $code +[a-z]"
    has "docs/cli.md: exit status $code explained" docs/cli.md "^\| $code \| [^ |]"
done
run "top --help" 0 "$CLI" top --help
for code in 0 1 2 3 64; do
    has "top --help: exit status $code explained" "$T/out" "^  $code +[a-z]"
done
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
    # Exit 1 whether or not anything else is shown: the target was read, the id is not in it.
    run "live: bt of only an unknown id" 1 "$CLI" bt -p "$pid" 99999 &&
        has "live: only an unknown id: message" "$T/err" "^coroscope: no coroutine 99999 in process $pid$" &&
        one_line "live: only an unknown id: one line" "$T/err"
    run "live: bt 2 2 (an id twice)" 0 "$CLI" bt -p "$pid" 2 2
    n=$(grep -c '^coroutine 2 "parker-2"' "$T/out")
    if [ "$n" -eq 1 ] && [ ! -s "$T/err" ]; then ok "live: an id given twice is shown once"; else
        bad "live: bt 2 2 showed it $n times"; sed 's/^/    | /' "$T/out" "$T/err"; fi
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
    # Not allowed to trace it: one line that says why (ptrace's rules) and what to do.
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
        setpriv --reuid=65534 --regid=65534 --clear-groups "$CLI" --version >/dev/null 2>&1; then
        nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
        rootpid=$pid
        run "live: another user's process" 2 $nobody "$CLI" ps -p "$pid" &&
            has "live: EPERM says why and what to do" "$T/err" \
                "^coroscope: cannot attach to process $pid: not allowed to trace it: it runs as uid 0 .*coroscope as uid 65534.*CAP_SYS_PTRACE; run coroscope as root" &&
            one_line "live: EPERM is one line" "$T/err"
        # top reads without attaching: the same rule, said once, as a read.
        run "live: top of another user's process" 2 $nobody "$CLI" top -b -n 1 -p "$pid" &&
            has "live: top EPERM says why, once" "$T/err" \
                "^coroscope: cannot read process $pid: not allowed to read it: it runs as uid 0 .*CAP_SYS_PTRACE; run coroscope as root" &&
            one_line "live: top EPERM is one line" "$T/err"
        # Root without CAP_SYS_PTRACE (a container) tracing another user's process.
        start $nobody "$PROG"
        run "live: root without CAP_SYS_PTRACE" 2 setpriv --bounding-set=-sys_ptrace \
            --inh-caps=-sys_ptrace "$CLI" ps -p "$pid" &&
            has "live: no CAP_SYS_PTRACE: says so" "$T/err" \
                "^coroscope: cannot attach to process $pid: not allowed to trace it: .*root but without CAP_SYS_PTRACE" &&
            one_line "live: no CAP_SYS_PTRACE: one line" "$T/err"
        # What the message says to do works: the process's own user may trace it.
        run "live: its own user may trace it" 0 $nobody "$CLI" ps -p "$pid" && check_ps "live as its user"
        kill "$pid"
        # Not dumpable: even its own user needs CAP_SYS_PTRACE.
        PROG_CLI_NOT_DUMPABLE=1 start $nobody "$PROG"
        run "live: not dumpable" 2 $nobody "$CLI" ps -p "$pid" &&
            has "live: not dumpable: says so" "$T/err" \
                "^coroscope: cannot attach to process $pid: not allowed to trace it: it is not dumpable .*CAP_SYS_PTRACE; run coroscope as root" &&
            one_line "live: not dumpable: one line" "$T/err"
        run "live: not dumpable, root may" 0 "$CLI" ps -p "$pid"
        kill "$pid"
        pid=$rootpid
    else
        echo "skip - not allowed to trace: needs root and setpriv to run coroscope as nobody"
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
            [ "$n" -eq 9 ] && ok "gcore: one message per zeroed stack" || bad "gcore: $n zero-stack messages, expected 9"
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
    # The core was read; the output could not be written: 1, not 2.
    run "core: --pprof into a missing directory" 1 "$CLI" bt --core "$T/k/core" \
        --pprof "$T/no-such-dir/profile.pb.gz" &&
        has "core: --pprof unwritable: says so" "$T/err" \
            "^coroscope: cannot write the profile $T/no-such-dir/profile\.pb\.gz: No such file or directory$"
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
run "no such pid: bt" 2 "$CLI" bt -p "$gone" 1 &&
    has "no such pid: bt message" "$T/err" "cannot attach to process $gone: no such process"
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
    # The only coroutine asked for cannot be unwound: the target was read, so 1, not 2.
    run "corrupt: the one coroutine asked for cannot be unwound" 1 timeout 20 "$CLI" bt \
        --core "$T/corrupt-stack/core" 1 &&
        has "corrupt stack, bt 1: says why" "$T/err" "coroutine 1 \"parker-1\" of core file"
fi

# ---------------------------------------------------------------- long paths
# A message names a path whole, however long.
long=$T/$(printf 'd%.0s' $(seq 200))/$(printf 'e%.0s' $(seq 200))/$(printf 'f%.0s' $(seq 200))
mkdir -p "$long"
cp "$SRC" "$long/not-a-core"
run "long path: not a core" 2 "$CLI" ps --core "$long/not-a-core" &&
    has "long path: named whole" "$T/err" "^coroscope: $long/not-a-core is not a core file: not an ELF file$"
if [ -s "$T/corrupt-magic/core" ]; then
    cp "$T/corrupt-magic/core" "$long/core"
    run "long path: core read, registry not" 2 "$CLI" bt --core "$long/core" &&
        has "long path: core named whole" "$T/err" \
            "^coroscope: cannot read the coroutine registry of core file $long/core \(in .*bad magic"
fi

echo "e2e-cli: $fails failed"
[ "$fails" -eq 0 ]
