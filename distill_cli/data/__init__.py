"""Data: sources -> uint8 batches on the device -> batched augmentation (see the modules)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from distill_cli.data.folder_layout import check_layout
from distill_cli.data.folders import scan_image_folder, scan_unlabeled
from distill_cli.data.shardset import ShardSet
from distill_cli.data.sources import ImageSet, load_fashion_mnist, make_synthetic
from distill_cli.errors import DistillError

Source = Literal["fashion_mnist", "image_folder", "synthetic", "shards", "hf_dataset"]


@dataclass
class DataBundle:
    """The training stream's images, the split evaluated during training, and the test split.

    Without `data.holdout`, `val` is the data's validation split and there is no `test`. With
    it, `val` is the held-out part of the training images (evaluation during training, `best`
    and every choice made on results) and `test` is the data's validation split, which the
    engine evaluates only once the run has ended.
    """

    train: ImageSet | ShardSet
    val: ImageSet | ShardSet
    test: ImageSet | ShardSet | None = None

    @property
    def classes(self) -> list[str]:
        return self.val.classes

    @property
    def labeled_train(self) -> bool:
        return self.train.labeled


def build_data(
    source: Source,
    root: Path | None = None,
    *,
    train_dir: str = "train",
    val_dir: str = "val",
    distill_dir: Path | None = None,
    train_limit: int | None = None,
    subset: int | None = None,
    val_limit: int | None = None,
    synthetic: Mapping[str, int] | None = None,
    columns: tuple[str, str] = ("image", "label"),
    sizes: tuple[int | None, int | None] = (None, None),
    holdout: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Read (or generate) both splits, with their subset limits applied.

    Plain arguments, in the manner of timm's `create_dataset`, so data needs no recipe schema:
    `source` is fashion_mnist (IDX files under `root`), image_folder (`root/train_dir` and
    `root/val_dir`, class folders) or synthetic (`synthetic` holds num_classes, train_size,
    val_size, image_size and channels). `distill_dir` replaces the labelled training split by
    unlabelled images; `train_limit` and `subset` (class-balanced) shrink the training split
    and `val_limit` the validation split, all seeded by `seed`. `holdout` takes that many
    images out of the training split (class-balanced, before the limits, so a subset run and a
    full run hold out the same images) as the split evaluated during training; the validation
    split becomes the test split (`hold_out`, for every source); an image folder with no
    `val_dir` then has no test split. shards (tar files) and
    hf_dataset (parquet/arrow, `columns` = image and label column) are streamed (`streamed.py`);
    `sizes` (train, val), where stated, must be what their splits hold.
    """
    if source in ("shards", "hf_dataset"):
        from distill_cli.data.streamed import streamed_splits

        limits = {"train_limit": train_limit, "subset": subset, "val_limit": val_limit}
        train_s, val_s = streamed_splits(source, root, train_dir, val_dir, columns, limits, sizes)
        streamed = DataBundle(train=train_s, val=val_s)
        return streamed if holdout is None else hold_out(streamed, holdout, seed)
    if source == "fashion_mnist":
        if root is None:
            raise DistillError(
                "fashion_mnist needs the dataset root",
                "data.root",
                "set data.root to the folder of the IDX files",
            )
        train, val = load_fashion_mnist(root, "train"), load_fashion_mnist(root, "val")
    elif source == "synthetic":
        if synthetic is None:
            raise DistillError(
                "synthetic data needs its sizes", "data.synthetic", "e.g. {train_size: 256}"
            )
        shape = (synthetic["num_classes"], synthetic["image_size"], synthetic["channels"])
        n, side, chans = shape
        train = make_synthetic(n, synthetic["train_size"], side, chans, seed, "train")
        val = make_synthetic(n, synthetic["val_size"], side, chans, seed, "val")
    else:
        if root is None:
            raise DistillError(
                "image_folder needs data.root for the validation split",
                "data",
                "set data.root to the folder holding train/ and val/",
            )
        if not distill_dir:
            check_layout(root, train_dir, val_dir, holdout)
        labeled = None if distill_dir else scan_image_folder(root / train_dir)
        if labeled is not None and holdout is not None and not (root / val_dir).exists():
            # a train folder alone: the holdout is the validation split, and there is no test
            if val_limit is not None:
                raise DistillError(
                    "data.val_limit limits the validation (test) split, and this data has none",
                    f"data.val_limit ({root / val_dir} is missing)",
                    "drop val_limit (data.holdout sets the validation images), or add the folder",
                )
            alone = replace(hold_out(DataBundle(labeled, labeled), holdout, seed), test=None)
            alone.train = _shrunk(alone.train, train_limit, subset, seed)
            return alone
        val = scan_image_folder(root / val_dir, labeled.classes if labeled else None)
        train = labeled or val
    if distill_dir is not None:
        train = scan_unlabeled(distill_dir, val.classes)
    bundle = DataBundle(train=train, val=val.limited(val_limit, seed + 1))
    if holdout is not None:
        bundle = hold_out(bundle, holdout, seed)
    bundle.train = _shrunk(bundle.train, train_limit, subset, seed)
    return bundle


def _shrunk(train: ImageSet, limit: int | None, subset: int | None, seed: int) -> ImageSet:
    """The training split after `train_limit` (a seeded draw that keeps every class an image)
    and then `subset` (class-balanced)."""
    return train.limited(limit, seed, every_class=True).balanced(subset, seed)


def hold_out(bundle: DataBundle, count: int, seed: int) -> DataBundle:
    """`count` training images become the split evaluated during training; val becomes test.

    Every source: an `ImageSet` (images in memory or a file list) is split in memory, a
    streamed `ShardSet` by the indices of its samples (`streamed.split_shards`, which reads
    only the labels to choose); both draw the same class-balanced way.
    """
    # a seed of its own, so the held-out images do not follow the subset's draw
    if isinstance(bundle.train, ShardSet):
        from distill_cli.data.streamed import split_shards

        rest, held = split_shards(bundle.train, count, seed + 7)
    else:
        rest, held = bundle.train.split_off(count, seed + 7)
    return DataBundle(train=rest, val=held, test=bundle.val)


__all__ = ["DataBundle", "ImageSet", "ShardSet", "build_data", "hold_out"]
