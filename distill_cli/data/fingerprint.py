"""A cheap fingerprint of a run's data, so `--resume` notices data that changed under it.

A run resumed on an image folder where files were added, removed or classes renamed would go on
training on other images (and other labels) than its checkpoint saw, and its position in the
epoch would point at other samples, without a word. The run records, per split, the class
names, the image count and a digest of what identifies the images without decoding them:

- files (image folders): each file's path (relative to the data root) and size, with its label;
- shards (tar, parquet, arrow): each unit's path, sample count and file size;
- images held in memory (Fashion-MNIST, synthetic): their pixels and labels (small by nature;
  beyond 256 MB an even sample of the images).

A million-image folder costs one `stat` per file, which the scan's walk has just warmed. The
run folder stores it (`RunDir.write_fingerprint`, `data.json`); `changes` says what differs.
Torch is needed only to compute one (`of_bundle`), not to read or compare.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill_cli.data import DataBundle
    from distill_cli.data.shardset import ShardSet
    from distill_cli.data.sources import ImageSet

#: Pixels hashed in full up to this many bytes; beyond it an even sample of the images.
FULL_HASH_BYTES = 256 << 20


@dataclass(frozen=True)
class SplitPrint:
    """One split: what it is called in the run (train, val, test), its classes, its size and
    the digest of its images' identities."""

    role: str
    classes: list[str]
    count: int
    digest: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitPrint:
        return cls(
            str(data["role"]),
            [str(c) for c in data["classes"]],
            int(data["count"]),
            str(data["digest"]),
        )

    def change(self, now: SplitPrint) -> str | None:
        """What differs in `now` (the data today) from this record, in a few words."""
        if now.classes != self.classes:
            gone = [c for c in self.classes if c not in now.classes]
            new = [c for c in now.classes if c not in self.classes]
            if gone or new:
                return f"{self.role}: classes {gone[:3]} gone, {new[:3]} new"
            return f"{self.role}: the classes are in another order"
        if now.count != self.count:
            return f"{self.role}: {self.count} -> {now.count} images"
        if now.digest != self.digest:
            return f"{self.role}: the same number of images, but files renamed, moved or replaced"
        return None


@dataclass(frozen=True)
class DataFingerprint:
    """Every split of a run's data (`data.json` in the run folder)."""

    splits: list[SplitPrint]

    def to_dict(self) -> dict[str, Any]:
        return {"splits": [asdict(s) for s in self.splits]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataFingerprint:
        return cls([SplitPrint.from_dict(s) for s in data["splits"]])

    def changes(self, now: DataFingerprint) -> list[str]:
        """What differs in `now` from this record, one phrase per split that changed."""
        before = {s.role: s for s in self.splits}
        after = {s.role: s for s in now.splits}
        out = [f"{role}: split added or removed" for role in sorted(set(before) ^ set(after))]
        for role in (r for r in before if r in after):
            change = before[role].change(after[role])
            if change:
                out.append(change)
        return out


def of_bundle(bundle: DataBundle, root: Path | None) -> DataFingerprint:
    """The fingerprint of a run's data as built (subsets and holdout applied); file paths are
    taken relative to `root` (the recipe's data root) where they lie under it."""
    splits = [("train", bundle.train), ("val", bundle.val)]
    if bundle.test is not None:
        splits.append(("test", bundle.test))
    return DataFingerprint(
        [SplitPrint(role, list(s.classes), len(s), _digest(s, root)) for role, s in splits]
    )


#: How a path is hashed: as UTF-8, and a name that is not UTF-8 (a zip from an old Windows tool)
#: as its bytes on disk (Python's surrogateescape), where strict UTF-8 raised a traceback.
_PATHS = ("utf-8", "surrogateescape")


def _digest(split: ImageSet | ShardSet, root: Path | None) -> str:
    from distill_cli.data.shardset import ShardSet

    h = hashlib.sha256()
    if isinstance(split, ShardSet):
        h.update(f"labeled={split.labeled} order={split.label_order}\n".encode())
        for unit in split.units:
            size = file_size(unit.path)
            rel = relative_name(unit.path, root)
            h.update(f"{rel}\0{unit.part}\0{unit.start}\0{unit.count}\0{size}\n".encode(*_PATHS))
        return h.hexdigest()
    labels = split.labels.tolist() if split.labels is not None else [-1] * len(split)
    if split.files is not None and split.images is None:
        for path, label in zip(split.files, labels, strict=True):
            h.update(f"{relative_name(path, root)}\0{file_size(path)}\0{label}\n".encode(*_PATHS))
        return h.hexdigest()
    images = split.images
    assert images is not None
    h.update(f"{tuple(images.shape)} {labels}\n".encode())
    per_image = max(1, images[0].numel()) if len(images) else 1
    step = max(1, (per_image * len(images)) // FULL_HASH_BYTES)
    h.update(images[::step].contiguous().numpy().tobytes())
    return h.hexdigest()


def relative_name(path: Path, root: Path | None) -> str:
    """How a file is named to the user and in digests: relative to its data root when it
    has one (a folder moved elsewhere keeps its names), else its path as given."""
    if root is not None:
        try:
            return os.path.relpath(path, root)
        except ValueError:
            pass
    return str(path)


def file_size(path: Path) -> int:
    """A file's size in bytes, -1 when it is gone (a difference a digest shows)."""
    try:
        return path.stat().st_size
    except OSError:
        return -1  # gone: a difference the digest shows
