"""The API of what is measured of a student: `export` (ONNX, parity, gates, latency),
`bench_latency` and `bench_train` (see `distill_cli.api`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_cli import arguments as args
from distill_cli.process_state import leaves_process_as_found
from distill_cli.recipe.document import Overrides, Recipe
from distill_cli.recipe.given import given_recipe

if TYPE_CHECKING:
    from distill_cli.bench.latency import LatencyBench
    from distill_cli.bench.train_result import TrainBench
    from distill_cli.export import ExportOptions, ExportReport, TimingPlan
    from distill_cli.export.onnx_export import Exporter


@leaves_process_as_found
@args.plain_arguments
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
@args.plain_arguments
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
    from distill_cli.host import check_classes

    size = args.input_size(input_size)
    check_range(num_classes, "--num-classes", 1, whole=True)
    check_classes(num_classes, "--num-classes")
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


#: The most steps `distill bench train` times or warms up with (`--steps 1e12` never ended).
MAX_BENCH_STEPS = 10_000


@leaves_process_as_found
@args.plain_arguments
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

    long = "more takes hours on a CPU, and the median of 40 already settles the figure"
    check_count(steps, "--steps", 1, MAX_BENCH_STEPS, long)
    check_count(warmup, "--warmup", 0, MAX_BENCH_STEPS, long)
    check_count(rounds, "--rounds", 1, 100, "each round is a whole --steps timing of both steps")
    bare_script = args.optional_path(bare, "bare")
    rec = given_recipe(recipe, overrides, {})  # a Recipe object's overrides were dropped
    return _bench(rec, steps=steps, warmup=warmup, bare_script=bare_script, rounds=rounds)
