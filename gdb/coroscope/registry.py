"""Reading the coroscope registry of the current inferior through the debug ABI.

Everything here reads target memory only (live process or core file): no inferior calls,
no register writes.  Layouts come from the target's own descriptor
(include/coroscope/debug-abi.h, struct coro_debug_abi); the only layout known in advance
is the descriptor's own, which the ABI only ever extends at its end.  Every value read
from the target is untrusted: sizes and offsets are checked, list walks are bounded and
detect cycles.
"""

import re
import struct
import time

import gdb

SYMBOL = "coroscope_debug_abi"
SECTION = ".coroscope_debug"
MAGIC = b"CoroDbg\0"
VERSION = 1
ABSENT = 0xFFFFFFFF

STATE_FREE, STATE_CREATED, STATE_RUNNING, STATE_SUSPENDED, STATE_NESTED, STATE_TERMINATED = \
    range(6)
STATE_NAMES = {
    STATE_CREATED: "created",
    STATE_RUNNING: "running",
    STATE_SUSPENDED: "suspended",
    STATE_NESTED: "running",  # running, but inside a coroutine it entered
}

# struct coro_debug_abi, version 1, in order.  Only the names matter to the code below.
_HEAD = struct.Struct("<8sIIII")
_ADDRS = ("records", "nrecords", "shards", "nshards", "leak_generation",
          "trampoline_start", "trampoline_end", "switch_start", "switch_end")
_OFFS = ("record_size", "off_next", "off_id", "off_state", "off_seq", "off_name",
         "name_size", "off_regs",
         "reg_rsp", "reg_rip", "reg_rbp", "reg_rbx", "reg_r12", "reg_r13", "reg_r14",
         "reg_r15", "reg_mxcsr", "reg_fpucw",
         "off_stack_base", "off_stack_size", "guard_size", "off_entry", "off_opaque",
         "off_create_site", "off_tid", "off_caller", "off_switch_count", "off_generation",
         "off_wait_reason", "off_wait_object", "off_wait_since", "off_stack_used_max",
         "shard_size", "shard_off_next", "shard_off_tid", "shard_off_current",
         "shard_off_created", "shard_off_terminated")
_BODY = struct.Struct("<" + "Q" * len(_ADDRS) + "I" * len(_OFFS))
MIN_SIZE = _HEAD.size + _BODY.size  # the fields this reader needs
# Added at the end later (wait reasons): reserved0, then these, then clock_ns (8-aligned).
# A smaller descriptor lacks them: they read as ABSENT / 0.
_TAIL_NAMES = ("off_wait_kind", "off_wait_fd", "off_wait_events", "off_wait_deadline",
               "mutex_off_holder_id", "rwlock_off_writer_id")
_TAIL = struct.Struct("<I6I4xQ")
# Added after clock_ns: the creation time's offset in a record, then reserved1.
_TAIL2_NAMES = ("off_created_ns",)
_TAIL2 = struct.Struct("<I4x")

WAIT_KINDS = {1: "fd", 2: "sleep", 3: "queue", 4: "mutex", 5: "rwlock-read",
              6: "rwlock-write"}

REGS = ("rsp", "rip", "rbp", "rbx", "r12", "r13", "r14", "r15")

# Sanity bounds for untrusted values.
MAX_RECORD_SIZE = 1 << 16
MAX_RECORDS = 1 << 24
MAX_SHARDS = 1 << 20
USER_SPACE_END = 1 << 47
CHUNK_BYTES = 1 << 16  # bulk reads of neighbouring records (records come in slabs)
SLACK = 4096  # entries tolerated beyond the descriptor's count; cycles are caught anyway


class RegistryError(gdb.GdbError):
    """The registry cannot be used: missing, wrong version or corrupted (one line)."""


def _u64(buf, off):
    return struct.unpack_from("<Q", buf, off)[0]


def _u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def _i32(buf, off):
    return struct.unpack_from("<i", buf, off)[0]


def _printable(raw):
    """A name from the target as safe text: bad UTF-8, control characters, quotes and
    backslashes shown as \\xNN."""
    out = []
    for c in raw.decode("utf-8", "surrogateescape"):
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02x" % (o - 0xDC00))
        elif c.isprintable() and c not in "\"\\":
            out.append(c)
        else:
            out.append("\\x%02x" % o if o < 0x100 else "\\u%04x" % o)
    return "".join(out)


def _plausible_pointer(addr):
    return 0 < addr < USER_SPACE_END and addr % 8 == 0


class Coroutine(object):
    """One live coroutine record, decoded."""

    __slots__ = ("addr", "id", "state", "seq", "name", "regs", "stack_base", "stack_size",
                 "entry", "opaque", "create_site", "tid", "caller", "switch_count", "error",
                 "wait")

    @property
    def state_name(self):
        if self.torn and self.state in STATE_NAMES and self.state != STATE_CREATED:
            return "running"  # still on its thread, inside the switch
        return STATE_NAMES.get(self.state, "state-%d" % self.state)

    @property
    def torn(self):
        """True when the runtime was saving this record's registers when the target stopped:
        the coroutine is still on its thread's stack, so read it from the thread."""
        return self.seq % 2 == 1

    @property
    def on_cpu(self):
        """Running on a thread: its frames are that thread's, not its saved registers."""
        return self.state == STATE_RUNNING or (self.torn and self.state != STATE_CREATED)


class Registry(object):
    """The descriptor of one inferior and the coroutines it lists."""

    def __init__(self, inferior, addr, where):
        self.inferior = inferior
        self.addr = addr
        self.where = where  # how it was found, for messages
        head = self._read(addr, _HEAD.size, "the descriptor")
        magic, version, size, ptr_size, arch = _HEAD.unpack(head)
        if magic != MAGIC:
            raise RegistryError(
                "coroscope: the registry descriptor at 0x%x (%s) has bad magic %s: "
                "memory is corrupted or this is not a coroscope program"
                % (addr, where, repr(magic.decode("latin-1"))))
        if version != VERSION:
            raise RegistryError(
                "coroscope: registry descriptor version %d at 0x%x; this gdb extension reads "
                "version %d: use the extension that came with the program's coroscope"
                % (version, addr, VERSION))
        if size < MIN_SIZE or size > 4096 or ptr_size != 8 or arch != 62:
            raise RegistryError(
                "coroscope: registry descriptor at 0x%x is corrupted (size %d, pointer size %d, "
                "arch %d)" % (addr, size, ptr_size, arch))
        body = self._read(addr + _HEAD.size, _BODY.size, "the descriptor")
        vals = _BODY.unpack(body)
        for name, val in zip(_ADDRS + _OFFS, vals):
            setattr(self, name, val)
        for name in _TAIL_NAMES:
            setattr(self, name, ABSENT)
        self.clock_ns = 0
        if size >= MIN_SIZE + _TAIL.size:
            tail = _TAIL.unpack(self._read(addr + MIN_SIZE, _TAIL.size, "the descriptor"))
            for name, val in zip(_TAIL_NAMES, tail[1:7]):
                setattr(self, name, val)
            self.clock_ns = tail[7] if tail[7] != (1 << 64) - 1 else 0
        for name in _TAIL2_NAMES:
            setattr(self, name, ABSENT)
        if size >= MIN_SIZE + _TAIL.size + _TAIL2.size:
            tail2 = _TAIL2.unpack(self._read(addr + MIN_SIZE + _TAIL.size, _TAIL2.size,
                                             "the descriptor"))
            for name, val in zip(_TAIL2_NAMES, tail2):
                setattr(self, name, val)
        self._check_layout()

    def _read(self, addr, size, what):
        try:
            return bytes(self.inferior.read_memory(addr, size))
        except gdb.MemoryError:
            raise RegistryError("coroscope: cannot read %s at 0x%x (%d bytes): registry "
                                "corrupted or missing from this core" % (what, addr, size))

    def _corrupt(self, why):
        return RegistryError("coroscope: registry corrupted (descriptor at 0x%x): %s"
                             % (self.addr, why))

    def _check_layout(self):
        rs = self.record_size
        if rs < 64 or rs > MAX_RECORD_SIZE:
            raise self._corrupt("record size %d" % rs)
        fields = [("off_next", 8), ("off_id", 8), ("off_state", 4), ("off_seq", 4),
                  ("off_stack_base", 8), ("off_stack_size", 8), ("off_entry", 8),
                  ("off_opaque", 8), ("off_create_site", 8), ("off_tid", 4),
                  ("off_caller", 8), ("off_switch_count", 8)]
        for name, width in fields:
            off = getattr(self, name)
            if off == ABSENT or off + width > rs:
                raise self._corrupt("field %s at offset %d of a %d-byte record" % (name, off, rs))
        if self.off_name + self.name_size > rs or self.name_size > 4096:
            raise self._corrupt("name field %d+%d of a %d-byte record"
                                % (self.off_name, self.name_size, rs))
        for reg in REGS:
            off = getattr(self, "reg_" + reg)
            if self.off_regs + off + 8 > rs:
                raise self._corrupt("register %s at offset %d" % (reg, self.off_regs + off))
        ss = self.shard_size
        if ss < 16 or ss > MAX_RECORD_SIZE:
            raise self._corrupt("shard size %d" % ss)
        for name, width in (("shard_off_next", 8), ("shard_off_tid", 4),
                            ("shard_off_current", 8)):
            if getattr(self, name) + width > ss:
                raise self._corrupt("shard field %s" % name)

    # ---- code ranges

    def in_switch(self, pc):
        return self.switch_start <= pc < self.switch_end

    def in_trampoline(self, pc):
        return self.trampoline_start <= pc < self.trampoline_end

    # ---- list walks

    def _walk(self, head, count, size, off_next, what, max_items):
        """Yields (address, bytes) of each element of a push-only list, reading neighbouring
        elements in one go when they are contiguous (records come in slabs)."""
        # The runtime links new entries before it counts them: a target stopped in between
        # holds a few more than the count says (a slab of records per thread at most).
        bound = min(count + SLACK, max_items)
        seen = set()
        chunk_addr, chunk = 0, b""
        addr = head
        n = 0
        while addr:
            if not _plausible_pointer(addr):
                raise self._corrupt("%s list holds the bad pointer 0x%x after %d entries"
                                    % (what, addr, n))
            if addr in seen:
                raise self._corrupt("%s list loops back to 0x%x after %d entries"
                                    % (what, addr, n))
            if n >= bound:
                raise self._corrupt("%s list is longer than the %d entries the descriptor "
                                    "counts" % (what, bound))
            seen.add(addr)
            n += 1
            if not (chunk_addr <= addr and addr + size <= chunk_addr + len(chunk)):
                chunk_addr, chunk = addr, b""
                want = max(size, min(CHUNK_BYTES, size * max(1, bound - n + 1)))
                while not chunk:
                    try:
                        chunk = bytes(self.inferior.read_memory(addr, want))
                    except gdb.MemoryError:
                        if want == size:
                            raise self._corrupt("cannot read the %s at 0x%x (entry %d)"
                                                % (what, addr, n))
                        want = max(size, want // 4)
            rel = addr - chunk_addr
            buf = chunk[rel:rel + size]
            yield addr, buf
            addr = _u64(buf, off_next)

    def _opt(self, buf, off, width, signed=False):
        if off == ABSENT or off + width > self.record_size:
            return None
        if width == 8:
            return _u64(buf, off)
        return _i32(buf, off) if signed else _u32(buf, off)

    def _wait(self, buf):
        """What a suspended coroutine waits for (a dict), or None: the C readers' rules."""
        kind = WAIT_KINDS.get(self._opt(buf, self.off_wait_kind, 4))
        if kind is None:
            return None
        w = {"kind": kind, "object": self._opt(buf, self.off_wait_object, 8) or 0,
             "since": self._opt(buf, self.off_wait_since, 8) or 0,
             "fd": self._opt(buf, self.off_wait_fd, 4, signed=True),
             "events": self._opt(buf, self.off_wait_events, 4) or 0,
             "deadline": self._opt(buf, self.off_wait_deadline, 8) or 0, "holder": 0}
        off = {"mutex": self.mutex_off_holder_id, "rwlock-read": self.rwlock_off_writer_id,
               "rwlock-write": self.rwlock_off_writer_id}.get(kind, ABSENT)
        if off != ABSENT and off < 4096 and w["object"]:
            try:
                w["holder"] = _u64(bytes(self.inferior.read_memory(w["object"] + off, 8)), 0)
            except gdb.MemoryError:
                pass
        return w

    def now_ns(self):
        """'Now' for wait durations: this machine's CLOCK_MONOTONIC for a live process, the
        registry's last clock reading for a core (0: unknown)."""
        if _has_core():
            return self.clock_ns
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def shards_by_tid(self):
        """{tid: address of the coroutine record current on that thread (0: none)}."""
        out = {}
        for addr, buf in self._walk(self.shards, self.nshards, self.shard_size,
                                    self.shard_off_next, "thread shard", MAX_SHARDS):
            tid = _i32(buf, self.shard_off_tid)
            if tid > 0:
                out[tid] = _u64(buf, self.shard_off_current)
        return out

    def coroutines(self):
        """Every live coroutine (not FREE, not TERMINATED), ordered by id."""
        out = []
        for addr, buf in self._walk(self.records, self.nrecords, self.record_size,
                                    self.off_next, "coroutine record", MAX_RECORDS):
            state = _u32(buf, self.off_state)
            if state in (STATE_FREE, STATE_TERMINATED):
                continue
            co = Coroutine()
            co.addr = addr
            co.state = state
            co.error = None
            co.id = _u64(buf, self.off_id)
            co.seq = _u32(buf, self.off_seq)
            raw = buf[self.off_name:self.off_name + self.name_size]
            co.name = _printable(raw.split(b"\0", 1)[0])
            co.regs = dict((r, _u64(buf, self.off_regs + getattr(self, "reg_" + r)))
                           for r in REGS)
            co.stack_base = _u64(buf, self.off_stack_base)
            co.stack_size = _u64(buf, self.off_stack_size)
            co.entry = _u64(buf, self.off_entry)
            co.opaque = _u64(buf, self.off_opaque)
            co.create_site = _u64(buf, self.off_create_site)
            co.tid = _i32(buf, self.off_tid)
            co.caller = _u64(buf, self.off_caller)
            co.switch_count = _u64(buf, self.off_switch_count)
            co.wait = self._wait(buf) if state == STATE_SUSPENDED else None
            if state not in STATE_NAMES:
                co.error = "invalid state %d in record 0x%x" % (state, addr)
            elif not co.on_cpu and not (
                    co.stack_base <= co.regs["rsp"] <= co.stack_base + co.stack_size):
                co.error = ("saved stack pointer 0x%x outside its stack [0x%x, 0x%x)"
                            % (co.regs["rsp"], co.stack_base, co.stack_base + co.stack_size))
            out.append(co)
        out.sort(key=lambda c: c.id)
        return out


# ---- finding the descriptor

_INFO_FILES_RE = re.compile(
    r"^\s*0x([0-9a-fA-F]+) - 0x([0-9a-fA-F]+) is " + re.escape(SECTION) + r"(?: in (.*))?$")


def _by_symbol():
    try:
        val = gdb.parse_and_eval("(unsigned long)&'%s'" % SYMBOL)
    except gdb.error:
        return None
    return int(val)


def _by_section():
    try:
        text = gdb.execute("info files", to_string=True)
    except gdb.error:
        return None
    for line in text.splitlines():
        m = _INFO_FILES_RE.match(line)
        if m:
            return int(m.group(1), 16), (m.group(3) or "the executable").strip()
    return None


_cache = {}


def clear_cache(*_args):
    _cache.clear()


def current():
    """The registry of the selected inferior, or RegistryError with one clear line."""
    inf = gdb.selected_inferior()
    if inf is None or inf.pid == 0 and not _has_core():
        raise RegistryError("coroscope: no process or core file: run or attach to a program "
                            "linked with coroscope, or load a core file")
    addr = _cache.get(inf.num)
    where = "symbol " + SYMBOL
    if addr is None:
        addr = _by_symbol()
        if addr is None:
            found = _by_section()
            if found is None:
                raise RegistryError(
                    "coroscope: no coroscope runtime in this program (neither the symbol %s "
                    "nor a %s section is loaded): is it linked with libcoroscope, and is "
                    "the executable loaded?" % (SYMBOL, SECTION))
            addr, obj = found
            where = "section %s of %s" % (SECTION, obj)
        _cache[inf.num] = addr
    return Registry(inf, addr, where)


def _has_core():
    try:
        text = gdb.execute("info target", to_string=True)
    except gdb.error:
        return False
    return "core file" in text.lower()
