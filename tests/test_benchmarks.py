"""The benchmark scripts stay runnable (CPU side only here; the GPU figures come from a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_throughput_benchmark_runs_on_cpu() -> None:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "train_throughput.py"),
        "--device",
        "cpu",
        "--teacher",
        "test_resnet",
        "--student",
        "test_efficientnet",
        "--batch",
        "16",
        "--res",
        "32",
        "--classes",
        "10",
        "--mode",
        "fp32",
        "--steps",
        "4",
        "--warmup",
        "2",
        "--window",
        "2",
        "--images-batches",
        "2",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["distill"]["images_per_s"] > 0 and result["distill"]["windows"] == 2
