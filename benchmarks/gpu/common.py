"""What the parts of `gpu_check.py` share: the record each part writes, the run environment, and
the small helpers that build `distill` command lines and read a run's results back.

Every part writes what it measured to `WORK/partN.json` as soon as it has it, so a part stopped
at its time limit still reports its first numbers; an exception inside one measurement is
recorded in `errors` and the part goes on with the next.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distill_cli.files import atomic_write
from distill_cli.host import installed_versions, thread_budget

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
PEERS = BENCH / "peers"
#: the packages whose versions every part pins in its record (peers included, when installed)
#: smoke mode's share of Fashion-MNIST: enough for 4 batches of 64 (the peers' warm-up 2 and
#: one window of 2) and an evaluation; the smoke run is in the test suite, so it is kept small
SMOKE_FMNIST = ["data.subset=256", "data.val_limit=128"]
SMOKE_FMNIST_IMAGES = 256
PINNED = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxruntime-gpu", "torchdistill")


class Record:
    """One part's results, rewritten to disk after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"errors": []}
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def put(self, group: str, key: str, value: Any) -> None:
        """`data[group][key] = value`, saved."""
        self.data.setdefault(group, {})[key] = value
        self.save()

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Runs one measurement; its failure is written down and the part goes on."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            traceback.print_exc()
            self.data["errors"].append(f"{what}: {type(exc).__name__}: {str(exc)[:400]}")
        finally:
            self.data.setdefault("seconds", {})[what] = round(time.perf_counter() - started, 1)
            self.save()

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2, default=str))


def versions() -> dict[str, str | None]:
    return installed_versions(PINNED)


def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"python": sys.version.split()[0], **versions()}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    else:
        env["gpu"] = None
    return env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "distill_cli", *args]


def sets(items: list[str]) -> list[str]:
    return [x for s in items for x in ("--set", s)]


def tiny(recipe_overrides: list[str], *, teacher: bool = True) -> list[str]:
    """Smoke mode's stand-ins: timm's test models at 32 px on the CPU, no compile."""
    out = [*recipe_overrides, "student.model=test_efficientnet", "student.input_size=32"]
    # the caller's thread budget (one under the test suite's workers), never a fixed 2: two
    # spinning torch threads beside another busy process run many times slower than one
    out += ["runtime.device=cpu", "runtime.compile=false", f"runtime.threads={thread_budget()}"]
    if teacher:
        out += ["teacher.model=test_resnet", "teacher.input_size=32"]
    return out


def bench_command(path: Path, items: list[str], bare: Path | None, rounds: int = 1) -> str:
    args = ["distill", "bench", "train", str(path.relative_to(ROOT)), *sets(items)]
    args += ["--rounds", str(rounds)] if rounds > 1 else []
    return " ".join(args + (["--bare", str(bare)] if bare else []))


def fmnist_sets(fmnist: Path | None, smoke: bool) -> list[str]:
    if fmnist is None:  # the shape of Fashion-MNIST without its files (the yaml's default)
        return ["data.synthetic.train_size=512"] if smoke else []
    items = ["data.source=fashion_mnist", f"data.root={fmnist}"]
    return items + (SMOKE_FMNIST if smoke else [])


def last_evals(run: Path) -> list[dict[str, Any]]:
    """The run's evaluations from metrics.jsonl (there even when the run was stopped)."""
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return []
    return [json.loads(x) for x in metrics.read_text().splitlines() if '"eval"' in x]


def summary(run: Path) -> dict[str, Any] | None:
    path = run / "summary.json"
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    keep = ("method", "student", "teacher", "agreement", "kl", "best", "epochs", "steps")
    return {
        **{k: s.get(k) for k in keep},
        "images_per_s": s.get("images_per_s"),
        "wall_time_s": s.get("wall_time_s"),
        "device": s.get("device"),
        "precision": s.get("precision"),
    }


def time_to_top1(evals: list[dict[str, Any]], target: float, key: str) -> float | None:
    """Training seconds at the first evaluation reaching `target` top-1 (None: never)."""
    return next((e[key] for e in evals if (e.get("top1") or 0) >= target), None)
