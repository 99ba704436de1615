"""`distill export` and `distill bench`: the shipping half of the command line (see cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from distill_cli.cli.options import JsonOpt, QuietOpt, RecipeArg, SetOpt, finite, wide_console

if TYPE_CHECKING:
    from distill_cli.export import TimingPlan

SourceArg = Annotated[
    str,
    typer.Argument(
        help="a run directory (runs/<name>), a checkpoint with its .json sidecar, or a timm name",
        show_default=False,
    ),
]
ThreadsOpt = Annotated[
    int,
    typer.Option(
        "--threads", min=0, help="CPU threads for PyTorch and ONNX Runtime (0: all cores)"
    ),
]
BatchOpt = Annotated[
    int, typer.Option("--batch", min=1, help="batch size of the throughput figure")
]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="untimed calls before timing")]
RunsOpt = Annotated[int, typer.Option("--runs", min=1, help="timed batch-1 calls, at least")]
MinTimeOpt = Annotated[
    float,
    typer.Option("--min-time", min=0.0, callback=finite, help="seconds of timed calls, at least"),
]
MaxTimeOpt = Annotated[
    float,
    typer.Option("--max-time", min=0.0, callback=finite, help="stop timing after this many s"),
]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", help="weights for a timm-name SOURCE")
]
InputSizeOpt = Annotated[
    int | None, typer.Option("--input-size", min=1, help="input side for a timm-name SOURCE")
]
NumClassesOpt = Annotated[
    int | None, typer.Option("--num-classes", min=1, help="classes for a timm-name SOURCE")
]
ExporterOpt = Annotated[
    str, typer.Option("--exporter", help="dynamo or torchscript (the other is the fallback)")
]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset")]


def _model_args(values: list[str] | None) -> dict[str, object]:
    """`--model-arg KEY=VALUE` pairs as timm keywords, each value read as YAML (64, true, 0.1)."""
    import yaml

    from distill_cli.errors import DistillError

    out: dict[str, object] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DistillError(f"{item!r} is not KEY=VALUE", "--model-arg", "e.g. img_size=64")
        out[key] = yaml.safe_load(value)
    return out


def _timing(
    threads: int, batch: int, warmup: int, runs: int, min_time: float, max_time: float
) -> TimingPlan:
    """The timing flags `distill export` and `distill bench latency` share, as one protocol."""
    from distill_cli.export import TimingPlan

    return TimingPlan(
        threads=threads,
        batch=batch,
        warmup=warmup,
        runs=runs,
        min_time_s=min_time,
        max_time_s=max_time,
    )


def export_cmd(
    source: SourceArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default: <run>/export/)")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="write into an --out folder that holds files of your own"),
    ] = False,
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
        int,
        typer.Option("--calib-images", min=1, help="int8 calibration images (training split)"),
    ] = 256,
    calib_method: Annotated[
        str, typer.Option("--calib-method", help="minmax, entropy or percentile")
    ] = "minmax",
    images: Annotated[
        int,
        typer.Option("--images", min=0, help="validation images for parity/accuracy (0: all)"),
    ] = 2000,
    tolerance: Annotated[
        float | None,
        typer.Option(
            "--tolerance", min=0.0, callback=finite, help="old name of --atol (its alias)"
        ),
    ] = None,
    atol: Annotated[
        float | None,
        typer.Option(
            "--atol",
            min=0.0,
            callback=finite,
            help="fp32 parity: |onnx-pytorch| <= atol + rtol*|pytorch| [1e-4]",
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(
            "--rtol",
            min=0.0,
            callback=finite,
            help="fp32 parity: relative part of the bound [1e-3]",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="seed of random weights (timm name, no checkpoint)")
    ] = 0,
    reparam: Annotated[
        bool | None,
        typer.Option(
            "--reparam/--no-reparam",
            help="fuse reparameterizable blocks before export [on when the model has them]",
            show_default=False,
        ),
    ] = None,
    dynamic_size: Annotated[
        bool,
        typer.Option(
            "--dynamic-size", help="dynamic height/width too (kept only if the model allows it)"
        ),
    ] = False,
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
        float | None,
        typer.Option(
            "--min-top1",
            min=0.0,
            max=100.0,
            callback=finite,
            help="gate: every ONNX file's top-1 >= this %",
        ),
    ] = None,
    max_top1_drop: Annotated[
        float | None,
        typer.Option(
            "--max-top1-drop",
            min=0.0,
            callback=finite,
            help="gate: points lost vs PyTorch (variants: vs fp32)",
        ),
    ] = None,
    min_variant_agreement: Annotated[
        float | None,
        typer.Option(
            "--min-variant-agreement",
            min=0.0,
            max=100.0,
            callback=finite,
            help="gate: each fp16/int8 file agrees with ONNX fp32 on >= this % of top-1",
        ),
    ] = None,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(
            "--max-latency-ms",
            min=0.0,
            callback=finite,
            help="gate: student ONNX batch-1 latency",
        ),
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
    from distill_cli.cli.console import console, err_console
    from distill_cli.cli.console_export import export_view
    from distill_cli.export import ExportOptions, Gates
    from distill_cli.export.parity import DEFAULT_RTOL

    options = ExportOptions(
        source=source,
        out=out,
        force=force,
        checkpoint=checkpoint,
        recipe=recipe,
        num_classes=num_classes,
        input_size=input_size,
        model_kwargs=_model_args(model_arg),
        onnx=onnx,
        exporter=exporter,  # type: ignore[arg-type]  # checked by ExportOptions
        opset=opset,
        simplify=simplify,
        precision=precision,
        quantize=quantize,
        calib_images=calib_images,
        calib_method=calib_method,
        images=images,
        tolerance=tolerance,
        atol=atol,
        rtol=DEFAULT_RTOL if rtol is None else rtol,  # None: the flag's help shows [1e-3]
        seed=seed,
        reparam=reparam,
        dynamic_size=dynamic_size,
        latency=latency,
        teacher=teacher,
        timing=_timing(threads, batch, warmup, runs, min_time, max_time),
        gates=Gates(
            min_top1=min_top1,
            max_top1_drop=max_top1_drop,
            min_variant_agreement=min_variant_agreement,
            max_latency_ms=max_latency_ms,
            latency_stat=latency_stat,
            latency_variant=latency_variant,
        ),
    )

    def log(message: str) -> None:
        if not (quiet or as_json):
            err_console.print(f"[dim]{message}[/]")

    result = api.export(options, log=log, check=False)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        wide_console().print(export_view(result))
    for miss in result.misses:
        print(f"error: {miss}", file=sys.stderr)
    if result.misses:
        raise typer.Exit(code=1)


bench_app = typer.Typer(help="Measurements on their own.", no_args_is_help=True)


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
    from distill_cli.cli.console import console
    from distill_cli.cli.console_export import bench_view

    result = api.bench_latency(
        target,
        _timing(threads, batch, warmup, runs, min_time, max_time),
        checkpoint=checkpoint,
        input_size=input_size,
        num_classes=num_classes,
        exporter=exporter,  # type: ignore[arg-type]  # checked by bench_latency
        opset=opset,
    )
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        wide_console().print(bench_view(result))


@bench_app.command("train")
def bench_train_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="timed steps")] = 40,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="untimed steps (compile)")] = 10,
    rounds: Annotated[
        int,
        typer.Option("--rounds", min=1, help="alternate distill/bare this many times (medians)"),
    ] = 1,
    bare: Annotated[
        Path | None, typer.Option("--bare", help="path to shared/bench/bare_kd_step.py")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Training throughput: distill's full step vs the bare step (same run), and the data path."""
    from distill_cli import api
    from distill_cli.cli.console import bench_train_table, console

    result = api.bench_train(recipe, set_, steps=steps, warmup=warmup, bare=bare, rounds=rounds)
    console.print_json(json.dumps(result)) if as_json else console.print(bench_train_table(result))
