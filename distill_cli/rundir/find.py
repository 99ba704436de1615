"""Which run a user meant, from what they gave instead of a run folder: a folder of runs, a
folder or file inside a run, or the recipe a run was made from.

One owner for that advice, so `distill export`, `distill report` and `distill compare` name the
same run for the same mistake (each said "pass runs/<name>" or its own variant before).
"""

from __future__ import annotations

from pathlib import Path

from distill_cli.rundir.layout import RunDir

#: the advice when nothing given points at a run
GENERIC = "pass runs/<name> from `distill run`"


def enclosing_run(path: Path) -> Path | None:
    """The run folder `path` lies in (a checkpoint, export/, summary.json), if any."""
    return next((p for p in path.parents if RunDir(p).is_run), None)


def runs_in(folder: Path) -> list[Path]:
    """The run folders directly inside `folder` (a folder of runs: `runs/`)."""
    try:
        return sorted(f for f in folder.iterdir() if f.is_dir() and RunDir(f).is_run)
    except OSError:
        return []


def recipe_run(path: Path) -> Path | None:
    """The run folder a recipe file names (`output.dir`/`output.name`), when `path` is one."""
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return None
    from distill_cli.errors import DistillError
    from distill_cli.recipe.document import load_recipe

    try:
        return load_recipe(path).run_dir
    except (DistillError, OSError, ValueError):
        return None


def run_advice(path: Path) -> str:
    """What to pass instead of `path`, which is not a run folder, named from what it is."""
    inside = enclosing_run(path)
    if inside is not None:
        return f"pass the run folder {inside}"
    runs = runs_in(path) if path.is_dir() else []
    if runs:
        more = f" ({len(runs)} runs)" if len(runs) > 3 else ""
        return "pass one of the runs in it: " + ", ".join(map(str, runs[:3])) + more
    made = recipe_run(path)
    if made is not None:
        if RunDir(made).is_run:
            return f"that is a recipe; pass the run folder it made: {made}"
        return f"that is a recipe, and its run folder {made} holds no run yet: distill run {path}"
    return GENERIC
