"""Where images come from: Fashion-MNIST IDX files, image folders (scanned by `folders.py`), or
generated data.

Small datasets are held whole as one uint8 (N, C, H, W) tensor, so a batch is an index into
memory (on the GPU when there is one). Image folders are kept as file lists and decoded by
DataLoader workers (``loader.py``). Either way, what leaves this layer is uint8 pixels: all
augmentation happens later, batched, on the training device.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from distill_cli.data.draws import balanced_indices, holdout_indices, limit_indices
from distill_cli.errors import DistillError

#: What to do about damaged Fashion-MNIST files.
_REINSTALL = (
    "install the data again (apt-get install --reinstall dataset-fashion-mnist), or point "
    "data.root at intact IDX files"
)

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
        raise DistillError(f"cannot read IDX file: {exc}", str(path), _REINSTALL) from exc
    if len(data) < 4:
        raise DistillError("IDX file is truncated", str(path), _REINSTALL)
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DistillError("not a uint8 IDX file", str(path), _REINSTALL)
    if len(data) < 4 + 4 * ndim:  # the sizes cut short: struct.error was a traceback
        raise DistillError("IDX file is truncated (in its header)", str(path), _REINSTALL)
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DistillError("IDX file is truncated", str(path), _REINSTALL)
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
    images_file = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_file = _find(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_file), read_idx(labels_file)
    # checked here, not at the first step: a labels file in the images' place was "not enough
    # values to unpack", a label of 200 torch's "Class values must be smaller than num_classes"
    if images.ndim != 3:
        raise DistillError(
            f"the images file holds a {images.ndim}-D array, not images (N x H x W)",
            str(images_file),
            _REINSTALL,
        )
    if labels.ndim != 1:
        raise DistillError(
            f"the labels file holds a {labels.ndim}-D array, not one label per image",
            str(labels_file),
            _REINSTALL,
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DistillError(
            f"a label is {int(labels.max())}; Fashion-MNIST's are 0 to "
            f"{len(FASHION_MNIST_CLASSES) - 1}",
            str(labels_file),
            _REINSTALL,
        )
    if len(images) != len(labels):
        raise DistillError("Fashion-MNIST images and labels differ in count", str(root), _REINSTALL)
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
