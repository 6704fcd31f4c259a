"""The debug ABI descriptor (include/coroscope/debug-abi.h, struct coro_debug_abi) as data.

This module does not import gdb: tests/e2e-gdb-abi.sh runs it under plain python3 and checks
every field below against the header, with offsets taken from the C compiler itself
(offsetof), so the two cannot drift apart unseen.

FIELDS lists the descriptor's fields in header order with their struct format codes.  The
ABI only ever appends fields: a reader decodes the fields that the writer's `size` covers,
and a field the writer's descriptor is too small to hold decodes as None, which readers
treat as absent, as inspect/registry-read.c treats the all-ones it reads there.  A field
that a newer writer appends after the last one listed here is simply not read.

The limits and the required/optional split are the C reader's (inspect/registry-read.c,
coro__abi_read), so that gdb accepts the same descriptors the CLI accepts.
"""

import struct

SYMBOL = "coroscope_debug_abi"
SECTION = ".coroscope_debug"
MAGIC = b"CoroDbg\0"
VERSION = 1
ABSENT = 0xFFFFFFFF
ARCH_X86_64 = 62

# Values of a record's wait_kind field (CORO_WAIT_*); 0 (none) and unknown values: no wait.
WAIT_KINDS = {1: "fd", 2: "sleep", 3: "queue", 4: "mutex", 5: "rwlock-read",
              6: "rwlock-write"}
# The largest offset of the holder's (writer's) id inside a CoMutex (CoRwlock) a reader
# follows, as inspect/collect.c.
MAX_LOCK_OFFSET = 4096

# Values of a record's state field.
STATE_FREE, STATE_CREATED, STATE_RUNNING, STATE_SUSPENDED, STATE_NESTED, STATE_TERMINATED = \
    range(6)

# The saved registers, in the order of struct coro_debug_regs_layout.
REG_FIELDS = ("rsp", "rip", "rbp", "rbx", "r12", "r13", "r14", "r15", "mxcsr", "fpucw")
# The ones an unwinder needs (all uint64).
REGS = REG_FIELDS[:8]

# (name, struct format) in header order; "regs.X" are the members of the nested
# struct coro_debug_regs_layout.
FIELDS = (
    ("magic", "8s"), ("version", "I"), ("size", "I"), ("ptr_size", "I"), ("arch", "I"),
    ("records", "Q"), ("nrecords", "Q"), ("shards", "Q"), ("nshards", "Q"),
    ("leak_generation", "Q"),
    ("trampoline_start", "Q"), ("trampoline_end", "Q"), ("switch_start", "Q"),
    ("switch_end", "Q"),
    ("record_size", "I"), ("off_next", "I"), ("off_id", "I"), ("off_state", "I"),
    ("off_seq", "I"), ("off_name", "I"), ("name_size", "I"), ("off_regs", "I"),
) + tuple(("regs." + r, "I") for r in REG_FIELDS) + (
    ("off_stack_base", "I"), ("off_stack_size", "I"), ("guard_size", "I"),
    ("off_entry", "I"), ("off_opaque", "I"), ("off_create_site", "I"), ("off_tid", "I"),
    ("off_caller", "I"), ("off_switch_count", "I"), ("off_generation", "I"),
    ("off_wait_reason", "I"), ("off_wait_object", "I"), ("off_wait_since", "I"),
    ("off_stack_used_max", "I"),
    ("shard_size", "I"), ("shard_off_next", "I"), ("shard_off_tid", "I"),
    ("shard_off_current", "I"), ("shard_off_created", "I"), ("shard_off_terminated", "I"),
    ("reserved0", "I"),
    # Wait reasons, appended after the first release: a smaller descriptor lacks them.
    ("off_wait_kind", "I"), ("off_wait_fd", "I"), ("off_wait_events", "I"),
    ("off_wait_deadline", "I"), ("mutex_off_holder_id", "I"), ("rwlock_off_writer_id", "I"),
    ("clock_ns", "Q"),
    # Appended after clock_ns.
    ("off_created_ns", "I"), ("reserved1", "I"),
)


def _layout(fields):
    """[(name, format, offset, size)] with C's natural alignment (the header uses no
    packing), and the struct's total size rounded up to its alignment."""
    out = []
    off = 0
    align_max = 1
    for name, fmt in fields:
        size = struct.calcsize("<" + fmt)
        align = 1 if fmt.endswith("s") else size
        align_max = max(align_max, align)
        off = (off + align - 1) // align * align
        out.append((name, fmt, off, size))
        off += size
    total = (off + align_max - 1) // align_max * align_max
    return out, total


LAYOUT, KNOWN_SIZE = _layout(FIELDS)
OFFSETS = dict((name, off) for name, _fmt, off, _size in LAYOUT)

# The part every version-1 writer has: everything before reserved0 (as the C reader).
MIN_SIZE = OFFSETS["reserved0"]
MAX_SIZE = 65536
HEAD = struct.Struct("<8sIIII")  # magic, version, size, ptr_size, arch

# Limits of the C reader (inspect/registry-read.c and inspect/inspect-int.h).
MIN_RECORD_SIZE = 16
MAX_RECORD_SIZE = 4096
MIN_SHARD_SIZE = 8
MAX_SHARD_SIZE = 4096
MAX_NAME_SIZE = 4096
MAX_RECORDS = 16 * 1024 * 1024
MAX_SHARDS = 1024 * 1024

# Record fields: (name, width, required).  Optional ones may be ABSENT.
RECORD_FIELDS = (
    ("off_next", 8, True), ("off_id", 8, True), ("off_state", 4, True), ("off_seq", 4, True),
    ("off_stack_base", 8, True), ("off_stack_size", 8, True), ("off_entry", 8, True),
    ("off_opaque", 8, False), ("off_create_site", 8, False), ("off_tid", 4, False),
    ("off_caller", 8, False), ("off_switch_count", 8, False), ("off_generation", 8, False),
    ("off_wait_reason", 8, False), ("off_wait_object", 8, False),
    ("off_wait_since", 8, False), ("off_stack_used_max", 8, False),
    ("off_wait_kind", 4, False), ("off_wait_fd", 4, False), ("off_wait_events", 4, False),
    ("off_wait_deadline", 8, False), ("off_created_ns", 8, False),
)
SHARD_FIELDS = (
    ("shard_off_next", 8, True), ("shard_off_tid", 4, False),
    ("shard_off_current", 8, False), ("shard_off_created", 8, False),
    ("shard_off_terminated", 8, False),
)


def decode(raw):
    """{field: value} of the descriptor bytes raw (as many as the writer's size says, or
    fewer).  Fields raw does not cover are None."""
    out = {}
    for name, fmt, off, size in LAYOUT:
        if off + size <= len(raw):
            out[name] = struct.unpack_from("<" + fmt, raw, off)[0]
        else:
            out[name] = None
    return out


def _field_ok(off, width, size):
    return off is not None and off != ABSENT and off <= size and width <= size - off


def check(d):
    """None if the decoded descriptor d is usable, else what is impossible in it (a few
    words, as the C reader's message says).  d comes from decode() of a descriptor whose
    magic, version and size have been checked."""
    if d["ptr_size"] != 8 or d["arch"] != ARCH_X86_64:
        return "architecture (pointer size %s, arch %s)" % (d["ptr_size"], d["arch"])
    rs, ss = d["record_size"], d["shard_size"]
    if not MIN_RECORD_SIZE <= rs <= MAX_RECORD_SIZE:
        return "record_size %d" % rs
    if not MIN_SHARD_SIZE <= ss <= MAX_SHARD_SIZE:
        return "shard_size %d" % ss
    for name, width, required in RECORD_FIELDS:
        off = d[name]
        if off is None or off == ABSENT:
            if required:
                return "record field %s (absent)" % name
            continue
        if not _field_ok(off, width, rs):
            return "record field %s at offset %d of a %d-byte record" % (name, off, rs)
    if not 0 < d["name_size"] <= MAX_NAME_SIZE or \
            not _field_ok(d["off_name"], d["name_size"], rs):
        return "name field %d+%d of a %d-byte record" % (d["off_name"], d["name_size"], rs)
    if d["off_regs"] == ABSENT or d["off_regs"] > rs:
        return "off_regs %d" % d["off_regs"]
    for reg in REGS:
        off = d["regs." + reg]
        if not _field_ok(off, 8, rs - d["off_regs"]):
            return "register %s at offset %d" % (reg, off)
    for name, width, required in SHARD_FIELDS:
        off = d[name]
        if off is None or off == ABSENT:
            if required:
                return "shard field %s (absent)" % name
            continue
        if not _field_ok(off, width, ss):
            return "shard field %s at offset %d of a %d-byte shard" % (name, off, ss)
    if d["trampoline_start"] > d["trampoline_end"] or d["switch_start"] > d["switch_end"]:
        return "code ranges"
    return None
