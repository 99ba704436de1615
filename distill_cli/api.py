"""The Python API: what the CLI commands do, as functions that return typed results.

    from distill_cli import api

    result = api.run("recipes/quickstart/distill.yaml", schedule__epochs=1, optim__lr=3e-3)
    print(result.student.top1, result.agreement_top1, result.run_dir)
    exported = api.export(result.run_dir, quantize="int8", min_top1=85.0)  # an ExportReport
    print(exported.latency_of("student/onnxruntime/int8").p50_ms)
    api.report(result.run_dir)                       # report.html + report.md + PNGs

Recipe fields are overridden with keywords, `__` standing for the dot of `--set`
(`optim__lr=3e-3` is `--set optim.lr=3e-3`), or with `overrides=["optim.lr=3e-3"]`. The CLI is a
thin layer over these functions: everything it prints comes from the results they return.

Importing this module is cheap (no torch, timm or ONNX Runtime): each function imports the wing
it drives when it is called, so the CLI can go through the API for every command, including
those (`distill students` with a cached answer, `distill recipes`) that never need torch.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_cli import arguments as args
from distill_cli import lazy_face
from distill_cli.errors import DistillError, WrongType
from distill_cli.process_state import leaves_process_as_found
from distill_cli.recipe.document import Overrides, Recipe
from distill_cli.recipe.given import given_recipe
from distill_cli.rundir.summary import RunSummary

if TYPE_CHECKING:
    from distill_cli.bench.latency import LatencyBench
    from distill_cli.bench.train_result import TrainBench
    from distill_cli.export import ExportOptions, ExportReport, TimingPlan
    from distill_cli.export.gates import GateFailed
    from distill_cli.export.onnx_export import Exporter
    from distill_cli.recipe.catalog import Entry
    from distill_cli.reports.compare import Comparison
    from distill_cli.reports.document import ReportResult
    from distill_cli.rundir.layout import RunDir
    from distill_cli.students.model_search import ModelSearch
    from distill_cli.students.types import StudentQuery, StudentSearch
    from distill_cli.train.plan import Plan
    from distill_cli.train.reporter import Reporter

#: The types a caller names beside the functions, importable from here as the docs spell them
#: (`except api.GateFailed`, `api.students(api.StudentQuery(...))`, `api.RunDir(path)`), each
#: imported on first use so that importing the API stays torch-free.
_FACE = lazy_face(
    "distill_cli",
    {
        "GateFailed": "export.gates",
        "RunDir": "rundir.layout",
        "StudentQuery": "students.types",
    },
)


def __getattr__(name: str) -> Any:
    try:
        return _FACE(name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = [
    "DistillError",
    "GateFailed",
    "Recipe",
    "RunDir",
    "RunSummary",
    "StudentQuery",
    "WrongType",
    "bench_latency",
    "bench_train",
    "compare",
    "export",
    "models",
    "plan",
    "recipes",
    "report",
    "run",
    "shipped_recipe",
    "students",
    "train",
]


def _run_args(resume: Any, overwrite: Any, reporter: Any) -> None:
    args.switch(resume, "resume")
    args.switch(overwrite, "overwrite")
    args.reporter(reporter)


@leaves_process_as_found
def recipes() -> list[Entry]:
    """`distill recipes`: the shipped recipes (and a `recipes/` folder in the working directory),
    each with its name (`methods/kd`), path and one-line summary."""
    from distill_cli.recipe.catalog import entries

    return entries()


@leaves_process_as_found
def shipped_recipe(name: str) -> Entry:
    """`distill recipes show NAME`: one shipped recipe; `.text()` is the file, comments kept."""
    from distill_cli.recipe.catalog import find

    return find(args.text(name, "name"))


@leaves_process_as_found
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
    _run_args(resume, overwrite, reporter)
    rec = given_recipe(recipe, overrides, fields)  # a bad recipe fails before torch is imported
    from distill_cli.train import engine

    return engine.run(rec, resume=resume, overwrite=overwrite, reporter=reporter)


@leaves_process_as_found
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
    _run_args(resume, overwrite, reporter)
    rec = given_recipe(recipe, overrides, fields)  # a bad recipe fails before torch is imported
    from distill_cli.train import engine

    _labels_only(rec)
    return engine.run(rec, resume=resume, overwrite=overwrite, reporter=reporter)


def _labels_only(rec: Recipe) -> None:
    """`train` (and `distill train --dry-run`'s plan) takes recipes that learn from labels."""
    from distill_cli.methods import method_class

    if method_class(rec.method.name).needs_teacher:
        raise DistillError(
            f"`distill train` is for supervised recipes; {rec.method.name!r} needs a teacher",
            "method.name",
            "use `distill run` for distillation recipes",
        )


@leaves_process_as_found
def export(
    source: str | Path | ExportOptions,
    *,
    check: bool = True,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> ExportReport:
    """Export a run, checkpoint or timm model to ONNX, check parity, time it; returns the report
    (`ExportReport`, report.json typed: `.onnx`, `.variants`, `.parity_passed`,
    `.latency_of(name)`, `.gates_passed`, `.misses`, `.to_dict()` the file's content).

    `source` is an `ExportOptions` (what `distill export` builds from its flags), or a run,
    checkpoint or timm name with the flags as keywords (`out`, `exporter`, `opset`, `precision`,
    `quantize`, `checkpoint`, `checkpoint_key`, `calib_images`, `images`, `atol`, `rtol`,
    `reparam`, `dynamic_size`, `threads`,
    `runs`, `min_time_s`, `latency`, `min_top1`, `max_top1_drop`, `min_variant_agreement`,
    `max_latency_ms`, ...; see `ExportOptions.from_flat`). Values are checked as the CLI checks
    its flags (a `DistillError` names the flag). With `check` (the default) a missed gate raises
    `GateFailed`, whose `.misses` has one line per miss and whose `.report` is the report (also
    written to OUT/report.json either way); without `check` the result's `gates_passed` and
    `misses` say the same.

        result = api.export("runs/my-distill", quantize="int8", min_top1=85.0)
    """
    from distill_cli.export import ExportOptions, GateFailed, run_export

    args.switch(check, "check")
    args.function(log, "log")
    if isinstance(source, ExportOptions):
        if options:
            raise args.one_of("ExportOptions", "options")
        opts = source
    else:
        opts = ExportOptions.from_flat(args.source(source), **options)
    report = run_export(opts, log or (lambda _: None))
    if check and not report.gates_passed:
        raise GateFailed(report.misses, report)
    return report


@leaves_process_as_found
def bench_latency(
    target: str | Path,
    timing: TimingPlan | None = None,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_key: str | None = None,
    input_size: int | str | tuple[int, int] | None = None,
    num_classes: int | None = None,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
    **timing_keys: Any,
) -> LatencyBench:
    """`distill bench latency` as a function: latency of an ONNX file, checkpoint or timm model;
    returns a `LatencyBench` (`.model`, `.latency`: the export report's `LatencyReport`,
    `.latency_of(name)`, `.to_dict()` what `--json` prints).

    The protocol is `timing`, or its fields as keywords (`threads`, `warmup`, `runs`,
    `min_time_s`, `max_time_s`, `batch`, `device`); `checkpoint` (`checkpoint_key`: the entry of a
    checkpoint dict to load, e.g. `state_dict_ema`), `input_size` (224, "224x192" or
    (224, 192)), `num_classes`,
    `exporter` and `opset` (None: the exporter's default, 18) say how to build and export a
    model that is not an ONNX file; they are checked as the CLI checks its flags.
    """
    from distill_cli.bench.latency import bench_latency as _bench
    from distill_cli.export import TimingPlan
    from distill_cli.export.ranges import check_range

    size = args.input_size(input_size)
    check_range(num_classes, "--num-classes", 1)
    args.text(checkpoint_key, "checkpoint_key", optional=True)
    if timing is not None and timing_keys:
        raise args.one_of("TimingPlan", "protocol")
    args.known_keywords(timing_keys, TimingPlan.__dataclass_fields__, "timing keywords")
    plan = timing or TimingPlan(**{k: v for k, v in timing_keys.items() if v is not None})
    return _bench(
        args.source(target),
        plan,
        checkpoint=args.optional_path(checkpoint, "checkpoint"),
        checkpoint_key=checkpoint_key,
        input_size=size,
        num_classes=num_classes,
        exporter=exporter,
        opset=opset,
    )


@leaves_process_as_found
def bench_train(
    recipe: Recipe | str | Path,
    overrides: Overrides | None = None,
    *,
    steps: int = 40,
    warmup: int = 10,
    rounds: int = 1,
    bare: str | Path | None = None,
) -> TrainBench:
    """`distill bench train`: distill's full training step against the bare step (same run),
    and the data path alone; `rounds` > 1 alternates them and compares the medians."""
    from distill_cli.bench.train import bench_train as _bench
    from distill_cli.export.ranges import check_count

    check_count(steps, "--steps", 1)
    check_count(warmup, "--warmup", 0)
    check_count(rounds, "--rounds", 1)
    bare_script = args.optional_path(bare, "bare")
    rec = given_recipe(recipe, overrides, {})  # a Recipe object's overrides were dropped
    return _bench(rec, steps=steps, warmup=warmup, bare_script=bare_script, rounds=rounds)


@leaves_process_as_found
def report(run_dir: str | Path) -> ReportResult:
    """`distill report`: report.html, report.md and report_*.png written into the run folder."""
    from distill_cli.reports.document import write_report

    return write_report(args.path(run_dir, "run_dir"))


@leaves_process_as_found
def compare(run_dirs: Sequence[str | Path], *, plot: str | Path | None = None) -> Comparison:
    """`distill compare`: the runs' differing recipe keys and results; `plot` writes their
    accuracy curves on one figure (PNG)."""
    from distill_cli.reports import plots
    from distill_cli.reports.compare import compare_runs

    if isinstance(run_dirs, (str, os.PathLike)):  # its characters were taken for run folders
        raise WrongType(
            "run_dirs must be a list of run folders, not one path", "run_dirs", "pass [a, b]"
        )
    if not isinstance(run_dirs, Iterable):
        raise WrongType(
            f"run_dirs must be a list of run folders, not {type(run_dirs).__name__}",
            "run_dirs",
            "pass [a, b]",
        )
    folders = [args.path(d, "run_dirs") for d in run_dirs]
    target = args.optional_path(plot, "plot")
    if target is not None:  # checked before any work: the plot is a PNG distill may write
        if target.suffix.lower() != ".png":
            raise DistillError("the plot is written as PNG", str(target), "name a .png file")
        if not target.parent.is_dir():  # distill makes no folders outside its runs
            raise DistillError(
                "cannot write the plot: its folder does not exist",
                str(target),
                "create the folder or pass another --plot",
            )
        if os.path.lexists(target) and not plots.made_by_distill(target):
            raise DistillError(
                "the plot file exists and is not a figure distill wrote; distill will not "
                "replace it",
                str(target),
                "pass --plot with a new .png name, or --no-plot",
            )
    comparison = compare_runs(folders)
    if target is not None:
        plots.save(plots.compare_figure(comparison.runs), target)
    return comparison


@leaves_process_as_found
def models(pattern: str = "*", **options: Any) -> ModelSearch:
    """`distill models`: timm models matching `pattern` with parameters and input size; with
    `teacher=NAME` each is marked as a sensible student or not (see `find_models`)."""
    from distill_cli.export.ranges import check_range
    from distill_cli.students.model_search import find_models
    from distill_cli.students.teacher_file import teacher_name

    args.text(pattern, "pattern")
    takes = inspect.signature(find_models).parameters
    args.known_keywords(options, set(takes) - {"pattern"}, "models options")
    args.text(options.get("teacher"), "teacher", optional=True)
    if options.get("teacher") is not None:  # the teacher a user holds: a file names its model
        options["teacher"] = teacher_name(options["teacher"], "--teacher")
    for key in ("pretrained_only", "flops"):
        if key in options:
            args.switch(options[key], key)
    args.function(options.get("progress"), "progress")
    check_range(options.get("limit"), "--limit", 0)
    check_range(options.get("max_ratio"), "--max-ratio", 0)
    return find_models(pattern, **options)


@leaves_process_as_found
def students(
    query: StudentQuery | str,
    max_latency_ms: float | None = None,
    *,
    progress: Callable[[str, int, int, str], None] | None = None,
    write_recipe: str | Path | None = None,
    data: str | Path | None = None,
    teacher_checkpoint: str | Path | None = None,
    student: str | None = None,
    name: str | None = None,
    force: bool = False,
    **options: Any,
) -> StudentSearch:
    """`distill students`: the teacher's timm students ranked within a latency budget.

    `query` is a `StudentQuery` (what `distill students` builds from its flags), or the
    teacher's name with `max_latency_ms` and the query's fields as keywords (`device`,
    `input_size`, `batch`, `precision`, `latency_stat`, `pattern`, `families`, `candidates`,
    `max_ratio`, `limit`, `measure_all`, `time_budget_s`, `cache_dir`, ... and the timing plan's
    `threads`, `warmup`, `runs`, `min_time_s`, `max_time_s`; see `StudentQuery.from_flat`).
    `progress(phase, done, total, name)` follows the sweep. With `write_recipe`, a
    function-matching recipe for the best fit (or `student`) on `data` is written and
    validated (`student`, `name` and `force` are the flags `--student`, `--name`, `--force`);
    when nothing fits, `NoFit` is raised and its `.search` holds the timings. Without a fit and
    without a recipe the result's `best` is None (`students.search.outcome` says why: nothing
    measured, or nothing fast enough).

        search = api.students("resnet50", 5.0, input_size=224, threads=2)
        print(search.best.name, search.best.p50_ms, search.untimed)
    """
    from distill_cli.students.recipe import RecipeAsk
    from distill_cli.students.search import search_students
    from distill_cli.students.teacher_file import with_teacher_file
    from distill_cli.students.types import StudentQuery

    args.function(progress, "progress")
    if isinstance(query, StudentQuery):
        if options or max_latency_ms is not None:
            raise args.one_of("StudentQuery", "query")
    else:
        if max_latency_ms is None:
            raise WrongType(
                "students(teacher, max_latency_ms, ...) needs a latency budget",
                "max_latency_ms",
                "e.g. api.students('resnet50', 5.0)",
            )
        query = StudentQuery.from_flat(args.text(query, "teacher"), max_latency_ms, **options)
    args.optional_path(write_recipe, "write_recipe")
    args.optional_path(data, "data")
    args.optional_path(teacher_checkpoint, "teacher_checkpoint")
    query, teacher_checkpoint = with_teacher_file(query, teacher_checkpoint, write_recipe)
    args.text(student, "student", optional=True)
    args.text(name, "name", optional=True)
    args.switch(force, "force")
    ask = RecipeAsk.of(write_recipe, data, teacher_checkpoint, student, name, force)
    return search_students(query, progress=progress, recipe=ask)
