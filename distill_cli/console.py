"""Terminal rendering with rich: the progress bar, the plan, the final table.

Kept apart from the commands so cli.py stays a list of commands, and apart from the engine so
training has no idea what a terminal is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


class RichReporter:
    """Progress bar with epoch, loss, images/s and ETA; evaluations printed as they happen."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self.task: Any = None
        self.epochs = 0

    def start(self, total_steps: int, done_steps: int, epochs: int) -> None:
        self.epochs = epochs
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=total_steps,
            completed=done_steps,
            epoch=1,
            epochs=epochs,
            loss="-",
            ips="-",
        )

    def advance(self, step: int, epoch: int) -> None:
        self.progress.update(self.task, completed=step, epoch=epoch + 1)

    def log(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "train":
            ips = record.get("images_per_s")
            loss = record.get("loss")  # None: every step of the window was skipped
            self.progress.update(
                self.task,
                loss="-" if loss is None else f"{loss:.4f}",
                ips=f"{ips:,.0f}" if ips else "-",
            )
        elif kind == "eval" and not self.quiet:
            shown = {k: v for k, v in record.items() if k not in ("kind", "step")}
            parts = [
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()
            ]
            self.progress.console.print("[cyan]eval[/] " + "  ".join(parts))
        elif kind == "phase" and not self.quiet:
            self.progress.console.print(f"[magenta]phase[/] {record}")

    def finish(self) -> None:
        self.progress.stop()


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{suffix}"
    return f"{value:,}{suffix}" if isinstance(value, int) else str(value)


def plan_table(plan: dict[str, Any]) -> Table:
    table = Table(title=f"plan: {plan['method']}", show_header=True)
    table.add_column("role")
    table.add_column("model")
    table.add_column("params", justify="right")
    table.add_column("classes", justify="right")
    table.add_column("input")
    table.add_column("mean / std")
    for role, m in plan["models"].items():
        size = "x".join(str(v) for v in m["input_size"])
        norm = f"{tuple(round(v, 3) for v in m['mean'])} / {tuple(round(v, 3) for v in m['std'])}"
        table.add_row(role, m["name"], f"{m['params']:,}", str(m["num_classes"]), size, norm)
    data = plan["data"]
    table.caption = (
        f"train {data['train']['images']:,} images ({data['train']['name']}"
        f"{'' if data['labeled_train'] else ', unlabeled'}), val {data['val']['images']:,}, "
        f"{data['classes']} classes | batch {plan['batch_size']}, {plan['steps_per_epoch']} "
        f"steps/epoch, {plan['total_steps']} steps ({plan['epochs']} epochs) | {plan['device']}, "
        f"{plan['precision']}, channels_last={plan['channels_last']}, compile={plan['compile']} "
        f"| -> {plan['run_dir']}"
    )
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['name']} ({summary['method']})")
    table.add_column("")
    table.add_column("model")
    table.add_column("params", justify="right")
    table.add_column("top-1", justify="right")
    table.add_column("agreement", justify="right")
    student, teacher = summary["student"], summary.get("teacher")
    if teacher:
        table.add_row(
            "teacher", teacher["model"], _fmt(teacher["params"]), _fmt(teacher["top1"], "%"), ""
        )
    table.add_row(
        "student",
        student["model"],
        _fmt(student["params"]),
        _fmt(student["top1"], "%"),
        _fmt(summary["agreement"]["top1"], "%"),
    )
    ips = summary.get("images_per_s")
    table.caption = (
        f"{summary['steps']} steps in {summary['wall_time_s']:.0f}s, "
        f"{_fmt(ips and round(ips))} img/s on {summary['device']} | {summary['run_dir']}"
    )
    return table


def bench_train_table(result: dict[str, Any]) -> Table:
    """`distill bench train`: both steps, their ratio, and the data path."""
    models = result.get("models", {})
    title = f"{models.get('teacher', '-')} -> {models.get('student', '-')}"
    table = Table(title=f"training throughput: {title}")
    table.add_column("")
    table.add_column("images/s", justify="right")
    table.add_row("distill full step", f"{result['distill']['images_per_s']:,.0f}")
    if "bare" in result:
        table.add_row("bare step", f"{result['bare']['images_per_s']:,.0f}")
        table.add_row("ratio (target >= 0.95)", f"{result['ratio']:.3f}")
    data = result["data_path"].get("images_per_s")
    table.add_row("data path alone", "-" if data is None else f"{data:,.0f}")
    table.caption = (
        f"{result['device']}, {result['precision']}, batch {result['batch_size']}, "
        f"compile={result['compile']}"
    )
    return table


def comparison_table(comparison: Any) -> Table:
    """`distill compare`: a row per run; recipe columns (only differing keys) then results.

    Cells fold rather than end in an ellipsis: a cut-off key or run name would hide exactly
    what the comparison is about."""
    table = Table(title=f"{len(comparison.runs)} runs", show_header=True)
    differing = set(comparison.differing)
    for column in comparison.header:
        recipe_key = column in differing
        table.add_column(
            column,
            style="cyan" if recipe_key else None,
            justify="left" if (recipe_key or column == "run") else "right",
            overflow="fold",
        )
    for row in comparison.rows():
        table.add_row(*(Text(cell) for cell in row))  # run names are text, not rich markup
    if not comparison.differing:
        table.caption = "the runs' recipes are identical (apart from their names)"
    return table


@contextmanager
def progress_bar(description: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A transient bar for work measured as (done, total); the callback is what the API takes."""
    if quiet or not err_console.is_terminal:
        yield lambda done, total: None
        return
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
