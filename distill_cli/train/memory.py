"""GPU memory: the peak a run used, and the largest batch that fits when one does not.

A batch size that does not fit should not end a run with a raw CUDA out-of-memory trace: the
engine catches the first step's OOM, probes smaller batches of the same data (halving, then a
binary search between the last fit and the first miss), and reports the largest that fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from distill_cli.data.loader import Batch
from distill_cli.errors import DistillError


def fits(trial: Callable[[int], None], size: int) -> bool:
    """Whether `trial(size)` runs without running out of memory (memory freed either way)."""
    try:
        trial(size)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def largest_fitting(trial: Callable[[int], None], too_big: int, step: int = 1) -> int:
    """The largest multiple of `step` below `too_big` for which `trial` fits (0 if none)."""
    low, high = 0, too_big  # low fits (0 trivially), high does not
    size = too_big // 2
    while size >= step and not fits(trial, size):
        high, size = size, size // 2
    if size < step:
        return 0
    low = size
    while high - low > step:
        mid = (low + high) // 2 // step * step
        if mid <= low:
            break
        low, high = (mid, high) if fits(trial, mid) else (low, mid)
    return low // step * step  # the halving may have stopped between multiples


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def batch_size_error(
    train_step: Callable[[Batch], None],
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    processes: int,
    device: torch.device,
) -> DistillError:
    """The error for a batch that ran out of memory: the largest batch size that fits, found by
    `train_step` on the leading images of this very batch.

    Each trial is a whole training step (optimizer state included, which the first step
    allocates), so the size reported really trains; the run stops after the search, so what the
    trials did to the weights is never saved. `processes` share the global batch.
    """
    optimizer.zero_grad(set_to_none=True)
    per_process = batch.images.shape[0]

    def trial(n: int) -> None:
        sub = replace(
            batch,
            images=batch.images[:n],
            labels=None if batch.labels is None else batch.labels[:n],
            index=batch.index[:n],
            extent=None if batch.extent is None else batch.extent[:n],
        )
        try:
            train_step(sub)
        finally:
            optimizer.zero_grad(set_to_none=True)

    # a multiple of 8 for real batches: the exact boundary fits only while memory stays as
    # unfragmented as in the search, and tensor-core kernels prefer such sizes anyway
    largest = largest_fitting(trial, per_process, step=8 if per_process >= 64 else 1) * processes
    memory = ""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        memory = f" ({total:.0f} GiB)"
    return DistillError(
        f"batch size {per_process * processes} does not fit in GPU memory{memory}; "
        f"the largest that fits is {largest}",
        "schedule.batch_size",
        f"set schedule.batch_size={largest}" if largest else "use a smaller model or input",
    )
