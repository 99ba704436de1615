"""Batches of uint8 pixels on the training device, in a deterministic, resumable order.

The order of epoch `e` is a permutation seeded by (seed, e), so a resumed run that restarts at
step `s` of epoch `e` sees exactly the batches the uninterrupted run saw. Each rank of a
distributed run takes its own slice of every global batch, which is what makes DDP a drop-in.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from distill_cli.data.sources import ImageSet
from distill_cli.errors import DistillError

#: How a decoded photo becomes a fixed-size tensor: `square` = shorter side to the load size and
#: a centre square (the evaluation view); `whole` = the whole photo, aspect kept, longer side to
#: the load size, in the top-left corner of a zero canvas (the training view: random crops are
#: then drawn from the entire image, as the paper's inception crop is).
Fit = Literal["square", "whole"]


@dataclass
class Batch:
    """uint8 images (B, C, H, W) on the device, their labels (None when unlabeled), and their
    positions in the dataset (for methods that look up per-image data, e.g. cached targets).

    `extent` is (B, 2) with each image's valid (height, width) in the top-left corner of its
    canvas, for photos loaded whole; None when every image fills its tensor.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    index: torch.Tensor
    extent: torch.Tensor | None = None


class FolderImages(Dataset):
    """Decodes one image file to a uint8 (3, S, S) tensor as `fit` says, plus its valid extent.

    A file that cannot be decoded never raises inside a worker (that would surface as a wall of
    worker traceback): the item comes back flagged, and the main process either counts it and
    uses the next good file in its place, or stops with the file's name.
    """

    def __init__(
        self,
        files: list[Path],
        labels: torch.Tensor | None,
        size: int,
        skip_bad: bool,
        fit: Fit = "square",
    ) -> None:
        self.files = files
        self.labels = labels
        self.size = size
        self.skip_bad = skip_bad
        self.fit = fit

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
        from torchvision.io import ImageReadMode, decode_image, read_file

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError):
            return None
        return fit_image(img, self.size, self.fit)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int, torch.Tensor]:
        """(image, label, index of the file used, index of a bad file met or -1, extent)."""
        bad = -1
        for offset in range(len(self.files) if self.skip_bad else 1):
            used = (index + offset) % len(self.files)
            decoded = self._decode(self.files[used])
            if decoded is not None:
                label = int(self.labels[used]) if self.labels is not None else -1
                return decoded[0], label, used, bad, decoded[1]
            bad = used if bad < 0 else bad
            if not self.skip_bad:
                break
        blank = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return blank, -1, -1, bad, torch.tensor([self.size, self.size])


class FileBytes(Dataset):
    """Reads one file's bytes: workers only do I/O; decoding happens batched on the device."""

    def __init__(self, files: list[Path], labels: torch.Tensor | None) -> None:
        self.files = files
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        from torchvision.io import read_file

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            raw = read_file(str(self.files[index]))
        label = int(self.labels[index]) if self.labels is not None else -1
        return raw, label, index


def _packed(
    items: list[tuple[torch.Tensor, int, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A worker's batch of file bytes as one flat tensor plus lengths.

    A list of one tensor per file would cross the process boundary as one shared-memory file
    descriptor per file: hundreds per batch, which runs into descriptor limits and races
    ("Bad file descriptor", then a hung loader). One tensor per batch is one descriptor.
    """
    raws, labels, index = zip(*items, strict=True)
    lengths = torch.tensor([len(r) for r in raws])
    return torch.cat(raws), lengths, torch.tensor(labels), torch.tensor(index)


def fit_image(
    img: torch.Tensor, size: int, fit: Fit = "square"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoded image as a uint8 (C, size, size) tensor and its valid (height, width).

    `square`: shorter side to `size`, centre crop (all of it valid). `whole`: longer side to
    `size`, aspect kept, in the top-left corner of a zero canvas. 16-bit images are scaled to
    uint8 first.
    """
    out, extent = fit_images(img[None], size, fit)
    return out[0], extent


def fit_images(
    imgs: torch.Tensor, size: int, fit: Fit = "square"
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_image` for a stack of images of one size (N, C, H, W): one resize for all of them.

    Per image, a batch decoded on the GPU would cost a handful of kernel launches each (resize,
    canvas, copy): hundreds per batch, paid by the host thread that also drives training.
    Returns (N, C, size, size) and the one valid (height, width) they share.
    """
    from torchvision.transforms.v2 import functional as TF

    if imgs.dtype != torch.uint8:
        imgs = TF.to_dtype(imgs, torch.uint8, scale=True)
    if fit == "square":
        out = TF.center_crop(TF.resize(imgs, size, antialias=True), [size, size])
        return out, torch.tensor([size, size])
    height, width = imgs.shape[-2:]
    scale = size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    canvas = imgs.new_zeros(*imgs.shape[:2], size, size)
    canvas[..., :h, :w] = TF.resize(imgs, [h, w], antialias=True)
    return canvas, torch.tensor([h, w])


def decode_on_device(
    raws: list[torch.Tensor], device: torch.device, size: int, fit: Fit = "square"
) -> list:
    """Decode a batch of encoded images on `device` (nvJPEG on CUDA), fitted as `fit` says.

    JPEGs are decoded in one batched call; other formats, and a batch where the batched call
    fails, fall back to one file at a time. An image that cannot be decoded comes back as None.

    On CUDA the decode runs on a stream of its own. torchvision's nvJPEG decoder writes its
    output before the work already queued on the caller's stream has run (pytorch/vision#9606),
    and PyTorch's allocator hands out a freed block as soon as it is freed on that stream: the
    decoder then overwrites tensors the training step is still about to read (the NaN loss of
    the first GPU check). On a private stream, with its own queue drained first, the decoder
    can only be handed blocks no queued kernel reads; the training stream waits for the
    result, and the result's memory is kept until that stream is done with it.
    """
    if device.type != "cuda":
        return _decode(raws, device, size, fit)
    side, main = _decode_stream(device), torch.cuda.current_stream(device)
    with torch.cuda.stream(side):
        side.synchronize()
        out = _decode(raws, device, size, fit)
    main.wait_stream(side)
    for item in out:
        if item is not None:
            item[0].record_stream(main)
    return out


_DECODE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _decode_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _DECODE_STREAMS:
        _DECODE_STREAMS[device] = torch.cuda.Stream(device)
    return _DECODE_STREAMS[device]


def _decode(raws: list[torch.Tensor], device: torch.device, size: int, fit: Fit) -> list:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(raws)
    jpeg = [i for i, r in enumerate(raws) if _is_jpeg(r)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            decoded = decode_jpeg([raws[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)
            for i, img in zip(jpeg, decoded, strict=True):
                out[i] = img
        except RuntimeError:
            pass  # a corrupt file in the batch: decode the files one by one below
        for i, raw in enumerate(raws):
            if out[i] is None:
                with contextlib.suppress(RuntimeError):  # undecodable: its slot stays None
                    out[i] = decode_image(raw, mode=ImageReadMode.RGB).to(device)
    return _fit_by_size(out, size, fit)


def _is_jpeg(raw: torch.Tensor) -> bool:
    """The JPEG start-of-image marker, read through numpy. As tensor ops (`raw[0] == 0xFF`,
    then `bool()`) the test was the second largest host cost in the GPU check's profile of
    the decoding thread (2,560 `aten::eq` + `item` calls for 5 batches); this is 5x cheaper."""
    head = raw.numpy()[:2]
    return len(raw) > 2 and head[0] == 0xFF and head[1] == 0xD8


def _fit_by_size(images: list[torch.Tensor | None], size: int, fit: Fit) -> list:
    """`fit_image` of each image, computed once per group of images of the same shape."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        if img is not None:
            groups.setdefault(tuple(img.shape), []).append(i)
    fitted: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(images)
    for members in groups.values():
        stack = torch.stack([images[i] for i in members])  # type: ignore[misc]
        out, extent = fit_images(stack, size, fit)
        for j, i in enumerate(members):
            fitted[i] = (out[j], extent)
    return fitted


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
        decode_on_device: bool = False,
        fit: Fit = "square",
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
        self.decode_on_device = decode_on_device
        self.fit = fit
        #: undecodable files met so far (each replaced by the next good file)
        self.bad_images = 0
        self._images = None
        if data.images is not None:
            # Held whole on the device: a batch is then one gather, with no host round trip.
            self._images = data.images.to(device)
        self._labels = data.labels.to(device) if data.labels is not None else None

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
            if not batches:
                return
            # the epoch's indices go to the device in one copy, not one per step
            on_device = torch.cat(batches).to(self.device).split([len(b) for b in batches])
            for idx in on_device:
                labels = self._labels[idx] if self._labels is not None else None
                yield Batch(self._images[idx], labels, idx)
            return
        yield from self._decoded(batches)

    def _loader(self, dataset: Dataset, batches: list[torch.Tensor], **kw: object) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None,
            **kw,  # type: ignore[arg-type]
        )

    def _device_decoded(self, batches: list[torch.Tensor]) -> Iterator[Batch]:
        """Workers read bytes; the device decodes and resizes the batch."""
        files = self.data.files or []
        loader = self._loader(FileBytes(files, self.data.labels), batches, collate_fn=_packed)
        for flat, lengths, labels, index in loader:
            raws = list(flat.split(lengths.tolist()))
            images = decode_on_device(raws, self.device, self.load_size, self.fit)
            bad = [i for i, img in enumerate(images) if img is None]
            if bad:
                good = [i for i, img in enumerate(images) if img is not None]
                if not self.skip_bad or not good:
                    raise DistillError(
                        "cannot decode image",
                        str(files[int(index[bad[0]])]),
                        "fix or delete the file, or set data.on_bad_image=skip",
                    )
                self.bad_images += len(bad)
                for j, i in enumerate(bad):  # stand-ins from the same batch keep its size
                    src = good[j % len(good)]
                    images[i], labels[i], index[i] = images[src], labels[src], index[src]
            index = index.to(self.device, non_blocking=True)
            labels_out = None
            if self.data.labels is not None:
                labels_out = labels.to(self.device, non_blocking=True)
            extent = self._extent(torch.stack([e for _, e in images]))
            yield Batch(torch.stack([img for img, _ in images]), labels_out, index, extent)

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
                    raise DistillError("no file in the folder can be decoded", self.data.name)
                self.bad_images += len(flagged)
            images = images.to(self.device, non_blocking=True)
            index = index.to(self.device, non_blocking=True)
            labels_out = None
            if self.data.labels is not None:
                labels_out = labels.to(self.device, non_blocking=True)
            yield Batch(images, labels_out, index, self._extent(extent))

    def _extent(self, extent: torch.Tensor) -> torch.Tensor | None:
        """Per-image valid sizes on the device; None for square fits (every pixel is valid)."""
        return None if self.fit == "square" else extent.to(self.device, non_blocking=True)
