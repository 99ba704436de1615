"""Throughput and memory tooling: `distill bench train`, OOM probing, the benchmark script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill_cli.bench.train import bench_train
from distill_cli.bench.train_result import StepRounds, StepTiming, TrainBench
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.rundir.layout import RunDir
from distill_cli.train.build import build
from distill_cli.train.memory import largest_fitting
from distill_cli.train.trainer import Trainer
from tests.conftest import fm_body, write_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_largest_fitting_batch_search() -> None:
    tried = []

    def trial(n: int) -> None:
        tried.append(n)
        if n > 37:
            raise torch.OutOfMemoryError("CUDA out of memory")

    assert largest_fitting(trial, 512) == 37
    assert len(tried) < 16  # halving then bisection, not a linear scan
    assert largest_fitting(trial, 512, step=8) == 32
    assert largest_fitting(lambda n: (_ for _ in ()).throw(torch.OutOfMemoryError()), 64) == 0


def test_batch_that_does_not_fit_names_the_largest_that_does(tmp_path: Path) -> None:
    body = fm_body(tmp_path / "runs", None, epochs=1)
    recipe = load_recipe(write_recipe(tmp_path, "oom", body))
    setup = build(recipe)
    real = setup.method.step

    def step(batch, epoch):
        if batch.images.shape[0] > 12:  # pretend memory holds 12 images
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch, epoch)

    setup.method.step = step
    run = RunDir(recipe.run_dir)
    run.prepare(recipe.to_yaml(), resume=False, overwrite=False)
    with pytest.raises(DistillError) as info:
        Trainer(setup, run).fit()
    assert "batch size 32 does not fit" in str(info.value)
    assert "largest that fits is 12" in str(info.value)
    assert "schedule.batch_size=12" in str(info.value)


def test_bench_train_reports_both_steps_and_the_data_path(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "b", fm_body(tmp_path / "runs", None)))
    result = bench_train(recipe, steps=4, warmup=2, window=2, data_batches=3)
    assert result.distill.images_per_s > 0 and result.distill.last.windows == 2
    assert result.bare.images_per_s > 0 and result.ratio > 0
    assert result.data_path.images_per_s > 0
    assert result.models == {"student": "test_efficientnet", "teacher": "test_resnet"}
    assert not (tmp_path / "runs" / "b").exists()  # benchmarks leave no run behind


def test_bench_train_rounds_time_both_steps_alike_and_report_their_spread(
    tmp_path: Path,
) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "r", fm_body(tmp_path / "runs", None)))
    result = bench_train(recipe, steps=4, warmup=2, window=2, data_batches=2, rounds=2)
    assert result.bare is not None
    for side in (result.distill, result.bare):
        rounds = side.per_round
        assert len(rounds) == 2 and side.spread == (min(rounds), max(rounds))
        assert side.images_per_s == pytest.approx(sum(rounds) / 2)  # their median
        # both timed by one rule: warm-up, then the median of 2-step windows
        assert side.last.windows == 2
        assert side.last.timing == "2 warm-up steps, median of 2 windows of 2 steps"
    assert len(result.bare.last.per_window) == 2
    assert result.bare_script is None  # the script itself runs on CUDA only
    # --json: the same keys as the typed result, unmeasured ones left out
    data = result.to_dict()
    assert "bare_script" not in data and "gpu" not in data and "ratio_to_script" not in data
    assert data["ratio"] == result.ratio and data["target_ratio"] == 0.9
    assert data["bare"]["per_round"] == list(result.bare.per_round)
    assert data["bare"]["spread"] == [min(result.bare.per_round), max(result.bare.per_round)]
    assert data["bare"]["mode"] == "fp32" and data["distill"]["windows"] == 2
    assert data["models"] == {"student": "test_efficientnet", "teacher": "test_resnet"}


def test_train_throughput_benchmark_script_runs_on_cpu() -> None:
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
    assert result["distill"]["images_per_s"] > 0 and result["bare"]["images_per_s"] > 0
    assert result["ratio"] > 0


def test_a_data_path_too_short_to_time_says_why_in_the_table(tmp_path: Path) -> None:
    """Two batches an epoch: both warm the workers up, none is timed; the table said '-'."""
    from distill_cli.bench.train import data_path
    from distill_cli.cli.console_plan import bench_train_table

    body = fm_body(tmp_path / "runs", None)
    body["data"]["synthetic"]["train_size"] = 2 * body["schedule"]["batch_size"]
    timed = data_path(build(load_recipe(write_recipe(tmp_path, "d", body))), batches=3)
    assert timed.images_per_s is None and timed.note is not None and "2 batches" in timed.note
    assert timed.to_dict() == {"images_per_s": None, "note": timed.note}
    step = StepRounds.of([StepTiming(10.0, "one span")])
    result = TrainBench("d", 1, "cpu", "fp32", False, 8, "s", None, 0.9, step, timed)
    rows = bench_train_table(result).columns[1]._cells
    assert rows[-1] == f"- ({timed.note})"
