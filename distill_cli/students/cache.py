"""The on-disk cache of `distill students`: timings per key, candidate lists per query.

A timing is keyed by everything that changes it (architecture, input size, classes, device,
threads, precision, batch, exporter, opset, timing protocol, package versions, CPU model): a
new onnxruntime, another thread count or another machine measures again, nothing is ever
invalidated by hand. Files are JSON, one per key, written atomically; an unreadable file is a
miss. Nothing here imports torch, timm or onnxruntime, so a fully cached query stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError
from distill_cli.files import atomic_write
from distill_cli.host import cache_dir
from distill_cli.students.types import StudentQuery, Timing
from distill_cli.typecheck import field_problem

_PACKAGES = (
    "distill-cli",
    "torch",
    "timm",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxscript",
    "numpy",
)


# --- cache -----------------------------------------------------------------------------------


def cache_root(query: StudentQuery) -> Path:
    """`--cache-dir`, else $DISTILL_CACHE_DIR, else ~/.cache/distill (as `distill models`)."""
    return Path(query.cache_dir) if query.cache_dir is not None else cache_dir()


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (read without importing torch)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    """Versions that change a timing, from package metadata (no imports: this must be fast)."""
    import platform

    from distill_cli.host import installed_versions

    return {"python": platform.python_version(), **installed_versions(_PACKAGES)}


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def read(path: Path, key: dict[str, Any]) -> Any:
    # A cache is an optimisation: unreadable or foreign content is a miss, never an error.
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key, default=str)):
        return None
    return data.get("value")


def write(path: Path, key: dict[str, Any], value: Any) -> None:
    """Atomically, never through a symlink (files.atomic_write); a cache folder that cannot be
    written (read-only, full, a link planted in it) only costs speed."""
    with contextlib.suppress(DistillError):
        atomic_write(path, json.dumps({"key": key, "value": value}, default=str))


def _timing(value: Any) -> Timing | None:
    """A cached timing, or None (a miss: measured again) when a hand-edited or damaged file
    holds wrong types or numbers that are not finite (a NaN latency is never "measured")."""
    if not isinstance(value, dict):
        return None
    try:
        timing = Timing.from_dict(value)
    except TypeError:  # a required field is missing
        return None
    return timing if field_problem(timing, finite=True) is None else None


@dataclass
class Cache:
    root: Path
    machine: dict[str, Any]

    def timing_key(self, name: str, q: StudentQuery) -> dict[str, Any]:
        return {
            "arch": name,
            "input_size": q.input_size,
            "num_classes": q.num_classes,
            "device": q.device,
            "precision": q.precision,
            "batch": q.batch,
            "exporter": q.exporter,
            "opset": q.opset,
            "protocol": [q.timing.warmup, q.timing.runs, q.timing.min_time_s, q.timing.max_time_s],
            **self.machine,
        }

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.root / "students" / kind / f"{_digest(key)}.json"

    def timing(self, name: str, q: StudentQuery) -> Timing | None:
        key = self.timing_key(name, q)
        return _timing(read(self.path("timings", key), key))

    def save_timing(self, timing: Timing, q: StudentQuery) -> None:
        key = self.timing_key(timing.name, q)
        write(self.path("timings", key), key, timing.to_dict())

    def pool_key(self, q: StudentQuery) -> dict[str, Any]:
        return {
            "teacher": q.teacher,
            "pattern": q.pattern,
            "families": list(q.families),
            "candidates": list(q.candidates),
            "max_ratio": q.max_ratio,
            "pretrained_only": q.pretrained_only,
            "include_test_models": q.include_test_models,
            "dedup": q.dedup,
            "input_size": q.input_size,
            "versions": self.machine["versions"],
        }
