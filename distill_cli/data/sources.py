"""Where images come from: Fashion-MNIST IDX files, image folders, or generated data.

Small datasets are held whole as one uint8 (N, C, H, W) tensor, so a batch is an index into
memory (on the GPU when there is one). Image folders are kept as file lists and decoded by
DataLoader workers (``loader.py``). Either way, what leaves this layer is uint8 pixels: all
augmentation happens later, batched, on the training device.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from distill_cli.data.draws import balanced_indices, holdout_indices, limit_indices
from distill_cli.data.entries import class_name, user_entry
from distill_cli.data.formats import decodable_suffixes, refuse_undecodable, undecodable
from distill_cli.errors import DistillError

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass
class ImageSet:
    """One split: pixels in memory (`images`) or on disk (`files`); labels when it has them."""

    name: str
    classes: list[str]
    labels: torch.Tensor | None = None
    images: torch.Tensor | None = None
    files: list[Path] | None = None

    def __len__(self) -> int:
        if self.images is not None:
            return int(self.images.shape[0])
        return len(self.files or [])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    @property
    def from_files(self) -> bool:
        """Images decoded from files at a load size (not pixels held in memory)."""
        return self.images is None

    def renumbered(self, order: torch.Tensor, names: list[str]) -> ImageSet:
        """Labels renumbered to a model's class order (`classes.align_classes`)."""
        labels = order[self.labels] if self.labels is not None else None
        return replace(self, classes=list(names), labels=labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1]) if self.images is not None else 3

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return replace(
            self,
            labels=self.labels[indices] if self.labels is not None else None,
            images=self.images[indices] if self.images is not None else None,
            files=[self.files[i] for i in indices.tolist()] if self.files is not None else None,
        )

    def limited(self, limit: int | None, seed: int, every_class: bool = False) -> ImageSet:
        """A fixed random subset of `limit` items (same items for the same seed).

        With `every_class` (`data.train_limit`), each class of labelled data keeps an item
        (`draws.limit_indices`: the same draw unless a class would run out).
        """
        if limit is None or limit >= len(self):
            return self
        if every_class and self.labels is not None:
            return self.subset(limit_indices(self.labels, limit, seed))
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.subset(order[:limit].sort().values)

    def balanced(self, count: int | None, seed: int) -> ImageSet:
        """A fixed subset of `count` items with the classes as equal as the data allows.

        Drawn by `balanced_indices` (seeded by `seed`); unlabeled data falls back to a random
        subset.
        """
        if count is not None and count > len(self):
            raise DistillError(
                f"data.subset ({count}) is larger than the training data ({len(self)} images)",
                "data.subset",
                f"use at most {len(self)}, or drop subset to train on all of it",
            )
        if count is None or count == len(self):
            return self
        if self.labels is None:
            return self.limited(count, seed)
        return self.subset(balanced_indices(self.labels, self.num_classes, count, seed))

    def split_off(self, count: int, seed: int) -> tuple[ImageSet, ImageSet]:
        """(the rest, `count` held-out items): a class-balanced split with no item in both.

        The held-out part is drawn as `balanced` draws a subset, so the same seed always holds
        out the same images; `data.holdout` uses it to keep a validation split apart from the
        training images, leaving the data's own validation split as the untouched test set.
        """
        held = holdout_indices(self.labels, self.num_classes, count, seed, self.name)
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[held] = False
        rest = self.subset(torch.nonzero(keep).flatten())
        out = self.subset(held)
        return rest, replace(out, name=f"{self.name} (holdout)")


# --- Fashion-MNIST -------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array; only the uint8 type MNIST uses."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DistillError(f"cannot read IDX file: {exc}", str(path)) from exc
    if len(data) < 4:
        raise DistillError("IDX file is truncated", str(path))
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DistillError("not a uint8 IDX file", str(path))
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DistillError("IDX file is truncated", str(path))
    return body.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DistillError(
        f"Fashion-MNIST file {stem}[.gz] not found",
        str(root),
        "apt-get install dataset-fashion-mnist, or set data.root",
    )


def load_fashion_mnist(root: Path, split: str) -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise DistillError("Fashion-MNIST images and labels differ in count", str(root))
    return ImageSet(
        name=f"fashion_mnist/{split}",
        classes=list(FASHION_MNIST_CLASSES),
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )


# --- Generated data ------------------------------------------------------------------------------


def make_synthetic(
    num_classes: int, size: int, image_size: int, channels: int, seed: int, split: str
) -> ImageSet:
    """Learnable images: each class has its own colour (brightness for 1 channel), plus texture.

    Tests need data where training measurably helps, without files. Colour survives random
    crops, flips and resizing, so the label stays readable from any training view, while the
    random texture keeps every image different.
    """
    gen = torch.Generator().manual_seed(seed * 7919 + (0 if split == "train" else 1))
    labels = (torch.arange(size) % num_classes)[torch.randperm(size, generator=gen)]
    levels = (torch.arange(num_classes).float() + 0.5) / num_classes
    # channel k of class c is the level of class (c + k) mod K: distinct colours per class
    shift = torch.arange(channels)
    colour = levels[(labels[:, None] + shift[None] * max(1, num_classes // 3)) % num_classes]
    texture = torch.rand(size, 1, image_size // 4 + 1, image_size // 4 + 1, generator=gen)
    texture = torch.nn.functional.interpolate(
        texture, size=(image_size, image_size), mode="bilinear"
    )
    img = 0.75 * colour[:, :, None, None] + 0.25 * texture
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(
        name=f"synthetic/{split}",
        classes=[f"class_{i}" for i in range(num_classes)],
        images=images,
        labels=labels.long(),
    )


# --- Image folders -------------------------------------------------------------------------------


def image_files(folder: Path, unreadable: list[Path]) -> list[Path]:
    """The image files under `folder`, sorted, searched as a user's file browser shows them.

    What is not the user's (`entries.user_entry`: hidden files and folders such as `.DS_Store`,
    macOS's `._photo.jpg` forks and `.ipynb_checkpoints`; tools' folders such as `__MACOSX` and
    Synology's `@eaDir` thumbnails) is skipped; linked folders are followed (each real folder
    once, so a link loop ends), as torchvision's ImageFolder does, rather than silently dropped.
    Photos in a format we cannot decode (HEIC without its plugin, JPEG XL, camera raw) are added
    to `unreadable`, for the caller to refuse (`formats.refuse_undecodable`) instead of
    training on the rest without a word.
    """
    found: list[Path] = []
    seen: set[str] = set()
    suffixes = decodable_suffixes()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if user_entry(d)]
        visible = [Path(top, n) for n in names if user_entry(n)]
        found += [p for p in visible if p.suffix.lower() in suffixes]
        unreadable += [p for p in visible if undecodable(p)]
    return sorted(found)


def class_folders(root: Path) -> dict[str, Path]:
    """A split's class folders by class name (`entries.class_name`: Unicode NFC).

    In the folders' own sorted order (torchvision's `ImageFolder` order on the same disk). A
    link among them that leads nowhere is refused rather than left out: it is a class the
    user meant (a folder moved or a drive not mounted), and without it the model would have
    one output fewer and its images' labels would shift. Two folders whose names differ only
    in their Unicode form are one class written twice, refused by name.
    """
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if not user_entry(entry.name):
            continue
        if entry.is_symlink() and not entry.exists():
            raise DistillError(
                f"{entry.name} is a link to {os.readlink(entry)}, which does not exist: a "
                "class folder that is gone would be a class left out",
                str(entry),
                "mount or restore the folder it points to, or remove the link",
            )
        if not entry.is_dir():
            continue
        name = class_name(entry.name)
        if name in found:
            raise DistillError(
                f"two class folders are both named {name!r}, written in different Unicode "
                "forms (macOS writes accents decomposed)",
                str(root),
                f"move the images of one into the other and remove it: {found[name].name!a} "
                f"and {entry.name!a}",
            )
        found[name] = entry
    return found


def _refuse_other_classes(extra: list[str], classes: list[str], root: Path) -> None:
    """Class folders of a split that train does not have; one differing only in case is named
    with the spelling to use (on Linux `Cat` and `cat` are two folders, and two classes)."""
    if not extra:
        return
    by_case = {c.casefold(): c for c in classes}
    renames = [f"{e} -> {by_case[e.casefold()]}" for e in extra if e.casefold() in by_case]
    if renames:
        raise DistillError(
            f"class folders that differ from the train split's only in case: {renames[:5]}",
            str(root),
            "class names are case-sensitive: rename them to the train split's spelling",
        )
    raise DistillError(
        f"class folders not in the train split: {extra[:5]}",
        str(root),
        "the model's classes are the train split's folders: add these to train, or move "
        "them out of this split",
    )


def _refuse_loose_images(root: Path, has_classes: bool) -> None:
    """Images directly in a split folder have no class folder, so no label: left out without
    a word, they were photos the user meant to train on (a class folder's images dragged one
    level up, or a flat folder of photos that was never sorted)."""
    suffixes = decodable_suffixes()
    loose = sorted(
        e
        for e in root.iterdir()
        if user_entry(e.name) and e.suffix.lower() in suffixes and not e.is_dir()
    )
    if not loose:
        return
    if has_classes:
        raise DistillError(
            f"{len(loose)} image(s) directly in the split folder, outside every class folder "
            f"(e.g. {loose[0].name}): they have no label",
            str(root),
            "move each into its class folder (<split>/<class>/<image>), or out of the split",
        )
    raise DistillError(
        f"{len(loose)} image(s) and no class folders: labels come from one folder per class",
        str(root),
        "sort them into <split>/<class>/<image>, or, to distill on them without labels, set "
        "data.distill_dir to this folder",
    )


def scan_image_folder(root: Path, classes: list[str] | None = None) -> ImageSet:
    """An ImageFolder split: one sub-folder per class. `classes` pins the order to train's.

    The split that defines the classes (train) must hold images in every class folder: an
    empty one would be a class the model has an output for and never sees. What is not the
    user's (`entries.user_entry`: `.ipynb_checkpoints`, `__MACOSX`) is not a class.
    """
    if not root.is_dir():
        raise DistillError(
            "data folder not found",
            str(root),
            "check data.root, data.train_dir and data.val_dir (image_folder reads "
            "<root>/<train_dir>/<class>/ and <root>/<val_dir>/<class>/)",
        )
    folders = class_folders(root)
    _refuse_loose_images(root, bool(folders))
    defining = classes is None
    if classes is None:
        classes = list(folders)
    _refuse_other_classes(sorted(set(folders) - set(classes)), classes, root)
    files: list[Path] = []
    labels: list[int] = []
    empty: list[str] = []
    unreadable: list[Path] = []
    for index, name in enumerate(classes):
        found_here = image_files(folders[name], unreadable) if name in folders else []
        if not found_here:
            empty.append(name)
        files += found_here
        labels += [index] * len(found_here)
    refuse_undecodable(sorted(unreadable), str(root))
    if not files:
        raise DistillError("no images found", str(root), "expected <class>/<image>.jpg|png")
    if defining and empty:
        raise DistillError(
            f"{len(empty)} class folder(s) hold no images: {empty[:5]}",
            str(root),
            "add images to them, or remove them (each class folder is one output of the model)",
        )
    return ImageSet(
        name=str(root), classes=classes, files=files, labels=torch.tensor(labels, dtype=torch.long)
    )


def scan_unlabeled(root: Path, classes: list[str]) -> ImageSet:
    """Any folder of images, searched recursively; function matching needs no labels."""
    if not root.is_dir():
        raise DistillError("distillation image folder not found", str(root))
    unreadable: list[Path] = []
    files = image_files(root, unreadable)
    refuse_undecodable(sorted(unreadable), str(root))
    if not files:
        raise DistillError("no images found", str(root), "expected .jpg/.png files")
    return ImageSet(name=str(root), classes=classes, files=files)
