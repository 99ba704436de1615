"""The machine distill runs on, and the one rule for writing to it (no torch here).

Two facts live here so that every command applies them the same way:

- **Bounds**: what a recipe or a flag may ask of this machine. Threads and data workers are
  limited relative to its cores (a typo of `threads: 100000` must not spawn 100,000 OS threads
  or segfault), input sides to a few thousand pixels (a 100,000 px image is terabytes of
  activations), floats that reach float32 to what float32 can hold, and nesting of YAML and
  `--set` values to a sane depth (deeper data would exhaust Python's stack).
- **Writing**: distill writes only files it names, into folders it made or marked, never
  through a symlink, and always to a temporary file that is renamed over the target, so a kill
  or a full disk never leaves half a file and a link never redirects a write onto a user's file.
  A file-system failure is a :class:`RunFailed` (exit 1) naming the path and what to do.
  Third-party code that writes files of its own choosing beside a bare name (ONNX Runtime's
  quantizer, onnx's external data) runs in :func:`private_cwd`, so those land in a temp folder.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError, RunFailed

#: The largest finite float32: a larger setting becomes inf the moment it reaches a tensor.
FLOAT32_MAX = 3.4028234663852886e38
#: The largest input side (pixels) distill accepts anywhere: 4096 px already needs ~200 MB per
#: image of activations in a small CNN; larger sides are typos, not workloads.
MAX_INPUT_PX = 4096
#: The most classes a model may have (a recipe's `num_classes`, `--num-classes`): a head for
#: 1,000,000 classes is already 5 GB of float32 weights at 1,280 features (ImageNet-21k has
#: 21,843); `1e12` was the allocator's error, blamed on the model's kwargs.
MAX_CLASSES = 1_000_000
#: Why :data:`MAX_CLASSES`, in the messages.
CLASSES_WHY = "the head alone would be gigabytes (ImageNet-21k has 21,843 classes)"
#: The largest seed (numpy's and the recipe's `runtime.seed`: 32 bits).
MAX_SEED = 2**32 - 1
#: The largest whole number any setting takes (an int64: every count, seed and step ends in a
#: tensor, a C long or a float, and none holds more).
MAX_WHOLE = 2**63 - 1
#: How deep YAML or `--set` values may nest; a recipe needs 4, deeper data exhausts the stack.
MAX_NESTING = 64
#: Threads and workers per core a setting may ask for (oversubscription past this only thrashes).
PER_CORE = 4
#: ... but never fewer than this, so a shipped recipe (`workers: 8`) still runs on a 1-core box.
MIN_THREAD_LIMIT = 8


def cache_dir() -> Path:
    """distill's cache folder: $DISTILL_CACHE_DIR, else $XDG_CACHE_HOME/distill, else
    ~/.cache/distill (the model sizes of `distill models`, the timings of `distill students`,
    the throughputs `distill bench train` measured). One rule, so every cache moves together."""
    folder = os.environ.get("DISTILL_CACHE_DIR")
    if folder:
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distill"


def installed_versions(names: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """Each package's installed version from its metadata (no import, so it is fast), or None."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, so a container's limit counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_budget() -> int:
    """The CPU threads work started from this process should use in all: ``OMP_NUM_THREADS``
    where the caller set it (the variable torch itself reads, so a test runner or a batch
    scheduler that gives each process one core is obeyed), else :func:`cpu_count`.

    Why it matters: torch's OpenMP threads spin at their barriers, so two threads on a core
    another process is busy with run 5-40x slower than one (measured: a tiny CNN step, 2 threads
    beside 3 busy processes on 2 cores, 0.31 s against 0.03 s for one thread)."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return min(int(raw), cpu_count())
    return cpu_count()


def sha256_file(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB chunks (a checkpoint can be gigabytes): how a checkpoint,
    a teacher's weights or an exported model is named beyond its path."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def max_threads() -> int:
    """The most CPU threads (torch, onnxruntime) or data workers a setting may ask for."""
    return max(MIN_THREAD_LIMIT, PER_CORE * cpu_count())


def default_workers() -> int:
    """Data workers when the recipe sets none: 4, never more than the cores (so PyTorch's
    DataLoader never warns that it was given more workers than the machine has)."""
    return min(4, cpu_count())


def check_threads(value: int | None, where: str) -> int | None:
    """`value` when it is within :func:`max_threads`; a one-line error naming the limit."""
    if value is not None and value > max_threads():
        raise DistillError(
            f"{value} is more than this machine can use (at most {max_threads()}: {PER_CORE} per "
            f"core, {cpu_count()} cores): more threads or workers than that only thrash",
            where,
            f"use at most {max_threads()}",
        )
    return value


def absolute(path: str | Path) -> str:
    """A path as the JSON files distill writes hold it (summary.json, an export's report.json):
    absolute, as the saved recipe.yaml holds its paths. A relative one meant "from the directory
    distill ran in" and pointed elsewhere when read from another; readers of a run folder take
    the folder's own place from where they read it, so a moved folder still reads."""
    return os.path.abspath(os.path.expanduser(path))


def check_input_px(value: int | None, where: str) -> int | None:
    """An input side within :data:`MAX_INPUT_PX`; a one-line error naming the limit."""
    if value is not None and value > MAX_INPUT_PX:
        raise DistillError(
            f"input size {value} px is above the limit of {MAX_INPUT_PX} px (its activations "
            "would not fit in memory)",
            where,
            f"use at most {MAX_INPUT_PX}",
        )
    return value


def check_classes(
    value: int | None, where: str, hint: str = "give the data's class count"
) -> int | None:
    """A class count within :data:`MAX_CLASSES`; a one-line error naming the limit."""
    if value is not None and value > MAX_CLASSES:
        raise DistillError(
            f"{value:,} classes is above {MAX_CLASSES:,}: {CLASSES_WHY}", where, hint
        )
    return value


#: What to do about a label that would make more classes than MAX_CLASSES (data sources that
#: number their classes from the largest label: a `.cls` of 999999999999 made a list of 10^12
#: class names).
LABEL_HINT = "labels are class indices 0..N-1: fix the sample whose label is that large"


def float32_problem(value: float) -> str | None:
    """Why `value` cannot be a float32 setting (NaN, infinite, beyond float32), or None."""
    if not math.isfinite(value):
        return "must be a finite number"
    if abs(value) > FLOAT32_MAX:
        return f"is beyond float32's range (|x| <= {FLOAT32_MAX:.3g}): it would become inf"
    if value != 0 and struct.unpack("f", struct.pack("f", value))[0] == 0:
        # `lr: 1e-300` (a typo for 1e-3) trained with a learning rate of 0 without a word
        return "is too small for float32 (it would become 0); write 0, or the value meant"
    return None


def whole_problem(value: object) -> str | None:
    """Why `value` cannot be a setting when it is a whole number beyond :data:`MAX_WHOLE` (a
    400-digit `epochs`), else None. Such a number is said by its length: a bound shown with
    `:g` cannot format it (an OverflowError traceback) and others printed every digit."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WHOLE:
        bits = abs(value).bit_length()  # str() refuses ints of over 4,300 digits
        digits = len(str(abs(value))) if bits < 14_000 else int(bits * math.log10(2)) + 1
        return f"a {digits:,}-digit number, too large for any setting (at most 2**63 - 1)"
    return None


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """How deep dicts and lists nest in `value`, counted without recursion and stopping at
    `limit` + 1 (so a hostile document costs nothing to measure)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def check_nesting(value: Any, where: str) -> Any:
    """`value` when it nests at most :data:`MAX_NESTING` deep; else a one-line error."""
    if nesting_depth(value) > MAX_NESTING:
        raise DistillError(
            f"the data nests more than {MAX_NESTING} levels deep", where, "flatten it"
        )
    return value


# --- writing ---------------------------------------------------------------------------------


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
