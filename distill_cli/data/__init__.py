"""Data: sources -> uint8 batches on the device -> batched augmentation (see the modules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from distill_cli.data.sources import (
    ImageSet,
    load_fashion_mnist,
    make_synthetic,
    scan_image_folder,
    scan_unlabeled,
)
from distill_cli.errors import DistillError

if TYPE_CHECKING:
    from distill_cli.recipe import DataSpec


@dataclass
class DataBundle:
    """The training stream's images and the labelled validation split."""

    train: ImageSet
    val: ImageSet

    @property
    def classes(self) -> list[str]:
        return self.val.classes

    @property
    def labeled_train(self) -> bool:
        return self.train.labels is not None


def build_data(spec: DataSpec, seed: int = 0) -> DataBundle:
    """Read (or generate) both splits the recipe names, with their subset limits applied."""
    root = spec.resolved_root
    if spec.source == "fashion_mnist":
        assert root is not None
        train, val = load_fashion_mnist(root, "train"), load_fashion_mnist(root, "val")
    elif spec.source == "synthetic":
        s = spec.synthetic
        train = make_synthetic(s.num_classes, s.train_size, s.image_size, s.channels, seed, "train")
        val = make_synthetic(s.num_classes, s.val_size, s.image_size, s.channels, seed, "val")
    else:
        if root is None:
            raise DistillError("image_folder needs data.root for the validation split", "data")
        labeled = None if spec.distill_dir else scan_image_folder(root / spec.train_dir)
        val = scan_image_folder(root / spec.val_dir, labeled.classes if labeled else None)
        train = labeled or val
    if spec.distill_dir is not None:
        train = scan_unlabeled(spec.distill_dir, val.classes)
    train = train.limited(spec.train_limit, seed).balanced(spec.subset, seed)
    return DataBundle(train=train, val=val.limited(spec.val_limit, seed + 1))


__all__ = ["DataBundle", "ImageSet", "build_data"]
