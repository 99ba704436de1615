"""A built run: `Setup`, everything a recipe describes made ready (device, precision, data,
nets, streams, method), with its `--dry-run` plan and where each fact in it came from, and
`RunLength`, the run's length computed once.

`build.build` makes a `Setup`; the engine, the trainer and the bench read it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from distill_cli.data import DataBundle
from distill_cli.data.classes import spec_class_names
from distill_cli.data.duplicates import Duplicates
from distill_cli.data.frames import MultiFrame
from distill_cli.data.loader import BatchStream
from distill_cli.data.stream import ShardStream
from distill_cli.methods import Method
from distill_cli.models import timm_args
from distill_cli.models.checkpoint import sidecar_path, weights_path
from distill_cli.models.create import UNNAMED_WEIGHTS, Net
from distill_cli.models.feed import FROM_TIMM, resolve_num_classes, spec_input_size
from distill_cli.recipe.document import Recipe
from distill_cli.recipe.loop_sections import ScheduleSpec
from distill_cli.rundir.summary import ModelResult, WeightsSource
from distill_cli.train.cost import cached_throughput, pair_key, project
from distill_cli.train.plan import FactSources, Plan, PlannedData, PlannedModel, PlannedSplit
from distill_cli.train.world import World

#: a split's batches: in memory or a file list (`BatchStream`), or streamed (`ShardStream`)
Stream = BatchStream | ShardStream


@dataclass(frozen=True)
class RunLength:
    """How long the run is, computed once (from the schedule and the training stream) and read
    by the plan, the method (phases counted in epochs) and the trainer alike."""

    total_steps: int
    epochs: int

    @classmethod
    def of(cls, schedule: ScheduleSpec, steps_per_epoch: int) -> RunLength:
        """`schedule.steps`, or `schedule.epochs` whole epochs; epochs round a step count up."""
        total = schedule.steps or (schedule.epochs or 0) * steps_per_epoch
        return cls(total, math.ceil(total / steps_per_epoch))


@dataclass(frozen=True)
class Opening:
    """What `distill run` says before it trains: the method, the data's counts, the models,
    and which weights the teacher was loaded from (file, checkpoint entry, size, SHA-256: a
    `best.pth` replaced by a later training is another teacher under the same name), then the
    data's warnings. Handed to the reporter as a record of kind `opening`."""

    method: str
    train: int
    val: int
    test: int | None
    classes: int
    student: str
    teacher: str | None
    teacher_weights: str | None  # the plan's weights fact: `state_dict_ema`, `timm hub`, ...
    teacher_files: list[WeightsSource]
    warnings: list[str]

    def record(self) -> dict[str, Any]:
        return {"kind": "opening", **asdict(self)}


@dataclass
class Setup:
    """Everything a run is made of, built from a recipe, before any training."""

    recipe: Recipe
    device: torch.device
    autocast: torch.dtype | None
    channels_last: bool
    data: DataBundle
    student: Net
    teacher: Net | None
    method: Method
    train_stream: Stream
    val_stream: Stream
    length: RunLength
    world: World = field(default_factory=World)
    sync_bn: bool = False
    #: False for a plan made without the data (its sizes taken from the recipe)
    data_read: bool = True
    #: data.holdout: the test split, evaluated at the end
    test_stream: Stream | None = None
    #: the same image in train and an evaluated split, or in two classes (`data.duplicates`)
    duplicates: Duplicates = field(default_factory=Duplicates)
    #: files holding several frames, read as their first (`data.frames`)
    multi_frame: MultiFrame = field(default_factory=MultiFrame)

    @property
    def steps_per_epoch(self) -> int:
        return self.train_stream.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.length.total_steps

    @property
    def epochs(self) -> int:
        return self.length.epochs

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.autocast is torch.bfloat16 else "fp32"

    @property
    def device_name(self) -> str:
        """The accelerator by name (a measured throughput belongs to it), or `cpu`."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return self.device.type

    def plan(self, throughput: float | None = None) -> Plan:
        """What a run would do, for ``--dry-run``: models, data, steps, precision, device, and
        its cost (`train.cost`) at `throughput` images/s per GPU, else at the cached one."""
        data, student, teacher = self.data, self._planned("student"), self._planned("teacher")
        models = {"student": student} | ({"teacher": teacher} if teacher else {})
        source = "--throughput" if throughput is not None else None
        unit = "GPU" if source or self.device.type == "cuda" else "CPU process"
        if throughput is None:
            key = pair_key(models, self.precision, self.device_name)
            throughput, source = cached_throughput(key) or (None, None)
        images = self.total_steps * self.recipe.schedule.batch_size
        return Plan(
            method=self.recipe.method.name,
            student=student,
            teacher=teacher,
            data=PlannedData(
                train=PlannedSplit(data.train.name, len(data.train)),
                val=PlannedSplit(data.val.name, len(data.val)),
                test=None if data.test is None else PlannedSplit(data.test.name, len(data.test)),
                classes=len(data.classes),
                labeled_train=data.labeled_train,
                read=self.data_read,
                duplicates=self.duplicates.warnings(),
                frames=self.multi_frame.warnings(),
            ),
            recipe_warnings=self.recipe_warnings(),
            batch_size=self.recipe.schedule.batch_size,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            epochs=self.epochs,
            precision=self.precision,
            channels_last=self.channels_last,
            compile=self.recipe.runtime.compile,
            device=str(self.device),
            processes=self.world.size,
            sync_bn=self.sync_bn,
            run_dir=str(self.recipe.run_dir),
            cost=project(images, self.total_steps, self.epochs, throughput, source, unit),
        )

    def _planned(self, role: str) -> PlannedModel | None:
        net = self.student if role == "student" else self.teacher
        if net is None:
            return None
        return PlannedModel(
            **asdict(net.info),
            params=net.params,
            sources=self.sources(role),
            files=list(net.weights_files),
        )

    def sources(self, role: str) -> FactSources:
        """Where each fact about how a model is fed came from (recipe, side file, timm
        default, data, teacher): nothing about a teacher is assumed without the plan saying so."""
        rec, classes = self.recipe, len(self.data.classes)
        if role == "teacher":
            specs = rec.teachers
            counts = {resolve_num_classes(spec, classes)[1] for spec in specs}
            names = {spec_class_names(spec)[1] for spec in specs}
            feeds = self._teacher_feeds()
        else:
            feeds = [self.student.sources]
            if self.teacher is None:
                counts = {resolve_num_classes(rec.student, classes)[1]}
                names = {spec_class_names(rec.student)[1]}
            else:
                counts = {"recipe" if rec.student.num_classes else "teacher"}
                names = {"teacher"}
        out = {"num_classes": counts, "class_names": names}
        for key in ("weights", "input_size", "mean_std", "crop_pct", "interpolation"):
            out[key] = {feed.get(key, "-") for feed in feeds}
        return FactSources(**{key: "; ".join(sorted(values)) for key, values in out.items()})

    def teacher_result(self, top1: float | None) -> ModelResult:
        """The teacher as the summary reports it, with the entry of its checkpoint dict the
        weights came from (`state_dict (also state_dict_ema)`): which of timm's two sets taught
        the student is part of the result. None for a plain state dict or hub weights."""
        assert self.teacher is not None
        weights = self.sources("teacher").weights
        entry = None if set(weights.split("; ")) <= UNNAMED_WEIGHTS else weights
        return ModelResult(
            self.teacher.info.name,
            self.teacher.params,
            top1,
            weights=entry,
            files=list(self.teacher.weights_files),
        )

    def opening(self) -> Opening:
        """What the run says before it trains (`Opening`)."""
        data = self.data
        return Opening(
            method=self.recipe.method.name,
            train=len(data.train),
            val=len(data.val),
            test=None if data.test is None else len(data.test),
            classes=len(data.classes),
            student=self.student.info.name,
            teacher=None if self.teacher is None else self.teacher.info.name,
            teacher_weights=None if self.teacher is None else self.sources("teacher").weights,
            teacher_files=[] if self.teacher is None else list(self.teacher.weights_files),
            warnings=self.recipe_warnings()
            + self.duplicates.warnings()
            + self.multi_frame.warnings(),
        )

    def recipe_warnings(self) -> list[str]:
        """What the recipe says that the run will not do, known only once it is built:

        - a `warmup_steps` copied from a long recipe (the paper's 1500) into a short run kept
          the learning rate rising for the whole run, never reaching `optim.lr`;
        - an `eval_every` longer than the run (a recipe's 5 under `--set schedule.epochs=3`)
          evaluated only at the end, so `best` was the last epoch whatever came before;
        - a `teacher:` section under a method that learns from labels alone (`supervised`, a
          `method.name` switched by `--set`) was ignored without a word: no teacher is built;
        - a teacher checkpoint that says nothing of how it was fed (a plain state dict, no
          side file) is fed timm's default size and mean/std for its architecture: right for a
          model fine-tuned at those, silently worse for one trained at 64 px (`guessed_feeds`).
        """
        out = []
        schedule, total = self.recipe.schedule, self.total_steps
        if schedule.warmup_fraction is None and schedule.warmup_steps >= total > 0:
            out.append(
                f"schedule.warmup_steps ({schedule.warmup_steps}) is not shorter than the run "
                f"({total} steps): the learning rate never reaches optim.lr; set it below "
                f"{total} (e.g. {max(1, total // 20)}) or use schedule.warmup_fraction"
            )
        if schedule.evals is None and schedule.eval_every > self.epochs > 1:
            out.append(
                f"schedule.eval_every ({schedule.eval_every}) is more than the run's "
                f"{self.epochs} epochs: the student is evaluated only at the end, so `best` is "
                "the last epoch; lower eval_every (or set it to 0: only at the end)"
            )
        if self.teacher is None and self.recipe.teachers:
            out.append(
                f"the recipe's teacher is not used: {self.recipe.method.name!r} learns from "
                "labels alone; for distillation set method.name (function_matching, kd, ...)"
            )
        return out + self.guessed_feeds() + self.timm_ema()

    def timm_ema(self) -> list[str]:
        """A line per teacher whose timm train.py `model_best` was chosen on its EMA weights
        (`--model-ema`: the EMA's accuracy decides which epoch is saved as best) while the
        live weights, the default entry, are loaded."""
        out = []
        for spec, feed in zip(self.recipe.teachers, self._teacher_feeds(), strict=False):
            if spec.checkpoint is None or spec.checkpoint_key is not None:
                continue
            trained = timm_args.train_args(weights_path(spec.checkpoint))
            args = trained[0] if trained is not None else {}
            ema_chose = args.get("model_ema") and not args.get("model_ema_force_cpu")
            if ema_chose and feed.get("weights", "").startswith("state_dict (also state_dict_ema"):
                out.append(
                    f"teacher {spec.model}: timm's train.py chose {spec.checkpoint.name} by its "
                    "EMA weights' accuracy (--model-ema), and its live weights (state_dict) "
                    "are loaded; set teacher.checkpoint_key: state_dict_ema for the EMA ones"
                )
        return out

    def guessed_feeds(self) -> list[str]:
        """A line per teacher checkpoint fed timm's defaults because nothing else said."""
        if self.teacher is None:
            return []
        out = []
        for spec, feed in zip(self.recipe.teachers, self._teacher_feeds(), strict=False):
            if spec.checkpoint is None or {feed.get("input_size"), feed.get("mean_std")} != {
                FROM_TIMM
            }:
                continue
            if timm_args.train_args(weights_path(spec.checkpoint)) is not None:
                continue  # timm's train.py arguments left unset: it trained at timm's defaults
            out.append(
                f"teacher {spec.model}: {spec.checkpoint.name} does not say the input size and "
                f"mean/std it was trained with, so it gets timm's defaults for {spec.model} "
                f"({'x'.join(map(str, spec_input_size(spec)))} px); if it was trained otherwise, "
                f"write them into {sidecar_path(spec.checkpoint).name} beside it or set "
                "teacher.input_size, teacher.mean and teacher.std"
            )
        return out

    def _teacher_feeds(self) -> list[dict[str, str]]:
        """The sources of each teacher (each ensemble member's own)."""
        if self.teacher is None:
            return []
        members = getattr(self.teacher.module, "sources", None)
        return list(members) if isinstance(members, list) else [self.teacher.sources]
