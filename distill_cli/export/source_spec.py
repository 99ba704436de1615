"""The ModelSpec `distill export` builds a checkpoint's student from: its side file holds the
model and the input config it was trained with (the class count of a file without a side file
is `models.weights.file_classes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill_cli.models.side_file import SideFile
from distill_cli.recipe.sections import ModelSpec


def spec_from_side_file(
    checkpoint: Path, meta: SideFile, kwargs: dict[str, Any] | None, key: str | None = None
) -> ModelSpec:
    """The student's ModelSpec as it was trained: the sidecar holds the resolved input config."""
    fields = {
        "model": meta.model,
        "checkpoint": checkpoint,
        "checkpoint_key": key,
        "num_classes": meta.classes,
        "in_chans": meta.in_chans,
        "input_size": meta.input_size,
        "mean": meta.mean,
        "std": meta.std,
        "crop_pct": meta.crop_pct,
        "kwargs": kwargs or {},
    }
    return ModelSpec.model_validate({k: v for k, v in fields.items() if v is not None})
