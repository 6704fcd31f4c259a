#!/bin/sh
# Echo over loopback with 1,000 concurrent connections and 32-byte messages: requests/s of a
# coroscope server (one coroutine per connection over coro_wait_fd) and of libuv's callback
# echo server, in the same run, alternating 3 times; medians and the ratio. Usage:
#   echo-bench.sh BENCH-BINARY [CONNS] [SECONDS]
set -u
bin=$1 conns=${2:-1000} secs=${3:-2}
ulimit -n 8192 2>/dev/null || ulimit -n 4096 2>/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {
    "$bin" "$1" >"$tmp/port" &
    sp=$!
    i=0
    while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
    r=$("$bin" client "$(cat "$tmp/port")" "$conns" "$secs" 32)
    kill "$sp" 2>/dev/null
    wait "$sp" 2>/dev/null
    rm -f "$tmp/port"
    echo "${r:-0}"
}
for round in 1 2 3; do
    run coroscope >>"$tmp/coroscope"
    run libuv >>"$tmp/libuv"
done
med() { sort -n "$1" | sed -n 2p; }
c=$(med "$tmp/coroscope") u=$(med "$tmp/libuv")
echo "| echo server, $conns connections, 32-byte messages, ${secs} s x 3 | requests/s (median) |"
echo "|---|---:|"
echo "| coroscope: a coroutine per connection, coro_wait_fd | $c |"
echo "| libuv callbacks (uv_read_start + uv_write), as its example | $u |"
echo "| ratio coroscope / libuv | $(awk -v c="$c" -v u="$u" 'BEGIN { printf "%.2fx", u ? c / u : 0 }') |"
echo "(all runs: coroscope $(tr '\n' ' ' <"$tmp/coroscope")/ libuv $(tr '\n' ' ' <"$tmp/libuv"))"
