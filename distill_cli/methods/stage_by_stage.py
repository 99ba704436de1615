"""Stage-by-stage KD (Gao et al., arXiv 1812.01819, "An Embarrassingly Simple Approach for KD").

Instead of weighing a task loss against a KD loss, training is decomposed: the student's stage k
learns to reproduce the teacher's stage-k feature map (L2), then is frozen, and stage k+1 follows;
finally the head alone learns the labels with the whole backbone frozen.

Stages come from timm's feature API (`feature_info`, `forward_intermediates`), so any pair of
timm models that exposes stages works. Which parameters belong to a stage is found by autograd:
those that the stage's feature map depends on, minus those of the stages before it. Channel and
size mismatches are bridged by connectors (1x1 conv + BN, then a resize to the teacher's spatial
size); they train with their stage, are kept in `last` for resumption, and are never part of the
student's weights, so they are never exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from distill_cli.data.loader import Batch
from distill_cli.errors import DistillError
from distill_cli.methods.base import Method, MethodContext, StepOutput, register
from distill_cli.models.create import Ensemble, Net
from distill_cli.models.view import model_view
from distill_cli.recipe.loop_sections import EpochSetting
from distill_cli.recipe.sections import MethodParams

if TYPE_CHECKING:
    from distill_cli.recipe.document import Recipe
    from distill_cli.recipe.sections import ModelSpec


class StageByStageParams(MethodParams):
    name: Literal["stage_by_stage"] = "stage_by_stage"
    stage_epochs: Annotated[EpochSetting, Field(ge=1)] = Field(
        1, description="epochs for each stage"
    )
    head_epochs: Annotated[EpochSetting, Field(ge=1)] = Field(
        1, description="epochs for the head, backbone frozen"
    )
    stage_map: list[tuple[int, int]] | None = Field(
        None, description="[student_stage, teacher_stage] pairs; default: i -> i"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="for the head phase")


def _features(net: Net, what: str) -> list[dict]:
    info = getattr(net.module, "feature_info", None)
    if not info or not hasattr(net.module, "forward_intermediates"):
        raise DistillError(
            f"{what} {net.info.name!r} exposes no stages (timm feature API)",
            f"{what}.model",
            "stage_by_stage needs timm models with feature_info",
        )
    return list(info)


def _reached(net: Net, index: int) -> set[int]:
    """ids of the parameters that the feature map at `index` depends on."""
    module = net.module
    modes = [(m, m.training) for m in module.modules()]
    module.eval()  # no BN statistics change from this probe
    device = next(module.parameters()).device
    x = torch.zeros(2, net.info.in_chans, *net.info.input_size, device=device)
    feat = module.forward_intermediates(
        x, indices=[index], intermediates_only=True, stop_early=True
    )
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(feat[0].float().sum(), params, allow_unused=True)
    for m, mode in modes:
        m.training = mode
    return {id(p) for p, g in zip(params, grads, strict=True) if g is not None}


def _ensemble_refused(members: int, name: str) -> DistillError:
    return DistillError(
        f"stage_by_stage mimics one teacher's stages; the teacher is an ensemble of "
        f"{members} ({name})",
        "teacher",
        "name one teacher, or use function_matching or kd with the ensemble",
    )


def _pairs(params: StageByStageParams, students: int, teachers: int) -> list[tuple[int, int]]:
    """The (student stage, teacher stage) pairs, checked against the stage counts."""
    if params.stage_map is not None:
        pairs = [(int(s), int(t)) for s, t in params.stage_map]
    elif students == teachers:
        pairs = [(i, i) for i in range(students)]
    else:
        raise DistillError(
            f"stage counts differ: student {students}, teacher {teachers}",
            "method.stage_map",
            "map stages explicitly, e.g. stage_map: [[0, 0], [1, 2], ...]",
        )
    s_idx = [s for s, _ in pairs]
    if any(not 0 <= s < students for s in s_idx) or any(not 0 <= t < teachers for _, t in pairs):
        raise DistillError(
            f"stage_map {[list(p) for p in pairs]} names a stage the models lack: the student "
            f"has {students} stages, the teacher {teachers} (0-based)",
            "method.stage_map",
            "map stages both models have, or use another method for this pair",
        )
    if s_idx != sorted(set(s_idx)):
        raise DistillError(
            "student stages must increase along stage_map",
            "method.stage_map",
            "list the pairs in the student's stage order, e.g. [[0, 0], [1, 2]]",
        )
    return pairs


def _check_epochs(params: StageByStageParams, stages: int, epochs: int | None) -> None:
    """The run's length is the phases': stages x stage_epochs + head_epochs."""
    total = stages * params.stage_epochs + params.head_epochs
    if epochs is not None and epochs != total:
        raise DistillError(
            f"stage_by_stage trains {stages} stages x {params.stage_epochs} + "
            f"{params.head_epochs} head epochs = {total} epochs, but the schedule has {epochs}",
            "schedule.epochs",
            f"set schedule.epochs={total}",
        )


def _stage_count(spec: ModelSpec, what: str) -> int | None:
    """A recipe model's stage count (timm's `feature_info`), from the model built on the meta
    device (no weights, no memory: a second for a large model); None when it does not build
    there (the run's build says why)."""
    from distill_cli.models.sizes import Build

    build = Build(spec.model, spec.num_classes or 1, spec.in_chans, dict(spec.kwargs))
    module = build.meta(spec.in_chans, None)  # no img_size: the stages do not depend on it
    if module is None:
        return None
    info = getattr(module, "feature_info", None)
    if not info or not hasattr(module, "forward_intermediates"):
        raise DistillError(
            f"{what} {spec.model!r} exposes no stages (timm feature API)",
            f"{what}.model",
            "stage_by_stage needs timm models with feature_info",
        )
    return len(info)


@register
class StageByStage(Method):
    name = "stage_by_stage"
    Params = StageByStageParams
    needs_teacher = True
    needs_labels = True
    supports_ddp = False  # trains through forward_intermediates, which DDP does not see
    params: StageByStageParams

    def __init__(self, params: StageByStageParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        assert self.teacher is not None
        if isinstance(self.teacher.module, Ensemble):  # averaged logits have no stages to mimic
            raise _ensemble_refused(len(self.teacher.module.members), self.teacher.info.name)
        s_feats, t_feats = _features(self.student, "student"), _features(self.teacher, "teacher")
        self.pairs = pairs = _pairs(params, len(s_feats), len(t_feats))
        _check_epochs(params, len(pairs), ctx.epochs)
        device = next(self.student.module.parameters()).device
        self.connectors = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(s_feats[s]["num_chs"], t_feats[t]["num_chs"], 1, bias=False),
                nn.BatchNorm2d(t_feats[t]["num_chs"]),
            )
            for s, t in pairs
        ).to(device)
        # parameters of each phase: stage i = reached(stage i) - reached(previous stages)
        params_by_id = {id(p): p for p in self.student.module.parameters()}
        seen: set[int] = set()
        self.stage_params: list[list[nn.Parameter]] = []
        for s, _ in pairs:
            reached = _reached(self.student, s)
            self.stage_params.append([params_by_id[i] for i in reached - seen])
            seen |= reached
        backbone = _reached(self.student, len(s_feats) - 1) | seen
        self.head_params = [p for i, p in params_by_id.items() if i not in backbone]
        self.wrapper = nn.ModuleDict(
            {"student": self.student.module, "connectors": self.connectors}
        )

    @classmethod
    def check_recipe(cls, params: MethodParams, recipe: Recipe) -> None:
        """The stage counts and the length are known from the recipe: the models built on the
        meta device. They were refused after the data's scan and the teacher's load (in a
        benchmark, after the teacher had trained)."""
        assert isinstance(params, StageByStageParams)
        if len(recipe.teachers) > 1:
            name = "+".join(t.model for t in recipe.teachers)
            raise _ensemble_refused(len(recipe.teachers), name)
        students = _stage_count(recipe.student, "student")
        teachers = _stage_count(recipe.teachers[0], "teacher")
        if students is None or teachers is None:
            return
        pairs = _pairs(params, students, teachers)
        _check_epochs(params, len(pairs), recipe.schedule.epochs)

    def phase(self, epoch: int) -> int | None:
        """Index of the stage trained at `epoch`, or None for the head phase."""
        stage = epoch // self.params.stage_epochs
        return stage if stage < len(self.pairs) else None

    def on_epoch_start(self, epoch: int) -> dict[str, float | str]:
        stage = self.phase(epoch)
        live = self.head_params if stage is None else self.stage_params[stage]
        live_ids = {id(p) for p in live}
        if stage is not None:
            live_ids |= {id(p) for p in self.connectors[stage].parameters()}
        for p in self.wrapper.parameters():
            p.requires_grad_(id(p) in live_ids)
        # frozen layers also stop updating BN statistics: they are frozen, not just untrained
        self.wrapper.train()
        for m in self.wrapper.modules():
            own = list(m.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                m.eval()
        return {
            "phase": "head" if stage is None else f"stage {stage}",
            "trainable": sum(p.numel() for p in self.wrapper.parameters() if p.requires_grad),
        }

    def step(self, batch: Batch, epoch: int) -> StepOutput:
        stage = self.phase(epoch)
        pixels = self.ctx.augment(batch.images, batch.extent)
        if stage is None:
            assert batch.labels is not None
            logits = self.student_logits(pixels)
            loss = F.cross_entropy(
                logits.float(), batch.labels, label_smoothing=self.params.label_smoothing
            )
            return StepOutput(loss, {})
        s_idx, t_idx = self.pairs[stage]
        cl = self.ctx.channels_last
        xs = model_view(pixels, self.student.info, cl)
        feat = self.student.module.forward_intermediates(
            xs, indices=[s_idx], intermediates_only=True, stop_early=True
        )[0]
        assert self.teacher is not None
        with torch.no_grad():
            xt = model_view(pixels, self.teacher.info, cl)
            target = self.teacher.module.forward_intermediates(
                xt, indices=[t_idx], intermediates_only=True, stop_early=True
            )[0]
        out = self.connectors[stage](feat)
        if out.shape[-2:] != target.shape[-2:]:
            out = F.interpolate(out, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return StepOutput(F.mse_loss(out.float(), target.float()), {})

    def trainable(self) -> nn.Module:
        return self.wrapper

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {f"connectors.{k}": v for k, v in self.connectors.state_dict().items()}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        prefix = "connectors."
        self.connectors.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items()})
