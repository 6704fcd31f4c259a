#!/bin/sh
# coroscope top's interactive interface in a real terminal (tmux): the table and its header,
# sorting (< > r), filtering by state and by name (/), pausing (space), a backtrace of the
# selected row (b) and back (q), quitting (q) with status 0; and without a terminal, one line
# pointing at -b. Target: tests/prog-stall (a stalled spinner, a ticker, an idle waiter, a
# never-entered coroutine).
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-top-ui.XXXXXX)
SRC=tests/prog-stall.c
. tests/cli-harness.sh
command -v tmux >/dev/null 2>&1 || { echo "skip: no tmux"; exit 77; }
CLI=$(realpath "$B/coroscope")
export TMUX_TMPDIR=$T   # a tmux server of our own, gone with $T
S=coroscope-top

start_cmd "$B/tests/prog-stall" || exit 1

screen() { tmux capture-pane -t $S -p >"$T/screen"; }
# wait_for NAME EREGEX: up to 5 s for the screen to show it.
wait_for() {
    k=0
    while :; do
        screen
        grep -Eq -- "$2" "$T/screen" && { ok "$1"; return 0; }
        k=$((k + 1))
        [ $k -gt 50 ] && { bad "$1: no line matching /$2/ on the screen:"; sed 's/^/    | /' "$T/screen"; return 1; }
        sleep 0.1
    done
}
keys() { tmux send-keys -t $S "$@"; sleep 0.3; }

tmux new-session -d -s $S -x 170 -y 30 "$CLI top -p $pid -d 0.3; echo \"exit \$?\" >$T/status; sleep 30"
wait_for "header" '^coroscope top - .* process [0-9]+ +refresh [0-9]+: 4 coroutines'
wait_for "column headings" '^ID +NAME +STATE +WAIT +FOR +SW/s +THREAD +CREATED AT'
wait_for "rows" '^[0-9]+ +ticker +waiting +sleep'
wait_for "the stall warning" '^warning: stalled: coroutine [0-9]+ "spinner"'
wait_for "the key help" 'q quit +space pause +< > sort +r reverse +/ filter +b backtrace'

keys '>' '>' '>' '>'
wait_for "> moves the sort to FOR" '^sort: FOR '
keys r
wait_for "r reverses it" '^sort: FOR \(descending\)'
keys '<' '<' '<' '<'
keys r

keys / ; keys w a i t i n g Enter
wait_for "filter by state: the waiting ones" '^[0-9]+ +idle +waiting'
screen
lacks "filter by state: not the running spinner" "$T/screen" '^[0-9]+ +spinner '
keys / ; keys t i c k Enter
wait_for "filter by name" 'filter: tick'
screen
n=$(grep -Ec '^[0-9]+ +[a-z]+ +(running|waiting|created)' "$T/screen")
[ "$n" -eq 1 ] && ok "filter by name: one row" || { bad "filter by name: $n rows"; cat "$T/screen"; }

keys b
wait_for "b: the selected coroutine's backtrace" '^coroutine [0-9]+ "ticker" \[waiting sleep'
wait_for "b: with its frames and file:line" '^  #[0-9]+ +0x[0-9a-f]+ ticker \(tests/prog-stall\.c:[0-9]+\)'
keys q
wait_for "q: back to the table" '^sort: ID +filter: tick'

keys / ; keys Enter
keys Space
wait_for "space pauses" '\[paused\]'
screen
r1=$(sed -nE 's/.*refresh ([0-9]+):.*/\1/p' "$T/screen")
sleep 1
screen
r2=$(sed -nE 's/.*refresh ([0-9]+):.*/\1/p' "$T/screen")
[ -n "$r1" ] && [ "$r1" = "$r2" ] && ok "paused: no refresh for 1 s (refresh $r1)" || bad "paused: refresh $r1 then $r2"
keys Space
sleep 1
screen
r3=$(sed -nE 's/.*refresh ([0-9]+):.*/\1/p' "$T/screen")
[ "${r3:-0}" -gt "${r2:-0}" ] && ok "space resumes (refresh $r2 -> $r3)" || bad "not resumed: refresh $r2 -> $r3"

keys q
k=0
while [ ! -s "$T/status" ] && [ $k -lt 50 ]; do sleep 0.1; k=$((k + 1)); done
[ "$(cat "$T/status" 2>/dev/null)" = "exit 0" ] && ok "q quits with status 0" || bad "quit: $(cat "$T/status" 2>/dev/null)"
tmux kill-server 2>/dev/null

run "no terminal" 64 "$CLI" top -p "$pid" </dev/null
has "no terminal: one line pointing at -b" "$T/err" '^coroscope: top: not a terminal; use -b for plain tables \(batch\)$'
kill -9 "$pid"
[ $fails -eq 0 ] && echo "e2e-top-ui: all passed" || echo "e2e-top-ui: $fails failed"
[ $fails -eq 0 ]
