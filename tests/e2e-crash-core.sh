#!/bin/sh
# coroscope never makes a crash harder to debug (issue 11 §1). For a segfault, an abort(), a C++
# exception escaping a coroutine, an illegal instruction and a stack overflow (also on an 8 KiB
# alternate signal stack the program installed), each in a coroutine, with the shared and the
# static library, with and without CORO_DUMP_ON_CRASH=1:
#   - the process dies of the same signal, with a kernel core;
#   - gdb's `bt` on that core shows the same innermost frames down to the user's crash_*
#     function, and no coroscope frame (handler, "<signal handler called>") above them;
#   - with the report: it names the coroutine that crashed, shows it running with the frames
#     of the faulting context (an overflow too), and the overflow report is never lost.
# Under ASan only abort and throw are checked (ASan's own handlers own the faults).
# Exit 0 pass, 77 skip (no gdb, no python3, cores piped elsewhere), else fail.
set -u
B=${B:-build}
command -v gdb >/dev/null 2>&1 || { echo "e2e-crash-core: gdb not found: skipped"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "e2e-crash-core: python3 not found: skipped"; exit 77; }
case "$(cat /proc/sys/kernel/core_pattern)" in
    \|*) echo "e2e-crash-core: core_pattern pipes cores to a program: skipped"; exit 77 ;;
esac
ulimit -c unlimited 2>/dev/null || { echo "e2e-crash-core: cannot raise ulimit -c: skipped"; exit 77; }
T=$(mktemp -d /tmp/coroscope-e2e-crash.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
export ASAN_OPTIONS="detect_leaks=0:disable_coredump=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export TSAN_OPTIONS="disable_coredump=0${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
export CORO_LEAK_CHECK=0
MODES="segv abort throw ill overflow altstack"
case "$B" in *asan*|*tsan*) MODES="abort throw" ;; esac
B="$B" T="$T" MODES="$MODES" exec python3 - <<'EOF'
import os, re, signal, subprocess, sys

B, T, MODES = os.path.abspath(os.environ["B"]), os.environ["T"], os.environ["MODES"].split()
SIG = {"segv": signal.SIGSEGV, "abort": signal.SIGABRT, "throw": signal.SIGABRT,
       "ill": signal.SIGILL, "overflow": signal.SIGSEGV, "altstack": signal.SIGSEGV}
NAME = {"segv": "segv", "abort": "aborter", "throw": "thrower", "ill": "ill",
        "overflow": "deep", "altstack": "deep"}
USER = {"segv": "crash_segv", "abort": "crash_abort", "throw": "crash_throw",
        "ill": "crash_ill", "overflow": "crash_recurse", "altstack": "crash_recurse"}
OURS = re.compile(r"^(coro_|coro__|crash_handler|on_segv|report_overflow|<signal handler called>)")
fails = 0

def check(cond, what):
    """what: a line, then (shown only on failure) the evidence."""
    global fails
    head, _, detail = what.partition("\n")
    print(("ok   - " if cond else "FAIL - ") + head)
    if not cond:
        fails += 1
        if detail:
            print("    " + detail.replace("\n", "\n    "))
    return cond

def crash(prog, mode, report):
    d = os.path.join(T, "%s-%s-%d" % (os.path.basename(prog), mode, report))
    os.makedirs(d)
    env = dict(os.environ, CORO_DUMP_ON_CRASH=str(report))
    p = subprocess.run([prog, mode], cwd=d, env=env, capture_output=True, text=True, timeout=60)
    cores = [f for f in os.listdir(d) if f.startswith("core")]
    frames = []
    if cores:
        g = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt 40", prog, os.path.join(d, cores[0])],
                           capture_output=True, text=True, timeout=120)
        for line in g.stdout.splitlines():
            m = re.match(r"#\d+\s+(?:0x[0-9a-f]+ in )?(\S+)", line)
            if m:
                frames.append(m.group(1))
    return p, cores, frames

def down_to_user(frames, mode):
    """The innermost frames, down to and including the user's crash_* function."""
    for i, f in enumerate(frames):
        if f == USER[mode]:
            return frames[:i + 1]
    return None

for prog in (os.path.join(B, "tests", "prog-crash"), os.path.join(B, "tests", "prog-crash-static")):
    tag = os.path.basename(prog)
    for mode in MODES:
        seen = {}
        for report in (0, 1):
            what = "%s %s%s" % (tag, mode, " +report" if report else "")
            p, cores, frames = crash(prog, mode, report)
            check(p.returncode == -SIG[mode], "%s: died by %s (rc %d)" %
                  (what, SIG[mode].name, p.returncode))
            if not check(cores, "%s: a core file" % what):
                continue
            top = down_to_user(frames, mode)
            if not check(top is not None, "%s: gdb's bt on the core reaches %s\n%s" %
                         (what, USER[mode], "\n".join(frames[:12]))):
                continue
            ours = [f for f in top if OURS.match(f)]
            check(not ours, "%s: no coroscope frame above %s (%s)" % (what, USER[mode], ours))
            seen[report] = top
            err = p.stderr
            if mode in ("overflow", "altstack"):
                check(re.search(r'^coroscope: coroutine \d+ "deep" overflowed its 64 KiB stack', err, re.M),
                      "%s: the overflow report\n%s" % (what, err))
            if report:
                check(re.search(r'^coroscope: crash report: SIG%s in thread \d+, in coroutine \d+ "%s", '
                                % (SIG[mode].name[3:], NAME[mode]), err, re.M),
                      "%s: the report names the coroutine\n%s" % (what, err))
                # Frame 0 of the crashing coroutine is exact for a fault, and the user's
                # function is among its frames in every case.
                m = re.search(r'"%s" \[running, thread \d+\]:\n((?:  [#?].*\n|      \(.*\n)+)'
                              % NAME[mode], err)
                if check(m, "%s: the crashing coroutine is shown running\n%s" % (what, err)):
                    check(USER[mode] in m.group(1), "%s: with %s among its frames" % (what, USER[mode]))
        if 0 in seen and 1 in seen:
            check(seen[0] == seen[1], "%s %s: the same innermost frames with and without the report "
                  "(%s)" % (tag, mode, " < ".join(seen[0])))
print("e2e-crash-core: %s" % ("all passed" if not fails else "%d failed" % fails))
sys.exit(1 if fails else 0)
EOF
