"""Reading the coroscope registry of the current inferior through the debug ABI.

Everything here reads target memory only (live process or core file): no inferior calls,
no register writes.  Layouts come from the target's own descriptor
(include/coroscope/debug-abi.h, struct coro_debug_abi, described in abi.py); the only
layout known in advance is the descriptor's own, which the ABI only ever extends at its end.
Every value read from the target is untrusted: sizes and offsets are checked, list walks
are bounded and detect cycles.

Speed (100,000 coroutines): records come in slabs, so a walk reads a run of neighbouring
records with one inferior.read_memory and decodes each record with one precompiled
struct.unpack_from; no gdb.Value is made per field.
"""

import operator
import re
import struct
import time

import gdb

from . import abi
from .abi import (ABSENT, REGS, STATE_CREATED, STATE_FREE, STATE_NESTED, STATE_RUNNING,
                  STATE_SUSPENDED, STATE_TERMINATED, SYMBOL, SECTION, WAIT_KINDS)

STATE_NAMES = {
    STATE_CREATED: "created",
    STATE_RUNNING: "running",
    STATE_SUSPENDED: "suspended",
    STATE_NESTED: "running",  # running, but inside a coroutine it entered
}

USER_SPACE_END = 1 << 47
RUN_RECORDS = 64  # records read in one piece when they are adjacent (a slab), as the CLI
SLACK = 4096  # entries tolerated beyond the descriptor's count; cycles are caught anyway

_Q = struct.Struct("<Q")
_I = struct.Struct("<I")
_i = struct.Struct("<i")


class RegistryError(gdb.GdbError):
    """The registry cannot be used: missing, wrong version or corrupted (one line)."""


_PLAIN = re.compile(rb'[^\x20-\x21\x23-\x5b\x5d-\x7e]')  # anything but printable ASCII, " and \


def _printable(raw):
    """A name from the target as safe text: bad UTF-8, control characters, quotes and
    backslashes shown as \\xNN."""
    if not _PLAIN.search(raw):
        return raw.decode("ascii")
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

    __slots__ = ("addr", "id", "state", "seq", "name", "regvals", "stack_base", "stack_size",
                 "entry", "opaque", "create_site", "tid", "caller", "switch_count", "error",
                 "wait")

    @property
    def regs(self):
        """{register name: saved value} of REGS."""
        return dict(zip(REGS, self.regvals))

    @property
    def rsp(self):
        return self.regvals[0]

    @property
    def rip(self):
        return self.regvals[1]

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


# Record fields decoded for every live coroutine: (attribute, descriptor offset field, format).
# Optional fields that the descriptor marks ABSENT read as 0.
_RECORD_DECODE = (
    ("id", "off_id", "Q"), ("seq", "off_seq", "I"), ("stack_base", "off_stack_base", "Q"),
    ("stack_size", "off_stack_size", "Q"), ("entry", "off_entry", "Q"),
    ("opaque", "off_opaque", "Q"), ("create_site", "off_create_site", "Q"),
    ("tid", "off_tid", "i"), ("caller", "off_caller", "Q"),
    ("switch_count", "off_switch_count", "Q"),
)
# What a suspended coroutine waits for, decoded in the same unpack: (key of Coroutine.wait,
# descriptor offset field, format, value when the descriptor marks it ABSENT), the C
# reader's defaults (inspect/registry-read.c).
_WAIT_DECODE = (
    ("kind", "off_wait_kind", "I", 0), ("object", "off_wait_object", "Q", 0),
    ("since", "off_wait_since", "Q", 0), ("fd", "off_wait_fd", "i", -1),
    ("events", "off_wait_events", "I", 0), ("deadline", "off_wait_deadline", "q", 0),
)


class _RecordDecoder(object):
    """Decodes one record with a single unpack_from: the fields, sorted by offset, with pad
    bytes between them.  Offsets come from the target; when fields overlap (a corrupted
    descriptor), each is unpacked on its own instead."""

    def __init__(self, reg):
        fields = []  # (offset, format, attribute)
        for attr, offname, fmt in _RECORD_DECODE:
            if reg.has(offname):
                fields.append((getattr(reg, offname), fmt, attr))
        for key, offname, fmt, _absent in _WAIT_DECODE:
            if reg.has(offname):
                fields.append((getattr(reg, offname), fmt, "wait." + key))
        fields.append((reg.off_name, "%ds" % reg.name_size, "name"))
        for i, r in enumerate(REGS):
            fields.append((reg.off_regs + getattr(reg, "reg_" + r), "Q", "reg%d" % i))
        fields.sort()
        self.attrs = [attr for _o, _f, attr in fields]
        self.absent = [attr for attr, _o, _f in _RECORD_DECODE if attr not in self.attrs]
        # (key, index in the decoded tuple or None, value when absent)
        self.wait = [(key, self.attrs.index("wait." + key) if "wait." + key in self.attrs
                      else None, absent) for key, _o, _f, absent in _WAIT_DECODE]
        self.waitkind = self.wait[0][1]
        # For Registry._wait: the absent ones' values, then the present ones in one go.
        self.wait_absent = dict((key, absent) for key, i, absent in self.wait if i is None)
        self.wait_keys = [key for key, i, _absent in self.wait if i is not None]
        idx = [i for _key, i, _absent in self.wait if i is not None]
        self.wait_get = (lambda vals: (vals[idx[0]],)) if len(idx) == 1 else \
            operator.itemgetter(*idx)
        fmt = "<"
        pos = 0
        overlap = False
        for off, f, _attr in fields:
            if off < pos:
                overlap = True
                break
            if off > pos:
                fmt += "%dx" % (off - pos)
            fmt += f
            pos = off + struct.calcsize("<" + f)
        self.single = None if overlap else struct.Struct(fmt)
        self.each = [(struct.Struct("<" + f), off) for off, f, _attr in fields]
        self.regidx = [self.attrs.index("reg%d" % i) for i in range(len(REGS))]
        self.nameidx = self.attrs.index("name")

    def decode(self, buf, rel):
        if self.single is not None:
            return self.single.unpack_from(buf, rel)
        return tuple(s.unpack_from(buf, rel + off)[0] for s, off in self.each)


class Registry(object):
    """The descriptor of one inferior and the coroutines it lists."""

    def __init__(self, inferior, addr, where):
        self.inferior = inferior
        self.addr = addr
        self.where = where  # how it was found, for messages
        head = self._read(addr, abi.HEAD.size, "the descriptor")
        magic, version, size, ptr_size, arch = abi.HEAD.unpack(head)
        if magic != abi.MAGIC:
            raise RegistryError(
                "coroscope: the registry descriptor at 0x%x (%s) has bad magic %s: "
                "memory is corrupted or this is not a coroscope program"
                % (addr, where, repr(magic.decode("latin-1"))))
        if version != abi.VERSION:
            raise RegistryError(
                "coroscope: registry descriptor version %d at 0x%x; this gdb extension reads "
                "version %d: use the extension that came with the program's coroscope"
                % (version, addr, abi.VERSION))
        if size < abi.MIN_SIZE or size > abi.MAX_SIZE:
            raise RegistryError(
                "coroscope: registry descriptor at 0x%x is corrupted (size %d, pointer size %d, "
                "arch %d)" % (addr, size, ptr_size, arch))
        # Newer writers append fields: read what both sides know.
        raw = self._read(addr, min(size, abi.KNOWN_SIZE), "the descriptor")
        d = abi.decode(raw)
        bad = abi.check(d)
        if bad:
            raise self._corrupt("impossible %s" % bad)
        self.fields = d
        for name, val in d.items():
            setattr(self, name.replace("regs.", "reg_"), val)
        # A writer without the clock, or one that never read it (all-ones): unknown, 0.
        if self.clock_ns is None or self.clock_ns >= 1 << 63:
            self.clock_ns = 0
        self._decoder = None

    def _read(self, addr, size, what):
        try:
            return bytes(self.inferior.read_memory(addr, size))
        except gdb.MemoryError:
            raise RegistryError("coroscope: cannot read %s at 0x%x (%d bytes): registry "
                                "corrupted or missing from this core" % (what, addr, size))

    def _corrupt(self, why):
        return RegistryError("coroscope: registry corrupted (descriptor at 0x%x): %s"
                             % (self.addr, why))

    def has(self, offname):
        off = getattr(self, offname, None)
        return off is not None and off != ABSENT

    # ---- code ranges

    def in_switch(self, pc):
        return self.switch_start <= pc < self.switch_end

    def in_trampoline(self, pc):
        return self.trampoline_start <= pc < self.trampoline_end

    # ---- list walks

    def _walk(self, head, count, size, off_next, what, max_items):
        """Yields (address, chunk, offset of the entry in chunk) for each element of a
        push-only list, reading neighbouring elements in one go when they are contiguous
        (records come in slabs)."""
        # The runtime links new entries before it counts them: a target stopped in between
        # holds a few more than the count says (a slab of records per thread at most).
        bound = min(count + SLACK, max_items)
        seen = set()
        chunk_addr, chunk, chunk_end = 0, b"", 0
        addr = head
        n = 0
        unpack_next = _Q.unpack_from
        read = self.inferior.read_memory
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
            if not (chunk_addr <= addr and addr + size <= chunk_end):
                want = size * max(1, min(RUN_RECORDS, bound - n + 1))
                chunk = None
                while chunk is None:
                    try:
                        chunk = bytes(read(addr, want))
                    except gdb.MemoryError:
                        if want == size:
                            raise self._corrupt("cannot read the %s at 0x%x (entry %d)"
                                                % (what, addr, n))
                        want = max(size, want // 4 // size * size)
                chunk_addr, chunk_end = addr, addr + len(chunk)
            rel = addr - chunk_addr
            yield addr, chunk, rel
            addr = unpack_next(chunk, rel + off_next)[0]

    def shards_by_tid(self):
        """{tid: address of the coroutine record current on that thread (0: none)}."""
        out = {}
        if not self.has("shard_off_tid") or not self.has("shard_off_current"):
            return out
        for _addr, buf, rel in self._walk(self.shards, self.nshards, self.shard_size,
                                          self.shard_off_next, "thread shard",
                                          abi.MAX_SHARDS):
            tid = _i.unpack_from(buf, rel + self.shard_off_tid)[0]
            if tid > 0:
                out[tid] = _Q.unpack_from(buf, rel + self.shard_off_current)[0]
        return out

    def _wait(self, dec, vals, holders):
        """What a suspended coroutine waits for, as a dict (kind, object, since, fd, events,
        deadline, holder): the C readers' rules (inspect/registry-read.c, collect.c)."""
        w = dict(dec.wait_absent)
        w.update(zip(dec.wait_keys, dec.wait_get(vals)))
        w["kind"] = WAIT_KINDS[w["kind"]]
        w["holder"] = 0
        offname = {"mutex": "mutex_off_holder_id", "rwlock-read": "rwlock_off_writer_id",
                   "rwlock-write": "rwlock_off_writer_id"}.get(w["kind"])
        if offname is not None and self.has(offname) and w["object"]:
            off = getattr(self, offname)
            key = (offname, w["object"])
            holder = holders.get(key)
            if holder is None and off < abi.MAX_LOCK_OFFSET:
                try:
                    holder = _Q.unpack(self.inferior.read_memory(w["object"] + off, 8))[0]
                except gdb.MemoryError:
                    holder = 0
                holders[key] = holder
            w["holder"] = holder or 0
        return w

    def now_ns(self):
        """'Now' for wait durations: this machine's CLOCK_MONOTONIC for a live process, the
        registry's last clock reading for a core (0: unknown)."""
        if _has_core():
            return self.clock_ns
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def coroutines(self, ids=None):
        """Every live coroutine (not FREE, not TERMINATED), ordered by id; with ids (a set),
        only those (the rest of the list is walked but not decoded)."""
        if self._decoder is None:
            self._decoder = _RecordDecoder(self)
        dec = self._decoder
        absent, regidx, nameidx = dec.absent, dec.regidx, dec.nameidx
        plain = [(i, a) for i, a in enumerate(dec.attrs)
                 if a != "name" and not a.startswith(("reg", "wait."))]
        waitkind = dec.waitkind
        holders = {}  # (kind, lock address) -> its holder's id, read once per lock
        off_state, off_id = self.off_state, self.off_id
        unpack_state = _I.unpack_from
        unpack_id = _Q.unpack_from
        live = (STATE_FREE, STATE_TERMINATED)
        out = []
        for addr, buf, rel in self._walk(self.records, self.nrecords, self.record_size,
                                         self.off_next, "coroutine record", abi.MAX_RECORDS):
            state = unpack_state(buf, rel + off_state)[0]
            if state in live:
                continue
            if ids is not None and unpack_id(buf, rel + off_id)[0] not in ids:
                continue
            vals = dec.decode(buf, rel)
            co = Coroutine()
            for i, attr in plain:
                setattr(co, attr, vals[i])
            for attr in absent:
                setattr(co, attr, 0)
            co.addr = addr
            co.state = state
            co.error = None
            co.regvals = tuple(vals[i] for i in regidx)
            co.name = _printable(vals[nameidx].split(b"\0", 1)[0])
            co.wait = None
            if state == STATE_SUSPENDED and waitkind is not None and vals[waitkind] in WAIT_KINDS:
                co.wait = self._wait(dec, vals, holders)
            if state not in STATE_NAMES:
                co.error = "invalid state %d in record 0x%x" % (state, addr)
            elif not co.on_cpu and not (
                    co.stack_base <= co.regvals[0] <= co.stack_base + co.stack_size):
                co.error = ("saved stack pointer 0x%x outside its stack [0x%x, 0x%x)"
                            % (co.regvals[0], co.stack_base, co.stack_base + co.stack_size))
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


def register_events():
    """Forgets where descriptors are whenever the program's files change."""
    gdb.events.exited.connect(clear_cache)
    gdb.events.new_objfile.connect(clear_cache)
    gdb.events.clear_objfiles.connect(clear_cache)


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
