"""Supervised training on labels: teachers on your data, and the student-from-scratch baseline.

Cross-entropy with optional label smoothing and optional mixup (coefficient ~ Beta(alpha, alpha),
partner = the batch rolled by one, soft targets mixed with the same coefficient).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distill_cli.data.augment import mixup
from distill_cli.methods.base import Method, MethodParams, StepOutput, register


class SupervisedParams(MethodParams):
    name: Literal["supervised"] = "supervised"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    mixup_alpha: float = Field(0.0, ge=0, description="0 disables mixup")


@register
class Supervised(Method):
    name = "supervised"
    Params = SupervisedParams
    needs_labels = True
    compares_teacher = False
    params: SupervisedParams

    def step(self, images: torch.Tensor, labels: torch.Tensor | None, epoch: int) -> StepOutput:
        assert labels is not None
        pixels = self.ctx.augment(images)
        target = F.one_hot(labels, self.student.info.num_classes).float()
        alpha = self.params.mixup_alpha
        if alpha > 0:
            concentration = torch.tensor(alpha, device=pixels.device)
            lam = torch.distributions.Beta(concentration, concentration).sample()
            pixels, target = mixup(pixels, lam), mixup(target, lam)
        logits = self.student(self.student_input(pixels))
        loss = F.cross_entropy(logits.float(), target, label_smoothing=self.params.label_smoothing)
        return StepOutput(loss, {})
