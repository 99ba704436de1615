"""Early-stopped KD (Cho & Hariharan, ICCV 2019, "On the Efficacy of Knowledge Distillation").

Classic KD until `kd_stop_epoch`, cross-entropy only afterwards: a small student cannot mimic a
much larger teacher to the end, and stopping the KD term lets it finish on the labels. (The
paper's other intervention, an early-stopped *teacher*, is a checkpoint saved by `distill train`
with `schedule.save_epochs` and named as the teacher's `checkpoint`.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from distill_cli.errors import DistillError
from distill_cli.methods.base import MethodContext, register
from distill_cli.methods.kd import KD, KDParams
from distill_cli.recipe.loop_sections import EpochSetting
from distill_cli.recipe.sections import MethodParams

if TYPE_CHECKING:
    from distill_cli.recipe.document import Recipe


class ESKDParams(KDParams):
    name: Literal["eskd"] = "eskd"  # type: ignore[assignment]
    kd_stop_epoch: Annotated[EpochSetting, Field(ge=1)] = Field(
        description="first epoch (0-based) trained on labels alone"
    )


def _check_stop(params: ESKDParams, epochs: int | None) -> None:
    """A KD phase that ends at an epoch the run never reaches is a silent no-op: refused."""
    stop = params.kd_stop_epoch
    if epochs is not None and stop >= epochs:
        raise DistillError(
            f"method.kd_stop_epoch={stop} but the run has {epochs} epochs (0-based: the "
            f"last is {epochs - 1}), so the KD term would never stop",
            "method.kd_stop_epoch",
            # values to copy: "below N" gave 0 for a 1-epoch run, which the key refuses,
            # and `method.name=kd` alone was refused for its kd_stop_epoch
            (f"set method.kd_stop_epoch={epochs - 1} (or lower), or " if epochs > 1 else "")
            + f"set schedule.epochs={stop + 1} (or more), or use method.name=kd without "
            "kd_stop_epoch",
        )


@register
class ESKD(KD):
    name = "eskd"
    Params = ESKDParams
    params: ESKDParams

    def __init__(self, params: MethodParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        _check_stop(self.params, ctx.epochs)

    @classmethod
    def check_recipe(cls, params: MethodParams, recipe: Recipe) -> None:
        """`schedule.epochs` says the length before the data is read (`steps` only after)."""
        assert isinstance(params, ESKDParams)
        _check_stop(params, recipe.schedule.epochs)

    def kd_weight(self, epoch: int) -> float:
        return 0.0 if epoch >= self.params.kd_stop_epoch else 1.0 - self.params.alpha

    def on_epoch_start(self, epoch: int) -> dict[str, float | str]:
        if epoch == 0 or epoch == self.params.kd_stop_epoch:
            return {
                "phase": "kd" if epoch < self.params.kd_stop_epoch else "ce",
                "kd_weight": self.kd_weight(epoch),
            }
        return {}
