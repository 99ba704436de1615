"""How distill holds the folders it writes: advisory ``flock`` locks (no torch here).

A run holds its folder (`RunDir.lock`), an export its output folder (`hold_folder`), for as
long as it writes there; a reader asks whether a folder is held (`lock_held`: `distill export`
of a run still training says so). ``flock`` because the kernel drops it when the process dies,
even by SIGKILL: a crashed run never leaves a stale lock that a user would have to delete.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from distill_cli.errors import DistillError
from distill_cli.files import fs_failed

#: The descriptors that hold a lock now. A forked child (a DataLoader worker) shares them, and
#: an flock lasts until every copy is closed: after `kill -9` of a run, its decode workers
#: (which torch's watchdog ends only seconds later) kept the folder locked, and `--resume` at
#: once was "the run folder is in use by a live run (pid N)", naming the dead process. A
#: forked child closes its copies (the parent keeps the lock); `unlock` releases one.
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


def unlock(fd: int) -> None:
    """Release a lock `lock_exclusive` took (close its descriptor)."""
    _HELD.discard(fd)
    os.close(fd)


def lock_exclusive(
    path: Path, *, create: bool, doing: str, busy: Callable[[int], DistillError]
) -> int:
    """Open `path` (never through a symlink) and take an exclusive advisory ``flock`` on it.

    Returns the open descriptor; the lock lasts until `unlock(fd)`, and the kernel drops it when
    the process dies, even by SIGKILL, so nothing stale is ever left. It does not wait: when a
    live process holds the lock, ``busy(fd)`` builds the one-line refusal (it may read what the
    holder wrote into the file) and that is raised. One owner for how distill holds a folder,
    used by runs (:meth:`RunDir.lock`) and by :func:`hold_folder`.
    """
    flags = os.O_NOFOLLOW | (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise fs_failed(exc, path, doing) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = busy(fd)
        os.close(fd)
        raise error from None
    except BaseException:
        os.close(fd)
        raise
    _HELD.add(fd)
    return fd


def holder(fd: int) -> str:
    """What the process holding the lock on `fd` wrote into the file (a run writes its pid)."""
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"


def lock_held(path: Path) -> str | None:
    """Whether a live process holds `lock_exclusive` on `path`: what it wrote into the file (its
    pid), else None. Probed with a shared lock taken and dropped at once, never waiting, so a
    reader (`distill export` of a run still training) can say what it is reading."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None  # no lock file: no run ever held it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return None


@contextlib.contextmanager
def hold_folder(marker: Path, what: str) -> Iterator[None]:
    """Hold a folder distill writes into (its `marker` file, see `claim_folder`) for a block.

    The lock of :func:`lock_exclusive` on the marker, as a run holds its folder: a second
    process aiming at the same folder is refused in one line instead of deleting the first
    one's staged files as leftovers (an export removes what a killed export left) or renaming
    over them.
    """
    fd = lock_exclusive(
        marker,
        create=False,
        doing=f"lock the {what} folder",
        busy=lambda _fd: DistillError(
            f"the {what} folder is in use by another {what} that is still running",
            str(marker.parent),
            "wait for it to finish, or choose another folder",
        ),
    )
    try:
        yield
    finally:
        unlock(fd)
