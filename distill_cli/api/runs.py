"""The API of runs: the shipped recipes, a run's plan, `run` and `train` (see `distill_cli.api`)."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_cli import arguments as args
from distill_cli.errors import DistillError, RunFailed, RunInterrupted
from distill_cli.host import absolute
from distill_cli.process_state import leaves_process_as_found
from distill_cli.recipe.document import Overrides, Recipe
from distill_cli.recipe.given import given_recipe
from distill_cli.rundir.summary import RunSummary

if TYPE_CHECKING:
    from distill_cli.recipe.catalog import Entry
    from distill_cli.train.plan import Plan
    from distill_cli.train.reporter import Reporter


def _run_args(resume: Any, overwrite: Any, reporter: Any) -> None:
    args.switch(resume, "resume")
    args.switch(overwrite, "overwrite")
    args.reporter(reporter)


@leaves_process_as_found
@args.plain_arguments
def recipes() -> list[Entry]:
    """`distill recipes`: the shipped recipes (and a `recipes/` folder in the working directory),
    each with its name (`methods/kd`), path and one-line summary."""
    from distill_cli.recipe.catalog import entries

    return entries()


@leaves_process_as_found
@args.plain_arguments
def shipped_recipe(name: str) -> Entry:
    """`distill recipes show NAME`: one shipped recipe; `.text()` is the file, comments kept."""
    from distill_cli.recipe.catalog import find

    return find(args.text(name, "name"))


@leaves_process_as_found
@args.plain_arguments
def plan(
    recipe: Recipe | str | Path,
    overrides: Overrides | None = None,
    *,
    throughput: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    train: bool = False,
    **fields: Any,
) -> Plan:
    """What `run` would do (models, data sizes, steps, precision, device) and what it will cost
    (images, GPU-hours on 1/8/64 GPUs at `throughput` images/s per GPU, or at the figure
    `distill bench train` cached), without training. Streamed data that is not at hand is
    counted from the recipe (`data.train_images`); the plan then says `data.read: false`.
    A run folder a run would refuse whatever its flags (a symlink, a folder of other files) is
    refused here too; one holding a run is `run_folder` (a run needs --resume or --overwrite).
    `resume`/`overwrite` are the run's flags: the plan refuses what that run would refuse of
    its folder (a changed recipe on resume) and says where a resume continues from. `train`
    plans `api.train`'s run (`distill train --dry-run`): a method that needs a teacher is
    refused as `train` refuses it."""
    args.number(throughput, "throughput")
    _run_args(resume, overwrite, None)
    args.switch(train, "train")
    rec = given_recipe(recipe, overrides, fields)  # a bad recipe fails before torch is imported
    if train:
        _labels_only(rec)
    from distill_cli.rundir.layout import RunDir
    from distill_cli.train.build import build
    from distill_cli.train.tracking import check_packages

    check_packages(rec)  # a tracker the run would refuse before training
    folder = RunDir(rec.run_dir).planned(
        rec.to_yaml(), resume=resume, overwrite=overwrite
    )  # refused as a run would refuse it, else its state
    return replace(build(rec, plan_only=True).plan(throughput), run_folder=folder)


@leaves_process_as_found
@args.plain_arguments
def run(
    recipe: Recipe | str | Path,
    overrides: Overrides | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    **fields: Any,
) -> RunSummary:
    """Train the recipe's student to the end (`distill run`); the result is summary.json's data.

    `fields` override recipe fields (`schedule__epochs=10`); `resume` continues the run from its
    last checkpoint, `overwrite` replaces an existing run folder; `reporter` receives progress.
    """
    return _trained(recipe, overrides, fields, resume, overwrite, reporter, labels_only=False)


@leaves_process_as_found
@args.plain_arguments
def train(
    recipe: Recipe | str | Path,
    overrides: Overrides | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    **fields: Any,
) -> RunSummary:
    """`run` for methods that learn from labels alone (teachers, from-scratch baselines)."""
    return _trained(recipe, overrides, fields, resume, overwrite, reporter, labels_only=True)


def _trained(
    recipe: Recipe | str | Path,
    overrides: Overrides | None,
    fields: dict[str, Any],
    resume: bool,
    overwrite: bool,
    reporter: Reporter | None,
    *,
    labels_only: bool,
) -> RunSummary:
    """The body `run` and `train` share: arguments checked, the recipe validated before torch
    is imported (a bad recipe fails in a second), `train`'s refusal of a method that needs a
    teacher, then the engine."""
    _run_args(resume, overwrite, reporter)
    rec = given_recipe(recipe, overrides, fields)
    if labels_only:
        _labels_only(rec)
    from distill_cli.train import engine

    try:
        summary = engine.run(rec, resume=resume, overwrite=overwrite, reporter=reporter)
    except RunFailed as exc:
        if exc.code == 128 + signal.SIGINT:  # Ctrl-C, the position saved: Python's interrupt
            raise RunInterrupted(exc) from exc
        raise
    # absolute, as summary.json holds it: a notebook that changes directory (`%cd`) after the
    # run still finds the folder; the CLI prints the path as the recipe gave it
    return replace(summary, run_dir=Path(absolute(summary.run_dir)))


def _labels_only(rec: Recipe) -> None:
    """`train` (and `distill train --dry-run`'s plan) takes recipes that learn from labels."""
    from distill_cli.methods import method_class

    if method_class(rec.method.name).needs_teacher:
        raise DistillError(
            f"`distill train` is for supervised recipes; {rec.method.name!r} needs a teacher",
            "method.name",
            "use `distill run` for distillation recipes",
        )
