"""Non-finite state never becomes a good checkpoint (issue 12, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill_cli.cli.console import RichReporter
from distill_cli.errors import DistillError, RunFailed
from distill_cli.methods import StepOutput
from distill_cli.recipe.document import load_recipe
from distill_cli.rundir.layout import RunDir
from distill_cli.train.build import build
from distill_cli.train.trainer import Trainer
from tests.conftest import teacher_body, write_recipe


def _setup(tmp_path: Path, **runtime: object):
    body = teacher_body(tmp_path / "runs", epochs=3)  # 4 steps per epoch
    body["runtime"] = dict(runtime)
    recipe = load_recipe(write_recipe(tmp_path, "nf", body))
    setup = build(recipe)
    run = RunDir(recipe.run_dir)
    run.prepare(recipe.to_yaml(), resume=False, overwrite=False)
    return setup, run


def _bn(setup) -> tuple[str, torch.nn.Module]:
    return next(
        (name, m)
        for name, m in setup.student.module.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )


def _poison_at(setup, steps: set[int]) -> None:
    """At the given calls, a BatchNorm running statistic becomes Inf and the loss NaN."""
    original, calls = setup.method.step, {"n": 0}
    _, bn = _bn(setup)

    def step(batch, epoch):
        calls["n"] += 1
        out = original(batch, epoch)
        if calls["n"] in steps:
            bn.running_var.fill_(float("inf"))
            return StepOutput(out.loss * float("nan"), out.logs)
        return out

    setup.method.step = step


def test_an_inf_buffer_is_never_saved_and_is_named(tmp_path: Path) -> None:
    setup, run = _setup(tmp_path)
    trainer = Trainer(setup, run)
    name, bn = _bn(setup)
    original, calls = trainer.optimizer.step, {"n": 0}

    def step(*args, **kwargs):  # after the update of step 6 a running statistic overflows,
        calls["n"] += 1  # while every loss stays finite
        out = original(*args, **kwargs)
        if calls["n"] == 6:
            bn.running_var.fill_(float("inf"))
        return out

    trainer.optimizer.step = step
    with pytest.raises(RunFailed, match=rf"{name}\.running_var.*NaN/Inf at step 8") as err:
        trainer.fit()
    assert err.value.code == 1
    assert json.loads((run.checkpoints / "last.json").read_text())["step"] == 4
    saved = load_file(str(run.last))
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())


def test_skip_mode_undoes_the_skipped_steps_buffer_updates(tmp_path: Path) -> None:
    setup, run = _setup(tmp_path, on_nonfinite="skip")
    _poison_at(setup, {3, 6})
    summary = Trainer(setup, run).fit()
    assert summary.skipped_steps == 2
    _, bn = _bn(setup)
    assert torch.isfinite(bn.running_var).all()


def test_skip_mode_with_a_window_of_only_skipped_steps(tmp_path: Path) -> None:
    setup, run = _setup(tmp_path, on_nonfinite="skip")
    _poison_at(setup, {3, 4})  # log_every=2: the window of steps 3-4 is empty
    reporter = RichReporter(quiet=True)
    try:
        summary = Trainer(setup, run, reporter).fit()
    finally:
        reporter.finish()
    assert summary.skipped_steps == 2
    records = [json.loads(x) for x in run.metrics.read_text().splitlines()]
    empty = [r for r in records if r["kind"] == "train" and r["step"] == 4]
    assert empty and empty[0]["loss"] is None


@pytest.mark.parametrize("value", ["1e400", ".inf", ".nan", "-1", "0"])
def test_learning_rates_that_overflow_are_refused_at_validation(tmp_path: Path, value: str) -> None:
    recipe = write_recipe(tmp_path, "lr", teacher_body(tmp_path / "runs"))
    with pytest.raises(DistillError, match=r"optim\.lr"):
        load_recipe(recipe, [f"optim.lr={value}"])
