"""Telling distill's own files from anything else in a run folder, without torch: a recipe that
validates, a checkpoint whose header carries distill's metadata, a metrics.jsonl record of the
types distill writes, and whether a saved recipe is the one a run is resumed with.

`rundir.RunDir` applies them before it writes into, empties or resumes a folder, and when it
reads its metrics back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_cli.errors import DistillError

if TYPE_CHECKING:
    from distill_cli.recipe.document import Recipe
    from distill_cli.rundir.layout import RunDir

#: Recipe keys a resume does not compare: `output.dir` is where the run folder is, and the folder
#: being resumed is the one it names, so a run folder moved or copied elsewhere (a project
#: copied to a cluster's scratch disk) resumes from its new place.
WHERE_THE_RUN_IS = ("output.dir",)
#: Keys a resume need not compare where the data's fingerprint (data.json) is checked instead:
#: the data moved with the project is the same data when its files, sizes and labels are (its
#: paths are fingerprinted relative to the root).
CHECKED_BY_THE_FINGERPRINT = ("data.root",)


@dataclass(frozen=True)
class RecipeChange:
    """One key a resumed run's recipe changes: `optim.lr: 0.001 -> 0.5`."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_shown(self.old)} -> {_shown(self.new)}"

    @property
    def moved(self) -> bool:
        """A path that changed (a saved recipe holds absolute paths): the same file moved, or
        another file."""
        return all(isinstance(v, str) and v.startswith("/") for v in (self.old, self.new))


def moved_bases(saved_run: Path, run: Path) -> tuple[Path, Path] | None:
    """(where the project was, where it is) when the run folder `saved_run` was moved or copied
    to `run` with the folders around it: their longest common trailing part (`runs/fm`)
    stripped from both. None when it did not move, or was renamed (nothing to go by)."""
    old, new = Path(os.path.abspath(saved_run)).parts, Path(os.path.abspath(run)).parts
    same = 0
    while same < min(len(old), len(new)) - 1 and old[-1 - same] == new[-1 - same]:
        same += 1
    if not same or old == new:
        return None
    return Path(*old[: len(old) - same]), Path(*new[: len(new) - same])


def moved_path(path: Path, bases: tuple[Path, Path] | None) -> Path | None:
    """`path` (absolute, as a saved recipe holds it) where it lies now that the project moved
    from bases[0] to bases[1]: the same place under the new base, if something is there."""
    if bases is None or not path.is_relative_to(bases[0]):
        return None
    there = bases[1] / path.relative_to(bases[0])
    return there if there.exists() else None


def in_its_run_folder(recipe: Recipe, path: Path) -> Recipe:
    """A run's saved `recipe.yaml` (`path`), read where its run folder is now.

    The saved recipe holds absolute paths, its own run folder's among them (`output.dir`). A
    project moved or copied elsewhere (to a cluster's scratch disk) and resumed there with
    `distill run runs/fm/recipe.yaml --resume`, the line distill gives for a run, resumed the
    run at the old place: it wrote into the original project, or found nothing there. The run
    folder is the one that holds the file, and the data and teacher paths that moved with it
    are followed as an export follows them. A recipe file of that name outside a run, or one
    whose run is named differently from its folder (copied out and edited), is left as written.
    """
    from distill_cli.recipe.document import paths_mapped

    elsewhere = _run_named_elsewhere(recipe, path)
    if elsewhere is None:
        return recipe
    folder, saved = elsewhere[0].path, elsewhere[1]
    if saved.name != folder.name:  # renamed: refuse_a_renamed_run_folder's case
        return recipe
    bases = moved_bases(saved, folder)
    moved = paths_mapped(recipe, lambda p: p if p.exists() else (moved_path(p, bases) or p))
    output = moved.output.model_copy(update={"dir": folder.parent})
    return moved.model_copy(update={"output": output})


def _run_named_elsewhere(recipe: Recipe, path: Path) -> tuple[RunDir, Path] | None:
    """(the run folder holding `path`, the run folder its recipe names) when `path` is a run's
    saved `recipe.yaml` naming another folder than the one it is in (moved, copied or renamed
    since); None for any other recipe file. What `in_its_run_folder` and
    `refuse_a_renamed_run_folder` both start from."""
    from distill_cli.rundir.layout import RunDir

    run = RunDir(Path(os.path.abspath(path)).parent)
    saved = Path(os.path.abspath(recipe.run_dir))
    if path.name != run.recipe.name or not run.is_run or saved.resolve() == run.path.resolve():
        return None
    return run, saved


def refuse_a_renamed_run_folder(recipe: Recipe, path: Path) -> None:
    """A run's saved `recipe.yaml` read from its run folder renamed since (`cp -r runs/t
    runs/t-try`), given to a command that starts or resumes a run: the recipe names the run
    `t`, so `distill run runs/t-try/recipe.yaml --resume` trained runs/t, without a word. The
    readers (report, export) read the folder itself and are not asked here."""
    from distill_cli.rundir.layout import RunDir

    elsewhere = _run_named_elsewhere(recipe, path)
    if elsewhere is None:
        return
    run, saved = elsewhere
    if saved.name == run.path.name:  # moved or copied whole: in_its_run_folder's case
        return
    original = RunDir(saved)
    if original.is_run:  # the copy sits beside the run it was made from: renaming cannot help
        first = f"to go on with the run itself: distill run {original.recipe} --resume"
    else:
        first = f"name the folder {saved.name!r} again (a run's folder is its name)"
    raise DistillError(
        f"this is the saved recipe of the run {saved.name!r} ({saved}), read from a run folder "
        f"renamed {run.path.name!r}: the run would be {saved.name!r}, not this folder",
        str(path),
        f"{first}; or copy the recipe out of the run folder to start a new run from it",
    )


def recipe_changes(
    saved: Path,
    recipe_yaml: str,
    ignore: tuple[str, ...] = WHERE_THE_RUN_IS,
    run: Path | None = None,
) -> list[RecipeChange]:
    """What the given recipe changes in the saved one, as `key: old -> new` (empty: the same).

    The saved recipe is re-read with today's defaults, so a run started before a recipe key
    existed (saved without it) can still be resumed after an upgrade.
    """
    import yaml
    from pydantic import ValidationError

    from distill_cli.recipe.document import Recipe, parse_yaml
    from distill_cli.recipe.overrides import flatten

    text = saved.read_bytes().decode("utf-8", errors="replace")
    if text == recipe_yaml:
        return []
    try:
        then = flatten(parse_yaml(Recipe.model_validate(parse_yaml(text)).to_yaml()))
    except (ValidationError, yaml.YAMLError, TypeError):
        return [RecipeChange("(the saved recipe)", "unreadable", "this recipe")]
    now = flatten(parse_yaml(recipe_yaml))
    saved_run = Path(str(then.get("output.dir"))) / str(then.get("output.name") or then["name"])
    bases = moved_bases(saved_run, run) if run is not None else None
    for key, value in then.items():  # files that moved with the run folder are the same files
        moved = moved_path(Path(value), bases) if isinstance(value, str) and value else None
        if moved is not None and str(moved) == now.get(key):
            then[key] = now[key]
    return [
        RecipeChange(key, then.get(key), now.get(key))
        for key in [*then, *(k for k in now if k not in then)]
        if key not in ignore and then.get(key) != now.get(key)
    ]


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


#: Keys of metrics.jsonl records that hold text; every other scalar is a number (or null).
_TEXT_KEYS = {"kind", "phase", "name", "method"}


def record_problem(record: dict[str, Any]) -> str | None:
    """Why a metrics.jsonl record is not one distill writes (wrong types), or None."""
    if not isinstance(record.get("kind"), str):
        return "no kind"
    step = record.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        return "step is not an integer"
    for key, value in record.items():
        if key in _TEXT_KEYS or isinstance(value, (list, dict)) or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{key} is not a number"
    return None


def valid_recipe(path: Path) -> bool:
    """The file is a recipe that validates (what distill saves into every run)."""
    import yaml
    from pydantic import ValidationError

    from distill_cli.recipe.document import Recipe, parse_yaml

    try:
        Recipe.model_validate(parse_yaml(path.read_bytes().decode("utf-8")))
    except (ValidationError, yaml.YAMLError, ValueError, TypeError, OSError, RecursionError):
        return False
    except DistillError:
        return False
    return True


def distill_checkpoint(path: Path) -> bool:
    """A safetensors file whose header carries distill's metadata (read without torch: the
    8-byte header length, then the JSON header)."""
    try:
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= 100_000_000:
                return False
            header = json.loads(fh.read(size))
    except (OSError, ValueError):
        return False
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and "distill.meta" in meta
