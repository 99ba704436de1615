"""The API over finished runs: `report` and `compare` (see `distill_cli.api`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from distill_cli import arguments as args
from distill_cli.errors import DistillError, WrongType
from distill_cli.process_state import leaves_process_as_found

if TYPE_CHECKING:
    from distill_cli.reports.compare import Comparison
    from distill_cli.reports.document import ReportResult


@leaves_process_as_found
@args.plain_arguments
def report(run_dir: str | Path) -> ReportResult:
    """`distill report`: report.html, report.md and report_*.png written into the run folder."""
    from distill_cli.reports.document import write_report

    return write_report(args.path(run_dir, "run_dir"))


@leaves_process_as_found
@args.plain_arguments
def compare(run_dirs: Sequence[str | Path], *, plot: str | Path | None = None) -> Comparison:
    """`distill compare`: the runs' differing recipe keys and results; `plot` writes their
    accuracy curves on one figure (PNG)."""
    from distill_cli.reports import plots
    from distill_cli.reports.compare import compare_runs

    if isinstance(run_dirs, (str, os.PathLike)):  # its characters were taken for run folders
        raise WrongType(
            "run_dirs must be a list of run folders, not one path", "run_dirs", "pass [a, b]"
        )
    if not isinstance(run_dirs, Iterable):
        raise WrongType(
            f"run_dirs must be a list of run folders, not {type(run_dirs).__name__}",
            "run_dirs",
            "pass [a, b]",
        )
    folders = [args.path(d, "run_dirs") for d in run_dirs]
    target = args.optional_path(plot, "plot")
    if target is not None:  # checked before any work: the plot is a PNG distill may write
        if target.suffix.lower() != ".png":
            raise DistillError("the plot is written as PNG", str(target), "name a .png file")
        if not target.parent.is_dir():  # distill makes no folders outside its runs
            raise DistillError(
                "cannot write the plot: its folder does not exist",
                str(target),
                "create the folder or pass another --plot",
            )
        if os.path.lexists(target) and not plots.made_by_distill(target):
            raise DistillError(
                "the plot file exists and is not a figure distill wrote; distill will not "
                "replace it",
                str(target),
                "pass --plot with a new .png name, or --no-plot",
            )
    comparison = compare_runs(folders)
    if target is not None:
        plots.save(plots.compare_figure(comparison.runs), target)
    return comparison
