"""A run folder read back as data: the one input of `distill report` and `distill compare`.

Reports are built from the files a run leaves behind (`recipe.yaml`, `metrics.jsonl`,
`summary.json`, `export/report.json`), never from a live process, so a report can be made for
any run at any time, including one that was stopped half way (it has no summary yet) or one
trained on another machine and copied over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from distill_cli.errors import DistillError
from distill_cli.recipe.yaml_text import parse_yaml
from distill_cli.rundir.class_eval import ClassEval
from distill_cli.rundir.find import run_advice
from distill_cli.rundir.layout import RunDir
from distill_cli.rundir.summary import RunSummary

#: What to do about a run folder whose recipe.yaml was damaged after the run wrote it.
_RESTORE = "restore the recipe.yaml the run wrote (it is the run's resolved recipe)"


@dataclass(frozen=True)
class Series:
    """One plotted curve: x and y of equal length."""

    x: list[float]
    y: list[float]


@dataclass
class RunHistory:
    path: Path
    recipe: dict[str, Any]
    records: list[dict[str, Any]]
    summary: RunSummary | None
    export: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    label: str | None = None  # how tables and legends name the run (default: the folder name)
    #: the final evaluation per class (eval.json); None for runs without labels or older runs
    class_eval: ClassEval | None = None

    @property
    def trained_role(self) -> str:
        """What the trained model is: the "student" of a distillation, the "model" of a
        supervised run (a teacher trained with `distill train`, or a baseline)."""
        return "student" if self.recipe.get("teacher") else "model"

    @property
    def name(self) -> str:
        return self.label or self.path.resolve().name

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]

    def series(self, kind: str, key: str, x: str = "step") -> Series:
        """`key` of the `kind` records that have it, against `x` (`step` or `epoch`)."""
        rows = [r for r in self.kind(kind) if isinstance(r.get(key), (int, float))]
        return Series([float(r[x]) for r in rows], [float(r[key]) for r in rows])

    def final_eval(self) -> dict[str, Any]:
        evals = self.kind("eval")
        return evals[-1] if evals else {}

    def best(self, key: str = "top1") -> float | None:
        values = self.series("eval", key).y
        return max(values) if values else None

    @property
    def teacher_top1(self) -> float | None:
        """The teacher's accuracy, measured once by the run on the same validation data."""
        value = self.final_eval().get("teacher_top1")
        if value is None and self.summary and self.summary.teacher:
            value = self.summary.teacher.top1
        return value

    @property
    def images_per_s(self) -> float | None:
        if self.summary and self.summary.images_per_s:
            return float(self.summary.images_per_s)
        values = self.series("train", "images_per_s").y
        return sum(values) / len(values) if values else None

    @property
    def wall_time_s(self) -> float | None:
        return None if self.summary is None else self.summary.wall_time_s

    @property
    def epochs(self) -> float | None:
        """Epochs run; for a stopped run, the whole epochs its records show were completed.

        An eval record's epoch counts completed epochs, a train record's is the index of the
        epoch in progress, which is the same count; so the largest of either is the answer."""
        if self.summary is not None:
            return self.summary.epochs
        epochs = [r["epoch"] for r in self.records if isinstance(r.get("epoch"), (int, float))]
        return max(epochs) if epochs else None


def _read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """A JSON object from `path`, or None with a note (not JSON, not UTF-8, not an object)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        notes.append(f"{path.name} is not valid JSON ({exc.msg}); left out")
        return None
    except UnicodeDecodeError:
        notes.append(f"{path.name} is not UTF-8 text; left out")
        return None
    except RecursionError:
        notes.append(f"{path.name} nests too deep to be distill's; left out")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.name} is not a JSON object ({type(data).__name__}); left out")
        return None
    return data


#: What the report reads from export/report.json: each block's type (a list or mapping of
#: dicts where the report iterates). A hand-edited file that breaks it is left out, noted.
_EXPORT_SHAPE: dict[str, type] = {
    "model": dict,
    "teachers": list,
    "parity": dict,
    "variants": dict,
    "latency": dict,
    "gates": dict,
}


def _export_problem(report: dict[str, Any]) -> str | None:
    """Why export/report.json does not have the shape the report reads, or None."""
    for key, kind in _EXPORT_SHAPE.items():
        value = report.get(key)
        if value is not None and not isinstance(value, kind):
            return f"{key} is not a {kind.__name__}"
    items = [*(report.get("teachers") or []), *(report.get("variants") or {}).values()]
    if not all(isinstance(item, dict) for item in items):
        return "teachers/variants hold something other than objects"
    for variant in (report.get("variants") or {}).values():
        if not isinstance(variant.get("parity") or {}, dict):
            return "a variant's parity is not an object"
    if not isinstance((report.get("parity") or {}).get("inputs") or {}, dict):
        return "parity.inputs is not an object"
    latency = report.get("latency") or {}
    entries = latency.get("entries") or []
    if not isinstance(entries, list) or not isinstance(latency.get("protocol") or {}, dict):
        return "latency.entries is not a list"
    for entry in entries:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("name", "model", "runtime", "variant")
        ):
            return "a latency entry lacks its names"
        if any(isinstance(entry.get(k), (bool, list, dict)) for k in ("p50_ms", "p90_ms")):
            return "a latency entry has non-numeric times"
    for block in (report.get("model") or {}, *(report.get("teachers") or [])):
        if any(isinstance(block.get(k), (str, bool, list, dict)) for k in ("params", "gflops")):
            return "params/gflops are not numbers"
    return None


def _read_export(folder: RunDir, notes: list[str]) -> dict[str, Any] | None:
    """export/report.json when it has the shape distill writes; else None with a note."""
    report = _read_json(folder.export_report, notes)
    problem = None if report is None else _export_problem(report)
    if problem is not None:
        notes.append(f"export/report.json is damaged ({problem}); the export is left out")
        return None
    return report


def _read_metrics(folder: RunDir, notes: list[str]) -> list[dict[str, Any]]:
    """metrics.jsonl; a torn, garbled or hand-broken line (the run was killed while writing
    it, the disk filled up, wrong types) is skipped with a note."""
    records = []
    for number, (line, record) in enumerate(folder.metric_lines(), 1):
        if record is not None:
            records.append(record)
        elif line.strip():
            notes.append(
                f"metrics.jsonl line {number} is not JSON (or not a distill record); skipped"
            )
    return records


def _read_summary(folder: RunDir, notes: list[str]) -> RunSummary | None:
    """The typed summary, or None (with a note) when it is missing or unreadable."""
    data = _read_json(folder.summary, notes)
    if data is None:
        return None
    try:  # the folder it was read from, not the one written (the folder may have moved)
        return replace(RunSummary.from_dict(data), run_dir=folder.path)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # the exception's own text was Python's ("ModelResult() argument after ** must be a
        # mapping, not str"); what the reader can act on is which key, or that a value is off
        why = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else "a value of another type"
        notes.append(
            f"{folder.summary.name} is not what distill writes ({why}: edited by hand, or "
            "written by another version); it was ignored"
        )
        return None


def _read_class_eval(folder: RunDir, notes: list[str]) -> ClassEval | None:
    try:
        return folder.read_class_eval()
    except DistillError as exc:
        notes.append(f"{folder.class_eval.name} left out: {exc.what}")
        return None


def load_run(path: str | Path) -> RunHistory:
    """Read a run folder; a folder that is not a run is a one-line error naming it."""
    folder = RunDir(Path(path))
    if folder.path.is_file():  # a checkpoint or summary of the run: "no such folder" was wrong
        raise DistillError("a file, not a run folder", str(path), run_advice(folder.path))
    if folder.path.exists() and not folder.path.is_dir():  # /dev/null, a pipe, a socket
        raise DistillError(
            "not a run folder (not a regular file or folder)", str(path), run_advice(folder.path)
        )
    if not folder.path.is_dir():
        raise DistillError("no such run folder", str(path), run_advice(folder.path))
    if not folder.recipe.is_file():
        empty = " (an empty argument, such as an unset $RUN, is this folder)"
        raise DistillError(
            "not a run folder (it has no recipe.yaml)" + (empty if folder.path == Path() else ""),
            str(path),
            run_advice(folder.path),
        )
    notes: list[str] = []
    try:
        recipe = parse_yaml(folder.recipe.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DistillError("recipe.yaml is not valid YAML", str(folder.recipe), _RESTORE) from exc
    except UnicodeDecodeError as exc:
        raise DistillError("recipe.yaml is not UTF-8 text", str(folder.recipe), _RESTORE) from exc
    if not isinstance(recipe, dict):
        raise DistillError(
            "recipe.yaml is not a recipe (not a mapping)", str(folder.recipe), _RESTORE
        )
    return RunHistory(
        path=folder.path,
        recipe=recipe,
        records=_read_metrics(folder, notes),
        summary=_read_summary(folder, notes),
        export=_read_export(folder, notes),
        notes=notes,
        class_eval=_read_class_eval(folder, notes),
    )
