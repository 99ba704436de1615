"""What a run will cost before it runs: images, steps, wall time and GPU-hours (`--dry-run`).

A patient run at the paper's scale is hundreds of GPU-hours; the plan says so up front. The
projection needs one measured figure, the images per second one GPU (one process) trains at
with this recipe's models, sizes and precision: given with `--throughput N`, or the last figure
`distill bench train` measured for the same pair on this machine's device, which it keeps in a
small cache (`$DISTILL_CACHE_DIR` or ~/.cache/distill, `throughput/`). Several GPUs are
projected as N times one (data parallel, communication not counted: a lower bound on the wall
time, and GPU-hours that do not grow with N); without a figure the plan shows the counts alone.
Torch-free, so `distill run --dry-run` stays cheap to import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_cli.errors import DistillError
from distill_cli.files import atomic_write
from distill_cli.host import cache_dir

if TYPE_CHECKING:
    from distill_cli.train.plan import PlannedModel

GPU_COUNTS = (1, 8, 64)


@dataclass(frozen=True)
class Projection:
    gpus: int
    wall_hours: float
    gpu_hours: float


@dataclass(frozen=True)
class CostPlan:
    """The work of a run and, given a throughput, its time on 1, 8 and 64 GPUs."""

    images: int  # training images processed (steps x global batch), each through both models
    steps: int
    epochs: int
    throughput: float | None = None  # images/s of one GPU (process)
    throughput_source: str | None = None  # "--throughput", or the cached measurement
    projections: list[Projection] = field(default_factory=list)
    #: what one measured process ran on: "GPU", or "CPU process" for a figure `distill bench
    #: train` measured on a CPU (a `--throughput` is a GPU's: the laptop that plans a GPU run)
    unit: str = "GPU"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def project(
    images: int,
    steps: int,
    epochs: int,
    throughput: float | None,
    source: str | None,
    unit: str = "GPU",
) -> CostPlan:
    # NaN passed `<= 0` (every projection NaN hours) and inf gave 0 hours: a Python caller's
    # value, as the CLI's flag refuses both
    if throughput is not None and not (0 < throughput < math.inf):
        raise DistillError(
            f"throughput {throughput} is not a positive finite number",
            "--throughput",
            "give images/s, e.g. 800",
        )
    rows = []
    if throughput is not None:
        seconds = images / throughput
        rows = [Projection(n, seconds / n / 3600, seconds / 3600) for n in GPU_COUNTS]
    return CostPlan(images, steps, epochs, throughput, source, rows, unit)


def pair_key(models: dict[str, PlannedModel], precision: str, device: str) -> str:
    """What a training throughput depends on: the models and their sizes, precision, device."""
    parts = sorted(f"{role}={m.name}@{m.input_size}" for role, m in models.items())
    return "|".join([*parts, precision, device])


def _cache_file(key: str) -> Path:
    return cache_dir() / "throughput" / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".json")


def remember_throughput(key: str, images_per_s: float, batch: int) -> None:
    """Keep a `distill bench train` measurement for later plans (best effort: a cache)."""
    path = _cache_file(key)
    record = {"key": key, "images_per_s": images_per_s, "batch": batch, "time": time.time()}
    # an unwritable cache costs a re-measurement, never a failed benchmark
    with contextlib.suppress(DistillError):
        atomic_write(path, json.dumps(record) + "\n")


def cached_throughput(key: str) -> tuple[float, str] | None:
    """The cached images/s for `key` and a line saying where it came from, or None."""
    path = _cache_file(key)
    try:
        record = json.loads(path.read_text())
        if record.get("key") != key:
            return None
        when = time.strftime("%Y-%m-%d", time.localtime(float(record["time"])))
        rate = float(record["images_per_s"])
        return rate, f"distill bench train, {when}, batch {record['batch']} ({path})"
    except (OSError, ValueError, KeyError, TypeError):
        return None
