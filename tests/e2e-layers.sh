#!/bin/sh
# Dependencies point down: runtime/ must not call into inspect/ (it owns a hook table that
# inspect/ fills: <coroscope/hooks.h>). Every symbol a runtime object needs from the library
# must be defined by a runtime object. The compile flags enforce the headers (runtime/ builds
# with -Iinclude -Iruntime only); this checks the link.
set -u
B=${B:-build}
fails=0
objs=$(ls "$B"/runtime/*.o 2>/dev/null) || { echo "FAIL - no runtime objects in $B"; exit 1; }
defined=$(nm --defined-only $objs | awk 'NF == 3 { print $3 }' | sort -u)
for sym in $(nm --undefined-only $objs | awk '{ print $NF }' | grep -E '^coro' | sort -u); do
    if ! printf '%s\n' "$defined" | grep -qx "$sym"; then
        echo "FAIL - runtime/ needs $sym, which it does not define (an upward call?)"
        fails=$((fails + 1))
    fi
done
n=$(nm --undefined-only $objs | awk '{ print $NF }' | grep -cE '^coro')
[ $fails -eq 0 ] && echo "ok   - runtime/ objects: $n references to coro* symbols, all defined in runtime/"
# The static library still brings inspect/ along (the overflow report, CORO_LEAK_CHECK).
if nm "$B/libcoroscope.a" 2>/dev/null | grep -q ' coro_dump$'; then
    echo "ok   - libcoroscope.a holds inspect/ too"
else
    echo "FAIL - libcoroscope.a lacks coro_dump"; fails=$((fails + 1))
fi
[ $fails -eq 0 ]
