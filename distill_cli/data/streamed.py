"""The two streamed sources as a recipe names them: `shards` (tar files) and `hf_dataset`.

Both give `ShardSet`s read by `ShardStream` (`stream.py`); the tar and Hugging Face readers live
in `shards.py` and `parquet.py`. The validation split takes the training split's class names,
as an image folder's does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from distill_cli.data.stream import Sample, ShardSet, Unit
from distill_cli.errors import DistillError


def streamed_splits(
    source: str,
    root: Path | None,
    train_dir: str,
    val_dir: str,
    columns: tuple[str, str],
    limits: Mapping[str, int | None],
) -> tuple[ShardSet, ShardSet]:
    """(train, val) of a streamed source, counted and checked, nothing decoded."""
    if root is None:
        raise DistillError(f"{source} needs data.root", "data.root")
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
        train = scan_hf_split(root / train_dir, "data.train_dir", image, label, required=False)
        named = train.classes if train.labeled else None
        val = scan_hf_split(root / val_dir, "data.val_dir", image, label, named)
    if not val.labeled:
        raise DistillError("the validation split has no labels", val.name, "label it")
    if not train.labeled:  # unlabeled distillation images: the classes are the validation's
        train = replace(train, classes=val.classes)
    return train, val


def unread_splits(
    train_dir: str, val_dir: str, root: Path, sizes: tuple[int, int], classes: int
) -> tuple[ShardSet, ShardSet]:
    """Stand-ins of the right sizes for a plan made without the data (`--dry-run` on a laptop
    for a cluster run): they count, they are never read."""
    names = [f"class_{i}" for i in range(classes)]
    train, val = (
        ShardSet(f"{root / part} (not read)", names, [Unit(root / part, n)], _unread)
        for part, n in zip((train_dir, val_dir), sizes, strict=True)
    )
    return train, val


def _unread(data: ShardSet, unit: Unit) -> Iterator[Sample]:
    raise DistillError("a plan's stand-in data cannot be read", data.name)
