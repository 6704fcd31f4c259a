"""The coro-* gdb commands."""

import gdb

from . import frames
from . import locate
from . import registry
from . import until


def _header(co):
    name = '"%s"' % co.name if co.name else "(unnamed)"
    return "coroutine %d %s [%s, thread %d]" % (co.id, name, co.state_name, co.tid)


def _parse_ids(words, what):
    """[] for "all" or nothing, else the ids; GdbError on anything else."""
    if not words or words == ["all"]:
        return []
    ids = []
    for w in words:
        try:
            val = int(w, 0)
        except ValueError:
            raise gdb.GdbError("%s: bad coroutine id %r (want numbers as coro-info shows "
                               "them, or \"all\")" % (what, w))
        if val <= 0:
            raise gdb.GdbError("%s: bad coroutine id %r" % (what, w))
        ids.append(val)
    return ids


def _pick(reg, ids, what):
    if not ids:
        return reg.coroutines()
    cos = reg.coroutines(ids=set(ids))
    by_id = dict((c.id, c) for c in cos)
    missing = [str(i) for i in ids if i not in by_id]
    if missing:
        raise gdb.GdbError("%s: no live coroutine with id %s (coro-info lists them)"
                           % (what, ", ".join(missing)))
    return [by_id[i] for i in ids]


def _require_stopped():
    thread = gdb.selected_thread()
    if thread is None:
        raise gdb.GdbError("coroscope: no thread selected: run or attach to the program, or "
                           "load a core file")
    if thread.is_running():
        raise gdb.GdbError("coroscope: the selected thread is running: interrupt it first")
    return thread


def _show(co, reg, temporary):
    """Makes gdb show co's stack on the selected thread (or on co's own thread when it is on
    a CPU). Returns the thread whose frames are now the coroutine's."""
    frames.register()
    if co.error:
        raise gdb.GdbError("coroscope: cannot show coroutine %d: %s" % (co.id, co.error))
    if co.on_cpu:
        thread = frames.find_thread(reg.inferior, co.tid)
        if thread is None:
            raise gdb.GdbError("coroscope: cannot show coroutine %d: it runs on thread %d, "
                               "which gdb does not know" % (co.id, co.tid))
        thread.switch()
        if temporary:
            frames.set_temporary(frames.OWN_STACK)
        else:
            frames.set_selected(None)
        return thread
    thread = frames.pick_host(reg.inferior, co.tid)
    thread.switch()
    sel = frames.Selection(co, thread)
    if temporary:
        frames.set_temporary(sel)
    else:
        frames.set_selected(sel)
    return thread


def _select_user_frame(classifier):
    frame = frames.innermost_user_frame(classifier)
    if frame is None:
        frame = gdb.newest_frame()
        sel = frames.active()
        while sel is not None and frame.older() is not None and \
                frame.level() <= sel.host_level:
            frame = frame.older()
    frame.select()
    return frame


def _duration(ns):
    """3.2 s, 12 ms, 850 us: as the C formatter prints it."""
    ns = max(ns, 0)
    if ns >= 1000000000:
        return "%d.%d s" % (ns // 1000000000, ns // 100000000 % 10)
    if ns >= 1000000:
        return "%d ms" % (ns // 1000000)
    return "%d us" % (ns // 1000)


def _wait_text(w, now):
    """'fd 9 readable, 3.2 s' / 'mutex 0x... held by coroutine 5, 12 ms', or None."""
    if not w:
        return None
    if w["kind"] == "fd":
        ev = w["events"]
        what = "fd %d %s" % (w["fd"], "readable|writable" if ev & 1 and ev & 4 else
                             "readable" if ev & 3 else "writable" if ev & 4 else
                             "events 0x%x" % ev)
    elif w["kind"] == "sleep":
        what = "sleep"
    else:
        what = "%s 0x%x" % (w["kind"], w["object"])
        if w["holder"]:
            what += " %s by coroutine %d" % (
                "held" if w["kind"] == "mutex" else "write-held", w["holder"])
    if now and w["since"]:
        what += ", " + _duration(now - w["since"])
    if now and w["deadline"]:
        left = w["deadline"] - now
        what += (", deadline in " + _duration(left) if left > 0 else
                 ", deadline passed " + _duration(-left) + " ago")
    return what


def _deadlocks(cos):
    """Wait-for cycles through mutex / write-lock holders, each once from its lowest id (the
    C readers' rule: inspect/deadlock.c)."""
    nxt = dict((c.id, c.wait["holder"]) for c in cos
               if c.wait and c.wait["holder"] and c.wait["kind"] in
               ("mutex", "rwlock-read", "rwlock-write"))
    seen, out = set(), []
    for start in sorted(nxt):
        path, i = [], start
        while i in nxt and i not in seen and i not in path:
            path.append(i)
            i = nxt[i]
        if i in path:
            cyc = path[path.index(i):]
            k = cyc.index(min(cyc))
            out.append(cyc[k:] + cyc[:k])
        seen.update(path)
    return out


class CoroInfo(gdb.Command):
    """List every coroutine of the program, like "info threads".

Usage: coro-info

One line per live coroutine, ordered by id:
  [*] ID STATE "NAME" thread TID [WAIT] at FUNCTION (FILE:LINE)
STATE is created (never entered), running (on a thread now, or waiting for a coroutine it
entered), suspended, or waiting (suspended in a coroscope wait: WAIT says for what, for how
long and who holds the lock; a "deadlock:" line ends the list for each cycle of lock waits).
TID is the kernel thread it runs or last ran on. FUNCTION is the innermost frame that is
the user's, on the coroutine's stack or, for a running one, on its thread's: coroscope's own
frames (coro_yield, the context switch) and system libraries' (a blocking read) are skipped;
for a coroutine that was never entered, its entry function.
"*" marks the coroutine selected with coro-select, or else the one running on the selected
thread.
Reads memory only: works on live processes and core files.

Example:
  (gdb) coro-info
  * 1 running   "acceptor" thread 4242 at accept_loop (server.c:88)
    2 suspended "conn-7"   thread 4242 at read_request (server.c:140)
    3 waiting   "conn-8"   thread 4242 [fd 9 readable, 3.2 s] at read_request (server.c:140)"""

    def __init__(self):
        super(CoroInfo, self).__init__("coro-info", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        if gdb.string_to_argv(arg):
            raise gdb.GdbError("coro-info takes no arguments (coro-bt ID shows one coroutine)")
        reg = registry.current()
        thread = _require_stopped()
        cos = reg.coroutines()
        if not cos:
            gdb.write("No coroutines.\n")
            return
        sel = frames.selected()
        if sel is not None and sel.ptid == thread.ptid:
            star_id = sel.coro.id
        else:
            star_id = None
            current = reg.shards_by_tid().get(thread.ptid[1] or thread.ptid[0])
            for co in cos:
                if co.addr == current:
                    star_id = co.id
        locator = locate.Locator(reg, frames.Classifier(reg),
                                 lambda co: _show(co, reg, temporary=True))
        now = reg.now_ns()
        idw = max(len(str(c.id)) for c in cos)
        namew = min(34, max(len(c.name) + 2 for c in cos))
        lines = []
        with frames.SavedView():
            for co in cos:
                if co.error:
                    where = "?? (%s)" % co.error
                else:
                    try:
                        func, loc = locator.locate(co)
                        where = "%s (%s)" % (func, loc) if loc else func
                    except (gdb.MemoryError, gdb.error, gdb.GdbError) as e:
                        where = "?? (cannot unwind: %s)" % e
                wait = _wait_text(co.wait, now)
                lines.append("%s %-*d %-9s %-*s thread %d%s at %s\n" % (
                    "*" if co.id == star_id else " ", idw, co.id,
                    "waiting" if wait else co.state_name,
                    namew, '"%s"' % co.name, co.tid, " [%s]" % wait if wait else "", where))
        for cycle in _deadlocks(cos):
            by_id = dict((c.id, c) for c in cos)
            parts = []
            for k, cid in enumerate(cycle):
                co, nxt = by_id[cid], by_id[cycle[(k + 1) % len(cycle)]]
                held = '%d "%s"' % (nxt.id, nxt.name) if k + 1 < len(cycle) else "%d" % nxt.id
                parts.append("%s 0x%x held by %s" % (co.wait["kind"], co.wait["object"], held))
            first = by_id[cycle[0]]
            lines.append('deadlock: coroutine %d "%s" waits for %s\n'
                         % (first.id, first.name, ", which waits for ".join(parts)))
        gdb.write("".join(lines))


class CoroBt(gdb.Command):
    """Print the backtrace of coroutines, as "bt" does for threads.

Usage: coro-bt [ID... | all] [-full]

With no ID, or "all", every coroutine; -full also prints each frame's locals.
A suspended coroutine's frames are numbered from #1, as after "coro-select ID" (frame #0
is the thread's own placeholder, see "help coro-select"); a running coroutine is shown
from its thread's stack, from #0. Coroutines whose stack cannot be read are reported
and skipped.

Example:
  (gdb) coro-bt 2
  coroutine 2 "conn-7" [suspended, thread 4242]:
  #1  0x00007ffff7fb3a1c in do_switch (...) at runtime/coro.c:187
  #2  coro_yield () at runtime/coro.c:470
  #3  0x0000555555555289 in read_request (conn=0x5555555592a0) at server.c:140"""

    def __init__(self):
        super(CoroBt, self).__init__("coro-bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        words = gdb.string_to_argv(arg)
        full = "-full" in words
        words = [w for w in words if w != "-full"]
        ids = _parse_ids(words, "coro-bt")
        reg = registry.current()
        _require_stopped()
        cos = _pick(reg, ids, "coro-bt")
        if not cos:
            gdb.write("No coroutines.\n")
            return
        out = []
        with frames.SavedView():
            for i, co in enumerate(cos):
                if i:
                    out.append("\n")
                out.append(_header(co) + ":\n")
                if co.state == registry.STATE_CREATED:
                    name, loc = frames.describe_pc(co.entry)
                    out.append("not started; will run %s%s\n" % (name, " (%s)" % loc if loc
                                                                  else ""))
                try:
                    _show(co, reg, temporary=True)
                    out.append(gdb.execute("bt -full" if full else "bt", to_string=True))
                except gdb.GdbError as e:
                    out.append("%s\n" % e)
                except (gdb.MemoryError, gdb.error) as e:
                    out.append("coroscope: cannot show coroutine %d: %s\n" % (co.id, e))
        gdb.write("".join(out))


class CoroSelect(gdb.Command):
    """Show a coroutine's stack as the selected thread's, until the program continues.

Usage: coro-select ID
       coro-select          (back to the thread's own stack)

After "coro-select ID", plain bt, frame N, up, down, info frame, info locals and print
work on that coroutine's stack; the innermost frame outside coroscope is selected. The
coroutine's frames start at #1: gdb 13 cannot replace frame #0, so #0 stays a placeholder
(the thread's real frame) that a frame filter hides from bt ("bt -no-filters" shows it).
Only memory is read and no register is written, so this works on core files too.
Selecting a coroutine that is running selects the thread it runs on instead; when the
coroutine is shown on another thread than the selected one, the switch is said.
Continuing or stepping the program drops the selection, with one line saying so: next and
step run the thread's own code. To run until the coroutine itself runs: coro-until ID.

Example:
  (gdb) coro-select 2
  [Switching to coroutine 2 "conn-7" [suspended, thread 4242]]
  #3  0x0000555555555289 in read_request (conn=0x5555555592a0) at server.c:140
  140         n = coro_read(conn->fd, buf, sizeof(buf));
  (gdb) print conn->fd"""

    def __init__(self):
        super(CoroSelect, self).__init__("coro-select", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        words = gdb.string_to_argv(arg)
        thread = before = _require_stopped()
        if not words:
            had = frames.selected()
            frames.set_selected(None)
            gdb.newest_frame().select()
            msg = "[Back to the own stack of thread %d (LWP %d)]\n" % (thread.num,
                                                                        thread.ptid[1])
            if had is None:
                msg = "[No coroutine was selected; thread %d (LWP %d)]\n" % (thread.num,
                                                                            thread.ptid[1])
            gdb.write(msg + gdb.execute("frame", to_string=True))
            return
        if len(words) != 1:
            raise gdb.GdbError("usage: coro-select ID (one id; coro-info lists them)")
        ids = _parse_ids(words, "coro-select")
        if not ids:
            raise gdb.GdbError("usage: coro-select ID (one id, not \"all\")")
        reg = registry.current()
        co = _pick(reg, ids, "coro-select")[0]
        classifier = frames.Classifier(reg)
        try:
            thread = _show(co, reg, temporary=False)
            _select_user_frame(classifier)
        except gdb.GdbError:
            frames.set_selected(None)
            raise
        except (gdb.MemoryError, gdb.error) as e:
            frames.set_selected(None)
            raise gdb.GdbError("coroscope: cannot show coroutine %d: %s" % (co.id, e))
        if co.on_cpu:
            msg = "[Switching to thread %d (LWP %d), where %s is running]\n" % (
                thread.num, thread.ptid[1], _header(co))
        else:
            msg = "[Switching to %s]\n" % _header(co)
            if thread.ptid != before.ptid:
                # As gdb's own "thread N" says it.
                msg = "[Switching to thread %d (LWP %d)]\n" % (thread.num, thread.ptid[1]) + msg
        gdb.write(msg + gdb.execute("frame", to_string=True))


class CoroApply(gdb.Command):
    """Run a gdb command in each of some coroutines, as "thread apply" does for threads.

Usage: coro-apply all -- COMMAND
       coro-apply ID... -- COMMAND

For each coroutine, COMMAND runs as if "coro-select ID" had been given (innermost frame
outside coroscope selected); afterwards the previous thread, frame and selection are back.
An error in one coroutine is printed and the others still run.

Example:
  (gdb) coro-apply all -- info locals
  (gdb) coro-apply 2 5 -- print conn->fd"""

    def __init__(self):
        super(CoroApply, self).__init__("coro-apply", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        words = gdb.string_to_argv(arg)
        if "--" not in words:
            raise gdb.GdbError("usage: coro-apply (all | ID...) -- COMMAND")
        left = words[:words.index("--")]
        command = arg[arg.index("--") + 2:].strip()
        if not left or not command:
            raise gdb.GdbError("usage: coro-apply (all | ID...) -- COMMAND")
        ids = _parse_ids(left, "coro-apply")
        reg = registry.current()
        _require_stopped()
        cos = _pick(reg, ids, "coro-apply")
        classifier = frames.Classifier(reg)
        with frames.SavedView():
            for co in cos:
                gdb.write("\n%s:\n" % _header(co))
                try:
                    _show(co, reg, temporary=True)
                    _select_user_frame(classifier)
                except gdb.GdbError as e:
                    gdb.write("%s\n" % e)
                    continue
                except (gdb.MemoryError, gdb.error) as e:
                    gdb.write("coroscope: cannot show coroutine %d: %s\n" % (co.id, e))
                    continue
                try:
                    gdb.write(gdb.execute(command, from_tty=False, to_string=True))
                except (gdb.MemoryError, gdb.error, gdb.GdbError) as e:
                    # As gdb prints a command's error, then on to the next coroutine.
                    gdb.write("%s\n" % e)


class CoroUntil(gdb.Command):
    """Continue the program until a coroutine runs again, and stop there.

Usage: coro-until ID

The program continues (every thread, every other coroutine) until coroutine ID is resumed,
on whichever thread resumes it, then stops in its innermost frame outside coroscope: just
after the call that suspended it (coro_yield or a wait), or at the start of its entry
function if it was never entered. This is what "next" means for a suspended coroutine:
after coro-select, next and step run the thread's own code. Another breakpoint, Ctrl-C or
the program's end stop the wait; nothing is left behind. Live processes only.

Example:
  (gdb) coro-until 2
  [coroutine 2 "conn-7" runs again on thread 1 (LWP 4242)]
  #0  read_request (conn=0x5555555592a0) at server.c:141
  141         if (n < 0) {"""

    def __init__(self):
        super(CoroUntil, self).__init__("coro-until", gdb.COMMAND_RUNNING)

    def invoke(self, arg, from_tty):
        words = gdb.string_to_argv(arg)
        if len(words) != 1 or words == ["all"]:
            raise gdb.GdbError("usage: coro-until ID (one id; coro-info lists them)")
        ids = _parse_ids(words, "coro-until")
        reg = registry.current()
        _require_stopped()
        if reg.inferior.pid == 0:
            raise gdb.GdbError("coro-until: no live process (a core file cannot run)")
        co = _pick(reg, ids, "coro-until")[0]
        until.check_resumable(co)
        with frames.SavedView():
            pc = until.resume_pc(co, reg, lambda c: _show(c, reg, temporary=True))
        frames.set_selected(None)  # the program runs: no notice, this is what was asked
        until.run_until(co, pc)


def register():
    registry.register_events()
    CoroInfo()
    CoroBt()
    CoroSelect()
    CoroApply()
    CoroUntil()
