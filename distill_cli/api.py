"""The Python API: what the CLI commands do, as functions that return data.

from distill_cli import api
summary = api.run("recipes/quickstart/distill.yaml", overrides=["schedule.epochs=1"])
"""

from __future__ import annotations

from collections.abc import Callable
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
    world = setup.world
    if not world.is_main:  # the main process owns the folder; the others follow its decision
        world.barrier()
        trainer = Trainer(setup, rundir, None)
        if resume and rundir.last.is_file():
            trainer.resume()
        return trainer.fit()
    with rundir.lock():
        try:
            resuming = rundir.prepare(rec.to_yaml(), resume=resume, overwrite=overwrite)
        finally:
            world.barrier()
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


def export(
    source: str | Path,
    *,
    check: bool = True,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Export a run, checkpoint or timm model to ONNX, check parity, time it; returns the report.

    `options` are `distill export`'s flags as keywords (`out`, `exporter`, `opset`, `precision`,
    `quantize`, `calib_images`, `images`, `tolerance`, `threads`, `runs`, `min_time_s`, `latency`,
    `min_top1`, `max_top1_drop`, `max_latency_ms`, ...; see `ExportOptions`). With `check` (the
    default) a missed gate raises `GateFailed`, whose `.misses` has one line per miss and whose
    `.report` is the report (also written to OUT/report.json either way).

        report = api.export("runs/my-distill", quantize="int8", min_top1=85.0)
    """
    from distill_cli.export import ExportOptions, GateFailed, run_export

    report = run_export(ExportOptions.from_flat(source, **options), log or (lambda _: None))
    if check and not report["gates"]["passed"]:
        raise GateFailed(report["gates"]["misses"], report)
    return report


def bench_latency(target: str | Path, **options: Any) -> dict[str, Any]:
    """`distill bench latency` as a function: latency of an ONNX file, checkpoint or timm model.

    Timing keys (`threads`, `warmup`, `runs`, `min_time_s`, `max_time_s`, `batch`) set the
    protocol; `checkpoint`, `input_size`, `num_classes`, `exporter` and `opset` are passed on.
    """
    from distill_cli.export.bench import bench_latency as _bench
    from distill_cli.export.latency import TimingPlan

    timing_keys = set(TimingPlan.__dataclass_fields__)
    plan = TimingPlan(**{k: v for k, v in options.items() if k in timing_keys and v is not None})
    rest = {k: v for k, v in options.items() if k not in timing_keys and v is not None}
    if "checkpoint" in rest:
        rest["checkpoint"] = Path(rest["checkpoint"])
    return _bench(str(target), plan, **rest)
