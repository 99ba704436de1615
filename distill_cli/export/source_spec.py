"""The model a checkpoint holds, as far as its side file and its weights say: the ModelSpec
`distill export` builds a checkpoint's student from (its side file holds the input config it
was trained with), and the class count of a file without one (its classifier's rows).
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


def checkpoint_classes(name: str, checkpoint: Path, key: str | None) -> int | None:
    """The class count of a checkpoint without a side file, from its classifier's rows: a
    10-class `resnet18.pth` was built with timm's 1000 and refused as not fitting."""
    import timm

    from distill_cli.models.weights import head_rows

    head = timm.get_pretrained_cfg_value(name, "classifier") or []
    return head_rows(checkpoint, [head] if isinstance(head, str) else list(head), key)
