"""The machine distill runs on (no torch here): what it has and what may be asked of it.

One owner for these facts, so that every command applies them the same way (how distill writes
files is `files.py`):

- **Bounds**: what a recipe or a flag may ask of this machine. Threads and data workers are
  limited relative to its cores (a typo of `threads: 100000` must not spawn 100,000 OS threads
  or segfault), input sides to a few thousand pixels (a 100,000 px image is terabytes of
  activations), floats that reach float32 to what float32 can hold, and nesting of YAML and
  `--set` values to a sane depth (deeper data would exhaust Python's stack).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError

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
