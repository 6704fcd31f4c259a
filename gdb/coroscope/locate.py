"""Where a coroutine is: the innermost frame outside coroscope, as coro-info shows it.

gdb's own frames answer that exactly (frames.innermost_user_frame) but cost a fraction of a
millisecond per coroutine: 100,000 coroutines would take half a minute.  Parked coroutines
mostly sit in the same few places, so the Locator learns from gdb's frames and then walks
most coroutines itself:

- per runtime code address (a return address inside coroscope): how far up the stack its
  caller's frame is, and that the return address sits just below it, as gdb unwound it the
  first time (coroscope's functions have fixed-size frames);
- per user code address: the function and file:line gdb showed for it.

A coroutine whose walk meets an address it has not learnt, or whose first user frame is in a
system library (then the answer depends on the frames further up), or whose stack cannot be
read, is located by gdb's frames, and teaches the Locator for the next ones.  So the answer
is always gdb's own, and the cost is one 8-byte read per coroscope frame of each coroutine.
"""

import struct

import gdb

from . import frames
from .abi import STATE_CREATED

MAX_RUNTIME_FRAMES = 16
WINDOW_BYTES = 512  # read at a coroutine's saved stack pointer, for its coroscope frames
NO_USER_FRAME = ("??", "no frame outside coroscope")
BOTTOM = "bottom"
_Q = struct.Struct("<Q")

# How the last Locator found its coroutines: tests/e2e-gdb.sh checks that coroutines parked
# in the same place, waits included, are walked and not asked of gdb's frames one by one.
stats = {"asked_gdb": 0, "walked": 0}


class Locator(object):

    def __init__(self, reg, classifier, show):
        """show(co) makes gdb's selected thread show co's stack (commands._show)."""
        self.reg = reg
        self.classifier = classifier
        self.show = show
        self.first_sp = {}  # saved rip -> sp of the coroutine's first frame minus saved rsp
        self.step = {}      # runtime return address -> caller's sp minus this frame's sp
        self.where = {}     # user return address -> (function, location)
        self.entries = {}   # entry function address -> (function, location)
        self.bottom = {}    # runtime address that ends a stack (the trampoline) -> its key
        stats["asked_gdb"] = stats["walked"] = 0

    def locate(self, co):
        """(function, location or None) of co's innermost frame outside coroscope."""
        if co.state == STATE_CREATED:
            hit = self.entries.get(co.entry)
            if hit is None:
                hit = self.entries[co.entry] = frames.describe_pc(co.entry)
            return hit
        if not co.on_cpu:
            pc = self._walk(co)
            if pc is not None:
                hit = self.where.get(pc)
                if hit is not None:
                    stats["walked"] += 1
                    return hit
        stats["asked_gdb"] += 1
        return self._by_gdb(co)

    def _walk(self, co):
        """The first return address outside coroscope on co's stack, by the learnt steps, or
        None when a step is unknown or memory cannot be read."""
        pc = co.rip
        d = self.first_sp.get(pc)
        if d is None:
            return None
        sp = co.rsp + d
        read = self.reg.inferior.read_memory
        is_runtime = self.classifier.is_runtime_pc
        # The top of the stack in one read: a wait is several coroscope frames deep, and a
        # read per frame cost more than the rest of the walk.
        top, window = co.rsp, b""
        for _ in range(MAX_RUNTIME_FRAMES):
            if not is_runtime(pc):
                return pc
            if pc in self.bottom:
                return self.bottom[pc]
            step = self.step.get(pc)
            if step is None:
                return None
            sp += step
            try:
                if not window:
                    end = min(co.stack_base + co.stack_size, top + WINDOW_BYTES)
                    window = bytes(read(top, end - top)) if end - top >= 8 else b"-"
                off = sp - 8 - top
                if 0 <= off <= len(window) - 8:
                    pc = _Q.unpack_from(window, off)[0]
                else:
                    pc = _Q.unpack(read(sp - 8, 8))[0]
            except gdb.MemoryError:
                return None
        return None

    def _by_gdb(self, co):
        self.show(co)
        frame = frames.innermost_user_frame(self.classifier)
        if frame is None:
            if not co.on_cpu:
                self._learn(co, None, NO_USER_FRAME)
            return NO_USER_FRAME
        if frame.pc() == 0 and not co.on_cpu:
            # Seen with gcore cores: a stack that gdb could not copy is written as zeros.
            return "??", ("return address 0 on the stack: stack memory missing from this "
                          "core? (see docs/gdb.md, gcore and guard pages)")
        hit = frames.describe_frame(frame)
        if not co.on_cpu:
            self._learn(co, frame, hit)
        return hit

    def _learn(self, co, user, hit):
        """Records the steps gdb took from co's saved registers to its user frame (None: to
        the bottom of a stack that has only coroscope's frames)."""
        first = frames.first_coroutine_frame()
        if first is None or first.pc() != co.rip:
            return
        try:
            sp = int(first.read_register("rsp"))
            steps = {}
            frame = first
            while user is None or frame.level() < user.level():
                if frame.level() > MAX_RUNTIME_FRAMES:
                    return
                older = frame.older()
                # A function that the runtime's code reached by a tail call (coro_mutex_lock
                # jumps to its wait) is a frame gdb makes up from call-site info: it has no
                # stack of its own, so the step goes on to the real caller. A user's
                # function that tail-called is gdb's to show: not learnt.
                while older is not None and older.type() == gdb.TAILCALL_FRAME:
                    if not self.classifier.is_runtime(older):
                        return
                    older = older.older()
                if older is None:
                    if user is not None:
                        return
                    break
                if frame.type() == gdb.INLINE_FRAME:
                    frame = older  # the function it is inlined into: the same real frame
                    continue
                # older is the caller: a real frame, or an inlined function within one
                # (which has its real frame's registers).
                older_sp = int(older.read_register("rsp"))
                if _Q.unpack(self.reg.inferior.read_memory(older_sp - 8, 8))[0] != older.pc():
                    return  # not a plain call frame: keep asking gdb
                steps[frame.pc()] = older_sp - sp
                frame, sp = older, older_sp
        except (gdb.error, gdb.MemoryError):
            return
        if user is None:
            if not self.classifier.is_runtime(frame):
                return
            key = self.bottom[frame.pc()] = (BOTTOM, frame.pc())
        else:
            if frame.level() != user.level():
                return
            key = user.pc()
            if self.classifier.in_system_library(key) or user.level() == 0:
                return
        self.first_sp[co.rip] = int(first.read_register("rsp")) - co.rsp
        self.step.update(steps)
        self.where[key] = hit
