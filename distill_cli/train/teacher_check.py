"""The teacher is scored before anything trains: a teacher near chance is refused.

A teacher that loads without error can still be wrong for the data: its outputs in another
class order than the data's labels, fed at another input size or normalization than it was
trained with. Distilling from it teaches the student the mistake, and the run only shows it at
the end, if at all. So before the run folder is written, the teacher is scored on (at most
`CHECK_IMAGES` of) the validation images, and when its top-1 is below `NEAR_CHANCE` times
chance the run stops with one line naming the likely causes and the override. A refused run
leaves nothing behind; with a small validation set the scores are the run's own (cached).

The check needs labels in the teacher's label space and weights someone trained: it is skipped
for unlabeled validation data, for a teacher of another label space (agreement-only
distillation) and for randomly initialised teachers (tests, smoke runs), and turned off by
`check_accuracy: false` on the teacher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill_cli.errors import DistillError
from distill_cli.train.evaluate import Evaluator

if TYPE_CHECKING:
    from distill_cli.train.setup import Setup

#: A teacher below this multiple of chance top-1 (1 / classes) is refused.
NEAR_CHANCE = 1.5


#: At most this many validation images (a fixed random subset) score the teacher.
CHECK_IMAGES = 1000


def _applies(setup: Setup) -> bool:
    specs = setup.recipe.teachers
    if setup.teacher is None or not specs or not all(s.check_accuracy for s in specs):
        return False
    # random weights: nothing was loaded that could be loaded wrong
    loaded = all(s.checkpoint is not None or s.pretrained for s in specs)
    return loaded and setup.data.val.labeled and len(setup.data.classes) >= 2


def _bounded(setup: Setup, evaluator: Evaluator) -> Evaluator:
    """The run's evaluator when the validation set is small, else one on a fixed subset."""
    val, stream = setup.data.val, setup.val_stream
    if len(val) <= CHECK_IMAGES:
        return evaluator
    subset = stream.ordered(val.limited(CHECK_IMAGES, setup.recipe.runtime.seed))
    return Evaluator(
        subset, evaluator.num_data_classes, evaluator.channels_last, evaluator.autocast_dtype
    )


def check_teacher(setup: Setup, evaluator: Evaluator) -> None:
    """Raise when the teacher's top-1 on the validation images is near chance; see the module
    docstring for when the check applies. `evaluator` is the run's (its cache is reused)."""
    if not _applies(setup):
        return
    assert setup.teacher is not None
    scorer = _bounded(setup, evaluator)
    top1 = scorer.teacher_metrics(setup.teacher).get("top1")
    if top1 is None:
        return  # the teacher predicts another label space
    images = scorer.images
    classes = len(setup.data.classes)
    chance = 100.0 / classes
    if top1 >= NEAR_CHANCE * chance:
        return
    weights = setup.sources("teacher").weights
    other = "(also " in weights  # a checkpoint holding several weights: say which were loaded
    raise DistillError(
        f"the teacher scores {top1:.2f}% top-1 on {images} validation images, below "
        f"{NEAR_CHANCE}x chance ({NEAR_CHANCE * chance:.2f}% for {classes} classes); likely a "
        "class order, input size or normalization that is not the one it was trained with"
        + (f" (the checkpoint's weights loaded: {weights})" if other else ""),
        "teacher",
        "check teacher.class_names (or the side file), teacher.input_size and teacher.mean/std"
        + ("; teacher.checkpoint_key picks the other weights" if other else "")
        + "; teacher.check_accuracy: false distills from it anyway",
    )
