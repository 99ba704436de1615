"""The Python API: what the CLI commands do, as functions that return data.

from distill_cli import api
summary = api.run("recipes/quickstart/distill.yaml", overrides=["schedule.epochs=1"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill_cli.engine import Reporter, Trainer, build
from distill_cli.errors import DistillError
from distill_cli.methods import method_class
from distill_cli.recipe import Recipe, load_recipe
from distill_cli.rundir import RunDir


def _recipe(recipe: Recipe | str | Path, overrides: list[str] | None) -> Recipe:
    if isinstance(recipe, Recipe):
        if overrides:
            raise ValueError("overrides apply to recipe files; edit the Recipe object instead")
        return recipe
    return load_recipe(recipe, overrides)


def plan(recipe: Recipe | str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """What `run` would do (models, data sizes, steps, precision, device), without training."""
    return build(_recipe(recipe, overrides)).plan()


def run(
    recipe: Recipe | str | Path,
    overrides: list[str] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Train the recipe's student to the end; returns the summary written to summary.json."""
    rec = _recipe(recipe, overrides)
    setup = build(rec)
    rundir = RunDir(rec.run_dir)
    with rundir.lock():
        resuming = rundir.prepare(rec.to_yaml(), resume=resume, overwrite=overwrite)
        trainer = Trainer(setup, rundir, reporter)
        if resuming:
            trainer.resume()
        return trainer.fit()


def train(
    recipe: Recipe | str | Path, overrides: list[str] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`run` for methods that learn from labels alone (teachers, from-scratch baselines)."""
    rec = _recipe(recipe, overrides)
    if method_class(rec.method.name).needs_teacher:
        raise DistillError(
            f"`distill train` is for supervised recipes; {rec.method.name!r} needs a teacher",
            "method.name",
            "use `distill run` for distillation recipes",
        )
    return run(rec, **kwargs)
