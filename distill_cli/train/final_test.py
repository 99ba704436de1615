"""The test split of a run with a holdout (`data.holdout`), evaluated once training has ended.

With a holdout, everything that chooses (evaluation during training, the `best` checkpoint, a
benchmark's hyperparameters) looks at held-out training images, and the data's validation split
is kept as a test set that no choice has seen. It is read here, once the last step is done: the
final weights (the number the function-matching paper reports), the `best` checkpoint's weights
(chosen on the holdout), and the teacher on the same images.

With `data.on_bad_image: error` the evaluated splits are read once before training
(`read_ahead`), so a damaged file there refuses the run before it trains, not once it has.
"""

from __future__ import annotations

from pathlib import Path

import torch

from distill_cli.models.weights import load_weights
from distill_cli.rundir.summary import TestResult
from distill_cli.train.evaluate import Evaluator
from distill_cli.train.setup import Setup


def read_ahead(setup: Setup) -> None:
    """With data.on_bad_image=error, decode every file of the splits the run evaluates (the
    holdout or val, and the test split) once, before anything trains: the stream stops at the
    first that cannot be decoded, naming it. Otherwise the test split's bad file stopped the run
    after its whole training, and the val split's after the first epoch. Images held in memory
    have nothing to decode."""
    if setup.recipe.data.on_bad_image != "error":
        return
    for stream in (setup.val_stream, setup.test_stream):
        if stream is not None and stream.data.from_files:
            for _ in stream.epoch(0):
                pass


def evaluate_test(setup: Setup, best: Path) -> TestResult | None:
    """Final and best student (and the teacher) on the test split; None without a holdout."""
    stream = setup.test_stream
    if stream is None:
        return None
    evaluator = Evaluator(stream, len(setup.data.classes), setup.channels_last, setup.autocast)
    teacher = setup.teacher if setup.method.compares_teacher else None
    final = evaluator.student_metrics(setup.student, teacher)
    teacher_top1 = evaluator.teacher_metrics(teacher).get("top1") if teacher else None
    best_top1 = None
    if best.is_file():
        module = setup.student.module
        kept = {k: v.detach().clone() for k, v in module.state_dict().items()}
        load_weights(module, best)
        best_top1 = evaluator.student_metrics(setup.student, None).get("top1")
        with torch.no_grad():  # back to the final weights, in place (compiled graphs hold them)
            for key, value in module.state_dict().items():
                value.copy_(kept[key])
    return TestResult(
        images=evaluator.images,  # the decodable ones: a bad file is left out, and counted
        bad_images=stream.bad_images,
        top1=final.get("top1"),
        top5=final.get("top5"),
        best_top1=best_top1,
        teacher_top1=teacher_top1,
        agreement_top1=final.get("agreement_top1"),
    )
