"""`distill export` and `distill bench`: the shipping half of the command line (see cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from distill_cli.cli.options import (
    CheckpointKeyOpt,
    DeviceOpt,
    ExporterOpt,
    InputSizeOpt,
    JsonOpt,
    LatencyStatOpt,
    MaxTimeOpt,
    MinTimeOpt,
    NumClassesOpt,
    OpsetOpt,
    QuietOpt,
    RecipeArg,
    RunsOpt,
    SetOpt,
    ThreadsOpt,
    WarmupOpt,
    given_path,
    number_option,
    timing_plan,
    wide_console,
)

SourceArg = Annotated[
    str,
    typer.Argument(
        help="a run directory (runs/<name>), a checkpoint with its .json sidecar, a Hugging Face "
        "model folder (config.json + weights), or a timm name",
        show_default=False,
    ),
]
BatchOpt = Annotated[
    int, typer.Option("--batch", min=1, help="batch size of the throughput figure")
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint", parser=given_path, help="weights for a timm name given as the model"
    ),
]


def _model_args(values: list[str] | None) -> dict[str, object]:
    """`--model-arg KEY=VALUE` pairs as timm keywords, each value read as `--set` reads a
    model's `kwargs` (64, true, no, 1e-1, [32, 32]; YAML 1.1 read `1e-1` as the text "1e-1")."""
    from distill_cli.errors import DistillError
    from distill_cli.recipe.fields import bool_words_as_bools
    from distill_cli.recipe.overrides import set_value

    out: dict[str, object] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DistillError(f"{item!r} is not KEY=VALUE", "--model-arg", "e.g. img_size=64")
        out[key] = bool_words_as_bools(set_value(value, f"--model-arg {key[:60]}"))
    return out


#: The flags that only shape the int8 file, by parameter name.
INT8_FLAGS = {
    "calib_images": "--calib-images",
    "calib_method": "--calib-method",
    "per_channel": "--per-channel/--per-tensor",
    "act_symmetric": "--act-symmetric/--act-asymmetric",
    "weight_symmetric": "--weight-symmetric/--weight-asymmetric",
}


def unused_int8_flags(ctx: typer.Context, variants: list[str]) -> list[str]:
    """The int8 flags given on the command line when no int8 file is made: they were ignored
    without a word. A note, not a refusal (as `--keep-fp32`, which names nodes, is): scripts
    pass `--calib-images` on every export and toggle `--quantize` (benchmarks/int8_options.py
    does)."""
    if "int8" in variants:
        return []
    # by name: typer carries its own copy of click, whose ParameterSource is not click's
    return [
        flag
        for name, flag in INT8_FLAGS.items()
        if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    ]


def export_cmd(
    ctx: typer.Context,
    source: SourceArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", parser=given_path, help="output folder (default: <run>/export/)"
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="write into an --out folder that holds files of your own"),
    ] = False,
    checkpoint: CheckpointOpt = None,
    checkpoint_key: CheckpointKeyOpt = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            "--recipe",
            parser=given_path,
            help="take parity and calibration images from this recipe",
        ),
    ] = None,
    num_classes: NumClassesOpt = None,
    input_size: InputSizeOpt = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option("--model-arg", help="timm create_model KEY=VALUE (repeatable)"),
    ] = None,
    onnx: Annotated[
        Path | None,
        typer.Option(
            "--onnx", parser=given_path, help="check (and quantize, time) this ONNX file; no export"
        ),
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
        str, typer.Option("--calib-method", help="int8 calibration: minmax, entropy or percentile")
    ] = "minmax",
    per_channel: Annotated[
        bool,
        typer.Option("--per-channel/--per-tensor", help="int8 weight scales per output channel"),
    ] = True,
    act_symmetric: Annotated[
        bool,
        typer.Option(
            "--act-symmetric/--act-asymmetric", help="int8 activation ranges symmetric around 0"
        ),
    ] = False,
    weight_symmetric: Annotated[
        bool,
        typer.Option(
            "--weight-symmetric/--weight-asymmetric", help="int8 weight ranges symmetric around 0"
        ),
    ] = True,
    keep_fp32: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-fp32",
            help="int8: keep these nodes in float: first, last (Conv/Gemm/MatMul) or node names",
        ),
    ] = None,
    images: Annotated[
        int,
        typer.Option("--images", min=0, help="validation images for parity/accuracy (0: all)"),
    ] = 2000,
    tolerance: Annotated[
        float | None, number_option("--tolerance", "old name of --atol (its alias)")
    ] = None,
    atol: Annotated[
        float | None,
        number_option(
            "--atol",
            "fp32 parity: |onnx-pytorch| <= atol + rtol*max(|pytorch|, 1e-3*row max) [1e-4]",
        ),
    ] = None,
    rtol: Annotated[
        float | None, number_option("--rtol", "fp32 parity: relative part of the bound [1e-3]")
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
    device: DeviceOpt = "auto",
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
        number_option("--min-top1", "gate: every ONNX file's top-1 >= this %", high=100.0),
    ] = None,
    max_top1_drop: Annotated[
        float | None,
        number_option("--max-top1-drop", "gate: points lost vs PyTorch (variants: vs fp32)"),
    ] = None,
    min_variant_agreement: Annotated[
        float | None,
        number_option(
            "--min-variant-agreement",
            "gate: each fp16/int8 file agrees with ONNX fp32 on >= this % of top-1",
            high=100.0,
        ),
    ] = None,
    max_latency_ms: Annotated[
        float | None, number_option("--max-latency-ms", "gate: student ONNX batch-1 latency")
    ] = None,
    latency_stat: LatencyStatOpt = "p50",
    latency_variant: Annotated[
        str, typer.Option("--latency-variant", help="fp32, fp16 or int8, for --max-latency-ms")
    ] = "fp32",
    require_protocol: Annotated[
        bool,
        typer.Option(
            "--require-protocol",
            help="latency gate: a figure flagged noisy/contended/short is retimed, then a miss",
        ),
    ] = False,
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
    from distill_cli.export.variants import Int8Spec

    options = ExportOptions(
        source=source,
        out=out,
        force=force,
        checkpoint=checkpoint,
        checkpoint_key=checkpoint_key,
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
        int8=Int8Spec(
            calib_method=calib_method,
            per_channel=per_channel,
            act_symmetric=act_symmetric,
            weight_symmetric=weight_symmetric,
            keep_fp32=tuple(keep_fp32 or ()),
        ),
        images=images,
        tolerance=tolerance,
        atol=atol,
        rtol=DEFAULT_RTOL if rtol is None else rtol,  # None: the flag's help shows [1e-3]
        seed=seed,
        reparam=reparam,
        dynamic_size=dynamic_size,
        latency=latency,
        teacher=teacher,
        timing=timing_plan(threads, warmup, runs, min_time, max_time, batch, device),
        gates=Gates(
            min_top1=min_top1,
            max_top1_drop=max_top1_drop,
            min_variant_agreement=min_variant_agreement,
            max_latency_ms=max_latency_ms,
            latency_stat=latency_stat,
            latency_variant=latency_variant,
            require_protocol=require_protocol,
        ),
    )
    unused = unused_int8_flags(ctx, options.variants)
    if unused and not as_json:
        err_console.print(
            f"[yellow]note:[/] {', '.join(unused)} "
            f"{'shapes' if len(unused) == 1 else 'shape'} the int8 file, and none is made "
            "(add --quantize int8)",
            soft_wrap=True,
        )

    def log(message: str) -> None:
        if not (quiet or as_json):
            err_console.print(f"[dim]{message}[/]", soft_wrap=True)  # one line each in a log

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
    checkpoint_key: CheckpointKeyOpt = None,
    input_size: InputSizeOpt = None,
    num_classes: NumClassesOpt = None,
    exporter: ExporterOpt = "dynamo",
    opset: OpsetOpt = 18,
    threads: ThreadsOpt = 0,
    device: DeviceOpt = "auto",
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
        timing_plan(threads, warmup, runs, min_time, max_time, batch, device),
        checkpoint=checkpoint,
        checkpoint_key=checkpoint_key,
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
        Path | None,
        typer.Option(
            "--bare",
            parser=given_path,
            help="a copy of the reference bare_kd_step.py, also run (CUDA): its own timing",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Training throughput: distill's full step vs the bare step (same run), and the data path."""
    from distill_cli import api
    from distill_cli.cli.console import console
    from distill_cli.cli.console_plan import bench_train_table

    result = api.bench_train(recipe, set_, steps=steps, warmup=warmup, bare=bare, rounds=rounds)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        console.print(bench_train_table(result))
