"""`distill students`: the student that fits a latency budget (see students/search.py).

Built the way `distill export` is: the flags become one `StudentQuery` directly, its timing a
`TimingPlan` from the shared timing flags (cli/options.py, same names and bounds as export),
and the command goes through `api.students` like every other command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from distill_cli.cli.options import (
    ExporterOpt,
    JsonOpt,
    LatencyStatOpt,
    MaxRatioOpt,
    MaxTimeOpt,
    MinTimeOpt,
    OpsetOpt,
    QuietOpt,
    RunsOpt,
    ThreadsOpt,
    WarmupOpt,
    finite,
    given_path,
    timing_plan,
    wide_console,
)
from distill_cli.errors import DistillError


def _split(values: list[str] | None, flag: str) -> tuple[str, ...]:
    """Repeatable options that also take comma-separated lists: --family a,b --family c. One
    given with no name in it (`--candidates "$LIST"`, the variable unset) is refused: it read as
    "no list", and the sweep timed the whole registry instead of the user's few models."""
    names = tuple(v.strip() for item in values or [] for v in item.split(",") if v.strip())
    if values and not names:
        raise DistillError(
            f"{flag} {values[0]!r} holds no name (an unset variable?)",
            flag,
            f"give the names, comma-separated, or leave {flag} out",
        )
    return names


def students_cmd(
    teacher: Annotated[
        str,
        typer.Argument(
            help="the teacher: a timm name, its checkpoint, or the run folder that trained it",
            show_default=False,
        ),
    ],
    max_latency_ms: Annotated[
        float,
        typer.Option(
            "--max-latency-ms", help="budget: ms per call (the statistic of --latency-stat)"
        ),
    ],
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (ONNX Runtime)")] = "cpu",
    input_size: Annotated[
        str,
        typer.Option(
            "--input-size", metavar="N|NxN", help="deployment input side (224 or 224x224)"
        ),
    ] = "224",
    threads: ThreadsOpt = 0,
    batch: Annotated[int, typer.Option("--batch", min=1, help="images per call")] = 1,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, fp16 or int8 (random calibration)")
    ] = "fp32",
    latency_stat: LatencyStatOpt = "p50",
    pattern: Annotated[str, typer.Option("--pattern", help="timm name pattern")] = "*",
    family: Annotated[
        list[str] | None, typer.Option("--family", help="only these families (repeatable)")
    ] = None,
    candidates: Annotated[
        list[str] | None,
        typer.Option("--candidates", help="exactly these models, comma-separated (repeatable)"),
    ] = None,
    max_ratio: MaxRatioOpt = 0.5,
    all_weights: Annotated[
        bool, typer.Option("--all-weights", help="also architectures without pretrained weights")
    ] = False,
    include_test_models: Annotated[
        bool,
        typer.Option("--include-test-models", help="also timm's unit-test networks (test_*)"),
    ] = False,
    dedup: Annotated[
        bool, typer.Option("--dedup/--no-dedup", help="time near-identical variants once")
    ] = True,
    measure_all: Annotated[
        bool,
        typer.Option("--measure-all", help="time every candidate: no skips, no --limit"),
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="time at most N candidates (0: all)")
    ] = 40,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="show the best K that fit")
    ] = None,
    num_classes: Annotated[
        int | None,
        typer.Option(
            "--num-classes",
            min=1,
            help="classifier classes of every candidate (default: timm's: 1000 for ImageNet)",
        ),
    ] = None,
    exporter: ExporterOpt = "dynamo",
    opset: OpsetOpt = 18,
    warmup: WarmupOpt = 10,
    runs: RunsOpt = 100,
    min_time: MinTimeOpt = 5.0,
    max_time: MaxTimeOpt = 60.0,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            callback=finite,
            help="stop timing after S seconds in all (the candidate list is not counted)",
        ),
    ] = None,
    accuracy: Annotated[
        Path | None,
        typer.Option(
            "--accuracy",
            parser=given_path,
            help="timm results CSV (model,top1) to rank by ImageNet top-1",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            parser=given_path,
            help="timing cache (default: $DISTILL_CACHE_DIR, else $XDG_CACHE_HOME/distill, "
            "else ~/.cache/distill)",
        ),
    ] = None,
    write_recipe: Annotated[
        Path | None,
        typer.Option(
            "--write-recipe",
            parser=given_path,
            help="write a function-matching recipe for the best fit",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="recipe data: an image folder, fashion_mnist or synthetic"),
    ] = None,
    teacher_checkpoint: Annotated[
        Path | None,
        typer.Option("--teacher-checkpoint", parser=given_path, help="recipe teacher weights"),
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
    """The best timm students of TEACHER within a latency budget, timed on this machine.

    Exit codes: 0 a student fits; 1 candidates were timed and none fits; 3 nothing could be
    timed within --limit / --time-budget (no answer yet); 2 bad usage.
    """
    from distill_cli import api
    from distill_cli.cli.console import console, sweep_progress
    from distill_cli.cli.console_students import students_table
    from distill_cli.students.recipe import NoFit
    from distill_cli.students.search import outcome
    from distill_cli.students.types import StudentQuery

    query = StudentQuery(
        teacher=teacher,
        max_latency_ms=max_latency_ms,
        device=device,
        input_size=input_size,
        batch=batch,
        precision=precision,
        latency_stat=latency_stat,
        pattern=pattern,
        families=_split(family, "--family"),
        candidates=_split(candidates, "--candidates"),
        max_ratio=max_ratio,
        pretrained_only=not all_weights,
        include_test_models=include_test_models,
        dedup=dedup,
        measure_all=measure_all,
        limit=limit,
        top=top,
        num_classes=num_classes,
        exporter=exporter,
        opset=opset,
        timing=timing_plan(threads, warmup, runs, min_time, max_time),
        time_budget_s=time_budget,
        accuracy_csv=accuracy,
        cache_dir=cache_dir,
    )
    with sweep_progress(quiet=quiet or as_json) as progress:
        try:
            search = api.students(
                query,
                progress=progress,
                write_recipe=write_recipe,
                data=data,
                teacher_checkpoint=teacher_checkpoint,
                student=student,
                name=name,
                force=force,
            )
        except NoFit as exc:
            failure: Exception | None = exc
            search = exc.search
        else:
            failure = outcome(search)
    if as_json:
        console.print_json(json.dumps(search.to_dict()))
    else:
        wide_console(180).print(students_table(search))
    if failure is not None:
        raise failure
