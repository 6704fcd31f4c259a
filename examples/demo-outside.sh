#!/bin/sh
# Part of `make demo`: starts the demo parked in pause() with the signal dump armed, then looks
# at its coroutines from outside with the coroscope CLI and with gdb, asks it for a signal
# dump, reads a kernel core of it, and shows the leak check at exit.
set -u
demo=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") b=$2
out=$(mktemp)
sig=$(mktemp -u /tmp/coroscope-demo-sig.XXXXXX)
CORO_DUMP_SIGNAL=USR1 CORO_DUMP_PATH="$sig" "$demo" --wait >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out" "$sig"' EXIT
# Wait until the demo says it is parked.
i=0
while ! grep -q 'is waiting' "$out" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done

echo "### 2. coroscope ps -p $pid"
echo "\$ coroscope ps -p $pid"
"$b/coroscope" ps -p "$pid"
echo
echo "### 3. coroscope bt -p $pid 2"
echo "\$ coroscope bt -p $pid 2"
"$b/coroscope" bt -p "$pid" 2
echo
if command -v gdb >/dev/null 2>&1; then
    echo "### 4. gdb -p $pid: coro-info, coro-select 2, then plain bt, frame 4, print *c"
    # The build tree holds the auto-load hook next to libcoroscope.so.0: allow it.
    gdb -nx -batch -iex "add-auto-load-safe-path $(cd "$b" && pwd)" -p "$pid" \
        -ex 'echo (gdb) coro-info\n' -ex 'coro-info' \
        -ex 'echo (gdb) coro-select 2\n' -ex 'coro-select 2' \
        -ex 'echo (gdb) bt\n' -ex 'bt' \
        -ex 'echo (gdb) frame 4\n' -ex 'frame 4' \
        -ex 'echo (gdb) print *c\n' -ex 'print *c' 2>&1 \
        | grep -v -e '^\[Inferior' -e '^\[New' -e '^\[Thread' -e '^Using host libthread_db' -e '^warning: ' -e '^$' \
              -e '^0x0' -e 'No such file or directory'
fi
echo
echo "### 5. The signal dump: CORO_DUMP_SIGNAL=USR1 CORO_DUMP_PATH=FILE, then kill -USR1 $pid"
kill -USR1 "$pid"
i=0
while ! grep -q '^# signal dump' "$sig" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
echo "\$ cat FILE"
cat "$sig" 2>/dev/null || echo "(no dump written)"
if true; then
    echo
    echo "### 6. A kernel core of the same program, read by coroscope"
    dir=$(mktemp -d)
    kill -ABRT "$pid"
    wait "$pid" 2>/dev/null
    (cd "$dir" && ulimit -c unlimited && { "$demo" --wait >/dev/null 2>&1 & p=$!; sleep 1
        kill -ABRT $p; wait $p; }) >/dev/null 2>&1
    if [ -f "$dir/core" ]; then
        echo "\$ coroscope bt --folded --core core"
        "$b/coroscope" bt --folded --core "$dir/core"
    else
        echo "(no core written: see /proc/sys/kernel/core_pattern)"
    fi
    rm -rf "$dir"

fi

echo
echo "### 7. The leak check at exit: CORO_LEAK_CHECK=1 (the demo leaves its coroutines alive)"
CORO_LEAK_CHECK=1 "$demo" >/dev/null 2>"$out"
rc=$?
cat "$out"
echo "(exit status $rc)"
