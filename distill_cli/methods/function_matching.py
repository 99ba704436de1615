"""Function matching (Beyer et al., CVPR 2022, "A good teacher is patient and consistent").

Per batch: one random resized crop + flip per image, shared by teacher and student (consistent
views); one mixup coefficient ~ U[0, 1] (Beta(1, 1)) for the batch, each image mixed with its
neighbour (the batch rolled by one); the same mixed pixels go to both models, each normalized (and
resized) its own way; the frozen teacher runs online on every batch; the loss is
``T^2 * KL(p_teacher || p_student)`` with no label term.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from distill_cli.data.augment import mixup
from distill_cli.methods.base import Method, MethodParams, StepOutput, kd_loss, register


class FunctionMatchingParams(MethodParams):
    name: Literal["function_matching"] = "function_matching"
    temperature: float = Field(1.0, gt=0, description="softmax temperature T")
    mixup: bool = Field(True, description="mix every batch (off = 'consistent teaching')")


@register
class FunctionMatching(Method):
    name = "function_matching"
    Params = FunctionMatchingParams
    needs_teacher = True
    params: FunctionMatchingParams

    def step(self, images: torch.Tensor, labels: torch.Tensor | None, epoch: int) -> StepOutput:
        pixels = self.ctx.augment(images)
        lam = torch.rand((), device=pixels.device)
        if self.params.mixup:
            pixels = mixup(pixels, lam)
        target = self.teacher_logits(pixels)
        logits = self.student(self.student_input(pixels))
        loss = kd_loss(logits, target, self.params.temperature)
        return StepOutput(loss, {"mix": lam})
