"""The process environment a command starts in, made safe before anything is imported.

Two things a command inherits from whoever started it broke it before it began:

- **A closed standard stream** (`distill run r.yaml >&-`, a daemon or cron job started without
  them): Python sets `sys.stdout` to None, and the command ended in a traceback from its last
  flush. Worse, the next file the process opened took the free descriptor 1, so whatever a C
  library printed (libgomp's warnings, a torch C++ message) went into that file: a checkpoint.
  A closed 0, 1 or 2 is opened on /dev/null, as a daemon does, before any file is.
- **An `OMP_NUM_THREADS` that is not a thread count** (`0`, `-1`, `abc`, `auto`): libgomp printed
  "Invalid value for environment variable OMP_NUM_THREADS" at torch's import and went on with
  every core, and distill's own thread budget (`host.thread_budget`) too, without saying what
  it did. It is dropped before torch is imported and the command says so in one line.

Torch-free, so it runs before torch's import (`cli.entry`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

#: A thread count as libgomp reads it: a whole number from 1, or a list of them for nested
#: levels (`4,2`).
_THREADS = re.compile(r"^\s*[1-9]\d*(\s*,\s*[1-9]\d*)*\s*$")


def open_closed_streams() -> None:
    """Descriptors 0, 1 and 2 opened on /dev/null where they are closed, and `sys.stdin`,
    `sys.stdout`, `sys.stderr` given a stream where Python left None."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
        if getattr(sys, name) is None:
            with contextlib.suppress(OSError):
                setattr(sys, name, open(fd, mode, closefd=False, encoding="utf-8"))  # noqa: SIM115


def environment_warnings() -> list[str]:
    """What in the environment the command ignores, one line each (and it is removed from the
    environment, so that the libraries imported after this do not read it either)."""
    out = []
    raw = os.environ.get("OMP_NUM_THREADS")
    if raw is not None and not _THREADS.match(raw):
        del os.environ["OMP_NUM_THREADS"]
        from distill_cli.host import cpu_count

        out.append(
            f"OMP_NUM_THREADS={raw!r} is not a thread count (a whole number from 1): ignored, so "
            f"torch uses the {cpu_count()} cores this process may run on; set it to a number "
            "or unset it"
        )
    return out
