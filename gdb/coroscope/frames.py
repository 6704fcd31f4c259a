"""Showing a coroutine's stack through gdb's own frame machinery, reading memory only.

While a coroutine is "selected" for a thread, the Unwinder below claims that thread's
newest frame (#0; or the first frame below inline frames that gdb's inline unwinder owns)
and says that its caller has the coroutine's saved registers.  gdb then unwinds the
coroutine's stack from there on with its usual DWARF unwinders, so plain `bt`, `frame N`,
`up`, `down`, `info locals` and `print` work there, live and on cores.  gdb 13 cannot
replace frame #0 itself: it stays a placeholder (the thread's real pc), and the frame
filter hides it from `bt`.  No register of the inferior is ever written.
"""

import os

import gdb
import gdb.unwinder

from . import registry

UNWINDER_NAME = "coroscope"


class _FrameId(object):
    """gdb 13 has no gdb.unwinder.FrameId; any object with sp and pc attributes works
    (gdb 13 wants them as gdb.Value)."""

    def __init__(self, sp, pc):
        self.sp = gdb.Value(sp)
        self.pc = gdb.Value(pc)


def _frame_id(sp, pc):
    real = getattr(gdb.unwinder, "FrameId", None)  # gdb 14 and later
    return real(sp, pc) if real is not None else _FrameId(sp, pc)


class Selection(object):
    """A coroutine's saved registers shown as the caller of a thread's frame #0."""

    def __init__(self, co, thread):
        self.coro = co
        self.ptid = thread.ptid
        self.regs = dict(co.regs)
        # gdb's inline-frame unwinder runs before Python unwinders: when the thread's pc
        # is inside inlined code, frames #0..#k-1 are inline frames and the first frame
        # this unwinder can claim is #k.  Those frames are all placeholders.
        self.host_level = _host_inline_depth(thread)


_selected = None   # what the user chose with coro-select
_temporary = None  # what coro-info / coro-bt / coro-apply look at right now
_inline_depth = {}  # thread ptid -> inline frames on top of its real stack, while stopped


def _host_inline_depth(thread):
    """Inline frames on top of thread's real stack (selects thread meanwhile)."""
    global _selected, _temporary
    depth = _inline_depth.get(thread.ptid)
    if depth is not None:
        return depth
    saved = (_selected, _temporary)
    _selected = _temporary = None
    before = gdb.selected_thread()
    try:
        thread.switch()
        gdb.invalidate_cached_frames()
        depth = 0
        frame = gdb.newest_frame()
        while frame is not None and frame.type() == gdb.INLINE_FRAME and depth < 64:
            depth += 1
            frame = frame.older()
    finally:
        _selected, _temporary = saved
        if before is not None and before.is_valid():
            before.switch()
        gdb.invalidate_cached_frames()
    _inline_depth[thread.ptid] = depth
    return depth


def pick_host(inferior, tid):
    """The thread whose frame #0 will stand in for a suspended coroutine: one whose pc is
    not in inlined code, so that the coroutine's frames are numbered the same (from #1)
    whichever thread is selected; the thread it last ran on first."""
    current = gdb.selected_thread()
    candidates = [t for t in inferior.threads() if t.ptid[1] == tid]
    candidates.append(current)
    candidates.extend(sorted(inferior.threads(), key=lambda t: t.num))
    for thread in candidates:
        if thread is not None and thread.is_valid() and not thread.is_running() \
                and _host_inline_depth(thread) == 0:
            return thread
    return current


# A temporary view of a thread's own stack, hiding the user's selection meanwhile.
OWN_STACK = object()


def active():
    if _temporary is OWN_STACK:
        return None
    return _temporary if _temporary is not None else _selected


def selected():
    return _selected


def set_selected(sel):
    global _selected
    _selected = sel
    gdb.invalidate_cached_frames()


def set_temporary(sel):
    global _temporary
    _temporary = sel
    gdb.invalidate_cached_frames()


def _applies_here():
    sel = active()
    if sel is None:
        return None
    thread = gdb.selected_thread()
    if thread is None or thread.ptid != sel.ptid:
        return None
    return sel


class CoroutineUnwinder(gdb.unwinder.Unwinder):
    def __init__(self):
        super(CoroutineUnwinder, self).__init__(UNWINDER_NAME)
        self._types = None

    def __call__(self, pending_frame):
        try:
            return self._unwind(pending_frame)
        except (gdb.error, gdb.MemoryError):
            # Never break gdb's own unwinding: without us, gdb shows the thread's stack.
            return None

    def _unwind(self, pending_frame):
        sel = _applies_here()
        if sel is None or pending_frame.level() != sel.host_level:
            return None
        rip = pending_frame.read_register("rip")
        # The placeholder's frame id must be inner to (below) the coroutine's first frame,
        # or gdb stops with "previous frame inner to this frame".
        info = pending_frame.create_unwind_info(_frame_id(sel.regs["rsp"] - 16, int(rip)))
        if self._types is None:
            # Each register's own type (void *, code pointer, long): gdb checks sizes.
            self._types = dict((reg, pending_frame.read_register(reg).type)
                               for reg in registry.REGS)
        for reg in registry.REGS:
            info.add_saved_register(reg, gdb.Value(sel.regs[reg]).cast(self._types[reg]))
        return info


class PlaceholderFilter(object):
    """Hides frame #0 (the placeholder) from backtraces while a coroutine is shown."""

    def __init__(self):
        self.name = "coroscope-placeholder"
        self.priority = 100
        self.enabled = True

    def filter(self, frame_iter):
        sel = _applies_here()
        if sel is None:
            return frame_iter
        return (fd for fd in frame_iter if fd.inferior_frame().level() > sel.host_level)


def on_cont(event):
    """Continuing the inferior ends the selection: the saved registers go stale."""
    global _selected, _temporary
    if _selected is not None and isinstance(event, gdb.ContinueEvent):
        co = _selected.coro
        gdb.write("[coroscope: coroutine %d is no longer selected: the program runs the "
                  "thread's own code; coro-until %d runs until the coroutine does]\n"
                  % (co.id, co.id))
    _selected = None
    _temporary = None
    _inline_depth.clear()


_registered = False


def register():
    """Joins gdb's frame machinery (idempotent; the commands call it before they first show
    a coroutine's stack)."""
    global _registered
    if _registered:
        return
    gdb.unwinder.register_unwinder(None, CoroutineUnwinder(), replace=True)
    flt = PlaceholderFilter()
    gdb.frame_filters[flt.name] = flt
    gdb.events.cont.connect(on_cont)
    gdb.events.exited.connect(on_cont)
    gdb.events.new_objfile.connect(on_cont)
    gdb.events.clear_objfiles.connect(on_cont)
    _registered = True


_SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")


# ---- classifying frames

# The runtime's own functions that run on a coroutine's stack, for a build whose runtime is
# neither a shared library of its own nor has line info (other runtime functions there are
# coro__-prefixed, a prefix the runtime reserves for itself).  A user's coro_read is the
# user's.
RUNTIME_FUNCTIONS = frozenset(("coro_yield", "coro_enter"))


class Classifier(object):
    """Tells coroscope's own frames (switch, trampoline, the runtime's functions) from the
    user's, by code address, cached per address.

    The switch and the trampoline are the debug ABI's code ranges.  Beyond them: when the
    runtime is a shared library, every address inside it; when it is linked into the
    program, every function whose line info lies in the runtime's source directory (where
    the switch's own source file is), else the fixed names above.  Never by a name prefix
    that a user's function could share."""

    def __init__(self, reg):
        self.reg = reg
        progspace = gdb.current_progspace()
        self.runtime_solib = progspace.solib_name(reg.addr)
        self.runtime_dir = None
        if self.runtime_solib is None and reg.switch_start < reg.switch_end:
            self.runtime_dir = _source_dir(reg.switch_start)
        self._cache = {}
        self._system = {}

    def is_runtime_pc(self, pc, caller=True):
        """Whether the code at pc is coroscope's.  caller: pc is a return address (every
        frame but a thread's innermost), so the call instruction before it is what counts,
        as gdb does."""
        key = (pc, caller)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._classify(pc, pc - 1 if caller and pc > 0 else pc)
            self._cache[key] = hit
        return hit

    def _classify(self, pc, addr):
        if self.reg.in_switch(pc) or self.reg.in_trampoline(pc):
            return True
        if self.runtime_solib is not None:
            return gdb.current_progspace().solib_name(addr) == self.runtime_solib
        if self.runtime_dir is not None and _source_dir(addr) == self.runtime_dir:
            return True
        name = _function_name(addr)
        return name is not None and (name.startswith("coro__") or name in RUNTIME_FUNCTIONS)

    def is_runtime(self, frame):
        # An inline frame belongs to the function it was inlined into: same pc.
        return self.is_runtime_pc(frame.pc(), caller=frame.level() > 0)

    def in_system_library(self, pc):
        hit = self._system.get(pc)
        if hit is None:
            solib = gdb.current_progspace().solib_name(pc)
            hit = solib is not None and solib.startswith(_SYSTEM_DIRS)
            self._system[pc] = hit
        return hit


def _source_dir(addr):
    sal = gdb.find_pc_line(addr)
    if sal.symtab is None:
        return None
    try:
        return os.path.dirname(sal.symtab.fullname())
    except (gdb.error, RuntimeError):
        return None


def _function_name(addr):
    """The name of the (outermost, not inlined) function containing addr, or None."""
    try:
        block = gdb.block_for_pc(addr)
    except RuntimeError:
        block = None
    name = None
    while block is not None:
        if block.function is not None:
            name = block.function.name
        block = block.superblock
    if name is None:
        text = gdb.format_address(addr) if hasattr(gdb, "format_address") else ""
        start = text.find("<")
        if start >= 0:
            name = text[start + 1:text.rfind(">")].split("+")[0]
    return name


def describe_frame(frame):
    """(function, "file:line" or None) of a frame, as gdb's bt shows them."""
    name = frame.name()
    if name is None:
        name = "0x%x" % frame.pc()
    sal = frame.find_sal()
    if sal is not None and sal.symtab is not None and sal.line:
        return name, "%s:%d" % (sal.symtab.filename, sal.line)
    solib = gdb.current_progspace().solib_name(frame.pc())
    return name, ("from " + solib) if solib else None


def describe_pc(pc):
    """(function, "file:line" or None) of a code address (a never-entered entry function)."""
    name = None
    try:
        block = gdb.block_for_pc(pc)
    except RuntimeError:
        block = None
    while block is not None and block.function is None:
        block = block.superblock
    if block is not None:
        name = block.function.print_name
    else:
        text = gdb.format_address(pc) if hasattr(gdb, "format_address") else ""
        start = text.find("<")
        if start >= 0:
            name = text[start + 1:text.rfind(">")].split("+")[0]
    where = None
    if block is not None and block.function.symtab is not None and block.function.line:
        # The function's own line, rather than its first instruction's.
        where = "%s:%d" % (block.function.symtab.filename, block.function.line)
    else:
        sal = gdb.find_pc_line(pc)
        if sal.symtab is not None and sal.line:
            where = "%s:%d" % (sal.symtab.filename, sal.line)
    return name or ("0x%x" % pc), where


def innermost_user_frame(classifier, limit=64):
    """The newest frame of the selected thread that is the user's: not coroscope's own and not
    in a system library (a coroutine blocked in pause() is "at" the function that called it,
    as `coroscope ps` shows it). Falls back to the newest frame that is not coroscope's."""
    frame = gdb.newest_frame()
    sel = _applies_here()
    if sel is not None:
        while frame is not None and frame.level() <= sel.host_level:
            frame = frame.older()  # skip the placeholder
    n = 0
    fallback = None
    while frame is not None and n < limit:
        if not classifier.is_runtime(frame):
            if not classifier.in_system_library(frame.pc()):
                return frame
            if fallback is None:
                fallback = frame
        frame = frame.older()
        n += 1
    return fallback


def first_coroutine_frame():
    """The selected coroutine's first frame (the one its saved registers describe), or None
    when no coroutine is shown on the selected thread."""
    sel = _applies_here()
    if sel is None:
        return None
    frame = gdb.newest_frame()
    while frame is not None and frame.level() <= sel.host_level:
        frame = frame.older()
    return frame


def find_thread(inferior, tid):
    for thread in inferior.threads():
        if thread.ptid[1] == tid or (thread.ptid[1] == 0 and thread.ptid[0] == tid):
            return thread
    return None


class SavedView(object):
    """Restores the user's thread, selection and frame after looking at other stacks."""

    def __enter__(self):
        self.thread = gdb.selected_thread()
        self.level = None
        try:
            frame = gdb.selected_frame()
            self.level = frame.level()
        except gdb.error:
            pass
        return self

    def __exit__(self, *exc):
        global _temporary
        _temporary = None
        if self.thread is not None and self.thread.is_valid():
            self.thread.switch()
        gdb.invalidate_cached_frames()
        if self.level is not None:
            select_level(self.level)
        return False


def select_level(level):
    try:
        frame = gdb.newest_frame()
        while frame is not None and frame.level() < level:
            frame = frame.older()
        if frame is not None:
            frame.select()
    except gdb.error:
        pass
