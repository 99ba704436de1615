"""A run folder read back as data: the one input of `distill report` and `distill compare`.

Reports are built from the files a run leaves behind (`recipe.yaml`, `metrics.jsonl`,
`summary.json`, `export/report.json`), never from a live process, so a report can be made for
any run at any time, including one that was stopped half way (it has no summary yet) or one
trained on another machine and copied over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill_cli.class_eval import ClassEval
from distill_cli.errors import DistillError
from distill_cli.rundir import RunDir
from distill_cli.summary import RunSummary


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
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        notes.append(f"{path.name} is not valid JSON ({exc.msg}); left out")
    except UnicodeDecodeError:
        notes.append(f"{path.name} is not UTF-8 text; left out")
    return None


def _read_metrics(folder: RunDir, notes: list[str]) -> list[dict[str, Any]]:
    """metrics.jsonl; a torn or garbled line (the run was killed while writing it, the disk
    filled up) is skipped with a note."""
    records = []
    for number, (line, record) in enumerate(folder.metric_lines(), 1):
        if record is not None:
            records.append(record)
        elif line.strip():
            notes.append(f"metrics.jsonl line {number} is not JSON; skipped")
    return records


def _read_summary(folder: RunDir, notes: list[str]) -> RunSummary | None:
    """The typed summary, or None (with a note) when it is missing or unreadable."""
    data = _read_json(folder.summary, notes)
    if data is None:
        return None
    try:
        return RunSummary.from_dict(data)
    except (KeyError, TypeError) as exc:
        notes.append(f"{folder.summary.name} is incomplete ({exc}); it was ignored")
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
    if not folder.path.is_dir():
        raise DistillError("no such run folder", str(path), "pass runs/<name>")
    if not folder.recipe.is_file():
        raise DistillError(
            "not a run folder (it has no recipe.yaml)", str(path), "pass runs/<name>"
        )
    notes: list[str] = []
    try:
        recipe = yaml.safe_load(folder.recipe.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DistillError("recipe.yaml is not valid YAML", str(folder.recipe)) from exc
    except UnicodeDecodeError as exc:
        raise DistillError("recipe.yaml is not UTF-8 text", str(folder.recipe)) from exc
    if not isinstance(recipe, dict):
        raise DistillError("recipe.yaml is not a recipe (not a mapping)", str(folder.recipe))
    return RunHistory(
        path=folder.path,
        recipe=recipe,
        records=_read_metrics(folder, notes),
        summary=_read_summary(folder, notes),
        export=_read_json(folder.export_report, notes),
        notes=notes,
        class_eval=_read_class_eval(folder, notes),
    )
