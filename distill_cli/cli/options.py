"""Argument and option types shared by the `distill` commands, and the console they print to.

The timing flags (`--threads`, `--warmup`, `--runs`, `--min-time`, `--max-time`) mean the same
in `distill export`, `distill bench latency` and `distill students`, with the same bounds, and
become one `TimingPlan` through `timing_plan`; the latency budget flags (`--max-latency-ms`,
`--latency-stat`), the model flags (`--input-size`, `--num-classes`, `--exporter`,
`--opset`, `--checkpoint-key`) and `--max-ratio` (`distill models` and `distill students`)
are declared here once too. A decimal flag is a `number_option`: bounded, and never NaN or infinity.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from distill_cli.file_kinds import url_problem


def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinity pass click's range checks but are never a setting."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def given_path(text: str | Path) -> Path:
    """The parser of every path flag and argument: click made an empty value the working
    directory, so `--checkpoint "$CKPT"` with the variable unset was "the checkpoint folder
    holds no model.safetensors (.)", and `--onnx ""` "the ONNX file is a folder (.)"."""
    if isinstance(text, Path):
        return text
    if not text.strip():
        raise typer.BadParameter("is empty (an unset variable?); pass a path")
    problem = url_problem(text)  # `s3://b/r.yaml` was "not found (s3:/b/r.yaml)"
    if problem:
        raise typer.BadParameter(f"{text!r} {problem[0]}; {problem[1]}")
    return Path(text)


def number_option(flag: str, help: str, *, low: float = 0.0, high: float | None = None) -> Any:
    """A decimal flag: at least `low` (and at most `high`), and `finite`, so a typo such as
    `nan` or `inf` is a usage error like any value out of bounds."""
    return typer.Option(flag, min=low, max=high, callback=finite, help=help)


CheckpointKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--checkpoint-key",
        help="the entry of a checkpoint dict to load (state_dict_ema: timm's EMA weights)",
    ),
]
RecipeArg = Annotated[
    Path,
    typer.Argument(help="recipe YAML file", show_default=False, parser=given_path),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a recipe field: --set optim.lr=3e-3 (repeatable)"),
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="continue the run from its last checkpoint")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace an existing run folder")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print the plan and exit")]
ThroughputOpt = Annotated[
    float | None,
    number_option(
        "--throughput",
        "with --dry-run: measured training images/s of one GPU, for the cost projection "
        "(default: the figure `distill bench train` cached on this machine)",
        low=0.001,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
NprocOpt = Annotated[
    int, typer.Option("--nproc", min=1, help="processes (GPUs) on this machine, via torchrun")
]

if TYPE_CHECKING:
    from distill_cli.export.protocol import TimingPlan


ThreadsOpt = Annotated[
    int,
    typer.Option(
        "--threads",
        min=0,
        help="CPU threads for PyTorch and ONNX Runtime (0: $OMP_NUM_THREADS, else all cores)",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="where ONNX Runtime and PyTorch are timed: auto (CPU, plus CUDA when "
        "onnxruntime-gpu and a GPU are there), cpu, or cuda (required)",
    ),
]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="untimed calls before timing")]
RunsOpt = Annotated[int, typer.Option("--runs", min=1, help="timed calls, at least")]
MinTimeOpt = Annotated[
    float, number_option("--min-time", "seconds of timed calls per model, at least")
]
MaxTimeOpt = Annotated[
    float, number_option("--max-time", "stop timing one model after this many s")
]
InputSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-size",
        metavar="N|HxW",
        help="input size for a timm name (or an ONNX file of dynamic size): a side (224) or "
        "HxW (224x192), as a recipe's input_size 224 or [224, 192]",
    ),
]
NumClassesOpt = Annotated[
    int | None,
    typer.Option("--num-classes", min=1, help="classifier classes (default: the run's or timm's)"),
]
ExporterOpt = Annotated[
    str, typer.Option("--exporter", help="dynamo or torchscript (the other is the fallback)")
]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset")]
MaxRatioOpt = Annotated[
    float, number_option("--max-ratio", "a student has at most this x teacher's params")
]
LatencyStatOpt = Annotated[
    str, typer.Option("--latency-stat", help="p50 or p90, for --max-latency-ms")
]


def timing_plan(
    threads: int,
    warmup: int,
    runs: int,
    min_time: float,
    max_time: float,
    batch: int = 32,
    device: str = "auto",
) -> TimingPlan:
    """The timing flags every timing command shares, as one protocol (`TimingPlan`)."""
    from distill_cli.export.protocol import TimingPlan

    return TimingPlan(
        threads=threads,
        batch=batch,
        warmup=warmup,
        runs=runs,
        min_time_s=min_time,
        max_time_s=max_time,
        device=device,
    )


def wide_console(width: int = 140) -> Console:
    """The console, or a `width`-column one where stdout is not a terminal (CI logs): rich would
    otherwise squeeze the result tables into 80 columns and cut the figures."""
    from distill_cli.cli.console import console

    return console if console.is_terminal else Console(width=width)
