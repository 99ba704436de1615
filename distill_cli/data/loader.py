"""Batches of uint8 pixels on the training device, in a deterministic, resumable order.

The order of epoch `e` is a permutation seeded by (seed, e), so a resumed run that restarts at
step `s` of epoch `e` sees exactly the batches the uninterrupted run saw. Each rank of a
distributed run takes its own slice of every global batch, which is what makes DDP a drop-in.
"""

from __future__ import annotations

import signal
import warnings
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from distill_cli import STOP_SIGNALS
from distill_cli.data.decode import FileBytes, Fit, FolderImages, decode_on_device, packed
from distill_cli.data.sources import ImageSet
from distill_cli.errors import DistillError

if TYPE_CHECKING:
    from distill_cli.data.shardset import ShardSet

#: What to do when no file of a folder decodes (every one damaged, or none a photo).
_NO_PHOTO = "check the folder holds photos (JPEG, PNG, WebP, ...) that open in a viewer"


@dataclass
class Batch:
    """uint8 images (B, C, H, W) on the device, their labels (None when unlabeled), and their
    positions in the dataset (for methods that look up per-image data, e.g. cached targets).

    `extent` is (B, 2) with each image's valid (height, width) in the top-left corner of its
    canvas, for photos loaded whole; None when every image fills its tensor. `stand_in` is a
    (B,) bool mask, on the CPU, of the positions whose file could not be decoded and hold
    another image in its place (data.on_bad_image=skip): training uses the stand-ins, an
    evaluation leaves those positions out (`train.evaluate`); None when there are none.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    index: torch.Tensor
    extent: torch.Tensor | None = None
    stand_in: torch.Tensor | None = None


def worker_batches(dataset: Dataset, **options: Any) -> Iterator:
    """The batches of a `DataLoader(dataset, **options)`, without torch's warning that its
    workers outnumber the cores ("might get DataLoader running slow or even freeze"), printed
    twice a process: `data.workers` is distill's bound (at most 4 per core, at least 8, since
    decode workers wait on the disk), checked with the recipe, and a shipped recipe's 8
    workers on a 2-core machine are within it."""
    if options.get("num_workers"):
        options["worker_init_fn"] = _deaf_to_stop_signals
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
        return iter(DataLoader(dataset, **options))


def _deaf_to_stop_signals(worker_id: int) -> None:
    """A decode worker ignores the signals that stop a run (SIGINT, SIGTERM, SIGUSR1): the
    main process saves the position and then ends its workers. SLURM signals every process of
    a job step (a preemption, `--signal=USR1@90`), a shell's Ctrl-C the whole foreground group,
    `kill -TERM -PGID` likewise: the workers died of it first, and the run stopped on torch's
    `DataLoader worker (pid ...) is killed by signal` traceback (exit 1), its position unsaved.
    A worker whose main process is gone still exits (torch's watchdog)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@dataclass(eq=False, repr=False)
class SplitStream:
    """What every stream of a split's batches shares: `BatchStream` here (in memory or a file
    list) and `data.stream.ShardStream` (streamed shards), which the engine drives alike.

    The options it is built with, their checks (the global batch splits evenly over `world`
    processes and, with `drop_last`, fits the data), the epoch's length, and the bad files met.
    """

    data: ImageSet | ShardSet
    batch_size: int
    device: torch.device
    _: KW_ONLY
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = True
    load_size: int = 224
    workers: int = 0
    rank: int = 0
    world: int = 1
    skip_bad: bool = True
    decode_on_device: bool = False
    fit: Fit = "square"
    #: the undecodable files met so far, by index (each replaced by a good one in training): a
    #: set, so a bad photo is counted once however many epochs or evaluations read it; the one
    #: count of a split's bad files, for every split, source and decode path
    bad_files: set[int] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        size, world = self.batch_size, self.world
        if size % world:
            raise DistillError(
                f"batch size {size} cannot be split over {world} processes",
                "schedule.batch_size",
                f"use a multiple of {world}",
            )
        if self.drop_last and size > len(self.data):
            largest = len(self.data) - len(self.data) % world
            raise DistillError(
                f"batch size {size} is larger than the dataset ({len(self.data)} images)",
                self.data.name,
                f"set schedule.batch_size={largest}" if largest else "add training images",
            )

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def bad_images(self) -> int:
        """How many files (or samples) of this split could not be decoded (each counted once)."""
        return len(self.bad_files)

    def classes_lost(self, bad: set[int]) -> list[str]:
        """The classes none of whose images decoded, given the `bad` indices (every process's):
        a class the model has an output for and never saw in training, which the count of bad
        files alone does not tell. Known where the split's labels are (an image folder)."""
        labels = getattr(self.data, "labels", None)
        if not bad or not isinstance(labels, torch.Tensor) or not len(labels):
            return []
        counts = torch.bincount(labels, minlength=len(self.data.classes))
        bad_counts = torch.bincount(labels[sorted(bad)], minlength=len(counts))
        return [self.data.classes[i] for i in range(len(counts)) if 0 < counts[i] == bad_counts[i]]


@dataclass(eq=False, repr=False)
class BatchStream(SplitStream):
    """Epochs of (uint8 images, labels) batches on `device`."""

    data: ImageSet

    def __post_init__(self) -> None:
        super().__post_init__()
        self._images = None
        if self.data.images is not None:
            # Held whole on the device: a batch is then one gather, with no host round trip.
            self._images = self.data.images.to(self.device)
        labels = self.data.labels
        self._labels = labels.to(self.device) if labels is not None else None

    def ordered(self, data: ImageSet | None = None) -> BatchStream:
        """A stream over `data` (default: this one's) in dataset order, every image once, read
        and decoded as this one reads (one process's view: no rank slice): what evaluations
        and one-off passes (the teacher check, cached teacher targets) iterate."""
        return BatchStream(
            self.data if data is None else data,
            self.batch_size,
            self.device,
            seed=self.seed,
            shuffle=False,
            drop_last=False,
            load_size=self.load_size,
            workers=self.workers,
            skip_bad=self.skip_bad,
            decode_on_device=self.decode_on_device,
            fit="square",
        )

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
            if not batches:
                return
            # the epoch's indices go to the device in one copy, not one per step
            on_device = torch.cat(batches).to(self.device).split([len(b) for b in batches])
            for idx in on_device:
                labels = self._labels[idx] if self._labels is not None else None
                yield Batch(self._images[idx], labels, idx)
            return
        yield from self._decoded(batches)

    def _loader(self, dataset: Dataset, batches: list[torch.Tensor], **kw: object) -> Iterator:
        return worker_batches(
            dataset,
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None,
            **kw,
        )

    def _device_decoded(self, batches: list[torch.Tensor]) -> Iterator[Batch]:
        """Workers read bytes; the device decodes and resizes the batch."""
        files = self.data.files or []
        reader = FileBytes(files, self.data.labels)
        loader = self._loader(reader, batches, collate_fn=packed)
        for flat, lengths, labels, index in loader:
            raws = list(flat.split(lengths.tolist()))
            images = decode_on_device(raws, self.device, self.load_size, self.fit)
            bad = [i for i, img in enumerate(images) if img is None]
            if bad:
                if not self.skip_bad:
                    raise DistillError(
                        "cannot decode image",
                        str(files[int(index[bad[0]])]),
                        "fix or delete the file, or set data.on_bad_image=skip",
                    )
                self.bad_files.update(int(index[i]) for i in bad)
                for i in bad:
                    images[i], labels[i], index[i] = self._next_good(reader, int(index[i]))
            stand_in = stand_ins(len(images), bad)
            index = index.to(self.device, non_blocking=True)
            labels_out = None
            if self.data.labels is not None:
                labels_out = labels.to(self.device, non_blocking=True)
            extent = self._extent(torch.stack([e for _, e in images]))
            pixels = torch.stack([img for img, _ in images])
            yield Batch(pixels, labels_out, index, extent, stand_in)

    def _next_good(self, reader: FileBytes, start: int) -> tuple[tuple, int, int]:
        """The stand-in for a bad file: the next file in the folder's order that decodes, the
        one the workers' decode (`FolderImages`) takes, so both paths train on the same images
        (a stand-in from the same batch differed between them, data.decode)."""
        for offset in range(1, len(reader)):
            raw, label, used = reader[(start + offset) % len(reader)]
            image = decode_on_device([raw], self.device, self.load_size, self.fit)[0]
            if image is not None:
                return image, label, used
        raise DistillError(
            "no file in the folder can be decoded",
            self.data.name,
            _NO_PHOTO,
        )

    def _decoded(self, batches: list[torch.Tensor]) -> Iterator[Batch]:
        if self.decode_on_device:
            yield from self._device_decoded(batches)
            return
        files = self.data.files or []
        dataset = FolderImages(files, self.data.labels, self.load_size, self.skip_bad, self.fit)
        loader = self._loader(dataset, batches)
        for images, labels, index, bad, extent in loader:
            flagged = bad[bad >= 0]
            if len(flagged):
                if not self.skip_bad:
                    raise DistillError(
                        "cannot decode image",
                        str(files[int(flagged[0])]),
                        "fix or delete the file, or set data.on_bad_image=skip",
                    )
                if bool((index < 0).any()):
                    raise DistillError(
                        "no file in the folder can be decoded",
                        self.data.name,
                        _NO_PHOTO,
                    )
                self.bad_files.update(flagged.tolist())
            stand_in = (bad >= 0) if len(flagged) else None
            images = images.to(self.device, non_blocking=True)
            index = index.to(self.device, non_blocking=True)
            labels_out = None
            if self.data.labels is not None:
                labels_out = labels.to(self.device, non_blocking=True)
            yield Batch(images, labels_out, index, self._extent(extent), stand_in)

    def _extent(self, extent: torch.Tensor) -> torch.Tensor | None:
        """Per-image valid sizes on the device; None for square fits (every pixel is valid)."""
        return None if self.fit == "square" else extent.to(self.device, non_blocking=True)


def stand_ins(size: int, positions: list[int]) -> torch.Tensor | None:
    """`Batch.stand_in` for a batch of `size` whose `positions` hold stand-ins; None if none."""
    if not positions:
        return None
    mask = torch.zeros(size, dtype=torch.bool)
    mask[positions] = True
    return mask
