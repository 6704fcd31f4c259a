"""coroscope's gdb extension: coro-info, coro-bt, coro-select and coro-apply.

Load it with `source .../coroscope-gdb.py` (or let gdb auto-load the hook installed next
to libcoroscope); see docs/gdb.md.  register() is idempotent: the hook may run once per
objfile that loads libcoroscope.
"""

__version__ = "0.1.0"

_done = False


def register():
    global _done
    if _done:
        return
    # Imported here, so that the gdb-free parts (abi.py) load under plain python3 too.
    # Only the commands are registered now: the unwinder, frame filter and event handlers
    # that show a coroutine's stack join gdb when a command first needs them, so a session
    # that never uses coroscope (the system-wide loader runs in every one) pays nothing.
    from . import commands
    commands.register()
    _done = True
