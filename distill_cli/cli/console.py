"""Terminal rendering with rich: the progress bars, the final table, and compare's table; the
plan (`--dry-run`, its cost) and bench train's table are in console_plan.py, the export and
bench latency tables in console_export.py, the students and models tables in
console_students.py.

Kept apart from the commands so cli.py stays a list of commands, and apart from the domain
modules (engine, model search, export) so they return data and have no idea what a terminal is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
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

from distill_cli.rundir.summary import WeightsSource

if TYPE_CHECKING:
    from distill_cli.rundir.summary import RunSummary

#: Below this many columns (`COLUMNS=10`, a pane dragged narrow) rich cut every table cell to
#: nothing: a results table without a single figure, the run folder's path cut into pieces.
#: Such a console renders `FLOOR_COLUMNS` wide instead, and the terminal wraps the lines.
MIN_COLUMNS = 40
FLOOR_COLUMNS = 80


def _floored(console: Console) -> Console:
    if console.width < MIN_COLUMNS:
        console.width = FLOOR_COLUMNS
    return console


console = _floored(Console())
err_console = _floored(Console(stderr=True))


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
            self.progress.console.print("[cyan]eval[/] " + "  ".join(parts), soft_wrap=True)
        elif kind == "phase" and not self.quiet:
            self.progress.console.print(f"[magenta]phase[/] {record}", soft_wrap=True)
        elif kind == "opening":
            self._opening(record)

    def _opening(self, record: dict[str, Any]) -> None:
        """The run's first lines (method, data, models, the teacher's weights file), then the data's
        warnings, kept by `--quiet`/`--json` (stderr); one line each, however long."""
        if not self.quiet:
            test = f", test {record['test']:,}" if record["test"] is not None else ""
            out = partial(self.progress.console.print, soft_wrap=True)
            out(
                f"[bold]{escape(record['method'])}[/]: train {record['train']:,} images, val "
                f"{record['val']:,}{test}, {record['classes']} classes"
            )
            if record["teacher"]:
                files = record["teacher_files"] or [None]
                for file in files:  # an ensemble: one line per member's file
                    where = (
                        WeightsSource(**file).line() if file else record["teacher_weights"] or "-"
                    )
                    out(f"teacher {escape(record['teacher'])} <- {escape(where)}")
            role = "student" if record["teacher"] else "model"
            out(f"{role} {escape(record['student'])}")
        for line in record["warnings"]:
            err_console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)

    def finish(self) -> None:
        if self.task is not None:  # stopping a bar never started prints an empty line
            self.progress.stop()


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{suffix}"
    return f"{value:,}{suffix}" if isinstance(value, int) else str(value)


def summary_table(summary: RunSummary) -> Table:
    """The run's result; the trained model is the "student" of a distillation and the "model"
    of a supervised run, and top-5 shows only where it means something (more than 5 classes,
    where the run measured it)."""
    # the caption's lines (the teacher's file, warnings) are read, not admired: left-aligned,
    # a wrapped path stays one block instead of centred fragments
    table = Table(title=f"{summary.name} ({summary.method})", caption_justify="left")
    table.add_column("")
    table.add_column("model")
    table.add_column("params", justify="right")
    table.add_column("top-1", justify="right")
    student, teacher = summary.student, summary.teacher
    test = summary.test  # data.holdout: top-1 is the holdout's, the test set comes apart
    if test is not None:
        table.columns[3].header = "holdout top-1"
    top5 = student.top5 is not None
    if top5:
        table.add_column("top-5", justify="right")
    table.add_column("agreement", justify="right")
    if test is not None:
        table.add_column(f"test top-1 ({test.images:,})", justify="right")
    if teacher:
        cells = [teacher.model, _fmt(teacher.params), _fmt(teacher.top1, "%")]
        cells += [""] * (2 if top5 else 1)
        table.add_row("teacher", *cells, *([_fmt(test.teacher_top1, "%")] if test else []))
    cells = [student.model, _fmt(student.params), _fmt(student.top1, "%")]
    cells += [_fmt(student.top5, "%")] if top5 else []
    cells.append(_fmt(summary.agreement_top1, "%"))
    if test is not None:
        cells.append(f"{_fmt(test.top1, '%')} (best {_fmt(test.best_top1, '%')})")
    table.add_row("student" if teacher else "model", *cells)
    ips = summary.images_per_s
    table.caption = (
        f"{summary.steps} steps in {summary.wall_time_s:.0f}s, "
        f"{_fmt(ips and round(ips))} img/s on {summary.device} | {summary.run_dir}"
    )
    if teacher and teacher.weights:  # a checkpoint dict: which of its weights taught
        table.caption += f"\nteacher weights: {teacher.weights} of its checkpoint"
    if teacher:  # which file (size, hash) taught the student
        table.caption += "".join(f"\nteacher file: {escape(f.line())}" for f in teacher.files)
    bad = _bad_images(summary)
    if bad:  # data.on_bad_image=skip: say so where the result is read
        table.caption += f"\n{bad}"
    for line in summary.duplicates:  # what the numbers above count as unseen, or mislabelled
        table.caption += f"\nwarning: {escape(line)}"
    return table


def _bad_images(summary: RunSummary) -> str:
    """The undecodable files of each split (training ones were replaced by good ones, evaluated
    ones left out), and the images each evaluation is then on."""
    counts = [("training", summary.bad_images, None)]
    counts.append(
        ("holdout" if summary.test else "validation", summary.val_bad_images, summary.val_images)
    )
    if summary.test is not None:
        counts.append(("test", summary.test.bad_images, summary.test.images))
    bad = [(split, n, kept) for split, n, kept in counts if n]
    if not bad:
        return ""
    said = ", ".join(f"{n:,} {split}" for split, n, _ in bad)
    said += " image(s) could not be decoded and were skipped"
    for split, n, kept in bad:
        if kept is not None:
            said += f"; the {split} numbers are on {kept:,} of {kept + n:,} images"
    if summary.lost_classes:  # the model has an output for them and never saw one
        said += (
            f"; NO training image of class(es) {summary.lost_classes[:5]} could be decoded: "
            "the model never saw them"
        )
    return said + " (data.on_bad_image=error names them)"


def comparison_table(comparison: Any, width: int) -> Table:
    """`distill compare`: a row per run; recipe columns (only differing keys) then results.

    Cells fold rather than end in an ellipsis: a cut-off key or run name would hide exactly
    what the comparison is about. Where that table is wider than `width` (a teacher beside its
    student differs in a dozen keys: 20 columns folded to three letters each), it is turned:
    a row per key or result, a column per run, as a diff reads."""
    header, rows = comparison.header, comparison.rows()
    natural = sum(max(len(c) for c in column) + 3 for column in zip(header, *rows, strict=True))
    if natural > width and len(header) > len(rows) + 1:
        return _turned_comparison(comparison, header, rows)
    table = Table(title=f"{len(comparison.runs)} runs", show_header=True)
    differing = set(comparison.differing)
    for column in header:
        recipe_key = column in differing
        table.add_column(
            column,
            style="cyan" if recipe_key else None,
            justify="left" if (recipe_key or column == "run") else "right",
            overflow="fold",
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # run names are text, not rich markup
    if not comparison.differing:
        table.caption = "the runs' recipes are identical (apart from their names)"
    return table


def _turned_comparison(comparison: Any, header: list[str], rows: list[list[str]]) -> Table:
    """The comparison with a row per recipe key or result and a column per run."""
    table = Table(title=f"{len(comparison.runs)} runs", show_header=True)
    table.add_column("", overflow="fold")
    for row in rows:
        table.add_column(Text(row[0]), justify="right", overflow="fold")
    differing = set(comparison.differing)
    for i, key in enumerate(header[1:], start=1):
        style = "cyan" if key in differing else None
        table.add_row(Text(key, style=style or ""), *(Text(row[i]) for row in rows))
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


#: Seconds between progress lines in a non-terminal log (CI) while candidates are sized up.
LOG_EVERY_S = 10.0


@contextmanager
def sweep_progress(quiet: bool = False) -> Iterator[Callable[[str, int, int, str], None]]:
    """`distill students`: progress(phase, done, total, name).

    On a terminal, a transient bar with the phase and the candidate being exported and timed. In
    a log (CI, a pipe), plain lines on stderr: one when a phase starts, one every LOG_EVERY_S
    seconds while candidates are sized up, and one per candidate timed, so a log never sits
    silent for minutes.
    """
    if quiet:
        yield lambda phase, done, total, name: None
        return
    if not err_console.is_terminal:
        yield _log_progress()
        return
    columns = (
        TextColumn("[bold]students {task.fields[phase]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[name]}"),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("students", total=None, name="", phase="")

        def update(phase: str, done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, name=name, phase=phase)

        yield update


def _log_progress() -> Callable[[str, int, int, str], None]:
    import sys
    import time

    state = {"phase": "", "last": 0.0, "start": time.monotonic()}

    def update(phase: str, done: int, total: int, name: str) -> None:
        now = time.monotonic()
        new = phase != state["phase"]
        due = phase == "timing" or now - float(state["last"]) >= LOG_EVERY_S or done == total
        if not (new or due):
            return
        if new:
            state["phase"], state["start"] = phase, now
        state["last"] = now
        elapsed = now - float(state["start"])
        print(
            f"students {phase}: {done}/{total} {name} ({elapsed:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    return update
