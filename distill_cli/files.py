"""How distill writes to the file system: the one rule every command follows (no torch here).

distill writes only files it names, into folders it made or marked, never through a symlink, and
always to a temporary file that is renamed over the target, so a kill or a full disk never leaves
half a file and a link never redirects a write onto a user's file. A file-system failure is a
:class:`RunFailed` (exit 1) naming the path and what to do. Third-party code that writes files of
its own choosing beside a bare name (ONNX Runtime's quantizer, onnx's external data) runs in
:func:`private_cwd`, so those land in a temp folder. A path only a slip writes (a pasted line
break, blanks alone) is refused before anything is made from it.

Hand-written because the standard library has the pieces (`tempfile`, `os.replace`) but no one
call that refuses links, keeps the umask's mode and says the failure in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from distill_cli.errors import DistillError, RunFailed


def process_umask() -> int:
    """The process umask, read without changing it where Linux allows (no race with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fs_failed(exc: OSError, path: Path | str, doing: str) -> RunFailed:
    """A file-system failure while working, as a one-line error naming the path and the fix."""
    hints = {
        "ENOSPC": "free disk space and run again",
        "EDQUOT": "free disk space (quota) and run again",
        "EACCES": "check the folder's permissions",
        "EPERM": "check the folder's permissions",
        "EROFS": "the file system is read-only: choose a writable folder",
        "ENAMETOOLONG": "a name in a path is at most 255 bytes, a whole path 4,096: shorten it",
        # a run folder deleted or moved while the run wrote to it
        "ENOENT": "its folder is gone (moved or deleted while the command ran?): check the path",
    }
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    shown = str(path)
    if len(shown) > 200:  # a 5,000-byte path filled the terminal with its one line
        shown = f"{shown[:80]}...{shown[-80:]} ({len(os.fsencode(shown)):,} bytes)"
    failed = RunFailed(
        f"cannot {doing}: {exc.strerror or exc}",
        shown,
        hints.get(name, "check the path, free space and permissions"),
    )
    if name == "ENAMETOOLONG":  # the path given is the input's fault, not the work's
        failed.code = 2
    return failed


def path_text_problem(text: str) -> str | None:
    """What makes `text` a path only a slip writes, or None: a control character (a line break
    pasted with it, a tab: `--out "runs\nx"` made a folder whose name holds a newline, which
    `ls` shows as two names and a shell script splits), or a name of blanks alone (`--out " "`
    made a folder named " ", from an unset variable between quotes)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "holds a control character (a line break, a tab)"
    if text and not text.strip():
        return "is blank (spaces only: an unset variable?)"
    return None


def refuse_odd_path(path: Path | str, where: str) -> None:
    """A one-line error for a path :func:`path_text_problem` finds something in."""
    problem = path_text_problem(str(path))
    if problem:
        raise DistillError(f"the path {str(path)!r} {problem}", where, "give the path meant")


def refuse_link(path: Path) -> None:
    """A one-line error when `path` is a symlink or not a regular file: distill never writes
    through a link (it could point at anything) nor over a folder, FIFO or device."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise fs_failed(exc, path, "inspect the file") from exc
    hint = "remove it or choose another path"
    if stat.S_ISLNK(mode):
        raise DistillError(
            "the target is a symlink; distill never writes through one", str(path), hint
        )
    if not stat.S_ISREG(mode):
        raise DistillError("the target exists and is not a regular file", str(path), hint)


def refuse_existing(path: Path, override: str) -> None:
    """A one-line error when `path` exists (a link, a file, anything): `override` replaces it."""
    if os.path.lexists(path):
        raise DistillError(
            "the file exists; distill does not replace files it was not asked to",
            str(path),
            f"choose another path or pass {override} to replace it",
        )


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    `path` must not be a symlink or anything but a regular file (refused before anything is
    written). The temp file is named `.<name>.<random>.tmp` (RunDir removes leftovers of a kill
    at the next start) and gets the mode an ordinary `open` would give (0666 less the umask),
    not mkstemp's private 0600: a shared results folder stays readable by the group. A full
    disk or a permission problem is a :class:`RunFailed` naming the path.
    """
    refuse_odd_path(path, str(path))
    refuse_link(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise fs_failed(exc, path, "write the file") from exc
    try:
        os.fchmod(fd, 0o666 & ~process_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise fs_failed(exc, path, "write the file") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def claim_folder(
    path: Path, marker: str, *, force: bool, override: str, where: str = "--out"
) -> None:
    """Make `path` a folder distill may write its named files into, or refuse it.

    A new or empty folder is created and marked with the file `marker`; a marked folder is
    distill's already. A folder holding anything else is a user's: refused with a one-line
    error naming `override` (passing it, `force`, marks the folder and goes on, still writing
    only distill's named files). A symlink or a non-folder is always refused.
    """
    refuse_odd_path(path, where)
    if path.is_symlink():
        raise DistillError(
            "the output folder is a symlink; distill never writes through one",
            str(path),
            "pass the folder the link points to",
        )
    if path.exists() and not path.is_dir():
        raise DistillError(
            "the output path exists and is not a folder", str(path), "name a folder (--out)"
        )
    mark = path / marker
    if not mark.is_file() or mark.is_symlink():
        if path.is_dir() and any(path.iterdir()) and not force:
            raise DistillError(
                "the output folder holds files distill did not write; distill will not write "
                "into it",
                str(path),
                f"choose a new or empty folder, or pass {override} to write distill's files "
                "into it",
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fs_failed(exc, path, "create the output folder") from exc
        atomic_write(mark, "written by distill: distill may replace its own files here\n")


class PrivateCwd:
    """The private working directory of :func:`private_cwd`, and the way back to the caller's."""

    def __init__(self, path: Path, home: int, back: str | None) -> None:
        self.path = path
        self._home = home  # an fd of the caller's cwd (-1 when it could not be opened)
        self._back = back  # its name, used only without the fd

    def _go_home(self) -> None:
        if self._home >= 0:
            os.fchdir(self._home)
        elif self._back is not None:
            os.chdir(self._back)

    @contextlib.contextmanager
    def callers(self) -> Iterator[None]:
        """The caller's working directory for the block, then the private one again: for code
        the third-party step calls back into that reads the caller's relative paths (a data
        pipeline pulled by a calibration reader, its loader workers started there)."""
        self._go_home()
        try:
            yield
        finally:
            os.chdir(self.path)


@contextlib.contextmanager
def private_cwd() -> Iterator[PrivateCwd]:
    """Run the block with the working directory set to a new private temp folder, then go back
    to the caller's and delete the folder with whatever the block left in it.

    Why: third-party steps write files we never asked for, named relative to the working
    directory. ONNX Runtime's symbolic shape inference (inside `quant_pre_process`, so every
    int8 export) saves `sym_shape_infer_temp.onnx` plus a `<uuid1>.data` file of the model's
    weights into the cwd whenever it cannot infer every shape (a Resize by scales on a dynamic
    batch followed by a residual add, as in EfficientFormer-V2 and HRNet), and
    onnx's external-data writer puts any unnamed tensor file beside a bare model name. The
    working directory is the user's (a repository, a home folder): nothing distill does not
    name may land there. Paths handed to the block must be absolute (or read under
    `PrivateCwd.callers`). The working directory is process-wide: another thread of the same
    process that opens a relative path during the block sees the temp folder (distill calls
    this from its main thread only).
    """
    back: str | None = None
    try:
        home = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # an unreadable cwd: go back by name
        home = -1
        with contextlib.suppress(OSError):
            back = os.getcwd()
    try:
        folder = Path(tempfile.mkdtemp(prefix="distill-cwd-"))
    except OSError as exc:
        if home >= 0:
            os.close(home)
        raise fs_failed(exc, tempfile.gettempdir(), "create a temporary folder") from exc
    cwd = PrivateCwd(folder, home, back)
    try:
        os.chdir(folder)
        yield cwd
    finally:
        cwd._go_home()
        if home >= 0:
            os.close(home)
        shutil.rmtree(folder, ignore_errors=True)
