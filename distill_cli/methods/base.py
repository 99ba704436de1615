"""The method interface: what the engine calls, and nothing method-specific.

A method turns a batch of uint8 images (and labels, when it needs them) into a loss. It owns its
view of the data (crops, mixup), its use of the teacher, and its loss; the engine owns the
optimisation. A new method is one new file in this package with a `Params` model and a
`Method` subclass decorated with ``@register``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from distill_cli.data.augment import BatchAugment, mixup
from distill_cli.data.loader import Batch, BatchStream
from distill_cli.models.create import Net
from distill_cli.models.view import model_view
from distill_cli.recipe.sections import MethodParams

if TYPE_CHECKING:
    from distill_cli.recipe.document import Recipe

_REGISTRY: dict[str, type[Method]] = {}
Views = Literal["consistent", "independent"]


@dataclass
class MethodContext:
    """What a method is built from: the nets, the batched augmentation, the run's settings."""

    student: Net
    teacher: Net | None
    augment: BatchAugment
    channels_last: bool = False
    #: the training stream, for methods that precompute per-image data (cached teacher targets)
    train_stream: BatchStream | None = None
    #: where such precomputed data may be kept between runs
    cache_dir: Path | None = None
    #: the run's length in epochs, for methods whose phases are counted in epochs
    epochs: int | None = None


@dataclass
class StepOutput:
    """The loss to minimise plus extra scalars to log (device tensors: no host sync)."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor]


class Method(ABC):
    """One training objective. Subclasses set the class variables and implement `step`."""

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]]
    needs_teacher: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False
    #: Whether evaluation should compare the student with the teacher (agreement, KL).
    compares_teacher: ClassVar[bool] = True
    #: False for methods that run the student other than through `Net.__call__` (DDP syncs
    #: gradients only through the wrapped forward).
    supports_ddp: ClassVar[bool] = True

    def __init__(self, params: MethodParams, ctx: MethodContext) -> None:
        self.params = params
        self.ctx = ctx
        self.student = ctx.student
        self.teacher = ctx.teacher
        if self.teacher is not None:
            self.teacher.module.eval().requires_grad_(False)

    @classmethod
    def check_recipe(cls, params: MethodParams, recipe: Recipe) -> None:
        """Refuse what the recipe alone says this method cannot run, before the data is read,
        a weights file loaded or a model built (`build.check_method`, which `--dry-run` and the
        benchmarks call too): a refusal that waits for `__init__` comes after a scan of the
        data and the teacher's load, and in a benchmark after the teacher's training. Each
        method's `__init__` keeps the same checks (with the facts only a built run knows)."""
        return None

    @abstractmethod
    def step(self, batch: Batch, epoch: int) -> StepOutput:
        """The loss of one batch; called inside the engine's autocast, student in train mode."""

    def on_epoch_start(self, epoch: int) -> dict[str, float | str]:
        """Hook for methods that change phase by epoch; returns anything worth logging."""
        return {}

    def trainable(self) -> nn.Module:
        """The module whose parameters the optimizer updates (and `extra_state` beside it)."""
        return self.student.module

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors besides the student's weights that `--resume` needs (e.g. connectors)."""
        return {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `extra_state` returned."""
        if tensors:
            raise ValueError(f"{self.name} keeps no extra state, got {sorted(tensors)[:3]}")

    # --- shared pieces -----------------------------------------------------------------------

    def student_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The student on shared [0, 1] pixels (resized and normalized its own way here)."""
        return self.student(model_view(pixels, self.student.info, self.ctx.channels_last))

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The frozen teacher on its model-ready inputs (from `views`), without gradients."""
        assert self.teacher is not None
        with torch.no_grad():
            return self.teacher(inputs)

    def views(
        self, batch: Batch, views: Views, use_mixup: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The student's input, the teacher's input and the mixup coefficient of one batch.

        consistent: one random crop + flip per image, shared by both models.
        independent: each model gets its own crop + flip of the same image.
        With mixup, both are mixed with the same coefficient and the same partner (the batch
        rolled by one), so the models always look at the same two images. Each input is then
        resized and normalized for its model; a student and teacher fed alike share one tensor.
        """
        assert self.teacher is not None
        lam = torch.rand((), device=batch.images.device)
        s_in, t_in = self.ctx.augment.model_inputs(
            batch.images,
            batch.extent,
            [self.student.info, self.teacher.info],
            lam if use_mixup else None,
            independent=views == "independent",
            channels_last=self.ctx.channels_last,
        )
        return s_in, t_in, lam


def soft_targets(labels: torch.Tensor, num_classes: int, lam: torch.Tensor | None) -> torch.Tensor:
    """One-hot labels, mixed like the images when mixup is on."""
    target = F.one_hot(labels, num_classes).float()
    return target if lam is None else mixup(target, lam)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(p_teacher || p_student)`` with ``p = softmax(logits / T)``, batch mean.

    Forward KL: the teacher's distribution is the target. The T^2 factor keeps gradient
    magnitudes comparable across temperatures (Hinton et al.). Computed in float32 because
    bf16 log-probabilities lose the small differences the loss is about.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * (t * t)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method selectable by its `name` in recipes."""
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Method]]:
    return dict(_REGISTRY)
