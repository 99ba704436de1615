"""The teacher is scored before anything trains: a teacher near chance is refused.

A teacher that loads without error can still be wrong for the data: its outputs in another
class order than the data's labels, fed at another input size or normalization than it was
trained with. Distilling from it teaches the student the mistake, and the run only shows it at
the end, if at all. The run already scores the teacher on the validation images before the
first step (its logits are cached for agreement); when that top-1 is below
`NEAR_CHANCE` times chance, the run stops with one line naming the likely causes and the
override.

The check needs labels in the teacher's label space and weights someone trained: it is skipped
for unlabeled validation data, for a teacher of another label space (agreement-only
distillation) and for randomly initialised teachers (tests, smoke runs), and turned off by
`check_accuracy: false` on the teacher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill_cli.errors import DistillError

if TYPE_CHECKING:
    from distill_cli.train.build import Setup

#: A teacher below this multiple of chance top-1 (1 / classes) is refused.
NEAR_CHANCE = 1.5


def check_teacher(setup: Setup, metrics: dict[str, float], images: int) -> None:
    """Raise when the teacher's validation top-1 (`metrics["top1"]` on `images` images) is near
    chance; see the module docstring for when the check applies."""
    specs = setup.recipe.teachers
    top1 = metrics.get("top1")
    if top1 is None or not specs or not all(s.check_accuracy for s in specs):
        return
    if not all(s.checkpoint is not None or s.pretrained for s in specs):
        return  # random weights: nothing was loaded that could be loaded wrong
    classes = len(setup.data.classes)
    if classes < 2:
        return
    chance = 100.0 / classes
    if top1 >= NEAR_CHANCE * chance:
        return
    raise DistillError(
        f"the teacher scores {top1:.2f}% top-1 on {images} validation images, below "
        f"{NEAR_CHANCE}x chance ({NEAR_CHANCE * chance:.2f}% for {classes} classes); likely a "
        "class order, input size or normalization that is not the one it was trained with",
        "teacher",
        "check teacher.class_names (or the side file), teacher.input_size and teacher.mean/std; "
        "teacher.check_accuracy: false distills from it anyway",
    )
