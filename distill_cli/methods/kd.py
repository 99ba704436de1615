"""Classic knowledge distillation (Hinton et al., 2015), the baseline everyone compares against.

``alpha * CE(y) + (1 - alpha) * T^2 * KL(p_teacher || p_student)``; views and mixup as
configured (the classic setting: consistent views, no mixup, T = 4, alpha = 0.1-0.5).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field

from distill_cli.data.loader import Batch
from distill_cli.methods.base import (
    Method,
    StepOutput,
    Views,
    kd_loss,
    register,
    soft_targets,
)
from distill_cli.recipe.bounds import Temperature
from distill_cli.recipe.sections import MethodParams


class KDParams(MethodParams):
    name: Literal["kd"] = "kd"
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the label (CE) term")
    temperature: Temperature = 4.0
    views: Views = "consistent"
    mixup: bool = False


@register
class KD(Method):
    name = "kd"
    Params = KDParams
    needs_teacher = True
    needs_labels = True
    params: KDParams

    def kd_weight(self, epoch: int) -> float:
        """Weight of the distillation term at `epoch` (1 - alpha; subclasses schedule it)."""
        return 1.0 - self.params.alpha

    def step(self, batch: Batch, epoch: int) -> StepOutput:
        assert batch.labels is not None
        p = self.params
        weight = self.kd_weight(epoch)
        s_in, t_in, lam = self.views(batch, p.views, p.mixup)
        logits = self.student(s_in)
        target = soft_targets(batch.labels, self.student.info.num_classes, lam if p.mixup else None)
        ce = F.cross_entropy(logits.float(), target)
        if weight == 0:  # no teacher forward at all once distillation has stopped
            return StepOutput(ce, {"ce": ce.detach()})
        kd = kd_loss(logits, self.teacher_logits(t_in), p.temperature)
        loss = (1 - weight) * ce + weight * kd
        return StepOutput(loss, {"ce": ce.detach(), "kd": kd.detach()})
