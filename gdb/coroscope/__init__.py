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
    from . import commands
    from . import frames
    frames.register()
    commands.register()
    _done = True
