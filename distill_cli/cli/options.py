"""Argument and option types shared by the `distill` commands, and the console they print to."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

RecipeArg = Annotated[Path, typer.Argument(help="recipe YAML file", show_default=False)]
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
    typer.Option(
        "--throughput",
        min=0.001,
        callback=lambda v: finite(v),
        help="with --dry-run: measured training images/s of one GPU, for the cost projection "
        "(default: the figure `distill bench train` cached on this machine)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def wide_console(width: int = 140) -> Console:
    """The console, or a `width`-column one where stdout is not a terminal (CI logs): rich would
    otherwise squeeze the result tables into 80 columns and cut the figures."""
    from distill_cli.cli.console import console

    return console if console.is_terminal else Console(width=width)


def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinity pass click's range checks but are never a setting."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value
