"""The `distill` command line: parse, call the API, render. No work happens here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from distill_cli import __version__
from distill_cli.cli.export import bench_app, export_cmd
from distill_cli.cli.launch import processes
from distill_cli.cli.options import (
    DryRunOpt,
    JsonOpt,
    MaxRatioOpt,
    NprocOpt,
    OverwriteOpt,
    QuietOpt,
    RecipeArg,
    ResumeOpt,
    SetOpt,
    ThroughputOpt,
    given_path,
    wide_console,
)
from distill_cli.cli.students import students_cmd
from distill_cli.errors import RunInterrupted
from distill_cli.train.world import leave_launcher, world_from_env

app = typer.Typer(
    name="distill",
    help="Distill any timm teacher into a small, fast student; validate it; ship it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # `-h` as argparse tools (timm's train.py, the benchmarks) take it; every command inherits it
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("export")(export_cmd)
app.add_typer(bench_app, name="bench")
app.command("students")(students_cmd)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"distill {__version__}")
        raise typer.Exit()


#: The commands that use several processes when a launcher starts them (torchrun, srun).
DISTRIBUTED_COMMANDS = ("run", "train")


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="show the version")
    ] = False,
) -> None:
    if debug:
        os.environ["DISTILL_DEBUG"] = "1"
    if ctx.invoked_subcommand not in DISTRIBUTED_COMMANDS:
        # `distill export/report/students/bench ...` started under torchrun or srun: rank 0
        # does it once, as one process; N copies writing the same files would race, and print
        # N times
        if not _main_process():
            raise typer.Exit(0)
        leave_launcher()


def _main_process() -> bool:
    """Whether this process does a one-process command: rank 0, or no launcher. A command
    that does not train has no use for the launcher's variables, even wrong ones."""
    from distill_cli.errors import DistillError

    try:
        return world_from_env().is_main
    except DistillError:
        return True


def _execute(
    command: str,
    recipe: Path,
    overrides: list[str] | None,
    resume: bool,
    overwrite: bool,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
    throughput: float | None = None,
) -> None:
    from distill_cli import api
    from distill_cli.cli.console import RichReporter, console, summary_table
    from distill_cli.cli.console_plan import plan_table

    if throughput is not None and not dry_run:
        raise typer.BadParameter("--throughput is for the cost projection of --dry-run")
    if dry_run:
        if not world_from_env().is_main:  # a plan is read-only: said once, by rank 0
            return
        plan = api.plan(
            recipe,
            overrides,
            throughput=throughput,
            resume=resume,
            overwrite=overwrite,
            train=command == "train",
        )
        if as_json:
            console.print_json(json.dumps(plan.to_dict()))
        else:
            console.print(plan_table(plan))
        return
    main = world_from_env().is_main  # under torchrun only the main process reports
    reporter = RichReporter(quiet=quiet or as_json or not main)
    fn = api.train if command == "train" else api.run
    try:
        result = fn(recipe, overrides, resume=resume, overwrite=overwrite, reporter=reporter)
    except RunInterrupted as exc:  # Python's Ctrl-C; the command says where the run stopped
        raise exc.error from None
    finally:
        reporter.finish()  # an error must not leave a live progress bar behind
    if not main:
        return
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        console.print(summary_table(result))


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: DryRunOpt = False,
    throughput: ThroughputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    nproc: NprocOpt = 1,
) -> None:
    """Distill a teacher into a student as the recipe says (function matching by default)."""
    from distill_cli.recipe.files import refuse_stdin_for_processes

    refuse_stdin_for_processes(recipe, nproc)
    processes(nproc, sys.argv[1:])
    _execute("run", recipe, set_, resume, overwrite, dry_run, as_json, quiet, throughput)


@app.command()
def train(
    recipe: RecipeArg,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: DryRunOpt = False,
    throughput: ThroughputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    nproc: NprocOpt = 1,
) -> None:
    """Train a model on labels (a teacher, or the from-scratch baseline)."""
    from distill_cli.recipe.files import refuse_stdin_for_processes

    refuse_stdin_for_processes(recipe, nproc)
    processes(nproc, sys.argv[1:])  # a teacher on several GPUs, as `run`
    _execute("train", recipe, set_, resume, overwrite, dry_run, as_json, quiet, throughput)


# --- looking at results ----------------------------------------------------------------------

RunsArg = Annotated[
    list[Path],
    typer.Argument(parser=given_path, help="run folders (runs/<name>)", show_default=False),
]


@app.command()
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(parser=given_path, help="a run folder (runs/<name>)", show_default=False),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Write report.html + report.md (curves, teacher vs student, export latency) into a run."""
    from dataclasses import asdict

    from rich.markup import escape

    from distill_cli import api
    from distill_cli.cli.console import console

    result = api.report(run_dir)
    if as_json:
        console.print_json(json.dumps(asdict(result), default=str))
        return
    console.print(f"[bold]report[/] {escape(str(result.html))}")
    console.print(f"[bold]markdown[/] {escape(str(result.markdown))}")
    for image in result.images:
        console.print(f"[dim]figure {escape(str(image))}[/]")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


@app.command()
def compare(
    run_dirs: RunsArg,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV (raw numbers) instead")] = False,
    md: Annotated[bool, typer.Option("--md", help="print a Markdown table instead")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            parser=given_path,
            help="accuracy curves of all runs, PNG (table output: compare.png)",
        ),
    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="do not write the plot")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Runs side by side: the recipe keys that differ, accuracy, agreement, time, speed."""
    from rich.markup import escape

    from distill_cli import api
    from distill_cli.cli.console import comparison_table, console

    machine = as_json or csv or md  # pipes get only what they asked for: no stray files
    if plot is None and not (machine or no_plot):
        plot = Path("compare.png")
    result = api.compare(run_dirs, plot=None if no_plot else plot)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    elif csv or md:
        typer.echo(result.to_csv() if csv else result.to_markdown(), nl=False)
    else:
        out = wide_console(220)
        out.print(comparison_table(result, out.width))
        if plot is not None and not no_plot:
            console.print(f"[dim]plot {escape(str(plot))}[/]")
        for run in result.runs:  # a summary.json left out: its row's figures are the metrics'
            for note in run.notes:
                console.print(f"[yellow]note:[/] {escape(run.name)}: {escape(note)}")


@app.command()
def models(
    pattern: Annotated[
        str, typer.Argument(help="timm name pattern: 'resnet*', '*mobilenet*' or a word")
    ] = "*",
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="mark the sensible students for this teacher (timm name, checkpoint or run)",
        ),
    ] = None,
    pretrained: Annotated[
        bool, typer.Option("--pretrained", help="only models with pretrained weights in timm")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="list at most N models (0: all)")
    ] = 50,
    flops: Annotated[
        bool, typer.Option("--flops", help="also GFLOPs at the default input")
    ] = False,
    max_ratio: MaxRatioOpt = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """timm models matching PATTERN: parameters, default input size, student candidates."""
    from distill_cli import api
    from distill_cli.cli.console import console, progress_bar
    from distill_cli.cli.console_students import models_table

    with progress_bar("building models on the meta device", quiet=as_json) as progress:
        search = api.models(
            pattern,
            teacher=teacher,
            pretrained_only=pretrained,
            limit=limit or None,
            flops=flops,
            max_ratio=max_ratio,
            progress=progress,
        )
    if as_json:
        console.print_json(json.dumps(search.to_dict()))
    else:
        wide_console().print(models_table(search))


recipes_app = typer.Typer(help="The shipped recipes.", invoke_without_command=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.callback()
def recipes_list(ctx: typer.Context) -> None:
    """List the shipped recipes, one line each."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from distill_cli import api

    table = Table(show_header=True, box=None)
    table.add_column("recipe", style="bold")
    table.add_column("what it is")
    for entry in api.recipes():
        table.add_row(entry.name, entry.summary)
    wide_console().print(table)  # one line each, in a pipe too


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="e.g. methods/kd")]) -> None:
    """Print one recipe (with its comments) and where it is."""
    from distill_cli import api

    entry = api.shipped_recipe(name)
    text = entry.text()
    typer.echo(f"# {entry.path}")
    typer.echo(text.rstrip())
