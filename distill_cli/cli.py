"""The `distill` command line: parse, call the API, render. No work happens here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from distill_cli import __version__

app = typer.Typer(
    name="distill",
    help="Distill any timm teacher into a small, fast student; validate it; ship it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

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
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"distill {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="show the version")
    ] = False,
) -> None:
    if debug:
        os.environ["DISTILL_DEBUG"] = "1"


def _execute(
    command: str,
    recipe: Path,
    overrides: list[str] | None,
    resume: bool,
    overwrite: bool,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    from distill_cli import api
    from distill_cli.console import RichReporter, console, plan_table, summary_table

    if dry_run:
        plan = api.plan(recipe, overrides)
        console.print_json(json.dumps(plan)) if as_json else console.print(plan_table(plan))
        return
    reporter = RichReporter(quiet=quiet or as_json)
    fn = api.train if command == "train" else api.run
    summary = fn(recipe, overrides, resume=resume, overwrite=overwrite, reporter=reporter)
    console.print_json(json.dumps(summary)) if as_json else console.print(summary_table(summary))


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Distill a teacher into a student as the recipe says (function matching by default)."""
    _execute("run", recipe, set_, resume, overwrite, dry_run, as_json, quiet)


@app.command()
def train(
    recipe: RecipeArg,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a model on labels (a teacher, or the from-scratch baseline)."""
    _execute("train", recipe, set_, resume, overwrite, dry_run, as_json, quiet)
