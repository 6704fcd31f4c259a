#!/bin/sh
# gdb after a plain `make install` (the default PREFIX, /usr/local), as a new user has it: the
# README's example, linked against the shared library and statically, gets coro-info in a
# plain `gdb` (no -iex, no source; -nh only skips a personal ~/.gdbinit), live and on a core;
# a program without coroscope gets one line, no traceback; `make uninstall` removes it all.
# Needs root (it writes /usr/local and gdb's system init directory); skipped otherwise.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-gdb-installed.XXXXXX)
SRC=tests/e2e-gdb-installed.sh
. tests/cli-harness.sh
command -v gdb >/dev/null 2>&1 || { echo "skip: no gdb"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "skip: needs root to install into /usr/local and /etc/gdb"; exit 77; }
initdir=$(gdb --configuration | sed -n 's/.*--with-system-gdbinit-dir=\([^ ]*\).*/\1/p')
[ -n "$initdir" ] || { echo "skip: this gdb has no system init directory"; exit 77; }
if [ -e /usr/local/lib/libcoroscope.so.0 ] || [ -e "$initdir/coroscope.py" ]; then
    echo "skip: coroscope is installed in /usr/local already; not touching it"; exit 77
fi
uninstall() { make --no-print-directory -s uninstall B="$B" >/dev/null 2>&1; }
trap 'uninstall; cleanup' EXIT INT TERM
unset MAKEFLAGS MAKELEVEL

if make --no-print-directory -s install B="$B" >"$T/install.log" 2>&1; then
    ok "make install (PREFIX=/usr/local)"
else
    bad "make install"; sed 's/^/    | /' "$T/install.log"; exit 1
fi
[ -f "$initdir/coroscope.py" ] && ok "installed $initdir/coroscope.py" || bad "no $initdir/coroscope.py"

cp tests/readme-example.c "$T/prog.c"
export PKG_CONFIG_PATH=/usr/local/lib/pkgconfig
CC=${CC:-cc}
# Under check-asan the installed library is instrumented: so must its users be.
case "$B" in *asan*) CC="$CC -fsanitize=address,undefined"; export ASAN_OPTIONS="detect_leaks=0" ;;
    *tsan*) CC="$CC -fsanitize=thread" ;; esac
$CC -O0 -g -o "$T/shared" "$T/prog.c" $(pkg-config --cflags --libs coroscope) \
    -Wl,-rpath,/usr/local/lib 2>"$T/cc.err" || { bad "build (shared)"; cat "$T/cc.err"; }
$CC -O0 -g -o "$T/static" "$T/prog.c" $(pkg-config --cflags coroscope) /usr/local/lib/libcoroscope.a \
    $(pkg-config --static --libs coroscope | sed 's/-lcoroscope//') 2>"$T/cc.err" ||
    { bad "build (static)"; cat "$T/cc.err"; }

asan=no
case "$B" in *asan*|*tsan*) asan=yes ;; esac  # no gcore: terabytes of shadow mappings
for kind in shared static; do
    # -nh: no ~/.gdbinit; the system init directory is read as a new user's gdb reads it.
    core_cmd="generate-core-file $T/$kind.core"
    [ "$asan" = yes ] && core_cmd="echo"
    gdb -nh -batch -ex 'break coro_dump' -ex run -ex coro-info -ex 'coro-bt 1' \
        -ex 'coro-apply all -- print $pc' -ex 'coro-select 1' -ex bt \
        -ex "$core_cmd" "$T/$kind" >"$T/gdb-$kind" 2>&1
    has "$kind: coro-info in a plain gdb, live" "$T/gdb-$kind" '^ +1 +suspended +"conn-7" +thread [0-9]+ at wait_for_data '
    has "$kind: coro-bt too" "$T/gdb-$kind" 'wait_for_data'
    has "$kind: coro-apply too" "$T/gdb-$kind" '^\$[0-9]+ = \(void \(\*\)\(\)\) 0x'
    has "$kind: coro-select, then plain bt shows the coroutine" "$T/gdb-$kind" '^#[0-9]+ +.*connection \('
    lacks "$kind: no Python error" "$T/gdb-$kind" 'Traceback|Python Exception|Undefined command'
    if [ "$asan" = yes ]; then
        : # gcore of an ASan program (terabytes of shadow mappings) is skipped, as e2e-gdb does
    elif [ -s "$T/$kind.core" ]; then
        gdb -nh -batch -ex coro-info "$T/$kind" "$T/$kind.core" >"$T/gdbc-$kind" 2>&1
        has "$kind: coro-info on its core" "$T/gdbc-$kind" '"conn-7"'
    else
        bad "$kind: gdb wrote no core"
    fi
done

gdb -nh -batch -ex starti -ex coro-info /bin/true >"$T/gdb-none" 2>&1
n=$(grep -c 'coroscope' "$T/gdb-none")
[ "$n" -eq 1 ] && ok "a program without coroscope: one line" || { bad "$n coroscope lines"; cat "$T/gdb-none"; }
lacks "a program without coroscope: no traceback" "$T/gdb-none" 'Traceback|Python Exception'

uninstall
[ ! -e "$initdir/coroscope.py" ] && [ ! -e /usr/local/lib/libcoroscope.so.0 ] &&
    [ ! -e /usr/local/share/coroscope ] && ok "make uninstall removes it all" ||
    bad "make uninstall left files behind"
[ $fails -eq 0 ] && echo "e2e-gdb-installed: all passed" || echo "e2e-gdb-installed: $fails failed"
[ $fails -eq 0 ]
