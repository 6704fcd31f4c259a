#!/bin/sh
# The README's first command on a machine whose dependencies are missing. A copy of the source
# tree runs `make demo` with a pkg-config that finds nothing until `deps` has "installed" the
# packages (a stand-in deps script that only drops a marker file). The build must probe its
# flags after deps ran, so the first run links; before the fix it read empty flags when the
# Makefile was parsed and failed with ~120 undefined references to libdw. A deps script that
# installs nothing must stop the build with its own message, not with a link error.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-first-run.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
fails=0
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fails=$((fails + 1)); }

real_pc=$(command -v pkg-config) || { echo "skip: no pkg-config"; exit 77; }
# A new user's shell: nothing from the make that runs this test (B=, MAKEFLAGS, ...).
unset B MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES SAN

# The source tree as a clean clone has it (tracked and new files, no build directories).
mkdir -p "$T/src"
git ls-files --cached --others --exclude-standard -z 2>/dev/null |
    xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
    tar --null -T - -cf - | tar -xf - -C "$T/src"
[ -f "$T/src/Makefile" ] || { bad "copy of the source tree"; exit 1; }

cat >"$T/pkg-config" <<EOF
#!/bin/sh
# Finds nothing until the stand-in deps script has run.
[ -f "$T/installed" ] || exit 1
exec "$real_pc" "\$@"
EOF
cat >"$T/deps-installs" <<EOF
#!/bin/sh
echo "coroscope: installing missing Debian packages: (stand-in)"
touch "$T/installed"
EOF
cat >"$T/deps-fails" <<'EOF'
#!/bin/sh
echo "coroscope: missing Debian packages; run as root:" >&2
echo "  apt-get update && apt-get install -y libdw-dev (stand-in)" >&2
exit 1
EOF
chmod +x "$T/pkg-config" "$T/deps-installs" "$T/deps-fails"

# 1. Packages missing, deps can install them: the first `make demo` succeeds.
(cd "$T/src" && make --no-print-directory PKG_CONFIG="$T/pkg-config" DEPS_SH="$T/deps-installs" \
    demo) >"$T/demo.log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then
    ok "first make demo with the packages missing until deps ran"
else
    bad "first make demo exited $rc"; tail -n 30 "$T/demo.log" | sed 's/^/    | /'
fi
grep -q 'undefined reference' "$T/demo.log" && bad "link errors in the first run"
grep -q 'installing missing Debian packages' "$T/demo.log" && ok "deps ran first" \
    || bad "deps did not run"
grep -q 'coroutines in process' "$T/demo.log" && ok "the demo dumped its coroutines" \
    || bad "no dump in the demo's output"
[ -x "$T/src/build/coroscope" ] && ok "the CLI was built" || bad "no build/coroscope"

# 1b. A plain `make` (no goal) on a fresh tree builds the library and the CLI.
rm -rf "$T/installed" "$T/src/build"
(cd "$T/src" && make --no-print-directory PKG_CONFIG="$T/pkg-config" DEPS_SH="$T/deps-installs") \
    >"$T/make.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -x "$T/src/build/coroscope" ] && [ -f "$T/src/build/libcoroscope.so.0" ]; then
    ok "plain make on a fresh tree builds the library and the CLI"
else
    bad "plain make (exit $rc) did not build the library and the CLI"
    tail -n 20 "$T/make.log" | sed 's/^/    | /'
fi

# 2. Packages missing and deps cannot install them (not root): its message, no link attempt.
rm -f "$T/installed"
(cd "$T/src" && make --no-print-directory B=build2 PKG_CONFIG="$T/pkg-config" \
    DEPS_SH="$T/deps-fails" all) >"$T/fail.log" 2>&1
rc=$?
[ $rc -ne 0 ] && ok "make fails when deps cannot install (exit $rc)" || bad "make succeeded"
grep -q 'apt-get install' "$T/fail.log" && ok "it prints the apt-get line" \
    || bad "no apt-get line: $(cat "$T/fail.log")"
grep -q -e 'undefined reference' -e '  CC ' "$T/fail.log" && bad "it compiled anyway"

[ $fails -eq 0 ] && echo "e2e-first-run: all passed" || echo "e2e-first-run: $fails failed"
[ $fails -eq 0 ]
