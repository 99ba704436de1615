"""What the training loop writes down besides the weights: the sums behind each metrics.jsonl
line (`Window`), the metadata saved beside each checkpoint (`checkpoint_meta`), epochs as they
are logged (`logged_epoch`), and the score that makes a checkpoint `best` (`selection_score`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from distill_cli.train.setup import Setup


def checkpoint_meta(
    setup: Setup, epoch: float, step: int, metrics: dict[str, Any]
) -> dict[str, Any]:
    info = setup.student.info
    return {
        "model": info.name,
        "num_classes": info.num_classes,
        "in_chans": info.in_chans,
        "input_size": list(info.input_size),
        "mean": list(info.mean),
        "std": list(info.std),
        "crop_pct": info.crop_pct,
        "interpolation": info.interpolation,
        # image files: the square they were decoded to before the crop (export reproduces it)
        "load_size": setup.val_stream.load_size if setup.data.val.from_files else None,
        "class_names": setup.data.classes if info.num_classes == len(setup.data.classes) else None,
        "epoch": logged_epoch(epoch),
        "step": step,
        "metrics": metrics,
        "recipe": setup.recipe.name,
        "method": setup.recipe.method.name,
    }


def logged_epoch(epoch: float) -> float | int:
    """Whole epochs as ints in logs and sidecars; a partial one (steps schedule) as a float."""
    return int(epoch) if float(epoch).is_integer() else round(epoch, 4)


def selection_score(metrics: dict[str, float]) -> float | None:
    """Which number makes a checkpoint 'best': accuracy when there are labels, else agreement."""
    return metrics.get("top1", metrics.get("agreement_top1"))


class Window:
    """Device-side sums between two log lines: read once, at log time, so no step syncs."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.extra: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, logs: dict[str, torch.Tensor], step: int) -> None:
        loss = loss.detach()
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)
        self.loss += loss
        for key, value in logs.items():
            self.extra[key] = self.extra.get(key, 0) + value.detach().float()
        self.steps += 1
