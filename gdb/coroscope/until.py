"""coro-until ID: run the program until a suspended coroutine runs again.

A suspended coroutine resumes by returning from coroscope's switch into its innermost
frame outside coroscope, at the return address of the call that suspended it (a never
entered one starts at its entry function).  coro-until puts an internal breakpoint there
that stops only on that coroutine's own stack (the stack pointer inside the coroutine's
stack, whichever thread runs it: so migration to another thread is followed, and the
other coroutines parked at the same place run on), and continues.  Reads memory and
registers only.  Whatever ends the wait (the coroutine, another breakpoint, Ctrl-C, the
program's exit), the breakpoint is deleted and one line says what happened.
"""

import gdb

from . import frames
from . import registry
from .abi import STATE_CREATED


class _ResumeBreakpoint(gdb.Breakpoint):
    """Stops where coroutine co resumes, only on co's stack."""

    def __init__(self, pc, co):
        super(_ResumeBreakpoint, self).__init__("*0x%x" % pc, internal=True)
        self.silent = True
        self.lo = co.stack_base
        self.hi = co.stack_base + co.stack_size
        self.hit_thread = None

    def stop(self):
        try:
            sp = int(gdb.selected_frame().read_register("rsp"))
        except (gdb.error, gdb.MemoryError):
            return False
        if self.lo <= sp < self.hi:
            self.hit_thread = gdb.selected_thread()
            return True
        return False


def resume_pc(co, reg, show):
    """Where co will run first: its entry function (never entered) or the return address
    in its innermost frame outside coroscope."""
    if co.state == STATE_CREATED:
        return co.entry
    show(co)
    frame = frames.innermost_user_frame(frames.Classifier(reg))
    if frame is None or frame.pc() == 0:
        raise gdb.GdbError("coro-until: coroutine %d has no frame outside coroscope to stop in"
                           % co.id)
    return frame.pc()


def run_until(co, pc):
    """Continues until co runs again (see the module's comment)."""
    name = 'coroutine %d%s' % (co.id, ' "%s"' % co.name if co.name else "")
    bp = _ResumeBreakpoint(pc, co)
    try:
        gdb.execute("continue", to_string=False)
    finally:
        hit_thread = bp.hit_thread
        if bp.is_valid():
            bp.delete()
    if hit_thread is None:
        if gdb.selected_inferior().pid == 0:
            gdb.write("coro-until: the program ended before %s ran again\n" % name)
        else:
            gdb.write("coro-until: stopped before %s ran again (coro-until %d to wait "
                      "on)\n" % (name, co.id))
        return
    lwp = hit_thread.ptid[1]
    moved = "" if lwp == co.tid else "; it last ran on LWP %d" % co.tid
    gdb.write("[%s runs again on thread %d (LWP %d)%s]\n" % (name, hit_thread.num, lwp, moved))
    gdb.execute("frame", to_string=False)


def check_resumable(co):
    if co.error:
        raise gdb.GdbError("coro-until: cannot follow coroutine %d: %s" % (co.id, co.error))
    if co.on_cpu:
        raise gdb.GdbError("coro-until: coroutine %d is running on thread %d now: step it "
                           "there (thread, next, finish)" % (co.id, co.tid))
    if co.state not in registry.STATE_NAMES:
        raise gdb.GdbError("coro-until: coroutine %d is in state %d" % (co.id, co.state))
