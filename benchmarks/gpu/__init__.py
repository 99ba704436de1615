"""The parts of `benchmarks/gpu_check.py`, one module each, each run in its own process (see
that file for the why). `run_part(n, ...)` runs part n; `PARTS` names them."""

from __future__ import annotations

import importlib
from pathlib import Path

from gpu.common import Record, environment

#: part -> (module in this folder, what it measures)
PARTS = {
    1: ("tests", "the shipped code's GPU tests (pytest -m gpu)"),
    2: ("throughput", "distill's step vs the bare step, alternated, at 224 px and small images"),
    3: ("peers", "timm train.py KD and torchdistill KD beside distill, same GPU and data"),
    4: ("photos", "a folder of mixed-size JPEGs read cold: nvJPEG vs CPU workers"),
    5: ("export", "distill export on onnxruntime's CUDA (and TensorRT) provider"),
    6: ("precision", "the same short function-matching run in bf16 and fp32"),
}


def run_part(
    part: int,
    *,
    smoke: bool,
    work: Path,
    bare: Path | None,
    fmnist: Path | None,
    deadline: float,
) -> None:
    rec = Record(work / f"part{part}.json")
    rec.set("part", {"number": part, "what": PARTS[part][1]})
    rec.set("environment", environment())
    module = importlib.import_module(f"gpu.{PARTS[part][0]}")
    module.run(rec, smoke=smoke, work=work, bare=bare, fmnist=fmnist, deadline=deadline)
