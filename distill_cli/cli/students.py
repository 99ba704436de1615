"""`distill students`: the student that fits a latency budget (see students.py for the logic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from distill_cli.cli.options import JsonOpt, QuietOpt, wide_console


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable options that also take comma-separated lists: --family a,b --family c."""
    return tuple(v.strip() for item in values or [] for v in item.split(",") if v.strip())


def students_cmd(
    teacher: Annotated[str, typer.Argument(help="the teacher's timm name", show_default=False)],
    max_latency_ms: Annotated[
        float,
        typer.Option(
            "--max-latency-ms", help="budget: ms per call (the statistic of --latency-stat)"
        ),
    ],
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (ONNX Runtime)")] = "cpu",
    input_size: Annotated[int, typer.Option("--input-size", help="deployment input side")] = 224,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (0: all cores)")] = 0,
    batch: Annotated[int, typer.Option("--batch", help="images per call")] = 1,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, fp16 or int8 (random calibration)")
    ] = "fp32",
    latency_stat: Annotated[
        str, typer.Option("--latency-stat", help="p50 or p90, as `distill export`")
    ] = "p50",
    pattern: Annotated[str, typer.Option("--pattern", help="timm name pattern")] = "*",
    family: Annotated[
        list[str] | None, typer.Option("--family", help="only these families (repeatable)")
    ] = None,
    candidates: Annotated[
        list[str] | None,
        typer.Option("--candidates", help="exactly these models, comma-separated (repeatable)"),
    ] = None,
    max_ratio: Annotated[
        float, typer.Option("--max-ratio", help="a student has at most this x teacher's params")
    ] = 0.5,
    all_weights: Annotated[
        bool, typer.Option("--all-weights", help="also architectures without pretrained weights")
    ] = False,
    dedup: Annotated[
        bool, typer.Option("--dedup/--no-dedup", help="time near-identical variants once")
    ] = True,
    measure_all: Annotated[
        bool, typer.Option("--measure-all", help="no skipping of predicted-over candidates")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="time at most N candidates (0: all)")] = 40,
    top: Annotated[int | None, typer.Option("--top", help="show the best K that fit")] = None,
    num_classes: Annotated[
        int | None, typer.Option("--num-classes", help="classifier size (default: timm's)")
    ] = None,
    exporter: Annotated[
        str, typer.Option("--exporter", help="dynamo or torchscript (the other is the fallback)")
    ] = "dynamo",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset")] = 18,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed calls before timing")] = 10,
    runs: Annotated[int, typer.Option("--runs", help="timed calls, at least")] = 100,
    min_time: Annotated[
        float, typer.Option("--min-time", help="seconds of timed calls per model, at least")
    ] = 5.0,
    max_time: Annotated[
        float | None,
        typer.Option("--max-time", help="stop the sweep after S seconds, keep what was timed"),
    ] = None,
    accuracy: Annotated[
        Path | None,
        typer.Option("--accuracy", help="timm results CSV (model,top1) to rank by ImageNet top-1"),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="timing cache (default ~/.cache/distill)")
    ] = None,
    write_recipe: Annotated[
        Path | None,
        typer.Option("--write-recipe", help="write a function-matching recipe for the best fit"),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="recipe data: an image folder, fashion_mnist or synthetic"),
    ] = None,
    teacher_checkpoint: Annotated[
        Path | None, typer.Option("--teacher-checkpoint", help="recipe teacher weights")
    ] = None,
    student: Annotated[
        str | None, typer.Option("--student", help="recipe for this fit instead of the best")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="recipe run name")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace an existing --write-recipe file")
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The best timm students of TEACHER within a latency budget, timed on this machine."""
    # students.search_students is what api.students calls; called directly because
    # distill_cli.api imports the training engine and torch, seconds a cached answer skips.
    from distill_cli.cli.console import console, students_table, sweep_progress
    from distill_cli.errors import RunFailed
    from distill_cli.students.recipe import NoFit
    from distill_cli.students.search import search_students

    options = {
        "device": device,
        "input_size": input_size,
        "threads": threads,
        "batch": batch,
        "precision": precision,
        "latency_stat": latency_stat,
        "pattern": pattern,
        "families": _split(family),
        "candidates": _split(candidates),
        "max_ratio": max_ratio,
        "pretrained_only": not all_weights,
        "dedup": dedup,
        "measure_all": measure_all,
        "limit": limit,
        "top": top,
        "num_classes": num_classes,
        "exporter": exporter,
        "opset": opset,
        "warmup": warmup,
        "runs": runs,
        "min_time_s": min_time,
        "max_sweep_s": max_time,
        "accuracy_csv": accuracy,
        "cache_dir": cache_dir,
    }

    def show(search: object) -> None:
        if as_json:
            console.print_json(json.dumps(search.to_dict()))  # type: ignore[attr-defined]
        else:
            wide_console(180).print(students_table(search))

    with sweep_progress(quiet=quiet or as_json) as progress:
        try:
            search = search_students(
                teacher,
                max_latency_ms,
                progress=progress,
                write_recipe=write_recipe,
                data=data,
                teacher_checkpoint=teacher_checkpoint,
                student=student,
                recipe_name=name,
                force=force,
                **options,
            )
        except NoFit as exc:
            failure: NoFit | None = exc
            search = exc.search
        else:
            failure = None
    show(search)
    if failure is not None:
        raise failure
    if search.best is None:
        raise RunFailed(
            f"no candidate fits {max_latency_ms:g} ms ({latency_stat}, batch {batch}, {precision})",
            teacher,
            "raise --max-latency-ms, lower --input-size, or try --precision int8",
        )
