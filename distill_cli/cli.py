"""The `distill` command line: parse, call the API, render. No work happens here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distill_cli import __version__

app = typer.Typer(
    name="distill",
    help="Distill any timm teacher into a small, fast student; validate it; ship it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

RecipeArg = Annotated[Path, typer.Argument(help="recipe YAML file", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a recipe field: --set optim.lr=3e-3 (repeatable)"),
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="continue the run from its last checkpoint")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace an existing run folder")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print the plan and exit")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"distill {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="show the version")
    ] = False,
) -> None:
    if debug:
        os.environ["DISTILL_DEBUG"] = "1"


def _execute(
    command: str,
    recipe: Path,
    overrides: list[str] | None,
    resume: bool,
    overwrite: bool,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    from distill_cli import api
    from distill_cli.console import RichReporter, console, plan_table, summary_table

    if dry_run:
        plan = api.plan(recipe, overrides)
        console.print_json(json.dumps(plan)) if as_json else console.print(plan_table(plan))
        return
    reporter = RichReporter(quiet=quiet or as_json or os.environ.get("RANK", "0") != "0")
    fn = api.train if command == "train" else api.run
    try:
        summary = fn(recipe, overrides, resume=resume, overwrite=overwrite, reporter=reporter)
    finally:
        reporter.finish()  # an error must not leave a live progress bar behind
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only the main process reports
    console.print_json(json.dumps(summary)) if as_json else console.print(summary_table(summary))


def _relaunch_with_torchrun(nproc: int) -> None:
    """`distill run --nproc N`: the same command under torchrun on this machine."""
    import sys

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if not arg.startswith("--nproc="):
            args.append(arg)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "distill_cli",
        *args,
    ]
    os.execv(sys.executable, cmd)


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    nproc: Annotated[
        int, typer.Option("--nproc", help="processes (GPUs) on this machine, via torchrun")
    ] = 1,
) -> None:
    """Distill a teacher into a student as the recipe says (function matching by default)."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        _relaunch_with_torchrun(nproc)
    _execute("run", recipe, set_, resume, overwrite, dry_run, as_json, quiet)


@app.command()
def train(
    recipe: RecipeArg,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a model on labels (a teacher, or the from-scratch baseline)."""
    _execute("train", recipe, set_, resume, overwrite, dry_run, as_json, quiet)


# --- export and bench ------------------------------------------------------------------------

SourceArg = Annotated[
    str,
    typer.Argument(
        help="a run directory (runs/<name>), a checkpoint with its .json sidecar, or a timm name",
        show_default=False,
    ),
]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="CPU threads for PyTorch and ONNX Runtime (0: all cores)")
]
BatchOpt = Annotated[int, typer.Option("--batch", help="batch size of the throughput figure")]
WarmupOpt = Annotated[int, typer.Option("--warmup", help="untimed calls before timing")]
RunsOpt = Annotated[int, typer.Option("--runs", help="timed batch-1 calls, at least")]
MinTimeOpt = Annotated[float, typer.Option("--min-time", help="seconds of timed calls, at least")]
MaxTimeOpt = Annotated[float, typer.Option("--max-time", help="stop timing after this many s")]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", help="weights for a timm-name SOURCE")
]
InputSizeOpt = Annotated[
    int | None, typer.Option("--input-size", help="input side for a timm-name SOURCE")
]
NumClassesOpt = Annotated[
    int | None, typer.Option("--num-classes", help="classes for a timm-name SOURCE")
]
ExporterOpt = Annotated[
    str, typer.Option("--exporter", help="dynamo or torchscript (the other is the fallback)")
]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset")]


def _model_args(values: list[str] | None) -> dict[str, object]:
    import yaml

    from distill_cli.errors import DistillError

    out: dict[str, object] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DistillError(f"{item!r} is not KEY=VALUE", "--model-arg", "e.g. img_size=64")
        out[key] = yaml.safe_load(value)
    return out


@app.command("export")
def export_cmd(
    source: SourceArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default: <run>/export/)")
    ] = None,
    checkpoint: CheckpointOpt = None,
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", help="take parity and calibration images from this recipe"),
    ] = None,
    num_classes: NumClassesOpt = None,
    input_size: InputSizeOpt = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option("--model-arg", help="timm create_model KEY=VALUE (repeatable)"),
    ] = None,
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", help="check (and quantize, time) this ONNX file; no export"),
    ] = None,
    exporter: ExporterOpt = "dynamo",
    opset: OpsetOpt = 18,
    simplify: Annotated[
        bool, typer.Option("--simplify/--no-simplify", help="onnxsim, kept if parity holds")
    ] = True,
    precision: Annotated[
        str | None, typer.Option("--precision", help="also write an fp16 file (fp32 I/O)")
    ] = None,
    quantize: Annotated[
        str | None, typer.Option("--quantize", help="also write an int8 file (static, QDQ)")
    ] = None,
    calib_images: Annotated[
        int, typer.Option("--calib-images", help="int8 calibration images (training split)")
    ] = 256,
    calib_method: Annotated[
        str, typer.Option("--calib-method", help="minmax, entropy or percentile")
    ] = "minmax",
    images: Annotated[
        int, typer.Option("--images", help="validation images for parity/accuracy (0: all)")
    ] = 2000,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="fp32 parity: max |logit diff| allowed")
    ] = 1e-4,
    threads: ThreadsOpt = 0,
    batch: BatchOpt = 32,
    warmup: WarmupOpt = 10,
    runs: RunsOpt = 100,
    min_time: MinTimeOpt = 5.0,
    max_time: MaxTimeOpt = 60.0,
    latency: Annotated[bool, typer.Option("--latency/--no-latency", help="measure latency")] = True,
    teacher: Annotated[
        bool, typer.Option("--teacher/--no-teacher", help="time the run's teacher too")
    ] = True,
    min_top1: Annotated[
        float | None, typer.Option("--min-top1", help="gate: every ONNX file's top-1 >= this %")
    ] = None,
    max_top1_drop: Annotated[
        float | None,
        typer.Option("--max-top1-drop", help="gate: points lost vs PyTorch (variants: vs fp32)"),
    ] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option("--max-latency-ms", help="gate: student ONNX batch-1 latency")
    ] = None,
    latency_stat: Annotated[
        str, typer.Option("--latency-stat", help="p50 or p90, for --max-latency-ms")
    ] = "p50",
    latency_variant: Annotated[
        str, typer.Option("--latency-variant", help="fp32, fp16 or int8, for --max-latency-ms")
    ] = "fp32",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a student to ONNX, check it against PyTorch, time it, and gate it for CI."""
    import sys

    from distill_cli import api
    from distill_cli.console import console, err_console
    from distill_cli.export import GateFailed
    from distill_cli.export.render import export_view

    def log(message: str) -> None:
        if not (quiet or as_json):
            err_console.print(f"[dim]{message}[/]")

    options = {
        "out": out,
        "checkpoint": checkpoint,
        "recipe": recipe,
        "num_classes": num_classes,
        "input_size": input_size,
        "model_kwargs": _model_args(model_arg),
        "onnx": onnx,
        "exporter": exporter,
        "opset": opset,
        "simplify": simplify,
        "precision": precision,
        "quantize": quantize,
        "calib_images": calib_images,
        "calib_method": calib_method,
        "images": images,
        "tolerance": tolerance,
        "threads": threads,
        "batch": batch,
        "warmup": warmup,
        "runs": runs,
        "min_time_s": min_time,
        "max_time_s": max_time,
        "latency": latency,
        "teacher": teacher,
        "min_top1": min_top1,
        "max_top1_drop": max_top1_drop,
        "max_latency_ms": max_latency_ms,
        "latency_stat": latency_stat,
        "latency_variant": latency_variant,
    }
    misses: list[str] = []
    try:
        report = api.export(source, log=log, **options)
    except GateFailed as failed:
        assert failed.report is not None
        report, misses = failed.report, failed.misses
    if as_json:
        console.print_json(json.dumps(report))
    else:
        _wide_console().print(export_view(report))
    for miss in misses:
        print(f"error: {miss}", file=sys.stderr)
    if misses:
        raise typer.Exit(code=1)


def _wide_console() -> Console:
    """The console, or a 140-column one where stdout is not a terminal (CI logs): rich would
    otherwise squeeze the result tables into 80 columns and cut the figures."""
    from distill_cli.console import console

    return console if console.is_terminal else Console(width=140)


bench_app = typer.Typer(help="Measurements on their own.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("latency")
def bench_latency_cmd(
    target: Annotated[
        str,
        typer.Argument(
            help="MODEL.onnx, a checkpoint, a run directory or a timm name", show_default=False
        ),
    ],
    checkpoint: CheckpointOpt = None,
    input_size: InputSizeOpt = None,
    num_classes: NumClassesOpt = None,
    exporter: ExporterOpt = "dynamo",
    opset: OpsetOpt = 18,
    threads: ThreadsOpt = 0,
    batch: BatchOpt = 32,
    warmup: WarmupOpt = 10,
    runs: RunsOpt = 100,
    min_time: MinTimeOpt = 5.0,
    max_time: MaxTimeOpt = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Batch-1 latency (p50/p90/p99/mean) and batch-N throughput, ONNX Runtime and PyTorch."""
    from distill_cli import api
    from distill_cli.console import console
    from distill_cli.export.render import bench_view

    result = api.bench_latency(
        target,
        checkpoint=checkpoint,
        input_size=input_size,
        num_classes=num_classes,
        exporter=exporter,
        opset=opset,
        threads=threads,
        batch=batch,
        warmup=warmup,
        runs=runs,
        min_time_s=min_time,
        max_time_s=max_time,
    )
    if as_json:
        console.print_json(json.dumps(result))
    else:
        _wide_console().print(bench_view(result))


@bench_app.command("train")
def bench_train_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="timed steps")] = 40,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed steps (compile)")] = 10,
    bare: Annotated[
        Path | None, typer.Option("--bare", help="path to shared/bench/bare_kd_step.py")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Training throughput: distill's full step vs the bare step (same run), and the data path."""
    from distill_cli.console import bench_train_table, console
    from distill_cli.recipe import load_recipe
    from distill_cli.throughput import bench_train

    result = bench_train(load_recipe(recipe, set_), steps=steps, warmup=warmup, bare_script=bare)
    console.print_json(json.dumps(result)) if as_json else console.print(bench_train_table(result))


recipes_app = typer.Typer(help="The shipped recipes.", invoke_without_command=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.callback()
def recipes_list(ctx: typer.Context) -> None:
    """List the shipped recipes, one line each."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from distill_cli.catalog import entries
    from distill_cli.console import console

    table = Table(show_header=True, box=None)
    table.add_column("recipe", style="bold")
    table.add_column("what it is")
    for entry in entries():
        table.add_row(entry.name, entry.summary)
    console.print(table)


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="e.g. methods/kd")]) -> None:
    """Print one recipe (with its comments) and where it is."""
    from distill_cli.catalog import find

    entry = find(name)
    typer.echo(f"# {entry.path}")
    typer.echo(entry.path.read_text().rstrip())
