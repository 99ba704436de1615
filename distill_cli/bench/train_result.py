"""What `distill bench train` measured, as typed results (`TrainBench` and its parts).

`bench.train` fills them, the CLI's table and `--json` read them, `api.bench_train` returns
them, and the GPU check's JSON records hold their `to_dict()`. One owner for the shape: the
JSON keys are the field names (fields that were not measured are left out rather than null,
so a CPU result has no `gpu` or `bare_script` key, as before).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields
from typing import Any


def _present(obj: Any) -> dict[str, Any]:
    """The fields of a dataclass that hold something, nested dataclasses as dicts."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None or (isinstance(value, list) and not value):
            continue
        out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


@dataclass(frozen=True)
class StepTiming:
    """One timing of a training step: distill's full step (`bench.train.distill_step`), the
    bare step built in (`bare_step`) or the reference script itself.

    `images_per_s` is the median of the timing windows (one span for the script);
    over several rounds, `StepRounds` holds each round's and the spread. The bare step also
    names its `mode` (`fp32`, `bf16_cl`, `bf16_compile`, with `(CUDA graphs)` where they
    were used) and its `source` (built in, or the script's path and `sha256`)."""

    images_per_s: float
    timing: str
    windows: int | None = None
    per_window: list[float] = field(default_factory=list)
    peak_gpu_memory_gib: float | None = None
    mode: str | None = None
    source: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(self)


@dataclass(frozen=True)
class StepRounds:
    """A step timed over `rounds` alternations: the median over rounds, each round's figure,
    the spread, and the last round's own timing (how it was timed, its windows)."""

    images_per_s: float
    per_round: list[float]
    spread: tuple[float, float]
    last: StepTiming

    @classmethod
    def of(cls, runs: list[StepTiming]) -> StepRounds:
        values = [r.images_per_s for r in runs]
        return cls(statistics.median(values), values, (min(values), max(values)), runs[-1])

    def to_dict(self) -> dict[str, Any]:
        """The last round's timing with the median over rounds in place of its figure."""
        return {
            **self.last.to_dict(),
            "images_per_s": self.images_per_s,
            "per_round": self.per_round,
            "spread": list(self.spread),
        }


@dataclass(frozen=True)
class DataPathTiming:
    """Images/s read, decoded and augmented with no model (`bench.train.data_path`); None with
    a `note` when there were too few batches to time; `profile` is torch.profiler's table."""

    images_per_s: float | None
    note: str | None = None
    profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**_present(self), "images_per_s": self.images_per_s}  # None: not timed


@dataclass(frozen=True)
class TrainBench:
    """`distill bench train`: distill's full step against the bare step measured in the same
    run (`ratio`, to compare with `target_ratio`), the reference script itself where it ran
    (`bare_script`, `ratio_to_script`; CUDA only), and the data path alone. `bare` is None for
    a supervised recipe (no teacher: there is no bare distillation step to compare)."""

    recipe: str
    rounds: int
    device: str
    precision: str
    compile: bool
    batch_size: int
    student: str
    teacher: str | None
    target_ratio: float | None
    distill: StepRounds
    data_path: DataPathTiming
    gpu: str | None = None
    bare: StepRounds | None = None
    bare_script: StepRounds | None = None
    #: The student's (height, width), which both steps ran at: a rerun at another size (or
    #: with another model whose default size differs) says so in its JSON.
    input_size: tuple[int, int] | None = None

    @property
    def ratio(self) -> float | None:
        """distill's images/s over the bare step's (medians over the rounds)."""
        return None if self.bare is None else self.distill.images_per_s / self.bare.images_per_s

    @property
    def ratio_to_script(self) -> float | None:
        if self.bare_script is None:
            return None
        return self.distill.images_per_s / self.bare_script.images_per_s

    @property
    def models(self) -> dict[str, str]:
        """The models by role, as the plan and summary.json name them."""
        return {"student": self.student} | ({"teacher": self.teacher} if self.teacher else {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON `--json` prints: the fields (unmeasured ones left out), the models by
        role, and the ratios."""
        out = _present(self)
        del out["student"]
        out.pop("teacher", None)
        out["models"] = self.models
        out["target_ratio"] = self.target_ratio
        for name in ("ratio", "ratio_to_script"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out
