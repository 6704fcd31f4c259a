#!/bin/sh
# Part of `make demo`: the seed's program for real. examples/hello-server serves loopback
# clients (two finish their conversation, three stop mid-way), keeps a worker pool waiting on
# a CoQueue, and has two coroutines deadlocked on two CoMutexes. coroscope, the signal dump
# and gdb say what each coroutine waits for, since when and who holds it, and name the
# deadlock; then the server is stopped with SIGTERM and exits 0.
set -u
server=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") b=$2
out=$(mktemp)
sig=$(mktemp -u /tmp/coroscope-demo-sig.XXXXXX)
CORO_DUMP_SIGNAL=USR1 CORO_DUMP_PATH="$sig" "$server" --clients 2 --idle 3 --workers 2 \
    --deadlock >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out" "$sig"' EXIT
i=0
while ! grep -q '^ready' "$out" && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
sleep 1 # let the waits age a little

echo "### 8. hello-server: waits, holders and a deadlock (examples/hello-server.c)"
echo "\$ hello-server --clients 2 --idle 3 --workers 2 --deadlock &   # $(cat "$out")"
echo "\$ coroscope ps -p $pid"
"$b/coroscope" ps -p "$pid"
echo "(exit status $?: 3 = a deadlock was found)"
echo
conn=$("$b/coroscope" ps -p "$pid" | awk '$3 ~ /^conn-/ { print $1; exit }')
echo "\$ coroscope bt -p $pid $conn"
"$b/coroscope" bt -p "$pid" "$conn"
echo
echo "\$ coroscope top -b -n 2 -d 0.5 --long-wait 1 -p $pid    # over time, never stopping it; without -b: keys"
"$b/coroscope" top -b -n 2 -d 0.5 --long-wait 1 -p "$pid" | sed -n '/refresh 2:/,$p'
echo
echo "\$ kill -USR1 $pid; cat FILE    # the signal dump (CORO_DUMP_SIGNAL=USR1), first lines"
kill -USR1 "$pid"
i=0
while ! grep -q '^# signal dump' "$sig" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
sed -n '1,12p' "$sig" 2>/dev/null
if command -v gdb >/dev/null 2>&1; then
    echo
    echo "\$ gdb -p $pid -batch -ex coro-info"
    gdb -nx -batch -iex "add-auto-load-safe-path $(cd "$b" && pwd)" -p "$pid" -ex 'coro-info' 2>&1 \
        | grep -v -e '^\[Inferior' -e '^\[New' -e '^\[Thread' -e '^Using host libthread_db' \
                  -e '^warning: ' -e '^$' -e '^0x0' -e 'No such file or directory'
fi
echo
kill -TERM "$pid"
wait "$pid"
echo "\$ kill -TERM $pid   # hello-server exited with status $?"
