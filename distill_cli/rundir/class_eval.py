"""Per-class results of a run's final evaluation: `eval.json`, typed.

Top-1 over all classes hides what an expert looks at first: which classes a model gets wrong,
and what it takes them for. At the final evaluation the engine records a confusion matrix for
the student (the trained model) and the teacher on the validation images; `RunDir` writes it as
`eval.json`, and reports read it back through these types. The file format is defined here
(`to_dict`/`from_dict`) and nowhere else. Plain Python, no torch: a report reads it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Confusion:
    """`counts[i][j]`: validation images of class i predicted as class j."""

    classes: list[str]
    counts: list[list[int]]

    @property
    def images(self) -> int:
        return sum(sum(row) for row in self.counts)

    @property
    def top1(self) -> float | None:
        total = self.images
        hits = sum(self.counts[i][i] for i in range(len(self.classes)))
        return None if total == 0 else 100.0 * hits / total

    def per_class(self) -> list[float | None]:
        """Top-1 of each class in percent (its recall); None for a class without images."""
        return [
            None if sum(row) == 0 else 100.0 * row[i] / sum(row)
            for i, row in enumerate(self.counts)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "counts": [list(row) for row in self.counts],
            "per_class_top1": self.per_class(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Confusion:
        classes = [str(c) for c in data["classes"]]
        counts = [[int(v) for v in row] for row in data["counts"]]
        if len(counts) != len(classes) or any(len(row) != len(classes) for row in counts):
            raise ValueError("a confusion matrix must be classes x classes")
        return cls(classes, counts)


@dataclass(frozen=True)
class ClassEval:
    """`eval.json`: the final evaluation per class, for each model that predicts the data's
    classes. `role` is what the trained model is ("student" in a distillation, "model" in a
    supervised run)."""

    step: int
    role: str
    model: Confusion | None
    teacher: Confusion | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "role": self.role,
            "model": None if self.model is None else self.model.to_dict(),
            "teacher": None if self.teacher is None else self.teacher.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassEval:
        def read(key: str) -> Confusion | None:
            value = data.get(key)
            return None if value is None else Confusion.from_dict(value)

        return cls(int(data["step"]), str(data["role"]), read("model"), read("teacher"))
