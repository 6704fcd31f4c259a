# Shared by tests/e2e-cli.sh and tests/e2e-cli-static.sh (sourced, not a test itself): check
# reporting, running a command with its expected exit status, matching its output, starting
# tests/prog-cli until it is ready, and making a kernel core of it. The caller sets $T (a
# temporary directory, removed at exit with every process started) and $SRC (the source whose
# LINE-x markers line_of reads).

fails=0
pids=""
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
# A target's own leak report or ASan's leak check must not run when we kill it.
export ASAN_OPTIONS="detect_leaks=0:disable_coredump=0:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# TSan disables core dumps by default too (its shadow is kept out of them: MADV_DONTDUMP).
export TSAN_OPTIONS="disable_coredump=0${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
export CORO_LEAK_CHECK=0

ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fails=$((fails + 1)); }
line_of() { grep -n "LINE-$1 \*/" "$SRC" | cut -d: -f1; }
# run NAME EXPECTED_RC CMD...: runs CMD, keeps stdout in $T/out and stderr in $T/err.
run() {
    name=$1 want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        bad "$name: exit $rc, expected $want"
        sed 's/^/    out: /' "$T/out" | head -40
        sed 's/^/    err: /' "$T/err" | head -10
        return 1
    fi
    return 0
}
# has NAME FILE EREGEX: FILE has a line matching EREGEX.
has() {
    if grep -Eq -- "$3" "$2"; then ok "$1"; else
        bad "$1: no line matching /$3/ in"; sed 's/^/    | /' "$2" | head -40
    fi
}
lacks() {
    if grep -Eq -- "$3" "$2"; then bad "$1: unexpected /$3/"; sed 's/^/    | /' "$2"; else ok "$1"; fi
}
# one_line NAME FILE: stderr is one line.
one_line() {
    n=$(wc -l <"$2")
    if [ "$n" -eq 1 ]; then ok "$1"; else bad "$1: $n lines"; sed 's/^/    | /' "$2"; fi
}
# start PROGRAM: starts a prog-cli in wait mode, sets $pid once it is ready.
start() {
    start_cmd "$@" wait
}
# start_cmd CMD...: starts CMD, sets $pid once it has printed "ready".
start_cmd() {
    rm -f "$T/ready"
    "$@" >"$T/ready" 2>/dev/null &
    pid=$!
    pids="$pids $pid"
    i=0
    while ! grep -q ready "$T/ready" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && { bad "$1 did not get ready"; return 1; }
        sleep 0.05
    done
}
# make_core DIR PROGRAM MODE: a kernel core of PROGRAM MODE, left in DIR/core.
make_core() {
    rm -f "$1/core"
    # An inner shell waits for the program, so that its "Aborted (core dumped)" goes to
    # /dev/null rather than into the test log.
    sh -c 'cd "$1" && ulimit -c unlimited && "$2" "$3"; exit 0' sh "$1" "$2" "$3" >/dev/null 2>&1
    [ -s "$1/core" ]
}
