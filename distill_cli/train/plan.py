"""The `--dry-run` plan as a typed result (`Plan`): what a run would do and what it will cost.

`Setup.plan` fills it; `distill run --dry-run` renders it (`cli.console.plan_table`), `--json`
prints `Plan.to_dict()`, and `api.plan` returns it. One owner for the plan's shape: the JSON
keys are the field names, so the table, the JSON and a caller's `plan.data.train.images` cannot
drift apart. A planned model is a `models.view.ModelInfo` (the one owner of how a model is
fed) with what the plan adds to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distill_cli.models.view import ModelInfo
from distill_cli.rundir.summary import WeightsSource
from distill_cli.train.cost import CostPlan


@dataclass(frozen=True)
class FactSources:
    """Where each fact about how a model is fed came from (`recipe`, `side file`, `timm
    default`, `data`, `teacher`, ...): nothing about a teacher is assumed without the plan
    saying so. An ensemble's members' differing sources are joined with `; `."""

    num_classes: str = "-"
    class_names: str = "-"
    weights: str = "-"
    input_size: str = "-"
    mean_std: str = "-"
    crop_pct: str = "-"
    interpolation: str = "-"


@dataclass(frozen=True)
class PlannedModel(ModelInfo):
    """One model of the plan: its identity and input config (`ModelInfo`), its parameter
    count, where each of those facts came from, and the weights files it was loaded from (a
    teacher's checkpoint; none for hub weights or a student)."""

    params: int = 0
    sources: FactSources = field(default_factory=FactSources)
    files: list[WeightsSource] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedSplit:
    name: str
    images: int


@dataclass(frozen=True)
class PlannedData:
    """The data as the run would read it. `test` is the split read once at the end when
    `data.holdout` takes the validation images out of train; `read` is False when the data was
    not at hand and the sizes come from `data.train_images` / `data.val_images`; `duplicates`
    are the warnings about the same image in two splits or two classes, `frames` about files
    holding several frames (read as their first)."""

    train: PlannedSplit
    val: PlannedSplit
    test: PlannedSplit | None
    classes: int
    labeled_train: bool
    read: bool = True
    duplicates: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """What `distill run` would do (models, data, schedule, precision, device, folder) and its
    cost (`train.cost.CostPlan`). `teacher` is None for a supervised run."""

    method: str
    student: PlannedModel
    teacher: PlannedModel | None
    data: PlannedData
    #: what the recipe says that the run will not do (a warm-up as long as the run, a teacher
    #: under a method that learns from labels alone), printed before training
    recipe_warnings: list[str]
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    epochs: int
    precision: str
    channels_last: bool
    compile: bool
    device: str
    processes: int
    sync_bn: bool
    run_dir: str
    cost: CostPlan
    #: what a run would do with its folder: `new`, or that it holds a run (a run then needs
    #: --resume or --overwrite); a folder no run may use is refused by the plan itself
    run_folder: str = "new"

    @property
    def models(self) -> dict[str, PlannedModel]:
        """The models by role (`student`, and `teacher` where there is one)."""
        roles = {"student": self.student, "teacher": self.teacher}
        return {role: m for role, m in roles.items() if m is not None}

    def to_dict(self) -> dict[str, Any]:
        """The JSON `distill run --dry-run --json` prints: the fields, with the models under
        `models` by role (as summary.json and the cost cache key name them)."""
        out = asdict(self)
        del out["student"], out["teacher"]
        models = {role: asdict(m) for role, m in self.models.items()}
        return {"method": out.pop("method"), "models": models, **out}
