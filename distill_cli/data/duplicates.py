"""The same photo twice where it makes a number wrong: in train and in the split evaluated, or
in two classes.

Users copy photos around: a `val/` that holds files also in `train/` (byte-identical, often
renamed), a photo saved into two class folders, a test set made from the training set. Nothing
failed, and validation accuracy was inflated by every image the model had trained on, or a
label was wrong on one copy. Identical bytes are found here, for every split of files (image
folders, an unlabeled `data.distill_dir`) and of pixels held in memory (Fashion-MNIST,
generated data); of tar shards and parquet, the files are compared (a split reading the
training split's shards), not the images (it would mean reading every one before training).

What is found:

- **overlap**: images of an evaluated split (val, the holdout, the test split) whose bytes are
  also in the training split: its numbers count them as unseen;
- **conflicting labels**: the same bytes in two classes of one split: one label is wrong.

Cheap on a big folder: files are compared by size first (one `stat` each, as the run's
fingerprint does); only files whose size is also that of a file in another split or another
class are read, and only a sample of them (the first and last 4 KiB, with the size), the whole
file only when samples collide. Measured figures are in docs/data.md.

A `Duplicates` is typed and torch-free; the run prints its `warnings()`, records them in
`summary.json`, and `data.on_duplicates: error` refuses the run with them.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from distill_cli.data.fingerprint import file_size, relative_name
from distill_cli.errors import DistillError

if TYPE_CHECKING:
    from distill_cli.data import DataBundle
    from distill_cli.data.shardset import ShardSet

#: Bytes read from each end of a file whose size collides: a JPEG's first 4 KiB can be the same
#: in many photos of one camera (EXIF, an ICC profile), its last 4 KiB are entropy-coded pixels.
SAMPLE = 4096
#: Examples named in a warning.
EXAMPLES = 3


@dataclass(frozen=True)
class Item:
    """One image: its split's role in the run, its label (-1: unlabeled) and how to name it."""

    role: str
    label: int
    name: str


@dataclass(frozen=True)
class Finding:
    """Images with the same bytes that make a number wrong, counted, with a few examples.

    `kind` is `overlap` (`role`'s images also in train) or `labels` (one image in two classes
    of `role`); `count` is the images of `role` concerned, `of` the images the split has.
    """

    kind: str
    role: str
    count: int
    of: int
    examples: tuple[str, ...]
    relabelled: int = 0  # overlap: how many of them are there under another class
    seen_in: tuple[str, ...] = ("train",)  # overlap: the splits they are also in

    def message(self) -> str:
        e_g = f" (e.g. {'; '.join(self.examples)})"
        if self.kind == "overlap":
            other = f", {self.relabelled} of them under another class" if self.relabelled else ""
            return (
                f"{self.count} of {self.of} {self.role} images are also in "
                f"{' or '.join(self.seen_in)}, byte for byte{other}{e_g}: the {self.role} "
                "numbers count them as unseen"
            )
        return (
            f"{self.count} {self.role} images are copies of one photo in two or more classes of "
            f"{self.role}{e_g}: the same photo under two labels, one of them wrong"
        )


@dataclass(frozen=True)
class Duplicates:
    """What the check found (nothing: no findings) and what it cost."""

    findings: tuple[Finding, ...] = ()
    files: int = 0  # images compared
    read: int = 0  # files read in part (their size collided)
    hashed: int = 0  # files read whole (their samples collided)
    checked: tuple[str, ...] = field(default=())  # the splits compared

    def warnings(self) -> list[str]:
        return [f.message() for f in self.findings]

    def refuse(self) -> None:
        """`data.on_duplicates: error`: the findings as one error line."""
        if self.findings:
            raise DistillError(
                "; ".join(self.warnings()),
                "data.on_duplicates",
                "remove the copies (keep each photo in one split and one class), or set "
                "data.on_duplicates: warn to train and report them",
            )


def find_duplicates(bundle: DataBundle, root: Path | None) -> Duplicates:
    """The overlaps and conflicting labels of a run's data as built (subsets and holdout
    applied): what is trained on against what is evaluated. Paths are named relative to `root`.
    """
    from distill_cli.data.shardset import ShardSet

    held = bundle.test is not None or bundle.val.name.endswith("(holdout)")  # data.holdout
    splits = [("train", bundle.train), ("holdout" if held else "val", bundle.val)]
    if bundle.test is not None:
        splits.append(("test", bundle.test))
    keyed: list[tuple[str, Item]] = []  # (identity, image)
    files: list[tuple[Path, Item]] = []
    counts: dict[str, int] = {}
    streamed = [(role, split) for role, split in splits if isinstance(split, ShardSet)]
    shared_units = _shared_units(streamed, root)
    for role, split in splits:
        if isinstance(split, ShardSet):
            continue  # its images are not read (every one would be); its files are compared
        counts[role] = len(split)
        labels = split.labels.tolist() if split.labels is not None else [-1] * len(split)
        if split.images is not None:  # pixels in memory: small by nature, hashed whole
            pixels = split.images.contiguous().numpy()
            keyed += [
                (_digest(pixels[i].tobytes()), Item(role, labels[i], f"{role} image {i}"))
                for i in range(len(labels))
            ]
        else:
            paths = split.files or []
            files += [
                (path, Item(role, label, relative_name(path, root)))
                for path, label in zip(paths, labels, strict=True)
            ]
    content, read, hashed = _file_identities(files)
    keyed += content
    groups: dict[str, list[Item]] = defaultdict(list)
    for key, item in keyed:
        groups[key].append(item)
    shared = [g for g in groups.values() if len(g) > 1]
    roles = list(counts)
    findings = [
        f for n, role in enumerate(roles) for f in _findings(role, roles[:n], shared, counts[role])
    ]
    return Duplicates(
        tuple(shared_units + findings), sum(counts.values()), read, hashed, tuple(counts)
    )


def _shared_units(splits: list[tuple[str, ShardSet]], root: Path | None) -> list[Finding]:
    """Streamed splits that read the same shard files (tar files, parquet row groups) as the
    training split: `val_dir` naming the training shards, or a pattern that takes some of them
    (`*.tar` over train-*.tar and val-*.tar). Their images are not read: the files are the
    identity. A holdout drawn from the training shards picks other samples of the same files,
    which is no overlap."""
    train = next((s for role, s in splits if role == "train"), None)
    if train is None or train.pick is not None:
        return []
    seen = {(os.path.realpath(u.path), u.part): u for u in train.units}
    out = []
    for role, split in splits:
        if role == "train" or split.pick is not None:
            continue
        both = [
            (u, seen[k]) for u in split.units if (k := (os.path.realpath(u.path), u.part)) in seen
        ]
        if both:
            shown = tuple(
                f"{relative_name(a.path, root)} = {relative_name(b.path, root)}" for a, b in both
            )
            count = sum(u.count for u, _ in both)
            out.append(Finding("overlap", role, count, len(split), shown[:EXAMPLES]))
    return out


def _file_identities(files: list[tuple[Path, Item]]) -> tuple[list[tuple[str, Item]], int, int]:
    """(identity, image) for the files that may matter, and how many were read in part and
    whole. A file matters when its size is also that of a file of another split or another
    class; the others cannot be a copy that makes a number wrong and are not read. Those that
    matter are told apart by a sample of their bytes (`SAMPLE` from each end, with the size),
    and read whole only when samples collide."""
    by_size: dict[int, list[tuple[Path, Item]]] = defaultdict(list)
    for path, item in files:
        size = file_size(path)
        if size > 0:  # gone or empty: a bad file, counted where it is decoded
            by_size[size].append((path, item))
    candidates = [
        (size, group)
        for size, group in by_size.items()
        if len({(i.role, i.label) for _, i in group}) > 1
    ]
    sampled: dict[str, list[tuple[Path, Item]]] = defaultdict(list)
    read = 0
    for size, group in candidates:
        for path, item in group:
            sampled[f"{size}:{_sample(path, size)}"].append((path, item))
            read += 1
    out: list[tuple[str, Item]] = []
    hashed = 0
    for key, group in sampled.items():
        if len(group) < 2 or not _opens(group[0][0]):  # bad files: counted where decoded
            continue
        size = int(key.partition(":")[0])
        if size <= 2 * SAMPLE:  # the sample was the whole file
            out += [(key, item) for _, item in group]
            continue
        for path, item in group:
            out.append((f"{size}:{_whole(path)}", item))
            hashed += 1
    return out, read, hashed


def _findings(role: str, before: list[str], groups: list[list[Item]], of: int) -> list[Finding]:
    """`role`'s overlap with the splits `before` it (train for val; train and the holdout for
    the test split, which nothing in the run may have seen) and its images in two classes."""
    overlap: list[tuple[Item, Item]] = []
    relabelled = 0
    conflicts: list[tuple[Item, Item]] = []  # one pair of labels per photo
    conflicted = 0  # the images of those photos
    for group in groups:
        mine = [i for i in group if i.role == role]
        if not mine:
            continue
        seen = [i for i in group if i.role in before]
        if seen:
            overlap += [(i, seen[0]) for i in mine]
            known = {t.label for t in seen if t.label >= 0}  # none: unlabeled distill_dir
            relabelled += sum(1 for i in mine if known and i.label >= 0 and i.label not in known)
        labels = {i.label for i in mine if i.label >= 0}
        if len(labels) > 1:
            first = mine[0]
            conflicts.append((first, next(i for i in mine if i.label != first.label)))
            conflicted += len(mine)
    out = []
    if overlap:
        shown = tuple(f"{a.name} = {b.name}" for a, b in overlap[:EXAMPLES])
        out.append(Finding("overlap", role, len(overlap), of, shown, relabelled, tuple(before)))
    if conflicts:
        shown = tuple(f"{a.name} = {b.name}" for a, b in conflicts[:EXAMPLES])
        out.append(Finding("labels", role, conflicted, of, shown))
    return out


def _opens(path: Path) -> bool:
    """Whether the file's header is an image's (Pillow reads the header alone): copies of one
    undecodable file (an HTML error page saved as `.jpg` into several class folders) are bad
    files, which the run skips and counts, not "the same photo under two labels"."""
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception:
        return False


def _sample(path: Path, size: int) -> str:
    """A digest of a file's first and last `SAMPLE` bytes (the whole of a small file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SAMPLE)
            if size > 2 * SAMPLE:
                fh.seek(size - SAMPLE)
                head += fh.read(SAMPLE)
            else:
                head += fh.read()
    except OSError:
        return f"unreadable:{path}"  # never equal to another file's
    return _digest(head)


def _whole(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return f"unreadable:{path}"
    return h.hexdigest()


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
