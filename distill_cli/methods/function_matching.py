"""Function matching (Beyer et al., CVPR 2022, "A good teacher is patient and consistent").

Per batch: one random resized crop + flip per image, shared by teacher and student (consistent
views); one mixup coefficient ~ U[0, 1] (Beta(1, 1)) for the batch, each image mixed with its
neighbour (the batch rolled by one); the same mixed pixels go to both models, each normalized (and
resized) its own way; the frozen teacher runs online on every batch; the loss is
``T^2 * KL(p_teacher || p_student)`` with no label term.

The paper's ablations are settings of the same method: `views: independent` (each model gets its
own crop), `mixup: false` ("consistent teaching"), `teacher_targets: fixed` (teacher predictions
computed once on a centre crop, cached, and reused: the setting that overfits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, model_validator

from distill_cli.data.loader import Batch
from distill_cli.errors import DistillError
from distill_cli.methods.base import (
    Method,
    MethodContext,
    StepOutput,
    Views,
    kd_loss,
    register,
)
from distill_cli.recipe.bounds import Temperature
from distill_cli.recipe.sections import MethodParams

if TYPE_CHECKING:
    from distill_cli.recipe.document import Recipe


class FunctionMatchingParams(MethodParams):
    name: Literal["function_matching"] = "function_matching"
    temperature: Temperature = Field(1.0, description="softmax temperature T")
    mixup: bool = Field(True, description="mix every batch (off = 'consistent teaching')")
    views: Views = Field("consistent", description="independent = each model its own crop")
    teacher_targets: Literal["online", "fixed"] = Field(
        "online", description="fixed = predictions on a centre crop, computed once and cached"
    )

    @model_validator(mode="after")
    def _fixed_targets_have_one_view(self) -> FunctionMatchingParams:
        if self.teacher_targets == "fixed" and (self.mixup or self.views != "consistent"):
            raise ValueError("teacher_targets: fixed needs mixup: false and views: consistent")
        return self


@register
class FunctionMatching(Method):
    name = "function_matching"
    Params = FunctionMatchingParams
    needs_teacher = True
    params: FunctionMatchingParams

    def __init__(self, params: FunctionMatchingParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.fixed: torch.Tensor | None = None

    @classmethod
    def check_recipe(cls, params: MethodParams, recipe: Recipe) -> None:
        """Fixed targets on streamed data were refused at the first epoch: after the teacher's
        evaluation and with the run folder written."""
        from distill_cli.methods.teacher_cache import streamed_refused

        assert isinstance(params, FunctionMatchingParams)
        if params.teacher_targets == "fixed" and recipe.data.source in ("shards", "hf_dataset"):
            raise streamed_refused()

    def on_epoch_start(self, epoch: int) -> dict[str, float | str]:
        if self.params.teacher_targets != "fixed" or self.fixed is not None:
            return {}
        from distill_cli.methods.teacher_cache import load_or_build

        if self.ctx.train_stream is None or self.ctx.cache_dir is None or self.teacher is None:
            raise DistillError("fixed teacher targets need the training stream", "method")
        self.fixed, how = load_or_build(self.teacher, self.ctx.train_stream, self.ctx.cache_dir)
        return {"teacher_cache": how}

    def step(self, batch: Batch, epoch: int) -> StepOutput:
        p = self.params
        s_in, t_in, lam = self.views(batch, p.views, p.mixup)
        # fixed: looked up by dataset position, so no teacher forward at all
        fixed = self.fixed
        target = fixed[batch.index] if fixed is not None else self.teacher_logits(t_in)
        logits = self.student(s_in)
        return StepOutput(kd_loss(logits, target, p.temperature), {"mix": lam} if p.mixup else {})
