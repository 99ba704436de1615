"""`distill compare RUN...`: several runs side by side, showing only what differs.

An ablation is a set of runs that differ in a key or two (`method.views`,
`method.teacher_targets`, `schedule.epochs`); everything else is noise in a table. So the recipe
columns are the keys whose values are not the same in every run, and the result columns are the
numbers a paper's table reports: final and best accuracy, agreement, epochs, time, speed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError
from distill_cli.recipe.overrides import flatten
from distill_cli.reports.history import RunHistory, load_run

#: Keys that name a run rather than describe how it was trained; always different, never shown.
IDENTITY_KEYS = ("name", "description", "output.name", "output.dir")
RESULT_COLUMNS = (
    "final top-1",
    "best top-1",
    "agreement",
    "teacher top-1",
    "test top-1",
    "test top-1 of best",
    "epochs",
    "wall time",
    "images/s",
)
_MISSING = object()


@dataclass(frozen=True)
class Comparison:
    runs: list[RunHistory]
    differing: list[str]  # recipe keys, dotted, in recipe order
    recipe_values: list[dict[str, Any]]  # per run, the differing keys' values
    results: list[dict[str, Any]]  # per run, RESULT_COLUMNS as numbers (None when unknown)

    def rows(self) -> list[list[str]]:
        """Text cells: run, each differing key, each result column."""
        out = []
        for run, values, result in zip(self.runs, self.recipe_values, self.results, strict=True):
            cells = [run.name]
            cells += [_cell(values[key]) for key in self.differing]
            cells += [_result_cell(column, result[column]) for column in RESULT_COLUMNS]
            out.append(cells)
        return out

    @property
    def header(self) -> list[str]:
        return ["run", *self.differing, *RESULT_COLUMNS]

    def to_csv(self) -> str:
        """Raw numbers (not rounded) so a spreadsheet can compute with them."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header)
        for run, values, result in zip(self.runs, self.recipe_values, self.results, strict=True):
            recipe_cells = [_cell(values[key]) for key in self.differing]
            numbers = ["" if result[c] is None else result[c] for c in RESULT_COLUMNS]
            writer.writerow([run.name, *recipe_cells, *numbers])
        return buffer.getvalue()

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows()]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "differing": self.differing,
            "runs": [
                {"run": str(run.path), "recipe": _json(values), **result}
                for run, values, result in zip(
                    self.runs, self.recipe_values, self.results, strict=True
                )
            ],
        }


def _json(values: dict[str, Any]) -> dict[str, Any]:
    return {k: "(unset)" if v is _MISSING else v for k, v in values.items()}


def _cell(value: Any) -> str:
    if value is _MISSING:
        return "(unset)"
    if value is None:
        return "null"
    return str(value)


def _result_cell(column: str, value: Any) -> str:
    if value is None:
        return "–"
    if column == "wall time":
        return f"{value / 60:.1f} min"
    if column == "images/s":
        return f"{value:,.0f}"
    if column == "epochs":
        return f"{value:g}"
    return f"{value:.2f}"


def _results(run: RunHistory) -> dict[str, Any]:
    final = run.final_eval()
    test = run.summary.test if run.summary else None
    return {
        "final top-1": final.get("top1"),
        "best top-1": run.best("top1"),
        "agreement": final.get("agreement_top1"),
        "teacher top-1": run.teacher_top1,
        # data.holdout: the columns above are the holdout's; these the test set's, read once
        "test top-1": test.top1 if test else None,
        "test top-1 of best": test.best_top1 if test else None,
        "epochs": run.epochs,
        "wall time": run.wall_time_s,
        "images/s": run.images_per_s,
    }


def differing_keys(recipes: list[dict[str, Any]]) -> list[str]:
    """Dotted keys whose value is not the same in every recipe (a key absent in one differs).

    A section one run leaves out (`teacher: null` in a supervised run) is not its every key
    over again: a teacher's model, checkpoint, strictness and accuracy check against "none"
    buried the keys the runs really differ on. Its keys count among the runs that have the
    section, and its first key (the teacher's `model`) stands for it where that is all that
    differs."""
    flat = [flatten(r) for r in recipes]
    keys: list[str] = []
    for tree in flat:  # first-seen order: the order a reader knows from the recipe file
        keys += [k for k in tree if k not in keys]
    # a null section's keys, met in a later recipe, stand where the section stood
    place = {key: i for i, key in enumerate(keys)}
    keys.sort(key=lambda k: min(place.get(p, place[k]) for p in _prefixes(k)))
    out = []
    shown_sections: set[str] = set()
    for key in keys:
        if key in IDENTITY_KEYS:
            continue
        if any(o.startswith(f"{key}.") for o in keys) and all(f.get(key) is None for f in flat):
            continue  # a null section in one run, keys in another: its keys are the rows
        values = [_value(tree, key) for tree in flat]
        if all(v == values[0] for v in values[1:]):
            continue
        section = _null_section(flat, key)
        if section is not None:
            present = [
                v for v, tree in zip(values, flat, strict=True) if _value(tree, section) is not None
            ]
            agreed = all(v == present[0] for v in present[1:])
            if agreed and section in shown_sections:
                continue
            shown_sections.add(section)
        out.append(key)
    return out


def _value(tree: dict[str, Any], key: str) -> Any:
    """`key`'s value; None under a section that is null in this recipe (no teacher: no
    teacher model), _MISSING when the recipe does not have it."""
    if key in tree:
        return tree[key]
    for prefix in reversed(_prefixes(key)[:-1]):  # the nearest section first
        if prefix in tree:
            return None if tree[prefix] is None else _MISSING
    return _MISSING


def _prefixes(key: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]."""
    parts = key.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _null_section(flat: list[dict[str, Any]], key: str) -> str | None:
    """The section above `key` that is null in one of the recipes, if any."""
    for prefix in _prefixes(key)[:-1]:
        if any(prefix in tree and tree[prefix] is None for tree in flat):
            return prefix
    return None


def _resolved(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe with today's defaults filled in, so a run made before a key existed does not
    differ on it; a recipe this version cannot read is compared as written."""
    from pydantic import ValidationError

    from distill_cli.recipe.document import Recipe

    try:
        return Recipe.model_validate(recipe).model_dump(mode="json")
    except ValidationError:
        return recipe


def compare_runs(paths: list[str | Path]) -> Comparison:
    if len(paths) < 2:
        raise DistillError("compare needs at least two runs", "RUN_DIR...", "pass two run folders")
    runs = [load_run(p) for p in paths]
    seen: dict[Path, Path] = {}
    for run in runs:  # the same run twice gave two identical rows, read as two runs that agree
        first = seen.get(run.path.resolve())
        if first is not None:
            raise DistillError(
                f"the same run is given twice ({first} and {run.path})",
                "RUN_DIR...",
                "pass each run once",
            )
        seen[run.path.resolve()] = run.path
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # runs/a/x and runs/b/x: name them by their whole path
        for run in runs:
            run.label = str(run.path)
    recipes = [_resolved(r.recipe) for r in runs]
    keys = differing_keys(recipes)
    flat = [flatten(r) for r in recipes]
    values = [{k: _value(tree, k) for k in keys} for tree in flat]
    return Comparison(runs, keys, values, [_results(r) for r in runs])
