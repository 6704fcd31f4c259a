# coroscope's gdb extension. Load it with
#     (gdb) source /usr/local/share/coroscope/coroscope-gdb.py
# (or any prefix): it adds the `coroscope` package next to this file to Python's path and
# registers coro-info, coro-bt, coro-select and coro-apply. Sourcing it twice is harmless.
import os
import sys

import gdb


def _coroscope_load():
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import coroscope
    coroscope.register()


_coroscope_load()
