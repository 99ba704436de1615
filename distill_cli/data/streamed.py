"""The two streamed sources as a recipe names them: `shards` (tar files) and `hf_dataset`.

Both give `ShardSet`s read by `ShardStream` (`stream.py`); the tar and Hugging Face readers live
in `shards.py` and `parquet.py`. The validation split takes the training split's class names,
as an image folder's does. `data.holdout` splits a streamed training split by sample index
(`split_shards`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import torch

from distill_cli.data.draws import check_holdout, holdout_indices
from distill_cli.data.shardset import Pick, Sample, ShardSet, Unit
from distill_cli.errors import DistillError


def streamed_splits(
    source: str,
    root: Path | None,
    train_dir: str,
    val_dir: str,
    columns: tuple[str, str],
    limits: Mapping[str, int | None],
    sizes: tuple[int | None, int | None] = (None, None),
) -> tuple[ShardSet, ShardSet]:
    """(train, val) of a streamed source, counted and checked, nothing decoded.

    `sizes` are `data.train_images`/`val_images`: what a plan counts where the data is not at
    hand, so where it is they must agree with it (a copy missing shards, or sizes of another
    data set, made the plan and the run disagree without a word)."""
    if root is None:
        raise DistillError(
            f"{source} needs data.root", "data.root", "set data.root to the data's folder"
        )
    used = [key for key, value in limits.items() if value is not None]
    if used:
        raise DistillError(
            f"data.{used[0]} is not available for streamed data ({source})",
            f"data.{used[0]}",
            "write the subset as its own shards, or use an image folder",
        )
    if source == "shards":
        from distill_cli.data.shards import scan_tar_split

        train = scan_tar_split(str(root / train_dir), "data.train_dir")
        named = train.classes if train.labeled else None
        val = scan_tar_split(str(root / val_dir), "data.val_dir", named)
    else:
        from distill_cli.data.parquet import scan_hf_split

        image, label = columns
        train = scan_hf_split(
            root / train_dir, "data.train_dir", image, label, required=False, data_root=root
        )
        named = train.classes if train.labeled else None
        val = scan_hf_split(root / val_dir, "data.val_dir", image, label, named, data_root=root)
    for split, key in ((train, "data.train_dir"), (val, "data.val_dir")):
        if not len(split):  # an epoch of no steps; the run failed later, far from the cause
            raise DistillError(
                "the split has no samples",
                f"{key}: {split.name}",
                f"point {key} at a split that holds images",
            )
    for split, key, stated in zip((train, val), ("train", "val"), sizes, strict=True):
        if stated is not None and stated != len(split):
            raise DistillError(
                f"data.{key}_images is {stated:,} but the split holds {len(split):,} samples",
                f"data.{key}_dir: {split.name}",
                f"set data.{key}_images: {len(split)} (or drop it: the data is at hand), or "
                "copy the split's missing files",
            )
    if not val.labeled:  # only tar shards get here: a parquet val split needs its label column
        from distill_cli.data.shards import foldered

        raise DistillError(
            "the validation split has no labels"
            + (
                " (its images are in folders inside the tar: a folder is not a label)"
                if foldered(val.units[0].path)
                else ""
            ),
            val.name,
            "give each sample a {key}.cls member holding its class number (0, 1, ...); "
            ".json and .txt members are not read as labels",
        )
    if not train.labeled:  # unlabeled distillation images: the classes are the validation's
        train = replace(train, classes=val.classes)
    return train, val


def split_shards(data: ShardSet, count: int, seed: int) -> tuple[ShardSet, ShardSet]:
    """(the rest, `count` held-out samples) of a streamed training split: `data.holdout` as
    `ImageSet.split_off` makes it, the same class-balanced draw (`holdout_indices`) for a seed.

    The labels are read first, on their own (the label column; the tar headers and `.cls`
    members, past the image bytes): a class-balanced draw has to know every sample's class
    before it can pick, and a stream meets the samples only in a shuffled order while it
    trains. The pick is then a set of sample indices, which are stable across epochs: the
    training stream skips them, the holdout reads only them, and both count exactly the
    samples they read, so steps per epoch and an exact resume hold as for a whole split.
    """
    labels = _labels(data) if data.labeled else None
    held = holdout_indices(labels, data.num_classes, count, seed, data.name).tolist()
    rest, out = (_picked(data, held, keep) for keep in (False, True))
    return rest, replace(out, name=f"{data.name} (holdout)")


def _labels(data: ShardSet) -> torch.Tensor:
    """Every sample's label, at its index (-1 where a sample has none: never picked)."""
    if data.label_reader is None or data.pick is not None:
        raise DistillError(
            "the labels of this split cannot be read apart from its images",
            f"data.holdout ({data.name})",
            "drop data.holdout, or hold out a validation set when preparing the data",
        )
    span = max((u.start + u.count for u in data.units), default=0)
    labels = torch.full((span,), -1, dtype=torch.long)
    for unit in data.units:
        got = data.label_reader(data, unit)
        if len(got) != unit.count:
            raise DistillError(
                f"{len(got)} labels found for the {unit.count} samples counted",
                str(unit.path),
                "the shard index (shards.json) is stale: write it again, or delete it",
            )
        labels[unit.start : unit.start + unit.count] = torch.tensor(got, dtype=torch.long)
    return labels


def _picked(data: ShardSet, held: list[int], keep: bool) -> ShardSet:
    """`data` reading only the `held` indices (keep) or all but them; units counted anew."""
    units = []
    for unit in data.units:
        inside = bisect_left(held, unit.start + unit.count) - bisect_left(held, unit.start)
        count = inside if keep else unit.count - inside
        if count:
            units.append(replace(unit, count=count))
    return replace(data, units=units, pick=Pick(frozenset(held), keep))


def unread_splits(
    train_dir: str,
    val_dir: str,
    root: Path,
    sizes: tuple[int, int],
    classes: int,
    holdout: int | None = None,
) -> tuple[ShardSet, ShardSet, ShardSet | None]:
    """Stand-ins of the right sizes for a plan made without the data (`--dry-run` on a laptop
    for a cluster run): they count, they are never read. (train, val, test): with `holdout`,
    val is that many training samples and the validation split is the test split."""
    names = [f"class_{i}" for i in range(classes)]
    train, val = (
        ShardSet(f"{root / part} (not read)", names, [Unit(root / part, n)], _unread)
        for part, n in zip((train_dir, val_dir), sizes, strict=True)
    )
    if holdout is None:
        return train, val, None
    check_holdout(holdout, len(train))
    unit = train.units[0]
    rest = replace(train, units=[replace(unit, count=unit.count - holdout)])
    held = replace(train, name=f"{train.name} (holdout)", units=[replace(unit, count=holdout)])
    return rest, held, val


def _unread(data: ShardSet, unit: Unit) -> Iterator[Sample]:
    raise DistillError("a plan's stand-in data cannot be read", data.name)
