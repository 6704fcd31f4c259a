#!/bin/sh
# The gdb extension reads the debug-ABI descriptor with a hand-written layout
# (gdb/coroscope/abi.py). A field added or moved in C without the Python side must fail here
# rather than as wrong output in a debugger:
#   - every field abi.py knows sits at the offset and has the size the C compiler gives it
#     (include/coroscope/debug-abi.h, offsetof), and sizeof matches, as gdb itself loads it;
#   - abi.py knows the header's fields in the header's order (fields a newer header appends
#     after them are named: the extension reads them only once abi.py lists them);
#   - the descriptor checks accept and reject what inspect/registry-read.c accepts and
#     rejects (sizes at the limits, optional fields absent, a shorter older descriptor).
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-gdb-abi.XXXXXX)
SRC=gdb/coroscope/abi.py
. tests/cli-harness.sh
command -v gdb >/dev/null 2>&1 || { echo "skip: no gdb"; exit 77; }
ROOT=$(pwd)

# Python's view, in gdb's own Python: name, offset and size of every field, then sizeof.
gdb -nx -batch -ex "python
import sys
sys.path.insert(0, '$ROOT/gdb')
from coroscope import abi
for name, _fmt, off, size in abi.LAYOUT:
    print(name, off, size)
print('sizeof', abi.KNOWN_SIZE)
" >"$T/py" 2>&1
grep -q '^records 24 8$' "$T/py" || { bad "gdb could not load the extension's layout"; cat "$T/py"; exit 1; }

# C's view, for the same names ("regs.X" are members of the nested register struct).
awk 'BEGIN { print "#include <stddef.h>"; print "#include <stdio.h>";
             print "#include <coroscope/debug-abi.h>";
             print "#define F(m) printf(\"%s %zu %zu\\n\", #m, offsetof(struct coro_debug_abi, m), \\";
             print "               sizeof(((struct coro_debug_abi *)0)->m))";
             print "int main(void) {" }
     $1 == "sizeof" { print "    printf(\"sizeof %zu\\n\", sizeof(struct coro_debug_abi));"; next }
     { printf "    F(%s);\n", $1 }
     END { print "    return 0; }" }' "$T/py" >"$T/abi.c"
if ! ${CC:-cc} -Iinclude -o "$T/abi" "$T/abi.c" 2>"$T/cc.err"; then
    bad "a field the Python side names is not in debug-abi.h"; sed 's/^/    | /' "$T/cc.err" | head; exit 1
fi
"$T/abi" >"$T/c"
if diff "$T/c" "$T/py" >"$T/diff"; then
    ok "all $(($(wc -l <"$T/c") - 1)) descriptor fields at the same offsets and sizes in C and in the gdb extension"
else
    bad "the gdb extension's descriptor layout differs from debug-abi.h"; sed 's/^/    | /' "$T/diff"
fi

# The header's own field names, in order (the struct is plain "type a, b;" lines).
sed -n '/^struct coro_debug_regs_layout {/,/^};/p' include/coroscope/debug-abi.h >"$T/regs.h"
sed -n '/^struct coro_debug_abi {/,/^};/p' include/coroscope/debug-abi.h >"$T/abi.h"

# Order and the C reader's rules. From $T: the source tree's gdb/ directory must not pass for
# gdb's own module; abi.py does not import gdb, so plain python3 runs it.
(cd "$T" && PYTHONPATH="$ROOT/gdb" python3 - "$T/c" "$T/abi.h" "$T/regs.h") >"$T/rules" 2>&1 <<'PY'
import re
import struct
import sys
from coroscope import abi


def check(good, what, why=""):
    print("ok   - " + what if good else "FAIL - " + what + (": " + why if why else ""))


def fields_of(path):
    names = []
    body = open(path).read()
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    for m in re.finditer(r"^\s*(?:struct\s+\w+|char|u?int\d+_t)\s+([^;{}]+);", body, re.M):
        for part in m.group(1).split(","):
            names.append(re.sub(r"\[.*\]", "", part).strip())
    return names


c = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    c[name] = [int(v) for v in vals]

# Field order; newer fields only after the ones abi.py knows.
regs = fields_of(sys.argv[3])
header = []
for name in fields_of(sys.argv[2]):
    header.extend(["regs." + r for r in regs] if name == "regs" else [name])
known = [name for name, _fmt in abi.FIELDS]
check(header[:len(known)] == known, "abi.py lists debug-abi.h's fields in the header's order",
      "the header has %s where abi.py has %s"
      % ([h for h, k in zip(header, known) if h != k][:3],
         [k for h, k in zip(header, known) if h != k][:3]))
newer = header[len(known):]
if newer:
    print("note: debug-abi.h appends fields the gdb extension does not read yet: "
          + ", ".join(newer))

# The checks, against the C reader's rules.
good = {name: 0 for name in known}
good.update(magic=abi.MAGIC, version=1, size=abi.KNOWN_SIZE, ptr_size=8, arch=62,
            record_size=248, off_next=216, off_id=104, off_state=80, off_seq=72, off_name=160,
            name_size=32, off_regs=0, off_stack_base=144, off_stack_size=152, off_entry=112,
            off_opaque=120, off_create_site=128, off_tid=84, off_caller=88,
            off_switch_count=96, off_generation=136, shard_size=176, shard_off_next=168,
            shard_off_tid=8, shard_off_current=0, shard_off_created=16,
            shard_off_terminated=24, off_wait_kind=76, off_wait_fd=192, off_wait_events=196,
            off_wait_deadline=200, off_created_ns=208, mutex_off_holder_id=0,
            rwlock_off_writer_id=8, clock_ns=12345)
for i, r in enumerate(abi.REG_FIELDS):
    good["regs." + r] = 8 * i
for opt in ("off_wait_reason", "off_wait_object", "off_wait_since", "off_stack_used_max"):
    good[opt] = abi.ABSENT
# The fields at their offsets (the header pads before clock_ns and at its end).
buf = bytearray(abi.KNOWN_SIZE)
for n, f, o, _s in abi.LAYOUT:
    struct.pack_into("<" + f, buf, o, good[n])
raw = bytes(buf)
check(abi.check(abi.decode(raw)) is None, "a good descriptor is accepted",
      str(abi.check(abi.decode(raw))))
old = abi.decode(raw[:abi.MIN_SIZE])
check(old["reserved0"] is None and old["off_wait_kind"] is None and abi.check(old) is None,
      "an older descriptor (without reserved0 and the wait fields) is accepted")
mid = abi.decode(raw[:abi.OFFSETS["off_created_ns"]])
check(mid["clock_ns"] == 12345 and mid["off_created_ns"] is None and abi.check(mid) is None,
      "a descriptor that ends after clock_ns is accepted, off_created_ns absent")


def variant(**kw):
    d = dict(abi.decode(raw))
    d.update(kw)
    return abi.check(d)


A = abi.ABSENT
check(variant(off_opaque=A, off_create_site=A, off_tid=A, off_caller=A, off_switch_count=A,
              off_generation=A, shard_off_tid=A, shard_off_current=A, off_wait_kind=A,
              off_wait_fd=A, off_wait_events=A, off_wait_deadline=A, off_created_ns=A) is None,
      "optional fields absent are accepted (as the C reader)")
for field in ("off_next", "off_id", "off_state", "off_seq", "off_stack_base",
              "off_stack_size", "off_entry", "shard_off_next"):
    check(variant(**{field: A}) is not None, "required field %s absent is rejected" % field)
check(variant(record_size=4096, off_next=4088) is None, "record_size 4096 accepted")
check(variant(record_size=4097) is not None, "record_size 4097 rejected")
check(variant(record_size=15) is not None, "record_size 15 rejected")
check(variant(shard_size=4097) is not None, "shard_size 4097 rejected")
check(variant(name_size=0) is not None, "name_size 0 rejected")
check(variant(off_tid=246) is not None, "off_tid past the record rejected")
check(variant(off_wait_deadline=244) is not None, "off_wait_deadline past the record rejected")
check(variant(off_created_ns=241) is not None, "off_created_ns past the record rejected")
check(variant(**{"regs.r15": 244}) is not None, "register past the record rejected")
check(variant(arch=3) is not None, "another architecture rejected")
check(variant(switch_start=2, switch_end=1) is not None, "inverted code range rejected")
check(abi.MIN_SIZE == c["reserved0"][0], "MIN_SIZE is offsetof(reserved0), as the C reader")
PY
cat "$T/rules"
fails=$((fails + $(grep -c '^FAIL' "$T/rules")))
grep -q '^ok' "$T/rules" || bad "the rule checks did not run under python3"
[ $fails -eq 0 ] && echo "e2e-gdb-abi: all passed" || echo "e2e-gdb-abi: $fails failed"
[ $fails -eq 0 ]
