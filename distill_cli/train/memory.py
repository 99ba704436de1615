"""GPU memory: the peak a run used, and the largest batch that fits when one does not.

A batch size that does not fit should not end a run with a raw CUDA out-of-memory trace: the
engine catches the first step's OOM, probes smaller batches of the same data (halving, then a
binary search between the last fit and the first miss), and reports the largest that fits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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
