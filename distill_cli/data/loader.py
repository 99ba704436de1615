"""Batches of uint8 pixels on the training device, in a deterministic, resumable order.

The order of epoch `e` is a permutation seeded by (seed, e), so a resumed run that restarts at
step `s` of epoch `e` sees exactly the batches the uninterrupted run saw. Each rank of a
distributed run takes its own slice of every global batch, which is what makes DDP a drop-in.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from distill_cli.data.sources import ImageSet
from distill_cli.errors import DistillError


@dataclass
class Batch:
    """uint8 images (B, C, H, W) on the device, their labels (None when unlabeled), and their
    positions in the dataset (for methods that look up per-image data, e.g. cached targets)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    index: torch.Tensor


class FolderImages(Dataset):
    """Decodes one image file to a square uint8 (3, S, S) tensor (shorter side to S, centre).

    A file that cannot be decoded never raises inside a worker (that would surface as a wall of
    worker traceback): the item comes back flagged, and the main process either counts it and
    uses the next good file in its place, or stops with the file's name.
    """

    def __init__(
        self, files: list[Path], labels: torch.Tensor | None, size: int, skip_bad: bool
    ) -> None:
        self.files = files
        self.labels = labels
        self.size = size
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, path: Path) -> torch.Tensor | None:
        from torchvision.io import ImageReadMode, decode_image, read_file
        from torchvision.transforms.v2 import functional as TF

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError):
            return None
        if img.dtype != torch.uint8:  # 16-bit PNGs
            img = TF.to_dtype(img, torch.uint8, scale=True)
        img = TF.resize(img, self.size, antialias=True)
        return TF.center_crop(img, [self.size, self.size])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        """(image, label, index of the file used, index of a bad file met or -1)."""
        bad = -1
        for offset in range(len(self.files) if self.skip_bad else 1):
            used = (index + offset) % len(self.files)
            img = self._decode(self.files[used])
            if img is not None:
                label = int(self.labels[used]) if self.labels is not None else -1
                return img, label, used, bad
            bad = used if bad < 0 else bad
            if not self.skip_bad:
                break
        return torch.zeros(3, self.size, self.size, dtype=torch.uint8), -1, -1, bad


class BatchStream:
    """Epochs of (uint8 images, labels) batches on `device`."""

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        device: torch.device,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        load_size: int = 224,
        workers: int = 0,
        rank: int = 0,
        world: int = 1,
        skip_bad: bool = True,
    ) -> None:
        if batch_size % world:
            raise DistillError(f"batch size {batch_size} is not divisible by {world} processes")
        if drop_last and batch_size > len(data):
            raise DistillError(
                f"batch size {batch_size} is larger than the dataset ({len(data)} images)",
                data.name,
                "lower schedule.batch_size",
            )
        self.data = data
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.load_size = load_size
        self.workers = workers
        self.rank = rank
        self.world = world
        self.skip_bad = skip_bad
        #: undecodable files met so far (each replaced by the next good file)
        self.bad_images = 0
        self._images = None
        if data.images is not None:
            # Held whole on the device: a batch is then one gather, with no host round trip.
            self._images = data.images.to(device)
        self._labels = data.labels.to(device) if data.labels is not None else None

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.data))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.data), generator=gen)

    def _index_batches(self, epoch: int, start_step: int) -> list[torch.Tensor]:
        order = self.order(epoch)
        per_rank = self.batch_size // self.world
        batches = []
        for step in range(start_step, self.steps_per_epoch):
            chunk = order[step * self.batch_size : (step + 1) * self.batch_size]
            if self.world > 1:
                chunk = chunk[self.rank * per_rank : (self.rank + 1) * per_rank]
            batches.append(chunk)
        return batches

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of `epoch`, from `start_step` on."""
        batches = self._index_batches(epoch, start_step)
        if self._images is not None:
            for idx in batches:
                idx = idx.to(self.device)
                labels = self._labels[idx] if self._labels is not None else None
                yield Batch(self._images[idx], labels, idx)
            return
        yield from self._decoded(batches)

    def _decoded(self, batches: list[torch.Tensor]) -> Iterator[Batch]:
        files = self.data.files or []
        dataset = FolderImages(files, self.data.labels, self.load_size, self.skip_bad)
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            dataset,
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.workers,
            pin_memory=cuda,
            prefetch_factor=4 if self.workers else None,
        )
        for images, labels, index, bad in loader:
            flagged = bad[bad >= 0]
            if len(flagged):
                if not self.skip_bad:
                    raise DistillError(
                        "cannot decode image",
                        str(files[int(flagged[0])]),
                        "fix or delete the file, or set data.on_bad_image=skip",
                    )
                if bool((index < 0).any()):
                    raise DistillError("no file in the folder can be decoded", self.data.name)
                self.bad_images += len(flagged)
            images = images.to(self.device, non_blocking=True)
            index = index.to(self.device, non_blocking=True)
            if self.data.labels is None:
                yield Batch(images, None, index)
            else:
                yield Batch(images, labels.to(self.device, non_blocking=True), index)
