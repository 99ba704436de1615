"""Multi-process training with torchrun (gloo on CPU): same result as one process, one writer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import write_recipe

ROOT = Path(__file__).resolve().parents[1]


def _body(out: Path, epochs: int = 3) -> dict:
    # LayerNorm model, no random augmentation: 2 x 16 images per step then give the same
    # gradient as 1 x 32, so the two runs can be compared closely
    return {
        "model": {"model": "test_vit", "input_size": 32},
        "data": {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 128}},
        "augment": {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "flip": False},
        "method": {"name": "supervised"},
        "optim": {"lr": 1e-3},
        "schedule": {"epochs": epochs, "batch_size": 32, "log_every": 2},
        "runtime": {"threads": 1},
        "output": {"dir": str(out)},
    }


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "distill_cli",
        *args,
    ]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(run / "checkpoints" / "last.safetensors"))
    return {k: v for k, v in tensors.items() if not k.startswith("__")}


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_and_only_one_writes(tmp_path: Path) -> None:
    runs = {}
    for nproc in (1, 2):
        folder = tmp_path / f"n{nproc}"
        folder.mkdir()
        recipe = write_recipe(folder, "ddp", _body(folder / "runs"))
        result = subprocess.run(
            _torchrun(nproc, "run", str(recipe), "-q", "--json"),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs[nproc] = folder / "runs" / "ddp"
    one, two = runs[1], runs[2]
    assert json.loads((two / "summary.json").read_text())["processes"] == 2
    a, b = _weights(one), _weights(two)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-3, msg=key)
    ra, rb = _records(one), _records(two)
    assert [r["step"] for r in ra] == [r["step"] for r in rb], "one writer, no duplicate lines"
    for x, y in zip(ra, rb, strict=True):
        if x["kind"] == "train":
            assert abs(x["loss"] - y["loss"]) < 1e-3
        if x["kind"] == "eval":
            assert abs(x["top1"] - y["top1"]) <= 100 / 64  # at most one val image differs
    files = sorted(p.relative_to(two).as_posix() for p in two.rglob("*"))
    assert files == sorted(p.relative_to(one).as_posix() for p in one.rglob("*"))


def test_distributed_resume_after_sigterm(tmp_path: Path) -> None:
    finals = []
    for name, interrupt in (("ref", False), ("cut", True)):
        folder = tmp_path / name
        folder.mkdir()
        body = _body(folder / "runs", epochs=6)
        recipe = write_recipe(folder, "ddp", body)
        run = folder / "runs" / "ddp"
        if interrupt:
            proc = subprocess.Popen(
                _torchrun(2, "run", str(recipe), "-q"),
                cwd=ROOT,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                metrics = run / "metrics.jsonl"
                if metrics.is_file() and '"step": 6' in metrics.read_text():
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=300)
            assert proc.returncode != 0
            step = json.loads((run / "checkpoints" / "last.json").read_text())["step"]
            assert 0 < step < 24
            args = ("run", str(recipe), "-q", "--resume")
        else:
            args = ("run", str(recipe), "-q")
        result = subprocess.run(
            _torchrun(2, *args), capture_output=True, text=True, timeout=600, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr[-3000:]
        finals.append(_weights(run))
    a, b = finals
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)
