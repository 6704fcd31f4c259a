#!/bin/sh
# End-to-end tests of the signal dump and the crash report (docs/signal-dump.md), on real
# processes configured only through the environment, as a user's program would be:
#   stress   4 threads x 250 coroutines switching flat out (+ migrating "nomads" and
#            short-lived coroutines), 300 SIGUSR1 a few ms apart: every JSON Lines dump
#            parses and lists all 1,008 long-lived coroutines exactly once, with frames; the
#            program's own counters show its work was not disturbed. Prints the measured
#            dump latency and hold times.
#   blocked  a coroutine blocked in read() and one spinning with no call: both shown running
#            with their frames; the read still returns its data afterwards (SA_RESTART), and
#            a thread that never used coroutines was not interrupted.
#   masked   a coroutine thread that blocks every signal: the dump does not wait for it
#            long, still lists its coroutines, and the thread is not held when it unblocks.
#   env      signal by number, folded format to stderr; bad values give one line each;
#            O_NOFOLLOW refuses a symlink; the file is created 0600.
#   static   the same through the static library (signal.o is pulled in, env read).
#   crash    CORO_DUMP_ON_CRASH=1: the report lists every coroutine, then the process dies
#            by SIGSEGV with a core file.
# Exit 0 pass, 77 skip (no python3), else fail.
set -u
B=${B:-build}
command -v python3 >/dev/null 2>&1 || { echo "e2e-signal: python3 not found: skipped"; exit 77; }
# ThreadSanitizer delivers an asynchronous signal only when the thread next enters one of its
# interceptors, with the registers of the moment it arrived: threads that switch coroutines
# flat out (stress, spinning) are held late or not at all, and from stale registers (make
# check-tsan: no dump at all within 1 s of 300 signals). The hold is tested by check and
# check-asan; test-signal and e2e-stall still run it under TSan on threads that make calls.
case "$B" in *tsan*) echo "e2e-signal: skipped under ThreadSanitizer (it defers asynchronous signals)"; exit 77 ;; esac
[ -x "$B/tests/prog-signal" ] || { echo "e2e-signal: $B/tests/prog-signal missing"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
# The same program linked with the static library (the environment must work there too).
case "$B" in *asan*) SAN="-fsanitize=address,undefined" ;; *tsan*) SAN="-fsanitize=thread" ;; *) SAN="" ;; esac
# shellcheck disable=SC2086,SC2046
if ! ${CC:-cc} -std=gnu11 -O2 -g $SAN -Iinclude -o "$T/prog-signal-static" tests/prog-signal.c \
        "$B/libcoroscope.a" $(pkg-config --libs libdw libelf zlib) -lpthread; then
    echo "e2e-signal: static link of prog-signal failed"
    exit 1
fi
python3 - "$B/tests/prog-signal" "$T" <<'EOF'
import collections, json, os, re, resource, shutil, signal, stat, subprocess, sys, time

PROG, TMP = os.path.abspath(sys.argv[1]), sys.argv[2]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)
    return cond


def start(mode, prog=PROG, **env):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("CORO_"):
            del e[k]
    e.update(env)
    p = subprocess.Popen([prog, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e, text=True, cwd=TMP)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        out, err = p.communicate(timeout=20)
        sys.exit("prog-signal %s did not start: %r %s" % (mode, line, err))
    return p, int(line.split()[1])


def finish(p):
    out, err = p.communicate("\n", timeout=60)
    return p.returncode, out, err


def wait_for(path, pred, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            with open(path) as f:
                data = f.read()
            if pred(data):
                return data
        time.sleep(0.002)
    return None


def functions(c):
    return [f["function"] for f in c["frames"]]


# ------------------------------------------------------------------ stress (JSON Lines)
def stress():
    path = os.path.join(TMP, "dump-%p.jsonl")
    p, pid = start("stress", CORO_DUMP_SIGNAL="SIGUSR1", CORO_DUMP_FORMAT="json",
                   CORO_DUMP_PATH=path)
    path = path.replace("%p", str(pid))
    sent = 0
    for _ in range(300):
        os.kill(pid, signal.SIGUSR1)
        sent += 1
        time.sleep(0.003)
    # Then one at a time: the latency from the signal to a complete dump in the file.
    latencies = []
    for _ in range(8):
        time.sleep(0.1)  # let the last dump of the burst finish
        before = os.path.getsize(path)
        t0 = time.time()
        os.kill(pid, signal.SIGUSR1)
        sent += 1
        done = False
        while not done and time.time() - t0 < 10:
            time.sleep(0.0005)
            if os.path.getsize(path) > before:
                with open(path) as f:
                    f.seek(before)
                    done = "\n" in f.read()
        if not check(done, "stress: a dump within 10 s of a signal"):
            break
        latencies.append(time.time() - t0)
    rc, out, err = finish(p)
    check(rc == 0 and out.startswith("ok "), "stress: the program's own checks: rc=%d %s %s"
          % (rc, out.strip(), err.strip()))
    check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "stress: dump file mode is 0600")
    with open(path) as f:
        lines = f.read().splitlines()
    check(2 <= len(lines) <= sent, "stress: %d dumps for %d signals" % (len(lines), sent))
    running = with_entry = 0
    for n, line in enumerate(lines):
        try:
            d = json.loads(line)
        except ValueError as e:
            check(False, "stress: dump %d is not one JSON document: %s" % (n, e))
            continue
        if not check(d.get("format") == "coroscope" and d.get("version") == 1
                     and d.get("pid") == pid, "stress: dump %d header" % n):
            continue
        names = collections.Counter(c["name"] for c in d["coroutines"])
        longlived = {k: v for k, v in names.items() if k and re.match(r"(w\d-\d+|nomad-\d)$", k)}
        check(len(longlived) == 1008 and all(v == 1 for v in longlived.values()),
              "stress: dump %d lists %d of the 1008 long-lived coroutines, %d twice or more"
              % (n, len(longlived), sum(1 for v in longlived.values() if v > 1)))
        for c in d["coroutines"]:
            if c["name"] not in longlived:
                continue
            fns = functions(c)
            if c["state"] == "suspended":
                if not check(fns == ["coro_yield", "stress_park", "stress_body"],
                             "stress: dump %d: suspended %s has frames %s" % (n, c["name"], fns)):
                    break
                park = c["frames"][1]
                check(park["file"].endswith("tests/prog-signal.c") and park["line"] > 0,
                      "stress: stress_park frame has file:line")
            else:
                running += 1
                check(len(fns) >= 1, "stress: dump %d: running %s has no frames" % (n, c["name"]))
                with_entry += "stress_body" in fns
    m = re.search(r"max_gap_ms=([\d.]+)", out)
    lat = sorted(latencies)
    print("stress: %d signals, %d dumps of 1,008+ coroutines; %d running coroutines caught, "
          "%d unwound down to their entry function" % (sent, len(lines), running, with_entry))
    if lat:
        print("stress: latency signal -> dump written (1,008 coroutines, JSON): median %.1f ms, "
              "max %.1f ms; longest pause seen by a worker thread %s ms"
              % (lat[len(lat) // 2] * 1e3, lat[-1] * 1e3, m.group(1) if m else "?"))
    check(running == 0 or with_entry >= 0.99 * running,
          "stress: most running coroutines unwind to their entry function (%d of %d)"
          % (with_entry, running))


# ------------------------------------------------------------------ blocked and spinning
def blocked():
    path = os.path.join(TMP, "blocked.txt")
    p, pid = start("blocked", CORO_DUMP_SIGNAL="USR1", CORO_DUMP_PATH=path)
    os.kill(pid, signal.SIGUSR1)
    text = wait_for(path, lambda d: "# signal dump:" in d)
    check(text is not None, "blocked: a text dump was written")
    rc, out, err = finish(p)
    check(rc == 0 and out.startswith("ok "), "blocked: the read completed and the bystander "
          "was not interrupted: rc=%d %s %s" % (rc, out.strip(), err.strip()))
    if text is None:
        return
    blocks = {m.group(1): m.group(0) for m in
              re.finditer(r'coroutine \d+ "(\w+)" \[running, thread \d+\]:\n(  #.*\n)+', text)}
    check("reader" in blocks and re.search(r"blocked_in_read \(tests/prog-signal\.c:\d+\)\n"
                                           r".* reader_body \(", blocks["reader"]),
          "blocked: reader shown running in blocked_in_read, from reader_body:\n" + text)
    check("spinner" in blocks and re.search(r"spin_without_calls \(tests/prog-signal\.c:\d+\)\n"
                                            r".* spinner_body \(", blocks["spinner"]),
          "blocked: spinner shown running in spin_without_calls, from spinner_body:\n" + text)
    m = re.search(r"# signal dump: .*", text)
    print("blocked:", m.group(0) if m else text)


# ------------------------------------------------------------------ a thread blocking signals
def masked():
    path = os.path.join(TMP, "masked.txt")
    p, pid = start("masked", CORO_DUMP_SIGNAL="USR1", CORO_DUMP_PATH=path)
    t0 = time.time()
    os.kill(pid, signal.SIGUSR1)
    text = wait_for(path, lambda d: "# signal dump:" in d)
    took = time.time() - t0
    rc, out, err = finish(p)
    check(rc == 0 and out.startswith("ok "), "masked: the thread took the late hold signal "
          "and went on: rc=%d %s %s" % (rc, out.strip(), err.strip()))
    if not check(text is not None, "masked: a dump was written"):
        return
    check(took < 1.5, "masked: the dump did not wait long for the thread (%.2f s)" % took)
    check(re.search(r"1 not stopped", text), "masked: the summary says so:\n" + text)
    check(re.search(r'"masked-parked" \[suspended, thread \d+\]:\n  #0 .* coro_yield .*\n'
                    r'  #1 .* parked_here ', text), "masked: its suspended coroutine has frames")
    check('"masked-runner" [running, thread' in text, "masked: its running coroutine is listed")
    print("masked: dump in %.0f ms with a thread that blocks every signal" % (took * 1e3))


# ------------------------------------------------------------------ configuration
def env_config():
    # By number, folded, to stderr (no path).
    p, pid = start("idle", CORO_DUMP_SIGNAL=str(int(signal.SIGUSR2)), CORO_DUMP_FORMAT="folded")
    os.kill(pid, signal.SIGUSR2)
    time.sleep(0.3)
    rc, out, err = finish(p)
    check(rc == 0 and re.search(r"^idle-1;.*parked_here;coro_yield 1$", err, re.M),
          "env: folded dump on stderr for CORO_DUMP_SIGNAL=12: %r" % err)
    # Bad values: one line each, the program runs normally, no handler installed.
    for var, val, needle in (("CORO_DUMP_SIGNAL", "NOPE", "not a signal name"),
                             ("CORO_DUMP_FORMAT", "xml", "not one of text, json, folded")):
        env = {"CORO_DUMP_SIGNAL": "USR1", var: val}
        p, pid = start("idle", **env)
        rc, out, err = finish(p)
        check(rc == 0 and err.count("\n") == 1 and ("coroscope: %s=%s: %s" % (var, val, needle))
              in err, "env: %s=%s gives one clear line: %r" % (var, val, err))
    # O_NOFOLLOW: a symlink planted at the dump path is refused, its target untouched.
    victim = os.path.join(TMP, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(TMP, "link.txt")
    os.symlink(victim, link)
    p, pid = start("idle", CORO_DUMP_SIGNAL="USR1", CORO_DUMP_PATH=link)
    os.kill(pid, signal.SIGUSR1)
    time.sleep(0.3)
    rc, out, err = finish(p)
    with open(victim) as f:
        check(f.read() == "precious\n", "env: the symlink's target was not written")
    check("signal dump: cannot open %s" % link in err, "env: symlink refused with a line: %r" % err)


# ------------------------------------------------------------------ static library
def static():
    prog = os.path.join(TMP, "prog-signal-static")
    path = os.path.join(TMP, "static-%p.txt")
    p, pid = start("idle", prog=prog, CORO_DUMP_SIGNAL="USR1", CORO_DUMP_PATH=path)
    os.kill(pid, signal.SIGUSR1)
    text = wait_for(path.replace("%p", str(pid)), lambda d: "# signal dump:" in d)
    rc, out, err = finish(p)
    check(rc == 0 and text and '"idle-1" [suspended' in text and " parked_here (" in text,
          "static: the environment works with the static library: rc=%d %r" % (rc, text))


# ------------------------------------------------------------------ crash report
def crash():
    ldd = subprocess.run(["ldd", PROG], capture_output=True, text=True).stdout
    if "libasan" in ldd:
        # ASan's own SIGSEGV handler comes first and ends the process with its report: the
        # crash report is for production builds.
        print("crash: not checked under ASan (its SIGSEGV handler owns crashes)")
        return
    d = os.path.join(TMP, "crash")
    os.mkdir(d)
    e = {k: v for k, v in os.environ.items() if not k.startswith("CORO_")}
    e["CORO_DUMP_ON_CRASH"] = "1"

    def core_limit():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    p = subprocess.run([PROG, "crash"], cwd=d, env=e, capture_output=True, text=True,
                       preexec_fn=core_limit, timeout=60)
    err = p.stderr
    check(p.returncode == -signal.SIGSEGV, "crash: died by SIGSEGV (rc %d)" % p.returncode)
    check(re.search(r"^coroscope: crash report: SIGSEGV in thread \d+, in coroutine \d+ \"crasher\", 4 coroutines", err, re.M),
          "crash: report header:\n" + err)
    for i in range(3):
        check(re.search(r'coroutine \d+ "parked-%d" \[suspended, thread \d+\]:\n'
                        r'  #0 0x[0-9a-f]+ coro_yield\+0x[0-9a-f]+ \(\S+libcoroscope\.so\.0\+0x[0-9a-f]+\)\n'
                        r'  \?1 0x[0-9a-f]+ parked_here\+0x[0-9a-f]+ \(\S+prog-signal\+0x[0-9a-f]+\)\n'
                        r'  \?2 0x[0-9a-f]+ parked_body\+' % i, err),
              "crash: parked-%d listed with frames" % i)
    m = re.search(r'"crasher" \[running, thread \d+\]:\n  #0 0x[0-9a-f]+ crash_here\+0x[0-9a-f]+ '
                  r'\((\S+)\+(0x[0-9a-f]+)\)\n  \?1 0x[0-9a-f]+ crasher_body\+', err)
    if check(m, "crash: the crashing coroutine is listed with its pc:\n" + err):
        if shutil.which("eu-addr2line"):
            fn = subprocess.run(["eu-addr2line", "-f", "-e", m.group(1), m.group(2)],
                                capture_output=True, text=True).stdout.split("\n")[0]
            check(fn == "crash_here", "crash: #0 resolves to crash_here (got %r)" % fn)
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("core"):
        check(any(n.startswith("core") for n in os.listdir(d)), "crash: a core file was written")
    else:
        print("crash: core_pattern is %r: core file not checked" % pattern)
    print("crash: report of %d lines, then SIGSEGV" % err.count("\n"))


for t in (stress, blocked, masked, env_config, static, crash):
    t()
if failures:
    print("e2e-signal: %d failure(s)" % len(failures))
    sys.exit(1)
print("e2e-signal: all passed")
EOF
rc=$?
rm -rf "$T"
exit $rc
