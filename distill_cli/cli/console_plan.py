"""Terminal tables for what a run will do and cost before it runs (`distill run --dry-run`: the
plan, where each fact came from, the cost projection) and how fast its step goes (`distill
bench train`). Rendering only: the figures come from the typed `Plan` and `TrainBench`, so the
table and `--json` never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from distill_cli.bench.train_result import TrainBench
    from distill_cli.train.cost import CostPlan
    from distill_cli.train.plan import Plan


#: The plan's facts about how a model is fed, by the column names of their sources table.
_FACTS = (
    ("weights", "weights"),
    ("num_classes", "classes"),
    ("class_names", "class names"),
    ("input_size", "input"),
    ("mean_std", "mean/std"),
    ("crop_pct", "crop"),
    ("interpolation", "resize"),
)


def plan_table(plan: Plan) -> Group:
    """The plan: the models, data and schedule, then where each fact about how each model is
    fed came from (recipe, side file, timm default, data), so nothing is a silent guess."""
    table = Table(title=f"plan: {plan.method}", show_header=True)
    table.add_column("role")
    table.add_column("model")
    table.add_column("params", justify="right")
    table.add_column("classes", justify="right")
    table.add_column("input")
    table.add_column("mean / std")
    sources = Table(title="where each fact came from", show_header=True)
    sources.add_column("role")
    for _, label in _FACTS:
        sources.add_column(label, overflow="fold")
    for role, m in plan.models.items():
        role = "model" if plan.teacher is None else role
        size = "x".join(str(v) for v in m.input_size)
        norm = f"{tuple(round(v, 3) for v in m.mean)} / {tuple(round(v, 3) for v in m.std)}"
        table.add_row(role, m.name, f"{m.params:,}", str(m.num_classes), size, norm)
        sources.add_row(role, *(getattr(m.sources, key) for key, _ in _FACTS))
    data = plan.data
    val = f"val {data.val.images:,}"
    if data.test:  # data.holdout: val is held out of train, the val split is tested at the end
        val = f"holdout {data.val.images:,}, test {data.test.images:,} (read at the end)"
    elif data.val.name.endswith("(holdout)"):  # a train folder alone: no test split
        val = f"holdout {data.val.images:,}, no test split"
    files = plan.teacher.files if plan.teacher else []  # none: hub weights, random, no teacher
    warnings = plan.recipe_warnings + data.duplicates + data.frames
    table.caption = (
        f"train {data.train.images:,} images ({data.train.name}"
        f"{'' if data.labeled_train else ', unlabeled'}), {val}, "
        f"{data.classes} classes | batch {plan.batch_size}, {plan.steps_per_epoch} "
        f"steps/epoch, {plan.total_steps:,} steps ({_epochs(plan.epochs)}) | {plan.device}, "
        f"{plan.precision}, channels_last={plan.channels_last}, compile={plan.compile} "
        f"| -> {plan.run_dir}"
        + ("" if plan.run_folder == "new" else f" ({plan.run_folder})")
        + ("" if data.read else "\n" + _UNREAD)
        + "".join(f"\nteacher file: {escape(f.line())}" for f in files)
        + "".join(f"\nwarning: {escape(line)}" for line in warnings)
        + "\n"
        + cost_text(plan.cost)
    )
    return Group(table, sources)


_UNREAD = "data not read (not at hand): sizes from data.train_images / data.val_images"


def _epochs(n: float) -> str:
    count = f"{int(n):,}" if float(n).is_integer() else f"{n:g}"
    return f"{count} epoch" if n == 1 else f"{count} epochs"


def cost_text(cost: CostPlan) -> str:
    """The cost lines of a plan: the work, and the projection when there is a throughput."""
    text = f"cost: {cost.images:,} training images ({cost.steps:,} steps, {_epochs(cost.epochs)})"
    if cost.throughput is None:
        hint = "give --throughput N (images/s of one GPU) or run `distill bench train`"
        return f"{text}; for the time {hint}"
    unit = cost.unit  # "GPU", or "CPU process" for a figure measured on this CPU
    units = {"GPU": "GPUs", "CPU process": "CPU processes"}.get(unit, unit)
    rows = ", ".join(
        f"{p.gpus} {unit if p.gpus == 1 else units}: {_hours(p.wall_hours)} wall"
        for p in cost.projections
    )
    hours = cost.projections[0].gpu_hours
    return (
        f"{text} at {cost.throughput:,.0f} images/s per {unit} ({cost.throughput_source}): "
        f"{_amount(hours)} {unit.split()[0]}-hours; {rows} (linear scaling, communication not "
        "counted)"
    )


def _hours(hours: float) -> str:
    seconds = hours * 3600
    if seconds < 60:  # a short run was "0.0 h wall"
        if seconds < 0.05:
            return "< 0.1 s"
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if hours < 0.05:
        return f"{hours * 60:.1f} min"
    return f"{hours / 24:,.1f} days" if hours >= 48 else f"{hours:,.1f} h"


def _amount(hours: float) -> str:
    """Device-hours with the digits that are not zero: a short run was "0 GPU-hours"."""
    if hours >= 10:
        return f"{hours:,.0f}"
    return f"{hours:.2g}" if hours >= 0.01 else "< 0.01"


def bench_train_table(result: TrainBench) -> Table:
    """`distill bench train`: both steps, their ratio, and the data path."""
    title = f"{result.teacher or '-'} -> {result.student}"
    table = Table(title=f"training throughput: {title}")
    table.add_column("")
    table.add_column("images/s", justify="right")
    table.add_row("distill full step", f"{result.distill.images_per_s:,.0f}")
    if result.bare is not None and result.ratio is not None:
        table.add_row("bare step", f"{result.bare.images_per_s:,.0f}")
        target = result.target_ratio
        label = f"ratio (target >= {target})" if target else "ratio"
        table.add_row(label, f"{result.ratio:.3f}")
    if result.bare_script is not None and result.ratio_to_script is not None:
        table.add_row("bare_kd_step.py itself", f"{result.bare_script.images_per_s:,.0f}")
        table.add_row("ratio to the script", f"{result.ratio_to_script:.3f}")
    data, note = result.data_path.images_per_s, result.data_path.note
    table.add_row("data path alone", f"- ({note})" if data is None else f"{data:,.0f}")
    table.caption = (
        f"{result.device}, {result.precision}, batch {result.batch_size}, "
        f"compile={result.compile}, {result.rounds} round(s) (medians)"
    )
    return table
