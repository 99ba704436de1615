"""Supervised training on labels: teachers on your data, and the student-from-scratch baseline.

Cross-entropy with optional label smoothing and optional mixup (coefficient ~ Beta(alpha, alpha),
partner = the batch rolled by one, soft targets mixed with the same coefficient).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distill_cli.data.augment import mixup
from distill_cli.data.loader import Batch
from distill_cli.methods.base import Method, StepOutput, register, soft_targets
from distill_cli.recipe.bounds import within
from distill_cli.recipe.sections import MethodParams


class SupervisedParams(MethodParams):
    name: Literal["supervised"] = "supervised"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    #: Up to 10: papers use 0.1-1 (CutMix 1.0); from 10 up, Beta(a, a) draws mixes of 50/50
    #: +- 10% nearly always, so every image is half another one (`1e9` was exactly that).
    mixup_alpha: Annotated[
        float,
        Field(ge=0),
        within(
            0,
            10,
            "Beta(alpha, alpha) draws the mix (papers use 0.1-1); above 10 every image is "
            "a 50/50 blend",
        ),
    ] = Field(0.0, description="0 disables mixup")


@register
class Supervised(Method):
    name = "supervised"
    Params = SupervisedParams
    needs_labels = True
    compares_teacher = False
    params: SupervisedParams

    def step(self, batch: Batch, epoch: int) -> StepOutput:
        assert batch.labels is not None
        pixels = self.ctx.augment(batch.images, batch.extent)
        lam = None
        if self.params.mixup_alpha > 0:
            # no host sync per step: alpha is filled on the device (torch.tensor(x, device=cuda)
            # is a blocking copy) and the distribution skips its argument check (a bool() of a
            # device tensor)
            alpha = torch.full((), self.params.mixup_alpha, device=pixels.device)
            lam = torch.distributions.Beta(alpha, alpha, validate_args=False).sample()
            pixels = mixup(pixels, lam)
        target = soft_targets(batch.labels, self.student.info.num_classes, lam)
        logits = self.student_logits(pixels)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=self.params.label_smoothing)
        return StepOutput(loss, {})
