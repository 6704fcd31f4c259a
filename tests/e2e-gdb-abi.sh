#!/bin/sh
# The gdb extension reads the debug-ABI descriptor with a hand-written layout
# (gdb/coroscope/registry.py). Every field name it knows must sit at the offset the C header
# gives it (include/coroscope/debug-abi.h), so a field added or moved in C without the Python
# side fails here rather than as wrong output in a debugger.
set -u
B=${B:-build}
T=$(mktemp -d /tmp/coroscope-e2e-gdb-abi.XXXXXX)
SRC=gdb/coroscope/registry.py
. tests/cli-harness.sh
command -v gdb >/dev/null 2>&1 || { echo "skip: no gdb"; exit 77; }

# Python's view: name and offset of every field, from the structs it unpacks with.
gdb -nx -batch -ex "python
import sys
sys.path.insert(0, 'gdb')
from coroscope import registry as r
off = r._HEAD.size
names = list(r._ADDRS) + list(r._OFFS)
for i, n in enumerate(names):
    print(n, off)
    off += 8 if i < len(r._ADDRS) else 4
off += 4  # reserved0
for n in r._TAIL_NAMES:
    print(n, off)
    off += 4
print('clock_ns', off + 4)
off += 4 + 8
for n in r._TAIL2_NAMES:
    print(n, off)
    off += 4
print('size', off + 4)  # reserved1
" >"$T/py" 2>&1
grep -q '^records 24$' "$T/py" || { bad "gdb could not load the extension's layout"; cat "$T/py"; exit 1; }

# C's view, for the same names (register fields live in a nested struct).
awk 'BEGIN { print "#include <stddef.h>"; print "#include <stdio.h>";
             print "#include <coroscope/debug-abi.h>"; print "int main(void) {" }
     $1 == "size" { printf "    printf(\"size %%zu\\n\", sizeof(struct coro_debug_abi));\n"; next }
     $1 ~ /^reg_/ { f = substr($1, 5)
                    printf "    printf(\"%s %%zu\\n\", offsetof(struct coro_debug_abi, regs.%s));\n", $1, f; next }
     { printf "    printf(\"%s %%zu\\n\", offsetof(struct coro_debug_abi, %s));\n", $1, $1 }
     END { print "    return 0; }" }' "$T/py" >"$T/abi.c"
if ! ${CC:-cc} -Iinclude -o "$T/abi" "$T/abi.c" 2>"$T/cc.err"; then
    bad "a field the Python side names is not in debug-abi.h"; sed 's/^/    | /' "$T/cc.err" | head; exit 1
fi
"$T/abi" >"$T/c"
if diff "$T/c" "$T/py" >"$T/diff"; then
    ok "all $(wc -l <"$T/c") descriptor fields at the same offsets in C and in the gdb extension"
else
    bad "the gdb extension's descriptor layout differs from debug-abi.h"; sed 's/^/    | /' "$T/diff"
fi
[ $fails -eq 0 ] && echo "e2e-gdb-abi: all passed" || echo "e2e-gdb-abi: $fails failed"
[ $fails -eq 0 ]
