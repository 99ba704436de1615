"""Validation metrics: student top-1/top-5, teacher top-1, student-teacher agreement and KL,
and the per-class confusion matrices of the final evaluation.

Top-5 is reported only for more than 5 classes (with 5 or fewer it is 100% by construction).

The teacher is frozen, so its validation logits are computed once and cached; every later
evaluation only runs the student. When the teacher's label space differs from the data's (an
ImageNet teacher distilled on other images), only agreement and KL are meaningful and only those
are reported.

A file of the split that cannot be decoded (data.on_bad_image=skip) is left out of every number,
not replaced: the stream puts another image in its place (`Batch.stand_in`), which would count
that image twice and report the accuracy of a set the user does not have. `images` is how many
the numbers are on; the stream counts the files left out (`bad_images`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill_cli.data.loader import BatchStream
from distill_cli.models.create import Net
from distill_cli.models.view import eval_pixels, normalize
from distill_cli.rundir.class_eval import ClassEval, Confusion


class Evaluator:
    """Evaluates nets on one validation stream; caches the labels and the teacher's logits."""

    def __init__(
        self,
        stream: BatchStream,
        num_data_classes: int,
        channels_last: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.stream = stream
        self.num_data_classes = num_data_classes
        self.channels_last = channels_last
        self.autocast_dtype = autocast_dtype
        self.labels: torch.Tensor | None = None
        #: the positions of the split that hold their own image, in every pass so far (a file
        #: deleted during the run is left out of the numbers from then on, the teacher's too)
        self.kept: torch.Tensor | None = None
        self._teacher_logits: torch.Tensor | None = None
        self._student_logits: torch.Tensor | None = None  # of the latest student evaluation

    @property
    def images(self) -> int:
        """How many images the numbers are on: the split's decodable ones (0 before a pass)."""
        return 0 if self.kept is None else int(self.kept.sum())

    def _kept(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor's rows at the positions that hold their own image."""
        assert self.kept is not None
        return [t[self.kept.to(t.device)] for t in tensors]

    @torch.no_grad()
    def logits(self, net: Net) -> torch.Tensor:
        """Logits (float32, on the device) at every position of the split, in stream order,
        stand-ins included (the metrics take the `kept` rows)."""
        # per-module flags: a method may keep parts of a model frozen in eval mode
        modes = [(m, m.training) for m in net.module.modules()]
        net.module.eval()
        device = self.stream.device
        outs, labels, kept = [], [], []
        for batch in self.stream.epoch(0):
            own = torch.ones(len(batch.index), dtype=torch.bool)
            kept.append(own if batch.stand_in is None else ~batch.stand_in)
            x = normalize(eval_pixels(batch.images, net.info), net.info)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            dtype = self.autocast_dtype or torch.float32
            with torch.autocast(device.type, dtype, enabled=self.autocast_dtype is not None):
                outs.append(net.module(x).float())
            labels.append(batch.labels)
        for module, mode in modes:
            module.training = mode
        if self.labels is None and labels and labels[0] is not None:
            self.labels = torch.cat(labels)
        mask = torch.cat(kept)
        self.kept = mask if self.kept is None else self.kept & mask
        return torch.cat(outs)

    def teacher_logits(self, teacher: Net) -> torch.Tensor:
        if self._teacher_logits is None:
            self._teacher_logits = self.logits(teacher)
        return self._teacher_logits

    def teacher_metrics(self, teacher: Net) -> dict[str, float]:
        logits = self.teacher_logits(teacher)
        if teacher.info.num_classes != self.num_data_classes or self.labels is None:
            return {}
        return {"top1": topk(*self._kept(logits, self.labels), 1)}

    def student_metrics(self, student: Net, teacher: Net | None) -> dict[str, float]:
        self._student_logits = self.logits(student)
        out: dict[str, float] = {}
        if student.info.num_classes == self.num_data_classes and self.labels is not None:
            logits, labels = self._kept(self._student_logits, self.labels)
            out["top1"] = topk(logits, labels, 1)
            if self.num_data_classes > TOP5_ABOVE:
                out["top5"] = topk(logits, labels, 5)
        if teacher is not None and teacher.info.num_classes == student.info.num_classes:
            t = self.teacher_logits(teacher)
            logits, t = self._kept(self._student_logits, t)
            out["agreement_top1"] = agreement(logits, t)
            out["kl"] = kl(logits, t)
        return out

    def class_eval(
        self, classes: list[str], step: int, role: str, teacher: Net | None
    ) -> ClassEval | None:
        """Confusion matrices of the latest student evaluation and of the teacher, for the
        models that predict the data's classes; None without labels or an evaluation."""
        labels, n = self.labels, self.num_data_classes
        if labels is None or self._student_logits is None or len(classes) != n:
            return None

        def matrix(logits: torch.Tensor) -> Confusion | None:
            if logits.shape[-1] != n:
                return None
            return Confusion(list(classes), confusion(*self._kept(logits, labels), n))

        teacher_cm = None if teacher is None else matrix(self.teacher_logits(teacher))
        return ClassEval(step, role, matrix(self._student_logits), teacher_cm)


#: Top-5 is only reported for more classes than this.
TOP5_ABOVE = 5


def confusion(logits: torch.Tensor, labels: torch.Tensor, n: int) -> list[list[int]]:
    """`n` x `n` counts: row = true class, column = predicted class."""
    pairs = labels.to(logits.device).long() * n + logits.argmax(-1)
    return torch.bincount(pairs, minlength=n * n).view(n, n).tolist()


def topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Top-k accuracy in percent."""
    top = logits.topk(k, dim=-1).indices
    return float((top == labels[:, None]).any(-1).float().mean().item() * 100)


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """How often the student's top-1 class is the teacher's, in percent."""
    same = student_logits.argmax(-1) == teacher_logits.argmax(-1)
    return float(same.float().mean().item() * 100)


def kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean KL(p_teacher || p_student) at T = 1, in nats."""
    log_p_s = F.log_softmax(student_logits.float(), -1)
    log_p_t = F.log_softmax(teacher_logits.float(), -1)
    return float(F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean").item())
