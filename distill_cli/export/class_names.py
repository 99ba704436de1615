"""The class names an export writes into the ONNX metadata, and where they came from.

A deployed model is useless without its label names, and a wrong list is worse than none: the
names are taken from the most trusted place that has exactly as many as the model has outputs
(the checkpoint's side file, then the data, then timm's own label set), and the source is
recorded beside them so a reader knows how far to trust them.
"""

from __future__ import annotations

from distill_cli.data import DataBundle
from distill_cli.models.create import Net
from distill_cli.models.side_file import SideFile


def class_names(
    meta: SideFile, data: DataBundle | None, student: Net
) -> tuple[list[str] | None, str]:
    """The class names and where they came from: the checkpoint's sidecar, the data's folder
    or dataset names, else the model's own pretrained label set (timm's ImageNet names)."""
    n = student.info.num_classes
    names = meta.class_names
    if names is not None and len(names) == n:
        return list(names), "checkpoint"
    if data is not None and len(data.classes) == n:
        return list(data.classes), "dataset"
    own = timm_class_names(student)
    if own is not None:
        return own, "timm"
    return None, "unknown"


def timm_class_names(student: Net) -> list[str] | None:
    """timm's label names for the model's pretrained label set, when the head matches it."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        cfg = getattr(student.module, "pretrained_cfg", None) or {}
        labels = cfg.get("label_names")
        if labels and len(labels) == student.info.num_classes:
            return [str(v) for v in labels]
        subset = infer_imagenet_subset(student.module)
        if not subset:
            return None
        info = ImageNetInfo(subset)
        if info.num_classes() != student.info.num_classes:
            return None
        return [info.index_to_description(i) for i in range(info.num_classes())]
    except Exception:  # a label set timm cannot read offline: names stay unknown
        return None
