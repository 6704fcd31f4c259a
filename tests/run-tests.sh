#!/bin/sh
# Runs each test program or script given, prints its output, and ends with one line
# "tests: N passed, N failed[, N skipped]". A program exiting 77 counts as skipped.
# TEST_WRAP (e.g. valgrind ...) prefixes compiled test programs, not scripts.
# Each test runs under a timeout (TEST_TIMEOUT seconds, default 600): a hang fails that test,
# by name, instead of stalling the whole run.
set -u
limit=${TEST_TIMEOUT:-600}
pass=0 fail=0 skip=0 failed=""
for t in "$@"; do
    echo "=== $t"
    case "$t" in
        *.sh) timeout -k 10 "$limit" sh "$t" ;;
        *) timeout -k 10 "$limit" ${TEST_WRAP:-} "$t" ;;
    esac
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "--- TIMEOUT after ${limit} s: $t"
    fi
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1))
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1))
        echo "--- skipped: $t"
    else
        fail=$((fail + 1))
        failed="$failed $t"
        echo "--- FAILED (exit $rc): $t"
    fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
